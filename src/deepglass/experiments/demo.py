"""The demo: the paper's three network experiments on the digits CNN, in one run directory.

:func:`run_demo` loads (training it the first time, then cached) the digits
CNN and runs each step of :data:`DEMO_STEPS` into the same run directory, one
run kind per step, so calling it again resumes it:

1. frustration of the real weights vs every null model (paper 000, Fig. 2;
   :func:`deepglass.experiments.frustration_vs_nulls`);
2. the active subnetwork of each of 200 held-out digits and its frustration
   ``delta_x`` against the whole network's ``delta`` (Fig. 2 inset;
   :func:`deepglass.experiments.active_run.run_active`);
3. near-monotonicity along the frustration gauge against a random partial
   order and N3 weights (Figs. 3-5;
   :func:`deepglass.experiments.monotonicity_experiment`).

The frustration step comes first: the later steps read the gauge and
``delta`` it stores in ``arrays/gauge_real.npz``.  ``deepglass demo`` is this
function plus printing.

Examples
--------
>>> from deepglass.experiments.demo import run_demo
>>> res = run_demo("runs/demo")                         # doctest: +SKIP
>>> res.summary()["frustration"]["welch_p"]             # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["run_demo", "DemoResult", "DEMO_MODEL", "DEMO_FRUSTRATION", "DEMO_ACTIVE",
           "DEMO_MONOTONICITY", "DEMO_STEPS"]

#: the demo network
DEMO_MODEL = "digits_cnn"
#: the frustration protocol: the paper's 80 real replicas (one batch: cheap) and
#: half its 80 draws x 2 starts per null, 15-20 s on two CPU cores
#: (``bench/bench_experiment.py`` runs the full protocol)
DEMO_FRUSTRATION = {"replicas": 80, "null_instances": 40, "starts_per_null": 2,
                    "nulls": ("N1", "N2", "N3-xavier", "N3-he"), "seed": 0}
#: the active-subnetwork step: held-out digits, start gauges per subgraph
DEMO_ACTIVE = {"n": 200, "replicas": 4, "seed": 0}
#: the near-monotonicity step: inputs, amplitudes per input, nulls ("N3": both
#: initializations), replicas of a null's own frustration gauge
DEMO_MONOTONICITY = {"n": 300, "amplitudes": 100, "nulls": ("random-order", "N3"),
                     "replicas": 32, "seed": 0}

#: ``progress(description)`` -> a ``progress(done, total)`` callback or None
ProgressFactory = Callable[[str], Callable[[int, int], None] | None]


@dataclass
class DemoResult:
    """What :func:`run_demo` returns: each step's result and headline numbers.

    Attributes
    ----------
    out : str
        The run directory.
    model : torch.nn.Module
        The digits CNN (``training_info`` on it: test accuracy, cached or not).
    results : dict
        Per step name, the step's own result (``NullComparison``, the active
        table, ``MonotonicityExperiment``).
    headlines : dict
        Per step name, its headline numbers (JSON-friendly).
    seconds : float
    """

    out: str
    model: Any
    results: dict = field(default_factory=dict)
    headlines: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict:
        """Every step's headline numbers, with the run directory and the time."""
        return {"out": self.out, "model": DEMO_MODEL, "seconds": self.seconds,
                **self.headlines}


def _bar(progress: ProgressFactory | None, what: str):
    return None if progress is None else progress(what)


def frustration_step(model, out: str, force: bool, progress: ProgressFactory | None):
    """Step 1: the real weights vs every null model (returns ``NullComparison``)."""
    from .frustration import frustration_vs_nulls

    res = frustration_vs_nulls(model, input_shape=tuple(model.default_input_shape), run=out,
                               force=force, model_name=DEMO_MODEL,
                               progress=_bar(progress, "frustration units"), **DEMO_FRUSTRATION)
    return res, res.summary()


def active_step(model, out: str, force: bool, progress: ProgressFactory | None):
    """Step 2: active subnetworks of held-out digits (returns their table)."""
    from ..graph import SignedGraph
    from ..inputs import load_inputs
    from .active import active_summary_stats
    from .active_run import run_active, verdict

    p, shape = DEMO_ACTIVE, tuple(model.default_input_shape)
    graph = SignedGraph.from_module(model, shape)
    batch = load_inputs("digits", shape, n=p["n"], seed=p["seed"])
    table = run_active(out, model, graph, batch.x, batch.ids, replicas=p["replicas"],
                       seed=p["seed"], force=force,
                       progress=_bar(progress, "active subnetworks"),
                       config={"model": DEMO_MODEL, "inputs": "digits", "n": p["n"],
                               # what `deepglass active` records: it resumes this step
                               "input_shape": list(shape), "ids_first": batch.ids[0],
                               "ids_last": batch.ids[-1]})
    delta = float(table["delta"].iloc[0])
    stats = active_summary_stats(table, delta)
    return table, {"delta": delta, **stats, "verdict": verdict(stats)}


def monotonicity_step(model, out: str, force: bool, progress: ProgressFactory | None):
    """Step 3: near-monotonicity along the stored gauge (returns the experiment)."""
    from ..inputs import load_inputs
    from .monotonicity import monotonicity_experiment

    p = DEMO_MONOTONICITY
    batch = load_inputs("digits", tuple(model.default_input_shape), n=p["n"], seed=p["seed"])
    exp = monotonicity_experiment(
        model, batch, nulls=p["nulls"], amplitudes=p["amplitudes"], seed=p["seed"],
        replicas=p["replicas"], run=out, force=force,
        config={"model": DEMO_MODEL, "inputs": "digits", "n": p["n"],
                "input_shape": list(model.default_input_shape)},   # as `deepglass monotonicity`
        progress=_bar(progress, "monotonicity trials"))
    return exp, {"gamma": exp.gammas(),
                 "consistent": dict(zip(exp.gamma["model"], exp.gamma["consistent"])),
                 "rho_mean": dict(zip(exp.gamma["model"], exp.gamma["rho_mean"])),
                 "seconds": exp.seconds}


#: the demo, in order (name, title, step): frustration first, because the other
#: two steps use the gauge it stores (the partial order of SPEC §5) and its delta
DEMO_STEPS = [
    ("frustration", "frustration vs null models", frustration_step),
    ("active", "active subnetworks of single inputs (delta_x vs delta)", active_step),
    ("monotonicity", "near-monotonicity along the frustration gauge", monotonicity_step),
]


def run_demo(out: str = "runs/demo", *, force: bool = False, model=None,
             progress: ProgressFactory | None = None,
             on_step: Callable[[int, str, str], None] | None = None,
             on_result: Callable[[str, Any, dict], None] | None = None) -> DemoResult:
    """Run (or resume) the demo into run directory ``out``.

    Parameters
    ----------
    out : str
        Run directory (one run kind per step).
    force : bool
        Replace a step's units made with another configuration.
    model : torch.nn.Module, optional
        The network (default: the zoo's trained ``digits_cnn``, trained in
        seconds the first time, then cached).
    progress : callable, optional
        ``progress(description)`` returning a ``progress(done, total)``
        callback for one step's units (or None).
    on_step, on_result : callable, optional
        Called before each step with ``(number, name, title)`` and after it
        with ``(name, result, headline)`` (the command line prints there).

    Returns
    -------
    DemoResult
    """
    from ..store import check_out_dir
    from ..zoo import load_model

    t0 = time.perf_counter()
    check_out_dir(out)
    if model is None:
        model = load_model(DEMO_MODEL, pretrained=True)
    res = DemoResult(out=str(out), model=model)
    for i, (name, title, step) in enumerate(DEMO_STEPS, 1):
        if on_step is not None:
            on_step(i, name, title)
        result, headline = step(model, str(out), force, progress)
        res.results[name], res.headlines[name] = result, headline
        if on_result is not None:
            on_result(name, result, headline)
    res.seconds = time.perf_counter() - t0
    return res

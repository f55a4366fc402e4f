"""Near-monotonicity, the protocol (SPEC §5; paper 000, Results
"Near-monotonicity", Figs. 3-5): the perturbation test
(:func:`~deepglass.experiments.alignment.near_monotonicity`) of the real
network along its frustration gauge and of its null models, as one experiment
on the runner (:func:`deepglass.runner.run_experiment`).

**Nulls.**  Any null of the registry (:data:`deepglass.experiments.nulls.NULLS`)
that leaves a network to run forward (:data:`MONOTONICITY_NULLS`):
``"random-order"`` (a null of the order: a uniformly random ``(sigma_in,
sigma_out)`` on the real weights) and the nulls of the weights with a module
transform (``"N1"``, ``"N3-xavier"``, ``"N3-he"``; ``"N3"`` is both, as
everywhere), each with its own frustration gauge from
:func:`deepglass.solve.frustration`.  N2 has no module (its convolutions lose
their weight sharing) and cannot run forward.  Every model kind sees the same
inputs, amplitudes and noise (paired trials).

**Runs.**  :func:`monotonicity_experiment` is the one call: it computes (or
reads from the run directory) the gauges, then runs one unit per (model kind,
batch of ``unit_size`` inputs) through an executor (in this process or on Ray;
the noise of input ``i`` is seeded by ``(seed, i)``, so every executor and
every split gives the same trials) and returns the tidy tables.  With a run
directory (kind ``"monotonicity"``) units are written as they finish and
skipped on resume; the run gets the tables, the figures of the paper (rho
histograms, rho against amplitude, gamma; :mod:`deepglass.experiments.figures`),
a report section and ``summary.json["monotonicity"]``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import DeepglassError
from ..runner import Experiment, Unit, UnitOutput, run_experiment
from .alignment import (DEFAULT_RANGE, MonotonicityResult, alignment_gamma, amplitude_grid,
                        as_batch, check_amplitude_range, check_batch_memory, gamma_table,
                        near_monotonicity, per_input_table)
from .nulls import NULLS, get_null, resolve_nulls

__all__ = ["near_monotonicity", "MonotonicityResult", "MonotonicityExperiment",
           "MonotonicityRun", "monotonicity_experiment", "run_monotonicity", "alignment_gamma",
           "amplitude_grid", "per_input_table", "gamma_table", "check_batch_memory",
           "null_gauge", "NullGauge", "parse_nulls", "MONOTONICITY_NULLS", "DEFAULT_RANGE"]

#: the nulls the protocol runs: a network to run forward (a module transform) or a gauge
MONOTONICITY_NULLS = tuple(n for n, r in NULLS.items()
                           if r.module is not None or r.gauge is not None)


# -- nulls -----------------------------------------------------------------------------
@dataclass
class NullGauge:
    """A network and the partial order tested on it."""

    name: str
    model: nn.Module
    sigma_in: np.ndarray
    sigma_out: np.ndarray
    frustration: float = float("nan")


def parse_nulls(nulls) -> tuple[str, ...]:
    """The protocol's nulls from a comma list or a sequence
    (:func:`deepglass.experiments.nulls.resolve_nulls`; ``"N3"`` is both
    initializations, ``"all"`` every null in :data:`MONOTONICITY_NULLS`)."""
    return resolve_nulls(nulls, allowed=MONOTONICITY_NULLS,
                         use="near-monotonicity (it runs the network forward)")


def _frustration_gauge(model, input_shape, *, replicas, seed, method, device,
                       engine: str = "auto", output=None, rules=None):
    from ..solve import frustration

    solver = {"engine": engine} if method == "descent" else {}
    target, where = model, {"input_shape": input_shape}
    if output is not None or rules:   # sigma_out on the selected output (SPEC §1b)
        from ..graph import SignedGraph

        target, where = SignedGraph.from_module(model, tuple(input_shape), output=output,
                                                **(rules or {})), {}
    return frustration(target, method=method, replicas=replicas, seed=seed, device=device,
                       **where, **solver)


def null_gauge(model: nn.Module, null: str, *, input_shape: Sequence[int], n_outputs: int,
               seed: int = 0, replicas: int = 8, method: str = "descent",
               device: str = "cpu", engine: str = "auto", output=None,
               rules: Mapping | None = None) -> NullGauge:
    """The network and gauge of one null (SPEC §3, §5), from its registry record.

    A null of the order (``"random-order"``): the real network with the
    record's random ``(sigma_in, sigma_out)`` for ``seed``.  A null of the
    weights (``"N1"``, ``"N3-he"``, ``"N3-xavier"``): the record's module
    transform with seed ``seed``, with its own gauge from
    :func:`deepglass.solve.frustration` (``replicas`` starts) on its signed
    graph under the capture ``rules`` (``batchnorm``, ``norm``, ``gates`` of
    :meth:`SignedGraph.from_module`; default: the defaults).
    """
    rec = get_null(null)
    parse_nulls([rec.name])   # refuses, in one line, a null that cannot run forward (N2)
    if rec.gauge is not None:
        s_in, s_out = rec.gauge(int(np.prod(tuple(input_shape))), int(n_outputs), int(seed))
        return NullGauge(rec.name, model, s_in, s_out)
    net = rec.module(model, int(seed))
    res = _frustration_gauge(net, tuple(input_shape), replicas=replicas, seed=seed, output=output,
                             method=method, device=device, engine=engine, rules=rules)
    return NullGauge(rec.name, net, res.sigma_in, res.sigma_out, float(res.frustration))


def _gauges(model, shape, sigma_in, sigma_out, frustration, nulls, run, opts,
            weights: str) -> dict:
    """The real gauge and every null's: read from the run directory when it
    holds them (the real one as a frustration run stores it, for these
    ``weights``: the model's :func:`~.real_gauge.weights_digest`), else
    computed (and stored there)."""
    if (sigma_in is None) != (sigma_out is None):
        raise DeepglassError("give both sigma_in and sigma_out, or neither")
    delta = float("nan") if frustration is None else float(frustration)
    if sigma_in is None:
        from .real_gauge import GAUGE_ARRAYS, load_gauge, save_gauge, settle_gauge

        g, graph, source = None, None, f"from arrays/{GAUGE_ARRAYS}.npz of this run"
        if run is not None:
            # the stored gauge is of the whole graph: its order on this output
            from ..graph import SignedGraph

            graph = SignedGraph.from_module(model, tuple(shape), output=opts.get("output"),
                                            **(opts.get("rules") or {}))
            if run.has_arrays(GAUGE_ARRAYS):
                g = load_gauge(run, weights, graph)
        if g is None:
            res = _frustration_gauge(model, shape, **opts)
            g = {"sigma": res.sigma, "sigma_in": res.sigma_in, "sigma_out": res.sigma_out,
                 "energy": res.frustration}
            source = "computed by this run"
        if run is not None:   # units along another gauge are never mixed with these
            settle_gauge(run, g["sigma"], g["energy"], source)
            if source.startswith("computed"):
                save_gauge(run, g["sigma"], g["sigma_in"], g["sigma_out"], g["energy"],
                           weights, graph)
        sigma_in, sigma_out, delta = g["sigma_in"], g["sigma_out"], float(g["energy"])
    gauges = {"real": NullGauge("real", model, np.asarray(sigma_in), np.asarray(sigma_out), delta)}
    m = np.asarray(sigma_out).size
    for name in nulls:
        key, rec = f"monotonicity/gauge_{name}", NULLS[name]
        if rec.gauge is None and run is not None and run.has_arrays(key):
            a = run.load_arrays(key)
            gauges[name] = NullGauge(name, rec.module(model, opts["seed"]), a["sigma_in"],
                                     a["sigma_out"], float(a["energy"]))
            continue
        gauges[name] = g = null_gauge(model, name, input_shape=shape, n_outputs=m, **opts)
        if rec.gauge is None and run is not None:
            run.save_arrays(key, sigma_in=g.sigma_in, sigma_out=g.sigma_out,
                            energy=np.float64(g.frustration))
    return gauges


# -- the protocol on the runner ---------------------------------------------------------
@dataclass
class MonotonicityExperiment:
    """The protocol on the real network and its nulls.

    Attributes
    ----------
    trials : DataFrame
        All trials, with a ``model`` column (``"real"``, then the nulls' names).
    inputs : DataFrame
        :func:`per_input_table` per model kind.
    gamma : DataFrame
        :func:`gamma_table`: one row per model kind.
    gauges : dict
        model kind -> :class:`NullGauge` (the real one included).
    seconds : float
    info : dict
        The runner's counts and timings (units computed / resumed, seconds).
    """

    trials: pd.DataFrame
    inputs: pd.DataFrame
    gamma: pd.DataFrame
    gauges: dict = field(default_factory=dict)
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def gammas(self) -> dict[str, float]:
        return dict(zip(self.gamma["model"], self.gamma["gamma"].astype(float)))


def _trial_unit(shared: dict, payload) -> UnitOutput:
    """One unit: the perturbation test of one model kind on inputs ``lo:hi``
    (the noise of input ``i`` is seeded by ``(seed, i)``: any split gives the
    same trials)."""
    name, lo, hi = payload
    model, s_in, s_out = shared["gauges"][name]
    amps = shared["amplitudes"]
    amps = amps[lo:hi] if isinstance(amps, np.ndarray) and amps.ndim == 2 else amps
    r = near_monotonicity(model, s_in, s_out, shared["x"][lo:hi], amps,
                          ids=shared["ids"][lo:hi], first_index=lo, name=name, **shared["opts"])
    return UnitOutput({"trials": r.trials}, info={"compute_seconds": r.seconds})


@dataclass
class MonotonicityRun(Experiment):
    """The protocol as units of :func:`deepglass.runner.run_experiment`: one per
    (model kind, batch of ``unit_size`` inputs), id ``<kind>-<batch:05d>``,
    weighing its trials.  Built by :func:`monotonicity_experiment`."""

    x: torch.Tensor
    ids: list
    amplitudes: object
    settings: dict
    gauges: dict
    opts: dict
    started: float = 0.0
    kind = "monotonicity"
    tables = ("trials",)
    compute = staticmethod(_trial_unit)

    def config(self) -> dict:
        return self.settings

    def units(self) -> list[Unit]:
        B, n = len(self.ids), int(self.settings["unit_size"])
        K = int(self.amplitudes) if np.ndim(self.amplitudes) == 0 else self.amplitudes.shape[-1]
        spans = [(lo, min(B, lo + n)) for lo in range(0, B, n)]
        return [Unit(f"{name}-{u:05d}", (name, lo, hi), weight=(hi - lo) * K)
                for name in self.gauges for u, (lo, hi) in enumerate(spans)]

    def shared(self) -> dict:
        return {"x": self.x, "ids": self.ids, "amplitudes": self.amplitudes, "opts": self.opts,
                "gauges": {k: (g.model, g.sigma_in, g.sigma_out) for k, g in self.gauges.items()}}

    def finish(self, stored, run) -> MonotonicityExperiment:
        alpha = self.opts["alpha"]
        trials = stored.table("trials")
        delta = {k: g.frustration for k, g in self.gauges.items()}
        exp = MonotonicityExperiment(trials, per_input_table(trials, alpha),
                                     gamma_table(trials, alpha, delta), self.gauges,
                                     time.perf_counter() - self.started, dict(stored.info))
        if run is not None:
            _write_run(run, exp, alpha)
        return exp


def monotonicity_experiment(model: nn.Module, inputs, sigma_in=None, sigma_out=None, *,
                            nulls=("random-order", "N3"), amplitudes=100,
                            amplitude_range=DEFAULT_RANGE, amplitude_scale: str = "std",
                            seed: int = 0, replicas: int = 8, method: str = "descent",
                            alpha: float = 0.05, batch_size: int | None = None,
                            device: str = "cpu", ids=None, frustration: float | None = None,
                            engine: str = "auto", output=None, run=None, unit_size: int = 100,
                            config: Mapping | None = None, executor=None,
                            address: str | None = None, force: bool = False,
                            progress: Callable[[int, int], None] | None = None,
                            batchnorm: str = "fold", norm: str = "fold", gates: str = "scale"
                            ) -> MonotonicityExperiment:
    """The near-monotonicity protocol of SPEC §5 on the real network and its nulls.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : tensor (B, \\*input_shape) or :class:`deepglass.inputs.InputBatch`
    sigma_in, sigma_out : arrays of +-1, optional
        The real gauge (``frustration``: its energy, reported in the tables).
        Default: ``RUN/arrays/gauge_real.npz`` when the run directory holds one
        (a frustration run in the same directory writes it), else the gauge of
        :func:`deepglass.solve.frustration` (``replicas`` starts, ``seed``,
        ``method``, ``engine``), saved there.
    nulls : str or sequence of str
        Names of :data:`MONOTONICITY_NULLS` (:func:`parse_nulls`); the default
        ``random-order`` and ``N3`` (both initializations) are the paper's.
        Null gauges are stored in the run (``arrays/monotonicity/``) and reused.
    amplitudes, amplitude_range, amplitude_scale, alpha, batch_size, output
        As in :func:`~deepglass.experiments.alignment.near_monotonicity`
        (a run directory needs an int number of amplitudes).
    seed : int
        Noise (per input), null draws and gauges.
    replicas, method, engine : int, str, str
        The starts, solver and descent engine of the gauges this call solves
        (:func:`deepglass.solve.frustration`; ``engine`` is checked up front).
    device : str
        Where the forward passes and the gauges' solves run (``"cpu"``,
        ``"cuda"``, ``"cuda:N"``).
    ids : sequence of str, optional
        One name per input (default: the batch's own ids, else ``"0"``, ``"1"``, ...).
    frustration : float, optional
        The energy of a given ``sigma_in`` / ``sigma_out`` gauge, for the tables.
    config : mapping, optional
        What the run records besides this call's parameters (the command
        line's model name and input source).
    run : str, Path or RunDir, optional
        Run directory (kind ``"monotonicity"``; its configuration is ``config``
        plus this call's parameters).  Writes ``monotonicity_trials``,
        ``monotonicity_inputs``, ``monotonicity_gamma`` (.parquet),
        ``figures/rho_hist.png`` (Fig. 3), ``figures/rho_vs_amplitude.png``
        (Fig. 4: mean and interquartile band per amplitude),
        ``figures/gamma.png`` (Fig. 5), the report section and
        ``summary.json["monotonicity"]``.
    unit_size : int
        Inputs per unit.
    executor, address, force, progress
        As in :func:`deepglass.runner.run_experiment` (``progress(done, total)``
        counts trials).
    batchnorm, norm, gates
        The capture rules (:meth:`SignedGraph.from_module`) of the signed
        graphs whose gauges give the partial orders (the real network's and
        each null's of the weights); rules other than the defaults are
        recorded in the configuration (``rules``), so a resume with other
        rules is refused.

    Returns
    -------
    MonotonicityExperiment
        The same tables whatever the executor, the split into units or a resume.

    Notes
    -----
    Cost: one frustration solve per null of the weights and for the real
    network (unless stored), then ``(1 + len(nulls)) B K`` forward passes.
    """
    t0 = time.perf_counter()
    nulls = parse_nulls(nulls)
    from ..solve.engines import check_device

    check_device(device)
    check_amplitude_range(amplitude_range)      # before the gauges' solves
    from ..graph.trace import RULES

    rules = {"batchnorm": batchnorm, "norm": norm, "gates": gates}
    for key, value in rules.items():
        if value not in RULES[key]:
            raise DeepglassError(f"{key} must be one of {', '.join(map(repr, RULES[key]))}, "
                                 f"not {value!r}")
    # the rules that differ from the defaults (runs made before them resume)
    rules = {k: v for k, v in rules.items() if v != RULES[k][0]}
    x, ids = as_batch(inputs, ids)
    B, shape = int(x.shape[0]), tuple(x.shape[1:])
    ids = ids or [str(i) for i in range(B)]
    if isinstance(unit_size, bool) or not isinstance(unit_size, (int, np.integer)) or unit_size < 1:
        raise DeepglassError(f"unit_size must be an integer >= 1, got {unit_size!r}")
    if not 0.0 <= float(alpha) < 1.0:
        raise DeepglassError(f"alpha must be in [0, 1), got {alpha!r}")
    counted = isinstance(amplitudes, (int, np.integer)) and not isinstance(amplitudes, bool)
    if run is not None and not (counted and amplitudes >= 1):
        raise DeepglassError(f"a run needs a number of amplitudes >= 1, got {amplitudes!r}")
    amplitudes = int(amplitudes) if counted else amplitude_grid(x, amplitudes)
    from .real_gauge import check_gauge_weights, inputs_digest, weights_digest

    weights = weights_digest(model, None)
    if sigma_in is None:
        check_gauge_weights(run, weights)     # before open_run records this configuration
    settings = {**dict(config or {}), "weights_sha256": weights,
                "inputs_count": B,
                "inputs_digest": hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16],
                "inputs_sha256": inputs_digest(x),
                "amplitudes": amplitudes if counted else list(amplitudes.shape),
                "amplitude_range": [float(v) for v in amplitude_range],
                "amplitude_scale": amplitude_scale, "nulls": list(nulls), "seed": int(seed),
                "replicas": int(replicas), "method": method, "alpha": float(alpha),
                "unit_size": int(unit_size),
                **({"engine": engine} if engine != "auto" else {}),
                **({"output": str(output)} if output is not None else {}),
                **({"rules": rules} if rules else {})}
    from ..runner import open_run

    rd = open_run(run, settings, MonotonicityRun.kind, force)
    gauges = _gauges(model, shape, sigma_in, sigma_out, frustration, nulls, rd,
                     dict(seed=seed, replicas=replicas, method=method, device=device,
                          engine=engine, output=output, rules=rules), weights)
    opts = dict(amplitude_range=amplitude_range, amplitude_scale=amplitude_scale, seed=seed,
                batch_size=batch_size, alpha=float(alpha), device=device, output=output)
    exp = MonotonicityRun(x, ids, amplitudes, settings, gauges, opts, started=t0)
    return run_experiment(exp, rd, executor, address=address, device=device, progress=progress)


def run_monotonicity(run, model: nn.Module, x, ids: Sequence[str] | None = None,
                     **kwargs) -> MonotonicityExperiment:
    """:func:`monotonicity_experiment` into run directory ``run``:
    ``monotonicity_experiment(model, x, ids=ids, run=run, **kwargs)``."""
    return monotonicity_experiment(model, x, ids=ids, run=run, **kwargs)


# -- the run directory's files ---------------------------------------------------------
def _write_run(run, exp: MonotonicityExperiment, alpha: float) -> None:
    run.write_table("monotonicity_trials", exp.trials)
    run.write_table("monotonicity_inputs", exp.inputs)
    run.write_table("monotonicity_gamma", exp.gamma)
    _write_figures(run, exp, alpha)
    run.write_report_section(_report(exp, alpha))
    gt = exp.gamma.set_index("model").astype(object)
    gt = gt.where(gt.notna(), None)  # JSON has no NaN (the random order has no frustration)
    run.update_summary({"monotonicity": {
        "gamma": exp.gammas(), "alpha": float(alpha), "inputs": int(exp.trials["input"].nunique()),
        "amplitudes": int(exp.trials["amplitude_index"].max()) + 1,
        "consistent": gt["consistent"].to_dict(), "class_kept": gt["class_kept"].to_dict(),
        "increasing": gt["increasing"].to_dict(), "frustration": gt["frustration"].to_dict()}})


def _report(exp: MonotonicityExperiment, alpha: float) -> str:
    lines = ["## Near-monotonicity (SPEC §5)", "",
             f"Inputs pushed along the gauge's partial order: `x' = x + sigma_in * eta`, "
             f"`eta ~ U(0, a)`; `rho` = fraction of outputs moving along `sigma_out`. "
             f"gamma at level {1 - alpha:.2f}: the largest gamma with at least that fraction of "
             f"trials at `|2 rho - 1| >= gamma`.", "",
             "| model | gamma | mean rho | increasing | consistent inputs | class kept | "
             "gauge frustration |", "|---|---|---|---|---|---|---|"]
    for r in exp.gamma.itertuples():
        lines.append(f"| {r.model} | {r.gamma:.3f} | {r.rho_mean:.3f} | {r.increasing:.3f} | "
                     f"{r.consistent:.3f} | {r.class_kept:.3f} | {r.frustration:.4f} |")
    nulls = [f"`{k}`: {NULLS[k].description}" for k in exp.gamma["model"] if k in NULLS]
    lines += ["", "Nulls: " + "; ".join(nulls) + "." if nulls else "No nulls.",
              "", f"{exp.gamma['inputs'].iloc[0]} inputs x "
                  f"{int(exp.trials['amplitude_index'].max()) + 1} amplitudes per model.  "
                  "Figures: `figures/rho_hist.png`, `figures/rho_vs_amplitude.png` (mean rho "
                  "and the interquartile band over inputs per amplitude), `figures/gamma.png`; "
                  "tables `monotonicity_*.parquet`."]
    return "\n".join(lines)


def _write_figures(run, exp: MonotonicityExperiment, alpha: float) -> None:
    from matplotlib.figure import Figure

    from .figures import gamma_levels, gamma_per_model, rho_histograms, rho_vs_amplitude

    fig = Figure(figsize=(5.5, 3.8))
    rho_histograms(exp.trials, ax=fig.add_subplot())
    run.save_figure(fig, "rho_hist.png")
    k = exp.trials["model"].nunique()
    fig = Figure(figsize=(3.2 * k, 3.4), layout="constrained")
    rho_vs_amplitude(exp.trials, ax=fig.subplots(1, k, sharey=True, squeeze=False)[0])
    run.save_figure(fig, "rho_vs_amplitude.png")
    fig = Figure(figsize=(9, 3.6))
    left, right = fig.subplots(1, 2)
    gamma_levels(exp.trials, alpha, ax=left)
    gamma_per_model(exp.gamma, exp.inputs, ax=right)
    run.save_figure(fig, "gamma.png")

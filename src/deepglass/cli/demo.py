"""``deepglass demo``: the paper's experiments on the digits CNN, in one run directory.

The demo trains (or loads from the cache) ``digits_cnn`` and runs each step of
:data:`DEMO_STEPS` into the same run directory (default ``runs/demo``); every
step is a resumable run kind of its own, so re-running the demo resumes it.
Each step prints its headline numbers, whatever they turn out to be.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

import typer
from rich.console import Console

from .common import FORCE_OPTION, print_json, resume_hint

#: the demo network and the frustration protocol: the paper's 80 real replicas
#: (one batch: cheap) and half its 80 draws x 2 starts per null, 15-20 s on two
#: CPU cores (``bench/bench_experiment.py`` runs the full protocol)
DEMO_MODEL = "digits_cnn"
DEMO_FRUSTRATION = {"replicas": 80, "null_instances": 40, "starts_per_null": 2,
                    "nulls": ("N1", "N2", "N3-xavier", "N3-he"), "seed": 0}


@dataclass
class DemoContext:
    """What the steps share: the run directory, the network, the output switches."""

    out: str
    force: bool
    model_name: str
    model: object
    input_shape: tuple
    as_json: bool
    console: Console
    results: dict = field(default_factory=dict)


@dataclass
class DemoStep:
    """One step: ``run(ctx)`` writes its run kind into ``ctx.out`` and returns
    its headline numbers (JSON-friendly), also kept in ``ctx.results[name]``."""

    name: str
    title: str
    run: Callable[[DemoContext], dict]


def frustration_step(ctx: DemoContext) -> dict:
    """Frustration of the real weights vs every null model (paper 000, Fig. 2)."""
    from ..experiments.frustration import frustration_vs_nulls
    from .common import unit_progress
    from .frustration import print_stats

    with ExitStack() as bar:  # closed before the table is printed
        res = frustration_vs_nulls(ctx.model, input_shape=ctx.input_shape, run=ctx.out,
                                   force=ctx.force, model_name=ctx.model_name,
                                   progress=unit_progress(bar, "frustration units",
                                                          enabled=not ctx.as_json),
                                   **DEMO_FRUSTRATION)
    if not ctx.as_json:
        print_stats(res, ctx.model_name, None)
    return res.summary()


def _active_step(ctx: DemoContext) -> dict:
    from .active import demo_step

    return demo_step(ctx)


def _monotonicity_step(ctx: DemoContext) -> dict:
    from .monotonicity import demo_step

    return demo_step(ctx)


#: the demo, in order: frustration first, because the other two steps use the
#: gauge it stores in ``arrays/gauge_real.npz`` (the partial order of SPEC §5)
#: and its ``delta``
DEMO_STEPS: list[DemoStep] = [
    DemoStep("frustration", "frustration vs null models", frustration_step),
    DemoStep("active", "active subnetworks of single inputs (delta_x vs delta)", _active_step),
    DemoStep("monotonicity", "near-monotonicity along the frustration gauge",
             _monotonicity_step),
]


def demo_cmd(
    out: str = typer.Option("runs/demo", "--out", help="Run directory."),
    force: bool = FORCE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
):
    """Train (or load) the digits CNN and run the paper's experiments on it into
    one run directory with a report (a minute or two on a laptop CPU)."""
    from ..store import check_out_dir
    from ..zoo import load_model

    check_out_dir(out)
    con = Console(stderr=as_json)
    t0 = time.perf_counter()
    con.print(f"[bold]deepglass demo[/bold]: {DEMO_MODEL} -> {out}")
    model = load_model(DEMO_MODEL, pretrained=True)
    info = getattr(model, "training_info", {}) or {}
    if "test_accuracy" in info:
        con.print(f"{DEMO_MODEL}: test accuracy {info['test_accuracy']:.3f}"
                  f"{' (cached)' if info.get('cached') else ' (trained now)'}")
    ctx = DemoContext(out=out, force=force, model_name=DEMO_MODEL, model=model,
                      input_shape=tuple(model.default_input_shape), as_json=as_json,
                      console=con)
    with resume_hint(out):
        for i, step in enumerate(DEMO_STEPS, 1):
            con.print(f"\n[bold]step {i}/{len(DEMO_STEPS)}[/bold]: {step.title}")
            ctx.results[step.name] = step.run(ctx)
    seconds = time.perf_counter() - t0
    if as_json:
        print_json({"out": out, "model": DEMO_MODEL, "seconds": seconds, **ctx.results})
        return
    con.print(f"\nrun directory: {out} (report: {out}/report.md, "
              f"figures in {out}/figures/); {seconds:.0f} s")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)

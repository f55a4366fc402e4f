"""``deepglass demo``: the paper's experiments on the digits CNN, in one run directory.

Parses the options and prints; the demo itself is
:func:`deepglass.experiments.demo.run_demo` (one call from Python).
"""

from __future__ import annotations

from contextlib import ExitStack

import typer
from rich.console import Console

from .common import FORCE_OPTION, print_json, resume_hint, unit_progress


def _print_frustration(res, headline: dict, con: Console) -> None:
    from .frustration import print_stats

    print_stats(res, "digits_cnn", None)


def _print_active(table, h: dict, con: Console) -> None:
    con.print(f"{len(table)} inputs: mean delta_x {h['delta_x_mean']:.4f}, "
              f"median {h['delta_x_median']:.4f}, delta {h['delta']:.4f}")
    con.print(h["verdict"])


def _print_monotonicity(exp, h: dict, con: Console) -> None:
    from ..experiments.demo import DEMO_MONOTONICITY
    from .monotonicity import print_gamma_table

    p = DEMO_MONOTONICITY
    print_gamma_table(exp.gamma, f"digits_cnn: near-monotonicity, {p['n']} inputs x "
                                 f"{p['amplitudes']} amplitudes", con)


def _resumed(result) -> int:
    """Units of a step's result read back from the run directory (a resumed
    demo): ``info["resumed"]`` of the frustration and monotonicity runs, the
    active table's ``attrs["resumed_units"]``."""
    info = getattr(result, "info", None)
    if isinstance(info, dict):
        return int(info.get("resumed") or 0)
    return int((getattr(result, "attrs", None) or {}).get("resumed_units") or 0)


#: how each step's result is printed
PRINTERS = {"frustration": _print_frustration, "active": _print_active,
            "monotonicity": _print_monotonicity}


def demo_cmd(
    out: str = typer.Option("runs/demo", "--out", help="Run directory."),
    force: bool = FORCE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
):
    """Train (or load) the digits CNN and run the paper's experiments on it into
    one run directory with a report (about half a minute on a 2-core CPU)."""
    from ..experiments.demo import DEMO_MODEL, run_demo
    from ..store import check_out_dir
    from ..zoo import load_model

    check_out_dir(out)
    con = Console(stderr=as_json)
    con.print(f"[bold]deepglass demo[/bold]: {DEMO_MODEL} -> {out}")
    model = load_model(DEMO_MODEL, pretrained=True)
    info = getattr(model, "training_info", {}) or {}
    if "test_accuracy" in info:
        con.print(f"{DEMO_MODEL}: test accuracy {info['test_accuracy']:.3f}"
                  f"{' (cached)' if info.get('cached') else ' (trained now)'}")
    with resume_hint(out), ExitStack() as bars:
        def on_step(i: int, name: str, title: str) -> None:
            con.print(f"\n[bold]step {i}/3[/bold]: {title}")

        def on_result(name: str, result, headline: dict) -> None:
            bars.close()  # the step's progress bar ends before its numbers
            if not as_json:
                PRINTERS[name](result, headline, con)
                if resumed := _resumed(result):
                    con.print(f"({resumed} finished units of this step read back from {out})")

        res = run_demo(out, force=force, model=model,
                       progress=lambda what: unit_progress(bars, what, enabled=not as_json),
                       on_step=on_step, on_result=on_result)
    if as_json:
        print_json(res.summary())
        return
    con.print(f"\nrun directory: {out} (report: {out}/report.md, "
              f"figures in {out}/figures/); {res.seconds:.0f} s")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)

"""``deepglass monotonicity``: the near-monotonicity test of SPEC §5 (paper 000,
Figs. 3-5): parses the options, calls
:func:`deepglass.experiments.monotonicity.monotonicity_experiment` (in this
process or on Ray, in memory or as a resumable run directory) and prints."""

from __future__ import annotations

from contextlib import ExitStack
from typing import List, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .common import (check_force, ADDRESS_OPTION, ARCH_OPTION, BATCHNORM_OPTION, DEVICE_OPTION,
                    ENGINE_OPTION, EXECUTOR_OPTION, FORCE_OPTION, GATES_OPTION, INPUT_SHAPE_OPTION,
                    JSON_OPTION, NORM_OPTION, OUT_OPTION, TRUST_PICKLE_OPTION, check_rules,
                    load_network, print_json, resume_hint, single_input, unit_progress, reused_note)


def _range(text: str) -> tuple[float, float]:
    from ..errors import DeepglassError

    from ..experiments.alignment import check_amplitude_range

    try:
        lo, hi = (float(t) for t in text.split(","))
    except ValueError:
        raise DeepglassError(f"--amplitude-range must look like LOW,HIGH, got {text!r}") from None
    return check_amplitude_range((lo, hi), "--amplitude-range")


def print_gamma_table(gamma, title: str, console: Console | None = None) -> None:
    """The per-model summary (gamma, mean rho, consistency, class kept) as a table."""
    t = Table(title=title)
    # median |2 rho - 1|, fraction of trials with rho > 1/2, of inputs with one
    # direction at all amplitudes, of trials keeping the class; the gauge's delta
    for c in ("model", "gamma", "med d", "rho", "incr", "consist", "kept", "delta"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in gamma.itertuples():
        t.add_row(r.model, f"{r.gamma:.3f}", f"{r.gamma_median:.3f}", f"{r.rho_mean:.3f}",
                  f"{r.increasing:.3f}", f"{r.consistent:.3f}", f"{r.class_kept:.3f}",
                  "-" if r.frustration != r.frustration else f"{r.frustration:.4f}")
    (console or Console()).print(t)


#: ``--nulls`` help: the registry's nulls that run forward (a test keeps it in step with
#: ``deepglass.experiments.monotonicity.MONOTONICITY_NULLS``; importing the registry here
#: would load torch for every command)
NULLS_HELP = ("Null models, comma-separated names or aliases of the null registry: "
              "random-order (random partial order), N1, N3-xavier, N3-he, N3 (= N3-xavier + "
              "N3-he), all; '' for none.")


def monotonicity_cmd(
    model: str = typer.Argument(..., help="A zoo name or a model file (see `deepglass graph`)."),
    inputs: str = typer.Option(..., "--inputs", help="digits, mnist, skimage, sklearn-images, "
                               "a folder of images or of .npy/.npz/.pt files, or one such tensor file."),
    n: Optional[int] = typer.Option(None, "--n", help="Number of inputs (default: all)."),
    amplitudes: int = typer.Option(100, "--amplitudes", help="Amplitudes per input."),
    amplitude_range: str = typer.Option("1e-3,1", "--amplitude-range",
                                        help="Geometric grid LOW,HIGH in units of each input's std."),
    nulls: str = typer.Option("random-order,N3", "--nulls", help=NULLS_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of inputs subset, noise, nulls and gauges."),
    replicas: int = typer.Option(80, "--replicas", help="Start gauges of each frustration run."),
    alpha: float = typer.Option(0.05, "--alpha", help="gamma at level 1 - alpha, in [0, 1) (0: the largest)."),
    unit_size: int = typer.Option(100, "--unit-size", help="Inputs per unit."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Forward batch size."),
    device: str = DEVICE_OPTION,
    engine: str = ENGINE_OPTION,
    input_shape: Optional[List[str]] = INPUT_SHAPE_OPTION,
    batchnorm: str = BATCHNORM_OPTION,
    norm: str = NORM_OPTION,
    gates: str = GATES_OPTION,
    arch: Optional[str] = ARCH_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    out: Optional[str] = OUT_OPTION,
    force: bool = FORCE_OPTION,
    executor: Optional[str] = EXECUTOR_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
    output: Optional[str] = typer.Option(None, "--output", help="The output (name or index) "
                                         "whose values move (default: the first; see "
                                         "`deepglass graph`)."),
    as_json: bool = JSON_OPTION,
):
    """Push inputs along the frustration gauge's partial order and measure how
    consistently the outputs follow (rho, gamma), against null models.  With
    --out, the real gauge is read from RUN/arrays/gauge_real.npz when a
    frustration run shares the directory."""
    from ..experiments.monotonicity import (check_batch_memory, monotonicity_experiment,
                                            parse_nulls)
    from ..inputs import load_inputs
    from ..solve.engines import check_device, check_engine

    check_device(device)
    check_engine(engine, "descent", device)
    amp_range = _range(amplitude_range)
    check_rules(batchnorm, norm, gates)
    if out:
        from ..store import check_out_dir

        check_out_dir(out)
    net, shape = load_network(model, input_shape, arch, trust_pickle)
    single_input(shape, model, "--inputs")
    null_list = parse_nulls(nulls)
    if not (out and _has_gauge(out)):
        from ..graph import SignedGraph
        from ..solve.engines import check_fits

        # the frustration gauge's descent, refused before the progress bar
        check_fits(SignedGraph.from_module(net, shape, output=output, batchnorm=batchnorm,
                                           norm=norm, gates=gates), replicas, "descent",
                   engine, device)
    batch = load_inputs(inputs, shape, n=n, seed=seed)
    if batch_size is not None:       # before the progress bar and the gauge's solve
        check_batch_memory(batch_size, int(np.prod(shape)), len(batch) * amplitudes)
    config = {"model": model, "inputs": inputs, "n": n, "input_shape": list(shape)}
    check_force(force, out)
    with resume_hint(out), ExitStack() as stack:
        exp = monotonicity_experiment(
            net, batch, nulls=null_list, amplitudes=amplitudes,
            amplitude_range=amp_range, seed=seed, replicas=replicas, alpha=alpha,
            batch_size=batch_size, device=device, engine=engine, output=output, run=out,
            unit_size=unit_size, config=config, force=force, executor=executor,
            address=address, progress=unit_progress(stack, "trials", enabled=not as_json),
            batchnorm=batchnorm, norm=norm, gates=gates)
    if as_json:
        print_json({"model": model, "inputs": inputs, "n_inputs": len(batch),
                    "amplitudes": amplitudes, "alpha": alpha, "gamma": exp.gammas(),
                    "table": [{k: None if isinstance(v, float) and v != v else v
                               for k, v in row.items()}  # JSON has no NaN
                              for row in exp.gamma.to_dict(orient="records")],
                    "skipped": batch.skipped, "out": out, "seconds": exp.seconds,
                    "computed_units": exp.info.get("computed"),
                    "resumed_units": exp.info.get("resumed")})
        return
    print_gamma_table(exp.gamma, f"{model}: near-monotonicity, {len(batch)} inputs x "
                                 f"{amplitudes} amplitudes ({exp.seconds:.1f} s)")
    if out:
        resumed = exp.info.get("resumed")
        Console().print(f"run directory: {out} (report.md, figures/rho_hist.png, "
                        "figures/rho_vs_amplitude.png, figures/gamma.png)"
                        + reused_note(resumed or 0))


def _has_gauge(out: str) -> bool:
    """Whether run directory ``out`` already holds the real gauge (no descent then)."""
    from pathlib import Path

    from ..experiments.frustration import GAUGE_ARRAYS

    return (Path(out) / "arrays" / f"{GAUGE_ARRAYS}.npz").exists()


def register(app: typer.Typer) -> None:
    app.command("monotonicity")(monotonicity_cmd)

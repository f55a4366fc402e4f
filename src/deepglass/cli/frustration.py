"""``deepglass frustration``: the frustration of a network (SPEC §2), and with
``--nulls`` / ``--out`` the experiment real weights vs null models (SPEC §3)
in a resumable run directory."""

from __future__ import annotations

from contextlib import ExitStack
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import DeepglassError
from .common import (ADDRESS_OPTION, ARCH_OPTION, BATCHNORM_OPTION, DEVICE_OPTION, ENGINE_OPTION,
                    EXECUTOR_OPTION, FORCE_OPTION, GATES_OPTION, INPUT_SHAPE_OPTION, JSON_OPTION,
                    NORM_OPTION, OUT_OPTION, TRUST_PICKLE_OPTION, check_rules, load_graph, load_network, print_json, progress,
                    resume_hint, unit_progress, reused_note)


#: defaults of the experiment's own options (given without --nulls/--out: refused)
NULL_INSTANCES, STARTS_PER_NULL = 80, 2


def frustration_cmd(
    model: str = typer.Argument(..., help="A zoo name or a model file (see `deepglass graph`)."),
    method: str = typer.Option("descent", "--method",
                               help="descent (default), anneal, greedy, exact, or auto (greedy up to "
                                    "2 million edges, else descent)."),
    replicas: int = typer.Option(80, "--replicas", help="Start gauges."),
    seed: int = typer.Option(0, "--seed", help="Seed of the start gauges (and of the null "
                             "models with --nulls)."),
    init: str = typer.Option("random", "--init", help="random or paper (10^6 random flips)."),
    device: str = DEVICE_OPTION,
    engine: str = ENGINE_OPTION,
    time_limit: Optional[float] = typer.Option(
        None, "--time-limit", help="Seconds the exact MILP may take (--method exact; default "
                                   "60); beyond them the best value found and a lower bound."),
    input_shape: Optional[List[str]] = INPUT_SHAPE_OPTION,
    batchnorm: str = BATCHNORM_OPTION,
    norm: str = NORM_OPTION,
    gates: str = GATES_OPTION,
    arch: Optional[str] = ARCH_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    save: Optional[str] = typer.Option(None, "--save", help="Write the result (PATH.npz + PATH.json)."),
    output: Optional[str] = typer.Option(None, "--output", help="The output (name or index) "
                                         "whose nodes the result's sigma_out holds (--save; "
                                         "default: the first; see `deepglass graph`)."),
    as_json: bool = JSON_OPTION,
    nulls: Optional[str] = typer.Option(
        None, "--nulls", help="Compare with null models of the weights, comma-separated names "
                              "or aliases of the null registry: N1, N2, N3-xavier, N3-he, "
                              "N3 (= N3-xavier + N3-he), all."),
    null_instances: int = typer.Option(NULL_INSTANCES, "--null-instances",
                                       help="Draws of each null model."),
    starts_per_null: int = typer.Option(STARTS_PER_NULL, "--starts-per-null",
                                        help="Start gauges per draw."),
    replicas_per_unit: Optional[int] = typer.Option(
        None, "--replicas-per-unit", help="Real replicas per stored unit (default: all)."),
    draws_per_unit: Optional[int] = typer.Option(
        None, "--draws-per-unit", help="Null draws solved together as one batch (default: "
                                       "as many as fit, with the matrix-free engine; 1 with "
                                       "the compiled one). The numbers do not depend on it."),
    out: Optional[str] = OUT_OPTION,
    force: bool = FORCE_OPTION,
    executor: Optional[str] = EXECUTOR_OPTION,
    address: Optional[str] = ADDRESS_OPTION,
):
    """Compute the frustration of a network's signed graph; with --nulls or
    --out, compare it with null models in a run directory."""
    import deepglass
    from ..solve.engines import check_device, check_engine, check_fits
    from ..store import check_out_dir, check_save_path

    check_device(device)
    check_engine(engine, method, device)
    check_rules(batchnorm, norm, gates)
    if time_limit is not None and method != "exact":
        raise DeepglassError("--time-limit applies to --method exact")
    if out is not None:
        check_out_dir(out)           # before loading or computing anything
    if save is not None:
        check_save_path(save)
    if nulls is not None or out is not None:
        if save is not None or output is not None:
            raise DeepglassError(f"{'--save' if save is not None else '--output'} is for a "
                                 "single computation; with --nulls/--out the results go to "
                                 "the run directory (--out)")
        return experiment(model, nulls=nulls or "", replicas=replicas,
                          null_instances=null_instances, starts_per_null=starts_per_null,
                          replicas_per_unit=replicas_per_unit, method=method, seed=seed,
                          init=init, device=device, input_shape=input_shape,
                          batchnorm=batchnorm, norm=norm, gates=gates, arch=arch, trust_pickle=trust_pickle, out=out,
                          force=force, executor=executor, address=address, as_json=as_json,
                          engine=engine, draws_per_unit=draws_per_unit,
                          time_limit=time_limit)
    if executor not in (None, "inprocess") or address:
        raise DeepglassError("--executor/--address apply to experiments (--nulls or --out)")
    # options of the experiment alone: refused rather than silently ignored
    given = [opt for opt, on in (("--null-instances", null_instances != NULL_INSTANCES),
                                 ("--starts-per-null", starts_per_null != STARTS_PER_NULL),
                                 ("--replicas-per-unit", replicas_per_unit is not None),
                                 ("--draws-per-unit", draws_per_unit is not None),
                                 ("--force", force)) if on]
    if given:
        raise DeepglassError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to "
                             "experiments (--nulls or --out)")
    options = {"engine": engine} if method in ("descent", "auto") else {}
    if time_limit is not None:
        options["time_limit"] = time_limit
    from ..solve import check_method

    check_method(method)
    if init not in ("random", "paper"):
        raise DeepglassError(f"--init must be random or paper, not {init!r}")
    _, _, g = load_graph(model, input_shape, batchnorm, arch, trust_pickle, device="cpu",
                         gates=gates, norm=norm)
    if output is not None:
        g = g.select_output(output)
    check_fits(g, replicas, method, engine, device)   # before the progress bar
    with progress(method, None, enabled=not as_json) as sweep:
        res = deepglass.frustration(g, method=method, replicas=replicas, seed=seed, init=init,
                                    device=device, callback=lambda k, n: sweep(k), **options)
    if save is not None:
        res.save(save)
    if as_json:
        # 'delta', the best value found, as an experiment's --json has it (whose
        # 'frustration' holds the sample means per kind)
        print_json({"model": model, "nodes": g.n_nodes, "edges": g.n_edges,
                    **({"output": g.output_name} if output is not None else {}),
                    **res.summary(), "delta": float(res.frustration)})
        return
    if method == "exact":   # "exact" only where certified
        from ..solve.exact import certificate

        cert = certificate(res.info.get("optimal"), res.frustration, res.info.get("lower_bound"))
        what = "exact" if res.info.get("optimal") else "exact solver, not certified"
        title = f"{model}: frustration ({what}, one solve, {res.seconds:.2f} s)"
    else:
        cert = None
        title = f"{model}: frustration ({method}, {replicas} replicas, {res.seconds:.2f} s)"
    t = Table(title=title, min_width=len(title))      # the title on one line where it fits
    t.add_column("quantity")
    t.add_column("value", justify="right")
    # a heuristic's best is an upper bound on delta (its replicas' least energy)
    t.add_row("frustration delta" if method == "exact" else
              "frustration delta (best found: an upper bound)", f"{res.frustration:.6f}")
    if cert is not None:
        t.add_row("certification", cert)
    t.add_row("mean energy", f"{res.energies.mean():.6f}")
    t.add_row("std energy", f"{res.energies.std():.6f}")
    t.add_row("all at local minima", str(bool(res.local_min.all())))
    for k, v in res.info.items():
        t.add_row(k, str(v))
    Console().print(t)


def experiment(model: str, *, nulls: str, replicas: int, null_instances: int,
               starts_per_null: int, replicas_per_unit: int | None, method: str, seed: int,
               init: str, device: str, input_shape, batchnorm: str,
               arch: str | None, trust_pickle: bool, out: str | None, force: bool,
               executor: str, address: str | None, as_json: bool, engine: str = "auto",
               draws_per_unit: int | None = None, time_limit: float | None = None,
               norm: str = "fold", gates: str = "scale"):
    """Real weights vs null models; prints the statistics and the verdict."""
    from ..experiments.frustration import frustration_vs_nulls
    from ..experiments.frustration_stats import stats_records

    net, shape = load_network(model, input_shape, arch, trust_pickle)
    with resume_hint(out), ExitStack() as stack:
        res = frustration_vs_nulls(
            net, replicas=replicas, null_instances=null_instances,
            starts_per_null=starts_per_null, nulls=nulls, method=method, seed=seed,
            executor=executor, address=address, run=out, force=force, input_shape=shape,
            batchnorm=batchnorm, norm=norm, gates=gates, init=init, replicas_per_unit=replicas_per_unit, device=device,
            model_name=model,
            draws_per_unit=draws_per_unit, **({"engine": engine} if engine != "auto" else {}),
            **({"time_limit": time_limit} if time_limit is not None else {}),
            progress=unit_progress(stack, "units", enabled=not as_json))
    if as_json:
        print_json({"model": model, "nodes": res.info["nodes"], "edges": res.info["edges"],
                    "out": out, "resumed_units": res.info["resumed"],
                    "stats": stats_records(res.stats), **res.summary()})
        return
    print_stats(res, model, out)


def print_stats(res, model: str, out: str | None) -> None:
    """The statistics table and the verdict of a frustration experiment."""
    c = res.config
    # (without nulls: the real weights alone, no draws to describe)
    any_null = bool(c.get("nulls"))
    if c["method"] == "exact":   # deterministic: one solve of the real graph and of each draw
        cert = res.summary().get("certification") or {}
        solves = sum(v["solves"] for v in cert.values())
        certified = sum(v["certified"] for v in cert.values())
        what = (f"{certified} of {solves} solves certified optimal" if cert
                else "certification not recorded")
        title = f"{model}: frustration, real (one exact solve)" + (
            f" vs null models ({c['null_instances']} draws, one solve each)" if any_null
            else "") + f"; {what}"
    else:
        title = f"{model}: frustration, real ({c['replicas']} replicas)" + (
            f" vs null models ({c['null_instances']} x {c['starts_per_null']} starts)"
            if any_null else "") + f"; {c['method']}"
    t = Table(title=title, min_width=len(title))      # the title on one line where it fits
    for col in ("kind", "n", "mean", "std", "min", "Welch t", "p"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for r in res.stats.itertuples():
        t.add_row(r.kind, str(r.n), f"{r.mean:.6f}", "-" if r.std != r.std else f"{r.std:.6f}",
                  f"{r.min:.6f}", "-" if r.t != r.t else f"{r.t:.2f}",
                  "-" if r.p != r.p else f"{r.p:.3g}")
    con = Console()
    con.print(t)
    con.print(res.verdict)
    if out:
        con.print(f"run directory: {out}{reused_note(res.info['resumed'])}; report: {out}/report.md")


def register(app: typer.Typer) -> None:
    app.command("frustration")(frustration_cmd)

"""``deepglass active``: the active subnetwork of each input and its frustration
``delta_x`` against the whole network's ``delta`` (SPEC §4; paper 000, Fig. 2
inset), in memory or as a resumable run directory."""

from __future__ import annotations

import math
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import (check_force, ADDRESS_OPTION, ARCH_OPTION, BATCHNORM_OPTION, DEVICE_OPTION,
                    ENGINE_OPTION, EXECUTOR_OPTION, FORCE_OPTION, GATES_OPTION,
                    INPUT_SHAPE_OPTION, JSON_OPTION, NORM_OPTION, OUT_OPTION,
                    TRUST_PICKLE_OPTION, build_graph, check_rules, load_network, print_json,
                    resume_hint, single_input, unit_progress, reused_note)

#: rows of the per-input table printed on the terminal (all are in active.parquet)
SHOWN_ROWS = 20


def _json_rows(table) -> list[dict]:
    cols = [c for c in ("index", "input", "pred", "target", "nodes", "edges", "abs_weight", "frac_nodes",
                        "frac_edges", "delta_x", "method", "optimal", "lower_bound")
            if c in table.columns]
    rows = table[cols].to_dict(orient="records")
    out = []
    for r in rows:
        r = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        if r.get("method") == "exact":
            # certified optimal, or the best value found within the time limit
            # (an upper bound) with its proven lower bound
            r["optimal"] = bool(r["optimal"])
            r["gap"] = float(r["delta_x"] - r["lower_bound"])
            r["certification"] = _certificate(r)
        else:   # only exact certifies (or an input without edges): no such fields
            for k in ("optimal", "lower_bound"):
                r.pop(k, None)
        out.append(r)
    return out


def _certificate(r) -> str:
    from ..solve.exact import certificate

    return certificate(r["optimal"], r["delta_x"], r["lower_bound"])


def active_cmd(
    model: str = typer.Argument(..., help="A zoo name or a model file (see `deepglass graph`)."),
    inputs: str = typer.Option(..., "--inputs", help="digits, mnist, skimage, sklearn-images, "
                               "a folder of images or of .npy/.npz/.pt files, or one such tensor file."),
    n: Optional[int] = typer.Option(None, "--n", help="Number of inputs (default: all)."),
    method: str = typer.Option("auto", "--method", help="Solver of each active subgraph: auto "
                               "(greedy up to 2M edges, else descent), descent, anneal, greedy "
                               "or exact (which also certifies the whole network's delta up to "
                               "25 nodes)."),
    replicas: int = typer.Option(8, "--replicas", help="Start gauges per input (and for the "
                                 "whole network when its delta is computed here)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the input subset and start gauges."),
    unit_size: int = typer.Option(50, "--unit-size", help="Inputs per resumable unit."),
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
    engine: str = ENGINE_OPTION,
    device: str = DEVICE_OPTION,
    time_limit: Optional[float] = typer.Option(
        None, "--time-limit", help="Seconds each input's exact MILP may take (--method exact; "
                                   "default 60); beyond them the best value found, not "
                                   "certified, and a lower bound."),
    output: Optional[str] = typer.Option(None, "--output", help="The output (name or index) "
                                         "whose predicted node each subnetwork keeps "
                                         "(default: the first; see `deepglass graph`)."),
    target: str = typer.Option("pred", "--target", help="The output nodes each subnetwork "
                               "ends in: pred (the predicted class, as in the paper), all "
                               "(every output node: detectors, segmenters, regressions) or "
                               "label (each input's true class; digits, mnist, class "
                               "folders, tensor files with labels)."),
    as_json: bool = JSON_OPTION,
):
    """Extract the active subnetwork of each input and compare its frustration
    delta_x with the frustration delta of the whole network."""
    import time
    import warnings
    from contextlib import ExitStack

    from ..errors import DeepglassError
    from ..experiments.active import active_summary_stats, certification_note, exact_rows
    from ..experiments.active_run import run_active, verdict
    from ..inputs import load_inputs
    from ..solve.engines import check_device, check_engine

    if target not in ("pred", "all", "label"):
        raise DeepglassError(f"--target must be pred, all or label, got {target!r}")
    check_rules(batchnorm, norm, gates)
    from ..solve import check_method

    check_method(method)                    # before the network loads
    check_device(device)
    check_engine(engine, "descent" if method == "auto" else method, device)
    if time_limit is not None and method != "exact":
        raise DeepglassError("--time-limit applies to --method exact")
    if out:
        from ..store import check_out_dir

        check_out_dir(out)
    t0 = time.perf_counter()
    net, shape = load_network(model, input_shape, arch, trust_pickle)
    single_input(shape, model, "--inputs")      # before the capture
    # the graph, the whole network's descent, the forward passes that find
    # each input's active nodes and the subgraphs' solves: all on the device
    graph = build_graph(net, shape, model, batchnorm, output=output, norm=norm, gates=gates,
                        device=device)
    net.to(graph.device)
    batch = load_inputs(inputs, shape, n=n, seed=seed)
    if target == "label":
        if batch.labels is None:
            raise DeepglassError(f"--target label: the inputs {inputs!r} have no labels "
                                 "(digits, mnist, class folders and tensor files with "
                                 "'labels' have)")
        ends = batch.labels
        if len(graph.outputs) > 1 and output is None:
            # labels index one head: say which, where the network has several
            warnings.warn(f"--target label: the labels index the output "
                          f"{graph.output_name!r}, the first of {len(graph.outputs)} "
                          f"({', '.join(graph.outputs)}); choose another with --output",
                          UserWarning, stacklevel=2)
    else:
        ends = target
    # the run's configuration: what determines the inputs (the solver's part
    # is added by run_active)
    config = {"model": model, "inputs": inputs, "n": n, "input_shape": list(shape),
              "ids_first": batch.ids[0], "ids_last": batch.ids[-1],
              # the capture rules where not the default (runs made before the
              # options, and the demo's, resume; other rules are another configuration)
              **({"batchnorm": batchnorm} if batchnorm != "fold" else {}),
              **({"norm": norm} if norm != "fold" else {}),
              **({"gates": gates} if gates != "scale" else {})}
    check_force(force, out)
    with resume_hint(out), ExitStack() as stack:
        table = run_active(out, net, graph, batch.x, batch.ids, method=method,
                           replicas=replicas, seed=seed, unit_size=unit_size, config=config,
                           force=force, executor=executor, address=address,
                           progress=unit_progress(stack, "inputs", enabled=not as_json),
                           target=ends,
                           # certified delta_x against a certified delta where it can be
                           **({"whole_method": "exact"} if method == "exact" else {}),
                           **({"engine": engine} if engine != "auto" else {}),
                           **({"time_limit": time_limit} if time_limit is not None else {}))
    delta = float(table["delta"].iloc[0])
    source = table.attrs.get("delta_source", "")
    stats = active_summary_stats(table, delta)
    note = certification_note(stats, time_limit)
    seconds = time.perf_counter() - t0
    if as_json:
        print_json({"model": model, "inputs": inputs, "target": target, "nodes": graph.n_nodes,
                    "edges": graph.n_edges, "delta": delta, "delta_source": source,
                    "summary": stats,
                    "verdict": verdict(stats),
                    **({"time_limit": time_limit} if time_limit is not None else {}),
                    **({"certification": note} if note else {}),
                    "table": _json_rows(table),
                    "skipped": batch.skipped, "out": out,
                    "resumed_units": table.attrs.get("resumed_units", 0), "seconds": seconds})
        return
    t = Table(title=f"{model}: active subnetworks of {len(table)} inputs ({seconds:.1f} s); "
                    f"whole network: {graph.n_nodes:,} nodes, {graph.n_edges:,} edges, "
                    f"delta = {delta:.4f}" + (f" ({source})" if source else ""))
    exact = exact_rows(table) is not None
    cols = ["input", "pred"] + (["target"] if target == "label" else []) + \
        ["nodes", "edges", "|weight| kept (fraction)", "delta_x"] + \
        (["lower bound", "certified optimal"] if exact else [])
    for c in cols:
        t.add_column(c, justify="left" if c == "input" else "right")
    for r in table.head(SHOWN_ROWS).itertuples():
        cert = []
        if exact:
            done = getattr(r, "method") == "exact"
            cert = [f"{r.lower_bound:.4f}" if done else "-",
                    ("yes" if r.optimal else f"no, gap {r.delta_x - r.lower_bound:.4f}")
                    if done else "-"]
        t.add_row(str(r.input), str(r.pred), *([str(r.target)] if target == "label" else []),
                  f"{r.nodes:,}", f"{r.edges:,}",
                  f"{r.frac_abs_weight:.3f}",
                  "-" if r.delta_x != r.delta_x else f"{r.delta_x:.4f}", *cert)
    con = Console()
    con.print(t)
    if len(table) > SHOWN_ROWS:
        con.print(f"... {len(table) - SHOWN_ROWS} more inputs"
                  + (f" in {out}/active.parquet" if out else " (use --out or --json)"))
    mean = stats["delta_x_mean"]
    con.print(f"mean delta_x {mean:.4f}, median {stats['delta_x_median']:.4f}, delta "
              f"{delta:.4f}" if mean is not None else "no active subnetwork had an edge")
    con.print(verdict(stats))
    if note:
        con.print(note[0].upper() + note[1:] + ".")
    if out:
        resumed = table.attrs.get("resumed_units", 0)
        con.print(f"run directory: {out} (report.md, active.parquet, figures/active_delta_x.png)"
                  + reused_note(resumed))


def register(app: typer.Typer) -> None:
    app.command("active")(active_cmd)

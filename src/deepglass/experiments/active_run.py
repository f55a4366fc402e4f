"""Active subnetworks of many inputs against the whole network (SPEC §4; paper
000, Fig. 2 inset), as a table, a figure and a resumable run.

- :func:`active_table`: one row per input (kept nodes, edges, ``|weight|``,
  ``delta_x``), with ``delta`` of the whole network as a column;
- :func:`whole_delta`: ``delta`` and the best gauge of the whole network;
- :func:`run_active`: the same in a run directory (kind ``"active"``), one
  unit per batch of inputs, resumed after an interruption; writes
  ``active.parquet``, ``figures/active_delta_x.png``, the report section and
  ``summary.json["active"]``;
- :func:`delta_x_histogram`: the figure (``delta_x`` histogram, ``delta``
  marked).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..errors import DeepglassError
from ..graph import SignedGraph
from ..solve import EXPLICIT_LIMIT, choose_method  # the "auto" rule
from .active import active_subgraph, active_summary_stats

__all__ = ["active_table", "whole_delta", "run_active", "delta_x_histogram", "verdict"]


def _method(method: str, n_edges: int) -> str:
    return choose_method(n_edges, method)


def whole_delta(graph: SignedGraph, method: str = "auto", replicas: int = 8, seed: int = 0,
                **options):
    """Frustration ``delta`` of the whole network (SPEC §2) for comparison with
    ``delta_x``: :func:`deepglass.frustration` with ``method`` (``auto``:
    Algorithm 1 up to 2 million edges, else matrix-free descent).

    Returns
    -------
    FrustrationResult
    """
    from ..solve import frustration

    m = _method(method, graph.n_edges)
    if m == "exact":
        m = "greedy"   # a certified optimum of a whole network is out of reach
    if m != "descent":
        options.pop("engine", None)   # the descent's engine; other methods have none
    return frustration(graph, method=m, replicas=replicas, seed=seed, **options)


def active_table(graph: SignedGraph, model: nn.Module, x, ids: Sequence | None = None, *,
                 delta: float | None = None, method: str = "auto", replicas: int = 8,
                 seed: int = 0, warm_start: np.ndarray | None = None,
                 batch_size: int | None = None, first_index: int = 0,
                 progress: Callable[[int], None] | None = None, **options) -> pd.DataFrame:
    """Active subnetwork and ``delta_x`` of every input (SPEC §4).

    Parameters
    ----------
    graph, model
        The network's :class:`SignedGraph` and the module it was traced from.
    x : tensor (B, \\*input_shape)
    ids : sequence, optional
        Input names (default ``"0".."B-1"``, offset by ``first_index``).
    delta : float, optional
        Frustration of the whole network, added as column ``delta`` (and
        ``below_delta``).
    method : {"auto", "descent", "anneal", "greedy", "exact"}
        Solver of each active subgraph (:func:`~deepglass.experiments.active.active_frustration`).
    replicas, seed
        Start gauges per input; the same seed for every input, so a row does
        not depend on the batch it was computed in.
    warm_start : ndarray (n,), optional
        The whole network's best gauge, used as the first start gauge.
    batch_size : int, optional
        Inputs extracted at once (:func:`active_subgraph`).
    first_index : int
        Index of the first row (column ``index``).
    progress : callable, optional
        Called with 1 after each input.

    Returns
    -------
    DataFrame
        One row per input: ``index``, ``input``, ``pred``, ``nodes``, ``edges``,
        ``abs_weight``, ``active_nodes``, ``frac_nodes``, ``frac_edges``,
        ``frac_abs_weight``, ``delta_x``, ``delta_x_mean``, ``local_min``,
        ``method``, ``solve_seconds`` (plus ``lower_bound``, ``optimal`` for
        ``exact``), ``extract_seconds`` and, given ``delta``, ``delta`` and
        ``below_delta``.
    """
    x = torch.as_tensor(x)
    B = x.shape[0] if x.ndim == len(graph.input_shape) + 1 else 1
    ids = [str(first_index + i) for i in range(B)] if ids is None else [str(i) for i in ids]
    subs = active_subgraph(graph, model, x, ids=np.asarray(ids, dtype=object),
                           batch_size=batch_size)
    table = subs.frustration(method=method, replicas=replicas, seed=seed,
                             warm_start=warm_start, explicit_limit=EXPLICIT_LIMIT,
                             callback=(lambda k: progress(1)) if progress else None, **options)
    table.insert(0, "index", np.arange(first_index, first_index + len(table)))
    table["input"] = table["input"].astype(str)
    table["extract_seconds"] = subs.seconds / max(len(table), 1)
    if delta is not None:
        table["delta"] = float(delta)
        table["below_delta"] = table["delta_x"] < float(delta)
    return table


def verdict(stats: Mapping) -> str:
    """One honest sentence on ``delta_x`` against ``delta`` (paper: nearly always below)."""
    f = stats.get("frac_below_delta")
    if f is None or stats.get("delta_x_mean") is None:
        return "No active subnetwork had an edge, so delta_x could not be compared with delta."
    pct = f"{100 * f:.0f}%"
    if f >= 0.9:
        return (f"delta_x < delta for {pct} of the inputs: the active subnetworks are less "
                "frustrated than the whole network, as the paper found.")
    if f >= 0.5:
        return (f"delta_x < delta for {pct} of the inputs: most active subnetworks are less "
                "frustrated than the whole network, but not nearly all as in the paper.")
    return (f"delta_x < delta for only {pct} of the inputs: the paper's finding (active "
            "subnetworks less frustrated than the whole network) is not reproduced here.")


def delta_x_histogram(table: pd.DataFrame, delta: float | None, title: str | None = None,
                      bins: int = 30):
    """Histogram of ``delta_x`` over inputs with the whole network's ``delta``
    marked (paper 000, Fig. 2 inset).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    d = table["delta_x"].to_numpy(dtype=float)
    d = d[np.isfinite(d)]
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.add_subplot()
    vals = d if delta is None or not np.isfinite(delta) else np.append(d, delta)
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1e-3, hi + 1e-3
    ax.hist(d, bins=np.linspace(lo, hi, bins + 1), color="0.45", alpha=0.8,
            label=f"delta_x, {len(d)} inputs (mean {d.mean():.4f})" if len(d) else "delta_x")
    if delta is not None and np.isfinite(delta):
        below = float((d < delta).mean()) if len(d) else float("nan")
        ax.axvline(delta, color="tab:red", lw=2,
                   label=f"delta of the whole net = {delta:.4f} ({100 * below:.0f}% below)")
    ax.set_xlabel("frustration of the active subnetwork, delta_x")
    ax.set_ylabel("inputs")
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _report(table: pd.DataFrame, stats: dict, cfg: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    used = sorted(set(table["method"]) - {"none"})
    if used and used != [cfg["method"]]:
        cfg = dict(cfg, method=f"{cfg['method']}: {', '.join(used)}")
    lines = ["## Active subnetworks (SPEC §4)", "",
             f"For each of {stats['inputs']} inputs, the active subnetwork (ReLU-inactive "
             "nodes dropped, only max-pool edges from window maxima, only the predicted "
             "class at the output, then only nodes that still reach it) and its frustration "
             f"`delta_x` ({cfg['method']}, {cfg['replicas']} start gauges, seed {cfg['seed']}), "
             f"against the whole network's `delta` ({cfg['delta_source']}).", "",
             "| quantity | value |", "|---|---|",
             f"| delta (whole network) | {fmt(stats.get('delta'))} |",
             f"| mean delta_x | {fmt(stats['delta_x_mean'])} |",
             f"| median delta_x | {fmt(stats['delta_x_median'])} |",
             f"| fraction of inputs with delta_x < delta | {fmt(stats.get('frac_below_delta'))} |",
             f"| mean kept fraction of nodes | {fmt(stats['frac_nodes_mean'])} |",
             f"| mean kept fraction of edges | {fmt(stats['frac_edges_mean'])} |"]
    empty = int(table["delta_x"].isna().sum())
    if empty:
        lines.append(f"| inputs whose active subnetwork has no edge | {empty} |")
    lines += ["", verdict(stats), "",
              "Table `active.parquet` (one row per input); figure `figures/active_delta_x.png`."]
    return "\n".join(lines)


def run_active(run, model: nn.Module, graph: SignedGraph, x, ids: Sequence | None = None, *,
               delta: float | None = None, gauge: np.ndarray | None = None,
               method: str = "auto", replicas: int = 8, seed: int = 0,
               whole_method: str = "auto", warm_start: bool = True, unit_size: int = 50,
               batch_size: int | None = None, config: Mapping | None = None,
               force: bool = False, progress: Callable[[int], None] | None = None,
               **options) -> pd.DataFrame:
    """Active subnetworks of inputs ``x`` as a resumable run (kind ``"active"``).

    Parameters
    ----------
    run : RunDir or path
        A :class:`deepglass.store.RunDir` opened with ``kind="active"``, or a
        directory, opened here with ``config`` plus this call's parameters.
    model, graph
        The network and its :class:`SignedGraph`.
    x, ids
        Inputs (B, \\*input_shape) and their names.
    delta : float, optional
        Frustration of the whole network.  Default: the ``energy`` of
        ``RUN/arrays/gauge_real.npz`` when the run holds one (a frustration or
        near-monotonicity run in the same directory writes it), else
        :func:`whole_delta` (``whole_method``, ``replicas``, ``seed``), saved
        there with keys sigma, sigma_in, sigma_out, energy.
    gauge : ndarray (n,), optional
        The whole network's best gauge (warm start), when ``delta`` is given.
    method, replicas, seed
        Solver of the active subgraphs (:func:`active_table`).
    warm_start : bool
        Start the first replica of every input from the whole network's gauge.
    unit_size : int
        Inputs per unit; each unit is written atomically when finished and
        skipped on resume.
    progress : callable, optional
        Called with the number of inputs finished (resumed units included).

    Returns
    -------
    DataFrame
        The per-input table of :func:`active_table` (all units, in input order).

    Examples
    --------
    >>> table = run_active("runs/digits", model, graph, batch.x, batch.ids)  # doctest: +SKIP
    """
    from ..store import RunDir

    t0 = time.perf_counter()
    x = torch.as_tensor(x)
    shape = tuple(graph.input_shape)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise DeepglassError(f"inputs must have shape (B, {', '.join(map(str, shape))}), "
                             f"got {tuple(x.shape)}")
    B = int(x.shape[0])
    if B == 0:
        raise DeepglassError("no inputs")
    ids = [str(i) for i in range(B)] if ids is None else [str(i) for i in ids]
    if len(ids) != B:
        raise DeepglassError(f"{len(ids)} ids for {B} inputs")
    if int(unit_size) < 1:
        raise DeepglassError(f"unit_size must be >= 1, got {unit_size}")
    if not isinstance(run, RunDir):
        cfg = {**dict(config or {}), "inputs_count": B, "method": method,
               "replicas": int(replicas), "seed": int(seed), "whole_method": whole_method,
               "warm_start": bool(warm_start), "unit_size": int(unit_size),
               "delta": None if delta is None else float(delta),
               **({"engine": options["engine"]} if "engine" in options else {})}
        run = RunDir(Path(run), cfg, kind="active", force=force)
    elif run.kind != "active":
        raise DeepglassError(f"run_active needs a run opened with kind='active', not {run.kind!r}")

    from .frustration import load_gauge, save_gauge

    stored = None if delta is not None else load_gauge(run)
    if delta is not None:
        source = "given"
    elif stored is not None:
        delta, gauge = stored["energy"], stored["sigma"]
        source = "from arrays/gauge_real.npz of this run"
    else:
        res = whole_delta(graph, whole_method, replicas=replicas, seed=seed,
                          **({"engine": options["engine"]} if "engine" in options else {}))
        save_gauge(run, res.sigma, res.sigma_in, res.sigma_out, res.frustration)
        delta, gauge = res.frustration, res.sigma
        source = f"{res.method}, {len(res.energies)} start gauges, seed {seed}"
    if gauge is not None and np.asarray(gauge).size != graph.n_nodes:
        gauge = None   # a gauge of another graph (e.g. other batch-norm mode): no warm start
    start = gauge if warm_start else None

    for u in range(math.ceil(B / unit_size)):
        lo, hi = u * unit_size, min(B, (u + 1) * unit_size)
        uid = f"inputs-{u:05d}"
        if run.has_unit("inputs", uid):
            if progress is not None:
                progress(hi - lo)
            continue
        part = active_table(graph, model, x[lo:hi], ids[lo:hi], method=method,
                            replicas=replicas, seed=seed, warm_start=start,
                            batch_size=batch_size, first_index=lo, progress=progress,
                            **options)
        run.write_unit("inputs", uid, part)
    table = run.read_units("inputs").sort_values("index", ignore_index=True)
    table["delta"] = float(delta)
    table["below_delta"] = table["delta_x"] < float(delta)
    stats = active_summary_stats(table, delta)
    run.write_table("active", table)
    title = f"{graph.meta.get('model', 'network')}: active subnetworks of {B} inputs"
    fig = delta_x_histogram(table, delta, title=title)
    run.save_figure(fig, "active_delta_x.png")
    cfg = {"method": method, "replicas": replicas, "seed": seed, "delta_source": source}
    run.write_report_section(_report(table, stats, cfg))
    run.update_summary({"active": {**stats, "method": method, "replicas": int(replicas),
                                   "delta_source": source, "verdict": verdict(stats),
                                   "seconds": time.perf_counter() - t0}})
    return table

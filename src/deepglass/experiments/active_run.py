"""Active subnetworks of many inputs against the whole network (SPEC §4; paper
000, Fig. 2 inset), as a table, a figure and a resumable run.

- :func:`active_table`: one row per input (kept nodes, edges, ``|weight|``,
  ``delta_x``), with ``delta`` of the whole network as a column;
- :func:`whole_delta`: ``delta`` and the best gauge of the whole network;
- :func:`run_active`: the experiment in one call on
  :func:`deepglass.runner.run_experiment` (:class:`ActiveExperiment`): one unit
  per batch of inputs, in this process or on Ray, and with a run directory
  (kind ``"active"``) resumed after an interruption, with ``active.parquet``,
  ``figures/active_delta_x.png`` (:func:`deepglass.experiments.figures.delta_x_histogram`),
  the report section and ``summary.json["active"]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..errors import DeepglassError
from ..graph import SignedGraph
from ..solve import EXPLICIT_LIMIT, choose_method  # the "auto" rule
from ..runner import Experiment, Unit, UnitOutput, open_run, run_experiment
from ..store import RunDir
from ..graph.active import check_target
from .active import active_subgraph, active_summary_stats, certification_note

__all__ = ["active_table", "whole_delta", "delta_source", "EXACT_WHOLE_NODES", "run_active", "ActiveExperiment", "compute_inputs",
           "verdict", "KIND", "UNIT_TABLE"]

#: the run kind in a run directory
KIND = "active"
#: the unit table (``units/active/inputs/``)
UNIT_TABLE = "inputs"


#: largest whole network (nodes) whose ``delta`` ``exact`` certifies (brute force)
EXACT_WHOLE_NODES = 25


def delta_source(res, seed: int) -> str:
    """How the whole network's ``delta`` (a :class:`FrustrationResult`) was found,
    as reports and the command line say it: certified, or the best of a
    heuristic's starts (an upper bound on ``delta``)."""
    if res.method == "exact" and res.info.get("optimal"):
        return "exact, certified optimal"
    return (f"{res.method}, {len(res.energies)} start gauges, seed {seed}: the best found, "
            "an upper bound on delta")


def whole_delta(graph: SignedGraph, method: str = "auto", replicas: int = 8, seed: int = 0,
                **options):
    """Frustration ``delta`` of the whole network (SPEC §2) for comparison with
    ``delta_x``: :func:`deepglass.frustration` with ``method`` (``auto``:
    Algorithm 1 up to 2 million edges, else matrix-free descent).  ``exact``
    certifies it on networks of at most :data:`EXACT_WHOLE_NODES` nodes (brute
    force) and runs Algorithm 1 on larger ones, where a certified optimum of a
    whole network is out of reach (:func:`delta_source` says which).

    Returns
    -------
    FrustrationResult
    """
    from ..solve import frustration

    m = choose_method(graph.n_edges, method)
    if m == "exact" and graph.n_nodes > EXACT_WHOLE_NODES:
        m = "greedy"
    if m != "descent":
        options.pop("engine", None)   # the descent's engine; other methods have none
    options.setdefault("device", str(graph.device))   # solved where the graph is
    return frustration(graph, method=m, replicas=replicas, seed=seed, **options)


def active_table(graph: SignedGraph, model: nn.Module, x, ids: Sequence | None = None, *,
                 delta: float | None = None, method: str = "auto", replicas: int = 8,
                 seed: int = 0, warm_start: np.ndarray | None = None,
                 batch_size: int | None = None, first_index: int = 0,
                 progress: Callable[[int], None] | None = None, target="pred",
                 **options) -> pd.DataFrame:
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
    target : {"pred", "all"} or sequence of int (B,)
        The output nodes each subnetwork ends in
        (:func:`deepglass.graph.active.active_patterns`): the predicted one
        (SPEC §4), every one, or one given per input (e.g. the true class).

    Returns
    -------
    DataFrame
        One row per input: ``index``, ``input``, ``pred``, ``target``, ``nodes``, ``edges``,
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
                           batch_size=batch_size, target=target)
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
    gap, scatter = stats.get("delta", 0.0) - stats["delta_x_median"], stats.get("delta_x_scatter")
    if scatter is not None and abs(gap) <= scatter:     # (a scatter of 0: replicas agree)
        return (f"delta_x < delta for {pct} of the inputs, but delta - delta_x (median "
                f"{gap:.2g}) is within the solver's scatter between replicas ({scatter:.2g}): "
                "the active subnetworks are about as frustrated as the whole network "
                f"(they keep {100 * stats['frac_edges_mean']:.2f}% of its edges); no "
                "difference is claimed.")
    if f >= 0.9:
        return (f"delta_x < delta for {pct} of the inputs: the active subnetworks are less "
                "frustrated than the whole network, as the paper found.")
    if f >= 0.5:
        return (f"delta_x < delta for {pct} of the inputs: most active subnetworks are less "
                "frustrated than the whole network, but not nearly all as in the paper.")
    return (f"delta_x < delta for only {pct} of the inputs: the paper's finding (active "
            "subnetworks less frustrated than the whole network) is not reproduced here.")


#: what the report says each subnetwork ends in, per kind of ``target``
_ENDS = {"pred": "only the predicted class at the output",
         "all": "every output node kept",
         "given": "only the given output node of each input (e.g. its true class)"}


def _target_kind(target) -> str:
    return target if isinstance(target, str) else "given"


def _report(table: pd.DataFrame, stats: dict, cfg: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    used = sorted(set(table["method"]) - {"none"})
    if used and used != [cfg["method"]]:
        cfg = dict(cfg, method=f"{cfg['method']}: {', '.join(used)}")
    limit = cfg.get("time_limit")
    if "exact" in used:   # what "exact" means here: certified, or within a time limit
        from ..solve.exact import DEFAULT_TIME_LIMIT

        k, c = stats.get("exact_solves", 0), stats.get("exact_certified", 0)
        cfg = dict(cfg, method=f"{cfg['method']} solver: brute force up to 25 kept nodes, else "
                               f"the MILP with a time limit of {limit or DEFAULT_TIME_LIMIT:g} s "
                               f"per input; certified optimal for {c} of {k} inputs")
    lines = ["## Active subnetworks (SPEC §4)", "",
             f"For each of {stats['inputs']} inputs, the active subnetwork (ReLU-inactive "
             f"nodes dropped, only max-pool edges from window maxima, {_ENDS[cfg['target']]}, "
             "then only nodes that still reach it) and its frustration "
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
    note = certification_note(stats, limit)
    if note is not None:
        k, c = stats["exact_solves"], stats["exact_certified"]
        lines += [f"| exact solves certified optimal | {c} of {k} |",
                  f"| largest gap delta_x - lower bound | {fmt(stats['exact_max_gap'])} |",
                  f"| mean proven lower bound of delta_x | {fmt(stats['exact_lower_bound_mean'])} |"]
    lines += ["", verdict(stats)] + ([note[0].upper() + note[1:] + "."] if note else []) + ["",
              "Table `active.parquet` (one row per input); figure `figures/active_delta_x.png`."]
    return "\n".join(lines)


@dataclass
class _Context:
    """What every unit shares (shipped once to Ray): the network, its graph,
    all the inputs and the solver settings; a unit is a slice of the inputs."""

    model: nn.Module
    graph: SignedGraph
    x: torch.Tensor
    ids: list
    method: str
    replicas: int
    seed: int
    warm_start: np.ndarray | None
    batch_size: int | None
    options: dict
    target: object = "pred"


def compute_inputs(ctx: _Context, span: tuple[int, int]) -> UnitOutput:
    """One unit (the experiment's ``compute``): :func:`active_table` of the
    inputs ``ctx.x[lo:hi]`` (rows indexed from ``lo``)."""
    t0 = time.perf_counter()
    lo, hi = span
    target = ctx.target if isinstance(ctx.target, str) else ctx.target[lo:hi]
    part = active_table(ctx.graph, ctx.model, ctx.x[lo:hi], ctx.ids[lo:hi], method=ctx.method,
                        replicas=ctx.replicas, seed=ctx.seed, warm_start=ctx.warm_start,
                        batch_size=ctx.batch_size, first_index=lo, target=target,
                        **ctx.options)
    return UnitOutput({UNIT_TABLE: part}, info={"compute_seconds": time.perf_counter() - t0})


@dataclass
class ActiveExperiment(Experiment):
    """Active subnetworks of a batch of inputs as a :class:`deepglass.runner.Experiment`:
    units of ``unit_size`` consecutive inputs; :meth:`finish` adds the whole
    network's ``delta`` and, in a run directory, writes the table, figure,
    report and summary."""

    context: _Context
    configuration: dict
    unit_size: int
    delta: float
    delta_source: str
    t_start: float = 0.0

    kind = KIND
    tables = (UNIT_TABLE,)
    compute = staticmethod(compute_inputs)

    def config(self) -> dict:
        return self.configuration

    def units(self) -> list[Unit]:
        B, k = len(self.context.ids), int(self.unit_size)
        return [Unit(f"inputs-{u:05d}", (lo, min(B, lo + k)), weight=min(B, lo + k) - lo)
                for u, lo in enumerate(range(0, B, k))]

    def shared(self) -> _Context:
        return self.context

    def finish(self, stored, run: RunDir | None) -> pd.DataFrame:
        table = stored.table(UNIT_TABLE).sort_values("index", ignore_index=True)
        table["delta"] = float(self.delta)
        table["below_delta"] = table["delta_x"] < float(self.delta)
        # units read back from the run directory (a resumed run), for the CLI to say
        table.attrs["resumed_units"] = stored.resumed
        table.attrs["delta_source"] = self.delta_source
        if run is not None:
            self._write(run, table)
        return table

    def _write(self, run: RunDir, table: pd.DataFrame) -> None:
        from .figures import delta_x_histogram

        c, delta = self.context, self.delta
        stats = active_summary_stats(table, delta)
        run.write_table("active", table)
        title = f"{c.graph.meta.get('model', 'network')}: active subnetworks of {len(table)} inputs"
        ax = delta_x_histogram(table, delta, title=title)
        ax.figure.tight_layout()
        run.save_figure(ax.figure, "active_delta_x.png")
        limit = c.options.get("time_limit")
        cfg = {"method": c.method, "replicas": c.replicas, "seed": c.seed,
               "delta_source": self.delta_source, "target": _target_kind(c.target),
               "time_limit": limit}
        run.write_report_section(_report(table, stats, cfg))
        note = certification_note(stats, limit)
        run.update_summary({"active": {**stats, "method": c.method, "replicas": int(c.replicas),
                                       "target": _target_kind(c.target),
                                       "delta_source": self.delta_source,
                                       "verdict": verdict(stats),
                                       **({"time_limit": float(limit)} if limit is not None
                                          else {}),
                                       **({"certification": note} if note else {}),
                                       "seconds": time.perf_counter() - self.t_start}})


def run_active(run, model: nn.Module, graph: SignedGraph, x, ids: Sequence | None = None, *,
               delta: float | None = None, gauge: np.ndarray | None = None,
               method: str = "auto", replicas: int = 8, seed: int = 0,
               whole_method: str = "auto", warm_start: bool = True, unit_size: int = 50,
               batch_size: int | None = None, config: Mapping | None = None,
               force: bool = False, executor=None, address: str | None = None,
               progress: Callable[[int, int], None] | None = None, target="pred",
               **options) -> pd.DataFrame:
    """Active subnetworks of inputs ``x`` against the whole network, in one
    call (SPEC §4; paper 000, Fig. 2 inset; what ``deepglass active`` runs).

    The whole network's ``delta`` (and best gauge, the warm start) comes
    first; then one unit per ``unit_size`` inputs runs :func:`active_table`
    through :func:`deepglass.runner.run_experiment`, in this process or on
    Ray (the network, graph and inputs are shipped once; a unit is a slice).
    Rows do not depend on the unit or executor that computed them.

    Parameters
    ----------
    run : RunDir, path or None
        Run directory (kind ``"active"``): a path is opened with ``config``
        plus this call's parameters; each unit is written as it finishes and
        skipped on resume; at the end ``active.parquet``,
        ``figures/active_delta_x.png``, the report section and
        ``summary.json["active"]`` are written.  ``None``: in memory only.
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
        Solver of the active subgraphs (:func:`active_table`): ``auto``,
        ``descent``, ``anneal``, ``greedy`` or ``exact``.
    whole_method : str
        Solver of the whole network's ``delta`` when it is computed here
        (:func:`whole_delta`).
    batch_size : int, optional
        Inputs per forward pass when the active nodes are found (default: as
        many as fit the memory budget).
    config : mapping, optional
        What the run records besides this call's parameters (the command
        line's model name and input source).
    force : bool
        Reuse a run directory of another configuration or version
        (:class:`deepglass.store.RunDir`).
    warm_start : bool
        Start the first replica of every input from the whole network's gauge.
    unit_size : int
        Inputs per unit.
    executor : Executor, {"inprocess", "ray"} or None
        Where the units run (:mod:`deepglass.executors`).  The same table either way.
    address : str, optional
        A Ray cluster's address (``executor="ray"``).
    progress : callable, optional
        ``progress(done, total)`` in inputs, over the units computed in this call.
    target : {"pred", "all"} or sequence of int (B,)
        The output nodes each subnetwork ends in (:func:`active_table`):
        ``"pred"`` (SPEC §4), ``"all"`` (dense outputs: detectors, segmenters)
        or one output position per input (e.g. ``batch.labels``).
    **options
        Solver options (``engine``: the descent's engine wherever descent runs;
        ``time_limit``: seconds of each input's exact MILP, ``method="exact"``
        only, default 60).  An exact ``delta_x`` not proven within the limit
        is the best value found (``optimal`` False in the table, with its
        ``lower_bound``); the report and ``summary.json`` count them.

    Returns
    -------
    DataFrame
        The per-input table of :func:`active_table` (all units, in input
        order) with ``delta`` and ``below_delta``; ``table.attrs["resumed_units"]``
        counts the units read back from ``run`` rather than computed.

    Examples
    --------
    >>> table = run_active("runs/digits", model, graph, batch.x, batch.ids)  # doctest: +SKIP
    >>> table = run_active(None, model, graph, batch.x, executor="ray")     # doctest: +SKIP
    """
    t0 = time.perf_counter()
    from ..solve.exact import DEFAULT_TIME_LIMIT

    x = torch.as_tensor(x)
    if options.get("time_limit", 0) is None:
        options.pop("time_limit")
    ids = _check_inputs(graph, x, ids, unit_size, method, executor, address, options)
    target = check_target(target, len(ids), len(graph.output_index))
    engine = options.get("engine", "auto")
    if method == "descent" or choose_method(graph.n_edges) == "descent":
        from ..solve.engines import check_fits

        check_fits(graph, replicas, "descent", engine, graph.device)   # the whole network's descent
    from .real_gauge import check_gauge_weights, inputs_digest, weights_digest

    weights = weights_digest(model, graph)     # as the frustration run records them
    if isinstance(run, RunDir):
        cfg = run.config   # opened by the caller with its configuration
        if run.kind != KIND:
            raise DeepglassError(f"run_active needs a run opened with kind='active', "
                                 f"not {run.kind!r}")
    else:
        cfg = {**dict(config or {}), "weights_sha256": weights,
               "inputs_count": len(ids), "inputs_sha256": inputs_digest(x), "method": method,
               "replicas": int(replicas), "seed": int(seed), "whole_method": whole_method,
               "warm_start": bool(warm_start), "unit_size": int(unit_size),
               "delta": None if delta is None else float(delta),
               **({"engine": engine} if "engine" in options else {}),
               # absent on the CPU, so runs made before the option resume
               **({"device": str(graph.device)} if graph.device.type != "cpu" else {}),
               # the exact solver's limit where not its default (runs made
               # before the option resume; another limit is another configuration)
               **({"time_limit": float(options["time_limit"])}
                  if options.get("time_limit") is not None
                  and float(options["time_limit"]) != DEFAULT_TIME_LIMIT else {}),
               # absent for "pred", so runs made before the option resume
               **({} if isinstance(target, str) and target == "pred"
                  else {"target": _target_config(target)})}
    if delta is None:
        check_gauge_weights(run, weights, graph)   # before open_run records this configuration
    rd = open_run(run, cfg, KIND, force)
    delta, gauge, source = _whole_network(rd, graph, delta, gauge, whole_method, replicas,
                                          seed, options, weights)
    if gauge is not None and np.asarray(gauge).size != graph.n_nodes:
        gauge = None   # a gauge of another graph (e.g. other batch-norm mode): no warm start
    ctx = _Context(model=model, graph=graph, x=x, ids=ids, method=method,
                   replicas=int(replicas), seed=int(seed),
                   warm_start=gauge if warm_start else None, batch_size=batch_size,
                   options=dict(options), target=target)
    exp = ActiveExperiment(context=ctx, configuration=cfg, unit_size=int(unit_size),
                           delta=float(delta), delta_source=source, t_start=t0)
    # with Ray, a graph on a CUDA device makes each unit ask for a GPU
    return run_experiment(exp, run=rd, executor=executor, address=address,
                          device=str(graph.device), progress=progress)


def _target_config(target) -> str:
    """``target`` as recorded in a run's configuration: its kind, and for
    given positions a digest of them (a resume with other targets is refused)."""
    if isinstance(target, str):
        return target
    import hashlib

    return "given:" + hashlib.sha256(np.ascontiguousarray(target, dtype=np.int64)
                                     .tobytes()).hexdigest()[:16]


def _check_inputs(graph, x, ids, unit_size, method, executor, address, options) -> list[str]:
    """Refuse bad arguments before anything runs; the inputs' names as strings."""
    from ..executors import Executor, get_executor
    from ..solve import check_method

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
    if isinstance(unit_size, bool) or not isinstance(unit_size, (int, np.integer)) \
            or unit_size < 1:
        raise DeepglassError(f"unit_size must be an integer >= 1, got {unit_size!r}")
    check_method(method)
    if "time_limit" in options:
        t = options["time_limit"]
        if method != "exact":
            raise DeepglassError(f"time_limit applies to method='exact', not {method!r}")
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) \
                or not np.isfinite(t) or t <= 0:
            raise DeepglassError(f"time_limit must be a positive number of seconds, got {t!r}")
    if "engine" in options:
        from ..solve.engines import check_engine

        check_engine(options["engine"], "descent" if method == "auto" else method,
                     graph.device)
    if not isinstance(executor, Executor):
        get_executor(executor, address)   # a bad name or address, before any work
    return ids


def _whole_network(run, graph, delta, gauge, whole_method, replicas, seed, options, weights):
    """``delta``, the best gauge and where they came from: given, read from
    the run's ``arrays/gauge_real.npz``, or computed (:func:`whole_delta`) and
    saved there."""
    from .real_gauge import (GaugeOfOtherWeights, load_gauge, save_gauge, settle_gauge,
                             weights_digest)

    if delta is not None:
        if gauge is not None:   # the warm start shapes the units: recorded, never mixed
            settle_gauge(run, gauge, delta, "given")
        return delta, gauge, "given"
    try:
        stored = load_gauge(run, weights, graph) if run is not None else None
    except GaugeOfOtherWeights:   # unless a frustration run given the graph alone stored it
        stored = load_gauge(run, weights_digest(None, graph), graph)
    if stored is not None:
        # how this kind computed it (a resume reports the same), else another kind's
        source = stored.get("source", "from arrays/gauge_real.npz of this run")
        settle_gauge(run, stored["sigma"], stored["energy"], source)
        return stored["energy"], stored["sigma"], source
    res = whole_delta(graph, whole_method, replicas=replicas, seed=seed,
                      **({"engine": options["engine"]} if "engine" in options else {}))
    source = delta_source(res, seed)
    if run is not None:
        settle_gauge(run, res.sigma, res.frustration, "computed by this run")
        save_gauge(run, res.sigma, res.sigma_in, res.sigma_out, res.frustration, weights,
                   graph, source=source)
    return res.frustration, res.sigma, source

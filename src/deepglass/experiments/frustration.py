"""Frustration of the real weights against null models (SPEC §3; paper 000, Fig. 2).

The experiment: the frustration ``delta`` of a network's signed graph from
``replicas`` start gauges, and the frustration of ``null_instances`` draws of
each null model (N1, N2, N3-xavier, N3-he; :func:`deepglass.experiments.nulls.null_model`),
each from ``starts_per_null`` start gauges.  The real sample is the energy of
every real replica; a null sample is, per instance, the least energy over its
starts (that instance's frustration).  Real vs each null: Welch's t-test
(unequal variances, :func:`scipy.stats.ttest_ind`), as in the paper.

Work is split into *units* (:func:`plan_units`): one per null instance (all
its starts in one batch), or with ``draws_per_unit`` one per group of
instances solved as one batch (:mod:`deepglass.solve.batched`), and one per
chunk of real replicas.  Every seed derives from the run seed and the unit's
identity (:func:`unit_seed`), never from call order, so every executor and
every resumed run gives the same numbers.  The units run on
:func:`deepglass.runner.run_experiment` (:class:`FrustrationExperiment`); the
statistics, verdict and report are in :mod:`.frustration_stats`, the figure
in :mod:`.figures`.

Files of a frustration run (besides ``config.toml``)::

    units/frustration/runs/<unit>.parquet     rows of one unit
    arrays/frustration/runs/<unit>.npz        its best gauge
    frustration_runs.parquet                  one row per (kind, instance, start)
    frustration_stats.parquet                 mean, std, min, n, Welch t and p per kind
    arrays/gauge_real.npz                     best real gauge: sigma, sigma_in, sigma_out, energy
    figures/frustration.png                   histograms, real vs each null
    report.md, summary.json
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import DeepglassError, check_seed
from ..graph import SignedGraph
from ..runner import Experiment, Unit, UnitOutput, run_experiment
from ..store import RunDir
from .frustration_stats import (NullComparison, frustration_stats, frustration_verdict,
                                report_markdown, tidy_runs)
from .frustration_units import (KIND, UNIT_TABLE, FrustrationUnit, plan_units, stored_units,
                                unit_seed)
from .nulls import NULL_KINDS, check_n2, draws_on_graph, module_draws_miss, resolve_nulls
from .real_gauge import GAUGE_ARRAYS, load_gauge, save_gauge, weights_digest

__all__ = ["frustration_vs_nulls", "FrustrationExperiment", "FrustrationUnit", "NullComparison",
           "parse_nulls", "plan_units", "unit_seed", "run_unit", "frustration_config",
           "write_frustration_run", "ALL_NULLS", "KIND", "UNIT_TABLE", "GAUGE_ARRAYS",
           "save_gauge", "load_gauge", "weights_digest"]

#: every null model, in the paper's order
ALL_NULLS = NULL_KINDS


def parse_nulls(nulls: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalize null-model names (:func:`deepglass.experiments.nulls.resolve_nulls`):
    a comma list or a sequence of names or aliases; ``"N3"`` means both
    ``N3-xavier`` and ``N3-he``; ``"all"`` means every null of the weights;
    duplicates dropped."""
    return resolve_nulls(nulls, allowed=ALL_NULLS, use="frustration vs nulls (a null of "
                                                     "the weights)")


# ---------------------------------------------------------------------------------
# one unit (the experiment's compute)
@dataclass
class _Context:
    """What every unit shares (shipped once to remote workers)."""

    graph: SignedGraph
    model: torch.nn.Module | None
    input_shape: tuple | None
    batchnorm: str
    method: str
    init: str
    seed: int
    device: str
    options: dict
    #: whether a null unit returns its best gauge (stored in a run directory;
    #: without one nothing reads it, and a large network's gauges add up)
    null_gauges: bool = True
    #: N1 / N3 drawn on the graph (no retrace): :func:`.nulls.draws_on_graph`
    on_graph: bool = False
    #: the capture rules of per-sample norms and gates (SPEC §1b), as the real graph's
    norm: str = "fold"
    gates: str = "scale"

    def device_graph(self) -> SignedGraph:
        """The real graph on the run's device (moved once per process)."""
        g = self.__dict__.get("_device_graph")
        if g is None:
            g = self._device_graph = self.graph.to(device=self.device)
        return g


def _unit_graph(ctx: _Context, unit: FrustrationUnit, instance: int | None = None) -> SignedGraph:
    if unit.kind == "real":
        return ctx.graph
    from .nulls import null_model

    instance = unit.instance if instance is None else instance
    nseed = unit_seed(ctx.seed, unit.kind, instance, 0)
    if ctx.model is not None and unit.kind != "N2" and not ctx.on_graph:
        # N1 / N3 act on parameter tensors (SPEC §3): draw the module, then trace
        # it like the real one (same batch-norm treatment); a module that cannot
        # be copied (old weight-norm hooks) is drawn on its graph, every unit alike
        from .nulls import UncopyableModule

        try:
            null = null_model(ctx.model, unit.kind, seed=nseed, input_shape=ctx.input_shape)
        except UncopyableModule:
            return null_model(ctx.device_graph(), unit.kind, seed=nseed)
        return SignedGraph.from_module(null, ctx.input_shape, batchnorm=ctx.batchnorm,
                                       norm=ctx.norm, gates=ctx.gates)
    # N2 acts on the edge weights of the signed graph; N1 / N3 of a bare graph on
    # its blocks' weights: drawn on the run's device, where they are solved
    return null_model(ctx.device_graph(), unit.kind, seed=nseed)


def run_unit(ctx: _Context, unit: FrustrationUnit) -> UnitOutput:
    """Compute one unit (the experiment's ``compute``): its graph (real or a
    null draw), its start gauges, the solver.  Returns the unit's rows, its best
    gauge as arrays (a null unit's only when ``ctx.null_gauges``) and its
    compute time.  A unit of several null draws solves them as one batch where
    the descent's engine for one draw is the matrix-free one
    (:func:`_draws_batched`), else one after the other: the numbers are the
    same either way."""
    from ..solve import threads_for

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    # the whole unit (null draw, tracing, solver, frustrated weights) on one
    # thread for small graphs, as the solver does: many tiny kernels lose far
    # more to thread synchronization than they gain (5-10x on a busy 2-core CPU);
    # a batch of draws decides on the batch's size
    with threads_for(ctx.graph):
        if unit.kind != "real" and unit.draws > 1 and _draws_batched(ctx):
            parts = _batched_draws(ctx, unit, t0, threads)
        else:
            parts = [_one_draw(ctx, unit, unit.instance + d, t0 if d == 0 else None)
                     for d in range(unit.draws)]
    best = min(parts, key=lambda p: p["energy"])
    keep = unit.kind == "real" or ctx.null_gauges
    return UnitOutput({UNIT_TABLE: pd.concat([p["rows"] for p in parts], ignore_index=True)},
                      arrays=_gauge_arrays(best) if keep else None,
                      info={"compute_seconds": time.perf_counter() - t0})


def _draws_batched(ctx: _Context) -> bool:
    from ..solve.engines import batches_draws

    return batches_draws(ctx.method, ctx.options.get("engine", "auto"), ctx.device)


def _start_seeds(ctx: _Context, unit: FrustrationUnit, instance: int) -> list[int]:
    return [unit_seed(ctx.seed, unit.kind, instance, 1 + s) for s in unit.starts]


def _rows(unit: FrustrationUnit, instance: int, energies, local_min, sweeps, seconds, build, seeds):
    m = len(energies)  # "exact" returns one optimum whatever the starts
    return pd.DataFrame({
        "kind": unit.kind, "instance": np.int64(instance),
        "start": np.asarray(unit.starts[:m], dtype=np.int64),
        "energy": np.asarray(energies, dtype=np.float64),
        "local_min": np.asarray(local_min, dtype=bool),
        "sweeps": np.broadcast_to(np.asarray(sweeps), (m,)).astype(np.int64),
        "seconds": seconds / m, "build_seconds": build / m,
        "start_seed": np.asarray(seeds[:m], dtype=np.uint64).astype(np.int64),
        "unit": unit.id})


def _one_draw(ctx: _Context, unit: FrustrationUnit, instance: int, t0: float | None) -> dict:
    from ..solve import frustration, start_gauges

    t0 = time.perf_counter() if t0 is None else t0
    graph = _unit_graph(ctx, unit, instance)
    build = time.perf_counter() - t0
    seeds = _start_seeds(ctx, unit, instance)
    s0 = np.concatenate([start_gauges(graph.n_nodes, 1, seed=sd, init=ctx.init)
                         for sd in seeds])
    res = frustration(graph, method=ctx.method, replicas=len(s0), init=s0,
                      device=ctx.device, seed=unit_seed(ctx.seed, unit.kind, instance,
                                                        1 + unit.starts[0]),
                      **ctx.options)
    rows = _rows(unit, instance, res.energies, res.local_min, res.sweeps, res.seconds, build,
                 seeds)
    if "optimal" in res.info:   # exact: certified, or the best value within its time limit
        rows["optimal"] = bool(res.info["optimal"])
        rows["lower_bound"] = float(res.info["lower_bound"])
    return {"rows": rows, "sigma": res.sigma, "sigma_in": res.sigma_in,
            "sigma_out": res.sigma_out, "energy": float(res.frustration)}


def _batched_draws(ctx: _Context, unit: FrustrationUnit, t0: float, threads: int) -> list[dict]:
    """The unit's draws as one batch (:func:`deepglass.solve.batched.solve_draws`)."""
    from ..solve import start_gauges
    from ..solve.batched import solve_draws

    graphs, starts, seeds = [], [], []
    for d in range(unit.draws):
        g = _unit_graph(ctx, unit, unit.instance + d)
        graphs.append(g.to(device=ctx.device, dtype=ctx.options.get("dtype") or g.dtype))
        seeds.append(_start_seeds(ctx, unit, unit.instance + d))
        starts.append(np.concatenate([start_gauges(g.n_nodes, 1, seed=sd, init=ctx.init)
                                      for sd in seeds[-1]]))
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    opts = {k: v for k, v in ctx.options.items() if k not in ("engine", "dtype")}
    res = solve_draws(graphs, starts, threads=threads, **opts)
    seconds = (time.perf_counter() - t1) / unit.draws
    out = []
    for d, (g, r) in enumerate(zip(graphs, res)):
        k = int(np.argmin(r["energies"]))
        sigma = r["sigmas"][k]
        out.append({"rows": _rows(unit, unit.instance + d, r["energies"], r["local_min"],
                                  r["sweeps"], seconds, build / unit.draws, seeds[d]),
                    "sigma": sigma, "sigma_in": sigma[g.input_index],
                    "sigma_out": sigma[g.output_index], "energy": float(r["energies"][k])})
    return out


def _gauge_arrays(part: dict) -> dict:
    return {"sigma": part["sigma"], "sigma_in": part["sigma_in"],
            "sigma_out": part["sigma_out"], "energy": np.float64(part["energy"])}


# ---------------------------------------------------------------------------------
# the experiment
@dataclass
class FrustrationExperiment(Experiment):
    """Real weights vs null models as a :class:`deepglass.runner.Experiment`:
    the planned units (:func:`plan_units`), the shared context (graph, module,
    solver settings; shipped once to Ray) and the tables, gauge, figure, report
    and summary built from the stored units (:meth:`finish`)."""

    context: _Context
    configuration: dict
    plan: list
    nulls: tuple
    alpha: float = 0.05
    draws_per_unit: int = 1

    kind = KIND
    tables = (UNIT_TABLE,)
    compute = staticmethod(run_unit)

    def config(self) -> dict:
        return self.configuration

    def units(self) -> list[Unit]:
        return [Unit(u.id, u) for u in self.plan]

    def shared(self) -> _Context:
        return self.context

    def keep_arrays(self, unit: Unit) -> bool:
        # a null unit's gauge is stored, not kept: memory stays O(units) rows
        return unit.payload.kind == "real"

    def finish(self, stored, run: RunDir | None) -> NullComparison:
        runs = tidy_runs(stored.table(UNIT_TABLE), self.nulls)
        stats = frustration_stats(runs)
        info = {k: stored.info.get(k, 0.0) for k in (
            "units", "computed", "resumed", "compute_seconds", "store_seconds", "setup_seconds",
            "loop_seconds")}
        info.update(nodes=self.context.graph.n_nodes, edges=self.context.graph.n_edges,
                    draws_per_unit=int(self.draws_per_unit))
        out = NullComparison(runs=runs, stats=stats, gauge=_best_real_gauge(runs, stored),
                             verdict=frustration_verdict(stats, self.alpha,
                                                         method=self.context.method),
                             config=self.configuration, run=run, info=info)
        if run is not None:
            write_frustration_run(run, out)
        return out


def frustration_config(*, model: str, input_shape, batchnorm: str, weights: str, nodes: int,
                       edges: int, method: str, init: str, replicas: int,
                       replicas_per_unit: int, nulls: Sequence[str], null_instances: int,
                       starts_per_null: int, seed: int, device: str,
                       options: dict, rules: dict | None = None) -> dict:
    """The ``[runs.frustration]`` table of ``config.toml``: everything that
    determines the numbers (a resumed run must match it exactly)."""
    shape = None if not input_shape else [list(s) for s in input_shape] \
        if isinstance(input_shape[0], (tuple, list)) else list(input_shape)
    return {"model": model, "input_shape": shape,
            "batchnorm": batchnorm, "weights_sha256": weights, "nodes": int(nodes),
            "edges": int(edges), "method": method, "init": init, "replicas": int(replicas),
            "replicas_per_unit": int(replicas_per_unit), "nulls": list(nulls),
            "null_instances": int(null_instances), "starts_per_null": int(starts_per_null),
            "seed": int(seed), "device": device, "options": dict(options),
            "rules": dict(rules or {})}


def _prepare(model, input_shape, batchnorm, norm="fold", gates="scale"):
    if isinstance(model, SignedGraph):
        return model, None, tuple(input_shape) if input_shape else None
    if not isinstance(model, torch.nn.Module):
        raise DeepglassError(f"expected an nn.Module or SignedGraph, got {type(model).__name__}")
    shape = input_shape if input_shape is not None else \
            getattr(model, "default_input_shape", None)
    if shape is None:
        raise DeepglassError("input_shape is needed to trace this model")
    from ..graph.trace import input_shapes

    shapes = input_shapes(shape)      # one input's shape, or one per input
    shape = shapes[0] if len(shapes) == 1 else tuple(shapes)
    graph = SignedGraph.from_module(model, shape, batchnorm=batchnorm, norm=norm, gates=gates)
    return graph, model, shape


def _check_args(replicas, null_instances, starts_per_null, replicas_per_unit, draws_per_unit,
                method, init, alpha, options) -> None:
    """Refuse bad arguments in one line, before anything is traced or run."""
    from ..solve import check_method

    for name, v, optional in (("replicas", replicas, False),
                              ("null_instances", null_instances, False),
                              ("starts_per_null", starts_per_null, False),
                              ("replicas_per_unit", replicas_per_unit, True),
                              ("draws_per_unit", draws_per_unit, True)):
        if optional and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DeepglassError(f"{name} must be an integer >= 1, got {v!r}")
    check_method(method)
    if not 0 < alpha < 1:
        raise DeepglassError(f"alpha must be in (0, 1), got {alpha}")
    if init not in ("random", "paper"):
        raise DeepglassError(f"init must be 'random' or 'paper', not {init!r}")
    if "engine" in options:
        from ..solve.engines import check_engine

        check_engine(options["engine"], method)


#: bytes per planned unit kept in memory until the tables are assembled (the
#: Unit, its rows as a small DataFrame, its id): measured ~2-3 kB, rounded up
UNIT_BOOKKEEPING_BYTES = 4096


def _check_memory(graph, replicas, rpu, nulls, null_instances, starts_per_null) -> None:
    """Refuse, before planning, an experiment whose units would not fit: the
    replicas of one real unit, the starts of one null unit, and the bookkeeping
    of every unit (:data:`UNIT_BOOKKEEPING_BYTES` each)."""
    from ..memory import check_fits
    from ..solve import check_replica_memory

    check_replica_memory(graph, rpu, "lower --replicas (or --replicas-per-unit)")
    if nulls:
        check_replica_memory(graph, starts_per_null, "lower --starts-per-null")
    n_units = -(-int(replicas) // int(rpu)) + len(nulls) * int(null_instances)
    check_fits(n_units * UNIT_BOOKKEEPING_BYTES, f"the bookkeeping of {n_units:,} units",
               "lower --null-instances or --replicas, or raise --replicas-per-unit")


def frustration_vs_nulls(model, replicas: int = 80, null_instances: int = 80,
                         starts_per_null: int = 2, nulls: str | Sequence[str] = ALL_NULLS,
                         method: str = "descent", seed: int = 0, executor=None, run=None,
                         progress: Callable[[int, int], None] | None = None, *,
                         input_shape=None, batchnorm: str = "fold", norm: str = "fold",
                         gates: str = "scale", init: str = "random",
                         replicas_per_unit: int | None = None, device: str = "cpu",
                         model_name: str | None = None, force: bool = False,
                         alpha: float = 0.05, draws_per_unit: int | None = None,
                         address: str | None = None, **options) -> NullComparison:
    """Frustration of the real weights vs null models (SPEC §3; paper 000, Fig. 2).

    Parameters
    ----------
    model : torch.nn.Module or SignedGraph
        The network.  A module's N1/N3 draws act on its parameters and are
        traced like it; N2 acts on the signed graph's edge weights.  A bare
        graph gets every null from :func:`null_model` on the graph.
    replicas : int
        Start gauges of the real network (the paper: 80).
    null_instances : int
        Draws of each null model (the paper: 80).
    starts_per_null : int
        Start gauges per null draw (the paper: 2); the draw's frustration is
        the least of their energies.
    nulls : str or sequence of str
        Null models: ``"N1"``, ``"N2"``, ``"N3"`` (both initializations),
        ``"N3-xavier"``, ``"N3-he"``, or a comma list; empty for the real
        network only.
    method : {"descent", "anneal", "greedy", "exact", "auto"}
        Solver (:func:`deepglass.frustration`); ``**options`` go to it.
        ``"auto"`` is resolved on the real graph (:func:`deepglass.solve.choose_method`)
        and the configuration records the method that ran.  ``"exact"`` is
        deterministic: the real graph is solved once (whatever ``replicas``)
        and each null draw once, and the rows record ``optimal`` and
        ``lower_bound`` (a solve stopped by ``time_limit`` is the best value
        found, not certified).  With one real value Welch's t-test cannot
        run: the verdict says so and places it among the null draws.
    seed : int
        Run seed; each unit's seeds derive from it and the unit (:func:`unit_seed`).
    executor : Executor, {"inprocess", "ray"} or None
        Where units run (:mod:`deepglass.executors`); default in this process.
        An executor passed in is left open.
    address : str, optional
        A Ray cluster's address (``executor="ray"``).
    run : str, Path or RunDir, optional
        Run directory: finished units are written as they finish and skipped
        when the same call is repeated; at the end the tables, the best real
        gauge, the figure, the report section and the summary are written
        (:func:`write_frustration_run`).  A directory of another configuration
        is refused unless ``force``.
    force : bool
        Reuse a run directory of another configuration or version: this
        kind's recorded results are removed first (:class:`deepglass.store.RunDir`).
    progress : callable, optional
        ``progress(done, total)`` over the units computed in this call (first
        called with ``done=0``; :func:`deepglass.runner.run_experiment`).
    input_shape : sequence of int, optional
        Input shape (default: the model's ``default_input_shape``); one shape
        per input for a network of several inputs.
    batchnorm : {"fold", "ignore"}
    norm : {"fold", "ignore"}
    gates : {"scale", "error"}
        The capture rules (:meth:`SignedGraph.from_module`) of the real graph
        and of every null draw traced from a module; recorded with the others
        in the configuration's ``rules``, so a resume with other rules is
        refused.
    init : {"random", "paper"}
        Start gauges (see :func:`deepglass.solve.start_gauges`).
    replicas_per_unit : int, optional
        Real replicas per unit (default: all in one unit).  Smaller units
        resume at a finer grain on large networks.
    device : {"cpu", "cuda"}
    model_name : str, optional
        Recorded in the configuration (default: the class name).
    alpha : float
        Level of the one-sentence verdict.
    draws_per_unit : int, optional
        Null draws per unit.  With the descent's matrix-free engine (named, or
        ``auto`` on a device) a unit's draws are solved as one batch
        (:mod:`deepglass.solve.batched`: stacked weights, every draw with its
        own starts), so a device runs ``draws_per_unit * starts_per_null``
        replicas at once; otherwise they run one after the other.  Default:
        as many as fit (:func:`deepglass.solve.engines.draws_per_batch`) when
        batched, else 1.  The numbers do not depend on it, except the
        ``sweeps`` column, which counts the batch's sweeps.

    Returns
    -------
    NullComparison
        Its ``info`` holds the counts of units and the timings.

    References
    ----------
    Paper 000, Results "Frustration" and Fig. 2; SPEC §3 (null models, protocol).

    Examples
    --------
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    >>> res = frustration_vs_nulls(net, replicas=4, null_instances=3, nulls="N1,N2",
    ...                            input_shape=(6,))                      # doctest: +SKIP
    >>> list(res.stats["kind"])                                           # doctest: +SKIP
    ['real', 'N1', 'N2']
    """
    from ..executors import Executor, get_executor

    t_start = time.perf_counter()
    nulls = parse_nulls(nulls)
    _check_args(replicas, null_instances, starts_per_null, replicas_per_unit, draws_per_unit,
                method, init, alpha, options)
    seed = check_seed(seed)
    if not isinstance(executor, Executor):
        get_executor(executor, address)   # a bad name or address: refused before tracing
    from ..solve import check_weighted
    from ..solve.engines import check_device

    check_device(device)
    graph, module, shape = _prepare(model, input_shape, batchnorm, norm, gates)
    check_weighted(graph)
    if "N2" in nulls:
        check_n2(graph)            # refused before any unit runs, not at the first N2 draw
    rpu = min(int(replicas_per_unit or replicas), int(replicas))
    from ..solve import choose_method

    method = choose_method(graph, method)   # "auto" resolved: the config says what ran
    if method != "descent":
        options.pop("engine", None)
    from ..solve.engines import check_fits

    # a real unit that would not fit is refused before anything runs
    check_fits(graph, rpu, method, options.get("engine", "auto"), device)
    config = frustration_config(
        model=model_name or graph.meta.get("model") or type(model).__name__,
        input_shape=shape, batchnorm=batchnorm, weights=weights_digest(module, graph),
        nodes=graph.n_nodes, edges=graph.n_edges, method=method, init=init,
        replicas=replicas, replicas_per_unit=rpu, nulls=nulls, null_instances=null_instances,
        starts_per_null=starts_per_null, seed=seed, device=device, options=options,
        rules=graph.meta.get("rules"))
    _check_memory(graph, replicas, rpu, nulls, null_instances, starts_per_null)
    ctx = _Context(graph=graph, model=module, input_shape=shape, batchnorm=batchnorm,
                   method=method, init=init, seed=int(seed), device=device,
                   options=dict(options), null_gauges=run is not None,
                   on_graph=module is None or draws_on_graph(module, graph)
                   or bool(module_draws_miss(module, graph)),
                   norm=norm, gates=gates)
    if draws_per_unit is None:
        draws_per_unit = 1
        if nulls and _draws_batched(ctx):
            from ..solve.engines import draws_per_batch

            draws_per_unit = draws_per_batch(graph, starts_per_null, null_instances,
                                             device=device, n2="N2" in nulls)
    elif nulls and _draws_batched(ctx) and torch.device(device).type == "cpu":
        # a batch size the user gave: checked as the default one is sized
        from ..memory import check_fits
        from ..solve.engines import draw_batch_bytes

        d = min(int(draws_per_unit), int(null_instances))
        check_fits(draw_batch_bytes(graph, starts_per_null, d, n2="N2" in nulls),
                   f"{d} null draws of {starts_per_null} starts solved as one batch",
                   "lower --draws-per-unit (or leave it out: the default batch fits)")
    # "exact" is deterministic: one solve of the real graph whatever ``replicas``
    # (several real units would only repeat it and fake a sample), one per draw
    real = 1 if method == "exact" else replicas
    exp = FrustrationExperiment(
        context=ctx, configuration=config, nulls=nulls, alpha=alpha,
        draws_per_unit=draws_per_unit,
        plan=plan_units(real, nulls, null_instances, starts_per_null, min(rpu, real),
                        draws_per_unit, stored=stored_units(run)))
    prepare = time.perf_counter() - t_start
    out = run_experiment(exp, run=run, executor=executor, address=address, device=device,
                         force=force, progress=progress)
    out.info["setup_seconds"] += prepare
    out.info["wall_seconds"] = time.perf_counter() - t_start
    return out


def _best_real_gauge(runs: pd.DataFrame, stored) -> dict:
    real = runs[runs["kind"] == "real"]
    return stored.arrays(real.loc[real["energy"].idxmin(), "unit"])


def write_frustration_run(run: RunDir, result: NullComparison) -> None:
    """Write the assembled tables, ``arrays/gauge_real.npz``,
    ``figures/frustration.png``, the report section and the summary (from
    ``result`` only: a resumed run rebuilds them all)."""
    from .figures import frustration_histograms

    run.write_table("frustration_runs", result.runs)
    run.write_table("frustration_stats", result.stats)
    g = result.gauge
    save_gauge(run, g["sigma"], g["sigma_in"], g["sigma_out"], g["energy"],
               weights=result.config.get("weights_sha256"), graph=result.config)
    ax = frustration_histograms(result.runs, result.stats, title=str(result.config["model"]))
    run.save_figure(ax.figure, "frustration.png")
    run.write_report_section(report_markdown(result, gauge_file=f"arrays/{GAUGE_ARRAYS}.npz"))
    run.update_summary(result.summary())

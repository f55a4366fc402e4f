"""Frustration of the real weights against null models (SPEC §3; paper 000, Fig. 2).

The experiment: the frustration ``delta`` of a network's signed graph from
``replicas`` start gauges, and the frustration of ``null_instances`` draws of
each null model (N1, N2, N3-xavier, N3-he; :func:`deepglass.experiments.nulls.null_model`),
each from ``starts_per_null`` start gauges.  The real sample is the energy of
every real replica; a null sample is, per instance, the least energy over its
starts (that instance's frustration).  Real vs each null: Welch's t-test
(unequal variances, :func:`scipy.stats.ttest_ind`), as in the paper.

Work is split into *units*: one per null instance (all its starts in one
batch), or with ``draws_per_unit`` one per group of instances solved as one
batch (:mod:`deepglass.solve.batched`), and one per chunk of real replicas.  Every seed is derived from the run
seed and the unit's identity (:func:`unit_seed`, a :class:`numpy.random.SeedSequence`
spawn key), never from call order, so every executor
(:mod:`deepglass.executors`) and every resumed run gives the same numbers.
With a run directory (:class:`deepglass.store.RunDir`, kind ``"frustration"``)
each unit is written as it finishes and finished units are skipped on re-run.

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

import hashlib
import math
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import DeepglassError
from ..graph import SignedGraph
from ..store import RunDir
from .nulls import NULL_KINDS, resolve_nulls

__all__ = ["frustration_vs_nulls", "NullComparison", "Unit", "parse_nulls", "plan_units",
           "unit_seed", "run_unit", "frustration_config", "frustration_samples",
           "frustration_stats", "frustration_verdict", "stats_markdown", "stats_records",
           "write_frustration_run",
           "ALL_NULLS", "KIND", "UNIT_TABLE", "GAUGE_ARRAYS",
           "save_gauge", "load_gauge"]

#: every null model, in the paper's order
ALL_NULLS = NULL_KINDS
#: the run kind in a run directory
KIND = "frustration"
#: the unit table (``units/frustration/runs/``)
UNIT_TABLE = "runs"
#: the best real gauge, read by the active-subnetwork and monotonicity runs
GAUGE_ARRAYS = "gauge_real"


def save_gauge(run: RunDir, sigma, sigma_in, sigma_out, energy: float) -> None:
    """Store the real network's gauge in ``run`` (``arrays/gauge_real.npz``: ``sigma``,
    ``sigma_in``, ``sigma_out`` as int8 and its ``energy``): the partial order
    (SPEC §2, §5) that the active-subnetwork and near-monotonicity runs of the same
    directory reuse."""
    run.save_arrays(GAUGE_ARRAYS, sigma=np.asarray(sigma, np.int8),
                    sigma_in=np.asarray(sigma_in, np.int8),
                    sigma_out=np.asarray(sigma_out, np.int8), energy=np.float64(energy))


def load_gauge(run: RunDir) -> dict | None:
    """The gauge :func:`save_gauge` stored in ``run`` (``energy`` as a float), or ``None``."""
    if not run.has_arrays(GAUGE_ARRAYS):
        return None
    g = run.load_arrays(GAUGE_ARRAYS)
    g["energy"] = float(np.asarray(g["energy"], dtype=float).ravel()[0])
    return g


# ---------------------------------------------------------------------------------
# units and seeds
@dataclass(frozen=True)
class Unit:
    """One unit of work: ``kind`` ("real" or a null), its (first) instance, its
    starts, and for nulls how many consecutive instances (draws) it solves
    together."""

    kind: str
    instance: int
    starts: tuple[int, ...]
    draws: int = 1

    @property
    def id(self) -> str:
        uid = f"{self.kind}-{self.instance:05d}-{self.starts[0]:05d}"
        return uid if self.draws == 1 else f"{uid}-x{self.draws}"


def unit_seed(seed: int, kind: str, instance: int, role: int = 0) -> int:
    """A 63-bit seed for (``seed``, ``kind``, ``instance``, ``role``).

    ``role`` 0 seeds a null model's weights, ``1 + s`` the start gauge ``s``.
    A :class:`numpy.random.SeedSequence` with spawn key ``(crc32(kind),
    instance, role)``: independent streams that depend on the unit's identity
    only, not on which other units run or in what order.
    """
    ss = np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(kind.encode()), int(instance),
                                                      int(role)))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def parse_nulls(nulls: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalize null-model names (:func:`deepglass.experiments.nulls.resolve_nulls`):
    a comma list or a sequence of names or aliases; ``"N3"`` means both
    ``N3-xavier`` and ``N3-he``; ``"all"`` means every null of the weights;
    duplicates dropped."""
    return resolve_nulls(nulls, allowed=ALL_NULLS, use="frustration vs nulls (a null of "
                                                     "the weights)")


def plan_units(replicas: int, nulls: Sequence[str], null_instances: int, starts_per_null: int,
               replicas_per_unit: int | None = None, draws_per_unit: int = 1) -> list[Unit]:
    """The units of an experiment: real replicas in chunks, then the null
    instances in groups of ``draws_per_unit`` (each with all its starts)."""
    rpu = int(replicas_per_unit or replicas)
    dpu = max(1, int(draws_per_unit))
    units = [Unit("real", 0, tuple(range(a, min(a + rpu, replicas))))
             for a in range(0, int(replicas), rpu)]
    for kind in nulls:
        units += [Unit(kind, i, tuple(range(int(starts_per_null))),
                       min(dpu, int(null_instances) - i))
                  for i in range(0, int(null_instances), dpu)]
    return units


# ---------------------------------------------------------------------------------
# one unit
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

    def device_graph(self) -> SignedGraph:
        """The real graph on the run's device (moved once per process)."""
        g = self.__dict__.get("_device_graph")
        if g is None:
            g = self._device_graph = self.graph.to(device=self.device)
        return g


def _unit_graph(ctx: _Context, unit: Unit, instance: int | None = None) -> SignedGraph:
    if unit.kind == "real":
        return ctx.graph
    from .nulls import null_model

    instance = unit.instance if instance is None else instance
    nseed = unit_seed(ctx.seed, unit.kind, instance, 0)
    if ctx.model is not None and unit.kind != "N2":
        # N1 / N3 act on parameter tensors (SPEC §3): draw the module, then trace
        # it like the real one (same batch-norm treatment)
        null = null_model(ctx.model, unit.kind, seed=nseed, input_shape=ctx.input_shape)
        return SignedGraph.from_module(null, ctx.input_shape, batchnorm=ctx.batchnorm)
    # N2 acts on the edge weights of the signed graph; N1 / N3 of a bare graph on
    # its blocks' weights: drawn on the run's device, where they are solved
    return null_model(ctx.device_graph(), unit.kind, seed=nseed)


def run_unit(ctx: _Context, unit: Unit) -> dict:
    """Compute one unit: its graph (real or a null draw), its start gauges, the
    solver.  Returns the unit's rows, its best gauge and its compute time.  A
    unit of several null draws solves them as one batch where the descent's
    engine for one draw is the matrix-free one (:func:`_draws_batched`), else
    one after the other: the numbers are the same either way."""
    from ..solve import _threads_for

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    # the whole unit (null draw, tracing, solver, frustrated weights) on one
    # thread for small graphs, as the solver does: many tiny kernels lose far
    # more to thread synchronization than they gain (5-10x on a busy 2-core CPU);
    # a batch of draws decides on the batch's size
    with _threads_for(ctx.graph):
        if unit.kind != "real" and unit.draws > 1 and _draws_batched(ctx):
            parts = _batched_draws(ctx, unit, t0, threads)
        else:
            parts = [_one_draw(ctx, unit, unit.instance + d, t0 if d == 0 else None)
                     for d in range(unit.draws)]
    best = min(parts, key=lambda p: p["energy"])
    return {"rows": pd.concat([p["rows"] for p in parts], ignore_index=True),
            "sigma": best["sigma"], "sigma_in": best["sigma_in"],
            "sigma_out": best["sigma_out"], "energy": best["energy"],
            "compute_seconds": time.perf_counter() - t0}


def _draws_batched(ctx: _Context) -> bool:
    """Whether null draws run as one batch: the descent with the matrix-free
    engine (named, or ``auto``'s choice on a device)."""
    engine = ctx.options.get("engine", "auto")
    return ctx.method == "descent" and (engine == "matrix-free" or (
        engine == "auto" and torch.device(ctx.device).type != "cpu"))


def _start_seeds(ctx: _Context, unit: Unit, instance: int) -> list[int]:
    return [unit_seed(ctx.seed, unit.kind, instance, 1 + s) for s in unit.starts]


def _rows(unit: Unit, instance: int, energies, local_min, sweeps, seconds, build, seeds):
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


def _one_draw(ctx: _Context, unit: Unit, instance: int, t0: float | None) -> dict:
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
    return {"rows": rows, "sigma": res.sigma, "sigma_in": res.sigma_in,
            "sigma_out": res.sigma_out, "energy": float(res.frustration)}


def _batched_draws(ctx: _Context, unit: Unit, t0: float, threads: int) -> list[dict]:
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


# ---------------------------------------------------------------------------------
# statistics
def _kind_order(kinds: Iterable[str]) -> list[str]:
    order = ("real",) + ALL_NULLS
    ks = set(kinds)
    return [k for k in order if k in ks] + sorted(ks - set(order))


def frustration_samples(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The compared samples: every real replica's energy; per null instance,
    its frustration (least energy over its starts)."""
    out = {}
    for kind in _kind_order(runs["kind"].unique()):
        sub = runs[runs["kind"] == kind]
        if kind == "real":
            out[kind] = sub.sort_values("start")["energy"].to_numpy(np.float64)
        else:
            out[kind] = sub.groupby("instance")["energy"].min().sort_index().to_numpy(np.float64)
    return out


def frustration_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per kind: ``n``, ``mean``, ``std`` (ddof 1), ``min``, ``max`` of the
    compared sample (:func:`frustration_samples`) and Welch's ``t`` and
    two-sided ``p`` of real vs that kind (NaN for the real row, or where a
    sample has fewer than 2 values).

    References
    ----------
    B. L. Welch, "The generalization of Student's problem when several
    different population variances are involved", Biometrika 34 (1947);
    :func:`scipy.stats.ttest_ind` with ``equal_var=False``.
    """
    from scipy.stats import ttest_ind

    samples = frustration_samples(runs)
    real = samples.get("real")
    rows = []
    for kind, x in samples.items():
        t = p = math.nan
        if kind != "real" and real is not None and len(real) > 1 and len(x) > 1:
            with warnings.catch_warnings():  # identical samples: nan, said in the table
                warnings.simplefilter("ignore", RuntimeWarning)
                res = ttest_ind(real, x, equal_var=False)
            t, p = float(res.statistic), float(res.pvalue)
        rows.append({"kind": kind, "n": len(x), "mean": float(x.mean()),
                     "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
                     "min": float(x.min()), "max": float(x.max()), "t": t, "p": p})
    return pd.DataFrame(rows, columns=["kind", "n", "mean", "std", "min", "max", "t", "p"])


def frustration_verdict(stats: pd.DataFrame, alpha: float = 0.05) -> str:
    """One sentence: is the real network below every null at level ``alpha``?"""
    real = stats[stats["kind"] == "real"]
    nulls = stats[stats["kind"] != "real"]
    if real.empty:
        return "No real-weight replicas were run."
    r = real.iloc[0]
    if nulls.empty:
        return f"Only the real weights were run: frustration delta = {r['min']:.6f}."
    below = (r["mean"] < nulls["mean"]) & (nulls["p"] < alpha)
    names = ", ".join(nulls["kind"])
    if bool(below.all()):
        return (f"The real weights are less frustrated than every null model ({names}) "
                f"at p < {alpha:g} (Welch's t-test): real mean {r['mean']:.4f} vs "
                + ", ".join(f"{k} {m:.4f}" for k, m in zip(nulls["kind"], nulls["mean"])) + ".")
    fails = nulls[~below.to_numpy()]
    return ("The real weights are NOT below every null model at p < "
            f"{alpha:g} (Welch's t-test): "
            + "; ".join(f"{row.kind}: real mean {r['mean']:.4f} vs {row.mean:.4f}, p = {row.p:.3g}"
                        for row in fails.itertuples()) + ".")


# ---------------------------------------------------------------------------------
# the experiment
@dataclass
class NullComparison:
    """Result of :func:`frustration_vs_nulls`.

    Attributes
    ----------
    runs : DataFrame
        One row per (kind, instance, start): ``energy``, ``local_min``,
        ``sweeps``, ``seconds`` (solver time per start), ``build_seconds``
        (null draw and tracing per start), ``start_seed``, ``unit``.
    stats : DataFrame
        :func:`frustration_stats` of ``runs``.
    gauge : dict
        The best real gauge: ``sigma``, ``sigma_in``, ``sigma_out``, ``energy``.
    verdict : str
    config : dict
        The run configuration (everything to reproduce it).
    info : dict
        ``units``, ``computed``, ``resumed`` and timings: ``setup_seconds``
        (tracing, opening the run), ``loop_seconds`` (the units), of which
        ``compute_seconds`` inside the units and ``store_seconds`` writing
        them (on a background thread, overlapping the next unit), and ``wall_seconds`` (all, with the tables, figure and report).
    run : RunDir or None
    """

    runs: pd.DataFrame
    stats: pd.DataFrame
    gauge: dict
    verdict: str
    config: dict
    info: dict = field(default_factory=dict)
    run: Any = None

    def summary(self) -> dict:
        """Headline numbers: per kind the mean of the compared sample
        (``frustration``), its ``min`` and ``std``; Welch ``t`` and ``p`` of
        real vs each null; ``delta`` (best real energy); the verdict."""
        s = self.stats.set_index("kind")
        nulls = [k for k in s.index if k != "real"]

        def col(name, kinds):  # NaN (a sample of one) -> None: valid JSON
            return {k: _finite(s.loc[k, name]) for k in kinds}

        return {"frustration": col("mean", s.index), "frustration_min": col("min", s.index),
                "frustration_std": col("std", s.index), "welch_t": col("t", nulls),
                "welch_p": col("p", nulls),
                "delta": float(self.gauge["energy"]),
                "frustration_verdict": self.verdict}


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def stats_records(stats: pd.DataFrame) -> list[dict]:
    """The statistics table as JSON-friendly records (NaN -> None)."""
    return [{k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in stats.to_dict(orient="records")]


def _weights_digest(model: torch.nn.Module | None, graph: SignedGraph) -> str:
    """sha256 (16 hex digits) of the weights: a resumed run must see the same net."""
    h = hashlib.sha256()
    if model is not None:
        tensors = [(k, v) for k, v in model.state_dict().items()]
    else:
        tensors = [(f"{i}.{k}", v) for i, b in enumerate(graph.edge_blocks)
                   for k, v in sorted(vars(b).items()) if isinstance(v, torch.Tensor)]
    for k, v in tensors:
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def frustration_config(*, model: str, input_shape, batchnorm: str, weights: str, nodes: int,
                       edges: int, method: str, init: str, replicas: int,
                       replicas_per_unit: int, nulls: Sequence[str], null_instances: int,
                       starts_per_null: int, seed: int, device: str,
                       options: dict, rules: dict | None = None) -> dict:
    """The ``[runs.frustration]`` table of ``config.toml``: everything that
    determines the numbers (a resumed run must match it exactly)."""
    return {"model": model, "input_shape": list(input_shape) if input_shape else None,
            "batchnorm": batchnorm, "weights_sha256": weights, "nodes": int(nodes),
            "edges": int(edges), "method": method, "init": init, "replicas": int(replicas),
            "replicas_per_unit": int(replicas_per_unit), "nulls": list(nulls),
            "null_instances": int(null_instances), "starts_per_null": int(starts_per_null),
            "seed": int(seed), "device": device, "options": dict(options),
            "rules": dict(rules or {})}


def _prepare(model, input_shape, batchnorm):
    if isinstance(model, SignedGraph):
        return model, None, tuple(input_shape) if input_shape else None
    if not isinstance(model, torch.nn.Module):
        raise DeepglassError(f"expected an nn.Module or SignedGraph, got {type(model).__name__}")
    shape = input_shape or getattr(model, "default_input_shape", None)
    if shape is None:
        raise DeepglassError("input_shape is needed to trace this model")
    shape = tuple(int(s) for s in shape)
    return SignedGraph.from_module(model, shape, batchnorm=batchnorm), model, shape


def _check_counts(replicas, null_instances, starts_per_null, replicas_per_unit, method):
    for name, v in (("replicas", replicas), ("null_instances", null_instances),
                    ("starts_per_null", starts_per_null)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DeepglassError(f"{name} must be an integer >= 1, got {v!r}")
    if replicas_per_unit is not None and (not isinstance(replicas_per_unit, (int, np.integer))
                                          or replicas_per_unit < 1):
        raise DeepglassError(f"replicas_per_unit must be an integer >= 1, got {replicas_per_unit!r}")
    from ..solve import METHODS

    if method not in METHODS:
        raise DeepglassError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


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


def _open_run(run, config: dict, force: bool):
    if run is None:
        return None
    if isinstance(run, RunDir):
        if run.kind != KIND:
            raise DeepglassError(f"run directory {run.path} was opened as kind {run.kind!r}, "
                                 f"not {KIND!r}")
        if run.config != _plain(config):
            raise DeepglassError(f"run directory {run.path} was opened with another "
                                 "frustration configuration than this call's")
        return run
    return RunDir(Path(run), config, kind=KIND, force=force)


def _plain(config: dict) -> dict:
    from ..store import plain

    return plain(dict(config))


def frustration_vs_nulls(model, replicas: int = 80, null_instances: int = 80,
                         starts_per_null: int = 2, nulls: str | Sequence[str] = ALL_NULLS,
                         method: str = "descent", seed: int = 0, executor=None, run=None,
                         progress: Callable[[int, int], None] | None = None, *,
                         input_shape=None, batchnorm: str = "fold", init: str = "random",
                         replicas_per_unit: int | None = None, device: str = "cpu",
                         model_name: str | None = None, force: bool = False,
                         alpha: float = 0.05, draws_per_unit: int | None = None,
                         **options) -> NullComparison:
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
    method : {"descent", "anneal", "greedy", "exact"}
        Solver (:func:`deepglass.frustration`); ``**options`` go to it.
    seed : int
        Run seed; each unit's seeds derive from it and the unit (:func:`unit_seed`).
    executor : Executor, {"inprocess", "ray"} or None
        Where units run (:mod:`deepglass.executors`); default in this process.
        An executor passed in is left open; one made here is closed.
    run : str, Path or RunDir, optional
        Run directory: finished units are written as they finish and skipped
        when the same call is repeated; at the end the tables, the best real
        gauge, the figure, the report section and the summary are written
        (:func:`write_frustration_run`).  A directory of another configuration
        is refused unless ``force``.
    progress : callable, optional
        ``progress(done, total)`` over the units computed in this call (first
        called with ``done=0``).
    input_shape : sequence of int, optional
        Input shape (default: the model's ``default_input_shape``).
    batchnorm : {"fold", "ignore"}
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
    _check_counts(replicas, null_instances, starts_per_null, replicas_per_unit, method)
    if not 0 < alpha < 1:
        raise DeepglassError(f"alpha must be in (0, 1), got {alpha}")
    if init not in ("random", "paper"):
        raise DeepglassError(f"init must be 'random' or 'paper', not {init!r}")
    if "engine" in options:
        from ..solve.engines import check_engine

        check_engine(options["engine"], method)
    if draws_per_unit is not None and (isinstance(draws_per_unit, bool) or not isinstance(
            draws_per_unit, (int, np.integer)) or draws_per_unit < 1):
        raise DeepglassError(f"draws_per_unit must be an integer >= 1, got {draws_per_unit!r}")
    graph, module, shape = _prepare(model, input_shape, batchnorm)
    if graph.n_edges == 0:
        raise DeepglassError("the graph has no edges")
    rpu = min(int(replicas_per_unit or replicas), int(replicas))
    from ..solve.engines import check_fits

    # a real unit that would not fit is refused before anything runs
    check_fits(graph, rpu, method, options.get("engine", "auto"), device)
    config = frustration_config(
        model=model_name or graph.meta.get("model") or type(model).__name__,
        input_shape=shape, batchnorm=batchnorm, weights=_weights_digest(module, graph),
        nodes=graph.n_nodes, edges=graph.n_edges, method=method, init=init,
        replicas=replicas, replicas_per_unit=rpu, nulls=nulls, null_instances=null_instances,
        starts_per_null=starts_per_null, seed=seed, device=device, options=options,
        rules=graph.meta.get("rules"))
    _check_memory(graph, replicas, rpu, nulls, null_instances, starts_per_null)
    rd = _open_run(run, config, force)
    ctx = _Context(graph=graph, model=module, input_shape=shape, batchnorm=batchnorm,
                   method=method, init=init, seed=int(seed), device=device, options=dict(options))
    if draws_per_unit is None:
        draws_per_unit = 1
        if nulls and _draws_batched(ctx):
            from ..solve.engines import draws_per_batch

            draws_per_unit = draws_per_batch(graph, starts_per_null, null_instances,
                                             device=device, n2="N2" in nulls)
    units = plan_units(replicas, nulls, null_instances, starts_per_null, rpu, draws_per_unit)
    done = rd.finished_units(UNIT_TABLE) if rd is not None else set()
    todo = [u for u in units if u.id not in done]
    ex = get_executor(executor, device=device)
    results: dict[str, dict] = {}
    compute = 0.0
    if progress:
        progress(0, len(todo))
    t_loop = time.perf_counter()
    writer = _UnitWriter(rd)
    try:
        for k, (unit, res) in enumerate(ex.map(run_unit, todo, shared=ctx), 1):
            compute += res["compute_seconds"]
            writer.write(unit.id, res)
            # a null unit's gauge is stored, not kept: memory stays O(units) rows
            results[unit.id] = res if unit.kind == "real" else {"rows": res["rows"]}
            if progress:
                progress(k, len(todo))
    finally:
        writer.close()  # waits for the units handed over: an interrupted run keeps them
        if not isinstance(executor, Executor):
            ex.close()
    t_units = time.perf_counter()
    store = writer.seconds
    frames = []
    for u in units:
        if u.id in results:
            frames.append(results[u.id]["rows"])
        else:
            frames.append(rd.read_unit(UNIT_TABLE, u.id))
    runs = _tidy(pd.concat(frames, ignore_index=True), nulls)
    stats = frustration_stats(runs)
    gauge = _best_real_gauge(runs, results, rd)
    out = NullComparison(runs=runs, stats=stats, gauge=gauge,
                         verdict=frustration_verdict(stats, alpha), config=config, run=rd,
                         info={"units": len(units), "computed": len(todo),
                               "resumed": len(units) - len(todo), "nodes": graph.n_nodes,
                               "edges": graph.n_edges, "compute_seconds": compute,
                               "store_seconds": store, "setup_seconds": t_loop - t_start,
                               "loop_seconds": t_units - t_loop,
                               "draws_per_unit": int(draws_per_unit)})
    if rd is not None:
        write_frustration_run(rd, out)
    out.info["wall_seconds"] = time.perf_counter() - t_start
    return out


class _UnitWriter:
    """Writes finished units to the run directory on one background thread, so
    the next unit computes while the last one is stored (the in-process
    executor keeps a core busy with the solver).  :meth:`close` waits for
    every unit handed over; a failed write is raised at the next call."""

    def __init__(self, run):
        from concurrent.futures import ThreadPoolExecutor

        self.run = run
        self.seconds = 0.0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="deepglass-store") if run else None
        self._pending: list = []

    def _write(self, uid: str, res: dict) -> None:
        t0 = time.perf_counter()
        self.run.write_unit(UNIT_TABLE, uid, res["rows"], arrays=_gauge_arrays(res))
        self.seconds += time.perf_counter() - t0

    def _check(self) -> None:
        for f in [f for f in self._pending if f.done()]:
            self._pending.remove(f)
            f.result()  # re-raises a failed write

    def write(self, uid: str, res: dict) -> None:
        if self._pool is None:
            return
        self._check()
        self._pending.append(self._pool.submit(self._write, uid, res))

    def close(self) -> None:
        if self._pool is None:
            return
        self._pool.shutdown(wait=True)
        self._check()


def _gauge_arrays(res: dict) -> dict:
    return {"sigma": res["sigma"], "sigma_in": res["sigma_in"], "sigma_out": res["sigma_out"],
            "energy": np.float64(res["energy"])}


def _tidy(runs: pd.DataFrame, nulls: Sequence[str]) -> pd.DataFrame:
    """Stable row order (real, then the nulls as given; instance; start) and dtypes."""
    order = {k: i for i, k in enumerate(("real",) + tuple(nulls))}
    runs = runs.assign(_o=runs["kind"].map(order)).sort_values(["_o", "instance", "start"],
                                                                kind="stable")
    runs = runs.drop(columns="_o").reset_index(drop=True)
    return runs.astype({"kind": str, "unit": str, "instance": np.int64, "start": np.int64,
                        "energy": np.float64, "local_min": bool, "sweeps": np.int64,
                        "seconds": np.float64, "build_seconds": np.float64,
                        "start_seed": np.int64})


def _best_real_gauge(runs: pd.DataFrame, results: dict, rd) -> dict:
    real = runs[runs["kind"] == "real"]
    uid = real.loc[real["energy"].idxmin(), "unit"]
    if uid in results:
        return _gauge_arrays(results[uid])
    return rd.load_arrays(f"{KIND}/{UNIT_TABLE}/{uid}")


# ---------------------------------------------------------------------------------
# run directory: tables, gauge, figure, report, summary
def _fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) != 0 and abs(x) < 10 ** -digits:
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def stats_markdown(stats: pd.DataFrame) -> str:
    """The statistics table in Markdown."""
    lines = ["| kind | n | mean | std | min | max | Welch t | p |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in stats.itertuples():
        p = "-" if math.isnan(r.p) else f"{r.p:.3g}"
        t = "-" if math.isnan(r.t) else f"{r.t:.2f}"
        lines.append(f"| {r.kind} | {r.n} | {_fmt(r.mean)} | {_fmt(r.std)} | {_fmt(r.min)} | "
                     f"{_fmt(r.max)} | {t} | {p} |")
    return "\n".join(lines)


def write_frustration_run(run, result: NullComparison) -> None:
    """Write the assembled tables, ``arrays/gauge_real.npz``,
    ``figures/frustration.png``, the report section and the summary."""
    from .figures import frustration_histograms

    run.write_table("frustration_runs", result.runs)
    run.write_table("frustration_stats", result.stats)
    g = result.gauge
    save_gauge(run, g["sigma"], g["sigma_in"], g["sigma_out"], g["energy"])
    fig = frustration_histograms(result.runs, result.stats, title=str(result.config["model"]))
    run.save_figure(fig, "frustration.png")
    c = result.config
    nulls = ", ".join(c["nulls"]) or "none"
    opts = ", ".join(f"{k}={v}" for k, v in c["options"].items())
    text = [
        "## Frustration vs null models",
        "",
        f"Network `{c['model']}` ({c['nodes']:,} nodes, {c['edges']:,} edges, batch norm "
        f"{c['batchnorm']}); solver `{c['method']}`{f' ({opts})' if opts else ''}, "
        f"{c['init']} start gauges, seed {c['seed']}. Real weights: {c['replicas']} replicas. "
        f"Null models: {nulls}"
        + (f", {c['null_instances']} instances x {c['starts_per_null']} starts each."
           if c["nulls"] else "."),
        "Capture rules (SPEC §1b): " + (", ".join(f"{k}={v}" for k, v in
                                                  c.get("rules", {}).items()) or "default") + ".",
        "Real sample: the energy of every replica; null sample: per instance, the least "
        "energy over its starts. Welch's t-test (unequal variances), two-sided.",
        "",
        stats_markdown(result.stats),
        "",
        f"Best real energy (delta): {result.gauge['energy']:.6f}; its gauge is in "
        f"`arrays/{GAUGE_ARRAYS}.npz`. All replicas at local minima: "
        f"{bool(result.runs['local_min'].all())}.",
        "",
        f"**Verdict.** {result.verdict}",
        "",
        "![frustration](figures/frustration.png)",
    ]
    run.write_report_section("\n".join(text))
    run.update_summary(result.summary())

"""Frustration of a signed graph: ground-state solvers (SPEC §2).

:func:`frustration` is the front end; ``method`` picks a solver from
:data:`METHODS` (NetworkX's ``method=`` style):

===========  =====================================================================
``descent``  layer-parallel steepest-first descent (default;
             :mod:`deepglass.solve.descent`): matrix-free with batched replicas
             (CPU or GPU), or compiled, one replica per thread (CPU)
``anneal``   matrix-free heat-bath annealing by colour class, then descent
``greedy``   the paper's Algorithm 1 on the explicit graph (numba, indexed heap)
``exact``    certified optimum: brute force (<= 25 nodes) or a HiGHS MILP
``auto``     :func:`choose_method`: ``greedy`` up to :data:`EXPLICIT_LIMIT` edges,
             else ``descent``
===========  =====================================================================

Every solver is a runner with one signature (:data:`METHODS`); the choices
around it live here too: the method (:func:`choose_method`), the descent's
engine (:func:`deepglass.solve.engines.choose_engine`, inside the descent) and
the intra-op threads (:func:`threads_for`).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from ..errors import DeepglassError, check_count, check_seed
from ..graph import SignedGraph
from .couplings import per_multiply_term
from .engines import check_device, check_engine
from .gauges import paper_gauges, random_gauges

__all__ = ["frustration", "FrustrationResult", "METHODS", "Solved", "EXPLICIT_LIMIT",
           "check_method", "choose_method", "threads_for", "start_gauges", "frustrated_weight",
           "check_weighted",
           "check_replica_memory", "replica_bytes"]


@dataclass
class FrustrationResult:
    """Result of :func:`frustration`.

    Attributes
    ----------
    frustration : float
        Least energy over replicas: the estimate of ``delta`` (SPEC §2).
    sigma : ndarray int8 (n,)
        Best gauge (graph node order).
    sigmas : ndarray int8 (R, n)
        Final gauge of every replica.
    energies : ndarray (R,)
        ``eps`` of every replica.
    local_min : ndarray bool (R,)
        Whether each replica ended at a single-flip local minimum.
    sigma_in, sigma_out : ndarray int8
        The best gauge on the input and output nodes: the partial order (SPEC §5).
    frustrated : DataFrame
        Per edge block: module, kind, edges, ``|weight|`` and the frustrated
        (residual negative) ``|weight|`` under the best gauge.
    seconds : float
    sweeps : int or ndarray
    method, init : str
    seed : int
    info : dict
        Solver specifics (e.g. ``lower_bound`` and ``optimal`` for ``exact``).
    """

    frustration: float
    sigma: np.ndarray
    sigmas: np.ndarray
    energies: np.ndarray
    local_min: np.ndarray
    sigma_in: np.ndarray
    sigma_out: np.ndarray
    frustrated: pd.DataFrame
    seconds: float
    sweeps: Any
    method: str
    init: str
    seed: int
    info: dict = field(default_factory=dict)

    @property
    def best(self) -> int:
        return int(np.argmin(self.energies))

    def to_frame(self) -> pd.DataFrame:
        """One row per replica: replica, energy, local_min, method, init, seed."""
        R = len(self.energies)
        sweeps = np.broadcast_to(np.asarray(self.sweeps), (R,))
        return pd.DataFrame({"replica": np.arange(R), "energy": self.energies,
                             "local_min": self.local_min, "sweeps": sweeps,
                             "method": self.method, "init": self.init, "seed": self.seed,
                             "seconds": self.seconds / max(R, 1)})

    def summary(self) -> dict:
        """Headline numbers (JSON-friendly)."""
        return {"frustration": float(self.frustration), "energies": self.energies.tolist(),
                "method": self.method, "init": self.init, "seed": self.seed,
                "replicas": len(self.energies), "local_min": bool(self.local_min.all()),
                "seconds": self.seconds,
                "sweeps": np.asarray(self.sweeps).tolist(), **self.info}

    def save(self, path: str | Path) -> Path:
        """Write ``PATH.npz`` (gauges, energies) and ``PATH.json`` (the rest); a
        ``.parquet`` path writes the per-replica table instead.  A missing parent
        folder is made.  ``PATH`` may end in ``.npz`` or ``.json``; any other
        dot is part of the name (``seed.1`` writes ``seed.1.npz``)."""
        path = Path(path)
        if not path.name:
            raise DeepglassError("a saved frustration result needs a file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            self.to_frame().to_parquet(path, index=False)
            return path
        npz, js = _result_files(path)
        np.savez_compressed(npz, sigma=self.sigma, sigmas=self.sigmas,
                            energies=self.energies, local_min=self.local_min,
                            sigma_in=self.sigma_in, sigma_out=self.sigma_out)
        meta = {k: v for k, v in self.summary().items() if k != "energies"}
        meta["frustrated"] = self.frustrated.to_dict(orient="list")
        js.write_text(json.dumps(meta, indent=2, default=float))
        return npz

    @classmethod
    def load(cls, path: str | Path) -> "FrustrationResult":
        """Read a result written by :meth:`save` (``.npz`` + ``.json``)."""
        npz, js = _result_files(Path(path))
        stem = npz.with_suffix("")
        if not npz.exists() or not js.exists():
            raise DeepglassError(f"no saved frustration result at {stem} (.npz and .json)")
        meta = json.loads(js.read_text())
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        info = {k: v for k, v in meta.items() if k not in (
            "frustration", "method", "init", "seed", "replicas", "local_min", "seconds",
            "sweeps", "frustrated")}
        return cls(frustration=meta["frustration"], sigma=arrays["sigma"],
                   sigmas=arrays["sigmas"], energies=arrays["energies"],
                   local_min=arrays["local_min"], sigma_in=arrays["sigma_in"],
                   sigma_out=arrays["sigma_out"],
                   frustrated=pd.DataFrame(meta["frustrated"]), seconds=meta["seconds"],
                   sweeps=meta["sweeps"], method=meta["method"], init=meta["init"],
                   seed=meta["seed"], info=info)


def start_gauges(n: int, replicas: int | None, seed: int = 0, init="random") -> np.ndarray:
    """Start gauges (R, n) int8: ``"random"`` (uniform), ``"paper"`` (10^6 random
    single-node flips of the identity gauge, SPEC §2) or an explicit array
    (``replicas`` None: as many as it has rows; else it must have that many)."""
    if isinstance(init, str):
        replicas = 80 if replicas is None else replicas
        if init == "random":
            return random_gauges(n, replicas, seed)
        if init == "paper":
            return paper_gauges(n, replicas, seed)
        raise DeepglassError(f"init must be 'random', 'paper' or an array, not {init!r}")
    s = np.asarray(init)
    if s.ndim == 1:
        s = s[None]
    if s.ndim != 2 or s.shape[1] != n or s.shape[0] < 1:
        raise DeepglassError(f"init: start gauges must be an array (R, {n}) (or ({n},)) of "
                             f"+-1, got {type(init).__name__} of shape {np.shape(init)}")
    if not np.isin(s, (-1, 1)).all():
        bad = s[~np.isin(s, (-1, 1))]
        raise DeepglassError(f"init: start gauges must hold +1 or -1; {bad.size} entries are "
                             f"other values (e.g. {bad.flat[0]!r})")
    if replicas is not None and s.shape[0] != replicas:
        raise DeepglassError(f"init holds {s.shape[0]} start gauges but replicas={replicas}: "
                             "give replicas=len(init), or leave it out")
    return s.astype(np.int8)


def frustrated_weight(graph: SignedGraph, sigma: np.ndarray) -> pd.DataFrame:
    """Per edge block, the |weight| of edges frustrated under ``sigma``.

    An edge i -> j is frustrated when ``A_ij sigma_i sigma_j < 0``; per block
    the frustrated weight is ``(sum|A_b| - sigma_dst . A_b^T sigma_src) / 2``,
    one matrix-free pass (the residual negative edges of ``S As S``, SPEC §2).
    """
    s = torch.as_tensor(sigma, dtype=torch.float64, device=graph.device)[None]
    rows = []
    for b in graph.edge_blocks:
        # one block in float64 at a time: no float64 copy of the whole graph
        b64 = b if graph.dtype == torch.float64 else b.to(dtype=torch.float64)
        dst = graph.node_blocks[b.dst]
        agree = float((graph.block_forward(b64, s) * s[:, dst.offset:dst.stop]).sum())
        del b64
        total = b.abs_sum()             # float64 and cached on the caller's graph
        rows.append({"module": b.module, "kind": b.kind, "edges": b.n_edges(),
                     "abs_weight": total, "frustrated_weight": max(0.5 * (total - agree), 0.0)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------
@contextmanager
def threads_for(graph: SignedGraph, small_edges: int = 50_000_000):
    """Intra-op threads for work on ``graph``: one for small CPU graphs.

    Their many tiny kernels lose far more to thread synchronization (badly so on
    a busy machine) than they gain; graphs of ``small_edges`` edges or more, and
    graphs on a device, keep the caller's setting.  :func:`frustration` runs
    inside it; an experiment unit that also builds graphs (null draws, tracing)
    may hold it around the whole unit.  The previous setting is restored on exit.
    """
    before = torch.get_num_threads()
    if graph.device.type == "cpu" and graph.n_edges < small_edges:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Solved:
    """What a solver runner returns (:data:`METHODS`).

    Attributes
    ----------
    sigmas : ndarray int8 (R, n)
        Final gauge of every replica (``exact``: one row, the optimum).
    energies : ndarray (R,)
        ``eps`` of every row of ``sigmas``.
    local_min : ndarray bool (R,)
        Whether each row is a single-flip local minimum.
    sweeps : int or ndarray
        Sweeps (or flips) the solver made.
    info : dict
        Solver specifics (JSON-friendly), copied into :attr:`FrustrationResult.info`.
    """

    sigmas: np.ndarray
    energies: np.ndarray
    local_min: np.ndarray
    sweeps: Any
    info: dict = field(default_factory=dict)


def _matrix_free(solver: Callable, graph: SignedGraph, s0: np.ndarray, callback,
                 **options) -> Solved:
    """Run a matrix-free solver (``descent`` / ``anneal``) from int8 start gauges;
    energies and the local-minimum test come from the fields it returns."""
    s = torch.as_tensor(s0)          # int8: the solver makes its own float copy
    st = solver(graph, s, callback=callback, **options)
    sig = st.sigma.to(torch.int8).cpu().numpy()
    # st.fields is As sigma recomputed from scratch at the end of the solver
    e = graph.energy_from_fields(st.sigma, st.fields).cpu().numpy()
    tol = options.get("tol", 1e-5) * graph.abs_row_sums()
    local = np.concatenate([
        (~((st.sigma[i:i + 8] * st.fields[i:i + 8] + tol) < 0).any(1)).cpu().numpy()
        for i in range(0, len(sig), 8)])
    return Solved(sig, e, local, st.sweeps, {"engine": st.engine})


def _descent(graph, s0, *, seed, callback, **options) -> Solved:
    from .descent import descent

    return _matrix_free(descent, graph, s0, callback, **options)   # deterministic: no seed


def _anneal(graph, s0, *, seed, callback, **options) -> Solved:
    from .anneal import anneal

    return _matrix_free(anneal, graph, s0, callback, seed=seed, **options)


def _explicit_sym(graph, method: str, limit) -> Any:
    """``graph.to_scipy_sym(limit)`` for an explicit solver, a graph over the edge
    limit refused in the words of a solver call: the method to use instead (the
    graph's own message speaks of the operator, and of a limit the CLI has not)."""
    from ..errors import TooLargeError
    from ..graph import EXPLICIT_EDGE_LIMIT

    lim = EXPLICIT_EDGE_LIMIT if limit is None else limit
    if isinstance(lim, (int, np.integer)) and not isinstance(lim, bool) and 0 <= lim < graph.n_edges:
        raise TooLargeError(
            f"method {method!r} needs an explicit matrix: the graph has {graph.n_edges:,} edges, "
            f"about {graph.explicit_bytes() / 2**30:.1f} GiB (limit {lim:,} edges); use method "
            f"'descent' or 'auto' (--method descent or auto), which run matrix-free, or, "
            f"from Python, a larger limit=")
    return graph.to_scipy_sym(limit)


def _greedy(graph, s0, *, seed, callback, **options) -> Solved:
    from .greedy import check_greedy_memory, greedy

    # refuse before building anything: As has 2 entries per edge
    check_greedy_memory(graph.n_nodes, 2 * graph.n_edges, len(s0),
                        max_bytes=options.get("max_bytes"))
    As = _explicit_sym(graph, "greedy", options.pop("limit", None))
    res = greedy(As, s0, **options)
    energies = per_multiply_term(res.energies, As, graph.abs_total())
    return Solved(res.sigma, energies, res.local_min, res.flips)


def _exact(graph, s0, *, seed, callback, **options) -> Solved:
    from .exact import exact

    As = _explicit_sym(graph, "exact", options.pop("limit", None))
    res = exact(As, **options)
    sig = np.asarray(res.sigma, dtype=np.int8)[None]
    energy, bound = per_multiply_term(np.array([res.energy, res.lower_bound]),
                                      As, graph.abs_total())
    return Solved(sig, np.array([energy]), np.array([True]), 0, {
        "lower_bound": float(bound), "optimal": bool(res.optimal),
        "exact_method": res.method})


#: method name -> runner ``run(graph, s0, *, seed, callback, **options) -> Solved``:
#: ``graph`` on the run's device and dtype, ``s0`` the int8 start gauges (R, n),
#: ``seed`` the run's seed (for stochastic solvers), ``callback`` the progress
#: hook (solvers without one ignore it), ``options`` the caller's solver options.
#: A new solver is one module plus its entry here.
METHODS: dict[str, Callable[..., Solved]] = {"descent": _descent, "anneal": _anneal,
                                             "greedy": _greedy, "exact": _exact}

#: largest graph (edges) for which ``method="auto"`` picks the explicit Algorithm 1
EXPLICIT_LIMIT = 2_000_000


def check_method(method: str) -> str:
    """``method`` itself if it names a solver of :data:`METHODS` or ``"auto"``.

    Raises
    ------
    DeepglassError
        One line naming the choices.
    """
    if method != "auto" and method not in METHODS:
        raise DeepglassError(f"unknown method {method!r}; choose auto or one of "
                             f"{', '.join(METHODS)}")
    return method


def choose_method(graph_or_edges, method: str = "auto", *,
                  explicit_limit: int | None = None) -> str:
    """The solver ``method`` names: ``"auto"`` resolved, any other name checked.

    ``"auto"`` is the paper's Algorithm 1 (``"greedy"``, explicit couplings, the
    better optimizer) on graphs of at most ``explicit_limit`` edges, else the
    matrix-free ``"descent"`` (whose memory does not grow with the edges), O(1).

    Parameters
    ----------
    graph_or_edges : SignedGraph or int
        The graph, or its number of edges.
    method : {"auto", "descent", "anneal", "greedy", "exact"}
    explicit_limit : int, optional
        Default :data:`EXPLICIT_LIMIT`.

    Raises
    ------
    DeepglassError
        An unknown method.
    """
    if check_method(method) != "auto":
        return method
    n_edges = graph_or_edges.n_edges if isinstance(graph_or_edges, SignedGraph) \
        else int(graph_or_edges)
    limit = EXPLICIT_LIMIT if explicit_limit is None else int(explicit_limit)
    return "greedy" if n_edges <= limit else "descent"


def _solver_options(method: str, asked: str, options: dict) -> dict:
    """The options ``method`` takes: ``engine`` is the descent's; ``auto``'s
    choice of another method drops it (it applies wherever descent runs), and so
    does ``engine="auto"``; a named engine with a named other method is refused."""
    engine = options.get("engine")
    if engine is not None and method != "descent":
        if asked != "auto" and engine != "auto":
            check_engine(engine, method)       # raises: engine applies to descent only
        options = {k: v for k, v in options.items() if k != "engine"}
    # a misspelled option (gama=0.5) was a TypeError from inside the solver
    own = solver_options(method)
    unknown = sorted(k for k in options if k not in own)
    if unknown:
        raise DeepglassError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(unknown)} for method {method!r} (its options: "
                             f"{', '.join(own)})")
    return dict(options)


def solver_options(method: str) -> list[str]:
    """The keyword options the solver of ``method`` takes (those of
    :func:`~deepglass.solve.descent.descent`, ``anneal``, ``greedy`` and
    ``exact``, and ``limit`` of the explicit ones), besides ``seed``."""
    import importlib
    import inspect

    fn = getattr(importlib.import_module(f"{__name__}.{method}"), method)
    own = [k for k in inspect.signature(fn).parameters
           if k not in ("graph", "sigma0", "As", "callback", "seed")]
    return own + (["limit"] if method in ("greedy", "exact") else [])


def replica_bytes(n_nodes: int, replicas: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of ``replicas`` gauges of ``n_nodes`` nodes held at once: the int8
    start gauges and a solver's float state per replica (a float copy of sigma
    and its fields ``As sigma``): ``R n (1 + 2 itemsize)``.  A lower bound of
    every engine's working set (the engines add their own buffers)."""
    item = torch.tensor([], dtype=dtype).element_size()
    return int(replicas) * int(n_nodes) * (1 + 2 * item)


def check_replica_memory(graph: SignedGraph, replicas: int, hint: str = "lower --replicas",
                         max_memory_gb: float | None = None) -> None:
    """Refuse (one line, :func:`deepglass.memory.check_fits`) ``replicas`` start
    gauges of ``graph`` that would not fit, before any is drawn."""
    from ..memory import check_fits

    check_fits(replica_bytes(graph.n_nodes, replicas, graph.dtype),
               f"{replicas:,} replicas of {graph.n_nodes:,} nodes (start gauges and solver "
               "state)", hint, max_memory_gb)


def frustration(graph_or_model, *, method: str = "descent", replicas: int | None = None,
                seed: int = 0,
                init="random", device: str = "cpu", dtype: torch.dtype | None = None,
                input_shape=None, output: str | int | None = None, callback=None,
                **options) -> FrustrationResult:
    """Frustration ``delta = min_sigma eps(sigma)`` of a network's signed graph (SPEC §2).

    Parameters
    ----------
    graph_or_model : SignedGraph or torch.nn.Module
        A module is traced with ``input_shape`` (default: its ``default_input_shape``).
    method : {"descent", "auto", "anneal", "greedy", "exact"}
        See :data:`METHODS`; ``"auto"``: :func:`choose_method` (Algorithm 1 up
        to :data:`EXPLICIT_LIMIT` edges, else descent).  :attr:`FrustrationResult.method`
        is the method that ran.
    replicas : int, optional
        Number of start gauges (default 80, as the paper; with ``init`` an
        array, its number of rows); ignored by ``exact``.
    seed : int
        Seed of the start gauges (and of annealing).
    init : {"random", "paper"} or array
        Start gauges: uniform, the paper's 10^6 random single flips, or given (R, n).
    device : {"cpu", "cuda"}
    dtype : torch.dtype, optional
        Operator precision: float32 (default) or float64.
    input_shape : sequence of int, optional
        One sample's shape without the batch dimension, to trace a module
        (default: ``model.default_input_shape``); unused for a graph.
    output : str or int, optional
        The output whose nodes :attr:`FrustrationResult.sigma_out` holds (a
        name of :attr:`SignedGraph.outputs` or a position; default the graph's
        selected output, the first): the gauge a near-monotonicity test of
        that output reads.  The frustration is the whole graph's either way.
    callback : callable, optional
        Called by the solver as it goes (with the sweeps done), for progress.
    **options
        Passed to the solver (e.g. ``gamma`` or ``engine`` for descent, ``sweeps``
        for anneal, ``time_limit`` for exact, ``max_flips`` for greedy).  ``engine``
        is dropped where ``auto`` picks another method than descent.

    Raises
    ------
    DeepglassError
        An unknown method or option, invalid ``replicas``, ``seed``, ``device``,
        ``dtype``, ``init`` or ``callback``, a graph without edges, or start
        gauges that would not fit in memory (one line each, before solving).

    Returns
    -------
    FrustrationResult

    Notes
    -----
    The whole call (start gauges, solver, per-block frustrated weights) runs
    under :func:`threads_for`: one intra-op thread on small CPU graphs.

    References
    ----------
    Paper 000, Methods and SI B (Algorithm 1).

    Examples
    --------
    >>> import deepglass, torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> res = deepglass.frustration(net, input_shape=(4,), replicas=4)
    >>> 0 <= res.frustration <= 0.5
    True
    """
    choose_method(0, method)                       # an unknown name, before tracing
    given = None if replicas is None else check_count(replicas, "replicas")
    check_seed(seed)
    check_device(device)
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise DeepglassError(f"dtype must be torch.float32 or torch.float64 (the solvers' "
                             f"precisions), not {dtype!r}")
    if callback is not None and not callable(callback):
        raise DeepglassError(f"callback must be callable (called with the sweeps done), "
                             f"not {type(callback).__name__}")
    if init is None or not isinstance(init, str) and not hasattr(init, "__len__"):
        raise DeepglassError(f"init must be 'random', 'paper' or an array of start gauges, "
                             f"not {init!r}")
    graph = _as_graph(graph_or_model, input_shape)
    if output is not None:
        graph = graph.select_output(output)
    graph = graph.to(device=device, dtype=dtype or graph.dtype)
    with threads_for(graph):        # (its |weight| sum: one thread on a small graph too)
        check_weighted(graph)
    chosen = choose_method(graph, method)
    options = _solver_options(chosen, method, options)
    R = 1 if chosen == "exact" else given if given is not None else \
        80 if isinstance(init, str) else len(np.atleast_2d(np.asarray(init)))
    check_replica_memory(graph, R)
    with threads_for(graph):
        s0 = start_gauges(graph.n_nodes, None if chosen == "exact" and not isinstance(init, str)
                          else R, seed, init)
        t0 = time.perf_counter()
        out = METHODS[chosen](graph, s0, seed=seed, callback=callback, **options)
        seconds = time.perf_counter() - t0
        best = int(np.argmin(out.energies))
        sigma = np.asarray(out.sigmas[best], dtype=np.int8)
        frustrated = frustrated_weight(graph, sigma)
    return FrustrationResult(
        frustration=float(out.energies[best]), sigma=sigma,
        sigmas=np.asarray(out.sigmas, dtype=np.int8),
        energies=np.asarray(out.energies, dtype=np.float64),
        local_min=np.asarray(out.local_min, bool),
        sigma_in=sigma[graph.input_index], sigma_out=sigma[graph.output_index],
        frustrated=frustrated, seconds=seconds, sweeps=out.sweeps, method=chosen,
        init=init if isinstance(init, str) else "given", seed=int(seed), info=out.info)


def check_weighted(graph: SignedGraph) -> None:
    """Refuse a graph whose frustration is undefined: eps is a fraction of the
    edges' total |weight| (SPEC §2), 0/0 without edges or with all weights 0,
    and no number where the weights overflow the graph's dtype (finite
    parameters whose batch-norm fold does not fit), and a precision no
    solver runs in (float16 / bfloat16)."""
    if graph.dtype not in (torch.float32, torch.float64):
        raise DeepglassError(f"the graph's weights are {graph.dtype}; the solvers run in "
                             "torch.float32 or torch.float64: pass dtype=torch.float32 (or "
                             "use graph.to(dtype=torch.float32))")
    if graph.n_edges == 0:
        raise DeepglassError("the graph has no edges")
    if not math.isfinite(graph.abs_total()):
        raise DeepglassError(f"the graph's edge weights overflow {graph.dtype} (their |weight| "
                             "sums to infinity: finite parameters whose product, a batch norm's "
                             "scale folded into its layer's weights, does not fit in float32); "
                             "check the weights' scale")
    if graph.abs_total() == 0:
        raise DeepglassError(f"all {graph.n_edges:,} edges of the graph have weight 0, so its "
                             "frustration (a fraction of their total |weight|) is undefined")


def _as_graph(graph_or_model, input_shape) -> SignedGraph:
    """The signed graph of a SignedGraph (itself) or of a module (traced)."""
    if isinstance(graph_or_model, SignedGraph):
        return graph_or_model
    if isinstance(graph_or_model, torch.nn.Module):
        shape = input_shape if input_shape is not None else \
            getattr(graph_or_model, "default_input_shape", None)
        if shape is None:
            raise DeepglassError("input_shape is needed to trace this model")
        return SignedGraph.from_module(graph_or_model, shape)
    raise DeepglassError(f"expected a SignedGraph or nn.Module, got "
                         f"{type(graph_or_model).__name__}")


def _result_files(path: Path) -> tuple[Path, Path]:
    """``PATH.npz`` and ``PATH.json`` of a saved result (a given ``.npz`` or
    ``.json`` ending is the one of its files, not part of the name)."""
    stem = path.with_suffix("") if path.suffix in (".npz", ".json") else path
    return Path(str(stem) + ".npz"), Path(str(stem) + ".json")

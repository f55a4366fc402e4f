"""Active subnetworks of single inputs and their frustration (SPEC §4; paper 000,
Results "Frustration" and SI D.3, Fig. 2 inset).

The active subnetwork of an input (the nodes whose value flows on nonzero, the
window maxima of max pools, the predicted output node, and what still reaches
it) is a feature of the graph: :func:`deepglass.graph.active.active_patterns`
computes it as masks on the edge blocks, from a recorded forward pass
(:mod:`deepglass.graph.pattern`).  This module holds the experiment's
science: ``delta_x``, the frustration (SPEC §2) of what remains, normalized by
the remaining ``|weight|`` (removed nodes are isolated and do not
contribute), its summary statistics, and an explicit reference construction
for small graphs.  The paper finds ``delta_x < delta`` of the whole network
nearly always.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch.nn as nn

from ..errors import DeepglassError
from ..graph import SignedGraph
from ..graph.active import ActivePatterns, active_patterns
from ..graph.blocks import MaskedBlock, SparseBlock

__all__ = ["active_subgraph", "ActiveSubgraphs", "MaskedBlock", "SparseBlock",
           "explicit_active_nodes", "active_frustration", "active_summary_stats",
           "exact_rows", "certification_note"]


class ActiveSubgraphs(ActivePatterns):
    """Active subnetworks of a batch of inputs (SPEC §4) as masks on one graph
    (:class:`~deepglass.graph.active.ActivePatterns`), with their frustration."""

    def frustration(self, method: str = "auto", replicas: int = 8, seed: int = 0,
                    warm_start: np.ndarray | None = None, explicit_limit: int = 2_000_000,
                    callback=None, **options) -> pd.DataFrame:
        """``delta_x`` of every input: :func:`active_frustration` on each subgraph."""
        rows = []
        for k in range(len(self)):
            r = active_frustration(self.subgraph(k), method=method, replicas=replicas,
                                   seed=seed, warm_start=warm_start,
                                   explicit_limit=explicit_limit, **options)
            rows.append({"input": self.ids[k], **r})
            if callback is not None:
                callback(k)
        table = self.summary()
        extra = pd.DataFrame(rows).drop(columns="input")
        for c in extra.columns:
            table[c] = extra[c].to_numpy()
        return table


def active_subgraph(graph: SignedGraph, model: nn.Module, x, *, ids=None,
                    batch_size: int | None = None, inputs_always_active: bool = True,
                    forward_kwargs: dict | None = None, target="pred") -> ActiveSubgraphs:
    """Active subnetworks of inputs ``x`` (SPEC §4; paper 000 SI D.3).

    Algorithm: :func:`deepglass.graph.active.active_patterns` (one recorded
    forward pass per batch, then reachability to the target outputs over the
    pattern operators, in reverse topological order); O(B x (forward pass +
    one pattern adjoint per edge block)) time, O(B x n) booleans.

    Parameters
    ----------
    graph : SignedGraph
        The signed graph of ``model``.
    model : torch.nn.Module
        The network ``graph`` was captured from, weights included (another
        architecture or other weights: a one-line error).
    x : tensor or array, (B, *input_shape) or (*input_shape)
        Finite inputs.
    ids, batch_size, inputs_always_active, forward_kwargs
        As in :func:`~deepglass.graph.active.active_patterns`.
    target : {"pred", "all"} or sequence of int (B,)
        The output nodes each subnetwork ends in: the predicted class (SPEC
        §4), every output, or one output position per input.

    Returns
    -------
    ActiveSubgraphs
        Per-input masks (``keep``, ``active``, ``pool_max``), ``pred``,
        ``edges`` and ``abs_weight`` per edge block; :meth:`~ActiveSubgraphs.subgraph`
        gives input ``k``'s subnetwork as a :class:`SignedGraph`,
        :meth:`~ActiveSubgraphs.summary` / :meth:`~ActiveSubgraphs.block_table`
        the tables and :meth:`~ActiveSubgraphs.frustration` its ``delta_x``.

    Raises
    ------
    DeepglassError
        One line, before any forward pass: inputs of another shape, NaN or
        none; a model other than the graph's; a bad ``target``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from deepglass.graph import SignedGraph
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    >>> g = SignedGraph.from_module(net, (4,))
    >>> subs = active_subgraph(g, net, torch.randn(5, 4))
    >>> subs.keep.shape
    (5, 9)
    """
    p = active_patterns(graph, model, x, ids=ids, batch_size=batch_size,
                        inputs_always_active=inputs_always_active,
                        forward_kwargs=forward_kwargs, target=target)
    return ActiveSubgraphs(**{f: getattr(p, f) for f in p.__dataclass_fields__})


def active_frustration(sub: SignedGraph, method: str = "auto", replicas: int = 8,
                       seed: int = 0, warm_start: np.ndarray | None = None,
                       explicit_limit: int = 2_000_000, **options) -> dict:
    """Frustration ``delta_x`` of one active subgraph (SPEC §4 with §2).

    Parameters
    ----------
    sub : SignedGraph
        From :meth:`ActiveSubgraphs.subgraph`.
    method : {"auto", "descent", "anneal", "greedy", "exact"}
        ``auto``: the paper's Algorithm 1 (``greedy``) when the subgraph has at
        most ``explicit_limit`` edges, else ``descent`` (engine ``auto``).  ``exact``
        runs :func:`deepglass.solve.exact.exact` on the nodes that keep an edge
        only (removed nodes are isolated and would only enlarge the search:
        brute force up to 25 kept nodes, else the certified MILP).
    replicas, seed
        Start gauges (uniform random, seeded).
    explicit_limit : int
        Largest subgraph (edges) that ``auto`` solves with Algorithm 1.
    warm_start : ndarray (n,), optional
        A gauge of the whole network (e.g. its best one); used as the first
        start gauge, so ``delta_x`` is at most the energy of that gauge on the
        subgraph.
    **options
        Passed to the solver (``time_limit`` for ``exact``, ``gamma`` for
        ``descent``, ...).

    Returns
    -------
    dict
        ``delta_x``, ``delta_x_mean`` (mean over replicas), ``local_min``,
        ``method``, ``solve_seconds``; ``delta_x`` is NaN for a subgraph without
        edges, or whose edges all have weight 0 (eps is 0/0, SPEC §2).  ``exact`` adds ``lower_bound`` and ``optimal``.
    """
    from ..solve import check_method, choose_method, frustration, start_gauges

    check_method(method)
    if sub.n_edges == 0 or sub.abs_total() == 0:
        return {"delta_x": np.nan, "delta_x_mean": np.nan, "local_min": True,
                "method": "none", "solve_seconds": 0.0}
    if method == "auto":
        method = choose_method(sub, explicit_limit=explicit_limit)
    if method != "descent":
        options = {k: v for k, v in options.items() if k != "engine"}  # descent's only
    if method == "exact":
        return _exact_on_kept(sub, **options)
    init: Any = "random"
    if warm_start is not None:
        ws = np.asarray(warm_start, dtype=np.int8).reshape(-1)
        if ws.shape[0] != sub.n_nodes:
            raise DeepglassError(f"warm_start has {ws.shape[0]} entries, the graph "
                                 f"{sub.n_nodes} nodes")
        init = start_gauges(sub.n_nodes, int(replicas), seed, "random")
        init[0] = ws
    res = frustration(sub, method=method, replicas=replicas, seed=seed, init=init,
                      device=str(sub.device), **options)
    return {"delta_x": res.frustration, "delta_x_mean": float(np.mean(res.energies)),
            "local_min": bool(res.local_min.all()), "method": method,
            "solve_seconds": res.seconds}


def _exact_on_kept(sub: SignedGraph, **options) -> dict:
    """Certified ``delta_x``: :func:`deepglass.solve.exact.exact` on the couplings
    restricted to the nodes with at least one kept edge."""
    from ..solve.couplings import per_multiply_term
    from ..solve.exact import exact

    t0 = time.perf_counter()
    As = sub.to_scipy_sym(options.pop("limit", None))
    nodes = np.flatnonzero(np.diff(As.indptr) > 0)
    res = exact(As[nodes][:, nodes], **options)
    energy, bound = per_multiply_term(np.array([res.energy, res.lower_bound]),
                                      As, sub.abs_total())
    return {"delta_x": float(energy), "delta_x_mean": float(energy),
            "local_min": True, "method": "exact", "solve_seconds": time.perf_counter() - t0,
            "lower_bound": float(bound), "optimal": bool(res.optimal)}


def active_summary_stats(table: pd.DataFrame, delta: float | None = None) -> dict:
    """Headline numbers of a per-input ``delta_x`` table: mean / median / std of
    ``delta_x``, mean kept fractions and, given ``delta`` of the whole net, the
    fraction of inputs with ``delta_x < delta`` (paper: nearly all)."""
    d = table["delta_x"].to_numpy(dtype=float)
    d = d[np.isfinite(d)]
    out = {"inputs": int(len(table)), "delta_x_mean": float(d.mean()) if len(d) else None,
           "delta_x_median": float(np.median(d)) if len(d) else None,
           "delta_x_std": float(d.std()) if len(d) else None,
           "delta_x_min": float(d.min()) if len(d) else None,
           "delta_x_max": float(d.max()) if len(d) else None,
           "frac_nodes_mean": float(table["frac_nodes"].mean()) if len(table) else None,
           "frac_edges_mean": float(table["frac_edges"].mean()) if len(table) else None}
    if delta is not None:
        out["delta"] = float(delta)
        out["frac_below_delta"] = float((d < delta).mean()) if len(d) else None
    if "delta_x_mean" in table.columns and len(d):
        # the solver's scatter: how far its replicas end above their best, per input
        spread = (table["delta_x_mean"] - table["delta_x"]).to_numpy(dtype=float)
        spread = spread[np.isfinite(spread)]
        out["delta_x_scatter"] = float(np.median(spread)) if len(spread) else None
    ex = exact_rows(table)
    if ex is not None:
        # ``exact`` certifies its value or stops at the time limit with the best
        # value found (an upper bound on delta_x) and a proven lower bound
        ok = ex["optimal"].astype(bool).to_numpy()
        gap = (ex["delta_x"] - ex["lower_bound"]).to_numpy(dtype=float)
        out["exact_solves"] = int(len(ex))
        out["exact_certified"] = int(ok.sum())
        out["exact_max_gap"] = float(np.nanmax(gap)) if len(ex) and not ok.all() else 0.0
        out["exact_lower_bound_mean"] = float(ex["lower_bound"].mean()) if len(ex) else None
    return out


def exact_rows(table: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of a ``delta_x`` table solved by ``exact`` (an active subgraph
    with edges), or None when the table has none (another method)."""
    if "method" not in table.columns or not (table["method"] == "exact").any():
        return None
    ex = table[table["method"] == "exact"]
    if "optimal" not in ex.columns or "lower_bound" not in ex.columns:
        return None
    return ex


def certification_note(stats: dict, time_limit: float | None = None) -> str | None:
    """One sentence on the ``exact`` solves of :func:`active_summary_stats`
    (None when ``exact`` did not run): every ``delta_x`` certified optimal, or
    how many are the best value found within the time limit, not certified
    (an upper bound on the subnetwork's frustration), with the largest gap to
    their proven lower bounds."""
    k = stats.get("exact_solves")
    if not k:
        return None
    c = stats["exact_certified"]
    if c == k:
        return (f"exact solver: delta_x certified optimal for all {k} inputs"
                if k > 1 else "exact solver: delta_x certified optimal")
    limit = f" of {time_limit:g} s per solve" if time_limit is not None else ""
    return (f"exact solver: delta_x of {k - c} of {k} inputs is the best value found within "
            f"the time limit{limit}, not certified (an upper bound; its proven lower bound is "
            f"in the lower_bound column): gap up to {stats['exact_max_gap']:.4f}"
            + (f"; {c} certified optimal" if c else "")
            + "; raise --time-limit (time_limit=) to certify more")


def explicit_active_nodes(graph: SignedGraph, active: np.ndarray, end_nodes,
                          pool_max: dict | None = None, windows: dict | None = None
                          ) -> tuple[np.ndarray, Any]:
    """Reference construction of one active subnetwork on the explicit graph.

    Drops the rows and columns of inactive nodes from ``graph.to_scipy()``,
    drops max-pool edges that are not window maxima (``pool_max`` per edge
    block, as in :class:`ActiveSubgraphs`), and keeps the nodes from which an
    active node of ``end_nodes`` (one node index, e.g. the predicted output's,
    or several) is reachable (scipy breadth-first search on the reversed
    graph, once per end node).  O(edges x end nodes); small graphs only.
    Returns (kept node mask, CSR of the kept edges).
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order

    n = graph.n_nodes
    rows, cols, ws = [], [], []
    for bi, b in enumerate(graph.edge_blocks):
        i, j, w = b.coo()
        if pool_max is not None and bi in pool_max:
            win = windows[bi]
            idx = win.idx.cpu().numpy()
            o, t = np.nonzero(pool_max[bi] & win.valid.cpu().numpy())
            maxima = set(zip(idx[o, t].tolist(), o.tolist()))
            ok = np.array([(a, c) in maxima for a, c in zip(i.tolist(), j.tolist())], dtype=bool)
            i, j, w = i[ok], j[ok], w[ok]
        gi = (b.src_range[0] + i if b.src_range is not None
              else b.src_index.reshape(-1).cpu().numpy()[i])
        rows.append(gi)
        cols.append(graph.node_blocks[b.dst].offset + j)
        ws.append(w)
    i, j, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(ws)
    ok = active[i] & active[j]
    i, j, w = i[ok], j[ok], w[ok]
    # reachability on the structure (an edge counts whatever its weight)
    P = sp.csr_matrix((np.ones(len(i)), (j, i)), shape=(n, n))     # reversed edges
    reach = np.zeros(n, dtype=bool)
    for end in np.atleast_1d(np.asarray(end_nodes, dtype=np.int64)).tolist():
        if active[end] and not reach[end]:
            reach[breadth_first_order(P, end, directed=True, return_predecessors=False)] = True
    ok = reach[i] & reach[j]
    A = sp.coo_matrix((w[ok], (i[ok], j[ok])), shape=(n, n)).tocsr()
    return reach, A

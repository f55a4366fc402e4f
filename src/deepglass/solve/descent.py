"""Layer-parallel steepest-first descent to a single-flip local minimum (SPEC §2).

The nodes of one node block share no edge, and neither do the blocks of one
colour class of :meth:`SignedGraph.coloring`.  Flipping any set of nodes of one
class whose local fields ``h_i = sigma_i (As sigma)_i`` are negative therefore
lowers ``sigma^T As sigma`` by exactly ``4 sum |h_i|``: the energy never rises.

Schedule (steepest first).  In sweep ``k``, class by class, the nodes with
``h_i < theta`` flip, where ``theta = gamma decay^k min h`` and the minimum is
taken over each node block of each replica (``threshold="block"``, default:
every layer flips its own steepest nodes in every sweep) or over the whole
replica (``threshold="global"``: ``gamma -> 1, decay = 1`` approaches the
paper's Algorithm 1, one steepest flip at a time).  ``gamma = 0`` flips every
negative field.  The threshold shrinks with the fields and with ``decay^k``,
so the run ends where no field is negative.

Two engines run this schedule (``engine=``).  The matrix-free one (below)
works on any graph, on CPU or GPU.  On CPU graphs of up to
:data:`EXPLICIT_ENGINE_EDGES` edges ``"auto"`` picks the explicit engine
(:mod:`deepglass.solve.explicit_descent`): the couplings as CSR, compiled,
one replica per thread, each sweep costing only its flips.  With exact
arithmetic both take identical steps (tested).  Their default ``decay``
differs because their tails cost differently: the explicit engine keeps the
threshold (``decay=1``), the matrix-free one decays it (``0.97``) to end the
tail in few operator sweeps.

Measured from the same start gauges as Algorithm 1 (``bench/bench_frustration.py``,
paired differences in eps, seeds 1 and 7): ``decay=1`` ends lower than
Algorithm 1 on the trained digits CNN (-0.0008 +- 0.0006, 96 replicas), a
random LeNet (-0.0013 +- 0.0002) and ResNet-18 at 3x32x32 (-0.00012 +-
0.00003, 16 replicas); ``decay=0.97`` ends level on the small nets (within
one standard error) and lower on ResNet-18 (-0.00007 +- 0.00003).

Matrix-free engine: fields are kept up to date incrementally; after a class flips, only the edge
blocks incident to it are evaluated, with the matrix-free operator while many
nodes flip and with sparse column updates (:meth:`EdgeBlock.sparse_apply`)
once few do, so the long tail costs little.  At the end the fields are
recomputed from scratch and the descent continues if rounding hid a negative
field, so the result is a verified single-flip local minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..graph import SignedGraph

__all__ = ["descent", "DescentState", "choose_engine", "EXPLICIT_ENGINE_EDGES"]


@dataclass
class DescentState:
    sigma: torch.Tensor      # (R, n), +-1 in the graph's dtype
    fields: torch.Tensor     # (R, n) = As sigma
    sweeps: int = 0
    flips: np.ndarray | None = None
    engine: str = "matrix-free"


class _Incidence:
    """Per colour class: its node blocks and the edge blocks touching them."""

    def __init__(self, graph: SignedGraph):
        self.graph = graph
        self.classes = graph.coloring()
        self.src_of: dict[int, list] = {}
        self.dst_of: dict[int, list] = {}
        self.degree: dict[int, tuple[float, float]] = {}   # id -> (out-, in-degree)
        for b in graph.edge_blocks:
            self.dst_of.setdefault(b.dst, []).append(b)
            for s in b.src_blocks:
                self.src_of.setdefault(s, []).append(b)
            e = b.n_edges()
            self.degree[id(b)] = (e / max(b.in_size, 1), e / max(b.out_size, 1))


#: most edge contributions one sparse update materializes at once (~40 bytes
#: each with their indices): bounds memory when many replicas flip many nodes
SPARSE_CHUNK = 1 << 22


def _sparse_limit(b, R: int, sparse_ratio: float) -> float:
    """Largest flipped fraction of a block for which sparse updates of edge
    block ``b`` pay.  Measured on AlexNet's classifier (one thread): a sparse
    update costs ~40 ns per edge, a full dense-layer evaluation ~0.4 ns per edge
    plus ~0.02 ns per edge and replica (weight reads amortized over replicas),
    so for weight-bound blocks the limit falls like ``(1 + 0.05 R) / R``."""
    limit = sparse_ratio * b.sparse_advantage
    if getattr(b, "weight_bound", False):
        limit *= (1.0 + 0.05 * R) / R
    return limit


def _chunks(k: int, degree: float):
    step = max(1, int(SPARSE_CHUNK // max(degree, 1.0)))
    for start in range(0, k, step):
        yield slice(start, min(k, start + step))


def _update_fields(graph: SignedGraph, inc: _Incidence, cls: list[int], F: torch.Tensor,
                   delta: torch.Tensor, flipped: dict[int, tuple], sparse_ratio: float) -> None:
    """``F += As delta`` for ``delta`` supported on the blocks of one class."""
    R = F.shape[0]
    n = graph.n_nodes
    done_src = set()
    for blk_id in cls:
        nb = graph.node_blocks[blk_id]
        r_idx, loc = flipped[blk_id]
        k = len(loc)
        if k == 0:
            continue
        frac = k / (R * nb.size)
        # edges ending in this block: F[sources] += A_b delta[dst]
        for b in inc.dst_of.get(blk_id, []):
            if frac < _sparse_limit(b, R, sparse_ratio) and b.supports_sparse():
                for c in _chunks(k, inc.degree[id(b)][1]):
                    r_c, loc_c = r_idx[c], loc[c]
                    vals = delta[r_c, nb.offset + loc_c]
                    entry, src, contrib = b.sparse_adjoint(loc_c, vals)
                    gsrc = (b.src_range[0] + src if b.src_range is not None
                            else b.src_index.reshape(-1)[src])
                    F.view(-1).index_add_(0, r_c[entry] * n + gsrc, contrib.to(F.dtype))
            else:
                v = b.adjoint(delta[:, nb.offset:nb.stop].reshape((R,) + b.out_shape))
                graph.scatter_source(b, F, v)
        # edges leaving this block: F[dst] += A_b^T delta[src]
        for b in inc.src_of.get(blk_id, []):
            if id(b) in done_src:
                continue
            done_src.add(id(b))
            dst = graph.node_blocks[b.dst]
            if (frac < _sparse_limit(b, R, sparse_ratio) and b.supports_sparse()
                    and b.src_range is not None and len(b.src_blocks) == 1):
                for c in _chunks(k, inc.degree[id(b)][0]):
                    r_c, loc_c = r_idx[c], loc[c]
                    vals = delta[r_c, nb.offset + loc_c]
                    src_loc = nb.offset + loc_c - b.src_range[0]
                    entry, d, contrib = b.sparse_apply(src_loc, vals)
                    F.view(-1).index_add_(0, r_c[entry] * n + dst.offset + d,
                                          contrib.to(F.dtype))
            else:
                F[:, dst.offset:dst.stop] += graph.block_forward(b, delta)


#: ``engine="auto"`` holds the couplings explicitly up to this many edges (on CPU)
EXPLICIT_ENGINE_EDGES = 30_000_000

#: default ``decay`` per engine (see the module docstring and :mod:`.explicit_descent`)
DEFAULT_DECAY = {"explicit": 1.0, "matrix-free": 0.97}


def choose_engine(graph: SignedGraph, replicas: int, engine: str = "auto") -> str:
    """``"explicit"`` (numba, CSR couplings) for CPU graphs of at most
    :data:`EXPLICIT_ENGINE_EDGES` edges whose CSR fits in memory, else
    ``"matrix-free"``; an explicit choice is returned as given (and checked)."""
    from .greedy import check_greedy_memory
    from ..errors import TooLargeError

    if engine not in ("auto", "explicit", "matrix-free"):
        raise ValueError("engine must be 'auto', 'explicit' or 'matrix-free'")
    if engine == "matrix-free":
        return engine
    if engine == "auto" and (graph.device.type != "cpu" or graph.n_edges > EXPLICIT_ENGINE_EDGES):
        return "matrix-free"
    try:
        # same footprint as Algorithm 1's: CSR + ~24 bytes per node and running replica
        check_greedy_memory(graph.n_nodes, 2 * graph.n_edges, replicas)
    except TooLargeError:
        if engine == "explicit":
            raise
        return "matrix-free"
    return "explicit"


def descent(graph: SignedGraph, sigma0: torch.Tensor, *, gamma: float = 0.9,
            decay: float | None = None, threshold: str = "block", engine: str = "auto",
            max_sweeps: int = 100_000, sparse_ratio: float = 0.0005, tol: float = 1e-5,
            callback=None) -> DescentState:
    """Layer-parallel steepest-first descent of ``eps(sigma)`` to a local minimum.

    Parameters
    ----------
    graph : SignedGraph
    sigma0 : torch.Tensor
        Start gauges, shape (R, n), entries +-1.
    gamma : float in [0, 1)
        Threshold factor of the steepest-first schedule (module docstring).
    decay : float in [0, 1], optional
        The threshold factor of sweep ``k`` is ``gamma * decay**k``: steepest
        first while fields are large, every negative field once they are small
        (which ends the long tail in few sweeps).  ``decay=1`` keeps ``gamma``.
        Default per engine (:data:`DEFAULT_DECAY`): 1 for ``"explicit"``, whose
        tail sweeps cost only their flips, 0.97 for ``"matrix-free"``.
    threshold : {"global", "block"}
        What the threshold is relative to: the most negative field of the
        replica (``"global"``), or of each node block separately (``"block"``:
        every layer flips its own steepest nodes in every sweep).
    engine : {"auto", "explicit", "matrix-free"}
        ``"matrix-free"``: the batched layer operators (any size, CPU or GPU).
        ``"explicit"``: the same schedule on the CSR couplings, compiled, one
        replica per thread (:mod:`deepglass.solve.explicit_descent`); cheaper
        per flip, but it holds ``As`` (12 bytes per stored entry).
        ``"auto"`` (default): explicit on CPU up to
        :data:`EXPLICIT_ENGINE_EDGES` edges when the CSR fits in memory.
    max_sweeps : int
        Upper bound on sweeps (one sweep visits every colour class once).
    sparse_ratio : float
        A block whose flipped nodes are fewer than ``sparse_ratio * R * size``
        (times the edge block's ``sparse_advantage``, 20 for dense layers, and
        for those times ``(1 + 0.05 R) / R``: see :func:`_sparse_limit`) is
        updated with sparse column operations instead
        of the full operator.  Measured on AlexNet (one thread): a sparse
        update costs ~40 ns per edge, a convolution 0.01-0.05 ns per edge and
        replica, so sparse pays below ~0.05% (R = 1 and R = 80 alike).
    tol : float
        A field counts as negative when ``h_i < -tol * sum_j |As_ij|`` (guards
        float32 rounding; 0 with float64 graphs is exact up to rounding).
    callback : callable, optional
        Called as ``callback(sweep, n_flipped)`` after each sweep.

    Returns
    -------
    DescentState
        Final gauges, fields ``As sigma``, sweeps and flips per replica.

    Notes
    -----
    Each sweep costs about one evaluation of ``As sigma`` while many nodes flip
    (every edge block once from each end), and O(flips x degree) in the tail.
    Memory: three (R, n) tensors beyond the operator (gauges, fields, one
    class's flips; minima and checks go ``chunk`` replicas at a time), plus sparse updates of at most ``SPARSE_CHUNK`` edges at a
    time and the operator's own temporaries.
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError("gamma must be in [0, 1)")
    if decay is not None and not 0.0 <= decay <= 1.0:
        raise ValueError("decay must be in [0, 1]")
    if threshold not in ("global", "block"):
        raise ValueError("threshold must be 'global' or 'block'")
    per_block = threshold == "block"
    engine = choose_engine(graph, sigma0.shape[0], engine)
    if decay is None:
        decay = DEFAULT_DECAY[engine]
    if engine == "explicit":
        return _explicit(graph, sigma0, gamma, decay, per_block, max_sweeps, tol, callback)
    sigma = sigma0.to(device=graph.device, dtype=graph.dtype)
    if sigma.data_ptr() == sigma0.data_ptr():
        sigma = sigma.clone()          # never flip the caller's tensor
    R = sigma.shape[0]
    inc = _Incidence(graph)
    F = graph.sym_matvec(sigma)
    thr = tol * graph.abs_row_sums()                       # (n,)
    flips = torch.zeros(R, dtype=torch.long, device=sigma.device)
    sweeps = 0
    threads = torch.get_num_threads()
    n_flip = R * graph.n_nodes
    try:
        for _check in range(5):
            while sweeps < max_sweeps:
                # few flips: many tiny kernels, which lose to thread synchronization
                if sigma.device.type == "cpu":
                    torch.set_num_threads(threads if n_flip > 0.01 * R * graph.n_nodes else 1)
                factor = gamma * decay ** sweeps
                if factor > 1e-3:
                    hmin, hlow = _field_minima(sigma, F, thr)
                    if not bool((hlow < 0).any()):
                        break
                    theta = torch.where(hlow < 0, factor * hmin,
                                        torch.zeros_like(hmin))[:, None]
                else:
                    theta = torch.zeros((R, 1), dtype=F.dtype, device=F.device)
                n_flip = _sweep(graph, inc, sigma, F, theta, thr, flips, sparse_ratio,
                                factor if per_block and factor > 1e-3 else None)
                sweeps += 1
                if callback is not None:
                    callback(sweeps, n_flip)
                if n_flip == 0 and factor <= 1e-3:
                    break
            # verify against fields recomputed from scratch (rounding in the updates)
            torch.set_num_threads(threads)
            del F                              # the old fields go before the new ones come
            F = graph.sym_matvec(sigma)
            n_flip = R * graph.n_nodes
            if not bool((_field_minima(sigma, F, thr)[1] < 0).any()) or sweeps >= max_sweeps:
                break
    finally:
        torch.set_num_threads(threads)
    return DescentState(sigma=sigma, fields=F, sweeps=sweeps, flips=flips.cpu().numpy())


def _explicit(graph, sigma0, gamma, decay, per_block, max_sweeps, tol, callback):
    from .explicit_descent import explicit_descent

    As = graph.to_scipy_sym(max(graph.n_edges, 1))
    thr = tol * graph.abs_row_sums().double().cpu().numpy()
    blocks = np.array([[nb.offset, nb.stop] for nb in graph.node_blocks], dtype=np.int64)
    sigma, F, sweeps, flips = explicit_descent(
        As, torch.as_tensor(sigma0).cpu().numpy(), blocks, graph.coloring(), thr, gamma=gamma,
        decay=decay, per_block=per_block, max_sweeps=max_sweeps)
    if callback is not None:
        callback(int(sweeps.max()), int(flips.sum()))
    return DescentState(sigma=torch.from_numpy(sigma).to(graph.dtype),
                        fields=torch.from_numpy(F), sweeps=int(sweeps.max()), flips=flips,
                        engine="explicit")


def _field_minima(sigma, F, thr, chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per replica ``min_i h_i`` and ``min_i (h_i + thr_i)`` for ``h = sigma * F``,
    ``chunk`` replicas at a time (no (R, n) temporary)."""
    lo, low = [], []
    for i in range(0, sigma.shape[0], chunk):
        h = sigma[i:i + chunk] * F[i:i + chunk]
        lo.append(h.min(dim=1).values)
        low.append((h.add_(thr)).min(dim=1).values)
    return torch.cat(lo), torch.cat(low)


def _sweep(graph, inc, sigma, F, theta, thr, flips, sparse_ratio, block_factor=None) -> int:
    """One pass over the colour classes: flip ``h < theta`` (and ``< -thr``);
    with ``block_factor``, ``theta`` is ``block_factor`` times each block's own
    most negative field (per replica), taken when the block's class is visited."""
    R = sigma.shape[0]
    n_flip = 0
    for cls in inc.classes:
        delta = None
        flipped = {}
        for blk_id in cls:
            nb = graph.node_blocks[blk_id]
            s_b = sigma[:, nb.offset:nb.stop]
            h_b = s_b * F[:, nb.offset:nb.stop]
            if block_factor is not None:
                theta = block_factor * h_b.min(dim=1, keepdim=True).values
            mask = (h_b < theta) & (h_b < -thr[nb.offset:nb.stop])
            r_idx, loc = torch.nonzero(mask, as_tuple=True)
            flipped[blk_id] = (r_idx, loc)
            if len(loc):
                if delta is None:
                    delta = torch.zeros_like(sigma)
                delta[:, nb.offset:nb.stop] = -2.0 * s_b * mask
                s_b[mask] *= -1
                flips += torch.bincount(r_idx, minlength=R)
                n_flip += len(loc)
        if delta is not None:
            _update_fields(graph, inc, cls, F, delta, flipped, sparse_ratio)
    return n_flip

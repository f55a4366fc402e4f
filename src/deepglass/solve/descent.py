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
batches all replicas through the layer operators, on CPU or GPU.  The compiled
one (:mod:`deepglass.solve.compiled_descent`, ``"auto"``'s choice on CPU when
its working set fits in memory) runs one replica per thread and updates the
neighbours of each flipped node in place, reading convolution and dense
weights as stencils, so a sweep costs only its flips.  With exact arithmetic
and ``tol=0`` both take identical steps (tested); with the default ``tol`` a
field exactly on the threshold ``-tol |As| 1`` (no exact binary value) can
round to either side in one engine and not the other, so their steps may
part there, each still ending at a verified local minimum.  Their default ``decay`` differs because
their tails cost differently: the compiled engine keeps the threshold
(``decay=1``), the matrix-free one decays it (``0.97``) to end the tail in few
operator sweeps.

Measured from the same start gauges as Algorithm 1 (``bench/bench_frustration.py``,
paired differences in eps, seeds 1 and 7): ``decay=1`` ends lower than
Algorithm 1 on the trained digits CNN (-0.0010 +- 0.0007 and -0.0017 +-
0.0007, 96 replicas), a random LeNet (-0.0012 +- 0.0002) and ResNet-18 at
3x32x32 (-0.00011 +- 0.00003 and -0.00017 +- 0.00002, 16 replicas);
``decay=0.97`` ends level on the small nets (within one standard error) and
lower on ResNet-18 (-0.00007 +- 0.00003).

Matrix-free engine: fields are kept up to date incrementally; after a class flips, only the edge
blocks incident to it are evaluated, with the matrix-free operator while many
nodes flip and with sparse column updates (:meth:`EdgeBlock.sparse_apply`)
once few do, so the long tail costs little.  At the end the fields are
recomputed from scratch and the descent continues if rounding hid a negative
field, so the result is a verified single-flip local minimum.
"""

from __future__ import annotations

import numbers
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DeepglassError
from ..graph import SignedGraph
from .engines import ENGINES, SPARSE_CHUNK  # ENGINES re-exported

__all__ = ["descent", "DescentState", "choose_engine", "ENGINES"]


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
                    entry, src, contrib = (b.sparse_rows(r_c, loc_c, vals, True, R)
                                           if getattr(b, "draw_batched", False)
                                           else b.sparse_adjoint(loc_c, vals))
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
                r_b, loc_b = r_idx, loc
                lo, hi = b.src_range[0] - nb.offset, b.src_range[1] - nb.offset
                if lo > 0 or hi < nb.size:   # it reads part of the block (a channel split)
                    inside = (loc >= lo) & (loc < hi)
                    r_b, loc_b = r_idx[inside], loc[inside]
                for c in _chunks(len(loc_b), inc.degree[id(b)][0]):
                    r_c, loc_c = r_b[c], loc_b[c]
                    vals = delta[r_c, nb.offset + loc_c]
                    src_loc = nb.offset + loc_c - b.src_range[0]
                    entry, d, contrib = (b.sparse_rows(r_c, src_loc, vals, False, R)
                                         if getattr(b, "draw_batched", False)
                                         else b.sparse_apply(src_loc, vals))
                    F.view(-1).index_add_(0, r_c[entry] * n + dst.offset + d,
                                          contrib.to(F.dtype))
            else:
                F[:, dst.offset:dst.stop] += graph.block_forward(b, delta)


#: default ``decay`` per engine (see the module docstring and :mod:`.compiled_descent`)
DEFAULT_DECAY = {"compiled": 1.0, "matrix-free": 0.97}



def choose_engine(graph: SignedGraph, replicas: int, engine: str = "auto") -> str:
    """The engine a descent runs: see :func:`deepglass.solve.engines.choose_engine`
    (``"auto"`` picks from memory and time estimates per engine; a named engine
    is checked against the memory it would need)."""
    from .engines import choose_engine as choose

    return choose(graph, replicas, engine)


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
        Default per engine (:data:`DEFAULT_DECAY`): 1 for ``"compiled"``, whose
        tail sweeps cost only their flips, 0.97 for ``"matrix-free"``.
    threshold : {"global", "block"}
        What the threshold is relative to: the most negative field of the
        replica (``"global"``), or of each node block separately (``"block"``:
        every layer flips its own steepest nodes in every sweep).
    engine : {"auto", "compiled", "matrix-free"}
        ``"matrix-free"``: the batched layer operators (any size, CPU or GPU).
        ``"compiled"``: the same schedule in numba, one replica per thread,
        fields updated in place per flip (:mod:`deepglass.solve.compiled_descent`;
        CPU only; holds the stencil weights twice and the couplings of other
        blocks as CSR).  ``"auto"`` (default): compiled on CPU when that fits
        in memory (:func:`choose_engine`), else matrix-free.
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
        Called as ``callback(sweep, n_flipped)`` after each sweep (the
        matrix-free engine) or after each launch of the compiled kernel (a
        batch of replicas run to their end: ``sweep`` is the most any has
        done, ``n_flipped`` the flips so far).

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
    # (a NaN tolerance made every comparison false: random starts were reported
    # as verified local minima)
    _check_number("gamma", gamma, closed=False)
    if decay is not None:
        _check_number("decay", decay)
    _check_number("tol", tol, closed=False)
    _check_number("sparse_ratio", sparse_ratio)
    if threshold not in ("global", "block"):
        raise DeepglassError(f"threshold must be 'global' or 'block', not {threshold!r}")
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, numbers.Integral) \
            or max_sweeps < 0:
        raise DeepglassError(f"max_sweeps must be a non-negative integer, got {max_sweeps!r}")
    max_sweeps = int(max_sweeps)
    per_block = threshold == "block"
    engine = choose_engine(graph, sigma0.shape[0], engine)
    if decay is None:
        decay = DEFAULT_DECAY[engine]
    if engine == "compiled":
        return _compiled(graph, sigma0, gamma, decay, per_block, max_sweeps, tol, callback)
    with full_float32():
        return _matrix_free(graph, sigma0, gamma, decay, per_block, max_sweeps, sparse_ratio,
                            tol, callback)


def _check_number(name: str, value, closed: bool = True) -> None:
    """``value`` a real number in [0, 1] (``closed``) or [0, 1), else one line."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise DeepglassError(f"{name} must be a number in [0, 1{']' if closed else ')'}, "
                             f"got {value!r}")


@contextmanager
def full_float32():
    """Full float32 products on CUDA devices: cuDNN's convolutions default to
    TF32 on Ampere and later (10-bit mantissa, relative errors ~1e-3), far above
    the descent's tolerance; the flags are restored on exit."""
    cuda = torch.backends.cuda.matmul
    before = (torch.backends.cudnn.allow_tf32, cuda.allow_tf32)
    torch.backends.cudnn.allow_tf32 = cuda.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, cuda.allow_tf32 = before


def _matrix_free(graph, sigma0, gamma, decay, per_block, max_sweeps, sparse_ratio, tol,
                 callback) -> DescentState:
    sigma = sigma0.to(device=graph.device, dtype=graph.dtype)
    if sigma.data_ptr() == sigma0.data_ptr():
        sigma = sigma.clone()          # never flip the caller's tensor
    R = sigma.shape[0]
    inc = _Incidence(graph)
    F = graph.sym_matvec(sigma)
    thr = _per_replica(tol * graph.abs_row_sums(), R)      # (n,) or (R, n)
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


def _compiled(graph, sigma0, gamma, decay, per_block, max_sweeps, tol, callback):
    import numba

    from .compiled_descent import compiled_descent, stencils

    def fields(sigma):
        # the full evaluations are whole-layer convolutions: as many torch threads
        # as the kernel's numba threads (callers cap small graphs' torch threads at
        # one for the matrix-free engine's many tiny kernels); below ~10^7 edge
        # evaluations (~1 ms on one thread) threads cost more than they save
        before = torch.get_num_threads()
        if graph.n_edges * sigma.shape[0] >= 10**7:
            torch.set_num_threads(max(before, numba.get_num_threads()))
        try:
            return graph.sym_matvec(sigma)
        finally:
            torch.set_num_threads(before)

    classes = graph.coloring()
    thr = tol * graph.abs_row_sums()
    # only read here (the kernel flips its own copies), so no clone of the caller's
    sigma = torch.as_tensor(sigma0).to(device=graph.device, dtype=graph.dtype)
    R = sigma.shape[0]
    sweeps = np.zeros(R, dtype=np.int64)
    flips = np.zeros(R, dtype=np.int64)
    for _check in range(6):
        # fields from scratch (batched layer operators): the start, then the check
        F = fields(sigma)
        if not bool((_field_minima(sigma, F, thr)[1] < 0).any()) or sweeps.max() >= max_sweeps:
            break
        # the stencils live only while the kernel runs (the check rarely needs them
        # again), and the torch tensors go as their copies in the kernel's order
        # (gauges float32, fields float64) are made: at most one (R, n) tensor more
        st = stencils(graph)
        perm, inverse = torch.from_numpy(st.perm), torch.from_numpy(st.inverse)
        s_int = _permuted(sigma, perm, torch.float32).numpy()
        sigma = None
        if st.pinned is not None:
            # nodes an active subnetwork removed: isolated there, gauge 0 in the
            # whole layers' stencils (their own gauges are put back below)
            held = s_int[:, st.pinned].copy()
            s_int[:, st.pinned] = 0.0
        f_int = _permuted(F, perm, torch.float64).numpy()
        F = None
        thr_int = thr.double().cpu().numpy()[st.perm]
        for rows in _launches(R, graph.n_edges, numba.get_num_threads()):
            compiled_descent(st, s_int[rows], f_int[rows], classes, thr_int, gamma=gamma,
                             decay=decay, per_block=per_block, sweeps=sweeps[rows],
                             max_sweeps=max_sweeps, flips=flips[rows])
            if callback is not None:
                callback(int(sweeps.max()), int(flips.sum()))
        if st.pinned is not None:
            s_int[:, st.pinned] = held
            del held
        del f_int, st
        sigma = _permuted(torch.from_numpy(s_int), inverse, graph.dtype).to(graph.device)
        del s_int
    if F is None:
        F = fields(sigma)
    return DescentState(sigma=sigma, fields=F, sweeps=int(sweeps.max()), flips=flips,
                        engine="compiled")


def _launches(R: int, n_edges: int, threads: int, work: float = 1e10, most: int = 8):
    """Row slices of the compiled kernel's launches: one for small runs; where
    ``R`` replicas of ``n_edges`` exceed ``work`` edge-replicas (AlexNet: 15
    replicas, ~10 s of kernel on two cores), up to ``most`` launches of whole
    multiples of ``threads`` replicas, so that a progress callback runs between
    them (each launch waits for its slowest thread; AlexNet at 80 replicas in 8
    launches took the time of one launch)."""
    if R * n_edges <= work:
        return [slice(0, R)]
    step = threads * -(-R // (threads * most))
    return [slice(lo, min(lo + step, R)) for lo in range(0, R, step)]


def _permuted(x: torch.Tensor, columns: torch.Tensor, dtype, chunk: int = 8) -> torch.Tensor:
    """``x[:, columns]`` as a new C-contiguous CPU tensor of ``dtype``, ``chunk``
    rows at a time (no full-size temporary beside the result)."""
    out = torch.empty((x.shape[0], len(columns)), dtype=dtype)
    for i in range(0, x.shape[0], chunk):
        out[i:i + chunk] = x[i:i + chunk].cpu()[:, columns]
    return out


def _field_minima(sigma, F, thr, chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per replica ``min_i h_i`` and ``min_i (h_i + thr_i)`` for ``h = sigma * F``,
    ``chunk`` replicas at a time (no (R, n) temporary)."""
    lo, low = [], []
    for i in range(0, sigma.shape[0], chunk):
        h = sigma[i:i + chunk] * F[i:i + chunk]
        lo.append(h.min(dim=1).values)
        low.append((h.add_(thr[i:i + chunk] if thr.ndim == 2 else thr)).min(dim=1).values)
    return torch.cat(lo), torch.cat(low)


def _per_replica(thr: torch.Tensor, R: int) -> torch.Tensor:
    """Tolerances per node, (n,), or for a draw-batched graph per draw (D, n):
    then one row per replica, (R, n), draw-major."""
    if thr.ndim == 1:
        return thr
    return thr.repeat_interleave(R // thr.shape[0], dim=0)


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
            mask = (h_b < theta) & (h_b < -thr[..., nb.offset:nb.stop])
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

"""Greedy single-flip descent on an explicit signed graph (paper 000, Algorithm 1).

The couplings are the symmetrized signed adjacency ``As = A + A^T`` of a DAG
(SPEC §1), a sparse symmetric matrix with zero diagonal.  A gauge (signature)
``sigma in {-1, +1}^n`` has the normalized energy (SPEC §2, paper Eq. 3)

.. math::

    \\varepsilon(\\sigma) = \\tfrac12 \\left(1 - \\frac{\\sigma^T A_s \\sigma}
                                              {\\mathbf 1^T |A_s| \\mathbf 1}\\right),

the |weight|-fraction of frustrated edges.  The local field of node ``i`` is
``h_i = sigma_i (As sigma)_i`` (the i-th row sum of the gauge-transformed matrix
``S As S``); flipping ``i`` changes ``sigma^T As sigma`` by ``-4 h_i``, i.e.
changes ``eps`` by ``2 h_i / 1^T|As|1``.

Algorithm 1 of the paper's SI B repeatedly flips the node with the most negative
field until no field is negative.  :func:`greedy` implements it exactly, per
replica, with an indexed binary min-heap over the nodes whose field is
negative, keyed by ``(h_i, i)``: the most negative field (lowest index on ties)
is read in O(1) and each flip updates the flipped node and its ``deg(i)``
neighbours with O(log n) decrease/increase-key, insert or remove operations
(neighbours whose field stays non-negative cost O(1)), so one flip costs
O(deg(i) log n) and the initial fields and heap cost O(nnz + n).  Replicas run
in parallel (numba ``prange``).

Start gauges: :func:`random_gauges` (uniform) and :func:`paper_gauges` (the
paper's protocol, 10^6 random single-node gauge flips of the identity gauge).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba import njit, prange

from .._numba import njit_borrowing, njit_parallel

from ..errors import DeepglassError, TooLargeError

__all__ = [
    "GreedyResult",
    "greedy",
    "greedy_memory_bytes",
    "check_greedy_memory",
    "available_memory_bytes",
    "random_gauges",
    "paper_gauges",
    "energy",
    "local_fields",
    "as_couplings",
]

#: default fraction of the available memory that :func:`greedy` may use
MEMORY_FRACTION = 0.8
#: default relative tolerance on the fields (times the largest |As| row sum)
FIELD_RTOL = 1e-10

_INT64_MAX = np.iinfo(np.int64).max


# --------------------------------------------------------------------------
# validation and explicit energies
# --------------------------------------------------------------------------


def as_couplings(As, *, check_symmetric: bool = True) -> sp.csr_matrix:
    """Validate explicit couplings and return them as canonical float64 CSR.

    Parameters
    ----------
    As : scipy.sparse matrix or 2-D array, shape (n, n)
        Symmetric couplings with zero diagonal (``A + A^T`` of a signed DAG).
    check_symmetric : bool
        Verify ``As == As^T`` (O(nnz) time and one transposed copy).  Callers
        that built ``As`` as ``A + A.T`` themselves may skip it.

    Returns
    -------
    scipy.sparse.csr_matrix
        float64, duplicates summed, sorted indices (scipy's index dtype).

    Raises
    ------
    DeepglassError
        Not square, not finite, not symmetric, or a nonzero diagonal.
    """
    if sp.issparse(As):
        M = sp.csr_matrix(As, dtype=np.float64)
    else:
        arr = np.asarray(As)
        if arr.ndim != 2:
            raise DeepglassError(f"couplings must be a 2-D matrix, got an array of shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise DeepglassError(f"couplings must be real numbers, got dtype {arr.dtype}")
        M = sp.csr_matrix(arr.astype(np.float64))
    if M.shape[0] != M.shape[1]:
        raise DeepglassError(f"couplings must be a square matrix, got shape {M.shape}")
    if not M.has_canonical_format:
        M.sum_duplicates()
    if M.nnz and not np.all(np.isfinite(M.data)):
        raise DeepglassError("couplings contain NaN or infinite values")
    if M.nnz and np.any(M.diagonal() != 0):
        raise DeepglassError("couplings must have a zero diagonal (a DAG has no self-loops)")
    if check_symmetric and M.nnz:
        diff = abs(M - M.T)
        scale = float(np.max(np.abs(M.data)))
        if diff.nnz and float(diff.max()) > 1e-12 * scale:
            raise DeepglassError(
                "couplings must be symmetric (pass As = A + A.T of the signed DAG)"
            )
    return M


def _sparse_nbytes(M) -> int:
    return int(sum(getattr(M, a).nbytes for a in ("data", "indices", "indptr") if hasattr(M, a)))


def _as_gauges(sigma0, n: int) -> np.ndarray:
    s = np.asarray(sigma0)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or s.shape[1] != n:
        raise DeepglassError(
            f"start gauges must have shape (R, {n}) (or ({n},)), got {np.shape(sigma0)}"
        )
    if s.shape[0] < 1:
        raise DeepglassError("at least one start gauge is needed (R >= 1)")
    if not np.all((s == 1) | (s == -1)):
        raise DeepglassError("start gauges must contain only +1 and -1")
    return np.ascontiguousarray(s, dtype=np.int8).copy()


def energy(As, sigma) -> np.ndarray | float:
    """Normalized energy ``eps = 1/2 (1 - sigma^T As sigma / 1^T|As|1)`` (SPEC §2).

    Parameters
    ----------
    As : sparse or dense (n, n)
        Symmetric couplings.
    sigma : array (n,) or (R, n) of +-1

    Returns
    -------
    float or ndarray (R,)
        The |weight|-fraction of frustrated edges; 0 for a graph without edges.
    """
    M = sp.csr_matrix(As, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    single = s.ndim == 1
    S = np.atleast_2d(s)
    total = float(abs(M).sum())
    if total == 0:
        e = np.zeros(S.shape[0])
    else:
        quad = np.einsum("ri,ri->r", S, (M @ S.T).T)
        e = 0.5 * (1.0 - quad / total)
    return float(e[0]) if single else e


def local_fields(As, sigma) -> np.ndarray:
    """Local fields ``h_i = sigma_i (As sigma)_i`` (SPEC §2), shape of ``sigma``."""
    M = sp.csr_matrix(As, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim == 1:
        return s * (M @ s)
    return s * (M @ s.T).T


# --------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------


def available_memory_bytes() -> int:
    """Memory available to this process (:func:`deepglass.memory.available_bytes`)."""
    from ..memory import available_bytes

    return available_bytes()


def greedy_memory_bytes(n: int, nnz: int, n_replicas: int = 1, n_threads: int | None = None) -> int:
    """Peak memory (bytes) of :func:`greedy` on an explicit graph.

    Counts the CSR couplings (row pointers and 4 or 8 bytes per column index,
    as scipy chooses, ``8 nnz`` float64 data, and the kernel's int64 copy of
    the row pointers), the per-replica workspace
    of the replicas running at once (fields, heap and heap positions: ``24 n``
    each) and the ``R`` int8 gauges.

    Parameters
    ----------
    n : int
        Number of nodes.
    nnz : int
        Stored entries of ``As`` (twice the number of edges of the DAG).
    n_replicas : int
        Number of start gauges R.
    n_threads : int, optional
        Replicas run at once (default: numba's thread count).
    """
    n, nnz, R = int(n), int(nnz), int(n_replicas)
    if n < 0 or nnz < 0 or R < 1:
        raise DeepglassError("greedy_memory_bytes needs n >= 0, nnz >= 0 and n_replicas >= 1")
    idx = 4 if max(n, nnz) < 2**31 else 8
    threads = numba.get_num_threads() if n_threads is None else int(n_threads)
    matrix = (idx + 8) * (n + 1) + nnz * (8 + idx)
    workspace = min(R, max(threads, 1)) * 24 * n
    gauges = R * n
    return matrix + workspace + gauges


def check_greedy_memory(
    n: int,
    nnz: int,
    n_replicas: int = 1,
    *,
    max_bytes: int | None = None,
    already_held: int = 0,
) -> int:
    """Refuse (``TooLargeError``) an explicit greedy run that would not fit.

    Parameters
    ----------
    n, nnz, n_replicas
        As in :func:`greedy_memory_bytes`.
    max_bytes : int, optional
        Allowed peak memory; default ``MEMORY_FRACTION`` (80 %) of the available
        memory plus ``already_held``.
    already_held : int
        Bytes of the footprint that already exist (an ``As`` passed in).

    Returns
    -------
    int
        The memory needed, in bytes.
    """
    need = greedy_memory_bytes(n, nnz, n_replicas)
    if max_bytes is None:  # the shared budget: --max-memory-gb, else a share of what is free
        from ..memory import budget_bytes, get_limit

        max_bytes = (budget_bytes()[0] if get_limit() is not None
                     else int(MEMORY_FRACTION * available_memory_bytes())) + int(already_held)
    if need > max_bytes:
        raise TooLargeError(
            f"the explicit greedy solver needs {need / 1e9:.2f} GB for {n:,} nodes, "
            f"{nnz:,} stored couplings and {n_replicas} replicas, but only "
            f"{max_bytes / 1e9:.2f} GB are allowed (max_bytes, --max-memory-gb); use the matrix-free "
            f"solver or fewer replicas"
        )
    return need


# --------------------------------------------------------------------------
# gauges
# --------------------------------------------------------------------------


def random_gauges(n: int, R: int, seed=None) -> np.ndarray:
    """``R`` gauges of ``n`` i.i.d. uniform +-1 spins, int8 array (R, n).

    ``seed``: anything :func:`numpy.random.default_rng` accepts.
    """
    n, R = _check_nR(n, R)
    rng = np.random.default_rng(seed)
    return (2 * rng.integers(0, 2, size=(R, n), dtype=np.int8) - 1).astype(np.int8)


def paper_gauges(n: int, R: int, seed=None, flips: int = 10**6) -> np.ndarray:
    """Start gauges of the paper's protocol (SPEC §2, paper 000 Methods).

    Each replica applies ``flips`` random single-node gauge transformations (a
    node drawn uniformly, with replacement) to the identity gauge: node ``i``
    ends flipped iff it was drawn an odd number of times.  The draws are counted
    with :func:`numpy.bincount` (in chunks of 2^22 draws), O(R (flips + n)).

    Returns
    -------
    ndarray, int8, shape (R, n)
    """
    n, R = _check_nR(n, R)
    flips = int(flips)
    if flips < 0:
        raise DeepglassError(f"flips must be >= 0, got {flips}")
    rng = np.random.default_rng(seed)
    out = np.ones((R, n), dtype=np.int8)
    if n == 0:
        return out
    chunk = 1 << 22
    for r in range(R):
        parity = np.zeros(n, dtype=np.int64)
        left = flips
        while left > 0:
            k = min(left, chunk)
            parity += np.bincount(rng.integers(0, n, size=k), minlength=n)
            left -= k
        out[r, (parity & 1) == 1] = -1
    return out


def _check_nR(n, R):
    n, R = int(n), int(R)
    if n < 0:
        raise DeepglassError(f"number of nodes must be >= 0, got {n}")
    if R < 1:
        raise DeepglassError(f"number of replicas must be >= 1, got {R}")
    return n, R


# --------------------------------------------------------------------------
# numba kernels: indexed binary min-heap keyed by (h_i, i)
# --------------------------------------------------------------------------


@njit_borrowing(inline="always")
def _less(h, a, b):
    # strict order on nodes: by field, ties by lowest index
    return h[a] < h[b] or (h[a] == h[b] and a < b)


@njit_borrowing
def _sift_up(heap, pos, h, k):
    node = heap[k]
    while k > 0:
        parent = (k - 1) >> 1
        p = heap[parent]
        if _less(h, node, p):
            heap[k] = p
            pos[p] = k
            k = parent
        else:
            break
    heap[k] = node
    pos[node] = k
    return k


@njit_borrowing
def _sift_down(heap, pos, h, k, size):
    node = heap[k]
    while True:
        c = 2 * k + 1
        if c >= size:
            break
        r = c + 1
        if r < size and _less(h, heap[r], heap[c]):
            c = r
        ch = heap[c]
        if _less(h, ch, node):
            heap[k] = ch
            pos[ch] = k
            k = c
        else:
            break
    heap[k] = node
    pos[node] = k
    return k


@njit_borrowing
def _fields(indptr, indices, data, sigma, h):
    n = sigma.shape[0]
    for i in range(n):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * sigma[indices[k]]
        h[i] = sigma[i] * s


@njit_borrowing
def _heap_fix(heap, pos, h, p, size):
    """Restore the heap order around position p after its key changed."""
    if _sift_up(heap, pos, h, p) == p:
        _sift_down(heap, pos, h, p, size)


@njit_borrowing
def _heap_remove(heap, pos, h, p, size):
    """Remove the element at position p; returns the new size."""
    size -= 1
    pos[heap[p]] = -1
    if p < size:
        last = heap[size]
        heap[p] = last
        pos[last] = p
        _heap_fix(heap, pos, h, p, size)
    return size


@njit(cache=True)
def _descend(indptr, indices, data, sigma, max_flips, tol, record):
    """Algorithm 1 on one replica; ``sigma`` (int8) is flipped in place.

    The min-heap holds exactly the candidate nodes, those with ``h < -tol``
    (``pos[i] = -1`` for the others), keyed by ``(h_i, i)``: its root is the
    most negative field, lowest index first.  A neighbour update is a
    decrease/increase-key, an insertion (field became negative) or a removal
    (field became non-negative), each O(log n); neighbours that stay
    non-negative cost O(1).

    Returns (flips, at_local_min, quad = sigma^T As sigma, trace_nodes,
    trace_fields); the traces are empty unless ``record``.
    """
    n = sigma.shape[0]
    h = np.empty(n, dtype=np.float64)
    heap = np.empty(n, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    cap = 1024 if record else 0
    tr_nodes = np.empty(cap, dtype=np.int64)
    tr_fields = np.empty(cap, dtype=np.float64)
    flips = 0
    local = False
    while True:
        # fresh fields and heap (the outer loop only repeats when the
        # incrementally updated fields drifted across the tolerance)
        _fields(indptr, indices, data, sigma, h)
        size = 0
        for k in range(n):
            if h[k] < -tol:
                heap[size] = k
                pos[k] = size
                size += 1
            else:
                pos[k] = -1
        for k in range(size // 2 - 1, -1, -1):
            _sift_down(heap, pos, h, k, size)
        while True:
            if size == 0:
                local = True
                break
            if flips >= max_flips:
                local = False
                break
            i = heap[0]
            hi = h[i]
            if record:
                if flips >= cap:
                    cap *= 2
                    t1 = np.empty(cap, dtype=np.int64)
                    t2 = np.empty(cap, dtype=np.float64)
                    t1[:flips] = tr_nodes[:flips]
                    t2[:flips] = tr_fields[:flips]
                    tr_nodes = t1
                    tr_fields = t2
                tr_nodes[flips] = i
                tr_fields[flips] = hi
            s_old = sigma[i]
            sigma[i] = -s_old
            h[i] = -hi  # > tol: leaves the candidates
            size = _heap_remove(heap, pos, h, 0, size)
            # h_j = sigma_j sum_l As_jl sigma_l; sigma_i changed by -2 s_old
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                hj = h[j] - 2.0 * data[k] * sigma[j] * s_old
                h[j] = hj
                p = pos[j]
                if p >= 0:
                    if hj < -tol:
                        _heap_fix(heap, pos, h, p, size)
                    else:
                        size = _heap_remove(heap, pos, h, p, size)
                elif hj < -tol:
                    heap[size] = j
                    pos[j] = size
                    size += 1
                    _sift_up(heap, pos, h, size - 1)
            flips += 1
        if not local:
            break
        # verify the local minimum on exactly recomputed fields
        _fields(indptr, indices, data, sigma, h)
        hmin = 0.0
        for k in range(n):
            if h[k] < hmin:
                hmin = h[k]
        if hmin >= -tol:
            break
        local = False
    if not local:
        _fields(indptr, indices, data, sigma, h)
    quad = 0.0
    for k in range(n):
        quad += h[k]
    return flips, local, quad, tr_nodes[:flips].copy(), tr_fields[:flips].copy()


@njit_parallel
def _descend_batch(indptr, indices, data, sigma, max_flips, tol, flips, local, quad):
    R = sigma.shape[0]
    for r in prange(R):
        f, loc, q, _, _ = _descend(indptr, indices, data, sigma[r], max_flips, tol, False)
        flips[r] = f
        local[r] = loc
        quad[r] = q


# --------------------------------------------------------------------------
# public solver
# --------------------------------------------------------------------------


@dataclass
class GreedyResult:
    """Result of :func:`greedy`, one entry per replica (start gauge).

    Attributes
    ----------
    sigma : ndarray int8 (R, n)
        Final gauges.
    energies : ndarray float (R,)
        ``eps(sigma)`` recomputed from scratch (SPEC §2).
    flips : ndarray int64 (R,)
        Single-node flips performed.
    local_min : ndarray bool (R,)
        True where the descent stopped because no field was below ``-tol``
        (False: stopped by ``max_flips``).
    seconds : float
        Wall time of the whole call.
    tol : float
        Field tolerance used.
    trajectory : list of DataFrame or None
        With ``record=True``: per replica, one row per flip (``step``, ``node``,
        ``field`` = h of the node before its flip, ``energy`` after the flip).
    """

    sigma: np.ndarray
    energies: np.ndarray
    flips: np.ndarray
    local_min: np.ndarray
    seconds: float
    tol: float = 0.0
    trajectory: list | None = field(default=None, repr=False)

    @property
    def best(self) -> int:
        """Index of the replica with the least energy (first on ties)."""
        return int(np.argmin(self.energies))

    @property
    def best_energy(self) -> float:
        return float(self.energies[self.best])

    @property
    def best_sigma(self) -> np.ndarray:
        return self.sigma[self.best]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per replica (replica, energy, flips, local_min)."""
        return pd.DataFrame(
            {
                "replica": np.arange(len(self.energies)),
                "energy": self.energies,
                "flips": self.flips,
                "local_min": self.local_min,
            }
        )


def greedy(
    As,
    sigma0,
    *,
    max_flips: int | None = None,
    tol: float | None = None,
    record: bool = False,
    max_bytes: int | None = None,
    check_symmetric: bool = True,
) -> GreedyResult:
    """Paper 000 Algorithm 1: greedy most-negative-field descent, per replica.

    From each start gauge, repeatedly flip the node with the most negative
    local field ``h_i = sigma_i (As sigma)_i`` (ties: lowest index) and update
    the fields of its neighbours, until no ``h_i < -tol``: a local minimum of
    ``eps`` under single flips (SPEC §2).  Each flip raises ``sigma^T As sigma``
    by ``4 |h_i|``, so ``eps`` drops by ``2 |h_i| / 1^T|As|1``.

    Complexity: O(nnz + n) to start, O(deg(i) log n) per flip (indexed binary
    min-heap of the negative-field nodes), O(n) memory per replica beyond the
    matrix.  Replicas run in parallel (numba ``prange``).  The fields are
    updated incrementally; at the end they are recomputed exactly, the descent
    resumes if rounding hid a negative field, and energies come from the exact
    fields.

    Parameters
    ----------
    As : scipy.sparse matrix (n, n)
        Symmetric float couplings ``A + A^T`` with zero diagonal.
    sigma0 : array (R, n) or (n,) of +-1
        Start gauges (see :func:`random_gauges`, :func:`paper_gauges`).
    max_flips : int, optional
        Flip budget per replica (default: none; the descent always ends, since
        each flip lowers the energy by at least ``2 tol / 1^T|As|1``).
    tol : float, optional
        A field counts as negative when ``h_i < -tol``.  Default
        ``1e-10 * max_i sum_j |As_ij|`` guards against rounding of the
        incremental updates; ``tol=0`` is the paper's literal stopping rule.
    record : bool
        Record each flip (node, field, energy); runs the replicas serially.
    max_bytes : int, optional
        Refuse (:class:`~deepglass.errors.TooLargeError`) when
        :func:`greedy_memory_bytes` exceeds it; default 80 % of the available
        memory plus the memory ``As`` already holds.
    check_symmetric : bool
        Verify that ``As`` is symmetric (see :func:`as_couplings`).

    Returns
    -------
    GreedyResult
    """
    t0 = time.perf_counter()
    R0 = max(np.shape(sigma0)[0] if np.ndim(sigma0) == 2 else 1, 1)
    if sp.issparse(As) and As.ndim == 2 and As.shape[0] == As.shape[1]:
        # refuse before any copy is made
        check_greedy_memory(As.shape[0], As.nnz, R0, max_bytes=max_bytes,
                            already_held=_sparse_nbytes(As))
    M = as_couplings(As, check_symmetric=check_symmetric)
    n = M.shape[0]
    sigma = _as_gauges(sigma0, n)
    R = sigma.shape[0]
    if not sp.issparse(As):
        check_greedy_memory(n, M.nnz, R, max_bytes=max_bytes, already_held=_sparse_nbytes(M))
    if max_flips is None:
        max_flips = _INT64_MAX
    max_flips = int(max_flips)
    if max_flips < 0:
        raise DeepglassError(f"max_flips must be >= 0, got {max_flips}")
    absrow = np.asarray(abs(M).sum(axis=1)).ravel() if M.nnz else np.zeros(n)
    total = float(absrow.sum())
    if tol is None:
        tol = FIELD_RTOL * (float(absrow.max()) if n else 0.0)
    tol = float(tol)
    if not np.isfinite(tol) or tol < 0:
        raise DeepglassError(f"tol must be a finite number >= 0, got {tol}")

    # int64 row pointers for the kernel (n+1 entries); indices stay int32 when they fit
    indptr, indices, data = M.indptr.astype(np.int64), M.indices, M.data
    flips = np.zeros(R, dtype=np.int64)
    local = np.zeros(R, dtype=np.bool_)
    quad = np.zeros(R, dtype=np.float64)
    trajectory = None
    if record:
        trajectory = []
        for r in range(R):
            quad0 = float(local_fields(M, sigma[r]).sum())
            f, loc, q, nodes, fields = _descend(indptr, indices, data, sigma[r], max_flips, tol, True)
            flips[r], local[r], quad[r] = f, loc, q
            if total > 0:
                e_path = 0.5 * (1.0 - quad0 / total) + np.cumsum(2.0 * fields / total)
            else:
                e_path = np.zeros(len(nodes))
            trajectory.append(
                pd.DataFrame({"step": np.arange(1, len(nodes) + 1), "node": nodes,
                              "field": fields, "energy": e_path})
            )
    else:
        _descend_batch(indptr, indices, data, sigma, max_flips, tol, flips, local, quad)
    energies = 0.5 * (1.0 - quad / total) if total > 0 else np.zeros(R)
    return GreedyResult(
        sigma=sigma,
        energies=energies,
        flips=flips,
        local_min=local,
        seconds=time.perf_counter() - t0,
        tol=tol,
        trajectory=trajectory,
    )

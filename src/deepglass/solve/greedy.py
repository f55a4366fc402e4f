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

Layout: the solver and its memory model here; the couplings, energies and
fields in :mod:`.couplings`, the start gauges in :mod:`.gauges`, the numba heap
and descent kernels in :mod:`.greedy_kernels` (all re-exported here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import DeepglassError, TooLargeError
from .couplings import _sparse_nbytes, as_couplings, energy, local_fields
from .gauges import _as_gauges, paper_gauges, random_gauges
from .greedy_kernels import _descend, _descend_batch

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
    energies = np.clip(0.5 * (1.0 - quad / total), 0.0, 1.0) if total > 0 else np.zeros(R)
    return GreedyResult(
        sigma=sigma,
        energies=energies,
        flips=flips,
        local_min=local,
        seconds=time.perf_counter() - t0,
        tol=tol,
        trajectory=trajectory,
    )

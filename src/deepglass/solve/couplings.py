"""Explicit couplings ``As = A + A^T`` (SPEC §1): validation into canonical
float64 CSR, the normalized energy ``eps`` of gauges (SPEC §2, paper Eq. 3) and
the local fields ``h_i = sigma_i (As sigma)_i``, each one sparse product.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import DeepglassError


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
        e = np.clip(0.5 * (1.0 - quad / total), 0.0, 1.0)   # a fraction, whatever the rounding
    return float(e[0]) if single else e


def per_multiply_term(eps, As, graph_total: float):
    """Energies ``eps`` normalized by the explicit couplings' ``1^T|As|1``
    restated on a signed graph's normalizer ``graph_total``, the |weight| of
    every multiply term (SPEC §1-§2: eps is a fraction of the *edges'* weight).

    They differ only where parallel edges of opposite sign (a border node read
    twice under reflect padding, ``y = f(x) + x`` with ``f`` one layer) sum
    into one matrix entry: ``|w1 + w2| < |w1| + |w2|``.  The quadratic form
    ``sigma^T As sigma`` is the same on both, so the ground state is too;
    ``eps' = 1/2 - (matrix_total / graph_total) (1/2 - eps)``, increasing in
    ``eps``, so lower bounds and orderings carry over.  Totals equal to 1e-12
    relative (rounding of two summation orders) leave ``eps`` as it is.
    O(nnz + len(eps)).
    """
    matrix_total = float(abs(As).sum())
    if abs(graph_total - matrix_total) <= 1e-12 * abs(graph_total) or graph_total == 0:
        return eps
    return 0.5 - (matrix_total / graph_total) * (0.5 - np.asarray(eps, dtype=np.float64))


def local_fields(As, sigma) -> np.ndarray:
    """Local fields ``h_i = sigma_i (As sigma)_i`` (SPEC §2), shape of ``sigma``."""
    M = sp.csr_matrix(As, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim == 1:
        return s * (M @ s)
    return s * (M @ s.T).T

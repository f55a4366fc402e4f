"""Start gauges (SPEC §2): uniform random ones, the paper's protocol (10^6
random single-node gauge flips of the identity gauge), and the check of given
ones.
"""

from __future__ import annotations

import numpy as np

from ..errors import DeepglassError


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

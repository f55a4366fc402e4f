"""Exact enumeration of the RAP Boltzmann distribution for tiny instances.

All ``2^{N_w}`` weight configurations are enumerated (O(2^{N_w} M) time, chunked
memory), giving ``ln Z``, the energy, entropy and free energy per weight, the
exact magnetizations ``<w_i>`` and the law of the total energy.  Used to check
belief propagation (exact on trees) and Monte Carlo (SPEC section 6).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ..errors import DeepglassError, TooLargeError
from .bp import check_beta
from .model import RAPModel

__all__ = ["exact_enumeration", "energy_levels", "MAX_EXACT_WEIGHTS"]

MAX_EXACT_WEIGHTS = 24


def energy_levels(model: RAPModel, chunk: int = 1 << 16):
    """Energies ``H(w)`` of all configurations, as a generator of ``(states, E)`` chunks.

    State ``s`` has ``w_i = 1 - 2 * bit_i(s)``.
    """
    n = model.n_weights
    if n > MAX_EXACT_WEIGHTS:
        raise TooLargeError(f"exact enumeration needs N_w <= {MAX_EXACT_WEIGHTS}, got {n}")
    f = model.factors.astype(np.int64)
    xi = model.xi.astype(np.int64)
    total = 1 << n
    for lo in range(0, total, chunk):
        s = np.arange(lo, min(total, lo + chunk), dtype=np.int64)
        parity = ((s[:, None] >> f[:, 0]) ^ (s[:, None] >> f[:, 1]) ^ (s[:, None] >> f[:, 2])) & 1
        E = -((1 - 2 * parity) * xi).sum(axis=1)
        yield s, E


def exact_enumeration(model: RAPModel, beta: float) -> dict:
    """Exact thermodynamics at inverse temperature ``beta``.

    Algorithm: the energies of all ``2^{N_w}`` configurations (bit ``i`` of the
    state is ``w_i = -1``), in chunks of 2^16 states, then ``ln Z`` by
    ``logsumexp`` and Boltzmann averages.  O(2^{N_w} M) time, O(2^{N_w} N_w)
    memory.

    Parameters
    ----------
    model : RAPModel
        At most :data:`MAX_EXACT_WEIGHTS` (24) weights.
    beta : float
        Inverse temperature, finite and > 0.

    Returns
    -------
    dict
        ``log_z``; per weight ``free_energy = -ln Z / (beta N_w)``, ``energy``,
        ``entropy = beta (e - f)``; ``m`` (exact ``<w_i>``), ``q = mean(m_i^2)``;
        ``levels`` (distinct total energies) and ``probabilities`` (their
        Boltzmann probabilities); ``n_weights``, ``alpha`` and ``beta``.

    Raises
    ------
    DeepglassError
        An invalid ``beta``, or an instance without active path;
        ``TooLargeError`` for more than 24 weights.

    References
    ----------
    SPEC §6 (exact checks of BP and Monte Carlo).

    Examples
    --------
    One path, three weights: ``Z = 4 (e^beta + e^-beta)``.

    >>> from deepglass.rap import RAPModel
    >>> one = RAPModel.from_paths(1, [(0, 0, 0)], x=[1])
    >>> ex = exact_enumeration(one, 1.0)
    >>> round(ex["log_z"], 6), ex["levels"].tolist()
    (2.513222, [-1, 1])
    """
    beta = check_beta(beta)
    n = model.n_weights
    if n == 0:
        raise DeepglassError("the instance has no active path (increase N or the probabilities)")
    logw_parts, e_parts, state_parts = [], [], []
    for s, E in energy_levels(model):
        logw_parts.append(-beta * E)
        e_parts.append(E)
        state_parts.append(s)
    logw = np.concatenate(logw_parts)
    E = np.concatenate(e_parts)
    states = np.concatenate(state_parts)
    log_z = float(logsumexp(logw))
    prob = np.exp(logw - log_z)
    energy = float(np.dot(prob, E)) / n
    bits = (states[:, None] >> np.arange(n)) & 1
    m = prob @ (1 - 2 * bits)
    levels, inv = np.unique(E, return_inverse=True)
    level_prob = np.bincount(inv, weights=prob, minlength=levels.size)
    f = -log_z / (beta * n)
    return {"log_z": log_z, "free_energy": f, "energy": energy,
            "entropy": beta * (energy - f), "m": m, "q": float(np.mean(m ** 2)),
            "levels": levels, "probabilities": level_prob,
            "n_weights": n, "alpha": model.alpha, "beta": beta}

"""Closed-form statistics of the RAP ensemble and its parameter checks (SPEC §6).

The probability that a candidate path is active, the expected number of
active paths, the exact degree law of each weight population (paper 001
Fig. 3a), and the validation of ``(N, a, p, construction)`` every RAP entry
point runs first.  No instance is drawn here (:class:`~deepglass.rap.RAPModel`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import DeepglassError, TooLargeError, check_count

__all__ = ["expected_factors", "path_probability", "check_parameters", "bp_bytes_per_factor",
           "degree_law", "normalize_construction", "CONSTRUCTIONS"]

#: "units" (paper 001, the default): hidden units active and synapses present
#: independently, every path the masks allow is active; "independent": each path
#: active independently.
CONSTRUCTIONS = ("units", "independent")
#: former names, accepted with a FutureWarning
_ALIASES = {"correlated": "units"}


def normalize_construction(construction: str) -> str:
    """The canonical construction name; ``"correlated"`` (former name of
    ``"units"``) is accepted with a :class:`FutureWarning` (the category
    Python shows to the users of a program, the command line's included),
    attributed to the caller's line outside deepglass.

    Raises
    ------
    DeepglassError
        For an unknown name (one line).
    """
    if construction in _ALIASES:
        import os
        import sys
        import warnings

        # the first frame outside the package (and the __init__ a dataclass
        # generates, whose file is "<string>"): the line the user wrote
        root, frame, level = os.path.dirname(os.path.dirname(__file__)), sys._getframe(), 1
        while frame is not None and (frame.f_code.co_filename.startswith(root) or
                                     frame.f_code.co_filename == "<string>"):
            frame, level = frame.f_back, level + 1
        new = _ALIASES[construction]
        warnings.warn(f"construction {construction!r} is now called {new!r}; the old name "
                      "will be removed", FutureWarning, stacklevel=level)
        return new
    if construction not in CONSTRUCTIONS:
        raise DeepglassError(
            f"construction must be one of {', '.join(CONSTRUCTIONS)}, got {construction!r}")
    return construction

#: bytes of working memory per factor for belief propagation (messages, fields,
#: temporaries, index arrays); used to refuse instances that would not fit.
bp_bytes_per_factor = 200


def path_probability(a: Sequence[float], p: Sequence[float]) -> float:
    """Probability that one candidate path is active, ``a1 a2 (1-p1)(1-p2)(1-p3)``.

    Parameters
    ----------
    a : (float, float)
        Activation probabilities ``(a1, a2)`` of the two hidden layers.
    p : (float, float, float)
        Dilution probabilities ``(p1, p2, p3)`` of ``W1, W2, W3``.

    Returns
    -------
    float
        Both constructions.  SPEC §6.

    Raises
    ------
    DeepglassError
        ``a`` not two, or ``p`` not three, probabilities in [0, 1].

    Examples
    --------
    >>> path_probability((0.5, 0.3), (0.0, 0.0, 0.0))
    0.15
    """
    (a1, a2), (p1, p2, p3) = _probabilities(a, p)
    return a1 * a2 * (1 - p1) * (1 - p2) * (1 - p3)


def _probabilities(a, p) -> tuple[tuple[float, float], tuple[float, float, float]]:
    """``a`` and ``p`` as tuples of floats, or a one-line error naming the bad one."""
    for name, v, n in (("a", a, 2), ("p", p, 3)):
        try:
            ok = len(v) == n
        except TypeError:
            ok = False
        if not ok:
            ends = "(a1, a2)" if n == 2 else "(p1, p2, p3)"
            raise DeepglassError(f"{name} must be {ends}, got {v!r}")
    for name, v in (("a1", a[0]), ("a2", a[1]), ("p1", p[0]), ("p2", p[1]), ("p3", p[2])):
        if isinstance(v, bool) or not (isinstance(v, (int, float, np.floating, np.integer))
                                       and 0.0 <= float(v) <= 1.0):
            raise DeepglassError(f"{name} must be a probability in [0, 1], got {v!r}")
    return (float(a[0]), float(a[1])), (float(p[0]), float(p[1]), float(p[2]))


def expected_factors(N: int, a: Sequence[float], p: Sequence[float]) -> float:
    """Expected number of active paths, ``N^3 a1 a2 (1-p1)(1-p2)(1-p3)`` (both constructions).

    Parameters
    ----------
    N : int
        Width of the input and hidden layers, an integer >= 1.
    a, p : sequences of float
        ``(a1, a2)`` and ``(p1, p2, p3)`` as in :func:`path_probability` (validated there).

    Raises
    ------
    DeepglassError
        ``N`` not an integer >= 1, or invalid probabilities.

    Examples
    --------
    >>> expected_factors(10, (0.5, 0.3), (0.0, 0.0, 0.0))
    150.0
    """
    return float(check_count(N, "N")) ** 3 * path_probability(a, p)


def _factors_upper(N: int, a: Sequence[float], p: Sequence[float]) -> float:
    """A high quantile of the number of active paths (mean + 6 standard deviations).

    In the units construction ``M`` is a product of unit and synapse counts, so
    its relative spread is dominated by the ``N`` hidden units of each layer and
    the ``N`` output synapses: ``Var M / E[M]^2 ~ (1-a1)/(N a1) + (1-a2)/(N a2)
    + p3/(N (1-p3))``; the Poisson term ``sqrt(E M)`` covers the independent
    construction.
    """
    mean = expected_factors(N, a, p)
    if mean <= 0:
        return 10.0
    rel2 = 0.0
    for q in (a[0], a[1], 1.0 - p[2]):
        rel2 += (1.0 - q) / (N * q)
    return mean * (1.0 + 6.0 * math.sqrt(rel2)) + 6.0 * math.sqrt(max(mean, 1.0)) + 10


def degree_law(N: int, a: Sequence[float], p: Sequence[float], population: int,
               construction: str = "units") -> tuple[np.ndarray, np.ndarray]:
    """Exact expected number of weights of one population per degree (paper Fig. 3a).

    Parameters
    ----------
    N : int
        Width of the layers, an integer >= 1.
    a : (float, float)
        Activation probabilities ``(a1, a2)``.
    p : (float, float, float)
        Dilution probabilities ``(p1, p2, p3)``.
    population : {1, 2, 3}
        The weight population ``W1``, ``W2`` or ``W3``.
    construction : {"units", "independent"}, default "units"
        As :class:`RAPModel` (``"correlated"``: deprecated name of ``"units"``).

    Returns
    -------
    degrees : ndarray of int
        ``1..d_max`` (a weight is a variable of the model only when its degree
        is >= 1); ``d_max = N``, or ``N^2`` for ``W3``.
    expected_counts : ndarray of float
        Expected number of weights of that degree.

    Raises
    ------
    DeepglassError
        ``N`` not an integer >= 1, an unknown construction or population.

    Notes
    -----
    By linearity of expectation, in the units construction (``b(n, q)`` =
    binomial law):

    - ``W1`` (``w1_ij``): ``N^2 a1 (1-p1)`` candidates, degree = number of usable
      ``k`` (unit active, ``w2_jk`` and ``w3_k`` present): ``b(N, a2 (1-p2)(1-p3))``;
    - ``W2`` (``w2_jk``): ``N^2 a1 a2 (1-p2)(1-p3)`` candidates, degree = present
      ``w1_.j``: ``b(N, 1-p1)``;
    - ``W3`` (``w3_k``): ``N a2 (1-p3)`` candidates, degree = sum over the
      ``J ~ b(N, a1 (1-p2))`` usable ``j`` of ``b(N, 1-p1)``, i.e. ``b(J N, 1-p1)``
      mixed over ``J``.

    In the independent construction (path probability ``P``) ``W1``, ``W2`` have
    ``N^2`` candidates of degree ``b(N, P)`` and ``W3`` ``N`` of degree ``b(N^2, P)``.
    Cost O(d_max) (O(N d_max) for ``W3`` of the units construction).  SPEC §6
    (three-peak degree distribution); paper 001 Fig. 3a.
    """
    from scipy.stats import binom

    N = check_count(N, "N")     # (N = -1 gave empty arrays)
    construction = normalize_construction(construction)
    if population not in (1, 2, 3):
        raise DeepglassError(f"population must be 1, 2 or 3, got {population!r}")
    (a1, a2), (p1, p2, p3) = _probabilities(a, p)
    if construction == "independent":
        P = path_probability(a, p)
        n, cand = (N, N * N) if population < 3 else (N * N, N)
        d = np.arange(1, n + 1)
        return d, cand * binom.pmf(d, n, P)
    if population == 1:
        d = np.arange(1, N + 1)
        return d, N * N * a1 * (1 - p1) * binom.pmf(d, N, a2 * (1 - p2) * (1 - p3))
    if population == 2:
        d = np.arange(1, N + 1)
        return d, N * N * a1 * a2 * (1 - p2) * (1 - p3) * binom.pmf(d, N, 1 - p1)
    d = np.arange(1, N * N + 1)
    law = np.zeros(d.size)
    pj = binom.pmf(np.arange(N + 1), N, a1 * (1 - p2))
    for J in range(1, N + 1):
        if pj[J] > 0:
            law += pj[J] * binom.pmf(d, J * N, 1 - p1)
    return d, N * a2 * (1 - p3) * law


def check_parameters(N: int, a: Sequence[float], p: Sequence[float],
                     construction: str = "units",
                     max_memory_gb: float | None = 4.0) -> None:
    """Validate the RAP parameters; raise a one-line :class:`DeepglassError`.

    Also refuses (``TooLargeError``) an instance whose belief-propagation messages
    would need more than ``max_memory_gb`` (estimated from the expected number of
    active paths plus six standard deviations, at :data:`bp_bytes_per_factor`
    bytes per factor), before anything is allocated.  O(1).

    Parameters
    ----------
    N : int
        A Python or NumPy integer >= 1 (not a bool), with ``N^3 < 2^62``.
    a : (float, float)
        ``(a1, a2)``, each a number in [0, 1].
    p : (float, float, float)
        ``(p1, p2, p3)``, each a number in [0, 1].
    construction : {"units", "independent"}, default "units"
        Only the name is checked (``"correlated"`` is accepted with a
        :class:`DeprecationWarning`); the memory estimate is the same for both.
    max_memory_gb : float or None, default 4.0
        Memory budget in GB of the BP messages; None skips the check.

    Raises
    ------
    DeepglassError
        A bad ``N``, count of probabilities, probability or construction; its
        subclass ``TooLargeError`` where ``N^3`` overflows int64 or the
        messages exceed the budget.
    """
    if not isinstance(N, (int, np.integer)) or isinstance(N, bool) or N < 1:
        raise DeepglassError(f"N must be a positive integer, got {N!r}")
    a, p = _probabilities(a, p)
    normalize_construction(construction)
    if float(N) ** 3 >= 2.0 ** 62:
        raise TooLargeError(f"N = {N} is too large: N^3 path ids overflow 64-bit integers")
    if max_memory_gb is not None:
        from ..memory import check_fits

        mean = expected_factors(N, a, p)
        worst = _factors_upper(N, a, p)
        (a1, a2), (p1, p2, p3) = a, p
        # the units construction draws N x N masks first (uniforms, booleans, the
        # ids of present W1 synapses and of usable (j, k) pairs)
        masks = float(N) ** 2 * (12 + 16 * (1 - p1) + 16 * (1 - p2) * a1 * a2 * (1 - p3)) \
            if normalize_construction(construction) == "units" else 0.0
        check_fits(worst * bp_bytes_per_factor + masks,
                   f"instance too large: N = {N} gives ~{mean:.3g} active paths whose "
                   "construction and messages", "lower N or the activation probabilities",
                   max_memory_gb)

"""The random active path (RAP) model as a factor graph (SPEC section 6, paper 001 Sec. II).

A network ``N - N - N - 1`` with binary weights ``w in {-1, +1}`` has three weight
populations: ``W1`` (``N x N``, input ``i`` -> hidden ``j``), ``W2`` (``N x N``,
hidden ``j`` -> hidden ``k``) and ``W3`` (``N``, hidden ``k`` -> output).  A path
``a = (i, j, k)`` uses ``w1_ij, w2_jk, w3_k``; when it is *active* it adds the
3-body term ``-xi_a w1_ij w2_jk w3_k`` with ``xi_a = x_i`` to the Hamiltonian

    H(w) = - sum_{active a} xi_a * w1_ij * w2_jk * w3_k.

The factor graph is stored as flat arrays: ``factors`` (``M x 3`` compact weight
ids, columns = populations 1, 2, 3), ``xi`` (``M``), and per weight its population,
its index inside the population and its degree.  Only weights that appear in at
least one active path are variables of the model; ``alpha = M / N_w``.

Gauge structure (useful for checks): ``w1_ij -> x_i w1_ij`` removes ``xi`` from the
Hamiltonian, so the *planted* configuration ``w1_ij = x_i, w2 = w3 = +1`` satisfies
every factor and is a ground state with ``e = -alpha``.  Flipping all ``w1_.j`` and
``w2_j.`` of one hidden unit ``j`` (or all ``w2_.k`` and ``w3_k``) leaves ``H``
unchanged, so ground states come in gauge-equivalent families.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DeepglassError, TooLargeError

__all__ = ["RAPModel", "expected_factors", "path_probability", "check_parameters",
           "bp_bytes_per_factor"]

CONSTRUCTIONS = ("independent", "correlated")

#: bytes of working memory per factor for belief propagation (messages, fields,
#: temporaries, index arrays); used to refuse instances that would not fit.
bp_bytes_per_factor = 200


def path_probability(a: Sequence[float], p: Sequence[float]) -> float:
    """Probability that one candidate path is active, ``a1 a2 (1-p1)(1-p2)(1-p3)``."""
    return float(a[0] * a[1] * (1 - p[0]) * (1 - p[1]) * (1 - p[2]))


def expected_factors(N: int, a: Sequence[float], p: Sequence[float]) -> float:
    """Expected number of active paths, ``N^3 a1 a2 (1-p1)(1-p2)(1-p3)`` (both constructions)."""
    return float(N) ** 3 * path_probability(a, p)


def check_parameters(N: int, a: Sequence[float], p: Sequence[float],
                     construction: str = "independent",
                     max_memory_gb: float | None = 4.0) -> None:
    """Validate the RAP parameters; raise a one-line :class:`DeepglassError`.

    Also refuses (``TooLargeError``) an instance whose belief-propagation messages
    would need more than ``max_memory_gb`` (estimated from the expected number of
    active paths plus six standard deviations, at :data:`bp_bytes_per_factor`
    bytes per factor), before anything is allocated.
    """
    if not isinstance(N, (int, np.integer)) or isinstance(N, bool) or N < 1:
        raise DeepglassError(f"N must be a positive integer, got {N!r}")
    if len(a) != 2:
        raise DeepglassError(f"a must be (a1, a2), got {tuple(a)!r}")
    if len(p) != 3:
        raise DeepglassError(f"p must be (p1, p2, p3), got {tuple(p)!r}")
    for name, v in (("a1", a[0]), ("a2", a[1]), ("p1", p[0]), ("p2", p[1]), ("p3", p[2])):
        if not (isinstance(v, (int, float, np.floating, np.integer)) and 0.0 <= float(v) <= 1.0):
            raise DeepglassError(f"{name} must be a probability in [0, 1], got {v!r}")
    if construction not in CONSTRUCTIONS:
        raise DeepglassError(
            f"construction must be one of {', '.join(CONSTRUCTIONS)}, got {construction!r}")
    if float(N) ** 3 >= 2.0 ** 62:
        raise TooLargeError(f"N = {N} is too large: N^3 path ids overflow 64-bit integers")
    if max_memory_gb is not None:
        from ..memory import check_fits

        mean = expected_factors(N, a, p)
        worst = mean + 6.0 * math.sqrt(max(mean, 1.0)) + 10
        check_fits(worst * bp_bytes_per_factor,
                   f"instance too large: N = {N} gives ~{mean:.3g} active paths whose messages",
                   "lower N or the activation probabilities", max_memory_gb)


def _sample_distinct(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """A uniformly random ``m``-subset of ``range(n)``, sorted, in O(m log m) memory/time.

    Draws with replacement and takes the union until it holds at least ``m`` ids,
    then keeps a uniform ``m``-subset of the union.  Every decision depends only on
    set sizes, so the law is invariant under permutations of ``range(n)``: the
    result is a uniform ``m``-subset.  For ``m > n/2`` the complement is drawn.
    """
    if m <= 0:
        return np.empty(0, dtype=np.int64)
    if m > n // 2:
        out = np.ones(n, dtype=bool)
        out[_sample_distinct(rng, n, n - m)] = False
        return np.flatnonzero(out).astype(np.int64)
    chosen = np.unique(rng.integers(0, n, size=m, dtype=np.int64))
    while chosen.size < m:
        need = m - chosen.size
        extra = rng.integers(0, n, size=int(need * 1.25) + 16, dtype=np.int64)
        chosen = np.union1d(chosen, extra)
    if chosen.size > m:
        chosen = np.sort(rng.choice(chosen, size=m, replace=False))
    return chosen


def _compact(global_ids: np.ndarray, n_global: int) -> tuple[np.ndarray, np.ndarray]:
    """Relabel the used global weight ids to ``0..N_w-1`` (order preserved).

    Returns ``(used_global_ids, compact_ids_of_input)``.
    """
    if n_global <= 4 * global_ids.size + 1024:
        present = np.zeros(n_global, dtype=bool)
        present[global_ids] = True
        used = np.flatnonzero(present)
        lookup = np.cumsum(present, dtype=np.int64) - 1
        return used, lookup[global_ids]
    used, inv = np.unique(global_ids, return_inverse=True)
    return used, inv.reshape(global_ids.shape)


@dataclass
class RAPModel:
    """One random instance of the RAP model (SPEC section 6).

    Parameters
    ----------
    N : int
        Width of the input and of both hidden layers.
    a : (float, float)
        Activation probabilities ``(a1, a2)`` of the hidden units of layers 1, 2.
    p : (float, float, float)
        Dilution probabilities ``(p1, p2, p3)`` of the populations ``W1, W2, W3``.
    construction : {"independent", "correlated"}
        ``"independent"`` (paper): each of the ``N^3`` candidate paths is active
        independently with probability ``a1 a2 (1-p1)(1-p2)(1-p3)``; the number of
        active paths is drawn from the binomial law and that many distinct path ids
        are sampled uniformly, without enumerating the ``N^3`` candidates
        (O(M log M)).  ``"correlated"``: one Bernoulli mask per weight (present
        with ``1 - p_l``) and per hidden unit (active with ``a_l``); every path they
        allow is active (O(N^2 + M)).
    seed : int
        Seed of the instance (masks, input ``x``).
    max_memory_gb : float or None
        Refuse instances whose BP messages would exceed this (see
        :func:`check_parameters`).

    Attributes
    ----------
    x : ndarray (N,), int8
        Random input in ``{-1, +1}``.
    paths : ndarray (M,), int64
        Sorted active path ids ``i N^2 + j N + k``.
    factors : ndarray (M, 3), int32
        Compact weight ids of ``w1_ij, w2_jk, w3_k`` for each active path.
    xi : ndarray (M,), int8
        ``x_i`` of each path.
    population : ndarray (N_w,), int8
        1, 2 or 3 for each weight of the model.
    index : ndarray (N_w,), int64
        Index inside its population: ``i N + j`` (W1), ``j N + k`` (W2), ``k`` (W3).
    degree : ndarray (N_w,), int64
        Number of active paths through each weight.
    """

    N: int
    a: tuple[float, float] = (0.5, 0.3)
    p: tuple[float, float, float] = (0.0, 0.0, 0.0)
    construction: str = "independent"
    seed: int = 0
    max_memory_gb: float | None = 4.0
    x: np.ndarray = field(init=False, repr=False)
    paths: np.ndarray = field(init=False, repr=False)
    factors: np.ndarray = field(init=False, repr=False)
    xi: np.ndarray = field(init=False, repr=False)
    population: np.ndarray = field(init=False, repr=False)
    index: np.ndarray = field(init=False, repr=False)
    degree: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.a = tuple(float(v) for v in self.a)
        self.p = tuple(float(v) for v in self.p)
        check_parameters(self.N, self.a, self.p, self.construction, self.max_memory_gb)
        self.N = int(self.N)
        rng = np.random.default_rng(np.random.SeedSequence([int(self.seed), 0x524150]))
        N = self.N
        self.x = (2 * rng.integers(0, 2, size=N) - 1).astype(np.int8)
        if self.construction == "independent":
            n_total = N ** 3
            m = int(rng.binomial(n_total, path_probability(self.a, self.p)))
            paths = _sample_distinct(rng, n_total, m)
        else:
            paths = self._correlated_paths(rng)
        self._build(paths)

    # -- construction ------------------------------------------------------
    def _correlated_paths(self, rng: np.random.Generator) -> np.ndarray:
        N = self.N
        a1, a2 = self.a
        p1, p2, p3 = self.p
        present1 = rng.random((N, N)) >= p1          # w1_ij present
        present2 = rng.random((N, N)) >= p2          # w2_jk present
        present3 = rng.random(N) >= p3               # w3_k present
        h1 = rng.random(N) < a1                      # hidden unit j active
        h2 = rng.random(N) < a2                      # hidden unit k active
        upper = present2 & h1[:, None] & (h2 & present3)[None, :]   # (j, k) usable
        j_of, k_of = np.nonzero(upper)
        # inputs i with w1_ij present, grouped by column j (CSC of present1)
        jj, ii = np.nonzero(present1.T)
        col_start = np.zeros(N + 1, dtype=np.int64)
        np.cumsum(np.bincount(jj, minlength=N), out=col_start[1:])
        counts = col_start[j_of + 1] - col_start[j_of]
        total = int(counts.sum())
        if total == 0:
            return np.empty(0, dtype=np.int64)
        pair = np.repeat(np.arange(j_of.size), counts)
        offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        i_of = ii[col_start[j_of[pair]] + offset]
        paths = (i_of.astype(np.int64) * N + j_of[pair]) * N + k_of[pair]
        return np.sort(paths)

    def _build(self, paths: np.ndarray) -> None:
        N = self.N
        self.paths = np.asarray(paths, dtype=np.int64)
        i = self.paths // (N * N)
        j = (self.paths // N) % N
        k = self.paths % N
        glob = np.empty((self.paths.size, 3), dtype=np.int64)
        glob[:, 0] = i * N + j
        glob[:, 1] = N * N + j * N + k
        glob[:, 2] = 2 * N * N + k
        used, compact = _compact(glob, 2 * N * N + N)
        self.factors = compact.astype(np.int32).reshape(-1, 3)
        self.xi = self.x[i].astype(np.int8)
        self.population = np.where(used < N * N, 1, np.where(used < 2 * N * N, 2, 3)).astype(np.int8)
        self.index = used - (self.population.astype(np.int64) - 1) * N * N
        self.degree = np.bincount(self.factors.ravel(), minlength=used.size).astype(np.int64)

    @classmethod
    def from_paths(cls, N: int, paths: Sequence[tuple[int, int, int]] | np.ndarray,
                   x: Sequence[int] | np.ndarray) -> "RAPModel":
        """An instance with explicitly given active paths ``(i, j, k)`` and input ``x``.

        Used for hand-made instances (trees, tiny exact checks).
        """
        obj = cls.__new__(cls)
        obj.N = int(N)
        obj.a = (float("nan"), float("nan"))
        obj.p = (float("nan"),) * 3
        obj.construction = "explicit"
        obj.seed = -1
        obj.max_memory_gb = None
        x = np.asarray(x)
        if x.shape != (N,) or not np.all(np.abs(x) == 1):
            raise DeepglassError(f"x must be a vector of N = {N} entries in {{-1, +1}}")
        obj.x = x.astype(np.int8)
        arr = np.asarray(paths, dtype=np.int64).reshape(-1, 3)
        if arr.size and (arr.min() < 0 or arr.max() >= N):
            raise DeepglassError(f"path indices must lie in [0, {N})")
        ids = np.unique((arr[:, 0] * N + arr[:, 1]) * N + arr[:, 2])
        if ids.size != arr.shape[0]:
            raise DeepglassError("paths must be distinct")
        obj._build(ids)
        return obj

    # -- sizes -------------------------------------------------------------
    @property
    def n_factors(self) -> int:
        """Number of active paths ``M``."""
        return int(self.factors.shape[0])

    @property
    def n_weights(self) -> int:
        """Number of weights in at least one active path ``N_w``."""
        return int(self.population.size)

    @property
    def alpha(self) -> float:
        """``alpha = M / N_w`` (0 for an empty instance)."""
        return self.n_factors / self.n_weights if self.n_weights else 0.0

    def summary(self) -> dict:
        """Sizes and parameters as a flat dict."""
        pops = {f"n_w{l}": int(np.sum(self.population == l)) for l in (1, 2, 3)}
        return {"N": self.N, "a1": self.a[0], "a2": self.a[1], "p1": self.p[0],
                "p2": self.p[1], "p3": self.p[2], "construction": self.construction,
                "seed": self.seed, "n_factors": self.n_factors,
                "n_weights": self.n_weights, "alpha": self.alpha, **pops}

    # -- configurations ----------------------------------------------------
    @cached_property
    def planted(self) -> np.ndarray:
        """The ground state ``w1_ij = x_i, w2 = w3 = +1`` (int8, ``e = -alpha``)."""
        w = np.ones(self.n_weights, dtype=np.int8)
        w1 = self.population == 1
        w[w1] = self.x[self.index[w1] // self.N]
        return w

    def energy(self, w: np.ndarray) -> np.ndarray | float:
        """Energy ``H(w) = -sum_a xi_a prod_{i in a} w_i`` (not per weight).

        ``w`` is one configuration ``(N_w,)`` or a batch ``(R, N_w)``; O(R M).
        """
        w = np.asarray(w)
        if w.shape[-1] != self.n_weights:
            raise DeepglassError(f"configuration has {w.shape[-1]} weights, model has {self.n_weights}")
        f = self.factors
        prod = w[..., f[:, 0]].astype(np.int64) * w[..., f[:, 1]] * w[..., f[:, 2]]
        e = -(prod * self.xi).sum(axis=-1)
        return float(e) if np.ndim(e) == 0 else e

    # -- incidence ---------------------------------------------------------
    @cached_property
    def incidence(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR weight -> factor incidence ``(indptr, factor_ids)`` (O(M log M) once)."""
        flat = self.factors.ravel()
        order = np.argsort(flat, kind="stable")
        indptr = np.zeros(self.n_weights + 1, dtype=np.int64)
        np.cumsum(self.degree, out=indptr[1:])
        return indptr, (order // 3).astype(np.int32)

    # -- degree distribution (paper Fig. 3a) -------------------------------
    def degree_table(self) -> pd.DataFrame:
        """Degree distribution per population: columns ``population, degree, count, fraction``.

        ``fraction`` is the share of all ``N_w`` weights.  In the independent
        construction ``W1`` and ``W2`` degrees are both ``Binomial(N, P)`` (conditioned
        on >= 1) and ``W3`` is ``Binomial(N^2, P)``; in the correlated construction the
        three populations peak near ``N a2 (1-p2)(1-p3)``, ``N (1-p1)`` and
        ``N^2 a1 (1-p1)(1-p2)``: three separate peaks (paper Fig. 3a).
        """
        rows = []
        for l in (1, 2, 3):
            d = self.degree[self.population == l]
            if d.size == 0:
                continue
            vals, counts = np.unique(d, return_counts=True)
            rows.append(pd.DataFrame({"population": l, "degree": vals, "count": counts}))
        df = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
            {"population": [], "degree": [], "count": []})
        df["fraction"] = df["count"] / max(self.n_weights, 1)
        return df

    def is_forest(self) -> bool:
        """Whether the factor graph (weights + factors) has no cycle (BP is then exact)."""
        # a bipartite graph is a forest iff every connected component has
        # (#nodes - 1) edges; count components with union-find over weight ids.
        parent = np.arange(self.n_weights)

        def find(u):
            while parent[u] != u:
                parent[u] = parent[parent[u]]
                u = parent[u]
            return u

        for a in range(self.n_factors):
            ids = np.unique(self.factors[a])
            if ids.size < 3:
                return False
            roots = {find(int(v)) for v in ids}
            if len(roots) < ids.size:
                return False
            r0 = roots.pop()
            for r in roots:
                parent[r] = r0
        return True

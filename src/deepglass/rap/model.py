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

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DeepglassError, check_seed
from .ensemble import (CONSTRUCTIONS, _probabilities, bp_bytes_per_factor, check_parameters,
                       degree_law, expected_factors, normalize_construction, path_probability)

__all__ = ["RAPModel", "expected_factors", "path_probability", "check_parameters",
           "bp_bytes_per_factor", "degree_law", "normalize_construction", "CONSTRUCTIONS"]


def _first_distinct(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """The first ``m`` distinct values of an i.i.d. uniform stream on ``range(n)``, sorted.

    The stream is drawn in chunks of fixed, growing sizes (``2^16, 2^17, ...``),
    which do not depend on ``m``: the result for ``m' < m`` is a subset of the
    result for ``m`` (the coupling the phase scan's continuation needs).  The
    first ``m`` distinct values of an exchangeable stream are a uniform
    ``m``-subset.  O(m log m) time and memory while ``m << n``; near ``m = n`` it
    is the coupon collector's O(n log n).
    """
    if m <= 0:
        return np.empty(0, dtype=np.int64)
    chunks, size = [], 1 << 16
    while True:
        chunks.append(rng.integers(0, n, size=size, dtype=np.int64))
        stream = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        uniq, first = np.unique(stream, return_index=True)
        if uniq.size >= m:
            return np.sort(stream[np.sort(first)[:m]])
        size *= 2


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

    Flat factor-graph arrays of ``H(w)`` (module docstring); O(M) memory.

    Parameters
    ----------
    N : int
        Width of the input and of both hidden layers (integer >= 1, ``N^3 < 2^62``).
    a : (float, float), default (0.5, 0.3)
        Activation probabilities ``(a1, a2)`` of the hidden units of layers 1, 2,
        each in [0, 1].
    p : (float, float, float), default (0, 0, 0)
        Dilution probabilities ``(p1, p2, p3)`` of the populations ``W1, W2, W3``,
        each in [0, 1].
    construction : {"units", "independent"}, default "units"
        ``"units"`` (paper 001, default): each hidden unit of layer ``l`` is active
        with probability ``a_l`` and each synapse of ``W_l`` present with ``1 - p_l``,
        independently; every path these masks allow is active (O(N^2 + M)).  The
        three populations then have separate degree laws (:func:`degree_law`):
        three peaks, and results that depend on which population is diluted.
        ``"independent"``: each of the ``N^3`` candidate paths is active
        independently with probability ``a1 a2 (1-p1)(1-p2)(1-p3)``; the number of
        active paths is the binomial quantile of one uniform and the paths the
        first that many distinct ids of a uniform stream, without enumerating
        the ``N^3`` candidates (O(M log M)); ``W1`` and ``W2`` then share one degree
        law.  ``"correlated"`` is the former name of ``"units"`` (deprecated).

        Both constructions are *coupled* in ``a`` and ``p``: for one seed, an
        instance with larger dilutions (or smaller activations) has a subset of
        the active paths of one with smaller dilutions, so a scan in ``p`` follows
        one disorder realization (:meth:`message_map` carries messages along).
    seed : int, default 0
        Seed of the instance (masks, input ``x``), a non-negative integer.
    max_memory_gb : float or None, default 4.0
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

    Raises
    ------
    DeepglassError
        Invalid parameters or seed; ``TooLargeError`` (:func:`check_parameters`).

    References
    ----------
    SPEC §6; paper 001 Sec. II.

    Examples
    --------
    The planted configuration satisfies every factor (``e = -alpha``):

    >>> m = RAPModel(20, seed=1)
    >>> m.energy(m.planted) == -m.n_factors
    True
    """

    N: int
    a: tuple[float, float] = (0.5, 0.3)
    p: tuple[float, float, float] = (0.0, 0.0, 0.0)
    construction: str = "units"
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
        self.a, self.p = _probabilities(self.a, self.p)
        self.construction = normalize_construction(self.construction)
        check_parameters(self.N, self.a, self.p, self.construction, self.max_memory_gb)
        self.N = int(self.N)
        self.seed = check_seed(self.seed)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x524150]))
        N = self.N
        self.x = (2 * rng.integers(0, 2, size=N) - 1).astype(np.int8)
        if self.construction == "independent":
            from scipy.stats import binom

            n_total = N ** 3
            P = path_probability(self.a, self.p)
            # the binomial quantile of one uniform: monotone in P for this seed
            u = rng.random()
            m = n_total if P >= 1.0 else (0 if P <= 0.0 else int(binom.ppf(u, n_total, P)))
            paths = _first_distinct(rng, n_total, min(m, n_total))
        else:
            paths = self._unit_paths(rng)
        self._build(paths)

    # -- construction ------------------------------------------------------
    def _unit_paths(self, rng: np.random.Generator) -> np.ndarray:
        # thresholds of fixed uniforms: the masks are monotone in a and p (coupling)
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

    def message_map(self, other: "RAPModel") -> tuple[np.ndarray, np.ndarray]:
        """Where this instance's factors sit in ``other`` (a coupled instance).

        Returns ``(found, index)``: ``found[a]`` tells whether path ``a`` of this
        instance is active in ``other`` too, and ``other``'s factor ``index[a]`` is
        the same path (where found).  Messages ``m_{i->a}`` of ``other`` carry
        over as ``msgs[index[found]]`` (columns are the populations in both).
        O(M log M') by binary search in the sorted path ids.
        """
        if other.N != self.N:
            raise DeepglassError(f"instances of different N ({self.N}, {other.N})")
        idx = np.searchsorted(other.paths, self.paths)
        idx = np.minimum(idx, max(other.paths.size - 1, 0))
        found = (other.paths[idx] == self.paths) if other.paths.size else \
            np.zeros(self.paths.size, dtype=bool)
        return found, idx

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

        ``fraction`` is the share of all ``N_w`` weights.  In the units construction
        the three populations peak near ``N a2 (1-p2)(1-p3)``, ``N (1-p1)`` and
        ``N^2 a1 (1-p1)(1-p2)``: three separate peaks (paper Fig. 3a); in the
        independent construction ``W1`` and ``W2`` degrees are both
        ``Binomial(N, P)`` (conditioned on >= 1) and ``W3`` is ``Binomial(N^2, P)``.
        The exact expected counts are :func:`degree_law`.
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

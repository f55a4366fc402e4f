"""Certified ground states (frustration index) of small explicit signed graphs.

The frustration ``delta = min_sigma eps(sigma)`` of SPEC §2 (paper 000, Eq. 2-3)
is a MAX-CUT problem and NP-hard; on small graphs it is computed exactly, as a
reference for the heuristics (Algorithm 1 in :mod:`deepglass.solve.greedy`):

- **brute force** (``n <= brute_force_max``): all ``2^(n-1)`` gauges with
  ``sigma_0 = +1`` (the global flip leaves ``eps`` unchanged), enumerated in
  Gray-code order so that consecutive gauges differ in one spin and the energy
  and fields update in O(n): O(2^(n-1) n) time, O(n^2) memory (a dense copy of
  ``As``).  The enumeration is split into chunks run in parallel (numba
  ``prange``); each chunk starts from exactly recomputed fields and re-syncs
  them every 2^12 steps, and the chunk winners are re-evaluated exactly.
- **MILP** (larger graphs): the integer program below, strengthened by cycle
  inequalities from a cutting-plane loop, solved by HiGHS through
  :func:`scipy.optimize.milp` under a time limit.  A run stopped by the limit
  reports the incumbent and the proven lower bound (``optimal=False``).
"""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse.csgraph import connected_components, dijkstra

from .._numba import njit_parallel
from ..errors import DeepglassError, TooLargeError
from .greedy import as_couplings, available_memory_bytes, energy, greedy, random_gauges

__all__ = ["ExactResult", "exact", "brute_force", "milp_frustration", "certificate",
           "DEFAULT_TIME_LIMIT"]

#: seconds :func:`exact` gives the MILP unless told otherwise (``--time-limit``)
DEFAULT_TIME_LIMIT = 60.0

#: largest n that brute force accepts at all (2^39 gauges)
BRUTE_FORCE_LIMIT = 40
#: resync period (steps) of the Gray-code energy updates
_RESYNC = 1 << 12
#: rough HiGHS memory per edge of the MILP (4 rows, 12 nonzeros, factorization)
_MILP_BYTES_PER_EDGE = 2000


@dataclass
class ExactResult:
    """Result of :func:`exact`.

    Attributes
    ----------
    sigma : ndarray int8 (n,)
        Best gauge found (the optimum when ``optimal``).
    energy : float
        ``eps(sigma)`` (SPEC §2), recomputed from ``sigma``.
    lower_bound : float
        Proven lower bound on the frustration ``delta``; equals ``energy`` when
        ``optimal``.
    optimal : bool
        True when ``energy`` is certified to be the minimum.
    method : str
        ``"brute-force"`` or ``"milp"``.
    seconds : float
        Wall time.
    n_cuts : int
        Cycle inequalities added to the MILP (0 for brute force).
    """

    sigma: np.ndarray
    energy: float
    lower_bound: float
    optimal: bool
    method: str
    seconds: float
    n_cuts: int = 0

    @property
    def gap(self) -> float:
        """``energy - lower_bound`` (0 when optimal)."""
        return float(self.energy - self.lower_bound)

    def to_dict(self) -> dict:
        """Scalar summary (no gauge), one row of a tidy table."""
        return {
            "energy": self.energy,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "optimal": self.optimal,
            "method": self.method,
            "seconds": self.seconds,
            "n_cuts": self.n_cuts,
        }


# --------------------------------------------------------------------------
# brute force (Gray code)
# --------------------------------------------------------------------------


@njit(cache=True)
def _load_gauge(g, s, J, f):
    """s <- gauge of Gray word g (bit k set: sigma_{k+1} = -1); f <- J s; returns s^T J s."""
    n = s.shape[0]
    s[0] = 1.0
    for k in range(n - 1):
        s[k + 1] = -1.0 if (g >> k) & 1 else 1.0
    q = 0.0
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += J[i, j] * s[j]
        f[i] = acc
        q += s[i] * acc
    return q


@njit_parallel
def _gray_search(J, n_chunks, resync):
    n = J.shape[0]
    total = np.int64(1) << (n - 1)
    chunk = (total + n_chunks - 1) // n_chunks
    best_q = np.full(n_chunks, -np.inf)
    best_g = np.zeros(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        a = c * chunk
        b = min(total, a + chunk)
        if a >= b:
            continue
        s = np.empty(n)
        f = np.empty(n)
        g = a ^ (a >> 1)
        q = _load_gauge(g, s, J, f)
        bq = q
        bg = g
        for t in range(a + 1, b):
            # Gray code: going from t-1 to t flips bit k = trailing zeros of t
            k = 0
            tt = t
            while (tt & 1) == 0:
                tt >>= 1
                k += 1
            g ^= np.int64(1) << k
            if (t & (resync - 1)) == 0:
                q = _load_gauge(g, s, J, f)
            else:
                i = k + 1
                so = s[i]
                q -= 4.0 * so * f[i]  # flipping i changes s^T J s by -4 h_i
                s[i] = -so
                for j in range(n):
                    f[j] -= 2.0 * J[j, i] * so
            if q > bq:
                bq = q
                bg = g
        best_q[c] = bq
        best_g[c] = bg
    return best_q, best_g


def _gauge_from_word(g: int, n: int) -> np.ndarray:
    s = np.ones(n, dtype=np.int8)
    if n > 1:
        bits = (int(g) >> np.arange(n - 1)) & 1
        s[1:][bits == 1] = -1
    return s


def brute_force(As) -> ExactResult:
    """Exact frustration by enumerating all ``2^(n-1)`` gauges (Gray code).

    Parameters
    ----------
    As : sparse or dense (n, n)
        Symmetric couplings with zero diagonal, ``n <= 40``.

    Returns
    -------
    ExactResult
        ``method="brute-force"``, ``optimal=True``, ``sigma[0] = +1``.

    Notes
    -----
    Maximizes ``q = sigma^T As sigma`` (``eps = (1 - q / 1^T|As|1) / 2``).
    Time O(2^(n-1) n); the running ``q`` accumulates rounding over at most
    2^12 incremental updates before an exact resync, and the final winner is
    re-evaluated exactly, so the minimum is exact up to gauges whose energies
    differ by ~1e-13 relative.
    """
    t0 = time.perf_counter()
    M = as_couplings(As)
    n = M.shape[0]
    if n > BRUTE_FORCE_LIMIT:
        raise DeepglassError(
            f"brute force is limited to {BRUTE_FORCE_LIMIT} nodes (2^{BRUTE_FORCE_LIMIT - 1} gauges), got {n}"
        )
    if n == 0:
        return ExactResult(np.ones(0, dtype=np.int8), 0.0, 0.0, True, "brute-force", time.perf_counter() - t0)
    J = M.toarray()
    total_words = 1 << (n - 1)
    n_chunks = int(min(total_words, 64 * max(numba.get_num_threads(), 1)))
    best_q, best_g = _gray_search(J, n_chunks, _RESYNC)
    cand = [_gauge_from_word(g, n) for g, q in zip(best_g, best_q) if np.isfinite(q)]
    energies = np.asarray(energy(M, np.stack(cand)))
    k = int(np.argmin(energies))
    e = float(energies[k])
    return ExactResult(cand[k], e, e, True, "brute-force", time.perf_counter() - t0)


# --------------------------------------------------------------------------
# MILP with cycle inequalities
# --------------------------------------------------------------------------


def _edge_constraints(n, ei, ej, neg):
    """Rows of the exact XOR / XNOR linearization (4 per edge), vars [x (n), f (m)]."""
    m = len(ei)
    e = np.arange(m)
    # coefficients of (f_e, x_i, x_j) in the four rows, positive edges:
    #   f - x_i + x_j >= 0,  f + x_i - x_j >= 0,  f - x_i - x_j <= 0,  f + x_i + x_j <= 2
    # negative edges (f = XNOR):
    #   f + x_i + x_j >= 1,  f - x_i - x_j >= -1, f + x_i - x_j <= 1,  f - x_i + x_j <= 1
    cpos = np.array([[1, -1, 1], [1, 1, -1], [1, -1, -1], [1, 1, 1]], dtype=float)
    cneg = np.array([[1, 1, 1], [1, -1, -1], [1, 1, -1], [1, -1, 1]], dtype=float)
    lpos = np.array([0, 0, -np.inf, -np.inf])
    upos = np.array([np.inf, np.inf, 0, 2])
    lneg = np.array([1, -1, -np.inf, -np.inf])
    uneg = np.array([np.inf, np.inf, 1, 1])
    coef = np.where(neg[:, None, None], cneg[None], cpos[None])  # (m, 4, 3)
    lb = np.where(neg[:, None], lneg[None], lpos[None]).ravel()
    ub = np.where(neg[:, None], uneg[None], upos[None]).ravel()
    rows = np.repeat(np.arange(4 * m), 3)
    cols = np.stack([n + e, ei, ej], axis=1)  # (m, 3)
    cols = np.repeat(cols[:, None, :], 4, axis=1).ravel()
    A = sp.csr_matrix((coef.ravel(), (rows, cols)), shape=(4 * m, n + m))
    return A, lb, ub


def _separate_cycles(fvals, ei, ej, neg, n, edge_id, sources, max_cuts, seen):
    """Most violated cycle inequalities by shortest paths in the parity double cover.

    A cycle C and a subset F of its edges with ``|F| + #neg(C)`` odd give the
    valid inequality ``sum_{e in F} (1 - f_e) + sum_{e in C \\ F} f_e >= 1``.
    On the graph with nodes (v, parity), an edge contributes cost ``f_e`` when
    outside F and ``1 - f_e`` inside F, and toggles the parity by
    ``[e in F] xor neg_e``; a path (v,0) -> (v,1) of length < 1 is a violated
    inequality (Barahona & Mahjoub 1986).
    """
    f = np.clip(fvals, 0.0, 1.0)
    negi = neg.astype(np.int64)
    c_keep = np.where(neg, 1.0 - f, f) + 1e-9  # parity-preserving arc cost
    c_tog = np.where(neg, f, 1.0 - f) + 1e-9  # parity-toggling arc cost
    r = np.concatenate([ei, ei + n, ei, ei + n])
    c = np.concatenate([ej, ej + n, ej + n, ej])
    w = np.concatenate([c_keep, c_keep, c_tog, c_tog])
    G = sp.csr_matrix((w, (r, c)), shape=(2 * n, 2 * n))
    G = (G + G.T).tocsr()
    dist, pred = dijkstra(G, directed=True, indices=sources, return_predecessors=True, limit=1.0)
    found = []
    for k, v in enumerate(sources):
        d = dist[k, v + n]
        if not d < 1.0 - 1e-6:
            continue
        path = [v + n]
        while path[-1] != v:
            p = pred[k, path[-1]]
            if p < 0:
                break
            path.append(p)
        if path[-1] != v:
            continue
        orig = [u % n for u in path]
        inner = orig[1:-1]
        if len(set(inner)) != len(inner) or v in inner:
            continue  # not a simple cycle
        cyc = []
        for a, b in zip(path[:-1], path[1:]):
            e = edge_id[(min(a % n, b % n), max(a % n, b % n))]
            in_f = ((a >= n) != (b >= n)) != bool(negi[e])
            cyc.append((e, in_f))
        key = frozenset(cyc)
        if key in seen or len(key) != len(cyc):
            continue
        seen.add(key)
        found.append((d, cyc))
    found.sort(key=lambda t: t[0])
    return [cyc for _, cyc in found[:max_cuts]]


def _cut_rows(cuts, n, m):
    rows, cols, vals, lb = [], [], [], []
    for r, cyc in enumerate(cuts):
        n_f = 0
        for e, in_f in cyc:
            rows.append(r)
            cols.append(n + e)
            vals.append(-1.0 if in_f else 1.0)
            n_f += in_f
        lb.append(1.0 - n_f)
    A = sp.csr_matrix((vals, (rows, cols)), shape=(len(cuts), n + m))
    return A, np.asarray(lb, dtype=float)


def milp_frustration(
    As,
    *,
    time_limit: float = DEFAULT_TIME_LIMIT,
    cut_rounds: int = 50,
    cut_time_fraction: float = 0.3,
    seed: int = 0,
) -> ExactResult:
    """Frustration index by mixed-integer programming (HiGHS via scipy).

    Formulation (vars ``x_i in {0,1}``, ``sigma_i = 2 x_i - 1``; one
    ``f_e in [0,1]`` per undirected edge ``e = (i,j)``, weight ``w``): ``f_e``
    is the *frustrated* indicator, ``[sign(w) != sigma_i sigma_j]``, written
    exactly by four linear rows,

    - ``w > 0`` (frustrated iff ``x_i != x_j``, XOR):
      ``f >= x_i - x_j``, ``f >= x_j - x_i``, ``f <= x_i + x_j``,
      ``f <= 2 - x_i - x_j``;
    - ``w < 0`` (frustrated iff ``x_i == x_j``, XNOR):
      ``f >= 1 - x_i - x_j``, ``f >= x_i + x_j - 1``, ``f <= 1 + x_i - x_j``,
      ``f <= 1 - x_i + x_j``;

    so for integral ``x`` every ``f_e`` is forced to the indicator and the
    objective ``min sum_e |w_e| f_e`` equals ``eps * sum_e |w_e|`` (SPEC §2).
    One node per connected component is fixed to ``x = 1`` (global gauge flip
    symmetry).  The LP relaxation of these rows alone is weak (``x = 1/2``
    gives bound 0), so a cutting-plane loop first adds **cycle inequalities**:
    around any cycle the number of frustrated edges has the parity of its
    number of negative edges, whence
    ``sum_{e in F} (1 - f_e) + sum_{e in C \\ F} f_e >= 1`` for every cycle C
    and ``F subset C`` with ``|F| + #neg(C)`` odd.  They are separated exactly
    on the LP optimum by shortest paths in the parity double cover (Barahona &
    Mahjoub); this makes the relaxation tight on graphs without a K5 minor
    and strong on the 4-cycles of layered (bipartite) graphs.  The MILP then
    runs with all cuts (``mip_rel_gap = 0``; HiGHS's absolute gap 1e-6 is
    relative to the smallest ``|w|`` by scaling the objective).

    Parameters
    ----------
    As : sparse (n, n)
        Symmetric couplings with zero diagonal.
    time_limit : float
        Seconds for the whole call (cutting planes + branch and bound); HiGHS
        checks its clock between phases, so a large model may overrun it by
        a second or two (its feasibility-jump heuristic, which overran it
        several times over, is off).
    cut_rounds : int
        Maximum LP/separation rounds (0: plain formulation).
    cut_time_fraction : float
        Share of ``time_limit`` the cutting-plane loop may use.
    seed : int
        Seed of the source-node sample of large separations and of the
        fallback start gauges.

    Returns
    -------
    ExactResult
        ``method="milp"``; on a time limit the best of the incumbent polished
        by a greedy descent and 17 greedy starts, the proven lower bound (max of the cut LP bound and HiGHS's
        dual bound) and ``optimal=False``.
    """
    t0 = time.perf_counter()
    M = as_couplings(As)
    n = M.shape[0]
    time_limit = _check_time(time_limit)
    if cut_rounds < 0:
        raise DeepglassError(f"cut_rounds must be >= 0, got {cut_rounds}")
    if not 0 <= cut_time_fraction < 1:
        raise DeepglassError(f"cut_time_fraction must be in [0, 1), got {cut_time_fraction}")
    U = sp.triu(M, k=1).tocoo()
    keep = U.data != 0
    ei, ej, w = U.row[keep].astype(np.int64), U.col[keep].astype(np.int64), U.data[keep]
    m = len(w)
    if m == 0:
        return ExactResult(np.ones(n, dtype=np.int8), 0.0, 0.0, True, "milp", time.perf_counter() - t0)
    need = _MILP_BYTES_PER_EDGE * m
    if need > 0.8 * available_memory_bytes():
        raise TooLargeError(
            f"the MILP needs about {need / 1e9:.2f} GB for {m:,} edges; "
            f"use the greedy or matrix-free solvers"
        )
    neg = w < 0
    aw = np.abs(w)
    W = float(aw.sum())
    scale = 1.0 / max(float(aw.min()), float(aw.max()) * 1e-6)
    cost = np.concatenate([np.zeros(n), aw * scale])

    A0, lb0, ub0 = _edge_constraints(n, ei, ej, neg)
    # symmetry breaking: fix the highest-degree node of every component
    _, comp = connected_components(M, directed=False)
    deg = np.diff(M.indptr)
    order = np.lexsort((-np.arange(n), deg, comp))  # per component, highest degree last
    last = np.r_[comp[order][1:] != comp[order][:-1], True]
    fixed = order[last]
    lo = np.zeros(n + m)
    hi = np.ones(n + m)
    lo[fixed] = 1.0

    edge_id = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(ei, ej))}
    rng = np.random.default_rng(seed)
    cuts: list = []
    seen: set = set()
    lp_bound = 0.0
    cut_budget = cut_time_fraction * time_limit
    for _ in range(cut_rounds):
        left = cut_budget - (time.perf_counter() - t0)
        if left <= 0.05:
            break
        cons = [LinearConstraint(A0, lb0, ub0)]
        if cuts:
            Ac, lbc = _cut_rows(cuts, n, m)
            cons.append(LinearConstraint(Ac, lbc, np.inf))
        res = milp(cost, constraints=cons, bounds=Bounds(lo, hi), integrality=np.zeros(n + m),
                   options={"time_limit": left})
        if res.status != 0 or res.x is None:
            break
        lp_bound = max(lp_bound, float(res.fun))
        sources = np.arange(n) if n <= 400 else np.sort(rng.choice(n, 400, replace=False))
        new = _separate_cycles(res.x[n:], ei, ej, neg, n, edge_id, sources, max_cuts=max(2 * n, 50), seen=seen)
        if not new:
            break
        cuts.extend(new)

    cons = [LinearConstraint(A0, lb0, ub0)]
    if cuts:
        Ac, lbc = _cut_rows(cuts, n, m)
        cons.append(LinearConstraint(Ac, lbc, np.inf))
    integrality = np.concatenate([np.ones(n), np.zeros(m)])
    left = max(time_limit - (time.perf_counter() - t0), 0.05)
    with warnings.catch_warnings():
        # passed to HiGHS verbatim (scipy warns so): its feasibility-jump
        # heuristic does not look at the clock (a 6 s limit ran 29 s on a
        # 280k-edge graph); the greedy polish below finds starts anyway
        warnings.filterwarnings("ignore", message="Unrecognized options")
        res = milp(cost, constraints=cons, bounds=Bounds(lo, hi), integrality=integrality,
                   options={"time_limit": left, "mip_rel_gap": 0.0,
                            "mip_heuristic_run_feasibility_jump": False})

    optimal = res.status == 0 and res.x is not None
    starts = []
    if res.x is not None:
        starts.append(np.where(res.x[:n] > 0.5, 1, -1).astype(np.int8))
    if not optimal:
        starts.append(np.ones(n, dtype=np.int8))
        starts.extend(random_gauges(n, 16, seed))
    # a descent from the incumbent can only lower the energy; without a
    # certificate, greedy multi-starts may also beat the incumbent
    polished = greedy(M, np.stack(starts), check_symmetric=False)
    k = int(np.argmin(polished.energies))
    sigma = polished.sigma[k]
    e = float(energy(M, sigma))
    dual = getattr(res, "mip_dual_bound", None)
    bounds = [lp_bound]
    if dual is not None and np.isfinite(dual):
        bounds.append(float(dual))
    lb = min(max(bounds) / scale / W, e)
    if optimal:
        lb = e
    return ExactResult(sigma, e, max(lb, 0.0), bool(optimal), "milp", time.perf_counter() - t0, len(cuts))


def _check_time(time_limit):
    if isinstance(time_limit, (bool, str, bytes)) or not isinstance(time_limit, numbers.Real):
        raise DeepglassError(f"time_limit must be a positive number of seconds, got "
                             f"{time_limit!r}")
    t = float(time_limit)
    if not np.isfinite(t) or t <= 0:
        raise DeepglassError(f"time_limit must be a positive number of seconds, got {time_limit}")
    return t


def certificate(optimal, energy: float, lower_bound: float) -> str:
    """What an exact solve's value is, in words: ``"certified optimal"``, or
    ``"best found, not certified: gap G (lower bound L)"`` when the MILP
    stopped at its time limit (``energy`` is then an upper bound on the
    frustration, ``lower_bound`` a proven lower one).  ``optimal`` None or
    NaN (not recorded): ``"certification not recorded"``."""
    if optimal is None or (isinstance(optimal, float) and optimal != optimal):
        return "certification not recorded"
    if bool(optimal):
        return "certified optimal"
    return (f"best found, not certified: gap {float(energy) - float(lower_bound):.4f} "
            f"(lower bound {float(lower_bound):.4f})")


def exact(As, *, time_limit: float = DEFAULT_TIME_LIMIT, brute_force_max: int = 25) -> ExactResult:
    """Certified frustration index ``delta = min_sigma eps(sigma)`` (SPEC §2).

    Brute force (:func:`brute_force`, O(2^(n-1) n)) when
    ``n <= brute_force_max``; otherwise the cycle-strengthened MILP
    (:func:`milp_frustration`) under ``time_limit`` seconds.

    Parameters
    ----------
    As : sparse or dense (n, n)
        Symmetric couplings ``A + A^T`` with zero diagonal.
    time_limit : float
        Seconds allowed to the MILP.
    brute_force_max : int
        Largest ``n`` solved by enumeration (at most 40).

    Returns
    -------
    ExactResult
    """
    if int(brute_force_max) != brute_force_max or not 0 <= brute_force_max <= BRUTE_FORCE_LIMIT:
        raise DeepglassError(
            f"brute_force_max must be an integer in [0, {BRUTE_FORCE_LIMIT}], got {brute_force_max}"
        )
    _check_time(time_limit)
    M = as_couplings(As)
    if M.shape[0] <= brute_force_max:
        return brute_force(M)
    return milp_frustration(M, time_limit=time_limit)

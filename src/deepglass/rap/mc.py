"""Monte Carlo for the RAP model: quenches and thermodynamic integration.

Implements SPEC section 6 / paper 001 Appendix B.  Single-weight flips are
proposed at uniformly random weights; a sweep is ``N_w`` proposals.  The state
keeps, besides the weights ``w``, the factor values ``s_a = xi_a prod_{i in a} w_i``
and per weight ``g_i = sum_{b in i} s_b``, so that the local field of SPEC is
``h_i = w_i g_i`` and the energy change of flipping ``w_i`` is
``Delta E = 2 w_i h_i = 2 g_i``.  A proposal costs O(1); an accepted flip of
``w_i`` updates the ``3 d_i`` fields of the factors of ``i`` through the CSR
weight -> factor incidence (O(d_i)).  Acceptance probabilities depend only on the
integer ``g_i`` and are tabulated per temperature:

- Metropolis: ``min(1, exp(-2 beta g_i))``;
- heat bath: ``1 / (1 + exp(2 beta g_i))`` (``w_i`` drawn from its conditional law).

Kernels are compiled with numba (one core); randomness comes from numba's
Mersenne twister, seeded per call, so the same seed gives the same numbers.
A seed below 2^32 seeds it as ``np.random.seed`` does; a larger one (any
non-negative integer) fills its whole state through NumPy's ``SeedSequence``,
so seeds ``s`` and ``s + 2^32`` give different chains.

Chains that belong together get independent streams from NumPy's
``SeedSequence``: :func:`run_mc` spawns its quench and its
thermodynamic-integration chain from the caller's seed
(:func:`spawn_seeds`), and the scans give every temperature or dilution its own
chain (:func:`point_seed`), so no two chains of a study share a start or a
random stream (the integration chain of seed ``s`` was the quench of ``s + 1``,
and a scan's quenches all used the study seed).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..errors import DeepglassError, check_count, check_seed, check_type
from .bp import check_beta, check_int
from .model import RAPModel

__all__ = ["MCResult", "run_mc", "thermodynamic_integration", "METHODS", "spawn_seeds",
           "point_seed"]

METHODS = ("metropolis", "heatbath")


# --------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------
@njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


def seed_chain(seed: int) -> None:
    """Seed numba's Mersenne twister (this thread's) for a chain seeded ``seed``.

    Seeds below 2^32 give the stream of ``np.random.seed(seed)``; larger ones
    the state ``np.random.MT19937(seed)`` draws from ``SeedSequence(seed)`` (no
    folding modulo 2^32).
    """
    seed = check_seed(seed)
    if seed < 2 ** 32:
        _seed(seed)
        return
    state = np.random.MT19937(seed).state["state"]
    try:
        from numba import _helperlib
        _helperlib.rnd_set_state(_helperlib.rnd_get_np_state_ptr(),
                                 (int(state["pos"]), [int(k) for k in state["key"]]))
    except (ImportError, AttributeError):  # a numba without the state setter
        _seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))


def _state_seed(ss: np.random.SeedSequence) -> int:
    """A chain seed in ``[0, 2^63)`` from a seed sequence (64 bits, top one dropped)."""
    return int(ss.generate_state(1, np.uint64)[0]) >> 1


def spawn_seeds(seed: int, n: int) -> list[int]:
    """``n`` chain seeds spawned from ``SeedSequence(seed)`` (independent streams).

    Child ``k`` is ``SeedSequence(seed, spawn_key=(k,))``, so the seeds are the
    same on every call and differ between children and between seeds.
    """
    seed = check_seed(seed)
    return [_state_seed(c) for c in np.random.SeedSequence(seed).spawn(int(n))]


def point_seed(seed: int, *values: float) -> int:
    """The chain seed of one point (``beta``, dilution, ...) of a scan seeded ``seed``.

    Drawn by ``SeedSequence`` from ``seed`` and the exact bits of each value, so
    every point has its own stream, the same whichever other points run (a scan
    split into units gives the points the seeds of the whole scan).
    """
    seed = check_seed(seed)
    bits = [int(np.float64(v).view(np.uint64)) for v in values]
    return _state_seed(np.random.SeedSequence([seed, 0x4D43, *bits]))


@njit(cache=True)
def _random_spins(n):
    w = np.empty(n, dtype=np.int8)
    for i in range(n):
        w[i] = 1 if np.random.random() < 0.5 else -1
    return w


@njit(cache=True)
def _init_state(w, fw, xi, indptr, inc, s, g):
    """Factor values ``s_a`` and sums ``g_i``; returns the energy ``-sum_a s_a``."""
    E = 0
    for a in range(fw.shape[0]):
        v = xi[a] * w[fw[a, 0]] * w[fw[a, 1]] * w[fw[a, 2]]
        s[a] = v
        E -= v
    for i in range(w.size):
        acc = 0
        for ptr in range(indptr[i], indptr[i + 1]):
            acc += s[inc[ptr]]
        g[i] = acc
    return E


@njit(cache=True)
def _sweeps(w, s, g, fw, indptr, inc, table, offset, n_sweeps, always_draw,
            E, e_trace, trace_from, acc_a, acc_b, half):
    """``n_sweeps`` sweeps of single-flip dynamics with acceptance ``table[g + offset]``.

    Records the energy after each sweep in ``e_trace[trace_from + sweep]`` and,
    for sweeps with index >= 0 relative to ``half`` split, accumulates ``w`` into
    ``acc_a`` (sweeps before ``half``) or ``acc_b`` (from ``half`` on); pass
    ``half < 0`` to skip accumulation.  Returns ``(E, accepted)``.
    """
    nw = w.size
    accepted = 0
    for sweep in range(n_sweeps):
        for _ in range(nw):
            i = np.random.randint(0, nw)
            gi = g[i]
            pa = table[gi + offset]
            if always_draw or pa < 1.0:
                if np.random.random() >= pa:
                    continue
            # flip w_i: every factor of i changes sign
            w[i] = -w[i]
            for ptr in range(indptr[i], indptr[i + 1]):
                a = inc[ptr]
                d = -2 * s[a]
                s[a] = -s[a]
                g[fw[a, 0]] += d
                g[fw[a, 1]] += d
                g[fw[a, 2]] += d
            E += 2 * gi
            accepted += 1
        if e_trace.size > 0:
            e_trace[trace_from + sweep] = E
        if half >= 0:
            if sweep < half:
                for k in range(nw):
                    acc_a[k] += w[k]
            else:
                for k in range(nw):
                    acc_b[k] += w[k]
    return E, accepted


# --------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------
def _check_method(method: str) -> bool:
    if method not in METHODS:
        raise DeepglassError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method == "heatbath"


def _table(beta: float, dmax: int, heat_bath: bool) -> np.ndarray:
    g = np.arange(-dmax, dmax + 1, dtype=np.float64)
    with np.errstate(over="ignore"):
        if heat_bath:
            return 1.0 / (1.0 + np.exp(2.0 * beta * g))
        return np.minimum(1.0, np.exp(-2.0 * beta * g))


class _Chain:
    """A Markov chain on one instance: weights, factor values, fields, energy."""

    def __init__(self, model: RAPModel, start, seed: int, heat_bath: bool):
        self.model = model
        self.heat_bath = heat_bath
        self.fw = model.factors
        self.xi = model.xi.astype(np.int8)
        self.indptr, self.inc = model.incidence
        self.dmax = int(model.degree.max()) if model.n_weights else 0
        seed_chain(seed)
        nw = model.n_weights
        if isinstance(start, np.ndarray):
            w = np.asarray(start, dtype=np.int8).copy()
            if w.shape != (nw,) or not np.all(np.abs(w) == 1):
                raise DeepglassError(f"start configuration must be {nw} values in {{-1, +1}}")
        elif start == "random":
            w = _random_spins(nw)
        elif start == "planted":
            w = model.planted.copy()
        else:
            raise DeepglassError(f"start must be 'random', 'planted' or a configuration, got {start!r}")
        self.w = w
        self.s = np.empty(model.n_factors, dtype=np.int8)
        self.g = np.empty(nw, dtype=np.int32)
        self.E = int(_init_state(self.w, self.fw, self.xi, self.indptr, self.inc, self.s, self.g))

    def run(self, beta: float, n_sweeps: int, e_trace=None, trace_from: int = 0,
            acc_a=None, acc_b=None, half: int = -1) -> int:
        if n_sweeps <= 0 or self.model.n_weights == 0:
            return 0
        table = _table(beta, self.dmax, self.heat_bath)
        empty_i = np.empty(0, dtype=np.int64)
        empty_f = np.empty(0, dtype=np.float64)
        E, acc = _sweeps(self.w, self.s, self.g, self.fw, self.indptr, self.inc, table,
                         self.dmax, int(n_sweeps), self.heat_bath, self.E,
                         empty_i if e_trace is None else e_trace, int(trace_from),
                         empty_f if acc_a is None else acc_a,
                         empty_f if acc_b is None else acc_b, int(half))
        self.E = int(E)
        return int(acc)


def _batch_stderr(x: np.ndarray, n_batches: int = 20) -> float:
    """Standard error of the mean of a correlated series by batch means."""
    n = x.size
    b = min(n_batches, n)
    if b < 2:
        return math.nan
    means = np.array([c.mean() for c in np.array_split(x, b)])
    return float(means.std(ddof=1) / math.sqrt(b))


@dataclass
class MCResult:
    """A quench from ``start`` to ``beta`` followed by sampling (per-weight values).

    Attributes
    ----------
    beta : float
    method : str
        ``"metropolis"`` or ``"heatbath"``.
    start : str
        ``"random"``, ``"planted"`` or ``"given"``.
    seed, sweeps, equilibration : int
        As passed to :func:`run_mc` (``equilibration`` resolved).
    energy, energy_err : float
        Mean of ``H / N_w`` over the sampling sweeps and its batch-means error.
    q : float
        ``mean_i(mbar_i^A mbar_i^B)``, with ``mbar^A`` and ``mbar^B`` the time
        averages of ``w_i`` over the first and second halves of the sampling window:
        an estimate of the Edwards-Anderson ``mean(<w_i>^2)`` (compare with BP's
        ``q``) without the ``1/n`` bias of squaring one average.
    m_planted : float
        Overlap of the time-averaged weights with the planted ground state.
    converged : bool
        Stationarity: the mean energies of the two halves of the sampling window
        agree within 3 combined batch-means errors (or exactly, when frozen).
    acceptance : float
        Accepted flips per proposal over all sweeps.
    alpha, n_weights, n_factors
        ``M / N_w``, ``N_w`` and ``M`` of the instance.
    free_energy, entropy : float
        From thermodynamic integration (:func:`thermodynamic_integration`) when
        ``ti_points > 0``, else NaN.
    seconds, flips_per_second : float
        Wall time of the quench (without the integration) and proposals per second.
    e_trace : ndarray
        ``H / N_w`` after every sweep (equilibration and sampling).
    w : ndarray (N_w,), int8
        The final configuration.
    """

    beta: float
    method: str
    start: str
    seed: int
    sweeps: int
    equilibration: int
    energy: float
    energy_err: float
    q: float
    m_planted: float
    converged: bool
    acceptance: float
    alpha: float
    n_weights: int
    n_factors: int
    free_energy: float = math.nan
    entropy: float = math.nan
    seconds: float = 0.0
    flips_per_second: float = 0.0
    e_trace: np.ndarray = field(default=None, repr=False)
    w: np.ndarray = field(default=None, repr=False)

    def to_dict(self) -> dict:
        keys = ("beta", "method", "start", "seed", "sweeps", "equilibration", "alpha",
                "n_weights", "n_factors", "energy", "energy_err", "entropy",
                "free_energy", "q", "m_planted", "converged", "acceptance", "seconds",
                "flips_per_second")
        return {k: (getattr(self, k).item() if isinstance(getattr(self, k), np.generic)
                    else getattr(self, k)) for k in keys}


def _check_sweeps(name: str, v: int, minimum: int = 1) -> int:
    return check_int(name, v, minimum)


def check_mc_sweeps(v, least: int = 2, name: str = "mc_sweeps") -> int:
    """``v`` as the sweeps of an optional Monte Carlo quench: 0 (none) or an
    integer >= ``least``; else one line naming ``name`` (the CLI passes its
    option, ``--mc-sweeps``)."""
    v = check_count(v, name, least=0)
    if 0 < v < least:
        raise DeepglassError(f"{name} must be 0 (no Monte Carlo) or >= {least}, got {v}")
    return v


def run_mc(model: RAPModel, beta: float, *, sweeps: int = 2000,
           equilibration: int | None = None, method: str = "metropolis", seed: int = 0,
           start="random", ti_points: int = 0, ti_sweeps: int = 100) -> MCResult:
    """Quench Monte Carlo at ``beta``: equilibrate, then sample ``e`` and ``q``.

    Parameters
    ----------
    model : RAPModel
        With at least one active path.
    beta : float
        Inverse temperature (finite, > 0); the start is a random configuration
        (infinite temperature), as in the paper, unless ``start`` says otherwise.
    sweeps : int, default 2000
        Total sweeps (``N_w`` proposals each), equilibration included; >= 2.
    equilibration : int, optional
        Sweeps discarded before sampling (default ``sweeps // 2``, at most
        ``sweeps - 2``); >= 0 and leaving at least 2 sampling sweeps.
    method : {"metropolis", "heatbath"}, default "metropolis"
    seed : int, default 0
        The quench chain and the integration chain get two streams spawned from
        ``SeedSequence(seed)`` (:func:`spawn_seeds`): independent of each other
        and of every other seed's chains.
    start : {"random", "planted"} or ndarray (N_w,), default "random"
        Random weights, the planted ground state, or a given configuration in
        ``{-1, +1}``.
    ti_points, ti_sweeps : int, default 0 and 100
        When ``ti_points > 0``, also estimate ``f`` and ``s`` by thermodynamic
        integration on a ``ti_points`` grid of ``(0, beta]`` with ``ti_sweeps``
        (>= 2) sweeps per point (a separate annealed chain).

    Returns
    -------
    MCResult

    Raises
    ------
    DeepglassError
        ``model`` not a :class:`RAPModel` or without active path, an invalid
        ``beta``, ``method``, ``seed``, sweep count or ``start``.

    Notes
    -----
    Cost O(sweeps N_w) proposals plus O(d_i) per accepted flip.

    References
    ----------
    SPEC §6 (Monte Carlo); paper 001 Appendix B.
    """
    check_type(model, RAPModel, "model")
    beta = check_beta(beta)
    heat_bath = _check_method(method)
    sweeps = _check_sweeps("sweeps", sweeps, 2)
    equilibration = min(sweeps // 2, sweeps - 2) if equilibration is None else _check_sweeps(
        "equilibration", equilibration, 0)
    if equilibration >= sweeps - 1:
        raise DeepglassError(f"equilibration ({equilibration}) must leave >= 2 sampling sweeps of {sweeps}")
    ti_points = check_ti_points(ti_points)
    if ti_points:
        ti_sweeps = _check_sweeps("ti_sweeps", ti_sweeps, 2)
    nw = model.n_weights
    if nw == 0:
        raise DeepglassError("the instance has no active path (increase N or the probabilities)")
    quench_seed, ti_seed = spawn_seeds(seed, 2)
    t0 = time.perf_counter()
    chain = _Chain(model, start, quench_seed, heat_bath)
    trace = np.empty(sweeps, dtype=np.int64)
    n_sample = sweeps - equilibration
    acc_a = np.zeros(nw)
    acc_b = np.zeros(nw)
    accepted = chain.run(beta, equilibration, trace, 0)
    accepted += chain.run(beta, n_sample, trace, equilibration, acc_a, acc_b, n_sample // 2)
    seconds = time.perf_counter() - t0
    e_trace = trace / nw
    samples = e_trace[equilibration:]
    half = n_sample // 2
    mA = acc_a / half
    mB = acc_b / (n_sample - half)
    ea, eb = samples[:half], samples[half:]
    ea_err, eb_err = _batch_stderr(ea, 10), _batch_stderr(eb, 10)
    diff = abs(ea.mean() - eb.mean())
    if np.isfinite(ea_err) and np.isfinite(eb_err):
        converged = bool(diff <= 3.0 * math.hypot(ea_err, eb_err) + 1e-12)
    else:
        converged = False
    res = MCResult(
        beta=beta, method=method, start=start if isinstance(start, str) else "given",
        seed=int(seed), sweeps=sweeps, equilibration=equilibration,
        energy=float(samples.mean()), energy_err=_batch_stderr(samples),
        q=float(np.mean(mA * mB)), m_planted=float(np.mean(0.5 * (mA + mB) * model.planted)),
        converged=converged, acceptance=accepted / (sweeps * nw), alpha=model.alpha,
        n_weights=nw, n_factors=model.n_factors, seconds=seconds,
        flips_per_second=sweeps * nw / seconds if seconds > 0 else math.nan,
        e_trace=e_trace, w=chain.w.copy())
    if ti_points > 0:
        ti = thermodynamic_integration(model, beta, n_points=ti_points,
                                       sweeps_per_point=ti_sweeps, method=method,
                                       seed=ti_seed)
        res.free_energy = ti["free_energy"]
        # entropy of the sampled state: s = beta (e - f)
        res.entropy = beta * (res.energy - res.free_energy)
    return res


def check_ti_points(n, name: str = "ti_points") -> int:
    """``n`` as the points of an optional thermodynamic integration grid: 0 (none)
    or an integer >= 3 (as :func:`check_mc_sweeps` for a quench); 1 or 2 give one
    point at ``beta``, a single trapezoid from 0 (an entropy of -0.54 where 0.11 is
    right)."""
    n = check_int(name, n, 0)
    if 0 < n < 3:
        raise DeepglassError(f"{name} must be 0 (no thermodynamic integration) or >= 3, got {n}")
    return n


def _ti_grid(beta: float, n: int) -> np.ndarray:
    """At most ``n`` sorted values in ``(0, beta]`` ending at ``beta``: ``n - n // 2``
    uniform in ``tanh b``, ``n // 2`` uniform in ``b``."""
    top = min(math.tanh(beta), 1.0 - 1e-9)
    k = n - n // 2
    soft = np.arctanh(np.linspace(top / k, top, k))
    even = np.linspace(0.0, beta, n // 2 + 1)[1:]
    return np.unique(np.concatenate([soft[soft < beta], even, [beta]]))


def thermodynamic_integration(model: RAPModel, beta: float, *, n_points: int = 20,
                              sweeps_per_point: int = 100, method: str = "metropolis",
                              seed: int = 0) -> dict:
    """Free energy per weight by thermodynamic integration along slow annealing.

    ``-beta f(beta) = ln 2 - int_0^beta e(b) db`` (exact identity; ``e(0) = 0``),
    with ``e(b)`` measured on a grid of ``n_points`` values in ``(0, beta]``
    (mean over the second half of ``sweeps_per_point`` sweeps at each point,
    the chain carried from one point to the next) and the trapezoid rule.  Half
    the grid is uniform in ``tanh b`` (where ``e`` changes: the paramagnetic
    ``e = -alpha tanh b``), half uniform in ``b``: a uniform grid alone spaced
    ``beta / n_points`` apart at large ``beta`` (``beta = 100``: entropy -1.3
    for an exact 0.28).  It follows the branch the annealing follows: across a first-order
    transition that is the metastable (paramagnetic) branch until it decays.
    Cost O(n_points sweeps_per_point N_w) proposals.

    Parameters
    ----------
    model : RAPModel
        With at least one active path.
    beta : float
        Target inverse temperature, finite and > 0.
    n_points : int, default 20
        Grid points, >= 3 (``ti_points`` of :func:`run_mc`).
    sweeps_per_point : int, default 100
        Sweeps per point, >= 2 (``ti_sweeps`` of :func:`run_mc`).
    method : {"metropolis", "heatbath"}, default "metropolis"
    seed : int, default 0
        Seed of the chain (non-negative).

    Returns
    -------
    dict
        ``free_energy`` and ``entropy`` (floats, per weight; the entropy
        ``beta (e(beta) - f)`` uses the last grid energy), ``betas`` and
        ``energies`` (the grid with ``0`` prepended, and ``e`` on it).

    Raises
    ------
    DeepglassError
        An invalid ``beta``, count, ``method`` or ``seed``, or an instance
        without active path.
    """
    beta = check_beta(beta)
    n = check_ti_points(_check_sweeps("n_points", n_points, 1), "n_points")
    spp = _check_sweeps("sweeps_per_point", sweeps_per_point, 2)
    heat_bath = _check_method(method)
    nw = model.n_weights
    if nw == 0:
        raise DeepglassError("the instance has no active path (increase N or the probabilities)")
    chain = _Chain(model, "random", seed, heat_bath)
    grid = _ti_grid(beta, n)
    trace = np.empty(spp, dtype=np.int64)
    es = []
    for b in grid:
        chain.run(float(b), spp, trace, 0)
        es.append(trace[spp // 2:].mean() / nw)
    bs = np.concatenate([[0.0], grid])
    es = np.concatenate([[0.0], es])
    minus_bf = math.log(2.0) - float(np.trapezoid(es, bs))
    f = -minus_bf / beta
    s = beta * (es[-1] - f)
    if s < 0:
        # the entropy of +-1 weights is >= 0: the integral missed e(b)'s shape
        warnings.warn(f"thermodynamic integration gave a negative entropy per weight "
                      f"({s:.3g}), which +-1 weights cannot have: the grid of {n} points or "
                      f"its {spp} sweeps per point are too coarse at beta = {beta:g} "
                      "(raise ti_points / ti_sweeps)", stacklevel=2)
    return {"free_energy": f, "entropy": s, "betas": bs, "energies": es}

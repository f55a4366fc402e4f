"""Belief propagation (replica-symmetric cavity method) for the RAP model.

Implements SPEC section 6 / paper 001 Appendix A (Eqs. 5-10).  With
``t_a = tanh(beta xi_a)``, the messages on the ``3 M`` factor-weight edges are

    u_{a->i} = atanh( t_a prod_{j in a, j != i} m_{j->a} )
    m_{i->a} = tanh( sum_{b in i, b != a} u_{b->i} ),   m_i = tanh( sum_{b in i} u_{b->i} ).

All edges are updated at once (synchronous, "flooding" schedule) with numpy: the
three columns of the ``M x 3`` message array are the three populations, the full
fields ``H_i = sum_b u_{b->i}`` are one segment sum (``np.bincount`` over the edge
-> weight index), and the cavity fields are ``H_i - u_{a->i}``.  One iteration is
O(M) time and memory.  Damping mixes old and new factor messages,
``u <- d u_old + (1 - d) u_new``.

The Bethe free energy, energy, entropy and overlap of a fixed point follow SPEC
section 6; the per-factor and per-weight terms are evaluated in log space
(``logaddexp``), so they stay finite for degrees in the thousands (the ``W3``
weights) and for fully polarized messages.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DeepglassError, check_seed, check_type
from .model import RAPModel

__all__ = ["BPResult", "run_bp", "bethe_observables", "check_beta", "paramagnetic", "bp_table",
           "WINDOW"]

#: iterations per window of the convergence monitor of :func:`run_bp`
WINDOW = 50
#: largest damping "auto" reaches
MAX_DAMPING = 0.95

_ONE_MINUS = float(np.nextafter(1.0, 0.0))
_LN2 = math.log(2.0)


def check_beta(beta: float) -> float:
    """Validate an inverse temperature (a finite real number > 0; not a string
    or a bool, which ``float`` would take)."""
    if isinstance(beta, (bool, str, bytes)) or not isinstance(beta, numbers.Real):
        raise DeepglassError(f"beta must be a number, got {beta!r}")
    b = float(beta)
    if not (math.isfinite(b) and b > 0):
        raise DeepglassError(f"beta must be finite and > 0, got {beta!r}")
    return b


def check_number(name: str, v, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """``v`` as a finite float within ``[lo, hi]`` (``(`` / ``)`` where open), or a
    one-line :class:`DeepglassError` naming ``name``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise DeepglassError(f"{name} must be a number, got {v!r}")
    x = float(v)
    bad = not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo)) or \
        (hi is not None and (x >= hi if hi_open else x > hi))
    if bad:
        rng = f"{'(' if lo_open else '['}{'-inf' if lo is None else f'{lo:g}'}, " \
              f"{'inf' if hi is None else f'{hi:g}'}{')' if hi_open or hi is None else ']'}"
        raise DeepglassError(f"{name} must be a finite number in {rng}, got {v!r}")
    return x


def check_int(name: str, v, minimum: int) -> int:
    """``v`` as an ``int >= minimum`` (a Python or NumPy integer, or a float
    equal to one), or a one-line :class:`DeepglassError` naming ``name``."""
    ok = not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.integer, np.floating))
    if ok and isinstance(v, (float, np.floating)):
        ok = math.isfinite(v) and float(v).is_integer()
    if not ok or int(v) < minimum:
        raise DeepglassError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


@dataclass
class BPResult:
    """Outcome of :func:`run_bp`; all thermodynamic quantities are per weight.

    Attributes
    ----------
    beta : float
        Inverse temperature of the run.
    start : str
        ``"random"``, ``"polarized"``, ``"zero"`` or ``"given"`` (the initial messages).
    converged : bool
        ``max |m_{i->a}(t) - m_{i->a}(t-1)| < tol`` reached within ``max_iter``.
    status : str
        ``"converged"``; ``"stalled"`` (the residual does not fall: its maximum
        over the last window of :data:`WINDOW` iterations is not below the one of
        the window before, oscillating or not -- not a fixed point, whatever the
        iteration count); ``"slow"`` (still falling when ``max_iter`` ran out:
        critical slowing down near a spinodal); ``"non-finite"``.
    oscillating : bool
        Not converged and the residual does not decay (its minimum over the last
        half of the final 200-step window is not below half its minimum over the
        first half), with either a period-2 cycle (``|m(t) - m(t-2)| <
        |m(t) - m(t-1)| / 10``) or a residual that rises in >= 20% of the steps.
        A slowly converging run (critical slowing down near a spinodal) is neither
        converged nor oscillating.
    iterations : int
        Iterations performed.
    residual : float
        Last ``max |Delta m_{i->a}|``.
    free_energy, energy, entropy : float
        Bethe ``f``, ``e`` and ``s = beta (e - f)`` of the last messages (meaningful
        only when ``converged``; NaN if the messages became non-finite).
    q : float
        ``mean(m_i^2)``.
    magnetization : float
        ``mean(m_i)``.
    m_planted : float
        ``mean(m_i w*_i)`` against the planted ground state (gauge dependent).
    alpha : float
        ``M / N_w`` of the instance.
    n_weights, n_factors : int
        ``N_w`` and ``M``.
    damping : float
        The damping in force at the end (raised by ``damping="auto"``).
    q_by_population : dict
        ``{l: mean(m_i^2) over population l}`` for the populations present.
    m : ndarray (N_w,)
        Full magnetizations ``m_i``.
    messages : ndarray (M, 3)
        Final cavity magnetizations ``m_{i->a}``.
    residuals : ndarray
        Residual after every iteration.

    References
    ----------
    SPEC §6; paper 001 Appendix A.
    """

    beta: float
    start: str
    converged: bool
    oscillating: bool
    iterations: int
    residual: float
    free_energy: float
    energy: float
    entropy: float
    q: float
    magnetization: float
    m_planted: float
    alpha: float
    n_weights: int
    n_factors: int
    damping: float = 0.0
    status: str = ""
    q_by_population: dict = field(default_factory=dict)
    m: np.ndarray = field(default=None, repr=False)
    messages: np.ndarray = field(default=None, repr=False)
    residuals: np.ndarray = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """Scalar results (JSON-ready)."""
        d = {k: getattr(self, k) for k in (
            "beta", "start", "alpha", "n_weights", "n_factors", "energy", "entropy",
            "free_energy", "q", "magnetization", "m_planted", "converged", "status",
            "oscillating", "iterations", "residual", "damping")}
        for l, v in self.q_by_population.items():
            d[f"q_w{l}"] = v
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}


def _cavity_products(m: np.ndarray) -> np.ndarray:
    """For each factor and slot, the product of the other two cavity magnetizations."""
    out = np.empty_like(m)
    np.multiply(m[:, 1], m[:, 2], out=out[:, 0])
    np.multiply(m[:, 0], m[:, 2], out=out[:, 1])
    np.multiply(m[:, 0], m[:, 1], out=out[:, 2])
    return out


def _factor_messages(m: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``u_{a->i} = atanh(t_a prod_{j != i} m_{j->a})`` for all edges (M x 3)."""
    arg = _cavity_products(m)
    arg *= t[:, None]
    np.clip(arg, -_ONE_MINUS, _ONE_MINUS, out=arg)
    return np.arctanh(arg, out=arg)


def _fields(model: RAPModel, u: np.ndarray) -> np.ndarray:
    """Full fields ``H_i = sum_{b in i} u_{b->i}`` (segment sum over edges)."""
    # float64 also for an instance without factors (bincount of nothing is int64)
    return np.bincount(model.factors.ravel(), weights=u.ravel(),
                       minlength=model.n_weights).astype(np.float64, copy=False)


def bethe_observables(model: RAPModel, beta: float, m_cav: np.ndarray) -> dict:
    """Bethe free energy, energy, entropy and magnetizations of cavity messages.

    Implements, per weight (``N_w`` weights, ``k = 3``):

        -beta f = (1/N_w) (sum_i ln Z_i - 2 sum_a ln Z_a),
        Z_a = cosh(beta) (1 + t_a Q_a),  Q_a = prod_{i in a} m_{i->a},
        Z_i = prod_{b in i} cosh(beta)(1 + t_b M_{b\\i}) + prod_{b in i} cosh(beta)(1 - t_b M_{b\\i}),
        e = -(1/N_w) sum_a (xi_a Q_a + tanh beta) / (1 + xi_a Q_a tanh beta),
        s = beta (e - f),  m_i = tanh(sum_b atanh(t_b M_{b\\i})),

    each ``ln Z`` written as ``beta`` per factor plus a remainder, so that ``f``,
    ``e`` and ``s`` hold no difference of two ``O(beta)`` numbers (accurate at
    any finite ``beta``).

    Each ``cosh(beta)(1 + w t M)`` is evaluated as
    ``(e^beta (1 + w xi M) + e^-beta (1 - w xi M)) / 2`` through ``logaddexp``.
    O(M) time.

    Parameters
    ----------
    model : RAPModel
    beta : float
        Inverse temperature, finite and > 0.
    m_cav : ndarray (M, 3)
        Cavity magnetizations ``m_{i->a}``, columns the populations (as
        ``model.factors``).

    Returns
    -------
    dict
        ``free_energy``, ``energy``, ``entropy`` (floats, per weight) and ``m``
        (ndarray ``(N_w,)``, full magnetizations; 0 where contradictory
        messages leave the marginal undefined).

    References
    ----------
    SPEC §6 (Bethe free energy); paper 001 Appendix A.
    """
    beta = check_beta(beta)
    M, nw = model.n_factors, model.n_weights
    m_cav = np.asarray(m_cav, dtype=np.float64)
    if m_cav.shape != (M, 3):
        raise DeepglassError(f"m_cav must have shape ({M}, 3), got {m_cav.shape}")
    xi = model.xi.astype(np.float64)
    tb = math.tanh(beta)
    # Every ln Z is beta (per factor) plus a remainder r of order 1: ln Z_a = beta
    # + r_a, ln Z_i = beta d_i + r_i (sum d_i = 3M).  So -beta f N_w = beta M
    # + sum r_i - 2 sum r_a, and s = beta (e - f) = (beta sum_a (1 - e_a) + sum r_i
    # - 2 sum r_a) / N_w with 1 - e_a = (1 - xi Q)(1 - tanh beta) / (1 + xi Q tanh beta):
    # no difference of two O(beta) numbers (beta = 1e20 gave s = 1.8e5)
    one_minus_tb = 2.0 * math.exp(-2.0 * beta) / (1.0 + math.exp(-2.0 * beta))
    with np.errstate(divide="ignore", invalid="ignore"):
        Q = m_cav[:, 0] * m_cav[:, 1] * m_cav[:, 2]
        xq = xi * Q
        r_a = np.logaddexp(np.log1p(xq), -2.0 * beta + np.log1p(-xq)) - _LN2
        xm = _cavity_products(m_cav) * xi[:, None]
        c_plus = np.logaddexp(np.log1p(xm), -2.0 * beta + np.log1p(-xm)) - _LN2
        c_minus = np.logaddexp(np.log1p(-xm), -2.0 * beta + np.log1p(xm)) - _LN2
        flat = model.factors.ravel()
        s_plus = np.bincount(flat, weights=c_plus.ravel(), minlength=nw)
        s_minus = np.bincount(flat, weights=c_minus.ravel(), minlength=nw)
        rest = np.logaddexp(s_plus, s_minus).sum() - 2.0 * r_a.sum()
        excess = np.sum((1.0 - xq) * one_minus_tb / (1.0 + xq * tb))   # sum_a (1 - e_a)
        m_full = np.tanh(0.5 * (s_plus - s_minus))
    # where both sums are -inf (contradictory messages) the marginal is undefined
    m_full = np.nan_to_num(m_full, nan=0.0)
    return {"free_energy": float(-(M + rest / beta) / nw), "energy": float((excess - M) / nw),
            "entropy": float((beta * excess + rest) / nw), "m": m_full}


def _initial_messages(model: RAPModel, start, rng: np.random.Generator,
                      scale: float) -> tuple[np.ndarray, str]:
    M = model.n_factors
    if isinstance(start, np.ndarray):
        m = np.asarray(start, dtype=np.float64)
        if m.shape != (M, 3):
            raise DeepglassError(f"initial messages must have shape ({M}, 3), got {m.shape}")
        return np.clip(m, -1.0, 1.0).copy(), "given"
    if start == "random":
        return rng.uniform(-scale, scale, size=(M, 3)), "random"
    if start == "polarized":
        return (scale * model.planted[model.factors]).astype(np.float64), "polarized"
    if start == "zero":
        return np.zeros((M, 3)), "zero"
    raise DeepglassError(f"start must be 'random', 'polarized' or 'zero', got {start!r}")


def _is_oscillating(res: np.ndarray, d1: float, d2: float) -> bool:
    """Non-decaying residual over the last window, with a period-2 cycle or a
    residual that rises in >= 20% of the steps (see :class:`BPResult`)."""
    w = min(len(res), 200)
    if w < 20:
        return False
    tail = res[-w:]
    first, last = tail[: w // 2], tail[w // 2:]
    if last.min() <= 0.5 * first.min():
        return False                      # still decaying: slow, not oscillating
    period2 = d1 > 0 and d2 < 0.1 * d1
    rises = float(np.mean(np.diff(tail) > 0))
    return bool(period2 or rises >= 0.2)


def _falling(res: list, w: int) -> bool:
    """Whether the residual fell over the last window of ``w`` iterations.

    Compares the maxima of the last two windows (a geometric decay lowers both
    the maximum and the minimum; an oscillation or a chaotic residual keeps its
    maximum), requiring a relative drop of 1e-3 so round-off does not count.
    """
    last, prev = max(res[-w:]), max(res[-2 * w:-w])
    return last < (1.0 - 1e-3) * prev


def run_bp(model: RAPModel, beta: float, *, start="random", damping: float | str = "auto",
           tol: float = 1e-6, max_iter: int = 3000, seed: int | None = 0,
           init_scale: float = 1.0) -> BPResult:
    """Iterate the RS cavity equations to a fixed point (SPEC section 6, paper Eq. 9).

    Parameters
    ----------
    model : RAPModel
    beta : float
        Inverse temperature, finite and > 0.
    start : {"random", "polarized", "zero"} or ndarray (M, 3), default "random"
        Initial cavity magnetizations ``m_{i->a}``: uniform in
        ``[-init_scale, init_scale]`` ("random"), ``init_scale`` times the planted
        ground state ("polarized", the spin-glass branch), all zero (the
        paramagnetic fixed point), or given.
    damping : float in [0, 1) or "auto", default "auto"
        ``u <- damping u_old + (1 - damping) u_new`` (damping does not move the
        fixed points).  ``"auto"`` starts undamped and, whenever the residual
        has not fallen over a window of :data:`WINDOW` iterations (oscillating or
        not), raises the damping (0 -> 0.5 -> 0.75 -> ... <= 0.95) and waits two
        windows before judging again; the final value is ``BPResult.damping``.
    tol : float, default 1e-6
        Convergence threshold on ``max |Delta m_{i->a}|``, > 0.
    max_iter : int, default 3000
        Iteration cap, >= 1.  The run stops earlier, as ``"stalled"``, once the residual
        has not fallen over a window at the largest damping (fixed damping: at
        once): it will not converge.  A residual still falling at the cap is
        ``"slow"``.
    seed : int or None, default 0
        Seed (non-negative) of the random start; None: fresh entropy.
    init_scale : float in [0, 1], default 1.0
        Scale of the "random" and "polarized" starts.

    Returns
    -------
    BPResult
        ``converged`` / ``oscillating`` tell whether the numbers are a fixed point;
        they are always reported for the last messages.  An instance without
        active path (no message: the phase scan's continuation reaches such
        dilutions) converges at once with NaN free energy, energy and entropy.

    Raises
    ------
    DeepglassError
        ``model`` not a :class:`RAPModel`, an invalid ``beta``, ``damping``,
        ``tol``, ``max_iter``, ``init_scale``, ``seed`` or ``start`` (given
        messages of another shape than ``(M, 3)``).

    Notes
    -----
    O(M) per iteration in time and memory (``~200 B`` per factor).

    References
    ----------
    SPEC §6; paper 001 Appendix A (Eqs. 5-10).

    Examples
    --------
    BP is exact on a tree (two paths sharing ``w3_0``; path ``(i, j, k)`` uses
    ``w1_ij, w2_jk, w3_k``):

    >>> from deepglass.rap import RAPModel, exact_enumeration
    >>> tree = RAPModel.from_paths(2, [(0, 0, 0), (1, 1, 0)], x=[1, -1])
    >>> tree.is_forest(), int(tree.degree.max())
    (True, 2)
    >>> r = run_bp(tree, 1.0)
    >>> r.status, round(r.free_energy - exact_enumeration(tree, 1.0)["free_energy"], 9)
    ('converged', 0.0)
    """
    check_type(model, RAPModel, "model")
    beta = check_beta(beta)
    auto = isinstance(damping, str)
    if auto and damping != "auto":
        raise DeepglassError(f"damping must be a number in [0, 1) or 'auto', got {damping!r}")
    if auto:
        damping = 0.0
    else:
        check_number("damping", damping, 0.0, 1.0, hi_open=True)
    damping = float(damping)
    tol = check_number("tol", tol, 0.0, lo_open=True)
    max_iter = check_int("max_iter", max_iter, 1)
    init_scale = check_number("init_scale", init_scale, 0.0, 1.0)
    rng = np.random.default_rng(None if seed is None else check_seed(seed))
    m, start_name = _initial_messages(model, start, rng, init_scale)
    t = model.xi.astype(np.float64) * math.tanh(beta)
    u = _factor_messages(m, t)
    m_back = [m, m]          # m(t-1), m(t-2)
    residuals = []
    converged = False
    it = 0
    finite = True
    stalled = False
    judge_from = 2 * WINDOW  # first iteration at which the residual is judged
    for it in range(1, int(max_iter) + 1):
        if it > 1:
            u_new = _factor_messages(m, t)
            if damping > 0:
                u_new *= 1.0 - damping
                u_new += damping * u
            u = u_new
        H = _fields(model, u)
        m_new = H[model.factors]
        m_new -= u
        np.tanh(m_new, out=m_new)
        res = float(np.max(np.abs(m_new - m))) if m.size else 0.0
        m_back = [m, m_back[0]]
        m = m_new
        residuals.append(res)
        if not math.isfinite(res):
            finite = False
            break
        if res < tol:
            converged = True
            break
        if it % WINDOW == 0 and it >= judge_from and not _falling(residuals, WINDOW):
            if auto and damping < MAX_DAMPING:
                damping = 0.5 if damping == 0.0 else min(MAX_DAMPING,
                                                         damping + 0.5 * (1.0 - damping))
                judge_from = it + 2 * WINDOW
            else:
                stalled = True
                break
    residuals = np.asarray(residuals)
    if finite and not converged and m.size:
        d1 = residuals[-1]
        d2 = float(np.max(np.abs(m - m_back[1])))
        oscillating = _is_oscillating(residuals, d1, d2)
    else:
        oscillating = False
    if finite:
        obs = bethe_observables(model, beta, m)
        mi = obs["m"]
    else:
        obs = {"free_energy": math.nan, "energy": math.nan, "entropy": math.nan}
        mi = np.full(model.n_weights, math.nan)
    if converged:
        status = "converged"
    elif not finite:
        status = "non-finite"
    elif stalled or (len(residuals) >= 4 and not _falling(
            list(residuals), min(WINDOW, len(residuals) // 2))):
        status = "stalled"
    else:
        status = "slow"
    q_pop = {l: float(np.mean(mi[model.population == l] ** 2))
             for l in (1, 2, 3) if np.any(model.population == l)}
    nw = max(model.n_weights, 1)
    return BPResult(
        beta=beta, start=start_name, converged=converged, oscillating=oscillating,
        iterations=it, residual=float(residuals[-1]) if residuals.size else 0.0,
        free_energy=obs["free_energy"], energy=obs["energy"], entropy=obs["entropy"],
        q=float(np.sum(mi ** 2) / nw), magnetization=float(np.sum(mi) / nw),
        m_planted=float(np.sum(mi * model.planted) / nw), alpha=model.alpha,
        n_weights=model.n_weights, n_factors=model.n_factors, damping=damping,
        status=status, q_by_population=q_pop,
        m=mi, messages=m, residuals=residuals)


def paramagnetic(alpha: float, beta: float) -> dict:
    """Closed forms of the paramagnetic solution (all ``m = 0``), per weight.

    ``e = -alpha tanh(beta)``, ``s = ln 2 + alpha (ln cosh beta - beta tanh beta)``,
    ``f = e - s / beta`` (SPEC §6: an exact check of BP).

    Parameters
    ----------
    alpha : float
        ``M / N_w``, finite and >= 0.
    beta : float
        Inverse temperature, finite and > 0.

    Returns
    -------
    dict
        ``energy``, ``entropy``, ``free_energy`` (floats).

    Raises
    ------
    DeepglassError
        An invalid ``alpha`` or ``beta``.

    Examples
    --------
    >>> {k: round(v, 4) for k, v in paramagnetic(1.0, 1.0).items()}
    {'energy': -0.7616, 'entropy': 0.3653, 'free_energy': -1.1269}
    """
    beta = check_beta(beta)
    alpha = check_number("alpha", alpha, 0.0)
    e = -alpha * math.tanh(beta)
    # ln cosh b - b tanh b = ln(1 + q) - ln 2 + 2 b q / (1 + q), q = e^(-2b): no overflow
    q = math.exp(-2.0 * beta)
    s = _LN2 + alpha * (math.log1p(q) - _LN2 + 2.0 * beta * q / (1.0 + q))
    return {"energy": e, "entropy": s, "free_energy": e - s / beta}


def bp_table(results: list[BPResult], **extra) -> pd.DataFrame:
    """Tidy table, one row per BP result, with ``extra`` constant columns."""
    return pd.DataFrame([{**extra, **r.to_dict()} for r in results])

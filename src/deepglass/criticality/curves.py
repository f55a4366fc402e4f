"""Mean-field curves over temperature and field, and the critical exponents
fitted on them (SPEC §7, paper 002).

:func:`default_grid` places temperatures around ``T_c``; :func:`mean_field_curves`
solves :mod:`.meanfield`'s equations along it (continuation from the ordered
pattern); :func:`critical_exponents` fits ``beta`` (the magnetization's and,
``beta_q``, the order parameter ``sqrt(q)``'s), ``gamma`` (the susceptibility's
above and, ``gamma_below``, below ``T_c``; ``gamma_u`` the staggered one's) on
the curves, against their mean-field values.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd
import scipy.stats

from ..errors import DeepglassError
from .couplings import coupling_operator
from .meanfield import _number, ordered_pattern, solve_mean_field, susceptibility

__all__ = ["default_grid", "mean_field_curves", "critical_exponents"]

# ----------------------------------------------------------------------------------
# Curves and exponents
# ----------------------------------------------------------------------------------
def default_grid(T_c: float, n_t: int = 12, t_min: float = 1e-3, t_max: float = 0.3,
                 n_broad: int = 12) -> np.ndarray:
    """Temperatures for a scan: ``T_c (1 +/- t)`` with ``t`` log-spaced in
    ``[t_min, t_max]`` (for exponent fits) plus a broad linear grid on
    ``[0.1 T_c, 2 T_c]``; sorted, positive, without ``T_c`` itself.

    The grid is built in ``T / T_c`` (points closer than 1e-12 relative are
    one point), so it scales with ``T_c``: mean field depends only on ``T / T_c``.

    Parameters
    ----------
    T_c : float
        Finite and > 0 (else a :class:`DeepglassError`: no transition).
    n_t, n_broad : int, default 12
        Log-spaced ``t`` values per side and broad points; >= 0, not both 0.
    t_min, t_max : float, default 1e-3, 0.3
        ``0 < t_min <= t_max``, finite.

    Examples
    --------
    >>> default_grid(1.0, n_t=2, t_min=0.01, t_max=0.1, n_broad=3)
    array([0.1 , 0.9 , 0.99, 1.01, 1.05, 1.1 , 2.  ])
    """
    if isinstance(T_c, (bool, np.bool_)) or not isinstance(T_c, (int, float, np.integer,
                                                                np.floating)):
        raise DeepglassError(f"T_c must be a number, got {T_c!r}")
    if not np.isfinite(T_c):
        raise DeepglassError(f"T_c must be finite, got {T_c}")
    if not T_c > 0:
        raise DeepglassError(f"no mean-field transition: T_c = {T_c:.4g} <= 0")
    for name, v in (("n_t", n_t), ("n_broad", n_broad)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise DeepglassError(f"{name} must be a non-negative integer, got {v!r}")
    if not (isinstance(t_min, (int, float, np.integer, np.floating))
            and isinstance(t_max, (int, float, np.integer, np.floating))
            and 0 < t_min <= t_max < np.inf):
        raise DeepglassError(f"need 0 < t_min <= t_max (finite), got t_min = {t_min!r}, "
                             f"t_max = {t_max!r}")
    if n_t + n_broad == 0:
        raise DeepglassError("the temperature grid is empty: n_t and n_broad are both 0")
    t = np.logspace(np.log10(t_min), np.log10(t_max), n_t)
    r = np.sort(np.concatenate([1 - t, 1 + t, np.linspace(0.1, 2.0, n_broad)]))
    r = r[(r > 0) & (np.abs(r - 1) > 1e-12)]
    r = r[np.r_[True, np.diff(r) > 1e-12 * r[1:]]]
    T = T_c * r
    return T[T > 0]


def mean_field_curves(W: Any, temperatures: Iterable[float], fields: Iterable[float] = (0.0,), *,
                      with_chi: bool = True, progress=None, **solve_kw) -> pd.DataFrame:
    """Magnetization, overlap, free energy and susceptibility over (T, h).

    For every field the temperatures are visited from low to high with the previous solution as
    an extra start (continuation) besides the usual starts of :func:`solve_mean_field`.

    Parameters
    ----------
    W : couplings
        As :func:`~deepglass.criticality.couplings.coupling_operator` takes
        them (a matrix, a sparse matrix, an operator or a ``SignedGraph``).
    temperatures : iterable of float
        Positive temperatures (at least one), in any order.
    fields : iterable of float
        Finite fields ``h`` (default: 0 only).
    with_chi : bool
        Also solve for the susceptibilities ``chi`` and ``chi_u``.
    progress : callable, optional
        Called with no argument after each (T, h) point.
    **solve_kw
        Passed to :func:`solve_mean_field` (``damping``, ``tol``, ``seed``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per (T, h): ``T, h, m, abs_m, q, m_u, f, chi, chi_u, residual,
        converged, iterations, start``; ``m_u`` and ``chi_u`` are the
        magnetization and susceptibility in the gauge of the ordered state
        (``e = sign(u)``, :func:`ordered_pattern`; equal to ``m``, ``chi`` for a
        ferromagnet).

    Notes
    -----
    Cost: per point, the fixed-point and Newton iterations of :func:`solve_mean_field` (a few
    hundred products ``W x``) and, with ``with_chi``, two MINRES solves.  SPEC §7.
    """
    C = coupling_operator(W)
    temps = np.sort([_number("temperature", T, positive=True)
                     for T in np.ravel(list(temperatures))])
    fields = [_number("field", h) for h in np.ravel(list(fields))]
    if temps.size == 0 or not fields:
        raise DeepglassError(f"mean_field_curves needs at least one temperature and one field, "
                             f"got {temps.size} and {len(fields)}")
    pattern = ordered_pattern(C)
    rows = []
    for h in fields:
        prev = None
        for T in temps:
            sol = solve_mean_field(C, T, h, V0=prev, **solve_kw)
            prev = sol.V
            chi = susceptibility(C, sol) if with_chi else np.nan
            chi_u = susceptibility(C, sol, direction=pattern) if with_chi else np.nan
            rows.append({"T": T, "h": float(h), "m": sol.m, "abs_m": abs(sol.m), "q": sol.q,
                         "m_u": float(np.mean(pattern * sol.V)),
                         "f": sol.f, "chi": chi, "chi_u": chi_u, "residual": sol.residual,
                         "converged": sol.converged, "iterations": sol.iterations,
                         "start": sol.start})
            if progress is not None:
                progress()
    return pd.DataFrame(rows)


def critical_exponents(curves: pd.DataFrame, T_c: float, *, t_min: float = 1e-3,
                       t_max: float = 0.03) -> pd.DataFrame:
    """Fit the critical exponents near ``T_c`` by least squares on log-log data.

    At ``h = 0`` with reduced temperature ``t = T/T_c - 1`` and
    ``t_min <= |t| <= t_max``:

    - ``beta``: slope of ``log |m|`` against ``log |t|`` below ``T_c``
      (mean field: 1/2);
    - ``beta_q``: the same for the order parameter ``sqrt(q)``, which does not
      depend on the sign pattern of the ordered state (1/2);
    - ``gamma``: minus the slope of ``log chi`` against ``log t`` above ``T_c``
      (mean field: 1, i.e. ``chi ~ |t|^-1``);
    - ``gamma_below``: the same below ``T_c`` (1);
    - ``gamma_u``: the same as ``gamma`` for the staggered susceptibility
      ``chi_u`` (the one that diverges on a signed network, see
      :func:`susceptibility`).

    Parameters
    ----------
    curves : pandas.DataFrame
        From :func:`mean_field_curves` (columns ``T``, ``h``, ``abs_m``, ``q``,
        ``chi``, ``chi_u``).
    T_c : float
        The critical temperature (:func:`critical_temperature`), > 0.
    t_min, t_max : float
        The window of reduced temperatures ``|t|`` fitted, ``0 < t_min < t_max``.

    Returns
    -------
    pandas.DataFrame
        ``exponent, value, slope, stderr, n_points, t_min, t_max, mean_field``;
        ``value`` is NaN where fewer than 3 usable points lie in the window.
    """
    T_c = _number("T_c", T_c)
    if not T_c > 0:
        raise DeepglassError(f"no mean-field transition: T_c = {T_c:.4g} <= 0")
    t_min, t_max = _number("t_min", t_min, positive=True), _number("t_max", t_max, positive=True)
    if not t_min < t_max:
        raise DeepglassError(f"need 0 < t_min < t_max, got t_min = {t_min:g}, t_max = {t_max:g}")
    if not isinstance(curves, pd.DataFrame) or not {"T", "h", "abs_m", "q", "chi"} <= set(curves):
        raise DeepglassError("curves must be the DataFrame of mean_field_curves (columns T, h, "
                             "abs_m, q, chi)")
    df = curves[np.isclose(curves["h"], 0.0)].copy()
    df["t"] = df["T"] / T_c - 1.0
    # a relative slack keeps grid points placed exactly on the window's ends
    # (T = T_c (1 +/- t) loses the last bits of t in the round trip)
    slack = 1e-9
    win = df[(df["t"].abs() >= t_min * (1 - slack)) & (df["t"].abs() <= t_max * (1 + slack))]
    below, above = win[win["t"] < 0], win[win["t"] > 0]
    specs = [("beta", below, below["abs_m"] if len(below) else None, 1.0, 0.5),
             ("beta_q", below, np.sqrt(below["q"]) if len(below) else None, 1.0, 0.5),
             ("gamma", above, above["chi"] if len(above) else None, -1.0, 1.0),
             ("gamma_below", below, below["chi"] if len(below) else None, -1.0, 1.0)]
    if "chi_u" in df:
        specs.append(("gamma_u", above, above["chi_u"] if len(above) else None, -1.0, 1.0))
    rows = []
    for name, part, y, sign, mf in specs:
        slope = stderr = value = np.nan
        npts = 0
        if y is not None:
            y = np.asarray(y, dtype=float)
            x = np.abs(part["t"].to_numpy())
            ok = np.isfinite(y) & (y > 0)
            npts = int(ok.sum())
            if npts >= 3:
                fit = scipy.stats.linregress(np.log(x[ok]), np.log(y[ok]))
                slope, stderr = float(fit.slope), float(fit.stderr)
                value = sign * slope
        rows.append({"exponent": name, "value": value, "slope": slope, "stderr": stderr,
                     "n_points": npts, "t_min": t_min, "t_max": t_max, "mean_field": mf})
    return pd.DataFrame(rows)

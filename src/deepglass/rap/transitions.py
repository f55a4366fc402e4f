"""Transitions of the RAP phase diagram read from grid tables (SPEC section 6).

:func:`aggregate_points` averages the tidy per-instance rows over disorder
samples; :func:`find_transitions` locates, per ``(beta, a2)``, the free-energy
crossing of the two BP branches, the end of the ordered branch (spinodal) and
the hysteresis window at the grid's resolution.  :func:`deepglass.rap.phase.scan_phase`
refines the first two by bisection on the instances themselves
(:mod:`deepglass.rap.continuation`) and uses these for the grid-level
quantities.  Cost: O(rows log rows) (one group-by).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import DeepglassError

__all__ = ["aggregate_points", "find_transitions"]


def aggregate_points(points: pd.DataFrame) -> pd.DataFrame:
    """Means and standard errors over disorder samples per (beta, a2, p, solver, branch)."""
    keys = ["beta", "a2", "p", "solver", "branch"]
    cols = [c for c in ("energy", "entropy", "free_energy", "q", "alpha", "iterations")
            if c in points]
    g = points.groupby(keys, sort=True)
    mean = g[cols].mean()
    err = g[cols].sem(ddof=1).fillna(0.0).add_suffix("_sem")
    extra = g.agg(samples=("sample", "size"), converged=("converged", "mean"))
    return pd.concat([mean, err, extra], axis=1).reset_index()


def _bracket_mid(lo: float, hi: float) -> float:
    return 0.5 * (lo + hi)


def find_transitions(points: pd.DataFrame, q_threshold: float = 0.05,
                     f_tol: float = 1e-7) -> pd.DataFrame:
    """Transition point, spinodal and hysteresis window per (beta, a2), from grid tables.

    Resolution is the grid's: :func:`scan_phase` refines these by bisection on
    the instances themselves; this function serves tables read from elsewhere
    and the grid-level quantities (hysteresis window) of a scan.

    Uses the sample means of the two BP branches (see module docstring), at the
    grid points where BP converged on every sample of both branches
    (``n_unconverged`` counts the points left out).

    Parameters
    ----------
    points : pandas.DataFrame
        The ``points`` table of a scan (columns ``beta, a2, p, solver, branch,
        sample, free_energy, q, converged``, and ``energy``, ``entropy``);
        only ``solver == "bp"`` rows with ``branch`` "random" / "polarized" are used.
    q_threshold : float, default 0.05
        The polarized branch is ordered where ``q > q_threshold``; the branches
        differ (hysteresis) where their ``q`` differ by more.
    f_tol : float, default 1e-7
        Free-energy differences within ``f_tol`` have no sign.

    Returns
    -------
    pandas.DataFrame
        One row per ``(beta, a2)``: ``beta, a2, n_unconverged, p_c, p_c_lo,
        p_c_hi, method, p_spinodal, p_sp_lo, p_sp_hi, hysteresis_low,
        hysteresis_high, hysteresis_width, low_censored, entropy_jump,
        energy_jump, q_ordered_end`` (fewer columns where fewer than two usable
        points: method ``"none"``).  ``method``: ``"crossing"`` (``p_c``
        interpolated where ``Delta f`` changes sign), ``"merge"`` (the
        branches meet), ``"branch-end"`` (the ordered branch ends while
        lower), ``"above-scan"`` (still lower at the largest ``p``; ``p_c``
        NaN) or ``"none"`` (never lower; ``p_c`` NaN).  :func:`scan_phase`'s
        continuation also reports ``"below-scan"`` (already higher at the
        smallest ``p``: ``p_c`` below the scan, NaN).

    References
    ----------
    SPEC §6 (phase diagram); paper 001 Fig. 3.
    """
    need = {"beta", "a2", "p", "solver", "branch", "sample", "free_energy", "q", "converged"}
    if not isinstance(points, pd.DataFrame) or not need <= set(points.columns):
        missing = sorted(need - set(getattr(points, "columns", ())))
        raise DeepglassError(f"points must be a scan's points table (pandas.DataFrame); "
                             f"missing columns: {', '.join(missing)}")
    bp = aggregate_points(points[points.solver == "bp"])
    out = []
    for (beta, a2), grp in bp.groupby(["beta", "a2"], sort=True):
        r = grp[grp.branch == "random"].set_index("p").sort_index()
        s = grp[grp.branch == "polarized"].set_index("p").sort_index()
        ps = np.array(sorted(set(r.index) & set(s.index)))
        row = {"beta": beta, "a2": a2}
        if ps.size < 2:
            out.append({**row, "method": "none"})
            continue
        fr, fs = r.loc[ps, "free_energy"].to_numpy(), s.loc[ps, "free_energy"].to_numpy()
        qr, qs = r.loc[ps, "q"].to_numpy(), s.loc[ps, "q"].to_numpy()
        # a point counts only where BP converged on every sample of both branches
        ok = (r.loc[ps, "converged"].to_numpy() == 1.0) & (s.loc[ps, "converged"].to_numpy() == 1.0)
        row["n_unconverged"] = int((~ok).sum())
        ps, fr, fs, qr, qs = ps[ok], fr[ok], fs[ok], qr[ok], qs[ok]
        if ps.size < 2:
            out.append({**row, "method": "none"})
            continue
        df = fs - fr
        ordered = (qs > q_threshold) & np.isfinite(df)
        differ = (np.abs(qs - qr) > q_threshold)
        # spinodal: end of the ordered polarized branch (first contiguous run from below)
        if not ordered.any():
            out.append({**row, "method": "none", "low_censored": False})
            continue
        first = int(np.argmax(ordered))
        last = first
        while last + 1 < ps.size and ordered[last + 1]:
            last += 1
        if last + 1 < ps.size:
            sp_lo, sp_hi = ps[last], ps[last + 1]
        else:
            sp_lo, sp_hi = ps[last], math.nan
        p_sp = _bracket_mid(sp_lo, sp_hi) if math.isfinite(sp_hi) else math.nan
        # transition: where Delta f changes sign along the ordered branch
        p_c = p_c_lo = p_c_hi = math.nan
        method = "none"
        idx = np.arange(first, last + 1)
        lower = df[idx] < -f_tol
        if lower.any():
            k = idx[int(np.argmax(lower))]
            while k + 1 <= last and df[k + 1] < -f_tol:
                k += 1
            j = k + 1                              # next point with a clear sign
            while j <= last and abs(df[j]) <= f_tol:
                j += 1
            if j <= last and df[j] > f_tol:        # crosses while both branches exist
                x0, x1, y0, y1 = ps[k], ps[j], df[k], df[j]
                p_c = x0 - y0 * (x1 - x0) / (y1 - y0)
                p_c_lo, p_c_hi, method = x0, x1, "crossing"
            elif k < last:                         # the branches merge (same f)
                p_c_lo, p_c_hi = ps[k], ps[k + 1]
                p_c, method = _bracket_mid(p_c_lo, p_c_hi), "merge"
            elif last + 1 < ps.size:               # ordered branch ends before crossing
                p_c_lo, p_c_hi = ps[k], ps[k + 1]
                p_c, method = _bracket_mid(p_c_lo, p_c_hi), "branch-end"
            else:
                p_c_lo, method = ps[k], "above-scan"
        # hysteresis: contiguous region below the spinodal where the branches differ
        lo = last
        while lo - 1 >= 0 and differ[lo - 1]:
            lo -= 1
        h_lo = ps[lo] if differ[lo] else math.nan
        h_hi = p_sp if math.isfinite(p_sp) else ps[last]
        # jumps at a crossing: paramagnetic minus ordered branch, both linearly
        # interpolated at p_c (both exist there); q_ordered_end: q of the ordered
        # branch at its last point below p_c (the size of the jump otherwise)
        e_jump = s_jump = math.nan
        if method == "crossing":
            po = ps[first:last + 1]
            s_jump = (float(np.interp(p_c, ps, r.loc[ps, "entropy"].to_numpy()))
                      - float(np.interp(p_c, po, s.loc[po, "entropy"].to_numpy())))
            e_jump = (float(np.interp(p_c, ps, r.loc[ps, "energy"].to_numpy()))
                      - float(np.interp(p_c, po, s.loc[po, "energy"].to_numpy())))
        q_end = float(qs[ps <= p_c_lo][-1]) if math.isfinite(p_c_lo) else math.nan
        out.append({**row, "p_c": p_c, "p_c_lo": p_c_lo, "p_c_hi": p_c_hi, "method": method,
                    "p_spinodal": p_sp, "p_sp_lo": sp_lo, "p_sp_hi": sp_hi,
                    "hysteresis_low": h_lo, "hysteresis_high": h_hi,
                    "hysteresis_width": h_hi - h_lo if math.isfinite(h_lo) else math.nan,
                    "low_censored": bool(math.isfinite(h_lo) and h_lo <= ps[0]),
                    "entropy_jump": s_jump, "energy_jump": e_jump,
                    "q_ordered_end": q_end})
    return pd.DataFrame(out)

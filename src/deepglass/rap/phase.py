"""Phase diagram of the RAP model under dilution (SPEC section 6; paper 001 Figs. 3-4).

For one diluted population ``l`` and each ``(beta, a2)``, the dilution ``p_l`` is
scanned over a grid.  At every grid point and disorder sample one instance is
built and solved by

- BP from a small random start (the paramagnetic-like branch, ``q = 0`` where the
  paramagnet is locally stable) and from the polarized start (messages aligned
  with the planted ground state: the spin-glass branch, ``q > 0`` while it exists);
- a Monte Carlo quench from a random configuration to ``beta`` (paper Appendix B).

From the sample means of the two BP branches :func:`find_transitions` locates

- the first-order transition ``p_c`` where their Bethe free energies cross (linear
  interpolation of ``Delta f = f_polarized - f_random``); when the ordered branch
  joins the paramagnetic one (``"merge"``) or ends (``"branch-end"``) before
  ``Delta f`` changes sign, ``p_c`` is the midpoint of the bracketing grid points;
- the spinodal ``p_sp`` where the polarized branch stops being ordered;
- the hysteresis (coexistence) window ``[p_lo, p_sp]`` where the two branches are
  different fixed points; ``p_lo`` equals the scan minimum (``low_censored``)
  when the paramagnetic branch stays locally stable over the whole scan, as it
  does for a 3-body model.

In the independent (paper) construction only the product
``(1-p1)(1-p2)(1-p3)`` enters the law of an instance, so diluting any of the
three populations gives the same phase diagram; which population is diluted
matters in the correlated construction (one mask per weight).

Every grid point is one unit of a :class:`deepglass.store.RunDir`, so a run
resumes where it stopped.  Cost per point: two BP runs (O(M) per iteration) and
``mc_sweeps N_w`` Monte Carlo proposals.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import DeepglassError
from .bp import check_beta, run_bp
from .mc import METHODS, run_mc
from .model import CONSTRUCTIONS, RAPModel, check_parameters

__all__ = ["PhaseConfig", "PhaseResult", "scan_phase", "find_transitions",
           "aggregate_points", "unit_id"]


@dataclass
class PhaseConfig:
    """Everything that defines a phase-diagram scan (stored in ``config.toml``).

    ``p_values`` are the dilutions of population ``population``; the other two
    populations keep ``p_fixed``.  ``betas`` and ``a2s`` are scanned as outer
    loops (Fig. 4).  ``mc_sweeps = 0`` skips Monte Carlo.
    """

    N: int = 100
    population: int = 1
    p_values: list = field(default_factory=lambda: list(np.round(np.linspace(0.5, 0.98, 25), 4)))
    betas: list = field(default_factory=lambda: [1.0])
    a1: float = 0.5
    a2s: list = field(default_factory=lambda: [0.5])
    p_fixed: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    samples: int = 2
    construction: str = "independent"
    seed: int = 0
    damping: float | str = "auto"
    tol: float = 1e-6
    max_iter: int = 3000
    init_scale: float = 0.1
    mc_sweeps: int = 1000
    mc_method: str = "metropolis"
    q_threshold: float = 0.05
    max_memory_gb: float = 4.0

    def validate(self) -> "PhaseConfig":
        if self.population not in (1, 2, 3):
            raise DeepglassError(f"population must be 1, 2 or 3, got {self.population!r}")
        if len(self.p_values) < 2:
            raise DeepglassError("give at least two dilution values")
        pv = [float(v) for v in self.p_values]
        if any(not (0.0 <= v <= 1.0) for v in pv):
            raise DeepglassError(f"dilution values must be probabilities in [0, 1], got {pv}")
        if sorted(set(pv)) != pv:
            raise DeepglassError("dilution values must be strictly increasing")
        self.p_values = pv
        self.betas = [check_beta(b) for b in self.betas]
        if not self.betas or not self.a2s:
            raise DeepglassError("give at least one beta and one a2")
        if len(self.p_fixed) != 3:
            raise DeepglassError("p_fixed must hold three probabilities")
        if self.samples < 1:
            raise DeepglassError(f"samples must be >= 1, got {self.samples}")
        if self.construction not in CONSTRUCTIONS:
            raise DeepglassError(f"construction must be one of {', '.join(CONSTRUCTIONS)}")
        if self.mc_sweeps != 0 and self.mc_sweeps < 4:
            raise DeepglassError(f"mc_sweeps must be 0 (no Monte Carlo) or >= 4, got {self.mc_sweeps}")
        if self.mc_method not in METHODS:
            raise DeepglassError(f"mc_method must be one of {', '.join(METHODS)}")
        if self.damping != "auto" and not (isinstance(self.damping, (int, float))
                                           and 0.0 <= self.damping < 1.0):
            raise DeepglassError(f"damping must be 'auto' or in [0, 1), got {self.damping!r}")
        if not (0.0 < self.init_scale <= 1.0):
            raise DeepglassError(f"init_scale must be in (0, 1], got {self.init_scale}")
        # parameters and memory of the largest instance, before any work
        for a2 in self.a2s:
            p = self.p_point(min(pv))
            check_parameters(self.N, (self.a1, a2), p, self.construction, self.max_memory_gb)
            check_parameters(self.N, (self.a1, a2), self.p_point(max(pv)), self.construction,
                             self.max_memory_gb)
        return self

    def p_point(self, p: float) -> tuple[float, float, float]:
        out = [float(v) for v in self.p_fixed]
        out[self.population - 1] = float(p)
        return tuple(out)

    def to_dict(self) -> dict:
        return asdict(self)


def unit_id(ib: int, ia: int, ip: int, s: int) -> str:
    return f"b{ib:02d}_a{ia:02d}_p{ip:03d}_s{s:03d}"


def _instance_seed(cfg: PhaseConfig, ib: int, ia: int, ip: int, s: int) -> int:
    # independent instances per (a2, p, sample); the same instances for every beta
    return int(np.random.SeedSequence([cfg.seed, ia, ip, s]).generate_state(1)[0])


def scan_point(cfg: PhaseConfig, ib: int, ia: int, ip: int, s: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Solve one grid point: BP (two starts) and MC on one instance.

    Returns ``(points, degrees)``: tidy rows (one per solver/branch) and the
    degree distribution of the instance.
    """
    beta, a2, p = cfg.betas[ib], cfg.a2s[ia], cfg.p_values[ip]
    seed = _instance_seed(cfg, ib, ia, ip, s)
    model = RAPModel(cfg.N, a=(cfg.a1, a2), p=cfg.p_point(p), construction=cfg.construction,
                     seed=seed, max_memory_gb=cfg.max_memory_gb)
    base = {"beta": beta, "a1": cfg.a1, "a2": a2, "population": cfg.population, "p": p,
            "sample": s, "instance_seed": seed, "alpha": model.alpha,
            "n_factors": model.n_factors, "n_weights": model.n_weights}
    rows = []
    if model.n_factors == 0:
        for branch in ("random", "polarized"):
            rows.append({**base, "solver": "bp", "branch": branch, "converged": False})
        return pd.DataFrame(rows), model.degree_table().assign(p=p, a2=a2, sample=s)
    for branch in ("random", "polarized"):
        t0 = time.perf_counter()
        r = run_bp(model, beta, start=branch, damping=cfg.damping, tol=cfg.tol,
                   max_iter=cfg.max_iter, seed=seed, init_scale=cfg.init_scale if branch == "random" else 1.0)
        rows.append({**base, "solver": "bp", "branch": branch, "energy": r.energy,
                     "energy_err": 0.0, "entropy": r.entropy, "free_energy": r.free_energy,
                     "q": r.q, "m_planted": r.m_planted, "converged": r.converged,
                     "oscillating": r.oscillating, "iterations": r.iterations,
                     "seconds": time.perf_counter() - t0,
                     **{f"q_w{l}": v for l, v in r.q_by_population.items()}})
    if cfg.mc_sweeps:
        r = run_mc(model, beta, sweeps=cfg.mc_sweeps, method=cfg.mc_method, seed=seed)
        rows.append({**base, "solver": "mc", "branch": "quench", "energy": r.energy,
                     "energy_err": r.energy_err, "entropy": math.nan, "free_energy": math.nan,
                     "q": r.q, "m_planted": r.m_planted, "converged": r.converged,
                     "oscillating": False, "iterations": r.sweeps, "seconds": r.seconds})
    deg = model.degree_table().assign(p=p, a2=a2, sample=s)
    return pd.DataFrame(rows), deg


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
    """Transition point, spinodal and hysteresis window per (beta, a2).

    Uses the sample means of the two BP branches (see module docstring), at the
    grid points where BP converged on every sample of both branches
    (``n_unconverged`` counts the points left out).  Columns:
    ``beta, a2, p_c, p_c_lo, p_c_hi, method, p_spinodal, p_sp_lo, p_sp_hi,
    hysteresis_low, hysteresis_high, hysteresis_width, low_censored,
    entropy_jump, energy_jump``.  ``p_c`` is NaN (method ``"none"``) when the
    ordered branch is never the lower free energy in the scan, and
    ``"above-scan"`` when it still is at the largest ``p``.
    """
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


@dataclass
class PhaseResult:
    """Tables of a scan: ``points`` (one row per instance and solver),
    ``summary`` (sample means), ``transitions`` (one row per (beta, a2)) and
    ``degrees`` (degree distributions)."""

    config: PhaseConfig
    points: pd.DataFrame
    summary: pd.DataFrame
    transitions: pd.DataFrame
    degrees: pd.DataFrame
    seconds: float = 0.0


def scan_phase(cfg: PhaseConfig, run=None,
               advance: Callable[[int], None] | None = None) -> PhaseResult:
    """Run (or resume) a phase-diagram scan; see the module docstring.

    Parameters
    ----------
    cfg : PhaseConfig
    run : deepglass.store.RunDir, optional
        Finished grid points are read back, new ones written as units
        (tables ``points`` and ``degrees``), so an interrupted scan resumes.
    advance : callable, optional
        Called with 1 after each grid point (progress bars).
    """
    cfg.validate()
    t0 = time.perf_counter()
    units = [(ib, ia, ip, s) for ib in range(len(cfg.betas)) for ia in range(len(cfg.a2s))
             for ip in range(len(cfg.p_values)) for s in range(cfg.samples)]
    pts, degs = [], []
    for key in units:
        uid = unit_id(*key)
        if run is not None and run.has_unit("points", uid):
            if advance:
                advance(1)
            continue
        p_df, d_df = scan_point(cfg, *key)
        if run is not None:
            if key[0] == 0:
                run.write_unit("degrees", uid, d_df)
            run.write_unit("points", uid, p_df)
        else:
            pts.append(p_df)
            if key[0] == 0:
                degs.append(d_df)
        if advance:
            advance(1)
    if run is not None:
        points = run.read_units("points")
        degrees = run.read_units("degrees")
    else:
        points = pd.concat(pts, ignore_index=True)
        degrees = pd.concat(degs, ignore_index=True) if degs else pd.DataFrame()
    summary = aggregate_points(points)
    transitions = find_transitions(points, cfg.q_threshold)
    return PhaseResult(cfg, points, summary, transitions, degrees,
                       seconds=time.perf_counter() - t0)

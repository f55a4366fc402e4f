"""Phase diagram of the RAP model under dilution (SPEC section 6; paper 001 Figs. 3-4).

For one diluted population ``l`` and each ``(beta, a2)``, the dilution ``p_l`` is
scanned over a grid, linear in ``p`` or in ``log(1 - p)`` (``scale="log1m"``,
for transitions close to ``p = 1``).  Each disorder sample is one realization
of the *coupled* family of instances (:class:`RAPModel`: the same seed for every
``p``, so a larger ``p`` keeps a subset of the active paths), and BP follows two
branches along it by **continuation**, each point started from its neighbour's
fixed point (messages of the surviving factors carried over,
:meth:`RAPModel.message_map`):

- the *random* branch, from a small random start at the largest ``p`` and
  continued downwards (new factors get small random messages): the
  paramagnet ``q = 0`` where it is locally stable -- for this 3-body model at
  every ``p``, since ``u = atanh(t m m)`` has zero Jacobian at ``m = 0``;
- the *ordered* (polarized) branch, from the planted polarized start at the
  smallest ``p`` and continued upwards, while it stays ordered (``q >
  q_threshold``).

BP at each point runs until converged or provably not (:func:`run_bp`: a
residual that does not fall even at the largest damping is ``stalled``; one
still falling at ``max_iter`` is ``slow``).  Between converged grid points,
:func:`scan_phase` then **bisects** (in ``p`` or ``log(1 - p)``), carrying the
ordered messages from the lower end of the bracket:

- the first-order transition ``p_c`` where the sample-mean free-energy
  difference ``Delta f = f_ordered - f_random`` changes sign, to a bracket of
  width ``bracket_tol`` (``p_c`` interpolated inside it, method ``"crossing"``);
- the spinodal ``p_sp`` where the ordered branch ends.  If it ends while still
  the lower free energy, the transition is at the spinodal (``"branch-end"``,
  bracketed the same way); ``"above-scan"`` / ``"none"`` when the ordered branch
  is lower over the whole scan / never ordered;
- the hysteresis (coexistence) window ``[p_lo, p_sp]`` where the two branches
  are different fixed points (``low_censored`` when ``p_lo`` is the scan
  minimum, as for this 3-body model).

In the units construction (the paper's) the three populations have different
degree laws, so which population is diluted matters; in the independent one
only the product ``(1-p1)(1-p2)(1-p3)`` enters.

Each ``(beta, a2)`` (all its samples, grid points and bisection steps) is one
unit of a :class:`deepglass.store.RunDir`, so a run resumes where it stopped.
Cost per grid point and sample: two BP runs (O(M) per iteration, few
iterations thanks to continuation, many only next to the spinodal), plus
``mc_sweeps N_w`` Monte Carlo proposals; a bisection step costs two BP runs per
sample.
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
from .model import RAPModel, check_parameters, normalize_construction

__all__ = ["PhaseConfig", "PhaseResult", "scan_phase", "find_transitions",
           "aggregate_points", "unit_id", "p_grid", "SCALES"]

SCALES = ("linear", "log1m")


def p_grid(p_min: float, p_max: float, n: int, scale: str = "linear") -> list[float]:
    """``n`` dilutions from ``p_min`` to ``p_max``, equally spaced in ``p``
    (``"linear"``) or in ``log(1 - p)`` (``"log1m"``, needs ``p_max < 1``)."""
    if scale not in SCALES:
        raise DeepglassError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if n < 2 or not (0.0 <= p_min < p_max <= 1.0):
        raise DeepglassError(f"need n >= 2 and 0 <= p_min < p_max <= 1, got {n}, {p_min}, {p_max}")
    if scale == "linear":
        return [round(float(v), 6) for v in np.linspace(p_min, p_max, n)]
    if p_max >= 1.0:
        raise DeepglassError("a log(1 - p) grid needs p_max < 1")
    return [float(1.0 - v) for v in np.geomspace(1.0 - p_min, 1.0 - p_max, n)]


def _midpoint(lo: float, hi: float, scale: str) -> float:
    if scale == "log1m":
        return float(1.0 - math.sqrt((1.0 - lo) * (1.0 - hi)))
    return 0.5 * (lo + hi)


@dataclass
class PhaseConfig:
    """Everything that defines a phase-diagram scan (stored in ``config.toml``).

    ``p_values`` are the dilutions of population ``population``; the other two
    populations keep ``p_fixed``.  ``betas`` and ``a2s`` are scanned as outer
    loops (Fig. 4).  ``mc_sweeps = 0`` skips Monte Carlo.  ``scale`` is how
    bisection splits a bracket (``"log1m"``: in ``log(1 - p)``); bisection stops at
    a bracket narrower than ``bracket_tol`` (in ``p``) or after ``max_bisect``
    steps.  ``max_iter`` caps each BP run (continuation keeps most runs short).
    """

    N: int = 100
    population: int = 1
    p_values: list = field(default_factory=lambda: list(np.round(np.linspace(0.5, 0.98, 25), 4)))
    betas: list = field(default_factory=lambda: [1.0])
    a1: float = 0.5
    a2s: list = field(default_factory=lambda: [0.5])
    p_fixed: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    samples: int = 2
    construction: str = "units"
    scale: str = "linear"
    bracket_tol: float = 0.002
    max_bisect: int = 12
    seed: int = 0
    damping: float | str = "auto"
    tol: float = 1e-6
    max_iter: int = 20000
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
        self.construction = normalize_construction(self.construction)
        if self.scale not in SCALES:
            raise DeepglassError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if self.scale == "log1m" and max(pv) >= 1.0:
            raise DeepglassError("a log(1 - p) scan needs dilutions < 1")
        if not (self.bracket_tol > 0) or int(self.max_bisect) < 0:
            raise DeepglassError("bracket_tol must be > 0 and max_bisect >= 0")
        if int(self.max_iter) < 1:
            raise DeepglassError(f"max_iter must be >= 1, got {self.max_iter}")
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


def unit_id(ib: int, ia: int) -> str:
    return f"b{ib:02d}_a{ia:02d}"


def _instance_seed(cfg: PhaseConfig, s: int) -> int:
    # one disorder realization per sample, shared by every p, a2 and beta: the
    # instances along a scan are coupled (continuation, bisection)
    return int(np.random.SeedSequence([cfg.seed, s]).generate_state(1)[0])


class _Family:
    """The coupled instances of one disorder sample at fixed ``a2`` (cached by ``p``)."""

    def __init__(self, cfg: PhaseConfig, a2: float, s: int):
        self.cfg, self.a2, self.s = cfg, a2, s
        self.seed = _instance_seed(cfg, s)
        self._cache: dict[float, RAPModel] = {}

    def model(self, p: float) -> RAPModel:
        m = self._cache.get(p)
        if m is None:
            m = RAPModel(self.cfg.N, a=(self.cfg.a1, self.a2), p=self.cfg.p_point(p),
                         construction=self.cfg.construction, seed=self.seed,
                         max_memory_gb=self.cfg.max_memory_gb)
            self._cache[p] = m
        return m

    def drop(self, keep: set) -> None:
        for p in [p for p in self._cache if p not in keep]:
            del self._cache[p]


def _carry(model: RAPModel, prev: RAPModel | None, msgs: np.ndarray | None,
           rng: np.random.Generator, scale: float, fallback: str) -> np.ndarray | str:
    """Start messages on ``model`` from ``prev``'s fixed point ``msgs``: surviving
    factors keep theirs, new ones get uniform messages in ``[-scale, scale]``;
    ``fallback`` (a named start of :func:`run_bp`) when there is nothing to carry."""
    if prev is None or msgs is None or prev.n_factors == 0:
        return fallback
    found, idx = model.message_map(prev)
    start = rng.uniform(-scale, scale, size=(model.n_factors, 3))
    start[found] = msgs[idx[found]]
    return start


def _solve(cfg: PhaseConfig, model: RAPModel, beta: float, start, seed: int,
           init_scale: float = 1.0):
    t0 = time.perf_counter()
    r = run_bp(model, beta, start=start, damping=cfg.damping, tol=cfg.tol,
               max_iter=cfg.max_iter, seed=seed, init_scale=init_scale)
    return r, time.perf_counter() - t0


def _row(base: dict, branch: str, r, seconds: float, kind: str) -> dict:
    return {**base, "solver": "bp", "branch": branch, "kind": kind, "energy": r.energy,
            "energy_err": 0.0, "entropy": r.entropy, "free_energy": r.free_energy,
            "q": r.q, "m_planted": r.m_planted, "converged": r.converged,
            "status": r.status, "oscillating": r.oscillating, "iterations": r.iterations,
            "damping": r.damping, "seconds": seconds,
            **{f"q_w{l}": v for l, v in r.q_by_population.items()}}


def _base(cfg, beta, a2, p, s, model, seed) -> dict:
    return {"beta": beta, "a1": cfg.a1, "a2": a2, "population": cfg.population, "p": p,
            "sample": s, "instance_seed": seed, "alpha": model.alpha,
            "n_factors": model.n_factors, "n_weights": model.n_weights}


class _Case:
    """Continuation and bisection for one ``(beta, a2)``, all samples together."""

    def __init__(self, cfg: PhaseConfig, ib: int, ia: int):
        self.cfg, self.beta, self.a2 = cfg, cfg.betas[ib], cfg.a2s[ia]
        self.fams = [_Family(cfg, self.a2, s) for s in range(cfg.samples)]
        self.rows: list[dict] = []
        self.rng = np.random.default_rng([cfg.seed, ib, ia])

    def alive(self, r) -> bool:
        return bool(r.converged and r.q > self.cfg.q_threshold)

    # -- the random (paramagnetic-like) branch, downwards -------------------
    def random_branch(self) -> dict:
        cfg, out = self.cfg, {}
        for fam in self.fams:
            prev = msgs = None
            for p in reversed(cfg.p_values):
                m = fam.model(p)
                base = _base(cfg, self.beta, self.a2, p, fam.s, m, fam.seed)
                if m.n_factors == 0:
                    self.rows.append({**base, "solver": "bp", "branch": "random", "kind": "grid",
                                      "converged": False, "status": "empty"})
                    out[(fam.s, p)] = None
                    continue
                start = _carry(m, prev, msgs, self.rng, cfg.init_scale, "random")
                r, dt = _solve(cfg, m, self.beta, start, fam.seed, cfg.init_scale)
                self.rows.append(_row(base, "random", r, dt, "grid"))
                out[(fam.s, p)] = r
                if r.converged:
                    prev, msgs = m, r.messages
            fam.drop(set())
        return out

    def random_at(self, fam: _Family, p: float):
        m = fam.model(p)
        r, dt = _solve(self.cfg, m, self.beta, "random", fam.seed, self.cfg.init_scale)
        self.rows.append(_row(_base(self.cfg, self.beta, self.a2, p, fam.s, m, fam.seed),
                              "random", r, dt, "bisection"))
        return r

    def ordered_at(self, fam: _Family, p: float, prev_p: float, msgs, kind: str):
        m = fam.model(p)
        start = _carry(m, fam.model(prev_p), msgs, self.rng, 1.0, "polarized") \
            if msgs is not None else "polarized"
        r, dt = _solve(self.cfg, m, self.beta, start, fam.seed)
        self.rows.append(_row(_base(self.cfg, self.beta, self.a2, p, fam.s, m, fam.seed),
                              "polarized", r, dt, kind))
        return r

    # -- bisection ---------------------------------------------------------
    def _ordered_mid(self, lo: float, mid: float, msgs_lo: list):
        res = [self.ordered_at(f, mid, lo, msgs_lo[f.s], "bisection") for f in self.fams]
        return res, all(self.alive(r) for r in res)

    def _delta_f(self, mid: float, res: list) -> float:
        rnd = [self.random_at(f, mid) for f in self.fams]
        if not all(r.converged for r in rnd):
            return math.nan
        return float(np.mean([a.free_energy - b.free_energy for a, b in zip(res, rnd)]))

    def _done(self, lo: float, hi: float, steps: int) -> bool:
        return steps >= self.cfg.max_bisect or hi - lo <= self.cfg.bracket_tol

    def bisect_crossing(self, lo, hi, msgs_lo, df_lo, df_hi):
        """Shrink ``[lo, hi]`` with ``Delta f(lo) < 0 < Delta f(hi)``, the ordered
        branch alive at both ends; stops early where a midpoint is not a
        converged ordered point (its sign is then unknown)."""
        steps = 0
        while not self._done(lo, hi, steps):
            mid = _midpoint(lo, hi, self.cfg.scale)
            steps += 1
            res, alive = self._ordered_mid(lo, mid, msgs_lo)
            df = self._delta_f(mid, res) if alive else math.nan
            for f in self.fams:
                f.drop({lo, hi})
            if not math.isfinite(df):
                break
            if df < 0:
                lo, df_lo, msgs_lo = mid, df, [r.messages for r in res]
            else:
                hi, df_hi = mid, df
        return lo, hi, df_lo, df_hi, steps

    def bisect_spinodal(self, lo, hi, msgs_lo, df_lo, track: bool):
        """Shrink ``[lo, hi]``, ordered branch alive at ``lo`` and not at ``hi``.

        With ``track`` (``Delta f(lo) < 0``), the first alive midpoint with
        ``Delta f > 0`` is returned as a crossing bracket ``(lo, mid, msgs_lo,
        df_lo, df_mid)``; the search then goes on for the spinodal above it.
        """
        steps, crossing = 0, None
        while not self._done(lo, hi, steps):
            mid = _midpoint(lo, hi, self.cfg.scale)
            steps += 1
            res, alive = self._ordered_mid(lo, mid, msgs_lo)
            if alive and track:
                df = self._delta_f(mid, res)
                if math.isfinite(df) and df > 0:
                    crossing, track = (lo, mid, msgs_lo, df_lo, df), False
                elif math.isfinite(df):
                    df_lo = df
            for f in self.fams:
                f.drop({lo, hi})
            if alive:
                lo, msgs_lo = mid, [r.messages for r in res]
            else:
                hi = mid
        return lo, hi, steps, crossing

    # -- the ordered branch, upwards, with both bisections -----------------
    def run(self) -> dict:
        cfg = self.cfg
        rand = self.random_branch()
        trans = {"beta": self.beta, "a2": self.a2, "method": "none", "p_c": math.nan,
                 "p_c_lo": math.nan, "p_c_hi": math.nan, "p_spinodal": math.nan,
                 "p_sp_lo": math.nan, "p_sp_hi": math.nan, "n_bisections": 0,
                 "n_unconverged": 0}
        last = None            # (p, messages per sample, mean Delta f) of the last alive point
        msgs, prev_p = [None] * cfg.samples, [None] * cfg.samples
        crossing = ended = False
        for p in cfg.p_values:
            if ended:          # past the spinodal: only the random branch remains
                break
            res = [self.ordered_at(f, p, prev_p[f.s] if prev_p[f.s] is not None else p,
                                   msgs[f.s], "grid") for f in self.fams]
            rnd = [rand[(f.s, p)] for f in self.fams]
            conv = all(r.converged for r in res) and all(r is not None and r.converged
                                                           for r in rnd)
            alive = conv and all(self.alive(r) for r in res)
            if not conv:
                trans["n_unconverged"] += 1
                for f in self.fams:
                    f.drop(set())
                continue
            df = float(np.mean([a.free_energy - b.free_energy for a, b in zip(res, rnd)])) \
                if alive else math.nan
            if last is None and alive and df > 0:
                trans["method"] = "below-scan"    # the ordered branch is never the lower
            if last is not None:
                p0, m0, df0 = last
                if alive and df > 0 and df0 < 0 and not crossing:
                    lo, hi, dlo, dhi, k = self.bisect_crossing(p0, p, m0, df0, df)
                    trans["n_bisections"] += k
                    self._set_crossing(trans, lo, hi, dlo, dhi)
                    crossing = True
                elif not alive:                    # the ordered branch ended in (p0, p]
                    lo, hi, k, cb = self.bisect_spinodal(p0, p, m0, df0,
                                                         track=not crossing and df0 < 0)
                    trans["n_bisections"] += k
                    if cb is not None:
                        clo, chi, dlo, dhi, k = self.bisect_crossing(*cb)
                        trans["n_bisections"] += k
                        self._set_crossing(trans, clo, chi, dlo, dhi)
                        crossing = True
                    trans.update(p_sp_lo=lo, p_sp_hi=hi, p_spinodal=0.5 * (lo + hi))
                    if not crossing and df0 < 0:
                        # lower until it ends: the transition is at the spinodal
                        trans.update(method="branch-end", p_c_lo=lo, p_c_hi=hi,
                                     p_c=0.5 * (lo + hi))
                    ended = True
            if alive:
                for f, r in zip(self.fams, res):
                    msgs[f.s], prev_p[f.s] = r.messages, p
                last = (p, list(msgs), df)
            for f in self.fams:
                f.drop({p})
        if crossing:
            trans["method"] = "crossing"
        elif last is not None and not ended and last[2] < 0:
            trans.update(method="above-scan", p_c_lo=last[0])
        for f in self.fams:
            f.drop(set())
        self._finish(trans)
        return trans

    def _set_crossing(self, trans, lo, hi, dlo, dhi):
        pc = lo - dlo * (hi - lo) / (dhi - dlo) if dhi != dlo else 0.5 * (lo + hi)
        trans.update(p_c=float(pc), p_c_lo=float(lo), p_c_hi=float(hi), method="crossing")

    def _finish(self, trans):
        pts = pd.DataFrame(self.rows)
        trans["bracket_width"] = trans["p_c_hi"] - trans["p_c_lo"]
        grid = find_transitions(pts[pts.kind == "grid"], self.cfg.q_threshold)
        g = grid.iloc[0].to_dict() if len(grid) else {}
        h_lo = g.get("hysteresis_low", math.nan)
        h_hi = trans["p_spinodal"] if math.isfinite(trans["p_spinodal"]) else \
            g.get("hysteresis_high", math.nan)
        trans.update(hysteresis_low=h_lo, hysteresis_high=h_hi,
                     hysteresis_width=h_hi - h_lo if math.isfinite(h_lo) else math.nan,
                     low_censored=bool(g.get("low_censored", False)),
                     q_ordered_end=g.get("q_ordered_end", math.nan))
        e_jump = s_jump = math.nan
        if trans["method"] == "crossing":
            s = aggregate_points(pts[pts.solver == "bp"])
            r = s[s.branch == "random"].sort_values("p")
            o = s[(s.branch == "polarized") & (s.q > self.cfg.q_threshold)].sort_values("p")
            pc = trans["p_c"]
            s_jump = float(np.interp(pc, r.p, r.entropy) - np.interp(pc, o.p, o.entropy))
            e_jump = float(np.interp(pc, r.p, r.energy) - np.interp(pc, o.p, o.energy))
        trans.update(entropy_jump=s_jump, energy_jump=e_jump)


def _mc_rows(cfg: PhaseConfig, ib: int, ia: int) -> list[dict]:
    rows = []
    beta, a2 = cfg.betas[ib], cfg.a2s[ia]
    for s in range(cfg.samples):
        fam = _Family(cfg, a2, s)
        for p in cfg.p_values:
            m = fam.model(p)
            if m.n_factors:
                r = run_mc(m, beta, sweeps=cfg.mc_sweeps, method=cfg.mc_method, seed=fam.seed)
                rows.append({**_base(cfg, beta, a2, p, s, m, fam.seed), "solver": "mc",
                             "branch": "quench", "kind": "grid", "energy": r.energy,
                             "energy_err": r.energy_err, "entropy": math.nan,
                             "free_energy": math.nan, "q": r.q, "m_planted": r.m_planted,
                             "converged": r.converged, "status": "", "oscillating": False,
                             "iterations": r.sweeps, "seconds": r.seconds})
            fam.drop(set())
    return rows


def scan_case(cfg: PhaseConfig, ib: int, ia: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One ``(beta, a2)``: both BP branches by continuation, bisections, MC.

    Returns ``(points, transition, degrees)``: tidy rows (one per sample,
    dilution, solver and branch; ``kind`` is ``"grid"`` or ``"bisection"``), the
    one-row transition table and the degree distributions at the smallest
    dilution.
    """
    case = _Case(cfg, ib, ia)
    trans = case.run()
    rows = case.rows + (_mc_rows(cfg, ib, ia) if cfg.mc_sweeps else [])
    degs = []
    for s in range(cfg.samples):
        m = _Family(cfg, cfg.a2s[ia], s).model(cfg.p_values[0])
        degs.append(m.degree_table().assign(p=cfg.p_values[0], a2=cfg.a2s[ia], sample=s))
    return pd.DataFrame(rows), pd.DataFrame([trans]), pd.concat(degs, ignore_index=True)


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
        Finished ``(beta, a2)`` cases are read back, new ones written as units
        (tables ``points``, ``transitions``, ``degrees``), so an interrupted scan
        resumes.
    advance : callable, optional
        Called with 1 after each ``(beta, a2)`` case (progress bars).
    """
    cfg.validate()
    t0 = time.perf_counter()
    cases = [(ib, ia) for ib in range(len(cfg.betas)) for ia in range(len(cfg.a2s))]
    pts, trs, degs = [], [], []
    for ib, ia in cases:
        uid = unit_id(ib, ia)
        if run is not None and run.has_unit("points", uid):
            if advance:
                advance(1)
            continue
        p_df, t_df, d_df = scan_case(cfg, ib, ia)
        if run is not None:
            if ib == 0:
                run.write_unit("degrees", uid, d_df)
            run.write_unit("transitions", uid, t_df)
            run.write_unit("points", uid, p_df)      # last: marks the unit finished
        else:
            pts.append(p_df)
            trs.append(t_df)
            if ib == 0:
                degs.append(d_df)
        if advance:
            advance(1)
    if run is not None:
        points = run.read_units("points")
        transitions = run.read_units("transitions")
        degrees = run.read_units("degrees")
    else:
        points = pd.concat(pts, ignore_index=True)
        transitions = pd.concat(trs, ignore_index=True)
        degrees = pd.concat(degs, ignore_index=True) if degs else pd.DataFrame()
    summary = aggregate_points(points)
    return PhaseResult(cfg, points, summary, transitions.reset_index(drop=True), degrees,
                       seconds=time.perf_counter() - t0)

"""One ``(beta, a2)`` case of the RAP phase diagram: continuation and bisection.

SPEC section 6; the method is described in :mod:`deepglass.rap.phase`.  A case
follows, on every disorder sample's coupled family of instances, the random
BP branch downwards and the ordered branch upwards (each point started from
its neighbour's fixed point), bisects the free-energy crossing ``p_c`` and the
spinodal between converged grid points, and adds the Monte Carlo quenches.
:func:`scan_case` is the phase scan's unit of work: it depends only on the
configuration and on the :class:`Case` (its ids and seeds), so a case computes
to the same rows in any process and in any order.

Cost per grid point and sample: two BP runs (O(M) per iteration, few
iterations thanks to continuation, many only next to the spinodal), plus
``mc_sweeps N_w`` Monte Carlo proposals; a bisection step costs two BP runs
per sample.
"""

from __future__ import annotations

import math
import time
import types
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .bp import run_bp
from .mc import point_seed, run_mc
from .model import RAPModel
from .transitions import aggregate_points, find_transitions

__all__ = ["Case", "case_of", "scan_case", "instance_seed"]


def midpoint(lo: float, hi: float, scale: str) -> float:
    """The middle of ``[lo, hi]`` in ``p`` or, for ``scale="log1m"``, in ``log(1 - p)``."""
    if scale == "log1m":
        return float(1.0 - math.sqrt((1.0 - lo) * (1.0 - hi)))
    return 0.5 * (lo + hi)


def instance_seed(seed: int, s: int) -> int:
    """The instance seed of disorder sample ``s`` of a scan seeded ``seed``."""
    # one disorder realization per sample, shared by every p, a2 and beta: the
    # instances along a scan are coupled (continuation, bisection)
    return int(np.random.SeedSequence([seed, s]).generate_state(1)[0])


@dataclass(frozen=True)
class Case:
    """One ``(beta, a2)`` of a scan with the seeds that determine its result.

    Attributes
    ----------
    ib, ia : int
        Indices of ``beta`` in ``cfg.betas`` and of ``a2`` in ``cfg.a2s``.
    rng_seed : tuple of int
        Entropy of the generator of the messages given to new factors
        (``(cfg.seed, ib, ia)``).
    instance_seeds : tuple of int
        One instance seed per disorder sample (:func:`instance_seed`; the same
        for every case, so the instances are coupled across the scan).
    """

    ib: int
    ia: int
    rng_seed: tuple
    instance_seeds: tuple


def case_of(cfg, ib: int, ia: int) -> Case:
    """The :class:`Case` ``(ib, ia)`` of the scan ``cfg`` (a :class:`PhaseConfig`)."""
    return Case(ib, ia, (int(cfg.seed), ib, ia),
                tuple(instance_seed(cfg.seed, s) for s in range(cfg.samples)))


class _Family:
    """The coupled instances of one disorder sample at fixed ``a2`` (cached by ``p``)."""

    def __init__(self, cfg, a2: float, s: int, seed: int):
        self.cfg, self.a2, self.s, self.seed = cfg, a2, s, seed
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


def _solve(cfg, model: RAPModel, beta: float, start, seed: int,
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


def _empty_row(base: dict, branch: str, kind: str) -> dict:
    nan = math.nan
    return {**base, "solver": "bp", "branch": branch, "kind": kind, "energy": nan,
            "energy_err": nan, "entropy": nan, "free_energy": nan, "q": nan, "m_planted": nan,
            "converged": False, "status": "empty", "oscillating": False, "iterations": 0,
            "damping": nan, "seconds": 0.0}


#: the "result" of an instance with no active path: not converged, no order
_NO_PATH = types.SimpleNamespace(converged=False, q=0.0, free_energy=math.nan, messages=None)


def _base(cfg, beta, a2, p, s, model, seed) -> dict:
    return {"beta": beta, "a1": cfg.a1, "a2": a2, "population": cfg.population, "p": p,
            "sample": s, "instance_seed": seed, "alpha": model.alpha,
            "n_factors": model.n_factors, "n_weights": model.n_weights}


class _Case:
    """Continuation and bisection for one ``(beta, a2)``, all samples together."""

    def __init__(self, cfg, case: Case):
        self.cfg, self.beta, self.a2 = cfg, cfg.betas[case.ib], cfg.a2s[case.ia]
        self.fams = [_Family(cfg, self.a2, s, seed) for s, seed in enumerate(case.instance_seeds)]
        self.rows: list[dict] = []
        self.rng = np.random.default_rng(list(case.rng_seed))

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
                    self.rows.append(_empty_row(base, "random", "grid"))
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
        if m.n_factors == 0:
            return self._empty(m, fam, p, "random", "bisection")
        r, dt = _solve(self.cfg, m, self.beta, "random", fam.seed, self.cfg.init_scale)
        self.rows.append(_row(_base(self.cfg, self.beta, self.a2, p, fam.s, m, fam.seed),
                              "random", r, dt, "bisection"))
        return r

    def _empty(self, m, fam: _Family, p: float, branch: str, kind: str):
        """An instance with no active path: nothing to solve (BP's observables per
        weight are 0 / 0); recorded as empty, not as a converged branch of NaN."""
        self.rows.append(_empty_row(_base(self.cfg, self.beta, self.a2, p, fam.s, m, fam.seed),
                                    branch, kind))
        return _NO_PATH

    def ordered_at(self, fam: _Family, p: float, prev_p: float, msgs, kind: str):
        m = fam.model(p)
        if m.n_factors == 0:
            return self._empty(m, fam, p, "polarized", kind)
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
            mid = midpoint(lo, hi, self.cfg.scale)
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
            mid = midpoint(lo, hi, self.cfg.scale)
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
            # an instance with no active path left has no ordered phase: the
            # ordered branch has ended (there is nothing to converge)
            empty = any(r is None for r in rnd)
            conv = empty or (all(r.converged for r in res) and all(r.converged for r in rnd))
            alive = conv and not empty and all(self.alive(r) for r in res)
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


def _mc_rows(cfg, case: Case) -> list[dict]:
    rows = []
    beta, a2 = cfg.betas[case.ib], cfg.a2s[case.ia]
    for s, seed in enumerate(case.instance_seeds):
        fam = _Family(cfg, a2, s, seed)
        for p in cfg.p_values:
            m = fam.model(p)
            if m.n_factors:
                # one stream per (beta, p): the points' errors are independent
                r = run_mc(m, beta, sweeps=cfg.mc_sweeps, method=cfg.mc_method,
                           seed=point_seed(fam.seed, beta, p))
                rows.append({**_base(cfg, beta, a2, p, s, m, fam.seed), "solver": "mc",
                             "branch": "quench", "kind": "grid", "energy": r.energy,
                             "energy_err": r.energy_err, "entropy": math.nan,
                             "free_energy": math.nan, "q": r.q, "m_planted": r.m_planted,
                             "converged": r.converged, "status": "", "oscillating": False,
                             "iterations": r.sweeps, "seconds": r.seconds})
            fam.drop(set())
    return rows


def scan_case(cfg, case: Case) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One ``(beta, a2)``: both BP branches by continuation, bisections, MC.

    Returns ``(points, transition, degrees)``: tidy rows (one per sample,
    dilution, solver and branch; ``kind`` is ``"grid"`` or ``"bisection"``), the
    one-row transition table and the degree distributions at the smallest
    dilution.
    """
    bp = _Case(cfg, case)
    trans = bp.run()
    rows = bp.rows + (_mc_rows(cfg, case) if cfg.mc_sweeps else [])
    degs = []
    a2 = cfg.a2s[case.ia]
    for s, seed in enumerate(case.instance_seeds):
        m = _Family(cfg, a2, s, seed).model(cfg.p_values[0])
        degs.append(m.degree_table().assign(p=cfg.p_values[0], a2=a2, sample=s))
    return pd.DataFrame(rows), pd.DataFrame([trans]), pd.concat(degs, ignore_index=True)

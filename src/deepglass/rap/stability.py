"""BP stability against temperature and annealing against cooling rate (paper 001, Fig. 5).

- :func:`bp_temperature_scan`: BP (and optionally a Monte Carlo quench) on one
  instance over a grid of ``beta``, from the polarized start and from a random
  start (uniform messages in ``[-1, 1]``); each run's :attr:`BPResult.status`
  says whether the RS iteration converged, *stalled* (its residual does not
  fall, oscillating or not, even at the largest damping "auto" reaches) or is
  *slow*; the energy / entropy of each (Fig. 5b).  The random start is where
  BP's low-temperature instability shows: the polarized one sits in the
  planted basin.
- :func:`cooling_study`: simulated annealing from a random start along a fixed
  ``beta`` schedule with different numbers of sweeps per temperature (the
  cooling rate is their inverse); final energies over repetitions (Fig. 5a);
  :func:`cooling_table` sets them against the ground state ``-alpha``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import DeepglassError
from .bp import check_beta, run_bp
from .mc import anneal, beta_schedule, run_mc
from .model import RAPModel

__all__ = ["bp_temperature_scan", "cooling_study", "cooling_table", "STARTS"]

STARTS = ("polarized", "random")


def bp_temperature_scan(model: RAPModel, betas: Sequence[float], *,
                        starts: Sequence[str] = STARTS, random_scale: float = 1.0,
                        damping: float | str = "auto", tol: float = 1e-6, max_iter: int = 3000,
                        mc_sweeps: int = 0, mc_method: str = "metropolis", seed: int = 0,
                        advance: Callable[[int], None] | None = None) -> pd.DataFrame:
    """BP at every ``beta`` from each of ``starts``, plus MC quenches if ``mc_sweeps``.

    Each BP run starts afresh (polarized: the planted ground state; random:
    uniform messages in ``[-random_scale, random_scale]``) and runs until it
    converges or provably does not (:func:`run_bp`, status ``stalled`` /
    ``slow``).  Cost: ``len(starts) * len(betas)`` BP runs of O(M) per iteration.

    Returns a tidy table: ``solver, start, beta, energy, energy_err, entropy,
    free_energy, q, converged, status, oscillating, iterations, residual, damping``.
    """
    betas = [check_beta(b) for b in betas]
    if not betas:
        raise DeepglassError("give at least one beta")
    starts = list(starts)
    if not starts or any(s not in STARTS for s in starts):
        raise DeepglassError(f"starts must be among {', '.join(STARTS)}, got {starts!r}")
    if not (0.0 < random_scale <= 1.0):
        raise DeepglassError(f"random_scale must be in (0, 1], got {random_scale!r}")
    rows = []
    for b in betas:
        for start in starts:
            r = run_bp(model, b, start=start, damping=damping, tol=tol, max_iter=max_iter,
                       seed=seed, init_scale=1.0 if start == "polarized" else random_scale)
            rows.append({"solver": "bp", "start": start, "beta": b, "energy": r.energy,
                         "energy_err": 0.0, "entropy": r.entropy,
                         "free_energy": r.free_energy, "q": r.q, "converged": r.converged,
                         "status": r.status, "oscillating": r.oscillating,
                         "iterations": r.iterations, "residual": r.residual,
                         "damping": r.damping})
        if mc_sweeps:
            m = run_mc(model, b, sweeps=mc_sweeps, method=mc_method, seed=seed)
            rows.append({"solver": "mc", "start": "quench", "beta": b, "energy": m.energy,
                         "energy_err": m.energy_err, "entropy": np.nan,
                         "free_energy": np.nan, "q": m.q, "converged": m.converged,
                         "status": "", "oscillating": False, "iterations": m.sweeps,
                         "residual": np.nan, "damping": np.nan})
        if advance:
            advance(1)
    return pd.DataFrame(rows)


def cooling_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Final annealing energy per cooling rate against the ground state (Fig. 5a).

    One row per ``sweeps_per_temp``: ``runs``, ``final_energy_mean``,
    ``final_energy_std``, ``final_energy_min``, ``ground_energy`` (``-alpha``,
    the planted configuration) and ``excess = mean - ground`` (>= 0).
    """
    g = finals.groupby("sweeps_per_temp")
    out = g["final_energy"].agg(runs="size", final_energy_mean="mean",
                                final_energy_std="std", final_energy_min="min").reset_index()
    out["final_energy_std"] = out["final_energy_std"].fillna(0.0)
    out["ground_energy"] = g["ground_energy"].first().to_numpy()
    out["excess"] = out["final_energy_mean"] - out["ground_energy"]
    return out


def cooling_study(model: RAPModel, sweeps_per_temp: Sequence[int], *, beta_start: float = 0.1,
                  beta_end: float = 3.0, n_temps: int = 30, schedule: str = "geometric",
                  repeats: int = 3, method: str = "metropolis", seed: int = 0,
                  advance: Callable[[int], None] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated annealing at several cooling rates (paper Fig. 5a).

    Returns ``(finals, traces)``: ``finals`` has one row per
    ``(sweeps_per_temp, repeat)`` with ``final_energy`` (per weight, after the
    last temperature), ``ground_energy = -alpha`` (the planted ground state) and
    ``seconds``; ``traces`` the per-temperature energies of every run.
    """
    betas = beta_schedule(beta_start, beta_end, n_temps, schedule)
    spts = [int(s) for s in sweeps_per_temp]
    if not spts or min(spts) < 1:
        raise DeepglassError("sweeps per temperature must be integers >= 1")
    if int(repeats) < 1:
        raise DeepglassError(f"repeats must be >= 1, got {repeats}")
    finals, traces = [], []
    for spt in spts:
        for rep in range(int(repeats)):
            res = anneal(model, betas, sweeps_per_temp=spt, method=method,
                         seed=seed + 1000 * rep + spt)
            finals.append({"sweeps_per_temp": spt, "repeat": rep,
                           "cooling_rate": 1.0 / spt, "final_energy": res.final_energy,
                           "ground_energy": -model.alpha, "seconds": res.seconds})
            traces.append(res.table.assign(sweeps_per_temp=spt, repeat=rep))
            if advance:
                advance(1)
    return pd.DataFrame(finals), pd.concat(traces, ignore_index=True)

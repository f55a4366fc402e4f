"""BP stability against temperature and annealing against cooling rate (paper 001, Fig. 5).

- :func:`bp_temperature_scan`: BP (and optionally a Monte Carlo quench) on one
  instance over a grid of ``beta``; where the RS iteration stops converging or
  oscillates, and the energy / entropy of both (Fig. 5b).
- :func:`cooling_study`: simulated annealing from a random start along a fixed
  ``beta`` schedule with different numbers of sweeps per temperature (the
  cooling rate is their inverse); final energies over repetitions (Fig. 5a).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import DeepglassError
from .bp import check_beta, run_bp
from .mc import anneal, beta_schedule, run_mc
from .model import RAPModel

__all__ = ["bp_temperature_scan", "cooling_study"]


def bp_temperature_scan(model: RAPModel, betas: Sequence[float], *, start: str = "polarized",
                        damping: float | str = "auto", tol: float = 1e-6, max_iter: int = 3000,
                        mc_sweeps: int = 0, mc_method: str = "metropolis", seed: int = 0,
                        advance: Callable[[int], None] | None = None) -> pd.DataFrame:
    """BP at every ``beta`` (each run from ``start``), plus MC quenches if ``mc_sweeps``.

    Returns a tidy table: ``solver, beta, energy, energy_err, entropy,
    free_energy, q, converged, oscillating, iterations``.
    """
    betas = [check_beta(b) for b in betas]
    if not betas:
        raise DeepglassError("give at least one beta")
    rows = []
    for b in betas:
        r = run_bp(model, b, start=start, damping=damping, tol=tol, max_iter=max_iter,
                   seed=seed, init_scale=1.0 if start == "polarized" else 0.1)
        rows.append({"solver": "bp", "beta": b, "energy": r.energy, "energy_err": 0.0,
                     "entropy": r.entropy, "free_energy": r.free_energy, "q": r.q,
                     "converged": r.converged, "oscillating": r.oscillating,
                     "iterations": r.iterations, "residual": r.residual})
        if mc_sweeps:
            m = run_mc(model, b, sweeps=mc_sweeps, method=mc_method, seed=seed)
            rows.append({"solver": "mc", "beta": b, "energy": m.energy,
                         "energy_err": m.energy_err, "entropy": np.nan,
                         "free_energy": np.nan, "q": m.q, "converged": m.converged,
                         "oscillating": False, "iterations": m.sweeps, "residual": np.nan})
        if advance:
            advance(1)
    return pd.DataFrame(rows)


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

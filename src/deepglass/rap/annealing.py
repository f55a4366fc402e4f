"""Simulated annealing of the RAP model (SPEC §6, paper 001 Fig. 5).

One Monte Carlo chain (:mod:`.mc`'s kernels) carried down a schedule of
inverse temperatures, a fixed number of sweeps at each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DeepglassError, check_type
from .bp import check_beta
from .mc import _Chain, _check_method, _check_sweeps
from .model import RAPModel

__all__ = ["AnnealResult", "anneal", "beta_schedule"]

def beta_schedule(beta_start: float, beta_end: float, n_temps: int,
                  kind: str = "geometric") -> np.ndarray:
    """Inverse temperatures for annealing: ``n_temps`` values from ``beta_start`` to ``beta_end``.

    Parameters
    ----------
    beta_start, beta_end : float
        First and last inverse temperatures, finite and > 0 (``beta_start = 0``
        allowed for a linear schedule: infinite temperature).
    n_temps : int
        Number of values, >= 2 (one value would never reach ``beta_end``).
    kind : {"geometric", "linear"}, default "geometric"
        Constant ratio or constant step.

    Raises
    ------
    DeepglassError
        An unknown ``kind``, an invalid ``beta_start`` / ``beta_end`` or ``n_temps``.

    Examples
    --------
    >>> beta_schedule(0.1, 10.0, 3)
    array([ 0.1,  1. , 10. ])
    >>> beta_schedule(0.0, 1.0, 3, "linear")
    array([0. , 0.5, 1. ])
    """
    if kind not in ("geometric", "linear"):
        raise DeepglassError(f"schedule must be 'geometric' or 'linear', got {kind!r}")
    b1 = check_beta(beta_end)
    if kind == "linear" and isinstance(beta_start, (int, float, np.integer, np.floating)) \
            and not isinstance(beta_start, bool) and float(beta_start) == 0.0:
        b0 = 0.0
    else:
        b0 = check_beta(beta_start)
    n = _check_sweeps("n_temps", n_temps, 2)     # as AnnealConfig and --n-temps
    if b1 < b0:       # (AnnealConfig refuses it too: annealing cools, beta rises)
        raise DeepglassError(f"annealing cools: beta_end ({b1}) must be >= beta_start ({b0})")
    if kind == "geometric":
        return np.geomspace(b0, b1, n)
    return np.linspace(b0, b1, n)


@dataclass
class AnnealResult:
    """Simulated annealing (:func:`anneal`): its table, final energy and configuration.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per temperature: ``beta, e_mean, e_last, acceptance`` (energies
        per weight, acceptance per proposal).
    final_energy, seconds : float
        ``H / N_w`` at the end; wall time.
    w : ndarray (N_w,), int8
        The final configuration.
    """

    table: pd.DataFrame
    final_energy: float
    w: np.ndarray = field(repr=False)
    seconds: float = 0.0


def anneal(model: RAPModel, betas: np.ndarray, *, sweeps_per_temp: int = 10,
           method: str = "metropolis", seed: int = 0, start="random") -> AnnealResult:
    """Simulated annealing (paper Fig. 5a): ``sweeps_per_temp`` sweeps at each ``beta``.

    The chain starts from ``start`` (default random, i.e. infinite temperature)
    and runs through ``betas`` in order; ``e_mean`` is the mean of ``H / N_w`` over
    the sweeps at one temperature and ``e_last`` the value after its last sweep.
    Cost O(len(betas) sweeps_per_temp N_w) proposals.  SPEC §6.

    Parameters
    ----------
    model : RAPModel
        With at least one active path.
    betas : array_like, 1-d
        Inverse temperatures, non-empty, finite and >= 0 (e.g. :func:`beta_schedule`).
    sweeps_per_temp : int, default 10
        Sweeps at each temperature, >= 1 (the inverse cooling rate).
    method : {"metropolis", "heatbath"}, default "metropolis"
    seed : int, default 0
        Seed of the chain itself (non-negative; not spawned as in :func:`run_mc`).
    start : {"random", "planted"} or ndarray (N_w,), default "random"

    Returns
    -------
    AnnealResult

    Raises
    ------
    DeepglassError
        An invalid ``method``, ``sweeps_per_temp``, ``betas``, ``seed`` or
        ``start``, or an instance without active path.
    """
    check_type(model, RAPModel, "model")
    heat_bath = _check_method(method)
    spt = _check_sweeps("sweeps_per_temp", sweeps_per_temp, 1)
    try:
        raw = np.asarray(betas)
    except ValueError:                  # lists of different lengths
        raw = np.asarray(None)
    if raw.dtype.kind not in "iuf":     # a string, strings, bools: float() would parse them
        raise DeepglassError(f"betas must be a non-empty list of finite values >= 0, "
                             f"got {betas!r:.60}")
    betas = raw.astype(np.float64)
    if betas.ndim != 1 or betas.size == 0 or not np.all(np.isfinite(betas)) or np.any(betas < 0):
        raise DeepglassError("betas must be a non-empty list of finite values >= 0")
    if np.any(np.diff(betas) < 0):
        raise DeepglassError("betas must not decrease: annealing cools (beta rises), as "
                             "beta_schedule gives them")
    nw = model.n_weights
    if nw == 0:
        raise DeepglassError("the instance has no active path (increase N or the probabilities)")
    t0 = time.perf_counter()
    chain = _Chain(model, start, seed, heat_bath)
    trace = np.empty(spt, dtype=np.int64)
    rows = []
    for b in betas:
        acc = chain.run(float(b), spt, trace, 0)
        rows.append({"beta": float(b), "e_mean": float(trace.mean()) / nw,
                     "e_last": float(trace[-1]) / nw, "acceptance": acc / (spt * nw)})
    table = pd.DataFrame(rows)
    return AnnealResult(table=table, final_energy=chain.E / nw, w=chain.w.copy(),
                        seconds=time.perf_counter() - t0)

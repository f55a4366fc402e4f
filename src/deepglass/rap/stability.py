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
- :func:`anneal_study`: both on one instance (:class:`AnnealConfig`), as the
  one call behind ``deepglass rap anneal``: each annealing run and each
  ``beta`` of the BP scan is one unit of :func:`deepglass.runner.run_experiment`
  (carrying its seed, so Ray and this process give the same tables); with a
  run directory also the figure, ``report.md`` and ``summary.json``
  (:mod:`deepglass.rap.reports`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import DeepglassError, check_count, check_seed, check_type
from ..runner import Experiment, Unit, UnitOutput, run_experiment
from ..store import RunDir
from .bp import check_beta, check_number, run_bp
from .annealing import anneal, beta_schedule
from .mc import METHODS, check_mc_sweeps, point_seed, run_mc
from .model import RAPModel, check_parameters

__all__ = ["bp_temperature_scan", "cooling_study", "cooling_table", "anneal_seed", "STARTS",
           "AnnealConfig", "AnnealStudy", "AnnealRun", "anneal_study"]

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
    ``slow``).  The quench at ``beta`` is seeded :func:`~deepglass.rap.mc.point_seed`
    ``(seed, beta)``: one stream per temperature, the same whether the betas run
    together or one at a time.  Cost: ``len(starts) * len(betas)`` BP runs of
    O(M) per iteration.

    Parameters
    ----------
    model : RAPModel
    betas : sequence of float
        Inverse temperatures (finite, > 0; at least one).
    starts : sequence of {"polarized", "random"}, default both
    random_scale : float in (0, 1], default 1.0
        Scale of the random start.
    damping, tol, max_iter : default "auto", 1e-6, 3000
        Passed to :func:`run_bp` (and validated there).
    mc_sweeps : int, default 0
        Sweeps of the Monte Carlo quench at each ``beta`` (:func:`run_mc`,
        >= 2); 0: none.
    mc_method : {"metropolis", "heatbath"}, default "metropolis"
    seed : int, default 0
        Seed of every random BP start, and of the quenches through ``point_seed``.
    advance : callable, optional
        ``advance(1)`` after each ``beta``.

    Returns
    -------
    pandas.DataFrame
        Tidy table: ``solver, start, beta, energy, energy_err, entropy,
        free_energy, q, converged, status, oscillating, iterations, residual,
        damping`` (MC rows: ``start = "quench"``, ``iterations`` = sweeps).

    Raises
    ------
    DeepglassError
        No or invalid ``betas``, unknown ``starts``, ``random_scale`` out of
        range, or an invalid setting of :func:`run_bp` / :func:`run_mc`.

    References
    ----------
    SPEC §6; paper 001 Fig. 5b.
    """
    betas = [check_beta(b) for b in betas]
    if not betas:
        raise DeepglassError("give at least one beta")
    starts = list(starts)
    if not starts or any(s not in STARTS for s in starts):
        raise DeepglassError(f"starts must be among {', '.join(STARTS)}, got {starts!r}")
    if not (0.0 < random_scale <= 1.0):
        raise DeepglassError(f"random_scale must be in (0, 1], got {random_scale!r}")
    mc_sweeps = check_mc_sweeps(mc_sweeps)     # (run_mc would name its own 'sweeps')
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
            m = run_mc(model, b, sweeps=mc_sweeps, method=mc_method, seed=point_seed(seed, b))
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

    Parameters
    ----------
    finals : pandas.DataFrame
        The ``finals`` of :func:`cooling_study` (columns ``sweeps_per_temp``,
        ``final_energy``, ``ground_energy``).

    Returns
    -------
    pandas.DataFrame
        One row per ``sweeps_per_temp``: ``runs``, ``final_energy_mean``,
        ``final_energy_std`` (0 for one run), ``final_energy_min``,
        ``ground_energy`` (``-alpha``, the planted configuration) and
        ``excess = mean - ground`` (>= 0).

    Raises
    ------
    DeepglassError
        ``finals`` not a DataFrame with those columns.
    """
    need = {"sweeps_per_temp", "final_energy", "ground_energy"}
    if not isinstance(finals, pd.DataFrame) or not need <= set(finals.columns):
        missing = sorted(need - set(getattr(finals, "columns", ())))
        raise DeepglassError(f"finals must be cooling_study's finals table (pandas.DataFrame); "
                             f"missing columns: {', '.join(missing)}")
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

    Algorithm: for each rate and repeat, :func:`anneal` from a random start
    along ``beta_schedule(beta_start, beta_end, n_temps, schedule)``, seeded
    :func:`anneal_seed` ``(seed, sweeps_per_temp, repeat)``.  Cost:
    ``sum(sweeps_per_temp) * repeats * n_temps`` sweeps of ``N_w`` proposals.

    Parameters
    ----------
    model : RAPModel
        With at least one active path.
    sweeps_per_temp : sequence of int
        Sweeps per temperature (one cooling rate each), non-empty, >= 1.
    beta_start, beta_end, n_temps, schedule : default 0.1, 3.0, 30, "geometric"
        The schedule (:func:`beta_schedule`).
    repeats : int, default 3
        Runs per rate, >= 1.
    method : {"metropolis", "heatbath"}, default "metropolis"
    seed : int, default 0
        Non-negative.
    advance : callable, optional
        ``advance(1)`` after each run.

    Returns
    -------
    finals : pandas.DataFrame
        One row per ``(sweeps_per_temp, repeat)``: ``cooling_rate``,
        ``final_energy`` (per weight, after the last temperature),
        ``ground_energy = -alpha`` (the planted ground state), ``seconds``.
    traces : pandas.DataFrame
        The per-temperature energies of every run (:class:`AnnealResult` tables).

    Raises
    ------
    DeepglassError
        An invalid schedule, ``sweeps_per_temp``, ``repeats``, ``method`` or ``seed``.

    References
    ----------
    SPEC §6 (simulated annealing); paper 001 Fig. 5a.
    """
    check_type(model, RAPModel, "model")
    betas = beta_schedule(beta_start, beta_end, n_temps, schedule)
    if len(betas) < 2 or not betas[-1] > betas[0]:
        raise DeepglassError(f"annealing cools: beta_end ({beta_end!r}) must exceed beta_start "
                             f"({beta_start!r}), on n_temps >= 2 temperatures (got {n_temps!r})")
    spts = [check_count(s, "sweeps_per_temp") for s in sweeps_per_temp]
    if not spts:
        raise DeepglassError("sweeps_per_temp: give at least one number of sweeps")
    repeats = check_count(repeats, "repeats")
    finals, traces = [], []
    for spt in spts:
        for rep in range(int(repeats)):
            final, trace = _anneal_once(model, betas, spt, rep, method,
                                        anneal_seed(seed, spt, rep))
            finals.append(final)
            traces.append(trace)
            if advance:
                advance(1)
    return pd.DataFrame(finals), pd.concat(traces, ignore_index=True)


def anneal_seed(seed: int, sweeps_per_temp: int, repeat: int) -> int:
    """The seed of annealing run ``repeat`` at ``sweeps_per_temp`` of a study seeded ``seed``.

    Drawn by NumPy's ``SeedSequence`` from the three numbers (in ``[0, 2^63)``),
    so no two runs of one study, and no runs of studies with other seeds, share
    a random stream by construction (``seed + 1000 repeat + sweeps_per_temp``
    made ``(0, 1001, 0)`` and ``(0, 1, 1)``, or studies seeded 0 and 1000, equal).
    """
    seed = check_seed(seed)
    return int(np.random.SeedSequence([seed, int(sweeps_per_temp), int(repeat), 0x414E4E])
               .generate_state(1, np.uint64)[0]) >> 1


def _anneal_once(model: RAPModel, betas, spt: int, rep: int, method: str,
                 seed: int) -> tuple[dict, pd.DataFrame]:
    """One annealing run: its ``finals`` row and its per-temperature trace."""
    res = anneal(model, betas, sweeps_per_temp=spt, method=method, seed=seed)
    final = {"sweeps_per_temp": spt, "repeat": rep, "cooling_rate": 1.0 / spt,
             "final_energy": res.final_energy, "ground_energy": -model.alpha,
             "seconds": res.seconds}
    return final, res.table.assign(sweeps_per_temp=spt, repeat=rep)


# -- the study as one call (deepglass rap anneal) -----------------------------------------
@dataclass
class AnnealConfig:
    """Everything that defines a Fig. 5 study of one instance.

    The instance: ``N``, ``(a1, a2)``, dilutions ``p``, ``construction``,
    ``seed``.  Annealing: ``sweeps`` per temperature (one cooling rate each),
    ``repeats`` runs per rate along a ``schedule`` of ``n_temps`` inverse
    temperatures from ``beta_start`` to ``beta_end`` (0 allowed for a linear
    schedule).  BP scan: ``scan_points`` values of ``beta`` from ``beta_start``
    (one step above it where it is 0) to ``scan_beta_max`` (default
    ``beta_end``), from each of ``starts``, at most ``max_iter`` iterations,
    with a ``mc_sweeps`` Monte Carlo quench per ``beta`` (0: none).
    :meth:`validate` checks the ranges below (one-line :class:`DeepglassError`).

    Attributes
    ----------
    N : int, default 100
    a1, a2 : float, default 0.5, 0.5
    p : list of float, default [0, 0, 0]
        The instance (:class:`RAPModel`; three dilutions).
    sweeps : list of int, default [1, 3, 10, 30, 100]
        Sweeps per temperature, each >= 1.
    beta_start, beta_end : float, default 0.1, 3.0
        ``0 < beta_start < beta_end`` (``beta_start = 0`` for a linear schedule).
    n_temps : int, default 30
        >= 2 (the schedule's first and last temperatures are distinct).
    schedule : {"geometric", "linear"}, default "geometric"
    repeats : int, default 3
        >= 1.
    scan_points : int, default 15
        >= 2.
    scan_beta_max : float, optional
        > ``beta_start``; default ``beta_end``.
    starts : list of {"polarized", "random"}, default both
    max_iter : int, default 5000
        >= 1.
    mc_sweeps : int, default 500
        >= 0 (validated); a quench needs >= 2 (:func:`run_mc`, at run time).
    method : {"metropolis", "heatbath"}, default "metropolis"
    construction : {"units", "independent"}, default "units"
    seed : int, default 0
    max_memory_gb : float, default 4.0

    References
    ----------
    SPEC §6; paper 001 Fig. 5.
    """

    N: int = 100
    a1: float = 0.5
    a2: float = 0.5
    p: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    sweeps: list = field(default_factory=lambda: [1, 3, 10, 30, 100])
    beta_start: float = 0.1
    beta_end: float = 3.0
    n_temps: int = 30
    schedule: str = "geometric"
    repeats: int = 3
    scan_points: int = 15
    scan_beta_max: float | None = None
    starts: list = field(default_factory=lambda: list(STARTS))
    max_iter: int = 5000
    mc_sweeps: int = 500
    method: str = "metropolis"
    construction: str = "units"
    seed: int = 0
    max_memory_gb: float = 4.0

    def validate(self) -> "AnnealConfig":
        """Check every parameter (one-line :class:`DeepglassError`), before any work."""
        self.starts = list(self.starts)
        if not self.starts or any(s not in STARTS for s in self.starts):
            raise DeepglassError(f"starts must be among {', '.join(STARTS)}, got {self.starts!r}")
        self.scan_points = check_count(self.scan_points, "scan_points", least=2)
        self.n_temps = check_count(self.n_temps, "n_temps", least=2)     # a schedule cools
        self.sweeps = [check_count(v, "sweeps") for v in self.sweeps]
        if not self.sweeps:
            raise DeepglassError("sweeps: give at least one number of sweeps per temperature")
        self.repeats = check_count(self.repeats, "repeats")
        if self.method not in METHODS:
            raise DeepglassError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        self.max_iter = check_count(self.max_iter, "max_iter")
        self.mc_sweeps = check_mc_sweeps(self.mc_sweeps)     # run_mc samples >= 2
        if len(self.p) != 3:
            raise DeepglassError("p must hold three dilution probabilities")
        check_number("beta_end", self.beta_end, 0.0, lo_open=True)
        if self.scan_beta_max is not None:
            check_number("scan_beta_max", self.scan_beta_max, 0.0, lo_open=True)
        check_number("beta_start", self.beta_start, 0.0, lo_open=self.schedule == "geometric")
        self.schedule_betas()
        self.scan_betas()
        # a schedule that heats (or stays put) is a swapped pair, not an annealing run
        if not self.beta_end > self.beta_start:
            raise DeepglassError(f"beta_end ({self.beta_end:g}) must exceed beta_start "
                                 f"({self.beta_start:g}): annealing cools")
        if self.scan_beta_max is not None and not self.scan_beta_max > self.beta_start:
            raise DeepglassError(f"scan_beta_max ({self.scan_beta_max:g}) must exceed "
                                 f"beta_start ({self.beta_start:g})")
        check_parameters(self.N, (self.a1, self.a2), tuple(self.p), self.construction,
                         self.max_memory_gb)
        return self

    def schedule_betas(self) -> np.ndarray:
        """The annealing schedule (:func:`deepglass.rap.beta_schedule`)."""
        return beta_schedule(self.beta_start, self.beta_end, self.n_temps, self.schedule)

    def scan_betas(self) -> list[float]:
        """The BP scan's grid, linear from ``beta_start`` (from one step above 0 where
        ``beta_start = 0``: BP needs ``beta > 0``)."""
        top = self.scan_beta_max if self.scan_beta_max is not None else self.beta_end
        if float(self.beta_start) == 0.0:
            return [float(b) for b in np.linspace(0.0, top, int(self.scan_points) + 1)[1:]]
        return [float(b) for b in beta_schedule(self.beta_start, top, self.scan_points,
                                                "linear")]

    def model(self) -> RAPModel:
        """The instance (refused when it has no active path)."""
        m = RAPModel(self.N, a=(self.a1, self.a2), p=tuple(self.p),
                     construction=self.construction, seed=self.seed,
                     max_memory_gb=self.max_memory_gb)
        if m.n_factors == 0:
            raise DeepglassError("the instance has no active path (increase N or the "
                                 "probabilities)")
        return m

    def to_dict(self) -> dict:
        """The run's ``config.toml`` entries (the memory cap changes no number)."""
        return {"N": self.N, "a1": self.a1, "a2": self.a2, "p": list(self.p),
                "sweeps": list(self.sweeps), "beta_start": self.beta_start,
                "beta_end": self.beta_end, "n_temps": self.n_temps, "schedule": self.schedule,
                "repeats": self.repeats, "scan_points": self.scan_points,
                "mc_sweeps": self.mc_sweeps, "method": self.method,
                "construction": self.construction, "seed": self.seed,
                "scan_beta_max": self.scan_beta_max, "starts": list(self.starts),
                "max_iter": self.max_iter}


@dataclass(frozen=True)
class AnnealUnit:
    """One unit of the study: an annealing run (``part="anneal"``: its
    ``sweeps_per_temp``, ``repeat``) or one ``beta`` of the BP scan
    (``part="scan"``), with its seed."""

    part: str
    seed: int
    sweeps_per_temp: int = 0
    repeat: int = 0
    beta: float = 0.0


def _compute_unit(shared, unit: AnnealUnit) -> UnitOutput:
    """The runner's unit: one annealing run or one ``beta`` of the BP scan."""
    model, cfg = shared
    t0 = time.perf_counter()
    if unit.part == "anneal":
        final, trace = _anneal_once(model, cfg.schedule_betas(), unit.sweeps_per_temp,
                                    unit.repeat, cfg.method, unit.seed)
        tables = {"annealing": pd.DataFrame([final]), "annealing_traces": trace}
    else:
        tables = {"temperature_scan": bp_temperature_scan(
            model, [unit.beta], starts=cfg.starts, max_iter=cfg.max_iter,
            mc_sweeps=cfg.mc_sweeps, mc_method=cfg.method, seed=unit.seed)}
    dt = time.perf_counter() - t0
    tables["units"] = pd.DataFrame([{"part": unit.part, "sweeps_per_temp": unit.sweeps_per_temp,
                                     "repeat": unit.repeat, "beta": unit.beta,
                                     "seed": unit.seed, "seconds": dt}])
    return UnitOutput(tables, info={"compute_seconds": dt})


@dataclass
class AnnealStudy:
    """Tables of a Fig. 5 study (:func:`anneal_study`).

    Attributes
    ----------
    config : AnnealConfig
    instance : dict
        :meth:`RAPModel.summary` of the instance.
    annealing : pandas.DataFrame
        One row per run: final energy, ground state (:func:`cooling_study`'s ``finals``).
    annealing_traces : pandas.DataFrame
        Energy per temperature of every run.
    temperature_scan : pandas.DataFrame
        BP per ``beta`` and start, MC quenches (:func:`bp_temperature_scan`).
    annealing_summary : pandas.DataFrame
        :func:`cooling_table` of ``annealing``.
    seconds : float
    resumed : int
        Units read back from the run directory (a resumed run).
    """

    config: AnnealConfig
    instance: dict
    annealing: pd.DataFrame
    annealing_traces: pd.DataFrame
    temperature_scan: pd.DataFrame
    annealing_summary: pd.DataFrame
    seconds: float = 0.0
    resumed: int = 0

    def first_unconverged(self) -> dict:
        """The smallest ``beta`` at which BP did not converge, per start (None: never)."""
        bp = self.temperature_scan[self.temperature_scan.solver == "bp"]
        out = {}
        for st, d in bp.groupby("start"):
            bad = d[~d.converged.astype(bool)]
            out[st] = float(bad.beta.min()) if len(bad) else None
        return out

    def headline(self) -> dict:
        """``summary.json["rap-anneal"]``."""
        return {"kind": "rap-anneal", **self.instance, "ground_energy": -self.instance["alpha"],
                "final_energy_by_sweeps": self.annealing_summary.to_dict("records"),
                "bp_first_unconverged_beta": self.first_unconverged()}


@dataclass
class AnnealRun(Experiment):
    """The Fig. 5 study as a :class:`deepglass.runner.Experiment`: one unit per
    annealing run (``a<sweeps>_r<repeat>``) and per ``beta`` of the BP scan
    (``b<k>``), the instance shared; marker table ``units`` (what each unit
    was, its seed and time)."""

    cfg: AnnealConfig
    instance: RAPModel
    kind: str = "rap-anneal"
    tables = ("units", "annealing", "annealing_traces", "temperature_scan")
    compute = staticmethod(_compute_unit)

    def config(self) -> dict:
        return self.cfg.to_dict()

    def units(self) -> list[Unit]:
        cfg = self.cfg
        runs = [Unit(f"a{spt:05d}_r{rep:03d}",
                     AnnealUnit("anneal", anneal_seed(cfg.seed, spt, rep), spt, rep))
                for spt in cfg.sweeps for rep in range(int(cfg.repeats))]
        # each BP run starts afresh, seeded by the instance seed; the MC quench of
        # each beta gets its own stream from it (as bp_temperature_scan)
        scan = [Unit(f"b{k:03d}", AnnealUnit("scan", int(cfg.seed), beta=b))
                for k, b in enumerate(cfg.scan_betas())]
        return runs + scan

    def shared(self):
        return self.instance, self.cfg

    def finish(self, stored, run) -> AnnealStudy:
        finals = stored.table("annealing")
        res = AnnealStudy(self.cfg, self.instance.summary(), finals,
                          stored.table("annealing_traces"), stored.table("temperature_scan"),
                          cooling_table(finals),
                          seconds=stored.seconds, resumed=stored.resumed)
        if run is not None:
            from .reports import write_anneal_run

            write_anneal_run(run, res)
        return res


def anneal_study(cfg: AnnealConfig, run=None, executor=None, *, address: str | None = None,
                 force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> AnnealStudy:
    """Run (or resume) a Fig. 5 study: annealing against cooling rate and BP
    against ``beta`` on the instance of ``cfg`` (the one call behind
    ``deepglass rap anneal``).

    Parameters
    ----------
    cfg : AnnealConfig
        Validated first, the instance built once (shared by every unit).
    run : str, Path or deepglass.store.RunDir, optional
        Run directory: units written as they finish and skipped when the same
        study runs again; then the tables ``annealing``, ``annealing_traces``,
        ``temperature_scan``, ``annealing_summary``, ``figures/stability.png``,
        ``report.md`` and ``summary.json``.  A :class:`RunDir` opened by the
        caller keeps its kind.
    executor, address, force, progress
        As :func:`deepglass.runner.run_experiment` (progress in units).

    Returns
    -------
    AnnealStudy

    Raises
    ------
    DeepglassError
        ``cfg`` not an :class:`AnnealConfig` or invalid (:meth:`AnnealConfig.validate`),
        or an instance without active path.

    Notes
    -----
    Cost: ``len(sweeps) * repeats`` annealing runs of ``n_temps *
    sweeps_per_temp`` sweeps, and ``scan_points * len(starts)`` BP runs.

    References
    ----------
    SPEC §6; paper 001 Fig. 5.
    """
    check_type(cfg, AnnealConfig, "cfg")
    cfg.validate()
    exp = AnnealRun(cfg, cfg.model(), kind=run.kind if isinstance(run, RunDir) else "rap-anneal")
    return run_experiment(exp, run, executor, address=address, force=force, progress=progress)

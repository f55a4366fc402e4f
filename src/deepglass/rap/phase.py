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
  bracketed the same way); ``"above-scan"`` when the ordered branch is lower
  over the whole scan, ``"below-scan"`` when it is already higher at the
  smallest dilution (``p_c`` below the scan), ``"none"`` when it never orders
  (``p_c`` NaN in the last three);
- the hysteresis (coexistence) window ``[p_lo, p_sp]`` where the two branches
  are different fixed points (``low_censored`` when ``p_lo`` is the scan
  minimum, as for this 3-body model).

In the units construction (the paper's) the three populations have different
degree laws, so which population is diluted matters; in the independent one
only the product ``(1-p1)(1-p2)(1-p3)`` enters.


Each ``(beta, a2)`` (all its samples, grid points and bisection steps) is one
unit of :func:`deepglass.runner.run_experiment` (:func:`scan_case` in
:mod:`deepglass.rap.continuation`), so the cases run in this process or on Ray
with the same numbers, and a run directory resumes where it stopped.
:func:`scan_phase` is the one call: tables, and with a run directory also the
figures, ``report.md`` and ``summary.json`` (:mod:`deepglass.rap.reports`).
Cost per grid point and sample: two BP runs (O(M) per iteration, few
iterations thanks to continuation, many only next to the spinodal), plus
``mc_sweeps N_w`` Monte Carlo proposals; a bisection step costs two BP runs per
sample.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import DeepglassError, check_count, check_seed, check_type
from ..runner import Experiment, Unit, UnitOutput, run_experiment
from ..store import RunDir
from .reports import phase_figure
from .bp import check_beta, check_number
from .continuation import Case, case_of, instance_seed, scan_case
from .mc import METHODS, check_mc_sweeps
from .model import check_parameters, normalize_construction
from .transitions import aggregate_points, find_transitions

__all__ = ["PhaseConfig", "PhaseResult", "PhaseScan", "scan_phase", "find_transitions",
           "aggregate_points", "unit_id", "p_grid", "SCALES", "scan_case"]

SCALES = ("linear", "log1m")
#: fewest sweeps of a point's Monte Carlo quench (0: none)
MC_SWEEPS_MIN = 4


def p_grid(p_min: float, p_max: float, n: int, scale: str = "linear") -> list[float]:
    """``n`` dilutions from ``p_min`` to ``p_max``, equally spaced in ``p``
    (``"linear"``) or in ``log(1 - p)`` (``"log1m"``, needs ``p_max < 1``).

    A linear grid starts at ``p_min`` and ends at ``p_max`` exactly; the points
    between are rounded to 6 decimals, or to as many more as keep each within
    1e-3 of a step of its exact value (a grid of steps 1e-7 keeps 10 decimals),
    so the grid is strictly increasing inside ``[p_min, p_max]``.

    Parameters
    ----------
    p_min, p_max : float
        Ends of the grid, numbers with ``0 <= p_min < p_max <= 1``.
    n : int
        Number of points, an integer >= 2.
    scale : {"linear", "log1m"}, default "linear"
        Equal steps in ``p``, or in ``log(1 - p)`` (dense near ``p = 1``;
        needs ``p_max < 1``).

    Returns
    -------
    list of float

    Raises
    ------
    DeepglassError
        An unknown ``scale``, a bad ``n`` or bounds, or a linear grid whose
        steps fall below float resolution.

    Examples
    --------
    >>> p_grid(0.5, 0.9, 5)
    [0.5, 0.6, 0.7, 0.8, 0.9]
    """
    if scale not in SCALES:
        raise DeepglassError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise DeepglassError(f"the grid needs an integer n >= 2 points, got {n!r}")
    for name, v in (("p_min", p_min), ("p_max", p_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise DeepglassError(f"{name} must be a number, got {v!r}")
    if not (0.0 <= p_min < p_max <= 1.0):
        raise DeepglassError(f"need 0 <= p_min < p_max <= 1, got p_min = {p_min}, p_max = {p_max}")
    if scale == "linear":
        exact = np.linspace(float(p_min), float(p_max), int(n))
        step = (float(p_max) - float(p_min)) / (int(n) - 1)
        for digits in range(6, 18):
            v = np.round(exact, digits)
            if np.max(np.abs(v - exact)) <= 1e-3 * step:
                break
        else:
            v = exact
        v[0], v[-1] = float(p_min), float(p_max)
        if not np.all(np.diff(v) > 0):
            raise DeepglassError(f"the linear grid of {n} dilutions in [{p_min}, {p_max}] has "
                                 "steps below float resolution; use fewer points or --scale "
                                 "log1m")
        return [float(x) for x in v]
    if p_max >= 1.0:
        raise DeepglassError("a log(1 - p) grid needs p_max < 1")
    return [float(1.0 - v) for v in np.geomspace(1.0 - p_min, 1.0 - p_max, n)]


@dataclass
class PhaseConfig:
    """Everything that defines a phase-diagram scan (stored in ``config.toml``).

    ``p_values`` are the dilutions of population ``population``; the other two
    populations keep ``p_fixed``.  ``betas`` and ``a2s`` are scanned as outer
    loops (Fig. 4).  ``mc_sweeps = 0`` skips Monte Carlo.  ``scale`` is how
    bisection splits a bracket (``"log1m"``: in ``log(1 - p)``); bisection stops at
    a bracket narrower than ``bracket_tol`` (in ``p``) or after ``max_bisect``
    steps.  ``max_iter`` caps each BP run (continuation keeps most runs short).
    :meth:`validate` (called by :func:`scan_phase`) checks the ranges below and
    the memory of the largest instance, raising a one-line :class:`DeepglassError`.

    Attributes
    ----------
    N : int, default 100
        Layer width of every instance.
    population : {1, 2, 3}, default 1
        The diluted population.
    p_values : list of float, default 25 values from 0.5 to 0.98
        At least two strictly increasing dilutions in [0, 1] (< 1 for "log1m").
    betas : list of float, default [1.0]
        Inverse temperatures (finite, > 0; at least one).
    a1 : float, default 0.5
    a2s : list of float, default [0.5]
        Activation probabilities (in [0, 1]; at least one ``a2``).
    p_fixed : list of float, default [0, 0, 0]
        The three dilutions; the entry of ``population`` is replaced by the scan.
    samples : int, default 2
        Disorder samples (coupled instance families), >= 1.
    construction : {"units", "independent"}, default "units"
    scale : {"linear", "log1m"}, default "linear"
    bracket_tol : float, default 0.002
        > 0.
    max_bisect : int, default 12
        >= 0.
    seed : int, default 0
        Non-negative.
    damping : float in [0, 1) or "auto", default "auto"
    tol : float, default 1e-6
    max_iter : int, default 20000
        BP settings (:func:`run_bp`); ``max_iter >= 1``.
    init_scale : float in (0, 1], default 0.1
        Scale of the random BP start.
    mc_sweeps : int, default 1000
        0 (no Monte Carlo) or >= 4.
    mc_method : {"metropolis", "heatbath"}, default "metropolis"
    q_threshold : float, default 0.05
        Overlap above which the polarized branch counts as ordered.
    max_memory_gb : float, default 4.0
        Memory budget of one instance's BP messages.

    References
    ----------
    SPEC §6 (phase diagram); paper 001 Figs. 3-4.
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
        bad = [i for i in range(1, len(pv)) if not pv[i] > pv[i - 1]]
        if bad:
            i = bad[0]
            raise DeepglassError(f"dilution values (p_values) must be strictly increasing: "
                                 f"{pv[i]!r} follows {pv[i - 1]!r} (at position {i})")
        self.p_values = pv
        self.betas = [check_beta(b) for b in self.betas]
        if not self.betas or not self.a2s:
            raise DeepglassError("give at least one beta and one a2")
        if len(self.p_fixed) != 3:
            raise DeepglassError("p_fixed must hold three probabilities")
        self.samples = check_count(self.samples, "samples")
        self.seed = check_seed(self.seed)
        self.max_bisect = check_count(self.max_bisect, "max_bisect", least=0)
        self.max_iter = check_count(self.max_iter, "max_iter")
        self.mc_sweeps = check_mc_sweeps(self.mc_sweeps, MC_SWEEPS_MIN)
        self.construction = normalize_construction(self.construction)
        if self.scale not in SCALES:
            raise DeepglassError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if self.scale == "log1m" and max(pv) >= 1.0:
            raise DeepglassError("a log(1 - p) scan needs dilutions < 1")
        self.bracket_tol = check_number("bracket_tol", self.bracket_tol, 0.0, lo_open=True)
        self.tol = check_number("tol", self.tol, 0.0, lo_open=True)
        self.q_threshold = check_number("q_threshold", self.q_threshold, 0.0, 1.0)
        if self.mc_method not in METHODS:
            raise DeepglassError(f"mc_method must be one of {', '.join(METHODS)}")
        if self.damping != "auto" and not (isinstance(self.damping, (int, float))
                                           and 0.0 <= self.damping < 1.0):
            raise DeepglassError(f"damping must be 'auto' or in [0, 1), got {self.damping!r}")
        self.init_scale = check_number("init_scale", self.init_scale, 0.0, 1.0, lo_open=True)
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
    return instance_seed(cfg.seed, s)


@dataclass
class PhaseResult:
    """Tables of a scan (:func:`scan_phase`).

    Attributes
    ----------
    config : PhaseConfig
    points : pandas.DataFrame
        One row per instance, ``p`` and solver (BP branches, grid and bisection
        points; MC).
    summary : pandas.DataFrame
        Sample means and standard errors (:func:`aggregate_points`).
    transitions : pandas.DataFrame
        One row per ``(beta, a2)``: ``p_c``, spinodal, hysteresis window.
    degrees : pandas.DataFrame
        Degree distributions of the instances (per ``a2``).
    seconds : float
    resumed : int
        Units read back from the run directory (a resumed run).
    """

    config: PhaseConfig
    points: pd.DataFrame
    summary: pd.DataFrame
    transitions: pd.DataFrame
    degrees: pd.DataFrame
    seconds: float = 0.0
    resumed: int = 0

    def headline(self) -> dict:
        """``summary.json["rap-phase"]``: sizes, time and the transitions."""
        cfg = self.config
        return {"kind": "rap-phase", "N": cfg.N, "population": cfg.population,
                "points": int(len(self.points)), "seconds": self.seconds,
                "transitions": self.transitions.replace({np.nan: None}).to_dict("records")}


def _compute_case(cfg: PhaseConfig, case: Case) -> UnitOutput:
    """The runner's unit: one ``(beta, a2)`` (:func:`scan_case`)."""
    t0 = time.perf_counter()
    points, transition, degrees = scan_case(cfg, case)
    tables = {"points": points, "transitions": transition}
    if case.ib == 0:   # the degrees do not depend on beta: stored once per a2
        tables["degrees"] = degrees
    return UnitOutput(tables, info={"compute_seconds": time.perf_counter() - t0})


def phase_outputs(config) -> list[str]:
    """The figures a scan of configuration ``config`` (a dict) names: one per
    inverse temperature and ``a2`` (:mod:`deepglass.kind_outputs`)."""
    return [f"figures/{phase_figure(b, a)}" for b in config.get("betas", ())
            for a in config.get("a2s", ())]


@dataclass
class PhaseScan(Experiment):
    """The phase-diagram scan as a :class:`deepglass.runner.Experiment`: one
    unit per ``(beta, a2)`` (id :func:`unit_id`), tables ``points`` (the
    marker), ``transitions`` and ``degrees``; ``finish`` builds the
    :class:`PhaseResult` and, with a run directory, writes its tables,
    figures, ``report.md`` and ``summary.json``."""

    cfg: PhaseConfig
    kind: str = "rap-phase"
    tables = ("points", "transitions", "degrees")
    compute = staticmethod(_compute_case)

    def config(self) -> dict:
        # (the memory budget changes no result: a resume may raise it)
        return {k: v for k, v in self.cfg.to_dict().items() if k != "max_memory_gb"}

    def units(self) -> list[Unit]:
        return [Unit(unit_id(ib, ia), case_of(self.cfg, ib, ia))
                for ib in range(len(self.cfg.betas)) for ia in range(len(self.cfg.a2s))]

    def shared(self) -> PhaseConfig:
        return self.cfg

    def finish(self, stored, run) -> PhaseResult:
        points = stored.table("points")
        grid = points[(points["branch"] == "random") & (points["kind"] == "grid")]
        empty = int((grid["status"] == "empty").sum())
        if empty:   # (rap bp / mc refuse such an instance; a scan records it and goes on)
            warnings.warn(f"{empty} of {len(grid)} grid instances have no active path (no "
                          "factor at that dilution and N): nothing was solved there; raise "
                          "N or lower the dilution", stacklevel=2)
        res = PhaseResult(self.cfg, points, aggregate_points(points),
                          stored.table("transitions"), stored.table("degrees"),
                          seconds=stored.seconds, resumed=stored.resumed)
        if run is not None:
            from .reports import write_phase_run

            write_phase_run(run, res)
        return res


def scan_phase(cfg: PhaseConfig, run=None, executor=None, *, address: str | None = None,
               force: bool = False,
               progress: Callable[[int, int], None] | None = None) -> PhaseResult:
    """Run (or resume) a phase-diagram scan; see the module docstring.

    Parameters
    ----------
    cfg : PhaseConfig
        Validated first (every instance's size checked before any work).
    run : str, Path or deepglass.store.RunDir, optional
        Run directory: each ``(beta, a2)`` case is written as it finishes
        (units ``points``, ``transitions``, ``degrees``) and skipped when the
        same scan runs again; then ``points``, ``summary``, ``transitions``,
        ``degrees``, one figure per case, ``pc.png``, ``report.md`` and
        ``summary.json``.  A :class:`RunDir` opened by the caller keeps its kind.
    executor : Executor, {"inprocess", "ray"} or None
        Where the cases run (:func:`deepglass.runner.run_experiment`); every
        executor gives the same tables (the cases carry their seeds).
    address : str, optional
        Ray cluster address (implies Ray).
    force : bool
        Replace the units of another scan configuration in ``run``.
    progress : callable, optional
        ``progress(done, total)`` in cases.

    Returns
    -------
    PhaseResult

    Raises
    ------
    DeepglassError
        ``cfg`` not a :class:`PhaseConfig` or invalid (:meth:`PhaseConfig.validate`;
        ``TooLargeError`` for an instance over its memory budget).

    References
    ----------
    SPEC §6 (phase diagram); paper 001 Figs. 3-4.
    """
    check_type(cfg, PhaseConfig, "cfg")
    cfg.validate()
    exp = PhaseScan(cfg, kind=run.kind if isinstance(run, RunDir) else "rap-phase")
    return run_experiment(exp, run, executor, address=address, force=force, progress=progress)

"""``deepglass rap``: the random active path model (SPEC section 6, paper 001).

Sub-commands:

- ``bp``: belief propagation on one instance (Bethe free energy, energy, entropy, q);
- ``mc``: a Monte Carlo quench on one instance (+ thermodynamic integration);
- ``phase``: the phase diagram under dilution of one population (Figs. 3-4);
- ``anneal``: BP stability against beta and annealing against cooling rate (Fig. 5);
- ``student``: activation probabilities of a trained ReLU student (Fig. 2).
"""

from __future__ import annotations

import json
import math
from contextlib import ExitStack
from typing import List, Optional

import typer

from ..errors import DeepglassError
from ..store import check_out_dir
from .common import (check_force, ADDRESS_OPTION, EXECUTOR_OPTION, FORCE_OPTION, JSON_OPTION, OUT_OPTION,
                    out_record, print_json, print_kv, resume_hint, reused_note, unit_progress)

rap_app = typer.Typer(name="rap", help="Random active path model: BP, Monte Carlo, phase diagram.",
                      no_args_is_help=True, add_completion=False)

# -- shared options ---------------------------------------------------------
_N = typer.Option(100, "--N", "-N", help="Width of input and hidden layers.")
_A1 = typer.Option(0.5, "--a1", help="Activation probability of hidden layer 1.")
_P1 = typer.Option(0.0, "--p1", help="Dilution probability of W1.")
_P2 = typer.Option(0.0, "--p2", help="Dilution probability of W2.")
_P3 = typer.Option(0.0, "--p3", help="Dilution probability of W3.")
_CONS = typer.Option("units", "--construction",
                     help="units (paper: hidden units active and synapses present "
                          "independently, every path they allow active) or independent "
                          "(each path active independently).")
_SEED = typer.Option(0, "--seed", help="Seed of the instance (and of the solver).")
_MEM = typer.Option(4.0, "--max-memory-gb", help="Refuse instances needing more memory.")


def _probabilities(**values) -> None:
    """Each ``--name`` (``p_fixed`` is ``--p-other``) a probability in [0, 1]."""
    for name, v in values.items():
        opt = "--p-other" if name == "p_fixed" else "--" + name.replace("_", "-")
        if not 0.0 <= v <= 1.0:
            raise DeepglassError(f"{opt} must be a probability in [0, 1], got {v:g}")


def _positive_betas(opt: str, values) -> None:
    for b in values:
        if not b > 0:
            raise DeepglassError(f"{opt} must be > 0, got {b:g}")


def _method(opt: str, method: str) -> None:
    from ..rap.mc import METHODS

    if method not in METHODS:
        raise DeepglassError(f"{opt} must be {' or '.join(METHODS)}, got {method!r}")


def _model(N, a1, a2, p1, p2, p3, construction, seed, max_memory_gb):
    from ..rap import RAPModel

    _probabilities(a1=a1, a2=a2, p1=p1, p2=p2, p3=p3)
    return RAPModel(N, a=(a1, a2), p=(p1, p2, p3), construction=construction, seed=seed,
                    max_memory_gb=max_memory_gb)


def _damping(text: str):
    if text == "auto":
        return "auto"
    try:
        d = float(text)
    except ValueError:
        d = float("nan")
    if not 0.0 <= d < 1.0:
        raise DeepglassError(f"--damping must be a number in [0, 1) or auto, got {text!r}")
    return d


# -- bp ----------------------------------------------------------------------
@rap_app.command("bp")
def bp_cmd(
    N: int = _N, a1: float = _A1,
    a2: float = typer.Option(0.5, "--a2", help="Activation probability of hidden layer 2."),
    p1: float = _P1, p2: float = _P2, p3: float = _P3,
    beta: float = typer.Option(1.0, "--beta", help="Inverse temperature (> 0)."),
    start: str = typer.Option("best", "--start", help="random, polarized, zero, or best: run "
                              "random and polarized and report the converged one of lower f."),
    damping: str = typer.Option("auto", "--damping", help="Damping of factor messages in "
                                "[0, 1), or auto (raised only when BP oscillates)."),
    tol: float = typer.Option(1e-6, "--tol", help="Convergence threshold on max |dm|."),
    max_iter: int = typer.Option(3000, "--max-iter", help="Maximum iterations."),
    init_scale: Optional[float] = typer.Option(
        None, "--init-scale", help="Amplitude of the start messages (default: 0.1 for a "
        "random start, 1 for a polarized one)."),
    construction: str = _CONS, seed: int = _SEED, max_memory_gb: float = _MEM,
    as_json: bool = JSON_OPTION,
):
    """Belief propagation on one instance: Bethe f, e, s, q per weight (SPEC section 6).

    With ``--start best`` (default) BP runs from a small random start (paramagnetic
    branch) and from the polarized start (spin-glass branch) and reports the
    converged fixed point of lower Bethe free energy (``start`` names it).
    """
    from ..rap import run_bp

    _positive_betas("--beta", [beta])
    if init_scale is not None and not 0.0 <= init_scale <= 1.0:
        raise DeepglassError(f"--init-scale must be in [0, 1], got {init_scale:g}")
    if start not in ("random", "polarized", "zero", "best"):
        raise DeepglassError(f"--start must be random, polarized, zero or best, got {start!r}")
    model = _model(N, a1, a2, p1, p2, p3, construction, seed, max_memory_gb)
    if model.n_factors == 0:
        raise DeepglassError("the instance has no active path (increase N or the probabilities)")

    def solve(st):
        scale = init_scale if init_scale is not None else (1.0 if st == "polarized" else 0.1)
        return run_bp(model, beta, start=st, damping=_damping(damping), tol=tol, max_iter=max_iter,
                      seed=seed, init_scale=scale)

    if start == "best":
        runs = {st: solve(st) for st in ("random", "polarized")}
        ok = [r for r in runs.values() if r.converged] or list(runs.values())
        r = min(ok, key=lambda r: r.free_energy if math.isfinite(r.free_energy) else math.inf)
        extra = {f"free_energy_{k}": v.free_energy for k, v in runs.items()}
        extra.update({f"converged_{k}": v.converged for k, v in runs.items()})
    else:
        r, extra = solve(start), {}
    out = {**model.summary(), **r.to_dict(), **extra}
    if as_json:
        print_json(out)
    else:
        print_kv(f"RAP belief propagation, beta = {beta:g}", out)


# -- mc ----------------------------------------------------------------------
@rap_app.command("mc")
def mc_cmd(
    N: int = _N, a1: float = _A1,
    a2: float = typer.Option(0.5, "--a2", help="Activation probability of hidden layer 2."),
    p1: float = _P1, p2: float = _P2, p3: float = _P3,
    beta: float = typer.Option(1.0, "--beta", help="Inverse temperature (> 0)."),
    sweeps: int = typer.Option(2000, "--sweeps", min=2,
                               help="Total sweeps (N_w proposals each), >= 2."),
    equilibration: Optional[int] = typer.Option(None, "--equilibration",
                                                help="Discarded sweeps (default: half)."),
    method: str = typer.Option("metropolis", "--method", "--mc-method",
                               help="Monte Carlo update: metropolis or heatbath."),
    ti_points: int = typer.Option(20, "--ti-points",
                                  help="Thermodynamic-integration grid for f and s (0: skip; else >= 3)."),
    ti_sweeps: int = typer.Option(100, "--ti-sweeps", min=2,
                                  help="Sweeps per integration point, >= 2."),
    construction: str = _CONS, seed: int = _SEED, max_memory_gb: float = _MEM,
    as_json: bool = JSON_OPTION,
):
    """Monte Carlo quench from a random start to beta: e, q per weight (SPEC section 6)."""
    from ..rap import run_mc

    _positive_betas("--beta", [beta])
    _method("--method", method)
    from ..rap.mc import check_ti_points

    check_ti_points(ti_points, "--ti-points")
    if equilibration is not None and equilibration >= sweeps - 1:
        raise DeepglassError(f"--equilibration ({equilibration}) must leave >= 2 sampling sweeps "
                             f"of --sweeps ({sweeps})")
    model = _model(N, a1, a2, p1, p2, p3, construction, seed, max_memory_gb)
    r = run_mc(model, beta, sweeps=sweeps, equilibration=equilibration, method=method,
               seed=seed, ti_points=ti_points, ti_sweeps=ti_sweeps)
    out = {**model.summary(), **r.to_dict(),
           "free_energy_method": "thermodynamic integration" if ti_points else "none"}
    if as_json:
        print_json(out)
    else:
        print_kv(f"RAP Monte Carlo, beta = {beta:g}", out)


# -- phase -------------------------------------------------------------------
@rap_app.command("phase")
def phase_cmd(
    N: int = _N,
    population: int = typer.Option(1, "--population", help="Diluted population: 1, 2 or 3."),
    p_min: float = typer.Option(0.5, "--p-min", help="Smallest dilution."),
    p_max: float = typer.Option(0.98, "--p-max", help="Largest dilution."),
    n_points: int = typer.Option(25, "--n-points", help="Number of dilution values."),
    scale: str = typer.Option("linear", "--scale", help="Grid and bisection in p (linear) or "
                              "in log(1 - p) (log1m: transitions close to p = 1)."),
    bracket_tol: float = typer.Option(0.002, "--bracket-tol", help="Bisect p_c and the "
                                      "spinodal to brackets narrower than this."),
    beta: List[float] = typer.Option([1.0], "--beta", help="Inverse temperature(s); repeat."),
    a1: float = _A1,
    a2: List[float] = typer.Option([0.5], "--a2", help="Activation probability of hidden "
                                   "layer 2; repeat for Fig. 4."),
    p_fixed: float = typer.Option(0.0, "--p-other", help="Dilution of the other populations."),
    samples: int = typer.Option(2, "--samples", help="Disorder samples per point."),
    mc_sweeps: int = typer.Option(1000, "--mc-sweeps", help="MC sweeps per point (0: no MC)."),
    mc_method: str = typer.Option("metropolis", "--mc-method",
                                  help="Monte Carlo update: metropolis or heatbath."),
    damping: str = typer.Option("auto", "--damping", help="BP damping in [0, 1) or auto."),
    max_iter: int = typer.Option(20000, "--max-iter", help="BP iteration limit (runs that "
                                 "stall stop earlier)."),
    init_scale: float = typer.Option(0.1, "--init-scale", help="Random-start amplitude."),
    construction: str = _CONS, seed: int = _SEED, max_memory_gb: float = _MEM,
    executor: Optional[str] = EXECUTOR_OPTION, address: Optional[str] = ADDRESS_OPTION,
    out: Optional[str] = OUT_OPTION, force: bool = FORCE_OPTION,
    as_json: bool = JSON_OPTION,
):
    """Phase diagram: scan the dilution of one population (paper Figs. 3-4)."""
    from ..rap.mc import check_mc_sweeps
    from ..rap.phase import MC_SWEEPS_MIN, PhaseConfig, p_grid, scan_phase

    if out is not None:
        check_out_dir(out)
    if n_points < 2:
        raise DeepglassError(f"--n-points must be >= 2, got {n_points}")
    for name, v in (("--p-min", p_min), ("--p-max", p_max), ("--p-other", p_fixed)):
        if not 0.0 <= v <= 1.0:
            raise DeepglassError(f"{name} must be a probability in [0, 1], got {v}")
    if p_max <= p_min:
        raise DeepglassError(f"--p-max ({p_max}) must exceed --p-min ({p_min})")
    if population not in (1, 2, 3):
        raise DeepglassError(f"--population must be 1, 2 or 3, got {population}")
    if scale not in ("linear", "log1m"):
        raise DeepglassError(f"--scale must be linear or log1m, got {scale!r}")
    if scale == "log1m" and p_max >= 1.0:
        raise DeepglassError(f"--scale log1m needs --p-max < 1, got {p_max:g}")
    _probabilities(a1=a1)
    for v in a2:
        _probabilities(a2=v)
    _positive_betas("--beta", beta)
    _method("--mc-method", mc_method)
    check_mc_sweeps(mc_sweeps, MC_SWEEPS_MIN, "--mc-sweeps")
    if not 0.0 < init_scale <= 1.0:
        raise DeepglassError(f"--init-scale must be in (0, 1], got {init_scale:g}")
    cfg = PhaseConfig(N=N, population=population, scale=scale, bracket_tol=bracket_tol,
                      p_values=p_grid(p_min, p_max, n_points, scale),
                      betas=list(beta), a1=a1, a2s=list(a2), p_fixed=[p_fixed] * 3,
                      samples=samples, construction=construction, seed=seed,
                      damping=_damping(damping), max_iter=max_iter, init_scale=init_scale,
                      mc_sweeps=mc_sweeps, mc_method=mc_method, max_memory_gb=max_memory_gb)
    check_force(force, out)
    with ExitStack() as stack, resume_hint(out):
        res = scan_phase(cfg, run=out, executor=executor, address=address, force=force,
                         progress=unit_progress(stack, "RAP phase diagram", not as_json))
    if as_json:
        print_json({**json.loads(json.dumps(res.headline(), default=str)),
                    **out_record(out, res.resumed)})
    else:
        typer.echo(res.transitions.to_string(index=False))
        if out is not None:
            typer.echo(f"wrote {out}" + reused_note(res.resumed))


# -- anneal (Fig. 5) ---------------------------------------------------------
@rap_app.command("anneal")
def anneal_cmd(
    N: int = _N, a1: float = _A1,
    a2: float = typer.Option(0.5, "--a2", help="Activation probability of hidden layer 2."),
    p1: float = _P1, p2: float = _P2, p3: float = _P3,
    sweeps: List[int] = typer.Option([1, 3, 10, 30, 100], "--sweeps",
                                     help="Sweeps per temperature; repeat for several rates."),
    beta_start: float = typer.Option(0.1, "--beta-start", help="First inverse temperature of "
                                     "the schedule (> 0; 0 allowed with --schedule linear)."),
    beta_end: float = typer.Option(3.0, "--beta-end", help="Last inverse temperature of the "
                                   "schedule (> --beta-start)."),
    n_temps: int = typer.Option(30, "--n-temps", help="Temperatures in the schedule."),
    schedule: str = typer.Option("geometric", "--schedule", help="geometric or linear in beta."),
    repeats: int = typer.Option(3, "--repeats", help="Annealing runs per rate."),
    scan_points: int = typer.Option(15, "--scan-points", help="BP temperature grid size."),
    scan_beta_max: Optional[float] = typer.Option(
        None, "--scan-beta-max", help="Largest beta of the BP scan (default: --beta-end)."),
    starts: List[str] = typer.Option(["polarized", "random"], "--start",
                                     help="BP starts of the temperature scan; repeat."),
    max_iter: int = typer.Option(5000, "--max-iter", help="BP iteration limit (runs that "
                                 "stall stop earlier)."),
    mc_sweeps: int = typer.Option(500, "--mc-sweeps", help="MC quench sweeps per grid beta (0: none)."),
    method: str = typer.Option("metropolis", "--method", "--mc-method",
                               help="Monte Carlo update: metropolis or heatbath."),
    construction: str = _CONS, seed: int = _SEED, max_memory_gb: float = _MEM,
    executor: Optional[str] = EXECUTOR_OPTION, address: Optional[str] = ADDRESS_OPTION,
    out: Optional[str] = OUT_OPTION, force: bool = FORCE_OPTION,
    as_json: bool = JSON_OPTION,
):
    """Fig. 5: annealing energy against cooling rate (vs the ground state) and BP
    stability against beta from the polarized and a random start."""
    from ..rap.mc import check_mc_sweeps
    from ..rap.stability import STARTS, AnnealConfig, anneal_study

    if out is not None:
        check_out_dir(out)
    if any(s not in STARTS for s in starts):
        raise DeepglassError(f"--start must be polarized or random, got {starts}")
    for opt, given in (("--sweeps", sweeps), ("--start", starts)):
        twice = sorted({v for v in given if list(given).count(v) > 1})
        if twice:
            raise DeepglassError(f"{opt} gives {', '.join(map(str, twice))} more than once")
    _probabilities(a1=a1, a2=a2, p1=p1, p2=p2, p3=p3)
    _method("--method", method)
    if schedule not in ("geometric", "linear"):
        raise DeepglassError(f"--schedule must be geometric or linear, got {schedule!r}")
    if schedule == "geometric":
        _positive_betas("--beta-start", [beta_start])
    elif beta_start < 0:
        raise DeepglassError(f"--beta-start must be >= 0, got {beta_start:g}")
    # the checks of AnnealConfig.validate, by option name
    _positive_betas("--beta-end", [beta_end])
    if not beta_end > beta_start:
        raise DeepglassError(f"--beta-end ({beta_end:g}) must exceed --beta-start "
                             f"({beta_start:g}): annealing cools")
    if scan_beta_max is not None:
        _positive_betas("--scan-beta-max", [scan_beta_max])
        if not scan_beta_max > beta_start:
            raise DeepglassError(f"--scan-beta-max ({scan_beta_max:g}) must exceed "
                                 f"--beta-start ({beta_start:g})")
    if min(sweeps) < 1 or repeats < 1:
        raise DeepglassError("--sweeps and --repeats must be >= 1")
    check_mc_sweeps(mc_sweeps, name="--mc-sweeps")
    cfg = AnnealConfig(N=N, a1=a1, a2=a2, p=[p1, p2, p3], sweeps=list(sweeps),
                       beta_start=beta_start, beta_end=beta_end, n_temps=n_temps,
                       schedule=schedule, repeats=repeats, scan_points=scan_points,
                       scan_beta_max=scan_beta_max, starts=list(starts), max_iter=max_iter,
                       mc_sweeps=mc_sweeps, method=method, construction=construction,
                       seed=seed, max_memory_gb=max_memory_gb)
    check_force(force, out)
    with ExitStack() as stack, resume_hint(out):
        res = anneal_study(cfg, run=out, executor=executor, address=address, force=force,
                           progress=unit_progress(stack, "RAP annealing", not as_json))
    if as_json:
        print_json({**json.loads(json.dumps(res.headline(), default=str)),
                    **out_record(out, res.resumed)})
    else:
        typer.echo(res.annealing_summary.to_string(index=False))
        if out is not None:
            typer.echo(f"wrote {out}" + reused_note(res.resumed))


# -- student (Fig. 2) ----------------------------------------------------------
@rap_app.command("student")
def student_cmd(
    N: int = _N,
    trials: int = typer.Option(10, "--trials", help="Independent trainings."),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs per trial (Adam)."),
    n_train: int = typer.Option(2000, "--n-train", help="Training inputs (uniform in "
                                "{-1, +1}^N), labelled by the teacher."),
    n_test: int = typer.Option(2000, "--n-test", help="Test inputs where activations are read."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate of Adam (> 0)."),
    loss: str = typer.Option("abs", "--loss", help="abs (paper), hinge or mse."),
    seed: int = _SEED,
    executor: Optional[str] = EXECUTOR_OPTION, address: Optional[str] = ADDRESS_OPTION,
    out: Optional[str] = OUT_OPTION, force: bool = FORCE_OPTION,
    as_json: bool = JSON_OPTION,
):
    """Activation probabilities of a ReLU student trained on a teacher's labels (Fig. 2)."""
    from ..rap.student import LOSSES, student_study

    if loss not in LOSSES:
        raise DeepglassError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if out is not None:
        check_out_dir(out)
    check_force(force, out)
    with ExitStack() as stack, resume_hint(out):
        res = student_study(N=N, n_train=n_train, n_test=n_test, epochs=epochs, trials=trials,
                            lr=lr, loss=loss, seed=seed, run=out, executor=executor,
                            address=address, force=force,
                            progress=unit_progress(stack, "RAP student", not as_json))
    summary = res.headline()
    if as_json:
        print_json({**summary, **out_record(out, res.resumed)})
    else:
        typer.echo(res.activations.to_string(index=False))
        typer.echo(f"median a1 = {summary['a1_median']:.3f}, a2 = {summary['a2_median']:.3f}")
        if out is not None:
            typer.echo(f"wrote {out}" + reused_note(res.resumed))


def register(app: typer.Typer) -> None:
    app.add_typer(rap_app, name="rap")

"""Run directories of the RAP experiments: tables, figures, a ``report.md``
section and ``summary.json[<kind>]``.

Called by the experiments' ``finish`` step (:class:`deepglass.rap.phase.PhaseScan`,
:class:`deepglass.rap.stability.AnnealRun`,
:class:`deepglass.rap.student.StudentRun`) with their result, which they
built from the stored units only; every file here is derived, so it is
rewritten on each run (or resume) of the same experiment.  Figures come from
:mod:`deepglass.rap.figures` (matplotlib is imported here only).
"""

from __future__ import annotations

import json

from ..store import RunDir, markdown_table

__all__ = ["write_phase_run", "write_anneal_run", "write_student_run", "phase_report",
           "anneal_report"]


def phase_report(res, fig_names) -> str:
    """``report.md`` of a phase-diagram scan (a :class:`PhaseResult`)."""
    cfg, t = res.config, res.transitions
    lines = [
        "## RAP model: phase diagram under dilution",
        "",
        f"Network {cfg.N}-{cfg.N}-{cfg.N}-1, diluted population W{cfg.population}, "
        f"p in [{min(cfg.p_values):g}, {max(cfg.p_values):g}] ({len(cfg.p_values)} values), "
        f"a1 = {cfg.a1:g}, a2 in {cfg.a2s}, beta in {cfg.betas}, other dilutions "
        f"{[v for i, v in enumerate(cfg.p_fixed) if i != cfg.population - 1]}, "
        f"{cfg.samples} disorder sample(s) per point, {cfg.construction} construction, seed {cfg.seed}.",
        "",
        "BP (replica symmetric), each branch followed by continuation along one disorder "
        "realization per sample (coupled instances; each point starts from its neighbour's "
        f"fixed point): from a random start of amplitude {cfg.init_scale:g} at the largest p "
        "downwards (paramagnetic branch) and from the polarized start at the smallest p upwards "
        f"(spin-glass branch); damping {cfg.damping}, tol {cfg.tol:g}, at most {cfg.max_iter} "
        f"iterations; grid {cfg.scale} in {'log(1 - p)' if cfg.scale == 'log1m' else 'p'}, "
        f"bisection to a bracket of {cfg.bracket_tol:g}. "
        + (f"Monte Carlo: {cfg.mc_method}, quench from a random start, {cfg.mc_sweeps} sweeps "
           "(half discarded); error bars are standard errors over disorder samples."
           if cfg.mc_sweeps else "No Monte Carlo."),
        "",
        "### Transition points",
        "",
        "p_c: the sample-mean free energies of the two BP branches cross between p_c_lo and "
        "p_c_hi (method `crossing`, located by bisection between converged points), or the "
        "ordered branch is the lower one until it ends there (`branch-end`); p_spinodal: end "
        "of the ordered branch (bisected too); hysteresis: where the two branches are "
        "different fixed points (`low_censored`: down to the scan minimum).",
        "",
        markdown_table(t) if len(t) else "(no transition table)",
        "",
        "### Figures",
        "",
    ] + [f"![{n}](figures/{n})" for n in fig_names] + [
        "",
        "Tables: `points.parquet` (one row per instance and solver), `summary.parquet` "
        "(sample means), `transitions.parquet`, `degrees.parquet`.",
        "",
    ]
    return "\n".join(lines)


def phase_figure(beta: float, a2: float) -> str:
    """The phase diagram figure of one inverse temperature and ``a2``."""
    return f"phase_beta{beta:g}_a2{a2:g}.png"


def write_phase_run(run: RunDir, res) -> None:
    """Write a scan's tables, one figure per ``(beta, a2)`` (Fig. 3), ``pc.png``
    (Fig. 4), ``report.md`` and ``summary.json``."""
    from .figures import plot_pc, plot_phase

    cfg = res.config
    run.write_table("points", res.points)
    run.write_table("summary", res.summary)
    run.write_table("transitions", res.transitions)
    if len(res.degrees):
        run.write_table("degrees", res.degrees)
    figs = []
    trans = {(r["beta"], r["a2"]): r for r in res.transitions.to_dict("records")}
    for b in cfg.betas:
        for av in cfg.a2s:
            name = phase_figure(b, av)
            run.save_figure(plot_phase(res.summary, trans.get((b, av)), res.degrees, b, av,
                                       cfg.population, cfg.q_threshold, cfg.scale), name)
            figs.append(name)
    if len(res.transitions) and "p_c" in res.transitions:
        run.save_figure(plot_pc(res.transitions, cfg.population, cfg.scale), "pc.png")
        figs.append("pc.png")
    _write_report(run, phase_report(res, figs), res.headline())


def anneal_report(res) -> str:
    """``report.md`` of a Fig. 5 study (an :class:`AnnealStudy`)."""
    cfg = res.config
    bp = res.temperature_scan[res.temperature_scan.solver == "bp"]
    return "\n".join([
        "## RAP model: annealing and BP stability", "",
        f"Instance: {json.dumps(res.instance)}", "",
        f"Annealing: {cfg.schedule} schedule, beta {cfg.beta_start:g} -> {cfg.beta_end:g}, "
        f"{cfg.n_temps} temperatures, {cfg.repeats} runs per rate ({cfg.method}).", "",
        markdown_table(res.annealing_summary), "",
        "BP against beta from each start (status: converged; stalled = the residual does not "
        "fall, oscillating or not, even at the largest damping; slow = still falling at the "
        f"iteration limit {cfg.max_iter}):", "",
        markdown_table(bp[["start", "beta", "energy", "entropy", "free_energy", "q", "status",
                           "oscillating", "iterations", "residual", "damping"]]), "",
        "![stability](figures/stability.png)", ""])


def write_anneal_run(run: RunDir, res) -> None:
    """Write a Fig. 5 study's tables, ``figures/stability.png``, ``report.md``
    and ``summary.json``."""
    from .figures import plot_stability

    run.write_table("annealing", res.annealing)
    run.write_table("annealing_traces", res.annealing_traces)
    run.write_table("temperature_scan", res.temperature_scan)
    run.save_figure(plot_stability(res.temperature_scan, res.annealing, res.annealing_traces),
                    "stability.png")
    run.write_table("annealing_summary", res.annealing_summary)
    _write_report(run, anneal_report(res), res.headline())


def write_student_run(run: RunDir, res) -> None:
    """Write a student study's table, ``figures/activations.png``, ``report.md``
    and ``summary.json``."""
    from .figures import plot_student

    run.write_table("activations", res.activations)
    run.save_figure(plot_student(res.activations), "activations.png")
    _write_report(run, "## RAP model: activation probabilities of a trained ReLU student\n\n"
                  + markdown_table(res.activations)
                  + "\n\n![activations](figures/activations.png)\n", res.headline())


def _write_report(run: RunDir, section: str, headline: dict) -> None:
    """This kind's section of ``report.md`` and its part of ``summary.json``
    (``summary.json[<kind>]``); the other kinds of a shared run directory
    keep theirs."""
    run.write_report_section(section)
    run.update_summary({run.kind: headline})

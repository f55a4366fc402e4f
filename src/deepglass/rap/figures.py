"""Figures in the style of paper 001 (Figs. 2-5).

Every panel is a function of its data that draws on ``ax=`` (a new figure when
none is given) and returns the figure it drew on; the multi-panel figures
(:func:`plot_phase`, :func:`plot_stability`) take ``axes=`` the same way.  New
figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state:
nothing to close, no backend chosen), saved with ``fig.savefig``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..plotting import axes_or_new as _axes
from ..plotting import free_inset
from ..plotting import new_figure as _figure

__all__ = ["plot_phase", "plot_pc", "plot_student", "plot_stability", "plot_degrees",
           "plot_energy", "plot_free_energy_gap", "plot_overlap", "plot_annealing",
           "plot_bp_temperature", "plot_bp_residual"]

_POP_COLORS = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
_START_STYLE = {"polarized": ("tab:red", "o"), "random": ("tab:blue", "s")}


def _log1m_axis(ax, lo: float, hi: float, axis: str = "x") -> None:
    """Axis in ``-log(1 - p)`` over ``[lo, hi]`` (labels stay ``p``, ticks at
    ``1 - 10^-k``, and halves on axes of at most two decades): dilutions close
    to 1 spread out."""
    fwd = lambda p: -np.log1p(-np.clip(p, 0.0, 1.0 - 1e-12))   # noqa: E731
    inv = lambda y: -np.expm1(-y)                               # noqa: E731
    set_scale, set_lim, set_ticks = ((ax.set_xscale, ax.set_xlim, ax.set_xticks) if axis == "x"
                                     else (ax.set_yscale, ax.set_ylim, ax.set_yticks))
    set_scale("function", functions=(fwd, inv))
    set_lim(lo, hi)
    # half-decade ticks only on axes of at most two decades: on wider ones a
    # label like 0.9995 runs into its decade's 0.999
    halves = fwd(hi) - fwd(lo) <= 2 * np.log(10.0)
    ticks = [t for k in range(0, 7)
             for t in ((1 - 10.0 ** -k, 1 - 0.5 * 10.0 ** -k) if halves else (1 - 10.0 ** -k,))
             if lo <= t <= hi]
    if len(ticks) >= 2:
        set_ticks(ticks, [f"{t:.6g}" for t in ticks])


def _branches(summary: pd.DataFrame, beta: float, a2: float):
    """Rows of one ``(beta, a2)``: BP random branch, BP polarized branch, MC."""
    s = summary[(summary.beta == beta) & (summary.a2 == a2)]
    r = s[(s.solver == "bp") & (s.branch == "random")].sort_values("p")
    o = s[(s.solver == "bp") & (s.branch == "polarized")].sort_values("p")
    return r, o, s[s.solver == "mc"].sort_values("p")


# -- phase diagram (Figs. 3-4) -----------------------------------------------------------
def plot_degrees(degrees: pd.DataFrame, title: str = "", *, ax=None):
    """Degree distribution per weight population (paper Fig. 3a).

    Log-spaced bins shared by the populations; the y axis is the fraction of all
    weights of the instance per bin, so the three peaks have their true weights.
    """
    ax = _axes(ax, (5.5, 4))
    dmax = max(int(degrees["degree"].max()), 1)
    edges = np.unique(np.round(np.geomspace(1, dmax + 1, 50)).astype(int))
    if edges.size < 2:
        edges = np.array([1, dmax + 1])
    total = degrees["count"].sum()
    for pop, d in degrees.groupby("population"):
        h, _ = np.histogram(d["degree"], bins=edges, weights=d["count"])
        centers = np.sqrt(edges[:-1] * np.maximum(edges[1:] - 1, edges[:-1]))
        keep = h > 0
        ax.plot(centers[keep], h[keep] / total, "o-", ms=3, lw=0.8,
                color=_POP_COLORS.get(int(pop)), label=f"W{int(pop)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("degree (active paths through a weight)")
    ax.set_ylabel("fraction of weights per bin")
    ax.set_title(title or "degree distribution")
    if ax.get_legend_handles_labels()[0]:     # (instances with no active path: none drawn)
        ax.legend(fontsize=8)
    return ax.figure


def plot_energy(summary: pd.DataFrame, beta: float, a2: float, population: int,
                q_threshold: float = 0.05, p_c: float = math.nan, *, ax=None):
    """Energy per weight of the two BP branches and the MC quenches against
    dilution, the entropy in an inset (paper Fig. 3b)."""
    ax = _axes(ax, (5.5, 4))
    r, o, mc = _branches(summary, beta, a2)
    oo = o[o.q > q_threshold]
    ax.plot(r.p, r.energy, "--", color="gray", label="BP random start (paramagnet)")
    ax.plot(oo.p, oo.energy, "-", color="tab:red", label="BP polarized start (spin glass)")
    if len(mc):
        ax.errorbar(mc.p, mc.energy, yerr=mc.energy_sem, fmt="o", ms=3, color="k",
                    capsize=2, label="MC quench")
    if math.isfinite(p_c):
        ax.axvline(p_c, color="tab:purple", lw=0.8, ls=":", label=f"p_c = {p_c:.3f}")
    ax.set_xlabel(f"dilution p{population}")
    ax.set_ylabel("energy per weight")
    ax.set_title(f"(b) energy, beta = {beta:g}, a2 = {a2:g}")
    ax.legend(fontsize=7, loc="lower right")
    ins = free_inset(ax, 0.35, 0.38, avoid=("lower right",))     # the legend's corner
    ins.plot(r.p, r.entropy, "--", color="gray")
    ins.plot(oo.p, oo.entropy, "-", color="tab:red")
    ins.set_title("entropy", fontsize=7)
    ins.tick_params(labelsize=6)
    return ax.figure


def plot_free_energy_gap(summary: pd.DataFrame, beta: float, a2: float, population: int,
                         transition: dict | None = None, *, ax=None):
    """``f(polarized) - f(random)`` against dilution with ``p_c``, the spinodal
    and the coexistence window of ``transition`` (a transitions row; Fig. 3c)."""
    ax = _axes(ax, (5.5, 4))
    r, o, _ = _branches(summary, beta, a2)
    j = pd.merge(o[["p", "free_energy", "q"]], r[["p", "free_energy"]], on="p",
                 suffixes=("_pol", "_rand"))
    ax.plot(j.p, j.free_energy_pol - j.free_energy_rand, "o-", ms=3, color="tab:red")
    ax.axhline(0, color="k", lw=0.6)
    if transition:
        lo = transition.get("hysteresis_low", math.nan)
        hi = transition.get("hysteresis_high", math.nan)
        if math.isfinite(lo) and math.isfinite(hi):
            ax.axvspan(lo, hi, color="tab:orange", alpha=0.15, label="coexistence (hysteresis)")
        pc = transition.get("p_c", math.nan)
        if math.isfinite(pc):
            ax.axvline(pc, color="tab:purple", lw=0.8, ls=":", label="p_c")
        sp = transition.get("p_spinodal", math.nan)
        if math.isfinite(sp):
            ax.axvline(sp, color="tab:orange", lw=0.8, ls="--", label="spinodal")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax.set_xlabel(f"dilution p{population}")
    ax.set_ylabel("f(polarized) - f(random)")
    ax.set_title("(c) free-energy difference of the BP branches")
    return ax.figure


def plot_overlap(summary: pd.DataFrame, beta: float, a2: float, population: int, *, ax=None):
    """Overlap ``q`` of the two BP branches and of the MC quenches (Fig. 3d)."""
    ax = _axes(ax, (5.5, 4))
    r, o, mc = _branches(summary, beta, a2)
    ax.plot(r.p, r.q, "--", color="gray", label="BP random start")
    ax.plot(o.p, o.q, "-", color="tab:red", label="BP polarized start")
    if len(mc):
        ax.errorbar(mc.p, mc.q, yerr=mc.q_sem, fmt="o", ms=3, color="k", capsize=2,
                    label="MC (time-average overlap)")
    ax.set_xlabel(f"dilution p{population}")
    ax.set_ylabel("q")
    ax.set_title("(d) overlap")
    ax.legend(fontsize=7)
    return ax.figure


def plot_phase(summary: pd.DataFrame, transition: dict | None, degrees: pd.DataFrame | None,
               beta: float, a2: float, population: int, q_threshold: float = 0.05,
               scale: str = "linear", *, axes=None):
    """Figs. 3a-d for one ``(beta, a2)``: degree distribution, energy (entropy
    inset), free-energy difference and overlap against dilution.

    ``axes``: a 2 x 2 array of axes (default: a new 11 x 8 inch figure).
    ``scale="log1m"`` draws the dilution axes in ``-log(1 - p)``.
    """
    new = axes is None
    if new:
        axes = _figure((11, 8), 2, 2)[1]
    if degrees is not None and len(degrees):
        d = degrees[(degrees.a2 == a2)]
        p0 = d.p.min()
        plot_degrees(d[(d.p == p0) & (d["sample"] == d["sample"].min())],
                     f"(a) degree distribution, p{population} = {p0:g}", ax=axes[0, 0])
    else:
        axes[0, 0].set_axis_off()
    pc = transition.get("p_c", math.nan) if transition else math.nan
    plot_energy(summary, beta, a2, population, q_threshold, pc, ax=axes[0, 1])
    plot_free_energy_gap(summary, beta, a2, population, transition, ax=axes[1, 0])
    plot_overlap(summary, beta, a2, population, ax=axes[1, 1])
    s = summary[(summary.beta == beta) & (summary.a2 == a2)]
    if scale == "log1m" and len(s):
        for ax in (axes[0, 1], axes[1, 0], axes[1, 1]):
            _log1m_axis(ax, float(s.p.min()), float(s.p.max()))
    fig = axes[0, 0].figure
    if new:
        fig.tight_layout()
    return fig


def plot_pc(transitions: pd.DataFrame, population: int, scale: str = "linear", *, ax=None):
    """Transition point against inverse temperature, one curve per ``a2`` (Fig. 4).

    Error bars are the bisection brackets; crosses the spinodal; open markers
    a ``branch-end`` (the ordered branch is lower until it ends).
    """
    new = ax is None
    ax = _axes(ax, (5.5, 4))
    for a2, t in transitions.groupby("a2"):
        t = t.sort_values("beta")
        pc = t["p_c"].to_numpy(dtype=float)
        lo = pc - t["p_c_lo"].to_numpy(dtype=float)
        hi = t["p_c_hi"].to_numpy(dtype=float) - pc
        ax.errorbar(t.beta, pc, yerr=[np.nan_to_num(lo), np.nan_to_num(hi)], fmt="o-",
                    ms=4, capsize=2, label=f"a2 = {a2:g}")
        color = ax.lines[-1].get_color()
        if "p_spinodal" in t:
            ax.plot(t.beta, t.p_spinodal, "x:", color=color, lw=0.8)
        if "method" in t:
            be = t[t.method == "branch-end"]
            ax.plot(be.beta, be.p_c, "o", mfc="white", color=color, ms=6)
    ax.set_xlabel("inverse temperature beta")
    ax.set_ylabel(f"p{population}_c  (x: spinodal, open: branch end)")
    ax.set_title(f"transition point, W{population} diluted")
    if scale == "log1m":
        vals = transitions[["p_c_lo", "p_c_hi", "p_spinodal"]].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            _log1m_axis(ax, float(vals.min()) - 0.2 * (1 - float(vals.min())),
                        float(vals.max()) + 0.5 * (1 - float(vals.max())), "y")
    ax.legend(fontsize=8)
    if new:
        ax.figure.tight_layout()
    return ax.figure


# -- student (Fig. 2) --------------------------------------------------------------------
def plot_student(df: pd.DataFrame, *, ax=None):
    """Activation probabilities of the hidden layers over training trials (Fig. 2)."""
    new = ax is None
    ax = _axes(ax, (5.5, 3.8))
    ax.plot(df.trial, df.a1, "o-", label="hidden layer 1 (a1)")
    ax.plot(df.trial, df.a2, "s-", label="hidden layer 2 (a2)")
    ax.set_ylim(0, 1)
    ax.set_xlabel("trial")
    ax.set_ylabel("activation probability")
    ax.set_title(f"trained ReLU student: median a1 = {df.a1.median():.2f}, "
                 f"a2 = {df.a2.median():.2f}")
    ax.legend(fontsize=8)
    if new:
        ax.figure.tight_layout()
    return ax.figure


# -- annealing and BP stability (Fig. 5) -------------------------------------------------
def plot_annealing(finals: pd.DataFrame | None, traces: pd.DataFrame | None = None, *, ax=None):
    """Final annealing energy against sweeps per temperature (mean and standard
    deviation over repeats) with the ground state ``-alpha``; the energy along
    the schedule of each rate's first run in an inset (Fig. 5a)."""
    ax = _axes(ax, (5, 4.2))
    if finals is not None and len(finals):
        g = finals.groupby("sweeps_per_temp")["final_energy"].agg(["mean", "std"]).reset_index()
        ax.errorbar(g.sweeps_per_temp, g["mean"], yerr=g["std"].fillna(0), fmt="o-", capsize=2,
                    label="annealing, final energy")
        ax.axhline(finals.ground_energy.iloc[0], color="k", lw=0.6, ls="--",
                   label="ground state (-alpha)")
        ax.set_xscale("log")
        ax.set_xlabel("sweeps per temperature (1 / cooling rate)")
        ax.set_ylabel("energy per weight")
        ax.legend(fontsize=8, loc="upper right")
        if traces is not None and len(traces):
            ins = free_inset(ax, 0.42, 0.35, avoid=("upper right",))  # the legend's corner
            for spt, t in traces[traces.repeat == 0].groupby("sweeps_per_temp"):
                ins.plot(t.beta, t.e_mean, lw=0.8, label=str(spt))
            ins.set_xlabel("beta", fontsize=6)
            ins.tick_params(labelsize=6)
    else:
        ax.set_axis_off()
    ax.set_title("(a) simulated annealing")
    return ax.figure


def _bp_by_start(scan: pd.DataFrame):
    bp = scan[scan.solver == "bp"].sort_values("beta")
    if "start" not in bp:
        bp = bp.assign(start="polarized")
    for start, d in bp.groupby("start"):
        yield start, d, _START_STYLE.get(start, ("k", "^")), d.converged.astype(bool)


def plot_bp_temperature(scan: pd.DataFrame, *, ax=None):
    """BP energy and entropy against ``beta`` from each start (filled:
    converged, crosses: not converged) with the MC quench energies (Fig. 5b)."""
    ax = _axes(ax, (5, 4.2))
    for start, d, (color, marker), ok in _bp_by_start(scan):
        ax.plot(d.beta, d.energy, "-", color=color, lw=0.6)
        ax.plot(d.beta[ok], d.energy[ok], marker, ms=4, color=color,
                label=f"BP energy, {start} start")
        ax.plot(d.beta[~ok], d.energy[~ok], "x", ms=6, color=color)
        ax.plot(d.beta[ok], d.entropy[ok], marker, ms=3, mfc="none", color=color, ls="--",
                lw=0.6, label=f"BP entropy, {start} start")
    mc = scan[scan.solver == "mc"]
    if len(mc):
        ax.errorbar(mc.beta, mc.energy, yerr=mc.energy_err, fmt="^", ms=3, color="k",
                    label="MC quench energy")
    ax.axhline(0, color="k", lw=0.4)
    ax.set_xlabel("inverse temperature beta")
    ax.set_title("(b) BP against temperature (x: not converged)")
    ax.legend(fontsize=6)
    return ax.figure


def plot_bp_residual(scan: pd.DataFrame, *, ax=None):
    """BP's last residual against ``beta`` from each start, unconverged runs
    labelled with their status: where the iteration loses stability (Fig. 5c)."""
    ax = _axes(ax, (5, 4.2))
    for start, d, (color, marker), ok in _bp_by_start(scan):
        ax.semilogy(d.beta, np.maximum(d.residual.to_numpy(dtype=float), 1e-17), marker + "-",
                    ms=4, color=color, label=f"{start} start")
        for _, r in d[~ok].iterrows():
            ax.annotate(str(r.status), (r.beta, max(r.residual, 1e-17)), fontsize=6,
                        xytext=(2, 3), textcoords="offset points")
    ax.set_xlabel("inverse temperature beta")
    ax.set_ylabel("last residual max |dm|")
    ax.set_title("(c) BP stability")
    ax.legend(fontsize=7)
    return ax.figure


def plot_stability(scan: pd.DataFrame, finals: pd.DataFrame | None = None,
                   traces: pd.DataFrame | None = None, *, axes=None):
    """Fig. 5 in three panels (:func:`plot_annealing`, :func:`plot_bp_temperature`,
    :func:`plot_bp_residual`); ``axes``: three axes (default: a new figure)."""
    new = axes is None
    if new:
        axes = _figure((15, 4.2), 1, 3)[1]
    plot_annealing(finals, traces, ax=axes[0])
    plot_bp_temperature(scan, ax=axes[1])
    plot_bp_residual(scan, ax=axes[2])
    fig = axes[0].figure
    if new:
        fig.tight_layout()
    return fig

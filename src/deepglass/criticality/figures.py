"""Plots of the criticality runs (SPEC §7).

Every plot is a function that draws data on a Matplotlib ``ax`` (made when
not given) and returns it, in the style of the ``powerlaw`` package; the
``*_figure`` functions lay several of them out on a
:class:`matplotlib.figure.Figure` for a run directory.  Nothing here touches
pyplot's global state or the backend: figures are built on ``Figure``
objects, so they work under any backend and need no closing.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..plotting import axes_or_new, new_figure

__all__ = ["plot_order_parameter", "plot_susceptibility", "plot_critical_scaling",
           "plot_field_curves", "plot_power_law", "plot_pattern_rank", "plot_neuron_rank",
           "plot_exponents_across_checkpoints", "meanfield_figure", "field_curves_figure",
           "verdict_grid_figure", "rank_frequency_figure", "checkpoints_figure"]

VERDICT_MARKERS = {"plausible": "o", "inconclusive": "s", "rejected": "x", "too little data": "."}


def _ax(ax, w=4.2, h=3.3):
    return axes_or_new(ax, (w, h))


def _figure(nrows, ncols, w=4.2, h=3.3):
    # fixed spacing: a layout engine costs seconds per figure on busy machines
    fig, axes = new_figure((w * ncols, h * nrows), nrows, ncols, squeeze=False)
    # 0.8 in above the top row: the figure's title over two-line panel titles
    fig.subplots_adjust(wspace=0.38, hspace=0.55, top=1 - 0.8 / (h * nrows))
    return fig, axes


# -- mean field ---------------------------------------------------------------------
def plot_order_parameter(curves_T: pd.DataFrame, T_c: float, ax=None):
    """``|m|`` and ``sqrt(q)`` against ``T / T_c``, one line per field, ``T_c`` marked."""
    ax = _ax(ax)
    for h_rel, g in curves_T.groupby("h_rel"):
        g = g.sort_values("T")
        x = g["T"] / T_c
        ax.plot(x, g["abs_m"], ".-", ms=3, label=f"|m|, h/T_c = {h_rel:g}")
        ax.plot(x, np.sqrt(g["q"]), ":", label=f"sqrt(q), h/T_c = {h_rel:g}")
    ax.axvline(1.0, color="r", lw=0.8, ls="--", label="T_c")
    ax.set(xlabel="T / T_c", ylabel="order parameter")
    ax.legend(fontsize=6)
    return ax


def plot_susceptibility(curves_T: pd.DataFrame, T_c: float, ax=None):
    """``chi`` (and the staggered ``chi_u``) against ``T / T_c``, one line per field."""
    ax = _ax(ax)
    for h_rel, g in curves_T.groupby("h_rel"):
        g = g.sort_values("T")
        x = g["T"] / T_c
        ax.semilogy(x, g["chi"], ".-", ms=3, label=f"chi, h/T_c = {h_rel:g}")
        if "chi_u" in g:
            ax.semilogy(x, g["chi_u"], ":", label=f"chi_u (staggered), h/T_c = {h_rel:g}")
    ax.axvline(1.0, color="r", lw=0.8, ls="--", label="T_c")
    ax.set(xlabel="T / T_c", ylabel="chi = dm/dh")
    ax.legend(fontsize=6)
    return ax


def plot_critical_scaling(curves_T: pd.DataFrame, exponents: pd.DataFrame, T_c: float,
                          which: str = "order", ax=None):
    """Log-log plot near ``T_c`` at ``h = 0`` against ``|t| = |T/T_c - 1|``
    with the fitted power laws: ``which="order"`` draws ``sqrt(q)`` and ``|m|``
    below ``T_c`` (fit ``beta_q``), ``which="chi"`` the susceptibilities
    (fits ``gamma``, ``gamma_u``)."""
    ax = _ax(ax)
    zero = curves_T[np.isclose(curves_T["h"], 0.0)].copy()
    if len(zero):
        zero["t"] = zero["T"] / T_c - 1.0
        below, above = zero[zero["t"] < 0], zero[zero["t"] > 0]
        if which == "order":
            series = [(below, np.sqrt(below["q"]), "sqrt(q), T < T_c"),
                      (below, below["abs_m"], "|m|, T < T_c")]
            fits = [("beta_q", below, np.sqrt(below["q"]))]
        else:
            series = [(above, above["chi"], "chi, T > T_c"), (below, below["chi"], "chi, T < T_c")]
            fits = [("gamma", above, above["chi"])]
            if "chi_u" in zero:
                series.append((above, above["chi_u"], "chi_u, T > T_c"))
                fits.append(("gamma_u", above, above["chi_u"]))
        for part, y, lab in series:
            ok = y > 0
            ax.loglog(np.abs(part["t"])[ok], y[ok], ".", label=lab)
        ex = exponents.set_index("exponent") if len(exponents) else None
        for name, part, y in fits if ex is not None else ():
            if name not in ex.index or not np.isfinite(ex.loc[name, "slope"]):
                continue
            r = ex.loc[name]
            t = np.geomspace(r["t_min"], r["t_max"], 20)
            ok = (np.abs(part["t"]) >= r["t_min"]) & (np.abs(part["t"]) <= r["t_max"]) & (y > 0)
            c = np.exp(np.mean(np.log(y[ok]) - r["slope"] * np.log(np.abs(part["t"][ok]))))
            ax.loglog(t, c * t ** r["slope"], "k--", lw=1, label=f"fit: {name} = {r['value']:.3f}")
    ax.set(xlabel="|t| = |T/T_c - 1|", ylabel="order parameter" if which == "order" else "chi")
    ax.legend(fontsize=6)
    return ax


def plot_field_curves(curves_h: pd.DataFrame, y: str = "m", ax=None):
    """``m`` (or ``chi``) against ``h / T_c``, one line per ``T / T_c``."""
    ax = _ax(ax)
    for T_rel, g in curves_h.groupby("T_rel"):
        g = g.sort_values("h")
        if y == "chi":
            ax.semilogy(g["h_rel"], g["chi"].where(g["chi"] > 0), ".-", ms=3,
                        label=f"T/T_c = {T_rel:g}")
        else:
            ax.plot(g["h_rel"], g[y], ".-", ms=3, label=f"T/T_c = {T_rel:g}")
    ax.set(xlabel="h / T_c", ylabel=y)
    ax.legend(fontsize=6)
    return ax


def meanfield_figure(curves_T: pd.DataFrame, exponents: pd.DataFrame, T_c: float):
    """Order parameters and susceptibility against ``T / T_c`` and the
    log-log plots near ``T_c`` with the fitted power laws (2 x 2 panels)."""
    fig, ax = _figure(2, 2)
    plot_order_parameter(curves_T, T_c, ax=ax[0, 0])
    plot_susceptibility(curves_T, T_c, ax=ax[0, 1])
    plot_critical_scaling(curves_T, exponents, T_c, "order", ax=ax[1, 0])
    plot_critical_scaling(curves_T, exponents, T_c, "chi", ax=ax[1, 1])
    fig.suptitle(f"mean field: T_c = {T_c:.6g}", fontsize=9)
    return fig


def field_curves_figure(curves_h: pd.DataFrame, T_c: float):
    """Magnetization and susceptibility against ``h / T_c`` at fixed ``T / T_c``."""
    fig, ax = _figure(1, 2)
    plot_field_curves(curves_h, "m", ax=ax[0, 0])
    plot_field_curves(curves_h, "chi", ax=ax[0, 1])
    fig.suptitle(f"mean field over the field (T_c = {T_c:.6g})", fontsize=9)
    return fig


# -- power laws ---------------------------------------------------------------------
def plot_power_law(samples: Any, verdict, ax=None, title: str | None = None):
    """Log-log CCDF of the samples with the fitted power law overlaid.

    The empirical CCDF of all positive samples (grey), of the tail above
    ``x_min`` (dots) and the fitted power law's CCDF scaled to the tail
    fraction (dashed), drawn with ``powerlaw``'s plotting functions.

    Parameters
    ----------
    samples : array_like or torch.Tensor
        The judged samples (non-positive and non-finite values are dropped).
    verdict : PowerLawVerdict
        :func:`~deepglass.criticality.powerlaws.power_law_verdict` of ``samples``
        (its ``xmin``, ``alpha``, ``n_tail``, ``discrete`` and ``verdict``).
    ax : matplotlib.axes.Axes, optional
        Drawn on; default a new 4.2 x 3.4 in figure.
    title : str, optional
        First title line (the verdict is the second).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    DeepglassError
        ``verdict.discrete`` with non-integer samples.

    References
    ----------
    SPEC §7; Clauset, Shalizi & Newman, SIAM Review 51, 661 (2009).
    """
    import powerlaw

    from .powerlaws import clean_samples

    ax = _ax(ax, 4.2, 3.4)
    xs, discrete, _ = clean_samples(samples, verdict.discrete)
    if xs.size < 2 or xs[0] == xs[-1]:
        ax.text(0.5, 0.5, "too few samples", ha="center", va="center", transform=ax.transAxes)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                powerlaw.plot_ccdf(xs, ax=ax, color="0.6", lw=1, label="all samples")
                if np.isfinite(verdict.xmin) and verdict.n_tail >= 2:
                    frac = verdict.n_tail / xs.size
                    tail = xs[xs >= verdict.xmin]
                    grid = np.unique(np.geomspace(verdict.xmin, tail[-1], 200))
                    pl = powerlaw.Power_Law(xmin=verdict.xmin, parameters=[verdict.alpha],
                                            discrete=discrete, verbose=0)
                    ax.loglog(grid, frac * pl.ccdf(grid), "r--", lw=1.5,
                              label=f"power law, alpha = {verdict.alpha:.2f}")
                    ax.axvline(verdict.xmin, color="r", lw=0.6, ls=":")
        ax.legend(fontsize=7, loc="lower left")
    ax.set_xlabel("x")
    ax.set_ylabel("P(X >= x)")
    ax.set_title((title + "\n" if title else "") + f"{verdict.verdict}", fontsize=8)
    return ax


def plot_pattern_rank(obs, ax=None):
    """Activation-pattern frequency by rank (log-log), one colour per layer.

    Solid: patterns of the random unit subsets (the judged observable, pooled
    over subsets, frequency per subset and event); dotted: whole-layer patterns.
    ``obs`` is an :class:`~deepglass.criticality.observables.Observables`.
    """
    ax = _ax(ax)
    for l in obs.layers:
        sc = obs.subset_counts.get(l, np.zeros(0))
        n_sub = max(len(obs.subset_units.get(l, [])), 1)
        line, = ax.loglog(np.arange(1, sc.size + 1), sc / obs.n_events, ".-", ms=2, lw=0.8,
                          label=f"{l} ({n_sub} subsets)")
        pc = obs.pattern_counts[l]
        ax.loglog(np.arange(1, pc.size + 1), pc / obs.n_events, ":", lw=0.8,
                  color=line.get_color())
    ax.set(xlabel="rank", ylabel="pattern frequency", title="binary activation patterns")
    ax.legend(fontsize=6)
    return ax


def plot_neuron_rank(obs, ax=None):
    """Single-neuron activation frequency by rank (log-log), one line per layer."""
    ax = _ax(ax)
    for l in obs.layers:
        uc = np.sort(obs.unit_counts[l])[::-1]
        uc = uc[uc > 0]
        ax.loglog(np.arange(1, uc.size + 1), uc / obs.n_events, ".-", ms=2, lw=0.8, label=l)
    ax.set(xlabel="rank", ylabel="activation frequency", title="single neurons")
    ax.legend(fontsize=6)
    return ax


def plot_exponents_across_checkpoints(verdicts: pd.DataFrame, net: str, observable: str,
                                      ax=None):
    """Fitted exponent of every layer's ``observable`` against the epoch; the
    marker shows the verdict (o plausible, s inconclusive, x rejected, .
    too little data)."""
    ax = _ax(ax, 3.4, 2.9)
    v = verdicts[(verdicts["net"] == net) & (verdicts["observable"] == observable)]
    for layer, g in v.groupby("layer", sort=False):
        g = g.sort_values("epoch")
        line, = ax.plot(g["epoch"], g["alpha"], "-", lw=0.8, label=layer)
        for verdict, mk in VERDICT_MARKERS.items():
            s = g[g["verdict"] == verdict]
            ax.plot(s["epoch"], s["alpha"], mk, color=line.get_color(), ms=5,
                    mfc=line.get_color() if verdict == "plausible" else "none")
    ax.set(xlabel="epoch", ylabel="alpha", title=observable)
    ax.legend(fontsize=6)
    return ax


def verdict_grid_figure(items, title: str):
    """Log-log CCDFs with the fitted power law, one panel per ``(label, samples, verdict)``."""
    n = max(len(items), 1)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, ax = _figure(rows, cols, 3.4, 2.9)
    for a in ax.ravel()[len(items):]:
        a.set_visible(False)
    for a, (label, samples, verdict) in zip(ax.ravel(), items):
        plot_power_law(samples, verdict, ax=a, title=label)
    fig.suptitle(title, fontsize=9)
    return fig


def rank_frequency_figure(obs, title: str):
    """Patterns and single neurons by rank (log-log), side by side."""
    fig, ax = _figure(1, 2)
    plot_pattern_rank(obs, ax=ax[0, 0])
    plot_neuron_rank(obs, ax=ax[0, 1])
    fig.suptitle(title, fontsize=9)
    return fig


def checkpoints_figure(verdicts: pd.DataFrame, net: str):
    """Exponents across checkpoints, one panel per observable."""
    v = verdicts[verdicts["net"] == net]
    names = list(dict.fromkeys(v["observable"]))
    fig, ax = _figure(1, max(len(names), 1), 3.4, 2.9)
    for a, name in zip(ax.ravel(), names):
        plot_exponents_across_checkpoints(verdicts, net, name, ax=a)
    fig.suptitle(f"{net}: exponents across checkpoints (o plausible, s inconclusive, x rejected, "
                 ". too little data)", fontsize=9)
    return fig

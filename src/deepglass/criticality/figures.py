"""Figures and Markdown tables of the criticality runs (SPEC §7).

Figures are built on :class:`matplotlib.figure.Figure` objects (no pyplot
state), so they work under any backend and need no closing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_meanfield", "plot_field_curves", "plot_verdict_grid",
           "plot_rank_frequency", "plot_across_checkpoints"]

VERDICT_MARKERS = {"plausible": "o", "inconclusive": "s", "rejected": "x", "too little data": "."}


def _figure(nrows, ncols, w=4.2, h=3.3):
    from matplotlib.figure import Figure

    # fixed spacing: a layout engine costs seconds per figure on busy machines
    fig = Figure(figsize=(w * ncols, h * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.subplots_adjust(wspace=0.38, hspace=0.55, top=1 - 0.45 / (h * nrows))
    return fig, axes


def plot_meanfield(curves_T: pd.DataFrame, exponents: pd.DataFrame, T_c: float):
    """Order parameters and susceptibility against ``T / T_c`` (one line per
    field), ``T_c`` marked, and the log-log plots near ``T_c`` with the fitted
    power laws."""
    fig, ax = _figure(2, 2)
    for h_rel, g in curves_T.groupby("h_rel"):
        g = g.sort_values("T")
        x = g["T"] / T_c
        ax[0, 0].plot(x, g["abs_m"], ".-", ms=3, label=f"|m|, h/T_c = {h_rel:g}")
        ax[0, 0].plot(x, np.sqrt(g["q"]), ":", label=f"sqrt(q), h/T_c = {h_rel:g}")
        ax[0, 1].semilogy(x, g["chi"], ".-", ms=3, label=f"chi, h/T_c = {h_rel:g}")
        if "chi_u" in g:
            ax[0, 1].semilogy(x, g["chi_u"], ":", label=f"chi_u (staggered), h/T_c = {h_rel:g}")
    for a in (ax[0, 0], ax[0, 1]):
        a.axvline(1.0, color="r", lw=0.8, ls="--", label="T_c")
        a.set_xlabel("T / T_c")
        a.legend(fontsize=6)
    ax[0, 0].set_ylabel("order parameter")
    ax[0, 1].set_ylabel("chi = dm/dh")
    zero = curves_T[np.isclose(curves_T["h"], 0.0)].copy()
    ex = exponents.set_index("exponent") if len(exponents) else None
    if len(zero):
        zero["t"] = zero["T"] / T_c - 1.0
        below, above = zero[zero["t"] < 0], zero[zero["t"] > 0]
        for part, y, lab, a in ((below, np.sqrt(below["q"]), "sqrt(q), T < T_c", ax[1, 0]),
                                (below, below["abs_m"], "|m|, T < T_c", ax[1, 0]),
                                (above, above["chi"], "chi, T > T_c", ax[1, 1]),
                                (below, below["chi"], "chi, T < T_c", ax[1, 1])) + (
                                ((above, above["chi_u"], "chi_u, T > T_c", ax[1, 1]),)
                                if "chi_u" in zero else ()):
            ok = y > 0
            a.loglog(np.abs(part["t"])[ok], y[ok], ".", label=lab)
        if ex is not None:
            fits = [("beta_q", ax[1, 0], below, np.sqrt(below["q"])),
                    ("gamma", ax[1, 1], above, above["chi"])]
            if "gamma_u" in ex.index:
                fits.append(("gamma_u", ax[1, 1], above, above["chi_u"]))
            for name, a, part, y in fits:
                r = ex.loc[name]
                if np.isfinite(r["slope"]):
                    t = np.geomspace(r["t_min"], r["t_max"], 20)
                    ok = (np.abs(part["t"]) >= r["t_min"]) & (np.abs(part["t"]) <= r["t_max"]) & (y > 0)
                    c = np.exp(np.mean(np.log(y[ok]) - r["slope"] * np.log(np.abs(part["t"][ok]))))
                    a.loglog(t, c * t ** r["slope"], "k--", lw=1,
                             label=f"fit: {name} = {r['value']:.3f}")
    for a, lab in ((ax[1, 0], "order parameter"), (ax[1, 1], "chi")):
        a.set_xlabel("|t| = |T/T_c - 1|")
        a.set_ylabel(lab)
        a.legend(fontsize=6)
    fig.suptitle(f"mean field: T_c = {T_c:.6g}", fontsize=9)
    return fig


def plot_field_curves(curves_h: pd.DataFrame, T_c: float):
    """Magnetization and susceptibility against ``h / T_c`` at fixed ``T / T_c``."""
    fig, ax = _figure(1, 2)
    for T_rel, g in curves_h.groupby("T_rel"):
        g = g.sort_values("h")
        ax[0, 0].plot(g["h_rel"], g["m"], ".-", ms=3, label=f"T/T_c = {T_rel:g}")
        ax[0, 1].semilogy(g["h_rel"], g["chi"].where(g["chi"] > 0), ".-", ms=3,
                          label=f"T/T_c = {T_rel:g}")
    for a, lab in ((ax[0, 0], "m"), (ax[0, 1], "chi")):
        a.set_xlabel("h / T_c")
        a.set_ylabel(lab)
        a.legend(fontsize=6)
    fig.suptitle(f"mean field over the field (T_c = {T_c:.6g})", fontsize=9)
    return fig


def plot_verdict_grid(items, title: str):
    """Log-log CCDFs with the fitted power law, one panel per ``(label, samples, verdict)``."""
    from .powerlaws import plot_power_law

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


def plot_rank_frequency(obs, title: str):
    """Activation patterns and single neurons by rank (log-log), one line per layer.

    Solid: patterns of the random unit subsets (the judged observable, pooled
    over subsets, frequency per subset and event); dotted: whole-layer patterns.
    """
    fig, ax = _figure(1, 2)
    for l in obs.layers:
        sc = obs.subset_counts.get(l, np.zeros(0))
        n_sub = max(len(obs.subset_units.get(l, [])), 1)
        line, = ax[0, 0].loglog(np.arange(1, sc.size + 1), sc / obs.n_events, ".-", ms=2,
                                lw=0.8, label=f"{l} ({n_sub} subsets)")
        pc = obs.pattern_counts[l]
        ax[0, 0].loglog(np.arange(1, pc.size + 1), pc / obs.n_events, ":", lw=0.8,
                        color=line.get_color())
        uc = np.sort(obs.unit_counts[l])[::-1]
        uc = uc[uc > 0]
        ax[0, 1].loglog(np.arange(1, uc.size + 1), uc / obs.n_events, ".-", ms=2, lw=0.8, label=l)
    ax[0, 0].set(xlabel="rank", ylabel="pattern frequency", title="binary activation patterns")
    ax[0, 1].set(xlabel="rank", ylabel="activation frequency", title="single neurons")
    for a in ax.ravel():
        a.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return fig


def plot_across_checkpoints(verdicts: pd.DataFrame, net: str):
    """Fitted exponent of every (observable, layer) against the epoch; the
    marker shows the verdict (o plausible, s inconclusive, x rejected, . too little data)."""
    v = verdicts[verdicts["net"] == net]
    obs_names = list(dict.fromkeys(v["observable"]))
    fig, ax = _figure(1, max(len(obs_names), 1), 3.4, 2.9)
    for a, name in zip(ax.ravel(), obs_names):
        for layer, g in v[v["observable"] == name].groupby("layer", sort=False):
            g = g.sort_values("epoch")
            line, = a.plot(g["epoch"], g["alpha"], "-", lw=0.8, label=layer)
            for verdict, mk in VERDICT_MARKERS.items():
                s = g[g["verdict"] == verdict]
                a.plot(s["epoch"], s["alpha"], mk, color=line.get_color(), ms=5,
                       mfc=line.get_color() if verdict == "plausible" else "none")
        a.set(xlabel="epoch", ylabel="alpha", title=name)
        a.legend(fontsize=6)
    fig.suptitle(f"{net}: exponents across checkpoints (o plausible, s inconclusive, x rejected, "
                 ". too little data)",
                 fontsize=9)
    return fig

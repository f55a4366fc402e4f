"""Figures of the experiments: functions that draw data on a matplotlib ``ax``.

Each takes the data and ``ax=`` (an Axes to draw on; default: a new
:class:`matplotlib.figure.Figure` of the figure's usual size, reachable as
``ax.figure``) and returns the Axes.  Nothing here touches pyplot or global
matplotlib state, so the figures draw under any backend and nothing is shown.
Colours come from the null registry (:data:`deepglass.experiments.nulls.NULLS`).

- :func:`frustration_histograms`: the paper's Fig. 2 (paper 000): histograms
  of the frustration of the real network's replicas and of each null model;
- :func:`delta_x_histogram`: its inset: ``delta_x`` of the active subnetworks
  with the whole network's ``delta`` marked;
- near-monotonicity (SPEC §5; paper 000, Figs. 3-5): :func:`rho_histograms`,
  :func:`rho_vs_amplitude`, :func:`gamma_levels`, :func:`gamma_per_model`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..plotting import axes_or_new as _axes
from .frustration_stats import frustration_samples
from .nulls import NULLS, REAL_COLOR

__all__ = ["frustration_histograms", "delta_x_histogram", "kind_color", "KIND_COLORS",
           "rho_histograms", "rho_vs_amplitude", "gamma_levels", "gamma_per_model"]

#: one colour per kind (the real network and every null of the registry), stable across figures
KIND_COLORS = {"real": REAL_COLOR, **{name: rec.color for name, rec in NULLS.items()}}


def kind_color(kind: str, default: str = "grey") -> str:
    """The colour of ``"real"`` or of a null model (by its canonical name)."""
    return KIND_COLORS.get(kind, default)


def frustration_histograms(runs: pd.DataFrame, stats: pd.DataFrame | None = None, *,
                           ax=None, title: str | None = None, bins: int = 40):
    """Histograms of the frustration samples, real vs each null (paper 000, Fig. 2).

    Parameters
    ----------
    runs : DataFrame
        The experiment's rows (:func:`deepglass.experiments.frustration_vs_nulls`);
        the samples are :func:`~deepglass.experiments.frustration_stats.frustration_samples`.
    stats : DataFrame, optional
        Its statistics table: Welch p-values go into the legend.
    ax : matplotlib Axes, optional
        Where to draw (default: a new 7 x 4.2 in figure).
    title : str, optional
    bins : int
        Bins over the common range of all samples.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax, (7.0, 4.2))
    samples = frustration_samples(runs)
    pvals = {} if stats is None else dict(zip(stats["kind"], stats["p"]))
    allx = np.concatenate(list(samples.values()))
    lo, hi = float(allx.min()), float(allx.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 1e-3, hi + 1e-3
    edges = np.linspace(lo, hi, bins + 1)
    for kind, x in samples.items():
        color = kind_color(kind)
        label = f"{kind} (n={len(x)}, mean {x.mean():.4f}"
        p = pvals.get(kind)
        label += f", p={p:.2g})" if p is not None and np.isfinite(p) else ")"
        if kind == "real":
            ax.hist(x, bins=edges, color="0.35", alpha=0.55, label=label)
        else:
            ax.hist(x, bins=edges, histtype="step", lw=1.8, color=color,
                    label=label)
    ax.set_xlabel("frustration (energy of a local minimum)")
    ax.set_ylabel("count")
    ax.set_title(f"{title + ': ' if title else ''}real weights vs null models")
    ax.legend(fontsize=8, frameon=False)
    return ax


def delta_x_histogram(table: pd.DataFrame, delta: float | None, *, ax=None,
                      title: str | None = None, bins: int = 30):
    """Histogram of ``delta_x`` over inputs with the whole network's ``delta``
    marked (paper 000, Fig. 2 inset; SPEC §4).

    Parameters
    ----------
    table : DataFrame
        One row per input with a ``delta_x`` column
        (:func:`deepglass.experiments.active_run.run_active`); NaN (an active
        subnetwork with no edge) is left out.
    delta : float or None
        Frustration of the whole network (with the share of inputs below it).
    ax : matplotlib Axes, optional
        Where to draw (default: a new 6 x 3.8 in figure).
    title : str, optional
    bins : int

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax, (6.0, 3.8))
    d = table["delta_x"].to_numpy(dtype=float)
    d = d[np.isfinite(d)]
    vals = d if delta is None or not np.isfinite(delta) else np.append(d, delta)
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1e-3, hi + 1e-3
    ax.hist(d, bins=np.linspace(lo, hi, bins + 1), color="0.45", alpha=0.8,
            label=f"delta_x, {len(d)} inputs (mean {d.mean():.4f})" if len(d) else "delta_x")
    if delta is not None and np.isfinite(delta):
        below = float((d < delta).mean()) if len(d) else float("nan")
        ax.axvline(delta, color="tab:red", lw=2,
                   label=f"delta of the whole net = {delta:.4f} ({100 * below:.0f}% below)")
    ax.set_xlabel("frustration of the active subnetwork, delta_x")
    ax.set_ylabel("inputs")
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# -- near-monotonicity (SPEC §5; paper 000, Figs. 3-5) ---------------------------------
def _n_outputs_of(rho: np.ndarray, largest: int = 1000) -> int | None:
    """The smallest m with every rho a multiple of 1/m (None if none <= largest)."""
    for m in range(1, largest + 1):
        if np.allclose(rho * m, np.round(rho * m), atol=1e-6):
            return m
    return None


def rho_histograms(trials: pd.DataFrame, n_outputs: int | None = None, *, ax=None):
    """Histograms of rho per model kind (Fig. 3): one bin per value k/m for up
    to 50 outputs, else 50 equal bins.  ``trials``: the near-monotonicity
    trials table (columns ``model``, ``rho``).  Returns the Axes."""
    ax = _axes(ax, (6.0, 4.0))
    rho = np.unique(trials["rho"].to_numpy())
    m = n_outputs or _n_outputs_of(rho) or 50
    bins = (np.linspace(-0.5 / m, 1 + 0.5 / m, m + 2) if m <= 50
            else np.linspace(0, 1, 51))
    for kind, t in trials.groupby("model", sort=False):
        ax.hist(t["rho"], bins=bins, density=True, histtype="step", lw=1.5,
                color=kind_color(kind), label=kind)
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(r"output alignment fraction $\rho$")
    ax.set_ylabel("density")
    ax.set_title(r"$\rho$ over (input, amplitude) trials")
    ax.legend(fontsize=8)
    return ax


def _rho_by_amplitude(t: pd.DataFrame, lo: float, hi: float):
    """Per amplitude position of one kind's trials: x (geometric mean of the
    inputs' amplitudes there), mean rho, and its ``lo`` / ``hi`` quantiles."""
    g = t.groupby("amplitude_index", sort=True)
    x = np.exp(g["amplitude"].apply(lambda a: np.log(np.maximum(a, 1e-300)).mean()))
    q = g["rho"].quantile([lo, hi]).unstack()
    return x.to_numpy(), g["rho"].mean().to_numpy(), q[lo].to_numpy(), q[hi].to_numpy()


def rho_vs_amplitude(trials: pd.DataFrame, band: tuple[float, float] = (0.25, 0.75), *,
                     ax=None):
    """rho against the perturbation amplitude (Fig. 4) per model kind: the mean
    rho over the inputs at each amplitude, and a shaded band between the
    ``band`` quantiles over the inputs (default the interquartile range).

    Parameters
    ----------
    trials : DataFrame
        The near-monotonicity trials (``model, amplitude_index, amplitude, rho``).
    band : (low, high) quantiles
    ax : Axes or sequence of Axes, optional
        One Axes: every kind overlaid.  One Axes per kind (in the table's
        order): one panel each, the real network's mean dashed in every other
        panel for reference.  Default: a new figure with every kind overlaid.

    Returns
    -------
    Axes or list of Axes (as given)

    Notes
    -----
    Amplitudes scaled per input (``amplitude_scale="std"``) differ between
    inputs at one grid position; the x value of a position is their geometric
    mean.  O(trials) (one group-by per kind).
    """
    lo, hi = (float(q) for q in band)
    kinds = list(dict.fromkeys(trials["model"]))
    axes = [_axes(None, (6.0, 4.0))] if ax is None else list(np.atleast_1d(ax))
    if len(axes) not in (1, len(kinds)):
        raise ValueError(f"one Axes or one per kind ({len(kinds)}), got {len(axes)}")
    stats = {k: _rho_by_amplitude(t, lo, hi) for k, t in trials.groupby("model", sort=False)}
    for i, kind in enumerate(kinds):
        a = axes[i] if len(axes) > 1 else axes[0]
        x, mean, q_lo, q_hi = stats[kind]
        c = kind_color(kind)
        a.fill_between(x, q_lo, q_hi, color=c, alpha=0.2, lw=0)
        a.plot(x, mean, "-", color=c, lw=1.6, label=kind)
        if len(axes) > 1:
            if kind != "real" and "real" in stats:
                a.plot(stats["real"][0], stats["real"][1], "--", color=kind_color("real"),
                       lw=1, label="real")
            a.set_title(kind)
    for j, a in enumerate(axes):
        a.set_xscale("log")
        a.set_ylim(-0.03, 1.03)
        a.axhline(0.5, color="grey", lw=0.8, ls=":")
        a.set_xlabel("amplitude a (geometric mean over inputs)")
        if j == 0:
            a.set_ylabel(r"$\rho$: mean over inputs, band "
                         rf"{100 * lo:.0f}-{100 * hi:.0f} % of inputs")
        if len(axes) == 1 or len(a.lines) > 2:
            a.legend(fontsize=8)
    return axes[0] if ax is None else ax


def gamma_levels(trials: pd.DataFrame, alpha: float = 0.05, *, ax=None):
    """gamma against the confidence level ``1 - alpha`` per model kind: the
    decreasing quantile curve of ``|2 rho - 1|`` (Fig. 5), the run's level marked.
    Returns the Axes."""
    ax = _axes(ax, (5.0, 4.0))
    for kind, t in trials.groupby("model", sort=False):
        d = np.sort(np.round(np.abs(2 * t["rho"].to_numpy() - 1), 12))[::-1]
        level = np.arange(1, d.size + 1) / d.size  # gamma(level) = d_(ceil(level T))
        ax.step(level, d, where="pre", color=kind_color(kind), label=kind)
    ax.axvline(1 - alpha, color="grey", lw=0.8, ls=":")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(r"confidence level $1-\alpha$")
    ax.set_ylabel(r"$\gamma$")
    ax.legend(fontsize=8)
    return ax


def gamma_per_model(gamma: pd.DataFrame, inputs: pd.DataFrame, *, ax=None):
    """gamma per model kind (Fig. 5): bars over all trials, dots per input
    (``gamma`` and ``inputs``: the near-monotonicity gamma and per-input tables).
    Returns the Axes."""
    ax = _axes(ax, (5.0, 4.0))
    kinds = list(gamma["model"])
    pos = np.arange(len(kinds))
    ax.bar(pos, gamma["gamma"], color=[kind_color(k) for k in kinds], alpha=0.6,
           label=r"$\gamma$ (all trials)")
    rng = np.random.default_rng(0)   # fixed jitter: the same figure every time
    for p, k in zip(pos, kinds):
        g = inputs.loc[inputs["model"] == k, "gamma"].to_numpy()
        ax.plot(p + rng.uniform(-0.25, 0.25, g.size), g, ".", color="k", ms=2, alpha=0.4)
    ax.plot([], [], ".", color="k", label=r"$\gamma$ per input")
    ax.set_xticks(pos, kinds)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(rf"$\gamma$ at level {1 - float(gamma['alpha'].iloc[0]):.2f}")
    ax.legend(fontsize=8)
    return ax

"""Figures of the experiments: functions that draw data on a matplotlib ``ax``.

Each takes the data and ``ax=`` (an Axes to draw on; default: a new
:class:`matplotlib.figure.Figure` of the figure's usual size, reachable as
``ax.figure``) and returns the Axes.  Nothing here touches pyplot or global
matplotlib state, so the figures draw under any backend and nothing is shown.

- :func:`frustration_histograms`: the paper's Fig. 2 (paper 000): histograms
  of the frustration of the real network's replicas and of each null model;
- :func:`delta_x_histogram`: its inset: ``delta_x`` of the active subnetworks
  with the whole network's ``delta`` marked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .frustration_stats import frustration_samples

__all__ = ["frustration_histograms", "delta_x_histogram", "KIND_COLORS"]

#: one colour per kind, stable across figures
KIND_COLORS = {"real": "black", "N1": "tab:blue", "N2": "tab:orange",
               "N3-xavier": "tab:green", "N3-he": "tab:red"}


def _axes(ax, figsize: tuple[float, float]):
    """``ax``, or the Axes of a new Figure (no pyplot: nothing global changes)."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize).add_subplot()


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
        label = f"{kind} (n={len(x)}, mean {x.mean():.4f}"
        p = pvals.get(kind)
        label += f", p={p:.2g})" if p is not None and np.isfinite(p) else ")"
        if kind == "real":
            ax.hist(x, bins=edges, color="0.35", alpha=0.55, label=label)
        else:
            ax.hist(x, bins=edges, histtype="step", lw=1.8, color=KIND_COLORS.get(kind),
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

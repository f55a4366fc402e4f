"""Figures of the experiments (matplotlib, Agg-safe: nothing is shown).

- :func:`frustration_histograms`: the paper's Fig. 2 (paper 000): histograms
  of the frustration of the real network's replicas and of each null model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["frustration_histograms"]

#: one colour per kind, stable across figures
KIND_COLORS = {"real": "black", "N1": "tab:blue", "N2": "tab:orange",
               "N3-xavier": "tab:green", "N3-he": "tab:red"}


def frustration_histograms(runs: pd.DataFrame, stats: pd.DataFrame | None = None,
                           title: str | None = None, bins: int = 40):
    """Histograms of the frustration samples, real vs each null (paper 000, Fig. 2).

    Parameters
    ----------
    runs : DataFrame
        The experiment's rows (:func:`deepglass.experiments.frustration_vs_nulls`).
    stats : DataFrame, optional
        Its statistics table: Welch p-values go into the legend.
    title : str, optional
    bins : int
        Bins over the common range of all samples.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from .frustration import frustration_samples

    samples = frustration_samples(runs)
    pvals = {} if stats is None else dict(zip(stats["kind"], stats["p"]))
    allx = np.concatenate(list(samples.values()))
    lo, hi = float(allx.min()), float(allx.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 1e-3, hi + 1e-3
    edges = np.linspace(lo, hi, bins + 1)
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.add_subplot()
    for kind, x in samples.items():
        color = KIND_COLORS.get(kind)
        label = f"{kind} (n={len(x)}, mean {x.mean():.4f}"
        p = pvals.get(kind)
        label += f", p={p:.2g})" if p is not None and np.isfinite(p) else ")"
        if kind == "real":
            ax.hist(x, bins=edges, color="0.35", alpha=0.55, label=label)
        else:
            ax.hist(x, bins=edges, histtype="step", lw=1.8, color=color, label=label)
    ax.set_xlabel("frustration (energy of a local minimum)")
    ax.set_ylabel("count")
    ax.set_title(f"{title + ': ' if title else ''}real weights vs null models")
    ax.legend(fontsize=8, frameon=False)
    return fig

"""Figures without global matplotlib state, for every package's figure functions.

The figure functions (``experiments.figures``, ``rap.figures``,
``criticality.figures``) take their data and an ``ax=``; without one they draw
on a new :class:`matplotlib.figure.Figure` made here, never through pyplot, so
they work under any backend, show nothing and change no global state on import
or call.
"""

from __future__ import annotations

__all__ = ["new_figure", "axes_or_new"]


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1,
               squeeze: bool = True):
    """A new pyplot-free figure and its axes (``squeeze`` as in ``plt.subplots``).

    Examples
    --------
    >>> fig, ax = new_figure((4, 3))
    >>> ax.figure is fig
    True
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def axes_or_new(ax, figsize: tuple[float, float]):
    """``ax``, or the single axes of a new figure of ``figsize``."""
    return ax if ax is not None else new_figure(figsize)[1]

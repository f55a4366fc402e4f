"""Figures without global matplotlib state, for every package's figure functions.

The figure functions (``experiments.figures``, ``rap.figures``,
``criticality.figures``) take their data and an ``ax=``; without one they draw
on a new :class:`matplotlib.figure.Figure` made here, never through pyplot, so
they work under any backend, show nothing and change no global state on import
or call.
"""

from __future__ import annotations

__all__ = ["new_figure", "axes_or_new", "free_corner", "free_inset"]


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


#: the corners an inset may take, in the order ties are broken
_CORNERS = ("upper left", "upper right", "lower right", "lower left")


def free_corner(ax, width: float = 0.42, height: float = 0.36,
                avoid: tuple[str, ...] = ()) -> str:
    """The corner of ``ax`` where an inset of ``width`` x ``height`` (axes
    fractions) covers the fewest drawn points.

    Every line and line collection already on ``ax`` (error bars and
    reference lines included) is sampled along its segments, evenly in axes
    coordinates (so a box's count measures the length of line it would hide);
    the corner (``"upper left"``, ``"upper right"``, ``"lower right"``,
    ``"lower left"``, minus those in ``avoid``, e.g. the legend's) whose box,
    with room for the inset's tick labels, holds the fewest samples wins; ties
    go to the earlier corner.  O(drawn vertices + drawn length / 0.005).

    Examples
    --------
    >>> fig, ax = new_figure((4, 3))
    >>> _ = ax.plot([0, 1], [0, 1])            # a diagonal, lower left to upper right
    >>> free_corner(ax)
    'upper left'
    >>> _ = ax.plot([0, 0.4], [1, 0.8])        # and a curve in the upper left
    >>> free_corner(ax)
    'lower right'
    """
    return _free_box(ax, width, height, avoid)[0]


def free_inset(ax, width: float = 0.42, height: float = 0.36, avoid: tuple[str, ...] = ()):
    """An inset axes in :func:`free_corner` of ``ax``: it hides the fewest data.
    Call it after the data are drawn."""
    _, box = _free_box(ax, width, height, avoid)
    return ax.inset_axes([*box, width, height])


def _free_box(ax, width, height, avoid):
    import numpy as np

    ax.autoscale_view()
    to_axes = ax.transAxes.inverted()
    paths = [(line.get_xydata(), line.get_transform()) for line in ax.lines]
    for coll in ax.collections:
        for seg in getattr(coll, "get_segments", lambda: [])():
            paths.append((seg, coll.get_transform()))
    samples = []
    for xy, transform in paths:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) == 0:
            continue
        pts = to_axes.transform(transform.transform(xy))
        samples.append(pts)                        # the vertices (markers) ...
        for a, b in zip(pts[:-1], pts[1:]):        # ... and every 0.5 % of axes along lines
            n = int(min(np.ceil(np.hypot(*(b - a)) / 0.005), 1000))
            if n > 1:
                samples.append(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a))
    pts = np.concatenate(samples) if samples else np.empty((0, 2))
    # room for the inset's own tick labels (left of and below it) and a margin
    pad_x, pad_y, margin = 0.07, 0.09, 0.03
    boxes = {"upper left": (margin + pad_x, 1 - margin - height),
             "upper right": (1 - margin - width, 1 - margin - height),
             "lower right": (1 - margin - width, margin + pad_y),
             "lower left": (margin + pad_x, margin + pad_y)}

    def covered(corner):
        x0, y0 = boxes[corner]
        inside = ((pts[:, 0] >= x0 - pad_x) & (pts[:, 0] <= x0 + width)
                  & (pts[:, 1] >= y0 - pad_y) & (pts[:, 1] <= y0 + height))
        return int(inside.sum())

    corners = [c for c in _CORNERS if c not in avoid] or list(_CORNERS)
    best = min(corners, key=lambda c: (covered(c), corners.index(c)))
    return best, boxes[best]

"""deepglass.plotting: figures without pyplot, insets that hide no data."""

from __future__ import annotations

import doctest

from deepglass import plotting
from deepglass.plotting import free_corner, free_inset, new_figure


def test_doctests():
    assert doctest.testmod(plotting, raise_on_error=True).attempted >= 3


def test_free_corner_follows_the_data_and_skips_the_legend():
    # a curve through every corner but one: the inset goes to that one
    for empty in ("upper left", "upper right", "lower right", "lower left"):
        fig, ax = new_figure((4, 3))
        corners = {"upper left": (0, 1), "upper right": (1, 1), "lower right": (1, 0),
                   "lower left": (0, 0)}
        for name, (x, y) in corners.items():
            if name != empty:
                ax.plot([x, x + 0.05 * (1 - 2 * x)], [y, y + 0.05 * (1 - 2 * y)], "o-")
        assert free_corner(ax) == empty
    # error bars count along their whole length, a reference line along the axes
    fig, ax = new_figure((4, 3))
    ax.errorbar([1, 10, 100], [0.0, 0.0, 0.0], yerr=[1.0, 0.0, 0.0], fmt="o")
    ax.set_xscale("log")
    ax.axhline(-0.9, color="k")
    assert free_corner(ax) == "upper right"
    # the legend's corner is left alone; the corner with both is the worst
    assert free_corner(ax, avoid=("upper right",)) in ("upper left", "lower right")
    ins = free_inset(ax, 0.4, 0.3)
    assert ins in ax.child_axes and ins.get_xlim() == (0.0, 1.0)

"""Matrix-free simulated annealing by colour class (heat bath), ending in descent.

With ``H(sigma) = -sigma^T As sigma / 2`` (so that flipping node i costs
``2 h_i``), the nodes of one colour class of :meth:`SignedGraph.coloring` are
conditionally independent given the rest, so a heat-bath update of a whole
class at once samples the Boltzmann distribution exactly (a blocked Gibbs
sampler):  ``P(sigma_i = +1 | rest) = 1 / (1 + exp(-2 beta (As sigma)_i))``.
The temperature falls geometrically from ``t_start`` to ``t_end`` in units of
the median ``|As|`` row sum; the run ends with :func:`~deepglass.solve.descent.descent`
so the result is a single-flip local minimum.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..errors import DeepglassError, check_count
from ..graph import SignedGraph
from .descent import DescentState, _Incidence, _update_fields, descent

__all__ = ["anneal"]


def anneal(graph: SignedGraph, sigma0: torch.Tensor, *, sweeps: int = 100,
           t_start: float = 0.3, t_end: float = 0.003, seed: int = 0,
           gamma: float = 0.5, callback=None) -> DescentState:
    """Simulated annealing (heat bath by colour class), then descent.

    Parameters
    ----------
    graph : SignedGraph
    sigma0 : torch.Tensor
        Start gauges (R, n).
    sweeps : int
        Temperatures in the geometric schedule; one sweep each (every class once).
    t_start, t_end : float
        First and last temperature, relative to the median ``|As|`` row sum.
    seed : int
        Seed of the heat-bath random numbers (a torch Generator on the graph's device).
    gamma : float
        Schedule factor of the final descent.
    callback : callable, optional
        ``callback(sweep, 0)`` after each temperature's sweep (progress).

    Returns
    -------
    DescentState

    Notes
    -----
    Cost: ``sweeps`` evaluations of ``As sigma`` (each class update touches the
    edge blocks around it), plus the final descent.
    """
    sweeps = check_count(sweeps, "sweeps")
    if not all(isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(t)
               for t in (t_start, t_end)) or not 0 < t_end <= t_start:
        raise DeepglassError(f"need 0 < t_end <= t_start, got t_start={t_start}, t_end={t_end}")
    sigma = sigma0.to(device=graph.device, dtype=graph.dtype).clone()
    inc = _Incidence(graph)
    F = graph.sym_matvec(sigma)
    scale = float(torch.median(graph.abs_row_sums()[graph.abs_row_sums() > 0]))
    from ..memory import check_fits

    check_fits(8.0 * sweeps, f"a schedule of {sweeps:,} sweeps", "lower sweeps")
    temps = scale * np.geomspace(t_start, t_end, sweeps)
    gen = torch.Generator(device=graph.device)
    gen.manual_seed(int(seed))
    for k, T in enumerate(temps):
        beta = 1.0 / T
        for cls in inc.classes:
            delta = torch.zeros_like(sigma)
            flipped = {}
            for blk_id in cls:
                nb = graph.node_blocks[blk_id]
                F_b = F[:, nb.offset:nb.stop]
                p_up = torch.sigmoid(2.0 * beta * F_b)
                u = torch.rand(p_up.shape, generator=gen, device=graph.device, dtype=p_up.dtype)
                new = torch.where(u < p_up, 1.0, -1.0).to(sigma.dtype)
                s_b = sigma[:, nb.offset:nb.stop]
                mask = new != s_b
                delta[:, nb.offset:nb.stop] = (new - s_b)
                flipped[blk_id] = torch.nonzero(mask, as_tuple=True)
                s_b.copy_(new)
            _update_fields(graph, inc, cls, F, delta, flipped, sparse_ratio=0.02)
        if callback is not None:
            callback(k + 1, 0)
    final = descent(graph, sigma, gamma=gamma, decay=0.85, threshold="global")
    final.sweeps += sweeps
    return final

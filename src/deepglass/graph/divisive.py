"""Divisive normalization with learned weights (SPEC §1b): GDN, the
normalization of learned image compression (Balle et al. 2016), divides each
value by ``sqrt(beta + conv(x ** 2, gamma))`` with ``gamma >= 0``, ``beta >
0``: a weighted sum of squares over channels, a per-sample statistic as a
mean of them is, so a positive rescaling.  A layer whose fixed weights are
all non-negative mixes a statistic into a statistic.

References: J. Balle, V. Laparra, E. P. Simoncelli, "Density modeling of
images using a generalized normalization transformation", ICLR (2016).
"""

from __future__ import annotations

import torch
import torch.fx

from .symbolic import base_packet

__all__ = ["MIXING", "nonnegative_mixing"]

aten = torch.ops.aten

#: layers that mix a statistic's elements with fixed weights
MIXING = {getattr(aten, name) for name in "convolution conv1d conv2d conv3d linear".split()
           if hasattr(aten, name)}


def nonnegative_mixing(ip, u, src) -> bool:
    """Whether fx node ``u`` is a convolution or dense layer of ``src`` with fixed
    weights and bias that are all >= 0: a weighted sum of its elements, as a
    mean is (GDN's ``beta + conv(x ** 2, gamma)``, gamma >= 0, beta > 0:
    the divisive normalization of learned image compression, SPEC §1b; a
    local response norm with learned weights)."""
    if base_packet(u.target) not in MIXING or not u.args or u.args[0] is not src:
        return False
    depends = ip.input_dependent()
    fixed = [a for a in u.args[1:3] if a is not None]
    if any(isinstance(a, torch.fx.Node) and a in depends for a in fixed):
        return False
    for a in fixed:
        t = _ahead(ip, a)
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or bool((t < 0).any()):
            return False
    return True


class _Unknown(Exception):
    pass


def _ahead(ip, a, depth: int = 16):
    """The value of ``a``, a node that no input reaches, before the interpreter
    gets to it (a weight computed from parameters: ``gamma.view(...)``, a
    reparametrization), run from the parameters; None where that fails."""
    def value(m, d):
        if not isinstance(m, torch.fx.Node):
            return m
        if m in ip.env:
            return ip.env[m]
        if d == 0 or m.op not in ("get_attr", "call_function"):
            raise _Unknown
        if m.op == "get_attr":
            return ip.fetch_attr(m.target)
        args, kwargs = torch.fx.node.map_arg((m.args, m.kwargs), lambda v: value(v, d - 1))
        return m.target(*args, **kwargs)

    try:
        with torch.no_grad():
            return value(a, depth)
    except Exception:    # (_Unknown, or an op that does not run here)
        return None

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

__all__ = ["MIXING", "fixed_value", "nonnegative_mixing"]

aten = torch.ops.aten

#: layers that mix a statistic's elements with fixed weights
MIXING = {getattr(aten, name) for name in
          "convolution conv1d conv2d conv3d linear mm bmm matmul addmm".split()
          if hasattr(aten, name)}
#: matrix products: the value may be either factor (``x @ W``, ``W @ x``)
_PRODUCTS = {getattr(aten, name) for name in "mm bmm matmul".split()}


def nonnegative_mixing(ip, u, src) -> bool:
    """Whether fx node ``u`` is a convolution or dense layer of ``src`` with fixed
    weights and bias that are all >= 0: a weighted sum of its elements, as a
    mean is (GDN's ``beta + conv(x ** 2, gamma)``, gamma >= 0, beta > 0:
    the divisive normalization of learned image compression, SPEC §1b; a
    local response norm with learned weights)."""
    packet = base_packet(u.target)
    if packet not in MIXING or not u.args:
        return False
    if packet in _PRODUCTS:        # (``y ** 2 @ gamma.T``, a channels-last GDN)
        fixed = [a for a in u.args[:2] if a is not src]
        if len(fixed) != 1:
            return False
    elif packet is aten.addmm:     # addmm(bias, x, W)
        if len(u.args) < 3 or u.args[1] is not src:
            return False
        fixed = [u.args[0], u.args[2]]
    elif u.args[0] is not src:
        return False
    else:
        fixed = list(u.args[1:3])
    fixed = [a for a in fixed if a is not None]
    depends = ip.input_dependent()
    if any(isinstance(a, torch.fx.Node) and a in depends for a in fixed):
        return False
    for a in fixed:
        t = fixed_value(ip, a)
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or bool((t < 0).any()):
            return False
    return True


class _Unknown(Exception):
    pass


def fixed_value(ip, a, depth: int = 16):
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

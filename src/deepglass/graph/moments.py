"""Moments of a network value written out (SPEC §1b, "the network is what it
computes"): a variance, standard deviation or norm that rescales no value
(statistics pooling's features) is the centring layer, a square and a sum;
and ``x ** p`` of a value that no normalization reduces is an elementwise
activation."""

from __future__ import annotations

import torch

from .aten_activations import nonmonotone
from .layers import reduce_op
from .symbolic import Ref, _arg, _flag, _opname, expand_to, scale
from .sums import add_values

__all__ = ["moment", "power"]


def moment(ip, n, real):
    """SPEC §1b, "the network is what it computes": ``var(x, dims)`` as the
    centring layer ``c = x - mean(x)`` (edges +1 from ``x``, -1 from the mean
    copied back), the activation ``c ** 2`` (warned: a square of a signed
    value), and the sum ``/ (N - correction)`` over ``dims``; ``std`` its
    square root (an activation); ``var_mean`` / ``std_mean`` return the mean
    too; a 2-norm ``sqrt(sum(x ** 2))``, a 1-norm ``sum(|x|)``.  The same
    graph as these ops written out.  None for another norm order.
    O(elements of ``x``)."""
    name = _opname(n.target).split(".")[0]
    r = ip.real(n.args)
    real_x = r[0]
    nd = real_x.ndim
    if name in ("linalg_vector_norm", "norm"):
        order = _arg(n, r, 1, "ord" if name == "linalg_vector_norm" else "p", 2)
        dims = _arg(n, r, 2, "dim")
        if order not in (1, 2, 1.0, 2.0):
            return None
    else:                           # (keepdim: the output's shape, from ``real``)
        dims = _arg(n, r, 1, "dim")
        correction = n.kwargs.get("correction")
        if correction is None:      # var.dim's unbiased, else PyTorch's default
            correction = 0 if len(r) > 2 and r[2] is False else 1
    dims = sorted({d % nd for d in ([dims] if isinstance(dims, int) else dims or range(1, nd))})
    if 0 in dims:
        return None                 # over the batch: refused as a statistic where it is used
    where, x = ip.where(n), ip.b.materialize(ip.sym[n.args[0]])
    size = 1
    for d in dims:
        size *= real_x.shape[d]
    out_real = real[0] if isinstance(real, tuple) else real
    mean_real = real_x.mean(dims, keepdim=True)     # the centring mean's shape
    if name in ("linalg_vector_norm", "norm"):
        powered = power(ip, x, 2.0) if float(order) == 2 else nonmonotone(ip, x, "abs", True)
        total = reduce_op(ip.b, where, ip.b.materialize(powered), real_x, out_real, dims, 1.0)
        return power(ip, total, 0.5) if float(order) == 2 else total
    mean = ip.b.materialize(reduce_op(ip.b, where, x, real_x, mean_real, dims, ip.b.pool_weight))
    minus = scale(ip.b, expand_to(ip.b, mean, real_x.shape[1:]),
                  torch.tensor(-1.0, dtype=torch.float64))
    centred = add_values(ip.b, x, minus, tuple(real_x.shape[1:]), where,
                         lambda what, why: ip.unsupported(n, what, why))
    squared = ip.b.materialize(power(ip, centred, 2.0))
    var = reduce_op(ip.b, where, squared, real_x, out_real, dims,
                    1.0 / max(size - correction, 1))
    value = power(ip, var, 0.5) if name.startswith("std") else var
    if isinstance(real, tuple):     # var_mean / std_mean: (value, mean)
        return value, Ref(mean.index.reshape(real[1].shape))
    return value


def power(ip, x, p: float):
    """SPEC §1b: ``x ** p`` elementwise: no edges; non-decreasing for ``p > 0``
    on a non-negative ``x`` (a ReLU's output), for an odd integer ``p``, and for
    a fractional one (defined for ``x >= 0``); otherwise it warns."""
    integer = float(p).is_integer()
    x = ip.b.activated(x)
    nonneg = bool(getattr(x, "nonneg", False))
    if not (p > 0 and (nonneg or not integer or int(p) % 2 == 1)):
        ip.warn_nonmonotone(f"x ** {p:g}")
    out_nonneg = nonneg or not integer or int(p) % 2 == 0
    return _flag(x, nonneg=out_nonneg, fn="pow")

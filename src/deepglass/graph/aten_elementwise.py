"""ATen rules of elementwise ops (SPEC §1b): normalizations and scalings (a
positive per-element factor on a symbolic value), products and sums,
activations (monotone or flagged), and the re-indexings applied to the node-id
tensor itself.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .aten_values import Stat, _flag, _is_sym, _opname, aten
from .trace import Pending, Ref, _flatten, _wrap, _zip_map


def _scale(ip, val, s: torch.Tensor):
    """Multiply a symbolic value by ``s`` (broadcastable to ``(1, *shape)``): a
    scalar or per-channel factor folds into a pending layer's weights; any other
    pattern becomes a per-element scale of the materialized value."""
    s = torch.as_tensor(s, dtype=torch.float64).detach()
    if isinstance(val, Pending):
        nd = len(val.shape) + 1
        full = s.reshape((1,) * (nd - s.ndim) + tuple(s.shape)) if s.ndim < nd else s
        sizes = [full.shape[i] for i in range(full.ndim)]
        if all(sz == 1 for sz in sizes):
            for blk, _ in val.terms:
                blk.scale_output(full.reshape(()))
            return val
        if full.ndim >= 2 and all(sz == 1 for i, sz in enumerate(sizes) if i != 1):
            ch = full.reshape(-1)
            for blk, _ in val.terms:
                blk.scale_output(ch.reshape((-1,) + (1,) * (len(blk.out_shape) - 1)))
            return val
        val = ip.b.materialize(val)
    if isinstance(val, Ref):
        cur = val.scale if val.scale is not None else torch.ones(val.index.shape,
                                                                 dtype=torch.float64)
        # symbolic values live on the CPU whatever device the model's weights use
        return Ref(val.index, torch.broadcast_to(cur * s.cpu(), val.index.shape).clone())
    return val


def _batch_norm_scale(ip, val, weight, var, eps, ndim):
    """Batch norm with running statistics: ``gamma / sqrt(var + eps)`` per channel
    folds into the incoming edges, sign included (SPEC §1 ``batchnorm="fold"``)."""
    if ip.rules["batchnorm"] != "fold":
        return val
    s = 1.0 / torch.sqrt(var.double() + eps)
    if weight is not None:
        s = s * weight.double()
    return _scale(ip, val, s.reshape((-1,) + (1,) * (ndim - 2)))


def _layer_norm_scale(ip, val, weight):
    """SPEC §1b: a per-sample norm's division by the sample's statistics is a
    positive rescaling and its mean subtraction is ignored; the gain (over the
    normalized trailing dimensions) folds in, sign included."""
    if weight is None or ip.rules["norm"] != "fold":
        return val
    return _scale(ip, val, weight.double())


def _channel_gain(ip, val, weight, ndim):
    """Group / instance norm: as :func:`_layer_norm_scale` with a gain per channel."""
    if weight is None or ip.rules["norm"] != "fold":
        return val
    return _scale(ip, val, weight.double().reshape((-1,) + (1,) * (ndim - 2)))


def _batch_norm(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return (_batch_norm_scale(ip, args[0], r[1], r[4], r[6], r[0].ndim), None, None)


def _layer_norm(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return (_layer_norm_scale(ip, args[0], r[2] if len(r) > 2 else None), None, None)


def _group_norm(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return (_channel_gain(ip, args[0], r[1], r[0].ndim), None, None)


def _const_factor(ip, n, i):
    c = ip.real(n.args[i]) if i < len(n.args) else None
    if isinstance(c, torch.Tensor):
        return c.detach().double()
    return torch.tensor(float(c), dtype=torch.float64)


def _mul(ip, n, args, kwargs, real):
    a, b = args[0], args[1]
    if _is_sym(a) and _is_sym(b):
        return _product(ip, n, a, b)
    if not _is_sym(a):
        a, c = b, _const_factor(ip, n, 0)
    else:
        c = _const_factor(ip, n, 1)
    out = _scale(ip, a, c)
    if isinstance(out, Ref) and isinstance(a, Ref) and bool((c > 0).all()):
        out = _flag(out, nonneg=a.nonneg, fn=a.fn)
    return out


def _div(ip, n, args, kwargs, real):
    a, b = args[0], args[1]
    if _is_sym(b):
        if _is_sym(a) and isinstance(b, Ref) and b.nonneg and not _same(a, b):
            # division by a positive value computed from the input: a per-sample
            # normalization, i.e. a positive rescaling (SPEC §1b)
            return a
        ip.unsupported(n, "division by a network value", "only division by a non-negative "
                       "statistic (a normalization) is a positive rescaling")
    c = _const_factor(ip, n, 1)
    out = _scale(ip, a, 1.0 / c)
    if isinstance(out, Ref) and isinstance(a, Ref) and bool((c > 0).all()):
        out = _flag(out, nonneg=a.nonneg, fn=a.fn)
    return out


def _neg(ip, n, args, kwargs, real):
    return _scale(ip, args[0], torch.tensor(-1.0, dtype=torch.float64))


def _same(a, b) -> bool:
    return (isinstance(a, Ref) and isinstance(b, Ref) and a.index.shape == b.index.shape
            and (a.index is b.index or bool(torch.equal(a.index, b.index))))


_PRODUCT_NAMES = {"sigmoid": "SiLU (x * sigmoid(x))", "hardsigmoid": "hard-swish "
                  "(x * hardsigmoid(x))", "tanh": "x * tanh(x)"}


def _product(ip, n, a, b):
    """SPEC §1b: ``x * f(x)`` is an elementwise activation; ``x * g`` with a
    non-negative gate ``g`` of another value is a positive rescaling of ``x``
    (``gates="scale"``); any other product of two network values is refused."""
    a, b = ip.b.materialize(a), ip.b.materialize(b)
    if _same(a, b) and a.fn == b.fn:
        return Stat(tuple(ip.cur.shape[1:]))   # x * x: a square, the start of a statistic
    if _same(a, b):
        f = b.fn if b.fn else a.fn
        ip.warn_nonmonotone(_PRODUCT_NAMES.get(f, f"x * {f or 'x'}"))
        return _flag(a, nonneg=False, fn=None)
    for x, g in ((a, b), (b, a)):
        if g.nonneg and g.index.numel() <= x.index.numel():
            if ip.rules["gates"] == "error":
                ip.unsupported(n, "gate", "a non-negative gate multiplies the value "
                               "(squeeze-excitation / attention gate) and gates='error'")
            ip.gated.append(ip.where(n))
            return _flag(x, nonneg=False, fn=None)
    ip.unsupported(n, "product of two network values", "neither factor is a non-negative "
                   "gate (sigmoid / hard-sigmoid / softmax of another value): a product of "
                   "two values computed from the input (self-attention, bilinear pooling) "
                   "has no fixed weights, so the signed graph is not defined for it")


def _add(ip, n, args, kwargs, real):
    from .trace import _add_values

    sub = n.target.overloadpacket in (aten.sub, aten.rsub)
    a, b = args[0], args[1]
    alpha = n.kwargs.get("alpha", args[2] if len(args) > 2 and not _is_sym(args[2]) else 1)
    if n.target.overloadpacket is aten.rsub:   # rsub(x, c) = c - alpha * x
        a, b = b, a
    if not _is_sym(b):
        if not _is_sym(a):
            return None
        c = b if not isinstance(b, torch.Tensor) else None
        keep = isinstance(a, Ref) and a.nonneg and c is not None and \
            (-c if sub else c) >= 0
        if n.target.overloadpacket is aten.rsub:
            return _scale(ip, a, torch.tensor(-float(alpha), dtype=torch.float64))
        return _flag(a, nonneg=keep) if isinstance(a, Ref) else a
    if not _is_sym(a):
        return _scale(ip, b, torch.tensor(-float(alpha) if sub else float(alpha),
                                          dtype=torch.float64))
    coef = (-1.0 if sub else 1.0) * float(alpha)
    if coef != 1.0:
        b = _scale(ip, b, torch.tensor(coef, dtype=torch.float64))
    return _add_values(ip.b, a, b, tuple(real.shape[1:]), ip.where(n),
                       lambda what: ip.unsupported(n, what))


# ----------------------------------------------------------------------------------
# elementwise activations
def _monotone(nonneg: bool | Callable = False):
    def rule(ip, n, args, kwargs, real):
        x = ip.b.materialize(args[0])
        nn_ = nonneg(ip, n) if callable(nonneg) else nonneg
        return _flag(x, nonneg=bool(nn_), fn=_opname(n.target))
    return rule


def _clamp_nonneg(ip, n):
    r = ip.real(n.args)
    name = _opname(n.target)
    if name.startswith("hardtanh"):
        lo = r[1] if len(r) > 1 else -1.0
    elif name.startswith("clamp_max"):
        return False
    else:
        lo = r[1] if len(r) > 1 else n.kwargs.get("min")
    return lo is not None and not isinstance(lo, torch.Tensor) and lo >= 0


def _nonmonotone(name):
    def rule(ip, n, args, kwargs, real):
        ip.warn_nonmonotone(name)
        return _flag(ip.b.materialize(args[0]), nonneg=False, fn=_opname(n.target))
    return rule


def _leaky_relu(ip, n, args, kwargs, real):
    slope = ip.real(n.args[1]) if len(n.args) > 1 else 0.01
    if slope < 0:
        ip.warn_nonmonotone(f"LeakyReLU at {ip.where(n)!r}", f" (negative slope {slope:g})")
    return _flag(ip.b.materialize(args[0]), nonneg=False, fn="leaky_relu")


def _prelu(ip, n, args, kwargs, real):
    """SPEC §1b: a learned PReLU is non-monotone iff some slope is negative."""
    if _is_sym(args[1]):
        ip.unsupported(n, "prelu", "its slope is computed from the input")
    w = ip.real(n.args[1]).detach()
    neg = int((w < 0).sum())
    if neg:
        ip.warn_nonmonotone(f"PReLU at {ip.where(n)!r}",
                            f" ({neg} of {w.numel()} learned slopes are negative)")
    return _flag(ip.b.materialize(args[0]), nonneg=False, fn="prelu")


def _statistic(ip, n, args, kwargs, real):
    """``x ** p``, ``sqrt(x)``, ``rsqrt(x)`` of a network value: the start of a
    normalization's statistic (local response norm, RMSNorm)."""
    return Stat(tuple(real.shape[1:]))


def _identity(ip, n, args, kwargs, real):
    """Copies, aliases, eval-mode dropout: the value itself (a copy is made
    contiguous, as the op makes it, so that later views see the same layout)."""
    v = args[0]
    if isinstance(v, Ref):
        return dataclasses.replace(v, index=v.index.contiguous(),
                                   scale=None if v.scale is None else v.scale.contiguous())
    return v


# ----------------------------------------------------------------------------------
# re-indexings: applied to the node-id tensor itself (and to the scale)
def _shape_rule(ip, n, args, kwargs, real):
    a = [ip.b.materialize(v) if isinstance(v, Pending) else v for v in args]
    a = [type(v)(ip.b.materialize(u) if isinstance(u, Pending) else u for u in v)
         if isinstance(v, (list, tuple)) else v for v in a]
    real_args = ip.real(n.args)
    has_scale = any(isinstance(v, Ref) and v.scale is not None for v in _flatten(a))
    pad = n.target is aten.constant_pad_nd.default

    def run(kind):
        def conv(s, r):
            if kind == "index":
                return s.index
            return (s.scale if s.scale is not None
                    else torch.ones(s.index.shape, dtype=torch.float64))
        vals = _zip_map(list(a), list(real_args), conv)
        if pad or n.target is aten.pad.default:
            # zero padding: id -1 (no node), scale 0 (SPEC §1: padding adds no edge)
            rest = vals[2:] + [None] * 2
            mode, value = (("constant", rest[0]) if pad else (rest[0] or "constant", rest[1]))
            if mode != "constant" or value not in (0, 0.0, None):
                ip.unsupported(n, f"padding mode {mode!r} value {value}")
            return torch.constant_pad_nd(vals[0], vals[1], -1 if kind == "index" else 0)
        return n.target(*vals, **ip.real(n.kwargs))

    idx = run("index")
    scl = run("scale") if has_scale else None
    return _wrap(idx, scl)


def _refuse(what, why):
    def rule(ip, n, args, kwargs, real):
        ip.unsupported(n, what, why)
    return rule

"""Elementwise activations in the ATen capture (SPEC §1, §1b): no nodes and no
edges; the value flows on as the activation of its nodes, flagged
non-negative where it cannot be negative, and warned once by name where it
is not non-decreasing (a GELU, a PReLU with a negative learned slope, a
Threshold whose value lies above its threshold).  Rules have the signature
of :mod:`.aten_rules`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .symbolic import Pending, Ref, _flag, _is_sym, _opname
from .sums import dominant_scale, factors

aten = torch.ops.aten


def _monotone(nonneg: bool | Callable = False):
    def rule(ip, n, args, kwargs, real):
        x = ip.b.activated(args[0])
        nn_ = nonneg(ip, n) if callable(nonneg) else nonneg
        return _flag(x, nonneg=bool(nn_), fn=_opname(n.target), value=None)
    return rule


def _threshold(ip, n, args, kwargs, real):
    """``maximum(x, t)`` / ``minimum(x, t)`` with a fixed ``t`` (the learned
    threshold of a filter response norm's TLU): a monotone elementwise
    activation, non-negative when ``maximum`` and ``t >= 0``."""
    a, b = args[0], args[1]
    if _is_sym(a) and _is_sym(b):
        one = _of_one_value(ip, a, b)
        if one is not None:     # maximum(y, 0.1 y): tf.nn.leaky_relu, one function of y
            if one[1]:          # maximum(y, -y) = |y|
                ip.warn_nonmonotone(f"{_opname(n.target)} of a value and its negative multiple")
            return _flag(one[0], nonneg=False, fn=_opname(n.target))
        ip.unsupported(n, _opname(n.target), "the elementwise maximum or minimum of two "
                       "network values has no fixed weights")
    x, i = (a, 1) if _is_sym(a) else (b, 0)
    t = ip.real(n.args[i])
    nonneg = n.target.overloadpacket is aten.maximum and bool((torch.as_tensor(t) >= 0).all())
    return _flag(ip.b.activated(x), nonneg=nonneg, fn=_opname(n.target))


def _of_one_value(ip, a, b):
    """``maximum`` / ``minimum`` of two rescalings of the same nodes (no other
    function between): an elementwise function of them, an activation with the
    factor of its larger term (:func:`~.sums.add_values`' rule), and whether
    the two factors' signs differ somewhere (then it decreases: ``|y|``); else
    None."""
    a, b = ip.b.materialize(a), ip.b.materialize(b)
    if not (isinstance(a, Ref) and isinstance(b, Ref)) or a.act != b.act or \
            a.index.shape != b.index.shape or not bool(torch.equal(a.index, b.index)):
        return None
    return ip.b.activated(Ref(a.index, dominant_scale(a, b))), \
        bool((factors(a) * factors(b) < 0).any())


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


def nonmonotone(ip, x, name: str, nonneg: bool = False, fn: str | None = None):
    """``x`` through an elementwise activation that is not non-decreasing
    (``|x|``, ``sin``): no edges, warned once by ``name``."""
    ip.warn_nonmonotone(name)
    return _flag(ip.b.activated(x), nonneg=nonneg, fn=fn or name)


def _nonmonotone(name, nonneg: bool = False):
    def rule(ip, n, args, kwargs, real):
        # warned at each layer: the capture names them in one warning per kind
        return nonmonotone(ip, args[0], f"{name} at {ip.where(n)!r}", nonneg, _opname(n.target))
    return rule


def _leaky_relu(ip, n, args, kwargs, real):
    slope = ip.real(n.args[1]) if len(n.args) > 1 else 0.01
    if slope < 0:
        ip.warn_nonmonotone(f"LeakyReLU at {ip.where(n)!r}", f" (negative slope {slope:g})")
    return _flag(ip.b.activated(args[0]), nonneg=False, fn="leaky_relu")


def _threshold_at(ip, n, args, kwargs, real):
    """``threshold(x, t, v)`` (``nn.Threshold``): ``x`` where ``x > t``, else ``v``;
    non-decreasing iff ``v <= t``, non-negative iff ``t, v >= 0``."""
    t, v = (float(a) for a in ip.real(n.args[1:3]))
    if v > t:
        ip.warn_nonmonotone(f"Threshold at {ip.where(n)!r}", f" (value {v:g} above threshold {t:g})")
    return _flag(ip.b.activated(args[0]), nonneg=t >= 0 and v >= 0, fn="threshold")


def _elu(ip, n, args, kwargs, real):
    """ELU / CELU ``alpha (exp(x) - 1)`` below 0: non-decreasing iff ``alpha >= 0``."""
    r = ip.real(n.args)
    alpha = float(r[1]) if len(r) > 1 else float(n.kwargs.get("alpha", 1.0))
    if alpha < 0:
        ip.warn_nonmonotone(f"{_opname(n.target).upper()} at {ip.where(n)!r}",
                            f" (negative alpha {alpha:g})")
    return _flag(ip.b.activated(args[0]), nonneg=False, fn=_opname(n.target))


def _rrelu(ip, n, args, kwargs, real):
    """``rrelu`` at inference: a leaky ReLU of slope ``(lower + upper) / 2``."""
    r = ip.real(n.args)
    lower = r[1] if len(r) > 1 else n.kwargs.get("lower", 1 / 8)
    upper = r[2] if len(r) > 2 else n.kwargs.get("upper", 1 / 3)
    slope = (float(lower) + float(upper)) / 2
    if slope < 0:
        ip.warn_nonmonotone(f"RReLU at {ip.where(n)!r}", f" (negative mean slope {slope:g})")
    return _flag(ip.b.activated(args[0]), nonneg=False, fn="rrelu")


def _prelu(ip, n, args, kwargs, real):
    """SPEC §1b: a learned PReLU is non-monotone iff some slope is negative."""
    if _is_sym(args[1]):
        ip.unsupported(n, "prelu", "its slope is computed from the input")
    w = ip.real(n.args[1]).detach()
    neg = int((w < 0).sum())
    if neg:
        ip.warn_nonmonotone(f"PReLU at {ip.where(n)!r}",
                            f" ({neg} of {w.numel()} learned slopes are negative)")
    return _flag(ip.b.activated(args[0]), nonneg=False, fn="prelu")


def _signed(rule):
    """``rule`` for an op whose fixed weights may be negative (bicubic
    interpolation's lobes): its value is not known to be non-negative, even of
    a non-negative input (a sigmoid gate resampled is no longer a gate)."""
    def signed(ip, n, args, kwargs, real):
        out = rule(ip, n, args, kwargs, real)
        if isinstance(out, (Ref, Pending)) and out.nonneg:
            out = dataclasses.replace(out, nonneg=False)
        return out
    return signed


def ops_between(ip, y, n) -> set:
    """The ops between fx nodes ``y`` and ``n`` (``n`` included); a factor
    computed from the weights alone on the way (``(alpha + 1e-9).reciprocal()``
    in DAC's Snake) is no op of the path but a constant, as a weight is."""
    order, depends = ip.node_order(), ip.input_dependent()
    between, stack = set(), [n]
    while stack:
        u = stack.pop()
        if u not in between and u is not y and order[u] > order[y] and u in depends:
            between.add(u)
            stack.extend(u.all_input_nodes)
    return between


def run_again(ip, y, n, real, path: set, value: torch.Tensor) -> torch.Tensor | None:
    """``n``'s value with ``value`` in place of ``y``'s, the ops of ``path``
    run again; None where an op on the way changes a shape or fails."""
    order = ip.node_order()
    env = {y: value}
    try:
        for u in sorted(path, key=order.__getitem__):
            args, kwargs = torch.fx.node.map_arg((u.args, u.kwargs),
                                                 lambda v: env[v] if v in env else ip.env[v])
            env[u] = u.target(*args, **kwargs)
            # (a grid of values may stand in the batch axis)
            if not isinstance(env[u], torch.Tensor) or env[u].shape[0] != value.shape[0] or \
                    env[u].shape[1:] != (real if u is n else ip.env[u]).shape[1:]:
                return None
    except Exception:   # noqa: BLE001 -- an op that does not take the probe: no form known
        return None
    return env[n]

"""Searches over a captured fx program for the normalization rules (SPEC
§1b): what a statistic is computed from, what is computed from it, and
whether a value it rescales is the sample's own."""

from __future__ import annotations

import torch

from .divisive import fixed_value
from .symbolic import _name_of, base_packet

__all__ = ["ancestors", "centres_exactly", "computed_from", "descendants", "fixed_gain",
           "same_inputs", "sum_count", "value_of_its_own"]

aten = torch.ops.aten


def value_of_its_own(n, others, own, depends) -> bool:
    """Whether ``others`` (computed from statistic ``n``) hold a network value
    that is not: a node computed from an input-dependent one that is neither
    ``n``'s own nor one ``n`` is computed from (``(x - m) / std(x)``: its
    ``x - m``), not statistic arithmetic (``gx / gx.mean()``)."""
    before = ancestors(n)
    for a in others:
        stack, seen = [a], set()
        while stack:
            m = stack.pop()
            if m in seen:
                continue
            seen.add(m)
            if m in depends and m not in own and m not in before:
                return True
            if m in own:
                stack.extend(m.all_input_nodes)
    return False


def same_inputs(ip, n, others) -> bool:
    """Whether the statistic ``n`` and a value it rescales are computed from a
    common network input: a normalization's statistic is of the sample's own
    values; one of another input's values (AdaIN's style std times the content
    features) is a product of two values.  O(nodes before them)."""
    inputs = [{a for a in ancestors(v) if a.op == "placeholder"} for v in [n, *others]]
    return any(inputs[0] & other for other in inputs[1:])


def ancestors(n) -> set:
    """``n`` and every fx node it is computed from."""
    return _reached(n, lambda u: u.all_input_nodes)


def descendants(n) -> set:
    """``n`` and every fx node computed from it."""
    return _reached(n, lambda u: u.users)


def _reached(n, step) -> set:
    """``n`` and every fx node ``step`` (a node's neighbours on one side)
    reaches from it, depth first.  O(nodes reached + their edges)."""
    out, stack = set(), [n]
    while stack:
        u = stack.pop()
        if u not in out:
            out.add(u)
            stack.extend(step(u))
    return out


def sum_count(u) -> tuple:
    """A sum over ``N`` elements as a gain entry (``("sum", N)``: ``N`` times a
    mean), a cumulative sum as the counts of its prefixes (``("sum", 1, 2,
    ..., L)`` along its dimension), for a centring written ``x - x.sum() / N``
    or Conv-TasNet's ``cumsum(x) / count``; () for other ops."""
    name = _name_of(u.target)
    if name not in ("sum", "cumsum") or not u.args or not isinstance(u.args[0], torch.fx.Node):
        return ()
    a, b = u.args[0].meta.get("val"), u.meta.get("val")
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or not b.numel():
        return ()
    if name == "sum":
        return (("sum", torch.tensor(a.numel() / b.numel(), dtype=torch.float64)),)
    d = u.args[1] if len(u.args) > 1 else u.kwargs.get("dim", 0)
    d = d % b.dim()
    shape = [1] * b.dim()
    shape[d] = b.shape[d]
    return (("sum", torch.arange(1, b.shape[d] + 1, dtype=torch.float64).reshape(shape)),)


#: ops that copy a value as it is (no move of its elements)
_AS_IS = {"clone", "alias", "contiguous", "detach", "_to_copy", "to", "lift_fresh_copy"}


def centres_exactly(ip, u, src, others, n, gains) -> bool:
    """Whether ``u`` (``x - m`` / ``m - x``) subtracts the mean ``m`` of ``x``
    as a centring does: once (no alpha, no gain on the way but a sum's
    division by its count: ``x - 0.5 * mean(x)`` is a layer), and broadcast
    back along the dimensions it averaged (the same number of dimensions, or
    one number; ``x - x.mean(-1)`` without keepdim broadcasts along another
    axis), onto the very value it averages (not a transpose of it)."""
    if float(u.kwargs.get("alpha", 1)) != 1.0 or len(u.args) > 2:
        return False
    k = torch.ones((), dtype=torch.float64)
    for kind, c in gains:
        if kind == "inverse":
            return False
        if not isinstance(c, (float, torch.Tensor)):
            c = fixed_value(ip, c)          # a fixed tensor's gain (a count)
            if not isinstance(c, torch.Tensor) or not c.is_floating_point():
                return False
        c = torch.as_tensor(c).detach().to("cpu", torch.float64)   # (a model's device)
        try:
            k = k * c if kind in ("sum", False) else k / c
        except RuntimeError:                # (shapes that do not broadcast)
            return False
    if not bool(torch.allclose(k, torch.ones((), dtype=torch.float64), rtol=1e-9, atol=0)):
        return False
    if len(others) != 1:
        return False
    a = others[0]
    # the same axis added to (or taken from) both, as a loop over the samples
    # writes ``cat([s.unsqueeze(0) - s.mean(1, keepdim=True).unsqueeze(0) ...])``
    while src is not n and _same_axis_op(a, src):
        a, src = a.args[0], src.args[0]
    m, x = src.meta.get("val"), a.meta.get("val") if isinstance(a, torch.fx.Node) else None
    if not isinstance(m, torch.Tensor) or not isinstance(x, torch.Tensor):
        return False
    if m.numel() != 1 and m.dim() != x.dim():
        return False
    b = n.args[0]
    while isinstance(a, torch.fx.Node) and _name_of(a.target) in _AS_IS and a.args:
        a = a.args[0]
    while isinstance(b, torch.fx.Node) and _name_of(b.target) in _AS_IS and b.args:
        b = b.args[0]
    return a is b


def _same_axis_op(a, b) -> bool:
    """Whether fx nodes ``a`` and ``b`` add (``unsqueeze``) or take away
    (``squeeze``) the same axis, each of its own value."""
    return all(isinstance(v, torch.fx.Node) and v.op == "call_function" and v.args and
               isinstance(v.args[0], torch.fx.Node) for v in (a, b)) and \
        a.target is b.target and _name_of(a.target) in ("unsqueeze", "squeeze") and \
        tuple(a.args[1:]) == tuple(b.args[1:]) and a.kwargs == b.kwargs


def fixed_gain(u, src) -> tuple:
    """The fixed factor of ``mul`` / ``div`` node ``u`` of ``src`` (a number or
    a fixed tensor's node), as one entry of a multiset of gains; none for a
    negation (-1: the sign is tracked on its own)."""
    other = next((a for a in u.args[:2] if a is not src), None)
    if base_packet(u.target) is aten.div and len(u.args) > 1 and u.args[1] is src:
        return (("inverse", None),)          # c / s: no gain of s (never a centring)
    if isinstance(other, (int, float)) and float(other) == -1.0:
        return ()
    key = float(other) if isinstance(other, (int, float)) else other
    return ((base_packet(u.target) is aten.div, key),)


def computed_from(ip, node, source) -> bool:
    """Whether fx ``node``'s value is computed from ``source``'s (a statistic
    of the value it rescales).  O(ops between them)."""
    if not isinstance(node, torch.fx.Node) or not isinstance(source, torch.fx.Node):
        return False
    order = ip.node_order()
    seen, stack = set(), [node]
    while stack:
        u = stack.pop()
        if u is source:
            return True
        if u not in seen and order.get(u, -1) > order.get(source, -1):
            seen.add(u)
            stack.extend(u.all_input_nodes)
    return False

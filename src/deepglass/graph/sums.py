"""Sums of symbolic values (SPEC §1): a residual addition ends the terms of
both operands on one block; two rescalings of the same nodes add up to one
rescaling, two different elementwise functions of them to one more."""

from __future__ import annotations

import dataclasses

import torch

from .blocks import IdentityBlock
from .symbolic import Pending, Ref, remap

__all__ = ["add_values", "dominant_scale", "factors", "gate_product", "gated_terms"]


def add_values(builder, a, b, shape, where, unsupported, judge=None) -> Pending:
    """A residual addition of two symbolic values (SPEC §1): no nodes; the terms
    of both operands end on one block (a ``Ref`` operand is an identity shortcut).
    Two rescalings of the same nodes (``x + g * x``, ConvNeXt-V2's response
    norm) add up to one rescaling: no nodes, no parallel edges.  Two different
    elementwise functions of the same nodes add up to one more (an
    activation), which ``judge()`` reads for monotonicity (and warns), True
    where it could."""
    for p, q in ((a, b), (b, a)):      # a part without nodes (zeros never written): a bias
        if isinstance(p, Ref) and not bool((p.index >= 0).any()) and tuple(p.index.shape[1:]) \
                == tuple(shape) == tuple(q.index.shape[1:] if isinstance(q, Ref) else q.shape):
            return q
    if isinstance(a, Ref) and isinstance(b, Ref) and a.index.shape == b.index.shape \
            and bool(torch.equal(a.index, b.index)):
        same_fn = a.act == b.act or (a.fn is not None and a.fn == b.fn and _same_pre(a, b))
        # (two values of a concatenation of several functions, -1, are the same
        # function only as copies of one value: rescaled, gated, their ids one tensor)
        if not same_fn or (a.act < 0 and a is not b and a.index is not b.index):
            # two different elementwise functions of the same nodes (x - tanh(x),
            # x + relu(x)): their sum is one more, an activation
            if judge is None or not judge():
                builder.warn_once(f"sum@{where}", f"activation at {where!r}: a sum of "
                                  "elementwise functions of one value (x - tanh(x), x + "
                                  "relu(x)), taken as an elementwise activation; whether it "
                                  "is non-decreasing is not checked")
            # piecewise-linear terms (a PReLU written out) keep the factor of the
            # larger one; any other sum is an activation of factor 1
            linear = a.fn in _PIECEWISE_LINEAR and b.fn in _PIECEWISE_LINEAR
            return builder.activated(Ref(a.index, dominant_scale(a, b) if linear else None))
        same_value = a.value is b.value or (a.value is not None and b.value is not None
                                            and bool(torch.equal(a.value, b.value)))
        gated = a.gated or b.gated
        total, gate = factors(a) + factors(b), (1.0, 1.0)
        if gated:
            total, gate = _gated_sum(factors(a), a.gate, factors(b), b.gate, unsupported)
        # one function of the nodes, rescaled: it stays that function (a copy
        # of gelu(y) plus a rescaled one is still gelu(y), for sums after it)
        return Ref(a.index, total, value=a.value if same_value else None, gated=gated,
                   gate=gate, act=a.act, fn=a.fn, pre=a.pre)
    rows = max(v.index.shape[0] if isinstance(v, Ref) else 1 for v in (a, b))
    if rows > 1 and all(isinstance(v, Ref) for v in (a, b)):
        # one sample's values regrouped as a batch of rows (graph.layers.on_rows):
        # the sum block holds the rows as its first dimension
        full = (rows,) + tuple(shape)
        a, b = (remap(v, lambda t, fill: t.reshape((1,) + full)) for v in (a, b))
        out = builder.materialize(add_values(builder, a, b, full, where, unsupported, judge))
        return remap(out, lambda t, fill: t.reshape(full))
    if isinstance(a, Ref) and isinstance(b, Ref):
        moved = _in_block_order(builder, a, b, shape, where, unsupported, judge)
        if moved is not None:
            return moved
    terms = []
    for v in (a, b):
        if isinstance(v, Pending):
            terms += v.terms
        else:
            if tuple(v.index.shape[1:]) != shape:
                unsupported("broadcasting addition", None)
            blk = IdentityBlock(shape, module=where)
            # a copy of its nodes' own values (no activation between): the sum
            # may take over those nodes' incoming edges (prune.contract_copies)
            blk.copies_nodes = v.act == 0
            terms.append((blk, v))
    terms = _copies_merged(builder, terms, shape, where, unsupported, judge)
    for blk, _ in terms:
        # different block shapes of the same size (e.g. a flattened value) go through views
        if blk.out_size != terms[0][0].out_size:
            unsupported("addition of values of different sizes", None)
    name = next((v.name for v in (a, b) if isinstance(v, Pending)), where)
    return Pending(terms, shape, op="add" if len(terms) > 1 else "conv", name=name)


def gated_terms(ip, n, x: Pending, gate) -> Pending:
    """``x * g`` for a gate ``g`` (SPEC §1b) of a sum not yet made into nodes
    (a highway's ``t * (h - y)``): the gate on every term, so that copies of a
    value in it keep their gate's range for sums with other copies (``y + t *
    (h - y)`` is ``y (1 - t) + t h``: +1 on ``y``, as ``y - y * t`` is); a
    layer's term is rescaled by it as its nodes would be, positively."""
    if ip.rules["gates"] == "error":
        ip.unsupported(n, "gate", "a non-negative gate multiplies the value (squeeze-excitation "
                       "/ attention gate) and gates='error'")
    ip.gated.append(ip.where(n))

    def on(ref):
        return dataclasses.replace(ref, nonneg=False, fn=None, value=None, gated=True,
                                   gate=gate_product(ref.gate, gate))

    terms = [(blk, on(ref) if type(blk) is IdentityBlock else ref) for blk, ref in x.terms]
    return Pending(terms, x.shape, op=x.op, name=x.name)


def gate_product(g: tuple, h: tuple) -> tuple:
    """The range of a product of factors in the ranges ``g`` and ``h`` (interval
    arithmetic: a gate applied to a copy that a gate already scales)."""
    ends = [a * b for a in g for b in h]
    return min(ends), max(ends)


def _copies_merged(builder, terms, shape, where, unsupported, judge) -> list:
    """``terms`` with the copies of one value (identity terms reading the same
    nodes) added into one, as a sum of two copies is (a rescaling whose gates'
    ranges decide its sign, or one activation): ``h * t + y - y * t`` is
    ``h * t + y (1 - t)``, whatever the order of the additions (the copies
    were parallel terms whose weights cancelled: +1 - 1 = 0)."""
    out: list = []
    for blk, ref in terms:
        k = next((i for i, (b, r) in enumerate(out) if type(b) is IdentityBlock
                  and type(blk) is IdentityBlock and r.index.shape == ref.index.shape
                  and bool(torch.equal(r.index, ref.index))), None)
        if k is None:
            out.append((blk, ref))
            continue
        total = add_values(builder, _with_block_factor(*out[k]), _with_block_factor(blk, ref),
                           tuple(ref.index.shape[1:]), where, unsupported, judge)
        if not isinstance(total, Ref):
            out.append((blk, ref))
            continue
        merged = IdentityBlock(tuple(ref.index.shape[1:]), module=where)
        merged.copies_nodes = total.act == 0
        out[k] = (merged, total)
    return out


def _with_block_factor(blk, ref: Ref) -> Ref:
    """``ref`` times the factors its identity block took (a sum's term rescaled
    after it was made: ``ls * (pool(y) - y)``)."""
    f = None
    for t in (blk.in_scale, blk.out_scale):
        if t is not None:
            f = factors(ref) if f is None else f
            f = f * torch.broadcast_to(t.to(f.dtype).to(f.device),
                                       tuple(ref.index.shape[1:])).reshape(f.shape)
    return ref if f is None else dataclasses.replace(ref, scale=f)


def _in_block_order(builder, a: Ref, b: Ref, shape, where, unsupported, judge):
    """``a + b`` added in the node order of an operand that holds a whole node
    block in another order (both branches of a residual add permuted to
    channels-last, as tf2onnx writes MobileNetV3's adds): the sum's block
    takes that order, so that a block whose only reader is the sum merges into
    it (``prune.contract_copies``) and the add makes no nodes, as in NCHW
    (SPEC §1).  The result is the sum's nodes in the add's order.  None where
    neither operand is such a block (the usual sum serves)."""
    full = (1,) + tuple(shape)
    if tuple(a.index.shape) != full or tuple(b.index.shape) != full:
        return None
    # the latest block read whole as its own value (act 0): the one whose only
    # reader the sum is likely to be (the residual branch, not the shortcut)
    for r in sorted((a, b), key=lambda v: -int(v.index.max())):
        ids = r.index.reshape(-1)
        if r.act != 0 or ids.numel() == 0 or bool((ids < 0).any()):
            continue
        nb = next((x for x in builder.node_blocks if x.offset == int(ids.min())), None)
        if nb is None or nb.size != ids.numel() or int(ids.max()) != nb.stop - 1:
            continue
        if ids.numel() == 1 or bool((ids[1:] - ids[:-1] == 1).all()):
            return None                 # in its block's order: the usual sum (O(n) to see)
        order = torch.argsort(ids)
        if not bool(torch.equal(ids[order], torch.arange(nb.offset, nb.stop, device=ids.device))):
            continue                    # not each node once
        inverse = torch.argsort(order)
        inner = (1,) + tuple(nb.shape)

        def to_block(t, fill):
            return torch.broadcast_to(t, r.index.shape).reshape(-1)[order].reshape(inner)

        total = builder.materialize(add_values(builder, remap(a, to_block), remap(b, to_block),
                                               tuple(nb.shape), where, unsupported, judge))
        return remap(total, lambda t, fill: torch.broadcast_to(t, inner).reshape(-1)[inverse]
                     .reshape(full))
    return None


def _gated_sum(sa, ga, sb, gb, unsupported):
    """The factor of ``a + b`` where both hold the same nodes, one or both
    gated: per element ``sa * ga + sb * gb`` with ``ga``, ``gb`` in their
    gates' ranges (interval arithmetic, SPEC §1b).  Of one sign for every
    input (``y + y * sigmoid(z)``, ``y * sigmoid(z) - y = -y (1 - sigmoid(z))``)
    it is a rescaling of that sign, taken at its bound of largest magnitude
    (a gate's nominal value, 1, where the copies agree in sign); of either
    sign (``2 y sigmoid(z) - y``; ``y / y.norm() - y``, a statistic's
    rescaling being unbounded), refused.  Returns the scale and the gate range
    relative to it."""
    def bounds(s, g):
        lo, hi = (torch.where(s == 0, 0.0, s * c) for c in g)
        return torch.minimum(lo, hi), torch.maximum(lo, hi)
    (la, ha), (lb, hb) = bounds(sa, ga), bounds(sb, gb)
    lo, hi = la + lb, ha + hb
    same_sign = not bool((sa * sb < 0).any())
    total = sa + sb if same_sign else torch.where(hi > 0, hi, lo)
    if bool(((lo < 0) & (hi > 0)).any()) or not bool(torch.isfinite(total).all()):
        unsupported("sum of gated copies", "a gated value and a copy of it add up to a "
                    "factor whose sign is not the same for every input (2 y sigmoid(z) - y, "
                    "y / y.norm() - y)")
    nz = total != 0
    if not bool(nz.any()):
        return total, (1.0, 1.0)
    rel = torch.stack([lo[nz] / total[nz], hi[nz] / total[nz]])
    return total, (float(rel.min()), float(rel.max()))


def _same_pre(a: Ref, b: Ref) -> bool:
    """Whether two activations of the same nodes read them with the same signs."""
    return a.pre == b.pre


#: elementwise functions linear on each side of 0, whose sums are PReLUs
_PIECEWISE_LINEAR = ("relu", "leaky_relu", "prelu")


def dominant_scale(a: Ref, b: Ref) -> torch.Tensor | None:
    """The factor of a sum of two elementwise functions of the same nodes, read
    as one activation: per node, that of the term of larger magnitude (the
    slope the sum keeps far from 0: ``g relu(x) - g a relu(-x)`` is ``g``
    PReLU(x), ``relu(-x) - relu(x)`` is ``-x``); None where it is 1."""
    sa, sb = factors(a), factors(b)
    out = torch.where(sa.abs() >= sb.abs(), sa, sb)
    return None if bool((out == 1).all()) else out


def factors(r: Ref) -> torch.Tensor:
    """``r``'s factor per element (its ``scale``, ones where it has none)."""
    return r.scale if r.scale is not None else torch.ones(r.index.shape, dtype=torch.float64,
                                                          device=r.index.device)

"""Linear-operator layers shared by both capture paths (SPEC §1): each turns the
symbolic value a layer reads into a :class:`~.symbolic.Pending` sum with one
edge block (dense, convolution, pooling, global mean).

Signature of every handler: ``(builder, name, x: Ref, real_in, real_out,
**params) -> Pending`` (or the value itself where the layer is the identity at
this input size, which adds nothing: SPEC §1).
"""

from __future__ import annotations

import math

import numpy as np
import torch.nn.functional as F

from ..errors import DeepglassError, UnsupportedLayerError
from .blocks import ConvBlock, DenseBlock, PoolBlock, adaptive_windows, pool_windows
from .symbolic import Pending, remap, strip_zero_padding, tup

__all__ = ["dense_op", "conv_op", "pool_op", "adaptive_pool_op", "global_mean_op", "reduce_op",
           "on_rows", "row_param"]


def on_rows(builder, name, x, real_in, real_out, layer, at: int = 2):
    """A layer applied to one sample's values regrouped as a batch of rows,
    ``(S, C, *spatial)`` (a decoder shared by the sources a separation net
    estimates: ``decoder(y.view(B * S, C, T))``): the layer at every row is
    the layer of one more dimension, of extent 1 along the rows (kernel 1,
    stride 1, no padding), over ``(1, C, S, *spatial)`` (``at=2``; a
    reduction keeps the rows as its first dimension, ``(1, S, C, *spatial)``,
    ``at=1``).  ``layer(x, real_in, real_out)`` builds it on that layout; the
    value returned keeps the rows' layout.  The block is made at once (a sum
    after it gets a block of its own).  O(nodes)."""
    if at == 2 and real_in.ndim > 4:
        raise UnsupportedLayerError(
            f"unsupported layer {name!r}: it reads one sample's {real_in.ndim - 2}-d values "
            "regrouped as a batch of rows; such a layer of 1-d and 2-d values is the layer "
            "of one more dimension, one of 3-d values would need 4-d blocks")
    rows = lambda t: t.movedim(0, 1).unsqueeze(0) if at == 2 else t.unsqueeze(0)  # noqa: E731
    back = lambda t: t.squeeze(0).movedim(1, 0) if at == 2 else t.squeeze(0)  # noqa: E731
    out = layer(remap(x, lambda t, fill: rows(t).contiguous()), rows(real_in), rows(real_out))
    out = builder.materialize(out) if isinstance(out, Pending) else out
    return remap(out, lambda t, fill: back(t).contiguous())


def row_param(v, nd: int, first: int):
    """A layer's per-dimension parameter (``nd`` dims) with ``first`` before
    them, for the rows' dimension of :func:`on_rows` (a string, ``'same'``,
    stays)."""
    return v if isinstance(v, str) else (first,) + tup(v, nd)


def dense_op(builder, name, x, real_in, real_out, weight):
    if real_in.ndim != 2:
        raise UnsupportedLayerError(
            f"linear layer {name!r} is applied to a {real_in.ndim - 1}-d value per sample; "
            "only (batch, features) inputs are supported")
    blk = DenseBlock(weight.detach(), module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op="dense", name=name)


def conv_op(builder, name, x, real_in, real_out, weight, stride, padding, dilation, groups,
            padding_mode="zeros"):
    nd = weight.ndim - 2
    if x.index.shape[0] > 1:    # values regrouped as a batch of rows
        return on_rows(builder, name, x, real_in, real_out, lambda r, ri, ro: conv_op(
            builder, name, r, ri, ro, weight.unsqueeze(2), row_param(stride, nd, 1),
            row_param(padding, nd, 0), row_param(dilation, nd, 1), groups, padding_mode))
    if padding_mode != "zeros" and padding != "valid":
        # reflect / replicate / circular: the border copies nodes of the value
        # the layer reads (the torch.fx path; torch.export writes the padding
        # out as its own op), before any zero padding is taken into the layer
        if isinstance(padding, str):
            raise UnsupportedLayerError(f"convolution {name!r}: padding={padding!r} with "
                                        f"padding_mode={padding_mode!r}")
        widths = [p for q in reversed(tup(padding, nd)) for p in (q, q)]
        x = remap(x, lambda t, fill: F.pad(t, widths, mode=padding_mode))
        padding = 0
    x, extra = strip_zero_padding(x, nd)
    k = weight.shape[2:]
    stride, dilation = tup(stride, nd), tup(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        else:  # 'same', PyTorch's convention: the extra element goes to the high side
            tot = [d * (kk - 1) for d, kk in zip(dilation, k)]
            pads = [(t // 2, t - t // 2) for t in tot]
    else:
        pads = [(p, p) for p in tup(padding, nd)]
    pads = [(a + c, b + d) for (a, b), (c, d) in zip(pads, extra)]
    in_shape = tuple(x.index.shape[1:])
    blk = ConvBlock(weight.detach(), in_shape, tuple(real_out.shape[1:]), stride,
                    pads, dilation, groups, module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op="conv", name=name)


def pool_op(builder, name, x, real_in, real_out, pool_type, kernel_size, stride=None,
            padding=0, dilation=1, ceil_mode=False, count_include_pad=True,
            divisor_override=None, **_):
    """A max or average pool's block.  An average pool's edges carry its own
    factors (what it computes, SPEC §1b): ``1 / divisor`` with PyTorch's
    divisor per window, the window clipped to the padded input
    (``count_include_pad``; a ``ceil_mode`` window overhanging it counts
    less) or its in-bounds elements, or ``divisor_override``; a max pool's
    ``1 / |kernel|`` (SPEC §1); ``builder.pool_weight`` overrides both."""
    nd = real_in.ndim - 2
    if x.index.shape[0] > 1:    # values regrouped as a batch of rows
        return on_rows(builder, name, x, real_in, real_out, lambda r, ri, ro: pool_op(
            builder, name, r, ri, ro, pool_type, row_param(kernel_size, nd, 1),
            row_param(stride if stride not in (None, []) else kernel_size, nd, 1),
            row_param(padding, nd, 0), row_param(dilation, nd, 1), ceil_mode, count_include_pad,
            divisor_override))
    x, extra = strip_zero_padding(x, nd)
    k = tup(kernel_size, nd)
    s = tup(stride if stride not in (None, []) else kernel_size, nd)
    p = tup(padding, nd)
    d = tup(dilation, nd)
    in_shape = tuple(x.index.shape[1:])
    wins, factors = [], []
    for dim in range(nd):
        # the windows over the explicitly padded value (PyTorch's output-size rule on its
        # size), then shifted back onto the unpadded one: the padding adds no edge (SPEC §1)
        lo, hi = extra[dim]
        L = in_shape[1 + dim]
        w = pool_windows(L + lo + hi, k[dim], s[dim], p[dim], d[dim], ceil_mode)
        wins.append([i[(i >= lo) & (i < lo + L)] - lo for i in w])
        # the divisor's factor along this dimension: explicit padding is counted
        # (the pool sees its zeros), implicit padding where count_include_pad
        starts = np.arange(len(w)) * s[dim] - p[dim]
        counts = (np.minimum(starts + k[dim], L + lo + hi + p[dim]) - starts
                  if count_include_pad else np.array([len(i) for i in w]))
        factors.append(1.0 / counts)
    if divisor_override:
        factors = [np.full(len(w), 1.0 / divisor_override if dim == 0 else 1.0)
                   for dim, w in enumerate(wins)]
    out_sp = tuple(len(w) for w in wins)
    if out_sp != tuple(real_out.shape[2:]):
        raise DeepglassError(f"pool {name!r}: computed output {out_sp} differs from the "
                             f"network's {tuple(real_out.shape[2:])}")
    blk = PoolBlock(in_shape, (in_shape[0],) + out_sp, wins, pool_type,
                    weight=builder.pool_weight, kernel_area=math.prod(k), module=name,
                    window_weights=factors if pool_type == "avg" else None)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op=f"{pool_type}pool", name=name)


def adaptive_pool_op(builder, name, x, real_in, real_out, pool_type, **_):
    if x.index.shape[0] > 1:    # values regrouped as a batch of rows
        return on_rows(builder, name, x, real_in, real_out, lambda r, ri, ro: adaptive_pool_op(
            builder, name, r, ri, ro, pool_type))
    in_shape = tuple(real_in.shape[1:])
    out_sp = tuple(real_out.shape[2:])
    if out_sp == in_shape[1:]:
        return x  # identity at this input size: adds nothing (SPEC §1)
    wins = [adaptive_windows(L, O) for L, O in zip(in_shape[1:], out_sp)]
    blk = PoolBlock(in_shape, (in_shape[0],) + out_sp, wins, pool_type,
                    weight=builder.pool_weight, module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op=f"{pool_type}pool", name=name)


def global_mean_op(builder, name, x, real_in, real_out, dims):
    """``x.mean(dims)`` over spatial dims: an average pool whose windows span the
    reduced dimensions (all of them: global average pooling)."""
    nd = real_in.ndim
    dims = sorted(d % nd for d in (dims if isinstance(dims, (list, tuple)) else [dims]))
    if x.index.shape[0] > 1 and dims and dims[0] > 0:   # at every row of a batch of rows
        return on_rows(builder, name, x, real_in, real_out, lambda r, ri, ro: global_mean_op(
            builder, name, r, ri, ro, [d + 1 for d in dims]), at=1)
    if not dims or dims[0] < 2:
        raise UnsupportedLayerError(f"mean over dims {dims} at {name!r}: only means over "
                                    "spatial dimensions (not batch or channels) are supported")
    if all(real_in.shape[d] == 1 for d in dims):
        # a mean over dimensions of size 1 (global pooling of a 1x1 map) is the
        # identity, which adds nothing (SPEC §1)
        out = (1,) + tuple(real_out.shape[1:])
        return remap(x, lambda t, fill: t.reshape(out))
    in_shape = tuple(real_in.shape[1:])
    wins = [adaptive_windows(L, 1) if d + 1 in dims else [np.array([i]) for i in range(L)]
            for d, L in enumerate(in_shape[1:], start=1)]
    blk = PoolBlock(in_shape, (in_shape[0],) + tuple(len(w) for w in wins), wins, "avg",
                    weight=builder.pool_weight, module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op="avgpool", name=name)


def reduce_op(builder, name, x, real_in, real_out, dims, weight, pool_type="avg"):
    """``x.sum(dims)`` (``weight`` 1), ``x.mean(dims)`` or ``x.amax(dims)``
    (``pool_type="max"``; ``weight`` None: the pool weight, ``1/|window|`` by
    default) over any non-batch dimensions: the reduced dimensions are moved
    last and flattened, so the value is a (kept, reduced) array and the
    reduction one window per kept element."""
    nd = real_in.ndim
    dims = sorted(d % nd for d in dims)
    if x.index.shape[0] > 1 and dims[0] > 0:    # at every row of a batch of rows
        return on_rows(builder, name, x, real_in, real_out, lambda r, ri, ro: reduce_op(
            builder, name, r, ri, ro, [d + 1 for d in dims], weight, pool_type), at=1)
    kept = [d for d in range(1, nd) if d not in dims]
    R = math.prod(real_in.shape[d] for d in dims)
    K = math.prod(real_in.shape[d] for d in kept)
    out = (1,) + tuple(real_out.shape[1:])
    if R == 1:   # a reduction over dimensions of size 1 is the identity (SPEC §1)
        return remap(x, lambda t, fill: t.reshape(out))
    perm = [0] + kept + dims
    x = remap(x, lambda t, fill: t.permute(perm).reshape(1, K, R))
    blk = PoolBlock((K, R), (K, 1), [adaptive_windows(R, 1)], pool_type, weight=weight, module=name)
    op = "maxpool" if pool_type == "max" else "avgpool" if weight is None else "sum"
    shape = tuple(real_out.shape[1:])
    return Pending([(blk, x)], shape, op=op, name=name, block_shape=shape if shape else None)

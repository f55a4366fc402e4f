"""ATen rules of the linear-operator layers (SPEC §1): convolutions (transposed
too), matrix products, normalization layers read whole, pools, means and
resampling (:func:`interpolation_matrices`); each rule turns a node into an
edge block of the signed graph.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.fx

from ..errors import DeepglassError
from .aten_elementwise import _batch_norm_scale, _channel_gain, _layer_norm_scale
from .aten_values import Stat, _arg, _is_sym, _opname, aten
from .blocks import ConvBlock, ConvTransposeBlock, ResampleBlock
from .trace import (Pending, Ref, _adaptive_pool, _conv, _dense, _global_mean, _pool,
                    _strip_zero_padding, _tup)


def _convolution(ip, n, args, kwargs, real):
    if _is_sym(args[1]):
        ip.unsupported(n, "convolution", "its weight is computed from the input (a dynamic "
                       "convolution); the signed graph needs fixed weights")
    weight = ip.real(n.args[1])
    stride, padding, dilation, transposed, out_pad, groups = ip.real(n.args[3:9])
    x = ip.b.materialize(args[0])
    if not transposed:
        return _conv(ip.b, ip.where(n), x, ip.real(n.args[0]), real, weight, stride, padding,
                     dilation, groups)
    return _transposed(ip, n, x, weight, real, stride, padding, dilation, groups,
                       weight.ndim - 2)


def _transposed(ip, n, x, weight, real, stride, padding, dilation, groups, nd):
    x, extra = _strip_zero_padding(x, nd)
    if any(extra[d] != (0, 0) for d in range(nd)):
        ip.unsupported(n, "conv_transpose", "explicit padding before a transposed "
                       "convolution is not supported")
    pads = [(p, p) for p in _tup(padding, nd)]
    blk = ConvTransposeBlock(weight.detach(), tuple(x.index.shape[1:]), tuple(real.shape[1:]),
                             _tup(stride, nd), pads, _tup(dilation, nd), groups,
                             module=ip.where(n))
    return Pending([(blk, x)], tuple(real.shape[1:]), op="conv_transpose", name=ip.where(n))


def _conv_layer(ip, n, args, kwargs, real):
    """``conv1d/2d/3d(x, w, b, stride, padding, dilation, groups)`` (padding may
    be ``'same'`` / ``'valid'``)."""
    if _is_sym(args[1]):
        ip.unsupported(n, "convolution", "its weight is computed from the input (a dynamic "
                       "convolution); the signed graph needs fixed weights")
    r = ip.real(n.args)
    nd = r[1].ndim - 2
    get = lambda i, d: r[i] if len(r) > i else d  # noqa: E731
    return _conv(ip.b, ip.where(n), ip.b.materialize(args[0]), r[0], real, r[1],
                 get(3, 1), get(4, 0), get(5, 1), get(6, 1))


def _conv_transpose_layer(ip, n, args, kwargs, real):
    """``conv_transpose{1,2,3}d(x, w, b, stride, padding, output_padding, groups,
    dilation)``: as ``convolution(..., transposed=True)``."""
    if _is_sym(args[1]):
        ip.unsupported(n, "conv_transpose", "its weight is computed from the input")
    r = ip.real(n.args)
    nd = r[1].ndim - 2
    get = lambda i, d: r[i] if len(r) > i else d  # noqa: E731
    return _transposed(ip, n, ip.b.materialize(args[0]), r[1], real, get(3, 1), get(4, 0),
                       get(7, 1), get(6, 1), nd)


def _batch_norm_layer(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    if r[5] or r[3] is None:   # training mode or no running statistics
        ip.unsupported(n, "batch_norm", "batch norm without running statistics; use "
                       "batchnorm='ignore' or a model in eval mode")
    return _batch_norm_scale(ip, args[0], r[1], r[4], r[7], r[0].ndim)


def _layer_norm_layer(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return _layer_norm_scale(ip, args[0], r[2] if len(r) > 2 else None)


def _group_norm_layer(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return _channel_gain(ip, args[0], r[2] if len(r) > 2 else None, r[0].ndim)


def _instance_norm_layer(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    if not r[5]:   # use_input_stats False: a batch norm with running statistics
        return _batch_norm_scale(ip, args[0], r[1], r[4], r[7], r[0].ndim)
    return _channel_gain(ip, args[0], r[1], r[0].ndim)


def _matmul(ip, n, args, kwargs, real):
    """``addmm(bias, x, W^T)`` / ``mm(x, W^T)``: a dense layer."""
    off = 1 if n.target is aten.addmm.default else 0
    x, w = args[off], args[off + 1]
    if _is_sym(x) and _is_sym(w):
        ip.unsupported(n, "matrix product of two network values", "a product of two values "
                       "computed from the input (self-attention, bilinear pooling) has no "
                       "fixed weights, so the signed graph is not defined for it")
    if not _is_sym(x):
        ip.unsupported(n, _opname(n.target), "the input enters a matrix product from the "
                       "right; only x @ W with fixed W is a dense layer")
    weight = ip.real(n.args[off + 1]).T
    alpha = n.kwargs.get("alpha", 1)
    if alpha != 1:
        weight = weight * alpha
    real_in = ip.real(n.args[off])
    x = ip.b.materialize(x)
    if real_in.shape[0] > 1:
        return _positionwise(ip, n, x, weight)
    return _dense(ip.b, ip.where(n), x, real_in, real, weight)


def _positionwise(ip, n, x, weight):
    """A dense layer applied at every position (``(positions, C_in) @ W^T``, the
    batch folded into the rows: a channels-last MLP).  Its edges are those of a
    1x1 convolution over the positions; its node block is ``(C_out, positions)``
    and the value keeps the rows-by-channels layout of the real tensor.  The
    block is made at once, so a residual addition after it gets a block of its
    own (identity edges)."""
    N, c_in = x.index.shape
    c_out = weight.shape[0]
    src = Ref(x.index.T.reshape(1, c_in, N).contiguous(),
              None if x.scale is None else x.scale.T.reshape(1, c_in, N).contiguous())
    blk = ConvBlock(weight.detach().reshape(c_out, c_in, 1), (c_in, N), (c_out, N), (1,),
                    [(0, 0)], (1,), 1, module=ip.where(n))
    ref = ip.b.materialize(Pending([(blk, src)], (c_out, N), op="dense", name=ip.where(n)))
    return Ref(ref.index.reshape(c_out, N).T.contiguous())


def _linear(ip, n, args, kwargs, real):
    """``linear(x, W)`` / ``matmul(x, W^T)``: a dense layer; on a value with
    leading dimensions (``(1, H, W, C)``) it acts at every position."""
    x, w = args[0], args[1]
    if _is_sym(w):
        if not _is_sym(x):
            ip.unsupported(n, _opname(n.target), "the input enters a matrix product from "
                           "the right; only x @ W with fixed W is a dense layer")
        return _bmm(ip, n, args, kwargs, real)
    weight = ip.real(n.args[1])
    if n.target.overloadpacket is aten.matmul:
        if weight.ndim != 2:
            return _bmm(ip, n, args, kwargs, real)
        weight = weight.T
    x = ip.b.materialize(x)
    real_in = ip.real(n.args[0])
    if real_in.ndim == 2 and real_in.shape[0] == 1:
        return _dense(ip.b, ip.where(n), x, real_in, real, weight)
    if real_in.shape[0] != 1:
        ip.unsupported(n, _opname(n.target), "the batch dimension is mixed into the product")
    lead = tuple(real_in.shape[1:-1])
    flat = Ref(x.index.reshape(-1, real_in.shape[-1]),
               None if x.scale is None else x.scale.reshape(-1, real_in.shape[-1]))
    out = _positionwise(ip, n, flat, weight)
    return Ref(out.index.reshape((1,) + lead + (weight.shape[0],)))


def _bmm(ip, n, args, kwargs, real):
    ip.unsupported(n, "batched matrix product", "a batched product of network values "
                   "(self-attention) has no fixed weights, so the signed graph is not "
                   "defined for it")


def _attention(ip, n, args, kwargs, real):
    ip.unsupported(n, "scaled dot-product attention", "attention multiplies two values "
                   "computed from the input, so the signed graph is not defined for it")


def _from_1d(ip, n, args, r, real):
    """Core ATen writes a 1-d pool as ``unsqueeze(x, 2)`` -> 2-d pool with a unit
    first window -> ``squeeze``: read it back as the 1-d pool of ``x`` (same
    edges, and the node block keeps the layer's own 1-d shape)."""
    src = n.args[0]
    if not (isinstance(src, torch.fx.Node) and src.target is aten.unsqueeze.default
            and r[0].ndim == 4 and r[0].shape[2] == 1 and src.args[1] in (2, -2)):
        return None
    k = _tup(r[1], 2)
    st = _tup(r[2] if len(r) > 2 and r[2] not in (None, []) else r[1], 2)
    pd = _tup(r[3] if len(r) > 3 else 0, 2)
    dl = _tup(r[4] if len(r) > 4 and not isinstance(r[4], bool) else 1, 2)
    if (k[0], st[0], pd[0], dl[0]) != (1, 1, 0, 1):
        return None
    x = ip.sym[src.args[0]]
    return x, ip.real(src.args[0]), real.squeeze(2), (k[1], st[1], pd[1], dl[1])


def _max_pool(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    out_real = real[0] if isinstance(real, tuple) else real
    one = _from_1d(ip, n, args, r, out_real)
    if one is not None:
        x, real_in, out1, (k, st, pd, dl) = one
        val = _pool(ip.b, ip.where(n), ip.b.materialize(x), real_in, out1, "max", k, st, pd, dl,
                    r[5] if len(r) > 5 else False)
        val = Pending(val.terms, tuple(out_real.shape[1:]), val.op, val.name)
    else:
        stride = r[2] if len(r) > 2 else None
        val = _pool(ip.b, ip.where(n), ip.b.materialize(args[0]), r[0], out_real, "max", r[1],
                    stride if stride not in (None, []) else None, r[3] if len(r) > 3 else 0,
                    r[4] if len(r) > 4 else 1, r[5] if len(r) > 5 else False)
    return (val, None) if isinstance(real, tuple) else val


def _avg_pool(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    if len(r) > 6 and r[6] is not None:
        ip.unsupported(n, "avg_pool with divisor_override")
    ceil = r[4] if len(r) > 4 else False
    one = _from_1d(ip, n, args, r, real)
    if one is not None:
        x, real_in, out1, (k, st, pd, _) = one
        val = _pool(ip.b, ip.where(n), ip.b.materialize(x), real_in, out1, "avg", k, st, pd, 1,
                    ceil)
        return Pending(val.terms, tuple(real.shape[1:]), val.op, val.name)
    stride = r[2] if len(r) > 2 else None
    return _pool(ip.b, ip.where(n), ip.b.materialize(args[0]), r[0], real, "avg", r[1],
                 stride if stride not in (None, []) else None, r[3] if len(r) > 3 else 0, 1, ceil)


def _adaptive(kind):
    def rule(ip, n, args, kwargs, real):
        out = real[0] if isinstance(real, tuple) else real
        src = n.args[0]
        x, real_in, out1 = args[0], ip.real(n.args[0]), out
        if isinstance(src, torch.fx.Node) and src.target is aten.unsqueeze.default \
                and real_in.ndim == 4 and real_in.shape[2] == 1 and out.shape[2] == 1:
            # core ATen's 1-d adaptive pool: unsqueeze -> 2-d pool -> squeeze
            x, real_in, out1 = ip.sym[src.args[0]], ip.real(src.args[0]), out.squeeze(2)
        val = _adaptive_pool(ip.b, ip.where(n), ip.b.materialize(x), real_in, out1, kind)
        if isinstance(val, Pending):
            val = Pending(val.terms, tuple(out.shape[1:]), val.op, val.name)
        elif out1 is not out:   # the identity at this size
            val = ip.b.materialize(args[0])
        return (val, None) if isinstance(real, tuple) else val
    return rule


def _mean(ip, n, args, kwargs, real):
    dims = _arg(n, ip.real(n.args), 1, "dim")
    nd = ip.real(n.args[0]).ndim
    dl = [d % nd for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    if any(d < 2 for d in dl) or (nd == 2 and dl):
        # a mean over channels (or all features): the statistic a written-out
        # layer norm subtracts and divides by (SPEC §1b), not graph nodes
        return Stat(tuple(real.shape[1:]))
    x = ip.b.materialize(args[0])
    return _global_mean(ip.b, ip.where(n), x, ip.real(n.args[0]), real, dims)


def interpolation_matrices(op: Callable, real_in: torch.Tensor, real_out: torch.Tensor,
                           rest: tuple) -> list[torch.Tensor]:
    """The 1-d matrices ``M_d`` (outputs x inputs) of a separable interpolation op,
    read off the op itself: channel ``c`` of the probe is the unit vector ``e_c``
    along dimension ``d`` (constant along the others, where interpolation weights
    sum to one), so ``op(probe)`` holds column ``c`` of ``M_d``.  Cost: one call
    of ``op`` per spatial dimension on ``L_d`` channels."""
    spatial = tuple(real_in.shape[2:])
    mats = []
    for d, L in enumerate(spatial):
        shape = [1, L] + [1] * len(spatial)
        shape[2 + d] = L
        probe = torch.eye(L, dtype=torch.float64).reshape(shape).expand(
            (1, L) + spatial).contiguous()
        out = op(probe, *rest)
        idx = [0, slice(None)] + [0] * len(spatial)
        idx[2 + d] = slice(None)
        mats.append(out[tuple(idx)].T.contiguous())       # (O_d, L_d)
    if tuple(real_out.shape[2:]) != tuple(len(M) for M in mats):
        raise DeepglassError("interpolation: probe and network disagree on the output size")
    return mats


def _upsample(mode):
    def rule(ip, n, args, kwargs, real):
        x = ip.b.materialize(args[0])
        r = ip.real(n.args)
        mats = interpolation_matrices(n.target, r[0], real, tuple(r[1:]))
        blk = ResampleBlock(tuple(r[0].shape[1:]), tuple(real.shape[1:]), mats, mode=mode,
                            module=ip.where(n))
        return Pending([(blk, x)], tuple(real.shape[1:]), op="resample", name=ip.where(n))
    return rule

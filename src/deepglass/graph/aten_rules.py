"""The rules of :mod:`.aten`: one function per kind of ATen op, each turning
the symbolic values of the op's arguments into the symbolic value of its
result (SPEC §1, §1b); those of normalizations and statistics are in
:mod:`.aten_norms`.  Signature: ``rule(ip, n, args, kwargs, real)`` with
``ip`` the :class:`~.aten.AtenInterpreter`, ``n`` the fx node, ``args`` /
``kwargs`` the symbolic arguments and ``real`` the op's real output.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.fx

from ..errors import DeepglassError
from .blocks import ConvTransposeBlock, ResampleBlock
from .crops import cropped_transpose
from .aten_norms import Stat, feeds_normalization
from .norm_gain import fold_fixed_gain
from .batch_axis import (batch_axis_removed, check_batched, reduces_batch, stacked_in_front,
                         unsqueezed_in_front)
from .aten_products import _gated, _product, _same, judge_monotone, of_one_value
from .identical import writes_into_argument
from .ranges import factor_range, is_positive_divisor, value_range
from .layers import (adaptive_pool_op, conv_op, global_mean_op, on_rows, pool_op, reduce_op,
                     row_param)
from .symbolic import (Pending, Ref, _arg, _flag, _is_sym, _opname, as_tensor_of,
                       base_packet,
                       expand_to,
                       has_sym, reindexed, remap, scale, strip_zero_padding, tup, zip_map)
from .sums import add_values

__all__ = ["interpolation_matrices"]

aten = torch.ops.aten



# ----------------------------------------------------------------------------------
# linear-operator layers
def _convolution(ip, n, args, kwargs, real):
    if _is_sym(args[1]):
        ip.unsupported(n, "convolution", "its weight is computed from the input (a dynamic "
                       "convolution); the signed graph needs fixed weights")
    weight = ip.real(n.args[1])
    check_batched(ip, n, unsqueezed_in_front(n.args[0]) and ip.real(n.args[0]).shape[1] == 1
                  and not batch_axis_removed(n.args[0].args[0]))
    stride, padding, dilation, transposed, out_pad, groups = ip.real(n.args[3:9])
    x = ip.b.materialize(args[0])
    if not transposed:
        return conv_op(ip.b, ip.where(n), x, ip.real(n.args[0]), real, weight, stride, padding,
                     dilation, groups)
    return _transposed(ip, n, x, weight, real, stride, padding, dilation, groups,
                       weight.ndim - 2)


def _transposed(ip, n, x, weight, real, stride, padding, dilation, groups, nd):
    if x.index.shape[0] > 1:    # values regrouped as a batch of rows
        return on_rows(ip.b, ip.where(n), x, ip.real(n.args[0]), real,
                       lambda r, ri, ro: _transposed(
                           ip, n, r, weight.unsqueeze(2), ro, row_param(stride, nd, 1),
                           row_param(padding, nd, 0), row_param(dilation, nd, 1), groups, nd + 1))
    # zero padding before it (PRNet's DeconvBlock): padded inputs, no nodes,
    # no edges (a ZeroPaddedBlock, as inside any layer's input); a border the
    # strip finds is the same, so it is stripped only where it is all there is
    stripped, extra = strip_zero_padding(x, nd)
    if all(extra[d] == (0, 0) for d in range(nd)):
        x = stripped
    pads = [(p, p) for p in tup(padding, nd)]
    blk = ConvTransposeBlock(weight.detach(), tuple(x.index.shape[1:]), tuple(real.shape[1:]),
                             tup(stride, nd), pads, tup(dilation, nd), groups,
                             module=ip.where(n))
    return Pending([(blk, x)], tuple(real.shape[1:]), op="conv_transpose", name=ip.where(n))


def _conv_layer(ip, n, args, kwargs, real):
    """``conv1d/2d/3d(x, w, b, stride, padding, dilation, groups)`` (padding may
    be ``'same'`` / ``'valid'``)."""
    if _is_sym(args[1]):
        ip.unsupported(n, "convolution", "its weight is computed from the input (a dynamic "
                       "convolution); the signed graph needs fixed weights")
    r = ip.real(n.args)
    get = lambda i, d: r[i] if len(r) > i else d  # noqa: E731
    return _batch_of_one(ip, n, args, r, real, lambda x, ri, ro: conv_op(
        ip.b, ip.where(n), x, ri, ro, r[1], get(3, 1), get(4, 0), get(5, 1), get(6, 1)))


def _batch_of_one(ip, n, args, r, real, layer):
    """``layer(x, real_in, real_out)`` of a convolution, also run in PyTorch's
    unbatched form (C, H, W) on a value whose batch axis was taken away: there
    the layer of a batch of one (:func:`check_batched` refuses the others)."""
    x = ip.b.materialize(args[0])
    if r[0].ndim != r[1].ndim - 1:
        return layer(x, r[0], real)
    check_batched(ip, n, not batch_axis_removed(n.args[0]))
    one = remap(x, lambda t, fill: t.reshape((1,) + tuple(t.shape)))
    out = ip.b.materialize(layer(one, r[0][None], real[None]))
    return remap(out, lambda t, fill: t.reshape(tuple(real.shape)))


def _conv_transpose_layer(ip, n, args, kwargs, real):
    """``conv_transpose{1,2,3}d(x, w, b, stride, padding, output_padding, groups,
    dilation)``: as ``convolution(..., transposed=True)``."""
    if _is_sym(args[1]):
        ip.unsupported(n, "conv_transpose", "its weight is computed from the input")
    r = ip.real(n.args)
    nd = r[1].ndim - 2
    get = lambda i, d: r[i] if len(r) > i else d  # noqa: E731
    return _batch_of_one(ip, n, args, r, real, lambda x, ri, ro: _transposed(
        ip, n, x, r[1], ro, get(3, 1), get(4, 0), get(7, 1), get(6, 1), nd))


def _from_1d(ip, n, args, r, real):
    """Core ATen writes a 1-d pool as ``unsqueeze(x, 2)`` -> 2-d pool with a unit
    first window -> ``squeeze``: read it back as the 1-d pool of ``x`` (same
    edges, and the node block keeps the layer's own 1-d shape)."""
    src = n.args[0]
    if not (isinstance(src, torch.fx.Node) and src.target is aten.unsqueeze.default
            and r[0].ndim == 4 and r[0].shape[2] == 1 and src.args[1] in (2, -2)):
        return None
    k = tup(r[1], 2)
    st = tup(r[2] if len(r) > 2 and r[2] not in (None, []) else r[1], 2)
    pd = tup(r[3] if len(r) > 3 else 0, 2)
    dl = tup(r[4] if len(r) > 4 and not isinstance(r[4], bool) else 1, 2)
    if (k[0], st[0], pd[0], dl[0]) != (1, 1, 0, 1):
        return None
    x = ip.sym[src.args[0]]
    return x, ip.real(src.args[0]), real.squeeze(2), (k[1], st[1], pd[1], dl[1])


def _unsqueezed(val, real):
    """A 1-d pool's value in the shape ``real`` core ATen gives it (a unit
    dimension inserted)."""
    if isinstance(val, Pending):
        return Pending(val.terms, tuple(real.shape[1:]), val.op, val.name)
    return remap(val, lambda t, fill: t.reshape(real.shape))   # at every row: made at once


def _max_pool(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    out_real = real[0] if isinstance(real, tuple) else real
    one = _from_1d(ip, n, args, r, out_real)
    if one is not None:
        x, real_in, out1, (k, st, pd, dl) = one
        val = pool_op(ip.b, ip.where(n), ip.b.materialize(x), real_in, out1, "max", k, st, pd, dl,
                    r[5] if len(r) > 5 else False)
        val = _unsqueezed(val, out_real)
    else:
        stride = r[2] if len(r) > 2 else None
        val = pool_op(ip.b, ip.where(n), ip.b.materialize(args[0]), r[0], out_real, "max", r[1],
                    stride if stride not in (None, []) else None, r[3] if len(r) > 3 else 0,
                    r[4] if len(r) > 4 else 1, r[5] if len(r) > 5 else False)
    return (val, _indices(ip, n)) if isinstance(real, tuple) else val


def _indices(ip, n):
    """The indices a max (pool) returns beside its values: they depend on the
    input's values, refused where they reach the graph (as a factor, say)."""
    return ip.refused(n, "indices of a maximum", "where the maximum lies depends on the "
                      "input's values (a selection); only the maximum itself is a layer")


def _avg_pool(ip, n, args, kwargs, real):
    """``avg_pool{1,2,3}d(x, kernel, stride, padding, ceil_mode,
    count_include_pad, divisor_override)``: its own divisor per window."""
    raw = ip.real(n.args)
    r = list(raw) + [None] * 7
    kw = ip.real(n.kwargs)
    ceil = bool(kw.get("ceil_mode", r[4] or False))
    include = kw.get("count_include_pad", r[5] if r[5] is not None else True)
    divisor = kw.get("divisor_override", r[6])
    one = _from_1d(ip, n, args, raw, real)
    if one is not None:
        x, real_in, out1, (k, st, pd, _) = one
        val = pool_op(ip.b, ip.where(n), ip.b.materialize(x), real_in, out1, "avg", k, st, pd, 1,
                      ceil, include, divisor)
        return _unsqueezed(val, real)
    stride = r[2]
    return pool_op(ip.b, ip.where(n), ip.b.materialize(args[0]), r[0], real, "avg", r[1],
                   stride if stride not in (None, []) else None, r[3] or 0, 1, ceil, include,
                   divisor)


def _adaptive(kind):
    def rule(ip, n, args, kwargs, real):
        out = real[0] if isinstance(real, tuple) else real
        src = n.args[0]
        x, real_in, out1 = args[0], ip.real(n.args[0]), out
        if isinstance(src, torch.fx.Node) and src.target is aten.unsqueeze.default \
                and real_in.ndim == 4 and real_in.shape[2] == 1 and out.shape[2] == 1:
            # core ATen's 1-d adaptive pool: unsqueeze -> 2-d pool -> squeeze
            x, real_in, out1 = ip.sym[src.args[0]], ip.real(src.args[0]), out.squeeze(2)
        xm = ip.b.materialize(x)
        val = adaptive_pool_op(ip.b, ip.where(n), xm, real_in, out1, kind)
        if out1 is not out:
            # the identity at this size is the unsqueezed value itself
            val = ip.b.materialize(args[0]) if val is xm else _unsqueezed(val, out)
        return (val, _indices(ip, n)) if isinstance(real, tuple) else val
    return rule


def _mean(ip, n, args, kwargs, real):
    """``x.mean(dims)``: the statistic of a normalization when it goes on to
    be subtracted from or to rescale a value (a layer norm written out, SPEC
    §1b); else a linear average (global average pooling over spatial dims, a
    mean over the tokens of a channels-last value, over channel groups)."""
    return _reduction(ip, n, args, real, mean=True)


def _sum(ip, n, args, kwargs, real):
    """``x.sum(dims)``: as :func:`_mean` with weight 1 per term (the radix
    branches that split attention and selective kernels add up)."""
    return _reduction(ip, n, args, real, mean=False)


def _amax(ip, n, args, kwargs, real):
    """``x.amax(dims)`` / ``x.max(dim)``: a max pool with one window over those
    dimensions (a global max pool written as a reduction, SPEC §1: one edge
    from every element of the window, of the pool weight; an active subnetwork
    keeps the window's maximum); the statistic of a normalization where it
    goes on to rescale a value (a max over all dimensions, the batch's
    included, is refused there).  ``max(dim)``'s indices depend on the input:
    refused where they reach the graph (:func:`_indices`)."""
    val = _reduction(ip, n, args, real[0] if isinstance(real, tuple) else real, pool="max")
    return (val, _indices(ip, n)) if isinstance(real, tuple) else val


def _reduction(ip, n, args, real, mean: bool = False, pool: str | None = None):
    dims = _arg(n, ip.real(n.args), 1, "dim")
    real_in = ip.real(n.args[0])
    nd = real_in.ndim
    dl = sorted({d % nd for d in ([dims] if isinstance(dims, int) else dims or range(nd))})
    if dl == [0] and nd > 1 and real_in.shape[1] == 1 \
            and _is_sym(args[0]) and stacked_in_front(ip, n.args[0]):
        # values stacked in front of the batch (torch.stack([a, b]).mean(0)):
        # one sample's values, reduced as over a last dimension; one value
        # stacked alone (MONAI's RegUNet) is that value
        if real_in.shape[0] == 1:
            return remap(ip.b.materialize(args[0]),
                         lambda t, fill: t.reshape((1,) + tuple(real.shape[1:])))
        perm = list(range(1, nd)) + [0]
        args = (remap(ip.b.materialize(args[0]), lambda t, fill: t.permute(perm).contiguous()),)
        real_in, dl = real_in.permute(perm), [nd - 1]
    elif reduces_batch(ip, n):
        # (at once: a gate's branch that mixes the samples is no per-sample gate)
        ip.unsupported(n, _opname(n.target), "it reduces over the batch dimension", at_once=True)
    # the mean of a value that may be negative is a statistic only where it
    # is subtracted; as a factor its sign would change the edges' (SPEC §1b)
    signed = not (isinstance(args[0], Ref) and args[0].nonneg)
    if feeds_normalization(ip, n, reduced=True, signed=signed):
        return Stat(tuple(real.shape[1:]), 0 if signed else 1)
    if 0 in dl:     # (the layers' own index keeps the batch axis first)
        ip.unsupported(n, _opname(n.target), "it reduces over a leading dimension that is not "
                       "the batch (an axis moved there by permute / transpose, or one sample's "
                       "first axis); reduce before moving the axes")
    x = ip.b.materialize(args[0])
    if mean and dl[0] >= 2:
        return global_mean_op(ip.b, ip.where(n), x, real_in, real, dl)
    return reduce_op(ip.b, ip.where(n), x, real_in, real, dl,
                     ip.b.pool_weight if mean or pool else 1.0, pool_type=pool or "avg")


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
        if x.index.shape[0] > 1:    # at every row of a batch of rows: the identity along them
            eye = [torch.eye(x.index.shape[0], dtype=torch.float64)]
            return on_rows(ip.b, ip.where(n), x, r[0], real, lambda xr, ri, ro: Pending(
                [(ResampleBlock(tuple(ri.shape[1:]), tuple(ro.shape[1:]), eye + mats, mode=mode,
                                module=ip.where(n)), xr)], tuple(ro.shape[1:]), op="resample",
                name=ip.where(n)))
        blk = ResampleBlock(tuple(r[0].shape[1:]), tuple(real.shape[1:]), mats, mode=mode,
                            module=ip.where(n))
        # nearest and linear interpolation weights are >= 0: a gate resampled to
        # its input's size (GhostNetV2's attention) is still a non-negative gate
        return Pending([(blk, x)], tuple(real.shape[1:]), op="resample", name=ip.where(n),
                       nonneg=bool(getattr(x, "nonneg", False)))
    return rule


def _const_factor(ip, n, i):
    c = ip.real(n.args[i]) if i < len(n.args) else None
    if isinstance(c, torch.Tensor):
        return c.detach().double()
    return torch.tensor(float(c), dtype=torch.float64)


def _mul(ip, n, args, kwargs, real):
    a, b = args[0], args[1]
    if _is_sym(a) and _is_sym(b):
        return _product(ip, n, a, b, real)
    if not _is_sym(a):
        a, c, src = b, _const_factor(ip, n, 0), n.args[1]
    else:
        c, src = _const_factor(ip, n, 1), n.args[0]
    return _scaled(ip, a, c, n, src)


def _scaled(ip, x, c, n=None, src=None):
    """``x`` times the fixed factor ``c``; a positive factor keeps what is known
    of ``x`` (non-negative, its last elementwise function).  Given the op
    ``n`` and the fx node ``src`` of ``x``: a layer's output made nodes
    already and read only here, through moves of its elements (a gain applied
    channels-last, ``(y.permute(0, 2, 3, 1) * w).permute(0, 3, 1, 2)``) or a
    normalization's rescaling (a filter response norm's gain), takes the
    factor on the edges that end on it, as a channels-first gain or a norm's
    does (SPEC §1b), not on those of the layers that read it past an
    activation (:func:`~.norm_gain.fold_fixed_gain`)."""
    out = fold_fixed_gain(ip, n, x, c, src) if n is not None and isinstance(x, Ref) \
        else scale(ip.b, x, c)
    if isinstance(out, Ref) and isinstance(x, Ref) and bool((c > 0).all()):
        out = _flag(out, nonneg=x.nonneg, fn=x.fn)
    return out


def _addcmul(ip, n, args, kwargs, real):
    """``addcmul(b, a, x, value=v) = b + v * a * x`` with a fixed ``a``: the
    rescaling of ``x`` by ``v * a`` (ResMLP's affine layer, the bias ``b``
    dropped as every bias is), added to ``b`` where ``b`` is a network value
    too (kornia's ``rgb_to_grayscale``: a fixed mix of channels written as
    ``addcmul(r * wr, g, wg)``)."""
    b, t1, t2 = args[0], args[1], args[2]
    if _is_sym(t1) == _is_sym(t2):
        ip.unsupported(n, "addcmul", "only b + v * a * x with a fixed a is supported (a "
                       "product of two network values has no fixed weights)")
    x, i = (t1, 2) if _is_sym(t1) else (t2, 1)
    term = _scaled(ip, x, _const_factor(ip, n, i) * float(n.kwargs.get("value", 1)))
    if not _is_sym(b):
        return _constant_broadcast(ip, term, real)
    r = ip.real(n.args)
    term = _broadcast(ip, n, term, r[1] * r[2], real)
    return add_values(ip.b, _broadcast(ip, n, b, r[0], real), term, tuple(real.shape[1:]),
                      ip.where(n), lambda what, why: ip.unsupported(n, what, why))


def _div(ip, n, args, kwargs, real):
    a, b = args[0], args[1]
    if _is_sym(b):
        if _is_sym(a) and _same(ip.b.materialize(a), ip.b.materialize(b)):
            return of_one_value(ip, n, ip.b.materialize(a), ip.b.materialize(b), real,
                                f"x / {b.fn or 'f(x)'}")   # x / (1 + |x|): Softsign
        if _is_sym(a) and is_positive_divisor(ip, n.args[1]) and \
                not _same(ip.b.materialize(a), ip.b.materialize(b)):
            # division by a value bounded away from 0 computed from the input
            # (x / (1 + exp(-z)), a sigmoid written out): a gate (SPEC §1b)
            return _gated(ip, n, ip.b.materialize(a), real,
                          factor_range(ip, n.args[1], divides=True), branch=n.args[1])
        ip.unsupported(n, "division by a network value", "only division by a non-negative "
                       "statistic (a normalization) or by a value bounded away from 0 (1 + "
                       "exp(-z)) is a positive rescaling")
    return _scaled(ip, a, 1.0 / _const_factor(ip, n, 1))


def _neg(ip, n, args, kwargs, real):
    return scale(ip.b, args[0], torch.tensor(-1.0, dtype=torch.float64))


def _broadcast(ip, n, v, real_v, real):
    """An operand of a sum that broadcasts to the sum's shape (a global-context
    block's ``x + ctx`` with ``ctx`` of C x 1 x 1): expanded, a re-indexing
    (SPEC §1: every element of the sum reads the element it was copied from)."""
    if not isinstance(real_v, torch.Tensor) or real_v.shape == real.shape:
        return v
    if real_v.ndim != real.ndim or real_v.shape[0] != real.shape[0]:
        ip.unsupported(n, _opname(n.target), "a sum of network values whose batch or "
                       "number of dimensions differ")
    return expand_to(ip.b, v, real.shape[1:])


def _constant_broadcast(ip, v, real):
    """A value plus a constant of a larger shape (``y + c`` with ``c`` of 2 x 1 x
    C x 1 x 1): copied to the sum's shape, a re-indexing."""
    have = tuple(v.index.shape) if isinstance(v, Ref) else (1,) + tuple(v.shape) \
        if isinstance(v, Pending) else None
    if have is not None and isinstance(real, torch.Tensor) and have != tuple(real.shape):
        return expand_to(ip.b, v, real.shape[1:], lead=real.shape[0])
    return v


def _add(ip, n, args, kwargs, real):
    sub = base_packet(n.target) in (aten.sub, aten.rsub)     # sub_ too
    a, b = args[0], args[1]
    alpha = n.kwargs.get("alpha", args[2] if len(args) > 2 and not _is_sym(args[2]) else 1)
    if n.target.overloadpacket is aten.rsub:   # rsub(x, c) = c - alpha * x
        a, b = b, a
    if not _is_sym(b):
        if not _is_sym(a):
            return None
        if isinstance(a, Pending) and a.nonneg:
            a = ip.b.materialize(a)     # (an upsampled gate): a Ref, which the flag marks
        # still non-negative (a gate plus a constant) or not
        keep = isinstance(a, Ref) and value_range(ip, n)[0] >= 0
        return _constant_broadcast(ip, _flag(a, nonneg=keep) if isinstance(a, Ref) else a, real)
    if not _is_sym(a):
        # c - alpha x (1 - sigmoid(z), a highway gate's other half) or c + alpha x
        k = -float(alpha) if sub else float(alpha)
        out = scale(ip.b, b, torch.tensor(k, dtype=torch.float64))
        return _constant_broadcast(ip, _flag(out, nonneg=True) if isinstance(out, Ref) and
                                   value_range(ip, n)[0] >= 0 else out, real)
    coef = (-1.0 if sub else 1.0) * float(alpha)
    if coef != 1.0:
        b = scale(ip.b, b, torch.tensor(coef, dtype=torch.float64))
    ra, rb = ip.real(n.args[0]), ip.real(n.args[1])
    if n.target.overloadpacket is aten.rsub:
        ra, rb = rb, ra
    a, b = _broadcast(ip, n, a, ra, real), _broadcast(ip, n, b, rb, real)
    return add_values(ip.b, a, b, tuple(real.shape[1:]), ip.where(n),
                      lambda what, why: ip.unsupported(n, what, why),
                      judge=lambda: judge_monotone(ip, n, real, "a sum of elementwise "
                                                   "functions of one value"))


# ----------------------------------------------------------------------------------
# elementwise activations
def _where(ip, n, args, kwargs, real):
    """``where(mask, x, c)`` / ``where(mask, c, x)`` and ``masked_fill(x, mask, c)``
    with a fixed ``mask`` and a constant ``c`` (an adaptive pool that an exporter
    wrote as a gather, a masking and a sum): the value's own nodes where it is
    taken, padding where the constant is (no node and no edge, as zero
    padding; a max pool may not read it).  ``where(mask, x, y)`` of two
    network values (an in-place write into a view, lowered to core ATen): a
    re-indexing, each element one of theirs.  A mask computed from the input
    chooses per sample: a selection, refused."""
    fill = _opname(n.target).startswith("masked_fill")
    if len(args) < 3:
        ip.unsupported(n, _opname(n.target), "where(condition) lists the input's nonzero "
                       "elements: a selection")
    x, mask, other = (args[0], args[1], args[2]) if fill else (args[1], args[0], args[2])
    keep_x = not fill
    if not fill and _is_sym(x) and _is_sym(other) and not _is_sym(mask):
        # a fixed mask choosing between two network values (a write into a
        # view, lowered): each element is one of theirs, a re-indexing
        m = torch.as_tensor(ip.real(n.args[0])).bool().cpu()
        a, b = ip.b.materialize(x), ip.b.materialize(other)

        def run(kind):
            ta, tb = as_tensor_of(kind)(a, None), as_tensor_of(kind)(b, None)
            shape = torch.broadcast_shapes(tuple(m.shape), tuple(ta.shape), tuple(tb.shape))
            return torch.where(m.expand(shape), ta.expand(shape), tb.expand(shape)).contiguous()
        return reindexed([a, b], run)
    if not _is_sym(x):
        x, other, keep_x = other, x, not keep_x
    if _is_sym(mask) or not _is_sym(x) or _is_sym(other):
        ip.unsupported(n, _opname(n.target), "only a fixed mask choosing between a network "
                       "value and a constant is supported (a choice made by the input's "
                       "values is a selection)")
    m = torch.as_tensor(ip.real(n.args[1] if fill else n.args[0])).bool().cpu()
    keep = m if keep_x else ~m
    x = ip.b.materialize(x)
    shape = torch.broadcast_shapes(tuple(x.index.shape), tuple(keep.shape))
    keep = keep.expand(shape)
    if not bool(keep.any()):
        return None     # the constant everywhere (lerp's decomposition): no network value
    out = remap(x, lambda t, f: torch.where(keep, t.expand(shape),
                                            torch.tensor(f, dtype=t.dtype)).contiguous())
    # a gate filled with a negative constant is no longer non-negative
    c = torch.as_tensor(ip.real(n.args[2 if fill or keep_x else 1]))
    if bool(keep.all()):
        return out
    # the constant written in is outside a bounded activation's range
    return _flag(out, nonneg=out.nonneg and bool((c >= 0).all()), fn=None)


def _identity(ip, n, args, kwargs, real):
    """Copies, aliases, eval-mode dropout: the value itself (a copy is made
    contiguous, as the op makes it, so that later views see the same layout)."""
    v = args[0]
    if isinstance(v, Ref):
        return remap(v, lambda t, fill: t.contiguous())
    return v


# ----------------------------------------------------------------------------------
# re-indexings: applied to the node-id tensor itself (and to the scale)
def _shape_rule(ip, n, args, kwargs, real):
    if n.target is aten.slice.Tensor and isinstance(args[0], Pending):
        cropped = cropped_transpose(ip, n, args[0])
        if cropped is not None:
            return cropped
    a = [ip.b.materialize(v) if isinstance(v, Pending) else v for v in args]
    a = [type(v)(ip.b.materialize(u) if isinstance(u, Pending) else u for u in v)
         if isinstance(v, (list, tuple)) else v for v in a]
    real_args = ip.real(n.args)
    if getattr(n.target, "overloadpacket", None) in (aten.cat, aten.stack) and \
            not all(_is_sym(v) for v in a[0]):
        a[0] = _constant_parts(ip, n, list(a[0]), real_args[0])
    pad = n.target is aten.constant_pad_nd.default
    if getattr(n.target, "overloadpacket", None) in (aten.index, aten.gather) and \
            has_sym(a[1:]):
        ip.unsupported(n, _opname(n.target), "its indices are computed from the input (a "
                       "gather that depends on the data has no fixed edges)")

    # an in-place op (``y.copy_(z)``, ``x.t_()``) run on the ids would write
    # into the tensors of values that other values share (an activation's
    # ids are its input's): it runs on copies
    writes = writes_into_argument(n.target)

    def run(kind):
        vals = zip_map(list(a), list(real_args), as_tensor_of(kind))
        if writes:
            vals = [v.clone() if isinstance(v, torch.Tensor) else v for v in vals]
        if pad or n.target is aten.pad.default:
            # zero padding: id -1 (no node), scale 0 (SPEC §1: padding adds no edge)
            rest = vals[2:] + [None] * 2
            mode, value = (("constant", rest[0]) if pad else (rest[0] or "constant", rest[1]))
            if mode in ("reflect", "replicate", "circular"):
                # the border copies nodes inside (a gather): their ids, scales and values
                return n.target(*vals, **ip.real(n.kwargs))
            # -inf padding that only max pools read is what they ignore: no node
            # either; nor is a constant that no max pool reads (a bias, as zero
            # padding plus that constant: no dependence on the input)
            max_only = value == -math.inf and all(_is_max_pool(u.target) for u in n.users)
            constant = value is not None and math.isfinite(value) and \
                not any(_is_max_pool(u.target) for u in n.users)
            if mode != "constant" or (value not in (0, 0.0, None) and not max_only
                                      and not constant):
                ip.unsupported(n, f"padding mode {mode!r} value {value}")
            return torch.constant_pad_nd(vals[0], vals[1], 0 if kind == "scale" else -1)
        if getattr(n.target, "overloadpacket", None) in (aten.view, aten._unsafe_view):
            # ids, not memory: a view of a tensor the rules made contiguous
            # differently from the real one is the same reshape
            return vals[0].reshape(vals[1])
        return n.target(*vals, **ip.real(n.kwargs))

    out = reindexed(a, run)
    if (pad or n.target is aten.pad.default) and isinstance(out, Ref):
        # padding with a constant other than 0: outside a bounded activation's
        # range, and a negative one makes a gate signed
        rest = list(real_args[2:]) + [None] * 2     # (value) or (mode, value)
        value = rest[0] if pad else rest[1]
        if value is not None and float(value) != 0:
            out = _flag(out, nonneg=out.nonneg and float(value) >= 0, fn=None)
    return out


def _no_nodes(shape) -> Ref:
    """A constant part of a value: no node (id -1) and no weight, as zero padding."""
    return Ref(torch.full(shape, -1, dtype=torch.long), torch.zeros(shape, dtype=torch.float64))


def _constant_parts(ip, n, parts, reals) -> list:
    """The constant tensors of a concatenation (CoordConv's coordinate channels,
    the zero channels of an option-A shortcut) as parts without nodes, as zero
    padding (SPEC §1: a constant adds no edge); refused where a max pool reads
    the concatenation (a window over the constant has no node to keep)."""
    if any(_is_max_pool(u.target) for u in n.users):
        ip.unsupported(n, _opname(n.target), "a max pool reads a constant concatenated to "
                       "a value")
    # the ids have the real values' shape, the batch of one first, or one
    # sample's values regrouped as rows (``y.view(B * S, C, T)``, a token
    # concatenated to every row)
    rows = any(_is_sym(p) and tuple(p.index.shape) == tuple(torch.as_tensor(r).shape)
               and p.index.shape[0] > 1 for p, r in zip(parts, reals))
    for i, (p, r) in enumerate(zip(parts, reals)):
        if not _is_sym(p):
            shape = tuple(torch.as_tensor(r).shape)
            parts[i] = _no_nodes(shape if rows else (1,) + shape[1:])
    return parts


def _is_max_pool(target) -> bool:
    name = str(getattr(target, "overloadpacket", target))
    return "max_pool" in name and "adaptive" not in name



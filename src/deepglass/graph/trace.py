"""Tracing a ``torch.nn.Module`` into a :class:`SignedGraph` (SPEC §1).

The module is traced with ``torch.fx`` and interpreted twice at once: on a
real sample (which gives every shape) and symbolically.  A symbolic value is

- ``Ref``: the value is a re-indexing of existing graph nodes: an int64 tensor
  of global node ids with the value's shape (``-1`` marks zero padding) and an
  optional per-element scale (folded batch norm, scalar multiplication).
  Shape operations (flatten, view, cat, chunk, transpose, channel shuffle,
  zero padding, ...) are applied to the id tensor itself, so they need no rule
  of their own;
- ``Pending``: a sum of linear operators applied to ``Ref``\\ s that has no node
  block yet.  A residual addition merges the terms of its operands (SPEC §1:
  the add creates no nodes; an identity shortcut becomes weight-1 edges).  The
  value becomes a node block when anything but an addition, batch norm or a
  scalar multiplication consumes it.

The op tables at the bottom map module types, functions and methods to
handlers; supporting a new layer is one handler and one table entry.
"""

from __future__ import annotations

import math
import operator
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DeepglassError, UnsupportedLayerError
from .blocks import (ConvBlock, DenseBlock, EdgeBlock, IdentityBlock, PoolBlock,
                     adaptive_windows, pool_windows)
from .signed_graph import NodeBlock, SignedGraph

__all__ = ["trace", "SUPPORTED", "NonMonotoneActivationWarning", "output_tensor", "RULES"]


class _ForwardError(Exception):
    """The model itself failed on the sample input (e.g. a wrong input shape)."""


class NonMonotoneActivationWarning(UserWarning):
    """The network has an activation that is not non-decreasing."""


@dataclass
class Ref:
    index: torch.Tensor            # int64, shape (1, *value_shape): global node ids, -1 = zero pad
    scale: torch.Tensor | None = None  # float64, same shape, or None (all ones)
    nonneg: bool = False           # the value is >= 0 whatever the input (a gate: sigmoid, ...)
    fn: str | None = None          # last elementwise function applied (names x * f(x) products)


@dataclass
class Pending:
    terms: list                    # list of (EdgeBlock, Ref)
    shape: tuple                   # per-sample value shape
    op: str = "add"
    name: str = ""


class _Builder:
    """Accumulates node and edge blocks while the fx graph is interpreted."""

    def __init__(self, pool_weight, batchnorm):
        self.node_blocks: list[NodeBlock] = []
        self.edge_blocks: list[EdgeBlock] = []
        self.pool_weight = pool_weight
        self.batchnorm = batchnorm
        self.warned: set[str] = set()
        self.n = 0

    def new_block(self, name, shape, op) -> NodeBlock:
        nb = NodeBlock(name=name, shape=tuple(shape), offset=self.n, op=op,
                       index=len(self.node_blocks))
        self.node_blocks.append(nb)
        self.n += nb.size
        return nb

    def materialize(self, val):
        """Turn a Pending value into a node block and return its Ref."""
        if not isinstance(val, Pending):
            return val
        first = val.terms[0][0]
        nb = self.new_block(val.name or first.module, first.out_shape, val.op)
        for blk, ref in val.terms:
            if blk.out_size != nb.size:
                raise DeepglassError(f"addition at {val.name!r} of values with different sizes "
                                     f"({blk.out_shape} vs {nb.shape}) is not supported")
            self.attach(blk, ref, nb.index)
        idx = torch.arange(nb.offset, nb.stop, dtype=torch.long).reshape((1,) + tuple(val.shape))
        return Ref(idx)

    def attach(self, blk: EdgeBlock, ref: Ref, dst: int) -> None:
        idx = ref.index.reshape(blk.in_shape)
        if (idx < 0).any():
            raise UnsupportedLayerError(
                f"layer {blk.module!r} reads zero-padded values that are not a border of "
                "its input; only zero padding directly before a convolution or pool is supported")
        flat = idx.reshape(-1)
        if flat.numel() and bool((flat[1:] - flat[:-1] == 1).all()):
            blk.src_range = (int(flat[0]), int(flat[-1]) + 1)
            blk.src_index = None
        else:
            blk.src_index = idx.contiguous()  # symbolic ids are never written in place: no copy
            blk.src_range = None
        starts = [b.offset for b in self.node_blocks]
        if blk.src_range:
            first, last = np.searchsorted(starts, [blk.src_range[0], blk.src_range[1] - 1],
                                          side="right") - 1
            blk.src_blocks = tuple(range(int(first), int(last) + 1))
        else:
            # the blocks touched: one vectorized search per id and a bincount
            # (no sort of the ids: a concatenation of many blocks has millions)
            which = np.searchsorted(starts, flat.numpy(), side="right") - 1
            blk.src_blocks = tuple(int(b) for b in
                                   np.flatnonzero(np.bincount(which, minlength=len(starts))))
        if ref.scale is not None:
            s = ref.scale.reshape(blk.in_shape)
            if not bool((s == 1).all()):
                blk.in_scale = s.contiguous() if blk.in_scale is None else blk.in_scale * s
        blk.dst = dst
        self.edge_blocks.append(blk)

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(message, NonMonotoneActivationWarning, stacklevel=4)


# ----------------------------------------------------------------------------------
# helpers
def _tup(v, n):
    if isinstance(v, (list, tuple)):
        return tuple(int(a) for a in v)
    return (int(v),) * n


def _strip_zero_padding(ref: Ref, nd: int) -> tuple[Ref, list[tuple[int, int]]]:
    """Remove a border of zero padding (id -1) from the last ``nd`` dims of a Ref.

    Returns the interior Ref and the (lo, hi) widths, so an explicit ``F.pad``
    (asymmetric padding) becomes the padding of the following conv / pool.
    """
    idx = ref.index
    if not bool((idx < 0).any()):
        return ref, [(0, 0)] * nd
    pads = []
    sl = [slice(None)] * idx.ndim
    for d in range(idx.ndim - nd, idx.ndim):
        valid = (idx >= 0).movedim(d, 0).reshape(idx.shape[d], -1).any(1)
        pos = torch.nonzero(valid).reshape(-1)
        if len(pos) == 0:
            raise DeepglassError("a convolution reads a value made only of padding")
        lo, hi = int(pos[0]), idx.shape[d] - 1 - int(pos[-1])
        pads.append((lo, hi))
        sl[d] = slice(lo, idx.shape[d] - hi)
    inner = Ref(idx[tuple(sl)], None if ref.scale is None else ref.scale[tuple(sl)])
    return inner, pads


def _bn_scale(bn, mode):
    if mode == "ignore":
        return None
    if bn.running_var is None:
        raise UnsupportedLayerError(
            f"batch norm {bn._dg_path!r} has no running statistics; use batchnorm='ignore'")
    s = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight.detach().double()
    return s


def _scale_value(builder, val, s, channel_dim=True):
    """Multiply a symbolic value by a scalar or per-channel (dim 1) scale."""
    s = torch.as_tensor(s, dtype=torch.float64)
    if isinstance(val, Pending):
        for blk, _ in val.terms:
            if s.ndim == 0:
                blk.scale_output(s)
            else:
                blk.scale_output(s.reshape((-1,) + (1,) * (len(blk.out_shape) - 1)))
        return val
    if isinstance(val, Ref):
        full = torch.ones(val.index.shape, dtype=torch.float64) if val.scale is None else val.scale
        if s.ndim:
            s = s.reshape((1, -1) + (1,) * (val.index.ndim - 2))
        return Ref(val.index, full * s)
    return val


# ----------------------------------------------------------------------------------
# handlers of linear-operator layers: (builder, name, x: Ref, real_in, real_out, **params) -> Pending
def _dense(builder, name, x, real_in, real_out, weight):
    if real_in.ndim != 2:
        raise UnsupportedLayerError(
            f"linear layer {name!r} is applied to a {real_in.ndim - 1}-d value per sample; "
            "only (batch, features) inputs are supported")
    blk = DenseBlock(weight.detach(), module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op="dense", name=name)


def _conv(builder, name, x, real_in, real_out, weight, stride, padding, dilation, groups,
          padding_mode="zeros"):
    nd = weight.ndim - 2
    if padding_mode != "zeros":
        raise UnsupportedLayerError(f"convolution {name!r} uses padding_mode={padding_mode!r}; "
                                    "only zero padding is supported")
    x, extra = _strip_zero_padding(x, nd)
    k = weight.shape[2:]
    stride, dilation = _tup(stride, nd), _tup(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        else:  # 'same', PyTorch's convention: the extra element goes to the high side
            tot = [d * (kk - 1) for d, kk in zip(dilation, k)]
            pads = [(t // 2, t - t // 2) for t in tot]
    else:
        pads = [(p, p) for p in _tup(padding, nd)]
    pads = [(a + c, b + d) for (a, b), (c, d) in zip(pads, extra)]
    in_shape = tuple(x.index.shape[1:])
    blk = ConvBlock(weight.detach(), in_shape, tuple(real_out.shape[1:]), stride,
                    pads, dilation, groups, module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op="conv", name=name)


def _pool(builder, name, x, real_in, real_out, pool_type, kernel_size, stride=None,
          padding=0, dilation=1, ceil_mode=False, **_):
    nd = real_in.ndim - 2
    x, extra = _strip_zero_padding(x, nd)
    k = _tup(kernel_size, nd)
    s = _tup(stride if stride not in (None, []) else kernel_size, nd)
    p = _tup(padding, nd)
    d = _tup(dilation, nd)
    in_shape = tuple(x.index.shape[1:])
    wins = []
    for dim in range(nd):
        lo, hi = extra[dim]
        if lo or hi:
            if p[dim] or lo != hi:
                raise UnsupportedLayerError(f"pool {name!r}: explicit padding before a padded "
                                            "or asymmetrically padded pool is not supported")
        w = pool_windows(in_shape[1 + dim], k[dim], s[dim], p[dim] + lo, d[dim], ceil_mode)
        wins.append(w)
    out_sp = tuple(len(w) for w in wins)
    if out_sp != tuple(real_out.shape[2:]):
        raise DeepglassError(f"pool {name!r}: computed output {out_sp} differs from the "
                             f"network's {tuple(real_out.shape[2:])}")
    blk = PoolBlock(in_shape, (in_shape[0],) + out_sp, wins, pool_type,
                    weight=builder.pool_weight, kernel_area=math.prod(k), module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op=f"{pool_type}pool", name=name)


def _adaptive_pool(builder, name, x, real_in, real_out, pool_type, **_):
    in_shape = tuple(real_in.shape[1:])
    out_sp = tuple(real_out.shape[2:])
    if out_sp == in_shape[1:]:
        return x  # identity at this input size: adds nothing (SPEC §1)
    wins = [adaptive_windows(L, O) for L, O in zip(in_shape[1:], out_sp)]
    blk = PoolBlock(in_shape, (in_shape[0],) + out_sp, wins, pool_type,
                    weight=builder.pool_weight, module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op=f"{pool_type}pool", name=name)


def _global_mean(builder, name, x, real_in, real_out, dims):
    """``x.mean(dims)`` over spatial dims: an average pool whose windows span the
    reduced dimensions (all of them: global average pooling)."""
    nd = real_in.ndim
    dims = sorted(d % nd for d in (dims if isinstance(dims, (list, tuple)) else [dims]))
    if not dims or dims[0] < 2:
        raise UnsupportedLayerError(f"mean over dims {dims} at {name!r}: only means over "
                                    "spatial dimensions (not batch or channels) are supported")
    if all(real_in.shape[d] == 1 for d in dims):
        # a mean over dimensions of size 1 (global pooling of a 1x1 map) is the
        # identity, which adds nothing (SPEC §1)
        out = (1,) + tuple(real_out.shape[1:])
        return Ref(x.index.reshape(out), None if x.scale is None else x.scale.reshape(out))
    in_shape = tuple(real_in.shape[1:])
    wins = [adaptive_windows(L, 1) if d + 1 in dims else [np.array([i]) for i in range(L)]
            for d, L in enumerate(in_shape[1:], start=1)]
    blk = PoolBlock(in_shape, (in_shape[0],) + tuple(len(w) for w in wins), wins, "avg",
                    weight=builder.pool_weight, module=name)
    return Pending([(blk, x)], tuple(real_out.shape[1:]), op="avgpool", name=name)


def _module_params(m: nn.Module) -> tuple[Callable, dict]:
    t = type(m)
    if isinstance(m, nn.Linear):
        return _dense, {"weight": m.weight}
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return _conv, dict(weight=m.weight, stride=m.stride, padding=m.padding,
                           dilation=m.dilation, groups=m.groups, padding_mode=m.padding_mode)
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return _pool, dict(pool_type="max", kernel_size=m.kernel_size, stride=m.stride,
                           padding=m.padding, dilation=m.dilation, ceil_mode=m.ceil_mode)
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        return _pool, dict(pool_type="avg", kernel_size=m.kernel_size, stride=m.stride,
                           padding=m.padding, ceil_mode=m.ceil_mode)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return _adaptive_pool, dict(pool_type="avg")
    if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return _adaptive_pool, dict(pool_type="max")
    raise KeyError(t)


def _function_params(fn, args, kwargs) -> tuple[Callable, dict]:
    """Parameters of a functional linear op, from its real arguments."""
    a = list(args[1:])
    kw = dict(kwargs)

    def get(i, key, default):
        return a[i] if len(a) > i else kw.get(key, default)

    if fn is F.linear:
        return _dense, {"weight": get(0, "weight", None)}
    if fn in (F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d):
        return _conv, dict(weight=get(0, "weight", None), stride=get(2, "stride", 1),
                           padding=get(3, "padding", 0), dilation=get(4, "dilation", 1),
                           groups=get(5, "groups", 1))
    if fn in (F.max_pool1d, F.max_pool2d, F.max_pool3d):
        return _pool, dict(pool_type="max", kernel_size=get(0, "kernel_size", None),
                           stride=get(1, "stride", None), padding=get(2, "padding", 0),
                           dilation=get(3, "dilation", 1), ceil_mode=get(4, "ceil_mode", False))
    if fn in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d):
        return _pool, dict(pool_type="avg", kernel_size=get(0, "kernel_size", None),
                           stride=get(1, "stride", None), padding=get(2, "padding", 0),
                           ceil_mode=get(3, "ceil_mode", False))
    if fn in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d):
        return _adaptive_pool, dict(pool_type="avg")
    if fn in (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d):
        return _adaptive_pool, dict(pool_type="max")
    raise KeyError(fn)


# ----------------------------------------------------------------------------------
# op tables
MONOTONE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU,
                    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softplus, nn.Hardsigmoid, nn.LogSigmoid,
                    nn.Threshold, nn.Softsign, nn.Softmax, nn.LogSoftmax, nn.Softmax2d,
                    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                    nn.LocalResponseNorm, nn.CrossMapLRN2d, nn.Identity)
NONMONOTONE_MODULES = (nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.Tanhshrink, nn.Softmin)
BATCHNORM_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
LINEAR_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d,
                  nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                  nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                  nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
SHAPE_MODULES = (nn.Flatten, nn.Unflatten, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
                 nn.ChannelShuffle)

MONOTONE_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu,
                      F.leaky_relu_, F.elu, F.selu, F.celu, F.hardtanh, F.hardtanh_, F.softplus,
                      torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardsigmoid, F.logsigmoid,
                      F.softmax, torch.softmax, F.log_softmax, torch.log_softmax, F.dropout,
                      F.dropout2d, F.local_response_norm, torch.clamp, torch.clip,
                      F.threshold, F.prelu}
NONMONOTONE_FUNCTIONS = {F.gelu, F.silu, F.hardswish, F.mish}
MONOTONE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "softmax",
                    "log_softmax", "clamp", "clamp_", "clamp_min", "clamp_min_", "clip",
                    "clip_", "exp", "float", "to", "type_as", "detach"}
NONMONOTONE_METHODS = {"gelu", "silu"}
SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.cat, torch.concat, torch.chunk,
                   torch.split, torch.transpose, torch.permute, torch.squeeze, torch.unsqueeze,
                   torch.stack, torch.narrow, operator.getitem, F.pad, torch.movedim,
                   F.channel_shuffle, torch.channel_shuffle}
SHAPE_METHODS = {"view", "reshape", "flatten", "permute", "transpose", "contiguous", "chunk",
                 "split", "squeeze", "unsqueeze", "narrow", "movedim", "unflatten", "view_as",
                 "reshape_as"}
ADD_TARGETS = {operator.add, operator.iadd, torch.add, "add", "add_", operator.sub,
               operator.isub, torch.sub, "sub", "sub_"}
MUL_TARGETS = {operator.mul, operator.imul, torch.mul, "mul", "mul_", operator.truediv,
               operator.itruediv, torch.div, "div", "div_"}
NONTENSOR_METHODS = {"size", "dim", "numel"}

SUPPORTED = ("linear, conv1d/2d/3d (stride, padding incl. 'same' and asymmetric F.pad, "
             "dilation, groups), max/avg pooling incl. adaptive and ceil_mode, global mean, "
             "batch norm, residual add/sub, cat, chunk/split, flatten/view/reshape/"
             "permute/transpose (channel shuffle), zero padding, scalar multiplication, "
             "and elementwise activations / dropout / softmax / local response norm")


# ----------------------------------------------------------------------------------
class _Interpreter(torch.fx.Interpreter):
    def __init__(self, gm, builder: _Builder, input_shape, root: nn.Module):
        super().__init__(gm)
        self.b = builder
        self.sym: dict[torch.fx.Node, Any] = {}
        self.input_shape = tuple(input_shape)
        self.modules = dict(root.named_modules())

    def run_node(self, n):
        try:
            real = super().run_node(n)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise _ForwardError(str(exc)) from exc
        self._cur = real
        self.sym[n] = self._symbolic(n, real)
        # a pending value used more than once gets its node block now, so that
        # every user sees the same nodes
        if isinstance(self.sym[n], Pending) and len(n.users) > 1:
            self.sym[n] = self.b.materialize(self.sym[n])
        return real

    # -- symbolic evaluation -----------------------------------------------------------
    def _s(self, a):
        return torch.fx.node.map_arg(a, lambda nd: self.sym[nd])

    def _where(self, n) -> str:
        if n.op == "call_module":
            return str(n.target)
        stack = n.meta.get("nn_module_stack")
        if stack:
            path = list(stack.values())[-1]
            path = path[0] if isinstance(path, tuple) else path
            return f"{path}:{n.name}"
        return n.name

    def _unsupported(self, n, what):
        raise UnsupportedLayerError(
            f"unsupported layer {self._where(n)!r} (op {what}): deepglass supports {SUPPORTED}")

    def _symbolic(self, n, real):
        if n.op == "placeholder":
            if self.b.node_blocks:
                raise DeepglassError("models with more than one input are not supported")
            nb = self.b.new_block("input", self.input_shape, "input")
            return Ref(torch.arange(nb.offset, nb.stop).reshape((1,) + self.input_shape))
        if n.op == "get_attr":
            return None
        if n.op == "output":
            return self._s(n.args[0])
        args, kwargs = self._s(n.args), self._s(n.kwargs)
        depends = _has_sym(args) or _has_sym(kwargs)
        if not depends:
            return None  # a constant (buffer, size arithmetic)
        if n.op == "call_module":
            return self._call_module(n, self.modules[n.target], args, real)
        target = n.target
        if (n.op == "call_method" and target in NONTENSOR_METHODS) or target is getattr:
            return None  # sizes, shapes, dtypes: not network values
        if target in ADD_TARGETS:
            return self._add(n, args, kwargs, target)
        if target in MUL_TARGETS:
            return self._mul(n, args, target)
        if target in SHAPE_FUNCTIONS or (n.op == "call_method" and target in SHAPE_METHODS):
            return self._shape_op(n, args, kwargs)
        if target in MONOTONE_FUNCTIONS or (n.op == "call_method" and target in MONOTONE_METHODS):
            return self.b.materialize(args[0])
        if target in NONMONOTONE_FUNCTIONS or (n.op == "call_method" and
                                                  target in NONMONOTONE_METHODS):
            self._warn_nonmonotone(getattr(target, "__name__", str(target)))
            return self.b.materialize(args[0])
        if n.op == "call_method" and target == "mean" or target is torch.mean:
            x = self.b.materialize(args[0])
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            return _global_mean(self.b, self._where(n), x, self._real(n.args[0]), real, dims)
        if n.op == "call_function":
            try:
                handler, params = _function_params(target, self._real(n.args),
                                                   self._real(n.kwargs))
            except KeyError:
                self._unsupported(n, getattr(target, "__name__", str(target)))
            x = self.b.materialize(args[0])
            return handler(self.b, self._where(n), x, self._real(n.args[0]), real, **params)
        self._unsupported(n, f"{n.op} {target}")

    def _real(self, a):
        return torch.fx.node.map_arg(a, lambda nd: self.env[nd])

    def _call_module(self, n, m, args, real):
        m._dg_path = str(n.target)
        if isinstance(m, LINEAR_MODULES):
            handler, params = _module_params(m)
            x = self.b.materialize(args[0])
            real_in = self._real(n.args[0])
            return handler(self.b, str(n.target), x, real_in, real, **params)
        if isinstance(m, BATCHNORM_MODULES):
            s = _bn_scale(m, self.b.batchnorm)
            return args[0] if s is None else _scale_value(self.b, args[0], s)
        if isinstance(m, MONOTONE_MODULES):
            if isinstance(m, (nn.LeakyReLU,)) and m.negative_slope < 0:
                self._warn_nonmonotone(type(m).__name__)
            if isinstance(m, nn.PReLU) and bool((m.weight < 0).any()):
                neg = int((m.weight < 0).sum())
                self._warn_nonmonotone(f"PReLU at {str(n.target)!r} ({neg} of "
                                       f"{m.weight.numel()} learned slopes are negative)")
            return self.b.materialize(args[0])
        if isinstance(m, NONMONOTONE_MODULES):
            self._warn_nonmonotone(type(m).__name__)
            return self.b.materialize(args[0])
        if isinstance(m, SHAPE_MODULES):
            return self._shape_op(n, args, self._s(n.kwargs), module=m)
        self._unsupported(n, type(m).__name__)

    def _warn_nonmonotone(self, name):
        self.b.warn_once(name, f"activation {name} is not non-decreasing: the monotonicity "
                               "theorems (and near-monotonicity tests) assume non-decreasing "
                               "activations")

    def _add(self, n, args, kwargs, target):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        alpha = kwargs.get("alpha", 1)
        sub = target in (operator.sub, operator.isub, torch.sub, "sub", "sub_")
        if not isinstance(a, (Ref, Pending)):
            a, b = b, a
            if sub:   # c - x: the tensor operand is negated
                a = _scale_value(self.b, a, -1.0)
                sub = False
        if not isinstance(b, (Ref, Pending)):
            return a  # adding a constant (a bias): no edges
        coef = (-1.0 if sub else 1.0) * float(alpha)
        if coef != 1.0:
            b = _scale_value(self.b, b, coef)
        return _add_values(self.b, a, b, tuple(self._cur.shape[1:]), self._where(n),
                           lambda what: self._unsupported(n, what))

    def _mul(self, n, args, target):
        a, b = args[0], args[1]
        ra, rb = self._real(n.args[0]), self._real(n.args[1])
        div = target in (operator.truediv, operator.itruediv, torch.div, "div", "div_")
        if isinstance(a, (Ref, Pending)) and isinstance(b, (Ref, Pending)):
            self._unsupported(n, "product of two network values (gating / attention)")
        if not isinstance(a, (Ref, Pending)):
            if div:
                self._unsupported(n, "division by a network value")
            a, rb = b, ra
        c = rb
        if isinstance(c, torch.Tensor):
            if c.numel() != 1:
                self._unsupported(n, "multiplication by a constant tensor")
            c = float(c)
        c = float(c)
        if div:
            c = 1.0 / c
        return _scale_value(self.b, a, c)

    def _shape_op(self, n, args, kwargs, module=None):
        args = self.b_materialize_all(args)
        kwargs = self.b_materialize_all(kwargs)
        if n.target is operator.getitem and isinstance(args[0], (list, tuple)):
            return args[0][args[1]]
        real_args = self._real(n.args)
        real_kwargs = self._real(n.kwargs)
        has_scale = _any_scale(args) or _any_scale(kwargs)

        def run(kind):
            def conv(s, r):
                if isinstance(s, Ref):
                    if kind == "index":
                        return s.index
                    return (s.scale if s.scale is not None
                            else torch.ones(s.index.shape, dtype=torch.float64))
                return r
            a = _zip_map(args, real_args, conv)
            k = _zip_map(kwargs, real_kwargs, conv)
            if module is not None:
                if isinstance(module, (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d)):
                    return F.pad(a[0], list(module.padding), value=-1 if kind == "index" else 0)
                return module(*a, **k)
            if n.target is F.pad:
                mode = k.get("mode", a[2] if len(a) > 2 else "constant")
                value = k.get("value", a[3] if len(a) > 3 else 0) or 0
                if mode != "constant" or value != 0:
                    self._unsupported(n, f"padding mode {mode!r} value {value}")
                return F.pad(a[0], a[1] if len(a) > 1 else k["pad"],
                             value=-1 if kind == "index" else 0)
            if n.op == "call_method":
                return getattr(a[0], n.target)(*a[1:], **k)
            return n.target(*a, **k)

        idx = run("index")
        scl = run("scale") if has_scale else None
        return _wrap(idx, scl)

    def b_materialize_all(self, a):
        if isinstance(a, (list, tuple)):
            return type(a)(self.b_materialize_all(v) for v in a)
        if isinstance(a, dict):
            return {k: self.b_materialize_all(v) for k, v in a.items()}
        return self.b.materialize(a) if isinstance(a, Pending) else a



def _add_values(builder, a, b, shape, where, unsupported) -> Pending:
    """A residual addition of two symbolic values (SPEC §1): no nodes; the terms
    of both operands end on one block (a ``Ref`` operand is an identity shortcut)."""
    terms = []
    for v in (a, b):
        if isinstance(v, Pending):
            terms += v.terms
        else:
            if tuple(v.index.shape[1:]) != shape:
                unsupported("broadcasting addition")
            terms.append((IdentityBlock(shape, module=where), v))
    for blk, _ in terms:
        # different block shapes of the same size (e.g. a flattened value) go through views
        if blk.out_size != terms[0][0].out_size:
            unsupported("addition of values of different sizes")
    name = next((v.name for v in (a, b) if isinstance(v, Pending)), where)
    return Pending(terms, shape, op="add" if len(terms) > 1 else "conv", name=name)

def _has_sym(a) -> bool:
    if isinstance(a, (Ref, Pending)):
        return True
    if isinstance(a, (list, tuple)):
        return any(_has_sym(v) for v in a)
    if isinstance(a, dict):
        return any(_has_sym(v) for v in a.values())
    return False


def _any_scale(a) -> bool:
    if isinstance(a, Ref):
        return a.scale is not None
    if isinstance(a, (list, tuple)):
        return any(_any_scale(v) for v in a)
    if isinstance(a, dict):
        return any(_any_scale(v) for v in a.values())
    return False


def _zip_map(sym, real, fn):
    if isinstance(sym, (list, tuple)) and not isinstance(sym, Ref):
        return type(sym)(_zip_map(s, r, fn) for s, r in zip(sym, real))
    if isinstance(sym, dict):
        return {k: _zip_map(sym[k], real[k], fn) for k in sym}
    if isinstance(sym, Ref):
        return fn(sym, real)
    return real


def _wrap(idx, scl):
    if isinstance(idx, torch.Tensor):
        return Ref(idx, scl)
    if isinstance(idx, (list, tuple)):
        return type(idx)(_wrap(i, None if scl is None else s)
                         for i, s in zip(idx, scl if scl is not None else [None] * len(idx)))
    return None


# ----------------------------------------------------------------------------------
def _check_weights(model: nn.Module) -> None:
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        # one cheap reduction first; the elementwise check only if it is not finite
        if p.is_floating_point() and not bool(torch.isfinite(p.detach().sum())) \
                and not bool(torch.isfinite(p).all()):
            raise DeepglassError(f"parameter {name!r} has NaN or infinite values")



#: the capture conventions of SPEC §1 / §1b, each a named option: value choices,
#: the first being the default
RULES = {
    "batchnorm": ("fold", "ignore"),   # batch norm: fold gamma/sqrt(var+eps), or ignore
    "norm": ("fold", "ignore"),        # per-sample norms (Layer/Group/Instance): fold the gain
    "gates": ("scale", "error"),       # x * g with g >= 0 a gate: positive rescaling, or refuse
    "capture": ("auto", "export", "core", "fx"),  # core: torch.export lowered to core ATen
}

#: modules for which the signed graph is not defined, with why (SPEC §1b)
_REFUSED_MODULES = (
    (nn.RNNBase, "a recurrent cell has no fixed feed-forward signed graph; unroll it or "
                 "analyse the convolutional part"),
    (nn.RNNCellBase, "a recurrent cell has no fixed feed-forward signed graph; unroll it or "
                     "analyse the convolutional part"),
    (nn.MultiheadAttention, "attention multiplies two values computed from the input, so "
                            "the signed graph is not defined for it"),
)


def _refuse_modules(model: nn.Module) -> None:
    """One clear line for layers whose signed graph is not defined, before any capture."""
    for name, m in model.named_modules():
        for cls, why in _REFUSED_MODULES:
            if isinstance(m, cls):
                raise UnsupportedLayerError(
                    f"unsupported layer {name or type(m).__name__!r} ({type(m).__name__}): {why}")
        mod = type(m).__module__
        if ".quantized" in mod or any(getattr(t, "is_quantized", False)
                                      for t in list(m.parameters(recurse=False))
                                      + list(m.buffers(recurse=False))):
            raise UnsupportedLayerError(
                f"unsupported layer {name or type(m).__name__!r} ({type(m).__name__}): a "
                "quantized model's integer arithmetic has no real-valued signed graph; "
                "load the float model instead")
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if getattr(p, "is_quantized", False):
            raise UnsupportedLayerError(f"parameter {name!r} is quantized: a quantized model has "
                                        "no real-valued signed graph; load the float model")


def _input_shapes(input_shape) -> list[tuple[int, ...]]:
    """One shape ``(3, 224, 224)`` or several ``[(3, 32, 32), (10,)]``."""
    shapes = input_shape
    if not isinstance(shapes, (list, tuple)) or not shapes \
            or not isinstance(shapes[0], (list, tuple, torch.Size)):
        shapes = [shapes]
    out = []
    for sh in shapes:
        try:
            sh = tuple(int(s) for s in sh)
        except (TypeError, ValueError):
            raise DeepglassError(f"input shape must be a sequence of integers, got {sh!r}")
        if not sh or any(s <= 0 for s in sh):
            raise DeepglassError(f"input shape must be positive integers, got {sh}")
        out.append(sh)
    return out


def _output_names(n: int, spec) -> list[str]:
    """Names of the flattened outputs: ``output`` for one tensor, else the
    container keys (``0``, ``1``, ... or a dict's keys)."""
    import torch.utils._pytree as pytree

    if spec is not None:
        try:
            tree = pytree.tree_unflatten(list(range(n)), spec)
            if not isinstance(tree, int):
                leaves, _ = pytree.tree_flatten_with_path(tree)
                names = [pytree.keystr(path).strip("[]'\".") or str(i)
                         for i, (path, _) in enumerate(leaves)]
                names = [nm.replace("][", ".").replace("'", "") for nm in names]
                if len(names) == n and len(set(names)) == n:
                    return names
        except Exception:  # a spec we cannot read: fall back to positions
            pass
    return ["output"] if n == 1 else [str(i) for i in range(n)]


def output_tensor(out, output: str | int | None = None) -> torch.Tensor:
    """The output named ``output`` (as in :attr:`SignedGraph.outputs`: ``"output"``
    for one tensor, tuple positions, dict keys; or a position) of a forward
    pass's result ``out``; the first tensor output by default (SPEC §1b)."""
    import torch.utils._pytree as pytree

    leaves, spec = pytree.tree_flatten(out)
    names = _output_names(len(leaves), spec)
    tensors = [(nm, t) for nm, t in zip(names, leaves) if isinstance(t, torch.Tensor)]
    if not tensors:
        raise DeepglassError("the model returned no tensor")
    if output is None:
        return tensors[0][1]
    by_name = dict(tensors)
    if str(output) in by_name:
        return by_name[str(output)]
    try:
        return leaves[int(output)]
    except (ValueError, IndexError):
        raise DeepglassError(f"no output {output!r}: the network's outputs are "
                             f"{', '.join(nm for nm, _ in tensors)}") from None


def _flatten(v) -> list:
    if isinstance(v, (list, tuple)):
        return [x for u in v for x in _flatten(u)]
    if isinstance(v, dict):
        return [x for u in v.values() for x in _flatten(u)]
    return [v]


def _prune(builder: _Builder, outputs: dict[str, np.ndarray]):
    """Drop node blocks from which no output is reached (the branch of a gate
    taken as a positive rescaling, values computed but never used).  Input
    blocks stay.  Returns the renumbered outputs and the blocks left out.

    Complexity: one reverse pass over the blocks (they are in topological
    order) plus one O(n) id remapping when anything is dropped.
    """
    nbs, ebs = builder.node_blocks, builder.edge_blocks
    starts = np.array([nb.offset for nb in nbs])
    keep = np.array([nb.op == "input" for nb in nbs])
    for ids in outputs.values():
        keep[np.unique(np.searchsorted(starts, ids, side="right") - 1)] = True
    into: dict[int, list[EdgeBlock]] = {}
    for b in ebs:
        into.setdefault(b.dst, []).append(b)
    for k in range(len(nbs) - 1, -1, -1):
        if keep[k]:
            for b in into.get(k, []):
                keep[list(b.src_blocks)] = True
    if keep.all():
        return outputs, []
    left_out = [{"block": nb.name, "op": nb.op, "nodes": nb.size,
                 "params": int(sum(b.n_params() for b in into.get(k, [])))}
                for k, nb in enumerate(nbs) if not keep[k]]
    newid = np.full(builder.n, -1, dtype=np.int64)
    new_blocks, new_index, off = [], {}, 0
    for k, nb in enumerate(nbs):
        if keep[k]:
            newid[nb.offset:nb.stop] = np.arange(off, off + nb.size)
            new_index[k] = len(new_blocks)
            new_blocks.append(NodeBlock(name=nb.name, shape=nb.shape, offset=off, op=nb.op,
                                        index=len(new_blocks)))
            off += nb.size
    lookup = torch.from_numpy(newid)
    kept_edges = []
    for b in ebs:
        if not keep[b.dst]:
            continue
        b.dst = new_index[b.dst]
        b.src_blocks = tuple(new_index[s] for s in b.src_blocks)
        if b.src_range is not None:
            b.src_range = (int(newid[b.src_range[0]]), int(newid[b.src_range[1] - 1]) + 1)
        else:
            b.src_index = lookup[b.src_index]
        kept_edges.append(b)
    builder.node_blocks, builder.edge_blocks, builder.n = new_blocks, kept_edges, off
    return {k: newid[v] for k, v in outputs.items()}, left_out


def _capture_export(model, inputs, forward_kwargs, builder, rules, core=False):
    from .aten import AtenInterpreter, export_module

    import torch.utils._pytree as pytree

    gm, how = export_module(model, inputs, forward_kwargs, core=core)
    interp = AtenInterpreter(gm, builder, rules)
    # the program's placeholders are the flattened (args, kwargs)
    interp.run(*pytree.tree_flatten((tuple(inputs), dict(forward_kwargs or {})))[0])
    out = interp.sym[next(nd for nd in gm.graph.nodes if nd.op == "output")]
    leaves = _flatten(out)
    return leaves, _output_names(len(leaves), getattr(gm, "_out_spec", None)), interp.gated, how


def _capture_fx(model, inputs, forward_kwargs, builder):
    if len(inputs) > 1:
        raise DeepglassError("the torch.fx fallback takes one input; several inputs need "
                             "torch.export")
    try:
        gm = torch.fx.symbolic_trace(model, concrete_args=forward_kwargs or None)
    except Exception as exc:  # fx raises many kinds of errors
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeepglassError(msg)
    import torch.utils._pytree as pytree

    interp = _Interpreter(gm, builder, tuple(inputs[0].shape[1:]), model)
    real = interp.run(inputs[0])        # the real output: its structure names the outputs
    out = interp.sym[next(nd for nd in gm.graph.nodes if nd.op == "output")]
    leaves = _flatten(out)
    return leaves, _output_names(len(leaves), pytree.tree_flatten(real)[1]), []


def _capture(model, inputs, forward_kwargs, rules, capture, pool_weight, batchnorm):
    """torch.export (``capture`` auto / export / core), the fx tracer where the
    exporter fails under ``auto`` (or with ``capture="fx"``); returns the
    builder, the symbolic outputs, their names, the gates and how it captured."""
    from .aten import ExportFailed

    export_msg = None
    if capture != "fx":
        builder = _Builder(pool_weight, batchnorm)
        try:
            leaves, names, gated, how = _capture_export(model, inputs, forward_kwargs, builder,
                                                        rules, core=capture == "core")
            return builder, leaves, names, gated, how
        except ExportFailed as exc:
            if capture != "auto":
                raise DeepglassError(f"cannot capture {type(model).__name__} with "
                                     f"torch.export: {exc}") from None
            export_msg = str(exc)
    builder = _Builder(pool_weight, batchnorm)
    try:
        leaves, names, gated = _capture_fx(model, inputs, forward_kwargs, builder)
    except UnsupportedLayerError:
        raise
    except DeepglassError as exc:
        msg = str(exc).strip().splitlines()[0]
        if export_msg is None:
            raise DeepglassError(f"cannot trace {type(model).__name__} with torch.fx: "
                                 f"{msg}") from None
        raise DeepglassError(
            f"cannot capture {type(model).__name__}: torch.export: {export_msg}; torch.fx: "
            f"{msg}. If forward() branches on the input's values, wrap the model in a module "
            "whose forward calls it with fixed arguments (non-tensor arguments can also be "
            "given as forward_kwargs)") from None
    return builder, leaves, names, gated, "torch.fx"


def trace(model: nn.Module, input_shape, batchnorm: str = "fold",
          pool_weight: float | None = None, dtype=torch.float32, device="cpu", *,
          norm: str = "fold", gates: str = "scale", capture: str = "auto",
          forward_kwargs: dict | None = None) -> SignedGraph:
    """Build the :class:`SignedGraph` of ``model`` (SPEC §1, §1b).

    See :meth:`SignedGraph.from_module`.  The model is captured with
    ``torch.export`` (core ATen ops, :mod:`deepglass.graph.aten`); where the
    exporter fails and ``capture="auto"``, the ``torch.fx`` tracer is tried.
    Complexity: one capture plus one forward pass at batch 1, and O(size of
    each layer's output) bookkeeping; no edge is enumerated.
    """
    for key, value in (("batchnorm", batchnorm), ("norm", norm), ("gates", gates),
                       ("capture", capture)):
        if value not in RULES[key]:
            raise DeepglassError(f"{key} must be one of {', '.join(map(repr, RULES[key]))}, "
                                 f"not {value!r}")
    if pool_weight is not None and not pool_weight > 0:
        raise DeepglassError(f"pool_weight must be positive, got {pool_weight}")
    shapes = _input_shapes(input_shape)
    if not isinstance(model, nn.Module):
        raise DeepglassError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise DeepglassError("TorchScript modules cannot be captured; load the weights into a "
                             "Python module (e.g. a zoo architecture) instead")
    _refuse_modules(model)
    _check_weights(model)
    rules = {"batchnorm": batchnorm, "norm": norm, "gates": gates}
    p = next(model.parameters(), None)
    inputs = tuple(torch.zeros((1,) + sh, dtype=p.dtype if p is not None else torch.float32,
                               device=p.device if p is not None else "cpu") for sh in shapes)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("always", NonMonotoneActivationWarning)
            try:
                builder, leaves, names, gated, how = _capture(
                    model, inputs, forward_kwargs, rules, capture, pool_weight, batchnorm)
            except DeepglassError as exc:  # keep the message on one line
                raise type(exc)(str(exc).strip().splitlines()[0]) from None
            except _ForwardError as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                shape_txt = shapes[0] if len(shapes) == 1 else shapes
                raise DeepglassError(f"{type(model).__name__} does not accept input of shape "
                                     f"{shape_txt}: {msg}") from None
    finally:
        model.train(was_training)
    outputs: dict[str, np.ndarray] = {}
    for name, v in zip(names, leaves):
        if not isinstance(v, (Ref, Pending)):
            continue   # a constant output (a shape, a buffer) is not part of the graph
        ref = builder.materialize(v)
        if (ref.index < 0).any():
            raise UnsupportedLayerError(f"the model's output {name!r} contains zero padding")
        outputs[name] = ref.index.reshape(-1).numpy().copy()
    if not outputs:
        raise DeepglassError("the model's output does not depend on its input")
    outputs, left_out = _prune(builder, outputs)
    # every block's tensors cast here: the builder mixes float32 weights with
    # float64 pooling and scale tensors
    device = torch.device(device)
    blocks = [b.to(device=device, dtype=dtype) for b in builder.edge_blocks]
    meta = {"model": type(model).__name__, "batchnorm": batchnorm, "pool_weight": pool_weight,
            "rules": {"capture": how, "batchnorm": batchnorm, "norm": norm, "gates": gates,
                      "products": "x * f(x) elementwise", "upsampling": "interpolation weights",
                      "pool_weight": "1/|window|" if pool_weight is None else pool_weight,
                      **({"forward_kwargs": {k: repr(v) for k, v in forward_kwargs.items()}}
                         if forward_kwargs else {})},
            "inputs": [{"name": nb.name, "shape": list(nb.shape)}
                       for nb in builder.node_blocks if nb.op == "input"]}
    if gated:
        meta["gates"] = sorted(set(gated))
    if left_out:
        meta["left_out"] = left_out
    return SignedGraph(builder.node_blocks, blocks, shapes[0], outputs=outputs,
                       dtype=dtype, device=device, meta=meta)


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

__all__ = ["trace", "SUPPORTED", "NonMonotoneActivationWarning"]


class _ForwardError(Exception):
    """The model itself failed on the sample input (e.g. a wrong input shape)."""


class NonMonotoneActivationWarning(UserWarning):
    """The network has an activation that is not non-decreasing."""


@dataclass
class Ref:
    index: torch.Tensor            # int64, shape (1, *value_shape): global node ids, -1 = zero pad
    scale: torch.Tensor | None = None  # float64, same shape, or None (all ones)


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
            blk.src_index = idx.clone()
            blk.src_range = None
        starts = [b.offset for b in self.node_blocks]
        if blk.src_range:
            first, last = np.searchsorted(starts, [blk.src_range[0], blk.src_range[1] - 1],
                                          side="right") - 1
            blk.src_blocks = tuple(range(int(first), int(last) + 1))
        else:
            ids = np.unique(flat.numpy())
            blk.src_blocks = tuple(int(b) for b in
                                   np.unique(np.searchsorted(starts, ids, side="right") - 1))
        if ref.scale is not None:
            s = ref.scale.reshape(blk.in_shape)
            if not bool((s == 1).all()):
                blk.in_scale = s.clone() if blk.in_scale is None else blk.in_scale * s
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
        shape = tuple(self._cur.shape[1:])
        terms = []
        for v in (a, b):
            if isinstance(v, Pending):
                terms += v.terms
            else:
                if tuple(v.index.shape[1:]) != shape:
                    self._unsupported(n, "broadcasting addition")
                blk = IdentityBlock(shape, module=self._where(n))
                terms.append((blk, v))
        for blk, _ in terms:
            if blk.out_shape != terms[0][0].out_shape:
                # different block shapes of the same size (e.g. a flattened value): go through views
                if blk.out_size != terms[0][0].out_size:
                    self._unsupported(n, "addition of values of different sizes")
        name = next((v.name for v in (a, b) if isinstance(v, Pending)), self._where(n))
        return Pending(terms, shape, op="add" if len(terms) > 1 else "conv", name=name)

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


def trace(model: nn.Module, input_shape: Sequence[int], batchnorm: str = "fold",
          pool_weight: float | None = None, dtype=torch.float32, device="cpu") -> SignedGraph:
    """Build the :class:`SignedGraph` of ``model`` at ``input_shape`` (SPEC §1).

    See :meth:`SignedGraph.from_module`.  Complexity: one forward pass of the
    model at batch 1 plus O(size of each layer's output) bookkeeping; no edge
    is enumerated.
    """
    if batchnorm not in ("fold", "ignore"):
        raise DeepglassError(f"batchnorm must be 'fold' or 'ignore', not {batchnorm!r}")
    if pool_weight is not None and not pool_weight > 0:
        raise DeepglassError(f"pool_weight must be positive, got {pool_weight}")
    try:
        input_shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise DeepglassError(f"input shape must be a sequence of integers, got {input_shape!r}")
    if not input_shape or any(s <= 0 for s in input_shape):
        raise DeepglassError(f"input shape must be positive integers, got {input_shape}")
    if not isinstance(model, nn.Module):
        raise DeepglassError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise DeepglassError("TorchScript modules cannot be traced with torch.fx; load the "
                             "weights into a Python module (e.g. a zoo architecture) instead")
    _check_weights(model)
    was_training = model.training
    model.eval()
    try:
        try:
            gm = torch.fx.symbolic_trace(model)
        except Exception as exc:  # fx raises many kinds of errors
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DeepglassError(f"cannot trace {type(model).__name__} with torch.fx: {msg}")
        builder = _Builder(pool_weight, batchnorm)
        interp = _Interpreter(gm, builder, input_shape, model)
        p = next(model.parameters(), None)
        x = torch.zeros((1,) + input_shape, dtype=p.dtype if p is not None else torch.float32)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("always", NonMonotoneActivationWarning)
            try:
                interp.run(x)
            except DeepglassError as exc:  # keep the message on one line
                raise type(exc)(str(exc).strip().splitlines()[0]) from None
            except _ForwardError as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DeepglassError(f"{type(model).__name__} does not accept input of shape "
                                     f"{input_shape}: {msg}")
        out = interp.sym[next(nd for nd in gm.graph.nodes if nd.op == "output")]
        if isinstance(out, (list, tuple)):
            out = next((o for o in out if isinstance(o, (Ref, Pending))), None)
        if isinstance(out, dict):
            out = next((o for o in out.values() if isinstance(o, (Ref, Pending))), None)
        if out is None:
            raise DeepglassError("the model's output does not depend on its input")
        out = builder.materialize(out)
        if (out.index < 0).any():
            raise UnsupportedLayerError("the model's output contains zero padding")
    finally:
        model.train(was_training)
    # every block's tensors cast here: the builder mixes float32 weights with
    # float64 pooling and scale tensors
    device = torch.device(device)
    blocks = [b.to(device=device, dtype=dtype) for b in builder.edge_blocks]
    return SignedGraph(builder.node_blocks, blocks, input_shape, out.index.reshape(-1).numpy(),
                       dtype=dtype, device=device,
                       meta={"model": type(model).__name__, "batchnorm": batchnorm,
                             "pool_weight": pool_weight})

"""The ``torch.fx`` fallback of the capture (SPEC §1): a symbolic trace of the
module, interpreted on a real sample and symbolically at once (values of
:mod:`.symbolic`).  The op tables map module types, functions and methods to
handlers; the linear layers are those of :mod:`.layers`, shared with the
``torch.export`` path (:mod:`.aten`).
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DeepglassError, UnsupportedLayerError, first_line
from .layers import adaptive_pool_op, conv_op, dense_op, global_mean_op, pool_op
from .symbolic import (Builder, ForwardError, Pending, Ref, _is_sym, _name_of,
                       as_tensor_of,
                       has_sym, reindexed, scale, uses, zip_map)
from .sums import add_values

__all__ = ["FxInterpreter", "module_params", "function_params", "LINEAR_MODULES",
           "BATCHNORM_MODULES", "MUL_TARGETS", "ADD_TARGETS"]


#: what the fx fallback reads: the paper's layers (SPEC §1), not §1b's rules
FX_SUPPORTED = ("linear, conv1d/2d/3d (stride, padding incl. 'same' and asymmetric F.pad, "
                "dilation, groups), max/avg pooling incl. adaptive and ceil_mode, global mean, "
                "max / mean / sum over dimensions, "
                "batch norm, residual add/sub, cat, chunk/split, flatten/view/reshape/"
                "permute/transpose (channel shuffle), zero / reflect / replicate / circular "
                "padding, scalar multiplication, "
                "and elementwise activations / dropout / softmax / local response norm")


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




def module_params(m: nn.Module) -> tuple[Callable, dict]:
    t = type(m)
    if isinstance(m, nn.Linear):
        return dense_op, {"weight": m.weight}
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return conv_op, dict(weight=m.weight, stride=m.stride, padding=m.padding,
                           dilation=m.dilation, groups=m.groups, padding_mode=m.padding_mode)
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return pool_op, dict(pool_type="max", kernel_size=m.kernel_size, stride=m.stride,
                           padding=m.padding, dilation=m.dilation, ceil_mode=m.ceil_mode)
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        return pool_op, dict(pool_type="avg", kernel_size=m.kernel_size, stride=m.stride,
                           padding=m.padding, ceil_mode=m.ceil_mode,
                           count_include_pad=m.count_include_pad,
                           divisor_override=getattr(m, "divisor_override", None))
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return adaptive_pool_op, dict(pool_type="avg")
    if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return adaptive_pool_op, dict(pool_type="max")
    raise KeyError(t)


def function_params(fn, args, kwargs) -> tuple[Callable, dict]:
    """Parameters of a functional linear op, from its real arguments."""
    a = list(args[1:])
    kw = dict(kwargs)

    def get(i, key, default):
        return a[i] if len(a) > i else kw.get(key, default)

    if fn is F.linear:
        return dense_op, {"weight": get(0, "weight", None)}
    if fn in (F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d):
        return conv_op, dict(weight=get(0, "weight", None), stride=get(2, "stride", 1),
                           padding=get(3, "padding", 0), dilation=get(4, "dilation", 1),
                           groups=get(5, "groups", 1))
    if fn in (F.max_pool1d, F.max_pool2d, F.max_pool3d):
        return pool_op, dict(pool_type="max", kernel_size=get(0, "kernel_size", None),
                           stride=get(1, "stride", None), padding=get(2, "padding", 0),
                           dilation=get(3, "dilation", 1), ceil_mode=get(4, "ceil_mode", False))
    if fn in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d):
        return pool_op, dict(pool_type="avg", kernel_size=get(0, "kernel_size", None),
                           stride=get(1, "stride", None), padding=get(2, "padding", 0),
                           ceil_mode=get(3, "ceil_mode", False),
                           count_include_pad=get(4, "count_include_pad", True),
                           divisor_override=get(5, "divisor_override", None))
    if fn in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d):
        return adaptive_pool_op, dict(pool_type="avg")
    if fn in (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d):
        return adaptive_pool_op, dict(pool_type="max")
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
                 nn.ChannelShuffle, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
                 nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
                 nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d)
#: padding modes whose border copies nodes inside (re-indexings, no new nodes)
BORDER_COPIES = ("reflect", "replicate", "circular")

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
                   F.channel_shuffle, torch.channel_shuffle, torch.flip, torch.roll}
SHAPE_METHODS = {"view", "reshape", "flatten", "permute", "transpose", "contiguous", "chunk",
                 "split", "squeeze", "unsqueeze", "narrow", "movedim", "unflatten", "view_as",
                 "reshape_as", "flip", "roll"}
ADD_TARGETS = {operator.add, operator.iadd, torch.add, "add", "add_", operator.sub,
               operator.isub, torch.sub, "sub", "sub_"}
MUL_TARGETS = {operator.mul, operator.imul, torch.mul, "mul", "mul_", operator.truediv,
               operator.itruediv, torch.div, "div", "div_"}
NONTENSOR_METHODS = {"size", "dim", "numel"}



def _inplace(n) -> bool:
    """An op that writes into its first argument (``y.add_(z)``, ``y += z``,
    ``torch.relu_(y)``)."""
    name = _name_of(n.target)
    return n.op in ("call_method", "call_function") and (
        (name.endswith("_") and not name.endswith("__"))
        or n.target in (operator.iadd, operator.isub, operator.imul, operator.itruediv))


def _is_view(n) -> bool:
    """A value that may share memory with another: a re-indexing's result."""
    return (n.op == "call_method" and n.target in SHAPE_METHODS) or (
        n.op == "call_function" and n.target in SHAPE_FUNCTIONS)


# ----------------------------------------------------------------------------------
class FxInterpreter(torch.fx.Interpreter):
    def __init__(self, gm, builder: Builder, input_shape, root: nn.Module):
        super().__init__(gm)
        self.b = builder
        self.sym: dict[torch.fx.Node, Any] = {}
        self.input_shape = tuple(input_shape)
        self.modules = dict(root.named_modules())

    def run_node(self, n):
        try:
            real = super().run_node(n)
        except DeepglassError:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise ForwardError(str(exc)) from exc
        self._cur = real
        try:
            sym = self._symbolic(n, real)
        except DeepglassError:
            raise
        except (RuntimeError, IndexError, ValueError, TypeError) as exc:
            # a use of the op its rule does not foresee (dims computed by the
            # forward, ...): refused by name, as an unsupported layer
            self._unsupported(n, f"{_name_of(n.target)}: its rule does not cover this use "
                              f"({type(exc).__name__}: {first_line(exc)})")
        self.sym[n] = self.b.tag(n, sym, real)
        base = n.args[0] if n.args and isinstance(n.args[0], torch.fx.Node) else None
        if base is not None and _inplace(n) and _is_sym(self.sym[base]):
            if _is_view(base):
                # the write changes the value viewed too; torch.export's program
                # says how (a scatter), this trace does not
                self._unsupported(n, f"in-place {_name_of(n.target)} on a view of a value "
                                  "(write it out of place, e.g. with torch.cat, or capture "
                                  "with torch.export)")
            # the op mutated its first argument: later readers of it see the result
            self.sym[n] = self.b.materialize(self.sym[n])
            self.sym[base] = self.sym[n]
        # a pending value used more than once gets its node block now, so that
        # every user sees the same nodes
        if isinstance(self.sym[n], Pending) and uses(n) > 1:
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
            f"unsupported layer {self._where(n)!r} (op {what}): the fx fallback supports {FX_SUPPORTED}")

    def _symbolic(self, n, real):
        if n.op == "placeholder":
            if not n.users and (str(n.target).startswith("*") or self.b.node_blocks):
                # an unused ``*args`` of the forward, or a forward_kwargs tensor
                # (fx traces it as a constant and leaves its argument unread)
                return None
            if self.b.node_blocks:
                raise DeepglassError("models with more than one input are not supported")
            nb = self.b.new_block("input", self.input_shape, "input")
            return Ref(torch.arange(nb.offset, nb.stop).reshape((1,) + self.input_shape))
        if n.op == "get_attr":
            return None
        if n.op == "output":
            return self._s(n.args[0])
        args, kwargs = self._s(n.args), self._s(n.kwargs)
        depends = has_sym(args) or has_sym(kwargs)
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
            return self.b.activated(args[0])
        if target in NONMONOTONE_FUNCTIONS or (n.op == "call_method" and
                                                  target in NONMONOTONE_METHODS):
            self._warn_nonmonotone(getattr(target, "__name__", str(target)))
            return self.b.activated(args[0])
        if n.op == "call_method" and target == "mean" or target is torch.mean:
            x = self.b.materialize(args[0])
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            return global_mean_op(self.b, self._where(n), x, self._real(n.args[0]), real, dims)
        if n.op == "call_function":
            try:
                handler, params = function_params(target, self._real(n.args),
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
            handler, params = module_params(m)
            x = self.b.materialize(args[0])
            real_in = self._real(n.args[0])
            return handler(self.b, str(n.target), x, real_in, real, **params)
        if isinstance(m, BATCHNORM_MODULES):
            s = _bn_scale(m, self.b.batchnorm)
            if s is None:
                return args[0]
            return scale(self.b, args[0], s.reshape((-1,) + (1,) * (real.ndim - 2)))
        if isinstance(m, MONOTONE_MODULES):
            if isinstance(m, (nn.LeakyReLU,)) and m.negative_slope < 0:
                self._warn_nonmonotone(type(m).__name__)
            if isinstance(m, nn.PReLU) and bool((m.weight < 0).any()):
                neg = int((m.weight < 0).sum())
                self._warn_nonmonotone(f"PReLU at {str(n.target)!r} ({neg} of "
                                       f"{m.weight.numel()} learned slopes are negative)")
            return self.b.activated(args[0])
        if isinstance(m, NONMONOTONE_MODULES):
            self._warn_nonmonotone(type(m).__name__)
            return self.b.activated(args[0])
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
                a = scale(self.b, a, -1.0)
                sub = False
        if not isinstance(b, (Ref, Pending)):
            return a  # adding a constant (a bias): no edges
        coef = (-1.0 if sub else 1.0) * float(alpha)
        if coef != 1.0:
            b = scale(self.b, b, coef)
        return add_values(self.b, a, b, tuple(self._cur.shape[1:]), self._where(n),
                           lambda what, why=None: self._unsupported(n, what))

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
        return scale(self.b, a, c)

    def _shape_op(self, n, args, kwargs, module=None):
        args = self.b_materialize_all(args)
        kwargs = self.b_materialize_all(kwargs)
        if n.target is operator.getitem and isinstance(args[0], (list, tuple)):
            return args[0][args[1]]
        real_args = self._real(n.args)
        real_kwargs = self._real(n.kwargs)

        def run(kind):
            conv = as_tensor_of(kind)
            fill = 0 if kind == "scale" else -1     # padding: no node, no value
            a = zip_map(args, real_args, conv)
            k = zip_map(kwargs, real_kwargs, conv)
            if module is not None:
                if isinstance(module, (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d)):
                    return F.pad(a[0], list(module.padding), value=fill)
                return module(*a, **k)
            if n.target is F.pad:
                mode = k.get("mode", a[2] if len(a) > 2 else "constant")
                value = k.get("value", a[3] if len(a) > 3 else 0) or 0
                if mode in BORDER_COPIES:   # the border copies nodes inside: a gather
                    return F.pad(a[0], a[1] if len(a) > 1 else k["pad"], mode=mode)
                if mode != "constant" or value != 0:
                    self._unsupported(n, f"padding mode {mode!r} value {value}")
                return F.pad(a[0], a[1] if len(a) > 1 else k["pad"], value=fill)
            if n.op == "call_method":
                return getattr(a[0], n.target)(*a[1:], **k)
            return n.target(*a, **k)

        return reindexed([args, kwargs], run)

    def b_materialize_all(self, a):
        if isinstance(a, (list, tuple)):
            return type(a)(self.b_materialize_all(v) for v in a)
        if isinstance(a, dict):
            return {k: self.b_materialize_all(v) for k, v in a.items()}
        return self.b.materialize(a) if isinstance(a, Pending) else a

"""ONNX converter: elementwise arithmetic and the fusions exporters make necessary
(GELU, LayerNorm, GroupNorm as subgraphs; constant affine maps folded into a
normalization).
"""

from __future__ import annotations

import math
import operator
from dataclasses import replace
from typing import Callable

import torch
from torch import nn

from .onnx_values import _Norm, _Value, _attrs, _close, _param, _to_tensor

_SQRT2 = math.sqrt(2.0)


class _ArithOps:
    """Elementwise arithmetic and the pattern fusions.

    Methods ``op_<ONNX op>(node, attributes)`` of the converter, mixed into
    :class:`deepglass.zoo.onnx_import._Builder`; they use its state and
    emission helpers (:class:`deepglass.zoo.onnx_builder._BuilderBase`).
    """

    # -- elementwise arithmetic ---------------------------------------------------
    def _operand(self, v: _Value, other: _Value):
        """A 1-element constant that does not change the other operand's shape becomes a Python number."""
        if v.is_const and not other.is_const and v.const.numel() == 1 and v.const.dim() <= other.tensor.dim():
            t = v.const.reshape(())
            return t.item()
        return v

    def _binary(self, node, fn: Callable, rfn: Callable):
        x, y = self.inp(node, 0), self.inp(node, 1)
        if x.is_const and y.is_const:
            self.set(node, _Value(const=fn(x.const, y.const)))
            return
        xs, ys = self._operand(x, y), self._operand(y, x)
        if not isinstance(xs, _Value):  # number (op) tensor: Python's operator, the tensor's reflected method
            self.set(node, self.emit_function(rfn, [xs, ys], hint=node.output[0]))
        else:
            self.set(node, self.emit_function(fn, [xs, ys], hint=node.output[0]))

    def op_Add(self, node, a):
        if id(node) in self.fused_adds:  # bias already inside the preceding Linear
            self.set(node, self.values[self.fused_adds[id(node)]])
            return
        if self._fold_affine(node, "add"):
            return
        x, y = self.inp(node, 0), self.inp(node, 1)
        if x.is_const and y.is_const:
            self.set(node, _Value(const=x.const + y.const))
            return
        xs, ys = self._operand(x, y), self._operand(y, x)
        if not isinstance(xs, _Value):
            xs, ys = ys, xs
        self.set(node, self.emit_function(operator.add, [xs, ys], hint=node.output[0]))

    def op_Sum(self, node, a):
        parts = [self.inp(node, i) for i in range(len(node.input))]
        total = parts[0]
        for v in parts[1:]:
            total = self.emit_function(operator.add, [total, v], hint=node.output[0])
        self.set(node, total)

    def op_Sub(self, node, a):
        self._binary(node, torch.sub, operator.sub)

    def op_Mul(self, node, a):
        if self._fuse_gelu(node) or self._fuse_softplus(node) or self._fold_affine(node, "mul"):
            return
        self._binary(node, torch.mul, operator.mul)

    def op_Div(self, node, a):
        if self._fuse_layer_norm(node) or self._fuse_softplus(node):
            return
        x, y = self.inp(node, 0), self.inp(node, 1)
        if x.is_const and y.is_const:
            if x.const.is_floating_point() or y.const.is_floating_point():
                self.set(node, _Value(const=x.const / y.const))
            else:
                self.set(node, _Value(const=torch.div(x.const, y.const, rounding_mode="trunc")))
            return
        if not x.tensor.is_floating_point():
            self.refuse(node, "integer division of an activation")
        self._binary(node, torch.div, operator.truediv)

    def op_Pow(self, node, a):
        x = self.inp(node, 0)
        e = self.need_const(node, 1, "exponent")
        if x.is_const:
            self.set(node, _Value(const=torch.pow(x.const, e)))
        elif e.numel() == 1:
            self.set(node, self.emit_function(torch.pow, [x, float(e.reshape(()))]))
        else:
            self.set(node, self.emit_function(torch.pow, [x, _Value(const=e)], hint=node.output[0]))

    def _unary_fn(self, node, fn):
        self.set(node, self.emit_function(fn, [self.inp(node, 0)]))

    def op_Sqrt(self, node, a):
        self._unary_fn(node, torch.sqrt)

    def op_Exp(self, node, a):
        self._unary_fn(node, torch.exp)

    def op_Neg(self, node, a):
        self._unary_fn(node, torch.neg)

    def op_Sin(self, node, a):
        self._unary_fn(node, torch.sin)

    def op_Cos(self, node, a):
        self._unary_fn(node, torch.cos)

    def op_Sign(self, node, a):
        self._unary_fn(node, torch.sign)

    def op_Reciprocal(self, node, a):
        self._unary_fn(node, torch.reciprocal)

    def op_Erf(self, node, a):
        # reached only inside a GELU pattern (see _known); the fusion at its last Mul replaces it
        self._unary_fn(node, torch.erf)

    # -- fusions ------------------------------------------------------------------
    def _producer(self, name: str, op: str | tuple[str, ...]):
        node = self.producer.get(name)
        ops = (op,) if isinstance(op, str) else op
        return node if node is not None and node.op_type in ops else None

    def _const_of(self, name: str) -> torch.Tensor | None:
        v = self.values.get(name)
        return v.const if v is not None and v.is_const else None

    def _split_const(self, node) -> tuple[str, torch.Tensor] | None:
        """(other input, constant) of a two-input node with exactly one constant input."""
        a, b = node.input[0], node.input[1]
        ca, cb = self._const_of(a), self._const_of(b)
        if cb is not None and ca is None:
            return a, cb
        if ca is not None and cb is None:
            return b, ca
        return None

    def _fuse_gelu(self, node) -> bool:
        """``0.5 * x * (1 + erf(x / sqrt 2))`` (in any of its written orders) ->
        ``nn.GELU()``; with ``tanh(sqrt(2 / pi) (x + 0.044715 x^3))`` in place of
        the erf, ``nn.GELU(approximate="tanh")`` (timm's ``gelu_tanh``)."""

        def cube_of(name, x):  # x * x * x or x ** 3
            node = self._producer(name, ("Mul", "Pow"))
            if node is None:
                return False
            if node.op_type == "Pow":
                return node.input[0] == x and _close(self._const_of(node.input[1]), 3.0)
            for i in (0, 1):
                sq = self._producer(node.input[1 - i], "Mul")
                if node.input[i] == x and sq is not None and list(sq.input) == [x, x]:
                    return True
            return False

        def tanh_arg(name):  # sqrt(2/pi) * (x + 0.044715 x^3) -> x's name
            mul = self._producer(name, "Mul")
            sc = mul and self._split_const(mul)
            add = sc and _close(sc[1], math.sqrt(2.0 / math.pi), 1e-5) and \
                self._producer(sc[0], "Add")
            if not add:
                return None
            for i in (0, 1):
                cubic = self._producer(add.input[1 - i], "Mul")
                sc3 = cubic and self._split_const(cubic)
                if sc3 and _close(sc3[1], 0.044715, 1e-5) and cube_of(sc3[0], add.input[i]):
                    return add.input[i]
            return None

        def erf_part(name):  # 1 + erf(x / sqrt2) or 1 + tanh(...) -> (x's name, approximate)
            add = self._producer(name, "Add")
            if add is None or (sc := self._split_const(add)) is None or not _close(sc[1], 1.0):
                return None
            tanh = self._producer(sc[0], "Tanh")
            if tanh is not None:
                x = tanh_arg(tanh.input[0])
                return (x, "tanh") if x is not None else None
            erf = self._producer(sc[0], "Erf")
            scaled = erf and self._producer(erf.input[0], ("Div", "Mul"))
            if scaled is None or (sc2 := self._split_const(scaled)) is None:
                return None
            want = _SQRT2 if scaled.op_type == "Div" else 1.0 / _SQRT2
            if scaled.op_type == "Div" and scaled.input[0] != sc2[0]:
                return None
            return (sc2[0], "none") if _close(sc2[1], want, 1e-5) else None

        def half_of(name):  # 0.5 * x -> x's name
            mul = self._producer(name, "Mul")
            sc = mul and self._split_const(mul)
            return sc[0] if sc and _close(sc[1], 0.5) else None

        x = approx = None
        sc = self._split_const(node)
        if sc is not None and _close(sc[1], 0.5):  # (x * (1 + erf)) * 0.5
            inner = self._producer(sc[0], "Mul")
            if inner is not None:
                for i in (0, 1):
                    part = erf_part(inner.input[i])
                    if part is not None and part[0] == inner.input[1 - i]:
                        x, approx = part
        if x is None and sc is None:  # (0.5 * x) * (1 + erf)
            for i in (0, 1):
                h = half_of(node.input[i])
                part = erf_part(node.input[1 - i])
                if h is not None and part is not None and part[0] == h:
                    x, approx = part
        if x is None:
            return False
        self.set(node, self.emit_module(node, nn.GELU(approximate=approx), self.values[x]))
        return True

    def _softplus_of(self, name: str) -> tuple[str, float] | None:
        """``(x, beta)`` where the value ``name`` is ``softplus(beta x) / beta`` as torch's
        exporters write ``nn.Softplus(beta)``: ``Softplus(x)`` (beta 1), or
        ``Div(Softplus(Mul(x, beta)), beta)`` (or ``Mul`` by ``1 / beta``)."""
        sp = self._producer(name, "Softplus")
        if sp is not None:
            return sp.input[0], 1.0
        node = self._producer(name, ("Div", "Mul"))
        sc = node and self._split_const(node)
        if not sc or sc[1].numel() != 1 or (node.op_type == "Div" and node.input[0] != sc[0]):
            return None
        c = float(sc[1].reshape(()))
        if not c > 0:
            return None
        beta = c if node.op_type == "Div" else 1.0 / c
        sp = self._producer(sc[0], "Softplus")
        mul = sp and self._producer(sp.input[0], "Mul")
        sc2 = mul and self._split_const(mul)
        if not sc2 or not _close(sc2[1], beta, 1e-5):
            return None
        return sc2[0], float(sc2[1].reshape(()))

    def _fuse_softplus(self, node) -> bool:
        """``Softplus(x beta) / beta`` (the TorchScript-based exporter's ``nn.Softplus(beta)``,
        which drops the threshold) -> ``nn.Softplus(beta)``: one activation of ``x``, as the
        module's graph has it, where the two rescalings would go into the layers' edges."""
        found = self._softplus_of(node.output[0])
        if found is None or found[1] == 1.0 or self.values[found[0]].is_const:
            return False
        self.set(node, self.emit_module(node, nn.Softplus(beta=found[1]), self.values[found[0]]))
        return True

    def _softplus_threshold(self, where) -> tuple[str, float, str] | None:
        """``(x, beta, Greater's name)`` where ``where`` is the dynamo exporter's
        ``nn.Softplus(beta, threshold)``: ``Where(Greater(beta x, threshold), x,
        softplus(beta x) / beta)`` (structure only: constants are checked at conversion)."""
        if where.op_type != "Where" or len(where.input) != 3:
            return None
        gt = self._producer(where.input[0], "Greater")
        found = self._softplus_of(where.input[2])
        if gt is None or found is None or found[0] != where.input[1]:
            return None
        sp_in = found[0] if found[1] == 1.0 else self._producer(
            self._producer(where.input[2], ("Div", "Mul")).input[0], "Softplus").input[0]
        if gt.input[0] != sp_in:
            return None
        return found[0], found[1], gt.input[1]

    def _lerp_where(self, where) -> tuple[str, str, str] | None:
        """``(a, b, w)`` where ``where`` is ``torch.lerp(a, b, w)`` as torch's exporters
        write it: ``Where(Less(w, 0.5), a + w (b - a), b - (b - a)(1 - w))`` (or
        ``Less(|w|, 0.5)``, or a constant for a number ``w``): two forms of one value
        chosen by ``w`` for rounding, read as the first, ``a + w (b - a)``.  Both
        branches are checked to be these forms (with the constant 1), so whatever
        the condition they are equal."""
        if where.op_type != "Where" or len(where.input) != 3:
            return None
        less = self._producer(where.input[0], "Less")
        add = self._producer(where.input[1], "Add")
        other = self._producer(where.input[2], "Sub")
        if less is None and self._const_of(where.input[0]) is None or add is None or other is None:
            return None
        w = None
        if less is not None:
            absolute = self._producer(less.input[0], "Abs")
            w = absolute.input[0] if absolute is not None else less.input[0]
        for a, prod in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
            mul = self._producer(prod, "Mul")
            for i in range(2 if mul is not None else 0):
                diff = self._producer(mul.input[1 - i], "Sub")
                if (w is None or mul.input[i] == w) and diff is not None and \
                        diff.input[1] == a and other.input[0] == diff.input[0] and \
                        self._times_one_minus(other.input[1], diff.output[0], mul.input[i]):
                    return a, diff.input[0], mul.input[i]
        return None

    def _times_one_minus(self, name: str, diff: str, w: str) -> bool:
        """Whether the value ``name`` is ``diff * (1 - w)`` (either order; for a
        constant ``w``, ``1 - w`` may be one constant)."""
        mul = self._producer(name, "Mul")
        if mul is None or diff not in mul.input:
            return False
        factor = mul.input[1] if mul.input[0] == diff else mul.input[0]
        one = self._producer(factor, "Sub")
        if one is not None and one.input[1] == w:
            value, want = self._constant(one.input[0]), torch.ones(())
        else:           # (a constant w: 1 - w folded into one constant)
            value, wv = self._constant(factor), self._constant(w)
            want = None if wv is None else 1.0 - wv.double()
        if value is None or want is None or not value.is_floating_point():
            return False
        try:
            return bool(torch.allclose(value.double(), want.double().expand_as(value),
                                       rtol=1e-6, atol=1e-7))
        except RuntimeError:        # (shapes that do not broadcast so)
            return False

    def _constant(self, name: str) -> torch.Tensor | None:
        """The value of ``name`` where it is a constant (an initializer, a converted
        value, or a Constant node's, read before conversion), else None."""
        v = self._const_of(name)
        node = self._producer(name, "Constant") if v is None else None
        if node is not None and node.attribute:
            a = node.attribute[0]
            v = _to_tensor(a.t) if a.name == "value" else torch.tensor(a.f) \
                if a.name == "value_float" else None
        return v

    def _fuse_layer_norm(self, node) -> bool:
        """``(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps)`` over the trailing axes -> ``nn.LayerNorm``."""
        sub = self._producer(node.input[0], "Sub")
        sqrt = self._producer(node.input[1], "Sqrt")
        if sub is None or sqrt is None:
            return False
        mean = self._producer(sub.input[1], "ReduceMean")
        if mean is None or mean.input[0] != sub.input[0]:
            return False
        add = self._producer(sqrt.input[0], "Add")
        sc = add and self._split_const(add)
        if not sc or sc[1].numel() != 1:
            return False
        var = self._producer(sc[0], "ReduceMean")
        sq = var and self._producer(var.input[0], ("Pow", "Mul"))
        if sq is None:
            return False
        if sq.op_type == "Pow" and not (sq.input[0] == node.input[0] and _close(self._const_of(sq.input[1]), 2.0)):
            return False
        if sq.op_type == "Mul" and not (sq.input[0] == sq.input[1] == node.input[0]):
            return False
        x = self.values[sub.input[0]]
        if x.is_const:
            return False
        rank = x.tensor.dim()
        axes_m, axes_v = self._reduce_axes(mean, rank), self._reduce_axes(var, rank)
        k = len(axes_m)
        if axes_m != axes_v or axes_m != list(range(rank - k, rank)) or k == 0 or axes_m[0] == 0:
            return False
        if not (_attrs(mean).get("keepdims", 1) and _attrs(var).get("keepdims", 1)):
            return False
        shape = tuple(x.tensor.shape[rank - k:])
        norm = _Norm("layer", x, float(sc[1].reshape(())), shape)
        self._emit_norm(node, norm)
        return True

    def _reduce_axes(self, node, rank) -> list[int]:
        a = _attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            c = self._const_of(node.input[1])
            axes = None if c is None else c.reshape(-1).tolist()
        if axes is None:
            return list(range(rank))
        return sorted(int(v) + rank if int(v) < 0 else int(v) for v in axes)

    def _fuse_group_norm(self, node, x: _Value, target: list[int]) -> bool:
        """``Reshape(x, [N, G, -1]) -> InstanceNormalization(1, 0) -> Reshape(x's shape)`` -> ``nn.GroupNorm``."""
        inorm = self._producer(node.input[0], "InstanceNormalization")
        first = inorm and self._producer(inorm.input[0], "Reshape")
        if first is None or first.input[0] not in self.values:
            return False
        src = self.values[first.input[0]]
        grouped = self.values[inorm.input[0]].tensor
        scale, bias = self._const_of(inorm.input[1]), self._const_of(inorm.input[2])
        if src.is_const or list(src.tensor.shape) != target or grouped.dim() != 3 or src.tensor.dim() < 3:
            return False
        if scale is None or bias is None or not torch.all(scale == 1) or torch.any(bias != 0):
            return False
        groups, channels = grouped.shape[1], src.tensor.shape[1]
        if grouped.shape[0] != src.tensor.shape[0] or channels % groups:
            return False
        self._emit_norm(node, _Norm("group", src, float(_attrs(inorm).get("epsilon", 1e-5)), (groups, channels)))
        return True

    def _emit_norm(self, node, norm: _Norm) -> None:
        affine = norm.weight is not None or norm.bias is not None
        if norm.kind == "layer":
            mod = nn.LayerNorm(norm.shape, eps=norm.eps, elementwise_affine=affine, bias=norm.bias is not None,
                               device="meta")
            affine_shape = norm.shape
        else:
            groups, channels = norm.shape
            mod = nn.GroupNorm(groups, channels, eps=norm.eps, affine=affine, device="meta")
            affine_shape = (channels,)
        if affine:
            w = norm.weight if norm.weight is not None else torch.ones(affine_shape)
            mod.weight = _param(w.reshape(affine_shape))
            if norm.bias is not None:
                mod.bias = _param(norm.bias.reshape(affine_shape))
            elif norm.kind == "group":
                mod.bias = _param(torch.zeros(affine_shape))
        self.set(node, self.emit_module(node, mod, norm.x))
        self.norms[node.output[0]] = norm

    def _fold_affine(self, node, kind: str) -> bool:
        """``norm(x) * c`` or ``norm(x) + c`` with ``c`` constant per normalized feature -> the norm's gain / bias."""
        for i in (0, 1):
            norm = self.norms.get(node.input[i])
            c = self._const_of(node.input[1 - i])
            if norm is None or c is None:
                continue
            x = norm.x.tensor
            rank = x.dim()
            if c.dim() > rank or torch.broadcast_shapes(c.shape, x.shape) != x.shape:
                return False
            padded = c.reshape((1,) * (rank - c.dim()) + tuple(c.shape)).float()
            if norm.kind == "layer":
                k = len(norm.shape)
                if any(d != 1 for d in padded.shape[: rank - k]):
                    return False
                c = torch.broadcast_to(padded.reshape(padded.shape[rank - k:]), norm.shape)
            else:
                if padded.shape[0] != 1 or any(d != 1 for d in padded.shape[2:]):
                    return False
                c = torch.broadcast_to(padded.reshape(-1), (norm.shape[1],))
            if kind == "mul":
                w = c if norm.weight is None else norm.weight * c
                b = None if norm.bias is None else norm.bias * c
            else:
                w = norm.weight if norm.weight is not None else torch.ones_like(c)
                b = c if norm.bias is None else norm.bias + c
            self._emit_norm(node, replace(norm, weight=w.clone(), bias=None if b is None else b.clone()))
            return True
        return False

"""Convert an ONNX graph into an equivalent, fx-traceable ``torch.nn.Module``.

The ONNX file is read with the ``onnx`` package (no onnxruntime, no onnx2torch)
and rebuilt as a :class:`torch.fx.GraphModule` made of standard layers:
``Conv`` -> ``nn.Conv1d/2d/3d``, ``Gemm`` and ``MatMul`` with a constant weight
(and a following constant ``Add``) -> ``nn.Linear``, pools -> ``nn.MaxPool*`` /
``nn.AvgPool*`` / ``nn.AdaptiveAvgPool*``, ``BatchNormalization`` ->
``nn.BatchNorm*``, ``LRN`` -> ``nn.LocalResponseNorm``, elementwise
activations -> their modules, ``Add`` -> ``+``, ``Concat`` -> ``torch.cat``,
``Flatten`` / ``Reshape`` -> flatten / reshape.  Because the result is a
graph of ordinary modules, :func:`torch.fx.symbolic_trace` re-traces it and the
signed-graph builder sees the same layers as for a native PyTorch model.

Algorithm: one pass over the ONNX nodes in their (topological) order, keeping
for each ONNX value either a constant tensor or an fx node plus an example
tensor computed eagerly at the static input shape (batch 1).  Nodes whose inputs
are all constant are folded.  The example tensors give every value's shape, which
resolves ``auto_pad``, ``Reshape`` targets and ``-1`` dimensions.  Cost: one
forward pass at batch 1, linear in the number of nodes.

Reshapes that keep the batch dimension are written batch-generically
(``reshape(-1, ...)``), so the module runs at any batch size.
"""

from __future__ import annotations

import math
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import fx, nn

from ..errors import DeepglassError, UnsupportedLayerError

__all__ = ["load_onnx", "onnx_to_module", "SUPPORTED_OPS"]

SUPPORTED_OPS = (
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv", "Dropout", "Flatten",
    "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Identity", "LeakyRelu", "LRN", "MatMul", "MaxPool",
    "ReduceMean", "Relu", "Reshape", "Sigmoid", "Slice", "Softmax", "Tanh", "Transpose",
)
#: shape arithmetic, folded at conversion time (constant inputs, or Shape of a static tensor)
FOLDED_OPS = ("Cast", "Div", "Gather", "Mul", "Shape", "Squeeze", "Sub", "Unsqueeze")


@dataclass
class _Value:
    """An ONNX value: a constant tensor, or an fx node with an example tensor."""

    const: torch.Tensor | None = None
    node: fx.Node | None = None
    example: torch.Tensor | None = None

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def tensor(self) -> torch.Tensor:
        return self.const if self.const is not None else self.example


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _to_tensor(proto) -> torch.Tensor:
    from onnx import numpy_helper

    arr = numpy_helper.to_array(proto)
    return torch.from_numpy(arr.copy())


def _safe(name: str) -> str:
    s = re.sub(r"\W", "_", name).strip("_").lower()
    return s if s and not s[0].isdigit() else f"n_{s}"


class _Builder:
    def __init__(self, model, input_shape: tuple[int, ...] | None) -> None:
        self.model = model
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.values: dict[str, _Value] = {}
        self.names: set[str] = set()
        self.onnx_names: dict[str, str] = {}
        self.opset = next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13
        )
        g = model.graph
        for init in g.initializer:
            self.values[init.name] = _Value(const=_to_tensor(init))
        real_inputs = [i for i in g.input if i.name not in self.values]
        if len(real_inputs) != 1:
            raise DeepglassError(
                f"the ONNX graph has {len(real_inputs)} inputs ({', '.join(i.name for i in real_inputs)}); "
                "deepglass needs exactly one"
            )
        inp = real_inputs[0]
        self.input_name = inp.name
        self.input_shape = self._input_shape(inp, input_shape)
        dtype = torch.float32
        example = torch.zeros((1, *self.input_shape), dtype=dtype)
        placeholder = self.graph.placeholder("x")
        self.values[inp.name] = _Value(node=placeholder, example=example)
        # consumers, for MatMul + Add -> Linear fusion
        self.consumers: dict[str, list] = {}
        for node in g.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in g.output}
        self.fused_adds: dict[int, str] = {}

    def _input_shape(self, inp, override) -> tuple[int, ...]:
        dims = inp.type.tensor_type.shape.dim
        if override is not None:
            if dims and len(override) != len(dims) - 1:
                raise DeepglassError(
                    f"input_shape {tuple(override)} has {len(override)} dimensions; the ONNX input "
                    f"{inp.name!r} has {len(dims)} including the batch"
                )
            return tuple(override)
        static = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
        if len(static) < 2 or any(s is None for s in static[1:]):
            shown = ["?" if s is None else str(s) for s in static]
            raise DeepglassError(
                f"the ONNX input {inp.name!r} has shape [{', '.join(shown)}]: pass input_shape (--input-shape) "
                "without the batch dimension"
            )
        return tuple(static[1:])

    # -- helpers -------------------------------------------------------------
    def _name(self, node, kind: str) -> str:
        base = _safe(node.name) if node.name else f"{kind.lower()}_{len(self.names)}"
        name, i = base, 1
        while name in self.names or hasattr(self.root, name):
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        self.onnx_names[name] = node.name or node.output[0]
        return name

    def _const_node(self, t: torch.Tensor, hint: str) -> fx.Node:
        name, i = f"const_{_safe(hint)}", 1
        while hasattr(self.root, name) or name in self.names:
            name, i = f"const_{_safe(hint)}_{i}", i + 1
        self.names.add(name)
        self.root.register_buffer(name, t)
        return self.graph.get_attr(name)

    def _arg(self, v: _Value, hint: str):
        return self._const_node(v.const, hint) if v.is_const else v.node

    def inp(self, node, i: int) -> _Value | None:
        if i >= len(node.input) or node.input[i] == "":
            return None
        name = node.input[i]
        if name not in self.values:
            raise DeepglassError(f"ONNX node {node.name!r} ({node.op_type}) reads undefined value {name!r}")
        return self.values[name]

    def need_const(self, node, i: int, what: str) -> torch.Tensor:
        v = self.inp(node, i)
        if v is None or not v.is_const:
            raise UnsupportedLayerError(
                f"ONNX node {node.name!r} ({node.op_type}): the {what} must be a constant (initializer)"
            )
        return v.const

    def set(self, node, value: _Value, index: int = 0) -> None:
        self.values[node.output[index]] = value

    def emit_module(self, node, module: nn.Module, x: _Value) -> _Value:
        name = self._name(node, node.op_type)
        self.root.add_module(name, module)
        with torch.no_grad():
            if x.is_const:
                return _Value(const=module.eval()(x.const))
            example = module.eval()(x.example)
        return _Value(node=self.graph.call_module(name, (x.node,)), example=example)

    def emit_function(self, fn: Callable, args: list, kwargs: dict | None = None, hint: str = "c") -> _Value:
        """Call ``fn`` on a mix of _Value and plain arguments (lists of _Value allowed)."""
        kwargs = kwargs or {}

        def flat(a):
            if isinstance(a, _Value):
                return [a]
            if isinstance(a, (list, tuple)):
                return [x for b in a for x in flat(b)]
            return []

        vals = [v for a in args for v in flat(a)]

        def tensors(a):
            if isinstance(a, _Value):
                return a.tensor
            if isinstance(a, (list, tuple)):
                return type(a)(tensors(b) for b in a)
            return a

        with torch.no_grad():
            result = fn(*[tensors(a) for a in args], **kwargs)
        if all(v.is_const for v in vals):
            return _Value(const=result)

        def nodes(a):
            if isinstance(a, _Value):
                return self._arg(a, hint)
            if isinstance(a, (list, tuple)):
                return type(a)(nodes(b) for b in a)
            return a

        n = self.graph.call_function(fn, tuple(nodes(a) for a in args), kwargs)
        return _Value(node=n, example=result)

    def emit_method(self, method: str, x: _Value, args: tuple) -> _Value:
        with torch.no_grad():
            result = getattr(x.tensor, method)(*args)
        if x.is_const:
            return _Value(const=result)
        return _Value(node=self.graph.call_method(method, (x.node, *args)), example=result)

    # -- conversion ----------------------------------------------------------
    def build(self) -> fx.GraphModule:
        for index, node in enumerate(self.model.graph.node):
            op = node.op_type
            if node.domain not in ("", "ai.onnx"):
                self._unsupported(node)
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                self._unsupported(node)
            try:
                handler(node, _attrs(node))
            except DeepglassError:
                raise
            except Exception as exc:
                lines = str(exc).strip().splitlines()
                why = lines[0] if lines else type(exc).__name__
                raise DeepglassError(f"cannot convert ONNX node {node.name!r} ({op}): {why}") from None
        outs = []
        for o in self.model.graph.output:
            if o.name not in self.values:
                raise DeepglassError(f"ONNX graph output {o.name!r} is never computed")
            outs.append(self._arg(self.values[o.name], o.name))
        self.graph.output(outs[0] if len(outs) == 1 else tuple(outs))
        gm = fx.GraphModule(self.root, self.graph, class_name="OnnxModule")
        gm.onnx_node_names = dict(self.onnx_names)
        gm.default_input_shape = tuple(self.input_shape)
        return gm.eval()

    def _unsupported(self, node):
        raise UnsupportedLayerError(
            f"ONNX node {node.name!r} has unsupported op {node.op_type!r}"
            f"{' (domain ' + node.domain + ')' if node.domain not in ('', 'ai.onnx') else ''}; "
            f"supported: {', '.join(SUPPORTED_OPS)} (and {', '.join(FOLDED_OPS)} on constants)"
        )

    def _only_first_output(self, node):
        for extra in node.output[1:]:
            if extra and (extra in self.consumers or extra in self.graph_outputs):
                raise UnsupportedLayerError(
                    f"ONNX node {node.name!r} ({node.op_type}): only its first output is supported"
                )

    def op_Constant(self, node, a):
        if "value" in a:
            t = _to_tensor(a["value"])
        elif "value_float" in a:
            t = torch.tensor(a["value_float"], dtype=torch.float32)
        elif "value_floats" in a:
            t = torch.tensor(list(a["value_floats"]), dtype=torch.float32)
        elif "value_int" in a:
            t = torch.tensor(a["value_int"], dtype=torch.int64)
        elif "value_ints" in a:
            t = torch.tensor(list(a["value_ints"]), dtype=torch.int64)
        else:
            raise UnsupportedLayerError(f"ONNX Constant {node.name!r} with attributes {sorted(a)}")
        self.set(node, _Value(const=t))

    # -- shape arithmetic (folded) --------------------------------------------
    def _folded(self, node, *inputs: int) -> list[torch.Tensor]:
        vals = [self.inp(node, i) for i in inputs]
        if any(v is None or not v.is_const for v in vals):
            raise UnsupportedLayerError(
                f"ONNX node {node.name!r} ({node.op_type}) on a non-constant tensor is not supported "
                "(only shape arithmetic on constants is folded)"
            )
        return [v.const for v in vals]

    def op_Shape(self, node, a):
        x = self.inp(node, 0)
        shape = torch.tensor(list(x.tensor.shape), dtype=torch.int64)  # batch dimension: 1
        start, end = a.get("start", 0), a.get("end", None)
        self.set(node, _Value(const=shape[start:end]))

    def op_Cast(self, node, a):
        from onnx import helper

        x = self.inp(node, 0)
        dtype = torch.from_numpy(np.zeros(0, dtype=helper.tensor_dtype_to_np_dtype(a["to"]))).dtype
        if x is not None and not x.is_const and dtype == x.tensor.dtype:
            self.set(node, x)  # a no-op cast
            return
        (t,) = self._folded(node, 0)
        self.set(node, _Value(const=t.to(dtype)))

    def op_Gather(self, node, a):
        t, idx = self._folded(node, 0, 1)
        axis = int(a.get("axis", 0))
        idx = torch.where(idx < 0, idx + t.shape[axis], idx)
        self.set(node, _Value(const=torch.index_select(t, axis, idx.reshape(-1)).reshape(
            (*t.shape[:axis], *idx.shape, *t.shape[axis + 1 :]))))

    def _axes(self, node, a) -> list[int] | None:
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.need_const(node, 1, "axes").reshape(-1).tolist()
        return None if axes is None else [int(x) for x in axes]

    def op_Unsqueeze(self, node, a):
        (t,) = self._folded(node, 0)
        axes = self._axes(node, a) or []
        rank = t.dim() + len(axes)
        for ax in sorted(x + rank if x < 0 else x for x in axes):
            t = t.unsqueeze(ax)
        self.set(node, _Value(const=t))

    def op_Squeeze(self, node, a):
        (t,) = self._folded(node, 0)
        axes = self._axes(node, a)
        if axes is None:
            self.set(node, _Value(const=t.squeeze()))
        else:
            self.set(node, _Value(const=t.squeeze(tuple(x + t.dim() if x < 0 else x for x in axes))))

    def _arith(self, node, fn):
        x, y = self._folded(node, 0, 1)
        self.set(node, _Value(const=fn(x, y)))

    def op_Mul(self, node, a):
        self._arith(node, torch.mul)

    def op_Sub(self, node, a):
        self._arith(node, torch.sub)

    def op_Div(self, node, a):
        def div(x, y):
            if x.is_floating_point() or y.is_floating_point():
                return x / y
            return torch.div(x, y, rounding_mode="trunc")

        self._arith(node, div)

    # -- tensor re-indexing -----------------------------------------------------
    def op_Transpose(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        perm = [int(p) for p in a.get("perm", list(range(rank))[::-1])]
        moved = [i for i, p in enumerate(perm) if p != i]
        if not moved:
            self.set(node, x)
        elif len(moved) == 2:  # a swap of two axes (channel shuffle)
            self.set(node, self.emit_function(torch.transpose, [x, moved[0], moved[1]]))
        else:
            self.set(node, self.emit_method("permute", x, tuple(perm)))

    def op_Slice(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        if self.opset < 10:
            starts, ends = list(a["starts"]), list(a["ends"])
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts = self.need_const(node, 1, "starts").reshape(-1).tolist()
            ends = self.need_const(node, 2, "ends").reshape(-1).tolist()
            axes = self.need_const(node, 3, "axes").reshape(-1).tolist() if self.inp(node, 3) is not None else list(range(len(starts)))
            steps = self.need_const(node, 4, "steps").reshape(-1).tolist() if self.inp(node, 4) is not None else [1] * len(starts)
        index: list[slice] = [slice(None)] * rank
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax = int(ax) + rank if int(ax) < 0 else int(ax)
            size = x.tensor.shape[ax]
            if int(sp) <= 0:
                raise UnsupportedLayerError(f"ONNX node {node.name!r} (Slice): step {sp}")
            st, en = int(st), int(en)
            st = max(0, min(size, st + size if st < 0 else st))
            en = max(0, min(size, en + size if en < 0 else en))
            index[ax] = slice(st, en, None if int(sp) == 1 else int(sp))
        while index and index[-1] == slice(None):
            index.pop()
        self.set(node, self.emit_function(operator.getitem, [x, tuple(index)]))

    def op_ReduceMean(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.need_const(node, 1, "axes").reshape(-1).tolist()
        if axes is None:
            if int(a.get("noop_with_empty_axes", 0)):
                self.set(node, x)
                return
            axes = list(range(rank))
        axes = sorted(int(v) + rank if int(v) < 0 else int(v) for v in axes)
        self.set(node, self.emit_method("mean", x, (axes, bool(a.get("keepdims", 1)))))

    def op_Identity(self, node, a):
        self.set(node, self.inp(node, 0))

    def op_Dropout(self, node, a):
        self._only_first_output(node)
        x = self.inp(node, 0)
        ratio = a.get("ratio", 0.5)
        r = self.inp(node, 1)
        if r is not None and r.is_const:
            ratio = float(r.const)
        self.set(node, self.emit_module(node, nn.Dropout(p=float(ratio)), x))

    @staticmethod
    def _pads(a, spatial: int, in_sizes, kernel, strides, dilations):
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            pads = list(a.get("pads", [0] * (2 * spatial)))
            return pads[:spatial], pads[spatial:]
        if auto == "VALID":
            return [0] * spatial, [0] * spatial
        begin, end = [], []
        for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
            out = math.ceil(size / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin, end

    def op_Conv(self, node, a):
        x = self.inp(node, 0)
        w = self.need_const(node, 1, "weight")
        bias_v = self.inp(node, 2)
        b = self.need_const(node, 2, "bias") if bias_v is not None else None
        spatial = w.dim() - 2
        if spatial not in (1, 2, 3):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Conv): {spatial}-d convolution")
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        groups = int(a.get("group", 1))
        begin, end = self._pads(a, spatial, x.tensor.shape[2:], kernel, strides, dil)
        conv_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial]
        out_ch, in_per_group = w.shape[0], w.shape[1]
        padding = begin if begin == end else [0] * spatial
        conv = conv_cls(in_per_group * groups, out_ch, kernel, stride=strides, padding=padding,
                        dilation=dil, groups=groups, bias=b is not None)
        with torch.no_grad():
            conv.weight.copy_(w.to(conv.weight.dtype))
            if b is not None:
                conv.bias.copy_(b.to(conv.bias.dtype))
        if begin != end:  # asymmetric zero padding: an explicit pad module first
            pad_cls = {1: nn.ConstantPad1d, 2: nn.ConstantPad2d, 3: nn.ConstantPad3d}[spatial]
            torch_pad = []
            for lo, hi in zip(reversed(begin), reversed(end)):
                torch_pad += [lo, hi]
            x = self.emit_module(node, pad_cls(tuple(torch_pad), 0.0), x)
        self.set(node, self.emit_module(node, conv, x))

    def _pool(self, node, a, kind: str):
        self._only_first_output(node)
        x = self.inp(node, 0)
        kernel = list(a["kernel_shape"])
        spatial = len(kernel)
        if spatial not in (1, 2, 3):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} ({node.op_type}): {spatial}-d pooling")
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        begin, end = self._pads(a, spatial, x.tensor.shape[2:], kernel, strides, dil)
        ceil = bool(a.get("ceil_mode", 0))
        if begin != end:
            raise UnsupportedLayerError(
                f"ONNX node {node.name!r} ({node.op_type}): asymmetric padding {begin} / {end} has no PyTorch pooling layer"
            )
        if kind == "max":
            cls = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial]
            mod = cls(kernel, stride=strides, padding=begin, dilation=dil, ceil_mode=ceil)
        else:
            if any(d != 1 for d in dil):
                raise UnsupportedLayerError(f"ONNX node {node.name!r} (AveragePool): dilation {dil}")
            cls = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[spatial]
            mod = cls(kernel, stride=strides, padding=begin, ceil_mode=ceil,
                      count_include_pad=bool(a.get("count_include_pad", 0)))
        self.set(node, self.emit_module(node, mod, x))

    def op_MaxPool(self, node, a):
        if int(a.get("storage_order", 0)) != 0 and len(node.output) > 1:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (MaxPool): storage_order")
        self._pool(node, a, "max")

    def op_AveragePool(self, node, a):
        self._pool(node, a, "avg")

    def _global(self, node, kind):
        x = self.inp(node, 0)
        spatial = x.tensor.dim() - 2
        if spatial not in (1, 2, 3):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} ({node.op_type}) on a rank-{x.tensor.dim()} tensor")
        if kind == "avg":
            mod = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[spatial](1)
        else:
            mod = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}[spatial](1)
        self.set(node, self.emit_module(node, mod, x))

    def op_GlobalAveragePool(self, node, a):
        self._global(node, "avg")

    def op_GlobalMaxPool(self, node, a):
        self._global(node, "max")

    def _linear(self, node, x: _Value, weight: torch.Tensor, bias: torch.Tensor | None) -> _Value:
        lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            lin.weight.copy_(weight)
            if bias is not None:
                lin.bias.copy_(bias)
        return self.emit_module(node, lin, x)

    def op_Gemm(self, node, a):
        x = self.inp(node, 0)
        if x.is_const:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Gemm): constant A input")
        if int(a.get("transA", 0)):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Gemm): transA=1")
        if x.tensor.dim() != 2:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (Gemm): input of rank {x.tensor.dim()}")
        B = self.need_const(node, 1, "B matrix").float()
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        weight = alpha * (B if int(a.get("transB", 0)) else B.t())  # (out, in)
        bias = None
        if self.inp(node, 2) is not None:
            C = self.need_const(node, 2, "C bias").float()
            if C.dim() == 2 and C.shape[0] != 1:
                raise UnsupportedLayerError(f"ONNX node {node.name!r} (Gemm): C of shape {list(C.shape)} is not a bias")
            bias = beta * torch.broadcast_to(C.reshape(-1) if C.dim() == 2 else C, (weight.shape[0],)).clone()
        self.set(node, self._linear(node, x, weight.contiguous(), bias))

    def op_MatMul(self, node, a):
        x = self.inp(node, 0)
        W = self.inp(node, 1)
        if x.is_const and W.is_const:
            self.set(node, _Value(const=torch.matmul(x.const, W.const)))
            return
        if x.is_const or not W.is_const or W.const.dim() != 2:
            raise UnsupportedLayerError(
                f"ONNX node {node.name!r} (MatMul): only input @ constant 2-d weight is supported"
            )
        weight = W.const.float().t().contiguous()
        bias = None
        users = self.consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "Add" and node.output[0] not in self.graph_outputs:
            add = users[0]
            other = [n for n in add.input if n != node.output[0]]
            if len(other) == 1 and other[0] in self.values and self.values[other[0]].is_const:
                c = self.values[other[0]].const.float()
                out = weight.shape[0]
                if c.numel() == out and (c.dim() == 0 and out == 1 or c.dim() >= 1 and c.shape[-1] == out):
                    bias = c.reshape(-1).clone()
                    self.fused_adds[id(add)] = node.output[0]
        self.set(node, self._linear(node, x, weight, bias))

    def op_Add(self, node, a):
        if id(node) in self.fused_adds:  # bias already inside the preceding Linear
            self.set(node, self.values[self.fused_adds[id(node)]])
            return
        x, y = self.inp(node, 0), self.inp(node, 1)
        self.set(node, self.emit_function(operator.add, [x, y], hint=node.output[0]))

    def op_Concat(self, node, a):
        parts = [self.inp(node, i) for i in range(len(node.input))]
        axis = int(a["axis"])
        self.set(node, self.emit_function(torch.cat, [parts], {"dim": axis}, hint=node.output[0]))

    def op_Relu(self, node, a):
        self.set(node, self.emit_module(node, nn.ReLU(), self.inp(node, 0)))

    def op_Sigmoid(self, node, a):
        self.set(node, self.emit_module(node, nn.Sigmoid(), self.inp(node, 0)))

    def op_Tanh(self, node, a):
        self.set(node, self.emit_module(node, nn.Tanh(), self.inp(node, 0)))

    def op_LeakyRelu(self, node, a):
        self.set(node, self.emit_module(node, nn.LeakyReLU(float(a.get("alpha", 0.01))), self.inp(node, 0)))

    def op_Clip(self, node, a):
        x = self.inp(node, 0)
        lo, hi = a.get("min"), a.get("max")
        if self.opset >= 11 or len(node.input) > 1:
            lo_v, hi_v = self.inp(node, 1), self.inp(node, 2)
            lo = float(self.need_const(node, 1, "min")) if lo_v is not None else None
            hi = float(self.need_const(node, 2, "max")) if hi_v is not None else None
        lo = None if lo is None or lo == -math.inf else float(lo)
        hi = None if hi is None or hi == math.inf else float(hi)
        if lo is None and hi is None:
            self.set(node, x)
            return
        if lo == 0.0 and hi is None:
            mod = nn.ReLU()
        elif lo == 0.0 and hi == 6.0:
            mod = nn.ReLU6()
        elif lo is not None and hi is not None:
            mod = nn.Hardtanh(lo, hi)
        else:
            self.set(node, self.emit_function(torch.clamp, [x], {"min": lo, "max": hi}))
            return
        self.set(node, self.emit_module(node, mod, x))

    def op_Flatten(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis == 1:
            self.set(node, self.emit_module(node, nn.Flatten(1, -1), x))
        elif axis == 0:
            self.set(node, self.emit_method("reshape", x, (1, -1)))
        else:
            y = self.emit_method("flatten", x, (axis,))
            self.set(node, self.emit_method("flatten", y, (0, axis - 1)))

    def op_Reshape(self, node, a):
        x = self.inp(node, 0)
        target = [int(v) for v in self.need_const(node, 1, "target shape").reshape(-1).tolist()]
        in_shape = list(x.tensor.shape)
        if not int(a.get("allowzero", 0)):
            target = [in_shape[i] if t == 0 and i < len(in_shape) else t for i, t in enumerate(target)]
        resolved = list(torch.empty(in_shape).reshape(target).shape)
        if x.is_const:
            self.set(node, _Value(const=x.const.reshape(resolved)))
            return
        per_sample = math.prod(in_shape[1:])
        if len(resolved) >= 1 and resolved[0] == in_shape[0] and math.prod(resolved[1:]) == per_sample:
            if len(resolved) == 2 and len(in_shape) > 2:
                self.set(node, self.emit_module(node, nn.Flatten(1, -1), x))
            else:
                self.set(node, self.emit_method("reshape", x, (-1, *resolved[1:])))
        else:  # mixes the batch dimension: valid at batch size 1 only
            self.set(node, self.emit_method("reshape", x, tuple(resolved)))

    def op_BatchNormalization(self, node, a):
        self._only_first_output(node)
        if int(a.get("training_mode", 0)):
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (BatchNormalization): training_mode=1")
        x = self.inp(node, 0)
        scale, shift = self.need_const(node, 1, "scale"), self.need_const(node, 2, "bias")
        mean, var = self.need_const(node, 3, "mean"), self.need_const(node, 4, "variance")
        rank = x.tensor.dim()
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
        if cls is None:
            raise UnsupportedLayerError(f"ONNX node {node.name!r} (BatchNormalization) on a rank-{rank} tensor")
        bn = cls(scale.numel(), eps=float(a.get("epsilon", 1e-5)), momentum=1.0 - float(a.get("momentum", 0.9)))
        with torch.no_grad():
            bn.weight.copy_(scale)
            bn.bias.copy_(shift)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
        self.set(node, self.emit_module(node, bn, x))

    def op_Softmax(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + rank if axis < 0 else axis
        if self.opset < 13 and axis != rank - 1 and any(d != 1 for d in x.tensor.shape[axis + 1 :]):
            raise UnsupportedLayerError(
                f"ONNX node {node.name!r} (Softmax, opset {self.opset}): softmax over flattened axes {axis}.. "
                "is not a single-dimension softmax"
            )
        self.set(node, self.emit_module(node, nn.Softmax(dim=axis), x))

    def op_LRN(self, node, a):
        mod = nn.LocalResponseNorm(int(a["size"]), alpha=float(a.get("alpha", 1e-4)),
                                   beta=float(a.get("beta", 0.75)), k=float(a.get("bias", 1.0)))
        self.set(node, self.emit_module(node, mod, self.inp(node, 0)))


def onnx_to_module(model, input_shape=None) -> fx.GraphModule:
    """Convert a loaded ``onnx.ModelProto`` into a :class:`torch.fx.GraphModule` (eval mode).

    Parameters
    ----------
    model : onnx.ModelProto
        The ONNX model.
    input_shape : sequence of int, optional
        Input shape without the batch dimension; default: the graph's static shape.

    Raises
    ------
    UnsupportedLayerError
        For an op outside :data:`SUPPORTED_OPS` (naming the node and the op) or
        an unsupported attribute combination.
    """
    shape = None if input_shape is None else tuple(int(s) for s in input_shape)
    return _Builder(model, shape).build()


def load_onnx(path: str | os.PathLike, input_shape=None) -> fx.GraphModule:
    """Read an ONNX file and convert it with :func:`onnx_to_module`."""
    try:
        import onnx
    except ImportError:
        raise DeepglassError("reading ONNX files needs the 'onnx' package: pip install 'deepglass[onnx]'") from None
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        raise DeepglassError(f"cannot read ONNX file {path}: {lines[0] if lines else type(exc).__name__}") from None
    return onnx_to_module(model, input_shape)

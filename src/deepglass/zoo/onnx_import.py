"""Convert an ONNX graph into an equivalent ``torch.nn.Module`` of ordinary torch layers.

The ONNX file is read with the ``onnx`` package (no onnxruntime, no onnx2torch)
and rebuilt as a :class:`torch.fx.GraphModule` whose nodes are the layers and
functions a PyTorch author would write: ``Conv`` -> ``nn.Conv1d/2d/3d``,
``ConvTranspose`` -> ``nn.ConvTranspose1d/2d/3d``, ``Gemm`` and ``MatMul`` with
a constant weight (and a following constant ``Add``) -> ``nn.Linear``, pools ->
``nn.MaxPool*`` / ``nn.AvgPool*`` / ``nn.AdaptiveAvgPool*``, the normalizations
-> ``nn.BatchNorm*`` / ``nn.LayerNorm`` / ``nn.GroupNorm`` /
``nn.InstanceNorm*`` / ``nn.LocalResponseNorm``, activations -> their modules
(``HardSwish`` -> ``nn.Hardswish``, learned ``PRelu`` -> ``nn.PReLU`` with its
slopes, ...), elementwise arithmetic -> ``torch.add/sub/mul/div``, ``Resize`` /
``Upsample`` -> ``F.interpolate``, ``Pad`` -> ``F.pad``, and the re-indexings
(``Concat``, ``Split``, ``Slice``, ``Gather``, ``Squeeze``, ``Transpose``,
``Reshape``, ...) -> the torch functions of the same name.  Two subgraphs
that exporters write out are recognised and become the one op PyTorch would
have used (SPEC §1b, "the network is what it computes at inference"):
LayerNorm as ``ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div[/Mul/Add]`` ->
``nn.LayerNorm``, GELU as ``Div/Erf/Add/Mul/Mul`` -> ``nn.GELU``, and GroupNorm
as ``Reshape/InstanceNormalization/Reshape[/Mul/Add]`` -> ``nn.GroupNorm``.
The module therefore runs under :func:`torch.fx.symbolic_trace` and under
``torch.export.export(module, inputs, strict=False)`` (no Python control flow
at run time, static shapes), so the signed-graph builder sees the same ATen ops
as for a native PyTorch model.

Operations without a signed-graph rule are refused before anything is built,
with one line naming the ONNX node, its op, what it is and why: recurrent
cells (``LSTM``, ``GRU``, ``RNN``), products of two activations (attention-like
``MatMul``), quantized operators, data-dependent control flow.

Algorithm: one pass over the ONNX nodes in their (topological) order, keeping
for each ONNX value either a constant tensor (folded eagerly on the CPU) or an
fx node plus an example tensor on the ``meta`` device (shape and dtype only, no
arithmetic).  The examples give every value's shape, which resolves
``auto_pad``, ``Reshape`` targets, ``-1`` dimensions and ``Shape`` chains.
Fusions are matched backwards at the last node of their pattern, so every
constant of the pattern is known; the nodes a fusion makes redundant are
removed by dead-code elimination at the end.  Cost: linear in the number of
ONNX nodes and in the size of the weights (each copied once); no forward pass.

Reshapes that keep the batch dimension are written batch-generically
(``reshape(-1, ...)``), so the module runs at any batch size.
"""

from __future__ import annotations

import functools
import keyword
import math
import operator
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import DeepglassError, UnsupportedLayerError

__all__ = ["load_onnx", "onnx_to_module", "SUPPORTED_OPS"]

SUPPORTED_OPS = (
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv", "ConvTranspose", "Div",
    "DepthToSpace", "Dropout", "Elu", "Exp", "Expand", "Flatten", "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
    "GroupNormalization", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization",
    "LayerNormalization", "LeakyRelu", "LogSoftmax", "LRN", "MatMul", "MaxPool", "Mish", "Mul", "Neg", "Pad", "Pow",
    "PRelu", "Reciprocal", "ReduceMean", "Relu", "Reshape", "Resize", "Sigmoid", "Slice", "Softmax",
    "Softplus", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze", "Upsample",
)
#: shape arithmetic, folded at conversion time (constant inputs, or Shape of a static tensor);
#: Erf only inside GELU (x * 0.5 * (1 + erf(x / sqrt 2))), which becomes nn.GELU
FOLDED_OPS = ("Abs", "Cast", "Ceil", "ConstantOfShape", "Equal", "Erf", "Floor", "Greater", "Less",
              "Max", "Min", "Not", "Range", "Shape", "Tile", "Where")

_RECURRENT = {"LSTM", "GRU", "RNN"}
_QUANTIZED = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
    "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "QLinearSoftmax", "QGemm",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "DynamicQuantizeLSTM", "QAttention", "QOrderedMatMul",
}
_ATTENTION = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "Einsum"}
_CONTROL = {"If", "Loop", "Scan", "NonZero", "TopK", "NonMaxSuppression"}
#: folded on constants (dynamic-shape arithmetic), a selection when an activation is involved
_SELECTION = {"Where", "Equal", "Less", "Greater", "Not", "Min", "Max"}
_SQRT2 = math.sqrt(2.0)


@dataclass
class _Value:
    """An ONNX value: a constant tensor (CPU), or an fx node with a ``meta`` example tensor."""

    const: torch.Tensor | None = None
    node: fx.Node | None = None
    example: torch.Tensor | None = None

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def tensor(self) -> torch.Tensor:
        return self.const if self.const is not None else self.example


@dataclass
class _Norm:
    """A per-sample normalization whose output value may still absorb a constant ``* w + b``."""

    kind: str  # "layer" or "group"
    x: _Value
    eps: float
    shape: tuple[int, ...]  # LayerNorm: normalized shape; GroupNorm: (groups, channels)
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _to_tensor(proto) -> torch.Tensor:
    from onnx import numpy_helper

    arr = numpy_helper.to_array(proto)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C", copy=True)  # (np.ascontiguousarray would make a 0-d array 1-d)
    return torch.from_numpy(arr)


def _safe(name: str) -> str:
    s = re.sub(r"\W", "_", name).strip("_").lower()
    s = s if s and not s[0].isdigit() else f"n_{s}"
    return f"{s}_" if keyword.iskeyword(s) else s  # fx writes module names into Python code


def _label(node) -> str:
    return repr(node.name or node.output[0])


def _meta(t):
    return t.to("meta") if isinstance(t, torch.Tensor) else t


def _meta_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` on a meta tensor: shapes and dtypes only, no arithmetic."""
    state = {k: v.to("meta") for k, v in module.state_dict(keep_vars=True).items()}
    with torch.no_grad():
        return torch.func.functional_call(module, state, (x,))


def _param(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().float().contiguous())


def _close(t: torch.Tensor | None, value: float, tol: float = 1e-6) -> bool:
    return t is not None and t.numel() == 1 and abs(float(t.reshape(())) - value) <= tol * max(1.0, abs(value))


def _drop_unused(gm: fx.GraphModule) -> None:
    """Delete the top-level buffers and modules no graph node refers to any more."""
    used = {n.target for n in gm.graph.nodes if n.op in ("get_attr", "call_module")}
    for name in [b for b in gm._buffers if b not in used]:
        del gm._buffers[name]
    for name in [m for m in gm._modules if m not in used]:
        del gm._modules[name]


class _Builder:
    def __init__(self, model, input_shapes) -> None:
        self.model = model
        g = model.graph
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.values: dict[str, _Value] = {}
        self.names: set[str] = set()
        self.onnx_names: dict[str, str] = {}
        self.norms: dict[str, _Norm] = {}  # ONNX value -> per-sample norm it is the output of
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        if not g.node and not g.output:
            raise DeepglassError("the ONNX model holds no graph (an empty or truncated file)")
        for init in g.initializer:
            self.values[init.name] = _Value(const=_to_tensor(init))
        self.producer = {out: node for node in g.node for out in node.output if out}
        self.consumers: dict[str, list] = {}
        for node in g.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in g.output}
        self.fused_adds: dict[int, str] = {}
        real = [i for i in g.input if i.name not in self.values]
        if not real:
            raise DeepglassError(
                "the ONNX graph has no input tensor (it computes a constant): the signed graph needs at least one input"
            )
        self._refuse_undefined(real)
        self.input_names = [i.name for i in real]
        self.input_shapes = self._input_shapes(real, input_shapes)
        taken: set[str] = set()
        for inp, shape in zip(real, self.input_shapes):
            name = "x" if len(real) == 1 else _safe(inp.name)
            while name in taken:
                name += "_"
            taken.add(name)
            dtype = self._dtype(inp)
            example = torch.empty((1, *shape), dtype=dtype, device="meta")
            self.values[inp.name] = _Value(node=self.graph.placeholder(name), example=example)

    # -- inputs --------------------------------------------------------------
    @staticmethod
    def _dtype(inp) -> torch.dtype:
        from onnx import helper

        elem = inp.type.tensor_type.elem_type
        if not elem:
            return torch.float32
        return torch.from_numpy(np.zeros(0, dtype=helper.tensor_dtype_to_np_dtype(elem))).dtype

    def _input_shapes(self, real, override) -> list[tuple[int, ...]]:
        names = [i.name for i in real]
        if override is None:
            per = [None] * len(real)
        elif isinstance(override, dict):
            unknown = sorted(set(override) - set(names))
            if unknown:
                raise DeepglassError(f"input_shape names {unknown} are not ONNX inputs ({', '.join(names)})")
            per = [override.get(n) for n in names]
        elif all(isinstance(s, (int, np.integer)) for s in override):
            if len(real) != 1:
                raise DeepglassError(
                    f"the ONNX graph has {len(real)} inputs ({', '.join(names)}): give one shape per input"
                )
            per = [override]
        else:
            per = list(override)
            if len(per) != len(real):
                raise DeepglassError(
                    f"{len(per)} input shapes for the {len(real)} ONNX inputs ({', '.join(names)})"
                )
        return [self._input_shape(i, None if s is None else tuple(int(d) for d in s)) for i, s in zip(real, per)]

    @staticmethod
    def _input_shape(inp, override) -> tuple[int, ...]:
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

    # -- refusals (before anything is built) ----------------------------------
    def _refuse_undefined(self, real) -> None:
        """Refuse the first node that has no signed graph, else the first op without a converter.

        Const-ness is propagated over the node list (initializers, Constant,
        Shape of a static tensor, nodes of constants only) to tell a weight
        product from a product of two activations.  Linear in the node count.
        """
        const = set(self.values)
        first_category = first_unknown = None
        for node in self.model.graph.node:
            op = node.op_type
            why = self._category(node, const)
            if why is not None and first_category is None:
                first_category = f"ONNX node {_label(node)} ({op}): {why}"
            if first_unknown is None and not self._known(node):
                first_unknown = node
            if op in ("Constant", "Shape", "Size") or all(i in const for i in node.input if i):
                const.update(o for o in node.output if o)
        if first_category is not None:
            raise UnsupportedLayerError(first_category)
        if first_unknown is not None:
            self._unsupported(first_unknown)

    @staticmethod
    def _category(node, const) -> str | None:
        op = node.op_type
        if op in _RECURRENT:
            return ("a recurrent cell has no fixed feed-forward signed graph (its state feeds back over time "
                    "steps); unroll it or export the CNN part")
        if op in _QUANTIZED:
            return ("a quantized operation (integer tensors with scales and zero points); the signed graph is "
                    "defined on real-valued weights: export the float model before quantization")
        if op in _ATTENTION:
            return ("an attention product of activations; its sign depends on the input, so it has no fixed "
                    "signed edges: export the convolutional part")
        if op in _CONTROL or op in _SELECTION and not all(i in const for i in node.input if i):
            return ("data-dependent control flow or selection; the signed graph needs one fixed "
                    "feed-forward computation: export the network without it (e.g. without box post-processing)")
        if op in ("MatMul", "Gemm") and len(node.input) >= 2 and not {node.input[0], node.input[1]} & const:
            return ("a product of two activations (attention-like, e.g. queries times keys) has no fixed "
                    "sign: its weights are computed from the input, so the signed graph is not defined for it; "
                    "export the convolutional part")
        return None

    def _known(self, node) -> bool:
        if node.domain not in ("", "ai.onnx") or getattr(self, f"op_{node.op_type}", None) is None:
            return False
        if node.op_type == "Erf":  # only inside GELU: Erf -> Add -> Mul
            adds = self.consumers.get(node.output[0], [])
            return bool(adds) and all(
                a.op_type == "Add" and all(m.op_type == "Mul" for m in self.consumers.get(a.output[0], []))
                for a in adds
            )
        return True

    def _unsupported(self, node):
        raise UnsupportedLayerError(
            f"ONNX node {_label(node)} has unsupported op {node.op_type!r}"
            f"{' (domain ' + node.domain + ')' if node.domain not in ('', 'ai.onnx') else ''}; "
            f"supported: {', '.join(SUPPORTED_OPS)} (and {', '.join(FOLDED_OPS)} where folded)"
        )

    def refuse(self, node, why: str):
        raise UnsupportedLayerError(f"ONNX node {_label(node)} ({node.op_type}): {why}")

    # -- emission helpers -----------------------------------------------------
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
            raise DeepglassError(f"ONNX node {_label(node)} ({node.op_type}) reads undefined value {name!r}")
        return self.values[name]

    def need_const(self, node, i: int, what: str) -> torch.Tensor:
        v = self.inp(node, i)
        if v is None or not v.is_const:
            self.refuse(node, f"the {what} must be a constant (initializer)")
        return v.const

    def opt_const(self, node, i: int, what: str) -> torch.Tensor | None:
        return None if self.inp(node, i) is None else self.need_const(node, i, what)

    def set(self, node, value: _Value, index: int = 0) -> None:
        self.values[node.output[index]] = value

    def emit_module(self, node, module: nn.Module, x: _Value) -> _Value:
        module.eval()
        if x.is_const:  # folded; the module is not kept
            with torch.no_grad():
                return _Value(const=module(x.const))
        name = self._name(node, node.op_type)
        self.root.add_module(name, module)
        return _Value(node=self.graph.call_module(name, (x.node,)), example=_meta_call(module, x.example))

    def emit_function(self, fn: Callable, args: list, kwargs: dict | None = None, hint: str = "c") -> _Value:
        """Call ``fn`` on a mix of _Value and plain arguments (lists of _Value allowed).

        All-constant calls are folded on the CPU; otherwise the result's example
        is computed on the meta device and an fx ``call_function`` node emitted.
        """
        kwargs = kwargs or {}

        def flat(a):
            if isinstance(a, _Value):
                return [a]
            if isinstance(a, (list, tuple)):
                return [x for b in a for x in flat(b)]
            return []

        folded = all(v.is_const for a in args for v in flat(a))

        def tensors(a):
            if isinstance(a, _Value):
                return a.const if folded else _meta(a.tensor)
            if isinstance(a, (list, tuple)):
                return type(a)(tensors(b) for b in a)
            return a

        with torch.no_grad():
            result = fn(*[tensors(a) for a in args], **kwargs)
        if folded:
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
        for node in self.model.graph.node:
            op = node.op_type
            try:
                getattr(self, f"op_{op}")(node, _attrs(node))
            except DeepglassError:
                raise
            except Exception as exc:
                lines = str(exc).strip().splitlines()
                why = lines[0] if lines else type(exc).__name__
                raise DeepglassError(f"cannot convert ONNX node {_label(node)} ({op}): {why}") from None
        outs = []
        for o in self.model.graph.output:
            if o.name not in self.values:
                raise DeepglassError(f"ONNX graph output {o.name!r} is never computed")
            outs.append(self._arg(self.values[o.name], o.name))
        self.graph.output(outs[0] if len(outs) == 1 else tuple(outs))
        gm = fx.GraphModule(self.root, self.graph, class_name="OnnxModule")
        if gm.graph.eliminate_dead_code():  # the subgraphs a fusion replaced
            gm.recompile()
        _drop_unused(gm)
        gm.onnx_node_names = {k: v for k, v in self.onnx_names.items() if hasattr(gm, k)}
        gm.input_names = list(self.input_names)
        gm.default_input_shapes = tuple(tuple(s) for s in self.input_shapes)
        gm.default_input_shape = gm.default_input_shapes[0] if len(self.input_shapes) == 1 else gm.default_input_shapes
        return gm.eval()

    def _only_first_output(self, node):
        for extra in node.output[1:]:
            if extra and (extra in self.consumers or extra in self.graph_outputs):
                self.refuse(node, "only its first output is supported")

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
            self.refuse(node, f"a constant with attributes {sorted(a)}")
        self.set(node, _Value(const=t))

    def op_Identity(self, node, a):
        self.set(node, self.inp(node, 0))

    # -- shape arithmetic -------------------------------------------------------
    def op_Shape(self, node, a):
        x = self.inp(node, 0)
        shape = torch.tensor(list(x.tensor.shape), dtype=torch.int64)  # batch dimension: 1
        start, end = a.get("start", 0), a.get("end", None)
        self.set(node, _Value(const=shape[start:end]))

    def op_Cast(self, node, a):
        from onnx import helper

        x = self.inp(node, 0)
        dtype = torch.from_numpy(np.zeros(0, dtype=helper.tensor_dtype_to_np_dtype(a["to"]))).dtype
        if not x.is_const and dtype == x.tensor.dtype:
            self.set(node, x)  # a no-op cast
        elif x.is_const:
            self.set(node, _Value(const=x.const.to(dtype)))
        else:
            self.refuse(node, f"a cast of a {x.tensor.dtype} activation to {dtype} changes the arithmetic")

    def _fold(self, node, fn: Callable) -> None:
        """An op evaluated at conversion time on constant inputs (shape arithmetic of dynamic exports)."""
        vals = [self.inp(node, i) for i in range(len(node.input))]
        if any(v is not None and not v.is_const for v in vals):
            self.refuse(node, "on an activation; only shape arithmetic on constants is folded")
        self.set(node, _Value(const=fn(*[None if v is None else v.const for v in vals])))

    def op_Where(self, node, a):
        self._fold(node, torch.where)

    def op_Equal(self, node, a):
        self._fold(node, torch.eq)

    def op_Less(self, node, a):
        self._fold(node, torch.lt)

    def op_Greater(self, node, a):
        self._fold(node, torch.gt)

    def op_Not(self, node, a):
        self._fold(node, torch.logical_not)

    def op_Abs(self, node, a):
        self._fold(node, torch.abs)

    def op_Floor(self, node, a):
        self._fold(node, torch.floor)

    def op_Ceil(self, node, a):
        self._fold(node, torch.ceil)

    def op_Min(self, node, a):
        self._fold(node, lambda *ts: functools.reduce(torch.minimum, ts))

    def op_Max(self, node, a):
        self._fold(node, lambda *ts: functools.reduce(torch.maximum, ts))

    def op_Range(self, node, a):
        self._fold(node, lambda start, limit, delta: torch.arange(start.item(), limit.item(), delta.item(),
                                                                  dtype=start.dtype))

    def op_ConstantOfShape(self, node, a):
        value = _to_tensor(a["value"]).reshape(-1) if "value" in a else torch.zeros(1)
        self._fold(node, lambda shape: torch.full(shape.tolist(), value[0].item(), dtype=value.dtype))

    def op_Expand(self, node, a):
        x = self.inp(node, 0)
        if x.is_const:
            self._fold(node, lambda t, shape: t.expand(torch.broadcast_shapes(t.shape, tuple(shape.tolist()))).clone())
            return
        target = torch.broadcast_shapes(x.tensor.shape, tuple(self.need_const(node, 1, "shape").tolist()))
        if len(target) != x.tensor.dim() or target[0] != x.tensor.shape[0]:
            self.refuse(node, f"broadcasting {list(x.tensor.shape)} to {list(target)} changes the batch axis")
        self.set(node, self.emit_method("expand", x, (-1, *target[1:])))

    def op_Tile(self, node, a):
        self._fold(node, lambda t, reps: t.repeat(*reps.tolist()))

    def _axes(self, node, a) -> list[int] | None:
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.need_const(node, 1, "axes").reshape(-1).tolist()
        return None if axes is None else [int(x) for x in axes]

    def op_Unsqueeze(self, node, a):
        x = self.inp(node, 0)
        axes = self._axes(node, a) or []
        rank = x.tensor.dim() + len(axes)
        for ax in sorted(v + rank if v < 0 else v for v in axes):
            x = self.emit_function(torch.unsqueeze, [x, ax])
        self.set(node, x)

    def op_Squeeze(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axes = self._axes(node, a)
        if axes is None:
            axes = [i for i, d in enumerate(x.tensor.shape) if d == 1 and (x.is_const or i > 0)]
        axes = tuple(sorted(v + rank if v < 0 else v for v in axes))
        self.set(node, self.emit_function(torch.squeeze, [x, axes]) if axes else x)

    def op_Gather(self, node, a):
        x = self.inp(node, 0)
        idx = self.need_const(node, 1, "index")
        axis = int(a.get("axis", 0))
        axis = axis + x.tensor.dim() if axis < 0 else axis
        size = x.tensor.shape[axis]
        idx = torch.where(idx < 0, idx + size, idx).long()
        if x.is_const:
            out = torch.index_select(x.const, axis, idx.reshape(-1))
            self.set(node, _Value(const=out.reshape((*x.const.shape[:axis], *idx.shape, *x.const.shape[axis + 1:]))))
        elif idx.dim() == 0:
            self.set(node, self.emit_function(torch.select, [x, axis, int(idx)]))
        else:
            flat = idx.reshape(-1)
            if flat.numel() and torch.equal(flat, torch.arange(int(flat[0]), int(flat[0]) + flat.numel())):
                index = [slice(None)] * axis + [slice(int(flat[0]), int(flat[0]) + flat.numel())]
                y = self.emit_function(operator.getitem, [x, tuple(index)])
            else:
                y = self.emit_function(torch.index_select, [x, axis, _Value(const=flat)], hint=node.output[0])
            if idx.dim() != 1:
                shape = (*x.tensor.shape[:axis], *idx.shape, *x.tensor.shape[axis + 1:])
                y = self.emit_method("reshape", y, (-1, *shape[1:]) if axis > 0 else shape)
            self.set(node, y)

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
        if self._fuse_gelu(node) or self._fold_affine(node, "mul"):
            return
        self._binary(node, torch.mul, operator.mul)

    def op_Div(self, node, a):
        if self._fuse_layer_norm(node):
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
        """``0.5 * x * (1 + erf(x / sqrt 2))`` (in any of its written orders) -> ``nn.GELU()``."""

        def erf_part(name):  # 1 + erf(x / sqrt2) -> x's name
            add = self._producer(name, "Add")
            if add is None or (sc := self._split_const(add)) is None or not _close(sc[1], 1.0):
                return None
            erf = self._producer(sc[0], "Erf")
            scaled = erf and self._producer(erf.input[0], ("Div", "Mul"))
            if scaled is None or (sc2 := self._split_const(scaled)) is None:
                return None
            want = _SQRT2 if scaled.op_type == "Div" else 1.0 / _SQRT2
            if scaled.op_type == "Div" and scaled.input[0] != sc2[0]:
                return None
            return sc2[0] if _close(sc2[1], want, 1e-5) else None

        def half_of(name):  # 0.5 * x -> x's name
            mul = self._producer(name, "Mul")
            sc = mul and self._split_const(mul)
            return sc[0] if sc and _close(sc[1], 0.5) else None

        x = None
        sc = self._split_const(node)
        if sc is not None and _close(sc[1], 0.5):  # (x * (1 + erf)) * 0.5
            inner = self._producer(sc[0], "Mul")
            if inner is not None:
                for i in (0, 1):
                    if erf_part(inner.input[i]) == inner.input[1 - i]:
                        x = inner.input[1 - i]
        if x is None and sc is None:  # (0.5 * x) * (1 + erf)
            for i in (0, 1):
                h = half_of(node.input[i])
                if h is not None and erf_part(node.input[1 - i]) == h:
                    x = h
        if x is None:
            return False
        self.set(node, self.emit_module(node, nn.GELU(), self.values[x]))
        return True

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
            ax_c, st_c = self.opt_const(node, 3, "axes"), self.opt_const(node, 4, "steps")
            axes = ax_c.reshape(-1).tolist() if ax_c is not None else list(range(len(starts)))
            steps = st_c.reshape(-1).tolist() if st_c is not None else [1] * len(starts)
        index: list[slice] = [slice(None)] * rank
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax = int(ax) + rank if int(ax) < 0 else int(ax)
            size = x.tensor.shape[ax]
            if int(sp) <= 0:
                self.refuse(node, f"step {sp} (a reversal)")
            st, en = int(st), int(en)
            st = max(0, min(size, st + size if st < 0 else st))
            en = max(0, min(size, en + size if en < 0 else en))
            index[ax] = slice(st, en, None if int(sp) == 1 else int(sp))
        while index and index[-1] == slice(None):
            index.pop()
        self.set(node, self.emit_function(operator.getitem, [x, tuple(index)]) if index else x)

    def op_Split(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        size = x.tensor.shape[axis]
        if "split" in a:
            sizes = [int(s) for s in a["split"]]
        elif self.inp(node, 1) is not None:
            sizes = [int(s) for s in self.need_const(node, 1, "split sizes").reshape(-1).tolist()]
        else:
            n = int(a.get("num_outputs", len(node.output)))
            chunk = -(-size // n)
            sizes = [min(chunk, size - i * chunk) for i in range(n)]
        if sum(sizes) != size or len(sizes) != len(node.output):
            self.refuse(node, f"split sizes {sizes} of an axis of length {size} into {len(node.output)} outputs")
        start = 0
        for i, s in enumerate(sizes):
            index = tuple([slice(None)] * axis + [slice(start, start + s)])
            self.set(node, self.emit_function(operator.getitem, [x, index]), i)
            start += s

    def op_DepthToSpace(self, node, a):
        """CRD -> ``nn.PixelShuffle``; DCR (the default) -> the spec's reshape / transpose / reshape."""
        x = self.inp(node, 0)
        bs, mode = int(a["blocksize"]), a.get("mode", "DCR")
        _, c, h, w = x.tensor.shape
        if mode == "CRD":
            self._act(node, nn.PixelShuffle(bs))
            return
        t = self.emit_method("reshape", x, (-1, bs, bs, c // (bs * bs), h, w))
        t = self.emit_method("permute", t, (0, 3, 4, 1, 5, 2))
        self.set(node, self.emit_method("reshape", t, (-1, c // (bs * bs), h * bs, w * bs)))

    def op_SpaceToDepth(self, node, a):
        x = self.inp(node, 0)
        bs = int(a["blocksize"])
        _, c, h, w = x.tensor.shape
        t = self.emit_method("reshape", x, (-1, c, h // bs, bs, w // bs, bs))
        t = self.emit_method("permute", t, (0, 3, 5, 1, 2, 4))
        self.set(node, self.emit_method("reshape", t, (-1, c * bs * bs, h // bs, w // bs)))

    def op_Concat(self, node, a):
        parts = [self.inp(node, i) for i in range(len(node.input))]
        axis = int(a["axis"])
        self.set(node, self.emit_function(torch.cat, [parts], {"dim": axis}, hint=node.output[0]))

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
        resolved = list(torch.empty(in_shape, device="meta").reshape(target).shape)
        if x.is_const:
            self.set(node, _Value(const=x.const.reshape(resolved)))
            return
        if self._fuse_group_norm(node, x, resolved):
            return
        per_sample = math.prod(in_shape[1:])
        if len(resolved) >= 1 and resolved[0] == in_shape[0] and math.prod(resolved[1:]) == per_sample:
            if len(resolved) == 2 and len(in_shape) > 2:
                self.set(node, self.emit_module(node, nn.Flatten(1, -1), x))
            else:
                self.set(node, self.emit_method("reshape", x, (-1, *resolved[1:])))
        else:  # mixes the batch dimension: valid at batch size 1 only
            self.set(node, self.emit_method("reshape", x, tuple(resolved)))

    def op_ReduceMean(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        if a.get("axes") is None and self.inp(node, 1) is None and int(a.get("noop_with_empty_axes", 0)):
            self.set(node, x)
            return
        if self.inp(node, 1) is not None:
            self.need_const(node, 1, "axes")
        axes = self._reduce_axes(node, rank)
        self.set(node, self.emit_method("mean", x, (axes, bool(a.get("keepdims", 1)))))

    def op_Dropout(self, node, a):
        self._only_first_output(node)
        x = self.inp(node, 0)
        ratio = a.get("ratio", 0.5)
        r = self.inp(node, 1)
        if r is not None and r.is_const:
            ratio = float(r.const)
        self.set(node, self.emit_module(node, nn.Dropout(p=float(ratio)), x))

    # -- convolutions and pools ---------------------------------------------------
    @staticmethod
    def _pads(a, spatial: int, in_sizes, kernel, strides, dilations):
        auto = a.get("auto_pad", "NOTSET")
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

    def _spatial(self, node, w: torch.Tensor) -> int:
        spatial = w.dim() - 2
        if spatial not in (1, 2, 3):
            self.refuse(node, f"{spatial}-d convolution")
        return spatial

    def op_Conv(self, node, a):
        x = self.inp(node, 0)
        w = self.need_const(node, 1, "weight")
        b = self.opt_const(node, 2, "bias")
        spatial = self._spatial(node, w)
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        groups = int(a.get("group", 1))
        begin, end = self._pads(a, spatial, x.tensor.shape[2:], kernel, strides, dil)
        conv_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial]
        out_ch, in_per_group = w.shape[0], w.shape[1]
        padding = begin if begin == end else [0] * spatial
        conv = conv_cls(in_per_group * groups, out_ch, kernel, stride=strides, padding=padding,
                        dilation=dil, groups=groups, bias=b is not None, device="meta")
        conv.weight = _param(w)
        if b is not None:
            conv.bias = _param(b)
        if begin != end:  # asymmetric zero padding: an explicit pad module first
            pad_cls = {1: nn.ConstantPad1d, 2: nn.ConstantPad2d, 3: nn.ConstantPad3d}[spatial]
            torch_pad = []
            for lo, hi in zip(reversed(begin), reversed(end)):
                torch_pad += [lo, hi]
            x = self.emit_module(node, pad_cls(tuple(torch_pad), 0.0), x)
        self.set(node, self.emit_module(node, conv, x))

    def op_ConvTranspose(self, node, a):
        """ONNX pads (b, e) and output_padding op -> torch padding b, output_padding op + b - e.

        Both crop the full transposed convolution (length ``s (n - 1) + d (k - 1) + 1``,
        extended by ``op``) by ``b`` at the start.  Where that output_padding is
        outside ``[0, max(stride, dilation))``, the layer pads less and a slice
        crops the rest.
        """
        x = self.inp(node, 0)
        w = self.need_const(node, 1, "weight")
        b = self.opt_const(node, 2, "bias")
        spatial = self._spatial(node, w)
        groups = int(a.get("group", 1))
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        out_pad = list(a.get("output_padding", [0] * spatial))
        in_sizes = list(x.tensor.shape[2:])
        full = [s * (n - 1) + d * (k - 1) + 1 for n, s, d, k in zip(in_sizes, strides, dil, kernel)]
        auto = a.get("auto_pad", "NOTSET")
        target = a.get("output_shape")
        if target is None and auto in ("SAME_UPPER", "SAME_LOWER"):
            target = [n * s for n, s in zip(in_sizes, strides)]
        if target is not None:
            target = list(target)[-spatial:]
            total = [f + op - t for f, op, t in zip(full, out_pad, target)]
            if any(t < 0 for t in total):
                self.refuse(node, f"output_shape {target} is larger than the transposed convolution's {full}")
            upper = auto == "SAME_UPPER"
            begin = [t // 2 if upper else t - t // 2 for t in total]
            end = [t - t // 2 if upper else t // 2 for t in total]
        elif auto == "VALID":
            begin, end = [0] * spatial, [0] * spatial
        else:
            pads = list(a.get("pads", [0] * (2 * spatial)))
            begin, end = pads[:spatial], pads[spatial:]
        torch_op = [op + lo - hi for op, lo, hi in zip(out_pad, begin, end)]
        if all(0 <= q < max(s, d) for q, s, d in zip(torch_op, strides, dil)):
            padding, crop = begin, None
        else:  # pad less in the layer, then crop: full indices [b, full + op - e) of [p, full + q - p)
            padding = [min(lo, max(hi - op, 0)) for lo, hi, op in zip(begin, end, out_pad)]
            torch_op = [max(op - hi + p, 0) for op, hi, p in zip(out_pad, end, padding)]
            out = [f + op - lo - hi for f, op, lo, hi in zip(full, out_pad, begin, end)]
            crop = [slice(lo - p, lo - p + n) for lo, p, n in zip(begin, padding, out)]
        cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial]
        conv = cls(w.shape[0], w.shape[1] * groups, kernel, stride=strides, padding=padding,
                   output_padding=torch_op, groups=groups, bias=b is not None, dilation=dil, device="meta")
        conv.weight = _param(w)
        if b is not None:
            conv.bias = _param(b)
        y = self.emit_module(node, conv, x)
        if crop is not None:
            y = self.emit_function(operator.getitem, [y, (slice(None), slice(None), *crop)])
        self.set(node, y)

    def _pool(self, node, a, kind: str):
        self._only_first_output(node)
        x = self.inp(node, 0)
        kernel = list(a["kernel_shape"])
        spatial = len(kernel)
        if spatial not in (1, 2, 3):
            self.refuse(node, f"{spatial}-d pooling")
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        begin, end = self._pads(a, spatial, x.tensor.shape[2:], kernel, strides, dil)
        ceil = bool(a.get("ceil_mode", 0))
        if begin != end:
            self.refuse(node, f"asymmetric padding {begin} / {end} has no PyTorch pooling layer")
        if kind == "max":
            cls = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial]
            mod = cls(kernel, stride=strides, padding=begin, dilation=dil, ceil_mode=ceil)
        else:
            if any(d != 1 for d in dil):
                self.refuse(node, f"dilation {dil}")
            cls = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[spatial]
            mod = cls(kernel, stride=strides, padding=begin, ceil_mode=ceil,
                      count_include_pad=bool(a.get("count_include_pad", 0)))
        self.set(node, self.emit_module(node, mod, x))

    def op_MaxPool(self, node, a):
        if int(a.get("storage_order", 0)) != 0 and len(node.output) > 1:
            self.refuse(node, "storage_order")
        self._pool(node, a, "max")

    def op_AveragePool(self, node, a):
        self._pool(node, a, "avg")

    def _global(self, node, kind):
        x = self.inp(node, 0)
        spatial = x.tensor.dim() - 2
        if spatial not in (1, 2, 3):
            self.refuse(node, f"a rank-{x.tensor.dim()} input")
        if kind == "avg":
            mod = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[spatial](1)
        else:
            mod = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}[spatial](1)
        self.set(node, self.emit_module(node, mod, x))

    def op_GlobalAveragePool(self, node, a):
        self._global(node, "avg")

    def op_GlobalMaxPool(self, node, a):
        self._global(node, "max")

    # -- linear layers ------------------------------------------------------------
    def _linear(self, node, x: _Value, weight: torch.Tensor, bias: torch.Tensor | None) -> _Value:
        lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        lin.weight = _param(weight)
        if bias is not None:
            lin.bias = _param(bias)
        return self.emit_module(node, lin, x)

    def op_Gemm(self, node, a):
        x = self.inp(node, 0)
        if x.is_const:
            self.refuse(node, "a constant A input (constant @ activation)")
        if int(a.get("transA", 0)):
            self.refuse(node, "transA=1")
        if x.tensor.dim() != 2:
            self.refuse(node, f"an input of rank {x.tensor.dim()}")
        B = self.need_const(node, 1, "B matrix").float()
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        weight = alpha * (B if int(a.get("transB", 0)) else B.t())  # (out, in)
        bias = None
        if self.inp(node, 2) is not None:
            C = self.need_const(node, 2, "C bias").float()
            if C.dim() == 2 and C.shape[0] != 1:
                self.refuse(node, f"C of shape {list(C.shape)} is not a bias")
            bias = beta * torch.broadcast_to(C.reshape(-1) if C.dim() == 2 else C, (weight.shape[0],)).clone()
        self.set(node, self._linear(node, x, weight.contiguous(), bias))

    def op_MatMul(self, node, a):
        x = self.inp(node, 0)
        W = self.inp(node, 1)
        if x.is_const and W.is_const:
            self.set(node, _Value(const=torch.matmul(x.const, W.const)))
            return
        if x.is_const or W.const.dim() != 2:
            self.refuse(node, "only activation @ constant 2-d weight is supported")
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

    # -- activations ----------------------------------------------------------------
    def _act(self, node, module: nn.Module):
        self.set(node, self.emit_module(node, module, self.inp(node, 0)))

    def op_Relu(self, node, a):
        self._act(node, nn.ReLU())

    def op_Sigmoid(self, node, a):
        self._act(node, nn.Sigmoid())

    def op_Tanh(self, node, a):
        self._act(node, nn.Tanh())

    def op_LeakyRelu(self, node, a):
        self._act(node, nn.LeakyReLU(float(a.get("alpha", 0.01))))

    def op_Elu(self, node, a):
        self._act(node, nn.ELU(float(a.get("alpha", 1.0))))

    def op_HardSwish(self, node, a):
        self._act(node, nn.Hardswish())

    def op_Mish(self, node, a):
        self._act(node, nn.Mish())

    def op_Softplus(self, node, a):
        self._act(node, nn.Softplus())

    def op_Gelu(self, node, a):
        approx = a.get("approximate", "none")
        if approx not in ("none", "tanh"):
            self.refuse(node, f"approximate={approx!r}")
        self._act(node, nn.GELU(approximate=approx))

    def op_HardSigmoid(self, node, a):
        """``max(0, min(1, alpha x + beta))``: ``nn.Hardsigmoid`` for PyTorch's (1/6, 1/2), else written out."""
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        x = self.inp(node, 0)
        if abs(alpha - 1 / 6) <= 1e-6 and abs(beta - 0.5) <= 1e-6:
            self._act(node, nn.Hardsigmoid())
            return
        y = self.emit_function(torch.add, [self.emit_function(torch.mul, [x, alpha]), beta])
        self.set(node, self.emit_function(torch.clamp, [y], {"min": 0.0, "max": 1.0}))

    def op_PRelu(self, node, a):
        """Per-channel (or single) slope -> ``nn.PReLU`` with the learned slopes; else ``where(x >= 0, x, slope x)``."""
        x = self.inp(node, 0)
        slope = self.need_const(node, 1, "slope").float()
        rank = x.tensor.dim()
        if slope.dim() > rank or torch.broadcast_shapes(slope.shape, x.tensor.shape) != x.tensor.shape:
            self.refuse(node, f"slope of shape {list(slope.shape)} for an input of shape {list(x.tensor.shape)}")
        padded = slope.reshape((1,) * (rank - slope.dim()) + tuple(slope.shape))
        channel_only = rank >= 2 and all(d == 1 for i, d in enumerate(padded.shape) if i != 1)
        if slope.numel() == 1 or (channel_only and padded.shape[1] == x.tensor.shape[1]):
            mod = nn.PReLU(slope.numel(), device="meta")
            mod.weight = _param(slope.reshape(-1))
            self._act(node, mod)
            return
        neg = self.emit_function(torch.mul, [x, _Value(const=slope)], hint=node.output[0])
        pos = self.emit_function(torch.ge, [x, 0.0])
        self.set(node, self.emit_function(torch.where, [pos, x, neg]))

    def op_Clip(self, node, a):
        x = self.inp(node, 0)
        lo, hi = a.get("min"), a.get("max")
        if self.opset >= 11 or len(node.input) > 1:
            lo_c, hi_c = self.opt_const(node, 1, "min"), self.opt_const(node, 2, "max")
            lo = None if lo_c is None else float(lo_c)
            hi = None if hi_c is None else float(hi_c)
        lo = None if lo is None or lo == -math.inf else float(lo)
        hi = None if hi is None or hi == math.inf else float(hi)
        if lo is None and hi is None:
            self.set(node, x)
        elif lo == 0.0 and hi is None:
            self._act(node, nn.ReLU())
        elif lo == 0.0 and hi == 6.0:
            self._act(node, nn.ReLU6())
        elif lo is not None and hi is not None:
            self._act(node, nn.Hardtanh(lo, hi))
        else:
            self.set(node, self.emit_function(torch.clamp, [x], {"min": lo, "max": hi}))

    def op_Softmax(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + rank if axis < 0 else axis
        if self.opset < 13 and axis != rank - 1 and any(d != 1 for d in x.tensor.shape[axis + 1:]):
            self.refuse(node, f"softmax (opset {self.opset}) over the flattened axes {axis}.. is not a "
                              "single-dimension softmax")
        self._act(node, nn.Softmax(dim=axis))

    def op_LogSoftmax(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + rank if axis < 0 else axis
        if self.opset < 13 and axis != rank - 1 and any(d != 1 for d in x.tensor.shape[axis + 1:]):
            self.refuse(node, f"log-softmax (opset {self.opset}) over the flattened axes {axis}..")
        self._act(node, nn.LogSoftmax(dim=axis))

    # -- normalizations -------------------------------------------------------------
    def op_BatchNormalization(self, node, a):
        self._only_first_output(node)
        if int(a.get("training_mode", 0)):
            self.refuse(node, "training_mode=1")
        x = self.inp(node, 0)
        scale, shift = self.need_const(node, 1, "scale"), self.need_const(node, 2, "bias")
        mean, var = self.need_const(node, 3, "mean"), self.need_const(node, 4, "variance")
        rank = x.tensor.dim()
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
        if cls is None:
            self.refuse(node, f"a rank-{rank} input")
        bn = cls(scale.numel(), eps=float(a.get("epsilon", 1e-5)), momentum=1.0 - float(a.get("momentum", 0.9)),
                 device="meta")
        bn.weight, bn.bias = _param(scale), _param(shift)
        bn.running_mean = mean.detach().float().clone()
        bn.running_var = var.detach().float().clone()
        bn.num_batches_tracked = torch.tensor(0, dtype=torch.long)
        self.set(node, self.emit_module(node, bn, x))

    def op_LayerNormalization(self, node, a):
        self._only_first_output(node)
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", -1))
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            self.refuse(node, "normalization over the batch axis")
        shape = tuple(x.tensor.shape[axis:])
        scale, bias = self.need_const(node, 1, "scale"), self.opt_const(node, 2, "bias")
        norm = _Norm("layer", x, float(a.get("epsilon", 1e-5)), shape,
                     torch.broadcast_to(scale.float(), shape).clone(),
                     None if bias is None else torch.broadcast_to(bias.float(), shape).clone())
        self._emit_norm(node, norm)

    def op_GroupNormalization(self, node, a):
        """Opset 18 scales per group (repeated over its channels), opset 21 per channel."""
        x = self.inp(node, 0)
        groups = int(a["num_groups"])
        channels = x.tensor.shape[1]
        scale, bias = self.need_const(node, 1, "scale").float(), self.need_const(node, 2, "bias").float()
        if channels % groups:
            self.refuse(node, f"{channels} channels in {groups} groups")
        if scale.numel() == groups and groups != channels:
            scale = scale.repeat_interleave(channels // groups)
            bias = bias.repeat_interleave(channels // groups)
        self._emit_norm(node, _Norm("group", x, float(a.get("epsilon", 1e-5)), (groups, channels),
                                    scale.reshape(-1).clone(), bias.reshape(-1).clone()))

    def op_InstanceNormalization(self, node, a):
        x = self.inp(node, 0)
        scale, bias = self.need_const(node, 1, "scale"), self.need_const(node, 2, "bias")
        spatial = x.tensor.dim() - 2
        if spatial not in (1, 2, 3):
            self.refuse(node, f"a rank-{x.tensor.dim()} input")
        cls = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial]
        mod = cls(scale.numel(), eps=float(a.get("epsilon", 1e-5)), affine=True, device="meta")
        mod.weight, mod.bias = _param(scale), _param(bias)
        self._act(node, mod)

    def op_LRN(self, node, a):
        self._act(node, nn.LocalResponseNorm(int(a["size"]), alpha=float(a.get("alpha", 1e-4)),
                                             beta=float(a.get("beta", 0.75)), k=float(a.get("bias", 1.0))))

    # -- padding and resampling -----------------------------------------------------
    def op_Pad(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        mode = a.get("mode", "constant")
        if mode != "constant":
            self.refuse(node, f"mode {mode!r} is not supported: only constant padding is a fixed linear "
                              "map with a signed-graph rule (write the padding as zeros or a constant)")
        if self.opset < 11:
            pads, value = list(a["pads"]), float(a.get("value", 0.0))
            axes = list(range(rank))
        else:
            pads = [int(p) for p in self.need_const(node, 1, "pads").reshape(-1).tolist()]
            v = self.opt_const(node, 2, "constant value")
            value = 0.0 if v is None else float(v.reshape(-1)[0])
            ax = self.opt_const(node, 3, "axes")
            axes = list(range(rank)) if ax is None else [int(i) + rank if int(i) < 0 else int(i) for i in ax.tolist()]
        n = len(axes)
        per_axis = {ax: (pads[i], pads[i + n]) for i, ax in enumerate(axes)}
        first = min((ax for ax, p in per_axis.items() if p != (0, 0)), default=None)
        if first is None:
            self.set(node, x)
            return
        torch_pad: list[int] = []
        for ax in range(rank - 1, first - 1, -1):  # F.pad lists the last axis first, down to the first padded one
            torch_pad += list(per_axis.get(ax, (0, 0)))
        self.set(node, self.emit_function(F.pad, [x, torch_pad], {"mode": "constant", "value": value}))

    def op_Resize(self, node, a):
        x = self.inp(node, 0)
        if self.opset < 11:
            scales, sizes = self.need_const(node, 1, "scales"), None
        else:
            scales, sizes = self.opt_const(node, 2, "scales"), self.opt_const(node, 3, "sizes")
            if scales is not None and scales.numel() == 0:
                scales = None
        default_ctm = "asymmetric" if self.opset < 11 else "half_pixel"
        self._resize(node, x, a, scales, sizes, a.get("coordinate_transformation_mode", default_ctm),
                     a.get("nearest_mode", "floor" if self.opset < 11 else "round_prefer_floor"))

    def op_Upsample(self, node, a):
        x = self.inp(node, 0)
        scales = self.need_const(node, 1, "scales") if self.inp(node, 1) is not None else torch.tensor(a["scales"])
        self._resize(node, x, a, scales, None, "asymmetric", "floor")

    def _resize(self, node, x: _Value, a, scales, sizes, ctm: str, nearest_mode: str):
        """ONNX resize -> ``F.interpolate`` with the mode and coordinate mapping it computes.

        Nearest: the ONNX source index of every output position (coordinate
        transformation + rounding rule) is compared with what ``nearest`` and
        ``nearest-exact`` pick, and the one that agrees everywhere is used;
        where neither does (rounding of exact ties), the rows and columns are
        gathered with ``index_select`` of those source indices, which is exact.
        Linear: ``align_corners`` -> ``align_corners=True``; ``half_pixel`` and
        ``pytorch_half_pixel`` -> ``align_corners=False`` (PyTorch's own mapping);
        the other mappings (``asymmetric``: TensorFlow's and ``Upsample``'s) are
        ``F.linear`` by each axis's interpolation matrix (non-negative weights
        summing to 1), which is exact.
        """
        mode = a.get("mode", "nearest")
        rank = x.tensor.dim()
        spatial = rank - 2
        in_sizes = list(x.tensor.shape[2:])
        axes = a.get("axes")
        if axes is not None and sorted(int(v) % rank for v in axes) != list(range(2, rank)):
            self.refuse(node, f"resizing axes {list(axes)}; only the spatial axes can be resized")
        if a.get("keep_aspect_ratio_policy", "stretch") != "stretch" and sizes is not None:
            self.refuse(node, f"keep_aspect_ratio_policy={a['keep_aspect_ratio_policy']!r}")
        if int(a.get("antialias", 0)):
            self.refuse(node, "antialias=1 (a low-pass filter before resampling) has no F.interpolate equivalent")
        if spatial not in (1, 2, 3):
            self.refuse(node, f"resizing a rank-{rank} tensor")
        if sizes is not None:
            out = [int(v) for v in sizes.reshape(-1).tolist()][-spatial:]
            if sizes.numel() == rank and [int(v) for v in sizes.tolist()[:2]] != list(x.tensor.shape[:2]) \
                    and int(sizes[1]) != x.tensor.shape[1]:
                self.refuse(node, "resizing the channel axis")
            sc = [o / n for o, n in zip(out, in_sizes)]
            scale_arg = None
        else:
            vals = [float(v) for v in scales.reshape(-1).tolist()]
            if len(vals) == rank and (vals[0] != 1.0 or vals[1] != 1.0):
                self.refuse(node, f"scales {vals} resize the batch or channel axis")
            sc = vals[-spatial:]
            out = [int(math.floor(n * s)) for n, s in zip(in_sizes, sc)]
            scale_arg = sc
        kw = {"scale_factor": scale_arg} if scale_arg is not None else {"size": out}
        if mode == "nearest":
            want = [self._onnx_nearest(n, o, s, ctm, nearest_mode, node) for n, o, s in zip(in_sizes, out, sc)]
            torch_mode = self._nearest_mode(in_sizes, kw, want)
            if torch_mode is not None:
                self.set(node, self.emit_function(F.interpolate, [x], {**kw, "mode": torch_mode}))
                return
            for ax, (n, index) in enumerate(zip(in_sizes, want)):  # ties PyTorch rounds otherwise: gather rows
                if not np.array_equal(index, np.arange(n)):
                    x = self.emit_function(torch.index_select, [x, 2 + ax, _Value(const=torch.from_numpy(index))],
                                           hint=f"{node.output[0]}_index{ax}")
            self.set(node, x)
            return
        if mode != "linear":
            self.refuse(node, f"mode {mode!r} is not supported (nearest and linear are)")
        if ctm == "align_corners":
            kw, align = {"size": out}, True
        elif ctm == "half_pixel" or ctm == "pytorch_half_pixel" and all(o > 1 for o in out):
            align = False
        else:  # a mapping F.interpolate does not have: the interpolation matrix of each axis
            for ax, (n, o, s_) in enumerate(zip(in_sizes, out, sc)):
                weights = torch.from_numpy(self._linear_weights(n, o, s_, ctm, node)).to(x.tensor.dtype)
                x = self._along_axis(x, 2 + ax, weights, f"{node.output[0]}_interp{ax}")
            self.set(node, x)
            return
        torch_mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]
        self.set(node, self.emit_function(F.interpolate, [x], {**kw, "mode": torch_mode, "align_corners": align}))

    def _along_axis(self, x: _Value, axis: int, weights: torch.Tensor, hint: str) -> _Value:
        """``F.linear`` of the (out, in) matrix ``weights`` over ``axis`` (moved last and back)."""
        last = x.tensor.dim() - 1
        if axis != last:
            x = self.emit_function(torch.movedim, [x, axis, last])
        y = self.emit_function(F.linear, [x, _Value(const=weights)], hint=hint)
        return self.emit_function(torch.movedim, [y, last, axis]) if axis != last else y

    def _linear_weights(self, n: int, o: int, s: float, ctm: str, node) -> np.ndarray:
        """(o, n) matrix of ONNX linear resampling along one axis: the source coordinate,
        clamped to [0, n - 1] (the reference's edge padding), splits 1 between its two neighbours."""
        src = np.clip(self._onnx_source(n, o, s, ctm, node), 0, n - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        frac = src - lo
        w = np.zeros((o, n))
        np.add.at(w, (np.arange(o), lo), 1 - frac)
        np.add.at(w, (np.arange(o), hi), frac)
        return w

    def _nearest_mode(self, in_sizes, kw, want) -> str | None:
        """The F.interpolate mode that picks the ONNX source pixels ``want`` on every axis, if any."""
        for torch_mode in ("nearest", "nearest-exact"):
            got = self._torch_nearest(in_sizes, kw, torch_mode)
            if got is not None and all(np.array_equal(g, w) for g, w in zip(got, want)):
                return torch_mode
        return None

    def _onnx_source(self, n: int, o: int, s: float, ctm: str, node) -> np.ndarray:
        """Source coordinate of each output position along an axis of length n -> o (scale s), per ONNX Resize."""
        i = np.arange(o, dtype=np.float64)
        if ctm == "half_pixel":
            src = (i + 0.5) / s - 0.5
        elif ctm == "pytorch_half_pixel":
            src = (i + 0.5) / s - 0.5 if o > 1 else np.zeros(o)
        elif ctm == "align_corners":
            src = i * (n - 1) / (o - 1) if o > 1 else np.zeros(o)
        elif ctm == "asymmetric":
            src = i / s
        elif ctm == "tf_half_pixel_for_nn":
            src = (i + 0.5) / s
        elif ctm == "half_pixel_symmetric":  # half_pixel about the centre of the rounded output
            src = n / 2 * (1 - o / (s * n)) + (i + 0.5) / s - 0.5
        else:
            self.refuse(node, f"coordinate_transformation_mode {ctm!r}")
        return src

    def _onnx_nearest(self, n: int, o: int, s: float, ctm: str, nearest_mode: str, node) -> np.ndarray:
        """Source index of each output position, from the ONNX Resize definition."""
        src = self._onnx_source(n, o, s, ctm, node)
        frac = src - np.floor(src)
        if nearest_mode == "round_prefer_floor":
            idx = np.where(frac == 0.5, np.floor(src), np.round(src))
        elif nearest_mode == "round_prefer_ceil":
            idx = np.where(frac == 0.5, np.ceil(src), np.round(src))
        elif nearest_mode == "floor":
            idx = np.floor(src)
        elif nearest_mode == "ceil":
            idx = np.ceil(src)
        else:
            self.refuse(node, f"nearest_mode {nearest_mode!r}")
        return np.clip(idx, 0, n - 1).astype(np.int64)

    @staticmethod
    def _torch_nearest(in_sizes, kw, mode) -> list[np.ndarray] | None:
        """The source index per axis that F.interpolate(mode) picks, read off an index ramp."""
        picked = []
        for ax, n in enumerate(in_sizes):
            shape = [1, 1] + [1] * len(in_sizes)
            shape[2 + ax] = n
            ramp = torch.arange(n, dtype=torch.float64).reshape(shape)
            try:
                y = F.interpolate(ramp, mode=mode, **kw)
            except (RuntimeError, ValueError):
                return None
            index = [0, 0] + [0] * len(in_sizes)
            index[2 + ax] = slice(None)
            picked.append(y[tuple(index)].round().long().numpy())
        return picked


def onnx_to_module(model, input_shape=None) -> fx.GraphModule:
    """Convert a loaded ``onnx.ModelProto`` into a :class:`torch.fx.GraphModule` (eval mode).

    Parameters
    ----------
    model : onnx.ModelProto
        The ONNX model.
    input_shape : sequence of int, or a sequence / dict of them, optional
        Input shape without the batch dimension; for a graph with several
        inputs one shape per input, in the graph's input order or as
        ``{input name: shape}`` (``None`` entries keep the file's static
        shape).  Default: the graph's static shapes.

    Returns
    -------
    torch.fx.GraphModule
        ``forward`` takes one tensor per ONNX input (in the graph's order) and
        returns one tensor, or a tuple when the graph has several outputs.
        Attributes: ``default_input_shape`` (a tuple of ints for one input, a
        tuple of such tuples for several), ``default_input_shapes`` (always a
        tuple of tuples), ``input_names`` and ``onnx_node_names`` (module name
        -> ONNX node name).

    Raises
    ------
    UnsupportedLayerError
        For a node without a signed graph (recurrent cell, product of two
        activations, quantized or control-flow op) or an op outside
        :data:`SUPPORTED_OPS`, naming the node, the op and the reason.
    DeepglassError
        For an empty graph, a graph without inputs, or shapes that do not fit.
    """
    return _Builder(model, input_shape).build()


def load_onnx(path: str | os.PathLike, input_shape=None) -> fx.GraphModule:
    """Read an ONNX file and convert it with :func:`onnx_to_module` (same ``input_shape`` forms)."""
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
    if not model.graph.node and not model.graph.output:
        raise DeepglassError(f"ONNX file {path} holds no graph (an empty or truncated file)")
    return onnx_to_module(model, input_shape)

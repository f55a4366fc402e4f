"""The ONNX converter's state: inputs and their shapes, ONNX values, fx emission
(modules, functions, methods, constants) and the conversion loop; the op
handlers are mixins (:mod:`deepglass.zoo.onnx_shape_ops`, ``onnx_arith_ops``,
``onnx_layer_ops``, ``onnx_resize``) assembled in :mod:`deepglass.zoo.onnx_import`.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
from torch import fx, nn

from ..errors import DeepglassError, first_line
from ..graph.fixed_weights import FIXED_PREFIX
from .onnx_batch import PerSample
from .onnx_outputs import field_name, outputs_tuple
from .onnx_refusals import _Refusals
from .onnx_values import (_Norm, _Value, _attrs, _drop_unused, _label, _meta, _meta_call,
                          _safe, _to_tensor, _widen)



def _declared(inp) -> str:
    """An ONNX input's declared shape, ``?`` for an open size: ``"?, 3, ?, ?"``."""
    return ", ".join(str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0
                     else (d.dim_param or "?") for d in inp.type.tensor_type.shape.dim)

class _BuilderBase(_Refusals):
    """One conversion: ONNX model in, :class:`torch.fx.GraphModule` out (:meth:`build`)."""

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
        # nodes a fusion matched forward already computed: id -> the value of their output (None: unread)
        self.replaced: dict[int, _Value | None] = {}
        self.batch_one_only = False   # a reshape folds the batch in (see op_Reshape)
        real = [i for i in g.input if i.name not in self.values]
        # inputs no node reads (a converter's leftovers: tf2onnx's from_function
        # keeps a Normalization layer's constants as inputs) feed nothing
        unread = [i.name for i in real if i.name not in self.consumers
                  and i.name not in self.graph_outputs]
        if unread and len(unread) < len(real):
            warnings.warn(f"the ONNX graph declares input(s) no node reads ({', '.join(unread)})"
                          "; left out of the module's inputs", UserWarning, stacklevel=4)
            real = [i for i in real if i.name not in unread]
        if not real:
            raise DeepglassError(
                "the ONNX graph has no input tensor (it computes a constant): the signed graph needs at least one input"
            )
        self._refuse_undefined(real)
        self.input_names = [i.name for i in real]
        self.input_shapes = self._input_shapes(real, input_shapes)
        # inputs read at another size than the file fixes (its constants, a
        # Resize's sizes or a Reshape's shape, may hold the file's size)
        self.resized = [(i.name, fixed) for i, s in zip(real, self.input_shapes)
                        if (fixed := self._static_shape(i)) is not None and fixed != tuple(s)]
        # shapes the user gave for inputs whose sizes the file leaves open: a
        # node that then fails may be one the shape does not fit
        self.open_given = [(i.name, _declared(i), s) for i, s in zip(real, self.input_shapes)
                           if input_shapes is not None and self._static_shape(i) is None]
        # a file written at a fixed batch B > 1 (an exporter given a dummy batch of
        # B): read at batch 1, its reshapes that write B as their first size are
        # read with the batch in its place (see op_Reshape)
        batches = {self._static_batch(i) for i in real}
        self.file_batch = batches.pop() if len(batches) == 1 else None
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
        """The input's dtype; float32 for any floating input (the module computes in float32)."""
        from onnx import TensorProto, helper

        elem = inp.type.tensor_type.elem_type
        if not elem or elem == TensorProto.BFLOAT16:
            return torch.float32
        return _widen(torch.from_numpy(np.zeros(0, dtype=helper.tensor_dtype_to_np_dtype(elem))).dtype)

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
    def _static_batch(inp) -> int | None:
        """The input's batch size where the file fixes it above 1, else None."""
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 1:
            return int(dims[0].dim_value)
        return None

    @staticmethod
    def _static_shape(inp) -> tuple[int, ...] | None:
        """The input's shape without the batch where the file fixes every size."""
        dims = inp.type.tensor_type.shape.dim
        if len(dims) < 2 or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims[1:]):
            return None
        return tuple(int(d.dim_value) for d in dims[1:])

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
        if len(static) == 1:
            return ()       # the batch axis alone: one number per sample (a timestep)
        if not static or any(s is None for s in static[1:]):
            shown = ["?" if s is None else str(s) for s in static]
            raise DeepglassError(
                f"the ONNX input {inp.name!r} has shape [{', '.join(shown)}]: pass input_shape (--input-shape) "
                "without the batch dimension"
            )
        return tuple(static[1:])

    # -- emission helpers -----------------------------------------------------
    def _name(self, node, kind: str) -> str:
        base = _safe(node.name) if node.name else f"{kind.lower()}_{len(self.names)}"
        name, i = base, 1
        while name in self.names or hasattr(self.root, name):
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        self.onnx_names[name] = node.name or node.output[0]
        return name

    def _const_node(self, t: torch.Tensor, hint: str, fixed: bool = False) -> fx.Node:
        """A buffer holding ``t``; ``fixed``: the weights of a fixed transform
        (a DFT's, an interpolation's), which null models keep
        (:mod:`deepglass.graph.fixed_weights`)."""
        prefix = FIXED_PREFIX if fixed else "const_"
        name, i = f"{prefix}{_safe(hint)}", 1
        while hasattr(self.root, name) or name in self.names:
            name, i = f"{prefix}{_safe(hint)}_{i}", i + 1
        self.names.add(name)
        self.root.register_buffer(name, t)
        return self.graph.get_attr(name)

    def _arg(self, v: _Value, hint: str, fixed: bool = False):
        return self._const_node(v.const, hint, fixed) if v.is_const else v.node

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

    def emit_function(self, fn: Callable, args: list, kwargs: dict | None = None, hint: str = "c",
                      fixed: bool = False) -> _Value:
        """Call ``fn`` on a mix of _Value and plain arguments (lists of _Value allowed).

        All-constant calls are folded on the CPU; otherwise the result's example
        is computed on the meta device and an fx ``call_function`` node emitted
        (its constants as buffers; ``fixed``: a fixed transform's weights).
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
                return self._arg(a, hint, fixed)
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
            self._convert(node)
        outs = []
        for o in self.model.graph.output:
            if o.name not in self.values:
                raise DeepglassError(f"ONNX graph output {o.name!r} is never computed")
            outs.append(self._arg(self.values[o.name], o.name))
        self.graph.output(outs[0] if len(outs) == 1 else self._outputs(outs))
        gm = fx.GraphModule(self.root, self.graph, class_name="OnnxModule")
        if gm.graph.eliminate_dead_code():  # the subgraphs a fusion replaced
            gm.recompile()
        _drop_unused(gm)
        names = {k: v for k, v in self.onnx_names.items() if hasattr(gm, k)}
        # an attribute (pickling keeps it) and in meta (GraphModule's deepcopy keeps that)
        gm.batch_one_only = gm.meta["batch_one_only"] = self.batch_one_only
        module = gm
        if self.batch_one_only:
            # right at the file's batch of 1 only: run sample by sample at any other
            module = PerSample(gm)
            names = {f"net.{k}": v for k, v in names.items()}
        module.onnx_node_names = names
        module.input_names = list(self.input_names)
        # one output returns a tensor, not a named tuple: its name, where the
        # file gives it one, names the graph's output (SignedGraph.outputs)
        (only,) = self.model.graph.output if len(self.model.graph.output) == 1 else (None,)
        module.onnx_output_name = gm.meta["onnx_output_name"] = (
            field_name(only.name, 0, ()) if only is not None
            and outputs_tuple([only.name]) is not None else None)
        module.default_input_shapes = tuple(tuple(s) for s in self.input_shapes)
        module.default_input_shape = (module.default_input_shapes[0] if len(self.input_shapes) == 1
                                      else module.default_input_shapes)
        return module.eval()

    def _convert(self, node) -> None:
        """Convert one ONNX node with its ``op_<op>`` handler (a subgraph's too)."""
        op = node.op_type
        if id(node) in self.replaced:
            if self.replaced[id(node)] is not None:
                self.set(node, self.replaced[id(node)])
            return
        try:
            getattr(self, f"op_{op}")(node, _attrs(node))
        except DeepglassError:
            raise
        except Exception as exc:
            hint = (f"; the file was written at a fixed batch of {self.file_batch}: export "
                    "it with a batch of 1 or a dynamic batch axis") if self.file_batch else ""
            if self.resized:
                name, fixed = self.resized[0]
                hint += (f"; the file fixes input {name!r} at {'x'.join(map(str, fixed))} "
                         "and may hold sizes computed for it (a Resize's sizes, a Reshape's "
                         f"shape): read it at that size (input_shape, --input-shape "
                         f"{','.join(map(str, fixed))}), or "
                         "export it with dynamic axes for its other sizes")
            elif self.open_given and not self.file_batch:
                hint += "".join(
                    f"; the input shape given ({','.join(map(str, shape))}) may not fit the "
                    f"network, which declares {name!r} as [{declared}]: check --input-shape"
                    for name, declared, shape in self.open_given[:1])
            raise DeepglassError(f"cannot convert ONNX node {_label(node)} ({op}): "
                                 f"{first_line(exc)}{hint}") from None

    def _outputs(self, outs: list):
        """Several graph outputs: a named tuple of the ONNX output names (a tuple
        still, and the signed graph's output names), each made a Python
        identifier where it is not one (``box.reg`` -> ``box_reg``); a plain
        tuple (outputs named by position) where all names are numbers."""
        cls = outputs_tuple(o.name for o in self.model.graph.output)
        return tuple(outs) if cls is None else self.graph.call_function(cls, tuple(outs))

    def _only_first_output(self, node):
        for extra in node.output[1:]:
            if extra and (extra in self.consumers or extra in self.graph_outputs):
                self.refuse(node, "only its first output is supported")

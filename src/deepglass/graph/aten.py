"""Capture by ``torch.export``: the network as core ATen ops (SPEC §1, §1b).

:func:`export_module` runs ``torch.export.export`` (non-strict) and lowers the
program to PyTorch's core ATen op set, keeping a few named activations
(PReLU, SiLU, hard-swish, hard-sigmoid, Mish) whole so that they are
recognised and reported by name.  Whatever module or function computes a layer
(``nn.BatchNorm2d``, ``F.batch_norm``, a library's fused norm + activation
module, an ONNX ``BatchNormalization`` rebuilt by :mod:`deepglass.zoo.onnx_import`)
arrives as the same op, so one table of rules serves every source.  Python
control flow on non-tensor arguments and on static shapes is resolved at
capture time.

:class:`AtenInterpreter` then runs the captured graph on a real sample (every
shape) and symbolically (node ids), with the values of :mod:`.trace`
(``Ref``, ``Pending``).  :data:`ATEN_OPS` maps each op to its rule; a new op
is one entry.

Layout: capture and the interpreter here; the rule table in :mod:`.aten_rules`
(:data:`ATEN_OPS`, :data:`STAT_OPS`), the rules by kind in :mod:`.aten_layers`
(linear-operator layers, pools, resampling) and :mod:`.aten_elementwise`
(normalizations, scalings, activations, re-indexings), their shared values in
:mod:`.aten_values` (:class:`Stat`).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx

from ..errors import DeepglassError, UnsupportedLayerError
from .aten_elementwise import _shape_rule
from .aten_layers import interpolation_matrices
from .aten_rules import ATEN_OPS, STAT_OPS, _inplace, _opname_packet, _rule
from .aten_values import Stat, _is_sym, _opname, aten
from .trace import Pending, Ref, _flatten, _ForwardError, _has_sym

__all__ = ["export_module", "AtenInterpreter", "ATEN_OPS", "STAT_OPS", "Stat", "ExportFailed",
           "interpolation_matrices", "KEEP_WHOLE"]

#: activations kept whole when lowering to core ATen (their decompositions
#: would hide their names: SiLU -> x * sigmoid(x), PReLU -> where(x > 0, ...))
KEEP_WHOLE = ("prelu", "silu", "hardswish", "hardsigmoid", "mish")


class ExportFailed(Exception):
    """``torch.export`` could not capture the model (the fx tracer may)."""


def export_module(model: torch.nn.Module, inputs: tuple, kwargs: dict | None = None,
                  core: bool = False):
    """Capture ``model(*inputs, **kwargs)`` as a graph of ATen ops.

    ``torch.export`` (non-strict) gives ATen ops at the level of PyTorch's
    layers (``conv2d``, ``batch_norm``, ``layer_norm``, ``linear``); when every
    op of the program has a rule in :data:`ATEN_OPS` that graph is used as it
    is, else the program is lowered to the core ATen op set first (keeping the
    named activations of :data:`KEEP_WHOLE`), where every library-specific op
    becomes the primitives the rules know.  Both give the same signed graph;
    the lowering costs about as much again as the capture.  ``core=True``
    always lowers.

    Returns the program's ``GraphModule`` (parameters as ``get_attr`` nodes,
    one placeholder per input of the flattened ``(args, kwargs)``) and how it
    was captured (``"torch.export"`` or ``"torch.export (core ATen)"``).
    Complexity: one traced forward pass, plus the decomposition pass where
    needed: ~0.3-5 s for ImageNet CNNs on 2 cores.

    Raises
    ------
    ExportFailed
        With the exporter's first message line.
    """
    try:
        ep = torch.export.export(model, tuple(inputs), kwargs=kwargs or None, strict=False)
        gm = ep.module()
        if not core and all(_rule(nd.target) is not None for nd in gm.graph.nodes
                            if nd.op == "call_function" and nd.target is not operator.getitem):
            return gm, "torch.export"
        table = torch.export.default_decompositions()
        for name in KEEP_WHOLE:
            table.pop(getattr(aten, name).default, None)
        return ep.run_decompositions(table).module(), "torch.export (core ATen)"
    except Exception as exc:  # the exporter raises many kinds of errors
        text = str(exc).strip()
        raise ExportFailed(text.splitlines()[0] if text else type(exc).__name__) from None


# ----------------------------------------------------------------------------------
class AtenInterpreter(torch.fx.Interpreter):
    """Runs a core-ATen ``GraphModule`` on real inputs and symbolically.

    ``sym[node]`` is the node's symbolic value: a ``Ref`` / ``Pending`` (or a
    tuple of them), or ``None`` for values that do not depend on the input
    (weights, shapes, constants).
    """

    def __init__(self, gm, builder, rules: dict):
        # values stay alive: a rule may read an earlier node's real value (batch 1)
        super().__init__(gm, garbage_collect_values=False)
        self.b = builder
        self.rules = rules
        self.sym: dict[torch.fx.Node, Any] = {}
        self.n_inputs = 0
        self.gated: list[str] = []

    def run_node(self, n):
        if n.op == "call_module":    # the exporter's input guards
            self.sym[n] = None
            return None
        try:
            real = super().run_node(n)
        except DeepglassError:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as exc:
            raise _ForwardError(str(exc)) from exc
        self.cur = real
        sym = self._symbolic(n, real)
        # a pending value used more than once gets its node block now, so that
        # every user sees the same nodes
        if isinstance(sym, Pending) and len(n.users) > 1:
            sym = self.b.materialize(sym)
        self.sym[n] = sym
        if n.op == "call_function" and _inplace(n.target) and n.args \
                and isinstance(n.args[0], torch.fx.Node):
            # the op mutated its first argument: later readers of it see the result
            if isinstance(sym, Pending):
                sym = self.sym[n] = self.b.materialize(sym)
            self.sym[n.args[0]] = sym
        return real

    # -- helpers used by the rules ------------------------------------------------------
    def real(self, a):
        return torch.fx.node.map_arg(a, lambda nd: self.env[nd])

    def where(self, n) -> str:
        """The module path of a node (``features.0``), or ``path:node`` for an op
        that a module computes among others."""
        stack = n.meta.get("nn_module_stack")
        if not stack:
            return n.name
        path, cls = list(stack.values())[-1]
        cls = getattr(cls, "__module__", "") + "." + getattr(cls, "__name__", str(cls)) \
            if not isinstance(cls, str) else cls
        leaf = cls.startswith("torch.nn.modules.") or cls.startswith("torch.ao.nn")
        return path if (leaf and path) else f"{path}:{n.name}" if path else n.name

    def unsupported(self, n, what: str, why: str | None = None):
        from .trace import SUPPORTED

        if why:
            raise UnsupportedLayerError(f"unsupported layer {self.where(n)!r} ({what}): {why}")
        raise UnsupportedLayerError(f"unsupported layer {self.where(n)!r} (op {what}): "
                                    f"deepglass supports {SUPPORTED}")

    def warn_nonmonotone(self, name: str, detail: str = "") -> None:
        self.b.warn_once(name, f"activation {name}{detail} is not non-decreasing: the "
                               "monotonicity theorems (and near-monotonicity tests) assume "
                               "non-decreasing activations")

    # -- dispatch ---------------------------------------------------------------------
    def _symbolic(self, n, real):
        if n.op == "placeholder":
            if not isinstance(real, torch.Tensor):
                return None
            shape = tuple(real.shape[1:])
            nb = self.b.new_block("input" if self.n_inputs == 0 else f"input{self.n_inputs}",
                                  shape, "input")
            self.n_inputs += 1
            return Ref(torch.arange(nb.offset, nb.stop).reshape((1,) + shape))
        if n.op == "get_attr":
            return None
        if n.op == "output":
            return torch.fx.node.map_arg(n.args[0], lambda nd: self.sym[nd])
        args = torch.fx.node.map_arg(n.args, lambda nd: self.sym[nd])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda nd: self.sym[nd])
        stats = [v for v in _flatten([args, kwargs]) if isinstance(v, Stat)]
        if stats:
            return self._with_stat(n, args, real)
        if not (_has_sym(args) or _has_sym(kwargs)):
            return None
        if n.target is operator.getitem:
            seq = args[0]
            if isinstance(seq, (list, tuple)):
                return seq[args[1]]
            return _shape_rule(self, n, args, kwargs, real)
        rule = _rule(n.target)
        if rule is None:
            self.unsupported(n, _opname(n.target))
        return rule(self, n, args, kwargs, real)


    def _with_stat(self, n, args, real):
        """Rules for ops that read a :class:`Stat`."""
        packet = getattr(n.target, "overloadpacket", None)
        if _inplace(n.target):
            packet = getattr(aten, _opname_packet(n.target)[:-1], packet)
        if packet in (aten.mul, aten.div) and len(args) > 1:
            a, b = args[0], args[1]
            if isinstance(b, Stat) and _is_sym(a):
                return a            # x * s or x / s: a positive rescaling of x
            if isinstance(a, Stat) and _is_sym(b) and packet is aten.mul:
                return b
        if packet in (aten.add, aten.sub) and len(args) > 1:
            a, b = args[0], args[1]
            if isinstance(b, Stat) and _is_sym(a):
                return a            # x - mean(x): the mean subtraction is ignored (SPEC §1b)
            if isinstance(a, Stat) and _is_sym(b) and packet is aten.add:
                return b
        if packet in STAT_OPS or n.target is operator.getitem:
            if any(_is_sym(v) for v in _flatten(args)):
                self.unsupported(n, _opname(n.target), "it mixes a network value with a "
                                 "statistic of the input (x ** p, a root or a mean of one)")
            out = real[0] if isinstance(real, tuple) else real
            return Stat(tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ())
        self.unsupported(n, _opname(n.target), "it uses a statistic of the input (x ** p, a "
                         "root or a mean of one) as a network value; only a normalization "
                         "(a division by such a statistic) is supported")

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
shape) and symbolically (node ids), with the values of :mod:`.symbolic`
(``Ref``, ``Pending``).  :data:`ATEN_OPS` maps each op to its rule
(:mod:`.aten_rules`); a new op is one entry.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx

from ..errors import DeepglassError, UnsupportedLayerError, first_line
from .aten_norms import (Stat, _batch_norm, _batch_norm_batch_stats, _batch_norm_layer,
                         _group_norm, _group_norm_layer, _instance_norm_layer, _layer_norm,
                         _layer_norm_layer, _reduced_statistic, _statistic, absolute_statistic,
                         frozen_or, stat_sign)
from .aten_activations import (_clamp_nonneg, _elu, _leaky_relu, _monotone, _nonmonotone,
                               _prelu, _rrelu, _signed, _threshold, _threshold_at)
from .aten_products import (_attention, _bmm, _drop_branch_warnings, _gated, _linear, _matmul,
                            gated_by_refused)
from .aten_scatter import index_put, scatter, write_into_view
from .rewrites import write_out
from .model_checks import RANDOM_WHY, constant_reads, data_reads_detach, export_failure, random_draw
from .batch_axis import BatchAxes, reduces_batch
from .stat_search import computed_from
from .norm_gain import apply_gain, gained_stat, pools_gate
from .aten_rules import (_adaptive, _add, _addcmul, _amax, _avg_pool,
                         _conv_layer, _conv_transpose_layer, _convolution, _div, _identity,
                         interpolation_matrices, _max_pool, _mean, _mul,
                         _neg, _shape_rule, _sum, _upsample, _where)
from .identical import identical_ops, merge_identical_ops, mutates
from .inplace import write_out_of_place, writes_into_view
from .quiet import quiet_exporter
from .prune import left_out_row
from .refusals import FRACTIONAL_POOL, REFUSED_OPS, fractional_pool, source_line
from .ranges import factor_range, is_gate, is_positive_divisor
from .spectral import complex_as_real, refuse_complex
from .symbolic import (_SHAPE_ONLY, SUPPORTED, ForwardError, Pending, Ref, Refused, _is_sym,
                       _flag, _opname, base_packet, expand_to, flatten, has_sym, scale, uses)

__all__ = ["export_module", "AtenInterpreter", "ATEN_OPS", "interpolation_matrices"]

aten = torch.ops.aten

#: ops kept whole when lowering to core ATen: activations (their decompositions
#: would hide their names: SiLU -> x * sigmoid(x), PReLU -> where(x > 0, ...))
KEEP_WHOLE = ("prelu", "silu", "hardswish", "hardsigmoid", "mish", "softshrink", "hardshrink",
              "threshold", "rrelu",
              # and paddings that copy the border (whose decompositions are
              # index arithmetic and in-place copies)
              "pad", "_pad_circular", "reflection_pad1d", "reflection_pad2d",
              "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d",
              # and the upsamplings core ATen decomposes (one layer each, SPEC §1b; they
              # became chains of lerps and copies, bicubic's weights in float32)
              "upsample_nearest1d", "upsample_nearest3d", "_upsample_nearest_exact1d",
              "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d",
              "upsample_trilinear3d", "upsample_bicubic2d",
              # and what :mod:`.rewrites` writes out (lerp became a selection)
              "lerp", "var_mean", "std_mean")


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
    # the exporter logs a failing op's whole traceback (and, for a branch on
    # the input's values, prints the program traced so far) before raising:
    # the one-line error below says it
    try:
        with quiet_exporter(), data_reads_detach(), constant_reads():
            ep = torch.export.export(model, tuple(inputs), kwargs=kwargs or None, strict=False)
        gm = write_out(complex_as_real(ep.module()))
        write_out_of_place(gm)     # writes nothing else reads: no second trace for them
        if not core and (writes_into_view(gm.graph) or
                         (mutates(gm.graph) and identical_ops(gm.graph))):
            # an in-place op on a view (``y[:, 1:].add_(z)``, ``y[:, :2] = z``)
            # changes the viewed value: functionalized, the program says so with
            # ``slice_scatter`` / ``select_scatter`` (re-indexings), nothing lowered;
            # so too where ops repeat, before they are merged
            ep = ep.run_decompositions({})
            gm = write_out(complex_as_real(ep.module()))
        # (a complex op's rule only refuses it: lowered, stft becomes _fft_r2c, which
        # complex_as_real reads)
        if not core and all(_rule(nd.target) not in (None, refuse_complex) for nd in gm.graph.nodes
                            if nd.op == "call_function" and nd.target is not operator.getitem):
            return _placed(_merged(gm), model), "torch.export"
        table = torch.export.default_decompositions()
        for name in KEEP_WHOLE:
            packet = getattr(aten, name, None)
            for overload in packet.overloads() if packet is not None else ():
                table.pop(getattr(packet, overload), None)
        gm = write_out(complex_as_real(ep.run_decompositions(table).module()))
        return _placed(_merged(gm), model), "torch.export (core ATen)"
    except Exception as exc:  # the exporter raises many kinds of errors
        msg = export_failure(exc, model, kwargs)
        raise ExportFailed(msg) from None


def _rule(target):
    """The rule of an op; an in-place op (``relu_``, ``add_``) has its
    out-of-place twin's rule (the interpreter rebinds the mutated value)."""
    rule = ATEN_OPS.get(target) or ATEN_OPS.get(getattr(target, "overloadpacket", None))
    if rule is None and _inplace(target):
        twin = getattr(aten, _opname_packet(target)[:-1], None)
        overload = getattr(twin, getattr(target, "_overloadname", ""), None)
        rule = ATEN_OPS.get(overload) or ATEN_OPS.get(twin)
    return rule


def _opname_packet(target) -> str:
    packet = getattr(target, "overloadpacket", None)
    return getattr(packet, "__name__", "") if packet is not None else ""


def _placed(gm, model):
    """``gm`` knowing the class of each module path of ``model`` (a refusal
    names the forward an op is in: :func:`.refusals.source_line`)."""
    gm.meta["module_classes"] = {path: type(m) for path, m in model.named_modules()}
    return gm


def _merged(gm):
    """``gm`` (its ops written out as what they compute, ``var_mean``, ``lerp``:
    :mod:`.rewrites`) with identical ops merged into one (:mod:`.identical`),
    where it is functional."""
    if not mutates(gm.graph) and identical_ops(gm.graph):
        merge_identical_ops(gm)
    return gm


def _inplace(target) -> bool:
    name = _opname_packet(target)
    return name.endswith("_") and not name.endswith("__") and not name.startswith("_")


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
        self.left_out: list[dict] = []     # layers of a gate's branch after a refused value
        self.unread: list[tuple] = []      # (Pending, its row): layers read only by a refused op
        self.made: dict[torch.fx.Node, range] = {}
        # placeholders of tensors given in forward_kwargs: fixed values, not inputs
        self.fixed: set = set()

    def run_node(self, n):
        if n.op == "call_module":    # the exporter's input guards
            self.sym[n] = None
            return None
        try:
            real = super().run_node(n)
        except DeepglassError:
            raise
        except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as exc:
            raise ForwardError(str(exc)) from exc
        self.cur = real
        self.b.node = n
        first = len(self.b.node_blocks)
        sym = self.b.tag(n, self._symbolic(n, real), real)
        # a pending value used more than once gets its node block now, so that
        # every user sees the same nodes
        if isinstance(sym, Pending) and uses(n) > 1:
            sym = self.b.materialize(sym)
        if len(self.b.node_blocks) > first:     # the node blocks this op made
            self.made[n] = range(first, len(self.b.node_blocks))
        self.sym[n] = sym
        if n.op == "call_function" and _inplace(n.target) and n.args \
                and isinstance(n.args[0], torch.fx.Node):
            # the op mutated its first argument: later readers of it see the result
            if isinstance(sym, Pending):
                sym = self.sym[n] = self.b.materialize(sym)
            self.sym[n.args[0]] = sym
        return real

    # -- helpers used by the rules ------------------------------------------------------
    def node_order(self) -> dict:
        """Each fx node's position in the program (cached)."""
        order = getattr(self, "_order", None)
        if order is None:
            order = self._order = {u: i for i, u in enumerate(self.module.graph.nodes)}
        return order

    def input_dependent(self) -> set:
        """The fx nodes whose value depends on a network input (cached)."""
        dep = getattr(self, "_dependent", None)
        if dep is None:
            dep = set()
            for node in self.module.graph.nodes:
                if node.op == "placeholder" and node not in self.fixed or \
                        any(a in dep for a in node.all_input_nodes):
                    dep.add(node)
            self._dependent = dep
        return dep

    def batch_axes(self, node) -> frozenset:
        """The axes of fx ``node``'s value that hold the batch (:class:`.BatchAxes`)."""
        axes = getattr(self, "_batch_axes", None)
        if axes is None:
            axes = self._batch_axes = BatchAxes(self.module.graph, self.input_dependent(),
                                                self.env.get)
        return axes(node)

    def real(self, a):
        return torch.fx.node.map_arg(a, lambda nd: self.env[nd])

    def where(self, n) -> str:
        """The module path of a node (``features.0``), or ``path:node`` for an op
        that a module computes among others; an op written out
        (:mod:`.rewrites`) is named by the op it is part of (``lerp``)."""
        name = n.meta.get("written_out", n.name)
        stack = n.meta.get("nn_module_stack")
        if not stack:
            return name
        path, cls = list(stack.values())[-1]
        cls = getattr(cls, "__module__", "") + "." + getattr(cls, "__name__", str(cls)) \
            if not isinstance(cls, str) else cls
        leaf = cls.startswith("torch.nn.modules.") or cls.startswith("torch.ao.nn")
        return path if (leaf and path) else f"{path}:{name}" if path else name

    def unsupported(self, n, what: str, why: str | None = None, at_once: bool = False):
        """Refuse op ``n``: a :class:`Refused` value carries the refusal on (a
        gate's branch may hold it); ``at_once`` refuses the network here (a
        matrix product of two values is self-attention, also as a gate)."""
        exc = UnsupportedLayerError(self.refused(n, what, why).message)
        exc.at_once = at_once
        raise exc

    def refused(self, n, what: str, why: str | None = None, product: bool = False) -> Refused:
        """The refusal of op ``n``, carried as a value (:class:`Refused`); the
        line of the model's code that computes it ends the message."""
        at = source_line(n, self.module.meta.get("module_classes"))
        if why:
            return Refused(f"unsupported layer {self.where(n)!r} ({what}): {why}{at}", product)
        return Refused(f"unsupported layer {self.where(n)!r} (op {what}): "
                       f"deepglass supports {SUPPORTED}{at}", product)

    def warn_nonmonotone(self, name: str, detail: str = "") -> None:
        self.b.warn_once(name, f"activation {name}{detail} is not non-decreasing: the "
                               "monotonicity theorems (and near-monotonicity tests) assume "
                               "non-decreasing activations")

    # -- dispatch ---------------------------------------------------------------------
    def _symbolic(self, n, real):
        if n.op == "placeholder":
            if not isinstance(real, torch.Tensor) or n in self.fixed:
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
        if getattr(n.target, "overloadpacket", None) in CHECK_OPS:
            return None
        args = torch.fx.node.map_arg(n.args, lambda nd: self.sym[nd])
        kwargs = torch.fx.node.map_arg(n.kwargs, lambda nd: self.sym[nd])
        refused = [v for v in flatten([args, kwargs]) if isinstance(v, Refused)]
        if refused and n.target is operator.getitem and isinstance(args[0], (list, tuple)):
            return args[0][args[1]]     # one of an op's outputs (a max's, not its indices)
        if refused and all(r.bias for r in refused):
            # an input-independent random draw (StyleGAN's noise injection): carried
            # while nothing from the input meets it, a bias (SPEC §1: no edges) where
            # it is added to a value, refused as a draw anywhere else
            if n not in self.input_dependent():
                return refused[0]
            if _opname_packet(n.target) not in ("add", "sub"):
                return Refused(refused[0].message)
            args = torch.fx.node.map_aggregate(
                args, lambda v: None if isinstance(v, Refused) else v)
            refused = []
        products = [r for r in refused if r.product]
        if products and _opname_packet(n.target) in ("sum", "mean"):
            # a product of two values summed over a dimension is attention or
            # bilinear pooling: the product is refused, also inside a gate's branch
            raise UnsupportedLayerError(products[0].message)
        if refused and _opname_packet(n.target) not in _SHAPE_ONLY:
            # a gate's branch ends here, or the refusal is carried on
            gated = gated_by_refused(self, n, args, real)
            if gated is None:
                self._skipped_layer(n, real)
            return gated if gated is not None else refused[0]
        stats = [v for v in flatten([args, kwargs]) if isinstance(v, Stat)]
        if random_draw(n.target) and _rule(n.target) is None:    # refused where it is used
            what, why = _opname(n.target), RANDOM_WHY
            if any(fractional_pool(u.target) for u in n.users):     # its regions' samples
                what, why = FRACTIONAL_POOL
            r = self.refused(n, what, why)
            return Refused(r.message, bias=True) if n not in self.input_dependent() else r
        if not stats and not (has_sym(args) or has_sym(kwargs)):
            return None
        try:
            return self._with_stat(n, args, real) if stats else self._rule(n, args, kwargs, real)
        except UnsupportedLayerError as exc:
            if getattr(exc, "at_once", False):
                raise
            # a value the graph cannot hold is refused where it reaches the
            # graph; a gate's branch, left out (SPEC §1b), may hold it, and
            # the layers only it reads (a mask's conv(y) > 0) never become nodes
            for a in n.all_input_nodes:
                if isinstance(self.sym.get(a), Pending):
                    self._skipped_layer(a, self.env.get(a), into=self.unread, value=self.sym[a])
            return Refused(str(exc))
        except DeepglassError:
            raise
        except (RuntimeError, IndexError, ValueError, TypeError) as exc:
            # a use of the op its rule does not foresee: refused by name, as
            # an unsupported layer, not a traceback
            return self.refused(n, _opname(n.target), "deepglass's rule for it does not "
                                f"cover this use ({type(exc).__name__}: {first_line(exc)}); "
                                "please report it")

    def _rule(self, n, args, kwargs, real):
        if n.target is operator.getitem:
            seq = args[0]
            if isinstance(seq, (list, tuple)):
                return seq[args[1]]
            return _shape_rule(self, n, args, kwargs, real)
        rule = _rule(n.target)
        if rule is None:
            self.unsupported(n, _opname(n.target))
        return rule(self, n, args, kwargs, real)

    def _skipped_layer(self, n, real, into=None, value=None):
        """A layer with weights that reads a refused value makes no node block:
        noted for ``meta["left_out"]`` (where the value feeds a gate, it is
        part of the branch left out).  ``into=self.unread``: a layer read by a
        refused op, noted with its ``value``, left out if it is never made a
        node block."""
        row = left_out_row(n, self.env, real, self.where(n))
        if row is not None:
            (self.left_out.append(row) if into is None else into.append((value, row)))

    def _with_stat(self, n, args, real):
        """Rules for ops that read a :class:`Stat`."""
        packet = base_packet(n.target)
        if packet in (aten.mul, aten.div) and len(args) > 1:
            if (gained := gained_stat(self, n, args, packet, real)) is not None:
                return gained           # TensorFlow's gamma * rsqrt(var + eps)
            a, b = args[0], args[1]
            if isinstance(a, Stat) and _is_sym(b) and packet is aten.mul:
                a, b = b, a
            if isinstance(b, Stat) and _is_sym(a):
                # x * s or x / s: a positive rescaling of x (SPEC §1b); of -x
                # where s was negated; refused where its sign depends on the
                # input, unless its range makes it a gate (GCT's 1 + tanh(s))
                # or a positive divisor
                fx_b = n.args[0] if isinstance(args[0], Stat) else n.args[1]
                if b.sign == 0 and (is_gate(self, fx_b) if packet is aten.mul
                                    else is_positive_divisor(self, fx_b)):
                    return _gated(self, n, self.b.materialize(a), real,
                                  factor_range(self, fx_b, divides=packet is aten.div),
                                  branch=fx_b)
                if b.sign == 0:
                    self.unsupported(n, _opname(n.target), "a statistic whose sign "
                                     "depends on the input (std - 1, a log, the mean of a "
                                     "signed value) rescales a value")
                if isinstance(real, torch.Tensor) and tuple(real.shape[1:]) != (
                        tuple(a.index.shape[1:]) if isinstance(a, Ref) else tuple(a.shape)):
                    # a statistic that broadcasts the value to a larger shape copies it
                    a = expand_to(self.b, a, real.shape[1:])
                out = apply_gain(self, n, a if b.sign > 0 else scale(self.b, a, torch.tensor(
                    -1.0, dtype=torch.float64)), b, divides=packet is aten.div)
                if out is None:
                    self.unsupported(n, "div", "a division by a norm's gain that is 0")
                # a statistic of another value (a mean of a gate) is a gate for
                # sums with copies of the value, its factor in its range (y *
                # sigmoid(z).mean() - y: by -1); a normalization's statistic of
                # the value itself is taken at 1, the response at its mean (SPEC §1b)
                fx_a = n.args[1] if isinstance(args[0], Stat) else n.args[0]
                pooled = isinstance(out, Ref) and pools_gate(self, fx_b)
                if pooled:
                    # a gate pooled (sigmoid(z).mean()): gates='error' refuses
                    # it, meta["gates"] lists it as any gate
                    if self.rules["gates"] == "error":
                        self.unsupported(n, "gate", "a pooled gate (the mean or maximum of "
                                         "a sigmoid) multiplies the value and gates='error'")
                    self.gated.append(self.where(n))
                # (what only computes the statistic is no part of the graph: nor its warnings)
                _drop_branch_warnings(self, fx_b)
                if isinstance(out, Ref) and (pooled or not computed_from(self, fx_b, fx_a)):
                    lo, hi = factor_range(self, fx_b, divides=packet is aten.div)
                    lo, hi = (lo, hi) if b.sign > 0 else (-hi, -lo)
                    out = _flag(out, gated=True, gate=(max(lo, 0.0), hi) if hi > 0
                                else (0.0, float("inf")))
                return out
        if packet in (aten.add, aten.sub, aten.rsub) and len(args) > 1:
            a, b = args[0], args[1]
            if packet is aten.rsub:     # rsub(x, u) = u - x
                a, b = b, a
            if isinstance(b, Stat) and _is_sym(a):
                return a            # x - mean(x): the mean subtraction is ignored (SPEC §1b)
            if isinstance(a, Stat) and _is_sym(b):
                # mean(x) - x: the centred value negated
                return b if packet is aten.add else \
                    scale(self.b, b, torch.tensor(-1.0, dtype=torch.float64))
        if packet in STAT_OPS or n.target in (operator.getitem, aten.max.dim):
            if any(_is_sym(v) for v in flatten(args)):
                self.unsupported(n, _opname(n.target), "it mixes a network value with a "
                                 "normalization's statistic (x ** p, a root or a mean of a "
                                 "network value that rescales a value)")
            if reduces_batch(self, n):
                self.unsupported(n, _opname(n.target), "it reduces over the batch dimension",
                                 at_once=True)
            out = real[0] if isinstance(real, tuple) else real
            sign = stat_sign(self, n, args)
            return Stat(tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else (), sign)
        self.unsupported(n, _opname(n.target), "it uses a normalization's statistic (x ** "
                         "p, a root or a mean of a network value) as a network value; only a "
                         "normalization (a division by such a statistic) is supported")


# ----------------------------------------------------------------------------------
def _ops(names: str, rule) -> dict:
    table = {}
    for name in names.split():
        packet = getattr(aten, name, None)
        if packet is not None:
            table[packet] = rule
    return table


ATEN_OPS: dict = {
    aten.convolution.default: _convolution,
    aten.addmm.default: _matmul,
    aten.mm.default: _matmul,
    aten.linear.default: _linear,
    aten.matmul.default: _linear,
    **_ops("conv1d conv2d conv3d", _conv_layer),
    **_ops("conv_transpose1d conv_transpose2d conv_transpose3d", _conv_transpose_layer),
    aten.batch_norm.default: _batch_norm_layer,
    aten.layer_norm.default: _layer_norm_layer,
    aten.group_norm.default: _group_norm_layer,
    aten.instance_norm.default: _instance_norm_layer,
    aten.mean.dim: _mean,
    aten.mean.default: _mean,
    aten.sum.dim_IntList: _sum,
    aten.sum.default: _sum,
    aten.amax.default: _amax,
    aten.max.dim: _amax,
    aten.max.default: _amax,
    aten.addcmul.default: _addcmul,
    **_ops("maximum minimum", _threshold),
    **_ops("where masked_fill", _where),
    aten.mul.Tensor: frozen_or(_mul),
    aten.mul.Scalar: frozen_or(_mul),
    aten.div.Tensor: _div,
    aten.div.Scalar: _div,
    aten.neg.default: _neg,
    aten.add.Tensor: _add,
    aten.add.Scalar: _add,
    aten.sub.Tensor: _add,
    aten.sub.Scalar: _add,
    aten.rsub.Scalar: _add,
    aten.leaky_relu.default: _leaky_relu,
    aten.prelu.default: _prelu,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten._native_batch_norm_legit.no_stats: _batch_norm_batch_stats,
    aten.native_layer_norm.default: _layer_norm,
    aten.native_group_norm.default: _group_norm,
    **_ops("max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices",
           _max_pool),
    **_ops("avg_pool1d avg_pool2d avg_pool3d", _avg_pool),
    **_ops("_adaptive_avg_pool2d _adaptive_avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d "
           "adaptive_avg_pool3d", _adaptive("avg")),
    **_ops("adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d", _adaptive("max")),
    **_ops("upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d "
           "_upsample_nearest_exact2d _upsample_nearest_exact3d", _upsample("nearest")),
    **_ops("upsample_linear1d upsample_bilinear2d upsample_trilinear3d", _upsample("linear")),
    **_ops("_upsample_bilinear2d_aa", _upsample("linear")),       # antialias=True
    **_ops("upsample_bicubic2d _upsample_bicubic2d_aa", _signed(_upsample("cubic"))),
    **_ops("relu relu6 sigmoid hardsigmoid _softmax softmax exp softplus", _monotone(True)),
    **_ops("elu celu", _elu),
    **_ops("tanh selu expm1 log1p erf _log_softmax log_softmax log_sigmoid "
           "log_sigmoid_forward logit atan arctan sinh asinh arcsinh", _monotone(False)),
    **_ops("hardtanh clamp clamp_min clamp_max", _monotone(_clamp_nonneg)),
    **_ops("softshrink hardshrink", _monotone(False)),
    **_ops("log log2 log10 sign", _monotone(False)),   # a log compression, mu-law's sign
    aten.threshold.default: _threshold_at,
    aten.rrelu.default: _rrelu,
    **_ops("index_put index_put_ _unsafe_index_put", index_put),   # F.fold, x[idx] = v
    **_ops("scatter scatter_ scatter_add scatter_add_ scatter_reduce scatter_reduce_", scatter),
    **_ops("gelu", _nonmonotone("GELU")),
    **_ops("silu", _nonmonotone("SiLU")),
    **_ops("hardswish", _nonmonotone("Hardswish")),
    **_ops("mish", _nonmonotone("Mish")),
    **_ops("abs", absolute_statistic(_nonmonotone("abs", nonneg=True))),
    **_ops("sin", _nonmonotone("sin")),          # SIREN
    **_ops("cos", _nonmonotone("cos")),
    # a tensor of the value's shape that does not depend on its values: a constant
    **_ops("full_like zeros_like ones_like empty_like new_zeros new_ones new_full new_empty",
           lambda ip, n, args, kwargs, real: None),
    **_ops("clone alias detach _to_copy to type_as lift_fresh_copy contiguous dropout "
           "feature_dropout alpha_dropout feature_alpha_dropout", _identity),
    **_ops("view _unsafe_view reshape permute transpose t unsqueeze squeeze expand slice "
           "select cat concat split split_with_sizes unbind constant_pad_nd as_strided "
           "flatten narrow pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle "
           "movedim stack repeat index_select unflatten chunk swapaxes pad flip roll "
           "reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d "
           "replication_pad2d replication_pad3d _pad_circular index unfold gather", _shape_rule),
    **_ops("slice_scatter select_scatter copy", write_into_view),
    **_ops("pow sqrt rsqrt", _statistic),
    **_ops("var var_mean std std_mean linalg_vector_norm norm", _reduced_statistic),
    # einsum has no rule: lowered, a product with a weight is a bmm the rule reads
    **_ops("bmm baddbmm", _bmm),
    **_ops("_scaled_dot_product_flash_attention _scaled_dot_product_efficient_attention "
           "_scaled_dot_product_flash_attention_for_cpu scaled_dot_product_attention",
           _attention),
    **_ops("view_as_complex complex polar _fft_r2c _fft_c2r _fft_c2c stft istft",
           refuse_complex),
    **REFUSED_OPS,
}
#: the exporter's checks of a value's dtype or shape (``x.to(dtype)``): no value
CHECK_OPS = {getattr(aten, name) for name in
             "_assert_tensor_metadata _assert_scalar _assert_async".split() if hasattr(aten, name)}
#: ops that map statistics to statistics (SPEC §1b normalizations)
STAT_OPS = {getattr(aten, name) for name in (
    "pow sqrt rsqrt reciprocal add sub mul div mean sum amax avg_pool1d avg_pool2d avg_pool3d "
    "unsqueeze squeeze view _unsafe_view reshape expand permute clone alias constant_pad_nd "
    "slice select cat _to_copy exp log clamp clamp_min abs neg var var_mean pad flatten "
    "transpose contiguous to alias detach avg_pool1d cumsum convolution conv1d conv2d conv3d "
    "linear mm bmm matmul addmm").split()
    if hasattr(aten, name)}
# dropout returns (value, mask)
ATEN_OPS[aten.native_dropout.default] = lambda ip, n, args, kwargs, real: (args[0], None)

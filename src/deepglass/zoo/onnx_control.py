"""ONNX converter: static control flow (``Loop`` and ``If`` on constants).

TorchScript keeps a module's shape checks as control flow, and its ONNX
exporter writes them out: ``F.group_norm`` / ``F.instance_norm`` multiply the
static sizes in a ``Loop`` (``_verify_batch_size``, ``_verify_spatial_size``)
whose result only feeds a ``raise``, which the export drops.  Such a node
computes nothing from the input: a ``Loop`` or ``If`` no value of the network
reads is dropped, and one whose trip count, condition, carried values and the
outer values its body reads are all constants (shape arithmetic) is run at
conversion time, body node by body node, with the converter's own op handlers
(every one of them folds on constants).  An ``If`` on a constant condition
whose branches read the network's values (a squeeze where a rank is 3) has
its branch taken converted as part of the network.  Control flow on values computed from
the input has no fixed signed graph and stays refused
(:mod:`deepglass.zoo.onnx_refusals`).  Cost: the unrolled body's nodes, on
shape-sized constants.
"""

from __future__ import annotations

import torch

from .onnx_values import _Value, _to_tensor

__all__ = ["MAX_UNROLL", "subgraphs", "outer_names", "control_reads"]

#: a constant Loop longer than this is not unrolled (shape checks loop over a tensor's rank)
MAX_UNROLL = 10_000


def subgraphs(node) -> list:
    """The graphs held in ``node``'s attributes (a Loop's body, an If's branches)."""
    from onnx import AttributeProto

    out = []
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def outer_names(graph) -> set[str]:
    """The values a (sub)graph reads from its enclosing scopes, nested subgraphs included."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    read: set[str] = set()
    for node in graph.node:
        read.update(i for i in node.input if i)
        for sub in subgraphs(node):
            read |= outer_names(sub)
        defined.update(o for o in node.output if o)
    read.update(o.name for o in graph.output)
    return read - defined


def control_reads(node) -> set[str]:
    """Every outer value a control-flow node depends on: its inputs and its subgraphs' outer reads."""
    reads = {i for i in node.input if i}
    for sub in subgraphs(node):
        reads |= outer_names(sub)
    return reads


class _ControlOps:
    """``Loop`` and ``If`` whose results are unused, or computed from constants only.

    Methods ``op_<ONNX op>(node, attributes)`` of the converter, mixed into
    :class:`deepglass.zoo.onnx_import._Builder`; they use its state and
    emission helpers (:class:`deepglass.zoo.onnx_builder._BuilderBase`).
    """

    def _read_values(self) -> set[str]:
        """Values some node reads, at the top level or inside a subgraph (a value
        a branch computes and reads itself too), and the graphs' outputs."""
        if getattr(self, "_read_cache", None) is None:
            read = set(self.consumers) | set(self.graph_outputs)

            def inside(graph):
                for node in graph.node:
                    read.update(i for i in node.input if i)
                    for sub in subgraphs(node):
                        read.update(o.name for o in sub.output)
                        inside(sub)

            inside(self.model.graph)
            self._read_cache = read
        return self._read_cache

    def _dead(self, node) -> bool:
        """No value of the network reads any output of ``node`` (a check whose raise the export dropped)."""
        read = self._read_values()
        return not any(o and o in read for o in node.output)

    def _unknown_body_op(self, node):
        """The first node inside ``node``'s subgraphs (nested too) without a converter, or None."""
        for sub in subgraphs(node):
            for inner in sub.node:
                if inner.domain not in ("", "ai.onnx") or getattr(self, f"op_{inner.op_type}", None) is None:
                    return inner
                found = self._unknown_body_op(inner)
                if found is not None:
                    return found
        return None

    @staticmethod
    def _reads_constants(node, const: set[str]) -> bool:
        """A Loop / If whose inputs and whose body's outer reads are all in ``const`` (names)."""
        return control_reads(node) <= const

    def _run_subgraph(self, node, graph, inputs: list[_Value], constant: bool = True) -> list[_Value]:
        """Evaluate ``graph`` on constant ``inputs`` with the op handlers; its outputs
        (constants, unless ``constant=False``: an If's branch taken, whose nodes
        become the network's where it reads the network's values)."""
        for inp, v in zip(graph.input, inputs):
            self.values[inp.name] = v
        for init in graph.initializer:
            self.values[init.name] = _Value(const=_to_tensor(init))
        for inner in graph.node:
            self._convert(inner)
        outs = []
        for o in graph.output:
            v = self.values.get(o.name)
            if v is None or constant and not v.is_const:
                self.refuse(node, f"its subgraph's output {o.name!r} is not a constant; only control flow on "
                                  "shape values is run at conversion time")
            outs.append(v)
        return outs

    def _scoped(self, node, fn):
        """Run ``fn`` with the subgraph's values visible, then forget them (names are scoped)."""
        saved = dict(self.values)
        try:
            results = fn()
        finally:
            self.values = saved
        for name, v in zip(node.output, results):
            if name:
                self.values[name] = v

    def op_Loop(self, node, a):
        """A Loop of constants, unrolled: ``(M, cond, v_initial...) -> (v_final..., scan_outputs...)``."""
        if self._dead(node):
            return
        body = a["body"]
        trip, cond = self.inp(node, 0), self.inp(node, 1)
        carried = [self.inp(node, i) for i in range(2, len(node.input))]
        if any(v is not None and not v.is_const for v in [trip, cond, *carried]):
            self.refuse(node, "a loop over values computed from the input (data-dependent control flow)")
        n_carried = len(carried)

        def run():
            state = list(carried)
            scans: list[list[torch.Tensor]] = [[] for _ in range(len(body.output) - 1 - n_carried)]
            limit = int(trip.const.reshape(())) if trip is not None else None
            go = bool(cond.const.reshape(())) if cond is not None else True
            i = 0
            while go and (limit is None or i < limit):
                if i >= MAX_UNROLL:
                    self.refuse(node, f"a constant loop of more than {MAX_UNROLL} iterations")
                outs = self._run_subgraph(node, body, [_Value(const=torch.tensor(i, dtype=torch.int64)),
                                                       _Value(const=torch.tensor(go)), *state])
                go = bool(outs[0].const.reshape(()))
                state = outs[1:1 + n_carried]
                for k, v in enumerate(outs[1 + n_carried:]):
                    scans[k].append(v.const)
                i += 1
            return [*state, *(_Value(const=torch.stack(s) if s else torch.empty(0)) for s in scans)]

        self._scoped(node, run)

    def op_If(self, node, a):
        """An If on a constant condition: the branch it takes, evaluated on constants,
        or, where it reads the network's values (TorchScript's
        ``F.local_response_norm`` squeezes an activation if its rank is 3), made
        part of the network: the condition is a shape, so the branch is fixed."""
        if self._dead(node):
            return
        cond = self.inp(node, 0)
        if not cond.is_const:
            self.refuse(node, "a branch on a value computed from the input (data-dependent control flow)")
        branch = a["then_branch"] if bool(cond.const.reshape(())) else a["else_branch"]
        self._scoped(node, lambda: self._run_subgraph(node, branch, [], constant=False))


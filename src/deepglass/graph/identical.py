"""Identical computations of a captured program merged into one (SPEC §1b:
the graph is what the network computes, whatever code computes it).

Two calls of the same op on the same values with the same arguments (two
``MaxPool2d`` modules applied to one value, as timm's DLA trees do; the same
layer called twice on one input) compute one value.  Left apart they would be
two node blocks with the same incoming edges, a graph that depends on how the
code is written and on which exporter wrote an ONNX file (one that merges such
ops, or one that keeps them).  Merged, they are one node block read by both
consumers.
"""

from __future__ import annotations

import operator

import torch
import torch.fx

__all__ = ["identical_ops", "merge_identical_ops", "mutates", "writes_into_argument"]

#: ops whose value is not a function of their arguments: never merged
_RANDOM = {"dropout", "_fused_dropout", "native_dropout", "bernoulli", "multinomial",
           "normal", "poisson", "binomial", "rrelu", "rand", "rand_like", "randn",
           "randn_like", "randint", "randint_like", "randperm", "empty", "empty_like",
           "empty_strided", "new_empty", "new_empty_strided"}


def _name(target) -> str:
    packet = getattr(target, "overloadpacket", None)
    return getattr(packet if packet is not None else target, "__name__", str(target))


def writes_into_argument(target) -> bool:
    """Whether the op writes into one of its arguments (an in-place op, ``out=``)."""
    schema = getattr(target, "_schema", None)
    return schema is not None and schema.is_mutable


def mutates(graph: torch.fx.Graph) -> bool:
    """Whether any op of ``graph`` writes into a value (a non-functional program:
    ``relu_``, ``add_``), where two reads of one value may see different data."""
    return any(nd.op == "call_function" and writes_into_argument(nd.target) for nd in graph.nodes)


def _key(node: torch.fx.Node, canon: dict):
    """A hashable key of what ``node`` computes (target, arguments with nodes
    replaced by their canonical nodes), or None where it is not merged."""
    if node.op != "call_function" or not node.users or writes_into_argument(node.target) or \
            _name(node.target) in _RANDOM or node.is_impure():
        return None

    def freeze(a):
        if isinstance(a, torch.fx.Node):
            return ("node", id(canon.get(a, a)))
        if isinstance(a, (list, tuple)):
            return (type(a).__name__,) + tuple(freeze(v) for v in a)
        if isinstance(a, dict):
            return ("dict",) + tuple((k, freeze(v)) for k, v in sorted(a.items()))
        if isinstance(a, slice):
            return ("slice", freeze(a.start), freeze(a.stop), freeze(a.step))
        hash(a)                  # a tensor constant, ...: TypeError, not merged
        return (type(a).__name__, a)

    try:
        return node.target, freeze(node.args), freeze(node.kwargs)
    except TypeError:
        return None


def _groups(graph: torch.fx.Graph):
    """``canon``: each node merged into an earlier identical one, mapped to it
    (parameters read by several ``get_attr`` nodes of one name count as one)."""
    canon: dict = {}
    seen: dict = {}
    attrs: dict = {}
    for nd in graph.nodes:
        if nd.op == "get_attr":
            first = attrs.setdefault(nd.target, nd)
            if first is not nd:
                canon[nd] = first
            continue
        key = _key(nd, canon)
        if key is None:
            continue
        first = seen.setdefault(key, nd)
        if first is not nd:
            canon[nd] = first
    return canon


def identical_ops(graph: torch.fx.Graph) -> int:
    """How many ops of ``graph`` repeat an earlier one (same op, same arguments).
    O(nodes)."""
    return sum(1 for nd in _groups(graph) if nd.op == "call_function"
               and nd.target is not operator.getitem)


def merge_identical_ops(gm: torch.fx.GraphModule) -> int:
    """Replace every op that repeats an earlier one by that one (common
    subexpression elimination) in a functional program (no op writes into a
    value: :func:`mutates` is False; else merging could join reads made
    before and after a write).  Returns how many ops were merged.  O(nodes)."""
    if mutates(gm.graph):
        raise ValueError("merge_identical_ops needs a functional program")
    canon = _groups(gm.graph)
    merged = 0
    for nd in reversed(list(gm.graph.nodes)):
        if nd in canon:
            nd.replace_all_uses_with(canon[nd])
            gm.graph.erase_node(nd)
            merged += nd.op == "call_function" and nd.target is not operator.getitem
    if canon:
        gm.recompile()
    return merged

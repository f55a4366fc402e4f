"""In-place ops of a captured program (``relu_``, ``x += y``, ``y[:, :2] = z``).

``torch.export`` keeps a module's in-place ops (``nn.ReLU(inplace=True)``,
``out += shortcut``).  Where an op writes into a view of another value, the
value viewed changes too, and the capture has the program functionalized
(``run_decompositions``: a second trace of the whole program, as long as the
export itself).  Most writes touch a value nothing else reads: those are the
same computation as their out-of-place twins, and rewritten as such
(:func:`write_out_of_place`), so only programs that need it are traced again.
"""

from __future__ import annotations

import operator

import torch
import torch.fx

from .identical import writes_into_argument
from .symbolic import base_packet

__all__ = ["write_out_of_place", "writes_into_view"]


def _returns_alias(target, write: bool) -> bool:
    """Whether op ``target``'s first output aliases an argument (a view:
    ``write=False``; an in-place op's ``self``: ``write=True``)."""
    schema = getattr(target, "_schema", None)
    info = schema.returns[0].alias_info if schema is not None and schema.returns else None
    return info is not None and bool(info.is_write) == write


def _view(a) -> bool:
    """A view op's output, or an element of a list of views (chunk, split, unbind)."""
    if not isinstance(a, torch.fx.Node) or a.op != "call_function":
        return False
    if a.target is operator.getitem:
        return _view(a.args[0])
    return _returns_alias(a.target, False)


def writes_into_view(graph: torch.fx.Graph) -> bool:
    """Whether an in-place op of ``graph`` writes into a view of another value
    (its first argument is an op's aliasing output: a slice, select, narrow,
    view ..., or one of the views chunk / split / unbind return), which
    changes the value viewed as well.  O(nodes)."""
    return any(nd.op == "call_function" and _returns_alias(nd.target, True) and nd.args
               and _view(nd.args[0]) for nd in graph.nodes)


def _twin(target):
    """The out-of-place overload of an in-place op that writes only into its
    first argument and returns it (``relu_.default`` -> ``relu.default``), or None."""
    schema = getattr(target, "_schema", None)
    packet = base_packet(target)        # as the rules read an in-place op
    if schema is None or packet is getattr(target, "overloadpacket", None) or \
            not _returns_alias(target, True):
        return None
    written = [a for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
    if len(written) != 1 or written[0] is not schema.arguments[0]:
        return None
    twin = getattr(packet, target._overloadname, None)
    return twin if twin is not None and not writes_into_argument(twin) else None


def _unread(value: torch.fx.Node) -> bool:
    """Whether a write into ``value`` is seen by nothing but the writer: the
    value, and every value it is a view of, is read by one op only (the
    writer, or the view taken of it), and the base is an op's fresh output
    (not an input, a parameter or a buffer)."""
    while True:
        if value.op != "call_function" or len(value.users) != 1:
            return False
        if value.target is operator.getitem or not _returns_alias(value.target, False):
            break
        value = value.args[0]          # a view: its base sees the write too
    schema = getattr(value.target, "_schema", None)
    return schema is not None and not any(r.alias_info is not None for r in schema.returns)


def write_out_of_place(gm: torch.fx.GraphModule) -> int:
    """Rewrite every in-place op whose write nothing else sees (:func:`_unread`:
    ``conv -> batch_norm -> relu_``; ``out[:, :c] += shortcut`` of an ``out``
    read nowhere else) as its out-of-place twin, in place in ``gm``; the op's
    readers already read its output.  Returns how many were rewritten.  O(nodes)."""
    count = 0
    for nd in gm.graph.nodes:
        if nd.op != "call_function" or not nd.args or not isinstance(nd.args[0], torch.fx.Node):
            continue
        twin = _twin(nd.target)
        if twin is not None and _unread(nd.args[0]):
            nd.target = twin
            count += 1
    if count:
        gm.recompile()
    return count

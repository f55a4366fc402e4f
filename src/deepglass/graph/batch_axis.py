"""Where a value's batch axis is: values stacked in front of it (``stack(.., 0)``,
``unsqueeze(0)``), and layers that PyTorch ran in their unbatched form
(SPEC §1: one sample's neurons, the batch axis none of them)."""

from __future__ import annotations

import math

import torch
import torch.fx

from ..errors import DeepglassError
from .symbolic import _name_of, _opname

__all__ = ["BatchAxes", "check_batched", "stacked_in_front", "unsqueezed_in_front",
           "batch_axis_removed", "reduces_batch"]


def check_batched(ip, n, unbatched: bool) -> None:
    """Refuse a convolution run in PyTorch's unbatched form (C, H, W) on a value
    whose leading dimension is the batch axis: an input shape given without its
    channel dimension, for a layer of one input channel, runs the sample as one
    unbatched input whose channel is the batch axis (a graph without that
    dimension, and wrong at any other batch size).  One made from a sample whose
    batch axis was taken away (:func:`batch_axis_removed`) is read as it is."""
    if unbatched:
        raise DeepglassError(
            f"layer {ip.where(n)!r} reads a value without a batch axis (PyTorch's unbatched "
            "form): an input shape given without its channel dimension, the batch axis taken "
            "for the layer's channel, or a batch axis squeezed away in forward; give the "
            "input shape with the channel dimension (1,H,W rather than H,W; 1,L rather than L)")


def batch_axis_removed(node, depth: int = 256) -> bool:
    """Whether fx ``node``'s value was made from a sample with its batch axis
    taken away: a ``select`` / ``unbind`` / ``squeeze`` of dimension 0 among its
    ancestors (``conv(x[i])`` in a loop over the batch, ``conv(x.squeeze(0))``).
    Then a layer run on it in PyTorch's unbatched form reads real channels; else
    its leading dimension is still the batch axis.  O(ancestors), at most
    ``depth`` of them."""
    seen, todo = set(), [node]
    while todo and len(seen) < depth:
        nd = todo.pop()
        if not isinstance(nd, torch.fx.Node) or nd in seen or nd.op != "call_function":
            continue
        seen.add(nd)
        name, a = _opname(nd.target).split(".")[0], nd.args
        if name in ("select", "unbind", "squeeze"):
            dims = a[1] if len(a) > 1 else nd.kwargs.get("dim", 0)
            dims = dims if isinstance(dims, (list, tuple)) else [dims]
            if 0 in dims:
                return True
        todo.extend(nd.all_input_nodes)
    return False


#: ops whose output reshapes their input (the batch axis followed by its
#: place in the flat order of elements)
_RESHAPES = {"view", "reshape", "_unsafe_view", "flatten", "unflatten", "_reshape_alias"}
#: ops that take one position along a dimension away
_TAKES = {"select", "unbind"}


class BatchAxes:
    """Which axes of each value of an fx graph hold the batch (SPEC §1: the graph
    is one sample's; a statistic over the batch is none of a sample's).

    The batch axis starts at 0 in every network input and is followed through
    the ops that move it (``permute``, ``transpose``, ``movedim``), add or take
    away axes before it (``unsqueeze``, ``squeeze``, ``select``, reductions),
    reshape around it (``view``: the axis that holds its place in the flat
    order, or the axis it is merged into), and take it away (``select`` /
    ``unbind`` / ``squeeze`` of it: one sample's value, which has no batch
    axis); samples put back side by side (``stack`` / ``cat`` of values taken
    out of the batch) make the stacking axis a batch axis again.  Other ops
    align the axes of several input values from the right, as broadcasting
    does, and keep those of one in place.  Each node is visited once, in graph order, when first asked for
    (O(nodes) in all).

    ``value(node)`` gives a node's real value (for shapes); ``depends``: the
    nodes computed from a network input (the others have no batch axis).
    """

    def __init__(self, graph: torch.fx.Graph, depends, value):
        self._nodes, self._pos, self._depends, self._value = list(graph.nodes), 0, depends, value
        self._axes: dict = {}

    def __call__(self, node) -> frozenset:
        """The axes of ``node``'s value that hold (or are merged with) the batch;
        empty for one sample's value or a value computed from no input."""
        return self._state(node)[0]

    def _state(self, node) -> tuple[frozenset, bool]:
        """(batch axes, whether a sample was taken out of the batch on the way)."""
        while node not in self._axes and self._pos < len(self._nodes):
            nd = self._nodes[self._pos]
            self._pos += 1
            self._axes[nd] = self._rule(nd) if nd in self._depends else (frozenset(), False)
        return self._axes.get(node, (frozenset(), False))

    def _rule(self, nd) -> tuple[frozenset, bool]:
        if nd.op == "placeholder":
            return frozenset({0}), False
        parts = [p for p in nd.all_input_nodes if p in self._depends]
        states = [self._state(p) for p in parts]
        took = any(t for _, t in states)
        name = _name_of(nd.target) if nd.op == "call_function" else ""
        out, a = _ndim(self._value(nd)), nd.args
        if not parts or out is None:
            return frozenset(), took
        src, axes = parts[0], states[0][0]
        nin = _ndim(self._value(src))
        if nin is None:
            return frozenset(), took
        if name == "permute" and a[0] is src:
            order = [int(d) % nin for d in a[1]]
            return frozenset(i for i, d in enumerate(order) if d in axes), took
        if name in ("transpose", "swapaxes", "swapdims", "t", "movedim") and a[0] is src:
            order = _moved(name, a, nd.kwargs, nin)
            return frozenset(i for i, d in enumerate(order) if d in axes), took
        if name == "unsqueeze" and a[0] is src:
            d = int(a[1]) % out
            return frozenset(b + (b >= d) for b in axes), took
        if (name in _TAKES or name == "squeeze") and a[0] is src:
            sin = tuple(self._value(src).shape)
            gone = _squeezed(a, nd.kwargs, sin) if name == "squeeze" else \
                {int(a[1] if len(a) > 1 else nd.kwargs.get("dim", 0)) % nin}
            return (frozenset(b - sum(g < b for g in gone) for b in axes if b not in gone),
                    took or bool(gone & axes))
        if name in ("stack", "cat", "concat"):
            d = int(a[1] if len(a) > 1 else nd.kwargs.get("dim", 0)) % out
            shift = name == "stack"
            union = {b + (shift and b >= d) for ax, _ in states for b in ax}
            if any(t and not ax for ax, t in states):
                union.add(d)        # samples put back side by side along d
            return frozenset(union), took
        if name in _RESHAPES and a[0] is src:
            return frozenset(_reshaped(axes, tuple(self._value(src).shape),
                                       tuple(_shape(self._value(nd))))), took
        if name in _OVER_DIMS and a[0] is src and out < nin:
            gone = _reduced_dims(nd, nin)
            return frozenset(b - sum(g < b for g in gone) for b in axes if b not in gone), took
        # anything else: the axes of several values aligned from the right, as
        # broadcasting does; those of one value kept in place (unfold, a matmul,
        # view_as_real add or take axes after the leading ones)
        union = set()
        for p, (ax, _) in zip(parts, states):
            shift = out - (_ndim(self._value(p)) or 0) if len(parts) > 1 else 0
            union |= {b + shift for b in ax if 0 <= b + shift < out}
        return frozenset(union), took


def _shape(v):
    if isinstance(v, (tuple, list)):
        v = next((t for t in v if isinstance(t, torch.Tensor)), None)
    return tuple(v.shape) if isinstance(v, torch.Tensor) else None


def _ndim(v):
    s = _shape(v)
    return None if s is None else len(s)


def _moved(name, a, kwargs, nd: int) -> list[int]:
    """The input axis at each output position of a transpose / movedim."""
    order = list(range(nd))
    if name == "t":
        return order[::-1] if nd == 2 else order
    if name == "movedim":
        src, dst = a[1], a[2]
        src = [int(s) % nd for s in (src if isinstance(src, (list, tuple)) else [src])]
        dst = [int(d) % nd for d in (dst if isinstance(dst, (list, tuple)) else [dst])]
        rest = iter(d for d in order if d not in src)
        placed = dict(zip(dst, src))
        return [placed[i] if i in placed else next(rest) for i in range(nd)]
    d0, d1 = int(a[1]) % nd, int(a[2]) % nd
    order[d0], order[d1] = order[d1], order[d0]
    return order


def _squeezed(a, kwargs, shape) -> set:
    dims = a[1] if len(a) > 1 else kwargs.get("dim")
    if dims is None:
        return {i for i, s in enumerate(shape) if s == 1}
    return {int(d) % len(shape) for d in _dims(dims) if shape[int(d) % len(shape)] == 1}


def _reshaped(axes, sin, sout) -> set:
    """Where the batch axes ``axes`` of a value of shape ``sin`` are in its
    reshape to ``sout``: an axis of size 1 (a batch of one) keeps its place in
    the flat order (the same count of elements before it, the same rank among
    the size-1 axes there); one the batch was merged into (``y.view(B * S, C,
    T)``, then of size ``S``) is split back with the batch outermost, at the
    first size-1 axis at its place (``view(B, S, C, T)``); else every output
    axis that holds part of it, the axis it is merged into."""
    out = set()
    for b in axes:
        p0 = math.prod(sin[:b])
        p1 = p0 * sin[b]
        rank = sum(1 for i in range(b) if sin[i] == 1 and math.prod(sin[:i]) == p0) \
            if sin[b] == 1 else 0
        ones = [j for j in range(len(sout)) if sout[j] == 1 and math.prod(sout[:j]) == p0]
        if len(ones) > rank:
            out.add(ones[rank])
            continue
        for j in range(len(sout)):
            q0 = math.prod(sout[:j])
            q1 = q0 * sout[j]
            if q0 < p1 and q1 > p0 or q0 <= p0 < q1:
                out.add(j)
    return out


def _dims(d) -> set:
    return set(d) if isinstance(d, (list, tuple)) else {d}


#: reductions whose dimensions are their second argument (or ``dim``)
_OVER_DIMS = set("mean sum amax amin max min var std var_mean std_mean linalg_vector_norm "
                 "norm cumsum".split())


def _reduced_dims(n, ndim: int) -> set | None:
    """The dimensions (in ``0..ndim-1``) reduction ``n`` reduces over: all of
    them where none is given; None for ``max(a, b)`` of two values."""
    name = _name_of(n.target)
    if name in ("linalg_vector_norm", "norm"):
        dims = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim")
    else:
        dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    if name in ("max", "min") and dims is None and len(n.args) > 1:
        return None             # max(a, b) of two values
    if dims is None or isinstance(dims, (list, tuple)) and not dims:
        return set(range(ndim))
    return {int(d) % ndim for d in _dims(dims)}


def reduces_batch(ip, n) -> bool:
    """Whether fx node ``n``, a reduction, reduces over an axis that holds the
    batch (:class:`BatchAxes`: dimension 0 of an input, wherever ``permute`` or
    ``view`` moved it; every dimension where none is given): a per-sample
    statistic it is not (SPEC §1b).  Not where the value is one sample's
    (``s.var()`` for each ``s`` in ``y.unbind(0)``).  O(1) once the nodes
    before ``n`` are visited."""
    real = ip.real(n.args[0]) if n.args else None
    if _name_of(n.target) not in _OVER_DIMS or not isinstance(real, torch.Tensor) or \
            real.ndim < 1:
        return False
    dims = _reduced_dims(n, real.ndim)
    return dims is not None and bool(dims & ip.batch_axes(n.args[0]))


def unsqueezed_in_front(node) -> bool:
    """Whether fx ``node`` is ``unsqueeze(x, 0)``: how core ATen writes a layer
    run unbatched (the batched layer of a batch of one, in front of the value's
    own batch axis)."""
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and \
        _opname(node.target).split(".")[0] == "unsqueeze" and \
        (node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")) == 0


def stacked_in_front(ip, node, depth: int = 32) -> bool:
    """Whether dim 0 of fx ``node``'s value holds values stacked in front of the
    batch (``stack(.., 0)``, ``unsqueeze(0)``, a ``cat`` of such along 0, and
    elementwise ops of them), not one sample's values folded into the batch
    (``y.view(-1, 1, H, W)``, which at batch 2 would mix samples)."""
    if depth == 0 or not isinstance(node, torch.fx.Node) or node.op != "call_function":
        return False
    name, a = _opname(node.target).split(".")[0], node.args
    if name in ("stack", "unsqueeze"):
        dim = a[1] if len(a) > 1 else node.kwargs.get("dim", 0)
        dim = dim % ip.real(node).ndim if isinstance(ip.real(node), torch.Tensor) else dim
        return dim == 0 or name == "unsqueeze" and dim > 0 and \
            stacked_in_front(ip, a[0], depth - 1)
    if name in ("cat", "concat"):
        return (a[1] if len(a) > 1 else node.kwargs.get("dim", 0)) == 0 and \
            all(stacked_in_front(ip, p, depth - 1) for p in a[0])
    if name == "expand":
        return stacked_in_front(ip, a[0], depth - 1)
    out = ip.real(node)
    if not isinstance(out, torch.Tensor):
        return False
    if name in ("view", "reshape", "_unsafe_view") and isinstance(a[0], torch.fx.Node) and \
            _opname(a[0].target).split(".")[0] in ("cat", "concat") and \
            (a[0].args[1] if len(a[0].args) > 1 else 0) == 0:
        # core ATen's stack: batch-1 values side by side along dim 0, viewed (k, 1, ...)
        parts = [ip.real(p) for p in a[0].args[0]]
        return out.ndim > 1 and out.shape[0] == len(parts) and out.shape[1] == 1 and all(
            isinstance(p, torch.Tensor) and p.shape[0] == 1 and p.shape[1:] == out.shape[2:]
            for p in parts)
    # elementwise: every part computed from the input has the value's leading
    # dimension, or fewer dimensions (it broadcasts along the stacked one)
    parts = [p for p in node.all_input_nodes if p in ip.input_dependent()]
    real = [ip.real(p) for p in parts]
    if not parts or not all(isinstance(r, torch.Tensor) for r in real):
        return False
    return all(r.ndim < out.ndim or r.shape[0] in (1, out.shape[0]) and
               stacked_in_front(ip, p, depth - 1) for p, r in zip(parts, real))

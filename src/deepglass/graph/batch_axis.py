"""Where a value's batch axis is: values stacked in front of it (``stack(.., 0)``,
``unsqueeze(0)``), and layers that PyTorch ran in their unbatched form
(SPEC §1: one sample's neurons, the batch axis none of them)."""

from __future__ import annotations

import torch
import torch.fx

from ..errors import DeepglassError
from .stat_search import ancestors
from .symbolic import _name_of, _opname

__all__ = ["check_batched", "stacked_in_front", "unsqueezed_in_front", "batch_axis_removed",
           "one_sample", "reduces_batch"]


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


#: ops that move axes: a batch axis taken away after one is not known to be it
_AXIS_MOVES = {"permute", "transpose", "movedim", "t", "swapaxes", "swapdims"}
#: ops that put samples (back) side by side along an axis
_REBATCH = {"stack", "cat", "concat", "unsqueeze"}


def one_sample(node, depends) -> bool:
    """Whether fx ``node``'s value is made from one sample alone: every path from
    it back to a network input (through the input-dependent nodes ``depends``)
    passes a ``select`` / ``unbind`` / ``squeeze`` of dimension 0 with no axis
    moved before it, and no ``stack`` / ``cat`` after it (samples put back
    side by side).  O(ancestors)."""
    if not isinstance(node, torch.fx.Node) or node not in depends:
        return False
    seen, stack = set(), [node]
    while stack:
        u = stack.pop()
        if u in seen or u not in depends:
            continue
        seen.add(u)
        if u.op != "call_function":
            return False        # a batched input reached
        name = _name_of(u.target)
        if name in _REBATCH:
            return False
        if name in ("select", "unbind", "squeeze") and \
                0 in _dims(u.args[1] if len(u.args) > 1 else u.kwargs.get("dim", 0)) and \
                not any(_name_of(a.target) in _AXIS_MOVES for a in ancestors(u.args[0])
                        if a in depends and a.op == "call_function"):
            continue            # this path holds one sample
        stack.extend(u.all_input_nodes)
    return True


def _dims(d) -> set:
    return set(d) if isinstance(d, (list, tuple)) else {d}


#: reductions whose dimensions are their second argument (or ``dim``)
_OVER_DIMS = set("mean sum amax amin max min var std var_mean std_mean linalg_vector_norm "
                 "norm cumsum".split())


def reduces_batch(n, ndim: int, depends) -> bool:
    """Whether fx node ``n``, a reduction of a value of ``ndim`` dimensions,
    reduces over the batch (dimension 0, or every dimension where none is
    given): a per-sample statistic it is not (SPEC §1b).  Not where the
    value is one sample's (:func:`one_sample`: ``s.var()`` for each ``s`` in
    ``y.unbind(0)``)."""
    name = _name_of(n.target)
    if name not in _OVER_DIMS or ndim < 1 or one_sample(n.args[0], depends):
        return False
    if name in ("linalg_vector_norm", "norm"):
        dims = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim")
    else:
        dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    if name in ("max", "min") and dims is None and len(n.args) > 1:
        return False            # max(a, b) of two values
    if dims is None or isinstance(dims, (list, tuple)) and not dims:
        return True
    return 0 in {int(d) % ndim for d in ([dims] if isinstance(dims, int) else dims)}


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

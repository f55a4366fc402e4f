"""Writes at fixed positions: ``index_put``, ``scatter`` and the functionalized
in-place writes into a view (``slice_scatter``, ``select_scatter``, ``copy``)
(SPEC §1, §1b).

``F.fold`` / ``nn.Fold`` lowers to ``index_put(zeros, idx, patches,
accumulate=True)``: every output element is the sum of the patch elements
written to it (overlap-add), a sum of copies of nodes; without overlap
(stride equal to the kernel: the inverse of ``F.unfold``) each output element
is one copy, a re-indexing.  ``x[idx] = v`` (``accumulate=False``) keeps the
base's nodes where nothing is written and the written value's elsewhere, a
re-indexing too.  ``scatter(x, dim, index, src)`` is the same write with its
positions given along one dimension, ``scatter_add`` and
``scatter_reduce(..., "sum")`` its accumulating form, and
``scatter_reduce(..., "mean")`` that sum times 1 / (the number of terms) at
each position, a fixed factor.  A constant written has no node there (as
zero padding), and one added is a bias.  Positions must be fixed (not computed from
the input); a maximum or product over the written elements (``"amax"``,
``"amin"``, ``"prod"``) is refused.

The copies are laid out in *layers*: layer ``r`` holds, for every output
position, its ``r``-th written element (or no node, as zero padding); the
result is the sum of the layers (and of the base, for ``accumulate``), which
:func:`~deepglass.graph.sums.add_values` ends on one block, as a residual
addition.  O(n log n) in the n written elements to sort them by position,
then O(n + layers x output size).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .aten_rules import _is_max_pool, _no_nodes, _shape_rule
from .symbolic import _is_sym, _opname, as_tensor_of, reindexed
from .sums import add_values

__all__ = ["index_put", "scatter", "write_into_view"]

#: how many elements one output position may receive (the kernel size of a
#: fold): each is one more layer of copies, and one more edge per reader
MAX_WRITES_PER_POSITION = 4096


def _fill(kind: str) -> float:
    return 0.0 if kind == "scale" else -1     # no node: id -1, scale 0 (zero padding)


def index_put(ip, n, args, kwargs, real):
    """The rule of ``aten.index_put`` (see the module docstring)."""
    base, indices, values = args[0], args[1], args[2]
    accumulate = bool(args[3]) if len(args) > 3 else bool(kwargs.get("accumulate", False))
    if any(_is_sym(i) for i in indices if i is not None):
        _computed_positions(ip, n, "index_put")
    pos = torch.arange(real.numel(), dtype=torch.long).reshape(tuple(real.shape))
    # (a boolean mask indexes the positions of its True entries, as in torch; the
    # ids live on the CPU, the real indices where the model runs)
    idx = [None if i is None else torch.as_tensor(i).cpu() for i in ip.real(n.args[1])]
    target = pos[tuple(slice(None) if i is None else i if i.dtype == torch.bool else i.long()
                       for i in idx)]
    shape = tuple(target.shape)
    return _write(ip, n, "index_put", real, base, values, target,
                  lambda t: t.expand(shape), accumulate)


def scatter(ip, n, args, kwargs, real):
    """The rule of ``aten.scatter`` / ``scatter_add`` / ``scatter_reduce``
    (``"sum"``, ``"mean"``): ``out[..., index[..., j, ...], ...] (+)= src[..., j, ...]``
    along ``dim``, written as :func:`index_put` writes (see the module docstring)."""
    op = str(n.target.overloadpacket.__name__)
    base, dim, index = args[0], args[1], args[2]
    values = args[3] if len(args) > 3 else kwargs.get("src", kwargs.get("value"))
    reduce = args[4] if len(args) > 4 else kwargs.get("reduce")
    include_self = kwargs.get("include_self", args[5] if len(args) > 5 else True)
    if _is_sym(index):
        _computed_positions(ip, n, op)
    if op == "scatter_add":
        reduce = "sum"
    elif op == "scatter" and reduce is not None:
        reduce = {"add": "sum", "multiply": "prod"}.get(reduce, reduce)
    if reduce not in (None, "sum", "mean"):
        ip.unsupported(n, op, f"a {reduce!r} of the elements written to one position "
                       "chooses or multiplies per sample (supported: a write, 'sum', 'mean')")
    index = torch.as_tensor(ip.real(n.args[2])).cpu().long()
    shape = tuple(real.shape)
    dim = dim % len(shape)
    pos = torch.arange(real.numel(), dtype=torch.long).reshape(shape)
    # the output coordinates of each index entry: its own, but index[...] along dim
    coords = [torch.arange(s).reshape([-1 if a == d else 1 for a in range(index.dim())])
              for d, s in enumerate(index.shape)]
    coords[dim] = index
    target = pos[tuple(torch.broadcast_tensors(*coords))]
    part = tuple(slice(0, s) for s in index.shape)
    return _write(ip, n, op, real, base, values, target, lambda t: t[part],
                  reduce is not None, mean=reduce == "mean",
                  include_self=bool(include_self))


def _computed_positions(ip, n, op):
    ip.unsupported(n, op, "its positions are computed from the input (a scatter that "
                   "depends on the data has no fixed edges)")


def _write(ip, n, op, real, base, values, target, view, accumulate, mean=False,
           include_self=True):
    """Write ``view(values)`` at the flat positions ``target`` of ``base``
    (``real``'s shape), replacing or adding (``accumulate``; the base's terms
    left out where written unless ``include_self``); ``mean`` divides each
    written position by its number of terms."""
    shape = tuple(real.shape)
    if not _is_sym(values):
        # a constant written: no node there, as zero padding (SPEC §1); added to
        # the base, a bias
        if accumulate and include_self and not mean:
            return base if _is_sym(base) else None
        if any(_is_max_pool(u.target) for u in n.users):
            ip.unsupported(n, op, "a max pool reads a constant written into its input")
        values = _no_nodes(tuple(target.shape))
    values = ip.b.materialize(values)
    base = ip.b.materialize(base) if _is_sym(base) else base
    t = target.reshape(-1)
    # the written elements by position: runs of one position each, O(n log n)
    ts, order = torch.sort(t, stable=True)
    at, counts = torch.unique_consecutive(ts, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    layers = int(counts.max()) if t.numel() else 0
    if not accumulate and layers > 1:
        ip.unsupported(n, op, "a position written twice without accumulate "
                       "(the last write is not defined)")
    if layers > MAX_WRITES_PER_POSITION:
        ip.unsupported(n, op, f"{layers} elements written to one position")

    def written_values(kind):
        return view(as_tensor_of(kind)(values, None)).reshape(-1)

    if not accumulate:          # written into a constant base: the rest has no node
        keep = _is_sym(base)

        def run(kind):
            src = written_values(kind)
            out = (as_tensor_of(kind)(base, None).clone().reshape(-1) if keep else
                   torch.full((real.numel(),), _fill(kind), dtype=src.dtype, device=src.device))
            out[t] = src
            return out.reshape(shape)
        return reindexed([values] + ([base] if keep else []), run)

    def run_layers(kind):
        # layer r: the r-th element of every run longer than r (one gather of the
        # written values in position order, then reads in increasing order)
        src, outs = written_values(kind)[order], []
        for r in range(layers):
            live = counts > r
            out = torch.full((real.numel(),), _fill(kind), dtype=src.dtype, device=src.device)
            out[at[live]] = src[starts[live] + r]
            outs.append(out.reshape(shape))
        return outs

    written = torch.zeros(real.numel(), dtype=torch.bool)
    written[at] = True
    parts = list(reindexed([values], run_layers)) if layers else []
    if _is_sym(base):
        # (written over everywhere, nothing is kept: add_values drops such a part)
        parts.insert(0, base if include_self else reindexed(
            [base], lambda kind: _cleared(as_tensor_of(kind)(base, None), written, kind)))
    if mean:                    # torch counts the base as a term where include_self
        terms = torch.ones(real.numel(), dtype=torch.float64)
        terms[at] = counts.double() + float(include_self)
        terms = terms.reshape(shape)
        parts = [replace(v, scale=as_tensor_of("scale")(v, None) / terms) for v in parts]
    if not parts:               # nothing written into a constant
        return None
    total = parts[0]
    for part in parts[1:]:
        total = add_values(ip.b, total, part, shape[1:], ip.where(n),
                           lambda what, why: ip.unsupported(n, what, why))
    return total


def _cleared(x, written, kind):
    """``x`` without its elements at the ``written`` positions (no node there)."""
    out = x.clone()
    out.reshape(-1)[written] = _fill(kind)
    return out


def write_into_view(ip, n, args, kwargs, real):
    """``slice_scatter(base, src, ...)``, ``select_scatter`` and ``copy(dst,
    src)`` (an in-place write into a view, functionalized): the result holds
    ``src``'s nodes where it was written and ``base``'s elsewhere, a
    re-indexing.  A constant part (a value written that does not depend on the
    input, or a constant base) has no node, as zero padding (SPEC §1); a max
    pool reading a non-zero constant part is refused, as for padding."""
    parts = list(args)
    for i in (0, 1):
        if i < len(parts) and not _is_sym(parts[i]):
            const = ip.real(n.args[i])
            if not torch.is_tensor(const):
                const = torch.as_tensor(const)
            if bool((const != 0).any()) and any(_is_max_pool(u.target) for u in n.users):
                ip.unsupported(n, _opname(n.target), "a max pool reads a constant written "
                               "into its input")
            shape = tuple(const.shape)
            parts[i] = _no_nodes(shape)
    return _shape_rule(ip, n, tuple(parts), kwargs, real)

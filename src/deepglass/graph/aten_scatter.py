"""Writes at fixed positions: ``index_put`` (SPEC §1, §1b).

``F.fold`` / ``nn.Fold`` lowers to ``index_put(zeros, idx, patches,
accumulate=True)``: every output element is the sum of the patch elements
written to it (overlap-add), a sum of copies of nodes; without overlap
(stride equal to the kernel: the inverse of ``F.unfold``) each output element
is one copy, a re-indexing.  ``x[idx] = v`` (``accumulate=False``) keeps the
base's nodes where nothing is written and the written value's elsewhere, a
re-indexing too.  Positions must be fixed (not computed from the input).

The copies are laid out in *layers*: layer ``r`` holds, for every output
position, its ``r``-th written element (or no node, as zero padding); the
result is the sum of the layers (and of the base, for ``accumulate``), which
:func:`~deepglass.graph.symbolic.add_values` ends on one block, as a residual
addition.  O(written elements x log) to sort the positions.
"""

from __future__ import annotations

import torch

from .symbolic import _is_sym, add_values, as_tensor_of, reindexed

__all__ = ["index_put"]

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
        ip.unsupported(n, "index_put", "its positions are computed from the input (a "
                       "scatter that depends on the data has no fixed edges)")
    if not _is_sym(values):
        ip.unsupported(n, "index_put", "a constant written into a value (x[idx] = c): "
                       "write it with torch.where and a fixed mask")
    shape = tuple(real.shape)
    real_idx = ip.real(n.args[1])
    pos = torch.arange(real.numel(), dtype=torch.long).reshape(shape)
    # (a boolean mask indexes the positions of its True entries, as in torch; the
    # ids live on the CPU, the real indices where the model runs)
    idx = [None if i is None else torch.as_tensor(i).cpu() for i in real_idx]
    target = pos[tuple(slice(None) if i is None else i if i.dtype == torch.bool else i.long()
                       for i in idx)]
    values = ip.b.materialize(values)
    base = ip.b.materialize(base) if _is_sym(base) else base
    t = target.reshape(-1)
    order = torch.argsort(t, stable=True)
    ts = t[order]
    first = torch.searchsorted(ts, ts)                 # each run of one position
    rank = torch.empty_like(t)
    rank[order] = torch.arange(t.numel()) - first
    layers = int(rank.max()) + 1 if t.numel() else 0
    if not accumulate and layers > 1:
        ip.unsupported(n, "index_put", "a position written twice without accumulate "
                       "(the last write is not defined)")
    if layers > MAX_WRITES_PER_POSITION:
        ip.unsupported(n, "index_put", f"{layers} elements written to one position")
    src_shape = tuple(target.shape)
    sources: dict = {}      # the written values' ids / scales, flat: one per kind, every layer

    def layer(r: int, keep_base: bool):
        sel = rank == r

        def run(kind):
            if kind not in sources:
                sources[kind] = as_tensor_of(kind)(values, None).expand(src_shape).reshape(-1)
            src = sources[kind]
            if keep_base:
                out = as_tensor_of(kind)(base, None).clone().reshape(-1)
            else:
                out = torch.full((real.numel(),), _fill(kind), dtype=src.dtype)
            out[t[sel]] = src[sel]
            return out.reshape(shape)
        return reindexed([values] + ([base] if keep_base else []), run)

    if not accumulate:          # written into a constant base: the rest has no node
        return layer(0, _is_sym(base))
    total = base if _is_sym(base) else None
    for r in range(layers):
        part = layer(r, False)
        total = part if total is None else add_values(
            ip.b, total, part, shape[1:], ip.where(n),
            lambda what, why: ip.unsupported(n, what, why))
    return total

"""A transposed convolution cropped after it (SPEC §1b): the layer of the
cropped output, not the full one with its cropped rows left behind.

``conv_transpose(x)[..., :-1]`` (a "same" transposed convolution written out,
as TensorFlow pads it, or an exported ConvTranspose whose pads crop more at
the end) computes rows that nothing reads.  A transposed convolution is its
convolution's adjoint, and cropping its output is padding that convolution's
input more, so the cropped layer is again one block: its rows are nodes only
where they are kept.
"""

from __future__ import annotations

from .blocks import ConvTransposeBlock
from .symbolic import Pending, reads, uses

__all__ = ["cropped_transpose"]


def cropped_transpose(ip, n, p: Pending) -> Pending | None:
    """``p[dim, start:end]`` at fx node ``n`` (``aten.slice``, step 1, along a
    spatial dimension) where ``p`` is a transposed convolution no one else
    reads: the same layer with the cropped rows as more padding of its
    convolution's input; None where that does not apply (the slice then
    re-indexes the layer's nodes).  O(1)."""
    if len(p.terms) != 1 or type(p.terms[0][0]) is not ConvTransposeBlock:
        return None
    blk, src = p.terms[0]
    if blk.in_scale is not None:
        return None
    dim, start, end, step = (list(ip.real(n.args[1:])) + [0, None, None, 1][len(n.args) - 1:])[:4]
    nd = blk.conv.nd
    if getattr(ip.real(n.args[0]), "ndim", None) != 2 + nd:
        return None                     # (an unbatched value: dimensions counted otherwise)
    dim = dim + 2 + nd if dim < 0 else dim
    if step != 1 or not 2 <= dim < 2 + nd:
        return None
    size = blk.out_shape[dim - 1]
    lo, hi = slice(start, end).indices(size)[:2]
    if hi <= lo or (lo, hi) == (0, size):
        return None
    if blk.out_scale is not None and _extent(blk.out_scale, dim - 1, len(blk.out_shape)) != 1:
        return None                     # a factor per row: not cropped here
    # the layer must be read by this slice only, under every node that holds it
    # (a batch norm folded into it holds it too, and reads the node before it)
    holders = {m for m, v in ip.sym.items() if v is p}
    if sum(uses(m) for m in holders) - sum(reads(u, m) for m in holders for u in holders) != 1:
        return None
    pads = list(blk.conv.padding)
    pads[dim - 2] = (pads[dim - 2][0] + lo, pads[dim - 2][1] + size - hi)
    shape = list(blk.out_shape)
    shape[dim - 1] = hi - lo
    new = ConvTransposeBlock(blk.conv.weight, blk.in_shape, tuple(shape), blk.conv.stride, pads,
                             blk.conv.dilation, blk.conv.groups, module=blk.module)
    new.out_scale = blk.out_scale
    return Pending([(new, src)], tuple(shape), op=p.op, name=p.name, nonneg=p.nonneg)


def _extent(t, axis: int, ndim: int) -> int:
    """The extent of ``t`` (broadcast against a tensor of ``ndim`` dims) along ``axis``."""
    k = axis - (ndim - t.ndim)
    return 1 if k < 0 else int(t.shape[k])

"""Which stencils run one convolution of the compiled engine's layout (SPEC §2):
the parts of its input and output that are runs of channels of node blocks
(:func:`source_parts`), and one stencil per pair of parts (:func:`layer_parts`).

A convolution of a concatenation is the sum of its parts' convolutions with the
matching columns of the weights, so each part is a stencil of its own
(DenseNet's, Inception's and U-Nets' concatenations, a chunk of a block's
channels, and a channel shuffle: the channels a block gives, wherever the
shuffle puts them).  Under groups a part may not span two groups: a grouped
convolution whose input is one block's channels in order is one grouped
stencil; any other grouped input (ShuffleNet V1's grouped 1x1 convolutions of
a channel shuffle or of a concatenation) is split per group, each group a
convolution without groups that writes its own output channels.
"""

from __future__ import annotations

import itertools
import math
import weakref
from typing import NamedTuple

import numpy as np

from ..graph import SignedGraph
from ..graph.blocks.conv import ConvTransposeBlock
from ..graph.unshared import UnsharedConvTransposeBlock

#: the transposed convolutions: their stencil is the convolution back to their sources
TRANSPOSED = (ConvTransposeBlock, UnsharedConvTransposeBlock)

#: most stencils one grouped convolution is split into: each is a loop in the
#: kernel's flip of every node of its blocks (a depthwise convolution of a
#: shuffle would be one stencil per channel: its few edges per node stay CSR)
MAX_GROUP_PARTS = 32

#: source_parts' answers, per graph object and block
_PARTS: "weakref.WeakKeyDictionary[SignedGraph, dict]" = weakref.WeakKeyDictionary()


class Part(NamedTuple):
    """One stencil of a convolution: it reads channels ``[c0, c0 + len(chans) *
    groups)`` of node block ``src`` and writes channels ``[d0, d0 +
    len(ochans))`` of node block ``dst``, with the weights' input columns
    ``chans`` (within a group) and output rows ``ochans``, in that order."""

    src: object
    c0: int
    chans: np.ndarray
    dst: object
    d0: int
    ochans: np.ndarray
    groups: int


def source_parts(graph: SignedGraph, b):
    """The parts of a convolution's input that stencils read: ``[(node block,
    first channel in it, input channels)]``, each a run of consecutive
    channels of one node block of the input's spatial shape (or, where the
    input is a spatial padding of such blocks, of the shape inside the
    padding: :func:`source_pad`), read by the given input channels (in the
    run's order); None where the input is not made so.  ``b`` is a
    convolution or a transposed one (whose input is its stencil's output).
    O(input size); cached per graph and block.
    """
    return _parts_and_pad(graph, b)[0]


def source_pad(graph: SignedGraph, b):
    """Where convolution ``b`` reads its source blocks through a spatial padding
    that repeats their own elements (reflect, replicate, circular: CycleGAN's
    ``ReflectionPad2d``): ``(lo, inner)``, the padding before the blocks'
    positions and their spatial shape, per spatial axis; None where it reads
    them directly.  The stencil is then the convolution of the blocks with
    ``lo`` more zero padding, and the edges from the padding's elements
    (:func:`ring_taps`) are explicit."""
    return _parts_and_pad(graph, b)[1]


def _parts_and_pad(graph: SignedGraph, b):
    cache = _PARTS.setdefault(graph, {})
    if id(b) in cache:
        return cache[id(b)]
    nbs = graph.node_blocks
    C, spatial = b.in_shape[0], tuple(b.in_shape[1:])
    P = math.prod(spatial)
    ids = source_ids(b).reshape(C, P)
    starts = np.array([nb.offset for nb in nbs], dtype=np.int64)
    first, pad, inner = ids[:, 0], None, spatial
    if not (P == 1 or np.array_equal(ids, first[:, None] + np.arange(P))):
        found = None if isinstance(b, TRANSPOSED) else _padding(ids, spatial, nbs, starts)
        if found is None:
            cache[id(b)] = None, None
            return cache[id(b)]
        first, pad, inner = found
    P = math.prod(inner)
    parts = None
    k = np.searchsorted(starts, first, side="right") - 1
    rel = first - starts[k]
    if all(tuple(nbs[j].shape[1:]) == inner for j in np.unique(k)) and not np.any(rel % P):
        cb = rel // P
        order = np.lexsort((cb, k))          # by block, then by its channel
        ks, cbs = k[order], cb[order]
        brk = np.flatnonzero((np.diff(ks) != 0) | (np.diff(cbs) != 1)) + 1
        parts = [(nbs[int(ks[a])], int(cbs[a]), order[a:e])
                 for a, e in zip(np.r_[0, brk], np.r_[brk, C])]
    cache[id(b)] = parts, (pad, inner) if parts is not None and pad is not None else None
    return cache[id(b)]


def _padding(ids, spatial, nbs, starts):
    """``(first ids, lo, inner shape)`` where every channel of the input ``ids``
    (C, P) is, inside a padding of ``lo`` before, the positions of one node
    block channel in order; else None.  Tries each ``lo`` up to the padding
    (a few per axis)."""
    C = ids.shape[0]
    first = ids.min(axis=1)
    k = np.searchsorted(starts, first, side="right") - 1
    inner = tuple(nbs[int(k[0])].shape[1:])
    if k[0] < 0 or len(inner) != len(spatial) or inner == spatial \
            or any(i > s for i, s in zip(inner, spatial)):
        return None
    grid = ids.reshape((C,) + spatial)
    want = first[:, None] + np.arange(math.prod(inner))
    for lo in itertools.product(*(range(s - i + 1) for s, i in zip(spatial, inner))):
        window = (slice(None),) + tuple(slice(a, a + i) for a, i in zip(lo, inner))
        if np.array_equal(grid[window].reshape(C, -1), want):
            return first, lo, inner
    return None


def ring_taps(conv, pad):
    """The taps of convolution ``conv`` (a :class:`~deepglass.graph.blocks.ConvBlock`
    geometry) that read the padding around its source blocks (``pad`` =
    ``(lo, inner)`` of :func:`source_pad`): ``[(t, l, q)]``, per kernel tap
    ``t`` (flat, C order) the output positions ``l`` and the input positions
    ``q`` (flat, of the padded input) it reads there.  O(output positions x
    taps)."""
    lo, inner = pad
    spatial, out = tuple(conv.in_shape[1:]), tuple(conv.out_shape[1:])
    kernel = tuple(conv.weight.shape[2:])
    per_axis = []
    for d in range(len(spatial)):
        o = np.arange(out[d])[:, None]
        q = o * conv.stride[d] - conv.padding[d][0] + np.arange(kernel[d]) * conv.dilation[d]
        valid = (q >= 0) & (q < spatial[d])
        per_axis.append((q, valid, valid & (q >= lo[d]) & (q < lo[d] + inner[d])))
    taps = []
    for t, tap in enumerate(itertools.product(*(range(k) for k in kernel))):
        valid = inside = np.ones(out, dtype=bool)
        q = np.zeros(out, dtype=np.int64)
        for d, (qd, vd, idd) in enumerate(per_axis):
            shape = [1] * len(out)
            shape[d] = out[d]
            valid = valid & vd[:, tap[d]].reshape(shape)
            inside = inside & idd[:, tap[d]].reshape(shape)
            q = q * spatial[d] + np.where(vd[:, tap[d]], qd[:, tap[d]], 0).reshape(shape)
        ring = np.flatnonzero(valid & ~inside)
        if len(ring):
            taps.append((t, ring, q.reshape(-1)[ring]))
    return taps


def _group_runs(parts, per: int):
    """Split ``parts`` (:func:`source_parts`) so that none spans two groups of
    ``per`` channels: ``[(node block, first channel, channels, whole)]``,
    ``whole`` where the piece is whole groups in order (``channels`` a range
    from a group's start), else the piece lies in one group."""
    out = []
    for nb, c0, chans in parts:
        lo = int(chans[0])
        if np.array_equal(chans, lo + np.arange(len(chans))):
            # in order: a partial group, whole groups, a partial group
            hi = lo + len(chans)
            cuts = sorted({lo, hi, min(hi, -(-lo // per) * per), max(lo, hi // per * per)})
            for a, e in zip(cuts[:-1], cuts[1:]):
                whole = a % per == 0 and e % per == 0
                out.append((nb, c0 + a - lo, chans[a - lo:e - lo], whole))
            continue
        # out of order (a shuffle): pieces of one group each
        grp = chans // per
        brk = np.flatnonzero(np.diff(grp) != 0) + 1
        out += [(nb, c0 + int(a), chans[a:e], False)
                for a, e in zip(np.r_[0, brk], np.r_[brk, len(chans)])]
    return out


def layer_parts(graph: SignedGraph, b) -> list[Part] | None:
    """The stencils of convolution ``b`` (a transposed one, an unshared one),
    one per part of its stencil's input or output (:func:`source_parts`):
    several where that is a concatenation, a chunk or a shuffle.  Under
    groups a part is whole groups in order (a grouped stencil of those
    groups) or lies in one group (that group's convolution, without groups);
    past :data:`MAX_GROUP_PARTS` of them, None.  A transposed convolution's
    stencil is the convolution from the block's destination back to its
    source parts.  None where :func:`source_parts` is."""
    parts = source_parts(graph, b)
    if parts is None:
        return None
    dst = graph.node_blocks[b.dst]
    transposed = isinstance(b, TRANSPOSED)
    conv = b.conv if transposed else b
    g = conv.groups
    cin_g, cout_g = conv.in_shape[0] // g, conv.out_shape[0] // g
    whole_dst = dst, 0, np.arange(dst.shape[0])
    if g == 1:
        if transposed:
            return [Part(dst, 0, np.arange(cin_g), nb, c0, chans, 1) for nb, c0, chans in parts]
        return [Part(nb, c0, chans, *whole_dst, 1) for nb, c0, chans in parts]
    # the groups' channels on the parts' side, and on the other side
    per, other = (cout_g, cin_g) if transposed else (cin_g, cout_g)
    pieces = _group_runs(parts, per)
    if len(pieces) > MAX_GROUP_PARTS:
        return None
    out = []
    for nb, c0, chans, whole in pieces:
        k0 = int(chans[0]) // per
        n = len(chans) // per if whole else 1
        theirs = k0 * other + np.arange(n * other)         # the other side's channels
        if transposed:      # reads the groups' inputs in the destination, all columns
            out.append(Part(dst, int(theirs[0]), np.arange(cin_g), nb, c0, chans, n))
        else:               # a part of one group: its columns within the group
            out.append(Part(nb, c0, np.arange(cin_g) if whole else chans - k0 * per, dst,
                            int(theirs[0]), theirs, n))
    return out


def source_ids(b) -> np.ndarray:
    """Graph ids of an edge block's sources, flat, in its input's C order."""
    if b.src_range is not None:
        return np.arange(*b.src_range, dtype=np.int64)
    return b.src_index.reshape(-1).cpu().numpy().astype(np.int64, copy=False)

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
    channels of one node block of the input's spatial shape, read by the
    given input channels (in the run's order); None where the input is not
    made so (padding or a spatial re-indexing in between).  ``b`` is a
    convolution or a transposed one (whose input is its stencil's output).
    O(input size); cached per graph and block.
    """
    cache = _PARTS.setdefault(graph, {})
    if id(b) in cache:
        return cache[id(b)]
    nbs = graph.node_blocks
    C, spatial = b.in_shape[0], tuple(b.in_shape[1:])
    P = math.prod(spatial)
    ids = source_ids(b).reshape(C, P)
    first = ids[:, 0]
    parts = None
    if P == 1 or np.array_equal(ids, first[:, None] + np.arange(P)):
        starts = np.array([nb.offset for nb in nbs], dtype=np.int64)
        k = np.searchsorted(starts, first, side="right") - 1
        rel = first - starts[k]
        ok = all(tuple(nbs[j].shape[1:]) == spatial for j in np.unique(k)) \
            and not np.any(rel % P)
        if ok:
            cb = rel // P
            order = np.lexsort((cb, k))          # by block, then by its channel
            ks, cbs = k[order], cb[order]
            brk = np.flatnonzero((np.diff(ks) != 0) | (np.diff(cbs) != 1)) + 1
            parts = [(nbs[int(ks[a])], int(cbs[a]), order[a:e])
                     for a, e in zip(np.r_[0, brk], np.r_[brk, C])]
    cache[id(b)] = parts
    return parts


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
        mine = chans - k0 * per                            # a convolution's columns in its group
        theirs = k0 * other + np.arange(n * other)         # the other side's channels
        if transposed:      # reads the groups' inputs in the destination, all columns
            out.append(Part(dst, int(theirs[0]), np.arange(cin_g), nb, c0, chans, n))
        else:
            out.append(Part(nb, c0, np.arange(cin_g) if whole else mine, dst, int(theirs[0]),
                            theirs, n))
    return out


def source_ids(b) -> np.ndarray:
    """Graph ids of an edge block's sources, flat, in its input's C order."""
    if b.src_range is not None:
        return np.arange(*b.src_range, dtype=np.int64)
    return b.src_index.reshape(-1).cpu().numpy().astype(np.int64, copy=False)

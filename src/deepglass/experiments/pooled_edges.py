"""N2 at scale: every conv and dense edge weight pooled and dealt out at random
over the same edge positions (SPEC §3; :mod:`deepglass.experiments.nulls`).

Convolutions become :class:`~deepglass.graph.unshared.UnsharedConvBlock` (one
stored weight per edge, laid out like the unfolded convolution); the pooled
weights are permuted by :func:`deepglass.experiments.shuffle.shuffled_pool`
on the CPU (no index list) or by ``torch.randperm`` on a device.  Memory: the
flat buffer plus the new blocks, about 2 x itemsize bytes per edge.
"""

from __future__ import annotations

import copy
import math
from typing import Iterator

import numpy as np
import torch
from numba import njit

from ..errors import TooLargeError
from ..graph import ConvBlock, DenseBlock, EdgeBlock, SignedGraph
from ..graph.blocks import ConvTransposeBlock
from ..graph.unshared import UnsharedConvBlock, UnsharedConvTransposeBlock
from .shuffle import keyed_generator as _generator
from .shuffle import shuffled_pool

__all__ = ["n2_blocks"]

#: weights per piece when pooling edge weights (bounds the per-piece label sort)
_PIECE = 1 << 22


class _DenseEdges:
    """Edges of a dense block, in (out, in) order, scales applied."""

    def __init__(self, b: DenseBlock, device="cpu"):
        self.block = b
        self.dev = torch.device(device)
        out_f, in_f = b.weight.shape
        self.rows = max(1, _PIECE // max(1, in_f))
        self.n = out_f * in_f

    def sizes(self) -> list[int]:
        out_f, in_f = self.block.weight.shape
        return [(min(out_f, r + self.rows) - r) * in_f for r in range(0, out_f, self.rows)]

    def tensor_pieces(self) -> Iterator[torch.Tensor]:
        """The edge weights, a piece at a time, on the source's device."""
        b = self.block
        W = b.weight.detach().to(self.dev)
        if b.in_scale is not None:
            W = W * b.in_scale.to(self.dev).reshape(1, -1).to(W.dtype)
        if b.out_scale is not None:
            W = W * torch.broadcast_to(b.out_scale.to(self.dev),
                                       b.out_shape).reshape(-1, 1).to(W.dtype)
        for r in range(0, W.shape[0], self.rows):
            yield W[r:r + self.rows].reshape(-1)

    def pieces(self) -> Iterator[np.ndarray]:
        for w in self.tensor_pieces():
            yield w.cpu().numpy()

    def build_tensor(self, values: torch.Tensor) -> EdgeBlock:
        return self.block.with_weight(values.reshape(self.block.weight.shape).clone(),
                                      keep_scales=False)

    def build(self, values: np.ndarray) -> EdgeBlock:
        return self.build_tensor(torch.from_numpy(values))


class _ConvEdges:
    """Edges of a conv (or unshared conv) block in the unshared layout's order
    (position, output channel, input slot), in-bounds slots only, scales applied."""

    def __init__(self, b: ConvBlock | UnsharedConvBlock, device="cpu"):
        self.block = b
        self.dev = torch.device(device)
        geo = b.geometry() if isinstance(b, UnsharedConvBlock) else b
        placeholder = torch.zeros((), device=self.dev).expand(1, 1, 1)
        self.target = UnsharedConvBlock(geo, placeholder.expand(
            math.prod(b.out_shape[1:]), geo.weight.shape[0], math.prod(geo.weight.shape[1:])))
        self.mask = self.target.valid_mask()                           # (L, K) on self.dev
        self.per_pos = (self.mask.sum(1) * self.target.c_out).cpu()     # edges per position
        self.chunks = list(self.target._chunks())
        self.n = int(self.per_pos.sum())

    def sizes(self) -> list[int]:
        return [int(self.per_pos[l0:l1].sum()) for l0, l1 in self.chunks]

    def _effective(self, l0: int, l1: int) -> torch.Tensor:
        b, t = self.block, self.target
        dev = self.dev
        if isinstance(b, UnsharedConvBlock):
            w = b.edge_weight[l0:l1].to(dev)
        else:
            w = b.weight.detach().to(dev).reshape(1, t.c_out, t.k_group).expand(l1 - l0, -1, -1)
        if b.in_scale is not None:   # per source element: unfold it like the input
            s = t.patches(b.in_scale.to(dev)[None].to(w.dtype))[l0:l1, 0, :]    # (l, G*K)
            grp = torch.arange(t.c_out, device=dev) // (t.c_out // t.groups)
            w = w * s.reshape(l1 - l0, t.groups, t.k_group)[:, grp]
        if b.out_scale is not None:
            s = torch.broadcast_to(b.out_scale.to(dev), b.out_shape).reshape(t.c_out, -1)
            w = w * s.T[l0:l1, :, None].to(w.dtype)
        return w

    def tensor_pieces(self) -> Iterator[torch.Tensor]:
        """In-bounds edge weights chunk by chunk, in the order of :meth:`pieces`
        (C order over (position, output channel, slot)), on the source's device."""
        for l0, l1 in self.chunks:
            w = self._effective(l0, l1)
            yield w[self.mask[l0:l1, None, :].expand(w.shape)]

    def build_tensor(self, values: torch.Tensor) -> EdgeBlock:
        t = self.target
        store = torch.zeros((t.n_positions, t.c_out, t.k_group), dtype=values.dtype,
                            device=values.device)
        store[self.mask[:, None, :].expand(store.shape)] = values
        return UnsharedConvBlock(t.geometry(), store)

    def pieces(self) -> Iterator[np.ndarray]:
        mask = self.mask.cpu().numpy()
        for (l0, l1), m in zip(self.chunks, self.sizes()):
            w = self._effective(l0, l1)
            out = np.empty(m, dtype=torch.empty(0, dtype=w.dtype).numpy().dtype)
            _take_valid(w.cpu().numpy(), mask[l0:l1], out)
            yield out

    def build(self, values: np.ndarray) -> EdgeBlock:
        t = self.target
        store = torch.zeros((t.n_positions, t.c_out, t.k_group),
                            dtype=torch.from_numpy(values[:0]).dtype)
        _put_valid(store.numpy(), self.mask.cpu().numpy(), values)
        return UnsharedConvBlock(t.geometry(), store)


class _TransposedEdges(_ConvEdges):
    """Edges of a transposed convolution: its convolution's edges reversed,
    the block's scales moved to the convolution's other side; dealt out into
    the same block around an unshared convolution."""

    def __init__(self, b: ConvTransposeBlock, device="cpu"):
        conv = copy.copy(b.conv)
        conv.in_scale, conv.out_scale = None, b.in_scale
        if b.out_scale is not None:     # read per source element, as an input's scale is
            conv.in_scale = torch.broadcast_to(b.out_scale, conv.in_shape).contiguous()
        super().__init__(conv, device)
        self.outer = b

    def _wrap(self, unshared: UnsharedConvBlock) -> EdgeBlock:
        return UnsharedConvTransposeBlock(self.outer, unshared)

    def build_tensor(self, values: torch.Tensor) -> EdgeBlock:
        return self._wrap(super().build_tensor(values))

    def build(self, values: np.ndarray) -> EdgeBlock:
        return self._wrap(super().build(values))


def _edges(b: EdgeBlock, device="cpu"):
    """The N2 source of a block that carries layer weights."""
    if isinstance(b, DenseBlock):
        return _DenseEdges(b, device)
    if isinstance(b, ConvTransposeBlock):
        return _TransposedEdges(b, device)
    return _ConvEdges(b, device)


@njit(cache=True)
def _take_valid(w, mask, out):
    """``out = w[mask broadcast over axis 1]`` in C order (``w`` may be a broadcast view)."""
    p = 0
    for l in range(w.shape[0]):
        for o in range(w.shape[1]):
            for k in range(w.shape[2]):
                if mask[l, k]:
                    out[p] = w[l, o, k]
                    p += 1


@njit(cache=True)
def _put_valid(store, mask, values):
    """The inverse of :func:`_take_valid`: ``store[mask broadcast] = values``."""
    p = 0
    for l in range(store.shape[0]):
        for o in range(store.shape[1]):
            for k in range(store.shape[2]):
                if mask[l, k]:
                    store[l, o, k] = values[p]
                    p += 1


def _check_n2_memory(sources, itemsize: int) -> None:
    """Refuse an N2 build that would not fit: the pooled weights plus the new
    blocks (unshared convolutions also store their padding slots)."""
    from ..solve.greedy import available_memory_bytes

    slots = sum(s.n if isinstance(s, _DenseEdges) else
                s.target.n_positions * s.target.c_out * s.target.k_group for s in sources)
    need = itemsize * (sum(s.n for s in sources) + slots)
    have = available_memory_bytes()
    if need > 0.9 * have:
        raise TooLargeError(f"the N2 null of this graph needs about {need / 1e9:.1f} GB "
                            f"(pooled edge weights + per-edge blocks); {have / 1e9:.1f} GB "
                            "are available")


def _n2_blocks_torch(graph: SignedGraph, weighted: list[bool], seed: int) -> list[EdgeBlock]:
    """N2 where the graph lives (a device): the pooled edge weights gathered in
    one flat tensor there, permuted by ``torch.randperm`` from a device
    generator keyed like every null (:func:`_generator`), and dealt out.

    Memory on the device: the pooled weights, the permutation (int64) and the
    new blocks, about ``2 * itemsize + 8`` bytes per edge plus the padding
    slots of unshared convolutions.  A device's stream is its own: the same
    seed deals another permutation than the CPU's Rao-Sandelius shuffle."""
    dev = graph.device
    sources = {k: _edges(b, dev) for k, (b, w) in enumerate(zip(graph.edge_blocks, weighted))
               if w}
    order = sorted(sources)
    n = sum(sources[k].n for k in order)
    pool = torch.empty(n, dtype=graph.dtype, device=dev)
    p = 0
    for k in order:
        for v in sources[k].tensor_pieces():
            pool[p:p + len(v)] = v
            p += len(v)
    perm = torch.randperm(n, generator=_generator("N2", seed, "|pool", dev), device=dev)
    pool = pool[perm]
    del perm
    blocks, p = list(graph.edge_blocks), 0
    for k in order:
        src = sources[k]
        blocks[k] = src.build_tensor(pool[p:p + src.n]).to(device=dev, dtype=graph.dtype)
        p += src.n
    return blocks


def n2_blocks(graph: SignedGraph, weighted: list[bool], seed: int) -> list[EdgeBlock]:
    if graph.device.type != "cpu":
        return _n2_blocks_torch(graph, weighted, seed)
    sources = {k: _edges(b) for k, (b, w) in enumerate(zip(graph.edge_blocks, weighted)) if w}
    order = sorted(sources)
    dtype = torch.empty(0, dtype=graph.dtype).numpy().dtype
    _check_n2_memory(sources.values(), dtype.itemsize)
    pool = shuffled_pool([sources[k] for k in order], dtype, seed)
    blocks, p = list(graph.edge_blocks), 0
    for k in order:
        src = sources[k]
        blocks[k] = src.build(pool[p:p + src.n]).to(device=graph.device, dtype=graph.dtype)
        p += src.n
    return blocks

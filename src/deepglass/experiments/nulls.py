"""Null models of a network's weights (SPEC §3, paper 000).

=============  ==================================================================
``N1``         within each conv / dense layer, the entries of its weight tensor
               permuted at random: a convolution stays a convolution (every
               instance of a kernel entry in the Toeplitz matrix moves together)
``N2``         all conv and dense *edge* weights pooled and dealt out at random
               over the same edge positions: same topology, no weight sharing
``N3-xavier``  conv / dense weights redrawn, Xavier (Glorot) uniform
``N3-he``      conv / dense weights redrawn, He (Kaiming) normal, fan-in mode
=============  ==================================================================

Pooling edges (and identity shortcuts) never change.  :func:`null_model` takes
an ``nn.Module`` (and returns a modified copy, or for N2 the null graph) or a
:class:`~deepglass.graph.SignedGraph` (and returns a new graph).

Randomness is keyed, not sequential: layer ``name`` of null ``kind`` with seed
``s`` draws from a generator seeded by a hash of ``(kind, s, name)``.  So the
same seed gives the same null whatever else happens in the process, and N1 / N3
of a module and of its graph agree layer by layer (the graph's edge blocks
carry their module's name).

N2 at scale.  AlexNet has 0.66 B edges, so N2 keeps no per-edge index list:
convolutions become :class:`~deepglass.graph.unshared.UnsharedConvBlock` (one
stored weight per edge, laid out like the unfolded convolution) and the pooled
weights are permuted with the Rao-Sandelius method: every weight gets a random
bucket label (drawn a piece at a time from the piece's own SplitMix64 stream,
and drawn again instead of stored), the weights are scattered bucket by bucket
into one flat buffer (a counting sort), and each cache-sized bucket is shuffled
the same way into L1-sized sub-buckets, then by Fisher-Yates.  The result is a
uniformly random permutation; memory is the flat buffer plus the new blocks
(about 2 x 4 bytes per edge at float32).
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Iterator

import numpy as np
import torch
from numba import njit, prange
from torch import nn

from .._numba import njit_parallel
from ..errors import DeepglassError, TooLargeError
from ..graph import ConvBlock, DenseBlock, EdgeBlock, SignedGraph
from ..graph.unshared import UnsharedConvBlock

__all__ = ["null_model", "NULL_KINDS"]

NULL_KINDS = ("N1", "N2", "N3-xavier", "N3-he")

_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)
#: weights per piece when pooling edge weights (bounds the per-piece label sort)
_PIECE = 1 << 22
#: target bucket sizes of the two-level Rao-Sandelius shuffle (L2 and L1 sized)
_BUCKET = 1 << 20
_SUB_BUCKET = 1 << 12


def _canonical_kind(kind) -> str:
    names = {k.lower(): k for k in NULL_KINDS}
    if not isinstance(kind, str) or kind.lower() not in names:
        raise DeepglassError(f"unknown null model {kind!r}; choose one of {', '.join(NULL_KINDS)}")
    return names[kind.lower()]


def _generator(kind: str, seed: int, name: str, device="cpu") -> torch.Generator:
    """The generator of one layer of one null: keyed by (kind, seed, layer name),
    on ``device`` (the weights' own: draws are made where they are used, so a
    device draws its nulls without a host round trip; a device's stream is
    its own, so the same seed draws another null there than on the CPU)."""
    digest = hashlib.blake2b(f"{kind}|{int(seed)}|{name}".encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(
        int.from_bytes(digest, "little") & (2**63 - 1))


def _permuted(w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The entries of ``w`` in a uniformly random order, same shape (drawn on
    the generator's device)."""
    perm = torch.randperm(w.numel(), generator=g, device=g.device).to(w.device)
    return w.detach().reshape(-1)[perm].reshape(w.shape).clone()


def _redrawn(w: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    """A fresh draw shaped like ``w``: Xavier uniform (variance 2/(fan_in+fan_out))
    or He normal (variance 2/fan_in), with PyTorch's fans: ``fan_in = size(1) *
    prod(kernel)``, ``fan_out = size(0) * prod(kernel)``."""
    new = torch.empty(w.shape, dtype=w.dtype, device=g.device)
    if kind == "N3-xavier":
        nn.init.xavier_uniform_(new, gain=1.0, generator=g)
    else:
        nn.init.kaiming_normal_(new, mode="fan_in", nonlinearity="relu", generator=g)
    return new.to(w.device)


# ---- nulls of a module -----------------------------------------------------------------
def _module_null(model: nn.Module, kind: str, seed: int) -> nn.Module:
    if not any(isinstance(m, _WEIGHT_LAYERS) for m in model.modules()):
        raise DeepglassError(f"null model {kind} of a module redraws its nn.Conv*/nn.Linear "
                             f"weights and {type(model).__name__} has none; pass its "
                             "SignedGraph instead")
    new = copy.deepcopy(model)
    with torch.no_grad():
        for name, m in new.named_modules():
            if isinstance(m, _WEIGHT_LAYERS):
                g = _generator(kind, seed, name, m.weight.device)
                w = _permuted(m.weight, g) if kind == "N1" else _redrawn(m.weight, kind, g)
                m.weight.copy_(w)
                if kind != "N1" and m.bias is not None:
                    m.bias.zero_()
            elif kind != "N1" and isinstance(m, nn.modules.batchnorm._NormBase):
                m.reset_parameters()
    return new


# ---- nulls of a graph ------------------------------------------------------------------
def _with_weight(b: EdgeBlock, weight: torch.Tensor, keep_scales: bool) -> EdgeBlock:
    new = copy.copy(b)
    new.weight = weight
    new.__dict__.pop("_csr_cache", None)
    new._abs_cache = {}
    if not keep_scales:
        new.in_scale = new.out_scale = None
    return new


def _check_block(b: EdgeBlock, kind: str) -> bool:
    """Whether ``b`` carries layer weights the null changes (else it is kept)."""
    if isinstance(b, (ConvBlock, DenseBlock)):
        return True
    if kind == "N2" and isinstance(b, UnsharedConvBlock):
        return True
    if b.kind in ("pool", "identity"):
        return False
    raise DeepglassError(f"null model {kind} is defined for conv, dense, pooling and identity "
                         f"blocks; block {b.module!r} is {b.kind!r}")


def _graph_null(graph: SignedGraph, kind: str, seed: int) -> SignedGraph:
    weighted = [_check_block(b, kind) for b in graph.edge_blocks]
    if kind == "N2":
        blocks = _n2_blocks(graph, weighted, seed)
    else:
        blocks = []
        for b, w in zip(graph.edge_blocks, weighted):
            if w:
                g = _generator(kind, seed, b.module, b.weight.device)
                if kind == "N1":   # the block's own weights (folded batch norm included)
                    b = _with_weight(b, _permuted(b.weight, g), keep_scales=True)
                else:              # a fresh layer: no folded batch norm, no scales
                    b = _with_weight(b, _redrawn(b.weight, kind, g), keep_scales=False)
            blocks.append(b)
    new = graph.replace_edge_blocks(blocks)
    new.meta.update(null=kind, null_seed=int(seed))
    return new


# ---- N2: pooled edge weights over the same positions ----------------------------------
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
        return _with_weight(self.block, values.reshape(self.block.weight.shape).clone(),
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


_U32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, inline="always")
def _next(state):
    """SplitMix64 (Steele, Lea, Flood 2014): the next 64 random bits of ``state[0]``."""
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _below(state, bound):
    """Uniform integer in ``[0, bound)``, ``bound < 2**32``: Lemire's multiply-shift
    with rejection (exactly uniform)."""
    m = (_next(state) >> np.uint64(32)) * bound
    if (m & _U32) < bound:
        t = (np.uint64(1 << 32) - bound) % bound
        while (m & _U32) < t:
            m = (_next(state) >> np.uint64(32)) * bound
    return np.int64(m >> np.uint64(32))


@njit(cache=True)
def _count_labels(seed, m, n_buckets, counts):
    """Bucket sizes of ``m`` labels drawn from ``seed`` (the same draws as
    :func:`_scatter_labelled`)."""
    state = np.full(1, seed, np.uint64)
    bound = np.uint64(n_buckets)
    for _ in range(m):
        counts[_below(state, bound)] += 1


@njit(cache=True)
def _scatter_labelled(values, seed, n_buckets, at, out):
    """Counting-sort scatter: ``values[j]`` goes to ``out[at[label_j]++]`` with
    uniform labels drawn from ``seed``."""
    state = np.full(1, seed, np.uint64)
    bound = np.uint64(n_buckets)
    for j in range(len(values)):
        b = _below(state, bound)
        out[at[b]] = values[j]
        at[b] += 1


@njit(cache=True)
def _fisher_yates(x, state):
    for i in range(len(x) - 1, 0, -1):
        j = _below(state, np.uint64(i + 1))
        x[i], x[j] = x[j], x[i]


@njit_parallel
def _shuffle_buckets(out, starts, seeds, sub):
    """Shuffle every ``out[starts[b]:starts[b+1]]`` uniformly: one more
    Rao-Sandelius level into sub-buckets of about ``sub`` (L1-sized), then
    Fisher-Yates.  Each bucket has its own generator, so the result does not
    depend on the thread count."""
    for b in prange(len(starts) - 1):
        x = out[starts[b]:starts[b + 1]]
        state = np.full(1, seeds[b], np.uint64)
        n = len(x)
        if n <= 2 * sub:
            _fisher_yates(x, state)
            continue
        nb = (n + sub - 1) // sub
        lab = np.empty(n, np.int64)
        at = np.zeros(nb + 1, np.int64)
        for j in range(n):
            lab[j] = _below(state, np.uint64(nb))
            at[lab[j] + 1] += 1
        for k in range(nb):
            at[k + 1] += at[k]
        first = at.copy()
        tmp = np.empty_like(x)
        for j in range(n):
            tmp[at[lab[j]]] = x[j]
            at[lab[j]] += 1
        for k in range(nb):
            _fisher_yates(tmp[first[k]:first[k + 1]], state)
        x[:] = tmp


def _shuffled_pool(sources, dtype, seed: int) -> np.ndarray:
    """All edge weights of ``sources`` in one flat array, uniformly permuted.

    Rao-Sandelius (two levels): give each weight an independent uniform bucket
    label, write the buckets one after another (a counting-sort scatter), then
    shuffle every bucket the same way into L1-sized sub-buckets and those by
    Fisher-Yates.  A piece's labels are redrawn from its own seed in the second
    pass, so the only per-edge array is the output.
    """
    sizes = [s for src in sources for s in src.sizes()]
    n = sum(sizes)
    out = np.empty(n, dtype=dtype)
    root = np.random.SeedSequence([int(seed), 0x4E32])
    if n <= 2 * _BUCKET:
        p = 0
        for src in sources:
            for v in src.pieces():
                out[p:p + len(v)] = v
                p += len(v)
        np.random.default_rng(root).shuffle(out)
        return out
    n_buckets = -(-n // _BUCKET)
    seeds = root.generate_state(len(sizes) + n_buckets, np.uint64)   # per piece, bucket
    counts = np.zeros((len(sizes), n_buckets), dtype=np.int64)
    for i, m in enumerate(sizes):
        _count_labels(seeds[i], m, n_buckets, counts[i])
    starts = np.concatenate([[0], np.cumsum(counts.sum(0))])
    at = starts[:-1] + np.cumsum(counts, 0) - counts                      # write offsets
    i = 0
    for src in sources:
        for v in src.pieces():
            _scatter_labelled(v, seeds[i], n_buckets, at[i].copy(), out)
            i += 1
    _shuffle_buckets(out, starts, seeds[len(sizes):], _SUB_BUCKET)
    return out


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
    sources = {k: (_DenseEdges(b, dev) if isinstance(b, DenseBlock) else _ConvEdges(b, dev))
               for k, (b, w) in enumerate(zip(graph.edge_blocks, weighted)) if w}
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


def _n2_blocks(graph: SignedGraph, weighted: list[bool], seed: int) -> list[EdgeBlock]:
    if graph.device.type != "cpu":
        return _n2_blocks_torch(graph, weighted, seed)
    sources = {k: (_DenseEdges(b) if isinstance(b, DenseBlock) else _ConvEdges(b))
               for k, (b, w) in enumerate(zip(graph.edge_blocks, weighted)) if w}
    order = sorted(sources)
    dtype = torch.empty(0, dtype=graph.dtype).numpy().dtype
    _check_n2_memory(sources.values(), dtype.itemsize)
    pool = _shuffled_pool([sources[k] for k in order], dtype, seed)
    blocks, p = list(graph.edge_blocks), 0
    for k in order:
        src = sources[k]
        blocks[k] = src.build(pool[p:p + src.n]).to(device=graph.device, dtype=graph.dtype)
        p += src.n
    return blocks


# ---- front end -------------------------------------------------------------------------
def null_model(model_or_graph, kind: str, seed: int = 0, *, input_shape=None):
    """A null model of a network's weights (SPEC §3).

    Parameters
    ----------
    model_or_graph : torch.nn.Module or SignedGraph
        The network, or its signed graph.
    kind : {"N1", "N2", "N3-xavier", "N3-he"}
        Case-insensitive.

        - ``N1``: each conv / dense weight tensor's entries permuted at random
          (shared weights stay shared).  Of a module: the weights of its
          ``nn.Conv*`` / ``nn.Linear`` modules; biases and batch norm are kept.
          Of a graph: the block's weights, folded batch norm included,
          are permuted; source scales are kept.
        - ``N2``: the conv and dense edge weights of the whole graph (folded
          batch norm and scales included) pooled and dealt out uniformly at
          random over the same edge positions.  Always returns a graph, whose
          convolutions are :class:`~deepglass.graph.unshared.UnsharedConvBlock`.
        - ``N3-xavier``: weights redrawn from Xavier uniform, ``U(-a, a)`` with
          ``a = sqrt(6 / (fan_in + fan_out))``.
        - ``N3-he``: weights redrawn from He normal, ``N(0, 2 / fan_in)``.

          N3 fans are PyTorch's: ``fan_in = C_in/groups * prod(kernel)``,
          ``fan_out = C_out * prod(kernel)``.  Of a module: biases are set to 0
          and batch norms reset (gamma 1, beta 0, running mean 0, variance 1),
          as in a fresh network.  Of a graph: conv / dense blocks get fresh
          weights and lose folded batch norm and scales.
    seed : int
        Same seed, same null; layers draw from generators keyed by
        ``(kind, seed, layer name)``.
    input_shape : sequence of int, optional
        For N2 of a module (tracing); default ``model.default_input_shape``.

    Returns
    -------
    torch.nn.Module or SignedGraph
        For a module and N1 / N3: a new module (deep copy, attributes such as
        ``default_input_shape`` kept; the original is untouched).  For a graph,
        or N2: a new :class:`SignedGraph` on the same nodes, with
        ``meta["null"]`` and ``meta["null_seed"]``.  Pooling and identity edges
        are never changed.

    Raises
    ------
    DeepglassError
        Unknown ``kind``; N2 of a module without an input shape; a graph with
        blocks other than conv, dense, pooling and identity; an N2 build that
        would not fit in the available memory (``TooLargeError``).

    Notes
    -----
    N1 and N3 cost O(parameters).  N2 costs O(edges) time and about 2 x 4 bytes
    per edge at its peak (float32): a Rao-Sandelius shuffle without an index
    list (module docstring).  AlexNet (0.66 B edges): about 20-45 s on 2 CPU
    cores, 6 GB peak resident memory (``bench/bench_nulls.py``).

    References
    ----------
    Paper 000, Results ("null models"); C. R. Rao, Sankhya A 23 (1961) and
    M. Sandelius, Ann. Math. Stat. 33 (1962) for the bucket shuffle.

    Examples
    --------
    >>> import torch.nn as nn, deepglass
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 2))
    >>> n1 = deepglass.null_model(net, "N1", seed=1)
    >>> sorted(n1[0].weight.flatten().tolist()) == sorted(net[0].weight.flatten().tolist())
    True
    >>> g2 = deepglass.null_model(net, "n2", seed=1, input_shape=(1, 5, 5))
    >>> g2.n_edges == deepglass.SignedGraph.from_module(net, (1, 5, 5)).n_edges
    True
    """
    kind = _canonical_kind(kind)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DeepglassError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(model_or_graph, SignedGraph):
        return _graph_null(model_or_graph, kind, int(seed))
    if not isinstance(model_or_graph, nn.Module):
        raise DeepglassError("null_model expects an nn.Module or a SignedGraph, got "
                             f"{type(model_or_graph).__name__}")
    if kind != "N2":
        return _module_null(model_or_graph, kind, int(seed))
    shape = input_shape or getattr(model_or_graph, "default_input_shape", None)
    if shape is None:
        raise DeepglassError("N2 of a module needs input_shape (the model has no "
                             "default_input_shape)")
    graph = SignedGraph.from_module(model_or_graph, tuple(shape))
    return _graph_null(graph, kind, int(seed))

"""The compiled descent's layout of a signed graph (SPEC §2): convolutions and
dense layers as stencils (one row of geometry per block, the weights in both
directions, channels last), every other block as explicit CSR
(:class:`Stencils`, :func:`stencils`); :func:`stencil_kind` says which blocks
are stencils.  Read by :mod:`.compiled_kernels` through
:func:`deepglass.solve.compiled_descent.compiled_descent`.

An active subnetwork (SPEC §4) restricts its convolutions and dense layers to
the kept nodes (:class:`~deepglass.graph.blocks.MaskedBlock`,
``diag(s) A diag(d)``).  Where the masks of all blocks agree on one set of
removed nodes (:func:`pinned_nodes`; an active subnetwork's always do), the
stencil of the whole layer serves: the removed nodes, isolated in the
subnetwork, keep a gauge of 0 inside the kernel (``Stencils.pinned``), so
their edges add nothing to any field and their own field, 0, never flips.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from numba import prange

from .._numba import LANES, njit_parallel
from ..graph import SignedGraph
from ..graph.blocks import ConvBlock, DenseBlock, MaskedBlock
from ..graph.blocks.conv import ConvTransposeBlock
from ..graph.blocks.base import ZeroPaddedBlock
from ..graph.unshared import UnsharedConvBlock, UnsharedConvTransposeBlock
from .stencil_parts import TRANSPOSED, layer_parts, ring_taps, source_ids, source_pad


# columns of Stencils.params: the 2-d geometry (a 1-d convolution has H = 1), then
# the depth axis of 3-d convolutions (Z: size in and out, kernel, stride, lo
# padding, dilation; 1, 1, 1, 1, 0, 1 for fewer dimensions)
(_SRC, _DST, _CIN, _HIN, _WIN, _COUT, _HOUT, _WOUT, _KH, _KW, _SH, _SW, _PH, _PW, _DH, _DW,
 _GROUPS, _WF, _WA, _ZIN, _ZOUT, _KZ, _SZ, _PZ, _DZ, _CB, _C0, _DB, _D0, _WP) = range(30)
_NPARAMS = 30
# (_CB, _C0: the source node block's channel count and the first of its channels
# the stencil reads, where a convolution reads a concatenation or a channel
# range: one stencil per part, see stencil_parts.layer_parts; _DB, _D0 likewise for the
# destination block, where a transposed convolution reads a concatenation and
# its stencil, the convolution back, writes one)
# (_WP: weights per output position of an unshared convolution, whose stencil
# holds the layout of a convolution's weights once per output position; 0 for
# a shared one)


@dataclass
class Stencils:
    """A graph's couplings in the layout of the compiled engine.

    Attributes
    ----------
    perm : ndarray int64 (n,)
        ``perm[q]`` is the graph node stored at internal position ``q``.
    inverse : ndarray int64 (n,)
        Internal position of each graph node.
    params : ndarray int64 (S, 30)
        One row per stencil (a dense layer, a convolution, or the part of a
        convolution that reads one node block of a concatenation): internal
        offsets of its source and destination blocks, their channels and
        (H, W) sizes, kernel, stride, lo padding, dilation, groups, the
        offsets of its forward and adjoint weights in ``weights``, the depth
        axis of a 3-d convolution (sizes in and out, kernel, stride, lo
        padding, dilation), the source block's channel count and first
        channel read, the destination block's channel count and first
        channel written, and the weights per output position (an unshared
        convolution; 0 for a shared one).
    weights : ndarray (the graph's float dtype)
        Forward weights ``[C_in, kz, kh, kw (reversed), C_out/groups]`` and adjoint
        weights ``[C_out, kz, kh, kw, C_in/groups]`` of every stencil (of an
        unshared convolution, once per output position: ``[L, ...]``).
    fwd_ptr, fwd, adj_ptr, adj : ndarray int64
        Per node block, the stencils it is the source of (``fwd``) and the
        destination of (``adj``), CSR-style.
    rest : scipy.sparse.csr_matrix (n, n)
        Symmetric couplings of the other edge blocks, internal order.
    blocks : ndarray int64 (B, 2)
        ``[offset, stop)`` of each node block (the same internally).
    n_stencil_edges : int
        Edges covered by the stencils (the rest are in ``rest``).
    pinned : ndarray bool (n,) or None
        Internal order: the nodes a masked stencil removes (:func:`pinned_nodes`),
        held at gauge 0 while the kernel runs; None when no stencil is masked.
    """

    perm: np.ndarray
    inverse: np.ndarray
    params: np.ndarray
    weights: np.ndarray
    fwd_ptr: np.ndarray
    fwd: np.ndarray
    adj_ptr: np.ndarray
    adj: np.ndarray
    rest: sp.csr_matrix
    blocks: np.ndarray
    n_stencil_edges: int = 0
    pinned: np.ndarray | None = None

    def nbytes(self) -> int:
        """Bytes held (weights, CSR, permutations)."""
        r = self.rest
        return int(self.weights.nbytes + r.data.nbytes + r.indices.nbytes + r.indptr.nbytes
                   + self.perm.nbytes + self.inverse.nbytes)


def _channels_last(shape) -> np.ndarray:
    """Local permutation of a block of ``shape = (C, *spatial)``: ``perm[p C + c] = c P + p``."""
    size = math.prod(shape)
    if len(shape) < 2 or size == shape[0]:
        return np.arange(size, dtype=np.int64)
    C = shape[0]
    P = size // C
    return np.arange(size, dtype=np.int64).reshape(C, P).T.ravel()


def _conv_geometry(b: ConvBlock, pad=None):
    """(Z, H, W) in/out, kernel, stride, lo padding, dilation as 3-d (2-d: Z = 1;
    1-d: Z = H = 1).  With ``pad`` (:func:`~.stencil_parts.source_pad`), of the
    convolution of the source blocks inside the padding: their shape in, ``lo``
    more padding."""
    def three(t, fill):
        return (fill,) * (3 - len(t)) + tuple(t)
    k = tuple(b.weight.shape[2:])
    lo, spatial = [p for p, _ in b.padding], b.in_shape[1:]
    if pad is not None:
        lo, spatial = [p + a for p, a in zip(lo, pad[0])], pad[1]
    return (three(spatial, 1), three(b.out_shape[1:], 1), three(k, 1), three(b.stride, 1),
            three(lo, 0), three(b.dilation, 1))


def _ring_coo(graph: SignedGraph, b, conv, pad, weight_of, masked=None):
    """The edges of convolution ``b`` (geometry ``conv``) that read the padding
    around its source blocks (:func:`~.stencil_parts.ring_taps`): graph ids of
    sources and destinations, float64 weights and the edges kept (all, or
    those the masks keep), ``weight_of(t, l)`` giving
    tap ``t``'s weights at output positions ``l`` as (len(l), C_out, C_in/g),
    times the masks of ``masked`` (a :class:`MaskedBlock` over ``b``: an
    active subnetwork's removed edges weigh 0).  The stencil holds the
    others.  O(those edges)."""
    src = source_ids(b).reshape(conv.in_shape[0], -1)
    if masked is not None:
        smask = masked.src_mask.detach().cpu().double().reshape(conv.in_shape[0], -1).numpy()
        dmask = masked.dst_mask.detach().cpu().double().reshape(conv.out_shape[0], -1).numpy()
    dst = graph.node_blocks[b.dst]
    cout, cin_g = conv.weight.shape[:2]
    oc = np.arange(cout)[:, None]
    chan = (oc // (cout // conv.groups)) * cin_g + np.arange(cin_g)[None, :]
    n_out = math.prod(conv.out_shape[1:])
    ii, jj, ww, kept = [], [], [], 0
    for t, l, q in ring_taps(conv, pad):
        shape = (len(l), cout, cin_g)
        ii.append(src[chan[None], q[:, None, None]].reshape(-1))
        jj.append(np.broadcast_to(dst.offset + oc[None] * n_out + l[:, None, None],
                                  shape).reshape(-1))
        w = np.broadcast_to(weight_of(t, l), shape)
        if masked is not None:
            keep = smask[chan[None], q[:, None, None]] * dmask[oc[None], l[:, None, None]]
            w = w * keep
            kept += int(np.count_nonzero(keep))
        else:
            kept += w.size
        ww.append(w.reshape(-1))
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 0
    return (np.concatenate(ii), np.concatenate(jj), np.concatenate(ww).astype(np.float64),
            kept)


def ring_edges(graph: SignedGraph, b) -> int:
    """Edges of stencil block ``b`` held explicitly: those reading the padding
    around its source blocks (0 where it reads them directly)."""
    b = getattr(b, "inner", b)
    pad = source_pad(graph, b)
    if pad is None:
        return 0
    conv = b.geometry() if isinstance(b, UnsharedConvBlock) else b
    cout, cin_g = conv.weight.shape[:2]
    return sum(len(l) for _, l, _ in ring_taps(conv, pad)) * cout * cin_g


def stencil_kind(graph: SignedGraph, b) -> str | None:
    """``"conv"``, ``"conv_transpose"``, ``"unshared_conv"`` or ``"dense"`` where edge
    block ``b`` runs as a stencil, else ``None``.

    Stencils need scales that fold into the weights (:func:`_weight_factors`);
    a dense layer, a source that is one whole node block (read flattened); a
    convolution (at most three spatial dimensions), sources that are runs of
    channels of node blocks of its spatial shape (a whole block, a
    concatenation, a chunk, a shuffle; under groups at most
    :data:`~.stencil_parts.MAX_GROUP_PARTS` stencils:
    :func:`~.stencil_parts.layer_parts`), or of the shape inside a padding
    that repeats their elements (reflect, replicate, circular:
    :func:`~.stencil_parts.source_pad`; the padding's edges are explicit,
    :func:`ring_edges`); a transposed convolution
    (``"conv_transpose"``), the same sources as a convolution: it runs as the
    convolution from its destination back to its source parts, whose edges it
    has; an unshared convolution (:class:`~deepglass.graph.unshared.UnsharedConvBlock`,
    N2's layers: ``"unshared_conv"``), the same sources as a convolution, its
    weights laid out once per output position, and an unshared transposed
    convolution (``"unshared_conv_transpose"``) as a transposed one.  A block restricted to
    kept nodes (:class:`MaskedBlock`) runs as its whole layer's stencil where
    the graph's masks agree (:func:`pinned_nodes`)."""
    if isinstance(b, MaskedBlock):
        kind = _layer_kind(graph, b.inner)
        return kind if kind is not None and pinned_nodes(graph) is not None else None
    return _layer_kind(graph, b)


#: pinned_nodes' answers, per graph object (graphs are not changed in place)
_PINNED: "weakref.WeakKeyDictionary[SignedGraph, np.ndarray | None]" = weakref.WeakKeyDictionary()


def pinned_nodes(graph: SignedGraph) -> np.ndarray | None:
    """The nodes that the masked stencil blocks of ``graph`` remove (bool, graph
    order), or None where there are none or where the masks disagree.

    A :class:`MaskedBlock` over a convolution or dense layer is ``diag(s) A
    diag(d)``.  Its whole layer with the gauges of the removed nodes held at 0
    gives the same fields if every such block removes exactly the removed
    nodes it touches (``s = 1 - pinned`` on its sources, ``d`` likewise) and
    every whole stencil block touches none; edges of the other (CSR) blocks
    are checked when :func:`stencils` builds them.  O(nodes of the masked
    blocks); cached per graph object.
    """
    if graph in _PINNED:
        return _PINNED[graph]
    masked = [b for b in graph.edge_blocks
              if isinstance(b, MaskedBlock) and _layer_kind(graph, b.inner) is not None]
    pinned = None
    if masked:
        pinned = np.zeros(graph.n_nodes, dtype=bool)
        for b in masked:
            src, dst = _ends(graph, b)
            pinned[src[~_mask(b.src_mask)]] = True
            pinned[dst[~_mask(b.dst_mask)]] = True
        for b in graph.edge_blocks:
            inner = b.inner if isinstance(b, MaskedBlock) else b
            if _layer_kind(graph, inner) is None:
                continue
            src, dst = _ends(graph, b)
            keep_s = _mask(b.src_mask) if isinstance(b, MaskedBlock) else True
            keep_d = _mask(b.dst_mask) if isinstance(b, MaskedBlock) else True
            if not (np.array_equal(~pinned[src], np.broadcast_to(keep_s, src.shape))
                    and np.array_equal(~pinned[dst], np.broadcast_to(keep_d, dst.shape))):
                pinned = None
                break
    _PINNED[graph] = pinned
    return pinned


def _mask(t) -> np.ndarray:
    return t.detach().reshape(-1).cpu().numpy() != 0


def _ends(graph: SignedGraph, b) -> tuple[np.ndarray, np.ndarray]:
    """Graph ids of a stencil block's sources and destinations (C order)."""
    dst = graph.node_blocks[b.dst]
    return source_ids(b), np.arange(dst.offset, dst.stop, dtype=np.int64)


#: output channels per tile of :func:`_unshared_layout`'s forward layout (a cache line of float32)
_TILE = 16

def _weight_factors(b):
    """The factors a layer's scales put on its weights, broadcastable to the
    weight (1.0 where it has none), or None where they cannot fold into it.

    A dense layer has one weight per source and destination element, so
    any ``in_scale`` / ``out_scale`` folds; a convolution shares its weights
    over positions, so only scales constant over each channel's positions
    (a batch norm folded onto its sources, as in pre-activation blocks and
    DenseNet's) fold.  O(size of the scales)."""
    f = 1.0
    if isinstance(b, DenseBlock):
        if b.in_scale is not None:
            f = f * b.in_scale.detach().double().cpu().reshape(1, -1)
        if b.out_scale is not None:
            f = f * torch.broadcast_to(b.out_scale.detach().double().cpu(),
                                       b.out_shape).reshape(-1, 1)
        return f
    # a transposed convolution is its convolution's edges reversed: the
    # block's source scale is that convolution's output scale, and back
    conv, s_in, s_out = ((b.conv, b.out_scale, b.in_scale) if isinstance(b, TRANSPOSED)
                         else (b, b.in_scale, b.out_scale))
    C, cout, g = conv.in_shape[0], conv.out_shape[0], conv.groups
    ones = (1,) * conv.nd

    def per_channel(scale, shape):
        t = torch.broadcast_to(scale.detach().double().cpu(), shape).reshape(shape[0], -1)
        return t[:, 0] if bool((t == t[:, :1]).all()) else None

    if s_in is not None:
        sc = per_channel(s_in, conv.in_shape)
        if sc is None:
            return None
        cin_g = C // g
        f = f * sc.reshape(g, 1, cin_g).expand(g, cout // g, cin_g).reshape(cout, cin_g, *ones)
    if s_out is not None:
        so = per_channel(s_out, conv.out_shape)
        if so is None:
            return None
        f = f * so.reshape(cout, 1, *ones)
    return f


def _layer_kind(graph: SignedGraph, b) -> str | None:
    nbs = graph.node_blocks
    if isinstance(b, ZeroPaddedBlock) \
            or not isinstance(b, (ConvBlock, DenseBlock, UnsharedConvBlock) + TRANSPOSED) \
            or _weight_factors(b) is None:
        return None
    dst = nbs[b.dst]
    if isinstance(b, UnsharedConvBlock) and b.nd <= 3 and dst.shape == b.out_shape:
        return "unshared_conv" if layer_parts(graph, b) is not None else None
    if isinstance(b, UnsharedConvTransposeBlock) and b.conv.nd <= 3 and dst.shape == b.out_shape:
        # as a transposed convolution: the unshared convolution back to the sources
        return "unshared_conv_transpose" if layer_parts(graph, b) is not None else None
    if isinstance(b, ConvBlock) and b.nd <= 3 and dst.shape == b.out_shape:
        return "conv" if layer_parts(graph, b) is not None else None
    if isinstance(b, ConvTransposeBlock) and b.conv.nd <= 3 and dst.shape == b.out_shape:
        # the convolution from the destination block back to the source parts
        return "conv_transpose" if layer_parts(graph, b) is not None else None
    src = _whole_source(graph, b)
    if src is None:
        return None
    if isinstance(b, DenseBlock) and src.size == b.in_size and dst.size == dst.shape[0]:
        return "dense"
    return None


def stencil_weights(b) -> int:
    """Weights of one direction of a stencil layer ``b`` (a :class:`MaskedBlock`'s
    layer): its kernel's, or an unshared convolution's per-edge weights."""
    b = getattr(b, "inner", b)
    if isinstance(b, UnsharedConvTransposeBlock):
        b = b.conv
    return (b.edge_weight if isinstance(b, UnsharedConvBlock) else b.weight).numel()


def _whole_source(graph: SignedGraph, b):
    """The node block that is ``b``'s whole source, or None."""
    if b.src_range is None:
        return None
    src = next((nb for nb in graph.node_blocks if nb.offset == b.src_range[0]), None)
    return src if src is not None and b.src_range[1] == src.stop else None


def stencils(graph: SignedGraph, masked: bool = True) -> Stencils:
    """Lay out ``graph``'s couplings for :func:`compiled_descent`.

    Edge blocks accepted by :func:`stencil_kind` become stencils (with
    ``masked=False``, masked blocks never do); every other edge block goes
    into the symmetric CSR ``rest``.  Cost: O(weights) plus O(edges) of the
    other blocks.
    """
    pinned = pinned_nodes(graph) if masked else None
    nbs = graph.node_blocks
    perm = np.concatenate([nb.offset + _channels_last(nb.shape) for nb in nbs]) if nbs \
        else np.zeros(0, np.int64)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    kinds = [stencil_kind(graph, b) if masked or not isinstance(b, MaskedBlock) else None
             for b in graph.edge_blocks]
    # one buffer for all stencil weights, filled in place (torch: its permuted
    # copies and gathers are threaded; AlexNet's are 0.5 GB in float32).  NumPy
    # allocates it: it asks Linux for transparent huge pages, whose first touch
    # faults once per 2 MB instead of per 4 kB (ResNet-18: 88 MB in ~6 ms, not ~28)
    # (LANES zeros at the end: the kernel's vector updates read up to LANES - 1
    # weights past a run)
    layers = [b.inner if isinstance(b, MaskedBlock) and k is not None else b
              for b, k in zip(graph.edge_blocks, kinds)]
    n_w = sum(2 * stencil_weights(b) for b, k in zip(layers, kinds) if k is not None)
    weights = torch.from_numpy(np.empty(n_w + LANES,
                                        dtype=torch.empty(0, dtype=graph.dtype).numpy().dtype))
    weights[n_w:] = 0
    params, at = [], 0
    fwd = [[] for _ in nbs]
    adj = [[] for _ in nbs]
    rest_i, rest_j, rest_w = [], [], []
    n_stencil_edges = 0
    for masked_b, b, kind in zip(graph.edge_blocks, layers, kinds):
        dst = nbs[b.dst]
        if kind is None:
            i, j, w = b.coo()
            gsrc = (b.src_range[0] + i if b.src_range is not None
                    else b.src_index.reshape(-1).cpu().numpy()[i])
            rest_i.append(inverse[gsrc])
            rest_j.append(inverse[dst.offset + j])
            rest_w.append(w)
            continue
        if kind in ("unshared_conv", "unshared_conv_transpose"):
            at, ring = _unshared_stencils(graph, b, weights, at, params, fwd, adj,
                                          (rest_i, rest_j, rest_w), inverse,
                                          masked_b if masked_b is not b else None)
            n_stencil_edges += masked_b.n_edges() - ring
            continue
        W = b.weight.detach().cpu()
        f = _weight_factors(b)
        if not isinstance(f, float):        # folded scales (per channel, or per element)
            W = (W.double() * f).to(W.dtype)
        if kind in ("conv", "conv_transpose"):
            # a transposed convolution's stencil is the convolution whose adjoint
            # the block is: it reads the block's destination and writes its
            # source parts (the same edges)
            conv = b.conv if kind == "conv_transpose" else b
            pad = source_pad(graph, b)                  # (None for a transposed one)
            ((zin, hin, win), (zout, hout, wout), (kz, kh, kw), (sz, sh, sw), (pz, ph, pw),
             (dz, dh, dw)) = _conv_geometry(conv, pad)
            cout_all, cin_g = W.shape[:2]
            if pad is not None:
                # the edges from the padding's elements: explicit, float64 as the CSR's
                Wd = b.weight.detach().cpu().double()
                Wd = (Wd * f if not isinstance(f, float) else Wd).reshape(cout_all, cin_g, -1)
                i, j, w, kept = _ring_coo(graph, b, conv, pad,
                                          lambda t, l: Wd[None, :, :, t].numpy(),
                                          masked_b if masked_b is not b else None)
                rest_i.append(inverse[i])
                rest_j.append(inverse[j])
                rest_w.append(w)
                n_stencil_edges -= kept
            W = W.reshape(cout_all, cin_g, kz, kh, kw)
            for src, cb0, chans, out, db0, ochans, g in layer_parts(graph, b):
                # one stencil per part of the input or the output (the whole value,
                # or one block of a concatenation, one group of a grouped
                # convolution of one), with the weights of the channels it holds
                cp, cout = len(chans), len(ochans)
                Wp = W
                if not np.array_equal(ochans, np.arange(cout_all)):
                    Wp = Wp[torch.from_numpy(ochans)]
                if not np.array_equal(chans, np.arange(cin_g)):
                    Wp = Wp[:, torch.from_numpy(chans)]
                N = Wp.numel()
                wf, wa = weights[at:at + N], weights[at + N:at + 2 * N]
                # forward [C_in, kz, kh, kw reversed, C_out/g], adjoint [C_out, kz, kh, kw, C_in/g]
                # the forward stencil reads kernel columns in reverse (see _flip)
                Wr = Wp.flip(4) if kw > 1 else Wp
                if g == 1:      # a plain matrix transpose: torch copies it ~2x faster
                    wf.view(cp * kz * kh * kw, cout).copy_(Wr.reshape(cout, -1).t())
                else:
                    wf.view(g, cp, kz, kh, kw, cout // g).copy_(
                        Wr.reshape(g, cout // g, cp, kz, kh, kw).permute(0, 2, 3, 4, 5, 1))
                del Wr
                wa.view(cout, kz, kh, kw, cp).copy_(Wp.permute(0, 2, 3, 4, 1))
                geom = (cp * g, hin, win, cout, hout, wout, kh, kw, sh, sw, ph, pw, dh, dw, g)
                k = len(params)
                params.append((src.offset, out.offset) + geom + (at, at + N)
                              + (zin, zout, kz, sz, pz, dz, src.shape[0], cb0,
                                 out.shape[0], db0, 0))
                at += 2 * N
                fwd[src.index].append(k)
                adj[out.index].append(k)
        else:
            # a dense layer is a 1x1 convolution of 1x1 images whose input
            # channels are the source block's nodes (in its internal order)
            src = _whole_source(graph, b)
            N = W.numel()
            wf, wa = weights[at:at + N], weights[at + N:at + 2 * N]
            cols = torch.from_numpy(_channels_last(src.shape))
            torch.index_select(W, 1, cols, out=wa.view(b.out_size, b.in_size))
            wf.view(b.in_size, b.out_size).copy_(wa.view(b.out_size, b.in_size).t())
            k = len(params)
            params.append((src.offset, dst.offset)
                          + (b.in_size, 1, 1, b.out_size, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1)
                          + (at, at + N) + (1, 1, 1, 1, 0, 1, b.in_size, 0, b.out_size, 0, 0))
            at += 2 * N
            fwd[src.index].append(k)
            adj[dst.index].append(k)
        n_stencil_edges += masked_b.n_edges()
    n = graph.n_nodes
    if rest_i:
        i, j, w = (np.concatenate(x) for x in (rest_i, rest_j, rest_w))
        rest = sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([i, j]),
                                                       np.concatenate([j, i]))), shape=(n, n))
        rest.sum_duplicates()
    else:
        rest = sp.csr_matrix((n, n))
    pinned_int = None if pinned is None else pinned[perm]
    if pinned_int is not None and np.any(rest.data[np.repeat(pinned_int, np.diff(rest.indptr))]):
        # a CSR block keeps an edge of a node the stencils remove: no pinning
        return stencils(graph, masked=False)

    def ptr(lists):
        return (np.cumsum([0] + [len(x) for x in lists]).astype(np.int64),
                np.array([k for x in lists for k in x], dtype=np.int64))

    fwd_ptr, fwd_ = ptr(fwd)
    adj_ptr, adj_ = ptr(adj)
    st = Stencils(perm=perm, inverse=inverse,
                  params=np.array(params, dtype=np.int64).reshape(-1, _NPARAMS),
                  weights=weights.numpy(),
                  fwd_ptr=fwd_ptr, fwd=fwd_, adj_ptr=adj_ptr, adj=adj_, rest=rest,
                  blocks=np.array([[nb.offset, nb.stop] for nb in nbs], dtype=np.int64),
                  n_stencil_edges=n_stencil_edges, pinned=pinned_int)
    return st


@njit_parallel
def _unshared_layout(E, f, chans, ochans, groups, kw, wf, wa):
    """Copy per-edge weights ``E[l, o, c, t]`` (``t`` the kernel tap, C order)
    times ``f[o, c]`` into the forward layout ``wf[l, g, q, t', p']`` (kernel
    columns reversed in ``t'``; ``p'`` the output channel within its group)
    and the adjoint layout ``wa[l, p, t, q]``, for the input channels
    ``c = chans[q]`` and the output channels ``o = ochans[p]``.  Output
    positions in parallel; the adjoint layout one output channel's (C_in x
    T) transpose at a time, the forward one in tiles of :data:`_TILE` output
    channels, so that both read and write whole cache lines (a position's
    weights outgrow the L2 cache: written channel by channel, every forward
    write would fetch a line of its own)."""
    L, T = E.shape[0], E.shape[3]
    cout = ochans.shape[0]
    ncp = chans.shape[0]
    cout_g = cout // groups
    for l in prange(L):
        for p in range(cout):
            o = ochans[p]
            for q in range(ncp):
                c = chans[q]
                fac = f[o, c]
                for t in range(T):
                    wa[l, p, t, q] = E[l, o, c, t] * fac
        for grp in range(groups):
            for p0 in range(grp * cout_g, (grp + 1) * cout_g, _TILE):
                p1 = min(p0 + _TILE, (grp + 1) * cout_g)
                for q in range(ncp):
                    for t in range(T):
                        tt = t + kw - 1 - 2 * (t % kw)
                        for p in range(p0, p1):
                            wf[l, grp, q, tt, p - grp * cout_g] = wa[l, p, t, q]


def _unshared_stencils(graph: SignedGraph, b, weights: torch.Tensor,
                       at: int, params: list, fwd: list, adj: list, rest, inverse,
                       masked=None):
    """Lay out an unshared convolution (N2's layers) as stencils, one per part of
    its input (:func:`~.stencil_parts.layer_parts`): a convolution's forward and adjoint
    layouts once per output position ``l`` (``[L, C_in, kz, kh, kw reversed,
    C_out/g]``, ``[L, C_out, kz, kh, kw, C_in/g]``), the kernel offsetting a
    weight by ``l`` times the weights per position (``_WP``).  An unshared
    transposed convolution runs as its unshared convolution from the block's
    destination back to each part of its source, with that part's output
    channels.  Per-channel scales fold in as a convolution's
    (:func:`_weight_factors`).  One parallel pass over the weights
    (:func:`_unshared_layout`).  Edges from a padding around the sources
    (:func:`~.stencil_parts.source_pad`) go to ``rest`` (internal ids).
    Returns the next free offset of ``weights`` and the number of those edges."""
    conv = b.conv if isinstance(b, UnsharedConvTransposeBlock) else b
    pad = source_pad(graph, b)
    ((zin, hin, win), (zout, hout, wout), (kz, kh, kw), (sz, sh, sw), (pz, ph, pw),
     (dz, dh, dw)) = _conv_geometry(conv.geometry(), pad)
    L, cout_all, cin_g = conv.n_positions, conv.c_out, conv.c_in_g
    T = kz * kh * kw
    f = _weight_factors(b)
    f = np.ones((cout_all, cin_g)) if isinstance(f, float) else np.ascontiguousarray(
        torch.broadcast_to(f, (cout_all, cin_g) + (1,) * conv.nd).reshape(cout_all, cin_g).numpy())
    E = conv.edge_weight.detach().cpu().contiguous().numpy().reshape(L, cout_all, cin_g, T)
    w = weights.numpy()
    ring = 0
    if pad is not None:
        i, j, wr, ring = _ring_coo(graph, b, conv.geometry(), pad,
                                   lambda t, l: E[l, :, :, t] * f, masked)
        for lst, v in zip(rest, (inverse[i], inverse[j], wr)):
            lst.append(v)
    for src, cb0, chans, out, db0, ochans, g in layer_parts(graph, b):
        cp, cout = len(chans), len(ochans)
        per = cout * cp * T
        N = L * per
        _unshared_layout(E, f, np.ascontiguousarray(chans, dtype=np.int64),
                         np.ascontiguousarray(ochans, dtype=np.int64), g, kw,
                         w[at:at + N].reshape(L, g, cp, T, cout // g),
                         w[at + N:at + 2 * N].reshape(L, cout, T, cp))
        k = len(params)
        params.append((src.offset, out.offset, cp * g, hin, win, cout, hout, wout, kh, kw, sh, sw,
                       ph, pw, dh, dw, g, at, at + N, zin, zout, kz, sz, pz, dz, src.shape[0],
                       cb0, out.shape[0], db0, per))
        at += 2 * N
        fwd[src.index].append(k)
        adj[out.index].append(k)
    return at, ring

"""The descent schedule of :mod:`deepglass.solve.descent`, compiled (numba).

Same dynamics as the batched matrix-free engine (SPEC §2): in sweep ``k``,
colour class by colour class, the nodes of each node block with
``h_i < theta`` flip, ``theta = gamma decay^k min h`` over the block
(``threshold="block"``) or over the whole replica (``"global"``), and only
fields below ``-thr_i`` count as negative.  Nodes of one class share no edge,
so flipping them one after another equals flipping them together.

What differs is the cost model.  One replica runs per thread, and a flip of
node ``i`` adds ``2 sigma_i As_ij`` to its ``deg(i)`` neighbours' fields in
place, so a sweep costs its flips times their degree, not a pass over every
layer.  Each node block keeps its negative fields in buckets by magnitude
(four per octave, see the kernels below), so finding a block's most negative
field and the nodes within ``factor`` of it reads only the top buckets: the
long tail of a steepest-first schedule is then nearly free, and this engine
keeps the threshold factor (``decay = 1``) where the batched one must decay
it.  There is no heap: that is what makes it cheaper per flip than
Algorithm 1 (:mod:`deepglass.solve.greedy`).

The couplings are not materialized.  Convolutions (1-d and 2-d, any stride,
padding, dilation and groups) and dense layers are *stencils*: the weights of
one input channel to all output channels of its group, laid out so that the
neighbours of a node are contiguous.  For that every node block is stored
channels-last internally (node ``(c, p)`` of a block with ``C`` channels at
``p C + c``), so a flip updates ``C_out`` consecutive fields per kernel tap;
without groups and with unit dilation along a row, a whole kernel row is one
run (``kw C`` fields: adjacent columns are adjacent in channels-last order,
and the forward weights are stored with the kernel's columns reversed so
that theirs are too), which is what makes small-channel layers cheap.
Edge blocks of other kinds (pooling, identity shortcuts, locally connected
layers, scaled sources) are small; their couplings are held as one symmetric
CSR matrix in the internal order.

A field is kept as its *margin* ``m_j = h_j - bound_j`` in the weights'
dtype, ``bound_j`` being minus the upper edge of its bucket (or ``-thr_j``
outside the buckets), so a neighbour's update is ``m_j += 2 s_i s_j As_ij``
and the only test is ``m_j < 0``.  A run updates 16 margins per vector
operation (:func:`deepglass._numba.add_scaled_lanes`; ``m``, ``s`` and the
weights are padded for the last, partial one) and visits lanes one by one
only where a margin went negative: about one update in a hundred on
ResNet-18, one in thirty on LeNet.  With exact arithmetic the steps are those
of the batched engine (tested in float64 and float32).

Memory: the weights twice (the graph's dtype, both directions), the CSR of
the remaining blocks (12 bytes per stored entry), per replica the gauges
(float32) and fields (float64), and per running thread and node 24 bytes
for float32 graphs (margins, bounds, gauges, three int32 bucket links) plus
the flip buffer (int64).

Measured (``bench/bench_frustration.py``, 2 cores): ResNet-18 on 3x32x32, 16
replicas, 0.19-0.29 s in the kernel (29k flips per replica, 24M field
updates, ~1 ns per update and thread, mostly waiting for weights that are
not in the cache: the same runs take ~0.2 ns with cached weights); LeNet, 48
replicas, 28-30 ms, where the per-flip bookkeeping (stencil geometry, bucket
moves) costs more than the updates.  Earlier steps that each sped the
kernel up 1.1-2.3x: views indexed from 0 (numba drops the negative-index
wraparound of every load), the bucket index read from the float's bits,
per-update helpers compiled without numba's reference counting
(:mod:`deepglass._numba`), one run per kernel row; the margins in vectors
then 1.4-1.5x on ResNet-18 (level on LeNet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from numba import njit, prange

from .._numba import LANES, add_scaled_lanes, float_bits, njit_borrowing, njit_parallel
from ..graph import SignedGraph
from ..graph.blocks import ConvBlock, DenseBlock

__all__ = ["Stencils", "stencils", "stencil_kind", "compiled_descent"]

# columns of Stencils.params
(_SRC, _DST, _CIN, _HIN, _WIN, _COUT, _HOUT, _WOUT, _KH, _KW, _SH, _SW, _PH, _PW, _DH, _DW,
 _GROUPS, _WF, _WA) = range(19)


@dataclass
class Stencils:
    """A graph's couplings in the layout of the compiled engine.

    Attributes
    ----------
    perm : ndarray int64 (n,)
        ``perm[q]`` is the graph node stored at internal position ``q``.
    inverse : ndarray int64 (n,)
        Internal position of each graph node.
    params : ndarray int64 (S, 19)
        One row per stencil (convolution or dense layer): internal offsets of
        its source and destination blocks, their channels and 2-d spatial
        sizes, kernel, stride, lo padding, dilation, groups and the offsets of
        its forward and adjoint weights in ``weights``.
    weights : ndarray (the graph's float dtype)
        Forward weights ``[C_in, kh, kw (reversed), C_out/groups]`` and adjoint weights
        ``[C_out, kh, kw, C_in/groups]`` of every stencil.
    fwd_ptr, fwd, adj_ptr, adj : ndarray int64
        Per node block, the stencils it is the source of (``fwd``) and the
        destination of (``adj``), CSR-style.
    rest : scipy.sparse.csr_matrix (n, n)
        Symmetric couplings of the other edge blocks, internal order.
    blocks : ndarray int64 (B, 2)
        ``[offset, stop)`` of each node block (the same internally).
    n_stencil_edges : int
        Edges covered by the stencils (the rest are in ``rest``).
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


def _conv_geometry(b: ConvBlock):
    """(H, W) in/out, kernel, stride, lo padding, dilation as 2-d (1-d: H = 1)."""
    def two(t, fill):
        return (fill,) + tuple(t) if len(t) == 1 else tuple(t)
    k = tuple(b.weight.shape[2:])
    return (two(b.in_shape[1:], 1), two(b.out_shape[1:], 1), two(k, 1), two(b.stride, 1),
            two([lo for lo, _ in b.padding], 0), two(b.dilation, 1))


def stencil_kind(graph: SignedGraph, b) -> str | None:
    """``"conv"`` or ``"dense"`` where edge block ``b`` runs as a stencil, else ``None``.

    Stencils need a source that is one whole node block in the block's own
    shape (a dense layer may read it flattened), no per-source scale, and
    for convolutions at most two spatial dimensions."""
    nbs = graph.node_blocks
    if b.src_range is None or b.in_scale is not None or b.out_scale is not None:
        return None
    src = next((nb for nb in nbs if nb.offset == b.src_range[0]), None)
    dst = nbs[b.dst]
    if src is None or b.src_range[1] != src.stop:
        return None
    if isinstance(b, ConvBlock) and b.nd <= 2 and src.shape == b.in_shape \
            and dst.shape == b.out_shape:
        return "conv"
    if isinstance(b, DenseBlock) and src.size == b.in_size and dst.size == dst.shape[0]:
        return "dense"
    return None


def stencils(graph: SignedGraph) -> Stencils:
    """Lay out ``graph``'s couplings for :func:`compiled_descent`.

    Edge blocks accepted by :func:`stencil_kind` become stencils; every other
    edge block goes into the symmetric CSR ``rest``.  Cost: O(weights) plus
    O(edges) of the other blocks.
    """
    nbs = graph.node_blocks
    perm = np.concatenate([nb.offset + _channels_last(nb.shape) for nb in nbs]) if nbs \
        else np.zeros(0, np.int64)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    kinds = [stencil_kind(graph, b) for b in graph.edge_blocks]
    # one buffer for all stencil weights, filled in place (torch: its permuted
    # copies and gathers are threaded; AlexNet's are 0.5 GB in float32).  NumPy
    # allocates it: it asks Linux for transparent huge pages, whose first touch
    # faults once per 2 MB instead of per 4 kB (ResNet-18: 88 MB in ~6 ms, not ~28)
    # (LANES zeros at the end: the kernel's vector updates read up to LANES - 1
    # weights past a run)
    n_w = sum(2 * b.weight.numel() for b, k in zip(graph.edge_blocks, kinds) if k is not None)
    weights = torch.from_numpy(np.empty(n_w + LANES,
                                        dtype=torch.empty(0, dtype=graph.dtype).numpy().dtype))
    weights[n_w:] = 0
    params, at = [], 0
    fwd = [[] for _ in nbs]
    adj = [[] for _ in nbs]
    rest_i, rest_j, rest_w = [], [], []
    n_stencil_edges = 0
    for b, kind in zip(graph.edge_blocks, kinds):
        dst = nbs[b.dst]
        if kind is None:
            i, j, w = b.coo()
            gsrc = (b.src_range[0] + i if b.src_range is not None
                    else b.src_index.reshape(-1).cpu().numpy()[i])
            rest_i.append(inverse[gsrc])
            rest_j.append(inverse[dst.offset + j])
            rest_w.append(w)
            continue
        src = next(nb for nb in nbs if nb.offset == b.src_range[0])
        W = b.weight.detach().cpu()
        N = W.numel()
        wf, wa = weights[at:at + N], weights[at + N:at + 2 * N]
        if kind == "conv":
            (hin, win), (hout, wout), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _conv_geometry(b)
            cout, cin_g = W.shape[:2]
            g = b.groups
            W = W.reshape(cout, cin_g, kh, kw)
            # forward [C_in, kh, kw reversed, C_out/g], adjoint [C_out, kh, kw, C_in/g]
            # the forward stencil reads kernel columns in reverse (see _flip)
            Wr = W.flip(3) if kw > 1 else W
            if g == 1:      # a plain matrix transpose: torch copies it ~2x faster
                wf.view(cin_g * kh * kw, cout).copy_(Wr.view(cout, -1).t())
            else:
                wf.view(g, cin_g, kh, kw, cout // g).copy_(
                    Wr.view(g, cout // g, cin_g, kh, kw).permute(0, 2, 3, 4, 1))
            del Wr
            wa.view(cout, kh, kw, cin_g).copy_(W.permute(0, 2, 3, 1))
            geom = (b.in_shape[0], hin, win, cout, hout, wout, kh, kw, sh, sw, ph, pw, dh, dw, g)
        else:
            # a dense layer is a 1x1 convolution of 1x1 images whose input
            # channels are the source block's nodes (in its internal order)
            cols = torch.from_numpy(_channels_last(src.shape))
            torch.index_select(W, 1, cols, out=wa.view(b.out_size, b.in_size))
            wf.view(b.in_size, b.out_size).copy_(wa.view(b.out_size, b.in_size).t())
            geom = (b.in_size, 1, 1, b.out_size, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1)
        k = len(params)
        params.append((src.offset, dst.offset) + geom + (at, at + N))
        at += 2 * N
        fwd[src.index].append(k)
        adj[dst.index].append(k)
        n_stencil_edges += b.n_edges()
    n = graph.n_nodes
    if rest_i:
        i, j, w = (np.concatenate(x) for x in (rest_i, rest_j, rest_w))
        rest = sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([i, j]),
                                                       np.concatenate([j, i]))), shape=(n, n))
        rest.sum_duplicates()
    else:
        rest = sp.csr_matrix((n, n))

    def ptr(lists):
        return (np.cumsum([0] + [len(x) for x in lists]).astype(np.int64),
                np.array([k for x in lists for k in x], dtype=np.int64))

    fwd_ptr, fwd_ = ptr(fwd)
    adj_ptr, adj_ = ptr(adj)
    st = Stencils(perm=perm, inverse=inverse,
                  params=np.array(params, dtype=np.int64).reshape(-1, 19),
                  weights=weights.numpy(),
                  fwd_ptr=fwd_ptr, fwd=fwd_, adj_ptr=adj_ptr, adj=adj_, rest=rest,
                  blocks=np.array([[nb.offset, nb.stop] for nb in nbs], dtype=np.int64),
                  n_stencil_edges=n_stencil_edges)
    return st


# --------------------------------------------------------------------------- kernels
# Negative fields are kept in buckets by magnitude, per node block: NSUB
# buckets per octave from 2**EMIN (everything smaller in bucket 0) up to
# 2**EMAX (everything larger in the last).  A node sits in a bucket whose upper
# edge is at least its |h|; a neighbour's update that pushes |h| past that edge
# moves it up at once (one comparison per update), while nodes whose fields
# shrink are moved down or dropped lazily, when their bucket is read.  The most
# negative field of a block is then in its highest non-empty bucket, and
# choosing the flips ``h < factor * min h`` reads only the buckets above
# ``factor * min h``: a sweep of the long tail costs its flips, not its
# negative fields.
_EMIN, _EMAX, _NSUB_BITS = -64, 40, 2
_NSUB = 1 << _NSUB_BITS
_NBK = (_EMAX - _EMIN + 1) * _NSUB


def _bucket_edges() -> np.ndarray:
    """Upper edge of each bucket's |h| (the last is infinite)."""
    e = np.repeat(np.arange(_EMIN, _EMAX + 1), _NSUB)
    sub = np.tile(np.arange(_NSUB), _EMAX - _EMIN + 1)
    up = (0.5 + (sub + 1) / (2 * _NSUB)) * np.ldexp(1.0, e)
    up[-1] = np.inf
    return up


@njit(cache=True, inline="always")
def _bucket_of(a):
    """Bucket of a magnitude ``a > 0``: ``a = m 2**e``, ``m`` in [1/2, 1), read
    from the bits (``frexp``'s ``e`` is the biased exponent minus 1022, and
    its ``_NSUB_BITS`` leading stored mantissa bits give ``int((m - 1/2) 2 NSUB)``)."""
    bits = float_bits(a)
    e = (bits >> 52) - 1022
    if e < _EMIN:
        return 0
    if e > _EMAX:
        return _NBK - 1
    return (e - _EMIN) * _NSUB + ((bits >> (52 - _NSUB_BITS)) & (_NSUB - 1))


@njit_borrowing(inline="always")
def _field(j, m, bound):
    """``h_j = s_j (As sigma)_j`` of node ``j``, in float64, from its margin."""
    return np.float64(m[j]) + np.float64(bound[j])


@njit_borrowing(inline="always")
def _unlink(j, hb, head, nxt, prv, bkt):
    p = prv[j]
    q = nxt[j]
    if p >= 0:
        nxt[p] = q
    else:
        head[hb] = q
    if q >= 0:
        prv[q] = p
    bkt[j] = -1


@njit_borrowing
def _place(j, h, blk_of, head, nxt, prv, bkt, top, bound, m, up):
    """Put node ``j`` (field ``h < 0``) into the bucket of ``|h|``; its bound
    becomes minus the bucket's upper edge (0 for the last, unbounded one)."""
    kk = _bucket_of(-h)
    b = blk_of[j]
    old = bkt[j]
    if old == kk:
        return
    if old >= 0:
        _unlink(j, b * _NBK + old, head, nxt, prv, bkt)
    hb = b * _NBK + kk
    q = head[hb]
    nxt[j] = q
    prv[j] = -1
    if q >= 0:
        prv[q] = j
    head[hb] = j
    bkt[j] = kk
    if kk > top[b]:
        top[b] = kk
    lim = -up[kk] if kk < _NBK - 1 else 0.0
    bound[j] = lim
    m[j] = h - lim


@njit_borrowing
def _drop(j, h, blk_of, head, nxt, prv, bkt, bound, m, thr):
    """Take node ``j`` (field ``h``, no longer negative) out of its bucket."""
    if bkt[j] >= 0:
        _unlink(j, blk_of[j] * _NBK + bkt[j], head, nxt, prv, bkt)
    bound[j] = -thr[j]
    m[j] = h + thr[j]


@njit_borrowing
def _run(base, cnt, wb, d, s, m, Wt, blk_of, head, nxt, prv, bkt, top, bound, up):
    """``h[base:base + cnt] += d s Wt[wb:wb + cnt]`` on the margins: one run of
    neighbours (a kernel tap's, or a whole kernel row's), each moved up a
    bucket when its ``|h|`` grew past the edge (its margin went negative)."""
    # LANES margins per vector operation (the last one partial: ``m``, ``s``
    # and ``Wt`` are padded); the rare lanes that went negative (one update in
    # a hundred on ResNet-18) are moved one by one
    for t in range(0, cnt, LANES):
        neg = add_scaled_lanes(m, s, base + t, Wt, wb + t, d, cnt - t)
        if neg != 0:
            for u in range(LANES):
                if (neg >> u) & 1:
                    j = base + t + u
                    _place(j, _field(j, m, bound), blk_of, head, nxt, prv, bkt, top, bound, m, up)


@njit_borrowing
def _flip(i, s, m, thr, P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr, indices, data,
          blk_of, head, nxt, prv, bkt, top, bound, up):
    """Flip node ``i`` and update its neighbours' margins (the CSR, then stencils).

    A neighbour's update changes its ``h_j = s_j (As sigma)_j`` by
    ``2 s_i s_j As_ij``; its margin over its bound (minus its bucket's upper
    edge, or ``-thr`` outside the buckets) going negative is the only, rare,
    bucket work on this path."""
    h = _field(i, m, bound)
    s[i] = -s[i]
    _drop(i, -h, blk_of, head, nxt, prv, bkt, bound, m, thr)
    d = s[i] + s[i]
    for p in range(indptr[i], indptr[i + 1]):
        j = indices[p]
        m[j] += data[p] * d * s[j]
        if m[j] < 0:
            _place(j, _field(j, m, bound), blk_of, head, nxt, prv, bkt, top, bound, m, up)
    b = blk_of[i]
    # i is a source: the outputs of its group in every tap whose window holds it
    for u in range(fwd_ptr[b], fwd_ptr[b + 1]):
        k = fwd[u]
        cin, win, cout = P[k, _CIN], P[k, _WIN], P[k, _COUT]
        hout, wout, kh, kw = P[k, _HOUT], P[k, _WOUT], P[k, _KH], P[k, _KW]
        sh, sw, ph, pw, dh, dw = P[k, _SH], P[k, _SW], P[k, _PH], P[k, _PW], P[k, _DH], P[k, _DW]
        cin_g = cin // P[k, _GROUPS]
        cout_g = cout // P[k, _GROUPS]
        q = i - P[k, _SRC]
        c = q % cin
        sp_ = q // cin
        y = sp_ // win
        x = sp_ - y * win
        grp = c // cin_g
        for ky in range(kh):
            t = y + ph - ky * dh
            if t < 0 or t % sh != 0:
                continue
            oy = t // sh
            if oy >= hout:
                continue
            row = P[k, _DST] + oy * wout * cout
            wrow = P[k, _WF] + (c * kh + ky) * kw * cout_g
            if sw == 1 and dw == 1 and cout_g == cout:
                # one run per kernel row: outputs ox = x + pw - kx are adjacent,
                # and so are their weights, stored with kx reversed (kr = kw-1-kx)
                ox_lo = max(0, x + pw - kw + 1)
                ox_hi = min(wout - 1, x + pw)
                if ox_lo <= ox_hi:
                    _run(row + ox_lo * cout, (ox_hi - ox_lo + 1) * cout,
                         wrow + (kw - 1 - x - pw + ox_lo) * cout, d, s, m, Wt, blk_of, head,
                         nxt, prv, bkt, top, bound, up)
                continue
            for kx in range(kw):
                t2 = x + pw - kx * dw
                if t2 < 0 or t2 % sw != 0:
                    continue
                ox = t2 // sw
                if ox >= wout:
                    continue
                _run(row + ox * cout + grp * cout_g, cout_g, wrow + (kw - 1 - kx) * cout_g, d, s,
                     m, Wt, blk_of, head, nxt, prv, bkt, top, bound, up)
    # i is a destination: the inputs of its group under every tap
    for u in range(adj_ptr[b], adj_ptr[b + 1]):
        k = adj[u]
        cin, hin, win, cout = P[k, _CIN], P[k, _HIN], P[k, _WIN], P[k, _COUT]
        wout, kh, kw = P[k, _WOUT], P[k, _KH], P[k, _KW]
        sh, sw, ph, pw, dh, dw = P[k, _SH], P[k, _SW], P[k, _PH], P[k, _PW], P[k, _DH], P[k, _DW]
        cin_g = cin // P[k, _GROUPS]
        cout_g = cout // P[k, _GROUPS]
        q = i - P[k, _DST]
        co = q % cout
        sp_ = q // cout
        oy = sp_ // wout
        ox = sp_ - oy * wout
        grp = co // cout_g
        for ky in range(kh):
            y = oy * sh - ph + ky * dh
            if y < 0 or y >= hin:
                continue
            row = P[k, _SRC] + y * win * cin
            wrow = P[k, _WA] + (co * kh + ky) * kw * cin_g
            x0 = ox * sw - pw
            if dw == 1 and cin_g == cin:
                # one run per kernel row: inputs x = x0 + kx are adjacent, and so
                # are their weights
                x_lo = max(0, x0)
                x_hi = min(win - 1, x0 + kw - 1)
                if x_lo <= x_hi:
                    _run(row + x_lo * cin, (x_hi - x_lo + 1) * cin, wrow + (x_lo - x0) * cin,
                         d, s, m, Wt, blk_of, head, nxt, prv, bkt, top, bound, up)
                continue
            for kx in range(kw):
                x = x0 + kx * dw
                if x < 0 or x >= win:
                    continue
                _run(row + x * cin + grp * cin_g, cin_g, wrow + kx * cin_g, d, s, m, Wt, blk_of,
                     head, nxt, prv, bkt, top, bound, up)


@njit_borrowing
def _collect(b, lo_mag, theta, m, thr, blk_of, head, nxt, prv, bkt, top, bound, up, buf,
             stop_at_first):
    """Read block ``b``'s buckets from the top down while their upper edge
    exceeds ``lo_mag``, moving stale nodes down (or out) on the way; append
    the nodes with ``h < theta`` (and ``h < -thr``) to ``buf``.

    With ``stop_at_first``, stop after the first bucket holding a negative
    field (its minimum is then the block's).  Returns ``(nsel, hmin)``: the
    number of nodes in ``buf`` and the minimum field seen."""
    nsel = 0
    hmin = 0.0
    k = top[b]
    while k >= 0 and up[k] > lo_mag:
        j = head[b * _NBK + k]
        while j >= 0:
            nx = nxt[j]
            h = _field(j, m, bound)
            if h >= -thr[j]:
                _drop(j, h, blk_of, head, nxt, prv, bkt, bound, m, thr)
            else:
                if k > 0 and h > -up[k - 1]:
                    # stale: it moves down and is read there if that is in range
                    # (below the range |h| <= lo_mag, so it is no candidate)
                    _place(j, h, blk_of, head, nxt, prv, bkt, top, bound, m, up)
                else:
                    if h < hmin:
                        hmin = h
                    if h < theta:
                        buf[nsel] = j
                        nsel += 1
            j = nx
        if head[b * _NBK + k] < 0 and k == top[b]:
            top[b] = k - 1
        if stop_at_first and hmin < 0.0:
            break
        k -= 1
    return nsel, hmin


@njit(cache=True)
def _descend_one(P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr, indices, data, blk_start, blk_of,
                 cls_ptr, cls_blk, thr, s, f, up, gamma, decay, per_block, sweep0, max_sweeps):
    n = s.shape[0]
    nb = blk_start.shape[0]
    head = np.full(nb * _NBK, -1, np.int32)
    top = np.full(nb, -1, np.int64)
    nxt = np.empty(n, np.int32)
    prv = np.empty(n, np.int32)
    bkt = np.full(n, -1, np.int32)
    bound = np.empty(n, Wt.dtype)
    # the fields are kept as margins m = h - bound (h = s f) in the weights'
    # dtype: an update reads a gauge, a weight and a margin, and the margins
    # and gauges of a replica stay in a core's cache (ResNet-18 on 3x32x32:
    # 8 bytes a node, not the 20 of float64 fields beside float64 bounds)
    m = np.zeros(n + LANES, Wt.dtype)
    sp = np.zeros(n + LANES, np.float32)
    sp[:n] = s
    buf = np.empty(n, np.int64)
    for i in range(n):
        h = sp[i] * f[i]
        bound[i] = -thr[i]
        m[i] = h + thr[i]
        if h < bound[i]:
            _place(i, h, blk_of, head, nxt, prv, bkt, top, bound, m, up)
    sweeps = sweep0
    flips = 0
    while sweeps < max_sweeps:
        factor = gamma * decay ** sweeps
        if factor <= 1e-3:
            factor = 0.0
        hmin_all = 0.0
        if not per_block and factor > 0.0:
            # the replica's most negative field: each block's top bucket, cleaned
            for b in range(nb):
                _, hm = _collect(b, 0.0, -np.inf, m, thr, blk_of, head, nxt, prv, bkt,
                                 top, bound, up, buf, True)
                hmin_all = min(hmin_all, hm)
        n_sweep = 0
        for c in range(cls_ptr.shape[0] - 1):
            for q in range(cls_ptr[c], cls_ptr[c + 1]):
                b = cls_blk[q]
                if top[b] < 0:
                    continue
                # choose first: flipping edits the buckets of neighbouring blocks
                if factor == 0.0:
                    theta = 0.0
                elif per_block:
                    # the block's minimum now (earlier classes moved its fields)
                    _, hm = _collect(b, 0.0, -np.inf, m, thr, blk_of, head, nxt, prv,
                                     bkt, top, bound, up, buf, True)
                    theta = factor * hm
                else:
                    theta = factor * hmin_all
                nsel, _ = _collect(b, -theta, theta, m, thr, blk_of, head, nxt, prv,
                                   bkt, top, bound, up, buf, False)
                for t in range(nsel):
                    _flip(buf[t], sp, m, thr, P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr,
                          indices, data, blk_of, head, nxt, prv, bkt, top, bound, up)
                n_sweep += nsel
        # a sweep without flips found no negative field: every block holding
        # one flips at least its most negative node (factor < 1)
        if n_sweep == 0:
            break
        flips += n_sweep
        sweeps += 1
    for i in range(n):
        s[i] = sp[i]
        f[i] = sp[i] * _field(i, m, bound)
    return sweeps, flips


@njit_parallel
def _descend_batch(P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr, indices, data, blk_start, blk_of,
                   cls_ptr, cls_blk, thr, sigma, F, up, gamma, decay, per_block, sweeps,
                   max_sweeps, flips):
    for r in prange(sigma.shape[0]):
        sw, fl = _descend_one(P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr, indices, data,
                              blk_start, blk_of, cls_ptr, cls_blk, thr, sigma[r], F[r], up,
                              gamma, decay, per_block, sweeps[r], max_sweeps)
        sweeps[r] = sw
        flips[r] += fl


def compiled_descent(st: Stencils, sigma: np.ndarray, fields: np.ndarray, classes, thr,
                     *, gamma: float, decay: float, per_block: bool, sweeps: np.ndarray,
                     max_sweeps: int, flips: np.ndarray) -> None:
    """Run the steepest-first schedule in place until no field is below ``-thr``.

    Parameters
    ----------
    st : Stencils
        From :func:`stencils`.
    sigma, fields : ndarray (R, n), C-contiguous, internal order
        Gauges (+-1, float32) and their fields ``As sigma`` (float64); both
        are updated in place (the fields from the margins, which the kernel
        keeps in the weights' dtype).
    classes : list of lists of int
        Colour classes of node blocks (no edge inside a class).
    thr : ndarray float64 (n,), internal order
        A field counts as negative when ``h_i < -thr_i``.
    gamma, decay, per_block, max_sweeps
        The schedule (:func:`deepglass.solve.descent.descent`).
    sweeps, flips : ndarray int64 (R,)
        Sweeps done so far (the schedule's ``k`` continues from them) and flips;
        updated in place.

    Notes
    -----
    Cost per replica: O(n) to bucket the negative fields, then O(deg(i)) per
    flip plus the top buckets each sweep reads; replicas in parallel.
    The fields are updated incrementally: the caller verifies them against
    ``As sigma`` recomputed from scratch.
    """
    if sigma.dtype != np.float32:
        raise ValueError(f"compiled_descent: sigma must be float32, got {sigma.dtype}")
    if not (sigma.flags.c_contiguous and fields.flags.c_contiguous):
        raise ValueError("compiled_descent: sigma and fields must be C-contiguous (R, n)")
    blk_start = np.ascontiguousarray(st.blocks[:, 0])
    blk_of = np.repeat(np.arange(len(blk_start), dtype=np.int32), st.blocks[:, 1] - blk_start)
    cls_ptr = np.cumsum([0] + [len(c) for c in classes]).astype(np.int64)
    cls_blk = np.array([b for c in classes for b in c], dtype=np.int64)
    r = st.rest
    _descend_batch(st.params, st.weights, st.fwd_ptr, st.fwd, st.adj_ptr, st.adj,
                   r.indptr.astype(np.int64, copy=False), r.indices.astype(np.int64, copy=False),
                   r.data.astype(np.float64, copy=False), blk_start, blk_of, cls_ptr, cls_blk,
                   np.ascontiguousarray(thr, dtype=np.float64), sigma, fields, _bucket_edges(),
                   float(gamma), float(decay), bool(per_block), sweeps, int(max_sweeps), flips)

"""Unshared (locally connected) convolution blocks: a convolution's edges, one
weight per edge.

The N2 null model (SPEC §3) reassigns the edge weights of every convolution at
random over the same edge positions, so weight sharing is gone and a kernel no
longer describes the layer.  :class:`UnsharedConvBlock` stores the per-edge
weights in the layout of the unfolded convolution,

    ``edge_weight[l, o, k]``,  shape ``(L, C_out, K)``,

with ``l`` the output position (C order over the output's spatial shape), ``o``
the output channel and ``k = c * prod(kernel) + t`` the input channel within
the group and the kernel tap, exactly the rows of ``F.unfold``.  Slots whose
input falls into the zero padding are not edges; they hold 0 and are never
read as edges (the unfolded input is zero there).

``A_b^T x`` is then one batched matrix product per output position,
``y[:, o, l] = sum_k W[l, o, k] cols[l, k]``, and ``A_b y`` the transposed
product followed by a fold (scatter-add of the patches): both cost one pass
over the ``L * C_out * K`` stored weights.  Absolute values and dtype casts
are taken per element (numba kernels, CPU) or per chunk of positions
(``torch.bmm``, other devices), never for the whole tensor at once.

Storage and compute precision are separate: :meth:`UnsharedConvBlock.to` with a
wider dtype (e.g. float64 for exact sums) keeps the stored weights, so
AlexNet's 0.6 B conv edges stay at 4 bytes each (2.6 GB).
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import prange

from .._numba import njit_parallel
from .blocks import ConvBlock, EdgeBlock
from .blocks.conv import AdjointBlock

__all__ = ["UnsharedConvBlock"]

_NUMBA_TYPES = (torch.float32, torch.float64)


@contextmanager
def _numba_threads():
    """Run the numba kernels on as many threads as torch uses (the descent drops
    to one thread in its sparse tail)."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


#: a position whose nonzero inputs are fewer than this fraction of its slots
#: gathers those weights instead of streaming the whole row (the descent's
#: field updates propagate the few flipped spins)
SPARSE_INPUT_FRACTION = 1 / 16


@njit_parallel(fastmath=True)
def _forward_kernel(W, cols, out, per_group, absolute, sparse_fraction):
    """``out[l, o, r] = sum_k W[l, o, k] cols[l, r, g(o) K + k]``: one streaming
    pass over ``W`` (a batched matrix-vector product; BLAS's batched GEMM is
    several times slower for so few right-hand sides).  Where a position's
    inputs are mostly zero, only the weights of the nonzero slots are read."""
    L, O, K = W.shape
    R, KF = cols.shape[1], cols.shape[2]
    for l in prange(L):
        nz = np.empty(KF, np.int64)
        cnt = 0
        for k in range(KF):
            for r in range(R):
                if cols[l, r, k] != 0:
                    nz[cnt] = k
                    cnt += 1
                    break
        gathered = cnt < sparse_fraction * KF
        for o in range(O):
            base = (o // per_group) * K
            for r in range(R):
                s = cols[l, r, 0] * 0
                if gathered:
                    for q in range(cnt):
                        k = nz[q] - base
                        if 0 <= k < K:
                            w = abs(W[l, o, k]) if absolute else W[l, o, k]
                            s += w * cols[l, r, base + k]
                elif absolute:
                    for k in range(K):
                        s += abs(W[l, o, k]) * cols[l, r, base + k]
                else:
                    for k in range(K):
                        s += W[l, o, k] * cols[l, r, base + k]
                out[l, o, r] = s


@njit_parallel(fastmath=True)
def _adjoint_kernel(W, y, cols, per_group, absolute):
    """``cols[l, r, g(o) K + k] = sum_o W[l, o, k] y[l, o, r]``; rows of ``W`` whose
    ``y`` is zero in every replica are not read."""
    L, O, K = W.shape
    R = y.shape[2]
    for l in prange(L):
        cols[l] = 0
        for o in range(O):
            base = (o // per_group) * K
            for r in range(R):
                a = y[l, o, r]
                if a == 0:
                    continue
                if absolute:
                    for k in range(K):
                        cols[l, r, base + k] += a * abs(W[l, o, k])
                else:
                    for k in range(K):
                        cols[l, r, base + k] += a * W[l, o, k]


#: stored weights per chunk of output positions (elements) in apply / adjoint
CHUNK_ELEMENTS = 1 << 22


class UnsharedConvBlock(EdgeBlock):
    """The edges of a convolution with one independent weight per edge.

    Parameters
    ----------
    conv : ConvBlock
        Gives the geometry (shapes, kernel, stride, padding, dilation, groups)
        and the graph wiring (sources, destination); its weights and scales
        are not kept (fold scales into ``edge_weight``, as N2 does).
    edge_weight : torch.Tensor
        Shape ``(L, C_out, C_in/groups * prod(kernel))``, see the module
        docstring.  Padding slots should be 0.
    dtype : torch.dtype, optional
        Compute dtype (default: that of ``edge_weight``).

    Notes
    -----
    Any N-d convolution works: patches come from ``F.unfold`` / ``F.fold``
    (1-d and 2-d) or from strided views of the padded input with one slice-add
    per kernel tap for the adjoint (3-d).  On the CPU the per-position products
    are numba kernels (one streaming pass over the weights; BLAS's batched GEMM
    is several times slower for a few right-hand sides), elsewhere chunked
    ``torch.bmm``.  Memory: the stored weights plus the unfolded input
    (``R * L * C_in * prod(kernel)`` values) per call.
    """

    kind = "unshared_conv"
    # a full pass streams every stored weight (several times a convolution's
    # cost), so sparse column updates pay off at higher flip fractions
    sparse_advantage = 2.0

    def __init__(self, conv: ConvBlock, edge_weight: torch.Tensor,
                 dtype: torch.dtype | None = None):
        super().__init__(conv.in_shape, conv.out_shape, conv.module)
        self.kernel = tuple(int(k) for k in conv.weight.shape[2:])
        self.nd = conv.nd
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.c_out, self.c_in_g = int(conv.weight.shape[0]), int(conv.weight.shape[1])
        shape = (self.n_positions, self.c_out, self.k_group)
        if tuple(edge_weight.shape) != shape:
            raise ValueError(f"edge_weight of {conv.module!r} must have shape {shape}, "
                             f"got {tuple(edge_weight.shape)}")
        self.edge_weight = edge_weight.detach()
        self.dtype = dtype or edge_weight.dtype
        self.src_index, self.src_range, self.dst = conv.src_index, conv.src_range, conv.dst
        self.src_blocks = conv.src_blocks

    # ---- geometry -----------------------------------------------------------------
    @property
    def n_positions(self) -> int:
        return math.prod(self.out_shape[1:])

    @property
    def k_group(self) -> int:
        """Stored weights per (position, output channel): ``C_in/groups * prod(kernel)``."""
        return self.c_in_g * math.prod(self.kernel)

    def geometry(self, weight: torch.Tensor | None = None) -> ConvBlock:
        """A :class:`ConvBlock` with this block's geometry and wiring (and ``weight``,
        by default a zero-stride placeholder that takes no memory)."""
        if weight is None:
            weight = torch.zeros((), device=self.edge_weight.device).expand(
                (self.c_out, self.c_in_g) + self.kernel)
        g = ConvBlock(weight, self.in_shape, self.out_shape, self.stride, self.padding,
                      self.dilation, self.groups, self.module)
        g.src_index, g.src_range, g.dst, g.src_blocks = (self.src_index, self.src_range,
                                                         self.dst, self.src_blocks)
        return g

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Unfold ``x`` (R, C_in, *in_spatial) -> (L, R, C_in * prod(kernel)), zero
        where a tap falls into the padding."""
        R = x.shape[0]
        pads = []
        for lo, hi in reversed(self.padding):
            pads += [lo, hi]
        if any(pads):
            x = F.pad(x, pads)
        if self.nd <= 2:   # torch's im2col
            k2, s2, d2 = self._as_2d()
            cols = F.unfold(x.reshape((R, -1) + (1,) * (2 - self.nd) + x.shape[2:]), k2,
                            dilation=d2, stride=s2)                       # (R, C*kk, L)
            return cols.permute(2, 0, 1)
        for d, (k, s, dl) in enumerate(zip(self.kernel, self.stride, self.dilation)):
            x = x.unfold(2 + d, dl * (k - 1) + 1, s)
        if any(dl > 1 for dl in self.dilation):
            x = x[(Ellipsis,) + tuple(slice(None, None, dl) for dl in self.dilation)]
        nd = self.nd
        # (R, C, O_1..O_nd, k_1..k_nd) -> (O_1..O_nd, R, C, k_1..k_nd)
        perm = list(range(2, 2 + nd)) + [0, 1] + list(range(2 + nd, 2 + 2 * nd))
        return x.permute(perm).reshape(self.n_positions, R, -1)

    def fold(self, cols: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`patches`: (L, R, C_in * prod(kernel)) -> (R, C_in, *in_spatial)."""
        R = cols.shape[1]
        C = self.in_shape[0]
        sp_out = self.out_shape[1:]
        padded = [L + lo + hi for L, (lo, hi) in zip(self.in_shape[1:], self.padding)]
        crop = tuple(slice(lo, lo + L) for (lo, _), L in zip(self.padding, self.in_shape[1:]))
        if self.nd <= 2:   # torch's col2im
            k2, s2, d2 = self._as_2d()
            x = F.fold(cols.permute(1, 2, 0), [1] * (2 - self.nd) + padded, k2,
                       dilation=d2, stride=s2).reshape(R, C, *padded)
            return x[(slice(None), slice(None)) + crop]
        x = cols.new_zeros((R, C, *padded))
        c = cols.reshape(*sp_out, R, C, *self.kernel)
        nd = self.nd
        # (O.., R, C, k..) -> (k.., R, C, O..): one (R, C, O..) slab per tap
        c = c.permute(list(range(nd + 2, 2 * nd + 2)) + [nd, nd + 1] + list(range(nd)))
        for tap in np.ndindex(*self.kernel):
            sl = tuple(slice(t * dl, t * dl + (O - 1) * s + 1, s) for t, dl, O, s in
                       zip(tap, self.dilation, sp_out, self.stride))
            x[(slice(None), slice(None)) + sl] += c[tap]
        return x[(slice(None), slice(None)) + crop]

    def _as_2d(self):
        """Kernel, stride, dilation as 2-d tuples (a 1-d conv is 1 x k)."""
        pad = (1,) * (2 - self.nd)
        return pad + self.kernel, pad + self.stride, pad + self.dilation

    def valid_mask(self) -> torch.Tensor:
        """Bool (L, K): which stored slots are edges (input in bounds); the same for
        every output channel."""
        ones = torch.ones((1, self.c_in_g) + self.in_shape[1:], device=self.edge_weight.device)
        return self.patches(ones)[:, 0, :] != 0

    def _chunks(self):
        step = max(1, CHUNK_ELEMENTS // max(1, self.c_out * self.k_group))
        for l0 in range(0, self.n_positions, step):
            yield l0, min(self.n_positions, l0 + step)

    def _weights(self, l0: int, l1: int, absolute: bool, dtype) -> torch.Tensor:
        w = self.edge_weight[l0:l1]
        if w.dtype != dtype:
            w = w.to(dtype)
        return w.abs() if absolute else w

    def _use_kernels(self, t: torch.Tensor) -> bool:
        return (t.device.type == "cpu" and self.edge_weight.dtype in _NUMBA_TYPES
                and t.dtype in _NUMBA_TYPES)

    # ---- EdgeBlock interface -----------------------------------------------------
    def _apply(self, x, absolute):
        R = x.shape[0]
        cols = self.patches(x.to(self.dtype)).contiguous()                 # (L, R, G*K)
        out = cols.new_empty((self.n_positions, self.c_out, R))
        Kg, Og = self.k_group, self.c_out // self.groups
        if self._use_kernels(cols):
            with _numba_threads():
                _forward_kernel(self.edge_weight.contiguous().numpy(), cols.numpy(),
                                out.numpy(), Og, absolute, SPARSE_INPUT_FRACTION)
        else:
            for l0, l1 in self._chunks():
                w = self._weights(l0, l1, absolute, cols.dtype)
                for g in range(self.groups):
                    out[l0:l1, g * Og:(g + 1) * Og] = torch.bmm(
                        w[:, g * Og:(g + 1) * Og], cols[l0:l1, :, g * Kg:(g + 1) * Kg].mT)
        return out.permute(2, 1, 0).reshape((R,) + self.out_shape)

    def _adjoint(self, y, absolute):
        R = y.shape[0]
        yl = y.to(self.dtype).reshape(R, self.c_out, -1).permute(2, 1, 0).contiguous()
        Kg, Og = self.k_group, self.c_out // self.groups
        cols = yl.new_empty((self.n_positions, R, self.groups * Kg))
        if self._use_kernels(yl):
            with _numba_threads():
                _adjoint_kernel(self.edge_weight.contiguous().numpy(), yl.numpy(),
                                cols.numpy(), Og, absolute)
        else:
            for l0, l1 in self._chunks():
                w = self._weights(l0, l1, absolute, yl.dtype)
                for g in range(self.groups):
                    cols[l0:l1, :, g * Kg:(g + 1) * Kg] = torch.bmm(
                        w[:, g * Og:(g + 1) * Og].mT, yl[l0:l1, g * Og:(g + 1) * Og]).mT
        return self.fold(cols)

    def n_edges(self):
        return self.geometry().n_edges()

    def _pattern(self):
        # the convolution's edges, every weight 1 (|A| stood in: active
        # subnetworks of an N2 draw counted weight sums as edges)
        return self.geometry(torch.ones((self.c_out, self.c_in_g) + self.kernel,
                                        device=self.edge_weight.device)).pattern()

    def n_params(self):
        return self.n_edges()

    def _abs_total(self) -> float:
        """``sum |A_b|`` in float64, chunk by chunk (padding slots hold 0); the L1
        norm makes no ``abs()`` copy of a chunk (cached by :meth:`abs_sum`: an
        N2 draw's weights are as many as its real network's edges)."""
        if self.in_scale is not None or self.out_scale is not None:
            return super()._abs_total()
        return float(sum(torch.linalg.vector_norm(self.edge_weight[l0:l1], 1, dtype=torch.float64)
                         for l0, l1 in self._chunks()))

    def supports_sparse(self):
        return self.out_scale is None

    def _sparse(self, idx, vals, transpose):
        # ConvBlock's sparse column updates with the weight looked up per edge
        view = self.geometry()
        view.in_scale = self.in_scale
        W, kk, dtype = self.edge_weight, math.prod(self.kernel), self.dtype
        view._edge_weight = lambda co, cl, t, o_sp: W[o_sp, co, cl * kk + t].to(dtype)
        return ConvBlock._sparse(view, idx, vals, transpose)

    def _coo(self):
        # ConvBlock's enumeration with slot ids as weights gives (co, c, tap) per edge
        ids = torch.arange(self.c_out * self.k_group, dtype=torch.float64)
        src, dst, w = self.geometry(ids.reshape((self.c_out, self.c_in_g) + self.kernel))._coo()
        ids = w.astype(np.int64)
        l = dst % self.n_positions
        W = self.edge_weight.detach().double().cpu().numpy()
        return src, dst, W[l, ids // self.k_group, ids % self.k_group]

    def _device(self):
        return self.edge_weight.device

    def _tensors(self):
        # (the weights :meth:`abs_sum`'s cache is kept for)
        return ["edge_weight"]

    def to(self, device=None, dtype=None) -> "UnsharedConvBlock":
        """A copy on ``device`` computing in ``dtype``; the stored weights are cast
        only to a narrower dtype (a wider one is applied chunk by chunk)."""
        new = copy.copy(self)
        narrower = dtype is not None and (torch.finfo(dtype).bits
                                          < torch.finfo(self.edge_weight.dtype).bits)
        store = dtype if narrower else None
        new.edge_weight = self.edge_weight.to(device=device, dtype=store)
        new.dtype = dtype or self.dtype
        for name in ("in_scale", "out_scale"):
            t = getattr(self, name)
            if t is not None:
                setattr(new, name, t.to(device=device, dtype=dtype))
        if self.src_index is not None and device is not None:
            new.src_index = self.src_index.to(device)
        new.__dict__.pop("_csr_cache", None)
        return new

    def describe(self):
        k = "x".join(str(s) for s in self.kernel)
        g = f" g{self.groups}" if self.groups > 1 else ""
        return f"unshared conv{self.nd}d {k}/s{self.stride[0]}{g}"


class UnsharedConvTransposeBlock(AdjointBlock):
    """A transposed convolution with one independent weight per edge (N2 of a
    :class:`~deepglass.graph.blocks.ConvTransposeBlock`): the adjoint of an
    :class:`UnsharedConvBlock` from the block's output back to its input."""

    kind = "unshared_conv_transpose"
    sparse_advantage = UnsharedConvBlock.sparse_advantage

    def __init__(self, block: EdgeBlock, conv: UnsharedConvBlock):
        super().__init__(block.in_shape, block.out_shape, block.module)
        self.conv = conv
        self.src_index, self.src_range, self.dst = block.src_index, block.src_range, block.dst
        self.src_blocks = block.src_blocks

    def describe(self):
        return f"unshared conv_transpose {'x'.join(map(str, self.conv.kernel))} -> " \
               f"{self.out_shape}"

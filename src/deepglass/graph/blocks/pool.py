"""Pooling and interpolation as edge blocks (SPEC §1, §1b): separable windows
with fixed positive weights."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .base import EdgeBlock, nonzero_like
from .sparse import SparseBlock

__all__ = ["PoolBlock", "ResampleBlock", "WindowTable", "pool_windows", "adaptive_windows",
           "DENSE_ENTRIES"]


def pool_windows(L: int, kernel: int, stride: int, padding: int, dilation: int,
                 ceil_mode: bool) -> list[np.ndarray]:
    """In-bounds input positions of each window of a (max or average) pool,
    with PyTorch's output-size rule (incl. ``ceil_mode``)."""
    eff = dilation * (kernel - 1) + 1
    num = L + 2 * padding - eff
    O = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (O - 1) * stride >= L + padding:
        O -= 1
    wins = []
    for o in range(O):
        i = o * stride - padding + dilation * np.arange(kernel)
        wins.append(i[(i >= 0) & (i < L)])
    return wins


#: entries of a pool's per-dimension matrix above which it is held sparse
DENSE_ENTRIES = 1 << 22


def _contract(x: torch.Tensor, P: torch.Tensor, dim: int, transpose: bool) -> torch.Tensor:
    """``x`` with its axis ``dim`` contracted with ``P`` (O x L): by ``P`` (L ->
    O), or by ``P^T`` (O -> L) with ``transpose``; a sparse ``P`` by one sparse
    product of the value moved to (L, rest), O(nnz x rest)."""
    if not P.is_sparse:
        return torch.movedim(torch.tensordot(x, P, dims=([dim], [0 if transpose else 1])), -1, dim)
    xm = torch.movedim(x, dim, 0)
    flat = xm.reshape(xm.shape[0], -1)
    out = torch.sparse.mm(P.t() if transpose else P, flat)
    return torch.movedim(out.reshape((out.shape[0],) + tuple(xm.shape[1:])), 0, dim)


def _entries(P: torch.Tensor, o: np.ndarray, i: np.ndarray) -> np.ndarray:
    """``P[o, i]`` (dense or sparse ``P``) as a NumPy array."""
    if not P.is_sparse:
        return P.detach().double().cpu().numpy()[o, i]
    P = P.detach().coalesce().cpu()
    L = P.shape[1]
    keys = (P.indices()[0] * L + P.indices()[1]).numpy()      # sorted: coalesced
    at = np.searchsorted(keys, o * L + i)
    return P.values().double().numpy()[at]


def adaptive_windows(L: int, O: int) -> list[np.ndarray]:
    """Windows of PyTorch's adaptive pooling: ``[floor(o L / O), ceil((o+1) L / O))``."""
    return [np.arange((o * L) // O, -(-((o + 1) * L) // O)) for o in range(O)]


class PoolBlock(EdgeBlock):
    """Max or average pooling (incl. adaptive, ``ceil_mode``, global means):
    one edge from every in-bounds element of a window to its output, with a
    fixed positive weight (SPEC §1: default ``1/|window|``; an average pool's
    own divisor per window, ``window_weights``: one factor per window and
    dimension, whose product over dimensions is the weight).

    Windows are separable, so the operator is a product of one small matrix
    ``P_d`` (outputs x inputs) per spatial dimension, applied per channel.
    Edges: ``C * prod_d nnz(P_d)``.  A ``P_d`` of more than
    :data:`DENSE_ENTRIES` entries (a 1-d pool over a long signal: raw audio's
    ``L`` of 10^5) is held sparse, in O(nnz) memory rather than O(O_d L_d).
    """

    kind = "pool"
    fixed_weights = True

    def __init__(self, in_shape, out_shape, windows: Sequence[Sequence[np.ndarray]],
                 pool_type: str, weight: float | None = None, kernel_area: int | None = None,
                 module: str = "", window_weights: Sequence[np.ndarray] | None = None):
        super().__init__(in_shape, out_shape, module)
        self.pool_type = pool_type  # "max" or "avg": same graph, differs for active subgraphs
        self.windows = [list(w) for w in windows]
        mats = []
        for d, (wins, L) in enumerate(zip(self.windows, self.in_shape[1:])):
            sizes = np.fromiter((len(w) for w in wins), dtype=np.int64, count=len(wins))
            if weight is not None:
                val = np.full(len(wins), weight if d == 0 else 1.0)
            elif window_weights is not None:    # an average pool's own factors per dim
                val = np.asarray(window_weights[d], dtype=np.float64)
            elif kernel_area is not None:       # regular pool: 1/|kernel window|
                val = np.full(len(wins), kernel_area ** (-1.0 / len(self.windows)))
            else:                               # adaptive pool: 1/|this window|
                val = 1.0 / np.maximum(sizes, 1)
            rows = np.repeat(np.arange(len(wins)), sizes)
            cols = np.concatenate(wins).astype(np.int64) if len(wins) else np.zeros(0, np.int64)
            vals = torch.as_tensor(np.repeat(val, sizes), dtype=torch.float64)
            if len(wins) * L > DENSE_ENTRIES:
                idx = torch.as_tensor(np.stack([rows, cols]))
                mats.append(torch.sparse_coo_tensor(idx, vals, (len(wins), L)).coalesce())
            else:
                P = torch.zeros(len(wins), L, dtype=torch.float64)
                P[torch.as_tensor(rows), torch.as_tensor(cols)] = vals
                mats.append(P)
        self.mats = mats
        self.spatial_out = tuple(len(w) for w in self.windows)

    def _tensors(self):
        return []

    def to(self, device=None, dtype=None):
        new = super().to(device, dtype)
        new.mats = [m.to(device=device, dtype=dtype) for m in self.mats]
        return new

    def _device(self):
        return self.mats[0].device if self.mats else torch.device("cpu")

    def _mats(self, like):
        if self.mats[0].dtype != like.dtype or self.mats[0].device != like.device:
            self.mats = [m.to(like) for m in self.mats]
        return self.mats

    def _apply(self, x, absolute):
        R = x.shape[0]
        for d, P in enumerate(self._mats(x)):
            # contract spatial dim d (axis 2 + d) with P (O_d x L_d)
            x = _contract(x, P, 2 + d, transpose=False)
        return x.reshape((R,) + self.out_shape) if x.shape[1:] != self.out_shape else x

    def _adjoint(self, y, absolute):
        R = y.shape[0]
        y = y.reshape((R, self.in_shape[0]) + self.spatial_out)
        for d, P in enumerate(self._mats(y)):
            y = _contract(y, P, 2 + d, transpose=True)
        return y

    def n_edges(self):
        return self.in_shape[0] * math.prod(sum(len(w) for w in wins) for wins in self.windows)

    def _coo(self):
        C = self.in_shape[0]
        per_dim = []
        for wins, P in zip(self.windows, self.mats):
            o = np.concatenate([np.full(len(w), k) for k, w in enumerate(wins)]).astype(np.int64)
            i = np.concatenate(wins).astype(np.int64)
            per_dim.append((o, i, _entries(P, o, i)))
        grids = np.meshgrid(*[np.arange(len(p[0])) for p in per_dim], indexing="ij")
        o_flat = np.zeros(grids[0].size, dtype=np.int64)
        i_flat = np.zeros_like(o_flat)
        w = np.ones(grids[0].size)
        for d, (g, (oo, ii, ww)) in enumerate(zip(grids, per_dim)):
            g = g.ravel()
            o_flat = o_flat * self.spatial_out[d] + oo[g]
            i_flat = i_flat * self.in_shape[1 + d] + ii[g]
            w = w * ww[g]
        n_sp_in = math.prod(self.in_shape[1:])
        n_sp_out = math.prod(self.spatial_out)
        c = np.arange(C)[:, None]
        return ((c * n_sp_in + i_flat).ravel(), (c * n_sp_out + o_flat).ravel(),
                np.tile(w, C))

    def value_dtype(self):
        return self.mats[0].dtype

    def _pattern(self):
        p = copy.copy(self)
        p.mats = [nonzero_like(m) for m in self.mats]
        return p

    # ---- active subnetworks: a max pool keeps the edges from its window maxima
    def selects_edges(self) -> bool:
        return self.pool_type == "max"

    def window_table(self) -> "WindowTable":
        """The windows as an (outputs x taps) table, built once per block."""
        if "_window_table" not in self.__dict__:
            self._window_table = WindowTable.of(self)
        return self._window_table

    def select_edges(self, src_values):
        """Max pool (SPEC §4): the taps (B, n_out, T) that hold their window's
        maximum of ``src_values`` (B, in_size), all of them on ties.  O(B x edges)."""
        if not self.selects_edges():
            return None
        win = self.window_table().to(src_values.device)
        taps = src_values.reshape(src_values.shape[0], -1)[:, win.idx.clamp(min=0)]
        taps = torch.where(win.valid[None], taps, torch.full_like(taps, -math.inf))
        return (taps == taps.amax(2, keepdim=True)) & win.valid[None]

    def selected_adjoint(self, taps, r):
        """Pull ``r`` (B, out_size) back along the selected edges (weight 1):
        (B, *in_shape), the pattern adjoint of the restricted block."""
        win = self.window_table().to(r.device)
        B = r.shape[0]
        out = torch.zeros((B, self.in_size), dtype=r.dtype, device=r.device)
        vals = (r[:, :, None] * taps).reshape(B, -1)
        out.scatter_add_(1, win.idx.clamp(min=0).reshape(-1).expand(B, -1), vals)
        return out.reshape((B,) + self.in_shape)

    def selected_counts(self, taps, src_mask, dst_mask):
        """Edges and ``sum |weight|`` (each (B,)) of the selected edges between
        kept sources ``src_mask`` (B, in_size) and destinations (B, out_size)."""
        win = self.window_table().to(taps.device)
        B = taps.shape[0]
        full = taps & (src_mask.reshape(B, -1)[:, win.idx.clamp(min=0)] > 0) & \
            (dst_mask.reshape(B, -1)[:, :, None] > 0)
        return full.sum((1, 2)), (full * win.weight.abs()[None]).sum((1, 2))

    def selected_edges(self, taps, src_mask, dst_mask):
        """Kept (local source, local destination, weight) edges of one input:
        ``taps`` (n_out, T) and the 0/1 masks, NumPy arrays."""
        win = self.window_table()
        idx = win.idx.cpu().numpy()
        ok = taps & win.valid.cpu().numpy()
        ok &= src_mask.reshape(-1)[np.where(idx >= 0, idx, 0)] & dst_mask.reshape(-1)[:, None]
        o, t = np.nonzero(ok)
        return idx[o, t], o, win.weight.cpu().numpy()[o, t]

    def restrict(self, src_mask, dst_mask, *, n_edges=None, selection=None):
        if selection is None:
            return super().restrict(src_mask, dst_mask, n_edges=n_edges)
        dev = self._device()
        s, d, w = self.selected_edges(np.asarray(selection), np.asarray(src_mask, dtype=bool),
                                      np.asarray(dst_mask, dtype=bool))
        sb = SparseBlock(self.in_shape, self.out_shape, torch.from_numpy(s), torch.from_numpy(d),
                         torch.from_numpy(w).to(self.value_dtype()), module=self.module)
        sb.src_index, sb.src_range = self.src_index, self.src_range
        sb.src_blocks, sb.dst = self.src_blocks, self.dst
        return sb.to(device=dev)

    def describe(self):
        return f"{self.pool_type}pool -> {'x'.join(map(str, self.spatial_out))}"


class ResampleBlock(PoolBlock):
    """Upsampling / interpolation (nearest, (bi/tri)linear): a linear operator
    with fixed positive weights (SPEC §1b), one edge per nonzero interpolation
    weight.

    The interpolation is separable, so, as for pooling, the operator is one
    matrix ``M_d`` (outputs x inputs) per spatial dimension applied per channel;
    ``M_d`` is read off the framework's own interpolation (see
    :func:`deepglass.graph.aten.interpolation_matrices`), so every mode and
    ``align_corners`` convention is PyTorch's.  Nearest: weight 1 per edge.
    """

    kind = "resample"

    def __init__(self, in_shape, out_shape, mats: Sequence[torch.Tensor], mode: str = "",
                 module: str = ""):
        windows = [[np.flatnonzero(row) for row in M.double().cpu().numpy()] for M in mats]
        super().__init__(in_shape, out_shape, windows, "resample", weight=1.0, module=module)
        self.mode = mode
        self.mats = [M.detach().double().cpu() for M in mats]

    def describe(self):
        return f"{self.mode or 'resample'} -> {'x'.join(map(str, self.spatial_out))}"


@dataclass
class WindowTable:
    """Local source index (``idx``, -1 = no tap) and edge weight of every
    (output, tap) of a pool block; ``T`` = largest window."""

    idx: torch.Tensor      # (n_out, T) int64, -1 where the window is smaller
    weight: torch.Tensor   # (n_out, T) float64
    valid: torch.Tensor    # (n_out, T) bool

    @classmethod
    def of(cls, b: PoolBlock) -> "WindowTable":
        i, j, w = b.coo()
        order = np.lexsort((i, j))
        i, j, w = i[order], j[order], w[order]
        n_out = b.out_size
        counts = np.bincount(j, minlength=n_out)
        T = int(counts.max()) if len(counts) else 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        tap = np.arange(len(j)) - starts[j]
        idx = np.full((n_out, T), -1, dtype=np.int64)
        wt = np.zeros((n_out, T))
        idx[j, tap] = i
        wt[j, tap] = w
        return cls(torch.from_numpy(idx), torch.from_numpy(wt), torch.from_numpy(idx >= 0))

    def to(self, device):
        if self.idx.device == torch.device(device):
            return self
        return WindowTable(self.idx.to(device), self.weight.to(device), self.valid.to(device))

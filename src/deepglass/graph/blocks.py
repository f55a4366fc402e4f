"""Edge blocks: the linear operators between node blocks of a :class:`SignedGraph`.

An edge block carries all edges of one layer (or one branch of an addition)
from its source neurons to its destination node block.  With the convention of
SPEC §1, ``A[i, j]`` is the weight of the edge ``i -> j``, so propagating a
vector along the edges is ``y = A^T x`` (what the layer computes, bias and
nonlinearity removed) and the adjoint is ``x = A y``.

A block knows how to

- :meth:`EdgeBlock.apply` ``A_b^T x`` and :meth:`EdgeBlock.adjoint` ``A_b y``,
  batched over a leading replica dimension, optionally with ``|A_b|``;
- :meth:`EdgeBlock.n_edges`: count its edges by formula, without enumerating;
- :meth:`EdgeBlock.coo`: list its edges explicitly (small graphs only).

Adding a layer kind is one subclass implementing ``_apply``, ``_adjoint``,
``n_edges`` and ``_coo``, plus one entry in the op table of
:mod:`deepglass.graph.trace`.  Source scales (batch norm folded onto a value
that is not the output of a weight layer) and destination scales (folded batch
norm, scalar multiplication) are handled here, once, for every kind.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["EdgeBlock", "DenseBlock", "ConvBlock", "ConvTransposeBlock", "PoolBlock",
           "ResampleBlock", "IdentityBlock", "LocallyConnectedBlock", "EDGE_BLOCK_KINDS"]


class EdgeBlock:
    """Base class of edge blocks.

    Attributes
    ----------
    in_shape, out_shape : tuple of int
        Per-sample shapes of the source value and of the destination block.
    src_index : torch.LongTensor or None
        Global node ids of the source value (shape ``in_shape``); ``None`` when
        the source is the contiguous range ``src_range``.
    src_range : (int, int) or None
        ``[start, stop)`` global ids of a contiguous source (the common case).
    dst : int
        Index of the destination node block in the graph.
    in_scale : torch.Tensor or None
        Per-source-element multiplier (shape ``in_shape``).
    out_scale : torch.Tensor or None
        Multiplier broadcast over ``out_shape``.
    module : str
        The module path (or fx node name) the block came from.
    """

    kind: ClassVar[str] = "abstract"

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], module: str = ""):
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.module = module
        self.src_index: torch.Tensor | None = None
        self.src_range: tuple[int, int] | None = None
        self.src_blocks: tuple[int, ...] = ()
        self.dst: int = -1
        self.in_scale: torch.Tensor | None = None
        self.out_scale: torch.Tensor | None = None

    # ---- to implement in subclasses ----------------------------------------
    def _apply(self, x: torch.Tensor, absolute: bool) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor, absolute: bool) -> torch.Tensor:
        raise NotImplementedError

    def n_edges(self) -> int:
        """Exact number of edges, by formula."""
        raise NotImplementedError

    def _coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source flat index, destination flat index, weight), local to the block."""
        raise NotImplementedError

    def _tensors(self) -> list[str]:
        """Names of tensor attributes moved by :meth:`to`."""
        return []

    # ---- shared ---------------------------------------------------------------
    @property
    def in_size(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_size(self) -> int:
        return math.prod(self.out_shape)

    def scale_output(self, scale: torch.Tensor | float) -> None:
        """Multiply every edge by ``scale`` of its destination (broadcast over
        ``out_shape``): batch-norm folding, scalar multiplication."""
        s = torch.as_tensor(scale, dtype=torch.float64, device=self._device())
        self.out_scale = s if self.out_scale is None else self.out_scale * s

    def apply(self, x: torch.Tensor, absolute: bool = False) -> torch.Tensor:
        """``A_b^T x``: propagate ``x`` (R, *in_shape) along the edges -> (R, *out_shape)."""
        if self.in_scale is not None:
            x = x * (self.in_scale.abs() if absolute else self.in_scale)
        y = self._apply(x, absolute)
        if self.out_scale is not None:
            y = y * (self.out_scale.abs() if absolute else self.out_scale)
        return y

    def adjoint(self, y: torch.Tensor, absolute: bool = False) -> torch.Tensor:
        """``A_b y``: pull ``y`` (R, *out_shape) back to the sources -> (R, *in_shape)."""
        if self.out_scale is not None:
            y = y * (self.out_scale.abs() if absolute else self.out_scale)
        x = self._adjoint(y, absolute)
        if self.in_scale is not None:
            x = x * (self.in_scale.abs() if absolute else self.in_scale)
        return x

    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Explicit edges with local indices, all scales applied."""
        i, j, w = self._coo()
        w = w.astype(np.float64, copy=True)
        if self.in_scale is not None:
            w *= self.in_scale.detach().double().cpu().numpy().reshape(-1)[i]
        if self.out_scale is not None:
            full = torch.broadcast_to(self.out_scale.double().cpu(), self.out_shape)
            w *= full.reshape(-1).numpy()[j]
        return i, j, w

    # ---- sparse updates (a few flipped nodes) ----------------------------------
    #: blocks with more edges than this have no explicit fallback for sparse updates
    SPARSE_EXPLICIT_LIMIT = 5_000_000
    #: how much cheaper per edge a sparse update is than for a convolution
    sparse_advantage: ClassVar[float] = 1.0

    def _explicit(self, transpose: bool, device=None):
        """CSR of the block (or of its transpose), built once on the CPU and
        cached per device, so a sparse update on a device copies nothing."""
        device = torch.device(device or "cpu")
        cache = self.__dict__.setdefault("_csr_cache", {})
        if (transpose, device) not in cache:
            if (transpose, torch.device("cpu")) not in cache:
                import scipy.sparse as sp

                i, j, w = self.coo()
                M = sp.csr_matrix((w, (j, i) if transpose else (i, j)),
                                  shape=(self.out_size, self.in_size) if transpose
                                  else (self.in_size, self.out_size))
                cache[transpose, torch.device("cpu")] = (
                    torch.from_numpy(M.indptr.astype(np.int64)),
                    torch.from_numpy(M.indices.astype(np.int64)), torch.from_numpy(M.data))
            cache[transpose, device] = tuple(t.to(device)
                                             for t in cache[transpose, torch.device("cpu")])
        return cache[transpose, device]

    def sparse_apply(self, src: torch.Tensor, vals: torch.Tensor):
        """Propagate a sparse source vector: ``A_b^T x`` for ``x`` nonzero only at
        local source indices ``src`` (values ``vals``).

        Returns ``(entry, dst, contrib)``: for each contribution, the position in
        ``src`` it came from, the local destination index and the value; the
        caller adds them up.  Cost O(#src x out-degree).
        """
        return self._sparse(src, vals, transpose=False)

    def sparse_adjoint(self, dst: torch.Tensor, vals: torch.Tensor):
        """``A_b y`` for ``y`` nonzero only at local destinations ``dst``;
        returns ``(entry, src, contrib)`` like :meth:`sparse_apply`."""
        return self._sparse(dst, vals, transpose=True)

    def supports_sparse(self) -> bool:
        return self.n_edges() <= self.SPARSE_EXPLICIT_LIMIT

    def _sparse(self, idx, vals, transpose):
        dev = vals.device
        indptr, indices, data = self._explicit(transpose, dev)
        idx = idx.to(dev)
        counts = indptr[idx + 1] - indptr[idx]
        entry = torch.repeat_interleave(torch.arange(len(idx), device=dev), counts)
        starts = torch.repeat_interleave(indptr[idx], counts)
        pos = starts + torch.arange(int(counts.sum()), device=dev) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts)
        return entry, indices[pos], vals[entry] * data.to(vals.dtype)[pos]

    def abs_sum(self) -> float:
        """``sum |A_b|``, one matrix-free pass in float64 (cached while the
        block's tensors stay the same)."""
        key = tuple((t.dtype, t.device, t.data_ptr()) for t in
                    (getattr(self, n) for n in self._tensors() + ["in_scale", "out_scale"])
                    if t is not None)
        cached = self.__dict__.get("_abs_sum")
        if cached is None or cached[0] != key:
            ones = torch.ones((1,) + self.in_shape, dtype=torch.float64,
                              device=self._device())
            cached = (key, float(self.to(dtype=torch.float64).apply(ones, absolute=True).sum()))
            self._abs_sum = cached
        return cached[1]

    def _device(self) -> torch.device:
        """Where the block's tensors live (the CPU for a block without any)."""
        for name in self._tensors() + ["in_scale", "out_scale"]:
            t = getattr(self, name, None)
            if isinstance(t, torch.Tensor):
                return t.device
        return torch.device("cpu")

    def n_params(self) -> int:
        """Number of distinct weights the block is built from."""
        return 0

    def to(self, device=None, dtype=None) -> "EdgeBlock":
        """A copy with float tensors moved / cast (index tensors keep int64)."""
        new = copy.copy(self)
        for name in self._tensors() + ["in_scale", "out_scale"]:
            t = getattr(self, name)
            if t is not None:
                setattr(new, name, t.to(device=device, dtype=dtype))
        if self.src_index is not None and device is not None:
            new.src_index = self.src_index.to(device)
        new._abs_cache = {}
        return new

    def _abs(self, name: str) -> torch.Tensor:
        """|tensor| cached per block (weights do not change after construction)."""
        cache = self.__dict__.setdefault("_abs_cache", {})
        t = getattr(self, name)
        key = (name, t.dtype, t.device, t.data_ptr())
        if key not in cache:
            cache.clear()
            cache[key] = t.abs()
        return cache[key]

    def describe(self) -> str:
        return f"{self.kind} {self.in_shape} -> {self.out_shape}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.module!r}, {self.in_shape} -> {self.out_shape})"


class DenseBlock(EdgeBlock):
    """A dense (fully connected) layer: ``y = W x``, ``A_b = W^T``.

    Edges: ``in * out``.  ``weight`` has shape (out, in) as in ``nn.Linear``.
    """

    kind = "dense"
    sparse_advantage = 20.0   # a full evaluation costs ~20x a convolution per edge at R = 1
    #: a full evaluation reads every weight once: its cost grows slowly with the
    #: number of replicas, so sparse updates pay only for few flips at large R
    weight_bound = True

    def __init__(self, weight: torch.Tensor, module: str = ""):
        out_f, in_f = weight.shape
        super().__init__((in_f,), (out_f,), module)
        self.weight = weight.detach()

    def _tensors(self):
        return ["weight"]

    def _apply(self, x, absolute):
        w = self._abs("weight") if absolute else self.weight
        return x @ w.T

    def _adjoint(self, y, absolute):
        w = self._abs("weight") if absolute else self.weight
        return y @ w

    def scale_output(self, scale):
        s = torch.as_tensor(scale, dtype=self.weight.dtype, device=self.weight.device)
        self.weight = self.weight * s.reshape(-1, 1) if s.ndim else self.weight * s

    def n_edges(self):
        return self.in_size * self.out_size

    def supports_sparse(self):
        return self.in_scale is None and self.out_scale is None

    def _sparse(self, idx, vals, transpose):
        # column i of A_b^T is row i of W^T: all outputs; transpose: row j of W
        W = self.weight
        rows = W[idx] if transpose else W[:, idx].T           # (K, in) or (K, out)
        K, m = rows.shape
        entry = torch.arange(K, device=W.device).repeat_interleave(m)
        other = torch.arange(m, device=W.device).repeat(K)
        return entry, other, (rows * vals[:, None].to(W.dtype)).reshape(-1)

    def n_params(self):
        return self.weight.numel()

    def _coo(self):
        out_f, in_f = self.weight.shape
        j, i = np.meshgrid(np.arange(out_f), np.arange(in_f), indexing="ij")
        return i.ravel(), j.ravel(), self.weight.detach().double().cpu().numpy().ravel()


@functools.lru_cache(maxsize=4096)
def _window_triples(L: int, O: int, k: int, stride: int, pad_lo: int, dilation: int):
    """For one spatial dimension: all (output pos, tap, input pos) with the input
    in bounds (read-only arrays, cached: edge counts ask for them often)."""
    o = np.arange(O)[:, None]
    t = np.arange(k)[None, :]
    i = o * stride - pad_lo + t * dilation
    ok = (i >= 0) & (i < L)
    out = np.broadcast_to(o, ok.shape)[ok], np.broadcast_to(t, ok.shape)[ok], i[ok]
    for x in out:
        x.setflags(write=False)
    return out


class ConvBlock(EdgeBlock):
    """An N-d convolution (N = 1, 2, 3) with stride, zero padding (per side),
    dilation and groups; bias ignored (SPEC §1).

    ``A_b^T x`` is the convolution itself, ``A_b y`` the transposed convolution.
    Edges: one per in-bounds tap of each output element's receptive field, so
    ``n_edges = C_out * C_in/groups * prod_d #{(o, t): 0 <= o s - p + t d < L}``.
    """

    kind = "conv"
    _conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
    _convT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

    def __init__(self, weight, in_shape, out_shape, stride, padding, dilation, groups,
                 module: str = ""):
        super().__init__(in_shape, out_shape, module)
        self.weight = weight.detach()
        self.nd = weight.ndim - 2
        self.stride = tuple(stride)
        self.padding = tuple((int(lo), int(hi)) for lo, hi in padding)  # per dim (lo, hi)
        self.dilation = tuple(dilation)
        self.groups = int(groups)

    def _tensors(self):
        return ["weight"]

    def _pad_arg(self):
        pads = []
        for lo, hi in reversed(self.padding):  # F.pad wants the last dim first
            pads += [lo, hi]
        return pads

    def _apply(self, x, absolute):
        w = self._abs("weight") if absolute else self.weight
        if any(self._pad_arg()):
            x = F.pad(x, self._pad_arg())
        return self._conv[self.nd](x, w, None, self.stride, 0, self.dilation, self.groups)

    def _adjoint(self, y, absolute):
        w = self._abs("weight") if absolute else self.weight
        k = w.shape[2:]
        spatial = self.in_shape[1:]
        padded = [L + lo + hi for L, (lo, hi) in zip(spatial, self.padding)]
        out_pad = [P - ((O - 1) * s + d * (kk - 1) + 1)
                   for P, O, s, d, kk in zip(padded, self.out_shape[1:], self.stride,
                                             self.dilation, k)]
        x = self._convT[self.nd](y, w, None, self.stride, 0, out_pad, self.groups,
                                 self.dilation)
        if any(self._pad_arg()):
            sl = [slice(None), slice(None)] + [slice(lo, lo + L) for (lo, _), L in
                                               zip(self.padding, spatial)]
            x = x[tuple(sl)]
        return x

    def scale_output(self, scale):
        s = torch.as_tensor(scale, dtype=self.weight.dtype, device=self.weight.device)
        self.weight = self.weight * (s.reshape((-1,) + (1,) * (self.nd + 1)) if s.ndim else s)

    def _triples(self):
        k = self.weight.shape[2:]
        return [_window_triples(L, O, kk, s, lo, d) for L, O, kk, s, (lo, _), d in
                zip(self.in_shape[1:], self.out_shape[1:], k, self.stride, self.padding,
                    self.dilation)]

    def n_edges(self):
        taps = math.prod(len(t[0]) for t in self._triples())
        return self.out_shape[0] * (self.in_shape[0] // self.groups) * taps

    def n_params(self):
        return self.weight.numel()

    def supports_sparse(self):
        return self.out_scale is None

    def _tap_grid(self, device):
        k = self.weight.shape[2:]
        grids = torch.meshgrid(*[torch.arange(kk, device=device) for kk in k], indexing="ij")
        return torch.stack([g.reshape(-1) for g in grids], 1)          # (T, nd)

    @staticmethod
    def _unravel(flat, shape):
        out = []
        for L in reversed(shape):
            out.append(flat % L)
            flat = flat // L
        return torch.stack(out[::-1], -1), flat

    @staticmethod
    def _ravel(coords, shape):
        flat = torch.zeros(coords.shape[:-1], dtype=torch.long, device=coords.device)
        for d, L in enumerate(shape):
            flat = flat * L + coords[..., d]
        return flat

    def _edge_weight(self, co, cl, t, o_sp):
        """Weights of edges (co, ci_local, tap, output position): shared here."""
        W = self.weight.reshape(self.weight.shape[0], self.weight.shape[1], -1)
        return W[co, cl, t]

    def _sparse(self, idx, vals, transpose):
        dev = self.weight.device
        idx = idx.to(dev)
        c_out, c_in_g = self.weight.shape[:2]
        c_out_g = c_out // self.groups
        sp_in, sp_out = self.in_shape[1:], self.out_shape[1:]
        n_sp_in, n_sp_out = math.prod(sp_in), math.prod(sp_out)
        taps = self._tap_grid(dev)                                       # (T, nd)
        lo = torch.tensor([p[0] for p in self.padding], device=dev)
        st = torch.tensor(self.stride, device=dev)
        dl = torch.tensor(self.dilation, device=dev)
        if not transpose:   # flipped sources (ci, pos) -> outputs (co, (pos + lo - t d) / s)
            if self.in_scale is not None:
                vals = vals * self.in_scale.reshape(-1)[idx].to(vals.dtype)
            ci, sp = idx // n_sp_in, idx % n_sp_in
            pos, _ = self._unravel(sp, sp_in)                            # (K, nd)
            num = pos[:, None, :] + lo - taps[None] * dl                 # (K, T, nd)
            o = torch.div(num, st, rounding_mode="floor")
            ok = ((num - o * st) == 0).all(-1) & (o >= 0).all(-1) & \
                (o < torch.tensor(sp_out, device=dev)).all(-1)
            k_i, t_i = torch.nonzero(ok, as_tuple=True)
            o_sp = self._ravel(o[k_i, t_i], sp_out)                      # (M,)
            g = ci[k_i] // c_in_g
            cl = (ci[k_i] % c_in_g)[:, None]
            co = g[:, None] * c_out_g + torch.arange(c_out_g, device=dev)[None]   # (M, c_out_g)
            w = self._edge_weight(co, cl, t_i[:, None], o_sp[:, None])
            other = co * n_sp_out + o_sp[:, None]
        else:               # flipped outputs (co, o) -> sources (ci, o s - lo + t d)
            co, sp = idx // n_sp_out, idx % n_sp_out
            o, _ = self._unravel(sp, sp_out)
            i = o[:, None, :] * st - lo + taps[None] * dl                # (K, T, nd)
            ok = (i >= 0).all(-1) & (i < torch.tensor(sp_in, device=dev)).all(-1)
            k_i, t_i = torch.nonzero(ok, as_tuple=True)
            i_sp = self._ravel(i[k_i, t_i], sp_in)
            g = co[k_i] // c_out_g
            cl = torch.arange(c_in_g, device=dev)[None]
            ci = g[:, None] * c_in_g + cl                                 # (M, c_in_g)
            w = self._edge_weight(co[k_i][:, None], cl, t_i[:, None], sp[k_i][:, None])
            other = ci * n_sp_in + i_sp[:, None]
            if self.in_scale is not None:
                w = w * self.in_scale.reshape(-1)[other].to(w.dtype)
        entry = k_i[:, None].expand_as(other)
        contrib = w * vals[k_i][:, None].to(w.dtype)
        return entry.reshape(-1), other.reshape(-1), contrib.reshape(-1)

    def _coo(self):
        c_out, c_in_g = self.weight.shape[:2]
        k = tuple(self.weight.shape[2:])
        trip = self._triples()
        # spatial cartesian product of the per-dimension (o, t, i) triples
        grids = np.meshgrid(*[np.arange(len(t[0])) for t in trip], indexing="ij")
        o_flat = np.zeros(grids[0].size, dtype=np.int64)
        i_flat = np.zeros_like(o_flat)
        t_flat = np.zeros_like(o_flat)
        for d, (g, (oo, tt, ii)) in enumerate(zip(grids, trip)):
            g = g.ravel()
            o_flat = o_flat * self.out_shape[1 + d] + oo[g]
            i_flat = i_flat * self.in_shape[1 + d] + ii[g]
            t_flat = t_flat * k[d] + tt[g]
        n_sp_out = math.prod(self.out_shape[1:])
        n_sp_in = math.prod(self.in_shape[1:])
        n_taps = math.prod(k)
        co = np.repeat(np.arange(c_out), c_in_g)
        cl = np.tile(np.arange(c_in_g), c_out)
        ci = (co // (c_out // self.groups)) * c_in_g + cl
        w = self.weight.detach().double().cpu().numpy().reshape(c_out * c_in_g, n_taps)
        src = (ci[:, None] * n_sp_in + i_flat[None, :]).ravel()
        dst = (co[:, None] * n_sp_out + o_flat[None, :]).ravel()
        return src, dst, w[:, t_flat].ravel()

    def describe(self):
        k = "x".join(str(s) for s in self.weight.shape[2:])
        g = f" g{self.groups}" if self.groups > 1 else ""
        return f"conv{self.nd}d {k}/s{self.stride[0]}{g}"


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


def adaptive_windows(L: int, O: int) -> list[np.ndarray]:
    """Windows of PyTorch's adaptive pooling: ``[floor(o L / O), ceil((o+1) L / O))``."""
    return [np.arange((o * L) // O, -(-((o + 1) * L) // O)) for o in range(O)]


class PoolBlock(EdgeBlock):
    """Max or average pooling (incl. adaptive, ``ceil_mode``, global means):
    one edge from every in-bounds element of a window to its output, with a
    fixed positive weight (SPEC §1: default ``1/|window|``).

    Windows are separable, so the operator is a product of one small matrix
    ``P_d`` (outputs x inputs) per spatial dimension, applied per channel.
    Edges: ``C * prod_d nnz(P_d)``.
    """

    kind = "pool"

    def __init__(self, in_shape, out_shape, windows: Sequence[Sequence[np.ndarray]],
                 pool_type: str, weight: float | None = None, kernel_area: int | None = None,
                 module: str = ""):
        super().__init__(in_shape, out_shape, module)
        self.pool_type = pool_type  # "max" or "avg": same graph, differs for active subgraphs
        self.windows = [list(w) for w in windows]
        mats = []
        for d, (wins, L) in enumerate(zip(self.windows, self.in_shape[1:])):
            P = torch.zeros(len(wins), L, dtype=torch.float64)
            for o, w in enumerate(wins):
                if weight is not None:
                    val = weight if d == 0 else 1.0
                elif kernel_area is not None:   # regular pool: 1/|kernel window|
                    val = kernel_area ** (-1.0 / len(self.windows))
                else:                           # adaptive pool: 1/|this window|
                    val = 1.0 / len(w)
                P[o, torch.as_tensor(w, dtype=torch.long)] = val
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
            x = torch.movedim(torch.tensordot(x, P, dims=([2 + d], [1])), -1, 2 + d)
        return x.reshape((R,) + self.out_shape) if x.shape[1:] != self.out_shape else x

    def _adjoint(self, y, absolute):
        R = y.shape[0]
        y = y.reshape((R, self.in_shape[0]) + self.spatial_out)
        for d, P in enumerate(self._mats(y)):
            y = torch.movedim(torch.tensordot(y, P, dims=([2 + d], [0])), -1, 2 + d)
        return y

    def n_edges(self):
        return self.in_shape[0] * math.prod(sum(len(w) for w in wins) for wins in self.windows)

    def _coo(self):
        C = self.in_shape[0]
        per_dim = []
        for wins, P in zip(self.windows, self.mats):
            o = np.concatenate([np.full(len(w), k) for k, w in enumerate(wins)]).astype(np.int64)
            i = np.concatenate(wins).astype(np.int64)
            per_dim.append((o, i, P.detach().double().cpu().numpy()[o, i]))
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


class ConvTransposeBlock(EdgeBlock):
    """A transposed convolution: the adjoint of the convolution that maps the
    block's output back to its input (SPEC §1b), so its edges are that
    convolution's edges reversed.

    ``weight`` has PyTorch's transposed layout ``(C_in, C_out/groups, *k)``,
    which is the layout of the forward convolution ``C_out -> C_in``.
    """

    kind = "conv_transpose"

    def __init__(self, weight, in_shape, out_shape, stride, padding, dilation, groups,
                 module: str = ""):
        super().__init__(in_shape, out_shape, module)
        self.conv = ConvBlock(weight, out_shape, in_shape, stride, padding, dilation, groups,
                              module)

    @property
    def weight(self):
        return self.conv.weight

    def to(self, device=None, dtype=None):
        new = super().to(device, dtype)
        new.conv = self.conv.to(device, dtype)
        return new

    def _apply(self, x, absolute):
        return self.conv._adjoint(x, absolute)

    def _adjoint(self, y, absolute):
        return self.conv._apply(y, absolute)

    def n_edges(self):
        return self.conv.n_edges()

    def n_params(self):
        return self.conv.n_params()

    def _coo(self):
        i, j, w = self.conv._coo()
        return j, i, w

    def describe(self):
        k = "x".join(map(str, self.conv.weight.shape[2:]))
        return f"conv_transpose {k}/{self.conv.stride} -> {self.out_shape}"


class IdentityBlock(EdgeBlock):
    """Weight-1 edges ``i -> i``: an identity shortcut of a residual addition."""

    kind = "identity"

    def __init__(self, shape, module: str = ""):
        super().__init__(shape, shape, module)

    def _apply(self, x, absolute):
        return x

    def _adjoint(self, y, absolute):
        return y

    def n_edges(self):
        return self.in_size

    def _coo(self):
        i = np.arange(self.in_size, dtype=np.int64)
        return i, i, np.ones(self.in_size)


class LocallyConnectedBlock(EdgeBlock):
    """A convolution's topology with one weight per edge (no sharing).

    Built from a :class:`ConvBlock` and a per-edge weight tensor of shape
    ``(C_out, C_in/groups, *k, *out_spatial)`` (weights of out-of-bounds taps
    are ignored).  Used by the N2 null model, which reassigns edge weights at
    random and so destroys weight sharing.  ``A_b^T x`` is an unfold followed by
    a per-position contraction, chunked over output channels to bound memory.
    Only 1-d and 2-d convolutions.
    """

    kind = "locally_connected"

    def __init__(self, conv: ConvBlock, edge_weight: torch.Tensor, chunk: int = 16):
        super().__init__(conv.in_shape, conv.out_shape, conv.module)
        if conv.nd not in (1, 2):
            raise ValueError("locally connected blocks support 1-d and 2-d convolutions")
        self.conv = conv
        self.edge_weight = edge_weight
        self.chunk = chunk
        self.src_index, self.src_range, self.dst = conv.src_index, conv.src_range, conv.dst
        self.src_blocks = conv.src_blocks
        self.in_scale, self.out_scale = conv.in_scale, conv.out_scale

    def _tensors(self):
        return ["edge_weight"]

    def _geometry(self):
        c = self.conv
        k = tuple(c.weight.shape[2:])
        if c.nd == 1:
            k, stride, dil = (1,) + k, (1,) + c.stride, (1,) + c.dilation
        else:
            stride, dil = c.stride, c.dilation
        return k, stride, dil

    def _unfold(self, x):
        c = self.conv
        x = F.pad(x, c._pad_arg()) if any(c._pad_arg()) else x
        if c.nd == 1:
            x = x.unsqueeze(2)
        k, stride, dil = self._geometry()
        return F.unfold(x, k, dilation=dil, stride=stride)  # (R, C_in*prod k, L_out)

    def _apply(self, x, absolute):
        c = self.conv
        R = x.shape[0]
        cols = self._unfold(x)
        c_out, c_in_g = c.weight.shape[:2]
        g = c.groups
        n_k = math.prod(c.weight.shape[2:])
        L_out = cols.shape[-1]
        cols = cols.view(R, g, c_in_g * n_k, L_out)
        W = self.edge_weight.reshape(c_out, c_in_g * n_k, L_out)
        if absolute:
            W = W.abs()
        out = x.new_empty((R, c_out, L_out))
        per_g = c_out // g
        for s in range(0, c_out, self.chunk):
            e = min(c_out, s + self.chunk)
            grp = torch.arange(s, e, device=x.device) // per_g
            out[:, s:e] = torch.einsum("rokl,okl->rol", cols[:, grp], W[s:e])
        return out.view((R,) + self.out_shape)

    def _adjoint(self, y, absolute):
        c = self.conv
        R = y.shape[0]
        c_out, c_in_g = c.weight.shape[:2]
        g = c.groups
        n_k = math.prod(c.weight.shape[2:])
        yf = y.reshape(R, c_out, -1)
        L_out = yf.shape[-1]
        W = self.edge_weight.reshape(c_out, c_in_g * n_k, L_out)
        if absolute:
            W = W.abs()
        cols = y.new_zeros((R, g, c_in_g * n_k, L_out))
        per_g = c_out // g
        for s in range(0, c_out, self.chunk):
            e = min(c_out, s + self.chunk)
            contrib = torch.einsum("rol,okl->rokl", yf[:, s:e], W[s:e])
            grp = torch.arange(s, e, device=y.device) // per_g
            cols.index_add_(1, grp, contrib)
        cols = cols.view(R, g * c_in_g * n_k, L_out)
        k, stride, dil = self._geometry()
        spatial = self.in_shape[1:]
        padded = [L + lo + hi for L, (lo, hi) in zip(spatial, c.padding)]
        size = ([1] + padded) if c.nd == 1 else padded
        x = F.fold(cols, size, k, dilation=dil, stride=stride)
        if c.nd == 1:
            x = x.squeeze(2)
        if any(c._pad_arg()):
            sl = [slice(None), slice(None)] + [slice(lo, lo + L) for (lo, _), L in
                                               zip(c.padding, spatial)]
            x = x[tuple(sl)]
        return x

    def n_edges(self):
        return self.conv.n_edges()

    def supports_sparse(self):
        return self.out_scale is None

    def _sparse(self, idx, vals, transpose):
        c_out, c_in_g = self.conv.weight.shape[:2]
        EW = self.edge_weight.reshape(c_out, c_in_g, math.prod(self.conv.weight.shape[2:]), -1)
        view = copy.copy(self.conv)
        view.in_scale = self.in_scale
        view._edge_weight = lambda co, cl, t, o_sp: EW[co, cl, t, o_sp]
        return ConvBlock._sparse(view, idx, vals, transpose)

    def n_params(self):
        return self.n_edges()

    def _coo(self):
        src, dst, _ = self.conv._coo()
        c = self.conv
        c_out, c_in_g = c.weight.shape[:2]
        n_k = math.prod(c.weight.shape[2:])
        n_sp_in = math.prod(self.in_shape[1:])
        n_sp_out = math.prod(self.out_shape[1:])
        # recover (co, ci_local, tap, out position) of every edge
        co, o = dst // n_sp_out, dst % n_sp_out
        ci = src // n_sp_in
        cl = ci - (co // (c_out // c.groups)) * c_in_g
        k = tuple(c.weight.shape[2:])
        taps = self._taps_of(src % n_sp_in, o, k)
        W = self.edge_weight.detach().double().cpu().numpy().reshape(c_out, c_in_g, n_k, -1)
        return src, dst, W[co, cl, taps, o]

    def _taps_of(self, i_sp, o_sp, k):
        c = self.conv
        tap = np.zeros_like(i_sp)
        i_rest, o_rest = i_sp.copy(), o_sp.copy()
        coords = []
        for d in reversed(range(c.nd)):
            L, O = self.in_shape[1 + d], self.out_shape[1 + d]
            coords.append((i_rest % L, o_rest % O, d))
            i_rest //= L
            o_rest //= O
        for i_d, o_d, d in reversed(coords):
            t = (i_d - o_d * c.stride[d] + c.padding[d][0]) // c.dilation[d]
            tap = tap * k[d] + t
        return tap


EDGE_BLOCK_KINDS = {cls.kind: cls for cls in
                    (DenseBlock, ConvBlock, ConvTransposeBlock, PoolBlock, ResampleBlock,
                     IdentityBlock, LocallyConnectedBlock)}

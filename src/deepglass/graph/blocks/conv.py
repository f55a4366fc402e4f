"""Convolutions as edge blocks (SPEC §1, §1b): shared weights, transposed, and
locally connected (one weight per edge)."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import EdgeBlock

__all__ = ["ConvBlock", "ConvTransposeBlock", "LocallyConnectedBlock", "MAX_COLUMNS"]

#: most unfolded-input values (im2col) one native CPU convolution builds at
#: once (128 MB in float64): larger ones (float64 evaluations of volumetric
#: and high-resolution layers: the final frustration, the normalizers) run in
#: pieces of their input channels
MAX_COLUMNS = 1 << 24


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

    def unfolds_input(self, dtype, device="cpu") -> bool:
        """Whether evaluating this convolution in ``dtype`` on ``device`` builds
        its unfolded input (im2col, :meth:`columns` values): PyTorch's native
        CPU convolution does, forward and adjoint, for any kernel but an
        unstrided 1x1 one; float32 runs through oneDNN where PyTorch has it,
        which does not (measured, 8 replicas of 7x7, 3x3 and strided 3x3
        convolutions: 10-21 MB beyond input and output in float32, 47-423 MB
        in float64 with 38-411 MB of columns), nor do devices' libraries."""
        if torch.device(device).type != "cpu":
            return False
        if dtype == torch.float32 and torch.backends.mkldnn.is_available() \
                and torch.backends.mkldnn.enabled:
            return False
        return not (all(k == 1 for k in self.weight.shape[2:]) and all(s == 1 for s in self.stride))

    def columns(self, replicas: int = 1) -> int:
        """Values of the unfolded input for ``replicas``: C_in/groups * prod(kernel)
        per output position and group."""
        w = self.weight
        return (replicas * w.shape[1] * math.prod(w.shape[2:]) * math.prod(self.out_shape[1:])
                * self.groups)

    def _pieces(self, replicas: int):
        """The evaluation in pieces of input channels whose unfolded input holds
        at most :data:`MAX_COLUMNS` values: ``[(first group, groups, first
        channel within the group, channels)]``, whole groups where one fits,
        else runs of one group's channels.  One piece where the whole fits."""
        g, cin_g = self.groups, self.weight.shape[1]
        per_channel = self.columns(replicas) // (g * cin_g)
        fit = max(1, MAX_COLUMNS // max(per_channel, 1))
        if fit >= g * cin_g:
            return [(0, g, 0, cin_g)]
        if fit >= cin_g:
            k = fit // cin_g
            return [(a, min(k, g - a), 0, cin_g) for a in range(0, g, k)]
        return [(a, 1, c, min(fit, cin_g - c)) for a in range(g) for c in range(0, cin_g, fit)]

    def _apply(self, x, absolute):
        w = self._abs("weight") if absolute else self.weight
        if any(self._pad_arg()):
            x = F.pad(x, self._pad_arg())
        conv = functools.partial(self._conv[self.nd], bias=None, stride=self.stride, padding=0,
                                 dilation=self.dilation)
        if not self.unfolds_input(x.dtype, x.device):
            return conv(x, w, groups=self.groups)
        pieces = self._pieces(x.shape[0])
        if len(pieces) == 1:
            return conv(x, w, groups=self.groups)
        # a convolution is a sum over its input channels: bounded im2col memory
        cin_g, cout_g = w.shape[1], w.shape[0] // self.groups
        y = x.new_zeros((x.shape[0],) + tuple(self.out_shape))
        for a, n, c, m in pieces:
            rows = slice(a * cout_g, (a + n) * cout_g)
            xin = x[:, a * cin_g + c:a * cin_g + c + (m if n == 1 else n * cin_g)]
            y[:, rows] += conv(xin, w[rows, c:c + m], groups=n)
        return y

    def _adjoint(self, y, absolute):
        w = self._abs("weight") if absolute else self.weight
        k = w.shape[2:]
        spatial = self.in_shape[1:]
        padded = [L + lo + hi for L, (lo, hi) in zip(spatial, self.padding)]
        out_pad = [P - ((O - 1) * s + d * (kk - 1) + 1)
                   for P, O, s, d, kk in zip(padded, self.out_shape[1:], self.stride,
                                             self.dilation, k)]
        convT = functools.partial(self._convT[self.nd], bias=None, stride=self.stride, padding=0,
                                  output_padding=out_pad, dilation=self.dilation)
        pieces = self._pieces(y.shape[0]) if self.unfolds_input(y.dtype, y.device) else [None]
        if len(pieces) == 1:
            x = convT(y, w, groups=self.groups)
        else:
            # the adjoint's input channels are disjoint pieces of its output
            cin_g, cout_g = w.shape[1], w.shape[0] // self.groups
            x = y.new_empty((y.shape[0], self.in_shape[0]) + tuple(padded))
            for a, n, c, m in pieces:
                rows = slice(a * cout_g, (a + n) * cout_g)
                lo = a * cin_g + c
                x[:, lo:lo + (m if n == 1 else n * cin_g)] = convT(y[:, rows], w[rows, c:c + m],
                                                                  groups=n)
        if any(self._pad_arg()):
            sl = [slice(None), slice(None)] + [slice(lo, lo + L) for (lo, _), L in
                                               zip(self.padding, spatial)]
            x = x[tuple(sl)]
        return x

    def scale_output(self, scale):
        s = torch.as_tensor(scale, dtype=self.weight.dtype, device=self.weight.device)
        self.weight = self.weight * (s.reshape((-1,) + (1,) * (self.nd + 1)) if s.ndim else s)

    def keep_outputs(self, keep):
        if self.groups != 1 or self.out_scale is not None or self.in_scale is not None:
            return None
        new = self.with_weight(self.weight[keep.to(self.weight.device)])
        new.__dict__.pop("_abs_sum", None)
        new.out_shape = (int(keep.sum()),) + self.out_shape[1:]
        return new

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

    def _pattern(self):
        p = copy.copy(self)
        p.weight = torch.ones_like(self.weight)
        return p

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


class AdjointBlock(EdgeBlock):
    """The edges of the block ``self.conv`` reversed: its adjoint, from that
    block's output back to its input (a transposed convolution is its
    convolution's adjoint, SPEC §1b).  Subclasses set ``conv``."""

    conv: EdgeBlock

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

    def _pattern(self):
        # the reversed edges of the convolution's pattern (|A| stood in: active
        # subnetworks counted weight sums as edges through a transposed conv)
        p = copy.copy(self)
        p.conv = self.conv.pattern()
        return p


class ConvTransposeBlock(AdjointBlock):
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

    def with_weight(self, weight: torch.Tensor, keep_scales: bool = True) -> "EdgeBlock":
        """A copy whose convolution holds ``weight`` (transposed layout)."""
        new = copy.copy(self)
        new.conv = self.conv.with_weight(weight)
        new._abs_cache = {}
        new.__dict__.pop("_csr_cache", None)
        if not keep_scales:
            new.in_scale = new.out_scale = None
        return new

    def describe(self):
        k = "x".join(map(str, self.conv.weight.shape[2:]))
        return f"conv_transpose {k}/{self.conv.stride} -> {self.out_shape}"


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

    def _pattern(self):
        p = copy.copy(self)
        p.conv = self.conv.pattern()
        p.edge_weight = torch.ones_like(self.edge_weight)
        return p

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

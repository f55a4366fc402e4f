"""Dense layers and identity shortcuts as edge blocks (SPEC §1)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from .base import EdgeBlock

__all__ = ["DenseBlock", "DensePattern", "IdentityBlock"]


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
        if x.ndim == 2:
            # (W x^T)^T: BLAS splits W's rows over the threads; x W^T with few
            # replicas ran on one (AlexNet's 4096 x 9216 layer, 2 threads: 2
            # replicas 7.0 vs 15.2 ms, 80 replicas 36.5 vs 58.0 ms)
            return (w @ x.T).T
        return x @ w.T

    def _adjoint(self, y, absolute):
        w = self._abs("weight") if absolute else self.weight
        return y @ w

    def scale_output(self, scale):
        s = torch.as_tensor(scale, dtype=self.weight.dtype, device=self.weight.device)
        self.weight = self.weight * s.reshape(-1, 1) if s.ndim else self.weight * s

    def n_edges(self):
        return self.in_size * self.out_size

    def keep_outputs(self, keep):
        if type(self) is not DenseBlock or self.out_scale is not None or self.in_scale is not None:
            return None
        new = self.with_weight(self.weight[keep.to(self.weight.device)])
        new.__dict__.pop("_abs_sum", None)
        new.out_shape = (int(keep.sum()),)
        return new

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

    def _pattern(self):
        return DensePattern(self)

    def _coo(self):
        out_f, in_f = self.weight.shape
        j, i = np.meshgrid(np.arange(out_f), np.arange(in_f), indexing="ij")
        return i.ravel(), j.ravel(), self.weight.detach().double().cpu().numpy().ravel()


class IdentityBlock(EdgeBlock):
    """Weight-1 edges ``i -> i``: an identity shortcut of a residual addition."""

    kind = "identity"
    fixed_weights = True

    def __init__(self, shape, module: str = ""):
        super().__init__(shape, shape, module)

    def _apply(self, x, absolute):
        return x

    def _adjoint(self, y, absolute):
        return y

    def n_edges(self):
        return self.in_size

    def _pattern(self):
        return copy.copy(self)

    def _coo(self):
        i = np.arange(self.in_size, dtype=np.int64)
        return i, i, np.ones(self.in_size)


class DensePattern(DenseBlock):
    """The all-ones pattern of a dense block without its (out x in) matrix of ones:
    ``apply(x)`` repeats the sum of ``x`` over the inputs, ``adjoint(y)`` the sum
    of ``y`` over the outputs, O(in + out) instead of O(in x out)."""

    def __init__(self, b: DenseBlock):
        EdgeBlock.__init__(self, b.in_shape, b.out_shape, b.module)
        self.src_index, self.src_range = b.src_index, b.src_range
        self.src_blocks, self.dst = b.src_blocks, b.dst
        self.weight = torch.ones((1, 1), dtype=b.weight.dtype, device=b.weight.device)

    def _apply(self, x, absolute):
        return x.sum(-1, keepdim=True).expand(x.shape[:-1] + self.out_shape)

    def _adjoint(self, y, absolute):
        return y.sum(-1, keepdim=True).expand(y.shape[:-1] + self.in_shape)

    def n_params(self):
        return 0

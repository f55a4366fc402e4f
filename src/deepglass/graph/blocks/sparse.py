"""An explicit list of edges as an edge block: what a block whose edges are
selected one by one (the window maxima of a max pool in an active subnetwork,
SPEC §4) restricts to."""

from __future__ import annotations

import copy

import torch

from .base import EdgeBlock

__all__ = ["SparseBlock"]


class SparseBlock(EdgeBlock):
    """An explicit list of edges (local source, local destination, weight):
    the kept window edges of a max pool in an active subgraph.

    ``apply`` gathers the sources and adds into the destinations
    (``index_add``), O(R x edges); ``adjoint`` is the transposed scatter.
    """

    kind = "sparse"

    def __init__(self, in_shape, out_shape, src: torch.Tensor, dst: torch.Tensor,
                 weight: torch.Tensor, module: str = ""):
        super().__init__(in_shape, out_shape, module)
        self.src = torch.as_tensor(src, dtype=torch.long)
        self.dst_local = torch.as_tensor(dst, dtype=torch.long)
        self.weight = torch.as_tensor(weight)

    def _tensors(self):
        return ["weight"]

    def to(self, device=None, dtype=None):
        new = super().to(device, dtype)
        if device is not None:
            new.src = self.src.to(device)
            new.dst_local = self.dst_local.to(device)
        new.__dict__.pop("_csr_cache", None)
        return new

    def _apply(self, x, absolute):
        R = x.shape[0]
        w = self.weight.abs() if absolute else self.weight
        xf = x.reshape(R, -1)
        out = xf.new_zeros((R, self.out_size))
        out.index_add_(1, self.dst_local, xf[:, self.src] * w.to(x.dtype))
        return out.reshape((R,) + self.out_shape)

    def _adjoint(self, y, absolute):
        R = y.shape[0]
        w = self.weight.abs() if absolute else self.weight
        yf = y.reshape(R, -1)
        out = yf.new_zeros((R, self.in_size))
        out.index_add_(1, self.src, yf[:, self.dst_local] * w.to(y.dtype))
        return out.reshape((R,) + self.in_shape)

    def n_edges(self):
        return int(self.src.numel())

    def _coo(self):
        return (self.src.cpu().numpy(), self.dst_local.cpu().numpy(),
                self.weight.detach().double().cpu().numpy())

    def _pattern(self):
        p = copy.copy(self)
        p.weight = torch.ones_like(self.weight)
        return p

    def describe(self):
        return f"sparse {self.n_edges()} edges"

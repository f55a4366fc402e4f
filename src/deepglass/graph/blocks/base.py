"""Node blocks, and the base class of edge blocks: the linear operators between
node blocks of a :class:`SignedGraph`; an edge block restricted to the kept
nodes of an activation pattern (:class:`MaskedBlock`, SPEC §4).

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
``n_edges`` and ``_coo`` (and ``_pattern``; ``select_edges`` where the values
it reads select its edges), plus one entry in the op table of
:mod:`deepglass.graph.aten`.  Source scales (batch norm folded onto a value
that is not the output of a weight layer) and destination scales (folded batch
norm, scalar multiplication) are handled here, once, for every kind.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch

__all__ = ["NodeBlock", "EdgeBlock", "MaskedBlock", "AbsPattern"]


@dataclass
class NodeBlock:
    """A block of neurons: the input, or the output of one linear-operator layer.

    Attributes
    ----------
    name : str
        The module path (or fx node name) the block came from; ``"input"``.
    shape : tuple of int
        Per-sample shape, e.g. ``(C, H, W)``.
    offset : int
        Global index of the block's first node.
    op : str
        ``"input"``, ``"conv"``, ``"dense"``, ``"pool"``, ``"add"``, ...
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    op: str
    index: int = 0

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def stop(self) -> int:
        return self.offset + self.size

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.stop)



def nonzero_like(m: torch.Tensor) -> torch.Tensor:
    """1 where ``m`` is nonzero, 0 where it is exactly 0, in ``m``'s dtype and
    layout (a pool's sparse per-dimension matrix stays sparse)."""
    if m.is_sparse:
        m = m.coalesce()
        return torch.sparse_coo_tensor(m.indices(), (m.values() != 0).to(m.dtype), m.shape)
    return (m != 0).to(m.dtype)

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
    #: weights fixed by the architecture (pooling, resampling, identity, a
    #: Fourier transform): null models never change them (SPEC §3); a class
    #: of such a layer sets it, and capture sets it on a block of a fixed
    #: transform (:mod:`deepglass.graph.fixed_weights`)
    fixed_weights: ClassVar[bool] = False

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

    def takes_node_scale(self) -> bool:
        """Whether :meth:`scale_output` takes any factor per destination node
        (pools, sums, identities keep it as ``out_scale``); convolutions and
        dense layers fold factors into their weights, per channel only."""
        return type(self).scale_output is EdgeBlock.scale_output

    def output_scale_of(self, scale: torch.Tensor):
        """``scale`` (one factor per destination node, in this block's output
        order) as :meth:`scale_output` takes it: per node, or per channel for a
        layer that folds it into its weights; None where it varies within a
        channel there."""
        s = scale.reshape(self.out_shape)
        if self.takes_node_scale():
            return s
        per_channel = s.reshape(s.shape[0], -1)
        return per_channel[:, 0].clone() if bool((per_channel == per_channel[:, :1]).all()) \
            else None

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
            cached = (key, self._abs_total())
            self._abs_sum = cached
        return cached[1]

    def _abs_total(self) -> float:
        """``sum |A_b|`` computed (:meth:`abs_sum` caches it): ``|A_b|`` applied to ones."""
        ones = torch.ones((1,) + self.in_shape, dtype=torch.float64, device=self._device())
        return float(self.to(dtype=torch.float64).apply(ones, absolute=True).sum())

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

    def with_weight(self, weight: torch.Tensor, keep_scales: bool = True) -> "EdgeBlock":
        """A copy holding ``weight`` instead (a null draw, one draw of a batch):
        the caches built from the old weight (``|W|``, the CSR) are not carried
        over; ``keep_scales=False`` also drops the scales (a freshly drawn layer
        has no folded batch norm)."""
        new = copy.copy(self)
        new.weight = weight
        new._abs_cache = {}
        new.__dict__.pop("_csr_cache", None)
        if not keep_scales:
            new.in_scale = new.out_scale = None
        return new

    def keep_outputs(self, keep: torch.Tensor) -> "EdgeBlock | None":
        """A copy with only the output channels where ``keep`` (bool, one per
        channel, the first axis of ``out_shape``) and their edges, or ``None``
        where the kind cannot drop channels (see :func:`~deepglass.graph.prune.prune_channels`)."""
        return None

    def _abs(self, name: str) -> torch.Tensor:
        """|tensor| cached per block (weights do not change after construction)."""
        cache = self.__dict__.setdefault("_abs_cache", {})
        t = getattr(self, name)
        key = (name, t.dtype, t.device, t.data_ptr())
        if key not in cache:
            cache.clear()
            cache[key] = t.abs()
        return cache[key]

    # ---- active subnetworks (SPEC §4) -------------------------------------------
    def _pattern(self) -> "EdgeBlock | None":
        """A copy with every edge weight set to 1 (scales are dropped by
        :meth:`pattern`); ``None`` where the kind has none (``|A_b|`` stands in)."""
        return None

    def pattern(self) -> "EdgeBlock":
        """The same edges with every weight 1, scales dropped.

        ``pattern().apply(s)`` counts, for each destination, the edges from
        sources with ``s = 1``: the operator of structural reachability and of
        edge counts.  Kinds without :meth:`_pattern` fall back to ``|A_b|``
        (edges of weight exactly 0 then do not count).
        """
        p = self._pattern()
        if p is None:
            return AbsPattern(self)
        p.in_scale = None
        p.out_scale = None
        for key in ("_abs_cache", "_csr_cache"):
            p.__dict__.pop(key, None)
        return p

    def nonzero_pattern(self) -> "EdgeBlock":
        """The same edges with weight 1 where ``A_b`` is nonzero and 0 where it
        is exactly 0 (a pruned or masked weight, a zero batch-norm gain):
        ``apply(ones).sum()`` counts the nonzero edges.  A wrapped block
        (adjoint, mask) is replaced by its own nonzero pattern."""
        new = copy.copy(self)
        for name in {*self._tensors(), "weight", "edge_weight", "mats", "in_scale", "out_scale"}:
            t = self.__dict__.get(name)        # not a property reading a wrapped block
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                setattr(new, name, (t != 0).to(t.dtype))
            elif isinstance(t, list) and all(isinstance(m, torch.Tensor) for m in t):
                setattr(new, name, [nonzero_like(m) for m in t])    # a pool's factors
        for name in ("conv", "inner", "b"):
            inner = getattr(self, name, None)
            if isinstance(inner, EdgeBlock):
                setattr(new, name, inner.nonzero_pattern())
        for key in ("_abs_cache", "_csr_cache", "_abs_sum", "_n_edges"):
            new.__dict__.pop(key, None)
        return new

    def value_dtype(self) -> torch.dtype:
        """The floating dtype of the block's operator."""
        for name in ("weight", "edge_weight"):
            t = getattr(self, name, None)
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                return t.dtype
        return torch.float32

    def selects_edges(self) -> bool:
        """Whether the values its sources carry select which edges of the block
        an activation pattern keeps (a max pool keeps its window maxima only)."""
        return False

    def select_edges(self, src_values: torch.Tensor):
        """The edges kept for source values ``src_values`` (B, in_size); ``None``:
        every edge between kept nodes (the blocks with ``selects_edges()`` False)."""
        return None

    def restrict(self, src_mask: torch.Tensor, dst_mask: torch.Tensor, *,
                 n_edges: int | None = None, selection=None) -> "EdgeBlock":
        """The block restricted to an activation pattern of one input (SPEC §4):
        edges with both ends kept (0/1 masks of shapes ``in_shape`` and
        ``out_shape``) and, for a block that selects edges, among ``selection``
        (one row of :meth:`select_edges`).  ``self`` where every node is kept."""
        if bool(src_mask.all()) and bool(dst_mask.all()):
            return self
        return MaskedBlock(self, src_mask, dst_mask, n_edges=n_edges)

    def describe(self) -> str:
        return f"{self.kind} {self.in_shape} -> {self.out_shape}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.module!r}, {self.in_shape} -> {self.out_shape})"


# ----------------------------------------------------------------------------------
# an edge block restricted to the kept nodes of an activation pattern
class MaskedBlock(EdgeBlock):
    """An edge block restricted to kept source and destination nodes.

    ``A_masked = diag(s) A_b diag(d)`` for 0/1 masks ``s`` (sources) and ``d``
    (destinations): ``apply(x) = d * A_b^T (s * x)`` and ``adjoint(y) =
    s * A_b (d * y)``, one pass of the wrapped operator each.  Edges: those of
    ``A_b`` with both ends kept (counted once, with the pattern operator).
    """

    kind = "masked"

    def __init__(self, inner: EdgeBlock, src_mask: torch.Tensor, dst_mask: torch.Tensor,
                 n_edges: int | None = None):
        super().__init__(inner.in_shape, inner.out_shape, inner.module)
        self.inner = inner
        self.src_index, self.src_range = inner.src_index, inner.src_range
        self.src_blocks, self.dst = inner.src_blocks, inner.dst
        dtype = inner.value_dtype()
        self.src_mask = torch.as_tensor(src_mask).reshape(inner.in_shape).to(dtype)
        self.dst_mask = torch.as_tensor(dst_mask).reshape(inner.out_shape).to(dtype)
        self.sparse_advantage = getattr(inner, "sparse_advantage", 1.0)
        self._n_edges = n_edges

    def _tensors(self):
        return ["src_mask", "dst_mask"]

    def to(self, device=None, dtype=None):
        new = super().to(device, dtype)
        new.inner = self.inner.to(device=device, dtype=dtype)
        new.__dict__.pop("_csr_cache", None)
        return new

    def _apply(self, x, absolute):
        return self.inner.apply(x * self.src_mask.to(x.dtype), absolute) * \
            self.dst_mask.to(x.dtype)

    def _adjoint(self, y, absolute):
        return self.inner.adjoint(y * self.dst_mask.to(y.dtype), absolute) * \
            self.src_mask.to(y.dtype)

    def n_edges(self):
        if self._n_edges is None:
            p = self.inner.pattern()
            ones = self.src_mask.to(torch.float64)[None]
            self._n_edges = int(round(float(
                (p.to(dtype=torch.float64).apply(ones) * self.dst_mask.to(torch.float64)).sum())))
        return self._n_edges

    def n_params(self):
        return self.inner.n_params()

    # Sparse updates and explicit edges go through the wrapped block's own sparse
    # operator, restricted to kept nodes: the base-class fallback would list every
    # edge of the inner block (10^8 for an AlexNet layer) to keep a few of them.
    def supports_sparse(self):
        return self.inner.supports_sparse()

    def _sparse(self, idx, vals, transpose):
        # removed nodes contribute and receive zeros (masks as factors, not as
        # filters: no compaction of the possibly long contribution lists)
        first, second = ((self.dst_mask, self.src_mask) if transpose
                         else (self.src_mask, self.dst_mask))
        vals = vals * first.reshape(-1)[idx].to(vals.dtype)
        op = self.inner.sparse_adjoint if transpose else self.inner.sparse_apply
        entry, other, contrib = op(idx, vals)
        return entry, other, contrib * second.reshape(-1)[other].to(contrib.dtype)

    def _coo(self):
        src = torch.nonzero(self.src_mask.reshape(-1) > 0, as_tuple=True)[0]
        if self.inner.supports_sparse():
            # in float64, so that scaled weights (folded batch norm) come out exactly
            # as the inner block's coo() lists them
            wide = MaskedBlock(self.inner.to(dtype=torch.float64), self.src_mask,
                               self.dst_mask, n_edges=self._n_edges)
            vals = torch.ones(len(src), dtype=torch.float64, device=src.device)
            entry, j, w = wide._sparse(src, vals, False)
            kept = torch.nonzero(self.dst_mask.reshape(-1)[j] > 0, as_tuple=True)[0]
            i, j, w = src[entry[kept]], j[kept], w[kept]
            return (i.cpu().numpy().astype(np.int64), j.cpu().numpy().astype(np.int64),
                    w.detach().double().cpu().numpy())
        i, j, w = self.inner.coo()
        s = self.src_mask.detach().cpu().numpy().reshape(-1) > 0
        d = self.dst_mask.detach().cpu().numpy().reshape(-1) > 0
        keep = s[i] & d[j]
        return i[keep], j[keep], w[keep]

    def value_dtype(self):
        return self.src_mask.dtype

    def _pattern(self):
        p = copy.copy(self)
        p.inner = self.inner.pattern()
        return p

    def describe(self):
        return f"{self.inner.describe()} (masked)"


class AbsPattern:
    """``|A_b|`` as a stand-in pattern for edge-block kinds without one."""

    def __init__(self, b):
        self.b = b

    def apply(self, x, absolute=True):
        return self.b.apply(x, absolute=True)

    def adjoint(self, y, absolute=True):
        return self.b.adjoint(y, absolute=True)

    def value_dtype(self):
        return self.b.value_dtype()

    def to(self, device=None, dtype=None):
        return AbsPattern(self.b.to(device=device, dtype=dtype))


class ZeroPaddedBlock(MaskedBlock):
    """An edge block some of whose inputs are zero padding inside its input
    value, not nodes: per-channel shifts (a ``F.pad`` and a crop that differ
    between concatenated parts, e.g. harmonic stacking) leave zeros that are
    no border, so the layer's own padding cannot take them (SPEC §1: padding
    adds no edge).

    It is :class:`MaskedBlock` with the 0/1 source mask of the real inputs;
    the padded positions are read from any node (their edges are multiplied
    by 0, and not counted). ``kind`` and :meth:`describe` are the wrapped
    block's.
    """

    def __init__(self, inner: EdgeBlock, present: torch.Tensor):
        present = torch.as_tensor(present)
        super().__init__(inner, present, torch.ones(inner.out_shape, dtype=torch.bool,
                                                    device=present.device))

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def n_padded(self) -> int:
        """Input positions that are zero padding."""
        return int((self.src_mask == 0).sum())

    def describe(self) -> str:
        return f"{self.inner.describe()} ({self.n_padded:,} padded inputs)"

    def restrict(self, src_mask, dst_mask, *, n_edges=None, selection=None):
        # one mask over the wrapped block: the padded inputs stay out of its edge lists
        src = torch.as_tensor(src_mask).reshape(self.in_shape).to(self.src_mask.device,
                                                                 self.src_mask.dtype)
        return self.inner.restrict(src * self.src_mask, dst_mask, n_edges=n_edges,
                                   selection=selection)

"""Active subnetworks of single inputs and their frustration (SPEC §4; paper 000,
Results "Frustration" and SI D.3, Fig. 2 inset).

For an input ``x`` the network is run and its hidden states are recorded.  The
active subnetwork keeps, of the signed graph of SPEC §1,

1. the nodes that are *active*: a node's value (the output of a linear layer:
   convolution, dense, pool, a residual sum) flows into the next linear layers
   through elementwise layers; it is inactive when the value that flows on is
   exactly zero (a ReLU set it to zero).  Affine elementwise layers that sit
   between the activation and the next linear layer (batch norm, a scalar
   factor) are looked through, since they keep a zero derivative zero.  Input
   nodes are always active (nothing sets them to zero), as are nodes that no
   linear layer reads;
2. in each max pool, only the edges from each window's maximal input(s) (all
   maxima on ties);
3. in the final layer, only the node of the predicted class (arg-max output);
4. then only the nodes that still reach that output node, found by one
   backward reachability pass through the masked operators: a 0/1 "reaches
   the output" indicator is pulled back block by block in reverse topological
   order with the *pattern* operator of each edge block (every edge weight set
   to 1, so an edge counts whatever its weight, as in the graph's edge counts).

An edge is kept when both its ends are kept (and, in a max pool, it comes from
a window maximum).  ``delta_x`` is the frustration (SPEC §2) of what remains,
normalized by the remaining ``|weight|``; removed nodes are isolated and do not
contribute.  The paper finds ``delta_x < delta`` of the whole network nearly
always.

Activity is a property of a node, not of an edge: a node that one layer reads
through a ReLU and another reads raw (the identity shortcut of a pre-activation
residual block, ``y = conv(relu(x)) + x``) is active when the raw value is
nonzero, and then keeps its edges into both layers.  Post-activation networks
(every zoo network) read each node one way only.

Everything is matrix-free and batched over inputs: the masks of a batch are
(B, n) booleans, and the reachability pass costs one pattern adjoint per edge
block, about one backward pass of the network.  :meth:`ActiveSubgraphs.subgraph`
wraps the masks into edge blocks (:class:`MaskedBlock`, and :class:`SparseBlock`
for the kept max-pool edges) of an ordinary :class:`SignedGraph`, so every
solver of :func:`deepglass.frustration` runs on it unchanged.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.fx
import torch.nn as nn

from ..errors import DeepglassError
from ..graph import (ConvBlock, DenseBlock, EdgeBlock, IdentityBlock, LocallyConnectedBlock,
                     PoolBlock, SignedGraph)

__all__ = ["active_subgraph", "ActiveSubgraphs", "ActivityTracer", "MaskedBlock",
           "SparseBlock", "pattern_block", "explicit_active_nodes", "active_frustration",
           "active_summary_stats"]


# =====================================================================================
# edge blocks of an active subgraph
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
        dtype = _float_dtype(inner)
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
            p = pattern_block(self.inner)
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

    def describe(self):
        return f"{self.inner.describe()} (masked)"


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

    def describe(self):
        return f"sparse {self.n_edges()} edges"


def _float_dtype(b: EdgeBlock) -> torch.dtype:
    for name in ("weight", "edge_weight"):
        t = getattr(b, name, None)
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            return t.dtype
    if isinstance(b, PoolBlock):
        return b.mats[0].dtype
    if isinstance(b, MaskedBlock):
        return b.src_mask.dtype
    return torch.float32


def pattern_block(b: EdgeBlock) -> EdgeBlock:
    """The same edges with every weight set to 1 (scales dropped).

    ``pattern.apply(s)`` counts, for each destination, the edges from sources
    with ``s = 1``: the operator of structural reachability and of edge counts.
    Blocks of unknown kinds fall back to ``|A_b|`` (edges of weight exactly 0
    then do not count).
    """
    if isinstance(b, DenseBlock):
        p = _DensePattern(b)
    elif isinstance(b, ConvBlock):
        p = copy.copy(b)
        p.weight = torch.ones_like(b.weight)
    elif isinstance(b, LocallyConnectedBlock):
        p = copy.copy(b)
        p.conv = pattern_block(b.conv)
        p.edge_weight = torch.ones_like(b.edge_weight)
    elif isinstance(b, PoolBlock):
        p = copy.copy(b)
        p.mats = [(m != 0).to(m.dtype) for m in b.mats]
    elif isinstance(b, (IdentityBlock, SparseBlock)):
        p = copy.copy(b)
        if isinstance(b, SparseBlock):
            p.weight = torch.ones_like(b.weight)
    elif isinstance(b, MaskedBlock):
        p = copy.copy(b)
        p.inner = pattern_block(b.inner)
    else:
        return _AbsView(b)
    p.in_scale = None
    p.out_scale = None
    for key in ("_abs_cache", "_csr_cache"):
        p.__dict__.pop(key, None)
    return p


class _DensePattern(DenseBlock):
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


class _AbsView:
    """``|A_b|`` as a stand-in pattern for edge-block kinds without one."""

    def __init__(self, b):
        self.b = b

    def apply(self, x, absolute=True):
        return self.b.apply(x, absolute=True)

    def adjoint(self, y, absolute=True):
        return self.b.adjoint(y, absolute=True)

    def to(self, device=None, dtype=None):
        return _AbsView(self.b.to(device=device, dtype=dtype))


# =====================================================================================
# max-pool windows as a (outputs x taps) table
@dataclass
class _WindowTable:
    """Local source index (``idx``, -1 = no tap) and edge weight of every
    (output, tap) of a pool block; ``T`` = largest window."""

    idx: torch.Tensor      # (n_out, T) int64, -1 where the window is smaller
    weight: torch.Tensor   # (n_out, T) float64
    valid: torch.Tensor    # (n_out, T) bool

    @classmethod
    def of(cls, b: PoolBlock) -> "_WindowTable":
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
        return _WindowTable(self.idx.to(device), self.weight.to(device), self.valid.to(device))


# =====================================================================================
# recording what flows between the linear layers
class _Recorder(torch.fx.Interpreter):
    """Runs the traced module and keeps the values of the wanted fx nodes."""

    def __init__(self, gm, wanted):
        super().__init__(gm)
        self.wanted = set(wanted)
        self.values: dict = {}

    def run_node(self, n):
        out = super().run_node(n)
        if n in self.wanted:  # a copy: later in-place layers must not change it
            self.values[n] = out.detach().clone() if isinstance(out, torch.Tensor) else out
        return out


class ActivityTracer:
    """Which graph nodes each linear layer of ``model`` reads, from one fx trace.

    The model is traced once with the same machinery that built ``graph``
    (:mod:`deepglass.graph.trace`); for every fx node that a linear operator
    (or the identity branch of a residual addition) consumes, the global node
    ids of its elements are kept (``-1`` marks zero padding).  Running a batch
    then records those values (:meth:`run`) and tells, per node, whether the
    value that flows on is nonzero.

    Cost: one symbolic trace (once per model and graph), then per batch one
    forward pass plus scatters of the recorded values.

    Raises
    ------
    DeepglassError
        When the graph was not traced from this model (node blocks differ).
    """

    def __init__(self, graph: SignedGraph, model: nn.Module):
        from ..graph import trace as tr

        self.graph = graph
        self.model = model
        was_training = model.training
        model.eval()
        try:
            try:
                gm = torch.fx.symbolic_trace(model)
            except Exception as exc:
                raise DeepglassError(f"cannot trace {type(model).__name__} with torch.fx: "
                                     f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
            builder = tr._Builder(graph.meta.get("pool_weight"), graph.meta.get("batchnorm", "fold"))
            interp = tr._Interpreter(gm, builder, graph.input_shape, model)
            p = next(model.parameters(), None)
            x0 = torch.zeros((1,) + tuple(graph.input_shape),
                             dtype=p.dtype if p is not None else torch.float32,
                             device=p.device if p is not None else "cpu")
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    interp.run(x0)
                except Exception as exc:
                    raise DeepglassError(f"{type(model).__name__} does not run on inputs of "
                                         f"shape {tuple(graph.input_shape)}: "
                                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
            out = interp.sym[next(nd for nd in gm.graph.nodes if nd.op == "output")]
            if isinstance(out, dict):
                out = list(out.values())
            if isinstance(out, (list, tuple)):
                out = next((o for o in out if isinstance(o, (tr.Ref, tr.Pending))), None)
            if out is not None:
                builder.materialize(out)
        finally:
            model.train(was_training)
        mine = [(nb.offset, tuple(nb.shape)) for nb in builder.node_blocks]
        theirs = [(nb.offset, tuple(nb.shape)) for nb in graph.node_blocks]
        if mine != theirs or len(builder.edge_blocks) != len(graph.edge_blocks):
            raise DeepglassError("the graph was not traced from this model (its node blocks "
                                 "differ); pass the model the graph was built from")
        self.gm = gm
        sym = interp.sym
        nodes = graph.node_blocks

        def ids_of(v):
            if isinstance(v, tr.Ref):
                return v.index
            if isinstance(v, tr.Pending):
                blk = v.terms[0][0]
                if blk.dst < 0:
                    return None
                nb = nodes[blk.dst]
                return torch.arange(nb.offset, nb.stop).reshape((1,) + tuple(v.shape))
            return None

        def look_through(a):
            # batch norm / scalar factors between an activation and the next linear
            # layer are affine: read the value before them (a zero stays a zero)
            while isinstance(a, torch.fx.Node) and isinstance(sym.get(a), tr.Ref):
                if a.op == "call_module" and isinstance(interp.modules.get(a.target),
                                                        tr.BATCHNORM_MODULES):
                    inner = a.args[0]
                elif a.op in ("call_function", "call_method") and a.target in tr.MUL_TARGETS:
                    inner = next((v for v in a.args[:2] if isinstance(v, torch.fx.Node)
                                  and isinstance(sym.get(v), (tr.Ref, tr.Pending))), None)
                else:
                    break
                if not isinstance(inner, torch.fx.Node) or not isinstance(sym.get(inner), tr.Ref):
                    break
                a = inner
            return a

        consumers: dict[torch.fx.Node, torch.Tensor] = {}
        pool_inputs: dict[str, list] = {}
        for n in gm.graph.nodes:
            reads: list = []
            if n.op == "call_module" and isinstance(interp.modules.get(n.target), tr.LINEAR_MODULES):
                reads = [n.args[0]]
                if isinstance(interp.modules[n.target], (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                                                         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                                                         nn.AdaptiveMaxPool3d)):
                    pool_inputs.setdefault(str(n.target), []).append(n.args[0])
            elif n.op in ("call_function", "call_method") and n.target in tr.ADD_TARGETS:
                reads = [v for v in list(n.args[:2]) + [n.kwargs.get("other")]
                         if isinstance(v, torch.fx.Node) and isinstance(sym.get(v), tr.Ref)]
            elif (n.op == "call_method" and n.target == "mean") or n.target is torch.mean:
                reads = [n.args[0]]
            elif n.op == "call_function":
                try:
                    tr._function_params(n.target, n.args, n.kwargs)
                except Exception:
                    pass
                else:
                    reads = [n.args[0]]
                    if "max_pool" in getattr(n.target, "__name__", ""):
                        pool_inputs.setdefault(interp._where(n), []).append(n.args[0])
            for a in reads:
                if not isinstance(a, torch.fx.Node):
                    continue
                ids = ids_of(sym.get(a))
                if ids is None:
                    continue
                a2 = look_through(a)
                consumers.setdefault(a2, ids_of(sym.get(a2)) if a2 is not a else ids)
        self.consumers = {a: ids.reshape(-1) for a, ids in consumers.items()}
        # max pool edge blocks -> the fx node whose value the pool reads (a module
        # applied twice has several candidates: the one holding the block's sources)
        self.pool_src: dict[int, torch.fx.Node] = {}
        self.pool_src_ids: dict[int, torch.Tensor] = {}
        for k, b in enumerate(graph.edge_blocks):
            if not (isinstance(b, PoolBlock) and b.pool_type == "max"):
                continue
            src = (torch.arange(*b.src_range) if b.src_range is not None
                   else b.src_index.reshape(-1).cpu())
            for a in pool_inputs.get(b.module, []):
                ids = ids_of(sym.get(a))
                if ids is not None and bool(torch.isin(src, ids.reshape(-1)).all()):
                    self.pool_src[k] = a
                    self.pool_src_ids[k] = ids.reshape(-1)
                    break
            else:
                raise DeepglassError(f"cannot find the input of max pool {b.module!r}")
        self.windows = {k: _WindowTable.of(graph.edge_blocks[k]) for k in self.pool_src}
        self.patterns = [pattern_block(b) for b in graph.edge_blocks]
        for b in graph.edge_blocks:
            if b.src_blocks and max(b.src_blocks) >= b.dst:
                raise DeepglassError(f"edge block {b.module!r} does not run forward "
                                     "(source block after its destination)")
        out_node = next(nd for nd in gm.graph.nodes if nd.op == "output")
        self.output_node = out_node

    def run(self, x: torch.Tensor):
        """Forward ``x`` (B, *input_shape): recorded consumer values, max-pool
        inputs and the output tensor (B, m)."""
        wanted = set(self.consumers) | set(self.pool_src.values())
        rec = _Recorder(self.gm, wanted)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = rec.run(x)
        finally:
            self.model.train(was_training)
        # the output the graph reads (SPEC §1b: the first unless one was selected)
        from ..graph.trace import output_tensor

        y = output_tensor(out, self.graph.output_name
                             if len(self.graph.outputs) > 1 else None)
        return rec.values, y.reshape(y.shape[0], -1)


_TRACERS: "weakref.WeakKeyDictionary[SignedGraph, tuple]" = weakref.WeakKeyDictionary()


def _tracer(graph: SignedGraph, model: nn.Module) -> ActivityTracer:
    hit = _TRACERS.get(graph)
    if hit is not None and hit[0]() is model:
        return hit[1]
    t = ActivityTracer(graph, model)
    _TRACERS[graph] = (weakref.ref(model), t)
    return t


# =====================================================================================
@dataclass
class ActiveSubgraphs:
    """Active subnetworks of a batch of inputs (SPEC §4), as masks on one graph.

    Attributes
    ----------
    graph : SignedGraph
        The whole network's graph.
    ids : ndarray (B,)
        Identifiers of the inputs (row labels of the tables).
    active : ndarray bool (B, n)
        Nodes whose value flows on nonzero (step 1; output nodes: only the
        predicted one).
    keep : ndarray bool (B, n)
        Nodes of the active subnetwork (active and reaching the predicted output).
    pool_max : dict[int, ndarray bool (B, n_out, T)]
        Per max-pool edge block (index into ``graph.edge_blocks``), which
        window taps hold a window maximum.
    logits : ndarray (B, m)
        The network's outputs; ``pred`` their arg-max.
    edges, abs_weight : ndarray (B, n_edge_blocks)
        Kept edges and kept ``sum |A_ij|`` per edge block.
    """

    graph: SignedGraph
    ids: np.ndarray
    active: np.ndarray
    keep: np.ndarray
    pool_max: dict
    logits: np.ndarray
    pred: np.ndarray
    edges: np.ndarray
    abs_weight: np.ndarray
    windows: dict = field(repr=False, default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.ids)

    def _row(self, input_id) -> int:
        hits = np.nonzero(self.ids == input_id)[0]
        if len(hits) == 0:
            raise DeepglassError(f"no input {input_id!r} in this batch")
        return int(hits[0])

    def node_masks(self, k: int = 0) -> dict[str, np.ndarray]:
        """Kept nodes of input row ``k`` per node block, shaped like the block."""
        return {nb.name: self.keep[k, nb.offset:nb.stop].reshape(nb.shape)
                for nb in self.graph.node_blocks}

    def kept_pool_edges(self, k: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Kept (local source, local destination, weight) edges of max-pool
        edge block ``b`` for input row ``k``."""
        blk = self.graph.edge_blocks[b]
        win = self.windows[b]
        idx = win.idx.cpu().numpy()
        src_keep = self._src_mask(k, blk)
        dst_keep = self.keep[k, self.graph.node_blocks[blk.dst].slice]
        ok = self.pool_max[b][k] & win.valid.cpu().numpy()
        ok &= src_keep[np.where(idx >= 0, idx, 0)] & dst_keep[:, None]
        o, t = np.nonzero(ok)
        return idx[o, t], o, win.weight.cpu().numpy()[o, t]

    def _src_mask(self, k: int, blk: EdgeBlock) -> np.ndarray:
        if blk.src_range is not None:
            return self.keep[k, blk.src_range[0]:blk.src_range[1]]
        return self.keep[k, blk.src_index.reshape(-1).cpu().numpy()]

    def subgraph(self, k: int = 0, drop_empty: bool = True) -> SignedGraph:
        """The active subnetwork of input row ``k`` as a :class:`SignedGraph`
        with the same nodes (removed ones isolated) and masked edge blocks.

        Blocks with no kept edge are left out (``drop_empty``); blocks whose
        every node is kept are used as they are.
        """
        g = self.graph
        blocks: list[EdgeBlock] = []
        for bi, b in enumerate(g.edge_blocks):
            if drop_empty and self.edges[k, bi] == 0:
                continue
            if bi in self.pool_max:
                s, d, w = self.kept_pool_edges(k, bi)
                sb = SparseBlock(b.in_shape, b.out_shape, torch.from_numpy(s),
                                 torch.from_numpy(d), torch.from_numpy(w).to(g.dtype),
                                 module=b.module)
                sb.src_index, sb.src_range = b.src_index, b.src_range
                sb.src_blocks, sb.dst = b.src_blocks, b.dst
                blocks.append(sb.to(device=g.device))
                continue
            sm = self._src_mask(k, b)
            dm = self.keep[k, g.node_blocks[b.dst].slice]
            if sm.all() and dm.all():
                blocks.append(b)
            else:
                blocks.append(MaskedBlock(b, torch.from_numpy(sm).to(g.device),
                                          torch.from_numpy(dm).to(g.device),
                                          n_edges=int(self.edges[k, bi])))
        sub = g.replace_edge_blocks(blocks)
        sub.meta = dict(g.meta, active_input=_plain_id(self.ids[k]))
        return sub

    def summary(self) -> pd.DataFrame:
        """One row per input: predicted class, kept nodes / edges / ``|weight|``
        and their fractions of the whole graph."""
        g = self.graph
        tot_w = g.abs_total() / 2.0   # sum |A_ij|, cached on the graph
        n_nodes = self.keep.sum(1)
        edges = self.edges.sum(1)
        absw = self.abs_weight.sum(1)
        return pd.DataFrame({
            "input": self.ids, "pred": self.pred,
            "nodes": n_nodes, "edges": edges, "abs_weight": absw,
            "active_nodes": self.active.sum(1),
            "frac_nodes": n_nodes / g.n_nodes, "frac_edges": edges / max(g.n_edges, 1),
            "frac_abs_weight": absw / tot_w if tot_w > 0 else np.nan,
        })

    def block_table(self) -> pd.DataFrame:
        """Long table, one row per (input, edge block): kept edges and ``|weight|``."""
        g = self.graph
        B, E = self.edges.shape
        return pd.DataFrame({
            "input": np.repeat(self.ids, E),
            "block": np.tile(np.arange(E), B),
            "module": np.tile([b.module for b in g.edge_blocks], B),
            "kind": np.tile([b.kind for b in g.edge_blocks], B),
            "edges": self.edges.reshape(-1),
            "abs_weight": self.abs_weight.reshape(-1),
            "dst_nodes": np.concatenate([[int(self.keep[k, g.node_blocks[b.dst].slice].sum())
                                          for b in g.edge_blocks] for k in range(B)])
            if B else np.zeros(0, dtype=np.int64),
        })

    def frustration(self, method: str = "auto", replicas: int = 8, seed: int = 0,
                    warm_start: np.ndarray | None = None, explicit_limit: int = 2_000_000,
                    callback=None, **options) -> pd.DataFrame:
        """``delta_x`` of every input: :func:`active_frustration` on each subgraph."""
        rows = []
        for k in range(len(self)):
            r = active_frustration(self.subgraph(k), method=method, replicas=replicas,
                                   seed=seed, warm_start=warm_start,
                                   explicit_limit=explicit_limit, **options)
            rows.append({"input": self.ids[k], **r})
            if callback is not None:
                callback(k)
        table = self.summary()
        extra = pd.DataFrame(rows).drop(columns="input")
        for c in extra.columns:
            table[c] = extra[c].to_numpy()
        return table


def _plain_id(v):
    return v.item() if isinstance(v, np.generic) else v


def active_frustration(sub: SignedGraph, method: str = "auto", replicas: int = 8,
                       seed: int = 0, warm_start: np.ndarray | None = None,
                       explicit_limit: int = 2_000_000, **options) -> dict:
    """Frustration ``delta_x`` of one active subgraph (SPEC §4 with §2).

    Parameters
    ----------
    sub : SignedGraph
        From :meth:`ActiveSubgraphs.subgraph`.
    method : {"auto", "descent", "anneal", "greedy", "exact"}
        ``auto``: the paper's Algorithm 1 (``greedy``) when the subgraph has at
        most ``explicit_limit`` edges, else matrix-free ``descent``.  ``exact``
        runs :func:`deepglass.solve.exact.exact` on the nodes that keep an edge
        only (removed nodes are isolated and would only enlarge the search:
        brute force up to 25 kept nodes, else the certified MILP).
    replicas, seed
        Start gauges (uniform random, seeded).
    warm_start : ndarray (n,), optional
        A gauge of the whole network (e.g. its best one); used as the first
        start gauge, so ``delta_x`` is at most the energy of that gauge on the
        subgraph.
    **options
        Passed to the solver (``time_limit`` for ``exact``, ``gamma`` for
        ``descent``, ...).

    Returns
    -------
    dict
        ``delta_x``, ``delta_x_mean`` (mean over replicas), ``local_min``,
        ``method``, ``solve_seconds``; ``delta_x`` is NaN for a subgraph without
        edges.  ``exact`` adds ``lower_bound`` and ``optimal``.
    """
    from ..solve import METHODS, choose_method, frustration, start_gauges

    if method != "auto" and method not in METHODS:
        raise DeepglassError(f"unknown method {method!r}; choose auto or one of "
                             f"{', '.join(METHODS)}")
    if sub.n_edges == 0:
        return {"delta_x": np.nan, "delta_x_mean": np.nan, "local_min": True,
                "method": "none", "solve_seconds": 0.0}
    if method == "auto":
        method = choose_method(sub, explicit_limit=explicit_limit)
    if method != "descent":
        options = {k: v for k, v in options.items() if k != "engine"}  # descent's only
    if method == "exact":
        return _exact_on_kept(sub, **options)
    init: Any = "random"
    if warm_start is not None:
        ws = np.asarray(warm_start, dtype=np.int8).reshape(-1)
        if ws.shape[0] != sub.n_nodes:
            raise DeepglassError(f"warm_start has {ws.shape[0]} entries, the graph "
                                 f"{sub.n_nodes} nodes")
        init = start_gauges(sub.n_nodes, int(replicas), seed, "random")
        init[0] = ws
    res = frustration(sub, method=method, replicas=replicas, seed=seed, init=init,
                      device=str(sub.device), **options)
    return {"delta_x": res.frustration, "delta_x_mean": float(np.mean(res.energies)),
            "local_min": bool(res.local_min.all()), "method": method,
            "solve_seconds": res.seconds}


def _exact_on_kept(sub: SignedGraph, **options) -> dict:
    """Certified ``delta_x``: :func:`deepglass.solve.exact.exact` on the couplings
    restricted to the nodes with at least one kept edge."""
    from ..solve.exact import exact

    t0 = time.perf_counter()
    As = sub.to_scipy_sym(options.pop("limit", None))
    nodes = np.flatnonzero(np.diff(As.indptr) > 0)
    res = exact(As[nodes][:, nodes], **options)
    return {"delta_x": float(res.energy), "delta_x_mean": float(res.energy),
            "local_min": True, "method": "exact", "solve_seconds": time.perf_counter() - t0,
            "lower_bound": float(res.lower_bound), "optimal": bool(res.optimal)}


def active_summary_stats(table: pd.DataFrame, delta: float | None = None) -> dict:
    """Headline numbers of a per-input ``delta_x`` table: mean / median / std of
    ``delta_x``, mean kept fractions and, given ``delta`` of the whole net, the
    fraction of inputs with ``delta_x < delta`` (paper: nearly all)."""
    d = table["delta_x"].to_numpy(dtype=float)
    d = d[np.isfinite(d)]
    out = {"inputs": int(len(table)), "delta_x_mean": float(d.mean()) if len(d) else None,
           "delta_x_median": float(np.median(d)) if len(d) else None,
           "delta_x_std": float(d.std()) if len(d) else None,
           "delta_x_min": float(d.min()) if len(d) else None,
           "delta_x_max": float(d.max()) if len(d) else None,
           "frac_nodes_mean": float(table["frac_nodes"].mean()) if len(table) else None,
           "frac_edges_mean": float(table["frac_edges"].mean()) if len(table) else None}
    if delta is not None:
        out["delta"] = float(delta)
        out["frac_below_delta"] = float((d < delta).mean()) if len(d) else None
    return out


# =====================================================================================
def active_subgraph(graph: SignedGraph, model: nn.Module, x, *, ids=None,
                    batch_size: int | None = None, inputs_always_active: bool = True
                    ) -> ActiveSubgraphs:
    """Active subnetworks of inputs ``x`` (SPEC §4; paper 000 SI D.3).

    Parameters
    ----------
    graph : SignedGraph
        The signed graph of ``model`` (:meth:`SignedGraph.from_module`).
    model : torch.nn.Module
        The network the graph was traced from (run in eval mode).
    x : tensor or array, (B, *input_shape) or (*input_shape)
        Inputs.
    ids : sequence, optional
        Input identifiers for the tables (default ``0..B-1``).
    batch_size : int, optional
        Inputs processed at once; default: as many as fit in about 256 MB of
        masks and recorded values.
    inputs_always_active : bool
        Input nodes are never set to zero by an activation, so they are kept
        (subject to reachability) even where a pixel is 0.  ``False`` drops
        zero inputs too.

    Returns
    -------
    ActiveSubgraphs

    Notes
    -----
    Algorithm: one forward pass records every value a linear layer reads; a
    node is active when such a value is nonzero.  Max pools keep the window
    taps equal to the window maximum.  Reachability: with ``r`` the 0/1
    indicator of "reaches the predicted output", for each node block in
    reverse topological order ``r_block = active & (P_b r_dst > 0 summed over
    its outgoing edge blocks b)``, ``P_b`` the pattern operator (max pools:
    the kept taps only).  Cost O(B x (forward pass + one pattern adjoint per
    edge block)); memory O(B x n) booleans plus one recorded forward pass.
    """
    if not isinstance(graph, SignedGraph):
        raise DeepglassError(f"expected a SignedGraph, got {type(graph).__name__}")
    if not isinstance(model, nn.Module):
        raise DeepglassError(f"expected a torch.nn.Module, got {type(model).__name__}")
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    shape = tuple(graph.input_shape)
    if tuple(x.shape) == shape:
        x = x[None]
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise DeepglassError(f"inputs must have shape (B, {', '.join(map(str, shape))}), "
                             f"got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.float()
    B = x.shape[0]
    ids = np.arange(B) if ids is None else np.asarray(ids)
    if len(ids) != B:
        raise DeepglassError(f"{len(ids)} ids for {B} inputs")
    t0 = time.perf_counter()
    tracer = _tracer(graph, model)
    n = graph.n_nodes
    if batch_size is None:
        per_input = 16 * n + 8 * sum(w.idx.numel() for w in tracer.windows.values()) + 1
        batch_size = max(1, min(B, (256 << 20) // per_input))
    if batch_size < 1:
        raise DeepglassError(f"batch_size must be >= 1, got {batch_size}")
    parts = [_batch(graph, tracer, x[s:s + batch_size], inputs_always_active)
             for s in range(0, B, batch_size)]
    cat = lambda key: np.concatenate([p[key] for p in parts]) if parts else None  # noqa: E731
    pool_max = {k: np.concatenate([p["pool_max"][k] for p in parts]) for k in tracer.windows}
    return ActiveSubgraphs(graph=graph, ids=ids, active=cat("active"), keep=cat("keep"),
                           pool_max=pool_max, logits=cat("logits"), pred=cat("pred"),
                           edges=cat("edges"), abs_weight=cat("abs_weight"),
                           windows=tracer.windows, seconds=time.perf_counter() - t0)


def _batch(graph: SignedGraph, tracer: ActivityTracer, x: torch.Tensor,
           inputs_always_active: bool) -> dict:
    dev = graph.device
    B = x.shape[0]
    n = graph.n_nodes
    p = next(tracer.model.parameters(), None)
    xm = x.to(device=p.device if p is not None else "cpu",
              dtype=p.dtype if p is not None else x.dtype)
    values, logits = tracer.run(xm)
    # step 1: activity of every node from the values the linear layers read
    nonzero = torch.zeros((B, n), dtype=torch.bool, device=dev)
    read = torch.zeros(n, dtype=torch.bool, device=dev)
    for a, ids in tracer.consumers.items():
        ids = ids.to(dev)
        ok = ids >= 0
        v = values[a].reshape(B, -1).to(dev)
        nonzero[:, ids[ok]] |= v[:, ok] != 0
        read[ids[ok]] = True
    active = nonzero | ~read[None, :]
    inp = graph.input_block
    if inputs_always_active:
        active[:, inp.offset:inp.stop] = True
    out_ids = torch.as_tensor(graph.output_index, device=dev)
    pred = logits.argmax(1).to(dev)
    active[:, out_ids] = False
    rows = torch.arange(B, device=dev)
    active[rows, out_ids[pred]] = True
    # step 2: max-pool window maxima
    pool_max = {}
    for k, a in tracer.pool_src.items():
        b = graph.edge_blocks[k]
        win = tracer.windows[k].to(dev)
        ids = tracer.pool_src_ids[k].to(dev)
        ok = ids >= 0
        full = torch.full((B, n), float("nan"), dtype=torch.float64, device=dev)
        full[:, ids[ok]] = values[a].reshape(B, -1).to(device=dev, dtype=torch.float64)[:, ok]
        src_vals = graph.gather_source(b, full).reshape(B, -1)
        taps = src_vals[:, win.idx.clamp(min=0)]                 # (B, n_out, T)
        taps = torch.where(win.valid[None], taps, torch.full_like(taps, -math.inf))
        m = taps.amax(2, keepdim=True)
        pool_max[k] = (taps == m) & win.valid[None]
    # steps 3-4: reachability of the predicted output, reverse topological order
    reach = torch.zeros((B, n), dtype=torch.float32, device=dev)
    reach[rows, out_ids[pred]] = 1.0
    by_dst: dict[int, list[int]] = {}
    for k, b in enumerate(graph.edge_blocks):
        by_dst.setdefault(b.dst, []).append(k)
    for d in range(len(graph.node_blocks) - 1, -1, -1):
        nb = graph.node_blocks[d]
        sl = slice(nb.offset, nb.stop)
        reach[:, sl] = ((reach[:, sl] > 0) & active[:, sl]).float()
        r = reach[:, sl]
        if not bool(r.any()):
            continue
        for k in by_dst.get(d, []):
            b = graph.edge_blocks[k]
            if k in pool_max:
                win = tracer.windows[k].to(dev)
                contrib = torch.zeros((B, b.in_size), dtype=torch.float32, device=dev)
                vals = (r[:, :, None] * pool_max[k]).reshape(B, -1)
                idx = win.idx.clamp(min=0).reshape(-1).expand(B, -1)
                contrib.scatter_add_(1, idx, vals)
                contrib = contrib.reshape((B,) + b.in_shape)
            else:
                pb = tracer.patterns[k]
                contrib = pb.adjoint(r.reshape((B,) + b.out_shape).to(_pattern_dtype(pb)))
            graph.scatter_source(b, reach, contrib.float())
    keep = reach > 0
    # kept edges and |weight| per block
    E = len(graph.edge_blocks)
    edges = np.zeros((B, E), dtype=np.int64)
    absw = np.zeros((B, E))
    kf = keep.to(torch.float64)
    for k, b in enumerate(graph.edge_blocks):
        dst = graph.node_blocks[b.dst]
        dm = kf[:, dst.offset:dst.stop]
        sm = graph.gather_source(b, kf)
        if k in pool_max:
            win = tracer.windows[k].to(dev)
            full = pool_max[k] & (sm.reshape(B, -1)[:, win.idx.clamp(min=0)] > 0) & \
                (dm[:, :, None] > 0)
            edges[:, k] = full.sum((1, 2)).cpu().numpy()
            absw[:, k] = (full * win.weight.abs()[None]).sum((1, 2)).cpu().numpy()
            continue
        pb = tracer.patterns[k]
        dt = _pattern_dtype(pb)
        cnt = (pb.apply(sm.to(dt)).reshape(B, -1).double() * dm).sum(1)
        edges[:, k] = np.rint(cnt.cpu().numpy()).astype(np.int64)
        aw = (b.apply(sm.to(_float_dtype(b)), absolute=True).reshape(B, -1).double() * dm).sum(1)
        absw[:, k] = aw.cpu().numpy()
    return {"active": active.cpu().numpy(), "keep": keep.cpu().numpy(),
            "pool_max": {k: v.cpu().numpy() for k, v in pool_max.items()},
            "logits": logits.detach().float().cpu().numpy(), "pred": pred.cpu().numpy(),
            "edges": edges, "abs_weight": absw}


def _pattern_dtype(pb) -> torch.dtype:
    if isinstance(pb, _AbsView):
        return _float_dtype(pb.b)
    return _float_dtype(pb)


# =====================================================================================
def explicit_active_nodes(graph: SignedGraph, active: np.ndarray, pred_node: int,
                          pool_max: dict | None = None, windows: dict | None = None
                          ) -> tuple[np.ndarray, Any]:
    """Reference construction of one active subnetwork on the explicit graph.

    Drops the rows and columns of inactive nodes from ``graph.to_scipy()``,
    drops max-pool edges that are not window maxima (``pool_max`` per edge
    block, as in :class:`ActiveSubgraphs`), and keeps the nodes from which
    ``pred_node`` is reachable (scipy breadth-first search on the reversed
    graph).  O(edges); small graphs only.  Returns (kept node mask, CSR of the
    kept edges).
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order

    n = graph.n_nodes
    rows, cols, ws = [], [], []
    for bi, b in enumerate(graph.edge_blocks):
        i, j, w = b.coo()
        if pool_max is not None and bi in pool_max:
            win = windows[bi]
            idx = win.idx.cpu().numpy()
            o, t = np.nonzero(pool_max[bi] & win.valid.cpu().numpy())
            maxima = set(zip(idx[o, t].tolist(), o.tolist()))
            ok = np.array([(a, c) in maxima for a, c in zip(i.tolist(), j.tolist())], dtype=bool)
            i, j, w = i[ok], j[ok], w[ok]
        gi = (b.src_range[0] + i if b.src_range is not None
              else b.src_index.reshape(-1).cpu().numpy()[i])
        rows.append(gi)
        cols.append(graph.node_blocks[b.dst].offset + j)
        ws.append(w)
    i, j, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(ws)
    ok = active[i] & active[j]
    i, j, w = i[ok], j[ok], w[ok]
    # reachability on the structure (an edge counts whatever its weight)
    P = sp.csr_matrix((np.ones(len(i)), (j, i)), shape=(n, n))     # reversed edges
    reach = np.zeros(n, dtype=bool)
    if active[pred_node]:
        order = breadth_first_order(P, pred_node, directed=True, return_predecessors=False)
        reach[order] = True
    ok = reach[i] & reach[j]
    A = sp.coo_matrix((w[ok], (i[ok], j[ok])), shape=(n, n)).tocsr()
    return reach, A

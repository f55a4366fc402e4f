"""Active subnetworks of inputs as masks on a signed graph (SPEC §4; paper 000 SI D.3).

For an input ``x`` the network is run and what every edge block reads is
recorded (:mod:`.pattern`).  The active subnetwork keeps, of the signed graph,

1. the nodes that are *active*: a node's value (the output of a linear layer:
   convolution, dense, pool, a residual sum) flows into the next linear layers
   through elementwise layers (activations, gates); it is inactive when the
   value that flows on is exactly zero (a ReLU, a hard-swish or a closed gate
   set it to zero).  Affine steps between the activation and the next linear
   layer (batch norm, a constant factor, a bias) are looked through, since they
   keep a zero derivative zero.  Input nodes are always active (nothing sets
   them to zero), as are nodes that no linear layer reads;
2. of a block whose edges the values select (:meth:`EdgeBlock.select_edges`:
   a max pool), only the selected edges (each window's maximal input(s), all
   maxima on ties);
3. in the final layer, only the node of the predicted class (arg-max output);
   ``target`` chooses other output nodes (every one, for a detector's or a
   segmenter's dense output, or one given per input, e.g. its true class);
4. then only the nodes that still reach that output node, found by one
   backward reachability pass through the masked operators: a 0/1 "reaches
   the output" indicator is pulled back block by block in reverse topological
   order with the *pattern* operator of each edge block
   (:meth:`EdgeBlock.pattern`: every weight 1, so an edge counts whatever its
   weight, as in the graph's edge counts).

An edge is kept when both its ends are kept (and it is selected, where its
block selects).  Activity is a property of a node, not of an edge: a node that
one layer reads through a ReLU and another reads raw (the identity shortcut of
a pre-activation residual block) is active when either value is nonzero.

Everything is matrix-free and batched over inputs: the masks of a batch are
(B, n) booleans, and the reachability pass costs one pattern adjoint per edge
block, about one backward pass of the network.  :meth:`ActivePatterns.subgraph`
restricts every edge block to one input's pattern (:meth:`EdgeBlock.restrict`)
in an ordinary :class:`SignedGraph`, so every solver runs on it unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..errors import DeepglassError, check_count
from .blocks import EdgeBlock
from .pattern import PatternRecorder, pattern_recorder
from .signed_graph import SignedGraph

__all__ = ["ActivePatterns", "active_patterns", "check_target"]


@dataclass
class ActivePatterns:
    """Active subnetworks of a batch of inputs (SPEC §4), as masks on one graph.

    Attributes
    ----------
    graph : SignedGraph
        The whole network's graph.
    ids : ndarray (B,)
        Identifiers of the inputs (row labels of the tables).
    active : ndarray bool (B, n)
        Nodes whose value flows on nonzero (step 1; output nodes: only the
        target ones).
    keep : ndarray bool (B, n)
        Nodes of the active subnetwork (active and reaching a target output).
    pool_max : dict[int, ndarray bool (B, n_out, T)]
        Per edge block that selects edges (a max pool; index into
        ``graph.edge_blocks``), the selected window taps (window maxima).
    logits : ndarray (B, m)
        The network's outputs; ``pred`` their arg-max.
    target : ndarray int (B,)
        The output position each subnetwork ends in (``pred`` by default, the
        given one with ``target=`` an array); -1 where it ends in every output
        (``target="all"``).
    edges, abs_weight : ndarray (B, n_edge_blocks)
        Kept edges and kept ``sum |A_ij|`` per edge block.
    windows : dict[int, WindowTable]
        The window table of each block in ``pool_max``.
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
    target: np.ndarray | None = None

    def __post_init__(self):
        if self.target is None:
            self.target = np.asarray(self.pred, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def node_masks(self, k: int = 0) -> dict[str, np.ndarray]:
        """Kept nodes of input row ``k`` per node block, shaped like the block."""
        return {nb.name: self.keep[k, nb.offset:nb.stop].reshape(nb.shape)
                for nb in self.graph.node_blocks}

    def kept_pool_edges(self, k: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Kept (local source, local destination, weight) edges of edge block
        ``b`` (one that selects edges, e.g. a max pool) for input row ``k``."""
        blk = self.graph.edge_blocks[b]
        return blk.selected_edges(self.pool_max[b][k], self._src_mask(k, blk),
                                  self.keep[k, self.graph.node_blocks[blk.dst].slice])

    def _src_mask(self, k: int, blk: EdgeBlock) -> np.ndarray:
        if blk.src_range is not None:
            return self.keep[k, blk.src_range[0]:blk.src_range[1]]
        return self.keep[k, blk.src_index.reshape(-1).cpu().numpy()]

    def subgraph(self, k: int = 0, drop_empty: bool = True) -> SignedGraph:
        """The active subnetwork of input row ``k`` as a :class:`SignedGraph`
        with the same nodes (removed ones isolated) and every edge block
        restricted to the pattern (:meth:`EdgeBlock.restrict`).

        Blocks with no kept edge are left out (``drop_empty``); blocks whose
        every node is kept (and that select no edges) are used as they are.
        """
        B = self.keep.shape[0]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -B <= k < B:
            raise DeepglassError(f"input row {k!r} out of range: {B} inputs")
        g = self.graph
        blocks: list[EdgeBlock] = []
        for bi, b in enumerate(g.edge_blocks):
            if drop_empty and self.edges[k, bi] == 0:
                continue
            sm = self._src_mask(k, b)
            dm = self.keep[k, g.node_blocks[b.dst].slice]
            if bi in self.pool_max:
                blocks.append(b.restrict(sm, dm, selection=self.pool_max[bi][k]))
            else:
                blocks.append(b.restrict(torch.from_numpy(sm).to(g.device),
                                         torch.from_numpy(dm).to(g.device),
                                         n_edges=int(self.edges[k, bi])))
        sub = g.replace_edge_blocks(blocks)
        v = self.ids[k]
        sub.meta = dict(g.meta, active_input=v.item() if isinstance(v, np.generic) else v)
        return sub

    def summary(self) -> pd.DataFrame:
        """One row per input: predicted class, target output (-1: all), kept
        nodes / edges / ``|weight|`` and their fractions of the whole graph."""
        g = self.graph
        tot_w = g.abs_total() / 2.0   # sum |A_ij|, cached on the graph
        n_nodes = self.keep.sum(1)
        edges = self.edges.sum(1)
        absw = self.abs_weight.sum(1)
        return pd.DataFrame({
            "input": self.ids, "pred": self.pred, "target": self.target,
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


def active_patterns(graph: SignedGraph, model: nn.Module, x, *, ids=None,
                    batch_size: int | None = None, inputs_always_active: bool = True,
                    forward_kwargs: dict | None = None, target="pred") -> ActivePatterns:
    """Active subnetworks of inputs ``x`` (SPEC §4; paper 000 SI D.3).

    Parameters
    ----------
    graph : SignedGraph
        The signed graph of ``model`` (:meth:`SignedGraph.from_module`).
    model : torch.nn.Module
        The network the graph was captured from (run in eval mode).
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
    forward_kwargs : dict, optional
        The fixed forward arguments the graph was captured with
        (:meth:`SignedGraph.from_module`), passed to every recorded forward.
    target : {"pred", "all"} or sequence of int (B,)
        The output nodes each subnetwork ends in (step 3).  ``"pred"``: the
        arg-max output, SPEC §4's rule for a classifier.  ``"all"``: every
        output node, for outputs that are not one class score each (a
        detector's or a segmenter's map, a regression).  A sequence: one
        output position (``0 .. len(graph.output_index) - 1``) per input, e.g.
        the true classes, for the subnetwork that supports a given class.

    Notes
    -----
    Algorithm: one forward pass records every value an edge block reads; a
    node is active when such a value is nonzero.  Blocks that select edges
    (max pools) keep the selected ones.  Reachability: with ``r`` the 0/1
    indicator of "reaches the predicted output", for each node block in
    reverse topological order ``r_block = active & (P_b r_dst > 0 summed over
    its outgoing edge blocks b)``, ``P_b`` the pattern operator (restricted to
    the selected edges where a block selects).  Cost O(B x (forward pass + one
    pattern adjoint per edge block)); memory O(B x n) booleans plus the
    recorded values.
    """
    if not isinstance(graph, SignedGraph):
        raise DeepglassError(f"expected a SignedGraph, got {type(graph).__name__}")
    if not isinstance(model, nn.Module):
        raise DeepglassError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if len(graph.input_blocks) != 1:    # (before x, which may then be a tuple of inputs)
        raise DeepglassError(f"activation patterns need a network with one input; this graph "
                             f"has {len(graph.input_blocks)}")
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    shape = tuple(graph.input_shape)
    if tuple(x.shape) == shape:
        x = x[None]
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise DeepglassError(f"inputs must have shape (B, {', '.join(map(str, shape))}), "
                             f"got {tuple(x.shape)}")
    if x.is_complex():
        raise DeepglassError("inputs are complex: the network's inputs are real numbers")
    if not torch.is_floating_point(x):
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise DeepglassError("inputs hold NaN or infinite values")
    B = x.shape[0]
    if B < 1:
        raise DeepglassError("no inputs: x holds a batch of 0")
    ids = np.arange(B) if ids is None else np.asarray(ids)
    if ids.ndim != 1 or len(ids) != B:
        got = f"{len(ids)} of them" if ids.ndim == 1 else repr(ids.tolist())
        raise DeepglassError(f"ids must be a sequence of {B} ids (one per input), got {got}")
    if batch_size is not None:
        batch_size = check_count(batch_size, "batch_size")
    target = check_target(target, B, len(graph.output_index))
    t0 = time.perf_counter()
    rec = pattern_recorder(graph, model, forward_kwargs)
    selecting = [k for k, b in enumerate(graph.edge_blocks) if b.selects_edges()]
    windows = {k: graph.edge_blocks[k].window_table() for k in selecting}
    if batch_size is None:
        per_input = 16 * graph.n_nodes + rec.bytes_per_input() + \
            8 * sum(w.idx.numel() for w in windows.values()) + 1
        batch_size = max(1, min(B, (256 << 20) // per_input))
    parts = [_batch(graph, rec, x[s:s + batch_size], inputs_always_active,
                    target if isinstance(target, str) else target[s:s + batch_size])
             for s in range(0, B, batch_size)]
    cat = lambda key: np.concatenate([p[key] for p in parts])  # noqa: E731
    pool_max = {k: np.concatenate([p["pool_max"][k] for p in parts]) for k in selecting}
    return ActivePatterns(graph=graph, ids=ids, active=cat("active"), keep=cat("keep"),
                          pool_max=pool_max, logits=cat("logits"), pred=cat("pred"),
                          edges=cat("edges"), abs_weight=cat("abs_weight"), windows=windows,
                          seconds=time.perf_counter() - t0, target=cat("target"))


def check_target(target, n_inputs: int, n_outputs: int):
    """``target`` of :func:`active_patterns`, validated: ``"pred"``, ``"all"``
    or an int64 array of one output position per input."""
    if isinstance(target, str):
        if target not in ("pred", "all"):
            raise DeepglassError(f"target must be 'pred', 'all' or one output position per "
                                 f"input, got {target!r}")
        return target
    t = target.cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
    if t.ndim != 1 or len(t) != n_inputs:
        raise DeepglassError(f"target must hold one output position per input: {n_inputs} "
                             f"inputs, got shape {tuple(t.shape)}")
    if len(t) and (not np.issubdtype(t.dtype, np.integer) or t.min() < 0
                   or t.max() >= n_outputs):
        raise DeepglassError(f"target positions must be integers in [0, {n_outputs}) (the "
                             f"network has {n_outputs} output nodes), got "
                             f"{t.min().item()!r}..{t.max().item()!r}")
    return t.astype(np.int64)


def _activity(graph: SignedGraph, got, B: int, inputs_always_active: bool) -> torch.Tensor:
    """Step 1: a node is active when a value read from it is nonzero, or when
    nothing reads it; the output nodes are left for the caller."""
    dev, n = graph.device, graph.n_nodes
    # counts, not booleans: a source tensor may name a node twice (index_add_ adds both)
    nonzero = torch.zeros((B, n), dtype=torch.int32, device=dev)
    read = torch.zeros((1, n), dtype=torch.int32, device=dev)
    for k, b in enumerate(graph.edge_blocks):
        v = got.values(k)
        known = ~torch.isnan(v)
        graph.scatter_source(b, nonzero, ((v != 0) & known).to(torch.int32))
        graph.scatter_source(b, read, known.any(0, keepdim=True).to(torch.int32))
    nonzero, read = nonzero > 0, read > 0
    active = nonzero | ~read
    if inputs_always_active:
        inp = graph.input_block
        active[:, inp.offset:inp.stop] = True
    return active


def _batch(graph: SignedGraph, rec: PatternRecorder, x: torch.Tensor,
           inputs_always_active: bool, target) -> dict:
    dev = graph.device
    B = x.shape[0]
    n = graph.n_nodes
    p = next(rec.model.parameters(), None)
    xm = x.to(device=p.device if p is not None else "cpu",
              dtype=p.dtype if p is not None else x.dtype)
    got = rec.record(xm, device=dev)
    active = _activity(graph, got, B, inputs_always_active)
    out_ids = torch.as_tensor(graph.output_index, device=dev)
    pred = got.output.argmax(1)
    rows = torch.arange(B, device=dev)
    # step 3: the output nodes the subnetworks end in
    ends = torch.zeros((B, len(out_ids)), dtype=torch.bool, device=dev)
    if isinstance(target, str) and target == "all":
        ends[:] = True
        chosen = torch.full((B,), -1, dtype=torch.int64, device=dev)
    else:
        chosen = pred if isinstance(target, str) else torch.as_tensor(target, device=dev)
        ends[rows, chosen] = True
    active[:, out_ids] = ends
    # step 2: the edges the values select (max-pool window maxima)
    selected = {k: b.select_edges(got.exact(k)) for k, b in enumerate(graph.edge_blocks)
                if b.selects_edges()}
    # step 4: reachability of the target outputs, reverse topological order
    reach = torch.zeros((B, n), dtype=torch.float32, device=dev)
    reach[:, out_ids] = ends.float()
    by_dst: dict[int, list[int]] = {}
    for k, b in enumerate(graph.edge_blocks):
        by_dst.setdefault(b.dst, []).append(k)
    patterns = _patterns(graph)
    for d in range(len(graph.node_blocks) - 1, -1, -1):
        nb = graph.node_blocks[d]
        sl = slice(nb.offset, nb.stop)
        reach[:, sl] = ((reach[:, sl] > 0) & active[:, sl]).float()
        # a copy: an identity block's adjoint may return ``r`` itself, which
        # must not alias the ``reach`` its sources are added into
        r = reach[:, sl].clone()
        if not bool(r.any()):
            continue
        for k in by_dst.get(d, []):
            b = graph.edge_blocks[k]
            if k in selected:
                contrib = b.selected_adjoint(selected[k], r)
            else:
                pb = patterns[k]
                contrib = pb.adjoint(r.reshape((B,) + b.out_shape).to(pb.value_dtype()))
            graph.scatter_source(b, reach, contrib.float())
    keep = reach > 0
    edges, absw = _kept_edges(graph, keep, selected, patterns)
    return {"active": active.cpu().numpy(), "keep": keep.cpu().numpy(),
            "pool_max": {k: v.cpu().numpy() for k, v in selected.items()},
            "logits": got.output.detach().float().cpu().numpy(), "pred": pred.cpu().numpy(),
            "target": chosen.cpu().numpy(), "edges": edges, "abs_weight": absw}


def _patterns(graph: SignedGraph) -> list:
    """The pattern operator of every edge block, built once per graph."""
    cached = graph.__dict__.get("_pattern_blocks")
    if cached is None:
        cached = graph._pattern_blocks = [b.pattern() for b in graph.edge_blocks]
    return cached


def _kept_edges(graph, keep, selected, patterns) -> tuple[np.ndarray, np.ndarray]:
    """Kept edges and kept ``sum |A_ij|`` per (input, edge block): one pattern
    and one ``|A_b|`` product per block."""
    B, E = keep.shape[0], len(graph.edge_blocks)
    edges = np.zeros((B, E), dtype=np.int64)
    absw = np.zeros((B, E))
    kf = keep.to(torch.float64)
    for k, b in enumerate(graph.edge_blocks):
        dst = graph.node_blocks[b.dst]
        dm = kf[:, dst.offset:dst.stop]
        sm = graph.gather_source(b, kf)
        if k in selected:
            cnt, aw = b.selected_counts(selected[k], sm, dm)
            edges[:, k] = cnt.cpu().numpy()
            absw[:, k] = aw.cpu().numpy()
            continue
        pb = patterns[k]
        cnt = (pb.apply(sm.to(pb.value_dtype())).reshape(B, -1).double() * dm).sum(1)
        edges[:, k] = np.rint(cnt.cpu().numpy()).astype(np.int64)
        aw = (b.apply(sm.to(b.value_dtype()), absolute=True).reshape(B, -1).double() * dm).sum(1)
        absw[:, k] = aw.cpu().numpy()
    return edges, absw

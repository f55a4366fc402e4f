"""Recording the activation pattern of inputs: what every edge block of a
signed graph reads, during one forward pass (SPEC §4).

:class:`PatternRecorder` captures the model once more, by the path its graph
was captured with (``torch.export`` or the ``torch.fx`` fallback), with the
builder's recording on (:func:`.trace.capture_module` ``record=True``): every
captured value gets *value ids*, and every edge block keeps which element of
which value each of its sources reads, twice:

- the *zero-faithful* value: the value that flows on, with affine steps
  between an activation and the layer (batch norm, a constant factor, a bias)
  looked through, since they keep a zero derivative zero.  A source element is
  active when this value is nonzero;
- the *exact* value the layer reads, for blocks whose edges the values select
  (:meth:`EdgeBlock.selects_edges`: a max pool keeps its window maxima).

:meth:`PatternRecorder.record` runs the captured program on a batch (the fx
program) or one input at a time (an exported program is specialized to batch
1) and returns, per edge block, the two recorded values of its sources.
Nothing here knows a layer kind: a new kind needs its block class and its op
entry only.
"""

from __future__ import annotations

import warnings
import weakref

import numpy as np
import torch
import torch.fx
import torch.nn as nn

from ..errors import DeepglassError, first_line
from .signed_graph import SignedGraph
from .trace import CAPTURE_OF, capture_module, module_mode

__all__ = ["PatternRecorder", "Recorded", "pattern_recorder"]


class _Recorder(torch.fx.Interpreter):
    """Runs a captured program and keeps the wanted outputs (``got[(node, pos)]``)."""

    def __init__(self, gm, wanted: dict, skip_modules: bool):
        super().__init__(gm)
        self.wanted, self.skip_modules = wanted, skip_modules
        self.got: dict = {}

    def run_node(self, n):
        if self.skip_modules and n.op == "call_module":   # an exported program's input guards
            return None
        real = super().run_node(n)
        for pos, _, _ in self.wanted.get(n, ()):
            # a copy: a later in-place op must not change it
            self.got[n, pos] = (real[pos] if pos is not None else real).detach().clone()
        return real


class Recorded:
    """Recorded values of a batch: ``values(k)`` (B, in_size) the zero-faithful
    values the sources of edge block ``k`` carry, ``exact(k)`` the values it
    reads (blocks that select edges), ``output`` (B, m) the selected output;
    NaN where an element reads no value (zero padding)."""

    def __init__(self, table: torch.Tensor, value_ids, exact_ids, output):
        self.table, self.value_ids, self.exact_ids, self.output = (table, value_ids, exact_ids,
                                                                   output)

    def _gather(self, ids):
        got = self.table[:, ids.clamp(min=0)]
        return torch.where(ids[None] >= 0, got, torch.full_like(got, float("nan")))

    def values(self, k: int) -> torch.Tensor:
        return self._gather(self.value_ids[k])

    def exact(self, k: int) -> torch.Tensor:
        return self._gather(self.exact_ids[k])


class PatternRecorder:
    """Which values every edge block of ``graph`` reads, for forward passes of
    ``model`` (the network the graph was captured from).

    Cost: one capture with recording (about the cost of building the graph),
    then per batch one forward pass that copies the read values.

    Raises
    ------
    DeepglassError
        When the graph was not captured from this model (blocks differ), or has
        several inputs.
    """

    def __init__(self, graph: SignedGraph, model: nn.Module, forward_kwargs: dict | None = None):
        if len(graph.input_blocks) != 1:
            raise DeepglassError("activation patterns need a network with one input")
        rules = graph.meta.get("rules", {})
        kw = rules.get("forward_kwargs")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                c = capture_module(model, tuple(graph.input_shape),
                                   batchnorm=rules.get("batchnorm", "fold"),
                                   pool_weight=graph.meta.get("pool_weight"),
                                   norm=rules.get("norm", "fold"),
                                   gates=rules.get("gates", "scale"),
                                   capture=CAPTURE_OF.get(rules.get("capture"), "auto"),
                                   forward_kwargs=forward_kwargs, record=True)
            except DeepglassError as exc:
                if kw and not forward_kwargs:   # (the forward failed without them)
                    raise DeepglassError(f"the graph was captured with forward_kwargs={kw}: "
                                         f"pass them here too ({first_line(exc)})") from None
                raise
        mine = [(nb.offset, tuple(nb.shape)) for nb in c.node_blocks]
        theirs = [(nb.offset, tuple(nb.shape)) for nb in graph.node_blocks]
        if mine != theirs or [(b.kind, b.in_shape, b.dst) for b in c.edge_blocks] != \
                [(b.kind, b.in_shape, b.dst) for b in graph.edge_blocks]:
            hint = (f", with forward_kwargs={kw}" if kw and not forward_kwargs else "")
            raise DeepglassError("the graph was not traced from this model (its node blocks "
                                 f"differ); pass the model the graph was built from{hint}")
        if not _same_weights(graph, c):
            raise DeepglassError("the graph was not captured from this model's weights (its "
                                 "edges differ: other weights of the same architecture, a null "
                                 "model's or a trained copy's); pass the model the graph was "
                                 "built from")
        for b in graph.edge_blocks:
            if b.src_blocks and max(b.src_blocks) >= b.dst:
                raise DeepglassError(f"edge block {b.module!r} does not run forward "
                                     "(source block after its destination)")
        self.graph, self.model = graph, model
        self.program, self.batched = c.program, c.batched
        # a half-precision model captured as a float32 copy: its program reads float32
        self.widened = c.widened
        self.forward_kwargs = dict(forward_kwargs or {})
        names = c.output_names
        self.output_position = names.index(graph.output_name) \
            if graph.output_name in names else 0
        selecting = [b.selects_edges() for b in graph.edge_blocks]
        self._compact(c, selecting)

    def _compact(self, c, selecting) -> None:
        """Number only the values some block reads (compact ids), and group the
        recorded fx outputs by node.  O(reads x log(values))."""
        starts = np.array([v[2] for v in c.values], dtype=np.int64)
        wanted_ids = [r[0].reshape(-1) for r in c.reads] + \
            [r[1].reshape(-1) for r, sel in zip(c.reads, selecting) if sel]
        allids = torch.cat(wanted_ids).numpy() if wanted_ids else np.zeros(0, np.int64)
        allids = allids[allids >= 0]
        entries = np.unique(np.searchsorted(starts, allids, side="right") - 1)
        offset = np.full(len(starts), -1, dtype=np.int64)
        sizes = np.array([c.values[e][3] for e in entries], dtype=np.int64)
        offset[entries] = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(entries) else []
        self.n_values = int(sizes.sum())
        self.wanted: dict = {}
        for e in entries:
            node, pos, _, size = c.values[e]
            self.wanted.setdefault(node, []).append((pos, int(offset[e]), int(size)))

        def compact(ids):
            ids = ids.reshape(-1).numpy()
            e = np.clip(np.searchsorted(starts, ids, side="right") - 1, 0, None)
            out = np.where(ids >= 0, offset[e] + ids - starts[e], -1)
            return torch.from_numpy(out.astype(np.int64))

        self._order = [(node, pos) for node, entries in self.wanted.items()
                       for pos, _, _ in entries]
        self._loop = False
        self.value_ids = [compact(r[0]) for r in c.reads]
        self.exact_ids = {k: compact(r[1]) for k, (r, sel) in enumerate(zip(c.reads, selecting))
                          if sel}

    def bytes_per_input(self) -> int:
        """Memory of one input's recorded values."""
        return 8 * self.n_values

    def _run(self, x: torch.Tensor) -> tuple:
        """One run of the program on ``x``: its selected output and the wanted
        values, in the order of ``self._order``."""
        import torch.utils._pytree as pytree

        rec = _Recorder(self.program, self.wanted, not self.batched)
        args = [x] if self.batched else pytree.tree_flatten(((x,), self.forward_kwargs))[0]
        leaves = pytree.tree_flatten(rec.run(*args))[0]
        y = leaves[self.output_position] if self.output_position < len(leaves) \
            and isinstance(leaves[self.output_position], torch.Tensor) else \
            next(t for t in leaves if isinstance(t, torch.Tensor))
        return y, tuple(rec.got[key] for key in self._order)

    def _run_batch(self, x: torch.Tensor) -> tuple:
        """The fx program runs on the batch; an exported one is specialized to
        batch 1, so it is mapped over the inputs with ``torch.func.vmap`` (one
        batched pass), or run one input at a time where an op has no batching
        rule."""
        if self.batched:
            return self._run(x)
        if not self._loop:
            try:
                y, vals = torch.func.vmap(self._run)(x[:, None])
                return y.reshape((x.shape[0],) + y.shape[2:]), vals
            except Exception:  # an op without a batching rule: the exact per-input loop
                self._loop = True
        runs = [self._run(x[k:k + 1]) for k in range(x.shape[0])]
        return (torch.cat([r[0] for r in runs]),
                tuple(torch.cat([r[1][i] for r in runs]) for i in range(len(self._order))))

    def record(self, x: torch.Tensor, device=None) -> Recorded:
        """Forward ``x`` (B, *input_shape) (in eval mode, without gradients) and
        keep what the edge blocks read; tensors on ``device`` (the graph's).
        Cost: one forward pass of the batch plus the copies of the read values."""
        device = torch.device(device or self.graph.device)
        B = x.shape[0]
        if self.widened and x.is_floating_point():
            x = x.float()       # the program is the float32 copy's (capture_module)
        table = torch.zeros((B, self.n_values), dtype=torch.float64, device=device)
        with module_mode(self.model), torch.no_grad():
            y, vals = self._run_batch(x)
        for (node, pos), v in zip(self._order, vals):
            for p, off, size in self.wanted[node]:
                if p == pos:
                    table[:, off:off + size] = v.reshape(B, size).to(device=device,
                                                                     dtype=torch.float64)
        vid = [v.to(device) for v in self.value_ids]
        eid = {k: v.to(device) for k, v in self.exact_ids.items()}
        return Recorded(table, vid, eid, y.reshape(B, -1).to(device))


def _same_weights(graph: SignedGraph, c) -> bool:
    """Whether the blocks of capture ``c`` have ``graph``'s edge weights: both
    operators on one random vector agree to 1e-4 of its norm (float64, on the
    CPU; a permutation of a layer's weights, N1, changes it).  O(edges)."""
    mine = SignedGraph(c.node_blocks, c.edge_blocks, graph.input_shape,
                       output_index=graph.output_index, dtype=c.dtype,
                       device=c.device).to(device="cpu", dtype=torch.float64)
    theirs = graph.to(device="cpu", dtype=torch.float64)
    v = torch.randn(1, graph.n_nodes, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    a, b = mine.rmatvec(v), theirs.rmatvec(v)
    return bool(torch.linalg.vector_norm(a - b) <= 1e-4 * torch.linalg.vector_norm(b) + 1e-30)


_RECORDERS: "weakref.WeakKeyDictionary[SignedGraph, tuple]" = weakref.WeakKeyDictionary()


def pattern_recorder(graph: SignedGraph, model: nn.Module,
                     forward_kwargs: dict | None = None) -> PatternRecorder:
    """The :class:`PatternRecorder` of ``graph`` and ``model``, built once per
    pair (a recorder with ``forward_kwargs`` is built each time)."""
    if forward_kwargs:
        return PatternRecorder(graph, model, forward_kwargs)
    hit = _RECORDERS.get(graph)
    if hit is not None and hit[0]() is model:
        return hit[1]
    rec = PatternRecorder(graph, model)
    _RECORDERS[graph] = (weakref.ref(model), rec)
    return rec

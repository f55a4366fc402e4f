"""Several graphs on the same nodes solved as one batch (null-model draws, SPEC §3).

The null protocol (paper 000, Fig. 2) solves ``80`` draws of each null model
from two start gauges each: one draw at a time, a device runs two replicas
at once.  :class:`DrawBatchedGraph` stacks ``D`` graphs that share their nodes
and the layout of their edge blocks (draws of one null model) into one
operator on ``R = D r`` replicas, draw-major (replicas ``d r ... d r + r - 1``
belong to draw ``d``), so the matrix-free descent runs every draw's starts in
one batch:

- convolutions become one grouped convolution: the draws' kernels stacked
  along the output channels (``D C_out`` filters, ``D g`` groups) applied to
  the replicas' inputs stacked along the channels;
- dense layers become one batched matrix product (``torch.bmm`` over draws);
- blocks that are the same in every draw (pooling, identity) run once on all
  replicas; anything else (e.g. N2's unshared convolutions) draw by draw.

Every replica sees exactly its own draw's couplings, and the descent's
schedule is per replica (its thresholds, its minima; see
:mod:`deepglass.solve.descent`), so a draw's result does not depend on which
other draws share its batch (tested: the same numbers as one draw at a time,
in float64).  Each draw keeps its own normalizer ``sum |A|`` and tolerance
per node.  Memory: the draws' weights (once: the stacked copy, the per-draw
blocks view it) and the descent's (R, n) state.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..errors import DeepglassError
from ..graph import SignedGraph
from ..graph.blocks import ConvBlock, DenseBlock, EdgeBlock

__all__ = ["DrawBatchedGraph", "StackedBlock", "solve_draws"]


#: per device type, whether convolutions of several draws run as one grouped
#: convolution (else one after the other on their replicas).  The CPU's grouped
#: convolutions cost more than the convolutions they stand for (ResNet-18
#: 3x32x32, 4 draws of 2 replicas, one thread: 3.8 ms per grouped call against
#: 0.38 ms per draw's call)
STACK_CONVS = {"cpu": False}


def _draw_major(x: torch.Tensor, D: int) -> torch.Tensor:
    """(D r, *s) -> (D, r, *s) (a view)."""
    return x.reshape((D, x.shape[0] // D) + tuple(x.shape[1:]))


class StackedBlock(EdgeBlock):
    """One edge block of ``D`` draws, applied to draw-major replicas.

    Parameters
    ----------
    blocks : list of EdgeBlock
        The draws' blocks, of one class and geometry (same shapes, sources and
        destination).
    """

    kind = "stacked"

    def __init__(self, blocks: list[EdgeBlock]):
        b0 = blocks[0]
        super().__init__(b0.in_shape, b0.out_shape, b0.module)
        for b in blocks[1:]:
            if (type(b) is not type(b0) or b.in_shape != b0.in_shape
                    or b.out_shape != b0.out_shape or b.dst != b0.dst
                    or b.src_range != b0.src_range):
                raise DeepglassError(f"draws differ in edge block {b0.module!r}: they cannot "
                                     "be solved as one batch")
        self.D = len(blocks)
        self.src_index, self.src_range = b0.src_index, b0.src_range
        self.src_blocks, self.dst = b0.src_blocks, b0.dst
        self.sparse_advantage = b0.sparse_advantage
        self.weight_bound = getattr(b0, "weight_bound", False)
        self.shared = all(b is b0 for b in blocks)
        self.mode = "loop"
        self.big = None
        # scales the same in every draw (N1 keeps the real ones, N3 drops them)
        # are applied here once, around the stacked weights
        plain = all(_same(b.in_scale, b0.in_scale) and _same(b.out_scale, b0.out_scale)
                    for b in blocks)
        self.in_scale, self.out_scale = (b0.in_scale, b0.out_scale) if plain else (None, None)
        if self.shared:
            self.mode = "shared"
        elif plain and type(b0) is ConvBlock and STACK_CONVS.get(
                b0.weight.device.type, True) and all(
                (b.stride, b.padding, b.dilation, b.groups) ==
                (b0.stride, b0.padding, b0.dilation, b0.groups) for b in blocks):
            self.mode = "conv"
            W = torch.cat([b.weight for b in blocks])                 # (D C_out, C_in/g, *k)
            big = copy.copy(b0)
            big.__dict__.pop("_csr_cache", None)
            big._abs_cache = {}
            big.weight = W
            big.in_scale = big.out_scale = None
            big.groups = b0.groups * self.D
            big.in_shape = (b0.in_shape[0] * self.D,) + b0.in_shape[1:]
            big.out_shape = (b0.out_shape[0] * self.D,) + b0.out_shape[1:]
            self.big = big
            blocks = [b.with_weight(w) for b, w in zip(blocks, W.chunk(self.D))]
        elif plain and type(b0) is DenseBlock:
            self.mode = "dense"
            W = torch.stack([b.weight for b in blocks])               # (D, out, in)
            self.big = W
            blocks = [b.with_weight(w) for b, w in zip(blocks, W.unbind(0))]
        self.blocks = blocks

    # ---- operator ---------------------------------------------------------------
    def apply(self, x, absolute=False):
        if self.mode in ("shared", "loop"):   # the draws' blocks apply their own scales
            return self._run(x, absolute, adjoint=False)
        return super().apply(x, absolute)

    def adjoint(self, y, absolute=False):
        if self.mode in ("shared", "loop"):
            return self._run(y, absolute, adjoint=True)
        return super().adjoint(y, absolute)

    def _apply(self, x, absolute):
        return self._run(x, absolute, adjoint=False)

    def _adjoint(self, y, absolute):
        return self._run(y, absolute, adjoint=True)

    def _run(self, x, absolute, adjoint):
        D = self.D
        if self.mode == "shared":
            b = self.blocks[0]
            return b.adjoint(x, absolute) if adjoint else b.apply(x, absolute)
        if self.mode == "dense":
            W = self.big.abs() if absolute else self.big
            xd = _draw_major(x, D)                                        # (D, r, k)
            out = torch.bmm(xd, W) if adjoint else torch.bmm(xd, W.transpose(1, 2))
            return out.reshape((x.shape[0],) + out.shape[2:])
        if self.mode == "conv":
            r = x.shape[0] // D
            xd = _draw_major(x, D)                                        # (D, r, C, *sp)
            # draws along the channels: (r, D C, *sp), one grouped convolution
            xs = xd.transpose(0, 1).reshape((r, D * x.shape[1]) + tuple(x.shape[2:]))
            ys = self.big._adjoint(xs, absolute) if adjoint else self.big._apply(xs, absolute)
            C = ys.shape[1] // D
            out = ys.reshape((r, D, C) + tuple(ys.shape[2:])).transpose(0, 1)
            return out.reshape((D * r, C) + tuple(ys.shape[2:]))
        parts = [(b.adjoint(xd, absolute) if adjoint else b.apply(xd, absolute))
                 for b, xd in zip(self.blocks, _draw_major(x, D))]
        return torch.cat(parts)

    # ---- per-draw quantities ------------------------------------------------------
    def n_edges(self):
        return self.blocks[0].n_edges()

    def n_params(self):
        return sum(b.n_params() for b in self.blocks)

    def abs_sums(self) -> np.ndarray:
        """``sum |A_b|`` of every draw (float64)."""
        return np.array([b.abs_sum() for b in self.blocks])

    def abs_sum(self) -> float:
        raise DeepglassError("a stacked block has one |A| sum per draw: use abs_sums()")

    # ---- sparse updates: each draw's own block on its replicas' entries ----------------
    draw_batched = True

    def supports_sparse(self):
        return all(b.supports_sparse() for b in self.blocks)

    def sparse_rows(self, rows: torch.Tensor, idx: torch.Tensor, vals: torch.Tensor,
                    transpose: bool, replicas: int):
        """:meth:`EdgeBlock.sparse_apply` (``transpose``: ``sparse_adjoint``) for
        entries of replicas ``rows`` out of ``replicas``: each draw's block
        handles the entries of its replicas."""
        draw = torch.div(rows, replicas // self.D, rounding_mode="floor")
        if self.mode == "shared":
            b = self.blocks[0]
            return b.sparse_adjoint(idx, vals) if transpose else b.sparse_apply(idx, vals)
        entries, others, contribs = [], [], []
        for d in torch.unique(draw).tolist():
            sel = torch.nonzero(draw == d, as_tuple=True)[0]
            b = self.blocks[d]
            e, o, c = (b.sparse_adjoint(idx[sel], vals[sel]) if transpose
                       else b.sparse_apply(idx[sel], vals[sel]))
            entries.append(sel.to(e.device)[e])
            others.append(o)
            contribs.append(c)
        if not entries:
            z = torch.zeros(0, dtype=torch.long, device=vals.device)
            return z, z, vals[:0]
        return torch.cat(entries), torch.cat(others), torch.cat(contribs)

    def describe(self):
        return f"{self.blocks[0].describe()} x{self.D} draws ({self.mode})"


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a is b or (a.shape == b.shape and bool(torch.equal(a, b)))


class DrawBatchedGraph(SignedGraph):
    """``D`` graphs on the same nodes as one operator on draw-major replicas
    (module docstring).  :meth:`abs_total` and :meth:`abs_row_sums` are per
    draw, and :meth:`energy_from_fields` uses each replica's own draw."""

    def __init__(self, graphs: list[SignedGraph]):
        g0 = graphs[0]
        if any(g.n_nodes != g0.n_nodes or len(g.edge_blocks) != len(g0.edge_blocks)
               or g.device != g0.device or g.dtype != g0.dtype for g in graphs):
            raise DeepglassError("draws batched together need the same nodes, edge blocks, "
                                 "device and dtype")
        blocks = [StackedBlock([g.edge_blocks[k] for g in graphs])
                  for k in range(len(g0.edge_blocks))]
        super().__init__(g0.node_blocks, blocks, g0.input_shape, g0.output_index,
                         dtype=g0.dtype, device=g0.device, meta=dict(g0.meta))
        self.D = len(graphs)
        #: one draw, as it stands alone: the engines' memory model sizes a batch
        #: from it (:func:`deepglass.solve.engines.matrix_free_bytes`)
        self.draw_graph = g0
        self._draw_totals = None

    def coloring(self):
        cached = self.__dict__.get("_coloring")
        if cached is None:
            cached = self._coloring = super().coloring()
        return cached

    def draw_abs_totals(self) -> torch.Tensor:
        """``1^T |As| 1`` of every draw, (D,) float64 on the graph's device."""
        if self._draw_totals is None:
            tot = 2.0 * sum(b.abs_sums() for b in self.edge_blocks)
            self._draw_totals = torch.as_tensor(tot, dtype=torch.float64, device=self.device)
        return self._draw_totals

    def abs_total(self):
        return self.draw_abs_totals()

    def abs_row_sums(self) -> torch.Tensor:
        """Per draw and node ``sum_j |As|_ij``: (D, n), cached."""
        if self._abs_rows is None:
            ones = torch.ones((self.D, self.n_nodes), dtype=self.dtype, device=self.device)
            self._abs_rows = self.sym_matvec(ones, absolute=True)
        return self._abs_rows

    def energy_from_fields(self, sigma, fields, chunk: int = 8):
        quad = torch.cat([(sigma[i:i + chunk] * fields[i:i + chunk]).double().sum(1)
                          for i in range(0, sigma.shape[0], chunk)])
        tot = self.draw_abs_totals().repeat_interleave(sigma.shape[0] // self.D)
        return (0.5 * (1.0 - quad / tot)).clamp(0.0, 1.0)   # as SignedGraph's: a fraction

    def to(self, device=None, dtype=None):
        if (device is None or torch.device(device) == self.device) and \
                (dtype is None or dtype == self.dtype):
            return self
        raise DeepglassError("a draw-batched graph is built where it runs; build the draws "
                             "on the target device")


def solve_draws(graphs: list[SignedGraph], starts: list[np.ndarray], *, gamma: float = 0.9,
                decay: float | None = None, threshold: str = "block",
                max_sweeps: int = 100_000, sparse_ratio: float = 0.0005, tol: float = 1e-5,
                callback=None, engine: str = "matrix-free",
                threads: int | None = None) -> list[dict]:
    """Descend every draw from its own start gauges, all draws in one batch.

    Parameters
    ----------
    graphs : list of SignedGraph
        The draws (same nodes and block layout, one device and dtype).
    starts : list of ndarray int8 (r, n)
        Start gauges per draw (the same count ``r`` for every draw).
    engine : {"matrix-free"}
        Only the matrix-free engine batches draws (the compiled one runs one
        graph's stencils); other options as :func:`deepglass.solve.descent.descent`.
    threads : int, optional
        Torch threads on the CPU (default: the current count), used where one
        draw has >= 5 * 10^7 edges, else one thread, as
        :func:`deepglass.solve.frustration` runs one draw (small operators lose
        to thread synchronization, badly on a busy machine: a batch of four
        ResNet-18 3x32x32 draws on two threads of a shared 2-core machine took
        5.6x one thread's time per draw).

    Returns
    -------
    list of dict
        Per draw: ``sigmas`` (r, n) int8, ``energies`` (r,), ``local_min`` (r,),
        ``sweeps`` (of the batch) and ``flips`` (r,).
    """
    from .descent import descent

    if engine != "matrix-free":
        raise DeepglassError(f"draws run as one batch with the matrix-free engine, not {engine!r}")
    if len(graphs) != len(starts) or not graphs:
        raise DeepglassError("one array of start gauges per draw is needed")
    r = {np.asarray(s).shape[0] for s in starts}
    if len(r) != 1:
        raise DeepglassError("every draw needs the same number of start gauges")
    r = r.pop()
    g = graphs[0] if len(graphs) == 1 else DrawBatchedGraph(graphs)
    s0 = torch.from_numpy(np.concatenate([np.asarray(s, np.int8) for s in starts]))
    before = torch.get_num_threads()
    if g.device.type == "cpu":
        big = graphs[0].n_edges >= 50_000_000
        torch.set_num_threads(max(1, threads or before) if big else 1)
    try:
        st = descent(g, s0, gamma=gamma, decay=decay, threshold=threshold,
                     engine="matrix-free", max_sweeps=max_sweeps, sparse_ratio=sparse_ratio,
                     tol=tol, callback=callback)
    finally:
        torch.set_num_threads(before)
    e = g.energy_from_fields(st.sigma, st.fields).cpu().numpy()
    thr = tol * g.abs_row_sums()
    thr = thr[None] if thr.ndim == 1 else thr
    local = np.concatenate([
        (~((st.sigma[i:i + 1] * st.fields[i:i + 1] + thr[i // r if thr.shape[0] > 1 else 0])
           < 0).any(1)).cpu().numpy() for i in range(st.sigma.shape[0])])
    sig = st.sigma.to(torch.int8).cpu().numpy()
    return [{"sigmas": sig[d * r:(d + 1) * r], "energies": e[d * r:(d + 1) * r],
             "local_min": local[d * r:(d + 1) * r], "sweeps": st.sweeps,
             "flips": st.flips[d * r:(d + 1) * r]} for d in range(len(graphs))]

"""The neuron-level signed DAG of a network, as data (SPEC §1).

A :class:`SignedGraph` is a list of *node blocks* (the input and the output of
each linear-operator layer, in topological order) and a list of *edge blocks*
(:mod:`deepglass.graph.blocks`).  Node ``i`` of the whole graph is element
``i - offset`` (C order) of its block.  The weighted adjacency ``A`` is never
materialized: every product goes through the edge blocks, batched over a
leading replica dimension.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import DeepglassError, TooLargeError
from .blocks import EdgeBlock, NodeBlock
from .outputs import field_name

__all__ = ["NodeBlock", "SignedGraph", "EXPLICIT_EDGE_LIMIT"]

#: Largest number of edges :meth:`SignedGraph.to_scipy` builds without ``force``.
EXPLICIT_EDGE_LIMIT = 50_000_000


class SignedGraph:
    """The signed DAG of a neural network (SPEC §1), matrix-free.

    Build one with :meth:`from_module`; the algebra works on flat tensors of
    shape ``(n_nodes,)`` or ``(R, n_nodes)`` (``R`` replicas).

    Edge blocks may overlap only in the corner case of a residual addition whose
    shortcut starts at the very block its other branch reads (``y = f(x) + x``
    with ``f`` a single layer): the two edges ``i -> j`` are then parallel, as
    are a border node's two edges under reflect padding.  The products are
    unaffected (their weights add), and so is the ground state; but eps is a
    fraction of the edges' |weight| (SPEC §2), one edge per multiply term, and
    :meth:`to_scipy` sums parallel edges into one entry, so ``|A|`` and the
    edge count of the explicit matrix differ from the matrix-free ones there.
    The explicit solvers restate their energies on :meth:`abs_total`
    (:func:`deepglass.solve.couplings.per_multiply_term`): every method
    reports the same eps of a gauge.

    Attributes
    ----------
    node_blocks : list of NodeBlock
    edge_blocks : list of EdgeBlock
    input_shape : tuple of int
    outputs : dict of str to np.ndarray
        Every output of the network (SPEC §1b): name -> global ids of its
        neurons (C order).  One tensor output is named ``"output"``; a tuple's
        are ``"0"``, ``"1"``, ...; a dict's keep their keys.
    output_name : str
        The output that active subnetworks and near-monotonicity read (the
        first unless :meth:`select_output` chose another).
    output_index : np.ndarray
        Global ids of that output's neurons.
    dtype, device
        Of the edge blocks' tensors (float32 on the CPU by default).

    Examples
    --------
    >>> import torch.nn as nn
    >>> from deepglass.graph import SignedGraph
    >>> g = SignedGraph.from_module(nn.Sequential(nn.Linear(3, 2)), (3,))
    >>> g.n_nodes, g.n_edges
    (5, 6)
    """

    def __init__(self, node_blocks: list[NodeBlock], edge_blocks: list[EdgeBlock],
                 input_shape: Sequence[int], output_index: np.ndarray | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 meta: dict | None = None, outputs: dict[str, np.ndarray] | None = None,
                 output: str | None = None):
        self.node_blocks = node_blocks
        self.edge_blocks = edge_blocks
        self.input_shape = tuple(input_shape)
        if outputs is None:
            if output_index is None:
                raise DeepglassError("a SignedGraph needs its output nodes")
            outputs = {"output": output_index}
        self.outputs = {str(k): np.asarray(v, dtype=np.int64) for k, v in outputs.items()}
        self.output_name = next(iter(self.outputs)) if output is None else str(output)
        self.output_index = self.outputs[self.output_name]
        self.dtype = dtype
        self.device = torch.device(device)
        self.meta = dict(meta or {})
        self._abs_total = None
        self._abs_rows = None

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_module(cls, model: torch.nn.Module, input_shape, batchnorm: str = "fold",
                    pool_weight: float | None = None, dtype: torch.dtype = torch.float32,
                    device: str = "cpu", *, norm: str = "fold", gates: str = "scale",
                    capture: str = "auto", forward_kwargs: dict | None = None,
                    output: str | int | None = None) -> "SignedGraph":
        """Capture ``model`` into its signed graph (SPEC §1, §1b).

        The network is what it computes at inference: ``torch.export`` lowers
        it to core ATen ops, so a module, a functional call or a library's fused
        layer that compute the same thing give the same graph; the ``torch.fx``
        tracer is the fallback (``capture``).  The rules applied are recorded
        in ``meta["rules"]``.

        Parameters
        ----------
        model : torch.nn.Module
            A network of supported layers (see :data:`deepglass.graph.SUPPORTED`).
        input_shape : sequence of int, or a list of them
            Per-sample input shape, e.g. ``(3, 224, 224)``; one shape per input
            for a network with several inputs (one input node block each);
            ``()`` for one number per sample (a timestep of shape ``(B,)``).
        batchnorm : {"fold", "ignore"}
            ``fold`` (default) multiplies each channel's incoming edges by
            ``gamma / sqrt(var + eps)``, sign included; ``ignore`` treats batch
            norm as a positive rescaling, as the paper did.
        pool_weight : float, optional
            Weight of every pooling edge; default: an average pool's own factor
            (``1 / divisor`` per window, as PyTorch divides), a max pool's
            ``1/|kernel|`` and an adaptive pool's ``1/|window|`` (SPEC §1).
        dtype : torch.dtype
            Of the operator's tensors (a floating-point dtype; float64 for
            exact comparisons).
        device : str
            Where the operator's tensors live: ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"`` (the capture itself runs the model where its weights are).
        norm : {"fold", "ignore"}
            Per-sample norms (LayerNorm, GroupNorm, InstanceNorm): the division
            by the sample's statistics is a positive rescaling; ``fold`` folds
            the affine gain into the incoming edges, sign included.
        gates : {"scale", "error"}
            ``x * g`` with ``g >= 0`` (sigmoid / hard-sigmoid / softmax of
            another value: squeeze-excitation): ``scale`` treats the gate as a
            positive rescaling of ``x`` and leaves the gate branch out (listed in
            ``meta["left_out"]``); ``error`` refuses such networks.
        capture : {"auto", "export", "core", "fx"}
            ``torch.export`` with the fx tracer as fallback, or one of them;
            ``core`` lowers the exported program to core ATen ops even where
            every op of it has a rule (both give the same graph).
        forward_kwargs : dict, optional
            Arguments of ``forward`` held fixed (their defaults otherwise):
            numbers and flags, whose Python control flow is resolved at
            capture time, and tensors (a diffusion timestep, a style vector),
            which are constants of the graph, not inputs.
        output : str or int, optional
            The output that active subnetworks and near-monotonicity read
            (default: the first); every output is an output block regardless.

        Returns
        -------
        SignedGraph
            Matrix-free: node blocks (one per input and per linear layer's
            output), edge blocks (one per layer and per input it reads),
            ``outputs`` and ``meta`` (the rules, the branches left out).

        Raises
        ------
        DeepglassError
            For an uncapturable model, a wrong input shape, NaN weights or an
            unsupported layer (the message names the module and op, and why).

        Notes
        -----
        Algorithm: one traced forward pass (``torch.export``, or ``torch.fx``),
        then one rule per op of the program (the op table ``ATEN_OPS``); time
        O(ops + nodes), memory O(nodes + parameters): no edge is materialized.
        """
        from .trace import capture_module

        c = capture_module(model, input_shape, batchnorm=batchnorm, pool_weight=pool_weight,
                           dtype=dtype, device=device, norm=norm, gates=gates,
                           capture=capture, forward_kwargs=forward_kwargs)
        g = cls(c.node_blocks, c.edge_blocks, c.input_shape, outputs=c.outputs, dtype=c.dtype,
                device=c.device, meta=c.meta)
        return g if output is None else g.select_output(output)

    def to(self, device=None, dtype=None) -> "SignedGraph":
        """A graph whose operator tensors live on ``device`` with ``dtype``
        (``self`` where both already match, as ``torch.Tensor.to`` does, so its
        caches, such as the abs sums and the colouring, are kept)."""
        dtype = dtype or self.dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise DeepglassError(f"dtype must be a floating-point torch dtype (torch.float32, "
                                 f"torch.float64, ...), not {dtype!r}")
        if device is not None:
            from ..devices import check_device

            device = check_device(device)
        else:
            device = self.device
        if dtype == self.dtype and device == self.device:
            return self
        blocks = [b.to(device=device, dtype=dtype) for b in self.edge_blocks]
        return SignedGraph(self.node_blocks, blocks, self.input_shape, dtype=dtype,
                           device=device, meta=self.meta, outputs=self.outputs,
                           output=self.output_name)

    def replace_edge_blocks(self, blocks: list[EdgeBlock]) -> "SignedGraph":
        """The same nodes with other edge blocks (null models)."""
        return SignedGraph(self.node_blocks, blocks, self.input_shape, dtype=self.dtype,
                           device=self.device, meta=self.meta, outputs=self.outputs,
                           output=self.output_name)

    def select_output(self, output: str | int) -> "SignedGraph":
        """The same graph with ``output`` (a name, or a position among
        :attr:`outputs`) as the output that active subnetworks and
        near-monotonicity read (SPEC §1b)."""
        names = list(self.outputs)
        key = str(output)
        if key not in self.outputs and field_name(key, 0, ()) in self.outputs:
            key = field_name(key, 0, ())     # a file's own name (box.reg for box_reg)
        if key not in self.outputs:
            try:
                key = names[int(output)]
            except (ValueError, IndexError):
                raise DeepglassError(f"no output {output!r}: the network's outputs are "
                                     f"{', '.join(names)} (or their positions 0-{len(names) - 1})")
        g = SignedGraph(self.node_blocks, self.edge_blocks, self.input_shape, dtype=self.dtype,
                        device=self.device, meta=self.meta, outputs=self.outputs, output=key)
        g._abs_total, g._abs_rows = self._abs_total, self._abs_rows
        return g

    # -- sizes ----------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return self.node_blocks[-1].stop if self.node_blocks else 0

    @property
    def n_edges(self) -> int:
        """Exact edge count, by formula per block (nothing enumerated)."""
        return sum(b.n_edges() for b in self.edge_blocks)

    @property
    def n_nonzero_edges(self) -> int:
        """Edges whose weight is not exactly 0.  :attr:`n_edges` counts every
        multiply term (SPEC §1), so a pruned or masked weight or a zero
        batch-norm gain is an edge of weight 0 there (it adds nothing to the
        frustration); this count leaves them out.  Parallel edges (a border
        node read twice under reflect padding, an overlapping fold) count
        apart, as in :attr:`n_edges`; :meth:`to_scipy` sums them into one entry.
        One pass of the 0/1 operator per block, O(edges) time, O(nodes) memory."""
        total = 0
        for b in self.edge_blocks:
            p = b.nonzero_pattern().to(dtype=torch.float64)
            ones = torch.ones((1,) + b.in_shape, dtype=torch.float64, device=self.device)
            total += int(round(float(p.apply(ones, absolute=True).sum())))
        return total

    @property
    def n_params(self) -> int:
        """The weights the edge blocks are built from, counted per block: a
        layer applied at several places (one discriminator over several
        scales) counts once per use, as its edges do."""
        return sum(b.n_params() for b in self.edge_blocks)

    @property
    def input_block(self) -> NodeBlock:
        return self.node_blocks[0]

    @property
    def input_blocks(self) -> list[NodeBlock]:
        """One node block per input tensor (SPEC §1b), the first being :attr:`input_block`."""
        return [nb for nb in self.node_blocks if nb.op == "input"]

    @property
    def input_index(self) -> np.ndarray:
        """Global ids of every input neuron, input by input."""
        return np.concatenate([np.arange(nb.offset, nb.stop) for nb in self.input_blocks])

    def block_of(self, node: int) -> NodeBlock:
        """The node block that holds global node id ``node`` (O(log blocks))."""
        if isinstance(node, bool) or not isinstance(node, (int, np.integer)) or \
                not 0 <= node < self.n_nodes:
            raise DeepglassError(f"node must be an integer id in [0, {self.n_nodes}), "
                                 f"got {node!r}")
        offs = [b.offset for b in self.node_blocks]
        return self.node_blocks[int(np.searchsorted(offs, node, side="right")) - 1]

    # -- matrix-free algebra ------------------------------------------------------
    def _flat(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        x = torch.as_tensor(x)
        single = x.ndim == 1
        if single:
            x = x.unsqueeze(0)
        if x.ndim != 2 or x.shape[1] != self.n_nodes or x.shape[0] < 1:
            raise DeepglassError(f"expected a vector of {self.n_nodes} nodes (or R x n), "
                                 f"got shape {tuple(x.shape)}")
        return x.to(device=self.device, dtype=self.dtype), single

    def gather_source(self, b: EdgeBlock, x: torch.Tensor) -> torch.Tensor:
        """The source values of block ``b`` from a flat (R, n) tensor, shaped (R, *in_shape)."""
        R = x.shape[0]
        if b.src_range is not None:
            return x[:, b.src_range[0]:b.src_range[1]].reshape((R,) + b.in_shape)
        return x[:, b.src_index.reshape(-1)].reshape((R,) + b.in_shape)

    def scatter_source(self, b: EdgeBlock, out: torch.Tensor, v: torch.Tensor) -> None:
        """``out[:, sources of b] += v`` for a (R, *in_shape) tensor ``v``."""
        R = out.shape[0]
        if b.src_range is not None:
            out[:, b.src_range[0]:b.src_range[1]] += v.reshape(R, -1)
        else:
            out.index_add_(1, b.src_index.reshape(-1), v.reshape(R, -1))

    def block_forward(self, b: EdgeBlock, x: torch.Tensor, absolute: bool = False):
        """``(A_b^T x)`` for one block, on the flat vector ``x`` -> (R, dst size)."""
        return b.apply(self.gather_source(b, x), absolute).reshape(x.shape[0], -1)

    def rmatvec(self, x: torch.Tensor, absolute: bool = False) -> torch.Tensor:
        """``A^T x``: propagate along the edges (what the layers compute, linearized).

        Parameters
        ----------
        x : torch.Tensor, shape (n_nodes,) or (R, n_nodes)
            Values on the nodes, one row per replica (moved to the graph's
            device and dtype).
        absolute : bool
            ``|A|^T x`` instead (every weight by its absolute value).

        Returns
        -------
        torch.Tensor
            Same shape as ``x``.  Cost: one pass over the edge blocks,
            O(R * edges) multiply-adds, O(R * n_nodes) memory.
        """
        x, single = self._flat(x)
        y = torch.zeros_like(x)
        for b in self.edge_blocks:
            dst = self.node_blocks[b.dst]
            y[:, dst.offset:dst.stop] += self.block_forward(b, x, absolute)
        return y[0] if single else y

    def matvec(self, y: torch.Tensor, absolute: bool = False) -> torch.Tensor:
        """``A y``: pull back against the edges (``(A y)_i = sum_j A_ij y_j``).

        Parameters and cost as :meth:`rmatvec` (each block's adjoint: the
        transposed convolution of a convolution, and so on).
        """
        y, single = self._flat(y)
        x = torch.zeros_like(y)
        R = y.shape[0]
        for b in self.edge_blocks:
            dst = self.node_blocks[b.dst]
            v = b.adjoint(y[:, dst.offset:dst.stop].reshape((R,) + b.out_shape), absolute)
            self.scatter_source(b, x, v)
        return x[0] if single else x

    def sym_matvec(self, x: torch.Tensor, absolute: bool = False) -> torch.Tensor:
        """``As x = (A + A^T) x`` (``|As| x`` with ``absolute``).

        Both directions accumulate into one (R, n) output: besides it, only one
        block's temporaries are alive at a time (at R = 80 on AlexNet every
        (R, n) float32 buffer is 0.23 GB)."""
        x, single = self._flat(x)
        out = torch.zeros_like(x)
        R = x.shape[0]
        for b in self.edge_blocks:
            dst = self.node_blocks[b.dst]
            out[:, dst.offset:dst.stop] += self.block_forward(b, x, absolute)
            v = b.adjoint(x[:, dst.offset:dst.stop].reshape((R,) + b.out_shape), absolute)
            self.scatter_source(b, out, v)
            del v
        return out[0] if single else out

    def _spins(self, sigma: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``_flat`` for a gauge: every entry must be +1 or -1."""
        s, single = self._flat(sigma)
        bad = s.abs() != 1
        if bool(bad.any()):
            raise DeepglassError(f"sigma must hold spins +1 or -1; it has {int(bad.sum())} other "
                                 f"entries (e.g. {float(s[bad][0]):g})")
        return s, single

    def local_fields(self, sigma: torch.Tensor) -> torch.Tensor:
        """``h = sigma * (As sigma)`` (SPEC §2): flipping node i changes
        ``sigma^T As sigma`` by ``-4 h_i``."""
        s, single = self._spins(sigma)
        h = s * self.sym_matvec(s)
        return h[0] if single else h

    def abs_row_sums(self) -> torch.Tensor:
        """Per-node ``sum_j |As|_ij`` (cached)."""
        if self._abs_rows is None:
            ones = torch.ones(self.n_nodes, dtype=self.dtype, device=self.device)
            self._abs_rows = self.sym_matvec(ones, absolute=True)
        return self._abs_rows

    def abs_total(self) -> float:
        """The normalizer ``1^T |As| 1 = 2 sum |A_ij|`` (float64 accumulation)."""
        if self._abs_total is None:
            self._abs_total = 2.0 * sum(b.abs_sum() for b in self.edge_blocks)
        return self._abs_total

    def energy(self, sigma: torch.Tensor) -> torch.Tensor:
        """``eps(sigma) = (1 - sigma^T As sigma / 1^T|As|1) / 2`` per replica (SPEC §2).

        The weighted fraction of frustrated edges along the gauge ``sigma``:
        0 for a structurally balanced partition, 1/2 on average for a random one.

        Parameters
        ----------
        sigma : torch.Tensor, shape (n_nodes,) or (R, n_nodes)
            Spins +1 / -1 (one gauge per row).

        Returns
        -------
        torch.Tensor
            A float64 scalar, or shape (R,).

        Raises
        ------
        DeepglassError
            For a wrong shape or an entry other than +1 / -1.
        """
        s, single = self._spins(sigma)
        e = self.energy_from_fields(s, self.sym_matvec(s))
        return e[0] if single else e

    def energy_from_fields(self, sigma: torch.Tensor, fields: torch.Tensor,
                           chunk: int = 8) -> torch.Tensor:
        """``eps`` per replica from gauges (R, n) and their fields ``As sigma``
        (float64 accumulation, ``chunk`` replicas at a time to bound memory)."""
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise DeepglassError(f"chunk must be an integer >= 1, got {chunk!r}")
        quad = torch.cat([(sigma[i:i + chunk] * fields[i:i + chunk]).double().sum(1)
                          for i in range(0, sigma.shape[0], chunk)])
        # eps is a fraction of |weight| (SPEC §2): float32 fields put a balanced
        # graph's sigma^T As sigma a rounding above the total, never a true value
        return (0.5 * (1.0 - quad / self.abs_total())).clamp(0.0, 1.0)

    def block_abs_sums(self) -> np.ndarray:
        """``sum |A_b|`` per edge block."""
        return np.array([b.abs_sum() for b in self.edge_blocks])

    # -- structure ------------------------------------------------------------------
    def block_adjacency(self) -> list[set[int]]:
        """For each node block, the node blocks it shares an edge with."""
        adj = [set() for _ in self.node_blocks]
        for b in self.edge_blocks:
            for s in b.src_blocks:
                adj[s].add(b.dst)
                adj[b.dst].add(s)
        return adj

    def coloring(self) -> list[list[int]]:
        """Colour classes of node blocks: blocks of one class share no edge.

        Greedy colouring (largest-first, networkx) of the block adjacency graph;
        a plain feed-forward chain needs two colours.  All nodes of one class can
        be updated at once in parallel (SPEC §2).
        """
        import networkx as nx

        G = nx.Graph()
        G.add_nodes_from(range(len(self.node_blocks)))
        for i, nb in enumerate(self.block_adjacency()):
            G.add_edges_from((i, j) for j in nb)
        col = nx.coloring.greedy_color(G, strategy="largest_first")
        classes: dict[int, list[int]] = {}
        for blk, c in sorted(col.items()):
            classes.setdefault(c, []).append(blk)
        return [classes[c] for c in sorted(classes)]

    def in_blocks(self, dst: int) -> list[EdgeBlock]:
        return [b for b in self.edge_blocks if b.dst == dst]

    def out_blocks(self, src: int) -> list[EdgeBlock]:
        return [b for b in self.edge_blocks if src in b.src_blocks]

    # -- explicit forms (small graphs) ---------------------------------------------
    def explicit_bytes(self) -> int:
        """Memory an explicit COO/CSR build needs (int64 indices + float64 weights)."""
        return 24 * self.n_edges + 8 * (self.n_nodes + 1)

    def _check_explicit(self, limit: int | None) -> None:
        limit = EXPLICIT_EDGE_LIMIT if limit is None else limit
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
            raise DeepglassError(f"limit must be a non-negative integer (edges), got {limit!r}")
        if self.n_edges > limit:
            raise TooLargeError(
                f"the graph has {self.n_edges:,} edges; an explicit matrix would need about "
                f"{self.explicit_bytes() / 2**30:.1f} GiB (limit {limit:,} edges); use the "
                "matrix-free operator or pass a larger limit")

    def edge_list(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All edges as global (source, destination, weight) arrays."""
        self._check_explicit(limit)
        srcs, dsts, ws = [], [], []
        for b in self.edge_blocks:
            i, j, w = b.coo()
            if b.src_range is not None:
                gi = b.src_range[0] + i
            else:
                gi = b.src_index.reshape(-1).cpu().numpy()[i]
            srcs.append(gi)
            dsts.append(self.node_blocks[b.dst].offset + j)
            ws.append(w)
        if not srcs:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0)
        return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(ws)

    def to_scipy(self, limit: int | None = None):
        """The n x n CSR matrix of ``A`` (``A[i, j]`` = weight of edge i -> j).

        Refuses graphs above ``limit`` edges (default
        :data:`EXPLICIT_EDGE_LIMIT`) with the memory it would need.
        """
        import scipy.sparse as sp

        i, j, w = self.edge_list(limit)
        n = self.n_nodes
        A = sp.coo_matrix((w, (i, j)), shape=(n, n)).tocsr()
        A.sum_duplicates()
        return A

    def to_scipy_sym(self, limit: int | None = None):
        """The symmetric CSR ``As = A + A^T``."""
        A = self.to_scipy(limit)
        return (A + A.T).tocsr()

    def to_networkx(self, limit: int = 1_000_000):
        """A ``networkx.DiGraph`` with ``weight`` and ``sign`` edge attributes and
        each node's ``block`` (small graphs only)."""
        import networkx as nx

        i, j, w = self.edge_list(limit)
        G = nx.DiGraph()
        for b in self.node_blocks:
            G.add_nodes_from(range(b.offset, b.stop), block=b.name)
        G.add_weighted_edges_from(zip(i.tolist(), j.tolist(), w.tolist()))
        for u, v, d in G.edges(data=True):
            d["sign"] = 1 if d["weight"] > 0 else (-1 if d["weight"] < 0 else 0)
        return G

    # -- description ----------------------------------------------------------------
    def summary(self) -> list[dict]:
        """One row per node block: nodes, incoming edges, parameters."""
        rows = []
        for nb in self.node_blocks:
            ins = self.in_blocks(nb.index)
            rows.append({
                "block": nb.name,
                "op": nb.op,
                "shape": "x".join(map(str, nb.shape)) or "()",
                "nodes": nb.size,
                "edges": sum(b.n_edges() for b in ins),
                "params": sum(b.n_params() for b in ins),
                "kinds": "+".join(b.describe() for b in ins),
            })
        return rows

    def describe(self) -> dict:
        """Counts as a JSON-friendly dict: ``nodes``, ``edges``, ``params``, ``blocks``,
        the inputs and outputs, and the capture rules applied (SPEC §1b)."""
        d = {"nodes": self.n_nodes, "edges": self.n_edges, "params": self.n_params,
             "input_shape": list(self.input_shape), "blocks": self.summary(),
             "outputs": {k: int(len(v)) for k, v in self.outputs.items()},
             "output": self.output_name}
        for key in ("model", "rules", "inputs", "gates", "left_out"):
            if key in self.meta:
                d[key] = self.meta[key]
        return d

    def __repr__(self) -> str:
        return (f"SignedGraph({len(self.node_blocks)} node blocks, {self.n_nodes:,} nodes, "
                f"{self.n_edges:,} edges)")

"""Null models of a network's weights and of its partial order (SPEC §3, §5; paper 000).

================  ============================================================
``N1``            within each conv / dense layer, the entries of its weight
                  tensor permuted at random: a convolution stays a convolution
                  (every instance of a kernel entry in the Toeplitz matrix
                  moves together)
``N2``            all conv and dense *edge* weights pooled and dealt out at
                  random over the same edge positions: same topology, no
                  weight sharing
``N3-xavier``     conv / dense weights redrawn, Xavier (Glorot) uniform
``N3-he``         conv / dense weights redrawn, He (Kaiming) normal, fan-in
``random-order``  the real weights, with a uniformly random partial order
                  ``(sigma_in, sigma_out)`` in place of the frustration gauge
                  (near-monotonicity's null of the order, SPEC §5)
================  ============================================================

Pooling edges (and identity shortcuts) never change.  :func:`null_model` takes
an ``nn.Module`` (and returns a modified copy, or for N2 the null graph) or a
:class:`~deepglass.graph.SignedGraph` (and returns a new graph).

**The registry.**  Every null model of the package, including near-monotonicity's
``random-order`` (a null of the partial order, not of the weights: SPEC §5), is
one :class:`NullModel` record in :data:`NULLS`: name, aliases, its transform of
an ``nn.Module``, of a ``SignedGraph`` or of the gauge, its colour in figures
and a one-line description.  Experiments, figures and the command line read
names, colours and transforms from here only; :func:`resolve_nulls` parses a
comma list.  ``"N3"`` names both initializations, ``N3-xavier`` and ``N3-he``
(SPEC §3: "Xavier uniform or He normal (both)"; paper 000 draws "from either
uniform (Xavier) or normal (He) distributions" and shows both), in every
experiment.  Adding a null model is one record here.

Randomness is keyed, not sequential: layer ``name`` of null ``kind`` with seed
``s`` draws from a generator seeded by a hash of ``(kind, s, name)``.  So the
same seed gives the same null whatever else happens in the process, and N1 / N3
of a module and of its graph agree layer by layer (the graph's edge blocks
carry their module's name).

N2 at scale.  AlexNet has 0.66 B edges, so N2 keeps no per-edge index list:
convolutions become :class:`~deepglass.graph.unshared.UnsharedConvBlock` (one
stored weight per edge, laid out like the unfolded convolution) and the pooled
weights are permuted by :func:`deepglass.experiments.shuffle.shuffled_pool`
(Rao-Sandelius bucket shuffle, no index list); memory is the flat buffer plus
the new blocks (about 2 x 4 bytes per edge at float32).
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from numba import njit
from torch import nn

from ..errors import DeepglassError, TooLargeError
from ..graph import ConvBlock, DenseBlock, EdgeBlock, SignedGraph
from ..graph.unshared import UnsharedConvBlock
from .shuffle import shuffled_pool

__all__ = ["null_model", "NullModel", "NULLS", "NULL_GROUPS", "NULL_KINDS", "REAL_COLOR",
           "get_null", "resolve_nulls"]

_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)
#: weights per piece when pooling edge weights (bounds the per-piece label sort)
_PIECE = 1 << 22


def _generator(kind: str, seed: int, name: str, device="cpu") -> torch.Generator:
    """The generator of one layer of one null: keyed by (kind, seed, layer name),
    on ``device`` (the weights' own: draws are made where they are used, so a
    device draws its nulls without a host round trip; a device's stream is
    its own, so the same seed draws another null there than on the CPU)."""
    digest = hashlib.blake2b(f"{kind}|{int(seed)}|{name}".encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(
        int.from_bytes(digest, "little") & (2**63 - 1))


def _permuted(w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The entries of ``w`` in a uniformly random order, same shape (drawn on
    the generator's device)."""
    perm = torch.randperm(w.numel(), generator=g, device=g.device).to(w.device)
    return w.detach().reshape(-1)[perm].reshape(w.shape).clone()


def _xavier(w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A fresh Xavier (Glorot) uniform draw shaped like ``w``: ``U(-a, a)``,
    ``a = sqrt(6 / (fan_in + fan_out))``, PyTorch's fans (``fan_in = size(1) *
    prod(kernel)``, ``fan_out = size(0) * prod(kernel)``)."""
    new = torch.empty(w.shape, dtype=w.dtype, device=g.device)
    nn.init.xavier_uniform_(new, gain=1.0, generator=g)
    return new.to(w.device)


def _he(w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A fresh He (Kaiming) normal draw shaped like ``w``: ``N(0, 2 / fan_in)``."""
    new = torch.empty(w.shape, dtype=w.dtype, device=g.device)
    nn.init.kaiming_normal_(new, mode="fan_in", nonlinearity="relu", generator=g)
    return new.to(w.device)


# ---- nulls of a module -----------------------------------------------------------------
def _module_layers(model: nn.Module, seed: int, *, kind: str, draw, fresh: bool) -> nn.Module:
    """A copy of ``model`` whose conv / linear weights are ``draw(w, generator)``
    layer by layer; ``fresh`` (a re-initialized network) also zeroes biases and
    resets batch norms.  O(parameters)."""
    if not any(isinstance(m, _WEIGHT_LAYERS) for m in model.modules()):
        raise DeepglassError(f"null model {kind} of a module redraws its nn.Conv*/nn.Linear "
                             f"weights and {type(model).__name__} has none; pass its "
                             "SignedGraph instead")
    new = copy.deepcopy(model)
    with torch.no_grad():
        for name, m in new.named_modules():
            if isinstance(m, _WEIGHT_LAYERS):
                m.weight.copy_(draw(m.weight, _generator(kind, seed, name, m.weight.device)))
                if fresh and m.bias is not None:
                    m.bias.zero_()
            elif fresh and isinstance(m, nn.modules.batchnorm._NormBase):
                m.reset_parameters()
    return new


# ---- nulls of a graph ------------------------------------------------------------------
def _with_weight(b: EdgeBlock, weight: torch.Tensor, keep_scales: bool) -> EdgeBlock:
    new = copy.copy(b)
    new.weight = weight
    new.__dict__.pop("_csr_cache", None)
    new._abs_cache = {}
    if not keep_scales:
        new.in_scale = new.out_scale = None
    return new


def _check_block(b: EdgeBlock, kind: str) -> bool:
    """Whether ``b`` carries layer weights the null changes (else it is kept)."""
    if isinstance(b, (ConvBlock, DenseBlock)):
        return True
    if kind == "N2" and isinstance(b, UnsharedConvBlock):
        return True
    if b.kind in ("pool", "identity"):
        return False
    raise DeepglassError(f"null model {kind} is defined for conv, dense, pooling and identity "
                         f"blocks; block {b.module!r} is {b.kind!r}")


def _tagged(graph: SignedGraph, blocks: list[EdgeBlock], kind: str, seed: int) -> SignedGraph:
    new = graph.replace_edge_blocks(blocks)
    new.meta.update(null=kind, null_seed=int(seed))
    return new


def _graph_layers(graph: SignedGraph, seed: int, *, kind: str, draw, fresh: bool) -> SignedGraph:
    """The graph with each conv / dense block's weights ``draw(w, generator)``
    (generators keyed by the block's module name, as the module null's layers).
    ``fresh``: a new layer, so folded batch norm and scales are dropped; else
    the block's own weights (folded batch norm included) and scales are kept."""
    blocks = []
    for b in graph.edge_blocks:
        if _check_block(b, kind):
            g = _generator(kind, seed, b.module, b.weight.device)
            b = _with_weight(b, draw(b.weight, g), keep_scales=not fresh)
        blocks.append(b)
    return _tagged(graph, blocks, kind, seed)


def _graph_n2(graph: SignedGraph, seed: int) -> SignedGraph:
    """N2: all conv and dense edge weights pooled and dealt out uniformly at
    random over the same edges (below)."""
    weighted = [_check_block(b, "N2") for b in graph.edge_blocks]
    return _tagged(graph, _n2_blocks(graph, weighted, seed), "N2", seed)


# ---- N2: pooled edge weights over the same positions ----------------------------------
class _DenseEdges:
    """Edges of a dense block, in (out, in) order, scales applied."""

    def __init__(self, b: DenseBlock, device="cpu"):
        self.block = b
        self.dev = torch.device(device)
        out_f, in_f = b.weight.shape
        self.rows = max(1, _PIECE // max(1, in_f))
        self.n = out_f * in_f

    def sizes(self) -> list[int]:
        out_f, in_f = self.block.weight.shape
        return [(min(out_f, r + self.rows) - r) * in_f for r in range(0, out_f, self.rows)]

    def tensor_pieces(self) -> Iterator[torch.Tensor]:
        """The edge weights, a piece at a time, on the source's device."""
        b = self.block
        W = b.weight.detach().to(self.dev)
        if b.in_scale is not None:
            W = W * b.in_scale.to(self.dev).reshape(1, -1).to(W.dtype)
        if b.out_scale is not None:
            W = W * torch.broadcast_to(b.out_scale.to(self.dev),
                                       b.out_shape).reshape(-1, 1).to(W.dtype)
        for r in range(0, W.shape[0], self.rows):
            yield W[r:r + self.rows].reshape(-1)

    def pieces(self) -> Iterator[np.ndarray]:
        for w in self.tensor_pieces():
            yield w.cpu().numpy()

    def build_tensor(self, values: torch.Tensor) -> EdgeBlock:
        return _with_weight(self.block, values.reshape(self.block.weight.shape).clone(),
                            keep_scales=False)

    def build(self, values: np.ndarray) -> EdgeBlock:
        return self.build_tensor(torch.from_numpy(values))


class _ConvEdges:
    """Edges of a conv (or unshared conv) block in the unshared layout's order
    (position, output channel, input slot), in-bounds slots only, scales applied."""

    def __init__(self, b: ConvBlock | UnsharedConvBlock, device="cpu"):
        self.block = b
        self.dev = torch.device(device)
        geo = b.geometry() if isinstance(b, UnsharedConvBlock) else b
        placeholder = torch.zeros((), device=self.dev).expand(1, 1, 1)
        self.target = UnsharedConvBlock(geo, placeholder.expand(
            math.prod(b.out_shape[1:]), geo.weight.shape[0], math.prod(geo.weight.shape[1:])))
        self.mask = self.target.valid_mask()                           # (L, K) on self.dev
        self.per_pos = (self.mask.sum(1) * self.target.c_out).cpu()     # edges per position
        self.chunks = list(self.target._chunks())
        self.n = int(self.per_pos.sum())

    def sizes(self) -> list[int]:
        return [int(self.per_pos[l0:l1].sum()) for l0, l1 in self.chunks]

    def _effective(self, l0: int, l1: int) -> torch.Tensor:
        b, t = self.block, self.target
        dev = self.dev
        if isinstance(b, UnsharedConvBlock):
            w = b.edge_weight[l0:l1].to(dev)
        else:
            w = b.weight.detach().to(dev).reshape(1, t.c_out, t.k_group).expand(l1 - l0, -1, -1)
        if b.in_scale is not None:   # per source element: unfold it like the input
            s = t.patches(b.in_scale.to(dev)[None].to(w.dtype))[l0:l1, 0, :]    # (l, G*K)
            grp = torch.arange(t.c_out, device=dev) // (t.c_out // t.groups)
            w = w * s.reshape(l1 - l0, t.groups, t.k_group)[:, grp]
        if b.out_scale is not None:
            s = torch.broadcast_to(b.out_scale.to(dev), b.out_shape).reshape(t.c_out, -1)
            w = w * s.T[l0:l1, :, None].to(w.dtype)
        return w

    def tensor_pieces(self) -> Iterator[torch.Tensor]:
        """In-bounds edge weights chunk by chunk, in the order of :meth:`pieces`
        (C order over (position, output channel, slot)), on the source's device."""
        for l0, l1 in self.chunks:
            w = self._effective(l0, l1)
            yield w[self.mask[l0:l1, None, :].expand(w.shape)]

    def build_tensor(self, values: torch.Tensor) -> EdgeBlock:
        t = self.target
        store = torch.zeros((t.n_positions, t.c_out, t.k_group), dtype=values.dtype,
                            device=values.device)
        store[self.mask[:, None, :].expand(store.shape)] = values
        return UnsharedConvBlock(t.geometry(), store)

    def pieces(self) -> Iterator[np.ndarray]:
        mask = self.mask.cpu().numpy()
        for (l0, l1), m in zip(self.chunks, self.sizes()):
            w = self._effective(l0, l1)
            out = np.empty(m, dtype=torch.empty(0, dtype=w.dtype).numpy().dtype)
            _take_valid(w.cpu().numpy(), mask[l0:l1], out)
            yield out

    def build(self, values: np.ndarray) -> EdgeBlock:
        t = self.target
        store = torch.zeros((t.n_positions, t.c_out, t.k_group),
                            dtype=torch.from_numpy(values[:0]).dtype)
        _put_valid(store.numpy(), self.mask.cpu().numpy(), values)
        return UnsharedConvBlock(t.geometry(), store)


@njit(cache=True)
def _take_valid(w, mask, out):
    """``out = w[mask broadcast over axis 1]`` in C order (``w`` may be a broadcast view)."""
    p = 0
    for l in range(w.shape[0]):
        for o in range(w.shape[1]):
            for k in range(w.shape[2]):
                if mask[l, k]:
                    out[p] = w[l, o, k]
                    p += 1


@njit(cache=True)
def _put_valid(store, mask, values):
    """The inverse of :func:`_take_valid`: ``store[mask broadcast] = values``."""
    p = 0
    for l in range(store.shape[0]):
        for o in range(store.shape[1]):
            for k in range(store.shape[2]):
                if mask[l, k]:
                    store[l, o, k] = values[p]
                    p += 1


def _check_n2_memory(sources, itemsize: int) -> None:
    """Refuse an N2 build that would not fit: the pooled weights plus the new
    blocks (unshared convolutions also store their padding slots)."""
    from ..solve.greedy import available_memory_bytes

    slots = sum(s.n if isinstance(s, _DenseEdges) else
                s.target.n_positions * s.target.c_out * s.target.k_group for s in sources)
    need = itemsize * (sum(s.n for s in sources) + slots)
    have = available_memory_bytes()
    if need > 0.9 * have:
        raise TooLargeError(f"the N2 null of this graph needs about {need / 1e9:.1f} GB "
                            f"(pooled edge weights + per-edge blocks); {have / 1e9:.1f} GB "
                            "are available")


def _n2_blocks_torch(graph: SignedGraph, weighted: list[bool], seed: int) -> list[EdgeBlock]:
    """N2 where the graph lives (a device): the pooled edge weights gathered in
    one flat tensor there, permuted by ``torch.randperm`` from a device
    generator keyed like every null (:func:`_generator`), and dealt out.

    Memory on the device: the pooled weights, the permutation (int64) and the
    new blocks, about ``2 * itemsize + 8`` bytes per edge plus the padding
    slots of unshared convolutions.  A device's stream is its own: the same
    seed deals another permutation than the CPU's Rao-Sandelius shuffle."""
    dev = graph.device
    sources = {k: (_DenseEdges(b, dev) if isinstance(b, DenseBlock) else _ConvEdges(b, dev))
               for k, (b, w) in enumerate(zip(graph.edge_blocks, weighted)) if w}
    order = sorted(sources)
    n = sum(sources[k].n for k in order)
    pool = torch.empty(n, dtype=graph.dtype, device=dev)
    p = 0
    for k in order:
        for v in sources[k].tensor_pieces():
            pool[p:p + len(v)] = v
            p += len(v)
    perm = torch.randperm(n, generator=_generator("N2", seed, "|pool", dev), device=dev)
    pool = pool[perm]
    del perm
    blocks, p = list(graph.edge_blocks), 0
    for k in order:
        src = sources[k]
        blocks[k] = src.build_tensor(pool[p:p + src.n]).to(device=dev, dtype=graph.dtype)
        p += src.n
    return blocks


def _n2_blocks(graph: SignedGraph, weighted: list[bool], seed: int) -> list[EdgeBlock]:
    if graph.device.type != "cpu":
        return _n2_blocks_torch(graph, weighted, seed)
    sources = {k: (_DenseEdges(b) if isinstance(b, DenseBlock) else _ConvEdges(b))
               for k, (b, w) in enumerate(zip(graph.edge_blocks, weighted)) if w}
    order = sorted(sources)
    dtype = torch.empty(0, dtype=graph.dtype).numpy().dtype
    _check_n2_memory(sources.values(), dtype.itemsize)
    pool = shuffled_pool([sources[k] for k in order], dtype, seed)
    blocks, p = list(graph.edge_blocks), 0
    for k in order:
        src = sources[k]
        blocks[k] = src.build(pool[p:p + src.n]).to(device=graph.device, dtype=graph.dtype)
        p += src.n
    return blocks


# ---- the registry ----------------------------------------------------------------------
def _random_order(n_in: int, n_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uniformly random partial order: i.i.d. +-1 ``sigma_in`` (``n_in``) and
    ``sigma_out`` (``n_out``) from a generator seeded by ``(seed, 1)``.  O(n)."""
    rng = np.random.default_rng([int(seed), 1])
    pm = np.array([-1, 1], np.int8)
    return rng.choice(pm, int(n_in)), rng.choice(pm, int(n_out))


@dataclass(frozen=True)
class NullModel:
    """One null model: what it is called, what it changes, how it is drawn.

    A null of the *weights* has a ``graph`` transform (SPEC §3: every null of
    the weights is defined on the signed graph) and, when it keeps the layers
    of a network, a ``module`` transform (a network that still runs forward).
    A null of the *partial order* (near-monotonicity's ``random-order``, SPEC
    §5) keeps the weights and draws the gauge instead: it has only ``gauge``.

    Attributes
    ----------
    name : str
        Canonical name (the ``kind`` / ``model`` column of the tables).
    description : str
        One line, for help texts and reports.
    color : str
        Its matplotlib colour in every figure.
    aliases : tuple of str
        Other accepted names (matched case-insensitively, like ``name``).
    module : callable ``(nn.Module, seed) -> nn.Module``, optional
        A new module (the original untouched).
    graph : callable ``(SignedGraph, seed) -> SignedGraph``, optional
        A new graph on the same nodes.
    gauge : callable ``(n_in, n_out, seed) -> (sigma_in, sigma_out)``, optional
        Arrays of +-1 replacing the frustration gauge.
    """

    name: str
    description: str
    color: str
    aliases: tuple[str, ...] = ()
    module: Callable[[nn.Module, int], nn.Module] | None = None
    graph: Callable[[SignedGraph, int], SignedGraph] | None = None
    gauge: Callable[[int, int, int], tuple[np.ndarray, np.ndarray]] | None = None

    def __post_init__(self):
        if self.gauge is not None and (self.module is not None or self.graph is not None):
            raise ValueError(f"null {self.name}: a null of the gauge keeps the weights")
        if self.gauge is None and self.graph is None:
            raise ValueError(f"null {self.name}: a null of the weights needs a graph transform")

    @property
    def acts_on(self) -> str:
        """``"weights"`` or ``"gauge"``."""
        return "gauge" if self.gauge is not None else "weights"


#: every null model, in the paper's order (SPEC §3, §5)
NULLS: dict[str, NullModel] = {r.name: r for r in (
    NullModel("N1", "each conv / dense weight tensor's entries permuted (weight sharing kept)",
              "tab:blue", ("layer-permutation",),
              module=partial(_module_layers, kind="N1", draw=_permuted, fresh=False),
              graph=partial(_graph_layers, kind="N1", draw=_permuted, fresh=False)),
    NullModel("N2", "all conv and dense edge weights pooled and dealt out over the same edges "
              "(no weight sharing)", "tab:orange", ("edge-permutation",), graph=_graph_n2),
    NullModel("N3-xavier", "conv / dense weights redrawn Xavier uniform, biases 0, batch norm "
              "reset", "tab:green", ("N3-glorot", "xavier"),
              module=partial(_module_layers, kind="N3-xavier", draw=_xavier, fresh=True),
              graph=partial(_graph_layers, kind="N3-xavier", draw=_xavier, fresh=True)),
    NullModel("N3-he", "conv / dense weights redrawn He normal (fan-in), biases 0, batch norm "
              "reset", "tab:red", ("N3-kaiming", "he"),
              module=partial(_module_layers, kind="N3-he", draw=_he, fresh=True),
              graph=partial(_graph_layers, kind="N3-he", draw=_he, fresh=True)),
    NullModel("random-order", "the real weights with a uniformly random partial order "
              "(sigma_in, sigma_out) in place of the frustration gauge", "tab:purple",
              ("random-gauge", "random-partial-order"), gauge=_random_order),
)}

#: names of several nulls: ``"N3"`` is both initializations (SPEC §3)
NULL_GROUPS: dict[str, tuple[str, ...]] = {"N3": ("N3-xavier", "N3-he")}

#: the nulls of the weights (those :func:`null_model` draws), in the paper's order
NULL_KINDS: tuple[str, ...] = tuple(n for n, r in NULLS.items() if r.acts_on == "weights")

#: the real network's colour in every figure
REAL_COLOR = "black"

_NAMES = {a.lower(): r.name for r in NULLS.values() for a in (r.name, *r.aliases)}
_GROUPS = {k.lower(): k for k in NULL_GROUPS}


def _choices(allowed: Sequence[str]) -> str:
    groups = [f"{g} (= {' + '.join(m)})" for g, m in NULL_GROUPS.items()
              if all(n in allowed for n in m)]
    return ", ".join([*allowed, *groups, "all"])


def get_null(name: str) -> NullModel:
    """The record of one null model, by name or alias (case-insensitive).

    Raises
    ------
    DeepglassError
        An unknown name, or a group (``"N3"``) where one null is needed; the
        message lists the choices.

    Examples
    --------
    >>> get_null("n3-kaiming").name
    'N3-he'
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key in _NAMES:
        return NULLS[_NAMES[key]]
    if key in _GROUPS:
        members = NULL_GROUPS[_GROUPS[key]]
        raise DeepglassError(f"{name!r} names {len(members)} null models "
                             f"({', '.join(members)}); choose one of {', '.join(NULLS)}")
    raise DeepglassError(f"unknown null model {name!r}; choose from {', '.join(NULLS)}")


def resolve_nulls(nulls: str | Iterable[str] | None, *, allowed: Sequence[str] | None = None,
                  use: str = "this experiment") -> tuple[str, ...]:
    """Canonical null names from a comma list or a sequence, in the order given.

    Names and aliases match case-insensitively; ``"N3"`` stands for
    ``N3-xavier`` and ``N3-he``; ``"all"`` for every allowed null; ``""``,
    ``"none"`` and ``None`` for none; duplicates are dropped.

    Parameters
    ----------
    nulls : str, sequence of str or None
    allowed : sequence of str, optional
        The nulls the caller can run (default: every record).
    use : str
        What the caller is, for the error message.

    Raises
    ------
    DeepglassError
        One line naming the bad entry and the choices.

    Examples
    --------
    >>> resolve_nulls("n1, N3, n3-he")
    ('N1', 'N3-xavier', 'N3-he')
    """
    allowed = tuple(NULLS) if allowed is None else tuple(allowed)
    if nulls is None:
        return ()
    items = nulls.split(",") if isinstance(nulls, str) else list(nulls)
    out: list[str] = []
    for raw in items:
        name = str(raw).strip()
        key = name.lower()
        if not name or key == "none":
            continue
        if key == "all":
            names = list(allowed)
        elif key in _GROUPS:
            names = list(NULL_GROUPS[_GROUPS[key]])
        elif key in _NAMES:
            names = [_NAMES[key]]
        else:
            raise DeepglassError(f"unknown null model {name!r}; choose from {_choices(allowed)}")
        for n in names:
            if n not in allowed:
                raise DeepglassError(f"null model {name!r} does not apply to {use}; "
                                     f"choose from {_choices(allowed)}")
        out.extend(n for n in names if n not in out)
    return tuple(out)


# ---- front end -------------------------------------------------------------------------
def null_model(model_or_graph, kind: str, seed: int = 0, *, input_shape=None):
    """A null model of a network's weights (SPEC §3).

    Parameters
    ----------
    model_or_graph : torch.nn.Module or SignedGraph
        The network, or its signed graph.
    kind : {"N1", "N2", "N3-xavier", "N3-he"}
        A null of the weights in :data:`NULLS`, by name or alias
        (case-insensitive).

        - ``N1``: each conv / dense weight tensor's entries permuted at random
          (shared weights stay shared).  Of a module: the weights of its
          ``nn.Conv*`` / ``nn.Linear`` modules; biases and batch norm are kept.
          Of a graph: the block's weights, folded batch norm included,
          are permuted; source scales are kept.
        - ``N2``: the conv and dense edge weights of the whole graph (folded
          batch norm and scales included) pooled and dealt out uniformly at
          random over the same edge positions.  Always returns a graph, whose
          convolutions are :class:`~deepglass.graph.unshared.UnsharedConvBlock`.
        - ``N3-xavier``: weights redrawn from Xavier uniform, ``U(-a, a)`` with
          ``a = sqrt(6 / (fan_in + fan_out))``.
        - ``N3-he``: weights redrawn from He normal, ``N(0, 2 / fan_in)``.

          N3 fans are PyTorch's: ``fan_in = C_in/groups * prod(kernel)``,
          ``fan_out = C_out * prod(kernel)``.  Of a module: biases are set to 0
          and batch norms reset (gamma 1, beta 0, running mean 0, variance 1),
          as in a fresh network.  Of a graph: conv / dense blocks get fresh
          weights and lose folded batch norm and scales.
    seed : int
        Same seed, same null; layers draw from generators keyed by
        ``(kind, seed, layer name)``.
    input_shape : sequence of int, optional
        For N2 of a module (tracing); default ``model.default_input_shape``.

    Returns
    -------
    torch.nn.Module or SignedGraph
        For a module and N1 / N3: a new module (deep copy, attributes such as
        ``default_input_shape`` kept; the original is untouched).  For a graph,
        or N2: a new :class:`SignedGraph` on the same nodes, with
        ``meta["null"]`` and ``meta["null_seed"]``.  Pooling and identity edges
        are never changed.

    Raises
    ------
    DeepglassError
        Unknown ``kind``; N2 of a module without an input shape; a graph with
        blocks other than conv, dense, pooling and identity; an N2 build that
        would not fit in the available memory (``TooLargeError``).

    Notes
    -----
    N1 and N3 cost O(parameters).  N2 costs O(edges) time and about 2 x 4 bytes
    per edge at its peak (float32): a Rao-Sandelius shuffle without an index
    list (module docstring).  AlexNet (0.66 B edges): about 20-45 s on 2 CPU
    cores, 6 GB peak resident memory (``bench/bench_nulls.py``).

    References
    ----------
    Paper 000, Results ("null models"); C. R. Rao, Sankhya A 23 (1961) and
    M. Sandelius, Ann. Math. Stat. 33 (1962) for the bucket shuffle.

    Examples
    --------
    >>> import torch.nn as nn, deepglass
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 2))
    >>> n1 = deepglass.null_model(net, "N1", seed=1)
    >>> sorted(n1[0].weight.flatten().tolist()) == sorted(net[0].weight.flatten().tolist())
    True
    >>> g2 = deepglass.null_model(net, "n2", seed=1, input_shape=(1, 5, 5))
    >>> g2.n_edges == deepglass.SignedGraph.from_module(net, (1, 5, 5)).n_edges
    True
    """
    rec = get_null(kind)
    if rec.acts_on != "weights":
        raise DeepglassError(f"{rec.name} is a null of the partial order, not of the weights; "
                             f"null_model draws {', '.join(NULL_KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DeepglassError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(model_or_graph, SignedGraph):
        return rec.graph(model_or_graph, int(seed))
    if not isinstance(model_or_graph, nn.Module):
        raise DeepglassError("null_model expects an nn.Module or a SignedGraph, got "
                             f"{type(model_or_graph).__name__}")
    if rec.module is not None:
        return rec.module(model_or_graph, int(seed))
    # a null of the graph only (N2): trace the module first
    shape = input_shape or getattr(model_or_graph, "default_input_shape", None)
    if shape is None:
        raise DeepglassError(f"{rec.name} of a module needs input_shape (the model has no "
                             "default_input_shape)")
    graph = SignedGraph.from_module(model_or_graph, tuple(shape))
    return rec.graph(graph, int(seed))

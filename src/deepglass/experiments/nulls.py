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

Pooling edges, identity shortcuts and the fixed transforms deepglass writes as
layers (a Fourier transform, an ONNX resampling: ``EdgeBlock.fixed_weights``)
never change.  :func:`null_model` takes
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
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DeepglassError, check_seed, first_line
from ..graph import ConvBlock, DenseBlock, EdgeBlock, SignedGraph, ZeroPaddedBlock
from ..graph.blocks import ConvTransposeBlock
from ..graph.unshared import UnsharedConvBlock
from .pooled_edges import n2_blocks
from .shuffle import keyed_generator as _generator

__all__ = ["null_model", "draws_on_graph", "module_draws_miss", "NullModel", "NULLS",
           "NULL_GROUPS", "NULL_KINDS", "REAL_COLOR", "get_null", "resolve_nulls"]

_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)

def _permuted(w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The entries of ``w`` in a uniformly random order, same shape (drawn on
    the generator's device)."""
    perm = torch.randperm(w.numel(), generator=g, device=g.device).to(w.device)
    return w.detach().reshape(-1)[perm].reshape(w.shape).clone()


def _xavier(w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A fresh Xavier (Glorot) uniform draw shaped like ``w``: ``U(-a, a)``,
    ``a = sqrt(6 / (fan_in + fan_out))``, PyTorch's fans (``fan_in = size(1) *
    prod(kernel)``, ``fan_out = size(0) * prod(kernel)``).  Drawn in float32
    whatever ``w``'s dtype, so that a module's null and its float64 graph's are
    the same draw for one seed (the random stream depends on the dtype)."""
    new = torch.empty(w.shape, dtype=torch.float32, device=g.device)
    nn.init.xavier_uniform_(new, gain=1.0, generator=g)
    return new.to(device=w.device, dtype=w.dtype)


def _he(w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A fresh He (Kaiming) normal draw shaped like ``w``: ``N(0, 2 / fan_in)``
    (in float32, as :func:`_xavier`)."""
    new = torch.empty(w.shape, dtype=torch.float32, device=g.device)
    nn.init.kaiming_normal_(new, mode="fan_in", nonlinearity="relu", generator=g)
    return new.to(device=w.device, dtype=w.dtype)


# ---- nulls of a module -----------------------------------------------------------------
def _module_layers(model: nn.Module, seed: int, *, kind: str, draw, fresh: bool) -> nn.Module:
    """A copy of ``model`` whose conv / linear weights are ``draw(w, generator)``
    layer by layer; ``fresh`` (a re-initialized network) also zeroes biases and
    resets batch norms.  O(parameters)."""
    if not any(isinstance(m, _WEIGHT_LAYERS) for m in model.modules()):
        raise DeepglassError(f"null model {kind} of a module redraws its nn.Conv*/nn.Linear "
                             f"weights and {type(model).__name__} has none; pass its "
                             "SignedGraph instead")
    try:
        new = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - non-leaf tensors (old weight_norm hooks), caches
        raise UncopyableModule(f"null model {kind} of {type(model).__name__} redraws a copy "
                               f"of it, and it cannot be copied ({first_line(exc, limit=120)});"
                               " pass its SignedGraph instead") from None
    from torch.nn.utils import parametrize

    with torch.no_grad():
        for name, m in list(new.named_modules()):
            if isinstance(m, _WEIGHT_LAYERS):
                if parametrize.is_parametrized(m):
                    _plain_parameters(m)
                elif any(type(h).__name__ == "SpectralNorm"
                         for h in m._forward_pre_hooks.values()):
                    # the older hook form (torch.nn.utils.spectral_norm): a pre-hook
                    # recomputes the weight from weight_orig before each forward
                    torch.nn.utils.remove_spectral_norm(m)
                m.weight.copy_(draw(m.weight, _generator(kind, seed, name, m.weight.device)))
                if fresh and m.bias is not None:
                    m.bias.zero_()
            elif fresh and isinstance(m, nn.modules.batchnorm._NormBase):
                m.reset_parameters()
    return new


def _plain_parameters(m: nn.Module) -> None:
    """Make the parametrized tensors of ``m`` (weight norm, spectral norm, ...:
    recomputed on each read, so a copy into one is lost) plain parameters
    holding the values their parametrizations compute.  ``m`` is a copy:
    ``parametrize.remove_parametrizations`` would change the class it shares
    with the original, so the copy takes the class the parametrized one
    derives from instead."""
    values = {k: getattr(m, k).detach().clone() for k in m.parametrizations}
    m.__class__ = m.__class__.__bases__[0]
    del m._modules["parametrizations"]
    for k, v in values.items():
        m.register_parameter(k, nn.Parameter(v))


class UncopyableModule(DeepglassError):
    """A module ``copy.deepcopy`` cannot copy: its nulls are drawn on its graph."""


def draws_on_graph(model: nn.Module, graph: SignedGraph) -> bool:
    """Whether N1 / N3 of ``model`` can be drawn on its ``graph`` instead.

    True when every conv / linear layer of the module is exactly one conv or
    dense block of the graph holding its weights unchanged (no folded batch
    norm), no block carries a scale (normalization gains, gates) and nothing
    was left out of the graph: the draws are then the same layer by layer
    (generators are keyed by layer name), and a draw of the graph's blocks
    needs no retrace and happens on the device where it is solved (on a CPU
    the permutation itself dominates: AlexNet N1, 3.7 s per draw either way).
    O(parameters).
    """
    if graph.meta.get("left_out") or graph.meta.get("gates"):
        return False
    layers = {name: m for name, m in model.named_modules() if isinstance(m, _WEIGHT_LAYERS)}
    blocks: dict[str, EdgeBlock] = {}
    for b in graph.edge_blocks:
        if b.in_scale is not None or b.out_scale is not None:
            return False
        if isinstance(b, (ConvBlock, DenseBlock)) and not b.fixed_weights:
            if b.module in blocks or b.module not in layers:
                return False
            blocks[b.module] = b
    if set(blocks) != set(layers):
        return False
    for name, b in blocks.items():
        w = layers[name].weight.detach()
        if w.dtype != b.weight.dtype or w.numel() != b.weight.numel() or not torch.equal(
                w.reshape(b.weight.shape).to(b.weight.device), b.weight):
            return False
    return True


def module_draws_miss(model: nn.Module, graph: SignedGraph) -> list[str]:
    """The conv / dense / transposed-conv blocks of ``graph`` that N1 / N3 of
    ``model`` would leave as they are: layers computed by a functional call on
    a parameter (``F.conv1d(x, self.filters)``, a filterbank), which are no
    ``nn.Conv*`` / ``nn.Linear`` module to redraw.  Such a run draws its nulls
    on the graph's blocks instead (SPEC §3: every conv and dense layer).  O(blocks)."""
    layers = {name for name, m in model.named_modules() if isinstance(m, _WEIGHT_LAYERS)}
    missed = []
    for b in graph.edge_blocks:
        inner = b.inner if isinstance(b, ZeroPaddedBlock) else b
        if isinstance(inner, (ConvBlock, DenseBlock, ConvTransposeBlock)) and \
                not inner.fixed_weights and inner.module not in layers:
            missed.append(inner.module)
    return missed


# ---- nulls of a graph ------------------------------------------------------------------
def _check_block(b: EdgeBlock, kind: str) -> bool:
    """Whether ``b`` carries layer weights the null changes (else it is kept)."""
    if isinstance(b, ZeroPaddedBlock):
        if kind == "N2":  # its edges are not the wrapped layer's: not dealt over
            raise DeepglassError(f"null model N2 of a graph is not defined for block {b.module!r}: "
                                 "it reads zero padding inside its input; draw N1 or N3 instead")
        return _check_block(b.inner, kind)
    if b.fixed_weights:
        return False    # fixed weights (pooling, upsampling, a transform), never changed (SPEC §3)
    if isinstance(b, (ConvBlock, DenseBlock)):
        return True
    if kind == "N2" and isinstance(b, UnsharedConvBlock):
        return True
    if isinstance(b, ConvTransposeBlock):
        return True
    raise DeepglassError(f"null model {kind} is defined for conv, transposed conv, dense "
                         f"blocks and blocks of fixed weights (pooling, upsampling, identity); "
                         f"block {b.module!r} is {b.kind!r} (a block class whose weights the "
                         "architecture fixes says so with fixed_weights = True)")


def check_n2(graph: SignedGraph) -> None:
    """Refuse, before any draw, a graph whose N2 null is not defined (a block
    that carries no layer weights N2 can deal over, or reads padding)."""
    for b in graph.edge_blocks:
        _check_block(b, "N2")


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
            inner = b.inner if isinstance(b, ZeroPaddedBlock) else b
            g = _generator(kind, seed, inner.module, inner.weight.device)
            new = inner.with_weight(draw(inner.weight, g), keep_scales=not fresh)
            b = ZeroPaddedBlock(new, b.src_mask > 0) if inner is not b else new
        blocks.append(b)
    return _tagged(graph, blocks, kind, seed)


def _graph_n2(graph: SignedGraph, seed: int) -> SignedGraph:
    """N2: all conv and dense edge weights pooled and dealt out uniformly at
    random over the same edges (below)."""
    weighted = [_check_block(b, "N2") for b in graph.edge_blocks]
    return _tagged(graph, n2_blocks(graph, weighted, seed), "N2", seed)


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
                             f"({', '.join(members)}); choose one of them")
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
        or N2: a new :class:`SignedGraph` on the same nodes (N2 of a module: on
        the device of its parameters), with ``meta["null"]`` and
        ``meta["null_seed"]``.  Pooling and identity edges
        are never changed.

    Raises
    ------
    DeepglassError
        Unknown ``kind``; N2 of a module without an input shape; a block kind
        the null cannot redraw (N2: a zero-padded block); an N2 build that
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
    seed = check_seed(seed)
    if isinstance(model_or_graph, SignedGraph):
        return rec.graph(model_or_graph, seed)
    if not isinstance(model_or_graph, nn.Module):
        raise DeepglassError("null_model expects an nn.Module or a SignedGraph, got "
                             f"{type(model_or_graph).__name__}")
    if rec.module is not None:
        return rec.module(model_or_graph, seed)
    # a null of the graph only (N2): trace the module first
    shape = input_shape if input_shape is not None else \
            getattr(model_or_graph, "default_input_shape", None)
    if shape is None:
        raise DeepglassError(f"{rec.name} of a module needs input_shape (the model has no "
                             "default_input_shape)")
    # on the module's device, as N1 and N3 of a module stay where its parameters are
    param = next(model_or_graph.parameters(), None)
    device = param.device if param is not None else "cpu"
    graph = SignedGraph.from_module(model_or_graph, tuple(shape), device=device)
    return rec.graph(graph, seed)

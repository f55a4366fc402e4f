"""Memory and time estimates of the descent engines, and the engine choice (SPEC §2).

The descent (:mod:`deepglass.solve.descent`) has two engines: ``"compiled"``
(numba, one replica per thread, CPU only) and ``"matrix-free"`` (batched layer
operators, CPU or GPU).  What each costs depends on the graph in ways a user
cannot see: the compiled engine runs convolutions and dense layers as stencils
(:func:`deepglass.solve.compiled_descent.stencil_kind`) but holds every other
edge block (pooling, identity shortcuts, sources scaled per position, grouped
convolutions of a channel shuffle, ...) as an explicit symmetric CSR, and
*building* that CSR peaks at about :data:`CSR_BUILD_BYTES` bytes per edge.  A
network whose big layers fall back to CSR then needs many times the memory
of its stencils.  The matrix-free engine's time is its operator passes
(:func:`operator_seconds`, a model per block kind) times the sweeps its
dynamics need, which only a coarse power law follows.

The functions here are pure (a graph and a replica count in, bytes or seconds
out), so that a memory check can compare them with a budget:

- :func:`compiled_bytes`, :func:`matrix_free_bytes`: peak resident bytes of
  one descent beyond the graph itself;
- :func:`compiled_seconds`, :func:`matrix_free_seconds`, :func:`operator_seconds`:
  time models, constants fitted on 2 AVX2 cores (``bench/bench_engines.py``);
- :func:`engine_estimates`: both, per engine;
- :func:`choose_engine`: ``"auto"`` picks the faster estimate among the
  engines that fit the budget; a named engine is checked against it and
  refused with a one-line :class:`~deepglass.errors.TooLargeError` that gives
  the estimate and what to change.

Measured against these estimates (``bench/bench_engines.py``: peak resident
memory beyond the graph, each engine in a fresh process, 2 cores): measured /
estimated 1.49 and 0.91 (compiled, matrix-free) on LeNet at 80 replicas, 0.83
and 1.15 on ResNet-18 3x32x32 at 16, 0.83 and 1.23 on ResNet-18 3x224x224 at 1, 1.00 and 1.07 on AlexNet at 1 (0.84 and
0.86 GB), 1.12 for the compiled engine on a 1.1 B-edge 1-d CNN (0.39 GB: its
batch-normed sources fold into the stencils' weights; before they were 134.5 M
edges of CSR and ~19.5 GB, and the matrix-free engine ran, 1.06), 0.98 for it on
a 1.9 B-edge 3-d CNN (2.4 GB), 0.77-0.88 on GoogLeNet at 8 and ShuffleNet-V2
at 16 replicas (convolutions of concatenations and shuffles as stencils per part).

Times (the same benchmark, solver seconds against the estimate, 19 cases per
engine: every zoo net but GoogLeNet-BVLC, ResNet-18 at 32, 64 and 224, the 1-d
and 3-d CNNs): 0.66-1.75 for the compiled engine and 0.56-1.73 for the
matrix-free one, 31 of 38 within 1.5x (fitted on these runs; the first fit, on
13 of them, put the compiled engine's other six at 1.26-2.77).  ``auto`` picked
the faster engine in all 19 cases (the compiled one, 2.5-20x faster; the earlier
model, 2-20x low for the matrix-free engine, had picked it for ShuffleNet-V1:
51 s instead of 19 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..devices import check_device
from ..errors import DeepglassError, TooLargeError
from ..graph import SignedGraph
from ..graph.blocks.conv import MAX_COLUMNS, ConvBlock
from ..graph.unshared import UnsharedConvBlock, UnsharedConvTransposeBlock

__all__ = ["ENGINES", "check_engine", "check_device", "batches_draws", "csr_edges", "compiled_bytes", "matrix_free_bytes",
           "compiled_seconds", "matrix_free_seconds", "operator_seconds", "EngineEstimate", "engine_estimates",
           "choose_engine", "CSR_BUILD_BYTES", "draw_batch_bytes", "draws_per_batch",
           "check_fits"]

ENGINES = ("auto", "compiled", "matrix-free")

#: most edge contributions one sparse update of the matrix-free descent
#: materializes at once (~40 bytes each with their indices): bounds memory when
#: many replicas flip many nodes (:mod:`deepglass.solve.descent` reads it)
SPARSE_CHUNK = 1 << 22

#: peak bytes per edge while the compiled engine builds the CSR of its
#: non-stencil blocks (COO triples in float64/int64, their global indices, both
#: directions concatenated, SciPy's conversion): 141 measured on a 12.7 M-edge
#: CSR (a 1-d CNN whose layers read batch-normed sources), 24 held afterwards
CSR_BUILD_BYTES = 144
#: bytes per stored CSR entry once built (float64 data, int32/int64 indices): two per edge
CSR_HELD_BYTES = 24
#: below this estimated compiled time ``auto`` takes the compiled engine outright
SMALL_SECONDS = 0.5
#: fraction of the available memory an engine may plan to use
MEMORY_FRACTION = 0.8

# time model (seconds, 2 AVX2 cores): constants fitted to the solver times of
# bench/bench_engines.py's cases (the zoo, ResNet-18 at 32, 64 and 224, the 1-d
# and 3-d CNNs; 19 runs per engine)
_LAYOUT_PARAM_S = 1.1e-8       # compiled: per stencil weight laid out (two copies)
_LAYOUT_CSR_S = 5.7e-7         # compiled: per CSR entry (two per edge): built, then read
_KERNEL_UPDATE_S = 8.5e-10     # compiled: per stencil field update, one thread
_KERNEL_CACHE = 0.031          # ... and that much more per doubling of n beyond 2e5 nodes
_KERNEL_NODE_S = 2.05e-7       # ... per node (its flips' bookkeeping and the sweeps' scans)
_FIELD_PASSES = 5.9            # compiled: operator passes (fields, check, normalizers)
_COMPILED_FIXED_S = 3e-3
# matrix-free: operator passes ~ _MF_PASSES (R n)^_MF_PASS_EXP; the number of
# sweeps is set by the dynamics (36-459 measured), which this power law only
# follows on average (measured / modelled 0.56-1.73)
_MF_PASSES = 20.2
_MF_PASS_EXP = 0.206
# ... but an unshared convolution (an N2 draw's) reads only the weights of its
# nonzero inputs, so the late sweeps' few flips cost it little: over a
# descent it costs this share of its full passes, a power law in its edges
# times replicas fitted on N2 draws of LeNet (1, 16, 80 replicas), the digits
# CNN, ResNet-18 (3x32 at 1 and 16, 3x64 at 8) and AlexNet (1, 8): a share of
# 0.06-0.07 at 5e8-5e9 edges x replicas, 0.5-0.7 at 6e6-3e7
_MF_UNSHARED_SHARE = 499.0
_MF_UNSHARED_EXP = -0.41


def _replicas(n: int) -> str:
    return f"{n} replica" + ("" if int(n) == 1 else "s")


def check_engine(engine: str, method: str = "descent", device=None) -> str:
    """Validate a user's ``engine`` (CLI ``--engine``) for ``method`` (and
    ``device``, where given).

    Raises
    ------
    DeepglassError
        One line: an unknown engine, a named engine with a method other
        than ``descent``, or the compiled engine (CPU only) with a device.
    """
    if engine not in ENGINES:
        raise DeepglassError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine != "auto" and method not in ("descent", "auto"):
        raise DeepglassError(f"--engine {engine} applies to --method descent, not {method!r}")
    if engine == "compiled" and device is not None and check_device(device).type != "cpu":
        raise DeepglassError("--engine compiled runs on the CPU; use --engine matrix-free "
                             "(or auto) with a device")
    return engine


def _itemsize(graph: SignedGraph) -> int:
    return torch.empty(0, dtype=graph.dtype).element_size()


def csr_edges(graph: SignedGraph) -> int:
    """Edges the compiled engine holds as explicit CSR (not stencils)."""
    from .stencils import ring_edges, stencil_kind

    # (a stencil reading its sources through a padding holds the padding's edges as CSR)
    return sum(b.n_edges() if stencil_kind(graph, b) is None else ring_edges(graph, b)
               for b in graph.edge_blocks)


def _stencil_params(graph: SignedGraph) -> int:
    from .stencils import stencil_kind, stencil_weights

    return sum(stencil_weights(b) for b in graph.edge_blocks
               if stencil_kind(graph, b) is not None)


def _normalizer_bytes(graph: SignedGraph, replicas: int) -> tuple[int, int]:
    """(held, transient) bytes of the normalizers every run computes: the
    blocks' cached ``|W|`` (graph dtype, held; for the tolerances ``|As| 1``;
    none for unshared convolutions)
    and the convolutions' reordered weights, and ``sum |A_b|`` in float64,
    one block at a time (its weights cast to float64 and their absolute
    values: 16 bytes per weight of the largest block, and that block's
    float64 temporaries, :func:`_block_temporaries`) while two (R, n) tensors
    are alive; the final frustrated weights take as much."""
    item = _itemsize(graph)
    # + one copy of the convolution weights: the CPU's convolutions keep them
    # reordered to their blocked layout (measured on ResNet-18: ~1x)
    convs = sum(b.n_params() for b in graph.edge_blocks
                if getattr(b, "weight", None) is not None and b.weight.ndim >= 3)
    # unshared convolutions (N2 draws) take |W| per element or per chunk and
    # sum it chunk by chunk: no copy of their weights
    cached = [b.n_params() for b in graph.edge_blocks if not _is_unshared(b)]
    held = item * (sum(cached) + convs)
    # sum |A_b| and the final frustrated weights evaluate one block at a time
    # in float64 (native CPU convolutions: their columns, in pieces)
    f64 = max((_block_temporaries(graph, b, 1, 8, torch.float64) for b in graph.edge_blocks),
              default=0)
    return held, 16 * max(cached, default=0) + 2 * int(replicas) * graph.n_nodes * item + f64


# operator cost per edge block and pass (forward and adjoint, seconds on 2 AVX2
# cores; bench/bench_engines.py): a fixed cost per call; for convolutions a
# cost per edge and replica (the products), per value read or written, per
# weight (reordered per call) and per unfolded input (im2col of strided ones),
# and per edge and replica for depthwise ones (memory-bound); for dense layers
# per weight (read once) and per edge and replica; other blocks per edge and
# replica; and per node and replica for the pass's own sums
_OP_CALL_S = 1.2e-4
_OP_CONV_S = (2.0e-11, 6.8e-10, 5.2e-10, 1.5e-9, 2.5e-10)
_OP_DENSE_S = (2.7e-10, 2.4e-11)
_OP_OTHER_S = 1.25e-9
_OP_NODE_S = 2.7e-9
_OP_THREADS = 2


def _block_seconds(b, R: int) -> float:
    """Seconds of one forward and adjoint evaluation of edge block ``b`` for ``R``
    replicas on :data:`_OP_THREADS` threads, less the fixed cost per call."""
    from ..graph.blocks.conv import ConvBlock, ConvTransposeBlock
    from ..graph.blocks.dense import DenseBlock

    layer = getattr(b, "inner", b)
    E = b.n_edges()
    if isinstance(layer, (ConvBlock, ConvTransposeBlock)):
        conv = layer if isinstance(layer, ConvBlock) else layer.conv
        w = conv.weight
        cin_g, cout_g = w.shape[1], w.shape[0] // conv.groups
        io = R * (b.in_size + b.out_size)
        cols = 0
        if max(conv.stride) > 1:
            cols = R * w[0].numel() * math.prod(conv.out_shape[1:]) * conv.groups
        a, rw, p, c, dw = _OP_CONV_S
        products = (a + (dw if min(cin_g, cout_g) == 1 else 0.0)) * E * R
        return products + rw * io + p * w.numel() + c * cols
    if isinstance(layer, DenseBlock):
        return _OP_DENSE_S[0] * E + _OP_DENSE_S[1] * E * R
    return _OP_OTHER_S * E * R


def operator_seconds(graph: SignedGraph, replicas: int, threads: int | None = None,
                     unshared_share: float = 1.0) -> float:
    """Coarse seconds of one ``As x`` (every edge block forward and back) for
    ``replicas`` replicas on the CPU with torch's ``threads``: a model fitted
    per block kind (measured / modelled 0.74-1.28 on the zoo, the 1-d and 3-d
    CNNs of ``bench/bench_engines.py``), unshared convolutions' work times
    ``unshared_share`` (the matrix-free descent's, :func:`matrix_free_seconds`).
    O(edge blocks)."""
    threads = torch.get_num_threads() if threads is None else int(threads)
    R = int(replicas)
    work = sum(_block_seconds(b, R) * (unshared_share if _is_unshared(b) else 1.0)
               for b in graph.edge_blocks) + _OP_NODE_S * R * graph.n_nodes
    return _OP_CALL_S * len(graph.edge_blocks) + work * _OP_THREADS / max(1, threads)


def compiled_bytes(graph: SignedGraph, replicas: int, threads: int | None = None) -> int:
    """Peak bytes of a compiled descent beyond the graph.

    Stencil weights twice (both directions, the graph's dtype); the CSR of the
    other blocks at its build peak (:data:`CSR_BUILD_BYTES` per edge); per
    replica the gauges (float32), fields (float64) and, during the hand-over,
    the torch copies (graph dtype, twice); per running thread and node 40
    bytes (margins, bounds, a gauge copy, bucket links, flip buffer); the
    normalizers (:func:`_normalizer_bytes`).  O(edge blocks)."""
    import numba

    threads = numba.get_num_threads() if threads is None else int(threads)
    n, R, item = graph.n_nodes, int(replicas), _itemsize(graph)
    weights = 2 * item * _stencil_params(graph)
    csr = CSR_BUILD_BYTES * csr_edges(graph)
    state = R * n * (4 + 8 + 2 * item)
    per_thread = 40 * n * min(threads, R)
    held, transient = _normalizer_bytes(graph, R)
    return int(held + max(weights + csr + state + per_thread, transient))


def _block_temporaries(graph: SignedGraph, b, R: int, item: int, dtype=None) -> int:
    """Bytes one block's forward and adjoint evaluation allocate for ``R``
    replicas in ``dtype`` (the graph's; ``item`` bytes per value): the result,
    for convolutions a padded copy of the source and, where PyTorch's CPU
    convolution unfolds its input (:meth:`~deepglass.graph.blocks.ConvBlock.unfolds_input`),
    the columns of one piece of its input channels (at most
    :data:`~deepglass.graph.blocks.conv.MAX_COLUMNS` values, or one channel's)."""
    t = R * item * (b.in_size + b.out_size)
    if isinstance(b, ConvBlock):
        t += R * item * b.in_size
        if b.unfolds_input(graph.dtype if dtype is None else dtype):
            cols = b.columns(R)
            t += item * min(cols, max(MAX_COLUMNS, cols // b.in_shape[0]))
    return t


def matrix_free_bytes(graph: SignedGraph, replicas: int) -> int:
    """Peak bytes of a matrix-free descent beyond the graph.

    Gauges, fields and one class's flips as (R, n) tensors in the graph's
    dtype, the fields' recomputation (one more), per-node thresholds and row
    sums, the largest block's temporaries (:func:`_block_temporaries`), one
    chunk of sparse updates (:data:`SPARSE_CHUNK`
    contributions, ~40 bytes each) and the normalizers
    (:func:`_normalizer_bytes`).  O(edge blocks)."""
    one = getattr(graph, "draw_graph", None)
    if one is not None:
        # a batch of D null draws (deepglass.solve.batched): each replica runs
        # on its own draw, so the state and temporaries are those of one draw's
        # graph with all R replicas, plus the other draws' normalizers
        held, _ = _normalizer_bytes(one, replicas)
        return int(matrix_free_bytes(one, replicas) + (graph.D - 1) * held)
    n, R, item = graph.n_nodes, int(replicas), _itemsize(graph)
    state = 4 * R * n * item + 3 * n * 8
    temps = max((_block_temporaries(graph, b, R, item) for b in graph.edge_blocks), default=0)
    held, transient = _normalizer_bytes(graph, R)
    # sparse updates run below a flipped fraction of 0.0005 x 20 (dense layers'
    # advantage; :func:`deepglass.solve.descent._sparse_limit`) of a block, so
    # they list at most 1% of its edges per replica, SPARSE_CHUNK at a time
    most = max((b.n_edges() for b in graph.edge_blocks), default=0)
    sparse = 40 * min(SPARSE_CHUNK, math.ceil(0.01 * R * most))
    return int(held + max(state + temps + sparse, transient))


def compiled_seconds(graph: SignedGraph, replicas: int, threads: int | None = None) -> float:
    """Seconds of a compiled descent (measured / modelled 0.79-1.75 on the cases of
    ``bench/bench_engines.py``, 2 cores): the layout (stencil weights, the CSR
    of the other blocks), the kernel for the replicas each thread runs (a flip
    updates its neighbours' fields, two updates per stencil edge if every node
    flipped once, slower once the fields leave the cache; bookkeeping per
    node), and the fields from scratch (:func:`operator_seconds`)."""
    import numba

    threads = numba.get_num_threads() if threads is None else int(threads)
    R = int(replicas)
    csr = 2 * csr_edges(graph)
    updates = 2 * graph.n_edges - csr
    per_thread = R / max(1, min(threads, R))
    cache = 1.0 + _KERNEL_CACHE * max(0.0, math.log2(graph.n_nodes / 2e5))
    kernel = per_thread * (_KERNEL_UPDATE_S * cache * updates + _KERNEL_NODE_S * graph.n_nodes)
    layout = _LAYOUT_PARAM_S * _stencil_params(graph) + _LAYOUT_CSR_S * csr
    return (_COMPILED_FIXED_S + layout + kernel
            + _FIELD_PASSES * operator_seconds(graph, R, threads))


def matrix_free_seconds(graph: SignedGraph, replicas: int, threads: int | None = None) -> float:
    """Seconds of a matrix-free descent on the CPU: :func:`operator_seconds` times
    the operator passes a descent takes, a power law in ``R n`` fitted on the
    cases of ``bench/bench_engines.py`` (measured / modelled 0.56-1.73: the
    sweeps a descent needs are set by its dynamics); unshared convolutions
    (N2 draws) at a share of their full passes that falls with their size
    (measured / modelled 0.60-1.68 on the N2 draws of ``bench_engines.py``).
    A device is far faster; ``auto`` has no choice there."""
    R = int(replicas)
    passes = _MF_PASSES * (R * graph.n_nodes) ** _MF_PASS_EXP
    edges = R * sum(b.n_edges() for b in graph.edge_blocks if _is_unshared(b))
    share = min(1.0, _MF_UNSHARED_SHARE * edges ** _MF_UNSHARED_EXP) if edges else 1.0
    return passes * operator_seconds(graph, R, threads, unshared_share=share)


def _is_unshared(b) -> bool:
    """Whether edge block ``b`` is an unshared convolution or its adjoint."""
    return isinstance(getattr(b, "inner", b), (UnsharedConvBlock, UnsharedConvTransposeBlock))


@dataclass(frozen=True)
class EngineEstimate:
    """Estimated peak bytes (beyond the graph) and seconds of one engine."""

    engine: str
    bytes: int
    seconds: float

    def gb(self) -> float:
        return self.bytes / 1e9


def engine_estimates(graph: SignedGraph, replicas: int) -> dict[str, EngineEstimate]:
    """:class:`EngineEstimate` per engine that can run ``graph`` (the compiled
    engine only on the CPU)."""
    out = {"matrix-free": EngineEstimate("matrix-free", matrix_free_bytes(graph, replicas),
                                         matrix_free_seconds(graph, replicas))}
    if graph.device.type == "cpu":
        out["compiled"] = EngineEstimate("compiled", compiled_bytes(graph, replicas),
                                         compiled_seconds(graph, replicas))
    return out


def _budget() -> int:
    """The host memory a solve may take: the shared budget of
    :mod:`deepglass.memory` (``--max-memory-gb``, else a fraction of what is
    available)."""
    from ..memory import budget_bytes

    return int(budget_bytes()[0])


def choose_engine(graph: SignedGraph, replicas: int, engine: str = "auto",
                  budget_bytes: int | None = None) -> str:
    """The engine a descent of ``replicas`` replicas on ``graph`` runs.

    ``"auto"``: among the engines whose :func:`engine_estimates` fit
    ``budget_bytes`` (default: :data:`MEMORY_FRACTION` of the available
    memory), the one with the least estimated time; on a device, the
    matrix-free one.  A named engine is returned when it fits.

    Raises
    ------
    DeepglassError
        An unknown engine; ``"compiled"`` for a graph on a device.
    TooLargeError
        Nothing fits: one line with the estimate and what to change (fewer
        replicas, the other engine, more memory).
    """
    if engine not in ENGINES:
        raise DeepglassError(f"engine must be one of {', '.join(map(repr, ENGINES))}, not {engine!r}")
    if engine == "compiled" and graph.device.type != "cpu":
        raise DeepglassError("the compiled engine runs on the CPU: move the graph there "
                             "or use engine='matrix-free'")
    est = engine_estimates(graph, replicas)
    if graph.device.type != "cpu":
        # the device's own free memory (not the host's MemAvailable)
        e = est["matrix-free"]
        if budget_bytes is None and graph.device.type == "cuda":
            budget_bytes = int(MEMORY_FRACTION * torch.cuda.mem_get_info(graph.device)[0])
        if budget_bytes is not None and e.bytes > budget_bytes:
            raise TooLargeError(
                f"the matrix-free engine needs about {e.gb():.1f} GB of device memory for "
                f"{_replicas(replicas)} of this graph ({graph.n_edges:,} edges) and "
                f"{budget_bytes / 1e9:.1f} GB are free; lower --replicas")
        return "matrix-free"
    from ..memory import budget_bytes as shared_budget, format_bytes

    if budget_bytes is None:
        budget = _budget()
        shared, source = shared_budget()
        if budget != shared:
            source = f"the budget of {format_bytes(budget)}"
    else:
        budget = int(budget_bytes)
        source = f"the budget of {format_bytes(budget)}"
    if engine != "auto":
        e = est[engine]
        if e.bytes > budget:
            raise TooLargeError(
                f"the {engine} engine would need ~{format_bytes(e.bytes)} for "
                f"{_replicas(replicas)} of this graph ({graph.n_edges:,} edges), more than "
                f"{source}; {_what_fits(graph, replicas, engine, est, budget, source)}")
        return engine
    fits = [e for e in est.values() if e.bytes <= budget]
    if not fits:
        best = min(est.values(), key=lambda e: e.bytes)
        raise TooLargeError(
            f"a descent of {_replicas(replicas)} of this graph ({graph.n_edges:,} edges) would "
            f"need ~{format_bytes(best.bytes)} even with the {best.engine} engine, more than "
            f"{source}; {_what_fits(graph, replicas, best.engine, est, budget, source)}")
    by_time = min(fits, key=lambda e: e.seconds)
    compiled = next((e for e in fits if e.engine == "compiled"), None)
    if compiled is not None and compiled.seconds < SMALL_SECONDS:
        # where either engine is quick the compiled one has the least fixed cost
        # (the matrix-free engine's many tiny kernels dominate small graphs)
        return "compiled"
    return by_time.engine


def _what_fits(graph, replicas: int, engine: str, est: dict, budget: int, source: str) -> str:
    """What to change when ``replicas`` replicas of ``engine`` do not fit
    ``budget``: the most replicas that do (if any), the other engine where it
    fits, and more memory; those options the running command has.  O(log
    replicas) estimates."""
    from ..memory import format_bytes, offered

    hints = []
    lo, hi = 0, int(replicas) - 1          # the most replicas that fit, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if engine_estimates(graph, mid)[engine].bytes <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo >= 1:
        hints.append(f"lower --replicas to {lo} or fewer")
    for other, e in est.items():
        if other != engine and e.bytes <= budget:
            hints.append(f"use --engine {other} (~{format_bytes(e.bytes)})")
    hints.append("raise --max-memory-gb" if "--max-memory-gb)" in source
                 else "free memory or set --max-memory-gb")
    return ", or ".join(h for h in hints if offered(h)) or "free memory"


def batches_draws(method: str, engine: str = "auto", device="cpu") -> bool:
    """Whether null draws are solved as one batch (:mod:`deepglass.solve.batched`):
    with the descent's matrix-free engine, named or ``auto``'s choice on a
    device (on the CPU ``auto`` picks per draw, mostly the compiled engine,
    which solves one graph at a time)."""
    return method == "descent" and (engine == "matrix-free" or (
        engine == "auto" and torch.device(device).type != "cpu"))


def draw_batch_bytes(graph: SignedGraph, starts: int, draws: int, n2: bool = False) -> int:
    """Peak bytes of ``draws`` null draws of ``graph`` solved as one batch with
    ``starts`` start gauges each (:mod:`deepglass.solve.batched`): every draw's
    weights twice (its own graph and the stacked copy; per edge for N2, whose
    convolutions are unshared) and a matrix-free descent of ``draws * starts``
    replicas (:func:`matrix_free_bytes`)."""
    item = _itemsize(graph)
    per_draw = 2 * item * (graph.n_edges if n2 else graph.n_params)
    held, _ = _normalizer_bytes(graph, draws * starts)
    # the descent on the stacked graph, as matrix_free_bytes sizes it there
    return int(draws * per_draw + matrix_free_bytes(graph, draws * starts)
               + (draws - 1) * held)


def draws_per_batch(graph: SignedGraph, starts: int, instances: int, device="cpu",
                    n2: bool = False, budget_bytes: int | None = None,
                    most: int | None = None) -> int:
    """The most null draws (at most ``instances`` and ``most``: 128 on a device,
    16 on the CPU) whose batch fits ``budget_bytes`` (default: a device's free
    memory, or the host's, times :data:`MEMORY_FRACTION`).  At least 1."""
    dev = torch.device(device)
    if budget_bytes is None:
        if dev.type == "cuda":
            free, _ = torch.cuda.mem_get_info(dev)
            budget_bytes = int(MEMORY_FRACTION * free)
        else:
            budget_bytes = _budget()
    most = (128 if dev.type != "cpu" else 16) if most is None else int(most)
    d = max(1, min(int(instances), most))
    while d > 1 and draw_batch_bytes(graph, starts, d, n2) > budget_bytes:
        d -= 1
    return d


def check_fits(graph: SignedGraph, replicas: int, method: str = "descent",
               engine: str = "auto", device="cpu") -> str | None:
    """Refuse, before anything runs, a descent that would not fit: the engine
    :func:`choose_engine` picks for ``replicas`` replicas of ``graph`` on
    ``device`` (``None`` for methods other than ``descent``).  Host memory
    only (a device's allocator reports its own)."""
    if method != "descent":
        return None
    check_engine(engine, method, device)
    if check_device(device).type != "cpu":
        return "matrix-free"
    return choose_engine(graph, replicas, engine)

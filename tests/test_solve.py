"""deepglass.frustration: every method against brute force and explicit evaluation."""

from __future__ import annotations

import collections
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn

import deepglass
from deepglass.errors import DeepglassError
from deepglass.graph import ConvBlock, LocallyConnectedBlock, SignedGraph
from deepglass.solve import FrustrationResult
from deepglass.solve.descent import descent


def _tiny_conv(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(2, 2))
    return SignedGraph.from_module(net, (1, 3, 3), dtype=torch.float64)


def _tiny_dag(seed, n=12):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    return SignedGraph.from_module(net, (4,), dtype=torch.float64)


def _brute(As):
    n = As.shape[0]
    D = As.toarray()
    tot = np.abs(D).sum()
    codes = np.arange(2 ** (n - 1))[:, None]
    S = np.where((codes >> np.arange(n - 1)) & 1, -1.0, 1.0)      # all gauges, spin 0 fixed
    S = np.hstack([np.ones((len(S), 1)), S])
    return float((0.5 * (1 - np.einsum("ri,ri->r", S @ D, S) / tot)).min())


def _explicit_energy(As, s):
    s = s.astype(float)
    return 0.5 * (1 - np.einsum("ri,ij,rj->r", np.atleast_2d(s), As.toarray(),
                                np.atleast_2d(s)) / abs(As).sum())


@pytest.mark.parametrize("make,seed", [(_tiny_conv, 0), (_tiny_conv, 1), (_tiny_dag, 2),
                                       (_tiny_dag, 3)])
def test_methods_against_brute_force(make, seed):
    g = make(seed)
    As = g.to_scipy_sym()
    assert g.n_nodes <= 21
    delta = _brute(As)
    ex = deepglass.frustration(g, method="exact")
    assert ex.frustration == pytest.approx(delta, abs=1e-9)
    assert ex.info["optimal"]
    for method in ("greedy", "descent", "anneal"):
        r = deepglass.frustration(g, method=method, replicas=6, seed=seed)
        assert r.frustration >= delta - 1e-9
        assert r.local_min.all()
        # explicit evaluation of every replica's gauge, and no negative field
        np.testing.assert_allclose(r.energies, _explicit_energy(As, r.sigmas), atol=1e-9)
        h = r.sigmas * (As @ r.sigmas.T).T
        assert (h >= -1e-9).all()


ENGINES = ["matrix-free", "compiled"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("threshold", ["block", "global"])
def test_descent_never_raises_energy_and_beats_nothing_worse_than_start(threshold, engine):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(64, 10))
    g = SignedGraph.from_module(net, (1, 8, 8), dtype=torch.float64)
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 3, seed=5)).double()
    energies = [g.energy(s0).numpy()]
    for k in range(1, 30):
        st = descent(g, s0, max_sweeps=k, threshold=threshold, engine=engine)
        energies.append(g.energy(st.sigma).numpy())
    E = np.array(energies)
    assert (np.diff(E, axis=0) <= 1e-12).all()
    assert (E[-1] < E[0]).all()
    # run to the end (the same path, continued): a single-flip local minimum
    # (fields recomputed from scratch), no higher than any sweep before it
    st = descent(g, s0, threshold=threshold, engine=engine)
    assert (g.energy(st.sigma).numpy() <= E[-1] + 1e-12).all()
    assert ((st.sigma * g.sym_matvec(st.sigma)) >= -1e-9).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_block_threshold_flips_each_blocks_steepest_nodes_first(engine):
    # one sweep of the per-block schedule flips, in every block, exactly the
    # nodes whose field is below gamma times that block's most negative field
    g = _tiny_dag(7)
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 4, seed=2)).double()
    h0 = s0 * g.sym_matvec(s0)
    keep = s0.clone()
    st = descent(g, s0, max_sweeps=1, gamma=0.9, decay=1.0, threshold="block", engine=engine)
    assert torch.equal(s0, keep)                  # the caller's gauges are not touched
    flipped = st.sigma != s0
    # blocks of the first colour class see the start fields
    first = g.coloring()[0]
    for b in first:
        nb = g.node_blocks[b]
        hb = h0[:, nb.offset:nb.stop]
        expect = (hb < 0.9 * hb.min(1, keepdim=True).values) & (hb < 0)
        assert torch.equal(flipped[:, nb.offset:nb.stop], expect)
    with pytest.raises(DeepglassError, match="threshold"):
        descent(g, s0, threshold="layer")


def test_descent_same_seed_same_result_and_sparse_equals_dense():
    g = _tiny_conv(3)
    a = deepglass.frustration(g, replicas=5, seed=11)
    b = deepglass.frustration(g, replicas=5, seed=11)
    np.testing.assert_array_equal(a.sigmas, b.sigmas)
    np.testing.assert_array_equal(a.energies, b.energies)
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 5, seed=11)).double()
    dense = descent(g, s0, sparse_ratio=0.0, engine="matrix-free")
    sparse = descent(g, s0, sparse_ratio=1.0, engine="matrix-free")
    torch.testing.assert_close(dense.sigma, sparse.sigma)


def test_chunked_sparse_updates_equal_dense_and_leave_start_untouched(monkeypatch):
    import deepglass.solve.descent as descent_module

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(48, 5))
    g = SignedGraph.from_module(net, (1, 8, 8), dtype=torch.float64)
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 4, seed=3)).double()
    keep = s0.clone()
    dense = descent(g, s0, sparse_ratio=0.0, engine="matrix-free")
    monkeypatch.setattr(descent_module, "SPARSE_CHUNK", 7)   # many tiny chunks
    sparse = descent(g, s0, sparse_ratio=1.0, engine="matrix-free")
    torch.testing.assert_close(dense.sigma, sparse.sigma)
    torch.testing.assert_close(dense.fields, sparse.fields)
    assert torch.equal(s0, keep)
    int8 = descent(g, s0.to(torch.int8), sparse_ratio=0.0, engine="matrix-free")
    torch.testing.assert_close(int8.sigma, dense.sigma)


class _SplitChannels(nn.Module):
    """Two convolutions each reading half of one node block's channels (a channel split,
    as in YOLOv8's C2f and GhostNet): edge blocks whose sources are part of a block."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(2, 3, 3), nn.Conv2d(2, 3, 3)
        self.head = nn.Linear(2 * 3 * 4 * 4, 5)

    def forward(self, x):
        u, v = torch.relu(self.stem(x)).split(2, dim=1)
        return self.head(torch.cat([torch.relu(self.a(u)), torch.relu(self.b(v))], 1).flatten(1))


def test_sparse_updates_of_blocks_that_read_part_of_a_block_equal_dense():
    """Sparse field updates out of a node block only some of whose nodes an edge block reads."""
    torch.manual_seed(2)
    g = SignedGraph.from_module(_SplitChannels(), (1, 6, 6), dtype=torch.float64)
    parts = [b for b in g.edge_blocks if b.src_range is not None and len(b.src_blocks) == 1
             and b.src_range != (g.node_blocks[b.src_blocks[0]].offset, g.node_blocks[b.src_blocks[0]].stop)]
    assert len(parts) == 2                      # the two halves of the stem's block
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 4, seed=5)).double()
    dense = descent(g, s0, sparse_ratio=0.0, engine="matrix-free")
    sparse = descent(g, s0, sparse_ratio=1.0, engine="matrix-free")
    torch.testing.assert_close(dense.sigma, sparse.sigma)
    torch.testing.assert_close(dense.fields, sparse.fields)
    torch.testing.assert_close(sparse.fields, g.sym_matvec(sparse.sigma))  # kept up to date exactly


def test_sparse_updates_through_zero_padded_reads_equal_dense():
    """A convolution that reads zero padding inside its input (shifted channel copies)."""
    from shift_nets import ChannelShift

    torch.manual_seed(4)
    g = SignedGraph.from_module(ChannelShift(), (1, 6, 6), dtype=torch.float64)
    assert type(g.edge_blocks[1]).__name__ == "ZeroPaddedBlock"
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 3, seed=1)).double()
    dense = descent(g, s0, sparse_ratio=0.0, engine="matrix-free")
    sparse = descent(g, s0, sparse_ratio=1.0, engine="matrix-free")
    compiled = descent(g, s0, engine="compiled")
    torch.testing.assert_close(dense.sigma, sparse.sigma)
    torch.testing.assert_close(sparse.fields, g.sym_matvec(sparse.sigma))
    torch.testing.assert_close(compiled.fields, g.sym_matvec(compiled.sigma))
    assert bool(((compiled.sigma * compiled.fields) >= -1e-9).all())   # local minima


def test_sparse_limit_falls_with_replicas_for_dense_layers_only():
    from deepglass.graph import DenseBlock
    from deepglass.solve.descent import _sparse_limit

    dense = DenseBlock(torch.randn(3, 4))
    conv = _tiny_conv(0).edge_blocks[0]
    assert isinstance(conv, ConvBlock)
    assert _sparse_limit(dense, 1, 0.0005) == pytest.approx(0.0105)
    assert _sparse_limit(dense, 80, 0.0005) == pytest.approx(0.01 * 5 / 80)
    assert _sparse_limit(conv, 1, 0.0005) == _sparse_limit(conv, 80, 0.0005) == 0.0005


def _integer_graph(net, input_shape, seed, dtype=torch.float64):
    """``net`` with small integer weights: every field sum is exact (in float32
    too), so two engines that make the same choices end at identical gauges."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-4, 5, p.shape).double())
    return SignedGraph.from_module(net.double(), input_shape, dtype=dtype)


def _integer_conv_net(seed, dtype=torch.float64):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 3))
    return _integer_graph(net, (1, 8, 8), seed, dtype)


def _integer_wide_net(seed, dtype=torch.float64):
    # kernels wider than the image, padded on both sides (the compiled engine's
    # one-run-per-kernel-row path clipped at both ends), and a row kernel
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 3, (2, 5), padding=(1, 3)), nn.ReLU(),
                        nn.Conv2d(3, 2, (1, 3), padding=(0, 1)), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 5 * 5, 3))
    return _integer_graph(net, (2, 4, 3), seed, dtype)


_NETS = {"conv": _integer_conv_net, "wide": _integer_wide_net,
         "geometries": lambda seed, dtype: _integer_graph(_Geometries(), (2, 9, 7), seed, dtype),
         "volumes": lambda seed, dtype: _integer_graph(_Volumes(), (2, 5, 5, 5), seed, dtype),
         "concats": lambda seed, dtype: _integer_graph(_Concats(), (2, 6, 6), seed, dtype),
         "grouped": lambda seed, dtype: _integer_graph(_GroupedParts(), (2, 5, 5), seed, dtype),
         "radix": lambda seed, dtype: _integer_graph(_RadixSum(), (2, 5, 5), seed, dtype),
         "padded": lambda seed, dtype: _integer_graph(_Padded(), (2, 6, 7), seed, dtype),
         "prenorm": lambda seed, dtype: _integer_graph(_PreNorm(), (2, 5, 5), seed, dtype),
         "transposed": lambda seed, dtype: _integer_graph(_Transposed(), (2, 5, 7), seed, dtype)}
# N2 draws of them: every convolution unshared, one integer weight per edge
# (a permutation of the integer weights), run as per-position stencils
_NETS.update({f"N2-{name}": (lambda seed, dtype, make=make: deepglass.null_model(
    make(seed, dtype), "N2", seed=seed)) for name, make in list(_NETS.items())
    if name in ("conv", "geometries", "volumes", "concats", "grouped", "padded", "prenorm",
                "transposed")})
# the compiled engine keeps its margins in the graph's dtype (float32: the vector path)
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@pytest.mark.parametrize("net", list(_NETS))
@pytest.mark.parametrize("dtype", list(_DTYPES))
@pytest.mark.parametrize("threshold,gamma,decay", [("block", 0.9, 1.0), ("block", 0.9, 0.97),
                                                   ("global", 0.8, 0.85), ("block", 0.0, 1.0)])
def test_compiled_and_matrix_free_engines_take_the_same_steps(net, dtype, threshold, gamma,
                                                              decay):
    # the compiled engine is the same schedule with in-place updates through
    # stencils and a CSR rest: with exact arithmetic (integer weights, tol = 0)
    # it must end at the very same gauges
    g = _NETS[net](3 if net != "geometries" else 5, _DTYPES[dtype])
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 6, seed=9)).double()
    kw = dict(gamma=gamma, decay=decay, threshold=threshold, tol=0.0)
    mf = descent(g, s0, engine="matrix-free", **kw)
    ex = descent(g, s0, engine="compiled", **kw)
    # (with gamma = 0 the matrix-free engine also counts the empty sweep that ends it)
    assert abs(mf.sweeps - ex.sweeps) <= 1 and ex.sweeps > 1
    torch.testing.assert_close(ex.sigma, mf.sigma, rtol=0, atol=0)
    torch.testing.assert_close(ex.fields, mf.fields, rtol=0, atol=0)
    np.testing.assert_array_equal(ex.flips, mf.flips.astype(np.int64))
    # and fields are As sigma of the final gauges
    torch.testing.assert_close(ex.fields, g.sym_matvec(ex.sigma))


def _integer_active_net() -> nn.Module:
    """A small conv net with integer weights (exact field sums), for active
    subnetworks: a max pool selects edges, the rest are stencils."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-4, 5, p.shape).double())
    return net


def _same_steps(graph, s0, **kw):
    """Both engines' descents from ``s0``: identical gauges, fields and flips
    (exact arithmetic); the compiled one's state."""
    mf = descent(graph, s0, engine="matrix-free", **kw)
    ex = descent(graph, s0, engine="compiled", **kw)
    torch.testing.assert_close(ex.sigma, mf.sigma, rtol=0, atol=0)
    torch.testing.assert_close(ex.fields, mf.fields, rtol=0, atol=0)
    np.testing.assert_array_equal(ex.flips, mf.flips.astype(np.int64))
    return ex


@pytest.mark.parametrize("dtype", list(_DTYPES))
def test_compiled_engine_on_active_subnetworks_takes_the_same_steps(dtype):
    """An active subnetwork's masked convolutions and dense layers run as the
    whole layers' stencils, the removed nodes held at gauge 0 in the kernel:
    the same steps as the matrix-free engine on the masked operators, the
    removed nodes' gauges as they came in.  Masks that disagree between
    blocks fall back to explicit CSR, with the same result."""
    from deepglass.experiments.active import active_subgraph
    from deepglass.graph.blocks import MaskedBlock
    from deepglass.solve.stencils import pinned_nodes, stencils

    net = _integer_active_net()
    g = SignedGraph.from_module(net, (1, 8, 8), dtype=_DTYPES[dtype])
    subs = active_subgraph(g, net, torch.randn(3, 1, 8, 8, dtype=torch.float64))
    kw = dict(gamma=0.9, decay=1.0, threshold="block", tol=0.0)
    for k in range(3):
        sub = subs.subgraph(k)
        assert any(isinstance(b, MaskedBlock) for b in sub.edge_blocks)
        removed = ~subs.keep[k]
        np.testing.assert_array_equal(pinned_nodes(sub) & ~removed, False)
        st = stencils(sub)
        assert st.pinned is not None and st.n_stencil_edges + st.rest.nnz // 2 == sub.n_edges
        assert st.rest.nnz < 2 * 200                # only the max pool's selected edges
        s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 4, seed=k)).double()
        ex = _same_steps(sub, s0, **kw)
        assert ex.sweeps > 1
        torch.testing.assert_close(ex.sigma[:, removed], s0[:, removed].to(ex.sigma.dtype))
    # masks that do not come from one set of kept nodes: no pinning, explicit CSR
    rng = np.random.default_rng(0)
    blocks = [b.restrict(torch.from_numpy(rng.random(b.in_shape) < 0.7),
                         torch.from_numpy(rng.random(b.out_shape) < 0.7))
              for b in g.edge_blocks]
    odd = g.replace_edge_blocks(blocks)
    assert pinned_nodes(odd) is None and stencils(odd).pinned is None
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 4, seed=7)).double()
    mf = descent(odd, s0, engine="matrix-free", **kw)
    ex = descent(odd, s0, engine="compiled", **kw)
    torch.testing.assert_close(ex.sigma, mf.sigma, rtol=0, atol=0)
    # masks that agree among the stencils while an explicit block (the max pool,
    # whole) keeps edges of a node they remove: no pinning either
    conv2 = next(k for k, b in enumerate(g.edge_blocks) if k > 0 and b.kind == "conv")
    b = g.edge_blocks[conv2]
    src_keep = torch.ones(b.in_shape, dtype=torch.bool)
    src_keep[0, 0, :2] = False
    blocks = list(g.edge_blocks)
    blocks[conv2] = b.restrict(src_keep, torch.ones(b.out_shape, dtype=torch.bool))
    half = g.replace_edge_blocks(blocks)
    assert pinned_nodes(half) is not None and stencils(half).pinned is None
    mf = descent(half, s0, engine="matrix-free", **kw)
    ex = descent(half, s0, engine="compiled", **kw)
    torch.testing.assert_close(ex.sigma, mf.sigma, rtol=0, atol=0)


@pytest.mark.parametrize("net", ["conv", "geometries", "volumes", "concats", "prenorm",
                                 "transposed"])
def test_n2_convolutions_run_as_stencils(net):
    """An N2 draw's unshared convolutions (transposed ones too) run in the
    compiled engine as stencils with one weight per edge (a convolution's
    layout once per output position), not as explicit CSR: it holds no more
    CSR than the real network, and its stencils' weights are exactly the
    draw's edges."""
    from deepglass.solve import engines
    from deepglass.solve.stencils import stencil_kind, stencils

    g = _NETS[net](3, torch.float64)
    n2 = deepglass.null_model(g, "N2", seed=3)
    for kind in ("conv", "conv_transpose"):
        unshared = [b for b in n2.edge_blocks if b.kind == "unshared_" + kind]
        shared = [b for b in g.edge_blocks if b.kind == kind]
        assert len(unshared) == len(shared) and (unshared or kind == "conv_transpose")
        for b, real in zip(unshared, shared):
            assert stencil_kind(n2, b) == ("unshared_" + kind if stencil_kind(g, real) == kind
                                           else None)
    assert engines.csr_edges(n2) == engines.csr_edges(g)
    st = stencils(n2)
    assert st.n_stencil_edges + st.rest.nnz // 2 == n2.n_edges
    # the stencils' weights (both directions) are the draw's, slot for slot
    assert st.weights.size == 2 * engines._stencil_params(n2) + 16
    edges = np.sort(np.concatenate([b.coo()[2] for b in n2.edge_blocks
                                    if stencil_kind(n2, b) is not None]))
    held = np.sort(st.weights[:-16])
    assert np.count_nonzero(held) == 2 * np.count_nonzero(edges)
    np.testing.assert_array_equal(np.unique(held), np.unique(np.r_[edges, 0.0]))


@pytest.mark.parametrize("net", ["grouped", "N2-grouped"])
def test_grouped_convolutions_of_shuffles_and_concatenations_run_per_group(net):
    """A grouped convolution whose input is a channel shuffle or a concatenation
    (ShuffleNet V1) runs as one stencil per group and part of it (a group's
    channels of one block, in order), not as CSR: the stencils hold every
    convolution edge once, and the kernel's steps are checked in
    test_compiled_and_matrix_free_engines_take_the_same_steps.  A depthwise
    convolution of a shuffle would be a stencil per channel: past
    MAX_GROUP_PARTS it stays CSR."""
    from deepglass.solve.stencil_parts import MAX_GROUP_PARTS
    from deepglass.solve.stencils import stencil_kind, stencils

    g = _NETS[net](3, torch.float64)
    convs = {b.module: b for b in g.edge_blocks if b.kind != "dense"}
    assert all(stencil_kind(g, b) is not None for b in convs.values())
    st = stencils(g)
    # a, b whole; gconv: (a0 a1 b0) (b1 b2 b3) in three pieces; shuffled_1x1: (y0 y2)
    # (y1 y3); shuffled_3x3: (z0 z2) (z1 z4) (z3 z5); up: as gconv, on its output
    # side; dw and g3: the groups of a, those of b
    rows = collections.Counter(st.params[:, 1].tolist())      # stencils per destination
    assert [rows[g.node_blocks[convs[m].dst].offset]
            for m in ("gconv", "shuffled_1x1", "shuffled_3x3", "dw", "g3")] == [3, 4, 6, 2, 2]
    assert len(st.params) == 2 + 3 + 4 + 6 + 3 + 2 + 2
    groups = {int(d): sorted(st.params[st.params[:, 1] == d, 16].tolist()) for d in rows}
    assert groups[g.node_blocks[convs["dw"].dst].offset] == [2, 4]
    assert groups[g.node_blocks[convs["g3"].dst].offset] == [1, 2]
    assert st.n_stencil_edges == sum(b.n_edges() for b in convs.values())
    assert st.rest.nnz // 2 == g.n_edges - st.n_stencil_edges

    class Depthwise(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.dw = nn.Conv2d(1, c, 1), nn.Conv2d(c, c, 3, padding=1, groups=c)

        def forward(self, x):
            y = torch.relu(self.conv1(x))
            return self.dw(y.reshape(-1, 2, y.shape[1] // 2, 3, 3).transpose(1, 2)
                           .reshape(y.shape))

    for c, kind in ((MAX_GROUP_PARTS, "conv"), (MAX_GROUP_PARTS + 2, None)):
        d = SignedGraph.from_module(Depthwise(c), (1, 3, 3))
        assert stencil_kind(d, d.edge_blocks[-1]) == kind


def test_a_sum_over_stacked_branches_is_an_image_read_by_stencils():
    """torch.stack(branches, 1).sum(1) (SKNet, ResNeSt): the sum's node block has
    the value's (C, H, W), not the reduction's flat (C H W, 1) windows, so the
    convolution reading it runs as a stencil (skresnet18 at 64x64: CSR from
    50.7% of its edges to 0.3%)."""
    from deepglass.solve.stencils import stencil_kind

    g = _NETS["radix"](1, torch.float64)
    conv = next(b for b in g.edge_blocks if b.module == "conv")
    summed = next(b for b in g.edge_blocks if b.kind == "pool")
    assert g.node_blocks[summed.dst].shape == (4, 5, 5)
    assert stencil_kind(g, conv) == "conv"
    # the sum's edges: weight 1 from each branch's element at the same place
    i, j, w = summed.coo()
    assert np.all(w == 1.0) and len(w) == 2 * 4 * 5 * 5


@pytest.mark.parametrize("net", ["padded", "N2-padded"])
def test_convolutions_of_padded_values_run_as_stencils(net):
    """A convolution of a reflect-, replicate- or circular-padded value is the
    stencil of the blocks inside the padding (``lo`` more zero padding); the
    edges from the padding's elements, counted here from the block's own
    edges, are the CSR's.  Before, the whole layer was CSR (a CycleGAN
    generator at 3x64x64: 88% of its edges, 38 GB estimated)."""
    from deepglass.solve import engines
    from deepglass.solve.stencil_parts import source_pad
    from deepglass.solve.stencils import ring_edges, stencil_kind

    g = _NETS[net](3, torch.float64)
    convs = {b.module: b for b in g.edge_blocks if b.kind != "dense"}
    assert all(stencil_kind(g, b) is not None for b in convs.values())
    pads = {"a": ((1, 1), (6, 7)), "b": ((1, 1), (6, 7)), "c": ((2, 1), (3, 4)),
            "d": ((1, 2), (3, 5))}
    ring = 0
    for name, (lo, inner) in pads.items():
        b = convs[name]
        assert source_pad(g, b) == (lo, inner)
        i = b.coo()[0] % math.prod(b.in_shape[1:])
        y, x = np.divmod(i, b.in_shape[2])
        outside = (y < lo[0]) | (y >= lo[0] + inner[0]) | (x < lo[1]) | (x >= lo[1] + inner[1])
        assert ring_edges(g, b) == np.count_nonzero(outside) > 0
        ring += ring_edges(g, b)
    assert engines.csr_edges(g) == ring          # (the dense head reads a whole block)


@pytest.mark.parametrize("net", ["grouped", "padded"])
def test_active_subnetworks_of_grouped_and_padded_convolutions(net):
    """An active subnetwork of those grouped convolutions, or of convolutions
    of padded values: the masked layers run as their stencils with the
    removed nodes pinned (a padding's explicit edges masked: the removed ones
    weigh 0), and take the matrix-free engine's steps."""
    from deepglass.experiments.active import active_subgraph
    from deepglass.solve import engines
    from deepglass.solve.stencils import stencil_kind, stencils

    make, shape = {"grouped": (_GroupedParts, (2, 5, 5)), "padded": (_Padded, (2, 6, 7))}[net]
    model = make().eval()
    g = _integer_graph(model, shape, 2)       # (integer weights in the model, made float64)
    subs = active_subgraph(g, model, torch.randn((3,) + shape, dtype=torch.float64))
    for k in range(3):
        sub = subs.subgraph(k)
        assert all(stencil_kind(sub, b) is not None for b in sub.edge_blocks
                   if b.inner.kind != "dense")
        st = stencils(sub)
        assert st.pinned is not None
        if net == "padded":       # the padding's kept edges are the CSR's
            assert 0 < st.rest.count_nonzero() // 2 <= sub.n_edges - st.n_stencil_edges \
                <= engines.csr_edges(sub)
        s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 4, seed=k)).double()
        ex = _same_steps(sub, s0, gamma=0.9, decay=1.0, threshold="block", tol=0.0)
        torch.testing.assert_close(ex.fields, sub.sym_matvec(ex.sigma))


@pytest.mark.parametrize("dtype", list(_DTYPES))
def test_compiled_engine_on_active_subnetworks_of_an_n2_draw(dtype):
    """The real network's active masks on an N2 draw (its unshared
    convolutions restricted to the kept nodes) run as the whole layers'
    per-position stencils with the removed nodes pinned, and take the
    matrix-free engine's steps."""
    import dataclasses

    from deepglass.experiments.active import active_subgraph
    from deepglass.graph.blocks import MaskedBlock
    from deepglass.solve.stencils import stencil_kind, stencils

    net = _integer_active_net()
    g = SignedGraph.from_module(net, (1, 8, 8), dtype=torch.float64)
    subs = active_subgraph(g, net, torch.randn(3, 1, 8, 8, dtype=torch.float64))
    n2 = deepglass.null_model(g, "N2", seed=1).to(dtype=_DTYPES[dtype])
    draw = dataclasses.replace(subs, graph=n2)       # the same kept nodes, the draw's weights
    kw = dict(gamma=0.9, decay=1.0, threshold="block", tol=0.0)
    for k in range(3):
        sub = draw.subgraph(k)
        masked = [b for b in sub.edge_blocks
                  if isinstance(b, MaskedBlock) and b.inner.kind == "unshared_conv"]
        assert masked and all(stencil_kind(sub, b) == "unshared_conv" for b in masked)
        assert stencils(sub).pinned is not None
        s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 4, seed=k)).double()
        ex = _same_steps(sub, s0, **kw)
        torch.testing.assert_close(ex.fields, sub.sym_matvec(ex.sigma))


@pytest.mark.parametrize("net", list(_NETS))
@pytest.mark.parametrize("dtype", list(_DTYPES))
def test_compiled_kernel_updates_fields_in_place(net, dtype):
    # after the kernel, the fields it kept up to date flip by flip must equal
    # As sigma of its gauges, with As the explicit matrix permuted to the
    # kernel's channels-last order; and its stencils cover every edge (the CSR
    # holds the others; a padding's edges join the interior's node pairs there)
    from deepglass.solve import engines
    from deepglass.solve.compiled_descent import compiled_descent, stencils

    g = _NETS[net](1 if net != "geometries" else 2, _DTYPES[dtype])
    st = stencils(g)
    As = g.to_scipy_sym()
    assert st.n_stencil_edges + engines.csr_edges(g) == g.n_edges
    if "padded" in net:
        assert st.rest.nnz // 2 < engines.csr_edges(g)
    else:
        assert st.rest.nnz // 2 == engines.csr_edges(g)
    Ap = As[st.perm][:, st.perm]
    sigma = deepglass.solve.start_gauges(g.n_nodes, 3, seed=0).astype(np.float32)[:, st.perm]
    sigma = np.ascontiguousarray(sigma)
    fields = np.ascontiguousarray((Ap @ sigma.T).T)
    sweeps, flips = np.zeros(3, np.int64), np.zeros(3, np.int64)
    compiled_descent(st, sigma, fields, g.coloring(), np.zeros(g.n_nodes), gamma=0.5, decay=1.0,
                     per_block=True, sweeps=sweeps, max_sweeps=3, flips=flips)
    assert (flips > 0).all() and (sweeps == 3).all()
    np.testing.assert_array_equal(fields, (Ap @ sigma.T).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        compiled_descent(st, np.asfortranarray(sigma), fields, g.coloring(), np.zeros(g.n_nodes),
                         gamma=0.5, decay=1.0, per_block=True, sweeps=sweeps, max_sweeps=3,
                         flips=flips)
    with pytest.raises(ValueError, match="float32"):
        compiled_descent(st, sigma.astype(np.float64), fields, g.coloring(), np.zeros(g.n_nodes),
                         gamma=0.5, decay=1.0, per_block=True, sweeps=sweeps, max_sweeps=3,
                         flips=flips)


def test_compiled_launches_in_batches_of_replicas(monkeypatch):
    # a long run goes to the kernel in batches of replicas with a progress
    # callback between them; each replica's descent is its own, so the result
    # is that of one launch
    import deepglass.solve.descent as descent_module

    g = _integer_conv_net(2)
    s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 7, seed=4)).double()
    whole = descent(g, s0, engine="compiled")
    assert descent_module._launches(7, g.n_edges, 2) == [slice(0, 7)]
    assert descent_module._launches(7, g.n_edges, 2, work=0, most=3) == [
        slice(0, 4), slice(4, 7)]
    assert descent_module._launches(80, 10**9, 2) == [slice(k, k + 10) for k in range(0, 80, 10)]
    monkeypatch.setattr(descent_module, "_launches",
                        lambda R, n_edges, threads: [slice(0, 3), slice(3, 4), slice(4, 7)])
    calls = []
    parts = descent(g, s0, engine="compiled", callback=lambda k, n: calls.append(n))
    torch.testing.assert_close(parts.sigma, whole.sigma, rtol=0, atol=0)
    np.testing.assert_array_equal(parts.flips, whole.flips)
    assert parts.sweeps == whole.sweeps
    assert len(calls) == 3 and calls == sorted(calls) and calls[-1] == whole.flips.sum()


def test_engine_choice():
    from deepglass.solve.descent import choose_engine

    g = _tiny_conv(0)
    assert choose_engine(g, 4) == "compiled"
    assert choose_engine(g, 4, "matrix-free") == "matrix-free"
    with pytest.raises(DeepglassError, match="engine"):
        choose_engine(g, 4, "gpu")


def test_numba_kernels_leave_torch_threads_as_they_found_them():
    """numba's OpenMP layer shares libgomp with torch: a parallel launch would
    set torch's intra-op threads to numba's.  The compiled descent (whose full
    fields use numba's thread count on >= 10^7 edge evaluations) and greedy
    hand the caller's count back; runs are reproducible."""
    from deepglass.solve.greedy import greedy

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.Conv2d(16, 32, 5), nn.ReLU(),
                        nn.Flatten(), nn.Linear(32 * 12 * 12, 64))
    g = SignedGraph.from_module(net, (1, 20, 20))
    R = 10**7 // g.n_edges + 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = descent(g, torch.ones(R, g.n_nodes), engine="compiled")
        assert torch.get_num_threads() == 1
        again = descent(g, torch.ones(R, g.n_nodes), engine="compiled")
        assert torch.get_num_threads() == 1
        greedy(g.to_scipy_sym(), np.ones((2, g.n_nodes), dtype=np.int8))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.sigma, again.sigma) and one.sweeps == again.sweeps


def test_descent_no_worse_than_greedy_on_average_from_same_starts():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(6 * 9, 10))
    g = SignedGraph.from_module(net, (1, 8, 8), dtype=torch.float64)
    gr = deepglass.frustration(g, method="greedy", replicas=16, seed=4)
    de = deepglass.frustration(g, method="descent", replicas=16, seed=4, gamma=0.9)
    assert de.frustration <= gr.frustration + 0.01
    assert de.energies.mean() <= gr.energies.mean() + 0.01


def test_paper_init_and_given_gauges():
    g = _tiny_dag(0)
    s = np.ones((2, g.n_nodes), dtype=np.int8)
    r = deepglass.frustration(g, replicas=2, init=s)
    assert r.init == "given"
    p = deepglass.frustration(g, replicas=3, init="paper", seed=1)
    assert p.local_min.all()
    with pytest.raises(DeepglassError, match="init"):
        deepglass.frustration(g, init="bogus")
    with pytest.raises(DeepglassError, match="unknown method"):
        deepglass.frustration(g, method="magic")


def test_result_partial_order_frustrated_weight_and_roundtrip(tmp_path):
    g = _tiny_conv(5)
    r = deepglass.frustration(g, replicas=4, seed=2)
    np.testing.assert_array_equal(r.sigma_in, r.sigma[g.input_index])
    np.testing.assert_array_equal(r.sigma_out, r.sigma[g.output_index])
    # frustrated weight over blocks == explicit residual negative weight of S A S
    A = g.to_scipy().tocoo()
    neg = A.data * r.sigma[A.row] * r.sigma[A.col] < 0
    assert r.frustrated.frustrated_weight.sum() == pytest.approx(np.abs(A.data[neg]).sum())
    assert r.frustrated.frustrated_weight.sum() / r.frustrated.abs_weight.sum() == \
        pytest.approx(r.frustration)
    path = r.save(tmp_path / "new" / "res")     # the folder is made, as README's save("out/res")
    back = FrustrationResult.load(path)
    np.testing.assert_array_equal(back.sigmas, r.sigmas)
    assert back.frustration == r.frustration
    df = r.to_frame()
    assert list(df.replica) == [0, 1, 2, 3] and np.allclose(df.energy, r.energies)
    r.save(tmp_path / "other" / "res.parquet")
    assert pd.read_parquet(tmp_path / "other" / "res.parquet").energy.tolist() == df.energy.tolist()
    # a dot inside the name is part of it: seed.1 and seed.2 are two results, not one
    # file written twice; a given .npz / .json ending names the same pair
    r2 = deepglass.frustration(g, replicas=2, seed=3)
    assert r.save(tmp_path / "seed.1") == tmp_path / "seed.1.npz"
    r2.save(tmp_path / "seed.2")
    assert FrustrationResult.load(tmp_path / "seed.1").seed == 2
    assert FrustrationResult.load(tmp_path / "seed.2.json").seed == 3
    assert r2.save(tmp_path / "b.npz") == tmp_path / "b.npz" and (tmp_path / "b.json").exists()


def test_sparse_block_updates_match_explicit():
    """Sparse column updates (long tail) of every block kind equal the explicit block."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                        nn.AvgPool2d(2, ceil_mode=True), nn.Conv2d(4, 3, 2, dilation=2),
                        nn.Flatten(), nn.Linear(3, 2))
    g = SignedGraph.from_module(net, (2, 9, 9), dtype=torch.float64)
    blocks = list(g.edge_blocks)
    blocks += [LocallyConnectedBlock(b, torch.randn(*b.weight.shape, *b.out_shape[1:],
                                                   dtype=torch.float64))
               for b in g.edge_blocks if isinstance(b, ConvBlock)]
    for b in blocks:
        i, j, w = b.coo()
        M = sp.coo_matrix((w, (i, j)), shape=(b.in_size, b.out_size)).toarray()
        idx = torch.randperm(b.in_size)[:4]
        v = torch.randn(len(idx), dtype=torch.float64)
        e, o, c = b.sparse_apply(idx, v)
        y = torch.zeros(b.out_size, dtype=torch.float64).index_add_(0, o, c)
        x = np.zeros(b.in_size)
        x[idx.numpy()] = v.numpy()
        np.testing.assert_allclose(y.numpy(), x @ M, atol=1e-12)
        idx = torch.randperm(b.out_size)[:4]
        v = torch.randn(len(idx), dtype=torch.float64)
        e, o, c = b.sparse_adjoint(idx, v)
        xx = torch.zeros(b.in_size, dtype=torch.float64).index_add_(0, o, c)
        y = np.zeros(b.out_size)
        y[idx.numpy()] = v.numpy()
        np.testing.assert_allclose(xx.numpy(), M @ y, atol=1e-12)
        X = torch.randn(2, *b.in_shape, dtype=torch.float64)
        np.testing.assert_allclose(b.apply(X).reshape(2, -1).numpy(),
                                   X.reshape(2, -1).numpy() @ M, atol=1e-12)


def test_cli_engine_option(cli):
    import json

    code, text, _ = cli(["frustration", "digits_cnn", "--replicas", "3", "--json"])
    assert code == 0 and json.loads(text)["engine"] == "compiled"
    code, text, _ = cli(["frustration", "digits_cnn", "--replicas", "3", "--json",
                         "--engine", "matrix-free"])
    out = json.loads(text)
    assert code == 0 and out["engine"] == "matrix-free" and out["local_min"]
    code, _, err = cli(["frustration", "digits_cnn", "--engine", "gpu"])
    assert code == 2 and "--engine" in err and len(err.splitlines()) == 1
    code, _, err = cli(["frustration", "digits_cnn", "--method", "greedy", "--engine", "compiled"])
    assert code == 2 and "--method descent" in err


class _Geometries(nn.Module):
    """Stride, padding, dilation, groups, 1-d convolutions, a residual sum,
    pooling and flattened dense layers: every stencil geometry and the CSR rest."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)
        self.conv3 = nn.Conv1d(4, 2, 2, stride=2)
        self.conv4 = nn.Conv1d(2, 2, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(2 * 10, 3)
        self.fc2 = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        y = torch.relu(self.conv1(x))                      # 4 x 5 x 4
        y = torch.relu(self.conv2(y) + y)
        z = torch.relu(self.conv3(y.flatten(2)))           # 4 x 20 -> 2 x 10
        z = self.conv4(z)
        return self.fc1(z.flatten(1)) + self.fc2(self.pool(y).flatten(1))


class _Concats(nn.Module):
    """Convolutions that read a concatenation of two blocks, a chunk of a
    block's channels (also under groups) and a channel shuffle: stencils per
    part of their input (the compiled engine's source parts)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 1)
        self.cat_conv = nn.Conv2d(5, 4, 3, padding=1)
        self.chunk_conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.group_conv = nn.Conv2d(2, 2, 3, padding=1, groups=2)
        self.shuffle_conv = nn.Conv2d(4, 2, (1, 3), padding=(0, 1))
        self.fc = nn.Linear(3 * 3 * 3 + 2 * 6 * 6 + 2 * 6 * 6, 3)

    def forward(self, x):
        a, b = torch.relu(self.a(x)), torch.relu(self.b(x))
        y = torch.relu(self.cat_conv(torch.cat([a, b], 1)))             # 4 x 6 x 6
        c1, c2 = y.chunk(2, 1)
        z = torch.relu(self.chunk_conv(c2))                              # 3 x 3 x 3
        w = torch.relu(self.group_conv(c1))
        shuffled = y.reshape(-1, 2, 2, 6, 6).transpose(1, 2).reshape(-1, 4, 6, 6)
        v = self.shuffle_conv(shuffled)
        return self.fc(torch.cat([z.flatten(1), w.flatten(1), v.flatten(1)], 1))


class _GroupedParts(nn.Module):
    """Grouped convolutions whose input is not one block's channels in order
    (ShuffleNet V1): a grouped 1x1 convolution and a grouped 3x3 one of a
    channel shuffle, a grouped one of a concatenation whose first group
    takes channels of both blocks, and a grouped transposed convolution of a
    concatenation: stencils of whole groups in order (a depthwise and a grouped
    convolution of a concatenation: one per block), else of one group each."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 4, 1)
        self.gconv = nn.Conv2d(6, 4, 1, groups=2)                  # of a concatenation
        self.shuffled_1x1 = nn.Conv2d(4, 6, 1, groups=2)
        self.shuffled_3x3 = nn.Conv2d(6, 3, 3, padding=1, groups=3)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2)  # of a concatenation
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)         # whole groups of each block
        self.g3 = nn.Conv2d(6, 3, 1, groups=3)
        self.fc = nn.Linear(3 * 5 * 5 + 4 * 10 * 10 + 6 * 5 * 5 + 3 * 5 * 5, 3)

    def forward(self, x):
        a, b = torch.relu(self.a(x)), torch.relu(self.b(x))
        y = torch.relu(self.gconv(torch.cat([a, b], 1)))                   # 4 x 5 x 5
        s = y.reshape(-1, 2, 2, 5, 5).transpose(1, 2).reshape(-1, 4, 5, 5)
        z = torch.relu(self.shuffled_1x1(s))                               # 6 x 5 x 5
        t = z.reshape(-1, 3, 2, 5, 5).transpose(1, 2).reshape(-1, 6, 5, 5)
        v = torch.relu(self.shuffled_3x3(t))                               # 3 x 5 x 5
        u = self.up(torch.cat([a, b], 1))                                  # 4 x 10 x 10
        d, e = self.dw(torch.cat([a, b], 1)), self.g3(torch.cat([a, b], 1))
        return self.fc(torch.cat([v.flatten(1), u.flatten(1), d.flatten(1), e.flatten(1)], 1))


class _RadixSum(nn.Module):
    """Branches stacked and summed (selective kernels, split attention): the sum's
    node block is an image of channels, so the convolution reading it is a stencil."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(2, 4, 3, padding=2, dilation=2)
        self.conv = nn.Conv2d(4, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 5 * 5, 3)

    def forward(self, x):
        y = torch.stack([torch.relu(self.a(x)), torch.relu(self.b(x))], 1).sum(1)
        return self.fc(torch.relu(self.conv(y)).flatten(1))


class _Padded(nn.Module):
    """Convolutions of reflect-, replicate- and circular-padded values (CycleGAN's
    ReflectionPad2d, ``padding_mode``), with stride, dilation, groups, zero
    padding besides and an asymmetric pad: stencils of the blocks inside the
    padding, the padding elements' edges explicit."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3)
        self.b = nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="replicate")
        self.c = nn.Conv2d(4, 2, (3, 2), padding=(2, 1), dilation=(2, 1), padding_mode="circular")
        self.d = nn.Conv2d(2, 2, 3, padding=1, groups=2)
        self.fc = nn.Linear(2 * 5 * 7, 3)

    def forward(self, x):
        y = torch.relu(self.a(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")))
        z = torch.relu(self.b(y))                                       # 4 x 3 x 4
        w = torch.relu(self.c(z))                                       # 2 x 3 x 5
        v = self.d(torch.nn.functional.pad(w, (2, 0, 1, 1), mode="reflect"))   # 2 x 5 x 7
        return self.fc(torch.relu(v).flatten(1))


class _PreNorm(nn.Module):
    """Batch norms before convolutions and before a dense head (pre-activation
    blocks, DenseNet): their scales fold into the stencils' weights.  eps = 0
    and unit variances keep the folded weights integers (exact arithmetic)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4, eps=0.0)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(4, eps=0.0)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        y = torch.relu(self.conv1(x))            # a norm after the activation cannot fold
        y = torch.relu(self.conv2(self.bn1(y)))  # back: it scales the next layer's sources
        return self.fc(self.bn2(y).flatten(1))


class _Transposed(nn.Module):
    """Transposed convolutions (decoders): stride, output padding, dilation,
    groups, a batch norm before one (a folded source scale) and after
    another (folded into its output), one that reads a concatenation and one
    a chunk of a block's channels; they
    run as stencils of the convolution from their destination back to their
    source (parts)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4, eps=0.0)
        self.up1 = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.up2 = nn.ConvTranspose2d(4, 2, 2, stride=1, dilation=2)
        self.bn2 = nn.BatchNorm2d(2, eps=0.0)
        self.side = nn.Conv2d(4, 2, 3, padding=1)
        self.up3 = nn.ConvTranspose2d(6, 2, 3, stride=2, padding=1)
        self.up4 = nn.ConvTranspose2d(2, 2, 2, stride=2)
        self.fc = nn.Linear(2 * 8 * 10 + 2 * 11 * 15 + 2 * 12 * 16, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x))                          # 4 x 3 x 4
        y = torch.relu(self.up1(self.bn(y)))                  # 4 x 6 x 8
        z = torch.relu(self.bn2(self.up2(y)))                 # 2 x 8 x 10
        u = self.up3(torch.cat([torch.relu(self.side(y)), y], 1))   # a decoder's skip: 2 x 11 x 15
        t = self.up4(y[:, 2:])                                # a chunk: 2 x 12 x 16
        return self.fc(torch.cat([z.flatten(1), u.flatten(1), t.flatten(1)], 1))


class _Volumes(nn.Module):
    """3-d convolutions (the depth axis of the stencils): stride, asymmetric
    kernel, padding and dilation per axis, groups, a residual sum, a 1x1x1
    convolution, a transposed one and a flattened dense head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(2, 4, (3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1))
        self.conv2 = nn.Conv3d(4, 4, 3, padding=(2, 1, 2), dilation=(2, 1, 2), groups=2)
        self.conv3 = nn.Conv3d(4, 3, 1)
        self.up = nn.ConvTranspose3d(3, 2, (2, 3, 2), stride=(2, 1, 2), padding=(0, 1, 0))
        self.fc = nn.Linear(2 * 6 * 4 * 6, 2)

    def forward(self, x):
        y = torch.relu(self.conv1(x))                      # 4 x 3 x 4 x 3
        y = torch.relu(self.conv2(y) + y)
        return self.fc(self.up(torch.relu(self.conv3(y))).flatten(1))


def test_auto_method_rule_and_its_run():
    from deepglass.solve import EXPLICIT_LIMIT, choose_method

    g = _tiny_dag(4)
    assert choose_method(EXPLICIT_LIMIT) == "greedy"
    assert choose_method(EXPLICIT_LIMIT + 1) == "descent"
    assert choose_method(g, explicit_limit=g.n_edges) == "greedy"
    assert choose_method(g, explicit_limit=g.n_edges - 1) == "descent"
    assert choose_method(g.n_edges + 10**9, "exact") == "exact"   # a named method stays
    with pytest.raises(DeepglassError, match="unknown method"):
        choose_method(g, "magic")
    # "auto" on a small graph runs Algorithm 1 from the same start gauges as "greedy"
    auto = deepglass.frustration(g, method="auto", replicas=4, seed=3)
    greedy = deepglass.frustration(g, method="greedy", replicas=4, seed=3)
    assert auto.method == "greedy"
    np.testing.assert_array_equal(auto.sigmas, greedy.sigmas)
    np.testing.assert_allclose(auto.energies, _explicit_energy(g.to_scipy_sym(), auto.sigmas))


def test_auto_method_drops_a_descent_engine_a_named_method_refuses_it():
    g = _tiny_dag(5)
    r = deepglass.frustration(g, method="auto", replicas=2, engine="compiled")
    assert r.method == "greedy" and "engine" not in r.info
    assert deepglass.frustration(g, method="greedy", replicas=2, engine="auto").method == "greedy"
    with pytest.raises(DeepglassError, match="applies to --method descent"):
        deepglass.frustration(g, method="greedy", replicas=2, engine="compiled")


def test_whole_solve_on_one_thread_for_a_small_graph_then_restored():
    from deepglass.solve import threads_for

    g = _tiny_dag(6)
    before = torch.get_num_threads()
    seen = []
    r = deepglass.frustration(g, method="descent", replicas=2, engine="matrix-free",
                              callback=lambda *a: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {1} and r.method == "descent"
    assert torch.get_num_threads() == before
    with threads_for(g, small_edges=g.n_edges):       # not small: the setting is kept
        assert torch.get_num_threads() == before


def test_auto_method_everywhere_a_method_is_taken(cli, tmp_path):
    """``auto`` is one rule (solve.choose_method): the single run, the
    experiment (which records the method that ran) and the command line."""
    import json

    from torch import nn

    from deepglass.experiments.frustration import frustration_vs_nulls
    from deepglass.solve import check_method, choose_method

    with pytest.raises(DeepglassError, match="choose auto or one of"):
        check_method("simplex")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    res = frustration_vs_nulls(net, replicas=3, nulls="N1", null_instances=2, method="auto",
                               input_shape=(6,), engine="compiled")
    assert res.config["method"] == choose_method(33) == "greedy"
    assert "engine" not in res.config.get("options", {})
    greedy = frustration_vs_nulls(net, replicas=3, nulls="N1", null_instances=2,
                                  method="greedy", input_shape=(6,))
    np.testing.assert_array_equal(res.runs["energy"], greedy.runs["energy"])
    code, out, err = cli(["frustration", "digits_cnn", "--method", "auto", "--replicas", "2",
                          "--json"])
    assert code == 0, err
    assert json.loads(out)["method"] == "greedy"


@pytest.mark.parametrize("cls,shape,n_stencils", [(_Concats, (2, 6, 6), 7),
                                                   (_PreNorm, (2, 5, 5), 3)])
def test_compiled_engine_on_active_subnetworks_of_concatenations(cls, shape, n_stencils):
    """Masked convolutions that read concatenations, chunks and a channel
    shuffle, or batch-normed sources: the whole layers' part stencils (scales
    folded) with the removed nodes pinned, the same steps as the matrix-free
    engine."""
    from deepglass.experiments.active import active_subgraph
    from deepglass.solve.stencils import stencils

    torch.manual_seed(5)
    net = cls().double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-4, 5, p.shape).double())
    g = SignedGraph.from_module(net, shape, dtype=torch.float64)
    subs = active_subgraph(g, net, torch.randn(2, *shape, dtype=torch.float64))
    kw = dict(gamma=0.9, decay=1.0, threshold="block", tol=0.0)
    for k in range(2):
        sub = subs.subgraph(k)
        st = stencils(sub)
        assert st.pinned is not None and len(st.params) == n_stencils   # every layer's parts
        s0 = torch.from_numpy(deepglass.solve.start_gauges(g.n_nodes, 3, seed=k)).double()
        mf = descent(sub, s0, engine="matrix-free", **kw)
        ex = descent(sub, s0, engine="compiled", **kw)
        assert ex.sweeps > 1
        torch.testing.assert_close(ex.sigma, mf.sigma, rtol=0, atol=0)
        torch.testing.assert_close(ex.fields, mf.fields, rtol=0, atol=0)


@pytest.mark.parametrize("replicas", [0, 2.5, "4", True])
def test_replicas_must_be_an_integer(replicas):
    """``replicas=2.5`` ran 2 and ``"4"`` ran 4 (``int()`` truncated and parsed
    them); the CLI refused both."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(DeepglassError, match="replicas must be an integer >= 1"):
        deepglass.frustration(net, input_shape=(3,), replicas=replicas)


def test_bad_arguments_of_frustration_are_one_line_errors():
    """init=None was an IndexError, float16 a numba error inside the solver, a
    callback that is no function a TypeError after the solve started; given
    start gauges silently overrode replicas."""
    g = _tiny_conv(5)
    n = g.n_nodes
    for kw, msg in [({"init": None}, "init must be 'random', 'paper' or an array"),
                    ({"dtype": torch.float16}, "dtype must be torch.float32 or torch.float64"),
                    ({"callback": 5}, "callback must be callable"),
                    ({"replicas": 4, "init": np.ones((3, n))}, "init holds 3 start gauges but "
                                                              "replicas=4"),
                    ({"init": 2 * np.ones((3, n))}, r"must hold \+1 or -1; "
                                                    f"{3 * n} entries are other values"),
                    ({"init": np.ones((3, n + 1))}, rf"an array \(R, {n}\)")]:
        with pytest.raises(DeepglassError, match=msg):
            deepglass.frustration(g, **kw)
    # descent's options: a NaN tol made every comparison false, and the random
    # starts came back as verified local minima (0 sweeps)
    for kw, msg in [({"tol": float("nan")}, r"tol must be a number in \[0, 1\), got nan"),
                    ({"tol": -1.0}, "tol must be"), ({"gamma": "0.5"}, "gamma must be"),
                    ({"decay": float("nan")}, r"decay must be a number in \[0, 1\]"),
                    ({"sparse_ratio": float("nan")}, "sparse_ratio must be"),
                    ({"max_sweeps": -1}, "max_sweeps must be a non-negative integer"),
                    ({"max_sweeps": 2.5}, "max_sweeps must be"),
                    ({"seed": 2**64}, r"seed must be a non-negative integer below 2\^63")]:
        with pytest.raises(DeepglassError, match=msg):
            deepglass.frustration(g, replicas=2, **kw)
    assert deepglass.frustration(g, replicas=2, tol=np.float32(1e-5), max_sweeps=np.int64(50),
                                 gamma=np.float32(0.9)).local_min.all()
    for kw, msg in [({"method": "exact", "time_limit": "10"}, "time_limit must be a positive"),
                    ({"method": "anneal", "sweeps": 2.5}, "sweeps must be an integer >= 1"),
                    ({"method": "anneal", "t_start": float("nan")}, "need 0 < t_end <= t_start"),
                    ({"method": "anneal", "sweeps": 10**14}, "a schedule of 100,000,000,000,000 "
                                                            "sweeps")]:
        with pytest.raises(DeepglassError, match=msg):
            deepglass.frustration(g, replicas=2, **kw)
    with pytest.raises(DeepglassError, match="limit must be a non-negative integer"):
        g.to_scipy(limit=-1)
    # an explicit solver over the edge limit names the methods that need no matrix
    # (it said 'use the matrix-free operator or pass a larger limit': no CLI option)
    for method in ("greedy", "exact"):
        with pytest.raises(DeepglassError, match=f"method '{method}' needs an explicit matrix: "
                           r".*\(limit 3 edges\); use method 'descent' or 'auto' \(--method "
                           r"descent or auto\)"):
            deepglass.frustration(g, replicas=2, method=method, limit=3)
    # a float16 / bfloat16 graph: a numba or stencil error inside the solver
    for dtype in (torch.float16, torch.bfloat16):
        for kw in ({}, {"engine": "matrix-free"}, {"method": "greedy"}):
            with pytest.raises(DeepglassError, match=f"the graph's weights are {dtype}; the "
                                                     "solvers run in torch.float32"):
                deepglass.frustration(g.to(dtype=dtype), replicas=2, **kw)
    assert deepglass.frustration(g.to(dtype=torch.float16), replicas=2,
                                 dtype=torch.float32).frustration > 0
    # given start gauges set the number of replicas; the default is the paper's 80
    assert len(deepglass.frustration(g, init=np.ones((3, n))).energies) == 3
    assert len(deepglass.frustration(g, replicas=3, init=np.ones((3, n))).energies) == 3
    assert len(deepglass.frustration(g).energies) == 80


def test_a_misspelled_solver_option_is_named_with_the_method_s_options():
    g = _tiny_conv(5)
    with pytest.raises(DeepglassError, match=r"unknown option gama for method 'descent' "
                                             r"\(its options: gamma, decay"):
        deepglass.frustration(g, replicas=2, gama=0.5)
    with pytest.raises(DeepglassError, match=r"unknown option sweeps for method 'greedy'"):
        deepglass.frustration(g, method="greedy", replicas=2, sweeps=3)
    assert deepglass.frustration(g, method="anneal", replicas=2, sweeps=3).method == "anneal"


def _all_positive_cnn(channels=4):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * channels * 8 * 8, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    return net.eval()


@pytest.mark.parametrize("method", ["descent", "anneal", "greedy"])
def test_a_balanced_network_has_frustration_zero_never_below(method):
    """All weights >= 0: the identity gauge frustrates nothing, so delta = 0
    (SPEC §2: eps in [0, 1]).  float32 fields put sigma^T As sigma a rounding
    above the total, and delta came out as -6.5e-9."""
    g = SignedGraph.from_module(_all_positive_cnn(), (3, 16, 16))
    assert float(g.energy(torch.ones(g.n_nodes))) == 0.0
    res = deepglass.frustration(g, method=method, replicas=4)
    assert (res.energies >= 0).all() and res.frustration == 0.0
    assert (res.frustrated["frustrated_weight"] >= 0).all()


def test_a_graph_whose_edges_all_have_weight_zero_is_refused_by_every_method():
    """eps is a fraction of the total |weight|, 0/0 here: descent and anneal gave
    NaN, greedy and exact 0.0.  An active subnetwork of such edges has no delta_x."""
    from deepglass.experiments.active import active_frustration
    from deepglass.experiments.frustration import frustration_vs_nulls

    net = nn.Sequential(nn.Linear(3, 2)).eval()
    nn.init.zeros_(net[0].weight)
    g = SignedGraph.from_module(net, (3,))
    assert g.n_edges == 6
    for method in ("descent", "anneal", "greedy", "exact"):
        with pytest.raises(DeepglassError, match="all 6 edges of the graph have weight 0"):
            deepglass.frustration(g, method=method, replicas=2)
    with pytest.raises(DeepglassError, match="have weight 0"):
        frustration_vs_nulls(net, input_shape=(3,), nulls=["N1"], replicas=2,
                                       null_instances=2)
    assert np.isnan(active_frustration(g, replicas=2)["delta_x"])


def test_weights_whose_fold_overflows_are_refused():
    """Finite parameters whose batch-norm fold does not fit in float32 gave
    inf edges and a NaN frustration, exit code 0."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(),
                        nn.Linear(72, 3)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1e36)
        net[1].weight.fill_(1e3)
    g = SignedGraph.from_module(net, (1, 8, 8))
    with pytest.raises(DeepglassError, match="edge weights overflow torch.float32"):
        deepglass.frustration(g, replicas=2)


def test_equal_samples_within_rounding_get_no_t_test():
    """A balanced network and its N1 nulls (also balanced) solve to eps ~ 1e-8
    of rounding: Welch's test on that noise gave p = 0.005."""
    from deepglass.experiments.frustration_stats import frustration_stats, frustration_verdict

    runs = pd.DataFrame({"kind": ["real"] * 4 + ["N1"] * 3 + ["N3-he"] * 4,
                         "instance": [0] * 4 + [0, 1, 2] + [0, 1, 2, 3], "start": 0,
                         "energy": [1.5e-8] * 4 + [0.0, 1.1e-9, 3.1e-9] + [0.41, 0.43, 0.42, 0.42]})
    stats = frustration_stats(runs)
    n1, n3 = stats.set_index("kind").loc["N1"], stats.set_index("kind").loc["N3-he"]
    assert np.isnan(n1.p) and n3.p < 1e-4
    v = frustration_verdict(stats)
    assert "N1 and the real sample do not differ beyond rounding" in v
    assert v.startswith("The real weights are less frustrated than N3-he")


def test_an_input_shape_given_as_an_array_is_its_sizes():
    """np.array([1, 8, 8]) was refused by the capture, and frustration() met
    NumPy's "truth value of an array is ambiguous" before that."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3)).eval()
    g = SignedGraph.from_module(net, np.array([1, 8, 8]))
    assert g.node_blocks[0].shape == (1, 8, 8)
    a = deepglass.frustration(net, input_shape=np.array([1, 8, 8]), replicas=2)
    b = deepglass.frustration(net, input_shape=(1, 8, 8), replicas=2)
    assert a.frustration == b.frustration


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)
        self.a, self.b = nn.Linear(72, 3), nn.Linear(72, 5)

    def forward(self, x):
        y = self.c(x).flatten(1)
        return self.a(y), self.b(y)


def test_the_command_line_picks_the_output_whose_gauge_it_saves(cli, tmp_path):
    """``deepglass frustration --output`` (the Python call had ``output=``):
    --save stored the first head's sigma_out whatever head was wanted."""
    import json

    torch.manual_seed(0)
    torch.jit.trace(_TwoHeads().eval(), torch.zeros(1, 1, 8, 8)).save(str(tmp_path / "m.pt"))
    base = ["frustration", str(tmp_path / "m.pt"), "--input-shape", "1,8,8", "--replicas", "2"]
    code, out, err = cli(base + ["--output", "1", "--save", str(tmp_path / "r"), "--json"])
    assert code == 0, err
    assert json.loads(out)["output"] == "1"
    saved = np.load(tmp_path / "r.npz")
    assert saved["sigma_out"].shape[-1] == 5
    code, out, err = cli(base + ["--output", "7"])
    assert code == 2 and "no output '7'" in err
    code, out, err = cli(base + ["--output", "1", "--out", str(tmp_path / "run")])
    assert code == 2 and "--output is for a single computation" in err

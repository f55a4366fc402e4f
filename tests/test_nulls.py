"""Null models (SPEC §3): invariants of N1 / N2 / N3, the unshared conv block
against its explicit matrix, the bucket shuffle's uniformity, solvers on nulls."""

from __future__ import annotations

import copy
import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_h
import scipy.sparse as sp
import scipy.stats as st
import torch
import torch.nn as nn

import deepglass
from deepglass import zoo
from deepglass.errors import DeepglassError
from deepglass.experiments import nulls, pooled_edges, shuffle
from deepglass.experiments.nulls import (NULL_GROUPS, NULL_KINDS, NULLS, get_null,
                                         null_model, resolve_nulls)
from deepglass.graph import ConvBlock, DenseBlock, PoolBlock, SignedGraph
from deepglass.graph.unshared import UnsharedConvBlock


def _net(seed=0, bn=False):
    """Padding, stride, groups, dilation, pooling and dense: every N2 case."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2)]
    layers += [nn.BatchNorm2d(4)] if bn else []
    layers += [nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True), nn.Conv2d(4, 3, 2, dilation=2,
                                                                     padding=(1, 2)),
               nn.Flatten(), nn.Linear(45, 2)]
    net = nn.Sequential(*layers).eval()
    if bn:   # non-trivial statistics, some negative scales
        with torch.no_grad():
            net[1].weight.copy_(torch.tensor([1.5, -0.5, 2.0, 0.7]))
            net[1].running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 3.0]))
    net.default_input_shape = (2, 9, 9)
    return net


def _graph(net, dtype=torch.float64):
    return SignedGraph.from_module(net, net.default_input_shape, dtype=dtype)


def _weight_modules(net):
    return [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _block_coo(b):
    i, j, w = b.coo()
    return sp.coo_matrix((w, (i, j)), shape=(b.in_size, b.out_size)).tocsr()


# ---- the front end -----------------------------------------------------------------------
def test_kinds_names_and_errors():
    net = _net()
    assert NULL_KINDS == ("N1", "N2", "N3-xavier", "N3-he")
    assert deepglass.null_model is null_model
    for name in ("n1", "N3-XAVIER", "n3-He"):
        assert isinstance(null_model(net, name), nn.Module)
    with pytest.raises(DeepglassError,
                       match=r"'N3' names 2 null models \(N3-xavier, N3-he\); choose one of them$"):
        null_model(net, "N3")     # not "choose one of ..., random-order", which null_model refuses
    with pytest.raises(DeepglassError, match="partial order, not of the weights"):
        null_model(net, "random-order")
    with pytest.raises(DeepglassError, match="seed"):
        null_model(net, "N1", seed=-1)
    with pytest.raises(DeepglassError, match="nn.Module or a SignedGraph"):
        null_model("alexnet", "N1")
    bare = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(DeepglassError, match="input_shape"):
        null_model(bare, "N2")
    assert null_model(bare, "N2", input_shape=(3,)).n_edges == 6


# ---- the registry ------------------------------------------------------------------------
def test_registry_names_aliases_and_groups():
    assert list(NULLS) == ["N1", "N2", "N3-xavier", "N3-he", "random-order"]
    assert NULL_KINDS == tuple(n for n, r in NULLS.items() if r.acts_on == "weights")
    assert NULL_GROUPS["N3"] == ("N3-xavier", "N3-he")  # SPEC §3: N3 is both draws
    for rec in NULLS.values():
        for alias in (rec.name, rec.name.upper(), *rec.aliases, *(a.upper() for a in rec.aliases)):
            assert get_null(f" {alias} ") is rec
        assert rec.description and rec.color
    assert len({r.color for r in NULLS.values()}) == len(NULLS)
    assert [r.acts_on for r in NULLS.values()] == ["weights"] * 4 + ["gauge"]
    assert resolve_nulls("n1, N3-KAIMING,N3 ,none,,n1") == ("N1", "N3-he", "N3-xavier")
    assert resolve_nulls(["random-gauge", "xavier"]) == ("random-order", "N3-xavier")
    assert resolve_nulls("all", allowed=NULL_KINDS) == NULL_KINDS
    assert resolve_nulls(None) == () == resolve_nulls("")
    with pytest.raises(DeepglassError) as e:
        resolve_nulls("N1,N7")
    assert str(e.value) == ("unknown null model 'N7'; choose from N1, N2, N3-xavier, N3-he, "
                            "random-order, N3 (= N3-xavier + N3-he), all")
    with pytest.raises(DeepglassError, match="'random-order' does not apply to frustration"):
        resolve_nulls("N1,random-order", allowed=NULL_KINDS, use="frustration")
    with pytest.raises(DeepglassError, match="'N3' does not apply to x; choose from N3-he, all"):
        resolve_nulls("N3", allowed=("N3-he",), use="x")
    with pytest.raises(DeepglassError, match="unknown null model"):
        get_null(3)
    with pytest.raises(ValueError):   # a record is a null of the weights or of the gauge
        nulls.NullModel("bad", "both", "k", graph=lambda g, s: g, gauge=lambda a, b, s: (a, b))


def _sorted_edges(g):
    vals = [b.coo()[2] for b in g.edge_blocks if b.kind != "pool"]
    return np.sort(np.concatenate(vals))


@pytest.mark.parametrize("name", list(NULLS))
def test_every_record_draws_its_null(name):
    """Each record's transforms give the draw its description states."""
    rec = NULLS[name]
    net = _net()
    g = _graph(net, torch.float32)   # the module's dtype: N3 draws the same numbers
    if rec.acts_on == "gauge":   # random order: +-1 entries, keyed by the seed, balanced
        s_in, s_out = rec.gauge(4000, 10, 3)
        assert s_in.shape == (4000,) and s_out.shape == (10,)
        assert set(np.unique(s_in)) == {-1, 1} and np.isin(s_out, (-1, 1)).all()
        again = rec.gauge(4000, 10, 3)
        assert np.array_equal(again[0], s_in) and not np.array_equal(rec.gauge(4000, 10, 4)[0], s_in)
        assert abs(s_in.mean()) < 5 / np.sqrt(4000)    # fair coin: sd 1/sqrt(n)
        return
    h = rec.graph(g, 5)
    assert h.meta["null"] == name and h.n_edges == g.n_edges
    if name == "N2":   # the pooled conv + dense edge weights, dealt out over the same edges
        np.testing.assert_array_equal(_sorted_edges(h), _sorted_edges(g))
        assert rec.module is None
        return
    m = rec.module(net, 5)
    for (lname, layer), (_, new) in zip(_weight_modules(net), _weight_modules(m)):
        w, w1 = layer.weight.detach(), new.weight.detach()
        if name == "N1":   # a permutation of each layer's weights: same sorted values
            assert torch.equal(w.flatten().sort().values, w1.flatten().sort().values)
            assert not torch.equal(w, w1) and torch.equal(layer.bias, new.bias)
        else:              # fresh draws: bounded (Xavier) or normal (He), biases 0
            rf = w[0, 0].numel()
            fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
            if name == "N3-xavier":
                assert w1.abs().max() <= np.sqrt(6 / (fan_in + fan_out))
            else:
                assert st.kstest(w1.numpy().ravel() * np.sqrt(fan_in / 2), "norm").pvalue > 1e-4
            assert torch.count_nonzero(new.bias) == 0
    # the module's and the graph's draws agree layer by layer (keyed by layer name)
    assert (_graph(m, torch.float32).to_scipy() != h.to_scipy()).nnz == 0


def test_doctests():
    assert doctest.testmod(nulls, raise_on_error=True).attempted >= 2


def test_same_seed_same_null_other_seed_other_null():
    net = _net(bn=True)
    g = _graph(net)
    for kind in ("N1", "N3-xavier", "N3-he"):
        a, b, c = (null_model(net, kind, seed=s) for s in (4, 4, 5))
        for (n, ma), (_, mb), (_, mc) in zip(*map(_weight_modules, (a, b, c))):
            assert torch.equal(ma.weight, mb.weight), (kind, n)
            assert not torch.equal(ma.weight, mc.weight), (kind, n)
    for kind in NULL_KINDS:
        A, B, C = (null_model(g, kind, seed=s).to_scipy() for s in (4, 4, 5))
        assert (A != B).nnz == 0 and (A != C).nnz > 0, kind


# ---- N1 ----------------------------------------------------------------------------------
def test_n1_module_permutes_each_layer_and_keeps_the_rest():
    net = zoo.get("digits_cnn")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    n1 = null_model(net, "N1", seed=2)
    assert n1 is not net and n1.default_input_shape == net.default_input_shape
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])                                 # original untouched
    for (name, m), (_, m1) in zip(_weight_modules(net), _weight_modules(n1)):
        assert torch.equal(m.weight.flatten().sort().values, m1.weight.flatten().sort().values)
        assert not torch.equal(m.weight, m1.weight), name
        assert torch.equal(m.bias, m1.bias)


@pytest.mark.parametrize("how", ["weight_norm", "spectral_norm", "orthogonal", "old_spectral"])
def test_nulls_of_a_module_with_parametrized_weights(how):
    """N1 / N3 of a net whose weights a parametrization computes (weight norm,
    spectral norm): the draws were copied into the recomputed weight and lost,
    so the null was the real network.  N1 now permutes the weights the
    parametrization computes, N3 draws anew, and the original is untouched."""
    from torch.nn.utils import parametrizations as P

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 4))
    for i in (0, 3):
        if how == "old_spectral":        # the hook form: weight recomputed before each forward
            torch.nn.utils.spectral_norm(net[i])
        else:
            getattr(P, how)(net[i])
    net.eval()
    x = torch.randn(2, 2, 6, 6)
    with torch.no_grad():
        y, weights = net(x), [net[i].weight.clone() for i in (0, 3)]
    n1, n3 = null_model(net, "N1", seed=3), null_model(net, "N3-he", seed=3)
    for i, w in zip((0, 3), weights):
        assert torch.equal(n1[i].weight.flatten().sort().values, w.flatten().sort().values)
        assert not torch.equal(n1[i].weight, w) and not torch.equal(n3[i].weight, w)
        assert n1[i].weight.shape == n3[i].weight.shape == w.shape
    with torch.no_grad():                            # the original still computes the same
        assert torch.equal(net(x), y) and all(torch.equal(net[i].weight, w)
                                               for i, w in zip((0, 3), weights))
    graphs = [SignedGraph.from_module(m, (2, 6, 6), dtype=torch.float64) for m in (n1, net)]
    assert (graphs[0].to_scipy() != graphs[1].to_scipy()).nnz > 0


def test_n1_keeps_weight_sharing():
    """The explicit graph of the N1 module is the Toeplitz matrix of the permuted
    kernels: identical to the graph-level N1 (same keyed permutation per layer)."""
    net = _net()
    g = _graph(net)
    A_module = _graph(null_model(net, "N1", seed=7)).to_scipy()
    g1 = null_model(g, "N1", seed=7)
    A_graph = g1.to_scipy()
    assert (A_module != A_graph).nnz == 0
    for b, b1 in zip(g.edge_blocks, g1.edge_blocks):
        M, M1 = _block_coo(b), _block_coo(b1)
        assert np.array_equal(M.indptr, M1.indptr) and np.array_equal(M.indices, M1.indices)
        if isinstance(b, ConvBlock):   # every edge carries an entry of the permuted kernel
            assert type(b1) is ConvBlock
            assert np.isin(M1.data, b1.weight.numpy()).all()
            assert np.array_equal(np.sort(b1.weight.numpy().ravel()),
                                  np.sort(b.weight.numpy().ravel()))
        if isinstance(b, PoolBlock):
            assert b1 is b


def test_n1_of_a_graph_permutes_folded_batchnorm_weights():
    g = _graph(_net(bn=True))
    g1 = null_model(g, "N1", seed=0)
    for b, b1 in zip(g.edge_blocks, g1.edge_blocks):
        if isinstance(b, (ConvBlock, DenseBlock)):
            assert torch.equal(b.weight.flatten().sort().values, b1.weight.flatten().sort().values)


# ---- N2 ----------------------------------------------------------------------------------
def _n2_checks(g, g2):
    A, A2 = g.to_scipy(), g2.to_scipy()
    # same topology
    assert np.array_equal(A.indptr, A2.indptr) and np.array_equal(A.indices, A2.indices)
    weighted, moved = [], 0
    for b, b2 in zip(g.edge_blocks, g2.edge_blocks):
        M, M2 = _block_coo(b), _block_coo(b2)
        assert np.array_equal(M.indptr, M2.indptr) and np.array_equal(M.indices, M2.indices)
        if isinstance(b, (ConvBlock, DenseBlock)):
            assert isinstance(b2, UnsharedConvBlock if isinstance(b, ConvBlock) else DenseBlock)
            assert b2.n_edges() == b.n_edges() and b2.in_scale is None
            weighted.append((M.data, M2.data))
            moved += int((M.data != M2.data).sum())
        else:                                    # pooling edges untouched
            assert (M != M2).nnz == 0
    # the multiset of conv + dense edge weights (scales folded in) is kept exactly
    real = np.sort(np.concatenate([w for w, _ in weighted]))
    null = np.sort(np.concatenate([w for _, w in weighted]))
    assert np.array_equal(real, null)
    assert moved > 0.9 * len(real)


@pytest.mark.parametrize("bn", [False, True])
def test_n2_keeps_topology_and_edge_weight_multiset(bn):
    g = _graph(_net(bn=bn))
    _n2_checks(g, null_model(g, "N2", seed=1))


def test_n2_with_source_scales_and_bucket_shuffle(monkeypatch):
    """Batch norm on the input gives the conv block source scales: N2 pools the
    scaled edge weights.  A small bucket size forces the Rao-Sandelius path."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(48, 4)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([2.0, -0.5]))
    g = SignedGraph.from_module(net, (2, 8, 8), dtype=torch.float64)
    assert any(b.in_scale is not None for b in g.edge_blocks)
    monkeypatch.setattr(shuffle, "_BUCKET", 32)
    monkeypatch.setattr(pooled_edges, "_PIECE", 100)
    assert g.n_edges > 2 * 32
    _n2_checks(g, null_model(g, "N2", seed=0))


@pytest.mark.parametrize("bn", [False, True])
def test_n2_dealt_where_the_graph_lives(bn):
    """The device path of N2 (pooled weights permuted by torch.randperm where the
    graph lives), run here on the CPU: same topology, same weight multiset,
    padding slots empty; keyed by the seed."""
    g = _graph(_net(bn=bn))
    weighted = [nulls._check_block(b, "N2") for b in g.edge_blocks]
    blocks = pooled_edges._n2_blocks_torch(g, weighted, seed=5)
    g2 = g.replace_edge_blocks(blocks)
    _n2_checks(g, g2)
    for b in blocks:
        if isinstance(b, UnsharedConvBlock):
            assert not b.edge_weight[~b.valid_mask()[:, None, :].expand(
                b.edge_weight.shape)].any()
    again = pooled_edges._n2_blocks_torch(g, weighted, seed=5)
    other = pooled_edges._n2_blocks_torch(g, weighted, seed=6)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, g.n_nodes)))
    y = g2.sym_matvec(x)
    assert torch.equal(y, g.replace_edge_blocks(again).sym_matvec(x))
    assert not torch.equal(y, g.replace_edge_blocks(other).sym_matvec(x))


def test_n2_of_digits_cnn_module():
    net = zoo.get("digits_cnn")
    g2 = null_model(net, "N2", seed=0)
    assert isinstance(g2, SignedGraph) and g2.meta["null"] == "N2"
    _n2_checks(SignedGraph.from_module(net, net.default_input_shape), g2)


class _Counting:
    """An edge source whose weights are ids ``start, start + 1, ...``, in pieces of 7."""

    def __init__(self, n, start=0):
        self.n, self.start = n, start

    def sizes(self):
        return [min(7, self.n - s) for s in range(0, self.n, 7)]

    def pieces(self):
        for s in range(0, self.n, 7):
            yield self.start + np.arange(s, min(self.n, s + 7), dtype=np.float64)


@pytest.mark.parametrize("bucket,sub", [(4, 4096), (8, 2)])
def test_bucket_shuffle_is_a_uniform_permutation(monkeypatch, bucket, sub):
    """Both Rao-Sandelius levels (buckets, then sub-buckets) and Fisher-Yates."""
    monkeypatch.setattr(shuffle, "_BUCKET", bucket)
    monkeypatch.setattr(shuffle, "_SUB_BUCKET", sub)
    n, draws = 20, 1000
    pos = np.zeros((n, n))
    pairs = np.zeros(n)
    for seed in range(draws):
        out = shuffle.shuffled_pool([_Counting(8), _Counting(12, start=8)], np.float64, seed)
        assert np.array_equal(np.sort(out), np.arange(n))
        pos[out.astype(int), np.arange(n)] += 1
        pairs[int(np.nonzero(out == 0)[0][0] - np.nonzero(out == 1)[0][0]) % n] += 1
    # every element is equally likely at every position, and the relative offset
    # of two elements is uniform over the n - 1 nonzero values
    assert st.chisquare(pos.ravel()).pvalue > 1e-4
    assert pairs[0] == 0 and st.chisquare(pairs[1:]).pvalue > 1e-4


# ---- the unshared conv block -------------------------------------------------------------
GEOMETRIES = [  # (nd, C_in, C_out, size, kernel, stride, padding, dilation, groups)
    (1, 2, 4, (11,), (3,), (2,), [(1, 2)], (1,), 2),
    (2, 2, 3, (7, 6), (3, 2), (1, 2), [(1, 1), (0, 1)], (2, 1), 1),
    (2, 4, 4, (5, 5), (3, 3), (2, 2), [(1, 1), (1, 1)], (1, 1), 4),
    (3, 2, 2, (4, 5, 3), (2, 3, 2), (1, 2, 1), [(1, 0), (1, 1), (0, 1)], (1, 1, 2), 1),
]


def _check_unshared(geom, seed, R=3):
    """Every operation of a random UnsharedConvBlock against its explicit matrix."""
    nd, c_in, c_out, size, k, s, pad, dil, groups = geom
    torch.manual_seed(seed)
    out = [(L + lo + hi - d * (kk - 1) - 1) // ss + 1
           for L, (lo, hi), d, kk, ss in zip(size, pad, dil, k, s)]
    conv = ConvBlock(torch.randn(c_out, c_in // groups, *k, dtype=torch.float64),
                     (c_in, *size), (c_out, *out), s, pad, dil, groups)
    L, K = int(np.prod(out)), c_in // groups * int(np.prod(k))
    b = UnsharedConvBlock(conv, torch.randn(L, c_out, K, dtype=torch.float64))
    M = _block_coo(b).toarray()                                         # (in, out)
    assert b.n_edges() == conv.n_edges() == _block_coo(b).nnz
    x = torch.randn(R, *b.in_shape, dtype=torch.float64)
    y = torch.randn(R, *b.out_shape, dtype=torch.float64)
    x[torch.rand(x.shape) < 0.5] = 0     # zero rows are skipped by the kernels
    y[torch.rand(y.shape) < 0.5] = 0
    for absolute, Mx in ((False, M), (True, np.abs(M))):
        got = b.apply(x, absolute).reshape(R, -1).numpy()
        assert np.allclose(got, x.reshape(R, -1).numpy() @ Mx)
        got = b.adjoint(y, absolute).reshape(R, -1).numpy()
        assert np.allclose(got, y.reshape(R, -1).numpy() @ Mx.T)
    # the valid slots are exactly the edges; the operator ignores padding slots
    mask = b.valid_mask()
    assert int(mask.sum()) * c_out == b.n_edges()
    b0 = UnsharedConvBlock(conv, b.edge_weight * mask[:, None, :])
    assert np.isclose(b0.abs_sum(), np.abs(M).sum())
    b2 = copy.copy(b0)      # the sum is cached with the weights it was taken of
    b2.edge_weight = -3 * b0.edge_weight
    assert np.isclose(b2.abs_sum(), 3 * np.abs(M).sum()) and np.isclose(b0.abs_sum(), np.abs(M).sum())
    assert np.allclose(b0.apply(x).numpy(), b.apply(x).numpy())
    # sparse column updates (the descent's tail)
    idx = torch.randperm(b.in_size)[:5]
    v = torch.randn(len(idx), dtype=torch.float64)
    e, o, c = b.sparse_apply(idx, v)
    got = torch.zeros(b.out_size, dtype=torch.float64).index_add_(0, o, c).numpy()
    assert np.allclose(got, v.numpy() @ M[idx.numpy()])
    idx = torch.randperm(b.out_size)[:5]
    v = torch.randn(len(idx), dtype=torch.float64)
    e, i, c = b.sparse_adjoint(idx, v)
    got = torch.zeros(b.in_size, dtype=torch.float64).index_add_(0, i, c).numpy()
    assert np.allclose(got, M[:, idx.numpy()] @ v.numpy())


@pytest.mark.parametrize("geom", GEOMETRIES)
@pytest.mark.parametrize("mode", ["stream", "gather", "bmm"])
def test_unshared_block_matches_its_explicit_matrix(geom, mode, monkeypatch):
    if mode == "gather":     # the kernel reads only the weights of nonzero inputs
        monkeypatch.setattr("deepglass.graph.unshared.SPARSE_INPUT_FRACTION", 2.0)
    if mode == "bmm":        # the chunked batched-matmul path (GPU), on the CPU
        monkeypatch.setattr(UnsharedConvBlock, "_use_kernels", lambda self, t: False)
        monkeypatch.setattr("deepglass.graph.unshared.CHUNK_ELEMENTS", 64)
    _check_unshared(geom, seed=len(geom[3]) + geom[-1])


@st_h.composite
def conv_geometries(draw):
    nd = draw(st_h.integers(1, 2))
    groups = draw(st_h.sampled_from([1, 2]))
    c_in, c_out = groups * draw(st_h.integers(1, 2)), groups * draw(st_h.integers(1, 3))
    k = tuple(draw(st_h.integers(1, 3)) for _ in range(nd))
    s = tuple(draw(st_h.integers(1, 3)) for _ in range(nd))
    dil = tuple(draw(st_h.integers(1, 2)) for _ in range(nd))
    pad = [(draw(st_h.integers(0, 2)), draw(st_h.integers(0, 2))) for _ in range(nd)]
    # big enough for one output position in every dimension
    size = tuple(draw(st_h.integers(max(1, d * (kk - 1) + 1 - lo - hi), 7))
                 for d, kk, (lo, hi) in zip(dil, k, pad))
    return nd, c_in, c_out, size, k, s, pad, dil, groups


@settings(max_examples=30, deadline=None)
@given(conv_geometries(), st_h.integers(0, 100), st_h.integers(1, 3))
def test_random_unshared_blocks_match_their_explicit_matrix(geom, seed, R):
    _check_unshared(geom, seed, R)


def test_unshared_block_keeps_narrow_storage_when_computing_wide():
    conv = ConvBlock(torch.randn(3, 2, 3, 3), (2, 6, 6), (3, 4, 4), (1, 1), [(0, 0)] * 2,
                     (1, 1), 1)
    b = UnsharedConvBlock(conv, torch.randn(16, 3, 18))
    b64 = b.to(dtype=torch.float64)
    assert b64.edge_weight.dtype == torch.float32 and b64.dtype == torch.float64
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    ref = UnsharedConvBlock(conv, b.edge_weight.double())
    assert b64.apply(x).dtype == torch.float64
    assert torch.allclose(b64.apply(x), ref.apply(x)) and torch.allclose(
        b64.adjoint(ref.apply(x)), ref.adjoint(ref.apply(x)))
    assert b.to(dtype=torch.float16).edge_weight.dtype == torch.float16
    assert "unshared" in b.describe() and b.kind == "unshared_conv"


# ---- N3 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["N3-xavier", "N3-he"])
def test_n3_draws_have_the_standard_variance(kind):
    net = nn.Sequential(nn.Conv2d(48, 64, 3, groups=2), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.Flatten(), nn.Linear(64 * 4 * 4, 300))
    nn.init.constant_(net[1].weight, 3.0)
    net.default_input_shape = (48, 6, 6)
    n3 = null_model(net, kind, seed=0)
    for m in (n3[0], n3[4]):
        w = m.weight.detach().double()
        rf = w[0, 0].numel()
        fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
        var = 2.0 / (fan_in + fan_out) if kind == "N3-xavier" else 2.0 / fan_in
        n = w.numel()
        # sample variance: relative sd sqrt(2/n) (normal), sqrt(0.8/n) (uniform)
        assert abs(w.var().item() / var - 1) < 6 * np.sqrt(2.0 / n)
        assert abs(w.mean().item()) < 6 * np.sqrt(var / n)
        if kind == "N3-xavier":
            assert w.abs().max() <= np.sqrt(3 * var)
        else:
            assert st.kstest(w.numpy().ravel() / np.sqrt(var), "norm").pvalue > 1e-4
        assert torch.count_nonzero(m.bias) == 0
    assert torch.equal(n3[1].weight, torch.ones(64)) and torch.equal(n3[1].running_var,
                                                                      torch.ones(64))
    # the graph-level N3 draws the same weights (keyed by layer name), without batch norm
    g3 = null_model(_graph(net, torch.float32), kind, seed=0)
    assert torch.equal(g3.edge_blocks[0].weight, n3[0].weight.detach())
    # also on a float64 graph (the stream was the dtype's: another draw, same seed)
    g3 = null_model(_graph(net, torch.float64), kind, seed=0)
    assert torch.equal(g3.edge_blocks[0].weight, n3[0].weight.detach().double())


# ---- solvers on the nulls ----------------------------------------------------------------
def _brute(As):
    n = As.shape[0]
    D = As.toarray()
    codes = np.arange(2 ** (n - 1))[:, None]
    S = np.hstack([np.ones((len(codes), 1)), np.where((codes >> np.arange(n - 1)) & 1, -1.0, 1.0)])
    return float((0.5 * (1 - ((S @ D) * S).sum(1) / np.abs(D).sum())).min())


@pytest.mark.parametrize("kind", NULL_KINDS)
def test_solvers_run_on_every_null_and_exact_is_brute_force(kind):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 2, padding=(1, 0)), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(2, 1))
    g = SignedGraph.from_module(net, (1, 2, 3), dtype=torch.float64)
    assert g.n_nodes <= 25
    h = null_model(g, kind, seed=1)
    delta = _brute(h.to_scipy_sym())
    ex = deepglass.frustration(h, method="exact")
    assert ex.frustration == pytest.approx(delta, abs=1e-9)
    for method in ("descent", "anneal", "greedy"):
        r = deepglass.frustration(h, method=method, replicas=3, seed=0)
        assert r.local_min.all() and r.frustration >= delta - 1e-9
        assert r.energies == pytest.approx(h.energy(torch.as_tensor(r.sigmas).double()).numpy())


def test_n2_refuses_what_does_not_fit(monkeypatch):
    import deepglass.solve.greedy as greedy

    monkeypatch.setattr(greedy, "available_memory_bytes", lambda: 10_000)
    with pytest.raises(DeepglassError, match="N2 null of this graph needs about"):
        null_model(_graph(_net()), "N2")


def test_module_without_weight_layers_is_refused():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(2, 3))

        def forward(self, x):
            return torch.nn.functional.linear(x, self.w)

    with pytest.raises(DeepglassError, match="has none; pass its SignedGraph"):
        null_model(Functional(), "N1")
    g = SignedGraph.from_module(Functional(), (3,))
    assert null_model(g, "N1", seed=0).n_edges == 6


@pytest.mark.parametrize("kind", ["N1", "N3-xavier", "N3-he"])
def test_graph_null_of_zero_padded_reads_equals_the_module_null(kind):
    torch.manual_seed(0)
    from shift_nets import ChannelShift

    model = ChannelShift().eval()
    g = SignedGraph.from_module(model, (1, 6, 6))
    assert type(g.edge_blocks[1]).__name__ == "ZeroPaddedBlock"
    on_graph = deepglass.null_model(g, kind, seed=5)
    retraced = SignedGraph.from_module(deepglass.null_model(model, kind, seed=5), (1, 6, 6))
    assert on_graph.n_edges == retraced.n_edges == g.n_edges
    assert abs(on_graph.to_scipy() - retraced.to_scipy()).max() < 1e-6
    with pytest.raises(DeepglassError, match="N2 of a graph is not defined for block 'c2'"):
        deepglass.null_model(g, "N2", seed=5)


def test_protocol_refuses_n2_of_zero_padded_reads_before_any_unit(tmp_path):
    from deepglass.experiments import frustration_vs_nulls
    from shift_nets import ChannelShift

    torch.manual_seed(0)
    with pytest.raises(DeepglassError, match="N2 of a graph is not defined for block 'c2'"):
        frustration_vs_nulls(ChannelShift().eval(), input_shape=(1, 6, 6), replicas=2,
                             null_instances=2, nulls="N1,N2", run=tmp_path / "run")
    assert not (tmp_path / "run").exists()


class _Decoder(nn.Module):
    """A transposed convolution and a bilinear upsampling, as a U-Net's decoder."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 3, 2, stride=2)
        self.c2 = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = torch.relu(self.up(torch.relu(self.c1(x))))
        return self.c2(nn.functional.interpolate(y, scale_factor=2, mode="bilinear"))


@pytest.mark.parametrize("kind", ["N1", "N3-xavier", "N3-he"])
def test_graph_null_of_a_decoder_equals_the_module_null(kind):
    """Upsampling weights are fixed, kept as pooling's are (SPEC §3), and a
    transposed convolution's kernel is drawn as a convolution's: both were
    refused on the graph (the frustration protocol stopped at the first draw)."""
    torch.manual_seed(0)
    model = _Decoder().eval()
    g = SignedGraph.from_module(model, (1, 4, 4))
    assert {b.kind for b in g.edge_blocks} >= {"conv_transpose", "resample"}
    on_graph = deepglass.null_model(g, kind, seed=5)
    retraced = SignedGraph.from_module(deepglass.null_model(model, kind, seed=5), (1, 4, 4))
    assert on_graph.n_edges == retraced.n_edges == g.n_edges
    assert abs(on_graph.to_scipy() - retraced.to_scipy()).max() < 1e-6
    assert abs(on_graph.to_scipy() - g.to_scipy()).max() > 0


def test_n2_deals_a_transposed_convolutions_edges_too():
    """N2 of a decoder (a transposed convolution with a folded batch norm, a
    bilinear upsampling): the same edges, the same multiset of edge weights
    (upsampling's kept), the weights moved, and the matrix-free operator
    equal to the explicit matrix; it was refused."""
    torch.manual_seed(0)
    model = _Decoder().eval()
    model.up = nn.Sequential(model.up, nn.BatchNorm2d(3)).eval()
    with torch.no_grad():
        model.up[1].weight.uniform_(-1, 1)
        model.up[1].running_var.uniform_(0.5, 2.0)
    g = SignedGraph.from_module(model, (1, 4, 4), dtype=torch.float64)
    h = deepglass.null_model(g, "N2", seed=5)
    A, B = g.to_scipy().tocsr(), h.to_scipy().tocsr()
    assert ((A != 0) != (B != 0)).nnz == 0
    np.testing.assert_allclose(np.sort(A.data), np.sort(B.data))
    assert abs(A - B).max() > 0.1
    y = torch.randn(3, g.n_nodes, dtype=torch.float64)
    np.testing.assert_allclose(h.matvec(y).numpy(), (B @ y.numpy().T).T, atol=1e-12)
    for method in ("descent", "greedy"):        # the solvers run on it
        assert 0 <= deepglass.frustration(h, method=method, replicas=2).frustration <= 0.5


def test_layers_computed_from_a_parameter_are_redrawn_too(monkeypatch):
    """A conv computed by F.conv1d on a parameter (a filterbank) is no nn.Conv* to
    redraw: N1 / N3 of the module left it as it was (a null 'network' that was
    partly the real one, compared with itself).  Such a run draws on the graph."""
    import torch.nn.functional as F

    import deepglass.experiments.nulls as nulls_mod
    from deepglass.experiments import frustration_vs_nulls
    from deepglass.experiments.nulls import module_draws_miss

    class Filterbank(nn.Module):
        def __init__(self):
            super().__init__()
            self.filters = nn.Parameter(torch.randn(4, 1, 5))
            self.fc = nn.Linear(4 * 12, 3)

        def forward(self, x):
            return self.fc(F.relu(F.conv1d(x, self.filters)).flatten(1))

    torch.manual_seed(0)
    net = Filterbank().eval()
    g = SignedGraph.from_module(net, (1, 16))
    assert module_draws_miss(net, g) == ["conv1d"]
    drawn = []
    real_null_model = nulls_mod.null_model

    def recording(*a, **k):
        out = real_null_model(*a, **k)
        drawn.append(out)
        return out

    monkeypatch.setattr(nulls_mod, "null_model", recording)
    frustration_vs_nulls(net, input_shape=(1, 16), nulls="N1,N3-he", replicas=2,
                         null_instances=2, starts_per_null=1)
    graphs = [d for d in drawn if isinstance(d, SignedGraph)]
    assert len(graphs) == 4
    conv = next(i for i, b in enumerate(g.edge_blocks) if b.kind == "conv")
    for h in graphs:
        assert not torch.equal(h.edge_blocks[conv].weight.cpu(), g.edge_blocks[conv].weight)


def test_a_module_that_cannot_be_copied_draws_its_nulls_on_the_graph():
    """The older torch.nn.utils.weight_norm hook keeps a non-leaf tensor that
    copy.deepcopy refuses: null_model of the module was a raw traceback (after the
    real units had run, from the command line); now a one-line error, and the
    experiment draws on the graph."""
    import warnings

    from deepglass.experiments import frustration_vs_nulls
    from deepglass.experiments.nulls import null_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        c1 = torch.nn.utils.weight_norm(nn.Conv1d(1, 8, 5, padding=2))
    net = nn.Sequential(c1, nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 4, 5, padding=2)).eval()
    with pytest.raises(DeepglassError, match="cannot be copied .*pass its SignedGraph"):
        null_model(net, "N1", seed=0)
    res = frustration_vs_nulls(net, input_shape=(1, 16), nulls="N1", replicas=2,
                               null_instances=2, starts_per_null=1)
    assert set(res.summary()["frustration"]) == {"real", "N1"}


class _PowerSpectrogram(nn.Module):
    """torch.stft of a stored window, a power spectrogram, a convolution."""

    def __init__(self):
        super().__init__()
        self.register_buffer("win", torch.hann_window(16))
        self.c = nn.Conv1d(9, 3, 3)

    def forward(self, x):
        z = torch.stft(x, 16, 4, window=self.win, center=False, return_complex=True)
        return self.c(torch.view_as_real(z).pow(2).sum(-1))


@pytest.mark.filterwarnings("ignore:activation x \\*\\* 2")
def test_the_fourier_transform_of_a_spectrogram_is_kept_by_every_null():
    """The DFT that capture writes as a layer has the transform's weights, fixed
    as a pool's (SPEC §3): they were drawn over as a functional layer's."""
    torch.manual_seed(0)
    net = _PowerSpectrogram().eval()
    g = SignedGraph.from_module(net, (64,))
    dft = [b for b in g.edge_blocks if b.fixed_weights and b.kind == "conv"]
    assert len(dft) == 1 and nulls.module_draws_miss(net, g) == []
    A = g.to_scipy().tocsc()
    spec = slice(g.node_blocks[1].offset, g.node_blocks[1].stop)     # the DFT's outputs
    conv = slice(g.node_blocks[-1].offset, g.node_blocks[-1].stop)
    for kind in ("N1", "N2", "N3-xavier"):
        B = deepglass.null_model(g, kind, seed=2).to_scipy().tocsc()
        assert abs(A[:, spec] - B[:, spec]).max() == 0, kind
        assert abs(A[:, conv] - B[:, conv]).max() > 0, kind
    n1 = deepglass.null_model(net, "N1", seed=2)        # of the module: the buffer kept
    assert torch.equal(n1.win, net.win) and not torch.equal(n1.c.weight, net.c.weight)

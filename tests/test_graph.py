"""SignedGraph: matrix-free algebra == explicit CSR == the network's own linearization."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepglass.errors import DeepglassError, TooLargeError, UnsupportedLayerError
from deepglass.graph import NonMonotoneActivationWarning, SignedGraph


# ---------------------------------------------------------------------------------
# networks covering every edge-block kind.  ``linear=True`` builds the same network
# with every elementwise layer removed, max pools replaced by average pools (the
# same graph, SPEC §1) and biases zeroed: its input-output map must then be exactly
# the graph's linear propagation v = x_in + A^T v.
class Shuffle(nn.Module):
    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w)
        return torch.transpose(x, 1, 2).contiguous().view(n, c, h, w)


class Zoo(nn.Module):
    """Conv (groups, dilation, stride, 'same', asymmetric F.pad), pools (ceil_mode,
    adaptive), BN with negative scale, residual identity and projection shortcuts,
    concatenation, chunk, channel shuffle, flatten, dense, a conv1d branch."""

    def __init__(self, linear=False, c=4):
        super().__init__()
        self.linear = linear
        self.conv1 = nn.Conv2d(2, c, 3, padding="same", dilation=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2a = nn.Conv2d(c, c, 1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=2)
        self.proj = nn.Conv2d(c, 2 * c, 1, stride=2)
        self.conv3 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(2 * c, 2 * c, (2, 3))      # after an asymmetric pad
        self.shuffle = Shuffle(2)
        self.pool = (nn.AvgPool2d(2, ceil_mode=False) if linear
                     else nn.MaxPool2d(2, ceil_mode=False))
        self.apool = nn.AdaptiveAvgPool2d((2, 3))
        self.conv1d = nn.Conv1d(2 * c, 3, 2, stride=1)
        self.fc = nn.Linear(4 * c * 6 + 3 * 3, 5)
        with torch.no_grad():
            self.bn1.running_mean.zero_()
            self.bn1.running_var.uniform_(0.5, 2.0)
            self.bn1.weight.copy_(torch.tensor([1.0, -2.0, 0.5, -0.7] * (c // 4)))
            self.bn1.bias.zero_()
        if linear:
            for m in self.modules():
                if getattr(m, "bias", None) is not None and not isinstance(m, nn.BatchNorm2d):
                    nn.init.zeros_(m.bias)

    def act(self, x):
        return x if self.linear else F.relu(x)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.conv2(self.act(self.conv2a(x))) + x)   # identity shortcut
        z = self.conv3(y) + self.proj(x)                  # projection shortcut
        z = self.shuffle(self.act(z))
        a, b = torch.chunk(z, 2, dim=1)
        z = torch.cat([b, a], dim=1)
        w = self.conv4(F.pad(z, (1, 1, 0, 1)))            # asymmetric zero padding
        p = self.apool(self.pool(torch.cat([w, z], 1)[:, :, :4, :4]))
        s = self.conv1d(z.mean(3))
        h = torch.cat([torch.flatten(p, 1), torch.flatten(s, 1)], 1)
        return self.fc(self.act(h))


def _propagate(g: SignedGraph, x_in: torch.Tensor) -> torch.Tensor:
    """Node values of the linear network: v = x_in + A^T v, iterated over the DAG."""
    v = torch.zeros(g.n_nodes, dtype=torch.float64)
    inj = torch.zeros_like(v)
    inj[g.input_block.slice] = x_in.reshape(-1)
    for _ in range(len(g.node_blocks)):
        v = inj + g.rmatvec(v)
    return v


def _state_copy(src, dst):
    dst.load_state_dict(src.state_dict())
    for m in dst.modules():
        if getattr(m, "bias", None) is not None and not isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.bias.zero_()


@pytest.fixture(scope="module")
def zoo_graph():
    torch.manual_seed(0)
    net = Zoo().double().eval()
    g = SignedGraph.from_module(net, (2, 8, 8), dtype=torch.float64)
    return net, g


def test_graph_matches_linearized_network(zoo_graph):
    net, g = zoo_graph
    lin = Zoo(linear=True).double().eval()
    _state_copy(net, lin)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    y = lin(x)[0]
    v = _propagate(g, x)
    np.testing.assert_allclose(v[g.output_index].numpy(), y.detach().numpy(), rtol=1e-9,
                               atol=1e-9)


def test_csr_matches_jacobian(zoo_graph):
    """The explicit A reproduces the Jacobian of the linearized network:
    J = E_out^T (I - A^T)^{-1} E_in."""
    net, g = zoo_graph
    lin = Zoo(linear=True).double().eval()
    _state_copy(net, lin)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda t: lin(t)[0], x).reshape(5, -1).numpy()
    A = g.to_scipy()
    n = g.n_nodes
    M = sp.identity(n, format="csc") - A.T.tocsc()
    E_in = np.zeros((n, g.input_block.size))
    E_in[np.arange(g.input_block.size), np.arange(g.input_block.size)] = 1
    V = sp.linalg.spsolve(M, E_in)
    np.testing.assert_allclose(V[g.output_index], J, rtol=1e-8, atol=1e-10)


def test_matrix_free_equals_csr(zoo_graph):
    _, g = zoo_graph
    A = g.to_scipy()
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, g.n_nodes))
    Xt = torch.from_numpy(X)
    np.testing.assert_allclose(g.matvec(Xt).numpy(), (A @ X.T).T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g.rmatvec(Xt).numpy(), (A.T @ X.T).T, rtol=1e-10, atol=1e-10)
    As = (A + A.T).tocsr()
    np.testing.assert_allclose(g.sym_matvec(Xt).numpy(), (As @ X.T).T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g.sym_matvec(Xt, absolute=True).numpy(),
                               (abs(As) @ X.T).T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g.abs_row_sums().numpy(), np.asarray(abs(As).sum(1)).ravel(),
                               rtol=1e-10)
    assert g.abs_total() == pytest.approx(abs(As).sum(), rel=1e-12)
    s = torch.from_numpy(rng.choice([-1.0, 1.0], size=(4, g.n_nodes)))
    eps = 0.5 * (1 - np.einsum("ri,ij,rj->r", s.numpy(), As.toarray(), s.numpy()) / abs(As).sum())
    np.testing.assert_allclose(g.energy(s).numpy(), eps, rtol=1e-10)
    # eps is defined for spins: a relaxed (continuous) vector is refused, not scored
    for bad in (0.5 * s, s.clone().fill_(0)):
        with pytest.raises(DeepglassError, match="sigma must hold spins"):
            g.energy(bad)
        with pytest.raises(DeepglassError, match="sigma must hold spins"):
            g.local_fields(bad)


def test_edge_counts_by_formula(zoo_graph):
    _, g = zoo_graph
    A = g.to_scipy()
    assert g.n_edges == A.nnz == sum(len(b.coo()[0]) for b in g.edge_blocks)
    # each block's formula matches its explicit listing
    for b in g.edge_blocks:
        assert b.n_edges() == len(b.coo()[0])


def test_coloring_separates_adjacent_blocks(zoo_graph):
    _, g = zoo_graph
    colour = {blk: c for c, cls in enumerate(g.coloring()) for blk in cls}
    assert set(colour) == set(range(len(g.node_blocks)))
    for b in g.edge_blocks:
        for s in b.src_blocks:
            assert colour[s] != colour[b.dst]


def test_batchnorm_modes_and_sign(zoo_graph):
    net, g = zoo_graph
    g_ign = SignedGraph.from_module(net, (2, 8, 8), batchnorm="ignore", dtype=torch.float64)
    conv1 = g.edge_blocks[0]
    w_fold = conv1.weight
    w_ign = g_ign.edge_blocks[0].weight
    scale = net.bn1.weight / torch.sqrt(net.bn1.running_var + net.bn1.eps)
    torch.testing.assert_close(w_fold, w_ign * scale.reshape(-1, 1, 1, 1))
    assert (torch.sign(w_fold[1]) == -torch.sign(w_ign[1])).all()   # negative gamma flips signs


# ---------------------------------------------------------------------------------
# random small nets of every block kind (hypothesis)
@st.composite
def conv_nets(draw):
    nd = draw(st.sampled_from([1, 2]))
    c_in = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    c_in *= groups
    c_out = groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.sampled_from([0, 1, 2, "same"]))
    if padding == "same":
        stride = 1
    L = draw(st.integers(max(4, dilation * (k - 1) + 1), 7))
    pool = draw(st.sampled_from(["max", "avg", "adaptive", "none"]))
    pk = draw(st.integers(1, 3))
    ceil = draw(st.booleans())
    return nd, c_in, c_out, k, stride, dilation, padding, groups, L, pool, pk, ceil


def _build(spec):
    nd, c_in, c_out, k, stride, dilation, padding, groups, L, pool, pk, ceil = spec
    Conv = nn.Conv1d if nd == 1 else nn.Conv2d
    layers = [Conv(c_in, c_out, k, stride=stride, padding=padding, dilation=dilation,
                   groups=groups, bias=False), nn.ReLU()]
    conv_out = layers[0](torch.zeros((1, c_in) + (L,) * nd))
    if min(conv_out.shape[2:]) < max(pk, 2):
        pool = "none"
    if pool == "max":
        layers.append((nn.MaxPool1d if nd == 1 else nn.MaxPool2d)(pk, stride=pk, ceil_mode=ceil))
    elif pool == "avg":
        layers.append((nn.AvgPool1d if nd == 1 else nn.AvgPool2d)(pk, ceil_mode=False))
    elif pool == "adaptive":
        layers.append((nn.AdaptiveAvgPool1d if nd == 1 else nn.AdaptiveAvgPool2d)(2))
    layers += [nn.Flatten()]
    net = nn.Sequential(*layers).double()
    shape = (c_in,) + (L,) * nd
    out = net(torch.zeros((1,) + shape, dtype=torch.float64))
    net.append(nn.Linear(out.shape[1], 3, bias=False).double())
    return net, shape


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets())
def test_random_nets_matrix_free_vs_csr_vs_jacobian(spec):
    torch.manual_seed(0)
    net, shape = _build(spec)
    g = SignedGraph.from_module(net, shape, dtype=torch.float64)
    A = g.to_scipy()
    assert g.n_edges == A.nnz
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, g.n_nodes))
    np.testing.assert_allclose(g.matvec(torch.from_numpy(X)).numpy(), (A @ X.T).T, atol=1e-10)
    np.testing.assert_allclose(g.rmatvec(torch.from_numpy(X)).numpy(), (A.T @ X.T).T,
                               atol=1e-10)
    # block by block: each conv block's CSR block equals the Jacobian of the layer itself
    conv = net[0]
    b = g.edge_blocks[0]
    x = torch.randn((1,) + shape, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda t: conv(t), x)
    J = J.reshape(b.out_size, b.in_size).numpy()
    dst = g.node_blocks[b.dst]
    blockA = A[g.input_block.offset:g.input_block.stop, dst.offset:dst.stop].toarray()
    np.testing.assert_allclose(blockA, J.T, atol=1e-12)
    # pools: same pattern as the layer's Jacobian (max pool: that of an avg pool)
    if spec[9] in ("max", "avg", "adaptive") and len(g.edge_blocks) == 3:
        pb = g.edge_blocks[1]
        pool = net[2]
        nd = spec[0]
        if isinstance(pool, (nn.MaxPool1d, nn.MaxPool2d)):
            pool = (nn.AvgPool1d if nd == 1 else nn.AvgPool2d)(pool.kernel_size, pool.stride,
                                                                ceil_mode=pool.ceil_mode)
        y = torch.randn((1,) + pb.in_shape, dtype=torch.float64)
        Jp = torch.autograd.functional.jacobian(lambda t: pool(t), y).reshape(pb.out_size, -1)
        src = g.node_blocks[pb.src_blocks[0]]
        d2 = g.node_blocks[pb.dst]
        P = A[src.offset:src.stop, d2.offset:d2.stop].toarray()
        assert ((P != 0) == (Jp.numpy().T != 0)).all()
        assert (P >= 0).all()


def test_table_alexnet_counts():
    """torchvision AlexNet at 3x224x224: exactly 733,032 nodes and 658,713,600 edges."""
    from deepglass.zoo import get

    g = SignedGraph.from_module(get("alexnet"), (3, 224, 224))
    assert g.n_nodes == 733_032
    assert g.n_edges == 658_713_600


# ---------------------------------------------------------------------------------
# error paths
def test_unsupported_layer_names_module_and_op():
    class CumMax(nn.Module):
        def forward(self, x):
            return torch.cummax(x, 1)[0]

    net = nn.Sequential(nn.Linear(4, 4), CumMax(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayerError, match=r"'1:cummax'.*op cummax.*supports"):
        SignedGraph.from_module(net, (4,))


def test_product_of_two_values_is_unsupported():
    class Bilinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.fc2 = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) * self.fc2(x)

    with pytest.raises(UnsupportedLayerError, match="product of two network values"):
        SignedGraph.from_module(Bilinear(), (3,))


@pytest.mark.parametrize("capture", ["auto", "fx"])
def test_wrong_input_shape(capture):
    with pytest.raises(DeepglassError, match="does not accept input of shape"):
        SignedGraph.from_module(nn.Sequential(nn.Linear(4, 2)), (5,), capture=capture)


def test_a_shape_of_other_dimensions_names_the_model_s_own():
    """A model that knows its input shape (the zoo's, an imported file's) says
    how many dimensions it takes, as the command line does."""
    from deepglass import zoo

    with pytest.raises(DeepglassError, match=r"DigitsCNN does not accept input of shape "
                                             r"\(8, 8\) \(it takes 3 dimension\(s\), like 1,8,8\)"):
        SignedGraph.from_module(zoo.get("digits_cnn"), (8, 8))


def test_non_integer_input_shape_refused():
    # 8.5 was truncated to 8 although the message says "positive integers"
    net = nn.Sequential(nn.Conv2d(3, 2, 3))
    for shape in [(3, 8.5, 8), (3, "8", 8), [(3, 8, 8), (2.5,)], (3, True, 8)]:
        with pytest.raises(DeepglassError, match="input shape must be positive integers"):
            SignedGraph.from_module(net, shape)
    g = SignedGraph.from_module(net, (3, 8.0, np.int64(8)))     # integral values are integers
    assert tuple(g.input_shape) == (3, 8, 8)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64, "float32"])
def test_non_floating_dtype_refused(dtype):
    # torch.int64 truncated every weight to 0
    net = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(DeepglassError, match="dtype must be a floating-point torch dtype"):
        SignedGraph.from_module(net, (3,), dtype=dtype)
    with pytest.raises(DeepglassError, match="dtype must be a floating-point torch dtype"):
        SignedGraph.from_module(net, (3,)).to(dtype=dtype)
    assert SignedGraph.from_module(net, (3,), dtype=torch.float64).dtype == torch.float64


def test_from_module_cuda_without_cuda_is_one_line_error(monkeypatch):
    # was a raw AssertionError ("Torch not compiled with CUDA enabled")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    net = nn.Sequential(nn.Linear(3, 2))
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(DeepglassError, match="requested but torch sees no CUDA device"):
            SignedGraph.from_module(net, (3,), device=device)
    with pytest.raises(DeepglassError, match="device must be 'cpu', 'cuda'"):
        SignedGraph.from_module(net, (3,), device="gpu")


def test_a_sample_too_large_for_memory_is_refused_before_it_is_made():
    from deepglass.errors import TooLargeError

    with pytest.raises(TooLargeError, match=r"one sample of shape \(1, 100000, 100000\)"):
        SignedGraph.from_module(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 100000, 100000))


def test_bad_arguments_of_the_graph_are_one_line_errors():
    """Accepted before: any node id (block_of(-1) was the last block), pool_weight=inf
    (inf edges, a NaN frustration), forward_kwargs of any type (a cut-off forward
    error); a torch error from deep inside for a device name, an empty batch or chunk 0."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(2 * 3 * 3, 3))
    g = SignedGraph.from_module(net, (1, 8, 8))
    for call, msg in [(lambda: g.block_of(-1), r"node must be an integer id in \[0, "),
                      (lambda: g.block_of(g.n_nodes), "node must be an integer id"),
                      (lambda: g.block_of(2.5), "node must be an integer id"),
                      (lambda: g.to(device="tpu"), "device must be 'cpu', 'cuda' or 'cuda:N'"),
                      (lambda: g.energy(torch.ones(0, g.n_nodes)), "expected a vector of"),
                      (lambda: g.energy_from_fields(torch.ones(1, g.n_nodes),
                                                    torch.ones(1, g.n_nodes), chunk=0),
                       "chunk must be an integer >= 1"),
                      (lambda: SignedGraph.from_module(net, (1, 8, 8), pool_weight=float("inf")),
                       "pool_weight must be a positive finite number"),
                      (lambda: SignedGraph.from_module(net, (1, 8, 8), forward_kwargs=[1]),
                       "forward_kwargs must be a dict")]:
        with pytest.raises(DeepglassError, match=msg):
            call()
    assert g.block_of(0).op == "input" and g.block_of(g.n_nodes - 1) is g.node_blocks[-1]


def test_nonzero_edges_leave_out_pruned_masked_and_zero_gain_edges():
    """n_edges counts multiply terms (SPEC §1); n_nonzero_edges leaves out those of
    weight exactly 0: pruned weights, a causal mask multiplied in forward, a zero
    batch-norm gain, a zero interpolation factor.  Checked against the explicit
    edges of every block (parallel edges of reflect padding counted apart) and on
    the null models that move or redraw the weights."""
    import torch.nn.functional as F
    import torch.nn.utils.prune as prune

    from deepglass import null_model

    class Masked(nn.Module):           # PixelCNN: weight * fixed mask in forward
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 3, 3, padding=1)
            m = torch.ones(3, 2, 3, 3)
            m[:, :, 2:] = 0
            m[:, :, 1, 2:] = 0
            self.register_buffer("mask", m)
            self.fc = nn.Linear(3 * 6 * 6, 4)

        def forward(self, x):
            y = F.conv2d(x, self.c.weight * self.mask, None, padding=1)
            return self.fc(F.relu(y).flatten(1))

    torch.manual_seed(0)
    mixed = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                          nn.ConvTranspose2d(4, 2, 3, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(18, 5)).eval()
    with torch.no_grad():
        mixed[1].weight[1] = 0
    for i, amount in ((0, 0.5), (4, 0.4), (8, 0.3)):
        prune.l1_unstructured(mixed[i], "weight", amount)
    one_d = nn.Sequential(nn.Conv1d(1, 3, 5, padding=2, padding_mode="reflect"), nn.ReLU(),
                          nn.MaxPool1d(2), nn.Upsample(scale_factor=2, mode="linear"),
                          nn.Flatten(), nn.Linear(3 * 16, 2)).eval()
    prune.random_unstructured(one_d[0], "weight", 0.5)
    # one_d: 7 nonzero conv taps x 16 positions + max pool 3 x 16 + the linear
    # upsampling as one layer (3 x (16 x 2 - 2 border factors of 0)) + 2 x 48 dense
    for net, shape, expected in ((mixed, (2, 6, 6), 4737), (Masked().eval(), (2, 6, 6), 1308),
                                 (one_d, (1, 16), 7 * 16 + 48 + 3 * 30 + 96)):
        g = SignedGraph.from_module(net, shape, dtype=torch.float64)
        for h in (g, null_model(g, "N1", seed=1), null_model(g, "N2", seed=1),
                  null_model(g, "N3-he", seed=1)):
            explicit = sum(int(np.count_nonzero(b.coo()[2])) for b in h.edge_blocks)
            assert h.n_nonzero_edges == explicit <= h.n_edges
        assert g.n_nonzero_edges == expected < g.n_edges


def test_nan_weights():
    net = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    with pytest.raises(DeepglassError, match=r"'0.weight' has 1 NaN/inf entries of 8"):
        SignedGraph.from_module(net, (4,))


def test_untraceable_model():
    class Dyn(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    with pytest.raises(DeepglassError, match="cannot capture Dyn: torch.export.*torch.fx.*wrap"):
        SignedGraph.from_module(Dyn(), (3,))


def test_nonmonotone_activation_warns_once():
    net = nn.Sequential(nn.Linear(3, 3), nn.GELU(), nn.Linear(3, 3), nn.GELU(), nn.Linear(3, 1))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        SignedGraph.from_module(net, (3,))
    msgs = [x for x in w if issubclass(x.category, NonMonotoneActivationWarning)]
    assert len(msgs) == 1 and "non-decreasing" in str(msgs[0].message)


def test_nonmonotone_warning_follows_the_callers_filters():
    """A caller who silences the warning (or turns it into an error) is obeyed."""
    from deepglass.graph import NonMonotoneActivationWarning as W

    net = nn.Sequential(nn.Linear(3, 3), nn.SiLU(), nn.Linear(3, 1))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=W)
        SignedGraph.from_module(net, (3,))
    assert not w
    with warnings.catch_warnings():
        warnings.simplefilter("error", W)
        with pytest.raises(W, match="SiLU"):
            SignedGraph.from_module(net, (3,))


def test_explicit_refuses_large_graph_with_memory():
    g = SignedGraph.from_module(nn.Sequential(nn.Linear(100, 100)), (100,))
    with pytest.raises(TooLargeError, match=r"GiB"):
        g.to_scipy(limit=1000)


def test_dense_identity_counts_and_networkx():
    net = nn.Sequential(nn.Linear(3, 2, bias=False))
    g = SignedGraph.from_module(net, (3,))
    assert (g.n_nodes, g.n_edges) == (5, 6)
    G = g.to_networkx()
    w = net[0].weight.detach().numpy()
    for i in range(3):
        for j in range(2):
            assert G[i][3 + j]["weight"] == pytest.approx(w[j, i])
            assert G[i][3 + j]["sign"] == np.sign(w[j, i])


@pytest.mark.slow
@pytest.mark.parametrize("name,shape,nodes_m,edges_b", [
    ("alexnet_caffe", (3, 227, 227), 0.94, 0.67),
    ("googlenet", (3, 224, 224), 4.80, 1.45),
    ("googlenet_bvlc", (3, 224, 224), 4.80, 1.52),
    ("squeezenet1_1", (3, 227, 227), 3.27, 0.38),
])
def test_table1_within_one_percent(name, shape, nodes_m, edges_b):
    """Paper 000 Table 1 under the rules of SPEC §1."""
    from deepglass.zoo import get

    g = SignedGraph.from_module(get(name), shape)
    assert g.n_nodes / 1e6 == pytest.approx(nodes_m, rel=0.01)
    assert g.n_edges / 1e9 == pytest.approx(edges_b, rel=0.01)


def test_resnet18_counts_under_spec_rules():
    """ResNet-18 does not match the paper's 3.01 M / 2.80 B under SPEC §1 (see
    README, "Table 1"): these are the counts the rules give."""
    from deepglass.zoo import get

    g = SignedGraph.from_module(get("resnet18"), (3, 224, 224))
    assert round(g.n_nodes / 1e6, 2) == 2.66
    assert round(g.n_edges / 1e9, 2) == 1.68


def test_to_keeps_or_casts_every_block_tensor():
    """Traced graphs hold one dtype throughout (pooling and scale tensors
    included); ``to`` returns the graph itself when nothing changes (its caches
    stay) and a cast copy otherwise."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(3, 2))
    g = SignedGraph.from_module(net, (2, 4, 4))

    def dtypes(graph):
        return {getattr(b, n).dtype for b in graph.edge_blocks
                for n in b._tensors() + ["in_scale", "out_scale"]
                if getattr(b, n) is not None and getattr(b, n).is_floating_point()}

    assert dtypes(g) == {torch.float32}
    total = g.abs_total()
    assert g.to(dtype=torch.float32, device="cpu") is g
    assert g.to().abs_total() == total
    g64 = g.to(dtype=torch.float64)
    assert g64 is not g and g64.dtype == torch.float64 and dtypes(g64) == {torch.float64}
    s = torch.ones(g.n_nodes)
    torch.testing.assert_close(g64.sym_matvec(s.double()).float(), g.sym_matvec(s))


def test_graph_command_prints_counts_and_names_whole(cli, monkeypatch):
    """Piped (not a terminal: 80 columns), the table cuts no count or block
    name short ("658,713,…" said nothing)."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = cli(["graph", "resnet18", "--input-shape", "3,32,32"])
    assert code == 0, err
    from deepglass.zoo import get

    g = SignedGraph.from_module(get("resnet18"), (3, 32, 32))
    assert "…" not in out
    assert f"{g.n_edges:,}" in out and f"{g.n_nodes:,}" in out
    assert "layer4.1.conv2" in out


def test_cli_prints_a_library_warning_as_one_line(cli, tmp_path):
    """A warning of the library (here the non-monotone GELU) reaches the user
    as one ``warning: ...`` line, not Python's file:line and source line."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(8, 2))
    torch.save(net, tmp_path / "gelu.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("always")     # shown even if an earlier test saw it
        code, out, err = cli(["graph", str(tmp_path / "gelu.pt"), "--trust-pickle",
                              "--input-shape", "1,4,4", "--json"])
    assert code == 0, err
    lines = err.strip("\n").splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines), err
    assert any("GELU" in line for line in lines) and "Warning:" not in err


def test_cli_prints_each_warning_once(cli, tmp_path):
    """``active`` captures the model twice (graph, then the recorded trace): its
    non-monotone activation is still said once."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(8, 2))
    torch.save(net, tmp_path / "gelu.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(3, 1, 4, 4)).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, out, err = cli(["active", str(tmp_path / "gelu.pt"), "--trust-pickle",
                              "--input-shape", "1,4,4", "--inputs", str(tmp_path / "x.npy"),
                              "--replicas", "2", "--json"])
    assert code == 0, err
    gelu = [line for line in err.splitlines() if "GELU" in line]
    assert len(gelu) == 1, err


def test_half_precision_ddp_meta_and_fake_quant_models(tmp_path):
    """A float16 / bfloat16 model is captured as its exactly widened float32 copy
    (the batch-norm fold overflowed to inf in 16 bits: a NaN frustration); a
    DistributedDataParallel wrapper is unwrapped (its forward was refused in
    768 characters of export internals); parameters on the meta device and fake
    quantization get their own one-line refusals."""
    import torch.distributed as dist

    import deepglass

    def net():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 6 * 6, 3)).eval()
        with torch.no_grad():
            m[0].weight[0].fill_(3.0)
            m[1].weight.copy_(torch.tensor([100.0, -2.0]))
            m[1].running_var.copy_(torch.tensor([1e-8, 0.5]))
        return m

    wide = SignedGraph.from_module(net().half().float(), (1, 8, 8), dtype=torch.float64)
    for dt in (torch.float16, torch.bfloat16):
        half = net().to(dt)
        g = SignedGraph.from_module(half, (1, 8, 8), dtype=torch.float64)
        if dt == torch.float16:
            assert abs(g.to_scipy() - wide.to_scipy()).max() == 0
        assert np.isfinite(g.to_scipy().data).all() and next(half.parameters()).dtype == dt
        assert math.isfinite(deepglass.frustration(g, replicas=2).frustration)
        act = deepglass.active_subgraph(g, half, torch.rand(2, 1, 8, 8).to(dt))
        assert act.edges.shape == (2, len(g.edge_blocks))
    assert wide.to_scipy().max() > 65504         # the folded edge float16 cannot hold

    # a forward that casts to 16 bits itself, and a module deepcopy refuses (the
    # older weight_norm hook), are captured as they are (both were refused)
    class CastsItself(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3).half()

        def forward(self, x):
            return self.c(x.half()).float()

    assert SignedGraph.from_module(CastsItself().eval(), (1, 6, 6)).n_edges == 2 * 9 * 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        normed = nn.Sequential(torch.nn.utils.weight_norm(nn.Conv1d(1, 2, 3))).half().eval()
    normed(torch.zeros(1, 1, 8, dtype=torch.float16))
    g = SignedGraph.from_module(normed, (1, 8))
    assert g.n_edges == 2 * 3 * 6
    act = deepglass.active_subgraph(g, normed, torch.rand(2, 1, 8).half())
    assert act.edges.shape[0] == 2

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)
    try:
        plain = net()
        ddp = nn.parallel.DistributedDataParallel(plain)
        assert abs(SignedGraph.from_module(ddp, (1, 8, 8)).to_scipy() -
                   SignedGraph.from_module(plain, (1, 8, 8)).to_scipy()).max() == 0
    finally:
        dist.destroy_process_group()

    with torch.device("meta"):
        meta = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    with pytest.raises(DeepglassError, match="on the meta device and hold no values"):
        SignedGraph.from_module(meta, (1, 8, 8))

    qat = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Conv2d(1, 2, 3), nn.ReLU(),
                        torch.ao.quantization.DeQuantStub())
    qat.qconfig = torch.ao.quantization.get_default_qat_qconfig("fbgemm")
    qat = torch.ao.quantization.prepare_qat(qat.train()).eval()
    with pytest.raises(DeepglassError, match="fake quantization .* rounds values"):
        SignedGraph.from_module(qat, (1, 8, 8))


def test_a_parameter_written_in_forward_is_named_as_the_cause():
    """A constraint applied inside forward (self.P.data = renorm(...), as some EEG
    nets do) stops torch.export with torch's 'fake tensor ... lifted_tensor_0 ...
    Please file an issue'; the refusal now names the usual cause and the way out."""
    class Constrained(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(2, 3, 3)
            self.P = nn.Parameter(torch.randn(2, 12))

        def forward(self, x):
            f = F.relu(self.c(x)).flatten(1)
            self.P.data = torch.renorm(self.P.data, p=2, dim=0, maxnorm=1.0)
            return torch.einsum("bd,cd->bc", f, self.P)

    for capture in ("auto", "export"):
        with pytest.raises(DeepglassError) as info:
            SignedGraph.from_module(Constrained().eval(), (2, 6), capture=capture)
        msg = str(info.value)
        assert "parameter's .data set or changed in place inside forward" in msg
        assert "file an issue" not in msg and "\n" not in msg


def test_a_max_norm_layer_is_read_with_the_weights_its_forward_uses():
    """braindecode's Conv2dWithConstraint renorms its weight in forward; the
    torch.fx capture read the weights before any forward ran (stale: off by
    up to 0.04 of 0.17).  It now reads those of one inference, as the default
    capture does (the exporter's run renorms them first)."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from jacobian import assert_is_jacobian

    class Conv2dWithConstraint(nn.Conv2d):
        def forward(self, x):
            self.weight.data = torch.renorm(self.weight.data, p=2, dim=0, maxnorm=0.5)
            return super().forward(x)

    for capture in ("fx", "auto"):
        torch.manual_seed(0)
        net = nn.Sequential(Conv2dWithConstraint(3, 4, 3, padding=1),   # (linear: the
                            Conv2dWithConstraint(4, 2, 3))                # Jacobian is exact)
        assert_is_jacobian(net, (3, 6, 6), capture)


def test_a_value_s_data_read_in_forward_is_the_value():
    """MONAI's option-A shortcut writes torch.cat([out.data, zeros]): torch.export
    cannot trace .data (a 'lifted tensor', refused with a hint about parameters);
    read as .detach() during the capture it is the value itself, and .data is
    torch's own again after it."""
    class OptionA(nn.Module):
        def __init__(self, data):
            super().__init__()
            self.conv, self.data_read = nn.Conv2d(2, 4, 3, stride=2, padding=1), data

        def forward(self, x):
            out = F.avg_pool2d(x, kernel_size=1, stride=2)
            out = out.data if self.data_read else out
            return self.conv(x) + torch.cat([out, torch.zeros_like(out)], dim=1)

    torch.manual_seed(0)
    a, b = OptionA(True).eval(), OptionA(False).eval()
    b.load_state_dict(a.state_dict())
    ga, gb = (SignedGraph.from_module(m, (2, 8, 8), capture="export") for m in (a, b))
    assert ga.n_nodes == gb.n_nodes and abs(ga.to_scipy() - gb.to_scipy()).max() == 0
    assert "data" not in torch.Tensor.__dict__
    t = torch.zeros(2)
    t.data = torch.ones(3)          # torch's .data setter, restored
    assert t.shape == (3,)


def test_an_export_failure_names_where_in_the_user_s_code():
    """A number read from a tensor's data (here dims that depend on the
    input's values) stops torch.export; the refusal says where."""
    class GLN(nn.Module):
        def forward(self, x):
            dims = (torch.arange(1, x.dim()) + 0 * x.detach().sum().round().long()).tolist()
            return x - x.mean(dims, keepdim=True)

    net = nn.Sequential(nn.Conv1d(1, 4, 3), GLN(), nn.Conv1d(4, 2, 3)).eval()
    with pytest.raises(DeepglassError, match=r"at test_graph\.py:\d+ in forward: a number read "
                                             r"from a tensor's data"):
        SignedGraph.from_module(net, (1, 16), capture="export")


def test_a_model_that_mixes_precisions_is_not_said_to_refuse_the_shape():
    """A float64 model whose forward makes a float32 tensor (braindecode's
    SyncNet) was said not to accept its input's shape."""
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(4, 3, 3)

        def forward(self, x):
            return self.c(x) + F.conv1d(x[:, :1], torch.ones(1, 1, 3))

    with pytest.raises(DeepglassError, match=r"Mixed does not run in torch.float64 on a sample "
                                             r"of shape \(4, 32\) \(it mixes precisions: "):
        SignedGraph.from_module(Mixed().double().eval(), (4, 32), dtype=torch.float64)
    with pytest.raises(DeepglassError, match=r"does not accept input of shape \(5, 32\)"):
        SignedGraph.from_module(Mixed().eval(), (5, 32))
    with pytest.raises(DeepglassError, match=r"Mixed's forward does not take the keyword "
                                             r"arguments given \(forward_kwargs\)"):
        SignedGraph.from_module(Mixed().eval(), (4, 32), forward_kwargs={"foo": 1})


def test_a_module_hashed_by_its_tensors_is_captured():
    """escnn's basis expansions define __hash__ from their tensors' data, which
    torch.export's fake tensors cannot give ("Cannot access data pointer"):
    modules are hashed by identity during the capture, and the class's own
    __hash__ is back after."""
    class Basis(nn.Module):
        def __init__(self):
            super().__init__()
            self.radii = nn.Parameter(torch.tensor([0.5, 1.0]), requires_grad=False)

        def __hash__(self):
            return hash(tuple(self.radii.cpu().numpy().tolist()))

        def __eq__(self, other):
            return self is other

        def forward(self, x):
            return x * 2.0

    own = Basis.__hash__
    net = nn.Sequential(nn.Conv2d(1, 2, 3), Basis()).eval()
    g = SignedGraph.from_module(net, (1, 5, 5))
    assert g.n_edges == 2 * 9 * 9 and Basis.__hash__ is own
    assert hash(net[1]) == hash((0.5, 1.0))


def test_the_sample_takes_the_real_weights_dtype_or_the_one_asked_for():
    """A complex first parameter (an FNO's spectral weight) made the sample
    complex; a model without parameters or buffers got a float32 sample at
    dtype=float64 (its DFT weights rounded to float32)."""
    class Spectral(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, dtype=torch.cfloat))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) + 0 * self.w.real.sum()

    assert SignedGraph.from_module(Spectral().eval(), (4,)).n_edges == 8

    class Fourier(nn.Module):
        def forward(self, x):
            return torch.view_as_real(torch.fft.rfft(x)).flatten(1)

    g = SignedGraph.from_module(Fourier(), (8,), dtype=torch.float64)
    w = np.abs(g.to_scipy().data)
    assert np.abs(w[np.abs(w - 0.7071) < 1e-3] - 2 ** -0.5).max() < 1e-15


def test_a_pool_held_sparse_is_the_pool_held_dense(monkeypatch):
    """A pool's per-dimension matrix above ``DENSE_ENTRIES`` is held sparse (a
    1-d pool over a long signal took O(outputs x length) memory: 38 GB for
    220,000 samples): the same operator, adjoint, explicit matrix, 0/1 pattern
    and active-subnetwork windows as held dense."""
    import deepglass.graph.blocks.pool as pool
    from deepglass.graph.blocks import PoolBlock

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 3, 5), nn.ReLU(), nn.MaxPool1d(4, 3, padding=1),
                        nn.Conv1d(3, 2, 3), nn.AvgPool1d(3, 2, ceil_mode=True))
    dense = SignedGraph.from_module(net.eval(), (2, 40))
    monkeypatch.setattr(pool, "DENSE_ENTRIES", 0)
    sparse = SignedGraph.from_module(net.eval(), (2, 40))
    pools = [b for b in sparse.edge_blocks if isinstance(b, PoolBlock)]
    assert len(pools) == 2 and all(m.is_sparse for b in pools for m in b.mats)
    sigma = torch.randint(0, 2, (3, dense.n_nodes), generator=torch.Generator().manual_seed(1))
    sigma = sigma.to(dense.dtype) * 2 - 1
    torch.testing.assert_close(sparse.local_fields(sigma), dense.local_fields(sigma))
    assert (sparse.to_scipy() != dense.to_scipy()).nnz == 0
    assert sparse.n_nonzero_edges == dense.n_nonzero_edges == dense.n_edges
    for a, b in zip(pools, [b for b in dense.edge_blocks if isinstance(b, PoolBlock)]):
        x = torch.randn((2,) + b.out_shape, dtype=torch.float64)
        torch.testing.assert_close(a._adjoint(x, False), b._adjoint(x, False))
        assert torch.equal(a.window_table().idx, b.window_table().idx)


@pytest.mark.parametrize("nd,groups,cin,cout,k,stride,dilation", [
    (1, 2, 8, 6, 5, 1, 2), (2, 1, 6, 4, 3, 1, 1), (2, 3, 6, 9, 3, 2, 1), (2, 6, 6, 6, 3, 1, 1),
    (3, 4, 8, 8, 2, 2, 1)])
def test_native_convolutions_evaluate_in_pieces_of_input_channels(monkeypatch, nd, groups, cin,
                                                                  cout, k, stride, dilation):
    """A float64 convolution on the CPU unfolds its input (im2col); past
    MAX_COLUMNS values it runs in pieces of its input channels (whole groups,
    or runs of one group's channels), each within the limit, covering every
    channel once, and gives the same forward, adjoint and |A| products."""
    from deepglass.graph.blocks import conv as conv_module
    from deepglass.graph.blocks.conv import ConvBlock

    torch.manual_seed(nd * 10 + groups)
    spatial = {1: (30,), 2: (9, 11), 3: (6, 5, 7)}[nd]
    pad = ((1, 2),) + ((1, 0),) * (nd - 1)
    padded = [L + lo + hi for L, (lo, hi) in zip(spatial, pad)]
    out = tuple((P - dilation * (k - 1) - 1) // stride + 1 for P in padded)
    w = torch.randn((cout, cin // groups) + (k,) * nd, dtype=torch.float64)
    b = ConvBlock(w, (cin,) + spatial, (cout,) + out, (stride,) * nd, pad, (dilation,) * nd, groups)
    assert b.unfolds_input(torch.float64) and not b.unfolds_input(torch.float64, "meta")
    R = 3
    x = torch.randn((R, cin) + spatial, dtype=torch.float64)
    y = torch.randn((R, cout) + out, dtype=torch.float64)
    whole = [(0, groups, 0, cin // groups)]
    assert b._pieces(R) == whole
    want = b.apply(x), b.adjoint(y), b.apply(x, absolute=True), b.adjoint(y, absolute=True)
    per_channel = b.columns(R) // cin
    kinds = set()
    for limit in (1, per_channel, 2 * per_channel + 1, (cin // groups) * per_channel,
                  (2 * cin // groups + 1) * per_channel):
        monkeypatch.setattr(conv_module, "MAX_COLUMNS", limit)
        pieces = b._pieces(R)
        covered = sorted(a * (cin // groups) + c + i for a, n, c, m in pieces
                         for i in range(m if n == 1 else n * m))
        assert covered == list(range(cin))
        assert all((m if n == 1 else n * m) * per_channel <= max(limit, per_channel)
                   for a, n, c, m in pieces)
        kinds |= {("groups" if n > 1 else "whole group" if m == cin // groups else "channels")
                  for a, n, c, m in pieces}
        got = b.apply(x), b.adjoint(y), b.apply(x, absolute=True), b.adjoint(y, absolute=True)
        for g_, w_ in zip(got, want):
            torch.testing.assert_close(g_, w_, rtol=1e-12, atol=1e-12)
    assert "channels" in kinds or cin // groups == 1
    assert "groups" in kinds or groups == 1

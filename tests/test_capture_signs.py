"""Signs and shapes of factors the capture reads as rescalings (SPEC §1b).

A gate, a normalization's statistic and a written-out activation each stand
for a factor on a value's edges; these tests pin that a negative one keeps
its sign, that one whose sign the input decides is refused, and that one
which broadcasts the value copies it.  Graphs are compared with the same
network written in the form whose graph is known (a module, an explicit
expand, the factor outside), or with the Jacobian of a linear net.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from jacobian import assert_is_jacobian

from deepglass.errors import UnsupportedLayerError
from deepglass.graph import NonMonotoneActivationWarning, SignedGraph


class _Two(nn.Module):
    """``h(f(y, z))`` with ``y = c(x)``, ``z = d(x)``: a value and a branch."""

    def __init__(self, f, c_out=3):
        super().__init__()
        self.c, self.d = nn.Conv2d(3, c_out, 3, padding=1), nn.Conv2d(3, c_out, 1)
        self.h, self.f = nn.Conv2d(c_out, 2, 1), f

    def forward(self, x):
        return self.h(self.f(self.c(x), self.d(x)))


def _dense(f, shape=(3, 4, 4), **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g = SignedGraph.from_module(_Two(f, **kw).double().eval(), shape, dtype=torch.float64)
    return g.to_scipy().toarray(), [str(x.message) for x in w
                                    if issubclass(x.category, NonMonotoneActivationWarning)]


def _mean(t):
    return t.mean((2, 3), keepdim=True)


@pytest.mark.parametrize("f", [lambda y, z: y * (-_mean(F.relu(z))),
                               lambda y, z: y * (_mean(F.relu(z)) * -1.0),
                               lambda y, z: y / (-_mean(F.relu(z)))])
def test_a_negated_statistic_rescales_by_minus_one(f):
    """``y * -relu(z).mean()``: the statistic's sign is kept, as in ``-(y * s)``."""
    np.testing.assert_allclose(_dense(f)[0],
                               _dense(lambda y, z: -(y * _mean(F.relu(z))))[0], rtol=1e-12)


@pytest.mark.parametrize("f", [lambda y, z: y * (_mean(torch.sigmoid(z)) - 0.5),
                               lambda y, z: y * (z.std((2, 3), keepdim=True) - 1),
                               lambda y, z: y * torch.log(_mean(F.relu(z)) + 1e-3)])
def test_a_statistic_whose_sign_the_input_decides_is_refused(f):
    with pytest.raises(UnsupportedLayerError, match="sign depends on the input"):
        _dense(f)


@pytest.mark.parametrize("f, k", [
    (lambda y, z: y / (1 + torch.exp(-z)) - y, -1.0),          # -y (1 - sigmoid(z))
    (lambda y, z: y * torch.sigmoid(z) - y, -1.0),
    (lambda y, z: y / (2 + torch.tanh(z)) - y, -2.0 / 3.0),    # factor in [-2/3, 0]
    (lambda y, z: y - y * torch.sigmoid(z), 1.0),              # y (1 - sigmoid(z))
    (lambda y, z: 2 * y - y * (1 + torch.tanh(z)), 2.0),       # factor in [0, 2]
    (lambda y, z: y * torch.sigmoid(z) + y, 2.0),              # as before: 1 + 1
    # a mean of a gate is bounded by its range: y (mean - 1) by -1
    (lambda y, z: y * torch.sigmoid(z).mean((2, 3), keepdim=True) - y, -1.0)])
def test_a_gated_copy_and_a_copy_of_opposite_sign_keep_one_sign(f, k):
    """``y * sigmoid(z) - y = -y (1 - sigmoid(z))``: the factor lies in
    [-1, 0] for every input, a rescaling by -1 (its bound of largest
    magnitude), as ``-(y * sigmoid(z))`` gives; ``y - y * sigmoid(z)`` one
    by +1.  Such sums were refused, and earlier added to 0 (dropping y's
    edges)."""
    np.testing.assert_allclose(_dense(f)[0], _dense(lambda y, z: k * (y * torch.sigmoid(z)))[0],
                               rtol=1e-12, atol=1e-15)


def test_a_gated_copy_moved_by_a_re_indexing_keeps_its_gates_range():
    """``(y * sigmoid(z)).flip(-1) - y.flip(-1)``: the flip moves the gate's
    range with the elements (it was lost, the factors added to 0 and the
    edges vanished); ``2 y sigmoid(z)`` flipped the same way stays refused."""
    np.testing.assert_allclose(
        _dense(lambda y, z: (y * torch.sigmoid(z)).flip(-1) - y.flip(-1))[0],
        _dense(lambda y, z: -((y * torch.sigmoid(z)).flip(-1)))[0], rtol=1e-12, atol=1e-15)
    with pytest.raises(UnsupportedLayerError, match="sum of gated copies"):
        _dense(lambda y, z: torch.cat([2 * y * torch.sigmoid(z)], 1).flip(-1) - y.flip(-1))


@pytest.mark.parametrize("f", [lambda y, z: 2 * y * torch.sigmoid(z) - y,
                               lambda y, z: y * (1 + torch.tanh(z)) - y,
                               lambda y, z: y * torch.sigmoid(z) + y * torch.sigmoid(-z) - y,
                               lambda y, z: y - 3 * y / (1 + torch.exp(-z)),
                               lambda y, z: y * torch.sigmoid(z).sum(1, keepdim=True) - y])
def test_a_sum_of_gated_copies_of_either_sign_is_refused(f):
    """``2 y sigmoid(z) - y = y tanh(z / 2)``: a factor of either sign, which
    the input decides (SPEC §1b: a gate is a positive rescaling); refused."""
    with pytest.raises(UnsupportedLayerError, match="sum of gated copies.*not the same for "
                                                    "every input"):
        _dense(f)


def _up(t):
    return F.interpolate(t[:, :, ::2, ::2], scale_factor=2)


@pytest.mark.parametrize("f", [
    lambda y, z: y * F.pad(torch.sigmoid(z)[:, :, 1:], (0, 0, 1, 0), value=-5.0),
    lambda y, z: y * (F.pad(torch.tanh(z)[:, :, 1:], (0, 0, 1, 0), value=-2.0) + 1),
    lambda y, z: y * torch.sigmoid(z).masked_fill(torch.arange(4).view(1, 1, 4, 1) == 0, -3.0),
    lambda y, z: y * (_up(torch.sigmoid(z)) - 0.5)])
def test_a_gate_made_signed_by_a_constant_is_no_gate(f):
    """A gate padded or filled with a negative constant, or an upsampled gate
    minus a constant, may be negative: a product of two values, refused."""
    with pytest.raises(UnsupportedLayerError, match="product of two network values"):
        _dense(f)
    _dense(lambda y, z: y * _up(torch.sigmoid(z)))     # the upsampled gate itself is one


def test_the_mean_of_another_value_subtracted_is_a_layer():
    """``y - z.mean()``: a layer (its graph is the linear net's Jacobian), not a
    normalization's mean subtraction, which only ``y - y.mean()`` is."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.d, self.h = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 1), \
                nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y, z = self.c(x), self.d(x)
            return self.h(y - z.mean((2, 3), keepdim=True)) + self.h(
                y.mean(2, keepdim=True) - z.mean(3, keepdim=True))

    assert_is_jacobian(Net(), (3, 4, 5))


def _centred(y, stat_first, negate):
    u = y.mean(1, keepdim=True)
    c = (u - y) if stat_first else (y - u)
    c = -c if negate else c
    return c / torch.sqrt(((y - u) ** 2).mean(1, keepdim=True) + 1e-5)


@pytest.mark.parametrize("negate", [False, True])
def test_a_mean_minus_its_value_centres_it_negated(negate):
    """``u - y`` with ``u = y.mean()`` is ``-(y - u)``: the normalization of
    ``-y`` (it was refused as a value mixed with a statistic), and
    ``-(u - y)`` is the normalization of ``y``."""
    want = _dense(lambda y, z: _centred(y, False, False))[0]
    got = _dense(lambda y, z: _centred(y, True, negate))[0]
    np.testing.assert_allclose(got, want if negate else _dense(
        lambda y, z: -_centred(y, False, False))[0], rtol=1e-12)
    assert np.abs(got).sum() > 0


class _Highway(nn.Module):
    """``t * relu(h(x)) + (1 - t) * x`` with ``t = sigmoid(w(x))``."""

    def __init__(self, gate_first):
        super().__init__()
        self.c, self.h, self.w = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, padding=1), \
            nn.Conv2d(4, 4, 1)
        self.o, self.gate_first = nn.Conv2d(4, 2, 1), gate_first

    def forward(self, x):
        x = self.c(x)
        t, y = torch.sigmoid(self.w(x)), F.relu(self.h(x))
        return self.o((t * y if self.gate_first else y * t) + (1 - t) * x)


def test_a_sigmoid_times_a_relu_value_gates_the_relu_value():
    """Both factors of a highway's ``t * relu(h(x))`` are non-negative: the
    sigmoid is the gate (its branch left out), in either operand order; the
    ReLU'd value keeps its edges (it was taken as the gate, and ``h`` left out)."""
    graphs = []
    for gate_first in (True, False):
        torch.manual_seed(0)
        g = SignedGraph.from_module(_Highway(gate_first).double().eval(), (3, 5, 5),
                                    dtype=torch.float64)
        assert [r["block"] for r in g.meta["left_out"]] == ["w"]
        graphs.append(g.to_scipy().toarray())
    np.testing.assert_array_equal(graphs[0], graphs[1])


def test_a_gate_broadcasting_the_value_copies_it():
    """``row * gate`` with row of C x 1 x W and a spatial gate of 1 x H x W (or
    a non-negative statistic of that shape): the row copied to H x W, as
    ``row.expand(C, H, W) * gate``."""
    for gate in (lambda z: torch.sigmoid(z[:, :1]), lambda z: F.relu(z).mean(1, keepdim=True)):
        a = _dense(lambda y, z: y[:, :, :1] * gate(z))[0]
        b = _dense(lambda y, z: y[:, :, :1].expand(-1, -1, 4, -1) * gate(z))[0]
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_a_softmax_gate_larger_than_a_relu_value_gates_it():
    """Masks per source times the encoder's output broadcast over the
    sources (``softmax(m).view(S, C, L) * relu(e).unsqueeze(1)``, a source
    separator's masking): the softmax is the gate and the ReLU'd value is
    copied to its shape, as for a signed value (it was refused as a product
    of two values, the gate being the larger factor)."""
    class Sep(nn.Module):
        def __init__(self, relu):
            super().__init__()
            torch.manual_seed(0)
            self.relu, self.enc = relu, nn.Conv1d(1, 4, 8, stride=4)
            self.mask, self.dec = nn.Conv1d(4, 8, 1), nn.Conv1d(8, 1, 3)

        def forward(self, x):
            e = self.enc(x)
            e = F.relu(e) if self.relu else e
            m = self.mask(e).view(1, 2, 4, -1).softmax(1)
            return self.dec((m * e.unsqueeze(1)).reshape(1, 8, -1))

    a, b = (SignedGraph.from_module(Sep(r).double().eval(), (1, 64), dtype=torch.float64)
            for r in (True, False))
    assert [r["block"] for r in a.meta["left_out"]] == ["mask"]
    np.testing.assert_array_equal(a.to_scipy().toarray(), b.to_scipy().toarray())


def test_of_two_gates_the_sigmoid_gates_whatever_the_sizes():
    """``sigmoid(z) * relu6(v).unsqueeze(1)`` (the sigmoid the larger): the
    sigmoid is the gate and relu6's value is copied to its shape, the graph of
    the same product with relu6's value expanded first (the smaller factor
    was taken as the gate, keeping the sigmoid's branch)."""
    class Two(nn.Module):
        def __init__(self, expand):
            super().__init__()
            torch.manual_seed(5)
            self.expand, self.e, self.m = expand, nn.Conv1d(2, 3, 1), nn.Conv1d(2, 6, 1)
            self.o = nn.Linear(18, 2)

        def forward(self, x):
            a = F.relu6(self.e(x)).unsqueeze(1)
            a = a.expand(-1, 2, -1, -1) if self.expand else a
            return self.o((torch.sigmoid(self.m(x).view(-1, 2, 3, 3)) * a).flatten(1))

    a, b = (SignedGraph.from_module(Two(e).double().eval(), (2, 3), dtype=torch.float64)
            for e in (False, True))
    assert [r["block"] for r in a.meta["left_out"]] == ["m"]
    np.testing.assert_array_equal(a.to_scipy().toarray(), b.to_scipy().toarray())


@pytest.mark.parametrize("write,module", [
    (lambda x: x * (-torch.sigmoid(x)), lambda x: -F.silu(x)),
    (lambda x: -0.5 * x * (1 + torch.erf(x / math.sqrt(2))), lambda x: -F.gelu(x)),
    (lambda x: x / (-1 - x.abs()), lambda x: -F.softsign(x))])
def test_a_negative_multiple_of_a_written_out_activation_keeps_its_sign(write, module):
    np.testing.assert_allclose(_dense(lambda y, z: write(y) + 0 * z)[0],
                               _dense(lambda y, z: module(y) + 0 * z)[0], rtol=1e-9)


@pytest.mark.parametrize("write,module", [
    (lambda y: y[:, :2] * torch.sigmoid(y[:, :2]), lambda y: F.silu(y[:, :2])),
    (lambda y: (y.reshape(1, 3, -1) * torch.sigmoid(y.reshape(1, 3, -1))).reshape(y.shape)[:, :2],
     lambda y: F.silu(y)[:, :2])])
def test_a_written_out_activation_of_views_has_the_views_shape(write, module):
    """``y[:, :2] * sigmoid(y[:, :2])``: an IndexError, or the activation given
    ``y``'s shape; now the graph of ``F.silu`` of the view."""
    a = _dense(lambda y, z: torch.cat([write(y), z[:, 2:]], 1))[0]
    b = _dense(lambda y, z: torch.cat([module(y), z[:, 2:]], 1))[0]
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_a_warning_of_an_op_read_elsewhere_too_stays():
    """``|y|`` inside a written-out Softsign and also read by a layer: its
    non-monotone warning stays (only warnings of ops inside the form go)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.h, self.k = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.c(x)
            a = y.abs()
            return self.h(y / (1 + a)) + self.k(a)

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        SignedGraph.from_module(Net(), (3, 4, 4))
    assert any("abs" in str(x.message) for x in w)


class _Pool(nn.Module):
    def __init__(self, how, relu=False, heads=1):
        super().__init__()
        self.c, self.m, self.t = nn.Conv2d(2, 4, 1), nn.Conv2d(4, heads, 1), nn.Conv2d(4, 4, 1)
        self.how, self.relu, self.heads = how, relu, heads

    def forward(self, x):
        y = self.c(x)
        y = F.relu(y) if self.relu else y
        B, C, H, W = y.shape
        a = self.m(y).reshape(B, self.heads, H * W).softmax(-1)
        v = y.reshape(B, self.heads, C // self.heads, H * W)
        ctx = (v * a.unsqueeze(2)).sum(-1) if self.how == "mul" else \
            (v @ a.unsqueeze(-1)).squeeze(-1)
        return y + self.t(ctx.reshape(B, C, 1, 1))


@pytest.mark.parametrize("relu,heads", [(True, 1), (False, 2)])
def test_a_softmax_gate_as_a_matrix_product_of_a_relu_value_or_of_heads(relu, heads):
    """``relu(y) @ softmax(m)`` (both factors non-negative: the softmax is the
    gate) and two heads ``(1, 2, C/2, N) @ (1, 2, N, 1)``: the graph of the
    elementwise form; both were refused as self-attention."""
    torch.manual_seed(3)
    ref = SignedGraph.from_module(_Pool("mul", relu, heads).double(), (2, 3, 3),
                                  dtype=torch.float64)
    torch.manual_seed(3)
    g = SignedGraph.from_module(_Pool("matmul", relu, heads).double(), (2, 3, 3),
                                dtype=torch.float64)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray(), rtol=1e-12)


def test_a_max_pool_over_a_concatenated_constant_is_refused_by_name():
    with pytest.raises(UnsupportedLayerError, match="max pool reads a constant concatenated"):
        _dense(lambda y, z: F.max_pool2d(torch.cat([y, torch.zeros_like(z)], 1), 2)[:, :3])


class _ChannelsLast(nn.Module):
    def __init__(self, constant):
        super().__init__()
        self.c, self.l, self.constant = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 5), constant

    def forward(self, x):
        t = self.l(self.c(x).permute(0, 2, 3, 1))
        return t + torch.ones(5, dtype=t.dtype) if self.constant else t


@pytest.mark.parametrize("capture,constant", [("core", False), ("auto", True)])
def test_a_channels_last_linear_lowered_to_core_is_a_dense_layer(capture, constant):
    """Core ATen writes a channels-last linear as a bmm whose weight is
    expanded over a batch of rows (also under the default capture once the
    forward makes a constant): one dense layer at every position, as
    exported; it was refused as self-attention."""
    g = assert_is_jacobian(_ChannelsLast(constant), (3, 4, 5), capture)
    # 3x3 taps inside 4 x 5: (2+3+3+2) x (2+3+3+3+2); the linear at 20 positions
    assert g.n_edges == 4 * 3 * 10 * 13 + 20 * 4 * 5


class _WeightFirst(nn.Module):
    """``W @ Y`` with a fixed ``W``: a dense layer at each of Y's columns."""

    def __init__(self, dims):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1) if dims == 2 else nn.Conv1d(3, 4, 3, padding=1)
        self.W, self.dims = nn.Parameter(torch.randn(5, 4)), dims

    def forward(self, x):
        y = self.c(x)
        return self.W @ (y.permute(0, 2, 1, 3) if self.dims == 2 else y)


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("dims,shape,edges", [(2, (3, 4, 5), 4 * 3 * 10 * 13 + 20 * 4 * 5),
                                              (1, (3, 6), 4 * 3 * 16 + 6 * 4 * 5)])
def test_a_fixed_matrix_times_a_value_is_a_dense_layer(capture, dims, shape, edges):
    """``W @ y`` (the weight on the left) was refused by the export path ('the
    input enters a matrix product from the right') while core read it."""
    g = assert_is_jacobian(_WeightFirst(dims), shape, capture)
    assert g.n_edges == edges


class _BAM(nn.Module):
    """BAM's attention: ``y * gate(ch(y) * sp(y))`` with a channel and a spatial
    branch multiplied inside the gate (``where`` says what reads the product)."""

    def __init__(self, where):
        super().__init__()
        self.c, self.o = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)
        self.ch, self.sp, self.where = nn.Linear(4, 4), nn.Conv2d(4, 1, 1), where

    def forward(self, x):
        y = self.c(x)
        z = self.ch(y.mean((2, 3)))[:, :, None, None] * self.sp(y)
        if self.where == "gate":
            return self.o(y * (1 + torch.sigmoid(z)))
        if self.where == "gate, shape read":
            return self.o(y * torch.sigmoid(z) + torch.zeros_like(z))
        if self.where == "gate and output":
            return self.o(y * torch.sigmoid(z)), z.flatten(1)
        if self.where == "value":
            return self.o(y * torch.relu(z))
        return self.o(y + z)            # "sum"


def _graph_of_the_ungated_net(net):
    """``net``'s graph (its layers ``c`` then ``o``, gated between), checked
    equal to the graph of ``c`` then ``o`` alone: a gate is a positive
    rescaling and its branch is left out (SPEC §1b)."""
    torch.manual_seed(0)
    net = net.double().eval()
    g = SignedGraph.from_module(net, (3, 5, 5), dtype=torch.float64)
    plain = nn.Sequential(net.c, net.o)
    np.testing.assert_allclose(g.to_scipy().toarray(), SignedGraph.from_module(
        plain, (3, 5, 5), dtype=torch.float64).to_scipy().toarray(), rtol=1e-12)
    return g


@pytest.mark.parametrize("where", ["gate", "gate, shape read"])
def test_a_product_inside_a_gate_branch_is_left_out_with_it(where):
    """SPEC §1b leaves a gate's branch out of the graph, so a product of two
    values that only feeds a gate (BAM's ``1 + sigmoid(channel * spatial)``)
    goes with it: the graph is that of the ungated net, the branch listed; it
    was refused at the product."""
    g = _graph_of_the_ungated_net(_BAM(where))
    assert {r["block"] for r in g.meta["left_out"]} >= {"ch", "sp"}
    assert g.meta["gates"]


@pytest.mark.parametrize("where", ["gate and output", "value", "sum"])
def test_a_product_of_two_values_reaching_the_graph_is_refused_by_its_name(where):
    """The product is refused, named, wherever its value reaches a graph
    value or an output (not only a gate)."""
    with pytest.raises(UnsupportedLayerError, match=r"'mul' \(product of two network values\)"):
        SignedGraph.from_module(_BAM(where).double().eval(), (3, 5, 5), dtype=torch.float64)


def test_a_matrix_product_of_two_values_in_a_gate_branch_is_still_attention():
    """``softmax(q k^T) @ v``: the softmax is non-negative and bounded, but its
    branch multiplies two values by a matrix product (self-attention, refused
    by SPEC §1b), so it is refused there and then."""
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            a = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2), -1)
            return a @ self.v(x)

    with pytest.raises(UnsupportedLayerError, match="matrix product.*self-attention"):
        SignedGraph.from_module(Attention(), (3, 4))


class _StatGate(nn.Module):
    """``y * gate`` with a gate made of the statistics of ``y``: SRM's
    ``sigmoid(bn(conv1d(cat(mean, std))))`` (a value and a statistic side by
    side) or GCT's ``1 + tanh(norm(y) * gamma + beta)`` (a statistic of either
    sign inside a bounded function)."""

    def __init__(self, kind):
        super().__init__()
        self.c, self.o, self.kind = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1), kind
        self.cfc, self.bn = nn.Conv1d(4, 4, 2, groups=4), nn.BatchNorm1d(4)
        self.gamma = nn.Parameter(torch.tensor([0.5, -1.0, 2.0, -0.3]).view(1, 4, 1, 1))

    def forward(self, x):
        y = self.c(x)
        if self.kind == "SRM":
            u = torch.cat([y.flatten(2).mean(-1, keepdim=True), y.flatten(2).std(-1, keepdim=True)], -1)
            return self.o(y * torch.sigmoid(self.bn(self.cfc(u)))[..., None])
        s = (y.pow(2).sum((2, 3), keepdim=True) + 1e-5).sqrt()
        return self.o(y * (1 + torch.tanh(s * self.gamma + 0.1)))


@pytest.mark.parametrize("kind", ["SRM", "GCT"])
def test_a_gate_made_of_statistics_is_a_gate(kind):
    """Both were refused (a statistic beside a value; a statistic of either
    sign rescaling a value), though each sits inside a bounded non-negative
    gate, a positive rescaling whose branch is left out (SPEC §1b): the graph
    is the ungated net's, and a layer of the branch that read the refused
    value is listed as left out with its parameters."""
    g = _graph_of_the_ungated_net(_StatGate(kind))
    if kind == "SRM":   # the branch's layers, its standard deviation written out among them
        assert {("cfc", 4), ("std", 4), ("mean", 4)} <= {(r["block"], r["nodes"])
                                                         for r in g.meta["left_out"]}


def test_a_statistic_of_either_sign_outside_a_gate_is_still_refused():
    net = _Two(lambda y, z: y * torch.tanh((y ** 2).mean((2, 3), keepdim=True).sqrt() - 1))
    with pytest.raises(UnsupportedLayerError, match="unsupported layer .mul"):
        SignedGraph.from_module(net.double().eval(), (3, 4, 4), dtype=torch.float64)


def _mask(z):
    return torch.arange(z.numel()).reshape(z.shape) % 2 == 0


@pytest.mark.parametrize("f", [
    lambda y, z: y * z.masked_fill(_mask(z), 0.0),
    lambda y, z: y * (torch.sigmoid(z) - 0.6).masked_fill(_mask(z), 1.0),
    lambda y, z: y / (z.masked_fill(_mask(z), 1.0) + 0.5),
    lambda y, z: y * (F.avg_pool2d(torch.sigmoid(z) + 1, 3, 1, 1) - 0.9),
    lambda y, z: y * (1.5 - F.avg_pool2d(torch.sigmoid(z), 3, 1, 1, False, False, divisor_override=1)),
    lambda y, z: y * (F.softplus(torch.tanh(z), threshold=-5) - 0.3),
    lambda y, z: y * (F.softplus(torch.tanh(z), beta=10) - 0.3),
    lambda y, z: y / (F.softplus(z, threshold=-5) + 0.5),
    lambda y, z: y * (lambda e: e / e.transpose(2, 3).sum(2, keepdim=True))(torch.exp(z))])
def test_a_factor_whose_range_holds_zero_or_no_bound_is_no_gate(f):
    """Ranges that were taken too narrow: ``masked_fill`` keeps the value it
    fills (its range was the mask's), an average pool counting padding or
    with a divisor set is no convex combination, a softplus with a threshold
    is the identity above it, and ``e / s`` is a share of a sum only where
    ``s`` sums ``e`` over the dimensions it divides.  Each factor may be
    negative or 0 (a divisor) or is unbounded: a product (a division) of two
    values, refused; each was taken as a gate, its branch left out."""
    with pytest.raises(UnsupportedLayerError, match="product of two network values|division"):
        _dense(f)


@pytest.mark.parametrize("w", [0.3, 2.0])
def test_lerp_to_a_constant_is_a_rescaling(w):
    """``lerp(y, c, w) = y + w (c - y)``: ``(1 - w) y``; with ``w >= 0.5`` its
    decomposition selects the constant alone by a fixed mask (it was refused
    as a value made only of padding)."""
    class Lerp(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.h = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.h(torch.lerp(self.c(x), torch.ones(1, dtype=x.dtype), w))

    for capture in ("export", "core"):
        assert_is_jacobian(Lerp(), (2, 4, 4), capture=capture)


@pytest.mark.parametrize("f", [
    lambda y, z: y * (z.max(1, keepdim=True)[1] - 1.5),
    lambda y, z: y * F.max_pool2d(z, 2, 1, 0, 1, False, True)[1].float().mean()])
def test_the_indices_of_a_maximum_are_no_constant(f):
    """``z.max(1)[1]`` depends on the input's values (a selection): as a factor
    it is refused; it was taken as a constant, the sample's factors baked in."""
    with pytest.raises(UnsupportedLayerError, match="indices of a maximum"):
        _dense(f)
    _dense(lambda y, z: y + z.max(1, keepdim=True)[0])     # the maximum itself is a layer


class _ElementwiseAttention(nn.Module):
    """Attention and bilinear pooling written with elementwise products, inside
    a gate's branch: ``softmax((q * k).sum(-1))`` weighting ``v``, and
    ``sigmoid((a * b).mean((2, 3)))`` gating ``y``."""

    def __init__(self, how):
        super().__init__()
        self.c, self.q, self.k, self.how = (nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1),
                                            nn.Conv2d(4, 4, 1), how)

    def forward(self, x):
        y = self.c(x)
        q, k = self.q(y).flatten(2), self.k(y).flatten(2)              # (1, C, N)
        if self.how == "attention":
            a = torch.softmax((q.unsqueeze(-1) * k.unsqueeze(-2)).sum(1), -1)   # (1, N, N)
            return (a.unsqueeze(1) * y.flatten(2).unsqueeze(2)).sum(-1)
        return y * torch.sigmoid((q * k).mean(-1))[..., None, None]


@pytest.mark.parametrize("how", ["attention", "bilinear"])
def test_a_sum_of_products_of_two_values_is_refused_also_in_a_gate_branch(how):
    """A product of two values summed over a dimension is attention or
    bilinear pooling (SPEC §1b), refused even where only a gate reads it
    (a product alone there, BAM's, is left out with the branch)."""
    with pytest.raises(UnsupportedLayerError, match=r"\(product of two network values\)"):
        SignedGraph.from_module(_ElementwiseAttention(how), (3, 3, 3))


@pytest.mark.parametrize("f", [
    lambda y, z: y * (lambda e: e / torch.add(e.sum(1, keepdim=True), 1.0, alpha=-2.0))(
        torch.exp(z)),
    lambda y, z: y / torch.sub(_mean(z ** 2), 2.0, alpha=1.0)])
def test_add_and_sub_keep_the_sign_of_alpha(f):
    """``torch.add(s, 1, alpha=-2)`` is ``s - 2``: a divisor of either sign (it
    was read as ``s + 1`` and its quotient taken as a gate in [0, 1])."""
    with pytest.raises(UnsupportedLayerError, match="sign depends on the input"):
        _dense(f)


class _SelectiveKernel(nn.Module):
    """Selective-kernel attention with the branches stacked in front of the
    batch: ``(y.unsqueeze(0) * softmax(stack([fa(s), fb(s)], 0), 0)).sum(0)``;
    ``gate=False`` puts the constant 0.5 in the softmax's place."""

    def __init__(self, gate):
        super().__init__()
        self.a, self.o, self.gate = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1), gate
        self.fa, self.fb = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        y = self.a(x)
        s = y.mean((2, 3))
        att = torch.softmax(torch.stack([self.fa(s), self.fb(s)], 0), 0)[..., None, None]
        att = att if self.gate else torch.full_like(att, 0.5)
        return self.o((y.unsqueeze(0) * att).sum(0))


def test_a_gate_stacked_in_front_of_the_batch_copies_the_value_it_gates():
    """The gate broadcasts ``y`` along the stacked axis; it crashed, the value
    kept one copy where the product has two.  Each gated copy is a positive
    rescaling of weight 1 (SPEC §1b), so the sum's edges weigh 2 where the
    constant halves weigh 1: the same edges and signs."""
    graphs = []
    for gate in (True, False):
        torch.manual_seed(0)
        g = SignedGraph.from_module(_SelectiveKernel(gate).double().eval(), (3, 4, 4),
                                    dtype=torch.float64)
        graphs.append(g.to_scipy().toarray())
        assert bool(g.meta.get("gates")) == gate
    np.testing.assert_array_equal(np.sign(graphs[0]), np.sign(graphs[1]))

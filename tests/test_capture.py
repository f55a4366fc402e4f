"""The capture rules of SPEC §1b, each on a tiny net whose graph is known.

Every test builds a network whose signed graph can be written by hand (or read
off an exact Jacobian of a linear layer) and compares it with what
:meth:`SignedGraph.from_module` captures through ``torch.export``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from jacobian import assert_is_jacobian, path_sums

from deepglass.errors import DeepglassError, UnsupportedLayerError
from deepglass.graph import NonMonotoneActivationWarning, SignedGraph


def _dense(g: SignedGraph) -> np.ndarray:
    return g.to(dtype=torch.float64).to_scipy().toarray()


def _graph(net, shape, **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g = SignedGraph.from_module(net.eval(), shape, dtype=torch.float64, **kw)
    return g, [str(x.message) for x in w if issubclass(x.category, NonMonotoneActivationWarning)]


class _SE(nn.Module):
    """Squeeze-excitation: x * sigmoid(fc2(relu(fc1(mean(x)))))."""

    def __init__(self, c, gate=torch.sigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(c, 2, 1)
        self.fc2 = nn.Conv2d(2, c, 1)
        self.gate = gate

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(F.relu(self.fc1(s))))


def _body(se: bool):
    torch.manual_seed(1)
    layers = [nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()]
    if se:
        layers.append(_SE(3))
    layers += [nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("capture", ["export", "core"])
def test_gate_is_a_positive_rescaling_and_its_branch_is_left_out(capture):
    plain, gated = _body(False), _body(True)
    gated[3].load_state_dict(plain[2].state_dict())
    gated[5].load_state_dict(plain[4].state_dict())
    gated[0].load_state_dict(plain[0].state_dict())
    g0, _ = _graph(plain, (2, 4, 4), capture=capture)
    g1, _ = _graph(gated, (2, 4, 4), capture=capture)
    assert (g1.n_nodes, g1.n_edges) == (g0.n_nodes, g0.n_edges)
    np.testing.assert_allclose(_dense(g1), _dense(g0))
    left = g1.meta["left_out"]
    assert sum(r["params"] for r in left) == 3 * 2 + 2 * 3     # the gate's two 1x1 convs
    assert g1.meta["gates"] and g1.meta["rules"]["gates"] == "scale"
    with pytest.raises(UnsupportedLayerError, match="gate.*gates='error'"):
        SignedGraph.from_module(gated, (2, 4, 4), gates="error")


class _SEResidual(nn.Module):
    """An SE-ResNet unit ``h(x) + x`` with ``h = k * se(conv2(relu(conv1(x))))``
    (``se`` the identity for the plain unit, ``k`` a per-channel layer scale),
    then ReLU and a head."""

    def __init__(self, se: bool, k=None, act=False):
        super().__init__()
        torch.manual_seed(2)
        self.c1, self.c2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        self.head, self.act = nn.Conv2d(3, 2, 1), act
        self.se = _SE(3) if se else nn.Identity()
        self.k = None if k is None else torch.tensor(k, dtype=torch.float64).view(1, 3, 1, 1)

    def forward(self, x):
        y = self.c2(F.relu(self.c1(x)))
        y = F.relu(y) if self.act else y
        y = self.se(y) if self.k is None else self.se(y) * self.k
        return self.head(F.relu(y + x))


@pytest.mark.parametrize("k", [None, [2.0, -0.5, 1.0]])
def test_a_gate_before_a_residual_add_adds_no_nodes(k):
    """SPEC §1: a residual addition creates no nodes, and SPEC §1b: a gate is a
    positive rescaling.  ``conv(x) * gate + x`` has the graph of ``conv(x) + x``:
    the conv's edges end on the sum's block (the gate's pooling, left out,
    had made the conv's output a block of its own, copied into the sum by
    identity edges), a layer scale after the gate folded into them."""
    g0, _ = _graph(_SEResidual(False, k).double(), (3, 4, 4))
    g1, _ = _graph(_SEResidual(True, k).double(), (3, 4, 4))
    assert [(b.name, b.shape) for b in g1.node_blocks] == \
        [(b.name, b.shape) for b in g0.node_blocks]
    np.testing.assert_allclose(_dense(g1), _dense(g0), rtol=1e-12)
    assert [r["block"] for r in g1.meta["left_out"]] == ["se:mean", "se.fc1", "se.fc2"]


def test_a_gated_activation_before_a_residual_add_keeps_the_sum_block():
    """``relu(conv(x)) * gate + x``: the sum reads the activation, not the
    conv's own values, so the conv's nodes stay a block (as without the gate)."""
    g0, _ = _graph(_SEResidual(False, act=True).double(), (3, 4, 4))
    g1, _ = _graph(_SEResidual(True, act=True).double(), (3, 4, 4))
    assert len(g1.node_blocks) == len(g0.node_blocks) == 5
    np.testing.assert_allclose(_dense(g1), _dense(g0), rtol=1e-12)


class _ChannelsLastResidual(nn.Module):
    """A residual add in channels-last layout, as tf2onnx writes MobileNetV3's:
    both branches permuted to (N, H, W, C) before the add.  ``how``: the sum
    read by a layer (``"layer"``), the residual branch also read by a second
    head (``"shared"``), the sum as the output (``"output"``), or the two
    branches permuted by different but equivalent moves (``"mixed"``)."""

    def __init__(self, how="layer", last=False):
        super().__init__()
        self.how, self.last = how, last
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.c3, self.c4 = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 3, 1)

    def forward(self, x):
        h = self.c1(x)
        y = self.c2(h)
        if self.how == "same":            # y + y, the output (channels-last): a rescaling by 2
            return y.permute(0, 2, 3, 1) + y.permute(0, 2, 3, 1) if self.last else y + y
        if not self.last:
            z = h + y
        elif self.how == "mixed":
            z = (h.permute(0, 2, 3, 1) + y.permute(0, 3, 2, 1).transpose(1, 2)).permute(0, 3, 1, 2)
        else:
            z = (h.permute(0, 2, 3, 1) + y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if self.how == "output":
            return z
        out = self.c3(z)
        return (out, self.c4(y)) if self.how == "shared" else out


@pytest.mark.parametrize("how", ["layer", "mixed", "shared", "output", "same"])
def test_a_channels_last_residual_add_adds_no_nodes(how):
    """SPEC §1: a residual addition creates no nodes, in any layout.  Both
    branches permuted to channels-last before the add (tf2onnx's form of
    MobileNetV3's adds) gave the sum a block of its own, copied into by
    identity edges from the residual branch (MobileNetV3Small at 64x64: 4,352
    nodes too many); the sum now takes the branch's node order, so the
    branch's edges end on it, and the graph is that of the NCHW add."""
    base = _ChannelsLastResidual(how).double()
    net = _ChannelsLastResidual(how, last=True).double()
    net.load_state_dict(base.state_dict())
    g0, g1 = _graph(base, (3, 4, 5))[0], _graph(net, (3, 4, 5))[0]
    assert g1.n_nodes == g0.n_nodes and g1.n_edges == g0.n_edges
    if how != "shared":                 # (with two readers the branch keeps its block)
        assert [(b.name, b.shape) for b in g1.node_blocks] == \
            [(b.name, b.shape) for b in g0.node_blocks]
        np.testing.assert_allclose(_dense(g1), _dense(g0), rtol=1e-12)
    assert_is_jacobian(net, (3, 4, 5))


class _ECA(nn.Module):
    """Efficient channel attention (ECA-Net, timm's ``EcaModule``): a 1-d
    convolution across the channel means, its sigmoid viewed and expanded to
    the input's shape, then ``x * gate``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1))
        return x * torch.sigmoid(y).view(x.shape[0], -1, 1, 1).expand_as(x)


@pytest.mark.parametrize("capture", ["export", "core"])
def test_gate_viewed_and_expanded_is_still_a_gate(capture):
    """A re-indexing (view, expand) keeps a gate non-negative: ECA is a positive
    rescaling like squeeze-excitation, its 1-d convolution left out."""
    plain, gated = _body(False), _body(True)
    gated[2] = _ECA().double()
    gated[3].load_state_dict(plain[2].state_dict())
    gated[5].load_state_dict(plain[4].state_dict())
    gated[0].load_state_dict(plain[0].state_dict())
    g0, _ = _graph(plain, (2, 4, 4), capture=capture)
    g1, _ = _graph(gated, (2, 4, 4), capture=capture)
    np.testing.assert_allclose(_dense(g1), _dense(g0))
    assert sum(r["params"] for r in g1.meta["left_out"]) == 3      # the gate's conv1d
    # a value viewed from a signed one is no gate: still refused (tanh of the mean
    # of a ReLU's output alone would be one, in [0, 1))
    gated[2].forward = lambda x: x * torch.tanh(x.mean((2, 3)) - 0.5).view(x.shape[0], -1, 1, 1)
    with pytest.raises(UnsupportedLayerError, match="product of two network values"):
        SignedGraph.from_module(gated, (2, 4, 4), capture=capture)


def test_hard_sigmoid_gate_written_out_is_a_gate():
    """timm / MobileNet-V3 write hard-sigmoid as relu6(x + 3) / 6: non-negative."""
    plain, gated = _body(False), _body(True)
    gated[2].gate = lambda t: F.relu6(t + 3.0) / 6.0
    gated[3].load_state_dict(plain[2].state_dict())
    gated[5].load_state_dict(plain[4].state_dict())
    gated[0].load_state_dict(plain[0].state_dict())
    np.testing.assert_allclose(_dense(_graph(gated, (2, 4, 4))[0]), _dense(_graph(plain, (2, 4, 4))[0]))


class _Gated(nn.Module):
    def __init__(self, gate):
        super().__init__()
        self.c, self.d, self.f, self.gate = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1), \
            nn.Conv2d(2, 2, 1), gate

    def forward(self, x):
        return self.f(self.c(x) * self.gate(self.d(x)))


@pytest.mark.parametrize("gate", [
    lambda z: 1 - torch.sigmoid(z), lambda z: 1 + torch.tanh(z),
    lambda z: 2.0 - F.hardsigmoid(z), lambda z: F.relu6(z + 3) / 6,
    lambda z: torch.sigmoid(z) * torch.sigmoid(2 * z),
    lambda z: F.pad(torch.sigmoid(z)[:, :, 1:], (0, 0, 1, 0), value=0.5),
    lambda z: F.pad(torch.sigmoid(z)[:, :, 1:], (0, 0, 1, 0), mode="replicate"),
    lambda z: torch.exp(z) / torch.exp(z).sum(1, keepdim=True),
    lambda z: (lambda e: e / (e.mean((2, 3), keepdim=True) + 1e-6))(F.relu(z)),
    lambda z: F.hardtanh(z, 0.0, 2.0), lambda z: torch.clamp(z, 0.1, 3.0),
    lambda z: torch.clamp_max(F.relu(z), 4.0), lambda z: -torch.clamp(z, -1.0, 0.0),
    lambda z: torch.abs(torch.tanh(z)), lambda z: torch.maximum(torch.sigmoid(z), torch.full((1,), 0.2, dtype=z.dtype)),
    lambda z: torch.sigmoid(z) ** 2, lambda z: 1 / (1 + torch.exp(-z)),
    lambda z: torch.reciprocal(2 - torch.sigmoid(z)), lambda z: 1 / (1 + F.relu(z)),
    lambda z: F.avg_pool2d(torch.sigmoid(z), 3, 1, 1), lambda z: F.softplus(torch.tanh(z)),
    lambda z: torch.sigmoid(z)[:, [1, 0]], lambda z: torch.exp(F.log_softmax(z, 1)),
    lambda z: F.elu(torch.tanh(z)) + 1, lambda z: 1 / (1 + z * z),
    lambda z: torch.cat([torch.sigmoid(z)[:, :1],
                                                             F.hardsigmoid(z)[:, 1:]], 1)])
def test_gates_known_non_negative_from_their_range(gate):
    """``1 - sigmoid(z)`` (a highway net's carry gate), ``1 + tanh(z)``, a
    hard-sigmoid written out, a product of gates, a gate padded within its
    range, powers, reciprocals, pools, indexings and bounded functions of
    gates: non-negative and bounded whatever the input, so gates (SPEC §1b):
    the gated path keeps its edges, the gate's branch is left out."""
    torch.manual_seed(7)
    net = _Gated(gate).double()
    g, _ = _graph(net, (2, 3, 3))
    ref, _ = _graph(nn.Sequential(net.c, net.f).double(), (2, 3, 3))
    np.testing.assert_allclose(_dense(g), _dense(ref))
    assert g.meta["gates"]


@pytest.mark.parametrize("gate", [lambda z: 0.5 - torch.sigmoid(z), lambda z: torch.tanh(z) + 0.5,
                                  lambda z: 1 - 2 * torch.sigmoid(z)])
def test_a_bounded_factor_that_can_be_negative_is_not_a_gate(gate):
    with pytest.raises(UnsupportedLayerError, match="product of two network values"):
        _graph(_Gated(gate).double(), (2, 3, 3))


@pytest.mark.parametrize("gate", [F.relu, F.softplus, torch.abs, torch.exp,
                                  lambda z: torch.clamp(z, min=0.0),
                                  lambda z: torch.maximum(z, torch.zeros(1, dtype=z.dtype)),
                                  lambda z: torch.cat([torch.sigmoid(z)[:, :1], F.relu(z)[:, 1:]], 1),
                                  lambda z: F.relu(z) + F.relu(-z) + 0.1,
                                  lambda z: torch.exp(z) / torch.exp(2 * z).sum(1, keepdim=True)])
def test_an_unbounded_non_negative_factor_is_not_a_gate(gate):
    """``relu(v) * k`` (separable self-attention's ``relu(value) * context``),
    a softplus, ``|z|`` or ``exp`` factor: unbounded, a value of its own, not a
    gate; the product of two values is refused (it was taken as a gate, and
    the factor's branch left out)."""
    with pytest.raises(UnsupportedLayerError, match="neither factor is a gate"):
        _graph(_Gated(gate).double(), (2, 3, 3))


@pytest.mark.parametrize("act,name", [(lambda x: x * torch.sigmoid(x), "SiLU"),
                                      (lambda x: x * F.hardsigmoid(x), "hard-swish"),
                                      (lambda x: x * (torch.clamp(x + 3, 0, 6) / 6), "hard-swish"),
                                      (lambda x: x * F.relu6(x + 3.0) / 6.0, "hard-swish"),
                                      (lambda x: x * F.hardtanh(x + 3, 0.0, 6.0) / 6, "hard-swish"),
                                      (lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))), "GELU"),
                                      (lambda x: x * (1 + torch.erf(x / math.sqrt(2))) / 2, "GELU"),
                                      (lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (
                                          x + 0.044715 * x ** 3))), "GELU (tanh)"),
                                      (lambda x: x * torch.tanh(F.softplus(x)), "Mish"),
                                      (F.silu, "SiLU"), (F.hardswish, "Hardswish"),
                                      (F.gelu, "GELU")])
def test_activation_written_as_product_is_elementwise_and_warns(act, name):
    """An activation written out, its constant factor outside the product or
    inside (``x * relu6(x + 3) / 6``, ``0.5 x (1 + erf(x / sqrt 2))``), has the
    graph of its module (SPEC §1b: what the network computes, whatever
    function computes it): no edges, the next layer's weights unscaled."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(act(self.a(x)))

    net = Net().double()
    g, warns = _graph(net, (3,))
    ref, none = _graph(nn.Sequential(net.a, nn.ReLU(), net.b), (3,))
    assert not none
    np.testing.assert_allclose(_dense(g), _dense(ref))
    # (the warning of the tanh form's x + 0.044715 x^3 is taken back: it is GELU's)
    assert len(warns) == 1 and name in warns[0]


@pytest.mark.parametrize("act", [nn.Softsign(), lambda x: x / (1 + x.abs())])
def test_softsign_is_a_monotone_activation(act):
    """Softsign, ``x / (1 + |x|)``: a division of ``x`` by a function of itself,
    elementwise and non-decreasing (no warning; the ``|x|`` on its way is not
    warned either); it was refused as a division by a network value."""
    net = nn.Sequential(nn.Linear(3, 4), act if isinstance(act, nn.Module) else _Fixed(
        lambda m, x: act(x)), nn.Linear(4, 2)).double()
    g, warns = _graph(net, (3,))
    ref, _ = _graph(nn.Sequential(net[0], nn.ReLU(), net[2]), (3,))
    np.testing.assert_allclose(_dense(g), _dense(ref))
    assert not warns


class _StarReLU(nn.Module):
    """MetaFormer's StarReLU, ``s * relu(x) ** 2 + b`` (timm's caformer / convformer)."""

    def __init__(self, s=0.8, b=-0.3):
        super().__init__()
        self.scale, self.bias = nn.Parameter(torch.tensor(s)), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        return self.scale * torch.relu(x) ** 2 + self.bias


class _Affine(nn.Module):
    def __init__(self, s, b, act):
        super().__init__()
        self.s, self.b, self.act = s, b, act

    def forward(self, x):
        return self.s * self.act(x) + self.b


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("s", [0.8, -0.5])
def test_powers_that_no_normalization_reduces_are_elementwise_activations(capture, s):
    """``x ** p`` is a statistic only when, reduced, it rescales a value (RMSNorm);
    flowing on into a layer, it is an elementwise activation: StarReLU gives the
    graph of ``s * relu(x) + b`` (the factor's sign included) and no warning, a
    square of a signed value warns as non-monotone."""
    torch.manual_seed(3)
    conv1, conv2 = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 3)
    head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    star = nn.Sequential(conv1, _StarReLU(s), conv2, head).double()
    ref = nn.Sequential(conv1, _Affine(s, -0.3, torch.relu), conv2, head).double()
    g, warns = _graph(star, (2, 4, 4), capture=capture)
    r, _ = _graph(ref, (2, 4, 4), capture=capture)
    assert not warns
    np.testing.assert_allclose(_dense(g), _dense(r))
    plain, _ = _graph(nn.Sequential(conv1, nn.ReLU(), conv2, head).double(), (2, 4, 4),
                      capture=capture)
    for act in (lambda x: x ** 2, lambda x: x * x, torch.rsqrt):
        sq = nn.Sequential(conv1, _Affine(1.0, 0.0, act), conv2, head).double()
        g, warns = _graph(sq, (2, 4, 4), capture=capture)
        np.testing.assert_allclose(_dense(g), _dense(plain))
        assert len(warns) == 1 and "x ** " in warns[0]
    # a pooled activation feeding the head is no normalization either
    fc = nn.Linear(3, 2)
    pooled = nn.Sequential(conv1, _StarReLU(s), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           fc).double()
    plain = nn.Sequential(conv1, _Affine(s, -0.3, torch.relu), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), fc).double()
    np.testing.assert_allclose(_dense(_graph(pooled, (2, 4, 4), capture=capture)[0]),
                               _dense(_graph(plain, (2, 4, 4), capture=capture)[0]))


def test_prelu_warns_with_layer_and_count_only_for_negative_slopes():
    net = nn.Sequential(nn.Conv2d(1, 4, 1), nn.PReLU(4), nn.Flatten(), nn.Linear(16, 2)).double()
    assert not _graph(net, (1, 2, 2))[1]
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.2, -0.1, 0.3, -0.5]))
    warns = _graph(net, (1, 2, 2))[1]
    assert len(warns) == 1 and "'1'" in warns[0] and "2 of 4" in warns[0]
    assert len(_graph(net, (1, 2, 2), capture="fx")[1]) == 1


@pytest.mark.parametrize("capture", ["export", "core"])
def test_layer_and_group_norm_fold_their_gain_sign_included(capture):
    torch.manual_seed(2)
    a, b = nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)
    ln = nn.LayerNorm(4)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([1.5, -2.0, 0.5, -0.25]))
    net = nn.Sequential(a, ln, b).double()
    A = _dense(_graph(net, (3,), capture=capture)[0])
    w = a.weight.detach().double().numpy() * ln.weight.detach().double().numpy()[:, None]
    np.testing.assert_allclose(A[:3, 3:7], w.T)
    np.testing.assert_allclose(A[3:7, 7:], b.weight.detach().double().numpy().T)
    A0 = _dense(_graph(net, (3,), norm="ignore", capture=capture)[0])
    np.testing.assert_allclose(A0[:3, 3:7], a.weight.detach().double().numpy().T)

    conv, gn = nn.Conv2d(2, 4, 1, bias=False), nn.GroupNorm(2, 4)
    with torch.no_grad():
        gn.weight.copy_(torch.tensor([1.0, -1.0, 2.0, -3.0]))
    g, _ = _graph(nn.Sequential(conv, gn, nn.Flatten(), nn.Linear(4, 1)).double(), (2, 1, 1))
    A = _dense(g)
    np.testing.assert_allclose(A[:2, 2:6], (conv.weight.detach().double().reshape(4, 2)
                                            * gn.weight.detach().double()[:, None]).numpy().T)
    assert g.meta["rules"]["norm"] == "fold"


@pytest.mark.parametrize("capture", ["export", "core"])
def test_functional_batch_norm_equals_the_module(capture):
    torch.manual_seed(3)
    conv, bn = nn.Conv2d(2, 3, 3, bias=False).double(), nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5]))
        bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0]))

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = conv, bn

        def forward(self, x):
            y = self.conv(x)
            return F.relu(F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                       False, 0.1, bn.eps)).flatten(1)

    a = _dense(_graph(nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten()).double(), (2, 4, 4))[0])
    b = _dense(_graph(Functional().double(), (2, 4, 4))[0])
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("layer", [
    nn.Upsample(scale_factor=2, mode="nearest"),
    nn.Upsample(scale_factor=2, mode="bilinear"),
    nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True),
    nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
    nn.ConvTranspose2d(4, 2, (2, 3), stride=(2, 1), groups=2, dilation=(1, 2)),
    nn.ConvTranspose1d(4, 3, 3, stride=2),
])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_upsampling_and_transposed_conv_blocks_equal_the_layer_jacobian(layer, capture):
    """Linear layers: the edge block's matrix is exactly the layer's Jacobian."""
    torch.manual_seed(4)
    nd = 1 if isinstance(layer, nn.ConvTranspose1d) else 2
    c = getattr(layer, "in_channels", 3)
    shape = (c,) + (3,) * nd
    net = nn.Sequential(layer).double()
    g, _ = _graph(net, shape, capture=capture)
    assert len(g.edge_blocks) == 1
    x = torch.randn((1,) + shape, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda t: net(t), x)
    n_in = int(np.prod(shape))
    J = J.reshape(-1, n_in).numpy()
    A = _dense(g)[:n_in, n_in:]
    np.testing.assert_allclose(A, J.T, atol=1e-12)
    assert g.n_edges == int((J != 0).sum()) or isinstance(layer, nn.ConvTranspose2d)
    b = g.edge_blocks[0]
    y = torch.randn((2, b.out_size), dtype=torch.float64)
    np.testing.assert_allclose(g.matvec(torch.cat([torch.zeros(2, n_in, dtype=torch.float64),
                                                   y], 1))[:, :n_in].numpy(),
                               (A @ y.numpy().T).T, atol=1e-12)


class _Pad(nn.Module):
    def __init__(self, widths, mode):
        super().__init__()
        self.widths, self.mode = widths, mode

    def forward(self, x):
        return F.pad(x, self.widths, mode=self.mode)


@pytest.mark.parametrize("pad", [
    nn.ReflectionPad2d(1), nn.ReplicationPad2d((1, 0, 2, 1)), nn.CircularPad2d(1),
    _Pad((2, 1, 0, 1), "reflect"), _Pad((0, 2, 1, 1), "replicate"), _Pad((1, 1, 2, 0), "circular"),
    nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
    nn.Conv2d(2, 2, 3, padding=(1, 2), padding_mode="circular"),
    nn.Conv1d(2, 2, 3, padding=2, padding_mode="replicate")])
@pytest.mark.parametrize("capture", ["export", "core", "fx"])
def test_padding_that_copies_the_border_is_a_reindexing(pad, capture):
    """Reflect, replicate and circular padding copy nodes inside to the border
    (CycleGAN's ReflectionPad2d, timm's blur pools): no nodes of their own;
    the graph is the Jacobian of padding + convolution.  A node copied into a
    window it already sits in reaches that output twice: parallel edges, whose
    weights add in the explicit matrix."""
    torch.manual_seed(5)
    nd = 1 if isinstance(pad, nn.Conv1d) else 2
    conv = nn.Conv1d(2, 3, 3) if nd == 1 else nn.Conv2d(2, 3, 3)
    net = nn.Sequential(pad, conv).double()
    shape = (2,) + (5,) * nd
    g, _ = _graph(net, shape, capture=capture)
    n_in = int(np.prod(shape))
    x = torch.randn((1,) + shape, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(net, x).reshape(-1, n_in).numpy()
    if isinstance(pad, (nn.Conv1d, nn.Conv2d)):   # two layers: input -> pad conv -> conv
        A = _dense(g)
        n_mid = g.node_blocks[1].size
        A = A[:n_in, n_in:n_in + n_mid] @ A[n_in:n_in + n_mid, n_in + n_mid:]
    else:
        assert len(g.node_blocks) == 2                # no nodes for the padding
        A = _dense(g)[:n_in, n_in:]
    np.testing.assert_allclose(A, J.T, atol=1e-12)
    y = torch.randn(2, g.n_nodes, dtype=torch.float64)
    np.testing.assert_allclose(g.matvec(y).numpy(), (_dense(g) @ y.numpy().T).T, atol=1e-12)


def test_non_tensor_forward_arguments_are_resolved_at_capture():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x, embed=False):
            h = F.relu(self.body(x))
            if embed:
                return h
            return self.head(h)

    net = Net()
    g = SignedGraph.from_module(net, (4,))
    assert g.n_nodes == 4 + 3 + 2 and g.meta["rules"]["capture"].startswith("torch.export")
    g = SignedGraph.from_module(net, (4,), forward_kwargs={"embed": True})
    assert g.n_nodes == 4 + 3 and g.meta["rules"]["forward_kwargs"] == {"embed": "True"}


def test_several_inputs_and_outputs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 4 + 5, 3)
            self.box = nn.Linear(3, 4)

        def forward(self, img, meta):
            h = torch.cat([self.conv(img).flatten(1), meta], 1)
            logits = self.fc(F.relu(h))
            return {"logits": logits, "box": self.box(logits)}   # a raw regression head

    g = SignedGraph.from_module(Net(), [(1, 4, 4), (5,)])
    assert [nb.shape for nb in g.input_blocks] == [(1, 4, 4), (5,)]
    assert len(g.input_index) == 16 + 5
    assert list(g.outputs) == ["logits", "box"]
    assert g.output_name == "logits" and len(g.output_index) == 3
    assert g.n_nodes == 16 + 5 + 8 + 3 + 4
    assert g.n_edges == 2 * 9 * 4 + 13 * 3 + 5 * 0 + 3 * 4 - 0
    box = g.select_output("box")
    assert box.output_name == "box" and len(box.output_index) == 4 and box.n_edges == g.n_edges
    assert g.select_output(1).output_name == "box"
    with pytest.raises(DeepglassError, match="no output 'boxes'.*logits, box"):
        g.select_output("boxes")


def test_unused_values_add_nothing():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.unused = nn.Linear(3, 3), nn.Linear(3, 2), nn.Linear(3, 5)

        def forward(self, x):
            h = F.relu(self.a(x))
            self.unused(h)
            return self.b(h)

    g = SignedGraph.from_module(Net(), (3,))
    assert g.n_nodes == 3 + 3 + 2 and g.n_edges == 9 + 6


@pytest.mark.parametrize("net,match", [
    (nn.LSTM(4, 3), r"'LSTM' \(LSTM\): a recurrent cell"),
    (nn.Sequential(nn.Linear(4, 4), nn.GRU(4, 3)), r"'1' \(GRU\): a recurrent cell"),
])
def test_recurrent_cells_are_refused_with_why(net, match):
    with pytest.raises(UnsupportedLayerError, match=match):
        SignedGraph.from_module(net, (2, 4))


def test_a_recurrent_cell_held_but_not_called_adds_nothing():
    """A CRNN whose ``forward`` stops before its recurrent head (its convolutional
    part, the head kept for the checkpoint's keys): the graph of the
    convolutional part (it was refused for the cell it never calls)."""
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.c = nn.Conv1d(2, 3, 3)

        def forward(self, x):
            return self.c(x)

    class Crnn(Conv):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4)

    a, b = (SignedGraph.from_module(n(), (2, 8)) for n in (Crnn, Conv))
    assert (a.n_nodes, a.n_edges) == (b.n_nodes, b.n_edges) == (2 * 8 + 3 * 6, 3 * 6 * 2 * 3)


def test_a_held_recurrent_cell_changes_no_other_message_or_attribute():
    """A model that holds a recurrent cell it never calls: a wrong input shape
    is reported as such (it was blamed on the cell), and a buffer its forward
    reassigns is restored (comparing the buffers crashed)."""
    class Held(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc, self.rnn = nn.Conv1d(2, 2, 1), nn.Linear(8, 2), nn.LSTM(2, 2)
            self.register_buffer("cache", torch.zeros(1, 2, 4))

        def forward(self, x):
            y = self.c(x)
            self.cache = y.detach()
            return self.fc(y.flatten(1))

    net = Held()
    before = net.cache
    SignedGraph.from_module(net, (2, 4))
    assert net.cache is before
    with pytest.raises(DeepglassError, match=r"does not accept input of shape \(2, 5\)"):
        SignedGraph.from_module(net, (2, 5))


def test_capture_leaves_the_models_attributes_as_they_were():
    """A forward that caches a tensor on its module (a detector head's anchors,
    created on the first call): the capture's traced values are not left
    behind; the model computes as before the capture."""
    class Head(nn.Module):
        anchors = torch.zeros(0)

        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            if self.anchors.shape[0] != x.shape[-1]:
                self.anchors = torch.arange(x.shape[-1]).to(x.dtype)
            return self.c(x) * 2.0 + self.anchors

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 1, 1), Head()).eval()
    x = torch.randn(1, 1, 4, 4)
    with torch.no_grad():
        want = net(x)
    del net[1].anchors                   # back to the class attribute
    SignedGraph.from_module(net, (1, 4, 4))
    assert "anchors" not in net[1].__dict__
    with torch.no_grad():
        got = net(x)
    assert type(got) is torch.Tensor
    torch.testing.assert_close(got, want)


def test_attention_is_refused_with_why():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return torch.softmax(self.q(x) @ self.k(x).transpose(1, 2), -1)

    with pytest.raises(UnsupportedLayerError, match="self-attention.*not defined"):
        SignedGraph.from_module(Attn(), (3, 4))
    mha = nn.MultiheadAttention(4, 2)
    with pytest.raises(UnsupportedLayerError, match="MultiheadAttention.*attention"):
        SignedGraph.from_module(mha, (3, 4))


@pytest.mark.parametrize("capture", ["export", "core"])
def test_normalization_by_a_statistic_is_a_rescaling(capture):
    """Local response norm and RMSNorm divide by statistics of x: no edges."""
    ref = nn.Sequential(nn.Conv2d(2, 6, 1), nn.ReLU(), nn.Flatten(), nn.Linear(6, 2)).double()
    lrn = nn.Sequential(ref[0], ref[1], nn.LocalResponseNorm(3), ref[2], ref[3]).double()
    np.testing.assert_allclose(_dense(_graph(lrn, (2, 1, 1), capture=capture)[0]), _dense(_graph(ref, (2, 1, 1), capture=capture)[0]))
    assert "left_out" not in _graph(lrn, (2, 1, 1), capture=capture)[0].meta

    class RMS(nn.Module):
        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    a = nn.Sequential(nn.Linear(3, 4), RMS(), nn.Linear(4, 2)).double()
    b = nn.Sequential(a[0], a[2]).double()
    np.testing.assert_allclose(_dense(_graph(a, (3,), capture=capture)[0]), _dense(_graph(b, (3,), capture=capture)[0]))


class _GroupStd(nn.Module):
    """EvoNorm-S0 (timm's ``EvoNorm2dS0``): ``x * sigmoid(v x) / group_std(x)``, its
    standard deviation computed with ``x.float().var(...)`` (a no-op cast that the
    exporter checks with ``_assert_tensor_metadata``)."""

    def __init__(self, c):
        super().__init__()
        self.v = nn.Parameter(torch.full((1, c, 1, 1), 0.7))

    def forward(self, x):
        std = x.float().var(dim=(1, 2, 3), unbiased=False, keepdim=True).add(1e-5).sqrt()
        return x * torch.sigmoid(self.v * x) / std.to(x.dtype)


class _GRN(nn.Module):
    """ConvNeXt-V2's global response norm: ``gamma (x N(x)) + beta + x`` with
    ``N(x) = ||x|| / mean ||x||`` over the channels."""

    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.linspace(-2.0, 1.0, c).view(1, c, 1, 1))
        self.beta = nn.Parameter(torch.full((1, c, 1, 1), 0.1))

    def forward(self, x):
        gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
        nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class _GainPlus(nn.Module):
    """``g * x + x``: one rescaling of ``x`` by ``1 + g``."""

    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, x):
        return self.g * x + x


@pytest.mark.parametrize("capture", ["export", "core"])
def test_variances_and_norms_are_statistics_of_a_normalization(capture):
    """EvoNorm's group standard deviation (``var``) divides, ConvNeXt-V2's global
    response norm (``norm``) multiplies: positive rescalings (SPEC §1b), so
    EvoNorm adds no edge (its ``x * sigmoid(v x)`` is a SiLU-like activation,
    which warns) and the response norm's residual block becomes ``1 + gamma``
    per channel, the response taken at its channel mean."""
    torch.manual_seed(2)
    conv1, conv2 = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 3)
    head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    plain = nn.Sequential(conv1, conv2, head)
    evo = nn.Sequential(conv1, _GroupStd(3), conv2, head)
    g, warns = _graph(evo, (2, 4, 4), capture=capture)
    np.testing.assert_allclose(_dense(g), _dense(_graph(plain, (2, 4, 4), capture=capture)[0]),
                               rtol=1e-6)
    assert len(warns) == 1
    grn = _GRN(3)
    ref = nn.Sequential(conv1, _GainPlus(grn.gamma.detach()), conv2, head)
    np.testing.assert_allclose(
        _dense(_graph(nn.Sequential(conv1, grn, conv2, head), (2, 4, 4), capture=capture)[0]),
        _dense(_graph(ref, (2, 4, 4), capture=capture)[0]), rtol=1e-6)
    # which is the rescaling by 1 + gamma of the conv's output: edges into conv2
    folded = nn.Conv2d(3, 2, 3)
    with torch.no_grad():
        folded.weight.copy_(conv2.weight * (1.0 + grn.gamma.view(1, 3, 1, 1)))
        folded.bias.copy_(conv2.bias)
    np.testing.assert_allclose(
        _dense(_graph(ref, (2, 4, 4), capture=capture)[0]),
        _dense(_graph(nn.Sequential(conv1, folded, head), (2, 4, 4), capture=capture)[0]),
        rtol=1e-6)


class _StatsPool(nn.Module):
    """Statistics pooling (x-vectors, ECAPA-TDNN): the mean and standard
    deviation of every channel over time as features, by ATen's op or written
    out; the variance and the 2-norm alike."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv, self.fc = nn.Conv1d(2, 3, 3), nn.Linear(6, 2)

    def forward(self, x):
        y = self.conv(x)
        L = y.shape[-1]
        if self.how in ("std_mean", "var_mean"):
            s, mu = (torch.std_mean if self.how == "std_mean" else torch.var_mean)(y, 2)
        elif self.how == "norm":
            s, mu = y.norm(dim=2), y.mean(2)
        elif self.how == "norm_written":
            s, mu = (y ** 2).sum(2).sqrt(), y.mean(2)
        elif self.how == "std_own_mean":     # (as torch.onnx writes torch.std)
            d = y - y.mean(2, keepdim=True)
            s, mu = torch.sqrt((d * d).mean(2) * L / (L - 1)), y.mean(2)
        else:
            mu = y.mean(2, keepdim=True)
            s = ((y - mu) ** 2).sum(2) / (L - 1)
            s, mu = (s.sqrt() if self.how == "std_written" else s), mu.squeeze(2)
        return self.fc(torch.cat([mu, s], 1))


@pytest.mark.filterwarnings("ignore::deepglass.graph.NonMonotoneActivationWarning")
@pytest.mark.parametrize("how", ["std", "var", "norm"])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_statistic_used_as_a_feature_is_what_it_computes(how, capture):
    """A standard deviation, variance or norm that rescales no value is the
    graph of what it computes (SPEC §1b): the centring layer (+1 from ``y``,
    -1 from its mean), the square (an activation), the sum over time and the
    root, as the same computation written out (``std`` was refused, while
    ECAPA's written-out pooling gave a graph); with a square warned."""
    torch.manual_seed(0)
    op = _StatsPool(how if how == "norm" else f"{how}_mean").double().eval()
    written = _StatsPool(f"{how}_written").double().eval()
    written.load_state_dict(op.state_dict())
    x = torch.randn(2, 2, 9, dtype=torch.float64)
    torch.testing.assert_close(op(x), written(x))
    g, warned = _graph(op, (2, 9), capture=capture)
    assert any("x ** 2" in w for w in warned)
    h = _graph(written, (2, 9), capture=capture)[0]
    np.testing.assert_allclose(_dense(g), _dense(h), rtol=1e-12, atol=1e-15)
    if how != "norm":    # the centring: +1 from y, -1 from its mean
        A = _dense(g)
        assert {1.0, -1.0} <= set(np.round(A[A != 0], 12))


@pytest.mark.filterwarnings("ignore::deepglass.graph.NonMonotoneActivationWarning")
@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_centring_squared_into_a_feature_is_a_layer(capture):
    """A standard deviation written out with its own centring mean (``d = y -
    y.mean(2, keepdim=True)``, ``sqrt(mean(d * d))``: how ``torch.onnx``
    writes ``torch.std``) and used as a feature is what it computes (SPEC
    §1b), the graph of ``torch.std``: the centring is a layer, not a
    normalization's mean subtraction (it was ignored, and the feature read as
    a root mean square of ``y``)."""
    torch.manual_seed(0)
    op = _StatsPool("std_mean").double().eval()
    own = _StatsPool("std_own_mean").double().eval()
    own.load_state_dict(op.state_dict())
    x = torch.randn(2, 2, 9, dtype=torch.float64)
    torch.testing.assert_close(op(x), own(x))
    g, h = _graph(op, (2, 9), capture=capture)[0], _graph(own, (2, 9), capture=capture)[0]
    # (its own centring mean is one block more: 71 nodes for 68)
    assert [nb.op for nb in h.node_blocks] == ["input", "conv", "avgpool", "add", "avgpool",
                                               "avgpool", "dense"]
    assert h.n_nodes == g.n_nodes + 3
    V, W = path_sums(g)[g.output_index], path_sums(h)[h.output_index]
    np.testing.assert_allclose(W, V, rtol=1e-9, atol=1e-15)
    # linearized (root and square as identities) the std is sum(y - mean(y)) / (L - 1)
    # = 0: the path sums are the Jacobian of fc(cat([y.mean(2), 0]))
    def linear(t):
        y = own.conv(t.view(1, 2, 9))
        return own.fc(torch.cat([y.mean(2), (y - y.mean(2, keepdim=True)).sum(2) / 6], 1))

    J = torch.autograd.functional.jacobian(linear, torch.zeros(18, dtype=torch.float64))
    np.testing.assert_allclose(W, J.numpy().reshape(2, 18), atol=1e-12)


class _SplitAttention(nn.Module):
    """ResNeSt's split attention (radix 2): the radix branches, gated by a
    softmax across them, add up with ``sum(dim=1)``."""

    def __init__(self, c):
        super().__init__()
        self.fc = nn.Conv2d(c, 2 * c, 1)

    def forward(self, x):
        B, C2, H, W = x.shape
        xs = x.view(B, 2, C2 // 2, H, W)
        gap = xs.sum(dim=1).mean((2, 3), keepdim=True)
        attn = torch.softmax(self.fc(gap).view(B, 2, C2 // 2, 1, 1), dim=1)
        return (xs * attn).sum(dim=1)


class _Halves(nn.Module):
    def forward(self, x):
        return x[:, :x.shape[1] // 2] + x[:, x.shape[1] // 2:]


class _TokenMean(nn.Module):
    """A channels-last head (MLP-Mixer): the mean over the tokens of (B, N, C)."""

    def __init__(self, transpose_first):
        super().__init__()
        self.t = transpose_first

    def forward(self, x):
        x = x.flatten(2)                       # (B, C, N)
        return x.mean(2) if self.t else x.transpose(1, 2).mean(1)


class _Fixed(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.a = nn.Parameter(torch.tensor([[[[0.5]], [[-2.0]], [[1.5]]]], dtype=torch.float64))

    def forward(self, x):
        return self.fn(self, x)


@pytest.mark.parametrize("capture", ["export", "core"])
def test_reductions_and_ops_with_a_fixed_operand(capture):
    """``sum`` over dimensions adds terms of weight 1 (ResNeSt's and SKNet's
    radix branches), a mean over a channels-last value's tokens is global
    average pooling, ``maximum(x, t)`` with a fixed ``t`` is an elementwise
    activation (a filter response norm's TLU), ``addcmul(b, a, x)`` the
    rescaling by ``a`` (ResMLP's affine layer), and a mean subtracted from the
    value it averages is a normalization's statistic (an instance norm written
    out adds no edge)."""
    torch.manual_seed(6)
    conv1 = nn.Conv2d(2, 6, 3, padding=1)
    head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16, 2))

    def same(a, b, shape=(2, 4, 4)):
        ga, gb = _graph(a.double(), shape, capture=capture)[0], _graph(b.double(), shape, capture=capture)[0]
        assert (ga.n_nodes, ga.n_edges) == (gb.n_nodes, gb.n_edges)
        np.testing.assert_allclose(_dense(ga), _dense(gb), rtol=1e-12)

    same(nn.Sequential(conv1, _SplitAttention(3), head), nn.Sequential(conv1, _Halves(), head))
    fc = nn.Linear(6, 2)
    same(nn.Sequential(conv1, _TokenMean(False), fc), nn.Sequential(conv1, _TokenMean(True), fc))
    conv = nn.Conv2d(2, 3, 3, padding=1)
    plain = nn.Sequential(conv, nn.ReLU(), head)
    same(nn.Sequential(conv, _Fixed(lambda m, x: torch.maximum(x, m.a)), head), plain)
    scaled = nn.Sequential(conv, _Fixed(lambda m, x: m.a * x), head)
    same(nn.Sequential(conv, _Fixed(lambda m, x: torch.addcmul(m.a * 0.3, m.a, x)), head), scaled)
    inorm = _Fixed(lambda m, x: (x - x.mean((2, 3), keepdim=True))
                   / torch.sqrt(x.var((2, 3), keepdim=True) + 1e-5))
    same(nn.Sequential(conv, inorm, head), plain)
    # a maximum of two values is refused; of two multiples of one value (maximum(x, 2 x))
    # it is an elementwise function of it, its factor that of the larger term
    with pytest.raises(UnsupportedLayerError, match="maximum or minimum of two network values"):
        _graph(nn.Sequential(conv, _Fixed(lambda m, x: torch.maximum(x, x.flip(-1))),
                             head).double(), (2, 4, 4), capture=capture)
    two = _graph(nn.Sequential(conv, _Fixed(lambda m, x: torch.maximum(x, 2 * x)),
                               head).double(), (2, 4, 4), capture=capture)[0]
    ref = _graph(nn.Sequential(conv, _Fixed(lambda m, x: 2 * x), head).double(), (2, 4, 4),
                 capture=capture)[0]
    np.testing.assert_allclose(path_sums(two)[two.output_index],
                               path_sums(ref)[ref.output_index], rtol=1e-12)


class _SumOf(nn.Module):
    """A 1x1 convolution plus a value of another shape: a reduction added to a
    value, or a global-context branch broadcast over the positions."""

    def __init__(self, how):
        super().__init__()
        self.c, self.d, self.how = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1), how

    def forward(self, x):
        y = self.c(x)
        return {"mean": lambda: y + x.mean((2, 3), keepdim=True),
                "own mean": lambda: y + y.mean((2, 3), keepdim=True),
                "pool expanded": lambda: y + F.adaptive_avg_pool2d(x, 1).expand_as(x),
                "sum": lambda: y + x.sum((2, 3), keepdim=True),
                "channel mean": lambda: y + x.mean(1, keepdim=True),
                "two means": lambda: x.mean((2, 3), keepdim=True) + x.mean(1, keepdim=True),
                "mean minus": lambda: x.mean((2, 3), keepdim=True) - y,
                "context": lambda: x + self.d(F.adaptive_avg_pool2d(x, 1)),
                "context first": lambda: self.d(x.sum((2, 3), keepdim=True)) - y}[self.how]()


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("how", ["mean", "own mean", "pool expanded", "sum", "channel mean",
                                 "two means", "mean minus", "context", "context first"])
def test_a_reduction_added_to_a_value_is_a_layer(how, capture):
    """A mean or sum added to a value (``y + y.mean(1)``) is a linear layer
    whose edges end on the sum, and a branch of C x 1 x 1 added to a value of
    C x H x W is copied to every position (a global-context block): the graph
    equals the Jacobian.  Only a reduction subtracted from a value (or one that
    rescales it) is a normalization's statistic."""
    assert_is_jacobian(_SumOf(how), (2, 3, 3), capture)


class _Stacked(nn.Module):
    """Branches stacked in front of the batch and reduced over that axis
    (MONAI's RegistrationExtractionBlock: ``torch.stack(maps, 0).mean(0)``)."""

    def __init__(self, how):
        super().__init__()
        self.c, self.d, self.how = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 3, 1), how

    def forward(self, x):
        y = self.c(x)
        c = torch.tensor([2.0, -1.0], dtype=x.dtype).view(2, 1, 1, 1, 1)
        if self.how == "broadcast add":         # y copied along the stacked axis
            return (y + c).sum(0)
        if self.how == "broadcast mul":
            return (y.unsqueeze(0) * c).sum(0)
        if self.how == "folded":                # channels folded into dim 0: not stacked
            return y.view(-1, 1, 3, 3).mean(0)
        if self.how == "one":                   # one value stacked alone (MONAI's RegUNet)
            return torch.stack([y], 0).mean(0)
        s = torch.stack([y, self.d(x), x[:, :1].expand(-1, 3, -1, -1)], 0)
        return s.mean(0) if self.how == "mean" else s.sum(0)


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("how", ["mean", "sum", "broadcast add", "broadcast mul", "one"])
def test_a_reduction_over_values_stacked_before_the_batch_is_linear(how, capture):
    """``torch.stack([a, b, c]).mean(0)`` averages one sample's values (the
    stacked axis, not the batch, at batch 1): the graph equals the Jacobian;
    it was refused as reducing over the batch dimension.  A value broadcast
    along the stacked axis (by a constant of 2 x 1 x ...) is copied there."""
    g = assert_is_jacobian(_Stacked(how), (2, 3, 3), capture)
    if how == "one":        # the value itself: no layer of its own
        assert len(g.node_blocks) == 2


def test_a_reduction_over_values_folded_into_the_batch_is_refused():
    """``y.view(-1, 1, H, W).mean(0)`` at batch 1 looks like a stack, but its
    dim 0 holds the batch (at batch 2 it would mix samples): refused."""
    with pytest.raises(UnsupportedLayerError, match="reduces over the batch dimension"):
        SignedGraph.from_module(_Stacked("folded"), (2, 3, 3))


class _CatConstant(nn.Module):
    """CoordConv (coordinate channels concatenated to the input) and the
    option-A shortcut of CIFAR ResNets / PyramidNet (channels padded by
    concatenating zeros)."""

    def __init__(self, how):
        super().__init__()
        self.c, self.how = nn.Conv2d(4, 2, 3, padding=1), how
        self.register_buffer("grid", torch.randn(1, 2, 3, 4))

    def forward(self, x):
        b, _, h, w = x.shape
        if self.how == "coordinates":
            yy = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(b, 1, h, w)
            xx = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(b, 1, h, w)
            return self.c(torch.cat([x, yy.to(x.dtype), xx.to(x.dtype)], 1))
        if self.how == "buffer":
            return self.c(torch.cat([x, self.grid.expand(b, -1, -1, -1)], 1))
        return self.c(torch.cat([x, torch.zeros_like(x)], 1)) + torch.cat([x, torch.zeros_like(x)], 1)[:, :2]


@pytest.mark.parametrize("how", ["coordinates", "buffer", "zeros"])
def test_constants_concatenated_to_a_value_have_no_nodes(how):
    """A constant in a concatenation adds no node and no edge (SPEC §1), as
    zero padding; it crashed with an IndexError."""
    g = assert_is_jacobian(_CatConstant(how), (2, 3, 4))
    # 3x3 taps inside a 3x4 image: (2 + 3 + 2) rows x (2 + 3 + 3 + 2) columns
    assert g.n_nodes == 24 + 24 and g.n_edges == 2 * 2 * 7 * 10 + (24 if how == "zeros" else 0)


class _SignedFactor(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.c, self.f, self.how = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1), how

    def forward(self, x):
        y = self.c(x)
        return {"mean of another": lambda: y * self.f(x).mean((2, 3), keepdim=True),
                "own mean": lambda: y / y.mean((2, 3), keepdim=True),
                "channel sum": lambda: y * y.sum(1, keepdim=True),
                "copy minus gated": lambda: y - 3 * y * torch.sigmoid(self.f(x))}[self.how]()


@pytest.mark.parametrize("how", ["mean of another", "own mean", "channel sum",
                                 "copy minus gated"])
def test_a_factor_that_may_be_negative_is_refused(how):
    """A mean of a signed value that multiplies or divides a value, and a gated
    value summed with a copy of opposite sign whose factor may take either
    sign (``y - 3 y sigmoid(z)``), are factors whose sign depends on the
    input: refused (SPEC §1b), where they were taken as positive rescalings."""
    with pytest.raises(UnsupportedLayerError, match="product|division|not the same for every"):
        SignedGraph.from_module(_SignedFactor(how).eval(), (2, 3, 3))


def test_a_reduction_subtracted_through_a_negation_is_a_statistic():
    """``x + (-u)`` and ``x + u * -1`` with ``u`` the mean of ``x``: the mean
    subtraction of an instance norm written out, as ``x - u`` (SPEC §1b: no
    edge)."""
    torch.manual_seed(3)
    conv, head = nn.Conv2d(2, 3, 3, padding=1), nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    plain = _graph(nn.Sequential(conv, head).double(), (2, 4, 4))[0]
    for centre in (lambda m, x: x + (-x.mean((2, 3), keepdim=True)),
                   lambda m, x: x + x.mean((2, 3), keepdim=True) * -1.0,
                   lambda m, x: x - x.mean((2, 3), keepdim=True)):
        g = _graph(nn.Sequential(conv, _Fixed(centre), head).double(), (2, 4, 4))[0]
        np.testing.assert_allclose(_dense(g), _dense(plain), rtol=1e-12)


def test_a_pooled_image_added_to_a_second_inputs_features():
    """Image and metadata: ``conv(img).mean((2, 3)) + fc(meta)`` keeps the
    image's branch (the mean is global average pooling, not a statistic)."""
    class TwoIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(2, 3, 1), nn.Linear(4, 3)

        def forward(self, img, meta):
            return self.c(img).mean((2, 3)) + self.fc(meta)

    g = assert_is_jacobian(TwoIn(), [(2, 4, 4), (4,)])
    assert g.n_edges == 2 * 3 * 16 + 3 * 16 + 4 * 3


@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_per_element_factor_on_a_pool_folds_into_the_pools_edges(capture):
    """A mean written as a padded pool times ``9 / count`` (the in-bounds mean,
    as exporters write ``count_include_pad=False``): the factor folds into the
    pool's own edges, one per destination, so every pool edge weighs
    ``1 / count`` of its window and the next layer keeps its own weights."""
    torch.manual_seed(3)
    count = F.avg_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.float64), 3, 1, 1) * 9
    conv, fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(32, 3)
    net = nn.Sequential(conv, nn.ReLU(), _Fixed(lambda m, x: F.avg_pool2d(x, 3, 1, 1) * 9 / count),
                        nn.Flatten(), fc)
    g = _graph(net.double(), (1, 4, 4), capture=capture)[0]
    A = _dense(g)
    pool = A[16:48, 48:80]                      # conv nodes -> pool nodes
    rows, cols = np.nonzero(pool)
    np.testing.assert_allclose(pool[rows, cols], 1.0 / count.reshape(-1).repeat(2)[cols])
    np.testing.assert_allclose(A[48:80, 80:83], fc.weight.detach().double().numpy().T)


class _MaxHead(nn.Module):
    """Conv, ReLU, a global max written three ways, a dense head."""

    def __init__(self, how):
        super().__init__()
        self.conv, self.fc, self.how = nn.Conv2d(2, 4, 3), nn.Linear(4, 3), how

    def forward(self, x):
        h = torch.relu(self.conv(x))
        if self.how == "amax":
            h = h.amax((2, 3))
        elif self.how == "max":
            h = h.flatten(2).max(2)[0]
        elif self.how == "all":
            h = h.max() * torch.ones_like(h[:, :, 0, 0])
        else:
            h = F.adaptive_max_pool2d(h, 1).flatten(1)
        return self.fc(h)


@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_max_written_as_a_reduction_is_a_max_pool(capture):
    """``x.amax(dims)`` and ``x.max(dim)`` over non-batch dimensions are a max
    pool with one window: the graph and the active subnetworks (the window's
    maximum kept) of ``adaptive_max_pool2d(x, 1)``; a max over the batch too
    is refused by name."""
    from deepglass.experiments.active import active_subgraph

    torch.manual_seed(5)
    nets = {how: _MaxHead(how).double().eval() for how in ("pool", "amax", "max")}
    for how in ("amax", "max"):
        nets[how].load_state_dict(nets["pool"].state_dict())
    graphs = {how: _graph(net, (2, 6, 6), capture=capture)[0] for how, net in nets.items()}
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    want = active_subgraph(graphs["pool"], nets["pool"], x)
    for how in ("amax", "max"):
        g = graphs[how]
        assert [nb.op for nb in g.node_blocks] == ["input", "conv", "maxpool", "dense"]
        np.testing.assert_array_equal(_dense(g), _dense(graphs["pool"]))
        got = active_subgraph(g, nets[how], x)
        for k in range(4):
            np.testing.assert_array_equal(got.subgraph(k).to_scipy().toarray(),
                                          want.subgraph(k).to_scipy().toarray())
    with pytest.raises(UnsupportedLayerError, match="reduces over the batch dimension"):
        _graph(_MaxHead("all").double(), (2, 6, 6), capture=capture)


@pytest.mark.parametrize("capture", ["export", "core"])
def test_gate_resampled_to_its_input_is_still_a_gate(capture):
    """GhostNetV2's attention: a sigmoid gate computed at half resolution and
    upsampled (nearest or bilinear, weights >= 0) multiplies the value."""
    class Ghost(nn.Module):
        def __init__(self, mode):
            super().__init__()
            self.conv, self.mode = nn.Conv2d(3, 3, 1), mode

        def forward(self, x):
            g = torch.sigmoid(self.conv(F.avg_pool2d(x, 2)))
            return x * F.interpolate(g, size=x.shape[-2:], mode=self.mode)

    for mode in ("nearest", "bilinear"):
        plain, gated = _body(False), _body(True)
        gated[2] = Ghost(mode).double()
        gated[3].load_state_dict(plain[2].state_dict())
        gated[5].load_state_dict(plain[4].state_dict())
        gated[0].load_state_dict(plain[0].state_dict())
        g1, _ = _graph(gated, (2, 4, 4), capture=capture)
        np.testing.assert_allclose(_dense(g1), _dense(_graph(plain, (2, 4, 4), capture=capture)[0]))
        assert sum(r["params"] for r in g1.meta["left_out"]) == 3 * 3    # the gate conv's weights


@pytest.mark.parametrize("name,shape", [("digits_cnn", (1, 8, 8)), ("resnet18", (3, 32, 32)),
                                        ("shufflenet_v2_x1_0", (3, 32, 32)),
                                        ("googlenet", (3, 64, 64)),
                                        ("squeezenet1_1", (3, 64, 64))])
def test_export_core_and_fx_give_the_same_graph(name, shape):
    """Layer-level ATen ops, core ATen ops and the fx tracer: one graph."""
    from deepglass.zoo import get

    m = get(name)
    a = SignedGraph.from_module(m, shape)
    x = torch.randn(2, a.n_nodes, generator=torch.Generator().manual_seed(0))
    assert a.meta["rules"]["capture"] == "torch.export"
    for how, label in (("core", "torch.export (core ATen)"), ("fx", "torch.fx")):
        b = SignedGraph.from_module(m, shape, capture=how)
        assert b.meta["rules"]["capture"] == label
        assert [(nb.shape, nb.offset) for nb in a.node_blocks] == \
            [(nb.shape, nb.offset) for nb in b.node_blocks]
        assert a.n_edges == b.n_edges
        torch.testing.assert_close(a.sym_matvec(x), b.sym_matvec(x), rtol=1e-4, atol=1e-4)


def test_several_heads_are_read_by_name_downstream():
    """near-monotonicity and active subnetworks read the selected output; one output
    value makes gamma trivially 1, and that is said."""
    from deepglass.experiments.monotonicity import near_monotonicity
    from deepglass.graph.outputs import output_tensor

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.cls, self.reg = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(6, 1)

        def forward(self, x):
            h = F.relu(self.a(x))
            return self.cls(h), self.reg(h)

    net = Net().eval()
    x = torch.randn(5, 4)
    cls, reg = net(x)
    assert torch.equal(output_tensor(net(x)), cls)
    assert torch.equal(output_tensor(net(x), "1"), reg)
    with pytest.raises(DeepglassError, match="no output 'box'"):
        output_tensor(net(x), "box")
    r = near_monotonicity(net, np.ones(4), np.ones(3), x, amplitudes=3)
    assert r.trials["rho"].isin([0, 1 / 3, 2 / 3, 1]).all()
    with pytest.warns(UserWarning, match="gamma is 1 for any network"):
        near_monotonicity(net, np.ones(4), np.ones(1), x, amplitudes=3, output=1)


def test_layer_norm_written_out_is_a_rescaling_with_its_gain():
    """(x - mean) / sqrt(var + eps) * g: mean subtraction ignored, division a
    positive rescaling, gain kept with its sign (SPEC §1b)."""
    torch.manual_seed(5)
    a, b, ln = nn.Linear(3, 4), nn.Linear(4, 2), nn.LayerNorm(4)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([1.0, -0.5, 2.0, -1.5]))

    class Written(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.g = a, b, ln.weight

        def forward(self, x):
            h = self.a(x)
            c = h - h.mean(-1, keepdim=True)
            v = (c * c).mean(-1, keepdim=True)
            return self.b(c / torch.sqrt(v + 1e-5) * self.g)

    ref = _dense(_graph(nn.Sequential(a, ln, b).double(), (3,))[0])
    got = _dense(_graph(Written().double(), (3,))[0])
    assert ((got != 0) == (ref != 0)).all()
    # h feeds two ops, so it has its block before the gain: the gain scales the
    # block's outgoing edges (a source scale), where nn.LayerNorm's folds into
    # the incoming ones; the product along every path is the same
    g = ln.weight.detach().double().numpy()
    np.testing.assert_allclose(got[:3, 3:7] * g, ref[:3, 3:7])
    np.testing.assert_allclose(got[3:7, 7:], ref[3:7, 7:] * g[:, None])


class _FusedLayerNorm(nn.Module):
    """A layer norm over (C, H, W) with a gain of mixed signs, as
    ``nn.LayerNorm`` (``"module"``) or in the layouts TensorFlow's fused norm
    takes: the centring ``- mean * s`` added after the offset (``"after"``),
    or a division by the deviation with the gain after it (``"divide"``) or in
    it (``"divided_gain"``)."""

    def __init__(self, form):
        super().__init__()
        torch.manual_seed(3)
        self.form = form
        self.c1, self.c2 = nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.Conv2d(6, 2, 3)
        self.ln = nn.LayerNorm([6, 5, 5])
        with torch.no_grad():
            self.ln.weight.copy_(torch.randn(6, 5, 5))
            self.ln.bias.copy_(torch.randn(6, 5, 5))

    def forward(self, x):
        c = self.c1(x)
        if self.form == "module":
            return self.c2(self.ln(c))
        m = c.mean((1, 2, 3), keepdim=True)
        v = ((c - m) ** 2).mean((1, 2, 3), keepdim=True)
        g, b = self.ln.weight, self.ln.bias
        if self.form == "after":
            s = g * torch.rsqrt(v + 1e-5)
            return self.c2((c * s + b) - m * s)
        d = torch.sqrt(v + 1e-5)
        if self.form == "divide":
            return self.c2((c / d) * g + (b - (m / d) * g))
        d = d / g
        return self.c2(c / d + (b - m / d))


@pytest.mark.parametrize("form", ["after", "divide", "divided_gain"])
def test_a_fused_layer_norm_in_any_layout_is_the_layer_norm(form):
    """SPEC §1b: a norm's centring adds nothing, its gain folds with its sign.
    TensorFlow's fused norm subtracts ``mean * s`` from ``x * s``; written after
    the offset (``(x * s + beta) - mean * s``) or with a division (``x / d *
    g + (beta - mean / d * g)``), the mean was read as a layer of its own (a
    node and 150 edges more here).  Each is the graph of ``nn.LayerNorm``."""
    ref, net = _FusedLayerNorm("module").double().eval(), _FusedLayerNorm(form).double().eval()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(net(x), ref(x))
    (a, _), (b, _) = _graph(ref, (4, 5, 5)), _graph(net, (4, 5, 5))
    assert [(nb.name, nb.size) for nb in b.node_blocks] == [("input", 100), ("c1", 150),
                                                            ("c2", 18)]
    np.testing.assert_allclose(_dense(b), _dense(a), rtol=1e-10, atol=1e-12)


def test_monotonicity_protocol_reads_the_selected_head(tmp_path):
    """The protocol's gauge and its rho both come from the selected output."""
    from deepglass.experiments.monotonicity import monotonicity_experiment, run_monotonicity

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.cls, self.reg = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(6, 2)

        def forward(self, x):
            h = F.relu(self.a(x))
            return {"cls": self.cls(h), "reg": self.reg(h)}

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(4, 4)
    exp = monotonicity_experiment(net, x, nulls=("random-order",), amplitudes=3, replicas=2,
                                  output="reg")
    assert len(exp.gauges["real"].sigma_out) == 2 == len(exp.gauges["random-order"].sigma_out)
    assert exp.trials["rho"].isin([0, 0.5, 1]).all()
    first = monotonicity_experiment(net, x, nulls=(), amplitudes=3, replicas=2)
    assert len(first.gauges["real"].sigma_out) == 3
    run = run_monotonicity(tmp_path / "r", net, x, nulls=(), amplitudes=3, replicas=2,
                           output=1)
    assert len(run.gauges["real"].sigma_out) == 2


class _HarmonicStack(nn.Module):
    """Copies of a value shifted along its frequency axis by 0, -1 and +2 rows (``F.pad``
    then a crop), concatenated over channels, then a convolution: the zeros that shifted in
    lie inside the concatenation (a border of some channels only), not on its border."""

    def __init__(self, pool=None):
        super().__init__()
        self.c1, self.relu = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()
        self.c2 = pool or nn.Conv2d(6, 3, 3, padding=1)

    def stack(self, u):
        H = u.shape[2]
        shifted = [u, F.pad(u, (0, 0, 0, 1))[:, :, 1:], F.pad(u, (0, 0, 2, 0))[:, :, :H]]
        return self.c2(torch.cat(shifted, 1))

    def forward(self, x):
        return self.stack(self.relu(self.c1(x)))


def _present_taps(present, c_out, k=3):
    """Brute force: taps of a k x k, padding k // 2 convolution that read a present input."""
    C, H, W = present.shape
    n = 0
    for oy in range(H):
        for ox in range(W):
            for ky in range(k):
                for kx in range(k):
                    iy, ix = oy + ky - k // 2, ox + kx - k // 2
                    if 0 <= iy < H and 0 <= ix < W:
                        n += int(present[:, iy, ix].sum())
    return c_out * n


@pytest.mark.parametrize("capture", ["export", "fx"])
def test_zero_padding_inside_a_value_adds_no_edges(capture):
    """SPEC §1: padding adds no edge, also where it lies inside the value a layer reads
    (per-channel shifts): the block's matrix is the Jacobian, its edges are the taps that read
    a real input (brute force), and the matrix-free operator equals the explicit one."""
    from deepglass.graph import ZeroPaddedBlock

    net = _HarmonicStack().double()
    g, _ = _graph(net, (1, 6, 5), capture=capture)
    b = g.edge_blocks[1]
    assert isinstance(b, ZeroPaddedBlock) and b.kind == "conv" and b.n_padded == 2 * 5 + 2 * 2 * 5
    assert "(30 padded inputs)" in b.describe()
    present = np.ones((6, 6, 5), bool)
    present[2:4, 5], present[4:6, :2] = False, False
    assert b.n_edges() == _present_taps(present, 3) == 3198
    u = net.relu(net.c1(torch.randn(1, 1, 6, 5, dtype=torch.float64)))
    J = torch.autograd.functional.jacobian(net.stack, u).reshape(-1, 60).numpy()
    A = _dense(g)
    np.testing.assert_allclose(A[30:90, 90:], J.T, atol=1e-12)
    x = torch.randn(3, g.n_nodes, dtype=torch.float64)
    np.testing.assert_allclose(g.sym_matvec(x).numpy(), x.numpy() @ (A + A.T), atol=1e-10)
    i, j, w = g.edge_list()                     # one entry per edge (multiply term)
    assert len(w) == g.n_edges and np.all(w != 0)
    assert g.abs_total() == pytest.approx(2 * np.abs(w).sum())    # 1^T |As| 1


class _CroppedTranspose(nn.Module):
    """A transposed convolution cropped after it: at the end (a "same"
    transposed convolution written out), at both ends, after a batch norm,
    read twice (cropped once, and whole by a second head), or 1-d along a
    negative dimension."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        conv, tconv, nd = (nn.Conv1d, nn.ConvTranspose1d, 1) if how == "1d" else \
            (nn.Conv2d, nn.ConvTranspose2d, 2)
        self.c1, self.c2 = conv(2, 3, 3, padding=1), conv(4, 2, 1)
        self.t = tconv(3, 4, 4 if how == "both" else 3, stride=2, padding=1 if how == "both" else 0)
        self.bn = nn.BatchNorm2d(4) if how == "bn" else nn.Identity()
        self.nd = nd

    def forward(self, x):
        y = self.bn(self.t(self.c1(x)))
        if self.how == "1d":
            return self.c2(y[..., 1:-2])
        z = y[:, :, 1:-1, 2:-1] if self.how == "both" else y[:, :, :-1, :-1]
        out = self.c2(z)
        return (out, y.sum((2, 3))) if self.how == "twice" else out


@pytest.mark.parametrize("how", ["end", "both", "bn", "twice", "1d"])
def test_a_cropped_transposed_convolution_has_no_cropped_nodes(how):
    """SPEC §1: values computed but never read add nothing.  A transposed
    convolution cropped after it (``conv_transpose(x)[..., :-1, :-1]``) kept
    its cropped rows as nodes with incoming edges; it is now the layer of the
    cropped output (its convolution's input padded more), exact against the
    Jacobian, its matrix-free operator equal to the explicit one.  Read whole
    elsewhere too, the layer keeps all its nodes."""
    torch.manual_seed(0)
    net = _CroppedTranspose(how).double()
    if how == "bn":
        with torch.no_grad():
            net.bn.running_mean.normal_(), net.bn.running_var.uniform_(0.5, 2)
            net.bn.weight.normal_()
    shape = (2, 7) if how == "1d" else (2, 4, 5)
    g = assert_is_jacobian(net, shape)
    t = next(nb for nb in g.node_blocks if nb.name == "t")
    full = {"end": (4, 9, 11), "bn": (4, 9, 11), "twice": (4, 9, 11), "both": (4, 8, 10),
            "1d": (4, 15)}[how]
    kept = {"end": (4, 8, 10), "bn": (4, 8, 10), "twice": (4, 9, 11), "both": (4, 6, 7),
            "1d": (4, 12)}[how]
    assert tuple(t.shape) == kept and math.prod(kept) <= math.prod(full)
    A = _dense(g)
    x = torch.randn(3, g.n_nodes, dtype=torch.float64)
    np.testing.assert_allclose(g.sym_matvec(x).numpy(), x.numpy() @ (A + A.T), atol=1e-10)
    assert g.n_edges == len(g.edge_list()[2])


def test_zero_padding_inside_a_max_pooled_value_is_refused():
    with pytest.raises(UnsupportedLayerError, match=r"^layer '.*' max-pools zero-padded values"):
        SignedGraph.from_module(_HarmonicStack(nn.MaxPool2d(2)), (1, 6, 5))


@pytest.mark.parametrize("ceil", [False, True])
def test_explicit_asymmetric_padding_before_a_padded_pool(ceil):
    """``F.pad`` (asymmetric) before a pool with padding of its own: the edges are exactly the
    window elements that are not padding (the Jacobian's pattern)."""
    class PadPool(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(F.pad(x, (1, 0, 2, 1)), 3, 2, padding=1, ceil_mode=ceil)

    net = PadPool()
    g, _ = _graph(net, (2, 7, 6))
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(net, x).reshape(-1, 84).numpy()
    A = _dense(g)[:84, 84:]
    np.testing.assert_array_equal(A != 0, J.T != 0)
    assert g.n_edges == int((J != 0).sum())


def test_negative_infinity_padding_read_only_by_max_pools():
    """``-inf`` padding is what a max pool ignores: no node, no edge (the windows' in-bounds
    elements); read by anything else it is refused."""
    class MaxAfter(nn.Module):
        def forward(self, x):
            return F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 7, 1)

    class AvgAfter(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 7, 1)

    g, _ = _graph(MaxAfter(), (2, 7, 7))
    assert g.n_nodes == 2 * 49 + 2 * 4 and g.n_edges == 2 * (7 + 6) ** 2
    with pytest.raises(UnsupportedLayerError, match="value -inf"):
        SignedGraph.from_module(AvgAfter(), (2, 7, 7))


@pytest.mark.parametrize("capture", ["export", "fx"])
def test_flip_and_roll_are_reindexings(capture):
    """``flip`` and ``roll`` between two convolutions: no nodes of their own, and the product
    of the two edge blocks is the network's Jacobian."""
    class FlipRoll(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.d = nn.Conv2d(2, 3, 2), nn.Conv2d(3, 2, 2)

        def forward(self, x):
            return self.d(torch.roll(self.c(x).flip(2), shifts=(1, -2), dims=(2, 3)))

    net = FlipRoll().double()
    g, _ = _graph(net, (2, 5, 5), capture=capture)
    assert [nb.size for nb in g.node_blocks] == [50, 48, 18]
    A = _dense(g)
    J = torch.autograd.functional.jacobian(net, torch.zeros(1, 2, 5, 5, dtype=torch.float64))
    np.testing.assert_allclose(A[:50, 50:98] @ A[50:98, 98:], J.reshape(18, 50).numpy().T, atol=1e-12)


def test_a_model_that_fails_on_the_input_is_reported_as_such():
    """Where the exporter fails because the model itself fails on the sample
    input, that is the error, not what a fallback capture path meets first
    (here an op the fx tracer does not know)."""
    class TooSmall(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(torch.special.erfinv(0.1 * x), 8)

    for capture in ("auto", "export"):
        with pytest.raises(DeepglassError, match=r"TooSmall does not accept input of shape "
                                                 r"\(1, 4, 4\)"):
            SignedGraph.from_module(TooSmall(), (1, 4, 4), capture=capture)


class _Squeezed(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.c = nn.Conv2d(cin, 2, 3)

    def forward(self, x):
        return self.c(x.squeeze(0)).unsqueeze(0)


class _PerSample(nn.Module):
    """A loop over the batch: each sample's layer run unbatched, or batched again."""

    def __init__(self, cin, again: bool):
        super().__init__()
        self.again = again
        self.c = nn.Conv1d(cin, 2, 3) if again else nn.ConvTranspose2d(cin, 2, 2, stride=2)

    def forward(self, x):
        if self.again:
            return torch.cat([self.c(xi.unsqueeze(0)) for xi in x])
        return torch.stack([self.c(xi) for xi in x])


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("make, bad, good", [
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 3, 3)), (8, 8), (1, 8, 8)),
    (lambda: nn.Sequential(nn.Conv1d(1, 4, 9, padding=4), nn.Conv1d(4, 1, 9)),
     (16,), (1, 16)),
    (lambda: nn.Sequential(nn.ConvTranspose2d(1, 2, 2, stride=2)), (4, 4), (1, 4, 4))])
def test_a_convolution_run_unbatched_is_refused(make, bad, good, capture):
    """An input shape without the channel dimension of a one-channel network
    ran the sample as PyTorch's unbatched (C, H, W) input: the batch axis was
    taken for the channel, and a graph without it came out (Conv2d(1, 2, 3) at
    (8, 8): 116 nodes, 1,152 edges for the 184 / 1,512 of (1, 8, 8))."""
    net = make().eval()
    with pytest.raises(DeepglassError, match="reads a value without a batch axis .*1,H,W "
                                             "rather than H,W"):
        SignedGraph.from_module(net, bad, capture=capture)
    assert assert_is_jacobian(net, good, capture).node_blocks[0].shape == tuple(good)


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("make, shape", [
    (lambda: _Squeezed(3), (3, 8, 8)), (lambda: _Squeezed(1), (1, 8, 8)),
    (lambda: _PerSample(1, True), (1, 9)), (lambda: _PerSample(3, False), (3, 4, 4)),
    (lambda: _PerSample(1, False), (1, 4, 4))])
def test_a_layer_run_unbatched_on_a_sample_whose_batch_axis_was_taken_is_exact(make, shape,
                                                                                capture):
    """A loop over the batch (``conv(x[i])``, ``conv(x[i].unsqueeze(0))``) or a
    squeezed batch axis: the layer reads real channels, a batch of one (export
    mode gave a wrong graph, then refused it; core mode refused the batched-again
    form)."""
    assert assert_is_jacobian(make().eval(), shape, capture).node_blocks[0].shape == shape


def test_a_fixed_factor_that_broadcasts_the_value_copies_its_elements():
    """``x * c`` where ``c`` is larger than ``x`` (BAT's ``x * eye(t)``): the
    value's elements are copied to the broadcast shape, then scaled, as an
    explicit ``expand`` does."""
    c = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64)

    class Net(nn.Module):
        def __init__(self, explicit):
            super().__init__()
            torch.manual_seed(7)
            self.conv, self.fc, self.explicit = nn.Conv2d(2, 3, 3), nn.Linear(12, 2), explicit

        def forward(self, x):
            m = self.conv(x).mean((2, 3), keepdim=True)
            if self.explicit:
                m = m.expand(-1, -1, 2, 2)
            return self.fc((m * c).flatten(1))

    a, b = _graph(Net(False).double(), (2, 4, 4))[0], _graph(Net(True).double(), (2, 4, 4))[0]
    assert (a.n_nodes, a.n_edges) == (b.n_nodes, b.n_edges)
    np.testing.assert_allclose(_dense(a), _dense(b))


@pytest.mark.parametrize("capture", ["export", "core"])
def test_constant_padding_adds_no_node_unless_a_max_pool_reads_it(capture):
    """Padding with a constant c is zero padding plus a constant: no dependence
    on the input, so the graph of zero padding; a max pool over it could select
    the constant, so that stays refused."""
    torch.manual_seed(8)
    conv, head = nn.Conv2d(2, 3, 3), nn.Sequential(nn.Flatten(), nn.Linear(3 * 16, 2))
    a = nn.Sequential(_Pad((1, 1, 1, 1), "constant"), conv, head)
    b = nn.Sequential(_ValuePad(0.7), conv, head)
    ga, gb = _graph(a.double(), (2, 4, 4), capture=capture)[0], _graph(b.double(), (2, 4, 4), capture=capture)[0]
    assert (ga.n_nodes, ga.n_edges) == (gb.n_nodes, gb.n_edges)
    np.testing.assert_allclose(_dense(ga), _dense(gb))
    with pytest.raises(UnsupportedLayerError, match="padding mode 'constant' value 0.7"):
        SignedGraph.from_module(nn.Sequential(_ValuePad(0.7), nn.MaxPool2d(2)), (2, 4, 4),
                                capture=capture)


class _ValuePad(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return F.pad(x, (1, 1, 1, 1), value=self.value)


@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_pooled_feature_divided_by_its_own_norm_is_the_value(capture):
    """``f / ||f||`` with ``f`` a global average pool (an L2-normalized
    embedding): the pool is the value, its norm the statistic that rescales it,
    so the graph is the pool's; the same for ``y / sum(y)`` of ``y = x ** 2``."""
    torch.manual_seed(9)
    conv = nn.Conv2d(2, 3, 3)

    class Embed(nn.Module):
        def __init__(self, norm):
            super().__init__()
            self.conv, self.norm = conv, norm

        def forward(self, x):
            f = self.conv(x).mean((2, 3))
            return F.normalize(f, dim=1) if self.norm else f

    a, b = _graph(Embed(True).double(), (2, 4, 4), capture=capture)[0], \
        _graph(Embed(False).double(), (2, 4, 4), capture=capture)[0]
    assert (a.n_nodes, a.n_edges) == (b.n_nodes, b.n_edges)
    np.testing.assert_allclose(_dense(a), _dense(b))
    sq = _Fixed(lambda m, x: torch.relu(x) ** 2 / (torch.relu(x) ** 2).sum(1, keepdim=True))
    plain = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    net = nn.Sequential(conv, sq, nn.Flatten(), plain[3])
    np.testing.assert_allclose(_dense(_graph(net.double(), (2, 4, 4), capture=capture)[0]),
                               _dense(_graph(plain.double(), (2, 4, 4), capture=capture)[0]))


def test_channels_regrouped_as_a_batch_are_a_layer_at_every_row():
    """A layer run on one sample's values regrouped as a batch (each channel a
    row, as a shared per-source decoder reads its sources): the layer at every
    row, the Jacobian (it was refused; more in tests/test_capture_batch_axis.py)."""
    class ChannelsAsBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2 * 3 * 16, 2)

        def forward(self, x):
            y = self.conv(x.reshape(-1, 1, 4, 4))          # (3, 2, 4, 4) for one sample
            return self.fc(y.reshape(x.shape[0], -1))

    g = assert_is_jacobian(ChannelsAsBatch(), (3, 4, 4))
    assert [nb.shape for nb in g.node_blocks] == [(3, 4, 4), (2, 3, 4, 4), (2,)]


@pytest.mark.parametrize("capture", ["export", "core"])
def test_sliding_windows_of_unfold_are_a_reindexing(capture):
    """``x.unfold(dim, size, step)`` copies overlapping windows (halo attention
    blocks its input so): no nodes of its own; the dense layer after it has the
    edges of the whole map's Jacobian (an element in two windows: two
    parallel edges, summed in the explicit matrix)."""
    torch.manual_seed(10)

    class Windows(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2 * 3 * 4 * 2, 3)

        def forward(self, x):
            return self.fc(x.unfold(2, 2, 1).flatten(1))

    net = Windows().double()
    g, _ = _graph(net, (2, 4, 4), capture=capture)
    assert len(g.node_blocks) == 2
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(net, x).reshape(3, 32).numpy()
    np.testing.assert_allclose(_dense(g)[:32, 32:], J.T, atol=1e-12)


def test_a_dense_layer_on_windows_regrouped_as_a_batch_acts_at_every_position():
    """Windowed attention (Swin, MaxViT) reshapes one sample's windows into the
    batch before its projections: a projection there is a dense layer at every
    position (the attention after it is refused by its own rule)."""
    class Windowed(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3, 3)

        def forward(self, x):                            # (1, 4, 4, 3) channels-last
            w = x.reshape(4, 2, 2, 3).reshape(4, 4, 3)    # 4 windows of 2x2 as a batch
            return self.proj(w).reshape(1, -1)

    g = assert_is_jacobian(Windowed(), (4, 4, 3))
    assert g.n_edges == 16 * 3 * 3


class BranchOnValues(nn.Module):
    """A forward that branches on the input's values: neither capture can take it."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(144, 3)

    def forward(self, x):
        y = self.bn(self.conv(x)).relu()
        if y.mean() > 0.5:
            y = y * 2
        return self.fc(y.flatten(1))


def test_a_branch_on_the_inputs_values_is_one_quiet_line(capfd):
    """The refusal says why for both captures and what to do, on one line; the
    exporter's logs and the partial program it prints never reach the terminal."""
    with pytest.raises(DeepglassError) as err:
        SignedGraph.from_module(BranchOnValues().eval(), (1, 8, 8))
    msg = str(err.value)
    assert "\n" not in msg
    assert "torch.export: Could not guard on data-dependent expression" in msg
    assert "torch.fx: symbolically traced variables cannot be used as inputs to control flow" in msg
    assert "if forward() branches on the input's values, wrap the model" in msg
    out, errout = capfd.readouterr()
    assert out == "" and errout == ""


class _GlobalNorm(nn.Module):
    """Conv, a per-sample norm over the dims ``dims(h)`` gives, conv."""

    def __init__(self, dims):
        super().__init__()
        self.c, self.d = nn.Conv1d(1, 4, 5), nn.Conv1d(4, 2, 3)
        self.dims = dims

    def forward(self, x):
        h = self.c(x)
        dims = self.dims(h)
        h = (h - h.mean(dims, keepdim=True)) / (h.var(dims, keepdim=True) + 1e-8).sqrt()
        return self.d(h)


def test_dims_read_from_a_constant_tensor_are_its_numbers():
    """A norm over dims read from a tensor made of numbers
    (``torch.arange(1, h.dim()).tolist()``, asteroid's global layer norm, the
    default of its ConvTasNet): the numbers do not depend on the input, so the
    graph is that of the dims given as numbers (before, refused as
    data-dependent); ``torch.tensor([...]).tolist()`` and ``.item()`` alike."""
    torch.manual_seed(0)
    given = _GlobalNorm(lambda h: (1, 2)).eval()
    expected = SignedGraph.from_module(given, (1, 16)).to_scipy()
    for dims in (lambda h: torch.arange(1, h.dim()).tolist(),
                 lambda h: torch.tensor([1, 2]).tolist(),
                 lambda h: (int(torch.tensor(1).item()), int(torch.tensor(2).item()))):
        read = _GlobalNorm(dims).eval()
        read.load_state_dict(given.state_dict())
        got = SignedGraph.from_module(read, (1, 16)).to_scipy()
        assert got.shape == expected.shape and abs(got - expected).max() == 0


def test_dims_read_from_a_tensor_are_one_line_with_a_hint():
    """A norm over dims read from the data of a value computed from the input:
    the exporter cannot follow it and says what to change, and the fx
    fallback's refusal follows in the same line."""
    def from_data(h):
        return (torch.arange(1, h.dim()) + 0 * h.detach().sum().round().long()).tolist()

    with pytest.raises(UnsupportedLayerError) as err:
        SignedGraph.from_module(_GlobalNorm(from_data).eval(), (1, 16))
    msg = str(err.value)
    assert "\n" not in msg and "compute it from shapes" in msg
    assert "; the torch.fx fallback (fewer layer rules) stops at: unsupported layer" in msg


def test_where_the_exporter_fails_the_fallbacks_refusal_says_why(monkeypatch):
    """A layer the fx fallback does not know (a functional batch norm) after the
    exporter failed: the error gives the exporter's reason first."""
    from deepglass.graph import aten

    def failing(*args, **kwargs):
        raise aten.ExportFailed("an op the exporter cannot trace")

    monkeypatch.setattr(aten, "export_module", failing)

    class FunctionalNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            b = self.bn
            return F.batch_norm(self.conv(x), b.running_mean, b.running_var, b.weight, b.bias)

    with pytest.raises(UnsupportedLayerError) as err:
        SignedGraph.from_module(FunctionalNorm().eval(), (1, 5, 5))
    msg = str(err.value)
    assert msg.startswith("cannot capture FunctionalNorm with torch.export: an op the exporter "
                          "cannot trace; the torch.fx fallback (fewer layer rules) stops at: ")
    assert "batch_norm" in msg and "\n" not in msg
    # the exporter working, the same module is captured
    monkeypatch.undo()
    assert SignedGraph.from_module(FunctionalNorm().eval(), (1, 5, 5)).n_edges == 2 * 9 * 9


class _RescaledOutput(nn.Module):
    """The value at the output still carries a rescaling: ``c + g * c`` (the
    response norm's residual), a batch norm after the last ReLU, or both a value
    and its rescaling returned."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(2, 3, 3, bias=False)
        self.bn = nn.BatchNorm2d(3).eval()
        self.g = nn.Parameter(torch.randn(1, 3, 1, 1))

    def forward(self, x):
        c = self.conv(x)
        if self.kind == "residual":
            return c + self.g * c
        if self.kind == "bn_after_relu":
            return self.bn(torch.relu(c))
        return c, c * self.g


@pytest.mark.parametrize("kind", ["residual", "bn_after_relu", "both"])
def test_a_rescaling_at_the_output_is_not_lost(kind):
    """A rescaling left on the output value folds into the edges that end there
    (sign included, as a batch norm does); where the unscaled value is an output
    too, the rescaled one gets nodes of its own with edges of weight s."""
    torch.manual_seed(4)
    net = _RescaledOutput(kind).eval()
    with torch.no_grad():
        net.bn.weight.copy_(torch.tensor([-1.5, 0.5, 2.0]))
        net.bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0]))
    g = SignedGraph.from_module(net, (2, 5, 5))
    plain = nn.Conv2d(2, 3, 3, bias=False)
    w = net.conv.weight.detach()
    if kind == "residual":
        factor = 1 + net.g.detach().reshape(3, 1, 1, 1)
    elif kind == "bn_after_relu":
        factor = (net.bn.weight / torch.sqrt(net.bn.running_var + net.bn.eps)).detach()
        factor = factor.reshape(3, 1, 1, 1)
    else:
        factor = torch.ones(3, 1, 1, 1)
    with torch.no_grad():
        plain.weight.copy_(w * factor)
    ref = SignedGraph.from_module(plain, (2, 5, 5)).to_scipy().toarray()
    A = g.to_scipy().toarray()
    if kind != "both":
        assert g.n_nodes == 77
        np.testing.assert_allclose(A, ref, rtol=1e-5, atol=1e-6)
        return
    # c and c * g: the convolution's nodes, then 27 more, one edge of weight g from each
    assert g.n_nodes == 104 and list(g.outputs) == ["0", "1"]
    np.testing.assert_allclose(A[:77, :77], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(g.outputs["0"], np.arange(50, 77))
    np.testing.assert_array_equal(g.outputs["1"], np.arange(77, 104))
    gains = net.g.detach().reshape(3).repeat_interleave(9).numpy()
    np.testing.assert_allclose(A[50:77, 77:104], np.diag(gains), rtol=1e-6)


class _ContextPool(nn.Module):
    """GCNet's global context block: positions pooled with softmax weights
    computed from the value (``x @ softmax(mask)``), in four spellings."""

    def __init__(self, how):
        super().__init__()
        self.c, self.m, self.t, self.how = nn.Conv2d(2, 3, 1), nn.Conv2d(3, 1, 1), \
            nn.Conv2d(3, 3, 1), how

    def forward(self, x):
        y = self.c(x)
        B, C, H, W = y.shape
        a = self.m(y).reshape(B, 1, H * W).softmax(-1)
        v = y.reshape(B, C, H * W)
        ctx = {"mul+sum": lambda: (v * a).sum(-1),
               "matmul": lambda: (v.unsqueeze(1) @ a.unsqueeze(-1)).reshape(B, C),
               "einsum": lambda: torch.einsum("bcn,bn->bc", v, a[:, 0]),
               "gate first": lambda: (a @ v.transpose(1, 2)).reshape(B, C)}[self.how]()
        return y + self.t(ctx.view(B, C, 1, 1))


@pytest.mark.parametrize("how", ["matmul", "einsum", "gate first"])
def test_a_gate_written_as_a_matrix_product_is_a_gate(how):
    """``x @ softmax(m)`` (GCNet, timm's GlobalContext) and ``softmax(m) @ x``:
    the softmax weights are a non-negative gate of another value (SPEC §1b),
    so the graph is that of ``(x * softmax(m)).sum(-1)``; it was refused as
    self-attention."""
    torch.manual_seed(8)
    ref, _ = _graph(_ContextPool("mul+sum").double(), (2, 3, 3))
    torch.manual_seed(8)
    g, _ = _graph(_ContextPool(how).double(), (2, 3, 3))
    assert g.meta["gates"] and g.n_edges == ref.n_edges
    np.testing.assert_allclose(_dense(g), _dense(ref), rtol=1e-12)


def test_a_product_of_two_values_neither_a_gate_is_still_refused():
    class QK(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.q(x) @ self.k(x).transpose(1, 2)

    with pytest.raises(UnsupportedLayerError, match="product"):
        SignedGraph.from_module(QK(), (3, 4))


class _InputOut(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.c, self.how = nn.Conv2d(2, 2, 1), how

    def forward(self, x):
        return (3 * x if self.how == "3x" else -x), self.c(x)


@pytest.mark.parametrize("how", ["3x", "-x"])
def test_a_rescaled_input_returned_as_an_output_keeps_its_factor(how):
    """``return 3 * x, conv(x)``: the rescaled input gets nodes of its own with
    edges of weight 3 (an input block has no incoming edges to fold it into);
    the factor, sign included, was lost."""
    g = assert_is_jacobian(_InputOut(how), (2, 2, 2))
    assert g.n_nodes == 8 * 3


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("batchnorm", ["fold", "ignore"])
def test_batch_norm_without_running_statistics_is_a_per_sample_norm(capture, batchnorm):
    """``BatchNorm2d(track_running_stats=False)`` normalizes by the batch's own
    statistics even in eval mode: a positive rescaling per channel (SPEC §1b),
    its gain folded in by the norm rule; ``batchnorm='ignore'`` ignores it.  It
    was refused with advice (eval mode, 'ignore') that did not help."""
    torch.manual_seed(5)
    bn = nn.BatchNorm2d(4, track_running_stats=False)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([-2.0, 0.5, 1.0, 3.0]))
    conv1, conv2 = nn.Conv2d(2, 4, 1), nn.Conv2d(4, 2, 1)
    g, _ = _graph(nn.Sequential(conv1, bn, conv2).double(), (2, 3, 3), capture=capture,
                  batchnorm=batchnorm)
    folded = nn.Conv2d(2, 4, 1).double()
    with torch.no_grad():
        gain = bn.weight.double() if batchnorm == "fold" else torch.ones(4, dtype=torch.float64)
        folded.weight.copy_(conv1.weight.double() * gain.reshape(4, 1, 1, 1))
    ref, _ = _graph(nn.Sequential(folded, conv2).double(), (2, 3, 3), capture=capture)
    np.testing.assert_allclose(_dense(g), _dense(ref), rtol=1e-12)


def test_a_refusal_names_what_each_capture_path_reads(monkeypatch):
    """The export path's refusal lists §1b's layers (transposed convolution,
    norms, gates); the fx fallback's says it is the fallback's list."""
    class Cummax(nn.Module):
        def forward(self, x):
            return torch.cummax(x, -1)[0]

    with pytest.raises(UnsupportedLayerError, match="transposed convolution.*norms.*gates"):
        SignedGraph.from_module(Cummax(), (2, 3, 3), capture="export")
    with pytest.raises(UnsupportedLayerError, match="the fx fallback supports linear"):
        SignedGraph.from_module(Cummax(), (2, 3, 3), capture="fx")


def test_a_cumulative_sum_or_a_grid_sample_of_a_value_says_why_it_is_refused():
    """Both were refused with the list of what is supported, no reason."""
    class Cumsum(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, -1)

    class Grid(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("grid", torch.rand(1, 5, 5, 2) * 2 - 1)

        def forward(self, x):
            return F.grid_sample(x, self.grid.expand(x.shape[0], -1, -1, -1),
                                 align_corners=False)

    with pytest.raises(UnsupportedLayerError, match=r"'cumsum' \(cumulative sum of a value\): "
                                                    r"a prefix sum along an axis"):
        SignedGraph.from_module(Cumsum(), (2, 3, 3))
    with pytest.raises(UnsupportedLayerError, match=r"\(resampling at a grid\): F.grid_sample "
                                                    r".*a fixed grid is a fixed linear map"):
        SignedGraph.from_module(Grid(), (2, 6, 6))


class _Masked(nn.Module):
    def __init__(self, choice=None):
        super().__init__()
        self.choice = choice
        self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(8, 3)
        self.register_buffer("mask", torch.tensor([[True, False], [False, True]]))

    def forward(self, x):
        c = torch.relu(self.conv(x))
        if self.choice == "fixed":          # a fixed choice between two network values
            return self.fc(torch.where(self.mask, c, -2 * c).flatten(1))
        if self.choice == "input":          # a choice that the input's values make
            return self.fc(torch.where(self.conv(x) > 0.1, c, -2 * c).flatten(1))
        return self.fc(c.masked_fill(self.mask, 0.0).flatten(1))


def test_a_fixed_mask_is_padding_or_a_choice_and_one_from_the_input_is_refused():
    """masked_fill / where with a fixed mask and a constant: the masked elements
    are padding (no edges from them), the rest the value's own nodes; a fixed
    mask choosing between two network values is a re-indexing (here the same
    nodes, scaled 1 or -2); a mask computed from the input is refused by name."""
    torch.manual_seed(0)
    net = _Masked().eval()
    g = SignedGraph.from_module(net, (1, 4, 4))
    A = g.to_scipy().toarray()
    conv_nodes, fc_nodes = np.arange(16, 24), np.arange(24, 27)
    w = net.fc.weight.detach().numpy()
    keep = ~net.mask.numpy().reshape(-1)                     # per position, both channels
    keep = np.concatenate([keep, keep])
    np.testing.assert_allclose(A[np.ix_(conv_nodes, fc_nodes)], (w * keep).T, rtol=1e-6)
    assert g.n_edges == 2 * 9 * 4 + 3 * int(keep.sum())
    net = _Masked("fixed").eval()
    w = net.fc.weight.detach().numpy()
    for capture in ("export", "core"):
        g = SignedGraph.from_module(net, (1, 4, 4), capture=capture)
        A = g.to_scipy().toarray()
        np.testing.assert_allclose(A[np.ix_(conv_nodes, fc_nodes)],
                                   (w * np.where(keep, -2.0, 1.0)).T, rtol=1e-6)
        assert g.n_nodes == 27 and g.n_edges == 2 * 9 * 4 + 3 * 8
    with pytest.raises(UnsupportedLayerError, match="comparison.*a mask computed from the input"):
        SignedGraph.from_module(_Masked("input").eval(), (1, 4, 4))


@pytest.mark.parametrize("act,monotone", [
    (nn.Softshrink(0.3), True), (nn.Hardshrink(0.3), True), (nn.Threshold(0.1, -1.0), True),
    (nn.Threshold(0.1, 0.5), False), (nn.RReLU(), True), (nn.RReLU(-0.5, -0.2), False),
    (nn.ELU(), True), (nn.ELU(-0.5), False), (nn.CELU(-1.0), False)])
def test_shrinks_thresholds_and_rrelu_are_activations(act, monotone, capture="export"):
    """Softshrink, Hardshrink, Threshold and RReLU (at inference) are elementwise
    activations: the graph of the same net with ReLU; a Threshold whose value
    lies above its threshold, an RReLU of negative mean slope or an ELU /
    CELU of negative alpha warns as non-monotone (the first were refused as
    comparisons once lowered; a negative alpha passed unwarned)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), act, nn.Conv2d(3, 2, 1)).eval()
    ref = nn.Sequential(net[0], nn.ReLU(), net[2]).eval()
    g, warned = _graph(net, (2, 5, 5), capture=capture)
    np.testing.assert_array_equal(_dense(g), _dense(_graph(ref, (2, 5, 5))[0]))
    assert bool(warned) == (not monotone)


class _VolumeUNet(nn.Module):
    """A volumetric (3D) U-Net in miniature, linear (biases zero, no activation) so
    that its Jacobian is the path sum of the signed graph: convolution + batch norm,
    average pooling, a strided grouped convolution, transposed convolution, trilinear
    upsampling, a concatenated skip, global pooling and a dense head."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv3d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.down = nn.Conv3d(4, 4, 3, stride=2, padding=1, groups=2, bias=False)
        self.up = nn.ConvTranspose3d(4, 2, 2, stride=2, bias=False)
        self.dec = nn.Conv3d(6, 3, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.head = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.bn.weight.copy_(torch.tensor([1.5, -0.5, 0.8, -1.2]))
            self.bn.bias.zero_()
            self.bn.running_mean.zero_()
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        e = self.bn(self.enc(x))
        d = self.down(F.avg_pool3d(e, 2))
        u = self.up(F.interpolate(d, scale_factor=2, mode="trilinear"))
        y = self.dec(torch.cat([u, e], 1))
        return self.head(F.adaptive_avg_pool3d(y, 1).flatten(1))


@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_volumetric_net_is_its_jacobian(capture):
    """3D layers (medical-imaging U-Nets): the linear network's Jacobian equals
    E_out^T (I - A^T)^{-1} E_in of the explicit graph, and the matrix-free
    operator equals the explicit matrix."""
    torch.manual_seed(6)
    net = _VolumeUNet().double().eval()
    shape = (1, 4, 8, 8)
    g, _ = _graph(net, shape, capture=capture)
    n, n_in = g.n_nodes, int(np.prod(shape))
    A = sp.csc_matrix(_dense(g))
    E_in = np.zeros((n, n_in))
    E_in[np.arange(n_in), np.arange(n_in)] = 1
    V = spsolve(sp.identity(n, format="csc") - A.T.tocsc(), E_in)
    x = torch.randn((1,) + shape, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(net, x).reshape(2, n_in).numpy()
    np.testing.assert_allclose(V[g.output_index], J, rtol=1e-9, atol=1e-12)
    y = torch.randn(2, n, dtype=torch.float64)
    np.testing.assert_allclose(g.matvec(y).numpy(), (A @ y.numpy().T).T, atol=1e-10)
    np.testing.assert_allclose(g.sym_matvec(y).numpy(), ((A + A.T) @ y.numpy().T).T, atol=1e-10)


@pytest.mark.parametrize("pool,shape", [
    (nn.AvgPool2d(3, 1, 1, count_include_pad=False), (2, 4, 5)),
    (nn.AvgPool2d(3, 2, 1, ceil_mode=True), (2, 6, 5)),
    (nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), (1, 5, 5)),
    (nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 6, 7)),
    (nn.AvgPool2d(3, 1, 1, divisor_override=4), (1, 4, 4)),
    (nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 8)),
    (nn.AvgPool3d(2, 2, 1, count_include_pad=False), (1, 3, 4, 3)),
    (nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, 2, count_include_pad=False)), (1, 5, 5)),
], ids=["exclude-pad", "ceil", "ceil-exclude", "ceil-pad-exclude", "divisor", "1d", "3d", "explicit-pad"])
@pytest.mark.parametrize("capture", ["export", "core", "fx"])
def test_an_average_pool_edge_is_its_own_factor(pool, shape, capture):
    """An average pool's edges are what it computes: its Jacobian, PyTorch's
    divisor per window (border windows without the padding, or a ceil-mode
    window overhanging the input, divide by fewer elements; a divisor
    override), where every edge weighed 1/|kernel|; explicit zero padding is
    counted, as the pool sees its zeros."""
    net = nn.Sequential(pool).double().eval()
    g, _ = _graph(net, shape, capture=capture)
    n_in = int(np.prod(shape))
    x = torch.randn((1,) + shape, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(net, x).reshape(-1, n_in).numpy()
    np.testing.assert_allclose(_dense(g)[:n_in, n_in:], J.T, rtol=1e-12, atol=1e-15)


class _Sliced(nn.Module):
    """A layer of which only some channels are used: a GLU's gate half, or a slice."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        if self.how == "glu":
            return self.head(F.glu(self.conv(x), 1))
        if self.how == "slice":
            return self.head(torch.relu(self.conv(x))[:, 2:6])
        if self.how == "dense":
            return self.fc(self.conv(x).mean((2, 3)))[:, ::2]
        return self.head(self.conv(x)[:, :4] * torch.sigmoid(self.conv(x)[:, 4:]))


@pytest.mark.parametrize("how,kept", [("glu", slice(0, 4)), ("written", slice(0, 4)),
                                      ("slice", slice(2, 6))])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_channels_nothing_reads_are_left_out(how, kept, capture):
    """A layer's channels that nothing reads (a GLU's gate half: values
    computed but unused, SPEC §1) are left out, with their edges, and listed;
    the graph is that of the layer with the used channels only."""
    torch.manual_seed(0)
    net = _Sliced(how).eval()
    g, _ = _graph(net, (3, 4, 4), capture=capture)
    ref = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)).eval()
    with torch.no_grad():
        ref[0].weight.copy_(net.conv.weight[kept])
        ref[1].weight.copy_(net.head.weight)
    np.testing.assert_allclose(_dense(g), _dense(_graph(ref, (3, 4, 4))[0]), rtol=1e-6)
    dropped = [d for d in g.meta["left_out"] if d["block"].startswith("conv (channels")]
    assert dropped == [{"block": "conv (channels 4-7)" if kept.start == 0 else
                        "conv (channels 0-1, 6-7)", "op": "conv", "nodes": 64,
                        "params": 4 * 3 * 9}]


def test_unread_outputs_of_a_dense_layer_are_left_out():
    """``fc(h)[:, ::2]``: the dense layer keeps its read outputs, with their
    weights (rows 0, 2, 4), and the output is those nodes."""
    torch.manual_seed(0)
    net = _Sliced("dense").eval()
    g, _ = _graph(net, (3, 4, 4))
    fc, pooled = g.node_blocks[-1], g.node_blocks[-2]
    assert fc.shape == (3,) and list(g.output_index) == list(range(fc.offset, fc.stop))
    A = _dense(g)
    np.testing.assert_allclose(A[pooled.offset:pooled.stop, fc.offset:fc.stop],
                               net.fc.weight.detach().numpy()[::2].T, rtol=1e-6)
    assert g.meta["left_out"] == [{"block": "fc (channels 1, 3, 5)", "op": "dense", "nodes": 3,
                                   "params": 3 * 8}]


class _SumOfFunctions(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.c1, self.c2 = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.c1(x)
        r = torch.relu(y)
        z = {"tanhshrink": lambda: F.tanhshrink(y), "x+relu": lambda: y + r,
             "relu-x": lambda: r - y, "2relu": lambda: r + r, "relu*2+relu": lambda: r * 2 + r,
             "two-calls": lambda: torch.relu(y) * 2 + F.relu(y)}[self.how]()
        return self.c2(z)


@pytest.mark.parametrize("how", ["tanhshrink", "x+relu", "relu-x", "2relu", "relu*2+relu",
                                 "two-calls"])
def test_a_sum_of_functions_of_one_value_is_an_activation(how):
    """``x - tanh(x)`` (Tanhshrink), ``x + relu(x)``: two elementwise functions
    of the same nodes add into a third, an activation (the next layer keeps
    its weights; they were read as ``x + (-1) x`` and zeroed), warned only
    where it decreases (``relu(x) - x``, read on a grid); ``r + r`` and
    ``2 r + r`` of one ``r = relu(x)`` stay rescalings (by 2, 3), as does
    ``2 relu(x) + relu(x)`` of two calls."""
    torch.manual_seed(0)
    net = _SumOfFunctions(how).eval()
    g, warned = _graph(net, (2, 4, 4))
    ref = nn.Sequential(net.c1, nn.ReLU(), net.c2).eval()
    A, B = _dense(g), _dense(_graph(ref, (2, 4, 4))[0])
    factor = {"2relu": 2.0, "relu*2+relu": 3.0, "two-calls": 3.0}.get(how, 1.0)
    c1 = g.node_blocks[1]
    np.testing.assert_allclose(A[c1.offset:c1.stop], factor * B[c1.offset:c1.stop], rtol=1e-6)
    np.testing.assert_allclose(A[:c1.offset], B[:c1.offset], rtol=1e-6)
    assert any("a sum of elementwise functions" in w for w in warned) == (how == "relu-x")


class _NormAfter(nn.Module):
    """A norm whose gain multiplies a layer's output through moves of its
    elements (ConvNeXt's channels-last LayerNorm, BatchNorm1d over tokens)."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 2)
        self.norm = nn.LayerNorm(4) if how != "tokens" else nn.BatchNorm1d(5)
        with torch.no_grad():
            g = torch.tensor([1.0, -2.0, 0.5, -0.1, 3.0])[:self.norm.weight.numel()]
            self.norm.weight.copy_(g)
            if how == "tokens":
                self.norm.running_var.copy_(torch.tensor([0.5, 1.0, 2.0, 4.0, 1.0]))

    def forward(self, x):
        if self.how == "tokens":
            return self.b(self.norm(self.a(x).transpose(1, 2)).transpose(1, 2))
        y = self.c1(x)
        z = self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.c2(z + y if self.how == "pre-norm" else z)


@pytest.mark.parametrize("how", ["channels-last", "tokens", "pre-norm"])
def test_a_norm_gain_folds_into_the_incoming_edges(how):
    """SPEC §1b: a norm's gain folds into the edges that end on the nodes it
    normalizes, also through a permute or transpose (it landed on the next
    layer's edges); where those nodes are read elsewhere too (a pre-norm
    residual ``y + f(norm(y))``) it stays on the edges that read the norm."""
    torch.manual_seed(0)
    net = _NormAfter(how).double().eval()
    g, _ = _graph(net, (3, 4) if how == "tokens" else (3, 5, 5))
    A = _dense(g)
    if how == "tokens":    # input ids 4 t + i, then nodes (feature o, token t): 12 + 3 o + t
        s = (net.norm.weight / torch.sqrt(net.norm.running_var + net.norm.eps)).detach().numpy()
        W1, W2 = net.a.weight.detach().numpy(), net.b.weight.detach().numpy()
        for t in range(3):
            feat, out = 12 + 3 * np.arange(5) + t, 27 + 3 * np.arange(2) + t
            np.testing.assert_allclose(A[np.ix_(4 * t + np.arange(4), feat)], (W1 * s[:, None]).T,
                                       rtol=1e-9)
            np.testing.assert_allclose(A[np.ix_(feat, out)], W2.T, rtol=1e-9)
        return
    gamma = net.norm.weight.detach().numpy()
    ref = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)).double().eval()
    with torch.no_grad():
        ref[0].weight.copy_(net.c1.weight * (net.norm.weight.view(-1, 1, 1, 1)
                                             if how == "channels-last" else 1))
        ref[1].weight.copy_(net.c2.weight)
    B = _dense(_graph(ref, (3, 5, 5))[0])
    if how == "channels-last":
        np.testing.assert_allclose(A, B, rtol=1e-9)
    else:   # y read twice: conv edges unscaled, the next layer's edges gamma + 1 per channel
        np.testing.assert_allclose(A[:75, 75:175], B[:75, 75:175], rtol=1e-9)
        np.testing.assert_allclose(A[75:175, 175:], B[75:175, 175:] * np.repeat(gamma + 1, 25)[:, None],
                                   rtol=1e-9)


class _LikeConstants(nn.Module):
    def __init__(self, written):
        super().__init__()
        self.written = written
        self.c, self.d = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.c(x)
        if self.written:      # constants of y's shape: they read its shape, not its values
            return self.d(y * torch.ones_like(y) * 2 + torch.zeros_like(y))
        return self.d(y * 2)


@pytest.mark.parametrize("capture", ["export", "core"])
def test_tensors_of_a_values_shape_are_constants(capture):
    """``y * ones_like(y) * 2 + zeros_like(y)`` is ``2 y``: the same graph (the
    factor in the layer's edges), where it was refused as an op ``full_like``."""
    torch.manual_seed(0)
    net = _LikeConstants(True).eval()
    ref = _LikeConstants(False).eval()
    ref.load_state_dict(net.state_dict())
    np.testing.assert_allclose(_dense(_graph(net, (2, 5, 5), capture=capture)[0]),
                               _dense(_graph(ref, (2, 5, 5))[0]), rtol=1e-6)


class _Einsum(nn.Module):
    def __init__(self, eq):
        super().__init__()
        self.eq = eq
        self.c = nn.Conv2d(2, 3, 3)
        self.W = nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        y = torch.relu(self.c(x))
        if self.eq == "attention":
            return torch.einsum("bchw,bdhw->bcd", y, y)
        if self.eq == "right":
            return torch.einsum("bchw,co->bohw", y, self.W.T.contiguous())
        return torch.einsum("bchw,oc->bohw", y, self.W)


@pytest.mark.parametrize("eq", ["left", "right"])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_an_einsum_with_a_weight_is_a_dense_layer_at_every_position(eq, capture):
    """``einsum("bchw,oc->bohw", y, W)`` with a fixed ``W`` is a 1x1 convolution
    (it was refused as self-attention); a product of two network values still
    is refused."""
    torch.manual_seed(0)
    net = _Einsum(eq).eval()
    ref = nn.Sequential(net.c, nn.ReLU(), nn.Conv2d(3, 4, 1, bias=False)).eval()
    with torch.no_grad():
        ref[2].weight.copy_(net.W.view(4, 3, 1, 1))
    np.testing.assert_allclose(_dense(_graph(net, (2, 5, 5), capture=capture)[0]),
                               _dense(_graph(ref, (2, 5, 5))[0]), rtol=1e-6)
    if capture == "export":
        with pytest.raises(UnsupportedLayerError, match="batched matrix product"):
            _graph(_Einsum("attention").eval(), (2, 5, 5))



class _SqueezedHead(nn.Module):
    """A classifier head on ``gap(x).squeeze()``: at batch 1 the squeeze drops
    the batch dimension too (dynamic_network_architectures' ResNetD / VGG)."""

    def __init__(self, scaled):
        super().__init__()
        self.c, self.fc, self.fc2 = nn.Conv2d(1, 4, 3), nn.Linear(4, 3), nn.Linear(3, 2)
        self.scaled = scaled

    def forward(self, x):
        v = self.fc(F.adaptive_avg_pool2d(self.c(x), 1).squeeze())
        return -2 * v if self.scaled else self.fc2(v)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_dense_layer_on_a_vector_without_its_batch_is_a_dense_layer(capture, scaled):
    """It was refused as a layer run on one sample's values regrouped as a
    batch; as the output, a factor on it folds into its edges (it crashed)."""
    g = assert_is_jacobian(_SqueezedHead(scaled), (1, 6, 6), capture)
    # input, conv, pool, the dense layers
    assert g.n_nodes == 36 + 4 * 16 + 4 + 3 + (0 if scaled else 2)


def test_an_output_padded_with_constants_is_refused_saying_what_to_do():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ZeroPad2d(1))
    with pytest.raises(UnsupportedLayerError, match="last op pads.*end the model before"):
        SignedGraph.from_module(net, (1, 3, 3))

    class Background(nn.Module):        # a logit pinned at 0, concatenated: the same
        def __init__(self):              # (it got a block of its own, an isolated node
            super().__init__()           # for the constant and identity edges)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.fc(x)
            return torch.cat([torch.zeros_like(y[:, :1]), y], 1)

    with pytest.raises(UnsupportedLayerError, match="a concatenated constant.*end the model"):
        SignedGraph.from_module(Background(), (4,))


def test_a_forward_out_of_memory_is_not_blamed_on_the_input_shape():
    class Hungry(nn.Module):
        def forward(self, x):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                               "allocate 1048576000 bytes")

    with pytest.raises(DeepglassError, match=r"^Hungry ran out of memory on one sample of "
                                             r"shape \(1, 4\)"):
        SignedGraph.from_module(Hungry(), (1, 4))


def test_a_rule_failing_on_an_unforeseen_use_is_a_one_line_refusal(monkeypatch):
    """An op's rule that fails on a use it does not foresee (here a pool
    rule made to fail as one once did on a kernel given as a one-element
    list) refuses the layer by name; it was a raw IndexError from inside the
    rule."""
    from deepglass.graph import aten as aten_table

    def failing(ip, n, args, kwargs, real):
        return ()[1]

    for packet in [p for p in aten_table.ATEN_OPS if "avg_pool2d" in str(p)]:
        monkeypatch.setitem(aten_table.ATEN_OPS, packet, failing)

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return F.avg_pool2d(self.c(x), 3, 1, 1)

    with pytest.raises(UnsupportedLayerError, match=r"'avg_pool2d' .*does not cover this use "
                                                    r"\(IndexError"):
        SignedGraph.from_module(Pool(), (2, 4, 4))


def test_a_refusal_ends_with_the_line_of_the_models_code():
    """An op the model's own ``forward`` computes (no module of its own, so
    named by the op): the refusal ends with the file and line that compute
    it, where the user can find it."""
    import inspect

    class Bilinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv1d(1, 2, 3), nn.Conv1d(1, 2, 3)

        def forward(self, x):
            return torch.relu(self.a(x)) * self.b(x)

    line = inspect.getsourcelines(Bilinear.forward)[1] + 1
    with pytest.raises(UnsupportedLayerError, match=rf"^unsupported layer 'mul' .*"
                                                    rf"\(test_capture\.py:{line}\)$"):
        SignedGraph.from_module(Bilinear(), (1, 8))



def test_a_refusal_inside_an_autocast_region_names_its_modules_forward():
    """An op traced inside ``with torch.autocast(..., enabled=False)`` (as
    timm's EfficientViT attention is written) keeps only a frame of generated
    code: the refusal names the forward of its module and where it is, not
    nothing (before, the message ended without any place)."""
    import inspect

    class Gram(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x).flatten(2)
            with torch.autocast(device_type="cpu", enabled=False):
                return torch.bmm(y, y.transpose(1, 2))

    line = inspect.getsourcelines(Gram.forward)[1]
    with pytest.raises(UnsupportedLayerError, match=rf"^unsupported layer 'bmm' .*"
                                                    rf"\(in .*Gram\.forward, "
                                                    rf"test_capture\.py:{line}\)$"):
        SignedGraph.from_module(Gram(), (3, 6, 6))

def test_complex_values_are_refused_saying_why():
    """A complex value read other than as its parts or magnitude (a phase, a
    complex U-Net) has no real-valued signed graph: one line saying so (it
    named only the op, 'view_as_complex')."""
    class Phase(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(1, 2, 3)

        def forward(self, x):
            return torch.fft.rfft(self.c(x)).angle()

    with pytest.raises(UnsupportedLayerError, match=r"\(complex values\): deepglass reads a "
                                                    r"complex value only as .*meets 'angle'"):
        SignedGraph.from_module(Phase(), (1, 16))


def test_an_uninitialized_lazy_layer_is_one_line_saying_what_to_do():
    """A lazy layer not yet run has no weights: one line (it was a raw
    ValueError); after one forward pass, its graph."""
    net = nn.Sequential(nn.LazyConv1d(3, 3))
    with pytest.raises(DeepglassError, match=r"'0\.weight' is not initialized .*run the model"):
        SignedGraph.from_module(net, (2, 8))
    net(torch.randn(1, 2, 8))
    assert SignedGraph.from_module(net, (2, 8)).n_edges == 3 * 6 * 2 * 3


def test_a_non_monotone_activation_in_every_block_warns_once_naming_its_layers():
    """PReLUs with negative slopes warned once per layer (57 warnings for a
    segmenter), where the README promises once by name."""
    net = nn.Sequential(*[m for _ in range(5) for m in (nn.Conv2d(4, 4, 3, padding=1),
                                                        nn.PReLU(4, init=-0.5))]).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        SignedGraph.from_module(net, (4, 8, 8))
    msgs = [str(w.message) for w in caught if issubclass(w.category, NonMonotoneActivationWarning)]
    assert msgs == ["activation PReLU at 5 layers ('1', '3', '5' and 2 more; at the first (4 of "
                    "4 learned slopes are negative)) is not non-decreasing: the monotonicity "
                    "theorems (and near-monotonicity tests) assume non-decreasing activations"]
    one = nn.Sequential(nn.Conv2d(4, 4, 3), nn.PReLU(4, init=-0.5)).eval()
    with pytest.warns(NonMonotoneActivationWarning, match=r"activation PReLU at '1' \(4 of 4"):
        SignedGraph.from_module(one, (4, 8, 8))


def test_covariance_pooling_is_refused_as_what_it_is():
    class CovPool(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 3, 3)

        def forward(self, x):
            y = self.c(x).flatten(2)
            return (y @ y.transpose(1, 2)).flatten(1)

    with pytest.raises(UnsupportedLayerError, match=r"bilinear or covariance pooling"):
        SignedGraph.from_module(CovPool(), (1, 8, 8))


class _Upsample(nn.Module):
    """A convolution, then a 1-d or 3-d upsampling (one layer, SPEC §1b)."""

    def __init__(self, dims, mode, **kw):
        super().__init__()
        self.c = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](2, 2, 1)
        self.mode, self.kw = mode, kw
        self.scale = {1: 2, 2: (1.5, 2.25), 3: (1, 2, 2)}[dims]

    def forward(self, x):
        scale = {} if "size" in self.kw else {"scale_factor": self.scale}
        return F.interpolate(self.c(x), mode=self.mode, **scale, **self.kw)


@pytest.mark.parametrize("dims, mode, kw", [
    (1, "linear", {"align_corners": False}), (1, "nearest", {}), (1, "nearest-exact", {}),
    (3, "trilinear", {"align_corners": False}), (3, "trilinear", {"align_corners": True}),
    (3, "nearest", {}), (3, "nearest-exact", {}), (2, "nearest-exact", {}),
    (2, "bicubic", {"align_corners": False}), (2, "bicubic", {"size": (9, 11)}),
    (2, "bicubic", {"size": (9, 11), "align_corners": True})])
def test_a_1d_or_3d_upsampling_is_one_layer_in_both_captures(dims, mode, kw):
    """Lowered to core ATen (capture="core", or any op without a rule), the 1-d
    and 3-d upsamplings were decomposed into chains of lerps and copies: another
    graph (more nodes, another frustration) for the same linear map.  So were
    2-d nearest-exact (in core) and bicubic (in both: its weights computed in
    float32, 5e-7 off in a float64 graph)."""
    net = _Upsample(dims, mode, **kw)
    shape = {1: (2, 5), 2: (2, 5, 7), 3: (2, 2, 3, 3)}[dims]
    a, b = (SignedGraph.from_module(net, shape, dtype=torch.float64, capture=c)
            for c in ("export", "core"))
    assert [nb.op for nb in a.node_blocks] == [nb.op for nb in b.node_blocks]
    assert len(a.node_blocks) == 3 and a.n_nodes == b.n_nodes
    assert a.node_blocks[-1].op == "resample"           # one layer, not a chain of adds
    assert a.n_edges == b.n_edges and abs(a.to_scipy() - b.to_scipy()).max() < 1e-12
    assert_is_jacobian(net, shape, "core")


class _Conditioned(nn.Module):
    """A layer conditioned on a fixed argument: a timestep embedding added
    (diffusers' UNet2DModel) or a style vector's scale on the input channels
    (FiLM, a modulated convolution)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.affine = nn.Linear(1, 4), nn.Linear(8, 4)
        self.conv = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x, t, w):
        step = self.emb(t.to(x.dtype).view(-1, 1))[:, :, None, None]
        h = x * self.affine(w)[:, :, None, None] + step
        return self.conv(h)


def test_a_tensor_in_forward_kwargs_is_held_fixed():
    """A tensor given in ``forward_kwargs`` became an input block of the graph
    (a timestep ``tensor([10])`` made a second input), and a style vector so
    given was refused as a product of two network values; both are now fixed
    arguments, as a number there is: the graph of the network with them as
    buffers, equal to its Jacobian."""
    class Buffered(nn.Module):
        def __init__(self, inner, t, w):
            super().__init__()
            self.inner = inner
            self.register_buffer("t", t)
            self.register_buffer("w", w)

        def forward(self, x):
            return self.inner(x, self.t, self.w)

    net = _Conditioned().double().eval()
    t, w = torch.tensor([10]), torch.randn(1, 8, dtype=torch.float64)
    g = SignedGraph.from_module(net, (4, 5, 5), dtype=torch.float64,
                                forward_kwargs={"t": t, "w": w})
    ref = SignedGraph.from_module(Buffered(net, t, w), (4, 5, 5), dtype=torch.float64)
    assert [nb.name for nb in g.input_blocks] == ["input"] and g.input_shape == (4, 5, 5)
    assert g.n_nodes == ref.n_nodes == 100 + 75 and g.n_edges == ref.n_edges
    np.testing.assert_allclose(_dense(g), _dense(ref), rtol=1e-12)
    J = torch.autograd.functional.jacobian(lambda x: net(x, t, w), torch.randn(1, 4, 5, 5,
                                           dtype=torch.float64)).reshape(75, 100).numpy()
    np.testing.assert_allclose(path_sums(g)[g.outputs["output"]], J, rtol=1e-9, atol=1e-12)

    class Biased(nn.Module):
        def __init__(self, branch=False):
            super().__init__()
            self.branch, self.conv = branch, nn.Conv2d(2, 3, 1)

        def forward(self, x, t):
            if self.branch and t > 5:         # a Python branch on the tensor's value
                return self.conv(x) * 2
            return self.conv(x) + t

    # the fx fallback holds it fixed too (it said 'more than one input')
    g = SignedGraph.from_module(Biased(), (2, 3, 3), capture="fx",
                                forward_kwargs={"t": torch.tensor(1.0)})
    assert len(g.input_blocks) == 1 and g.n_nodes == 18 + 27
    with pytest.raises(DeepglassError, match=r"a tensor in forward_kwargs is held fixed, but its "
                                             r"values cannot decide Python control flow"):
        SignedGraph.from_module(Biased(branch=True), (2, 3, 3), capture="export",
                                forward_kwargs={"t": torch.tensor(10.0)})


class _GDN(nn.Module):
    """Generalized divisive normalization (compressai's ``GDN``): ``x /
    sqrt(beta + conv1x1(x ** 2, gamma))``, its inverse (``x * sqrt(...)``),
    ``GDN1`` (``x / (beta + conv1x1(|x|, gamma))``), between two
    convolutions; gamma and beta reparametrized in forward (squares plus a
    bound), as compressai keeps them non-negative; ``"none"``: no norm."""

    def __init__(self, kind, negative=False):
        super().__init__()
        torch.manual_seed(2)
        self.kind = kind
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 2, 3, padding=1)
        self.gamma_p = nn.Parameter(0.3 * torch.eye(4) + 0.1 * torch.rand(4, 4))
        self.beta_p = nn.Parameter(torch.ones(4))
        self.negative = negative

    def forward(self, x):
        x = self.c1(x)
        if self.kind == "none":
            return self.c2(x)
        gamma = (self.gamma_p ** 2 + 1e-6).view(4, 4, 1, 1)
        if self.negative:                  # a weight of either sign: no statistic
            gamma = gamma - 0.05
        beta = self.beta_p ** 2 + 1e-6
        if self.kind == "gdn1":
            return self.c2(x * (1.0 / F.conv2d(x.abs(), gamma, beta)))
        z = F.conv2d(x ** 2, gamma, beta)
        return self.c2(x * torch.rsqrt(z) if self.kind == "gdn" else x * torch.sqrt(z))


@pytest.mark.parametrize("kind", ["gdn", "igdn", "gdn1"])
def test_generalized_divisive_normalization_is_a_positive_rescaling(kind):
    """SPEC §1b: a division by a per-sample statistic is a positive rescaling.
    GDN's statistic is ``beta + conv(x ** 2, gamma)`` with gamma, beta >= 0
    (learned image compression's analysis and synthesis transforms): a
    weighted sum of squares, as local response norm's mean of them.  It was
    refused as a product of two network values; it is now the graph of the
    network without it.  With a weight of either sign, the 'statistic' may be
    negative: still refused."""
    ref = _dense(_graph(_GDN("none").double(), (3, 8, 8))[0])
    got = _dense(_graph(_GDN(kind).double(), (3, 8, 8))[0])
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    with pytest.raises(UnsupportedLayerError):
        SignedGraph.from_module(_GDN(kind, negative=True).eval(), (3, 8, 8))


class _TokenGDN(nn.Module):
    """GDN over the channels of (T, C) tokens, its gamma applied as a matrix
    product on either side (``y ** 2 @ gamma.T``, ``gamma @ (y ** 2).T``)."""

    def __init__(self, how):
        super().__init__()
        torch.manual_seed(1)
        self.how = how
        self.c, self.o = nn.Linear(4, 4), nn.Linear(4, 2)
        self.gamma = nn.Parameter(0.1 * torch.rand(4, 4))

    def forward(self, x):
        y = self.c(x)
        if self.how == "none":
            return self.o(y)
        n = y ** 2 @ self.gamma.T if self.how == "right" else \
            (self.gamma @ (y ** 2).transpose(1, 2)).transpose(1, 2)
        return self.o(y * torch.rsqrt(1 + n))


@pytest.mark.parametrize("how", ["right", "left"])
def test_gdn_with_its_weights_as_a_matrix_product_is_a_positive_rescaling(how):
    """A GDN over tokens whose gamma is applied with ``@`` (or an einsum) was
    refused as a product of two network values; a matrix product with fixed
    non-negative weights mixes a statistic as a convolution does."""
    ref = _dense(_graph(_TokenGDN("none").double(), (5, 4))[0])
    np.testing.assert_allclose(_dense(_graph(_TokenGDN(how).double(), (5, 4))[0]), ref,
                               rtol=1e-12)


class _StatisticAlsoAValue(nn.Module):
    """A normalization's statistic ``n`` that also goes on as a value:
    ``y / n + n`` or returned (``how="output"``); ``n`` is GDN1's ``conv(|y|,
    gamma) + 1``, GDN's ``conv(y ** 2, gamma) + 1`` or RMS's
    ``sqrt(1 + mean(y ** 2))``."""

    def __init__(self, stat, how="sum"):
        super().__init__()
        torch.manual_seed(0)
        self.stat, self.how = stat, how
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.gamma = nn.Parameter(0.1 * torch.rand(4, 4, 1, 1))

    def forward(self, x):
        y = self.c1(x)
        one = torch.ones(4, dtype=y.dtype)
        n = {"gdn1": lambda: F.conv2d(y.abs(), self.gamma, one),
             "gdn": lambda: F.conv2d(y ** 2, self.gamma, one),
             "rms": lambda: torch.sqrt(1 + (y ** 2).mean(1, keepdim=True))}[self.stat]()
        return (y / n, n) if self.how == "output" else y / n + n


@pytest.mark.parametrize("stat", ["gdn1", "gdn", "rms"])
@pytest.mark.parametrize("how", ["sum", "output"])
def test_a_statistic_that_is_also_a_value_keeps_its_value_path(stat, how):
    """SPEC §1b, the network is what it computes: a statistic used as a value
    too (``y / n + n``, or returned) was taken as a statistic only, and its
    value path was dropped without a word (the sum's edges, or a whole
    output).  It is a value now: the division by it a gate (it is >= 1), its
    value path layers: the path sums equal the Jacobian of the net with the
    division and the activations taken out."""
    net = _StatisticAlsoAValue(stat, how).double().eval()
    g, _ = _graph(net, (3, 5, 5))
    assert len(g.outputs) == (2 if how == "output" else 1)
    V = path_sums(g)

    def linear(x):                        # |y|, y ** 2, sqrt as the identity; no division
        y = net.c1(x)
        n = y.mean(1, keepdim=True) if stat == "rms" else F.conv2d(y, net.gamma)
        return (y, n) if how == "output" else y + n

    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    outs = linear(x) if how == "output" else (linear(x),)
    for k, idx in enumerate(g.outputs.values()):
        J = torch.autograd.functional.jacobian(lambda t: (linear(t) if how == "output" else
                                                          (linear(t),))[k], x)
        np.testing.assert_allclose(V[idx], J.reshape(len(idx), -1).numpy(), atol=1e-12)
    assert len(outs) == len(g.outputs)


class _PartlyCentred(nn.Module):
    """``y * s - 2 mean(y) * s`` with TensorFlow's fused factor ``s = gamma *
    rsqrt(var + eps)``: a mean that is not the centring (its gain is not the
    value's), written ``m * (2.0 * s)`` or ``(m * s) * 2.0``."""

    def __init__(self, form, gamma):
        super().__init__()
        torch.manual_seed(0)
        self.form = form
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 3)
        self.gamma = nn.Parameter(torch.tensor(gamma).view(4, 1, 1))

    def forward(self, x):
        y = self.c1(x)
        m = y.mean(1, keepdim=True)
        s = self.gamma * torch.rsqrt(((y - m) ** 2).mean(1, keepdim=True) + 1e-3)
        return self.c2(y * s - (m * (2.0 * s) if self.form == "inside" else (m * s) * 2.0))


@pytest.mark.parametrize("form", ["inside", "after"])
@pytest.mark.parametrize("gamma", [[1.5, 0.7, 2.0, 0.6], [1.5, -0.7, -2.0, 0.6]])
def test_a_mean_scaled_otherwise_than_the_value_is_no_centring(form, gamma):
    """A number times the fused factor lost its gain (``m * (2.0 * s)`` read as
    ``m``; with a gain of mixed signs refused), and ``(m * s) * 2.0`` was read
    as the centring (ignored).  Both are ``gamma y - 2 gamma mean(y)``: the
    statistic a rescaling at 1, the mean a layer with the gains."""
    net = _PartlyCentred(form, gamma).double().eval()
    g, _ = _graph(net, (3, 5, 5))
    V = path_sums(g)[g.outputs["output"]]
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    gm = net.gamma

    def linear(t):
        y = net.c1(t)
        return net.c2(gm * y - 2 * gm * y.mean(1, keepdim=True))

    J = torch.autograd.functional.jacobian(linear, x).reshape(V.shape[0], -1).numpy()
    np.testing.assert_allclose(V, J, atol=1e-12)


class _SharedStatistic(nn.Module):
    """A statistic of ``y`` beside other uses: the square ``y ** 2`` also a
    layer's input (``"square"``), a mean that centres ``y`` also subtracted
    from another branch ``z`` (``"other"``), ScaleNorm's ``y * (g / ||y||)``
    (``"scalenorm"``), or a layer norm's gain over its deviation ``(y - m) *
    (gamma / sqrt(var + eps))`` (``"over"``)."""

    def __init__(self, how):
        super().__init__()
        torch.manual_seed(4)
        self.how = how
        self.c1, self.c2, self.c3 = nn.Conv1d(3, 4, 1), nn.Conv1d(3, 4, 1), nn.Conv1d(4, 4, 1)
        self.gamma = nn.Parameter(torch.tensor([1.5, -0.7, 2.0, -0.3]).view(4, 1))
        self.scale = nn.Parameter(torch.tensor(-2.0))

    def forward(self, x):
        y = self.c1(x)
        if self.how == "square":
            return y / torch.sqrt((y ** 2).mean(1, keepdim=True) + 1e-5) + self.c3(y ** 2)
        if self.how == "other":
            m = y.mean(1, keepdim=True)
            return (y - m) / torch.sqrt(((y - m) ** 2).mean(1, keepdim=True) + 1e-5), \
                self.c2(x) - m
        if self.how == "scalenorm":              # (its scale a parameter, as in ScaleNorm)
            return y * (self.scale / y.norm(dim=1, keepdim=True).clamp(min=1e-5))
        m = y.mean(1, keepdim=True)
        return (y - m) * (self.gamma / torch.sqrt(((y - m) ** 2).mean(1, keepdim=True) + 1e-5))


@pytest.mark.parametrize("how", ["square", "other", "scalenorm", "over"])
def test_a_statistic_beside_other_uses_keeps_them(how):
    """Silently wrong before: a square that is also a layer's input lost that
    layer (its branch, or a whole output, gone); a mean subtracted from another
    branch too was dropped from that branch; a gain over the statistic
    (``g / ||y||``, ``gamma / sqrt(var)``) lost its size.  The linearized
    network: statistics held at 1, a mean used as a value a layer (its
    centring too), gains kept."""
    net = _SharedStatistic(how).double().eval()
    g, _ = _graph(net, (3, 4))
    V = path_sums(g)

    def linear(t):
        y = net.c1(t)
        m = y.mean(1, keepdim=True)
        return {"square": lambda: (y + net.c3(y),),
                "other": lambda: (y - m, net.c2(t) - m),
                "scalenorm": lambda: (-2.0 * y,),
                "over": lambda: (net.gamma * y,)}[how]()

    x = torch.randn(1, 3, 4, dtype=torch.float64)
    assert len(g.outputs) == len(linear(x))
    for k, idx in enumerate(g.outputs.values()):
        J = torch.autograd.functional.jacobian(lambda t: linear(t)[k], x)
        np.testing.assert_allclose(V[idx], J.reshape(len(idx), -1).numpy(), atol=1e-12)


class _Highway(nn.Module):
    """``y (1 - t) + h t`` with a gate ``t``, written in several orders."""

    def __init__(self, form):
        super().__init__()
        torch.manual_seed(5)
        self.form = form
        self.cy, self.ch, self.cz = nn.Conv1d(2, 3, 1), nn.Conv1d(2, 3, 1), nn.Conv1d(2, 3, 1)

    def forward(self, x):
        y, h, t = self.cy(x), self.ch(x), torch.sigmoid(self.cz(x))
        return {"update": lambda: y + t * (h - y),
                "after": lambda: h * t + y - y * t, "minus": lambda: (h + y * t) - y}[self.form]()


@pytest.mark.parametrize("form", ["update", "after", "minus"])
def test_gated_copies_in_a_sum_with_a_layer_add_as_copies_do(form):
    """Copies of ``y`` in a sum that also holds a layer's term were parallel
    terms whose weights cancelled (``y + t * (h - y)``, a highway's or a GRU's
    update: ``y`` cut off, weight 0); they now add as two copies do (SPEC
    §1b, interval arithmetic over the gate: ``y - y t`` is +y, ``y t - y``
    -y), whatever the order of the additions."""
    net = _Highway(form).double().eval()
    got_g = _graph(net, (2, 4))[0]
    got = path_sums(got_g)[got_g.outputs["output"]]
    sign = -1.0 if form == "minus" else 1.0
    Jy = torch.autograd.functional.jacobian(lambda t: net.cy(t), torch.zeros(1, 2, 4,
                                            dtype=torch.float64)).reshape(12, 8).numpy()
    Jh = torch.autograd.functional.jacobian(lambda t: net.ch(t), torch.zeros(1, 2, 4,
                                            dtype=torch.float64)).reshape(12, 8).numpy()
    np.testing.assert_allclose(got, Jh + sign * Jy, atol=1e-12)


@pytest.mark.parametrize("form", ["floor", "long", "indices"])
def test_a_factor_whose_range_is_not_its_values_is_no_gate(form):
    """The range analysis took ``(sigmoid(z) + 0.5) // 1`` and ``.long()`` for
    [0.5, 1.5] (their values are 0 and 1) and a max's indices for its values,
    so ``y * f - 0.5 y`` got a fixed sign the input decides; each is refused."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cy, self.cz = nn.Conv1d(2, 3, 1), nn.Conv1d(2, 3, 1)

        def forward(self, x):
            y, s = self.cy(x), torch.sigmoid(self.cz(x))
            f = {"floor": lambda: (s + 0.5) // 1, "long": lambda: (s + 0.5).long(),
                 "indices": lambda: s.max(1, keepdim=True)[1]}[form]()
            return y * f - 0.5 * y

    with pytest.raises(UnsupportedLayerError):
        SignedGraph.from_module(Net().eval(), (2, 4))


@pytest.mark.parametrize("how", ["half", "alpha", "weighted", "transposed"])
def test_a_mean_subtracted_otherwise_than_a_centring_is_a_layer(how):
    """``x - 0.5 * x.mean(1)``, ``torch.sub(x, m, alpha=2)``, ``x - w * m`` and
    the mean of ``y`` subtracted from ``y`` transposed (square shapes) were
    read as a centring and dropped; each is a layer now, its path sums the
    Jacobian (the network holds no normalization).  ``x - x.sum(1) / C`` and
    Conv-TasNet's ``cumsum(x) / count`` stay centrings (other tests)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(6)
            self.a = nn.Conv1d(3, 4, 3, padding=1)
            self.w = nn.Parameter(torch.rand(1, 1, 4, dtype=torch.float64) + 0.5)

        def forward(self, x):
            y = self.a(x)
            m = y.mean(1, keepdim=True)
            return {"half": lambda: y - 0.5 * m, "alpha": lambda: torch.sub(y, m, alpha=2),
                    "weighted": lambda: y - self.w * m,
                    "transposed": lambda: y.transpose(1, 2) - m}[how]()

    assert_is_jacobian(Net(), (3, 4))


def test_a_centring_written_with_a_sum_is_still_a_centring():
    """``x - x.sum(1) / C`` (a mean written as a sum over its count): ignored,
    as the mean's centring is."""
    class Net(nn.Module):
        def __init__(self, form):
            super().__init__()
            torch.manual_seed(6)
            self.form, self.a, self.b = form, nn.Conv1d(3, 4, 1), nn.Conv1d(4, 2, 1)

        def forward(self, x):
            y = self.a(x)
            m = y.sum(1, keepdim=True) / 4 if self.form == "sum" else y.mean(1, keepdim=True)
            c = y - m
            return self.b(c / torch.sqrt((c ** 2).mean(1, keepdim=True) + 1e-5))

    (a, _), (b, _) = _graph(Net("sum").double(), (3, 5)), _graph(Net("mean").double(), (3, 5))
    assert [nb.name for nb in a.node_blocks] == ["input", "a", "b"]
    np.testing.assert_allclose(_dense(a), _dense(b), rtol=1e-12)


class _PoolMixer(nn.Module):
    """PoolFormer's token mixer: ``x + ls * (pool(n(x)) - n(x))`` with a group
    norm ``n`` of gains of mixed signs and a layer scale ``ls``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.c, self.o = nn.Conv2d(2, 4, 1), nn.Conv2d(4, 2, 1)
        self.n = nn.GroupNorm(1, 4)
        self.p = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.ls = nn.Parameter(torch.rand(4, 1, 1) + 0.5)
        with torch.no_grad():
            self.n.weight.copy_(torch.tensor([1.5, -0.5, 2.0, 0.7]))

    def forward(self, x):
        x = self.c(x)
        y = self.n(x)
        return self.o(x + self.ls * (self.p(y) - y))


def test_copies_of_a_value_in_a_rescaled_sum_keep_the_factor():
    """``x + ls * (pool(y) - y)`` with ``y`` a norm of ``x``: the copies of
    ``x`` (one with the factor ``ls`` the sum's term took after it was made)
    are one edge per node of weight ``1 - ls * gain`` (not two parallel ones),
    the path sums those of the network with its norm held at its gain (the
    merge first dropped the factor ``ls``, silently: caught on PoolFormer)."""
    net = _PoolMixer().double().eval()
    g, _ = _graph(net, (2, 4, 4))
    V = path_sums(g)[g.outputs["output"]]

    def linear(t):
        x = net.c(t)
        y = net.n.weight.view(4, 1, 1) * x
        return net.o(x + net.ls * (net.p(y) - y))

    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(linear, x).reshape(V.shape[0], -1).numpy()
    np.testing.assert_allclose(V, J, atol=1e-12)
    # the two convolutions, the pool's windows (4 x 10 x 10), one copy edge per node
    assert g.n_edges == 2 * 4 * 16 + 4 * 10 * 10 + 64 + 4 * 2 * 16      # (two copies: +64)


class _CatAdd(nn.Module):
    """``cat([a(x), b(x)])`` (a gain ``g`` on it, as a batch norm after it),
    plus ``x``; ``ghost``: ``b`` reads ``a(x)``, so ``a``'s pre-add value is
    another layer's input (GhostNet's ghost module)."""

    def __init__(self, ghost=False, gain=False):
        super().__init__()
        self.a = nn.Conv2d(4, 2, 3, padding=1, bias=False)
        self.b = nn.Conv2d(2 if ghost else 4, 2, 3, padding=1, bias=False, groups=2 if ghost else 1)
        self.ghost = ghost
        self.g = nn.Parameter(torch.tensor([0.5, -2.0, 3.0, -0.25]).view(1, 4, 1, 1)) \
            if gain else None

    def forward(self, x):
        a = self.a(x)
        y = torch.cat([a, self.b(a if self.ghost else x)], 1)
        return (y * self.g if self.g is not None else y) + x


@pytest.mark.parametrize("gain", [False, True])
def test_a_sum_onto_a_concatenation_ends_on_the_layers_nodes(gain):
    """SPEC §1: the add creates no nodes.  ``cat([a(x), b(x)]) + x`` is
    ``c(x) + x`` with ``c`` the two convs stacked, node for node and edge for
    edge (a gain on the concatenation folds into each layer's edges).  Before,
    the sum was a block of its own whose edges were all identities (MixNet's
    mixed convolutions, GhostNet): 432 nodes for 288, another frustration."""
    class One(nn.Module):
        def __init__(self, cat):
            super().__init__()
            self.c = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            with torch.no_grad():
                self.c.weight.copy_(torch.cat([cat.a.weight, cat.b.weight], 0))
            self.g = cat.g

        def forward(self, x):
            y = self.c(x)
            return (y * self.g if self.g is not None else y) + x

    torch.manual_seed(0)
    cat = _CatAdd(gain=gain).eval()
    got = assert_is_jacobian(cat, (4, 6, 6))
    want = SignedGraph.from_module(One(cat).double().eval(), (4, 6, 6), dtype=torch.float64)
    assert got.n_nodes == want.n_nodes == 2 * 4 * 36 and got.n_edges == want.n_edges
    assert abs(got.to_scipy() - want.to_scipy()).max() < 1e-15
    assert [nb.op for nb in got.node_blocks] == ["input", "add", "add"]


def test_a_sum_onto_a_concatenation_keeps_apart_a_value_read_elsewhere():
    """The ghost module: ``a(x)`` is also ``b``'s input, so its part of the sum
    is a value of its own (identity edges from ``a`` and ``x``); ``b``'s part
    ends on ``b``'s nodes.  Path sums are the Jacobian either way."""
    torch.manual_seed(0)
    g = assert_is_jacobian(_CatAdd(ghost=True, gain=True), (4, 6, 6))
    shapes = {nb.name: (nb.op, nb.shape) for nb in g.node_blocks}
    assert shapes["a"] == ("conv", (2, 6, 6)) and shapes["b"] == ("add", (2, 6, 6))
    assert g.n_nodes == 4 * 36 + 3 * 2 * 36
    # a layer reading the sum reads both parts, the sum's own nodes after b's:
    # the operator (not only the explicit matrix) is that of its edges
    net = nn.Sequential(_CatAdd(ghost=True, gain=True), nn.Conv2d(4, 3, 1))
    g = assert_is_jacobian(net, (4, 6, 6))
    x = torch.randn(2, g.n_nodes, dtype=torch.float64)
    A = g.to_scipy()
    np.testing.assert_allclose(g.sym_matvec(x).numpy(), ((A + A.T) @ x.numpy().T).T, atol=1e-12)


class _GainBeforeReLU(nn.Module):
    """conv -> a per-channel gain ``w`` of both signs -> ReLU -> conv, the gain
    written as a batch norm, channels-first or channels-last."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.c1, self.c2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 3, 3, padding=1)
        w = torch.tensor([0.5, -2.0, 3.0, -0.25])
        self.bn = nn.BatchNorm2d(4, eps=0.0)
        with torch.no_grad():
            self.bn.weight.copy_(w)
        self.register_buffer("w", w.clone())

    def forward(self, x):
        y = self.c1(x)
        y = self.bn(y) if self.how == "bn" else y * self.w.view(1, -1, 1, 1) \
            if self.how == "first" else (y.permute(0, 2, 3, 1) * self.w).permute(0, 3, 1, 2)
        return self.c2(torch.relu(y))


def test_a_gain_applied_channels_last_folds_into_the_edges_that_end_on_it():
    """SPEC §1b: a fixed gain folds into the incoming edges, sign included,
    before the activation that follows.  Written channels-last (a permute,
    the product, a permute back) it landed on the next layer's edges, past
    the ReLU: another |A|, another frustration (0.3300 for 0.3276)."""
    graphs = {}
    for how in ("bn", "first", "last"):
        torch.manual_seed(0)
        graphs[how] = SignedGraph.from_module(_GainBeforeReLU(how).double().eval(), (2, 5, 5),
                                              dtype=torch.float64).to_scipy()
    for how in ("first", "last"):
        assert abs(graphs[how] - graphs["bn"]).max() < 1e-12, how


def test_a_filter_response_norms_gain_folds_into_the_edges_that_end_on_it():
    """A filter response norm written out (kornia's, HyNet's: ``x * rsqrt(mean
    (x ** 2) + eps)``, then ``gamma * x + beta``, then a TLU ``max(x, tau)``)
    is a per-sample norm: its gain folds into the conv before it, sign
    included, as GroupNorm's does (SPEC §1b); it landed on the next conv's
    edges, past the TLU."""
    class FRN(nn.Module):
        def __init__(self, gamma):
            super().__init__()
            self.weight = nn.Parameter(gamma.view(1, -1, 1, 1).clone())
            self.bias = nn.Parameter(torch.zeros_like(self.weight))

        def forward(self, x):
            x = x * torch.rsqrt(x.pow(2).mean(dim=[2, 3], keepdim=True) + 1e-6)
            return self.weight * x + self.bias

    class Net(nn.Module):
        def __init__(self, norm):
            super().__init__()
            self.c1, self.norm, self.c2 = nn.Conv2d(1, 4, 3, padding=1), norm, nn.Conv2d(4, 2, 3)
            self.tau = nn.Parameter(torch.zeros(1, 4, 1, 1))

        def forward(self, x):
            return self.c2(torch.max(self.norm(self.c1(x)), self.tau))

    gamma = torch.tensor([2.0, -1.0, 0.5, -3.0])
    gn = nn.GroupNorm(4, 4)
    with torch.no_grad():
        gn.weight.copy_(gamma)
    graphs = []
    for norm in (gn, FRN(gamma)):
        torch.manual_seed(0)
        graphs.append(SignedGraph.from_module(Net(norm).double().eval(), (1, 6, 6),
                                              dtype=torch.float64))
    assert abs(graphs[0].to_scipy() - graphs[1].to_scipy()).max() < 1e-12
    assert all(b.in_scale is None for b in graphs[1].edge_blocks)

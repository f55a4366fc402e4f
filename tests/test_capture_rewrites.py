"""Ops the capture writes out as what they compute (SPEC §1b, "the network is
what it computes"): ``var_mean`` / ``std_mean`` are a mean and a variance,
``lerp`` a gated or fixed sum; and a gate pooled by a reduction is a gate.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from jacobian import assert_is_jacobian, path_sums

from deepglass.errors import UnsupportedLayerError
from deepglass.graph import SignedGraph


def _dense(net, shape, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SignedGraph.from_module(net.double().eval(), shape, dtype=torch.float64, **kw)
    return g, g.to_scipy().toarray()


class _Norm(nn.Module):
    """A conv, then a norm over each sample's (C, H, W) by ``torch.var_mean``,
    ``torch.std_mean``, written out or ``nn.GroupNorm(1, C)``, gain ``w`` per
    channel."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)
        self.norm = nn.GroupNorm(1, 3)
        with torch.no_grad():
            self.norm.weight.copy_(torch.tensor([0.5, -2.0, 1.5]))

    def forward(self, x):
        y = self.conv(x)
        if self.how == "group_norm":
            return self.head(self.norm(y))
        w, b = self.norm.weight.view(3, 1, 1), self.norm.bias.view(3, 1, 1)
        if self.how in ("var_mean", "written"):
            if self.how == "written":
                m = y.mean((1, 2, 3), keepdim=True)
                v = ((y - m) ** 2).sum((1, 2, 3), keepdim=True) / y[0].numel()
            else:
                v, m = torch.var_mean(y, dim=(1, 2, 3), keepdim=True, correction=0)
            return self.head((y - m) * torch.rsqrt(v + 1e-5) * w + b)
        s, m = torch.std_mean(y, dim=(1, 2, 3))       # (keepdim=False)
        return self.head((y - m.view(-1, 1, 1, 1)) / (s.view(-1, 1, 1, 1) + 1e-5) * w + b)


@pytest.mark.parametrize("how", ["var_mean", "std_mean"])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_a_norm_written_with_var_mean_is_a_normalization(how, capture):
    """A layer norm written with ``torch.var_mean`` / ``std_mean`` is the
    graph of the same norm written out with ``mean`` and a sum of squares (SPEC
    §1b: a positive rescaling, the mean subtraction ignored, the gain folded
    sign included), and has the path sums of ``nn.GroupNorm(1, C)``; it was
    refused as a division by a network value."""
    torch.manual_seed(0)
    ref, written, net = _Norm("group_norm"), _Norm("written"), _Norm(how)
    written.load_state_dict(ref.state_dict())
    net.load_state_dict(ref.state_dict())
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(written.double()(x), ref.double()(x))
    if how == "var_mean":
        torch.testing.assert_close(net.double()(x), ref.double()(x))
    g, A = _dense(net, (2, 5, 5), capture=capture)
    h, B = _dense(written, (2, 5, 5), capture=capture)
    assert (g.n_nodes, g.n_edges) == (h.n_nodes, h.n_edges)
    np.testing.assert_allclose(A, B, rtol=1e-12)
    f, _ = _dense(ref, (2, 5, 5), capture=capture)
    np.testing.assert_allclose(path_sums(g)[g.output_index], path_sums(f)[f.output_index],
                               rtol=1e-9, atol=1e-12)


class _Lerp(nn.Module):
    """``lerp(y, h(y), weight)`` by ``torch.lerp`` or written out, with a
    sigmoid gate, a number, or a fixed tensor as the weight."""

    def __init__(self, weight, written):
        super().__init__()
        self.weight, self.written = weight, written
        self.conv, self.h, self.g = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
        self.register_buffer("fixed", torch.tensor([0.25, 0.5, 0.9]).view(3, 1, 1))

    def forward(self, x):
        y = self.conv(x)
        w = {"gate": lambda: torch.sigmoid(self.g(y)), "number": lambda: 0.3,
             "fixed": lambda: self.fixed}[self.weight]()
        h = self.h(y)
        return y + w * (h - y) if self.written else torch.lerp(y, h, w)


@pytest.mark.parametrize("weight", ["gate", "number", "fixed"])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_lerp_is_the_sum_it_computes(weight, capture):
    """``torch.lerp(a, b, w) = a + w (b - a)`` (SPEC §1b): with a sigmoid
    weight the gated sum (a gate, its branch left out), with a number or a
    fixed tensor a sum with fixed coefficients (the Jacobian); core ATen's
    decomposition selected by ``|w| < 0.5`` and was refused as a comparison."""
    torch.manual_seed(0)
    net, written = _Lerp(weight, False), _Lerp(weight, True)
    written.load_state_dict(net.state_dict())
    g, A = _dense(net, (2, 5, 5), capture=capture)
    h, B = _dense(written, (2, 5, 5), capture=capture)
    np.testing.assert_allclose(A, B, rtol=1e-12, atol=1e-15)
    if weight == "gate":
        assert g.meta["gates"] and sum(r["params"] for r in g.meta["left_out"]) == 3 * 3
        with pytest.raises(UnsupportedLayerError, match="gates='error'"):
            SignedGraph.from_module(net.eval(), (2, 5, 5), gates="error")
    else:
        assert_is_jacobian(net, (2, 5, 5), capture=capture)


class _PooledGate(nn.Module):
    """``y * pool(sigmoid(g(y)))``: a gate pooled over the positions."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool
        self.conv, self.g = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.conv(x)
        s = torch.sigmoid(self.g(y))
        return y * (s.mean((2, 3), keepdim=True) if self.pool == "mean"
                    else s.amax((2, 3), keepdim=True))


@pytest.mark.parametrize("pool", ["mean", "amax"])
def test_a_pooled_gate_is_a_gate(pool):
    """The mean or maximum of a sigmoid is a gate (SPEC §1b): a positive
    rescaling under ``gates="scale"``, listed in ``meta["gates"]``, refused
    under ``gates="error"`` (it passed unlisted, read as a normalization's
    statistic)."""
    torch.manual_seed(0)
    net = _PooledGate(pool)
    g, A = _dense(net, (2, 5, 5))
    assert g.meta["gates"]
    assert [r["block"] for r in g.meta["left_out"]] == ["g"]
    # the conv's own edges, unscaled (a gate is a positive rescaling)
    w = net.conv.weight.detach().double()
    assert set(np.round(A[A != 0], 12)) == set(np.round(w.numpy().ravel(), 12))
    with pytest.raises(UnsupportedLayerError, match="pooled gate.*gates='error'"):
        SignedGraph.from_module(net.eval(), (2, 5, 5), gates="error")


def test_a_normalization_is_no_gate():
    """A layer norm's statistic (bounded where it is ``rsqrt(var + eps)``) is
    not a pooled gate: ``gates="error"`` accepts it and lists no gate."""
    torch.manual_seed(0)
    g, _ = _dense(_Norm("var_mean"), (2, 5, 5), gates="error")
    assert not g.meta.get("gates")


class _MaxNorm(nn.Module):
    """``y / (max |y| + eps)``: a value divided by its own maximum magnitude
    (an L-infinity normalization), over each sample or each channel."""

    def __init__(self, dims):
        super().__init__()
        self.dims = dims
        self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        return self.head(y / (y.abs().amax(self.dims, keepdim=True) + 1e-6))


@pytest.mark.parametrize("dims", [(1, 2, 3), (2, 3)])
def test_a_division_by_the_maximum_magnitude_is_a_normalization(dims):
    """``|y|.amax()`` is a normalization's statistic as ``|y|.mean()`` is (SPEC
    §1b: a positive rescaling): the graph of the conv and head alone, and no
    warning of ``abs`` (it warned the magnitude as a non-monotone activation)."""
    torch.manual_seed(0)
    net = _MaxNorm(dims).double().eval()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g = SignedGraph.from_module(net, (2, 5, 5), dtype=torch.float64, gates="error")
    assert not [x for x in w if "abs" in str(x.message)]
    _, B = _dense(nn.Sequential(net.conv, net.head), (2, 5, 5))
    np.testing.assert_allclose(g.to_scipy().toarray(), B, rtol=1e-12)


class _NormAndFeature(nn.Module):
    """A variance that normalizes ``y`` and is returned as a feature too."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv, self.head, self.fc = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1), nn.Linear(3, 2)

    def forward(self, x):
        y = self.conv(x)
        if self.how == "var_mean":
            v, m = torch.var_mean(y, (2, 3), keepdim=True, correction=0)
        else:
            m = y.mean((2, 3), keepdim=True)
            v = ((y - m) ** 2).sum((2, 3), keepdim=True) / 9
        return self.head((y - m) / torch.sqrt(v + 1e-5)), self.fc(v.flatten(1))


@pytest.mark.parametrize("how", ["var_mean", "written"])
def test_a_variance_that_is_a_feature_keeps_its_centring(how):
    """A statistic that is a value too is what it computes (SPEC §1b): the
    variance returned as a feature is the centring layer, the square and the
    sum, so linearized (the square as identity) it is ``sum(y - m) / 9 = 0``
    and the feature's path sums vanish (the centring was dropped: they were
    those of ``fc(sum(y) / 9)``)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SignedGraph.from_module(_NormAndFeature(how).double().eval(), (2, 5, 5),
                                    dtype=torch.float64)
    V = path_sums(g)
    names = list(g.outputs)
    assert np.abs(V[g.outputs[names[1]]]).max() < 1e-12
    assert np.abs(V[g.outputs[names[0]]]).max() > 1e-3


class _Pool(nn.Module):
    """``y`` times, or divided by, a pooled statistic: ``how`` names it."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv, self.g, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        s = torch.sigmoid(self.g(y))
        out = {
            "max_values": lambda: y * s.max(1, keepdim=True).values,
            "adaptive_max": lambda: y * F.adaptive_max_pool2d(s, 1),
            "abs_max_values": lambda: y / y.abs().max(1, keepdim=True).values,
            "gelu_branch": lambda: y / (1 + F.gelu(self.g(y)).var((2, 3), keepdim=True)),
            "var_unused": lambda: y - torch.var_mean(y, (1, 2, 3), keepdim=True)[1],
            "batch_amax": lambda: y / y.abs().amax(0, keepdim=True),
            "all_amax": lambda: y / y.abs().amax(),
            "batch_var": lambda: y / torch.sqrt(y.var(0, keepdim=True) + 1e-5),
            "batch_square": lambda: y / torch.sqrt((y ** 2).mean(0, keepdim=True) + 1e-5),
            # a parameter row selected, samples stacked back: the batch is still there
            "bank_row": lambda: (lambda z: z / z.abs().amax())(y * self.g.weight[0].view(1, 3, 1, 1)),
            "stacked": lambda: y / torch.stack(list(y.unbind(0))).abs().amax(0, keepdim=True),
        }[self.how]()
        return self.head(out)


def _capture(how, **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g = SignedGraph.from_module(_Pool(how).double().eval(), (2, 5, 5), dtype=torch.float64,
                                    **kw)
    return g, [str(x.message) for x in w if "non-decreasing" in str(x.message)]


@pytest.mark.parametrize("how", ["max_values", "adaptive_max"])
def test_a_gate_pooled_by_max_dim_or_an_adaptive_max_pool_is_a_gate(how):
    """``s.max(dim).values`` and ``adaptive_max_pool2d(s)`` of a sigmoid are gates
    as ``s.amax(dim)`` is (SPEC §1b): listed and refused by ``gates="error"``
    (the first passed unlisted, the second was refused as a product of two
    values); the graph is the conv and head alone."""
    g, _ = _capture(how)
    assert g.meta["gates"] and [r["block"] for r in g.meta["left_out"] if r["params"]] == ["g"]
    net = _Pool(how).double()
    _, B = _dense(nn.Sequential(net.conv, net.head), (2, 5, 5))
    assert g.to_scipy().shape == B.shape
    with pytest.raises(UnsupportedLayerError, match="gates='error'"):
        _capture(how, gates="error")


def test_what_only_a_left_out_statistic_computes_warns_nothing():
    """A division by ``1 + var(gelu(g(y)))`` (a statistic of the same input's
    values, SPEC §1b): its branch is left out and warns nothing (it warned
    GELU); a
    maximum magnitude by ``max(dim).values`` is a statistic as by ``amax`` (it
    warned ``abs``); ``var_mean``'s unused variance is not written out (it
    warned its square)."""
    for how in ("gelu_branch", "abs_max_values", "var_unused"):
        g, warned = _capture(how)
        assert not warned, (how, warned)
    assert [r["block"] for r in _capture("gelu_branch")[0].meta["left_out"]] == ["g"]


@pytest.mark.parametrize("how", ["batch_amax", "all_amax", "batch_var", "batch_square",
                                 "bank_row", "stacked"])
def test_a_statistic_over_the_batch_is_refused(how):
    """A statistic reduced over the batch is no per-sample normalization (SPEC
    §1b): refused as a centring over the batch is (these were accepted)."""
    with pytest.raises(UnsupportedLayerError, match="reduces over the batch dimension"):
        _capture(how)


def test_an_op_written_out_is_named_as_the_user_wrote_it():
    """The ops :mod:`deepglass.graph.rewrites` writes are named after the op they
    are part of: ``lerp`` in ``meta["gates"]`` and in a refusal, not
    ``lerp_mul``."""
    net = _Lerp("gate", False)
    g, _ = _dense(net, (2, 5, 5))
    assert g.meta["gates"] == ["lerp"]
    with pytest.raises(UnsupportedLayerError, match="unsupported layer 'lerp' "):
        SignedGraph.from_module(net.eval(), (2, 5, 5), gates="error")


class _Moment(nn.Module):
    """``fc(cat([y.mean(2), s]))`` with ``s`` a moment of the centred ``d = y -
    y.mean(2, keepdim=True)``: its scaled square summed, its magnitude, cube or
    fourth power averaged (features, no normalization)."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv, self.fc = nn.Conv1d(2, 3, 3), nn.Linear(6, 2)

    def forward(self, x):
        y = self.conv(x)
        d = y - y.mean(2, keepdim=True)
        s = {"scaled_square": lambda: ((d / 7) ** 2).sum(2), "abs": lambda: d.abs().mean(2),
             "cube": lambda: (d ** 3).mean(2), "fourth": lambda: (d ** 4).mean(2),
             "norm": lambda: d.norm(dim=2),
             "norm1": lambda: torch.linalg.vector_norm(d, 1, dim=2)}[self.how]()
        return self.fc(torch.cat([y.mean(2), s], 1))


@pytest.mark.parametrize("how", ["scaled_square", "abs", "cube", "fourth", "norm", "norm1"])
def test_a_centring_under_any_moment_feature_is_a_layer(how):
    """A centred value raised to a power or a magnitude, through fixed factors,
    into a feature keeps its centring (SPEC §1b: no normalization, so the mean
    subtraction is a layer): linearized, each moment is a multiple of ``sum(d)
    = 0``, so the path sums are those of the mean features alone (the
    centring was dropped, as it was for the square before)."""
    torch.manual_seed(0)
    net = _Moment(how).double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SignedGraph.from_module(net, (2, 9), dtype=torch.float64)

    def linear(t):
        y = net.conv(t.view(1, 2, 9))
        return net.fc(torch.cat([y.mean(2), torch.zeros_like(y.mean(2))], 1))

    J = torch.autograd.functional.jacobian(linear, torch.zeros(18, dtype=torch.float64))
    np.testing.assert_allclose(path_sums(g)[g.output_index], J.numpy().reshape(2, 18),
                               atol=1e-12)


def test_a_per_sample_statistic_in_a_loop_over_the_batch_is_accepted():
    """``stack([s / |s|.amax() for s in y])``: each ``s`` is one sample (its batch
    axis taken away), so its maximum over every axis is per sample, a
    normalization (it was refused as a reduction over the batch)."""
    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return self.head(torch.stack([s / s.abs().amax() for s in y]))

    torch.manual_seed(0)
    net = Loop()
    g, A = _dense(net, (2, 5, 5))
    _, B = _dense(nn.Sequential(net.conv, net.head), (2, 5, 5))
    np.testing.assert_allclose(A, B, rtol=1e-12)


@pytest.mark.parametrize("fn", [torch.tanh, torch.erf, torch.atan])
def test_an_increasing_bounded_function_of_a_non_negative_value_is_a_gate(fn):
    """``tanh`` (``erf``, ``atan``) of a non-negative value is non-negative and
    bounded, a gate (SPEC §1b); it was refused, its range taken as (-1, 1)
    whatever its argument."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.g, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return self.head(y * fn(torch.relu(self.g(y))))

    torch.manual_seed(0)
    g, _ = _dense(Net(), (2, 5, 5))
    assert g.meta["gates"] and [r["block"] for r in g.meta["left_out"]] == ["g"]


def test_an_activation_written_out_is_warned_at_its_layers():
    """Hard-swish written out (``x * relu6(x + 3) / 6``) at three layers: one
    warning naming the layers and their count, as for the module (it named
    none)."""
    class HardSwish(nn.Module):
        def forward(self, x):
            return x * F.relu6(x + 3) / 6

    net = nn.Sequential(nn.Conv2d(2, 3, 3), HardSwish(), nn.Conv2d(3, 3, 1), HardSwish(),
                        nn.Conv2d(3, 2, 1), HardSwish())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        SignedGraph.from_module(net.eval(), (2, 6, 6))
    (message,) = [str(x.message) for x in w if "non-decreasing" in str(x.message)]
    assert message.startswith("activation hard-swish (written out) at 3 layers ('1:mul'")


class _CastMask(nn.Module):
    """``y`` times a 0/1 mask cast to a number: from another layer's output,
    its negation, or ``y``'s own sign (a ReLU written out)."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv, self.m, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        mask = {"other": lambda: self.m(y) > 0, "negated": lambda: ~(self.m(y) > 0),
                "own": lambda: y > 0}[self.how]()
        return self.head(y * mask.to(y.dtype))


@pytest.mark.parametrize("how", ["other", "negated"])
def test_a_mask_cast_to_a_number_is_a_gate(how):
    """``y * (m(y) > 0).float()`` is ``where(m(y) > 0, y, 0)``, a gate of values 0
    and 1 (SPEC §1b): the conv and head alone, ``m`` left out (it was refused at
    the comparison); ``y * (y > 0).float()``, a ReLU written out, stays refused."""
    torch.manual_seed(0)
    net = _CastMask(how)
    g, A = _dense(net, (2, 5, 5))
    _, B = _dense(nn.Sequential(net.conv, net.head), (2, 5, 5))
    np.testing.assert_allclose(A, B, rtol=1e-12)
    assert g.meta["gates"] and [r["block"] for r in g.meta["left_out"]] == ["m"]
    with pytest.raises(UnsupportedLayerError, match="comparison"):
        _dense(_CastMask("own"), (2, 5, 5))



def test_an_op_written_out_is_read_as_written_in_a_program_that_writes_into_a_view():
    """A program that writes into a view (``y[:, :1] *= 2``) is functionalized
    before it is read, and its ``var_mean`` written out there (once): it keeps
    to ``torch.export``'s ops, and its path sums are those of the conv with
    one channel doubled, then the head (the normalization a positive
    rescaling, its centring ignored: SPEC §1b)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            v, m = torch.var_mean(y, (1, 2, 3), keepdim=True)
            y = ((y - m) / torch.sqrt(v + 1e-5)).clone()
            y[:, :1] *= 2
            return self.head(y)

    torch.manual_seed(0)
    net = Net()
    g, _ = _dense(net, (2, 5, 5))
    assert g.meta["rules"]["capture"] == "torch.export"
    doubled = nn.Conv2d(2, 3, 3).double()
    with torch.no_grad():
        doubled.weight.copy_(net.conv.weight * torch.tensor([2.0, 1, 1]).view(3, 1, 1, 1))
        doubled.bias.copy_(net.conv.bias)
    h, _ = _dense(nn.Sequential(doubled, net.head), (2, 5, 5))
    np.testing.assert_allclose(path_sums(g)[g.output_index], path_sums(h)[h.output_index],
                               atol=1e-12)

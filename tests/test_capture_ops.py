"""Elementwise functions and resampling ops that the capture accepts (SPEC §1,
§1b): an elementwise function adds no nodes and no edges (warned once by name
where it is not non-decreasing); an antialiased interpolation is a separable
linear resampling whose weights are read off the op.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from jacobian import assert_is_jacobian, path_sums

from deepglass.errors import DeepglassError, UnsupportedLayerError
from deepglass.graph import NonMonotoneActivationWarning, SignedGraph


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _net(act):
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 2)).double().eval()


def _graph(net, shape, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g = SignedGraph.from_module(net, shape, dtype=torch.float64, **kw)
    return g, [str(x.message) for x in w if issubclass(x.category, NonMonotoneActivationWarning)]


ELEMENTWISE = [
    # (name, function, non-decreasing)
    ("sin", torch.sin, False),                         # SIREN
    ("cos", torch.cos, False),
    ("atan", torch.atan, True),
    ("arctan", torch.arctan, True),
    ("sinh", torch.sinh, True),
    ("asinh", torch.asinh, True),
    ("arcsinh", torch.arcsinh, True),
    ("erf", torch.erf, True),
    ("log1p", lambda x: torch.log1p(torch.relu(x)), True),
    ("log", lambda x: torch.log(torch.relu(x) + 1e-6), True),   # a log compression
    ("log2", lambda x: torch.log2(torch.relu(x) + 1.0), True),
    ("sign", torch.sign, True),
]


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("name,fn,monotone", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
def test_elementwise_function_adds_no_nodes_or_edges(name, fn, monotone, capture):
    g_relu, w_relu = _graph(_net(nn.ReLU()), (3,), capture=capture)
    g, w = _graph(_net(_Fn(fn)), (3,), capture=capture)
    assert not w_relu
    assert (g.n_nodes, g.n_edges) == (g_relu.n_nodes, g_relu.n_edges)
    assert (g.to_scipy() != g_relu.to_scipy()).nnz == 0
    if monotone:
        assert not w
    else:
        assert len(w) == 1 and f"activation {name} " in w[0], w


def test_non_monotone_function_warns_once_by_name():
    net = nn.Sequential(nn.Linear(3, 4), _Fn(torch.sin), nn.Linear(4, 4), _Fn(torch.sin),
                        nn.Linear(4, 2)).double().eval()
    _, w = _graph(net, (3,))
    assert len(w) == 1 and "activation sin " in w[0], w


def test_a_non_monotone_activation_names_its_layers_and_a_refusal_warns_nothing():
    """GELU in two layers warned once without naming either (a PReLU's warning
    named them); and a network then refused had its warnings printed before
    the refusal."""
    class Net(nn.Module):
        def __init__(self, refused=False):
            super().__init__()
            self.refused = refused
            self.a, self.b, self.c = nn.Conv1d(1, 2, 3), nn.Conv1d(2, 2, 3), nn.Conv1d(2, 2, 1)
            self.g1, self.g2 = nn.GELU(), nn.GELU()

        def forward(self, x):
            y = self.g2(self.b(self.g1(self.a(x))))
            return y * y.mean(1, keepdim=True) if self.refused else self.c(y)

    _, w = _graph(Net().double().eval(), (1, 16))
    assert w == ["activation GELU at 2 layers ('g1', 'g2') is not non-decreasing: the "
                 "monotonicity theorems (and near-monotonicity tests) assume non-decreasing "
                 "activations"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UnsupportedLayerError, match="product of two network values"):
            SignedGraph.from_module(Net(refused=True).eval(), (1, 16))
    assert not [x for x in caught if issubclass(x.category, NonMonotoneActivationWarning)]


class _Resize(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, x):
        return F.interpolate(x, **self.kw)


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(3, 5), (9, 11)])
def test_antialiased_interpolation_is_its_jacobian(mode, size, capture):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 2, 1), _Resize(size=size, mode=mode, antialias=True))
    g = assert_is_jacobian(net, (2, 6, 8), capture=capture)
    if size == (3, 5):
        # downsampling: antialias widens the filter, so the graph differs from plain mode
        plain = nn.Sequential(nn.Conv2d(2, 2, 1), _Resize(size=size, mode=mode)).double()
        plain[0].load_state_dict(net[0].state_dict())
        g_plain = SignedGraph.from_module(plain.eval(), (2, 6, 8), dtype=torch.float64,
                                          capture=capture)
        assert g.n_edges > g_plain.n_edges


def test_antialiased_bicubic_of_a_gate_is_not_a_non_negative_gate():
    """Bicubic weights have negative lobes: a sigmoid gate resampled by them
    may be negative, so it is not a positive rescaling (bilinear is)."""

    class Gated(nn.Module):
        def __init__(self, mode):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.mode = mode

        def forward(self, x):
            g = torch.sigmoid(self.conv(F.avg_pool2d(x, 2)))
            return x * F.interpolate(g, size=x.shape[2:], mode=self.mode, antialias=True)

    torch.manual_seed(0)
    lin, _ = _graph(Gated("bilinear").double().eval(), (2, 6, 8))
    assert lin.meta["gates"]
    with pytest.raises(UnsupportedLayerError, match="product of two network values"):
        _graph(Gated("bicubic").double().eval(), (2, 6, 8))


@pytest.mark.parametrize("pad, stride, groups", [((1, 2, 1, 2), 1, 1), ((0, 1, 2, 0), 2, 2),
                                                 ((1, 1, 1, 1), 2, 1)])
def test_zero_padding_before_a_transposed_convolution_adds_no_edges(pad, stride, groups):
    """``ZeroPad2d`` then ``ConvTranspose2d`` (PRNet's deconvolution block):
    the padded zeros are no nodes and carry no edges, the rest is the adjoint
    convolution's edges (it was refused); the graph is the Jacobian."""
    net = nn.Sequential(nn.Conv2d(2, 4, 1), nn.ZeroPad2d(pad),
                        nn.ConvTranspose2d(4, 2, 3, stride=stride, padding=1, groups=groups))
    g = assert_is_jacobian(net, (2, 4, 5))
    assert g.n_nodes == 2 * 4 * 5 + 4 * 4 * 5 + math.prod(net(torch.zeros(1, 2, 4, 5, dtype=torch.float64)).shape)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_pool_sizes_given_as_one_element_lists_repeat_over_the_spatial_dims(nd):
    """``F.avg_pool2d(x, [2])``: PyTorch repeats a one-element kernel or
    stride over every spatial dim; the graph is that of the integer form (it
    was refused, the rule reading a second element), the average's the
    Jacobian."""
    pool = {1: (F.avg_pool1d, F.max_pool1d), 2: (F.avg_pool2d, F.max_pool2d),
            3: (F.avg_pool3d, F.max_pool3d)}[nd]
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1]
    shape = (2,) + (7,) * nd

    def net(as_list, which):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.c = conv(2, 3, 1)

            def forward(self, x):
                k, s = ([2], [3]) if as_list else (2, 3)
                return pool[which](self.c(x), k, s)
        return Net()

    for which in (0, 1):
        a, b = (SignedGraph.from_module(net(v, which), shape) for v in (True, False))
        assert (a.n_nodes, a.n_edges) == (b.n_nodes, b.n_edges)
        assert (a.to_scipy() != b.to_scipy()).nnz == 0
    assert_is_jacobian(net(True, 0), shape)


class _Written(nn.Module):
    """``c2(f(c1(x)))`` with ``f`` an elementwise function written out, per
    channel parameters ``alpha`` available (Snake)."""

    def __init__(self, f):
        super().__init__()
        torch.manual_seed(0)
        self.f, self.c1, self.c2 = f, nn.Conv1d(1, 4, 5), nn.Conv1d(4, 2, 3)
        self.alpha = nn.Parameter(torch.rand(1, 4, 1) * 3 + 0.2)

    def forward(self, x):
        return self.c2(self.f(self, self.c1(x)))


WRITTEN = [
    # (name, function, warned as): read on a grid over [-6, 6] at every element
    ("snake", lambda m, h: h + torch.sin(m.alpha * h).pow(2) / m.alpha, None),
    # DAC's / BigVGAN's form: a factor computed from the weights on the way
    ("snake-reciprocal", lambda m, h: h + (m.alpha + 1e-9).reciprocal() *
     torch.sin(m.alpha * h).pow(2), None),
    ("x + sin(x)", lambda m, h: h + torch.sin(h), None),
    ("x - tanh(x)", lambda m, h: h - torch.tanh(h), None),
    ("mu-law", lambda m, h: torch.sign(h) * torch.log1p(255 * h.abs()), None),
    ("x - 2 tanh(x)", lambda m, h: h - 2 * torch.tanh(h), "sum of elementwise functions"),
    ("x cos(x)", lambda m, h: h * torch.cos(h), "x * cos at 'mul'"),
    # between points of an even grid, and beyond 6, it decreases
    ("x + 2 sin(10 pi x) / (10 pi)", lambda m, h: h + 2 * torch.sin(10 * math.pi * h) /
     (10 * math.pi), "sum of elementwise functions"),
    ("x - 2 relu(x - 8)", lambda m, h: h - 2 * torch.relu(h - 8), "sum of elementwise functions"),
    # a mean subtracted on the way: no function of each element alone
    ("x - 3 tanh(x - mean)", lambda m, h: h - 3 * torch.tanh(h - h.mean(1, keepdim=True)),
     "is not checked"),
]


@pytest.mark.parametrize("name,f,warned", WRITTEN, ids=[w[0] for w in WRITTEN])
def test_a_written_out_function_of_one_value_is_read_for_monotonicity(name, f, warned):
    """A sum or product of elementwise functions of one value (Snake ``x +
    sin(a x)^2 / a``, mu-law ``sign(x) log1p(255 |x|)``) is one activation:
    no edges, and one warning at its layer only where it decreases somewhere
    on the grid (Snake's derivative ``1 + sin(2 a x)`` is never negative); the
    ops inside it warn no more (``sin``, ``x ** 2``, ``abs`` were warned as if
    activations, and the sum as unchecked)."""
    g_ref, _ = _graph(_Written(lambda m, h: torch.relu(h)).double().eval(), (1, 16))
    g, w = _graph(_Written(f).double().eval(), (1, 16))
    assert (g.to_scipy() != g_ref.to_scipy()).nnz == 0
    if warned is None:
        assert not w, w
    else:
        assert len(w) == 1 and warned in w[0], w


class _Fold(nn.Module):
    """unfold -> fold: with stride = kernel the inverse of unfold (a re-indexing),
    with overlap an overlap-add (each output the sum of the patches covering it)."""

    def __init__(self, k, s, size=6):
        super().__init__()
        self.c = nn.Conv2d(2, 3, 3, padding=1)
        self.k, self.s, self.size = k, s, size
        self.fc = nn.Linear(3 * size * size, 4)

    def forward(self, x):
        p = F.unfold(self.c(x), self.k, stride=self.s)
        return self.fc(F.fold(2.0 * p, (self.size, self.size), self.k, stride=self.s).flatten(1))


class _WriteAt(nn.Module):
    """x[..., idx] = v and x[..., idx] += v at fixed positions."""

    def __init__(self, accumulate):
        super().__init__()
        self.c = nn.Conv1d(1, 2, 3)
        self.fc = nn.Linear(2 * 10, 3)
        self.accumulate = accumulate
        self.register_buffer("idx", torch.tensor([9, 7, 5, 3, 1, 1 if accumulate else 0]))

    def forward(self, x):
        y = self.c(x)
        z = y.new_zeros(y.shape[0], 2, 10)
        if self.accumulate:      # position 1 written twice: the two values add
            where = (torch.arange(y.shape[0])[:, None, None], torch.arange(2)[None, :, None],
                     self.idx[None, None, :])
            z = z.index_put(where, y, accumulate=True)
        else:
            z[:, :, self.idx] = y
        return self.fc(z.flatten(1))


@pytest.mark.parametrize("net, shape", [(_Fold(2, 2), (2, 6, 6)), (_Fold(3, 1), (2, 6, 6)),
                                        (_Fold(3, 2, 7), (2, 7, 7)), (_WriteAt(False), (1, 8)),
                                        (_WriteAt(True), (1, 8))],
                         ids=["fold-no-overlap", "fold-overlap", "fold-stride-2",
                              "write", "write-accumulate"])
def test_fold_and_writes_at_fixed_positions_are_their_jacobian(net, shape):
    """F.fold / nn.Fold and x[idx] = v were refused (index_put); they are sums of
    copies and re-indexings of the nodes written (SPEC §1)."""
    g = assert_is_jacobian(net.eval(), shape)
    assert g.n_edges > 0


class _MaskWrite(nn.Module):
    """x[..., mask] = v with a fixed boolean mask (its True positions, not 0 / 1)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(1, 4, 3)
        self.register_buffer("mask", torch.tensor([True, False, True, False,
                                                   False, True, False, True]))
        self.fc = nn.Linear(2 * 8, 3)

    def forward(self, x):
        y = self.c(x)                                   # (B, 4, 6)
        z = y.new_zeros(y.shape[0], 2, 8)
        z[:, :, self.mask] = 2 * y[:, :2, :4]
        return self.fc(z.flatten(1))


def test_a_boolean_mask_writes_at_its_true_positions():
    """A boolean index was converted to integers (positions 1, 0, 1, ...): a
    false 'written twice' here, a silently wrong graph elsewhere."""
    assert_is_jacobian(_MaskWrite().eval(), (1, 8))


class _Scatter(nn.Module):
    """torch.scatter / scatter_add / scatter_reduce at fixed positions along ``dim``,
    into zeros or into a value of the network (``on_value``)."""

    def __init__(self, op, dim=2, on_value=False, **kw):
        super().__init__()
        self.c = nn.Conv1d(1, 4, 3)
        self.fc = nn.Linear(4 * 10, 3)
        self.op, self.dim, self.on_value, self.kw = op, dim, on_value, kw
        if dim == 2:      # position 1 written twice where the op adds
            idx = [[9, 7, 5, 3, 1, 1 if op != "scatter" else 0]] * 4
        else:             # along the channels: rows 3, 0, (0 | 1)
            idx = [[3] * 6, [0] * 6, [0 if op != "scatter" else 1] * 6]
        self.register_buffer("idx", torch.tensor(idx))

    def forward(self, x):
        y = self.c(x)                                           # (B, 4, 6)
        base = (2.0 * F.pad(y, (0, 4)) if self.on_value
                else y.new_zeros(y.shape[0], 4, 10))            # (B, 4, 10)
        i = self.idx[None].expand(y.shape[0], -1, -1)
        # (autograd's Jacobian needs src of the index's shape; a larger src is
        # the next test)
        src = -3.0 * y[:, :i.shape[1]]
        if self.op == "scatter":
            z = base.scatter(self.dim, i, src)
        elif self.op == "scatter_add":
            z = base.scatter_add(self.dim, i, src)
        else:
            z = base.scatter_reduce(self.dim, i, src, **self.kw)
        return self.fc(z.flatten(1))


@pytest.mark.parametrize("net", [
    _Scatter("scatter"), _Scatter("scatter", on_value=True), _Scatter("scatter", dim=1),
    _Scatter("scatter_add"), _Scatter("scatter_add", on_value=True),
    _Scatter("scatter_add", dim=1, on_value=True),
    _Scatter("reduce", reduce="sum"), _Scatter("reduce", on_value=True, reduce="sum"),
    _Scatter("reduce", on_value=True, reduce="sum", include_self=False),
    _Scatter("reduce", on_value=True, reduce="mean"),
    _Scatter("reduce", on_value=True, reduce="mean", include_self=False),
    _Scatter("reduce", reduce="mean"), _Scatter("reduce", dim=1, reduce="mean",
                                                include_self=False)],
    ids=["set", "set-on-value", "set-dim1", "add", "add-on-value", "add-dim1", "sum",
         "sum-on-value", "sum-excluding-self", "mean-on-value", "mean-excluding-self",
         "mean-into-zeros", "mean-dim1"])
def test_scatters_at_fixed_positions_are_their_jacobian(net):
    """torch.scatter (a re-indexing), scatter_add and scatter_reduce's sum / mean
    (sums of copies, the mean's 1 / terms a fixed factor) were refused (SPEC §1)."""
    assert_is_jacobian(net, (1, 8))


def test_a_scatter_reads_the_part_of_a_larger_source_its_index_covers():
    """scatter(x, 1, index, src) with src larger than index reads src[:index's shape]."""
    class Larger(_Scatter):
        def forward(self, x):
            y = self.c(x)
            src = y if self.kw.get("whole") else y[:, :3]
            return self.fc(y.new_zeros(y.shape[0], 4, 10).scatter_add(
                1, self.idx[None].expand(y.shape[0], -1, -1), src).flatten(1))

    torch.manual_seed(0)
    net = Larger("scatter_add", dim=1, whole=True)
    cut = Larger("scatter_add", dim=1)
    cut.load_state_dict(net.state_dict())
    a, b = (SignedGraph.from_module(m.eval(), (1, 8), dtype=torch.float64).to_scipy()
            for m in (net, cut))
    assert a.shape == b.shape and abs(a - b).max() == 0 and a.nnz > 0


class _Cover(nn.Module):
    """Every position of a value written over (scatter_reduce without include_self),
    and constants written through an index list (x[:, :, idx] = 0, index_fill)."""

    def __init__(self, how):
        super().__init__()
        self.c, self.fc, self.how = nn.Conv1d(1, 2, 3), nn.Linear(12, 2), how
        self.register_buffer("idx", torch.tensor([1, 0, 3, 2, 5, 4]))

    def forward(self, x):
        y = self.c(x)                                           # (B, 2, 6)
        if self.how == "cover":
            z = y.scatter_reduce(2, self.idx.expand_as(y), 3 * y, "sum", include_self=False)
        elif self.how == "index-list":
            z = y.clone()
            z[:, :, self.idx[:2]] = 0.0
        else:
            z = y.index_fill(2, self.idx[:2], 0.0)
        return self.fc(z.flatten(1))


@pytest.mark.parametrize("how", ["cover", "index-list", "index_fill"])
def test_writes_over_every_position_or_of_constants_are_their_jacobian(how):
    """A base written over everywhere has nothing left (it was added as a value
    made only of padding, refused); a constant written through an index list was
    refused (only slice writes were padding)."""
    assert_is_jacobian(_Cover(how), (1, 8))


@pytest.mark.parametrize("reduce", ["amax", "prod"])
def test_a_maximum_or_product_of_scattered_elements_is_refused(reduce):
    with pytest.raises(UnsupportedLayerError, match=f"'{reduce}' of the elements written"):
        SignedGraph.from_module(_Scatter("reduce", on_value=True, reduce=reduce), (1, 8))


def test_a_scatter_twice_to_one_position_is_refused_a_constant_is_padding():
    class Twice(_Scatter):
        def forward(self, x):
            y = self.c(x)
            i = torch.zeros_like(y, dtype=torch.long)
            return y.new_zeros(y.shape[0], 4, 10).scatter(2, i, y)

    class Constant(_Scatter):
        def forward(self, x):
            y = self.c(x)
            return F.pad(y, (0, 4)).scatter(2, self.idx[None, :, :2], 1.0)

    with pytest.raises(UnsupportedLayerError, match="written twice"):
        SignedGraph.from_module(Twice("scatter"), (1, 8))
    # a constant written (it was refused): no node there, as zero padding
    assert_is_jacobian(nn.Sequential(Constant("scatter"), nn.Flatten(), nn.Linear(40, 2)), (1, 8))


def test_positions_computed_from_the_input_are_refused():
    class Unpool(nn.Module):       # max-unpooling: positions chosen by the input's values
        def forward(self, x):
            y, i = F.max_pool1d(x, 2, return_indices=True)
            return F.max_unpool1d(y, i, 2)

    with pytest.raises(DeepglassError, match="indices of a maximum|computed from the input"):
        SignedGraph.from_module(Unpool(), (1, 8))

    class InputScatter(nn.Module):   # positions read off the input's values
        def forward(self, x):
            return torch.zeros_like(x).scatter_add(2, x.long().clamp(0, 7), x)

    with pytest.raises(DeepglassError, match="scatter_add.*computed from the input"):
        SignedGraph.from_module(InputScatter(), (1, 8))


def test_a_frozen_batch_norm_follows_the_batchnorm_option():
    """torchvision's / timm's FrozenBatchNorm2d computes x * scale + shift from its
    buffers: folded as a batch norm (sign included) with batchnorm="fold", and
    ignored as one with batchnorm="ignore" (its negative gains still flipped edges)."""
    class FrozenBatchNorm2d(nn.Module):
        def __init__(self, bn):
            super().__init__()
            for k in ("weight", "bias", "running_mean", "running_var"):
                self.register_buffer(k, getattr(bn, k).detach().clone())
            self.eps = bn.eps

        def forward(self, x):
            scale = self.weight.reshape(1, -1, 1, 1) * \
                (self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
            return x * scale + (self.bias.reshape(1, -1, 1, 1)
                                - self.running_mean.reshape(1, -1, 1, 1) * scale)

    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([-2.0, 0.5, 3.0]))
        bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0]))
    conv, fc = nn.Conv2d(1, 3, 3), nn.Linear(3 * 36, 2)
    plain = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), fc).eval()
    frozen = nn.Sequential(conv, FrozenBatchNorm2d(bn), nn.ReLU(), nn.Flatten(), fc).eval()
    for mode in ("fold", "ignore"):
        a, b = (SignedGraph.from_module(m, (1, 8, 8), batchnorm=mode,
                                        dtype=torch.float64).to_scipy() for m in (plain, frozen))
        assert abs(a - b).max() < 1e-6, mode


class _Norm(nn.Module):
    """A layer norm over the last axis written out, its variance as
    ``mean((x - m) ** 2)`` (``centred``), ``mean(x ** 2) - m ** 2`` (``moments``),
    or ``sum(x ** 2) - sum(x) ** 2`` (``sums``, not a variance)."""

    def __init__(self, how, g):
        super().__init__()
        self.how, self.g = how, nn.Parameter(g)

    def forward(self, x):
        m = x.mean(-1, keepdim=True)
        if self.how == "centred":
            v = ((x - m) ** 2).mean(-1, keepdim=True)
        elif self.how == "moments":
            v = (x * x).mean(-1, keepdim=True) - m * m
        elif self.how == "moments-pow":
            v = x.pow(2).mean(-1, keepdim=True) - m.pow(2)
        elif self.how == "twice-the-mean":      # not a variance: negative at some inputs
            v = (x * x).mean(-1, keepdim=True) - (2 * m) ** 2
        elif self.how == "other-axis":          # the squares' mean over the sequence
            v = (x * x).mean(-2, keepdim=True).mean(-1, keepdim=True) - m * m
        elif self.how == "weighted":            # other weights than the mean's
            v = (x * x * torch.tensor([0.1, 0.1, 0.1, 3.7])).sum(-1, keepdim=True) - m * m
        else:
            v = (x * x).sum(-1, keepdim=True) - x.sum(-1, keepdim=True) ** 2
        return self.g * (x - m) / torch.sqrt(v + 1e-5)


class _CumulativeNorm(nn.Module):
    """A causal (cumulative) layer norm, as Conv-TasNet's cLN: the statistics of
    all channels up to each time step, its variance as mean(x^2) - mean(x)^2."""

    def __init__(self, g, gain_only=False):
        super().__init__()
        self.g, self.gain_only = nn.Parameter(g.reshape(1, -1, 1)), gain_only

    def forward(self, x):
        if self.gain_only:                      # the reference: the gain alone
            return self.g * x
        c, t = x.shape[1], x.shape[2]
        count = torch.arange(1, t + 1, dtype=x.dtype).reshape(1, 1, -1) * c
        mean = torch.cumsum(x.sum(1, keepdim=True), -1) / count
        if self.gain_only is None:          # the past's squares, the present's mean
            var = torch.cumsum(x.pow(2).sum(1, keepdim=True), -1) / count - \
                (x.sum(1, keepdim=True) / c).pow(2)
            return self.g * (x - mean) / (var + 1e-8).sqrt()
        var = torch.cumsum(x.pow(2).sum(1, keepdim=True), -1) / count - mean.pow(2)
        return self.g * (x - mean) / (var + 1e-8).sqrt()


@pytest.mark.parametrize("how", ["moments", "moments-pow"])
def test_a_variance_written_as_mean_of_squares_minus_squared_mean_is_a_norm(how):
    """mean(x^2) - mean(x)^2 >= 0 is the variance (Jensen): the layer norm that
    divides by it has the graph of the centred form (it was refused as a
    division by a network value)."""
    torch.manual_seed(3)
    a, b = nn.Linear(3, 4), nn.Linear(4, 2)
    g = torch.tensor([1.0, -0.5, 2.0, -1.5])
    ref, got = (SignedGraph.from_module(nn.Sequential(a, _Norm(h, g), nn.ReLU(), b).eval(),
                                        (5, 3), dtype=torch.float64).to_scipy()
                for h in ("centred", how))
    assert ref.nnz == got.nnz > 0 and abs(ref - got).max() == 0


@pytest.mark.parametrize("how", ["sums", "twice-the-mean", "other-axis", "weighted"])
def test_a_difference_of_moments_that_is_no_variance_rescales_nothing(how):
    """sum(x^2) - sum(x)^2, mean(x^2) - (2 mean(x))^2, means over other axes or
    with other weights are negative at some inputs: not a positive rescaling.
    (Without a bias the captured value is 0: its sign proves nothing.)"""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), _Norm(how, torch.ones(4))).eval()
    with pytest.raises(UnsupportedLayerError, match="division by a network value|sign "
                                                    "depends on the input"):
        SignedGraph.from_module(net, (5, 3))


def test_a_cumulative_layer_norm_is_a_rescaling_with_its_gain():
    """Conv-TasNet's causal cLN (cumulative sums of x and x^2 over channels and the
    past) was refused (cumsum): its statistics rescale, its gain folds in; the
    graph's path sums equal those of the gain alone (SPEC §1b)."""
    from jacobian import path_sums

    torch.manual_seed(4)
    g = torch.tensor([1.2, -0.7, 0.5, 2.0])
    graphs = []
    for gain_only in (False, True):
        torch.manual_seed(4)
        net = nn.Sequential(nn.Conv1d(1, 4, 3), _CumulativeNorm(g, gain_only), nn.ReLU(),
                            nn.Conv1d(4, 2, 3)).double().eval()
        graphs.append(SignedGraph.from_module(net, (1, 12), dtype=torch.float64))
    got, ref = graphs
    assert got.n_nodes == ref.n_nodes and got.n_edges == ref.n_edges
    out = next(iter(got.outputs.values()))      # (the gain folds in before or after h)
    np.testing.assert_allclose(path_sums(got)[out], path_sums(ref)[out], rtol=1e-9,
                               atol=1e-12)
    mixed = nn.Sequential(nn.Conv1d(1, 4, 3), _CumulativeNorm(g, None), nn.Conv1d(4, 2, 3))
    with pytest.raises(UnsupportedLayerError):      # no variance: negative at some inputs
        SignedGraph.from_module(mixed.eval(), (1, 12))


class _Sampler(nn.Module):
    """A VAE's reparameterization mu + eps * std, eps drawn in forward."""

    def __init__(self, how):
        super().__init__()
        self.e, self.d, self.how = nn.Linear(4, 6), nn.Linear(3, 2), how

    def forward(self, x):
        h = self.e(x)
        mu, std = h[:, :3], torch.exp(0.5 * h[:, 3:])
        eps = (torch.randn_like(std) if self.how == "randn_like" else
               torch.empty_like(std).normal_() if self.how == "normal_functional" else
               torch.randn(std.shape))
        if self.how == "unused":
            return self.d(mu)
        return self.d(mu + eps * std)


@pytest.mark.parametrize("how", ["randn_like", "randn", "normal_functional"])
def test_a_network_that_samples_at_inference_is_refused(how):
    """torch.randn(shape) in forward was a constant: the graph held one draw as a
    fixed factor, silently; randn_like was refused as an unknown op.  An in-place
    draw (x.new_empty(n).normal_()) is lowered to its functional form."""
    with pytest.raises(UnsupportedLayerError, match=rf"'{how}'.*draws random numbers"):
        SignedGraph.from_module(_Sampler(how).eval(), (4,))
    # a draw that reaches nothing does not matter
    assert SignedGraph.from_module(_Sampler("unused").eval(), (4,)).n_edges > 0


class _NoiseInjection(nn.Module):
    """StyleGAN's noise injection: a learned scale times a fresh draw of the
    feature map's shape, added to the features."""

    def __init__(self, how):
        super().__init__()
        self.c1, self.c2, self.how = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 1), how
        self.w = nn.Parameter(torch.full((1, 3, 1, 1), 0.1))

    def forward(self, x):
        y = self.c1(x)
        noise = torch.randn(y.shape[0], 1, y.shape[2], y.shape[3], dtype=y.dtype)
        if self.how == "added":
            y = y + self.w * noise
        elif self.how == "scaled":           # a draw that multiplies a value: refused
            y = y + y * noise
        return self.c2(y)


def test_input_independent_noise_added_to_a_value_is_a_bias():
    """SPEC §1: a bias has no edges; noise drawn without the input and added is
    one (the Jacobian does not depend on the draw).  It was refused as a
    network that samples at inference."""
    from jacobian import assert_is_jacobian

    torch.manual_seed(0)
    noisy = _NoiseInjection("added")
    plain = _NoiseInjection("none")
    plain.load_state_dict(noisy.state_dict())
    a, b = (SignedGraph.from_module(m.eval(), (2, 5, 5)) for m in (noisy, plain))
    assert a.n_edges == b.n_edges > 0 and abs(a.to_scipy() - b.to_scipy()).max() == 0
    assert_is_jacobian(noisy, (2, 5, 5))
    with pytest.raises(UnsupportedLayerError, match="'randn'.*draws random numbers"):
        SignedGraph.from_module(_NoiseInjection("scaled").eval(), (2, 5, 5))


class _Gather(nn.Module):
    def __init__(self, from_input=False):
        super().__init__()
        self.c, self.fc, self.from_input = nn.Conv1d(1, 3, 3), nn.Linear(3 * 6, 2), from_input
        self.register_buffer("idx", torch.tensor([[5, 0, 0, 2, 3, 1], [1, 1, 4, 2, 0, 5],
                                                  [0, 1, 2, 3, 4, 5]]))

    def forward(self, x):
        y = self.c(x)
        i = y.long().clamp(0, 5) if self.from_input else self.idx[None].expand(y.shape[0], -1, -1)
        return self.fc(torch.gather(y, 2, i).flatten(1))


def test_a_gather_at_fixed_positions_is_a_reindexing():
    """torch.gather with fixed indices (index_select's elementwise twin) was refused."""
    assert_is_jacobian(_Gather(), (1, 8))
    with pytest.raises(UnsupportedLayerError, match="gather.*computed from the input"):
        SignedGraph.from_module(_Gather(from_input=True).eval(), (1, 8))


class _AddToUnwritten(nn.Module):
    """A value added to a part of another that holds no node (zeros never written,
    a slice of zero padding): the sum is the value (SPEC §1: a constant adds none)."""

    def __init__(self, how):
        super().__init__()
        self.c, self.how = nn.Conv1d(1, 4, 3), how
        self.fc = nn.Linear(36 if how == "write then add" else 16, 3)

    def forward(self, x):
        y = self.c(x)                                       # (B, 4, 6)
        if self.how == "write then add":
            z = y.new_zeros(y.shape[0], 4, 3, 3)
            z[:, :, [0, 1, 2], [2, 1, 0]] = y[:, :, :3]     # the anti-diagonal written
            z[:, :, [0, 2], [0, 2]] += y[:, :, 3:5]         # corners, still zero
        else:
            z = F.pad(y, (0, 4))[:, :, 6:] + y[:, :, :4]
        return self.fc(z.flatten(1))


@pytest.mark.parametrize("how", ["write then add", "padding slice plus value"])
def test_a_value_added_to_a_part_without_nodes_is_that_value(how):
    """It was refused: 'layer add_ reads a value made only of padding'."""
    assert_is_jacobian(_AddToUnwritten(how), (1, 8))


class _GatedConcat(nn.Module):
    """Sums of gated copies of a concatenation whose parts went through different
    activations (smp's scSE on cat([upsampled decoder, skip]))."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.a, self.b = nn.Conv2d(2, 3, 1, bias=False), nn.Conv2d(2, 3, 1, bias=False)
        self.g, self.out = nn.Conv2d(2, 6, 1), nn.Conv2d(6, 1, 1, bias=False)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), self.b(x)], 1)
        s = torch.sigmoid(self.g(x))
        if self.kind == "y*g - y":
            y = y * s - y
        elif self.kind == "y*g1 + y*g2":
            y = y * s + y * torch.sigmoid(-self.g(x))
        else:
            y = 2 * y * s - y
        return self.out(y)


@pytest.mark.parametrize("kind, factor", [("y*g - y", -1.0), ("y*g1 + y*g2", 2.0),
                                          ("2 y g - y", None)])
def test_gated_copies_of_a_concatenation_of_several_activations_keep_their_factor(kind, factor):
    """They were taken for a sum of different elementwise functions: factor +1, the
    gates' range dropped (y g - y had its edges' signs flipped; either-signed
    2 y g - y was accepted).  The README's rule: the bound of largest magnitude."""
    torch.manual_seed(0)
    net = _GatedConcat(kind).double().eval()
    if factor is None:
        with pytest.raises(UnsupportedLayerError, match="sum of gated copies"):
            SignedGraph.from_module(net, (2, 1, 1), dtype=torch.float64)
        return
    g = SignedGraph.from_module(net, (2, 1, 1), dtype=torch.float64)
    A = g.to_scipy().toarray()
    parts = sorted((nb for nb in g.node_blocks if nb.name in ("a", "b")), key=lambda nb: nb.name)
    dst = g.node_blocks[-1].offset
    got = np.concatenate([A[nb.offset:nb.stop, dst] for nb in parts])
    np.testing.assert_allclose(got, factor * net.out.weight.detach().numpy().ravel())


class _ConstantReduce(nn.Module):
    """scatter_reduce of a constant source into a value (position 1 written twice)."""

    def __init__(self, reduce, include_self):
        super().__init__()
        self.c, self.fc = nn.Conv1d(1, 2, 3), nn.Linear(12, 2)
        self.reduce, self.include_self = reduce, include_self
        self.register_buffer("idx", torch.tensor([[1, 1, 3]] * 2))

    def forward(self, x):
        y = self.c(x)
        src = torch.full((y.shape[0], 2, 3), 2.0, dtype=y.dtype)
        return self.fc(y.scatter_reduce(2, self.idx[None].expand(y.shape[0], -1, -1), src,
                                        self.reduce, include_self=self.include_self).flatten(1))


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("include_self", [True, False])
def test_a_constant_scattered_into_a_value_by_a_reduction_is_its_jacobian(reduce, include_self):
    """Only a sum that keeps the base is the base plus a bias; a mean rescales it,
    and without include_self the written positions hold the constant alone."""
    assert_is_jacobian(_ConstantReduce(reduce, include_self), (1, 8))


class _AdaIN(nn.Module):
    """Content features normalized, times a standard deviation: the style
    input's (AdaIN's scale) or the content's own (a normalization)."""

    def __init__(self, own: bool):
        super().__init__()
        self.enc, self.enc_s, self.dec = (nn.Conv2d(3, 4, 3, padding=1),
                                          nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 3, 1))
        self.own = own

    def forward(self, content, style):
        fc, fs = self.enc(content), self.enc_s(style)
        t = (fc - fc.mean((2, 3), keepdim=True)) / (fc.std((2, 3), keepdim=True) + 1e-5)
        return self.dec(t * (fc if self.own else fs).std((2, 3), keepdim=True))


def test_a_statistic_of_another_inputs_values_is_no_normalization():
    """AdaIN's ``t * std(style features)`` was taken as a positive rescaling:
    the style input had no edges and its branch was not even listed as left
    out; a statistic of the sample's own values still rescales."""
    shapes = [(3, 6, 6), (3, 6, 6)]
    with pytest.raises(UnsupportedLayerError, match="product of two network values"):
        SignedGraph.from_module(_AdaIN(own=False).eval(), shapes)
    g = SignedGraph.from_module(_AdaIN(own=True).eval(), shapes)
    assert g.n_edges > 0


@pytest.mark.parametrize("how", ["topk", "sort"])
def test_a_selection_by_value_is_refused_saying_so(how):
    """k-nearest-neighbour grouping (topk) and sorting got the generic list of
    supported ops."""

    class Select(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(3, 4, 1)

        def forward(self, x):
            y = self.c(x)
            return y.topk(3, dim=-1).values if how == "topk" else y.sort(-1).values

    with pytest.raises(UnsupportedLayerError, match=rf"'{how}' \(selection by value\)"):
        SignedGraph.from_module(Select().eval(), (3, 16))


@pytest.mark.parametrize("samples", [False, True])
def test_fractional_max_pooling_is_refused_saying_so(samples):
    """Fractional max pooling draws its regions at random (per channel, or from
    fixed ``_random_samples``): it got a VAE's message about sampling, or the
    generic list of supported ops."""
    fixed = torch.rand(1, 4, 2, generator=torch.Generator().manual_seed(0)) if samples else None
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),
                        nn.FractionalMaxPool2d(2, output_size=(5, 5), _random_samples=fixed),
                        nn.Flatten(), nn.Linear(100, 5)).eval()
    with pytest.raises(UnsupportedLayerError,
                       match=r"'1' \(fractional max pooling\): its pooling regions are drawn "
                             r"at random.*AdaptiveMaxPool"):
        SignedGraph.from_module(net, (3, 8, 8))


class _PReLUWrittenOut(nn.Module):
    """A PReLU as TensorFlow's exporters write it: relu(y) + a * relu(-y) (a <= 0
    per channel: slope -a below zero)."""

    def __init__(self, negate=True):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 3, 3, bias=False), nn.Conv2d(3, 2, 3, bias=False)
        self.negate = negate
        self.register_buffer("a", -torch.linspace(0.05, 0.3, 3).reshape(1, 3, 1, 1))

    def forward(self, x):
        y = self.c1(x)
        return self.c2(torch.relu(y) + self.a * torch.relu(-y if self.negate else y))


def test_a_prelu_written_out_is_one_activation():
    """relu(y) and relu(-y) were taken for one function of y, so their sum was
    read as a rescaling of y by 1 + |a| (13 % off): two functions of the same
    nodes make one more activation, linearized as any (SPEC §1b: no edges,
    weight 1).  relu(y) + a * relu(y) is still the rescaling (1 + a) relu(y)."""
    torch.manual_seed(0)
    net = _PReLUWrittenOut().double().eval()
    plain = nn.Sequential(net.c1, net.c2)
    a, b = (SignedGraph.from_module(m, (2, 7, 7), dtype=torch.float64) for m in (net, plain))
    assert a.n_nodes == b.n_nodes and abs(a.to_scipy() - b.to_scipy()).max() < 1e-12
    same = _PReLUWrittenOut(negate=False).double().eval()
    same.load_state_dict(net.state_dict())
    _assert_two_convs_with_factor(same, (1 + net.a).reshape(3))


def _assert_two_convs_with_factor(net, factor):
    """``net`` (convolutions ``c1``, ``c2`` with a function of ``c1``'s output
    between) has the path sums of ``c2(factor * c1(x))``."""
    g = SignedGraph.from_module(net, (2, 7, 7), dtype=torch.float64)
    ref = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.Conv2d(3, 2, 3, bias=False)).double()
    with torch.no_grad():
        ref[0].weight.copy_(net.c1.weight)
        ref[1].weight.copy_(net.c2.weight * factor.reshape(1, 3, 1, 1))
    r = SignedGraph.from_module(ref, (2, 7, 7), dtype=torch.float64)
    np.testing.assert_allclose(path_sums(g)[g.output_index], path_sums(r)[r.output_index],
                               rtol=1e-12, atol=1e-14)


class _GroupedWeights(nn.Module):
    """Products with one fixed matrix per batch entry."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        torch.manual_seed(3)
        if how == "grouped":          # x (B, G, N, D) @ W (G, D, E)
            self.w = nn.Parameter(torch.randn(3, 6, 4))
        elif how == "local":          # a locally connected layer
            self.w = nn.Parameter(torch.randn(5, 3, 6, 6))
        elif how == "weight-left":    # W (G, E, N) @ x (B, G, N, D)
            self.w = nn.Parameter(torch.randn(3, 4, 6))
        elif how in ("equal", "broadcast"):    # the same matrix in every group; x @ W over G
            self.w = nn.Parameter(torch.randn(6, 4).repeat(3, 1, 1) if how == "equal"
                                  else torch.randn(3, 6, 4))
        else:                         # baddbmm with a bias and alpha
            self.w, self.b = nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(1, 5, 4))

    def forward(self, x):
        if self.how in ("grouped", "equal"):
            return torch.matmul(x, self.w)
        if self.how == "broadcast":
            return torch.matmul(x.unsqueeze(1), self.w)
        if self.how == "local":
            return torch.einsum("bchw,ochw->bohw", x, self.w)
        if self.how == "weight-left":
            return torch.matmul(self.w, x)
        return torch.baddbmm(self.b, x, self.w.expand(x.shape[0], -1, -1), alpha=0.5)


@pytest.mark.parametrize("how, shape", [("grouped", (3, 6, 6)), ("local", (3, 6, 6)),
                                        ("weight-left", (3, 6, 5)), ("baddbmm", (5, 6)),
                                        ("equal", (3, 6, 6)), ("broadcast", (5, 6))])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_products_with_a_fixed_matrix_per_batch_entry(how, shape, capture):
    """A grouped linear layer (x @ W, W of (G, D, E)), a locally connected layer
    (einsum 'bchw,ochw->bohw') and baddbmm were refused as "a batched product of
    network values ... has no fixed weights"; W is a parameter: a dense layer per
    group, the edges of a grouped 1x1 convolution."""
    g = assert_is_jacobian(_GroupedWeights(how), shape, capture)
    per_group = {"grouped": 3 * 6 * 6 * 4, "local": 36 * 3 * 5, "weight-left": 3 * 4 * 6 * 5,
                 "baddbmm": 5 * 6 * 4, "equal": 3 * 6 * 6 * 4, "broadcast": 3 * 5 * 6 * 4}[how]
    if capture == "export":              # (core ATen writes alpha as a layer of its own)
        assert g.n_edges == per_group    # no zero-weight edges between groups


class _OneFunction(nn.Module):
    """Elementwise functions of one value written with two terms."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.c1, self.c2 = nn.Conv2d(2, 3, 3, bias=False), nn.Conv2d(3, 2, 3, bias=False)
        self.register_buffer("g", torch.tensor([0.5, 2.0, -1.5]).reshape(1, 3, 1, 1))

    def forward(self, x):
        y = self.c1(x)
        z = {"scaled": lambda: self.g * torch.relu(y) - self.g * 0.2 * torch.relu(-y),
             "twice": lambda: 2 * torch.relu(y) - 2 * torch.relu(-y),
             "negated": lambda: torch.relu(-y) - torch.relu(y),
             "leaky-max": lambda: torch.maximum(y, 0.1 * y),
             "leaky-module": lambda: F.leaky_relu(y, 0.1)}[self.how]()
        return self.c2(z)


@pytest.mark.parametrize("how, factor", [("scaled", "g"), ("twice", 2.0), ("negated", -1.0),
                                         ("leaky-max", 1.0), ("leaky-module", 1.0)])
def test_a_function_written_with_two_terms_keeps_its_factor(how, factor):
    """A sum of two functions of one value was read as an activation of factor
    1 whatever the terms' factors: g * PReLU(y) written out lost g, and
    relu(-y) - relu(y) (= -y) came out as +y; maximum(y, 0.1 y) was refused as
    a maximum of two values.  A sum of ReLU terms keeps the factor of the
    larger one (other sums, x - 2 tanh(x), stay activations of factor 1)."""
    torch.manual_seed(0)
    net = _OneFunction(how).double().eval()
    _assert_two_convs_with_factor(net, net.g.reshape(3) if factor == "g" else
                                  torch.full((3,), factor, dtype=torch.float64))


class _Grayscale(nn.Module):
    """kornia's ``rgb_to_grayscale``: ``addcmul(addcmul(r * wr, g, wg), b, wb)``,
    the weights a buffer; or the same mix written with ``+`` and ``*``."""

    def __init__(self, addcmul=True):
        super().__init__()
        self.addcmul = addcmul
        self.register_buffer("w", torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64))
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        r, g, b = x.unbind(1)
        wr, wg, wb = self.w.unbind()
        if self.addcmul:
            out = torch.addcmul(torch.addcmul(r * wr, g, wg), b, wb)
        else:
            out = r * wr + g * wg + b * wb
        return self.conv(out.unsqueeze(1))


def test_addcmul_of_a_network_value_and_a_fixed_weight_adds_to_a_value():
    """``addcmul(v, x, w)`` with ``v`` a network value was refused ('only b + v
    * a * x with fixed a and b'), so kornia's grayscale conversion was; it is
    ``v + w x``, the graph of the same mix written with + and *."""
    torch.manual_seed(0)
    a, b = _Grayscale().double(), _Grayscale(addcmul=False).double()
    b.load_state_dict(a.state_dict())
    ga, gb = assert_is_jacobian(a, (3, 4, 4)), assert_is_jacobian(b, (3, 4, 4))
    assert (ga.n_nodes, ga.n_edges) == (gb.n_nodes, gb.n_edges) == \
        (48 + 16 + 32, 3 * 16 + 2 * 10 * 10)
    with pytest.raises(UnsupportedLayerError, match="product of two network values"):
        SignedGraph.from_module(_Fixed2(), (3, 4, 4))


class _Fixed2(nn.Module):
    def forward(self, x):                   # b + x * x: no fixed weight
        return torch.addcmul(x, x, x)


class _Guarded(nn.Module):
    """A descriptor normalized with a guard against zero vectors (kornia's
    ``_l2_normalize``): ``where(|x|.amax(1) == 0, 0, F.normalize(x))``, or
    ``masked_fill`` / ``where(mask, x, 0)`` forms, or ``where(mask, 1, x)``
    (not a zero: no gate)."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        d = self.fc(x)
        if self.how == "plain":
            return F.normalize(d, dim=1)
        zero = d.abs().amax(dim=1, keepdim=True) == 0
        y = F.normalize(d, dim=1)
        if self.how == "where":
            return torch.where(zero, torch.zeros_like(y), y)
        if self.how == "masked_fill":
            return y.masked_fill(zero, 0.0)
        if self.how == "where_x_first":
            return torch.where(~zero, y, 0.0)
        return torch.where(zero, 1.0, y)


@pytest.mark.parametrize("how", ["where", "masked_fill", "where_x_first"])
def test_a_mask_from_the_input_that_zeroes_a_value_is_a_gate(how):
    """A mask computed from the input that zeroes a value, ``x * (1 - mask)``,
    is a gate of values 0 and 1 (SPEC §1b): kornia's HardNet was refused at
    the comparison, after warning of the guard's ``abs``.  The graph is that
    of the unguarded net, with no warning; a mask choosing a constant other
    than 0 stays refused."""
    torch.manual_seed(0)
    ref, net = _Guarded("plain").double(), _Guarded(how).double()
    net.load_state_dict(ref.state_dict())
    (a, _), (b, w) = _graph(ref.eval(), (6,)), _graph(net.eval(), (6,))
    assert not w
    np.testing.assert_allclose(b.to_scipy().toarray(), a.to_scipy().toarray(), rtol=1e-12)
    with pytest.raises(UnsupportedLayerError, match="comparison"):
        SignedGraph.from_module(_Guarded("one").eval(), (6,))

    class Written(nn.Module):          # where(y > 0, y, 0): a ReLU, an activation, no gate
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 5)

        def forward(self, x):
            y = self.fc(x)
            return torch.where(y > 0, y, torch.zeros_like(y))

    with pytest.raises(UnsupportedLayerError, match="comparison.*as its module"):
        SignedGraph.from_module(Written().eval(), (6,))


def test_a_gate_s_branch_warns_nothing():
    """``y * sigmoid(gelu(z))``: the gate's branch is left out of the graph, and
    so are the warnings of what only it reads (it warned of GELU)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = nn.Conv1d(2, 3, 1), nn.Conv1d(2, 3, 1), nn.Conv1d(3, 2, 1)

        def forward(self, x):
            return self.c3(self.c1(x) * torch.sigmoid(F.gelu(self.c2(x))))

    g, w = _graph(Net().double().eval(), (2, 4))
    assert not w and [r["block"] for r in g.meta["left_out"]] == ["c2"]


class _MaskBranch(nn.Module):
    """``where(mask, 0, y)`` with the mask computed by layers from ``y``:
    straight from a conv, through a ReLU and a second conv, or from a conv
    whose output is also added to the result (then in the graph)."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.c, self.g, self.h = nn.Conv1d(2, 3, 1), nn.Conv1d(3, 3, 1), nn.Conv1d(3, 3, 1)

    def forward(self, x):
        y = self.c(x)
        z = self.g(y)
        if self.how == "direct":
            return torch.where(z > 0, 0.0, y)
        if self.how == "two":
            return torch.where(self.h(torch.relu(z)) > 0, 0.0, y)
        return torch.where(z > 0, 0.0, y) + z


@pytest.mark.parametrize("how, left", [("direct", ["g"]), ("two", ["g", "h"]), ("added", [])])
def test_the_layers_of_a_mask_s_branch_are_listed_as_left_out(how, left):
    """The layers that compute a mask are the gate's branch, left out and
    listed with their weights (SPEC §1b): a conv read only by the comparison
    was never made nodes and was missing from ``meta["left_out"]``; one that
    is also a value of the graph is not left out."""
    torch.manual_seed(0)
    g, _ = _graph(_MaskBranch(how).double().eval(), (2, 4))
    assert g.meta["gates"]
    rows = g.meta.get("left_out", [])
    assert [r["block"] for r in rows] == left
    assert all(r["op"] == "conv" and r["params"] == 9 and r["nodes"] == 12 for r in rows)

"""Values and the batch axis. One sample's values regrouped as a batch of
rows (a decoder shared by the sources a separation net estimates,
``decoder(y.view(B * S, C, T))``): a layer at every row is the layer of one
more dimension, of extent 1 along the rows; checked against the Jacobian, and
against the twin that writes that layer out (same graph, same active
subnetworks). One number per sample (a timestep, shape ``(B,)``): an input of
shape ``()``. The batch axis followed through ``permute`` / ``view``: a
statistic over it, wherever it was moved, is refused; a sample's own, in a
loop over the batch, is a per-sample centring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from jacobian import assert_is_jacobian
from test_capture_ops import _Fn
from test_capture_rewrites import _dense

from deepglass.errors import UnsupportedLayerError
from deepglass.experiments.active import active_subgraph
from deepglass.graph import SignedGraph


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 3, 3, padding=1)

    def forward(self, y):
        return self.conv(y) + y


ROW_LAYERS = {
    "conv1d": lambda: nn.Conv1d(3, 2, 3, stride=2, padding=1),
    "conv1d_same_dilated": lambda: nn.Conv1d(3, 2, 3, padding="same", dilation=2),
    "conv_transpose1d": lambda: nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1),
    "avg_pool1d": lambda: nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False),
    "adaptive_avg_pool1d": lambda: nn.AdaptiveAvgPool1d(4),
    "linear": lambda: nn.Linear(7, 4),
    "upsample_linear1d": lambda: nn.Upsample(scale_factor=2, mode="linear"),
    "mean1d": lambda: _Fn(lambda y: y.mean(-1)),
    "sum_channels1d": lambda: _Fn(lambda y: y.sum(1, keepdim=True)),
    "residual_conv1d": _Residual,
    "upsample_bilinear2d": lambda: nn.Upsample(scale_factor=2, mode="bilinear"),
    "conv2d": lambda: nn.Conv2d(3, 2, 3, stride=2, padding=1),
    "conv2d_reflect": lambda: nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect"),
    "depthwise2d": lambda: nn.Conv2d(3, 3, 3, padding=1, groups=3),
    "conv_transpose2d": lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1,
                                                   output_padding=1),
    "batchnorm_conv2d": lambda: nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1)),
}


class _Rows(nn.Module):
    """Three branches stacked as rows, one layer applied to every row, the
    rows summed back: ``layer(stack([a x, b x, -a x]).flatten(0, 1))``."""

    def __init__(self, layer, dims):
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.a, self.b = conv(1, 3, 3, padding=1), conv(1, 3, 3, padding=1)
        self.layer = layer

    def forward(self, x):
        rows = torch.stack([self.a(x), self.b(x), -self.a(x)], 1)
        y = self.layer(rows.flatten(0, 1))
        return y.unflatten(0, (x.shape[0], 3)).sum(1)


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("name", sorted(ROW_LAYERS))
def test_a_layer_on_values_regrouped_as_rows_is_the_jacobian(name, capture):
    torch.manual_seed(0)
    layer = ROW_LAYERS[name]()
    for m in layer.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
    dims = 1 if "1d" in name or name == "linear" else 2
    assert_is_jacobian(_Rows(layer, dims), (1, 7) if dims == 1 else (1, 5, 6), capture)


class _Separation(nn.Module):
    """A ConvTasNet in miniature: an encoder, a mask per source (a sigmoid
    gate), a max pool and one transposed-convolution decoder shared by the
    sources, applied to the sources as rows of a batch (``twin=False``) or
    written as the 2-d layers with kernel 1 along the sources (``twin=True``)."""

    def __init__(self, twin=False, S=2, N=4):
        super().__init__()
        self.twin, self.S, self.N = twin, S, N
        self.enc = nn.Conv1d(1, N, 4, stride=2)
        self.mask = nn.Conv1d(N, N * S, 3, padding=1)
        self.dec = nn.ConvTranspose1d(N, 1, 4, stride=2)
        self.pool2d = nn.MaxPool2d((1, 2), (1, 1))
        self.dec2d = nn.ConvTranspose2d(N, 1, (1, 4), stride=(1, 2))

    def forward(self, x):
        B = x.shape[0]
        w = torch.relu(self.enc(x))
        masked = w.unsqueeze(1) * torch.sigmoid(self.mask(w)).view(B, self.S, self.N, -1)
        if not self.twin:
            y = self.dec(torch.relu(nn.functional.max_pool1d(
                masked.view(B * self.S, self.N, -1), 2, 1)))
            return y.view(B, self.S, -1)
        y = self.dec2d(torch.relu(self.pool2d(masked.transpose(1, 2))))
        return y.transpose(1, 2).reshape(B, self.S, -1)


def test_a_decoder_shared_by_sources_is_the_layer_written_out():
    torch.manual_seed(0)
    net = _Separation().eval()
    twin = _Separation(twin=True).eval()
    twin.load_state_dict(net.state_dict())
    with torch.no_grad():
        twin.dec2d.weight.copy_(net.dec.weight.unsqueeze(2))
        twin.dec2d.bias.copy_(net.dec.bias)
        x = torch.randn(3, 1, 32)
        torch.testing.assert_close(twin(x), net(x))
    g, h = (SignedGraph.from_module(m, (1, 32)) for m in (net, twin))
    assert [nb.shape for nb in g.node_blocks] == [nb.shape for nb in h.node_blocks]
    assert [nb.shape for nb in g.node_blocks][2:] == [(4, 2, 14), (1, 2, 30)]
    A, B = g.to_scipy(), h.to_scipy()
    assert (A != B).nnz == 0 and A.nnz == g.n_edges == 4 * 2 * 14 * 2 + 4 * 2 * 14 * 4 + 4 * 15 * 4
    np.testing.assert_array_equal(g.output_index, h.output_index)
    a, b = active_subgraph(g, net, x), active_subgraph(h, twin, x)
    np.testing.assert_array_equal(a.pred, b.pred)
    np.testing.assert_array_equal(a.keep, b.keep)
    for k in range(len(x)):
        assert (a.subgraph(k).to_scipy() != b.subgraph(k).to_scipy()).nnz == 0


def test_a_3d_layer_on_values_regrouped_as_rows_is_refused_in_one_line():
    class Rows3d(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.layer = nn.Conv3d(1, 2, 1), nn.Conv3d(2, 2, 3, padding=1)

        def forward(self, x):
            y = self.layer(torch.stack([self.a(x), -self.a(x)], 1).flatten(0, 1))
            return y.unflatten(0, (x.shape[0], 2)).sum(1)

    with pytest.raises(UnsupportedLayerError, match="'layer'.*3-d values regrouped as a batch "
                       "of rows") as exc:
        SignedGraph.from_module(Rows3d().eval(), (1, 3, 3, 3))
    assert "\n" not in str(exc.value)


class _GatedRows(nn.Module):
    """A squeeze-excitation gate at every row; ``gate=False``: the net without it."""

    def __init__(self, gate=True):
        super().__init__()
        self.gate = gate
        self.a, self.b = nn.Conv1d(1, 3, 3, padding=1), nn.Conv1d(1, 3, 3, padding=1)
        self.se, self.out = nn.Conv1d(3, 3, 1), nn.Conv1d(3, 2, 1)

    def forward(self, x):
        h = torch.relu(torch.stack([self.a(x), self.b(x)], 1).flatten(0, 1))
        if self.gate:
            h = h * torch.sigmoid(self.se(h.mean(-1, keepdim=True)))
        return self.out(h).reshape(x.shape[0], -1)


def test_a_gate_at_every_row_is_a_positive_rescaling():
    torch.manual_seed(0)
    net, plain = _GatedRows().eval(), _GatedRows(gate=False).eval()
    plain.load_state_dict(net.state_dict())
    g, h = (SignedGraph.from_module(m, (1, 5)) for m in (net, plain))
    assert (g.to_scipy() != h.to_scipy()).nnz == 0
    assert [d["block"] for d in g.meta["left_out"]] == ["mean", "se"]


class _Timestep(nn.Module):
    """A denoiser's two inputs: an image and one number per sample (its
    timestep, shape ``(B,)``), embedded by fixed frequencies and a dense
    layer and added to every position of the image's features."""

    def __init__(self):
        super().__init__()
        self.conv, self.lin, self.out = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(3, 4), nn.Conv2d(4, 2, 1)
        self.register_buffer("freqs", torch.tensor([1.0, 0.1, -0.01]))

    def forward(self, x, t):
        e = t[:, None] * self.freqs[None]
        return self.out(self.conv(x) + self.lin(e)[:, :, None, None])


def test_one_number_per_sample_is_an_input_of_shape_empty():
    """``input_shape=[(2, 5, 5), ()]``: the timestep is an input block of one
    node (it was refused: 'input shape must be positive integers, got ()')."""
    g = assert_is_jacobian(_Timestep(), [(2, 5, 5), ()])
    assert [nb.shape for nb in g.node_blocks[:2]] == [(2, 5, 5), ()]


def test_the_cli_and_an_onnx_file_take_one_number_per_sample(cli, tmp_path, monkeypatch):
    import io
    import json
    import warnings

    torch.manual_seed(0)
    net = _Timestep().eval()
    want = SignedGraph.from_module(net, [(2, 5, 5), ()])
    (tmp_path / "denoiser.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom test_capture_batch_axis import _Timestep\n"
        % str(__import__("pathlib").Path(__file__).parent))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["graph", "w.pt", "--arch", "denoiser:_Timestep", "--input-shape",
                          "2,5,5;()", "--json"])
    assert code == 0, err
    assert (json.loads(out)["nodes"], json.loads(out)["edges"]) == (want.n_nodes, want.n_edges)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 2, 5, 5), torch.tensor([3.0])), buf, dynamo=False,
                          opset_version=17, input_names=["x", "t"],
                          dynamic_axes={"x": {0: "b"}, "t": {0: "b"}})
    (tmp_path / "denoiser.onnx").write_bytes(buf.getvalue())
    # the file's shapes: the timestep's is the batch axis alone
    code, out, err = cli(["graph", "denoiser.onnx", "--json"])
    assert code == 0, err
    assert (json.loads(out)["nodes"], json.loads(out)["edges"]) == (want.n_nodes, want.n_edges)


class _ConvHead(nn.Module):
    """``head(between(conv(x)))``, ``between`` named by ``how``."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.head(self.between(self.conv(x)))


class _Moved(_ConvHead):
    """A centring (or a division by a magnitude) reduced over the axes that hold
    the batch once ``permute`` / ``transpose`` / ``movedim`` moved it, or over a
    sample's own axes moved channels-last."""

    def between(self, y):
        if self.how == "transposed":        # a training-mode batch norm written by hand
            z = y.transpose(0, 1)
            return ((z - z.mean((1, 2, 3), keepdim=True)).transpose(0, 1))
        if self.how == "permuted":          # the batch moved last, reduced there
            z = y.permute(1, 2, 3, 0)
            return ((z - z.mean(-1, keepdim=True)).permute(3, 0, 1, 2))
        if self.how == "moved_var":
            z = y.movedim(0, 2)
            return ((z / z.var((2, 3), keepdim=True).add(1e-5).sqrt()).movedim(2, 0))
        if self.how == "flattened":         # batch and channels merged by a view
            z = y.transpose(0, 1).reshape(3, -1)
            return ((y - z.mean(1).view(1, 3, 1, 1)))
        # channels-last: each sample's spatial mean, a per-sample centring
        z = y.permute(0, 2, 3, 1)
        return ((z - z.mean((1, 2), keepdim=True)).permute(0, 3, 1, 2))


@pytest.mark.parametrize("how", ["transposed", "permuted", "moved_var", "flattened"])
def test_a_statistic_over_a_batch_axis_moved_by_permute_is_refused(how):
    """The batch axis is followed through ``transpose`` / ``permute`` /
    ``movedim`` / ``view``: a statistic reduced over it, wherever it was moved,
    mixes the samples (SPEC §1b: no per-sample normalization); these were
    taken for per-sample centrings (only dimension 0 was looked at)."""
    with pytest.raises(UnsupportedLayerError, match="reduces over the batch dimension"):
        _dense(_Moved(how), (2, 5, 5))


def test_a_per_sample_statistic_over_axes_moved_channels_last_is_a_centring():
    """Each sample's spatial mean taken channels-last is a per-sample centring,
    ignored (SPEC §1b): the graph is the conv and head alone."""
    torch.manual_seed(0)
    net = _Moved("channels_last")
    _, A = _dense(net, (2, 5, 5))
    _, B = _dense(nn.Sequential(net.conv, net.head), (2, 5, 5))
    np.testing.assert_allclose(A, B, rtol=1e-12)


class _SampleLoop(_ConvHead):
    """Each sample centred in a Python loop over the batch, the samples put back
    by ``stack`` or by ``cat`` of ``unsqueeze(0)``."""

    def between(self, y):
        if self.how == "mean_all":
            return (torch.stack([s - s.mean() for s in y]))
        if self.how == "sum_all":
            return (torch.stack([s - s.sum() / s.numel() for s in y]))
        return (torch.cat([s.unsqueeze(0) - s.mean((1, 2), keepdim=True).unsqueeze(0)
                                    for s in y]))


@pytest.mark.parametrize("how", ["mean_all", "sum_all", "cat_unsqueezed"])
def test_a_centring_in_a_loop_over_the_samples_is_ignored(how):
    """A sample's own mean over all its axes (``s.mean()``, ``s.sum() / n``:
    refused as an unknown op ``mean``), or over its spatial axes with both
    sides unsqueezed back into a batch (taken for a layer, its mean a node
    block), is a per-sample centring: ignored (SPEC §1b), the graph is the
    conv and head alone."""
    torch.manual_seed(0)
    net = _SampleLoop(how)
    _, A = _dense(net, (2, 5, 5))
    _, B = _dense(nn.Sequential(net.conv, net.head), (2, 5, 5))
    np.testing.assert_allclose(A, B, rtol=1e-12)


def test_a_sum_over_every_axis_of_a_batched_value_is_refused_as_over_the_batch():
    """``y.sum()`` of a batched value adds the samples up: refused as a reduction
    over the batch (now that a sum over every axis has a rule of its own)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return (y) + y.sum()

    with pytest.raises(UnsupportedLayerError, match="reduces over the batch dimension"):
        _dense(Net(), (2, 5, 5))


class _RowsToken(nn.Module):
    """A learned token (or zeros) concatenated to every row of one sample's
    values regrouped as rows (a summary token per patch:
    ``cat([y.view(B * 2, 4, L), tok.repeat(B * 2, 1, 1)], 1)``), then a layer
    at every row."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.conv, self.head = nn.Conv1d(3, 8, 3, padding=1), nn.Conv1d(5, 2, 3, padding=1)
        self.tok = nn.Parameter(torch.randn(1, 1, 9))

    def forward(self, x):
        r = self.conv(x).reshape(x.shape[0] * 2, 4, 9)
        t = {"repeat": lambda: self.tok.repeat(r.shape[0], 1, 1),
             "expand": lambda: self.tok.expand(r.shape[0], 1, 9),
             "zeros": lambda: torch.zeros(r.shape[0], 1, 9, dtype=r.dtype)}[self.how]()
        return self.head(torch.cat([r, t], 1)).reshape(x.shape[0], -1)


@pytest.mark.parametrize("how", ["repeat", "expand", "zeros"])
def test_a_constant_concatenated_to_every_row_has_no_nodes(how):
    """A constant joined to values regrouped as rows is a part without nodes
    (as zero padding, SPEC §1), at every row: the graph is the Jacobian (it was
    refused, the constant's ids made for a batch of one, not of rows)."""
    torch.manual_seed(0)
    assert_is_jacobian(_RowsToken(how), (3, 9), "export")

"""ONNX ``DFT`` and ``STFT`` nodes: the imported module equals the ONNX
reference evaluator, its signed graph's path sums equal the Jacobian (the
transforms are linear), and a file the dynamo exporter writes from
``torch.stft`` / ``torch.fft.rfft`` has the graph of its PyTorch model (SPEC §1b)."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from jacobian import assert_is_jacobian  # noqa: E402

from deepglass.errors import UnsupportedLayerError  # noqa: E402
from deepglass.graph import SignedGraph  # noqa: E402
from deepglass.zoo.onnx_import import onnx_to_module  # noqa: E402
from deepglass.graph.spectral import dft_matrix  # noqa: E402


def _model(nodes, shape, inits=(), opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check(model, shape):
    """Module == reference evaluator at two samples; graph == Jacobian."""
    module = onnx_to_module(model)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    ref = ReferenceEvaluator(model)
    with torch.no_grad():
        y = module(torch.from_numpy(x)).numpy()
    for b in range(2):
        want = ref.run(None, {"x": x[b:b + 1]})[0]
        np.testing.assert_allclose(y[b:b + 1], want, rtol=1e-4, atol=1e-4)
    return assert_is_jacobian(module, shape)


def test_the_dft_matrix_is_numpys_fft():
    rng = np.random.default_rng(1)
    z = rng.standard_normal(6) + 1j * rng.standard_normal(6)
    parts = torch.tensor(np.stack([z.real, z.imag]).reshape(-1)).double()
    for n, inverse, onesided, want in [(6, False, False, np.fft.fft(z)),
                                       (8, False, True, np.fft.fft(z, 8)[:5]),
                                       (4, True, False, np.fft.ifft(z[:4]))]:
        got = (parts @ dft_matrix(6, n, 2, inverse, onesided)).reshape(-1, 2).double().numpy()
        np.testing.assert_allclose(got[:, 0] + 1j * got[:, 1], want, atol=1e-5)


@pytest.mark.parametrize("parts, axis, inverse, onesided, length, opset", [
    (1, 1, 0, 1, None, 17),      # rfft along the first axis
    (1, 2, 0, 1, None, 17),      # ... along the second (torch.fft.rfft(x, dim=-1))
    (1, 2, 0, 0, None, 17),      # the full spectrum of a real signal
    (2, 2, 0, 0, None, 17),      # a complex signal
    (2, 1, 1, 0, None, 17),      # the inverse
    (1, 2, 0, 1, 5, 17),         # cropped to 5 samples
    (2, 2, 0, 0, 9, 17),         # zero padded to 9
    (1, -2, 0, 1, None, 20),     # opset 20: the axis is an input
    (2, 1, 1, 0, 8, 20),
    (2, 2, 1, 1, None, 17),      # irfft: a real signal of 2 (7 - 1) samples
    (2, 1, 1, 1, 9, 20),         # ... of 9 (bins past 9 // 2 are not read)
    (2, -2, 1, 1, 16, 20),       # ... of 16 (bins 7, 8 are zero)
    (1, 2, 1, 1, 11, 17),        # ... of a spectrum without imaginary parts
])
def test_a_dft_node_is_a_dense_layer_of_its_weights(parts, axis, inverse, onesided, length, opset):
    inputs, inits = ["x", "n" if length else ""], [("n", np.array(length or 0, np.int64))]
    if opset >= 20:
        inputs.append("axis")
        inits.append(("axis", np.array(axis, np.int64)))
        attrs = {}
    else:
        attrs = {"axis": axis}
    node = helper.make_node("DFT", inputs, ["y"], inverse=inverse, onesided=onesided, **attrs)
    shape = (3, 7, parts)
    g = _check(_model([node], shape, inits, opset), shape)
    assert g.n_edges > 0


@pytest.mark.parametrize("parts, window, onesided", [(1, True, 1), (1, False, 1), (2, True, 0)])
def test_an_stft_node_is_a_dft_of_each_windowed_frame(parts, window, onesided):
    L, step, samples = 8, 3, 20
    inits = [("step", np.array(step, np.int64)), ("L", np.array(L, np.int64)),
             ("w", np.hanning(L).astype(np.float32))]
    node = helper.make_node("STFT", ["x", "step", "w" if window else "", "L"], ["y"],
                            onesided=onesided)
    g = _check(_model([node], (samples, parts), inits), (samples, parts))
    frames, bins = (samples - L) // step + 1, L // 2 + 1 if onesided else L
    assert sum(len(i) for i in g.outputs.values()) == frames * bins * 2
    # every output reads one frame's samples: L per part (fewer where the window is 0)
    nz_window = (np.hanning(L) != 0).sum() if window else L
    assert g.n_edges <= frames * bins * 2 * L * parts
    assert g.n_edges >= frames * bins * nz_window * parts      # (sin rows of bin 0 are 0)


@pytest.mark.parametrize("attrs, inits, why", [
    ({"axis": 0}, [], "batch axis"),
    ({"axis": 2}, [], r"\(real, imaginary\) dimension"),
])
def test_a_dft_that_has_no_graph_is_refused(attrs, inits, why):
    node = helper.make_node("DFT", ["x"], ["y"], **attrs)
    with pytest.raises(UnsupportedLayerError, match=why):
        onnx_to_module(_model([node], (4, 1), inits))


def test_an_stft_of_a_computed_window_or_too_long_frames_is_refused():
    inits = [("step", np.array(2, np.int64)), ("L", np.array(30, np.int64))]
    node = helper.make_node("STFT", ["x", "step", "", "L"], ["y"])
    with pytest.raises(UnsupportedLayerError, match="do not fit a signal of 20"):
        onnx_to_module(_model([node], (20, 1), inits))
    nodes = [helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["w"]),
             helper.make_node("Reshape", ["w", "flat"], ["w1"]),
             helper.make_node("STFT", ["x", "step", "w1"], ["y"])]
    inits = [("step", np.array(2, np.int64)), ("s0", np.array([0, 0])), ("s1", np.array([4, 1])),
             ("ax", np.array([1, 2])), ("flat", np.array([-1]))]
    with pytest.raises(UnsupportedLayerError, match="window must be a constant"):
        onnx_to_module(_model(nodes, (20, 1), inits))


class _Spectrogram(nn.Module):
    """A power spectrogram (torch.stft or framed rfft), then a convolution."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.register_buffer("w", torch.hann_window(16))
        self.c = nn.Conv1d(9, 3, 3)

    def forward(self, x):
        if self.kind == "stft":
            z = torch.stft(x, 16, 4, window=self.w, center=False, return_complex=True)
        else:
            z = torch.fft.rfft(x.unfold(-1, 16, 4) * self.w, dim=-1).transpose(1, 2)
        return self.c(torch.view_as_real(z).pow(2).sum(-1))


class _Decoder(nn.Module):
    """A decoder's (re, im) parts, then irfft (an inverse one-sided DFT in ONNX)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(2, 2, 3, padding=1)

    def forward(self, x):                           # (B, 64) -> (B, 2, 14)
        y = self.c(x.view(-1, 2, 32)).view(-1, 2, 16, 2)
        return torch.fft.irfft(torch.view_as_complex(y), n=14)[:, :, None]


@pytest.mark.parametrize("kind, op", [("stft", "STFT"), ("rfft", "DFT"), ("irfft", "DFT")])
@pytest.mark.filterwarnings("ignore:activation x \\*\\* 2")
def test_a_dynamo_exported_spectrogram_has_the_graph_of_its_torch_model(kind, op, tmp_path):
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    net = (_Decoder() if kind == "irfft" else _Spectrogram(kind)).eval()
    x = torch.randn(1, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), tmp_path / "s.onnx", dynamo=True, opset_version=18,
                          verbose=False)
    model = onnx.load(tmp_path / "s.onnx")
    assert op in {n.op_type for n in model.graph.node}
    module = onnx_to_module(model)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=1e-4, atol=1e-4)
    ga, gb = (SignedGraph.from_module(m, (64,), dtype=torch.float64) for m in (net, module))
    a, b = ga.to_scipy(), gb.to_scipy()
    assert a.shape == b.shape and a.nnz == b.nnz > 0
    assert abs(a - b).max() < 1e-5
    # the transform's layer is fixed (null models keep it) in both
    assert [blk.fixed_weights for blk in ga.edge_blocks if blk.kind == "conv"] == \
        [blk.fixed_weights for blk in gb.edge_blocks if blk.kind == "conv"]
    assert sum(blk.fixed_weights for blk in gb.edge_blocks if blk.kind == "conv") == 1


def test_a_phase_is_refused_as_a_phase():
    """The exporters write torch.angle as Atan and a choice of quadrant
    (Greater / Where): refused as "data-dependent control flow ... box
    post-processing", not as what it is."""
    nodes = [helper.make_node("DFT", ["x"], ["z"], axis=1, onesided=1),
             helper.make_node("Split", ["z", "sizes"], ["re", "im"], axis=-1),
             helper.make_node("Div", ["im", "re"], ["q"]),
             helper.make_node("Atan", ["q"], ["a"]),
             helper.make_node("Less", ["re", "zero"], ["left"]),
             helper.make_node("Where", ["left", "a", "a"], ["y"])]
    inits = [("sizes", np.array([1, 1], np.int64)), ("zero", np.array(0.0, np.float32))]
    with pytest.raises(UnsupportedLayerError, match=r"\(Atan\): .*the phase of a spectrum"):
        onnx_to_module(_model(nodes, (8, 1), inits))

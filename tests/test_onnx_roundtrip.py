"""Networks the PyTorch front end accepts, exported to ONNX: the imported file has
the same signed graph (SPEC §1), op by op where exporters write an op their own way."""

import io
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

onnx = pytest.importorskip("onnx")

from deepglass.graph import SignedGraph  # noqa: E402
from deepglass.zoo.onnx_import import onnx_to_module  # noqa: E402


class _StdConv2d(nn.Conv2d):
    """timm's StdConv2d: the weights standardized per output channel in forward."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class _Net(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.c = (_StdConv2d if kind == "weight-std" else nn.Conv2d)(2, 3, 3, padding=1)
        self.d = nn.Conv2d(3, 2, 1)
        self.W = nn.Parameter(torch.randn(4, 3))
        g = torch.Generator().manual_seed(0)
        self.register_buffer("idx", torch.stack(
            [torch.randperm(6, generator=g) for _ in range(18)]).reshape(1, 3, 6, 6))

    def forward(self, x):
        y = self.c(x)                                               # (B, 3, 6, 6)
        if self.kind == "gather":
            y = torch.gather(y, 3, self.idx.expand(y.shape[0], -1, -1, -1))
        elif self.kind == "einsum":                                 # a 1x1 conv as einsum
            return torch.einsum("bchw,oc->bohw", F.relu(y), self.W)
        elif self.kind in ("reflect", "replicate"):                 # the last axis only
            y = F.pad(y, (1, 1, 0, 0), mode=self.kind)
        return self.d(F.relu(y))


@pytest.mark.parametrize("kind", ["gather", "einsum", "weight-std", "reflect", "replicate"])
def test_the_exported_file_has_the_graph_of_the_torch_module(kind):
    """Each was refused from the file: GatherElements (unknown op), Einsum with a
    weight (taken for attention), the TorchScript exporter's training-mode batch
    norm of the weights (taken for a model exported in train mode), and border
    padding of the last axis only (F.pad given too short a list)."""
    torch.manual_seed(0)
    _assert_round_trip(_Net(kind).eval(), (2, 6, 6), dynamo=False)


def _assert_round_trip(net, shape, dynamo):
    """Export ``net`` at ``shape``, import it: the same outputs and signed graph."""
    x = torch.randn((1,) + shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(net, (x,), dynamo=True, verbose=False)
            buf.write(program.model_proto.SerializeToString())
        else:
            torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17)
    module = onnx_to_module(onnx.load_from_string(buf.getvalue()))
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=1e-5, atol=1e-5)
    a, b = (SignedGraph.from_module(m, shape, dtype=torch.float64).to_scipy()
            for m in (net, module))
    assert a.shape == b.shape and a.nnz == b.nnz > 0
    assert abs(a - b).max() < 1e-5


class _Resample(nn.Module):
    def __init__(self, mode, antialias):
        super().__init__()
        self.c, self.d = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)
        self.mode, self.antialias = mode, antialias

    def forward(self, x):
        y = F.interpolate(self.c(x), size=(5, 7), mode=self.mode, align_corners=False,
                          antialias=self.antialias)
        return self.d(F.relu(y))


@pytest.mark.parametrize("mode, antialias, dynamo", [("bicubic", False, False),
                                                     ("bilinear", True, True),
                                                     ("bicubic", True, True)])
def test_bicubic_and_antialiased_resampling_import_as_interpolate(mode, antialias, dynamo):
    """ONNX Resize 'cubic' and antialias=1 were refused (the latter as having no
    F.interpolate equivalent): they are F.interpolate's bicubic / antialiased
    resampling, with the torch module's graph."""
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    _assert_round_trip(_Resample(mode, antialias).eval(), (2, 12, 9), dynamo)


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return x + torch.relu(self.conv(x))


def test_a_file_that_calls_its_own_functions_is_read_inlined():
    """``export_modules_as_functions`` writes each block as a FunctionProto and
    a node calling it: refused as an unknown op; now each call is its body."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _Block(), _Block()).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 6, 6),), buf, dynamo=False, opset_version=17,
                          export_modules_as_functions={_Block})
    model = onnx.load_from_string(buf.getvalue())
    assert [f.name for f in model.functions] == ["_Block"]
    a, b = (SignedGraph.from_module(m, (3, 6, 6)).to_scipy()
            for m in (net, onnx_to_module(model)))
    assert a.shape == b.shape and a.nnz == b.nnz > 0 and abs(a - b).max() < 1e-6

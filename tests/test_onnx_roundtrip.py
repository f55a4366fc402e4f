"""Networks the PyTorch front end accepts, exported to ONNX: the imported file has
the same signed graph (SPEC §1), op by op where exporters write an op their own way."""

import io
import warnings

import numpy as np
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


class _Lerp(nn.Module):
    """``torch.lerp(y, h(y), w)``, ``w`` a number or a sigmoid gate; a var_mean norm;
    selections written like lerp."""

    def __init__(self, weight):
        super().__init__()
        self.weight = weight
        self.c, self.h, self.g, self.d = (nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1),
                                          nn.Conv2d(3, 3, 1), nn.Conv2d(3, 2, 1))
        self.register_buffer("fixed", torch.tensor([0.2, 0.9, -0.4]).view(1, 3, 1, 1))

    def forward(self, x):
        y = self.c(x)
        if self.weight == "var_mean":
            v, m = torch.var_mean(y, (1, 2, 3), keepdim=True)
            return self.d((y - m) / torch.sqrt(v + 1e-5))
        if self.weight == "fixed_mask":     # a fixed selection that only looks like lerp
            mask = torch.arange(27).reshape(3, 3, 3) % 2 == 0
            return self.d(torch.where(mask, y + 0.3 * (self.h(y) - y), self.h(y) - y))
        w = torch.sigmoid(self.g(y)) if self.weight in ("gate", "like_lerp", "like_lerp2") \
            else self.fixed if self.weight == "tensor" else self.weight
        if self.weight in ("like_lerp", "like_lerp2"):  # a selection by w, branches that differ
            h = self.h(y)
            return self.d(torch.where(w < 0.5, y + w * (h - y), h - y * w if self.weight ==
                                      "like_lerp" else h - (h - y) * (2 - w)))
        return self.d(torch.lerp(y, self.h(y), w))


@pytest.mark.filterwarnings("ignore::deepglass.graph.NonMonotoneActivationWarning")
@pytest.mark.parametrize("weight", [0.3, 1.5, "tensor", "gate", "var_mean", "fixed_mask"])
@pytest.mark.parametrize("dynamo", [False, True])
def test_lerp_and_var_mean_read_back_as_written(weight, dynamo):
    """torch's exporters write ``torch.lerp(a, b, w)`` as ``Where(w < 0.5, a + w (b -
    a), b - (b - a)(1 - w))``, one value in two forms: read as the first (SPEC §1b:
    a gated sum for a sigmoid ``w``), the graph of the torch module.  It was
    refused as a data-dependent selection, also with a number (a constant
    condition)."""
    torch.manual_seed(0)
    _assert_round_trip(_Lerp(weight).eval(), (2, 5, 5), dynamo=dynamo)


@pytest.mark.parametrize("like", ["like_lerp", "like_lerp2"])
@pytest.mark.parametrize("dynamo", [False, True])
def test_a_selection_that_only_looks_like_lerp_stays_refused(dynamo, like):
    """``where(w < 0.5, y + w (h - y), h - y w)``: its branches differ, so it is a
    selection by the input's values, refused as from PyTorch (it was read as
    its first branch)."""
    from deepglass.errors import UnsupportedLayerError

    torch.manual_seed(0)
    net, x, buf = _Lerp(like).eval(), torch.randn(1, 2, 5, 5), io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            buf.write(torch.onnx.export(net, (x,), dynamo=True, verbose=False)
                      .model_proto.SerializeToString())
        else:
            torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17)
    with pytest.raises(UnsupportedLayerError, match="selection"):
        onnx_to_module(onnx.load_from_string(buf.getvalue()))


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


class _C2f(nn.Module):
    """YOLOv8's C2f: a 1x1 conv, chunk / split in two, a conv of the last part, concat."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.cv1, self.m, self.cv2 = nn.Conv2d(3, 8, 1), nn.Conv2d(4, 4, 3, padding=1), \
            nn.Conv2d(12, 8, 1)

    def forward(self, x):
        y = self.cv1(x)
        y = list(y.chunk(2, 1) if self.how == "chunk" else y.split((4, 4), 1))
        y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


@pytest.mark.parametrize("how", ["chunk", "split"])
def test_the_unoptimized_dynamo_exporters_sequences_are_read(how, tmp_path):
    """Without its optimizer the dynamo exporter writes chunk / split as
    SplitToSequence + SequenceAt: refused as unknown ops."""
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    net = _C2f(how).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 8, 8),), tmp_path / "c2f.onnx", dynamo=True,
                          optimize=False, verbose=False)
    model = onnx.load(tmp_path / "c2f.onnx")
    assert "SplitToSequence" in {n.op_type for n in model.graph.node}
    a, b = (SignedGraph.from_module(m, (3, 8, 8)).to_scipy()
            for m in (net, onnx_to_module(model)))
    assert a.shape == b.shape and a.nnz == b.nnz > 0 and abs(a - b).max() < 1e-6


def test_sequence_ops_match_the_onnx_reference():
    """SplitToSequence without sizes (pieces of 1, the axis dropped), with a
    scalar size (the last piece shorter); SequenceAt, SequenceConstruct,
    ConcatFromSequence along an axis and along a new one."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    nodes = [helper.make_node("SplitToSequence", ["x"], ["s"], axis=1, keepdims=0),
             helper.make_node("ConcatFromSequence", ["s"], ["stacked"], axis=-1, new_axis=1),
             helper.make_node("SplitToSequence", ["x", "two"], ["t"], axis=2),
             helper.make_node("SequenceAt", ["t", "last"], ["t1"]),
             helper.make_node("SequenceConstruct", ["t1", "t1"], ["u"]),
             helper.make_node("ConcatFromSequence", ["u"], ["cat"], axis=2),
             helper.make_node("Flatten", ["stacked"], ["f1"]),
             helper.make_node("Flatten", ["cat"], ["f2"]),
             helper.make_node("Concat", ["f1", "f2"], ["y"], axis=1)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(2, np.int64), "two"),
         numpy_helper.from_array(np.array(-1, np.int64), "last")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((1, 3, 5)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    module = onnx_to_module(model)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), want, rtol=1e-6)
    g = SignedGraph.from_module(module, (3, 5))        # (re-indexings: the input's nodes)
    assert sum(len(v) for v in g.outputs.values()) == want.size


def test_batchnorm_ignore_on_a_file_whose_batch_norms_were_folded_says_so():
    """torch.onnx.export in eval mode folds batch norms into the convolutions, so
    batchnorm="ignore" on the file gives the "fold" graph: a warning says so and how
    to export the file (it said nothing and recorded "ignore"); exported with
    TrainingMode.PRESERVE, the file keeps them and gives the module's graph."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([1.0, -0.5, 2.0]))
        net[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 2, 6, 6)

    def imported(**kw):
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17, **kw)
        return onnx_to_module(onnx.load_from_string(buf.getvalue()))

    ref = SignedGraph.from_module(net, (2, 6, 6), dtype=torch.float64, batchnorm="ignore").to_scipy()
    with pytest.warns(UserWarning, match=r"batchnorm='ignore' changes nothing.*"
                                         r"training=torch.onnx.TrainingMode.PRESERVE"):
        folded = SignedGraph.from_module(imported(), (2, 6, 6), dtype=torch.float64,
                                         batchnorm="ignore").to_scipy()
    assert abs(folded - ref).max() > 0.1            # the file's weights are the folded ones
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = SignedGraph.from_module(imported(training=torch.onnx.TrainingMode.PRESERVE),
                                       (2, 6, 6), dtype=torch.float64, batchnorm="ignore").to_scipy()
        SignedGraph.from_module(net, (2, 6, 6), batchnorm="ignore")   # a module with batch norm
    assert abs(kept - ref).max() < 1e-6

"""ONNX writes at constant positions (ScatterND, ScatterElements, Col2Im): the
imported module equals the ONNX reference evaluator, and its signed graph equals
the graph of the PyTorch module the file was exported from (SPEC §1)."""

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from deepglass.errors import UnsupportedLayerError  # noqa: E402
from deepglass.graph import SignedGraph  # noqa: E402
from deepglass.zoo.onnx_import import onnx_to_module  # noqa: E402


class _Writes(nn.Module):
    """A convolution, a write at fixed positions, a 1x1 convolution."""

    def __init__(self, kind):
        super().__init__()
        self.c, self.d, self.kind = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1), kind
        self.register_buffer("cols", torch.tensor([5, 3, 1, 0]))

    def forward(self, x):
        y = self.c(x)                                            # (B, 4, 6, 6)
        if self.kind == "fold":                                  # overlap-add
            z = F.fold(F.unfold(y, 2, stride=1), (6, 6), 2, stride=1)
        elif self.kind == "index":                               # x[..., idx] = v
            z = y.new_zeros(y.shape[0], 4, 6, 8)
            z[:, :, :, self.cols] = y[:, :, :, :4]
        elif self.kind == "index-add":    # y[..., idx] += v (the exporter: y + ScatterND)
            z = y.index_put((torch.arange(y.shape[0])[:, None, None, None],
                             torch.arange(4)[:, None, None], torch.arange(6)[:, None],
                             torch.tensor([5, 4, 3, 2, 1, 0])), 2 * y, accumulate=True)
        else:
            i = torch.tensor([[[[0, 1, 0, 2, 3, 1] if self.kind == "add"
                                else [5, 4, 3, 2, 1, 0]] * 6] * 4])
            z = (y.new_zeros(1, 4, 6, 6).scatter_add(3, i, y) if self.kind == "add"
                 else y.scatter(3, i, 2 * y))
        return self.d(z)


def _export(net, x, opset=18):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=opset)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("kind, op", [("fold", "Col2Im"), ("index", "ScatterND"),
                                      ("index-add", "ScatterND"), ("add", "ScatterElements"),
                                      ("set", "ScatterElements")])
def test_exported_writes_import_with_the_graph_of_the_torch_module(kind, op):
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    net = _Writes(kind).eval()
    x = torch.randn(1, 1, 8, 8)
    model = _export(net, x)
    assert op in {n.op_type for n in model.graph.node}
    module = onnx_to_module(model)
    ref = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), ref, rtol=1e-5, atol=1e-5)
        if kind not in ("add", "set"):       # (their index rows were traced at batch 1)
            xs = torch.randn(3, 1, 8, 8)     # a batch: one sample at a time where needed
            torch.testing.assert_close(module(xs), net(xs))
    a, b = (SignedGraph.from_module(m, (1, 8, 8), dtype=torch.float64).to_scipy()
            for m in (net, module))
    assert a.shape == b.shape and a.nnz == b.nnz > 0
    assert abs(a - b).max() < 1e-6


def _scatter_model(op, reduction="none", const_indices=True, **attrs):
    """x (1, 2, 4) -> op(data = x, indices, updates = 3 x[..., :2]) -> y."""
    nodes = [helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["u0"]),
             helper.make_node("Mul", ["u0", "three"], ["u"])]
    inits = {"s0": np.array([0]), "s1": np.array([2]), "ax": np.array([2]),
             "three": np.array(3.0, np.float32)}
    if op == "ScatterND":
        idx = np.array([[[[0, 0, 3], [0, 0, 1]], [[0, 1, 0], [0, 1, 2]]]])
    else:
        idx = np.array([[[-1, 1], [0, -2]]])       # (ONNX counts negatives from the end)
    inputs = {"x": [1, 2, 4]}
    if const_indices:
        inits["idx"] = idx
    else:
        inputs["idx"] = list(idx.shape)
    kw = {} if reduction == "none" else {"reduction": reduction}
    nodes.append(helper.make_node(op, ["x", "idx", "u"], ["y"], **kw, **attrs))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(k, TensorProto.INT64 if k == "idx"
                                                   else TensorProto.FLOAT, v)
                     for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("op", ["ScatterND", "ScatterElements"])
@pytest.mark.parametrize("reduction", ["none", "add"])
def test_scatters_written_by_hand_equal_the_reference(op, reduction):
    from onnx.reference import ReferenceEvaluator

    model = _scatter_model(op, reduction, axis=2) if op == "ScatterElements" \
        else _scatter_model(op, reduction)
    x = np.random.default_rng(0).normal(size=(1, 2, 4)).astype(np.float32)
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_to_module(model)(torch.from_numpy(x)).numpy(), ref,
                                   rtol=1e-6)


def test_scatters_that_choose_or_read_positions_off_the_input_are_refused():
    with pytest.raises(UnsupportedLayerError, match="ScatterND.*reduction 'max'"):
        onnx_to_module(_scatter_model("ScatterND", "max"))
    with pytest.raises(UnsupportedLayerError, match="ScatterElements.*computed from the input"):
        onnx_to_module(_scatter_model("ScatterElements", const_indices=False, axis=2))


def test_col2im_with_pads_that_differ_per_side_is_refused():
    nodes = [helper.make_node("Col2Im", ["x", "size", "block"], ["y"], pads=[0, 0, 1, 1])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3])],
        [numpy_helper.from_array(np.array([3, 3]), "size"),
         numpy_helper.from_array(np.array([2, 2]), "block")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(UnsupportedLayerError, match="Col2Im.*pads .* differ"):
        onnx_to_module(model)


def test_gather_elements_with_negative_indices_equals_the_reference():
    """ONNX allows indices from -size; torch.gather does not (the module failed)."""
    from onnx.reference import ReferenceEvaluator

    nodes = [helper.make_node("GatherElements", ["x", "idx"], ["y"], axis=2)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4])],
        [numpy_helper.from_array(np.array([[[-1, 0, -4, 2], [1, -2, 3, 0]]]), "idx")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.random.default_rng(0).normal(size=(1, 2, 4)).astype(np.float32)
    with torch.no_grad():
        got = onnx_to_module(model)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])

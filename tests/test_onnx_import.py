"""ONNX importer (deepglass.zoo.onnx_import): every op against its closed form or the ONNX
reference evaluator, timm's CNNs exported to ONNX against timm itself, refusals that name the node."""

import io
import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from deepglass.errors import DeepglassError, UnsupportedLayerError  # noqa: E402
from deepglass.graph import SignedGraph  # noqa: E402
from deepglass.zoo.onnx_import import load_onnx, onnx_to_module  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Each test draws the same numbers whichever tests ran before it."""
    global RNG
    RNG = np.random.default_rng(0)


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, inits=None, opset=17, check=True):
    """A checked ONNX model from nodes; ``inputs`` / ``outputs``: {name: shape}."""
    graph = helper.make_graph(
        nodes, "g", [_vi(k, v) for k, v in inputs.items()], [_vi(k, v) for k, v in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if check:
        onnx.checker.check_model(model)
    return model


def _run(module, *xs):
    with torch.no_grad():
        out = module(*[torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in xs])
    return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()


def _exportable(module, *xs):
    """torch.export + core-ATen decomposition (what the capture path runs) agrees with the module."""
    args = tuple(torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in xs)
    ep = torch.export.export(module, args, strict=False).run_decompositions()
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(*args), module(*args))
    return {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}


def _reference(model, **feeds):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, {k: np.asarray(v, np.float32) for k, v in feeds.items()})


def _fx_ops(module):
    return {getattr(n.target, "__name__", str(n.target)) for n in module.graph.nodes if n.op == "call_function"}


def _rand(*shape):
    return RNG.normal(size=shape).astype(np.float32)


# -- elementwise arithmetic, several inputs and outputs --------------------------------------

def _two_input_model():
    nodes = [
        helper.make_node("Mul", ["A", "B"], ["ab"], name="mul"),
        helper.make_node("Div", ["A", "B"], ["adb"], name="div"),
        helper.make_node("Sub", ["ab", "adb"], ["s"], name="sub"),
        helper.make_node("Add", ["s", "B"], ["Y"], name="add"),
        helper.make_node("Sub", ["one", "A"], ["Z"], name="rsub"),
    ]
    return _model(nodes, {"A": ["N", 2, 3, 3], "B": ["N", 2, 3, 3]}, {"Y": ["N", 2, 3, 3], "Z": ["N", 2, 3, 3]},
                  {"one": np.array(1.0, np.float32)})


def test_arithmetic_of_two_inputs_and_two_outputs():
    module = onnx_to_module(_two_input_model())
    a, b = _rand(4, 2, 3, 3), RNG.uniform(0.5, 2.0, (4, 2, 3, 3)).astype(np.float32)
    y, z = _run(module, a, b)
    np.testing.assert_allclose(y, a * b - a / b + b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z, 1.0 - a, rtol=1e-6, atol=1e-7)
    assert module.input_names == ["A", "B"]
    assert module.default_input_shape == ((2, 3, 3), (2, 3, 3)) == module.default_input_shapes
    assert {"mul", "div", "sub"} <= _fx_ops(module)
    ops = _exportable(module, a, b)
    assert {"aten.mul.Tensor", "aten.div.Tensor", "aten.sub.Tensor", "aten.add.Tensor"} <= ops


def _two_head_model(names):
    """A 1x1 convolution feeding two heads (a box-like Conv and a class Softmax)."""
    w = RNG.normal(size=(4, 2, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["X", "w"], ["h"], name="conv"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wb"], [names[0]], name="box"),
             helper.make_node("Conv", ["r", "wc"], ["c"], name="cls"),
             helper.make_node("Softmax", ["c"], [names[1]], name="prob", axis=1)]
    return _model(nodes, {"X": ["N", 2, 3, 3]}, {names[0]: ["N", 3, 3, 3], names[1]: ["N", 2, 3, 3]},
                  {"w": w, "wb": RNG.normal(size=(3, 4, 1, 1)).astype(np.float32),
                   "wc": RNG.normal(size=(2, 4, 1, 1)).astype(np.float32)})


def test_several_outputs_keep_their_onnx_names():
    """Outputs named by identifiers come back as a named tuple, so the signed
    graph's outputs (and ``--output``) carry the file's names; other names are
    made identifiers one by one (one such name gave every output a position)."""
    model = _two_head_model(["boxes", "scores"])
    module = onnx_to_module(model)
    x = _rand(2, 2, 3, 3)
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    assert isinstance(out, tuple) and out._fields == ("boxes", "scores")
    want = _reference(model, X=x)
    for got, ref in zip(_run(module, x), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    g = SignedGraph.from_module(module, (2, 3, 3))
    assert {k: len(v) for k, v in g.outputs.items()} == {"boxes": 27, "scores": 18}
    assert g.output_name == "boxes" and g.select_output("scores").output_name == "scores"
    # a file's own name, made an identifier, selects the same output
    dotted = SignedGraph.from_module(onnx_to_module(_two_head_model(["boxes", "box.reg"])),
                                     (2, 3, 3))
    assert dotted.select_output("box.reg").output_name == "box_reg"
    with pytest.raises(DeepglassError, match=r"no output 'box-reg.x': the network's outputs are boxes, box_reg"):
        dotted.select_output("box-reg.x")
    from deepglass.graph.outputs import output_tensor
    torch.testing.assert_close(output_tensor(out, "scores"), out.scores)
    two = onnx_to_module(_two_head_model(["boxes", "box.reg"]))(torch.from_numpy(x))
    torch.testing.assert_close(output_tensor(two, "box.reg"), two.box_reg)
    # the module pickles (Ray ships it to workers), in a process that never imported it too
    import pickle
    import subprocess
    import sys
    blob = pickle.dumps(module)
    with torch.no_grad():
        again = pickle.loads(blob)(torch.from_numpy(x))
    assert again._fields == out._fields and torch.equal(again.scores, out.scores)
    code = ("import pickle, sys, torch; m = pickle.loads(sys.stdin.buffer.read()); "
            "print(m(torch.zeros(1, 2, 3, 3))._fields)")
    res = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, check=True)
    assert res.stdout.decode().strip() == "('boxes', 'scores')"
    for names, fields in ((["out/boxes:0", "scores"], ["out_boxes_0", "scores"]),
                          (["boxes", "_scores"], ["boxes", "scores"]),
                          (["boxes", "class"], ["boxes", "class_"]),
                          (["0", "box.reg"], ["output_0", "box_reg"]),
                          (["a.b", "a-b"], ["a_b", "a_b_"])):
        renamed = onnx_to_module(_two_head_model(names))
        with torch.no_grad():
            res = renamed(torch.from_numpy(x))
        assert list(res._fields) == fields
        assert list(SignedGraph.from_module(renamed, (2, 3, 3)).outputs) == fields
    numbered = onnx_to_module(_two_head_model(["10", "11"]))     # value ids: by position
    assert list(SignedGraph.from_module(numbered, (2, 3, 3)).outputs) == ["0", "1"]


def test_a_file_s_one_output_keeps_its_name(cli, tmp_path):
    """A file with one output returns a tensor; the output's name in the file
    (``scores``, made an identifier) still names the graph's output, so
    ``--output scores`` reads it in every command and in near-monotonicity's
    forward passes, also after pickling; a file whose output is a value id
    names it ``output``."""
    import pickle

    import deepglass

    def one_output(name):
        nodes = [helper.make_node("Conv", ["X", "w"], ["c"], name="conv"),
                 helper.make_node("Relu", ["c"], [name], name="relu")]
        return _model(nodes, {"X": [1, 2, 5, 5]}, {name: [1, 3, 3, 3]},
                      {"w": _rand(3, 2, 3, 3)})

    module = onnx_to_module(one_output("class.scores"))
    assert module.onnx_output_name == "class_scores"
    import copy
    g = SignedGraph.from_module(copy.deepcopy(module), (2, 5, 5))
    assert list(g.outputs) == ["class_scores"] and g.output_name == "class_scores"
    x = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    sigma = np.ones(g.n_nodes, dtype=np.int8)
    by_name = deepglass.near_monotonicity(pickle.loads(pickle.dumps(module)), sigma[:50],
                                          sigma[-27:], x, output="class_scores", amplitudes=4)
    by_position = deepglass.near_monotonicity(module, sigma[:50], sigma[-27:], x, output=0,
                                              amplitudes=4)
    assert by_name.n_outputs == 27
    np.testing.assert_array_equal(by_name.trials["rho"], by_position.trials["rho"])
    numbered = onnx_to_module(one_output("17"))
    assert numbered.onnx_output_name is None
    assert list(SignedGraph.from_module(numbered, (2, 5, 5)).outputs) == ["output"]
    path = tmp_path / "scores.onnx"
    onnx.save(one_output("scores"), str(path))
    code, out, err = cli(["frustration", str(path), "--output", "scores", "--replicas", "2"])
    assert code == 0, err
    code, out, err = cli(["graph", str(path)])
    assert code == 0 and "outputs: scores (27 nodes)" in out, out + err


def _batch_folding_model():
    """A file exported with a fixed batch of 1 (as torch's dynamo exporter writes
    ConvNeXt's head): the pooled features are reshaped to ``[-1]`` and back to
    ``[1, C]`` before the classifier, which folds the batch into a dimension."""
    nodes = [helper.make_node("Conv", ["X", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("ReduceMean", ["r"], ["m"], name="pool", axes=[2, 3], keepdims=0),
             helper.make_node("Reshape", ["m", "flat"], ["f"], name="fold"),
             helper.make_node("Reshape", ["f", "back"], ["b"], name="unfold"),
             helper.make_node("Gemm", ["b", "fc", "bias"], ["Y"], name="fc", transB=1)]
    return _model(nodes, {"X": [1, 2, 5, 5]}, {"Y": [1, 3]},
                  {"w": _rand(4, 2, 3, 3), "flat": np.array([-1], np.int64),
                   "back": np.array([1, 4], np.int64), "fc": _rand(3, 4), "bias": _rand(3)})


def test_deepglass_graph_says_a_file_runs_at_batch_size_one(cli, tmp_path):
    path = tmp_path / "folded.onnx"
    onnx.save(_batch_folding_model(), str(path))
    code, out, err = cli(["graph", str(path)])
    assert code == 0, err
    assert "runs at batch size 1 only (the file reshapes, selects or moves its batch axis)" in out
    code, out, _ = cli(["graph", str(path), "--json"])
    assert code == 0 and '"batch_one_only": true' in out


def test_a_file_that_folds_its_fixed_batch_runs_one_sample_at_a_time():
    """The graph is right at batch size 1 only: the module runs it once per
    sample (a batch of 3 gives the three batch-1 results, where the graph
    itself fails: vectorized by vmap to rounding, or, with a hook on a layer,
    a loop of batch-1 calls exactly) and says so (``batch_one_only``, kept by
    deepcopy and pickling); near-monotonicity feeds it batches, and the
    criticality observables record its layers' outputs in the same vmap (the
    statistics of one sample at a time)."""
    import copy
    import pickle
    import subprocess
    import sys

    from deepglass.criticality.observables import collect_observables
    from deepglass.experiments.alignment import near_monotonicity

    model = _batch_folding_model()
    module = onnx_to_module(model)
    x = _rand(3, 2, 5, 5)
    one = one_out = np.concatenate([_run(module, x[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(one, np.concatenate([_reference(model, X=x[i:i + 1])[0]
                                                    for i in range(3)]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_run(module, x), one, rtol=1e-5, atol=1e-6)   # vmap
    handle = module.net.conv.register_forward_hook(lambda m, i, o: None)
    np.testing.assert_array_equal(_run(module, x), one)                       # a loop
    handle.remove()
    with pytest.raises(RuntimeError):
        _run(module.net, x)                             # the file's reshape at batch 3
    from deepglass.graph.trace import forward_batch_size
    for m in (module, copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert forward_batch_size(m, 64) == 1 and forward_batch_size(m, 64, hooks=False) == 64
        np.testing.assert_allclose(_run(m, x), one, rtol=1e-5, atol=1e-6)
    code = ("import pickle, sys, torch; m = pickle.loads(sys.stdin.buffer.read()); "
            "print(tuple(m(torch.zeros(4, 2, 5, 5)).shape))")   # a fresh process (a Ray worker)
    res = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(module),
                         capture_output=True, check=True)
    assert res.stdout.decode().strip() == "(4, 3)"
    assert forward_batch_size(onnx_to_module(_two_input_model()), 64) == 64
    g = SignedGraph.from_module(module, (2, 5, 5))
    sigma_in, sigma_out = np.ones(50, np.int8), np.array([1, -1, 1], np.int8)
    res = near_monotonicity(module, sigma_in, sigma_out, torch.from_numpy(x), amplitudes=4, seed=2)
    each = [near_monotonicity(module, sigma_in, sigma_out, torch.from_numpy(x[i:i + 1]),
                              amplitudes=4, seed=2, first_index=i).trials for i in range(3)]
    pd.testing.assert_frame_equal(res.trials, pd.concat(each, ignore_index=True))
    calls = []
    module.net.forward = lambda *a: (calls.append(1), type(module.net).forward(module.net, *a))[1]
    obs = collect_observables(module, torch.from_numpy(x), batch_size=64)
    assert len(calls) == 1                  # the observables' layers recorded in one vmap
    del module.net.forward
    assert obs.n_events == 3 and len(g.output_index) == 3
    assert all("#" not in name for name in obs.layers)
    layers = ["net.conv", "net.relu", "net.fc"]
    obs = collect_observables(module, torch.from_numpy(x), layers=layers, batch_size=64)
    one = collect_observables(module, torch.from_numpy(x), layers=layers, batch_size=1)  # each sample
    assert obs.layers == one.layers == layers
    for name in obs.layers:
        np.testing.assert_array_equal(obs.unit_counts[name], one.unit_counts[name])
        np.testing.assert_array_equal(obs.pattern_counts[name], one.pattern_counts[name])
        np.testing.assert_allclose(obs.mean_activation[name], one.mean_activation[name], rtol=1e-5)
    out, rec = module.record((torch.from_numpy(x),), {"conv": module.net.conv, "again": module.net.conv})
    np.testing.assert_allclose(out.detach().numpy(), one_out, rtol=1e-5, atol=1e-6)
    assert [name for name, _ in rec] == ["conv", "again"] and rec[0][1].shape == (3, 4, 3, 3)
    np.testing.assert_allclose(rec[0][1].detach().numpy(), np.concatenate(
        [module.net.conv(torch.from_numpy(x[i:i + 1])).detach().numpy() for i in range(3)]), rtol=1e-5, atol=1e-6)


def test_a_global_max_written_as_reducemax_is_a_max_pool():
    """ReduceMax over the spatial axes (tf2onnx's form of Keras'
    GlobalMaxPooling): ONNX's reference values, and the signed graph of
    ``x.amax((2, 3))`` in PyTorch."""
    from deepglass.graph import SignedGraph

    w, fc = _rand(4, 2, 3, 3), _rand(3, 4)
    nodes = [helper.make_node("Conv", ["X", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("ReduceMax", ["r"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Gemm", ["m", "fc"], ["Y"], transB=1)]
    model = _model(nodes, {"X": [1, 2, 6, 6]}, {"Y": [1, 3]}, {"w": w, "fc": fc})
    module = onnx_to_module(model)
    x = _rand(2, 2, 6, 6)
    want = np.concatenate([_reference(model, X=x[i:i + 1])[0] for i in range(2)])
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-5, atol=1e-5)

    class Same(nn.Module):
        def forward(self, t):
            h = torch.relu(F.conv2d(t, torch.from_numpy(w))).amax((2, 3))
            return h @ torch.from_numpy(fc).T

    g, ref = SignedGraph.from_module(module, (2, 6, 6)), SignedGraph.from_module(Same(), (2, 6, 6))
    assert [nb.op for nb in g.node_blocks] == ["input", "conv", "maxpool", "dense"]
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray())


def test_a_slice_of_the_batch_axis_to_its_end_is_the_whole_batch():
    """A file of batch 1 slicing axis 0 to INT64_MAX (Silero VAD's STFT keeps
    ``[0:]`` of its convolution): the whole batch at any batch size, equal
    sample by sample to ONNX's reference (it was the first sample only)."""
    big = np.iinfo(np.int64).max
    nodes = [helper.make_node("Conv", ["X", "w"], ["c"], name="conv"),
             helper.make_node("Slice", ["c", "s", "e", "ax"], ["Y"], name="keep")]
    model = _model(nodes, {"X": [1, 2, 6]}, {"Y": [1, 3, 4]},
                   {"w": _rand(3, 2, 3), "s": np.array([0, 0], np.int64),
                    "e": np.array([big, 3], np.int64), "ax": np.array([0, 1], np.int64)})
    module = onnx_to_module(model)
    x = _rand(4, 2, 6)
    want = np.concatenate([_reference(model, X=x[i:i + 1])[0] for i in range(4)])
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-5, atol=1e-5)
    assert not module.batch_one_only


@pytest.mark.parametrize("node,inits,out", [
    (helper.make_node("Gather", ["r", "i0"], ["Y"], axis=0), {"i0": np.array(0, np.int64)}, [3, 4]),
    (helper.make_node("Squeeze", ["r", "ax0"], ["Y"]), {"ax0": np.array([0], np.int64)}, [3, 4]),
    (helper.make_node("Unsqueeze", ["r", "ax0"], ["Y"]), {"ax0": np.array([0], np.int64)}, [1, 1, 3, 4]),
    (helper.make_node("Transpose", ["r"], ["Y"], perm=[1, 0, 2]), {}, [3, 1, 4]),
    (helper.make_node("Concat", ["r", "r"], ["Y"], axis=0), {}, [2, 3, 4]),
    (helper.make_node("Flatten", ["r"], ["Y"], axis=0), {}, [1, 12]),
    (helper.make_node("Split", ["r", "halves"], ["Y", "rest"], axis=0), {"halves": np.array([1, 0], np.int64)},
     [1, 3, 4]),
    (helper.make_node("ReduceMean", ["r"], ["Y"], keepdims=0), {}, []),
    (helper.make_node("Softmax", ["r"], ["Y"], axis=0), {}, [1, 3, 4]),
    (helper.make_node("Pad", ["r", "pads"], ["Y"]), {"pads": np.array([1, 0, 0, 0, 0, 0], np.int64)}, [2, 3, 4]),
], ids=["gather", "squeeze", "unsqueeze", "transpose", "concat", "flatten", "split", "reduce-all", "softmax", "pad"])
def test_ops_on_the_batch_axis_make_the_file_batch_one_only(node, inits, out):
    """Gather, Squeeze, Unsqueeze, Transpose, Concat, Flatten, Split, a reduction, a
    softmax and padding on axis 0 of an activation are right at the file's
    batch of 1 only (at batch 3 they would pick, keep
    or mix samples): the module runs the graph once per sample, joining the
    outputs on axis 0 (stacked where the graph drops its batch axis), and says
    so."""
    from deepglass.graph.trace import forward_batch_size

    nodes = [helper.make_node("Conv", ["X", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]), node]
    model = _model(nodes, {"X": [1, 2, 6]}, {"Y": out}, {"w": _rand(3, 2, 3), **inits})
    module = onnx_to_module(model)
    x = _rand(3, 2, 6)
    each = [_reference(model, X=x[i:i + 1])[0] for i in range(3)]
    want = np.concatenate(each) if each[0].ndim and each[0].shape[0] == 1 else np.stack(each)
    np.testing.assert_allclose(_run(module, x[:1]), each[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-5, atol=1e-5)   # sample by sample
    assert module.batch_one_only and forward_batch_size(module, 64) == 1


def test_input_shapes_per_input(tmp_path):
    model = _two_input_model()
    for dim in (model.graph.input[0].type.tensor_type.shape.dim[2], model.graph.input[1].type.tensor_type.shape.dim[2]):
        dim.dim_param = "H"
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DeepglassError, match="input .A. has shape \\[\\?, 2, \\?, 3\\]: pass input_shape"):
        load_onnx(path)
    assert load_onnx(path, input_shape=[(2, 5, 3), (2, 5, 3)]).default_input_shapes == ((2, 5, 3), (2, 5, 3))
    assert load_onnx(path, input_shape={"A": (2, 4, 3), "B": (2, 4, 3)}).default_input_shape == ((2, 4, 3),) * 2
    with pytest.raises(DeepglassError, match="2 inputs \\(A, B\\): give one shape per input"):
        load_onnx(path, input_shape=(2, 4, 3))
    with pytest.raises(DeepglassError, match="not ONNX inputs"):
        load_onnx(path, input_shape={"C": (2, 4, 3)})
    from deepglass.zoo import load_model     # one shape per input, as the CLI passes them
    assert load_model(path, input_shape=[(2, 5, 3), (2, 5, 3)]).default_input_shape == \
        ((2, 5, 3), (2, 5, 3))
    with pytest.raises(DeepglassError, match="positive integers"):
        load_model(path, input_shape=[(2, 5, 3), (2, 5.5, 3)])


# -- activations ---------------------------------------------------------------------------

def _erf(x):
    from scipy.special import erf

    return erf(x)


UNARY = {
    "HardSwish": ({}, lambda x: x * np.clip(x + 3, 0, 6) / 6),
    "Sigmoid": ({}, lambda x: 1 / (1 + np.exp(-x))),
    "Tanh": ({}, np.tanh),
    "Exp": ({}, np.exp),
    "Softplus": ({}, lambda x: np.log1p(np.exp(x))),
    "Mish": ({}, lambda x: x * np.tanh(np.log1p(np.exp(x)))),
    "Gelu": ({}, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "Elu": ({"alpha": 0.7}, lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
    "Neg": ({}, np.negative),
    "HardSigmoid": ({}, lambda x: np.clip(0.2 * x + 0.5, 0, 1)),
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_activation_closed_form(op):
    attrs, ref = UNARY[op]
    model = _model([helper.make_node(op, ["X"], ["Y"], name="act", **attrs)], {"X": [1, 3, 4, 4]},
                   {"Y": [1, 3, 4, 4]}, opset=20)
    x = _rand(2, 3, 4, 4) * 3
    np.testing.assert_allclose(_run(onnx_to_module(model), x), ref(x), rtol=2e-6, atol=2e-6)


def test_sqrt_pow_reciprocal_chain():
    nodes = [helper.make_node("Pow", ["X", "three"], ["p"], name="pow"),
             helper.make_node("Sqrt", ["p"], ["s"], name="sqrt"),
             helper.make_node("Reciprocal", ["s"], ["Y"], name="recip")]
    model = _model(nodes, {"X": [1, 5]}, {"Y": [1, 5]}, {"three": np.array(3.0, np.float32)})
    x = RNG.uniform(0.5, 2, (3, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(onnx_to_module(model), x), x ** -1.5, rtol=1e-5)


def test_hardsigmoid_pytorch_constants_become_the_module():
    model = _model([helper.make_node("HardSigmoid", ["X"], ["h"], name="hs", alpha=1 / 6, beta=0.5),
                    helper.make_node("Mul", ["X", "h"], ["Y"], name="gate")], {"X": [1, 6]}, {"Y": [1, 6]})
    module = onnx_to_module(model)
    assert any(isinstance(m, nn.Hardsigmoid) for m in module.modules())
    x = np.linspace(-5, 5, 12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_allclose(_run(module, x), x * np.clip(x / 6 + 0.5, 0, 1), rtol=1e-6, atol=1e-7)


def test_prelu_per_channel_is_nn_prelu_with_the_learned_slopes():
    slope = np.array([0.25, -0.5, 1.5], np.float32).reshape(3, 1, 1)
    model = _model([helper.make_node("PRelu", ["X", "slope"], ["Y"], name="prelu")], {"X": [1, 3, 2, 2]},
                   {"Y": [1, 3, 2, 2]}, {"slope": slope})
    module = onnx_to_module(model)
    prelu = [m for m in module.modules() if isinstance(m, nn.PReLU)]
    assert len(prelu) == 1 and prelu[0].weight.tolist() == [0.25, -0.5, 1.5]
    x = _rand(2, 3, 2, 2)
    np.testing.assert_allclose(_run(module, x), np.where(x >= 0, x, slope * x), rtol=1e-6, atol=1e-7)
    _exportable(module, x)


def test_prelu_per_element_slope_is_written_as_where():
    slope = _rand(2, 2)
    model = _model([helper.make_node("PRelu", ["X", "slope"], ["Y"], name="prelu")], {"X": [1, 3, 2, 2]},
                   {"Y": [1, 3, 2, 2]}, {"slope": slope})
    module = onnx_to_module(model)
    assert not any(isinstance(m, nn.PReLU) for m in module.modules()) and "where" in _fx_ops(module)
    x = _rand(2, 3, 2, 2)
    np.testing.assert_allclose(_run(module, x), np.where(x >= 0, x, slope * x), rtol=1e-6, atol=1e-7)


def test_written_out_gelu_becomes_nn_gelu():
    """torch's opset < 20 export: Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5."""
    nodes = [helper.make_node("Div", ["X", "sqrt2"], ["d"], name="div"),
             helper.make_node("Erf", ["d"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["a"], name="add"),
             helper.make_node("Mul", ["X", "a"], ["m"], name="mul"),
             helper.make_node("Mul", ["m", "half"], ["Y"], name="half")]
    model = _model(nodes, {"X": [1, 8]}, {"Y": [1, 8]}, {"sqrt2": np.array(math.sqrt(2), np.float32),
                                                       "one": np.array(1.0, np.float32),
                                                       "half": np.array(0.5, np.float32)})
    module = onnx_to_module(model)
    assert [type(m) for m in module.children()] == [nn.GELU] and "erf" not in _fx_ops(module)
    x = _rand(3, 8) * 2
    np.testing.assert_allclose(_run(module, x), 0.5 * x * (1 + _erf(x / math.sqrt(2))), rtol=1e-6, atol=1e-6)



def test_written_out_tanh_gelu_becomes_nn_gelu_tanh():
    """torch's TorchScript-based export of ``nn.GELU(approximate="tanh")`` (timm's
    gelu_tanh, ConvNeXt's test nets): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    is ``nn.GELU(approximate="tanh")``, so the signed graph is the module's (the
    0.5 of the written-out form was left on the next layer's edges)."""
    import io

    from deepglass.graph import SignedGraph

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 1), nn.GELU(approximate="tanh"), nn.Conv2d(4, 3, 1)).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.randn(1, 2, 3, 3),), buf, dynamo=False, opset_version=17)
    module = onnx_to_module(onnx.load_from_string(buf.getvalue()))
    assert any(isinstance(m, nn.GELU) and m.approximate == "tanh" for m in module.modules())
    assert "tanh" not in _fx_ops(module)
    x = _rand(2, 2, 3, 3)
    np.testing.assert_allclose(_run(module, x), net(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(SignedGraph.from_module(module, (2, 3, 3)).to_scipy().toarray(),
                               SignedGraph.from_module(net, (2, 3, 3)).to_scipy().toarray(),
                               rtol=1e-6)


# -- normalizations -------------------------------------------------------------------------

def _layer_norm(x, axes, eps, g=1.0, b=0.0):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def test_layer_normalization_over_the_trailing_axes():
    g, b = _rand(4, 5), _rand(4, 5)
    model = _model([helper.make_node("LayerNormalization", ["X", "g", "b"], ["Y"], name="ln", axis=2, epsilon=1e-3)],
                   {"X": [1, 3, 4, 5]}, {"Y": [1, 3, 4, 5]}, {"g": g, "b": b})
    module = onnx_to_module(model)
    (ln,) = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
    assert ln.normalized_shape == (4, 5) and ln.eps == pytest.approx(1e-3)
    x = _rand(2, 3, 4, 5)
    np.testing.assert_allclose(_run(module, x), _layer_norm(x, (2, 3), 1e-3, g, b), rtol=1e-5, atol=1e-5)


def test_written_out_layer_norm_becomes_one_layer_norm():
    """ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add (torch's opset < 17 export) -> nn.LayerNorm."""
    g, b = _rand(6), _rand(6)
    nodes = [helper.make_node("ReduceMean", ["X"], ["mu"], name="mean", axes=[-1]),
             helper.make_node("Sub", ["X", "mu"], ["d"], name="sub"),
             helper.make_node("Pow", ["d", "two"], ["sq"], name="pow"),
             helper.make_node("ReduceMean", ["sq"], ["var"], name="var", axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
             helper.make_node("Sqrt", ["ve"], ["sd"], name="sqrt"),
             helper.make_node("Div", ["d", "sd"], ["n"], name="div"),
             helper.make_node("Mul", ["n", "g"], ["gn"], name="gamma"),
             helper.make_node("Add", ["gn", "b"], ["Y"], name="beta")]
    model = _model(nodes, {"X": [1, 2, 6]}, {"Y": [1, 2, 6]},
                   {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32), "g": g, "b": b}, opset=13)
    module = onnx_to_module(model)
    (ln,) = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
    np.testing.assert_array_equal(ln.weight.detach().numpy(), g)
    np.testing.assert_array_equal(ln.bias.detach().numpy(), b)
    assert not {"sqrt", "pow", "sub", "div"} & _fx_ops(module) and len(module.graph.nodes) == 3
    x = _rand(3, 2, 6) * 4 + 1
    np.testing.assert_allclose(_run(module, x), _layer_norm(x, -1, 1e-5, g, b), rtol=1e-5, atol=1e-5)
    assert "aten.native_layer_norm.default" in _exportable(module, x)


def test_group_and_instance_normalization():
    x = _rand(2, 6, 3, 3) * 2 + 1
    scale, bias = _rand(6), _rand(6)
    grouped = x.reshape(2, 3, -1)
    mu, var = grouped.mean(-1, keepdims=True), grouped.var(-1, keepdims=True)
    ref_group = ((grouped - mu) / np.sqrt(var + 1e-5)).reshape(x.shape) * scale[:, None, None] + bias[:, None, None]
    model = _model([helper.make_node("GroupNormalization", ["X", "s", "b"], ["Y"], name="gn", num_groups=3)],
                   {"X": [1, 6, 3, 3]}, {"Y": [1, 6, 3, 3]}, {"s": scale, "b": bias}, opset=21)
    module = onnx_to_module(model)
    assert any(isinstance(m, nn.GroupNorm) and m.num_groups == 3 for m in module.modules())
    np.testing.assert_allclose(_run(module, x), ref_group, rtol=1e-5, atol=1e-5)
    per_group = {"s": _rand(3), "b": _rand(3)}  # opset 18: one scale and bias per group
    model = _model([helper.make_node("GroupNormalization", ["X", "s", "b"], ["Y"], name="gn", num_groups=3)],
                   {"X": [1, 6, 3, 3]}, {"Y": [1, 6, 3, 3]}, per_group, opset=18, check=False)  # deprecated op
    per_channel = {k: v.repeat(2)[:, None, None] for k, v in per_group.items()}
    want = ((grouped - mu) / np.sqrt(var + 1e-5)).reshape(x.shape) * per_channel["s"] + per_channel["b"]
    np.testing.assert_allclose(_run(onnx_to_module(model), x), want, rtol=1e-5, atol=1e-5)
    model = _model([helper.make_node("InstanceNormalization", ["X", "s", "b"], ["Y"], name="in", epsilon=1e-3)],
                   {"X": [1, 6, 3, 3]}, {"Y": [1, 6, 3, 3]}, {"s": scale, "b": bias})
    mu, var = x.mean((2, 3), keepdims=True), x.var((2, 3), keepdims=True)
    ref_inst = (x - mu) / np.sqrt(var + 1e-3) * scale[:, None, None] + bias[:, None, None]
    np.testing.assert_allclose(_run(onnx_to_module(model), x), ref_inst, rtol=1e-5, atol=1e-5)


def test_group_norm_written_with_instance_norm_becomes_nn_group_norm():
    """torch's opset < 18 export of nn.GroupNorm: Reshape -> InstanceNormalization -> Reshape -> Mul -> Add."""
    torch.manual_seed(0)
    gn = nn.GroupNorm(2, 4)
    with torch.no_grad():
        gn.weight.normal_()
        gn.bias.normal_()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), gn).eval()
    x = torch.randn(3, 3, 6, 6)
    module = _torch_to_onnx_module(model, x[:1], opset=13)
    norms = [m for m in module.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 1 and not any(isinstance(m, nn.InstanceNorm1d) for m in module.modules())
    torch.testing.assert_close(norms[0].weight, gn.weight)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_l2_is_a_statistic_of_the_response_norm(opset):
    """ReduceL2 (axes an attribute to opset 17, an input from 18) is the norm;
    ConvNeXt-V2's response norm ``c + g * (c * n / mean(n)) + b`` written with
    it adds no edge: the convolution's edges rescaled by ``1 + g`` per channel."""
    axes = {"axes": [2, 3]} if opset < 18 else {}
    ins = ["c"] if opset < 18 else ["c", "ax"]
    nodes = [helper.make_node("Conv", ["X", "w"], ["c"], name="conv"),
             helper.make_node("ReduceL2", ins, ["n"], name="l2", keepdims=1, **axes),
             helper.make_node("ReduceMean", ["n"] if opset < 18 else ["n", "ch"], ["nm"],
                              name="mean", keepdims=1, **({"axes": [1]} if opset < 18 else {})),
             helper.make_node("Add", ["nm", "eps"], ["d"], name="eps_add"),
             helper.make_node("Div", ["n", "d"], ["r"], name="ratio"),
             helper.make_node("Mul", ["c", "r"], ["cr"], name="scale"),
             helper.make_node("Mul", ["cr", "g"], ["gcr"], name="gain"),
             helper.make_node("Add", ["gcr", "bb"], ["gb"], name="beta"),
             helper.make_node("Add", ["gb", "c"], ["Y"], name="residual")]
    w, g = _rand(3, 2, 3, 3), _rand(1, 3, 1, 1)
    model = _model(nodes, {"X": ["N", 2, 5, 5]}, {"Y": ["N", 3, 3, 3]},
                   {"w": w, "ax": np.array([2, 3], np.int64), "ch": np.array([1], np.int64),
                    "eps": np.array(1e-6, np.float32), "g": g, "bb": _rand(1, 3, 1, 1)}, opset=opset)
    module = onnx_to_module(model)
    x = _rand(2, 2, 5, 5)
    np.testing.assert_allclose(_run(module, x), _reference(model, X=x)[0], rtol=1e-5, atol=1e-5)
    graph = SignedGraph.from_module(module, (2, 5, 5))
    plain = nn.Conv2d(2, 3, 3, bias=False)
    with torch.no_grad():
        plain.weight.copy_(torch.from_numpy(w) * (1 + torch.from_numpy(g).reshape(3, 1, 1, 1)))
    ref = SignedGraph.from_module(plain, (2, 5, 5))
    assert (graph.n_nodes, graph.n_edges) == (ref.n_nodes, ref.n_edges)
    np.testing.assert_allclose(graph.to_scipy().toarray(), ref.to_scipy().toarray(), rtol=1e-5,
                               atol=1e-6)


def test_reduce_mean_softmax_and_reindexing():
    """ReduceMean over (2, 3), Softmax over channels, Split, Gather (scalar and list), Unsqueeze,
    Squeeze, Slice and Concat on activations."""
    nodes = [helper.make_node("ReduceMean", ["X"], ["m"], name="mean", axes=[2, 3], keepdims=0),
             helper.make_node("Softmax", ["X"], ["sm"], name="softmax", axis=1),
             helper.make_node("Split", ["sm", "sizes"], ["p", "q"], name="split", axis=1),
             helper.make_node("Concat", ["q", "p"], ["Y1"], name="cat", axis=1),
             helper.make_node("Gather", ["X", "c1"], ["g"], name="gather1", axis=1),
             helper.make_node("Unsqueeze", ["g", "ax1"], ["u"], name="unsq"),
             helper.make_node("Gather", ["X", "idx"], ["gl"], name="gather_list", axis=1),
             helper.make_node("Concat", ["u", "gl"], ["ug"], name="cat2", axis=1),
             helper.make_node("Slice", ["ug", "st", "en", "axs"], ["Y2"], name="slice"),
             helper.make_node("Unsqueeze", ["m", "ax23"], ["m1"], name="unsq2"),
             helper.make_node("Squeeze", ["m1", "ax23"], ["Y3"], name="squeeze")]
    inits = {"sizes": np.array([1, 3], np.int64), "c1": np.array(1, np.int64), "ax1": np.array([1], np.int64),
             "idx": np.array([3, 0], np.int64), "st": np.array([1], np.int64), "en": np.array([3], np.int64),
             "axs": np.array([2], np.int64), "ax23": np.array([2, 3], np.int64)}
    model = _model(nodes, {"X": [1, 4, 3, 3]}, {"Y1": [1, 4, 3, 3], "Y2": [1, 3, 2, 3], "Y3": [1, 4]}, inits, opset=13)
    module = onnx_to_module(model)
    x = _rand(2, 4, 3, 3)
    y1, y2, y3 = _run(module, x)
    sm = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(y1, np.concatenate([sm[:, 1:], sm[:, :1]], 1), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(y2, np.concatenate([x[:, 1:2], x[:, [3, 0]]], 1)[:, :, 1:3])
    np.testing.assert_allclose(y3, x.mean((2, 3)), rtol=1e-6, atol=1e-7)
    _exportable(module, x)


@pytest.mark.parametrize("starts,ends,steps", [
    ([-1], [-1000], [-1]),            # the whole axis reversed (torch.flip)
    ([10, 1], [-10, -100], [-2, -1]),  # clamped starts, stride 2, two axes
    ([3, 0], [0, 4], [-1, 1]),        # a reversed part of one axis, a forward slice of the other
])
def test_reversing_slice_is_a_reindexing(starts, ends, steps):
    """Slice with negative steps (ONNX clamping) against the ONNX reference; its signed graph is
    the Jacobian of the network it sits in (a re-indexing adds no edge of its own)."""
    from deepglass.graph import SignedGraph

    w = _rand(2, 3, 2, 2)
    nodes = [helper.make_node("Slice", ["X", "st", "en", "axs", "sp"], ["s"], name="reverse"),
             helper.make_node("Conv", ["s", "W"], ["Y"], name="conv")]
    inits = {"st": np.array(starts, np.int64), "en": np.array(ends, np.int64),
             "axs": np.array([3, 2][:len(starts)], np.int64), "sp": np.array(steps, np.int64), "W": w}
    model = _model(nodes, {"X": [1, 3, 5, 5]}, {"Y": [1, 2, None, None]}, inits, check=False)
    module = onnx_to_module(model)
    x = _rand(2, 3, 5, 5)
    np.testing.assert_allclose(_run(module, x), _reference(model, X=x)[0], rtol=1e-5, atol=1e-5)
    net = module.double()
    g = SignedGraph.from_module(net, (3, 5, 5))
    J = torch.autograd.functional.jacobian(lambda t: net(t), torch.zeros(1, 3, 5, 5, dtype=torch.float64))
    J = J.reshape(-1, 75).numpy()
    np.testing.assert_allclose(g.to_scipy().toarray()[:75, 75:], J.T, atol=1e-12)
    assert g.n_edges == int((J != 0).sum())


class _PadThenConv(nn.Module):
    """``F.pad`` on a 4-d value: the exporter computes the pads with a reversing Slice of a constant."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, (5, 1))

    def forward(self, x):
        return self.conv(torch.nn.functional.pad(x[:, None, :, None], (0, 0, 2, 3)))


def test_exported_pad_with_a_constant_reversal_imports():
    """torch's exporter writes ``F.pad`` as Pad of constant pads reversed by Slice(step -1):
    folded at import; outputs and signed graph equal those of the PyTorch module."""
    from deepglass.graph import SignedGraph

    torch.manual_seed(0)
    model = _PadThenConv().eval()
    x = torch.randn(1, 16)
    module = _torch_to_onnx_module(model, x)
    y = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(module(y), model(y))
    a, b = SignedGraph.from_module(model, (16,)), SignedGraph.from_module(module, (16,))
    assert (a.n_nodes, a.n_edges) == (b.n_nodes, b.n_edges)
    assert abs(a.to_scipy() - b.to_scipy()).max() < 1e-6


def _pool_reference(x, kind, k, s, begin, end, ceil, include_pad):
    """ONNX pooling by its definition: windows ``[i s - begin, i s - begin + k)`` over the input
    padded ``begin`` / ``end``; a max ignores the padding, a mean divides by the in-bounds
    count (``count_include_pad=0``) or by the window's size inside the padded input (1)."""
    out = []
    for d in range(2):
        span = x.shape[2 + d] + begin[d] + end[d] - k[d]
        out.append((-(-span // s[d]) if ceil else span // s[d]) + 1)
    y = np.zeros(x.shape[:2] + tuple(out), np.float32)
    H, W = x.shape[2:]
    for i in range(out[0]):
        for j in range(out[1]):
            r0, c0 = i * s[0] - begin[0], j * s[1] - begin[1]
            win = x[:, :, max(r0, 0):min(r0 + k[0], H), max(c0, 0):min(c0 + k[1], W)]
            if kind == "max":
                y[:, :, i, j] = win.max((2, 3))
            elif include_pad:  # the window clipped to the padded input (as onnxruntime)
                area = (min(r0 + k[0], H + end[0]) - r0) * (min(c0 + k[1], W + end[1]) - c0)
                y[:, :, i, j] = win.sum((2, 3)) / area
            else:
                y[:, :, i, j] = win.sum((2, 3)) / win[0, 0].size
    return y


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("k,s,pads,ceil,size", [
    ((3, 3), (2, 2), [0, 0, 1, 1], 0, 13),   # Caffe's ceil-mode pool as exported (AlexNet, GoogLeNet)
    ((2, 2), (2, 2), [0, 0, 1, 1], 0, 7),    # SAME_UPPER on an odd size
    ((3, 2), (2, 2), [1, 1, 0, 0], 0, 8),    # SAME_LOWER-like: more padding in front
    ((7, 7), (1, 1), [0, 0, 1, 1], 0, 7),    # a window that needs the end padding (stride 1)
    ((3, 3), (2, 2), [0, 1, 1, 1], 1, 10),   # asymmetric in one dimension only, ceil_mode
])
@pytest.mark.parametrize("include_pad", [0, 1])
def test_pools_with_asymmetric_padding(kind, k, s, pads, ceil, size, include_pad):
    """Asymmetric pads (Caffe and TF exports) against ONNX's definition; each imported pool
    has a signed graph, whose edges are the window elements that are not padding."""
    from deepglass.graph import SignedGraph

    if kind == "max" and include_pad:
        pytest.skip("count_include_pad is an AveragePool attribute")
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=pads, ceil_mode=ceil)
    if kind == "avg":
        attrs["count_include_pad"] = include_pad
    op = {"max": "MaxPool", "avg": "AveragePool"}[kind]
    model = _model([helper.make_node(op, ["X"], ["Y"], name="pool", **attrs)],
                   {"X": [1, 2, size, size]}, {"Y": [1, 2, None, None]}, check=False)
    module = onnx_to_module(model)
    x = _rand(3, 2, size, size)
    want = _pool_reference(x, kind, k, s, pads[:2], pads[2:], ceil, include_pad)
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-5, atol=1e-6)
    g = SignedGraph.from_module(module, (2, size, size))
    n_in = 2 * size * size
    J = torch.autograd.functional.jacobian(lambda t: module(t), torch.from_numpy(x[:1])).reshape(-1, n_in)
    A = g.to_scipy().toarray()[:n_in, n_in:]
    if kind == "avg":   # a max pool's Jacobian keeps one element per window
        np.testing.assert_array_equal(A != 0, J.numpy().T != 0)
    assert g.n_edges == 2 * _window_edges(want.shape[2:], k, s, pads[:2], size)


def _window_edges(out, k, s, begin, size):
    """Edges of a pool: in-bounds elements summed over the windows."""
    n = 1
    for d in range(2):
        n *= sum(min(i * s[d] - begin[d] + k[d], size) - max(i * s[d] - begin[d], 0) for i in range(out[d]))
    return n


# -- padding, resampling, transposed convolution --------------------------------------------

def test_constant_pad_and_border_copies_of_any_axis():
    pads = np.array([0, 0, 1, 2, 0, 1, 0, 3], np.int64)  # begin (N, C, H, W) then end
    model = _model([helper.make_node("Pad", ["X", "pads", "v"], ["Y"], name="pad")], {"X": [1, 2, 3, 3]},
                   {"Y": [1, 3, 4, 8]}, {"pads": pads, "v": np.array(-1.5, np.float32)})
    x = _rand(2, 2, 3, 3)
    want = np.pad(x, [(0, 0), (0, 1), (1, 0), (2, 3)], constant_values=-1.5)
    np.testing.assert_array_equal(_run(onnx_to_module(model), x), want)
    # reflect / edge / wrap padding of the channel axis, which F.pad does not pad:
    # the same copies as a gather; the batch axis is refused by name
    for mode in ("reflect", "edge", "wrap"):
        model = _model([helper.make_node("Pad", ["X", "pads"], ["Y"], name="pad", mode=mode)],
                       {"X": [1, 2, 3, 3]}, {"Y": [1, 4, 3, 4]},
                       {"pads": np.array([0, 1, 0, 0, 0, 1, 0, 1], np.int64)}, opset=19)
        want = np.pad(x, [(0, 0), (1, 1), (0, 0), (0, 1)], mode=mode)
        np.testing.assert_array_equal(_run(onnx_to_module(model), x), want)
        np.testing.assert_array_equal(_reference(model, X=x[:1])[0], want[:1])
    model = _model([helper.make_node("Pad", ["X", "pads"], ["Y"], name="reflect_pad", mode="reflect")],
                   {"X": [2, 2, 3, 3]}, {"Y": [4, 2, 3, 3]}, {"pads": np.array([1, 0, 0, 0, 1, 0, 0, 0], np.int64)})
    with pytest.raises(UnsupportedLayerError, match=r"^ONNX node 'reflect_pad' \(Pad\): mode 'reflect' pads the batch axis$"):
        onnx_to_module(model)


def test_a_signal_padded_by_reflection_before_its_first_convolution():
    """An audio net's front end (Silero VAD's STFT): a (batch, samples) signal
    reflect-padded on its one axis, unsqueezed to a channel and convolved with
    stride: the values of numpy and of ONNX's reference, and the signed graph
    of the same computation written in PyTorch (mirrored samples give parallel
    edges from the samples they copy)."""
    from deepglass.graph import SignedGraph

    w = _rand(4, 1, 4)
    model = _model([helper.make_node("Pad", ["X", "pads"], ["P"], mode="reflect"),
                    helper.make_node("Unsqueeze", ["P", "one"], ["U"]),
                    helper.make_node("Conv", ["U", "W"], ["Y"], strides=[2])],
                   {"X": [1, 16]}, {"Y": [1, 4, 10]},
                   {"pads": np.array([0, 3, 0, 3], np.int64), "one": np.array([1], np.int64), "W": w})
    module = onnx_to_module(model)
    x = _rand(2, 16)
    want = F.conv1d(torch.from_numpy(np.pad(x, [(0, 0), (3, 3)], mode="reflect"))[:, None],
                    torch.from_numpy(w), stride=2).numpy()
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_reference(model, X=x[:1])[0], want[:1], rtol=1e-5, atol=1e-5)

    class Same(nn.Module):
        def forward(self, t):
            return F.conv1d(F.pad(t[:, None], [3, 3], mode="reflect"), torch.from_numpy(w), stride=2)

    g, ref = SignedGraph.from_module(module, (16,)), SignedGraph.from_module(Same(), (16,))
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges) == (16 + 40, 160)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray())


@pytest.mark.parametrize("mode,np_mode,opset", [("reflect", "reflect", 17), ("edge", "edge", 17),
                                                ("wrap", "wrap", 19)])
def test_pad_modes_that_copy_the_border(mode, np_mode, opset):
    """ONNX's reflect / edge / wrap padding is F.pad's reflect / replicate /
    circular: the values of numpy and of ONNX's reference, and, before a
    convolution, the signed graph of the same padding written in PyTorch."""
    from deepglass.graph import SignedGraph

    pads = np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64)
    w = _rand(3, 2, 3, 3)
    model = _model([helper.make_node("Pad", ["X", "pads"], ["P"], mode=mode),
                    helper.make_node("Conv", ["P", "W"], ["Y"])],
                   {"X": [1, 2, 4, 4]}, {"Y": [1, 3, 5, 5]}, {"pads": pads, "W": w}, opset=opset)
    module = onnx_to_module(model)
    x = _rand(1, 2, 4, 4)
    padded = np.pad(x, [(0, 0), (0, 0), (2, 1), (1, 2)], mode=np_mode)
    want = torch.nn.functional.conv2d(torch.from_numpy(padded), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_reference(model, X=x)[0], want, rtol=1e-5, atol=1e-5)
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]

    class Same(nn.Module):
        def forward(self, t):
            return torch.nn.functional.conv2d(
                torch.nn.functional.pad(t, [1, 2, 2, 1], mode=torch_mode), torch.from_numpy(w))

    g, ref = SignedGraph.from_module(module, (2, 4, 4)), SignedGraph.from_module(Same(), (2, 4, 4))
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges) == (32 + 75, 75 * 18)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray())


def _resize_model(mode, ctm, out_hw, scales=None, sizes=None, nearest_mode="round_prefer_floor", in_hw=(4, 5)):
    names = ["X", "", "scales" if scales is not None else "", "sizes" if sizes is not None else ""]
    inits = {}
    if scales is not None:
        inits["scales"] = np.array(scales, np.float32)
    if sizes is not None:
        inits["sizes"] = np.array(sizes, np.int64)
    node = helper.make_node("Resize", names, ["Y"], name="resize", mode=mode, coordinate_transformation_mode=ctm,
                            nearest_mode=nearest_mode)
    return _model([node], {"X": [1, 2, *in_hw]}, {"Y": [1, 2, *out_hw]}, inits, opset=19)


RESIZES = [  # (..., the torch function that computes it)
    ("nearest", "asymmetric", (8, 10), [1, 1, 2, 2], None, "floor", "interpolate"),  # torch's export of nn.Upsample
    ("nearest", "half_pixel", (8, 10), [1, 1, 2, 2], None, "round_prefer_floor", "interpolate"),
    ("nearest", "half_pixel", (7, 8), None, [1, 2, 7, 8], "round_prefer_floor", "index_select"),  # ties: 4 -> 7
    ("nearest", "pytorch_half_pixel", (6, 3), None, [1, 2, 6, 3], "round_prefer_ceil", "interpolate"),
    ("linear", "align_corners", (7, 9), None, [1, 2, 7, 9], "floor", "interpolate"),
    ("linear", "half_pixel", (8, 10), [1, 1, 2, 2], None, "floor", "interpolate"),
    ("linear", "half_pixel", (2, 3), [1, 1, 0.5, 0.6], None, "floor", "interpolate"),
    ("linear", "pytorch_half_pixel", (6, 3), None, [1, 2, 6, 3], "floor", "interpolate"),
    ("linear", "asymmetric", (8, 7), None, [1, 2, 8, 7], "floor", "linear"),  # tf2onnx's bilinear
    ("linear", "half_pixel_symmetric", (3, 8), [1, 1, 0.8, 1.7], None, "floor", "linear"),
    ("cubic", "half_pixel", (8, 10), [1, 1, 2, 2], None, "floor", "interpolate"),  # torch's bicubic
    ("cubic", "align_corners", (7, 9), None, [1, 2, 7, 9], "floor", "interpolate"),
]


@pytest.mark.parametrize("mode,ctm,out_hw,scales,sizes,nearest_mode,fn", RESIZES)
def test_resize_matches_the_onnx_reference(mode, ctm, out_hw, scales, sizes, nearest_mode, fn):
    model = _resize_model(mode, ctm, out_hw, scales, sizes, nearest_mode)
    x = _rand(2, 2, 4, 5)
    want = np.concatenate([_reference(model, X=x[i:i + 1])[0] for i in range(2)])  # sizes name batch 1
    module = onnx_to_module(model)
    got = _run(module, x)
    assert got.shape == want.shape == (2, 2, *out_hw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert fn in _fx_ops(module)
    if fn != "interpolate":  # the exact fallbacks are capturable too
        _exportable(module, x)
    if fn == "linear":       # products with the interpolation matrix: fixed, as an upsampling's
        g = SignedGraph.from_module(module, (2, 4, 5))
        assert all(b.fixed_weights for b in g.edge_blocks) and g.n_edges > 0


@pytest.mark.parametrize("ctm", ["half_pixel", "asymmetric", "pytorch_half_pixel"])
@pytest.mark.parametrize("coeff, exclude", [(-0.5, 0), (-0.5, 1), (-0.75, 1)])
@pytest.mark.parametrize("scales, out_hw", [([1, 1, 2, 1.5], (8, 7)), ([1, 1, 0.5, 0.8], (2, 4))])
def test_a_cubic_resize_f_interpolate_lacks_is_its_interpolation_matrices(ctm, coeff, exclude,
                                                                          scales, out_hw):
    """TensorFlow's bicubic (tf2onnx: cubic, coefficient -0.5) was refused ("no
    F.interpolate equivalent"): it is a fixed linear map, one matrix per axis
    from the ONNX definition (Keys' kernel, edge or excluded taps)."""
    model = _resize_model("cubic", ctm, out_hw, scales)
    node = model.graph.node[0]
    node.attribute.append(helper.make_attribute("cubic_coeff_a", coeff))
    node.attribute.append(helper.make_attribute("exclude_outside", exclude))
    x = _rand(2, 2, 4, 5)
    want = _reference(model, X=x)[0]
    module = onnx_to_module(model)
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-5, atol=1e-5)
    assert "linear" in _fx_ops(module)
    g = SignedGraph.from_module(module, (2, 4, 5))
    assert all(b.fixed_weights for b in g.edge_blocks) and g.n_edges > 0


def test_upsample_and_refused_resize_modes():
    scales = {"scales": np.array([1, 1, 2, 3], np.float32)}
    model = _model([helper.make_node("Upsample", ["X", "scales"], ["Y"], name="up", mode="nearest")],
                   {"X": [1, 2, 3, 3]}, {"Y": [1, 2, 6, 9]}, scales, opset=9)
    x = _rand(2, 2, 3, 3)
    np.testing.assert_array_equal(_run(onnx_to_module(model), x), x.repeat(2, axis=2).repeat(3, axis=3))
    model = _model([helper.make_node("Upsample", ["X", "scales"], ["Y"], name="up", mode="linear")],
                   {"X": [1, 2, 3, 3]}, {"Y": [1, 2, 6, 9]}, scales, opset=9)
    want = _reference(_resize_model("linear", "asymmetric", (6, 9), [1, 1, 2, 3], in_hw=(3, 3)), X=x)[0]
    np.testing.assert_allclose(_run(onnx_to_module(model), x), want, rtol=1e-5, atol=1e-6)  # Upsample: asymmetric
    aa_cubic = _resize_model("cubic", "half_pixel", (8, 10), [1, 1, 2, 2])
    aa_cubic.graph.node[0].attribute.append(helper.make_attribute("antialias", 1))
    aa_cubic.graph.node[0].attribute.append(helper.make_attribute("cubic_coeff_a", -0.75))
    with pytest.raises(UnsupportedLayerError, match=r"^ONNX node 'resize' \(Resize\): antialias=1 "
                                                    r"with .*cubic coefficient -0.75 .* no F.interpolate"):
        onnx_to_module(aa_cubic)
    with pytest.raises(UnsupportedLayerError, match=r"'resize' \(Resize\): coordinate_transformation_mode 'tf_crop_and_resize'"):
        onnx_to_module(_resize_model("linear", "tf_crop_and_resize", (8, 10), [1, 1, 2, 2]))


def _conv_transpose_ref(x, w, b, strides, dil, begin, end, out_pad, group):
    """Brute force from the definition: scatter each input pixel times the kernel, then crop the pads."""
    n, cin, h, wd = x.shape
    cout_g, kh, kw = w.shape[1:]
    full = [strides[0] * (h - 1) + dil[0] * (kh - 1) + 1 + out_pad[0],
            strides[1] * (wd - 1) + dil[1] * (kw - 1) + 1 + out_pad[1]]
    out = np.zeros((n, cout_g * group, *full), np.float64)
    per = cin // group
    for c in range(cin):
        g = c // per
        for i in range(h):
            for j in range(wd):
                for ki in range(kh):
                    for kj in range(kw):
                        out[:, g * cout_g:(g + 1) * cout_g, i * strides[0] + ki * dil[0], j * strides[1] + kj * dil[1]] += (
                            x[:, c, i, j][:, None] * w[c, :, ki, kj])
    out = out[:, :, begin[0]:full[0] - end[0], begin[1]:full[1] - end[1]]
    return out + b[None, :, None, None]


@pytest.mark.parametrize("attrs,begin,end", [
    ({"strides": [2, 2], "dilations": [1, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 0], "group": 2},
     [1, 0], [1, 1]),
    ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, [0, 0], [1, 1]),
    ({"strides": [1, 2], "pads": [0, 2, 1, 0]}, [0, 2], [1, 0]),
])
def test_conv_transpose_brute_force(attrs, begin, end):
    group = attrs.get("group", 1)
    w, b, x = _rand(4, 3, 3, 3), _rand(3 * group), _rand(2, 4, 4, 4)
    want = _conv_transpose_ref(x, w, b, attrs.get("strides"), attrs.get("dilations", [1, 1]), begin, end,
                               attrs.get("output_padding", [0, 0]), group)
    model = _model([helper.make_node("ConvTranspose", ["X", "W", "B"], ["Y"], name="convt", **attrs)],
                   {"X": [1, 4, 4, 4]}, {"Y": [1, 3 * group, *want.shape[2:]]}, {"W": w, "B": b})
    module = onnx_to_module(model)
    assert any(isinstance(m, nn.ConvTranspose2d) for m in module.modules())
    np.testing.assert_allclose(_run(module, x), want, rtol=1e-5, atol=1e-5)
    _exportable(module, x)


@pytest.mark.parametrize("pads", [[0, 0, 1, 1], [0, 1, 1, 0], [1, 1, 1, 1]])
def test_a_conv_transpose_cropped_at_its_end_has_no_cropped_nodes(pads):
    """tf2onnx's "same" transposed convolution (pads [0, 0, 1, 1], stride 2) was
    a layer of the full 17 x 17 output and a slice: the cropped row and column
    stayed as 99 nodes and 564 edges of the layer.  It is now the layer of the
    flipped signal, cropped at its start: the graph of the 16 x 16 output."""
    w, b = _rand(4, 3, 3, 3), np.zeros(3, np.float32)
    attrs = {"strides": [2, 2], "pads": pads}
    begin, end = pads[:2], pads[2:]
    out = [2 * 7 + 3 - begin[d] - end[d] for d in range(2)]
    model = _model([helper.make_node("ConvTranspose", ["X", "W", "B"], ["Y"], name="convt",
                                     **attrs)],
                   {"X": [1, 4, 8, 8]}, {"Y": [1, 3, *out]}, {"W": w, "B": b})
    module = onnx_to_module(model)
    x = _rand(2, 4, 8, 8)
    np.testing.assert_allclose(_run(module, x), _conv_transpose_ref(
        x, w, b, [2, 2], [1, 1], begin, end, [0, 0], 1), rtol=1e-5, atol=1e-5)
    g = SignedGraph.from_module(module, (4, 8, 8), dtype=torch.float64)
    assert g.n_nodes == 4 * 64 + 3 * out[0] * out[1]
    # every edge is one term of the output: (input pixel, tap) pairs that land inside
    terms = sum(1 for i in range(8) for j in range(8) for ki in range(3) for kj in range(3)
                if 0 <= 2 * i + ki - begin[0] < out[0] and 0 <= 2 * j + kj - begin[1] < out[1])
    assert g.n_edges == terms * 4 * 3
    # the matrix is the layer's Jacobian (it is linear: the bias is 0), read at
    # the output's nodes (the layer's own nodes are those of the flipped map)
    J = np.stack([_conv_transpose_ref(e.reshape(1, 4, 8, 8), w, b, [2, 2], [1, 1], begin, end,
                                      [0, 0], 1).reshape(-1) for e in np.eye(256)], 1)
    A = g.to_scipy().toarray()
    np.testing.assert_allclose(A[:256][:, g.output_index].T, J, rtol=1e-6, atol=1e-6)


def test_shape_arithmetic_folds_and_selection_on_activations_is_refused():
    """Dynamic-shape exports compute shapes with Shape/Equal/Where/ConstantOfShape/Range: folded;
    Expand of an activation broadcasts it; Where with a constant condition masks an activation
    (a fixed masking); a condition computed from an activation is a selection and refused."""
    nodes = [helper.make_node("Shape", ["B"], ["s"], name="shape"),
             helper.make_node("Equal", ["s", "minus1"], ["eq"], name="eq"),
             helper.make_node("Where", ["eq", "ones", "s"], ["target"], name="where_shape"),
             helper.make_node("Expand", ["A", "target"], ["e"], name="expand"),
             helper.make_node("Range", ["r0", "r1", "r2"], ["r"], name="range"),
             helper.make_node("ConstantOfShape", ["rlen"], ["zeros"], name="const_of_shape",
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Add", ["zeros", "r"], ["w"], name="weights"),
             helper.make_node("Mul", ["e", "B"], ["m"], name="gate"),
             helper.make_node("Mul", ["m", "w"], ["Y"], name="scale")]
    inits = {"minus1": np.array([-1, -1, -1, -1], np.int64), "ones": np.array([1, 1, 1, 1], np.int64),
             "r0": np.array(0, np.float32), "r1": np.array(4, np.float32), "r2": np.array(1, np.float32),
             "rlen": np.array([4], np.int64)}
    model = _model(nodes, {"A": [1, 3, 1, 1], "B": [1, 3, 2, 4]}, {"Y": [1, 3, 2, 4]}, inits)
    module = onnx_to_module(model)
    a, b = _rand(2, 3, 1, 1), _rand(2, 3, 2, 4)
    np.testing.assert_allclose(_run(module, a, b), a * b * (0.5 + np.arange(4, dtype=np.float32)), rtol=1e-6, atol=1e-7)
    _exportable(module, a, b)
    masked = _model([helper.make_node("Where", ["c", "X", "z"], ["Y"], name="mask")], {"X": [1, 3]},
                    {"Y": [1, 3]}, {"c": np.array([True, False, True]), "z": np.zeros(3, np.float32)})
    x = _rand(2, 3)
    np.testing.assert_array_equal(_run(onnx_to_module(masked), x), np.where([True, False, True], x, 0))
    sel = _model([helper.make_node("Greater", ["X", "z"], ["c"], name="positive"),
                  helper.make_node("Where", ["c", "X", "z"], ["Y"], name="select")], {"X": [1, 3]},
                 {"Y": [1, 3]}, {"z": np.zeros(3, np.float32)})
    _one_line_error(lambda: onnx_to_module(sel),
                    r"^ONNX node 'positive' \(Greater\): data-dependent control flow or selection")


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_of_constants_is_folded(fmod):
    """Mod on constant shape values (the TorchScript exporter's nn.Unflatten) is folded:
    fmod=0 takes the divisor's sign like Python's %, fmod=1 the dividend's like C's fmod,
    as the ONNX reference does; Mod of an activation is refused."""
    nodes = [helper.make_node("Mod", ["a", "b"], ["r"], name="mod", fmod=fmod),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Add", ["X", "rf"], ["Y"], name="add")]
    inits = {"a": np.array([-7, 7, -7, 7], np.int64), "b": np.array([3, 3, -3, -3], np.int64)}
    model = _model(nodes, {"X": [1, 4]}, {"Y": [1, 4]}, inits)
    x = _rand(1, 4)
    np.testing.assert_array_equal(_run(onnx_to_module(model), x), _reference(model, X=x)[0])
    live = _model([helper.make_node("Mod", ["X", "c"], ["Y"], name="mod_x", fmod=1)], {"X": [1, 4]},
                  {"Y": [1, 4]}, {"c": np.full(4, 2.0, np.float32)})
    _one_line_error(lambda: onnx_to_module(live), r"^ONNX node 'mod_x' \(Mod\): on an activation")


def test_unflatten_through_the_torchscript_based_exporter():
    """nn.Unflatten exported with dynamo=False computes its target shape with Mod/Slice/Concat
    on static sizes (it was refused as 'unsupported op Mod'): the import equals the module,
    runs at any batch size, and has the module's signed graph."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Unflatten(1, (4, 4, 4)),
                        nn.Conv2d(4, 2, 1)).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 4, 4),), buf, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    assert "Mod" in {n.op_type for n in proto.graph.node}
    module = onnx_to_module(proto)
    assert not module.batch_one_only
    x = torch.randn(3, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=1e-5, atol=1e-6)
    g = SignedGraph.from_module(module, (3, 4, 4), dtype=torch.float64)
    ref = SignedGraph.from_module(net, (3, 4, 4), dtype=torch.float64)
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    assert abs(g.to_scipy() - ref.to_scipy()).max() < 1e-6


def _shape_loop_model():
    """X [1, 2, 3, 4]; a Loop over the 3 static sizes after the batch (TorchScript's shape
    check in F.group_norm) carries their product and scans them; Y1 = X reshaped to
    [-1, product], Y2 = Y1 reshaped back by the scanned sizes, Y3 = X reshaped to [0, 2, 12]
    by an If on a constant condition (else [0, 24])."""
    int_scalar = [helper.make_tensor_value_info(n, TensorProto.INT64, []) for n in ("i", "p_in")]
    body = helper.make_graph(
        [helper.make_node("Add", ["i", "one"], ["k"]),
         helper.make_node("Gather", ["s", "k"], ["d"], axis=0),
         helper.make_node("Mul", ["p_in", "d"], ["p_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["d"], ["d_scan"])],
        "body", [int_scalar[0], helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), int_scalar[1]],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("p_out", TensorProto.INT64, []),
         helper.make_tensor_value_info("d_scan", TensorProto.INT64, [])])
    branch = {name: helper.make_graph(
        [helper.make_node("Constant", [], [f"t_{name}"], value=numpy_helper.from_array(np.array(v, np.int64)))],
        name, [], [helper.make_tensor_value_info(f"t_{name}", TensorProto.INT64, [len(v)])])
        for name, v in (("then", [0, 2, 12]), ("other", [0, 24]))}
    nodes = [helper.make_node("Shape", ["X"], ["s"], name="shape"),
             helper.make_node("Loop", ["trips", "true", "p0"], ["p", "dims"], name="size_loop", body=body),
             helper.make_node("Unsqueeze", ["p", "zero"], ["p1"], name="unsqueeze"),
             helper.make_node("Concat", ["minus1", "p1"], ["flat"], axis=0, name="flat_shape"),
             helper.make_node("Reshape", ["X", "flat"], ["Y1"], name="flatten"),
             helper.make_node("Concat", ["minus1", "dims"], ["back"], axis=0, name="back_shape"),
             helper.make_node("Reshape", ["Y1", "back"], ["Y2"], name="unflatten"),
             helper.make_node("If", ["true"], ["halves"], name="branch", then_branch=branch["then"],
                              else_branch=branch["other"]),
             helper.make_node("Reshape", ["X", "halves"], ["Y3"], name="halve")]
    inits = {"trips": np.array(3, np.int64), "true": np.array(True), "p0": np.array(1, np.int64),
             "one": np.array(1, np.int64), "zero": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    return _model(nodes, {"X": [1, 2, 3, 4]}, {"Y1": [1, 24], "Y2": [1, 2, 3, 4], "Y3": [1, 2, 12]}, inits)


def test_loop_and_if_on_constants_are_run_at_conversion_time():
    """A Loop whose trip count, carried values and outer reads are constants (static
    shape arithmetic) is unrolled at conversion time, carried values and scan outputs
    alike (ONNX stacks the scanned scalars into a 1-d tensor), and an If on a constant
    condition takes its branch: the module is the reshapes at any batch size."""
    module = onnx_to_module(_shape_loop_model())
    x = _rand(3, 2, 3, 4)
    y1, y2, y3 = _run(module, x)
    np.testing.assert_array_equal(y1, x.reshape(3, 24))
    np.testing.assert_array_equal(y2, x)
    np.testing.assert_array_equal(y3, x.reshape(3, 2, 12))
    assert not module.batch_one_only


def test_unused_control_flow_is_dropped_and_data_dependent_control_flow_refused():
    """A Loop no value reads (a shape check whose raise the exporter dropped) is dropped,
    whatever it reads; a Loop carrying an activation into the output is refused as
    data-dependent control flow, and an op without a converter inside a constant Loop is
    named."""
    def loop_model(body_op, used):
        body = helper.make_graph(
            [helper.make_node(body_op, ["v_in", "v_in"][:1 if body_op == "Tan" else 2], ["v_out"]),
             helper.make_node("Identity", ["cond_in"], ["cond_out"])],
            "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                     helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                     _vi("v_in", [1, 3])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _vi("v_out", [1, 3])])
        start = "X" if used != "const" else "c"
        nodes = [helper.make_node("Loop", ["trips", "true", start], ["v"], name="loop_x", body=body),
                 helper.make_node("Relu", ["X"], ["r"], name="relu")]
        nodes.append(helper.make_node("Add", ["r", "v"], ["Y"], name="add") if used
                     else helper.make_node("Identity", ["r"], ["Y"], name="out"))
        return _model(nodes, {"X": [1, 3]}, {"Y": [1, 3]},
                      {"trips": np.array(2, np.int64), "true": np.array(True), "c": np.ones((1, 3), np.float32)})

    x = _rand(2, 3)
    np.testing.assert_array_equal(_run(onnx_to_module(loop_model("Add", False)), x), np.maximum(x, 0))
    np.testing.assert_array_equal(_run(onnx_to_module(loop_model("Add", "const")), x), np.maximum(x, 0) + 4)
    _one_line_error(lambda: onnx_to_module(loop_model("Add", True)),
                    r"^ONNX node 'loop_x' \(Loop\): data-dependent control flow \(a loop or branch on values "
                    r"computed from the input\)")
    _one_line_error(lambda: onnx_to_module(loop_model("Tan", "const")),
                    r"^ONNX node 'v_out' has unsupported op 'Tan'")


def test_tile_of_an_activation_is_a_reindexing():
    """Tile with constant repeats off the batch axis (V-Net's input channels tiled to
    match its first convolution's): copies, so the graph is that of the same net
    written with ``repeat`` in PyTorch, and the module equals the ONNX reference at
    batch 3; tiling the batch axis is refused by name."""
    w = _rand(4, 1, 3, 3)
    nodes = [helper.make_node("Conv", ["X", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Tile", ["X", "reps"], ["t"], name="tile"),
             helper.make_node("Add", ["c", "t"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["Y"], name="relu")]
    model = _model(nodes, {"X": ["N", 1, 5, 5]}, {"Y": ["N", 4, 5, 5]},
                   {"W": w, "reps": np.array([1, 4, 1, 1], np.int64)})
    module = onnx_to_module(model, input_shape=(1, 5, 5))
    x = _rand(3, 1, 5, 5)
    np.testing.assert_allclose(_run(module, x), _reference(model, X=x)[0], rtol=1e-5, atol=1e-6)
    assert not getattr(module, "batch_one_only", False)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
            self.conv.weight.data = torch.from_numpy(w)

        def forward(self, x):
            return torch.relu(self.conv(x) + x.repeat(1, 4, 1, 1))

    g = SignedGraph.from_module(module, (1, 5, 5), dtype=torch.float64)
    ref = SignedGraph.from_module(Net(), (1, 5, 5), dtype=torch.float64)
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray(), rtol=1e-6)
    batch = _model([helper.make_node("Tile", ["X", "reps"], ["Y"], name="tile_batch")],
                   {"X": [1, 2]}, {"Y": [2, 2]}, {"reps": np.array([2, 1], np.int64)})
    _one_line_error(lambda: onnx_to_module(batch),
                    r"^ONNX node 'tile_batch' \(Tile\): tiling the batch axis \(2 copies")


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_and_back_sum_and_log_softmax(mode):
    """DepthToSpace / SpaceToDepth by the spec's reshape-transpose-reshape; Sum; LogSoftmax over channels."""
    nodes = [helper.make_node("DepthToSpace", ["X"], ["d"], name="d2s", blocksize=2, mode=mode),
             helper.make_node("SpaceToDepth", ["d"], ["s"], name="s2d", blocksize=2),
             helper.make_node("Sum", ["X", "s", "X"], ["t"], name="sum"),
             helper.make_node("LogSoftmax", ["t"], ["Y2"], name="logsoftmax", axis=1),
             helper.make_node("Identity", ["d"], ["Y1"], name="id")]
    model = _model(nodes, {"X": [1, 8, 2, 3]}, {"Y1": [1, 2, 4, 6], "Y2": [1, 8, 2, 3]}, opset=13)
    module = onnx_to_module(model)
    x = _rand(2, 8, 2, 3)
    b, c, h, w = x.shape
    if mode == "DCR":
        d = x.reshape(b, 2, 2, c // 4, h, w).transpose(0, 3, 4, 1, 5, 2).reshape(b, c // 4, h * 2, w * 2)
    else:
        d = x.reshape(b, c // 4, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)
    s = d.reshape(b, c // 4, h, 2, w, 2).transpose(0, 3, 5, 1, 2, 4).reshape(b, c, h, w)
    t = 2 * x + s
    y1, y2 = _run(module, x)
    np.testing.assert_array_equal(y1, d)
    np.testing.assert_allclose(y2, t - np.log(np.exp(t).sum(1, keepdims=True)), rtol=1e-5, atol=1e-6)
    _exportable(module, x)


# -- refusals ----------------------------------------------------------------------------------

def _one_line_error(call, pattern):
    with pytest.raises(UnsupportedLayerError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert re.match(pattern, message), message
    return message


def _torch_to_onnx_module(model, x, opset=17):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset)
    return onnx_to_module(onnx.load_from_string(buf.getvalue()))


class _ConvLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 3)
        self.lstm = nn.LSTM(8, 5, batch_first=True)

    def forward(self, x):
        h = torch.relu(self.conv(x)).transpose(1, 2)
        return self.lstm(h)[0][:, -1]


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(6, 18)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return torch.softmax(q @ k.transpose(1, 2) / 6 ** 0.5, dim=-1) @ v


def test_lstm_is_refused_by_name():
    _one_line_error(lambda: _torch_to_onnx_module(_ConvLSTM().eval(), torch.randn(1, 3, 10)),
                    r"^ONNX node '[^']+' \(LSTM\): a recurrent cell has no fixed feed-forward signed graph.*"
                    r"unroll it or export the CNN part; or cut the file to that part: "
                    r"onnx.utils.extract_model\(.*\)$")


def test_attention_product_is_refused_by_name():
    _one_line_error(lambda: _torch_to_onnx_module(_Attention().eval(), torch.randn(1, 4, 6)),
                    r"^ONNX node '[^']+' \(MatMul\): a product of two activations \(attention-like")


def test_quantized_model_is_refused_by_name():
    nodes = [helper.make_node("QuantizeLinear", ["X", "s", "z"], ["q"], name="quant_in"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dequant_in"),
             helper.make_node("Relu", ["dq"], ["Y"], name="relu")]
    graph = helper.make_graph(nodes, "q", [_vi("X", [1, 4])], [_vi("Y", [1, 4])],
                              [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                               numpy_helper.from_array(np.array(0, np.uint8), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    _one_line_error(lambda: onnx_to_module(model),
                    r"^ONNX node 'quant_in' \(QuantizeLinear\): a quantized operation .*export the float model")


def test_empty_file_and_graph_without_input(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(DeepglassError, match=r"^ONNX file .*empty\.onnx holds no graph \(an empty or truncated file\)$"):
        load_onnx(empty)
    const_only = _model([helper.make_node("Relu", ["c"], ["Y"], name="relu")], {}, {"Y": [2]},
                        {"c": np.array([-1.0, 2.0], np.float32)})
    with pytest.raises(DeepglassError, match=r"^the ONNX graph has no input tensor"):
        onnx_to_module(const_only)


# -- timm's CNNs through ONNX ------------------------------------------------------------------

def _timm():
    import timm_shim

    timm_shim.install()
    return pytest.importorskip("timm")


TIMM = [  # (name, opset, input size, run torch.export too)
    ("resnet18", 17, 64, True),
    ("mobilenetv2_100", 17, 64, True),
    ("mobilenetv3_small_100", 17, 64, True),  # HardSwish, HardSigmoid gates
    ("mobilenetv3_small_100", 13, 64, False),  # hard-swish written as HardSigmoid * x
    ("efficientnet_b0", 17, 64, True),  # SiLU as Sigmoid * x
    ("convnext_atto", 17, 64, True),  # LayerNormalization, GELU written out
    ("convnext_atto", 13, 64, True),  # LayerNorm written out
    ("ghostnet_100", 17, 64, True),  # Slice + Concat, HardSigmoid gates
    ("regnetx_002", 17, 64, True),
    ("mnasnet_small", 17, 64, True),
    ("densenet121", 17, 32, False),
    ("resnest14d", 17, 32, True),  # ReduceSum over the radix branches
    ("skresnet18", 17, 32, True),
    ("resnetv2_50d_frn", 17, 64, True),  # TLU: Max of an activation and a constant (at 32 its last norm sees 1x1 maps: x / sqrt(x^2 + eps) is ill-conditioned)
    ("ecaresnet26t", 17, 32, True),  # a gate reshaped and expanded
]


@pytest.mark.parametrize("name,opset,size,export", TIMM, ids=[f"{n}-opset{o}" for n, o, _, _ in TIMM])
def test_timm_model_through_onnx_equals_timm(name, opset, size, export):
    timm = _timm()
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(2, 3, size, size)
    module = _torch_to_onnx_module(model, x[:1], opset=opset)
    with torch.no_grad():
        want = model(x)
        got = module(x)
    assert want.std() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    if export:
        ep = torch.export.export(module, (x[:1],), strict=False).run_decompositions()
        ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
        assert "aten.convolution.default" in ops
        if name == "convnext_atto":
            assert {"aten.native_layer_norm.default", "aten.gelu.default"} <= ops and "aten.sqrt.default" not in ops


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
def test_a_timm_cnn_through_the_dynamo_exporter(name):
    """torch.onnx.export(dynamo=True) (opset 18: Reduce axes as inputs) writes
    ConvNeXt with a fixed batch of 1 folded into its head's reshapes, and
    ConvNeXt-V2's response norm with ReduceL2: the import equals timm at batch
    1, runs it sample by sample at batch 3, says batch_one_only, and gives the signed graph of the TorchScript
    exporter's file and of timm's module itself."""
    pytest.importorskip("onnxscript")
    timm = _timm()
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if ".grn." in key:     # zero at init: the response norm would be the identity
                p.normal_()
    x = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(model, (x,), dynamo=True, opset_version=18,
                                  verbose=False).model_proto
    module = onnx_to_module(proto)
    x3 = torch.cat([x, torch.randn(2, 3, 32, 32)])
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(module(x3), model(x3), rtol=1e-4, atol=1e-4)  # per sample
    assert module.batch_one_only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SignedGraph.from_module(module, (3, 32, 32))
        ref = SignedGraph.from_module(_torch_to_onnx_module(model, x), (3, 32, 32))
        direct = SignedGraph.from_module(model, (3, 32, 32))
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges) == (direct.n_nodes, direct.n_edges)
    assert g.abs_total() == pytest.approx(direct.abs_total(), rel=1e-5)


def test_an_adaptive_pool_written_as_gather_and_mask_by_the_dynamo_exporter():
    """The dynamo exporter writes an adaptive average pool whose windows overlap
    (2x2 -> 3x3, VGG's pre-logits at small inputs) as GatherND with constant
    indices, Where with a constant mask and sums: a re-indexing and padding, so
    the import equals the module and its signed graph is the pool's, edge
    weights included (the mean's 1 / count folds into the summed windows' edges)."""
    pytest.importorskip("onnxscript")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(18, 4)

        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 3).flatten(1))

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(1, 1, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(net, (x,), dynamo=True, verbose=False).model_proto
    assert {"GatherND", "Where"} <= {n.op_type for n in proto.graph.node}
    module = onnx_to_module(proto)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=1e-5, atol=1e-6)
    g = SignedGraph.from_module(module, (1, 4, 4))
    ref = SignedGraph.from_module(net, (1, 4, 4))
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    a, b = g.to_scipy(), ref.to_scipy()
    assert a.shape == b.shape and abs(a - b).max() < 1e-12
    assert g.abs_total() == pytest.approx(ref.abs_total(), rel=1e-12)


@pytest.mark.parametrize("kw", [{"scale_factor": 2}, {"size": (5, 7)}, {"size": (2, 3)}],
                         ids=["x2", "to5x7", "down"])
def test_nearest_exact_written_as_transposed_gather_by_the_dynamo_exporter(kw):
    """The dynamo exporter writes F.interpolate(mode="nearest-exact") as Transpose (spatial
    axes first) -> GatherND by a constant index grid -> Transpose back: the import is the
    upsampling again (it was a re-indexing without the upsampling's node block, and marked
    batch-1-only though the batch axis is never gathered), so it equals the module, at any
    batch size, with the module's signed graph."""
    pytest.importorskip("onnxscript")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.c2(F.interpolate(self.c1(x), mode="nearest-exact", **kw))

    torch.manual_seed(0)
    net = Net().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(net, (torch.randn(1, 2, 3, 4),), dynamo=True, verbose=False).model_proto
    assert "GatherND" in {n.op_type for n in proto.graph.node}
    module = onnx_to_module(proto)
    assert not module.batch_one_only
    x = torch.randn(3, 2, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=1e-5, atol=1e-6)
    g = SignedGraph.from_module(module, (2, 3, 4), dtype=torch.float64)
    ref = SignedGraph.from_module(net, (2, 3, 4), dtype=torch.float64)
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    assert [b.op for b in g.node_blocks] == [b.op for b in ref.node_blocks]
    assert abs(g.to_scipy() - ref.to_scipy()).max() < 1e-6


def test_a_transposed_gather_off_the_batch_axis_is_a_reindexing():
    """Transpose -> GatherND -> Transpose whose separable index grid is no nearest
    resampling (a reversal of the rows) picks rows: index_select per axis, at any batch size."""
    rows, cols = np.array([2, 0, 1]), np.array([3, 3, 0, 1, 2])
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).astype(np.int64)
    nodes = [helper.make_node("Transpose", ["X"], ["t"], perm=[2, 3, 0, 1], name="to_front"),
             helper.make_node("GatherND", ["t", "grid"], ["g"], name="gather"),
             helper.make_node("Transpose", ["g"], ["Y"], perm=[2, 3, 0, 1], name="to_back")]
    model = _model(nodes, {"X": [1, 2, 3, 4]}, {"Y": [1, 2, 3, 5]}, {"grid": grid})
    module = onnx_to_module(model)
    assert not module.batch_one_only
    x = _rand(1, 2, 3, 4)
    np.testing.assert_array_equal(_run(module, x), _reference(model, X=x)[0])
    x = _rand(4, 2, 3, 4)
    np.testing.assert_array_equal(_run(module, x), x[:, :, rows][:, :, :, cols])


def test_cutting_off_a_refused_preprocessing_as_the_message_says(tmp_path):
    """An input normalization with a selection (div_no_nan: Equal + Where) is refused; the
    file cut after it with onnx.utils.extract_model, as the message says, imports and equals
    the ONNX reference."""
    nodes = [helper.make_node("ReduceMax", ["X"], ["mx"], name="max", keepdims=1),
             helper.make_node("Div", ["X", "mx"], ["q"], name="div"),
             helper.make_node("Equal", ["mx", "zero"], ["is0"], name="is_zero"),
             helper.make_node("Where", ["is0", "zero", "q"], ["n"], name="div_no_nan"),
             helper.make_node("Identity", ["n"], ["normalized"], name="normalized"),
             helper.make_node("Conv", ["normalized", "W"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["Y"], name="relu")]
    model = _model(nodes, {"X": [1, 2, 6, 6]}, {"Y": [1, 3, 4, 4]},
                   {"zero": np.array(0.0, np.float32), "W": _rand(3, 2, 3, 3)})
    path, cut = tmp_path / "pre.onnx", tmp_path / "cut.onnx"
    onnx.save(model, str(path))
    message = _one_line_error(lambda: load_onnx(path), r"^ONNX node 'is_zero' \(Equal\): data-dependent .*"
                              r"onnx.utils.extract_model\(path, 'cut.onnx', \[first tensor\], \[last tensors\]\)$")
    assert "input normalization" in message
    onnx.utils.extract_model(str(path), str(cut), ["normalized"], ["Y"])
    module = load_onnx(cut, input_shape=(2, 6, 6))
    x = _rand(2, 2, 6, 6)
    np.testing.assert_allclose(_run(module, x), _reference(onnx.load(str(cut)), normalized=x)[0],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["light_bvlc_alexnet", "light_inception_v1", "light_zfnet512"])
def test_caffe_converted_model_zoo_nets_import(name):
    """The ONNX model zoo's Caffe-converted nets (the onnx wheel ships them, weights replaced by
    constants) pool with asymmetric padding; they import, run, and have one node per output of a
    Conv, pool or Gemm and per input element (ONNX's own shape inference)."""
    import os

    from onnx import shape_inference

    from deepglass.graph import SignedGraph

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", name + ".onnx")
    if not os.path.exists(path):
        pytest.skip("this onnx wheel ships no light models")
    model = shape_inference.infer_shapes(onnx.load(path))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.output)}
    want = 3 * 224 * 224 + sum(int(np.prod(shapes[n.output[0]][1:])) for n in model.graph.node
                               if n.op_type in ("Conv", "MaxPool", "AveragePool", "Gemm"))
    module = load_onnx(path)
    with torch.no_grad():
        y = module(torch.randn(1, 3, 224, 224))
    assert tuple(y.shape) == (1, 1000)
    assert SignedGraph.from_module(module, (3, 224, 224)).n_nodes == want


def test_model_zoo_bvlc_alexnet_has_the_zoo_caffe_alexnet_graph():
    """The ONNX model zoo's BVLC AlexNet (the onnx wheel's light copy), imported at 3x227x227,
    has exactly the node and edge counts of the zoo's own Caffe AlexNet (Table 1: 0.94 M / 0.67 B)."""
    import os

    from deepglass.graph import SignedGraph
    from deepglass.zoo import get

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        "light_bvlc_alexnet.onnx")
    if not os.path.exists(path):
        pytest.skip("this onnx wheel ships no light models")
    a = SignedGraph.from_module(load_onnx(path, input_shape=(3, 227, 227)), (3, 227, 227))
    b = SignedGraph.from_module(get("alexnet_caffe"), (3, 227, 227))
    assert (a.n_nodes, a.n_edges) == (b.n_nodes, b.n_edges) == (936_323, 672_424_832)


# -- activations as torch's exporters write them ---------------------------------------------

def _graph_sums(module, shape):
    g = SignedGraph.from_module(module, shape)
    return g.n_nodes, g.n_edges, round(g.abs_total(), 3)


def _export_proto(model, x, dynamo, opset):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            import contextlib

            with contextlib.redirect_stdout(io.StringIO()):
                prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset,
                                         dynamic_shapes=({0: torch.export.Dim("batch", max=64)},))
            return prog.model_proto
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())


SOFTPLUS_EXPORTS = [(False, 11), (False, 17), (True, 18)]


@pytest.mark.parametrize("beta,threshold", [(1.0, 20.0), (2.0, 10.0), (0.5, 20.0)])
@pytest.mark.parametrize("dynamo,opset", SOFTPLUS_EXPORTS, ids=["ts11", "ts17", "dynamo18"])
def test_softplus_with_beta_and_threshold_is_nn_softplus(beta, threshold, dynamo, opset):
    """The TorchScript-based exporter writes nn.Softplus(beta) as Mul(x, beta) -> Softplus ->
    Div(beta); the dynamo exporter adds Where(Greater(beta x, threshold), x, ...). Both are
    the module's one activation: its graph (the rescalings were taken into the layers' edges:
    other weights, same outputs; the Where was refused as a selection)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(beta, threshold), nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(2, 3, 6, 6) * 4
    module = onnx_to_module(_export_proto(net, x[:1], dynamo, opset), (3, 6, 6))
    sp = [m for m in module.modules() if isinstance(m, nn.Softplus)]
    assert len(sp) == 1 and sp[0].beta == pytest.approx(beta)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=1e-5, atol=1e-6)
    assert _graph_sums(module, (3, 6, 6)) == _graph_sums(net, (3, 6, 6))


@pytest.mark.parametrize("act", [nn.SELU(), nn.CELU(0.7), nn.LogSigmoid()], ids=["selu", "celu", "logsigmoid"])
@pytest.mark.parametrize("dynamo,opset", [(False, 13), (True, 18)], ids=["ts13", "dynamo18"])
def test_selu_celu_and_log_sigmoid_are_their_modules(act, dynamo, opset):
    """ONNX Selu and Celu are nn.SELU and nn.CELU, Sigmoid -> Log is nn.LogSigmoid (they were
    unsupported ops); the graph is the module's."""
    if isinstance(act, nn.CELU) and opset < 12:
        pytest.skip("Celu is opset 12")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), act, nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(2, 3, 6, 6) * 3
    module = onnx_to_module(_export_proto(net, x[:1], dynamo, opset), (3, 6, 6))
    assert any(type(m) is type(act) for m in module.modules())
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=1e-5, atol=1e-6)
    assert _graph_sums(module, (3, 6, 6)) == _graph_sums(net, (3, 6, 6))


def test_selu_with_other_constants_is_refused():
    model = _model([helper.make_node("Selu", ["X"], ["Y"], name="selu", alpha=1.5, gamma=1.0)],
                   {"X": [1, 4]}, {"Y": [1, 4]})
    _one_line_error(lambda: onnx_to_module(model), r"^ONNX node 'selu' \(Selu\): alpha=1.5, gamma=1: only nn.SELU's constants")


# -- file-level inputs: half precision, weights as inputs -------------------------------------

def _small_cnn():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    net[1].running_var.uniform_(0.5, 2.0)
    return net


def test_a_half_precision_file_is_read_in_float32():
    """An fp16 export (weights, input and output float16) imports with its weights widened
    exactly: float32 in and out, the graph of the file's own weights (it failed: 'Input type
    (c10::Half) and bias type (float) should be the same')."""
    net = _small_cnn()
    x = torch.randn(2, 3, 12, 12)
    half = _export_proto(net.half(), x[:1].half(), False, 17)
    net = net.float()
    module = onnx_to_module(half, (3, 12, 12))
    stored = {i.name: numpy_helper.to_array(i) for i in half.graph.initializer}
    assert all(v.dtype == np.float16 for v in stored.values())
    params = [p.detach().numpy() for p in module.parameters()] + [b.numpy() for b in module.buffers()]
    assert params and all(p.dtype == np.float32 for p in params)
    assert sum(float(np.abs(p).sum()) for p in params) == pytest.approx(
        sum(float(np.abs(v.astype(np.float32)).sum()) for v in stored.values() if v.ndim), rel=1e-6)
    with torch.no_grad():
        out = module(x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, net(x), rtol=1e-2, atol=1e-2)
    g, g32 = SignedGraph.from_module(module, (3, 12, 12)), SignedGraph.from_module(net, (3, 12, 12))
    assert (g.n_nodes, g.n_edges) == (g32.n_nodes, g32.n_edges)
    assert g.abs_total() == pytest.approx(g32.abs_total(), rel=1e-3)


def test_a_float32_file_with_half_precision_inside_is_read_in_float32():
    """Mixed precision as converters write it (float32 input and output, Cast to float16
    around an fp16 body): the casts are dropped, the module is float32 throughout."""
    w = _rand(4, 3, 3, 3)
    nodes = [helper.make_node("Cast", ["X"], ["xh"], name="to_half", to=TensorProto.FLOAT16),
             helper.make_node("Conv", ["xh", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Cast", ["r"], ["Y"], name="to_float", to=TensorProto.FLOAT)]
    model = _model(nodes, {"X": [1, 3, 5, 5]}, {"Y": [1, 4, 5, 5]}, {"W": w.astype(np.float16)})
    module = onnx_to_module(model)
    x = _rand(2, 3, 5, 5)
    ref = F.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(w.astype(np.float16).astype(np.float32)),
                          padding=1))
    np.testing.assert_allclose(_run(module, x), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_weights_given_as_graph_inputs_are_refused_as_such():
    """A file whose weights are graph inputs (no initializers: export_params=False, or a
    training graph) says so in one line (it was refused as an attention-like product)."""
    proto = _export_proto(_small_cnn(), torch.randn(1, 3, 12, 12), False, 17)
    g = proto.graph
    for init in list(g.initializer):
        g.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    del g.initializer[:]
    _one_line_error(lambda: onnx_to_module(proto, (3, 12, 12)),
                    r"^ONNX input '[^']+' is the weight of node '[^']+' \(Conv\): the file takes its weights "
                    r"as inputs .*initializers")


def test_a_bfloat16_file_is_read_in_float32():
    w = _rand(4, 3, 3, 3)
    wt = helper.make_tensor("W", TensorProto.BFLOAT16, w.shape, vals=w.reshape(-1).tolist())
    nodes = [helper.make_node("Conv", ["X", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["Y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [_vi("X", [1, 3, 5, 5], TensorProto.BFLOAT16)],
                              [_vi("Y", [1, 4, 5, 5], TensorProto.BFLOAT16)], [wt])
    module = onnx_to_module(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = torch.from_numpy(_rand(2, 3, 5, 5))
    ref = F.relu(F.conv2d(x, torch.from_numpy(w).bfloat16().float(), padding=1))
    with torch.no_grad():
        out = module(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


class _ReplicatePadThenAdaptivePool(nn.Module):
    """The TorchScript-based exporter loses the spatial sizes after a replicate-padded
    convolution and cannot write the adaptive pool ('input size not accessible')."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="replicate")

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.conv(x), 2)


def test_a_torchscript_archive_the_exporter_cannot_write_fails_in_one_line_and_prints_nothing(capfd):
    """The exporter's dump of the TorchScript graph ('Torch IR graph at exception: ...', some
    50 lines that C++ writes on the process's stdout) is not shown: only the one-line error."""
    from deepglass.zoo.torchscript import torchscript_to_module

    net = _ReplicatePadThenAdaptivePool().eval()
    script = torch.jit.trace(net, torch.randn(1, 3, 8, 8))
    capfd.readouterr()
    with pytest.raises(DeepglassError) as info:
        torchscript_to_module(script, (3, 8, 8), "net.pt")
    assert re.match(r"^cannot convert the TorchScript file net.pt through ONNX: .*adaptive_avg_pool2d",
                    str(info.value)) and "\n" not in str(info.value)
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and out == "" and err == ""


class _SmallCnn(nn.Module):
    """Conv without bias, batch norm, ReLU, a mean flattened with the batch written out
    (``view(B, -1)``), a dense head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c, self.bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.normal_()

    def forward(self, x):
        y = torch.relu(self.bn(self.c(x))).mean((2, 3))
        return self.fc(y.view(x.shape[0], -1))


def _dynamo_proto(model, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.onnx.export(model, (x,), dynamo=True, verbose=False, **kw).model_proto


@pytest.mark.parametrize("how", ["dynamo at batch 2", "legacy at batch 2",
                                 "dynamo without its optimizer"])
def test_a_file_written_at_a_fixed_batch_or_unoptimized_has_the_modules_graph(how):
    """The dynamo exporter given a dummy batch of 2 writes the batch into its
    reshapes (``Reshape(y, [2, 4])``): read at batch 1 with the batch in its
    place (it was refused, 'shape [2, 4] is invalid for input of size 4');
    without its optimizer it writes ``CastLike`` of constants (refused as an
    unknown op): folded as a cast.  Each file's graph is the module's."""
    pytest.importorskip("onnxscript")
    model = _SmallCnn().eval()
    batch = 1 if "optimizer" in how else 2
    x = torch.randn(batch, 3, 8, 8)
    if how.startswith("legacy"):
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17)
        proto = onnx.load_from_string(buf.getvalue())
    else:
        proto = _dynamo_proto(model, x, **({"optimize": False} if batch == 1 else {}))
    ops = {n.op_type for n in proto.graph.node}
    assert ("CastLike" in ops) if batch == 1 else True
    module = onnx_to_module(proto)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=1e-5, atol=1e-5)
    g, ref = (SignedGraph.from_module(m, (3, 8, 8)) for m in (module, model))
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    s = torch.randn(3, g.n_nodes).sign()
    torch.testing.assert_close(g.local_fields(s), ref.local_fields(s), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [13, 17])
def test_a_training_mode_batch_norm_is_refused_saying_to_export_in_eval_mode(opset):
    """A batch norm exported in train mode normalizes by each batch's own
    statistics: ``training_mode=1``, or before opset 14 its statistics outputs
    written at all (it was read as an inference batch norm, silently, with the
    file's running statistics)."""
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).train()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(4, 1, 3, 3),), buf, dynamo=False,
                          opset_version=opset, training=torch.onnx.TrainingMode.PRESERVE)
    with pytest.raises(DeepglassError, match=r"training-mode batch norm.*model\.eval\(\)"):
        onnx_to_module(onnx.load_from_string(buf.getvalue()))


class _Elementwise(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Conv1d(1, 4, 3), nn.Conv1d(4, 4, 1), nn.Conv1d(4, 2, 1)

    def forward(self, x):
        y = torch.sin(self.a(x)) + torch.cos(self.a(x))
        y = torch.sign(self.b(y)) * torch.log(self.b(y).abs() + 1)
        return self.c(y)


def test_sin_cos_sign_and_log_of_an_activation_are_elementwise_functions():
    """``Sin``, ``Cos``, ``Sign`` and ``Log`` of an activation (Snake, SIREN,
    a log compression) are elementwise functions, as the module's ops are
    (``Log`` was taken only as log-sigmoid): the import's graph is the
    module's."""
    model = _Elementwise().eval()
    x = torch.randn(1, 1, 12)
    module = _torch_to_onnx_module(model, x)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g, ref = (SignedGraph.from_module(m, (1, 12)) for m in (module, model))
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    assert (g.to_scipy() != ref.to_scipy()).nnz == 0


class _MaskedAttentionPool(nn.Module):
    """An attention pool whose scores are filled with -inf where a length mask
    is 0 before the softmax (speechbrain's attentive statistics pooling)."""

    def __init__(self, c=4):
        super().__init__()
        self.conv, self.att, self.fc = nn.Conv1d(c, c, 3, padding=1), nn.Conv1d(c, c, 1), nn.Linear(c, 2)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        mask = (torch.arange(x.shape[-1]) < 7).float()[None, None]
        a = self.att(x).masked_fill(mask == 0, float("-inf"))
        return self.fc((x * F.softmax(a, dim=2)).sum(2))


def test_a_minus_infinity_mask_constant_is_no_damaged_weight():
    """The -inf filled in before a softmax is a constant of the file, not a
    NaN/inf weight (it was refused as one): the torch capture's graph."""
    from deepglass.zoo.loading import check_finite

    torch.manual_seed(0)
    net = _MaskedAttentionPool().eval()
    x = torch.randn(1, 4, 10)
    module = onnx_to_module(_export_proto(net, x, False, 17), (4, 10))
    check_finite(module)
    np.testing.assert_allclose(_run(module, x.numpy()), _run(net, x.numpy()), atol=1e-5)
    assert _graph_sums(module, (4, 10)) == _graph_sums(net, (4, 10))
    with torch.no_grad():
        net.fc.weight[0, 0] = float("inf")
    with pytest.raises(DeepglassError, match=r"parameter 'fc.weight' has 1 NaN/inf entries"):
        check_finite(net)
    # read from the file, the damaged weight is named by the file's node too (the
    # layer names are deepglass's: 'fc_...' is in no file)
    proto = _export_proto(net, x, False, 17)
    gemm = next(nd for nd in proto.graph.node if nd.op_type in ("Gemm", "MatMul"))
    with pytest.raises(DeepglassError, match=rf"parameter '\w+\.weight' \(ONNX node "
                                             rf"'{re.escape(gemm.name)}'\) has 1 NaN/inf"):
        check_finite(onnx_to_module(proto, (4, 10)))


def test_a_gemm_of_two_constants_is_folded():
    """A bias computed from parameters in ``forward`` (braindecode's combined
    temporal and spatial convolution), exported without constant folding: a
    Gemm of two constants, computed at import (it was refused as 'constant @
    activation')."""
    class Combined(nn.Module):
        def __init__(self):
            super().__init__()
            self.time = nn.Conv2d(1, 4, (5, 1))
            self.spat = nn.Conv2d(4, 3, (1, 3), bias=False)

        def forward(self, x):
            w = (self.time.weight * self.spat.weight.permute(1, 0, 2, 3)).sum(0).unsqueeze(1)
            b = self.spat.weight.squeeze().sum(-1).mm(self.time.bias.unsqueeze(-1)).squeeze()
            return F.conv2d(x, w, b)

    torch.manual_seed(0)
    net = Combined().eval()
    x = torch.randn(1, 1, 12, 3)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17, do_constant_folding=False)
    proto = onnx.load_from_string(buf.getvalue())
    assert "Gemm" in {n.op_type for n in proto.graph.node}
    module = onnx_to_module(proto, (1, 12, 3))
    np.testing.assert_allclose(_run(module, x.numpy()), _run(net, x.numpy()), atol=1e-5)
    assert _graph_sums(module, (1, 12, 3)) == _graph_sums(net, (1, 12, 3))


def test_a_file_read_at_another_size_than_it_fixes_says_so():
    """A U-Net exported at 16x16 (its Resize writes the skip's size, 16x16, as a
    constant) read at 32x32 failed at a Concat's broadcast; the message now
    says the file fixes its input at 16x16 and how to read it."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["a"], ["b"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["b", "", "", "sizes"], ["u"], mode="nearest"),
        helper.make_node("Concat", ["a", "u"], ["y"], axis=1),
    ]
    model = _model(nodes, {"x": [1, 1, 16, 16]}, {"y": [1, 4, 16, 16]},
                   {"w": RNG.standard_normal((2, 1, 3, 3)).astype(np.float32),
                    "sizes": np.array([1, 2, 16, 16], dtype=np.int64)})
    # at its own size: the input, the conv, the pool and the resize (the concat adds none)
    assert SignedGraph.from_module(onnx_to_module(model), (1, 16, 16)).n_nodes == \
        256 + 2 * 256 + 2 * 64 + 2 * 256
    with pytest.raises(DeepglassError, match=r"\(Concat\): .*the file fixes input 'x' at "
                                             r"1x16x16 .*--input-shape 1,16,16\), or export "
                                             r"it with dynamic axes"):
        onnx_to_module(model, (1, 32, 32))


@pytest.mark.parametrize("axes", [[1], [1, 2, 3]])
def test_tensorflow_s_fused_layer_norm_is_a_layer_norm(axes):
    """tf2onnx writes Keras' LayerNormalization as x * (gamma * rsqrt(var + eps))
    + (beta - mean * gamma * rsqrt(var + eps)): refused ("a statistic whose sign
    depends on the input") for a gamma of mixed signs, and with the mean read as
    a layer of its own.  It is the layer norm: the graph of nn.LayerNorm with
    the same weights (the gain folded with its sign, the centring ignored)."""
    C, side = 6, 8
    norm_shape = [C] if axes == [1] else [C, side, side]
    gshape = [1, C, 1, 1] if axes == [1] else [1, C, side, side]
    w1 = RNG.standard_normal((C, 4, 3, 3)).astype(np.float32)
    w2 = RNG.standard_normal((2, C, 3, 3)).astype(np.float32)
    gamma = (RNG.uniform(0.5, 1.5, gshape) * RNG.choice([-1, 1], gshape)).astype(np.float32)
    beta = RNG.standard_normal(gshape).astype(np.float32)
    N = helper.make_node
    nodes = [N("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             N("ReduceMean", ["c"], ["mean"], axes=axes, keepdims=1),
             N("Neg", ["mean"], ["negmean"]),
             N("Sub", ["c", "mean"], ["d"]), N("Mul", ["d", "d"], ["d2"]),
             N("ReduceMean", ["d2"], ["var"], axes=axes, keepdims=1),
             N("Add", ["var", "eps"], ["ve"]), N("Sqrt", ["ve"], ["sd"]),
             N("Reciprocal", ["sd"], ["rs"]), N("Mul", ["rs", "gamma"], ["scale"]),
             N("Mul", ["c", "scale"], ["xs"]),
             N("Mul", ["negmean", "scale"], ["ms"]), N("Add", ["ms", "beta"], ["shift"]),
             N("Add", ["xs", "shift"], ["ln"]), N("Conv", ["ln", "w2"], ["y"])]
    model = _model(nodes, {"x": [1, 4, side, side]}, {"y": [1, 2, side - 2, side - 2]},
                   {"w1": w1, "w2": w2, "gamma": gamma, "beta": beta,
                    "eps": np.full((1, 1, 1, 1), 1e-3, np.float32)})
    module = onnx_to_module(model)

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(4, C, 3, padding=1, bias=False), nn.Conv2d(C, 2, 3,
                                                                                   bias=False)
            self.ln = nn.LayerNorm(norm_shape, eps=1e-3)
            with torch.no_grad():
                self.c1.weight.copy_(torch.from_numpy(w1))
                self.c2.weight.copy_(torch.from_numpy(w2))
                self.ln.weight.copy_(torch.from_numpy(gamma).reshape(gshape[1:]).squeeze())
                self.ln.bias.copy_(torch.from_numpy(beta).reshape(gshape[1:]).squeeze())

        def forward(self, x):
            c = self.c1(x)
            if axes == [1]:
                return self.c2(self.ln(c.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
            return self.c2(self.ln(c))

    ref = Reference().eval()
    x = torch.randn(1, 4, side, side)
    with torch.no_grad():
        torch.testing.assert_close(module(x), ref(x), atol=1e-4, rtol=1e-4)
    a, b = (SignedGraph.from_module(m, (4, side, side)) for m in (module, ref))
    assert a.n_nodes == b.n_nodes and a.n_edges == b.n_edges
    assert abs(a.to_scipy() - b.to_scipy()).max() < 1e-5


def test_inputs_no_node_reads_are_left_out_with_a_warning():
    """tf2onnx's from_function keeps a Normalization layer's constants as graph
    inputs no node reads: they became input blocks of isolated nodes, and the
    module (and `deepglass active`) wanted three inputs."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    model = _model(nodes, {"x": [1, 2, 5, 5], "unused_a": [1, 2, 1, 1], "unused_b": [1]},
                   {"y": [1, 3, 3, 3]}, {"w": RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)})
    with pytest.warns(UserWarning, match=r"declares input\(s\) no node reads \(unused_a, "
                                         r"unused_b\); left out"):
        module = onnx_to_module(model)
    assert module.input_names == ["x"] and module.default_input_shape == (2, 5, 5)
    g = SignedGraph.from_module(module, (2, 5, 5))
    assert len(g.input_blocks) == 1 and g.n_nodes == 50 + 27


@pytest.mark.parametrize("form", ["left", "grouped", "unfold"])
def test_matmul_with_the_weight_on_the_left_or_per_group(form):
    """ONNX MatMul(constant, activation) was refused ("only activation @ constant
    2-d weight"), although torch's W @ x is a dense layer; so was a weight per
    group.  Each is now the graph of the torch module it was exported from."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.w = nn.Parameter(torch.randn({"left": (5, 4), "grouped": (2, 4, 3),
                                               "unfold": (3, 2 * 9)}[form]))

        def forward(self, x):
            if form == "left":                       # (B, 4, 6) -> (B, 5, 6)
                return torch.matmul(self.w, x)
            if form == "grouped":                    # (B, 2, 6, 4) -> (B, 2, 6, 3)
                return torch.matmul(x, self.w)
            cols = F.unfold(x, 3)                    # a convolution: W @ unfold(x)
            return torch.matmul(self.w, cols).view(x.shape[0], 3, 4, 4)

    shape = {"left": (4, 6), "grouped": (2, 6, 4), "unfold": (2, 6, 6)}[form]
    net = Net().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, *shape), buf, dynamo=False, opset_version=17)
    module = onnx_to_module(onnx.load_from_string(buf.getvalue()))
    a, b = (SignedGraph.from_module(m, shape) for m in (module, net))
    assert a.n_nodes == b.n_nodes and a.n_edges == b.n_edges
    assert abs(a.to_scipy() - b.to_scipy()).max() < 1e-6


def test_a_product_of_static_sizes_is_folded():
    """tf2onnx's Tensordot (a Keras Dense on a 4-d tensor, ConvNeXt's pointwise
    layers) multiplies static sizes with ReduceProd for its Reshape: refused as
    an unsupported op before, it folds; a product of a value stays refused."""
    N = helper.make_node
    nodes = [N("Shape", ["x"], ["s"]), N("Gather", ["s", "free"], ["fr"], axis=0),
             N("ReduceProd", ["fr"], ["pf"], axes=[0], keepdims=1),
             N("Concat", ["pf", "c"], ["st"], axis=0), N("Reshape", ["x", "st"], ["x2"]),
             N("MatMul", ["x2", "W"], ["y"])]
    w = RNG.standard_normal((3, 5)).astype(np.float32)
    model = _model(nodes, {"x": [1, 4, 4, 3]}, {"y": [16, 5]},
                   {"W": w, "free": np.array([0, 1, 2], np.int64), "c": np.array([3], np.int64)})
    module = onnx_to_module(model)
    x = _rand(1, 4, 4, 3)
    np.testing.assert_allclose(_run(module, x), x.reshape(16, 3) @ w, rtol=1e-5, atol=1e-5)
    bad = _model([N("ReduceProd", ["x"], ["y"], axes=[1], keepdims=1)], {"x": [1, 4]},
                 {"y": [1, 1]}, check=False)
    with pytest.raises(DeepglassError, match="a product over axes of a network value"):
        onnx_to_module(bad)


def test_an_input_shape_that_does_not_fit_an_open_file_points_at_input_shape():
    """A file with open sizes (``[N, 3, H, W]``) read at an input shape whose
    channels are wrong: the conversion's failure says that the shape given may
    not fit and what the file declares (it read as a converter's failure);
    the right shape converts."""
    W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    model = _model([helper.make_node("Conv", ["x", "W"], ["y"], name="conv0")],
                   {"x": ["N", 3, "H", "W"]}, {"y": ["N", 4, "h", "w"]}, {"W": W})
    with pytest.raises(DeepglassError, match=r"input shape given \(1,8,8\) may not fit the "
                       r"network, which declares 'x' as \[N, 3, H, W\]: check --input-shape"):
        onnx_to_module(model, input_shape=(1, 8, 8))
    assert SignedGraph.from_module(onnx_to_module(model, input_shape=(3, 8, 8)),
                                   (3, 8, 8)).n_nodes == 3 * 64 + 4 * 36

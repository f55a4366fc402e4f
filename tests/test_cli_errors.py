"""Bad command lines: exit status 2, exactly one line on stderr (``error: ...``),
no traceback, nothing computed and nothing written."""

import json
import pickle
import re
import numpy as np

import pytest

#: (argv, a fragment of the message); "{tmp}" is the test's temporary directory
BAD = [
    (["frustration", "digits_cnn", "--seed", "-1"], "--seed must be an integer"),
    (["frustration", "digits_cnn", "--seed", str(2**63)], "--seed must be an integer"),
    (["rap", "bp", "--N", "10", "--seed", "-1"], "--seed must be an integer"),
    (["rap", "phase", "--out", "{tmp}/p", "--seed", "-3"], "--seed must be an integer"),
    (["frustration", "digits_cnn", "--replicas", "0"], "--replicas must be an integer >= 1"),
    (["frustration", "digits_cnn", "--replicas", "abc"], "Invalid value for '--replicas'"),
    (["frustration", "digits_cnn", "--replicas", "2.5"], "Invalid value for '--replicas'"),
    (["frustration", "digits_cnn", "--null-instances", "-2", "--nulls", "N1"],
     "--null-instances must be an integer >= 1"),
    (["frustration", "digits_cnn", "--nulls", "N1", "--draws-per-unit", "0"],
     "--draws-per-unit must be an integer >= 1"),
    (["frustration", "digits_cnn", "--input-shape", "3,x,2"], "--input-shape must look like"),
    (["frustration", "digits_cnn", "--input-shape", "1,x,8,8"], "--input-shape must look like"),
    (["frustration", "digits_cnn", "--input-shape", "1,,8"], "--input-shape must look like"),
    (["frustration", "digits_cnn", "--input-shape", "8,8"], "has 2 dimension(s); digits_cnn takes 3"),
    (["frustration", "digits_cnn", "--input-shape", "1,0,8"], "positive integers"),
    (["frustration", "digits_cnn", "--input-shape", "1,2,2"], "cannot take inputs of shape 1,2,2"),
    (["graph", "digits_cnn", "--input-shape", "1,100000,100000", "--max-memory-gb", "16"],
     "lower --input-shape"),
    (["criticality", "meanfield", "digits_cnn", "--lanczos-tol", "-1"], "--lanczos-tol must be in (0, 1)"),
    (["criticality", "meanfield", "digits_cnn", "--lanczos-tol", "10"], "--lanczos-tol must be in (0, 1), got 10"),
    (["criticality", "meanfield", "digits_cnn", "--lanczos-tol", "nan"], "must be a finite number"),
    (["frustration", "digits_cnn", "--max-memory-gb", "0"], "--max-memory-gb must be > 0"),
    (["frustration", "digits_cnn", "--time-limit", "5"], "--time-limit applies to --method exact"),
    (["frustration", "digits_cnn", "--method", "exact", "--time-limit", "0"],
     "--time-limit must be > 0, got 0"),
    (["frustration", "digits_cnn", "--method", "exact", "--time-limit", "nan"],
     "--time-limit must be a finite number"),
    (["active", "digits_cnn", "--inputs", "digits", "--time-limit", "5"],
     "--time-limit applies to --method exact"),
    (["active", "digits_cnn", "--inputs", "digits", "--method", "exact", "--time-limit", "0"],
     "--time-limit must be > 0, got 0"),
    (["rap", "bp", "--N", "10", "--beta", "inf"], "--beta must be a finite number"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--alpha", "1.5"], "--alpha must be in [0, 1)"),
    (["active", "digits_cnn", "--inputs", "digits", "--n", "0"], "--n must be an integer >= 1"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--amplitude-range", "1,0.1"],
     "--amplitude-range must satisfy 0 < low <= high"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--amplitude-range", "1e-3,inf",
      "--out", "{tmp}/m"], "--amplitude-range must satisfy 0 < low <= high"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--n", "2", "--amplitudes", str(10**9),
      "--batch-size", str(10**9), "--nulls", ""], "lower --batch-size"),
    (["frustration", "digits_cnn", "--replicas", "1000000000"], "lower --replicas"),
    (["frustration", "digits_cnn", "--nulls", "N1", "--replicas", "1000000000", "--out", "{tmp}/r"],
     "lower --replicas"),
    (["frustration", "digits_cnn", "--nulls", "N1", "--null-instances", "1000000000",
      "--out", "{tmp}/r"], "lower --null-instances"),
    (["frustration", "digits_cnn", "--replicas", "3", "--max-memory-gb", "1e-7"], "limit of 1e-07 GB"),
    (["rap", "bp", "--N", "3000", "--a1", "1"], "instance too large"),
    (["rap", "anneal", "--beta-start", "5", "--beta-end", "1", "--out", "{tmp}/a"],
     "--beta-end (1) must exceed --beta-start (5)"),
    (["rap", "anneal", "--scan-beta-max", "0.05", "--out", "{tmp}/a"],
     "--scan-beta-max (0.05) must exceed --beta-start (0.1)"),
    (["rap", "anneal", "--scan-points", "0"], "--scan-points must be an integer >= 2"),
    # the option, not the Python argument mc_sweeps
    (["rap", "phase", "--N", "8", "--mc-sweeps", "1"],
     "--mc-sweeps must be 0 (no Monte Carlo) or >= 4, got 1"),
    (["rap", "anneal", "--N", "8", "--mc-sweeps", "1"],
     "--mc-sweeps must be 0 (no Monte Carlo) or >= 2, got 1"),
    (["rap", "phase", "--bracket-tol", "0"], "--bracket-tol must be > 0"),
    (["criticality", "powerlaw", "cnnn"], "reference nets: all, feedforward, cnn, autoencoder"),
    (["criticality", "meanfield", "{tmp}/garbage.npz"], "garbage.npz is not a NumPy .npz file"),
    (["criticality", "meanfield", "digits_cnn", "--out", "{tmp}/e", "--n-t", "0", "--n-broad", "0"],
     "the temperature grid is empty"),
    (["criticality", "meanfield", "{tmp}/garbage.npy"], "garbage.npy is not a NumPy .npy file"),
    (["frustration", "digits_cnn", "--out", "{tmp}/afile"], "exists and is not a directory"),
    (["frustration", "digits_cnn", "--out", "{tmp}/afile/sub"], "is a file, not a directory"),
    (["frustration", "digits_cnn", "--save", "{tmp}/nonexistent/x"], "does not exist"),
    (["frustration", "digits_cnn", "--save", "{tmp}/afile/x"], "afile is a file, not a directory"),
    (["frustration", "digits_cnn", "--save", "/proc/deepglass-x"], "cannot write in /proc"),
    (["frustration", "digits_cnn", "--save", ""], "--save needs a file name"),
    (["frustration", "digits_cnn", "--save", "{tmp}/"], "--save needs a file name"),
    # a directory named as the prefix: its files landed beside it (/tmp.npz for --save /tmp)
    (["frustration", "digits_cnn", "--save", "{tmp}"], "is a directory; give a file name"),
    # --force without a run directory was ignored by every command but frustration
    (["active", "digits_cnn", "--inputs", "digits", "--n", "2", "--force"],
     "--force applies to a run directory: give --out DIR with it"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--n", "2", "--force"],
     "--force applies to a run directory"),
    (["rap", "phase", "--force"], "--force applies to a run directory"),
    (["frustration", "digits_cnn", "--nulls", "N1", "--out", "{tmp}/foreign", "--force"],
     "config.toml is not a deepglass run's"),
    (["frustration", "digits_cnn", "--method", "magic"], "unknown method 'magic'"),
    # refused before the network loads (a model that does not exist is not reached)
    (["active", "no-such-net.pt", "--inputs", "digits", "--method", "magic"],
     "unknown method 'magic'"),
    (["frustration", "digits_cnn", "--null-instances", "20"],
     "--null-instances applies to experiments (--nulls or --out)"),
    (["frustration", "digits_cnn", "--draws-per-unit", "2", "--force"],
     "--draws-per-unit, --force apply to experiments"),
    (["frustration", "digits_cnn", "--device", "nonsense"], "device must be 'cpu', 'cuda'"),
    (["frustration", "digits_cnn", "--device", "cuda:99"], "requested but torch sees"),
    # (torch reads 'cpu:3' as the one CPU; it was accepted)
    (["frustration", "digits_cnn", "--device", "cpu:3"], "device must be 'cpu', 'cuda'"),
    (["frustration", "digits_cnn", "--nulls", "N1", "--out", "{tmp}/r", "--device", "gpu"],
     "device must be 'cpu', 'cuda'"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--device", "nonsense"],
     "device must be 'cpu', 'cuda'"),
    (["active", "digits_cnn", "--inputs", "digits", "--device", "nonsense"],
     "device must be 'cpu', 'cuda'"),
    (["active", "digits_cnn", "--inputs", "digits", "--device", "cuda:99", "--out", "{tmp}/r"],
     "requested but torch sees"),
    (["frustration", "digits_cnn", "--init", "sideways"], "--init must be random or paper"),
    (["frustration", "digits_cnn", "--bogus"], "No such option"),
    (["frustration"], "Missing argument"),
    (["graph", "{tmp}/empty.onnx"], "is an empty file"),
    (["graph", "{tmp}/raw.pkl"], "plain Python pickle"),
    (["graph", "{tmp}/nope.pt"], "no such file"),
    (["graph", ""], "the model is an empty name"),        # (it said '. is a directory')
    # several inputs' shapes: one per input (repeated, or ';'-separated)
    (["graph", "digits_cnn", "--input-shape", "1,8,8;5"], "gives 2 shapes (1,8,8;5); digits_cnn "
     "takes one input"),
    (["graph", "digits_cnn", "--input-shape", "1,8,8", "--input-shape", "5"], "takes one input"),
    (["graph", "digits_cnn", "--input-shape", "1,8,8;"], "--input-shape must look like"),
    (["graph", "digits_cnn", "--input-shape", "1,8,8 5"], "--input-shape 3,32,32 --input-shape 10"),
    # the capture rules, named by their options, before anything is loaded
    (["frustration", "digits_cnn", "--norm", "sideways"], "--norm must be one of fold, ignore"),
    (["frustration", "digits_cnn", "--gates", "maybe", "--nulls", "N1", "--out", "{tmp}/r"],
     "--gates must be one of scale, error"),
    (["active", "digits_cnn", "--inputs", "digits", "--norm", "x"], "--norm must be one of"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--batchnorm", "x"],
     "--batchnorm must be one of fold, ignore"),
    (["criticality", "meanfield", "digits_cnn", "--gates", "x"], "--gates must be one of"),
    (["active", "digits_cnn", "--inputs", "{tmp}/none.npy"], "none.npy: no inputs (a batch of 0)"),
    (["monotonicity", "digits_cnn", "--inputs", ""], "inputs: an empty name"),
    (["rap", "anneal", "--sweeps", "1", "--sweeps", "1"], "--sweeps gives 1 more than once"),
    # options that do not apply to the source were ignored, the run went on without them
    (["criticality", "meanfield", "{tmp}/garbage.npy", "--arch", "alexnet", "--batchnorm",
      "ignore"], "--arch, --batchnorm apply to networks; a matrix file holds the couplings"),
    (["criticality", "powerlaw", "ffn", "--input-shape", "1,6,6"],
     "--input-shape applies to a given network; the reference nets"),
    (["criticality", "powerlaw", "digits_cnn", "--epochs", "3", "--max-train", "10"],
     "--epochs, --max-train apply to the reference nets (trained here)"),
]


@pytest.fixture
def scene(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "garbage.npz").write_text("not a zip archive")
    (tmp_path / "garbage.npy").write_text("1 2\n3 4\n")
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    np.save(tmp_path / "none.npy", np.zeros((0, 1, 8, 8), np.float32))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.toml").write_text("[tool]\nname = 'other'\n")
    (tmp_path / "foreign" / "precious.txt").write_text("p")
    return tmp_path


@pytest.mark.parametrize("argv,fragment", BAD, ids=[" ".join(a[:1] + a[2:])[:60] for a, _ in BAD])
def test_bad_input_is_one_line(cli, scene, argv, fragment):
    before = sorted(p.relative_to(scene).as_posix() for p in scene.rglob("*"))
    code, out, err = cli([a.replace("{tmp}", str(scene)) for a in argv])
    assert code == 2, err
    assert "Traceback" not in err + out
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0]
    assert out == ""
    # refused before any work: nothing written (no run directory, no --save files)
    assert sorted(p.relative_to(scene).as_posix() for p in scene.rglob("*")) == before


def test_inputs_batch_memory_is_checked_first(cli):
    code, _, err = cli(["active", "digits_cnn", "--inputs", "digits", "--n", str(10**12)])
    assert code == 2 and err.count("\n") == 1 and "lower --n or --input-shape" in err


def test_help_lists_commands_in_whole_sentences(cli, monkeypatch):
    """A command's docstring is one paragraph in --help (its source line
    breaks used to split the command list mid-sentence)."""
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = cli(["--help"])
    assert code == 0, err
    assert ("Compute the frustration of a network's signed graph; with --nulls or --out, "
            "compare it with null models in a run directory.") in out


def test_skipped_inputs_are_said_once(cli, tmp_path):
    """An unreadable file in an image folder is skipped, and the user reads
    that once: the library's warning, not a second line of the command."""
    import warnings

    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{k}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, out, err = cli(["active", "digits_cnn", "--inputs", str(folder), "--replicas", "2"])
    assert code == 0, err
    assert err.count("skipped 1 ") == 1 and "broken.png" in err, err


def test_time_limit_reaches_the_exact_solver(cli):
    # the digits CNN's MILP is not proven within a second (it is not within
    # the default 60 s either): the best value found and a lower bound below it

    code, out, err = cli(["frustration", "digits_cnn", "--method", "exact", "--time-limit", "1",
                          "--json"])
    assert code == 0, err
    res = json.loads(out)
    assert res["optimal"] is False and 0 <= res["lower_bound"] < res["frustration"]
    assert res["seconds"] < 20          # the default limit would take 60 s


def test_exact_frustration_table_says_whether_it_is_certified(cli, tmp_path, monkeypatch):
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)), tmp_path / "m.pt")
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli(["frustration", str(tmp_path / "m.pt"), "--trust-pickle",
                          "--input-shape", "4", "--method", "exact"])
    assert code == 0, err
    assert "(exact, one solve" in out and "certified optimal" in out
    code, out, err = cli(["frustration", "digits_cnn", "--method", "exact", "--time-limit", "1"])
    assert code == 0, err
    assert "exact solver, not certified" in out and "best found, not certified: gap" in out


def test_active_time_limit_reaches_each_exact_solve(cli):
    # a digits subgraph (~400 nodes) is not proven within a second: its row,
    # the JSON and the note say so, with the lower bound, instead of "exact"

    code, out, err = cli(["active", "digits_cnn", "--inputs", "digits", "--n", "1",
                          "--method", "exact", "--time-limit", "1", "--replicas", "2", "--json"])
    assert code == 0, err
    res = json.loads(out)
    row = res["table"][0]
    assert row["method"] == "exact" and row["optimal"] is False
    assert 0 <= row["lower_bound"] < row["delta_x"]
    assert row["gap"] == pytest.approx(row["delta_x"] - row["lower_bound"])
    assert row["certification"].startswith("best found, not certified")
    assert res["summary"]["exact_certified"] == 0 and "not certified" in res["certification"]
    assert res["time_limit"] == 1 and res["seconds"] < 30      # the default would take 60 s


def test_first_line_of_an_error_message():
    """Third-party messages of many lines, or none, give one line."""
    from deepglass.errors import first_line

    assert first_line(RuntimeError("\n  shapes differ  \n(8x3 and 4x2)\n")) == "shapes differ"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError(""), typed=True) == "ValueError"
    assert first_line(ValueError("bad\nworse"), typed=True) == "ValueError: bad"
    assert first_line(OSError("x" * 50), limit=10) == "x" * 10


def test_a_model_failing_without_a_message_is_named_in_one_line():
    """A forward that raises an exception with an empty message: the error
    names the exception's type (its message is empty), on one line."""
    import torch

    from deepglass.errors import DeepglassError
    from deepglass.graph import SignedGraph

    class Silent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            if x.shape[-1] != 4:
                raise ValueError()
            return self.fc(x)

    with pytest.raises(DeepglassError) as info:
        SignedGraph.from_module(Silent(), (5,))
    assert str(info.value) == "Silent does not accept input of shape (5,): ValueError"


def test_a_user_error_is_a_value_error():
    """A refused argument is a ``ValueError`` (scikit-learn's convention), so a
    caller's ``except ValueError`` catches it; the CLI still says it in one line."""
    import torch

    import deepglass

    with pytest.raises(ValueError, match="input shape"):
        deepglass.frustration(torch.nn.Linear(4, 2), input_shape=(0,))
    with pytest.raises(ValueError, match="starts"):
        deepglass.frustration(torch.nn.Linear(4, 2), input_shape=(4,), starts=0)


@pytest.mark.parametrize("capture", ["export", "fx"])
def test_a_rule_refusing_its_input_keeps_its_message(monkeypatch, capture):
    """A rule that raises a user error (a ValueError) keeps its own message: the
    interpreter's net for the ValueErrors of a rule's unforeseen uses ("does not
    cover this use") lets it through."""
    import torch

    from deepglass.errors import DeepglassError
    from deepglass.graph import SignedGraph, aten, fx_capture

    def refuse(*args, **kwargs):
        raise DeepglassError("a convolution reads a value made only of padding")

    if capture == "export":
        monkeypatch.setitem(aten.ATEN_OPS, torch.ops.aten.conv2d, refuse)
    else:
        monkeypatch.setattr(fx_capture, "conv_op", refuse)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    with pytest.raises(DeepglassError) as info:
        SignedGraph.from_module(net, (1, 5, 5), capture=capture)
    # (the fx fallback says first which tracer it was)
    assert str(info.value).endswith(": a convolution reads a value made only of padding") or \
        str(info.value) == "a convolution reads a value made only of padding"


# -- several inputs (--input-shape once per input) ---------------------------------------
TWO_INPUTS = """
import torch, torch.nn as nn

class TwoIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 2, 3, padding=1)
        self.l = nn.Linear(5, 2 * 4 * 4)

    def forward(self, x, v):
        return self.c(x) + self.l(v).view(-1, 2, 4, 4)
"""


@pytest.fixture
def two_inputs(tmp_path):
    """A network of two inputs (3x4x4 and 5): its class's file, a state dict,
    and the graph the API gives."""
    import importlib.util

    import torch

    from deepglass.graph import SignedGraph

    (tmp_path / "twoin_model.py").write_text(TWO_INPUTS)
    spec = importlib.util.spec_from_file_location("twoin_model_test", tmp_path / "twoin_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = mod.TwoIn().eval()
    torch.save(net.state_dict(), tmp_path / "twoin.pth")
    return tmp_path, net, SignedGraph.from_module(net, [(3, 4, 4), (5,)])


@pytest.mark.parametrize("shapes", [["3,4,4", "5"], ["3,4,4;5"], ["3x4x4; 5"]])
def test_several_input_shapes(cli, two_inputs, shapes, monkeypatch):
    """--input-shape takes one shape per input, repeated or ';'-separated (it
    took one C,H,W, so a two-input network had no command line)."""

    tmp, _, g = two_inputs
    monkeypatch.chdir(tmp)
    argv = ["graph", str(tmp / "twoin.pth"), "--arch", f"{tmp}/twoin_model.py:TwoIn"]
    for s in shapes:
        argv += ["--input-shape", s]
    code, out, err = cli(argv + ["--json"])
    assert code == 0, err
    info = json.loads(out)
    # 48 + 5 input nodes and the sum's 32 (the dense layer's edges end on the
    # sum, through the view, SPEC §1); 600 conv edges and 160 dense ones
    assert (info["nodes"], info["edges"]) == (g.n_nodes, g.n_edges) == (85, 760)
    code, out, err = cli(["graph", "twoin.pth"] + argv[2:])   # the table names both shapes
    assert code == 0, err
    assert "twoin.pth: signed graph at input 3x4x4, 5" in out


def test_several_input_shapes_wrong_count_is_one_line(cli, two_inputs):
    tmp, _, _ = two_inputs
    base = ["graph", str(tmp / "twoin.pth"), "--arch", f"{tmp}/twoin_model.py:TwoIn"]
    for shapes, fragment in ((["3,4,4"], "cannot take inputs of shape 3,4,4"),
                             (["3,4,4;5;2"], "one shape per input, in order")):
        code, out, err = cli(base + [a for s in shapes for a in ("--input-shape", s)])
        assert code == 2 and out == "" and err.count("\n") == 1 and fragment in err, err


def test_several_input_shapes_onnx(cli, two_inputs):
    """An ONNX file of two inputs with a symbolic image size: its importer
    gets both shapes (a single shape says how to give several)."""
    pytest.importorskip("onnx")
    import contextlib
    import io

    import torch

    tmp, net, g = two_inputs
    path = tmp / "twoin.onnx"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        torch.onnx.export(net, (torch.randn(1, 3, 4, 4), torch.randn(1, 5)), str(path),
                          dynamo=False, input_names=["img", "vec"],
                          dynamic_axes={"img": {0: "b"}, "vec": {0: "b"}})
    code, out, err = cli(["graph", str(path), "--input-shape", "3,4,4", "--input-shape", "5",
                          "--json"])
    assert code == 0, err
    assert json.loads(out)["edges"] == g.n_edges
    code, out, err = cli(["graph", str(path), "--input-shape", "3,4,4"])
    assert code == 2 and err.count("\n") == 1, err
    assert "give one shape per input (repeat --input-shape" in err


def test_several_inputs_frustration_run_resumes(cli, two_inputs):
    """A frustration run of a two-input network records both shapes and resumes."""

    tmp, _, _ = two_inputs
    argv = ["frustration", str(tmp / "twoin.pth"), "--arch", f"{tmp}/twoin_model.py:TwoIn",
            "--input-shape", "3,4,4;5", "--replicas", "2", "--nulls", "N1",
            "--null-instances", "1", "--out", str(tmp / "run"), "--json"]
    code, out, err = cli(argv)
    assert code == 0, err
    assert json.loads(out)["resumed_units"] == 0
    code, out, err = cli(argv)
    assert code == 0, err
    assert json.loads(out)["resumed_units"] == 2


@pytest.mark.parametrize("command", [["active", "--inputs", "digits"],
                                     ["monotonicity", "--inputs", "digits"]])
def test_several_inputs_refused_where_inputs_are_one_tensor(cli, two_inputs, command):
    tmp, _, _ = two_inputs
    code, out, err = cli([command[0], str(tmp / "twoin.pth"), *command[1:], "--arch",
                          f"{tmp}/twoin_model.py:TwoIn", "--input-shape", "3,4,4;5"])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "--inputs feeds the network one tensor per sample; " in err
    assert "takes 2 inputs (3x4x4, 5)" in err


def test_input_shape_help_says_how_to_give_several(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    for command in (["graph"], ["frustration"], ["active"], ["monotonicity"],
                    ["criticality", "meanfield"], ["criticality", "powerlaw"]):
        code, out, err = cli([*command, "--help"])
        assert code == 0, err
        text = " ".join(out.replace("│", " ").split())
        assert "one shape per input, in order, repeating the option" in text, command
        if command[-1] != "powerlaw":     # the commands that capture a graph
            assert "--norm" in out and "--gates" in out and "--batchnorm" in out, command


# -- a pickled module of the user's own code -----------------------------------------------
def test_trust_pickle_finds_the_class_in_the_current_folder(cli, tmp_path, monkeypatch):
    """``torch.save(model)`` next to ``model.py``, then the command from that
    folder: the class is importable, as under ``python`` (the console script
    did not put the folder on sys.path: "No module named 'model'")."""
    import os
    import sys

    import torch

    name = "dg_user_pickled_net"
    (tmp_path / f"{name}.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, 3)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)
    try:
        net = __import__(name).Net()
        torch.save(net, tmp_path / "pickled.pt")
    finally:
        sys.modules.pop(name, None)
    # as the console script sees it: neither the folder nor '' on sys.path
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path[1:]
                                      if p not in ("", ".", os.getcwd())])
    try:
        code, out, err = cli(["graph", "pickled.pt", "--input-shape", "4", "--trust-pickle",
                              "--json"])
        assert code == 0, err
        assert json.loads(out)["edges"] == 12
    finally:
        sys.modules.pop(name, None)
    # from another folder: one line saying how to make the class importable
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    code, out, err = cli(["graph", str(tmp_path / "pickled.pt"), "--input-shape", "4",
                          "--trust-pickle"])
    sys.modules.pop(name, None)
    assert code == 2 and err.count("\n") == 1, err
    assert f"No module named '{name}'" in err and "PYTHONPATH" in err


# -- the capture rules of every command that builds a graph -------------------------------
GROUPNORM_NET = """
import torch.nn as nn

class GN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.c2 = nn.Conv2d(4, 3, 3, padding=1)
        self.head = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.c2(self.gn(self.c1(x)).relu()).flatten(1))
"""


@pytest.fixture
def groupnorm_net(tmp_path):
    """A net with a GroupNorm of negative gains (so --norm changes its graph)
    taking the digits' 1x8x8 inputs: its file and its state dict."""
    import importlib.util

    import torch

    (tmp_path / "gn_model.py").write_text(GROUPNORM_NET)
    spec = importlib.util.spec_from_file_location("gn_model_test", tmp_path / "gn_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = mod.GN().eval()
    with torch.no_grad():
        net.gn.weight.copy_(torch.tensor([1.0, -2.0, 0.5, -1.0]))
    torch.save(net.state_dict(), tmp_path / "gn.pth")
    return tmp_path, ["--arch", f"{tmp_path}/gn_model.py:GN", "--input-shape", "1,8,8"]


def test_frustration_norm_and_gates_options(cli, groupnorm_net):
    """frustration takes --norm / --gates as graph does (they were missing), and
    its run directory records them: a resume with other rules is refused."""

    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib

    tmp, opts = groupnorm_net
    model = str(tmp / "gn.pth")
    res = {}
    for norm in ("fold", "ignore"):
        code, out, err = cli(["frustration", model, *opts, "--norm", norm, "--replicas", "4",
                              "--json"])
        assert code == 0, err
        res[norm] = json.loads(out)["frustration"]
    assert res["fold"] != res["ignore"]
    run = tmp / "run"
    argv = ["frustration", model, *opts, "--replicas", "2", "--nulls", "N1",
            "--null-instances", "1", "--out", str(run), "--json"]
    code, out, err = cli(argv + ["--norm", "ignore", "--gates", "error"])
    assert code == 0, err
    rules = tomllib.loads((run / "config.toml").read_text())["runs"]["frustration"]["rules"]
    assert (rules["norm"], rules["gates"]) == ("ignore", "error")
    code, out, err = cli(argv + ["--norm", "ignore", "--gates", "error"])
    assert code == 0 and json.loads(out)["resumed_units"] == 2, err
    code, out, err = cli(argv)          # the default rules: another configuration
    assert code == 2 and err.count("\n") == 1 and "configuration differs (rules.gates: recorded 'error', now 'scale'; rules.norm:" in err, err


def test_active_records_norm_and_gates(cli, groupnorm_net):
    """active takes --norm / --gates; its run records rules other than the
    defaults (runs made before the options resume), and refuses a resume
    with other rules."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib

    tmp, opts = groupnorm_net
    run = tmp / "arun"
    argv = ["active", str(tmp / "gn.pth"), *opts, "--inputs", "digits", "--n", "2",
            "--replicas", "2", "--out", str(run), "--json"]
    code, out, err = cli(argv + ["--norm", "ignore"])
    assert code == 0 and json.loads(out)["resumed_units"] == 0, err
    cfg = tomllib.loads((run / "config.toml").read_text())["runs"]["active"]
    assert cfg["norm"] == "ignore" and "gates" not in cfg
    code, out, err = cli(argv + ["--norm", "ignore"])     # the same command resumes
    assert code == 0 and json.loads(out)["resumed_units"] == 1, err
    code, out, err = cli(argv)        # refused: the run's configuration, or its gauge's graph
    assert code == 2 and err.count("\n") == 1, err
    assert "configuration differs" in err or "gauge of another graph" in err, err
    run2 = tmp / "arun2"
    code, out, err = cli(argv[:-3] + ["--out", str(run2), "--json"])
    assert code == 0, err
    cfg = tomllib.loads((run2 / "config.toml").read_text())["runs"]["active"]
    assert "norm" not in cfg and "gates" not in cfg   # as before the options


def test_monotonicity_records_capture_rules(cli, groupnorm_net):
    """monotonicity's gauges come from a signed graph: --batchnorm / --norm /
    --gates choose its rules, recorded where not the defaults."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib

    tmp, opts = groupnorm_net
    run = tmp / "mrun"
    argv = ["monotonicity", str(tmp / "gn.pth"), *opts, "--inputs", "digits", "--n", "2",
            "--amplitudes", "2", "--nulls", "", "--replicas", "2", "--out", str(run), "--json"]
    code, out, err = cli(argv + ["--norm", "ignore"])
    assert code == 0, err
    cfg = tomllib.loads((run / "config.toml").read_text())["runs"]["monotonicity"]
    assert cfg["rules"] == {"norm": "ignore"}
    code, out, err = cli(argv)
    assert code == 2 and err.count("\n") == 1 and "configuration differs" in err, err


def _tiny_onnx(path):
    """A Conv -> Relu ONNX model written with onnx.helper, saved at ``path``."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 2, 3, 3))
                                .astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_an_onnx_file_is_read_whatever_its_name(cli, tmp_path):
    """An ONNX file is recognized by its content, not only by a .onnx name."""
    _tiny_onnx(tmp_path / "model.onnx")
    (tmp_path / "model.bin").write_bytes((tmp_path / "model.onnx").read_bytes())
    code, named, err = cli(["graph", str(tmp_path / "model.onnx"), "--json"])
    assert code == 0, err
    code, unnamed, err = cli(["graph", str(tmp_path / "model.bin"), "--json"])
    assert code == 0, err
    assert unnamed.replace("model.bin", "model.onnx") == named


@pytest.mark.parametrize("content", [b"\x08\x07\x12\x05torch\x99\x99", b"\x38\x00garbage",
                                     b"hello world\n"])
def test_a_file_of_no_known_kind_is_one_line(cli, tmp_path, content):
    (tmp_path / "model.bin").write_bytes(content)
    code, out, err = cli(["graph", str(tmp_path / "model.bin")])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "not a PyTorch checkpoint, safetensors, TorchScript or ONNX file" in err, err


def test_a_torchscript_archive_error_is_one_line(cli, tmp_path):
    """PyTorch's "torch.jit.load is deprecated" warning is not printed before
    the archive's own message."""
    import warnings

    import torch
    import torch.nn as nn

    path = tmp_path / "small.pt"
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(net, torch.randn(1, 3, 8, 8)), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, out, err = cli(["graph", str(path)])      # no --input-shape
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "is a TorchScript archive" in err and "deprecated" not in err, err
    # a sample too large for memory: refused before the archive's conversion runs
    # one (an allocator RuntimeError and its traceback before)
    code, out, err = cli(["graph", str(path), "--input-shape", "3,100000,100000"])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "one input sample of shape 3,100000,100000" in err and "lower --input-shape" in err
    # a shape of another rank: said so, with the archive's own reason (the exporter's
    # "Cannot determine scalar type" before)
    code, out, err = cli(["graph", str(path), "--input-shape", "1,6"])
    assert code == 2 and err.count("\n") == 1, err
    assert "does not accept input of shape 1,6 (RuntimeError: Expected 4-dimensional" in err
    # traced in train mode: said so, not "exported ... export it after model.eval()"
    bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(bn, torch.randn(2, 3, 8, 8)), str(tmp_path / "train.pt"))
    code, out, err = cli(["graph", str(tmp_path / "train.pt"), "--input-shape", "3,8,8"])
    assert code == 2 and err.count("\n") == 1, err
    assert "traced or scripted with the model in train mode" in err and "--arch" in err


def test_model_files_of_forms_without_a_graph_say_what_to_do(cli, tmp_path, monkeypatch):
    """A quantized state dict was "an OrderedDict, not a state dict"; a bare
    .py file "not a PyTorch checkpoint"; an archive the ONNX exporter cannot
    write gave the exporter's words alone."""
    import copy
    import warnings

    import torch
    import torch.nn as nn

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text(
        "import torch, torch.nn as nn\n"
        "from typing import Dict\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(72, 3)\n"
        "    def forward(self, x) -> Dict[str, torch.Tensor]:\n"
        "        return {'logits': self.fc(self.conv(x).relu().flatten(1))}\n")
    from deepglass.zoo.user_arch import build_user_arch

    net = build_user_arch("model.py:Net")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {nn.Linear},
                                                   dtype=torch.qint8)
        torch.save(q.state_dict(), "q.pt")
        torch.jit.save(torch.jit.script(net), "dict.pt")
    for argv, fragment in [
            (["q.pt", "--arch", "model.py:Net"], "q.pt is the state dict of a quantized model"),
            (["model.py"], "model.py is Python code, not a model file: name what builds the "
                           "network in it, model.py:CLASS"),
            (["dict.pt"], "through ONNX: Exporting the operator 'prim::DictConstruct'.* give the "
                          "Python class with --arch")]:
        code, out, err = cli(["graph", *argv, "--input-shape", "1,8,8"])
        assert code == 2 and err.count("\n") == 1, err
        assert re.search(fragment, err), err


def _sigint_default():
    """In the child: SIGINT as a terminal gives it, also where the tests run
    with SIGINT ignored (a background job of a non-interactive shell), which
    the child would inherit (Python then keeps it ignored)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("module", ["typer", "deepglass.cli.graph", "deepglass.cli.criticality"])
def test_ctrl_c_while_the_command_line_loads_is_one_line(tmp_path, module):
    """Ctrl-C while ``deepglass`` still imports its modules: one line on stderr
    and exit status 130, not a KeyboardInterrupt traceback.  The SIGINT is sent
    by the process itself when it starts importing ``module``."""
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Hook())\n"
        "sys.argv = ['deepglass', 'graph', 'digits_cnn']\n"
        "from deepglass.cli import main\n"
        "main()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, preexec_fn=_sigint_default)
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), proc.stderr


def test_importing_the_command_line_keeps_python_s_ctrl_c():
    """Once loaded, ``deepglass.cli`` leaves SIGINT to Python (a KeyboardInterrupt),
    as a library should."""
    import subprocess
    import sys

    script = ("import signal, deepglass.cli\n"
              "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, preexec_fn=_sigint_default)
    assert proc.stdout.strip() == "True", proc.stderr[-2000:]


def test_ctrl_c_in_a_command_says_so_once(monkeypatch, capsys, tmp_path):
    """Ctrl-C while a command runs: exit status 130 and one line saying so
    (typer returned 130 without a word); a run with ``--out`` says only where
    its finished units are."""
    import importlib

    import deepglass.cli.common as common
    import deepglass.cli.graph as graph_cli
    import deepglass.experiments.frustration as frustration

    app = importlib.import_module("deepglass.cli.app")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "INTERRUPT_SAID", [False])
    monkeypatch.setattr(graph_cli, "load_graph", interrupted)
    with pytest.raises(SystemExit) as exc:
        app.main(["graph", "digits_cnn"])
    assert exc.value.code == 130
    out = capsys.readouterr()
    # a command without --out (graph, rap mc) keeps nothing, and says so
    assert out.err.strip().splitlines() == ["interrupted; nothing was written"]
    monkeypatch.setattr(frustration, "frustration_vs_nulls", interrupted)
    # before the run directory is made (the network loading): nothing written, and
    # said so (it said the units were saved in a directory that did not exist)
    for made, first in ((False, "interrupted before the run directory"),
                        (True, "interrupted: the finished units are saved")):
        if made:
            (tmp_path / "run").mkdir()
        with pytest.raises(SystemExit) as exc:
            app.main(["frustration", "digits_cnn", "--nulls", "N1", "--out",
                      str(tmp_path / "run")])
        assert exc.value.code == 130
        out = capsys.readouterr()
        said = (out.out + out.err).strip().splitlines()
        assert len(said) == 1 and said[0].startswith(first), said


_TWO_HEADS = '''
import torch.nn as nn


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(1, 3, 5)
        self.frames, self.logits = nn.Conv1d(3, 2, 1), nn.Linear(3 * 12, 5)

    def forward(self, x):
        h = self.c(x).relu()
        return {"frames": self.frames(h), "logits": self.logits(h.flatten(1))}
'''


def test_labels_of_a_net_with_several_heads_say_which_head_they_index(cli, tmp_path):
    """``--target label`` on a two-head net indexed the first head silently
    (class labels as positions of a frame map)."""
    import numpy as np

    (tmp_path / "heads.py").write_text(_TWO_HEADS)
    np.savez(tmp_path / "s.npz", x=np.random.default_rng(0).normal(size=(2, 1, 16)).astype(
        np.float32), labels=np.array([1, 4]))
    base = ["active", f"{tmp_path}/heads.py:TwoHeads", "--input-shape", "1,16", "--inputs",
            str(tmp_path / "s.npz"), "--replicas", "2", "--target", "label", "--json"]
    code, _, err = cli(base)
    assert code == 0 and "the labels index the output 'frames', the first of 2 (frames, " \
                         "logits); choose another with --output" in err
    code, _, err = cli(base + ["--output", "logits"])
    assert code == 0 and "labels index" not in err


def test_a_forward_that_asserts_on_its_input_is_one_line(cli, tmp_path, monkeypatch):
    """A forward's own check (an ``assert``, as diffusers' timestep embedding
    makes) is the input's fault: one line, not a traceback."""
    (tmp_path / "asserting.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 2, 3)\n"
        "    def forward(self, x):\n"
        "        assert x.shape[-1] == 8, 'width must be 8'\n"
        "        return self.conv(x)\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["graph", "asserting:Net", "--input-shape", "1,6,6"])
    assert code == 2 and "Traceback" not in err + out
    assert err.count("\n") == 1 and "cannot take inputs of shape 1,6,6 (width must be 8)" in err
    # a check of the values (demucs' pad1d): the exporter meets a data-dependent
    # bool, and the hint says what to do with such a check, not only .item()
    (tmp_path / "checking.py").write_text(
        "import torch.nn as nn, torch.nn.functional as F\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv1d(1, 2, 3)\n"
        "    def forward(self, x):\n"
        "        out = F.pad(x, (2, 2), mode='reflect')\n"
        "        assert (out[..., 2:-2] == x).all()\n"
        "        return self.conv(out)\n")
    code, out, err = cli(["graph", "checking:Net", "--input-shape", "1,16"])
    assert code == 2 and err.count("\n") == 1, err
    assert "checking.py:8 in forward" in err and "a check of the values there" in err, err


def test_a_class_spec_longer_than_a_file_name_is_a_class_spec(cli):
    """A ``MODULE:CLASS(args)`` longer than a file name may be (255 bytes) is
    not looked up as a file (it raised OSError: File name too long)."""
    args = ", ".join(["in_channels=1", "out_channels=2", "kernel_size=3", "stride=1",
                      "padding=0", "dilation=1", "groups=1", "bias=True"])
    spec = f"torch.nn:Conv2d({args}, padding_mode='zeros')"
    spec = spec.replace(", ", "," + " " * 20)
    assert len(spec) > 255
    code, out, err = cli(["graph", spec, "--input-shape", "1,5,5", "--json"])
    assert code == 0, err
    assert json.loads(out)["edges"] == 2 * 9 * 9


def test_every_option_of_every_command_says_what_it_is():
    """``--help`` describes every option (``rap anneal --beta-start``, ``rap
    student --epochs`` had none).  (Typer builds its commands with a click of
    its own: groups and options are told apart by their attributes.)"""
    import typer

    from deepglass.cli import app

    missing, options = [], 0

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
            return
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and not p.hidden:
                missing.extend([(" ".join(path), p.opts[0])] if not p.help else [])
                nonlocal options
                options += 1

    walk(typer.main.get_command(app), [])
    assert options > 50 and not missing


# -- files and folders that cannot be read (permissions) ---------------------------------
def _denied(path):
    return PermissionError(13, "Permission denied", str(path))


def test_an_unreadable_model_file_is_one_line(cli, tmp_path, monkeypatch):
    """A weights file that cannot be opened (chmod 000): one line, status 2 (it was a
    PermissionError traceback; the permissions are simulated, as root reads anything)."""
    import builtins

    import torch

    from deepglass import zoo
    from deepglass.zoo import loading

    path = tmp_path / "w.pth"
    torch.save(zoo.get("digits_cnn").state_dict(), path)

    def locked_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise _denied(file)
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(loading, "open", locked_open, raising=False)
    code, _, err = cli(["graph", str(path), "--arch", "digits_cnn"])
    assert code == 2 and err.strip() == f"error: cannot read {path}: Permission denied"


def test_a_run_resumed_past_unreadable_files_loses_nothing(cli, tmp_path, monkeypatch):
    """Resuming a run whose unit file or report cannot be read: the unit is written
    again (said in a warning) and the report kept aside as report.md.edited (both were
    PermissionError tracebacks, the report's after the whole computation)."""
    from deepglass import owned

    out = tmp_path / "run"
    argv = ["frustration", "digits_cnn", "--replicas", "2", "--out", str(out)]
    assert cli(argv)[0] == 0
    digest = owned.file_digest

    def locked(path):
        if path.suffix == ".parquet" and "units" in path.parts or path.name == "report.md":
            raise _denied(path)
        return digest(path)

    monkeypatch.setattr(owned, "file_digest", locked)
    code, _, err = cli(argv)
    assert code == 0, err
    assert "unreadable (Permission denied)" in err
    assert (out / "report.md.edited").is_file() and (out / "report.md").is_file()


def test_an_unreadable_data_folder_is_one_line(tmp_path, monkeypatch):
    """criticality's image folder and the inputs' folder that cannot be listed: one line
    naming it (the first was a PermissionError traceback, the second said the folder
    held no image files)."""
    import os

    from deepglass.criticality import data
    from deepglass.errors import DeepglassError
    from deepglass.inputs import load_inputs

    root = tmp_path / "imgs"
    (root / "cls").mkdir(parents=True)

    def locked_folder(path):
        raise _denied(path / "cls")

    monkeypatch.setattr(data, "_load_folder", locked_folder)
    with pytest.raises(DeepglassError) as info:
        data.load_dataset(str(root))
    assert str(info.value) == f"cannot read {root / 'cls'}: Permission denied"
    scandir = os.scandir

    def locked_scandir(path="."):
        if str(path) == str(root):
            raise _denied(path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", locked_scandir)
    with pytest.raises(DeepglassError) as info:
        load_inputs(str(root), (1, 8, 8), n=2)
    assert str(info.value) == f"cannot read {root}: Permission denied"


def test_a_memory_refusal_names_only_options_the_command_has(cli, tmp_path):
    """The demo has --max-memory-gb alone: its refusal said 'lower --replicas to 37
    or fewer', an option it has not ('No such option')."""
    from deepglass.errors import TooLargeError
    from deepglass.memory import check_fits, options_offered

    code, _, err = cli(["demo", "--max-memory-gb", "0.001", "--out", str(tmp_path / "d")])
    assert code == 2 and err.strip().endswith("raise --max-memory-gb") and "--replicas" not in err
    with options_offered("--max-memory-gb"), pytest.raises(TooLargeError) as info:
        check_fits(2e9, "80 start gauges", "lower --replicas", max_memory_gb=1)
    assert str(info.value).endswith("; raise --max-memory-gb")
    with pytest.raises(TooLargeError, match="; lower --replicas$"):     # any command's
        check_fits(2e9, "80 start gauges", "lower --replicas", max_memory_gb=1)
    # every command offers its own options (criticality powerlaw said 'lower --n')
    import typer

    from deepglass.cli.checks import strict

    def command(n_boot: int = typer.Option(10, "--n-boot"), max_test: int = 100):
        check_fits(2e9, "reading the tensor files", "lower --n", max_memory_gb=1)

    with pytest.raises(TooLargeError, match="; raise --max-memory-gb$"):
        strict(command)(n_boot=10, max_test=100)

    def command2(n: int = typer.Option(5, "--n")):
        check_fits(2e9, "reading the tensor files", "lower --n", max_memory_gb=1)

    with pytest.raises(TooLargeError, match="; lower --n$"):
        strict(command2)(n=5)


def test_a_solver_s_progress_shows_its_sweep(monkeypatch):
    """A descent's number of sweeps is set by its dynamics: the progress line
    shows the sweep reached (a spinner, no total), and nothing before the
    first sweep."""
    import io

    from rich.console import Console

    from deepglass.cli import common

    buf = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=buf, force_terminal=True, width=80))
    with common.progress("descent", None) as sweep:
        assert buf.getvalue() == ""
        for k in (1, 5, 37):
            sweep(k)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", buf.getvalue())
    assert "descent sweep 37" in text and "/?" not in text

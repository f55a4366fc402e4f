"""Bad command lines: exit status 2, exactly one line on stderr (``error: ...``),
no traceback, nothing computed and nothing written."""

import pickle

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
    (["criticality", "meanfield", "digits_cnn", "--lanczos-tol", "-1"], "--lanczos-tol must be > 0"),
    (["criticality", "meanfield", "digits_cnn", "--lanczos-tol", "nan"], "must be a finite number"),
    (["frustration", "digits_cnn", "--max-memory-gb", "0"], "--max-memory-gb must be > 0"),
    (["frustration", "digits_cnn", "--time-limit", "5"], "--time-limit applies to --method exact"),
    (["frustration", "digits_cnn", "--method", "exact", "--time-limit", "0"],
     "--time-limit must be > 0, got 0"),
    (["frustration", "digits_cnn", "--method", "exact", "--time-limit", "nan"],
     "--time-limit must be a finite number"),
    (["rap", "bp", "--N", "10", "--beta", "inf"], "--beta must be a finite number"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--alpha", "1.5"], "--alpha must be in (0, 1)"),
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
     "beta_end (1) must exceed beta_start (5)"),
    (["rap", "anneal", "--scan-beta-max", "0.05", "--out", "{tmp}/a"],
     "scan_beta_max (0.05) must exceed beta_start (0.1)"),
    (["rap", "anneal", "--scan-points", "0"], "--scan-points must be an integer >= 2"),
    (["rap", "phase", "--bracket-tol", "0"], "--bracket-tol must be > 0"),
    (["criticality", "powerlaw", "cnnn"], "reference nets: all, feedforward, cnn, autoencoder"),
    (["criticality", "meanfield", "{tmp}/garbage.npz"], "garbage.npz is not a NumPy .npz file"),
    (["criticality", "meanfield", "digits_cnn", "--out", "{tmp}/e", "--n-t", "0", "--n-broad", "0"],
     "the temperature grid is empty"),
    (["criticality", "meanfield", "{tmp}/garbage.npy"], "garbage.npy is not a NumPy .npy file"),
    (["frustration", "digits_cnn", "--out", "{tmp}/afile"], "exists and is not a directory"),
    (["frustration", "digits_cnn", "--out", "{tmp}/afile/sub"], "is a file, not a directory"),
    (["frustration", "digits_cnn", "--save", "{tmp}/nonexistent/x"], "does not exist"),
    (["frustration", "digits_cnn", "--save", "/proc/deepglass-x"], "cannot write in /proc"),
    (["frustration", "digits_cnn", "--nulls", "N1", "--out", "{tmp}/foreign", "--force"],
     "config.toml is not a deepglass run's"),
    (["frustration", "digits_cnn", "--method", "magic"], "unknown method 'magic'"),
    (["frustration", "digits_cnn", "--null-instances", "20"],
     "--null-instances apply to experiments (--nulls or --out)"),
    (["frustration", "digits_cnn", "--draws-per-unit", "2", "--force"],
     "--draws-per-unit, --force apply to experiments"),
    (["frustration", "digits_cnn", "--device", "nonsense"], "device must be 'cpu', 'cuda'"),
    (["frustration", "digits_cnn", "--device", "cuda:99"], "requested but torch sees"),
    (["frustration", "digits_cnn", "--nulls", "N1", "--out", "{tmp}/r", "--device", "gpu"],
     "device must be 'cpu', 'cuda'"),
    (["monotonicity", "digits_cnn", "--inputs", "digits", "--device", "nonsense"],
     "device must be 'cpu', 'cuda'"),
    (["frustration", "digits_cnn", "--init", "sideways"], "--init must be random or paper"),
    (["frustration", "digits_cnn", "--bogus"], "No such option"),
    (["frustration"], "Missing argument"),
    (["graph", "{tmp}/empty.onnx"], "is an empty file"),
    (["graph", "{tmp}/raw.pkl"], "plain Python pickle"),
    (["graph", "{tmp}/nope.pt"], "no such file"),
]


@pytest.fixture
def scene(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "garbage.npz").write_text("not a zip archive")
    (tmp_path / "garbage.npy").write_text("1 2\n3 4\n")
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
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
    import json

    code, out, err = cli(["frustration", "digits_cnn", "--method", "exact", "--time-limit", "1",
                          "--json"])
    assert code == 0, err
    res = json.loads(out)
    assert res["optimal"] is False and 0 <= res["lower_bound"] < res["frustration"]
    assert res["seconds"] < 20          # the default limit would take 60 s


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

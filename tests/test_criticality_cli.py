"""``deepglass criticality`` and the Python API: JSON headline numbers, run
directories that resume, one-line errors (tiny settings, seconds)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import scipy.sparse
import torch
import torch.nn as nn

import deepglass.criticality as crit


def test_lazy_names_all_exist():
    for name in crit.__all__:
        assert getattr(crit, name) is not None, name


def test_dir_and_help_list_the_lazy_names():
    """dir(deepglass) showed none of frustration, null_model, ... before first
    use (nor help()'s FUNCTIONS section): the names are imported lazily."""
    import subprocess
    import sys

    # a fresh process: nothing imported before the checks
    code = ("import deepglass, deepglass.criticality as c, deepglass.experiments as e\n"
            "for m in (deepglass, c, e):\n"
            "    missing = set(m.__all__) - set(dir(m))\n"
            "    assert not missing, (m.__name__, missing)\n"
            "    extra = {'annotations', 'lazy_dir', 'lazy_getattr'} & set(dir(m))\n"
            "    assert not extra, (m.__name__, extra)\n"
            "import pydoc\n"
            "text = pydoc.render_doc(deepglass, renderer=pydoc.plaintext)\n"
            "assert 'near_monotonicity(' in text and 'null_model(' in text\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_api():
    W = np.full((30, 30), 0.7)
    assert abs(crit.critical_temperature(W) - 0.7) < 1e-9
    assert abs(crit.critical_temperature(scipy.sparse.csr_matrix(W)) - 0.7) < 1e-9
    x = np.random.default_rng(0).pareto(1.5, 800) + 1
    v = crit.power_law_verdict(x, discrete=False, n_boot=5)
    assert v.verdict in ("plausible", "rejected", "inconclusive", "too little data")
    assert np.isfinite(v.alpha) and np.isfinite(v.xmin) and np.isfinite(v.p_value)
    assert set(v.likelihood_ratios) == {"lognormal", "exponential", "truncated_power_law"}


def test_meanfield_matrix_json_and_run(tmp_path, cli):
    J = 1.3
    np.save(tmp_path / "cw.npy", np.full((25, 25), J))
    code, out, _ = cli(["criticality", "meanfield", str(tmp_path / "cw.npy"), "--json"])
    assert code == 0
    d = json.loads(out)
    assert d["N"] == 25 and abs(d["T_c"] - J) < 1e-9 and abs(d["lambda_max"] - 25 * J) < 1e-7
    # the non-zero couplings, named as such (the key said edges: a graph's
    # are half of them)
    assert d["n_couplings"] == 25 * 25 and "n_edges" not in d
    run = tmp_path / "run"
    argv = ["criticality", "meanfield", str(tmp_path / "cw.npy"), "--out", str(run), "--n-t", "8",
            "--t-max", "0.03", "--n-broad", "3", "--n-h", "5", "--fields", "0", "--json"]
    code, out, err = cli(argv)
    assert code == 0, err
    d = json.loads(out)
    assert abs(d["exponents"]["beta"] - 0.5) < 0.025 and abs(d["exponents"]["gamma"] - 1) < 0.05
    curves = pd.read_parquet(run / "meanfield_curves_T.parquet")
    assert curves.converged.all() and (run / "figures" / "meanfield_T.png").exists()
    assert (run / "figures" / "meanfield_h.png").exists()
    assert "T_c = lambda_max / N = 1.3" in (run / "report.md").read_text()
    assert json.loads((run / "summary.json").read_text())["meanfield"]["N"] == 25
    # resuming reads the stored units back (same numbers, no new Lanczos run)
    stamp = (run / "units" / "criticality-meanfield" / "spectrum" / "spectrum.parquet").stat().st_mtime_ns
    code, out2, _ = cli(argv)
    assert code == 0 and json.loads(out2)["T_c"] == d["T_c"]
    assert (run / "units" / "criticality-meanfield" / "spectrum" / "spectrum.parquet").stat().st_mtime_ns == stamp
    # and the terminal says so (it printed what a fresh run prints)
    code, out3, _ = cli(argv[:-1])
    assert code == 0 and re.search(rf"wrote {re.escape(str(run))} \(\d+ finished units reused\)", out3)
    # another configuration in the same directory is refused
    code, _, err = cli(argv[:-1] + ["--n-h", "7"])
    assert code == 2 and err.startswith("error:") and "--force" in err


def test_meanfield_sparse_npz_and_model(tmp_path, cli):
    A = scipy.sparse.random(40, 40, density=0.2, random_state=1, format="csr")
    scipy.sparse.save_npz(tmp_path / "A.npz", A)
    code, _, err = cli(["criticality", "meanfield", str(tmp_path / "A.npz")])
    assert code == 2 and "symmetric" in err and "\n" not in err.strip()
    code, out, _ = cli(["criticality", "meanfield", str(tmp_path / "A.npz"),
                                 "--symmetrize", "--json"])
    ref = np.linalg.eigvalsh((A + A.T).toarray())[-1]
    assert code == 0 and abs(json.loads(out)["lambda_max"] - ref) < 1e-8 * ref
    # a model file: its signed graph's As, matrix-free
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    path = tmp_path / "net.pt"
    torch.save(net, path)
    code, out, err = cli(["criticality", "meanfield", str(path), "--input-shape", "6",
                                   "--trust-pickle", "--json"])
    assert code == 0, err
    from deepglass.graph import SignedGraph

    g = SignedGraph.from_module(net, (6,))
    ref = np.linalg.eigvalsh(g.to_scipy_sym().toarray().astype(np.float64))[-1]
    d = json.loads(out)
    assert d["kind"] == "graph" and d["N"] == 14 and abs(d["lambda_max"] - ref) < 1e-5 * ref
    for bad, msg in ((tmp_path / "none.npy", "not found"), (tmp_path / "bad.npy", "is not a NumPy .npy file")):
        if bad.name == "bad.npy":
            bad.write_bytes(b"garbage")
        code, _, err = cli(["criticality", "meanfield", str(bad)])
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_powerlaw_reference_net_run_resumes(tmp_path, cli):
    run = tmp_path / "pl"
    argv = ["criticality", "powerlaw", "ae", "--data", "digits", "--epochs", "2",
            "--checkpoint-every", "1", "--max-train", "200", "--max-test", "120", "--n-boot", "0",
            "--out", str(run), "--json"]
    code, out, err = cli(argv)
    assert code == 0, err
    d = json.loads(out)
    v = pd.read_parquet(run / "powerlaw_verdicts.parquet")
    # observables x layers: weights of encoder and decoder, three per hidden layer
    assert sorted(v.epoch.unique()) == [0, 1, 2] and len(v) == 3 * 5
    assert set(v.observable) == {"weight", "pattern_frequency", "neuron_activation", "mean_activation"}
    assert set(v.verdict) <= {"plausible", "rejected", "inconclusive", "too little data"} and v.reason.str.len().min() > 0
    assert d["n_verdicts"] == 15 and sum(d["final_verdicts"]["autoencoder"].values()) == 5
    for f in ("powerlaw_autoencoder_weight.png", "rank_autoencoder.png",
              "checkpoints_autoencoder.png"):
        assert (run / "figures" / f).exists(), f
    assert "Verdicts at the last checkpoint" in (run / "report.md").read_text()
    assert (run / "checkpoints" / "autoencoder_e0002.pt").exists()
    # lose the last unit: the resumed run retrains from the epoch-1 checkpoint and
    # reproduces it exactly
    last = run / "units" / "criticality-powerlaw" / "verdicts" / "autoencoder_e0002.parquet"
    before = pd.read_parquet(last)
    last.unlink()
    (run / "checkpoints" / "autoencoder_e0002.pt").unlink()
    code, out, err = cli(argv)
    assert code == 0, err
    after = pd.read_parquet(last)
    pd.testing.assert_frame_equal(before.drop(columns="unit_seconds"),
                                  after.drop(columns="unit_seconds"))


def test_powerlaw_user_model_with_layers(tmp_path, cli):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 30), nn.ReLU(), nn.Linear(30, 10))
    path = tmp_path / "user.pt"
    torch.save(net, path)
    code, out, err = cli(["criticality", "powerlaw", str(path), "--data", "digits",
                                   "--layers", "2", "--input-shape", "1,8,8", "--max-test", "100",
                                   "--trust-pickle",
                                   "--n-boot", "0", "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert d["n_verdicts"] == 2 + 3 and d["data"]["n_test"] == 100
    # images of another size (MNIST's 28x28) are fitted to the network's input
    code, out, err = cli(["criticality", "powerlaw", str(path), "--data", "mnist",
                          "--layers", "2", "--input-shape", "1,8,8", "--max-test", "50",
                          "--trust-pickle", "--n-boot", "0", "--json"])
    assert code == 0, err
    d = json.loads(out)["data"]
    assert d["input_shape"] == [1, 8, 8] and "fitted 1x28x28 -> 1x8x8" in d["name"]
    code, _, err = cli(["criticality", "powerlaw", str(path), "--data", "digits",
                                 "--layers", "encoder.relu", "--input-shape", "1,8,8",
                                 "--trust-pickle"])
    assert code == 2 and "no layer 'encoder.relu'" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(["criticality", "powerlaw", "cnn", "--data", str(tmp_path / "nope")])
    assert code == 2 and "not found" in err and len(err.strip().splitlines()) == 1


def test_powerlaw_reference_layers_are_checked_before_any_net_trains(tmp_path, cli, monkeypatch):
    """--layers names a layer of one reference net and not of another: refused in one
    line naming that net, before any net trains or the run directory is made (all
    trained feedforward and cnn first, and wrote layers = ['nope'] to config.toml, so
    the corrected command then needed --force)."""
    from deepglass.criticality import nets

    def no_training(*args, **kwargs):
        raise AssertionError("a net trained before --layers was checked")

    monkeypatch.setattr(nets, "train_reference_net", no_training)
    out = tmp_path / "run"
    code, _, err = cli(["criticality", "powerlaw", "all", "--data", "digits", "--layers", "relu1",
                        "--epochs", "1", "--out", str(out)])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: reference net 'autoencoder': model has no layer 'relu1'")
    assert not out.exists()


def test_meanfield_without_a_transition(tmp_path, cli):
    # zero couplings (N > 12 went to ARPACK: a 67-line traceback) and W = -1 1^T
    # (exact lambda_max = 0, round-off +2e-33 made a 'transition' whose grid
    # rounded to T = 0): T_c = 0, and curves are refused in one line
    np.save(tmp_path / "zero.npy", np.zeros((20, 20)))
    scipy.sparse.save_npz(tmp_path / "zero.npz", scipy.sparse.csr_matrix((30, 30)))
    np.save(tmp_path / "neg.npy", -np.ones((20, 20)))
    for name in ("zero.npy", "zero.npz", "neg.npy"):
        code, out, err = cli(["criticality", "meanfield", str(tmp_path / name), "--json"])
        assert code == 0, err
        d = json.loads(out)
        assert d["lambda_max"] == 0.0 and d["T_c"] == 0.0
        code, _, err = cli(["criticality", "meanfield", str(tmp_path / name), "--out",
                            str(tmp_path / f"run-{name}")])
        last = err.strip().splitlines()[-1]       # after the progress bar
        assert code == 2 and last.startswith("error: no mean-field transition"), err
        assert "Traceback" not in err


def test_option_errors_name_the_options(tmp_path, cli):
    # messages named fit_t_min / subset_size; --n-t 0 was accepted and wrote exponents
    # that were all NaN from 0 points
    np.save(tmp_path / "W.npy", np.full((20, 20), 1.0))
    W = str(tmp_path / "W.npy")
    run = str(tmp_path / "run")
    for argv, msg in (
            (["meanfield", W, "--fit-t-max", "-1", "--out", run], "--fit-t-max must exceed 0.001"),
            (["meanfield", W, "--n-t", "0", "--out", run], "--n-t 0 puts 0 temperature(s)"),
            # t = 0.001 and 0.3: one inside the window 0.001..0.03
            (["meanfield", W, "--n-t", "2", "--out", run], "--n-t 2 puts 1 temperature(s)"),
            (["meanfield", W, "--t-min", "0.5", "--t-max", "0.1", "--out", run],
             "--t-min and --t-max must satisfy"),
            (["meanfield", W, "--field-temps", "1,-1", "--out", run], "--field-temps must be positive"),
            (["powerlaw", "cnn", "--subset-size", "0"], "--subset-size must be in [1, 20]"),
            (["powerlaw", "cnn", "--subset-size", "21"], "--subset-size must be in [1, 20]"),
            (["powerlaw", "cnn", "--n-subsets", "0"], "--n-subsets must be >= 1")):
        code, out, err = cli(["criticality", *argv])
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert msg in lines[0], (msg, lines[0])
        assert not (tmp_path / "run" / "meanfield_exponents.parquet").exists()
    # three log-grid points inside the window are enough
    code, _, err = cli(["criticality", "meanfield", W, "--n-t", "3", "--t-max", "0.03",
                        "--n-broad", "0", "--n-h", "3", "--fields", "0", "--field-temps", "1.5",
                        "--out", run, "--json"])
    assert code == 0, err


def test_meanfield_keeps_to_the_memory_budget(tmp_path, cli):
    """--max-memory-gb was offered and ignored: AlexNet's mean field took 0.9 GB beyond
    its graph under a 0.01 GB limit. The estimate is checked before any work."""
    from deepglass.criticality.couplings import coupling_operator
    from deepglass.criticality.meanfield_run import meanfield_bytes

    out = tmp_path / "run"
    code, _, err = cli(["criticality", "meanfield", "digits_cnn", "--max-memory-gb", "0.0001",
                        "--out", str(out)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert "the mean-field computation on 1,034 units would need" in err
    np.save(tmp_path / "W.npy", np.full((30, 30), 0.5))
    assert meanfield_bytes(coupling_operator(np.load(tmp_path / "W.npy"))) == 40 * 8 * 30


def test_meanfield_without_out_says_what_it_computes(tmp_path, cli):
    """Without --out the curve options were accepted and ignored, a negative lambda_max
    was printed as a critical temperature with no word (--out refused the same matrix:
    'no mean-field transition'), and the report named Lanczos where the dense
    eigensolver answered ('Lanczos, 0 products')."""
    np.save(tmp_path / "neg.npy", -np.eye(6) - 0.1 * np.ones((6, 6)))
    np.save(tmp_path / "pos.npy", np.ones((6, 6)))
    code, _, err = cli(["criticality", "meanfield", str(tmp_path / "pos.npy"), "--n-t", "5",
                        "--executor", "inprocess"])
    assert code == 2 and err.startswith("error: --n-t, --executor apply to runs with --out")
    code, out, _ = cli(["criticality", "meanfield", str(tmp_path / "neg.npy"), "--json"])
    d = json.loads(out)
    assert code == 0 and d["lambda_max"] < 0 and d["transition"] is False
    code, out, _ = cli(["criticality", "meanfield", str(tmp_path / "neg.npy")])
    assert code == 0 and "no mean-field transition: lambda_max <= 0" in out
    code, out, _ = cli(["criticality", "meanfield", str(tmp_path / "pos.npy"), "--json"])
    assert json.loads(out)["transition"] is True
    run = tmp_path / "run"
    assert cli(["criticality", "meanfield", str(tmp_path / "pos.npy"), "--out", str(run)])[0] == 0
    assert "lambda_max(W) = 6 (dense eigensolver, " in (run / "report.md").read_text()

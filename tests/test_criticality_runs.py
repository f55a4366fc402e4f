"""The criticality runs on the one experiment runner: the Python API gives
what the CLI writes, Ray gives the same tables as in-process, and a run
resumed at any stage gives the same numbers (tiny settings, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from deepglass.criticality.meanfield_run import MeanFieldConfig, load_matrix, run_meanfield
from deepglass.criticality.powerlaw_run import PowerLawConfig, run_powerlaw
from deepglass.errors import DeepglassError

MF_ARGS = ["--n-t", "4", "--t-max", "0.05", "--n-broad", "2", "--n-h", "5", "--fields", "0,0.02",
           "--field-temps", "0.5,1.5"]
PL_ARGS = ["ae", "--data", "digits", "--epochs", "2", "--checkpoint-every", "1", "--max-train",
           "150", "--max-test", "80", "--n-boot", "0", "--n-subsets", "4"]


def _couplings(tmp_path):
    # a signed symmetric sparse matrix: no gauge makes it a ferromagnet
    A = scipy.sparse.random(40, 40, density=0.15, random_state=3, format="csr")
    A.data = A.data - 0.3
    path = tmp_path / "W.npz"
    scipy.sparse.save_npz(path, (A + A.T).tocsr())
    return path


def _mf_config(path):
    return MeanFieldConfig(source=str(path), n_t=4, t_max=0.05, n_broad=2, n_h=5,
                           fields=[0.0, 0.02], field_temps=[0.5, 1.5])


def _table(run, name):
    return pd.read_parquet(run / f"{name}.parquet")


def _same_verdicts(a, b):
    pd.testing.assert_frame_equal(a.drop(columns="unit_seconds"), b.drop(columns="unit_seconds"))


def test_meanfield_api_matches_the_cli_and_resumes_exactly(tmp_path, cli):
    path = _couplings(tmp_path)
    run = tmp_path / "cli"
    code, out, err = cli(["criticality", "meanfield", str(path), "--out", str(run), *MF_ARGS,
                          "--json"])
    assert code == 0, err
    calls = []
    res = run_meanfield(path, _mf_config(path), progress=lambda d, t: calls.append((d, t)))
    # 1 spectrum + 2 temperature sweeps + 2 field sweeps, counted to the end
    assert calls[0] == (0, 5) and calls[-1] == (5, 5) and res.computed == 5
    pd.testing.assert_frame_equal(res.curves_T, _table(run, "meanfield_curves_T"))
    pd.testing.assert_frame_equal(res.curves_h, _table(run, "meanfield_curves_h"))
    pd.testing.assert_frame_equal(res.exponents, _table(run, "meanfield_exponents"))
    ref = np.linalg.eigvalsh(scipy.sparse.load_npz(path).toarray())[-1]
    assert abs(res.spectrum["lambda_max"] - ref) < 1e-9 * abs(ref)
    assert json.loads(out)["T_c"] == res.spectrum["T_c"] == res.spectrum["lambda_max"] / 40
    assert set(res.curves_T["h_rel"]) == {0.0, 0.02} and set(res.curves_h["T_rel"]) == {0.5, 1.5}
    # lose one curve unit: only it is computed again, from the stored
    # eigenvector (no second Lanczos run), with the same numbers
    units = run / "units" / "criticality-meanfield"
    (units / "curves" / "T001.parquet").unlink()
    # the README's call on the CLI's run: a matrix file's path is its source and
    # the CLI records only what applies to a matrix (not a model's batchnorm)
    cfg = _mf_config(path)
    cfg.source = ""
    again = run_meanfield(str(path), cfg, run=run)
    assert (again.computed, again.resumed) == (1, 4)
    pd.testing.assert_frame_equal(again.curves_h, res.curves_h)
    pd.testing.assert_frame_equal(again.curves_T, res.curves_T)


@pytest.fixture(scope="module")
def powerlaw_run(tmp_path_factory):
    """One in-process CLI power-law run, the reference of the tests below."""
    from deepglass.cli.app import main

    run = tmp_path_factory.mktemp("pl") / "local"
    try:
        main(["criticality", "powerlaw", *PL_ARGS, "--out", str(run), "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert (run / "powerlaw_verdicts.parquet").exists()
    return run


def test_powerlaw_api_in_memory_matches_the_run_directory(powerlaw_run):
    run = powerlaw_run
    cfg = PowerLawConfig(nets=["ae"], data="digits", epochs=2, checkpoint_every=1, max_train=150,
                         max_test=80, n_boot=0, n_subsets=4)
    calls = []
    res = run_powerlaw(cfg, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)
    _same_verdicts(res.verdicts, _table(run, "powerlaw_verdicts"))
    # each checkpoint is a stage trained from the stored one before it: the
    # test loss falls while the autoencoder trains
    loss = res.verdicts.groupby("epoch")["test_loss"].first()
    assert list(loss.index) == [0, 1, 2] and loss[2] < loss[1] < loss[0]
    obs, epoch = res.observables["autoencoder"]
    assert epoch == 2 and obs.n_events == 80


def test_meanfield_on_ray_gives_the_same_tables(ray_executor, tmp_path, cli):
    path = _couplings(tmp_path)
    local, remote = tmp_path / "local", tmp_path / "ray"
    for run, extra in ((local, []), (remote, ["--executor", "ray"])):
        code, _, err = cli(["criticality", "meanfield", str(path), "--out", str(run), *MF_ARGS,
                            *extra, "--json"])
        assert code == 0, err
    for name in ("meanfield_curves_T", "meanfield_curves_h", "meanfield_exponents"):
        pd.testing.assert_frame_equal(_table(local, name), _table(remote, name))
    res = run_meanfield(path, _mf_config(path), executor=ray_executor)
    pd.testing.assert_frame_equal(res.curves_T, _table(local, "meanfield_curves_T"))


def test_powerlaw_on_ray_gives_the_same_tables(ray_executor, tmp_path, cli):
    # Ray workers run one torch thread; the in-process run here two, which gave a
    # feed-forward net other weights (1e-8) after one epoch before training was
    # pinned to one thread
    import torch

    local, remote = tmp_path / "local", tmp_path / "ray"
    args = ["ffn", "--data", "digits", "--epochs", "1", "--checkpoint-every", "1",
            "--max-train", "150", "--max-test", "80", "--n-boot", "0", "--n-subsets", "4"]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code, _, err = cli(["criticality", "powerlaw", *args, "--out", str(local), "--json"])
        assert code == 0, err
        assert torch.get_num_threads() == 2               # restored after training
    finally:
        torch.set_num_threads(before)
    code, _, err = cli(["criticality", "powerlaw", *args, "--out", str(remote), "--executor",
                        "ray", "--json"])
    assert code == 0, err
    _same_verdicts(_table(local, "powerlaw_verdicts"), _table(remote, "powerlaw_verdicts"))
    f = "feedforward_e0001.pt"
    assert (remote / "checkpoints" / f).read_bytes() == (local / "checkpoints" / f).read_bytes()


def test_training_does_not_depend_on_the_thread_count():
    # the gradient sums of a multi-threaded backward pass depend on the thread
    # count: two threads gave weights 1.5e-8 away from one thread after one epoch
    import torch

    from deepglass.criticality.data import load_dataset
    from deepglass.criticality.nets import build_reference_net, train_reference_net

    data = load_dataset("digits", seed=0, max_train=150, max_test=40)
    before = torch.get_num_threads()
    weights = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            model = build_reference_net("ffn", data.input_shape, data.n_classes, seed=0)
            train_reference_net(model, data, epochs=1, checkpoint_every=1)
            assert torch.get_num_threads() == threads
            weights.append([p.detach().clone() for p in model.parameters()])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_bad_executor_is_one_line(tmp_path, cli):
    path = _couplings(tmp_path)
    code, _, err = cli(["criticality", "meanfield", str(path), "--executor", "mpi",
                        "--out", str(tmp_path / "r")])
    assert code == 2 and err.startswith("error:") and "unknown executor" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(DeepglassError, match="address"):
        run_meanfield(path, _mf_config(path), executor="inprocess", address="10.0.0.1:1")


def test_plots_draw_on_the_given_axes_and_leave_matplotlib_alone():
    import importlib

    import matplotlib
    from matplotlib.figure import Figure

    backend, rc = matplotlib.get_backend(), dict(matplotlib.rcParams)
    import deepglass.criticality.figures as figs

    importlib.reload(figs)
    assert matplotlib.get_backend() == backend and dict(matplotlib.rcParams) == rc
    from deepglass.criticality.curves import (critical_exponents, default_grid,
                                              mean_field_curves)

    W = np.full((20, 20), 1.0)                  # Curie-Weiss, T_c = 1
    curves_T = mean_field_curves(W, default_grid(1.0, 4, 0.01, 0.1, 2), [0.0, 0.05])
    curves_T["h_rel"] = curves_T["h"]
    exps = critical_exponents(curves_T, 1.0, t_min=0.01, t_max=0.1)
    curves_h = mean_field_curves(W, [0.5, 1.5], np.linspace(-0.2, 0.2, 5))
    curves_h["T_rel"], curves_h["h_rel"] = curves_h["T"], curves_h["h"]
    ax = Figure().subplots(1, 5)
    # one |m| and one sqrt(q) line per field, plus the T_c marker
    assert figs.plot_order_parameter(curves_T, 1.0, ax=ax[0]) is ax[0]
    assert len(ax[0].lines) == 2 * 2 + 1
    figs.plot_susceptibility(curves_T, 1.0, ax=ax[1])
    assert len(ax[1].lines) == 2 * 2 + 1              # chi and chi_u per field, T_c
    figs.plot_critical_scaling(curves_T, exps, 1.0, "chi", ax=ax[2])
    labels = [l.get_label() for l in ax[2].lines]
    assert any(s.startswith("fit: gamma = ") for s in labels)
    figs.plot_field_curves(curves_h, "m", ax=ax[3])
    assert len(ax[3].lines) == 2                      # one per temperature
    # above T_c, m(h) is odd in h: the plotted curve at T = 1.5 T_c is antisymmetric
    y = ax[3].lines[1].get_ydata()
    np.testing.assert_allclose(y, -y[::-1], atol=1e-9)
    v = pd.DataFrame({"net": "n", "epoch": [0, 1, 0, 1], "observable": "weight",
                      "layer": ["a", "a", "b", "b"], "alpha": [2.0, 2.1, 3.0, 3.2],
                      "verdict": ["rejected", "plausible", "inconclusive", "rejected"]})
    figs.plot_exponents_across_checkpoints(v, "n", "weight", ax=ax[4])
    assert len([l for l in ax[4].lines if l.get_linestyle() == "-"]) == 2   # one per layer
    a = figs.plot_power_law(np.ones(3), _Verdict())   # its own axes when none is given
    assert a.texts[0].get_text() == "too few samples" and a.figure is not None


class _Verdict:
    verdict, discrete, xmin, alpha, n_tail = "too little data", None, np.nan, np.nan, 0


def test_powerlaw_resumes_even_without_the_previous_checkpoint(powerlaw_run, tmp_path):
    import shutil
    import tomllib

    from deepglass.store import RunDir

    run = tmp_path / "copy"
    shutil.copytree(powerlaw_run, run)
    kind = "criticality-powerlaw"
    verdicts = run / "units" / kind / "verdicts"
    before = pd.read_parquet(verdicts / "autoencoder_e0002.parquet")
    (verdicts / "autoencoder_e0002.parquet").unlink()
    # epoch 1 stays finished but keeps no checkpoint (neither stored beside
    # its observables nor as a file)
    rd = RunDir(run, tomllib.loads((run / "config.toml").read_text())["runs"][kind], kind=kind)
    arrays = rd.load_arrays(f"{kind}/verdicts/autoencoder_e0001")
    del arrays["checkpoint"]
    # the unit written again with those arrays (a unit's arrays are the ones
    # written with it: arrays changed on their own make it damaged)
    rd.write_unit("verdicts", "autoencoder_e0001",
                  pd.read_parquet(verdicts / "autoencoder_e0001.parquet"), arrays)
    (run / "checkpoints" / "autoencoder_e0001.pt").unlink()
    cfg = PowerLawConfig(nets=["ae"], data="digits", epochs=2, checkpoint_every=1, max_train=150,
                         max_test=80, n_boot=0, n_subsets=4)
    res = run_powerlaw(cfg, run=run, record={"model": "ae"})
    # epoch 2 is trained again from the seeded initialization: the same
    # weights (training is seeded per epoch), so the same verdicts and checkpoint
    assert (res.computed, res.resumed) == (1, 2)
    _same_verdicts(before, pd.read_parquet(verdicts / "autoencoder_e0002.parquet"))
    assert (run / "checkpoints" / "autoencoder_e0002.pt").read_bytes() == \
        (powerlaw_run / "checkpoints" / "autoencoder_e0002.pt").read_bytes()


def test_a_changed_matrix_or_model_file_is_another_run(tmp_path, cli):
    """The file behind a run changed under the same name (a matrix scaled,
    weights retrained): refused in one line, not resumed with the old
    numbers (the configuration recorded only the path)."""
    import torch

    from deepglass import zoo

    path = _couplings(tmp_path)
    run = tmp_path / "mf"
    argv = ["criticality", "meanfield", str(path), "--out", str(run), "--no-curves", "--json"]
    code, out, err = cli(argv)
    assert code == 0, err
    scipy.sparse.save_npz(path, 3 * scipy.sparse.load_npz(path))
    code, out, err = cli(argv)
    assert code == 2 and "configuration differs (couplings_sha256: recorded" in err
    weights = tmp_path / "net.pth"
    torch.save(zoo.get("digits_cnn").state_dict(), weights)
    argv = ["criticality", "powerlaw", str(weights), "--arch", "digits_cnn", "--data", "digits",
            "--n-boot", "0", "--max-test", "50", "--out",
            str(tmp_path / "pl"), "--json"]
    code, out, err = cli(argv)
    assert code == 0, err
    torch.save({k: 5 * v for k, v in torch.load(weights).items()}, weights)
    code, out, err = cli(argv)
    assert code == 2 and "configuration differs (weights_sha256: recorded" in err


def test_bad_configurations_are_refused_before_any_data_is_read(tmp_path):
    """A seed of 2^32 or more ended in scikit-learn's traceback after the data
    was loaded, a NaN threshold counted every unit inactive, and a dict given
    as a configuration raised an AttributeError."""
    from deepglass.criticality.data import _split

    for kw, msg in (({"seed": -1}, "seed must be a non-negative integer"),
                    ({"seed": 2**63}, "below 2\\^63"),
                    ({"threshold": float("nan")}, "threshold must be a finite number"),
                    ({"lr": 0.0}, "lr must be a finite number > 0"),
                    # the reference nets untrained (the CLI refuses --epochs 0)
                    ({"epochs": 0}, r"epochs must be >= 1 for the reference nets .*, got 0")):
        with pytest.raises(DeepglassError, match=msg):
            run_powerlaw(PowerLawConfig(nets=["feedforward"], **kw))
    # n_t = 0 gave only NaN exponents (the CLI refuses --n-t 0); a folder was 'not found'
    with pytest.raises(DeepglassError, match=r"^n_t = 0 puts 0 temperature\(s\) on each side "
                                             r"of T_c in the exponent fit window"):
        run_meanfield(np.eye(3), MeanFieldConfig(n_t=0))
    with pytest.raises(DeepglassError, match=r"matrix file '.*' is a directory, not a \.npy"):
        load_matrix(tmp_path)
    with pytest.raises(DeepglassError, match="cfg must be of type PowerLawConfig, got dict"):
        run_powerlaw({"nets": ["feedforward"]})
    with pytest.raises(DeepglassError, match="cfg must be of type MeanFieldConfig, got dict"):
        run_meanfield(np.eye(3), {"n_t": 3})
    # a seed above scikit-learn's 2^32 splits, deterministically
    X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    a, b = (_split(X, y, 0.25, 2**40) for _ in range(2))
    assert np.array_equal(a[0], b[0]) and len(a[1]) == 5


def test_a_graph_and_its_explicit_matrix_report_the_same_number_of_couplings():
    """One ``W = As`` counts one number of non-zero couplings, given as a
    network's graph or as its explicit matrix (a graph reported its directed
    edges, half the entries of ``As``; a pruned weight is no coupling)."""
    import torch
    import torch.nn as nn

    from deepglass.criticality.meanfield_run import coupling_info
    from deepglass.graph import SignedGraph

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        net[0].weight[0, :2] = 0.0
    g = SignedGraph.from_module(net.eval(), (6,))
    A = g.to_scipy()
    As = (A + A.T).tocsr()
    As.eliminate_zeros()
    assert coupling_info(g)["n_edges"] == As.nnz == 2 * (6 * 5 - 2 + 5 * 3)
    assert coupling_info(As)["n_edges"] == As.nnz

"""Frustration vs null models: statistics, seeds, run directories, resume, CLI."""

from __future__ import annotations

import json
import re
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ttest_ind
from torch import nn

from deepglass.errors import DeepglassError
from deepglass.executors import InProcessExecutor
from deepglass.experiments.frustration import (frustration_vs_nulls, parse_nulls, plan_units,
                                               unit_seed)
from deepglass.graph import SignedGraph
from deepglass.store import RunDir

#: columns that are timings (differ between runs); everything else must be identical
TIMING = ["seconds", "build_seconds"]
SMALL = dict(replicas=6, null_instances=3, starts_per_null=2, seed=5)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(27, 4))
    net.default_input_shape = (1, 6, 6)
    return net.eval()


class InterruptAfter(InProcessExecutor):
    """An executor that is interrupted (Ctrl-C) after ``k`` finished units."""

    def __init__(self, k: int):
        self.k = k

    def map(self, fn, units, shared=None):
        for i, item in enumerate(super().map(fn, units, shared)):
            if i == self.k:
                raise KeyboardInterrupt
            yield item


def _values(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=TIMING)


def test_parse_nulls_and_plan():
    assert parse_nulls("N1,N3") == ("N1", "N3-xavier", "N3-he")
    assert parse_nulls(["n2", "N3-he", "N2"]) == ("N2", "N3-he")
    assert parse_nulls("all") == ("N1", "N2", "N3-xavier", "N3-he")
    assert parse_nulls("") == () and parse_nulls(None) == ()
    with pytest.raises(DeepglassError, match="unknown null model 'N4'"):
        parse_nulls("N1,N4")
    units = plan_units(10, ("N1", "N2"), 3, 2, replicas_per_unit=4)
    assert [u.starts for u in units[:3]] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]
    assert len(units) == 3 + 2 * 3 and len({u.id for u in units}) == len(units)
    # seeds: a function of the unit's identity only, distinct across units and starts
    seeds = {unit_seed(0, k, i, r) for k in ("real", "N1", "N2") for i in range(5) for r in range(3)}
    assert len(seeds) == 45 and unit_seed(0, "N1", 2, 1) == unit_seed(0, "N1", 2, 1)
    assert unit_seed(1, "N1", 2, 1) != unit_seed(0, "N1", 2, 1)


def test_welch_stats_match_scipy_and_table_shape():
    res = frustration_vs_nulls(tiny_net(), nulls="all", **SMALL)
    runs, stats = res.runs, res.stats
    assert list(stats["kind"]) == ["real", "N1", "N2", "N3-xavier", "N3-he"]
    assert len(runs) == 6 + 4 * 3 * 2
    assert set(runs.groupby("kind").size()) == {6}
    real = runs[runs.kind == "real"]["energy"].to_numpy()
    for kind in ("N1", "N2", "N3-xavier", "N3-he"):
        # a null draw's frustration: the least energy over its starts
        x = runs[runs.kind == kind].groupby("instance")["energy"].min().to_numpy()
        row = stats.set_index("kind").loc[kind]
        ref = ttest_ind(real, x, equal_var=False)
        assert row["t"] == pytest.approx(ref.statistic, rel=1e-12)
        assert row["p"] == pytest.approx(ref.pvalue, rel=1e-12)
        assert row["n"] == 3 and row["mean"] == pytest.approx(x.mean())
        assert row["std"] == pytest.approx(x.std(ddof=1)) and row["min"] == x.min()
    r = stats.set_index("kind").loc["real"]
    assert r["n"] == 6 and r["min"] == real.min() and np.isnan(r["p"])
    # every energy is that of a local minimum in [0, 1/2] (SPEC §2)
    assert runs["local_min"].all() and runs["energy"].between(0, 0.5).all()
    s = res.summary()
    assert s["welch_p"]["N2"] == stats.set_index("kind").loc["N2", "p"]
    assert s["delta"] == real.min() == res.gauge["energy"]


def test_units_do_not_depend_on_the_rest_of_the_run():
    net = tiny_net()
    both = frustration_vs_nulls(net, nulls="N1,N2", **SMALL).runs
    only = frustration_vs_nulls(net, nulls="N2", **SMALL).runs
    pd.testing.assert_frame_equal(_values(both[both.kind != "N1"]).reset_index(drop=True),
                                  _values(only))
    # real replicas chunked into units: each chunk is its own batch, same seeds per start
    chunked = frustration_vs_nulls(net, nulls="", replicas_per_unit=2, **SMALL).runs
    assert list(chunked["start_seed"]) == list(only[only.kind == "real"]["start_seed"])


def test_run_directory_files(tmp_path):
    net = tiny_net()
    res = frustration_vs_nulls(net, nulls="N1,N3", run=tmp_path / "run", model_name="tiny",
                               **SMALL)
    run = tmp_path / "run"
    rd = RunDir(run, res.config, kind="frustration")  # same config: opens without refusal
    pd.testing.assert_frame_equal(rd.read_table("frustration_runs"), res.runs)
    pd.testing.assert_frame_equal(rd.read_table("frustration_stats"), res.stats)
    g = rd.load_arrays("gauge_real")
    # the gauge records what defines its graph: weights, capture rules, counts
    assert set(g) == {"sigma", "sigma_in", "sigma_out", "energy", "weights", "rules", "nodes",
                      "edges"}
    assert str(g["weights"]) == res.config["weights_sha256"]
    graph = SignedGraph.from_module(net, (1, 6, 6))
    assert json.loads(str(g["rules"])) == graph.meta["rules"]
    assert (int(g["nodes"]), int(g["edges"])) == (graph.n_nodes, graph.n_edges)
    # the stored gauge has the stored energy (recomputed from the graph)
    e = float(graph.energy(torch.as_tensor(g["sigma"], dtype=torch.float32)[None])[0])
    assert e == pytest.approx(float(g["energy"]), abs=1e-6)
    assert float(g["energy"]) == res.runs.query("kind == 'real'")["energy"].min()
    np.testing.assert_array_equal(g["sigma_in"], g["sigma"][graph.input_index])
    np.testing.assert_array_equal(g["sigma_out"], g["sigma"][graph.output_index])
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["frustration"]) == {"real", "N1", "N3-xavier", "N3-he"}
    assert set(summary["welch_p"]) == {"N1", "N3-xavier", "N3-he"}
    report = (run / "report.md").read_text()
    assert "Frustration vs null models" in report and res.verdict in report
    assert (run / "figures" / "frustration.png").stat().st_size > 5000
    cfg = rd.run_config("frustration")
    assert cfg["model"] == "tiny" and cfg["nulls"] == ["N1", "N3-xavier", "N3-he"]
    assert cfg["seed"] == 5 and cfg["input_shape"] == [1, 6, 6]


def test_interrupted_run_resumes_to_the_same_tables(tmp_path):
    net = tiny_net()
    kw = dict(nulls="N1,N2", replicas_per_unit=3, **SMALL)
    full = frustration_vs_nulls(net, run=tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        frustration_vs_nulls(net, run=tmp_path / "cut", executor=InterruptAfter(4), **kw)
    rd = RunDir(tmp_path / "cut", full.config, kind="frustration")
    assert len(rd.finished_units("runs")) == 4
    assert not (tmp_path / "cut" / "frustration_runs.parquet").exists()
    assert not list((tmp_path / "cut").rglob("*.tmp"))
    seen = []
    resumed = frustration_vs_nulls(net, run=tmp_path / "cut",
                                   progress=lambda d, t: seen.append((d, t)), **kw)
    assert resumed.info["resumed"] == 4 and resumed.info["computed"] == 2 + 6 - 4
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    for name in ("frustration_runs", "frustration_stats"):
        a = pd.read_parquet(tmp_path / "full" / f"{name}.parquet")
        b = pd.read_parquet(tmp_path / "cut" / f"{name}.parquet")
        if name == "frustration_runs":
            a, b = _values(a), _values(b)
        pd.testing.assert_frame_equal(a, b)
    ga = np.load(tmp_path / "full" / "arrays" / "gauge_real.npz")
    gb = np.load(tmp_path / "cut" / "arrays" / "gauge_real.npz")
    for k in ("sigma", "sigma_in", "sigma_out", "energy"):
        np.testing.assert_array_equal(ga[k], gb[k])


def test_changed_config_refused_then_forced(tmp_path):
    net = tiny_net()
    frustration_vs_nulls(net, nulls="N1", run=tmp_path / "r", **SMALL)
    with pytest.raises(DeepglassError, match=r"configuration differs \(nulls: recorded"):
        frustration_vs_nulls(net, nulls="N2", run=tmp_path / "r", **SMALL)
    res = frustration_vs_nulls(net, nulls="N2", run=tmp_path / "r", force=True, **SMALL)
    assert res.info["resumed"] == 0
    assert set(pd.read_parquet(tmp_path / "r" / "frustration_runs.parquet")["kind"]) == {"real", "N2"}
    # other weights are another configuration too
    other = tiny_net()
    with torch.no_grad():
        other[0].weight.mul_(-1)
    with pytest.raises(DeepglassError, match="weights_sha256"):
        frustration_vs_nulls(other, nulls="N2", run=tmp_path / "r", **SMALL)


def test_bad_parameters():
    net = tiny_net()
    with pytest.raises(DeepglassError, match="replicas must be an integer >= 1"):
        frustration_vs_nulls(net, replicas=0)
    with pytest.raises(DeepglassError, match="unknown method"):
        frustration_vs_nulls(net, method="magic")
    with pytest.raises(DeepglassError, match="unknown executor"):
        frustration_vs_nulls(net, replicas=2, nulls="", executor="dask")


def test_cli_json_out_resume_and_refusal(cli, tmp_path):
    out = str(tmp_path / "run")
    argv = ["frustration", "digits_cnn", "--nulls", "N1,N3-he", "--replicas", "4",
            "--null-instances", "2", "--starts-per-null", "2", "--seed", "1", "--out", out,
            "--json"]
    code, text, _ = cli(argv)
    assert code == 0
    d = json.loads(text)
    assert d["resumed_units"] == 0 and [s["kind"] for s in d["stats"]] == ["real", "N1", "N3-he"]
    assert set(d["welch_p"]) == {"N1", "N3-he"} and d["stats"][0]["p"] is None
    runs = pd.read_parquet(f"{out}/frustration_runs.parquet")
    assert d["delta"] == runs.query("kind == 'real'")["energy"].min()
    code, text, _ = cli(argv)  # the same command: everything resumed
    assert code == 0 and json.loads(text)["resumed_units"] == 1 + 2 * 2
    assert json.loads(text)["welch_p"] == d["welch_p"]
    code, _, err = cli(argv[:-1] + ["--seed", "2"])
    assert code == 2 and err.startswith("error: ") and "(seed: recorded" in err and len(err.splitlines()) == 1
    code, text, _ = cli(argv + ["--seed", "2", "--force"])
    assert code == 0 and json.loads(text)["resumed_units"] == 0
    code, _, err = cli(["frustration", "digits_cnn", "--nulls", "N5"])
    assert code == 2 and "unknown null model 'N5'" in err
    # without --nulls / --out: the single computation, as before
    code, text, _ = cli(["frustration", "digits_cnn", "--replicas", "3", "--json"])
    assert code == 0 and len(json.loads(text)["energies"]) == 3
    # 'delta' is the best value in both modes ('frustration' there holds the means per kind)
    plain = json.loads(text)
    assert plain["delta"] == min(plain["energies"]) == plain["frustration"]
    # a run directory without nulls: its title names no null draws (it did, 80 x 2 starts)
    code, text, _ = cli(["frustration", "digits_cnn", "--replicas", "2", "--out",
                         str(tmp_path / "alone")])
    assert code == 0 and "real (2 replicas); descent" in text and "null models (" not in text


def test_demo_writes_one_run_directory(cli, tmp_path, monkeypatch):
    from deepglass.experiments import demo

    monkeypatch.setitem(demo.DEMO_FRUSTRATION, "replicas", 4)
    monkeypatch.setitem(demo.DEMO_FRUSTRATION, "null_instances", 2)
    monkeypatch.setitem(demo.DEMO_ACTIVE, "n", 6)
    monkeypatch.setitem(demo.DEMO_MONOTONICITY, "n", 6)
    monkeypatch.setitem(demo.DEMO_MONOTONICITY, "amplitudes", 5)
    out = str(tmp_path / "demo")
    code, text, _ = cli(["demo", "--out", out, "--json"])
    assert code == 0
    d = json.loads(text)
    assert set(d["frustration"]["welch_p"]) == {"N1", "N2", "N3-xavier", "N3-he"}
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["welch_p"] == d["frustration"]["welch_p"]
    assert (tmp_path / "demo" / "arrays" / "gauge_real.npz").exists()
    # the later steps read the frustration step's gauge and delta
    assert summary["active"]["inputs"] == 6
    assert summary["active"]["delta"] == pytest.approx(summary["delta"])
    assert set(summary["monotonicity"]["gamma"]) == {"real", "random-order", "N3-xavier", "N3-he"}
    assert summary["monotonicity"]["frustration"]["real"] == pytest.approx(summary["delta"])
    report = (tmp_path / "demo" / "report.md").read_text()
    assert report.index("## Frustration") < report.index("## Active") < report.index(
        "## Near-monotonicity")
    assert RunDir(out, {}, kind="other").kinds == ["active", "frustration", "monotonicity",
                                                   "other"]
    # the same demo from Python, one call: it resumes the run (nothing recomputed)
    res = demo.run_demo(out)
    assert res.results["frustration"].info["computed"] == 0
    assert res.headlines["frustration"]["welch_p"] == d["frustration"]["welch_p"]
    assert res.headlines["active"]["delta_x_mean"] == pytest.approx(d["active"]["delta_x_mean"])
    # the command again: each step says it read its units back (it printed
    # what a fresh run prints)
    code, text, err = cli(["demo", "--out", out])
    assert code == 0, err
    assert len(re.findall(r"\(\d+ finished units of this step read back from", text)) == 3
    # `deepglass active` with the demo's settings resumes the demo's step (it was
    # refused: it recorded batchnorm's default, the demo no input shape or ids)
    code, text, err = cli(["active", "digits_cnn", "--inputs", "digits", "--n", "6",
                           "--replicas", "4", "--out", out, "--json"])
    assert code == 0, err
    assert json.loads(text)["summary"]["delta_x_mean"] == pytest.approx(d["active"]["delta_x_mean"])


def test_graph_input_gives_the_same_nulls_as_the_module():
    # without batch norm, N1 / N3 of a module and of its graph draw the same
    # weights layer by layer (keyed by layer name), and N2 always acts on the graph
    net = tiny_net()
    graph = SignedGraph.from_module(net, (1, 6, 6))
    a = frustration_vs_nulls(net, nulls="all", **SMALL).runs
    b = frustration_vs_nulls(graph, nulls="all", **SMALL).runs
    pd.testing.assert_frame_equal(_values(a), _values(b))


def test_ctrl_c_leaves_a_run_that_resumes_to_the_uninterrupted_tables(tmp_path):
    """The real thing: SIGINT to ``deepglass frustration ... --out``, then resume."""
    import signal
    import subprocess
    import sys
    import time

    from deepglass.zoo import load_model

    out = tmp_path / "cut"
    kw = dict(replicas=4, nulls="N1", null_instances=30, starts_per_null=1, seed=0)
    argv = [sys.executable, "-m", "deepglass", "frustration", "digits_cnn", "--nulls", "N1",
            "--replicas", "4", "--null-instances", "30", "--starts-per-null", "1",
            "--out", str(out), "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    units = out / "units" / "frustration" / "runs"
    deadline = time.monotonic() + 180
    while len(list(units.glob("*.parquet"))) < 3:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command to resume" in err
    done = len(list(units.glob("*.parquet")))
    assert 3 <= done < 31 and not list(out.rglob("*.tmp"))
    assert not (out / "frustration_runs.parquet").exists()
    net = load_model("digits_cnn")
    resumed = frustration_vs_nulls(net, run=out, model_name="digits_cnn", **kw)
    assert resumed.info["resumed"] == done
    full = frustration_vs_nulls(net, run=tmp_path / "full", model_name="digits_cnn", **kw)
    pd.testing.assert_frame_equal(_values(resumed.runs), _values(full.runs))
    pd.testing.assert_frame_equal(resumed.stats, full.stats)


def test_frustration_histograms_draw_each_sample_on_the_given_axes():
    from matplotlib.figure import Figure

    from deepglass.experiments.figures import frustration_histograms

    # real: 3 replicas; N1: 2 instances x 2 starts, its sample the least per instance
    runs = pd.DataFrame({"kind": ["real"] * 3 + ["N1"] * 4, "instance": [0, 0, 0, 0, 0, 1, 1],
                         "start": [0, 1, 2, 0, 1, 0, 1],
                         "energy": [0.10, 0.12, 0.11, 0.30, 0.20, 0.25, 0.40]})
    ax = Figure().add_subplot()
    assert frustration_histograms(runs, ax=ax, bins=5) is ax
    bars = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    assert sum(p.get_height() for p in bars) == 3          # the real sample's bars
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("real (n=3, mean 0.1100")
    assert labels[1].startswith("N1 (n=2, mean 0.2250")     # (0.20 + 0.25) / 2


def test_null_draws_on_the_graph_equal_the_retraced_module_draws(monkeypatch):
    """Where every conv / linear layer is one block holding its raw weights,
    N1 / N3 are drawn on the graph (no retrace), with the same numbers as
    drawing the module and tracing it again; folded batch norm or a gate
    keeps the retrace."""
    from deepglass.experiments import frustration as fr
    from deepglass.experiments.nulls import draws_on_graph

    net = tiny_net()
    g = SignedGraph.from_module(net, (1, 6, 6))
    assert draws_on_graph(net, g)
    bn = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                       nn.Flatten(), nn.Linear(108, 4)).eval()
    with torch.no_grad():
        bn[1].weight.uniform_(0.5, 2.0)   # a folded gain changes the block's weights
    assert not draws_on_graph(bn, SignedGraph.from_module(bn, (1, 6, 6)))
    assert draws_on_graph(bn, SignedGraph.from_module(bn, (1, 6, 6), batchnorm="ignore"))

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.gate = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 3, 1)
            self.head = nn.Linear(108, 4)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            s = torch.sigmoid(self.gate(h.mean((2, 3), keepdim=True)))
            return self.head((h * s).flatten(1))

    gated = Gated().eval()
    assert not draws_on_graph(gated, SignedGraph.from_module(gated, (1, 6, 6)))

    kw = dict(SMALL, nulls="N1,N3", input_shape=(1, 6, 6))
    on_graph = frustration_vs_nulls(net, **kw).runs
    monkeypatch.setattr(fr, "draws_on_graph", lambda model, graph: False)
    retraced = frustration_vs_nulls(net, **kw).runs
    pd.testing.assert_frame_equal(_values(on_graph), _values(retraced))


def tiny_mlp() -> nn.Module:
    """12 nodes: the exact solver certifies by brute force, at once."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    net.default_input_shape = (4,)
    return net.eval()


def test_exact_nulls_report_one_certified_solve_and_no_t_test(tmp_path):
    # exact is deterministic: one real value whatever --replicas (also in
    # chunks), so Welch's t-test cannot run; the report and verdict say what
    # was done and place the real value among the null draws, without a p
    res = frustration_vs_nulls(tiny_mlp(), replicas=3, replicas_per_unit=1, null_instances=3,
                               nulls="N1,N3-he", method="exact", seed=0, run=tmp_path / "r",
                               model_name="mlp")
    real = res.runs[res.runs.kind == "real"]
    assert len(real) == 1 and real["optimal"].all()
    assert real["lower_bound"].iloc[0] == pytest.approx(real["energy"].iloc[0])
    assert res.runs["optimal"].all() and len(res.runs) == 1 + 2 * 3
    assert res.stats.set_index("kind").loc["real", "n"] == 1 and res.stats["p"].isna().all()
    v = res.verdict
    assert v.startswith("No t-test is possible") and "nan" not in v and "NOT below" not in v
    assert "2 real values" in v and "exact solver is deterministic" in v
    for kind in ("N1", "N3-he"):
        assert f"draws of {kind}" in v
    report = (tmp_path / "r" / "report.md").read_text()
    assert "one exact solve" in report and "3 replicas" not in report
    assert "certified optimal" in report and "no t-test was run" in report
    assert "N1 3 of 3 certified optimal" in report and "p = nan" not in report
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["certification"]["real"]["optimal"] is True
    assert summary["certification"]["N1"] == {"solves": 3, "recorded": 3, "certified": 3,
                                              "max_gap": 0.0}
    assert res.summary()["welch_p"] == {"N1": None, "N3-he": None}


def test_verdict_without_a_t_test_places_the_real_value_among_the_draws():
    from deepglass.experiments.frustration_stats import frustration_verdict

    stats = pd.DataFrame({"kind": ["real", "N1", "N2", "N3-he"], "n": [1, 4, 4, 1],
                          "mean": [0.30, 0.35, 0.33, 0.20], "std": [np.nan, 0.01, 0.05, np.nan],
                          "min": [0.30, 0.34, 0.25, 0.20], "max": [0.30, 0.36, 0.35, 0.20],
                          "t": np.nan, "p": np.nan})
    v = frustration_verdict(stats, method="descent")
    assert v.startswith("No t-test is possible") and "one start gauge" in v
    assert "below all 4 draws of N1 (0.3400-0.3600, mean 0.3500)" in v
    assert "within the range of the 4 draws of N2" in v
    assert "above its draw of N3-he (0.2000)" in v
    # two real values but a single null draw: the others are tested, that one said
    stats.loc[0, ["n", "std"]] = [5, 0.01]
    stats.loc[1:2, "t"], stats.loc[1:2, "p"] = -5.0, 1e-4
    v = frustration_verdict(stats)
    assert v.startswith("The real weights are less frustrated than N1, N2 at p < 0.05")
    assert "No t-test for N3-he: N3-he had fewer than 2 draws" in v and "nan" not in v


def test_a_resume_after_an_edit_of_the_model_code_is_refused(tmp_path, cli):
    """The weights digest covers the source file of the user's classes: a
    forward edited between two calls (same weights file, same graph size) was
    resumed with the old network's results."""
    code_file = tmp_path / "edited.py"
    code_file.write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.c = nn.Conv2d(1, 2, 3)\n"
        "        self.fc = nn.Linear(2 * 6 * 6, 3)\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.c(x).relu().flatten(1))\n")
    from deepglass.zoo.user_arch import build_user_arch

    net = build_user_arch(f"{code_file}:Net")
    torch.save(net.state_dict(), tmp_path / "w.pth")
    argv = ["frustration", str(tmp_path / "w.pth"), "--arch", f"{code_file}:Net",
            "--input-shape", "1,8,8", "--replicas", "4", "--out", str(tmp_path / "run"), "--json"]
    code, out, err = cli(argv)
    assert code == 0, err
    code, out, err = cli(argv)                      # unchanged: resumed
    assert code == 0 and '"resumed_units": 1' in out, err
    code_file.write_text(code_file.read_text().replace("self.c(x).relu()", "(5 * self.c(x)).relu()"))
    code, out, err = cli(argv)
    assert code == 2 and "configuration differs (weights_sha256: recorded" in err, err


class _Head(nn.Module):
    def __init__(self, transpose: bool):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 3)
        self.transpose = transpose

    def forward(self, x):
        y = self.c(x)
        return self.fc((y.transpose(-1, -2) if self.transpose else y).flatten(1))


def test_the_digest_covers_the_program_of_a_file_and_the_modules_beside_a_class(tmp_path):
    """A TorchScript or ONNX file re-exported with the same weights and another
    forward resumed the old network's run (its classes are torch's or
    deepglass's, whose files the digest skips); so did an edit of a helper
    module the class's file imports."""
    from deepglass.experiments.real_gauge import weights_digest
    from deepglass.zoo.onnx_import import onnx_to_module

    torch.manual_seed(0)
    a, b = _Head(False).eval(), _Head(True).eval()
    b.load_state_dict(a.state_dict())
    assert weights_digest(a, None) != weights_digest(b, None)      # (a setting differs)
    traced = [torch.jit.trace(m, torch.zeros(1, 1, 8, 8)) for m in (a, b)]
    assert weights_digest(traced[0], None) != weights_digest(traced[1], None)
    assert weights_digest(traced[0], None) == weights_digest(
        torch.jit.trace(a, torch.zeros(1, 1, 8, 8)), None)
    onnx = pytest.importorskip("onnx")
    imported = []
    for m in (a, b):
        path = tmp_path / "m.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (torch.zeros(1, 1, 8, 8),), path, dynamo=False)
        imported.append(onnx_to_module(onnx.load(path)))
    assert weights_digest(imported[0], None) != weights_digest(imported[1], None)

    (tmp_path / "pkg_helpers_x.py").write_text("def mix(y):\n    return y\n")
    (tmp_path / "pkg_net_x.py").write_text(
        "import torch.nn as nn\nimport pkg_helpers_x\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.c = nn.Conv2d(1, 2, 3)\n"
        "    def forward(self, x):\n"
        "        return pkg_helpers_x.mix(self.c(x))\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import pkg_net_x

        net = pkg_net_x.Net()
        before = weights_digest(net, None)
        (tmp_path / "pkg_helpers_x.py").write_text("def mix(y):\n    return y.transpose(-1, -2)\n")
        assert weights_digest(net, None) != before
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pkg_net_x", None)
        sys.modules.pop("pkg_helpers_x", None)

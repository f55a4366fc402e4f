"""Near-monotonicity (SPEC §5): monotone-by-construction nets give rho = 1 and
gamma = 1, a random order gives rho near 1/2, gamma against brute force,
seeds and batching, the resumable run and the CLI."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import deepglass
from deepglass.errors import DeepglassError
from deepglass.experiments import monotonicity as mono
from deepglass.experiments.monotonicity import (alignment_gamma, amplitude_grid,
                                                monotonicity_experiment, near_monotonicity,
                                                null_gauge, run_monotonicity)


def _monotone_cnn(seed: int = 0, d_in=None, d_out=None) -> nn.Module:
    """A CNN with S A S >= 0 for S = (d_in per input channel, +1 hidden, d_out):
    non-negative weights and positive biases, then the first layer's input
    channels and the last layer's outputs flipped by the gauge."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 5))
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.abs_().add_(0.01)
                m.bias.fill_(0.05)
        if d_in is not None:
            net[0].weight.mul_(torch.as_tensor(d_in, dtype=torch.float32).view(1, -1, 1, 1))
        if d_out is not None:
            s = torch.as_tensor(d_out, dtype=torch.float32)
            net[-1].weight.mul_(s.view(-1, 1))
            net[-1].bias.mul_(s)
    return net.eval()


SHAPE = (3, 6, 6)


def _inputs(d_in, B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = 1.0 + torch.rand((B, *SHAPE), generator=g)
    return u * torch.as_tensor(d_in, dtype=torch.float32).view(1, -1, 1, 1)


@pytest.mark.parametrize("d_in,d_out", [((1, 1, 1), (1, 1, 1, 1, 1)),
                                        ((1, -1, -1), (-1, 1, 1, -1, 1))])
def test_monotone_net_rho_one_and_balanced(d_in, d_out):
    net = _monotone_cnn(0, d_in, d_out)
    sigma_in = np.repeat(np.asarray(d_in), 36)  # input nodes in C, H, W order
    x = _inputs(d_in)
    res = near_monotonicity(net, sigma_in, np.asarray(d_out), x, amplitudes=12)
    assert (res.trials["rho"] == 1.0).all() and res.gamma == 1.0
    assert res.inputs["consistent"].all() and (res.inputs["direction"] == 1).all()
    assert (res.inputs["gamma"] == 1.0).all()
    # the frustration solver finds the balanced gauge (delta = 0), up to a global
    # flip; pushing along it moves every output along its sigma_out too
    fr = deepglass.frustration(net, input_shape=SHAPE, replicas=4, seed=1)
    assert fr.frustration == pytest.approx(0.0, abs=1e-7)
    flip = int(fr.sigma_in[0]) * d_in[0]  # the connected balanced graph: ground states +-S
    assert (fr.sigma_in == flip * sigma_in).all() and (fr.sigma_out == flip * np.asarray(d_out)).all()
    res2 = near_monotonicity(net, fr.sigma_in, fr.sigma_out, x, amplitudes=12, seed=5)
    assert (res2.trials["rho"] == 1.0).all() and res2.gamma == 1.0


def test_random_order_on_monotone_net_is_near_half():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 64))
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    x = torch.rand(10, 20)
    assert near_monotonicity(net, np.ones(20), np.ones(64), x, amplitudes=5).gamma == 1.0
    means = []
    for s in range(16):
        g = null_gauge(net, "random-order", input_shape=(20,), n_outputs=64, seed=s)
        means.append(near_monotonicity(net, g.sigma_in, g.sigma_out, x, amplitudes=5,
                                       seed=s).trials["rho"].mean())
    # each order: rho ~ Binomial(64, 1/2)/64 over outputs (sd 0.0625); 16 orders: sd 0.016
    assert abs(np.mean(means) - 0.5) < 0.08


def test_orthant_direction_on_identity():
    net = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(4))
    s = np.array([1, -1, -1, 1])
    x = torch.randn(3, 4)
    up = near_monotonicity(net, s, s, x, amplitudes=7)
    down = near_monotonicity(net, s, -s, x, amplitudes=7)
    assert (up.trials["rho"] == 1).all() and (up.trials["rho_down"] == 0).all()
    assert (down.trials["rho"] == 0).all() and (down.trials["rho_down"] == 1).all()
    assert up.gamma == down.gamma == 1.0
    assert (down.inputs["direction"] == -1).all() and down.inputs["consistent"].all()


def test_trials_in_which_no_output_moves_have_no_direction_and_are_counted():
    """A network whose ReLUs are all closed has a constant output: rho = 0 in
    every trial (SPEC §5), which read as a consistent decrease (direction -1).
    x' = x (amplitude 0) moved outputs by float32 rounding (y and y' come from
    batches of other sizes), counted as moves."""
    torch.manual_seed(0)
    dead = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4)).eval()
    with torch.no_grad():
        dead[0].bias.fill_(-100.0)
    with pytest.warns(UserWarning, match="in 15 of 15 trials no output moved"):
        res = near_monotonicity(dead, np.ones(6), np.ones(4), torch.rand(3, 6), amplitudes=5)
    assert (res.trials["rho"] == 0).all() and (res.trials["rho_down"] == 0).all()
    assert (res.trials["direction"] == 0).all()
    assert (res.inputs["direction"] == 0).all() and not res.inputs["consistent"].any()
    torch.manual_seed(0)
    live = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4)).eval()
    with pytest.warns(UserWarning, match="in 9 of 9 trials no output moved"):
        res = near_monotonicity(live, np.ones(6), np.ones(4), torch.rand(3, 6),
                                amplitudes=np.zeros(3))
    assert (res.trials["rho"] == 0).all() and (res.trials["rho_down"] == 0).all()
    # a null's trials (the experiment runs them alike) say whose they are
    with pytest.warns(UserWarning, match="^N3-he: in 15 of 15 trials no output moved"):
        near_monotonicity(dead, np.ones(6), np.ones(4), torch.rand(3, 6), amplitudes=5,
                          name="N3-he")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_model_runs_as_its_float32_copy(dtype):
    """In 16 bits the smallest pushes rounded away (rho at the smallest
    amplitudes 0.0 vs 0.4 in float32): the model runs widened, as captured."""
    torch.manual_seed(0)
    half = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)).eval().to(dtype)
    wide = copy.deepcopy(half).float()
    x = torch.rand(6, 16)
    s_in, s_out = np.ones(16), np.ones(10)
    amps = np.geomspace(1e-4, 1e-1, 8)[None].repeat(6, 0)
    r16 = near_monotonicity(half, s_in, s_out, x, amplitudes=amps)
    r32 = near_monotonicity(wide, s_in, s_out, x, amplitudes=amps)
    pd.testing.assert_frame_equal(r16.trials, r32.trials)
    assert next(half.parameters()).dtype == dtype          # the caller's module untouched


def test_a_large_output_hides_no_move_of_the_others():
    """The rounding threshold was 8 eps of the input's largest |y|: a constant
    output of 1e5 hid the moves of every other output (rho 0.8 -> 0.36)."""
    net = nn.Linear(4, 5)
    with torch.no_grad():
        net.weight.copy_(torch.cat([torch.zeros(1, 4), torch.ones(4, 4)]))
        net.bias.copy_(torch.tensor([1e5, 0.0, 0.0, 0.0, 0.0]))
    res = near_monotonicity(net, np.ones(4), np.ones(5), torch.rand(6, 4), amplitudes=5)
    assert (res.trials["rho"] == 0.8).all() and (res.trials["direction"] == 1).all()


def test_a_half_model_that_casts_its_own_input_runs_as_it_is():
    """Its float32 copy fails on its own x.half(): it runs in 16 bits, as the
    capture takes it (refused with a batch-axis hint before)."""
    class Casting(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 4)

        def forward(self, x):
            return self.fc(x.half())

    net = Casting().half().eval()
    res = near_monotonicity(net, np.ones(6), np.ones(4), torch.rand(3, 6), amplitudes=4)
    assert len(res.trials) == 12


def _brute_gamma(rho, alpha):
    d = np.round(np.abs(2 * rho - 1), 12)
    grid = np.unique(np.r_[np.linspace(0, 1, 2001), d])
    ok = (d[None, :] >= grid[:, None]).mean(1) >= 1 - alpha - 1e-12
    return grid[ok].max()


@pytest.mark.parametrize("m", [3, 7, 10])
def test_gamma_against_brute_force(m):
    rng = np.random.default_rng(m)
    for _ in range(25):
        T = int(rng.integers(1, 60))
        rho = rng.integers(0, m + 1, T) / m
        for alpha in (0.0, 0.05, 0.3, 0.9):
            g = alignment_gamma(rho, alpha)
            assert g == pytest.approx(_brute_gamma(rho, alpha), abs=1e-12)
            d = np.abs(2 * rho - 1)
            assert np.mean(d >= g - 1e-12) >= 1 - alpha
            assert np.mean(d > g + 1e-12) < 1 - alpha or g == pytest.approx(1.0)
    assert alignment_gamma([1.0, 0.9, 0.1, 0.6], alpha=0.25) == pytest.approx(0.8)
    with pytest.raises(DeepglassError):
        alignment_gamma([0.5], alpha=1.0)


def test_per_input_table_against_a_loop():
    rng = np.random.default_rng(0)
    n = 300
    trials = pd.DataFrame({"model": rng.choice(["real", "N3"], n), "input": rng.integers(0, 9, n),
                           "rho": rng.integers(0, 11, n) / 10, "predicted": 1,
                           "class_kept": rng.random(n) < 0.8})
    trials["input_id"] = trials["input"].astype(str)
    trials["direction"] = np.sign(np.round(2 * trials["rho"] - 1, 12)).astype(np.int8)
    for alpha in (0.05, 0.5):
        table = mono.per_input_table(trials, alpha).set_index(["model", "input"])
        for (kind, i), t in trials.groupby(["model", "input"]):
            row = table.loc[(kind, i)]
            d = t["direction"].to_numpy()
            assert row["gamma"] == pytest.approx(alignment_gamma(t["rho"], alpha))
            assert row["consistent"] == (d[0] != 0 and (d == d[0]).all())
            assert row["direction"] == np.sign(d.sum()) and row["trials"] == len(t)
            assert row["class_kept"] == pytest.approx(t["class_kept"].mean())


def test_amplitude_grid():
    x = torch.stack([torch.zeros(5), torch.tensor([0.0, 0, 0, 0, 5.0])])
    a = amplitude_grid(x, 4, (1e-2, 1.0))
    np.testing.assert_allclose(a[0], np.geomspace(1e-2, 1, 4))  # constant input: scale 1
    np.testing.assert_allclose(a[1], 2.0 * np.geomspace(1e-2, 1, 4))  # std of (0,0,0,0,5) = 2
    np.testing.assert_allclose(amplitude_grid(x, 3, (1, 2), "absolute")[1], [1, math.sqrt(2), 2])
    np.testing.assert_allclose(amplitude_grid(x, [0.1, 0.2]), [[0.1, 0.2], [0.1, 0.2]])
    with pytest.raises(DeepglassError):
        amplitude_grid(x, 0)


def _small_cnn():
    from deepglass import zoo

    return zoo.get("digits_cnn", seed=3)  # random init: no training in the tests


def test_seeds_batching_and_units_are_reproducible():
    net = _small_cnn().double()
    x = torch.rand(9, 1, 8, 8)
    g = null_gauge(net, "random-order", input_shape=(1, 8, 8), n_outputs=10, seed=2)
    run = lambda **kw: near_monotonicity(net, g.sigma_in, g.sigma_out, x, amplitudes=6, **kw)
    a, b = run(seed=4), run(seed=4, batch_size=5)
    pd.testing.assert_frame_equal(a.trials, b.trials)
    assert not a.trials["rho"].equals(run(seed=5).trials["rho"])
    halves = [near_monotonicity(net, g.sigma_in, g.sigma_out, x[lo:hi], amplitudes=6, seed=4,
                                first_index=lo) for lo, hi in ((0, 4), (4, 9))]
    joined = pd.concat([h.trials for h in halves], ignore_index=True)
    pd.testing.assert_frame_equal(joined.drop(columns="input_id"),
                                  a.trials.drop(columns="input_id"))
    with pytest.raises(DeepglassError, match="sigma_in"):
        near_monotonicity(net, g.sigma_in[:5], g.sigma_out, x)
    with pytest.raises(DeepglassError, match="sigma_out"):
        near_monotonicity(net, g.sigma_in, g.sigma_out[:3], x)


def test_experiment_has_every_null():
    net = _small_cnn()
    x = torch.rand(4, 1, 8, 8)
    e = monotonicity_experiment(net, x, nulls="random-order,N3", amplitudes=3, replicas=2)
    # "N3" is both initializations (SPEC §3), as in every experiment
    assert list(e.gamma["model"]) == ["real", "random-order", "N3-xavier", "N3-he"]
    assert len(e.trials) == 4 * 4 * 3 and set(e.inputs["model"]) == set(e.gamma["model"])
    assert 0 <= e.gamma["frustration"].iloc[0] <= 0.5
    # the null network is the registry's module transform, with the gauge the solver gives it
    from deepglass.experiments.nulls import NULLS

    he = NULLS["N3-he"].module(net, 0)
    for a, b in zip(he.parameters(), e.gauges["N3-he"].model.parameters()):
        assert torch.equal(a, b)
    fr = deepglass.frustration(he, replicas=2, seed=0)
    assert (fr.sigma_in == e.gauges["N3-he"].sigma_in).all()
    assert e.gamma.set_index("model").loc["N3-he", "frustration"] == pytest.approx(fr.frustration)
    assert mono.parse_nulls("all") == ("N1", "N3-xavier", "N3-he", "random-order")
    with pytest.raises(DeepglassError, match="unknown null"):
        monotonicity_experiment(net, x, nulls=("N9",))
    with pytest.raises(DeepglassError, match="'N2' does not apply to near-monotonicity"):
        monotonicity_experiment(net, x, nulls="random-order,N2")


def test_units_and_executors_give_the_same_tables(ray_executor, tmp_path):
    """Any split into units, in memory or in a run directory, in this process or
    on Ray: the same tables."""
    net = _small_cnn()
    x = torch.rand(5, 1, 8, 8)
    kw = dict(nulls="random-order,N1", amplitudes=3, replicas=2, seed=4)
    one = monotonicity_experiment(net, x, unit_size=5, **kw)
    split = monotonicity_experiment(net, x, unit_size=2, **kw)
    assert one.info["units"] == 3 and split.info["units"] == 9
    ray = monotonicity_experiment(net, x, unit_size=2, run=tmp_path / "ray",
                                  executor=ray_executor, **kw)
    for e in (split, ray):
        for name in ("trials", "inputs", "gamma"):
            pd.testing.assert_frame_equal(getattr(e, name), getattr(one, name))
    assert ray.info["computed"] == 9
    assert pd.read_parquet(tmp_path / "ray" / "monotonicity_trials.parquet")["rho"].equals(
        one.trials["rho"])


def test_explicit_amplitudes_and_given_gauge_split_into_units(tmp_path):
    net = _small_cnn()
    x = torch.rand(5, 1, 8, 8)
    s_in, s_out = np.random.default_rng(1).choice([-1, 1], 64), np.ones(10)
    amps = np.random.default_rng(2).uniform(0.01, 0.5, (5, 3))   # per-input amplitudes
    e = monotonicity_experiment(net, x, s_in, s_out, nulls="", amplitudes=amps, unit_size=2,
                                seed=3, frustration=0.25)
    ref = near_monotonicity(net, s_in, s_out, x, amps, seed=3)
    pd.testing.assert_frame_equal(e.trials, ref.trials)
    assert e.gamma["frustration"].tolist() == [0.25] and e.info["units"] == 3
    with pytest.raises(DeepglassError, match="a run needs a number of amplitudes"):
        monotonicity_experiment(net, x, s_in, s_out, nulls="", amplitudes=amps,
                                run=tmp_path / "r")
    with pytest.raises(DeepglassError, match="give both"):
        monotonicity_experiment(net, x, s_in, nulls="")
    with pytest.raises(DeepglassError, match="'N3' names 2 null models"):
        null_gauge(net, "N3", input_shape=(1, 8, 8), n_outputs=10)
    with pytest.raises(DeepglassError, match="'N2' does not apply"):
        null_gauge(net, "n2", input_shape=(1, 8, 8), n_outputs=10)


def test_rho_vs_amplitude_shows_mean_and_interquartile_band():
    from matplotlib.figure import Figure

    from deepglass.experiments.figures import kind_color, rho_vs_amplitude

    rng = np.random.default_rng(0)
    rows = []
    for kind in ("real", "random-order"):
        for i in range(7):
            scale = 1 + i  # per-input amplitudes (std scaling): x = their geometric mean
            for k, a in enumerate((0.01, 0.1, 1.0)):
                rows.append((kind, i, k, a * scale, rng.integers(0, 11) / 10))
    t = pd.DataFrame(rows, columns=["model", "input", "amplitude_index", "amplitude", "rho"])
    ax = Figure().add_subplot()
    rho_vs_amplitude(t, ax=ax)
    lines = [ln for ln in ax.lines if ln.get_label() in ("real", "random-order")]
    assert [ln.get_label() for ln in lines] == ["real", "random-order"]
    gm = np.exp(np.log(np.arange(1, 8)).mean())
    for ln in lines:
        tk = t[t["model"] == ln.get_label()]
        np.testing.assert_allclose(ln.get_xdata(), gm * np.array([0.01, 0.1, 1.0]))
        np.testing.assert_allclose(ln.get_ydata(), tk.groupby("amplitude_index")["rho"].mean())
        assert ln.get_color() == kind_color(ln.get_label())
    band = ax.collections[0].get_paths()[0].vertices[:, 1]   # the first kind's band
    q = t[t["model"] == "real"].groupby("amplitude_index")["rho"].quantile([0.25, 0.75])
    assert band.min() == pytest.approx(q.min()) and band.max() == pytest.approx(q.max())
    # one panel per kind: each its own mean and band, the real mean dashed for reference
    axes = Figure().subplots(1, 2)
    rho_vs_amplitude(t, ax=axes)
    assert [a.get_title() for a in axes] == ["real", "random-order"]
    assert [ln.get_label() for ln in axes[1].lines[:2]] == ["random-order", "real"]
    np.testing.assert_allclose(axes[1].lines[1].get_ydata(), lines[0].get_ydata())
    with pytest.raises(ValueError, match="one per kind"):
        rho_vs_amplitude(t, ax=Figure().subplots(1, 3))


def test_run_resumes_and_reuses_the_runs_gauge(tmp_path, monkeypatch):
    net = _small_cnn()
    x = torch.rand(7, 1, 8, 8)
    fr = deepglass.frustration(net, replicas=2, seed=9)
    from deepglass.store import RunDir

    run = RunDir(tmp_path / "run", {"seed": 0}, kind="frustration")
    run.save_arrays("gauge_real", sigma=fr.sigma, sigma_in=fr.sigma_in, sigma_out=fr.sigma_out,
                    energy=np.float64(fr.frustration))
    kw = dict(amplitudes=4, replicas=2, unit_size=3, seed=1)
    e = run_monotonicity(tmp_path / "run", net, x, **kw)
    real = near_monotonicity(net, fr.sigma_in, fr.sigma_out, x, amplitudes=4, seed=1)
    pd.testing.assert_frame_equal(e.trials[e.trials["model"] == "real"].reset_index(drop=True),
                                  real.trials)
    assert e.gamma.set_index("model").loc["real", "frustration"] == pytest.approx(fr.frustration)
    d = tmp_path / "run"
    assert len(list((d / "units" / "monotonicity" / "trials").glob("*.parquet"))) == 4 * 3
    for f in ("monotonicity_trials", "monotonicity_inputs", "monotonicity_gamma"):
        assert (d / f"{f}.parquet").exists()
    for f in ("rho_hist.png", "rho_vs_amplitude.png", "gamma.png"):
        assert (d / "figures" / f).stat().st_size > 1000
    summary = json.loads((d / "summary.json").read_text())
    assert set(summary["monotonicity"]["gamma"]) == {"real", "random-order", "N3-xavier",
                                                     "N3-he"}
    assert (d / "arrays" / "monotonicity" / "gauge_N3-he.npz").exists()
    assert "Near-monotonicity" in (d / "report.md").read_text()
    # resume: nothing is recomputed (no perturbation test, no null gauge)
    monkeypatch.setattr(mono, "near_monotonicity", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(mono, "_frustration_gauge", lambda *a, **k: pytest.fail("recomputed"))
    e2 = run_monotonicity(d, net, x, **kw)
    assert (e2.info["computed"], e2.info["resumed"]) == (0, 12)
    pd.testing.assert_frame_equal(e2.trials, e.trials)
    pd.testing.assert_frame_equal(e2.gamma, e.gamma)
    with pytest.raises(DeepglassError, match="differs"):
        run_monotonicity(d, net, x, **{**kw, "amplitudes": 5})


def test_cli_json(cli, ray_executor, tmp_path):
    argv = ["monotonicity", "digits_cnn", "--inputs", "digits", "--n", "6", "--amplitudes",
            "4", "--replicas", "2", "--nulls", "random-order", "--unit-size", "4", "--json"]
    code, text, _ = cli(argv)
    assert code == 0
    d = json.loads(text)
    assert d["n_inputs"] == 6 and set(d["gamma"]) == {"real", "random-order"}
    assert all(0.0 <= g <= 1.0 for g in d["gamma"].values())
    assert d["table"][0]["trials"] == 24 and d["computed_units"] == 4
    # --executor ray (the session's local Ray): the same tables, written to the run
    code, text, _ = cli(argv + ["--executor", "ray", "--out", str(tmp_path / "r")])
    assert code == 0
    assert json.loads(text)["table"] == d["table"]
    assert len(pd.read_parquet(tmp_path / "r" / "monotonicity_trials.parquet")) == 2 * 6 * 4
    code, _, err = cli(["monotonicity", "digits_cnn", "--inputs", "/no/such/folder"])
    assert code == 2 and "error: inputs" in err
    code, _, err = cli(["monotonicity", "digits_cnn", "--inputs", "digits", "--nulls", "N2"])
    assert code == 2 and err.startswith("error: null model 'N2' does not apply") \
        and len(err.splitlines()) == 1


def test_cli_help_names_the_registrys_nulls():
    from deepglass.cli import frustration as cli_frustration
    from deepglass.cli import monotonicity as cli_mono
    from deepglass.experiments.frustration import ALL_NULLS
    from deepglass.experiments.nulls import NULL_GROUPS

    import inspect

    helps = {m: inspect.signature(m.__dict__[f]).parameters["nulls"].default.help
             for m, f in ((cli_mono, "monotonicity_cmd"), (cli_frustration, "frustration_cmd"))}
    for mod, names in ((cli_mono, mono.MONOTONICITY_NULLS), (cli_frustration, ALL_NULLS)):
        for name in names:
            assert name in helps[mod], (mod.__name__, name)
        for group, members in NULL_GROUPS.items():
            assert f"{group} (= {' + '.join(members)})" in helps[mod]
    assert "N2" not in helps[cli_mono]


class _TwoHeads(nn.Module):
    """A trunk with two heads of different widths (a box head, a class head)."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                   nn.Flatten())
        self.box, self.cls = nn.Linear(12, 4), nn.Linear(12, 3)

    def forward(self, x):
        h = self.trunk(x)
        return self.box(h), self.cls(h)


def test_the_runs_gauge_serves_any_output_and_only_its_own_graph(tmp_path):
    """A gauge a frustration run stored (its sigma_out on the first head) gives
    the order of the head a later run reads, read off the whole gauge; a gauge
    of the same weights at another input shape is refused in one line."""
    from deepglass.graph import SignedGraph
    from deepglass.store import RunDir

    torch.manual_seed(0)
    net = _TwoHeads().eval()
    fr = deepglass.frustration(net, input_shape=(1, 8, 8), replicas=2, seed=9)
    assert fr.sigma_out.size == 4
    run = RunDir(tmp_path / "run", {"seed": 0}, kind="frustration")
    run.save_arrays("gauge_real", sigma=fr.sigma, sigma_in=fr.sigma_in, sigma_out=fr.sigma_out,
                    energy=np.float64(fr.frustration))
    x = torch.rand(3, 1, 8, 8)
    e = run_monotonicity(tmp_path / "run", net, x, output="1", amplitudes=3, replicas=2,
                         nulls=("random-order",), seed=1)
    cls_nodes = SignedGraph.from_module(net, (1, 8, 8), output="1").output_index
    real = near_monotonicity(net, fr.sigma_in, fr.sigma[cls_nodes], x, amplitudes=3, seed=1,
                             output="1")
    pd.testing.assert_frame_equal(e.trials[e.trials["model"] == "real"].reset_index(drop=True),
                                  real.trials)
    other = RunDir(tmp_path / "other", {"seed": 0}, kind="frustration")
    other.save_arrays("gauge_real", **run.load_arrays("gauge_real"))
    with pytest.raises(DeepglassError, match=r"is a gauge of a graph of 191 nodes; this "
                                             r"network's graph \(input 1x9x9\) has 247: "):
        run_monotonicity(tmp_path / "other", net, torch.rand(2, 1, 9, 9), output="1",
                         amplitudes=3, replicas=2, nulls=("random-order",), seed=1)


def test_a_resume_with_other_input_values_under_the_same_names_is_refused(tmp_path):
    """Inputs of the same names and count but other values (a regenerated
    folder) are refused on resume: the finished units' trials are of the old
    values."""
    net = _small_cnn()
    x = torch.rand(4, 1, 8, 8)
    ids = [f"i{k}" for k in range(4)]
    kw = dict(nulls="random-order", amplitudes=3, replicas=2, seed=1, unit_size=2)
    monotonicity_experiment(net, x, ids=ids, run=tmp_path / "r", **kw)
    monotonicity_experiment(net, x.clone(), ids=ids, run=tmp_path / "r", **kw)   # resumes
    other = x.clone()
    other[2] += 0.1
    with pytest.raises(DeepglassError, match="configuration differs.*inputs_sha256"):
        monotonicity_experiment(net, other, ids=ids, run=tmp_path / "r", **kw)


def test_frustration_gives_the_gauge_of_the_output_asked_for():
    """``frustration(model, output=...)`` (it was a TypeError from the solver):
    the same gauge, its ``sigma_out`` on that head; the first head's gauge
    given for another head is refused saying so."""
    torch.manual_seed(0)
    net = _TwoHeads().eval()
    first = deepglass.frustration(net, input_shape=(1, 8, 8), replicas=2, seed=9)
    cls = deepglass.frustration(net, input_shape=(1, 8, 8), replicas=2, seed=9, output="1")
    assert np.array_equal(first.sigma, cls.sigma) and cls.sigma_out.size == 3
    x = torch.rand(3, 1, 8, 8)
    near_monotonicity(net, cls.sigma_in, cls.sigma_out, x, amplitudes=3, output="1")
    with pytest.raises(DeepglassError, match=r"sigma_out must hold 3 entries of \+1/-1, got 4: "
                                             r"the gauge of another output \(this one is '1'\)\? "
                                             r"Pass the same output="):
        near_monotonicity(net, first.sigma_in, first.sigma_out, x, amplitudes=3, output="1")


@pytest.mark.parametrize("kw,msg", [
    (dict(x=torch.full((2, 3), float("nan"))), "inputs hold NaN or infinite values"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(device="tpu"), "device must be 'cpu', 'cuda' or 'cuda:N'"),
    (dict(x=torch.rand(2, 4)), r"sigma_in must hold 4 entries .* inputs are of shape 4"),
    # a float batch size was taken, an unknown output blamed on the inputs' shape
    (dict(batch_size=2.5), "batch_size must be an integer >= 1, got 2.5"),
    (dict(output="logits"), r"^no output 'logits': the network's outputs are output$"),
    (dict(model="not a module"), "model must be of type Module, got str"),
    # int('a') of the memory estimate; float('1') of the grid took strings
    (dict(amplitudes="a"), r"amplitudes must be an int, a 1-D array or a \(B, K\) array of "
                           r"numbers, got 'a'"),
    (dict(amplitudes=["1", "2"]), "amplitudes must be an int, a 1-D array or a"),
    (dict(amplitudes=[[1.0], [1.0, 2.0]]), "amplitudes must be an int, a 1-D array or a"),
])
def test_bad_arguments_are_one_line_errors(kw, msg):
    """NaN inputs gave rho = 0 and gamma = 1 for every trial; a negative seed
    and an unknown device raised NumPy's and torch's errors."""
    net = kw.pop("model", nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    x = kw.pop("x", torch.rand(2, 3))
    with pytest.raises(DeepglassError, match=msg):
        near_monotonicity(net, [1, 1, 1], [1, 1], x, **{"amplitudes": 4, **kw})


def test_every_submodule_keeps_its_own_training_flag():
    """A frozen batch norm inside a training network (fine-tuning), or an eval
    network wrapped in a new (training) Sequential: capture, active subnetworks
    and near-monotonicity run in eval mode and give each submodule back its own
    flag (``model.train(was)`` had set them all to the top module's)."""
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()
    net = nn.Sequential(nn.Identity(), inner)          # the wrapper starts in train mode
    net[1][1].train()                                  # ... and one layer in train mode too
    flags = [m.training for m in net.modules()]
    x = torch.rand(3, 1, 8, 8)
    fr = deepglass.frustration(net, input_shape=(1, 8, 8), replicas=2, seed=0)
    assert [m.training for m in net.modules()] == flags
    g = deepglass.SignedGraph.from_module(net, (1, 8, 8))
    assert [m.training for m in net.modules()] == flags
    deepglass.active_subgraph(g, net, x)
    assert [m.training for m in net.modules()] == flags
    near_monotonicity(net, fr.sigma_in, fr.sigma_out, x, amplitudes=3)
    assert [m.training for m in net.modules()] == flags


def test_bad_inputs_and_arguments_are_one_line_errors():
    """An input without its batch axis was a torch 'mat1 and mat2' error, a negative
    first_index NumPy's; complex inputs ran with a warning; sigma of the right
    length but other values was 'must hold 64 entries, got 64'."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3)).eval()
    g = deepglass.SignedGraph.from_module(net, (1, 8, 8))
    x = torch.rand(2, 1, 8, 8)
    s_in, s_out = np.ones(64), np.ones(3)
    for xx, kw, msg in [(torch.rand(1, 8, 8), {}, r"does not accept inputs of shape \(1, 8, 8\)"),
                        (x, {"first_index": -5}, "first_index must be a non-negative integer"),
                        (x, {"alpha": 1.5}, r"alpha must be a number in \[0, 1\)"),
                        (x.to(torch.complex64), {}, "inputs are complex"),
                        (x, {"sigma_in": 0.5 * s_in}, r"sigma_in must hold \+1/-1 only; 64 of")]:
        args = {"sigma_in": s_in, **kw}
        with pytest.raises(DeepglassError, match=msg):
            near_monotonicity(net, args.pop("sigma_in"), s_out, xx, amplitudes=3, **args)
    for kw, msg in [({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
                    ({"ids": 5}, "ids must be a sequence of 2 ids"),
                    ({"ids": [1, 2, 3]}, "got 3 of them")]:
        with pytest.raises(DeepglassError, match=msg):
            deepglass.active_subgraph(g, net, x, **kw)
    with pytest.raises(DeepglassError, match="inputs are complex"):
        deepglass.active_subgraph(g, net, x.to(torch.complex64))


def test_a_module_s_own_train_runs_when_its_mode_is_restored():
    """A module whose train() does more than set the flag (escnn's registers cached
    filters as buffers in eval mode and drops them in train mode) got its flag set
    back directly: the eval-mode buffers stayed in its state_dict."""
    class Cached(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def train(self, mode=True):
            if not mode:
                self.register_buffer("cache", self.lin.weight.detach().clone())
            elif hasattr(self, "cache"):
                del self.cache
            return super().train(mode)

        def forward(self, x):
            return self.lin(x)

    net = nn.Sequential(Cached(), nn.ReLU(), nn.Linear(2, 2)).train()
    keys = set(net.state_dict())
    deepglass.SignedGraph.from_module(net, (3,))
    assert set(net.state_dict()) == keys and all(m.training for m in net.modules())


def test_a_network_with_nan_weights_or_outputs_is_refused():
    """NaN outputs compare false both ways, so every trial read rho = 0 and
    gamma = 1, perfect alignment (with a warning that blamed dead units):
    a NaN weight is refused by name, as the frustration's entry points do,
    and outputs that overflow name the input (pushed or not)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(5, 4)
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    with pytest.raises(DeepglassError, match=r"^parameter '0\.weight' has 1 NaN/inf entries"):
        near_monotonicity(net, np.ones(4), np.ones(3), x, amplitudes=10)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[2].weight.fill_(1e36)
    # 6 units of relu(x @ 1) ~ 400 times 1e36 overflow float32 (3.4e38)
    big = torch.cat([torch.ones(2, 4) * 100.0, torch.zeros(1, 4) - 1.0])
    with pytest.raises(DeepglassError, match=r"outputs for input '0' hold NaN or infinite"):
        near_monotonicity(net, np.ones(4), np.ones(3), big, amplitudes=2)
    with pytest.raises(DeepglassError, match=r"outputs for input '0' pushed along the order "
                                             r"hold NaN or infinite"):
        near_monotonicity(net, np.ones(4), np.ones(3), big[2:], amplitudes=4,
                          amplitude_range=(1e3, 1e4))

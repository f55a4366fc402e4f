"""``deepglass rap``: JSON output, run directories, errors; the phase scan end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from deepglass.errors import DeepglassError
from deepglass.rap import PhaseConfig, RAPModel, paramagnetic, scan_phase

REQUIRED = {"alpha", "energy", "entropy", "free_energy", "q", "converged"}


def test_bp_json(cli):
    code, out, _ = cli(["rap", "bp", "--N", "12", "--a1", "0.5", "--a2", "0.5",
                                 "--p1", "0.2", "--beta", "0.7", "--seed", "3", "--start",
                                 "random", "--json"])
    assert code == 0
    d = json.loads(out)
    assert REQUIRED <= set(d)
    m = RAPModel(12, a=(0.5, 0.5), p=(0.2, 0, 0), seed=3)
    assert d["alpha"] == pytest.approx(m.alpha) and d["n_factors"] == m.n_factors
    # a small random start converges to the paramagnet: closed forms
    pm = paramagnetic(m.alpha, 0.7)
    assert d["converged"] and d["energy"] == pytest.approx(pm["energy"], abs=1e-6)
    code, out, _ = cli(["rap", "bp", "--N", "12", "--beta", "2", "--json"])
    d = json.loads(out)
    assert d["start"] == "polarized" and d["free_energy"] <= d["free_energy_random"]


def test_mc_json_and_seed(cli):
    argv = ["rap", "mc", "--N", "10", "--beta", "0.8", "--sweeps", "60", "--ti-points", "4",
            "--ti-sweeps", "10", "--seed", "5", "--json"]
    code, out, _ = cli(argv)
    assert code == 0
    d = json.loads(out)
    assert REQUIRED <= set(d)
    assert math.isfinite(d["free_energy"]) and math.isfinite(d["entropy"])
    code, out2, _ = cli(argv)
    d2 = json.loads(out2)
    for k in ("energy", "q", "free_energy"):
        assert d[k] == d2[k]


@pytest.mark.parametrize("argv, msg", [
    (["rap", "bp", "--N", "10", "--p1", "1.5"], "--p1 must be a probability"),
    (["rap", "bp", "--N", "10", "--beta", "0"], "--beta must be > 0"),
    (["rap", "mc", "--N", "10", "--beta", "-1"], "--beta must be > 0"),
    (["rap", "mc", "--N", "10", "--a2", "2"], "--a2 must be a probability"),
    (["rap", "bp", "--N", "3000", "--a1", "1", "--a2", "1"], "instance too large"),
    (["rap", "phase", "--N", "10", "--p-min", "-0.1", "--out", "never"], "--p-min must be"),
    (["rap", "phase", "--N", "10", "--p-max", "1", "--scale", "log1m", "--out", "never"],
     "--scale log1m needs --p-max < 1"),
    (["rap", "phase", "--N", "10", "--scale", "cubic", "--out", "never"],
     "--scale must be linear or log1m"),
    (["rap", "bp", "--N", "10", "--construction", "paths"], "construction must be one of"),
    # one bound per option, whatever the value (--sweeps 0 said >= 1, --sweeps 1 said >= 2)
    (["rap", "mc", "--N", "10", "--sweeps", "0"], "'--sweeps': Input should be greater than or equal to 2"),
    (["rap", "mc", "--N", "10", "--sweeps", "1"], "'--sweeps': Input should be greater than or equal to 2"),
    (["rap", "mc", "--N", "10", "--ti-sweeps", "0"], "'--ti-sweeps': Input should be greater than or equal to 2"),
    (["rap", "mc", "--N", "10", "--ti-sweeps", "1"], "'--ti-sweeps': Input should be greater than or equal to 2"),
    # option names, not Python parameter names (init_scale, beta, mc_method)
    (["rap", "bp", "--N", "10", "--init-scale", "2"], "--init-scale must be in [0, 1], got 2"),
    (["rap", "phase", "--N", "10", "--init-scale", "3", "--out", "never"], "--init-scale must be in (0, 1]"),
    (["rap", "phase", "--N", "10", "--mc-method", "foo", "--out", "never"],
     "--mc-method must be metropolis or heatbath"),
    (["rap", "phase", "--N", "10", "--a2", "0.3", "--a2", "1.5", "--out", "never"],
     "--a2 must be a probability"),
    (["rap", "mc", "--N", "10", "--method", "gibbs"], "--method must be metropolis or heatbath"),
    (["rap", "bp", "--N", "10", "--damping", "1.5"], "--damping must be a number in [0, 1)"),
    (["rap", "anneal", "--N", "10", "--schedule", "cubic", "--out", "never"],
     "--schedule must be geometric or linear"),
    # the beta options by their names (said beta_end, scan_beta_max and 'beta must be ...')
    (["rap", "anneal", "--N", "10", "--beta-end", "0", "--out", "never"],
     "--beta-end must be > 0, got 0"),
    (["rap", "anneal", "--N", "10", "--beta-start", "5", "--beta-end", "1", "--out", "never"],
     "--beta-end (1) must exceed --beta-start (5): annealing cools"),
    (["rap", "anneal", "--N", "10", "--scan-beta-max", "-1", "--out", "never"],
     "--scan-beta-max must be > 0, got -1"),
    (["rap", "anneal", "--N", "10", "--scan-beta-max", "0.05", "--out", "never"],
     "--scan-beta-max (0.05) must exceed --beta-start (0.1)"),
    (["rap", "anneal", "--N", "10", "--schedule", "linear", "--beta-start", "0",
      "--scan-beta-max", "0", "--out", "never"], "--scan-beta-max must be > 0, got 0"),
    (["rap", "student", "--loss", "l3"], "--loss must be one of abs, hinge, mse"),
])
def test_bad_parameters_exit_2_with_one_line(cli, argv, msg, tmp_path):
    code, out, err = cli(argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0]


def test_phase_cli_writes_a_resumable_run(cli, tmp_path):
    out_dir = tmp_path / "run"
    argv = ["rap", "phase", "--N", "14", "--population", "1", "--p-min", "0.0", "--p-max",
            "0.9", "--n-points", "4", "--beta", "1.0", "--a2", "0.5", "--samples", "2",
            "--mc-sweeps", "20", "--out", str(out_dir), "--json"]
    code, out, _ = cli(argv)
    assert code == 0
    summary = json.loads(out)
    pts = pd.read_parquet(out_dir / "points.parquet")
    assert summary["points"] == len(pts)
    grid = pts[pts.kind == "grid"]
    assert len(grid[grid.solver == "mc"]) == 4 * 2 and len(grid[grid.branch == "random"]) == 4 * 2
    for name in ("points.parquet", "summary.parquet", "transitions.parquet",
                 "degrees.parquet", "report.md", "summary.json", "config.toml",
                 "figures/phase_beta1_a20.5.png", "figures/pc.png"):
        assert (out_dir / name).exists(), name
    assert set(pts.solver) == {"bp", "mc"} and set(pts.branch) == {"random", "polarized", "quench"}
    # resuming recomputes nothing: delete a table, run again, same numbers
    (out_dir / "points.parquet").unlink()
    mtimes = {p: p.stat().st_mtime_ns
              for p in (out_dir / "units" / "rap-phase" / "points").glob("*.parquet")}
    assert len(mtimes) == 1                     # one unit per (beta, a2)
    code, _, _ = cli(argv)
    assert code == 0
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    pts2 = pd.read_parquet(out_dir / "points.parquet")
    pd.testing.assert_frame_equal(pts.reset_index(drop=True), pts2.reset_index(drop=True))
    # and the terminal says so (it printed what a fresh run prints)
    code, text, _ = cli(argv[:-1])
    assert code == 0 and f"wrote {out_dir} (1 finished unit reused)" in text
    # another memory budget changes no result: resumed (it was refused)
    code, _, err = cli(argv + ["--max-memory-gb", "2"])
    assert code == 0, err
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    # another configuration in the same directory is refused
    code, _, err = cli(argv[:-3] + ["--samples", "3", "--out", str(out_dir)])
    assert code == 2 and "configuration differs" in err


def test_phase_cli_grid_close_to_one(cli, tmp_path):
    # a linear grid with steps of 2e-7 was rounded to [0.999999, 0.999999, 1, 1, 1]
    # and refused as "dilution values must be strictly increasing"
    code, out, err = cli(["rap", "phase", "--N", "20", "--p-min", "0.9999991", "--p-max",
                          "0.9999999", "--n-points", "5", "--samples", "1", "--mc-sweeps", "0",
                          "--out", str(tmp_path / "run"), "--json"])
    assert code == 0, err
    ps = sorted(set(pd.read_parquet(tmp_path / "run" / "points.parquet")["p"]))
    assert ps == [0.9999991, 0.9999993, 0.9999995, 0.9999997, 0.9999999]

def test_phase_scan_finds_the_transition_of_a_small_network():
    cfg = PhaseConfig(N=30, population=1, p_values=list(np.round(np.linspace(0.3, 0.95, 14), 4)),
                      betas=[1.0], a1=0.5, a2s=[0.5], samples=2, mc_sweeps=60, seed=1,
                      construction="independent")
    res = scan_phase(cfg)
    t = res.transitions.iloc[0]
    assert t.method == "crossing" and t.bracket_width <= cfg.bracket_tol
    assert 0.3 < t.p_c_lo <= t.p_c <= t.p_c_hi < t.p_spinodal
    s = res.summary
    pol = s[(s.branch == "polarized") & (s.p < t.p_c_lo)]
    rnd = s[(s.branch == "random") & (s.p < t.p_c_lo)]
    # below p_c the ordered branch has the lower free energy and q > 0; the random
    # start stays paramagnetic (q = 0, closed-form energy)
    assert np.all(pol.free_energy.to_numpy() < rnd.free_energy.to_numpy())
    assert np.all(pol.q > 0.05) and np.all(rnd.q < 1e-8)
    for _, r in rnd.iterrows():
        assert r.energy == pytest.approx(-r.alpha * math.tanh(1.0), abs=1e-5)
    # MC quenches land on the BP ordered branch well below p_c
    mc = s[(s.solver == "mc") & (s.p < t.p_c_lo - 0.1)].set_index("p").energy
    assert np.allclose(mc.to_numpy(), pol.set_index("p").loc[mc.index].energy.to_numpy(), atol=0.05)


def test_student_activations_small():
    from deepglass.rap.student import student_activations

    df = student_activations(N=8, n_train=64, n_test=64, epochs=2, trials=2, seed=0)
    assert list(df.trial) == [0, 1]
    assert df[["a1", "a2", "a1_teacher", "a2_teacher"]].apply(lambda c: c.between(0, 1)).all().all()
    df2 = student_activations(N=8, n_train=64, n_test=64, epochs=2, trials=2, seed=0)
    pd.testing.assert_frame_equal(df.drop(columns="seconds"), df2.drop(columns="seconds"))


def test_anneal_cli_fig5(cli, tmp_path):
    out_dir = tmp_path / "fig5"
    code, out, _ = cli(["rap", "anneal", "--N", "30", "--p1", "0.9", "--sweeps", "1", "--sweeps",
                        "5", "--repeats", "2", "--n-temps", "6", "--scan-points", "3",
                        "--mc-sweeps", "20", "--max-iter", "300", "--out", str(out_dir), "--json"])
    assert code == 0
    d = json.loads(out)
    assert set(d["bp_first_unconverged_beta"]) == {"polarized", "random"}
    assert [r["sweeps_per_temp"] for r in d["final_energy_by_sweeps"]] == [1, 5]
    assert all(r["excess"] >= -1e-12 for r in d["final_energy_by_sweeps"])
    scan = pd.read_parquet(out_dir / "temperature_scan.parquet")
    assert set(scan[scan.solver == "bp"].start) == {"polarized", "random"}
    for name in ("annealing.parquet", "annealing_summary.parquet", "figures/stability.png",
                 "report.md"):
        assert (out_dir / name).exists(), name
    code, _, err = cli(["rap", "anneal", "--N", "10", "--start", "sideways", "--out",
                        str(tmp_path / "x")])
    assert code == 2 and err.strip().startswith("error:") and "--start" in err


def test_anneal_linear_schedule_from_infinite_temperature(cli):
    # --schedule linear allows --beta-start 0 (annealing from a random state), but the
    # library refused it ('beta must be finite and > 0, got 0.0') for the schedule and
    # the BP scan; the scan now starts one step above 0
    from deepglass.rap.stability import AnnealConfig

    code, out, err = cli(["rap", "anneal", "--N", "8", "--schedule", "linear", "--beta-start", "0",
                          "--beta-end", "2", "--sweeps", "1", "--repeats", "1", "--n-temps", "3",
                          "--scan-points", "4", "--mc-sweeps", "4", "--max-iter", "50", "--json"])
    assert code == 0, err
    cfg = AnnealConfig(N=8, schedule="linear", beta_start=0.0, beta_end=2.0, n_temps=3,
                       scan_points=4).validate()
    assert np.allclose(cfg.schedule_betas(), [0.0, 1.0, 2.0])
    assert np.allclose(cfg.scan_betas(), [0.5, 1.0, 1.5, 2.0])


# -- the runs on the one runner: Ray gives the in-process tables ----------------------------
def _same_tables(dir_a, dir_b, names):
    for name in names:
        a, b = pd.read_parquet(dir_a / f"{name}.parquet"), pd.read_parquet(dir_b / f"{name}.parquet")
        drop = [c for c in ("seconds",) if c in a]            # wall-clock times differ
        pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop))


def test_phase_on_ray_gives_the_in_process_tables(cli, ray_executor, tmp_path):
    argv = ["rap", "phase", "--N", "12", "--p-min", "0.2", "--p-max", "0.9", "--n-points", "3",
            "--beta", "0.8", "--beta", "1.5", "--a2", "0.5", "--a2", "0.7", "--samples", "2",
            "--mc-sweeps", "0", "--max-iter", "400", "--json"]
    code, out_local, _ = cli(argv + ["--out", str(tmp_path / "local")])
    assert code == 0
    code, out_ray, _ = cli(argv + ["--executor", "ray", "--out", str(tmp_path / "ray")])
    assert code == 0
    _same_tables(tmp_path / "local", tmp_path / "ray", ("points", "summary", "transitions",
                                                         "degrees"))
    assert len(list((tmp_path / "ray" / "units" / "rap-phase" / "points").glob("*.parquet"))) == 4
    assert json.loads(out_local)["transitions"] == json.loads(out_ray)["transitions"]


def test_anneal_on_ray_gives_the_in_process_tables(cli, ray_executor, tmp_path):
    argv = ["rap", "anneal", "--N", "14", "--p1", "0.5", "--sweeps", "1", "--sweeps", "3",
            "--repeats", "2", "--n-temps", "4", "--scan-points", "3", "--mc-sweeps", "8",
            "--max-iter", "200", "--json"]
    assert cli(argv + ["--out", str(tmp_path / "local")])[0] == 0
    assert cli(argv + ["--executor", "ray", "--out", str(tmp_path / "ray")])[0] == 0
    _same_tables(tmp_path / "local", tmp_path / "ray", ("annealing", "annealing_traces",
                                                         "temperature_scan", "annealing_summary"))


def test_student_on_ray_gives_the_in_process_tables(cli, ray_executor, tmp_path):
    argv = ["rap", "student", "--N", "6", "--trials", "2", "--epochs", "1", "--n-train", "32",
            "--n-test", "32", "--json"]
    assert cli(argv + ["--out", str(tmp_path / "local")])[0] == 0
    assert cli(argv + ["--executor", "ray", "--out", str(tmp_path / "ray")])[0] == 0
    _same_tables(tmp_path / "local", tmp_path / "ray", ("activations",))


def test_runs_are_their_parts_and_resume(tmp_path):
    """The one-call runs give the numbers of the functions they are made of
    (the units carry the seeds those use), and a second call on the same run
    directory computes nothing."""
    from deepglass.rap import AnnealConfig, anneal_study, student_study
    from deepglass.rap.stability import bp_temperature_scan, cooling_study, cooling_table
    from deepglass.rap.student import student_activations

    cfg = AnnealConfig(N=14, p=[0.5, 0.0, 0.0], sweeps=[1, 3], repeats=2, n_temps=4,
                       scan_points=3, mc_sweeps=8, max_iter=200, seed=4)
    res = anneal_study(cfg, run=tmp_path / "fig5")
    m = cfg.model()
    finals, traces = cooling_study(m, [1, 3], beta_start=0.1, beta_end=3.0, n_temps=4,
                                   repeats=2, seed=4)
    scan = bp_temperature_scan(m, np.linspace(0.1, 3.0, 3), max_iter=200, mc_sweeps=8, seed=4)
    pd.testing.assert_frame_equal(res.annealing.drop(columns="seconds"),
                                  finals.drop(columns="seconds"))
    pd.testing.assert_frame_equal(res.annealing_traces, traces)
    pd.testing.assert_frame_equal(res.temperature_scan, scan)
    pd.testing.assert_frame_equal(res.annealing_summary, cooling_table(finals))
    assert res.headline()["ground_energy"] == pytest.approx(-m.alpha)
    unit_files = list((tmp_path / "fig5" / "units").rglob("*.parquet"))
    assert len(unit_files) == 2 * 2 * 3 + 3 * 2            # (units, annealing, traces), (units, scan)
    mtimes = {p: p.stat().st_mtime_ns for p in unit_files}
    again = anneal_study(cfg, run=tmp_path / "fig5")
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    pd.testing.assert_frame_equal(again.temperature_scan, res.temperature_scan)
    assert (tmp_path / "fig5" / "figures" / "stability.png").exists()
    units = pd.read_parquet(next((tmp_path / "fig5" / "units").glob("*/units")) / "a00003_r001.parquet")
    from deepglass.rap.stability import anneal_seed
    assert units.seed.tolist() == [anneal_seed(4, 3, 1)]      # the seed cooling_study uses
    st = student_study(N=6, trials=2, epochs=1, n_train=32, n_test=32, seed=2)
    ref = student_activations(N=6, trials=2, epochs=1, n_train=32, n_test=32, seed=2)
    pd.testing.assert_frame_equal(st.activations.drop(columns="seconds"),
                                  ref.drop(columns="seconds"))
    # another batch size is another run: it returned the first one's trials
    kw = dict(N=6, trials=1, epochs=1, n_train=32, n_test=32, seed=2, run=tmp_path / "st")
    student_study(batch_size=10, **kw)
    with pytest.raises(DeepglassError, match=r"differs \(batch_size: recorded 10, now 20\)"):
        student_study(batch_size=20, **kw)


def test_rap_runs_share_a_directory_with_other_kinds(cli, tmp_path):
    # two kinds in one --out: each keeps its section of report.md and its part of
    # summary.json (the later run does not overwrite the earlier one's)
    out_dir = tmp_path / "both"
    code, _, _ = cli(["rap", "anneal", "--N", "12", "--p1", "0.5", "--sweeps", "1", "--repeats",
                      "1", "--n-temps", "3", "--scan-points", "2", "--mc-sweeps", "0",
                      "--max-iter", "50", "--out", str(out_dir), "--json"])
    assert code == 0
    code, _, _ = cli(["rap", "student", "--N", "6", "--trials", "1", "--epochs", "1",
                      "--n-train", "16", "--n-test", "16", "--out", str(out_dir), "--json"])
    assert code == 0
    report = (out_dir / "report.md").read_text()
    assert "annealing and BP stability" in report and "trained ReLU student" in report
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["rap-anneal"]["N"] == 12 and summary["rap-student"]["N"] == 6


def test_json_is_strict_where_a_value_is_undefined(cli, capsys):
    """Without thermodynamic integration the entropy and free energy are
    undefined: ``null``, not a bare ``NaN`` that strict JSON readers reject."""
    from deepglass.cli.common import print_json

    code, out, err = cli(["rap", "mc", "--N", "30", "--p1", "0.9", "--beta", "1",
                          "--ti-points", "0", "--sweeps", "50", "--json"])
    assert code == 0, err
    d = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert d["entropy"] is None and d["free_energy"] is None
    print_json({"a": float("nan"), "b": [1.5, np.float64("inf")], "c": np.array([np.nan, 2.0])})
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": [1.5, None], "c": [None, 2.0]}


def test_every_run_directory_says_where_it_is_and_what_it_reused(cli, tmp_path):
    """rap student --out printed nothing of its run directory, and the --json of the
    RAP and criticality runs held neither 'out' nor 'resumed_units' (frustration,
    active and monotonicity's did)."""
    out = tmp_path / "s"
    argv = ["rap", "student", "--N", "6", "--trials", "2", "--epochs", "1", "--n-train", "32",
            "--n-test", "32", "--out", str(out)]
    code, text, _ = cli(argv)
    assert code == 0 and f"wrote {out}\n" in text
    code, text, _ = cli(argv)
    assert code == 0 and f"wrote {out} (2 finished units reused)" in text
    code, text, _ = cli(argv + ["--json"])
    assert json.loads(text)["out"] == str(out) and json.loads(text)["resumed_units"] == 2
    np.save(tmp_path / "W.npy", np.ones((6, 6)))
    code, text, _ = cli(["criticality", "meanfield", str(tmp_path / "W.npy"), "--json"])
    assert code == 0 and "out" not in json.loads(text)      # no run directory


def test_a_scan_over_instances_without_active_path_says_so(cli, tmp_path):
    """At N = 10 and p_other = 1 no instance has an active path: the polarized branch
    was recorded 'converged' with NaN energies after a NumPy 'invalid value' warning,
    and the scan said nothing (rap bp refuses such an instance)."""
    import warnings

    out = tmp_path / "empty"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)          # no 0 / 0 of NumPy's
        code, _, err = cli(["rap", "phase", "--N", "10", "--n-points", "2", "--samples", "1",
                            "--mc-sweeps", "0", "--p-other", "1", "--out", str(out)])
    assert code == 0 and "2 of 2 grid instances have no active path" in err
    pts = pd.read_parquet(out / "points.parquet")
    assert (pts["status"] == "empty").all() and not pts["converged"].any()
    assert set(pts["branch"]) == {"random", "polarized"}


def test_the_monte_carlo_rule_has_one_name_everywhere(cli):
    """rap phase named it --mc-method, rap mc and rap anneal --method (each refused the
    other's name); --mc-method is accepted by all three."""
    argv = ["rap", "mc", "--N", "8", "--sweeps", "20", "--ti-points", "0", "--json"]
    a = json.loads(cli(argv + ["--method", "heatbath"])[1])
    b = json.loads(cli(argv + ["--mc-method", "heatbath"])[1])
    timing = ("seconds", "flips_per_second")
    assert {k: v for k, v in a.items() if k not in timing} == \
        {k: v for k, v in b.items() if k not in timing} and a["method"] == "heatbath"
    code, _, err = cli(["rap", "anneal", "--N", "8", "--mc-method", "gibbs", "--out", "never"])
    assert code == 2 and "gibbs" in err

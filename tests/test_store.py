"""Run directories: atomic units, resume, several kinds in one directory, refusals."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepglass.errors import DeepglassError
from deepglass.store import RunDir, iter_missing


def test_units_resume_and_arrays(tmp_path):
    run = RunDir(tmp_path / "r", {"seed": 0, "R": 4}, kind="frustration")
    assert not run.resumed
    for u in ("u0", "u1"):
        run.write_unit("real", u, pd.DataFrame({"e": [0.1]}), arrays={"sigma": np.ones(3)})
    again = RunDir(tmp_path / "r", {"seed": 0, "R": 4}, kind="frustration")
    assert again.resumed
    assert iter_missing(again, "real", ["u0", "u1", "u2"]) == ["u2"]
    assert again.read_units("real")["e"].tolist() == [0.1, 0.1]
    assert again.load_arrays("frustration/real/u1")["sigma"].tolist() == [1, 1, 1]
    assert not list((tmp_path / "r").rglob("*.tmp"))


def test_several_kinds_share_a_directory(tmp_path):
    a = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    a.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    b = RunDir(tmp_path / "r", {"inputs": "digits"}, kind="active")
    assert not b.resumed and b.read_units("t").empty       # units are per kind
    assert sorted(b.kinds) == ["active", "frustration"]
    assert b.run_config("frustration") == {"seed": 0}
    # re-opening the first kind with its own config still works
    assert RunDir(tmp_path / "r", {"seed": 0}, kind="frustration").resumed


def test_changed_config_refused_then_forced(tmp_path):
    RunDir(tmp_path / "r", {"seed": 0}, kind="frustration").write_unit(
        "t", "u0", pd.DataFrame({"x": [1]}))
    RunDir(tmp_path / "r", {"n": 1}, kind="active").write_unit("t", "u0", pd.DataFrame({"x": [2]}))
    with pytest.raises(DeepglassError, match="'frustration' configuration differs \\(seed: recorded 0, now 1\\)"):
        RunDir(tmp_path / "r", {"seed": 1}, kind="frustration")
    forced = RunDir(tmp_path / "r", {"seed": 1}, kind="frustration", force=True)
    assert forced.read_units("t").empty                    # its old units are gone
    assert RunDir(tmp_path / "r", {"n": 1}, kind="active").read_units("t")["x"].tolist() == [2]


def test_force_removes_the_derived_files_of_the_old_configuration(tmp_path):
    # tables, figures and checkpoints that the new configuration does not write
    # again must not stay beside its results; another kind's files stay
    d = tmp_path / "r"
    old = RunDir(d, {"nets": ["a", "b"]}, kind="powerlaw")
    old.write_unit("t", "a", pd.DataFrame({"x": [1]}))
    old.write_table("verdicts", pd.DataFrame({"x": [1]}))
    old.write_file("checkpoints/b_e0002.pt", b"old model")
    old.update_summary({"powerlaw": {"nets": 2}})
    old.write_report_section("## power laws, nets a and b")
    other = RunDir(d, {"n": 1}, kind="active")
    other.write_table("active", pd.DataFrame({"y": [2]}))
    other.write_report_section("## active")
    RunDir(d, {"nets": ["a"]}, kind="powerlaw", force=True)
    assert not (d / "verdicts.parquet").exists()
    assert not (d / "checkpoints").exists()
    assert not (d / "reports" / "powerlaw.md").exists()
    assert pd.read_parquet(d / "active.parquet")["y"].tolist() == [2]
    assert (d / "reports" / "active.md").exists() and (d / "config.toml").exists()
    assert (d / "report.md").exists() and (d / "summary.json").exists()


def test_other_version_and_foreign_directories(tmp_path):
    d = tmp_path / "r"
    RunDir(d, {"seed": 0}, kind="frustration")
    text = (d / "config.toml").read_text().replace('version = "', 'version = "0.0.0-')
    (d / "config.toml").write_text(text)
    with pytest.raises(DeepglassError, match="made by deepglass 0.0.0-"):
        RunDir(d, {"seed": 0}, kind="frustration")
    RunDir(d, {"seed": 0}, kind="frustration", force=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DeepglassError, match="not a deepglass run"):
        RunDir(other, {}, kind="frustration")


def test_summary_and_report_sections_merge(tmp_path):
    a = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    a.update_summary({"frustration": {"real": 0.1}})
    a.write_report_section("## Frustration\n\nreal 0.1")
    b = RunDir(tmp_path / "r", {"n": 5}, kind="active")
    b.update_summary({"active": {"mean_delta_x": 0.05}})
    b.write_report_section("## Active subnetworks\n\nmean 0.05")
    a.write_report_section("## Frustration\n\nreal 0.09")      # rewritten in place
    import json
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary == {"frustration": {"real": 0.1}, "active": {"mean_delta_x": 0.05}}
    report = (tmp_path / "r" / "report.md").read_text()
    assert report.index("real 0.09") < report.index("mean 0.05") and "real 0.1\n" not in report


# -- ownership: --force never removes or overwrites a file deepglass did not write ----
import json
import os
import stat

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

#: paths a user might leave in a run directory, many where deepglass writes
_TEMPTING = ["notes.txt", "report.md", "summary.json", "manifest.jsonl.tmp", "data/x.csv",
             "units/frustration/t/u0.parquet", "units/frustration/t/u7.parquet",
             "units/frustration/mine.txt", "arrays/frustration/t/u0.npz", "arrays/own.npz",
             "figures/own.png", "reports/frustration.md", "reports/frustration.summary.json",
             ".report.md.abcd1234.tmp", "units/frustration/t/.u1.parquet.x1y2z3w4.tmp",
             "stats.parquet", "t.parquet"]
_NAME = st.from_regex(r"[a-z_.]{1,8}(/[a-z_]{1,6}){0,2}\.(txt|md|parquet|npz|json|tmp)",
                      fullmatch=True).filter(lambda p: ".." not in p and not p.startswith("."))
_FOREIGN = st.dictionaries(st.one_of(st.sampled_from(_TEMPTING), _NAME), st.binary(max_size=40),
                           max_size=8)


def _place(root, files):
    """Write ``files`` (rel -> bytes) under ``root``; skip names a placed file blocks."""
    placed = {}
    for rel, data in files.items():
        p = root / rel
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.exists():
                continue
            p.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
        placed[rel] = data
    return placed


def _use(run):
    """Everything a run writes: units with arrays, a table, a summary, a report."""
    for u in ("u0", "u1"):
        run.write_unit("t", u, pd.DataFrame({"x": [1.0, 2.0]}), arrays={"s": np.arange(3)})
    run.write_table("stats", pd.DataFrame({"y": [3]}))
    run.update_summary({"frustration": {"d": 0.25}})
    run.write_report_section("## section")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(foreign=_FOREIGN, case=st.sampled_from(["version", "config", "plain-dir"]))
def test_force_keeps_every_foreign_file(tmp_path_factory, foreign, case):
    d = tmp_path_factory.mktemp("r")
    old_units = []
    if case != "plain-dir":
        run = RunDir(d, {"seed": 0}, kind="frustration")
        _use(run)
        run.write_unit("t", "u5", pd.DataFrame({"x": [9.0]}))
        old_units = [p for p in run.owned_files() if "u5" in p]
        if case == "version":
            cfg = d / "config.toml"
            cfg.write_text(cfg.read_text().replace('version = "', 'version = "0.0.0-'))
        owned = set(run.owned_files())
        foreign = {k: v for k, v in foreign.items() if k not in owned}
    placed = _place(d, foreign)
    try:
        forced = RunDir(d, {"seed": 1}, kind="frustration", force=True)
        _use(forced)
        refused = False
    except DeepglassError as exc:  # a foreign file where deepglass writes: one line, refused
        assert "\n" not in str(exc)
        refused = True
    for rel, data in placed.items():
        assert (d / rel).read_bytes() == data, rel
    if not refused:
        # what the old run wrote and the new one did not is gone: force did remove
        assert not any((d / p).exists() for p in old_units)
        assert forced.read_units("t")["x"].tolist() == [1.0, 2.0, 1.0, 2.0]


def test_foreign_config_refused_even_with_force(tmp_path):
    d = tmp_path / "GC"
    (d / "mydata").mkdir(parents=True)
    (d / "config.toml").write_text("junk\n")
    (d / "precious.txt").write_text("p\n")
    (d / "mydata" / "a.csv").write_text("1,2\n")
    for cfg in ("junk\n", "[tool]\nname = 'other'\n", "[deepglass]\nversion = 1\n"):
        (d / "config.toml").write_text(cfg)
        with pytest.raises(DeepglassError, match="config.toml is not a deepglass run's"):
            RunDir(d, {"seed": 0}, kind="frustration", force=True)
        assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) == \
            ["config.toml", "mydata", "mydata/a.csv", "precious.txt"]


def test_force_into_a_plain_directory_writes_beside_its_files(tmp_path):
    (tmp_path / "keep.txt").write_text("k")
    with pytest.raises(DeepglassError, match="not empty and is not a deepglass run"):
        RunDir(tmp_path, {"seed": 0}, kind="frustration")
    run = RunDir(tmp_path, {"seed": 0}, kind="frustration", force=True)
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    run.update_summary({"a": 1})
    assert (tmp_path / "keep.txt").read_text() == "k"
    # a summary.json or report.md of the user's, which every run ends by writing:
    # refused when the directory is opened, before any computation, not at the end
    for name in ("summary.json", "report.md"):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        (d / name).write_text("mine")
        with pytest.raises(DeepglassError, match=f"{name} exists and was not written by deepglass"):
            RunDir(d, {"seed": 0}, kind="frustration", force=True)
        assert sorted(p.name for p in d.iterdir()) == [name]
        assert (d / name).read_text() == "mine"


# -- damaged units are reported and recomputed ---------------------------------
def _damage(path, how):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flip":  # same size, one byte changed
        path.write_bytes(data[:-9] + bytes([data[-9] ^ 0xFF]) + data[-8:])
    elif how == "garbage":
        path.write_bytes(b"\x00garbage{")


@pytest.mark.parametrize("target,how", [("parquet", "truncate"), ("parquet", "empty"),
                                        ("parquet", "flip"), ("npz", "truncate"),
                                        ("npz", "garbage"), ("parquet", "delete")])
def test_damaged_unit_is_reported_and_recomputed(tmp_path, caplog, target, how):
    run = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    for u in ("u0", "u1", "u2"):
        run.write_unit("t", u, pd.DataFrame({"x": [float(u[1])] * 3}), arrays={"s": np.arange(4)})
    path = (tmp_path / "r" / ("units/frustration/t/u1.parquet" if target == "parquet"
                              else "arrays/frustration/t/u1.npz"))
    if how == "delete":
        path.unlink()
    else:
        _damage(path, how)
    again = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    with caplog.at_level("WARNING", logger="deepglass.store"):
        assert again.finished_units("t") == {"u0", "u2"}
        assert iter_missing(again, "t", ["u0", "u1", "u2"]) == ["u1"]
        assert again.read_units("t")["x"].tolist() == [0.0] * 3 + [2.0] * 3
    if how != "delete":
        msgs = [r.getMessage() for r in caplog.records if "u1" in r.getMessage()]
        assert len(msgs) == 1 and "damaged unit" in msgs[0] and "\n" not in msgs[0]
    with pytest.raises(DeepglassError, match="damaged unit"):
        again.read_unit("t", "u1")
    again.write_unit("t", "u1", pd.DataFrame({"x": [1.0] * 3}), arrays={"s": np.arange(4)})
    fresh = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    assert fresh.finished_units("t") == {"u0", "u1", "u2"}
    assert fresh.read_unit("t", "u1")["x"].tolist() == [1.0] * 3
    assert fresh.load_arrays("frustration/t/u1")["s"].tolist() == [0, 1, 2, 3]


def test_garbage_summary_and_parts_are_rebuilt(tmp_path, caplog):
    a = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    a.update_summary({"frustration": {"real": 0.1}})
    b = RunDir(tmp_path / "r", {"n": 5}, kind="active")
    b.update_summary({"active": {"x": 1}})
    (tmp_path / "r" / "summary.json").write_text("{not json")
    (tmp_path / "r" / "reports" / "active.summary.json").write_text("\x00\x01")
    with caplog.at_level("WARNING", logger="deepglass.store"):
        a.update_summary({"frustration": {"real": 0.2}})
    assert json.loads((tmp_path / "r" / "summary.json").read_text()) == {"frustration": {"real": 0.2}}
    b.update_summary({"active": {"x": 2}})
    assert json.loads((tmp_path / "r" / "summary.json").read_text()) == \
        {"frustration": {"real": 0.2}, "active": {"x": 2}}


# -- modes and temporaries ------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
        run.write_unit("t", "u0", pd.DataFrame({"x": [1]}), arrays={"s": np.ones(2)})
        run.write_report_section("## s")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
    assert len(files) >= 6
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))

    def killed(*a, **k):  # the process dies between the write and the rename
        raise SystemExit("killed")

    monkeypatch.setattr(os, "replace", killed)
    monkeypatch.setattr(Path, "unlink", lambda *a, **k: None)   # no cleanup either
    with pytest.raises(SystemExit):
        run.write_unit("t", "u1", pd.DataFrame({"x": [2]}))
    monkeypatch.undo()
    tmps = list((tmp_path / "r").rglob("*.tmp"))
    assert len(tmps) == 1 and tmps[0].name.startswith(".u1.parquet.")
    (tmp_path / "r" / "units" / "frustration" / "t" / ".u9.parquet.user.tmp").write_text("mine")
    again = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    assert [p.name for p in (tmp_path / "r").rglob("*.tmp")] == [".u9.parquet.user.tmp"]
    assert again.finished_units("t") == {"u0"}


def test_unwritable_out_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DeepglassError, match="exists and is not a directory"):
        RunDir(f, {}, kind="k")
    with pytest.raises(DeepglassError, match="is a file, not a directory"):
        RunDir(f / "sub", {}, kind="k")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(DeepglassError, match="is not writable"):
            RunDir(ro / "run", {}, kind="k")
    finally:
        ro.chmod(0o755)


def test_an_out_directory_where_none_can_be_made_is_refused_up_front(tmp_path, cli):
    """Permissions do not tell everything (a superuser may write anywhere the
    permissions allow, but not into /proc): a probe directory is made and
    removed, so the refusal comes before the network loads, and nothing is
    left behind where it can be made."""
    from deepglass.files import check_out_dir

    assert check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    with pytest.raises(DeepglassError, match="cannot create a directory in /proc"):
        check_out_dir("/proc/deepglass-run")
    code, out, err = cli(["active", "no-such-model.pt", "--inputs", "digits", "--out",
                          "/proc/deepglass-run"])
    assert code == 2 and err.count("\n") == 1 and "cannot create a directory in /proc" in err


def test_weight_cache_mode_and_stale_temporaries(tmp_path, monkeypatch):
    import time

    import torch

    from deepglass.zoo import cache

    monkeypatch.setenv("DEEPGLASS_CACHE", str(tmp_path))
    path = cache.weights_path("net", 0, 1)
    path.parent.mkdir(parents=True)
    old_tmp = path.parent / f".{path.name}.abc123.tmp"
    new_tmp = path.parent / f".{path.name}.def456.tmp"      # a writer still running
    other = path.parent / ".other.safetensors.abc123.tmp"
    for p in (old_tmp, new_tmp, other):
        p.write_bytes(b"partial")
    hour_ago = time.time() - 2 * cache.STALE_SECONDS
    os.utime(old_tmp, (hour_ago, hour_ago))
    os.utime(other, (hour_ago, hour_ago))
    old = os.umask(0o022)
    try:
        assert cache.save_weights(path, {"w": torch.ones(2)}, {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not old_tmp.exists() and new_tmp.exists() and other.exists()
    assert cache.load_weights(path)[1] == {"a": 1}


def test_read_only_location_refused_before_work(cli, tmp_path, monkeypatch):
    """A read-only file system (simulated: access(2) says EROFS) is one line
    before the network is even loaded; --save likewise."""
    real = os.access
    ro = str(tmp_path / "ro")
    os.mkdir(ro)
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if str(p).startswith(ro)
                        else real(p, m, *a, **k))
    import deepglass.zoo as zoo

    monkeypatch.setattr(zoo, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    for argv, frag in ((["--out", f"{ro}/run", "--nulls", "N1"], "is not writable"),
                       (["--save", f"{ro}/x"], "is not writable")):
        code, out, err = cli(["frustration", "digits_cnn", *argv])
        assert code == 2 and err.count("\n") == 1 and frag in err, err
    assert os.listdir(ro) == []


# -- a manifest never leads deepglass outside its run directory --------------------
@pytest.mark.parametrize("how", ["relative", "absolute", "symlink"])
def test_force_never_removes_files_outside_the_run(tmp_path, caplog, how):
    d = tmp_path / "run"
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("precious")
    if how == "symlink":   # a directory of the run that is a link out of it
        (d / "figures").symlink_to(victim.parent, target_is_directory=True)
        listed = "figures/victim.txt"
    else:
        listed = "../elsewhere/victim.txt" if how == "relative" else str(victim)
    with open(d / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps({"path": listed, "sha256": "0", "bytes": 8,
                             "kind": "frustration"}) + "\n")
        fh.write(json.dumps({"tmp": listed}) + "\n")
    with caplog.at_level("WARNING", logger="deepglass.store"):
        forced = RunDir(d, {"seed": 1}, kind="frustration", force=True)
    assert victim.read_text() == "precious"
    msgs = [r.getMessage() for r in caplog.records if "outside the run directory" in
            r.getMessage()]
    assert msgs and all("\n" not in m for m in msgs)
    assert not (d / "units/frustration/t/u0.parquet").exists()
    if how == "symlink":   # and nothing is written through the link either
        with pytest.raises(DeepglassError, match="outside the run directory"):
            forced.save_figure(_figure(), "victim.txt")
        assert victim.read_text() == "precious"
    # a version change removes every owned file: still nothing outside
    cfg = (d / "config.toml").read_text()
    (d / "config.toml").write_text(cfg.replace('version = "', 'version = "0.0.0-old'))
    RunDir(d, {"seed": 1}, kind="frustration", force=True)
    assert victim.read_text() == "precious"


def _figure():
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([0, 1])
    return fig


def test_deleted_unit_arrays_make_the_unit_unfinished(tmp_path, caplog):
    run = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    for u in ("u0", "u1"):
        run.write_unit("t", u, pd.DataFrame({"x": [1.0]}), arrays={"s": np.arange(3)})
    (tmp_path / "r/arrays/frustration/t/u1.npz").unlink()
    for _ in range(2):   # the reopening compacts the manifest: the unit stays unfinished
        again = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
        with caplog.at_level("WARNING", logger="deepglass.store"):
            assert again.finished_units("t") == {"u0"}
        assert any("u1" in r.getMessage() and "arrays" in r.getMessage()
                   for r in caplog.records)
    again.write_unit("t", "u1", pd.DataFrame({"x": [1.0]}), arrays={"s": np.arange(3)})
    assert RunDir(tmp_path / "r", {"seed": 0}, kind="frustration").finished_units("t") == \
        {"u0", "u1"}


def test_lost_manifest_is_named(tmp_path):
    run = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1.0]}))
    (tmp_path / "r/manifest.jsonl").unlink()
    for force in (False, True):
        with pytest.raises(DeepglassError, match="lost its manifest.jsonl") as e:
            RunDir(tmp_path / "r", {"seed": 0}, kind="frustration", force=force)
        assert "\n" not in str(e.value) and "another --out" in str(e.value)
    assert (tmp_path / "r/units/frustration/t/u0.parquet").exists()


@pytest.mark.parametrize("name", ["frustration_runs.parquet", "figures/frustration.png",
                                  "arrays/gauge_real.npz", "units/frustration/t/u0.parquet"])
def test_force_into_a_folder_refuses_a_clash_at_once(tmp_path, name):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("mine")
    with pytest.raises(DeepglassError, match="exists and was not written by deepglass"):
        RunDir(tmp_path, {"seed": 0}, kind="frustration", force=True)
    assert (tmp_path / name).read_text() == "mine"
    assert not (tmp_path / "config.toml").exists()
    # a kind that writes no such name does not clash
    RunDir(tmp_path, {"seed": 0}, kind="rap-phase", force=True)


def test_settled_value_is_never_mixed(tmp_path):
    d = tmp_path / "r"
    run = RunDir(d, {"seed": 0}, kind="active")
    run.settle("gauge", {"sha256": "aaa"}, str)
    run.write_unit("t", "u0", pd.DataFrame({"x": [1.0]}))
    again = RunDir(d, {"seed": 0}, kind="active")          # the same config resumes
    again.settle("gauge", {"sha256": "aaa"}, str)
    assert again.finished_units("t") == {"u0"}
    with pytest.raises(DeepglassError, match="units were computed with .*aaa.* now has .*bbb"):
        RunDir(d, {"seed": 0}, kind="active").settle("gauge", {"sha256": "bbb"}, str)
    forced = RunDir(d, {"seed": 0}, kind="active", force=True)
    forced.settle("gauge", {"sha256": "bbb"}, str)
    assert forced.finished_units("t") == set()
    assert RunDir(d, {"seed": 0}, kind="active").run_config("active")["gauge"] == \
        {"sha256": "bbb"}


def test_a_directory_another_process_is_running_in_is_refused(tmp_path):
    """Two processes writing one run directory (the same command started twice)
    would race on its manifest and refuse each other's files midway: the
    second is refused up front, and the directory is free again once the
    first ends."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from deepglass.store import RunDir; "
         "r = RunDir(sys.argv[1], {'seed': 0}, kind='frustration'); "
         "print('open', flush=True); time.sleep(60)", str(tmp_path / "r")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(DeepglassError, match="in use by another"):
            RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")
        with pytest.raises(DeepglassError, match="in use by another"):
            RunDir(tmp_path / "r", {"n": 1}, kind="active")
    finally:
        holder.kill()
        holder.wait()
    run = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")   # free again
    again = RunDir(tmp_path / "r", {"seed": 0}, kind="frustration")  # this process: shared
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    assert again.finished_units("t") == {"u0"}


def test_a_run_recorded_before_a_new_configuration_key_resumes_and_records_it(tmp_path):
    """Keys added to a kind's configuration later (ADDED_KEYS: the inputs'
    digest) do not refuse a run recorded without them; the resume records
    them, and from then on another value is refused."""
    from deepglass.store import ADDED_KEYS

    assert "inputs_sha256" in ADDED_KEYS
    old = RunDir(tmp_path / "r", {"seed": 0}, kind="active")
    old.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    again = RunDir(tmp_path / "r", {"seed": 0, "inputs_sha256": "aa"}, kind="active")
    assert again.resumed and again.finished_units("t") == {"u0"}
    assert again.run_config("active") == {"seed": 0, "inputs_sha256": "aa"}
    with pytest.raises(DeepglassError, match=r"differs \(inputs_sha256: recorded 'aa', now 'bb'\)"):
        RunDir(tmp_path / "r", {"seed": 0, "inputs_sha256": "bb"}, kind="active")
    with pytest.raises(DeepglassError, match=r"differs \(seed: recorded"):
        RunDir(tmp_path / "r", {"seed": 1, "inputs_sha256": "aa"}, kind="active")
    # a key left out stands for its default (active's target 'pred'): said so, not 'none'
    RunDir(tmp_path / "t", {"seed": 0, "target": "all"}, kind="active")
    with pytest.raises(DeepglassError, match=r"differs \(target: recorded 'all', now the "
                                             r"default\)"):
        RunDir(tmp_path / "t", {"seed": 0}, kind="active")


def test_a_force_on_another_versions_run_keeps_other_kinds_results(tmp_path):
    """One kind's --force on a directory of another deepglass version removed
    every kind's results (36 files to 11): refused in one line, nothing
    removed, where other kinds have results; alone, the kind is replaced."""
    d = tmp_path / "r"
    a = RunDir(d, {"seed": 0}, kind="frustration")
    a.write_table("frustration", pd.DataFrame({"x": [1]}))
    RunDir(d, {"n": 5}, kind="active").write_table("active", pd.DataFrame({"y": [2]}))
    text = (d / "config.toml").read_text().replace('version = "', 'version = "0.0.0-')
    (d / "config.toml").write_text(text)
    before = sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))
    with pytest.raises(DeepglassError, match="holds 'frustration' results besides 'active'"):
        RunDir(d, {"n": 5}, kind="active", force=True)
    # without --force the refusal does not offer one it would refuse (as the demo's did)
    with pytest.raises(DeepglassError, match=r"this is \S+; use another run directory "
                                             r"\(--out, run=\)$"):
        RunDir(d, {"n": 5}, kind="active")
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) == before


def test_a_refused_force_removes_nothing(tmp_path):
    """A file deepglass did not write among a kind's units refuses the run:
    before anything is removed (the old units, tables and report were
    deleted first, then the run refused)."""
    d = tmp_path / "r"
    a = RunDir(d, {"seed": 0}, kind="frustration")
    a.write_unit("replicas", "r000", pd.DataFrame({"e": [0.5]}))
    a.write_table("frustration", pd.DataFrame({"x": [1]}))
    (d / "units" / "frustration" / "notes.txt").write_text("mine")
    before = sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))
    with pytest.raises(DeepglassError, match="notes.txt exists and was not written by deepglass"):
        RunDir(d, {"seed": 1}, kind="frustration", force=True)
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) == before


def test_a_changed_nested_option_is_named_in_full(tmp_path):
    """A changed engine was reported as '(options)'."""
    d = tmp_path / "r"
    RunDir(d, {"seed": 0, "options": {"engine": "auto", "gamma": 1.0}}, kind="frustration")
    with pytest.raises(DeepglassError, match=r"configuration differs \(options.engine: recorded 'auto', now 'matrix-free'\)"):
        RunDir(d, {"seed": 0, "options": {"engine": "matrix-free", "gamma": 1.0}},
               kind="frustration")


def test_a_hand_edited_config_that_is_no_runs_table_is_one_line(tmp_path):
    """``[runs] frustration = "oops"`` raised AttributeError."""
    d = tmp_path / "r"
    RunDir(d, {"seed": 0}, kind="frustration")
    (d / "config.toml").write_text('[deepglass]\nversion = "0.1.0"\n[runs]\nfrustration = "oops"\n')
    with pytest.raises(DeepglassError, match="config.toml is not a deepglass run's"):
        RunDir(d, {"seed": 0}, kind="frustration")


@pytest.mark.parametrize("config,kind,msg", [
    ([1, 2], "k", r"^config must be a mapping \(dict\), got list$"),   # dict([1, 2]): TypeError
    ({}, "../x", r"^kind must be a plain file name .*, got '\.\./x'$"),
    ({}, "", "^kind must be a plain file name .*, got ''$"),
])
def test_a_bad_config_or_kind_is_one_line_and_creates_nothing(tmp_path, config, kind, msg):
    with pytest.raises(DeepglassError, match=msg):
        RunDir(tmp_path / "r", config, kind)
    assert not (tmp_path / "r").exists()


def test_a_kinds_results_along_a_replaced_gauge_are_marked(tmp_path):
    """A later run replaced the shared gauge (``frustration --force``): the
    report said nothing, mixing two gauges' results; the sections and the
    summary of the kinds computed along the earlier one say so, until they
    are recomputed along the new one."""
    from deepglass.manifest import gauge_digest

    d = tmp_path / "r"
    old, new = np.array([1, -1, 1], np.int8), np.array([1, 1, -1], np.int8)
    f = RunDir(d, {"seed": 0}, kind="frustration")
    f.save_arrays("gauge_real", sigma=old, energy=np.float64(0.3))
    a = RunDir(d, {"n": 5}, kind="active")
    a.settle("gauge", {"sha256": gauge_digest(old, 0.3), "delta": 0.3}, str)
    a.write_report_section("## Active subnetworks\n\nmean 0.05")
    a.update_summary({"active": {"delta": 0.3}})
    assert "earlier gauge" not in (d / "report.md").read_text()
    f = RunDir(d, {"seed": 1}, kind="frustration", force=True)
    f.save_arrays("gauge_real", sigma=new, energy=np.float64(0.25))
    f.write_report_section("## Frustration\n\nreal 0.25")
    f.update_summary({"delta": 0.25})
    report = (d / "report.md").read_text()
    assert "## Active subnetworks\n\n> **Computed along an earlier gauge** (delta 0.3000)" in report
    assert json.loads((d / "summary.json").read_text())["along_earlier_gauge"] == ["active"]
    a = RunDir(d, {"n": 5}, kind="active", force=True)
    a.settle("gauge", {"sha256": gauge_digest(new, 0.25), "delta": 0.25}, str)
    a.write_report_section("## Active subnetworks\n\nmean 0.04")
    a.update_summary({"active": {"delta": 0.25}})
    assert "earlier gauge" not in (d / "report.md").read_text()
    assert "along_earlier_gauge" not in json.loads((d / "summary.json").read_text())


def test_a_report_the_user_edited_is_kept_not_overwritten(tmp_path, caplog):
    """Notes added to ``report.md`` disappeared at the next write: the edited
    file is kept as ``report.md.edited`` (then ``.edited-2``), with a warning;
    an unedited one is rewritten in place."""
    d = tmp_path / "r"
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_report_section("## Frustration\n\nreal 0.1")
    run.write_report_section("## Frustration\n\nreal 0.2")
    assert not list(d.glob("report.md.edited*"))
    for k, suffix in enumerate(["", "-2"]):
        with open(d / "report.md", "a") as fh:
            fh.write(f"my notes {k}\n")
        del run             # the edit comes between two commands
        run = RunDir(d, {"seed": 0}, kind="frustration")
        with caplog.at_level("WARNING", logger="deepglass.store"):
            run.write_report_section(f"## Frustration\n\nreal 0.{k + 3}")
        assert (d / f"report.md.edited{suffix}").read_text().endswith(f"my notes {k}\n")
        assert "was changed since deepglass wrote it" in caplog.text
    assert (d / "report.md").read_text().rstrip().endswith("real 0.4")
    # the kept copies are the user's: a --force of another configuration leaves them
    del run
    RunDir(d, {"seed": 1}, kind="frustration", force=True)
    assert (d / "report.md.edited").exists() and (d / "report.md.edited-2").exists()


def test_a_kill_at_any_point_of_a_write_leaves_nothing_behind(tmp_path, monkeypatch, caplog):
    """A kill between creating the temporary and recording its name left an
    unrecorded temporary no later open removed (nor --force); a kill between the
    new record and the rename left deepglass's previous report.md, which the
    next write took for the user's edit (report.md.edited and a warning)."""
    import deepglass.owned as owned

    d = tmp_path / "r"
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_report_section("## Frustration\n\nreal 0.1")
    real_open, real_replace = os.open, os.replace

    def killed(*a, **k):
        raise SystemExit("killed")

    # killed right after the temporary's name is recorded, before the file exists,
    # then right after it exists (no cleanup: the process is gone)
    monkeypatch.setattr(Path, "unlink", lambda *a, **k: None)
    monkeypatch.setattr(owned.os, "open", killed)
    with pytest.raises(SystemExit):
        run.write_unit("t", "u1", pd.DataFrame({"x": [2]}))
    monkeypatch.setattr(owned.os, "open", real_open)
    monkeypatch.setattr(owned.os, "replace", killed)
    with pytest.raises(SystemExit):
        run.write_unit("t", "u2", pd.DataFrame({"x": [3]}))
    with pytest.raises(SystemExit):             # the new report recorded, not renamed
        run.write_report_section("## Frustration\n\nreal 0.2")
    monkeypatch.undo()
    assert len(list(d.rglob("*.tmp"))) == 2
    del run
    again = RunDir(d, {"seed": 0}, kind="frustration")
    assert not list(d.rglob("*.tmp")) and again.finished_units("t") == set()
    with caplog.at_level("WARNING", logger="deepglass.store"):
        again.write_report_section("## Frustration\n\nreal 0.3")
    assert not list(d.glob("report.md.edited*")) and "was changed" not in caplog.text
    assert (d / "report.md").read_text().rstrip().endswith("real 0.3")
    # the manifest's own compaction temporary (written whole, then renamed)
    (d / ".manifest.jsonl.abc123.tmp").write_text("{}")
    del again
    RunDir(d, {"seed": 0}, kind="frustration")
    assert not (d / ".manifest.jsonl.abc123.tmp").exists()


def test_a_damaged_manifest_is_named_as_such(tmp_path):
    """A manifest cut by hand made deepglass call its own summary.json a
    foreign file; the message now names the damaged record."""
    d = tmp_path / "r"
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    run.write_report_section("## Frustration")
    run.update_summary({"delta": 0.1})
    del run
    text = (d / "manifest.jsonl").read_text()
    (d / "manifest.jsonl").write_text(text[:len(text) // 2])
    with pytest.raises(DeepglassError, match=r"not recorded in manifest.jsonl, whose last "
                                             r"line is cut short \(a crash while a file was "
                                             r"being recorded\): move the files it does not "
                                             r"record away"):
        RunDir(d, {"seed": 0}, kind="frustration")
    lines = text.splitlines(keepends=True)
    (d / "manifest.jsonl").write_text("".join(lines[:len(lines) // 2]) + "{oops\n")
    with pytest.raises(DeepglassError, match=r"not recorded in manifest.jsonl, which has 1 "
                                             r"unreadable line\(s\): the record is damaged"):
        RunDir(d, {"seed": 0}, kind="frustration")


@pytest.mark.parametrize("cut", ["name", "inside-name", "brace"])
def test_a_crash_mid_append_leaves_a_run_that_resumes(tmp_path, caplog, cut):
    """A crash (power loss) cut the manifest's last line short after its file
    was renamed into place: the resume refused the run's own summary.json as
    an unrecorded file.  A torn last line that names its file keeps that file
    the run's (a unit is recomputed, a summary rewritten)."""
    d = tmp_path / "r"
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    run.write_unit("t", "u1", pd.DataFrame({"x": [2]}))
    del run
    text = (d / "manifest.jsonl").read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    assert last.startswith('{"path":"units/frustration/t/u1.parquet"')
    keep = {"name": len('{"path":"units/frustration/t/u1.parquet"') + 3,
            "inside-name": len('{"path":"units/frustr'), "brace": 1}[cut]
    (d / "manifest.jsonl").write_text(text[:len(text) - len(last) - 1] + last[:keep])
    if cut != "name":
        # the name is not whole: the file is not known as the run's
        (d / "units/frustration/t/u1.parquet").unlink()
    with caplog.at_level("WARNING", logger="deepglass.store"):
        again = RunDir(d, {"seed": 0}, kind="frustration")
        assert again.finished_units("t") == {"u0"}
    assert ("cut short by a crash" in caplog.text) == (cut == "name")
    again.write_unit("t", "u1", pd.DataFrame({"x": [2]}))
    again.update_summary({"delta": 0.1})
    del again
    # the summary's record was the last append: cut it, and the summary is
    # rewritten, not refused as a foreign file
    text = (d / "manifest.jsonl").read_text()
    assert text.rstrip("\n").rsplit("\n", 1)[1].startswith('{"path":"summary.json"')
    (d / "manifest.jsonl").write_text(text[:text.rindex('{"path":"summary.json"') + 30])
    again = RunDir(d, {"seed": 0}, kind="frustration")
    assert again.finished_units("t") == {"u0", "u1"}
    again.update_summary({"delta": 0.2})
    assert json.loads((d / "summary.json").read_text())["delta"] == 0.2


def test_a_run_killed_while_writing_its_first_file_starts_afresh(tmp_path):
    """Killed while config.toml was written: only the manifest (recording that
    temporary) and the temporary were left, and the same command refused the
    directory as 'not a deepglass run'."""
    import json as _json

    d = tmp_path / "r"
    d.mkdir()
    (d / "manifest.jsonl").write_text(_json.dumps({"tmp": ".config.toml.abc123.tmp"}) + "\n")
    (d / ".config.toml.abc123.tmp").write_text("")
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    assert not list(d.glob("*.tmp")) and (d / "config.toml").exists()
    # a manifest that records files is another story: refused as before
    e = tmp_path / "e"
    e.mkdir()
    (e / "manifest.jsonl").write_text(_json.dumps({"path": "x", "sha256": "0"}) + "\n")
    (e / "x").write_text("mine")
    with pytest.raises(DeepglassError, match="is not empty and is not a deepglass run"):
        RunDir(e, {"seed": 0}, kind="frustration")


def test_a_long_list_that_differs_is_named_by_what_was_added_or_dropped(tmp_path):
    """Two long lists were both cut at 40 characters: the part that differs
    was not shown."""
    old = ["random-order", "N3-xavier", "N3-he"]
    RunDir(tmp_path / "r", {"nulls": old}, kind="monotonicity").write_unit(
        "t", "u0", pd.DataFrame({"x": [1]}))
    with pytest.raises(DeepglassError, match=r"nulls: now with \['N1'\]\)"):
        RunDir(tmp_path / "r", {"nulls": old + ["N1"]}, kind="monotonicity")


def test_a_model_file_spelled_another_way_resumes(tmp_path):
    """`net.pt` then `./net.pt` (or its absolute path) was refused as another
    configuration although the recorded weights digest was the same.  A name
    whose digest agrees is the same run; another digest is still refused."""
    d = tmp_path / "r"
    cfg = {"model": "net.pt", "weights_sha256": "ab", "inputs": "data",
           "inputs_sha256": "cd", "seed": 0}
    run = RunDir(d, cfg, kind="active")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    del run
    again = RunDir(d, {**cfg, "model": "./net.pt", "inputs": str(tmp_path / "data")},
                   kind="active")
    assert again.finished_units("t") == {"u0"}
    assert "./net.pt" in (d / "config.toml").read_text()
    del again
    for changed in ({"model": "other.pt", "weights_sha256": "ef"},
                    {"inputs": "more", "inputs_sha256": "ff"}):
        with pytest.raises(DeepglassError, match="configuration differs"):
            RunDir(d, {**cfg, **changed}, kind="active")
    # without a digest on both sides, the name is compared as it is written
    RunDir(tmp_path / "s", {"model": "alexnet", "seed": 0}, kind="frustration")
    with pytest.raises(DeepglassError, match="model: recorded 'alexnet'"):
        RunDir(tmp_path / "s", {"model": "resnet18", "seed": 0}, kind="frustration")


def _tear_record(monkeypatch, which):
    """The process killed while it appends a manifest record ``which(entry)`` picks:
    half the line written, no newline (a torn last line)."""
    import json

    from deepglass.manifest import Manifest

    real_append = Manifest.append

    def torn(self, entry):
        if not which(entry):
            return real_append(self, entry)
        line = json.dumps(entry, separators=(",", ":"))
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line[: len(line) // 2])
        raise SystemExit("killed")

    monkeypatch.setattr(Manifest, "append", torn)


@pytest.mark.parametrize("where", ["compaction", "after the record", "in the record"])
def test_a_kill_at_the_first_file_leaves_a_run_that_starts_again(tmp_path, monkeypatch, where):
    """Killed while the fresh manifest was compacted (its temporary alone), between
    config.toml's manifest record and its rename, or while that record was appended
    (a torn line): the directory holds what deepglass wrote and nothing in place. It was
    refused, as 'not a deepglass run' and, with --force, as holding 'a manifest.jsonl
    that deepglass did not write'; it starts afresh."""
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name == {"compaction": "manifest.jsonl"}.get(where, "config.toml"):
            raise SystemExit("killed")
        return real_replace(src, dst, *a, **k)

    if where != "in the record":
        monkeypatch.setattr(os, "replace", replace)
    else:
        _tear_record(monkeypatch, lambda entry: "path" in entry)
    monkeypatch.setattr(Path, "unlink", lambda *a, **k: None)   # the process is gone
    d = tmp_path / "r"
    with pytest.raises(SystemExit):
        RunDir(d, {"seed": 0}, kind="frustration")
    monkeypatch.undo()
    assert {p.name for p in d.iterdir()} - {"manifest.jsonl"} and not (d / "config.toml").exists()
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    assert sorted(p.name for p in d.iterdir()) == ["config.toml", "manifest.jsonl", "units"]
    del run
    assert RunDir(d, {"seed": 0}, kind="frustration").finished_units("t") == {"u0"}


def test_a_torn_report_record_rewrites_the_report(tmp_path, monkeypatch, caplog):
    """A kill while report.md's new record was appended (a torn last line) left
    deepglass's previous report.md, which the next write kept as report.md.edited
    with a warning that the user had changed it; it is rewritten."""
    d = tmp_path / "r"
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_report_section("## Frustration\n\nreal 0.1")
    _tear_record(monkeypatch, lambda entry: entry.get("path") == "report.md")
    with pytest.raises(SystemExit):
        run.write_report_section("## Frustration\n\nreal 0.2")
    monkeypatch.undo()
    del run
    again = RunDir(d, {"seed": 0}, kind="frustration")
    with caplog.at_level("WARNING"):
        again.write_report_section("## Frustration\n\nreal 0.3")
    assert not list(d.glob("report.md.edited*")) and "was changed" not in caplog.text
    assert (d / "report.md").read_text().rstrip().endswith("real 0.3")


_PHASE = {"betas": [1.0], "a2s": [0.3]}
_POWERLAW = {"nets": ["cnn"], "user_model": False, "epochs": 4, "checkpoint_every": 2}


@pytest.mark.parametrize("kind, config, name, refused", [
    ("rap-phase", _PHASE, "points.parquet", True),
    ("rap-phase", _PHASE, "figures/phase_beta1_a20.3.png", True),
    ("rap-phase", _PHASE, "figures/phase_beta_sketch.png", False),
    ("rap-anneal", {}, "temperature_scan.parquet", True),
    ("rap-student", {}, "figures/activations.png", True),
    ("criticality-meanfield", {}, "meanfield_curves_T.parquet", True),
    ("criticality-powerlaw", _POWERLAW, "figures/rank_cnn.png", True),
    ("criticality-powerlaw", _POWERLAW, "checkpoints/cnn_e0002.pt", True),
    ("criticality-powerlaw", _POWERLAW, "figures/powerlaw_cnn_weight.png", True),
    ("criticality-powerlaw", _POWERLAW, "figures/rank_notes.png", False),
    ("criticality-powerlaw", _POWERLAW, "checkpoints/my_model.pt", False)])
def test_force_beside_a_file_the_kind_writes_is_refused_at_once(tmp_path, kind, config, name,
                                                               refused):
    """A user's file among those a RAP or criticality run writes (the names its
    configuration gives): refused when the run is opened, before anything is computed
    or written (it was refused after the whole computation, leaving config.toml,
    manifest.jsonl and units/ behind); a file of another name stays beside the run."""
    d = tmp_path / "mine"
    (d / name).parent.mkdir(parents=True, exist_ok=True)
    (d / name).write_text("the user's")
    if refused:
        with pytest.raises(DeepglassError, match=r"exists and was not written by deepglass"):
            RunDir(d, config, kind=kind, force=True)
        assert sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) == [name]
    else:
        RunDir(d, config, kind=kind, force=True)
        assert (d / name).read_text() == "the user's" and (d / "config.toml").is_file()


@pytest.mark.parametrize("argv", [
    ["rap", "phase", "--N", "20", "--population", "2", "--p-min", "0.5", "--p-max", "0.99",
     "--n-points", "4", "--beta", "1", "--a2", "0.3", "--samples", "1", "--mc-sweeps", "0"],
    ["criticality", "meanfield", "{W}", "--n-t", "8", "--t-max", "0.03", "--n-broad", "3",
     "--n-h", "5", "--fields", "0"]])
def test_every_file_a_run_writes_is_among_its_kinds_outputs(cli, tmp_path, argv):
    """The outputs a kind is checked for when it opens (kind_outputs.kind_outputs) are the
    files it writes: a table or figure added to a kind and not listed there would be
    refused only after the computation again."""
    import tomllib

    from deepglass.store import kind_outputs

    np.save(tmp_path / "W.npy", np.full((25, 25), 1.3))
    out = tmp_path / "run"
    code, _, err = cli([a.replace("{W}", str(tmp_path / "W.npy")) for a in argv] + ["--out", str(out)])
    assert code == 0, err
    kind = "rap-phase" if argv[0] == "rap" else "criticality-meanfield"
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    owned = {n for n in written if not n.startswith(("units/", "reports/", "arrays/" + kind))
             and n not in ("config.toml", "manifest.jsonl", "report.md", "summary.json")}
    config = tomllib.loads((out / "config.toml").read_text())["runs"][kind]
    assert owned and owned <= set(kind_outputs(kind, config)), owned - set(kind_outputs(kind, config))


def test_a_hand_edited_config_is_refused(tmp_path):
    """config.toml's seed edited from 0 to 1 and the run resumed with seed 1: the
    seed-0 units were reused and labelled seed 1's. The manifest holds the file's
    checksum: the edit is refused in one line."""
    d = tmp_path / "r"
    run = RunDir(d, {"seed": 0}, kind="frustration")
    run.write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    del run
    cfg = d / "config.toml"
    cfg.write_text(cfg.read_text().replace("seed = 0", "seed = 1"))
    with pytest.raises(DeepglassError, match=r"its config.toml was changed since deepglass "
                                             r"wrote it, so it may not describe the results"):
        RunDir(d, {"seed": 1}, kind="frustration")
    cfg.write_text(cfg.read_text().replace("seed = 1", "seed = 0"))        # restored
    assert RunDir(d, {"seed": 0}, kind="frustration").finished_units("t") == {"u0"}


def test_a_kill_while_config_is_rewritten_is_no_hand_edit(tmp_path, monkeypatch):
    """A second kind added to a run directory, killed between config.toml's new record
    and its rename: the file is deepglass's previous one (the record says what it
    replaces), not a hand edit; both kinds open again."""
    d = tmp_path / "r"
    RunDir(d, {"seed": 0}, kind="frustration").write_unit("t", "u0", pd.DataFrame({"x": [1]}))
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name == "config.toml":
            raise SystemExit("killed")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", lambda *a, **k: None)
    with pytest.raises(SystemExit):
        RunDir(d, {"n": 1}, kind="active")
    monkeypatch.undo()
    assert RunDir(d, {"seed": 0}, kind="frustration").finished_units("t") == {"u0"}
    RunDir(d, {"n": 1}, kind="active")
    assert "active" in (d / "config.toml").read_text()


def test_a_users_manifest_jsonl_is_not_taken_for_a_run(tmp_path):
    """A folder holding only the user's own manifest.jsonl (a data set's JSON lines)
    was taken for a run killed at its first file, and the file overwritten."""
    d = tmp_path / "data"
    d.mkdir()
    mine = '{"audio_filepath": "a.wav", "duration": 1.5}\n' * 3
    (d / "manifest.jsonl").write_text(mine)
    with pytest.raises(DeepglassError, match="is not empty and is not a deepglass run"):
        RunDir(d, {"seed": 0}, kind="frustration")
    with pytest.raises(DeepglassError, match="holds a manifest.jsonl that deepglass did not write"):
        RunDir(d, {"seed": 0}, kind="frustration", force=True)
    assert (d / "manifest.jsonl").read_text() == mine and sorted(os.listdir(d)) == ["manifest.jsonl"]

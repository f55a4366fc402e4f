"""Run directories: atomic units, resume, several kinds in one directory, refusals."""

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
    with pytest.raises(DeepglassError, match="'frustration' configuration differs \\(seed\\)"):
        RunDir(tmp_path / "r", {"seed": 1}, kind="frustration")
    forced = RunDir(tmp_path / "r", {"seed": 1}, kind="frustration", force=True)
    assert forced.read_units("t").empty                    # its old units are gone
    assert RunDir(tmp_path / "r", {"n": 1}, kind="active").read_units("t")["x"].tolist() == [2]


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

"""Fault injection: a run killed with SIGKILL at unit boundaries or in the middle
of a write resumes to the uninterrupted run's tables; damaged units on disk are
recomputed to the same numbers; bad command lines are one-line errors.

The killed runs are subprocesses of ``deepglass frustration`` on the tiny
``digits_cnn`` with a few replicas and null draws; the kill comes from inside,
at the k-th write of a unit file (its arrays or its rows) through
:class:`deepglass.store.RunDir`, at one of three moments: before the write (a unit boundary, or between a
unit's arrays and its rows), with the temporary file half written, and after
the manifest records the file but before the rename.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepglass.store import RunDir

SRC = str(Path(__file__).resolve().parents[1] / "src")
TIMING = ["seconds", "build_seconds"]
#: 2 real units of 2 replicas + 3 N1 draws: 5 units, 10 unit files (arrays + rows)
ARGV = ["frustration", "digits_cnn", "--nulls", "N1", "--replicas", "4",
        "--replicas-per-unit", "2", "--null-instances", "3", "--starts-per-null", "1", "--json"]

KILLER = textwrap.dedent("""
    import os, signal, sys
    import deepglass.store as store

    mode, k, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    seen = [0]
    commit, replace = store.RunDir._commit, os.replace

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def killing_commit(self, path, write, adopt=False, **meta):
        if "/runs/" not in str(path):
            return commit(self, path, write, adopt, **meta)
        seen[0] += 1
        if seen[0] != k:
            return commit(self, path, write, adopt, **meta)
        if mode == "before":
            die()
        if mode == "mid":
            def half(tmp):
                write(tmp)
                data = open(tmp, "rb").read()
                open(tmp, "wb").write(data[: len(data) // 2])
                die()
            return commit(self, path, half, adopt, **meta)
        def killing_replace(src, dst):  # mode "rename"
            if str(dst) == str(path):
                die()
            return replace(src, dst)
        store.os.replace = killing_replace
        return commit(self, path, write, adopt, **meta)

    store.RunDir._commit = killing_commit
    from deepglass.cli.app import main
    main(argv)
""")


def _tables(out):
    runs = pd.read_parquet(Path(out) / "frustration_runs.parquet").drop(columns=TIMING)
    stats = pd.read_parquet(Path(out) / "frustration_stats.parquet")
    gauge = dict(np.load(Path(out) / "arrays" / "gauge_real.npz"))
    return runs, stats, gauge


def _assert_same(a, b):
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    for k in ("sigma", "sigma_in", "sigma_out", "energy"):
        np.testing.assert_array_equal(a[2][k], b[2][k])


def _assert_clean(out):
    """No temporary left, every file the manifest lists matches its record."""
    assert not list(Path(out).rglob("*.tmp"))
    run = RunDir.__new__(RunDir)  # read-only view: no config needed
    run.path, run._verified = Path(out), set()
    from deepglass.manifest import Manifest

    run._manifest = Manifest(Path(out))
    run._manifest.load()
    assert run.owned_files() and all(run._damage(r) is None for r in run.owned_files())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs, one per seed (in-process)."""
    from deepglass.cli.app import main

    cache = {}

    def get(seed):
        if seed not in cache:
            out = tmp_path_factory.mktemp("ref") / "run"
            try:
                main(ARGV + ["--seed", str(seed), "--out", str(out)])
            except SystemExit as exc:
                assert exc.code in (0, None)
            cache[seed] = _tables(out)
        return cache[seed]

    return get


@pytest.mark.parametrize("mode,k,seed", [("before", 3, 0), ("mid", 6, 1), ("rename", 8, 2)])
def test_sigkill_then_resume_equals_uninterrupted(cli, tmp_path, reference, mode, k, seed):
    out = str(tmp_path / "run")
    argv = ARGV + ["--seed", str(seed), "--out", out]
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", KILLER, mode, str(k), *argv], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]             # killed, not finished
    assert not (Path(out) / "frustration_runs.parquet").exists()
    code, text, err = cli(argv)
    assert code == 0, err
    resumed = json.loads(text)["resumed_units"]
    # units whose two files were both renamed before the kill are kept
    finished_before = (k - 1) // 2
    assert resumed == finished_before
    _assert_same(_tables(out), reference(seed))
    _assert_clean(out)


@pytest.mark.parametrize("target,how", [("rows", "truncate"), ("rows", "empty"),
                                        ("arrays", "truncate"), ("arrays", "delete"),
                                        ("summary", "garbage")])
def test_damaged_run_files_recover(cli, tmp_path, reference, caplog, target, how):
    out = tmp_path / "run"
    argv = ARGV + ["--seed", "0", "--out", str(out)]
    assert cli(argv)[0] == 0
    units = out / "units" / "frustration" / "runs"
    path = {"rows": units / "N1-00001-00000.parquet",
            "arrays": out / "arrays" / "frustration" / "runs" / "real-00000-00002.npz",
            "summary": out / "summary.json"}[target]
    data = path.read_bytes()
    if how == "delete":   # a deleted unit gauge: reported and recomputed (it crashed)
        path.unlink()
    else:
        path.write_bytes({"truncate": data[: len(data) // 2], "empty": b"",
                          "garbage": b"{\x00 not json"}[how])
    with caplog.at_level("WARNING", logger="deepglass"):
        code, text, err = cli(argv)
    assert code == 0, err
    expect = 5 if target == "summary" else 4
    assert json.loads(text)["resumed_units"] == expect
    if target != "summary":
        assert sum("damaged unit" in r.getMessage() for r in caplog.records) == 1
    _assert_same(_tables(out), reference(0))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["delta"] == reference(0)[2]["energy"]
    _assert_clean(out)


def test_negative_batchnorm_variance_is_refused_in_one_line(cli, tmp_path):
    """A batch norm whose running_var is negative makes sqrt(var + eps) NaN: the
    capture refuses it naming the layer (it gave NaN frustration, exit 0, and
    with --out a pandas traceback after every unit ran)."""
    import torch
    import torch.nn as nn

    from deepglass.errors import DeepglassError
    from deepglass.graph import SignedGraph

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(64, 3)).eval()
    with torch.no_grad():
        net[1].running_var[1] = -1.0
    for bn in ("fold", "ignore"):
        with pytest.raises(DeepglassError, match=r"batch norm '1': 1.running_var has 1 "
                                                 "negative entry"):
            SignedGraph.from_module(net, (1, 4, 4), batchnorm=bn)
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        def Net():
            return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64, 3))
    """))
    torch.save(net.state_dict(), tmp_path / "w.pth")
    out = tmp_path / "run"
    for extra in (["--json"], ["--method", "greedy"],
                  ["--nulls", "N1", "--null-instances", "2", "--out", str(out)]):
        code, text, err = cli(["frustration", str(tmp_path / "w.pth"), "--arch",
                               f"{tmp_path / 'net.py'}:Net", "--input-shape", "1,4,4",
                               "--replicas", "2", *extra])
        assert code == 2 and "1.running_var" in err and len(err.strip().splitlines()) == 1, err
        assert text == ""
    assert not (out / "units").exists()

"""The one experiment runner: units, resume, interruption, executors."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from deepglass.errors import DeepglassError
from deepglass.runner import Experiment, Unit, UnitOutput, run_experiment
from deepglass.store import RunDir


def _power(shared, payload):
    k, fail_at = payload
    if k == fail_at:
        raise RuntimeError(f"unit {k} interrupted")
    rows = pd.DataFrame({"k": [k], "y": [k ** shared["p"]]})
    extra = pd.DataFrame({"k": [k] * k})      # a second table: k rows per unit
    return UnitOutput({"rows": rows, "extra": extra},
                      arrays={"v": np.arange(k, dtype=np.int64)}, info={"work": float(k)})


@dataclass
class Powers(Experiment):
    n: int = 5
    p: int = 2
    fail_at: int = -1
    kind = "powers"
    tables = ("rows", "extra")
    compute = staticmethod(_power)

    def config(self):
        return {"n": self.n, "p": self.p}

    def units(self):
        return [Unit(f"k{k:02d}", (k, self.fail_at), weight=k + 1) for k in range(self.n)]

    def shared(self):
        return {"p": self.p}

    def finish(self, stored, run):
        out = stored.table("rows")
        if run is not None:
            run.write_table("powers", out)
        return out, stored.table("extra"), stored


def test_in_memory_tables_arrays_and_progress():
    calls = []
    rows, extra, stored = run_experiment(Powers(), progress=lambda d, t: calls.append((d, t)))
    assert rows["y"].tolist() == [k * k for k in range(5)]
    assert len(extra) == 0 + 1 + 2 + 3 + 4
    assert calls[0] == (0, 15) and calls[-1] == (15, 15)
    np.testing.assert_array_equal(stored.arrays("k03")["v"], [0, 1, 2])
    assert stored.info["work"] == 10 and stored.info["computed"] == 5


def test_interrupted_run_resumes_with_only_the_missing_units(tmp_path):
    with pytest.raises(RuntimeError, match="unit 3 interrupted"):
        run_experiment(Powers(fail_at=3), run=tmp_path / "r")
    rd = RunDir(tmp_path / "r", Powers().config(), kind="powers")
    assert rd.finished_units("rows") == {"k00", "k01", "k02"}
    rows, extra, stored = run_experiment(Powers(), run=tmp_path / "r")
    assert (stored.computed, stored.resumed) == (2, 3)
    assert rows["y"].tolist() == [0, 1, 4, 9, 16] and len(extra) == 10
    np.testing.assert_array_equal(stored.arrays("k02")["v"], [0, 1])   # read back from disk
    assert pd.read_parquet(tmp_path / "r" / "powers.parquet")["k"].tolist() == list(range(5))
    # a third call computes nothing
    _, _, again = run_experiment(Powers(), run=tmp_path / "r")
    assert again.computed == 0


def test_another_configuration_is_refused_unless_forced(tmp_path):
    run_experiment(Powers(), run=tmp_path / "r")
    with pytest.raises(DeepglassError, match="configuration"):
        run_experiment(Powers(p=3), run=tmp_path / "r")
    rows, _, stored = run_experiment(Powers(p=3), run=tmp_path / "r", force=True)
    assert stored.computed == 5 and rows["y"].tolist() == [k ** 3 for k in range(5)]


def test_unit_ids_must_be_distinct_file_names():
    class Bad(Powers):
        def units(self):
            return [Unit("a/b", (0, -1))]

    with pytest.raises(DeepglassError, match="plain file name"):
        run_experiment(Bad())

    class Twice(Powers):
        def units(self):
            return [Unit("a", (0, -1)), Unit("a", (1, -1))]

    with pytest.raises(DeepglassError, match="twice"):
        run_experiment(Twice())


@pytest.mark.parametrize("kind", ["../../escape", "with space/and slash", "", ".hidden", 3])
def test_a_kind_that_is_no_plain_file_name_is_refused_before_any_unit(kind, tmp_path):
    """'../../escape' was refused only after its first unit, as a symbolic link;
    '' and 'a/b' were taken."""
    class Escape(Powers):
        def units(self):
            raise AssertionError("no unit is made")

    Escape.kind = kind
    msg = (r"^kind must be a plain file name \(not empty, without '/' or '\\', not starting "
           rf"with '\.'\), got {re.escape(repr(kind))}$")
    for run in (None, tmp_path / "r"):
        with pytest.raises(DeepglassError, match=msg):
            run_experiment(Escape(), run=run)
    assert not (tmp_path / "r").exists()


def test_run_experiment_and_open_run_name_a_bad_argument(tmp_path):
    from deepglass.runner import open_run

    # an AttributeError on 3.units, a TypeError inside tomli_w on the kind 3
    with pytest.raises(DeepglassError, match="^exp must be of type Experiment, got int$"):
        run_experiment(3)
    with pytest.raises(DeepglassError, match="^kind must be a plain file name .*, got 3$"):
        open_run(tmp_path / "r", {}, 3)


def test_ray_gives_the_same_tables(ray_executor, tmp_path):
    import sys

    from ray import cloudpickle

    # the workers cannot import this test file: ship its functions by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    local = run_experiment(Powers(n=6))
    remote = run_experiment(Powers(n=6), run=tmp_path / "ray", executor=ray_executor)
    pd.testing.assert_frame_equal(local[0], remote[0])
    pd.testing.assert_frame_equal(local[1], remote[1])

"""One runner for every experiment: units, executor, run directory, resume.

An experiment (frustration vs null models, active subnetworks,
near-monotonicity, the RAP phase diagram and annealing, criticality) is four
things, and only the last two are its own science:

1. a **configuration** (a plain dict, recorded in ``config.toml``: a run
   directory opened again with another configuration is refused);
2. a list of **units** with stable ids, each carrying everything that
   determines its result (its seed derives from the run seed and the unit's
   identity, never from call order);
3. a module-level function ``compute(shared, payload) -> UnitOutput`` that
   computes one unit from a read-only shared context;
4. a ``finish(stored, run)`` step that builds the tidy tables, and the
   report, figures and summary, from the stored units only.

:func:`run_experiment` does the rest, the same way for every experiment: it
opens (or resumes) the run directory, skips the finished units, maps
``compute`` over the others through an executor (:mod:`deepglass.executors`:
in this process or on Ray), writes each unit as it finishes (on a background
thread, so the next unit computes meanwhile), reports progress, and finally
calls ``finish``, which rebuilds every derived file.  Since units carry their
seeds, every executor gives the same tables.

Examples
--------
>>> from dataclasses import dataclass
>>> import pandas as pd
>>> def square(shared, k):
...     return UnitOutput({"rows": pd.DataFrame({"k": [k], "y": [k * k + shared]})})
>>> @dataclass
... class Squares(Experiment):
...     n: int = 3
...     kind = "squares"
...     tables = ("rows",)
...     compute = staticmethod(square)
...     def config(self): return {"n": self.n}
...     def units(self): return [Unit(f"k{k}", k) for k in range(self.n)]
...     def shared(self): return 10
...     def finish(self, stored, run): return stored.table("rows")
>>> run_experiment(Squares())["y"].tolist()
[10, 11, 14]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DeepglassError, check_name, check_type
from .store import RunDir, plain

__all__ = ["Unit", "UnitOutput", "Experiment", "Stored", "Stages", "run_experiment", "open_run"]


@dataclass(frozen=True)
class Unit:
    """One independent piece of an experiment.

    Attributes
    ----------
    id : str
        Stable, file-name safe identity (the unit's file is ``<table>/<id>.parquet``).
    payload : object
        Picklable description handed to ``compute`` (its seed included).
    weight : int
        Progress steps the unit counts for (e.g. the inputs it holds).
    """

    id: str
    payload: Any = None
    weight: int = 1


@dataclass
class UnitOutput:
    """What ``compute`` returns for one unit.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Rows for each of the experiment's unit tables (a table may be left out
        when the unit has no rows for it).
    arrays : dict of str to ndarray, optional
        Arrays stored with the unit (``RUN/arrays/<kind>/<marker table>/<id>.npz``).
    info : dict
        Numbers about the computation (e.g. ``compute_seconds``), summed into
        the run's ``info``; not stored.
    """

    tables: dict[str, pd.DataFrame]
    arrays: dict[str, np.ndarray] | None = None
    info: dict[str, float] = field(default_factory=dict)


class Experiment:
    """The interface :func:`run_experiment` runs (subclass and fill in).

    Class attributes: ``kind`` (the run directory's kind, a plain file name:
    it names the units' folders) and ``tables`` (the
    unit tables; the first is the *marker*: it is written last, so a unit
    counts as finished once its marker file is recorded).  ``compute`` must
    be a module-level function (Ray ships it by reference).
    """

    kind: str = "experiment"
    tables: tuple[str, ...] = ("rows",)
    compute: Callable[[Any, Any], UnitOutput]

    def config(self) -> dict:
        """The configuration recorded in ``config.toml`` (plain values)."""
        raise NotImplementedError

    def units(self) -> Sequence[Unit]:
        """Every unit of the run, in the order the tables are assembled."""
        raise NotImplementedError

    def shared(self) -> Any:
        """The read-only context every unit receives (shipped once to Ray)."""
        return None

    def keep_arrays(self, unit: Unit) -> bool:
        """Whether a finished unit's arrays stay in memory (they are always
        stored in a run directory; without one, a kept array is the only copy)."""
        return True

    def finish(self, stored: "Stored", run: RunDir | None) -> Any:
        """Build the result (and, with ``run``, its tables, figures, report and
        summary) from the stored units only."""
        raise NotImplementedError


class Stored:
    """The finished units of a run, whether in memory or on disk.

    Attributes
    ----------
    units : list of Unit
    computed, resumed : int
        Units computed in this call and read back from the run directory.
    info : dict
        Sums of the units' ``info`` and the runner's timings
        (``setup_seconds``, ``loop_seconds``, ``store_seconds``).
    """

    def __init__(self, exp: Experiment, units: Sequence[Unit], run: RunDir | None):
        self.experiment = exp
        self.units = list(units)
        self.run = run
        self.computed = 0
        self.resumed = 0
        self.info: dict[str, float] = {}
        self._tables: dict[str, dict[str, pd.DataFrame]] = {t: {} for t in exp.tables}
        self._arrays: dict[str, dict] = {}

    def _keep(self, unit: Unit, out: UnitOutput) -> None:
        for name, df in out.tables.items():
            self._tables[name][unit.id] = df
        if out.arrays is not None and (self.run is None or self.experiment.keep_arrays(unit)):
            self._arrays[unit.id] = out.arrays
        for k, v in out.info.items():
            self.info[k] = self.info.get(k, 0.0) + float(v)

    def table(self, name: str) -> pd.DataFrame:
        """One unit table, the units' rows concatenated in unit order."""
        if name not in self._tables:
            raise KeyError(f"{name!r} is not a unit table of {self.experiment.kind!r}")
        mem = self._tables[name]
        marker = self.experiment.tables[0]
        frames = []
        for u in self.units:
            df = mem.get(u.id)
            if df is None and self.run is not None:
                df = self.run.unit_rows(name, u.id)
            if df is not None:
                frames.append(df)
            elif name == marker:  # a finished unit always has its marker
                raise DeepglassError(f"unit {u.id} of {self.experiment.kind!r} is missing")
        frames = [f for f in frames if len(f.columns)]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    @property
    def seconds(self) -> float:
        """The runner's time up to ``finish``: setup and the unit loop."""
        return self.info["setup_seconds"] + self.info["loop_seconds"]

    def arrays(self, unit_id: str) -> dict[str, np.ndarray] | None:
        """A unit's arrays (from memory, else from the run directory), or None."""
        if unit_id in self._arrays:
            return self._arrays[unit_id]
        if self.run is not None:
            name = f"{self.run.kind}/{self.experiment.tables[0]}/{unit_id}"
            if self.run.has_arrays(name):
                return self.run.load_arrays(name)
        return None


class _Writer:
    """Writes finished units on one background thread, so the next unit
    computes while the last is stored.  :meth:`close` waits for every unit
    handed over; a failed write is raised at the next call."""

    def __init__(self, run: RunDir | None, tables: Sequence[str]):
        from concurrent.futures import ThreadPoolExecutor

        self.run, self.tables, self.seconds = run, tuple(tables), 0.0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="deepglass-store") if run else None
        self._pending: list = []

    def _write(self, uid: str, out: UnitOutput) -> None:
        t0 = time.perf_counter()
        marker, rest = self.tables[0], self.tables[1:]
        for name in rest:  # the marker last: it says the unit is complete
            if name in out.tables:
                self.run.write_unit(name, uid, out.tables[name])
        self.run.write_unit(marker, uid, out.tables[marker], arrays=out.arrays)
        self.seconds += time.perf_counter() - t0

    def _check(self) -> None:
        for f in [f for f in self._pending if f.done()]:
            self._pending.remove(f)
            f.result()

    def write(self, uid: str, out: UnitOutput) -> None:
        if self._pool is not None:
            self._check()
            self._pending.append(self._pool.submit(self._write, uid, out))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._check()


def open_run(run, config: Mapping, kind: str, force: bool = False) -> RunDir | None:
    """The run directory of ``run`` (None, a path, or a :class:`RunDir` opened
    with this kind and configuration)."""
    if run is None:
        return None
    if isinstance(run, RunDir):
        if run.kind != kind:
            raise DeepglassError(f"run directory {run.path} was opened as kind {run.kind!r}, "
                                 f"not {kind!r}")
        if run.config != plain(dict(config)):
            raise DeepglassError(f"run directory {run.path} was opened with another "
                                 f"{kind} configuration than this call's")
        return run
    return RunDir(Path(run), dict(config), kind=kind, force=force)


def _check_units(units: Sequence[Unit]) -> None:
    seen: set[str] = set()
    for u in units:
        if not isinstance(u.id, str) or not u.id or "/" in u.id or u.id.startswith("."):
            raise DeepglassError(f"unit id {u.id!r} is not a plain file name")
        if u.id in seen:
            raise DeepglassError(f"unit id {u.id!r} appears twice")
        seen.add(u.id)


def run_experiment(exp: Experiment, run=None, executor=None, *, address: str | None = None,
                   device: str | None = None, force: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> Any:
    """Run (or resume) an experiment and return what its ``finish`` returns.

    Parameters
    ----------
    exp : Experiment
    run : str, Path or RunDir, optional
        Run directory.  Finished units are written as they finish and skipped
        when the same experiment runs again; ``finish`` then rebuilds the
        derived files.  Another configuration is refused unless ``force``.
    executor : Executor, {"inprocess", "ray"} or None
        Where the units run (:func:`deepglass.executors.get_executor`).  An
        executor passed in is left open; one made here is closed.
    address : str, optional
        Ray cluster address (implies the Ray executor).
    device : str, optional
        The units' device; with Ray, a CUDA device makes each task ask for a GPU.
    force : bool
        Replace this kind's units in a run directory of another configuration.
    progress : callable, optional
        ``progress(done, total)`` in unit weights over the units computed in
        this call (first called with ``done=0``).

    Returns
    -------
    object
        ``exp.finish(stored, run)``; the :class:`Stored` it read is reachable
        as ``exp.stored_`` (its ``info`` holds counts and timings).

    Notes
    -----
    Memory: the runner holds the computed units' tables (and the arrays the
    experiment keeps); resumed units are read from disk only when ``finish``
    asks for them.
    """
    from .executors import get_executor

    t0 = time.perf_counter()
    check_type(exp, Experiment, "exp")
    check_name(exp.kind, "kind")     # before any unit: it names the run's folders
    units = list(exp.units())
    _check_units(units)
    rd = open_run(run, exp.config(), exp.kind, force)
    stored = Stored(exp, units, rd)
    done = rd.finished_units(exp.tables[0]) if rd is not None else set()
    todo = [u for u in units if u.id not in done]
    stored.resumed = len(units) - len(todo)
    total = sum(int(u.weight) for u in todo)
    ex = get_executor(executor, address, device=device)   # one passed in is itself
    writer = _Writer(rd, exp.tables)
    t_loop = time.perf_counter()
    if progress:
        progress(0, total)
    k = 0
    try:
        if todo:
            by_id = {u.id: u for u in todo}
            shipped = [(u.id, u.payload) for u in todo]
            for (uid, _), out in ex.map(_compute_one, shipped, shared=(exp.compute, exp.shared())):
                unit = by_id[uid]
                if not isinstance(out, UnitOutput) or exp.tables[0] not in out.tables:
                    raise DeepglassError(f"unit {uid} of {exp.kind!r} returned no "
                                         f"{exp.tables[0]!r} rows")
                writer.write(uid, out)
                stored._keep(unit, out)
                stored.computed += 1
                k += int(unit.weight)
                if progress:
                    progress(k, total)
    finally:
        writer.close()  # an interrupted run keeps every unit handed over
        if ex is not executor:
            ex.close()
    stored.info.update(units=len(units), computed=stored.computed, resumed=stored.resumed,
                       setup_seconds=t_loop - t0, loop_seconds=time.perf_counter() - t_loop,
                       store_seconds=writer.seconds)
    exp.stored_ = stored
    return exp.finish(stored, rd)


def _compute_one(shared, item):
    # the executor's function: (compute, context) travel together, once per map
    compute, context = shared
    _, payload = item
    return compute(context, payload)


class Stages:
    """One run directory, executor and progress bar for an experiment in stages.

    Some experiments need one set of units before the next can be planned (a
    mean-field scan needs ``T_c`` from its spectrum unit; a power-law search
    trains each net from its previous checkpoint).  Each stage is an
    :class:`Experiment` run by :func:`run_experiment`; the stages share the run
    directory, the executor and one progress count, and a later stage reads
    what it needs from the earlier stages' stored units, so an interrupted run
    resumes at any stage.

    Parameters
    ----------
    run : None, path or RunDir
        Opened once with ``config`` as ``kind`` (another configuration is
        refused unless ``force``).
    config : dict
        The whole run's configuration (every stage records the same).
    kind : str
    unit_ids : iterable of (table, list of str)
        The marker table and unit ids of every stage, known up front, so the
        progress total counts every unit left to compute.
    executor, address : see :func:`deepglass.runner.run_experiment`
        An executor made here is closed by :meth:`close`.
    force : bool
        Reuse a run directory of another configuration or version
        (:class:`deepglass.store.RunDir`).
    progress : callable, optional
        ``progress(done, total)`` over every stage's units computed in this call.
    device : str, optional
        The units' device; with Ray, a CUDA device makes each task ask for a GPU.

    Use as a context manager; :meth:`run` runs one stage.
    """

    def __init__(self, run, config: Mapping, kind: str, unit_ids: Iterable[tuple[str, list]], *,
                 executor=None, address: str | None = None, force: bool = False,
                 progress: Callable[[int, int], None] | None = None, device=None):
        from .executors import get_executor

        self.rundir = open_run(run, dict(config), kind, force)
        todo = 0
        for table, ids in unit_ids:
            done = self.rundir.finished_units(table) if self.rundir is not None else set()
            todo += sum(1 for u in ids if u not in done)
        self.total, self._offset, self._progress = todo, 0, progress
        # one passed in is itself; with Ray, a CUDA device makes each task ask for a GPU
        self.executor = get_executor(executor, address, device=device)
        self._owned = self.executor is not executor
        self.computed = self.resumed = 0

    def run(self, exp: Experiment) -> Any:
        """Run one stage; returns what its ``finish`` returns."""
        seen = [0]

        def report(done: int, total: int) -> None:
            seen[0] = done
            if self._progress is not None:
                self._progress(self._offset + done, max(self.total, self._offset + total))

        out = run_experiment(exp, run=self.rundir, executor=self.executor, progress=report)
        self._offset += seen[0]
        self.computed += exp.stored_.computed
        self.resumed += exp.stored_.resumed
        return out

    def close(self) -> None:
        if self._owned:
            self.executor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

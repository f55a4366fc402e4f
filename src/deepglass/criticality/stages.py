"""Criticality runs whose units come in stages, on the one experiment runner.

A mean-field scan needs ``T_c`` (the spectrum unit) before its curves can be
placed; a power-law search trains each net from its previous checkpoint.  Both
are run as a short sequence of :class:`deepglass.runner.Experiment` stages
(each through :func:`deepglass.runner.run_experiment`) that share one run
directory, one executor and one progress count.  Within a stage the units are
independent, so Ray runs them in parallel; a later stage reads what it needs
from the earlier stages' *stored* units (in memory or in the run directory),
so an interrupted run resumes at any stage.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from ..runner import Experiment, open_run, run_experiment

__all__ = ["Stages"]


class Stages:
    """One run directory, executor and progress bar for several stages.

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
    progress : callable, optional
        ``progress(done, total)`` over every stage's units computed in this call.

    Use as a context manager; :meth:`run` runs one stage.
    """

    def __init__(self, run, config: Mapping, kind: str, unit_ids: Iterable[tuple[str, list]], *,
                 executor=None, address: str | None = None, force: bool = False,
                 progress: Callable[[int, int], None] | None = None):
        from ..executors import Executor, get_executor

        self.rundir = open_run(run, dict(config), kind, force)
        todo = 0
        for table, ids in unit_ids:
            done = self.rundir.finished_units(table) if self.rundir is not None else set()
            todo += sum(1 for u in ids if u not in done)
        self.total, self._offset, self._progress = todo, 0, progress
        self.executor = executor if isinstance(executor, Executor) else get_executor(executor,
                                                                                     address)
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

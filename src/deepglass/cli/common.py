"""Helpers shared by the command modules: JSON output, progress bars."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True)


def _default(o: Any):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")


@contextmanager
def progress(description: str, total: int | None, enabled: bool = True) -> Iterator:
    """A rich progress bar on stderr showing units done and the ETA.

    Yields a callable ``advance(n=1)``.  Disabled (a no-op) when ``enabled`` is
    false, e.g. with ``--json`` or when stderr is not a terminal under CI.
    """
    if not enabled:
        yield lambda n=1: None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                   transient=False)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)

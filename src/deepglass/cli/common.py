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


def print_kv(title: str, values: dict, floatfmt: str = ".6g") -> None:
    """Print a two-column (key, value) rich table of headline numbers."""
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column("key")
    t.add_column("value", justify="right")
    for k, v in values.items():
        t.add_row(str(k), format(v, floatfmt) if isinstance(v, float) else str(v))
    Console().print(t)


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"3,224,224"`` -> ``(3, 224, 224)``; a one-line error for anything else."""
    from ..errors import DeepglassError

    if text is None:
        return None
    try:
        shape = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError:
        raise DeepglassError(f"--input-shape must look like C,H,W (integers), got {text!r}")
    if not shape or any(s <= 0 for s in shape):
        raise DeepglassError(f"--input-shape must be positive integers, got {text!r}")
    return shape


def load_network(name_or_file: str, input_shape: str | None = None, arch: str | None = None,
                 trust_pickle: bool = False):
    """A model (zoo name or file) and its input shape, for the commands."""
    from ..errors import DeepglassError
    from ..zoo import load_model

    model = load_model(name_or_file, arch=arch, trust_pickle=trust_pickle,
                       input_shape=parse_shape(input_shape))
    shape = parse_shape(input_shape) or getattr(model, "default_input_shape", None)
    if shape is None:
        raise DeepglassError(f"{name_or_file}: the input shape is unknown; pass --input-shape C,H,W")
    return model, tuple(shape)


def load_graph(name_or_file: str, input_shape: str | None = None, batchnorm: str = "fold",
               arch: str | None = None, trust_pickle: bool = False, device: str = "cpu",
               gates: str = "scale", norm: str = "fold", output: str | None = None):
    """Model, input shape and :class:`SignedGraph` for a zoo name, ``timm:NAME`` or
    model file, under the capture rules given (SPEC §1b)."""
    from ..graph import SignedGraph

    model, shape = load_network(name_or_file, input_shape, arch, trust_pickle)
    graph = SignedGraph.from_module(model, shape, batchnorm=batchnorm, device=device,
                                    gates=gates, norm=norm, output=output)
    graph.meta["model"] = name_or_file
    return model, shape, graph

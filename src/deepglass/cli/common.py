"""Helpers shared by the command modules: JSON output, progress bars."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import numpy as np
import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True)

# -- options every experiment command shares (defined once) -----------------

#: ``--executor``: where an experiment's units run (:mod:`deepglass.executors`)
EXECUTOR_OPTION = typer.Option(None, "--executor", help="Where the units run: inprocess "
                               "(default; ray with --address) or ray (same tables either way).")
#: ``--address``: a Ray cluster (implies ``--executor ray``)
ADDRESS_OPTION = typer.Option(None, "--address", help="Ray cluster address HOST:PORT (implies "
                              "--executor ray; default: a private local Ray on loopback).")
#: ``--out``: the run directory
OUT_OPTION = typer.Option(None, "--out", help="Run directory (units written as they finish; "
                          "run the same command again to resume).")
#: the network's options: how a model file is read and how its graph is built
INPUT_SHAPE_OPTION = typer.Option(None, "--input-shape", help="C,H,W per sample (model files; "
                                  "default: the zoo model's own).")
BATCHNORM_OPTION = typer.Option("fold", "--batchnorm", help="fold (sign included) or ignore.")
ARCH_OPTION = typer.Option(None, "--arch", help="Architecture of a state dict or .safetensors "
                           "file: a zoo name, timm:NAME, or MODULE:CLASS for a class of your "
                           "own code ('pkg.models:Net', 'model.py:Net(width=2)'; imports it).")
TRUST_PICKLE_OPTION = typer.Option(False, "--trust-pickle", help="Allow loading a pickled "
                                   "module (runs its code).")
#: ``--engine``: the descent's engine wherever the descent runs
ENGINE_OPTION = typer.Option("auto", "--engine", help="The descent's engine: auto, compiled "
                             "(numba, CPU; one replica per thread) or matrix-free (batched; "
                             "CPU or GPU).")
#: ``--json``
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object (no tables, no "
                           "progress bars).")
#: ``--force``
FORCE_OPTION = typer.Option(False, "--force", help="Replace this experiment's units in a run "
                            "directory of another configuration (only files deepglass wrote).")


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
    Without a ``total`` the bar appears at the first ``advance``, so that an
    error raised before any step is the only line on stderr.
    """
    if not enabled:
        yield lambda n=1: None
        return
    if total is None:
        # no total (e.g. solver sweeps): start at the first step, so that an error
        # raised before any work is the only line on stderr
        with ExitStack() as stack:
            state: dict = {}

            def advance(n=1):
                if "advance" not in state:
                    state["advance"] = stack.enter_context(_bar(description, None))
                state["advance"](n)

            yield advance
        return
    with _bar(description, total) as advance:
        yield advance


@contextmanager
def _bar(description: str, total: int | None) -> Iterator:
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
    """``"3,224,224"`` (or ``3x224x224``) -> ``(3, 224, 224)``; every item must be
    a positive integer (``"1,x,8,8"`` or ``"3,,2"`` are errors, not 1x8x8)."""
    import re

    from ..errors import DeepglassError

    if text is None:
        return None
    items = re.split(r"[,x]", text.strip())
    if not all(re.fullmatch(r"\s*\d+\s*", t) for t in items):
        raise DeepglassError(f"--input-shape must look like C,H,W (positive integers), got {text!r}")
    shape = tuple(int(t) for t in items)
    if any(s <= 0 for s in shape):
        raise DeepglassError(f"--input-shape must be positive integers, got {text!r}")
    return shape


def check_input_shape(model, shape: tuple[int, ...], name: str,
                      max_memory_gb: float | None = None,
                      default: tuple[int, ...] | None = None) -> None:
    """Refuse, in one line, an input shape the model cannot take: a number of
    dimensions other than its known default's, a sample that does not fit in
    memory (:func:`deepglass.memory.check_fits`), or one its forward pass
    rejects (one sample, no gradient: O(one forward) time)."""
    import torch

    from ..errors import DeepglassError, first_line
    from ..memory import check_fits

    if default is not None and len(default) != len(shape):
        raise DeepglassError(
            f"--input-shape {','.join(map(str, shape))} has {len(shape)} dimension(s); "
            f"{name} takes {len(default)} (like {','.join(map(str, default))})")
    n = 1
    for s in shape:
        n *= int(s)
    check_fits(n * 4 * 4, f"one input sample of shape {'x'.join(map(str, shape))} and its "
               "first activations", "lower --input-shape", max_memory_gb)
    param = next(iter(model.parameters()), None)
    x = torch.zeros((1, *shape), dtype=param.dtype if param is not None and
                    param.is_floating_point() else torch.float32,
                    device=param.device if param is not None else "cpu")
    try:
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise DeepglassError(f"{name} cannot take inputs of shape "
                             f"{','.join(map(str, shape))} ({first_line(exc, limit=200)}); "
                             "check --input-shape") from None


def load_network(name_or_file: str, input_shape: str | None = None, arch: str | None = None,
                 trust_pickle: bool = False, max_memory_gb: float | None = None):
    """A model (zoo name or file) and its input shape, for the commands; an
    ``--input-shape`` the model cannot take is a one-line error here."""
    from ..errors import DeepglassError
    from ..zoo import load_model, registry

    user_shape = parse_shape(input_shape)
    ref = arch or name_or_file
    default = registry.entry(ref).input_shape if ref in registry.ENTRIES else None
    model = load_model(name_or_file, arch=arch, trust_pickle=trust_pickle,
                       input_shape=user_shape)
    shape = user_shape or getattr(model, "default_input_shape", None)
    if shape is None:
        raise DeepglassError(f"{name_or_file}: the input shape is unknown; pass --input-shape C,H,W")
    if user_shape is not None:
        check_input_shape(model, tuple(user_shape), name_or_file, max_memory_gb,
                          default=default)
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


@contextmanager
def resume_hint(out: str | None):
    """On Ctrl-C, say that the finished units are kept (typer exits 130 silently)."""
    try:
        yield
    except KeyboardInterrupt:
        if out:
            console.print(f"interrupted: the finished units are saved in {out}; "
                          "run the same command to resume", soft_wrap=True)
        raise


def unit_progress(stack: ExitStack, description: str, enabled: bool = True):
    """A ``progress(done, total)`` callback that opens a progress bar (units
    done, ETA) on its first call, when the total is known; ``stack`` closes it.
    Nothing to compute (a finished run resumed): no bar."""
    state: dict = {}

    def update(done: int, total: int) -> None:
        if total <= 0:
            return
        if "advance" not in state:
            state["advance"] = stack.enter_context(progress(description, total, enabled))
            state["done"] = 0
        if done > state["done"]:
            state["advance"](done - state["done"])
            state["done"] = done

    return update

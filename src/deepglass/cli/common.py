"""Helpers shared by the command modules: JSON output, progress bars."""

from __future__ import annotations

import json
import math
import os
import sys
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import numpy as np
import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
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
INPUT_SHAPE_OPTION = typer.Option(None, "--input-shape", help="Shape of one sample, C,H,W "
                                  "(model files; default: the model's own). A network of "
                                  "several inputs: one shape per input, in order, repeating "
                                  "the option (--input-shape 3,32,32 --input-shape 10) or "
                                  "separated by ';' ('3,32,32;10').")
BATCHNORM_OPTION = typer.Option("fold", "--batchnorm", help="fold (sign included) or ignore.")
NORM_OPTION = typer.Option("fold", "--norm", help="Per-sample norms (Layer/Group/Instance): "
                           "fold their gain (sign included) or ignore it.")
GATES_OPTION = typer.Option("scale", "--gates", help="Non-negative gates (squeeze-excitation): "
                            "scale (a positive rescaling; the gate branch is left out) or error.")
ARCH_OPTION = typer.Option(None, "--arch", help="Architecture of a state dict or .safetensors "
                           "file: a zoo name, timm:NAME, or MODULE:CLASS for a class of your "
                           "own code ('pkg.models:Net', 'model.py:Net(width=2)'; imports it).")
TRUST_PICKLE_OPTION = typer.Option(False, "--trust-pickle", help="Allow loading a pickled "
                                   "module (runs its code).")
#: ``--engine``: the descent's engine wherever the descent runs
ENGINE_OPTION = typer.Option("auto", "--engine", help="The descent's engine: auto, compiled "
                             "(numba, CPU; one replica per thread) or matrix-free (batched; "
                             "CPU or GPU).")
#: ``--device``: where the graph is built and the solvers run
DEVICE_OPTION = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N: where the graph "
                             "is held and the solvers run.")
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


def _finite(o: Any) -> Any:
    """``o`` with every non-finite float as None (strict JSON has no NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout (strict JSON: NaN and infinities as null)."""
    sys.stdout.write(json.dumps(_finite(json.loads(json.dumps(obj, default=_default))),
                                allow_nan=False) + "\n")


@contextmanager
def progress(description: str, total: int | None, enabled: bool = True) -> Iterator:
    """A rich progress bar on stderr showing units done and the ETA.

    Yields a callable ``advance(n=1)``.  Disabled (a no-op) when ``enabled`` is
    false, e.g. with ``--json`` or when stderr is not a terminal under CI.
    Without a ``total`` (a solver's sweeps, whose number the dynamics set)
    the callable is ``update(sweep)``: a spinner with the sweep reached and
    the time elapsed, shown from the first update, so that an error raised
    before any step is the only line on stderr.
    """
    if not enabled:
        yield lambda n=1: None
        return
    if total is None:
        with ExitStack() as stack:
            state: dict = {}

            def update(sweep):
                if "bar" not in state:
                    state["bar"] = bar = stack.enter_context(Progress(
                        SpinnerColumn(), TextColumn("{task.description}"),
                        TextColumn("sweep {task.completed:.0f}"), TimeElapsedColumn(),
                        console=console, transient=False))
                    state["task"] = bar.add_task(description, total=None)
                state["bar"].update(state["task"], completed=sweep)

            yield update
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


def reused_note(resumed: int) -> str:
    """`` (N finished units reused)`` after ``wrote OUT`` where a run resumed, else ""
    (every command says it so)."""
    return f" ({resumed} finished unit{'' if resumed == 1 else 's'} reused)" if resumed else ""


def out_record(out, resumed: int) -> dict:
    """The ``--json`` keys of a run directory: where it is and the units reused
    (none without ``--out``)."""
    return {} if out is None else {"out": str(out), "resumed_units": int(resumed)}


def print_kv(title: str, values: dict, floatfmt: str = ".6g") -> None:
    """Print a two-column (key, value) rich table of headline numbers."""
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column("key")
    t.add_column("value", justify="right")
    for k, v in values.items():
        t.add_row(str(k), format(v, floatfmt) if isinstance(v, float) else str(v))
    Console().print(t)


#: how --input-shape is written, for error messages
SHAPE_SYNTAX = ("C,H,W, positive integers; several inputs: --input-shape 3,32,32 "
                "--input-shape 10, or '3,32,32;10'; one number per sample: ()")


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"3,224,224"`` (or ``3x224x224``) -> ``(3, 224, 224)``; every item must be
    a positive integer (``"1,x,8,8"`` or ``"3,,2"`` are errors, not 1x8x8)."""
    import re

    from ..errors import DeepglassError

    if text is None:
        return None
    if text.strip() == "()":    # one number per sample (a timestep: shape (B,))
        return ()
    items = re.split(r"[,x]", text.strip())
    if not all(re.fullmatch(r"\s*\d+\s*", t) for t in items):
        raise DeepglassError(f"--input-shape must look like {SHAPE_SYNTAX}; got {text!r}")
    shape = tuple(int(t) for t in items)
    if any(s <= 0 for s in shape):
        raise DeepglassError(f"--input-shape must be positive integers, got {text!r}")
    return shape


def parse_shapes(values: "str | list[str] | tuple[str, ...] | None") -> list[tuple[int, ...]] | None:
    """The shapes of ``--input-shape``, one per input, in order: the option
    repeated (``["3,32,32", "10"]``) and/or ``;``-separated (``"3,32,32;10"``);
    ``None`` when not given.

    >>> parse_shapes(["3,32,32", "10"]) == parse_shapes(["3,32,32;10"]) == [(3, 32, 32), (10,)]
    True
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    if not values:
        return None
    return [parse_shape(t) for v in values for t in v.split(";")]


def shape_text(shape) -> str:
    """``3x32x32`` for one input's shape, ``3x32x32, 10`` for several inputs'."""
    if shape and isinstance(shape[0], (tuple, list)):
        return ", ".join("x".join(map(str, s)) or "()" for s in shape)
    return "x".join(map(str, shape)) or "()"


def shape_record(values) -> str | None:
    """``--input-shape`` as a run directory's configuration records it: the text
    given, several inputs' shapes joined by ``;`` (one shape: as before)."""
    if values is None or isinstance(values, str):
        return values
    return ";".join(values) if values else None


def n_inputs(shape) -> int:
    """How many inputs a shape (one input's, or a tuple of several) describes."""
    return len(shape) if shape and isinstance(shape[0], (tuple, list)) else 1


def single_input(shape, name: str, what: str) -> None:
    """Refuse, in one line, a network of several inputs where ``what`` feeds it
    one tensor per sample (``--inputs``, ``--data``)."""
    from ..errors import DeepglassError

    if n_inputs(shape) > 1:
        raise DeepglassError(f"{what} feeds the network one tensor per sample; {name} takes {n_inputs(shape)} "
                             f"inputs ({shape_text(shape)})")


def check_input_shape(model, shape, name: str,
                      max_memory_gb: float | None = None,
                      default: tuple[int, ...] | None = None) -> None:
    """Refuse, in one line, input shapes the model cannot take: a number of
    dimensions other than its known default's, a sample that does not fit in
    memory (:func:`deepglass.memory.check_fits`), or one its forward pass
    rejects (one sample, no gradient: O(one forward) time).  ``shape`` is one
    input's shape, or a list of several inputs' (the forward pass takes one
    tensor each, in order)."""
    import torch

    from ..errors import DeepglassError, first_line

    shapes = [tuple(s) for s in shape] if n_inputs(shape) > 1 else [tuple(shape)]
    text = ";".join(",".join(map(str, s)) for s in shapes)
    if default is not None:
        if len(shapes) != 1:
            raise DeepglassError(f"--input-shape gives {len(shapes)} shapes ({text}); {name} "
                                 f"takes one input (like {','.join(map(str, default))})")
        if len(default) != len(shapes[0]):
            raise DeepglassError(
                f"--input-shape {text} has {len(shapes[0])} dimension(s); "
                f"{name} takes {len(default)} (like {','.join(map(str, default))})")
    check_sample_memory(shapes, max_memory_gb)
    param = next(iter(model.parameters()), None)
    xs = [torch.zeros((1, *sh), dtype=param.dtype if param is not None and
                      param.is_floating_point() else torch.float32,
                      device=param.device if param is not None else "cpu") for sh in shapes]
    try:
        with torch.no_grad():
            model(*xs)
    except Exception as exc:   # noqa: BLE001 -- a forward's own checks raise any kind (assert)
        several = " (one shape per input, in order)" if len(shapes) > 1 else ""
        raise DeepglassError(f"{name} cannot take inputs of shape {text} "
                             f"({first_line(exc, limit=200)}); check --input-shape{several}"
                             ) from None


def check_sample_memory(shapes: list[tuple[int, ...]], max_memory_gb: float | None = None):
    """Refuse, in one line, a sample of ``shapes`` (one per input) whose values
    and first activations would not fit in memory (4 float32 copies), before
    any tensor of it is made."""
    from ..memory import check_fits

    n = sum(math.prod(int(s) for s in sh) for sh in shapes)
    text = ";".join(",".join(map(str, s)) for s in shapes)
    check_fits(n * 4 * 4, f"one input sample of shape {text} and its first activations",
               "lower --input-shape", max_memory_gb)


def _load_model(name_or_file: str, arch: str | None, trust_pickle: bool,
                shapes: list[tuple[int, ...]] | None):
    """:func:`deepglass.zoo.load_model` with the ``--input-shape`` shapes (one
    per input)."""
    from ..errors import DeepglassError
    from ..zoo import load_model

    try:
        return load_model(name_or_file, arch=arch, trust_pickle=trust_pickle,
                          input_shape=None if not shapes else
                          shapes[0] if len(shapes) == 1 else [tuple(s) for s in shapes])
    except DeepglassError as exc:
        msg = str(exc)
        if "give one shape per input" in msg:
            raise DeepglassError(f"{msg} (repeat --input-shape, e.g. --input-shape 3,32,32 "
                                 "--input-shape 10, or write '3,32,32;10')") from None
        if "No module named" in msg and trust_pickle:
            raise DeepglassError(f"{msg} (the pickle names a module of your code: run "
                                 "deepglass from the folder that holds it, or put that folder "
                                 "on PYTHONPATH)") from None
        raise


def load_network(name_or_file: str, input_shape=None, arch: str | None = None,
                 trust_pickle: bool = False, max_memory_gb: float | None = None):
    """A model (zoo name or file) and its input shape, for the commands; an
    ``--input-shape`` the model cannot take is a one-line error here.

    ``input_shape`` is ``--input-shape`` as given (a list of texts, or one
    text, :func:`parse_shapes`).  The shape returned is one input's tuple, or
    for a network of several inputs a tuple of their shapes (as
    :meth:`deepglass.graph.SignedGraph.from_module` takes them)."""
    from ..errors import DeepglassError
    from ..zoo import registry

    shapes = parse_shapes(input_shape)
    ref = arch or name_or_file
    default = registry.entry(ref).input_shape if ref in registry.ENTRIES else None
    if shapes is not None and len(shapes) > 1 and default is not None:
        check_input_shape(None, shapes, ref, default=default)   # refuses: one input
    if shapes is not None:     # before a file's conversion runs a sample of it
        check_sample_memory([tuple(s) for s in shapes], max_memory_gb)
    model = _load_model(name_or_file, arch, trust_pickle, shapes)
    user_shape = None if shapes is None else shapes[0] if len(shapes) == 1 else tuple(shapes)
    shape = user_shape or getattr(model, "default_input_shape", None)
    if shape is None:
        raise DeepglassError(f"{name_or_file}: the input shape is unknown; pass --input-shape C,H,W "
                             "(one per input)")
    if user_shape is not None:
        check_input_shape(model, user_shape, name_or_file, max_memory_gb, default=default)
    if n_inputs(shape) > 1:
        return model, tuple(tuple(int(d) for d in s) for s in shape)
    return model, tuple(shape)


def check_rules(batchnorm: str = "fold", norm: str = "fold", gates: str = "scale") -> None:
    """Refuse, in one line and before a model is loaded, a capture rule (SPEC
    §1b) that does not exist, naming its option."""
    from ..errors import DeepglassError
    from ..graph.trace import RULES

    for key, value in (("batchnorm", batchnorm), ("norm", norm), ("gates", gates)):
        if value not in RULES[key]:
            raise DeepglassError(f"--{key} must be one of {', '.join(RULES[key])}, "
                                 f"not {value!r}")


def load_graph(name_or_file: str, input_shape=None, batchnorm: str = "fold",
               arch: str | None = None, trust_pickle: bool = False, device: str = "cpu",
               gates: str = "scale", norm: str = "fold", output: str | None = None):
    """Model, input shape and :class:`SignedGraph` for a zoo name, ``timm:NAME`` or
    model file, under the capture rules given (SPEC §1b)."""
    check_rules(batchnorm, norm, gates)
    model, shape = load_network(name_or_file, input_shape, arch, trust_pickle)
    return model, shape, build_graph(model, shape, name_or_file, batchnorm=batchnorm,
                                     device=device, gates=gates, norm=norm, output=output)


def build_graph(model, shape, name: str, batchnorm: str = "fold", device: str = "cpu",
                gates: str = "scale", norm: str = "fold", output: str | None = None):
    """The :class:`SignedGraph` of a model :func:`load_network` gave, under the
    capture rules given (SPEC §1b); ``meta["model"]`` is ``name``."""
    from ..graph import SignedGraph

    graph = SignedGraph.from_module(model, shape, batchnorm=batchnorm, device=device,
                                    gates=gates, norm=norm, output=output)
    graph.meta["model"] = name
    return graph


#: whether a command has said why it stopped on Ctrl-C (main() says it otherwise)
INTERRUPT_SAID = [False]


@contextmanager
def resume_hint(out: str | None):
    """On Ctrl-C, say that the finished units are kept (typer exits 130 silently),
    or, before the run directory was made (the network still loading), that
    nothing was written."""
    try:
        yield
    except KeyboardInterrupt:
        if out and os.path.isdir(out):
            console.print(f"interrupted: the finished units are saved in {out}; "
                          "run the same command to resume", soft_wrap=True)
            INTERRUPT_SAID[0] = True
        elif out:
            console.print(f"interrupted before the run directory {out} was made; nothing "
                          "was written", soft_wrap=True)
            INTERRUPT_SAID[0] = True
        raise


def check_force(force: bool, out: str | None) -> None:
    """``--force`` acts on a run directory: without ``--out`` it is refused, not
    ignored."""
    from ..errors import DeepglassError

    if force and not out:
        raise DeepglassError("--force applies to a run directory: give --out DIR with it")


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

"""Strict checks of the numeric command-line options, in one place.

Typer parses an ``int`` or ``float`` option but accepts any value of the type:
``--seed -1`` or ``--lanczos-tol nan`` would reach the library and end in a
traceback deep inside NumPy.  :func:`strict` wraps every command callback
(``cli.app`` applies it to all commands) and checks, before the command body
runs, that

- every integer option is within its range (:data:`INT_MIN`, default ``>= 0``;
  seeds below :data:`SEED_MAX`, the range NumPy's and torch's generators take);
- every float option is finite, and those of :data:`FLOAT_RULES` within their
  interval.

A violation is a :class:`~deepglass.errors.DeepglassError` naming the option
as the user typed it, so the command line prints one line and exits with 2.

:func:`strict` also gives every command a ``--max-memory-gb`` option (the RAP
commands had one; theirs is kept) and makes it the process-wide budget of
:mod:`deepglass.memory` while the command runs.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, Optional

from ..errors import DeepglassError

#: smallest value of integer options, by parameter name (others: 0)
INT_MIN = {
    "replicas": 1, "null_instances": 1, "starts_per_null": 1, "replicas_per_unit": 1,
    "draws_per_unit": 1,
    "n": 1, "unit_size": 1, "amplitudes": 1, "batch_size": 1, "N": 1, "samples": 1,
    "trials": 1, "epochs": 1, "n_train": 1, "n_test": 1, "max_iter": 1, "sweeps": 1,
    "repeats": 1, "scan_points": 2, "n_temps": 2, "n_points": 2, "ti_sweeps": 1,
    "checkpoint_every": 1, "max_train": 1, "max_test": 1, "n_passes": 1, "n_xmin": 1,
    "max_samples": 1, "n_h": 1, "population": 1,
}
#: largest seed: NumPy's SeedSequence and torch.manual_seed both take [0, 2^63)
SEED_MAX = 2**63 - 1
#: float options with a range: name -> (low, high, low open, high open)
FLOAT_RULES = {
    "lanczos_tol": (0.0, 1.0, True, True),
    "max_memory_gb": (0.0, math.inf, True, True),
    "lr": (0.0, math.inf, True, True),
    "alpha": (0.0, 1.0, False, True),      # alpha = 0: gamma at level 1, the largest
    "tol": (0.0, math.inf, True, True),
    "bracket_tol": (0.0, math.inf, True, True),
    "time_limit": (0.0, math.inf, True, True),
    "threshold": (-math.inf, math.inf, True, True),
}


def _option_name(param: inspect.Parameter) -> str:
    """The option as typed on the command line (``--p-other`` for ``p_fixed``)."""
    decls = getattr(param.default, "param_decls", None) or ()
    longs = [d for d in decls if d.startswith("--")]
    return longs[0] if longs else "--" + param.name.replace("_", "-")


def _check_int(opt: str, name: str, v: int) -> None:
    lo = INT_MIN.get(name, 0)
    hi = SEED_MAX if name == "seed" else None
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, 2^63 - 1]"
        raise DeepglassError(f"{opt} must be an integer {rng}, got {v}")


def _check_float(opt: str, name: str, v: float) -> None:
    if not math.isfinite(v):
        raise DeepglassError(f"{opt} must be a finite number, got {v}")
    rule = FLOAT_RULES.get(name)
    if rule is None:
        return
    lo, hi, lo_open, hi_open = rule
    if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        what = (f"> {lo:g}" if hi == math.inf else
                f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")
        raise DeepglassError(f"{opt} must be {what}, got {v:g}")


def check_options(params: dict[str, inspect.Parameter], values: dict[str, Any]) -> None:
    """Check the integer and float option values of one command call."""
    for name, v in values.items():
        p = params.get(name)
        if p is None or v is None or isinstance(v, bool):
            continue
        items = v if isinstance(v, (list, tuple)) else [v]
        for x in items:
            if isinstance(x, bool):
                continue
            if isinstance(x, int):
                _check_int(_option_name(p), name, x)
            elif isinstance(x, float):
                _check_float(_option_name(p), name, x)


#: the memory option every command has (the RAP commands declare their own)
MEMORY_OPTION = "max_memory_gb"


def _memory_parameter() -> inspect.Parameter:
    import typer

    return inspect.Parameter(
        MEMORY_OPTION, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[float],
        default=typer.Option(None, "--max-memory-gb",
                             help="Memory budget in GB for the large allocations (default: "
                                  "80% of the available memory)."))


def _option_names(params: dict) -> list[str]:
    """The ``--long`` names of a command's options (its typer declarations, else
    the parameter's name)."""
    names = []
    for name, p in params.items():
        decls = [d for d in getattr(p.default, "param_decls", None) or () if d.startswith("--")]
        names += decls or ["--" + name.replace("_", "-")]
    return names


def strict(fn: Callable) -> Callable:
    """Wrap a command callback: its numeric options are checked first, and its
    ``--max-memory-gb`` (added where the command has none) becomes the
    process-wide budget of :mod:`deepglass.memory` while it runs; a memory
    refusal's hints name only its options."""
    from ..memory import limit, options_offered

    if getattr(fn, "__deepglass_strict__", False):
        return fn
    sig = inspect.signature(fn)
    params = dict(sig.parameters)
    added = MEMORY_OPTION not in params
    if added:
        params[MEMORY_OPTION] = _memory_parameter()

    offered = _option_names(params)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        gb = kwargs.pop(MEMORY_OPTION, None) if added else kwargs.get(MEMORY_OPTION)
        bound = sig.bind_partial(*args, **kwargs)
        check_options(params, {**bound.arguments, MEMORY_OPTION: gb})
        with limit(gb), options_offered(*offered):
            return fn(*args, **kwargs)

    if added:
        wrapper.__signature__ = sig.replace(parameters=list(params.values()))
        wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}),
                                   MEMORY_OPTION: Optional[float]}
    wrapper.__deepglass_strict__ = True
    return wrapper

"""Errors that deepglass reports to its users.

A :class:`DeepglassError` is a *user* error: bad input, a missing file, an
unsupported layer.  The command line prints its message on one line and exits
with status 2, without a traceback.  Anything else is a bug and keeps its
traceback.  It is a :class:`ValueError` (as scikit-learn's parameter errors
are), so ``except ValueError`` around a call catches a rejected argument.
"""

from __future__ import annotations


class DeepglassError(ValueError):
    """A user-facing error with a one-line message (a :class:`ValueError`:
    the input given, a model, a shape, a file, a run directory, is refused)."""


class UnsupportedLayerError(DeepglassError):
    """A module or operation that has no signed-graph rule."""


class TooLargeError(DeepglassError):
    """An explicit object (matrix, message array) that would not fit in memory."""


def first_line(exc: BaseException, typed: bool = False, limit: int | None = None) -> str:
    """The first line of an exception's message, for a one-line error.

    Third-party code (exporters, unpicklers, a user's model) raises messages of
    many lines, or none; this is their first non-blank line, or the exception's
    type name where the message is empty.

    Parameters
    ----------
    exc : BaseException
    typed : bool
        Prefix ``"TypeName: "`` (where the message is not just the type name).
    limit : int, optional
        Cut the result to this many characters.
    """
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    name = type(exc).__name__
    out = (f"{name}: {line}" if line else name) if typed else (line or name)
    return out if limit is None else out[:limit]


def check_type(value, kind: type, name: str):
    """``value`` if it is a ``kind``, else a one-line error naming the
    parameter, the type wanted and the one given (not an AttributeError deep
    inside)."""
    if not isinstance(value, kind):
        raise DeepglassError(f"{name} must be of type {kind.__name__}, got {type(value).__name__}")
    return value


def check_count(value, name: str, least: int = 1) -> int:
    """``value`` as an ``int`` of at least ``least``: a Python or NumPy integer
    (not a bool, a float or a string, which ``int()`` would truncate or parse).

    Raises
    ------
    DeepglassError
        One line naming the parameter and the value.
    """
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise DeepglassError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def check_seed(seed) -> int:
    """``seed`` as an ``int``: a non-negative Python or NumPy integer (not a
    bool) below 2^63 (what NumPy's and torch's generators, and a run's
    ``config.toml``, hold).

    Raises
    ------
    DeepglassError
        One line naming the value.
    """
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DeepglassError(f"seed must be a non-negative integer, got {seed!r}")
    if seed >= 2**63:
        raise DeepglassError(f"seed must be a non-negative integer below 2^63, got {seed!r}")
    return int(seed)


def check_name(value, name: str) -> str:
    """``value`` as a plain file name (a run's ``kind``, which names folders of a
    run directory): a non-empty string without a path separator, not starting
    with ``.`` (so not ``..``).

    Raises
    ------
    DeepglassError
        One line naming the parameter and the value.
    """
    if not isinstance(value, str) or not value or value.startswith(".") \
            or any(c in value for c in "/\\\0"):
        raise DeepglassError(f"{name} must be a plain file name (not empty, without '/' or "
                             f"'\\', not starting with '.'), got {value!r}")
    return value

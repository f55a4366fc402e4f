"""Errors that deepglass reports to its users.

A :class:`DeepglassError` is a *user* error: bad input, a missing file, an
unsupported layer.  The command line prints its message on one line and exits
with status 2, without a traceback.  Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class DeepglassError(Exception):
    """A user-facing error with a one-line message."""


class UnsupportedLayerError(DeepglassError):
    """A module or operation that has no signed-graph rule."""


class TooLargeError(DeepglassError):
    """An explicit object (matrix, message array) that would not fit in memory."""

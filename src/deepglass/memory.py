"""Memory estimates checked before large allocations.

A computation that would not fit should stop at once with one line saying
what to lower, not grow until the operating system kills it or NumPy reports
"Unable to allocate 963 GiB" in a traceback.  Callers estimate the bytes an
allocation (or a whole step's working set) needs and call :func:`check_fits`
*before* allocating; it compares the estimate with the budget:

- ``max_memory_gb`` when given (the ``--max-memory-gb`` option of every
  command; the RAP model's limit is the same option), else the process-wide
  limit set by :func:`set_limit` (the command line sets it once per command);
- otherwise :data:`MEMORY_FRACTION` of the memory available to this process
  (:func:`available_bytes`: ``MemAvailable`` capped by a cgroup v2 limit and
  an address-space limit).

The estimates are the callers' (each documents its count); this module only
holds the budget and the one-line error (:class:`~deepglass.errors.TooLargeError`).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from .errors import DeepglassError, TooLargeError

__all__ = ["MEMORY_FRACTION", "available_bytes", "budget_bytes", "check_fits", "set_limit",
           "get_limit", "limit", "format_bytes", "options_offered", "offered"]

#: share of the available memory one step may plan to use when no limit is set
MEMORY_FRACTION = 0.8

_limit_gb: float | None = None

#: the command-line options the running command has (None: any); a refusal's
#: hints name only these (the demo's sizes are fixed: it has --max-memory-gb alone)
_offered: ContextVar[frozenset | None] = ContextVar("options_offered", default=None)


@contextmanager
def options_offered(*options: str) -> Iterator[None]:
    """Within the block, the hints of memory refusals name only ``options``."""
    token = _offered.set(frozenset(options))
    try:
        yield
    finally:
        _offered.reset(token)


def offered(hint: str) -> bool:
    """Whether every option ``hint`` names (``--replicas``) is one the running
    command has."""
    allowed = _offered.get()
    return allowed is None or set(re.findall(r"--[a-z][a-z-]*", hint)) <= allowed


def available_bytes() -> int:
    """Memory available to this process: ``MemAvailable`` capped by a cgroup v2
    limit and by what an address-space limit (``ulimit -v``) leaves.

    Reads ``/proc/meminfo``, ``/sys/fs/cgroup/memory.{max,current}`` and
    ``/proc/self/statm`` (O(1));
    falls back to ``sysconf`` free pages where those are absent.
    """
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover
            avail = 8 * 1024**3
    try:  # cgroup v2 limit
        with open("/sys/fs/cgroup/memory.max") as fh:
            lim = fh.read().strip()
        if lim != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                cur = int(fh.read().strip())
            avail = min(avail, max(int(lim) - cur, 0))
    except (OSError, ValueError):
        pass
    try:  # an address-space limit (ulimit -v): what is left of it
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            avail = min(avail, max(int(soft) - used, 0))
    except (ImportError, OSError, ValueError):
        pass
    return int(avail)


def _check_gb(max_memory_gb: float | None) -> float | None:
    if max_memory_gb is None:
        return None
    try:
        gb = float(max_memory_gb)
    except (TypeError, ValueError):
        raise DeepglassError(f"--max-memory-gb must be a number, got {max_memory_gb!r}") from None
    if not gb > 0 or gb == float("inf"):
        raise DeepglassError(f"--max-memory-gb must be a finite number > 0, got {max_memory_gb!r}")
    return gb


def set_limit(max_memory_gb: float | None) -> None:
    """Set (or clear, with ``None``) the process-wide memory limit in GB."""
    global _limit_gb
    _limit_gb = _check_gb(max_memory_gb)


def get_limit() -> float | None:
    """The process-wide memory limit in GB (``None``: a share of the available memory)."""
    return _limit_gb


@contextmanager
def limit(max_memory_gb: float | None) -> Iterator[None]:
    """Temporarily set the process-wide limit (restored on exit)."""
    before = _limit_gb
    set_limit(max_memory_gb)
    try:
        yield
    finally:
        set_limit(before)


def format_bytes(n: float) -> str:
    """``1.5e9`` -> ``"1.5 GB"`` (decimal units, 3 significant digits)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def budget_bytes(max_memory_gb: float | None = None) -> tuple[int, str]:
    """The byte budget and a phrase naming where it comes from."""
    gb = _check_gb(max_memory_gb)
    if gb is None:
        gb = _limit_gb
    if gb is not None:
        return int(gb * 1e9), f"the limit of {gb:g} GB (--max-memory-gb)"
    avail = available_bytes()
    return (int(MEMORY_FRACTION * avail),
            f"{MEMORY_FRACTION:.0%} of the {format_bytes(avail)} available (--max-memory-gb "
            "sets another limit)")


def check_fits(nbytes: float, what: str, hint: str, max_memory_gb: float | None = None) -> None:
    """Refuse an allocation of ``nbytes`` that exceeds the budget, before it is made.

    Parameters
    ----------
    nbytes : float
        The caller's estimate of the bytes needed (an upper bound is better
        than a guess low).
    what : str
        What needs them, e.g. ``"80 start gauges of 1,034 nodes"``.
    hint : str
        What the user can lower, e.g. ``"lower --replicas"``.
    max_memory_gb : float, optional
        A limit for this check; default the process-wide one, else
        :data:`MEMORY_FRACTION` of :func:`available_bytes`.

    Raises
    ------
    TooLargeError
        ``"<what> would need ~X GB, more than <budget>; <hint>"`` (one line).
    """
    budget, source = budget_bytes(max_memory_gb)
    if not offered(hint):
        hint = "raise --max-memory-gb" if offered("--max-memory-gb") else "free memory"
    if nbytes > budget:
        raise TooLargeError(f"{what} would need ~{format_bytes(nbytes)}, more than {source}; "
                            f"{hint}")

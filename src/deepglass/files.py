"""Files written safely: atomic writes with the umask's mode, checksums,
JSON/TOML-friendly values, up-front checks of output paths, Markdown tables.

Used by run directories (:mod:`deepglass.store`) and by every module that
writes a file (the model cache, the criticality data sets, the CLI).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import DeepglassError

__all__ = ["atomic_write_bytes", "atomic_write_text", "file_mode", "plain", "file_digest",
           "check_out_dir", "check_save_path", "markdown_table", "os_error", "package_version",
           "nearest_existing", "lock_directory"]


def package_version() -> str:
    """The installed deepglass version (recorded in every run directory)."""
    from . import __version__

    return __version__


def file_mode() -> int:
    """The mode a new file gets under this process's umask (``0o666 & ~umask``).

    :func:`tempfile.mkstemp` creates files with mode 0600 whatever the umask;
    deepglass files are then ``chmod``-ed to this mode, so a run directory is
    as readable to colleagues as any file the user writes.
    """
    mask = os.umask(0o022)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return 0o666 & ~mask


def os_error(path: Path, exc: OSError, verb: str = "write") -> DeepglassError:
    """One line for a failed file operation (``cannot write PATH: reason``)."""
    return DeepglassError(f"cannot {verb} {path}: {exc.strerror or exc}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename
    (mode from the umask, :func:`file_mode`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def plain(obj: Any) -> Any:
    """Convert NumPy scalars / arrays and tuples into TOML / JSON-friendly values."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


#: directories this process holds locked: (device, inode, pid) -> [fd, holders]
_DIR_LOCKS: dict[tuple[int, int, int], list[int]] = {}
_DIR_LOCKS_GUARD = threading.Lock()


def lock_directory(path: Path, what: str = "run directory") -> object | None:
    """Hold an exclusive advisory lock (``flock``) on the directory ``path`` for
    this process; returns a key for :func:`unlock_directory` (None where the
    platform or filesystem has no such locks: nothing is held).

    Several holders in one process share the lock (the demo opens one run
    directory per experiment kind); another process holding it is refused in
    one line, so two runs never write one directory at once.  The lock goes
    with the process: a killed run leaves nothing to clean up, and no file is
    created (a read-only directory is locked as well).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, os.getpid())
    with _DIR_LOCKS_GUARD:
        held = _DIR_LOCKS.get(key)
        if held is not None:
            os.close(fd)
            held[1] += 1
            return key
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DeepglassError(
                f"{what} {path} is in use by another deepglass process (or another Python "
                "session that has it open); wait for that run to end, or choose another "
                "--out") from None
        except OSError:   # a filesystem without flock: run unlocked, as before
            os.close(fd)
            return None
        _DIR_LOCKS[key] = [fd, 1]
    return key


def unlock_directory(key: object | None) -> None:
    """Release one hold of :func:`lock_directory` (the lock goes with the last)."""
    if key is None:
        return
    with _DIR_LOCKS_GUARD:
        held = _DIR_LOCKS.get(key)  # type: ignore[arg-type]
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _DIR_LOCKS[key]  # type: ignore[arg-type]
            try:
                os.close(held[0])
            except OSError:  # pragma: no cover
                pass


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a file (read in 1 MiB blocks: O(size) time, O(1) memory)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (absolute)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse, in one line and before any computation, a run directory that
    cannot be written: a file, a path under a file, a read-only or
    permission-denied location."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DeepglassError(f"{option} {path} exists and is not a directory")
    base = nearest_existing(path)
    if not base.is_dir():
        raise DeepglassError(f"{option} {path}: {base} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise DeepglassError(f"{option} {path}: {base} is not writable")
    # a probe: permissions do not tell everything (a superuser, a read-only
    # mount, a pseudo file system such as /proc)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".deepglass-probe-", dir=base))
    except OSError as exc:
        raise DeepglassError(f"{option} {path}: cannot create a directory in {base}: "
                             f"{exc.strerror or exc}") from None
    return path


def check_save_path(prefix: str | os.PathLike, suffixes: Iterable[str] = (".npz", ".json"),
                    option: str = "--save") -> Path:
    """Refuse, before any computation, a ``--save PREFIX`` whose files
    (``PREFIX`` + each suffix) cannot be written."""
    if str(prefix).endswith(("/", os.sep)) or Path(prefix).name in ("", ".", ".."):
        raise DeepglassError(f"{option} needs a file name (PREFIX of PREFIX.npz), "
                             f"got {str(prefix)!r}")
    prefix = Path(prefix)
    if prefix.is_dir():     # (PREFIX.npz would land beside it, /tmp.npz for --save /tmp)
        raise DeepglassError(f"{option} {prefix} is a directory; give a file name "
                             f"(PREFIX of PREFIX.npz), e.g. {prefix / 'result'}")
    parent = prefix.parent if str(prefix.parent) else Path(".")
    if not parent.is_dir():
        if os.path.lexists(parent):
            raise DeepglassError(f"{option} {prefix}: {parent} is a file, not a directory")
        raise DeepglassError(f"{option} {prefix}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DeepglassError(f"{option} {prefix}: the directory {parent} is not writable")
    try:    # os.access says yes to root where writing still fails (/proc, sysfs)
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as exc:
        raise DeepglassError(f"{option} {prefix}: cannot write in {parent} "
                             f"({exc.strerror or type(exc).__name__})") from None
    stem = prefix.with_suffix("") if prefix.suffix in suffixes else prefix
    for suf in suffixes:
        target = Path(str(stem) + suf)
        if target.is_dir():
            raise DeepglassError(f"{option} {prefix}: {target} is a directory")
    return prefix


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-Markdown table of ``df`` for reports (floats with ``floatfmt``,
    NaN as an empty cell, ``|`` escaped)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule] + body)

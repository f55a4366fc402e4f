"""The manifest and configuration file of a run directory (:mod:`deepglass.store`):
which files the run owns (:class:`Manifest`, ``manifest.jsonl``) and whether a
``config.toml`` is a deepglass run's (:func:`read_config`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
from pathlib import Path, PurePosixPath

import numpy as np

from .files import file_mode, os_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Manifest", "read_config", "gauge_digest", "CONFIG_NAME", "MANIFEST_NAME"]

CONFIG_NAME = "config.toml"
MANIFEST_NAME = "manifest.jsonl"

log = logging.getLogger("deepglass.store")


def plain_relative(rel: str) -> bool:
    """Whether ``rel`` names a path strictly inside the run directory by its
    text alone: relative, POSIX, with no ``..``, ``.`` or empty part (a
    manifest naming ``../x`` or ``/x`` is damaged or crafted)."""
    if not rel or "\\" in rel or "\0" in rel:
        return False
    p = PurePosixPath(rel)
    return not p.is_absolute() and all(part not in ("", ".", "..") for part in rel.split("/"))


class Manifest:
    """The files a run directory owns: an append-only JSON-lines log.

    Each line is ``{"path": rel, "sha256", "bytes", ...}`` (a file, recorded
    before it is renamed into place), ``{"tmp": rel}`` (a temporary name, recorded
    as it is made) or ``{"removed": rel}``.  The last line about a path wins.
    A torn last line (a crash mid-append: no newline, no whole JSON object) is
    no damage: if it names a file or temporary (``{"path": "rel"`` ...), that
    name stays the run's (a file's record then lacks its checksum, so a unit is
    recomputed and a report rewritten); otherwise it is dropped.  Appends are
    O(1); the log is compacted when the run is opened.
    """

    def __init__(self, root: Path):
        self.root = root
        self.path = root / MANIFEST_NAME
        self.files: dict[str, dict] = {}
        self.tmps: set[str] = set()
        self.unreadable = 0
        self.torn = False
        self.lock = threading.Lock()
        self._warned: set[str] = set()

    def load(self) -> None:
        self.files, self.tmps = {}, set()
        self.unreadable = 0      # lines that are no JSON object (a damaged file)
        self.torn = False        # the last line was cut short (a crash, or damage)
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise os_error(self.path, exc, "read")
        outside: list[str] = []
        lines = text.splitlines()
        for i, line in enumerate(lines):
            try:
                e = json.loads(line)
            except ValueError:
                if i == len(lines) - 1 and not text.endswith("\n"):
                    self.torn = True
                    e = _torn_record(line)      # a crash cut the last append short
                    if e is None:
                        continue
                else:
                    self.unreadable += bool(line.strip())
                    continue
            if not isinstance(e, dict):
                self.unreadable += 1
                continue
            named = next((e[k] for k in ("path", "tmp", "removed") if isinstance(e.get(k), str)),
                         None)
            if named is None:       # no record of deepglass's (a user's manifest.jsonl)
                self.unreadable += 1
                continue
            if not plain_relative(named):
                outside.append(named)   # never read, written or removed
                continue
            if isinstance(e.get("path"), str):
                self.files[e["path"]] = e
            elif isinstance(e.get("tmp"), str):
                self.tmps.add(e["tmp"])
            elif isinstance(e.get("removed"), str):
                self.files.pop(e["removed"], None)
                self.tmps.discard(e["removed"])
        new = [o for o in outside if o not in self._warned]
        if new:
            self._warned.update(new)
            log.warning("%s lists %d path(s) outside the run directory (%s); ignoring them: "
                        "deepglass never reads, writes or removes them", self.path, len(new),
                        ", ".join(repr(o) for o in new[:3]) + (", ..." if len(new) > 3 else ""))

    def append(self, entry: dict) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self.lock:
            try:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:
                raise os_error(self.path, exc)
            if "path" in entry:
                self.files[entry["path"]] = entry
            elif "tmp" in entry:
                self.tmps.add(entry["tmp"])
            elif "removed" in entry:
                self.files.pop(entry["removed"], None)
                self.tmps.discard(entry["removed"])

    def compact(self) -> None:
        """Rewrite the log with one line per existing file (after a kill or many
        rewrites).  The records of missing arrays stay: a unit whose arrays were
        deleted is then seen as damaged (and recomputed), not as finished."""
        with self.lock:
            self.files = {k: e for k, e in self.files.items()
                          if k.startswith("arrays/") or (self.root / k).exists()}
            text = "".join(json.dumps(e, separators=(",", ":")) + "\n"
                           for _, e in sorted(self.files.items()))
            # a fresh random name: never clobbers a file, and a kill here leaves
            # only an unrecorded empty-or-partial temporary behind
            try:
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{MANIFEST_NAME}.",
                                           suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.chmod(tmp, file_mode())
                os.replace(tmp, self.path)
            except OSError as exc:
                raise os_error(self.path, exc)
            self.tmps = set()


_TORN = re.compile(r'\{"(path|tmp)":("(?:[^"\\]|\\.)*")')


def _torn_record(line: str) -> dict | None:
    """The record a torn last line began (``{"path": rel, "torn": True}`` or
    ``{"tmp": rel}``), if its name was written whole; else None."""
    m = _TORN.match(line)
    if m is None:
        return None
    try:
        name = json.loads(m.group(2))
    except ValueError:
        return None
    return {"path": name, "torn": True} if m.group(1) == "path" else {"tmp": name}


def read_config(cfg: Path) -> dict | None:
    """``config.toml`` as a dict if it is a deepglass run's (a ``[deepglass]``
    version and a ``[runs]`` table), else ``None``."""
    try:
        found = tomllib.loads(cfg.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    except OSError as exc:
        raise os_error(cfg, exc, "read")
    dg = found.get("deepglass")
    runs = found.get("runs")
    # each kind's configuration is a table (a hand-edited file may say otherwise)
    if not isinstance(dg, dict) or not isinstance(dg.get("version"), str) \
            or not isinstance(runs, dict) or not all(isinstance(v, dict) for v in runs.values()):
        return None
    return found

def gauge_digest(sigma, energy: float) -> str:
    """sha256 (16 hex digits) of a gauge and its energy: which gauge a kind's
    results were computed along (its configuration's ``gauge``)."""
    h = hashlib.sha256(np.ascontiguousarray(np.asarray(sigma).reshape(-1), np.int8).tobytes())
    h.update(np.float64(energy).tobytes())
    return h.hexdigest()[:16]

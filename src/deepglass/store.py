"""Run directories: configuration, tables, arrays, figures and reports on disk.

A run is a directory::

    RUN/
      config.toml         everything needed to reproduce the run (seeds included)
      manifest.jsonl      every file deepglass wrote here, with its size and sha256
      units/<kind>/<table>/<id>.parquet   one finished unit (replica, null instance, ...)
      <table>.parquet     tidy tables assembled from the units
      arrays/<name>.npz   arrays such as best gauges
      figures/*.png
      reports/<kind>.md, reports/<kind>.summary.json   each kind's report and headline
      report.md
      summary.json        headline numbers (rebuilt from every kind's part)

Every file is written to a temporary name and renamed into place
(:func:`os.replace` is atomic on POSIX), so an interrupted run never leaves a
half-written file behind.  Re-opening a run with the same configuration
resumes it; a different configuration or package version is refused unless
``force=True``.

**Ownership.**  The manifest records each file *before* it is renamed into
place (path, size, sha256, and a unit's rows and columns), and each temporary
name as it is made.  A run directory owns exactly the files its manifest
names: ``force`` removes only those (never a whole directory), deepglass
refuses to overwrite a file it did not write, and a directory whose
``config.toml`` is not a deepglass run's is refused outright.  Temporary files
left by a killed run are removed when the run is opened again.

**Verification.**  A unit counts as finished only when its file (and its
arrays) match the size and checksum recorded at write time; a damaged unit
(truncated, emptied, rewritten) is reported in one line and recomputed.
Derived files (assembled tables, figures, ``summary.json``, ``report.md``) are
rebuilt from the units at the end of every run.

One directory may hold several experiments on the same network (``deepglass
demo`` writes frustration, active subnetworks and near-monotonicity into one
run): ``config.toml`` has one table per run *kind*, and each kind checks only
its own table (and the version).  Opening a new kind in an existing run adds
its table; ``force=True`` on a changed configuration removes only that kind's
units and unit arrays (they live under ``units/<kind>/`` and ``arrays/<kind>/``)
and the files that kind derived from them (the manifest records each file's
kind), not the ``config.toml``, ``report.md`` and ``summary.json`` all kinds share.
Assembled tables, arrays and figures are the caller's to name apart where two
kinds could clash.
"""


from __future__ import annotations

import json
import logging
import os
import sys
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import DeepglassError, check_name
from .files import (atomic_write_bytes, atomic_write_text, check_out_dir, check_save_path,
                    file_mode, lock_directory, markdown_table, os_error, package_version, plain,
                    unlock_directory)
from .kind_outputs import kind_outputs
from .manifest import CONFIG_NAME, MANIFEST_NAME, Manifest, read_config
from .owned import OwnedFiles
from .run_reports import RunReports

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
import tomli_w

#: the file helpers stay importable from here (:mod:`deepglass.files` holds them)
__all__ = ["RunDir", "iter_missing", "plain", "atomic_write_bytes", "atomic_write_text",
           "markdown_table", "check_out_dir", "check_save_path", "file_mode"]

#: directories deepglass creates in a run; removed by ``force`` only when empty
_OWN_DIRS = ("units", "arrays", "figures", "reports")
#: files assembled from every kind's parts: one kind's ``force`` rebuilds, never removes them
SHARED_FILES = (CONFIG_NAME, "report.md", "summary.json")

#: configuration keys a kind records after opening (:meth:`RunDir.settle`: the
#: gauge a run reused or computed); the resume check of the opening skips them
SETTLED_KEYS = ("gauge",)

#: configuration keys added after runs were recorded without them: a run that
#: lacks one resumes as before and records it (from then on it is compared)
ADDED_KEYS = ("inputs_sha256",)

#: keys some runs recorded that cannot change their results (a memory budget):
#: left out of a record when it is compared
DROPPED_KEYS = ("max_memory_gb",)

#: keys naming what a digest key identifies (a model file as typed, an inputs
#: folder): where the record and the run hold the same digest, another
#: spelling of the name (``./net.pt``, an absolute path) is the same run
NAMED_BY_DIGEST = {"model": "weights_sha256", "inputs": "inputs_sha256"}

#: how the messages name the two ways out, for the command and for Python alike
_ELSEWHERE = "use another run directory (--out, run=)"
_FORCE = "force it (--force, force=True)"

log = logging.getLogger("deepglass.store")


class RunDir(RunReports, OwnedFiles):
    """A resumable run directory that owns only the files it wrote.

    Parameters
    ----------
    path : str or Path
        The directory; created if missing.
    config : mapping
        Everything needed to reproduce the run.  Written to ``config.toml``
        together with the run ``kind`` and the deepglass version.  ``None``
        values are dropped.
    kind : str
        What the run computes (``"frustration"``, ``"rap-phase"``, ...).
    force : bool
        Reuse a run directory made with another configuration or version: the
        files its manifest lists (for a changed configuration, only this kind's
        units and the files it derived from them) are removed first, every
        other file is left in place.  A
        non-empty directory that is not a run is used as it is (its files are
        never overwritten).

    Raises
    ------
    DeepglassError
        When ``path`` cannot be written, its ``config.toml`` is not a deepglass
        run's (even with ``force``), or it holds a run of another configuration
        or version, or other files, and ``force`` is false.

    Examples
    --------
    >>> run = RunDir(tmp_path / "run", {"seed": 0}, kind="demo")   # doctest: +SKIP
    >>> if not run.has_unit("replicas", "r000"):                   # doctest: +SKIP
    ...     run.write_unit("replicas", "r000", df)
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any], kind: str,
                 force: bool = False):
        self.path = Path(path)
        self.kind = check_name(kind, "kind")        # it names folders: units/<kind>/...
        if not isinstance(config, Mapping):
            raise DeepglassError(f"config must be a mapping (dict), got {type(config).__name__}")
        self.config = plain(dict(config))
        self.force = bool(force)
        self._manifest = Manifest(self.path)
        self._verified: set[tuple[str, str]] = set()
        self._reported: set[str] = set()
        check_out_dir(self.path)
        # one process at a time writes a run directory (held while this object lives)
        self._lock = lock_directory(self.path) if self.path.is_dir() else None
        self._unlock = weakref.finalize(self, unlock_directory, self._lock)
        cfg = self.path / CONFIG_NAME
        found: dict | None = None
        if cfg.exists():
            found = read_config(cfg)
            if found is None:
                raise DeepglassError(
                    f"run directory {self.path}: its config.toml is not a deepglass run's; "
                    "deepglass will not touch it (choose another --out)")
            self._check_manifest_present()
            self._manifest.load()
            self._remove_stale_tmps()
            # every refusal before anything is removed (a refused --force deletes nothing)
            self._check_outputs_free()
            version = found["deepglass"]["version"]
            runs = found["runs"]
            if version != package_version():
                others = sorted(k for k in runs if k != kind)
                if not force:   # (--force is offered only where it can replace the results)
                    raise DeepglassError(f"run directory {self.path}: it was made by deepglass "
                                         f"{version}, this is {package_version()}; {_ELSEWHERE}"
                                         + ("" if others else f" or {_FORCE}"))
                if others:
                    # one kind's --force replaces its own results, never another's
                    raise DeepglassError(
                        f"run directory {self.path}: it was made by deepglass {version} and "
                        f"holds {', '.join(repr(k) for k in others)} results besides "
                        f"'{kind}'; --force replaces one kind's results only, so "
                        f"{_ELSEWHERE} (or remove the directory to recompute them all)")
                self._remove_owned(lambda rel: rel != CONFIG_NAME)
                found = None
            elif self._config_edited():
                raise DeepglassError(
                    f"run directory {self.path}: its config.toml was changed since deepglass "
                    "wrote it, so it may not describe the results there; restore it, or move "
                    "the directory away and run again")
            elif kind in runs and _unsettled(runs[kind], self.config) != self.config:
                if not force:
                    raise DeepglassError(self._mismatch_message(_unsettled(runs[kind],
                                                                           self.config)))
                self._clear_kind()
                runs[kind] = _unsettled(runs[kind])   # its units are gone: nothing settled
        elif self.path.is_dir() and any(self.path.iterdir()) and \
                not self._interrupted_start():
            if not force:
                raise DeepglassError(
                    f"{self.path} is not empty and is not a deepglass run; {_ELSEWHERE} "
                    f"(or {_FORCE} to add a run beside its files, left alone)")
            if os.path.lexists(self.path / MANIFEST_NAME):
                raise DeepglassError(f"{self.path} holds a {MANIFEST_NAME} that deepglass "
                                     "did not write; choose another --out")
        if self.path.is_dir():
            self._check_outputs_free()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(self.path, exc, "create")
        if self._lock is None:
            self._unlock.detach()
            self._lock = lock_directory(self.path)
            self._unlock = weakref.finalize(self, unlock_directory, self._lock)
        self._manifest.compact()
        runs = dict(found["runs"]) if found else {}
        kept = {k: v for k, v in (runs.get(kind) or {}).items() if k in SETTLED_KEYS}
        if runs.get(kind) != {**self.config, **kept} or found is None:
            runs[kind] = {**self.config, **kept}
            self._write_bytes(cfg, tomli_w.dumps({"deepglass": {"version": package_version()},
                                                  "runs": runs}).encode("utf-8"), adopt=True)
        self.resumed = bool(self._unit_entries(prefix=f"units/{kind}/"))

    def _check_manifest_present(self) -> None:
        """A run whose ``manifest.jsonl`` is lost cannot tell its files from
        others: refused in one line saying so (even with ``force``), unless it
        holds nothing but its ``config.toml``."""
        if os.path.lexists(self.path / MANIFEST_NAME):
            return
        try:
            others = [p.name for p in self.path.iterdir()
                      if p.name != CONFIG_NAME and not p.name.startswith(".")]
        except OSError as exc:
            raise os_error(self.path, exc, "read")
        if others:
            raise DeepglassError(
                f"run directory {self.path} has lost its {MANIFEST_NAME} (the record of "
                "the files deepglass wrote there), so deepglass cannot tell its files from "
                f"others and will neither resume nor --force it; restore {MANIFEST_NAME}, "
                "or move the directory away (delete it if nothing in it is yours) and run "
                "again, or choose another --out")

    def _check_outputs_free(self) -> None:
        """Refuse, before any computation, a file this kind will write (its
        tables, figures and arrays, its report section, ``report.md``,
        ``summary.json``, its unit files) that exists and is not the run's."""
        names = ["report.md", "summary.json", f"reports/{self.kind}.md",
                 f"reports/{self.kind}.summary.json"]
        names += kind_outputs(self.kind, self.config)
        for d in (f"units/{self.kind}", f"arrays/{self.kind}"):
            if (self.path / d).is_dir():
                names += [self._rel(p) for p in sorted((self.path / d).rglob("*"))
                          if not p.is_dir() and not p.name.startswith(".")]
        for name in names:
            if os.path.lexists(self.path / name) and name not in self._manifest.files:
                if self._manifest.unreadable or self._manifest.torn:
                    if self._manifest.unreadable:
                        raise DeepglassError(
                            f"{self.path / name} is not recorded in {MANIFEST_NAME}, which "
                            f"has {self._manifest.unreadable} unreadable line(s): the record "
                            "is damaged; restore it, or move the directory away and run again")
                    raise DeepglassError(
                        f"{self.path / name} is not recorded in {MANIFEST_NAME}, whose last "
                        "line is cut short (a crash while a file was being recorded): move "
                        "the files it does not record away (this one first) and run again, "
                        "or move the directory away")
                raise DeepglassError(f"{self.path / name} exists and was not written by "
                                     "deepglass; move it away or choose another --out")

    def settle(self, key: str, value: Any, describe: Callable[[Any], str]) -> None:
        """Record this kind's ``key`` (one of :data:`SETTLED_KEYS`), known only
        once the run is open (the gauge it reused from the directory or
        computed).  Units computed under another recorded value are never
        mixed with new ones: the run is refused in one line, or with ``force``
        this kind's results are removed first.  ``describe(value)`` names a
        value in the message."""
        if key not in SETTLED_KEYS:
            raise ValueError(f"{key!r} is not a settled configuration key")
        value = plain(value)
        found = read_config(self.path / CONFIG_NAME) or {"runs": {}}
        runs = dict(found["runs"])
        mine = dict(runs.get(self.kind) or self.config)
        before = mine.get(key)
        if before == value:
            return
        if before is not None and self._unit_entries(prefix=f"units/{self.kind}/"):
            if not self.force:
                raise DeepglassError(
                    f"run directory {self.path}: its '{self.kind}' units were computed with "
                    f"{describe(before)}, but this run now has {describe(value)}; "
                    f"{_FORCE} to recompute them with it, or {_ELSEWHERE}")
            self._clear_kind()
        mine[key] = value
        runs[self.kind] = mine
        self._write_bytes(self.path / CONFIG_NAME, tomli_w.dumps(
            {"deepglass": {"version": package_version()}, "runs": runs}).encode("utf-8"),
            adopt=True)

    # -- configuration ------------------------------------------------------
    @property
    def kinds(self) -> list[str]:
        """The run kinds recorded in this directory's ``config.toml``."""
        return sorted(tomllib.loads((self.path / CONFIG_NAME).read_text()).get("runs", {}))

    def run_config(self, kind: str) -> dict | None:
        """The configuration another kind of run recorded here (``None`` if absent)."""
        return tomllib.loads((self.path / CONFIG_NAME).read_text()).get("runs", {}).get(kind)

    def _clear_kind(self) -> None:
        """Forget this kind's results (``force`` on a changed config): its unit
        files and unit arrays, and every file it derived from them (tables,
        figures, checkpoints, its report section and summary part), so that
        nothing of the old configuration stays beside the new one's.  The files
        every kind assembles (``config.toml``, ``report.md``, ``summary.json``)
        stay and are rebuilt; so do files recorded without a kind (older runs)."""
        self._remove_owned(prefixes=(f"units/{self.kind}/", f"arrays/{self.kind}/"))
        self._remove_owned(lambda rel: rel not in SHARED_FILES
                           and self._manifest.files[rel].get("kind") == self.kind)

    def _mismatch_message(self, found: dict) -> str:
        def differ(a: dict, b: dict, prefix: str = "") -> list[str]:
            out = []    # keys of nested tables named in full (options.engine)
            for k in sorted(set(a) | set(b)):
                u, v = a.get(k), b.get(k)
                if isinstance(u, dict) and isinstance(v, dict):
                    out += differ(u, v, f"{prefix}{k}.")
                elif isinstance(u, list) and isinstance(v, list) and max(
                        len(repr(u)), len(repr(v))) > _SHORT and (
                        [x for x in v if x not in u] or [x for x in u if x not in v]):
                    # what was added or dropped, not two lists cut short
                    added, gone = [x for x in v if x not in u], [x for x in u if x not in v]
                    out.append(f"{prefix}{k}: " + ", ".join(
                        ([f"now with {_short(added)}"] if added else [])
                        + ([f"now without {_short(gone)}"] if gone else [])))
                elif u != v:
                    out.append(f"{prefix}{k}: recorded {_short(u)}, now {_short(v)}"
                               + _KEY_NOTES.get(k, ""))
            return out

        keys = differ(found, self.config)
        return (f"run directory {self.path}: its '{self.kind}' configuration differs ("
                + "; ".join(keys) + f"); {_ELSEWHERE} or {_FORCE}")

    # -- units -------------------------------------------------------------
    def unit_path(self, table: str, unit: str) -> Path:
        return self.path / "units" / self.kind / table / f"{unit}.parquet"

    def _unit_rel(self, table: str, unit: str) -> str:
        return f"units/{self.kind}/{table}/{unit}.parquet"

    def _unit_entries(self, prefix: str) -> list[str]:
        return [k for k in self._manifest.files if k.startswith(prefix) and k.endswith(".parquet")]

    def _unit_damage(self, table: str, unit: str) -> str | None:
        rel = self._unit_rel(table, unit)
        why = self._damage(rel)
        if why is None:
            arr = f"arrays/{self.kind}/{table}/{unit}.npz"
            sha = self._manifest.files[rel].get("arrays_sha256")
            if sha is not None and self._manifest.files.get(arr, {}).get("sha256") != sha:
                why = "its arrays: missing or not the ones written with it"
            elif arr in self._manifest.files:
                why = self._damage(arr)
                if why is not None:
                    why = f"its arrays: {why}"
        return why

    def has_unit(self, table: str, unit: str) -> bool:
        """Whether the unit is finished: its file (and arrays) match their record.
        A damaged unit is reported once (a warning) and counts as not finished."""
        rel = self._unit_rel(table, unit)
        if rel not in self._manifest.files and not (self.path / rel).exists():
            return False
        why = self._unit_damage(table, unit)
        if why is not None:
            self._report_damage(rel, why)
            return False
        return True

    def _unit_ids(self, table: str) -> set[str]:
        """Ids of every unit file of ``table``, recorded or not."""
        d = self.path / "units" / self.kind / table
        ids = {Path(k).stem for k in self._unit_entries(f"units/{self.kind}/{table}/")}
        if d.is_dir():  # files with no record are reported (and recomputed) too
            ids |= {p.stem for p in d.glob("*.parquet")}
        return ids

    def finished_units(self, table: str) -> set[str]:
        """Ids of the finished, undamaged units of ``table``."""
        return {u for u in self._unit_ids(table) if self.has_unit(table, u)}

    def write_unit(self, table: str, unit: str, df: pd.DataFrame,
                   arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Store one finished unit atomically (arrays first, so a unit is
        complete once its table file is recorded), with its row count and
        columns in the manifest."""
        meta = {}
        if arrays:
            path = self.save_arrays(f"{self.kind}/{table}/{unit}", **arrays)
            meta["arrays_sha256"] = self._manifest.files[self._rel(path)]["sha256"]
        self._commit(self.unit_path(table, unit), lambda tmp: df.to_parquet(tmp, index=False),
                     rows=int(len(df)), columns=[str(c) for c in df.columns], **meta)

    def read_unit(self, table: str, unit: str) -> pd.DataFrame:
        """One finished unit's rows, checked against its record (a damaged
        unit is a :class:`DeepglassError`: rerun the command to recompute it)."""
        rel = self._unit_rel(table, unit)
        why = self._unit_damage(table, unit)
        if why is None:
            df, why = self._read_checked(rel)
            if why is None:
                return df
        raise DeepglassError(f"damaged unit {rel} in {self.path} ({why}); "
                             "run the same command again to recompute it")

    def _read_checked(self, rel: str) -> tuple[pd.DataFrame | None, str | None]:
        e = self._manifest.files[rel]
        try:
            df = pd.read_parquet(self.path / rel)
        except Exception as exc:  # noqa: BLE001 - any parse failure is damage, said in one line
            return None, f"unreadable: {type(exc).__name__}"
        if "rows" in e and (len(df) != e["rows"] or [str(c) for c in df.columns] != e["columns"]):
            return None, "rows or columns differ from the ones written"
        return df, None

    def unit_rows(self, table: str, unit: str) -> pd.DataFrame | None:
        """A finished unit's rows, its files checked against their record once;
        None when the unit is absent or damaged (reported, left out)."""
        if not self.has_unit(table, unit):
            return None
        rel = self._unit_rel(table, unit)
        df, why = self._read_checked(rel)
        if why is not None:
            self._report_damage(rel, why, "leaving it out")
            return None
        return df

    def read_units(self, table: str) -> pd.DataFrame:
        """All finished units of ``table``, concatenated in unit-id order
        (damaged units are reported and left out)."""
        frames = [df for u in sorted(self._unit_ids(table))
                  if (df := self.unit_rows(table, u)) is not None]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    # -- tables, arrays, text ---------------------------------------------
    def write_table(self, name: str, df: pd.DataFrame) -> Path:
        return self._commit(self.path / f"{name}.parquet",
                            lambda tmp: df.to_parquet(tmp, index=False),
                            rows=int(len(df)), columns=[str(c) for c in df.columns])

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.path / f"{name}.parquet"
        if not path.exists():
            raise DeepglassError(f"run directory {self.path} has no table '{name}'")
        why = self._damage(self._rel(path))
        if why is None:
            df, why = self._read_checked(self._rel(path))
            if why is None:
                return df
        raise DeepglassError(f"table {path} is damaged ({why}); run the command that "
                             "made it again")

    def save_arrays(self, name: str, **arrays: np.ndarray) -> Path:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        return self._commit(self.path / "arrays" / f"{name}.npz", write,
                            arrays=sorted(arrays))

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        path = self.path / "arrays" / f"{name}.npz"
        if not path.exists():
            raise DeepglassError(f"run directory {self.path} has no arrays '{name}'")
        why = self._damage(self._rel(path))
        if why is None:
            try:
                with np.load(path) as z:
                    return {k: z[k] for k in z.files}
            except Exception as exc:  # noqa: BLE001 - a bad zip / header is damage
                why = f"unreadable: {type(exc).__name__}"
        raise DeepglassError(f"arrays {path} are damaged ({why}); run the command that "
                             "made them again")

    def has_arrays(self, name: str) -> bool:
        """Whether ``arrays/<name>.npz`` exists and matches its record."""
        return self.has_file(f"arrays/{name}.npz")

    def write_file(self, name: str, data: bytes) -> Path:
        """Write ``data`` to ``RUN/<name>`` (a relative path), owned and recorded
        like every run file (e.g. training checkpoints)."""
        return self._write_bytes(self.path / name, data)

    def has_file(self, name: str) -> bool:
        """Whether ``RUN/<name>`` exists and matches its record (a damaged or
        unrecorded file is reported once and counts as absent)."""
        if not os.path.lexists(self.path / name):
            return False
        why = self._damage(name)
        if why is not None:
            self._report_damage(name, why, "ignoring it", what="file")
            return False
        return True

    def write_json(self, name: str, obj: Any) -> Path:
        text = json.dumps(plain(obj), indent=2, default=str) + "\n"
        return self._write_bytes(self.path / name, text.encode("utf-8"))

    def write_text(self, name: str, text: str) -> Path:
        return self._write_bytes(self.path / name, text.encode("utf-8"))

    def figure_path(self, name: str) -> Path:
        """Path for ``figures/<name>``; callers save through :func:`save_figure`."""
        d = self.path / "figures"
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(d, exc, "create")
        return d / name

    def save_figure(self, fig, name: str) -> Path:
        """Save a matplotlib figure atomically under ``figures/``."""
        path = self.figure_path(name)
        return self._commit(path, lambda tmp: fig.savefig(
            tmp, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight"))


#: what a differing key means, where its name does not say it
_KEY_NOTES = {
    "model": " (the name a run records: the command line's model argument, model_name= "
             "in Python)",
    "weights_sha256": " (another network: its weights, or its code or program)",
}


_SHORT = 40


def _short(value, limit: int = _SHORT) -> str:
    """A configuration value for a one-line message (cut to ``limit`` characters);
    a key left out stands for its default, as in runs recorded before it existed."""
    text = "the default" if value is None else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _unsettled(config: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict:
    """A kind's recorded configuration without its :data:`SETTLED_KEYS`; given
    the ``current`` configuration, with the :data:`ADDED_KEYS` the record
    lacks taken from it (a run recorded before them) and the names of
    :data:`NAMED_BY_DIGEST` whose digest agrees spelled as now."""
    out = {k: v for k, v in config.items() if k not in SETTLED_KEYS + DROPPED_KEYS}
    if current is None:
        return out
    for k in ADDED_KEYS:
        if k in current and k not in out:
            out[k] = current[k]
    for k, digest in NAMED_BY_DIGEST.items():
        if k in out and k in current and out.get(digest) is not None \
                and out.get(digest) == current.get(digest):
            out[k] = current[k]
    return out


def iter_missing(run: RunDir, table: str, units: Iterable[str]) -> list[str]:
    """The unit ids of ``units`` that ``run`` has not finished yet, in order."""
    done = run.finished_units(table)
    return [u for u in units if u not in done]

"""Run directories: configuration, tables, arrays, figures and reports on disk.

A run is a directory::

    RUN/
      config.toml         everything needed to reproduce the run (seeds included)
      units/<kind>/<table>/<id>.parquet   one finished unit (replica, null instance, ...)
      <table>.parquet     tidy tables assembled from the units
      arrays/<name>.npz   arrays such as best gauges
      figures/*.png
      report.md
      summary.json        headline numbers

Every file is written to a temporary name and renamed into place
(:func:`os.replace` is atomic on POSIX), so an interrupted run never leaves a
half-written file behind and :meth:`RunDir.has_unit` tells exactly which units
are finished.  Re-opening a run with the same configuration resumes it; a
different configuration or package version is refused unless ``force=True``.

One directory may hold several experiments on the same network (``deepglass
demo`` writes frustration, active subnetworks and near-monotonicity into one
run): ``config.toml`` has one table per run *kind*, and each kind checks only
its own table (and the version).  Opening a new kind in an existing run adds
its table; ``force=True`` on a changed configuration clears only that kind's
units (they live under ``units/<kind>/``).  Assembled tables, arrays and
figures are the caller's to name apart where two kinds could clash.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import DeepglassError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
import tomli_w

__all__ = ["RunDir", "atomic_write_bytes", "atomic_write_text", "markdown_table"]

CONFIG_NAME = "config.toml"


def _version() -> str:
    from . import __version__

    return __version__


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_path(path: Path):
    """Context-free helper: a temporary sibling path to write, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _plain(obj: Any) -> Any:
    """Convert NumPy scalars / arrays and tuples into TOML / JSON-friendly values."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


class RunDir:
    """A resumable run directory.

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
        Overwrite a run directory made with another configuration or version
        instead of refusing it.

    Raises
    ------
    DeepglassError
        When ``path`` holds a run of another kind, configuration or version and
        ``force`` is false.

    Examples
    --------
    >>> run = RunDir(tmp_path / "run", {"seed": 0}, kind="demo")   # doctest: +SKIP
    >>> if not run.has_unit("replicas", "r000"):                   # doctest: +SKIP
    ...     run.write_unit("replicas", "r000", df)
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any], kind: str,
                 force: bool = False):
        self.path = Path(path)
        self.kind = kind
        self.config = _plain(dict(config))
        cfg = self.path / CONFIG_NAME
        if self.path.exists() and not self.path.is_dir():
            raise DeepglassError(f"{self.path} exists and is not a directory")
        found: dict | None = None
        if cfg.exists():
            try:
                found = tomllib.loads(cfg.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                found = {"unreadable": str(exc)}
            version = found.get("deepglass", {}).get("version")
            runs = found.get("runs")
            if version != _version() or not isinstance(runs, dict):
                if not force:
                    why = (f"it was made by deepglass {version}, this is {_version()}"
                           if version else "its config.toml is not a deepglass run")
                    raise DeepglassError(f"run directory {self.path}: {why}; "
                                         "use another --out or pass --force")
                shutil.rmtree(self.path)
                found = None
            elif kind in runs and runs[kind] != self.config:
                if not force:
                    raise DeepglassError(self._mismatch_message(runs[kind]))
                self._clear_kind()
        elif self.path.is_dir() and any(self.path.iterdir()) and not force:
            raise DeepglassError(
                f"{self.path} is not empty and is not a deepglass run; "
                "choose another --out or pass --force to overwrite it")
        self.path.mkdir(parents=True, exist_ok=True)
        runs = dict(found["runs"]) if found else {}
        if runs.get(kind) != self.config:
            runs[kind] = self.config
            atomic_write_text(cfg, tomli_w.dumps({"deepglass": {"version": _version()},
                                                  "runs": runs}))
        self.resumed = any((self.path / "units" / kind).glob("*/*.parquet"))

    @property
    def kinds(self) -> list[str]:
        """The run kinds recorded in this directory's ``config.toml``."""
        return sorted(tomllib.loads((self.path / CONFIG_NAME).read_text()).get("runs", {}))

    def run_config(self, kind: str) -> dict | None:
        """The configuration another kind of run recorded here (``None`` if absent)."""
        return tomllib.loads((self.path / CONFIG_NAME).read_text()).get("runs", {}).get(kind)

    def _clear_kind(self) -> None:
        """Forget this kind's finished units (``force`` on a changed config)."""
        shutil.rmtree(self.path / "units" / self.kind, ignore_errors=True)
        shutil.rmtree(self.path / "arrays" / self.kind, ignore_errors=True)

    def _mismatch_message(self, found: dict) -> str:
        keys = sorted(k for k in set(found) | set(self.config)
                      if found.get(k) != self.config.get(k))
        return (f"run directory {self.path}: its '{self.kind}' configuration differs ("
                + ", ".join(keys) + "); use another --out or pass --force")

    # -- units -------------------------------------------------------------
    def unit_path(self, table: str, unit: str) -> Path:
        return self.path / "units" / self.kind / table / f"{unit}.parquet"

    def has_unit(self, table: str, unit: str) -> bool:
        return self.unit_path(table, unit).exists()

    def finished_units(self, table: str) -> set[str]:
        d = self.path / "units" / self.kind / table
        return {p.stem for p in d.glob("*.parquet")} if d.exists() else set()

    def write_unit(self, table: str, unit: str, df: pd.DataFrame,
                   arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Store one finished unit atomically (arrays first, so a unit is
        complete once its table row exists)."""
        if arrays:
            self.save_arrays(f"{self.kind}/{table}/{unit}", **arrays)
        tmp = _atomic_path(self.unit_path(table, unit))
        try:
            df.to_parquet(tmp, index=False)
            os.replace(tmp, self.unit_path(table, unit))
        finally:
            if tmp.exists():
                tmp.unlink()

    def read_units(self, table: str) -> pd.DataFrame:
        """All finished units of ``table``, concatenated in unit-id order."""
        d = self.path / "units" / self.kind / table
        files = sorted(d.glob("*.parquet")) if d.exists() else []
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    # -- tables, arrays, text ---------------------------------------------
    def write_table(self, name: str, df: pd.DataFrame) -> Path:
        path = self.path / f"{name}.parquet"
        tmp = _atomic_path(path)
        try:
            df.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.path / f"{name}.parquet"
        if not path.exists():
            raise DeepglassError(f"run directory {self.path} has no table '{name}'")
        return pd.read_parquet(path)

    def save_arrays(self, name: str, **arrays: np.ndarray) -> Path:
        path = self.path / "arrays" / f"{name}.npz"
        tmp = _atomic_path(path)
        try:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        path = self.path / "arrays" / f"{name}.npz"
        if not path.exists():
            raise DeepglassError(f"run directory {self.path} has no arrays '{name}'")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def has_arrays(self, name: str) -> bool:
        return (self.path / "arrays" / f"{name}.npz").exists()

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        atomic_write_text(path, json.dumps(_plain(obj), indent=2, default=str) + "\n")
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        atomic_write_text(path, text)
        return path

    def update_summary(self, headline: Mapping[str, Any]) -> Path:
        """Merge ``headline`` into ``summary.json`` (top-level keys; each kind of
        run owns its keys, so several kinds share one summary)."""
        path = self.path / "summary.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(_plain(dict(headline)))
        return self.write_json("summary.json", current)

    def write_report_section(self, markdown: str, title: str | None = None) -> Path:
        """Write this kind's section of the report (``reports/<kind>.md``) and
        rebuild ``report.md`` from every kind's section, in the order the kinds
        were first opened here."""
        atomic_write_text(self.path / "reports" / f"{self.kind}.md", markdown.rstrip() + "\n")
        order = list(tomllib.loads((self.path / CONFIG_NAME).read_text()).get("runs", {}))
        parts = [f"# {title or 'deepglass run'}: {self.path.name}\n",
                 f"deepglass {_version()}; configuration in `config.toml`.\n"]
        for kind in order:
            sec = self.path / "reports" / f"{kind}.md"
            if sec.exists():
                parts.append(sec.read_text())
        return self.write_text("report.md", "\n".join(parts))

    def figure_path(self, name: str) -> Path:
        """Path for ``figures/<name>``; callers save through :func:`save_figure`."""
        d = self.path / "figures"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def save_figure(self, fig, name: str) -> Path:
        """Save a matplotlib figure atomically under ``figures/``."""
        path = self.figure_path(name)
        tmp = _atomic_path(path)
        try:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120,
                        bbox_inches="tight")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path


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


def iter_missing(run: RunDir, table: str, units: Iterable[str]) -> list[str]:
    """The unit ids of ``units`` that ``run`` has not finished yet, in order."""
    done = run.finished_units(table)
    return [u for u in units if u not in done]

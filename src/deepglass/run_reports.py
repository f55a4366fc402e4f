"""How a run directory's shared files are assembled from every kind's parts.

Each kind of run (``frustration``, ``active``, ...) writes its own section of
the report (``reports/<kind>.md``) and its own part of the summary
(``reports/<kind>.summary.json``); ``report.md`` and ``summary.json`` are
rebuilt from all of them, in the order the kinds were first opened, and mark
the kinds computed along a gauge the run no longer holds.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Mapping

from .errors import DeepglassError
from .files import package_version, plain
from .manifest import CONFIG_NAME, gauge_digest, read_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RunReports", "GAUGE_FILE"]

#: the arrays of the real network's gauge that kinds share (``arrays/gauge_real.npz``)
GAUGE_FILE = "gauge_real"

log = logging.getLogger("deepglass.store")


class RunReports:
    """The report and summary methods of :class:`~deepglass.store.RunDir`
    (a mixin: it uses the run's ``path``, ``kind`` and file writers)."""

    def _read_json(self, path: Path) -> dict:
        """A JSON object file, or {} (with a warning) when missing or damaged."""
        if not path.exists():
            return {}
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            log.warning("ignoring damaged %s (%s); rebuilding it", path, type(exc).__name__)
            return {}
        return obj if isinstance(obj, dict) else {}

    def update_summary(self, headline: Mapping[str, Any]) -> Path:
        """Merge ``headline`` into this kind's part (``reports/<kind>.summary.json``)
        and rebuild ``summary.json`` from every kind's part (top-level keys;
        each kind owns its keys).  A damaged part or summary is rebuilt, never
        fatal."""
        part = self.path / "reports" / f"{self.kind}.summary.json"
        current = self._read_json(part)
        current.update(plain(dict(headline)))
        self._write_bytes(part, (json.dumps(current, indent=2, default=str) + "\n").encode())
        merged: dict = {}
        for kind in self._config_order():
            merged.update(current if kind == self.kind else
                          self._read_json(self.path / "reports" / f"{kind}.summary.json"))
        stale = self._along_earlier_gauge()
        if stale:       # these kinds' parts describe a gauge the run no longer holds
            merged["along_earlier_gauge"] = sorted(stale)
        return self.write_json("summary.json", merged)

    def _config_order(self) -> list[str]:
        order = list(tomllib.loads((self.path / CONFIG_NAME).read_text()).get("runs", {}))
        return order if self.kind in order else order + [self.kind]

    def write_report_section(self, markdown: str, title: str | None = None) -> Path:
        """Write this kind's section of the report (``reports/<kind>.md``) and
        rebuild ``report.md`` from every kind's section, in the order the kinds
        were first opened here."""
        self._write_bytes(self.path / "reports" / f"{self.kind}.md",
                          (markdown.rstrip() + "\n").encode("utf-8"))
        parts = [f"# {title or 'deepglass run'}: {self.path.name}\n",
                 f"deepglass {package_version()}; configuration in `config.toml`.\n"]
        stale = self._along_earlier_gauge()
        for kind in self._config_order():
            sec = self.path / "reports" / f"{kind}.md"
            if sec.exists():
                text = sec.read_text(encoding="utf-8", errors="replace")
                if kind in stale:
                    d = stale[kind]
                    d = f"{d:.4f}" if isinstance(d, float) else d
                    head, _, rest = text.partition("\n")
                    text = (f"{head}\n\n> **Computed along an earlier gauge** (delta {d}), "
                            f"not the one `arrays/{GAUGE_FILE}.npz` holds now (replaced by a "
                            f"later run): `{kind}` refuses to resume, `--force` recomputes it "
                            "along this one.\n" + rest)
                parts.append(text)
        return self.write_text("report.md", "\n".join(parts))

    def _along_earlier_gauge(self) -> dict[str, Any]:
        """The kinds whose recorded gauge is not the one ``arrays/gauge_real.npz``
        holds now (a later run with ``--force`` replaced it), with the delta
        they recorded: their sections and summary parts describe another
        gauge's results.  O(nodes), once per gauge file."""
        runs = (read_config(self.path / CONFIG_NAME) or {}).get("runs", {})
        recorded = {k: v["gauge"] for k, v in runs.items()
                    if isinstance(v.get("gauge"), dict) and "sha256" in v["gauge"]}
        if not recorded or not self.has_arrays(GAUGE_FILE):
            return {}
        try:
            st = (self.path / "arrays" / f"{GAUGE_FILE}.npz").stat()
            if getattr(self, "_gauge_digest", (None,))[0] != (key := (st.st_ino, st.st_mtime_ns)):
                g = self.load_arrays(GAUGE_FILE)
                self._gauge_digest = (key, gauge_digest(g["sigma"], float(g["energy"])))
            now = self._gauge_digest[1]
        except (DeepglassError, KeyError, OSError):
            return {}
        return {k: r.get("delta", "?") for k, r in recorded.items() if r["sha256"] != now}

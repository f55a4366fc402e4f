"""The files a run directory owns (:mod:`deepglass.store`): written atomically
through a recorded temporary, checked against their manifest records, and
removed one by one, never outside the run directory (a manifest entry that
leads out of it, or through a symbolic link out of it, is left alone)."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Callable

from .errors import DeepglassError
from .files import file_digest, file_mode, os_error
from .manifest import CONFIG_NAME, MANIFEST_NAME

__all__ = ["OwnedFiles"]

log = logging.getLogger("deepglass.store")


class OwnedFiles:
    """Ownership and verification of a run directory's files.

    The subclass (:class:`deepglass.store.RunDir`) sets ``path`` (the run
    directory), ``kind``, ``_manifest`` (its :class:`~deepglass.manifest.Manifest`),
    ``_verified`` (``(path, sha256)`` pairs checked this process) and
    ``_reported`` (paths already reported).
    """

    def _inside(self, rel: str) -> Path | None:
        """``RUN/rel`` when it lies strictly inside the run directory once
        symbolic links in its parents are resolved (``rel`` itself may be a
        link: removing it removes the link); else None."""
        p = self.path / rel
        try:
            root, parent = self.path.resolve(), p.parent.resolve()
        except (OSError, RuntimeError):
            return None
        if p.name in ("", ".", "..") or (parent != root and root not in parent.parents):
            return None
        return p

    def _outside(self, rel: str) -> None:
        if rel not in self._reported:
            self._reported.add(rel)
            log.warning("%s lists %r, which lies outside the run directory %s; "
                        "leaving it alone", MANIFEST_NAME, rel, self.path)

    def _rel(self, path: Path) -> str:
        return Path(os.path.relpath(Path(path), self.path)).as_posix()

    def owned_files(self) -> list[str]:
        """Paths (relative, POSIX) of the files this run wrote and still has."""
        return sorted(k for k in self._manifest.files if (self.path / k).exists())

    def _remove_stale_tmps(self) -> None:
        """Delete temporary files a killed run left (only names it recorded, and
        the manifest's own compaction temporaries)."""
        for p in self.path.glob(f".{MANIFEST_NAME}.*.tmp"):
            try:
                p.unlink()
            except OSError:
                pass
        for rel in sorted(self._manifest.tmps):
            p = self._inside(rel)
            if p is None:
                self._outside(rel)
                continue
            try:
                if p.is_file():
                    p.unlink()
            except OSError:  # left for the next open; it is never read
                pass

    def _changed_by_hand(self, rel: str, unreadable: bool) -> bool:
        """Whether the file ``rel`` is neither what its record says deepglass wrote
        nor the content that record replaced (a kill between a rewrite's record
        and its rename leaves deepglass's previous file): a user's change.  Under
        a record a crash cut short the file is deepglass's previous one; a file
        that cannot be read counts as ``unreadable``."""
        e = self._manifest.files.get(rel)
        if not e or e.get("torn") or "sha256" not in e or not (self.path / rel).is_file() \
                or self._check_record(rel) is None:
            return False
        try:
            return file_digest(self.path / rel)[0] != e.get("replaces")
        except OSError:
            return unreadable

    def _config_edited(self) -> bool:
        """Whether ``config.toml`` was changed by hand (``seed = 0`` made 1 would
        resume seed-0 units as seed 1's; unreadable, read_config has said so)."""
        return self._changed_by_hand(CONFIG_NAME, unreadable=False)

    def _interrupted_start(self) -> bool:
        """A run killed while it wrote its first file (its ``config.toml``):
        nothing but its manifest, which records no file but that ``config.toml``
        (killed between its record and its rename: not in place), and the
        temporaries it names (removed here, with the manifest).  It starts afresh."""
        names = {p.name for p in self.path.iterdir()}
        # (killed while the empty manifest was first compacted: its temporary alone)
        compacting = {n for n in names if n.startswith(f".{MANIFEST_NAME}.") and n.endswith(".tmp")}
        if MANIFEST_NAME not in names:
            if not compacting or names != compacting:
                return False
            for n in compacting:
                (self.path / n).unlink()
            return True
        self._manifest.load()
        tmps = {Path(t).name for t in self._manifest.tmps if "/" not in t}
        if set(self._manifest.files) - {CONFIG_NAME} or self._manifest.unreadable or \
                not names <= {MANIFEST_NAME} | tmps | compacting:
            return False
        self._remove_stale_tmps()
        if self._manifest.files:        # the record of a config.toml never put in place
            (self.path / MANIFEST_NAME).unlink()
            self._manifest.load()
        return True

    def _remove_owned(self, keep_if: Callable[[str], bool] | None = None,
                      prefixes: tuple[str, ...] = ("",)) -> None:
        """Delete the owned files under ``prefixes`` (manifest entries only, one
        file at a time, never a directory tree), then the directories that held
        them while they are empty."""
        emptied: set[Path] = set()
        for rel in list(self._manifest.files):
            if not rel.startswith(prefixes) or (keep_if is not None and not keep_if(rel)):
                continue
            p = self._inside(rel)
            if p is None:   # a damaged or crafted manifest: never touched
                self._outside(rel)
                continue
            try:
                if p.is_file() or p.is_symlink():
                    p.unlink()
            except OSError as exc:
                raise os_error(p, exc, "remove")
            self._manifest.append({"removed": rel})
            emptied.add(p.parent)
        for d in sorted(emptied, key=lambda d: -len(d.parts)):
            self._rmdir_up(d)

    def _rmdir_up(self, d: Path) -> None:
        """Remove ``d`` and its parents up to the run root while they are empty
        (``os.rmdir`` fails on a non-empty directory: foreign files stay)."""
        while d != self.path and self.path in d.parents:
            try:
                d.rmdir()
            except OSError:
                return
            d = d.parent

    def _check_writable(self, path: Path, rel: str, adopt: bool) -> None:
        if adopt or not os.path.lexists(path) or rel in self._manifest.files:
            return
        self._manifest.load()  # another RunDir on this directory may have written it
        if rel not in self._manifest.files:
            raise DeepglassError(f"{path} exists and was not written by deepglass; "
                                 "move it away or choose another --out")

    def _commit(self, path: Path, write: Callable[[Path], None], adopt: bool = False,
                **meta) -> Path:
        """Write ``path`` through ``write(tmp)``: a recorded temporary sibling,
        the umask's mode, a manifest entry (size, sha256, ``meta``), then an
        atomic rename.  Refuses to replace a file the run does not own."""
        path = Path(path)
        rel = self._rel(path)
        if self._inside(rel) is None:
            raise DeepglassError(f"{path} lies outside the run directory {self.path} "
                                 "(a symbolic link in its path?); deepglass will not write "
                                 "there: choose another --out")
        self._check_writable(path, rel, adopt)
        self._keep_edited(path, rel)
        # the temporary's name is recorded before the file exists, so that a kill
        # at any point leaves only temporaries the next open removes
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        # the record it replaces: a kill between the new record and the rename
        # leaves that older content, which is then not taken for a user's edit
        old = self._manifest.files.get(rel, {}).get("sha256") if path.is_file() else None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._manifest.append({"tmp": self._rel(tmp)})
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise os_error(path, exc)
        try:
            write(tmp)
            os.chmod(tmp, file_mode())
            sha, size = file_digest(tmp)
            self._manifest.append({"path": rel, "sha256": sha, "bytes": size,
                                   "kind": self.kind, **meta,
                                   **({"replaces": old} if old and old != sha else {})})
            os.replace(tmp, path)
            self._verified.add((rel, sha))
        except OSError as exc:
            raise os_error(path, exc) from None
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def _keep_edited(self, path: Path, rel: str) -> None:
        """A report, summary or figure the user changed since deepglass wrote it
        (notes added to ``report.md``) is kept beside the new one as
        ``NAME.edited`` (``NAME.edited-2``, ...) with a warning, not overwritten."""
        # (an unreadable one, its permissions changed, is kept aside as a changed one)
        if not (rel in ("report.md", "summary.json") or rel.startswith("figures/")) \
                or not self._changed_by_hand(rel, unreadable=True):
            return
        k, keep = 1, path.with_name(path.name + ".edited")
        while os.path.lexists(keep):
            k += 1
            keep = path.with_name(f"{path.name}.edited-{k}")
        try:
            os.replace(path, keep)
        except OSError as exc:
            raise os_error(path, exc) from None
        log.warning("%s was changed since deepglass wrote it; kept as %s", path, keep.name)

    def _write_bytes(self, path: Path, data: bytes, adopt: bool = False) -> Path:
        def write(tmp: Path) -> None:
            tmp.write_bytes(data)

        return self._commit(path, write, adopt=adopt)

    def _damage(self, rel: str) -> str | None:
        """Why the owned file ``rel`` no longer matches its record (None: it does).
        O(size) for the checksum, once per file and process."""
        why = self._check_record(rel)
        if why is not None:
            # another RunDir on this directory (one per kind) may have rewritten it
            self._manifest.load()
            why = self._check_record(rel)
        return why

    def _check_record(self, rel: str) -> str | None:
        e = self._manifest.files.get(rel)
        if e is None:
            return "not recorded in the manifest"
        p = self.path / rel
        if not p.is_file():
            return "missing"
        if e.get("torn"):
            return "its record was cut short by a crash while it was written"
        key = (rel, e.get("sha256"))
        if key in self._verified:
            return None
        size = p.stat().st_size
        if size != e.get("bytes"):
            return f"{size} bytes, {e.get('bytes')} written"
        try:
            if file_digest(p)[0] != e.get("sha256"):
                return "checksum differs from the one written"
        except OSError as exc:      # (its permissions changed): written again
            return f"unreadable ({exc.strerror or exc})"
        self._verified.add(key)
        return None

    def _report_damage(self, rel: str, why: str, action: str = "recomputing it",
                       what: str = "unit") -> None:
        if rel not in self._reported:
            self._reported.add(rel)
            log.warning("damaged %s %s in %s (%s); %s", what, rel, self.path, why, action)


"""The on-disk cache of networks trained by the zoo.

Location: ``$DEEPGLASS_CACHE`` if set, else ``$XDG_CACHE_HOME/deepglass``, else
``~/.cache/deepglass``.  A trained network is one safetensors file
``zoo/<name>-seed<seed>-v<code version>.safetensors`` whose header metadata
holds the training summary (held-out accuracy, epochs, seconds, versions).  The
file is written to a temporary name and renamed into place, so concurrent or
interrupted trainings never leave a partial file.  Changing the architecture or
the training recipe bumps the code version, which invalidates old entries.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from ..store import atomic_write_bytes

__all__ = ["cache_dir", "weights_path", "save_weights", "load_weights"]


def cache_dir() -> Path:
    """The deepglass cache directory (not created)."""
    env = os.environ.get("DEEPGLASS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "deepglass"
    return Path.home() / ".cache" / "deepglass"


def weights_path(name: str, seed: int, code_version: int) -> Path:
    """Path of the cached weights of zoo network ``name`` trained with ``seed``."""
    return cache_dir() / "zoo" / f"{name}-seed{int(seed)}-v{int(code_version)}.safetensors"


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], info: dict) -> bool:
    """Atomically write ``state_dict`` with ``info`` as metadata; False (and a warning) if not writable."""
    from safetensors.torch import save

    _remove_stale_temporaries(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    data = save(tensors, metadata={"deepglass": json.dumps(info, sort_keys=True)})
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        warnings.warn(f"could not cache trained weights at {path}: {exc}", RuntimeWarning, stacklevel=3)
        return False
    return True


#: a temporary of the cache older than this is a killed writer's, not a running one's
STALE_SECONDS = 3600


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``.<name>.*.tmp`` files an interrupted save of ``path`` left
    (this exact cache entry's names only, and only if older than an hour)."""
    import time

    if not path.parent.is_dir():
        return
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
        except OSError:
            pass


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The cached ``(state_dict, info)`` at ``path``, or None if absent or unreadable."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        info = json.loads(meta.get("deepglass", "{}"))
    except Exception as exc:  # a corrupt cache entry is retrained, not fatal
        warnings.warn(f"ignoring unreadable cache entry {path}: {exc}", RuntimeWarning, stacklevel=3)
        return None
    return tensors, info

"""Where tensors run: the user's ``device`` checked before anything is built."""

from __future__ import annotations

import torch

from .errors import DeepglassError

__all__ = ["check_device"]


def check_device(device) -> torch.device:
    """Validate a user's ``device`` (CLI ``--device``): ``cpu``, ``cuda`` or
    ``cuda:N``, the CUDA ones only where torch sees a device.

    Raises
    ------
    DeepglassError
        One line, before anything is traced or allocated (``torch.device``
        itself raises a ``RuntimeError`` listing every backend for a bad name,
        and a CPU-only torch an ``AssertionError`` at the first CUDA call).
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda") or (dev.type == "cpu" and dev.index):
        # (torch reads 'cpu:3' as the one CPU; a run would record a device it is not)
        raise DeepglassError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeepglassError(f"device {device!r} requested but torch sees no CUDA device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeepglassError(f"device {device!r} requested but torch sees "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cpu") if dev.type == "cpu" else dev

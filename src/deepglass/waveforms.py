"""Waveform inputs: a ``.wav`` file as one input of a 1-d network.

A file's samples are scaled to [-1, 1] by their PCM format (16- and 32-bit
integers by their full scale, 8-bit unsigned around 128, floating point as
stored), laid out as ``(channels, samples)`` and fitted to the network's input
shape ``(C, L)`` (or ``(L,)``): channels averaged to mono for ``C = 1`` or a
mono file repeated over ``C`` channels; its first ``L`` samples, zero-padded
at the end where the file is shorter.  The sample rate is left as recorded:
resampling to the rate the network was trained at is the user's to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DeepglassError, first_line

__all__ = ["read_wav"]

#: full scale of each integer PCM format (8-bit WAV is unsigned, centred on 128)
_FULL_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2.0 ** 31,
               np.dtype(np.uint8): 128.0}


def read_wav(path: Path, input_shape: Sequence[int]) -> np.ndarray:
    """The waveform of ``path`` fitted to ``input_shape``, float32 (see the
    module docstring).  O(samples)."""
    from scipy.io import wavfile

    try:
        _, data = wavfile.read(path)
    except Exception as exc:  # noqa: BLE001 - scipy raises several kinds on a bad file
        raise DeepglassError(f"{path.name}: cannot read the .wav file "
                             f"({first_line(exc, typed=True, limit=200)})") from None
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (1, 2):
        raise DeepglassError(f"{path.name}: a waveform is (channels, samples); the network's "
                             f"input shape {shape} is not")
    x = data.astype(np.float64)
    if data.dtype == np.uint8:
        x = x - 128.0
    x = x / _FULL_SCALE.get(data.dtype, 1.0)
    x = x[None] if x.ndim == 1 else x.T            # (channels, samples)
    channels, length = (1, shape[0]) if len(shape) == 1 else shape
    if x.shape[0] != channels:
        if channels == 1:
            x = x.mean(0, keepdims=True)
        elif x.shape[0] == 1:
            x = np.repeat(x, channels, 0)
        else:
            raise DeepglassError(f"{path.name}: {x.shape[0]} channels for a network of "
                                 f"{channels} input channels")
    x = x[:, :length]
    if x.shape[1] < length:
        x = np.pad(x, ((0, 0), (0, length - x.shape[1])))
    x = x.astype(np.float32)
    return x[0] if len(shape) == 1 else x

"""ONNX converter: ``DFT`` and ``STFT`` as the fixed linear maps they are.

ONNX holds a complex value as a real tensor with a trailing dimension of 2
(real, imaginary); a real signal has a trailing dimension of 1.  A discrete
Fourier transform of such a tensor along one axis is a real matrix product
(SPEC §1b: the network is what it computes): with ``theta = 2 pi f k / n``,
``(a + i b) exp(-+ i theta)`` is ``a cos + b sin`` / ``b cos - a sin`` (forward)
or ``a cos - b sin`` / ``b cos + a sin`` (inverse, divided by n).  So a ``DFT``
node becomes a dense layer with those weights over the axis (a crop or zero
padding to ``dft_length`` folded in), and an ``STFT`` node frames the signal
(``unfold``, as ``torch.stft`` does), folds the window into the same weights,
and applies them at every frame: the signed graph of the file is the one its
PyTorch model (``torch.fft.rfft`` / ``torch.stft`` read through
``view_as_real``) has (:mod:`deepglass.graph.spectral`).

References: ONNX operators ``DFT`` (opsets 17, 20) and ``STFT`` (opset 17).
"""

from __future__ import annotations

import torch

from ..graph.spectral import dft_matrix
from .onnx_values import _Value


def _parts_last(x: torch.Tensor, axis: int) -> torch.Tensor:
    """(..., axis, ..., parts) -> (..., parts * m) with ``axis`` moved last."""
    return torch.movedim(x, axis, -2).transpose(-1, -2).flatten(-2)


def dft_along(x: torch.Tensor, axis: int, w: torch.Tensor, parts: int = 2) -> torch.Tensor:
    """``x`` (..., parts) transformed along ``axis`` by ``w`` (:func:`dft_matrix`):
    (..., F, ..., ``parts``) with the frequencies (or samples) where ``axis`` was."""
    y = torch.matmul(_parts_last(x, axis), w)
    return torch.movedim(y.unflatten(-1, (-1, parts)), -2, axis)


def stft_frames(x: torch.Tensor, step: int, w: torch.Tensor, length: int) -> torch.Tensor:
    """ONNX STFT of ``x`` (batch, samples, parts): frames of ``length`` samples
    every ``step`` (the last frame ending within the signal), each transformed
    by ``w`` (the window folded in): (batch, frames, F, 2)."""
    frames = x.transpose(1, 2).unfold(-1, length, step)          # (batch, parts, frames, length)
    y = torch.matmul(frames.transpose(1, 2).flatten(-2), w)       # (batch, frames, 2F)
    return y.unflatten(-1, (-1, 2))


class _SpectralOps:
    """``op_DFT`` / ``op_STFT`` of the converter, mixed into
    :class:`deepglass.zoo.onnx_import._Builder`."""

    def _parts(self, node, x: _Value) -> int:
        parts = int(x.tensor.shape[-1])
        if parts not in (1, 2):
            self.refuse(node, f"its input's last dimension has size {parts}; ONNX writes a real "
                        "signal with a last dimension of 1 and a complex one with 2")
        return parts

    def _int_input(self, node, i: int, what: str) -> int | None:
        v = self.opt_const(node, i, what)
        return None if v is None else int(v.reshape(-1)[0])

    def op_DFT(self, node, a):
        """A DFT along one axis: a dense layer with the DFT's real weights."""
        x = self.inp(node, 0)
        rank, parts = x.tensor.dim(), self._parts(node, x)
        if self.opset >= 20:         # axis became an input (default -2)
            axis = self._int_input(node, 2, "axis")
            axis = -2 if axis is None else axis
        else:
            axis = int(a.get("axis", 1))
        axis %= rank
        if axis == rank - 1:
            self.refuse(node, "a transform along the (real, imaginary) dimension")
        if axis == 0:
            self.refuse(node, "a transform along the batch axis mixes the samples")
        inverse, onesided = bool(a.get("inverse", 0)), bool(a.get("onesided", 0))
        m = int(x.tensor.shape[axis])
        # (the inverse of m one-sided bins: a signal of 2 (m - 1) samples by default)
        n = self._int_input(node, 1, "dft_length") or (2 * (m - 1) if inverse and onesided
                                                        else m)
        w = _Value(const=dft_matrix(m, n, parts, inverse, onesided).float())
        self.set(node, self.emit_function(dft_along, [x, axis, w, 1 if inverse and onesided
                                                      else 2], hint="dft", fixed=True))

    def op_STFT(self, node, a):
        """Frames of the signal, each times the window and a DFT (a dense layer)."""
        x = self.inp(node, 0)
        parts = self._parts(node, x)
        if x.tensor.dim() != 3:
            self.refuse(node, f"a signal of {x.tensor.dim()} dimensions (ONNX STFT reads "
                        "(batch, samples, 1 or 2))")
        step = self._int_input(node, 1, "frame_step")
        window = self.opt_const(node, 2, "window")
        length = self._int_input(node, 3, "frame_length")
        if window is None and length is None:
            self.refuse(node, "neither a window nor a frame_length is given")
        if window is not None and length is not None and len(window) != length:
            self.refuse(node, f"a window of {len(window)} samples for frames of {length}")
        length = len(window) if window is not None else length
        if step is None or step < 1 or length > x.tensor.shape[1]:
            self.refuse(node, f"frames of {length} samples every {step} do not fit a signal "
                        f"of {x.tensor.shape[1]}")
        w = dft_matrix(length, length, parts, onesided=bool(a.get("onesided", 1))).float()
        if window is not None:       # the window scales each sample of every part
            w = w * window.float().reshape(-1).repeat(parts)[:, None]
        self.set(node, self.emit_function(stft_frames, [x, step, _Value(const=w), length],
                                          hint="stft", fixed=True))

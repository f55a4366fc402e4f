"""ONNX converter: ``Resize`` / ``Upsample`` as ``F.interpolate`` where PyTorch
computes the same source positions, else as explicit per-axis weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .onnx_values import _Value


class _ResizeOps:
    """``Resize`` and ``Upsample``.

    Methods ``op_<ONNX op>(node, attributes)`` of the converter, mixed into
    :class:`deepglass.zoo.onnx_import._Builder`; they use its state and
    emission helpers (:class:`deepglass.zoo.onnx_builder._BuilderBase`).
    """

    def op_Resize(self, node, a):
        x = self.inp(node, 0)
        if self.opset < 11:
            scales, sizes = self.need_const(node, 1, "scales"), None
        else:
            scales, sizes = self.opt_const(node, 2, "scales"), self.opt_const(node, 3, "sizes")
            if scales is not None and scales.numel() == 0:
                scales = None
        default_ctm = "asymmetric" if self.opset < 11 else "half_pixel"
        self._resize(node, x, a, scales, sizes, a.get("coordinate_transformation_mode", default_ctm),
                     a.get("nearest_mode", "floor" if self.opset < 11 else "round_prefer_floor"))

    def op_Upsample(self, node, a):
        x = self.inp(node, 0)
        scales = self.need_const(node, 1, "scales") if self.inp(node, 1) is not None else torch.tensor(a["scales"])
        self._resize(node, x, a, scales, None, "asymmetric", "floor")

    def _resize(self, node, x: _Value, a, scales, sizes, ctm: str, nearest_mode: str):
        """ONNX resize -> ``F.interpolate`` with the mode and coordinate mapping it computes.

        Nearest: the ONNX source index of every output position (coordinate
        transformation + rounding rule) is compared with what ``nearest`` and
        ``nearest-exact`` pick, and the one that agrees everywhere is used;
        where neither does (rounding of exact ties), the rows and columns are
        gathered with ``index_select`` of those source indices, which is exact.
        Linear: ``align_corners`` -> ``align_corners=True``; ``half_pixel`` and
        ``pytorch_half_pixel`` -> ``align_corners=False`` (PyTorch's own mapping);
        the other mappings (``asymmetric``: TensorFlow's and ``Upsample``'s) are
        ``F.linear`` by each axis's interpolation matrix (non-negative weights
        summing to 1), which is exact.
        """
        mode = a.get("mode", "nearest")
        rank = x.tensor.dim()
        spatial = rank - 2
        in_sizes = list(x.tensor.shape[2:])
        axes = a.get("axes")
        if axes is not None and sorted(int(v) % rank for v in axes) != list(range(2, rank)):
            self.refuse(node, f"resizing axes {list(axes)}; only the spatial axes can be resized")
        if a.get("keep_aspect_ratio_policy", "stretch") != "stretch" and sizes is not None:
            self.refuse(node, f"keep_aspect_ratio_policy={a['keep_aspect_ratio_policy']!r}")
        antialias = bool(int(a.get("antialias", 0))) and mode != "nearest"   # (ignored there)
        if spatial not in (1, 2, 3):
            self.refuse(node, f"resizing a rank-{rank} tensor")
        if sizes is not None:
            out = [int(v) for v in sizes.reshape(-1).tolist()][-spatial:]
            if sizes.numel() == rank and [int(v) for v in sizes.tolist()[:2]] != list(x.tensor.shape[:2]) \
                    and int(sizes[1]) != x.tensor.shape[1]:
                self.refuse(node, "resizing the channel axis")
            sc = [o / n for o, n in zip(out, in_sizes)]
            scale_arg = None
        else:
            vals = [float(v) for v in scales.reshape(-1).tolist()]
            if len(vals) == rank and (vals[0] != 1.0 or vals[1] != 1.0):
                self.refuse(node, f"scales {vals} resize the batch or channel axis")
            sc = vals[-spatial:]
            out = [int(math.floor(n * s)) for n, s in zip(in_sizes, sc)]
            scale_arg = sc
        kw = {"scale_factor": scale_arg} if scale_arg is not None else {"size": out}
        if antialias or mode == "cubic":
            if mode == "cubic" and not antialias and not self._torch_cubic(a, ctm, spatial, out):
                # (TensorFlow's bicubic: coefficient -0.5, other mappings): the
                # interpolation matrix of each axis, from the ONNX definition
                for ax, (n, o, s_) in enumerate(zip(in_sizes, out, sc)):
                    weights = torch.from_numpy(self._cubic_weights(
                        n, o, s_, ctm, float(a.get("cubic_coeff_a", -0.75)),
                        bool(int(a.get("exclude_outside", 0))), node)).to(x.tensor.dtype)
                    x = self._along_axis(x, 2 + ax, weights, f"{node.output[0]}_cubic{ax}")
                self.set(node, x)
                return
            self._torch_resampling(node, x, a, kw, mode, ctm, spatial, out, antialias)
            return
        if mode == "nearest":
            want = [self._onnx_nearest(n, o, s, ctm, nearest_mode, node) for n, o, s in zip(in_sizes, out, sc)]
            torch_mode = self._nearest_mode(in_sizes, kw, want)
            if torch_mode is not None:
                self.set(node, self.emit_function(F.interpolate, [x], {**kw, "mode": torch_mode}))
                return
            for ax, (n, index) in enumerate(zip(in_sizes, want)):  # ties PyTorch rounds otherwise: gather rows
                if not np.array_equal(index, np.arange(n)):
                    x = self.emit_function(torch.index_select, [x, 2 + ax, _Value(const=torch.from_numpy(index))],
                                           hint=f"{node.output[0]}_index{ax}")
            self.set(node, x)
            return
        if mode != "linear":
            self.refuse(node, f"mode {mode!r} is not supported (nearest, linear and cubic are)")
        if ctm == "align_corners":
            kw, align = {"size": out}, True
        elif ctm == "half_pixel" or ctm == "pytorch_half_pixel" and all(o > 1 for o in out):
            align = False
        else:  # a mapping F.interpolate does not have: the interpolation matrix of each axis
            for ax, (n, o, s_) in enumerate(zip(in_sizes, out, sc)):
                weights = torch.from_numpy(self._linear_weights(n, o, s_, ctm, node)).to(x.tensor.dtype)
                x = self._along_axis(x, 2 + ax, weights, f"{node.output[0]}_interp{ax}")
            self.set(node, x)
            return
        torch_mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]
        self.set(node, self.emit_function(F.interpolate, [x], {**kw, "mode": torch_mode, "align_corners": align}))

    def _torch_resampling(self, node, x, a, kw, mode, ctm, spatial, out, antialias):
        """Bicubic and antialiased resampling where they are ``F.interpolate``'s:
        2-d, PyTorch's half-pixel mapping (or ``align_corners`` without
        antialias), the cubic's coefficient -0.75 (-0.5 antialiased, PIL's, as
        the exporter writes ``antialias=True``)."""
        half = ctm == "half_pixel" or ctm == "pytorch_half_pixel" and all(o > 1 for o in out)
        a_coeff = float(a.get("cubic_coeff_a", -0.75))
        fits = spatial == 2 and mode in ("linear", "cubic") and (
            half if antialias else (half or ctm == "align_corners"))
        if mode == "cubic":
            fits = fits and a_coeff == (-0.5 if antialias else -0.75) and \
                (antialias or not int(a.get("exclude_outside", 0)))
        if not fits:
            what = "antialias=1" if antialias else f"mode {mode!r}"
            self.refuse(node, f"{what} with coordinate mapping {ctm!r}, cubic coefficient "
                        f"{a_coeff} and {spatial} spatial axes has no F.interpolate equivalent "
                        "(2-d half-pixel resampling does: bilinear, bicubic with -0.75, "
                        "antialiased with -0.5)")
        if ctm == "align_corners":
            kw = {"size": out}
        self.set(node, self.emit_function(F.interpolate, [x], {
            **kw, "mode": "bilinear" if mode == "linear" else "bicubic",
            "align_corners": ctm == "align_corners", "antialias": antialias}))

    @staticmethod
    def _torch_cubic(a, ctm: str, spatial: int, out) -> bool:
        """Whether a cubic Resize (no antialias) is ``F.interpolate``'s bicubic."""
        half = ctm == "half_pixel" or ctm == "pytorch_half_pixel" and all(o > 1 for o in out)
        return spatial == 2 and (half or ctm == "align_corners") and \
            float(a.get("cubic_coeff_a", -0.75)) == -0.75 and not int(a.get("exclude_outside", 0))

    def _cubic_weights(self, n: int, o: int, s: float, ctm: str, coeff: float,
                       exclude_outside: bool, node) -> np.ndarray:
        """(o, n) matrix of ONNX cubic resampling along one axis: the four taps
        around the source coordinate, with Keys' kernel of coefficient ``coeff``
        (R. Keys, IEEE Trans. ASSP 29 (1981)); taps outside [0, n - 1] read the
        edge, or with ``exclude_outside`` weigh 0 and the rest are renormalized."""
        src = self._onnx_source(n, o, s, ctm, node)
        base = np.floor(src)
        w = np.zeros((o, n))
        for k in (-1, 0, 1, 2):
            idx = base + k
            d = np.abs(src - idx)
            kern = np.where(d <= 1, (coeff + 2) * d ** 3 - (coeff + 3) * d ** 2 + 1,
                            np.where(d < 2, coeff * d ** 3 - 5 * coeff * d ** 2 + 8 * coeff * d
                                     - 4 * coeff, 0.0))
            inside = (idx >= 0) & (idx <= n - 1)
            if exclude_outside:
                kern = np.where(inside, kern, 0.0)
            np.add.at(w, (np.arange(o), np.clip(idx, 0, n - 1).astype(np.int64)), kern)
        if exclude_outside:
            w /= w.sum(1, keepdims=True)
        return w

    def _along_axis(self, x: _Value, axis: int, weights: torch.Tensor, hint: str) -> _Value:
        """``F.linear`` of the (out, in) matrix ``weights`` over ``axis`` (moved last and back)."""
        last = x.tensor.dim() - 1
        if axis != last:
            x = self.emit_function(torch.movedim, [x, axis, last])
        y = self.emit_function(F.linear, [x, _Value(const=weights)], hint=hint, fixed=True)
        return self.emit_function(torch.movedim, [y, last, axis]) if axis != last else y

    def _linear_weights(self, n: int, o: int, s: float, ctm: str, node) -> np.ndarray:
        """(o, n) matrix of ONNX linear resampling along one axis: the source coordinate,
        clamped to [0, n - 1] (the reference's edge padding), splits 1 between its two neighbours."""
        src = np.clip(self._onnx_source(n, o, s, ctm, node), 0, n - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        frac = src - lo
        w = np.zeros((o, n))
        np.add.at(w, (np.arange(o), lo), 1 - frac)
        np.add.at(w, (np.arange(o), hi), frac)
        return w

    def _nearest_mode(self, in_sizes, kw, want) -> str | None:
        """The F.interpolate mode that picks the ONNX source pixels ``want`` on every axis, if any."""
        for torch_mode in ("nearest", "nearest-exact"):
            got = self._torch_nearest(in_sizes, kw, torch_mode)
            if got is not None and all(np.array_equal(g, w) for g, w in zip(got, want)):
                return torch_mode
        return None

    def _onnx_source(self, n: int, o: int, s: float, ctm: str, node) -> np.ndarray:
        """Source coordinate of each output position along an axis of length n -> o (scale s), per ONNX Resize."""
        i = np.arange(o, dtype=np.float64)
        if ctm == "half_pixel":
            src = (i + 0.5) / s - 0.5
        elif ctm == "pytorch_half_pixel":
            src = (i + 0.5) / s - 0.5 if o > 1 else np.zeros(o)
        elif ctm == "align_corners":
            src = i * (n - 1) / (o - 1) if o > 1 else np.zeros(o)
        elif ctm == "asymmetric":
            src = i / s
        elif ctm == "tf_half_pixel_for_nn":
            src = (i + 0.5) / s
        elif ctm == "half_pixel_symmetric":  # half_pixel about the centre of the rounded output
            src = n / 2 * (1 - o / (s * n)) + (i + 0.5) / s - 0.5
        else:
            self.refuse(node, f"coordinate_transformation_mode {ctm!r}")
        return src

    def _onnx_nearest(self, n: int, o: int, s: float, ctm: str, nearest_mode: str, node) -> np.ndarray:
        """Source index of each output position, from the ONNX Resize definition."""
        src = self._onnx_source(n, o, s, ctm, node)
        frac = src - np.floor(src)
        if nearest_mode == "round_prefer_floor":
            idx = np.where(frac == 0.5, np.floor(src), np.round(src))
        elif nearest_mode == "round_prefer_ceil":
            idx = np.where(frac == 0.5, np.ceil(src), np.round(src))
        elif nearest_mode == "floor":
            idx = np.floor(src)
        elif nearest_mode == "ceil":
            idx = np.ceil(src)
        else:
            self.refuse(node, f"nearest_mode {nearest_mode!r}")
        return np.clip(idx, 0, n - 1).astype(np.int64)

    @staticmethod
    def _torch_nearest(in_sizes, kw, mode) -> list[np.ndarray] | None:
        """The source index per axis that F.interpolate(mode) picks, read off an index ramp."""
        picked = []
        for ax, n in enumerate(in_sizes):
            shape = [1, 1] + [1] * len(in_sizes)
            shape[2 + ax] = n
            ramp = torch.arange(n, dtype=torch.float64).reshape(shape)
            try:
                y = F.interpolate(ramp, mode=mode, **kw)
            except (RuntimeError, ValueError):
                return None
            index = [0, 0] + [0] * len(in_sizes)
            index[2 + ax] = slice(None)
            picked.append(y[tuple(index)].round().long().numpy())
        return picked

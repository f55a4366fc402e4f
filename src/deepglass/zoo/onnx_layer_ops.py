"""ONNX converter: layers (convolutions, pools, ``Gemm`` / ``MatMul``,
activations, normalizations, ``LRN``, ``Pad``) as ordinary torch modules.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

from ..graph.blocks.pool import pool_windows   # PyTorch's pool output-size rule
from .onnx_values import _Norm, _Value, _param

#: ONNX Pad modes -> F.pad modes (reflect excludes the edge in both; edge repeats it)
PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def _border_copies(L: int, lo: int, hi: int, mode: str) -> torch.Tensor | None:
    """The source position of every element of an axis of ``L`` elements padded
    by ``lo`` / ``hi`` in ONNX ``mode`` (reflect: mirrored without the edge, edge:
    the edge repeated, wrap: periodic); negative pads crop.  ``None`` where the
    mode has no such copies (reflecting by ``L`` or more, as PyTorch refuses too)."""
    pos = torch.arange(-lo, L + hi)
    if mode == "reflect":
        if max(lo, hi) >= L:
            return None
        pos = torch.where(pos < 0, -pos, pos)
        pos = torch.where(pos >= L, 2 * (L - 1) - pos, pos)
    elif mode == "edge":
        pos = pos.clamp(0, L - 1)
    else:
        pos = pos % L
    return pos


class _LayerOps:
    """Layers with weights, pools, activations and normalizations.

    Methods ``op_<ONNX op>(node, attributes)`` of the converter, mixed into
    :class:`deepglass.zoo.onnx_import._Builder`; they use its state and
    emission helpers (:class:`deepglass.zoo.onnx_builder._BuilderBase`).
    """

    @staticmethod
    def _pads(a, spatial: int, in_sizes, kernel, strides, dilations):
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            pads = list(a.get("pads", [0] * (2 * spatial)))
            return pads[:spatial], pads[spatial:]
        if auto == "VALID":
            return [0] * spatial, [0] * spatial
        begin, end = [], []
        for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
            out = math.ceil(size / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin, end

    def _spatial(self, node, w: torch.Tensor) -> int:
        spatial = w.dim() - 2
        if spatial not in (1, 2, 3):
            self.refuse(node, f"{spatial}-d convolution")
        return spatial

    def op_Conv(self, node, a):
        x = self.inp(node, 0)
        w = self.need_const(node, 1, "weight")
        b = self.opt_const(node, 2, "bias")
        spatial = self._spatial(node, w)
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        groups = int(a.get("group", 1))
        begin, end = self._pads(a, spatial, x.tensor.shape[2:], kernel, strides, dil)
        conv_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial]
        out_ch, in_per_group = w.shape[0], w.shape[1]
        padding = begin if begin == end else [0] * spatial
        conv = conv_cls(in_per_group * groups, out_ch, kernel, stride=strides, padding=padding,
                        dilation=dil, groups=groups, bias=b is not None, device="meta")
        conv.weight = _param(w)
        if b is not None:
            conv.bias = _param(b)
        if begin != end:  # asymmetric zero padding: an explicit pad module first
            pad_cls = {1: nn.ConstantPad1d, 2: nn.ConstantPad2d, 3: nn.ConstantPad3d}[spatial]
            torch_pad = []
            for lo, hi in zip(reversed(begin), reversed(end)):
                torch_pad += [lo, hi]
            x = self.emit_module(node, pad_cls(tuple(torch_pad), 0.0), x)
        self.set(node, self.emit_module(node, conv, x))

    def op_ConvTranspose(self, node, a):
        """ONNX pads (b, e) and output_padding op -> torch padding b, output_padding op + b - e.

        Both crop the full transposed convolution (length ``s (n - 1) + d (k - 1) + 1``,
        extended by ``op``) by ``b`` at the start.  Where that output_padding is
        outside ``[0, max(stride, dilation))``, the layer pads less and a slice
        crops the rest.
        """
        x = self.inp(node, 0)
        w = self.need_const(node, 1, "weight")
        b = self.opt_const(node, 2, "bias")
        spatial = self._spatial(node, w)
        groups = int(a.get("group", 1))
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        out_pad = list(a.get("output_padding", [0] * spatial))
        in_sizes = list(x.tensor.shape[2:])
        full = [s * (n - 1) + d * (k - 1) + 1 for n, s, d, k in zip(in_sizes, strides, dil, kernel)]
        auto = a.get("auto_pad", "NOTSET")
        target = a.get("output_shape")
        if target is None and auto in ("SAME_UPPER", "SAME_LOWER"):
            target = [n * s for n, s in zip(in_sizes, strides)]
        if target is not None:
            target = list(target)[-spatial:]
            total = [f + op - t for f, op, t in zip(full, out_pad, target)]
            if any(t < 0 for t in total):
                self.refuse(node, f"output_shape {target} is larger than the transposed convolution's {full}")
            upper = auto == "SAME_UPPER"
            begin = [t // 2 if upper else t - t // 2 for t in total]
            end = [t - t // 2 if upper else t // 2 for t in total]
        elif auto == "VALID":
            begin, end = [0] * spatial, [0] * spatial
        else:
            pads = list(a.get("pads", [0] * (2 * spatial)))
            begin, end = pads[:spatial], pads[spatial:]
        torch_op = [op + lo - hi for op, lo, hi in zip(out_pad, begin, end)]
        # more cropped at the end than at the start (tf2onnx's "same" transposed
        # convolution, pads [0, 1]): the layer of the flipped signal and kernel
        # crops at its start instead, and the flips are re-indexings, so no
        # cropped row stays behind as nodes and edges of the layer
        flip = [d for d in range(spatial) if not 0 <= torch_op[d] < max(strides[d], dil[d])
                and out_pad[d] == 0 and 0 <= end[d] - begin[d] < max(strides[d], dil[d])]
        if flip:
            w = w.flip([2 + d for d in flip])
            for d in flip:
                begin[d], end[d] = end[d], begin[d]
                torch_op[d] = begin[d] - end[d]      # (op + begin - end, op = 0)
            x = self.emit_function(torch.flip, [x, [2 + d for d in flip]])
        if all(0 <= q < max(s, d) for q, s, d in zip(torch_op, strides, dil)):
            padding, crop = begin, None
        else:  # pad less in the layer, then crop: full indices [b, full + op - e) of [p, full + q - p)
            padding = [min(lo, max(hi - op, 0)) for lo, hi, op in zip(begin, end, out_pad)]
            torch_op = [max(op - hi + p, 0) for op, hi, p in zip(out_pad, end, padding)]
            out = [f + op - lo - hi for f, op, lo, hi in zip(full, out_pad, begin, end)]
            crop = [slice(lo - p, lo - p + n) for lo, p, n in zip(begin, padding, out)]
        cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial]
        conv = cls(w.shape[0], w.shape[1] * groups, kernel, stride=strides, padding=padding,
                   output_padding=torch_op, groups=groups, bias=b is not None, dilation=dil, device="meta")
        conv.weight = _param(w)
        if b is not None:
            conv.bias = _param(b)
        y = self.emit_module(node, conv, x)
        if crop is not None:
            y = self.emit_function(operator.getitem, [y, (slice(None), slice(None), *crop)])
        if flip:
            y = self.emit_function(torch.flip, [y, [2 + d for d in flip]])
        self.set(node, y)

    def _pool(self, node, a, kind: str):
        self._only_first_output(node)
        x = self.inp(node, 0)
        kernel = list(a["kernel_shape"])
        spatial = len(kernel)
        if spatial not in (1, 2, 3):
            self.refuse(node, f"{spatial}-d pooling")
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        sizes = list(x.tensor.shape[2:])
        begin, end = self._pads(a, spatial, sizes, kernel, strides, dil)
        ceil = bool(a.get("ceil_mode", 0))
        include_pad = kind == "avg" and bool(a.get("count_include_pad", 0))
        rescale = None
        if begin != end:
            fit = self._symmetric_pool(sizes, kernel, strides, dil, begin, end, ceil)
            if fit is not None and not include_pad:
                ceil = fit
            elif kind == "max" or all(d == 1 for d in dil):
                # pad explicitly (a max pool ignores -inf), pool without padding; where a
                # mean does not count the padded zeros, rescale it to the in-bounds mean
                pads = [p for lo, hi in zip(reversed(begin), reversed(end)) for p in (lo, hi)]
                x = self.emit_function(F.pad, [x, pads],
                                       {"value": -math.inf} if kind == "max" else None)
                if kind == "avg" and not include_pad:  # its mean of 1 inside, 0 in the pad
                    pool = [F.avg_pool1d, F.avg_pool2d, F.avg_pool3d][spatial - 1]
                    inside = pool(F.pad(torch.ones([1, 1] + sizes), pads), kernel, strides,
                                  ceil_mode=ceil, count_include_pad=True)
                    if not bool((inside > 0).all()):
                        self.refuse(node, f"padding {begin} / {end} makes windows of padding only")
                    rescale = 1.0 / inside
                begin = end = [0] * spatial
            else:
                self.refuse(node, f"asymmetric padding {begin} / {end}: no PyTorch pool has its "
                                  "windows")
        if kind == "max":
            cls = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial]
            mod = cls(kernel, stride=strides, padding=begin, dilation=dil, ceil_mode=ceil)
        else:
            if any(d != 1 for d in dil):
                self.refuse(node, f"dilation {dil}")
            cls = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[spatial]
            mod = cls(kernel, stride=strides, padding=begin, ceil_mode=ceil,
                      count_include_pad=bool(a.get("count_include_pad", 0)) or rescale is not None)
        y = self.emit_module(node, mod, x)
        if rescale is not None:
            y = self.emit_function(operator.mul, [y, _Value(const=rescale.float())])
        self.set(node, y)

    @staticmethod
    def _symmetric_pool(sizes, kernel, strides, dil, begin, end, ceil) -> bool | None:
        """The ``ceil_mode`` with which a PyTorch pool padded by ``begin`` on both sides
        has the windows of the ONNX pool padded ``begin`` / ``end``: the same starts
        (``i * stride - begin``) and the same number, so the same in-bounds elements
        (a max ignores padding, a mean without ``count_include_pad`` divides by the
        in-bounds count). Caffe's ceil-mode pools and SAME pooling are exported so.
        ``None`` where there is none."""
        def onnx_out(n, k_eff, s, lo, hi):
            span = n + lo + hi - k_eff
            return (-(-span // s) if ceil else span // s) + 1

        for c in (ceil, not ceil):
            if all(2 * lo <= (k - 1) * d + 1
                   and len(pool_windows(n, k, s, lo, d, c)) == onnx_out(n, (k - 1) * d + 1, s, lo, hi)
                   for n, k, s, d, lo, hi in zip(sizes, kernel, strides, dil, begin, end)):
                return c
        return None

    def op_MaxPool(self, node, a):
        if int(a.get("storage_order", 0)) != 0 and len(node.output) > 1:
            self.refuse(node, "storage_order")
        self._pool(node, a, "max")

    def op_AveragePool(self, node, a):
        self._pool(node, a, "avg")

    def _global(self, node, kind):
        x = self.inp(node, 0)
        spatial = x.tensor.dim() - 2
        if spatial not in (1, 2, 3):
            self.refuse(node, f"a rank-{x.tensor.dim()} input")
        if kind == "avg":
            mod = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[spatial](1)
        else:
            mod = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}[spatial](1)
        self.set(node, self.emit_module(node, mod, x))

    def op_GlobalAveragePool(self, node, a):
        self._global(node, "avg")

    def op_GlobalMaxPool(self, node, a):
        self._global(node, "max")

    # -- linear layers ------------------------------------------------------------
    def _linear(self, node, x: _Value, weight: torch.Tensor, bias: torch.Tensor | None) -> _Value:
        lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        lin.weight = _param(weight)
        if bias is not None:
            lin.bias = _param(bias)
        return self.emit_module(node, lin, x)

    def op_Gemm(self, node, a):
        x = self.inp(node, 0)
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        if x.is_const:
            B, C = self.inp(node, 1), self.inp(node, 2)
            if not B.is_const or (C is not None and not C.is_const):
                self.refuse(node, "a constant A input with an activation B or C "
                            "(constant @ activation)")
            # arithmetic on constants (a bias computed from parameters): folded
            A = x.const.t() if int(a.get("transA", 0)) else x.const
            Bm = B.const.t() if int(a.get("transB", 0)) else B.const
            y = alpha * (A @ Bm)
            self.set(node, _Value(const=y if C is None else y + beta * C.const))
            return
        if int(a.get("transA", 0)):
            self.refuse(node, "transA=1")
        if x.tensor.dim() != 2:
            self.refuse(node, f"an input of rank {x.tensor.dim()}")
        B = self.need_const(node, 1, "B matrix").float()
        weight = alpha * (B if int(a.get("transB", 0)) else B.t())  # (out, in)
        bias = None
        if self.inp(node, 2) is not None:
            C = self.need_const(node, 2, "C bias").float()
            if C.dim() == 2 and C.shape[0] != 1:
                self.refuse(node, f"C of shape {list(C.shape)} is not a bias")
            bias = beta * torch.broadcast_to(C.reshape(-1) if C.dim() == 2 else C, (weight.shape[0],)).clone()
        self.set(node, self._linear(node, x, weight.contiguous(), bias))

    def op_MatMul(self, node, a):
        x = self.inp(node, 0)
        W = self.inp(node, 1)
        if x.is_const and W.is_const:
            self.set(node, _Value(const=torch.matmul(x.const, W.const)))
            return
        if x.is_const or not W.is_const or W.const.dim() != 2:
            # W @ x (the weight on the left, a convolution written as W @ unfold(x)),
            # a weight per group (G, D, E), or a product of two values: the
            # capture reads the first two as dense layers and refuses the third
            self.set(node, self.emit_function(torch.matmul, [x, W], hint="matmul"))
            return
        weight = W.const.float().t().contiguous()
        bias = None
        users = self.consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "Add" and node.output[0] not in self.graph_outputs:
            add = users[0]
            other = [n for n in add.input if n != node.output[0]]
            if len(other) == 1 and other[0] in self.values and self.values[other[0]].is_const:
                c = self.values[other[0]].const.float()
                out = weight.shape[0]
                if c.numel() == out and (c.dim() == 0 and out == 1 or c.dim() >= 1 and c.shape[-1] == out):
                    bias = c.reshape(-1).clone()
                    self.fused_adds[id(add)] = node.output[0]
        self.set(node, self._linear(node, x, weight, bias))

    # -- activations ----------------------------------------------------------------
    def _act(self, node, module: nn.Module):
        self.set(node, self.emit_module(node, module, self.inp(node, 0)))

    def op_Relu(self, node, a):
        self._act(node, nn.ReLU())

    def op_Sigmoid(self, node, a):
        self._act(node, nn.Sigmoid())

    def op_Tanh(self, node, a):
        self._act(node, nn.Tanh())

    def op_LeakyRelu(self, node, a):
        self._act(node, nn.LeakyReLU(float(a.get("alpha", 0.01))))

    def op_Elu(self, node, a):
        self._act(node, nn.ELU(float(a.get("alpha", 1.0))))

    def op_HardSwish(self, node, a):
        self._act(node, nn.Hardswish())

    def op_Mish(self, node, a):
        self._act(node, nn.Mish())

    def op_Softplus(self, node, a):
        self._act(node, nn.Softplus())

    def op_Selu(self, node, a):
        """``nn.SELU`` for its constants (ONNX's defaults), refused with others."""
        alpha, gamma = float(a.get("alpha", 1.67326319217681884765625)), float(a.get("gamma", 1.05070102214813232421875))
        if abs(alpha - 1.6732632423543772) > 1e-6 or abs(gamma - 1.0507009873554805) > 1e-6:
            self.refuse(node, f"alpha={alpha:g}, gamma={gamma:g}: only nn.SELU's constants "
                              "(alpha 1.6733, gamma 1.0507) are supported")
        self._act(node, nn.SELU())

    def op_Celu(self, node, a):
        self._act(node, nn.CELU(float(a.get("alpha", 1.0))))

    def op_Log(self, node, a):
        """Folded on constants; ``Log(Sigmoid(x))`` (torch's exporters' ``nn.LogSigmoid``) is that
        module of ``x``; the log of another activation an elementwise function (a log
        compression), as ``torch.log``."""
        x = self.inp(node, 0)
        if x.is_const:
            self.set(node, _Value(const=torch.log(x.const)))
            return
        sig = self.producer.get(node.input[0])
        if sig is None or sig.op_type != "Sigmoid" or self.values[sig.input[0]].is_const:
            self.set(node, self.emit_function(torch.log, [x]))
            return
        self.set(node, self.emit_module(node, nn.LogSigmoid(), self.values[sig.input[0]]))

    def op_Gelu(self, node, a):
        approx = a.get("approximate", "none")
        if approx not in ("none", "tanh"):
            self.refuse(node, f"approximate={approx!r}")
        self._act(node, nn.GELU(approximate=approx))

    def op_HardSigmoid(self, node, a):
        """``max(0, min(1, alpha x + beta))``: ``nn.Hardsigmoid`` for PyTorch's (1/6, 1/2), else written out."""
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        x = self.inp(node, 0)
        if abs(alpha - 1 / 6) <= 1e-6 and abs(beta - 0.5) <= 1e-6:
            self._act(node, nn.Hardsigmoid())
            return
        y = self.emit_function(torch.add, [self.emit_function(torch.mul, [x, alpha]), beta])
        self.set(node, self.emit_function(torch.clamp, [y], {"min": 0.0, "max": 1.0}))

    def op_PRelu(self, node, a):
        """Per-channel (or single) slope -> ``nn.PReLU`` with the learned slopes; else ``where(x >= 0, x, slope x)``."""
        x = self.inp(node, 0)
        slope = self.need_const(node, 1, "slope").float()
        rank = x.tensor.dim()
        if slope.dim() > rank or torch.broadcast_shapes(slope.shape, x.tensor.shape) != x.tensor.shape:
            self.refuse(node, f"slope of shape {list(slope.shape)} for an input of shape {list(x.tensor.shape)}")
        padded = slope.reshape((1,) * (rank - slope.dim()) + tuple(slope.shape))
        channel_only = rank >= 2 and all(d == 1 for i, d in enumerate(padded.shape) if i != 1)
        if slope.numel() == 1 or (channel_only and padded.shape[1] == x.tensor.shape[1]):
            mod = nn.PReLU(slope.numel(), device="meta")
            mod.weight = _param(slope.reshape(-1))
            self._act(node, mod)
            return
        neg = self.emit_function(torch.mul, [x, _Value(const=slope)], hint=node.output[0])
        pos = self.emit_function(torch.ge, [x, 0.0])
        self.set(node, self.emit_function(torch.where, [pos, x, neg]))

    def op_Clip(self, node, a):
        x = self.inp(node, 0)
        lo, hi = a.get("min"), a.get("max")
        if self.opset >= 11 or len(node.input) > 1:
            lo_c, hi_c = self.opt_const(node, 1, "min"), self.opt_const(node, 2, "max")
            lo = None if lo_c is None else float(lo_c)
            hi = None if hi_c is None else float(hi_c)
        lo = None if lo is None or lo == -math.inf else float(lo)
        hi = None if hi is None or hi == math.inf else float(hi)
        if lo is None and hi is None:
            self.set(node, x)
        elif lo == 0.0 and hi is None:
            self._act(node, nn.ReLU())
        elif lo == 0.0 and hi == 6.0:
            self._act(node, nn.ReLU6())
        elif lo is not None and hi is not None:
            self._act(node, nn.Hardtanh(lo, hi))
        else:
            self.set(node, self.emit_function(torch.clamp, [x], {"min": lo, "max": hi}))

    def op_Softmax(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + rank if axis < 0 else axis
        if self.opset < 13 and axis != rank - 1 and any(d != 1 for d in x.tensor.shape[axis + 1:]):
            self.refuse(node, f"softmax (opset {self.opset}) over the flattened axes {axis}.. is not a "
                              "single-dimension softmax")
        if axis == 0:
            self._batch_axis(x)
        self._act(node, nn.Softmax(dim=axis))

    def op_LogSoftmax(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + rank if axis < 0 else axis
        if self.opset < 13 and axis != rank - 1 and any(d != 1 for d in x.tensor.shape[axis + 1:]):
            self.refuse(node, f"log-softmax (opset {self.opset}) over the flattened axes {axis}..")
        if axis == 0:
            self._batch_axis(x)
        self._act(node, nn.LogSoftmax(dim=axis))

    # -- normalizations -------------------------------------------------------------
    def op_BatchNormalization(self, node, a):
        x = self.inp(node, 0)
        if x.is_const and not any(o and (self.consumers.get(o) or o in self.graph_outputs)
                                  for o in node.output[1:]):
            # of constants: a weight standardization (timm's StdConv2d, NF-Nets) the
            # TorchScript exporter writes as a training-mode batch norm of the weights
            stats = [self.need_const(node, i, "statistics").float() for i in range(1, 5)]
            self.set(node, _Value(const=F.batch_norm(
                x.const.float(), stats[2].clone(), stats[3].clone(), stats[0], stats[1],
                training=bool(int(a.get("training_mode", 0))), momentum=0.0,
                eps=float(a.get("epsilon", 1e-5)))))
            return
        # training mode: ``training_mode=1`` (opset 14+), or before opset 14 the
        # optional outputs (running and saved statistics) written at all
        if int(a.get("training_mode", 0)) or (self.opset < 14 and any(node.output[1:])):
            self.refuse(node, "a training-mode batch norm (the file normalizes by each "
                        "batch's own statistics: exported with the model in train mode); "
                        "export it after model.eval()")
        self._only_first_output(node)
        scale, shift = self.need_const(node, 1, "scale"), self.need_const(node, 2, "bias")
        mean, var = self.need_const(node, 3, "mean"), self.need_const(node, 4, "variance")
        rank = x.tensor.dim()
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
        if cls is None:
            self.refuse(node, f"a rank-{rank} input")
        bn = cls(scale.numel(), eps=float(a.get("epsilon", 1e-5)), momentum=1.0 - float(a.get("momentum", 0.9)),
                 device="meta")
        bn.weight, bn.bias = _param(scale), _param(shift)
        bn.running_mean = mean.detach().float().clone()
        bn.running_var = var.detach().float().clone()
        bn.num_batches_tracked = torch.tensor(0, dtype=torch.long)
        self.set(node, self.emit_module(node, bn, x))

    def op_LayerNormalization(self, node, a):
        self._only_first_output(node)
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", -1))
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            self.refuse(node, "normalization over the batch axis")
        shape = tuple(x.tensor.shape[axis:])
        scale, bias = self.need_const(node, 1, "scale"), self.opt_const(node, 2, "bias")
        norm = _Norm("layer", x, float(a.get("epsilon", 1e-5)), shape,
                     torch.broadcast_to(scale.float(), shape).clone(),
                     None if bias is None else torch.broadcast_to(bias.float(), shape).clone())
        self._emit_norm(node, norm)

    def op_GroupNormalization(self, node, a):
        """Opset 18 scales per group (repeated over its channels), opset 21 per channel."""
        x = self.inp(node, 0)
        groups = int(a["num_groups"])
        channels = x.tensor.shape[1]
        scale, bias = self.need_const(node, 1, "scale").float(), self.need_const(node, 2, "bias").float()
        if channels % groups:
            self.refuse(node, f"{channels} channels in {groups} groups")
        if scale.numel() == groups and groups != channels:
            scale = scale.repeat_interleave(channels // groups)
            bias = bias.repeat_interleave(channels // groups)
        self._emit_norm(node, _Norm("group", x, float(a.get("epsilon", 1e-5)), (groups, channels),
                                    scale.reshape(-1).clone(), bias.reshape(-1).clone()))

    def op_InstanceNormalization(self, node, a):
        x = self.inp(node, 0)
        scale, bias = self.need_const(node, 1, "scale"), self.need_const(node, 2, "bias")
        spatial = x.tensor.dim() - 2
        if spatial not in (1, 2, 3):
            self.refuse(node, f"a rank-{x.tensor.dim()} input")
        cls = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial]
        mod = cls(scale.numel(), eps=float(a.get("epsilon", 1e-5)), affine=True, device="meta")
        mod.weight, mod.bias = _param(scale), _param(bias)
        self._act(node, mod)

    def op_LRN(self, node, a):
        self._act(node, nn.LocalResponseNorm(int(a["size"]), alpha=float(a.get("alpha", 1e-4)),
                                             beta=float(a.get("beta", 0.75)), k=float(a.get("bias", 1.0))))

    # -- padding and resampling -----------------------------------------------------
    def op_Pad(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        mode = a.get("mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in PAD_MODES:
            self.refuse(node, f"mode {mode!r} is not supported (constant, reflect, edge and wrap are)")
        if self.opset < 11:
            pads, value = list(a["pads"]), float(a.get("value", 0.0))
            axes = list(range(rank))
        else:
            pads = [int(p) for p in self.need_const(node, 1, "pads").reshape(-1).tolist()]
            v = self.opt_const(node, 2, "constant value")
            value = 0.0 if v is None else float(v.reshape(-1)[0])
            ax = self.opt_const(node, 3, "axes")
            axes = list(range(rank)) if ax is None else [int(i) + rank if int(i) < 0 else int(i) for i in ax.tolist()]
        n = len(axes)
        per_axis = {ax: (pads[i], pads[i + n]) for i, ax in enumerate(axes)}
        first = min((ax for ax, p in per_axis.items() if p != (0, 0)), default=None)
        if first is None:
            self.set(node, x)
            return
        torch_pad: list[int] = []
        # F.pad lists the last axis first, down to the first padded one (its border
        # modes: every axis after the channels, whose size decides the mode's rank)
        lowest = 2 if mode != "constant" and first >= 2 else first
        for ax in range(rank - 1, lowest - 1, -1):
            torch_pad += list(per_axis.get(ax, (0, 0)))
        if mode != "constant":
            # the border copies values inside: F.pad's reflect / replicate / circular
            # where they apply (1 to 3 trailing axes of a batch with channels), else
            # the same copies as a gather along each padded axis (a (batch, samples)
            # signal, a padded channel axis)
            if first == 0:
                self.refuse(node, f"mode {mode!r} pads the batch axis")
            if first >= 2 and len(torch_pad) // 2 <= min(3, rank - 2):
                self.set(node, self.emit_function(F.pad, [x, torch_pad], {"mode": PAD_MODES[mode]}))
                return
            for ax, (lo, hi) in sorted(per_axis.items()):
                if (lo, hi) != (0, 0):
                    src = _border_copies(int(x.tensor.shape[ax]), lo, hi, mode)
                    if src is None:
                        self.refuse(node, f"mode {mode!r} with pads {lo}, {hi} on an axis of "
                                          f"{int(x.tensor.shape[ax])} elements")
                    x = self.emit_function(torch.index_select, [x, ax, _Value(const=src)])
            self.set(node, x)
            return
        if first == 0:
            self._batch_axis(x)         # constant samples added to the batch
        self.set(node, self.emit_function(F.pad, [x, torch_pad], {"mode": "constant", "value": value}))

"""ONNX converter: writes and reads at fixed positions (``ScatterND``,
``ScatterElements``, ``Col2Im``, ``GatherElements``) and ``Einsum`` with
constant operands, as the torch ops the capture reads
(:mod:`deepglass.graph.aten_scatter`, SPEC §1): a write is a re-indexing, an
``add`` reduction a sum of copies.  Positions must be constants; a ``mul``,
``max`` or ``min`` reduction chooses or multiplies per sample and is refused.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .onnx_values import _Value


def scatter_nd(data: torch.Tensor, idx: torch.Tensor, updates: torch.Tensor,
               accumulate: bool) -> torch.Tensor:
    """ONNX ScatterND: ``data[idx[..., 0], ..., idx[..., k-1]] (+)= updates``."""
    return data.index_put(tuple(idx[..., k] for k in range(idx.shape[-1])), updates,
                          accumulate=accumulate)


def scatter_elements(data: torch.Tensor, axis: int, idx: torch.Tensor,
                     updates: torch.Tensor, accumulate: bool) -> torch.Tensor:
    """ONNX ScatterElements: ``torch.scatter`` (or ``scatter_add``) along ``axis``."""
    if accumulate:
        return data.scatter_add(axis, idx, updates)
    return data.scatter(axis, idx, updates)


class _ScatterOps:
    """``op_<ONNX op>(node, attributes)`` methods of the converter for writes at
    fixed positions, mixed into :class:`deepglass.zoo.onnx_import._Builder`."""

    def _accumulate(self, node, a) -> bool:
        reduction = a.get("reduction", "none")
        if reduction not in ("none", "add"):
            self.refuse(node, f"reduction {reduction!r} chooses or multiplies the elements "
                        "written to one position per sample (supported: 'none', 'add')")
        return reduction == "add"

    def _positions(self, node, i: int, size: int | None = None) -> _Value:
        """Constant indices; along an axis of ``size`` elements, negative ones
        (ONNX allows ``-size`` to ``-1``) counted from its end, as torch's
        ``scatter`` / ``gather`` do not."""
        v = self.inp(node, i)
        if not v.is_const:
            self.refuse(node, "its positions are computed from the input (a scatter that "
                        "depends on the data has no fixed edges)")
        idx = v.const.long()
        return _Value(const=idx if size is None else torch.where(idx < 0, idx + size, idx))

    def _axis_size(self, node, a, x) -> tuple[int, int]:
        t = x.const if x.is_const else x.tensor
        axis = int(a.get("axis", 0)) % t.dim()
        return axis, int(t.shape[axis])

    def op_ScatterND(self, node, a):
        data, updates = self.inp(node, 0), self.inp(node, 2)
        idx = self._positions(node, 1)
        # the index tuples start at the batch axis: right at the file's batch of 1
        self._batch_axis(data)
        self._batch_axis(updates)
        self.set(node, self.emit_function(scatter_nd, [data, idx, updates,
                                                       self._accumulate(node, a)], hint="idx"))

    def op_ScatterElements(self, node, a):
        data, updates = self.inp(node, 0), self.inp(node, 2)
        axis, size = self._axis_size(node, a, data)
        idx = self._positions(node, 1, size)
        # the indices hold one row per sample of the file's batch of 1
        self._batch_axis(data)
        self._batch_axis(updates)
        self.set(node, self.emit_function(scatter_elements, [
            data, axis, idx, updates, self._accumulate(node, a)], hint="idx"))

    op_Scatter = op_ScatterElements       # its opset-9 name

    def op_GatherElements(self, node, a):
        """``torch.gather`` at constant positions: a re-indexing."""
        x = self.inp(node, 0)
        axis, size = self._axis_size(node, a, x)
        idx = self._positions(node, 1, size)
        self._batch_axis(x)          # the indices hold one row per sample of the batch of 1
        self.set(node, self.emit_function(torch.gather, [x, axis, idx], hint="idx"))

    def op_Einsum(self, node, a):
        """``torch.einsum`` of one activation and constants (a product by a
        fixed weight; two activations are refused before conversion)."""
        operands = [self.inp(node, i) for i in range(len(node.input))]
        self.set(node, self.emit_function(torch.einsum, [a["equation"], *operands]))

    def op_Col2Im(self, node, a):
        """``F.fold``: the sum of each column's elements at their image positions."""
        x = self.inp(node, 0)
        size = [int(s) for s in self.need_const(node, 1, "image shape")]
        block = [int(s) for s in self.need_const(node, 2, "block shape")]
        n = len(block)
        pads = list(a.get("pads", [0] * 2 * n))
        if n != 2:
            self.refuse(node, f"a {n}-d Col2Im (torch's fold is 2-d)")
        if pads[:n] != pads[n:]:
            self.refuse(node, f"pads {pads} differ at the start and the end of an axis "
                        "(torch's fold pads both alike)")
        self.set(node, self.emit_function(F.fold, [x], {
            "output_size": size, "kernel_size": block,
            "dilation": list(a.get("dilations", [1] * n)), "padding": pads[:n],
            "stride": list(a.get("strides", [1] * n))}))

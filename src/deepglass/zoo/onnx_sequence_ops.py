"""ONNX converter: sequences of tensors (``SplitToSequence``, ``SequenceAt``,
``SequenceConstruct``, ``ConcatFromSequence``, ``SequenceLength``) with a
length and positions fixed by constants, as the dynamo exporter writes
``torch.chunk`` / ``split`` / ``unbind`` without its optimizer: a sequence is a
list of the converter's values, so a split read at a position is the slice a
``Split`` gives, and a concatenation is ``torch.cat`` / ``torch.stack``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch

from .onnx_values import _Value


@dataclass
class _Sequence:
    """An ONNX sequence value: its elements, each a converter value."""

    items: list


class _SequenceOps:
    """``op_<ONNX op>`` methods of the converter for sequences, mixed into
    :class:`deepglass.zoo.onnx_import._Builder`."""

    def _sequence(self, node, i: int) -> list:
        v = self.values.get(node.input[i])
        if not isinstance(v, _Sequence):
            self.refuse(node, f"input {node.input[i]!r} is not a sequence the converter made")
        return v.items

    def op_SplitToSequence(self, node, a):
        x = self.inp(node, 0)
        t = x.tensor
        axis = int(a.get("axis", 0)) % t.dim()
        size = int(t.shape[axis])
        split = self.opt_const(node, 1, "split")
        keep = bool(a.get("keepdims", 1))
        if split is None:              # pieces of 1, the axis dropped unless keepdims
            sizes = [1] * size
        elif split.dim() == 0:         # pieces of ``split``, the last one shorter
            k = int(split)
            sizes = [min(k, size - s) for s in range(0, size, k)]
            keep = True
        else:
            sizes, keep = [int(s) for s in split.tolist()], True
        if sum(sizes) != size or not all(s > 0 for s in sizes):
            self.refuse(node, f"split sizes {sizes} of an axis of length {size}")
        if axis == 0:
            self._batch_axis(x)
        items, start = [], 0
        for s in sizes:
            index = tuple([slice(None)] * axis + [slice(start, start + s) if keep else start])
            items.append(self.emit_function(operator.getitem, [x, index]))
            start += s
        self.values[node.output[0]] = _Sequence(items)

    def op_SequenceAt(self, node, a):
        items = self._sequence(node, 0)
        pos = int(self.need_const(node, 1, "position"))
        if not -len(items) <= pos < len(items):
            self.refuse(node, f"position {pos} of a sequence of {len(items)}")
        self.set(node, items[pos])

    def op_SequenceConstruct(self, node, a):
        self.values[node.output[0]] = _Sequence([self.inp(node, i)
                                                 for i in range(len(node.input))])

    def op_SequenceLength(self, node, a):
        self.set(node, _Value(const=torch.tensor(len(self._sequence(node, 0)))))

    def op_ConcatFromSequence(self, node, a):
        items = self._sequence(node, 0)
        axis = int(a["axis"])
        if a.get("new_axis", 0):
            rank = items[0].tensor.dim() + 1
            self.set(node, self.emit_function(torch.stack, [items, axis % rank]))
        else:
            self.set(node, self.emit_function(torch.cat, [items, axis % items[0].tensor.dim()]))

"""ONNX converter: constants, folded shape arithmetic and tensor re-indexing
(``Constant``, ``Shape``, ``Gather``, ``Reshape``, ``Transpose``, ``Slice``, ...).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .onnx_values import _Value, _attrs, _to_tensor, _widen


def gather_nd(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """ONNX GatherND with ``batch_dims = 0``: ``x[idx[..., 0], ..., idx[..., q-1]]``."""
    return x[tuple(idx[..., k] for k in range(idx.shape[-1]))]


class _ShapeOps:
    """Constants, folded shape arithmetic and re-indexing ops.

    Methods ``op_<ONNX op>(node, attributes)`` of the converter, mixed into
    :class:`deepglass.zoo.onnx_import._Builder`; they use its state and
    emission helpers (:class:`deepglass.zoo.onnx_builder._BuilderBase`).
    """

    def _batch_axis(self, x: _Value) -> None:
        """An op that reads or moves the batch axis (axis 0) of an activation:
        written with the file's batch of 1 it is right at that batch only (at
        another it would pick, keep or mix samples silently), so the module runs
        the graph once per sample (:class:`~deepglass.zoo.onnx_batch.PerSample`)
        and says ``batch_one_only``."""
        if not x.is_const:
            self.batch_one_only = True

    def op_Constant(self, node, a):
        if "value" in a:
            t = _to_tensor(a["value"])
        elif "value_float" in a:
            t = torch.tensor(a["value_float"], dtype=torch.float32)
        elif "value_floats" in a:
            t = torch.tensor(list(a["value_floats"]), dtype=torch.float32)
        elif "value_int" in a:
            t = torch.tensor(a["value_int"], dtype=torch.int64)
        elif "value_ints" in a:
            t = torch.tensor(list(a["value_ints"]), dtype=torch.int64)
        else:
            self.refuse(node, f"a constant with attributes {sorted(a)}")
        self.set(node, _Value(const=t))

    def op_Identity(self, node, a):
        self.set(node, self.inp(node, 0))

    # -- shape arithmetic -------------------------------------------------------
    def op_Shape(self, node, a):
        x = self.inp(node, 0)
        shape = torch.tensor(list(x.tensor.shape), dtype=torch.int64)  # batch dimension: 1
        start, end = a.get("start", 0), a.get("end", None)
        self.set(node, _Value(const=shape[start:end]))

    def op_Cast(self, node, a):
        """Folded on constants; a no-op on an activation of the target dtype.  Every
        floating dtype is float32 here (:func:`~deepglass.zoo.onnx_values._widen`), so the
        casts of a mixed-precision file (float32 in and out, an fp16 body) are no-ops."""
        from onnx import TensorProto, helper

        if a["to"] == TensorProto.BFLOAT16:
            dtype = torch.float32
        else:
            dtype = _widen(torch.from_numpy(np.zeros(0, dtype=helper.tensor_dtype_to_np_dtype(a["to"]))).dtype)
        self._cast(node, dtype)

    def op_CastLike(self, node, a):
        """A cast to the dtype of the second input (the dynamo exporter's cast
        of a constant to the activation's dtype): as :meth:`op_Cast`."""
        like = self.inp(node, 1)
        self._cast(node, _widen(like.const.dtype if like.is_const else like.tensor.dtype))

    def _cast(self, node, dtype: torch.dtype) -> None:
        x = self.inp(node, 0)
        if not x.is_const and dtype == x.tensor.dtype:
            self.set(node, x)  # a no-op cast
        elif x.is_const:
            self.set(node, _Value(const=x.const.to(dtype)))
        else:
            self.refuse(node, f"a cast of a {x.tensor.dtype} activation to {dtype} changes the arithmetic")

    def _fold(self, node, fn: Callable) -> None:
        """An op evaluated at conversion time on constant inputs (shape arithmetic of dynamic exports)."""
        vals = [self.inp(node, i) for i in range(len(node.input))]
        if any(v is not None and not v.is_const for v in vals):
            self.refuse(node, "on an activation; only shape arithmetic on constants is folded")
        self.set(node, _Value(const=fn(*[None if v is None else v.const for v in vals])))

    def op_GatherND(self, node, a):
        """A gather by constant index tuples (an adaptive pool written out by an
        exporter): a re-indexing.  Between two Transposes that keep the batch
        axis out of it (the dynamo exporter's nearest-exact upsampling) it is
        matched at the first Transpose (:meth:`_fuse_axis_gather`)."""
        if int(a.get("batch_dims", 0)) != 0:
            self.refuse(node, "GatherND with batch_dims > 0 is not supported")
        x = self.inp(node, 0)
        self._batch_axis(x)          # its index tuples start with the batch index
        idx = _Value(const=self.need_const(node, 1, "indices").long())
        self.set(node, self.emit_function(gather_nd, [x, idx], hint="idx"))

    def op_Where(self, node, a):
        """Folded on constants; with a constant condition choosing between an
        activation and a constant, a fixed masking (an adaptive pool written as
        a gather, a masking and a sum), which the capture takes as padding.
        ``Where(Greater(beta x, t), x, softplus(beta x) / beta)`` (the dynamo
        exporter's ``nn.Softplus(beta, t)``) is that module."""
        first = self.inp(node, 1)
        if self._lerp_where(node) is not None and tuple(first.tensor.shape) == torch.broadcast_shapes(
                *(tuple(self.inp(node, i).tensor.shape) for i in range(3))):
            # torch.lerp: both branches are the same value, written two ways
            self.set(node, first)
            return
        sp = self._softplus_threshold(node)
        if sp is not None and not self.values[sp[0]].is_const:
            threshold = self.need_const(self.producer[node.input[0]], 1, "threshold")
            if threshold.numel() != 1:
                self.refuse(node, "a softplus threshold per element")
            module = nn.Softplus(beta=sp[1], threshold=float(threshold.reshape(())))
            self.set(node, self.emit_module(node, module, self.values[sp[0]]))
            return
        cond, x, y = (self.inp(node, i) for i in range(3))
        if cond is not None and cond.is_const and x is not None and y is not None \
                and not (x.is_const and y.is_const):
            self.set(node, self.emit_function(torch.where, [cond, x, y]))
            return
        self._fold(node, torch.where)

    def op_Equal(self, node, a):
        self._fold(node, torch.eq)

    def op_Less(self, node, a):
        if self._lerp_part(node):      # torch.lerp's choice of form: nothing reads it
            x = self.inp(node, 0)
            self.set(node, _Value(node=None, example=torch.empty(
                x.tensor.shape, dtype=torch.bool, device="meta")))
            return
        self._fold(node, torch.lt)

    def op_Greater(self, node, a):
        users = self.consumers.get(node.output[0], [])
        x = self.inp(node, 0)
        if not x.is_const and users and node.output[0] not in self.graph_outputs and \
                all(self._softplus_threshold(w) for w in users):
            # the dynamo exporter's softplus threshold: the Where reads only its structure
            self.set(node, _Value(node=None, example=torch.empty(x.tensor.shape, dtype=torch.bool, device="meta")))
            return
        self._fold(node, torch.gt)

    def op_Not(self, node, a):
        self._fold(node, torch.logical_not)

    def op_Abs(self, node, a):
        """Folded on constants; of an activation an elementwise function (as
        ``torch.abs``: warned as not non-decreasing)."""
        x = self.inp(node, 0)
        if x.is_const or self._lerp_part(node):    # (|w| of torch.lerp's choice: unread)
            self._fold(node, torch.abs)
        else:
            self.set(node, self.emit_function(torch.abs, [x]))

    def op_Floor(self, node, a):
        self._fold(node, torch.floor)

    def op_Ceil(self, node, a):
        self._fold(node, torch.ceil)

    def op_Mod(self, node, a):
        """Folded on constants (``nn.Unflatten``'s dimension index in a TorchScript
        export): ``fmod=0`` takes the divisor's sign (Python's ``%``), ``fmod=1``
        the dividend's (C's ``fmod``)."""
        self._fold(node, torch.fmod if int(a.get("fmod", 0)) else torch.remainder)

    def op_Min(self, node, a):
        self._threshold(node, torch.minimum)

    def op_Max(self, node, a):
        self._threshold(node, torch.maximum)

    def _threshold(self, node, fn) -> None:
        """Max / Min: folded on constants; of an activation and one constant (a
        filter response norm's TLU, ``max(x, tau)``) an elementwise activation;
        of two activations a selection, refused."""
        vals = [self.inp(node, i) for i in range(len(node.input))]
        live = [v for v in vals if v is not None and not v.is_const]
        if len(live) == 1 and len(vals) == 2:
            self.set(node, self.emit_function(fn, vals))
            return
        self._fold(node, lambda *ts: functools.reduce(fn, ts))

    def op_Range(self, node, a):
        self._fold(node, lambda start, limit, delta: torch.arange(start.item(), limit.item(), delta.item(),
                                                                  dtype=start.dtype))

    def op_ConstantOfShape(self, node, a):
        value = _to_tensor(a["value"]).reshape(-1) if "value" in a else torch.zeros(1)
        self._fold(node, lambda shape: torch.full(shape.tolist(), value[0].item(), dtype=value.dtype))

    def op_Expand(self, node, a):
        x = self.inp(node, 0)
        if x.is_const:
            self._fold(node, lambda t, shape: t.expand(torch.broadcast_shapes(t.shape, tuple(shape.tolist()))).clone())
            return
        target = torch.broadcast_shapes(x.tensor.shape, tuple(self.need_const(node, 1, "shape").tolist()))
        if len(target) != x.tensor.dim() or target[0] != x.tensor.shape[0]:
            self.refuse(node, f"broadcasting {list(x.tensor.shape)} to {list(target)} changes the batch axis")
        self.set(node, self.emit_method("expand", x, (-1, *target[1:])))

    def op_Tile(self, node, a):
        """Folded on constants; on an activation with constant repeats that leave the
        batch axis alone (V-Net's input channels tiled to 16), copies: a re-indexing."""
        x = self.inp(node, 0)
        if x.is_const:
            self._fold(node, lambda t, reps: t.repeat(*reps.tolist()))
            return
        reps = [int(r) for r in self.need_const(node, 1, "repeats").reshape(-1).tolist()]
        if len(reps) != x.tensor.dim():
            self.refuse(node, f"{len(reps)} repeats for a rank-{x.tensor.dim()} value")
        if reps[0] != 1:
            self.refuse(node, f"tiling the batch axis ({reps[0]} copies of each sample)")
        self.set(node, self.emit_method("repeat", x, tuple(reps)))

    def _axes(self, node, a) -> list[int] | None:
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.need_const(node, 1, "axes").reshape(-1).tolist()
        return None if axes is None else [int(x) for x in axes]

    def op_Unsqueeze(self, node, a):
        x = self.inp(node, 0)
        axes = self._axes(node, a) or []
        rank = x.tensor.dim() + len(axes)
        for ax in sorted(v + rank if v < 0 else v for v in axes):
            if ax == 0:
                self._batch_axis(x)
            x = self.emit_function(torch.unsqueeze, [x, ax])
        self.set(node, x)

    def op_Squeeze(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axes = self._axes(node, a)
        if axes is None:
            axes = [i for i, d in enumerate(x.tensor.shape) if d == 1 and (x.is_const or i > 0)]
        axes = tuple(sorted(v + rank if v < 0 else v for v in axes))
        if 0 in axes:
            self._batch_axis(x)
        self.set(node, self.emit_function(torch.squeeze, [x, axes]) if axes else x)

    def op_Gather(self, node, a):
        x = self.inp(node, 0)
        idx = self.need_const(node, 1, "index")
        axis = int(a.get("axis", 0))
        axis = axis + x.tensor.dim() if axis < 0 else axis
        size = x.tensor.shape[axis]
        idx = torch.where(idx < 0, idx + size, idx).long()
        if axis == 0:
            self._batch_axis(x)
        if x.is_const:
            out = torch.index_select(x.const, axis, idx.reshape(-1))
            self.set(node, _Value(const=out.reshape((*x.const.shape[:axis], *idx.shape, *x.const.shape[axis + 1:]))))
        elif idx.dim() == 0:
            self.set(node, self.emit_function(torch.select, [x, axis, int(idx)]))
        else:
            flat = idx.reshape(-1)
            if flat.numel() and torch.equal(flat, torch.arange(int(flat[0]), int(flat[0]) + flat.numel())):
                index = [slice(None)] * axis + [slice(int(flat[0]), int(flat[0]) + flat.numel())]
                y = self.emit_function(operator.getitem, [x, tuple(index)])
            else:
                y = self.emit_function(torch.index_select, [x, axis, _Value(const=flat)], hint=node.output[0])
            if idx.dim() != 1:
                shape = (*x.tensor.shape[:axis], *idx.shape, *x.tensor.shape[axis + 1:])
                y = self.emit_method("reshape", y, (-1, *shape[1:]) if axis > 0 else shape)
            self.set(node, y)

    # -- tensor re-indexing -----------------------------------------------------
    def op_Transpose(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        perm = [int(p) for p in a.get("perm", list(range(rank))[::-1])]
        if not x.is_const and self._fuse_axis_gather(node, x, perm):
            return
        moved = [i for i, p in enumerate(perm) if p != i]
        if 0 in moved:
            self._batch_axis(x)
        if not moved:
            self.set(node, x)
        elif len(moved) == 2:  # a swap of two axes (channel shuffle)
            self.set(node, self.emit_function(torch.transpose, [x, moved[0], moved[1]]))
        else:
            self.set(node, self.emit_method("permute", x, tuple(perm)))

    def _fuse_axis_gather(self, node, x: _Value, perm: list[int]) -> bool:
        """``Transpose -> GatherND -> Transpose`` that picks rows of some axes off the batch.

        The dynamo exporter writes ``F.interpolate(mode="nearest-exact")``
        (``aten._unsafe_index``) by moving the spatial axes to the front,
        gathering them by a constant grid of index tuples and moving them back.
        Where the grid is separable (output axis k reads input axis k by one
        index vector), the batch axis is not gathered and the second Transpose
        restores the axis order, the three nodes pick the rows of each gathered
        axis: ``F.interpolate`` where the vectors are what its ``nearest`` /
        ``nearest-exact`` mode picks for the output size (an upsampling, as in
        the module), else ``index_select`` per axis (a re-indexing); at any
        batch size.  Matched forward at the first Transpose, so neither
        Transpose nor the gather marks the file batch-1-only.
        """
        uses = self.consumers.get(node.output[0], [])
        if len(uses) != 1 or uses[0].op_type != "GatherND" or node.output[0] in self.graph_outputs:
            return False
        gather = uses[0]
        idx_v = self.values.get(gather.input[1]) if len(gather.input) > 1 else None
        if gather.input[0] != node.output[0] or int(_attrs(gather).get("batch_dims", 0)) != 0 \
                or idx_v is None or not idx_v.is_const:
            return False
        backs = self.consumers.get(gather.output[0], [])
        if len(backs) != 1 or backs[0].op_type != "Transpose" or gather.output[0] in self.graph_outputs:
            return False
        back = backs[0]
        rank = x.tensor.dim()
        perm2 = [int(p) for p in _attrs(back).get("perm", list(range(rank))[::-1])]
        idx = idx_v.const.long()
        q = idx.shape[-1] if idx.dim() else 0
        if idx.dim() != q + 1 or not 0 < q < rank or 0 in perm[:q] or [perm[p] for p in perm2] != list(range(rank)):
            return False
        vectors = {}
        for k in range(q):
            size = x.tensor.shape[perm[k]]
            vec = idx[(0,) * k + (slice(None),) + (0,) * (q - 1 - k) + (k,)]
            shape = [1] * q
            shape[k] = -1
            if not torch.equal(idx[..., k], vec.reshape(shape).expand(idx.shape[:-1])):
                return False
            vec = torch.where(vec < 0, vec + size, vec)
            if bool(((vec < 0) | (vec >= size)).any()):
                return False
            vectors[perm[k]] = vec
        self.replaced[id(gather)] = None
        self.replaced[id(back)] = self._pick_rows(x, vectors, gather.output[0])
        return True

    def _pick_rows(self, x: _Value, vectors: dict, hint: str) -> _Value:
        """``x`` with axis a re-indexed by ``vectors[a]``: a nearest upsampling where it is one."""
        rank = x.tensor.dim()
        spatial = list(range(2, rank))
        if sorted(vectors) == spatial and 1 <= len(spatial) <= 3:
            in_sizes = [x.tensor.shape[a] for a in spatial]
            kw = {"size": [len(vectors[a]) for a in spatial]}
            for mode in ("nearest-exact", "nearest"):   # the dynamo exporter writes nearest-exact so
                got = self._torch_nearest(in_sizes, kw, mode)
                if got is not None and all(np.array_equal(g, vectors[a].numpy()) for g, a in zip(got, spatial)):
                    return self.emit_function(F.interpolate, [x], {**kw, "mode": mode})
        for a in sorted(vectors):
            if not torch.equal(vectors[a], torch.arange(x.tensor.shape[a])):
                x = self.emit_function(torch.index_select, [x, a, _Value(const=vectors[a])], hint=f"{hint}_index{a}")
        return x

    def op_Slice(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        if self.opset < 10:
            starts, ends = list(a["starts"]), list(a["ends"])
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts = self.need_const(node, 1, "starts").reshape(-1).tolist()
            ends = self.need_const(node, 2, "ends").reshape(-1).tolist()
            ax_c, st_c = self.opt_const(node, 3, "axes"), self.opt_const(node, 4, "steps")
            axes = ax_c.reshape(-1).tolist() if ax_c is not None else list(range(len(starts)))
            steps = st_c.reshape(-1).tolist() if st_c is not None else [1] * len(starts)
        index: list[slice] = [slice(None)] * rank
        flips = []
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax = int(ax) + rank if int(ax) < 0 else int(ax)
            size = x.tensor.shape[ax]
            st, en, sp = int(st), int(en), int(sp)
            if sp == 0:
                self.refuse(node, "step 0")
            st = st + size if st < 0 else st
            en = en + size if en < 0 else en
            if ax == 0 and not x.is_const:
                if sp == 1 and st <= 0 and en >= size:
                    continue     # the whole batch (an end read off the file's batch of 1)
                self._batch_axis(x)
            if sp > 0:
                st, en = max(0, min(size, st)), max(0, min(size, en))
            else:
                # ONNX clamps a reversed slice's start to [0, size-1] and its end to
                # [-1, size-1]; on the flipped axis it is the forward slice below
                st, en = max(0, min(size - 1, st)), max(-1, min(size - 1, en))
                st, en, sp = size - 1 - st, size - 1 - en, -sp
                flips.append(ax)
            index[ax] = slice(st, en, None if sp == 1 else sp)
        if flips:  # a reversal is a re-indexing: torch.flip, then the forward slice
            x = self.emit_function(torch.flip, [x, tuple(flips)])
        while index and index[-1] == slice(None):
            index.pop()
        self.set(node, self.emit_function(operator.getitem, [x, tuple(index)]) if index else x)

    def op_Split(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        size = x.tensor.shape[axis]
        if "split" in a:
            sizes = [int(s) for s in a["split"]]
        elif self.inp(node, 1) is not None:
            sizes = [int(s) for s in self.need_const(node, 1, "split sizes").reshape(-1).tolist()]
        else:
            n = int(a.get("num_outputs", len(node.output)))
            chunk = -(-size // n)
            sizes = [min(chunk, size - i * chunk) for i in range(n)]
        if sum(sizes) != size or len(sizes) != len(node.output):
            self.refuse(node, f"split sizes {sizes} of an axis of length {size} into {len(node.output)} outputs")
        if axis == 0:
            self._batch_axis(x)
        start = 0
        for i, s in enumerate(sizes):
            index = tuple([slice(None)] * axis + [slice(start, start + s)])
            self.set(node, self.emit_function(operator.getitem, [x, index]), i)
            start += s

    def op_DepthToSpace(self, node, a):
        """CRD -> ``nn.PixelShuffle``; DCR (the default) -> the spec's reshape / transpose / reshape."""
        x = self.inp(node, 0)
        bs, mode = int(a["blocksize"]), a.get("mode", "DCR")
        _, c, h, w = x.tensor.shape
        if mode == "CRD":
            self._act(node, nn.PixelShuffle(bs))
            return
        t = self.emit_method("reshape", x, (-1, bs, bs, c // (bs * bs), h, w))
        t = self.emit_method("permute", t, (0, 3, 4, 1, 5, 2))
        self.set(node, self.emit_method("reshape", t, (-1, c // (bs * bs), h * bs, w * bs)))

    def op_SpaceToDepth(self, node, a):
        x = self.inp(node, 0)
        bs = int(a["blocksize"])
        _, c, h, w = x.tensor.shape
        t = self.emit_method("reshape", x, (-1, c, h // bs, bs, w // bs, bs))
        t = self.emit_method("permute", t, (0, 3, 5, 1, 2, 4))
        self.set(node, self.emit_method("reshape", t, (-1, c * bs * bs, h // bs, w // bs)))

    def op_Concat(self, node, a):
        parts = [self.inp(node, i) for i in range(len(node.input))]
        axis = int(a["axis"])
        rank = next((p.tensor.dim() for p in parts if p is not None), 1)
        if axis % rank == 0:
            for p in parts:
                if p is not None:
                    self._batch_axis(p)
        self.set(node, self.emit_function(torch.cat, [parts], {"dim": axis}, hint=node.output[0]))

    def op_Flatten(self, node, a):
        x = self.inp(node, 0)
        rank = x.tensor.dim()
        axis = int(a.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis == 1:
            self.set(node, self.emit_module(node, nn.Flatten(1, -1), x))
        elif axis == 0:
            self._batch_axis(x)
            self.set(node, self.emit_method("reshape", x, (1, -1)))
        else:
            y = self.emit_method("flatten", x, (axis,))
            self.set(node, self.emit_method("flatten", y, (0, axis - 1)))

    def op_Reshape(self, node, a):
        x = self.inp(node, 0)
        target = [int(v) for v in self.need_const(node, 1, "target shape").reshape(-1).tolist()]
        in_shape = list(x.tensor.shape)
        if not int(a.get("allowzero", 0)):
            target = [in_shape[i] if t == 0 and i < len(in_shape) else t for i, t in enumerate(target)]
        if not x.is_const and self.file_batch and target and target[0] == self.file_batch and \
                in_shape[0] != self.file_batch:
            # the file's fixed batch written into the shape (``view(2, -1)`` exported
            # at a dummy batch of 2): the batch read here in its place
            target[0] = in_shape[0]
        resolved = list(torch.empty(in_shape, device="meta").reshape(target).shape)
        if x.is_const:
            self.set(node, _Value(const=x.const.reshape(resolved)))
            return
        if self._fuse_group_norm(node, x, resolved):
            return
        per_sample = math.prod(in_shape[1:])
        if len(resolved) >= 1 and resolved[0] == in_shape[0] and math.prod(resolved[1:]) == per_sample:
            if len(resolved) == 2 and len(in_shape) > 2:
                self.set(node, self.emit_module(node, nn.Flatten(1, -1), x))
            else:
                self.set(node, self.emit_method("reshape", x, (-1, *resolved[1:])))
        else:  # mixes the batch dimension: valid at batch size 1 only
            self._batch_axis(x)
            self.set(node, self.emit_method("reshape", x, tuple(resolved)))

    def op_ReduceMean(self, node, a):
        self._reduce(node, a, "mean")

    def op_ReduceSum(self, node, a):
        """A sum over axes (the radix branches of split attention add up)."""
        self._reduce(node, a, "sum")

    def op_ReduceMax(self, node, a):
        """A max over axes (a global max pool written as a reduction, as tf2onnx
        writes Keras' GlobalMaxPooling): a max pool with one window."""
        self._reduce(node, a, "amax")

    def op_ReduceProd(self, node, a):
        """A product of constants (tf2onnx's Tensordot multiplies static sizes
        for its Reshape): folded; of a network value it is refused."""
        x = self.inp(node, 0)
        if not x.is_const:
            self.refuse(node, "a product over axes of a network value has no fixed weights")
        if self.inp(node, 1) is not None:
            self.need_const(node, 1, "axes")
        dims = x.const.dim()
        axes = self._reduce_axes(node, dims) if dims else []
        out = x.const
        for ax in sorted((ax % dims for ax in axes), reverse=True) if dims else []:
            out = out.prod(ax, keepdim=bool(a.get("keepdims", 1)))
        self.set(node, _Value(const=out))

    def op_ReduceL2(self, node, a):
        """The Euclidean norm over axes (ConvNeXt-V2's response norm): a per-sample
        statistic, which the capture keeps out of the graph (SPEC §1b)."""
        self._reduce(node, a, "norm")

    def _reduce(self, node, a, method: str) -> None:
        """ReduceMean / ReduceSum / ReduceMax / ReduceL2 over constant axes (an
        attribute, or input 1 from opset 13/18) as ``x.mean`` / ``x.sum`` /
        ``x.amax`` / ``torch.linalg.vector_norm``."""
        x = self.inp(node, 0)
        if a.get("axes") is None and self.inp(node, 1) is None and int(a.get("noop_with_empty_axes", 0)):
            self.set(node, x)
            return
        if self.inp(node, 1) is not None:
            self.need_const(node, 1, "axes")
        axes = self._reduce_axes(node, x.tensor.dim())
        if 0 in [ax % x.tensor.dim() for ax in axes]:
            self._batch_axis(x)         # a reduction over the samples
        keep = bool(a.get("keepdims", 1))
        if method == "norm":
            self.set(node, self.emit_function(torch.linalg.vector_norm, [x, 2.0, tuple(axes), keep]))
        else:
            self.set(node, self.emit_method(method, x, (axes, keep)))

    def op_Dropout(self, node, a):
        self._only_first_output(node)
        x = self.inp(node, 0)
        ratio = a.get("ratio", 0.5)
        r = self.inp(node, 1)
        if r is not None and r.is_const:
            ratio = float(r.const)
        self.set(node, self.emit_module(node, nn.Dropout(p=float(ratio)), x))

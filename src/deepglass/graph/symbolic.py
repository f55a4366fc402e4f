"""Symbolic values of a capture (SPEC §1) and the builder of node and edge blocks.

Both capture paths (:mod:`.aten` for ``torch.export``, :mod:`.fx_capture` for
the ``torch.fx`` fallback) run the network on a real sample (which gives every
shape) and symbolically at once.  A symbolic value is

- :class:`Ref`: a re-indexing of existing graph nodes: an int64 tensor of
  global node ids with the value's shape (``-1`` marks zero padding) and an
  optional per-element scale (folded batch norm, scalar multiplication).
  Shape operations (flatten, view, cat, chunk, transpose, channel shuffle,
  zero padding, ...) are applied to the id tensor itself, so they need no rule
  of their own;
- :class:`Pending`: a sum of linear operators applied to ``Ref``\\ s that has
  no node block yet.  A residual addition merges the terms of its operands
  (SPEC §1: the add creates no nodes; an identity shortcut becomes weight-1
  edges).  The value becomes a node block when anything but an addition, batch
  norm or a scalar multiplication consumes it.

With ``Builder(record=True)`` the capture also keeps, for every edge block,
which element of which captured value each of its sources reads (*value ids*,
see :meth:`Builder.tag`): the hook :mod:`.pattern` records activation
patterns with.  Without it nothing of that is computed.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx

from ..errors import DeepglassError, UnsupportedLayerError
from .blocks import EdgeBlock, NodeBlock, ZeroPaddedBlock
from .supported import SUPPORTED

__all__ = ["Ref", "Pending", "Refused", "Builder", "NonMonotoneActivationWarning", "ForwardError",
           "SUPPORTED", "scale", "remap", "uses", "expand_to"]



class ForwardError(Exception):
    """The model itself failed on the sample input (e.g. a wrong input shape)."""


class NonMonotoneActivationWarning(UserWarning):
    """The network has an activation that is not non-decreasing."""


@dataclass
class Ref:
    index: torch.Tensor            # int64, shape (1, *value_shape): global node ids, -1 = zero pad
    scale: torch.Tensor | None = None  # float64, same shape, or None (all ones)
    nonneg: bool = False           # the value is >= 0 whatever the input (a gate: sigmoid, ...)
    fn: str | None = None          # last elementwise function applied (names x * f(x) products)
    # recording only (Builder.record): value ids, same shape as ``index``, -1 = none
    value: torch.Tensor | None = None  # where the value that flows on is zero-faithful:
    #                                    affine steps (batch norm, a factor, a bias) looked through
    exact: torch.Tensor | None = None  # the captured value itself
    # which elementwise function of the nodes this is: 0 their own value (up to
    # factors), a new number per activation, -1 several (a concatenation);
    # two values of the same nodes add into one rescaling only when equal
    act: int = 0
    gated: bool = False            # a gate's copy (x * g, g >= 0 of another value, SPEC §1b)
    # the range of the gates' factor on a gated copy, ``scale`` being its value
    # at factor 1 (``graph.ranges``: a sigmoid's (0, 1)): whether a sum of
    # copies of one value keeps one sign (y - y * sigmoid(z) does)
    gate: tuple = (1.0, 1.0)
    # the nodes the last activation read negated (a digest of their ids; None:
    # none): relu(y) and relu(-y) are two functions of y (a PReLU written out)
    pre: int | None = None


@dataclass
class Pending:
    terms: list                    # list of (EdgeBlock, Ref)
    shape: tuple                   # per-sample value shape
    op: str = "add"
    name: str = ""
    exact: torch.Tensor | None = None  # recording only: value ids of the captured value
    nonneg: bool = False           # non-negative weights of a non-negative value (a gate resampled)
    # the node block's shape where the value's is not its first term's output
    # shape (a reduction's flat (kept, 1) windows: the value's own (C, H, W),
    # so that the layers reading it see an image of channels)
    block_shape: tuple | None = None


@dataclass(frozen=True)
class Refused:
    """A value computed from the input that has no signed graph (a product of
    two network values, a statistic beside a value, any op a rule refuses).
    Its refusal is carried, not raised at once, because
    SPEC §1b leaves a gate's branch out of the graph: where the value only
    feeds a gate (BAM's ``1 + sigmoid(channel * spatial)``) the branch is
    dropped with it; every other value computed from it carries the refusal to
    the network's output, where it is raised.  ``product``: it is a product of
    two values (a sum of such products is attention or bilinear pooling,
    refused also inside a gate's branch); ``bias``: a random draw that does not
    depend on the input (noise injection), a bias where it is added to a value."""
    message: str
    product: bool = False
    bias: bool = False


def uses(node) -> int:
    """How many times later ops read fx ``node``'s elements: an op that lists
    it twice (``cat([y, y])``, ``return y, y``) reads it twice, where
    ``node.users`` counts that op once; an op that reads only its shape
    (``ones_like``, ``size``) does not read it."""
    return sum(reads(user, node) for user in node.users
               if _name_of(user.target) not in _SHAPE_ONLY)


def reads(user, node) -> int:
    """How many times fx node ``user`` lists ``node`` among its arguments."""
    count = [0]

    def seen(a):
        count[0] += a is node
        return a

    torch.fx.node.map_arg((user.args, user.kwargs), seen)
    return count[0]


#: ops that read only a value's shape (``ones_like(y)``), not its elements
_SHAPE_ONLY = set("ones_like zeros_like full_like empty_like new_zeros new_ones new_full "
                  "new_empty sym_size size dim numel".split())


def base_packet(target):
    """The op packet of ``target``, an in-place op's out-of-place one
    (``aten.sub_`` -> ``aten.sub``): rules read both alike."""
    packet = getattr(target, "overloadpacket", None)
    name = getattr(packet, "__name__", "")
    if name.endswith("_") and not name.endswith("__") and not name.startswith("_"):
        return getattr(torch.ops.aten, name[:-1], packet)
    return packet


def _name_of(target) -> str:
    packet = getattr(target, "overloadpacket", None)
    return getattr(packet if packet is not None else target, "__name__", str(target))


def remap(ref: Ref, fn) -> Ref:
    """``ref`` with the re-indexing ``fn(tensor, fill)`` applied to its ids, scale
    and value ids alike (``fill``: what a padded element gets)."""
    opt = lambda t, fill: None if t is None else fn(t, fill)  # noqa: E731
    return Ref(fn(ref.index, -1), opt(ref.scale, 0), ref.nonneg, ref.fn,
               opt(ref.value, -1), opt(ref.exact, -1), ref.act, ref.gated, ref.gate)


class Builder:
    """Accumulates node and edge blocks while a captured graph is interpreted.

    ``record=True`` numbers the elements of every captured value (*value ids*,
    one range per fx node output, :meth:`tag`) and keeps, per edge block, the
    value ids its sources read (``reads``, aligned with ``edge_blocks``).
    """

    def __init__(self, pool_weight, batchnorm, record: bool = False):
        self.node_blocks: list[NodeBlock] = []
        self.edge_blocks: list[EdgeBlock] = []
        self.pool_weight = pool_weight
        self.batchnorm = batchnorm
        self._materialized: dict[int, tuple] = {}   # id(Pending) -> (it, its Ref)
        self.n_acts = 0                             # activations numbered (Ref.act)
        self.warned: set[str] = set()
        self.node = None                  # the fx node being read (whose warnings)
        self.warned_at: dict = {}         # fx node -> (key, message) of its warnings
        self.retracted: set[str] = set()  # messages of warnings taken back
        self.n = 0
        self.record = bool(record)
        self.values: list[tuple] = []     # (fx node, tuple position or None, first id, size)
        self.n_values = 0
        self.reads: list[tuple] = []      # per edge block: (value ids, exact ids), in_shape

    def new_block(self, name, shape, op) -> NodeBlock:
        nb = NodeBlock(name=name, shape=tuple(shape), offset=self.n, op=op,
                       index=len(self.node_blocks))
        self.node_blocks.append(nb)
        self.n += nb.size
        return nb

    def materialize(self, val):
        """Turn a Pending value into a node block and return its Ref (the same
        Ref each time for the same value: its edge blocks end on one block)."""
        if not isinstance(val, Pending):
            return val
        done = self._materialized.get(id(val))
        if done is not None and done[0] is val:
            return done[1]
        ref = self._new_node_block(val)
        self._materialized[id(val)] = (val, ref)
        return ref

    def is_materialized(self, val) -> bool:
        """Whether Pending ``val`` was made a node block."""
        done = self._materialized.get(id(val))
        return done is not None and done[0] is val

    def _new_node_block(self, val: Pending) -> Ref:
        first = val.terms[0][0]
        nb = self.new_block(val.name or first.module, val.block_shape or first.out_shape, val.op)
        for blk, ref in val.terms:
            if blk.out_size != nb.size:
                raise DeepglassError(f"addition at {val.name!r} of values with different sizes "
                                     f"({blk.out_shape} vs {nb.shape}) is not supported")
            self.attach(blk, ref, nb.index)
        shape = (1,) + tuple(val.shape)
        idx = torch.arange(nb.offset, nb.stop, dtype=torch.long).reshape(shape)
        ex = None if val.exact is None else val.exact.reshape(shape)
        return Ref(idx, nonneg=val.nonneg, value=ex, exact=ex)

    def activated(self, val) -> Ref:
        """The output of an elementwise nonlinearity of ``val``: its node ids, and
        (recording) a value that is zero-faithful from here on."""
        ref = self.materialize(val)
        self.n_acts += 1
        if not isinstance(ref, Ref):
            return ref
        neg = None if ref.scale is None else ref.index[(ref.scale < 0) & (ref.index >= 0)]
        pre = None if neg is None or not neg.numel() else hash(neg.unique().numpy().tobytes())
        return dataclasses.replace(ref, value=None, act=self.n_acts, pre=pre)

    def tag(self, node, sym, real):
        """Recording: number the elements of the value(s) computed at fx node
        ``node`` and set them as the ``exact`` ids of its symbolic value(s) (and as
        the ``value`` ids where the rule did not carry older ones through an affine
        step).  Without recording, ``sym`` itself."""
        if not self.record:
            return sym
        if isinstance(sym, (list, tuple)) and isinstance(real, (list, tuple)) \
                and len(sym) == len(real):
            return type(sym)(self._tag(node, i, s, r) for i, (s, r) in
                             enumerate(zip(sym, real)))
        return self._tag(node, None, sym, real)

    def _tag(self, node, pos, sym, real):
        if not isinstance(real, torch.Tensor) or not isinstance(sym, (Ref, Pending)):
            return sym
        shape = tuple(sym.index.shape) if isinstance(sym, Ref) else (1,) + tuple(sym.shape)
        if tuple(real.shape) != shape:
            return sym
        size = math.prod(shape)
        ids = torch.arange(self.n_values, self.n_values + size).reshape(shape)
        self.values.append((node, pos, self.n_values, size))
        self.n_values += size
        if isinstance(sym, Pending):
            sym.exact = ids
            return sym
        return dataclasses.replace(sym, exact=ids,
                                   value=sym.value if sym.value is not None else ids)

    def attach(self, blk: EdgeBlock, ref: Ref, dst: int) -> None:
        if ref.index.numel() != math.prod(blk.in_shape):
            # the layer ran on a batch of several rows made of one sample's values
            # and its rule does not read it at every row (graph.layers.on_rows)
            raise UnsupportedLayerError(
                f"unsupported layer {blk.module!r}: it reads {ref.index.numel():,} values of "
                f"one sample regrouped as a batch of {math.prod(blk.in_shape):,}-value rows; "
                "deepglass reads convolutions, pools, resampling, dense layers and "
                "reductions at every row, not this layer")
        idx = ref.index.reshape(blk.in_shape)
        padded = idx < 0
        has_padding = bool(padded.any())
        if has_padding:
            # zero padding inside the value (a border went into the layer's own
            # padding): no node, no edge; read from any node, masked out below
            if bool(padded.all()):
                raise DeepglassError(f"layer {blk.module!r} reads a value made only of padding")
            if blk.selects_edges():
                raise UnsupportedLayerError(
                    f"layer {blk.module!r} max-pools zero-padded values that are not a border "
                    "of its input; only zero padding directly before a max pool is supported")
            idx = torch.where(padded, idx[~padded][0], idx)
        flat = idx.reshape(-1)
        if flat.numel() and bool((flat[1:] - flat[:-1] == 1).all()):
            blk.src_range = (int(flat[0]), int(flat[-1]) + 1)
            blk.src_index = None
        else:
            blk.src_index = idx.contiguous()  # symbolic ids are never written in place: no copy
            blk.src_range = None
        starts = [b.offset for b in self.node_blocks]
        if blk.src_range:
            first, last = np.searchsorted(starts, [blk.src_range[0], blk.src_range[1] - 1],
                                          side="right") - 1
            blk.src_blocks = tuple(range(int(first), int(last) + 1))
        else:
            # the blocks touched: one vectorized search per id and a bincount
            # (no sort of the ids: a concatenation of many blocks has millions)
            which = np.searchsorted(starts, flat.numpy(), side="right") - 1
            blk.src_blocks = tuple(int(b) for b in
                                   np.flatnonzero(np.bincount(which, minlength=len(starts))))
        if ref.scale is not None:
            s = ref.scale.reshape(blk.in_shape)
            if not bool((s == 1).all()):
                blk.in_scale = s.contiguous() if blk.in_scale is None else blk.in_scale * s
        blk.dst = dst
        if has_padding:
            blk = ZeroPaddedBlock(blk, ~padded)
        self.edge_blocks.append(blk)
        if self.record:
            none = torch.full(blk.in_shape, -1, dtype=torch.long)
            self.reads.append(tuple(none if t is None else t.reshape(blk.in_shape)
                                    for t in (ref.value, ref.exact)))

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.retracted.discard(message)
            self.warned_at.setdefault(self.node, []).append((key, message))
            warnings.warn(message, NonMonotoneActivationWarning, stacklevel=4)

    def retract_warnings(self, nodes) -> None:
        """Take back the warnings of fx ``nodes`` (the ``|x|`` inside a written-out
        Softsign, read whole as the monotone function it is); the capture drops
        them before passing warnings on, and a later op may warn them again."""
        for node in nodes:
            for key, message in self.warned_at.pop(node, []):
                self.warned.discard(key)
                self.retracted.add(message)


# ----------------------------------------------------------------------------------
# helpers shared by both capture paths
def tup(v, n):
    """A pool's or convolution's size argument as ``n`` ints: an int, or a
    one-element list (PyTorch repeats both over the ``n`` spatial dims)."""
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            v = v[0]
        else:
            return tuple(int(a) for a in v)
    return (int(v),) * n


def strip_zero_padding(ref: Ref, nd: int) -> tuple[Ref, list[tuple[int, int]]]:
    """Remove a border of zero padding (id -1) from the last ``nd`` dims of a Ref.

    Returns the interior Ref and the (lo, hi) widths, so an explicit ``F.pad``
    (asymmetric padding) becomes the padding of the following conv / pool.
    """
    idx = ref.index
    if not bool((idx < 0).any()):
        return ref, [(0, 0)] * nd
    pads = []
    sl = [slice(None)] * idx.ndim
    for d in range(idx.ndim - nd, idx.ndim):
        valid = (idx >= 0).movedim(d, 0).reshape(idx.shape[d], -1).any(1)
        pos = torch.nonzero(valid).reshape(-1)
        if len(pos) == 0:
            raise DeepglassError("a convolution reads a value made only of padding")
        lo, hi = int(pos[0]), idx.shape[d] - 1 - int(pos[-1])
        pads.append((lo, hi))
        sl[d] = slice(lo, idx.shape[d] - hi)
    inner = remap(ref, lambda t, fill: t[tuple(sl)])
    return Ref(inner.index, inner.scale, value=inner.value, exact=inner.exact,
               act=inner.act), pads


def scale(builder: Builder, val, s):
    """Multiply a symbolic value by ``s`` (broadcastable to ``(1, *shape)``): a
    scalar or per-channel (dim 1) factor folds into a pending layer's weights;
    a per-element factor folds into pending edges that take one factor per
    destination (pools, sums, identity shortcuts: the ``1 / count`` of an
    adaptive pool written as a gather and a sum lands on the pool's edges, as
    in the pool's own graph); any other pattern becomes a per-element scale of
    the materialized value.  Non-symbolic values are returned as they are."""
    s = torch.as_tensor(s, dtype=torch.float64).detach()
    shape = ((1,) + tuple(val.shape) if isinstance(val, Pending) else
             tuple(val.index.shape) if isinstance(val, Ref) else None)
    if s.ndim and s.numel() > 1 and shape is not None and len(shape) >= s.ndim and \
            torch.broadcast_shapes(shape, tuple(s.shape)) == shape:
        # a factor that is one number, or one per channel, written out per element
        # (``y * torch.ones_like(y)``) folds as such (not one that broadcasts the
        # value to a larger shape: that copies its elements)
        flat = s.reshape(-1)
        if bool((flat == flat[0]).all()):
            s = flat[0].clone()
        elif s.ndim >= 2 and s.shape[1] > 1 and s.numel() > s.shape[1]:
            per = s.movedim(1, 0).reshape(s.shape[1], -1)
            if bool((per == per[:, :1]).all()):
                s = per[:, 0].reshape((1, -1) + (1,) * (s.ndim - 2))
    if isinstance(val, Pending):
        nd = len(val.shape) + 1
        full = s.reshape((1,) * (nd - s.ndim) + tuple(s.shape)) if s.ndim < nd else s
        sizes = [full.shape[i] for i in range(full.ndim)]
        if bool((full < 0).any()):
            val.nonneg = False
        if all(sz == 1 for sz in sizes):
            for blk, _ in val.terms:
                blk.scale_output(full.reshape(()))
            return val
        if full.ndim >= 2 and all(sz == 1 for i, sz in enumerate(sizes) if i != 1):
            ch = full.reshape(-1)
            for blk, _ in val.terms:
                blk.scale_output(ch.reshape((-1,) + (1,) * (len(blk.out_shape) - 1)))
            return val
        shape = (1,) + tuple(val.shape)
        if torch.broadcast_shapes(shape, tuple(full.shape)) == shape and all(
                blk.takes_node_scale() and blk.out_size == math.prod(val.shape)
                for blk, _ in val.terms):
            per_node = torch.broadcast_to(full, shape)
            for blk, _ in val.terms:
                blk.scale_output(per_node.reshape(blk.out_shape))
            return val
        val = builder.materialize(val)
    if isinstance(val, Ref):
        shape = torch.broadcast_shapes(tuple(val.index.shape), tuple(s.shape))
        if shape != tuple(val.index.shape):
            # a factor that broadcasts the value to a larger shape copies its elements
            val = remap(val, lambda t, fill: t.expand(shape).contiguous())
        cur = val.scale if val.scale is not None else torch.ones(val.index.shape,
                                                                 dtype=torch.float64)
        # symbolic values live on the CPU whatever device the model's weights use
        return Ref(val.index, torch.broadcast_to(cur * s.cpu(), val.index.shape).clone(),
                   fn=val.fn, value=val.value, exact=val.exact, act=val.act, gated=val.gated,
                   gate=val.gate, pre=val.pre)
    return val


def flatten(v) -> list:
    if isinstance(v, (list, tuple)):
        return [x for u in v for x in flatten(u)]
    if isinstance(v, dict):
        return [x for u in v.values() for x in flatten(u)]
    return [v]


def has_sym(a) -> bool:
    return any(isinstance(v, (Ref, Pending)) for v in flatten(a))


def zip_map(sym, real, fn):
    if isinstance(sym, (list, tuple)) and not isinstance(sym, Ref):
        return type(sym)(zip_map(s, r, fn) for s, r in zip(sym, real))
    if isinstance(sym, dict):
        return {k: zip_map(sym[k], real[k], fn) for k in sym}
    if isinstance(sym, Ref):
        return fn(sym, real)
    return real


def as_tensor_of(kind: str):
    """The tensor of a Ref that a re-indexing is applied to: ``index``,
    ``scale`` (ones where absent) or ``value`` (value ids)."""
    def conv(s, r):
        if kind == "index":
            return s.index
        if kind == "value":
            return s.value if s.value is not None else torch.full_like(s.index, -1)
        return s.scale if s.scale is not None else torch.ones(s.index.shape,
                                                              dtype=torch.float64)
    return conv


def reindexed(args, run) -> object:
    """Apply a re-indexing ``run(kind)`` to the ids, the scales (where any
    operand has one) and the value ids (where any operand has them) of the
    Refs in ``args``; returns the wrapped result (Refs, or a list of them)."""
    refs = [v for v in flatten(args) if isinstance(v, Ref)]
    idx = run("index")
    scl = run("scale") if any(r.scale is not None for r in refs) else None
    val = run("value") if any(r.value is not None for r in refs) else None
    # a re-indexing moves elements (and pads with zeros): a non-negative value
    # stays one (a gate viewed or expanded to its input's shape, as ECA does),
    # and the elementwise function applied last is still the last one
    nonneg = bool(refs) and all(r.nonneg for r in refs)
    gated = any(r.gated for r in refs)
    # the gates' factor range moves with the elements: the hull of the operands'
    # (an ungated one's factor is 1)
    gate = (min(r.gate[0] for r in refs), max(r.gate[1] for r in refs)) if refs else (1.0, 1.0)
    fns = {r.fn for r in refs}
    # the elementwise function: that of the operands holding nodes, if one
    acts = {r.act for r in refs if bool((r.index >= 0).any())}
    pres = {r.pre for r in refs}
    return _wrap(idx, scl, val, nonneg, fns.pop() if len(fns) == 1 else None,
                 acts.pop() if len(acts) == 1 else -1 if acts else 0, gated, gate,
                 pres.pop() if len(pres) == 1 else None)


def expand_to(builder, v, shape, lead: int | None = None) -> Ref:
    """``v`` copied to the per-sample ``shape`` it broadcasts to (``x + ctx``
    with ``ctx`` of C x 1 x 1, a row times a spatial gate): a re-indexing,
    every element reading the one it was copied from (SPEC §1).  The leading
    dimension stays (one sample's values folded into it) or becomes ``lead``
    (values stacked in front of the batch)."""
    v = builder.materialize(v)
    full = (lead or v.index.shape[0],) + tuple(shape)
    if tuple(v.index.shape) == full:
        return v
    return reindexed([v], lambda kind: as_tensor_of(kind)(v, None).expand(full).contiguous())


def _wrap(idx, scl, val, nonneg=False, fn=None, act=0, gated=False, gate=(1.0, 1.0),
          pre=None):
    if isinstance(idx, torch.Tensor):
        return Ref(idx, scl, nonneg=nonneg, fn=fn, value=val, act=act, gated=gated, gate=gate,
                   pre=pre)
    if isinstance(idx, (list, tuple)):
        n = len(idx)
        return type(idx)(_wrap(i, s, v, nonneg, fn, act, gated, gate, pre) for i, s, v in
                         zip(idx, scl if scl is not None else [None] * n,
                             val if val is not None else [None] * n))
    return None


# ----------------------------------------------------------------------------------
# helpers of the capture rules
def _opname(target) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return name.replace("aten.", "").split(".default")[0]


def _arg(n, args, i, key, default=None):
    return args[i] if len(args) > i else n.kwargs.get(key, default)


def _is_sym(v) -> bool:
    return isinstance(v, (Ref, Pending))


def _flag(v, **kw):
    """A materialized value with attributes (non-negativity, elementwise function)."""
    return dataclasses.replace(v, **kw) if isinstance(v, Ref) else v


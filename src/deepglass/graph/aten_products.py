"""Products in the ATen capture (SPEC §1, §1b).  By a fixed weight: ``x @ W``
(``linear``, ``addmm``, ``einsum`` / ``bmm`` with a weight) a dense layer, at
every position where the batch is folded into the rows.  Of two network
values: ``x * f(x)`` an elementwise activation (read as its canonical form where it is one: a
written-out hard-swish or GELU has its module's graph), ``x * g`` with a
non-negative gate ``g`` of another value a positive rescaling (also written as
a matrix product, ``x @ softmax(m)``), ``x * x`` a power; any other product of
two network values (self-attention) refused.  Rules have the
signature of :mod:`.aten_rules`.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F

from .aten_activations import ops_between, run_again
from .aten_norms import Stat, feeds_normalization
from .moments import power as _power
from .blocks import ConvBlock, IdentityBlock
from .layers import dense_op, reduce_op
from .ranges import factor_range, is_gate, is_positive_divisor
from .stat_search import ancestors
from .sums import gate_product, gated_terms
from .symbolic import (Pending, Ref, Refused, _flag, _is_sym, _opname, base_packet, expand_to,
                       remap, scale)

aten = torch.ops.aten

__all__ = ["of_one_value", "judge_monotone"]


def _same(a, b) -> bool:
    return (isinstance(a, Ref) and isinstance(b, Ref) and a.index.shape == b.index.shape
            and (a.index is b.index or bool(torch.equal(a.index, b.index))))


_PRODUCT_NAMES = {"sigmoid": "SiLU (x * sigmoid(x))", "hardsigmoid": "hard-swish "
                  "(x * hardsigmoid(x))", "tanh": "x * tanh(x)",
                  # x * clip(x + 3, 0, 6) / 6, as exporters write hard-swish out
                  "hardtanh": "x * clamp(x) (the form of a written-out hard-swish)",
                  "clamp": "x * clamp(x) (the form of a written-out hard-swish)"}


#: SPEC §1b's activations written as products, by their canonical form: a
#: written-out ``x * clamp(x + 3, 0, 6)`` is 6 hard-swish, ``x * (1 + erf(x /
#: sqrt 2))`` 2 GELU; the graph carries the factor, as a module's graph would
_CANONICAL = {"SiLU": F.silu, "hard-swish": F.hardswish, "GELU": F.gelu,
              "GELU (tanh)": lambda x: F.gelu(x, approximate="tanh"), "Mish": F.mish,
              "Softsign": F.softsign}
_MONOTONE = {"Softsign"}


def _probe(ip, y, n, real) -> tuple[torch.Tensor, torch.Tensor, set] | None:
    """The ops from fx node ``y`` to ``n`` run again on a probe: ``y``'s shape
    filled with values spread over [-6, 6], where SPEC §1b's activations differ
    (on the captured sample they may all be near ``x / 2``).  Returns (probe,
    ``n``'s value on it, the ops between them); None where an op on the way is not elementwise (a
    shape changes) or fails.  ``real`` is ``n``'s captured value.  O(ops
    between them)."""
    real_y = ip.real(y)
    if not isinstance(real, torch.Tensor) or not isinstance(real_y, torch.Tensor) or \
            not real_y.is_floating_point() or real_y.shape != real.shape:
        return None     # (a product of views of y: its activation would have y's shape)
    path = ops_between(ip, y, n)
    x = torch.linspace(-6.0, 6.0, real_y.numel(), dtype=real_y.dtype,
                       device=real_y.device).reshape(real_y.shape)
    out = run_again(ip, y, n, real, path, x)
    return None if out is None else (x, out, path)


#: the grid a written-out function is read on: up to 1001 values over
#: [-12.3, 12.1] (an uneven step, so that no periodic term is sampled only at
#: its zeros), fewer for large values (about 2e7 elements in all), at least 61
_GRID = (-12.3, 12.1, 1001, 61, 2e7)


def judge_monotone(ip, n, real, written: str) -> bool:
    """An elementwise function of one value written out (``x + sin(a x) ** 2 /
    a``, Snake; ``sign(x) * log1p(255 |x|)``, mu-law) read on a grid: every
    element of the value ``y`` it is computed from set to each value of
    :data:`_GRID` (the grid standing in the batch axis) and the ops to ``n``
    run again.  Non-decreasing at every element: no warning; else warned once
    as ``written`` at its layer.  The warnings of the ops inside the form are
    taken back either way (they are parts of one function).  False, the
    caller saying it is unchecked, where the ops are not all pointwise (a
    mean subtracted on the way: ``y - tanh(y - y.mean(1))`` is no function of
    each element alone) or the grid run fails.  A grid misses what happens
    between its points and beyond its ends.  O(grid x ops between them)."""
    y = _common_source(ip, n)
    real_y = ip.real(y) if y is not None else None
    if not isinstance(real, torch.Tensor) or not isinstance(real_y, torch.Tensor) or \
            not real_y.is_floating_point() or real_y.shape != real.shape:
        return False
    path = ops_between(ip, y, n)
    if not all(torch.Tag.pointwise in getattr(u.target, "tags", ()) for u in path):
        return False
    lo, hi, most, least, budget = _GRID
    k = int(min(most, max(least, budget // max(real_y.numel(), 1))))
    t = torch.linspace(lo, hi, k, dtype=real_y.dtype, device=real_y.device)
    out = run_again(ip, y, n, real, path, t.reshape((k,) + (1,) * (real_y.ndim - 1))
                    .expand((k,) + tuple(real_y.shape[1:])).contiguous())
    if out is None:
        return False
    out = out.detach().double()
    rises = bool((out[1:] >= out[:-1] - 1e-9 * (1 + out[:-1].abs())).all())
    ip.b.retract_warnings(u for u in path if all(w in path for w in u.users) or u is n)
    if not rises:
        ip.warn_nonmonotone(f"{written} at {ip.where(n)!r}")
    return True


def _canonical_factor(x: torch.Tensor, out: torch.Tensor) -> tuple[float, str] | None:
    """The number ``k`` with ``out = k f(x)`` and the name of the activation
    ``f`` of :data:`_CANONICAL` that fits ``out`` best, elementwise on a probe
    (at least 3 elements where ``f`` is not small; largest deviation under
    1e-4 of the largest value); None where none fits."""
    x, out = x.detach().double().reshape(-1), out.detach().double().reshape(-1)
    best, fit = None, 1e-4
    for name, f in _CANONICAL.items():
        y = f(x)
        big = y.abs() > 1e-3 * float(y.abs().max().clamp(min=1e-30))
        if int(big.sum()) < 3:
            continue
        k = float((out[big] / y[big]).median())
        dev = float((out - k * y).abs().max()) / max(float(out.abs().max()), 1e-30)
        if k != 0 and dev < fit:
            best, fit = (k, name), dev
    return best


def _common_source(ip, n, depth: int = 12):
    """The nearest value both factors of the product at ``n`` are computed from
    within ``depth`` ops: ``y`` in ``y * relu6(y + 3)`` and in ``0.5 y (1 +
    tanh(c (y + 0.044715 y^3)))``; None if none.  O(depth * ops) per product."""
    depends = ip.input_dependent()
    order = ip.node_order()

    def ancestors(u):
        seen, front = {u}, [u]
        for _ in range(depth):
            front = [v for w in front for v in w.all_input_nodes if v in depends and v not in seen]
            seen.update(front)
        return seen

    if not all(isinstance(u, torch.fx.Node) for u in n.args[:2]):
        return None
    both = ancestors(n.args[0]) & ancestors(n.args[1])
    return max(both, key=order.__getitem__) if both else None


def of_one_value(ip, n, a, b, real, written: str):
    """``x * f(x)`` or ``x / f(x)`` (``a`` and ``b`` hold the same nodes): an
    elementwise function of ``x``.  Where it is a multiple ``k`` of a canonical
    activation of the value ``y`` both come from (0.5 y (1 + erf(y / sqrt 2))
    = GELU(y), y / (1 + |y|) = Softsign(y)), the activation of ``y`` times
    ``k``, as the module followed by the factor ``k`` gives; else a new
    activation of ``x``, warned as ``written`` (its monotonicity unchecked)."""
    y = _common_source(ip, n)
    probe = _probe(ip, y, n, real) if y is not None else None
    fit = _canonical_factor(*probe[:2]) if probe is not None else None
    if fit is None:
        # read on a grid (warned where it falls); where it cannot be, warned
        if not judge_monotone(ip, n, real, written):
            ip.warn_nonmonotone(written)
        # the factor computed first is x: its activation is numbered lower
        return _flag(ip.b.activated(a if a.act <= b.act else b), nonneg=False, fn=None,
                     value=None)
    k, name = fit
    # the ops on the way (|x| in x / (1 + |x|), x + c x^3 in the tanh GELU) are
    # parts of one activation: their warnings are taken back for its own
    path = probe[2]
    ip.b.retract_warnings(u for u in path if all(w in path for w in u.users) or u is n)
    if name not in _MONOTONE:
        # (named at its layer, as a module's warning: several are grouped by kind)
        ip.warn_nonmonotone(f"{name} (written out) at {ip.where(n)!r}")
    out = _flag(ip.b.activated(ip.b.materialize(ip.sym[y])), nonneg=False, fn=None,
                value=None)
    return out if k == 1.0 else scale(ip.b, out, torch.tensor(k, dtype=torch.float64))


def _product(ip, n, a, b, real):
    """SPEC §1b: ``x * f(x)`` is an elementwise activation; ``x * g`` with a
    non-negative gate ``g`` of another value is a positive rescaling of ``x``
    (``gates="scale"``); any other product of two network values is refused."""
    for x, g, i in ((a, b, 1), (b, a, 0)):      # a gate of a sum with copies in it
        if isinstance(x, Pending) and isinstance(g, Ref) and tuple(x.shape) == \
                tuple(real.shape[1:]) and any(type(blk) is IdentityBlock for blk, _ in x.terms) \
                and is_gate(ip, n.args[i]):
            return gated_terms(ip, n, x, factor_range(ip, n.args[i]))
    # x * x of a layer's output read only there: one node block for both factors
    a, b = (ip.b.materialize(a),) * 2 if a is b else (ip.b.materialize(a), ip.b.materialize(b))
    if _same(a, b) and a.act == b.act and (a.act >= 0 or a is b):
        if feeds_normalization(ip, n):
            return Stat(tuple(ip.cur.shape[1:]))   # x * x: the start of a statistic
        return _power(ip, a, 2.0)                  # x * x: an elementwise square
    if _same(a, b):
        f = b.fn if b.fn else a.fn
        return of_one_value(ip, n, a, b, real, _PRODUCT_NAMES.get(f, f"x * {f or 'x'}"))
    # a gate is non-negative and bounded by its range (a sigmoid, 1 - sigmoid,
    # relu6(z + 3) / 6, a product of gates); a ReLU'd value is not (a highway's
    # t * relu(h(x)) is gated by t; relu(v) * k is a product of two values)
    gates = [(x, g, i) for x, g, i in ((a, b, 1), (b, a, 0)) if is_gate(ip, n.args[i])]
    # of two gates, the one sigmoid / softmax whatever the sizes (the other is
    # copied to the product's shape, as where it was expanded first); a softmax
    # / sigmoid larger than the value (masks per source times the encoder's
    # output broadcast over the sources) gates it too
    named = [(x, g, i) for x, g, i in gates if _gate_fn(g)]
    pairs = named if len(gates) == 2 and len(named) == 1 else \
        [(x, g, i) for x, g, i in gates if g.index.numel() <= x.index.numel()] or \
        [(x, g, i) for x, g, i in gates
         if _gate_fn(g) and not (x.nonneg and is_gate(ip, n.args[1 - i]))]
    # of two gates (ReLU6 and a sigmoid: StarNet's relu6(a) * sigmoid(b)) the sigmoid
    pairs.sort(key=lambda p: not _gate_fn(p[1]))
    if pairs:
        # (the gate's branch is left out: so are the warnings of what only it reads)
        _drop_branch_warnings(ip, n.args[pairs[0][2]])
        return _gated(ip, n, pairs[0][0], real, factor_range(ip, n.args[pairs[0][2]]))
    # refused where it reaches the output; a gate's branch may hold it (SPEC §1b)
    return ip.refused(n, "product of two network values", "neither factor is a gate (a "
                      "non-negative bounded value: a sigmoid / hard-sigmoid / softmax of "
                      "another value): a product of two values computed from the input "
                      "(self-attention, bilinear pooling, a ReLU'd value times another) has "
                      "no fixed weights, so the signed graph is not defined for it",
                      product=True)


def _gated(ip, n, x, real, gate=(0.0, float("inf")), branch=None):
    """``x * g`` with ``g`` a gate (SPEC §1b, ``gates="scale"``): ``x``, a
    positive rescaling; the gate's branch adds no edge (pruning leaves it out).
    ``gate``: the range of the factor (:func:`~.ranges.factor_range`), kept on
    the copy for sums with other copies of ``x``; ``branch``: the gate's fx
    node, whose branch's warnings are taken back."""
    if ip.rules["gates"] == "error":
        ip.unsupported(n, "gate", "a non-negative gate multiplies the value "
                       "(squeeze-excitation / attention gate) and gates='error'")
    ip.gated.append(ip.where(n))
    if branch is not None:
        _drop_branch_warnings(ip, branch)
    # the gate's value, fixed factors included (relu6(z + 3) / 6, the
    # hard-sigmoid written out), is the rescaling: it adds nothing; a value
    # the gate broadcasts to a larger shape (x of C x 1 x W, a spatial gate
    # of 1 x H x W) is copied to it
    if isinstance(real, torch.Tensor):
        x = expand_to(ip.b, x, real.shape[1:], lead=real.shape[0])
    if isinstance(x, Ref):
        gate = gate_product(x.gate, gate)
    return _flag(x, nonneg=False, fn=None, value=None, gated=True, gate=gate)


def gated_by_refused(ip, n, args, real):
    """``x * g`` (or ``x / d``) where the gate ``g`` (the positive divisor
    ``d``) is computed through a value the graph cannot hold
    (:class:`~.symbolic.Refused`: BAM's ``1 + sigmoid(channel * spatial)``,
    SRM's statistics beside a value): the gate's branch is left out with it,
    so ``x`` is gated as by any gate.  None for any other op reading a refused
    value (which carries the refusal on)."""
    packet = base_packet(n.target)
    if packet in (aten.where, aten.masked_fill) and len(args) == 3:
        # a mask computed from the input zeroing a value: ``where(mask, 0, x)``
        # is ``x * (1 - mask)``, a gate of values 0 and 1 (kornia's guard
        # ``where(|x|.amax() == 0, 0, F.normalize(x))``)
        mask, pairs = (args[1], [(0, 2)]) if packet is aten.masked_fill else \
            (args[0], [(1, 2), (2, 1)])
        at = n.args[1 if packet is aten.masked_fill else 0]
        for i, j in pairs:
            if isinstance(mask, Refused) and _is_sym(args[i]) and _zero(ip.real(n.args[j])) \
                    and not _elementwise_of(at, n.args[i]):
                _drop_branch_warnings(ip, at)
                return _gated(ip, n, ip.b.materialize(args[i]), real, (0.0, 1.0))
        return None
    if packet is aten.div and n.kwargs.get("rounding_mode") is None and \
            len(args) > 1 and _is_sym(args[0]) and isinstance(args[1], Refused) and \
            is_positive_divisor(ip, n.args[1]):     # (a floor or trunc division is no gate)
        return _gated(ip, n, ip.b.materialize(args[0]), real,
                      factor_range(ip, n.args[1], divides=True), branch=n.args[1])
    if packet is not aten.mul or len(args) < 2:
        return None
    for x, g, i in ((args[0], args[1], 1), (args[1], args[0], 0)):
        # (a mask of the value's own elements, y * (y > 0).float(), is a ReLU written
        # out: an activation, refused as the comparison, as where(y > 0, y, 0) is)
        if _is_sym(x) and isinstance(g, Refused) and is_gate(ip, n.args[i]) and \
                not _elementwise_of(n.args[i], n.args[1 - i]):
            return _gated(ip, n, ip.b.materialize(x), real, factor_range(ip, n.args[i]),
                          branch=n.args[i])
    return None


#: ops that mix elements (layers, reductions): what is computed through them
#: is no elementwise function of their input
_MIXES = set("convolution conv1d conv2d conv3d conv_transpose1d conv_transpose2d linear mm bmm "
             "matmul addmm baddbmm einsum mean sum amax amin max min norm linalg_vector_norm "
             "var std var_mean std_mean avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d "
             "max_pool3d max_pool2d_with_indices adaptive_avg_pool1d adaptive_avg_pool2d "
             "_adaptive_avg_pool2d adaptive_max_pool2d upsample_nearest2d upsample_bilinear2d "
             "_fft_r2c _fft_c2r _fft_c2c".split())


def _elementwise_of(mask, value) -> bool:
    """Whether fx node ``mask`` is an elementwise function of what ``value`` is
    an elementwise function of (``where(x > 0, x, 0)``, a ReLU written out: an
    activation, not a gate), rather than of a statistic or another layer's
    output (``where(|x|.amax() == 0, 0, x)``).  Two backward searches that
    stop at ops that mix elements; O(ops before them)."""
    def closure(start):
        out, stack = set(), [start]
        while stack:
            m = stack.pop()
            if not isinstance(m, torch.fx.Node) or m in out:
                continue
            out.add(m)
            name = _opname(m.target).split(".")[0] if m.op == "call_function" else ""
            if m.op == "call_function" and name not in _MIXES:
                stack.extend(m.all_input_nodes)
        return out

    return bool(closure(mask) & closure(value))


def _drop_branch_warnings(ip, gate) -> None:
    """Take back the warnings of the ops that only compute fx node ``gate`` (a
    mask's ``|x|``): its branch is left out of the graph."""
    only, order = {gate}, ip.node_order()
    for m in sorted(ancestors(gate) - {gate}, key=order.__getitem__, reverse=True):  # users first
        if m.users and all(u in only for u in m.users):
            only.add(m)
    ip.b.retract_warnings(only)


def _zero(v) -> bool:
    """Whether ``v`` (a number or a fixed tensor) is 0 everywhere."""
    if isinstance(v, torch.Tensor):
        return not v.is_complex() and bool((v == 0).all())
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0


def _matmul(ip, n, args, kwargs, real):
    """``addmm(bias, x, W^T)`` / ``mm(x, W^T)``: a dense layer."""
    off = 1 if n.target is aten.addmm.default else 0
    x, w = args[off], args[off + 1]
    if _is_sym(x) and _is_sym(w):
        ip.unsupported(n, "matrix product of two network values", "a product of two values "
                       "computed from the input (self-attention, bilinear pooling) has no "
                       "fixed weights, so the signed graph is not defined for it", at_once=True)
    if not _is_sym(x):
        if off or not isinstance(w, Ref) or w.index.ndim != 2:
            ip.unsupported(n, _opname(n.target), "the input enters a matrix product from the "
                           "right; only x @ W, or W @ x with fixed W, is a dense layer")
        # W @ x (torch.tensordot with the weight first, tensorly's contractions):
        # (x^T @ W^T)^T, the dense layer W at every column of x
        xt = remap(ip.b.materialize(w), lambda t, fill: t.T.contiguous())
        out = _positionwise(ip, n, xt, ip.real(n.args[0]).detach())
        return remap(out, lambda t, fill: t.T.contiguous())
    weight = ip.real(n.args[off + 1]).T
    alpha = n.kwargs.get("alpha", 1)
    if alpha != 1:
        weight = weight * alpha
    real_in = ip.real(n.args[off])
    x = ip.b.materialize(x)
    if real_in.shape[0] > 1:
        return _positionwise(ip, n, x, weight)
    return dense_op(ip.b, ip.where(n), x, real_in, real, weight)


def _positionwise(ip, n, x, weight):
    """A dense layer applied at every position (``(positions, C_in) @ W^T``, the
    batch folded into the rows: a channels-last MLP).  Its edges are those of a
    1x1 convolution over the positions; its node block is ``(C_out, positions)``
    and the value keeps the rows-by-channels layout of the real tensor.  The
    block is made at once, so a residual addition after it gets a block of its
    own (identity edges)."""
    N, c_in = x.index.shape
    c_out = weight.shape[0]
    src = remap(x, lambda t, fill: t.T.reshape(1, c_in, N).contiguous())
    blk = ConvBlock(weight.detach().reshape(c_out, c_in, 1), (c_in, N), (c_out, N), (1,),
                    [(0, 0)], (1,), 1, module=ip.where(n))
    ref = ip.b.materialize(Pending([(blk, src)], (c_out, N), op="dense", name=ip.where(n)))
    return Ref(ref.index.reshape(c_out, N).T.contiguous())


def _grouped_product(ip, n, args):
    """``bmm`` / ``baddbmm`` / ``matmul`` of a network value and a fixed weight
    with one matrix per batch entry (a grouped linear layer ``x @ W`` with ``W``
    of ``(G, c, o)``; a locally connected layer, lowered to one product per
    position): entry ``g`` through its own dense layer (a bias dropped, as
    every bias is; ``baddbmm``'s ``alpha`` a factor).  None for other products."""
    name = _opname(n.target)
    off = 1 if name == "baddbmm" else 0
    if name not in ("bmm", "baddbmm", "matmul") or len(args) < off + 2 or \
            (off and _is_sym(args[0])):
        return None
    a, b = args[off], args[off + 1]
    if _is_sym(a) == _is_sym(b):
        return None
    ra, rb = ip.real(n.args[off]), ip.real(n.args[off + 1])
    if not isinstance(ra, torch.Tensor) or not isinstance(rb, torch.Tensor):
        return None
    # a value of one sample (1, G, N, c) against G matrices: its G rows are the batch
    lead = 1 if name == "matmul" and (ra if _is_sym(a) else rb).ndim == 4 and \
        (ra if _is_sym(a) else rb).shape[0] == 1 else 0
    ra, rb = (ra[0], rb) if lead and _is_sym(a) else (ra, rb[0]) if lead else (ra, rb)
    if ra.ndim != 3 or rb.ndim != 3 or max(ra.shape[0], rb.shape[0]) < 2:
        return None
    w, rx = (rb, ra) if _is_sym(a) else (ra, rb)
    if rx.shape[0] not in (1, w.shape[0]) or w.shape[0] < 2:
        return None                 # (the value's groups, one value broadcast over them)
    if name != "matmul" and bool((w == w[:1]).all()):
        return None                 # one weight expanded over a batch of rows: _bmm's case
    x = ip.b.materialize(a if _is_sym(a) else b)
    G = w.shape[0]
    if lead:
        x = remap(x, lambda t, fill: t[0].contiguous())
    if rx.shape[0] == 1:            # x @ W with x broadcast over the groups: copies
        x = remap(x, lambda t, fill: t.expand(G, *t.shape[1:]).contiguous())
        ra, rb = (ra.expand(G, *ra.shape[1:]), rb) if _is_sym(a) else \
            (ra, rb.expand(G, *rb.shape[1:]))
    if _is_sym(a):              # X (B, N, c) @ W (B, c, o)
        out = _grouped_positionwise(ip, n, x, rb.transpose(1, 2))
    else:                       # W (B, o, c) @ X (B, c, N)
        x = remap(x, lambda t, fill: t.transpose(1, 2).contiguous())
        out = remap(_grouped_positionwise(ip, n, x, ra),
                    lambda t, fill: t.transpose(1, 2).contiguous())
    if lead:
        out = remap(out, lambda t, fill: t.unsqueeze(0).contiguous())
    alpha = n.kwargs.get("alpha", 1) if off else 1
    return out if alpha == 1 else scale(ip.b, out, torch.tensor(float(alpha),
                                                                dtype=torch.float64))


def _grouped_positionwise(ip, n, x, weight):
    """Batch entry ``g`` of ``x`` (``(B, N, c)``) through its own dense layer
    ``weight[g]`` (``(B, o, c)``) at each of its ``N`` rows: the edges of a
    grouped 1x1 convolution (``B`` groups of ``c`` channels, ``N`` positions).
    The value comes back as ``(B, N, o)``."""
    B, N, c = x.index.shape
    o = weight.shape[1]
    src = remap(x, lambda t, fill: t.permute(0, 2, 1).reshape(1, B * c, N).contiguous())
    blk = ConvBlock(weight.detach().reshape(B * o, c, 1), (B * c, N), (B * o, N), (1,),
                    [(0, 0)], (1,), B, module=ip.where(n))
    ref = ip.b.materialize(Pending([(blk, src)], (B * o, N), op="dense", name=ip.where(n)))
    return Ref(ref.index.reshape(B, o, N).transpose(1, 2).contiguous())


def _linear(ip, n, args, kwargs, real):
    """``linear(x, W)`` / ``matmul(x, W^T)``: a dense layer; on a value with
    leading dimensions (``(1, H, W, C)``) it acts at every position."""
    x, w = args[0], args[1]
    if _is_sym(w):
        if not _is_sym(x):
            grouped = _grouped_product(ip, n, args)
            return grouped if grouped is not None else \
                _weight_first(ip, n, w, ip.real(n.args[0]), ip.real(n.args[1]))
        return _bmm(ip, n, args, kwargs, real)
    weight = ip.real(n.args[1])
    if n.target.overloadpacket is aten.matmul:
        if weight.ndim != 2:
            return _bmm(ip, n, args, kwargs, real)
        weight = weight.T
    x = ip.b.materialize(x)
    real_in = ip.real(n.args[0])
    if real_in.ndim == 2 and real_in.shape[0] == 1:
        return dense_op(ip.b, ip.where(n), x, real_in, real, weight)
    if real_in.ndim == 1:   # a vector, its batch squeezed away (gap(x).squeeze() at batch 1)
        out = ip.b.materialize(dense_op(ip.b, ip.where(n), remap(x, lambda t, fill: t.reshape(
            1, -1)), real_in[None], real[None], weight))
        return remap(out, lambda t, fill: t.reshape(-1))
    # at every position, also of one sample's values regrouped as a batch of
    # rows (a decoder shared by the sources, windows as a batch)
    lead = tuple(real_in.shape[:-1])
    flat = remap(x, lambda t, fill: t.reshape(-1, real_in.shape[-1]))
    out = _positionwise(ip, n, flat, weight)
    return Ref(out.index.reshape(lead + (weight.shape[0],)))


def _weight_first(ip, n, y, weight, real_y):
    """``W @ Y`` with a fixed ``W`` (o, c) and ``Y`` (1, ..., c, m): the dense
    layer ``W`` at each of Y's columns, as ``(Y^T @ W^T)^T``."""
    if n.target.overloadpacket is not aten.matmul or weight.ndim != 2 or real_y.ndim < 3 \
            or real_y.shape[0] != 1:
        ip.unsupported(n, _opname(n.target), "the input enters a matrix product from "
                       "the right; only x @ W and W @ x with a fixed matrix W are dense layers")
    c, m = real_y.shape[-2:]
    cols = remap(ip.b.materialize(y), lambda t, fill: t.transpose(-1, -2).reshape(-1, c))
    out = _positionwise(ip, n, cols, weight)
    lead = tuple(real_y.shape[:-2])
    return Ref(out.index.reshape(lead + (m, weight.shape[0])).transpose(-1, -2).contiguous())


def _bmm(ip, n, args, kwargs, real):
    """``bmm(W, X)`` / ``bmm(X, W)`` with a fixed ``W`` and one batch (an
    ``einsum`` with a weight, lowered), or one ``W`` expanded over a batch of
    rows (a channels-last linear in core ATen): a dense layer at every column
    (row) of ``X``, the edges of a 1x1 convolution (:func:`_positionwise`).  A
    gate written as a matrix product is :func:`_gated_bmm`; any other product of
    two network values (self-attention) is refused."""
    a, b = args[0], args[1]
    gated = _gated_bmm(ip, n, a, b, real) if _is_sym(a) and _is_sym(b) else None
    if gated is not None:
        return gated
    grouped = _grouped_product(ip, n, args)
    if grouped is not None:
        return grouped
    off = 1 if _opname(n.target) == "baddbmm" and not _is_sym(args[0]) else 0
    if off:                     # baddbmm(bias, X, W): the bias dropped, alpha a factor
        a, b = args[1], args[2]
        alpha = float(n.kwargs.get("alpha", 1))
        if alpha != 1 and _is_sym(a) != _is_sym(b):
            a, b = (scale(ip.b, a, torch.tensor(alpha, dtype=torch.float64)), b) if \
                _is_sym(a) else (a, scale(ip.b, b, torch.tensor(alpha, dtype=torch.float64)))
    if (off or _opname(n.target) == "bmm") and _is_sym(a) != _is_sym(b):
        ra, rb = ip.real(n.args[off]), ip.real(n.args[off + 1])
        w = rb if _is_sym(a) else ra
        if ra.shape[0] > 1 and ra.shape[0] == rb.shape[0] and bool((w == w[:1]).all()):
            # one weight expanded over a batch of rows (core ATen's channels-last
            # linear): the rows are more positions of one dense layer
            rows = ra.shape[0]
            if _is_sym(a):      # X (rows, N, c) @ W (c, o)
                x = remap(ip.b.materialize(a), lambda t, fill: t.reshape(1, -1, t.shape[-1]))
                ra, rb = ra.reshape(1, -1, ra.shape[-1]), rb[:1]
            else:               # W (o, c) @ X (rows, c, N)
                x = remap(ip.b.materialize(b), lambda t, fill: t.transpose(0, 1).reshape(
                    1, t.shape[1], -1))
                ra, rb = ra[:1], rb.transpose(0, 1).reshape(1, rb.shape[1], -1)
            a, b = (x, b) if _is_sym(a) else (a, x)
            left = _is_sym(args[off])
            out = _bmm_one(ip, n, a, b, ra, rb)
            o = real.shape[-1] if left else real.shape[1]
            if left:
                return remap(out, lambda t, fill: t.reshape(rows, -1, o))
            return remap(out, lambda t, fill: t.reshape(o, rows, -1).transpose(0, 1)
                         .contiguous())
        if ra.shape[0] == 1 and rb.shape[0] == 1:
            return _bmm_one(ip, n, a, b, ra, rb)
    ip.unsupported(n, "batched matrix product", "a batched product of network values "
                   "(self-attention; bilinear or covariance pooling, y @ y^T; a transform "
                   "computed from the input, as a spatial transformer's or PointNet's "
                   "T-Net) has no "
                   "fixed weights, so the signed graph is not "
                   "defined for it", at_once=True)


def _bmm_one(ip, n, a, b, ra, rb):
    """``bmm`` of one network value and one fixed weight, a batch of one."""
    if _is_sym(b):          # W (o, c) @ X (c, N): the columns of X are positions
        x = remap(ip.b.materialize(b), lambda t, fill: t[0].T.contiguous())
        out = _positionwise(ip, n, x, ra[0])
        return remap(out, lambda t, fill: t.T.unsqueeze(0).contiguous())
    x = remap(ip.b.materialize(a), lambda t, fill: t[0].contiguous())  # X (N, c) @ W
    out = _positionwise(ip, n, x, rb[0].T)
    return remap(out, lambda t, fill: t.unsqueeze(0).contiguous())


def _gated_bmm(ip, n, a, b, real):
    """``bmm(X, G)`` or ``bmm(G, X)`` of one batch with ``G >= 0`` computed from
    another value (GCNet's context pooling ``x @ softmax(mask)``, a gate written
    as a matrix product): the gate a positive rescaling (SPEC §1b, as
    ``(x * g).sum(-1)``), so each output element sums the elements of ``X`` it
    reads, weight 1; several heads ``(1, h, M, K) @ (1, h, K, N)`` each so.  None
    where neither factor is such a gate."""
    ra, rb = ip.real(n.args[0]), ip.real(n.args[1])
    if not (isinstance(ra, torch.Tensor) and isinstance(rb, torch.Tensor)) or \
            ra.ndim != rb.ndim or ra.ndim < 3 or ra.shape[0] != 1 or \
            ra.shape[:-2] != rb.shape[:-2]:
        return None     # the sample's matrices (heads) side by side, not broadcast
    a, b = ip.b.materialize(a), ip.b.materialize(b)
    if not isinstance(a, Ref) or not isinstance(b, Ref) or _same(a, b):
        return None
    (M, K), N, lead = ra.shape[-2:], rb.shape[-1], tuple(ra.shape[:-2])
    shape = lead + (M, K, N)
    # a softmax or sigmoid only: a ReLU's output times a value under a matrix
    # product is linear attention, refused as attention is
    gate_a, gate_b = _gate_fn(a), _gate_fn(b)
    if gate_a == gate_b:
        return None     # neither, or both could be the gate
    if gate_b:          # X (M, K) @ G (K, N): out[m, n] reads X[m, :]
        x = remap(a, lambda t, fill: t.unsqueeze(-1).expand(shape).contiguous())
    else:               # G (M, K) @ X (K, N): out[m, n] reads X[:, n]
        x = remap(b, lambda t, fill: t.unsqueeze(-3).expand(shape).contiguous())
    if ip.rules["gates"] == "error":
        ip.unsupported(n, "gate", "a non-negative gate multiplies the value (a matrix "
                       "product with softmax weights) and gates='error'")
    ip.gated.append(ip.where(n))
    return reduce_op(ip.b, ip.where(n), x, torch.empty(shape), real, [len(shape) - 2], 1.0)


def _gate_fn(g: Ref) -> bool:
    """Whether ``g`` is a softmax or (hard-)sigmoid: a gate whatever its size."""
    name = (g.fn or "").split(".")[0].lstrip("_")      # softmax.int, _softmax
    return g.nonneg and name in ("softmax", "sigmoid", "hardsigmoid")


def _attention(ip, n, args, kwargs, real):
    ip.unsupported(n, "scaled dot-product attention", "attention multiplies two values "
                   "computed from the input, so the signed graph is not defined for it",
                   at_once=True)

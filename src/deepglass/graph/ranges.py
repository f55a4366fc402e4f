"""The range of a value in a captured program: the interval its elements lie
in whatever the input (SPEC §1b: a gate is a factor ``g >= 0`` of the kind of a
sigmoid, hard-sigmoid or softmax).

Interval arithmetic over the fx graph, backwards from a node: the network's
inputs and every layer with weights are unbounded, constants lie between their
own extremes, bounded elementwise functions (sigmoid, tanh, ReLU6, ...) bound
what they compute, and sums, products, quotients by constants, means, pools,
views, paddings and interpolations with non-negative weights carry the bounds
on.  A factor whose range is non-negative and bounded is a gate: ``1 -
sigmoid(z)``, ``1 + tanh(z)``, ``sigmoid(a) * sigmoid(b)``, ``relu6(z + 3) / 6``
are; a ReLU, softplus, ``|z|`` or ``exp`` factor is not (an unbounded
non-negative value times another value is a product of two values).
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx

from .divisive import fixed_value, nonnegative_mixing
from .symbolic import _name_of, tup

__all__ = ["value_range", "is_gate", "is_positive_divisor"]

INF = math.inf

#: elementwise functions with a fixed range
_FIXED = {"sigmoid": (0.0, 1.0), "hardsigmoid": (0.0, 1.0), "softmax": (0.0, 1.0),
          "_softmax": (0.0, 1.0), "sin": (-1.0, 1.0), "cos": (-1.0, 1.0),
          "log_softmax": (-INF, 0.0), "_log_softmax": (-INF, 0.0),
          # spreads and norms: non-negative, whatever they reduce
          "var": (0.0, INF), "std": (0.0, INF), "linalg_vector_norm": (0.0, INF),
          "norm": (0.0, INF),
          # comparisons: a mask of 0 and 1 (cast to a number: (z > 0).float())
          **dict.fromkeys("gt ge lt le eq ne logical_not logical_and logical_or".split(),
                          (0.0, 1.0))}
#: non-decreasing elementwise functions: the range of the image is the image of the range
_INCREASING = {
    "relu": lambda t: max(t, 0.0),
    "relu6": lambda t: min(max(t, 0.0), 6.0),
    "exp": lambda t: math.exp(min(t, 700.0)) if t < INF else INF,
    "sqrt": lambda t: math.sqrt(max(t, 0.0)),          # (defined for t >= 0)
    # bounded ones: tanh of a non-negative value is a gate in [0, 1)
    "tanh": math.tanh, "erf": math.erf, "atan": math.atan, "arctan": math.atan,
}
#: ops whose elements are some of their first operand's (moves, copies,
#: selections) or convex combinations of them (means, average pools, nearest
#: and linear interpolation)
_SAME = set((
    "view _unsafe_view reshape permute transpose t unsqueeze squeeze expand expand_as slice "
    "select clone contiguous alias detach _to_copy to type_as dropout feature_dropout flatten "
    "unflatten movedim swapaxes narrow pixel_shuffle pixel_unshuffle channel_shuffle "
    "native_channel_shuffle repeat index_select index gather take unfold roll flip unbind split "
    "split_with_sizes chunk "
    "mean adaptive_avg_pool1d adaptive_avg_pool2d "
    "_adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool3d amax amin max min "
    "max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices "
    "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d "
    "upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d "
    "_upsample_nearest_exact2d _upsample_nearest_exact3d upsample_linear1d "
    "upsample_bilinear2d upsample_trilinear3d _upsample_bilinear2d_aa reflection_pad1d "
    "reflection_pad2d reflection_pad3d replication_pad1d replication_pad2d replication_pad3d "
    "_pad_circular lift_fresh_copy").split())
#: deeper than this, a value is taken as unbounded (no recursion limit reached)
_DEPTH = 200


def _hull(*ranges) -> tuple[float, float]:
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _times(a, b) -> tuple[float, float]:
    ends = [x * y for x in a for y in b]
    ends = [0.0 if math.isnan(e) else e for e in ends]        # 0 * inf: the bound 0
    return min(ends), max(ends)


def _const(t) -> tuple[float, float]:
    """The extremes of a constant (a number, a tensor); unbounded for anything else."""
    if isinstance(t, (bool, int, float)):
        return float(t), float(t)
    if isinstance(t, torch.Tensor) and t.numel() and not t.is_complex():
        t = t.detach().double()
        return float(t.min()), float(t.max())
    return -INF, INF


def value_range(ip, node, _depth: int = 0) -> tuple[float, float]:
    """``(lo, hi)`` bounding every element of ``node``'s value for any input
    (a constant: its own extremes).  O(nodes between ``node`` and the nearest
    layers or inputs), cached per node on the interpreter ``ip``."""
    if not isinstance(node, torch.fx.Node):
        return _const(node)
    memo = ip.__dict__.setdefault("_ranges", {})
    if node not in memo:
        memo[node] = _range_of(ip, node, _depth) if _depth < _DEPTH else (-INF, INF)
    return memo[node]


def _range_of(ip, n, depth) -> tuple[float, float]:
    if n not in ip.input_dependent():
        return _const(ip.env.get(n))
    if n.op != "call_function":
        return -INF, INF
    name = "getitem" if n.target is operator.getitem else _name_of(n.target)
    if name.endswith("_") and not name.startswith("__"):
        name = name[:-1]                # in place: relu_, mul_

    def of(i):
        a = n.args[i] if i < len(n.args) else None
        return value_range(ip, a, depth + 1)

    def arg(i, key, default):
        return n.args[i] if i < len(n.args) else n.kwargs.get(key, default)

    if name in ("max", "min", "maximum", "minimum") and len(n.args) > 1 and \
            not isinstance(n.args[1], (int, list, tuple)):
        # of two values (not over a dimension): elementwise max / min
        (alo, ahi), (blo, bhi) = of(0), of(1)
        pick = max if name in ("max", "maximum") else min
        return pick(alo, blo), pick(ahi, bhi)
    if name in _FIXED:
        return _FIXED[name]
    if name == "bitwise_not":       # of a mask (~(z > 0)): a mask; of integers, unbounded
        val = n.meta.get("val")
        return (0.0, 1.0) if getattr(val, "dtype", None) == torch.bool else (-INF, INF)
    if name in _INCREASING:
        lo, hi = of(0)
        f = _INCREASING[name]
        return f(lo), f(hi)
    if name == "getitem" and len(n.args) > 1 and n.args[1] == 1 and \
            isinstance(n.args[0], torch.fx.Node) and \
            _name_of(n.args[0].target) in ("max", "min", "sort", "topk", "kthvalue", "mode",
                                           "max_pool2d_with_indices", "max_pool3d_with_indices",
                                           "adaptive_max_pool1d", "adaptive_max_pool2d",
                                           "adaptive_max_pool3d"):
        return 0.0, INF             # the indices of a max / sort: not its values
    if name in ("argmax", "argmin"):
        return 0.0, INF
    if name in ("_to_copy", "to") and _integer_dtype(n):
        lo, hi = of(0)              # truncated toward 0: within the integers around
        return (math.floor(lo) if lo > -INF else lo), (math.ceil(hi) if hi < INF else hi)
    if name == "div" and (n.kwargs.get("rounding_mode") or
                          (len(n.args) > 2 and isinstance(n.args[2], str))):
        return -INF, INF            # floor / trunc division (x // c): not read
    if name in _SAME or name == "getitem":
        return of(0)
    if name in ("cat", "concat", "stack"):
        parts = [value_range(ip, a, depth + 1) for a in n.args[0]]
        return _hull(*parts) if parts else (-INF, INF)
    if name == "constant_pad_nd" or name == "pad" and arg(2, "mode", "constant") == "constant":
        value = arg(2, "value", 0.0) if name == "constant_pad_nd" else arg(3, "value", 0.0)
        return _hull(of(0), _const(float(value or 0.0)))
    if name == "pad":           # reflect, replicate, circular: the value's own elements
        return of(0)
    if name in ("hardtanh", "clamp", "clamp_min", "clamp_max"):
        lo, hi = of(0)
        low = arg(1, "min", -1.0 if name == "hardtanh" else None) if name != "clamp_max" else None
        high = arg(2, "max", 1.0 if name == "hardtanh" else None) if name != "clamp_min" else \
            None
        if name == "clamp_max":
            high = arg(1, "max", None)
        low = _const(low)[0] if low is not None else -INF
        high = _const(high)[1] if high is not None else INF
        return min(max(lo, low), high), max(min(hi, high), low)
    if name == "neg":
        lo, hi = of(0)
        return -hi, -lo
    if name == "abs":
        lo, hi = of(0)
        return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))
    if name in ("add", "sub", "rsub"):
        a, b = of(0), of(1)
        alpha = float(_const(arg(2, "alpha", 1))[0])
        if name == "rsub":
            a, b = b, a
        b = _times(b, (-alpha, -alpha) if name != "add" else (alpha, alpha))
        return a[0] + b[0], a[1] + b[1]
    if name == "mul":
        if n.args[0] is n.args[1]:     # z * z
            return _power(of(0), 2.0)
        return _times(of(0), of(1))
    if name in ("leaky_relu", "elu"):
        return _increasing_with_slope(of(0), n, arg, name)
    if name == "div":
        share = _share(ip, n.args[0], n.args[1]) if of(0)[0] >= 0 else None
        if share is not None:
            return 0.0, share   # e / e.sum(): a softmax written out
        lo, hi = of(1)
        if lo <= 0 <= hi:
            return -INF, INF
        return _times(of(0), (1.0 / hi, 1.0 / lo))
    if name == "where":             # where(mask, a, b)
        return _hull(of(1), of(2))
    if name == "masked_fill":       # masked_fill(x, mask, value)
        return _hull(of(0), of(2))
    if name == "rsqrt":
        lo, hi = of(0)
        return (1.0 / math.sqrt(hi) if hi > 0 else INF), (1.0 / math.sqrt(lo) if lo > 0 else INF)
    if name == "reciprocal":
        lo, hi = of(0)
        return (-INF, INF) if lo <= 0 <= hi else (1.0 / hi, 1.0 / lo)
    if name == "pow" and not isinstance(n.args[1], torch.fx.Node):
        return _power(of(0), float(_const(n.args[1])[0]))
    if name == "softplus":
        return _softplus(of(0), float(arg(1, "beta", 1.0)), float(arg(2, "threshold", 20.0)))
    if name in ("avg_pool1d", "avg_pool2d", "avg_pool3d"):
        return _avg_pool(of(0), n, arg, int(name[-2]))
    if name in ("convolution", "conv1d", "conv2d", "conv3d", "linear") and n.args and \
            of(0)[0] >= 0 and nonnegative_mixing(ip, n, n.args[0]):     # (bias: args[2])
        # non-negative weights of a non-negative value (GDN): at least the bias
        bias = fixed_value(ip, n.args[2]) if len(n.args) > 2 else None
        return (float(bias.min()) if isinstance(bias, torch.Tensor) and bias.numel() else
                0.0), INF
    if name == "sum":
        real_in, real_out = ip.env.get(n.args[0]), ip.env.get(n)
        if isinstance(real_in, torch.Tensor) and isinstance(real_out, torch.Tensor) and \
                real_out.numel():
            k = real_in.numel() / real_out.numel()
            lo, hi = of(0)
            return _times((lo, hi), (k, k))
    return -INF, INF


def _integer_dtype(n) -> bool:
    """Whether a cast node ``n`` makes integers (``.long()``, ``.to(torch.int32)``)."""
    val = n.meta.get("val")
    return isinstance(val, torch.Tensor) and not (val.is_floating_point() or val.is_complex())


def _power(r, p: float) -> tuple[float, float]:
    """The range of ``x ** p`` for ``x`` in ``r`` (a fixed exponent ``p``);
    unbounded where a bound overflows."""
    try:
        return _power_of(r, p)
    except (OverflowError, ZeroDivisionError):
        return -INF, INF


def _power_of(r, p: float) -> tuple[float, float]:
    lo, hi = r
    if p == 0:
        return 1.0, 1.0
    if p > 0 and lo >= 0:
        return lo ** p, hi ** p
    if p > 0 and p.is_integer():
        if p % 2:                   # odd: increasing
            return lo ** p, hi ** p
        return (0.0 if lo <= 0 <= hi else min(lo ** p, hi ** p)), max(lo ** p, hi ** p)
    if p < 0 and lo > 0:
        return hi ** p, lo ** p
    return -INF, INF


def _increasing_with_slope(r, n, arg, name) -> tuple[float, float]:
    """``leaky_relu(x, a)`` and ``elu(x, alpha, scale, input_scale)`` on ``r``:
    non-decreasing where the slope of their negative part is not negative."""
    if name == "leaky_relu":
        a = float(arg(1, "negative_slope", 0.01))
        f = lambda t: t if t >= 0 else a * t if a else 0.0  # noqa: E731
        ok = a >= 0
    else:
        alpha, scale, s_in = (float(arg(i, k, 1.0)) for i, k in
                              ((1, "alpha"), (2, "scale"), (3, "input_scale")))
        f = lambda t: scale * (t if t > 0 else alpha * math.expm1(s_in * t))  # noqa: E731
        ok = scale >= 0 and alpha * s_in >= 0
    return (f(r[0]), f(r[1])) if ok else (-INF, INF)


def _softplus(r, beta: float, threshold: float) -> tuple[float, float]:
    """The range of ``softplus(x, beta, threshold)`` for ``x`` in ``r``:
    ``log(1 + exp(beta x)) / beta`` below ``threshold / beta``, ``x`` above
    (each piece increasing, the function as a whole not always)."""
    if beta <= 0:
        return -INF, INF
    lo, hi = r
    t = threshold / beta

    def smooth(x):
        return x if x == INF else math.log1p(math.exp(min(beta * x, 700.0))) / beta

    parts = []
    if lo <= t:
        parts.append((smooth(lo) if lo > -INF else 0.0, smooth(min(hi, t))))
    if hi > t:
        parts.append((max(lo, t), hi))
    return _hull(*parts)


def _avg_pool(r, n, arg, nd) -> tuple[float, float]:
    """The range of an average pool of values in ``r``: a convex combination
    of them, of them and zeros where padding counts in the divisor
    (``count_include_pad``), a sum of one to ``|window|`` of them over the
    divisor where one is set (``divisor_override``)."""
    kernel = arg(1, "kernel_size", 1)
    window = math.prod(tup(kernel, nd))
    padding = arg(3, "padding", 0)
    padded = any(padding) if isinstance(padding, (list, tuple)) else bool(padding)
    divisor = arg(6, "divisor_override", None) if len(n.args) > 6 or "divisor_override" in \
        n.kwargs else None
    if divisor:
        r = _times(r, (1.0 / divisor, window / divisor))
    include_pad = arg(5, "count_include_pad", True)
    return _hull(r, (0.0, 0.0)) if (padded and include_pad) or divisor else r


def _share(ip, num, den) -> float | None:
    """The bound of ``num / den`` where ``den`` is a sum (or a mean) of the
    non-negative ``num`` itself, plus non-negative constants: each element is
    a share of the sum, at most 1 (a mean: at most the count); else None."""
    while isinstance(den, torch.fx.Node) and _name_of(den.target) == "add" and \
            len(den.args) == 2 and not isinstance(den.args[1], torch.fx.Node) and \
            _times(_const(den.args[1]), (float(den.kwargs.get("alpha", 1)),) * 2)[0] >= 0:
        den = den.args[0]
    # the sum of num itself, over dims kept (or over all): each element of the
    # quotient is divided by a sum that holds it
    if not isinstance(den, torch.fx.Node) or _name_of(den.target) not in ("sum", "mean") or \
            not _same_value(den.args[0], num):
        return None
    dims = den.args[1] if len(den.args) > 1 else den.kwargs.get("dim")
    keep = den.args[2] if len(den.args) > 2 else den.kwargs.get("keepdim", False)
    if dims not in (None, [], ()) and not keep:
        return None
    if _name_of(den.target) == "sum":
        return 1.0
    real_in, real_out = ip.env.get(den.args[0]), ip.env.get(den)
    return real_in.numel() / real_out.numel() if isinstance(real_in, torch.Tensor) and \
        isinstance(real_out, torch.Tensor) and real_out.numel() else None


def _same_value(a, b, depth: int = 8) -> bool:
    """Whether fx nodes ``a`` and ``b`` compute the same value: one node, or
    the same op of the same arguments (``exp(z)`` written twice)."""
    if a is b:
        return True
    if depth == 0 or not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)) or \
            a.op != "call_function" or a.target != b.target or a.kwargs != b.kwargs or \
            len(a.args) != len(b.args):
        return False
    return all(_same_value(x, y, depth - 1) if isinstance(x, torch.fx.Node) else x == y
               for x, y in zip(a.args, b.args))


def is_gate(ip, node) -> bool:
    """Whether ``node``'s value is a gate: non-negative and bounded (SPEC §1b)."""
    lo, hi = value_range(ip, node)
    return lo >= 0 and hi < INF


def factor_range(ip, node, divides: bool = False) -> tuple[float, float]:
    """The range of the factor a gate ``node`` multiplies by: its value's, or
    ``1 / value``'s where it divides (``x / (1 + exp(-z))``)."""
    lo, hi = value_range(ip, node)
    if not divides:
        return lo, hi
    if lo > 0:          # 1 / value of one sign: bounded by the reciprocals of its bounds
        return (1.0 / hi if hi < INF else 0.0), 1.0 / lo
    if hi < 0:
        return 1.0 / hi, (1.0 / lo if lo > -INF else 0.0)
    return -INF, INF


def is_positive_divisor(ip, node) -> bool:
    """Whether dividing by ``node``'s value is a gate: ``1 / value`` is
    positive and bounded (``1 + exp(-z)``, a sigmoid written out)."""
    return value_range(ip, node)[0] > 0

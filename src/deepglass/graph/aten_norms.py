"""Normalizations and per-sample statistics in the ATen capture (SPEC §1, §1b).

A batch norm with running statistics folds ``gamma / sqrt(var + eps)`` into
the incoming edges; a per-sample norm (LayerNorm, GroupNorm, InstanceNorm,
RMSNorm, LRN, EvoNorm, written out or not) divides by statistics of the
sample, a positive rescaling, and folds its gain.  Statistics are symbolic
values of their own (:class:`Stat`): powers, variances and norms of network
values, their means and pools, that may only rescale a value and never
become graph nodes.  A power that no normalization reduces is an elementwise
activation instead (:func:`feeds_normalization`).  Rules have the signature
of :mod:`.aten_rules`.
"""

from __future__ import annotations

import dataclasses
import operator

import torch
import torch.fx

from .aten_activations import run_again
from .symbolic import (_SHAPE_ONLY, Pending, Ref, _is_sym, _name_of, _opname, base_packet, scale,
                       uses)
from .divisive import MIXING, nonnegative_mixing
from .moments import moment, power
from .batch_axis import reduces_batch
from .stat_search import (centres_exactly, descendants, fixed_gain, same_inputs, sum_count,
                          value_of_its_own)

__all__ = ["Stat", "absolute_statistic", "feeds_normalization", "stat_sign", "variance_form"]

aten = torch.ops.aten


@dataclasses.dataclass
class Stat:
    """A non-negative per-sample statistic of network values (``x ** 2``, its
    means and pools, their roots): what normalizations divide by (local
    response norm, RMSNorm, a layer norm written out).  It may only rescale a
    value (SPEC §1b: a positive rescaling); it never becomes graph nodes.
    ``sign``: +1 where it is non-negative, -1 where it was negated
    (``-rsqrt(...)``), 0 where its sign depends on the input (``std - 1``, a
    log, the mean of a signed value): such a statistic rescales nothing."""

    shape: tuple
    sign: int = 1
    gain: torch.Tensor | None = None      # a fixed factor of either sign (.norm_gain)


def _batch_norm_layer(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    if r[5] or r[3] is None:
        # no running statistics (track_running_stats=False): the batch's own
        # statistics, a positive rescaling per channel as a per-sample norm's
        # (SPEC §1b): its gain folds in by the norm rule; batchnorm='ignore'
        # ignores the layer whole, as it does one with running statistics
        if ip.rules["batchnorm"] == "ignore":
            return args[0]
        return _channel_gain(ip, n, args[0], r[1], r[0].ndim)
    return _batch_norm_scale(ip, n, args[0], r[1], r[4], r[7], r[0].ndim)


def in_frozen_batch_norm(n) -> bool:
    """Whether op ``n`` is computed inside a frozen batch norm (torchvision's and
    timm's ``FrozenBatchNorm2d``: ``x * scale + shift`` from its buffers)."""
    stack = n.meta.get("nn_module_stack") or {}
    return any("FrozenBatchNorm" in (cls if isinstance(cls, str) else
                                     getattr(cls, "__name__", str(cls)))
               for _, cls in stack.values())


def frozen_or(rule):
    """``rule`` (a product's), except that under ``batchnorm="ignore"`` a frozen
    batch norm's fixed scale is ignored as a batch norm layer's is (SPEC §1b: the
    result does not depend on which module computes the batch norm)."""
    def mul(ip, n, args, kwargs, real):
        if ip.rules["batchnorm"] == "ignore" and in_frozen_batch_norm(n) and \
                sum(_is_sym(a) for a in args[:2]) == 1:
            return next(a for a in args[:2] if _is_sym(a))
        return rule(ip, n, args, kwargs, real)
    return mul


def _layer_norm_layer(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return _layer_norm_scale(ip, n, args[0], r[2] if len(r) > 2 else None)


def _group_norm_layer(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return _channel_gain(ip, n, args[0], r[2] if len(r) > 2 else None, r[0].ndim)


def _instance_norm_layer(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    if not r[5]:   # use_input_stats False: a batch norm with running statistics
        return _batch_norm_scale(ip, n, args[0], r[1], r[4], r[7], r[0].ndim)
    return _channel_gain(ip, n, args[0], r[1], r[0].ndim)


#: ops that only move or copy a value's elements, each once
_MOVES = set("view _unsafe_view reshape permute transpose t unsqueeze squeeze contiguous clone "
             "alias flatten movedim unflatten swapaxes detach _to_copy".split())
_NORMS = ("linalg_vector_norm", "norm")


def _fold_gain(ip, n, val, s, count=uses, src=None):
    """A norm's gain ``s`` (broadcast over ``val``) folded into the edges that
    end on the nodes it normalizes (SPEC §1b: "into the incoming edges"),
    where those nodes are a layer's output read only here, through moves of
    its elements (ConvNeXt's LayerNorm of a permuted convolution output);
    else :func:`~.symbolic.scale` (a factor on the value, which lands on the
    edges of the layers that read it where it cannot fold).  ``count(node)``:
    the reads of a node that make it read more than once; ``src``: ``val``'s node (n.args[0])."""
    if isinstance(val, Ref) and val.act == 0 and _into_edges(ip, n, val, s, count, src):
        return val
    return scale(ip.b, val, s)


def _into_edges(ip, n, val, s, count=uses, src=None) -> bool:
    src = src if src is not None else n.args[0] if n.args else None
    while True:   # back from the norm to the op that made the nodes: each read once
        if not isinstance(src, torch.fx.Node) or count(src) != 1:
            return False
        sym = ip.sym.get(src)
        if isinstance(sym, Pending):
            hit = ip.b._materialized.get(id(sym))
            if hit is None or hit[0] is not sym:
                return False
            break
        op = _name_of(src.target)
        if src in ip.made and op not in _MOVES:
            break
        if op not in _MOVES or not src.args:
            return False
        src = src.args[0]
    ids = val.index.reshape(-1)
    nbs = ip.b.node_blocks
    k = next((i for i, nb in enumerate(nbs) if nb.offset <= int(ids.min()) < nb.stop), None)
    if k is None or ids.numel() != nbs[k].size or int(ids.min()) != nbs[k].offset or \
            not bool(torch.equal(torch.sort(ids).values,
                                 torch.arange(nbs[k].offset, nbs[k].stop))):
        return False
    nb = nbs[k]
    factor = torch.empty(nb.size, dtype=torch.float64)
    factor[ids - nb.offset] = torch.broadcast_to(torch.as_tensor(s, dtype=torch.float64).cpu(),
                                                 tuple(val.index.shape)).reshape(-1)
    ending = [b for b in ip.b.edge_blocks if b.dst == k]
    if not ending or any(b.out_shape != tuple(nb.shape) for b in ending):
        return False
    per = [b.output_scale_of(factor) for b in ending]
    if any(p is None for p in per):
        return False
    for b, p in zip(ending, per):
        b.scale_output(p)
    return True


def _batch_norm_scale(ip, n, val, weight, var, eps, ndim):
    """Batch norm with running statistics: ``gamma / sqrt(var + eps)`` per channel
    folds into the incoming edges, sign included (SPEC §1 ``batchnorm="fold"``)."""
    if ip.rules["batchnorm"] != "fold":
        return val
    s = 1.0 / torch.sqrt(var.double() + eps)
    if weight is not None:
        s = s * weight.double()
    return _fold_gain(ip, n, val, s.reshape((-1,) + (1,) * (ndim - 2)))


def _layer_norm_scale(ip, n, val, weight):
    """SPEC §1b: a per-sample norm's division by the sample's statistics is a
    positive rescaling and its mean subtraction is ignored; the gain (over the
    normalized trailing dimensions) folds in, sign included."""
    if weight is None or ip.rules["norm"] != "fold":
        return val
    return _fold_gain(ip, n, val, weight.double())


def _channel_gain(ip, n, val, weight, ndim):
    """Group / instance norm: as :func:`_layer_norm_scale` with a gain per channel."""
    if weight is None or ip.rules["norm"] != "fold":
        return val
    return _fold_gain(ip, n, val, weight.double().reshape((-1,) + (1,) * (ndim - 2)))


def _batch_norm(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return (_batch_norm_scale(ip, n, args[0], r[1], r[4], r[6], r[0].ndim), None, None)


def _batch_norm_batch_stats(ip, n, args, kwargs, real):
    """Core ATen's batch norm by the batch's own statistics (no running ones):
    as :func:`_batch_norm_layer` finds them."""
    r = ip.real(n.args)
    val = args[0] if ip.rules["batchnorm"] == "ignore" else \
        _channel_gain(ip, n, args[0], r[1], r[0].ndim)
    return (val, None, None)


def _layer_norm(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return (_layer_norm_scale(ip, n, args[0], r[2] if len(r) > 2 else None), None, None)


def _group_norm(ip, n, args, kwargs, real):
    r = ip.real(n.args)
    return (_channel_gain(ip, n, args[0], r[1], r[0].ndim), None, None)


def _statistic(ip, n, args, kwargs, real):
    """``x ** p``, ``sqrt(x)``, ``rsqrt(x)`` of a network value: the start of a
    normalization's statistic (local response norm, RMSNorm) when, reduced,
    it goes on to rescale a network value (:func:`feeds_normalization`); else
    an elementwise activation (StarReLU ``s * relu(x) ** 2 + b``)."""
    name = _opname(n.target)
    if name.startswith("pow"):
        p = n.args[1] if len(n.args) > 1 else n.kwargs.get("exponent")
        if isinstance(p, (torch.fx.Node, torch.Tensor)):
            ip.unsupported(n, "pow", "a power with a tensor exponent")
    else:
        p = 0.5 if name.startswith("sqrt") else -0.5
    if feeds_normalization(ip, n):
        nonneg = bool(getattr(args[0], "nonneg", False))
        even = float(p).is_integer() and int(p) % 2 == 0
        return Stat(tuple(real.shape[1:]), 1 if nonneg or even or not float(p).is_integer()
                    else 0)
    return power(ip, args[0], float(p))


def absolute_statistic(fallback):
    """The rule of ``abs(x)``: the start of a normalization's statistic where,
    reduced, it rescales a network value (GDN1's ``x / (beta + conv(|x|,
    gamma))``, a mean-absolute norm), as ``x ** 2`` is; else ``fallback`` (an
    elementwise activation)."""
    def rule(ip, n, args, kwargs, real):
        if isinstance(args[0], (Ref, Pending)) and isinstance(real, torch.Tensor) and \
                feeds_normalization(ip, n):
            return Stat(tuple(real.shape[1:]), 1)
        return fallback(ip, n, args, kwargs, real)
    return rule


def _reduced_statistic(ip, n, args, kwargs, real):
    """A variance, standard deviation or norm of a network value (EvoNorm, an
    RMSNorm written with ``var``, ConvNeXt-V2's global response norm): a
    per-sample statistic, for a normalization to divide or multiply by;
    where it rescales no value (statistics pooling's features, an x-vector's
    ``cat([x.mean(2), x.std(2)])``), what it computes written out
    (:func:`~.moments.moment`)."""
    if isinstance(args[0], (Ref, Pending)) and not feeds_normalization(ip, n, reduced=True):
        out = moment(ip, n, real)
        if out is not None:
            return out
    if reduces_batch(ip, n):  # (in a gate's too)
        ip.unsupported(n, _opname(n.target), "it reduces over the batch dimension", at_once=True)
    if isinstance(real, tuple):
        return tuple(Stat(tuple(r.shape[1:])) for r in real)
    return Stat(tuple(real.shape[1:]))


#: ops along which a power of a network value is still on its way to a normalization
_STAT_PATH = {getattr(aten, name) for name in (
    "add sub rsub mul div neg clone alias _to_copy to detach contiguous view _unsafe_view "
    "reshape unsqueeze squeeze expand permute flatten transpose pow sqrt rsqrt reciprocal "
    "abs clamp clamp_min exp log constant_pad_nd pad slice select cat dropout cumsum").split()
    if hasattr(aten, name)}
#: ops that combine it with another value: a normalization once it is reduced
_COMBINE = {aten.add, aten.sub, aten.rsub, aten.mul, aten.div}
#: reductions that make a per-sample statistic of it
_REDUCTIONS = {getattr(aten, name) for name in (
    "mean sum amax var var_mean std std_mean avg_pool1d avg_pool2d avg_pool3d "
    "adaptive_avg_pool1d adaptive_avg_pool2d _adaptive_avg_pool2d adaptive_avg_pool3d "
    "_adaptive_avg_pool3d linalg_vector_norm norm cumsum").split() if hasattr(aten, name)}


def feeds_normalization(ip, n, reduced: bool = False, signed: bool = False) -> bool:
    """Whether the value of fx node ``n`` (``x ** p``, ``x * x``; a mean or sum
    when ``reduced``), once reduced over some dimensions (a mean, a sum, an
    average pool, a norm), goes on to multiply or divide another network value,
    or to be subtracted from one: the statistic of a normalization (SPEC §1b).
    A reduction added to a value (``y + y.mean(1)``, a global-context sum) is a
    linear layer, not a statistic; one added after a negation (``x + (-u)``)
    is subtracted.  Before any reduction, a combination with another network
    value ends the search along that path (it makes a new value, not a
    statistic).  A ``signed`` reduction (the mean of a value that may be
    negative) rescales nothing: only its subtraction is a statistic.  A
    forward search over the fx graph through elementwise ops and views;
    O(nodes after ``n``)."""
    depends = ip.input_dependent()
    own = None      # n and what is computed from it, found when first needed
    # (the statistic a reduction was rescaled by on its way: TensorFlow's fused
    # norm adds -mean * s to x * s, a centring written after the rescaling)
    # (and the fixed gains after it: a centring must scale the mean as the value)
    first = sum_count(n) if reduced else ()
    stack = [(u, n, reduced, False, None, first) for u in n.users]
    seen = set()
    # a mean that centres a value and is a value too (statistics pooling written
    # out: cat([mu, sqrt(((x - mu) ** 2).mean())])) is a layer, the centring too
    centring = rescaling = as_value = False
    while stack:
        u, src, reduced, negated, factor, gains = stack.pop()
        if (u, reduced, negated, factor, gains) in seen:
            continue
        seen.add((u, reduced, negated, factor, gains))
        packet = base_packet(u.target)
        if packet in _CHECKS or _name_of(u.target) in _SHAPE_ONLY:
            continue            # (the exporter's dtype check, a shape read: no use of it)
        others = [a for a in u.args if isinstance(a, torch.fx.Node) and a is not src
                  and a in depends] if packet in _COMBINE else []
        if not others and reduced and packet in (aten.mul, aten.div):
            gains = gains + fixed_gain(u, src)
        if others and reduced and variance_form(ip, u):
            # mean(x ** 2) - mean(x) ** 2: the mean of a square on its way to a
            # normalization; the squared mean's path ends here, its centring decides
            if u.args[0] is not src:
                continue
        elif others:
            # the value a statistic rescales is not computed from it: a pooled
            # feature divided by its own norm is the value, its norm the statistic
            own = own or descendants(n)
            if any(a not in own for a in others):
                rescales = packet in (aten.mul, aten.div) and not signed
                # a mean subtracted from the value it averages (x - x.mean(), or
                # negated: x.mean() - x), not from another one (y - z.mean(): a layer)
                centres = (packet in (aten.sub, aten.rsub)) != negated and \
                    _root(n.args[0]) in {_root(a) for a in others} and \
                    centres_exactly(ip, u, src, others, n, gains)
                # (the search goes on: a statistic that is also a value, y / n + n
                # or returned, is no statistic; its value path is read as layers)
                if reduced and rescales and same_inputs(ip, n, others):
                    rescaling = True
                elif reduced and centres and not _squared_as_feature(ip, u):
                    centring = True
                elif reduced and centres:
                    # the centred value squared into a feature (statistics pooling's
                    # std written out): the centring is a layer, as std's own is
                    as_value = True
                elif not (rescales and reduced):
                    # combined with another value otherwise (z - mean(y), y ** 2 * z,
                    # a square beside the statistic it makes): a value there
                    as_value = True
                continue
            if reduced and packet in (aten.mul, aten.div) and not signed and \
                    value_of_its_own(n, others, own, depends):
                # a value made with the statistic, rescaled by it again (AdaIN's
                # own std times the normalized features: t * std(x), t = (x - m) / std)
                rescaling = True
                continue
            if reduced and packet in (aten.mul, aten.div) and len(others) == 1:
                factor = others[0]
            elif reduced and factor is not None and packet in (aten.add, aten.sub) and \
                    (packet is aten.sub) != negated and \
                    _rescaled_by(others, factor, _root(n.args[0]), depends, gains):
                centring = True
                continue
        elif _negates(ip, u, src):
            negated = not negated
        # (max(dim) too: its values are amax's; max(a, b) of two values is no reduction)
        reduces = packet in _REDUCTIONS or u.target is aten.max.dim
        if reduces or nonnegative_mixing(ip, u, src):
            if reduced or reduces:
                gains = gains + sum_count(u)
            reduced = True
        elif packet not in _STAT_PATH and u.target is not operator.getitem:
            # read by anything else (a layer, an output), before or after a
            # reduction: a value (y / rms(y) + conv(y ** 2) reads y ** 2 twice)
            as_value = True
            continue
        stack.extend((w, u, reduced, negated, factor, gains) for w in u.users)
    return (centring or rescaling) and not as_value


#: the exporter's checks of a value's dtype or shape: they read no element
_CHECKS = {getattr(aten, name) for name in
           "_assert_tensor_metadata _assert_scalar _assert_async".split() if hasattr(aten, name)}


def _rescaled_by(others, factor, root, depends, gains=()) -> bool:
    """Whether ``others`` is one value ``x * factor`` (or ``x / factor``) of the
    value ``root``, looked through fixed gains and offsets (``x * s + beta``,
    ``(x / d) * gamma``: TensorFlow's fused norm in its other layouts), its
    fixed gains those of the mean (``gains``: ``x * s - (m * s) * 2`` is no
    centring)."""
    if len(others) != 1:
        return False
    v, mine = others[0], ()
    for _ in range(8):
        packet = base_packet(v.target) if isinstance(v, torch.fx.Node) else None
        if packet not in (aten.mul, aten.div, aten.add, aten.sub):
            return False
        args = [a for a in v.args[:2]]
        if packet in (aten.mul, aten.div) and factor in args and \
                any(a is not factor and _root(a) is root for a in args):
            return sorted(map(repr, mine)) == sorted(map(repr, gains))
        moving = [a for a in args if isinstance(a, torch.fx.Node) and a in depends]
        if len(moving) != 1:
            return False
        if packet in (aten.mul, aten.div):
            mine = mine + fixed_gain(v, moving[0])
        v = moving[0]               # through a fixed gain or offset
    return False
def stat_sign_of(v: Stat) -> int:
    """The sign of ``v`` as other statistics read it: a gain of one sign keeps
    it (its magnitude, a statistic's own constant factor, is forgotten: a
    statistic rescales at 1), one of mixed signs makes it 0."""
    if v.gain is None:
        return v.sign
    return v.sign if bool((v.gain > 0).all()) else -v.sign if bool((v.gain < 0).all()) else 0


def stat_sign(ip, n, args) -> int:
    """The sign of a statistic that ``n`` computes from statistics and constants
    (:class:`Stat`): +1, -1, or 0 where the input decides it."""
    name = _name_of(n.target)
    stats = [v for v in args if isinstance(v, Stat)]
    s = stat_sign_of(stats[0]) if stats else 1
    if name in ("exp", "abs", "var", "var_mean", "std", "std_mean"):
        return 1
    if name in ("sqrt", "rsqrt"):
        return 1 if s == 1 else 0
    if name == "log":
        return 0
    if name == "neg":
        return -s
    if name == "mul" and len(n.args) > 1 and n.args[0] is n.args[1]:
        return 1        # a square
    if name == "sub" and variance_form(ip, n, exact=True):
        return 1        # mean(x ** 2) - mean(x) ** 2 >= 0 (Jensen)
    if name == "pow":
        p = ip.real(n.args[1]) if len(n.args) > 1 else 1
        if isinstance(p, (int, float)) and float(p).is_integer():
            return 1 if int(p) % 2 == 0 else s
        return 1 if s == 1 else 0
    if base_packet(n.target) in MIXING:       # (non-negative weights: see nonnegative_mixing)
        src = next((a for a, v in zip(n.args, args) if isinstance(v, Stat)), None)
        return s if src is not None and nonnegative_mixing(ip, n, src) else 0
    if name in ("clamp", "clamp_min"):
        lo = ip.real(n.args[1]) if len(n.args) > 1 else n.kwargs.get("min")
        return 1 if isinstance(lo, (int, float)) and lo >= 0 else s
    if name in ("add", "sub", "rsub", "mul", "div", "cat"):
        signs = []
        items = list(args[0]) if name == "cat" else list(args[:2])
        for i, v in enumerate(items):
            if isinstance(v, Stat):
                t = stat_sign_of(v)
            else:
                c = torch.as_tensor(ip.real(n.args[0][i] if name == "cat" else n.args[i]))
                t = 1 if bool((c > 0).all()) else -1 if bool((c < 0).all()) else \
                    (None if bool((c == 0).all()) and name not in ("mul", "div") else 0)
            if t is not None and name in ("sub", "rsub") and i == (1 if name == "sub" else 0):
                t = -t
            # add / sub's alpha scales the second operand (the first of rsub)
            alpha = float(n.kwargs.get("alpha", 1)) if name in ("add", "sub", "rsub") else 1.0
            if t is not None and i == (0 if name == "rsub" else 1) and alpha != 1:
                t = None if alpha == 0 else t if alpha > 0 else -t
            signs.append(t)
        signs = [t for t in signs if t is not None]
        if name in ("mul", "div"):
            out = 1
            for t in signs:
                out *= t
            return out
        return signs[0] if signs and all(t == signs[0] for t in signs) else 0
    return s       # means, pools, views: the sign of what they reduce or move


def variance_form(ip, n, exact: bool = False) -> bool:
    """Whether fx node ``n`` computes ``mean(x ** 2) - mean(x) ** 2``: a
    ``sub`` of a mean of ``x ** 2`` and the square of the same mean of ``x``
    (the same reductions over the same axes and the same constant factors on
    both sides, a variance by Jensen where they weigh each term alike: a
    layer norm or a cumulative layer norm written out).  ``exact`` (once the
    values are computed) also compares the constant factors' values and checks
    that the weights sum to 1 (the mean of ones is one).  O(ops between them)."""
    if base_packet(n.target) is not aten.sub or len(n.args) < 2:
        return False
    a = _reduced(ip, n.args[0])
    mean = _square_of(_root(n.args[1]))
    b = _reduced(ip, mean) if mean is not None else None
    if a is None or b is None or len(a[1]) != len(b[1]):
        return False
    x = _square_of(a[0])
    if x is None or _root(x) is not _root(b[0]):
        return False
    for (name, args), (name_b, args_b) in zip(a[1], b[1]):
        if name != name_b or len(args) != len(args_b):
            return False
        for u, v in zip(args, args_b):
            u, v = (ip.env.get(w, w) if isinstance(w, torch.fx.Node) else w for w in (u, v))
            if isinstance(u, torch.fx.Node) or isinstance(v, torch.fx.Node):
                if exact:
                    return False        # (not computed yet: compared when it is)
                continue
            if not (torch.equal(torch.as_tensor(u), torch.as_tensor(v)) if
                    isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor) else u == v):
                return False
    return not exact or _weighs_one(ip, b[0], mean, b[2])


def _weighs_one(ip, x, mean, path) -> bool:
    """Whether the reductions from ``x`` to ``mean`` map ones to ones (a mean)."""
    out = run_again(ip, x, mean, ip.env[mean], set(path), torch.ones_like(ip.env[x]))
    return out is not None and bool(torch.allclose(out, torch.ones_like(out)))


def _square_of(u):
    """``a`` where fx node ``u`` is ``a ** 2`` or ``a * a``, else None."""
    if not isinstance(u, torch.fx.Node) or len(u.args) < 2:
        return None
    name = _name_of(u.target)
    if name == "mul" and u.args[0] is u.args[1]:
        return u.args[0]
    if name == "pow" and isinstance(u.args[1], (int, float)) and float(u.args[1]) == 2.0:
        return u.args[0]
    return None


def _squared_as_feature(ip, u) -> bool:
    """Whether the centred value at fx node ``u`` (``x - mean(x)``) is raised to a power,
    a magnitude or a norm (through views, fixed factors) into a feature.  O(ops after u)."""
    depends, stack, seen = ip.input_dependent(), [u], set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        for w in v.users:
            name = _name_of(w.target)
            if _square_of(w) is v or name in ("abs", "pow", *_NORMS) and w.args[0] is v:
                if not feeds_normalization(ip, w, reduced=name in _NORMS):
                    return True
            elif name in _MOVES | {"expand", "neg"} or name in ("mul", "div") and \
                    w.args[0] is v and not (len(w.args) > 1 and w.args[1] in depends) or \
                    name == "mul" and len(w.args) > 1 and w.args[1] is v and \
                    w.args[0] not in depends:
                stack.append(w)         # (a view or a fixed factor of it)
    return False


def _reduced(ip, u):
    """``(x, chain, path)``: the value fx node ``u`` reduces (through
    reductions, views and constant factors), the reductions and factors on the
    way (name, their other arguments) and the ops passed; None where no
    reduction is passed."""
    depends, chain, path = ip.input_dependent(), [], []
    while isinstance(u, torch.fx.Node) and u.args:
        name, packet = _name_of(u.target), base_packet(u.target)
        if packet in _REDUCTIONS:
            chain.append((name, list(u.args[1:]) + sorted(u.kwargs.items())))
            nxt = u.args[0]
        elif name in ("mul", "div") and len(u.args) > 1:
            live = [v for v in u.args[:2] if isinstance(v, torch.fx.Node) and v in depends]
            if len(live) != 1 or name == "div" and u.args[0] is not live[0]:
                break           # (c / x is no factor of x)
            chain.append((name, [u.args[1] if u.args[0] is live[0] else u.args[0]]))
            nxt = live[0]
        elif name in _MOVES | {"expand"}:
            nxt = u.args[0]
        else:
            break
        path.append(u)
        u = nxt
    return (u, chain, path) if any(_name_of(p.target) not in ("mul", "div") and
                                   base_packet(p.target) in _REDUCTIONS for p in path) else None


def _root(u):
    """The value ``u`` views (through reshapes, permutes, copies)."""
    while isinstance(u, torch.fx.Node) and _name_of(u.target) in _MOVES | {"expand"} \
            and u.args and isinstance(u.args[0], torch.fx.Node):
        u = u.args[0]
    return u


def _subtracted(u, src) -> bool:
    """Whether ``u`` (a ``sub`` or ``rsub``) subtracts ``src`` from its other operand."""
    first = len(u.args) > 0 and u.args[0] is src
    return first if u.target.overloadpacket is aten.rsub else not first


def _negates(ip, u, src) -> bool:
    """Whether ``u`` flips the sign of ``src`` (``-u``, ``c - u``, ``u * -1``)."""
    packet = base_packet(u.target)
    if packet is aten.neg:
        return True
    if packet in (aten.sub, aten.rsub):
        return _subtracted(u, src)
    if packet in (aten.mul, aten.div):
        for a in u.args:
            if a is src:
                continue
            # a factor computed later in the program (a constant made after
            # the reduction) is not known yet: taken as positive
            c = ip.env.get(a) if isinstance(a, torch.fx.Node) else a
            if isinstance(c, (int, float)):
                return c < 0
            if isinstance(c, torch.Tensor) and c.numel() and bool((c < 0).all()):
                return True
    return False

"""A normalization's statistic times a fixed gain of either sign (SPEC §1b).

TensorFlow's fused layer and group norms (what ``tf2onnx`` writes for Keras'
``LayerNormalization`` / ``GroupNormalization``) multiply the value by
``gamma * rsqrt(var + eps)``, then add ``beta - mean * gamma * rsqrt(var +
eps)``: the gain folds into the statistic before it meets the value.  The
statistic stays a positive rescaling; the gain, fixed by the weights, keeps
its sign and folds into the value as a normalization's gain does.  A
:class:`~deepglass.graph.aten_norms.Stat` carries such a gain in ``gain``;
any other use of it reads it as a statistic whose sign the input decides.
"""

from __future__ import annotations

import torch
import torch.fx

from .aten_norms import Stat, _fold_gain
from .ranges import is_gate
from .symbolic import _is_sym, base_packet, scale

__all__ = ["gained_stat", "apply_gain", "fold_fixed_gain", "pools_gate"]

aten = torch.ops.aten


def gained_stat(ip, n, args, packet, real) -> Stat | None:
    """``s * c`` / ``c * s`` / ``s / c`` of a statistic ``s`` and a fixed tensor
    ``c`` (not all ones): a statistic with gain ``c`` (``1 / c``), which the
    value it rescales takes with its sign and magnitude; else None."""
    a, b = args[0], args[1]
    if isinstance(a, Stat) == isinstance(b, Stat) or _is_sym(a) or _is_sym(b):
        return None
    st, i = (a, 1) if isinstance(a, Stat) else (b, 0)
    # c / s: a rescaling by the positive 1 / s (a statistic too) with gain c
    # (ScaleNorm's ``x * (g / x.norm())``, ``(y - m) * (gamma / sqrt(var))``)
    inverse = packet is aten.div and i == 0
    c = ip.real(n.args[i])
    if isinstance(c, (int, float)) and not isinstance(c, bool):
        c = torch.tensor(float(c))       # (a number: 2.0 * s)
    if not isinstance(c, torch.Tensor) or not c.is_floating_point():
        return None
    c = c.detach().double()
    if st.gain is None and (st.sign == 0 or bool((c == 1).all())):
        return None
    if packet is aten.div and not inverse:
        if bool((c == 0).any()):
            return None
        c = 1.0 / c
    if inverse and st.gain is not None:     # c / (g s): the gain c / g
        if bool((st.gain == 0).any()):
            return None
        return Stat(tuple(real.shape[1:]) if isinstance(real, torch.Tensor) else st.shape, 1,
                    c / st.gain)
    gain = (c if st.gain is None else st.gain * c) * (st.sign if st.gain is None else 1)
    shape = tuple(real.shape[1:]) if isinstance(real, torch.Tensor) else st.shape
    return Stat(shape, 1, gain)


def apply_gain(ip, n, value, stat: Stat, divides: bool):
    """``value`` (already rescaled by the statistic) times the statistic's gain
    (divided by it for ``x / s``), folded into the edges that end on its nodes
    as a norm's gain (SPEC §1b); None where a division meets a zero gain."""
    if stat.gain is None:
        return value
    gain = stat.gain
    if divides:
        if bool((gain == 0).any()):
            return None
        gain = 1.0 / gain
    # the value's reads by the statistics (its mean, its centred square) are
    # no reads of the value: the norm reads it once
    return _fold_gain(ip, n, value, gain, count=lambda node: sum(
        not _only_statistics(ip, u) for u in node.users))


def fold_fixed_gain(ip, n, value, gain, src):
    """``value`` (fx node ``src``) times a fixed gain at op ``n``, the gain
    folded into the edges that end on its nodes where they are a layer's
    output read only here, through moves of its elements or a
    normalization's rescaling by its statistics (a filter response norm's
    ``gamma * (x * rsqrt(mean(x ** 2)))``, a gain applied channels-last),
    as a norm's gain is (SPEC §1b); else the factor on the value
    (:func:`~.symbolic.scale`), which lands on the edges of its readers.  A
    single number stays there (``relu(-y)`` reads the negated value), and so
    does a factor that broadcasts the value to a larger shape (a copy)."""
    gain = torch.as_tensor(gain)
    if gain.numel() == 1 or not _within(gain, value.index):
        return scale(ip.b, value, gain)
    while isinstance(src, torch.fx.Node) and base_packet(src.target) in (aten.mul, aten.div) \
            and len(src.args) >= 2 and len(src.users) == 1:
        syms = [ip.sym.get(a) if isinstance(a, torch.fx.Node) else None for a in src.args[:2]]
        if isinstance(syms[1], Stat) and _is_sym(syms[0]):
            src = src.args[0]
        elif base_packet(src.target) is aten.mul and isinstance(syms[0], Stat) and \
                _is_sym(syms[1]):
            src = src.args[1]
        else:
            break
    return _fold_gain(ip, n, value, gain, src=src, count=lambda node: sum(
        not _only_statistics(ip, u) for u in node.users))


def _within(c: torch.Tensor, t: torch.Tensor) -> bool:
    """Whether ``c`` broadcasts to ``t``'s shape without enlarging it."""
    try:
        return c.ndim <= t.ndim and torch.broadcast_shapes(t.shape, c.shape) == t.shape
    except RuntimeError:
        return False


def _only_statistics(ip, u, depth: int = 8) -> bool:
    """Whether op ``u`` made a statistic, or a value read only by statistics
    (``x - mean(x)`` squared for a variance), as interpreted so far."""
    if isinstance(ip.sym.get(u), Stat):
        return True
    if depth == 0 or u not in ip.sym or not u.users:
        return False
    return all(_only_statistics(ip, w, depth - 1) for w in u.users)


def pools_gate(ip, stat) -> bool:
    """Whether the statistic at fx node ``stat`` reduces a gate (the mean or
    maximum of a sigmoid: a gate pooled, SPEC §1b), not a power or magnitude
    of a value (a normalization's).  A backward search through the
    statistic's own ops; O(ops since the values it reduces)."""
    seen, stack = set(), [stat]
    while stack:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        for a in u.all_input_nodes:
            s = ip.sym.get(a)
            if isinstance(s, Stat) or isinstance(s, tuple) and \
                    any(isinstance(v, Stat) for v in s):     # (max(dim): values, indices)
                stack.append(a)
            elif _is_sym(s) and is_gate(ip, a):
                return True
    return False

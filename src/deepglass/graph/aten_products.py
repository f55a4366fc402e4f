"""Products of network values in the ATen capture (SPEC §1b): ``x * f(x)``
an elementwise activation (read as its canonical form where it is one: a
written-out hard-swish or GELU has its module's graph), ``x * g`` with a
non-negative gate ``g`` of another value a positive rescaling, ``x * x`` a
power; any other product of two network values refused.  Rules have the
signature of :mod:`.aten_rules`.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F

from .aten_norms import Stat, _power, feeds_normalization
from .symbolic import Ref, _flag, scale

__all__ = ["of_one_value"]


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
            not real_y.is_floating_point():
        return None
    order = ip._order
    ancestors_of_n, stack = set(), [n]
    while stack:
        u = stack.pop()
        if u not in ancestors_of_n and u is not y and order[u] > order[y]:
            ancestors_of_n.add(u)
            stack.extend(u.all_input_nodes)
    env = {y: torch.linspace(-6.0, 6.0, real_y.numel(), dtype=real_y.dtype,
                             device=real_y.device).reshape(real_y.shape)}
    try:
        for u in sorted(ancestors_of_n, key=order.__getitem__):
            args, kwargs = torch.fx.node.map_arg((u.args, u.kwargs),
                                                 lambda v: env[v] if v in env else ip.env[v])
            env[u] = u.target(*args, **kwargs)
            if not isinstance(env[u], torch.Tensor) or \
                    env[u].shape != (real if u is n else ip.env[u]).shape:
                return None
    except Exception:   # noqa: BLE001 -- an op that does not take the probe: no form known
        return None
    return env[y], env[n], ancestors_of_n


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
        if k > 0 and dev < fit:
            best, fit = (k, name), dev
    return best


def _common_source(ip, n, depth: int = 12):
    """The nearest value both factors of the product at ``n`` are computed from
    within ``depth`` ops: ``y`` in ``y * relu6(y + 3)`` and in ``0.5 y (1 +
    tanh(c (y + 0.044715 y^3)))``; None if none.  O(depth * ops) per product."""
    depends = ip.input_dependent()
    order = getattr(ip, "_order", None)
    if order is None:
        order = ip._order = {u: i for i, u in enumerate(ip.module.graph.nodes)}

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
        # the factor computed first is x: its activation is numbered lower
        ip.warn_nonmonotone(written)
        return _flag(ip.b.activated(a if a.act <= b.act else b), nonneg=False, fn=None,
                     value=None)
    k, name = fit
    # the ops on the way (|x| in x / (1 + |x|), x + c x^3 in the tanh GELU) are
    # parts of one activation: their warnings are taken back for its own
    ip.b.retract_warnings(probe[2])
    if name not in _MONOTONE:
        ip.warn_nonmonotone(f"{name} (written out)")
    out = _flag(ip.b.activated(ip.b.materialize(ip.sym[y])), nonneg=False, fn=None,
                value=None)
    return out if k == 1.0 else scale(ip.b, out, torch.tensor(k, dtype=torch.float64))


def _product(ip, n, a, b, real):
    """SPEC §1b: ``x * f(x)`` is an elementwise activation; ``x * g`` with a
    non-negative gate ``g`` of another value is a positive rescaling of ``x``
    (``gates="scale"``); any other product of two network values is refused."""
    # x * x of a layer's output read only there: one node block for both factors
    a, b = (ip.b.materialize(a),) * 2 if a is b else (ip.b.materialize(a), ip.b.materialize(b))
    if _same(a, b) and a.act == b.act and (a.act >= 0 or a is b):
        if feeds_normalization(ip, n):
            return Stat(tuple(ip.cur.shape[1:]))   # x * x: the start of a statistic
        return _power(ip, a, 2.0)                  # x * x: an elementwise square
    if _same(a, b):
        f = b.fn if b.fn else a.fn
        return of_one_value(ip, n, a, b, real, _PRODUCT_NAMES.get(f, f"x * {f or 'x'}"))
    for x, g in ((a, b), (b, a)):
        if g.nonneg and g.index.numel() <= x.index.numel():
            if ip.rules["gates"] == "error":
                ip.unsupported(n, "gate", "a non-negative gate multiplies the value "
                               "(squeeze-excitation / attention gate) and gates='error'")
            ip.gated.append(ip.where(n))
            # the gate's value, fixed factors included (relu6(z + 3) / 6, the
            # hard-sigmoid written out), is the rescaling: it adds nothing
            return _flag(x, nonneg=False, fn=None, value=None, gated=True)
    ip.unsupported(n, "product of two network values", "neither factor is a non-negative "
                   "gate (sigmoid / hard-sigmoid / softmax of another value): a product of "
                   "two values computed from the input (self-attention, bilinear pooling) "
                   "has no fixed weights, so the signed graph is not defined for it")

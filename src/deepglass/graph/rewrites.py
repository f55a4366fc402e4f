"""Ops written out as what they compute, before the rules run (SPEC §1b, "the
network is what it computes").

Some ATen ops compute in one call what the rules read as several ops, and
core ATen's own decompositions of them hide what they are (``lerp``
becomes a selection by ``|w| < 0.5``).  :func:`write_out` replaces them, in
the captured program, by the plain ops they compute:

- ``var_mean`` / ``std_mean``: ``m = mean(x)``, ``sum((x - m) ** 2) / (N -
  correction)`` (its root), and ``m``: a layer norm written with them is a
  normalization (the variance rescales, the mean centres), statistics
  pooling's features the graph of the same computation written out;
- ``lerp(a, b, w)``: ``a + w * (b - a)``: with ``w`` a gate (a sigmoid) the
  gated sum a highway or GRU-style update writes out; with a number or fixed
  weights, a sum with fixed coefficients.
"""

from __future__ import annotations

import operator

import torch
import torch.fx
from torch.fx.operator_schemas import normalize_function

__all__ = ["write_out"]

aten = torch.ops.aten


class _Writer:
    """Inserts ops after a node, each with its stack trace (the source line an
    error names) and a shape-only value (``meta["val"]`` on the meta device)."""

    def __init__(self, graph: torch.fx.Graph, n: torch.fx.Node):
        self.graph, self.n, self.last = graph, n, n

    def __call__(self, target, *args):
        with self.graph.inserting_after(self.last):     # (named after the op written out)
            self.last = self.graph.create_node(
                "call_function", target, args,
                name=f"{self.n.name}_{target.overloadpacket.__name__}")
        self.last.meta = {k: v for k, v in self.n.meta.items() if k != "val"}
        self.last.meta["written_out"] = self.n.meta.get("written_out", self.n.name)
        self.last.meta["val"] = target(*(_meta(a) for a in args))
        return self.last

    def replace(self, outputs) -> None:
        """Route ``n``'s uses (of its ``i``-th output, through ``getitem``) to
        ``outputs`` and drop it."""
        n = self.n
        if isinstance(outputs, tuple):
            for u in list(n.users):
                if u.target is operator.getitem:
                    if u.users:
                        u.replace_all_uses_with(outputs[u.args[1]])
                    self.graph.erase_node(u)
        else:
            n.replace_all_uses_with(outputs)
        if not n.users:
            self.graph.erase_node(n)


def _meta(a):
    """A shape-only copy of an argument's value (a fake tensor cannot run
    outside its mode)."""
    v = a.meta.get("val") if isinstance(a, torch.fx.Node) else a
    if isinstance(v, torch.Tensor):
        return torch.empty(tuple(v.shape), dtype=v.dtype, device="meta")
    return v


def _moments(w: _Writer, n: torch.fx.Node, kw: dict):
    """``var_mean`` / ``std_mean`` as the mean, the centred square's sum over
    ``N - correction`` (its root) and the mean."""
    x, val = kw.get("input", kw.get("self")), _meta(n.args[0])
    correction = 1 if kw.get("unbiased", True) else 0    # (.default / .dim)
    if kw.get("correction") is not None:
        correction = kw["correction"]
    dim, keepdim = kw.get("dim"), bool(kw.get("keepdim", False))
    dims = sorted({d % val.ndim for d in ([dim] if isinstance(dim, int) else dim or
                                           range(val.ndim))})
    count = 1
    for d in dims:
        count *= int(val.shape[d])
    m = w(aten.mean.dim, x, dims, True)
    mean = m if keepdim else w(aten.squeeze.dims, m, dims)
    if not any(u.target is operator.getitem and u.args[1] == 0 and u.users for u in n.users):
        return None, mean       # (the variance unused: not written, its square not warned)
    squares = w(aten.pow.Tensor_Scalar, w(aten.sub.Tensor, x, m), 2)
    spread = w(aten.div.Scalar, w(aten.sum.dim_IntList, squares, dims, keepdim),
               max(count - correction, 0))
    if n.target.overloadpacket is aten.std_mean:
        spread = w(aten.sqrt.default, spread)
    return spread, mean


def _lerp(w: _Writer, n: torch.fx.Node, kw: dict):
    """``lerp(a, b, weight) = a + weight * (b - a)``."""
    a, b, weight = kw.get("input", kw.get("self")), kw["end"], kw["weight"]
    diff = w(aten.sub.Tensor, b, a)
    scaled = w(aten.mul.Tensor if isinstance(weight, torch.fx.Node) else aten.mul.Scalar,
               diff, weight)
    return w(aten.add.Tensor, a, scaled)


#: op packet -> the function that writes it out
_WRITTEN_OUT = {aten.var_mean: _moments, aten.std_mean: _moments, aten.lerp: _lerp}


def write_out(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` with the ops of :data:`_WRITTEN_OUT` replaced by the ops they
    compute.  A pass over the graph, in place; O(nodes)."""
    changed = False
    for n in list(gm.graph.nodes):
        how = _WRITTEN_OUT.get(getattr(n.target, "overloadpacket", None))
        if n.op != "call_function" or how is None or "out" in str(n.target._overloadname):
            continue
        bound = normalize_function(n.target, n.args, n.kwargs,
                                   normalize_to_only_use_kwargs=True)
        if bound is None or not isinstance(_meta(n.args[0]), torch.Tensor):
            continue
        w = _Writer(gm.graph, n)
        w.replace(how(w, n, dict(bound.kwargs)))
        changed = True
    if changed:
        gm.recompile()
    return gm

"""A short-time Fourier transform read as what it computes on real numbers
(SPEC §1b: the network is what it computes, whatever function computes it).

``torch.stft`` lowers to frames of the signal (``unfold``), times the window,
then ``_fft_r2c``: a complex value.  Read as its real and imaginary parts
(``torch.view_as_real``), or as its magnitude (``.abs()``), it is a real
computation: the discrete Fourier transform along the frames is a fixed
linear map, a dense layer with the cosine and (minus) sine basis as weights,
at every frame; the magnitude ``sqrt(re^2 + im^2)`` is two squares added and a
root (elementwise activations and an addition, as a spectrogram written with
``conv1d`` gives).  :func:`complex_as_real` rewrites a captured program so:
each complex value becomes a real one with a trailing dimension of 2 (real,
imaginary), and the ops between the transform and its real reading (permutes,
views, slices, a real factor) move to that layout.  A program in which a
complex value meets anything else is left as it is (the capture refuses the
complex op by name).

References: F. J. Harris, "On the use of windows for harmonic analysis with
the discrete Fourier transform", Proc. IEEE 66 (1978); ``torch.stft``.
"""

from __future__ import annotations

import math

import torch
import torch.fx

__all__ = ["complex_as_real", "dft_weight"]

aten = torch.ops.aten


def dft_weight(n: int, onesided: bool = True, normalization: int = 0,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The real DFT of length ``n`` as a matrix (n, 2F): column ``2f`` is
    ``cos(2 pi f k / n)``, column ``2f + 1`` is ``-sin(2 pi f k / n)``, so that
    ``x @ W`` viewed (F, 2) is ``view_as_real(fft(x))`` (F = n // 2 + 1 when
    ``onesided``, else n); ``normalization`` 1 divides by sqrt(n), 2 by n
    (``_fft_r2c``'s codes).  O(n F)."""
    F = n // 2 + 1 if onesided else n
    k = torch.arange(n, dtype=torch.float64)[:, None]
    f = torch.arange(F, dtype=torch.float64)[None, :]
    phase = 2 * math.pi * ((k * f) % n) / n      # exact reduction before the angle
    w = torch.stack([torch.cos(phase), -torch.sin(phase)], dim=-1).reshape(n, 2 * F)
    return (w / {0: 1.0, 1: math.sqrt(n), 2: float(n)}[int(normalization)]).to(dtype)


#: ops that move a complex value's elements, their dimension arguments
#: (positions in ``args``) renumbered for the trailing (real, imaginary) one
_MOVES = {
    "permute": "dims", "transpose": (1, 2), "unsqueeze": (1,), "slice": (1,), "select": (1,),
    "squeeze": "dims", "view": "shape", "reshape": "shape", "_unsafe_view": "shape",
    "clone": (), "contiguous": (), "alias": (), "detach": (),
}


def _name(target) -> str:
    return str(getattr(target, "__name__", target)).split(".")[0]


def _ndim(node) -> int | None:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return val.dim() if isinstance(val, torch.Tensor) else None


def complex_as_real(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite every ``_fft_r2c`` along a last dimension whose complex result
    is read only through the moves of :data:`_MOVES`, ``view_as_real``,
    ``abs`` and real factors (see the module docstring); ``gm`` is changed in
    place and returned.  O(nodes)."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and _name(node.target) == "_fft_r2c" and node in gm.graph.nodes:
            _rewrite(gm, node)
    return gm


def _rewrite(gm, fft) -> None:
    x, dims, norm, onesided = (list(fft.args) + [None, 0, True])[:4]
    nd = _ndim(x)
    if nd is None or len(dims) != 1 or dims[0] % nd != nd - 1:
        return
    n = int(x.meta["val"].shape[-1])
    # the complex values reached from the transform, in program order: each
    # must be one the rewrite knows; anything else leaves the program as it is
    complex_nodes, frontier = [fft], [fft]
    while frontier:
        for user in frontier.pop().users:
            name = _name(user.target) if user.op == "call_function" else ""
            if name in ("view_as_real", "abs"):
                continue
            if name in _MOVES or name in ("mul", "div") and _real_factor(user):
                complex_nodes.append(user)
                frontier.append(user)
                continue
            return
    g = gm.graph
    real = {}                        # complex node -> its real form (..., 2)
    attr = f"_dft_{fft.name}"
    gm.register_buffer(attr, dft_weight(n, bool(onesided), int(norm or 0),
                                        x.meta["val"].dtype), persistent=False)
    for node in complex_nodes:        # (before the next node: in the order made)
        with g.inserting_before(node.next):
            real[node] = _real_form(g, node, real, attr, x)
    for node in complex_nodes:
        for user in list(node.users):
            name = _name(user.target) if user.op == "call_function" else ""
            if name == "view_as_real":
                user.replace_all_uses_with(real[node])
            elif name == "abs":
                with g.inserting_before(user.next):
                    user.replace_all_uses_with(_magnitude(g, real[node]))
    for node in reversed(list(g.nodes)):
        if node.op == "call_function" and not node.users and (
                node in complex_nodes or _name(node.target) in ("view_as_real", "abs") and
                node.args and node.args[0] in real):
            g.erase_node(node)
    g.lint()
    gm.recompile()


def _real_factor(node) -> bool:
    other = node.args[1] if len(node.args) > 1 else None
    return isinstance(other, (int, float)) and not isinstance(other, bool)


def _real_form(g, node, real, attr, x):
    """The real (..., 2) form of complex ``node``, its operand's made already."""
    if _name(node.target) == "_fft_r2c":
        w = g.get_attr(attr)
        y = g.call_function(aten.matmul.default, (x, w))
        lead = list(node.meta["val"].shape[:-1])
        return g.call_function(aten.view.default, (y, lead + [-1, 2]))
    src = real[node.args[0]]
    nd = _ndim(node.args[0])
    name, args = _name(node.target), list(node.args)
    if name in ("mul", "div"):
        return g.call_function(node.target, (src, args[1]))
    how = _MOVES[name]
    if how == "dims":
        ds = args[1] if len(args) > 1 else None
        if ds is None:               # squeeze(): every dimension of size 1 (never the last)
            return g.call_function(node.target, (src,), dict(node.kwargs))
        ds = [ds] if isinstance(ds, int) else list(ds)
        ds = [d % nd for d in ds] + ([nd] if name == "permute" else [])
        return g.call_function(node.target, (src, ds))
    if how == "shape":
        return g.call_function(node.target, (src, list(args[1]) + [2]))
    for i in how:                    # a dimension argument, counted from the front
        rank = nd + 1 if name == "unsqueeze" else nd
        args[i] = args[i] % rank
    return g.call_function(node.target, (src, *args[1:]), dict(node.kwargs))


def _magnitude(g, r):
    """``sqrt(re^2 + im^2)`` of a real (..., 2) form."""
    sq = [g.call_function(aten.pow.Tensor_Scalar,
                          (g.call_function(aten.select.int, (r, -1, i)), 2)) for i in (0, 1)]
    return g.call_function(aten.sqrt.default, (g.call_function(aten.add.Tensor, tuple(sq)),))


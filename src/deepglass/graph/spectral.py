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
views, slices, flips, a real factor, or a real mask, which scales both parts
alike and is read as any product is: a gate or a weight, and sums of two
spectra, which add their parts) move to that layout.  A program in which a
complex value meets anything else is left as it is (the capture refuses the
complex op by name).

References: F. J. Harris, "On the use of windows for harmonic analysis with
the discrete Fourier transform", Proc. IEEE 66 (1978); ``torch.stft``.
"""

from __future__ import annotations

import math

import torch
import torch.fx

from .fixed_weights import FIXED_PREFIX

__all__ = ["complex_as_real", "dft_matrix", "dft_weight", "inverse_dft_weight",
           "refuse_complex"]

aten = torch.ops.aten


def dft_weight(n: int, onesided: bool = True, normalization: int = 0,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The real DFT of length ``n`` as a matrix (n, 2F): column ``2f`` is
    ``cos(2 pi f k / n)``, column ``2f + 1`` is ``-sin(2 pi f k / n)``, so that
    ``x @ W`` viewed (F, 2) is ``view_as_real(fft(x))`` (F = n // 2 + 1 when
    ``onesided``, else n); ``normalization`` 1 divides by sqrt(n), 2 by n
    (``_fft_r2c``'s codes).  O(n F)."""
    w = dft_matrix(n, n, 1, onesided=onesided)
    return (w / {0: 1.0, 1: math.sqrt(n), 2: float(n)}[int(normalization)]).to(dtype)


def dft_matrix(m: int, n: int, parts: int = 1, inverse: bool = False,
               onesided: bool = False) -> torch.Tensor:
    """The DFT of length ``n`` of a signal of ``m`` samples as a real matrix
    (float64).

    Rows: the signal's parts (``parts`` 1: real, 2: real then imaginary), each
    ``m`` samples (those past ``n`` are cropped: zero rows; a signal shorter
    than ``n`` is zero padded: no rows needed); columns: (re, im) of each of
    F frequencies (F = n // 2 + 1 when ``onesided``, else n), interleaved, so
    that ``x_parts.reshape(..., parts * m) @ W`` viewed (..., F, 2) is the
    transform.  The inverse divides by n (ONNX's convention); the inverse of a
    one-sided spectrum (``m`` bins of the Hermitian half) is a real signal, as
    ``torch.fft.irfft`` and ONNX's reference give: columns its n samples.
    O(parts m F).
    """
    if inverse and onesided:         # (rows of inverse_dft_weight: re, im of each bin)
        w = inverse_dft_weight(n, m, 2, torch.float64).reshape(m, 2, n).transpose(0, 1)
        return w[:parts].reshape(parts * m, n)
    F = n // 2 + 1 if onesided else n
    k = torch.arange(min(m, n), dtype=torch.float64)[:, None]
    f = torch.arange(F, dtype=torch.float64)[None, :]
    theta = 2 * math.pi * ((k * f) % n) / n         # exact reduction before the angle
    c, s = torch.cos(theta), torch.sin(theta) * (1.0 if inverse else -1.0)   # exp(+- i theta)
    w = torch.zeros(parts, m, F, 2, dtype=torch.float64)
    w[0, :len(k), :, 0], w[0, :len(k), :, 1] = c, s              # a (cos +- i sin)
    if parts == 2:
        w[1, :len(k), :, 0], w[1, :len(k), :, 1] = -s, c         # i b (cos +- i sin)
    if inverse:
        w /= n
    return w.reshape(parts * m, 2 * F)


def inverse_dft_weight(n: int, bins: int, normalization: int = 2,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The inverse of a one-sided DFT of length ``n`` as a matrix (2 ``bins``, n):
    ``r @ W`` of the (re, im) pairs of ``bins`` frequencies is ``irfft`` (the
    Hermitian half: bins 1 .. n/2 - 1 count twice, the imaginary parts of
    frequency 0 and of the Nyquist bin not at all, bins past n // 2 ignored, as
    ``_fft_c2r`` does); ``normalization`` 1 divides by sqrt(n), 2 by n.  O(n bins)."""
    f = torch.arange(bins, dtype=torch.float64)[:, None]
    k = torch.arange(n, dtype=torch.float64)[None, :]
    phase = 2 * math.pi * ((f * k) % n) / n
    half = n // 2
    c = torch.where((f == 0) | ((n % 2 == 0) & (f == half)), 1.0, 2.0) * (f <= half)
    im = torch.where((f == 0) | ((n % 2 == 0) & (f == half)), 0.0, 1.0)
    w = torch.stack([c * torch.cos(phase), -c * im * torch.sin(phase)], dim=1)
    return (w.reshape(2 * bins, n) / {0: 1.0, 1: math.sqrt(n), 2: float(n)}[int(normalization)]
            ).to(dtype)


#: ops that move a complex value's elements, their dimension arguments
#: (positions in ``args``) renumbered for the trailing (real, imaginary) one
_MOVES = {
    "permute": "dims", "transpose": (1, 2), "unsqueeze": (1,), "slice": (1,), "select": (1,),
    "squeeze": "dims", "view": "shape", "reshape": "shape", "_unsafe_view": "shape",
    "clone": (), "contiguous": (), "alias": (), "detach": (), "neg": (), "flip": "dims",
    "roll": "roll",                  # along given dimensions (a flattened roll would mix re, im)
    "index_select": (1,),            # (torch.export's roll)
    "constant_pad_nd": "pad", "pad": "pad",  # zero padding (counted from the last dimension)
}


def _name(target) -> str:
    return str(getattr(target, "__name__", target)).split(".")[0]


def _ndim(node) -> int | None:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return val.dim() if isinstance(val, torch.Tensor) else None


def complex_as_real(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite every complex value made by ``_fft_r2c`` along a last dimension
    or by ``view_as_complex`` whose uses are the moves of :data:`_MOVES`, real
    factors, ``view_as_real``, ``abs`` and ``_fft_c2r`` along the last dimension
    (see the module docstring); ``gm`` is changed in place and returned.
    O(nodes)."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and _name(node.target) in _SOURCES and \
                node in gm.graph.nodes:
            _rewrite(gm, node)
    return gm


_SOURCES = ("_fft_r2c", "view_as_complex")
_SINKS = ("view_as_real", "abs", "_fft_c2r")


def _last_dim_only(node) -> bool:
    """A transform along its operand's last dimension (the only one read so)."""
    nd, dims = _ndim(node.args[0]), node.args[1]
    return nd is not None and len(dims) == 1 and dims[0] % nd == nd - 1


def _rewrite(gm, source) -> None:
    if _name(source.target) == "_fft_r2c" and not _last_dim_only(source):
        return
    # the complex values reached from the source (and from the sources of
    # spectra added to them): each must be one the rewrite knows; anything
    # else leaves the program as it is
    complex_nodes, frontier = {source}, [source]
    while frontier:
        node = frontier.pop()
        for user in node.users:
            if user in complex_nodes:
                continue
            name = _name(user.target) if user.op == "call_function" else ""
            if name in _SINKS and (name != "_fft_c2r" or _last_dim_only(user)):
                continue
            sum_of = _spectra_summed(user)
            if name in _MOVES and _MOVES[name] not in ("pad", "roll") or _zero_pad(user) \
                    or name == "roll" and _roll_along_dims(user) \
                    or name == "_fft_c2c" \
                    or name in ("mean", "sum") and _reduces_dims(user) \
                    or name in ("mul", "div") and _real_factor(user, node) \
                    or sum_of is not None:
                complex_nodes.add(user)
                frontier.append(user)
                # the other spectrum's own sources: rewritten with this one
                for other in _sources(sum_of or ()):
                    if other is None or _name(other.target) == "_fft_r2c" and \
                            not _last_dim_only(other):
                        source.meta["complex_use"] = name
                        return
                    if other not in complex_nodes:
                        complex_nodes.add(other)
                        frontier.append(other)
                continue
            source.meta["complex_use"] = name or user.op     # said by refuse_complex
            return
    g = gm.graph
    order = {n: i for i, n in enumerate(g.nodes)}
    real = {}                        # complex node -> its real form (..., 2)
    for node in sorted(complex_nodes, key=order.__getitem__):   # operands first
        with g.inserting_before(node.next):
            real[node] = _real_form(gm, node, real)
    for node in complex_nodes:
        for user in list(node.users):
            name = _name(user.target) if user.op == "call_function" else ""
            if name in _SINKS:
                with g.inserting_before(user.next):
                    user.replace_all_uses_with(_sink(gm, user, real[node]))
    for node in reversed(list(g.nodes)):
        if node.op == "call_function" and not node.users and (
                node in complex_nodes or _name(node.target) in _SINKS and
                node.args and node.args[0] in real):
            g.erase_node(node)
    g.lint()
    gm.recompile()


def _constant(gm, name: str, value: torch.Tensor, like: torch.fx.Node):
    """A ``get_attr`` node of a new buffer of ``gm`` holding ``value``, in the
    dtype and on the device of ``like``'s value (the program's, a model on a GPU)."""
    val = like.meta["val"]
    dtype = val.real.dtype if val.is_complex() else val.dtype      # (a complex value's parts)
    gm.register_buffer(name, value.to(device=val.device, dtype=dtype), persistent=False)
    return gm.graph.get_attr(name)


def refuse_complex(ip, n, args, kwargs, real):
    """The rule of a complex op left in the program: refused, naming the use of
    the complex value that :func:`complex_as_real` does not follow."""
    use = n.meta.get("complex_use")
    here = f"; here it meets {use!r}" if use else ""
    ip.unsupported(n, "complex values", "deepglass reads a complex value only as its real and "
                   "imaginary parts (view_as_real), its magnitude (abs), or through an inverse "
                   "FFT of view_as_complex(parts), with permutes, views, slices, flips, rolls, "
                   f"zero padding, sums of spectra and real factors or masks between{here}; "
                   "a phase, complex products and other complex arithmetic are not read")


def _zero_pad(node) -> bool:
    """``constant_pad_nd(x, pads, 0)`` / ``pad(x, pads)`` in constant mode, by zeros."""
    if node.op != "call_function" or _MOVES.get(_name(node.target)) != "pad":
        return False
    if _name(node.target) == "pad":
        mode, value = (list(node.args[2:]) + [node.kwargs.get("mode", "constant"),
                                              node.kwargs.get("value")])[:2]
        return mode == "constant" and not value
    return not (node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0))


def _real_factor(node, z) -> bool:
    """``z * a`` / ``a * z`` / ``z / a`` of complex ``z`` and a real ``a``: a number,
    or for ``mul`` a real tensor (a mask, as separation nets apply one: it scales
    the real and the imaginary part alike, and is read by the capture as any
    product is, a gate or a weight)."""
    if len(node.args) != 2 or (node.args[1] is z) == (node.args[0] is z):
        return False                 # (z * z: a complex product)
    other = node.args[0] if node.args[1] is z else node.args[1]
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        return node.args[0] is z or _name(node.target) == "mul"
    val = other.meta.get("val") if isinstance(other, torch.fx.Node) else None
    return _name(node.target) == "mul" and isinstance(val, torch.Tensor) and \
        val.is_floating_point()


def _complex(node) -> bool:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return isinstance(val, torch.Tensor) and val.is_complex()


def _spectra_summed(node) -> tuple | None:
    """The two complex operands of ``z1 + z2`` / ``z1 - z2`` (a sum of spectra is
    the sum of their real and imaginary parts), else None."""
    if node.op != "call_function" or _name(node.target) not in ("add", "sub") \
            or len(node.args) != 2 or not all(map(_complex, node.args)):
        return None
    return tuple(node.args)


def _sources(nodes) -> list:
    """The complex values of :data:`_SOURCES` that ``nodes`` are computed from
    through complex values (None for one made otherwise: a complex constant)."""
    found, seen, stack = [], set(), list(nodes)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_function" and _name(n.target) in _SOURCES:
            found.append(n)
            continue
        ins = [a for a in n.all_input_nodes if _complex(a)]
        if not ins:
            return [None]
        stack.extend(ins)
    return found


def _reduces_dims(node) -> bool:
    """``mean`` / ``sum`` of a complex value over given dimensions (a linear map
    of both parts alike: kymatio's subsampling in Fourier space)."""
    return len(node.args) > 1 and isinstance(node.args[1], (list, tuple)) and \
        len(node.args[1]) > 0 and not node.kwargs.get("dtype")


def _roll_along_dims(node) -> bool:
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dims", ())
    return bool(dims)


def _real_form(gm, node, real):
    """The real (..., 2) form of complex ``node``, its operand's made already."""
    g = gm.graph
    if _name(node.target) == "view_as_complex":
        return node.args[0]
    if _name(node.target) == "_fft_r2c":
        x, _, norm, onesided = (list(node.args) + [0, True])[:4]
        w = _constant(gm, f"{FIXED_PREFIX}dft_{node.name}", dft_weight(
            int(x.meta["val"].shape[-1]), bool(onesided), int(norm or 0), torch.float64), x)
        y = g.call_function(aten.matmul.default, (x, w))
        lead = list(node.meta["val"].shape[:-1])
        return g.call_function(aten.view.default, (y, lead + [-1, 2]))
    name, args = _name(node.target), list(node.args)
    if _spectra_summed(node) is not None:        # both parts added (alpha: a real factor)
        return g.call_function(node.target, (real[args[0]], real[args[1]]), dict(node.kwargs))
    z = args[1] if name == "mul" and args[1] in real else args[0]   # (a * z)
    src, nd = real[z], _ndim(z)
    if name == "_fft_c2c":           # a complex DFT, one dimension after the other
        shape, norm, forward = list(z.meta["val"].shape), int(args[2]), bool(args[3])
        for i, d in enumerate(sorted({d % nd for d in args[1]})):
            n = shape[d]
            w = dft_matrix(n, n, 2, inverse=not forward) * (1.0 if forward else n)
            w = _constant(gm, f"{FIXED_PREFIX}cdft{i}_{node.name}",
                          w / {0: 1.0, 1: math.sqrt(n), 2: float(n)}[norm], z)
            moved = shape[:d] + shape[d + 1:] + [n]
            t = g.call_function(aten.movedim.int, (src, d, nd - 1))          # (..., n, 2)
            t = g.call_function(aten.transpose.int, (t, -1, -2))            # (..., 2, n)
            t = g.call_function(aten.reshape.default, (t, moved[:-1] + [2 * n]))
            t = g.call_function(aten.matmul.default, (t, w))
            t = g.call_function(aten.view.default, (t, moved[:-1] + [n, 2]))
            src = g.call_function(aten.movedim.int, (t, nd - 1, d))
        return src
    if name in ("mean", "sum"):      # over dimensions counted from the front
        rest = list(args[2:3]) + [v for k, v in node.kwargs.items() if k == "keepdim"][:1]
        return g.call_function(node.target, (src, [d % nd for d in args[1]], *rest[:1]))
    if name in ("mul", "div"):
        other = args[0] if z is args[1] else args[1]
        if isinstance(other, torch.fx.Node):     # the same factor for both parts
            other = g.call_function(aten.unsqueeze.default, (other, -1))
        return g.call_function(node.target, (src, other))
    if name == "roll":
        dims = args[2] if len(args) > 2 else node.kwargs["dims"]
        return g.call_function(node.target, (src, args[1], [d % nd for d in dims]))
    how = _MOVES[name]
    if how == "dims":
        ds = args[1] if len(args) > 1 else None
        if ds is None:               # squeeze(): every dimension of size 1 (never the last)
            return g.call_function(node.target, (src,), dict(node.kwargs))
        if isinstance(ds, int):      # squeeze.dim(x, d)
            return g.call_function(node.target, (src, ds % nd))
        ds = [d % nd for d in ds] + ([nd] if name == "permute" else [])
        return g.call_function(node.target, (src, ds))
    if how == "pad":                 # nothing added along the (re, im) dimension
        return g.call_function(aten.constant_pad_nd.default, (src, [0, 0] + list(args[1])))
    if how == "shape":               # (a reshape: the real form may not be contiguous)
        return g.call_function(aten.reshape.default, (src, list(args[1]) + [2]))
    for i in how:                    # a dimension argument, counted from the front
        rank = nd + 1 if name == "unsqueeze" else nd
        args[i] = args[i] % rank
    return g.call_function(node.target, (src, *args[1:]), dict(node.kwargs))


def _sink(gm, node, r):
    """What real ``node`` (``view_as_real``, ``abs``, ``_fft_c2r``) computes from
    the real (..., 2) form ``r`` of its operand."""
    g, name = gm.graph, _name(node.target)
    if name == "view_as_real":
        return r
    if name == "abs":                # sqrt(re^2 + im^2)
        sq = [g.call_function(aten.pow.Tensor_Scalar,
                              (g.call_function(aten.select.int, (r, -1, i)), 2)) for i in (0, 1)]
        return g.call_function(aten.sqrt.default, (g.call_function(aten.add.Tensor, tuple(sq)),))
    z, _, norm, n = node.args[:4]    # _fft_c2r: the inverse transform of the last dimension
    shape = list(z.meta["val"].shape)
    w = _constant(gm, f"{FIXED_PREFIX}idft_{node.name}", inverse_dft_weight(
        int(n), shape[-1], int(norm), torch.float64), node)
    flat = g.call_function(aten.reshape.default, (r, shape[:-1] + [2 * shape[-1]]))
    return g.call_function(aten.matmul.default, (flat, w))

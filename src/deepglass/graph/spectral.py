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
spectra, which add their parts) move to that layout.  A Fourier neural
operator's spectral convolution is read too: ``rfft2`` / ``rfftn`` (the real
DFT of the last dimension, the complex one of the others), a product with a
fixed complex tensor (four real products: ``(a + ib)(c + id) = (ac - bd) +
i(ad + bc)``), and the kept modes written into a spectrum of zeros
(``slice_scatter``: a re-indexing).  A program in which a complex value meets
anything else is left as it is (the capture refuses the complex op by name).

References: F. J. Harris, "On the use of windows for harmonic analysis with
the discrete Fourier transform", Proc. IEEE 66 (1978); ``torch.stft``;
Z. Li et al., "Fourier neural operator for parametric partial differential
equations", ICLR (2021).
"""

from __future__ import annotations

import contextlib
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
    "expand": "expand",              # (a broadcast @ lowers to expand and bmm)
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
    """A real transform whose halved dimension (the last of its ``dim``) is its
    operand's last one (``rfft``, ``rfft2`` / ``rfftn`` over trailing
    dimensions, and their inverses): the only ones read so."""
    nd, dims = _ndim(node.args[0]), node.args[1]
    return nd is not None and len(dims) >= 1 and dims[-1] % nd == nd - 1 and \
        len({d % nd for d in dims}) == len(dims)


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
            if name in _SINKS and (name != "_fft_c2r" or _last_dim_only(user)) or _zeros(user):
                continue                 # (zeros_like(z) reads only z's shape)
            sum_of = _spectra_summed(user)
            if name in _MOVES and _MOVES[name] not in ("pad", "roll") or _zero_pad(user) \
                    or name == "roll" and _roll_along_dims(user) \
                    or name == "_fft_c2c" \
                    or name in ("mean", "sum") and _reduces_dims(user) \
                    or name in ("mul", "div") and _real_factor(user, node) \
                    or name in _PRODUCTS and _fixed_factor(user, node) is not None \
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
        with g.inserting_before(node.next), _made_like(g, node):
            real[node] = _real_form(gm, node, real)
    for node in complex_nodes:
        for user in list(node.users):
            name = _name(user.target) if user.op == "call_function" else ""
            if name in _SINKS:
                with g.inserting_before(user.next), _made_like(g, user):
                    user.replace_all_uses_with(_sink(gm, user, real[node]))
    for node in reversed(list(g.nodes)):
        if node.op == "call_function" and not node.users and (
                node in complex_nodes or _name(node.target) in _SINKS and
                node.args and node.args[0] in real):
            g.erase_node(node)
    g.lint()
    gm.recompile()


@contextlib.contextmanager
def _made_like(g, node):
    """Nodes made in ``g`` inside this block take ``node``'s module and source
    line (a layer of the real form is named and located as the op it reads)."""
    before = set(g.nodes)
    yield
    for m in g.nodes:
        if m not in before:
            for key in ("nn_module_stack", "stack_trace"):
                if key in node.meta and key not in m.meta:
                    m.meta[key] = node.meta[key]


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
                   "zero padding, sums of spectra, writes into a spectrum of zeros, real "
                   f"factors or masks and products with fixed complex weights between{here}; "
                   "a phase, a product of two spectra and other complex arithmetic are not "
                   "read")


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
    the sum of their real and imaginary parts), of ``copy(z1, z2)`` and of
    ``slice_scatter`` / ``select_scatter(z1, z2, ...)`` (kept modes written into
    a spectrum of zeros, as a Fourier neural operator truncates its modes: a
    re-indexing of both parts), else None."""
    if node.op != "call_function" or _name(node.target) not in _PAIRS \
            or len(node.args) < 2 or not all(map(_complex, node.args[:2])):
        return None
    if _name(node.target) in ("add", "sub") and len(node.args) != 2:
        return None
    return tuple(node.args[:2])


#: ops of two complex values, each part with its own: sums and writes
_PAIRS = ("add", "sub", "copy", "slice_scatter", "select_scatter")
#: products read where one factor is a fixed complex tensor (the weights of a
#: spectral convolution): a real-linear map of the other's parts
_PRODUCTS = ("mul", "bmm", "mm", "matmul")
#: complex constants of zeros (the spectrum a truncation writes its modes into)
_ZEROS = ("full", "zeros", "new_zeros", "zeros_like", "full_like", "new_full")


def _zeros(node) -> bool:
    """A complex tensor of zeros made in the program (``torch.zeros(..., dtype=
    torch.cfloat)``, ``full(..., 0)``), read as the zeros of both parts."""
    if node.op != "call_function" or _name(node.target) not in _ZEROS or not _complex(node):
        return False
    name = _name(node.target)
    if name in ("full", "new_full", "full_like"):
        fill = node.args[1] if name == "full" or name == "full_like" else node.args[2]
        return isinstance(fill, (int, float, complex)) and fill == 0
    return True


def _fixed_factor(node, z):
    """The other factor of product ``node`` of complex ``z`` where it is a
    complex tensor that no input reaches (a parameter, moved or computed from
    parameters), else None."""
    args = node.args[:2]
    if len(node.args) != 2 or (args[0] is z) == (args[1] is z):
        return None
    other = args[1] if args[0] is z else args[0]
    if not _complex(other):
        return None
    seen, stack = set(), [other]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "placeholder":       # (parameters are get_attr nodes)
            return None                  # the input reaches it
        stack.extend(n.all_input_nodes)
    return other


def _sources(nodes) -> list:
    """The complex values of :data:`_SOURCES` that ``nodes`` are computed from
    through complex values (None for one made otherwise: a complex constant)."""
    found, seen, stack = [], set(), list(nodes)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_function" and _name(n.target) in _SOURCES or _zeros(n):
            found.append(n)
            continue
        ins = [a for a in n.all_input_nodes if _complex(a)]
        if n.op == "call_function" and _name(n.target) in _PRODUCTS:
            # a product with fixed weights: computed from its other factor
            ins = [a for a in ins if _fixed_factor(n, a) is not None] or ins
        if not ins:
            return [None]
        stack.extend(ins)
    return found


def _reduces_dims(node) -> bool:
    """``mean`` / ``sum`` of a complex value over given dimensions (a linear map
    of both parts alike: kymatio's subsampling in Fourier space)."""
    dtype = node.kwargs.get("dtype")
    val = node.args[0].meta.get("val") if isinstance(node.args[0], torch.fx.Node) else None
    return len(node.args) > 1 and isinstance(node.args[1], (list, tuple)) and \
        len(node.args[1]) > 0 and (dtype is None or getattr(val, "dtype", None) == dtype)


def _roll_along_dims(node) -> bool:
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dims", ())
    return bool(dims)


def _real_form(gm, node, real):
    """The real (..., 2) form of complex ``node``, its operand's made already."""
    g = gm.graph
    if _name(node.target) == "view_as_complex":
        return node.args[0]
    if _zeros(node):                 # zeros of both parts
        val = node.meta["val"]
        return g.call_function(aten.zeros.default, (list(val.shape) + [2],),
                               {"dtype": val.real.dtype, "device": val.device})
    if _name(node.target) == "_fft_r2c":
        # the real DFT of the last dimension, then (rfft2 / rfftn) the complex
        # DFT of the others, each normalized as the whole transform says
        x, dims, norm, onesided = (list(node.args) + [0, True])[:4]
        w = _constant(gm, f"{FIXED_PREFIX}dft_{node.name}", dft_weight(
            int(x.meta["val"].shape[-1]), bool(onesided), int(norm or 0), torch.float64), x)
        y = g.call_function(aten.matmul.default, (x, w), name="rfft")
        shape = list(node.meta["val"].shape)
        y = g.call_function(aten.view.default, (y, shape[:-1] + [-1, 2]))
        nd = len(shape)
        return _complex_dft(gm, node, y, shape, [d % nd for d in dims[:-1]], int(norm or 0), True)
    name, args = _name(node.target), list(node.args)
    if _spectra_summed(node) is not None:
        a, b = real[args[0]], real[args[1]]
        nd = _ndim(args[0])
        if name in ("slice_scatter", "select_scatter"):    # (dimension counted from the front)
            rest = args[2:] or [node.kwargs.get("dim", 0)]
            return g.call_function(node.target, (a, b, rest[0] % nd, *rest[1:]))
        # both parts added (alpha: a real factor), or copied
        return g.call_function(node.target, (a, b), dict(node.kwargs))
    if name in _PRODUCTS and any(a in real and _fixed_factor(node, a) is not None
                                 for a in args[:2]):
        return _fixed_product(gm, node, real)
    z = args[1] if name == "mul" and args[1] in real else args[0]   # (a * z)
    src, nd = real[z], _ndim(z)
    if name == "_fft_c2c":           # a complex DFT, one dimension after the other
        return _complex_dft(gm, node, src, list(z.meta["val"].shape),
                            sorted({d % nd for d in args[1]}), int(args[2]), bool(args[3]))
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
    if how == "expand":              # the (re, im) dimension kept as it is
        return g.call_function(aten.expand.default, (src, list(args[1]) + [2]))
    if how == "shape":               # (a reshape: the real form may not be contiguous)
        return g.call_function(aten.reshape.default, (src, list(args[1]) + [2]))
    for i in how:                    # a dimension argument, counted from the front
        rank = nd + 1 if name == "unsqueeze" else nd
        args[i] = args[i] % rank
    return g.call_function(node.target, (src, *args[1:]), dict(node.kwargs))


def _complex_dft(gm, node, src, shape, dims, norm: int, forward: bool):
    """The complex DFT of real form ``src`` (``shape`` + (2,)) along each of
    ``dims`` in turn, each normalized by ``norm`` (``_fft_c2c``'s codes: 0 none,
    1 by sqrt(n), 2 by n): a fixed real matrix on the (re, im) parts."""
    g, nd = gm.graph, len(shape)
    for i, d in enumerate(dims):
        n = shape[d]
        w = dft_matrix(n, n, 2, inverse=not forward) * (1.0 if forward else n)
        w = _constant(gm, f"{FIXED_PREFIX}cdft{i}_{node.name}",
                      w / {0: 1.0, 1: math.sqrt(n), 2: float(n)}[norm], node)
        moved = shape[:d] + shape[d + 1:] + [n]
        t = g.call_function(aten.movedim.int, (src, d, nd - 1))          # (..., n, 2)
        t = g.call_function(aten.transpose.int, (t, -1, -2))            # (..., 2, n)
        t = g.call_function(aten.reshape.default, (t, moved[:-1] + [2 * n]))
        t = g.call_function(aten.matmul.default, (t, w), name="fft" if forward else "ifft")
        t = g.call_function(aten.view.default, (t, moved[:-1] + [n, 2]))
        src = g.call_function(aten.movedim.int, (t, nd - 1, d))
    return src


def _fixed_product(gm, node, real):
    """``z * w`` / ``z @ w`` (either order) of a spectrum ``z`` and a fixed
    complex tensor ``w`` (a spectral convolution's weights): ``(a + ib)(c + id)
    = (ac - bd) + i(ad + bc)``, four real products with the fixed parts of
    ``w``, each read as a weight, and two sums."""
    g = gm.graph
    parts = []
    for a in node.args[:2]:
        r = real[a] if a in real else g.call_function(aten.view_as_real.default, (a,))
        parts.append([g.call_function(aten.select.int, (r, -1, i)) for i in (0, 1)])
    (ar, ai), (br, bi) = parts
    prod = lambda u, v, name=None: g.call_function(node.target, (u, v), name=name)  # noqa: E731
    re = g.call_function(aten.sub.Tensor, (prod(ar, br, f"{node.name}_real"), prod(ai, bi)))
    im = g.call_function(aten.add.Tensor, (prod(ar, bi, f"{node.name}_imag"), prod(ai, br)))
    return g.call_function(aten.stack.default, ([re, im], -1))


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
    # _fft_c2r: the inverse complex DFT of the other dimensions (irfft2 / irfftn),
    # then the inverse real one of the last
    z, dims, norm, n = node.args[:4]
    shape = list(z.meta["val"].shape)
    nd = len(shape)
    r = _complex_dft(gm, node, r, shape, [d % nd for d in dims[:-1]], int(norm), False)
    w = _constant(gm, f"{FIXED_PREFIX}idft_{node.name}", inverse_dft_weight(
        int(n), shape[-1], int(norm), torch.float64), node)
    flat = g.call_function(aten.reshape.default, (r, shape[:-1] + [2 * shape[-1]]))
    return g.call_function(aten.matmul.default, (flat, w), name="irfft")

"""numba settings shared by the compiled kernels.

``njit_parallel`` compiles the kernels that run replicas (or rows) on numba's
threads.  With numba's OpenMP threading layer, which shares libgomp with
torch, every parallel launch sets the process's OpenMP thread count, and so
torch's intra-op thread count, to numba's; the kernels it makes hand torch's
count back as they found it, so a caller's ``torch.set_num_threads`` holds.

``njit_borrowing`` compiles helpers that are called once per field update or
heap step (bucket moves, heap sifts, one flip) and only *borrow* the arrays
they are given.  numba's runtime (NRT) counts references to every array
argument at a call's entry and exit with atomic instructions, and its pruning
pass cannot remove them from helpers with branches (numba issues #2345 and
#2350).  Measured on the compiled descent (LeNet on 1x28x28, 48 replicas):
those counts were more than half of the kernel's time.  ``_nrt=False``
compiles the helper without them; such a helper must not allocate arrays,
which none of these do.  Where a numba version no longer knows the option,
the helpers compile as plain ``njit`` (correct, only slower).

Two intrinsics emit LLVM IR that numba's own code does not: ``float_bits``
(a float's bits, for the bucket index) and ``add_scaled_lanes`` (one vector
update of 16 margins, for the runs of the compiled descent).  A kernel cached
on disk does not notice when they change: numba keys its cache on the
kernel's own source file (clear ``__pycache__`` after editing them).
"""

from __future__ import annotations

import functools

import torch
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.core.cpu import CPUTargetOptions
from numba.extending import intrinsic

__all__ = ["njit_borrowing", "njit_parallel", "float_bits", "add_scaled_lanes", "LANES"]

_NO_REFCOUNT = {"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {}


def njit_borrowing(fn=None, **options):
    """``numba.njit(cache=True, ...)`` without reference counting of arguments.

    For helpers that read and write the arrays they are passed but never
    allocate, return or store one (see the module docstring)."""
    def wrap(f):
        return njit(cache=True, **_NO_REFCOUNT, **options)(f)
    return wrap if fn is None else wrap(fn)


class _KeepsTorchThreads:
    """A parallel numba kernel that restores torch's thread count after each
    call (see the module docstring); attributes are the dispatcher's."""

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher
        functools.update_wrapper(self, dispatcher.py_func)

    def __call__(self, *args, **kwargs):
        before = torch.get_num_threads()
        try:
            return self._dispatcher(*args, **kwargs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def __getattr__(self, name):
        return getattr(self._dispatcher, name)


def njit_parallel(fn=None, **options):
    """``numba.njit(cache=True, parallel=True, ...)`` for kernels called from
    Python, which leave torch's intra-op thread count as they found it."""
    def wrap(f):
        return _KeepsTorchThreads(njit(cache=True, parallel=True, **options)(f))
    return wrap if fn is None else wrap(fn)


@intrinsic
def float_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (a bit cast, no call): the
    binary exponent and leading mantissa bits of a field without ``frexp``,
    which numba compiles to a call into its helper library."""
    if not isinstance(x, types.Float) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


#: lanes of :func:`add_scaled_lanes`: one 64-byte vector of float32
LANES = 16


@intrinsic
def add_scaled_lanes(typingctx, m, s, base, w, wbase, d, count):
    """``m[base+k] += d * s[base+k] * w[wbase+k]`` for the lanes ``k < count``
    of one 16-lane vector operation (float32 ``s`` and ``d``, ``m`` and ``w``
    of one float dtype, the products rounded as the scalar loop rounds them),
    returning the lanes ``k < count`` whose new ``m`` is negative as the bits
    of an int64.  All 16 lanes are read and written back (``m`` plus zero
    beyond ``count``): the caller pads the arrays so that they exist.  No
    bounds checks.

    LLVM does not vectorize the scalar form itself: it cannot prove that ``m``
    does not alias ``s`` or ``w``, and the per-lane test guards a call."""
    if not (isinstance(m, types.Array) and isinstance(s, types.Array)
            and isinstance(w, types.Array) and m.dtype == w.dtype
            and isinstance(m.dtype, types.Float) and s.dtype == types.float32
            and d == types.float32 and isinstance(count, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        mty, sty, _, wty, _, _, _ = signature.args
        ptrs = []
        for aty, a, i in ((mty, args[0], args[2]), (sty, args[1], args[2]),
                          (wty, args[3], args[4])):
            ary = context.make_array(aty)(context, builder, a)
            ptrs.append(cgutils.get_item_pointer(context, builder, aty, ary, [i],
                                                 wraparound=False))
        f32, i64 = ir.FloatType(), ir.IntType(64)
        fm = context.get_value_type(mty.dtype)
        vf32, vfm, vi64 = (ir.VectorType(t, LANES) for t in (f32, fm, i64))
        mp = builder.bitcast(ptrs[0], vfm.as_pointer())
        vm = builder.load(mp, align=4)
        vs = builder.load(builder.bitcast(ptrs[1], vf32.as_pointer()), align=4)
        vw = builder.load(builder.bitcast(ptrs[2], vfm.as_pointer()), align=4)

        def splat(x, vty):
            v = builder.insert_element(ir.Constant(vty, None), x, ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(v, ir.Constant(vty, None),
                                          ir.Constant(ir.VectorType(ir.IntType(32), LANES), None))

        live = builder.icmp_signed("<", ir.Constant(vi64, list(range(LANES))),
                                   splat(builder.sext(args[6], i64) if args[6].type.width < 64
                                         else args[6], vi64))
        ds = builder.fmul(splat(args[5], vf32), vs)     # d * s, in float32 as the scalar loop
        ds = builder.select(live, ds, ir.Constant(vf32, None))
        if fm != f32:
            ds = builder.fpext(ds, vfm)
        new = builder.fadd(vm, builder.fmul(ds, vw))
        builder.store(new, mp, align=4)
        neg = builder.and_(builder.fcmp_ordered("<", new, ir.Constant(vfm, None)), live)
        return builder.zext(builder.bitcast(neg, ir.IntType(LANES)), i64)
    return types.int64(m, s, types.intp, w, types.intp, types.float32, count), codegen

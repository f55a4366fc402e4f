"""numba settings shared by the compiled kernels.

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
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit
from numba.core import types
from numba.core.cpu import CPUTargetOptions
from numba.extending import intrinsic

__all__ = ["njit_borrowing", "float_bits"]

_NO_REFCOUNT = {"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {}


def njit_borrowing(fn=None, **options):
    """``numba.njit(cache=True, ...)`` without reference counting of arguments.

    For helpers that read and write the arrays they are passed but never
    allocate, return or store one (see the module docstring)."""
    def wrap(f):
        return njit(cache=True, **_NO_REFCOUNT, **options)(f)
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

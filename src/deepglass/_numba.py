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
"""

from __future__ import annotations

import functools

import torch
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.core.cpu import CPUTargetOptions
from numba.extending import intrinsic

__all__ = ["njit_borrowing", "njit_parallel", "float_bits"]

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

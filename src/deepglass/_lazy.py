"""Lazy package attributes (PEP 562): ``import deepglass`` stays cheap, and a
name's module (torch, numba kernels, ...) is imported on first use; ``dir()``
(and so ``help()`` and tab completion) still lists them."""

from __future__ import annotations

import __future__
import importlib
import sys
from typing import Callable, Mapping


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``package`` that imports ``table[name]``
    (a module name relative to ``package``, or absolute when it starts with
    ``deepglass``) on first access and caches the value in the package."""

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = table[name]
        module = where if where.startswith("deepglass") else f"{package}.{where}"
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


def lazy_dir(package: str, table: Mapping[str, str]) -> Callable[[], list[str]]:
    """A module-level ``__dir__`` for ``package``: its attributes and the lazy
    names of ``table`` (which ``dir()`` and ``help()`` list before first use)."""

    def __dir__() -> list[str]:
        # (not the names the package's own header binds: the future import,
        # these two helpers)
        own = {k for k, v in vars(sys.modules[package]).items()
               if not isinstance(v, __future__._Feature) and v is not lazy_dir
               and v is not lazy_getattr}
        return sorted(own | set(table))

    return __dir__

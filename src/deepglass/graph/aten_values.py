"""Values and helpers shared by the ATen rules (SPEC §1b): :class:`Stat`, a
per-sample statistic that may only rescale a value, and argument helpers.
"""

from __future__ import annotations

import dataclasses

import torch

from .trace import Pending, Ref


aten = torch.ops.aten


@dataclasses.dataclass
class Stat:
    """A non-negative per-sample statistic of network values (``x ** 2``, its
    means and pools, their roots): what normalizations divide by (local
    response norm, RMSNorm, a layer norm written out).  It may only rescale a
    value (SPEC §1b: a positive rescaling); it never becomes graph nodes."""

    shape: tuple


def _opname(target) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return name.replace("aten.", "").split(".default")[0]


def _arg(n, args, i, key, default=None):
    return args[i] if len(args) > i else n.kwargs.get(key, default)


def _is_sym(v) -> bool:
    return isinstance(v, (Ref, Pending))


def _flag(v, **kw):
    """A materialized value with attributes (non-negativity, elementwise function)."""
    return dataclasses.replace(v, **kw) if isinstance(v, Ref) else v

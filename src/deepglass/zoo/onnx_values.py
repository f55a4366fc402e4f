"""Values of the ONNX converter and its small helpers (attributes, tensors, names,
meta-device examples); used by :mod:`deepglass.zoo.onnx_import` and its op modules."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn


@dataclass
class _Value:
    """An ONNX value: a constant tensor (CPU), or an fx node with a ``meta`` example tensor."""

    const: torch.Tensor | None = None
    node: fx.Node | None = None
    example: torch.Tensor | None = None

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def tensor(self) -> torch.Tensor:
        return self.const if self.const is not None else self.example


@dataclass
class _Norm:
    """A per-sample normalization whose output value may still absorb a constant ``* w + b``."""

    kind: str  # "layer" or "group"
    x: _Value
    eps: float
    shape: tuple[int, ...]  # LayerNorm: normalized shape; GroupNorm: (groups, channels)
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


#: floating dtypes other than float32, read as float32: the imported module computes in
#: float32 (its parameters are, :func:`_param`).  fp16 and bf16 values are exact in float32,
#: so a half-precision file has the graph of its own weights; float64 ones are rounded as
#: the graph's default dtype rounds them
_OTHER_FLOATS = (torch.float16, torch.bfloat16, torch.float64)


def _widen(dtype: torch.dtype) -> torch.dtype:
    """float32 for another floating dtype (:data:`_OTHER_FLOATS`), else the dtype."""
    return torch.float32 if dtype in _OTHER_FLOATS else dtype


def _to_tensor(proto) -> torch.Tensor:
    """An ONNX tensor as a torch tensor; other floating values are read as float32."""
    from onnx import numpy_helper

    arr = numpy_helper.to_array(proto)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C", copy=True)  # (np.ascontiguousarray would make a 0-d array 1-d)
    if arr.dtype.kind == "V" or str(arr.dtype) == "bfloat16":  # ml_dtypes' bfloat16
        arr = arr.astype(np.float32)
    t = torch.from_numpy(arr)
    return t.float() if t.dtype in _OTHER_FLOATS else t


def _safe(name: str) -> str:
    s = re.sub(r"\W", "_", name).strip("_").lower()
    s = s if s and not s[0].isdigit() else f"n_{s}"
    return f"{s}_" if keyword.iskeyword(s) else s  # fx writes module names into Python code


def _label(node) -> str:
    return repr(node.name or node.output[0])


def _meta(t):
    return t.to("meta") if isinstance(t, torch.Tensor) else t


def _meta_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` on a meta tensor: shapes and dtypes only, no arithmetic."""
    state = {k: v.to("meta") for k, v in module.state_dict(keep_vars=True).items()}
    with torch.no_grad():
        return torch.func.functional_call(module, state, (x,))


def _param(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().float().contiguous())


def _close(t: torch.Tensor | None, value: float, tol: float = 1e-6) -> bool:
    return t is not None and t.numel() == 1 and abs(float(t.reshape(())) - value) <= tol * max(1.0, abs(value))


def _drop_unused(gm: fx.GraphModule) -> None:
    """Delete the top-level buffers and modules no graph node refers to any more."""
    used = {n.target for n in gm.graph.nodes if n.op in ("get_attr", "call_module")}
    for name in [b for b in gm._buffers if b not in used]:
        del gm._buffers[name]
    for name in [m for m in gm._modules if m not in used]:
        del gm._modules[name]

"""The names of a network's outputs (SPEC §1b): what a forward pass returns,
flattened (one tensor, a tuple, a dict, a named tuple of an ONNX file's
outputs), named as :attr:`~deepglass.graph.SignedGraph.outputs` names them,
and the one tensor an output name or position selects."""

from __future__ import annotations

import keyword
import re

import torch

from ..errors import DeepglassError

__all__ = ["output_names", "single_output_name", "output_tensor", "field_name"]


def output_names(n: int, spec, single: str | None = None) -> list[str]:
    """Names of the flattened outputs: ``single`` (default ``output``) for one
    tensor, else the container keys (``0``, ``1``, ... or a dict's keys).  A
    module names its lone output with an attribute ``onnx_output_name`` (an ONNX
    file's output: :func:`single_output_name`)."""
    import torch.utils._pytree as pytree

    if spec is not None:
        try:
            tree = pytree.tree_unflatten(list(range(n)), spec)
            if not isinstance(tree, int):
                leaves, _ = pytree.tree_flatten_with_path(tree)
                names = [pytree.keystr(path).strip("[]'\".") or str(i)
                         for i, (path, _) in enumerate(leaves)]
                names = [nm.replace("][", ".").replace("'", "") for nm in names]
                if len(names) == n and len(set(names)) == n:
                    return names
        except Exception:  # a spec we cannot read: fall back to positions
            pass
    return [single or "output"] if n == 1 else [str(i) for i in range(n)]


def single_output_name(model) -> str | None:
    """The name a module gives its lone tensor output (attribute ``onnx_output_name``:
    an imported ONNX file's), None where it gives none."""
    name = getattr(model, "onnx_output_name", None)
    meta = getattr(model, "meta", None)
    if name is None and isinstance(meta, dict):    # a GraphModule's deepcopy keeps meta only
        name = meta.get("onnx_output_name")
    return name if isinstance(name, str) and name else None


def output_tensor(out, output: str | int | None = None, single: str | None = None) -> torch.Tensor:
    """The output named ``output`` (as in :attr:`SignedGraph.outputs`: ``"output"``
    for one tensor, tuple positions, dict keys; or a position) of a forward
    pass's result ``out``; the first tensor output by default (SPEC §1b)."""
    import torch.utils._pytree as pytree

    leaves, spec = pytree.tree_flatten(out)
    names = output_names(len(leaves), spec, single)
    tensors = [(nm, t) for nm, t in zip(names, leaves) if isinstance(t, torch.Tensor)]
    if not tensors:
        raise DeepglassError("the model returned no tensor")
    if output is None:
        return tensors[0][1]
    by_name = dict(tensors)
    for key in (str(output), field_name(str(output), 0, ())):   # box.reg is box_reg
        if key in by_name:
            return by_name[key]
    try:
        return leaves[int(output)]
    except (ValueError, IndexError):
        raise DeepglassError(f"no output {output!r}: the network's outputs are "
                             f"{', '.join(nm for nm, _ in tensors)}") from None


def field_name(name: str, i: int, taken) -> str:
    """``name`` as a named tuple field not in ``taken``: other characters than
    letters, digits and ``_`` become ``_`` (leading and trailing ones dropped),
    a leading digit gets ``output_``, a keyword a trailing ``_``; an empty one
    is ``output_<i>``."""
    f = re.sub(r"\W", "_", str(name)).strip("_") or f"output_{i}"
    if f[0].isdigit():
        f = f"output_{f}"
    if keyword.iskeyword(f):
        f += "_"
    while f in taken:
        f += "_"
    return f

"""Capturing a ``torch.nn.Module`` into the blocks of its signed graph (SPEC §1, §1b).

The model is captured with ``torch.export`` (:mod:`.aten`); where the exporter
fails and ``capture="auto"``, the ``torch.fx`` tracer (:mod:`.fx_capture`) is
the fallback.  Both interpret the captured program on a real sample and
symbolically (:mod:`.symbolic`).  :func:`capture_module` returns the parts of a
graph (:meth:`SignedGraph.from_module` assembles them), and with
``record=True`` also the captured program and the values every edge block
reads, for activation patterns (:mod:`.pattern`).
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn as nn

from ..errors import DeepglassError, UnsupportedLayerError, first_line
from .blocks import EdgeBlock, IdentityBlock, NodeBlock
from .fixed_weights import mark_fixed
from .outputs import output_names, single_output_name
from .model_checks import (DATA_WRITTEN, attributes_kept, check_finite, check_weights,
                           identity_hashes, module_mode, refuse_called_modules)
from .prune import contract_copies, merge_concatenated_copies, prune, prune_channels
from .symbolic import (Builder, ForwardError, NonMonotoneActivationWarning, Pending, Ref, Refused,
                       flatten, remap)

__all__ = ["capture_module", "check_finite", "module_mode", "Captured", "RULES", "CAPTURE_OF",
           "input_shapes"]


#: the capture conventions of SPEC §1 / §1b, each a named option: value choices,
#: the first being the default
RULES = {
    "batchnorm": ("fold", "ignore"),   # batch norm: fold gamma/sqrt(var+eps), or ignore
    "norm": ("fold", "ignore"),        # per-sample norms (Layer/Group/Instance): fold the gain
    "gates": ("scale", "error"),       # x * g with g >= 0 a gate: positive rescaling, or refuse
    "capture": ("auto", "export", "core", "fx"),  # core: torch.export lowered to core ATen
}

def input_shapes(input_shape) -> list[tuple[int, ...]]:
    """One shape ``(3, 224, 224)`` or several ``[(3, 32, 32), (10,)]``; every
    size a positive integer (``8.5`` or ``"8"`` is refused, not truncated)."""
    shapes = input_shape
    if isinstance(shapes, (np.ndarray, torch.Tensor)) and shapes.ndim == 1:
        shapes = shapes.tolist()        # np.array([1, 8, 8]): the sizes it holds
    if not isinstance(shapes, (list, tuple)) or not shapes \
            or not isinstance(shapes[0], (list, tuple, torch.Size)):
        shapes = [shapes]
    out = []
    for sh in shapes:
        if not isinstance(sh, (list, tuple, torch.Size)):
            raise DeepglassError(f"input shape must be a sequence of integers, got {sh!r}")
        sizes = [_size(s) for s in sh]
        # () is one number per sample (a diffusion model's timestep, shape (B,))
        if any(s is None or s <= 0 for s in sizes):
            raise DeepglassError(f"input shape must be positive integers, got {tuple(sh)}")
        out.append(tuple(sizes))
    return out


def _size(s) -> int | None:
    """An input size as an int: an integer (Python, NumPy or a 0-d integer
    tensor) or an integral float (``8.0``); ``None`` for anything else."""
    if isinstance(s, bool):
        return None
    if isinstance(s, (float, np.floating)):
        return int(s) if float(s).is_integer() else None
    try:
        return int(s.__index__())
    except (AttributeError, TypeError, RuntimeError):
        return None


def _check_dtype_device(dtype, device) -> None:
    """Refuse, in one line and before anything is traced, a ``dtype`` that is
    not a floating-point torch dtype (an integer one would truncate every
    weight) and a ``device`` torch cannot use (as :meth:`SignedGraph.to`)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise DeepglassError(f"dtype must be a floating-point torch dtype (torch.float32, "
                             f"torch.float64, ...), not {dtype!r}")
    from ..devices import check_device

    check_device(device)


def forward_batch_size(model, batch_size: int, hooks: bool = True) -> int:
    """The batch size to run ``model`` forward at: ``batch_size``, or 1 for a
    module whose graph runs at batch size 1 only (``batch_one_only``: an ONNX
    file exported with a fixed batch of 1 that reshapes, selects or moves its
    batch axis, :mod:`deepglass.zoo.onnx_import`).  Such a module that runs
    batches itself (``takes_batches``: :class:`deepglass.zoo.onnx_batch.PerSample`,
    a vmap over the samples) gets ``batch_size`` where the caller registers no
    forward ``hooks`` on its layers (a hook inside the vmap would see batched
    values)."""
    meta = getattr(model, "meta", None)
    one = getattr(model, "batch_one_only", False) or (
        isinstance(meta, dict) and meta.get("batch_one_only", False))
    if one and not hooks and getattr(model, "takes_batches", False):
        return int(batch_size)
    return 1 if one else int(batch_size)


#: the ``capture`` option that reproduces a graph's ``meta["rules"]["capture"]``
CAPTURE_OF = {"torch.export": "export", "torch.export (core ATen)": "core", "torch.fx": "fx"}


@dataclass
class Captured:
    """The parts of a signed graph (:class:`SignedGraph`'s arguments), and with
    ``record=True`` what :mod:`.pattern` records activation patterns from:
    the captured program (``program``: a ``GraphModule``; ``batched``: whether
    it runs on a batch, else one sample at a time), the value ids each edge
    block reads (``reads``: (zero-faithful ids, exact ids), ``in_shape`` each,
    ``-1`` = none), the fx node and id range of every numbered value
    (``values``: (node, tuple position, first id, size)) and where the selected
    output is among the program's flattened outputs (``output_position``)."""

    node_blocks: list[NodeBlock]
    edge_blocks: list[EdgeBlock]
    input_shape: tuple
    outputs: dict
    dtype: torch.dtype
    device: torch.device
    meta: dict
    output_names: list = field(default_factory=list)
    program: Any = None
    widened: bool = False
    batched: bool = True
    reads: list = field(default_factory=list)
    values: list = field(default_factory=list)


@dataclass
class _Run:
    builder: Builder
    leaves: list
    names: list
    gated: list
    how: str
    program: Any
    left_out: list = field(default_factory=list)   # layers that read a refused value
    where: Any = None        # an fx node's layer name (the export path's)
    unread: list = field(default_factory=list)     # (Pending, row): layers a refused op read


def _capture_export(model, inputs, forward_kwargs, builder, rules, core=False):
    from .aten import AtenInterpreter, export_module

    import torch.utils._pytree as pytree

    gm, how = export_module(model, inputs, forward_kwargs, core=core)
    interp = AtenInterpreter(gm, builder, rules)
    # the program's placeholders are the flattened (args, kwargs); a tensor in
    # forward_kwargs is a fixed argument (a diffusion timestep, a style vector),
    # as a number there is, not an input of the graph
    interp.fixed = set([nd for nd in gm.graph.nodes if nd.op == "placeholder"][len(inputs):])
    interp.run(*pytree.tree_flatten((tuple(inputs), dict(forward_kwargs or {})))[0])
    out = interp.sym[next(nd for nd in gm.graph.nodes if nd.op == "output")]
    leaves = flatten(out)
    names = output_names(len(leaves), getattr(gm, "_out_spec", None), single_output_name(model))
    return _Run(builder, leaves, names, interp.gated, how, gm, interp.left_out, interp.where,
                interp.unread)


def _capture_fx(model, inputs, forward_kwargs, builder):
    from .fx_capture import FxInterpreter

    if len(inputs) > 1:
        raise DeepglassError("the torch.fx fallback takes one input; several inputs need "
                             "torch.export")
    try:
        gm = torch.fx.symbolic_trace(model, concrete_args=forward_kwargs or None)
    except Exception as exc:  # fx raises many kinds of errors
        raise DeepglassError(first_line(exc)) from None
    import torch.utils._pytree as pytree

    interp = FxInterpreter(gm, builder, tuple(inputs[0].shape[1:]), model)
    # (placeholders after the input: forward_kwargs that fx traced as constants,
    # an unused *args, none of them read)
    rest = [nd.args[0] if nd.args else None for nd in gm.graph.nodes if nd.op == "placeholder"][1:]
    real = interp.run(inputs[0], *rest)  # the real output: its structure names the outputs
    out = interp.sym[next(nd for nd in gm.graph.nodes if nd.op == "output")]
    leaves = flatten(out)
    return _Run(builder, leaves, output_names(len(leaves), pytree.tree_flatten(real)[1],
                                              single_output_name(model)), [],
                "torch.fx", gm)


def _capture(model, inputs, forward_kwargs, rules, capture, pool_weight, batchnorm, record):
    """torch.export (``capture`` auto / export / core), the fx tracer where the
    exporter fails under ``auto`` (or with ``capture="fx"``)."""
    from .aten import ExportFailed

    export_msg = None
    if capture != "fx":
        try:
            return _capture_export(model, inputs, forward_kwargs,
                                   Builder(pool_weight, batchnorm, record), rules,
                                   core=capture == "core")
        except ExportFailed as exc:
            _check_forward(model, inputs, forward_kwargs)
            if capture != "auto":
                raise DeepglassError(f"cannot capture {type(model).__name__} with "
                                     f"torch.export: {_export_hint(str(exc))}") from None
            export_msg = _export_hint(str(exc))
    else:
        # the weights of one inference (a max-norm layer renorms its weight in
        # forward, as the exporter's run above does under "auto")
        _check_forward(model, inputs, forward_kwargs)
    try:
        return _capture_fx(model, inputs, forward_kwargs, Builder(pool_weight, batchnorm, record))
    except UnsupportedLayerError as exc:
        if export_msg is None:
            raise
        # the fallback knows fewer layers than the export path: say first why
        # the export path failed, which is what the user can change
        raise UnsupportedLayerError(
            f"cannot capture {type(model).__name__} with torch.export: {export_msg}; the "
            f"torch.fx fallback (fewer layer rules) stops at: "
            f"{first_line(exc)}") from None
    except DeepglassError as exc:
        msg = first_line(exc)
        if export_msg is None:
            raise DeepglassError(f"cannot trace {type(model).__name__} with torch.fx: "
                                 f"{msg}") from None
        raise DeepglassError(
            f"cannot capture {type(model).__name__}: torch.export: {export_msg}; torch.fx: "
            f"{msg}. torch.export's error is the one to address (it follows branches on "
            "shapes, x.ndim, that torch.fx cannot); if forward() branches on the input's "
            "values, wrap the model in a module whose forward calls it with fixed arguments "
            "(non-tensor arguments can also be given as forward_kwargs)") from None


def _export_hint(message: str) -> str:
    """torch.export's message, with the usual cause named where torch names a
    ``lifted_tensor`` (a tensor made outside the traced graph) and asks for a
    bug report."""
    if "lifted_tensor" not in message:
        return message
    message = message.replace(" Please file an issue on github.", "").rstrip(". ")
    return f"{message} ({DATA_WRITTEN})"


def _rescaled_output(builder: Builder, v, name: str, others: list):
    """An output value that still carries a rescaling (a residual ``c + g * c``,
    a norm's gain after its nodes were made for two readers): no later layer
    folds the factors in.  Where the value is one whole layer's node block
    (not an input) that no edge block and no other output reads, and the factor is a scalar or one per
    channel (any factor, where the edges ending there are a pool's), it folds
    into the block's incoming edges (as a batch norm does); otherwise the
    output gets nodes of its own, one edge of weight ``s`` from each node it
    rescales."""
    if not isinstance(v, Ref) or v.scale is None or bool((v.scale == 1).all()) or \
            bool((v.index < 0).any()):
        return v        # (constant elements: the output is refused, as padding is)
    shape = tuple(v.index.shape[1:])
    flat = v.index.reshape(-1)
    nb = next((b for b in builder.node_blocks if b.offset <= int(flat[0]) < b.stop), None)
    s = v.scale.reshape(shape)
    reads = [u for w in others for u in ([w] if isinstance(w, Ref) else
                                          [r for _, r in w.terms if isinstance(r, Ref)])]
    order = torch.argsort(flat)
    if nb is not None and flat.numel() == nb.size and bool(torch.equal(
            flat[order], torch.arange(nb.offset, nb.stop, device=flat.device))):
        # the block's nodes in another order (a permuted output): its factors in
        # the block's order
        shape = tuple(nb.shape)
        s = torch.broadcast_to(v.scale, v.index.shape).reshape(-1)[order].reshape(shape)
    if (nb is not None and nb.op != "input" and flat.numel() == nb.size
            and bool((flat >= 0).all())
            and bool(torch.equal(flat[order], torch.arange(nb.offset, nb.stop,
                                                           device=flat.device)))
            and tuple(nb.shape) == shape
            and not any(nb.index in b.src_blocks for b in builder.edge_blocks)
            and not any(bool(((u.index >= nb.offset) & (u.index < nb.stop)).any())
                        for u in reads)):
        incoming = [b for b in builder.edge_blocks if b.dst == nb.index]
        per_channel = s.reshape(shape[0], -1) if len(shape) > 1 else s.reshape(-1, 1)
        if bool((per_channel == per_channel[:, :1]).all()):
            factor = per_channel[:, 0].reshape((-1,) + (1,) * (len(shape) - 1))
        elif all(b.takes_node_scale() for b in incoming):
            factor = s          # one factor per node (a pool's edges take any)
        else:
            factor = None       # convolutions and dense layers fold per channel only
        if factor is not None:
            for b in incoming:
                b.scale_output(factor)
            return Ref(v.index, nonneg=False, value=v.value, exact=v.exact)
    shape = tuple(v.index.shape[1:])
    return Pending([(IdentityBlock(shape, module=name), v)], shape, op="scale", name=name)


def _check_forward(model, inputs, forward_kwargs) -> None:
    """Where the exporter failed: if the model itself fails on the sample input,
    that is the error to report (not a capture path's)."""
    try:
        model(*inputs, **(forward_kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - any error of the user's model
        raise ForwardError(first_line(exc)) from None


def _check_options(batchnorm, norm, gates, capture, pool_weight) -> None:
    for key, value in (("batchnorm", batchnorm), ("norm", norm), ("gates", gates),
                       ("capture", capture)):
        if value not in RULES[key]:
            raise DeepglassError(f"{key} must be one of {', '.join(map(repr, RULES[key]))}, "
                                 f"not {value!r}")
    if pool_weight is not None and (isinstance(pool_weight, bool) or not isinstance(
            pool_weight, (int, float, np.integer, np.floating)) or not 0 < pool_weight < np.inf):
        raise DeepglassError(f"pool_weight must be a positive finite number, got {pool_weight!r}")


def _run_capture(model, shapes, forward_kwargs, rules, capture, pool_weight, batchnorm,
                 record, dtype=torch.float32) -> _Run:
    from ..memory import check_fits

    # the sample in the dtype and on the device of the real weights (a complex
    # one, an FNO's spectral weight, does not make the input complex); a model
    # without: of its floating buffers (a DFT's, a window's), else ``dtype``
    p = next((t for t in model.parameters() if t.is_floating_point()), None)
    if p is None:
        p = next((b for b in model.buffers() if b.is_floating_point()), None)
    if p is None:
        p = torch.empty(0, dtype=dtype)
    # the sample and a first activation of its size, before any of it is made
    check_fits(2 * 4 * sum(int(np.prod(sh, dtype=np.float64)) for sh in shapes),
               f"one sample of shape {shapes[0] if len(shapes) == 1 else shapes} to capture",
               "lower input_shape")
    inputs = tuple(torch.zeros((1,) + sh, dtype=p.dtype if p is not None else torch.float32,
                               device=p.device if p is not None else "cpu") for sh in shapes)
    # torch.export's own warnings are dropped; the graph's (a non-monotone
    # activation) are passed on afterwards, through the caller's filters
    with module_mode(model), torch.no_grad(), identity_hashes(model), \
            warnings.catch_warnings(record=True) as caught, attributes_kept(model):
        warnings.simplefilter("always")
        refuse_called_modules(model, inputs, forward_kwargs)
        try:
            run = _capture(model, inputs, forward_kwargs, rules, capture, pool_weight,
                           batchnorm, record)
        except DeepglassError as exc:  # keep the message on one line
            raise type(exc)(first_line(exc)) from None
        except ForwardError as exc:
            msg = first_line(exc)
            shape_txt = shapes[0] if len(shapes) == 1 else shapes
            if "allocate memory" in msg or "out of memory" in msg:
                raise DeepglassError(f"{type(model).__name__} ran out of memory on one "
                                     f"sample of shape {shape_txt} (capture keeps every "
                                     f"value of the forward pass): {msg}") from None
            if re.search(r"(type|dtype) \(?\w+\)? (and|but|should)|expected scalar type|"
                         r"found dtype|should be the same|must have the same dtype|"
                         r"to have the same dtype|dtypes must be the same", msg, re.I):
                # the model mixes precisions (a float32 tensor made in forward of
                # a float64 model): the shape is not the cause
                dt = inputs[0].dtype if inputs else None
                raise DeepglassError(f"{type(model).__name__} does not run in {dt} on a "
                                     f"sample of shape {shape_txt} (it mixes precisions: "
                                     f"{msg}); the sample takes the weights' dtype: make "
                                     "the tensors forward creates follow the input's "
                                     "(dtype=x.dtype), or convert the model to theirs "
                                     "(model.float())") from None
            if forward_kwargs and "unexpected keyword argument" in msg:
                raise DeepglassError(f"{type(model).__name__}'s forward does not take the "
                                     f"keyword arguments given (forward_kwargs): {msg}") from None
            default = getattr(model, "default_input_shape", None)
            hint = ""
            if (isinstance(default, tuple) and default and all(isinstance(d, int) for d in default)
                    and len(inputs) == 1 and len(default) != inputs[0].dim() - 1):
                hint = (f" (it takes {len(default)} dimension(s), like "
                        f"{','.join(map(str, default))})")
            raise DeepglassError(f"{type(model).__name__} does not accept input of shape "
                                 f"{shape_txt}{hint}: {msg}") from None
    for v in run.leaves:
        if isinstance(v, Refused):     # a value the graph cannot hold reached the output:
            raise UnsupportedLayerError(v.message)   # refused, nothing warned before
    kept = [w for w in caught if issubclass(w.category, NonMonotoneActivationWarning) and
            str(w.message) not in run.builder.retracted]
    for w, message in _one_per_activation(kept):
        warnings.warn_explicit(message, w.category, w.filename, w.lineno)
    if batchnorm == "ignore" and not _reads_batch_norm(run.program):
        warnings.warn(_no_batch_norm(model), UserWarning, stacklevel=4)
    return run


def _reads_batch_norm(program) -> bool:
    """Whether the captured program computes a batch norm (an op, a module, or a
    frozen batch norm's fixed scale)."""
    from .aten_norms import in_frozen_batch_norm
    from .fx_capture import BATCHNORM_MODULES

    for nd in program.graph.nodes:
        if nd.op == "call_function" and "batch_norm" in str(getattr(nd.target, "__name__", nd.target)):
            return True
        if nd.op == "call_module" and isinstance(program.get_submodule(nd.target), BATCHNORM_MODULES):
            return True
        if in_frozen_batch_norm(nd):
            return True
    return False


def _no_batch_norm(model) -> str:
    """batchnorm='ignore' on a network without batch norm: it changes nothing.  An
    ONNX file exported from PyTorch in eval mode has its batch norms folded into
    the convolutions before them (both of torch's exporters do it), so the
    paper's mode cannot be had from the file: say how to export it."""
    msg = (f"batchnorm='ignore' changes nothing: {type(model).__name__} computes no batch "
           "norm, so its graph is the batchnorm='fold' one")
    if getattr(model, "onnx_node_names", None) is not None:
        msg += ("; an ONNX file exported from PyTorch in eval mode has its batch norms folded "
                "into the convolutions: export it with "
                "training=torch.onnx.TrainingMode.PRESERVE to keep them")
    return msg


def _one_per_activation(caught):
    """The capture's non-monotone warnings, one per activation kind: the layers
    of a kind warned at (a PReLU with negative slopes in every block) are named
    in one message, the first three and how many more."""
    import re

    groups: dict = {}
    for w in caught:
        m = re.match(r"activation (.+?) at '([^']*)'(.*?) is not non-decreasing(.*)$",
                     str(w.message), re.S)
        key = (m[1], m[4]) if m else str(w.message)
        groups.setdefault(key, []).append((w, m))
    for key, items in groups.items():
        w, m = items[0]
        if len(items) == 1 or m is None:
            yield w, w.message
            continue
        layers = ", ".join(repr(m2[2]) for _, m2 in items[:3])
        more = f" and {len(items) - 3} more" if len(items) > 3 else ""
        first = f"; at the first{m[3]}" if m[3] else ""
        yield w, (f"activation {key[0]} at {len(items)} layers ({layers}{more}{first}) is not "
                  f"non-decreasing{key[1]}")


def capture_module(model: nn.Module, input_shape, batchnorm: str = "fold",
                   pool_weight: float | None = None, dtype=torch.float32, device="cpu", *,
                   norm: str = "fold", gates: str = "scale", capture: str = "auto",
                   forward_kwargs: dict | None = None, record: bool = False) -> Captured:
    """Capture ``model`` into the parts of its signed graph (SPEC §1, §1b).

    See :meth:`SignedGraph.from_module` for the options.  ``record=True`` also
    returns the captured program and the value ids every edge block reads
    (:class:`Captured`), the hook of :mod:`.pattern`.
    Complexity: one capture plus one forward pass at batch 1, and O(size of
    each layer's output) bookkeeping (about three times that when recording);
    no edge is enumerated.
    """
    _check_options(batchnorm, norm, gates, capture, pool_weight)
    _check_dtype_device(dtype, device)
    if forward_kwargs is not None and not isinstance(forward_kwargs, Mapping):
        raise DeepglassError(f"forward_kwargs must be a dict of forward's keyword arguments, "
                             f"not {type(forward_kwargs).__name__}")
    shapes = input_shapes(input_shape)
    if not isinstance(model, nn.Module):
        raise DeepglassError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise DeepglassError("TorchScript modules cannot be captured as they are; convert one with "
                             "deepglass.zoo.torchscript_to_module(module, input_shape) (through "
                             "ONNX), or load the weights into a Python module")
    # wrappers that only hold the network (one process here): their forward scatters
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    params = list(model.parameters()) + list(model.buffers())
    if any(t.is_meta and not isinstance(t, nn.parameter.UninitializedTensorMixin)
           for t in params):
        raise DeepglassError("the model's parameters are on the meta device and hold no values: "
                             "load its weights first (model.to_empty(device='cpu'), then "
                             "load_state_dict)")
    check_weights(model)
    rules = {"batchnorm": batchnorm, "norm": norm, "gates": gates}
    run, widened = None, False
    if any(t.dtype in (torch.float16, torch.bfloat16) for t in params):
        # a float32 copy: the widening is exact, and the folds (gamma / sqrt(var + eps),
        # SPEC §1) are then computed in float32 (in 16 bits they rounded, or overflowed);
        # a model that cannot be copied, or whose forward casts to 16 bits itself, is
        # captured as it is
        try:
            wide = copy.deepcopy(model).float()
            run = _run_capture(wide, shapes, forward_kwargs, rules, capture, pool_weight,
                               batchnorm, record, dtype)
            model, widened = wide, True
        except UnsupportedLayerError:
            raise       # a layer without rule is one in 16 bits too: no second capture
        except Exception:  # noqa: BLE001 - deepcopy and a forward raise any kind
            run = None
    if run is None:
        run = _run_capture(model, shapes, forward_kwargs, rules, capture, pool_weight,
                           batchnorm, record, dtype)
    builder = run.builder
    outputs: dict[str, np.ndarray] = {}
    for name, v in zip(run.names, run.leaves):
        if isinstance(v, Refused):     # a value the graph cannot hold reached the output
            raise UnsupportedLayerError(v.message)
        if not isinstance(v, (Ref, Pending)):
            continue   # a constant output (a shape, a buffer) is not part of the graph
        others = [u for u in run.leaves if u is not v and isinstance(u, (Ref, Pending))]
        if isinstance(v, Ref) and v.index.ndim == 1:    # a vector, its batch squeezed away
            v = remap(v, lambda t, fill: t.reshape(1, -1))
        ref = builder.materialize(_rescaled_output(builder, v, name, others))
        if (ref.index < 0).any():
            raise UnsupportedLayerError(
                f"the model's output {name!r} contains zero padding (the last op pads or "
                "fills in a constant: F.pad, a padding layer, a concatenated constant); "
                "constant elements are no neurons: end the model before the padding")
        outputs[name] = ref.index.reshape(-1).numpy().copy()
    if not outputs:
        raise DeepglassError("the model's output does not depend on its input")
    outputs, left_out = prune(builder, outputs)
    left_out += run.left_out
    # (a layer read only by a refused op, a mask's comparison, never became nodes)
    left_out += [row for v, row in run.unread if not builder.is_materialized(v)]
    outputs = contract_copies(builder, outputs)
    outputs = merge_concatenated_copies(builder, outputs)
    outputs, dropped = prune_channels(builder, outputs)
    left_out += dropped
    # every block's tensors cast here: the builder mixes float32 weights with
    # float64 pooling and scale tensors
    if run.where is not None:           # the layers of fixed transforms (a DFT's)
        mark_fixed(run.program, run.where, builder.edge_blocks)
    device = torch.device(device)
    blocks = [b.to(device=device, dtype=dtype) for b in builder.edge_blocks]
    meta = {"model": type(model).__name__, "batchnorm": batchnorm, "pool_weight": pool_weight,
            "rules": {"capture": run.how, "batchnorm": batchnorm, "norm": norm, "gates": gates,
                      "products": "x * f(x) elementwise", "upsampling": "interpolation weights",
                      "pool_weight": ("average: 1/divisor per window, max: 1/|kernel|, adaptive: "
                                      "1/|window|") if pool_weight is None else pool_weight,
                      **({"forward_kwargs": {k: repr(v) for k, v in forward_kwargs.items()}}
                         if forward_kwargs else {})},
            "inputs": [{"name": nb.name, "shape": list(nb.shape)}
                       for nb in builder.node_blocks if nb.op == "input"]}
    if run.gated:
        meta["gates"] = sorted(set(run.gated))
    if left_out:
        meta["left_out"] = left_out
    out = Captured(builder.node_blocks, blocks, shapes[0], outputs, dtype, device, meta,
                   output_names=list(run.names))
    if record:
        out.program, out.batched = run.program, run.how == "torch.fx"
        out.widened = widened       # the program is a float32 copy's: it reads float32
        out.reads, out.values = builder.reads, builder.values
    return out

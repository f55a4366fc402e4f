"""Convert an ONNX graph into an equivalent ``torch.nn.Module`` of ordinary torch layers.

The ONNX file is read with the ``onnx`` package (no onnxruntime, no onnx2torch)
and rebuilt as a :class:`torch.fx.GraphModule` whose nodes are the layers and
functions a PyTorch author would write: ``Conv`` -> ``nn.Conv1d/2d/3d``,
``ConvTranspose`` -> ``nn.ConvTranspose1d/2d/3d``, ``Gemm`` and ``MatMul`` with
a constant weight (and a following constant ``Add``) -> ``nn.Linear``, pools ->
``nn.MaxPool*`` / ``nn.AvgPool*`` / ``nn.AdaptiveAvgPool*``, the normalizations
-> ``nn.BatchNorm*`` / ``nn.LayerNorm`` / ``nn.GroupNorm`` /
``nn.InstanceNorm*`` / ``nn.LocalResponseNorm``, activations -> their modules
(``HardSwish`` -> ``nn.Hardswish``, learned ``PRelu`` -> ``nn.PReLU`` with its
slopes, ...), elementwise arithmetic -> ``torch.add/sub/mul/div``, ``Resize`` /
``Upsample`` -> ``F.interpolate``, ``Pad`` -> ``F.pad``, and the re-indexings
(``Concat``, ``Split``, ``Slice``, ``Gather``, ``Squeeze``, ``Transpose``,
``Reshape``, ...) -> the torch functions of the same name, and writes at
constant positions (``ScatterND``, ``ScatterElements``, ``Col2Im``) ->
``index_put`` / ``scatter`` / ``scatter_add`` / ``F.fold``, and ``DFT`` /
``STFT`` -> frames and a dense layer of the transform's real weights.  Subgraphs
that exporters write out are recognised and become the one op PyTorch would
have used (SPEC §1b, "the network is what it computes at inference"):
LayerNorm as ``ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div[/Mul/Add]`` ->
``nn.LayerNorm``, GELU as ``Div/Erf/Add/Mul/Mul`` -> ``nn.GELU``, GroupNorm
as ``Reshape/InstanceNormalization/Reshape[/Mul/Add]`` -> ``nn.GroupNorm``,
and the dynamo exporter's nearest-exact upsampling as
``Transpose/GatherND/Transpose`` -> ``F.interpolate`` (the index grid is
compared with what ``nearest`` / ``nearest-exact`` pick).
The module therefore runs under :func:`torch.fx.symbolic_trace` and under
``torch.export.export(module, inputs, strict=False)`` (no Python control flow
at run time, static shapes), so the signed-graph builder sees the same ATen ops
as for a native PyTorch model.

Operations without a signed-graph rule are refused before anything is built,
with one line naming the ONNX node, its op, what it is and why: recurrent
cells (``LSTM``, ``GRU``, ``RNN``), products of two activations (attention-like
``MatMul``), quantized operators, data-dependent control flow.  Control flow
that computes nothing from the input (a TorchScript shape check written as a
``Loop`` or ``If``) is dropped where unused, else run at conversion time
(:mod:`.onnx_control`).

Algorithm: one pass over the ONNX nodes in their (topological) order, keeping
for each ONNX value either a constant tensor (folded eagerly on the CPU) or an
fx node plus an example tensor on the ``meta`` device (shape and dtype only, no
arithmetic).  The examples give every value's shape, which resolves
``auto_pad``, ``Reshape`` targets, ``-1`` dimensions and ``Shape`` chains.
Fusions are matched backwards at the last node of their pattern, so every
constant of the pattern is known; the nodes a fusion makes redundant are
removed by dead-code elimination at the end.  Cost: linear in the number of
ONNX nodes and in the size of the weights (each copied once); no forward pass.

Reshapes that keep the batch dimension are written batch-generically
(``reshape(-1, ...)``), so the module runs at any batch size.  A file exported
with a fixed batch of 1 may fold the batch into another dimension (a
``Reshape`` to ``[-1]`` and back), or gather, squeeze, concatenate or
transpose along axis 0 (a ``Slice`` of axis 0 to its end is the whole batch):
such a graph is right at batch size 1 only, so the module runs it once per
sample (:class:`~deepglass.zoo.onnx_batch.PerSample`, a vmap over the samples)
and says so in ``batch_one_only``
(:func:`deepglass.graph.trace.forward_batch_size`).

Layout: this module is the entry (:func:`load_onnx`, :func:`onnx_to_module`)
and assembles the converter from its parts: the state and emission helpers
(:mod:`.onnx_builder`), the refusals (:mod:`.onnx_refusals`, also
:data:`SUPPORTED_OPS`), and the op handlers by concept (:mod:`.onnx_shape_ops`,
:mod:`.onnx_arith_ops`, :mod:`.onnx_layer_ops`, :mod:`.onnx_resize`, :mod:`.onnx_scatter_ops`,
:mod:`.onnx_spectral_ops`, :mod:`.onnx_sequence_ops`, :mod:`.onnx_control`); a new
ONNX op is one ``op_<Name>`` method in the module of its kind plus its name in
:data:`SUPPORTED_OPS`.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..errors import DeepglassError, first_line
from .onnx_arith_ops import _ArithOps
from .onnx_builder import _BuilderBase
from .onnx_control import _ControlOps
from .onnx_layer_ops import _LayerOps
from .onnx_refusals import FOLDED_OPS, SUPPORTED_OPS
from .onnx_resize import _ResizeOps
from .onnx_scatter_ops import _ScatterOps
from .onnx_shape_ops import _ShapeOps
from .onnx_sequence_ops import _SequenceOps
from .onnx_spectral_ops import _SpectralOps

__all__ = ["load_onnx", "onnx_to_module", "SUPPORTED_OPS", "FOLDED_OPS"]


class _Builder(_ShapeOps, _ArithOps, _LayerOps, _ResizeOps, _ScatterOps, _SpectralOps,
               _SequenceOps, _ControlOps, _BuilderBase):
    """The ONNX converter: state and conversion loop from :class:`_BuilderBase`,
    one ``op_<ONNX op>`` handler per supported op from the mixins."""

def onnx_to_module(model, input_shape=None) -> nn.Module:
    """Convert a loaded ``onnx.ModelProto`` into a :class:`torch.fx.GraphModule` (eval mode).

    Parameters
    ----------
    model : onnx.ModelProto
        The ONNX model.
    input_shape : sequence of int, or a sequence / dict of them, optional
        Input shape without the batch dimension; for a graph with several
        inputs one shape per input, in the graph's input order or as
        ``{input name: shape}`` (``None`` entries keep the file's static
        shape).  Default: the graph's static shapes.

    Returns
    -------
    torch.fx.GraphModule or PerSample
        ``forward`` takes one tensor per ONNX input (in the graph's order) and
        returns one tensor, or a tuple when the graph has several outputs: a
        named tuple of the ONNX output names, each made a Python identifier
        where it is not one (``box.reg`` -> ``box_reg``,
        :mod:`deepglass.zoo.onnx_outputs`), so the signed graph's outputs
        carry those names.
        A file right at its batch of 1 only (it reshapes, selects or moves its
        batch axis) gives a :class:`~deepglass.zoo.onnx_batch.PerSample`
        holding the graph as ``net``: it runs the graph once per sample.
        Attributes: ``batch_one_only`` (whether that is so),
        ``default_input_shape`` (a tuple of ints for one input, a
        tuple of such tuples for several), ``default_input_shapes`` (always a
        tuple of tuples), ``input_names`` and ``onnx_node_names`` (module name
        -> ONNX node name).

    Raises
    ------
    UnsupportedLayerError
        For a node without a signed graph (recurrent cell, product of two
        activations, quantized or control-flow op) or an op outside
        :data:`SUPPORTED_OPS`, naming the node, the op and the reason.
    DeepglassError
        For an empty graph, a graph without inputs, or shapes that do not fit.
    """
    if model.functions:
        model = _inlined(model)
    return _Builder(model, input_shape).build()


def _inlined(model):
    """A file whose nodes call its own functions (``FunctionProto``, written by
    ``export_modules_as_functions`` or the dynamo exporter) as one graph of ONNX
    ops: each call replaced by the function's body (onnx's inliner)."""
    try:
        from onnx.inliner import inline_local_functions
    except ImportError:
        raise DeepglassError("the ONNX file calls local functions (FunctionProto): reading "
                             "them needs onnx >= 1.16 (pip install -U onnx)") from None
    try:
        return inline_local_functions(model)
    except Exception as exc:
        raise DeepglassError(f"cannot inline the ONNX file's local functions: "
                             f"{first_line(exc)}") from None


def load_onnx(path: str | os.PathLike, input_shape=None) -> nn.Module:
    """Read an ONNX file and convert it with :func:`onnx_to_module` (same ``input_shape`` forms)."""
    try:
        import onnx
    except ImportError:
        raise DeepglassError("reading ONNX files needs the 'onnx' package: pip install 'deepglass[onnx]'") from None
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise DeepglassError(f"cannot read ONNX file {path}: {first_line(exc)}") from None
    if not model.graph.node and not model.graph.output:
        raise DeepglassError(f"ONNX file {path} holds no graph (an empty or truncated file)")
    return onnx_to_module(model, input_shape)

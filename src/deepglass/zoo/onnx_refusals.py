"""What the ONNX converter accepts, and its refusals before anything is built.

:data:`SUPPORTED_OPS` have a converter, :data:`FOLDED_OPS` are folded on
constants; recurrent, quantized, attention and control-flow ops, and products
of two activations, have no signed graph (SPEC §1b) and are refused with one
line naming the node, its op and why.
"""

from __future__ import annotations

from ..errors import UnsupportedLayerError
from .onnx_values import _label

__all__ = ["SUPPORTED_OPS", "FOLDED_OPS"]

SUPPORTED_OPS = (
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv", "ConvTranspose", "Div",
    "DepthToSpace", "Dropout", "Elu", "Exp", "Expand", "Flatten", "Gather", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
    "GroupNormalization", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization",
    "LayerNormalization", "LeakyRelu", "LogSoftmax", "LRN", "MatMul", "MaxPool", "Mish", "Mul", "Neg", "Pad", "Pow",
    "PRelu", "Reciprocal", "ReduceL2", "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Sigmoid", "Slice", "Softmax",
    "Softplus", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze", "Upsample",
    "Max", "Min",   # of one activation and one constant (a TLU)
    "Selu", "Celu", "Log", "Sin", "Cos", "Sign", "Abs",
    "ScatterND", "ScatterElements", "Scatter", "Col2Im",   # writes at constant positions
    "GatherElements", "Einsum",     # reads at constant positions; a product with a weight
    "DFT", "STFT",                  # fixed linear maps (a dense layer of the DFT's weights)
    "SplitToSequence", "SequenceAt", "SequenceConstruct", "ConcatFromSequence", "SequenceLength",
)
#: shape arithmetic, folded at conversion time (constant inputs, or Shape of a static tensor;
#: Loop / If of constants are run, unused ones dropped: TorchScript's shape checks);
#: Erf only inside GELU (x * 0.5 * (1 + erf(x / sqrt 2))), which becomes nn.GELU
FOLDED_OPS = ("Abs", "Cast", "CastLike", "Ceil", "ConstantOfShape", "Equal", "Erf", "Floor", "Greater", "If", "Less",
              "Loop", "Max", "Min", "Mod", "Not", "Range", "Shape", "Tile", "Where")

_RECURRENT = {"LSTM", "GRU", "RNN"}
_QUANTIZED = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
    "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "QLinearSoftmax", "QGemm",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "DynamicQuantizeLSTM", "QAttention", "QOrderedMatMul",
}
_ATTENTION = {"Attention", "MultiHeadAttention", "GroupQueryAttention"}
_CONTROL = {"If", "Loop", "Scan", "NonZero", "TopK", "NonMaxSuppression"}
#: folded on constants (dynamic-shape arithmetic), a selection when an activation is involved
_SELECTION = {"Where", "Equal", "Less", "Greater", "Not", "Min", "Max"}
#: (op, input positions) that hold a layer's weights: a graph input there is a file that
#: takes its weights as inputs
_WEIGHT_SLOTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "BatchNormalization": (1, 2, 3, 4),
                 "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2), "GroupNormalization": (1, 2),
                 "PRelu": (1,)}
#: how to keep the part that has a signed graph when re-exporting is not an option
_CUT = ("; or cut the file to that part: onnx.utils.extract_model(path, 'cut.onnx', "
        "[first tensor], [last tensors])")


class _Refusals:
    """The converter's checks of a whole ONNX graph, run before any node is built."""

    def _refuse_undefined(self, real) -> None:
        """Refuse the first node that has no signed graph, else the first op without a converter.

        Const-ness is propagated over the node list (initializers, Constant,
        Shape of a static tensor, nodes of constants only) to tell a weight
        product from a product of two activations, and a Loop / If of
        constants (a shape check, run at conversion time) or one nothing reads
        from data-dependent control flow.  Linear in the node count (and the
        subgraphs' sizes).
        """
        inputs = {i.name for i in real}
        for node in self.model.graph.node:
            for k in _WEIGHT_SLOTS.get(node.op_type, ()):
                if k < len(node.input) and node.input[k] in inputs:
                    raise UnsupportedLayerError(
                        f"ONNX input {node.input[k]!r} is the weight of node {_label(node)} ({node.op_type}): "
                        "the file takes its weights as inputs (exported without them, e.g. "
                        "export_params=False, or a training graph); the signed graph needs them stored "
                        "in the file as initializers: export it with its weights")
        const = set(self.values)
        first_category = first_unknown = None
        for node in self.model.graph.node:
            op = node.op_type
            static = unknown = None
            if op in ("Greater", "Where") and self._softplus_part(node):
                static = True   # the dynamo exporter's nn.Softplus(beta, threshold)
            if self._lerp_part(node):
                static = True   # torch.lerp's choice between two forms of its value
            folded = False
            if op in ("Loop", "If") and node.domain in ("", "ai.onnx"):
                # control flow computing nothing from the input (a shape check): dropped or run now;
                # an If on a shape whose branches read activations: the branch taken is converted
                folded = self._dead(node) or self._reads_constants(node, const)
                static = folded or op == "If" and bool(node.input) and node.input[0] in const
                unknown = None if self._dead(node) else self._unknown_body_op(node)
            why = None if static else self._category(node, const)
            if why is not None and first_category is None:
                first_category = f"ONNX node {_label(node)} ({op}): {why}"
            if first_unknown is None and (unknown is not None or not static and not self._known(node)):
                first_unknown = unknown or node
            if op in ("Constant", "Shape", "Size") or folded or static and op not in ("Loop", "If") or \
                    op not in ("Loop", "If") and all(i in const for i in node.input if i):
                const.update(o for o in node.output if o)
        if first_category is not None:
            raise UnsupportedLayerError(first_category)
        if first_unknown is not None:
            self._unsupported(first_unknown)

    @staticmethod
    def _category(node, const) -> str | None:
        op = node.op_type
        if op in _RECURRENT:
            return ("a recurrent cell has no fixed feed-forward signed graph (its state feeds back over time "
                    "steps); unroll it or export the CNN part" + _CUT)
        if op in _QUANTIZED:
            return ("a quantized operation (integer tensors with scales and zero points); the signed graph is "
                    "defined on real-valued weights: export the float model before quantization")
        if op in _ATTENTION:
            return ("an attention product of activations; its sign depends on the input, so it has no fixed "
                    "signed edges: export the convolutional part" + _CUT)
        live = [i for i in node.input if i and i not in const]
        if op in ("Atan", "Atan2") and live:
            return ("an arctangent of activations, the phase of a spectrum (torch.angle as the "
                    "exporters write it: Atan and a choice of quadrant); a phase has no signed "
                    "graph: read the spectrum as its real and imaginary parts or its magnitude"
                    + _CUT)
        if op in ("Max", "Min") and len(node.input) == 2 and len(live) == 1:
            return None   # max(x, tau) with a constant tau: an elementwise activation (a TLU)
        if op == "Where" and len(node.input) == 3 and node.input[0] in const:
            return None   # a fixed mask choosing between activations or constants (lerp by a number)
        if op in ("Loop", "If"):
            return ("data-dependent control flow (a loop or branch on values computed from the input); "
                    "the signed graph needs one fixed feed-forward computation: export the network without it "
                    "(e.g. without box post-processing)" + _CUT)
        if op in _CONTROL or op in _SELECTION and live:
            return ("data-dependent control flow or selection; the signed graph needs one fixed "
                    "feed-forward computation: export the network without it (e.g. without box post-processing "
                    "or input normalization)" + _CUT)
        if op == "Einsum" and len(live) > 1:
            return ("an attention product of activations; its sign depends on the input, so it has no fixed "
                    "signed edges: export the convolutional part" + _CUT)
        if op in ("MatMul", "Gemm") and len(node.input) >= 2 and not {node.input[0], node.input[1]} & const:
            return ("a product of two activations (attention-like, e.g. queries times keys) has no fixed "
                    "sign: its weights are computed from the input, so the signed graph is not defined for it; "
                    "export the convolutional part" + _CUT)
        return None

    def _softplus_part(self, node) -> bool:
        """A Where, or the Greater that only such Wheres read, of the dynamo exporter's
        ``nn.Softplus(beta, threshold)`` (:meth:`_softplus_threshold`)."""
        if node.op_type == "Where":
            return self._softplus_threshold(node) is not None
        users = self.consumers.get(node.output[0], [])
        return bool(users) and node.output[0] not in self.graph_outputs and \
            all(self._softplus_threshold(w) is not None for w in users)

    def _lerp_part(self, node) -> bool:
        """A Where of ``torch.lerp`` (:meth:`_lerp_where`), or the Less (and the Abs
        before it) that only such Wheres read."""
        if node.op_type == "Where":
            return self._lerp_where(node) is not None
        if node.op_type not in ("Less", "Abs"):
            return False
        users = self.consumers.get(node.output[0], [])
        return bool(users) and node.output[0] not in self.graph_outputs and \
            all(self._lerp_part(u) if node.op_type == "Abs" and u.op_type == "Less" else
                u.op_type == "Where" and self._lerp_where(u) is not None
                and u.input[0] == node.output[0] for u in users)

    def _known(self, node) -> bool:
        if node.domain not in ("", "ai.onnx") or getattr(self, f"op_{node.op_type}", None) is None:
            return False
        if node.op_type == "Erf":  # only inside GELU: Erf -> Add -> Mul
            adds = self.consumers.get(node.output[0], [])
            return bool(adds) and all(
                a.op_type == "Add" and all(m.op_type == "Mul" for m in self.consumers.get(a.output[0], []))
                for a in adds
            )
        return True

    def _unsupported(self, node):
        raise UnsupportedLayerError(
            f"ONNX node {_label(node)} has unsupported op {node.op_type!r}"
            f"{' (domain ' + node.domain + ')' if node.domain not in ('', 'ai.onnx') else ''}; "
            f"supported: {', '.join(SUPPORTED_OPS)} (and {', '.join(FOLDED_OPS)} where folded)"
        )

    def refuse(self, node, why: str):
        raise UnsupportedLayerError(f"ONNX node {_label(node)} ({node.op_type}): {why}")

"""The table of ATen rules: :data:`ATEN_OPS` (op -> rule), :data:`STAT_OPS` (ops
that map statistics to statistics) and the lookup that gives in-place ops their
out-of-place twin's rule.  A new ATen op is one entry here (its rule in
:mod:`.aten_layers` or :mod:`.aten_elementwise`).
"""

from __future__ import annotations

from .aten_elementwise import (_add, _batch_norm, _clamp_nonneg, _div, _group_norm, _identity,
                               _layer_norm, _leaky_relu, _monotone, _mul, _neg, _nonmonotone,
                               _prelu, _refuse, _shape_rule, _statistic)
from .aten_layers import (_adaptive, _attention, _avg_pool, _batch_norm_layer, _bmm,
                          _conv_layer, _conv_transpose_layer, _convolution, _group_norm_layer,
                          _instance_norm_layer, _layer_norm_layer, _linear, _matmul, _max_pool,
                          _mean, _upsample)
from .aten_values import aten


def _rule(target):
    """The rule of an op; an in-place op (``relu_``, ``add_``) has its
    out-of-place twin's rule (the interpreter rebinds the mutated value)."""
    rule = ATEN_OPS.get(target) or ATEN_OPS.get(getattr(target, "overloadpacket", None))
    if rule is None and _inplace(target):
        twin = getattr(aten, _opname_packet(target)[:-1], None)
        overload = getattr(twin, getattr(target, "_overloadname", ""), None)
        rule = ATEN_OPS.get(overload) or ATEN_OPS.get(twin)
    return rule


def _opname_packet(target) -> str:
    packet = getattr(target, "overloadpacket", None)
    return getattr(packet, "__name__", "") if packet is not None else ""


def _inplace(target) -> bool:
    name = _opname_packet(target)
    return name.endswith("_") and not name.endswith("__") and not name.startswith("_")

def _ops(names: str, rule) -> dict:
    table = {}
    for name in names.split():
        packet = getattr(aten, name, None)
        if packet is not None:
            table[packet] = rule
    return table


ATEN_OPS: dict = {
    aten.convolution.default: _convolution,
    aten.addmm.default: _matmul,
    aten.mm.default: _matmul,
    aten.linear.default: _linear,
    aten.matmul.default: _linear,
    **_ops("conv1d conv2d conv3d", _conv_layer),
    **_ops("conv_transpose1d conv_transpose2d conv_transpose3d", _conv_transpose_layer),
    aten.batch_norm.default: _batch_norm_layer,
    aten.layer_norm.default: _layer_norm_layer,
    aten.group_norm.default: _group_norm_layer,
    aten.instance_norm.default: _instance_norm_layer,
    aten.mean.dim: _mean,
    aten.mul.Tensor: _mul,
    aten.mul.Scalar: _mul,
    aten.div.Tensor: _div,
    aten.div.Scalar: _div,
    aten.neg.default: _neg,
    aten.add.Tensor: _add,
    aten.add.Scalar: _add,
    aten.sub.Tensor: _add,
    aten.sub.Scalar: _add,
    aten.rsub.Scalar: _add,
    aten.leaky_relu.default: _leaky_relu,
    aten.prelu.default: _prelu,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten.native_layer_norm.default: _layer_norm,
    aten.native_group_norm.default: _group_norm,
    **_ops("max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices",
           _max_pool),
    **_ops("avg_pool1d avg_pool2d avg_pool3d", _avg_pool),
    **_ops("_adaptive_avg_pool2d _adaptive_avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d "
           "adaptive_avg_pool3d", _adaptive("avg")),
    **_ops("adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d", _adaptive("max")),
    **_ops("upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d "
           "_upsample_nearest_exact2d _upsample_nearest_exact3d", _upsample("nearest")),
    **_ops("upsample_linear1d upsample_bilinear2d upsample_trilinear3d", _upsample("linear")),
    **_ops("relu relu6 sigmoid hardsigmoid _softmax softmax exp", _monotone(True)),
    **_ops("tanh elu celu selu softplus expm1 log1p erf _log_softmax log_softmax log_sigmoid "
           "log_sigmoid_forward logit", _monotone(False)),
    **_ops("hardtanh clamp clamp_min clamp_max", _monotone(_clamp_nonneg)),
    **_ops("gelu", _nonmonotone("GELU")),
    **_ops("silu", _nonmonotone("SiLU")),
    **_ops("hardswish", _nonmonotone("Hardswish")),
    **_ops("mish", _nonmonotone("Mish")),
    **_ops("abs", _nonmonotone("abs")),
    **_ops("clone alias detach _to_copy to type_as lift_fresh_copy contiguous dropout "
           "feature_dropout alpha_dropout feature_alpha_dropout", _identity),
    **_ops("view _unsafe_view reshape permute transpose t unsqueeze squeeze expand slice "
           "select cat concat split split_with_sizes unbind constant_pad_nd as_strided "
           "flatten narrow pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle "
           "movedim stack repeat index_select unflatten chunk swapaxes pad", _shape_rule),
    **_ops("pow sqrt rsqrt", _statistic),
    **_ops("bmm baddbmm einsum", _bmm),
    **_ops("_scaled_dot_product_flash_attention _scaled_dot_product_efficient_attention "
           "_scaled_dot_product_flash_attention_for_cpu scaled_dot_product_attention",
           _attention),
    **_ops("lstm gru rnn_tanh rnn_relu lstm_cell gru_cell", _refuse(
        "recurrent cell", "a recurrent cell has no fixed feed-forward signed graph; unroll "
        "it or analyse the convolutional part")),
}
#: ops that map statistics to statistics (SPEC §1b normalizations)
STAT_OPS = {getattr(aten, name) for name in (
    "pow sqrt rsqrt reciprocal add sub mul div mean sum avg_pool1d avg_pool2d avg_pool3d "
    "unsqueeze squeeze view _unsafe_view reshape expand permute clone alias constant_pad_nd "
    "slice select cat _to_copy exp log clamp clamp_min abs neg var var_mean pad flatten "
    "transpose contiguous to alias detach avg_pool1d").split()
    if hasattr(aten, name)}
# dropout returns (value, mask)
ATEN_OPS[aten.native_dropout.default] = lambda ip, n, args, kwargs, real: (args[0], None)

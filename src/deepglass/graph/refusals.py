"""Ops the ATen capture refuses with a reason of their own (SPEC §1b: no fixed
signed graph, or a fixed linear map not read yet), rather than the list of
what is supported.  Merged into :data:`deepglass.graph.aten.RULES`."""

from __future__ import annotations

import inspect
import os
import re
import sys

import torch

__all__ = ["REFUSED_OPS", "FRACTIONAL_POOL", "fractional_pool", "source_line"]

aten = torch.ops.aten


def source_line(n, classes: dict | None = None) -> str:
    """``" (model.py:12)"``: the last frame of the model's own code (not
    torch's, not generated code) in the exporter's stack trace of op ``n``.

    An op traced inside a region torch wraps as a sub-graph (``with
    torch.autocast(...)``) carries only the generated code's frame; it is then
    placed by its innermost module of the model's own code,
    ``" (in LiteMLA.forward, efficientvit.py:412)"``, its class read from
    ``classes`` (module path -> class) or from the name the exporter records.
    "" where neither is known."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', n.meta.get("stack_trace") or "")
    own = [(f, line) for f, line in frames if not f.startswith("<") and not _torch_file(f)]
    if own:
        return f" ({os.path.basename(own[-1][0])}:{own[-1][1]})"
    for path, cls in reversed(list((n.meta.get("nn_module_stack") or {}).values())):
        forward = getattr((classes or {}).get(path) or _class(cls), "forward", None)
        try:
            where = inspect.getsourcefile(forward), inspect.getsourcelines(forward)[1]
        except (TypeError, OSError):
            continue
        if where[0] and not _torch_file(where[0]):
            return f" (in {forward.__qualname__}, {os.path.basename(where[0])}:{where[1]})"
    return ""


def _torch_file(path: str) -> bool:
    return os.path.abspath(path).startswith(os.path.dirname(torch.__file__))


def _class(cls):
    """A module class named in ``nn_module_stack``: the class, or its
    qualified name (``"timm.models.efficientvit.LiteMLA"``) as the exporter
    may record it."""
    if not isinstance(cls, str):
        return cls
    module, _, name = cls.rpartition(".")
    return getattr(sys.modules.get(module), name, None)


def _refuse(what, why):
    def rule(ip, n, args, kwargs, real):
        ip.unsupported(n, what, why)
    return rule


def _ops(names: str, rule) -> dict:
    return {getattr(aten, name): rule for name in names.split() if hasattr(aten, name)}


#: (what, why) of fractional max pooling, with samples or without (then the
#: random draw of its samples is where the capture stops)
FRACTIONAL_POOL = (
    "fractional max pooling", "its pooling regions are drawn at random, per call and per "
    "channel (or per channel from _random_samples): not read yet; a MaxPool or "
    "AdaptiveMaxPool of the same output size is")


def fractional_pool(target) -> bool:
    """Whether an ATen op is fractional max pooling."""
    return "fractional_max_pool" in str(getattr(target, "__name__", target))


REFUSED_OPS = {
    **_ops("gt ge lt le eq ne", _refuse(
        "comparison", "a mask computed from the input's values chooses per element and per "
        "sample (a selection); an activation written with one (torch.where(x > 0, x, a * x)) "
        "is supported as its module (nn.LeakyReLU, nn.Threshold, nn.Hardshrink ...), and a "
        "mask that zeroes a value (torch.where(mask, 0, x), x.masked_fill(mask, 0)) as a "
        "gate")),
    **_ops("topk sort argsort kthvalue msort", _refuse(
        "selection by value", "the positions it keeps are chosen by the input's values (k "
        "nearest neighbours, sorting, k-max pooling): no fixed edges")),
    **_ops("lstm gru rnn_tanh rnn_relu lstm_cell gru_cell", _refuse(
        "recurrent cell", "a recurrent cell has no fixed feed-forward signed graph; unroll "
        "it or analyse the convolutional part")),
    # a fixed linear map, not read yet: said as such, with the way around it
    **_ops("cumsum cumprod logcumsumexp", _refuse(
        "cumulative sum of a value", "a prefix sum along an axis (each element the sum of "
        "those before it) is not read as a layer; a cumulative sum of a normalization's "
        "statistic (a causal layer norm) is")),
    **_ops("fractional_max_pool2d fractional_max_pool3d", _refuse(*FRACTIONAL_POOL)),
    **_ops("grid_sampler grid_sampler_2d grid_sampler_3d", _refuse(
        "resampling at a grid", "F.grid_sample reads the input at the positions a grid "
        "gives: a grid computed from the input (a spatial transformer) makes it a product "
        "of two values; a fixed grid is a fixed linear map not read yet (write a fixed "
        "resampling with F.interpolate)")),
}

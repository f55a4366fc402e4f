"""Checks of a module before its capture, and the state a capture restores.

Weights that hold NaN or inf, lazy layers, damaged batch-norm statistics;
the layers whose signed graph is not defined (SPEC §1b: recurrent cells,
attention, quantized and fake-quantized layers), refused where the forward
pass calls them; and the training flags and attributes a capture leaves as it
found them.
"""

from __future__ import annotations

import contextlib
import os
import re

import torch
import torch.nn as nn

from ..errors import DeepglassError, UnsupportedLayerError, first_line

__all__ = ["export_failure", "set_mode", "data_reads_detach", "constant_reads", "random_draw", "check_finite", "check_weights", "refused_modules", "refuse_called_modules",
           "module_mode", "attributes_kept"]


def check_finite(model: nn.Module) -> None:
    """Raise a DeepglassError naming the first parameter with NaN or inf
    entries, or buffer with NaN entries (an infinite buffer is a masking
    constant: ``-inf`` filled in before a softmax).

    One cheap reduction per tensor; the entries are counted only where it is
    not finite.
    """
    if not isinstance(model, nn.Module):
        raise DeepglassError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for kind, items in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in items:
            if isinstance(t, nn.parameter.UninitializedTensorMixin) or not (
                    t.is_floating_point() or t.is_complex()) or t.is_meta:
                continue
            if bool(torch.isfinite(t.detach().sum())):
                continue
            bad = int(((~torch.isfinite(t)) if kind == "parameter" else torch.isnan(t)).sum())
            if bad:
                what = "NaN/inf" if kind == "parameter" else "NaN"
                raise DeepglassError(f"{kind} {name!r}{_onnx_node(model, name)} has {bad} {what} "
                                     f"entries of {t.numel()}")


def _onnx_node(model: nn.Module, name: str) -> str:
    """`` (ONNX node '/c2/Conv')`` for a parameter of a module read from an ONNX
    file (whose layer names are deepglass's, not the file's), else ``""``."""
    names = getattr(model, "onnx_node_names", None)
    node = names.get(name.rpartition(".")[0]) if isinstance(names, dict) else None
    return f" (ONNX node {node!r})" if node else ""


def check_weights(model: nn.Module) -> None:
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if isinstance(p, nn.parameter.UninitializedTensorMixin):
            raise DeepglassError(f"parameter {name!r} is not initialized (a lazy layer, "
                                 "nn.LazyConv2d, ...): run the model on one sample first")
    check_finite(model)
    for name, m in model.named_modules():
        # eval-mode batch norm divides by sqrt(running_var + eps): a negative
        # variance gives NaN (or a division by zero) in the fold and the forward pass
        var, eps = getattr(m, "running_var", None), getattr(m, "eps", None)
        if isinstance(m, nn.modules.batchnorm._NormBase) and isinstance(var, torch.Tensor) \
                and var.is_floating_point() and isinstance(eps, (int, float)):
            bad = (var < 0) | (var + eps <= 0)
            if bool(bad.any()):
                raise DeepglassError(
                    f"batch norm {name!r}: {name}.running_var has {int(bad.sum())} negative "
                    f"entr{'y' if int(bad.sum()) == 1 else 'ies'} (min {float(var.min()):.4g}, "
                    f"eps {eps:g}), so sqrt(running_var + eps) is not a real positive "
                    "number; the checkpoint's batch-norm statistics are damaged")



#: modules for which the signed graph is not defined, with why (SPEC §1b)
_REFUSED_MODULES = (
    (nn.RNNBase, "a recurrent cell has no fixed feed-forward signed graph; unroll it or "
                 "analyse the convolutional part"),
    (nn.RNNCellBase, "a recurrent cell has no fixed feed-forward signed graph; unroll it or "
                     "analyse the convolutional part"),
    (nn.MultiheadAttention, "attention multiplies two values computed from the input, so "
                            "the signed graph is not defined for it"),
    (torch.ao.quantization.FakeQuantizeBase,
     "fake quantization (quantization-aware training) rounds values to an integer grid, "
     "which has no real-valued signed graph; load the float weights into the float model"),
    (torch.ao.quantization.ObserverBase,
     "a model prepared for quantization records statistics in its forward; load its "
     "float weights into the float model"),
)


def refused_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """The layers whose signed graph is not defined (recurrent cells, attention,
    quantized layers), with why; a quantized parameter is refused at once."""
    found = []
    for name, m in model.named_modules():
        why = next((w for cls, w in _REFUSED_MODULES if isinstance(m, cls)), None)
        if why is None and (".quantized" in type(m).__module__ or any(
                getattr(t, "is_quantized", False) for t in list(m.parameters(recurse=False))
                + list(m.buffers(recurse=False)))):
            why = ("a quantized model's integer arithmetic has no real-valued signed graph; "
                   "load the float model instead")
        if why is not None:
            found.append((name, m, why))
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if getattr(p, "is_quantized", False):
            raise UnsupportedLayerError(f"parameter {name!r} is quantized: a quantized model has "
                                        "no real-valued signed graph; load the float model")
    return found


def refuse_called_modules(model, inputs, forward_kwargs) -> None:
    """One clear line for a layer of :func:`refused_modules` that the forward
    pass calls (found by one eager pass with hooks, only where the model holds
    such a layer); one it holds but never calls (a CRNN's recurrent head cut
    off in ``forward``) adds nothing.  Where the forward fails before calling
    one, the capture reports the failure (a wrong input shape, say)."""
    found = refused_modules(model)
    if not found:
        return
    called: list = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, k=k: called.append(k))
             for k, (_, m, _) in enumerate(found)]
    try:
        model(*inputs, **(forward_kwargs or {}))
    except Exception:  # noqa: BLE001 - the capture reports the model's own failure
        pass
    finally:
        for h in hooks:
            h.remove()
    if called:
        name, m, why = found[min(called)]
        raise UnsupportedLayerError(
            f"unsupported layer {name or type(m).__name__!r} ({type(m).__name__}): {why}")


def set_mode(model: nn.Module, training: bool = False) -> None:
    """``model.train(training)``, where the module allows it: the module of an
    ``ExportedProgram`` (``ep.module()``) keeps the mode it was exported in."""
    try:
        model.train(training)
    except NotImplementedError:
        pass


@contextlib.contextmanager
def module_mode(model: nn.Module, training: bool = False):
    """``model`` in eval (or train) mode inside the block, and afterwards every
    submodule's own flag as it was: ``model.train(was)`` would reset a frozen
    batch norm inside a training network, or a network wrapped in a new
    (training) ``nn.Sequential``."""
    flags = [(m, m.training) for m in model.modules()]      # parents before children
    set_mode(model, training)
    try:
        yield model
    finally:
        for m, flag in flags:
            if type(m).train is not nn.Module.train and m.training != flag:
                m.train(flag)   # its own train() (escnn's drops the buffers eval made)
            m.training = flag


@contextlib.contextmanager
def attributes_kept(model: nn.Module):
    """Restore every submodule's attributes after a capture: a forward that
    caches tensors on its module (``self.anchors = ...``, a detector's head)
    would otherwise keep the capture's fake or traced values."""
    saved = [(m, dict(m.__dict__), {k: dict(getattr(m, k)) for k in
                                    ("_parameters", "_buffers", "_modules")})
             for m in model.modules()]
    try:
        yield
    finally:
        for m, attrs, tables in saved:
            for k in [k for k in m.__dict__ if k not in attrs]:
                del m.__dict__[k]
            for k, v in attrs.items():
                if m.__dict__.get(k, _MISSING) is not v:
                    m.__dict__[k] = v
            for k, table in tables.items():
                now = getattr(m, k)
                if now.keys() != table.keys() or any(now[j] is not v for j, v in table.items()):
                    now.clear()
                    now.update(table)


_MISSING = object()


@contextlib.contextmanager
def identity_hashes(model: nn.Module):
    """Submodules hashed by identity during a capture, as ``nn.Module`` does:
    torch.export keeps modules in sets while their tensors are fake, and a
    class whose ``__hash__`` reads tensor data (escnn's basis expansions)
    fails there.  The classes' own ``__hash__`` is restored after."""
    changed = {}
    for cls in {type(m) for m in model.modules()}:
        if cls.__hash__ is not nn.Module.__hash__:     # (None: __eq__ without __hash__)
            changed[cls] = cls.__dict__.get("__hash__", _MISSING)
            cls.__hash__ = nn.Module.__hash__
    try:
        yield
    finally:
        for cls, h in changed.items():
            if h is _MISSING:
                del cls.__hash__
            else:
                cls.__hash__ = h


def random_draw(target) -> bool:
    """Whether an ATen op draws random numbers (torch tags it
    ``nondeterministic_seeded``: ``randn``, ``normal_`` and its functional
    form, ``bernoulli`` ...): a network that samples at inference (a VAE's
    reparameterization, noise injection) has no fixed signed graph.  Dropout
    and RReLU have rules of their own (their inference forms)."""
    return torch.Tag.nondeterministic_seeded in getattr(target, "tags", ())


RANDOM_WHY = ("it draws random numbers at inference (a sample, as a VAE's reparameterization "
              "or injected noise): no fixed signed graph; capture the deterministic part "
              "(e.g. the posterior's mean)")
#: the usual cause of a tensor's data changed inside forward, and the way out
DATA_WRITTEN = ("usually a parameter's .data set or changed in place inside forward, a "
                "constraint such as self.w.data.clamp_(0): apply it outside forward, after "
                "each optimizer step, or with torch.nn.utils.parametrize")


@contextlib.contextmanager
def data_reads_detach():
    """While a capture traces the forward: ``x.data`` reads as ``x.detach()``,
    the same value at inference (MONAI's option-A shortcut writes
    ``torch.cat([out.data, zeros])``), which ``torch.export`` records where it
    cannot trace ``.data``; writing ``x.data = v`` is refused (the capture
    would read the value before the write).  Restored after."""
    base, own = torch._C.TensorBase.data, torch.Tensor.__dict__.get("data")

    def written(self, value):
        raise RuntimeError(f"a tensor's .data is set inside forward ({DATA_WRITTEN})")
    torch.Tensor.data = property(lambda self: self.detach(), written, doc=base.__doc__)
    try:
        yield
    finally:
        if own is None:
            del torch.Tensor.data
        else:
            torch.Tensor.data = own


#: factories whose value is fixed by their Python-number arguments
_CONSTANT_FACTORIES = ("arange", "linspace", "tensor", "as_tensor")


@contextlib.contextmanager
def constant_reads():
    """While a capture traces the forward: a tensor made from Python numbers
    only (``torch.arange(1, x.dim())``, ``torch.tensor([2, 3])``) reads back
    with ``.tolist()`` / ``.item()`` as its numbers.

    The exporter traces with values unknown, so such a read became an
    unknown integer and the op it decides (asteroid's global layer norm:
    ``x.mean(dim=torch.arange(1, x.dim()).tolist())``) was refused as
    data-dependent; the numbers do not depend on the input, so they are
    computed once, outside the trace.  A tensor made from a tensor or from a
    size that is not a number yet is traced as before.  Restored after."""
    from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily

    def numbers(args) -> bool:
        if isinstance(args, (list, tuple)):
            return all(numbers(a) for a in args)
        if isinstance(args, dict):
            return numbers(list(args.values()))
        return not isinstance(args, (torch.Tensor, torch.SymInt, torch.SymFloat, torch.SymBool))

    def remembering(factory):
        def made(*args, **kwargs):
            out = factory(*args, **kwargs)
            if isinstance(out, FakeTensor) and numbers(args) and numbers(kwargs):
                with unset_fake_temporarily():
                    out._deepglass_value = factory(*args, **kwargs).tolist()
            return out
        return made

    def read(method):
        def value(self):
            known = getattr(self, "_deepglass_value", None)
            return method(self) if known is None else known
        return value

    saved = {name: getattr(torch, name) for name in _CONSTANT_FACTORIES}
    reads = {name: FakeTensor.__dict__.get(name) for name in ("tolist", "item")}
    for name, factory in saved.items():
        setattr(torch, name, remembering(factory))
    for name in reads:
        setattr(FakeTensor, name, read(getattr(FakeTensor, name)))
    try:
        yield
    finally:
        for name, factory in saved.items():
            setattr(torch, name, factory)
        for name, method in reads.items():
            if method is None:
                delattr(FakeTensor, name)
            else:
                setattr(FakeTensor, name, method)


def export_failure(exc: Exception, model: nn.Module, kwargs: dict | None) -> str:
    """The one-line message of torch.export's failure ``exc``: its first line,
    where in the user's code it happened, and for a number read from a
    tensor's data what to do (and why a tensor in ``forward_kwargs``, or an
    e2cnn / escnn module, leads there)."""
    msg = first_line(exc)
    # where in the user's code (the exporter names the call below its message)
    at = re.search(r'raised this error:\s*File "([^"]+)", line (\d+), in (\w+)', str(exc))
    where = f" at {os.path.basename(at[1])}:{at[2]} in {at[3]}" if at else ""
    if "data-dependent" not in msg:
        return msg + (f" ({where.strip()})" if where else "")
    msg += (f" ({'' if not where else where.strip() + ': '}a number read from a "
            "tensor's data, .item() / .tolist() / int(tensor), decides the "
            "computation: compute it from shapes, x.dim() or x.shape, or pass it in "
            "forward_kwargs; a check of the values there, assert (a == b).all(), "
            "is one too: remove it, or patch it out for the capture)")
    if any(isinstance(v, torch.Tensor) for v in (kwargs or {}).values()):
        msg += ("; a tensor in forward_kwargs is held fixed, but its values cannot "
                "decide Python control flow (if t > 5): give a number there")
    if any(type(m).__module__.split(".")[0] in ("e2cnn", "escnn") for m in model.modules()):
        # their modules slice by integer buffers; export() writes plain torch
        msg += ("; an e2cnn / escnn network: capture net.export(), the same network "
                "in plain torch modules")
    return msg

"""Load a network from the zoo or from a file, ready for tracing.

:func:`load_model` accepts

- a zoo name (:func:`deepglass.zoo.names`), ``timm:NAME`` or ``MODULE:CLASS(args)``
  (a class of the user's own code or of a library, :mod:`deepglass.zoo.user_arch`),
  built with random weights (``seed``);
- an ``nn.Module`` instance (e.g. a torchvision model), returned as is;
- a state dict (``.pt`` / ``.pth`` / ``.bin`` read with
  ``torch.load(weights_only=True)``, or ``.safetensors``) for the
  architecture named by ``arch``: a zoo name, ``timm:NAME``, or a class of the
  user's own code, ``MODULE:CLASS`` (:mod:`deepglass.zoo.user_arch`);
- a TorchScript archive (``torch.jit.save``, scripted or traced), converted
  through ONNX to an fx ``GraphModule`` (:mod:`deepglass.zoo.torchscript`; its
  input shape must be given), or with ``arch`` its weights moved into that
  architecture;
- an ONNX file (recognized by its content, whatever its name), converted to an
  equivalent fx ``GraphModule`` (:mod:`deepglass.zoo.onnx_import`);
- a whole pickled module (``torch.save(model)``) only with ``trust_pickle=True``,
  because unpickling runs arbitrary code.

Every model comes back in eval mode with finite parameters (checked) and a
``default_input_shape`` attribute when one is known.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import DeepglassError, first_line
from ..files import os_error
from ..graph.model_checks import set_mode
from ..graph.trace import check_finite
from . import registry
from .user_arch import build_user_arch, is_user_arch, names_user_code

__all__ = ["load_model", "load_state_dict_file", "check_finite", "fit_state_dict"]

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
#: key prefixes of wrapped modules, removed from a state dict whose every key has one
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _shape_arg(input_shape):
    """One input's shape as a tuple of ints, several inputs' as a tuple of them."""
    if input_shape is None:
        return None
    if isinstance(input_shape, (list, tuple)) and input_shape and \
            all(isinstance(s, (list, tuple)) for s in input_shape):
        shapes = tuple(_shape_arg(s) for s in input_shape)
        return shapes[0] if len(shapes) == 1 else shapes
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise DeepglassError(f"input_shape must be a sequence of positive integers (C, H, W), got {input_shape!r}") from None
    if any(s <= 0 for s in shape) or any(float(s) != float(t) for s, t in zip(shape, input_shape)):
        raise DeepglassError(f"input_shape must be a sequence of positive integers (C, H, W), got {input_shape!r}")
    return shape


def _exists(path: Path) -> bool:
    """``path.exists()``, False for a name no file can have (longer than the
    file system allows: a long ``MODULE:CLASS(args)``)."""
    try:
        return path.exists()
    except OSError:
        return False


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _extract_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not isinstance(obj.get("_metadata", 0), torch.Tensor):
        # (neuraloperator's models keep their construction arguments there)
        obj = {k: v for k, v in obj.items() if k != "_metadata"}
    if isinstance(obj, Mapping) and any("_packed_params" in str(k) or
                                        getattr(v, "is_quantized", False)
                                        for k, v in obj.items()):
        raise DeepglassError(
            f"{path} is the state dict of a quantized model (int8 parameters): its "
            "integer arithmetic has no signed graph here; give the float model's weights")
    if _is_state_dict(obj):
        sd = dict(obj)
    elif isinstance(obj, Mapping) and any(_is_state_dict(obj.get(k)) for k in _CHECKPOINT_KEYS):
        sd = dict(next(obj[k] for k in _CHECKPOINT_KEYS if _is_state_dict(obj.get(k))))
    else:
        raise DeepglassError(
            f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of parameter names to tensors)"
        )
    # wrappers that prefix every key: nn.DataParallel / DistributedDataParallel
    # ("module."), torch.compile ("_orig_mod."), in either order; an averaged
    # model (torch.optim.swa_utils.AveragedModel, EMA) adds its count
    if "n_averaged" in sd and all(k.startswith("module.") for k in sd if k != "n_averaged"):
        sd.pop("n_averaged")
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                stripped = True
    return sd


def _plain_weights(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> dict:
    """``state`` with the reparametrized weights a plain module expects made
    plain: ``X_orig * X_mask`` (``torch.nn.utils.prune`` before ``prune.remove``)
    and weight norm (``parametrizations.X.original0/1``, or the older ``X_g`` /
    ``X_v``: ``g v / ||v||``, the norm over the axes where ``g`` has size 1)."""
    state = dict(state)
    guessed = []                 # parametrizations read as weight norm (their keys say no more)
    for k in own:
        if k in state:
            continue
        head, _, name = k.rpartition(".")
        pre = f"{head}." if head else ""
        if f"{k}_orig" in state and f"{k}_mask" in state:
            state[k] = state.pop(f"{k}_orig") * state.pop(f"{k}_mask")
            continue
        par = f"{pre}parametrizations.{name}.original"
        pairs = ((f"{par}0", f"{par}1"), (f"{k}_g", f"{k}_v"))
        for g_key, v_key in pairs:
            g, v = state.get(g_key), state.get(v_key)
            # weight norm's g: v's shape with size 1 on every axis but at most one
            # (dim=None: a scalar); another two-tensor parametrization is no weight norm
            if g is None or v is None or not (g.ndim == 0 or (
                    g.ndim == v.ndim and sum(a != 1 for a in g.shape) <= 1
                    and all(a in (1, b) for a, b in zip(g.shape, v.shape)))):
                continue
            axes = [d for d in range(v.ndim) if g.ndim == 0 or g.shape[d] == 1]
            norm = v.pow(2).sum(dim=axes, keepdim=True).sqrt() if axes else v.abs()
            state[k] = g * v / norm
            del state[g_key], state[v_key]
            if g_key.startswith(par):
                guessed.append(k)
            break
    if guessed:
        warnings.warn(
            f"the state dict holds two-tensor parametrizations (original0 / original1) of "
            f"{_first(guessed)}; read as weight norm, g v / ||v||: if they are another "
            "parametrization, register it on the architecture (torch.nn.utils.parametrize) "
            "so that the state dict loads as it is", UserWarning, stacklevel=3)
    return state


def _first(items, n: int = 3) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], arch: str, ignore_prefixes=()) -> None:
    """Load ``state`` into ``model`` strictly, or raise one line naming the offending keys."""
    own = model.state_dict()
    state = _plain_weights({
        k: v for k, v in state.items() if k in own or not any(k.startswith(p) for p in ignore_prefixes)
    }, own)
    # a prefix every key has and the architecture's keys do not (a training
    # framework's wrapper attribute, Lightning's "model."): kept only if the
    # state dict then fits exactly
    if not set(state) <= set(own) and all("." in k for k in state) and \
            len({k.split(".", 1)[0] for k in state}) == 1:
        inner = _plain_weights({k.split(".", 1)[1]: v for k, v in state.items()}, own)
        needed = {k for k in own if not k.endswith("num_batches_tracked")}
        if needed <= set(inner) <= set(own):
            state = inner
    # num_batches_tracked is bookkeeping that older checkpoints lack; an entry
    # that is no tensor (neuraloperator's _metadata) is the model's own, kept
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and isinstance(own[k], torch.Tensor)]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} (file {list(state[k].shape)} vs model {list(own[k].shape)})"
        for k in own
        if k in state and isinstance(own[k], torch.Tensor) and
        tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_first(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_first(shapes)}")
        raise DeepglassError(f"the state dict does not fit architecture {arch!r}: " + "; ".join(parts))
    for k in own:
        if k not in state:
            state[k] = own[k]
    model.load_state_dict(state, strict=True)


def _sniff(path: Path) -> str:
    """File kind from the extension and the content: onnx, safetensors, torchscript,
    export (a ``torch.export.save`` archive, ``.pt2``) or torch."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:      # unreadable (permissions), a directory
        raise os_error(path, exc, "read") from None
    if suffix == ".safetensors" or (len(head) > 9 and head[8:9] == b"{" and not head.startswith(b"PK")):
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for n in zf.namelist():
                tail = n.split("/", 1)[-1]
                if tail.startswith("code/") or tail == "constants.pkl":
                    return "torchscript"
                if tail == "archive_format" or tail.startswith("models/") and tail.endswith(".json"):
                    return "export"
        return "torch"
    return "onnx" if _is_onnx(path) else "torch"


#: ModelProto's fields (number: wire type; 0 varint, 2 length-delimited)
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}


def _is_onnx(path: Path) -> bool:
    """Whether ``path`` holds an ONNX ``ModelProto`` whatever its name: its
    top-level protobuf fields, read without parsing their contents, are
    ModelProto's, starting with ``ir_version`` (as every exporter writes it)
    and holding a ``graph``."""
    def varint(fh):
        value = 0
        for shift in range(0, 64, 7):
            b = fh.read(1)
            if not b:
                return None
            value |= (b[0] & 0x7F) << shift
            if b[0] < 0x80:
                return value
        return None

    size = path.stat().st_size
    with open(path, "rb") as fh:
        for k in range(64):
            tag = varint(fh)
            if tag is None:
                return False
            field, wire = tag >> 3, tag & 7
            if _ONNX_FIELDS.get(field) != wire or (k == 0 and field != 1):
                return False
            n = varint(fh)
            if n is None:
                return False
            if field == 7:
                return fh.tell() + n <= size
            if wire == 2:
                if fh.tell() + n > size:
                    return False
                fh.seek(n, os.SEEK_CUR)
    return False


def load_state_dict_file(path: str | os.PathLike, trust_pickle: bool = False):
    """Read ``path`` as a state dict, or (with ``trust_pickle``) a pickled object.

    Returns a ``dict[str, Tensor]`` for state dicts and checkpoints; with
    ``trust_pickle=True`` a pickled ``nn.Module`` is returned as such.
    """
    path = Path(path)
    kind = _sniff(path)
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:
            raise DeepglassError(f"cannot read safetensors file {path}: {first_line(exc)}") from None
        return _extract_state_dict(state, path)     # the wrappers' prefixes, as torch files
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
        return _extract_state_dict(obj, path)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Unsupported operand" in message and _starts_with(path, b"\x80"):
            # a pickle stream (PROTO opcode first) that torch.save did not frame
            raise DeepglassError(
                f"{path} is a plain Python pickle, not a file written by torch.save or safetensors; "
                "save the weights with torch.save(model.state_dict(), PATH)") from None
        if "Unsupported operand" in message:   # a first byte that is no pickle opcode
            raise DeepglassError(f"cannot read {path}: not a PyTorch checkpoint, safetensors, "
                                 "TorchScript or ONNX file") from None
        if "Unsupported global" not in message and "GLOBAL" not in message:
            raise DeepglassError(f"cannot read {path} as a PyTorch file: {_unpickler_reason(message)}") from None
        if not trust_pickle:
            raise DeepglassError(
                f"{path} holds pickled Python objects (not only tensors), and unpickling can run arbitrary code; "
                "pass --trust-pickle (trust_pickle=True) only if you trust this file"
            ) from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise DeepglassError(f"cannot unpickle {path}: {first_line(exc2)}") from None
        if isinstance(obj, nn.Module):
            return obj
        if isinstance(obj, Mapping):    # a checkpoint holding the module itself (YOLOv5's)
            for k in _CHECKPOINT_KEYS:
                if isinstance(obj.get(k), nn.Module):
                    return obj[k]
        return _extract_state_dict(obj, path)
    except DeepglassError:
        raise
    except Exception as exc:
        why = first_line(exc)
        if len(why) < 8:  # e.g. KeyError(101) from a stray first byte: not informative
            why = "not a PyTorch checkpoint, safetensors, TorchScript or ONNX file"
        raise DeepglassError(f"cannot read {path} as a PyTorch file: {why}") from None


def _unpickler_reason(message: str) -> str:
    """The informative part of torch's weights-only unpickler message."""
    _, marker, rest = message.partition("WeightsUnpickler error:")
    for line in (rest if marker else message).splitlines():
        if line.strip():
            return line.strip()
    return "not a PyTorch file"


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(magic)) == magic


def _attach_shape(model: nn.Module, shape: tuple[int, ...] | None) -> None:
    if shape is None:
        return
    try:
        model.default_input_shape = tuple(shape)
    except (AttributeError, RuntimeError, TypeError):  # e.g. a frozen ScriptModule
        pass


def load_model(
    name_or_path,
    *,
    arch: str | None = None,
    trust_pickle: bool = False,
    input_shape=None,
    pretrained: bool | None = None,
    seed: int = 0,
) -> nn.Module:
    """Load a network (see the module docstring for the accepted sources).

    Parameters
    ----------
    name_or_path : str, os.PathLike or nn.Module
        A zoo name, ``timm:NAME``, ``MODULE:CLASS(args)`` (random init), a file, or
        a module.
    arch : str, optional
        Architecture that a state dict (or a TorchScript file's weights) is
        loaded into; required for state dicts.  A zoo name or ``timm:NAME``
        (the number of classes is read from the checkpoint's last layer), or
        ``MODULE:CLASS`` for a class of the user's own code, with literal
        arguments if it needs them (``"pkg.models:Net"``, ``"model.py:Net"``,
        ``"pkg.models:Net('tiny')"``; :func:`deepglass.zoo.user_arch.build_user_arch`).
    trust_pickle : bool
        Allow unpickling arbitrary Python objects (a whole saved module).
    input_shape : sequence of int, or a sequence of them, optional
        Input shape without the batch dimension (one per input for a network
        of several inputs); overrides the known default, and is required for
        ONNX graphs with symbolic non-batch dimensions.
    pretrained : bool, optional
        For a zoo name: trained weights (only for :func:`deepglass.zoo.registry.trainable`
        networks).  Default: trained where the zoo can train, else random.
    seed : int
        Seed of the zoo network's initialization or training.

    Returns
    -------
    torch.nn.Module
        In eval mode, with finite parameters and ``default_input_shape`` when known.
    """
    shape = _shape_arg(input_shape)
    if isinstance(name_or_path, nn.Module):
        model = name_or_path
        default = getattr(model, "default_input_shape", None)
    else:
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise DeepglassError(f"expected a zoo name, a file path or an nn.Module, got {type(name_or_path).__name__}")
        if not str(name_or_path).strip():
            raise DeepglassError("the model is an empty name: give a zoo name, a file path, "
                                 "timm:NAME or MODULE:CLASS")
        path = Path(name_or_path).expanduser()
        if isinstance(name_or_path, str) and name_or_path.startswith("timm:") \
                and not _exists(path):
            if arch is not None:
                raise DeepglassError(f"arch={arch!r} conflicts with {name_or_path!r}; give a "
                                     "weights file with arch='timm:NAME' instead")
            model, default = timm_model(name_or_path[5:], None, seed)
        elif isinstance(name_or_path, str) and name_or_path in registry.ENTRIES and not _exists(path):
            if arch is not None and arch != name_or_path:
                raise DeepglassError(f"arch={arch!r} conflicts with zoo network {name_or_path!r}")
            e = registry.entry(name_or_path)
            want = (e.train_spec is not None) if pretrained is None else pretrained
            model = registry.get(name_or_path, pretrained=want, seed=seed)
            default = e.input_shape
        elif isinstance(name_or_path, str) and names_user_code(name_or_path) and not _exists(path):
            if arch is not None:
                raise DeepglassError(f"arch={arch!r} conflicts with {name_or_path!r}; give a "
                                     f"weights file with arch={name_or_path!r} instead")
            model, default = build_user_arch(name_or_path, seed), None   # random init, seeded
        elif not _exists(path):
            raise DeepglassError(f"no such file or zoo network: {str(name_or_path)!r} (zoo: "
                                 f"{', '.join(registry.names())}; or timm:NAME, MODULE:CLASS)")
        elif path.is_dir():
            raise DeepglassError(f"{path} is a directory, not a model file")
        elif path.stat().st_size == 0:
            raise DeepglassError(f"{path} is an empty file, not a model")
        else:
            model, default = _load_file(path, arch, trust_pickle, shape, seed)
    if not isinstance(model, nn.Module):  # pragma: no cover - defensive
        raise DeepglassError(f"{name_or_path!r} did not give an nn.Module")
    set_mode(model, training=False)
    check_finite(model)
    _attach_shape(model, shape if shape is not None else default)
    return model


def _load_file(path: Path, arch: str | None, trust_pickle: bool, shape, seed: int):
    if path.suffix == ".py":
        raise DeepglassError(f"{path} is Python code, not a model file: name what builds the "
                             f"network in it, {path}:CLASS (e.g. {path}:Net, random init), or "
                             f"give a weights file with --arch {path}:CLASS")
    kind = _sniff(path)
    if kind == "onnx":
        if arch is not None:     # the file holds its architecture; arch would be ignored
            raise DeepglassError(f"{path} is an ONNX model (its own architecture); "
                                 f"arch={arch!r} applies to state dicts and TorchScript only")
        from .onnx_import import load_onnx

        model = load_onnx(path, input_shape=shape)
        return model, model.default_input_shape
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                # PyTorch's notice that TorchScript is deprecated: nothing the user can act on
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated",
                                        category=FutureWarning)
                model = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise DeepglassError(f"cannot read TorchScript file {path}: {first_line(exc)}") from None
        if arch is not None:
            # its weights into that architecture (a Python module the capture traces)
            return _into_arch(dict(model.state_dict()), arch, seed)
        if shape is None:
            raise DeepglassError(f"{path} is a TorchScript archive, which does not store its input "
                                 "size: give input_shape= (--input-shape), or arch= (--arch) to "
                                 "load its weights into an architecture")
        from .torchscript import torchscript_to_module

        model = torchscript_to_module(model, shape, str(path))
        return model, model.default_input_shape
    if kind == "export":
        return _load_exported(path, arch, seed, trust_pickle)
    obj = load_state_dict_file(path, trust_pickle=trust_pickle)
    if isinstance(obj, nn.Module):
        if arch is not None:
            raise DeepglassError(f"{path} holds a whole module; arch={arch!r} applies to state dicts only")
        return obj, getattr(obj, "default_input_shape", None)
    if arch is None:
        raise DeepglassError(
            f"{path} is a state dict: name its architecture with arch= (--arch): one of "
            f"{', '.join(registry.names())}, timm:NAME, or the class of your own code that "
            "built it, MODULE:CLASS (e.g. 'mypackage.models:Net' or 'model.py:Net(width=2)'); "
            "or save the whole module (torch.save(model)) and load it with --trust-pickle"
        )
    return _into_arch(obj, arch, seed)


def _load_exported(path: Path, arch: str | None, seed: int, trust_pickle: bool):
    """A ``torch.export.save`` archive: its program's module (captured again as
    it is, in the mode it was exported in), or its weights in ``arch``; the input
    shape is that of the example it was exported with, less the batch axis.
    ``torch.export.load`` unpickles the archive's weights and constants, hence
    ``trust_pickle``."""
    if not trust_pickle:
        raise DeepglassError(
            f"{path} is a torch.export archive, whose reading unpickles Python objects, and "
            "unpickling can run arbitrary code; pass --trust-pickle (trust_pickle=True) only "
            "if you trust this file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.load(str(path))
    except Exception as exc:
        raise DeepglassError(f"cannot read the torch.export archive {path}: "
                             f"{first_line(exc)}") from None
    if arch is not None:
        return _into_arch(dict(ep.state_dict), arch, seed)
    from torch.export.graph_signature import InputKind

    args, kwargs = ep.example_inputs or ((), {})
    if kwargs or not all(isinstance(a, torch.Tensor) for a in args):
        raise DeepglassError(f"{path} was exported with keyword or non-tensor inputs: "
                             "deepglass feeds the network tensors, in order; export it with "
                             "tensor inputs only, given by position (or give arch= / --arch to "
                             "load its weights)")
    users = {s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT}
    shapes = [tuple(n.meta["val"].shape) for n in ep.graph.nodes
              if n.op == "placeholder" and n.name in users and "val" in n.meta]
    if any(not all(isinstance(d, int) for d in s) or not s or s[0] != 1 for s in shapes):
        given = ";".join(",".join(map(str, s)) for s in shapes)
        raise DeepglassError(f"{path} was exported for inputs of shape {given}: deepglass runs "
                             "one sample, so export the model with a batch of 1 (and static "
                             "sample shapes), or give arch= (--arch) to load its weights")
    samples = [s[1:] for s in shapes]
    return ep.module(), (samples[0] if len(samples) == 1 else samples) if samples else None


def timm_model(name: str, state: dict | None = None, seed: int = 0):
    """``timm.create_model(name)`` with random initialization (nothing is
    downloaded), holding ``state`` when given (a local weights file); returns the
    model and its default input shape (timm's ``pretrained_cfg``)."""
    try:
        import timm
    except Exception as exc:  # not installed, or its torchvision import fails
        raise DeepglassError(f"timm:{name} needs the timm package, which does not import "
                             f"here: {first_line(exc)}") from None
    if name not in timm.list_models():
        raise DeepglassError(f"timm has no model {name!r} (see timm.list_models())")
    torch.manual_seed(seed)
    kwargs = {}
    if state is not None:
        heads = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
        if heads:
            kwargs["num_classes"] = int(heads[-1].shape[0])
    model = timm.create_model(name, pretrained=False, **kwargs)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise DeepglassError(f"the weights do not fit timm:{name}: {first_line(exc)}") from None
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return model, tuple(cfg.get("input_size", ())) or None


def _into_arch(state: dict[str, torch.Tensor], arch: str, seed: int):
    """Architecture ``arch`` holding ``state`` and its default input shape: a zoo
    network (the class count read from the last layer), ``timm:NAME`` or
    ``MODULE:CLASS``."""
    if arch.startswith("timm:"):
        return timm_model(arch[5:], state, seed)
    if is_user_arch(arch):
        model = build_user_arch(arch, seed)
        fit_state_dict(model, state, arch)
        return model, getattr(model, "default_input_shape", None)
    if arch not in registry.ENTRIES:
        raise DeepglassError(f"unknown architecture {arch!r}: a zoo network "
                             f"({', '.join(registry.names())}), timm:NAME, or MODULE:CLASS "
                             "(a class of your own code, e.g. 'mypackage.models:Net')")
    e = registry.entry(arch)
    kwargs = {}
    head = state.get(e.classifier_key)
    if isinstance(head, torch.Tensor) and head.dim() >= 1:
        kwargs["num_classes"] = int(head.shape[0])
    model = registry.get(arch, seed=seed, **kwargs)
    fit_state_dict(model, state, arch, e.ignore_prefixes)
    return model, e.input_shape

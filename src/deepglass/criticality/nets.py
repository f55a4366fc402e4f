"""The reference nets of paper 002 and their training (SPEC §7).

- ``feedforward``: dense ReLU net with hidden widths 500-400-200-200;
- ``cnn``: three 3x3 convolutions (32, 64, 64 channels, ReLU, 2x2 max-pool
  with ``ceil_mode``) and three dense layers (256, 128, classes);
- ``autoencoder``: one hidden ReLU layer of 500 units, linear decoder, trained
  to reconstruct its input (mean squared error).

All are trained with Adam and cross entropy (the autoencoder: MSE), as in the
paper.  Training is deterministic for a seed: the initialization is seeded,
epoch ``e`` shuffles with a generator seeded by ``(seed, e)``, training runs
on one torch thread (the gradient sums of a multi-threaded backward pass
depend on the thread count: two threads and one gave weights 1e-8 apart after
one epoch), and a checkpoint stores the model and the optimizer state, so a
run resumed from a checkpoint continues exactly as an uninterrupted one, in
process or on a Ray worker, whatever the machine's core count (on the same
torch build and CPU kind).
"""

from __future__ import annotations

import io
import math
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..errors import DeepglassError, first_line

__all__ = ["REFERENCE_NETS", "ALIASES", "canonical_name", "build_reference_net",
           "train_reference_net", "save_checkpoint", "load_checkpoint", "checkpoint_epochs"]

REFERENCE_NETS = ("feedforward", "cnn", "autoencoder")
ALIASES = {"ff": "feedforward", "ffn": "feedforward", "fnn": "feedforward", "mlp": "feedforward",
           "conv": "cnn", "ae": "autoencoder"}


def canonical_name(name: str) -> str | None:
    """The reference-net name for ``name`` (or an alias), else ``None``."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    return key if key in REFERENCE_NETS else None


def _feedforward(shape, n_classes, widths=(500, 400, 200, 200)) -> nn.Module:
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    prev = int(np.prod(shape))
    for i, w in enumerate(widths, 1):
        layers += [(f"fc{i}", nn.Linear(prev, w)), (f"relu{i}", nn.ReLU())]
        prev = w
    layers.append(("out", nn.Linear(prev, n_classes)))
    net = nn.Sequential(OrderedDict(layers))
    net.observed_layers = [f"relu{i}" for i in range(1, len(widths) + 1)]
    net.task = "classify"
    return net


def _cnn(shape, n_classes, channels=(32, 64, 64), dense=(256, 128)) -> nn.Module:
    if len(shape) != 3:
        raise DeepglassError(f"the cnn needs C x H x W images, got input shape {tuple(shape)}")
    c, h, w = shape
    layers: list[tuple[str, nn.Module]] = []
    for i, ch in enumerate(channels, 1):
        layers += [(f"conv{i}", nn.Conv2d(c, ch, 3, padding=1)), (f"relu{i}", nn.ReLU()),
                   (f"pool{i}", nn.MaxPool2d(2, ceil_mode=True))]
        c, h, w = ch, math.ceil(h / 2), math.ceil(w / 2)
    layers.append(("flatten", nn.Flatten()))
    prev = c * h * w
    k = len(channels)
    for j, d in enumerate(dense, 1):
        layers += [(f"fc{j}", nn.Linear(prev, d)), (f"relu{k + j}", nn.ReLU())]
        prev = d
    layers.append(("out", nn.Linear(prev, n_classes)))
    net = nn.Sequential(OrderedDict(layers))
    net.observed_layers = [f"relu{i}" for i in range(1, k + len(dense) + 1)]
    net.task = "classify"
    return net


class AutoEncoder(nn.Module):
    """One hidden ReLU layer (``code``) between a dense encoder and decoder."""

    def __init__(self, shape, hidden: int = 500):
        super().__init__()
        d = int(np.prod(shape))
        self.shape = tuple(shape)
        self.flatten = nn.Flatten()
        self.encoder = nn.Linear(d, hidden)
        self.code = nn.ReLU()
        self.decoder = nn.Linear(hidden, d)
        self.observed_layers = ["code"]
        self.task = "reconstruct"

    def forward(self, x):
        return self.decoder(self.code(self.encoder(self.flatten(x)))).view(x.shape)


def build_reference_net(name: str, input_shape: Sequence[int], n_classes: int = 10,
                        seed: int = 0) -> nn.Module:
    """Build reference net ``name`` with a seeded PyTorch default initialization.

    The module has ``default_input_shape``, ``observed_layers`` (module paths
    of its hidden ReLUs) and ``task`` (``"classify"`` or ``"reconstruct"``).

    Parameters
    ----------
    name : str
        ``"feedforward"``, ``"cnn"``, ``"autoencoder"`` or an alias (``ff``,
        ``mlp``, ``conv``, ``ae``, ...; case-insensitive).
    input_shape : sequence of int
        Per-sample input shape, every entry >= 1 (``C x H x W`` for the cnn).
    n_classes : int, default 10
        Outputs of a classifier, >= 2 (unused by the autoencoder).
    seed : int, default 0
        Seed of the initialization (the global torch RNG is left as it was).

    Returns
    -------
    torch.nn.Module
        In eval mode, with ``reference_name`` the canonical name.

    Raises
    ------
    DeepglassError
        An unknown name, an invalid shape (not integers >= 1, or not 3-d for
        the cnn), fewer than 2 classes.

    References
    ----------
    SPEC §7 (500-400-200-200 feed-forward, 3 conv + 3 dense CNN, 500-unit
    autoencoder; paper 002).

    Examples
    --------
    >>> net = build_reference_net("ff", (1, 8, 8))
    >>> net.reference_name, net.observed_layers
    ('feedforward', ['relu1', 'relu2', 'relu3', 'relu4'])
    """
    key = canonical_name(name)
    if key is None:
        raise DeepglassError(f"unknown reference net {name!r}; choose from {', '.join(REFERENCE_NETS)}")
    try:        # a string's characters (or a float's truncation) are no shape
        shape = () if isinstance(input_shape, (str, bytes)) else tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                        for s in shape):
        raise DeepglassError(f"input_shape must be a non-empty sequence of integers >= 1, such "
                             f"as (1, 28, 28), got {input_shape!r}")
    shape = tuple(int(s) for s in shape)
    if n_classes < 2:
        raise DeepglassError(f"need at least 2 classes, got {n_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if key == "feedforward":
            net = _feedforward(shape, n_classes)
        elif key == "cnn":
            net = _cnn(shape, n_classes)
        else:
            net = AutoEncoder(shape)
    net.default_input_shape = shape
    net.reference_name = key
    return net.eval()


def checkpoint_epochs(epochs: int, every: int) -> list[int]:
    """Epochs at which a checkpoint is kept: 0 (initialization), every ``every``-th, last."""
    if epochs < 0 or every < 1:
        raise DeepglassError(f"epochs must be >= 0 and checkpoint_every >= 1 (got {epochs}, {every})")
    return sorted(set([0, epochs] + list(range(every, epochs + 1, every))))


def checkpoint_bytes(model: nn.Module, optimizer, epoch: int, metrics: dict) -> bytes:
    """Model + optimizer state serialized by ``torch.save``."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
                "epoch": int(epoch), "metrics": {k: float(v) for k, v in metrics.items()}}, buf)
    return buf.getvalue()


def save_checkpoint(path: Path, model: nn.Module, optimizer, epoch: int, metrics: dict) -> None:
    """Atomically write model + optimizer state (``torch.save``) to ``path``."""
    from ..store import atomic_write_bytes

    atomic_write_bytes(path, checkpoint_bytes(model, optimizer, epoch, metrics))


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DeepglassError(f"cannot read checkpoint {path}: {first_line(exc)}") from None


def _loss_fn(model):
    return nn.MSELoss() if getattr(model, "task", "classify") == "reconstruct" else nn.CrossEntropyLoss()


@torch.no_grad()
def evaluate(model: nn.Module, X: np.ndarray, y: np.ndarray, batch_size: int = 512) -> dict:
    """Mean loss (and accuracy for classifiers) on ``X, y``."""
    was = model.training
    model.eval()
    loss_fn = _loss_fn(model)
    tot, correct, n = 0.0, 0, len(X)
    for i in range(0, n, batch_size):
        xb = torch.from_numpy(X[i:i + batch_size])
        out = model(xb)
        if getattr(model, "task", "classify") == "reconstruct":
            tot += float(loss_fn(out, xb)) * len(xb)
        else:
            yb = torch.from_numpy(y[i:i + batch_size])
            tot += float(loss_fn(out, yb)) * len(xb)
            correct += int((out.argmax(1) == yb).sum())
    model.train(was)
    res = {"loss": tot / max(n, 1)}
    if getattr(model, "task", "classify") != "reconstruct":
        res["accuracy"] = correct / max(n, 1)
    return res


def train_reference_net(model: nn.Module, data, *, epochs: int = 20, batch_size: int = 128,
                        lr: float = 1e-3, seed: int = 0, checkpoint_every: int = 5,
                        start: dict | None = None,
                        on_checkpoint: Callable[[int, nn.Module, object, dict], None] | None = None,
                        progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Train ``model`` on ``data`` (an :class:`~deepglass.criticality.data.ImageData`) with Adam.

    Parameters
    ----------
    model : nn.Module
        A reference net (or any module with ``task``); trained in place.
    data : ImageData
        Trained on ``X_train, y_train``, evaluated on ``X_test, y_test``.
    epochs, batch_size, lr, seed : default 20, 128, 1e-3, 0
        Training settings: total epochs (>= 0, counted from 0 also when
        resuming), minibatch size (>= 1), Adam learning rate (> 0), seed of
        the per-epoch shuffles.
    checkpoint_every : int, default 5
        ``on_checkpoint`` is called at the epochs of :func:`checkpoint_epochs`
        (epoch 0 = the initialization); >= 1.
    start : dict, optional
        A checkpoint (from :func:`load_checkpoint`) to resume from; its own
        epoch is not reported to ``on_checkpoint`` again.
    on_checkpoint : callable, optional
        ``on_checkpoint(epoch, model, optimizer, metrics)``, ``metrics`` the
        test ``loss`` (and ``accuracy``).
    progress : callable, optional
        Called once per finished epoch.

    Returns
    -------
    pandas.DataFrame
        One row per epoch trained here: ``epoch, train_loss, test_loss,
        test_accuracy, seconds``.

    Raises
    ------
    DeepglassError
        An invalid setting or ``data``, or a non-finite training loss (diverged).

    Notes
    -----
    Training (and ``on_checkpoint``) runs on one torch thread, restored
    afterwards, so the weights do not depend on the thread count of the
    process (a Ray worker has one); see the module docstring.  Cost:
    ``epochs - start epoch`` passes over the training set plus one evaluation
    of the test set per epoch.
    """
    if not all(hasattr(data, a) for a in ("X_train", "y_train", "X_test", "y_test")):
        raise DeepglassError(f"data must be an ImageData (load_dataset), got {type(data).__name__}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "epochs" else 1):
            raise DeepglassError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} "
                                 f"integer, got {v!r}")
    if not lr > 0:
        raise DeepglassError(f"learning rate must be positive, got {lr}")
    marks = set(checkpoint_epochs(epochs, checkpoint_every))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = 0
    if start is not None:
        model.load_state_dict(start["model"])
        if start.get("optimizer"):
            opt.load_state_dict(start["optimizer"])
        first = int(start["epoch"])
    loss_fn = _loss_fn(model)
    recon = getattr(model, "task", "classify") == "reconstruct"
    X = torch.from_numpy(data.X_train)
    y = torch.from_numpy(data.y_train)
    rows = []
    threads = torch.get_num_threads()
    was_det = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        if start is None and 0 in marks and on_checkpoint is not None:  # a start is reported already
            on_checkpoint(0, model, opt, evaluate(model, data.X_test, data.y_test))
        for epoch in range(first + 1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch)
            perm = torch.randperm(len(X), generator=gen)
            tot = 0.0
            for i in range(0, len(X), batch_size):
                idx = perm[i:i + batch_size]
                xb = X[idx]
                out = model(xb)
                loss = loss_fn(out, xb if recon else y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(idx)
            model.eval()
            ev = evaluate(model, data.X_test, data.y_test)
            row = {"epoch": epoch, "train_loss": tot / len(X), "test_loss": ev["loss"],
                   "test_accuracy": ev.get("accuracy", np.nan),
                   "seconds": time.perf_counter() - t0}
            if not np.isfinite(row["train_loss"]):
                raise DeepglassError(f"training diverged at epoch {epoch} (loss {row['train_loss']}); "
                                     "lower the learning rate")
            rows.append(row)
            if epoch in marks and on_checkpoint is not None:
                on_checkpoint(epoch, model, opt, ev)
            if progress is not None:
                progress()
    finally:
        torch.use_deterministic_algorithms(was_det, warn_only=was_warn)
        torch.set_num_threads(threads)
    model.eval()
    return pd.DataFrame(rows, columns=["epoch", "train_loss", "test_loss", "test_accuracy", "seconds"])

"""Empirical activation probabilities of a trained ReLU student (paper 001, Fig. 2).

A teacher network ``N - N - N - 1`` with binary weights ``+-1`` and ReLU hidden
units labels random inputs ``x in {-1, +1}^N`` by the sign of its output.  A
student of the same architecture (real weights, PyTorch default initialization,
ReLU hidden units, identity output) is trained on these labels with Adam; the
activation probability ``a_l`` of hidden layer ``l`` is the fraction of
(test input, unit) pairs whose pre-activation is positive.  Repeated over
independent trials (teacher, data and student seeds), this gives the spread of
``(a1, a2)`` that sets the RAP model's activation probabilities.

Cost: O(epochs n_train N^2) multiply-adds per trial (seconds at N = 100 on CPU).

:func:`student_study` is the one call behind ``deepglass rap student``: each
trial is one unit of :func:`deepglass.runner.run_experiment` (seeded by
:func:`trial_seed`, so Ray and this process give the same numbers), with a
run directory also its figure, ``report.md`` and ``summary.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import DeepglassError, check_seed
from ..runner import Experiment, Unit, UnitOutput, run_experiment

__all__ = ["student_activations", "student_study", "StudentRun", "StudentStudy", "trial_seed",
           "LOSSES"]

LOSSES = ("abs", "hinge", "mse")


def _mlp(N: int):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(N, N), nn.ReLU(), nn.Linear(N, N), nn.ReLU(),
                         nn.Linear(N, 1))


def _hidden_active(model, x):
    """Boolean activity ``pre-activation > 0`` of the two hidden layers."""
    h1_pre = model[0](x)
    h2_pre = model[2](model[1](h1_pre))
    return h1_pre > 0, h2_pre > 0


def student_activations(N: int = 100, n_train: int = 2000, n_test: int = 2000,
                        epochs: int = 30, trials: int = 10, lr: float = 1e-3,
                        batch_size: int = 100, loss: str = "abs",
                        seed: int = 0) -> pd.DataFrame:
    """Train ReLU students on teacher data and measure their activation probabilities.

    Parameters
    ----------
    N : int, default 100
        Width of input and hidden layers (teacher and student), >= 1.
    n_train, n_test : int, default 2000
        Training / test set sizes (inputs uniform in ``{-1, +1}^N``), >= 1.
    epochs, lr, batch_size : int, float, int, default 30, 1e-3, 100
        Training schedule (Adam); integers >= 1 and ``lr > 0``.
    trials : int, default 10
        Independent repetitions (new teacher, data and student each time), >= 1.
    loss : {"abs", "hinge", "mse"}, default "abs"
        ``|y - f(x)|`` (the paper's absolute loss), ``max(0, 1 - y f(x))`` or
        ``(y - f(x))^2``, with labels ``y = sign(teacher(x))``.
    seed : int, default 0
        Non-negative; trial ``k`` is seeded :func:`trial_seed` ``(seed, k)``.

    Returns
    -------
    DataFrame
        One row per trial: ``trial, a1, a2, a1_teacher, a2_teacher, train_error,
        test_error, seconds``; ``a_l`` is measured on the test set, errors are
        sign disagreements with the teacher.

    Raises
    ------
    DeepglassError
        A count that is not an integer >= 1, ``lr <= 0``, an unknown ``loss``
        or a negative ``seed``.

    References
    ----------
    SPEC §6 (activation probabilities ``a_l``); paper 001 Fig. 2.
    """
    _check(N, n_train, n_test, epochs, trials, lr, batch_size, loss)
    return pd.DataFrame([_trial(N, n_train, n_test, epochs, lr, batch_size, loss, trial,
                                trial_seed(seed, trial)) for trial in range(int(trials))])


def _check(N, n_train, n_test, epochs, trials, lr, batch_size, loss) -> None:
    for name, v, lo in (("N", N, 1), ("n_train", n_train, 1), ("n_test", n_test, 1),
                        ("epochs", epochs, 1), ("trials", trials, 1),
                        ("batch_size", batch_size, 1)):
        if int(v) != v or v < lo:
            raise DeepglassError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not lr > 0:
        raise DeepglassError(f"lr must be > 0, got {lr!r}")
    if loss not in LOSSES:
        raise DeepglassError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def trial_seed(seed: int, trial: int) -> int:
    """The seed of trial ``trial`` (teacher, data and student) of a study seeded ``seed``.

    ``1000 seed + trial`` for ``trial < 1000`` (one-to-one there) while it stays
    below 2^63; otherwise drawn by NumPy's ``SeedSequence`` from ``(seed,
    trial)``, so trial 1000 of seed 0 is not trial 0 of seed 1, and any
    non-negative seed works (``1000 seed`` overflowed torch's seed for seeds
    near 2^63).
    """
    seed, trial = check_seed(seed), int(trial)
    if 0 <= trial < 1000 and seed * 1000 + trial < 2 ** 63:
        return seed * 1000 + trial
    return int(np.random.SeedSequence([seed, trial, 0x535455]).generate_state(1, np.uint64)[0]) >> 1


def _trial(N: int, n_train: int, n_test: int, epochs: int, lr: float, batch_size: int,
           loss: str, trial: int, seed: int) -> dict:
    """One trial: a teacher, its data and a trained student, from ``seed`` only."""
    import torch

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    teacher = _mlp(N)
    with torch.no_grad():
        for layer in (teacher[0], teacher[2], teacher[4]):
            w = torch.randint(0, 2, layer.weight.shape, generator=g).float() * 2 - 1
            layer.weight.copy_(w / np.sqrt(layer.in_features))
            layer.bias.zero_()
    x_train = torch.randint(0, 2, (n_train, N), generator=g).float() * 2 - 1
    x_test = torch.randint(0, 2, (n_test, N), generator=g).float() * 2 - 1
    with torch.no_grad():
        y_train = torch.sign(teacher(x_train)).squeeze(1)
        y_test = torch.sign(teacher(x_test)).squeeze(1)
        y_train[y_train == 0] = 1
        y_test[y_test == 0] = 1
        t1, t2 = _hidden_active(teacher, x_test)
    student = _mlp(N)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    for _ in range(int(epochs)):
        perm = torch.randperm(n_train, generator=g)
        for start in range(0, n_train, batch_size):
            idx = perm[start:start + batch_size]
            out = student(x_train[idx]).squeeze(1)
            y = y_train[idx]
            if loss == "abs":
                ell = (y - out).abs().mean()
            elif loss == "hinge":
                ell = torch.clamp(1 - y * out, min=0).mean()
            else:
                ell = ((y - out) ** 2).mean()
            opt.zero_grad()
            ell.backward()
            opt.step()
    with torch.no_grad():
        s1, s2 = _hidden_active(student, x_test)
        train_err = (torch.sign(student(x_train).squeeze(1)) != y_train).float().mean()
        test_err = (torch.sign(student(x_test).squeeze(1)) != y_test).float().mean()
    return {"trial": trial, "a1": s1.float().mean().item(), "a2": s2.float().mean().item(),
            "a1_teacher": t1.float().mean().item(), "a2_teacher": t2.float().mean().item(),
            "train_error": train_err.item(), "test_error": test_err.item(),
            "seconds": time.perf_counter() - t0}


def _compute_trial(settings: dict, payload: tuple) -> UnitOutput:
    """The runner's unit: one trial (``payload = (trial, seed)``)."""
    trial, seed = payload
    row = _trial(settings["N"], settings["n_train"], settings["n_test"], settings["epochs"],
                 settings["lr"], settings["batch_size"], settings["loss"], trial, seed)
    return UnitOutput({"activations": pd.DataFrame([row])},
                      info={"compute_seconds": row["seconds"]})


@dataclass
class StudentStudy:
    """One row per trial (``activations``, as :func:`student_activations`) of
    students of width ``N``."""

    activations: pd.DataFrame
    N: int
    resumed: int = 0        # units read back from the run directory

    def headline(self) -> dict:
        """``summary.json["rap-student"]``: medians and spreads of ``a1``, ``a2``."""
        df, n = self.activations, len(self.activations)
        return {"N": self.N, "trials": n, "a1_median": float(df.a1.median()),
                "a2_median": float(df.a2.median()),
                "a1_std": float(df.a1.std(ddof=1)) if n > 1 else 0.0,
                "a2_std": float(df.a2.std(ddof=1)) if n > 1 else 0.0,
                "test_error_mean": float(df.test_error.mean())}


@dataclass
class StudentRun(Experiment):
    """The student study as a :class:`deepglass.runner.Experiment`: one unit
    per trial (``t<trial>``), table ``activations``."""

    N: int = 100
    n_train: int = 2000
    n_test: int = 2000
    epochs: int = 30
    trials: int = 10
    lr: float = 1e-3
    batch_size: int = 100
    loss: str = "abs"
    seed: int = 0
    kind: str = "rap-student"
    tables = ("activations",)
    compute = staticmethod(_compute_trial)

    def config(self) -> dict:
        # the run directory's configuration; the batch size (which the command
        # keeps at its default) where another was given: it changes the numbers
        return {"N": self.N, "trials": self.trials, "epochs": self.epochs,
                "n_train": self.n_train, "n_test": self.n_test, "lr": self.lr,
                "loss": self.loss, "seed": self.seed,
                **({"batch_size": self.batch_size} if self.batch_size != 100 else {})}

    def units(self) -> list[Unit]:
        return [Unit(f"t{k:04d}", (k, trial_seed(self.seed, k))) for k in range(int(self.trials))]

    def shared(self) -> dict:
        return {"N": self.N, "n_train": self.n_train, "n_test": self.n_test,
                "epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size,
                "loss": self.loss}

    def finish(self, stored, run) -> StudentStudy:
        res = StudentStudy(stored.table("activations"), self.N, resumed=stored.resumed)
        if run is not None:
            from .reports import write_student_run

            write_student_run(run, res)
        return res


def student_study(N: int = 100, n_train: int = 2000, n_test: int = 2000, epochs: int = 30,
                  trials: int = 10, lr: float = 1e-3, batch_size: int = 100,
                  loss: str = "abs", seed: int = 0, *, run=None, executor=None,
                  address: str | None = None, force: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> StudentStudy:
    """:func:`student_activations` as a resumable run, one trial per unit (the
    one call behind ``deepglass rap student``).

    Same numbers as :func:`student_activations` (each trial seeded by
    :func:`trial_seed`), in this process or on Ray.

    Parameters
    ----------
    N, n_train, n_test, epochs, trials, lr, batch_size, loss, seed
        As :func:`student_activations` (same defaults and ranges).
    run : str, Path or RunDir, optional
        Run directory: finished trials are read back; it also gets
        ``activations.parquet``, ``figures/activations.png``, ``report.md``
        and ``summary.json``.
    executor, address, force, progress
        Those of :func:`deepglass.runner.run_experiment` (progress in trials).

    Returns
    -------
    StudentStudy
        ``activations`` (one row per trial) and ``N``.

    Raises
    ------
    DeepglassError
        As :func:`student_activations`.

    References
    ----------
    SPEC §6; paper 001 Fig. 2.
    """
    _check(N, n_train, n_test, epochs, trials, lr, batch_size, loss)
    exp = StudentRun(N, n_train, n_test, epochs, trials, lr, batch_size, loss, seed)
    return run_experiment(exp, run, executor, address=address, force=force, progress=progress)

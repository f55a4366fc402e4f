"""The perturbation test of near-monotonicity and its statistics: inputs pushed
along a partial order, the output alignment fraction rho and gamma (SPEC §5;
paper 000, Results "Near-monotonicity", Figs. 3-5).

Given the gauge ``(sigma_in, sigma_out)`` of the best frustration solution
(SPEC §2) and an input ``x``, draw ``eta`` with i.i.d. entries ``U(0, a)`` and
set ``x' = x + sigma_in * eta``: ``x' >= x`` in the ``sigma_in`` orthant order.
The *output alignment fraction* of the trial is

    rho(x, eta) = (1/m) #{ j : sigma_out_j (y'_j - y_j) > 0 },   y = f(x), y' = f(x').

``rho > 1/2`` is increasing near-monotonicity, ``rho < 1/2`` decreasing.  An
output that does not move (``y'_j == y_j``) counts in neither direction; a
move within the model's rounding (``|y'_j - y_j|`` at most 8 machine epsilons of
``max(|y_j|, |y'_j|)``: ``y`` and ``y'`` come from batches of other sizes) is no
move.  A trial in which no output moves has ``rho = 0``, which
SPEC's gamma counts as decreasing; its ``direction`` is 0, and a warning counts
such trials (a network whose outputs do not depend on the input there: dead
units, saturated gates; or amplitudes too small).

**gamma (SPEC §5, reconstructed).**  For a level ``1 - alpha``, gamma is the
largest value in [0, 1] such that at least a ``1 - alpha`` fraction of the
trials has ``rho >= (1 + gamma)/2`` or ``rho <= (1 - gamma)/2``.  Both
conditions say ``|2 rho - 1| >= gamma``, so with ``d_t = |2 rho_t - 1|`` sorted
in decreasing order and ``k = ceil((1 - alpha) T)`` for ``T`` trials,
``gamma = d_(k)``, the k-th largest value (:func:`alignment_gamma`): exactly
``k`` or more trials reach it and fewer than ``k`` reach anything larger.

**Amplitudes.**  The paper uses 100 amplitudes per image; its range is lost.
Default: 100 amplitudes geometric from ``1e-3`` to ``1`` times the standard
deviation of the input's entries (:func:`amplitude_grid`; ``amplitude_range``
and ``amplitude_scale`` change it; an explicit array sets them directly).

**Precision.**  A float16 / bfloat16 model runs as a float32 copy, as its graph
is captured (the widening is exact; in 16 bits the smallest pushes round away).

**Cost.**  ``B K`` forward passes (B inputs, K amplitudes) in batches of
``batch_size``, plus ``B`` clean ones.  The noise of input ``i`` comes from a
generator seeded by ``(seed, i)``, so results do not depend on the batching or
on how a run splits its inputs into units, and the nulls see the same ``eta``
as the real network (paired trials).

The protocol on the real network and its nulls, on the experiment runner, is
:mod:`deepglass.experiments.monotonicity`.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..devices import check_device
from ..errors import DeepglassError, check_count, check_seed, check_type, first_line
from ..graph.model_checks import check_finite

__all__ = ["near_monotonicity", "MonotonicityResult", "alignment_gamma", "amplitude_grid",
           "check_amplitude_range",
           "per_input_table", "gamma_table", "check_batch_memory", "as_batch", "DEFAULT_RANGE"]

DEFAULT_RANGE = (1e-3, 1.0)


# -- statistics ---------------------------------------------------------------------
def alignment_gamma(rho, alpha: float = 0.05) -> float:
    """gamma at level ``1 - alpha`` of an array of alignment fractions (SPEC §5).

    The largest gamma in [0, 1] with at least a ``1 - alpha`` fraction of the
    trials satisfying ``|2 rho - 1| >= gamma``: the ``ceil((1 - alpha) T)``-th
    largest ``|2 rho - 1|``.  O(T) (a partition).  NaN for no trials.

    Examples
    --------
    >>> alignment_gamma([1.0, 0.9, 0.1, 0.6], alpha=0.25)   # |2rho-1| = 1, .8, .8, .2
    0.8
    """
    if not 0.0 <= float(alpha) < 1.0:
        raise DeepglassError(f"alpha must be in [0, 1), got {alpha!r}")
    d = np.abs(2.0 * np.asarray(rho, dtype=np.float64).ravel() - 1.0)
    if d.size == 0:
        return float("nan")
    d = np.round(d, 12)  # rho = count/m: drop the rounding of 2 rho - 1
    k = max(1, math.ceil((1.0 - float(alpha)) * d.size - 1e-9))
    return float(np.partition(d, d.size - k)[d.size - k])


def check_amplitude_range(amplitude_range, name: str = "amplitude_range") -> tuple[float, float]:
    """``(low, high)`` of a geometric amplitude grid, finite with ``0 < low <= high``.

    Raises
    ------
    DeepglassError
        One line naming ``name`` (the CLI passes ``--amplitude-range``).
    """
    try:
        lo, hi = (float(v) for v in amplitude_range)
    except (TypeError, ValueError):
        raise DeepglassError(f"{name} must be two numbers (low, high), "
                             f"got {amplitude_range!r}") from None
    if not (math.isfinite(hi) and 0 < lo <= hi):
        raise DeepglassError(f"{name} must satisfy 0 < low <= high (finite), "
                             f"got {lo:g},{hi:g}")
    return lo, hi


def _amplitude_array(amplitudes) -> np.ndarray:
    """Given ``amplitudes`` (not a count) as floats, or one line naming them (a
    string, strings, lists of different lengths: float() would parse or fail)."""
    try:
        a = np.asarray(amplitudes)
    except ValueError:
        a = np.asarray(None)
    if a.dtype.kind not in "iuf":
        raise DeepglassError(f"amplitudes must be an int, a 1-D array or a (B, K) array of "
                             f"numbers, got {amplitudes!r:.60}")
    return a.astype(np.float64)


def n_amplitudes(amplitudes) -> int:
    """K, the number of amplitudes per input ``amplitudes`` asks for (before the
    grid is made: checked as :func:`amplitude_grid` does)."""
    if isinstance(amplitudes, (int, np.integer)) and not isinstance(amplitudes, bool):
        return int(amplitudes)
    a = _amplitude_array(amplitudes)
    return a.shape[-1] if a.ndim else 1


def amplitude_grid(x: torch.Tensor, amplitudes=100, amplitude_range=DEFAULT_RANGE,
                   amplitude_scale: str = "std") -> np.ndarray:
    """The (B, K) amplitudes ``a`` of the trials.

    ``amplitudes`` an int K: ``K`` values geometric over ``amplitude_range``,
    times the standard deviation of each input's entries (``amplitude_scale =
    "std"``; 1 for a constant input) or as they are (``"absolute"``).  A 1-D
    array: the same absolute amplitudes for every input; a (B, K) array: per
    input.
    """
    B = int(x.shape[0])
    if isinstance(amplitudes, (int, np.integer)) and not isinstance(amplitudes, bool):
        K = int(amplitudes)
        if K < 1:
            raise DeepglassError(f"amplitudes must be >= 1, got {K}")
        lo, hi = check_amplitude_range(amplitude_range)
        grid = np.geomspace(lo, hi, K) if K > 1 else np.array([hi])
        if amplitude_scale == "absolute":
            scale = np.ones(B)
        elif amplitude_scale == "std":
            scale = x.reshape(B, -1).double().std(1, unbiased=False).cpu().numpy()
            scale[~(scale > 0)] = 1.0
        else:
            raise DeepglassError(f"amplitude_scale must be 'std' or 'absolute', not {amplitude_scale!r}")
        return scale[:, None] * grid[None, :]
    a = _amplitude_array(amplitudes)
    if a.ndim == 1:
        a = np.broadcast_to(a, (B, a.size))
    if a.ndim != 2 or a.shape[0] != B or a.shape[1] < 1:
        raise DeepglassError(f"amplitudes must be an int, a 1-D array or a ({B}, K) array, "
                             f"got shape {a.shape}")
    if not (np.isfinite(a).all() and (a >= 0).all()):
        raise DeepglassError("amplitudes must be finite and >= 0")
    return np.array(a)


def per_input_table(trials: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (model, input): direction, consistency, class kept, gamma.

    ``direction`` is +1 when most trials of the input have ``rho > 1/2``, -1
    when most have ``rho < 1/2`` (0 on a tie); ``consistent`` when every trial
    of the input has the same non-zero direction; ``class_kept`` the fraction
    of trials whose predicted class equals the clean input's; ``gamma`` the
    input's own gamma (:func:`alignment_gamma` over its trials).
    """
    if not 0.0 <= float(alpha) < 1.0:
        raise DeepglassError(f"alpha must be in [0, 1), got {alpha!r}")
    keys = ["model", "input"] if "model" in trials else ["input"]
    # one vectorized pass (groupby aggregates) instead of a Python loop per input
    t = trials.assign(_d=np.round(np.abs(2.0 * trials["rho"].to_numpy() - 1.0), 12))
    g = t.groupby(keys, sort=False)
    out = g.agg(input_id=("input_id", "first"), predicted=("predicted", "first"),
                trials=("rho", "size"), rho_mean=("rho", "mean"), rho_min=("rho", "min"),
                rho_max=("rho", "max"), _dsum=("direction", "sum"), _dmin=("direction", "min"),
                _dmax=("direction", "max"), class_kept=("class_kept", "mean"))
    out["direction"] = np.sign(out.pop("_dsum")).astype(np.int64)
    dmin, dmax = out.pop("_dmin"), out.pop("_dmax")
    out["consistent"] = (dmin == dmax) & (dmin != 0)
    # per-input gamma: the k-th largest |2 rho - 1| of the group (alignment_gamma)
    ranked = t.sort_values(keys + ["_d"], ascending=[True] * len(keys) + [False], kind="stable")
    rank = ranked.groupby(keys, sort=False).cumcount().to_numpy()
    size = ranked.groupby(keys, sort=False)["_d"].transform("size").to_numpy()
    k = np.maximum(1, np.ceil((1.0 - float(alpha)) * size - 1e-9)).astype(np.int64)
    gam = ranked[rank == k - 1].set_index(keys)["_d"]
    out["gamma"] = gam.reindex(out.index).to_numpy()
    out = out.reset_index()
    cols = keys + ["input_id", "predicted", "trials", "rho_mean", "rho_min", "rho_max",
                   "direction", "consistent", "class_kept", "gamma"]
    return out[cols].astype({"predicted": np.int64, "trials": np.int64,
                             "consistent": bool, "class_kept": np.float64})


def gamma_table(trials: pd.DataFrame, alpha: float = 0.05,
                frustration: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per model kind: gamma over all trials and per-input aggregates."""
    inputs = per_input_table(trials, alpha)
    rows = []
    for kind, t in trials.groupby("model", sort=False):
        pi = inputs[inputs["model"] == kind]
        rows.append({"model": kind, "gamma": alignment_gamma(t["rho"].to_numpy(), alpha),
                     "alpha": float(alpha), "inputs": len(pi), "trials": len(t),
                     "rho_mean": float(t["rho"].mean()),
                     "increasing": float((t["direction"] > 0).mean()),
                     "decreasing": float((t["direction"] < 0).mean()),
                     "consistent": float(pi["consistent"].mean()),
                     "class_kept": float(t["class_kept"].mean()),
                     "gamma_input_mean": float(pi["gamma"].mean()),
                     "gamma_median": alignment_gamma(t["rho"].to_numpy(), 0.5),
                     "frustration": (frustration or {}).get(kind, float("nan"))})
    return pd.DataFrame(rows)


# -- the perturbation test ------------------------------------------------------------
@dataclass
class MonotonicityResult:
    """Result of :func:`near_monotonicity` for one network and gauge.

    Attributes
    ----------
    trials : DataFrame
        One row per (input, amplitude): ``model, input, input_id,
        amplitude_index, amplitude, rho, rho_down`` (fraction moving against the
        order), ``direction`` (sign of ``rho - 1/2``; 0 where no output
        moved), ``predicted`` (class of ``x``), ``class_kept`` (class of ``x'``
        equal).
    inputs : DataFrame
        :func:`per_input_table`.
    gamma : float
        gamma over all trials at level ``1 - alpha``.
    alpha, seconds : float
    n_outputs : int
    """

    trials: pd.DataFrame
    inputs: pd.DataFrame
    gamma: float
    alpha: float
    seconds: float
    n_outputs: int

    def summary(self) -> dict:
        t = self.trials
        return {"gamma": self.gamma, "alpha": self.alpha, "inputs": len(self.inputs),
                "trials": len(t), "rho_mean": float(t["rho"].mean()),
                "consistent": float(self.inputs["consistent"].mean()),
                "class_kept": float(t["class_kept"].mean()), "seconds": self.seconds}


def as_batch(inputs, ids=None):
    """``(x, ids)`` of a tensor or an :class:`~deepglass.inputs.InputBatch` (ids as str or None)."""
    from ..inputs import InputBatch

    if isinstance(inputs, InputBatch):
        ids = inputs.ids if ids is None else ids
        inputs = inputs.x
    x = torch.as_tensor(inputs)
    if x.ndim < 2 or x.shape[0] < 1:
        raise DeepglassError(f"inputs must be a batch (B, *input_shape), got shape {tuple(x.shape)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise DeepglassError("inputs hold NaN or infinite values")
    ids = [str(i) for i in ids] if ids is not None else None
    if ids is not None and len(ids) != x.shape[0]:
        raise DeepglassError(f"{len(ids)} ids for {x.shape[0]} inputs")
    return x, ids


def _spins(s, n: int, what: str, size_hint: str = "") -> torch.Tensor:
    """``s`` as a float tensor of ``n`` entries +-1; ``size_hint`` is added to
    the refusal of a gauge of another size."""
    s = np.asarray(s).ravel()
    if s.size != n:
        raise DeepglassError(f"{what} must hold {n} entries of +1/-1, got {s.size}" + size_hint)
    if not np.isin(s, (-1, 1)).all():
        bad = s[~np.isin(s, (-1, 1))]
        raise DeepglassError(f"{what} must hold +1/-1 only; {bad.size} of its {n} entries are "
                             f"other values (e.g. {bad[0]!r})")
    return torch.as_tensor(s.astype(np.float32))


def _noise_generator(seed: int, index: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def check_batch_memory(batch_size: int, numel: int, trials: int) -> None:
    """Refuse forward batches that would not fit (:func:`deepglass.memory.check_fits`):
    ``min(batch_size, trials)`` perturbed inputs of ``numel`` values and their
    clean copies in float32, a lower bound of the forward pass (activations
    come on top)."""
    from ..memory import check_fits

    check_fits(2 * 4 * min(int(batch_size), int(trials)) * int(numel),
               f"forward batches of {int(batch_size):,} inputs of {int(numel):,} values",
               "lower --batch-size")


def _default_batch(numel: int) -> int:
    return int(min(4096, max(8, 2 ** 22 // max(numel, 1))))


@torch.no_grad()
def _on_device(model: nn.Module, dev: torch.device) -> nn.Module:
    """``model`` where its parameters and buffers live on ``dev``, else a copy
    moved there: the forward passes run where the inputs are sent, and the
    caller's module stays where it is (the runner's units share it)."""
    def on(t):
        return t.device.type == dev.type and (dev.index is None or t.device.index == dev.index)

    if all(on(t) for t in itertools.chain(model.parameters(), model.buffers())):
        return model
    return copy.deepcopy(model).to(dev)


def _whose(name: str) -> str:
    """``"N3-he: "``: the model a warning is about, where it is a null's (the
    experiment runs the real network and its nulls alike; the real network's
    warnings, and those of a network tested alone, name none)."""
    return "" if name == "real" else f"{name}: "


def _finite_outputs(y: torch.Tensor, ids, pushed: str) -> None:
    """Refuse outputs (rows of ``y``, inputs ``ids``) that are NaN or infinite:
    their comparisons are all false, so rho would read 0 and gamma 1."""
    bad = ~torch.isfinite(y).all(1)
    if bool(bad.any()):
        raise DeepglassError(f"the network's outputs for input {ids[int(bad.nonzero()[0])]!r}"
                             f"{pushed} hold NaN or infinite values; rho is not defined there "
                             "(check the weights' and inputs' scale, or lower the amplitudes)")


def near_monotonicity(model: nn.Module, sigma_in, sigma_out, inputs, amplitudes=100, *,
                      amplitude_range=DEFAULT_RANGE, amplitude_scale: str = "std", seed: int = 0,
                      batch_size: int | None = None, alpha: float = 0.05, device="cpu",
                      ids: Sequence[str] | None = None, first_index: int = 0,
                      name: str = "real", callback: Callable[[int], None] | None = None,
                      output: str | int | None = None) -> MonotonicityResult:
    """Perturbation test of near-monotonicity along a partial order (SPEC §5).

    For every input ``x`` and amplitude ``a``: ``eta ~ U(0, a)`` i.i.d.,
    ``x' = x + sigma_in * eta`` and ``rho = #{j : sigma_out_j (y'_j - y_j) > 0} / m``.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode (its mode is restored afterwards).
    sigma_in, sigma_out : array of +-1
        The gauge on the input nodes (input tensor order, ``prod(input_shape)``
        entries) and output nodes (``m`` entries), e.g.
        ``FrustrationResult.sigma_in`` / ``.sigma_out``.
    inputs : tensor (B, \\*input_shape) or :class:`deepglass.inputs.InputBatch`
    amplitudes : int or array
        Number of amplitudes per input (default 100, see :func:`amplitude_grid`)
        or the amplitudes themselves.
    amplitude_range : (low, high)
        Range of the geometric grid, in units of each input's standard
        deviation (``amplitude_scale="std"``) or absolute (``"absolute"``).
    amplitude_scale : {"std", "absolute"}
        The unit of ``amplitude_range`` (above).
    seed : int
        Noise seed; input ``i`` draws from a generator seeded by
        ``(seed, first_index + i)``.
    batch_size : int, optional
        Perturbed inputs per forward pass (default: about 16 MB of input,
        at most 4096).
    alpha : float
        gamma at level ``1 - alpha`` (default 0.05).
    device : str
        Where the forward passes run (a module elsewhere is copied there).
    ids : list of str, optional
        Input names for the tables (default ``"0", "1", ...``).
    first_index : int
        Global index of the first input (for runs split into units).
    name : str
        The ``model`` column of the tables (``"real"``, a null's name).
    callback : callable, optional
        Called with the number of trials finished after each forward batch.
    output : str or int, optional
        Which output of a network with several (a name of
        :attr:`SignedGraph.outputs` or a position) gives ``y``; default the
        first.  With one output value, ``rho`` is 0 or 1 and gamma is
        trivially 1: a warning says so.

    Returns
    -------
    MonotonicityResult

    References
    ----------
    Paper 000, Results "Near-monotonicity" and Figs. 3-5; SPEC §5.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> with torch.no_grad():
    ...     _ = [p.abs_() for p in net.parameters()]   # non-negative: monotone in sigma = +1
    >>> res = near_monotonicity(net, [1, 1, 1], [1, 1], torch.rand(5, 3), amplitudes=10)
    >>> res.gamma
    1.0
    """
    check_seed(seed)
    check_type(model, nn.Module, "model")
    check_finite(model)         # NaN outputs compare false both ways: rho 0, gamma 1
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(alpha) < 1.0:      # before the trials, not after
        raise DeepglassError(f"alpha must be a number in [0, 1), got {alpha!r}")
    if isinstance(first_index, bool) or not isinstance(first_index, (int, np.integer)) \
            or first_index < 0:
        raise DeepglassError(f"first_index must be a non-negative integer, got {first_index!r}")
    dev = check_device(device)
    x, ids = as_batch(inputs, ids)
    if x.is_complex():
        raise DeepglassError("inputs are complex: the network's inputs are real numbers")
    B, shape = int(x.shape[0]), tuple(x.shape[1:])
    numel = int(np.prod(shape))
    s_in = _spins(sigma_in, numel, "sigma_in", f" (the inputs are of shape "
                  f"{'x'.join(map(str, shape))}: the network's input shape?)").reshape(shape)
    batch_size = _default_batch(numel) if batch_size is None else \
        check_count(batch_size, "batch_size")
    from ..graph.trace import forward_batch_size

    batch_size = forward_batch_size(model, batch_size, hooks=False)
    # refused before the (B, K) grid is made: K alone may be what does not fit
    check_batch_memory(batch_size, numel, B * n_amplitudes(amplitudes))
    amps = amplitude_grid(x, amplitudes, amplitude_range, amplitude_scale)
    K = amps.shape[1]
    ids = ids or [str(first_index + i) for i in range(B)]
    try:
        param = next(model.parameters())
        dtype = param.dtype if param.is_floating_point() else torch.float32
    except StopIteration:
        dtype = torch.float32
    from ..graph.outputs import output_tensor, single_output_name
    from ..graph.trace import module_mode

    single = single_output_name(model)      # the file's name of an ONNX net's one output
    if dtype in (torch.float16, torch.bfloat16):
        # a float32 copy, as the graph is captured (the widening is exact): in 16
        # bits the smallest pushes round away, and rho reads no move there
        try:
            wide = _on_device(copy.deepcopy(model).float(), dev)
            with torch.no_grad(), module_mode(wide):
                wide(x[:1].to(device=dev, dtype=torch.float32))
            model, dtype = wide, torch.float32
        except Exception:  # noqa: BLE001 - a module that cannot be copied, or whose
            pass           # forward casts to 16 bits itself, runs as it is
    model = _on_device(model, dev)

    evaluating = module_mode(model)       # every submodule's own flag restored at the end
    evaluating.__enter__()
    t0 = time.perf_counter()

    def forward(xs: torch.Tensor) -> torch.Tensor:
        # the output read (SPEC §1b): the first unless ``output`` names another
        out = output_tensor(model(xs.to(device=dev, dtype=dtype)), output, single)
        return out.reshape(len(xs), -1).to("cpu", torch.float64)

    try:
        try:
            first = forward(x[:batch_size])
        except DeepglassError as exc:  # (no such output): not the inputs' fault
            raise DeepglassError(first_line(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a forward's own checks raise any kind
            raise DeepglassError(
                f"the model does not accept inputs of shape {tuple(x[:batch_size].shape)} "
                f"({first_line(exc, typed=True, limit=160)}); inputs are a batch "
                "(B, *input_shape): one input needs its batch axis (x[None])") from None
        y = torch.cat([first] + [forward(x[i:i + batch_size])
                                 for i in range(batch_size, B, batch_size)])
        _finite_outputs(y, ids, "")
        m = y.shape[1]
        if m == 1:
            warnings.warn("the output read has a single value, so rho is 0 or 1 in every "
                          "trial and gamma is 1 for any network: the test is empty there "
                          "(choose a head with several outputs)", UserWarning, stacklevel=2)
        s_out = _spins(sigma_out, m, "sigma_out", ": the gauge of another output (this "
                       f"one is {'the first' if output is None else repr(output)})? Pass the "
                       "same output= to frustration()").double()
        pred = y.argmax(1)
        # a move within rounding is none: y and y' come from batches of other sizes
        eps8 = 8 * torch.finfo(dtype).eps
        up = np.empty((B, K), np.int32)
        down = np.empty((B, K), np.int32)
        kept = np.empty((B, K), bool)
        pending: list[tuple[int, int, torch.Tensor]] = []  # (input, first k, rows)
        rows = 0

        def flush():
            nonlocal pending, rows
            if not pending:
                return
            yp = forward(torch.cat([p[2] for p in pending]))
            _finite_outputs(yp, [ids[p[0]] for p in pending for _ in range(len(p[2]))],
                            " pushed along the order")
            r = 0
            for i, k0, xp in pending:
                n = len(xp)
                dy = (yp[r:r + n] - y[i]) * s_out
                rounding = eps8 * torch.maximum(yp[r:r + n].abs(), y[i].abs())  # per output
                up[i, k0:k0 + n] = (dy > rounding).sum(1).numpy()
                down[i, k0:k0 + n] = (dy < -rounding).sum(1).numpy()
                kept[i, k0:k0 + n] = (yp[r:r + n].argmax(1) == pred[i]).numpy()
                r += n
            if callback is not None:
                callback(r)
            pending, rows = [], 0

        for i in range(B):
            gen = _noise_generator(seed, first_index + i)
            a = torch.as_tensor(amps[i], dtype=torch.float32).reshape(K, *([1] * len(shape)))
            for k0 in range(0, K, batch_size):
                k1 = min(K, k0 + batch_size)
                eta = torch.rand((k1 - k0, *shape), generator=gen) * a[k0:k1]
                pending.append((i, k0, x[i].to(torch.float32) + s_in * eta))
                rows += k1 - k0
                if rows >= batch_size:
                    flush()
        flush()
    finally:
        evaluating.__exit__(None, None, None)
    seconds = time.perf_counter() - t0
    rho = up / m
    still = (up + down) == 0
    if still.any():
        warnings.warn(f"{_whose(name)}in {int(still.sum())} of {still.size} trials no output "
                      "moved (beyond rounding): rho = 0 there, which gamma counts as decreasing (SPEC §5), "
                      "with direction 0; the outputs do not depend on the input there (dead "
                      "units, saturated gates) or the amplitudes are too small",
                      UserWarning, stacklevel=2)
    trials = pd.DataFrame({
        "model": name,
        "input": np.repeat(np.arange(first_index, first_index + B), K),
        "input_id": np.repeat(np.asarray(ids, dtype=object), K),
        "amplitude_index": np.tile(np.arange(K, dtype=np.int32), B),
        "amplitude": amps.ravel(),
        "rho": rho.ravel(),
        "rho_down": (down / m).ravel(),
        "direction": np.where(still, 0, np.sign(2 * up - m)).astype(np.int8).ravel(),
        "predicted": np.repeat(pred.numpy().astype(np.int32), K),
        "class_kept": kept.ravel(),
    })
    return MonotonicityResult(trials=trials, inputs=per_input_table(trials, alpha),
                              gamma=alignment_gamma(rho, alpha), alpha=float(alpha),
                              seconds=seconds, n_outputs=int(m))

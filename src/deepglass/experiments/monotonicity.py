"""Near-monotonicity: inputs pushed along the frustration gauge's partial order
(SPEC §5; paper 000, Results "Near-monotonicity", Figs. 3-5).

Given the gauge ``(sigma_in, sigma_out)`` of the best frustration solution
(SPEC §2) and an input ``x``, draw ``eta`` with i.i.d. entries ``U(0, a)`` and
set ``x' = x + sigma_in * eta``: ``x' >= x`` in the ``sigma_in`` orthant order.
The *output alignment fraction* of the trial is

    rho(x, eta) = (1/m) #{ j : sigma_out_j (y'_j - y_j) > 0 },   y = f(x), y' = f(x').

``rho > 1/2`` is increasing near-monotonicity, ``rho < 1/2`` decreasing.  An
output that does not move (``y'_j == y_j``) counts in neither direction.

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

**Nulls.**  ``"random-order"``: a uniformly random ``(sigma_in, sigma_out)``
on the real weights.  ``"N3"`` (He normal, ``"N3-he"``) and ``"N3-xavier"``:
weights redrawn by :func:`deepglass.experiments.nulls.null_model` (SPEC §3),
with their own frustration gauge from :func:`deepglass.frustration`.

**Cost.**  ``B K`` forward passes (B inputs, K amplitudes) in batches of
``batch_size``, plus ``B`` clean ones.  The noise of input ``i`` comes from a
generator seeded by ``(seed, i)``, so results do not depend on the batching or
on how a run splits its inputs into units, and the nulls see the same ``eta``
as the real network (paired trials).

:func:`run_monotonicity` runs the whole protocol into a run directory
(resumable, one unit per (model kind, batch of inputs)) with tables, the
figures of the paper (rho histograms, rho against amplitude, gamma) and a
report section.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import DeepglassError

__all__ = ["near_monotonicity", "MonotonicityResult", "MonotonicityExperiment",
           "monotonicity_experiment", "run_monotonicity", "alignment_gamma", "amplitude_grid",
           "per_input_table", "gamma_table", "null_gauge", "NullGauge", "NULL_KINDS",
           "plot_rho_hist", "plot_rho_vs_amplitude", "plot_gamma", "plot_gamma_levels"]

#: null name -> null_model kind (None: random partial order on the real weights)
NULL_KINDS = {"random-order": None, "N3": "N3-he", "N3-he": "N3-he", "N3-xavier": "N3-xavier"}

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
        lo, hi = (float(v) for v in amplitude_range)
        if not 0 < lo <= hi:
            raise DeepglassError(f"amplitude_range must satisfy 0 < low <= high, got {amplitude_range}")
        grid = np.geomspace(lo, hi, K) if K > 1 else np.array([hi])
        if amplitude_scale == "absolute":
            scale = np.ones(B)
        elif amplitude_scale == "std":
            scale = x.reshape(B, -1).double().std(1, unbiased=False).cpu().numpy()
            scale[~(scale > 0)] = 1.0
        else:
            raise DeepglassError(f"amplitude_scale must be 'std' or 'absolute', not {amplitude_scale!r}")
        return scale[:, None] * grid[None, :]
    a = np.asarray(amplitudes, dtype=np.float64)
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
        order), ``direction`` (sign of ``rho - 1/2``), ``predicted`` (class of
        ``x``), ``class_kept`` (class of ``x'`` equal).
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


def _as_batch(inputs, ids):
    from ..inputs import InputBatch

    if isinstance(inputs, InputBatch):
        ids = inputs.ids if ids is None else ids
        inputs = inputs.x
    x = torch.as_tensor(inputs)
    if x.ndim < 2 or x.shape[0] < 1:
        raise DeepglassError(f"inputs must be a batch (B, *input_shape), got shape {tuple(x.shape)}")
    ids = [str(i) for i in ids] if ids is not None else None
    if ids is not None and len(ids) != x.shape[0]:
        raise DeepglassError(f"{len(ids)} ids for {x.shape[0]} inputs")
    return x, ids


def _spins(s, n: int, what: str) -> torch.Tensor:
    s = np.asarray(s).ravel()
    if s.size != n or not np.isin(s, (-1, 1)).all():
        raise DeepglassError(f"{what} must hold {n} entries of +1/-1, got {s.size}")
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
    seed : int
        Noise seed; input ``i`` draws from a generator seeded by
        ``(seed, first_index + i)``.
    batch_size : int, optional
        Perturbed inputs per forward pass (default: about 16 MB of input,
        at most 4096).
    alpha : float
        gamma at level ``1 - alpha`` (default 0.05).
    device : str
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
    x, ids = _as_batch(inputs, ids)
    B, shape = int(x.shape[0]), tuple(x.shape[1:])
    numel = int(np.prod(shape))
    s_in = _spins(sigma_in, numel, "sigma_in").reshape(shape)
    batch_size = _default_batch(numel) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise DeepglassError(f"batch_size must be >= 1, got {batch_size}")
    check_batch_memory(batch_size, numel, B * int(amplitudes))
    amps = amplitude_grid(x, amplitudes, amplitude_range, amplitude_scale)
    K = amps.shape[1]
    ids = ids or [str(first_index + i) for i in range(B)]
    try:
        param = next(model.parameters())
        dtype = param.dtype if param.is_floating_point() else torch.float32
    except StopIteration:
        dtype = torch.float32
    dev = torch.device(device)
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()

    from ..graph.trace import output_tensor

    def forward(xs: torch.Tensor) -> torch.Tensor:
        # the output read (SPEC §1b): the first unless ``output`` names another
        out = output_tensor(model(xs.to(device=dev, dtype=dtype)), output)
        return out.reshape(len(xs), -1).to("cpu", torch.float64)

    try:
        y = torch.cat([forward(x[i:i + batch_size]) for i in range(0, B, batch_size)])
        m = y.shape[1]
        if m == 1:
            warnings.warn("the output read has a single value, so rho is 0 or 1 in every "
                          "trial and gamma is 1 for any network: the test is empty there "
                          "(choose a head with several outputs)", UserWarning, stacklevel=2)
        s_out = _spins(sigma_out, m, "sigma_out").double()
        pred = y.argmax(1)
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
            r = 0
            for i, k0, xp in pending:
                n = len(xp)
                dy = (yp[r:r + n] - y[i]) * s_out
                up[i, k0:k0 + n] = (dy > 0).sum(1).numpy()
                down[i, k0:k0 + n] = (dy < 0).sum(1).numpy()
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
        model.train(was_training)
    seconds = time.perf_counter() - t0
    rho = up / m
    trials = pd.DataFrame({
        "model": name,
        "input": np.repeat(np.arange(first_index, first_index + B), K),
        "input_id": np.repeat(np.asarray(ids, dtype=object), K),
        "amplitude_index": np.tile(np.arange(K, dtype=np.int32), B),
        "amplitude": amps.ravel(),
        "rho": rho.ravel(),
        "rho_down": (down / m).ravel(),
        "direction": np.sign(2 * up - m).astype(np.int8).ravel(),
        "predicted": np.repeat(pred.numpy().astype(np.int32), K),
        "class_kept": kept.ravel(),
    })
    return MonotonicityResult(trials=trials, inputs=per_input_table(trials, alpha),
                              gamma=alignment_gamma(rho, alpha), alpha=float(alpha),
                              seconds=seconds, n_outputs=int(m))


# -- nulls and the whole protocol -------------------------------------------------------
@dataclass
class NullGauge:
    """A network and the partial order tested on it."""

    name: str
    model: nn.Module
    sigma_in: np.ndarray
    sigma_out: np.ndarray
    frustration: float = float("nan")


def _frustration_gauge(model, input_shape, *, replicas, seed, method, device,
                       engine: str = "auto", output=None):
    from ..solve import frustration

    solver = {"engine": engine} if method == "descent" else {}
    target, where = model, {"input_shape": input_shape}
    if output is not None:   # sigma_out on the selected output (SPEC §1b)
        from ..graph import SignedGraph

        target, where = SignedGraph.from_module(model, tuple(input_shape), output=output), {}
    res = frustration(target, method=method, replicas=replicas, seed=seed,
                      device=device, **where, **solver)
    return res


def null_gauge(model: nn.Module, null: str, *, input_shape: Sequence[int], n_outputs: int,
               seed: int = 0, replicas: int = 8, method: str = "descent",
               device: str = "cpu", engine: str = "auto", output=None) -> NullGauge:
    """The network and gauge of a null (SPEC §3, §5).

    ``"random-order"``: the real network with uniformly random ``sigma_in``,
    ``sigma_out`` (seeded by ``(seed, 1)``).  ``"N3"`` / ``"N3-he"`` /
    ``"N3-xavier"``: :func:`deepglass.experiments.nulls.null_model` weights with
    their own gauge from :func:`deepglass.frustration` (``replicas`` starts).
    """
    if null not in NULL_KINDS:
        raise DeepglassError(f"unknown null {null!r}; choose from {', '.join(NULL_KINDS)}")
    kind = NULL_KINDS[null]
    if kind is None:
        rng = np.random.default_rng([int(seed), 1])
        n_in = int(np.prod(tuple(input_shape)))
        return NullGauge(null, model, rng.choice(np.array([-1, 1], np.int8), n_in),
                         rng.choice(np.array([-1, 1], np.int8), int(n_outputs)))
    from .nulls import null_model

    net = null_model(model, kind, seed)
    res = _frustration_gauge(net, tuple(input_shape), replicas=replicas, seed=seed, output=output,
                             method=method, device=device, engine=engine)
    return NullGauge(null, net, res.sigma_in, res.sigma_out, float(res.frustration))


@dataclass
class MonotonicityExperiment:
    """The protocol on the real network and its nulls.

    Attributes
    ----------
    trials : DataFrame
        All trials, with a ``model`` column (``"real"``, ``"random-order"``, ``"N3"``).
    inputs : DataFrame
        :func:`per_input_table` per model kind.
    gamma : DataFrame
        :func:`gamma_table`: one row per model kind.
    gauges : dict
        model kind -> :class:`NullGauge` (the real one included).
    """

    trials: pd.DataFrame
    inputs: pd.DataFrame
    gamma: pd.DataFrame
    gauges: dict = field(default_factory=dict)
    seconds: float = 0.0

    def gammas(self) -> dict[str, float]:
        return dict(zip(self.gamma["model"], self.gamma["gamma"].astype(float)))


def _check_nulls(nulls) -> list[str]:
    if isinstance(nulls, str):
        nulls = [s.strip() for s in nulls.split(",") if s.strip()]
    nulls = list(nulls or [])
    for n in nulls:
        if n not in NULL_KINDS:
            raise DeepglassError(f"unknown null {n!r}; choose from {', '.join(NULL_KINDS)}")
    if len(set(nulls)) != len(nulls) or "real" in nulls:
        raise DeepglassError(f"nulls must be distinct, got {nulls}")
    return nulls


def monotonicity_experiment(model: nn.Module, inputs, sigma_in=None, sigma_out=None, *,
                            nulls=("random-order", "N3"), amplitudes=100,
                            amplitude_range=DEFAULT_RANGE, amplitude_scale: str = "std",
                            seed: int = 0, replicas: int = 8, method: str = "descent",
                            alpha: float = 0.05, batch_size: int | None = None,
                            device: str = "cpu", ids=None,
                            frustration: float | None = None,
                            engine: str = "auto", output=None) -> MonotonicityExperiment:
    """The near-monotonicity protocol of SPEC §5: real network and nulls, in memory.

    ``sigma_in`` / ``sigma_out`` default to the gauge of
    ``deepglass.frustration(model, replicas=replicas, seed=seed)``; when they
    are given, ``frustration`` (their energy) is reported in the tables.  Every model
    kind sees the same inputs, amplitudes and noise.  ``output`` picks the
    output (name or position) of a network with several (default: the first).
    For a resumable run on disk use :func:`run_monotonicity`.
    """
    t0 = time.perf_counter()
    x, ids = _as_batch(inputs, ids)
    gauges = _gauges(model, tuple(x.shape[1:]), sigma_in, sigma_out, _check_nulls(nulls),
                     seed=seed, replicas=replicas, method=method, device=device,
                     engine=engine, real_delta=float("nan") if frustration is None else float(frustration),
                     output=output)
    results = [near_monotonicity(g.model, g.sigma_in, g.sigma_out, x, amplitudes,
                                 amplitude_range=amplitude_range, amplitude_scale=amplitude_scale,
                                 seed=seed, batch_size=batch_size, alpha=alpha, device=device,
                                 ids=ids, name=name, output=output)
               for name, g in gauges.items()]
    trials = pd.concat([r.trials for r in results], ignore_index=True)
    delta = {k: g.frustration for k, g in gauges.items()}
    return MonotonicityExperiment(trials, per_input_table(trials, alpha),
                                  gamma_table(trials, alpha, delta), gauges,
                                  time.perf_counter() - t0)


def _n_outputs(model: nn.Module, shape, device, output=None) -> int:
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, *shape), dtype=dtype, device=device))
    finally:
        model.train(was)
    from ..graph.trace import output_tensor

    return int(output_tensor(out, output).numel())


def _gauges(model, shape, sigma_in, sigma_out, nulls, *, seed, replicas, method, device,
            real_delta=float("nan"), null_cache=None, engine: str = "auto", output=None):
    if (sigma_in is None) != (sigma_out is None):
        raise DeepglassError("give both sigma_in and sigma_out, or neither")
    if sigma_in is None:
        res = _frustration_gauge(model, shape, replicas=replicas, seed=seed, method=method,
                                 device=device, engine=engine, output=output)
        sigma_in, sigma_out, real_delta = res.sigma_in, res.sigma_out, float(res.frustration)
    gauges = {"real": NullGauge("real", model, np.asarray(sigma_in), np.asarray(sigma_out),
                                real_delta)}
    m = len(np.asarray(sigma_out).ravel())
    for name in nulls:
        g = null_cache(name) if null_cache is not None else None
        gauges[name] = g or null_gauge(model, name, input_shape=shape, n_outputs=m, seed=seed,
                                       replicas=replicas, method=method, device=device,
                                       engine=engine, output=output)
    return gauges


# -- runs ---------------------------------------------------------------------------
def run_monotonicity(run, model: nn.Module, x, ids: Sequence[str] | None = None, *,
                     sigma_in=None, sigma_out=None, nulls=("random-order", "N3"),
                     amplitudes: int = 100, amplitude_range=DEFAULT_RANGE,
                     amplitude_scale: str = "std", seed: int = 0, replicas: int = 8,
                     method: str = "descent", alpha: float = 0.05, unit_size: int = 100,
                     batch_size: int | None = None, device: str = "cpu",
                     config: Mapping | None = None, force: bool = False,
                     progress: Callable[[int], None] | None = None,
                     engine: str = "auto", output=None) -> MonotonicityExperiment:
    """The near-monotonicity protocol as a resumable run (kind ``"monotonicity"``).

    Parameters
    ----------
    run : RunDir or path
        A :class:`deepglass.store.RunDir` opened with ``kind="monotonicity"``, or
        a directory (opened here with ``config`` plus this call's parameters).
    model, x, ids
        The network, the inputs (B, \\*input_shape) and their names.
    sigma_in, sigma_out : arrays, optional
        The real gauge.  Default: ``RUN/arrays/gauge_real.npz`` when the run
        already holds one (a frustration run in the same directory writes it),
        else ``deepglass.frustration(model, replicas=replicas, seed=seed)``,
        saved there (keys sigma, sigma_in, sigma_out, energy).
    nulls, amplitudes, amplitude_range, amplitude_scale, seed, replicas, method, alpha
        As in :func:`monotonicity_experiment`; N3 gauges are saved under
        ``arrays/monotonicity/`` so a resumed run reuses them.
    output : str or int, optional
        The output read, for a network with several (recorded in the config).
    unit_size : int
        Inputs per unit: each (model kind, batch of ``unit_size`` inputs) is
        written atomically when finished and skipped on resume.
    progress : callable, optional
        Called with the number of trials finished.

    Returns
    -------
    MonotonicityExperiment
        Also written: tables ``monotonicity_trials``, ``monotonicity_inputs``,
        ``monotonicity_gamma``; ``figures/rho_hist.png`` (Fig. 3),
        ``figures/rho_vs_amplitude.png`` (Fig. 4), ``figures/gamma.png``
        (Fig. 5); the report section; ``summary.json["monotonicity"]``.
    """
    from ..store import RunDir

    t0 = time.perf_counter()
    nulls = _check_nulls(nulls)
    x, ids = _as_batch(x, ids)
    B, shape = int(x.shape[0]), tuple(x.shape[1:])
    ids = ids or [str(i) for i in range(B)]
    if int(unit_size) < 1:
        raise DeepglassError(f"unit_size must be >= 1, got {unit_size}")
    if isinstance(amplitudes, bool) or not isinstance(amplitudes, (int, np.integer)) \
            or amplitudes < 1:
        raise DeepglassError(f"a run needs a number of amplitudes >= 1, got {amplitudes!r}")
    if not isinstance(run, RunDir):
        digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
        cfg = {**dict(config or {}), "inputs_count": B, "inputs_digest": digest,
               "amplitudes": int(amplitudes),
               "amplitude_range": [float(v) for v in amplitude_range],
               "amplitude_scale": amplitude_scale, "nulls": nulls, "seed": int(seed),
               "replicas": int(replicas), "method": method, "alpha": float(alpha),
               "unit_size": int(unit_size),
               **({"engine": engine} if engine != "auto" else {}),
               **({"output": str(output)} if output is not None else {})}
        run = RunDir(Path(run), cfg, kind="monotonicity", force=force)
    elif run.kind != "monotonicity":
        raise DeepglassError(f"run_monotonicity needs a run opened with kind='monotonicity', "
                             f"not {run.kind!r}")
    real_delta = float("nan")
    if sigma_in is None and sigma_out is None:
        from .frustration import load_gauge, save_gauge

        g = load_gauge(run)
        if g is not None:
            sigma_in, sigma_out, real_delta = g["sigma_in"], g["sigma_out"], g["energy"]
        else:
            res = _frustration_gauge(model, shape, replicas=replicas, seed=seed, method=method,
                                     device=device, engine=engine, output=output)
            save_gauge(run, res.sigma, res.sigma_in, res.sigma_out, res.frustration)
            sigma_in, sigma_out, real_delta = res.sigma_in, res.sigma_out, res.frustration

    def cached(name):
        key = f"monotonicity/gauge_{name}"
        if NULL_KINDS[name] is None or not run.has_arrays(key):
            return None
        from .nulls import null_model

        a = run.load_arrays(key)
        return NullGauge(name, null_model(model, NULL_KINDS[name], seed), a["sigma_in"],
                         a["sigma_out"], float(a["energy"]))

    gauges = _gauges(model, shape, sigma_in, sigma_out, nulls, seed=seed, replicas=replicas,
                     method=method, device=device, real_delta=real_delta, null_cache=cached,
                     engine=engine, output=output)
    for name, g in gauges.items():
        if NULL_KINDS.get(name) is not None and not run.has_arrays(f"monotonicity/gauge_{name}"):
            run.save_arrays(f"monotonicity/gauge_{name}", sigma_in=g.sigma_in,
                            sigma_out=g.sigma_out, energy=np.float64(g.frustration))
    n_units = math.ceil(B / unit_size)
    for name, g in gauges.items():
        for u in range(n_units):
            uid = f"{name}-{u:05d}"
            lo, hi = u * unit_size, min(B, (u + 1) * unit_size)
            if run.has_unit("trials", uid):
                if progress is not None:
                    progress((hi - lo) * (amplitudes if isinstance(amplitudes, int) else 0))
                continue
            r = near_monotonicity(g.model, g.sigma_in, g.sigma_out, x[lo:hi], amplitudes,
                                  amplitude_range=amplitude_range,
                                  amplitude_scale=amplitude_scale, seed=seed,
                                  batch_size=batch_size, alpha=alpha, device=device,
                                  ids=ids[lo:hi], first_index=lo, name=name, callback=progress,
                                  output=output)
            run.write_unit("trials", uid, r.trials)
    order = {k: i for i, k in enumerate(gauges)}
    trials = run.read_units("trials")
    trials = trials.sort_values(["model", "input", "amplitude_index"],
                                key=lambda c: c.map(order) if c.name == "model" else c,
                                kind="stable", ignore_index=True)
    delta = {k: g.frustration for k, g in gauges.items()}
    exp = MonotonicityExperiment(trials, per_input_table(trials, alpha),
                                 gamma_table(trials, alpha, delta), gauges,
                                 time.perf_counter() - t0)
    run.write_table("monotonicity_trials", exp.trials)
    run.write_table("monotonicity_inputs", exp.inputs)
    run.write_table("monotonicity_gamma", exp.gamma)
    _write_figures(run, exp)
    run.write_report_section(_report(exp, alpha))
    gt = exp.gamma.set_index("model").astype(object)
    gt = gt.where(gt.notna(), None)  # JSON has no NaN (the random order has no frustration)
    run.update_summary({"monotonicity": {
        "gamma": exp.gammas(), "alpha": float(alpha), "inputs": B,
        "amplitudes": int(trials["amplitude_index"].max()) + 1,
        "consistent": gt["consistent"].to_dict(), "class_kept": gt["class_kept"].to_dict(),
        "increasing": gt["increasing"].to_dict(), "frustration": gt["frustration"].to_dict()}})
    return exp


def _report(exp: MonotonicityExperiment, alpha: float) -> str:
    lines = ["## Near-monotonicity (SPEC §5)", "",
             f"Inputs pushed along the gauge's partial order: `x' = x + sigma_in * eta`, "
             f"`eta ~ U(0, a)`; `rho` = fraction of outputs moving along `sigma_out`. "
             f"gamma at level {1 - alpha:.2f}: the largest gamma with at least that fraction of "
             f"trials at `|2 rho - 1| >= gamma`.", "",
             "| model | gamma | mean rho | increasing | consistent inputs | class kept | "
             "gauge frustration |", "|---|---|---|---|---|---|---|"]
    for r in exp.gamma.itertuples():
        lines.append(f"| {r.model} | {r.gamma:.3f} | {r.rho_mean:.3f} | {r.increasing:.3f} | "
                     f"{r.consistent:.3f} | {r.class_kept:.3f} | {r.frustration:.4f} |")
    lines += ["", f"{exp.gamma['inputs'].iloc[0]} inputs x "
                  f"{int(exp.trials['amplitude_index'].max()) + 1} amplitudes per model.  "
                  "Figures: `figures/rho_hist.png`, `figures/rho_vs_amplitude.png`, "
                  "`figures/gamma.png`; tables `monotonicity_*.parquet`."]
    return "\n".join(lines)


# -- figures (paper 000, Figs. 3-5) ----------------------------------------------------
_COLORS = {"real": "tab:blue", "random-order": "tab:orange", "N3": "tab:green",
           "N3-he": "tab:green", "N3-xavier": "tab:red"}


def _n_outputs_of(rho: np.ndarray, largest: int = 1000) -> int | None:
    """The smallest m with every rho a multiple of 1/m (None if none <= largest)."""
    for m in range(1, largest + 1):
        if np.allclose(rho * m, np.round(rho * m), atol=1e-6):
            return m
    return None


def plot_rho_hist(ax, trials: pd.DataFrame, n_outputs: int | None = None) -> None:
    """Histograms of rho per model kind (Fig. 3): one bin per value k/m for up
    to 50 outputs, else 50 equal bins."""
    rho = np.unique(trials["rho"].to_numpy())
    m = n_outputs or _n_outputs_of(rho) or 50
    bins = (np.linspace(-0.5 / m, 1 + 0.5 / m, m + 2) if m <= 50
            else np.linspace(0, 1, 51))
    for kind, t in trials.groupby("model", sort=False):
        ax.hist(t["rho"], bins=bins, density=True, histtype="step", lw=1.5,
                color=_COLORS.get(kind), label=kind)
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(r"output alignment fraction $\rho$")
    ax.set_ylabel("density")
    ax.set_title(r"$\rho$ over (input, amplitude) trials")
    ax.legend()


def plot_rho_vs_amplitude(axes, trials: pd.DataFrame, n_inputs: int = 6) -> None:
    """rho against amplitude for a few inputs (Fig. 4), one panel per model kind."""
    kinds = list(dict.fromkeys(trials["model"]))
    first = sorted(trials["input"].unique())[:n_inputs]
    for ax, kind in zip(np.atleast_1d(axes), kinds):
        t = trials[(trials["model"] == kind) & trials["input"].isin(first)]
        for inp, ti in t.groupby("input"):
            ax.plot(ti["amplitude"], ti["rho"], "-", lw=1, marker=".", ms=3,
                    label=str(ti["input_id"].iloc[0]))
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("amplitude a")
        ax.set_title(kind)
    np.atleast_1d(axes)[0].set_ylabel(r"$\rho$")
    np.atleast_1d(axes)[0].legend(fontsize=7)


def plot_gamma_levels(ax, trials: pd.DataFrame, alpha: float = 0.05) -> None:
    """gamma against the confidence level ``1 - alpha`` per model kind: the
    decreasing quantile curve of ``|2 rho - 1|`` (Fig. 5), the run's level marked."""
    for kind, t in trials.groupby("model", sort=False):
        d = np.sort(np.round(np.abs(2 * t["rho"].to_numpy() - 1), 12))[::-1]
        level = np.arange(1, d.size + 1) / d.size  # gamma(level) = d_(ceil(level T))
        ax.step(level, d, where="pre", color=_COLORS.get(kind), label=kind)
    ax.axvline(1 - alpha, color="grey", lw=0.8, ls=":")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(r"confidence level $1-\alpha$")
    ax.set_ylabel(r"$\gamma$")
    ax.legend(fontsize=8)


def plot_gamma(ax, gamma: pd.DataFrame, inputs: pd.DataFrame) -> None:
    """gamma per model kind (Fig. 5): bars over all trials, dots per input."""
    kinds = list(gamma["model"])
    pos = np.arange(len(kinds))
    ax.bar(pos, gamma["gamma"], color=[_COLORS.get(k, "grey") for k in kinds], alpha=0.6,
           label=r"$\gamma$ (all trials)")
    rng = np.random.default_rng(0)
    for p, k in zip(pos, kinds):
        g = inputs.loc[inputs["model"] == k, "gamma"].to_numpy()
        ax.plot(p + rng.uniform(-0.25, 0.25, g.size), g, ".", color="k", ms=2, alpha=0.4)
    ax.plot([], [], ".", color="k", label=r"$\gamma$ per input")
    ax.set_xticks(pos, kinds)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(rf"$\gamma$ at level {1 - float(gamma['alpha'].iloc[0]):.2f}")
    ax.legend(fontsize=8)


def _write_figures(run, exp: MonotonicityExperiment) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8))
    plot_rho_hist(fig.add_subplot(), exp.trials)
    run.save_figure(fig, "rho_hist.png")
    k = exp.trials["model"].nunique()
    fig = Figure(figsize=(3.6 * k, 3.4))
    plot_rho_vs_amplitude(fig.subplots(1, k, sharey=True, squeeze=False)[0], exp.trials)
    run.save_figure(fig, "rho_vs_amplitude.png")
    fig = Figure(figsize=(9, 3.6))
    left, right = fig.subplots(1, 2)
    plot_gamma_levels(left, exp.trials, float(exp.gamma["alpha"].iloc[0]))
    plot_gamma(right, exp.gamma, exp.inputs)
    run.save_figure(fig, "gamma.png")

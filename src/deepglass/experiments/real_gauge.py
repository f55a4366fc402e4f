"""The real network's best gauge in a run directory (``arrays/gauge_real.npz``).

The frustration experiment stores its best real gauge here; the
active-subnetwork and near-monotonicity runs of the same directory read it
(or compute and store one), so all three work on one partial order.  The
gauge records the :func:`weights_digest` of its network, and a run of other
weights refuses to reuse it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from ..errors import DeepglassError
from ..graph import SignedGraph
from ..store import RunDir

__all__ = ["GAUGE_ARRAYS", "GaugeOfOtherWeights", "save_gauge", "load_gauge",
           "check_gauge_weights", "weights_digest"]

#: the best real gauge, read by the active-subnetwork and monotonicity runs
GAUGE_ARRAYS = "gauge_real"


class GaugeOfOtherWeights(DeepglassError):
    """The run directory's gauge was stored for other network weights."""


def save_gauge(run: RunDir, sigma, sigma_in, sigma_out, energy: float,
               weights: str | None = None) -> None:
    """Store the real network's gauge in ``run`` (``arrays/gauge_real.npz``: ``sigma``,
    ``sigma_in``, ``sigma_out`` as int8, its ``energy`` and the network's
    :func:`weights_digest`): the partial order (SPEC §2, §5) that the
    active-subnetwork and near-monotonicity runs of the same directory reuse."""
    extra = {"weights": np.str_(weights)} if weights else {}
    run.save_arrays(GAUGE_ARRAYS, sigma=np.asarray(sigma, np.int8),
                    sigma_in=np.asarray(sigma_in, np.int8),
                    sigma_out=np.asarray(sigma_out, np.int8), energy=np.float64(energy),
                    **extra)


def load_gauge(run: RunDir, weights: str | None = None,
               graph: SignedGraph | None = None) -> dict | None:
    """The gauge :func:`save_gauge` stored in ``run`` (``energy`` as a float), or ``None``.

    With ``weights`` (this network's :func:`weights_digest`), a gauge stored
    for other weights is refused: its partial order and ``delta`` belong to
    another network.  A gauge stored without a digest is checked against the
    frustration run's ``weights_sha256`` where the directory records one.
    With ``graph`` (this network's signed graph), the gauge must have its
    nodes, and ``sigma_in`` / ``sigma_out`` are read off ``sigma`` at its
    inputs and its selected output (SPEC §1b), whichever output the run that
    stored the gauge read.

    Raises
    ------
    DeepglassError
        One line: the gauge is of other weights, or of a graph of other nodes
        (another input shape).
    """
    if not run.has_arrays(GAUGE_ARRAYS):
        return None
    g = run.load_arrays(GAUGE_ARRAYS)
    g["energy"] = float(np.asarray(g["energy"], dtype=float).ravel()[0])
    stored = str(g.pop("weights")) if "weights" in g else None
    _refuse_other(run.path, stored, run.run_config("frustration") if stored is None else None,
                  weights)
    if graph is not None:
        sigma = np.asarray(g["sigma"]).reshape(-1)
        if sigma.size != graph.n_nodes:
            raise DeepglassError(
                f"{run.path / 'arrays' / (GAUGE_ARRAYS + '.npz')} is a gauge of a graph of "
                f"{sigma.size:,} nodes; this network's graph (input "
                f"{'x'.join(map(str, graph.input_shape))}) has {graph.n_nodes:,}: use another "
                "run directory")
        g["sigma_in"], g["sigma_out"] = sigma[graph.input_index], sigma[graph.output_index]
    return g


def check_gauge_weights(run: RunDir | str | os.PathLike | None, weights: str) -> None:
    """Refuse, before ``run`` is opened for another kind (which records that
    kind's configuration), a stored gauge of other weights than ``weights``
    (as :func:`load_gauge` would)."""
    if run is None:
        return
    path = run.path if isinstance(run, RunDir) else Path(run)
    npz = path / "arrays" / f"{GAUGE_ARRAYS}.npz"
    try:
        with np.load(npz) as z:
            stored = str(z["weights"]) if "weights" in z.files else None
        frustration = None if stored is not None else tomllib.loads(
            (path / "config.toml").read_text()).get("runs", {}).get("frustration")
    except Exception:  # noqa: BLE001 - none or unreadable: load_gauge decides later
        return
    _refuse_other(path, stored, frustration, weights)


def _refuse_other(path: Path, stored: str | None, frustration: dict | None,
                  weights: str | None) -> None:
    """Refuse a gauge of other weights: its own digest (``stored``), else that of
    the frustration run (its ``config.toml`` table) that wrote it before gauges
    carried one."""
    if stored is None:
        stored = (frustration or {}).get("weights_sha256")
    if weights is not None and stored is not None and stored != weights:
        raise GaugeOfOtherWeights(
            f"run directory {path}: arrays/{GAUGE_ARRAYS}.npz is the gauge of other "
            f"network weights (sha256 {stored}, this network's {weights}); use another --out")


def weights_digest(model: torch.nn.Module | None, graph: SignedGraph) -> str:
    """sha256 (16 hex digits) of the weights (the module's state dict, else the
    graph's blocks): a resumed run, and a gauge reused from the run directory,
    must be of the same net."""
    h = hashlib.sha256()
    if model is not None:
        tensors = [(k, v) for k, v in model.state_dict().items()]
    else:
        tensors = [(f"{i}.{k}", v) for i, b in enumerate(graph.edge_blocks)
                   for k, v in sorted(vars(b).items()) if isinstance(v, torch.Tensor)]
    for k, v in tensors:
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

"""The real network's best gauge in a run directory (``arrays/gauge_real.npz``).

The frustration experiment stores its best real gauge here; the
active-subnetwork and near-monotonicity runs of the same directory read it
(or compute and store one), so all three work on one partial order.  The
gauge records what defines its graph: the :func:`weights_digest` of its
network, the capture rules (batch norm folded or ignored, ...) and the node
and edge counts; a run of another graph refuses to reuse it.  A run that
reuses or computes it records which gauge it used (:func:`gauge_record`:
its digest and energy, ``gauge`` in the run's configuration), so a resumed
run whose gauge was replaced meanwhile is refused, never mixed.
"""

from __future__ import annotations

import hashlib
import json
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
from ..manifest import gauge_digest
from ..store import RunDir

__all__ = ["GAUGE_ARRAYS", "GaugeOfOtherWeights", "GaugeOfOtherGraph", "save_gauge",
           "load_gauge", "check_gauge_weights", "weights_digest", "gauge_record",
           "settle_gauge", "inputs_digest"]

#: the best real gauge, read by the active-subnetwork and monotonicity runs
GAUGE_ARRAYS = "gauge_real"


class GaugeOfOtherWeights(DeepglassError):
    """The run directory's gauge was stored for other network weights."""


class GaugeOfOtherGraph(DeepglassError):
    """The run directory's gauge is of another graph of these weights (other
    capture rules, node or edge count)."""


def _graph_identity(graph) -> dict | None:
    """What defines a graph besides its weights: its capture rules (JSON) and
    node and edge counts, from a :class:`SignedGraph` or a frustration run's
    configuration (``rules``, ``nodes``, ``edges``)."""
    if graph is None:
        return None
    if isinstance(graph, SignedGraph):
        rules, nodes, edges = graph.meta.get("rules") or {}, graph.n_nodes, graph.n_edges
    else:
        rules, nodes, edges = graph.get("rules") or {}, graph["nodes"], graph["edges"]
    return {"rules": json.dumps(rules, sort_keys=True, default=str), "nodes": int(nodes),
            "edges": int(edges)}


def save_gauge(run: RunDir, sigma, sigma_in, sigma_out, energy: float,
               weights: str | None = None, graph=None, source: str | None = None) -> None:
    """Store the real network's gauge in ``run`` (``arrays/gauge_real.npz``: ``sigma``,
    ``sigma_in``, ``sigma_out`` as int8, its ``energy``, the network's
    :func:`weights_digest` and, given ``graph`` (a :class:`SignedGraph` or a
    frustration configuration), its capture rules and node and edge counts;
    ``source``: how it was computed, which a resumed run reports again):
    the partial order (SPEC §2, §5) that the active-subnetwork and
    near-monotonicity runs of the same directory reuse."""
    extra = {"weights": np.str_(weights)} if weights else {}
    if source:
        extra["source"] = np.str_(source)
    ident = _graph_identity(graph)
    if ident is not None:
        extra.update(rules=np.str_(ident["rules"]), nodes=np.int64(ident["nodes"]),
                     edges=np.int64(ident["edges"]))
    run.save_arrays(GAUGE_ARRAYS, sigma=np.asarray(sigma, np.int8),
                    sigma_in=np.asarray(sigma_in, np.int8),
                    sigma_out=np.asarray(sigma_out, np.int8), energy=np.float64(energy),
                    **extra)


def gauge_record(sigma, energy: float) -> dict:
    """Which gauge a run used, as its configuration records it (``gauge``):
    ``sha256`` (16 hex digits of the gauge and its energy) and ``delta``."""
    rec = {"sha256": gauge_digest(sigma, energy)}
    if np.isfinite(energy):
        rec["delta"] = float(energy)
    return rec


def settle_gauge(run: RunDir | None, sigma, energy: float, source: str) -> None:
    """Record in ``run``'s configuration the gauge its units use
    (:func:`gauge_record`); a resumed run whose units were computed along
    another gauge is refused in one line (``force``: recomputed)."""
    if run is None:
        return

    def describe(rec) -> str:
        rec = rec if isinstance(rec, dict) else {"sha256": rec}
        delta = rec.get("delta")
        return (f"the gauge {rec.get('sha256')}" + ("" if delta is None else
                                                   f" (delta {delta:.6g})")
                + (f", {source}" if rec == new else ""))

    new = gauge_record(sigma, energy)
    run.settle("gauge", new, describe)


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
    frustration = run.run_config("frustration")
    _refuse_other(run.path, stored, frustration if stored is None else None, weights)
    ident = {k: g.pop(k) for k in ("rules", "nodes", "edges") if k in g}
    if "source" in g:
        g["source"] = str(g["source"])
    _refuse_other_graph(run.path, ident, frustration, graph)
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


def check_gauge_weights(run: RunDir | str | os.PathLike | None, weights: str,
                        graph: SignedGraph | None = None) -> None:
    """Refuse, before ``run`` is opened for another kind (which records that
    kind's configuration), a stored gauge of other weights than ``weights``
    (or, given ``graph``, of another graph), as :func:`load_gauge` would."""
    if run is None:
        return
    path = run.path if isinstance(run, RunDir) else Path(run)
    npz = path / "arrays" / f"{GAUGE_ARRAYS}.npz"
    try:
        with np.load(npz) as z:
            stored = str(z["weights"]) if "weights" in z.files else None
            ident = {k: z[k] for k in ("rules", "nodes", "edges") if k in z.files}
        frustration = tomllib.loads(
            (path / "config.toml").read_text()).get("runs", {}).get("frustration")
    except Exception:  # noqa: BLE001 - none or unreadable: load_gauge decides later
        return
    _refuse_other(path, stored, None if stored is not None else frustration, weights)
    if stored is None or stored == weights:   # another net's: refused by load_gauge
        _refuse_other_graph(path, ident, frustration, graph)


def _refuse_other_graph(path: Path, ident: dict, frustration: dict | None, graph) -> None:
    """Refuse a gauge of another graph than ``graph``: other capture rules
    (batch norm folded or ignored, ...) or node or edge counts, from the
    gauge's own record (``ident``), else from the frustration run that wrote it
    before gauges carried one."""
    here = _graph_identity(graph)
    if here is None:
        return
    if ident:
        there = {"rules": str(ident["rules"]), "nodes": int(ident["nodes"]),
                 "edges": int(ident["edges"])}
    elif frustration and frustration.get("rules"):
        there = _graph_identity(frustration)
    else:
        return
    if there == here:
        return
    a, b = json.loads(there["rules"]), json.loads(here["rules"])
    diff = [f"{k} {a.get(k, '-')}, here {b.get(k, '-')}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]
    for k in ("nodes", "edges"):
        if there[k] != here[k]:
            diff.append(f"{there[k]:,} {k}, here {here[k]:,}")
    raise GaugeOfOtherGraph(
        f"run directory {path}: arrays/{GAUGE_ARRAYS}.npz is the gauge of another graph of "
        f"this network ({'; '.join(diff)}); use another --out, or the capture options "
        "(--batchnorm, ...) of the run that stored it")


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
    """sha256 (16 hex digits) of the weights (the module's state dict, the
    source files of its own classes and the modules beside them, its modules'
    plain settings, and the program of a module read from a file: TorchScript
    code, an imported ONNX or exported graph; else the graph's blocks): a
    resumed run, and a gauge reused from the run directory, must be of the
    same net, also where only its ``forward`` was edited."""
    h = hashlib.sha256()
    if model is not None:
        tensors = [(k, v) for k, v in model.state_dict().items()]
        for source in _code_files(model):
            h.update(source)
    else:
        tensors = [(f"{i}.{k}", v) for i, b in enumerate(graph.edge_blocks)
                   for k, v in sorted(vars(b).items()) if isinstance(v, torch.Tensor)]
    for k, v in tensors:
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _code_files(model: torch.nn.Module) -> list[bytes]:
    """The contents of the files that define ``model``'s module classes, other
    than PyTorch's and deepglass's own (their versions are recorded apart): a
    user's ``model.py``, a model zoo's modules; for a class of the running
    script or notebook (``__main__``), the class's own source where Python
    finds it."""
    import inspect
    import sys

    import deepglass

    skip = tuple(str(Path(m.__file__).parent) + os.sep for m in (torch, deepglass))
    files, own = set(), {}
    for m in model.modules():
        cls = type(m)
        if cls.__module__ == "__main__":
            # a class of the running script (or a notebook): its own source, not the
            # whole driver script, whose other lines change between runs
            try:
                own[cls.__qualname__] = inspect.getsource(cls).encode()
            except (OSError, TypeError):     # no source to read (exec'd code)
                pass
            continue
        f = getattr(sys.modules.get(cls.__module__), "__file__", None) or next(
            (v.__code__.co_filename for v in vars(cls).values() if hasattr(v, "__code__")),
            None)     # a class of a file imported by path (--arch model.py:Net)
        if f and os.path.isfile(f) and not os.path.abspath(f).startswith(skip):
            files.add(os.path.abspath(f))
    # the program of a module read from a file (TorchScript's code, an ONNX file's
    # or a torch.export archive's graph): the same weights re-exported with
    # another forward are another network
    for name, m in model.named_modules():
        code = _program(m)
        if code is not None:
            own[f"program {name}"] = code.encode()
        # its plain settings (Net(act="gelu") and Net(act="relu") share their weights)
        settings = [f"{k}={v!r}" for k, v in sorted(vars(m).items())
                    if not k.startswith("_") and k != "training" and _plain(v)]
        if settings:
            own[f"settings {name}"] = "\n".join(settings).encode()
    files |= _imported_beside(model, {os.path.dirname(f) for f in files})
    out = [own[k] for k in sorted(own)]
    for f in sorted(files):
        try:
            out.append(Path(f).read_bytes())
        except OSError:         # a module whose file is gone: its name stands in
            out.append(f.encode())
    return out


def _imported_beside(model: torch.nn.Module, dirs: set) -> set:
    """The files of the modules that the files of ``model``'s classes import
    from beside them (a helper its ``forward`` calls, in the user's own tree):
    read off each class file's namespace, never the running script's."""
    import inspect
    import sys

    out = set()
    for cls in {type(m) for m in model.modules()} - {torch.nn.Module}:
        if cls.__module__ == "__main__":
            continue
        mod = sys.modules.get(cls.__module__)    # (a file loaded by path is not there:
        names = getattr(mod, "__dict__", None) or next(   # its functions' globals are)
            (v.__globals__ for v in vars(cls).values() if hasattr(v, "__globals__")), {})
        for v in list(names.values()):
            src = v if inspect.ismodule(v) else sys.modules.get(
                v.__module__ if isinstance(getattr(v, "__module__", None), str) else "")
            f = getattr(src, "__file__", None)
            if f and getattr(src, "__name__", "") != "__main__" and \
                    os.path.dirname(os.path.abspath(f)) in dirs:
                out.add(os.path.abspath(f))
    return out


def _plain(v, depth: int = 0) -> bool:
    """A setting written as a plain value: None, a number, a string, or a short
    tuple / list of them."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    return isinstance(v, (tuple, list)) and depth < 2 and len(v) <= 64 and \
        all(_plain(x, depth + 1) for x in v)


def _program(m: torch.nn.Module) -> str | None:
    """The code of a TorchScript module or of an fx ``GraphModule`` (an imported
    ONNX file, an exported program), else None."""
    try:
        if isinstance(m, torch.jit.ScriptModule):
            return m.code
        if isinstance(m, torch.fx.GraphModule):
            return m.code
    except (RuntimeError, AttributeError):     # a script module without a forward
        return None
    return None


def inputs_digest(x) -> str:
    """sha256 (16 hex digits) of a batch of inputs' values, shape and dtype: a
    run resumed on inputs of the same names and count but other values (a
    folder regenerated with other files or preprocessing) is another run."""
    t = torch.as_tensor(x).detach().cpu().contiguous()
    h = hashlib.sha256(f"{tuple(t.shape)} {t.dtype}".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]

"""The runs behind ``deepglass criticality`` (SPEC §7): mean-field scans and
power-law searches in resumable run directories.

- :func:`run_meanfield`: ``lambda_max`` and ``T_c`` of couplings ``W`` (Lanczos),
  then magnetization, overlap, free energy and susceptibility over temperature
  (at each field) and over the field (at a few temperatures), and the critical
  exponents fitted near ``T_c``.  Units of a :class:`deepglass.store.RunDir`
  of kind ``criticality-meanfield``: the spectrum (table ``spectrum``), one
  temperature curve per field (``curves_T``), one field curve per temperature
  (``curves_h``).  The spectrum is stored first, so a resumed run on a large
  graph does not repeat the Lanczos iteration.
- :func:`run_powerlaw`: train the reference nets (or take a user model), and at
  every checkpoint collect the four observables on held-out data and judge each
  (observable, layer) by :func:`~deepglass.criticality.powerlaws.power_law_verdict`.
  One unit per (net, checkpoint) in table ``verdicts`` of kind
  ``criticality-powerlaw``, with the observables' arrays beside it; training
  checkpoints (model + optimizer) go to ``checkpoints/`` so an interrupted
  training resumes from its last checkpoint.

Temperatures and fields are given relative to ``T_c`` (``T / T_c``, ``h / T_c``):
the same settings then fit any scale of couplings.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import DeepglassError

__all__ = ["MeanFieldConfig", "MeanFieldResult", "load_matrix", "coupling_info", "run_meanfield",
           "PowerLawConfig", "PowerLawResult", "run_powerlaw", "MATRIX_SUFFIXES"]

MATRIX_SUFFIXES = (".npy", ".npz")
KIND_MF = "criticality-meanfield"
KIND_PL = "criticality-powerlaw"


# ----------------------------------------------------------------------------------
# Mean field
# ----------------------------------------------------------------------------------
def load_matrix(path: str | Path, symmetrize: bool = False):
    """Couplings from a ``.npy`` (dense) or ``.npz`` file.

    An ``.npz`` is read as a SciPy sparse matrix when it was written by
    ``scipy.sparse.save_npz``, else as its single array (or the array named
    ``W``).  ``symmetrize`` turns a directed adjacency ``A`` into ``A + A^T``
    (the ``As`` of SPEC §1).
    """
    import scipy.sparse

    p = Path(path).expanduser()
    if not p.is_file():
        raise DeepglassError(f"matrix file {str(path)!r} not found")
    try:
        if p.suffix == ".npy":
            W = np.load(p, allow_pickle=False)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                files = list(z.files)
                if "format" in files and "indptr" in files or "row" in files and "format" in files:
                    W = scipy.sparse.load_npz(p)
                elif len(files) == 1:
                    W = z[files[0]]
                elif "W" in files:
                    W = z["W"]
                else:
                    raise DeepglassError(f"{p} holds arrays {', '.join(files[:8])}; store one "
                                         "array, one named 'W', or a scipy.sparse.save_npz matrix")
        else:
            raise DeepglassError(f"matrix files are {' or '.join(MATRIX_SUFFIXES)}, got {p.name}")
    except DeepglassError:
        raise
    except Exception as exc:  # corrupt zip, pickled object arrays, ...
        raise DeepglassError(f"cannot read matrix {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not scipy.sparse.issparse(W):
        W = np.asarray(W)
        if W.dtype.kind not in "fiub":
            raise DeepglassError(f"matrix {p} has dtype {W.dtype}, not numbers")
    if symmetrize:
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise DeepglassError(f"matrix {p} must be square, got shape {W.shape}")
        W = (W + W.T).tocsr() if scipy.sparse.issparse(W) else W + W.T
    return W


def coupling_info(W: Any) -> dict:
    """``kind, N, n_couplings`` (non-zero off-diagonal pairs counted twice; edges of a graph)."""
    import scipy.sparse

    from .meanfield import Couplings, _is_signed_graph

    if isinstance(W, Couplings) and W.source is not None:
        W = W.source
    if _is_signed_graph(W):
        return {"kind": "graph", "N": int(W.n_nodes), "n_edges": int(W.n_edges)}
    if scipy.sparse.issparse(W):
        return {"kind": "sparse", "N": int(W.shape[0]), "n_edges": int(W.nnz)}
    shape = getattr(W, "shape", None)
    if shape is not None and hasattr(W, "ndim") and not hasattr(W, "matvec"):
        return {"kind": "dense", "N": int(shape[0]), "n_edges": int(np.count_nonzero(np.asarray(W)))}
    return {"kind": "operator", "N": int(shape[0]) if shape else -1, "n_edges": -1}


@dataclass
class MeanFieldConfig:
    """Settings of a mean-field scan (temperatures and fields relative to ``T_c``).

    Attributes
    ----------
    source : str
        What the couplings are (a model name or a matrix file), for the record.
    curves : bool
        Solve the mean-field equations over (T, h); else only the spectrum.
    n_t, t_min, t_max, n_broad : grid of :func:`~deepglass.criticality.meanfield.default_grid`.
    fit_t_min, fit_t_max : float
        Window of ``|t| = |T/T_c - 1|`` where the exponents are fitted.
    fields : list of float
        ``h / T_c`` of the temperature curves.
    field_temps : list of float
        ``T / T_c`` of the field curves.
    h_max : float
        Field curves span ``h / T_c`` in ``[-h_max, h_max]`` (``n_h`` points).
    n_h : int
    lanczos_tol : float, optional
        Relative accuracy of ``lambda_max`` (default: ~10 eps of the operator).
    tol : float, optional
        Residual tolerance of the mean-field equations.
    seed : int
    """

    source: str = ""
    curves: bool = True
    n_t: int = 12
    t_min: float = 1e-3
    t_max: float = 0.3
    n_broad: int = 12
    fit_t_min: float = 1e-3
    fit_t_max: float = 0.03
    fields: list = field(default_factory=lambda: [0.0, 0.01])
    field_temps: list = field(default_factory=lambda: [0.5, 1.0, 1.5])
    h_max: float = 0.5
    n_h: int = 21
    lanczos_tol: float | None = None
    tol: float | None = None
    seed: int = 0

    def validate(self) -> None:
        if self.n_t < 0 or self.n_broad < 0 or self.n_h < 1:
            raise DeepglassError("n_t and n_broad must be >= 0 and n_h >= 1")
        if not 0 < self.t_min < self.t_max < 1:
            raise DeepglassError(f"need 0 < t_min < t_max < 1, got {self.t_min}, {self.t_max}")
        if not 0 < self.fit_t_min < self.fit_t_max:
            raise DeepglassError("need 0 < fit_t_min < fit_t_max")
        if any(not np.isfinite(h) for h in self.fields) or not self.fields:
            raise DeepglassError("fields must be finite numbers (at least one)")
        if any(not (np.isfinite(T) and T > 0) for T in self.field_temps):
            raise DeepglassError("field temperatures (T / T_c) must be positive")
        if not (np.isfinite(self.h_max) and self.h_max > 0):
            raise DeepglassError(f"h_max must be positive, got {self.h_max}")

    def to_dict(self) -> dict:
        return asdict(self)

    def temperatures(self, T_c: float) -> np.ndarray:
        from .meanfield import default_grid

        return default_grid(T_c, self.n_t, self.t_min, self.t_max, self.n_broad) if self.n_t \
            else np.linspace(0.1, 2.0, max(self.n_broad, 2)) * T_c


@dataclass
class MeanFieldResult:
    spectrum: dict
    curves_T: pd.DataFrame
    curves_h: pd.DataFrame
    exponents: pd.DataFrame
    seconds: float

    def headline(self) -> dict:
        out = {k: self.spectrum[k] for k in ("N", "n_edges", "lambda_max", "T_c", "matvecs",
                                              "lanczos_seconds", "kind")}
        if len(self.exponents):
            out["exponents"] = {r["exponent"]: (None if not np.isfinite(r["value"]) else r["value"])
                                for r in self.exponents.to_dict("records")}
        return out


def _curves_T_units(cfg: MeanFieldConfig) -> list[str]:
    return [f"h{i:03d}" for i in range(len(cfg.fields))] if cfg.curves else []


def _curves_h_units(cfg: MeanFieldConfig) -> list[str]:
    return [f"T{i:03d}" for i in range(len(cfg.field_temps))] if cfg.curves else []


def n_meanfield_units(cfg: MeanFieldConfig) -> int:
    return 1 + len(_curves_T_units(cfg)) + len(_curves_h_units(cfg))


def run_meanfield(W: Any, cfg: MeanFieldConfig, run=None,
                  advance: Callable[[], None] | None = None) -> MeanFieldResult:
    """Spectrum, curves and exponents of couplings ``W`` (see the module docstring).

    Parameters
    ----------
    W : couplings accepted by :func:`~deepglass.criticality.meanfield.coupling_operator`
    cfg : MeanFieldConfig
    run : deepglass.store.RunDir, optional
        Of kind ``criticality-meanfield``; finished units are read back, not recomputed.
    advance : callable, optional
        Called once per finished unit.

    Returns
    -------
    MeanFieldResult
    """
    from . import meanfield as mf

    cfg.validate()
    t0 = time.perf_counter()
    advance = advance or (lambda: None)
    C = mf.coupling_operator(W)
    info = coupling_info(W)

    def done(table, unit):
        return run is not None and run.has_unit(table, unit)

    def read(table, unit):
        return run.read_unit(table, unit)

    if done("spectrum", "spectrum"):
        spectrum = read("spectrum", "spectrum").iloc[0].to_dict()
    else:
        ts = time.perf_counter()
        lam = mf.lambda_max(C, tol=cfg.lanczos_tol, seed=cfg.seed)
        spectrum = {**info, "lambda_max": lam, "T_c": lam / C.n, "matvecs": C.n_matvec,
                    "lanczos_seconds": time.perf_counter() - ts}
        if run is not None:
            run.write_unit("spectrum", "spectrum", pd.DataFrame([spectrum]))
    advance()
    T_c = float(spectrum["T_c"])
    curves_T, curves_h, exps = [], [], pd.DataFrame()
    if cfg.curves:
        if not T_c > 0:
            raise DeepglassError(f"no mean-field transition: lambda_max = {spectrum['lambda_max']:.4g} "
                                 "<= 0, the paramagnet is stable at every temperature; use --no-curves")
        kw = dict(tol=cfg.tol, seed=cfg.seed)
        temps = cfg.temperatures(T_c)
        for unit, h in zip(_curves_T_units(cfg), cfg.fields):
            if done("curves_T", unit):
                df = read("curves_T", unit)
            else:
                df = mf.mean_field_curves(C, temps, [h * T_c], **kw)
                df.insert(0, "h_rel", h)
                df.insert(0, "T_rel", df["T"] / T_c)
                if run is not None:
                    run.write_unit("curves_T", unit, df)
            curves_T.append(df)
            advance()
        hs = np.linspace(-cfg.h_max, cfg.h_max, cfg.n_h) * T_c if cfg.n_h > 1 else np.array([0.0])
        for unit, Tr in zip(_curves_h_units(cfg), cfg.field_temps):
            if done("curves_h", unit):
                df = read("curves_h", unit)
            else:
                df = mf.mean_field_curves(C, [Tr * T_c], hs, **kw)
                df.insert(0, "h_rel", df["h"] / T_c)
                df.insert(0, "T_rel", Tr)
                if run is not None:
                    run.write_unit("curves_h", unit, df)
            curves_h.append(df)
            advance()
        curves_T = pd.concat(curves_T, ignore_index=True)
        curves_h = pd.concat(curves_h, ignore_index=True)
        exps = mf.critical_exponents(curves_T, T_c, t_min=cfg.fit_t_min, t_max=cfg.fit_t_max)
    else:
        curves_T = curves_h = pd.DataFrame()
    return MeanFieldResult(spectrum, curves_T, curves_h, exps, time.perf_counter() - t0)


def meanfield_report(cfg: MeanFieldConfig, res: MeanFieldResult, figures: Sequence[str]) -> str:
    """The ``criticality-meanfield`` section of ``report.md``."""
    from ..store import markdown_table as md_table

    s = res.spectrum
    lines = ["## Mean field (SPEC §7)", "",
             f"Couplings: `{cfg.source}` ({s['kind']}), N = {int(s['N'])}, "
             f"{int(s['n_edges'])} non-zero couplings.", "",
             f"lambda_max(W) = {s['lambda_max']:.8g} (Lanczos, {int(s['matvecs'])} products W x, "
             f"{s['lanczos_seconds']:.3g} s); **T_c = lambda_max / N = {s['T_c']:.8g}**.", ""]
    if len(res.curves_T):
        conv = bool(res.curves_T["converged"].all() and res.curves_h["converged"].all())
        lines += [f"Temperature curves at h / T_c in {list(cfg.fields)} ({res.curves_T['T'].nunique()} "
                  f"temperatures, log-spaced |t| in [{cfg.t_min:g}, {cfg.t_max:g}] plus a broad grid); "
                  f"field curves at T / T_c in {list(cfg.field_temps)} over h / T_c in "
                  f"[-{cfg.h_max:g}, {cfg.h_max:g}]. All solutions converged: {conv}.", "",
                  f"Critical exponents fitted on {cfg.fit_t_min:g} <= |t| <= {cfg.fit_t_max:g} "
                  "(mean-field values: beta = 1/2, gamma = 1):", "",
                  md_table(res.exponents[["exponent", "value", "stderr", "n_points", "mean_field"]]),
                  ""]
    else:
        lines += ["No curves (spectrum only).", ""]
    lines += [f"![{f}](figures/{f})" for f in figures]
    lines += ["", "Tables: `meanfield_curves_T.parquet`, `meanfield_curves_h.parquet`, "
              "`meanfield_exponents.parquet`.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------
# Power laws in trained networks
# ----------------------------------------------------------------------------------
@dataclass
class PowerLawConfig:
    """Settings of a power-law search.

    Attributes
    ----------
    nets : list of str
        Reference nets to train (``feedforward``, ``cnn``, ``autoencoder``), or
        one label of a user model (``user_model`` true).
    user_model : bool
    data : str
        ``mnist`` (default), ``digits``, a CIFAR-10 directory or an image folder.
    epochs, checkpoint_every, batch_size, lr : training (Adam) settings.
    max_train, max_test : int, optional
        Subsample the data (held-out images are what the observables see).
    layers : list of str, optional
        Module paths to observe (default: the hidden ReLUs).
    n_passes, threshold : inference passes and the activity threshold.
    n_boot, n_xmin : power-law fit settings (see ``power_law_verdict``).
    max_samples : int
        Larger samples (the weights of a big layer) are judged on a seeded
        uniform subsample of this size.
    subset_size, n_subsets : int
        The random unit subsets whose binary words make the pattern observable
        (:func:`deepglass.criticality.observables.choose_subsets`).
    seed : int
    """

    nets: list = field(default_factory=lambda: ["feedforward", "cnn", "autoencoder"])
    user_model: bool = False
    data: str = "mnist"
    epochs: int = 10
    checkpoint_every: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    max_train: int | None = None
    max_test: int | None = None
    layers: list | None = None
    n_passes: int = 1
    threshold: float = 0.0
    n_boot: int = 50
    n_xmin: int = 30
    max_samples: int = 1_000_000
    subset_size: int = 10
    n_subsets: int = 16
    seed: int = 0

    def validate(self) -> None:
        from .nets import canonical_name, checkpoint_epochs
        from .observables import choose_subsets

        choose_subsets(1, self.subset_size, self.n_subsets)
        if not self.nets:
            raise DeepglassError("no network to study")
        if not self.user_model:
            bad = [n for n in self.nets if canonical_name(n) is None]
            if bad:
                raise DeepglassError(f"unknown reference net {bad[0]!r}; choose from feedforward, "
                                     "cnn, autoencoder (or all), or give a model file")
            self.nets = [canonical_name(n) for n in self.nets]
        checkpoint_epochs(self.epochs, self.checkpoint_every)
        for name in ("n_passes", "batch_size", "n_xmin", "max_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepglassError(f"{name} must be a positive integer, got {v!r}")
        if self.n_boot < 0:
            raise DeepglassError(f"n_boot must be >= 0, got {self.n_boot}")

    def to_dict(self) -> dict:
        return asdict(self)

    def epochs_for(self, net: str) -> list[int]:
        from .nets import checkpoint_epochs

        return [0] if self.user_model else checkpoint_epochs(self.epochs, self.checkpoint_every)


def unit_id(net: str, epoch: int) -> str:
    return f"{net}_e{epoch:04d}"


@dataclass
class PowerLawResult:
    """All verdict rows (one per net x checkpoint x observable x layer)."""

    verdicts: pd.DataFrame
    data: dict
    seconds: float

    def final(self) -> pd.DataFrame:
        """Rows of each net's last checkpoint."""
        v = self.verdicts
        if not len(v):
            return v
        last = v.groupby("net")["epoch"].transform("max")
        return v[v["epoch"] == last].reset_index(drop=True)

    def headline(self) -> dict:
        fin = self.final()
        counts = {net: {k: int(c) for k, c in g["verdict"].value_counts().items()}
                  for net, g in fin.groupby("net")} if len(fin) else {}
        plausible = fin[fin["verdict"] == "plausible"] if len(fin) else fin
        return {"data": self.data, "n_verdicts": int(len(self.verdicts)),
                "final_verdicts": counts,
                "plausible": [f"{r['net']}:{r['observable']}:{r['layer']} (alpha {r['alpha']:.2f})"
                              for r in plausible.to_dict("records")],
                "seconds": self.seconds}


def _subsample(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    if x.size <= k:
        return x
    return np.random.default_rng(seed).choice(x, k, replace=False)


def judge_observables(obs, cfg: PowerLawConfig, keys: dict) -> pd.DataFrame:
    """One verdict row per (observable, layer) of ``obs`` (an :class:`Observables`).

    A frequency observable where fewer than :data:`MIN_RECURRING` patterns occur
    more than once gets ``"too little data"`` (a rank/frequency law of words seen
    once says nothing), as does any sample :func:`power_law_verdict` finds too
    small or constant.
    """
    from .observables import MIN_RECURRING, observable_samples
    from .powerlaws import TOO_LITTLE, PowerLawVerdict, power_law_verdict

    rows = []
    for k, samples, discrete in observable_samples(obs):
        n_all = int(np.size(samples))
        x = _subsample(np.asarray(samples), cfg.max_samples, cfg.seed)
        recurring = int(np.sum(np.asarray(samples) >= 2))
        if k["observable"] == "pattern_frequency" and recurring < MIN_RECURRING:
            v = PowerLawVerdict(TOO_LITTLE, f"only {recurring} of {n_all} patterns occur more "
                                f"than once (need {MIN_RECURRING})", n=n_all, discrete=True,
                                n_boot=0)
        else:
            v = power_law_verdict(x, discrete=discrete, n_boot=cfg.n_boot, n_xmin=cfg.n_xmin,
                                  seed=cfg.seed)
        rows.append({**keys, **k, "n_values": n_all, **v.as_dict()})
    return pd.DataFrame(rows)


def run_powerlaw(cfg: PowerLawConfig, run=None, model=None, data=None,
                 advance: Callable[[], None] | None = None,
                 log: Callable[[str], None] | None = None) -> PowerLawResult:
    """Observables and power-law verdicts across checkpoints (see the module docstring).

    Parameters
    ----------
    cfg : PowerLawConfig
    run : deepglass.store.RunDir, optional
        Of kind ``criticality-powerlaw``; finished units and training
        checkpoints are reused.
    model : nn.Module, optional
        The user model (``cfg.user_model``); observed as given, not trained.
    data : ImageData, optional
        Default: ``load_dataset(cfg.data, ...)``.
    advance : callable, optional
        Called once per finished (net, checkpoint) unit.
    log : callable, optional
        Receives one line per trained epoch / finished unit.
    """
    import torch

    from .data import load_dataset
    from .nets import build_reference_net, checkpoint_bytes, load_checkpoint, train_reference_net
    from .observables import collect_observables

    cfg.validate()
    t0 = time.perf_counter()
    advance = advance or (lambda: None)
    log = log or (lambda s: None)
    if cfg.user_model and model is None:
        raise DeepglassError("a user-model run needs the model")
    if data is None:
        data = load_dataset(cfg.data, seed=cfg.seed, max_train=cfg.max_train, max_test=cfg.max_test)
    memory: dict[str, pd.DataFrame] = {}

    def has(uid):
        return uid in memory or (run is not None and run.has_unit("verdicts", uid))

    def analyse(net, epoch, mdl, metrics):
        uid = unit_id(net, epoch)
        if has(uid):
            return
        ts = time.perf_counter()
        obs = collect_observables(mdl, data.X_test, cfg.layers, n_passes=cfg.n_passes,
                                  threshold=cfg.threshold, subset_size=cfg.subset_size,
                                  n_subsets=cfg.n_subsets, seed=cfg.seed)
        keys = {"net": net, "epoch": int(epoch), "test_loss": float(metrics.get("loss", np.nan)),
                "test_accuracy": float(metrics.get("accuracy", np.nan))}
        df = judge_observables(obs, cfg, keys)
        df["unit_seconds"] = time.perf_counter() - ts
        if run is not None:
            run.write_unit("verdicts", uid, df, arrays=obs.arrays())
        else:
            memory[uid] = (df, obs)
        log(f"{net} epoch {epoch}: {len(df)} verdicts in {time.perf_counter() - ts:.1f} s")
        advance()

    for net in cfg.nets:
        epochs = cfg.epochs_for(net)
        if all(has(unit_id(net, e)) for e in epochs):
            for _ in epochs:
                advance()
            continue
        if cfg.user_model:
            from .nets import evaluate

            metrics = evaluate(model, data.X_test, data.y_test) \
                if getattr(model, "task", None) else {}
            analyse(net, 0, model, metrics)
            continue
        mdl = build_reference_net(net, data.input_shape, data.n_classes, seed=cfg.seed)
        ck_dir = run.path / "checkpoints" if run is not None else None
        start = None
        if ck_dir is not None:
            # a checkpoint counts when it matches the manifest (a damaged one is retrained)
            saved = [e for e in epochs if run.has_file(f"checkpoints/{unit_id(net, e)}.pt")
                     and has(unit_id(net, e))]
            if saved:
                start = load_checkpoint(ck_dir / f"{unit_id(net, max(saved))}.pt")
                mdl.load_state_dict(start["model"])
                for e in epochs:
                    if e <= start["epoch"]:
                        advance()
                log(f"{net}: resuming from the checkpoint of epoch {start['epoch']}")

        def on_checkpoint(epoch, m, opt, metrics, net=net):
            analyse(net, epoch, m, metrics)
            if ck_dir is not None:
                rel = f"checkpoints/{unit_id(net, epoch)}.pt"
                if not run.has_file(rel):
                    run.write_file(rel, checkpoint_bytes(m, opt, epoch, metrics))

        with torch.random.fork_rng(devices=[]):
            hist = train_reference_net(mdl, data, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                       lr=cfg.lr, seed=cfg.seed,
                                       checkpoint_every=cfg.checkpoint_every, start=start,
                                       on_checkpoint=on_checkpoint)
        if len(hist):
            log(f"{net}: trained {len(hist)} epochs in {hist['seconds'].sum():.1f} s, "
                f"test loss {hist['test_loss'].iloc[-1]:.4g}")
    if run is not None:
        verdicts = run.read_units("verdicts")
    else:
        verdicts = pd.concat([d for d, _ in memory.values()], ignore_index=True) if memory \
            else pd.DataFrame()
    if len(verdicts):
        order = {n: i for i, n in enumerate(cfg.nets)}
        verdicts = verdicts.sort_values(["net", "epoch"], key=lambda s: s.map(order)
                                        if s.name == "net" else s, kind="stable")
        verdicts = verdicts[verdicts["net"].isin(cfg.nets)].reset_index(drop=True)
    res = PowerLawResult(verdicts, data.describe(), time.perf_counter() - t0)
    res._memory = memory  # observables of an in-memory run, for figures
    return res


def final_observables(res: PowerLawResult, run, net: str):
    """The :class:`Observables` of ``net``'s last checkpoint (from the run or memory)."""
    from .observables import Observables

    fin = res.final()
    epoch = int(fin[fin["net"] == net]["epoch"].iloc[0])
    uid = unit_id(net, epoch)
    mem = getattr(res, "_memory", {})
    if uid in mem:
        return mem[uid][1], epoch
    return Observables.from_arrays(run.load_arrays(f"{KIND_PL}/verdicts/{uid}")), epoch


def powerlaw_report(cfg: PowerLawConfig, res: PowerLawResult, figures: Sequence[str]) -> str:
    """The ``criticality-powerlaw`` section of ``report.md``."""
    from ..store import markdown_table as md_table

    fin = res.final()
    d = res.data
    what = ("user model " + cfg.nets[0] + " (as given)") if cfg.user_model else \
        (f"reference nets {', '.join(cfg.nets)} trained with Adam (lr {cfg.lr:g}, batch "
         f"{cfg.batch_size}) for {cfg.epochs} epochs, checkpoints at epochs "
         f"{cfg.epochs_for(cfg.nets[0])}")
    lines = ["## Power laws in trained networks (SPEC §7)", "",
             f"Data: {d['name']} ({d['n_train']} training / {d['n_test']} held-out images of shape "
             f"{tuple(d['input_shape'])}). Networks: {what}.", "",
             f"Observables over {cfg.n_passes} inference pass(es) on the held-out images: |weights| "
             "per dense / conv layer; counts of the binary activation words of "
             f"{cfg.n_subsets} random subsets of {cfg.subset_size} units per layer (unit active "
             f"when its output > {cfg.threshold:g}; whole-layer patterns almost never recur), "
             "pooled; active counts per unit; mean layer activation per image. "
             "`too little data`: fewer than 10 recurring patterns, or a sample too small or "
             "constant to judge. "
             f"Verdicts: Clauset-Shalizi-Newman with the `powerlaw` package, {cfg.n_boot} bootstrap "
             f"sets, {cfg.n_xmin} x_min candidates; samples above {cfg.max_samples} values are "
             "subsampled.", "",
             "### Verdicts at the last checkpoint", ""]
    cols = ["net", "epoch", "observable", "layer", "verdict", "alpha", "xmin", "n_tail",
            "decades", "p_value", "R_lognormal", "R_exponential", "R_truncated_power_law", "reason"]
    lines += [md_table(fin[cols]) if len(fin) else "(no verdicts)", ""]
    if len(res.verdicts) and res.verdicts["epoch"].nunique() > 1:
        across = (res.verdicts.groupby(["net", "epoch"])["verdict"].value_counts()
                  .unstack(fill_value=0).reset_index())
        acc = res.verdicts.groupby(["net", "epoch"])[["test_loss", "test_accuracy"]].first().reset_index()
        across = across.merge(acc, on=["net", "epoch"])
        lines += ["### Across checkpoints", "", md_table(across), ""]
    lines += [f"![{f}](figures/{f})" for f in figures]
    lines += ["", "Table: `powerlaw_verdicts.parquet` (every net x checkpoint x observable x layer).", ""]
    return "\n".join(lines)

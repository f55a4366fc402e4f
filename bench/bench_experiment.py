"""Benchmark: the frustration experiment on the digits CNN (paper 000, Fig. 2 protocol).

Real weights (80 replicas) vs N1, N2, N3-xavier, N3-he (80 draws x 2 starts
each) into a run directory, as ``deepglass frustration digits_cnn --nulls
N1,N2,N3 --out RUN`` does.  Prints the statistics table, the total time, and
the overhead of the store and the executor per unit against the unit's own
compute (target < 5%).

    python bench/bench_experiment.py [--instances 80] [--replicas 80] [--executor ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("MPLBACKEND", "Agg")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=80)
    ap.add_argument("--instances", type=int, default=80)
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--nulls", default="N1,N2,N3")
    ap.add_argument("--executor", default="inprocess", choices=["inprocess", "ray"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import pandas as pd
    import torch

    from deepglass import zoo
    from deepglass.executors import get_executor
    from deepglass.experiments.frustration import frustration_vs_nulls

    t0 = time.perf_counter()
    net = zoo.get("digits_cnn", pretrained=True)
    print(f"digits_cnn loaded in {time.perf_counter() - t0:.1f} s; "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    # warm-up: imports, numba and torch first calls are not part of a unit's cost
    frustration_vs_nulls(net, replicas=2, null_instances=1, nulls="all", seed=99)

    with tempfile.TemporaryDirectory() as tmp, get_executor(args.executor) as ex:
        run = os.path.join(tmp, "run")
        kw = dict(replicas=args.replicas, null_instances=args.instances,
                  starts_per_null=args.starts, nulls=args.nulls, seed=args.seed, executor=ex,
                  run=run, model_name="digits_cnn")
        t0 = time.perf_counter()
        res = frustration_vs_nulls(net, **kw)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        again = frustration_vs_nulls(net, **kw)  # finished: every unit is resumed
        resume = time.perf_counter() - t1
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(run) for f in fs)

    info = res.info
    pd.set_option("display.width", 120)
    print(f"\n{info['nodes']:,} nodes, {info['edges']:,} edges; {args.replicas} real replicas, "
          f"{args.instances} draws x {args.starts} starts of {args.nulls}; "
          f"executor {args.executor}")
    print(res.stats.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(res.verdict)
    runs = res.runs
    per_kind = runs.groupby("kind", sort=False).agg(
        rows=("energy", "size"), solve_s=("seconds", "sum"), build_s=("build_seconds", "sum"),
        sweeps=("sweeps", "mean"))
    print("\ntime per kind (solver and null draw + tracing, summed over rows):")
    print(per_kind.to_string(float_format=lambda x: f"{x:.2f}"))

    n = info["units"]
    compute, store, loop = info["compute_seconds"], info["store_seconds"], info["loop_seconds"]
    final = info["wall_seconds"] - loop - info["setup_seconds"]
    print(f"\ntotal: {wall / 60:.2f} min ({wall:.1f} s) for {n} units")
    executor_s = loop - compute  # what the loop adds to the units' own compute
    print(f"per unit: compute {1e3 * compute / n:.1f} ms; store {1e3 * store / n:.2f} ms on the "
          f"writer thread; loop wall minus compute {1e3 * executor_s / n:.2f} ms")
    if args.executor == "inprocess":
        print(f"overhead of store + executor per unit: {100 * executor_s / compute:.2f}% "
              f"of the unit's compute (target < 5%)")
    else:  # units run side by side: compare the loop's wall time with their summed compute
        print(f"units' summed compute {compute:.1f} s in {loop:.1f} s of wall time "
              f"(speed-up {compute / loop:.2f}x, Ray start-up included)")
    print(f"setup (tracing, weights digest, run directory): {info['setup_seconds']:.2f} s")
    print(f"assembling tables, gauge, figure, report: {final:.2f} s; run directory "
          f"{size / 1e6:.1f} MB")
    print(f"re-running the finished run (all {again.info['resumed']} units resumed): {resume:.2f} s")


if __name__ == "__main__":
    main()

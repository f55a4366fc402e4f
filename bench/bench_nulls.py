"""Null model figures (issue: frustration vs null models).  Prints:

- the digits CNN: build time of every null kind (module and graph level);
- AlexNet (random init stands in for pretrained weights, 0.66 B edges): build
  time and memory of every null kind, then one replica of ``descent`` to a
  single-flip local minimum on the real weights and on one N2 instance: seconds,
  sweeps, the ratio (target <= 2) and the peak resident memory (target <= 8 GB);
  and the cost of one full ``As sigma`` on each, measured alternately.

Memory figures are the process's resident set (VmRSS) and its peak (VmHWM,
reset before each step).

Run::

    python bench/bench_nulls.py                  # everything (AlexNet: minutes)
    python bench/bench_nulls.py --skip-alexnet   # the digits CNN only (seconds)
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import torch

import deepglass
from deepglass.experiments.nulls import NULL_KINDS, null_model
from deepglass.graph import SignedGraph
from deepglass.zoo import get

from bench_frustration import peak_gb, reset_peak, rss_gb   # same folder: run as a script


def timed(fn, *args, **kwargs):
    reset_peak()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def build_table(name: str, model, graph: SignedGraph, seed: int) -> None:
    print(f"\n== {name}: {graph.n_nodes:,} nodes, {graph.n_edges:,} edges ==")
    print(f"{'null':>10} {'level':>6} {'seconds':>9} {'peak GB':>8} {'RSS GB':>7}  result")
    for kind in NULL_KINDS:
        levels = [("graph", graph)] + ([] if kind == "N2" else [("module", model)])
        for level, obj in levels:
            null, sec = timed(null_model, obj, kind, seed)
            what = repr(null) if isinstance(null, SignedGraph) else type(null).__name__
            print(f"{kind:>10} {level:>6} {sec:9.2f} {peak_gb():8.2f} {rss_gb():7.2f}  {what}")
            del null
            gc.collect()


def descent_once(graph: SignedGraph, seed: int, engine: str = "auto"):
    res, sec = timed(deepglass.frustration, graph, method="descent", replicas=1, seed=seed,
                     engine=engine)
    return res, sec, peak_gb()


def operator_seconds(g: SignedGraph, g2: SignedGraph, reps: int = 3) -> tuple[float, float]:
    """Median seconds of ``As sigma`` on each graph, alternating (the machine's load
    drifts, so back-to-back pairs compare better than two separate runs)."""
    sigma = torch.ones(1, g.n_nodes)
    sigma[:, ::3] = -1
    times = {0: [], 1: []}
    for _ in range(reps):
        for k, graph in enumerate((g, g2)):
            t0 = time.perf_counter()
            graph.sym_matvec(sigma)
            times[k].append(time.perf_counter() - t0)
    return float(np.median(times[0])), float(np.median(times[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-alexnet", action="store_true", help="digits CNN only")
    ap.add_argument("--skip-builds", action="store_true",
                    help="AlexNet: no build table, only the N2 descent comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")

    digits = get("digits_cnn", pretrained=True)
    build_table("digits_cnn (trained)", digits,
                SignedGraph.from_module(digits, digits.default_input_shape), args.seed)
    if args.skip_alexnet:
        return

    alexnet = get("alexnet")
    g, sec = timed(SignedGraph.from_module, alexnet, alexnet.default_input_shape)
    print(f"\nAlexNet traced in {sec:.1f} s; RSS {rss_gb():.2f} GB")
    if not args.skip_builds:
        build_table("AlexNet (random init)", alexnet, g, args.seed)

    # the numba kernels compiled (or loaded from the cache) outside the timings: a
    # first run after installing would time the compilation too
    small = SignedGraph.from_module(digits, digits.default_input_shape)
    for engine in ("compiled", "matrix-free"):
        deepglass.frustration(small, method="descent", replicas=2, engine=engine)
    # like for like: the real weights and the N2 instance on each engine (the
    # compiled one runs N2's unshared convolutions as per-position stencils),
    # then what `auto` picks for each
    from deepglass.solve.engines import choose_engine, engine_estimates

    engines = ("compiled", "matrix-free")
    real = {}
    for engine in engines:
        r, t, p = descent_once(g, args.seed, engine=engine)
        real[engine] = t
        print(f"\nreal weights ({engine}): 1 replica descent {t:.1f} s (solver {r.seconds:.1f} s, "
              f"{int(r.sweeps)} sweeps), eps = {r.frustration:.4f}, local min "
              f"{bool(r.local_min.all())}, peak {p:.2f} GB")
    g2, t_build = timed(null_model, g, "N2", args.seed)
    p_build = peak_gb()
    print(f"N2 instance: build {t_build:.1f} s (peak {p_build:.2f} GB)")
    op_real, op_null = operator_seconds(g, g2)
    print(f"one full As.sigma (median of 3, interleaved): real {op_real:.2f} s, N2 "
          f"{op_null:.2f} s, ratio {op_null / op_real:.2f}")
    null, peaks = {}, []
    est = engine_estimates(g2, 1)
    for engine in engines:
        before = rss_gb()
        r, t, p = descent_once(g2, args.seed, engine=engine)
        null[engine] = t
        peaks.append(p)
        e = est[engine]
        print(f"N2 ({engine}): 1 replica descent {t:.1f} s (solver {r.seconds:.1f} s, "
              f"{int(r.sweeps)} sweeps), eps = {r.frustration:.4f}, local min "
              f"{bool(r.local_min.all())}, peak {p:.2f} GB ({p - before:.2f} GB beyond the "
              f"process before it; estimate {e.gb():.2f} GB, {e.seconds:.1f} s)")
        print(f"  ratio N2 / real on {engine}: {t / real[engine]:.2f}   build + descent: "
              f"{(t_build + t) / real[engine]:.2f}   (target <= 2)")
    auto_real, auto_null = choose_engine(g, 1), choose_engine(g2, 1)
    print(f"auto picks {auto_real} for the real weights and {auto_null} for N2: ratio "
          f"{null[auto_null] / real[auto_real]:.2f}   build + descent: "
          f"{(t_build + null[auto_null]) / real[auto_real]:.2f}")
    print(f"peak resident memory of the N2 instance: build {p_build:.2f} GB, descent "
          + ", ".join(f"{e} {p:.2f} GB" for e, p in zip(engines, peaks)) + " (target <= 8 GB)")


if __name__ == "__main__":
    main()

"""Benchmark of the explicit greedy descent (paper 000, Algorithm 1).

Prints, as tables:

1. scaling on random sparse signed DAGs (average degree 20) up to ~10^7 edges:
   seconds (``setup_s``: validation, fields and heap, measured with
   ``max_flips=0``), flips, flips per second (overall and of the descent
   alone) and memory (estimate and peak RSS);
2. a LeNet-like network on a 1x28x28 input with random He-normal weights
   (conv5x5x6 - avgpool2 - conv5x5x16 - avgpool2 - dense 120 - 84 - 10, built
   directly as a sparse signed DAG): 80 replicas from the paper's start gauges.

Usage::

    python bench/bench_greedy.py            # full run (10^7 edges, ~2 GB RAM)
    python bench/bench_greedy.py --quick    # up to 10^6 edges
"""

from __future__ import annotations

import argparse
import resource
import time

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepglass.solve.greedy import greedy, greedy_memory_bytes, paper_gauges, random_gauges


def random_signed_dag(n: int, m: int, seed: int) -> sp.csr_matrix:
    """As = A + A^T of a random DAG with ~m edges i -> j (i < j), N(0,1) weights."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, m)
    j = rng.integers(0, n, m)
    keep = i != j
    i, j = i[keep], j[keep]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    w = rng.standard_normal(len(lo))
    A = sp.coo_matrix((w, (lo, hi)), shape=(n, n)).tocsr()  # duplicates summed
    return (A + A.T).tocsr()


def _conv_edges(cin, h, cout, k, W, off_in, off_out):
    ho = h - k + 1
    co, ci, a, b, y, x = np.indices((cout, cin, k, k, ho, ho), sparse=True)
    src = off_in + ci * h * h + (y + a) * h + (x + b)
    dst = off_out + co * ho * ho + y * ho + x
    val = W[co, ci, a, b] + 0 * y + 0 * x
    shape = np.broadcast_shapes(src.shape, dst.shape)
    return [np.broadcast_to(t, shape).ravel() for t in (src, dst, val)], ho


def _pool_edges(c, h, p, off_in, off_out):
    ho = h // p
    ch, a, b, y, x = np.indices((c, p, p, ho, ho), sparse=True)
    src = off_in + ch * h * h + (y * p + a) * h + (x * p + b)
    dst = off_out + ch * ho * ho + y * ho + x
    shape = np.broadcast_shapes(src.shape, dst.shape)
    val = np.full(shape, 1.0 / (p * p))  # SPEC §1: pooling weight 1/|window|
    return [np.broadcast_to(t, shape).ravel() for t in (src, dst)] + [val.ravel()], ho


def lenet_like(seed: int) -> tuple[sp.csr_matrix, list[int]]:
    """Signed DAG of a random LeNet-5-like net on 1x28x28 (SPEC §1 rules)."""
    rng = np.random.default_rng(seed)
    parts, sizes = [], [28 * 28]
    off = 0

    def he(*shape, fan_in):
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)

    (e, h) = _conv_edges(1, 28, 6, 5, he(6, 1, 5, 5, fan_in=25), off, off + sizes[-1])
    parts.append(e); off += sizes[-1]; sizes.append(6 * h * h)
    (e, h) = _pool_edges(6, h, 2, off, off + sizes[-1])
    parts.append(e); off += sizes[-1]; sizes.append(6 * h * h)
    (e, h) = _conv_edges(6, h, 16, 5, he(16, 6, 5, 5, fan_in=150), off, off + sizes[-1])
    parts.append(e); off += sizes[-1]; sizes.append(16 * h * h)
    (e, h) = _pool_edges(16, h, 2, off, off + sizes[-1])
    parts.append(e); off += sizes[-1]; sizes.append(16 * h * h)
    for width in (120, 84, 10):
        fan_in = sizes[-1]
        W = he(fan_in, width, fan_in=fan_in)
        s, d = np.indices((fan_in, width))
        parts.append([off + s.ravel(), off + fan_in + d.ravel(), W.ravel()])
        off += fan_in
        sizes.append(width)
    n = sum(sizes)
    src, dst, val = (np.concatenate([p[k] for p in parts]) for k in range(3))
    A = sp.csr_matrix((val, (src, dst)), shape=(n, n))
    return (A + A.T).tocsr(), sizes


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stop at 10^6 edges")
    ap.add_argument("--replicas", type=int, default=80, help="replicas on the LeNet-like graph")
    args = ap.parse_args()
    threads = numba.get_num_threads()
    print(f"numba threads: {threads}")

    # warm-up: compile (or load the cached) kernels outside the timings
    warm = random_signed_dag(100, 1000, 0)
    greedy(warm, random_gauges(100, 2, 0))

    rows = []
    edges = [10**5, 10**6] if args.quick else [10**5, 10**6, 10**7]
    for m in edges:
        n = m // 10  # average degree 2m/n = 20
        t = time.perf_counter()
        As = random_signed_dag(n, m, 1)
        build = time.perf_counter() - t
        for R in (1, threads):
            s0 = paper_gauges(n, R, seed=2)
            setup = greedy(As, s0, max_flips=0, check_symmetric=False).seconds
            r = greedy(As, s0, check_symmetric=False)
            total = int(r.flips.sum())
            # setup and run are timed apart: on the smallest graph their difference
            # can be timing noise (even negative), which no rate can be read from
            descent = r.seconds - setup
            rows.append({
                "nodes": n, "edges": As.nnz // 2, "replicas": R, "build_s": round(build, 2),
                "setup_s": round(setup, 3), "greedy_s": round(r.seconds, 3), "flips": total,
                "flips_per_s": round(total / r.seconds),
                "descent_flips_per_s": (round(total / descent) if descent > 0.2 * r.seconds
                                        else float("nan")),
                "flips_per_node": round(total / (R * n), 3),
                "eps_best": round(r.best_energy, 5),
                "mem_est_GB": round(greedy_memory_bytes(n, As.nnz, R) / 1e9, 3),
                "peak_rss_GB": round(peak_rss_gb(), 2),
            })
        del As
    print("\nrandom sparse signed DAGs (average degree 20), paper start gauges")
    print(pd.DataFrame(rows).to_string(index=False))

    As, sizes = lenet_like(0)
    n = As.shape[0]
    s0 = paper_gauges(n, args.replicas, seed=3)
    r = greedy(As, s0, check_symmetric=False)
    e = r.energies
    print(f"\nLeNet-like 1x28x28, random He weights: layer sizes {sizes}")
    print(pd.DataFrame([{
        "nodes": n, "edges": As.nnz // 2, "replicas": args.replicas,
        "greedy_s": round(r.seconds, 3), "flips": int(r.flips.sum()),
        "flips_per_s": round(int(r.flips.sum()) / r.seconds),
        "eps_best": round(e.min(), 5), "eps_mean": round(e.mean(), 5), "eps_std": round(e.std(), 5),
        "all_local_min": bool(r.local_min.all()),
    }]).to_string(index=False))


if __name__ == "__main__":
    main()

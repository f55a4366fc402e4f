"""Benchmark: active subnetworks and their frustration (SPEC §4; paper 000, Fig. 2 inset).

1. Digits CNN (trained here): active-subgraph frustration ``delta_x`` of 500
   digits (Algorithm 1, 8 start gauges each, warm-started from the whole net's
   gauge) against ``delta`` of the whole network: time, delta vs mean
   ``delta_x``, fraction of inputs below.  Target: within minutes on 2 CPU cores.
2. AlexNet (random init, 3x224x224) on one natural image that ships with
   scikit-image (or scikit-learn; a random tensor if neither loads): active
   subgraph extraction and its frustration (descent, the compiled engine on
   the whole layers' stencils vs the matrix-free one).  Target: seconds.

Run:  python bench/bench_active.py [--n 500] [--skip-alexnet] [--replicas 8]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from deepglass.experiments.active import (active_frustration, active_subgraph,
                                          active_summary_stats)
from deepglass.experiments.active_run import active_table, whole_delta
from deepglass.graph import SignedGraph
from deepglass.inputs import load_inputs
from deepglass.zoo import get, load_model


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def digits(n: int, replicas: int) -> None:
    model = load_model("digits_cnn")
    g = SignedGraph.from_module(model, (1, 8, 8))
    batch = load_inputs("digits", (1, 8, 8), n=n, seed=0)
    print(f"Digits CNN: {g.n_nodes:,} nodes, {g.n_edges:,} edges; {len(batch)} digits")
    t = time.perf_counter()
    whole = whole_delta(g, "greedy", replicas=80, seed=0)
    print(f"  whole network delta (greedy, 80 starts): {whole.frustration:.5f}  "
          f"[{time.perf_counter() - t:.1f} s]")
    t = time.perf_counter()
    table = active_table(g, model, batch.x, batch.ids, delta=whole.frustration,
                         method="greedy", replicas=replicas, seed=0, warm_start=whole.sigma)
    dt = time.perf_counter() - t
    s = active_summary_stats(table, whole.frustration)
    print(f"  {len(table)} active subgraphs + delta_x (greedy, {replicas} starts): {dt:.1f} s "
          f"({1000 * dt / len(table):.0f} ms per input; extraction "
          f"{table['extract_seconds'].sum():.2f} s)")
    print(f"  kept: {s['frac_nodes_mean']:.3f} of nodes, {s['frac_edges_mean']:.3f} of edges "
          f"(mean)")
    print(f"  delta {whole.frustration:.5f} vs delta_x mean {s['delta_x_mean']:.5f}, median "
          f"{s['delta_x_median']:.5f} (min {s['delta_x_min']:.5f}, max {s['delta_x_max']:.5f})")
    print(f"  fraction of inputs with delta_x < delta: {s['frac_below_delta']:.3f}")
    cold = active_table(g, model, batch.x[:100], batch.ids[:100], method="greedy",
                        replicas=replicas, seed=0)
    print(f"  without the warm start (random starts only, first 100 inputs): delta_x mean "
          f"{cold['delta_x'].mean():.5f}, below delta "
          f"{float((cold['delta_x'] < whole.frustration).mean()):.3f}")


def alexnet(replicas: int) -> None:
    model = get("alexnet")
    g = SignedGraph.from_module(model, (3, 224, 224))
    x, what = None, None
    for source in ("skimage", "sklearn-images"):
        try:
            b = load_inputs(source, (3, 224, 224), n=1, seed=0)
            x, what = b.x, f"{b.ids[0]} (load_inputs('{source}'))"
            break
        except Exception as exc:  # noqa: BLE001 - report and fall back
            print(f"  {source} unavailable: {exc}")
    if x is None:
        x, what = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)), \
            "a random N(0,1) tensor"
    print(f"\nAlexNet (random init): {g.n_nodes:,} nodes, {g.n_edges:,} edges; input: {what}")
    t = time.perf_counter()
    subs = active_subgraph(g, model, x)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    subs = active_subgraph(g, model, x)
    t_again = time.perf_counter() - t
    row = subs.summary().iloc[0]
    print(f"  extraction: {t_first:.1f} s first call (one recording capture of the model), "
          f"{t_again:.1f} s per input after")
    print(f"  active subgraph: {int(row.nodes):,} nodes ({row.frac_nodes:.3f}), "
          f"{int(row.edges):,} edges ({row.frac_edges:.3f}), |weight| {row.frac_abs_weight:.3f}")
    sub = subs.subgraph(0)
    for opts, name in (({"engine": "compiled"}, "compiled engine: the whole layers' stencils, "
                        "removed nodes at gauge 0"),
                       ({"engine": "matrix-free"}, "matrix-free engine, masked operators"),
                       ({"engine": "matrix-free", "gamma": 0.0}, "matrix-free, gamma=0, all "
                        "negative fields at once")):
        t = time.perf_counter()
        r = active_frustration(sub, method="descent", replicas=replicas, seed=0, **opts)
        print(f"  delta_x by descent ({name}, {replicas} starts): {r['delta_x']:.5f}  "
              f"[{time.perf_counter() - t:.1f} s]")
    print(f"  peak memory {rss_gib():.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--alexnet-replicas", type=int, default=2)
    ap.add_argument("--skip-alexnet", action="store_true")
    a = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    digits(a.n, a.replicas)
    if not a.skip_alexnet:
        alexnet(a.alexnet_replicas)


if __name__ == "__main__":
    main()

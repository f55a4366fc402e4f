"""Frustration solver figures (issue: solvers).  Prints, in one run:

- AlexNet (random He init, 0.66 B edges): descent, 1 replica and R replicas, to a
  single-flip local minimum: seconds, sweeps, peak memory;
- small nets that the explicit greedy solver can hold: descent vs greedy
  (Algorithm 1) from the same start gauges: frustration and time ratio;
  anneal vs descent.

Run:  python bench/bench_frustration.py [--replicas 8] [--skip-alexnet]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
import torch.nn as nn

import deepglass
from deepglass.graph import SignedGraph
from deepglass.zoo import get


def rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def alexnet(replicas):
    g = SignedGraph.from_module(get("alexnet"), (3, 224, 224))
    print(f"AlexNet: {g.n_nodes:,} nodes, {g.n_edges:,} edges, "
          f"{torch.get_num_threads()} threads")
    for R in (1, replicas):
        t = time.perf_counter()
        r = deepglass.frustration(g, replicas=R, seed=0)
        dt = time.perf_counter() - t
        print(f"  descent R={R}: {dt:.1f} s, sweeps {r.sweeps}, delta {r.frustration:.5f}, "
              f"local minima {r.local_min.all()}, peak RSS {rss_gb():.2f} GB")


def small_nets():
    nets = {"digits_cnn": (get("digits_cnn", pretrained=True), (1, 8, 8)),
            "lenet 1x28x28 (random)": (get("mnist_lenet"), (1, 28, 28))}
    print("\ndescent vs greedy (Algorithm 1) from the same 16 start gauges")
    print(f"{'net':26s} {'edges':>10s} {'greedy':>9s} {'descent':>9s} {'anneal':>9s} "
          f"{'t_greedy':>9s} {'t_descent':>9s} {'speed-up':>9s} {'t_anneal':>9s}")
    for name, (m, shape) in nets.items():
        g = SignedGraph.from_module(m, shape)
        gr = deepglass.frustration(g, method="greedy", replicas=16, seed=1)
        de = deepglass.frustration(g, method="descent", replicas=16, seed=1)
        an = deepglass.frustration(g, method="anneal", replicas=16, seed=1)
        print(f"{name:26s} {g.n_edges:10,d} {gr.frustration:9.5f} {de.frustration:9.5f} "
              f"{an.frustration:9.5f} {gr.seconds:9.2f} {de.seconds:9.2f} "
              f"{gr.seconds / de.seconds:8.1f}x {an.seconds:9.2f}")
        print(f"{'':26s} {'mean':>10s} {gr.energies.mean():9.5f} {de.energies.mean():9.5f} "
              f"{an.energies.mean():9.5f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--skip-alexnet", action="store_true")
    a = ap.parse_args()
    small_nets()
    if not a.skip_alexnet:
        alexnet(a.replicas)

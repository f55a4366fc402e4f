"""Signed-graph figures: Table 1 reproduction, describe time/memory, local-field evaluation.

Run:  python bench/bench_graph.py  [--quick]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

import torch

from deepglass.graph import SignedGraph
from deepglass.zoo import get

# paper 000, Table 1: nodes (M), edges (B)
PAPER = {
    "shufflenet_v1": ("ShuffleNet", 3.91, 0.28, (3, 224, 224)),
    "squeezenet1_1": ("SqueezeNet", 3.27, 0.38, (3, 227, 227)),
    "resnet18": ("ResNet18", 3.01, 2.80, (3, 224, 224)),
    "alexnet_caffe": ("AlexNet", 0.94, 0.67, (3, 227, 227)),
    "alexnet": ("AlexNet (PyTorch)", 0.73, 0.66, (3, 224, 224)),
    "googlenet_bvlc": ("GoogLeNet", 4.80, 1.52, (3, 224, 224)),
    "googlenet": ("GoogLeNet (PyTorch)", 4.80, 1.45, (3, 224, 224)),
}


def table1():
    print("Table 1 reproduction (SPEC §1 rules; ours vs paper)")
    print(f"{'network':22s} {'nodes (M)':>10s} {'paper':>7s} {'dev':>7s} {'edges (B)':>10s} "
          f"{'paper':>7s} {'dev':>7s} {'describe s':>10s} {'alloc MB':>9s}")
    for name, (label, pn, pe, shape) in PAPER.items():
        model = get(name)
        tracemalloc.start()
        t = time.perf_counter()
        g = SignedGraph.from_module(model, shape)
        n, e = g.n_nodes, g.n_edges
        dt = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"{label:22s} {n / 1e6:10.3f} {pn:7.2f} {100 * (n / 1e6 / pn - 1):6.1f}% "
              f"{e / 1e9:10.3f} {pe:7.2f} {100 * (e / 1e9 / pe - 1):6.1f}% {dt:10.2f} {peak:9.1f}")
        del g, model


def fields(name="alexnet", shape=(3, 224, 224), Rs=(1, 8)):
    model = get(name).eval()
    g = SignedGraph.from_module(model, shape)
    print(f"\nlocal fields sigma * (As sigma) on {name} ({g.n_edges:,} edges), "
          f"{torch.get_num_threads()} threads")
    for R in Rs:
        s = torch.where(torch.rand(R, g.n_nodes) < 0.5, -1.0, 1.0)
        g.local_fields(s)  # warm-up
        t = time.perf_counter()
        for _ in range(3):
            g.local_fields(s)
        tf = (time.perf_counter() - t) / 3
        x = torch.randn((R,) + shape, requires_grad=True)
        model(x).sum().backward()
        t = time.perf_counter()
        for _ in range(3):
            x.grad = None
            model(x).sum().backward()
        tm = (time.perf_counter() - t) / 3
        print(f"  R={R}: fields {tf:.3f} s, model forward+backward {tm:.3f} s, "
              f"ratio {tf / tm:.2f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="Table 1 only")
    a = ap.parse_args()
    table1()
    if not a.quick:
        fields()
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")

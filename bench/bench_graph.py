"""Signed-graph figures: Table 1 reproduction, describe time/memory, local-field evaluation.

- Table 1 (paper 000) for all seven networks, ours (SPEC §1 rules) vs the paper;
  per network the seconds to describe the graph (trace + node / edge counts,
  no edge materialized; wall and CPU seconds, the latter unaffected by other
  processes on a shared machine) and the memory it took beyond the weights: the
  rise of the process's peak resident set (Linux VmHWM, reset before the
  description), which counts torch's allocations too;
- one batched evaluation of all local fields ``sigma * (As sigma)`` on AlexNet
  at R = 1 and R = 8, against one forward + backward pass of the model at the
  same batch.  Both are timed interleaved, best of ``--repeats`` (the machine
  is shared: the best run is the least disturbed one);
- a raw-audio 1-d CNN (59,049 samples, max pools of 3): its pools' matrices
  held sparse (the default above ``DENSE_ENTRIES``) against held dense, the
  memory the capture took and one batched field evaluation each.

Run:  python bench/bench_graph.py  [--quick] [--repeats 7]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

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


def reset_peak() -> None:
    """Reset the process's peak resident set (Linux VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def table1():
    print("Table 1 reproduction (SPEC §1 rules; ours vs paper)")
    print(f"{'network':22s} {'nodes (M)':>10s} {'paper':>7s} {'dev':>7s} {'edges (B)':>10s} "
          f"{'paper':>7s} {'dev':>7s} {'describe s':>10s} {'cpu s':>6s} {'+peak MB':>9s}")
    for name, (label, pn, pe, shape) in PAPER.items():
        model = get(name)
        gc.collect()
        reset_peak()
        before = status_mb("VmRSS")
        t, c = time.perf_counter(), time.process_time()
        g = SignedGraph.from_module(model, shape)
        n, e = g.n_nodes, g.n_edges
        dt, dc = time.perf_counter() - t, time.process_time() - c
        peak = status_mb("VmHWM") - before
        print(f"{label:22s} {n / 1e6:10.3f} {pn:7.2f} {100 * (n / 1e6 / pn - 1):6.1f}% "
              f"{e / 1e9:10.3f} {pe:7.2f} {100 * (e / 1e9 / pe - 1):6.1f}% {dt:10.2f} {dc:6.2f} {peak:9.1f}")
        del g, model


def fields(name="alexnet", shape=(3, 224, 224), Rs=(1, 8), repeats=7):
    model = get(name).eval()
    g = SignedGraph.from_module(model, shape)
    print(f"\nlocal fields sigma * (As sigma) on {name} ({g.n_edges:,} edges), "
          f"{torch.get_num_threads()} threads, best of {repeats} (interleaved)")
    for R in Rs:
        s = torch.where(torch.rand(R, g.n_nodes) < 0.5, -1.0, 1.0)
        x = torch.randn((R,) + shape, requires_grad=True)

        def fwd_bwd():
            x.grad = None
            model(x).sum().backward()

        tf, tm = [], []
        g.local_fields(s)  # warm-up
        fwd_bwd()
        for _ in range(repeats):
            t = time.perf_counter()
            g.local_fields(s)
            tf.append(time.perf_counter() - t)
            t = time.perf_counter()
            fwd_bwd()
            tm.append(time.perf_counter() - t)
        print(f"  R={R}: fields {min(tf):.3f} s (median {sorted(tf)[repeats // 2]:.3f}), "
              f"model forward+backward {min(tm):.3f} s (median {sorted(tm)[repeats // 2]:.3f}), "
              f"ratio of best {min(tf) / min(tm):.2f}x")


def long_pools(repeats=5):
    """A 1-d pool over a long signal: sparse vs dense per-dimension matrices."""
    import torch.nn as nn

    import deepglass.graph.blocks.pool as pool

    net = nn.Sequential(nn.Conv1d(1, 16, 3, stride=3), nn.ReLU(), nn.MaxPool1d(3, 3),
                        nn.Conv1d(16, 16, 3, padding=1), nn.MaxPool1d(3, 3)).eval()
    SignedGraph.from_module(net, (1, 999))     # warm-up (the exporter's first call)
    print("\nraw-audio 1-d CNN (1 x 59049), pools held sparse vs dense, R = 4")
    default = pool.DENSE_ENTRIES
    try:
        for label, limit in (("sparse", default), ("dense", 1 << 62)):
            pool.DENSE_ENTRIES = limit
            gc.collect()
            reset_peak()
            before = status_mb("VmRSS")
            g = SignedGraph.from_module(net, (1, 59049))
            peak = status_mb("VmHWM") - before
            s = torch.ones(4, g.n_nodes)
            g.local_fields(s)
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                g.local_fields(s)
                ts.append(time.perf_counter() - t)
            print(f"  {label:6s}: {g.n_edges:,} edges, capture +peak {peak:7.1f} MB, "
                  f"fields best {min(ts) * 1e3:7.1f} ms")
            del g
    finally:
        pool.DENSE_ENTRIES = default


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="Table 1 only")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    table1()
    if not a.quick:
        fields(repeats=a.repeats)
        long_pools(repeats=a.repeats)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")

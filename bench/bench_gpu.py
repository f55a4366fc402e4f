"""Frustration on a CUDA device (issue: solvers, GPU target).  Prints the time of
ResNet-18 at 3x224x224 (the zoo's, random init; 2.8 B edges in the paper's
count) with ``--replicas`` (default 80, the paper's) start gauges to
single-flip local minima with the matrix-free descent on the device:
seconds, sweeps, best and mean eps, whether all replicas ended at local
minima, peak device memory.  Target: under 2 minutes.  Whether the device
computes what the CPU does is ``tests/test_cuda.py``'s job.

Where torch sees no CUDA device it says so and exits 0.  ``--device cpu``
runs the same steps on the CPU (a check of this script; slow at 224).

Run::

    python bench/bench_gpu.py                          # the target
    python bench/bench_gpu.py --replicas 8 --side 64   # a quick look
    python -m pytest -q tests/test_cuda.py             # the device tests
"""

from __future__ import annotations

import argparse
import time

import torch

import deepglass
from deepglass.graph import SignedGraph
from deepglass.zoo import get


def resnet_target(device: str, replicas: int, side: int, seed: int) -> None:
    cuda = device.startswith("cuda")
    t = time.perf_counter()
    g = SignedGraph.from_module(get("resnet18"), (3, side, side))
    print(f"\nResNet-18 3x{side}x{side}: {g.n_nodes:,} nodes, {g.n_edges:,} edges "
          f"(described in {time.perf_counter() - t:.1f} s)")
    # a short run first: CUDA context, kernels and allocator warmed up outside the timing
    deepglass.frustration(g, replicas=1, seed=seed, device=device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t = time.perf_counter()
    r = deepglass.frustration(g, replicas=replicas, seed=seed, device=device)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    peak = (f", peak device memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
            if cuda else "")
    print(f"  descent ({r.info.get('engine')}) R={replicas} on {device}: {wall:.1f} s wall "
          f"({r.seconds:.1f} s in the solver, {wall / replicas:.2f} s per replica), "
          f"{r.sweeps} sweeps, best eps {r.frustration:.5f}, mean {r.energies.mean():.5f}, "
          f"all local minima {bool(r.local_min.all())}{peak}")
    print(f"  target < 120 s: {'met' if wall < 120 else 'not met'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--replicas", type=int, default=80)
    ap.add_argument("--side", type=int, default=224, help="input side of ResNet-18 (3xSxS)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: torch.cuda.is_available() is False; nothing to measure here")
        raise SystemExit(0)
    if a.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    resnet_target(a.device, a.replicas, a.side, a.seed)

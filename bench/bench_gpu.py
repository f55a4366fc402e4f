"""Frustration on a CUDA device: every device figure in one run (< 8 minutes on an H200).

Prints, each with its target:

1. ResNet-18 at 3x224x224 (the zoo's, random init), ``--replicas`` (80) start
   gauges to single-flip local minima with the matrix-free descent: seconds,
   sweeps, best and mean eps, local minima, peak device memory (target < 2 min);
2. AlexNet at 3x224x224, 1 and 80 replicas: seconds and peak device memory;
3. the paper's Fig. 2 protocol on ResNet-18 at 3x224x224: the 80 real
   replicas of (1), then N1, N2, N3-xavier, N3-he x ``--instances`` (80) draws
   x 2 starts, draws batched (``frustration_vs_nulls`` on the device, at most
   ``--draws-per-unit`` (16) draws per batch, fewer where memory says so).
   Each null kind gets a share of ``--budget`` seconds: its units run until
   the share is spent, and the kind's time for all its draws is measured or,
   where the share ran out, extrapolated from the units done (said so; the
   run's one real replica included).  Target: the whole protocol < 5 min.

Whether the device computes what the CPU does is ``tests/test_cuda.py``'s job::

    python -m pytest -q tests/test_cuda.py && python bench/bench_gpu.py

Where torch sees no CUDA device it says so and exits 0.  ``--device cpu``
runs the same steps on the CPU (a check of this script; slow at 224: use
``--side 32 --instances 2 --replicas 4``).  The script's device path is
checked without a GPU on the CPU emulation of ``tests/fake_cuda.py`` (the
figures are then the CPU's, and memory reads 0)::

    PYTHONPATH=src python tests/fake_cuda.py bench/bench_gpu.py --side 32 --instances 2 --replicas 4
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MPLBACKEND", "Agg")

import torch

import deepglass
from deepglass.graph import SignedGraph
from deepglass.zoo import get


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> str:
    if device.startswith("cuda"):
        return f", peak device memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    return ""


def solve_target(name: str, device: str, replicas: int, side: int, seed: int,
                 target: float | None = None) -> float:
    t = time.perf_counter()
    g = SignedGraph.from_module(get(name), (3, side, side))
    print(f"\n{name} 3x{side}x{side}: {g.n_nodes:,} nodes, {g.n_edges:,} edges "
          f"(described in {time.perf_counter() - t:.1f} s)", flush=True)
    # a short run first: CUDA context, kernels and allocator warmed up outside the timing
    deepglass.frustration(g, replicas=1, seed=seed, device=device, engine="matrix-free")
    wall = 0.0
    for R in sorted({1, replicas}):
        _reset(device)
        t = time.perf_counter()
        r = deepglass.frustration(g, replicas=R, seed=seed, device=device,
                                  engine="matrix-free")
        _sync(device)
        wall = time.perf_counter() - t
        print(f"  descent (matrix-free) R={R} on {device}: {wall:.1f} s wall "
              f"({r.seconds:.1f} s in the solver, {wall / R:.2f} s per replica), "
              f"{r.sweeps} sweeps, best eps {r.frustration:.5f}, mean "
              f"{r.energies.mean():.5f}, all local minima {bool(r.local_min.all())}"
              f"{_peak(device)}", flush=True)
    if target is not None:
        print(f"  target < {target:.0f} s: {'met' if wall < target else 'not met'}")
    return wall


class _OutOfTime(Exception):
    pass


def protocol(device: str, instances: int, starts: int, side: int, seed: int,
             real_seconds: float, budget: float, most_draws: int) -> None:
    """The Fig. 2 protocol's nulls on ResNet-18, kind by kind, within ``budget``;
    at most ``most_draws`` draws per unit (units are where a kind can stop)."""
    from deepglass.experiments.frustration import frustration_vs_nulls
    from deepglass.solve.engines import draws_per_batch

    net = get("resnet18")
    g = SignedGraph.from_module(net, (3, side, side))
    kinds = ["N1", "N2", "N3-xavier", "N3-he"]
    share = budget / len(kinds)
    total = real_seconds
    print(f"\nFig. 2 protocol, ResNet-18 3x{side}x{side}: real replicas {real_seconds:.1f} s "
          f"(above); nulls {', '.join(kinds)} x {instances} draws x {starts} starts "
          f"(budget {share:.0f} s per kind)", flush=True)
    for kind in kinds:
        done = {"units": 0, "t0": time.perf_counter()}

        def progress(k, n, done=done):
            done["units"], done["of"] = k, n
            # unit 1 is the real one (one replica); stop once a null unit is done
            if 1 < k < n and time.perf_counter() - done["t0"] > share:
                raise _OutOfTime

        dpu = min(most_draws, draws_per_batch(g, starts, instances, device=device,
                                              n2=kind == "N2"))
        _reset(device)
        t0 = time.perf_counter()
        finished = True
        try:
            r = frustration_vs_nulls(net, replicas=1, null_instances=instances,
                                     starts_per_null=starts, nulls=kind, seed=seed,
                                     input_shape=(3, side, side), device=device,
                                     progress=progress, draws_per_unit=dpu,
                                     **({} if device == "cpu" else {"engine": "matrix-free"}))
        except _OutOfTime:
            finished = False
        _sync(device)
        wall = time.perf_counter() - t0
        units, of = done["units"], done.get("of", 1)
        if finished:
            rows = r.runs[r.runs["kind"] == kind]
            total += wall
            print(f"  {kind:>9}: {instances} draws in {wall:.1f} s ({dpu} draws per batch; "
                  f"draws built {rows['build_seconds'].sum():.1f} s, solved "
                  f"{rows['seconds'].sum():.1f} s), mean eps {rows['energy'].mean():.5f}, "
                  f"all local minima {bool(rows['local_min'].all())}{_peak(device)}",
                  flush=True)
        else:
            # units: 1 real + the kind's; the real unit (one replica) is negligible
            per_unit = wall / max(units - 1, 1)
            est = per_unit * (of - 1)
            total += est
            print(f"  {kind:>9}: {units - 1} of {of - 1} units of {dpu} draws in {wall:.1f} s; all "
                  f"{instances} draws extrapolated: {est:.0f} s{_peak(device)}", flush=True)
    print(f"  whole protocol (real + nulls): {total:.0f} s; target < 300 s: "
          f"{'met' if total < 300 else 'not met'}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--replicas", type=int, default=80)
    ap.add_argument("--side", type=int, default=224, help="input side (3xSxS)")
    ap.add_argument("--instances", type=int, default=80, help="draws per null kind")
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--draws-per-unit", type=int, default=16,
                    help="at most this many draws per batch (where a kind can stop)")
    ap.add_argument("--budget", type=float, default=240.0,
                    help="seconds for the protocol's null kinds together")
    ap.add_argument("--skip", default="", help="comma list of steps to skip: resnet,alexnet,"
                                                "protocol")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: torch.cuda.is_available() is False; nothing to measure here")
        raise SystemExit(0)
    if a.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    skip = set(a.skip.split(","))
    t_all = time.perf_counter()
    real = 0.0
    if "resnet" not in skip:
        real = solve_target("resnet18", a.device, a.replicas, a.side, a.seed, target=120)
    if "alexnet" not in skip:
        solve_target("alexnet", a.device, a.replicas, 224 if a.side >= 64 else a.side + 32,
                     a.seed)
    if "protocol" not in skip:
        protocol(a.device, a.instances, a.starts, a.side, a.seed, real, a.budget,
                 a.draws_per_unit)
    print(f"\nbench_gpu: {time.perf_counter() - t_all:.0f} s in all")

"""Null draws solved as one batch vs one draw per unit (paper 000, Fig. 2 protocol).

Runs ``frustration_vs_nulls`` on a zoo network (random init) with ``--instances``
draws of each null model (N1, N2, N3-xavier, N3-he) x ``--starts`` starts, three
ways, in one process, interleaved ``--repeats`` times:

- ``batched``: the matrix-free engine, ``--instances`` draws per unit (one batch
  of ``instances * starts`` replicas per null kind);
- ``per-draw``: the matrix-free engine, one draw per unit (the old protocol);
- ``auto``: the default engine choice, one draw per unit (the compiled engine
  on a CPU).

Prints per way the null units' time (best of the repeats) split into building
the draws and solving them, checks that ``batched`` and ``per-draw`` give the
same energies (they must: same seeds, same numbers), and the ratio batched /
per-draw.  The real replicas are left out (``--replicas`` only sizes them).

Run::

    python bench/bench_null_batches.py                         # AlexNet, 16 draws (slow on 2 cores)
    python bench/bench_null_batches.py --net resnet18 --side 32
    python bench/bench_null_batches.py --device cuda --net resnet18 --side 224 --instances 80
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import torch


def run(net, shape, args, engine, dpu):
    from deepglass.experiments.frustration import frustration_vs_nulls

    opts = {} if engine == "auto" else {"engine": engine}
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = frustration_vs_nulls(net, replicas=1, null_instances=args.instances,
                             starts_per_null=args.starts, nulls=args.nulls, seed=args.seed,
                             input_shape=shape, device=args.device, draws_per_unit=dpu, **opts)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    nulls = r.runs[r.runs["kind"] != "real"]
    build = float((nulls["build_seconds"]).sum())
    solve = float((nulls["seconds"]).sum())
    return wall, build, solve, nulls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="alexnet")
    ap.add_argument("--side", type=int, default=None, help="input side (3xSxS)")
    ap.add_argument("--instances", type=int, default=16)
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--nulls", default="N1,N2,N3")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ways", default="batched,per-draw,auto")
    ap.add_argument("--draws-per-unit", type=int, default=None,
                    help="draws per batch of the 'batched' way (default: as many as fit "
                         "in memory, deepglass.solve.engines.draws_per_batch)")
    args = ap.parse_args()

    from deepglass.graph import SignedGraph
    from deepglass.zoo import get

    net = get(args.net)
    shape = tuple(net.default_input_shape)
    if args.side:
        shape = (shape[0], args.side, args.side)
    g = SignedGraph.from_module(net, shape)
    print(f"{args.net} {'x'.join(map(str, shape))}: {g.n_nodes:,} nodes, {g.n_edges:,} edges; "
          f"{args.nulls} x {args.instances} draws x {args.starts} starts on {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    from deepglass.solve.engines import draws_per_batch

    dpu = args.draws_per_unit or draws_per_batch(g, args.starts, args.instances,
                                                 device=args.device, n2="N2" in args.nulls)
    ways = {"batched": ("matrix-free", dpu), "per-draw": ("matrix-free", 1),
            "auto": ("auto", 1)}
    chosen = [w for w in args.ways.split(",") if w]
    best: dict[str, tuple] = {}
    energies: dict[str, np.ndarray] = {}
    for rep in range(args.repeats):
        for w in chosen:
            engine, dpu = ways[w]
            wall, build, solve, rows = run(net, shape, args, engine, dpu)
            print(f"  repeat {rep}: {w:>9} ({engine}, {dpu} draws/unit): {wall:7.1f} s "
                  f"(draws built {build:6.1f} s, solved {solve:6.1f} s), "
                  f"mean null eps {rows['energy'].mean():.5f}", flush=True)
            if w not in best or wall < best[w][0]:
                best[w] = (wall, build, solve)
            energies[w] = rows["energy"].to_numpy()
    print("\nbest of the repeats:")
    for w in chosen:
        wall, build, solve = best[w]
        print(f"  {w:>9}: {wall:7.1f} s (build {build:.1f} s, solve {solve:.1f} s)")
    if "batched" in best and "per-draw" in best:
        same = np.allclose(energies["batched"], energies["per-draw"], rtol=0, atol=1e-6)
        diff = float(np.abs(energies["batched"] - energies["per-draw"]).max())
        print(f"  batched / per-draw: {best['batched'][0] / best['per-draw'][0]:.2f} "
              f"(solve only {best['batched'][2] / best['per-draw'][2]:.2f}); "
              f"same energies: {same} (max |diff| {diff:.1e})")
    if "batched" in best and "auto" in best:
        print(f"  batched / auto (one draw per unit): {best['batched'][0] / best['auto'][0]:.2f}")
    if "per-draw" in best and "auto" in best:
        print(f"  per-draw / auto: {best['per-draw'][0] / best['auto'][0]:.2f}")


if __name__ == "__main__":
    main()

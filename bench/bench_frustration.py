"""Frustration solver figures (issue: solvers).  Prints, in one run:

- graphs that the explicit greedy solver (and dwave-samplers) can hold: the
  trained digits CNN, a LeNet on 1x28x28 and a scaled-down ResNet-18 (the
  zoo's ResNet-18 on a 3x32x32 input), all from the same start gauges:
  ``greedy`` (the paper's Algorithm 1), ``descent`` (``engine="auto"``: the
  compiled engine here), ``descent`` with ``engine="matrix-free"`` and
  ``anneal``: best and mean frustration, seconds, paired differences to
  greedy and the speed-up over greedy (all timings through
  ``deepglass.frustration``, building the CSR where the method needs it);
- optionally (``dwave-samplers`` installed; it is not a dependency of
  deepglass) the same explicit couplings as an Ising model
  (``h = 0, J_ij = -As_ij`` for ``i < j``, so ``E = -sigma^T As sigma / 2`` and
  ``eps = 1/2 + E / 1^T|As|1``; checked below): dwave's SteepestDescentSolver
  from the same starts and SimulatedAnnealingSampler at the wall time of our
  ``anneal``;
- AlexNet (random He init, 0.66 B edges), 1 replica to a single-flip local
  minimum: ``descent`` with each engine and, with the matrix-free schedule, a
  baseline that re-evaluates every layer (the full ``As sigma``) after each
  colour class; then ``--alexnet-replicas`` replicas (``engine="auto"``, and
  with ``--alexnet-matrix-free`` the matrix-free engine too): seconds,
  sweeps, peak memory.

Run::

    python bench/bench_frustration.py                       # everything, R = 80 on AlexNet
    python bench/bench_frustration.py --skip-alexnet        # small graphs only (~1 min)
    python bench/bench_frustration.py --skip-small --alexnet-replicas 8 --skip-baseline
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import deepglass
import deepglass.solve.descent as descent_module
from deepglass.graph import SignedGraph
from deepglass.solve import start_gauges
from deepglass.zoo import get


def reset_peak() -> None:
    """Reset the process's peak resident set (Linux: VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _status_gb(key: str) -> float:
    """A memory line of /proc/self/status, in GiB (NaN where there is none)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def peak_gb() -> float:
    """Peak resident set since the last :func:`reset_peak` (VmHWM), GiB."""
    return _status_gb("VmHWM")


def rss_gb() -> float:
    """Current resident set (VmRSS), GiB."""
    return _status_gb("VmRSS")


# --------------------------------------------------------------------------- small graphs
def small_graphs(resnet_side: int) -> dict[str, SignedGraph]:
    return {
        "digits_cnn (trained)": SignedGraph.from_module(get("digits_cnn", pretrained=True),
                                                        (1, 8, 8)),
        "lenet 1x28x28 (random)": SignedGraph.from_module(get("mnist_lenet"), (1, 28, 28)),
        f"resnet18 3x{resnet_side}x{resnet_side}": SignedGraph.from_module(
            get("resnet18"), (3, resnet_side, resnet_side)),
    }


def to_bqm(g: SignedGraph):
    """The explicit couplings as a dimod Ising model: h = 0, J_ij = -As_ij (i < j)."""
    import dimod
    import scipy.sparse as sp

    U = sp.triu(g.to_scipy_sym(), k=1).tocoo()
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.zeros(g.n_nodes), (U.row, U.col, -U.data), 0.0, dimod.SPIN)


def dwave_eps(g: SignedGraph, sampleset) -> tuple[np.ndarray, np.ndarray]:
    """Our eps of dwave's samples, from dwave's energies and re-evaluated by us."""
    s = sampleset.record.sample.astype(np.float32)
    order = np.argsort(sampleset.variables)             # columns back to node order
    s = s[:, order]
    e_dwave = 0.5 + sampleset.record.energy / g.abs_total()
    e_ours = g.energy(torch.from_numpy(s)).numpy()
    return e_dwave, e_ours


def kernels(g: SignedGraph, s0: np.ndarray, repeats: int) -> dict:
    """Seconds of the two compiled kernels alone (greedy on its prebuilt CSR,
    the compiled descent on its prebuilt stencils and fields), best of
    ``repeats``, and what building their inputs costs."""
    from deepglass.solve.compiled_descent import compiled_descent, stencils
    from deepglass.solve.greedy import greedy

    t = time.perf_counter()
    As = g.to_scipy_sym()
    out = {"csr": time.perf_counter() - t}
    t = time.perf_counter()
    st = stencils(g)
    out["stencils"] = time.perf_counter() - t
    thr = (1e-5 * g.abs_row_sums()).double().numpy()[st.perm]
    S = torch.from_numpy(s0).to(g.dtype)
    F = g.sym_matvec(S)
    R = len(s0)
    out["greedy"] = out["descent"] = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        res = greedy(As, s0)
        out["greedy"] = min(out["greedy"], time.perf_counter() - t)
        s = S[:, st.perm].float().numpy().copy()
        f = F[:, st.perm].double().numpy().copy()
        sweeps, flips = np.zeros(R, np.int64), np.zeros(R, np.int64)
        t = time.perf_counter()
        compiled_descent(st, s, f, g.coloring(), thr, gamma=0.9, decay=1.0, per_block=True,
                         sweeps=sweeps, max_sweeps=100_000, flips=flips)
        out["descent"] = min(out["descent"], time.perf_counter() - t)
    out["greedy_flips"], out["descent_flips"] = float(np.mean(res.flips)), float(flips.mean())
    return out


def compare_small(replicas: int, resnet_replicas: int, resnet_side: int, use_dwave: bool,
                  steep: bool, seed: int = 1, repeats: int = 3) -> None:
    try:
        import dwave.samplers as dws
    except ImportError:
        dws = None
        if use_dwave:
            print("(dwave-samplers not installed: `pip install dwave-samplers` for the "
                  "SteepestDescentSolver / SimulatedAnnealingSampler comparison; skipped)")
    use_dwave = use_dwave and dws is not None
    print(f"\n== graphs greedy can hold: {replicas} replicas ({resnet_replicas} on ResNet-18) from "
          f"the same start gauges (seed {seed}), {torch.get_num_threads()} torch threads; greedy "
          f"and descent seconds: best of {repeats} interleaved runs ==")
    graphs = small_graphs(resnet_side)
    # compile / load the numba kernels (and torch's first-call setup) outside the timings
    for m in ("greedy", "descent", "anneal"):
        deepglass.frustration(next(iter(graphs.values())), method=m, replicas=2)
    for name, g in graphs.items():
        R = resnet_replicas if name.startswith("resnet") else replicas
        s0 = start_gauges(g.n_nodes, R, seed)
        # greedy and descent interleaved `repeats` times (same starts, so the
        # same result): their best seconds, as the machine's load comes and goes
        best = {}
        for _ in range(repeats):
            for m in ("greedy", "descent"):
                r = deepglass.frustration(g, method=m, init=s0, seed=seed)
                if m not in best or r.seconds < best[m].seconds:
                    best[m] = r
        runs = {**best, "anneal": deepglass.frustration(g, method="anneal", init=s0, seed=seed)}
        # the same schedule's other engine (the one that scales to AlexNet), with
        # its own default decay, and (--steep) with the compiled engine's decay = 1
        runs["descent matrix-free"] = deepglass.frustration(g, init=s0, seed=seed,
                                                            engine="matrix-free")
        if steep:
            runs["descent matrix-free decay=1"] = deepglass.frustration(
                g, init=s0, seed=seed, engine="matrix-free", decay=1.0)
        gr, de, an = runs["greedy"], runs["descent"], runs["anneal"]
        print(f"\n{name}: {g.n_nodes:,} nodes, {g.n_edges:,} edges")
        print(f"  {'solver':34s} {'best eps':>9s} {'mean eps':>9s} {'seconds':>8s} "
              f"{'local min':>9s}")
        for m, r in runs.items():
            print(f"  {m:34s} {r.frustration:9.5f} {r.energies.mean():9.5f} {r.seconds:8.2f} "
                  f"{str(bool(r.local_min.all())):>9s}")
        for m, r in runs.items():
            if not m.startswith("descent"):
                continue
            d = r.energies - gr.energies
            print(f"  {m} - greedy: best {r.frustration - gr.frustration:+.5f}, mean "
                  f"{d.mean():+.5f} +- {d.std(ddof=1) / np.sqrt(len(d)):.5f} (paired, 1 s.e.), "
                  f"per-replica <= in {100 * np.mean(d <= 1e-7):.0f}%; speed-up over greedy "
                  f"{gr.seconds / r.seconds:.1f}x")
        print(f"  anneal costs {an.seconds / de.seconds:.1f}x descent")
        k = kernels(g, s0, repeats)
        print(f"  kernels alone (best of {repeats}): greedy {k['greedy']:.3f} s "
              f"({k['greedy_flips']:.0f} flips per replica; its CSR built in {k['csr']:.2f} s), "
              f"compiled descent {k['descent']:.3f} s ({k['descent_flips']:.0f} flips per "
              f"replica; stencils built in {k['stencils']:.3f} s): "
              f"{k['greedy'] / k['descent']:.1f}x")
        if not use_dwave:
            continue
        t = time.perf_counter()
        bqm = to_bqm(g)
        t_bqm = time.perf_counter() - t
        states = (s0.astype(np.int8), list(range(g.n_nodes)))
        t = time.perf_counter()
        ss = dws.SteepestDescentSolver().sample(bqm, initial_states=states)
        t_sd = time.perf_counter() - t
        e_dw, e_us = dwave_eps(g, ss)
        assert np.allclose(e_dw, e_us, atol=1e-5), "sign convention: dwave energy != our eps"
        print(f"  {'dwave SteepestDescentSolver':34s} {e_dw.min():9.5f} {e_dw.mean():9.5f} "
              f"{t_sd:8.2f}   (BQM built in {t_bqm:.2f} s; energies checked against ours)")
        print(f"  descent vs dwave steepest: best {de.frustration - e_dw.min():+.5f}, "
              f"mean {de.energies.mean() - e_dw.mean():+.5f}; time ratio dwave/descent "
              f"{t_sd / de.seconds:.1f}x")
        # SA at our anneal's wall time: calibrate the sweep count on a short run
        sa = dws.SimulatedAnnealingSampler()
        cost = {}
        for cal in (10, 40):
            t = time.perf_counter()
            sa.sample(bqm, num_reads=R, num_sweeps=cal, seed=seed)
            cost[cal] = time.perf_counter() - t
        per_sweep = max((cost[40] - cost[10]) / 30, 1e-9)
        sweeps = max(1, int((an.seconds - (cost[10] - 10 * per_sweep)) / per_sweep))
        t = time.perf_counter()
        ss = sa.sample(bqm, num_reads=R, num_sweeps=sweeps, seed=seed)
        t_sa = time.perf_counter() - t
        e_sa, _ = dwave_eps(g, ss)
        print(f"  {'dwave SimulatedAnnealing (' + str(sweeps) + ' sw)':34s} {e_sa.min():9.5f} "
              f"{e_sa.mean():9.5f} {t_sa:8.2f}   (anneal's wall time {an.seconds:.2f} s)")
        print(f"  anneal vs dwave SA at equal time: best {an.frustration - e_sa.min():+.5f}, "
              f"mean {an.energies.mean() - e_sa.mean():+.5f}")


# --------------------------------------------------------------------------- AlexNet
def _full_reevaluation(graph, inc, cls, F, delta, flipped, sparse_ratio):
    """Baseline field update: re-evaluate every layer (the whole ``As sigma``)."""
    sigma_now = _full_reevaluation.sigma
    F.copy_(graph.sym_matvec(sigma_now))


def _timed(g, s, **kw):
    """``deepglass.frustration`` from start gauges ``s``: result, CPU seconds, peak RSS."""
    reset_peak()
    c = time.process_time()
    r = deepglass.frustration(g, init=s, **kw)
    return r, time.process_time() - c, peak_gb()


def alexnet(replicas: int, baseline: bool, matrix_free_replicas: bool) -> None:
    # the numba kernels compiled (or loaded from the cache) outside the timings:
    # the first run after installing would time the compilation too (--skip-small)
    small = SignedGraph.from_module(get("digits_cnn"), (1, 8, 8))
    for engine in ("compiled", "matrix-free"):
        deepglass.frustration(small, method="descent", replicas=2, engine=engine)
    t = time.perf_counter()
    g = SignedGraph.from_module(get("alexnet"), (3, 224, 224))
    print(f"\n== AlexNet (random He init): {g.n_nodes:,} nodes, {g.n_edges:,} edges, "
          f"described in {time.perf_counter() - t:.2f} s; {torch.get_num_threads()} threads ==")
    s1 = start_gauges(g.n_nodes, 1, 0)
    runs = {}
    for engine in ("auto", "matrix-free"):
        r, c, peak = _timed(g, s1, engine=engine)
        runs[engine] = r
        print(f"  descent R=1 engine={engine} ({r.info.get('engine')}): {r.seconds:.1f} s ({c:.1f} CPU s), "
              f"{r.sweeps} sweeps, eps {r.frustration:.5f}, local minimum "
              f"{bool(r.local_min.all())}, peak RSS {peak:.2f} GB")
    if baseline:
        # the matrix-free schedule, but every class update recomputes the full As sigma
        orig_update, orig_sweep = descent_module._update_fields, descent_module._sweep

        def sweep(graph, inc, sigma, *a):
            _full_reevaluation.sigma = sigma
            return orig_sweep(graph, inc, sigma, *a)

        descent_module._update_fields, descent_module._sweep = _full_reevaluation, sweep
        try:
            b, cb, _ = _timed(g, s1, engine="matrix-free")
        finally:
            descent_module._update_fields, descent_module._sweep = orig_update, orig_sweep
        print(f"  baseline (re-evaluate every layer after each class) R=1: {b.seconds:.1f} s "
              f"({cb:.1f} CPU s), {b.sweeps} sweeps, eps {b.frustration:.5f}; descent is "
              + ", ".join(f"{b.seconds / r.seconds:.1f}x ({r.info.get('engine')})" for r in runs.values())
              + " faster")
    if replicas > 1:
        s = start_gauges(g.n_nodes, replicas, 0)
        for engine in ("auto", "matrix-free") if matrix_free_replicas else ("auto",):
            base = rss_gb()
            r, c, peak = _timed(g, s, engine=engine)
            print(f"  descent R={replicas} engine={engine} ({r.info.get('engine')}): {r.seconds:.1f} s "
                  f"({c:.1f} CPU s; {r.seconds / replicas:.2f} s/replica), {r.sweeps} sweeps, "
                  f"best eps {r.frustration:.5f}, mean {r.energies.mean():.5f}, all local "
                  f"minima {bool(r.local_min.all())}, peak RSS {peak:.2f} GB "
                  f"({base:.2f} GB before)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=48,
                    help="replicas on the digits CNN and LeNet (enough to resolve ~0.001 in eps)")
    ap.add_argument("--resnet-replicas", type=int, default=16)
    ap.add_argument("--resnet-side", type=int, default=32,
                    help="input side of the scaled-down ResNet-18 (3xSxS)")
    ap.add_argument("--no-dwave", action="store_true", help="skip the dwave-samplers comparison")
    ap.add_argument("--steep", action="store_true",
                    help="also run the matrix-free engine with decay=1 (many operator sweeps)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the small graphs' start gauges")
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved greedy / descent runs per small graph (best seconds)")
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--skip-alexnet", action="store_true")
    ap.add_argument("--skip-baseline", action="store_true",
                    help="skip the re-evaluate-every-layer AlexNet baseline (~30 s+)")
    ap.add_argument("--alexnet-replicas", type=int, default=80)
    ap.add_argument("--alexnet-matrix-free", action="store_true",
                    help="also run the AlexNet replicas on the matrix-free engine (~10 min)")
    a = ap.parse_args()
    if not a.skip_small:
        compare_small(a.replicas, a.resnet_replicas, a.resnet_side, not a.no_dwave, a.steep,
                      a.seed, a.repeats)
    if not a.skip_alexnet:
        alexnet(a.alexnet_replicas, not a.skip_baseline, a.alexnet_matrix_free)

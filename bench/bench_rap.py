"""Benchmark of the random active path model (SPEC section 6, paper 001).

Prints:

1. the activation probabilities of a trained ReLU student (paper Fig. 2), used to
   set a1, a2 of the phase diagram below;
2. BP on instances with >= 10^6 factors (independent construction, whose
   alpha is set by the path probability alone): one in the spin-glass phase
   (N = 200, p1 = 0.5, alpha ~ 12: the polarized start converges at once, the
   random start only once auto damping switches on, to a glassy fixed point
   of negative entropy), and one in the paramagnetic phase (N = 1000,
   p1 = 0.996, alpha ~ 0.8: random start);
3. the full phase diagram of W1 in the units (paper) construction (25 dilution
   values on a log(1 - p) grid, both BP branches by continuation, bisection, a
   Monte Carlo quench at every point, two disorder samples): wall time (target
   < 5 min on 2 cores), p_c with its bracket and the hysteresis window;
4. Monte Carlo flip attempts per second (numba, one core; target >= 1e7), per
   wall second and per CPU second (the machine may be shared);
5. the transition finder on a 50-point grid in all six (beta in {0.7, 1, 1.5})
   x (a2 in {0.3, 0.5}) cases, W1 diluted, one sample, no MC: the independent
   construction on p1 in [0.5, 0.98] (target: a free-energy crossing with a
   bracket <= 0.01 in all six) and the units construction on a log(1 - p)
   grid p1 in [0.5, 0.999];
6. p_c against beta and a2 for each diluted population (units construction,
   log(1 - p) grids, 30 points): tables and figures ``pc_W{l}.png``,
   ``phase_W{l}.png`` under ``--out``;
7. Fig. 5 on two instances near their transition (units: N = 100, a = (0.5,
   0.3), p1 = 0.99; independent: N = 100, a = (0.5, 0.5), p1 = 0.92): BP from
   the polarized and a random start over beta in [0.1, 5] with each run's
   status, and annealing (1-100 sweeps per temperature, 3 runs each) against
   the ground state; figures ``fig5_{construction}.png``.

Usage: ``python bench/bench_rap.py [--quick] [--out bench/out/rap] [--skip 1,2]``.

The paper's numbers (N, beta, a1, a2) were lost in extraction; the choices made
here are printed with the results: N = 100 (network 100-100-100-1), beta = 1,
W1 diluted with p2 = p3 = 0, a1 and a2 the medians measured on the trained
student (parts 3-4).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    ap.add_argument("--out", default="bench/out/rap", help="run directory of the phase diagram")
    ap.add_argument("--bp-max-iter", type=int, default=500,
                    help="BP iteration cap of part 2 (the random start in the glassy phase never converges)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip (1-7)")
    args = ap.parse_args()

    from deepglass.rap import RAPModel, run_mc

    print(f"deepglass RAP benchmark  (cpus: {os.cpu_count()}, python {sys.version.split()[0]})")

    # 0. warm up numba (compilation is cached on disk; not part of the timings)
    run_mc(RAPModel(6, a=(1, 1)), 1.0, sweeps=4)

    skip = {int(v) for v in args.skip.split(",") if v.strip()}
    a1, a2 = 0.48, 0.49          # the medians part 1 measured (used when it is skipped)
    # 1. student activation probabilities (Fig. 2)
    if 1 in skip:
        print(f"\n[1] skipped: a1 = {a1}, a2 = {a2}")
    else:
        a1, a2 = student(args.quick)
    if 2 not in skip:
        bp_big(args)
    if 3 not in skip:
        phase(args, a1, a2)
    if 4 not in skip:
        mc_rate(args, a1, a2)
    if 5 not in skip:
        six_cases(args)
    if 6 not in skip:
        populations(args)
    if 7 not in skip:
        fig5(args)


def student(quick):
    from deepglass.rap.student import student_activations

    t0 = time.perf_counter()
    st = student_activations(N=100 if not quick else 30, trials=5 if not quick else 2,
                             epochs=30 if not quick else 3, seed=0)
    a1 = round(float(st.a1.median()), 2)
    a2 = round(float(st.a2.median()), 2)
    print(f"\n[1] trained ReLU student N-N-N-1 on teacher labels ({len(st)} trials, "
          f"{time.perf_counter() - t0:.1f} s)")
    for _, r in st.iterrows():
        print(f"    trial {int(r.trial)}: a1 = {r.a1:.3f}  a2 = {r.a2:.3f}  test error = {r.test_error:.3f}")
    print(f"    -> a1 = {a1}, a2 = {a2} (medians)")
    return a1, a2


def bp_big(args):
    from deepglass.rap import RAPModel, run_bp

    # 2. BP on >= 1e6 factors
    Nb = 200 if not args.quick else 60
    t0 = time.perf_counter()
    big = RAPModel(Nb, a=(0.5, 0.5), p=(0.5, 0.0, 0.0), seed=1, construction="independent")
    t_build = time.perf_counter() - t0
    print(f"\n[2] BP, N = {Nb}, a = (0.5, 0.5), p1 = 0.5, beta = 1: {big.n_factors:,} factors, "
          f"{big.n_weights:,} weights, alpha = {big.alpha:.3f} (built in {t_build:.2f} s)")
    for start in ("random", "polarized"):
        t0 = time.perf_counter()
        r = run_bp(big, 1.0, start=start, max_iter=args.bp_max_iter)
        dt = time.perf_counter() - t0
        print(f"    {start:9s} start: {r.status} (oscillating = {r.oscillating}) in "
              f"{r.iterations} iterations (damping {r.damping:g}), {dt:.2f} s "
              f"({dt / r.iterations * 1e3:.1f} ms/iteration); "
              f"f = {r.free_energy:.6f}, e = {r.energy:.6f}, s = {r.entropy:.6f}, q = {r.q:.4f}")
    # the same size in the paramagnetic phase (alpha ~ 1): the random start's fixed point
    Np = 1000 if not args.quick else 150
    p1 = 0.996 if not args.quick else 0.97
    t0 = time.perf_counter()
    para = RAPModel(Np, a=(0.5, 0.5), p=(p1, 0.0, 0.0), seed=1, construction="independent")
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = run_bp(para, 1.0, start="random", max_iter=args.bp_max_iter)
    dt = time.perf_counter() - t0
    print(f"    N = {Np}, p1 = {p1}: {para.n_factors:,} factors, {para.n_weights:,} weights, "
          f"alpha = {para.alpha:.3f} (built in {t_build:.2f} s); random start: converged = "
          f"{r.converged} in {r.iterations} iterations, {dt:.2f} s "
          f"({dt / r.iterations * 1e3:.1f} ms/iteration); q = {r.q:.2e}, f = {r.free_energy:.6f}")



def phase(args, a1, a2):
    import shutil

    from deepglass.rap.phase import PhaseConfig, p_grid, scan_phase
    from deepglass.store import RunDir

    # 3. phase diagram of population 1, units construction
    N = 100 if not args.quick else 30
    cfg = PhaseConfig(N=N, population=1, p_values=p_grid(0.5, 0.999, 25, "log1m"), scale="log1m",
                      betas=[1.0], a1=a1, a2s=[a2], samples=2, mc_sweeps=1000, seed=0)
    run = RunDir(args.out, cfg.to_dict(), kind="rap-phase-bench", force=True)
    shutil.rmtree(run.path / "units", ignore_errors=True)        # time a full scan
    t0 = time.perf_counter()
    res = scan_phase(cfg, run=run)
    dt = time.perf_counter() - t0
    n_pts = len(cfg.p_values) * cfg.samples
    print(f"\n[3] phase diagram: N = {N}, units construction, W1 diluted, p1 in [0.5, 0.999] "
          f"({len(cfg.p_values)} values, log(1 - p) grid), beta = 1, a1 = {a1}, a2 = {a2}, "
          f"{cfg.samples} samples, 2 BP branches by continuation + bisection + "
          f"{cfg.mc_sweeps}-sweep MC quench per point")
    print(f"    wall time {dt:.1f} s for {n_pts} instances ({dt / n_pts:.2f} s each; target < 300 s)")
    _print_transitions(res.transitions)
    s = res.summary
    s = s[s.p.isin(cfg.p_values)]
    mc = s[s.solver == "mc"].set_index("p")
    pol = s[(s.solver == "bp") & (s.branch == "polarized")].set_index("p").reindex(mc.index)
    rnd = s[(s.solver == "bp") & (s.branch == "random")].set_index("p").reindex(mc.index)
    thermo = np.where(pol.free_energy <= rnd.free_energy, pol.energy, rnd.energy)
    dev = np.abs(mc.energy.to_numpy() - thermo)
    print(f"    MC vs BP (lower-f branch) energy: median |diff| = {np.nanmedian(dev):.4f}, "
          f"max = {np.nanmax(dev):.4f} at p1 = {mc.index[int(np.nanargmax(dev))]:.4f}")


def _print_transitions(t):
    for _, r in t.iterrows():
        print(f"    beta = {r.beta:g}, a2 = {r.a2:g}: {r.method:10s} p_c = {r.p_c:.5f} in "
              f"[{r.p_c_lo:.5f}, {r.p_c_hi:.5f}] (width {r.bracket_width:.5f}), spinodal "
              f"{r.p_spinodal:.5f}, hysteresis [{r.hysteresis_low:.3f}, {r.hysteresis_high:.5f}]"
              f"{' (low edge = scan minimum)' if r.low_censored else ''}, "
              f"{int(r.n_bisections)} bisection steps, {int(r.n_unconverged)} unconverged grid pts")


def six_cases(args):
    from deepglass.rap.phase import PhaseConfig, p_grid, scan_phase

    N = 100 if not args.quick else 30
    print(f"\n[5] transition finder, 50-point grid, N = {N}, W1 diluted, a1 = 0.5, one sample, no MC")
    for cons, grid, scale in (("independent", p_grid(0.5, 0.98, 50), "linear"),
                              ("units", p_grid(0.5, 0.999, 50, "log1m"), "log1m")):
        cfg = PhaseConfig(N=N, population=1, p_values=grid, scale=scale, betas=[0.7, 1.0, 1.5],
                          a1=0.5, a2s=[0.3, 0.5], samples=1, mc_sweeps=0, construction=cons)
        t0 = time.perf_counter()
        res = scan_phase(cfg)
        dt = time.perf_counter() - t0
        t = res.transitions
        ok = int(((t.method == "crossing") & (t.bracket_width <= 0.01)).sum())
        bp = res.points[res.points.solver == "bp"]
        print(f"  {cons} construction, {scale} grid [{grid[0]:g}, {grid[-1]:g}]: {dt:.1f} s, "
              f"{len(bp)} BP runs ({int(bp.iterations.sum()):,} iterations, longest "
              f"{int(bp.iterations.max()):,}); crossings with bracket <= 0.01: {ok} of {len(t)}")
        _print_transitions(t)


def populations(args):
    import matplotlib.pyplot as plt

    from deepglass.rap.figures import plot_pc, plot_phase
    from deepglass.rap.phase import PhaseConfig, p_grid, scan_phase

    N = 100 if not args.quick else 30
    os.makedirs(args.out, exist_ok=True)
    print(f"\n[6] p_c per diluted population, units construction, N = {N}, a1 = 0.5, "
          "30-point log(1 - p) grids, one sample, no MC")
    ranges = {1: (0.5, 0.999), 2: (0.5, 0.9995), 3: (0.0, 0.99)}
    for pop, (lo, hi) in ranges.items():
        cfg = PhaseConfig(N=N, population=pop, p_values=p_grid(lo, hi, 30, "log1m"),
                          scale="log1m", betas=[0.7, 1.0, 1.5], a1=0.5, a2s=[0.3, 0.5],
                          samples=1, mc_sweeps=0)
        t0 = time.perf_counter()
        res = scan_phase(cfg)
        print(f"  W{pop} diluted, p{pop} in [{lo:g}, {hi:g}]: {time.perf_counter() - t0:.1f} s")
        _print_transitions(res.transitions)
        fig = plot_pc(res.transitions, pop, "log1m")
        fig.savefig(os.path.join(args.out, f"pc_W{pop}.png"), dpi=110)
        plt.close(fig)
        tr = res.transitions.set_index(["beta", "a2"]).loc[(1.0, 0.3)].to_dict()
        fig = plot_phase(res.summary, tr, res.degrees, 1.0, 0.3, pop, cfg.q_threshold, "log1m")
        fig.savefig(os.path.join(args.out, f"phase_W{pop}.png"), dpi=110)
        plt.close(fig)


def fig5(args):
    import matplotlib.pyplot as plt

    from deepglass.rap import RAPModel
    from deepglass.rap.figures import plot_stability
    from deepglass.rap.stability import bp_temperature_scan, cooling_study, cooling_table

    os.makedirs(args.out, exist_ok=True)
    print("\n[7] Fig. 5: BP stability against beta (polarized and random starts) and annealing "
          "(geometric schedule beta 0.1 -> 5, 30 temperatures, 3 runs per rate)")
    N = 100 if not args.quick else 40
    for cons, a, p in (("units", (0.5, 0.3), (0.99, 0, 0)), ("independent", (0.5, 0.5), (0.92, 0, 0))):
        m = RAPModel(N, a=a, p=p, seed=0, construction=cons)
        t0 = time.perf_counter()
        scan = bp_temperature_scan(m, np.linspace(0.1, 5.0, 12), max_iter=5000, mc_sweeps=500)
        t1 = time.perf_counter()
        finals, traces = cooling_study(m, [1, 3, 10, 30, 100], beta_end=5.0, repeats=3)
        t2 = time.perf_counter()
        print(f"  {cons}: N = {N}, a = {a}, p1 = {p[0]}: {m.n_factors:,} factors, {m.n_weights:,} "
              f"weights, alpha = {m.alpha:.4f} (ground state e = {-m.alpha:.4f}); BP scan "
              f"{t1 - t0:.1f} s, annealing {t2 - t1:.1f} s")
        bp = scan[scan.solver == "bp"]
        for st, d in bp.groupby("start"):
            cells = ", ".join(f"{b:.2f}:{'c' if s_ == 'converged' else s_ + f'({r:.0e})'}"
                              for b, s_, r in zip(d.beta, d.status, d.residual))
            print(f"    BP {st:9s} start (beta:status, c = converged, else status(residual)): "
                  f"{cells}")
            bad = d[d.status != "converged"]
            print(f"      first unconverged beta: {bad.beta.min() if len(bad) else 'none'}; "
                  f"energies at beta = 5: {d.energy.iloc[-1]:.4f}, entropy {d.entropy.iloc[-1]:.4f}")
        mc = scan[scan.solver == "mc"]
        print(f"    MC quench energy at beta = 5: {mc.energy.iloc[-1]:.4f}")
        g = cooling_table(finals)
        print("    sweeps/T  final e (mean +- std over 3)   best      excess over ground")
        for _, r in g.iterrows():
            print(f"    {int(r.sweeps_per_temp):8d}  {r.final_energy_mean:9.4f} +- {r.final_energy_std:.4f}"
                  f"           {r.final_energy_min:9.4f}  {r.excess:.4f}")
        fig = plot_stability(scan, finals, traces)
        fig.savefig(os.path.join(args.out, f"fig5_{cons}.png"), dpi=110)
        plt.close(fig)


def mc_rate(args, a1, a2):
    from deepglass.rap import RAPModel, run_mc

    N = 100 if not args.quick else 30
    # 4. MC flip attempts per second
    print("\n[4] Monte Carlo, one core (numba)")
    m = RAPModel(N, a=(a1, a2), p=(0.85, 0, 0), seed=2, construction="independent")
    for method in ("metropolis", "heatbath"):
        for beta in (0.5, 1.0):
            c0 = time.process_time()
            r = run_mc(m, beta, sweeps=2000 if not args.quick else 200, method=method, seed=0)
            cpu = time.process_time() - c0
            print(f"    {method:10s} beta = {beta}: {r.flips_per_second / 1e6:.1f} M flip attempts "
                  f"per wall second, {r.sweeps * m.n_weights / cpu / 1e6:.1f} M per CPU second "
                  f"(N_w = {m.n_weights:,}, acceptance {r.acceptance:.3f}, {r.seconds:.2f} s)")


if __name__ == "__main__":
    main()

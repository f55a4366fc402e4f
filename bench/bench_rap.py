"""Benchmark of the random active path model (SPEC section 6, paper 001).

Prints:

1. the activation probabilities of a trained ReLU student (paper Fig. 2), used to
   set a1, a2 of the phase diagram below;
2. BP on instances with >= 10^6 factors: one in the spin-glass phase (N = 200,
   p1 = 0.5, alpha ~ 12: the polarized start converges, the random start is
   capped at ``--bp-max-iter`` because it does not settle there), and one in
   the paramagnetic phase (N = 1000, p1 = 0.996, alpha ~ 0.8: random start);
3. the full phase diagram of one population (>= 20 dilution values, two BP
   branches and a Monte Carlo quench at every point, several disorder samples):
   wall time (target < 5 min on 2 cores), the transition point p_c and the
   hysteresis window;
4. Monte Carlo flip attempts per second (numba, one core; target >= 1e7), per
   wall second and per CPU second (the machine may be shared).

Usage: ``python bench/bench_rap.py [--quick] [--out bench/out/rap] [--skip 1,2]``.

The paper's numbers (N, beta, a1, a2) were lost in extraction; the choices made
here are printed with the results: N = 100 (network 100-100-100-1), beta = 1,
W1 diluted with p2 = p3 = 0, independent (paper) construction, a1 and a2 the
medians measured on the trained student.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    ap.add_argument("--out", default="bench/out/rap", help="run directory of the phase diagram")
    ap.add_argument("--bp-max-iter", type=int, default=500,
                    help="BP iteration cap of part 2 (the random start in the glassy phase never converges)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip (1,2,3,4)")
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
    big = RAPModel(Nb, a=(0.5, 0.5), p=(0.5, 0.0, 0.0), seed=1)
    t_build = time.perf_counter() - t0
    print(f"\n[2] BP, N = {Nb}, a = (0.5, 0.5), p1 = 0.5, beta = 1: {big.n_factors:,} factors, "
          f"{big.n_weights:,} weights, alpha = {big.alpha:.3f} (built in {t_build:.2f} s)")
    for start in ("random", "polarized"):
        t0 = time.perf_counter()
        r = run_bp(big, 1.0, start=start, max_iter=args.bp_max_iter)
        dt = time.perf_counter() - t0
        print(f"    {start:9s} start: converged = {r.converged} (oscillating = {r.oscillating}) in "
              f"{r.iterations} iterations, {dt:.2f} s ({dt / r.iterations * 1e3:.1f} ms/iteration); "
              f"f = {r.free_energy:.6f}, e = {r.energy:.6f}, s = {r.entropy:.6f}, q = {r.q:.4f}")
    # the same size in the paramagnetic phase (alpha ~ 1): the random start's fixed point
    Np = 1000 if not args.quick else 150
    p1 = 0.996 if not args.quick else 0.97
    t0 = time.perf_counter()
    para = RAPModel(Np, a=(0.5, 0.5), p=(p1, 0.0, 0.0), seed=1)
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

    from deepglass.rap.phase import PhaseConfig, scan_phase
    from deepglass.store import RunDir

    # 3. phase diagram of population 1
    N = 100 if not args.quick else 30
    cfg = PhaseConfig(N=N, population=1,
                      p_values=[round(float(v), 4) for v in np.linspace(0.5, 0.98, 25)],
                      betas=[1.0], a1=a1, a2s=[a2], samples=2, mc_sweeps=1000, seed=0)
    run = RunDir(args.out, cfg.to_dict(), kind="rap-phase-bench", force=True)
    shutil.rmtree(run.path / "units", ignore_errors=True)        # time a full scan
    t0 = time.perf_counter()
    res = scan_phase(cfg, run=run)
    dt = time.perf_counter() - t0
    n_pts = len(cfg.p_values) * cfg.samples
    print(f"\n[3] phase diagram: N = {N}, W1 diluted, p1 in [0.5, 0.98] ({len(cfg.p_values)} values), "
          f"beta = 1, a1 = {a1}, a2 = {a2}, {cfg.samples} samples, 2 BP branches + "
          f"{cfg.mc_sweeps}-sweep MC quench per point")
    print(f"    wall time {dt:.1f} s for {n_pts} instances ({dt / n_pts:.2f} s each; target < 300 s)")
    t = res.transitions.iloc[0]
    print(f"    p_c = {t.p_c:.4f} (method {t.method}, bracket [{t.p_c_lo:.4f}, {t.p_c_hi:.4f}]), "
          f"spinodal of the ordered branch {t.p_spinodal:.4f}, q of the ordered branch at its end "
          f"{t.q_ordered_end:.3f}")
    print(f"    hysteresis (two BP branches differ): [{t.hysteresis_low:.4f}, {t.hysteresis_high:.4f}], "
          f"width {t.hysteresis_width:.4f}{' (lower edge = scan minimum: the paramagnet stays locally stable)' if t.low_censored else ''}; "
          f"metastable width p_sp - p_c = {t.p_spinodal - t.p_c:.4f}; {int(t.n_unconverged)} grid point(s) "
          "left out as unconverged")
    s = res.summary
    mc = s[s.solver == "mc"].set_index("p")
    pol = s[(s.solver == "bp") & (s.branch == "polarized")].set_index("p")
    rnd = s[(s.solver == "bp") & (s.branch == "random")].set_index("p")
    thermo = np.where(pol.free_energy <= rnd.free_energy, pol.energy, rnd.energy)
    dev = np.abs(mc.energy.to_numpy() - thermo)
    print(f"    MC vs BP (lower-f branch) energy: median |diff| = {np.median(dev):.4f}, "
          f"max = {dev.max():.4f} at p1 = {mc.index[int(np.argmax(dev))]:.3f}")



def mc_rate(args, a1, a2):
    from deepglass.rap import RAPModel, run_mc

    N = 100 if not args.quick else 30
    # 4. MC flip attempts per second
    print("\n[4] Monte Carlo, one core (numba)")
    m = RAPModel(N, a=(a1, a2), p=(0.85, 0, 0), seed=2)
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

"""Near-monotonicity figures (SPEC §5; paper 000, Figs. 3-5).  Prints, in one run:

- digits CNN (trained, cached): the gauge (frustration, 80 replicas) and the
  full protocol, 1000 inputs x 100 amplitudes on the real weights and the
  paper's nulls (random order; N3 = N3-xavier and N3-he, each with its own
  80-replica gauge), on the experiment runner in this process: seconds, trials
  per second, gamma (level 0.95), median |2 rho - 1|, mean rho, consistent
  inputs and class kept per model;
- AlexNet (random init, 3x224x224): 100 perturbations of one input (a skimage
  photograph, ImageNet preprocessing) along a random gauge (the cost of the test
  does not depend on the gauge; AlexNet's own gauge is a separate frustration
  run of minutes): seconds.

Run:  python bench/bench_monotonicity.py [--inputs 1000] [--amplitudes 100] [--skip-alexnet]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import deepglass
from deepglass import zoo
from deepglass.experiments.monotonicity import monotonicity_experiment, near_monotonicity
from deepglass.inputs import load_inputs


def digits(n_inputs: int, amplitudes: int, replicas: int) -> None:
    net = zoo.get("digits_cnn", pretrained=True)
    batch = load_inputs("digits", (1, 8, 8), n=n_inputs)
    t0 = time.perf_counter()
    fr = deepglass.frustration(net, replicas=replicas, seed=0)
    t1 = time.perf_counter()
    e = monotonicity_experiment(net, batch, fr.sigma_in, fr.sigma_out, amplitudes=amplitudes,
                                replicas=replicas, seed=0, frustration=fr.frustration)
    t2 = time.perf_counter()
    trials = len(e.trials)
    print(f"digits_cnn: gauge (frustration, {replicas} replicas) {t1 - t0:.1f} s, delta = "
          f"{fr.frustration:.4f}")
    print(f"digits_cnn: {len(batch)} inputs x {amplitudes} amplitudes x {e.gamma.shape[0]} models"
          f" = {trials:,d} trials in {t2 - t1:.1f} s (N3 gauges included; {trials / (t2 - t1):,.0f}"
          f" trials/s)")
    cols = ["model", "gamma", "gamma_median", "rho_mean", "increasing", "decreasing",
            "consistent", "class_kept", "frustration"]
    print(e.gamma[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def alexnet(amplitudes: int) -> None:
    net = zoo.get("alexnet", seed=0)
    x = load_inputs("skimage", (3, 224, 224), n=1, seed=0)
    rng = np.random.default_rng(0)
    s_in, s_out = rng.choice([-1, 1], 3 * 224 * 224), rng.choice([-1, 1], 1000)
    near_monotonicity(net, s_in, s_out, x, amplitudes=2)  # warm-up
    t0 = time.perf_counter()
    r = near_monotonicity(net, s_in, s_out, x, amplitudes=amplitudes)
    dt = time.perf_counter() - t0
    print(f"alexnet (random init): {amplitudes} perturbations of {x.ids[0]} in {dt:.1f} s "
          f"({torch.get_num_threads()} threads); mean rho {r.trials['rho'].mean():.3f}, "
          f"gamma {r.gamma:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--amplitudes", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=80)
    ap.add_argument("--skip-alexnet", action="store_true")
    a = ap.parse_args()
    digits(a.inputs, a.amplitudes, a.replicas)
    if not a.skip_alexnet:
        alexnet(a.amplitudes)


if __name__ == "__main__":
    main()

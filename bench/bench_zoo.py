"""Model-zoo figures.  Prints, in one run:

- training of the two small nets with their full recipes (seed 0, one thread,
  deterministic): seconds and held-out accuracy (no cache involved);
- for every zoo network at its default input (batch 1): parameters, build
  (seeded init) seconds, eager forward seconds, fx trace seconds;
- ONNX round trip of ResNet-18 (torch.onnx.export -> deepglass ONNX import):
  import seconds and the largest output difference.

Run:  python bench/bench_zoo.py [--threads 1] [--skip-mnist]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

from deepglass import zoo


def train_figures(skip_mnist: bool) -> None:
    for name in zoo.trainable():
        if name == "mnist_lenet" and skip_mnist:
            continue
        r = zoo.train(name, seed=0)
        print(f"train {name:12s}: {r.epochs} epochs, {r.seconds:6.1f} s, held-out accuracy {r.test_accuracy:.4f}, "
              f"train accuracy {r.train_accuracy:.4f}")


def model_figures() -> None:
    print(f"{'network':20s} {'params':>11s} {'build s':>8s} {'forward s':>9s} {'fx trace s':>10s}")
    for name in zoo.names():
        t0 = time.perf_counter()
        m = zoo.get(name, seed=0)
        t1 = time.perf_counter()
        x = torch.randn(1, *m.default_input_shape)
        with torch.no_grad():
            m(x)
            t2 = time.perf_counter()
            m(x)
        t3 = time.perf_counter()
        torch.fx.symbolic_trace(m)
        t4 = time.perf_counter()
        n = sum(p.numel() for p in m.parameters())
        print(f"{name:20s} {n:11,d} {t1 - t0:8.2f} {t3 - t2:9.3f} {t4 - t3:10.3f}")


def onnx_figures() -> None:
    m = zoo.get("resnet18")
    x = torch.randn(2, 3, 224, 224)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet18.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            torch.onnx.export(m, (x[:1],), str(path), dynamo=False)
            t1 = time.perf_counter()
        loaded = zoo.load_model(path)
        t2 = time.perf_counter()
        with torch.no_grad():
            diff = (loaded(x) - m(x)).abs().max().item()
    print(f"ONNX resnet18: export {t1 - t0:.2f} s, import {t2 - t1:.2f} s, max |diff| at batch 2 = {diff:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-mnist", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    train_figures(args.skip_mnist)
    model_figures()
    onnx_figures()


if __name__ == "__main__":
    main()

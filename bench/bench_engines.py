"""Descent engines: estimated vs measured peak memory and time, and ``auto``'s choice.

For each case (a zoo network at a replica count, a 1.1 B-edge 1-d CNN
whose strided first convolution and dense head read batch-normed sources,
which the compiled engine folds into their stencils' weights, a 1.9 B-edge
3-d CNN, and N2 draws of zoo networks), every engine that is
asked for runs in a fresh process: the graph is built, numba's kernels are
warmed up on a small graph, the peak resident set is reset, and
``deepglass.frustration`` runs.  Printed per run: the estimate of
:mod:`deepglass.solve.engines` (peak bytes beyond the graph, coarse seconds),
the measured peak beyond the resident set before the run, the ratio measured
/ estimated (target within 1/1.5 .. 1.5), the solver's seconds and their
ratio to the estimate, and what ``auto`` picks; at the end the range of both
ratios and how often ``auto`` picked the engine that was faster.  With ``--active`` also the active subnetwork of one input of
the 1-d CNN (``deepglass active``'s computation: its masks and the whole
network's and the subgraph's descents), peak resident memory (target <= 8 GB).

Run::

    python bench/bench_engines.py                 # zoo nets + the 1-d CNN (several minutes)
    python bench/bench_engines.py --cases lenet,resnet18-32
    python bench/bench_engines.py --cases cnn1d --active
    python bench/bench_engines.py --cases cnn3d   # a 1.9 B-edge volumetric net
    python bench/bench_engines.py --cases generator-8   # convolutions of reflect-padded values
    python bench/bench_engines.py --cases lenet-n2-16,resnet18-32-n2,alexnet-n2-1   # N2 draws
    python bench/bench_engines.py --cases all     # every case (about an hour)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

#: case -> (zoo name or "cnn1d", input shape, replicas, engines measured)
CASES = {
    "lenet": ("mnist_lenet", (1, 28, 28), 80, ("compiled", "matrix-free")),
    "lenet-16": ("mnist_lenet", (1, 28, 28), 16, ("compiled", "matrix-free")),
    "lenet-1": ("mnist_lenet", (1, 28, 28), 1, ("compiled", "matrix-free")),
    "resnet18-32-1": ("resnet18", (3, 32, 32), 1, ("compiled", "matrix-free")),
    "resnet18-64": ("resnet18", (3, 64, 64), 8, ("compiled", "matrix-free")),
    "resnet18-224-4": ("resnet18", (3, 224, 224), 4, ("compiled", "matrix-free")),
    "alexnet-8": ("alexnet", (3, 224, 224), 8, ("compiled", "matrix-free")),
    "alexnet-caffe-2": ("alexnet_caffe", (3, 227, 227), 2, ("compiled", "matrix-free")),
    "squeezenet10-2": ("squeezenet1_0", (3, 224, 224), 2, ("compiled", "matrix-free")),
    "resnet18-32": ("resnet18", (3, 32, 32), 16, ("compiled", "matrix-free")),
    "alexnet-1": ("alexnet", (3, 224, 224), 1, ("compiled", "matrix-free")),
    "alexnet-80": ("alexnet", (3, 224, 224), 80, ("compiled",)),
    "resnet18-224": ("resnet18", (3, 224, 224), 1, ("compiled", "matrix-free")),
    # convolutions of concatenations, chunks and channel shuffles (stencils per part)
    "googlenet-8": ("googlenet", (3, 224, 224), 8, ("compiled", "matrix-free")),
    "googlenet-2": ("googlenet", (3, 224, 224), 2, ("compiled", "matrix-free")),
    "shufflenet-16": ("shufflenet_v2_x1_0", (3, 224, 224), 16, ("compiled", "matrix-free")),
    "shufflenet-4": ("shufflenet_v2_x1_0", (3, 224, 224), 4, ("compiled", "matrix-free")),
    "digits-16": ("digits_cnn", (1, 8, 8), 16, ("compiled", "matrix-free")),
    "squeezenet-4": ("squeezenet1_1", (3, 224, 224), 4, ("compiled", "matrix-free")),
    # grouped 1x1 convolutions of a channel shuffle and of a concatenation: stencils per group
    "shufflenet1-4": ("shufflenet_v1", (3, 224, 224), 4, ("compiled", "matrix-free")),
    "cnn1d": ("cnn1d", (8, 1024), 1, ("compiled", "matrix-free")),
    "cnn3d": ("cnn3d", (1, 32, 32, 32), 1, ("compiled", "matrix-free")),
    # N2 draws (seed 0): every convolution unshared, one weight per edge
    "lenet-n2-16": ("mnist_lenet+N2", (1, 28, 28), 16, ("compiled", "matrix-free")),
    "lenet-n2-80": ("mnist_lenet+N2", (1, 28, 28), 80, ("compiled", "matrix-free")),
    "digits-n2-16": ("digits_cnn+N2", (1, 8, 8), 16, ("compiled", "matrix-free")),
    "resnet18-32-n2-1": ("resnet18+N2", (3, 32, 32), 1, ("compiled", "matrix-free")),
    "resnet18-32-n2": ("resnet18+N2", (3, 32, 32), 16, ("compiled", "matrix-free")),
    "resnet18-64-n2": ("resnet18+N2", (3, 64, 64), 8, ("compiled", "matrix-free")),
    "alexnet-n2-1": ("alexnet+N2", (3, 224, 224), 1, ("compiled", "matrix-free")),
    "alexnet-n2-8": ("alexnet+N2", (3, 224, 224), 8, ("compiled", "matrix-free")),
    # reflect padding before every convolution (image-to-image generators)
    "generator-8": ("generator", (3, 64, 64), 8, ("compiled", "matrix-free")),
    # an encoder-decoder's N2 draw: its transposed convolution unshared too
    "unet-n2-4": ("unet+N2", (3, 64, 64), 4, ("compiled", "matrix-free")),
}


def cnn1d():
    """A 1-d CNN of about 1.1 B edges (random init, batch-norm statistics drawn):
    8 x 1024 input through a batch norm, a convolution of width 512 and stride 4
    (padding 256) to 128 x 257, seven more convolutions of width 9, a batch norm
    and a dense head of 256.  The batch norms that follow no weight layer fold
    onto the next layer's sources (scaled sources); the compiled engine folds
    those per-channel scales into the strided convolution's and the dense
    layer's stencil weights."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers = [nn.BatchNorm1d(8), nn.Conv1d(8, 128, 512, stride=4, padding=256), nn.ReLU(),
              nn.Conv1d(128, 256, 9, padding=4), nn.ReLU()]
    for _ in range(6):
        layers += [nn.Conv1d(256, 256, 9, padding=4), nn.ReLU()]
    layers += [nn.BatchNorm1d(256), nn.Flatten(), nn.Linear(256 * 257, 256)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return net.eval()


def cnn3d():
    """A volumetric encoder-decoder of about 1.9 B edges (random init, batch norms with
    drawn statistics), as medical-imaging U-Nets are: 1 x 32^3 input, two 5^3
    convolutions of 16 channels, a strided 2^3 convolution to 32 x 16^3, two 5^3
    convolutions, a transposed 2^3 convolution back to 16 x 32^3 added to the
    first level, and a 1^3 convolution to 2 classes.  The compiled engine reads
    the 3-d convolutions as stencils and holds the transposed one as CSR."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Conv3d(1, 16, 5, padding=2), nn.BatchNorm3d(16), nn.ReLU(),
                                     nn.Conv3d(16, 16, 5, padding=2), nn.ReLU())
            self.mid = nn.Sequential(nn.Conv3d(16, 32, 2, stride=2), nn.ReLU(),
                                     nn.Conv3d(32, 32, 5, padding=2), nn.ReLU(),
                                     nn.Conv3d(32, 32, 5, padding=2), nn.ReLU(),
                                     nn.ConvTranspose3d(32, 16, 2, stride=2))
            self.out = nn.Conv3d(16, 2, 1)

        def forward(self, x):
            e = self.enc(x)
            return self.out(torch.relu(e + self.mid(e)))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.enc[1].running_var.uniform_(0.5, 2.0)
        net.enc[1].weight.uniform_(-1.5, 1.5)
    return net.eval()


def unet():
    """A small U-Net (95 M edges at 3 x 64 x 64, random init): a convolution to
    32 channels, a strided one to 64 x 32 x 32 and another, a 4 x 4
    transposed convolution of stride 2 back to 32 x 64 x 64 (33 M edges)
    concatenated with the first level, and a convolution to 2 classes."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 32, 3, padding=1)
            self.down = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.mid = nn.Conv2d(64, 64, 3, padding=1)
            self.up = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
            self.out = nn.Conv2d(64, 2, 3, padding=1)

        def forward(self, x):
            a = torch.relu(self.c1(x))
            b = torch.relu(self.mid(torch.relu(self.down(a))))
            return self.out(torch.cat([torch.relu(self.up(b)), a], 1))

    torch.manual_seed(0)
    return Net().eval()


def generator():
    """A CycleGAN-style ResNet generator (302 M edges at 3 x 64 x 64, random
    init): reflect padding before every 3x3 and 7x7 convolution (whose
    stencils read the blocks inside it, the padding's edges as CSR), instance
    norms, a strided convolution to 64 x 32 x 32, three residual blocks and
    a transposed convolution back."""
    import torch
    from torch import nn

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(),
                nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

        def forward(self, x):
            return x + self.body(x)

    torch.manual_seed(0)
    c = 32
    return nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(3, c, 7), nn.InstanceNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c), nn.ReLU(),
        *[Res(2 * c) for _ in range(3)],
        nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1),
        nn.InstanceNorm2d(c), nn.ReLU(), nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7),
        nn.Tanh()).eval()


def _model(name):
    if name == "cnn1d":
        return cnn1d()
    if name == "unet":
        return unet()
    if name == "generator":
        return generator()
    if name == "cnn3d":
        return cnn3d()
    from deepglass.zoo import get

    return get(name)


def child(case: str, engine: str, active: bool) -> None:
    """One measurement (run in a fresh process); prints one JSON line."""
    sys.path.insert(0, HERE)
    import numpy as np
    import torch

    import deepglass
    from deepglass.graph import SignedGraph
    from deepglass.solve import engines

    from bench_frustration import peak_gb, reset_peak, rss_gb

    name, shape, R, _ = CASES[case]
    name, _, null = name.partition("+")
    net = _model(name)
    g = SignedGraph.from_module(net, shape)
    if null:
        from deepglass.experiments.nulls import null_model

        g = null_model(g, null, 0)
    # numba kernels compiled outside the measurement
    tiny = SignedGraph.from_module(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3),
                                                       torch.nn.MaxPool2d(2)), (1, 8, 8))
    deepglass.frustration(tiny, replicas=2, engine="compiled")
    deepglass.frustration(tiny, replicas=2, engine="matrix-free")
    est = engines.engine_estimates(g, R)
    auto = engines.choose_engine(g, R)
    out = {"case": case, "edges": g.n_edges, "csr_edges": engines.csr_edges(g),
           "nodes": g.n_nodes, "replicas": R, "auto": auto,
           "estimates": {k: [e.bytes / 2**30, e.seconds] for k, e in est.items()}}
    if active:
        from deepglass.experiments.active_run import active_table, whole_delta

        x = torch.rand((1,) + tuple(shape), generator=torch.Generator().manual_seed(0))
        base = rss_gb()
        reset_peak()
        t0 = time.perf_counter()
        whole = whole_delta(g, "auto", replicas=2, seed=0)
        table = active_table(g, net, x, delta=whole.frustration, method="auto", replicas=2,
                             seed=0, warm_start=whole.sigma)
        out.update(active_seconds=time.perf_counter() - t0, active_peak_gb=peak_gb(),
                   active_base_gb=base, delta=whole.frustration,
                   delta_x=float(table["delta_x"].iloc[0]))
    else:
        base = rss_gb()
        reset_peak()
        t0 = time.perf_counter()
        r = deepglass.frustration(g, replicas=R, seed=0, engine=engine)
        out.update(engine=r.info.get("engine"), asked=engine, seconds=r.seconds,
                   wall=time.perf_counter() - t0, base_gb=base,
                   peak_gb=peak_gb() - base, frustration=r.frustration,
                   local_min=bool(np.all(r.local_min)))
    print("RESULT " + json.dumps(out), flush=True)


def run_child(case: str, engine: str, active: bool = False, timeout: float = 3600) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", case, "--engine", engine]
    if active:
        cmd.append("--active")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{case} {engine} failed:\n{p.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="lenet,resnet18-32,alexnet-1,cnn1d")
    ap.add_argument("--active", action="store_true", help="active subnetwork of the 1-d CNN")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="auto", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.engine, a.active)
        return
    print(f"{'case':>14} {'R':>3} {'engine':>11} {'est GB':>7} {'peak GB':>8} {'ratio':>6} "
          f"{'est s':>7} {'solver s':>8} {'ratio':>6}  auto")
    mem, tim, picks = [], [], []
    cases = list(CASES) if a.cases == "all" else [c for c in a.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    for case in cases:
        seconds = {}
        for engine in CASES[case][3]:
            r = run_child(case, engine)
            used = r["engine"]
            est_gb, est_s = r["estimates"][used]
            seconds[used] = r["seconds"]
            ratio = r["peak_gb"] / max(est_gb, 1e-9)
            if est_gb >= 0.05:          # below, the resident set's granularity dominates
                mem.append(ratio)
            tim.append(r["seconds"] / max(est_s, 1e-9))
            print(f"{case:>14} {r['replicas']:>3} {used:>11} {est_gb:7.2f} {r['peak_gb']:8.2f} "
                  f"{ratio:6.2f} {est_s:7.2f} {r['seconds']:8.2f} {tim[-1]:6.2f}  "
                  f"{r['auto']}", flush=True)
            if case == "cnn1d" and used == r["auto"]:
                print(f"{'':>16}{r['edges']:,} edges, {r['csr_edges']:,} in CSR for the "
                      f"compiled engine; default engine peak {r['peak_gb']:.2f} GB "
                      f"(target <= 4 GB): {'met' if r['peak_gb'] <= 4 else 'not met'}")
        if len(seconds) > 1:
            picks.append(seconds.get(r["auto"], float("inf")) <= min(seconds.values()))
    if tim:
        def within(x):
            return sum(1 / 1.5 <= v <= 1.5 for v in x)
        memory = (f"{min(mem):.2f}-{max(mem):.2f} ({within(mem)} of {len(mem)} within 1.5x)"
                  if mem else "-")
        print(f"\nmeasured / estimated: memory {memory} (estimates of 0.05 GB and more), "
              f"time {min(tim):.2f}-{max(tim):.2f} ({within(tim)} of {len(tim)}); auto picked the faster engine in {sum(picks)} of {len(picks)} cases")
    if a.active:
        r = run_child("cnn1d", "auto", active=True)
        print(f"\nactive subnetwork of one input of the 1-d CNN: {r['active_seconds']:.1f} s, "
              f"peak {r['active_peak_gb']:.2f} GB (resident before {r['active_base_gb']:.2f} GB; "
              f"target <= 8 GB: {'met' if r['active_peak_gb'] <= 8 else 'not met'}), "
              f"delta {r['delta']:.4f}, delta_x {r['delta_x']:.4f}")


if __name__ == "__main__":
    main()

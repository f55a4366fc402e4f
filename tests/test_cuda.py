"""The matrix-free operator and solvers on a CUDA device against the CPU.

Skipped where torch sees no CUDA device (CI); run on a machine with one as
``python -m pytest -q tests/test_cuda.py``.  Every check compares the device
with the CPU on the same graph and start gauges, in float64: the two sides
may still round differently (cuDNN, atomic index_add_), but only a field
within ~1e-15 of a threshold could then take another step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import deepglass
from deepglass.graph import SignedGraph
from deepglass.solve import start_gauges
from deepglass.solve.descent import descent
from deepglass.zoo import get

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _graph(name):
    torch.manual_seed(0)
    if name == "grouped":
        # strides, padding, groups, dilation, average pooling, a dense head
        net = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                            nn.Conv2d(8, 6, 3, dilation=2), nn.AvgPool2d(2), nn.Flatten(),
                            nn.Linear(24, 5))
        return SignedGraph.from_module(net, (4, 17, 17), dtype=torch.float64)
    # LeNet: max pooling and dense layers; ResNet-18: residual adds, projection
    # shortcuts, folded batch norm
    shape = (1, 28, 28) if name == "mnist_lenet" else (3, 32, 32)
    return SignedGraph.from_module(get(name), shape, dtype=torch.float64)


GRAPHS = ["mnist_lenet", "resnet18", "grouped"]


@pytest.mark.parametrize("name", GRAPHS)
def test_operator_on_device_equals_cpu(name):
    g = _graph(name)
    s = torch.from_numpy(start_gauges(g.n_nodes, 3, seed=1)).to(torch.float64)
    gc = g.to("cuda")
    F = g.sym_matvec(s)
    Fc = gc.sym_matvec(s.cuda()).cpu()
    assert torch.allclose(F, Fc, rtol=1e-10, atol=1e-10 * float(g.abs_row_sums().max()))
    assert torch.allclose(g.energy(s), gc.energy(s.cuda()).cpu(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", GRAPHS)
def test_descent_on_device_takes_the_cpu_steps(name):
    g = _graph(name)
    # the matrix-free engine is the one a device runs; in float64 the fields
    # agree to rounding, so both sides flip the same nodes in the same sweeps
    s0 = torch.from_numpy(start_gauges(g.n_nodes, 4, seed=2))
    cpu = descent(g, s0, engine="matrix-free")
    dev = descent(g.to("cuda"), s0, engine="matrix-free")
    assert torch.equal(cpu.sigma, dev.sigma.cpu())
    assert cpu.sweeps == dev.sweeps
    np.testing.assert_array_equal(cpu.flips, dev.flips)


def test_frustration_on_device_is_a_local_minimum():
    g = SignedGraph.from_module(get("mnist_lenet"), (1, 28, 28))
    r = deepglass.frustration(g, device="cuda", replicas=8, seed=3)
    assert r.info["engine"] == "matrix-free"
    assert r.local_min.all()
    # the energies the device reports are those of its gauges, evaluated on the CPU
    e = g.energy(torch.from_numpy(r.sigmas).to(g.dtype)).numpy()
    np.testing.assert_allclose(r.energies, e, atol=1e-5)
    # and the device run is no worse than greedy's from the same starts on average
    gr = deepglass.frustration(g, method="greedy", replicas=8, seed=3)
    assert r.energies.mean() <= gr.energies.mean() + 2e-3

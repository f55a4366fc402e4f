"""The matrix-free operator and solvers on a CUDA device against the CPU.

Each check runs twice (the ``cuda`` fixture of conftest.py): on the real
device, skipped where torch sees none (CI), and on the CPU emulation of one
(``tests/fake_cuda.py``: device placement errors raise as on CUDA, values are
the CPU's).  On a machine with a GPU: ``python -m pytest -q tests/test_cuda.py``
(``-k real`` for the device alone).  Every check compares the device
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

# every check runs on the real device (skipped without one) and on the CPU's
# emulation of one (tests/fake_cuda.py: placement errors raise as on CUDA)
pytestmark = pytest.mark.usefixtures("cuda")


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
def test_descent_on_device_takes_the_cpu_steps(name, cuda):
    g = _graph(name)
    # the matrix-free engine is the one a device runs; in float64 the fields
    # agree to rounding, so both sides flip the same nodes in the same sweeps
    s0 = torch.from_numpy(start_gauges(g.n_nodes, 4, seed=2))
    runs = [{}]
    if cuda == "emulated" and name == "resnet18":
        # the emulation is CPU speed: ResNet-18's first sweeps, by dense field
        # updates and (sparse_ratio=1) by sparse ones, instead of its ~150 sweeps
        runs = [{"max_sweeps": 3}, {"max_sweeps": 3, "sparse_ratio": 1.0}]
    for opts in runs:
        cpu = descent(g, s0, engine="matrix-free", **opts)
        dev = descent(g.to("cuda"), s0, engine="matrix-free", **opts)
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


# ---- the experiments on the device ---------------------------------------------------
def _small_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(8),
                        nn.Conv2d(8, 6, 3, dilation=2, groups=2), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(24, 5))
    with torch.no_grad():
        net[2].running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_null_protocol_on_device_does_not_depend_on_the_batch():
    """Every null kind drawn on the device (N1 / N3 of the graph's blocks, N2 by
    the device's randperm), draws batched 3 at a time or one per unit: the same
    numbers, every replica at a local minimum."""
    from deepglass.experiments.frustration import frustration_vs_nulls

    g = SignedGraph.from_module(_small_net(), (3, 15, 15), dtype=torch.float64)
    runs = {}
    for dpu in (1, 3):
        r = frustration_vs_nulls(g, replicas=3, null_instances=4, starts_per_null=2,
                                 nulls="N1,N2,N3", draws_per_unit=dpu, device="cuda",
                                 engine="matrix-free")
        assert r.info["draws_per_unit"] == dpu and r.runs["local_min"].all()
        runs[dpu] = r.runs
    np.testing.assert_allclose(runs[1]["energy"], runs[3]["energy"], rtol=0, atol=1e-12)
    # the real replicas are the CPU's (same graph, same starts, float64)
    cpu = frustration_vs_nulls(g, replicas=3, null_instances=1, nulls="", engine="matrix-free")
    real = runs[1][runs[1]["kind"] == "real"]["energy"].to_numpy()
    np.testing.assert_allclose(real, cpu.runs["energy"].to_numpy(), rtol=0, atol=1e-12)


def test_batched_draws_on_device_equal_the_cpu():
    """Module nulls (drawn on the CPU, traced) solved as one batch on the device
    end where the CPU's batch ends (float64)."""
    from deepglass.experiments.nulls import null_model
    from deepglass.solve.batched import solve_draws

    net = _small_net().double()
    draws = [SignedGraph.from_module(null_model(net, "N3-he", seed=s), (3, 15, 15),
                                     dtype=torch.float64) for s in range(3)]
    starts = [start_gauges(draws[0].n_nodes, 2, seed=s) for s in range(3)]
    cpu = solve_draws(draws, starts)
    dev = solve_draws([d.to("cuda") for d in draws], starts)
    for a, b in zip(cpu, dev):
        np.testing.assert_array_equal(a["sigmas"], b["sigmas"])
        np.testing.assert_allclose(a["energies"], b["energies"], rtol=0, atol=1e-12)


def test_n2_on_device_keeps_the_weight_multiset():
    from deepglass.experiments.nulls import null_model

    g = SignedGraph.from_module(_small_net(), (3, 15, 15), dtype=torch.float64)
    n2 = null_model(g.to("cuda"), "N2", seed=1)
    assert n2.device.type == "cuda" and n2.n_edges == g.n_edges
    A, A2 = g.to_scipy(), n2.to_scipy()
    assert np.array_equal(A.indptr, A2.indptr) and np.array_equal(A.indices, A2.indices)
    pooled = [b for b in g.edge_blocks if b.kind in ("conv", "dense")]
    real = np.sort(np.concatenate([b.coo()[2] for b in pooled]))
    null = np.sort(np.concatenate([b.coo()[2] for b in n2.edge_blocks
                                   if b.kind in ("unshared_conv", "dense")]))
    np.testing.assert_array_equal(real, null)


def test_active_subnetworks_on_device_equal_the_cpu():
    from deepglass.experiments.active import active_subgraph

    net = _small_net()
    g = SignedGraph.from_module(net, (3, 15, 15))
    x = torch.rand((3, 3, 15, 15), generator=torch.Generator().manual_seed(0))
    cpu = active_subgraph(g, net, x)
    dev = active_subgraph(g.to("cuda"), net.cuda(), x)
    np.testing.assert_array_equal(cpu.keep, dev.keep)
    np.testing.assert_array_equal(cpu.pred, dev.pred)
    np.testing.assert_array_equal(cpu.edges, dev.edges)
    for k in range(3):
        sub_c, sub_d = cpu.subgraph(k), dev.subgraph(k)
        assert sub_d.device.type == "cuda" and sub_c.n_edges == sub_d.n_edges
        s = torch.from_numpy(start_gauges(g.n_nodes, 2, seed=k)).to(torch.float64)
        torch.testing.assert_close(sub_c.to(dtype=torch.float64).energy(s),
                                   sub_d.to(dtype=torch.float64).energy(s.cuda()).cpu(),
                                   rtol=0, atol=1e-12)
        # delta_x by the matrix-free descent on the device is a local minimum
        r = deepglass.frustration(sub_d, replicas=2, seed=k, device="cuda",
                                  engine="matrix-free")
        assert r.local_min.all()
    net.cpu()


def test_near_monotonicity_on_device_equals_the_cpu():
    from deepglass.experiments.monotonicity import near_monotonicity

    net = _small_net().double()
    g = SignedGraph.from_module(net, (3, 15, 15))
    r = deepglass.frustration(g, replicas=4, seed=0)
    x = torch.rand((3, 3, 15, 15), generator=torch.Generator().manual_seed(1)).double()
    cpu = near_monotonicity(net, r.sigma_in, r.sigma_out, x, amplitudes=8, seed=2)
    dev = near_monotonicity(net.cuda(), r.sigma_in, r.sigma_out, x, amplitudes=8, seed=2,
                            device="cuda")
    # the noise is drawn on the CPU either way; float64 outputs agree far below
    # the output differences the counts compare
    assert (cpu.trials["rho"].to_numpy() == dev.trials["rho"].to_numpy()).all()
    assert cpu.gamma == dev.gamma
    net.cpu()


def test_active_command_on_device_equals_the_cpu(cli, tmp_path):
    # `deepglass active --device cuda`: the graph, the forward passes that find
    # the active nodes and every solve on the device; the same table as the
    # CPU's with the same (matrix-free) engine
    import json

    argv = ["active", "digits_cnn", "--inputs", "digits", "--n", "4", "--replicas", "2",
            "--method", "descent", "--engine", "matrix-free", "--json"]
    code, out, err = cli(argv)
    assert code == 0, err
    code, out_dev, err = cli(argv + ["--device", "cuda", "--out", str(tmp_path / "run")])
    assert code == 0, err
    cpu, dev = json.loads(out), json.loads(out_dev)
    assert dev["delta"] == pytest.approx(cpu["delta"], rel=1e-5)
    np.testing.assert_allclose([r["delta_x"] for r in dev["table"]],
                               [r["delta_x"] for r in cpu["table"]], rtol=1e-5)
    # a run on the device is another configuration than one on the CPU
    assert '"cuda' in (tmp_path / "run" / "config.toml").read_text().replace("'", '"')


@pytest.mark.parametrize("command", [["frustration", "digits_cnn"],
                                     ["active", "digits_cnn", "--inputs", "digits"],
                                     ["monotonicity", "digits_cnn", "--inputs", "digits"]])
def test_compiled_engine_with_a_device_is_one_line(cli, command, tmp_path):
    # the compiled engine is numba on the CPU: refused with a device before
    # anything is loaded, in every command that runs a descent
    code, out, err = cli(command + ["--engine", "compiled", "--device", "cuda",
                                    "--out", str(tmp_path / "run")])
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["error: --engine compiled runs on the CPU; use "
                                        "--engine matrix-free (or auto) with a device"]
    assert not (tmp_path / "run").exists()


def test_active_units_on_ray_ask_for_the_graphs_device(monkeypatch):
    # a graph on a CUDA device: the executor is made for that device (with
    # Ray, each unit then asks for a GPU; test_batched checks the request)
    import deepglass.executors as executors
    from deepglass.experiments.active_run import run_active

    asked = []
    real = executors.get_executor

    def spy(name=None, address=None, device=None, **kwargs):
        asked.append((name, device))
        return real("inprocess")      # Ray's GPU scheduling is not emulated

    monkeypatch.setattr(executors, "get_executor", spy)
    net = _small_net()
    g = SignedGraph.from_module(net, (3, 15, 15)).to("cuda")
    x = torch.rand((3, 3, 15, 15), generator=torch.Generator().manual_seed(0))
    table = run_active(None, net.cuda(), g, x, replicas=2, executor="ray", unit_size=2)
    net.cpu()
    assert any(name == "ray" and str(dev).startswith("cuda") for name, dev in asked)
    assert len(table) == 3

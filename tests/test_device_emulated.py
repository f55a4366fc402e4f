"""Device code paths without a GPU: the CUDA emulation of ``tests/fake_cuda.py``.

First the emulation itself (placement errors raise as on CUDA, values are the
CPU's, in-place and view semantics hold, every patch is undone); then the
device paths of deepglass that ``tests/test_cuda.py`` does not cover (every
solver method, retraced null draws, the experiments' runs, engine choice, the
CLI), each run with the ``cuda`` fixture: on the real device where there is
one, on the emulation everywhere.  Graphs are small and float64 where the
device is compared with the CPU.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fake_cuda import FakeCudaTensor, fake_cuda

MIX = "Expected all tensors to be on the same device"


@pytest.fixture
def emulated():
    with fake_cuda():
        yield


# ---- the emulation ------------------------------------------------------------------
def test_factories_and_copies_make_device_tensors_with_the_cpu_values(emulated):
    made = {
        "zeros": (torch.zeros(2, 3, device="cuda"), torch.zeros(2, 3)),
        "ones": (torch.ones(4, device=torch.device("cuda", 0)), torch.ones(4)),
        "full": (torch.full((2,), 1.5, device="cuda:0"), torch.full((2,), 1.5)),
        "arange": (torch.arange(5, device="cuda"), torch.arange(5)),
        "eye": (torch.eye(3, device="cuda"), torch.eye(3)),
        "linspace": (torch.linspace(0, 1, 5, device="cuda"), torch.linspace(0, 1, 5)),
        "tensor": (torch.tensor([[1, 2]], device="cuda"), torch.tensor([[1, 2]])),
        "as_tensor": (torch.as_tensor(np.arange(3.0), device="cuda"), torch.arange(3.0).double()),
        "to": (torch.arange(3.0).to("cuda"), torch.arange(3.0)),
        "to_dtype": (torch.arange(3).to("cuda", torch.float64), torch.arange(3.0).double()),
        "cuda": (torch.arange(3).cuda(), torch.arange(3)),
    }
    for name, (dev, cpu) in made.items():
        assert isinstance(dev, FakeCudaTensor) and dev.device == torch.device("cuda", 0), name
        assert dev.is_cuda and dev.dtype == cpu.dtype and dev.shape == cpu.shape, name
        back = dev.cpu()
        assert type(back) is torch.Tensor and back.device.type == "cpu"
        assert torch.equal(back, cpu), name
    assert torch.empty(2, 2, device="cuda").shape == (2, 2)
    # seeded draws: the CPU generator's numbers (device RNG streams are not emulated)
    gen = torch.Generator(device="cuda").manual_seed(3)
    assert gen.device.type == "cuda" and isinstance(gen, torch.Generator)
    r = torch.rand(4, generator=gen, device="cuda")
    p = torch.randperm(6, generator=gen, device="cuda")
    ref = torch.Generator().manual_seed(3)
    assert torch.equal(r.cpu(), torch.rand(4, generator=ref))
    assert torch.equal(p.cpu(), torch.randperm(6, generator=ref))
    # a transfer copies: the device tensor does not alias the host's
    host = torch.zeros(3)
    dev = host.to("cuda")
    dev.add_(1)
    assert host.sum() == 0 and dev.sum().item() == 3
    assert dev.to("cuda") is dev and dev.cuda() is dev
    assert dev.to(torch.float64).device.type == "cuda"
    assert host.to(dev).device.type == "cuda"


def test_mixing_devices_raises_as_on_cuda(emulated):
    x = torch.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match=MIX):
        x + torch.ones(3)
    with pytest.raises(RuntimeError, match=MIX):
        torch.ones(2, 3) @ torch.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match=MIX):
        F.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3, device="cuda"))
    with pytest.raises(RuntimeError, match=MIX):
        x.index_select(0, torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match=MIX):
        torch.zeros(3, device="cuda").index_add_(0, torch.tensor([0, 1, 2]), torch.ones(3))
    with pytest.raises(RuntimeError, match="indices should be either on cpu"):
        torch.ones(3)[torch.tensor([0], device="cuda")]
    # what CUDA allows: 0-dim CPU tensors, CPU indices of x[idx], copies across devices
    assert torch.equal((x * torch.tensor(2.0)).cpu(), torch.full((3,), 2.0))
    assert torch.equal(x[torch.tensor([0, 2])].cpu(), torch.ones(2))
    x[torch.tensor([1])] = torch.tensor(5.0)
    assert x.tolist() == [1.0, 5.0, 1.0]
    host = torch.zeros(3)
    host.copy_(x)
    x.copy_(torch.arange(3.0))
    assert host.tolist() == [1.0, 5.0, 1.0] and x.tolist() == [0.0, 1.0, 2.0]


def test_numpy_of_a_device_tensor_raises_item_and_tolist_work(emulated):
    x = torch.arange(4.0, device="cuda")
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        x.numpy()
    with pytest.raises(TypeError, match="can't convert cuda:0"):
        np.asarray(x)
    with pytest.raises(TypeError, match="can't convert cuda:0"):
        np.asarray(x[1:])
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0] and x.sum().item() == 6.0
    np.testing.assert_array_equal(x.cpu().numpy(), np.arange(4.0))


def test_generator_on_the_other_device_raises(emulated):
    with pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator"):
        torch.randperm(5, generator=torch.Generator(), device="cuda")
    with pytest.raises(RuntimeError, match="Expected a 'cpu' device type for generator"):
        torch.randperm(5, generator=torch.Generator(device="cuda"))
    with pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator"):
        torch.zeros(3, device="cuda").uniform_(generator=torch.Generator())


@pytest.mark.filterwarnings("ignore:Sparse")
def test_in_place_views_and_values(emulated):
    x = torch.arange(6.0, device="cuda")
    assert x.add_(1) is x and x.mul_(2) is x
    v = x[1:3]
    v.zero_()                                       # a view shares the storage
    assert x.tolist() == [2.0, 0.0, 0.0, 8.0, 10.0, 12.0]
    x.view(2, 3)[1].fill_(-1)
    assert x.tolist() == [2.0, 0.0, 0.0, -1.0, -1.0, -1.0]
    out = torch.empty(6, device="cuda")
    assert torch.add(x, 1, out=out) is out
    # addresses tell tensors apart (caches are keyed by them); a view is inside its base
    assert len({x.data_ptr(), out.data_ptr(), x.clone().data_ptr()}) == 3
    assert x[2:].data_ptr() == x.data_ptr() + 2 * x.element_size()
    # the ops deepglass runs, against the CPU
    g = torch.Generator().manual_seed(0)
    a, w = torch.randn(2, 4, 9, 9, generator=g), torch.randn(6, 2, 3, 3, generator=g)
    torch.testing.assert_close(F.conv2d(a.cuda(), w.cuda(), groups=2, stride=2).cpu(),
                               F.conv2d(a, w, groups=2, stride=2), rtol=0, atol=0)
    b1, b2 = torch.randn(3, 2, 4, generator=g), torch.randn(3, 4, 5, generator=g)
    assert torch.equal(torch.bmm(b1.cuda(), b2.cuda()).cpu(), torch.bmm(b1, b2))
    idx, src = torch.tensor([0, 2, 0]), torch.randn(3, 4, generator=g)
    acc = torch.zeros(3, 4, device="cuda").index_add_(0, idx.cuda(), src.cuda())
    assert torch.equal(acc.cpu(), torch.zeros(3, 4).index_add_(0, idx, src))
    sc = torch.zeros(5, device="cuda").scatter_add(0, idx.cuda(), src[:, 0].cuda())
    assert torch.equal(sc.cpu(), torch.zeros(5).scatter_add(0, idx, src[:, 0]))
    ij, val = torch.tensor([[0, 1, 2], [2, 0, 1]]), torch.tensor([1.0, -2.0, 3.0])
    coo = torch.sparse_coo_tensor(ij.cuda(), val.cuda(), (3, 3))
    dense = torch.sparse_coo_tensor(ij, val, (3, 3)).to_dense()
    assert coo.device.type == "cuda" and coo.is_sparse
    assert torch.equal(torch.sparse.mm(coo, torch.eye(3, device="cuda")).cpu(), dense)
    csr = coo.to_sparse_csr()
    assert csr.layout == torch.sparse_csr
    assert torch.equal((csr @ torch.ones(3, device="cuda")).cpu(), dense.sum(1))


def test_modules_move_and_compute_on_the_device(emulated):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 9, 3)).eval()
    x = torch.randn(2, 4, 5, 5)
    want = net(x)
    net.cuda()
    assert all(p.device.type == "cuda" for p in net.parameters())
    assert all(b.device.type == "cuda" for b in net.buffers())
    with pytest.raises(RuntimeError, match=MIX):
        net(x)
    torch.testing.assert_close(net(x.cuda()).cpu(), want, rtol=0, atol=0)
    net.cpu()
    assert all(p.device.type == "cpu" for p in net.parameters())


def test_the_emulation_is_undone_on_exit():
    before = torch.cuda.is_available(), torch.Generator, torch.cuda.mem_get_info
    with fake_cuda():
        assert torch.cuda.is_available() and torch.cuda.device_count() == 1
        free, total = torch.cuda.mem_get_info()
        assert free == total == torch.cuda.get_device_properties(0).total_memory
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        assert torch.cuda.max_memory_allocated() == 0
        assert torch.zeros(1, device="cuda").is_cuda
    assert (torch.cuda.is_available(), torch.Generator, torch.cuda.mem_get_info) == before
    assert torch.zeros(1).device.type == "cpu"


# ---- deepglass's device paths (real device where there is one, else emulated) --------
def _digits_graph(dtype=torch.float64):
    import deepglass.zoo as zoo
    from deepglass.graph import SignedGraph

    torch.manual_seed(0)
    net = zoo.get("digits_cnn")
    return net, SignedGraph.from_module(net, (1, 8, 8), dtype=dtype)


def _bn_net():
    """Folded batch norm: null draws of the module, retraced (not on the graph)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 5))
    with torch.no_grad():
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_every_solver_method_on_device(cuda):
    """descent, greedy and exact end where the CPU ends (float64, deterministic);
    anneal's heat bath draws from a device generator: the CPU's numbers on the
    emulation, the device's own stream on a GPU (then: local minima whose
    reported energies are those of their gauges)."""
    import deepglass
    from deepglass.graph import SignedGraph
    from deepglass.solve import frustrated_weight

    _, g = _digits_graph()
    for method, opts in (("descent", {"engine": "matrix-free"}), ("greedy", {}),
                         ("auto", {}), ("anneal", {"sweeps": 20})):
        cpu = deepglass.frustration(g, method=method, replicas=3, seed=4, **opts)
        dev = deepglass.frustration(g, method=method, replicas=3, seed=4, device="cuda", **opts)
        assert dev.method == cpu.method and dev.local_min.all() == cpu.local_min.all()
        e = g.energy(torch.from_numpy(dev.sigmas).to(torch.float64)).numpy()
        np.testing.assert_allclose(dev.energies, e, rtol=0, atol=1e-9)
        if method != "anneal" or cuda == "emulated":
            np.testing.assert_array_equal(dev.sigmas, cpu.sigmas)
            np.testing.assert_allclose(dev.energies, cpu.energies, rtol=0, atol=1e-12)
        # the per-block frustrated weights of the best gauge, by the device's
        # matrix-free pass, are the CPU's for that gauge
        ref = frustrated_weight(g, dev.sigma)
        np.testing.assert_allclose(dev.frustrated["frustrated_weight"].to_numpy(),
                                   ref["frustrated_weight"].to_numpy(), rtol=1e-12, atol=1e-9)
    torch.manual_seed(0)
    tiny = SignedGraph.from_module(nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)),
                                   (5,), dtype=torch.float64)
    cpu = deepglass.frustration(tiny, method="exact")
    dev = deepglass.frustration(tiny, method="exact", device="cuda")
    assert dev.info["optimal"] and dev.frustration == pytest.approx(cpu.frustration, abs=1e-12)


def test_engine_choice_on_device(cuda):
    """On a device: the matrix-free engine only, sized against the device's own
    free memory (torch.cuda.mem_get_info), refused in one line beyond it; the
    draw planner's batch is the largest that fits (at most 128)."""
    from deepglass.errors import DeepglassError, TooLargeError
    from deepglass.memory import MEMORY_FRACTION
    from deepglass.solve.engines import (check_fits, choose_engine, draw_batch_bytes,
                                         draws_per_batch, engine_estimates, matrix_free_bytes)

    _, g = _digits_graph(torch.float32)
    gc = g.to("cuda")
    est = engine_estimates(gc, 8)
    assert list(est) == ["matrix-free"]
    assert est["matrix-free"].bytes == engine_estimates(g, 8)["matrix-free"].bytes
    assert choose_engine(gc, 8) == choose_engine(gc, 8, "matrix-free") == "matrix-free"
    with pytest.raises(DeepglassError, match="compiled engine runs on the CPU"):
        choose_engine(gc, 8, "compiled")
    assert check_fits(g, 8, "descent", "auto", "cuda") == "matrix-free"
    with pytest.raises(DeepglassError, match="--engine compiled runs on the CPU"):
        check_fits(g, 8, "descent", "compiled", "cuda")
    budget = int(MEMORY_FRACTION * torch.cuda.mem_get_info()[0])
    per_replica = matrix_free_bytes(g, 2) - matrix_free_bytes(g, 1)
    too_many = 2 * budget // per_replica + 2
    with pytest.raises(TooLargeError, match="GB of device memory"):
        choose_engine(gc, too_many)
    d = draws_per_batch(g, 2, 1000, device="cuda")
    assert 1 <= d <= 128 and draw_batch_bytes(g, 2, d) <= budget
    assert d == 128 or draw_batch_bytes(g, 2, d + 1) > budget
    assert draws_per_batch(g, 2, 3, device="cuda") == min(3, d)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_null_protocol_of_a_module_on_device(cuda, batchnorm):
    """frustration_vs_nulls of a module with device="cuda": nulls drawn on the
    device graph (convolutions and dense layers only) or, with folded batch
    norm, drawn on the module and retraced, draws batched; on the emulation the
    CPU's numbers for the real net, N1 and N3 (same draws, same starts: N2 is
    dealt by another algorithm on a device), on a GPU local minima."""
    from deepglass.experiments.frustration import frustration_vs_nulls

    if batchnorm:
        net = _bn_net()
    else:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(64, 5))
    kw = dict(replicas=2, null_instances=3, starts_per_null=1, nulls="N1,N2,N3-he",
              input_shape=(1, 8, 8), engine="matrix-free", seed=1)
    dev = frustration_vs_nulls(net, device="cuda", draws_per_unit=3, **kw)
    assert dev.runs["local_min"].all() and dev.info["draws_per_unit"] == 3
    assert sorted(dev.runs["kind"].value_counts().items()) == [
        ("N1", 3), ("N2", 3), ("N3-he", 3), ("real", 2)]
    if cuda == "emulated":
        cpu = frustration_vs_nulls(net, device="cpu", draws_per_unit=3, **kw)
        same = (cpu.runs["kind"] != "N2").to_numpy()
        np.testing.assert_array_equal(dev.runs["kind"], cpu.runs["kind"])
        # the same draws and starts: equal up to float32 rounding (on some
        # processors the emulated device's kernels sum the drawn weights in
        # another order than the CPU's: 2e-9 here; other draws move eps by ~1e-2)
        np.testing.assert_allclose(dev.runs["energy"][same], cpu.runs["energy"][same],
                                   rtol=1e-7, atol=0)


def test_monotonicity_experiment_on_device(cuda):
    """The near-monotonicity protocol with device="cuda" and the network on the
    CPU (as the CLI loads it): the forward passes run on the device (the module
    copied there, the caller's left on the CPU).  Float64 network, matrix-free
    gauges: on the emulation the CPU's trials to the bit."""
    from deepglass.experiments.monotonicity import monotonicity_experiment

    net = _bn_net().double()
    x = torch.rand((3, 1, 8, 8), generator=torch.Generator().manual_seed(2)).double()
    kw = dict(nulls=("random-order", "N1"), amplitudes=4, replicas=2, seed=3,
              engine="matrix-free", unit_size=2)
    dev = monotonicity_experiment(net, x, device="cuda", **kw)
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert len(dev.trials) == 3 * 3 * 4 and set(dev.trials["model"]) == {
        "real", "random-order", "N1"}
    assert ((dev.trials["rho"] >= 0) & (dev.trials["rho"] <= 1)).all()
    if cuda == "emulated":
        cpu = monotonicity_experiment(net, x, device="cpu", **kw)
        cols = ["model", "input", "amplitude", "rho", "rho_down", "predicted", "class_kept"]
        assert dev.trials[cols].equals(cpu.trials[cols])
        assert dev.gammas() == cpu.gammas()


def test_active_run_on_device_equals_the_cpu(cuda, tmp_path):
    """Active subnetworks against the whole network (run_active) with the graph
    and the network on the device: patterns recorded there, subgraphs solved by
    Algorithm 1 on their explicit couplings: the CPU's table."""
    from deepglass.experiments.active_run import run_active

    net, g = _digits_graph(torch.float32)
    x = torch.rand((3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    cols = ["input", "pred", "delta_x", "below_delta"]
    cpu = run_active(tmp_path / "cpu", net, g, x, replicas=2, unit_size=2)
    dev = run_active(tmp_path / "dev", net.cuda(), g.to("cuda"), x, replicas=2, unit_size=2)
    net.cpu()
    assert set(cols) <= set(dev.columns)
    pd_equal = dev[cols].reset_index(drop=True).equals(cpu[cols].reset_index(drop=True))
    assert pd_equal, (dev[cols], cpu[cols])


def test_cli_on_device(cuda, cli, tmp_path):
    """deepglass frustration / monotonicity with --device cuda, in process: exit
    0 and, on the emulation, the CPU's figures."""
    import json

    base = ["frustration", "digits_cnn", "--replicas", "2", "--engine", "matrix-free",
            "--json"]
    code, out, err = cli(base + ["--device", "cuda"])
    assert code == 0, err
    dev = json.loads(out)
    assert dev["local_min"] and dev["engine"] == "matrix-free"
    code, out, err = cli(base + ["--device", "cuda", "--nulls", "N1,N3", "--null-instances",
                                 "2", "--starts-per-null", "1", "--out", str(tmp_path / "r")])
    assert code == 0, err
    nulls = json.loads(out)
    assert set(nulls["frustration"]) == {"real", "N1", "N3-xavier", "N3-he"}
    code, out, err = cli(["monotonicity", "digits_cnn", "--inputs", "digits", "--n", "3",
                          "--amplitudes", "3", "--replicas", "2", "--nulls", "N1",
                          "--engine", "matrix-free", "--device", "cuda", "--json"])
    assert code == 0, err
    mono = json.loads(out)
    if cuda == "emulated":
        code, out, _ = cli(base + ["--device", "cpu"])
        assert code == 0 and json.loads(out)["energies"] == dev["energies"]
        code, out, _ = cli(["monotonicity", "digits_cnn", "--inputs", "digits", "--n", "3",
                            "--amplitudes", "3", "--replicas", "2", "--nulls", "N1",
                            "--engine", "matrix-free", "--device", "cpu", "--json"])
        assert code == 0 and _same_but_seconds(json.loads(out), mono)


def _same_but_seconds(a, b):
    """JSON reports equal but for timings."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if "second" not in k}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return strip(a) == strip(b)


def test_null_model_of_a_module_stays_on_its_device(cuda):
    """null_model of a module on the device: N1 / N3 give a module whose
    parameters are there, N2 (traced) a graph there, with the CPU's edge count."""
    import deepglass

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3))
    dev = net.to("cuda")
    for kind in ("N1", "N3-he"):
        assert next(deepglass.null_model(dev, kind, seed=1).parameters()).device.type == "cuda"
    g2 = deepglass.null_model(dev, "N2", seed=1, input_shape=(1, 5, 5))
    assert g2.device.type == "cuda"
    assert g2.n_edges == deepglass.SignedGraph.from_module(net.cpu(), (1, 5, 5)).n_edges


def test_zero_padded_reads_on_device(cuda):
    """A graph whose layer reads zero padding inside its input (``ZeroPaddedBlock``): its
    operator, a graph null drawn on the device and both descent engines there."""
    import deepglass
    from deepglass.graph import SignedGraph
    from shift_nets import ChannelShift

    torch.manual_seed(0)
    g = SignedGraph.from_module(ChannelShift().eval(), (1, 6, 6), dtype=torch.float64)
    null = deepglass.null_model(g, "N1", seed=2)
    dev = g.to("cuda")
    x = torch.randn(2, g.n_nodes, dtype=torch.float64)
    np.testing.assert_allclose(dev.sym_matvec(x.to("cuda")).cpu().numpy(), g.sym_matvec(x).numpy(),
                               atol=1e-12)
    null_dev = deepglass.null_model(dev, "N1", seed=2)
    assert str(null_dev.edge_blocks[1].src_mask.device).startswith("cuda")
    np.testing.assert_allclose(null_dev.sym_matvec(x.to("cuda")).cpu().numpy(),
                               null.sym_matvec(x).numpy(), atol=1e-12)
    for engine in ("matrix-free", "compiled"):
        res = deepglass.frustration(dev, replicas=2, seed=0, engine=engine)
        e = g.energy(torch.from_numpy(res.sigmas).to(torch.float64)).numpy()
        np.testing.assert_allclose(res.energies, e, atol=1e-9)


def test_meanfield_on_device(cuda, cli, tmp_path):
    """deepglass criticality meanfield --device cuda: the network's products W x
    run on the device (the Krylov vectors stay on the host): lambda_max is the
    CPU's (and the explicit matrix's top eigenvalue), the curves converge, Ray would ask for a
    GPU, the run records its device, and a matrix file refuses --device."""
    import json

    import scipy.sparse

    from deepglass.criticality.meanfield_run import MeanFieldConfig, run_meanfield

    _, g = _digits_graph(torch.float64)
    ref = np.linalg.eigvalsh(g.to_scipy_sym().toarray())[-1]
    lam = {}
    for device in ("cpu", "cuda"):
        code, out, err = cli(["criticality", "meanfield", "digits_cnn", "--device", device,
                              "--json"])
        assert code == 0, err
        lam[device] = json.loads(out)["lambda_max"]
    assert abs(lam["cuda"] - lam["cpu"]) < 1e-5 * lam["cpu"]
    run = tmp_path / "mf"
    argv = ["criticality", "meanfield", "digits_cnn", "--out", str(run), "--n-t", "3",
            "--n-broad", "0", "--n-h", "3", "--fields", "0", "--field-temps", "0.5",
            "--fit-t-max", "0.3", "--device", "cuda", "--json"]
    code, out, err = cli(argv)
    assert code == 0, err
    curves = pd.read_parquet(run / "meanfield_curves_T.parquet")
    assert len(curves) and curves.converged.all()
    assert 'device = "cuda"' in (run / "config.toml").read_text()
    code, _, err = cli(argv[:-3] + ["--json"])                 # the CPU: another run
    assert code == 2 and "--force" in err
    # the Python API: a device graph's run asks Ray's tasks for a GPU
    from deepglass import executors

    seen = []
    real = executors.get_executor

    def spy(name=None, address=None, device=None, **kw):
        seen.append(str(device))
        return real(name, address, device=device, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(executors, "get_executor", spy)
        res = run_meanfield(g.to("cuda"), MeanFieldConfig(curves=False))
    assert seen[0].startswith("cuda")      # the executor the stages make
    assert abs(res.spectrum["lambda_max"] - ref) < 1e-9 * ref
    scipy.sparse.save_npz(tmp_path / "w.npz", scipy.sparse.identity(4, format="csr"))
    code, _, err = cli(["criticality", "meanfield", str(tmp_path / "w.npz"), "--device", "cuda"])
    assert code == 2 and "--device" in err and len(err.strip().splitlines()) == 1

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

"""Tests of deepglass.zoo: architectures, trained small nets, cache and loaders."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from deepglass import zoo
from deepglass.errors import DeepglassError
from deepglass.zoo import registry
from deepglass.zoo.googlenet import BasicConv2d, GoogLeNet
from deepglass.zoo.shufflenet import ShuffleNetV1, channel_shuffle

# torchvision's published parameter counts (model cards); BVLC AlexNet's count
# is the Caffe model's; the others are derived in tests below.
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840,
    "resnet18": 11_689_512,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "googlenet": 6_624_904,
    "shufflenet_v2_x1_0": 2_278_604,
    "alexnet_caffe": 60_965_224,
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def graph_counts(model: nn.Module, x: torch.Tensor):
    """(signed-graph nodes per SPEC section 1, mult-adds, output) from one forward pass at batch 1.

    Nodes: input elements plus the output elements of every convolution, linear
    and pooling layer (an adaptive pool that is the identity adds none).
    """
    nodes, macs = [x[0].numel()], [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.AdaptiveAvgPool2d) and inp[0].shape == out.shape:
            return
        nodes.append(out[0].numel())
        if isinstance(mod, nn.Conv2d):
            macs[0] += out[0].numel() * (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)
        elif isinstance(mod, nn.Linear):
            macs[0] += mod.in_features * mod.out_features

    kinds = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        y = model(x)
    for h in hooks:
        h.remove()
    return sum(nodes), macs[0], y


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP spinning makes
    multi-threaded forward passes 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGLASS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --------------------------------------------------------------------------- catalogue


def test_names_and_unknown():
    assert set(zoo.names()) >= {
        "alexnet", "alexnet_caffe", "googlenet", "googlenet_bvlc", "squeezenet1_0", "squeezenet1_1",
        "resnet18", "shufflenet_v1", "shufflenet_v2_x1_0", "digits_cnn", "mnist_lenet",
    }
    with pytest.raises(DeepglassError, match="known: alexnet, .*resnet18"):
        zoo.get("vgg16")
    with pytest.raises(DeepglassError, match="unknown zoo network"):
        zoo.input_shape("nope")
    table = zoo.catalogue()
    assert list(table["name"]) == zoo.names()
    assert zoo.input_shape("squeezenet1_1") == (3, 227, 227)
    assert zoo.input_shape("alexnet_caffe") == (3, 227, 227)


# paper 000 Table 1 (signed-graph nodes, millions, 2 decimals); exact where SPEC gives the number
TABLE1_NODES = {"alexnet_caffe": 0.94, "googlenet": 4.80, "googlenet_bvlc": 4.80, "squeezenet1_1": 3.27}
EXACT_NODES = {"alexnet": 733_032, "digits_cnn": 64 + 512 + 128 + 256 + 64 + 10}
# mult-adds in millions: ShuffleNet paper Table 2 (1x, g = 3: 137 MFLOPs); torchvision model cards
MULT_ADDS = {"shufflenet_v1": 137, "alexnet": 714, "resnet18": 1814, "googlenet": 1498, "shufflenet_v2_x1_0": 145}


@pytest.mark.parametrize("name", registry.names())
def test_model_builds_runs_and_traces(name):
    model = zoo.get(name, seed=0)
    shape = zoo.input_shape(name)
    assert model.default_input_shape == shape
    assert not model.training
    count = n_params(model)
    assert count == zoo.entry(name).num_params
    if name in TORCHVISION_PARAMS:
        assert count == TORCHVISION_PARAMS[name]
    x = torch.randn(1, *shape)
    nodes, macs, y = graph_counts(model, x)
    n_classes = 10 if name in ("digits_cnn", "mnist_lenet") else 1000
    assert y.shape == (1, n_classes)
    assert torch.isfinite(y).all()
    if name in EXACT_NODES:
        assert nodes == EXACT_NODES[name]
    if name in TABLE1_NODES:
        assert round(nodes / 1e6, 2) == TABLE1_NODES[name]
    if name in MULT_ADDS:
        assert abs(macs / 1e6 - MULT_ADDS[name]) < 1.0
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), y)


def test_seeded_initialisation():
    a = zoo.get("digits_cnn", seed=3).state_dict()
    b = zoo.get("digits_cnn", seed=3).state_dict()
    c = zoo.get("digits_cnn", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    # the global RNG is left alone
    torch.manual_seed(123)
    r1 = torch.rand(3)
    torch.manual_seed(123)
    zoo.get("squeezenet1_1", seed=1)
    assert torch.equal(torch.rand(3), r1)
    with pytest.raises(DeepglassError, match="seed"):
        zoo.get("digits_cnn", seed=-1)


def test_shufflenet_v1_complexity_matches_paper():
    # Zhang et al. 2018, Table 2: ShuffleNet 1x has 143 / 140 / 137 MFLOPs (mult-adds)
    # for g = 1 / 2 / 3 at 224x224.
    for g, mflops in [(1, 143), (2, 140)]:
        _, macs, _ = graph_counts(ShuffleNetV1(g).eval(), torch.zeros(1, 3, 224, 224))
        assert abs(macs / 1e6 - mflops) < 1.0
    m = zoo.get("shufflenet_v1")
    assert m.groups == 3
    # paper: stage-2 first unit's 1x1 conv is not grouped; the others are
    assert m.stage2[0].branch[0].groups == 1 and m.stage2[1].branch[0].groups == 3
    assert [m.stage2[-1].branch[-1].num_features, m.stage3[-1].branch[-1].num_features,
            m.stage4[-1].branch[-1].num_features] == [240, 480, 960]


def test_channel_shuffle_is_the_paper_permutation():
    g, per = 3, 4
    x = torch.arange(g * per, dtype=torch.float32).reshape(1, g * per, 1, 1)
    y = channel_shuffle(x, g).flatten().tolist()
    # output group j, position i holds input group i, position j
    expected = [float(i * per + j) for j in range(per) for i in range(g)]
    assert y == expected


def test_googlenet_variants_parameter_relation():
    tv, bvlc = zoo.get("googlenet"), zoo.get("googlenet_bvlc")
    bn = sum(2 * m.bn.num_features for m in tv.modules() if isinstance(m, BasicConv2d))
    conv_bias = sum(m.conv.out_channels for m in tv.modules() if isinstance(m, BasicConv2d))
    # the BVLC "5x5" branch has 5x5 kernels where torchvision has 3x3
    extra = sum(
        blk.branch3[1].conv.in_channels * blk.branch3[1].conv.out_channels * (25 - 9)
        for blk in (getattr(tv, n) for n in dir(tv) if n.startswith("inception"))
    )
    assert n_params(bvlc) == n_params(tv) - bn + conv_bias + extra
    assert bvlc.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert tv.inception3a.branch3[1].conv.kernel_size == (3, 3)


def test_torchvision_key_names_and_shapes():
    expect = {
        "alexnet": {"features.0.weight": (64, 3, 11, 11), "features.10.bias": (256,), "classifier.6.weight": (1000, 4096)},
        "resnet18": {"layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer4.1.bn2.running_var": (512,),
                     "fc.weight": (1000, 512), "bn1.num_batches_tracked": ()},
        "googlenet": {"conv1.conv.weight": (64, 3, 7, 7), "conv1.bn.running_mean": (64,),
                      "inception3a.branch3.1.conv.weight": (32, 16, 3, 3),
                      "inception5b.branch4.1.bn.weight": (128,), "fc.weight": (1000, 1024)},
        "squeezenet1_0": {"features.0.weight": (96, 3, 7, 7), "features.12.expand3x3.weight": (256, 64, 3, 3),
                          "classifier.1.weight": (1000, 512, 1, 1)},
        "squeezenet1_1": {"features.0.weight": (64, 3, 3, 3), "features.12.squeeze.bias": (64,)},
        "shufflenet_v2_x1_0": {"conv1.0.weight": (24, 3, 3, 3), "stage2.0.branch1.0.weight": (24, 1, 3, 3),
                               "stage2.0.branch2.0.weight": (58, 24, 1, 1), "stage3.7.branch2.3.weight": (116, 1, 3, 3),
                               "conv5.1.running_var": (1024,), "fc.weight": (1000, 1024)},
    }
    for name, keys in expect.items():
        sd = zoo.get(name).state_dict()
        for k, shape in keys.items():
            assert tuple(sd[k].shape) == shape, (name, k)
    assert len(zoo.get("resnet18").state_dict()) == 122
    assert len(zoo.get("alexnet").state_dict()) == 16
    assert not any(k.startswith("stage2.1.branch1") for k in zoo.get("shufflenet_v2_x1_0").state_dict())


def test_googlenet_aux_heads_only_in_training():
    m = GoogLeNet(aux_logits=True)
    assert any(k.startswith("aux1.") for k in m.state_dict())
    m.train()
    out = m(torch.randn(2, 3, 64, 64))  # every pool is adaptive or ceil-mode: small inputs run
    assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (2, 1000)
    m.eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    torch.fx.symbolic_trace(m)


# --------------------------------------------------------------------------- trained nets


def test_digits_training_is_deterministic():
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    a = zoo.train("digits_cnn", seed=0, epochs=2)
    b = zoo.train("digits_cnn", seed=0, epochs=2)
    c = zoo.train("digits_cnn", seed=1, epochs=2)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc.weight"], sc["fc.weight"])
    assert a.test_accuracy == b.test_accuracy
    assert list(a.history["epoch"]) == [1, 2]
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before  # restored


def test_digits_pretrained_accuracy_and_cache(cache, monkeypatch):
    model = zoo.get("digits_cnn", pretrained=True, seed=0)
    info = model.training_info
    assert info["cached"] is False and info["test_accuracy"] > 0.9
    data = zoo.load_data("digits_cnn")
    with torch.no_grad():
        acc = (model(data.X_test).argmax(1) == data.y_test).float().mean().item()
    assert acc == pytest.approx(info["test_accuracy"])
    files = list((cache / "zoo").iterdir())
    assert [f.name for f in files] == [f"digits_cnn-seed0-v{zoo.CODE_VERSION}.safetensors"]

    def no_training(*a, **k):
        raise AssertionError("trained again despite the cache")

    monkeypatch.setattr(registry, "train", no_training)
    again = zoo.get("digits_cnn", pretrained=True, seed=0)
    assert again.training_info["cached"] is True
    assert again.training_info["test_accuracy"] == info["test_accuracy"]
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    via_loader = zoo.load_model("digits_cnn")  # a zoo name: trained weights by default
    assert via_loader.training_info["cached"] is True and via_loader.default_input_shape == (1, 8, 8)


def test_pretrained_unavailable_for_imagenet_models():
    with pytest.raises(DeepglassError, match="load_model"):
        zoo.get("alexnet", pretrained=True)


def test_datasets():
    d = zoo.load_data("digits_cnn")
    assert d.X_train.shape[1:] == (1, 8, 8) and len(d.X_train) + len(d.X_test) == 1797
    assert 0.0 <= float(d.X_train.min()) and float(d.X_train.max()) <= 1.0
    assert set(d.y_test.tolist()) == set(range(10))
    with pytest.raises(DeepglassError, match="digits_cnn"):
        zoo.load_data("alexnet")


@pytest.mark.slow
def test_mnist_lenet_trains(cache):
    d = zoo.load_data("mnist_lenet")
    assert d.X_train.shape == (4000, 1, 28, 28) and d.X_test.shape == (1000, 1, 28, 28)
    r = zoo.train("mnist_lenet", seed=0, epochs=2)
    assert r.test_accuracy > 0.8


# --------------------------------------------------------------------------- loading


def test_state_dict_round_trip(tmp_path):
    src = zoo.get("squeezenet1_1", seed=5)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    loaded = zoo.load_model(path, arch="squeezenet1_1")
    assert loaded.default_input_shape == (3, 227, 227) and not loaded.training
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))
    # training checkpoints and DataParallel prefixes
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    again = zoo.load_model(str(path), arch="squeezenet1_1")
    assert torch.equal(again.features[0].weight, src.features[0].weight)
    # torch.compile's wrapper, alone or inside DataParallel
    for prefix in ("_orig_mod.", "module._orig_mod.", "_orig_mod.module."):
        torch.save({prefix + k: v for k, v in src.state_dict().items()}, path)
        again = zoo.load_model(str(path), arch="squeezenet1_1")
        assert torch.equal(again.features[0].weight, src.features[0].weight)


def test_state_dict_errors(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(zoo.get("digits_cnn").state_dict(), path)
    with pytest.raises(DeepglassError, match="arch"):
        zoo.load_model(path)
    with pytest.raises(DeepglassError, match=r"missing keys: fc1\.weight"):
        zoo.load_model(path, arch="mnist_lenet")
    sd = zoo.get("digits_cnn").state_dict()
    sd["conv2.weight"] = torch.zeros(16, 8, 5, 5)
    torch.save(sd, path)
    with pytest.raises(DeepglassError, match=r"shape mismatches: conv2\.weight \(file \[16, 8, 5, 5\] vs model \[16, 8, 3, 3\]\)"):
        zoo.load_model(path, arch="digits_cnn")
    # a fine-tuned head with another class count is read from the checkpoint
    src = zoo.get("resnet18", num_classes=7, seed=2)
    torch.save(src.state_dict(), path)
    loaded = zoo.load_model(path, arch="resnet18")
    assert loaded.fc.out_features == 7 and torch.equal(loaded.fc.weight, src.fc.weight)
    sd = zoo.get("digits_cnn").state_dict()
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(DeepglassError, match=r"unexpected keys: extra\.weight"):
        zoo.load_model(path, arch="digits_cnn")
    with pytest.raises(DeepglassError, match="unknown architecture 'vgg'.*MODULE:CLASS"):
        zoo.load_model(path, arch="vgg")


#: a module of the user's own: a 1-D pitch-net-like CNN whose width is an argument
USER_NET = """
import torch.nn as nn

class Net(nn.Module):
    default_input_shape = (1, 32)

    def __init__(self, width=4, classes=3):
        super().__init__()
        self.conv = nn.Conv1d(1, width, 5)
        self.bn = nn.BatchNorm1d(width)
        self.fc = nn.Linear(width * 14, classes)

    def forward(self, x):
        x = nn.functional.max_pool1d(self.bn(self.conv(x).relu()), 2)
        return self.fc(x.flatten(1))

def small():
    return Net(width=2)

NOT_A_NET = 3

def broken():
    raise RuntimeError("no weights for you")
"""


def test_state_dict_into_a_class_of_the_users_code(tmp_path, monkeypatch):
    """``arch="MODULE:CLASS[(literal args)]"``: a class imported by file path or
    dotted name, built with its arguments, holding the state dict exactly."""
    (tmp_path / "usernets.py").write_text(USER_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "usernets", raising=False)
    import usernets

    torch.manual_seed(3)
    src = usernets.Net(width=3, classes=5).eval()
    src.bn.running_mean.normal_()
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    x = torch.randn(2, 1, 32)
    for arch in (f"{tmp_path}/usernets.py:Net(3, classes=5)", "usernets:Net(width=3, classes=5)"):
        loaded = zoo.load_model(path, arch=arch)
        assert not loaded.training and loaded.default_input_shape == (1, 32)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), src(x), rtol=0, atol=0)
    # a factory function; a dotted module of an installed package
    torch.save(usernets.small().state_dict(), path)
    assert zoo.load_model(path, arch="usernets:small").conv.out_channels == 2
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    assert zoo.load_model(path, arch="torch.nn:Linear(3, 2)").weight.shape == (2, 3)


META_NET = """
import torch.nn as nn


class Net(nn.Module):
    # a model whose state dict holds its construction arguments under
    # _metadata, as neuraloperator's do
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)

    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        sd["_metadata"] = {"args": [1, 2, 3]}
        return sd

    def load_state_dict(self, state, strict=True, assign=False):
        state = dict(state)
        state.pop("_metadata", None)
        return super().load_state_dict(state, strict=strict, assign=assign)

    def forward(self, x):
        return self.conv(x)
"""


def test_a_state_dict_with_metadata_loads(tmp_path, monkeypatch):
    """neuraloperator's FNO state dicts hold ``_metadata`` (a dict) beside the
    tensors: refused as 'holds a OrderedDict, not a state dict', then as a
    missing key of the architecture; the tensors now load."""
    (tmp_path / "metanet.py").write_text(META_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "metanet", raising=False)
    import metanet

    torch.manual_seed(5)
    src = metanet.Net().eval()
    path = tmp_path / "fno.pth"
    torch.save(src.state_dict(), path)
    loaded = zoo.load_model(path, arch=f"{tmp_path}/metanet.py:Net")
    torch.testing.assert_close(loaded.conv.weight, src.conv.weight, rtol=0, atol=0)


@pytest.mark.parametrize("arch,fragment", [
    ("{tmp}/usernets.py:Net", r"does not fit architecture .*shape mismatches: conv\.weight"),
    ("{tmp}/usernets.py:Net(width=__import__('os').getcwd())", "must be Python literals"),
    ("{tmp}/usernets.py:Net(*[3])", "must be Python literals"),
    ("{tmp}/missing.py:Net", "no such file"),
    ("no_such_module_xyz:Net", "cannot import 'no_such_module_xyz': ModuleNotFoundError"),
    ("{tmp}/usernets.py:Nett", "has no 'Nett'"),
    ("{tmp}/usernets.py:NOT_A_NET", "is not a class or function"),
    ("{tmp}/usernets.py:broken", "building the model failed: RuntimeError: no weights for you"),
    ("math:sqrt(4)", "built a float, not a torch.nn.Module"),
    ("{tmp}/usernets.py:Net(width=", "is not MODULE:CLASS or MODULE:CLASS\\(literal"),
    ("{tmp}/usernets.py:Net(1)(2)", "must be Python literals"),
])
def test_user_arch_errors_are_one_line(tmp_path, arch, fragment):
    (tmp_path / "usernets.py").write_text(USER_NET)
    path = tmp_path / "w.pth"
    torch.save({"conv.weight": torch.zeros(7, 1, 5), "conv.bias": torch.zeros(7)}, path)
    with pytest.raises(DeepglassError, match=fragment) as err:
        zoo.load_model(path, arch=arch.replace("{tmp}", str(tmp_path)))
    assert "\n" not in str(err.value)


def test_a_model_from_a_py_file_ships_to_workers_that_never_saw_the_file(tmp_path):
    """Ray sends units' models with cloudpickle: a class from a ``.py`` file
    (not importable elsewhere) goes by value, so a worker started in another
    directory rebuilds it."""
    import subprocess

    cloudpickle = pytest.importorskip("cloudpickle")
    (tmp_path / "usernets.py").write_text(USER_NET)
    net = _user_net(tmp_path).eval()
    blob = cloudpickle.dumps(net)
    code = ("import pickle, sys, torch; m = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(m).__name__, m.conv.out_channels)")
    res = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         cwd="/", check=True)
    assert res.stdout.decode().split() == ["Net", "3"]


def test_user_arch_on_the_command_line(cli, tmp_path):
    (tmp_path / "usernets.py").write_text(USER_NET)
    torch.manual_seed(0)
    path = tmp_path / "w.pt"
    torch.save(_user_net(tmp_path).state_dict(), path)
    code, out, err = cli(["graph", str(path), "--arch", f"{tmp_path}/usernets.py:Net(width=3)",
                          "--json"])
    assert code == 0, err
    info = json.loads(out)
    # nodes: 32 inputs, 3 x 28 convolution outputs, 3 x 14 pooled, 3 classes
    assert info["nodes"] == 32 + 84 + 42 + 3
    assert info["edges"] == 84 * 5 + 42 * 2 + 42 * 3
    code, out, err = cli(["graph", str(path), "--arch", f"{tmp_path}/usernets.py:Net(width=x)"])
    assert code == 2 and err.count("\n") == 1 and "must be Python literals" in err


def test_an_architecture_file_imports_the_modules_beside_it(cli, tmp_path, monkeypatch):
    """``path/model.py:Net`` runs with its folder first on ``sys.path`` (as
    ``python path/model.py`` would), from any working directory, and leaves
    ``sys.path`` as it was; the modules it imported from there pickle by value
    for Ray's workers, which load the model without the folder."""
    import pickle
    import subprocess
    import sys

    from deepglass.zoo import user_arch

    ray_pickle = pytest.importorskip("ray.cloudpickle")
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    helper = f"dg_sibling_{tmp_path.name.replace('-', '_')}"
    (code_dir / f"{helper}.py").write_text(
        "import torch.nn as nn\n"
        "class Block(nn.Module):\n"
        "    def __init__(self, c):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv1d(c, c, 3, padding=1)\n"
        "    def forward(self, x):\n"
        "        return x + self.conv(x).relu()\n")
    (code_dir / "model.py").write_text(
        f"import torch.nn as nn\nfrom {helper} import Block\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, c=2):\n"
        "        super().__init__()\n"
        "        self.stem = nn.Conv1d(1, c, 3)\n"
        "        self.block = Block(c)\n"
        "        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 6, 3))\n"
        "    def forward(self, x):\n"
        "        return self.head(self.block(self.stem(x)))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(user_arch, "SIBLING_MODULES", [])
    path_before = list(sys.path)
    net = user_arch.build_user_arch("code/model.py:Net(2)")
    assert sys.path == path_before
    assert [m.__name__ for m in user_arch.SIBLING_MODULES] == [helper]
    torch.save(net.state_dict(), tmp_path / "w.pt")
    code, out, err = cli(["graph", "w.pt", "--arch", "code/model.py:Net(2)", "--input-shape",
                          "1,8", "--json"])
    assert code == 0, err
    assert json.loads(out)["nodes"] == 8 + 3 * (2 * 6) + 3     # stem, block conv, sum, head
    x = torch.rand(2, 1, 8)
    for mod in user_arch.SIBLING_MODULES:
        ray_pickle.register_pickle_by_value(mod)
    try:
        blob = ray_pickle.dumps((net, x))
    finally:
        for mod in user_arch.SIBLING_MODULES:
            ray_pickle.unregister_pickle_by_value(mod)
    code = ("import pickle, sys, torch; net, x = pickle.loads(sys.stdin.buffer.read()); "
            "sys.stdout.buffer.write(pickle.dumps(net(x).detach()))")
    res = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                         cwd=str(tmp_path.parent))
    assert res.returncode == 0, res.stderr.decode()[-500:]
    with torch.no_grad():
        torch.testing.assert_close(pickle.loads(res.stdout), net(x), rtol=0, atol=0)


def test_a_class_named_without_weights_is_built_with_random_ones(cli, tmp_path):
    """``MODULE:CLASS(args)`` as the model (no weights file): built seeded, as
    ``timm:NAME`` is; the input shape must be given; with arch= it conflicts."""
    (tmp_path / "usernets.py").write_text(USER_NET)
    spec = f"{tmp_path}/usernets.py:Net(width=3)"
    a = zoo.load_model(spec, input_shape=(1, 32), seed=4)
    b = zoo.load_model(spec, input_shape=(1, 32), seed=4)
    c = zoo.load_model(spec, input_shape=(1, 32), seed=5)
    assert type(a).__name__ == "Net" and not a.training and a.default_input_shape == (1, 32)
    assert torch.equal(a.conv.weight, b.conv.weight) and not torch.equal(a.conv.weight, c.conv.weight)
    with pytest.raises(DeepglassError, match="conflicts with"):
        zoo.load_model(spec, arch="digits_cnn")
    code, out, err = cli(["graph", spec, "--input-shape", "1,32", "--json"])
    assert code == 0, err
    assert json.loads(out)["nodes"] == 32 + 84 + 42 + 3
    code, out, err = cli(["graph", "torch.nn:Linear(3, 2)"])
    assert code == 2 and err.count("\n") == 1 and "input shape is unknown" in err
    code, out, err = cli(["graph", "not_a_module_xyz:Net"])
    assert code == 2 and "cannot import 'not_a_module_xyz'" in err


def _user_net(tmp_path):
    from deepglass.zoo.user_arch import build_user_arch

    return build_user_arch(f"{tmp_path}/usernets.py:Net(width=3)")


def test_googlenet_checkpoint_with_aux_heads(tmp_path):
    src = GoogLeNet(aux_logits=True).eval()
    path = tmp_path / "g.pth"
    torch.save(src.state_dict(), path)
    loaded = zoo.load_model(path, arch="googlenet")
    assert loaded.aux1 is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    src = zoo.get("mnist_lenet", seed=2)
    path = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(path))
    loaded = zoo.load_model(path, arch="mnist_lenet")
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))
    # sniffed by content, whatever the extension
    other = tmp_path / "weights.bin"
    other.write_bytes(path.read_bytes())
    assert torch.equal(zoo.load_model(other, arch="mnist_lenet").fc3.weight, src.fc3.weight)


def test_torchscript_round_trip(tmp_path):
    import warnings

    src = zoo.get("digits_cnn", seed=1)
    path = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(src), str(path))
    loaded = zoo.load_model(path, input_shape=(1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))
    # with arch: the weights move into the (fx-traceable) zoo module
    native = zoo.load_model(path, arch="digits_cnn")
    assert type(native).__name__ == "DigitsCNN" and native.default_input_shape == (1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.fx.symbolic_trace(native)(x), src(x))


def test_an_archive_whose_onnx_form_fails_names_the_conversion_and_arch(tmp_path,
                                                                        monkeypatch):
    """PyTorch's exporter can write an invalid file (braindecode's CombinedConv:
    a Squeeze dropped before a Gemm); the message named an ONNX node of a file
    the user never wrote, without the way out (--arch)."""
    import warnings

    from deepglass.errors import DeepglassError
    from deepglass.zoo import onnx_import

    src = zoo.get("digits_cnn", seed=1)
    path = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(src, torch.rand(1, 1, 8, 8)), str(path))

    def invalid(model, input_shape=None):
        raise DeepglassError("cannot convert ONNX node '/fc/Gemm' (Gemm): mat1 and mat2 "
                             "shapes cannot be multiplied (1600x1 and 40x1)")

    monkeypatch.setattr(onnx_import, "onnx_to_module", invalid)
    with pytest.raises(DeepglassError, match=r"the TorchScript file .*m\.pt, converted through "
                                             r"ONNX in memory: cannot convert ONNX node "
                                             r"'/fc/Gemm'.*give the Python class with --arch"):
        zoo.load_model(path, input_shape=(1, 8, 8))


class _ResidualNet(nn.Module):
    """Convolution, batch norm, a residual addition, max pooling and a dense head."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(h + self.bn2(self.conv2(h)))
        return self.fc(F.max_pool2d(h, 2).flatten(1))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_a_torchscript_archive_is_read_through_onnx(tmp_path, how):
    """A scripted or traced archive (no Python class needed): converted through
    ONNX, it gives the module's outputs at any batch size and the signed graph
    of the Python module it was saved from (batch norm folded, sign included);
    without an input shape it is refused in one line."""
    import warnings

    from deepglass.graph import SignedGraph

    torch.manual_seed(4)
    src = _ResidualNet().eval()
    with torch.no_grad():
        for bn in (src.bn1, src.bn2):       # running statistics and gains of both signs
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
    path = tmp_path / "net.pt"
    x = torch.randn(3, 2, 6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        archive = torch.jit.script(src) if how == "script" else torch.jit.trace(src, x[:1])
        torch.jit.save(archive, str(path))
    loaded = zoo.load_model(path, input_shape=(2, 6, 6))
    assert not isinstance(loaded, torch.jit.ScriptModule) and loaded.default_input_shape == (2, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x), rtol=1e-5, atol=1e-5)
    g = SignedGraph.from_module(loaded, (2, 6, 6), dtype=torch.float64)
    ref = SignedGraph.from_module(src, (2, 6, 6), dtype=torch.float64)
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray(), rtol=1e-5, atol=1e-6)
    with pytest.raises(DeepglassError, match=r"TorchScript archive, which does not store its input "
                                             r"size: give input_shape= \(--input-shape\)"):
        zoo.load_model(path)
    script = torch.jit.load(str(path))
    with pytest.raises(DeepglassError, match=r"convert one with deepglass.zoo.torchscript_to_module"):
        SignedGraph.from_module(script, (2, 6, 6))
    direct = SignedGraph.from_module(zoo.torchscript_to_module(script, (2, 6, 6)), (2, 6, 6))
    assert (direct.n_nodes, direct.n_edges) == (ref.n_nodes, ref.n_edges)
    # the archive's batch norms are kept, so batchnorm="ignore" reads the convolutions' own weights
    raw = SignedGraph.from_module(loaded, (2, 6, 6), dtype=torch.float64, batchnorm="ignore")
    ref_raw = SignedGraph.from_module(src, (2, 6, 6), dtype=torch.float64, batchnorm="ignore")
    np.testing.assert_allclose(raw.to_scipy().toarray(), ref_raw.to_scipy().toarray(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(raw.to_scipy().toarray(), ref.to_scipy().toarray(), atol=1e-3)


class _UnflattenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.u, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Unflatten(1, (4, 4, 4)), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.c2(self.u(self.c1(x).flatten(1)))


class _NormNet(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.c1, self.norm, self.c2 = nn.Conv2d(3, 4, 3, padding=1), norm, nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.c2(torch.relu(self.norm(self.c1(x))))


def _archive_matches_module(tmp_path, src, how, shape):
    """Save ``src`` scripted or traced, read it back: the module's outputs and signed graph."""
    import warnings

    from deepglass.graph import SignedGraph

    path = tmp_path / f"{how}.pt"
    x = torch.randn(3, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        archive = torch.jit.script(src) if how == "script" else torch.jit.trace(src, x[:1])
        torch.jit.save(archive, str(path))
    loaded = zoo.load_model(path, input_shape=shape)
    assert not getattr(loaded, "batch_one_only", False)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x), rtol=1e-5, atol=1e-5)
    g = SignedGraph.from_module(loaded, shape, dtype=torch.float64)
    ref = SignedGraph.from_module(src, shape, dtype=torch.float64)
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_a_torchscript_archive_with_unflatten(tmp_path, how):
    """nn.Unflatten's target shape is static shape arithmetic with Mod in the archive's
    ONNX form (it was refused as 'unsupported op Mod'): folded, the module's graph."""
    torch.manual_seed(0)
    _archive_matches_module(tmp_path, _UnflattenNet().eval(), how, (3, 4, 4))


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("norm", ["group", "instance", "instance_plain"])
def test_a_torchscript_archive_with_group_or_instance_norm(tmp_path, how, norm):
    """F.group_norm / F.instance_norm check their static sizes in a loop, which a scripted
    archive's ONNX form keeps as a Loop feeding only a dropped raise (it was refused as
    'data-dependent control flow'): dropped, the archive has the module's graph (gain
    folded into the incoming edges, sign included)."""
    torch.manual_seed(1)
    layer = {"group": nn.GroupNorm(2, 4), "instance": nn.InstanceNorm2d(4, affine=True),
             "instance_plain": nn.InstanceNorm2d(4)}[norm]
    if norm != "instance_plain":
        with torch.no_grad():
            layer.weight.normal_()
            layer.bias.normal_()
    _archive_matches_module(tmp_path, _NormNet(layer).eval(), how, (3, 6, 6))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_a_torchscript_archive_with_local_response_norm(tmp_path, how):
    """F.local_response_norm squeezes its pooled square where the input has rank 3: the
    archive's ONNX form branches on that rank with an If whose branches read the
    activation (it was refused as 'data-dependent control flow', the zoo's
    alexnet_caffe and googlenet_bvlc archives with it): the branch the shape takes is
    converted, and the archive has the module's graph (SPEC §1: no nodes, no edges)."""
    torch.manual_seed(2)
    _archive_matches_module(tmp_path, _NormNet(nn.LocalResponseNorm(3)).eval(), how, (3, 6, 6))


def test_a_branch_on_values_stays_refused_through_onnx():
    """An If whose condition is computed from the input's values (not its shape) is
    still refused as data-dependent control flow."""
    import io
    import warnings

    import onnx

    from deepglass.zoo.onnx_import import onnx_to_module

    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.c(x)
            return y if bool(y.sum() > 0) else -y

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.jit.script(Branch()), (torch.randn(1, 2, 4, 4),), buf,
                          dynamo=False, opset_version=17)
    model = onnx.load_from_string(buf.getvalue())
    assert any(n.op_type == "If" for n in model.graph.node)
    with pytest.raises(DeepglassError, match="data-dependent control flow"):
        onnx_to_module(model)


def test_pickle_needs_trust(tmp_path):
    src = zoo.get("digits_cnn", seed=1)
    path = tmp_path / "whole.pt"
    torch.save(src, path)
    with pytest.raises(DeepglassError, match="--trust-pickle") as exc:
        zoo.load_model(path)
    assert "\n" not in str(exc.value)
    loaded = zoo.load_model(path, trust_pickle=True)
    assert isinstance(loaded, nn.Module) and loaded.default_input_shape == (1, 8, 8)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src(x))


def test_missing_file_and_modules(tmp_path):
    with pytest.raises(DeepglassError) as exc:
        zoo.load_model(tmp_path / "nope.pth")
    assert "no such file" in str(exc.value) and "\n" not in str(exc.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(DeepglassError, match="cannot read"):
        zoo.load_model(junk, arch="digits_cnn")
    m = nn.Sequential(nn.Linear(3, 2))
    assert zoo.load_model(m, input_shape=[3]) is m and m.default_input_shape == (3,)
    with pytest.raises(DeepglassError, match="input_shape"):
        zoo.load_model(m, input_shape=(3, -1))


def test_non_finite_weights_rejected(tmp_path):
    src = zoo.get("digits_cnn")
    with torch.no_grad():
        src.conv2.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(DeepglassError, match=r"'conv2\.weight' has 1 NaN/inf"):
        zoo.load_model(src)
    path = tmp_path / "w.pth"
    sd = zoo.get("digits_cnn").state_dict()
    sd["fc.bias"][3] = float("inf")
    torch.save(sd, path)
    with pytest.raises(DeepglassError, match=r"fc\.bias"):
        zoo.load_model(path, arch="digits_cnn")


# --------------------------------------------------------------------------- ONNX


class _SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.c3 = nn.Conv2d(8, 4, 1)
        self.avg = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(12 * 2 * 2, 10)
        self.fc2 = nn.Linear(10, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.c1(x))))
        y = torch.sigmoid(self.c2(x)) + x
        z = torch.cat([torch.tanh(self.c3(y)), F.leaky_relu(y, 0.1)], 1)
        z = self.avg(z)
        z = z.view(z.size(0), -1)
        z = F.relu6(self.fc1(z))
        return torch.softmax(self.fc2(z), 1)


def _export(model, x, path, **kw):
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False, **kw)
    except (ImportError, ModuleNotFoundError) as exc:  # exporter dependencies absent
        pytest.skip(f"torch.onnx.export unavailable: {exc}")


@pytest.mark.parametrize("fold", [True, False])
def test_onnx_export_round_trip(tmp_path, fold):
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = _SmallNet().eval()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.normal_()
    path = tmp_path / "small.onnx"
    x = torch.randn(5, 3, 9, 9)
    mode = torch.onnx.TrainingMode.EVAL if fold else torch.onnx.TrainingMode.PRESERVE
    _export(model, x[:1], path, do_constant_folding=fold, training=mode)
    loaded = zoo.load_model(path)
    assert loaded.default_input_shape == (3, 9, 9)
    traced = torch.fx.symbolic_trace(loaded)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-6)  # batch 5 from a batch-1 export
        torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-6)
    kinds = {type(m) for m in loaded.modules()}
    assert {nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear, nn.ReLU6, nn.Softmax} <= kinds


def test_onnx_export_of_shufflenet_v2_block(tmp_path):
    pytest.importorskip("onnx")
    from deepglass.zoo.shufflenet import InvertedResidual

    torch.manual_seed(0)
    model = nn.Sequential(InvertedResidual(8, 16, 2), InvertedResidual(16, 16, 1)).eval()
    path = tmp_path / "shuffle.onnx"
    x = torch.randn(3, 8, 10, 10)
    _export(model, x[:1], path)
    loaded = zoo.load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-6)
    torch.fx.symbolic_trace(loaded)


def test_onnx_import_gives_the_same_signed_graph(tmp_path):
    pytest.importorskip("onnx")
    from deepglass.graph import SignedGraph
    from deepglass.zoo.shufflenet import ShuffleUnit

    torch.manual_seed(0)
    block = nn.Sequential(ShuffleUnit(6, 24, 3, stride=2), ShuffleUnit(24, 24, 3, stride=1)).eval()
    block.default_input_shape = (6, 8, 8)
    for model in (zoo.get("digits_cnn", seed=0), block):
        shape = model.default_input_shape
        path = tmp_path / "m.onnx"
        _export(model, torch.zeros(1, *shape), path)
        native = SignedGraph.from_module(model, shape)
        imported = SignedGraph.from_module(zoo.load_model(path), shape)
        assert (imported.n_nodes, imported.n_edges) == (native.n_nodes, native.n_edges)


def _helper_model(batch_dim="N", extra_node=None):
    """An ONNX graph written with onnx.helper: Conv-BN-Relu-LRN-MaxPool | AveragePool, Concat,
    Reshape, MatMul+Add, Clip, Gemm(transB, alpha, beta), Dropout, Softmax."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {
        "W1": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "b1": rng.normal(size=4).astype(np.float32),
        "g": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "beta": rng.normal(size=4).astype(np.float32),
        "mu": rng.normal(size=4).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
        "shape": np.array([0, -1], dtype=np.int64),
        "W2": rng.normal(size=(32, 6)).astype(np.float32),
        "b2": rng.normal(size=6).astype(np.float32),
        "W3": rng.normal(size=(5, 6)).astype(np.float32),
        "b3": rng.normal(size=(1, 5)).astype(np.float32),
        "lo": np.array(0.0, dtype=np.float32),
        "hi": np.array(6.0, dtype=np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["X", "W1", "b1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "beta", "mu", "var"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("LRN", ["r"], ["l"], name="lrn", size=3, alpha=1e-2, beta=0.75, bias=2.0),
        helper.make_node("MaxPool", ["l"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["l"], ["ap"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["mp", "ap"], ["cat"], name="concat", axis=1),
        helper.make_node("Reshape", ["cat", "shape"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "W2"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "b2"], ["lin"], name="bias"),
        helper.make_node("Clip", ["lin", "lo", "hi"], ["clip"], name="clip"),
        helper.make_node("Gemm", ["clip", "W3", "b3"], ["gemm"], name="gemm", transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Dropout", ["gemm"], ["drop"], name="dropout"),
        helper.make_node("Softmax", ["drop"], ["Y"], name="softmax", axis=1),
    ]
    if extra_node is not None:
        nodes.append(extra_node)
    graph = helper.make_graph(
        nodes,
        "helper_net",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch_dim, 3, 4, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch_dim, 5])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model, {k: torch.from_numpy(v) for k, v in w.items()}


def test_onnx_helper_graph_matches_reference(tmp_path):
    onnx = pytest.importorskip("onnx")
    model, w = _helper_model()
    onnx.checker.check_model(model)
    path = tmp_path / "helper.onnx"
    onnx.save(model, str(path))
    loaded = zoo.load_model(path)
    assert loaded.default_input_shape == (3, 4, 4)
    x = torch.randn(3, 3, 4, 4)
    # reference written with torch.nn.functional from the ONNX operator definitions
    c = F.conv2d(x, w["W1"], w["b1"], padding=1)
    bn = (c - w["mu"][:, None, None]) / torch.sqrt(w["var"][:, None, None] + 1e-3) * w["g"][:, None, None] + w["beta"][:, None, None]
    r = bn.clamp_min(0)
    sq = F.pad(r.pow(2), (0, 0, 0, 0, 1, 1))  # channel window of size 3
    l = r / (2.0 + 1e-2 / 3 * (sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:])) ** 0.75
    cat = torch.cat([F.max_pool2d(l, 2), F.avg_pool2d(l, 2)], 1).reshape(3, -1)
    lin = (cat @ w["W2"] + w["b2"]).clamp(0, 6)
    ref = torch.softmax(0.5 * lin @ w["W3"].T + 2.0 * w["b3"], 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.fx.symbolic_trace(loaded)(x), ref, rtol=1e-5, atol=1e-6)
    kinds = [type(m) for m in loaded.modules()]
    assert nn.LocalResponseNorm in kinds and nn.BatchNorm2d in kinds and nn.ReLU6 in kinds
    # MatMul + Add became one Linear with bias; Gemm another
    assert sum(1 for m in loaded.modules() if isinstance(m, nn.Linear) and m.bias is not None) == 2


def test_onnx_errors(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    model, _ = _helper_model(extra_node=helper.make_node("Erf", ["Y"], ["Z"], name="mystery"))
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DeepglassError, match=r"node 'mystery' has unsupported op 'Erf'; supported: Add, .*Conv"):
        zoo.load_model(path)
    # symbolic non-batch dimensions need input_shape
    model, _ = _helper_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    onnx.save(model, str(path))
    with pytest.raises(DeepglassError, match="input_shape"):
        zoo.load_model(path)
    assert zoo.load_model(path, input_shape=(3, 4, 4)).default_input_shape == (3, 4, 4)
    with pytest.raises(DeepglassError, match="ONNX model .* applies to state dicts"):
        zoo.load_model(path, arch="resnet18", input_shape=(3, 4, 4))   # not silently ignored
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(DeepglassError, match="cannot read ONNX"):
        zoo.load_model(corrupt)


def test_checkpoints_as_training_code_leaves_them(tmp_path):
    """State dicts of a pruned net (before prune.remove), of weight norm (the
    parametrization and the old hook), of an EMA AveragedModel, under a
    framework's prefix ("model."), a DataParallel safetensors file and a module
    stored under "model": all refused before, listing keys; now the graph of the
    effective weights (the plain network's, to float rounding)."""
    import warnings

    import torch.nn.utils.prune as prune
    from safetensors.torch import save_file
    from torch.nn.utils.parametrizations import weight_norm

    from deepglass.graph import SignedGraph
    from deepglass.zoo import load_model

    (tmp_path / "ckpt_arch.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 4, 3)\n"
        "        self.bn = nn.BatchNorm2d(4)\n"
        "        self.fc = nn.Linear(4 * 6 * 6, 3)\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.bn(self.conv(x)).relu().flatten(1))\n")
    sys.path.insert(0, str(tmp_path))
    try:
        from ckpt_arch import Net
    finally:
        sys.path.remove(str(tmp_path))
    arch = f"{tmp_path / 'ckpt_arch.py'}:Net"
    torch.manual_seed(0)
    ref = Net().eval()

    def matrix(m):
        return SignedGraph.from_module(m.eval(), (1, 8, 8), dtype=torch.float64).to_scipy()

    def copy_of(net):
        m = Net()
        m.load_state_dict(net.state_dict())
        return m

    pruned = copy_of(ref)
    prune.l1_unstructured(pruned.conv, "weight", 0.5)
    prune.l1_unstructured(pruned.fc, "weight", 0.3)
    plain = copy_of(ref)
    with torch.no_grad():
        plain.conv.weight.copy_(pruned.conv.weight)
        plain.fc.weight.copy_(pruned.fc.weight)
    torch.save(pruned.state_dict(), tmp_path / "pruned.pt")
    normed = copy_of(ref)
    weight_norm(normed.conv)
    weight_norm(normed.fc, dim=1)
    torch.save(normed.state_dict(), tmp_path / "wn.pt")
    old = copy_of(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.nn.utils.weight_norm(old.conv)
    torch.save(old.state_dict(), tmp_path / "wn_old.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()},
                "epoch": 3}, tmp_path / "lightning.ckpt")
    torch.save(torch.optim.swa_utils.AveragedModel(ref).state_dict(), tmp_path / "ema.pt")
    save_file({f"module.{k}": v.contiguous() for k, v in ref.state_dict().items()},
              str(tmp_path / "dp.safetensors"))
    torch.save({"epoch": 3, "model": ref}, tmp_path / "whole.pt")
    want = matrix(ref)
    for name, expected in (("pruned.pt", matrix(plain)), ("wn.pt", want), ("wn_old.pt", want),
                           ("lightning.ckpt", want), ("ema.pt", want), ("dp.safetensors", want)):
        got = matrix(load_model(tmp_path / name, arch=arch, input_shape=(1, 8, 8)))
        assert got.shape == expected.shape and abs(got - expected).max() < 1e-6, name
    assert (matrix(plain) != 0).sum() < (want != 0).sum()            # the pruning is kept
    whole = load_model(tmp_path / "whole.pt", trust_pickle=True, input_shape=(1, 8, 8))
    assert abs(matrix(whole) - want).max() == 0
    # a prefix is taken off only where the rest fits: other keys are still refused
    torch.save({f"model.{k}": v for k, v in list(ref.state_dict().items())[:-1]},
               tmp_path / "short.pt")
    with pytest.raises(DeepglassError, match="missing keys"):
        load_model(tmp_path / "short.pt", arch=arch, input_shape=(1, 8, 8))


def test_bad_seed_and_model_arguments_are_one_line_errors():
    # a torch overflow and an AttributeError before
    with pytest.raises(DeepglassError, match=r"seed must be an integer in \[0, 2\^63\)"):
        zoo.get("digits_cnn", seed=2 ** 70)
    with pytest.raises(DeepglassError, match="expected a torch.nn.Module, got str"):
        zoo.check_finite("x")
    # a non-empty string was a true pretrained; a plain module was exported as an archive
    for bad in ("yes", "no", 1):
        with pytest.raises(DeepglassError, match=f"^pretrained must be of type bool, got "
                                                 f"{type(bad).__name__}$"):
            zoo.get("digits_cnn", pretrained=bad)
    with pytest.raises(DeepglassError, match="^script must be of type ScriptModule, got Linear$"):
        zoo.torchscript_to_module(nn.Linear(2, 2), (2,))


def test_weight_norm_of_every_dim_is_made_plain_and_other_pairs_are_not():
    """dim=None / dim=-1 weight norm (a scalar or last-axis g) was left as two
    unexpected keys; a low-rank parametrization W = A @ B (two (4, 4) originals)
    was taken for weight norm and loaded as A * B / |B| without a word."""
    import warnings

    from torch.nn.utils.parametrizations import weight_norm

    from deepglass.zoo.loading import _plain_weights

    torch.manual_seed(0)
    own = {"weight": torch.zeros(3, 2, 4), "bias": torch.zeros(3)}
    for dim in (None, -1, 0, 1, 2):
        conv = nn.Conv1d(2, 3, 4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weight_norm(conv, dim=dim)
        # the keys of any two-tensor parametrization: the reading is said
        with pytest.warns(UserWarning, match=r"original0 / original1\) of weight; read as "
                                             r"weight norm, g v / \|\|v\|\|"):
            plain = _plain_weights(conv.state_dict(), own)
        assert sorted(plain) == ["bias", "weight"], dim
        assert torch.allclose(plain["weight"], conv.weight, atol=1e-6), dim
    pair = {"parametrizations.weight.original0": torch.randn(4, 4),
            "parametrizations.weight.original1": torch.randn(4, 4)}
    assert sorted(_plain_weights(pair, {"weight": torch.zeros(4, 4)})) == sorted(pair)
    old = nn.Conv1d(2, 3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.nn.utils.weight_norm(old)
    with warnings.catch_warnings():           # weight_g / weight_v: weight norm's own keys
        warnings.simplefilter("error")
        assert torch.allclose(_plain_weights(old.state_dict(), own)["weight"], old.weight)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_a_torchscript_archive_or_onnx_file_of_another_precision(tmp_path, dtype):
    """A float64 or float16 archive refused the float32 sample ("expected scalar
    type Float but found Double", blamed on the shape); a float64 ONNX file
    failed at its first Conv (float64 input, float32 bias).  Both are read in
    float32: the graph of the same weights."""
    import warnings

    from deepglass.graph import SignedGraph

    torch.manual_seed(0)
    src = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(72, 3)).eval()
    with torch.no_grad():
        src[1].running_var.uniform_(0.5, 2.0)
    wide = SignedGraph.from_module(src.to(dtype).float(), (1, 8, 8), dtype=torch.float64)
    x = torch.zeros(1, 1, 8, 8, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(src.to(dtype), x), str(tmp_path / "ts.pt"))
        if dtype == torch.float64:
            torch.onnx.export(src.to(dtype), (x,), str(tmp_path / "m.onnx"), dynamo=False)
    files = ["ts.pt"] + (["m.onnx"] if dtype == torch.float64 else [])
    for name in files:
        m = zoo.load_model(tmp_path / name, input_shape=(1, 8, 8))
        g = SignedGraph.from_module(m, (1, 8, 8), dtype=torch.float64)
        np.testing.assert_allclose(g.to_scipy().toarray(), wide.to_scipy().toarray(),
                                   rtol=1e-6, atol=1e-7)


def test_a_torch_export_archive_loads_with_trust_and_its_module_captures(tmp_path, cli):
    """A ``torch.export.save`` archive was read as a corrupted checkpoint, and
    ``ExportedProgram.module()`` crashed the capture (``train()`` is not
    supported on it).  The archive unpickles its weights: --trust-pickle."""
    from deepglass.graph import SignedGraph

    torch.manual_seed(0)
    src = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(72, 3)).eval()
    ep = torch.export.export(src, (torch.zeros(1, 1, 8, 8),))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    ref = SignedGraph.from_module(src, (1, 8, 8), dtype=torch.float64)
    g = SignedGraph.from_module(ep.module(), (1, 8, 8), dtype=torch.float64)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray())
    with pytest.raises(DeepglassError, match="torch.export archive, whose reading unpickles"):
        zoo.load_model(tmp_path / "m.pt2")
    m = zoo.load_model(tmp_path / "m.pt2", trust_pickle=True)
    assert m.default_input_shape == (1, 8, 8)
    g = SignedGraph.from_module(m, m.default_input_shape, dtype=torch.float64)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray())
    code, out, err = cli(["graph", str(tmp_path / "m.pt2"), "--trust-pickle", "--json"])
    assert code == 0 and json.loads(out)["nodes"] == ref.n_nodes, err
    torch.export.save(torch.export.export(src, (torch.zeros(2, 1, 8, 8),)),
                      str(tmp_path / "b2.pt2"))
    with pytest.raises(DeepglassError, match=r"exported for inputs of shape 2,1,8,8: .* batch of 1"):
        zoo.load_model(tmp_path / "b2.pt2", trust_pickle=True)

    class Scaled(nn.Module):                  # a Python int beside the tensor (it crashed)
        def forward(self, x, k: int):
            return src(x) * k

    for args, kwargs in [((torch.zeros(1, 1, 8, 8), 3), {}), ((torch.zeros(1, 1, 8, 8),),
                                                              {"k": 3})]:
        torch.export.save(torch.export.export(Scaled(), args, kwargs), str(tmp_path / "k.pt2"))
        with pytest.raises(DeepglassError, match="exported with keyword or non-tensor inputs"):
            zoo.load_model(tmp_path / "k.pt2", trust_pickle=True)


def test_a_quantized_state_dict_of_tensors_only_is_named_so(tmp_path):
    """A static int8 model of convolutions only holds quantized tensors (no
    packed params): it was "does not fit ...: unexpected keys c.scale"."""
    import warnings

    net = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Conv2d(1, 2, 3),
                        torch.ao.quantization.DeQuantStub()).eval()
    net.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = torch.ao.quantization.prepare(net)
        prepared(torch.randn(4, 1, 8, 8))
        torch.save(torch.ao.quantization.convert(prepared).state_dict(), tmp_path / "q.pt")
    with pytest.raises(DeepglassError, match="state dict of a quantized model"):
        zoo.load_model(tmp_path / "q.pt", arch="digits_cnn")

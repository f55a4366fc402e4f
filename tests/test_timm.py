"""timm's CNN families through the capture path (SPEC §1b), against the real library.

timm imports torchvision at import time; the torchvision wheel on CPU-only
machines may not import, so ``timm_shim`` installs placeholder modules first
(test-only: the package itself never imports torchvision or timm).  Models are
randomly initialized and captured at a small input size to keep the suite fast;
``bench/bench_frontend.py`` measures them at their default sizes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import timm_shim

timm_shim.install()
timm = pytest.importorskip("timm")

from deepglass.graph import SignedGraph  # noqa: E402

FAMILIES = ["vgg11", "resnet18", "resnext26ts", "densenet121", "inception_v3",
            "mobilenetv2_050", "mobilenetv3_small_050", "efficientnet_b0", "regnetx_002",
            "mnasnet_small", "ghostnet_050", "convnext_atto", "dla34"]


def _model(name):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_timm_family_builds_and_solves_to_local_minima(name):
    import deepglass

    m = _model(name)
    shape = (3, 75, 75) if name == "inception_v3" else (3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SignedGraph.from_module(m, shape)
    assert g.meta["rules"]["capture"].startswith("torch.export")
    assert len(g.output_index) == m.num_classes
    # the graph is the network's Jacobian pattern on the identity gauge: every
    # node but the input's has an incoming edge
    assert g.n_edges > g.n_nodes - g.input_block.size
    res = deepglass.frustration(g, method="descent", replicas=2, seed=0)
    sigma = torch.as_tensor(res.sigma, dtype=g.dtype)
    h = g.local_fields(sigma)
    assert bool((h >= -1e-4 * g.abs_row_sums().max()).all())   # single-flip local minima
    assert 0.0 < res.frustration < 0.5


def test_squeeze_excitation_gates_are_rescalings_with_their_branch_listed():
    m = _model("efficientnet_b0")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g = SignedGraph.from_module(m, (3, 64, 64))
    assert len(g.meta["gates"]) == 16                 # one SE gate per MBConv block
    se = [r for r in g.meta["left_out"] if r["params"]]
    n_se = sum(p.numel() for k, p in m.named_parameters() if ".se." in k and "weight" in k)
    assert sum(r["params"] for r in se) == n_se
    assert any("SiLU" in str(x.message) for x in w)   # non-monotone, named once


def test_timm_resnet_equals_fx_capture():
    m = _model("resnet18")
    a = SignedGraph.from_module(m, (3, 32, 32))
    b = SignedGraph.from_module(m, (3, 32, 32), capture="fx")
    assert (a.n_nodes, a.n_edges) == (b.n_nodes, b.n_edges)
    x = torch.randn(1, a.n_nodes, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(a.sym_matvec(x).numpy(), b.sym_matvec(x).numpy(), rtol=1e-4,
                               atol=1e-4)


def test_timm_model_spec_and_weights_file(tmp_path):
    from deepglass.errors import DeepglassError
    from deepglass.zoo import load_model

    m = load_model("timm:regnetx_002")
    assert m.default_input_shape == (3, 224, 224)
    with pytest.raises(DeepglassError, match="timm has no model 'no_such_net'"):
        load_model("timm:no_such_net")
    path = tmp_path / "w.pth"
    torch.save(m.state_dict(), path)
    again = load_model(path, arch="timm:regnetx_002")
    for (k, a), b in zip(m.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(DeepglassError, match="MODULE:CLASS.*--trust-pickle"):
        load_model(path)


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "efficientnet_b0", "convnext_atto",
                                  "ghostnet_050"])
def test_onnx_export_gives_the_same_graph(name, tmp_path):
    """The ONNX importer lowers into the same capture path: same counts, same operator."""
    pytest.importorskip("onnx")
    from deepglass.zoo.onnx_import import load_onnx

    m = _model(name)
    shape = (3, 64, 64)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, torch.zeros((1,) + shape), str(path), dynamo=False,
                          opset_version=17)
        a = SignedGraph.from_module(m, shape)
        b = SignedGraph.from_module(load_onnx(path), shape)
    assert (b.n_nodes, b.n_edges) == (a.n_nodes, a.n_edges)
    assert b.abs_total() == pytest.approx(a.abs_total(), rel=1e-5)


def test_active_subnetworks_of_a_gated_family():
    """MobileNetV3 (hard-swish, squeeze-excitation gates) through torch.export: the
    recorded pattern predicts what the model predicts, and the masks' reachability
    and edge counts agree with the explicit construction on the whole graph's CSR."""
    from deepglass.experiments.active import active_subgraph, explicit_active_nodes

    m = _model("mobilenetv3_small_050")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SignedGraph.from_module(m, (3, 32, 32))
    assert g.meta["gates"]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    subs = active_subgraph(g, m, x)
    with torch.no_grad():
        np.testing.assert_array_equal(subs.pred, m(x).argmax(1).numpy())
    assert (subs.active.sum(1) < g.n_nodes - len(g.output_index) + 1).all()  # hard-swish zeros
    for k in range(2):
        reach, A = explicit_active_nodes(g, subs.active[k], int(g.output_index[subs.pred[k]]),
                                         {b: v[k] for b, v in subs.pool_max.items()},
                                         subs.windows)
        np.testing.assert_array_equal(reach, subs.keep[k])
        assert A.nnz == subs.edges[k].sum() == subs.subgraph(k).n_edges


#: families whose layers need the rules added after a sweep of timm's model list
#: (bench/bench_timm_sweep.py): input size, and whether a gate is left out
LATER_RULES = {"resnest14d": (32, True),        # split attention: sum over radix branches
               "skresnet18": (32, True),        # selective kernels
               "ecaresnet26t": (32, True),      # ECA gate viewed and expanded
               "ghostnetv2_100": (64, True),    # a gate upsampled to its input
               "convnextv2_atto": (32, False),  # global response norm (a norm statistic)
               "resnetv2_50d_frn": (32, False), # filter response norm, TLU max(x, tau)
               "convformer_s18": (32, False),   # StarReLU: s * relu(x) ** 2 + b
               "poolformerv2_s12": (32, False),
               "densenetblur121d": (32, False), # blur pool: reflect padding
               "mixer_s32_224": (224, False),   # mean over tokens, channels-last
               "resmlp_12_224": (224, False)}   # addcmul affine


@pytest.mark.parametrize("name", sorted(LATER_RULES))
def test_timm_families_of_the_later_rules_give_a_graph(name):
    size, gated = LATER_RULES[name]
    m = _model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SignedGraph.from_module(m, (3, size, size))
    assert len(g.output_index) == m.num_classes
    assert g.n_edges > g.n_nodes - g.input_block.size
    assert bool(g.meta.get("gates")) == gated


def test_cbam_gates_with_max_pooled_branches_are_rescalings():
    """timm's CBAM: channel and spatial attention gates whose branches pool by
    max (``amax`` over space, a max over channels) as well as by mean. Both are
    positive rescalings and their branches are left out, so the graph is that
    of the same net without the module."""
    from timm.layers import get_attn

    class Net(torch.nn.Module):
        def __init__(self, attn):
            super().__init__()
            self.conv, self.attn, self.fc = torch.nn.Conv2d(3, 16, 3), attn, torch.nn.Linear(16, 4)

        def forward(self, x):
            return self.fc(self.attn(torch.relu(self.conv(x))).mean((2, 3)))

    torch.manual_seed(0)
    gated = Net(get_attn("cbam")(16)).eval()
    plain = Net(torch.nn.Identity()).eval()
    plain.load_state_dict(gated.state_dict(), strict=False)
    g, ref = SignedGraph.from_module(gated, (3, 12, 12)), SignedGraph.from_module(plain, (3, 12, 12))
    assert g.meta["gates"] == ["attn.channel:mul", "attn.spatial:mul_1"]
    assert (g.n_nodes, g.n_edges) == (ref.n_nodes, ref.n_edges)
    np.testing.assert_allclose(g.to_scipy().toarray(), ref.to_scipy().toarray())
    # each weight once, though the channel MLP runs on two pooled values
    assert sum(r["params"] for r in g.meta["left_out"]) == sum(
        p.numel() for p in gated.attn.parameters() if p.dim() > 1) == 16 + 16 + 2 * 7 * 7

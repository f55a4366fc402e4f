"""Active subnetworks (SPEC §4): the mask-based construction against an explicit
reference built here from the CSR of the whole graph, forward hooks and graph
search; monotone networks; batching; exact frustration against enumeration;
runs and the command line."""

from __future__ import annotations

import copy
import itertools
import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import breadth_first_order

import deepglass
from deepglass.errors import DeepglassError
from deepglass.experiments.active import (active_frustration, active_subgraph,
                                          explicit_active_nodes)
from deepglass.experiments.active_run import active_table, run_active
from deepglass.graph import PoolBlock, SignedGraph


# --------------------------------------------------------------------------------------
# tiny networks; FLOWS names, per node block after the input, the module whose output
# is the value that block passes on (after its ReLU, if one follows)
def conv_relu_pool():
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 5))
    return net, (1, 8, 8), ["1", "2", "4", "6"]


def pool_first_with_ties():
    # the first max pool reads the integer-valued input directly: many tied maxima;
    # the second pool comes before its ReLU and reads raw convolution outputs
    net = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 4, 2), nn.MaxPool2d(2, stride=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    return net, (1, 8, 8), ["0", "1", "3", "5"]


def relu_batchnorm_avgpool():
    # batch norm after the ReLU: a zero stays an inactive node although the next
    # convolution reads bn(0) != 0; adaptive average pool
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(3),
                        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(16, 5))
    bn = net[2]
    g = torch.Generator().manual_seed(5)
    bn.running_mean.copy_(torch.randn(3, generator=g))
    bn.running_var.copy_(torch.rand(3, generator=g) + 0.5)
    bn.weight.data.copy_(torch.randn(3, generator=g))
    bn.bias.data.copy_(torch.randn(3, generator=g))
    return net, (1, 6, 6), ["1", "4", "5", "7"]


def relu_batchnorm_maxpool():
    # CREPE's layer: batch norm after the ReLU, then a max pool, which selects the
    # maxima of the normalized values: where a gain is negative, the smallest ReLU
    # outputs (the node passes on the ReLU's output, the pool reads bn of it)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(3),
                        nn.MaxPool2d(2), nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(36, 5))
    bn = net[2]
    bn.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1]))
    bn.running_var.copy_(torch.tensor([0.8, 1.5, 0.6]))
    bn.weight.data.copy_(torch.tensor([-1.5, 0.8, -0.6]))
    bn.bias.data.copy_(torch.tensor([0.2, -0.1, 0.4]))
    return net, (1, 8, 8), [("1", "2"), "3", "5", "7"]


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()
        self.conv3, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.relu3 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        a = self.relu1(self.conv1(x))
        y = self.relu3(self.bn(self.conv3(self.relu2(self.conv2(a)))) + a)
        return self.fc(torch.flatten(self.pool(y), 1))


def residual():
    return Residual(), (1, 4, 4), ["relu1", "relu2", "relu3", "pool", "fc"]


class PermutedFlatten(nn.Module):
    """A channels-last flatten before the dense layers (``permute(...).contiguous().view``,
    as in MTCNN's R-Net and O-Net): the recorded value ids go through the copy too."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu, self.pool = nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2)
        self.fc1, self.relu2, self.fc2 = nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x):
        x = self.pool(self.relu(self.conv(x))).permute(0, 3, 2, 1).contiguous()
        return self.fc2(self.relu2(self.fc1(x.view(x.shape[0], -1))))


def permuted_flatten():
    return PermutedFlatten(), (1, 6, 6), ["relu", "pool", "relu2", "fc2"]


class ShiftStack(nn.Module):
    """Channel copies shifted by a row each way (zero padding inside the concatenation)."""

    def __init__(self):
        super().__init__()
        # a 1x1 convolution: no node reaches one output along two copies (no parallel edges)
        self.c1, self.relu, self.c2 = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 1)
        self.relu2, self.fc = nn.ReLU(), nn.Linear(3 * 5 * 5, 4)

    def forward(self, x):
        u = self.relu(self.c1(x))
        up, down = nn.functional.pad(u, (0, 0, 0, 1))[:, :, 1:], nn.functional.pad(u, (0, 0, 1, 0))[:, :, :-1]
        return self.fc(self.relu2(self.c2(torch.cat([u, up, down], 1))).flatten(1))


def shift_stack():
    return ShiftStack(), (1, 5, 5), ["relu", "relu2", "fc"]


NETS = {"conv_relu_pool": conv_relu_pool, "pool_ties": pool_first_with_ties,
        "relu_bn_avgpool": relu_batchnorm_avgpool, "relu_bn_maxpool": relu_batchnorm_maxpool,
        "residual": residual,
        "permuted_flatten": permuted_flatten, "shift_stack": shift_stack}


def make(name, seed=0):
    torch.manual_seed(seed)
    net, shape, flows = {**NETS, **GATED}[name]()
    return net.eval(), shape, flows


def inputs_for(name, shape, B, seed=1):
    g = torch.Generator().manual_seed(seed)
    if name == "pool_ties":
        return torch.randint(0, 3, (B,) + shape, generator=g).float()
    return torch.randn((B,) + shape, generator=g)


# --------------------------------------------------------------------------------------
# the explicit reference (SPEC §4 step by step)
def flowing_values(net, x, flows):
    """Per node, the value it passes on and the value a max pool reads from it
    (a ``(passed, read)`` pair of modules in ``flows`` where they differ),
    recorded with forward hooks: two (B, n) arrays."""
    pairs = [m if isinstance(m, tuple) else (m, m) for m in flows]
    rec = {}
    hooks = [net.get_submodule(m).register_forward_hook(
        lambda mod, inp, out, m=m: rec.__setitem__(m, out.detach().clone()))
        for m in {m for pair in pairs for m in pair}]
    with torch.no_grad():
        logits = net(x)
    for h in hooks:
        h.remove()
    B = x.shape[0]
    cat = lambda which: torch.cat([x.reshape(B, -1)] + [rec[p[which]].reshape(B, -1)  # noqa: E731
                                                       for p in pairs], 1).double().numpy()
    return cat(0), cat(1), logits.argmax(1).numpy()


def reference(graph, net, x, flows, target="pred"):
    """Kept nodes and kept-edge CSR of every input, from ``graph.to_scipy()``;
    ``target``: the output positions kept ("pred", "all" or one per input)."""
    flow, pooled, pred = flowing_values(net, x, flows)
    assert flow.shape[1] == graph.n_nodes
    A = graph.to_scipy().tocoo()
    i, j, w = A.row, A.col, A.data
    n = graph.n_nodes
    max_dst = np.zeros(n, dtype=bool)
    for b in graph.edge_blocks:
        if isinstance(b, PoolBlock) and b.pool_type == "max":
            max_dst[graph.node_blocks[b.dst].slice] = True
    pool_edge = max_dst[j]
    inp = graph.input_block.slice
    out = []
    for k in range(x.shape[0]):
        v = flow[k]
        active = v != 0
        active[inp] = True                     # inputs are never set to zero by a ReLU
        active[graph.output_index] = False
        if isinstance(target, str):
            pos = np.arange(len(graph.output_index)) if target == "all" else [pred[k]]
        else:
            pos = [target[k]]
        ends = graph.output_index[pos]
        active[ends] = True
        # max pools: only edges from a window maximum (all maxima on ties)
        u = pooled[k]
        wmax = np.full(n, -np.inf)
        np.maximum.at(wmax, j[pool_edge], u[i[pool_edge]])
        ok = ~pool_edge | (u[i] == wmax[j])
        ok &= active[i] & active[j]
        # nodes that still reach the predicted output: search on the reversed edges
        R = sp.csr_matrix((np.ones(ok.sum()), (j[ok], i[ok])), shape=(n, n))
        keep = np.zeros(n, dtype=bool)
        for end in ends:
            keep[breadth_first_order(R, end, directed=True, return_predecessors=False)] = True
        e = ok & keep[i] & keep[j]
        out.append((keep, sp.csr_matrix((w[e], (i[e], j[e])), shape=(n, n)), pred[k]))
    return out


def same_csr(S, R):
    S, R = S.tocsr(), R.tocsr()
    S.sort_indices()
    R.sort_indices()
    return (np.array_equal(S.indptr, R.indptr) and np.array_equal(S.indices, R.indices)
            and np.array_equal(S.data, R.data))


class SqueezeExcite(nn.Module):
    """A squeeze-excitation gate: ``x * hardsigmoid(fc2(relu(fc1(mean(x)))))``."""

    def __init__(self, c, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))
        return x * nn.functional.hardsigmoid(self.fc2(s))


class Gated(nn.Module):
    """conv -> hard-swish -> SE gate -> conv -> batch norm -> SiLU -> max pool -> dense:
    hard-swish sets values <= -3 to zero, one gate channel is closed (exact zeros)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(1, 4, 3, padding=1), nn.Hardswish()
        self.se = SqueezeExcite(4, 2)
        self.conv2, self.bn = nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3)
        self.act2, self.pool = nn.SiLU(), nn.MaxPool2d(2)
        self.fc = nn.Linear(12, 5)
        with torch.no_grad():
            self.conv1.weight.mul_(6.0)
            self.se.fc2.bias.copy_(torch.tensor([-9.0, 0.5, 0.5, 0.5]))
            self.bn.running_var.fill_(2.0)
            self.bn.weight.copy_(torch.tensor([1.0, -0.5, 2.0]))

    def forward(self, x):
        a = self.se(self.act1(self.conv1(x)))
        y = self.pool(self.act2(self.bn(self.conv2(a))))
        return self.fc(torch.flatten(y, 1))


def gated():
    return Gated(), (1, 6, 6), ["se", "act2", "pool", "fc"]


class SplitAttention(nn.Module):
    """ResNeSt's split attention (radix 2) after a ReLU conv: the radix branches,
    gated by a softmax across them, add up with ``sum(dim=1)`` (a sum block)."""

    def __init__(self):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.fc = nn.Conv2d(2, 4, 1)
        self.relu2, self.out = nn.ReLU(), nn.Linear(2 * 16, 3)

    def forward(self, x):
        u = self.relu(self.conv(x))
        xs = u.view(u.shape[0], 2, 2, 4, 4)
        attn = torch.softmax(self.fc(xs.sum(1).mean((2, 3), keepdim=True)).view(-1, 2, 2, 1, 1), 1)
        y = self.relu2((xs * attn).sum(dim=1))
        return self.out(y.flatten(1))


def split_attention():
    return SplitAttention(), (1, 4, 4), ["relu", "relu2", "out"]


GATED = {"gated": gated, "split_attention": split_attention}


@pytest.mark.filterwarnings("ignore::deepglass.graph.NonMonotoneActivationWarning")
@pytest.mark.parametrize("name,capture", [(n, "auto") for n in NETS] + [(n, "fx") for n in NETS]
                         + [("gated", "auto"), ("split_attention", "auto")])
def test_masks_equal_explicit_construction(name, capture):
    net, shape, flows = make(name)
    g = SignedGraph.from_module(net, shape, capture=capture)
    assert g.meta["rules"]["capture"] == ("torch.fx" if capture == "fx" else "torch.export")
    x = inputs_for(name, shape, 4)
    subs = active_subgraph(g, net, x)
    ref = reference(g, net, x, flows)
    for k, (keep, Aref, pred) in enumerate(ref):
        assert subs.pred[k] == pred
        np.testing.assert_array_equal(subs.keep[k], keep)
        sub = subs.subgraph(k)
        assert same_csr(sub.to_scipy(), Aref)
        assert subs.edges[k].sum() == Aref.nnz == sub.n_edges
        assert subs.abs_weight[k].sum() == pytest.approx(abs(Aref).sum(), rel=1e-6)
        # the masked operator is the explicit one
        s = torch.randn(2, g.n_nodes, dtype=torch.float64)
        np.testing.assert_allclose(sub.to(dtype=torch.float64).rmatvec(s).numpy(),
                                   (Aref.T @ s.numpy().T).T, rtol=1e-9, atol=1e-9)
    assert 0 < subs.keep.sum(1).min() and subs.keep.sum(1).max() < g.n_nodes
    # the per-block table and the node masks add up to the per-input summary
    summary, blocks = subs.summary(), subs.block_table()
    np.testing.assert_array_equal(blocks.groupby("input", sort=False)["edges"].sum().to_numpy(),
                                  summary["edges"].to_numpy())
    masks = subs.node_masks(0)
    assert sum(int(m.sum()) for m in masks.values()) == summary["nodes"].iloc[0]
    assert {k: m.shape for k, m in masks.items()} == {nb.name: nb.shape for nb in g.node_blocks}
    # the library's own explicit helper agrees with the masks it is given
    reach, A = explicit_active_nodes(g, subs.active[0], int(g.output_index[subs.pred[0]]),
                                     {b: v[0] for b, v in subs.pool_max.items()}, subs.windows)
    np.testing.assert_array_equal(reach, subs.keep[0])
    assert same_csr(A, ref[0][1])


@pytest.mark.filterwarnings("ignore::deepglass.graph.NonMonotoneActivationWarning")
@pytest.mark.parametrize("name", ["conv_relu_pool", "residual", "pool_ties"])
def test_target_outputs_equal_explicit_construction(name):
    """``target="all"`` (every output node) and one given output per input:
    the masks equal the reference search from those output nodes."""
    net, shape, flows = make(name)
    g = SignedGraph.from_module(net, shape)
    x = inputs_for(name, shape, 4)
    m = len(g.output_index)
    given = np.array([(k + 1) % m for k in range(4)])
    for target in ("all", given):
        subs = active_subgraph(g, net, x, target=target)
        ref = reference(g, net, x, flows, target)
        expect = np.full(4, -1) if isinstance(target, str) else given
        np.testing.assert_array_equal(subs.target, expect)
        np.testing.assert_array_equal(subs.summary()["target"].to_numpy(), expect)
        for k, (keep, Aref, pred) in enumerate(ref):
            assert subs.pred[k] == pred                 # still the arg-max, whatever is kept
            np.testing.assert_array_equal(subs.keep[k], keep)
            assert same_csr(subs.subgraph(k).to_scipy(), Aref)
            ends = g.output_index if isinstance(target, str) else g.output_index[given[k]]
            reach, A = explicit_active_nodes(g, subs.active[k], ends,
                                             {b: v[k] for b, v in subs.pool_max.items()},
                                             subs.windows)
            np.testing.assert_array_equal(reach, keep)
    # every output kept: each input's subnetwork contains the one of its prediction
    every, pred = active_subgraph(g, net, x, target="all"), active_subgraph(g, net, x)
    assert (every.keep >= pred.keep).all() and (every.keep.sum(1) > pred.keep.sum(1)).any()
    # the predicted positions given explicitly: the default construction
    same = active_subgraph(g, net, x, target=pred.pred)
    np.testing.assert_array_equal(same.keep, pred.keep)
    np.testing.assert_array_equal(same.edges, pred.edges)


def test_gate_and_hard_swish_zeros_leave_the_active_subnetwork():
    net, shape, _ = make("gated")
    g = SignedGraph.from_module(net, shape)
    assert g.meta["gates"] and g.meta["left_out"]          # the SE branch is a rescaling
    x = inputs_for("gated", shape, 3)
    subs = active_subgraph(g, net, x)
    with torch.no_grad():
        pre = net.conv1(x)
    block = next(nb for nb in g.node_blocks if nb.name == "conv1")
    act = subs.active[:, block.slice].reshape((3,) + block.shape)
    assert not act[:, 0].any()                              # the closed gate channel
    open_ch = act[:, 1:].numpy() if isinstance(act, torch.Tensor) else act[:, 1:]
    np.testing.assert_array_equal(open_ch, (pre[:, 1:] > -3).numpy())  # hard-swish zeros
    assert (pre[:, 1:] <= -3).any()


def test_ties_keep_every_maximal_tap():
    net, shape, flows = make("pool_ties")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("pool_ties", shape, 3)
    subs = active_subgraph(g, net, x)
    first_pool = next(k for k, b in enumerate(g.edge_blocks) if b.module == "0")
    taps = subs.pool_max[first_pool].sum(2)          # maximal taps per window
    assert taps.max() > 1                             # ties happened
    # every window of the input pool has at least one maximum; 4 taps where constant
    assert taps.min() >= 1


# --------------------------------------------------------------------------------------
def monotone_net(gauge: bool):
    """conv + ReLU + max pool + dense with ``S A S >= 0``: non-negative weights, or
    weights whose signs are ``s_out * s_in`` of per-channel gauges (pools keep
    channels, and their edges are positive, so the gauge is consistent)."""
    net, shape, flows = make("conv_relu_pool", seed=3)
    rng = np.random.default_rng(4)
    s_in = np.ones(1)
    s1 = rng.choice([-1.0, 1.0], 3) if gauge else np.ones(3)
    s2 = rng.choice([-1.0, 1.0], 4) if gauge else np.ones(4)
    s3 = rng.choice([-1.0, 1.0], 5) if gauge else np.ones(5)
    with torch.no_grad():
        c1, c2, fc = net[0], net[3], net[6]
        c1.weight.copy_(c1.weight.abs() * torch.tensor(np.outer(s1, s_in))[:, :, None, None])
        c2.weight.copy_(c2.weight.abs() * torch.tensor(np.outer(s2, s1))[:, :, None, None])
        s_flat = np.repeat(s2, 4)                       # flatten of (4, 2, 2)
        fc.weight.copy_(fc.weight.abs() * torch.tensor(np.outer(s3, s_flat)))
        for m in (c1, c2):   # positive biases keep many nodes active
            m.bias.copy_(m.bias.abs())
    g = SignedGraph.from_module(net, shape)
    sigma = np.concatenate([np.repeat(s, nb.size // len(s)) for s, nb in
                            zip([s_in, s1, s1, s2, s3], g.node_blocks)])
    assert len(sigma) == g.n_nodes
    return net, shape, g, sigma


@pytest.mark.parametrize("gauge", [False, True])
def test_monotone_network_has_zero_frustration(gauge):
    net, shape, g, sigma = monotone_net(gauge)
    assert float(g.energy(torch.tensor(sigma))) == pytest.approx(0.0, abs=1e-7)
    assert deepglass.frustration(g, method="exact").frustration == pytest.approx(0, abs=1e-9)
    subs = active_subgraph(g, net, inputs_for("conv_relu_pool", shape, 3))
    ex = subs.frustration(method="exact")
    np.testing.assert_allclose(ex["delta_x"], 0.0, atol=1e-9)
    assert ex["optimal"].all()
    warm = subs.frustration(method="greedy", replicas=2, warm_start=sigma)
    np.testing.assert_allclose(warm["delta_x"], 0.0, atol=1e-7)


# --------------------------------------------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), widths=st.lists(st.integers(2, 7), min_size=1, max_size=3),
       shift=st.floats(-1.0, 0.5))
def test_pruning_keeps_exactly_the_nodes_on_paths_to_the_output(seed, widths, shift):
    torch.manual_seed(seed)
    layers, d = [], 5
    for w in widths:
        lin = nn.Linear(d, w)
        with torch.no_grad():
            lin.bias.add_(shift)          # negative shifts silence many ReLUs
        layers += [lin, nn.ReLU()]
        d = w
    net = nn.Sequential(*layers, nn.Linear(d, 3)).eval()
    g = SignedGraph.from_module(net, (5,))
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(seed))
    subs = active_subgraph(g, net, x)
    flows = [str(2 * k + 1) for k in range(len(widths))] + [str(2 * len(widths))]
    flow, _, pred = flowing_values(net, x, flows)
    for k in range(3):
        active = flow[k] != 0
        active[g.input_block.slice] = True
        active[g.output_index] = False
        target = int(g.output_index[pred[k]])
        active[target] = True
        G = g.to_networkx().subgraph(np.flatnonzero(active).tolist())
        on_path = nx.ancestors(G, target) | {target}
        assert set(np.flatnonzero(subs.keep[k]).tolist()) == on_path


def test_batched_equals_one_at_a_time():
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("conv_relu_pool", shape, 5)
    batched = active_subgraph(g, net, x, batch_size=2)
    table = batched.frustration(method="greedy", replicas=3, seed=7)
    for k in range(5):
        one = active_subgraph(g, net, x[k])
        np.testing.assert_array_equal(batched.keep[k], one.keep[0])
        np.testing.assert_array_equal(batched.active[k], one.active[0])
        np.testing.assert_array_equal(batched.edges[k], one.edges[0])
        # float32 operator: the batch changes only the summation order
        np.testing.assert_allclose(batched.abs_weight[k], one.abs_weight[0], rtol=1e-6)
        for b in batched.pool_max:
            np.testing.assert_array_equal(batched.pool_max[b][k], one.pool_max[b][0])
        r = one.frustration(method="greedy", replicas=3, seed=7)
        assert r["delta_x"].iloc[0] == table["delta_x"].iloc[k]


def test_one_input_through_re_indexed_copies_equals_the_batch():
    """One input where a copy block gathers its sources (``cat([b, a])`` of a
    chunked value): the reachability pass added a block's adjoint into the
    array it read from (an in-place error at a batch of 1); now the same
    masks as within a batch."""
    class Swap(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            a, b = torch.relu(self.c(x)).chunk(2, 1)
            return torch.cat([b, a], 1).flatten(1) * 2.0

    torch.manual_seed(0)
    net = Swap().eval()
    g = SignedGraph.from_module(net, (1, 4, 4))
    x = torch.randn(3, 1, 4, 4)
    batched = active_subgraph(g, net, x, target="all")
    for k in range(3):
        one = active_subgraph(g, net, x[k:k + 1], target="all")
        np.testing.assert_array_equal(batched.keep[k], one.keep[0])
        np.testing.assert_array_equal(batched.edges[k], one.edges[0])


def brute_force_delta(A: sp.csr_matrix) -> float:
    """min over all gauges of the kept nodes of the |weight| fraction of
    frustrated edges (SPEC §2), by enumeration."""
    A = A.tocoo()
    nodes = np.unique(np.concatenate([A.row, A.col]))
    pos = {v: p for p, v in enumerate(nodes)}
    i = np.array([pos[v] for v in A.row])
    j = np.array([pos[v] for v in A.col])
    n = len(nodes)
    assert n <= 18
    S = np.array(list(itertools.product([-1, 1], repeat=n - 1)))
    S = np.hstack([np.ones((len(S), 1)), S])
    frustrated = (np.sign(A.data)[None] * S[:, i] * S[:, j] < 0) * np.abs(A.data)[None]
    return float(frustrated.sum(1).min() / np.abs(A.data).sum())


def test_exact_delta_x_equals_brute_force_on_explicit_subgraph():
    torch.manual_seed(11)
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(2, 3)).eval()
    g = SignedGraph.from_module(net, (1, 3, 3))
    x = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    subs = active_subgraph(g, net, x)
    ex = subs.frustration(method="exact")
    ref = reference(g, net, x, ["1", "2", "4"])
    checked = 0
    for k, (keep, Aref, _) in enumerate(ref):
        if Aref.nnz == 0:
            assert np.isnan(ex["delta_x"].iloc[k])
            continue
        assert ex["delta_x"].iloc[k] == pytest.approx(brute_force_delta(Aref), abs=1e-7)
        checked += 1
    assert checked >= 2


def test_descent_and_greedy_upper_bound_exact():
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    sub = active_subgraph(g, net, inputs_for("conv_relu_pool", shape, 1)).subgraph(0)
    ex = active_frustration(sub, method="exact")
    for m in ("greedy", "descent", "anneal"):
        r = active_frustration(sub, method=m, replicas=4, seed=0)
        assert r["delta_x"] >= ex["lower_bound"] - 1e-6
        assert 0.0 <= r["delta_x"] <= 0.5


# --------------------------------------------------------------------------------------
def test_bad_inputs_give_one_line_errors():
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    cases = [lambda: active_subgraph(g, net, torch.zeros(2, 1, 7, 7)),
             lambda: active_subgraph(g, net, torch.zeros(2, 64)),
             lambda: active_subgraph(g, net, torch.zeros(2, 1, 8, 8), ids=["a"]),
             lambda: active_subgraph(g, nn.Sequential(nn.Flatten(), nn.Linear(64, 5)),
                                     torch.zeros(1, 1, 8, 8)),
             lambda: active_subgraph(g, net, torch.zeros(1, 1, 8, 8), batch_size=0),
             lambda: active_subgraph(g, net, torch.zeros(2, 1, 8, 8), target="best"),
             lambda: active_subgraph(g, net, torch.zeros(2, 1, 8, 8), target=[0]),
             lambda: active_subgraph(g, net, torch.zeros(2, 1, 8, 8), target=[0, 5]),
             lambda: active_subgraph(g, net, torch.zeros(2, 1, 8, 8), target=[0.5, 1.0]),
             lambda: active_frustration(g, method="magic"),
             # NaN inputs gave a "subnetwork", no inputs a raw ValueError
             lambda: active_subgraph(g, net, torch.full((2, 1, 8, 8), float("nan"))),
             lambda: active_subgraph(g, net, torch.zeros(0, 1, 8, 8)),
             lambda: active_subgraph(g, net, torch.zeros(2, 1, 8, 8)).subgraph(2)]
    for case in cases:
        with pytest.raises(DeepglassError) as info:
            case()
        assert "\n" not in str(info.value)


def test_a_model_with_other_weights_than_the_graphs_is_refused():
    """Same architecture, other weights (a null model's, here a permutation
    of each layer's weights, N1): its masks would be read off another
    network and applied to the graph's edges; refused in one line."""
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    other = copy.deepcopy(net)
    with torch.no_grad():
        for p in other.parameters():
            p.copy_(p.flatten()[torch.randperm(p.numel(), generator=torch.Generator()
                                                .manual_seed(0))].view_as(p))
    x = inputs_for("conv_relu_pool", shape, 2)
    with pytest.raises(DeepglassError, match="not captured from this model's weights"):
        active_subgraph(g, other, x)
    # the same weights in float64, and the graph in float64: the same network
    g64 = SignedGraph.from_module(net, shape, dtype=torch.float64)
    active_subgraph(g64, copy.deepcopy(net).double(), x.double())


# --------------------------------------------------------------------------------------
def test_run_writes_tables_figure_report_and_resumes(tmp_path, monkeypatch):
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("conv_relu_pool", shape, 5)
    ids = [f"img{k}" for k in range(5)]
    table = run_active(tmp_path / "run", net, g, x, ids, method="greedy", replicas=2,
                       unit_size=2)
    assert list(table["input"]) == ids and list(table["index"]) == list(range(5))
    for f in ("active.parquet", "figures/active_delta_x.png", "report.md", "summary.json",
              "arrays/gauge_real.npz"):
        assert (tmp_path / "run" / f).exists(), f
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["active"]
    delta = summary["delta"]
    assert summary["frac_below_delta"] == pytest.approx(float((table["delta_x"] < delta).mean()))
    assert "Active subnetworks" in (tmp_path / "run" / "report.md").read_text()
    # the same rows as computed in memory
    mem = active_table(g, net, x, ids, method="greedy", replicas=2,
                       warm_start=np.load(tmp_path / "run/arrays/gauge_real.npz")["sigma"])
    np.testing.assert_array_equal(mem["delta_x"], table["delta_x"])
    assert table.attrs["resumed_units"] == 0
    # resume: finished units are not recomputed, and the table says how many
    import deepglass.experiments.active_run as ar

    monkeypatch.setattr(ar, "active_table", lambda *a, **k: pytest.fail("recomputed"))
    again = run_active(tmp_path / "run", net, g, x, ids, method="greedy", replicas=2,
                       unit_size=2)
    np.testing.assert_array_equal(again["delta_x"], table["delta_x"])
    assert again.attrs["resumed_units"] == 3
    # the resumed run tells where delta came from as the first did (it said
    # "from arrays/gauge_real.npz of this run": summary and report changed)
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())["active"]
    assert {k: v for k, v in resumed.items() if k != "seconds"} == \
        {k: v for k, v in summary.items() if k != "seconds"}
    assert resumed["delta_source"].startswith("greedy, 2 start gauges")


def test_run_with_given_targets_slices_them_per_unit_and_refuses_others(tmp_path):
    """Given output positions travel with their inputs into the units (the rows
    do not depend on the unit size); a resume with other positions is refused."""
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("conv_relu_pool", shape, 5)
    labels = np.array([4, 0, 3, 1, 2])
    table = run_active(tmp_path / "run", net, g, x, method="greedy", replicas=2,
                       unit_size=2, target=labels)
    np.testing.assert_array_equal(table["target"], labels)
    mem = active_table(g, net, x, method="greedy", replicas=2, target=labels,
                       warm_start=np.load(tmp_path / "run/arrays/gauge_real.npz")["sigma"])
    np.testing.assert_array_equal(mem["nodes"], table["nodes"])
    np.testing.assert_array_equal(mem["delta_x"], table["delta_x"])
    assert "only the given output node" in (tmp_path / "run" / "report.md").read_text()
    with pytest.raises(DeepglassError, match="configuration"):
        run_active(tmp_path / "run", net, g, x, method="greedy", replicas=2, unit_size=2,
                   target=labels[::-1].copy())
    every = run_active(None, net, g, x, method="greedy", replicas=2, target="all")
    assert (every["target"] == -1).all() and (every["nodes"] >= table["nodes"]).all()


def test_a_run_directory_holds_the_gauge_of_one_network(tmp_path):
    """The gauge a frustration run stores is not reused for other weights (its
    delta and partial order belong to another network), and a run resumed with
    other weights is refused: by active subnetworks and near-monotonicity alike."""
    from deepglass.experiments.frustration import frustration_vs_nulls
    from deepglass.experiments.monotonicity import monotonicity_experiment

    net, shape, _ = make("conv_relu_pool")
    other = copy.deepcopy(net)
    with torch.no_grad():
        other[0].weight[0, 0, 0, 0] += 0.5
    x = inputs_for("conv_relu_pool", shape, 3)
    run = tmp_path / "run"
    fr = frustration_vs_nulls(net, nulls="", replicas=2, input_shape=shape, run=run)
    g_other = SignedGraph.from_module(other, shape)
    with pytest.raises(DeepglassError, match="gauge of other network weights"):
        run_active(run, other, g_other, x, method="greedy", replicas=2)
    with pytest.raises(DeepglassError, match="gauge of other network weights"):
        monotonicity_experiment(other, x, nulls=(), amplitudes=2, run=run)
    # the network of the frustration run reads its gauge
    table = run_active(run, net, SignedGraph.from_module(net, shape), x, method="greedy",
                       replicas=2)
    assert table["delta"].iloc[0] == pytest.approx(fr.gauge["energy"])
    mono = monotonicity_experiment(net, x, nulls=(), amplitudes=2, run=run)
    assert mono.gamma["frustration"].iloc[0] == pytest.approx(fr.gauge["energy"])
    # resuming either run with other weights (gauge given, so none is read): refused,
    # naming the weights
    g = fr.gauge
    for again in (lambda: run_active(run, other, g_other, x, method="greedy", replicas=2,
                                     delta=0.3),
                  lambda: monotonicity_experiment(other, x, g["sigma_in"], g["sigma_out"],
                                                  nulls=(), amplitudes=2, run=run)):
        with pytest.raises(DeepglassError, match="configuration differs .*weights_sha256"):
            again()


#: per-input columns that are timings (differ between runs)
ACTIVE_TIMING = ["solve_seconds", "extract_seconds"]


def test_ray_gives_the_same_table_as_in_process(tmp_path, ray_executor):
    # 5 inputs in units of 2: the units travel as slices of the shared inputs
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("conv_relu_pool", shape, 5)
    kw = dict(method="greedy", replicas=2, unit_size=2, seed=3)
    local = run_active(None, net, g, x, **kw)
    seen = []
    remote = run_active(tmp_path / "ray", net, g, x, executor=ray_executor,
                        progress=lambda d, t: seen.append((d, t)), **kw)
    pd.testing.assert_frame_equal(local.drop(columns=ACTIVE_TIMING),
                                  remote.drop(columns=ACTIVE_TIMING))
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)     # progress in inputs
    assert sorted(p.name for p in (tmp_path / "ray/units/active/inputs").iterdir()) == [
        "inputs-00000.parquet", "inputs-00001.parquet", "inputs-00002.parquet"]
    # the stored table is the returned one, and its delta is the whole net's
    stored = pd.read_parquet(tmp_path / "ray" / "active.parquet")
    pd.testing.assert_frame_equal(stored, remote)
    gauge = np.load(tmp_path / "ray/arrays/gauge_real.npz")
    e = float(g.energy(torch.as_tensor(gauge["sigma"], dtype=torch.float32)[None])[0])
    assert remote["delta"].iloc[0] == pytest.approx(e, abs=1e-6)


def test_cli_active_on_ray_gives_the_in_process_table(cli, tmp_path, ray_executor):
    np.save(tmp_path / "x.npy", np.random.default_rng(1).random((5, 1, 8, 8)).astype(np.float32))
    argv = ["active", "digits_cnn", "--inputs", str(tmp_path / "x.npy"), "--replicas", "2",
            "--unit-size", "2", "--json"]
    tables = {}
    for name, extra in (("inprocess", []), ("ray", ["--executor", "ray"])):
        code, text, err = cli(argv + extra)
        assert code == 0, err
        tables[name] = json.loads(text)
    assert tables["ray"]["table"] == tables["inprocess"]["table"]
    assert tables["ray"]["delta"] == tables["inprocess"]["delta"]
    code, _, err = cli(argv + ["--executor", "dask"])
    assert code == 2 and "unknown executor 'dask'" in err and len(err.splitlines()) == 1


def test_delta_x_histogram_draws_on_the_given_axes():
    from matplotlib.figure import Figure

    from deepglass.experiments.figures import delta_x_histogram

    table = pd.DataFrame({"delta_x": [0.1, 0.2, np.nan, 0.25, 0.3]})
    fig = Figure()
    ax = fig.add_subplot()
    assert delta_x_histogram(table, 0.22, ax=ax, bins=4) is ax
    counts = [p.get_height() for p in ax.patches]
    assert sum(counts) == 4                      # the NaN row (no edge) is left out
    assert ax.lines[0].get_xdata()[0] == 0.22    # delta marked
    assert "50% below" in ax.get_legend().get_texts()[1].get_text()


def test_run_takes_delta_from_a_frustration_run(tmp_path):
    from deepglass.store import RunDir

    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    other = RunDir(tmp_path / "run", {"replicas": 1}, kind="frustration")
    other.save_arrays("gauge_real", sigma=np.ones(g.n_nodes, np.int8),
                      sigma_in=np.ones(64, np.int8), sigma_out=np.ones(5, np.int8),
                      energy=np.float64(0.123))
    table = run_active(tmp_path / "run", net, g, inputs_for("conv_relu_pool", shape, 2),
                       method="greedy", replicas=2)
    assert (table["delta"] == 0.123).all()
    assert "gauge_real" in (tmp_path / "run" / "report.md").read_text()
    # a gauge of another graph (the same weights at another input shape) is refused
    third = RunDir(tmp_path / "third", {"replicas": 1}, kind="frustration")
    third.save_arrays("gauge_real", sigma=np.ones(g.n_nodes + 7, np.int8),
                      sigma_in=np.ones(64, np.int8), sigma_out=np.ones(5, np.int8),
                      energy=np.float64(0.123))
    with pytest.raises(DeepglassError, match=rf"is a gauge of a graph of {g.n_nodes + 7:,} "
                                             rf"nodes; this network's graph \(input 1x8x8\)"):
        run_active(tmp_path / "third", net, g, inputs_for("conv_relu_pool", shape, 2),
                   method="greedy", replicas=2)


def test_cli_active(tmp_path):
    from typer.testing import CliRunner

    from deepglass.cli.app import app

    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(app, ["active", "digits_cnn", "--inputs", str(tmp_path / "x.npy"),
                              "--replicas", "2", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(data["table"]) == 6 and 0 < data["delta"] < 0.5
    assert (out / "active.parquet").exists()
    res = runner.invoke(app, ["active", "digits_cnn", "--inputs", str(tmp_path / "x.npy"),
                              "--method", "magic"])
    assert res.exit_code != 0


def test_cli_active_targets(tmp_path, capsys):
    """``--target label`` keeps each digit's true class, ``--target all`` every
    output; inputs without labels and an unknown target are one-line errors."""
    from typer.testing import CliRunner

    from deepglass.cli.app import app, main
    from deepglass.inputs import load_inputs

    runner = CliRunner()
    rows = {}
    for target in ("pred", "label", "all"):
        res = runner.invoke(app, ["active", "digits_cnn", "--inputs", "digits", "--n", "4",
                                  "--replicas", "2", "--target", target, "--json"])
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout.strip().splitlines()[-1])
        assert data["target"] == target
        rows[target] = data["table"]
    labels = load_inputs("digits", (1, 8, 8), n=4, seed=0).labels.tolist()
    assert [r["target"] for r in rows["label"]] == labels
    assert [r["target"] for r in rows["pred"]] == [r["pred"] for r in rows["pred"]]
    assert all(r["target"] == -1 for r in rows["all"])
    assert all(a["nodes"] >= p["nodes"] for a, p in zip(rows["all"], rows["pred"]))
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    for args in (["--inputs", str(tmp_path / "x.npy"), "--target", "label"],
                 ["--inputs", "digits", "--target", "best"]):
        with pytest.raises(SystemExit) as info:
            main(["active", "digits_cnn", *args])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "target" in err


def test_cli_bad_input_shape_is_one_line_error(tmp_path, capsys):
    from deepglass.cli.app import main

    np.save(tmp_path / "x.npy", np.zeros((2, 1, 7, 7), np.float32))
    with pytest.raises(SystemExit) as info:
        main(["active", "digits_cnn", "--inputs", str(tmp_path / "x.npy")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cli_active_on_a_gated_network(tmp_path):
    """``deepglass active`` on a network with a squeeze-excitation gate, hard-swish
    and SiLU (captured by torch.export; the fx tracer refuses the gate)."""
    from typer.testing import CliRunner

    from deepglass.cli.app import app

    net, shape, _ = make("gated")
    torch.save(net, tmp_path / "gated.pt")
    np.save(tmp_path / "x.npy", inputs_for("gated", shape, 3).numpy())
    res = CliRunner().invoke(app, ["active", str(tmp_path / "gated.pt"), "--trust-pickle",
                                   "--input-shape", "1,6,6", "--inputs", str(tmp_path / "x.npy"),
                                   "--replicas", "2", "--method", "greedy", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    g = SignedGraph.from_module(net, shape)
    subs = active_subgraph(g, net, inputs_for("gated", shape, 3))
    ref = reference(g, net, inputs_for("gated", shape, 3), ["se", "act2", "pool", "fc"])
    for row, (keep, Aref, _) in zip(data["table"], ref):
        assert (row["nodes"], row["edges"]) == (keep.sum(), Aref.nnz)
        assert 0.0 <= row["delta_x"] <= 0.5
    assert [r["nodes"] for r in data["table"]] == subs.keep.sum(1).tolist()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_recording_mapped_over_inputs_equals_one_input_at_a_time():
    """An exported program is specialized to batch 1: the recorder maps it over
    the inputs (vmap); the per-input loop it falls back to records the same."""
    from deepglass.graph.pattern import PatternRecorder

    net, shape, _ = make("gated")
    g = SignedGraph.from_module(net, shape)
    rec = PatternRecorder(g, net)
    assert not rec.batched
    x = inputs_for("gated", shape, 3)
    mapped = rec.record(x)
    assert not rec._loop
    rec._loop = True
    looped = rec.record(x)
    torch.testing.assert_close(mapped.table, looped.table, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mapped.output, looped.output, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(looped.output, net(x), rtol=1e-6, atol=1e-6)


def test_active_subgraph_of_a_graph_captured_with_forward_arguments():
    """A graph captured with non-tensor forward arguments (here the embedding
    head of a two-headed net) is recorded with the same arguments: the active
    prediction is the argmax of the embedding (the output layer), the only
    output node kept, and every input reaches it through the dense layer."""
    import torch.nn.functional as F

    from deepglass.experiments.active import active_subgraph

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x, embed=False):
            h = F.relu(self.body(x))
            return h if embed else self.head(h)

    torch.manual_seed(3)
    net = Net().eval()
    g = SignedGraph.from_module(net, (4,), forward_kwargs={"embed": True})
    x = torch.randn(16, 4)
    subs = active_subgraph(g, net, x, forward_kwargs={"embed": True})
    h = F.relu(net.body(x)).detach()
    np.testing.assert_array_equal(subs.pred, h.argmax(1).numpy())
    np.testing.assert_array_equal(subs.active[:, 4:], np.eye(3, dtype=bool)[subs.pred])
    assert subs.active[:, :4].all()
    # without them the recorded forward is another network's: refused, saying why
    with pytest.raises(DeepglassError, match="forward_kwargs=.*embed"):
        active_subgraph(g, net, x)


def test_a_replaced_gauge_is_never_mixed_into_a_resumed_run(tmp_path):
    """Active and near-monotonicity runs record the gauge they used (its digest
    and delta); once another command replaced ``arrays/gauge_real.npz``, a
    resume is refused in one line (force: recomputed along the new gauge), and
    what it reports is the delta of the gauge its units used."""
    from deepglass.experiments.frustration import frustration_vs_nulls
    from deepglass.experiments.monotonicity import monotonicity_experiment
    from deepglass.experiments.real_gauge import gauge_record, load_gauge, save_gauge
    from deepglass.store import RunDir

    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("conv_relu_pool", shape, 3)
    run = tmp_path / "run"
    fr = frustration_vs_nulls(net, nulls="", replicas=2, input_shape=shape, run=run)
    kw = dict(method="greedy", replicas=2)
    first = run_active(run, net, g, x, **kw)
    mono = monotonicity_experiment(net, x, nulls=(), amplitudes=2, run=run)
    rd = RunDir(run, RunDir(run, {}, kind="x").run_config("frustration"), kind="frustration")
    used = gauge_record(fr.gauge["sigma"], fr.gauge["energy"])
    assert rd.run_config("active")["gauge"] == used == rd.run_config("monotonicity")["gauge"]
    # another command replaces the stored gauge (here: a few nodes flipped)
    sigma = np.asarray(fr.gauge["sigma"]).copy()
    sigma[g.input_index[:5]] *= -1
    energy = float(g.energy(torch.as_tensor(sigma, dtype=torch.float32)[None])[0])
    save_gauge(rd, sigma, sigma[g.input_index], sigma[g.output_index], energy,
               weights=fr.config["weights_sha256"], graph=g)
    for again in (lambda **f: run_active(run, net, g, x, **kw, **f),
                  lambda **f: monotonicity_experiment(net, x, nulls=(), amplitudes=2, run=run,
                                                      **f)):
        with pytest.raises(DeepglassError, match=r"units were computed with the gauge "
                                                 rf"{used['sha256']} .* now has the gauge") as e:
            again()
        assert "\n" not in str(e.value) and "--force" in str(e.value)
    table = run_active(run, net, g, x, **kw, force=True)
    assert table["delta"].iloc[0] == pytest.approx(energy) != first["delta"].iloc[0]
    m2 = monotonicity_experiment(net, x, nulls=(), amplitudes=2, run=run, force=True)
    assert m2.gamma["frustration"].iloc[0] == pytest.approx(energy)
    assert not m2.trials.equals(mono.trials)
    fresh = monotonicity_experiment(net, x, sigma[g.input_index], sigma[g.output_index],
                                    nulls=(), amplitudes=2)
    pd.testing.assert_frame_equal(m2.trials, fresh.trials)
    assert RunDir(run, {}, kind="x").run_config("active")["gauge"] == \
        gauge_record(sigma, energy)
    assert load_gauge(RunDir(run, {}, kind="x"))["energy"] == pytest.approx(energy)


def test_a_gauge_of_other_capture_rules_is_refused(tmp_path):
    """A gauge stored under --batchnorm fold is not the gauge of the graph
    with batch norms ignored: refused, naming the rule, before the run is opened."""
    from deepglass.experiments.frustration import frustration_vs_nulls
    from deepglass.experiments.monotonicity import monotonicity_experiment

    net, shape, _ = make("relu_bn_avgpool")
    x = inputs_for("relu_bn_avgpool", shape, 2)
    run = tmp_path / "run"
    frustration_vs_nulls(net, nulls="", replicas=2, input_shape=shape, run=run,
                         batchnorm="fold")
    ignore = SignedGraph.from_module(net, shape, batchnorm="ignore")
    with pytest.raises(DeepglassError, match="gauge of another graph of this network "
                                             r"\(batchnorm fold, here ignore") as e:
        run_active(run, net, ignore, x, method="greedy", replicas=2)
    assert "\n" not in str(e.value)
    assert "active" not in (run / "config.toml").read_text()
    ignored = tmp_path / "ignored"   # near-monotonicity reads the batch-norm-folded graph
    frustration_vs_nulls(net, nulls="", replicas=2, input_shape=shape, run=ignored,
                         batchnorm="ignore")
    with pytest.raises(DeepglassError, match="gauge of another graph .*batchnorm ignore, "
                                             "here fold"):
        monotonicity_experiment(net, x, nulls=(), amplitudes=2, run=ignored)
    # the graph it was stored for reads it
    fold = SignedGraph.from_module(net, shape, batchnorm="fold")
    run_active(run, net, fold, x, method="greedy", replicas=2)


# --------------------------------------------------------------------------------------
# exact delta_x: certified or not, said everywhere; the time limit reaches each solve
def _uncertified_exact(calls):
    """An ``exact`` that stops "at its time limit": the greedy value, not
    certified, half of it as the lower bound; records the limits it got."""
    from deepglass.solve.exact import ExactResult
    from deepglass.solve.greedy import greedy

    def fake(As, *, time_limit=60.0, **kw):
        calls.append(time_limit)
        r = greedy(As, np.ones((1, As.shape[0]), dtype=np.int8))
        e = float(r.energies[0])
        return ExactResult(r.sigma[0], e, e / 2, False, "milp", 0.0)
    return fake


def test_exact_active_run_carries_certification_and_time_limit(tmp_path, monkeypatch):
    import deepglass.solve.exact as ex

    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("conv_relu_pool", shape, 3)
    calls = []
    monkeypatch.setattr(ex, "exact", _uncertified_exact(calls))
    run = tmp_path / "run"
    table = run_active(run, net, g, x, method="exact", replicas=2, unit_size=2, time_limit=1.5)
    solved = table[table["method"] == "exact"]
    assert len(solved) >= 2 and calls == [1.5] * len(solved)      # seconds per solve
    assert not solved["optimal"].any()
    np.testing.assert_allclose(solved["lower_bound"], solved["delta_x"] / 2)
    summary = json.loads((run / "summary.json").read_text())["active"]
    assert summary["exact_solves"] == len(solved) and summary["exact_certified"] == 0
    assert summary["time_limit"] == 1.5
    assert summary["exact_max_gap"] == pytest.approx(float((solved["delta_x"] / 2).max()))
    assert "not certified" in summary["certification"]
    report = (run / "report.md").read_text()
    assert f"| exact solves certified optimal | 0 of {len(solved)} |" in report
    assert "not certified" in report and "time limit of 1.5 s" in report
    # the limit is part of the configuration: another one is refused, the same resumes
    assert "time_limit = 1.5" in (run / "config.toml").read_text()
    with pytest.raises(DeepglassError, match="time_limit"):
        run_active(run, net, g, x, method="exact", replicas=2, unit_size=2, time_limit=3)
    with pytest.raises(DeepglassError, match="time_limit"):
        run_active(run, net, g, x, method="exact", replicas=2, unit_size=2)
    again = run_active(run, net, g, x, method="exact", replicas=2, unit_size=2, time_limit=1.5)
    assert len(calls) == len(solved)                               # nothing recomputed
    pd.testing.assert_frame_equal(again, table)
    # the default limit is no option at all: runs made before it resume
    run_active(tmp_path / "r60", net, g, x, method="exact", replicas=2, unit_size=2)
    run_active(tmp_path / "r60", net, g, x, method="exact", replicas=2, unit_size=2,
               time_limit=60)
    assert "time_limit" not in (tmp_path / "r60" / "config.toml").read_text()


def test_time_limit_is_for_exact_only_and_positive():
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("conv_relu_pool", shape, 1)
    with pytest.raises(DeepglassError, match="time_limit applies to method='exact'"):
        run_active(None, net, g, x, method="greedy", time_limit=5)
    for bad in (0, -1.0, float("nan"), "5"):
        with pytest.raises(DeepglassError, match="time_limit must be a positive number"):
            run_active(None, net, g, x, method="exact", time_limit=bad)


def test_cli_active_exact_shows_certification(cli, tmp_path, monkeypatch):
    """The table, JSON and report say whether each exact delta_x is certified."""
    import deepglass.solve.exact as ex

    net, shape, _ = make("conv_relu_pool")
    torch.save(net, tmp_path / "net.pt")
    x = inputs_for("conv_relu_pool", shape, 2)
    torch.save(x, tmp_path / "x.pt")
    args = ["active", str(tmp_path / "net.pt"), "--trust-pickle", "--input-shape", "1,8,8",
            "--inputs", str(tmp_path / "x.pt"), "--method", "exact", "--replicas", "2"]
    # certified (the real solver on these small subgraphs)
    code, out, err = cli(args + ["--json"])
    assert code == 0, err
    res = json.loads(out)
    rows = [r for r in res["table"] if r["method"] == "exact"]
    assert rows and all(r["optimal"] is True and r["gap"] == pytest.approx(0, abs=1e-12)
                        and r["lower_bound"] == pytest.approx(r["delta_x"]) for r in rows)
    assert "certified optimal" in res["certification"]
    assert res["summary"]["exact_certified"] == res["summary"]["exact_solves"] == len(rows)
    # not certified: every place says so, with the bound and the gap
    monkeypatch.setattr(ex, "exact", _uncertified_exact([]))
    code, out, err = cli(args + ["--json", "--time-limit", "2"])
    assert code == 0, err
    res = json.loads(out)
    rows = [r for r in res["table"] if r["method"] == "exact"]
    assert rows and all(r["optimal"] is False and r["lower_bound"] < r["delta_x"]
                        and r["certification"].startswith("best found, not certified: gap")
                        for r in rows)
    assert res["time_limit"] == 2 and "not certified" in res["certification"]
    monkeypatch.setenv("COLUMNS", "250")     # the whole table on one line per input
    code, out, err = cli(args + ["--time-limit", "2", "--out", str(tmp_path / "run")])
    assert code == 0, err
    assert "certified optimal" in out and "no, gap" in out and "lower bound" in out
    assert "not certified" in (tmp_path / "run" / "report.md").read_text()


def test_a_resume_with_other_input_values_under_the_same_names_is_refused(tmp_path):
    """A folder of inputs regenerated (other preprocessing, other files under the
    same names) is other inputs: its finished units were computed on the old
    values, so a resume is refused in one line instead of reporting them (or,
    after an interruption, mixing them with new ones)."""
    net, shape, _ = make("conv_relu_pool")
    g = SignedGraph.from_module(net, shape)
    x = inputs_for("conv_relu_pool", shape, 4)
    ids = [f"img{k}" for k in range(4)]
    kw = dict(method="greedy", replicas=2, unit_size=2)
    run_active(tmp_path / "run", net, g, x, ids, **kw)
    run_active(tmp_path / "run", net, g, x.clone(), ids, **kw)      # the same values resume
    other = x.clone()
    other[3] = other[3] * 0.5 + 0.25
    with pytest.raises(DeepglassError, match="configuration differs.*inputs_sha256") as info:
        run_active(tmp_path / "run", net, g, other, ids, **kw)
    assert "\n" not in str(info.value)
    forced = run_active(tmp_path / "run", net, g, other, ids, force=True, **kw)
    fresh = run_active(None, net, g, other, ids, **kw)
    np.testing.assert_array_equal(forced["delta_x"], fresh["delta_x"])


def test_the_verdict_claims_no_difference_within_the_solvers_scatter():
    """``delta_x`` a hair below ``delta`` (a SiLU net keeps nearly every edge
    active): where the median gap is within the replicas' scatter (their mean
    above their best), the verdict says so and claims nothing (it said 'less
    frustrated, as the paper found'); a clear gap keeps that verdict."""
    from deepglass.experiments.active import active_summary_stats
    from deepglass.experiments.active_run import verdict

    def table(best, mean):
        return pd.DataFrame({"delta_x": best, "delta_x_mean": mean,
                             "frac_nodes": [1.0] * len(best), "frac_edges": [0.9999] * len(best)})

    close = active_summary_stats(table([0.426101, 0.426100], [0.42617, 0.42616]), 0.426103)
    assert close["frac_below_delta"] == 1.0
    assert close["delta_x_scatter"] == pytest.approx(6.45e-5)
    assert "no difference is claimed" in verdict(close) and "99.99%" in verdict(close)
    clear = active_summary_stats(table([0.30, 0.31], [0.3001, 0.3101]), 0.426103)
    assert "as the paper found" in verdict(clear)
    # every edge active (a LeakyReLU net) and the replicas in exact agreement:
    # scatter 0, no gap; it said 'the paper's finding ... is not reproduced'
    same = active_summary_stats(table([0.36718, 0.36718], [0.36718, 0.36718]), 0.36718)
    assert same["delta_x_scatter"] == 0
    assert "no difference is claimed" in verdict(same)


def test_active_edges_through_a_transposed_convolution_are_counted_not_summed():
    """A transposed convolution (and an N2 draw's unshared convolution) had no
    pattern operator: |A| stood in, so an active subnetwork's edge counts were
    sums of |weights| (a block whose sum rounded to 0 was dropped)."""
    from deepglass import null_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1,
                                           output_padding=1)).eval()
    g = SignedGraph.from_module(net, (2, 4, 4))
    x = torch.randn(3, 2, 4, 4)
    subs = deepglass.active_subgraph(g, net, x)
    J = torch.autograd.functional.jacobian(lambda t: net(t).reshape(-1),
                                           torch.zeros(1, 2, 4, 4)).reshape(192, 32)
    for k in range(3):
        s = subs.subgraph(k)
        explicit = sum(len(b.coo()[0]) for b in s.edge_blocks)
        assert s.n_edges == explicit == int((J[int(subs.pred[k])] != 0).sum())
    conv = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 2)).eval()
    n2 = null_model(conv, "N2", seed=1, input_shape=(2, 4, 4))
    unshared = next(b for b in n2.edge_blocks if b.kind == "unshared_conv")
    ones = torch.ones((1,) + unshared.in_shape, dtype=torch.float64)
    assert float(unshared.pattern().to(dtype=torch.float64).apply(ones).sum()) == \
        unshared.n_edges()


def test_active_subnetworks_of_a_two_input_network_are_refused_in_one_line():
    """A graph of two inputs (an image and a diffusion timestep): passing both
    inputs as a tuple or list failed with numpy's 'setting an array element
    with a sequence'; every form is now refused saying why."""
    class TimeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.c = nn.Linear(1, 2), nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x, t):
            return self.c(x) + self.emb(t.view(-1, 1))[:, :, None, None]

    net = TimeNet().eval()
    g = SignedGraph.from_module(net, [(3, 4, 4), ()])
    x, t = torch.randn(1, 3, 4, 4), torch.tensor([10.0])
    for arg in ((x, t), [x, t], x):
        with pytest.raises(DeepglassError, match=r"^activation patterns need a network with "
                                                 r"one input; this graph has 2$"):
            active_subgraph(g, net, arg)


def test_active_subnetworks_without_the_capture_s_forward_kwargs_say_so():
    """A graph captured with a tensor in ``forward_kwargs`` (a style vector):
    asked without it, active_subgraph said the model 'does not accept input of
    shape (3, 5, 5): ... NoneType ...'; it now names the missing arguments."""
    class Styled(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.o = nn.Conv2d(3, 5, 3, padding=1), nn.Linear(5 * 25, 2)

        def forward(self, x, w):
            return self.o(torch.relu(self.c(x) * w.view(1, -1, 1, 1)).flatten(1))

    net, w = Styled().eval(), torch.rand(5)
    g = SignedGraph.from_module(net, (3, 5, 5), forward_kwargs={"w": w})
    x = torch.randn(2, 3, 5, 5)
    with pytest.raises(DeepglassError, match=r"^the graph was captured with forward_kwargs="
                                             r"\{'w': .*\}: pass them here too"):
        active_subgraph(g, net, x)
    assert active_subgraph(g, net, x, forward_kwargs={"w": w}).keep.shape == (2, g.n_nodes)


def test_exact_certifies_the_whole_networks_delta_where_brute_force_reaches(tmp_path):
    """``method="exact"`` compared certified ``delta_x`` with a greedy best of 8
    starts, an upper bound on ``delta``, and said nothing of it: on a network
    of at most 25 nodes the whole network's ``delta`` is certified too (the
    brute-force minimum), on a larger one the source says it is an upper bound."""
    import deepglass.experiments.active_run as ar

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    g = SignedGraph.from_module(net, (1, 6), dtype=torch.float64)
    assert g.n_nodes <= ar.EXACT_WHOLE_NODES
    As = g.to_scipy_sym()
    bits = (np.arange(2 ** (g.n_nodes - 1))[:, None] >> np.arange(g.n_nodes - 1)) & 1
    S = np.hstack([np.ones((len(bits), 1)), 1.0 - 2.0 * bits])
    ground = 0.5 * (1.0 - np.einsum("ri,ri->r", S, (As @ S.T).T).max() / g.abs_total())
    res = ar.whole_delta(g, "exact")
    assert res.method == "exact" and res.frustration == pytest.approx(ground, abs=1e-12)
    assert ar.delta_source(res, 0) == "exact, certified optimal"
    x = torch.randn(3, 1, 6)
    table = run_active(tmp_path / "run", net, g, x, method="exact", whole_method="exact")
    assert table["delta"].iloc[0] == pytest.approx(ground, abs=1e-12)
    assert table.attrs["delta_source"] == "exact, certified optimal"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["active"]
    assert summary["delta_source"] == "exact, certified optimal"
    # too large to certify: Algorithm 1, said to be an upper bound
    big = SignedGraph.from_module(nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                                                nn.Linear(56, 3)).eval(), (1, 30))
    res = ar.whole_delta(big, "exact")
    assert res.method == "greedy"
    assert ar.delta_source(res, 0).endswith("the best found, an upper bound on delta")


def test_activity_of_sums_merged_into_a_concatenations_layers():
    """Sums onto a concatenation end on its layers' nodes (all of them, or
    those not read elsewhere: the ghost module): each node's activity is that
    of the value it now holds, the sum after its ReLU, element for element;
    and the kept nodes are the explicit reachability's."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_capture import _CatAdd

    from deepglass.experiments.active import explicit_active_nodes

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv2d(2, 4, 3, padding=1)
            self.blk, self.blk2 = _CatAdd(ghost=True, gain=True), _CatAdd(gain=True)
            self.fc = nn.Linear(4 * 36, 5)

        def forward(self, x):
            y = torch.relu(self.blk(torch.relu(self.c0(x))))
            return self.fc(torch.relu(self.blk2(y)).flatten(1))

    torch.manual_seed(0)
    net = Net().eval()
    g = SignedGraph.from_module(net, (2, 6, 6))
    blocks = {nb.name: nb for nb in g.node_blocks}
    assert [blocks[k].op for k in ("blk.a", "blk.b", "blk:add", "blk2.a", "blk2.b")] == \
        ["conv", "add", "add", "add", "add"]
    x = torch.randn(6, 2, 6, 6)
    subs = active_subgraph(g, net, x)
    with torch.no_grad():
        y1 = torch.relu(net.blk(torch.relu(net.c0(x))))
        y2 = torch.relu(net.blk2(y1))
    for name, value in (("blk:add", y1[:, :2]), ("blk.b", y1[:, 2:]),
                        ("blk2.a", y2[:, :2]), ("blk2.b", y2[:, 2:])):
        nb = blocks[name]
        np.testing.assert_array_equal(subs.active[:, nb.offset:nb.stop],
                                      (value != 0).reshape(len(x), -1).numpy(), err_msg=name)
    for k in range(len(x)):
        reach, _ = explicit_active_nodes(g, subs.active[k], int(g.output_index[subs.pred[k]]))
        np.testing.assert_array_equal(reach, subs.keep[k])

"""Elementwise functions and resampling ops that the capture accepts (SPEC §1,
§1b): an elementwise function adds no nodes and no edges (warned once by name
where it is not non-decreasing).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from deepglass.graph import NonMonotoneActivationWarning, SignedGraph


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _net(act):
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 2)).double().eval()


def _graph(net, shape, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g = SignedGraph.from_module(net, shape, dtype=torch.float64, **kw)
    return g, [str(x.message) for x in w if issubclass(x.category, NonMonotoneActivationWarning)]


ELEMENTWISE = [
    # (name, function, non-decreasing)
    ("sin", torch.sin, False),                         # SIREN
    ("cos", torch.cos, False),
    ("atan", torch.atan, True),
    ("arctan", torch.arctan, True),
    ("sinh", torch.sinh, True),
    ("asinh", torch.asinh, True),
    ("arcsinh", torch.arcsinh, True),
    ("erf", torch.erf, True),
    ("log1p", lambda x: torch.log1p(torch.relu(x)), True),
]


@pytest.mark.parametrize("capture", ["export", "core"])
@pytest.mark.parametrize("name,fn,monotone", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
def test_elementwise_function_adds_no_nodes_or_edges(name, fn, monotone, capture):
    g_relu, w_relu = _graph(_net(nn.ReLU()), (3,), capture=capture)
    g, w = _graph(_net(_Fn(fn)), (3,), capture=capture)
    assert not w_relu
    assert (g.n_nodes, g.n_edges) == (g_relu.n_nodes, g_relu.n_edges)
    assert (g.to_scipy() != g_relu.to_scipy()).nnz == 0
    if monotone:
        assert not w
    else:
        assert len(w) == 1 and f"activation {name} " in w[0], w


def test_non_monotone_function_warns_once_by_name():
    net = nn.Sequential(nn.Linear(3, 4), _Fn(torch.sin), nn.Linear(4, 4), _Fn(torch.sin),
                        nn.Linear(4, 2)).double().eval()
    _, w = _graph(net, (3,))
    assert len(w) == 1 and "activation sin " in w[0], w

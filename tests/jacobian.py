"""Test helper: a linear network's signed graph against its Jacobian.

For a network without activations, the sum over paths of the products of
edge weights, ``E_out^T (I - A^T)^{-1} E_in``, equals ``d out / d in``
(SPEC §1: edges are the multiply terms); every node block but the inputs is
reached by edges.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import spsolve

from deepglass.graph import SignedGraph


def path_sums(g: SignedGraph) -> np.ndarray:
    """``V[node, input]``: the sum over paths of the products of edge weights."""
    n = g.n_nodes
    A = sp.csc_matrix(g.to_scipy())
    E = np.zeros((n, len(g.input_index)))
    E[g.input_index, np.arange(len(g.input_index))] = 1
    return np.asarray(spsolve(sp.identity(n, format="csc") - A.T.tocsc(), E)).reshape(n, -1)


def outputs(y) -> list:
    """The output tensors of a forward's result, in order (tuples, dicts)."""
    if isinstance(y, torch.Tensor):
        return [y]
    return [t for v in (y.values() if isinstance(y, dict) else y) for t in outputs(v)]


def assert_is_jacobian(net, shape, capture="export") -> SignedGraph:
    """Capture ``net`` (float64) at ``shape`` (one sample's shape, or a list of
    them for several inputs) and check its graph's path sums against the
    Jacobian of every output with respect to all inputs (concatenated in the
    order of the graph's input blocks)."""
    torch.manual_seed(1)
    net = net.double().eval()
    shapes = [tuple(shape)] if isinstance(shape[0], int) else [tuple(s) for s in shape]
    g = SignedGraph.from_module(net, shapes[0] if len(shapes) == 1 else shapes,
                                dtype=torch.float64, capture=capture)
    V = path_sums(g)
    xs = tuple(torch.randn((1,) + s, dtype=torch.float64) for s in shapes)
    outs = outputs(net(*(x.clone() for x in xs)))
    assert len(outs) == len(g.outputs)
    for k, idx in enumerate(g.outputs.values()):
        J = torch.autograd.functional.jacobian(
            lambda *t: outputs(net(*(u.clone() for u in t)))[k], xs)
        J = torch.cat([j.reshape(len(idx), -1) for j in J], 1)
        np.testing.assert_allclose(V[idx], J.numpy(), rtol=1e-9, atol=1e-12)
    A = g.to_scipy()
    for nb in g.node_blocks[len(shapes):]:      # every layer's nodes are reached by its edges
        assert A[:, nb.offset:nb.stop].getnnz() > 0, nb.name
    return g

"""Values read twice by one op, and in-place writes into a value or a view of it.

Each net is linear (no activation), so its signed graph is checked against
its Jacobian: the sum over paths ``E_out^T (I - A^T)^{-1} E_in`` of the
explicit graph equals ``d out / d in`` (SPEC §1: edges are the multiply
terms), and no node block lacks its incoming edges.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from jacobian import assert_is_jacobian as _assert_is_jacobian, path_sums

from deepglass.errors import UnsupportedLayerError
from deepglass.graph import SignedGraph


class _Twice(nn.Module):
    """One op reads a layer's output twice."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.b = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        y = self.a(x)
        if self.how == "cat":
            return self.b(torch.cat([y, y], 1))
        if self.how == "stack":
            return self.b(torch.stack([y, y], 1).flatten(1, 2))
        if self.how == "add":
            return y + y
        if self.how == "tuple":
            return y, y
        return {"logits": y, "features": y}


@pytest.mark.parametrize("how", ["cat", "stack", "add", "tuple", "dict"])
@pytest.mark.parametrize("capture", ["export", "fx"])
def test_a_value_read_twice_by_one_op_is_one_node_block(how, capture):
    """``cat([y, y])``, ``return y, y``: ``y`` is one node block with its
    layer's edges once (they were attached twice to a second block, doubled,
    and the first block, an output, had no incoming edge)."""
    g = _assert_is_jacobian(_Twice(how), (2, 4, 4), capture)
    assert [nb.name for nb in g.node_blocks].count("a") == 1
    conv_a = 3 * 2 * 10 ** 2            # 3x3 taps inside a 4x4 map: 2+3+3+2 per axis
    assert g.n_edges == conv_a + (6 * 2 * 16 if how in ("cat", "stack") else 0)


class _Writes(nn.Module):
    """A layer's output changed in place, through a view of it or as a whole."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a = nn.Conv2d(2, 3, 1)
        self.c = nn.Conv2d(2, 3, 1)
        self.b = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        y = self.a(x)
        if self.how == "narrow-add":
            y.narrow(1, 1, 1).add_(self.c(x)[:, :1])
        elif self.how == "slice-add":
            y[:, 1:].add_(self.c(x)[:, 1:])
        elif self.how == "slice-mul":
            y[:, 1:].mul_(-2.0)
        elif self.how == "slice-neg":
            y[:, :2].neg_()
        elif self.how == "select-iadd":
            y[:, 1] += 2 * self.c(x)[:, 0]
        elif self.how == "assign":
            y[:, :1] = self.c(x)[:, 2:]
        elif self.how == "assign-constant":
            y[:, 2:] = 0.5
        elif self.how == "whole-add":
            y.add_(self.c(x))
        elif self.how == "chunk-mul":
            y.chunk(3, 1)[0].mul_(-1.0)
        elif self.how == "split-add":
            y.split([1, 2], 1)[1].add_(self.c(x)[:, 1:])
        elif self.how == "unbind-neg":
            y.unbind(1)[2].neg_()
        return self.b(y)


WRITES = ["narrow-add", "slice-add", "slice-mul", "slice-neg", "select-iadd", "assign",
          "assign-constant", "whole-add"]


@pytest.mark.parametrize("how", WRITES)
@pytest.mark.parametrize("capture", ["export", "core"])
def test_an_inplace_write_into_a_view_changes_the_value_viewed(how, capture):
    """``y[:, 1:].add_(z)``, ``y[:, :1] = z``, ``y[:, 1:].mul_(-2)``: the write
    changes ``y`` (the graph used ``y`` as it was: the branch ``z`` and sign
    flips were lost).  The functionalized program writes it as a scatter: a
    re-indexing whose written part is ``z``'s nodes, a constant written has no
    node."""
    g = _assert_is_jacobian(_Writes(how), (2, 3, 3), capture)
    assert ("c" in [nb.name for nb in g.node_blocks]) == (how in (
        "narrow-add", "slice-add", "select-iadd", "assign"))   # a whole: one block, SPEC §1


@pytest.mark.parametrize("how,written_out", [
    ("chunk-mul", lambda y, z: torch.cat([-y[:, :1], y[:, 1:]], 1)),
    ("split-add", lambda y, z: torch.cat([y[:, :1], y[:, 1:] + z[:, 1:]], 1)),
    ("unbind-neg", lambda y, z: torch.cat([y[:, :2], -y[:, 2:]], 1))])
@pytest.mark.parametrize("capture", ["export", "core"])
def test_an_inplace_write_into_a_chunk_split_or_unbind_view_changes_the_value(
        how, written_out, capture):
    """A write into one of the views ``chunk`` / ``split`` / ``unbind`` return
    (autograd forbids it, inference allows it) changes ``y`` as the same
    change written out of place does; it was lost (a sign flip dropped)."""
    torch.manual_seed(0)
    net = _Writes(how).double().eval()
    out_of_place = _Writes("none").double().eval()
    out_of_place.load_state_dict(net.state_dict())
    out_of_place.forward = lambda x: out_of_place.b(written_out(out_of_place.a(x),
                                                                out_of_place.c(x)))
    graphs = [SignedGraph.from_module(m, (2, 3, 3), dtype=torch.float64, capture=capture)
              .to_scipy().toarray() for m in (net, out_of_place)]
    assert graphs[0].shape == graphs[1].shape
    assert abs(graphs[0] - graphs[1]).max() < 1e-12


@pytest.mark.parametrize("how", ["narrow-add", "slice-add", "slice-mul"])
def test_the_fx_fallback_refuses_an_inplace_write_into_a_view(how):
    """The fx trace does not say how the write changes the viewed value: it is
    refused, naming the op, where it was silently ignored."""
    with pytest.raises(UnsupportedLayerError, match="in-place .* on a view"):
        SignedGraph.from_module(_Writes(how).eval(), (2, 3, 3), capture="fx")


def test_the_fx_fallback_sees_an_inplace_write_into_a_whole_value():
    _assert_is_jacobian(_Writes("whole-add"), (2, 3, 3), "fx")


class _Broadcast(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.d = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        m = self.c(x).mean((2, 3), keepdim=True)
        return self.d(m * torch.full((1, 3, 4, 4), 2.0, dtype=x.dtype))


def test_a_constant_factor_that_broadcasts_a_value_copies_its_elements():
    """``m * full((1, 3, 4, 4), 2)`` of a pooled ``m`` (1, 3, 1, 1): each element
    copied to 4x4 positions, times 2 (a factor of one number written out per
    element folds as one number only where it does not broadcast the value)."""
    _assert_is_jacobian(_Broadcast(), (2, 6, 6), "export")


class _TwoPools(nn.Module):
    """Two identical max pools of one value (timm's DLA trees), or one pool
    read twice; an in-place ReLU before them (a program that writes)."""

    def __init__(self, two: bool, inplace: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.two, self.c = two, nn.Conv2d(2, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=inplace)
        self.pa, self.pb = nn.MaxPool2d(2, 2), nn.MaxPool2d(2, 2)
        self.a, self.b = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 3, 1)

    def forward(self, x):
        y = self.act(self.c(x))
        p = self.pa(y)
        return self.a(p) + self.b(self.pb(y) if self.two else p)


@pytest.mark.parametrize("inplace", [True, False])
def test_identical_ops_on_one_value_are_one_node_block(inplace):
    """Two identical pools of one value compute one value: one node block
    read by both layers, the graph of the network that pools once (they were
    two blocks with the same incoming edges, a graph an exporter that merges
    identical ops would not give)."""
    two, one = (SignedGraph.from_module(_TwoPools(t, inplace).eval(), (2, 6, 6))
                for t in (True, False))
    assert [b.name for b in two.node_blocks] == [b.name for b in one.node_blocks]
    assert (two.n_nodes, two.n_edges) == (one.n_nodes, one.n_edges)
    assert (two.to_scipy() != one.to_scipy()).nnz == 0


def test_a_layer_called_twice_on_one_input_is_one_value():
    """``c(x) + c(x)``: one value added to itself, ``2 c(x)`` (the Jacobian),
    with the nodes of one call."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.d = nn.Conv2d(2, 3, 3), nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.d(self.c(x) + self.c(x))

    g = _assert_is_jacobian(Twice(), (2, 5, 5))
    assert g.n_nodes == 2 * 25 + 3 * 9 + 2 * 9


def test_identical_ops_merge_only_in_a_functional_program_and_not_random_ones():
    """The merge pass: deterministic ops with the same arguments merge; random
    ones do not; a program that writes into a value is refused by the pass
    (the capture functionalizes it first)."""
    from deepglass.graph.identical import identical_ops, merge_identical_ops, mutates

    def f(x):
        return torch.relu(x) + torch.relu(x) + torch.rand_like(x) + torch.rand_like(x)

    gm = torch.fx.symbolic_trace(f)
    assert identical_ops(gm.graph) == 1 and not mutates(gm.graph)
    assert merge_identical_ops(gm) == 1
    assert [n.target for n in gm.graph.nodes].count(torch.relu) == 1
    assert [n.target for n in gm.graph.nodes].count(torch.rand_like) == 2
    x = torch.randn(4)
    torch.manual_seed(0)
    want = f(x)
    torch.manual_seed(0)
    torch.testing.assert_close(gm(x), want)

    ep = torch.export.export(_TwoPools(True).eval(), (torch.randn(1, 2, 6, 6),), strict=False)
    gm = ep.module()
    assert mutates(gm.graph) and identical_ops(gm.graph) == 1
    with pytest.raises(ValueError, match="functional"):
        merge_identical_ops(gm)


def test_an_inplace_subtraction_subtracts():
    """``a(x).sub_(b(x))``: an in-place subtraction (it was read as an
    addition: ``sub_``'s op is not ``sub``); the graph is the Jacobian."""
    class Sub(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv1d(2, 3, 3), nn.Conv1d(2, 3, 3), nn.Conv1d(3, 2, 1)

        def forward(self, x):
            return self.c(self.a(x).sub_(self.b(x)))

    _assert_is_jacobian(Sub(), (2, 6))


class _CopyAfterRead(nn.Module):
    """``z = act(y)`` read before ``y.copy_(c(b(y)))`` overwrites ``y``: ``z``
    keeps the old value (the copy ran on the ids that ``z`` shares)."""

    def __init__(self, linear=False):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
        self.linear = linear

    def forward(self, x):
        y = self.a(x)
        w = self.b(y)
        z = y.clone() if self.linear else torch.relu(y)
        y.copy_(self.c(w))
        return z + y


def test_a_copy_into_a_value_leaves_what_was_read_from_it_before():
    """The graph of the ReLU net is the Jacobian of its twin without the
    ReLU, ``a + c b a``, column by column (autograd cannot differentiate
    through the overwritten value)."""
    torch.manual_seed(0)
    net = _CopyAfterRead().double().eval()
    twin = _CopyAfterRead(linear=True).double().eval()
    twin.load_state_dict(net.state_dict())
    g = SignedGraph.from_module(net, (2, 2, 2), dtype=torch.float64)
    V = path_sums(g)
    with torch.no_grad():
        base = twin(torch.zeros(1, 2, 2, 2, dtype=torch.float64)).reshape(-1)
        J = torch.stack([twin(e.reshape(1, 2, 2, 2)).reshape(-1) - base
                         for e in torch.eye(8, dtype=torch.float64)], 1)
    np.testing.assert_allclose(V[g.outputs["output"]], J.numpy(), rtol=1e-9, atol=1e-12)


class _Branches(nn.Module):
    """A multi-branch block (FastViT's MobileOne / RepMixer): a copy of ``x``
    rescaled by a batch norm, plus convolutions of ``x``, summed into ``out``
    in place, then ``x + ls * (out - bn2(x))``; ``x`` is a GELU's output."""

    def __init__(self, inplace):
        super().__init__()
        self.inplace = inplace
        self.stem, self.act = nn.Conv2d(2, 4, 3, padding=1), nn.GELU()
        self.conv1, self.conv3 = nn.Conv2d(4, 4, 1, groups=4), nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
        self.ls = nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.25]).view(4, 1, 1))
        self.head = nn.Conv2d(4, 3, 1)
        for bn in (self.bn1, self.bn2):
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(-1.0, 1.0)

    def forward(self, x):
        x = self.act(self.stem(x))
        out = self.conv1(x) + self.bn1(x)
        if self.inplace:
            out += self.conv3(x)
        else:
            out = out + self.conv3(x)
        return self.head(x + self.ls * (out - self.bn2(x)))


def test_copies_of_an_activations_output_add_into_one_rescaling(recwarn):
    """``x``, ``bn1(x)`` and ``-bn2(x)`` are rescalings of one function of the
    same nodes (a GELU's output): they add into one identity term of factor
    ``1 + ls (s1 - s2)`` (README: two rescalings of the same value add into
    one, no parallel edges), whether ``out`` is summed in place or not.  The
    sum of two copies lost their function (a copy of ``gelu(y)`` became one of
    nothing): in place, two parallel identity terms; out of place, a warning
    that a sum of different functions of ``x`` was taken for an activation."""
    import warnings

    torch.manual_seed(0)
    nets = [_Branches(inplace).eval() for inplace in (False, True)]
    nets[1].load_state_dict(nets[0].state_dict())
    graphs = []
    for net in nets:
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            graphs.append(SignedGraph.from_module(net, (2, 5, 5), dtype=torch.float64))
        assert [str(w.message) for w in got if "sum of elementwise" in str(w.message)] == []
    for g in graphs:
        kinds = [b.kind for b in g.edge_blocks if g.node_blocks[b.dst].name != "head"
                 and b.kind == "identity"]
        assert len(kinds) == 1
    assert abs(graphs[0].to_scipy() - graphs[1].to_scipy()).max() < 1e-12
    # the factor of the copy: 1 + ls (s1 - s2), per channel
    s1, s2 = (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
              for bn in (nets[0].bn1, nets[0].bn2))
    want = 1 + nets[0].ls.detach().double().reshape(-1) * (s1 - s2)
    ident = next(b for b in graphs[0].edge_blocks if b.kind == "identity")
    i, j, w = ident.coo()
    got = np.zeros(4)
    got[j // 25] = w                  # one weight per node; channel = node // 25
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)


def test_an_inplace_write_that_nothing_else_reads_is_not_traced_twice(monkeypatch):
    """``relu_`` / ``out += y`` on values nothing else reads are their
    out-of-place ops: the program is not functionalized (a second trace, as
    long as the export: timm's ghostnet_050 captured in 6.6 s, 3.2 s without,
    measured side by side), and the graph is the out-of-place net's."""
    calls = []
    real = torch.export.ExportedProgram.run_decompositions

    def counted(self, *args, **kwargs):
        calls.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.export.ExportedProgram, "run_decompositions", counted)

    class Net(nn.Module):
        def __init__(self, inplace):
            super().__init__()
            self.inplace = inplace
            self.a, self.b = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
            self.pool1, self.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)   # identical ops
            self.relu = nn.ReLU(inplace=inplace)

        def forward(self, x):
            y = self.relu(self.a(x))
            z = self.b(y)
            if self.inplace:
                z += y
            else:
                z = z + y
            return self.pool1(z) + self.pool2(z)

    torch.manual_seed(0)
    nets = [Net(inplace).eval() for inplace in (False, True)]
    nets[1].load_state_dict(nets[0].state_dict())
    A, B = (SignedGraph.from_module(n, (2, 6, 6)).to_scipy() for n in nets)
    assert calls == [] and A.shape == B.shape and abs(A - B).max() == 0

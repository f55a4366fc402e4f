"""Explicit-graph frustration solvers: Algorithm 1 (greedy), brute force, MILP.

Every expected value comes from an independent evaluation of
``eps(sigma) = 1/2 (1 - sigma^T As sigma / 1^T|As|1)`` (SPEC §2) on small graphs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from deepglass.errors import DeepglassError, TooLargeError
from deepglass.solve.exact import (
    _separate_cycles,
    brute_force,
    exact,
    milp_frustration,
)
from deepglass.solve.greedy import (
    check_greedy_memory,
    energy,
    greedy,
    greedy_memory_bytes,
    local_fields,
    paper_gauges,
    random_gauges,
)


# ---------------------------------------------------------------- helpers


def signed_dag(n: int, p: float, seed: int, integer: bool = False) -> sp.csr_matrix:
    """As = A + A^T of a random signed DAG (random topological order)."""
    rng = np.random.default_rng(seed)
    mask = np.triu(rng.random((n, n)) < p, 1)
    w = rng.integers(-3, 4, (n, n)).astype(float) if integer else rng.standard_normal((n, n))
    A = mask * w
    perm = rng.permutation(n)
    A = A[perm][:, perm]
    return sp.csr_matrix(A + A.T)


def conv_like(seed: int) -> sp.csr_matrix:
    """Input 1x3x3 -> 2x2 conv, 2 channels (shared weights) -> dense 8 -> 2: 19 nodes."""
    rng = np.random.default_rng(seed)
    n_in, n_c, n_out = 9, 8, 2
    n = n_in + n_c + n_out
    A = np.zeros((n, n))
    K = rng.standard_normal((2, 2, 2))
    for c in range(2):
        for y in range(2):
            for x in range(2):
                dst = n_in + c * 4 + y * 2 + x
                for a in range(2):
                    for b in range(2):
                        A[(y + a) * 3 + (x + b), dst] = K[c, a, b]
    A[n_in : n_in + n_c, n_in + n_c :] = rng.standard_normal((n_c, n_out))
    return sp.csr_matrix(A + A.T)


def naive_min(As) -> float:
    """Minimum of the explicit formula over all 2^n gauges."""
    D = As.toarray()
    T = np.abs(D).sum()
    if T == 0:
        return 0.0
    S = np.array(list(itertools.product([-1.0, 1.0], repeat=D.shape[0])))
    return float(np.min(0.5 * (1 - np.einsum("ri,ij,rj->r", S, D, S) / T)))


def explicit_eps(As, s) -> float:
    s = np.asarray(s, dtype=float)
    return float(0.5 * (1 - s @ (As @ s) / abs(As).sum()))


# ---------------------------------------------------------------- exact


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), p=st.floats(0.0, 1.0), seed=st.integers(0, 10**6),
       integer=st.booleans())
def test_brute_force_matches_naive_enumeration(n, p, seed, integer):
    As = signed_dag(n, p, seed, integer)
    r = brute_force(As)
    assert r.optimal and r.method == "brute-force"
    assert r.sigma.dtype == np.int8 and r.sigma.shape == (n,) and r.sigma[0] == 1
    assert r.energy == pytest.approx(naive_min(As), abs=1e-12)
    if As.nnz:
        assert r.energy == pytest.approx(explicit_eps(As, r.sigma), abs=1e-12)
    assert r.lower_bound == r.energy


@pytest.mark.parametrize("n,p,seed", [(8, 0.5, 0), (12, 0.35, 1), (16, 0.25, 2), (20, 0.2, 3)])
def test_milp_matches_brute_force(n, p, seed):
    As = signed_dag(n, p, seed)
    b = brute_force(As)
    m = milp_frustration(As, time_limit=30)
    assert m.optimal and m.method == "milp"
    assert m.energy == pytest.approx(b.energy, abs=1e-9)
    assert m.lower_bound == pytest.approx(b.energy, abs=1e-9)
    assert m.energy == pytest.approx(explicit_eps(As, m.sigma), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_milp_matches_brute_force_conv_like(seed):
    As = conv_like(seed)
    b = brute_force(As)
    for cut_rounds in (0, 50):  # plain formulation and with cycle cuts
        m = milp_frustration(As, time_limit=30, cut_rounds=cut_rounds)
        assert m.optimal
        assert m.energy == pytest.approx(b.energy, abs=1e-9)


def test_exact_dispatch_and_trivial_graphs():
    As = signed_dag(12, 0.4, 5)
    assert exact(As).method == "brute-force"
    r = exact(As, brute_force_max=5)
    assert r.method == "milp" and r.energy == pytest.approx(brute_force(As).energy, abs=1e-9)
    empty = sp.csr_matrix((6, 6))
    for res in (exact(empty), exact(empty, brute_force_max=0)):
        assert res.energy == 0.0 and res.optimal
    # a balanced graph (a tree) has zero frustration
    tree = signed_dag(10, 0.0, 0).tolil()
    for i in range(1, 10):
        w = (-1) ** i * (i + 0.5)
        tree[i - 1, i] = tree[i, i - 1] = w
    assert exact(tree.tocsr()).energy == pytest.approx(0.0, abs=1e-14)
    assert exact(tree.tocsr(), brute_force_max=0).energy == pytest.approx(0.0, abs=1e-14)
    with pytest.raises(DeepglassError):
        exact(As, brute_force_max=41)
    with pytest.raises(DeepglassError):
        exact(As, time_limit=0)


def test_milp_time_limit_reports_incumbent_and_bound():
    # a layered graph far too hard for 1 s: incumbent + proven bound
    rng = np.random.default_rng(0)
    sizes = [30, 30, 30]
    n = sum(sizes)
    A = np.zeros((n, n))
    A[0:30, 30:60] = rng.standard_normal((30, 30))
    A[30:60, 60:90] = rng.standard_normal((30, 30))
    As = sp.csr_matrix(A + A.T)
    r = milp_frustration(As, time_limit=1.0)
    assert r.energy == pytest.approx(explicit_eps(As, r.sigma), abs=1e-12)
    assert 0.0 <= r.lower_bound <= r.energy
    g = greedy(As, random_gauges(n, 4, 0))
    assert r.lower_bound <= g.energies.min() + 1e-12
    if not r.optimal:
        assert r.gap > 0


def test_cycle_cuts_are_valid_and_violated():
    As = conv_like(3)
    U = sp.triu(As, 1).tocoo()
    ei, ej, w = U.row.astype(np.int64), U.col.astype(np.int64), U.data
    neg = w < 0
    n, m = As.shape[0], len(w)
    edge_id = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(ei, ej))}
    rng = np.random.default_rng(0)
    f = rng.random(m) * 0.5  # a fractional point with few frustrated edges
    cuts = _separate_cycles(f, ei, ej, neg, n, edge_id, np.arange(n), 1000, set())
    assert cuts
    gauges = random_gauges(n, 200, 1).astype(float)
    frus = (np.sign(w)[None, :] != gauges[:, ei] * gauges[:, ej]).astype(float)  # (200, m)
    for cyc in cuts:
        es = np.array([e for e, _ in cyc])
        inf = np.array([b for _, b in cyc])
        # the edges form a closed walk through distinct nodes
        nodes = np.concatenate([ei[es], ej[es]])
        assert np.all(np.bincount(nodes) % 2 == 0)
        assert (inf.sum() + neg[es].sum()) % 2 == 1
        lhs = lambda x: np.sum(np.where(inf, 1 - x[..., es], x[..., es]), axis=-1)  # noqa: E731
        assert lhs(f) < 1.0  # violated by the fractional point
        assert np.all(lhs(frus) >= 1.0)  # valid for every gauge


# ---------------------------------------------------------------- greedy


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 14), p=st.floats(0.1, 1.0), seed=st.integers(0, 10**6))
def test_greedy_local_minimum_above_exact(n, p, seed):
    As = signed_dag(n, p, seed)
    r = greedy(As, random_gauges(n, 3, seed))
    assert r.sigma.dtype == np.int8 and r.sigma.shape == (3, n)
    assert np.all(r.local_min)
    h = local_fields(As, r.sigma)
    assert np.all(h >= -r.tol)
    if As.nnz:
        for k in range(3):
            assert r.energies[k] == pytest.approx(explicit_eps(As, r.sigma[k]), abs=1e-12)
    assert np.all(r.energies >= brute_force(As).energy - 1e-12)


def test_greedy_trajectory_is_algorithm_1():
    As = signed_dag(40, 0.2, 11)
    s0 = random_gauges(40, 2, 3)
    rec = greedy(As, s0, record=True)
    fast = greedy(As, s0)
    np.testing.assert_array_equal(rec.sigma, fast.sigma)
    np.testing.assert_array_equal(rec.flips, fast.flips)
    for r in range(2):
        traj = rec.trajectory[r]
        assert len(traj) == rec.flips[r] > 0
        s = s0[r].astype(float).copy()
        prev = explicit_eps(As, s)
        for node, field, e in traj[["node", "field", "energy"]].itertuples(index=False):
            h = s * (As @ s)
            assert h[node] == pytest.approx(h.min(), abs=1e-12)  # the most negative field
            assert field == pytest.approx(h[node], abs=1e-12) and field < 0
            s[node] = -s[node]
            now = explicit_eps(As, s)
            assert now == pytest.approx(e, abs=1e-12)
            assert now < prev  # every flip lowers the energy
            assert now - prev == pytest.approx(2 * field / abs(As).sum(), abs=1e-12)
            prev = now
        np.testing.assert_array_equal(s, rec.sigma[r])


def test_greedy_ties_lowest_index_and_max_flips():
    # path 0-1-2-3-4 with unit negative couplings, start all +1: fields -1,-2,-2,-2,-1
    n = 5
    A = sp.diags([-np.ones(n - 1)], [1], shape=(n, n))
    As = (A + A.T).tocsr()
    r = greedy(As, np.ones(n, dtype=np.int8), record=True)
    # flip 1 (lowest index of the -2 ties) -> fields 1,2,0,-2,-1 -> flip 3 -> all >= 0
    assert list(r.trajectory[0]["node"]) == [1, 3]
    assert r.energies[0] == pytest.approx(0.0)
    np.testing.assert_array_equal(r.sigma[0], [1, -1, 1, -1, 1])
    # stopping after k flips reproduces the first k steps of the trajectory
    As = signed_dag(30, 0.3, 4)
    s0 = random_gauges(30, 1, 9)
    full = greedy(As, s0, record=True)
    e = full.trajectory[0]["energy"].to_numpy()
    for k in range(full.flips[0]):
        part = greedy(As, s0, max_flips=k)
        assert part.flips[0] == k and not part.local_min[0]
        start = explicit_eps(As, s0[0]) if k == 0 else e[k - 1]
        assert part.energies[0] == pytest.approx(start, abs=1e-12)
    assert greedy(As, s0, max_flips=int(full.flips[0])).local_min[0]


def test_greedy_deterministic_and_replicas_independent():
    As = signed_dag(60, 0.1, 2)
    s0 = paper_gauges(60, 6, seed=5, flips=1000)
    a, b = greedy(As, s0), greedy(As, s0)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    np.testing.assert_array_equal(a.energies, b.energies)
    single = greedy(As, s0[4])
    np.testing.assert_array_equal(single.sigma[0], a.sigma[4])
    t = a.to_frame()
    assert list(t.columns) == ["replica", "energy", "flips", "local_min"] and len(t) == 6
    assert a.best_energy == t.energy.min()


def test_greedy_accepts_dense_and_int64_indices():
    As = signed_dag(15, 0.4, 8)
    s0 = random_gauges(15, 2, 0)
    ref = greedy(As, s0)
    B = As.copy()
    B.indices = B.indices.astype(np.int64)
    B.indptr = B.indptr.astype(np.int64)
    np.testing.assert_array_equal(greedy(B, s0).sigma, ref.sigma)
    np.testing.assert_array_equal(greedy(As.toarray(), s0).sigma, ref.sigma)


def test_greedy_rejects_bad_input():
    As = signed_dag(6, 0.5, 0)
    s0 = random_gauges(6, 1, 0)
    with pytest.raises(DeepglassError, match="symmetric"):
        greedy(sp.triu(As).tocsr(), s0)
    with pytest.raises(DeepglassError, match="diagonal"):
        greedy(As + sp.eye(6), s0)
    with pytest.raises(DeepglassError, match="shape"):
        greedy(As, random_gauges(5, 1, 0))
    with pytest.raises(DeepglassError, match=r"\+1 and -1"):
        greedy(As, np.zeros((1, 6)))
    with pytest.raises(DeepglassError, match="square"):
        greedy(sp.csr_matrix((3, 4)), np.ones(3))


# ---------------------------------------------------------------- gauges & memory


def test_random_gauges():
    g = random_gauges(1000, 3, 42)
    assert g.dtype == np.int8 and g.shape == (3, 1000)
    assert set(np.unique(g)) == {-1, 1}
    np.testing.assert_array_equal(g, random_gauges(1000, 3, 42))
    assert not np.array_equal(g, random_gauges(1000, 3, 43))
    assert abs(g.mean()) < 0.1  # 3000 fair coins: sd 0.018


def test_paper_gauges_parity():
    n, R, flips, seed = 50, 3, 777, 7
    g = paper_gauges(n, R, seed, flips=flips)
    assert g.dtype == np.int8 and g.shape == (R, n)
    # replay the single-node gauge flips one by one on the identity gauge
    rng = np.random.default_rng(seed)
    for r in range(R):
        s = np.ones(n, dtype=np.int8)
        for i in rng.integers(0, n, size=flips):
            s[i] = -s[i]
        np.testing.assert_array_equal(g[r], s)
    assert np.all(paper_gauges(n, 2, 0, flips=0) == 1)
    assert np.all((paper_gauges(n, 4, 0, flips=1) == -1).sum(axis=1) == 1)
    # many flips: each node flipped with probability 1/2 (1 - (1-2/n)^flips) ~ 1/2
    big = paper_gauges(2000, 2, 1, flips=10**5)
    assert abs((big == -1).mean() - 0.5) < 0.03
    with pytest.raises(DeepglassError):
        paper_gauges(10, 0, 0)


def test_memory_estimate_and_refusal():
    # 10 nodes, 30 stored entries, 2 replicas on 1 thread:
    # (4+8)*11 + 30*(8+4) + 1*24*10 + 2*10
    assert greedy_memory_bytes(10, 30, 2, n_threads=1) == 132 + 360 + 240 + 20
    big = greedy_memory_bytes(10**9, 2 * 10**10, 80)
    assert big > 2 * 10**10 * 16
    with pytest.raises(TooLargeError, match=r"needs \d+\.\d\d GB") as exc:
        check_greedy_memory(10**9, 2 * 10**10, 80, max_bytes=10**9)
    assert "1.00 GB are allowed" in str(exc.value)
    assert issubclass(TooLargeError, DeepglassError)
    As = signed_dag(20, 0.3, 0)
    with pytest.raises(TooLargeError, match="GB"):
        greedy(As, random_gauges(20, 1, 0), max_bytes=100)


def test_energy_helper_matches_formula():
    As = signed_dag(9, 0.5, 3)
    S = random_gauges(9, 4, 1)
    e = energy(As, S)
    for k in range(4):
        assert e[k] == pytest.approx(explicit_eps(As, S[k]), abs=1e-14)
    # fraction of |weight| on frustrated edges (SPEC §2)
    U = sp.triu(As, 1).tocoo()
    s = S[0].astype(float)
    frus = np.sign(U.data) != s[U.row] * s[U.col]
    assert e[0] == pytest.approx(np.abs(U.data)[frus].sum() / np.abs(U.data).sum(), abs=1e-14)


def test_borrowing_helpers_compile_without_refcounts_and_agree():
    """The per-update helpers are compiled without NRT reference counting
    where numba knows the option (a silent fallback would halve the kernels'
    speed), and a helper so compiled computes what the plain one does."""
    import numba
    from numba.core.cpu import CPUTargetOptions

    from deepglass._numba import njit_borrowing
    from deepglass.solve import compiled_kernels, greedy_kernels

    if hasattr(CPUTargetOptions, "_nrt"):
        for fn in (compiled_kernels._place, compiled_kernels._flip, compiled_kernels._collect,
                   compiled_kernels._run,
                   greedy_kernels._sift_down, greedy_kernels._heap_fix):
            assert fn.targetoptions.get("_nrt") is False, fn.__name__

    def axpy(a, x, y):
        for i in range(x.shape[0]):
            y[i] += a * x[i]

    x = np.arange(5.0)
    y1, y2 = np.ones(5), np.ones(5)
    njit_borrowing(axpy)(2.0, x, y1)
    numba.njit(axpy)(2.0, x, y2)
    np.testing.assert_array_equal(y1, 1.0 + 2.0 * x)
    np.testing.assert_array_equal(y1, y2)


def test_bucket_of_reads_frexp_from_the_bits():
    """The compiled descent's bucket index (exponent and leading mantissa bits
    read from the float's bits) equals the ``frexp`` definition, on random
    magnitudes, powers of two, bucket edges and values outside the range."""
    from numba import njit

    from deepglass._numba import float_bits
    from deepglass.solve.compiled_kernels import (_EMAX, _EMIN, _NBK, _NSUB, _bucket_edges,
                                                  _bucket_of)

    @njit
    def bits(a):
        return float_bits(a)

    def reference(a):
        m, e = np.frexp(a)
        if e < _EMIN:
            return 0
        if e > _EMAX:
            return _NBK - 1
        return (e - _EMIN) * _NSUB + int((m - 0.5) * (2 * _NSUB))

    rng = np.random.default_rng(0)
    up = _bucket_edges()
    values = np.concatenate([
        np.exp(rng.uniform(-50, 30, 2000)), np.ldexp(1.0, np.arange(-80, 50)),
        up[:-1], np.nextafter(up[:-1], 0), [1e-300, 5e-324, 1e300]])
    for a in values:
        assert bits(a) == np.float64(a).view(np.int64)
        k = _bucket_of(a)
        assert k == reference(a), a
        assert a <= up[k]                       # a node's |h| is below its bucket's edge
    assert _bucket_of(np.inf) == _NBK - 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_scaled_lanes_is_the_scalar_update(dtype):
    """The compiled descent's vector update equals the scalar loop lane by lane
    (float32 ``d * s`` first, as numba rounds ``d * s[j] * w[k]``), leaves the
    lanes past ``count`` as they were and flags exactly the live lanes that
    went negative."""
    from numba import njit

    from deepglass._numba import LANES, add_scaled_lanes

    @njit
    def lanes(m, s, base, w, wbase, d, count):
        return add_scaled_lanes(m, s, base, w, wbase, d, count)

    rng = np.random.default_rng(1)
    for count in range(LANES + 1):
        m = rng.uniform(-0.5, 2.0, 3 * LANES).astype(dtype)
        s = rng.choice([-1.0, 1.0], 3 * LANES).astype(np.float32)
        w = rng.standard_normal(3 * LANES).astype(dtype)
        d = np.float32(rng.choice([-2.0, 2.0]))
        base, wbase = int(rng.integers(0, LANES)), int(rng.integers(0, 2 * LANES))
        expect = m.copy()
        live = slice(base, base + count)
        expect[live] += (d * s[live]).astype(dtype) * w[wbase:wbase + count]
        neg = lanes(m, s, base, w, wbase, d, count)
        np.testing.assert_array_equal(m, expect)
        assert neg == sum(1 << k for k in range(count) if expect[base + k] < 0)


def _parallel_edge_nets():
    """Two nets with parallel edges of opposite sign: a border node read twice
    under reflect padding, and ``y = W x + x`` with ``W`` one layer."""
    import torch
    import torch.nn as nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(3, 3), nn.Linear(3, 2)
            with torch.no_grad():
                self.fc.weight.copy_(-2.0 * torch.eye(3) + 0.3 * torch.randn(3, 3))

        def forward(self, x):
            return self.out(torch.relu(self.fc(x) + x))

    torch.manual_seed(3)
    reflect = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect", bias=False),
                            nn.ReLU(), nn.Flatten(), nn.Linear(9, 2))
    return [(reflect, (1, 3, 3)), (Residual(), (3,))]


@pytest.mark.parametrize("which", [0, 1])
def test_explicit_solvers_count_parallel_edges_apart(which):
    """eps is a fraction of the edges' |weight|, one edge per multiply term
    (SPEC §1-§2), as the matrix-free energy and the frustrated-edge table
    count them.  The explicit solvers work on ``to_scipy``, where parallel
    edges of opposite sign sum into one smaller entry: their energies are
    restated on the graph's normalizer, so every method reports the energy of
    its own gauge, and ``exact`` the brute-force minimum (before, ``exact``
    certified 0.151 on the reflect-padded net whose ground state is 0.238)."""
    import torch

    import deepglass
    from deepglass.experiments.active import active_frustration
    from deepglass.graph import SignedGraph

    net, shape = _parallel_edge_nets()[which]
    g = SignedGraph.from_module(net, shape, dtype=torch.float64)
    assert abs(g.to_scipy_sym()).sum() < 0.9 * g.abs_total()     # they cancel in the matrix
    # every gauge (up to a global flip): sigma^T As sigma is the same on the
    # summed matrix; the normalizer is the multiply terms' |weight|
    bits = (np.arange(2 ** (g.n_nodes - 1))[:, None] >> np.arange(g.n_nodes - 1)) & 1
    S = np.hstack([np.ones((len(bits), 1)), 1.0 - 2.0 * bits])
    quad = np.einsum("ri,ri->r", S, (g.to_scipy_sym() @ S.T).T)
    ground = 0.5 * (1.0 - quad.max() / g.abs_total())
    worst = torch.tensor(S[np.argmin(quad)], dtype=torch.float64)
    assert float(g.energy(worst)) == pytest.approx(0.5 * (1.0 - quad.min() / g.abs_total()))
    for method in ("exact", "greedy", "descent"):
        res = deepglass.frustration(g, method=method, replicas=16, seed=0)
        own = float(g.energy(torch.tensor(res.sigma, dtype=torch.float64)))
        table = res.frustrated["frustrated_weight"].sum() / res.frustrated["abs_weight"].sum()
        assert res.frustration == pytest.approx(own, abs=1e-12)
        assert table == pytest.approx(own, abs=1e-12)
        assert res.frustration >= ground - 1e-12
    exact = deepglass.frustration(g, method="exact")
    assert exact.frustration == pytest.approx(ground, abs=1e-12)
    # an active subnetwork's certified delta_x too (every node active: the graph)
    got = active_frustration(g, method="exact")
    assert got["delta_x"] == pytest.approx(ground, abs=1e-12)
    assert got["lower_bound"] <= got["delta_x"] + 1e-12

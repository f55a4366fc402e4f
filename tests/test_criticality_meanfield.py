"""Mean field of a weighted net (SPEC §7): Curie-Weiss closed forms, matrix-free
spectra against explicit eigensolvers, the fixed-point equation, linear response
against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg as spla
import torch
import torch.nn as nn

from deepglass.criticality import couplings
from deepglass.criticality import curves as mfc
from deepglass.criticality import meanfield as mf
from deepglass.errors import DeepglassError
from deepglass.graph import SignedGraph


def _ferro_random(n=40, seed=0, bias=1.0):
    """Symmetric Gaussian couplings with a positive mean (a ferromagnet with disorder)."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    return bias + (G + G.T) / np.sqrt(2)


def _tiny_graph(dtype=torch.float64):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))
    return SignedGraph.from_module(net, (1, 6, 6), dtype=dtype)


# -- T_c --------------------------------------------------------------------------------
@pytest.mark.parametrize("J", [0.5, 1.0, 2.7])
def test_curie_weiss_critical_temperature(J):
    W = mf.curie_weiss(80, J)
    assert abs(mf.critical_temperature(W) - J) < 1e-6
    assert abs(mf.critical_temperature(scipy.sparse.csr_matrix(W)) - J) < 1e-6
    op = spla.aslinearoperator(W)
    assert abs(mf.critical_temperature(op) - J) < 1e-6
    assert abs(mf.critical_temperature(torch.tensor(W)) - J) < 1e-6
    assert abs(mf.critical_temperature(mf.curie_weiss(5, J)) - J) < 1e-12   # dense path


def test_matrix_free_lambda_max_on_signed_graph_equals_eigvalsh():
    g = _tiny_graph(torch.float64)
    As = g.to_scipy_sym().toarray()
    ref = scipy.linalg.eigvalsh(As)[-1]
    assert g.n_nodes > couplings.DENSE_EIG_LIMIT            # Lanczos, not the dense fallback
    C = mf.coupling_operator(g, explicit_edges=0)     # matrix-free: sym_matvec
    assert C.kind == "graph" and C._explicit is None
    lam = mf.lambda_max(C)
    assert abs(lam - ref) <= 1e-9 * abs(ref)
    assert C.n_matvec > 0
    assert abs(mf.critical_temperature(g) - ref / g.n_nodes) <= 1e-9 * abs(ref)   # explicit CSR
    # the operator is As, column for column
    np.testing.assert_allclose(C.explicit(), As, atol=1e-12)
    # float32 graphs: ~10 eps relative accuracy
    g32 = _tiny_graph(torch.float32)
    ref32 = scipy.linalg.eigvalsh(g32.to_scipy_sym().toarray().astype(np.float64))[-1]
    assert abs(mf.lambda_max(mf.coupling_operator(g32, explicit_edges=0)) - ref32) <= 1e-5 * abs(ref32)


def test_bipartite_layer_block():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((17, 9))
    B = mf.bipartite_coupling(w)
    dense = np.block([[np.zeros((17, 17)), w], [w.T, np.zeros((9, 9))]])
    np.testing.assert_allclose(B @ np.eye(26), dense, atol=1e-12)
    lam = mf.lambda_max(B)
    np.testing.assert_allclose(lam, scipy.linalg.eigvalsh(dense)[-1], rtol=1e-10)
    np.testing.assert_allclose(lam, np.linalg.svd(w, compute_uv=False)[0], rtol=1e-10)
    lin = nn.Linear(9, 4)
    Bl = mf.layer_coupling(lin)
    wt = lin.weight.detach().double().numpy().T
    np.testing.assert_allclose(mf.lambda_max(Bl, method="dense"),
                               np.linalg.svd(wt, compute_uv=False)[0], rtol=1e-10)
    with pytest.raises(DeepglassError):
        mf.layer_coupling(nn.Conv2d(1, 1, 3))
    with pytest.raises(DeepglassError):
        mf.bipartite_coupling(np.zeros(5))


def test_dense_and_lanczos_agree_and_bad_couplings_are_refused():
    W = _ferro_random(50, seed=3)
    assert abs(mf.lambda_max(W, method="dense") - mf.lambda_max(W, method="lanczos")) < 1e-9
    with pytest.raises(DeepglassError, match="symmetric"):
        mf.coupling_operator(np.triu(W))
    with pytest.raises(DeepglassError, match="square"):
        mf.coupling_operator(np.ones((3, 4)))
    with pytest.raises(DeepglassError, match="NaN"):
        mf.coupling_operator(np.full((3, 3), np.nan))
    with pytest.raises(DeepglassError, match="positive"):
        mf.solve_mean_field(W, T=0.0)


# -- the mean-field equations -----------------------------------------------------------
def test_curie_weiss_magnetization_equals_scalar_equation():
    J, n = 1.0, 30
    W = mf.curie_weiss(n, J)
    for T, h in [(0.5, 0.0), (0.9, 0.0), (0.8, 0.05), (1.3, 0.1), (1.3, 0.0)]:
        sol = mf.solve_mean_field(W, T, h)
        # m = tanh((J m + h)/T): the largest root (the stable, lowest-f one for h >= 0)
        g = lambda m: m - np.tanh((J * m + h) / T)  # noqa: E731
        ordered = T < J or h > 0
        ref = scipy.optimize.brentq(g, 1e-9, 1.0) if ordered else 0.0
        assert sol.converged
        assert abs((sol.m if h > 0 else abs(sol.m)) - ref) < 1e-9
        np.testing.assert_allclose(sol.V, sol.V[0], atol=1e-9)   # uniform state


def test_fixed_point_satisfies_its_equation_and_free_energy():
    W = _ferro_random(40, seed=2, bias=0.3)
    n = W.shape[0]
    Tc = mf.critical_temperature(W)
    for T, h in [(0.6 * Tc, 0.0), (0.95 * Tc, 0.02), (1.5 * Tc, 0.1)]:
        sol = mf.solve_mean_field(W, T, h)
        resid = sol.V - np.tanh((W @ sol.V / n + h) / T)
        assert sol.converged and np.max(np.abs(resid)) < 1e-10
        assert abs(sol.residual - np.max(np.abs(resid))) < 1e-12
        # free energy by its formula (SPEC §7)
        u = (W @ sol.V / n + h) / T
        f = sol.V @ W @ sol.V / (2 * n * n) - (T / n) * np.sum(np.log(np.cosh(u)))
        assert abs(sol.f - f) < 1e-12
        assert abs(mf.free_energy(W, sol.V, T, h) - f) < 1e-12
        # the kept solution has the least free energy among converged candidates
        c = sol.candidates[sol.candidates.converged]
        assert sol.f <= c.f.min() + 1e-12
        # stationarity: df/dV = (W/N^2)(V - tanh(u)) = 0 at the fixed point
        eps = 1e-6
        e = np.random.default_rng(0).standard_normal(n)
        df = (mf.free_energy(W, sol.V + eps * e, T, h) - mf.free_energy(W, sol.V - eps * e, T, h)) / (2 * eps)
        assert abs(df) < 1e-7
    # below T_c at h = 0 the ordered state beats the paramagnet
    sol = mf.solve_mean_field(W, 0.6 * Tc, 0.0)
    assert sol.q > 0.1 and sol.f < mf.free_energy(W, np.zeros(n), 0.6 * Tc, 0.0)


def test_susceptibility_equals_finite_difference():
    W = _ferro_random(40, seed=5, bias=0.5)
    Tc = mf.critical_temperature(W)
    for T, h in [(0.7 * Tc, 0.05), (1.2 * Tc, 0.0), (1.05 * Tc, 0.01)]:
        sol = mf.solve_mean_field(W, T, h)
        chi = mf.susceptibility(W, sol)
        dh = 1e-6
        mp = mf.solve_mean_field(W, T, h + dh, starts=(), V0=sol.V).m
        mm = mf.solve_mean_field(W, T, h - dh, starts=(), V0=sol.V).m
        fd = (mp - mm) / (2 * dh)
        assert chi > 0
        assert abs(chi - fd) <= 1e-5 * abs(fd)


def test_graph_couplings_solve_like_the_explicit_matrix():
    g = _tiny_graph(torch.float64)
    As = g.to_scipy_sym()
    T = 0.5 * mf.critical_temperature(As)
    a = mf.solve_mean_field(mf.coupling_operator(g, explicit_edges=0), T, 0.01)
    b = mf.solve_mean_field(As, T, 0.01)
    assert a.converged and b.converged
    assert abs(a.f - b.f) < 1e-10
    np.testing.assert_allclose(a.V, b.V, atol=1e-8)
    assert abs(mf.susceptibility(mf.coupling_operator(g, explicit_edges=0), a) - mf.susceptibility(As, b)) < 1e-6 * abs(mf.susceptibility(As, b))


# -- curves and exponents ---------------------------------------------------------------
def test_curie_weiss_critical_exponents():
    J = 1.5
    W = mf.curie_weiss(60, J)
    Tc = mf.critical_temperature(W)
    T = mfc.default_grid(Tc, n_t=10, t_min=1e-3, t_max=3e-2, n_broad=4)
    curves = mfc.mean_field_curves(W, T, fields=(0.0, 0.1))
    assert curves.converged.all() and set(curves.h) == {0.0, 0.1}
    ex = mfc.critical_exponents(curves, Tc).set_index("exponent")
    assert abs(ex.loc["beta", "value"] - 0.5) < 0.05 * 0.5
    assert abs(ex.loc["beta_q", "value"] - 0.5) < 0.05 * 0.5
    assert abs(-ex.loc["gamma", "slope"] - 1.0) < 0.05           # chi ~ |t|^-1 above T_c
    assert abs(ex.loc["gamma_below", "value"] - 1.0) < 0.05
    # above T_c, chi = 1 / (T - J) exactly (Curie-Weiss law)
    above = curves[(curves.h == 0) & (curves["T"] > Tc)]
    np.testing.assert_allclose(above.chi, 1.0 / (above["T"] - J), rtol=1e-8)
    # below T_c, |m| grows as T falls; a field aligns it
    below = curves[(curves.h == 0) & (curves["T"] < Tc)].sort_values("T")
    assert np.all(np.diff(below.abs_m) < 0)
    assert (curves[curves.h == 0.1].m > 0).all()


def test_exponent_window_without_points_gives_nan():
    curves = mfc.mean_field_curves(mf.curie_weiss(20), [0.5, 1.5], with_chi=False)
    ex = mfc.critical_exponents(curves, 1.0)
    assert ex["value"].isna().all() and (ex["n_points"] == 0).all()
    with pytest.raises(DeepglassError):
        mfc.default_grid(-1.0)


def test_staggered_susceptibility_is_gauge_invariant():
    # W = S W0 S with S = diag(e) (a gauge transform): same T_c, the ordered
    # pattern is e, and chi_u of W equals the uniform chi of W0, while the
    # uniform chi of W no longer diverges at T_c (SPEC §7 on a signed network)
    J, n = 1.0, 40
    W0 = mf.curie_weiss(n, J)
    e = np.where(np.random.default_rng(3).random(n) < 0.5, -1.0, 1.0)
    W = e[:, None] * W0 * e[None, :]
    assert abs(mf.critical_temperature(W) - J) < 1e-9
    np.testing.assert_array_equal(mf.ordered_pattern(W) * mf.ordered_pattern(W)[0], e * e[0])
    T = [0.7, 0.99, 1.01, 1.3]
    a = mfc.mean_field_curves(W0, T, fields=(0.0,))
    b = mfc.mean_field_curves(W, T, fields=(0.0,))
    np.testing.assert_allclose(b.chi_u, a.chi, rtol=1e-8)
    np.testing.assert_allclose(a.chi_u, a.chi, rtol=1e-12)          # ferromagnet: e = 1
    np.testing.assert_allclose(np.abs(b.m_u), a.abs_m, atol=1e-9)
    assert b.chi.max() < 0.1 * a.chi.max()
    sol = mf.solve_mean_field(W, 0.8, 0.0)
    with pytest.raises(DeepglassError):
        mf.susceptibility(W, sol, direction=np.ones(3))


# -- no transition: zero couplings, lambda_max = 0 up to round-off ------------------------
@pytest.mark.parametrize("make", [lambda n: np.zeros((n, n)),
                                  lambda n: scipy.sparse.csr_matrix((n, n)),
                                  lambda n: spla.aslinearoperator(np.zeros((n, n)))])
def test_zero_couplings_have_no_transition(make):
    # W = 0: every vector is an eigenvector of 0, T_c = 0 (ARPACK raised
    # "starting vector is zero" for N > 12)
    for n in (5, 20, 30):
        assert mf.lambda_max(make(n)) == 0.0
        assert mf.critical_temperature(make(n)) == 0.0
    with pytest.raises(DeepglassError, match="no mean-field transition"):
        mfc.default_grid(mf.critical_temperature(make(20)))


@pytest.mark.parametrize("n", [5, 20, 300])
def test_round_off_lambda_max_is_zero(n):
    # W = -1 1^T has eigenvalues -N and 0 (N - 1 times): exact lambda_max = 0, which
    # the eigensolvers leave as +-1e-15 (it gave a 'transition' at T_c ~ 1e-34)
    W = -np.ones((n, n))
    for w in (W, scipy.sparse.csr_matrix(W), spla.aslinearoperator(W)):
        assert mf.lambda_max(w) == 0.0
    # a genuine small lambda_max is kept: diag(-1, ..., -1, 1e-9)
    d = -np.ones(n)
    d[-1] = 1e-9
    assert abs(mf.lambda_max(np.diag(d)) - 1e-9) < 1e-14       # ~eps ||W||


@pytest.mark.parametrize("J", [1.0, 1e-12, 1e-14, 3e-200])
def test_default_grid_scales_with_T_c(J):
    # mean field depends only on T / T_c (W -> c W, T -> c T), so must the grid:
    # rounding to 15 absolute decimals collapsed it for T_c < 1e-13 (14 points
    # instead of 36, nearest |t| 0.1, every exponent NaN)
    ref = mfc.default_grid(1.0)
    g = mfc.default_grid(J)
    assert g.size == ref.size == 36
    np.testing.assert_allclose(g / J, ref, rtol=1e-12)
    assert np.min(np.abs(g / J - 1)) == pytest.approx(1e-3, rel=1e-9)
    if J >= 1e-14:
        W = mf.curie_weiss(30, J)
        Tc = mf.critical_temperature(W)
        assert Tc == pytest.approx(J, rel=1e-9)
        ex = mfc.critical_exponents(mfc.mean_field_curves(W, mfc.default_grid(Tc), fields=[0.0]), Tc)
        v = dict(zip(ex["exponent"], ex["value"]))
        assert abs(v["beta"] - 0.5) < 0.01 and abs(v["gamma"] - 1.0) < 0.01


def test_complex_couplings_are_refused():
    # the imaginary part was dropped with a ComplexWarning: 1j * 11^T gave T_c = 0
    for W in (1j * np.ones((5, 5)), scipy.sparse.csr_matrix(1j * np.eye(20)),
              torch.ones(5, 5, dtype=torch.complex64), [[1j, 0], [0, 1]]):
        with pytest.raises(DeepglassError, match="must be real"):
            mf.critical_temperature(W)


@pytest.mark.parametrize("call, msg", [
    (lambda W: mf.solve_mean_field(W, "x"), "temperature T must be a number"),
    (lambda W: mf.solve_mean_field(W, 0.0), "temperature T must be positive"),
    (lambda W: mf.solve_mean_field(W, 1.0, None), "field h must be a number"),
    (lambda W: mf.solve_mean_field(W, 1.0, max_iter=0), "max_iter must be an integer >= 1"),
    (lambda W: mf.solve_mean_field(W, 1.0, seed=-1), "seed must be a non-negative integer"),
    # a solution of other couplings broadcast silently or raised ValueError
    (lambda W: mf.susceptibility(W[:3, :3], mf.solve_mean_field(W, 1.0)), "solved on 5 units"),
    (lambda W: mf.susceptibility(W, mf.solve_mean_field(W, 1.0), tol=-1), "tol must be positive"),
    (lambda W: mf.susceptibility(W, None), "sol must be a MeanFieldSolution"),
    (lambda W: mf.critical_temperature(torch.nn.Linear(3, 3)), "a network's couplings are its "
                                                               "graph's"),
    (lambda W: mfc.mean_field_curves(W, []), "at least one temperature"),
    (lambda W: mfc.mean_field_curves(W, [1.0], [float("nan")]), "field must be finite"),
    (lambda W: mfc.default_grid(1.0, n_t=-1), "n_t must be a non-negative integer"),
    (lambda W: mfc.default_grid(1.0, t_min=0.5, t_max=0.1), "need 0 < t_min <= t_max"),
    (lambda W: mfc.critical_exponents(None, 1.0), "DataFrame of mean_field_curves"),
    # accepted before: f = 0 at T = -1, NaN at T = 0, NaN starts replaced by "up" silently,
    # a negative seed; an AttributeError / TypeError / numpy error from deep inside
    (lambda W: mf.free_energy(W, np.zeros(5), -1.0), "T must be positive and finite"),
    (lambda W: mf.free_energy(W, np.zeros(4), 1.0), r"V must be finite, of shape \(5,\)"),
    (lambda W: mf.solve_mean_field(W, 1.0, V0=np.full(5, np.nan)), "V0 must be finite"),
    (lambda W: mf.lambda_max(W, seed=-1), "seed must be a non-negative integer"),
    (lambda W: mf.top_eigenpair(W), "C must be Couplings"),
    (lambda W: mf.curie_weiss(2.5), "n must be an integer >= 1, got 2.5"),
    # float('x'); NaN weights failed inside NumPy's eigensolver; explicit_edges=-1 taken
    (lambda W: couplings.bipartite_coupling("x"), "^w must be a 2-d matrix of numbers, got str"),
    (lambda W: mf.lambda_max(couplings.bipartite_coupling(np.full((2, 3), np.nan))),
     r"^w \(the layer's weights\) contains NaN or infinite entries$"),
    (lambda W: couplings.bipartite_coupling(scipy.sparse.csr_matrix([[np.inf, 1.0]])),
     "w .* contains NaN or infinite"),
    (lambda W: mf.coupling_operator(W, explicit_edges=-1), "explicit_edges must be an integer >= "
                                                           "0, got -1"),
])
def test_bad_arguments_are_one_line_errors(call, msg):
    # they escaped as ValueError / TypeError from float() and comparisons
    with pytest.raises(DeepglassError, match=msg):
        call(np.ones((5, 5)))


def test_lambda_max_of_explicit_couplings_does_not_hang_on_arpack():
    # W = -X X^T: negative semi-definite, its top eigenvalues crowd at the hard edge
    # near 0 (full rank) or are one degenerate 0 (low rank).  Lanczos ran for minutes
    # on n = 1500 (ARPACK's default n * 10 restarts) before giving up; explicit
    # couplings of moderate size now take the dense eigensolver, and where Lanczos
    # does not converge on explicit couplings the dense one answers.
    import scipy.sparse.linalg as spla

    import deepglass.criticality.couplings as cp

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 300))
    W_full = -X @ X.T
    Y = rng.standard_normal((300, 3))
    W_low = -Y @ Y.T
    real = spla.eigsh

    def no_convergence(*a, **k):
        raise spla.ArpackNoConvergence("ARPACK error -1: No convergence", np.empty(0), np.empty((0, 0)))

    try:
        spla.eigsh = no_convergence
        cp.spla.eigsh = no_convergence
        for W in (W_full, W_low, scipy.sparse.csr_matrix(W_full)):
            ref = scipy.linalg.eigvalsh(W.toarray() if scipy.sparse.issparse(W) else W)[-1]
            lam = mf.lambda_max(W)
            if abs(ref) < 1e-10 * np.abs(W).max():
                assert lam == 0.0                      # round-off of a degenerate 0
            else:
                assert lam == pytest.approx(ref, rel=1e-9) and lam < 0
            # Lanczos asked for explicitly, on explicit couplings: the dense answer
            assert mf.lambda_max(W, method="lanczos") == lam
        # matrix-free couplings have no dense fallback: a clear error
        with pytest.raises(DeepglassError, match="Lanczos did not converge"):
            mf.lambda_max(spla.aslinearoperator(W_full + 0.0), method="lanczos")
    finally:
        spla.eigsh = real
        cp.spla.eigsh = real

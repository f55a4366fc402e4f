"""Random active path model: construction, BP, exact enumeration, Monte Carlo (SPEC section 6)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepglass.errors import DeepglassError, TooLargeError
from deepglass.rap import (RAPModel, anneal, beta_schedule, exact_enumeration, paramagnetic,
                           run_bp, run_mc, thermodynamic_integration)
from deepglass.rap.bp import _is_oscillating, bethe_observables
from deepglass.rap.model import _sample_distinct, path_probability
from deepglass.rap.phase import find_transitions


# -- construction ------------------------------------------------------------
def test_sample_distinct_is_a_uniform_subset():
    rng = np.random.default_rng(1)
    counts = np.zeros(12)
    for _ in range(3000):
        s = _sample_distinct(rng, 12, 4)
        assert s.size == 4 and np.all(np.diff(s) > 0)
        counts[s] += 1
    # every element is in a uniform 4-subset of 12 with probability 1/3
    assert stats.chisquare(counts).pvalue > 1e-3
    big = _sample_distinct(rng, 100, 90)              # complement branch
    assert big.size == 90 and np.unique(big).size == 90 and big.max() < 100


def test_independent_construction_counts_and_arrays():
    N, a, p = 30, (0.5, 0.4), (0.2, 0.1, 0.0)
    m = RAPModel(N, a=a, p=p, seed=3)
    P = path_probability(a, p)
    mean, sd = N ** 3 * P, math.sqrt(N ** 3 * P * (1 - P))
    assert abs(m.n_factors - mean) < 5 * sd
    # factors reference the right populations and original indices
    i, j, k = m.paths // N ** 2, (m.paths // N) % N, m.paths % N
    f = m.factors
    assert np.all(m.population[f[:, 0]] == 1) and np.all(m.population[f[:, 1]] == 2)
    assert np.all(m.population[f[:, 2]] == 3)
    assert np.array_equal(m.index[f[:, 0]], i * N + j)
    assert np.array_equal(m.index[f[:, 1]], j * N + k)
    assert np.array_equal(m.index[f[:, 2]], k)
    assert np.array_equal(m.xi, m.x[i])
    assert m.degree.sum() == 3 * m.n_factors and m.degree.min() >= 1
    assert m.alpha == pytest.approx(m.n_factors / m.n_weights)
    # CSR incidence lists exactly the factors of each weight
    indptr, inc = m.incidence
    for w in (0, m.n_weights // 2, m.n_weights - 1):
        got = np.sort(inc[indptr[w]:indptr[w + 1]])
        assert np.array_equal(got, np.flatnonzero((f == w).any(axis=1)))
    deg = m.degree_table()
    assert deg["count"].sum() == m.n_weights


def test_correlated_construction_is_a_product_of_masks():
    m = RAPModel(12, a=(1.0, 1.0), p=(0.0, 0.0, 0.0), construction="correlated", seed=0)
    assert m.n_factors == 12 ** 3
    assert RAPModel(12, a=(1, 1), p=(0, 1, 0), construction="correlated").n_factors == 0
    m = RAPModel(15, a=(0.6, 0.5), p=(0.3, 0.2, 0.1), construction="correlated", seed=4)
    N = m.N
    i, j, k = m.paths // N ** 2, (m.paths // N) % N, m.paths % N
    inputs = {}
    for jj, kk, ii in zip(j, k, i):
        inputs.setdefault((jj, kk), set()).add(ii)
    # the inputs of an active (j, k) are those with w1_ij present: the same for every k
    by_j = {}
    for (jj, kk), s in inputs.items():
        assert by_j.setdefault(jj, s) == s
    # and the (j, k) pairs form h1_j * [present2_jk h2_k present3_k]: ks of j subset of a
    # common set of usable k (columns with h2 & present3)
    ks = set(k)
    assert all(kk in ks for kk in k)


def test_planted_configuration_is_a_ground_state():
    m = RAPModel(20, a=(0.5, 0.5), p=(0.1, 0.0, 0.2), seed=2)
    assert m.energy(m.planted) == -m.n_factors
    rng = np.random.default_rng(0)
    w = rng.choice(np.array([-1, 1], dtype=np.int8), size=(50, m.n_weights))
    assert np.all(m.energy(w) >= -m.n_factors)
    # hidden-unit gauge: flipping w1_.j and w2_j. of one unit j leaves H unchanged
    j = 3
    g = m.planted.copy()
    sel = ((m.population == 1) & (m.index % m.N == j)) | ((m.population == 2) & (m.index // m.N == j))
    g[sel] *= -1
    assert m.energy(g) == -m.n_factors


@pytest.mark.parametrize("kwargs, msg", [
    (dict(N=10, p=(1.5, 0, 0)), "p1 must be a probability"),
    (dict(N=10, a=(0.5, -0.1)), "a2 must be a probability"),
    (dict(N=0), "N must be a positive integer"),
    (dict(N=10, construction="magic"), "construction must be one of"),
])
def test_bad_parameters(kwargs, msg):
    with pytest.raises(DeepglassError, match=msg):
        RAPModel(**kwargs)


def test_too_large_instance_is_refused_before_allocation():
    with pytest.raises(TooLargeError, match="instance too large"):
        RAPModel(4000, a=(1.0, 1.0))
    with pytest.raises(DeepglassError, match="beta must be finite and > 0"):
        run_bp(RAPModel(5), 0.0)


# -- belief propagation --------------------------------------------------------
@pytest.mark.parametrize("beta", [0.3, 1.0, 2.0])
def test_zero_messages_are_the_paramagnetic_fixed_point(beta):
    m = RAPModel(25, a=(0.5, 0.5), p=(0.3, 0.0, 0.0), seed=5)
    r = run_bp(m, beta, start="zero", damping=0.0)
    assert r.converged and r.iterations == 1 and r.residual == 0.0
    assert np.all(r.messages == 0) and r.q == 0.0
    pm = paramagnetic(m.alpha, beta)
    assert r.energy == pytest.approx(-m.alpha * math.tanh(beta), abs=1e-10)
    assert r.entropy == pytest.approx(
        math.log(2) + m.alpha * (math.log(math.cosh(beta)) - beta * math.tanh(beta)), abs=1e-10)
    assert r.free_energy == pytest.approx(pm["free_energy"], abs=1e-10)


def _random_forest(seed: int, N: int = 4, max_weights: int = 16) -> RAPModel:
    """Add random paths while the factor graph stays a forest with <= max_weights weights."""
    rng = np.random.default_rng(seed)
    x = rng.choice([-1, 1], size=N)
    parent: dict = {}

    def find(u):
        while parent.setdefault(u, u) != u:
            u = parent[u]
        return u

    paths, used = [], set()
    for idx in rng.permutation(N ** 3):
        i, j, k = idx // N ** 2, (idx // N) % N, idx % N
        ws = [("w1", i, j), ("w2", j, k), ("w3", k)]
        roots = {find(w) for w in ws}
        if len(roots) < 3 or len(used | set(ws)) > max_weights:
            continue                      # would close a cycle or grow too big
        r0 = roots.pop()
        for r in roots:
            parent[r] = r0
        used |= set(ws)
        paths.append((i, j, k))
    return RAPModel.from_paths(N, paths, x)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("start", ["random", "polarized"])
def test_bp_is_exact_on_trees(seed, start):
    m = _random_forest(seed)
    assert m.is_forest() and 3 <= m.n_factors and m.n_weights <= 16
    for beta in (0.4, 1.3):
        ex = exact_enumeration(m, beta)
        r = run_bp(m, beta, start=start, damping=0.3, tol=1e-14, max_iter=500, seed=seed)
        assert r.converged
        assert r.free_energy == pytest.approx(ex["free_energy"], abs=1e-10)
        assert r.energy == pytest.approx(ex["energy"], abs=1e-10)
        assert r.entropy == pytest.approx(ex["entropy"], abs=1e-10)
        assert np.allclose(r.m, ex["m"], atol=1e-10)


def test_exact_enumeration_closed_form_on_a_tree():
    # on a hypertree every factor can be satisfied independently: Z = 2^N_w cosh(beta)^M
    m = RAPModel.from_paths(3, [(0, 0, 0), (0, 0, 1), (1, 1, 0), (2, 2, 1)], [1, -1, 1])
    assert m.is_forest()
    beta = 0.8
    ex = exact_enumeration(m, beta)
    assert ex["log_z"] == pytest.approx(m.n_weights * math.log(2) + m.n_factors * math.log(math.cosh(beta)), abs=1e-12)
    assert ex["probabilities"].sum() == pytest.approx(1.0)
    # a loopy instance is not a forest
    assert not RAPModel(2, a=(1, 1)).is_forest()


def test_bethe_energy_is_the_beta_derivative_of_beta_f_on_an_ordered_fixed_point():
    m = RAPModel(30, a=(0.5, 0.5), p=(0.6, 0.0, 0.0), seed=7)
    beta, h = 0.9, 1e-5
    r = run_bp(m, beta, start="polarized", tol=1e-13, max_iter=5000)
    assert r.converged and r.q > 0.5
    # beta f is stationary in the messages, so d(beta f)/d beta = e at fixed messages
    bf = lambda b: b * bethe_observables(m, b, r.messages)["free_energy"]
    deriv = (bf(beta + h) - bf(beta - h)) / (2 * h)
    assert deriv == pytest.approx(r.energy, abs=1e-6)
    # and re-solving at beta +- h gives the same derivative (stationarity)
    bf2 = lambda b: b * run_bp(m, b, start=r.messages, tol=1e-13, max_iter=5000).free_energy
    assert (bf2(beta + 1e-4) - bf2(beta - 1e-4)) / 2e-4 == pytest.approx(r.energy, abs=1e-5)


def test_polarized_branch_reaches_the_ground_state_at_low_temperature():
    m = RAPModel(20, a=(0.5, 0.5), seed=1)
    r = run_bp(m, 4.0, start="polarized")
    assert r.converged and r.q > 0.999
    assert r.energy == pytest.approx(-m.alpha, rel=1e-3)
    assert r.free_energy == pytest.approx(-m.alpha, rel=1e-3)
    assert r.m_planted > 0.999


def test_oscillation_detector():
    n = np.arange(400)
    assert _is_oscillating(0.3 + 0.1 * (-1.0) ** n, 0.2, 0.0)
    assert not _is_oscillating(np.exp(-n / 50.0), 1e-4, 1e-4)      # slow but decaying
    rng = np.random.default_rng(0)
    assert _is_oscillating(0.1 + 0.05 * rng.random(400), 0.1, 0.1)  # chaotic, no decay


# -- Monte Carlo -------------------------------------------------------------------
def _chi2(observed_levels: np.ndarray, levels: np.ndarray, probs: np.ndarray):
    """Chi-square statistic and dof with tail bins merged until expected >= 5."""
    n = observed_levels.size
    obs = np.array([np.sum(observed_levels == L) for L in levels], dtype=float)
    assert obs.sum() == n                               # MC never leaves the level set
    exp = probs * n
    o_b, e_b, o_acc, e_acc = [], [], 0.0, 0.0
    for o, e in zip(obs, exp):
        o_acc += o
        e_acc += e
        if e_acc >= 5:
            o_b.append(o_acc)
            e_b.append(e_acc)
            o_acc = e_acc = 0.0
    o_b[-1] += o_acc
    e_b[-1] += e_acc
    o_b, e_b = np.array(o_b), np.array(e_b)
    return float(np.sum((o_b - e_b) ** 2 / e_b)), len(o_b) - 1


@pytest.mark.parametrize("method", ["metropolis", "heatbath"])
def test_mc_samples_the_exact_boltzmann_energy_law(method):
    m = RAPModel(2, a=(1.0, 1.0), seed=0)           # all 8 paths: 10 weights, loopy
    beta, thin, n_samp = 0.7, 10, 2000
    ex = exact_enumeration(m, beta)
    wrong = exact_enumeration(m, 1.2 * beta)
    chi, dof, chi_w, dof_w = 0.0, 0, 0.0, 0
    for rep in range(4):
        r = run_mc(m, beta, sweeps=100 + thin * n_samp, equilibration=100, method=method,
                   seed=rep)
        E = np.rint(r.e_trace[100::thin] * m.n_weights).astype(int)
        c, d = _chi2(E, ex["levels"], ex["probabilities"])
        chi, dof = chi + c, dof + d
        c, d = _chi2(E, wrong["levels"], wrong["probabilities"])
        chi_w, dof_w = chi_w + c, dof_w + d
    assert stats.chi2.sf(chi, dof) > 1e-3                   # combined over repetitions
    assert stats.chi2.sf(chi_w, dof_w) < 1e-6               # the test has power


def test_mc_energy_bookkeeping_and_seed():
    m = RAPModel(25, a=(0.5, 0.5), p=(0.5, 0, 0), seed=3)
    r1 = run_mc(m, 0.8, sweeps=50, seed=11)
    r2 = run_mc(m, 0.8, sweeps=50, seed=11)
    r3 = run_mc(m, 0.8, sweeps=50, seed=12)
    assert m.energy(r1.w) / m.n_weights == pytest.approx(r1.e_trace[-1], abs=1e-12)
    assert np.array_equal(r1.e_trace, r2.e_trace) and r1.q == r2.q and np.array_equal(r1.w, r2.w)
    assert not np.array_equal(r1.e_trace, r3.e_trace)
    assert -m.alpha <= r1.energy <= m.alpha
    # a quench from the planted ground state at low temperature stays there
    r = run_mc(m, 5.0, sweeps=20, start="planted", seed=0)
    assert r.energy == pytest.approx(-m.alpha, abs=0.02)
    assert r.q > 0.9


def test_same_seed_same_bp_numbers():
    a = RAPModel(20, a=(0.5, 0.5), seed=9)
    b = RAPModel(20, a=(0.5, 0.5), seed=9)
    c = RAPModel(20, a=(0.5, 0.5), seed=10)
    assert np.array_equal(a.factors, b.factors) and np.array_equal(a.xi, b.xi)
    assert not np.array_equal(a.paths, c.paths) or not np.array_equal(a.x, c.x)
    ra, rb = run_bp(a, 1.0, seed=4), run_bp(b, 1.0, seed=4)
    assert ra.to_dict() == rb.to_dict()


def test_annealing_lowers_the_energy_in_expectation():
    m = RAPModel(20, a=(0.5, 0.5), p=(0.4, 0, 0), seed=6)
    betas = beta_schedule(0.05, 3.0, 12, "geometric")
    runs = [anneal(m, betas, sweeps_per_temp=6, seed=s).table.e_mean.to_numpy() for s in range(10)]
    e = np.array(runs)
    mean, sem = e.mean(axis=0), e.std(axis=0, ddof=1) / math.sqrt(len(runs))
    steps = np.diff(mean)
    assert np.all(steps <= 3 * np.hypot(sem[1:], sem[:-1]) + 1e-12)
    assert mean[-1] < mean[0] - 0.5 * m.alpha
    assert np.allclose(beta_schedule(1, 4, 3, "linear"), [1, 2.5, 4])
    assert np.allclose(beta_schedule(1, 4, 3, "geometric"), [1, 2, 4])


def test_thermodynamic_integration_matches_exact_free_energy():
    m = RAPModel(2, a=(1.0, 1.0), seed=0)
    beta = 0.7
    ex = exact_enumeration(m, beta)
    ti = thermodynamic_integration(m, beta, n_points=25, sweeps_per_point=3000, seed=1)
    assert ti["free_energy"] == pytest.approx(ex["free_energy"], abs=0.01)


# -- transition finder on synthetic branches ---------------------------------------------
def _synthetic(ps, f_pol, q_pol, f_rand):
    rows = []
    for p, fp, qp, fr in zip(ps, f_pol, q_pol, f_rand):
        for branch, f, q in (("polarized", fp, qp), ("random", fr, 0.0)):
            rows.append(dict(beta=1.0, a2=0.5, p=p, sample=0, solver="bp", branch=branch,
                             energy=f, entropy=0.0, free_energy=f, q=q, alpha=1.0,
                             iterations=10, converged=True))
    return pd.DataFrame(rows)


def test_transition_finder_crossing_spinodal_and_hysteresis():
    ps = np.linspace(0.0, 1.0, 11)
    f_rand = -ps                                        # paramagnetic branch
    q_pol = np.where(ps <= 0.75, 0.8, 0.0)              # ordered branch ends after 0.7
    f_pol = np.where(q_pol > 0, f_rand + (ps - 0.5), f_rand)   # crosses at p = 0.5
    t = find_transitions(_synthetic(ps, f_pol, q_pol, f_rand)).iloc[0]
    assert t.method == "crossing" and t.p_c == pytest.approx(0.5)
    assert t.p_sp_lo == pytest.approx(0.7) and t.p_sp_hi == pytest.approx(0.8)
    assert t.p_spinodal == pytest.approx(0.75)
    assert t.hysteresis_low == 0.0 and bool(t.low_censored)
    assert t.hysteresis_width == pytest.approx(0.75)
    # the ordered branch ends before the crossing: p_c is bracketed
    q2 = np.where(ps <= 0.35, 0.8, 0.0)
    f2 = np.where(q2 > 0, f_rand + (ps - 0.5), f_rand)
    t2 = find_transitions(_synthetic(ps, f2, q2, f_rand)).iloc[0]
    assert t2.method == "branch-end" and (t2.p_c_lo, t2.p_c_hi) == pytest.approx((0.3, 0.4))
    assert t2.q_ordered_end == pytest.approx(0.8) and math.isnan(t2.entropy_jump)
    # the ordered branch joins the paramagnet (Delta f -> 0) before it ends
    f3 = f_rand + np.minimum(ps - 0.45, 0.0)
    t3 = find_transitions(_synthetic(ps, f3, q_pol, f_rand)).iloc[0]
    assert t3.method == "merge" and (t3.p_c_lo, t3.p_c_hi) == pytest.approx((0.4, 0.5))

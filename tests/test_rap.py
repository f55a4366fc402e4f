"""Random active path model: construction, BP, exact enumeration, Monte Carlo (SPEC section 6)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepglass.errors import DeepglassError, TooLargeError
from deepglass.rap import (RAPModel, anneal, beta_schedule, bp_temperature_scan,
                           cooling_table, exact_enumeration, expected_factors, paramagnetic,
                           run_bp, run_mc, thermodynamic_integration)
from deepglass.rap.bp import _is_oscillating, bethe_observables
from deepglass.rap.model import _first_distinct, degree_law, path_probability
from deepglass.rap.phase import find_transitions


# -- construction ------------------------------------------------------------
def test_first_distinct_is_a_uniform_nested_subset():
    rng = np.random.default_rng(1)
    counts = np.zeros(12)
    for _ in range(3000):
        s = _first_distinct(rng, 12, 4)
        assert s.size == 4 and np.all(np.diff(s) > 0)
        counts[s] += 1
    # every element is in a uniform 4-subset of 12 with probability 1/3
    assert stats.chisquare(counts).pvalue > 1e-3
    big = _first_distinct(np.random.default_rng(2), 100, 90)
    assert big.size == 90 and np.unique(big).size == 90 and big.max() < 100
    small = _first_distinct(np.random.default_rng(2), 100, 40)     # same stream: a subset
    assert np.isin(small, big).all()


def test_independent_construction_counts_and_arrays():
    N, a, p = 30, (0.5, 0.4), (0.2, 0.1, 0.0)
    m = RAPModel(N, a=a, p=p, seed=3, construction="independent")
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


def test_units_construction_is_a_product_of_masks():
    m = RAPModel(12, a=(1.0, 1.0), p=(0.0, 0.0, 0.0), seed=0)
    assert m.construction == "units" and m.n_factors == 12 ** 3
    assert RAPModel(12, a=(1, 1), p=(0, 1, 0)).n_factors == 0
    m = RAPModel(15, a=(0.6, 0.5), p=(0.3, 0.2, 0.1), seed=4)
    N = m.N
    i, j, k = m.paths // N ** 2, (m.paths // N) % N, m.paths % N
    inputs = {}
    for jj, kk, ii in zip(j, k, i):
        inputs.setdefault((jj, kk), set()).add(ii)
    # the inputs of an active (j, k) are those with w1_ij present: the same for every k
    by_j = {}
    for (jj, kk), s in inputs.items():
        assert by_j.setdefault(jj, s) == s
    # so the active paths are exactly the product {(i, j, k): (i, j) in W1, (j, k) in W2}
    w1 = {(ii, jj) for ii, jj in zip(i, j)}
    w2 = {(jj, kk) for jj, kk in zip(j, k)}
    prod = {(ii, jj, kk) for (ii, jj) in w1 for (j2, kk) in w2 if j2 == jj}
    assert prod == set(zip(i.tolist(), j.tolist(), k.tolist()))


def test_correlated_is_a_deprecated_name_of_units():
    """The old name builds ``units``, with a FutureWarning (shown by default)
    at the caller's line, not inside deepglass nor at the ``__init__`` a
    dataclass generates (where it was, as a DeprecationWarning, hidden)."""
    with pytest.warns(FutureWarning, match="now called 'units'") as rec:
        old = RAPModel(15, a=(0.6, 0.5), p=(0.3, 0.2, 0.1), construction="correlated", seed=4)
    assert rec[0].filename == __file__
    new = RAPModel(15, a=(0.6, 0.5), p=(0.3, 0.2, 0.1), seed=4)
    assert old.construction == "units" and np.array_equal(old.paths, new.paths)


def test_the_command_line_shows_that_a_construction_name_is_deprecated(tmp_path):
    """``deepglass rap bp --construction correlated`` says so on stderr (a
    DeprecationWarning was hidden by Python's default filters)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "deepglass", "rap", "bp", "--N", "12",
                          "--construction", "correlated"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "now called 'units'" in out.stderr


@pytest.mark.parametrize("construction", ["units", "independent"])
def test_instances_are_coupled_across_dilutions(construction):
    """Larger p (smaller a) with the same seed: a subset of the active paths."""
    base = RAPModel(14, a=(0.7, 0.6), p=(0.2, 0.1, 0.0), construction=construction, seed=9)
    for p, a in [((0.5, 0.1, 0.0), (0.7, 0.6)), ((0.2, 0.4, 0.3), (0.7, 0.6)),
                 ((0.2, 0.1, 0.0), (0.7, 0.3))]:
        sub = RAPModel(14, a=a, p=p, construction=construction, seed=9)
        assert 0 < sub.n_factors < base.n_factors
        found, idx = sub.message_map(base)
        assert found.all() and np.array_equal(base.paths[idx], sub.paths)
        back, _ = base.message_map(sub)
        assert back.sum() == sub.n_factors


@pytest.mark.parametrize("population", [1, 2, 3])
def test_units_degrees_follow_their_exact_binomial_laws(population):
    """Mean number of weights per degree over 300 instances against degree_law.

    The law is exact (linearity of expectation); instances are i.i.d., so the
    mean count per degree has a standard error estimated across instances.
    """
    N, a, p, R = 9, (0.6, 0.5), (0.2, 0.1, 0.15), 300
    d, law = degree_law(N, a, p, population)
    counts = np.zeros((R, d.size))
    for s in range(R):
        m = RAPModel(N, a=a, p=p, seed=s)
        deg = m.degree[m.population == population]
        counts[s] = np.bincount(deg, minlength=d.size + 1)[1:d.size + 1]
    # degrees are shared by clusters of weights (all w1_.j of one unit j have one
    # degree), so single rare degrees are judged poorly: compare 6 bins of
    # consecutive degrees holding about equal expected counts
    cum = np.cumsum(law) / law.sum()
    bins = np.minimum((cum * 6).astype(int), 5)
    law_b = np.bincount(bins, weights=law, minlength=6)
    counts_b = np.stack([np.bincount(bins, weights=c, minlength=6) for c in counts])
    mean, sem = counts_b.mean(0), counts_b.std(0, ddof=1) / math.sqrt(R)
    ok = law_b > 0.05
    z = (mean[ok] - law_b[ok]) / sem[ok]
    assert np.max(np.abs(z)) < 5, (population, z)
    assert mean.sum() == pytest.approx(law.sum(), rel=0.1)
    # the law is informative: the independent construction's law is far off
    _, wrong = degree_law(N, a, p, population, "independent")
    wrong_b = np.bincount(bins, weights=wrong[:law.size], minlength=6)
    zw = (mean[ok] - wrong_b[ok]) / sem[ok]
    assert np.max(np.abs(zw)) > 10


def test_units_construction_has_three_separate_degree_peaks():
    """Paper Fig. 3a: one peak per population; mean degrees >= 25% apart."""
    N, a, p = 100, (0.5, 0.3), (0.2, 0.0, 0.0)
    m = RAPModel(N, a=a, p=p, seed=0)
    means = []
    for l in (1, 2, 3):
        d, law = degree_law(N, a, p, l)
        got = m.degree[m.population == l]
        means.append(got.mean())
        assert got.mean() == pytest.approx((d * law).sum() / law.sum(), rel=0.1)
        # the empirical mode sits at the law's peak (within its spread)
        vals, cnt = np.unique(got, return_counts=True)
        mode = d[np.argmax(law)]
        sd = math.sqrt((((d - mode) ** 2) * law).sum() / law.sum())
        assert abs(vals[np.argmax(cnt)] - mode) <= 2 * sd
    means = np.sort(means)
    assert np.all(means[1:] / means[:-1] >= 1.25), means
    ind = RAPModel(N, a=a, p=p, seed=0, construction="independent")
    m1, m2 = (ind.degree[ind.population == l].mean() for l in (1, 2))
    assert m1 == pytest.approx(m2, rel=0.05)         # the independent one merges W1, W2


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


@pytest.mark.parametrize("beta", [50.0, 1e3, 1e20, 1e300])
def test_bethe_observables_hold_no_cancellation_at_large_beta(beta):
    """At large beta f, e and s were differences of O(beta) numbers (s = 1.8e5 at
    beta = 1e20, for the paramagnetic ln 2 (1 - alpha)); the closed form's cosh
    overflowed past beta = 710."""
    m = RAPModel(25, a=(0.5, 0.5), p=(0.3, 0.0, 0.0), seed=5)
    obs = bethe_observables(m, beta, np.zeros((m.n_factors, 3)))
    pm = paramagnetic(m.alpha, beta)
    s_limit = math.log(2) * (1 - m.alpha) + (2 * m.alpha * beta * math.exp(-2 * beta))
    assert obs["entropy"] == pytest.approx(s_limit, rel=1e-9) == pm["entropy"]
    assert obs["energy"] == pytest.approx(-m.alpha, rel=1e-12) and pm["energy"] == obs["energy"]
    assert obs["free_energy"] == pytest.approx(pm["free_energy"], rel=1e-12)
    # planted (fully polarized) messages: every factor satisfied, one ground state
    planted = m.planted[m.factors].astype(np.float64)
    obs = bethe_observables(m, beta, planted)
    assert obs["entropy"] == pytest.approx(0.0, abs=1e-12)
    assert obs["energy"] == pytest.approx(-m.alpha, rel=1e-12)
    with pytest.raises(DeepglassError, match=r"m_cav must have shape"):
        bethe_observables(m, beta, np.zeros((3, 3)))


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


def test_a_residual_that_does_not_fall_is_not_converged():
    from deepglass.rap.bp import WINDOW, _falling

    n = np.arange(400)
    assert not _falling(list(np.full(400, 2.0)), WINDOW)              # constant: stalled
    assert not _falling(list(0.3 + 0.1 * (-1.0) ** n), WINDOW)        # period 2
    assert _falling(list(np.exp(-n / 500.0)), WINDOW)                  # slow but decaying
    # an instance whose undamped BP from a random start sits at residual 2.0 (the
    # saturated messages flip every step) without a detectable oscillation
    m = RAPModel(100, a=(0.5, 0.3), p=(0.0, 0.99, 0.0), seed=0)
    r = run_bp(m, 1.0, start="random", init_scale=1.0, damping=0.0, max_iter=3000)
    assert not r.converged and r.status == "stalled" and r.residual > 1.0
    assert r.iterations <= 3 * WINDOW                                 # stopped, not run out
    a = run_bp(m, 1.0, start="random", init_scale=1.0, damping="auto", max_iter=3000)
    assert a.converged and a.status == "converged" and a.damping > 0
    # damping leaves the fixed points alone: the paramagnet (closed form)
    assert a.free_energy == pytest.approx(paramagnetic(m.alpha, 1.0)["free_energy"], abs=1e-6)


def test_fig5_temperature_scan_and_cooling_table():
    from deepglass.rap.stability import bp_temperature_scan, cooling_study, cooling_table

    m = RAPModel(40, a=(0.5, 0.5), p=(0.9, 0.0, 0.0), seed=1)
    scan = bp_temperature_scan(m, [0.3, 1.0, 3.0], mc_sweeps=40, max_iter=600)
    bp = scan[scan.solver == "bp"]
    assert sorted(set(bp.start)) == ["polarized", "random"] and len(bp) == 6
    assert set(bp.status) <= {"converged", "stalled", "slow"}
    assert (bp.converged == (bp.status == "converged")).all()
    hot = bp[(bp.beta == 0.3) & (bp.start == "random")].iloc[0]   # reaches the paramagnet
    assert hot.converged and hot.free_energy == pytest.approx(
        paramagnetic(m.alpha, 0.3)["free_energy"], abs=1e-6)
    finals, traces = cooling_study(m, [1, 4], beta_end=3.0, n_temps=8, repeats=2)
    t = cooling_table(finals)
    assert list(t.sweeps_per_temp) == [1, 4] and (t.runs == 2).all()
    # the planted configuration is a ground state: no run goes below it
    assert np.allclose(t.ground_energy, -m.alpha) and (t.final_energy_min >= -m.alpha - 1e-12).all()
    assert np.allclose(t.excess, t.final_energy_mean + m.alpha)


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
    assert -m.alpha - 1e-12 <= r1.energy <= m.alpha + 1e-12   # round-off: a ground state
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
    # deep in the frozen phase: a grid uniform in b (spacing beta / n) integrated the
    # energy's rise as one straight segment (entropy -1.3 at beta = 100, exact 0.28)
    for beta in (10.0, 100.0, 1e6):
        ex = exact_enumeration(m, beta)
        ti = thermodynamic_integration(m, beta, n_points=20, sweeps_per_point=1000, seed=1)
        assert ti["free_energy"] == pytest.approx(ex["free_energy"], abs=0.005)
        assert 0.0 <= ti["entropy"] <= math.log(2) and abs(ti["entropy"] - ex["entropy"]) < 0.1


def test_thermodynamic_integration_refuses_a_one_point_grid_and_warns_of_negative_entropy():
    """1 or 2 points are one point at beta, a single trapezoid from 0: run_mc gave an
    entropy of -0.54 (exact ~0.11) without a word; a negative entropy, which +-1 weights
    cannot have, now warns that the grid is too coarse."""
    m = RAPModel(8, a=(0.5, 0.5), seed=0)
    for n in (1, 2):
        with pytest.raises(DeepglassError, match=r"ti_points must be 0 \(no thermodynamic "
                                                 r"integration\) or >= 3"):
            run_mc(m, 1.0, sweeps=20, ti_points=n)
        with pytest.raises(DeepglassError, match="n_points must be 0"):
            thermodynamic_integration(m, 1.0, n_points=n)
    with pytest.warns(UserWarning, match=r"negative entropy per weight \(-[0-9.]+\).*too coarse"):
        ti = thermodynamic_integration(m, 5.0, n_points=3, sweeps_per_point=20, seed=0)
    assert ti["entropy"] < 0


# -- transition finder: continuation and bisection against a brute fine grid ---------------
def test_continuation_finds_the_crossing_of_a_brute_fine_grid():
    """A 9-point scan with continuation + bisection locates the free-energy
    crossing that a fine grid of independent BP runs (polarized and zero starts on
    the same coupled instances, 0.002 apart) finds."""
    from deepglass.rap.phase import PhaseConfig, _instance_seed, scan_phase

    cfg = PhaseConfig(N=24, population=1, p_values=list(np.round(np.linspace(0.5, 0.98, 9), 4)),
                      betas=[1.0], a1=0.6, a2s=[0.6], samples=1, mc_sweeps=0,
                      construction="independent", bracket_tol=0.001)
    t = scan_phase(cfg).transitions.iloc[0]
    assert t.method == "crossing" and t.bracket_width <= 0.001
    assert t.p_c_lo <= t.p_c <= t.p_c_hi < t.p_spinodal
    seed = _instance_seed(cfg, 0)
    fine = np.round(np.arange(0.74, 0.86, 0.002), 4)
    df = []
    for p in fine:
        m = RAPModel(24, a=(0.6, 0.6), p=(p, 0, 0), construction="independent", seed=seed)
        o = run_bp(m, 1.0, start="polarized", max_iter=20000)
        df.append(o.free_energy - paramagnetic(m.alpha, 1.0)["free_energy"]
                  if o.converged and o.q > 0.05 else np.nan)
    df = np.array(df)
    k = int(np.flatnonzero((df[:-1] < 0) & (df[1:] > 0))[0])     # brute sign change
    assert fine[k] - 1e-9 <= t.p_c <= fine[k + 1] + 1e-9, (t.p_c, fine[k], fine[k + 1])


def test_log_grid_and_bad_scan_parameters():
    from deepglass.rap.phase import PhaseConfig, p_grid

    g = p_grid(0.5, 0.999, 5, "log1m")
    assert g[0] == pytest.approx(0.5) and g[-1] == pytest.approx(0.999)
    assert np.allclose(np.diff(np.log1p(-np.array(g))), math.log(0.002) / 4)
    with pytest.raises(DeepglassError, match="needs p_max < 1"):
        p_grid(0.5, 1.0, 5, "log1m")
    with pytest.raises(DeepglassError, match="scale must be one of"):
        PhaseConfig(N=10, scale="cubic").validate()
    # counts are integers (1.5 samples was accepted, then range() failed mid-scan)
    for kw, msg in [({"samples": 1.5}, "samples must be an integer >= 1, got 1.5"),
                    ({"seed": -1}, "seed must be a non-negative integer"),
                    ({"max_bisect": -1}, "max_bisect must be an integer >= 0"),
                    ({"max_iter": 0}, "max_iter must be an integer >= 1"),
                    ({"mc_sweeps": 2.0}, "mc_sweeps must be an integer >= 0"),
                    ({"bracket_tol": 0.0}, r"bracket_tol must be a finite number in \(0, inf\), got 0.0")]:
        with pytest.raises(DeepglassError, match=msg):
            PhaseConfig(N=10, **kw).validate()


@pytest.mark.parametrize("p_min,p_max,n", [(0.9999991, 0.9999999, 5), (0.1, 0.1000004, 5),
                                           (0.5, 0.98, 25), (0.5, 0.98, 50), (0.12345678, 0.9, 3),
                                           (0.0, 1.0, 11)])
def test_linear_grid_is_increasing_inside_its_range(p_min, p_max, n):
    # rounding to 6 absolute decimals gave [0.999999, 0.999999, 1.0, 1.0, 1.0] for
    # p_max = 0.9999999 (p = 1 > p_max) and five times 0.1 for [0.1, 0.1000004]
    from deepglass.rap.phase import PhaseConfig, p_grid

    g = np.array(p_grid(p_min, p_max, n))
    exact = np.linspace(p_min, p_max, n)
    step = (p_max - p_min) / (n - 1)
    assert g.size == n and g[0] == p_min and g[-1] == p_max
    assert np.all(np.diff(g) > 0) and np.all(np.abs(g - exact) <= 1e-3 * step)
    if step >= 1e-3:      # ordinary grids keep their 6-decimal values
        assert list(g[1:-1]) == [round(float(v), 6) for v in exact[1:-1]]
    assert PhaseConfig(N=10, p_values=list(g)).validate().p_values == list(g)


def test_unordered_dilutions_are_named():
    from deepglass.rap.phase import PhaseConfig, p_grid

    with pytest.raises(DeepglassError, match=r"0\.3 follows 0\.5 \(at position 2\)"):
        PhaseConfig(N=10, p_values=[0.1, 0.5, 0.3]).validate()
    with pytest.raises(DeepglassError, match="float resolution"):
        p_grid(0.5, 0.5 + 1e-15, 50)
    with pytest.raises(DeepglassError, match="n >= 2"):
        p_grid(0.1, 0.5, 1)

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


def test_a_scan_into_an_instance_without_paths_ends_the_ordered_branch():
    """W3 diluted to p3 = 1 leaves no active path: BP there is trivial (no
    crash), and the ordered branch ends before it, at the spinodal that a grid
    stopping short of the empty instance brackets too."""
    from deepglass.rap.phase import PhaseConfig, scan_phase

    empty = RAPModel(12, a=(0.5, 0.5), p=(0.0, 0.0, 1.0), seed=0)
    assert empty.n_factors == 0
    r = run_bp(empty, 1.5, start="polarized")
    assert r.converged and r.q == 0.0

    def spinodal(grid):
        cfg = PhaseConfig(N=12, population=3, p_values=grid, betas=[1.5], a2s=[0.5],
                          samples=1, mc_sweeps=0, seed=0)
        res = scan_phase(cfg)
        return res.transitions.iloc[0], res.points

    t, pts = spinodal([0.0, 1.0])
    assert set(pts[(pts.p == 1.0) & (pts.branch == "random")].status) == {"empty"}
    ref, _ = spinodal([0.0, 0.8])
    for tr in (t, ref):
        assert tr.method == "branch-end" and tr.n_unconverged == 0
        assert tr.p_sp_hi - tr.p_sp_lo <= 0.002
    assert max(t.p_sp_lo, ref.p_sp_lo) <= min(t.p_sp_hi, ref.p_sp_hi)   # the same spinodal


def test_figures_draw_on_the_given_axes_and_leave_matplotlib_alone():
    import os
    import subprocess
    import sys

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from deepglass.rap.figures import plot_pc, plot_phase, plot_stability
    from deepglass.rap.phase import aggregate_points

    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    code = ("import deepglass.rap.figures, matplotlib; "
            "print(matplotlib.rcParams._get_backend_or_none())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "None", out.stderr          # importing chose no backend
    ps = np.linspace(0.0, 1.0, 11)
    q = np.where(ps <= 0.75, 0.8, 0.0)
    pts = _synthetic(ps, np.where(q > 0, -ps + (ps - 0.5), -ps), q, -ps)
    summary, trans = aggregate_points(pts), find_transitions(pts)
    n_open = len(plt.get_fignums())
    fig = Figure()
    ax = fig.subplots()
    assert plot_pc(trans, 1, ax=ax) is fig and len(ax.lines) >= 2     # p_c and spinodal
    axes = Figure().subplots(2, 2)
    phase = plot_phase(summary, trans.iloc[0].to_dict(), None, 1.0, 0.5, 1, axes=axes)
    assert phase is axes[0, 0].figure and not axes[0, 0].axison    # no degrees: panel (a) off
    # panel (c): f(polarized) - f(random) at every grid point, zero from the spinodal on
    y = axes[1, 0].lines[0].get_ydata()
    assert np.allclose(y, np.where(q > 0, ps - 0.5, 0.0))
    scan = pd.DataFrame({"solver": "bp", "start": "random", "beta": [0.5, 1.0],
                         "energy": [-0.4, -0.7], "entropy": [0.5, 0.3], "converged": [True, False],
                         "residual": [1e-8, 0.2], "status": ["converged", "slow"]})
    assert isinstance(plot_stability(scan), Figure)
    assert len(plt.get_fignums()) == n_open                          # no pyplot figure left open


@pytest.mark.parametrize("lo,hi", [(0.5, 0.9995), (0.5, 0.999999), (0.9, 0.999), (0.5, 0.98)])
def test_log1m_axis_ticks_do_not_crowd(lo, hi):
    # p labels on a -log(1 - p) axis: adjacent ticks at least 1/8 of the axis
    # apart (a half-decade tick next to a decade one collided on wide ranges)
    from matplotlib.figure import Figure

    from deepglass.rap.figures import _log1m_axis

    ax = Figure().subplots()
    _log1m_axis(ax, lo, hi)
    ticks = np.asarray(ax.get_xticks())
    y = -np.log1p(-ticks)
    span = -np.log1p(-hi) + np.log1p(-lo)
    assert len(ticks) >= 2 and np.all((ticks >= lo) & (ticks <= hi))
    assert np.diff(y).min() >= span / 8, ticks


# -- seeds ------------------------------------------------------------------------------
def test_chain_seeds_use_the_full_integer_range():
    # seeds were folded modulo 2^32: seed 5 and 5 + 2^32 gave one chain.  Below 2^32
    # the stream is np.random.seed's (unchanged); above, MT19937(SeedSequence(seed))'s
    from deepglass.rap.mc import _Chain

    m = RAPModel(30, a=(0.5, 0.5), p=(0.2, 0, 0), seed=3)
    nw = m.n_weights
    for seed, rs in ((5, np.random.RandomState(5)),
                     (5 + 2 ** 32, np.random.RandomState(np.random.MT19937(5 + 2 ** 32))),
                     (2 ** 63 - 1, np.random.RandomState(np.random.MT19937(2 ** 63 - 1)))):
        w = _Chain(m, "random", seed, False).w
        np.testing.assert_array_equal(w, np.where(rs.random_sample(nw) < 0.5, 1, -1))
    a = run_mc(m, 1.0, sweeps=200, seed=5)
    b = run_mc(m, 1.0, sweeps=200, seed=5 + 2 ** 32)
    assert not np.array_equal(a.e_trace, b.e_trace)
    with pytest.raises(DeepglassError, match="non-negative integer"):
        run_mc(m, 1.0, sweeps=10, seed=-1)


def test_annealing_and_student_seeds_do_not_collide():
    from deepglass.rap.stability import anneal_seed
    from deepglass.rap.student import trial_seed

    # seed + 1000 repeat + sweeps_per_temp made (0, 1001, 0) == (0, 1, 1), and
    # studies seeded 0 and 1000 (or 0 and 2, at sweeps 3 and 1) share runs
    keys = [(s, spt, rep) for s in (0, 1, 2, 1000, 2 ** 40) for spt in (1, 3, 10, 1001)
            for rep in (0, 1, 2)]
    seeds = [anneal_seed(*k) for k in keys]
    assert len(set(seeds)) == len(keys) and all(0 <= s < 2 ** 63 for s in seeds)
    # trials below 1000 keep their seeds; trial 1000 of seed 0 is not trial 0 of seed 1
    assert trial_seed(3, 7) == 3007
    assert trial_seed(0, 1000) != trial_seed(1, 0)
    assert 0 <= trial_seed(2 ** 63 - 1, 0) < 2 ** 63      # 1000 seed overflowed torch
    with pytest.raises(DeepglassError, match="non-negative integer"):
        RAPModel(10, seed=-1)


def test_api_user_errors_are_one_line():
    # these escaped as TypeError / ZeroDivisionError, or were accepted silently
    # (an empty instance's f = inf, ti_points = -3 skipping the integration)
    from deepglass.rap import anneal_study, scan_phase, thermodynamic_integration

    m = RAPModel(10, a=(0.5, 0.5), p=(0.2, 0, 0), seed=1)
    empty = RAPModel(10, a=(0.5, 0.5), p=(1.0, 0, 0), seed=1)
    assert empty.n_weights == 0
    for call, msg in ((lambda: run_bp(m, 1.0, tol="x"), "tol must be a number"),
                      (lambda: run_bp(m, 1.0, max_iter=0), "max_iter must be an integer >= 1"),
                      (lambda: run_bp(m, 1.0, init_scale=2), r"init_scale must be a finite "
                                                               r"number in \[0, 1\]"),
                      (lambda: run_bp(m, 1.0, seed=-1), "seed must be a non-negative"),
                      (lambda: exact_enumeration(empty, 1.0), "no active path"),
                      (lambda: thermodynamic_integration(empty, 1.0), "no active path"),
                      (lambda: run_mc(m, 1.0, sweeps=10, ti_points=-3),
                       "ti_points must be an integer >= 0"),
                      (lambda: run_mc(m, 1.0, sweeps="x"), "sweeps must be an integer"),
                      # AttributeError deep inside before
                      (lambda: run_bp("m", 1.0), "model must be of type RAPModel, got str"),
                      (lambda: run_mc(None, 1.0), "model must be of type RAPModel, got NoneType"),
                      (lambda: scan_phase({"N": 10}), "cfg must be of type PhaseConfig, got dict"),
                      (lambda: anneal_study({}), "cfg must be of type AnnealConfig, got dict"),
                      (lambda: degree_law(-1, (0.5, 0.5), (0, 0, 0), 1),
                       "N must be an integer >= 1, got -1")):
        with pytest.raises(DeepglassError, match=msg):
            call()


def test_api_values_outside_the_model_are_refused():
    """Accepted before, with meaningless numbers: a negative path probability
    (a, p > 1), entropy > ln 2 (alpha < 0), an annealing that heated, a one-
    temperature schedule, a float count, and errors from deep inside."""
    from deepglass.rap import AnnealConfig, cooling_study, expected_factors, find_transitions

    m = RAPModel(10, a=(0.5, 0.5), p=(0.2, 0, 0), seed=1)
    for call, msg in ((lambda: path_probability((1.5, 0.5), (0, 0, 0)), r"a1 must be a "
                       r"probability in \[0, 1\], got 1.5"),
                      (lambda: expected_factors(10, (0.5, 0.5), (0, 0, 2)), "p3 must be"),
                      (lambda: expected_factors(10, (0.5,), (0, 0, 0)), r"a must be \(a1, a2\)"),
                      (lambda: RAPModel(10, 0.5, 0), r"a must be \(a1, a2\), got 0.5"),
                      (lambda: paramagnetic(-1.0, 1.0), r"alpha must be a finite number in"),
                      (lambda: paramagnetic(float("nan"), 1.0), "alpha must be a finite"),
                      (lambda: cooling_study(m, [5], beta_start=3.0, beta_end=0.1),
                       "annealing cools"),
                      (lambda: cooling_study(m, [5], n_temps=1),
                       "n_temps must be an integer >= 2, got 1"),
                      (lambda: cooling_study(m, [2.5]), "sweeps_per_temp must be an integer"),
                      (lambda: cooling_study("m", [5]), "model must be of type RAPModel"),
                      (lambda: anneal("m", [1.0]), "model must be of type RAPModel"),
                      (lambda: thermodynamic_integration(m, 1.0, n_points=0),
                       "n_points must be an integer >= 1"),
                      (lambda: AnnealConfig(N=10, mc_sweeps=1).validate(), "mc_sweeps must be 0"),
                      (lambda: AnnealConfig(N=10, repeats=1.5).validate(),
                       "repeats must be an integer >= 1"),
                      (lambda: find_transitions(pd.DataFrame()), "missing columns: a2, beta"),
                      (lambda: AnnealConfig(N=10, n_temps=1).validate(),
                       "n_temps must be an integer >= 2")):
        with pytest.raises(DeepglassError, match=msg):
            call()
    # run_mc's shortest run: 2 sweeps, both sampled (the default equilibration of
    # sweeps // 2 left one sampling sweep, and the CLI's --sweeps 2 was refused)
    assert run_mc(m, 1.0, sweeps=2).equilibration == 0


def _recorded_chain_seeds(monkeypatch):
    """Patch the chain seeder to record every seed a chain is started with."""
    import deepglass.rap.mc as mc

    seen = []
    real = mc.seed_chain

    def record(seed):
        seen.append(int(seed))
        real(seed)

    monkeypatch.setattr(mc, "seed_chain", record)
    return seen


def test_mc_chains_of_nearby_seeds_and_their_integration_chains_are_independent(monkeypatch):
    # the integration chain of run_mc(seed=s) was seeded s + 1: the quench chain
    # of run_mc(seed=s + 1), same start and same random stream
    m = RAPModel(12, a=(0.5, 0.5), p=(0.2, 0, 0), seed=3)
    seen = _recorded_chain_seeds(monkeypatch)
    for s in range(4):
        run_mc(m, 1.0, sweeps=10, seed=s, ti_points=3, ti_sweeps=4)
    assert len(seen) == 8 and len(set(seen)) == 8
    # the quench and the integration of one call start from different configurations
    from deepglass.rap.mc import _Chain

    quench, integ = (_Chain(m, "random", k, False).w for k in seen[:2])
    assert not np.array_equal(quench, integ)
    # and the same call gives the same numbers
    a = run_mc(m, 0.7, sweeps=40, seed=9, ti_points=3, ti_sweeps=6)
    b = run_mc(m, 0.7, sweeps=40, seed=9, ti_points=3, ti_sweeps=6)
    assert np.array_equal(a.e_trace, b.e_trace) and a.free_energy == b.free_energy


def test_mc_quenches_of_a_temperature_scan_use_one_stream_per_temperature(monkeypatch):
    # every beta of bp_temperature_scan (and of the anneal study's scan units) ran
    # its quench with the study seed: one start and one random stream for all
    from deepglass.rap.stability import AnnealConfig, anneal_study, bp_temperature_scan

    m = RAPModel(12, a=(0.5, 0.5), p=(0.2, 0, 0), seed=3)
    seen = _recorded_chain_seeds(monkeypatch)
    betas = [0.01, 0.02, 0.5, 1.0]
    t1 = bp_temperature_scan(m, betas, starts=["random"], mc_sweeps=6, max_iter=50)
    assert len(seen) == 4 and len(set(seen)) == 4
    seen.clear()
    t2 = bp_temperature_scan(m, betas, starts=["random"], mc_sweeps=6, max_iter=50)
    assert len(set(seen)) == 4
    pd.testing.assert_frame_equal(t1, t2)
    # one beta at a time (as the study's units run them) gives the same quenches
    t3 = pd.concat([bp_temperature_scan(m, [b], starts=["random"], mc_sweeps=6, max_iter=50)
                    for b in betas], ignore_index=True)
    pd.testing.assert_frame_equal(t1, t3)
    seen.clear()
    cfg = AnnealConfig(N=8, a2=0.5, sweeps=[1], repeats=1, n_temps=3, scan_points=3,
                       max_iter=50, mc_sweeps=4, starts=["random"])
    anneal_study(cfg)
    assert len(seen) == 4 and len(set(seen)) == 4        # 1 annealing run, 3 quenches


def test_mc_points_of_a_phase_scan_use_one_stream_per_point(monkeypatch):
    from deepglass.rap.continuation import _mc_rows, case_of
    from deepglass.rap.phase import PhaseConfig

    cfg = PhaseConfig(N=8, population=1, p_values=[0.1, 0.3, 0.5], betas=[0.5, 1.0],
                      a2s=[0.5], samples=1, mc_sweeps=4)
    seen = _recorded_chain_seeds(monkeypatch)
    rows = [_mc_rows(cfg, case_of(cfg, ib, 0)) for ib in range(2)]
    n = sum(len(r) for r in rows)
    assert n >= 4 and len(seen) == n and len(set(seen)) == n


# -- acceptance against exact enumeration -------------------------------------------------
@pytest.mark.parametrize("method", ["metropolis", "heatbath"])
def test_mc_energy_is_exact_within_its_own_error_bar_at_several_temperatures(method):
    m = RAPModel(3, a=(1.0, 1.0), p=(0.5, 0.5, 0.0), seed=1)     # 8 weights, loopy
    assert 0 < m.n_weights <= 12 and not m.is_forest()
    z = []
    for k, beta in enumerate((0.3, 0.8, 1.5, 2.5)):
        ex = exact_enumeration(m, beta)
        r = run_mc(m, beta, sweeps=20000, method=method, seed=40 + k)
        assert r.converged and r.energy_err > 0
        z.append((r.energy - ex["energy"]) / r.energy_err)
    assert max(abs(v) for v in z) < 4.0, z


def test_annealing_reaches_the_exact_ground_state_of_small_instances():
    betas = beta_schedule(0.1, 5.0, 30)
    hits = 0
    for seed in range(6):
        m = RAPModel(3, a=(0.8, 0.8), p=(0.3, 0.3, 0.0), seed=seed)
        if not 0 < m.n_weights <= 20:
            continue
        ground = exact_enumeration(m, 1.0)["levels"].min() / m.n_weights
        assert ground == pytest.approx(-m.alpha)                # the planted state
        hits += anneal(m, betas, sweeps_per_temp=20, seed=seed).final_energy == pytest.approx(ground)
    assert hits >= 5


def test_temperatures_are_numbers_and_annealing_cools():
    """run_bp(m, "1") and run_bp(m, True) ran (float() takes both), and
    anneal(m, [2.0, 1.0]) / beta_schedule(2, 0.1) heated while AnnealConfig
    refuses beta_end < beta_start."""
    m = RAPModel(15, a=(0.6, 0.5), p=(0.3, 0.2, 0.1), seed=4)
    for beta in ("1", True, b"1", None):
        with pytest.raises(DeepglassError, match="beta must be a number"):
            run_bp(m, beta)
        with pytest.raises(DeepglassError, match="beta must be a number"):
            run_mc(m, beta, sweeps=10)
    assert run_bp(m, np.float32(1.0)) is not None
    with pytest.raises(DeepglassError, match=r"annealing cools: beta_end \(0.1\) must be >= "
                                             r"beta_start \(2.0\)"):
        beta_schedule(2.0, 0.1, 4)
    with pytest.raises(DeepglassError, match="betas must not decrease: annealing cools"):
        anneal(m, [2.0, 1.0])
    assert len(beta_schedule(0.5, 0.5, 3)) == 3          # a constant schedule is fine


@pytest.mark.parametrize("call,msg", [
    # refused by their own parameter, not by int() / float() or a later step
    (lambda m: anneal(m, "abc"), "betas must be a non-empty list of finite values >= 0, got 'abc'"),
    (lambda m: anneal(m, ["1", "2"]), "betas must be a non-empty list of finite values"),
    (lambda m: anneal(m, [[1.0], [1.0, 2.0]]), "betas must be a non-empty list of finite"),
    # bp_temperature_scan named run_mc's own 'sweeps'
    (lambda m: bp_temperature_scan(m, [1.0], mc_sweeps=1),
     r"mc_sweeps must be 0 \(no Monte Carlo\) or >= 2, got 1"),
    (lambda m: cooling_table(pd.DataFrame()),
     "finals must be cooling_study's finals table .*missing columns: final_energy, "
     "ground_energy, sweeps_per_temp"),
    (lambda m: cooling_table("x"),
     "finals must be cooling_study's finals table"),
    # accepted before: a negative or fractional count of paths, a text N
    (lambda m: expected_factors(-1, (0.5, 0.5), (0, 0, 0)),
     "N must be an integer >= 1, got -1"),
    (lambda m: expected_factors("8", (0.5, 0.5), (0, 0, 0)),
     "N must be an integer >= 1, got '8'"),
    (lambda m: expected_factors(2.5, (0.5, 0.5), (0, 0, 0)),
     "N must be an integer >= 1, got 2.5"),
    # one temperature never reaches beta_end (the CLI's --n-temps needs 2)
    (lambda m: beta_schedule(0.1, 1.0, 1), "n_temps must be an integer >= 2, got 1"),
])
def test_api_bad_values_name_their_parameter(call, msg):
    """Raw errors (a float() of a string, a pandas KeyError), another parameter's
    name, or a meaningless result: now a one-line error naming the parameter."""
    m = RAPModel(8, a=(0.5, 0.5), p=(0, 0, 0), seed=0)
    with pytest.raises(DeepglassError, match=msg):
        call(m)

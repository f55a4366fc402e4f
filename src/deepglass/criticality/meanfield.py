"""Naive mean-field theory of a weighted net (SPEC §7, paper 002).

Binary units ``s in {-1,+1}^N`` with symmetric couplings ``W`` and a uniform
field ``h``::

    H(s) = -(1/(2N)) s^T W s - h sum_i s_i

The saddle point of the Hubbard-Stratonovich representation (paper 002,
"More magic") gives the naive mean-field equations

    V_i = tanh( beta (sum_j W_ij V_j / N + h) )                      (MF)

with free energy per unit (the constant ``-T ln 2`` dropped)

    f = (1/(2N^2)) V^T W V - (T/N) sum_i ln cosh( beta (sum_j W_ij V_j/N + h) ),

magnetization ``m = mean(V)``, overlap ``q = mean(V^2)`` and susceptibility
``chi = dm/dh`` from the linear-response system

    (I - beta D W / N) dV/dh = beta D 1,      D = diag(1 - V^2).

At ``h = 0`` the paramagnetic solution ``V = 0`` loses stability at
``beta_c = N / lambda_max(W)``, so ``T_c = lambda_max(W) / N``.

``W`` is anything :func:`coupling_operator` takes (dense, sparse or torch
matrices, ``LinearOperator``, a layer block, a whole network's ``SignedGraph``
with ``As = A + A^T`` applied matrix-free).  Everything here uses only products
``W x``: Lanczos (ARPACK ``eigsh``) for ``lambda_max``, a damped fixed-point
iteration followed by Newton steps whose linear systems GMRES solves, and
MINRES on the symmetrized linear-response system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse.linalg as spla

from ..errors import DeepglassError, check_count, check_seed
from .couplings import (DENSE_EIG_LIMIT, GRAPH_EXPLICIT_EDGES, Couplings,  # noqa: F401 (re-exported)
                        bipartite_coupling, coupling_operator, critical_temperature, curie_weiss,
                        lambda_max, layer_coupling, top_eigenpair)

__all__ = [
    "Couplings", "coupling_operator", "bipartite_coupling", "layer_coupling",
    "lambda_max", "critical_temperature", "free_energy", "MeanFieldSolution",
    "solve_mean_field", "susceptibility", "curie_weiss", "ordered_pattern",
]


# ----------------------------------------------------------------------------------
# Mean-field equations
# ----------------------------------------------------------------------------------
def _number(name: str, v, *, positive: bool = False) -> float:
    """``v`` as a finite float (``> 0`` if ``positive``), or a one-line error."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise DeepglassError(f"{name} must be a number, got {v!r}")
    x = float(v)
    if not np.isfinite(x) or (positive and not x > 0):
        raise DeepglassError(f"{name} must be {'positive and ' if positive else ''}finite, "
                             f"got {v!r}")
    return x


def _logcosh(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ax + np.log1p(np.exp(-2.0 * ax)) - np.log(2.0)


def free_energy(W: Any, V: np.ndarray, T: float, h: float = 0.0) -> np.ndarray | float:
    """Mean-field free energy per unit (SPEC §7), for ``V`` of shape (n,) or (n, R).

    ``f = V^T W V / (2N^2) - (T/N) sum_i ln cosh(beta (W V / N + h)_i)``; one
    product ``W V``.

    Parameters
    ----------
    W : couplings, see :func:`coupling_operator`
    V : ndarray, shape (n,) or (n, R)
        Local magnetizations (one or ``R`` configurations).
    T : float
        Temperature, finite and > 0.
    h : float, default 0.0
        Uniform field.  Returns a float, or an ndarray ``(R,)`` for ``V`` (n, R).
    """
    C = coupling_operator(W)
    T, h = _number("T", T, positive=True), _number("h", h)
    V = np.asarray(V, dtype=np.float64)
    if V.ndim not in (1, 2) or V.shape[0] != C.n or not np.isfinite(V).all():
        raise DeepglassError(f"V must be finite, of shape ({C.n},) or ({C.n}, R), got {V.shape}")
    WV = C.matvec(V)
    return _free_energy(C.n, V, WV, T, h)


def _free_energy(n, V, WV, T, h):
    field_ = WV / n + h
    quad = np.sum(V * WV, axis=0) / (2.0 * n * n)
    return quad - (T / n) * np.sum(_logcosh(field_ / T), axis=0)


@dataclass
class MeanFieldSolution:
    """The lowest-free-energy solution of the mean-field equations at (T, h).

    Attributes
    ----------
    T, h : float
    V : ndarray, shape (n,)
        Local magnetizations.
    m, q, f : float
        ``mean(V)``, ``mean(V^2)``, free energy per unit.
    residual : float
        ``max |V - tanh(beta (W V/N + h))|``.
    converged : bool
    iterations : int
        Fixed-point iterations plus Newton steps of the kept solution.
    start : str
        The start that led to it.
    candidates : pandas.DataFrame
        One row per start: start, m, q, f, residual, converged, iterations.
    """

    T: float
    h: float
    V: np.ndarray
    m: float
    q: float
    f: float
    residual: float
    converged: bool
    iterations: int
    start: str
    candidates: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def _residual(C: Couplings, V: np.ndarray, beta: float, h: float):
    WV = C.matvec(V)
    return V - np.tanh(beta * (WV / C.n + h)), WV


def _newton(C: Couplings, V: np.ndarray, beta: float, h: float, tol: float,
            max_steps: int) -> tuple[np.ndarray, float, int]:
    """Newton on ``F(V) = V - tanh(beta(WV/N + h))`` with backtracking.

    Jacobian ``J = I - beta D W / N`` with ``D = diag(1 - tanh^2)`` applied
    matrix-free; each step solves ``J dV = -F`` with GMRES only to the relative
    accuracy ``min(0.1, |F|)`` (inexact Newton, Eisenstat & Walker 1996: still
    quadratic near the solution, without hundreds of products per step far
    from it).
    """
    n = C.n
    F, WV = _residual(C, V, beta, h)
    res = float(np.max(np.abs(F)))
    steps = 0
    while res > tol and steps < max_steps:
        t = np.tanh(beta * (WV / n + h))
        D = 1.0 - t * t
        J = spla.LinearOperator((n, n), matvec=lambda x: x - beta * D * C.matvec(x) / n,
                                dtype=np.float64)
        dV, info = spla.gmres(J, -F, rtol=max(1e-14, min(0.1, res)), atol=0.0,
                              restart=min(n, 50), maxiter=4)
        step = 1.0
        improved = False
        for _ in range(30):
            Vn = np.clip(V + step * dV, -1.0, 1.0)
            Fn, WVn = _residual(C, Vn, beta, h)
            rn = float(np.max(np.abs(Fn)))
            if rn < res:
                improved = True
                break
            step *= 0.5
        steps += 1
        if not improved:
            break
        V, F, WV, res = Vn, Fn, WVn, rn
    return V, res, steps


def _starts(C: Couplings, names: Sequence[str], rng: np.random.Generator,
            V0: np.ndarray | None, eig: bool) -> tuple[list[str], np.ndarray]:
    n = C.n
    cols, labels = [], []
    u = None
    for name in names:
        if name == "up":
            cols.append(np.ones(n))
        elif name == "down":
            cols.append(-np.ones(n))
        elif name == "random":
            cols.append(rng.uniform(-1.0, 1.0, n))
        elif name == "zero":
            cols.append(np.full(n, 1e-3))
        elif name in ("eig+", "eig-"):
            if not eig:
                continue
            if u is None:
                u = top_eigenpair(C)[1]
                u = np.sign(u) * np.maximum(np.abs(u) / np.max(np.abs(u)), 0.05)
            cols.append(u if name == "eig+" else -u)
        else:
            raise DeepglassError(f"unknown start {name!r}; use up, down, random, zero, eig+, eig-")
        labels.append(name)
    if V0 is not None:
        V0 = np.asarray(V0, dtype=np.float64)
        if V0.shape != (n,) or not np.isfinite(V0).all():
            raise DeepglassError(f"V0 must be finite, of shape ({n},), got {V0.shape}"
                                 + ("" if V0.shape != (n,) else " with NaN or inf entries"))
        cols.append(np.clip(V0, -1.0, 1.0))
        labels.append("given")
    if not cols:
        raise DeepglassError("no start configurations")
    return labels, np.stack(cols, axis=1)


def solve_mean_field(W: Any, T: float, h: float = 0.0, *,
                     starts: Sequence[str] = ("up", "down", "eig+", "eig-", "random"),
                     V0: np.ndarray | None = None, damping: float = 0.5, tol: float | None = None,
                     max_iter: int = 1000, newton_steps: int = 50, seed: int = 0) -> MeanFieldSolution:
    """Solve the naive mean-field equations (MF) at temperature ``T`` and field ``h``.

    Algorithm: all starts advance together (one product ``W X`` per step for an ``n x R``
    block) by the damped fixed-point iteration ``V <- (1 - d) V + d tanh(beta (W V / N + h))``
    until the residual ``max |F|`` is below ``tol`` or ``max_iter`` steps.  A start whose
    residual is below ``1e-3`` but shrank by less than half over the last 10 steps (linear
    convergence slowed down, as near ``T_c``) gets Newton steps once (if they stall, the damped
    iteration resumes), and a start still unconverged after ``max_iter`` steps gets them at the
    end: Newton (inexact GMRES on the Jacobian ``I - beta D W / N``, backtracking on
    ``max |F|``), which removes critical slowing down.  Far from a solution (frustrated
    couplings at low T) Newton can stall where the damped iteration still converges, hence this
    order.  Among converged solutions the one with the lowest free energy is kept (ties: first
    start): the least of those the starts reach, not necessarily the global minimum; on
    frustrated couplings at low T a lower one can lie elsewhere (6 of 1,800 points of random
    signed couplings at T = 0.3 T_c), which more starts (``random`` repeated draws anew)
    search for.  Cost: O((max_iter + newton_steps * gmres_iters) * cost(W x)).

    Parameters
    ----------
    W : couplings, see :func:`coupling_operator`
    T : float
        Temperature, > 0.
    h : float
        Uniform external field.
    starts : sequence of str
        ``up`` (all +1), ``down`` (all -1), ``random`` (uniform in [-1, 1]),
        ``zero`` (near the paramagnet), ``eig+``/``eig-`` (the sign pattern of
        the top eigenvector of ``W``: the ordered state of a signed network).
    V0 : ndarray, optional
        An extra start (e.g. the solution at a neighbouring temperature).
    damping : float in (0, 1], default 0.5
    tol : float, optional
        Residual tolerance; default 1e-12 (float64 couplings) or ~100 eps of a
        float32 graph.
    max_iter, newton_steps : int, default 1000 and 50
        Fixed-point steps (>= 1) and Newton steps per Newton call (>= 0).
    seed : int, default 0
        Seed (non-negative) of the random start.

    Returns
    -------
    MeanFieldSolution

    Raises
    ------
    DeepglassError
        Invalid couplings, ``T``, ``h``, settings, start name or ``V0`` shape.
    """
    T = _number("temperature T", T, positive=True)
    h = _number("field h", h)
    damping = _number("damping", damping)
    if not 0 < damping <= 1:
        raise DeepglassError(f"damping must be in (0, 1], got {damping}")
    if tol is not None:
        tol = _number("tol", tol, positive=True)
    max_iter = check_count(max_iter, "max_iter", 1)
    newton_steps = check_count(newton_steps, "newton_steps", 0)
    if isinstance(starts, str):
        starts = [starts]
    check_seed(seed)
    C = coupling_operator(W)
    tol = tol if tol is not None else max(1e-12, 100.0 * C.eps)
    beta = 1.0 / T
    rng = np.random.default_rng(seed)
    labels, V = _starts(C, list(starts), rng, V0, eig=True)
    R = V.shape[1]
    n = C.n
    iters = np.zeros(R, dtype=int)
    active = np.ones(R, dtype=bool)
    res = np.full(R, np.inf)
    history: list[np.ndarray] = []
    tried = np.zeros(R, dtype=bool)
    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Va = V[:, idx]
        target = np.tanh(beta * (C.matvec(Va) / n + h))
        r = np.max(np.abs(Va - target), axis=0)
        res[idx] = r
        done = r <= tol
        upd = idx[~done]
        V[:, upd] = (1.0 - damping) * Va[:, ~done] + damping * target[:, ~done]
        iters[upd] += 1
        active[idx[done]] = False
        history.append(res.copy())
        if len(history) > 10:
            slow = active & ~tried & (res < 1e-3) & (res > 0.5 * history[-11])
            for j in np.flatnonzero(slow):
                # Newton once; if it stalls, the damped iteration goes on from
                # its (never worse) end point
                V[:, j], res[j], k = _newton(C, V[:, j], beta, h, tol, newton_steps)
                iters[j] += k
                tried[j] = True
                active[j] = res[j] > tol
    for j in np.flatnonzero(active & ~tried):
        V[:, j], res[j], k = _newton(C, V[:, j], beta, h, tol, newton_steps)
        iters[j] += k
    WV = C.matvec(V)
    res = np.max(np.abs(V - np.tanh(beta * (WV / n + h))), axis=0)
    f = _free_energy(n, V, WV, T, h)
    conv = res <= max(tol, 10.0 * tol)
    cand = pd.DataFrame({"start": labels, "m": V.mean(0), "q": (V * V).mean(0), "f": f,
                         "residual": res, "converged": conv, "iterations": iters})
    pool = np.flatnonzero(conv) if conv.any() else np.arange(R)
    # lowest free energy; a relative margin keeps the first of degenerate states
    fmin = f[pool].min()
    best = int(pool[np.flatnonzero(f[pool] <= fmin + 1e-12 * max(1.0, abs(fmin)))[0]])
    Vb = V[:, best].copy()
    return MeanFieldSolution(T=T, h=float(h), V=Vb, m=float(Vb.mean()), q=float(np.mean(Vb * Vb)),
                             f=float(f[best]), residual=float(res[best]),
                             converged=bool(conv[best]), iterations=int(iters[best]),
                             start=labels[best], candidates=cand)


def susceptibility(W: Any, sol: MeanFieldSolution, *, tol: float = 1e-12,
                   maxiter: int | None = None, direction: np.ndarray | None = None) -> float:
    """Susceptibility ``chi = dm/dh`` at a mean-field solution (SPEC §7).

    Solves ``(I - beta D W / N) x = beta D e`` with ``D = diag(1 - V^2)`` through its symmetric
    form: with ``x = D^{1/2} y``, ``(I - beta D^{1/2} W D^{1/2} / N) y = beta D^{1/2} e``,
    solved by MINRES (one product ``W x`` per iteration); ``chi = mean(e * x)``.  The matrix is
    positive definite at a stable solution; its smallest eigenvalue ``~ |T - T_c|`` is what
    makes ``chi`` diverge.

    ``direction`` ``e`` is the pattern of the probing field (``h_i = h e_i``) and of the
    measured magnetization ``mean(e * V)``; default all ones (the uniform ``chi`` of SPEC §7).
    On a signed network the top eigenvector of ``W`` has mixed signs and is nearly orthogonal
    to ``1``, so the uniform ``chi`` barely sees ``T_c``; ``e = sign(u)`` (the gauge of the
    ordered state, :func:`ordered_pattern`) gives the staggered susceptibility that diverges
    there (for ``W = S W0 S``, ``S = diag(e)``, it equals the uniform ``chi`` of ``W0``).

    Parameters
    ----------
    W : couplings
        As :func:`~deepglass.criticality.couplings.coupling_operator` takes
        them (the ones ``sol`` was solved with).
    sol : MeanFieldSolution
        From :func:`solve_mean_field` on ``W``.
    tol : float
        MINRES relative tolerance (> 0).
    maxiter : int, optional
        MINRES iterations (default SciPy's).
    direction : ndarray (N,), optional
        The field pattern ``e`` (default all ones).

    Returns
    -------
    float
        ``chi``: diverges as ``T -> T_c`` (at ``T_c`` a large finite value of
        the singular solve, no ``inf``); 0 where every ``|V_i| = 1``.

    Raises
    ------
    DeepglassError
        ``sol`` of another size than ``W``, a non-positive ``tol``, a
        ``direction`` of another shape.

    Notes
    -----
    O(MINRES iterations x one product ``W x``).
    """
    if not isinstance(sol, MeanFieldSolution):
        raise DeepglassError(f"sol must be a MeanFieldSolution, got {type(sol).__name__}")
    tol = _number("tol", tol, positive=True)
    C = coupling_operator(W)
    n = C.n
    if np.shape(sol.V) != (n,):
        raise DeepglassError(f"sol was solved on {np.size(sol.V)} units, W has {n}")
    e = np.ones(n) if direction is None else np.asarray(direction, dtype=np.float64)
    if e.shape != (n,):
        raise DeepglassError(f"direction must have shape ({n},), got {e.shape}")
    beta = 1.0 / sol.T
    d = np.sqrt(np.clip(1.0 - sol.V * sol.V, 0.0, 1.0))
    if not np.any(d > 0):
        return 0.0
    M = spla.LinearOperator((n, n), matvec=lambda y: y - beta * d * C.matvec(d * y) / n,
                            dtype=np.float64)
    b = beta * d * e
    y, info = spla.minres(M, b, rtol=max(tol, C.eps), maxiter=maxiter or 10 * n + 100)
    if info != 0:
        # fall back to GMRES on the same system (indefinite near an unstable state)
        y, info = spla.gmres(M, b, rtol=max(tol, C.eps), atol=0.0, maxiter=200)
    return float(np.mean(e * d * y))


def ordered_pattern(W: Any) -> np.ndarray:
    """``sign(u)`` of the top eigenvector ``u`` of ``W`` (zeros as +1): the
    gauge in which the state that orders at ``T_c`` is uniform.

    ``W``: couplings of :func:`coupling_operator` (a :class:`Couplings` reuses its
    cached :func:`top_eigenpair`).  Returns an ndarray ``(n,)`` of +-1.0.
    """
    u = top_eigenpair(coupling_operator(W))[1]
    return np.where(u < 0, -1.0, 1.0)

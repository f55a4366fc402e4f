"""Couplings of a weighted net and their spectrum (SPEC §7, paper 002).

``W`` may be a dense array, a SciPy sparse matrix, a SciPy ``LinearOperator``
(assumed symmetric), a torch tensor, the bipartite block of one layer
(:func:`bipartite_coupling`) or a whole network's
:class:`deepglass.graph.SignedGraph` (couplings ``As = A + A^T``, applied
matrix-free through ``sym_matvec``).  :func:`coupling_operator` wraps any of
them as a :class:`Couplings` operator seen only through products ``W x``;
:func:`lambda_max` runs Lanczos (ARPACK ``eigsh``) on it, and the mean-field
critical temperature is ``T_c = lambda_max(W) / N``
(:func:`critical_temperature`).  The solver of the mean-field equations lives
in :mod:`deepglass.criticality.meanfield`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg as spla

from ..errors import DeepglassError, check_count, check_seed, first_line

__all__ = ["Couplings", "coupling_operator", "bipartite_coupling", "layer_coupling",
           "lambda_max", "critical_temperature", "curie_weiss", "top_eigenpair"]

GRAPH_EXPLICIT_EDGES = 2_000_000  # graphs up to this size are multiplied as explicit CSR
DENSE_EIG_LIMIT = 12  # below this size ARPACK cannot run; use the explicit matrix
#: explicit couplings (dense, sparse, a graph's CSR) up to this size take the dense
#: eigensolver under method="auto": exact, about 1 s at n = 2048, where Lanczos can
#: crawl on a crowded top of the spectrum (W = -X X^T: minutes at n = 1500)
DENSE_AUTO_LIMIT = 2048
#: explicit couplings up to this size fall back to the dense eigensolver where
#: Lanczos does not converge (larger ones: a one-line error)
DENSE_FALLBACK_LIMIT = 4096
#: |lambda_max| <= ZERO_EIG_RTOL * eps * ||W||_F is round-off of 0 (dense eigh of
#: W = -1 1^T leaves up to 13 eps ||W||_F at N = 3000): lambda_max = 0, no transition
ZERO_EIG_RTOL = 64.0

# ----------------------------------------------------------------------------------
# Coupling operators
# ----------------------------------------------------------------------------------
def is_signed_graph(obj: Any) -> bool:
    return hasattr(obj, "sym_matvec") and hasattr(obj, "n_nodes")


class Couplings:
    """A symmetric coupling matrix ``W`` seen only through products ``W x``.

    Build one with :func:`coupling_operator`.  ``matvec`` takes a float64 array
    of shape ``(n,)`` or ``(n, R)`` and returns ``W x`` in float64.

    Parameters
    ----------
    n : int
        Number of units.
    matvec : callable
        ``x -> W x`` for float64 ``x`` of shape ``(n,)`` or ``(n, R)``.
    kind : str
        What ``W`` is (see Attributes).
    eps : float, default float64 machine epsilon
    explicit : ndarray or scipy.sparse matrix, optional
        The matrix itself, where there is one (dense eigensolver, hashing).
    source : object, optional
        What the couplings were built from (a matrix, an operator, a graph).

    Attributes
    ----------
    n : int
        Number of units ``N``.
    kind : str
        ``"dense"``, ``"sparse"``, ``"operator"`` or ``"graph"``.
    eps : float
        Relative precision of the products (float32 graphs give ~1e-7).
    source : object
    n_matvec : int
        Products ``W x`` so far (a block of ``R`` columns counts ``R``).

    References
    ----------
    SPEC §7.
    """

    def __init__(self, n: int, matvec, kind: str, eps: float = np.finfo(float).eps,
                 explicit=None, source: Any = None):
        self.n = int(n)
        self._matvec = matvec
        self.kind = kind
        self.eps = float(eps)
        self._explicit = explicit
        self.source = source
        self.n_matvec = 0
        self._eig: tuple[float, np.ndarray] | None = None

    def matvec(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        self.n_matvec += 1 if x.ndim == 1 else x.shape[1]
        return np.asarray(self._matvec(x), dtype=np.float64)

    def linear_operator(self) -> spla.LinearOperator:
        """``W`` as a SciPy ``LinearOperator`` (symmetric, float64)."""
        return spla.LinearOperator((self.n, self.n), matvec=self.matvec, matmat=self.matvec,
                                   rmatvec=self.matvec, dtype=np.float64)

    def explicit(self) -> np.ndarray:
        """The dense matrix (small ``n`` only: built column by column otherwise)."""
        if self._explicit is not None:
            e = self._explicit
            return e.toarray() if scipy.sparse.issparse(e) else np.asarray(e, dtype=np.float64)
        if self.n > 4096:
            raise DeepglassError(f"refusing to build a dense {self.n} x {self.n} coupling matrix")
        return self.matvec(np.eye(self.n))

    def set_top_eigenpair(self, lam: float, u: np.ndarray) -> None:
        """Record a known top eigenpair (e.g. read back from a run directory),
        so that :func:`top_eigenpair` does not run Lanczos again.

        Parameters
        ----------
        lam : float
            ``lambda_max`` (not checked against ``W``).
        u : array_like, shape (n,)
            Its eigenvector (stored as given, float64).

        Raises
        ------
        DeepglassError
            ``u`` of another shape than ``(n,)``.
        """
        u = np.asarray(u, dtype=np.float64)
        if u.shape != (self.n,):
            raise DeepglassError(f"eigenvector of shape {u.shape} for {self.n} units")
        self._eig = (float(lam), u)

    def __repr__(self) -> str:
        return f"Couplings(n={self.n}, kind={self.kind!r})"


def _check_square_symmetric(W, what: str) -> None:
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise DeepglassError(f"{what} must be a square matrix, got shape {tuple(W.shape)}")
    if W.shape[0] == 0:
        raise DeepglassError(f"{what} is empty")


def coupling_operator(W: Any, *, check_symmetric: bool = True,
                      explicit_edges: int = GRAPH_EXPLICIT_EDGES) -> Couplings:
    """Wrap couplings ``W`` (SPEC §7) as a :class:`Couplings` operator.

    Parameters
    ----------
    W : array_like, scipy.sparse matrix, LinearOperator, torch.Tensor, SignedGraph or Couplings
        Symmetric couplings.  A ``SignedGraph`` (anything with ``n_nodes`` and
        ``sym_matvec``) gives ``W = As = A + A^T`` of the whole network.
    check_symmetric : bool
        Verify ``W == W^T`` for explicit matrices (to 1e-8 relative).
    explicit_edges : int
        A ``SignedGraph`` with at most this many edges is turned into its
        explicit float64 CSR ``As`` once (``to_scipy_sym``): products are then
        a fast sparse kernel instead of one torch call per layer block.  Larger
        graphs stay matrix-free (SPEC §7).  0 keeps every graph matrix-free.

    Returns
    -------
    Couplings
        ``W`` itself when it already is one.

    Raises
    ------
    DeepglassError
        For a complex, non-square, empty, non-finite or asymmetric matrix, a
        torch module or an unreadable object; ``explicit_edges`` below 0.

    References
    ----------
    SPEC §7 (couplings ``W``; matrix-free for large graphs).
    """
    check_count(explicit_edges, "explicit_edges", least=0)
    if isinstance(W, Couplings):
        return W
    if is_signed_graph(W):
        if 0 < W.n_edges <= explicit_edges:
            As = W.to_scipy_sym().astype(np.float64)
            return Couplings(As.shape[0], lambda x: As @ x, "graph", explicit=As, source=W)
        return _graph_couplings(W)
    if _is_complex(W):
        raise DeepglassError("couplings must be real, got a complex matrix (mean field is "
                             "defined for real symmetric W)")
    if isinstance(W, spla.LinearOperator):
        if W.shape[0] != W.shape[1]:
            raise DeepglassError(f"couplings must be square, got shape {W.shape}")
        op = W
        return Couplings(W.shape[0], lambda x: op @ x, "operator", source=W)
    if scipy.sparse.issparse(W):
        W = scipy.sparse.csr_matrix(W, dtype=np.float64)
        _check_square_symmetric(W, "couplings")
        if not np.all(np.isfinite(W.data)):
            raise DeepglassError("couplings contain NaN or infinite entries")
        if check_symmetric:
            diff = abs(W - W.T).max() if W.nnz else 0.0
            scale = abs(W).max() if W.nnz else 1.0
            if diff > 1e-8 * max(scale, 1e-300):
                raise DeepglassError(f"couplings must be symmetric (max |W - W^T| = {diff:.3g}); "
                                     "for a directed adjacency A use A + A.T (--symmetrize)")
        return Couplings(W.shape[0], lambda x: W @ x, "sparse", explicit=W, source=W)
    if type(W).__module__.startswith("torch"):
        if not hasattr(W, "detach"):    # a module, not a tensor
            raise DeepglassError(f"couplings must be a matrix or a SignedGraph, got a "
                                 f"{type(W).__name__}: a network's couplings are its graph's "
                                 "(SignedGraph.from_module)")
        W = W.detach().cpu().double().numpy()
    try:
        W = np.asarray(W, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DeepglassError(f"cannot read couplings of type {type(W).__name__}: {exc}") from None
    _check_square_symmetric(W, "couplings")
    if not np.all(np.isfinite(W)):
        raise DeepglassError("couplings contain NaN or infinite entries")
    if check_symmetric:
        diff = float(np.max(np.abs(W - W.T)))
        if diff > 1e-8 * max(float(np.max(np.abs(W))), 1e-300):
            raise DeepglassError(f"couplings must be symmetric (max |W - W^T| = {diff:.3g}); "
                                 "for a directed adjacency A use A + A.T (--symmetrize)")
    return Couplings(W.shape[0], lambda x: W @ x, "dense", explicit=W, source=W)


def couplings_digest(C: Couplings) -> str | None:
    """sha256 (16 hex digits) of the couplings' values: a network's weights
    (its graph's blocks) or an explicit matrix's entries, so that a run
    directory resumed on another file of the same name is another run.  None
    for a matrix-free operator (nothing to hash).  O(stored values)."""
    import hashlib

    src = C.source if is_signed_graph(C.source) else C._explicit
    if src is None:
        return None
    h = hashlib.sha256()
    if is_signed_graph(src):
        from ..experiments.real_gauge import weights_digest

        return weights_digest(None, src)
    if scipy.sparse.issparse(src):
        src = src.tocsr()
        parts = [np.asarray(src.shape), src.indptr, src.indices, src.data]
    else:
        parts = [np.asarray(np.shape(src)), np.ascontiguousarray(src, dtype=np.float64)]
    for a in parts:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _is_complex(W: Any) -> bool:
    dt = getattr(W, "dtype", None)
    if dt is not None:
        if getattr(dt, "is_complex", False) is True:          # a torch dtype
            return True
        try:
            return np.dtype(dt).kind == "c"
        except TypeError:
            return False
    if isinstance(W, (list, tuple)):
        try:
            return np.asarray(W).dtype.kind == "c"
        except (TypeError, ValueError):
            return False
    return isinstance(W, complex)


def _graph_couplings(g) -> Couplings:
    import torch

    n = int(g.n_nodes)
    dtype = getattr(g, "dtype", torch.float32)
    device = getattr(g, "device", "cpu")
    eps = float(torch.finfo(dtype).eps) if dtype.is_floating_point else np.finfo(float).eps

    def mv(x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(x.T), dtype=dtype, device=device)
        with torch.no_grad():
            out = g.sym_matvec(t)
        return out.detach().cpu().double().numpy().T

    explicit = None
    return Couplings(n, mv, "graph", eps=eps, explicit=explicit, source=g)


def bipartite_coupling(w: Any) -> spla.LinearOperator:
    """The symmetric coupling ``[[0, w], [w^T, 0]]`` of one layer (SPEC §7).

    Parameters
    ----------
    w : array_like or torch.Tensor, shape (n_in, n_out)
        ``w[i, j]`` is the weight of the edge from input unit ``i`` to output
        unit ``j`` (for ``torch.nn.Linear`` pass ``layer.weight.T``).

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Of size ``n_in + n_out``; units ``0..n_in-1`` are the inputs.  Each
        product costs two matrix-vector products with ``w`` (O(n_in n_out)).

    Raises
    ------
    DeepglassError
        ``w`` not a 2-d matrix of finite numbers, or with an empty dimension.
    """
    if type(w).__module__.startswith("torch") and hasattr(w, "detach"):
        w = w.detach().cpu().double().numpy()
    if not scipy.sparse.issparse(w):
        try:
            w = np.asarray(w, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DeepglassError(f"w must be a 2-d matrix of numbers, got {type(w).__name__}: "
                                 f"{first_line(exc)}") from None
    if w.ndim != 2 or 0 in w.shape:
        raise DeepglassError(f"a layer block needs a 2-d weight matrix, got shape {tuple(w.shape)}")
    if not np.all(np.isfinite(w.data if scipy.sparse.issparse(w) else w)):
        raise DeepglassError("w (the layer's weights) contains NaN or infinite entries")
    a, b = w.shape
    wt = w.T

    def mv(x):
        x = np.asarray(x, dtype=np.float64)
        top = w @ x[a:]
        bottom = wt @ x[:a]
        return np.concatenate([top, bottom], axis=0)

    return spla.LinearOperator((a + b, a + b), matvec=mv, matmat=mv, rmatvec=mv,
                               dtype=np.float64)


def layer_coupling(module: Any) -> spla.LinearOperator:
    """:func:`bipartite_coupling` of a ``torch.nn.Linear`` layer's weight (SPEC §7).

    Parameters
    ----------
    module : torch.nn.Module
        A module with a 2-d ``weight`` of shape ``(out, in)`` (``nn.Linear``);
        the block is built from ``weight.T``, inputs first.

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Of size ``in + out``.

    Raises
    ------
    DeepglassError
        A module without a 2-d weight (a convolution: use the network's
        ``SignedGraph``).
    """
    w = getattr(module, "weight", None)
    if w is None or w.ndim != 2:
        raise DeepglassError(
            f"layer {type(module).__name__} has no 2-d weight; the bipartite block is defined "
            "for dense layers (use the whole network's SignedGraph for convolutions)")
    return bipartite_coupling(w.detach().T)


# ----------------------------------------------------------------------------------
# Spectrum and critical temperature
# ----------------------------------------------------------------------------------
def top_eigenpair(C: Couplings, tol: float | None = None, seed: int = 0,
                  maxiter: int | None = None, method: str = "auto") -> tuple[float, np.ndarray]:
    """``(lambda_max, u)``: the largest eigenvalue of ``C`` and its unit
    eigenvector, signed so that ``sum(u) >= 0`` (see :func:`lambda_max`).

    The pair is cached on ``C`` (``method="auto"`` reuses it, whatever method
    found it, and ignores ``tol`` / ``maxiter`` then), so the solver's starts
    and the ordered-state gauge see the same ``u`` as ``T_c``.

    Parameters
    ----------
    C : Couplings
        From :func:`coupling_operator`.
    tol : float in (0, 1), optional
        Relative accuracy (default ``max(1e-10, 10 eps)``).
    seed : int, default 0
        Seed of the Lanczos start vector.
    maxiter : int >= 1, optional
        ARPACK iteration limit.
    method : {"auto", "lanczos", "dense"}, default "auto"
        As :func:`lambda_max`.

    Returns
    -------
    lam : float
        ``lambda_max`` (0 within round-off of 0).
    u : ndarray, shape (n,)
        Unit eigenvector.

    Raises
    ------
    DeepglassError
        An invalid ``method``, ``tol`` or ``maxiter``; Lanczos not converging
        on a matrix-free or large operator, or failing.
    """
    if not isinstance(C, Couplings):
        raise DeepglassError(f"C must be Couplings (coupling_operator(W)), not "
                             f"{type(C).__name__}; lambda_max(W) takes a matrix")
    seed = check_seed(seed)
    if C._eig is not None and method == "auto":
        return C._eig
    if method not in ("auto", "lanczos", "dense"):
        raise DeepglassError(f"method must be 'auto', 'lanczos' or 'dense', got {method!r}")
    if tol is not None and not (isinstance(tol, (int, float, np.floating, np.integer))
                                and not isinstance(tol, bool) and 0 < tol < 1):
        raise DeepglassError(f"tol must be a number in (0, 1), got {tol!r}")
    if maxiter is not None and (isinstance(maxiter, bool)
                                or not isinstance(maxiter, (int, np.integer)) or maxiter < 1):
        raise DeepglassError(f"maxiter must be a positive integer, got {maxiter!r}")
    dense = method == "dense" or C.n <= DENSE_EIG_LIMIT or (
        method == "auto" and C._explicit is not None and C.n <= DENSE_AUTO_LIMIT)
    fro = None if dense else _frobenius(C)
    if dense:
        lam, u, fro = _dense_top(C)
    elif fro == 0.0:  # zero couplings: every vector is an eigenvector of 0
        lam, u = 0.0, np.full(C.n, 1.0 / np.sqrt(C.n))
    else:
        rtol = tol if tol is not None else max(1e-10, 10 * C.eps)
        v0 = np.random.default_rng(seed).standard_normal(C.n)
        gain = [0.0]  # largest |W x| / |x| of Lanczos's products: a lower bound of ||W||_2

        def mv(x):
            y = C.matvec(x)
            nx = np.linalg.norm(x)
            if nx > 0:
                gain[0] = max(gain[0], float(np.linalg.norm(y)) / float(nx))
            return y

        op = spla.LinearOperator((C.n, C.n), matvec=mv, matmat=mv, rmatvec=mv, dtype=np.float64)
        try:
            vals, vecs = spla.eigsh(op, k=1, which="LA", v0=v0, tol=rtol,
                                    maxiter=maxiter, ncv=min(C.n - 1, 24))
            lam, u = float(vals[0]), vecs[:, 0]
        except spla.ArpackNoConvergence:
            if C._explicit is None or C.n > DENSE_FALLBACK_LIMIT:
                raise DeepglassError(f"Lanczos did not converge for lambda_max (n = {C.n}); "
                                     "raise maxiter or tol") from None
            lam, u, fro = _dense_top(C)     # explicit couplings: the exact answer
        except spla.ArpackError as exc:
            # W v = 0 for a random v (ARPACK: "starting vector is zero"): W = 0
            if gain[0] > 0 or np.any(C.matvec(v0)):
                raise DeepglassError(f"Lanczos failed for lambda_max (n = {C.n}): "
                                     f"{str(exc).strip().splitlines()[0]}") from None
            lam, u = 0.0, np.full(C.n, 1.0 / np.sqrt(C.n))
        if fro is None:  # matrix-free: ||W||_F <= sqrt(n) ||W||_2, estimated by the largest gain
            fro = np.sqrt(C.n) * gain[0]
    if abs(lam) <= ZERO_EIG_RTOL * C.eps * fro:
        # within round-off of 0 (e.g. W = -1 1^T, exact lambda_max = 0): no transition
        lam = 0.0
    if np.sum(u) < 0:  # fix the sign: eigenvector with non-negative sum
        u = -u
    C._eig = (lam, u)
    return lam, u


def _dense_top(C: Couplings) -> tuple[float, np.ndarray, float]:
    """``(lambda_max, u, ||W||_F)`` by the dense symmetric eigensolver (O(n^3))."""
    M = C.explicit()
    vals, vecs = scipy.linalg.eigh(M, subset_by_index=[C.n - 1, C.n - 1])
    return float(vals[-1]), vecs[:, -1], float(np.linalg.norm(M))


def _frobenius(C: Couplings) -> float | None:
    """``||W||_F`` of explicit couplings (None for matrix-free ones)."""
    e = C._explicit
    if e is None:
        return None
    if scipy.sparse.issparse(e):
        return float(np.sqrt(np.sum(np.square(e.data, dtype=np.float64))))
    return float(np.linalg.norm(np.asarray(e, dtype=np.float64)))


def lambda_max(W: Any, *, tol: float | None = None, seed: int = 0, maxiter: int | None = None,
               method: str = "auto") -> float:
    """Largest (algebraic) eigenvalue of the symmetric couplings ``W``.

    Implicitly restarted Lanczos (ARPACK ``eigsh``, ``which="LA"``) on the
    matrix-free operator: cost per iteration one product ``W x`` (O(edges) for
    a network graph) plus O(n * ncv) memory.  ``method="dense"`` uses
    ``scipy.linalg.eigh`` on the explicit matrix (O(n^3), small ``n``);
    ``"auto"`` takes it for explicit couplings (dense, sparse, a graph's CSR)
    of up to :data:`DENSE_AUTO_LIMIT` units, where it is exact and fast and
    Lanczos can crawl on a crowded top of the spectrum (``W = -X X^T``).  Where
    Lanczos does not converge, explicit couplings of up to
    :data:`DENSE_FALLBACK_LIMIT` units get the dense answer, others a one-line
    error.

    Parameters
    ----------
    W : see :func:`coupling_operator`
    tol : float, optional
        Relative accuracy of the eigenvalue (default 1e-10, or ~10 eps of the
        operator's dtype for float32 graphs).
    seed : int
        Seed of the Lanczos start vector.
    maxiter : int, optional
        ARPACK iteration limit.
    method : {"auto", "lanczos", "dense"}, default "auto"

    Returns
    -------
    float
        ``lambda_max(W)``.

    Raises
    ------
    DeepglassError
        Invalid couplings (:func:`coupling_operator`) or settings, or Lanczos
        failing (:func:`top_eigenpair`).

    Notes
    -----
    A value within round-off of 0, ``|lambda_max| <= 64 eps ||W||_F`` (for
    matrix-free couplings ``||W||_F`` is bounded by ``sqrt(N)`` times the
    largest ``|W x| / |x|`` of the Lanczos products), is returned as 0: for
    ``W = -1 1^T`` (exact ``lambda_max = 0``) the solvers leave ~1e-15 of either
    sign.  Zero couplings give 0 (ARPACK cannot start on them).

    References
    ----------
    SPEC §7 (``beta_c = N / lambda_max(W)``, Lanczos for large graphs).

    Examples
    --------
    >>> import numpy as np
    >>> round(lambda_max(np.array([[0.0, 1.0], [1.0, 0.0]])), 9)
    1.0
    """
    return top_eigenpair(coupling_operator(W), tol, seed, maxiter, method)[0]


def critical_temperature(W: Any, **kwargs) -> float:
    """Mean-field critical temperature ``T_c = lambda_max(W) / N`` (SPEC §7).

    Algorithm: the top eigenvalue of ``W`` by Lanczos (ARPACK, a few hundred
    products ``W x``, O(edges) each), or a dense eigensolver for small
    explicit matrices (:func:`lambda_max`).

    Parameters
    ----------
    W : array_like, sparse matrix, LinearOperator, SignedGraph or Couplings
        Symmetric couplings; a :class:`deepglass.graph.SignedGraph` gives the
        whole network's ``W = As = A + A^T``.
    **kwargs
        ``tol``, ``seed``, ``maxiter`` of :func:`lambda_max`.

    Returns
    -------
    float
        ``T_c``.  A non-positive value (0 for zero couplings and for
        ``lambda_max`` within round-off of 0) means the paramagnet is stable
        at every positive temperature (no transition at ``h = 0``).

    Raises
    ------
    DeepglassError
        Couplings that are not square, symmetric, finite and real.

    References
    ----------
    SPEC §7; paper 2 (criticality), the mean-field theory of a weighted net.

    Examples
    --------
    >>> import numpy as np
    >>> round(critical_temperature(2.0 * np.ones((50, 50))), 9)   # Curie-Weiss, J = 2
    2.0
    """
    C = coupling_operator(W)
    return lambda_max(C, **kwargs) / C.n


def curie_weiss(n: int, J: float = 1.0) -> np.ndarray:
    """Curie-Weiss couplings ``W = J 1 1^T`` (``T_c = J``; SPEC §7's exact check).

    Parameters
    ----------
    n : int
        Number of units, >= 1.
    J : float, default 1.0
        Coupling strength.

    Raises
    ------
    DeepglassError
        ``n < 1``.

    Examples
    --------
    >>> curie_weiss(2, J=0.5)
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    n = check_count(n, "n")
    return np.full((n, n), float(J))

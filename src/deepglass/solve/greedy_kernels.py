"""Numba kernels of the explicit greedy descent (paper 000, Algorithm 1): an
indexed binary min-heap over the negative fields keyed by ``(h_i, i)``, one
replica's descent (:func:`_descend`, O(deg(i) log n) per flip) and replicas in
parallel (:func:`_descend_batch`).  Driven by :func:`deepglass.solve.greedy.greedy`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._numba import njit_borrowing, njit_parallel


@njit_borrowing(inline="always")
def _less(h, a, b):
    # strict order on nodes: by field, ties by lowest index
    return h[a] < h[b] or (h[a] == h[b] and a < b)


@njit_borrowing
def _sift_up(heap, pos, h, k):
    node = heap[k]
    while k > 0:
        parent = (k - 1) >> 1
        p = heap[parent]
        if _less(h, node, p):
            heap[k] = p
            pos[p] = k
            k = parent
        else:
            break
    heap[k] = node
    pos[node] = k
    return k


@njit_borrowing
def _sift_down(heap, pos, h, k, size):
    node = heap[k]
    while True:
        c = 2 * k + 1
        if c >= size:
            break
        r = c + 1
        if r < size and _less(h, heap[r], heap[c]):
            c = r
        ch = heap[c]
        if _less(h, ch, node):
            heap[k] = ch
            pos[ch] = k
            k = c
        else:
            break
    heap[k] = node
    pos[node] = k
    return k


@njit_borrowing
def _fields(indptr, indices, data, sigma, h):
    n = sigma.shape[0]
    for i in range(n):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * sigma[indices[k]]
        h[i] = sigma[i] * s


@njit_borrowing
def _heap_fix(heap, pos, h, p, size):
    """Restore the heap order around position p after its key changed."""
    if _sift_up(heap, pos, h, p) == p:
        _sift_down(heap, pos, h, p, size)


@njit_borrowing
def _heap_remove(heap, pos, h, p, size):
    """Remove the element at position p; returns the new size."""
    size -= 1
    pos[heap[p]] = -1
    if p < size:
        last = heap[size]
        heap[p] = last
        pos[last] = p
        _heap_fix(heap, pos, h, p, size)
    return size


@njit(cache=True)
def _descend(indptr, indices, data, sigma, max_flips, tol, record):
    """Algorithm 1 on one replica; ``sigma`` (int8) is flipped in place.

    The min-heap holds exactly the candidate nodes, those with ``h < -tol``
    (``pos[i] = -1`` for the others), keyed by ``(h_i, i)``: its root is the
    most negative field, lowest index first.  A neighbour update is a
    decrease/increase-key, an insertion (field became negative) or a removal
    (field became non-negative), each O(log n); neighbours that stay
    non-negative cost O(1).

    Returns (flips, at_local_min, quad = sigma^T As sigma, trace_nodes,
    trace_fields); the traces are empty unless ``record``.
    """
    n = sigma.shape[0]
    h = np.empty(n, dtype=np.float64)
    heap = np.empty(n, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    cap = 1024 if record else 0
    tr_nodes = np.empty(cap, dtype=np.int64)
    tr_fields = np.empty(cap, dtype=np.float64)
    flips = 0
    local = False
    while True:
        # fresh fields and heap (the outer loop only repeats when the
        # incrementally updated fields drifted across the tolerance)
        _fields(indptr, indices, data, sigma, h)
        size = 0
        for k in range(n):
            if h[k] < -tol:
                heap[size] = k
                pos[k] = size
                size += 1
            else:
                pos[k] = -1
        for k in range(size // 2 - 1, -1, -1):
            _sift_down(heap, pos, h, k, size)
        while True:
            if size == 0:
                local = True
                break
            if flips >= max_flips:
                local = False
                break
            i = heap[0]
            hi = h[i]
            if record:
                if flips >= cap:
                    cap *= 2
                    t1 = np.empty(cap, dtype=np.int64)
                    t2 = np.empty(cap, dtype=np.float64)
                    t1[:flips] = tr_nodes[:flips]
                    t2[:flips] = tr_fields[:flips]
                    tr_nodes = t1
                    tr_fields = t2
                tr_nodes[flips] = i
                tr_fields[flips] = hi
            s_old = sigma[i]
            sigma[i] = -s_old
            h[i] = -hi  # > tol: leaves the candidates
            size = _heap_remove(heap, pos, h, 0, size)
            # h_j = sigma_j sum_l As_jl sigma_l; sigma_i changed by -2 s_old
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                hj = h[j] - 2.0 * data[k] * sigma[j] * s_old
                h[j] = hj
                p = pos[j]
                if p >= 0:
                    if hj < -tol:
                        _heap_fix(heap, pos, h, p, size)
                    else:
                        size = _heap_remove(heap, pos, h, p, size)
                elif hj < -tol:
                    heap[size] = j
                    pos[j] = size
                    size += 1
                    _sift_up(heap, pos, h, size - 1)
            flips += 1
        if not local:
            break
        # verify the local minimum on exactly recomputed fields
        _fields(indptr, indices, data, sigma, h)
        hmin = 0.0
        for k in range(n):
            if h[k] < hmin:
                hmin = h[k]
        if hmin >= -tol:
            break
        local = False
    if not local:
        _fields(indptr, indices, data, sigma, h)
    quad = 0.0
    for k in range(n):
        quad += h[k]
    return flips, local, quad, tr_nodes[:flips].copy(), tr_fields[:flips].copy()


@njit_parallel
def _descend_batch(indptr, indices, data, sigma, max_flips, tol, flips, local, quad):
    R = sigma.shape[0]
    for r in prange(R):
        f, loc, q, _, _ = _descend(indptr, indices, data, sigma[r], max_flips, tol, False)
        flips[r] = f
        local[r] = loc
        quad[r] = q

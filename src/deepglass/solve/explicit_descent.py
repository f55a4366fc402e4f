"""The descent schedule of :mod:`deepglass.solve.descent` on explicit couplings (numba).

Same dynamics as the matrix-free engine (SPEC §2): in sweep ``k``, colour
class by colour class, the nodes of each node block with
``h_i < theta`` flip, ``theta = gamma decay^k min h`` over the block
(``threshold="block"``) or over the whole replica (``"global"``), and only
fields below ``-thr_i`` count as negative.  Nodes of one class share no edge,
so flipping them one after another equals flipping them together.

What differs is the cost model.  With the couplings held as a CSR matrix a
flip of node ``i`` updates its ``deg(i)`` neighbours' fields in place, and
each node block keeps the list of its nodes with a negative field (updated in
O(1) when a neighbour's field changes sign), so a sweep costs its flips times
their degree plus the negative nodes it reads, not a pass over every layer.
The long tail of a steepest-first schedule is then nearly free, so this
engine keeps the threshold factor (``decay = 1``) where the matrix-free one
must decay it.  There is no heap: that, and one pass over the couplings per
flip, is what makes it cheaper per flip than Algorithm 1
(:mod:`deepglass.solve.greedy`).

Replicas run in parallel (numba ``prange``); fields are float64.  Memory: the
CSR (12 bytes per stored coupling, two per edge) plus ~17 bytes per node and
replica.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["explicit_descent"]


@njit(cache=True)
def _fields(indptr, indices, data, s, f):
    for i in range(s.shape[0]):
        acc = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            acc += data[p] * s[indices[p]]
        f[i] = acc


@njit(cache=True)
def _set_negative(j, neg, blk_of, blk_start, cnt, lst, pos):
    """Keep ``j`` in its block's negative list exactly when ``neg``."""
    b = blk_of[j]
    if neg:
        if pos[j] < 0:
            k = blk_start[b] + cnt[b]
            lst[k] = j
            pos[j] = k
            cnt[b] += 1
    elif pos[j] >= 0:
        k = pos[j]
        last = blk_start[b] + cnt[b] - 1
        moved = lst[last]
        lst[k] = moved
        pos[moved] = k
        pos[j] = -1
        cnt[b] -= 1


@njit(cache=True)
def _descend_one(indptr, indices, data, blk_start, blk_stop, blk_of, cls_ptr, cls_blk, thr,
                 s, f, gamma, decay, per_block, max_sweeps):
    n = s.shape[0]
    nb = blk_start.shape[0]
    cnt = np.zeros(nb, np.int64)
    lst = np.empty(n, np.int64)
    pos = np.full(n, -1, np.int64)
    buf = np.empty(n, np.int64)
    sweeps = 0
    flips = 0
    for _check in range(5):
        _fields(indptr, indices, data, s, f)
        cnt[:] = 0
        pos[:] = -1
        total = 0
        for i in range(n):
            if s[i] * f[i] < -thr[i]:
                _set_negative(i, True, blk_of, blk_start, cnt, lst, pos)
                total += 1
        if total == 0:
            break
        while sweeps < max_sweeps:
            total = 0
            for b in range(nb):
                total += cnt[b]
            if total == 0:
                break
            factor = gamma * decay ** sweeps
            if factor <= 1e-3:
                factor = 0.0
            theta_g = 0.0
            if not per_block and factor > 0.0:
                hmin = 0.0
                for b in range(nb):
                    for k in range(blk_start[b], blk_start[b] + cnt[b]):
                        i = lst[k]
                        hmin = min(hmin, s[i] * f[i])
                theta_g = factor * hmin
            for c in range(cls_ptr.shape[0] - 1):
                for q in range(cls_ptr[c], cls_ptr[c + 1]):
                    b = cls_blk[q]
                    m = cnt[b]
                    if m == 0:
                        continue
                    # choose first: flipping edits the lists of neighbouring blocks
                    nsel = 0
                    if per_block and factor > 0.0:
                        # one pass: keep h < factor * (running min), a superset of
                        # h < factor * (block min) since the running min only falls
                        hmin = 0.0
                        for k in range(blk_start[b], blk_start[b] + m):
                            i = lst[k]
                            h = s[i] * f[i]
                            if h < hmin:
                                hmin = h
                            if h < factor * hmin:
                                buf[nsel] = i
                                nsel += 1
                        theta = factor * hmin
                        kept = 0
                        for t in range(nsel):
                            i = buf[t]
                            if s[i] * f[i] < theta:
                                buf[kept] = i
                                kept += 1
                        nsel = kept
                    else:
                        for k in range(blk_start[b], blk_start[b] + m):
                            i = lst[k]
                            if s[i] * f[i] < theta_g:
                                buf[nsel] = i
                                nsel += 1
                    for t in range(nsel):
                        i = buf[t]
                        s[i] = -s[i]
                        _set_negative(i, False, blk_of, blk_start, cnt, lst, pos)
                        d = 2.0 * s[i]
                        for p in range(indptr[i], indptr[i + 1]):
                            j = indices[p]
                            f[j] += data[p] * d
                            neg = s[j] * f[j] < -thr[j]
                            if neg != (pos[j] >= 0):     # test inline: the call is costly
                                _set_negative(j, neg, blk_of, blk_start, cnt, lst, pos)
                    flips += nsel
            sweeps += 1
        # verify on fields recomputed from scratch (the loop above re-checks)
        _fields(indptr, indices, data, s, f)
        local = True
        for i in range(n):
            if s[i] * f[i] < -thr[i]:
                local = False
                break
        if local or sweeps >= max_sweeps:
            break
    return sweeps, flips


@njit(cache=True, parallel=True)
def _descend_batch(indptr, indices, data, blk_start, blk_stop, blk_of, cls_ptr, cls_blk, thr,
                   sigma, F, gamma, decay, per_block, max_sweeps, sweeps, flips):
    for r in prange(sigma.shape[0]):
        sw, fl = _descend_one(indptr, indices, data, blk_start, blk_stop, blk_of, cls_ptr,
                              cls_blk, thr, sigma[r], F[r], gamma, decay, per_block,
                              max_sweeps)
        sweeps[r] = sw
        flips[r] = fl


def explicit_descent(As, sigma0: np.ndarray, blocks: np.ndarray, classes: list[list[int]],
                     thr: np.ndarray, *, gamma: float, decay: float, per_block: bool,
                     max_sweeps: int):
    """Run the steepest-first descent schedule on explicit couplings.

    Parameters
    ----------
    As : scipy.sparse.csr_matrix (n, n)
        Symmetric couplings ``A + A^T``.
    sigma0 : ndarray (R, n)
        Start gauges, +-1.
    blocks : ndarray int (B, 2)
        ``[offset, stop)`` of each node block, in node order, covering ``0..n``.
    classes : list of lists of int
        Colour classes of node blocks (no edge inside a class).
    thr : ndarray float (n,)
        A field counts as negative when ``h_i < -thr_i``.
    gamma, decay, per_block, max_sweeps
        The schedule (:func:`deepglass.solve.descent.descent`).

    Returns
    -------
    sigma : ndarray float64 (R, n)
    fields : ndarray float64 (R, n)
        ``As sigma``, recomputed from scratch at the end.
    sweeps, flips : ndarray int64 (R,)

    Notes
    -----
    Cost per replica: O(nnz + n) for the fields, then O(deg(i)) per flip plus
    the negative nodes each sweep reads; replicas in parallel.
    """
    n = As.shape[0]
    sigma = np.array(sigma0, dtype=np.float64, order="C")     # a copy: the caller's stays
    R = sigma.shape[0]
    starts = np.ascontiguousarray(blocks[:, 0], dtype=np.int64)
    stops = np.ascontiguousarray(blocks[:, 1], dtype=np.int64)
    blk_of = np.repeat(np.arange(len(starts), dtype=np.int64), stops - starts)
    if len(blk_of) != n:
        raise ValueError("node blocks must cover the graph's nodes")
    cls_ptr = np.cumsum([0] + [len(c) for c in classes]).astype(np.int64)
    cls_blk = np.array([b for c in classes for b in c], dtype=np.int64)
    F = np.empty((R, n), dtype=np.float64)
    sweeps = np.zeros(R, dtype=np.int64)
    flips = np.zeros(R, dtype=np.int64)
    _descend_batch(As.indptr.astype(np.int64, copy=False), As.indices, As.data.astype(np.float64, copy=False),
                   starts, stops, blk_of, cls_ptr, cls_blk,
                   np.ascontiguousarray(thr, dtype=np.float64), sigma, F, float(gamma),
                   float(decay), bool(per_block), int(max_sweeps), sweeps, flips)
    return sigma, F, sweeps, flips

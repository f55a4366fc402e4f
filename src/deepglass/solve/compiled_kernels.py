"""Numba kernels of the compiled descent (:mod:`deepglass.solve.compiled_descent`):
negative fields in buckets by magnitude per node block, the per-flip updates
through stencils and CSR, one replica's descent and replicas in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._numba import LANES, add_scaled_lanes, float_bits, njit_borrowing, njit_parallel
from .stencils import (_C0, _CB, _CIN, _COUT, _D0, _DB, _DH, _DST, _DW, _DZ, _GROUPS, _HIN,
                       _HOUT, _KH, _KW, _KZ, _PH, _PW, _PZ, _SH, _SRC, _SW, _SZ, _WA, _WF, _WIN,
                       _WOUT, _WP, _ZIN, _ZOUT)


# --------------------------------------------------------------------------- kernels
# Negative fields are kept in buckets by magnitude, per node block: NSUB
# buckets per octave from 2**EMIN (everything smaller in bucket 0) up to
# 2**EMAX (everything larger in the last).  A node sits in a bucket whose upper
# edge is at least its |h|; a neighbour's update that pushes |h| past that edge
# moves it up at once (one comparison per update), while nodes whose fields
# shrink are moved down or dropped lazily, when their bucket is read.  The most
# negative field of a block is then in its highest non-empty bucket, and
# choosing the flips ``h < factor * min h`` reads only the buckets above
# ``factor * min h``: a sweep of the long tail costs its flips, not its
# negative fields.
_EMIN, _EMAX, _NSUB_BITS = -64, 40, 2
_NSUB = 1 << _NSUB_BITS
_NBK = (_EMAX - _EMIN + 1) * _NSUB


def _bucket_edges() -> np.ndarray:
    """Upper edge of each bucket's |h| (the last is infinite)."""
    e = np.repeat(np.arange(_EMIN, _EMAX + 1), _NSUB)
    sub = np.tile(np.arange(_NSUB), _EMAX - _EMIN + 1)
    up = (0.5 + (sub + 1) / (2 * _NSUB)) * np.ldexp(1.0, e)
    up[-1] = np.inf
    return up


@njit(cache=True, inline="always")
def _bucket_of(a):
    """Bucket of a magnitude ``a > 0``: ``a = m 2**e``, ``m`` in [1/2, 1), read
    from the bits (``frexp``'s ``e`` is the biased exponent minus 1022, and
    its ``_NSUB_BITS`` leading stored mantissa bits give ``int((m - 1/2) 2 NSUB)``)."""
    bits = float_bits(a)
    e = (bits >> 52) - 1022
    if e < _EMIN:
        return 0
    if e > _EMAX:
        return _NBK - 1
    return (e - _EMIN) * _NSUB + ((bits >> (52 - _NSUB_BITS)) & (_NSUB - 1))


@njit_borrowing(inline="always")
def _field(j, m, bound):
    """``h_j = s_j (As sigma)_j`` of node ``j``, in float64, from its margin."""
    return np.float64(m[j]) + np.float64(bound[j])


@njit_borrowing(inline="always")
def _unlink(j, hb, head, nxt, prv, bkt):
    p = prv[j]
    q = nxt[j]
    if p >= 0:
        nxt[p] = q
    else:
        head[hb] = q
    if q >= 0:
        prv[q] = p
    bkt[j] = -1


@njit_borrowing
def _place(j, h, blk_of, head, nxt, prv, bkt, top, bound, m, up):
    """Put node ``j`` (field ``h < 0``) into the bucket of ``|h|``; its bound
    becomes minus the bucket's upper edge (0 for the last, unbounded one)."""
    kk = _bucket_of(-h)
    b = blk_of[j]
    old = bkt[j]
    if old == kk:
        return
    if old >= 0:
        _unlink(j, b * _NBK + old, head, nxt, prv, bkt)
    hb = b * _NBK + kk
    q = head[hb]
    nxt[j] = q
    prv[j] = -1
    if q >= 0:
        prv[q] = j
    head[hb] = j
    bkt[j] = kk
    if kk > top[b]:
        top[b] = kk
    lim = -up[kk] if kk < _NBK - 1 else 0.0
    bound[j] = lim
    m[j] = h - lim


@njit_borrowing
def _drop(j, h, blk_of, head, nxt, prv, bkt, bound, m, thr):
    """Take node ``j`` (field ``h``, no longer negative) out of its bucket."""
    if bkt[j] >= 0:
        _unlink(j, blk_of[j] * _NBK + bkt[j], head, nxt, prv, bkt)
    bound[j] = -thr[j]
    m[j] = h + thr[j]


@njit_borrowing(inline="always")
def _locate(q, nch, c0, n, h, w):
    """Where local position ``q`` of a channels-last block (``nch`` channels,
    planes of ``h x w``) sits for a stencil that reads or writes its channels
    ``[c0, c0 + n)``: ``(c - c0, z, y, x)``, or a first entry of -1 outside them."""
    c = q % nch - c0
    if c < 0 or c >= n:
        return -1, 0, 0, 0
    p = q // nch
    z = p // (h * w)
    p -= z * h * w
    y = p // w
    return c, z, y, p - y * w


@njit_borrowing(inline="always")
def _tap(q, pad, k, dil, stride, size):
    """The output a kernel tap ``k`` takes input position ``q`` to along one axis
    (``o stride = q + pad - k dil``), or -1 where it misses the grid."""
    t = q + pad - k * dil
    if t < 0 or t % stride != 0:
        return -1
    o = t // stride
    return o if o < size else -1


@njit_borrowing
def _run(base, cnt, wb, d, s, m, Wt, blk_of, head, nxt, prv, bkt, top, bound, up):
    """``h[base:base + cnt] += d s Wt[wb:wb + cnt]`` on the margins: one run of
    neighbours (a kernel tap's, or a whole kernel row's), each moved up a
    bucket when its ``|h|`` grew past the edge (its margin went negative)."""
    # LANES margins per vector operation (the last one partial: ``m``, ``s``
    # and ``Wt`` are padded); the rare lanes that went negative (one update in
    # a hundred on ResNet-18) are moved one by one
    for t in range(0, cnt, LANES):
        neg = add_scaled_lanes(m, s, base + t, Wt, wb + t, d, cnt - t)
        if neg != 0:
            for u in range(LANES):
                if (neg >> u) & 1:
                    j = base + t + u
                    _place(j, _field(j, m, bound), blk_of, head, nxt, prv, bkt, top, bound, m, up)


@njit_borrowing
def _flip(i, s, m, thr, P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr, indices, data,
          blk_of, head, nxt, prv, bkt, top, bound, up):
    """Flip node ``i`` and update its neighbours' margins (the CSR, then stencils).

    A neighbour's update changes its ``h_j = s_j (As sigma)_j`` by
    ``2 s_i s_j As_ij``; its margin over its bound (minus its bucket's upper
    edge, or ``-thr`` outside the buckets) going negative is the only, rare,
    bucket work on this path."""
    h = _field(i, m, bound)
    s[i] = -s[i]
    _drop(i, -h, blk_of, head, nxt, prv, bkt, bound, m, thr)
    d = s[i] + s[i]
    for p in range(indptr[i], indptr[i + 1]):
        j = indices[p]
        m[j] += data[p] * d * s[j]
        if m[j] < 0:
            _place(j, _field(j, m, bound), blk_of, head, nxt, prv, bkt, top, bound, m, up)
    b = blk_of[i]
    # i is a source: the outputs of its group in every tap whose window holds it
    for u in range(fwd_ptr[b], fwd_ptr[b + 1]):
        k = fwd[u]
        cin, hin, win, cout = P[k, _CIN], P[k, _HIN], P[k, _WIN], P[k, _COUT]
        hout, wout, kh, kw = P[k, _HOUT], P[k, _WOUT], P[k, _KH], P[k, _KW]
        sh, sw, ph, pw, dh, dw = P[k, _SH], P[k, _SW], P[k, _PH], P[k, _PW], P[k, _DH], P[k, _DW]
        zout, kz, sz, pz, dz = P[k, _ZOUT], P[k, _KZ], P[k, _SZ], P[k, _PZ], P[k, _DZ]
        cin_g = cin // P[k, _GROUPS]
        cout_g = cout // P[k, _GROUPS]
        # the source block has _CB channels, this stencil reads cin of them from
        # _C0; it writes cout of the destination block's db channels from _D0
        db = P[k, _DB]
        # an unshared convolution's weights: wp per output position (0: shared)
        wp = P[k, _WP]
        c, z, y, x = _locate(i - P[k, _SRC], P[k, _CB], P[k, _C0], cin, hin, win)
        if c < 0:
            continue
        grp = c // cin_g
        for kzz in range(kz * kh):
            # depth tap kzz // kh (3-d convolutions; else 0), row tap ky
            kd = kzz // kh
            ky = kzz - kd * kh
            oz = _tap(z, pz, kd, dz, sz, zout)
            oy = _tap(y, ph, ky, dh, sh, hout)
            if oz < 0 or oy < 0:
                continue
            row = P[k, _DST] + (oz * hout + oy) * wout * db + P[k, _D0]
            wrow = P[k, _WF] + ((c * kz + kd) * kh + ky) * kw * cout_g
            if wp == 0 and sw == 1 and dw == 1 and cout_g == cout and cout == db:
                # one run per kernel row: outputs ox = x + pw - kx are adjacent,
                # and so are their weights, stored with kx reversed (kr = kw-1-kx)
                ox_lo = max(0, x + pw - kw + 1)
                ox_hi = min(wout - 1, x + pw)
                if ox_lo <= ox_hi:
                    _run(row + ox_lo * cout, (ox_hi - ox_lo + 1) * cout,
                         wrow + (kw - 1 - x - pw + ox_lo) * cout, d, s, m, Wt, blk_of, head,
                         nxt, prv, bkt, top, bound, up)
                continue
            pos = (oz * hout + oy) * wout
            for kx in range(kw):
                ox = _tap(x, pw, kx, dw, sw, wout)
                if ox < 0:
                    continue
                _run(row + ox * db + grp * cout_g, cout_g,
                     wrow + (pos + ox) * wp + (kw - 1 - kx) * cout_g, d, s,
                     m, Wt, blk_of, head, nxt, prv, bkt, top, bound, up)
    # i is a destination: the inputs of its group under every tap
    for u in range(adj_ptr[b], adj_ptr[b + 1]):
        k = adj[u]
        cin, hin, win, cout = P[k, _CIN], P[k, _HIN], P[k, _WIN], P[k, _COUT]
        hout, wout, kh, kw = P[k, _HOUT], P[k, _WOUT], P[k, _KH], P[k, _KW]
        sh, sw, ph, pw, dh, dw = P[k, _SH], P[k, _SW], P[k, _PH], P[k, _PW], P[k, _DH], P[k, _DW]
        zin, kz, sz, pz, dz = P[k, _ZIN], P[k, _KZ], P[k, _SZ], P[k, _PZ], P[k, _DZ]
        cb = P[k, _CB]
        cin_g = cin // P[k, _GROUPS]
        cout_g = cout // P[k, _GROUPS]
        co, oz, oy, ox = _locate(i - P[k, _DST], P[k, _DB], P[k, _D0], cout, hout, wout)
        if co < 0:
            continue
        grp = co // cout_g
        for kzz in range(kz * kh):
            kd = kzz // kh
            ky = kzz - kd * kh
            z = oz * sz - pz + kd * dz
            if z < 0 or z >= zin:
                continue
            y = oy * sh - ph + ky * dh
            if y < 0 or y >= hin:
                continue
            row = P[k, _SRC] + (z * hin + y) * win * cb + P[k, _C0]
            wrow = P[k, _WA] + ((co * kz + kd) * kh + ky) * kw * cin_g \
                + ((oz * hout + oy) * wout + ox) * P[k, _WP]
            x0 = ox * sw - pw
            if dw == 1 and cin_g == cin and cin == cb:
                # one run per kernel row: inputs x = x0 + kx are adjacent, and so
                # are their weights
                x_lo = max(0, x0)
                x_hi = min(win - 1, x0 + kw - 1)
                if x_lo <= x_hi:
                    _run(row + x_lo * cin, (x_hi - x_lo + 1) * cin, wrow + (x_lo - x0) * cin,
                         d, s, m, Wt, blk_of, head, nxt, prv, bkt, top, bound, up)
                continue
            for kx in range(kw):
                x = x0 + kx * dw
                if x < 0 or x >= win:
                    continue
                _run(row + x * cb + grp * cin_g, cin_g, wrow + kx * cin_g, d, s, m, Wt, blk_of,
                     head, nxt, prv, bkt, top, bound, up)


@njit_borrowing
def _collect(b, lo_mag, theta, m, thr, blk_of, head, nxt, prv, bkt, top, bound, up, buf,
             stop_at_first):
    """Read block ``b``'s buckets from the top down while their upper edge
    exceeds ``lo_mag``, moving stale nodes down (or out) on the way; append
    the nodes with ``h < theta`` (and ``h < -thr``) to ``buf``.

    With ``stop_at_first``, stop after the first bucket holding a negative
    field (its minimum is then the block's).  Returns ``(nsel, hmin)``: the
    number of nodes in ``buf`` and the minimum field seen."""
    nsel = 0
    hmin = 0.0
    k = top[b]
    while k >= 0 and up[k] > lo_mag:
        j = head[b * _NBK + k]
        while j >= 0:
            nx = nxt[j]
            h = _field(j, m, bound)
            if h >= -thr[j]:
                _drop(j, h, blk_of, head, nxt, prv, bkt, bound, m, thr)
            else:
                if k > 0 and h > -up[k - 1]:
                    # stale: it moves down and is read there if that is in range
                    # (below the range |h| <= lo_mag, so it is no candidate)
                    _place(j, h, blk_of, head, nxt, prv, bkt, top, bound, m, up)
                else:
                    if h < hmin:
                        hmin = h
                    if h < theta:
                        buf[nsel] = j
                        nsel += 1
            j = nx
        if head[b * _NBK + k] < 0 and k == top[b]:
            top[b] = k - 1
        if stop_at_first and hmin < 0.0:
            break
        k -= 1
    return nsel, hmin


@njit(cache=True)
def _descend_one(P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr, indices, data, blk_start, blk_of,
                 cls_ptr, cls_blk, thr, s, f, up, gamma, decay, per_block, sweep0, max_sweeps):
    n = s.shape[0]
    nb = blk_start.shape[0]
    head = np.full(nb * _NBK, -1, np.int32)
    top = np.full(nb, -1, np.int64)
    nxt = np.empty(n, np.int32)
    prv = np.empty(n, np.int32)
    bkt = np.full(n, -1, np.int32)
    bound = np.empty(n, Wt.dtype)
    # the fields are kept as margins m = h - bound (h = s f) in the weights'
    # dtype: an update reads a gauge, a weight and a margin, and the margins
    # and gauges of a replica stay in a core's cache (ResNet-18 on 3x32x32:
    # 8 bytes a node, not the 20 of float64 fields beside float64 bounds)
    m = np.zeros(n + LANES, Wt.dtype)
    sp = np.zeros(n + LANES, np.float32)
    sp[:n] = s
    buf = np.empty(n, np.int64)
    for i in range(n):
        h = sp[i] * f[i]
        bound[i] = -thr[i]
        m[i] = h + thr[i]
        if h < bound[i]:
            _place(i, h, blk_of, head, nxt, prv, bkt, top, bound, m, up)
    sweeps = sweep0
    flips = 0
    while sweeps < max_sweeps:
        factor = gamma * decay ** sweeps
        if factor <= 1e-3:
            factor = 0.0
        hmin_all = 0.0
        if not per_block and factor > 0.0:
            # the replica's most negative field: each block's top bucket, cleaned
            for b in range(nb):
                _, hm = _collect(b, 0.0, -np.inf, m, thr, blk_of, head, nxt, prv, bkt,
                                 top, bound, up, buf, True)
                hmin_all = min(hmin_all, hm)
        n_sweep = 0
        for c in range(cls_ptr.shape[0] - 1):
            for q in range(cls_ptr[c], cls_ptr[c + 1]):
                b = cls_blk[q]
                if top[b] < 0:
                    continue
                # choose first: flipping edits the buckets of neighbouring blocks
                if factor == 0.0:
                    theta = 0.0
                elif per_block:
                    # the block's minimum now (earlier classes moved its fields)
                    _, hm = _collect(b, 0.0, -np.inf, m, thr, blk_of, head, nxt, prv,
                                     bkt, top, bound, up, buf, True)
                    theta = factor * hm
                else:
                    theta = factor * hmin_all
                nsel, _ = _collect(b, -theta, theta, m, thr, blk_of, head, nxt, prv,
                                   bkt, top, bound, up, buf, False)
                for t in range(nsel):
                    _flip(buf[t], sp, m, thr, P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr,
                          indices, data, blk_of, head, nxt, prv, bkt, top, bound, up)
                n_sweep += nsel
        # a sweep without flips found no negative field: every block holding
        # one flips at least its most negative node (factor < 1)
        if n_sweep == 0:
            break
        flips += n_sweep
        sweeps += 1
    for i in range(n):
        s[i] = sp[i]
        f[i] = sp[i] * _field(i, m, bound)
    return sweeps, flips


@njit_parallel
def _descend_batch(P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr, indices, data, blk_start, blk_of,
                   cls_ptr, cls_blk, thr, sigma, F, up, gamma, decay, per_block, sweeps,
                   max_sweeps, flips):
    for r in prange(sigma.shape[0]):
        sw, fl = _descend_one(P, Wt, fwd_ptr, fwd, adj_ptr, adj, indptr, indices, data,
                              blk_start, blk_of, cls_ptr, cls_blk, thr, sigma[r], F[r], up,
                              gamma, decay, per_block, sweeps[r], max_sweeps)
        sweeps[r] = sw
        flips[r] += fl

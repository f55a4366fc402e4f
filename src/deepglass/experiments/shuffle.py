"""A uniformly random permutation of many weights without an index list
(null model N2, SPEC §3; :mod:`deepglass.experiments.nulls`).

Rao-Sandelius, two levels: every value gets a random bucket label (drawn a
piece at a time from the piece's own SplitMix64 stream, and drawn again instead
of stored), the values are scattered bucket by bucket into one flat buffer (a
counting sort), and each cache-sized bucket is shuffled the same way into
L1-sized sub-buckets, then by Fisher-Yates.  The result is a uniformly random
permutation; the only array as long as the input is the output.

References
----------
C. R. Rao, Sankhya A 23 (1961); M. Sandelius, Ann. Math. Stat. 33 (1962);
G. Steele, D. Lea, C. Flood, OOPSLA 2014 (SplitMix64); D. Lemire, ACM TOMACS
29 (2019) (bounded integers).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from numba import njit, prange

from .._numba import njit_parallel

__all__ = ["shuffled_pool", "keyed_generator"]

#: target bucket sizes of the two-level Rao-Sandelius shuffle (L2 and L1 sized)
_BUCKET = 1 << 20
_SUB_BUCKET = 1 << 12

_U32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, inline="always")
def _next(state):
    """SplitMix64 (Steele, Lea, Flood 2014): the next 64 random bits of ``state[0]``."""
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _below(state, bound):
    """Uniform integer in ``[0, bound)``, ``bound < 2**32``: Lemire's multiply-shift
    with rejection (exactly uniform)."""
    m = (_next(state) >> np.uint64(32)) * bound
    if (m & _U32) < bound:
        t = (np.uint64(1 << 32) - bound) % bound
        while (m & _U32) < t:
            m = (_next(state) >> np.uint64(32)) * bound
    return np.int64(m >> np.uint64(32))


@njit(cache=True)
def _count_labels(seed, m, n_buckets, counts):
    """Bucket sizes of ``m`` labels drawn from ``seed`` (the same draws as
    :func:`_scatter_labelled`)."""
    state = np.full(1, seed, np.uint64)
    bound = np.uint64(n_buckets)
    for _ in range(m):
        counts[_below(state, bound)] += 1


@njit(cache=True)
def _scatter_labelled(values, seed, n_buckets, at, out):
    """Counting-sort scatter: ``values[j]`` goes to ``out[at[label_j]++]`` with
    uniform labels drawn from ``seed``."""
    state = np.full(1, seed, np.uint64)
    bound = np.uint64(n_buckets)
    for j in range(len(values)):
        b = _below(state, bound)
        out[at[b]] = values[j]
        at[b] += 1


@njit(cache=True)
def _fisher_yates(x, state):
    for i in range(len(x) - 1, 0, -1):
        j = _below(state, np.uint64(i + 1))
        x[i], x[j] = x[j], x[i]


@njit_parallel
def _shuffle_buckets(out, starts, seeds, sub):
    """Shuffle every ``out[starts[b]:starts[b+1]]`` uniformly: one more
    Rao-Sandelius level into sub-buckets of about ``sub`` (L1-sized), then
    Fisher-Yates.  Each bucket has its own generator, so the result does not
    depend on the thread count."""
    for b in prange(len(starts) - 1):
        x = out[starts[b]:starts[b + 1]]
        state = np.full(1, seeds[b], np.uint64)
        n = len(x)
        if n <= 2 * sub:
            _fisher_yates(x, state)
            continue
        nb = (n + sub - 1) // sub
        lab = np.empty(n, np.int64)
        at = np.zeros(nb + 1, np.int64)
        for j in range(n):
            lab[j] = _below(state, np.uint64(nb))
            at[lab[j] + 1] += 1
        for k in range(nb):
            at[k + 1] += at[k]
        first = at.copy()
        tmp = np.empty_like(x)
        for j in range(n):
            tmp[at[lab[j]]] = x[j]
            at[lab[j]] += 1
        for k in range(nb):
            _fisher_yates(tmp[first[k]:first[k + 1]], state)
        x[:] = tmp


def shuffled_pool(sources, dtype, seed: int) -> np.ndarray:
    """All values of ``sources`` in one flat array, uniformly permuted.

    Rao-Sandelius (two levels): give each value an independent uniform bucket
    label, write the buckets one after another (a counting-sort scatter), then
    shuffle every bucket the same way into L1-sized sub-buckets and those by
    Fisher-Yates.  A piece's labels are redrawn from its own seed in the second
    pass, so the only per-value array is the output.  O(n) time.

    Parameters
    ----------
    sources : sequence
        Objects with ``sizes()`` (the length of each piece) and ``pieces()``
        (the pieces as 1-D arrays, read twice: once to count, once to scatter).
    dtype : numpy dtype
    seed : int
        Same seed, same permutation (whatever the thread count).
    """
    sizes = [s for src in sources for s in src.sizes()]
    n = sum(sizes)
    out = np.empty(n, dtype=dtype)
    root = np.random.SeedSequence([int(seed), 0x4E32])
    if n <= 2 * _BUCKET:
        p = 0
        for src in sources:
            for v in src.pieces():
                out[p:p + len(v)] = v
                p += len(v)
        np.random.default_rng(root).shuffle(out)
        return out
    n_buckets = -(-n // _BUCKET)
    seeds = root.generate_state(len(sizes) + n_buckets, np.uint64)   # per piece, bucket
    counts = np.zeros((len(sizes), n_buckets), dtype=np.int64)
    for i, m in enumerate(sizes):
        _count_labels(seeds[i], m, n_buckets, counts[i])
    starts = np.concatenate([[0], np.cumsum(counts.sum(0))])
    at = starts[:-1] + np.cumsum(counts, 0) - counts                      # write offsets
    i = 0
    for src in sources:
        for v in src.pieces():
            _scatter_labelled(v, seeds[i], n_buckets, at[i].copy(), out)
            i += 1
    _shuffle_buckets(out, starts, seeds[len(sizes):], _SUB_BUCKET)
    return out


def keyed_generator(kind: str, seed: int, name: str, device="cpu") -> torch.Generator:
    """The generator of one layer of one null: keyed by (kind, seed, layer name),
    on ``device`` (the weights' own: draws are made where they are used, so a
    device draws its nulls without a host round trip; a device's stream is
    its own, so the same seed draws another null there than on the CPU)."""
    digest = hashlib.blake2b(f"{kind}|{int(seed)}|{name}".encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(
        int.from_bytes(digest, "little") & (2**63 - 1))

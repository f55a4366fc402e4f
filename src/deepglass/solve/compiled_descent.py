"""The descent schedule of :mod:`deepglass.solve.descent`, compiled (numba).

Same dynamics as the batched matrix-free engine (SPEC §2): in sweep ``k``,
colour class by colour class, the nodes of each node block with
``h_i < theta`` flip, ``theta = gamma decay^k min h`` over the block
(``threshold="block"``) or over the whole replica (``"global"``), and only
fields below ``-thr_i`` count as negative.  Nodes of one class share no edge,
so flipping them one after another equals flipping them together.

What differs is the cost model.  One replica runs per thread, and a flip of
node ``i`` adds ``2 sigma_i As_ij`` to its ``deg(i)`` neighbours' fields in
place, so a sweep costs its flips times their degree, not a pass over every
layer.  Each node block keeps its negative fields in buckets by magnitude
(four per octave, see the kernels below), so finding a block's most negative
field and the nodes within ``factor`` of it reads only the top buckets: the
long tail of a steepest-first schedule is then nearly free, and this engine
keeps the threshold factor (``decay = 1``) where the batched one must decay
it.  There is no heap: that is what makes it cheaper per flip than
Algorithm 1 (:mod:`deepglass.solve.greedy`).

The couplings are not materialized.  Convolutions (1-d, 2-d and 3-d, any stride,
padding, dilation and groups) and dense layers are *stencils*: the weights of
one input channel to all output channels of its group, laid out so that the
neighbours of a node are contiguous.  For that every node block is stored
channels-last internally (node ``(c, p)`` of a block with ``C`` channels at
``p C + c``), so a flip updates ``C_out`` consecutive fields per kernel tap;
without groups and with unit dilation along a row, a whole kernel row is one
run (``kw C`` fields: adjacent columns are adjacent in channels-last order,
and the forward weights are stored with the kernel's columns reversed so
that theirs are too), which is what makes small-channel layers cheap.
A convolution that reads a concatenation, a chunk of a block's channels or a
channel shuffle is one stencil per source block (the weight columns of the
channels that block gives; under groups, per block's run of whole groups or
per group: :func:`~deepglass.solve.stencil_parts.layer_parts`);
scales on its sources or outputs that are constant per channel (a batch norm
folded forward) fold into the stencil's weights; a transposed convolution is
the stencil of the convolution from its destination back to its source.
An unshared convolution (an N2 draw's, one weight per edge:
:class:`~deepglass.graph.unshared.UnsharedConvBlock`) is a convolution's
stencil whose weights are laid out once per output position, the kernel
offsetting them by the position (no kernel-row runs in the forward
direction: adjacent outputs no longer share weights); its per-edge weights
are then held twice more, in both directions (AlexNet's N2: 5.3 GB, where
explicit CSR would need about 90 GB).  Edge blocks of other kinds (pooling,
identity shortcuts, locally connected layers, sources scaled per position)
are small; their couplings are held as one symmetric CSR matrix in the
internal order.

A field is kept as its *margin* ``m_j = h_j - bound_j`` in the weights'
dtype, ``bound_j`` being minus the upper edge of its bucket (or ``-thr_j``
outside the buckets), so a neighbour's update is ``m_j += 2 s_i s_j As_ij``
and the only test is ``m_j < 0``.  A run updates 16 margins per vector
operation (:func:`deepglass._numba.add_scaled_lanes`; ``m``, ``s`` and the
weights are padded for the last, partial one) and visits lanes one by one
only where a margin went negative: about one update in a hundred on
ResNet-18, one in thirty on LeNet.  With exact arithmetic the steps are those
of the batched engine (tested in float64 and float32).

Memory: the weights twice (the graph's dtype, both directions), the CSR of
the remaining blocks (12 bytes per stored entry), per replica the gauges
(float32) and fields (float64), and per running thread and node 24 bytes
for float32 graphs (margins, bounds, gauges, three int32 bucket links) plus
the flip buffer (int64).

Measured (``bench/bench_frustration.py``, 2 cores): ResNet-18 on 3x32x32, 16
replicas, 0.19-0.29 s in the kernel (29k flips per replica, 24M field
updates, ~1 ns per update and thread, mostly waiting for weights that are
not in the cache: the same runs take ~0.2 ns with cached weights); LeNet, 48
replicas, 28-30 ms, where the per-flip bookkeeping (stencil geometry, bucket
moves) costs more than the updates.  Earlier steps that each sped the
kernel up 1.1-2.3x: views indexed from 0 (numba drops the negative-index
wraparound of every load), the bucket index read from the float's bits,
per-update helpers compiled without numba's reference counting
(:mod:`deepglass._numba`), one run per kernel row; the margins in vectors
then 1.4-1.5x on ResNet-18 (level on LeNet).

Layout: the driver here; the stencil layout in :mod:`.stencils`
(:class:`Stencils`, :func:`stencils`, :func:`stencil_kind`, re-exported), the
numba kernels in :mod:`.compiled_kernels`.
"""

from __future__ import annotations

import numpy as np

from .compiled_kernels import _bucket_edges, _descend_batch
from .stencils import Stencils, stencil_kind, stencils

__all__ = ["Stencils", "stencils", "stencil_kind", "compiled_descent"]


def compiled_descent(st: Stencils, sigma: np.ndarray, fields: np.ndarray, classes, thr,
                     *, gamma: float, decay: float, per_block: bool, sweeps: np.ndarray,
                     max_sweeps: int, flips: np.ndarray) -> None:
    """Run the steepest-first schedule in place until no field is below ``-thr``.

    Parameters
    ----------
    st : Stencils
        From :func:`stencils`.
    sigma, fields : ndarray (R, n), C-contiguous, internal order
        Gauges (+-1, float32) and their fields ``As sigma`` (float64); both
        are updated in place (the fields from the margins, which the kernel
        keeps in the weights' dtype).
    classes : list of lists of int
        Colour classes of node blocks (no edge inside a class).
    thr : ndarray float64 (n,), internal order
        A field counts as negative when ``h_i < -thr_i``.
    gamma, decay, per_block, max_sweeps
        The schedule (:func:`deepglass.solve.descent.descent`).
    sweeps, flips : ndarray int64 (R,)
        Sweeps done so far (the schedule's ``k`` continues from them) and flips;
        updated in place.

    Notes
    -----
    Cost per replica: O(n) to bucket the negative fields, then O(deg(i)) per
    flip plus the top buckets each sweep reads; replicas in parallel.
    The fields are updated incrementally: the caller verifies them against
    ``As sigma`` recomputed from scratch.
    """
    if sigma.dtype != np.float32:
        raise ValueError(f"compiled_descent: sigma must be float32, got {sigma.dtype}")
    if not (sigma.flags.c_contiguous and fields.flags.c_contiguous):
        raise ValueError("compiled_descent: sigma and fields must be C-contiguous (R, n)")
    blk_start = np.ascontiguousarray(st.blocks[:, 0])
    blk_of = np.repeat(np.arange(len(blk_start), dtype=np.int32), st.blocks[:, 1] - blk_start)
    cls_ptr = np.cumsum([0] + [len(c) for c in classes]).astype(np.int64)
    cls_blk = np.array([b for c in classes for b in c], dtype=np.int64)
    r = st.rest
    _descend_batch(st.params, st.weights, st.fwd_ptr, st.fwd, st.adj_ptr, st.adj,
                   r.indptr.astype(np.int64, copy=False), r.indices.astype(np.int64, copy=False),
                   r.data.astype(np.float64, copy=False), blk_start, blk_of, cls_ptr, cls_blk,
                   np.ascontiguousarray(thr, dtype=np.float64), sigma, fields, _bucket_edges(),
                   float(gamma), float(decay), bool(per_block), sweeps, int(max_sweeps), flips)

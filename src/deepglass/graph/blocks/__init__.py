"""Edge blocks: the linear operators between node blocks of a :class:`SignedGraph`,
one module per family of layers (:mod:`.base` holds the interface).

Adding a layer kind is one subclass implementing ``_apply``, ``_adjoint``,
``n_edges`` and ``_coo`` (and, for active subnetworks, ``_pattern`` and, where
the values it reads select its edges, ``select_edges``), plus one entry in the
op table of :mod:`deepglass.graph.aten`.
"""

from .base import AbsPattern, EdgeBlock, MaskedBlock, NodeBlock, ZeroPaddedBlock
from .conv import ConvBlock, ConvTransposeBlock, LocallyConnectedBlock
from .dense import DenseBlock, IdentityBlock
from .pool import PoolBlock, ResampleBlock, WindowTable, adaptive_windows, pool_windows
from .sparse import SparseBlock

__all__ = ["NodeBlock", "EdgeBlock", "DenseBlock", "ConvBlock", "ConvTransposeBlock",
           "PoolBlock", "ResampleBlock", "IdentityBlock", "LocallyConnectedBlock",
           "MaskedBlock", "ZeroPaddedBlock", "SparseBlock", "AbsPattern", "WindowTable", "EDGE_BLOCK_KINDS",
           "pool_windows", "adaptive_windows"]

EDGE_BLOCK_KINDS = {cls.kind: cls for cls in
                    (DenseBlock, ConvBlock, ConvTransposeBlock, PoolBlock, ResampleBlock,
                     IdentityBlock, LocallyConnectedBlock)}

"""The signed graph of a neural network (SPEC §1): capture, edge blocks, algebra,
and active subnetworks (SPEC §4: activation patterns as masks on edge blocks)."""

from .blocks import (EDGE_BLOCK_KINDS, ConvBlock, DenseBlock, EdgeBlock, IdentityBlock,
                     LocallyConnectedBlock, PoolBlock, ZeroPaddedBlock)
from .signed_graph import EXPLICIT_EDGE_LIMIT, NodeBlock, SignedGraph
from .symbolic import SUPPORTED, NonMonotoneActivationWarning

__all__ = ["SignedGraph", "NodeBlock", "EdgeBlock", "DenseBlock", "ConvBlock", "PoolBlock",
           "IdentityBlock", "LocallyConnectedBlock", "ZeroPaddedBlock", "EDGE_BLOCK_KINDS", "EXPLICIT_EDGE_LIMIT",
           "SUPPORTED", "NonMonotoneActivationWarning"]

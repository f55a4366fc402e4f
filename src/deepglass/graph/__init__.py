"""The signed graph of a neural network (SPEC §1): tracing, edge blocks, algebra."""

from .blocks import (EDGE_BLOCK_KINDS, ConvBlock, DenseBlock, EdgeBlock, IdentityBlock,
                     LocallyConnectedBlock, PoolBlock)
from .signed_graph import EXPLICIT_EDGE_LIMIT, NodeBlock, SignedGraph
from .trace import SUPPORTED, NonMonotoneActivationWarning

__all__ = ["SignedGraph", "NodeBlock", "EdgeBlock", "DenseBlock", "ConvBlock", "PoolBlock",
           "IdentityBlock", "LocallyConnectedBlock", "EDGE_BLOCK_KINDS", "EXPLICIT_EDGE_LIMIT",
           "SUPPORTED", "NonMonotoneActivationWarning"]

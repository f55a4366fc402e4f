"""Layers whose weights deepglass itself makes: fixed transforms, not learned.

A Fourier transform read as real numbers (:mod:`deepglass.graph.spectral`, an
ONNX ``DFT`` / ``STFT``) or an ONNX resampling written as a product with its
interpolation matrix is a dense or convolution layer of the graph, but its
weights are the transform's, fixed by the architecture as a pool's are: null
models keep them (SPEC §3: "pooling weights are never changed").  deepglass
stores such weights under names starting with :data:`FIXED_PREFIX`; after a
capture, :func:`mark_fixed` flags the blocks computed from them only
(``EdgeBlock.fixed_weights``).  A user's own stored weights (buffers, frozen
constants) stay layers: nothing tells a fixed filterbank from a frozen
learned one.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["FIXED_PREFIX", "mark_fixed"]

#: the name prefix of an attribute holding a fixed transform's weights
FIXED_PREFIX = "fixed_"


def _fixed_ops(gm: torch.fx.GraphModule, where: Callable) -> set[str]:
    """The names (``where(node)``) of the ops of ``gm`` that apply weights made
    from fixed attributes only; a name one of whose ops reads other weights is
    left out.  One pass over the program, O(nodes + edges)."""
    data, learned, fixed = set(), set(), set()
    for node in gm.graph.nodes:
        ins = node.all_input_nodes
        if node.op == "placeholder" or any(a in data for a in ins):
            data.add(node)
        if node.op == "get_attr" and not str(node.target).rsplit(".", 1)[-1].startswith(
                FIXED_PREFIX) or node.op == "call_module" or any(a in learned for a in ins):
            learned.add(node)
    other = set()
    for node in gm.graph.nodes:
        if node.op != "call_function" or node not in data:
            continue
        weights = [a for a in node.all_input_nodes if a not in data]
        (fixed if weights and not any(a in learned for a in weights) else other).add(where(node))
    return fixed - other


def mark_fixed(gm: torch.fx.GraphModule, where: Callable, blocks) -> None:
    """Flag ``fixed_weights`` on the edge blocks (or the blocks they wrap) of
    the ops of ``gm`` whose weights are fixed transforms only."""
    names = _fixed_ops(gm, where)
    if not names:
        return
    for b in blocks:
        for blk in (b, getattr(b, "inner", None)):
            if blk is not None and blk.module in names and hasattr(blk, "weight"):
                blk.fixed_weights = True

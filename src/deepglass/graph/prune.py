"""Pruning a captured graph: node blocks from which no output is reached,
and channels of a layer that nothing reads (SPEC §1: values computed but
unused add nothing; the branch of a gate taken as a rescaling, SPEC §1b)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .blocks import EdgeBlock, IdentityBlock, NodeBlock
from .symbolic import Builder, Ref, _opname

__all__ = ["prune", "prune_channels", "contract_copies", "merge_concatenated_copies",
           "left_out_row"]


def prune(builder: Builder, outputs: dict[str, np.ndarray]):
    """Drop node blocks from which no output is reached (the branch of a gate
    taken as a positive rescaling, values computed but never used).  Input
    blocks stay.  Returns the renumbered outputs and the blocks left out.

    Complexity: one reverse pass over the blocks (they are in topological
    order) plus one O(n) id remapping when anything is dropped.
    """
    nbs, ebs = builder.node_blocks, builder.edge_blocks
    starts = np.array([nb.offset for nb in nbs])
    keep = np.array([nb.op == "input" for nb in nbs])
    for ids in outputs.values():
        keep[np.unique(np.searchsorted(starts, ids, side="right") - 1)] = True
    into: dict[int, list[EdgeBlock]] = {}
    for b in ebs:
        into.setdefault(b.dst, []).append(b)
    for k in range(len(nbs) - 1, -1, -1):
        if keep[k]:
            for b in into.get(k, []):
                keep[list(b.src_blocks)] = True
    if keep.all():
        return outputs, []
    left_out, counted = [], set()
    for k, nb in enumerate(nbs):
        if not keep[k]:
            # a layer applied twice (CBAM's channel MLP on the mean and on the
            # max) has its parameters once
            params = 0
            for b in into.get(k, []):
                if b.module not in counted:
                    counted.add(b.module)
                    params += b.n_params()
            left_out.append({"block": nb.name, "op": nb.op, "nodes": nb.size,
                             "params": int(params)})
    return _drop(builder, outputs, keep), left_out


def prune_channels(builder: Builder, outputs: dict[str, np.ndarray]):
    """Drop the output channels of a layer that nothing reads (the gate half of
    a GLU, ``conv(x)[:, :k]``): values computed but unused add nothing (SPEC
    §1), also where they share a layer with used ones.  Only channels no
    position of which is read, and only where every edge block ending on the
    node block can drop channels (:meth:`EdgeBlock.keep_outputs`: dense
    layers, convolutions without groups); repeated while a drop leaves more
    channels unread.  Returns the renumbered outputs and what was left out.

    Complexity: O(n + total source ids) per round.
    """
    left_out = []
    for _ in range(len(builder.node_blocks)):
        nbs, ebs = builder.node_blocks, builder.edge_blocks
        read = np.zeros(builder.n, dtype=bool)
        for ids in outputs.values():
            read[ids[ids >= 0]] = True
        for b in ebs:
            if b.src_range is not None:
                read[b.src_range[0]:b.src_range[1]] = True
            else:
                idx = b.src_index.reshape(-1).cpu().numpy()
                read[idx[idx >= 0]] = True
        into: dict[int, list[int]] = {}
        for i, b in enumerate(ebs):
            into.setdefault(b.dst, []).append(i)
        alive = np.ones(builder.n, dtype=bool)
        replace: dict[int, EdgeBlock] = {}
        for k, nb in enumerate(nbs):
            if nb.op == "input" or not nb.shape or k not in into:
                continue
            used = read[nb.offset:nb.stop].reshape(nb.shape[0], -1).any(axis=1)
            if used.all() or not used.any():
                continue
            keep = torch.from_numpy(used)
            new = {i: ebs[i].keep_outputs(keep) for i in into[k]
                   if ebs[i].out_shape == tuple(nb.shape)}
            if len(new) != len(into[k]) or any(b is None for b in new.values()):
                continue
            replace.update(new)
            alive[nb.offset:nb.stop] = np.repeat(used, nb.size // nb.shape[0])
            params = sum(ebs[i].n_params() - b.n_params() for i, b in new.items())
            left_out.append({"block": f"{nb.name} (channels {_ranges(np.flatnonzero(~used))})",
                             "op": nb.op, "nodes": int(nb.size - alive[nb.offset:nb.stop].sum()),
                             "params": int(params)})
        if not replace:
            return outputs, left_out
        newid = np.where(alive, np.cumsum(alive) - 1, -1)
        blocks, off = [], 0
        for k, nb in enumerate(nbs):
            size = int(alive[nb.offset:nb.stop].sum())
            shape = nb.shape if size == nb.size else (size // (nb.size // nb.shape[0]),) + \
                tuple(nb.shape[1:])
            blocks.append(NodeBlock(name=nb.name, shape=tuple(shape), offset=off, op=nb.op,
                                    index=k))
            off += size
        lookup = torch.from_numpy(newid)
        for i, b in enumerate(ebs):
            b = ebs[i] = replace.get(i, b)
            if b.src_range is not None:
                b.src_range = (int(newid[b.src_range[0]]), int(newid[b.src_range[1] - 1]) + 1)
            else:
                idx = b.src_index
                b.src_index = torch.where(idx >= 0, lookup.to(idx.device)[idx.clamp(min=0)], idx)
        builder.node_blocks, builder.n = blocks, off
        outputs = {k: newid[v] for k, v in outputs.items()}
    return outputs, left_out


def _ranges(ids: np.ndarray) -> str:
    """``0-3, 7``: consecutive runs of sorted ints."""
    runs, start = [], None
    for a, b in zip(ids, list(ids[1:]) + [None]):
        start = a if start is None else start
        if b != a + 1:
            runs.append(f"{start}-{a}" if a != start else f"{a}")
            start = None
    return ", ".join(runs)


def _drop(builder: Builder, outputs: dict[str, np.ndarray], keep: np.ndarray,
          drop_edges: frozenset = frozenset(), aliases: dict | None = None
          ) -> dict[str, np.ndarray]:
    """Remove the node blocks not in ``keep``, the edge blocks ending there and
    those in ``drop_edges`` (indices); renumber nodes, blocks and outputs.
    ``aliases``: a block -> (the stop of its old id range, the kept blocks
    whose nodes, in order, its old nodes become, itself among them where it
    keeps some); its readers read those.  O(n)."""
    nbs, ebs = builder.node_blocks, builder.edge_blocks
    newid = np.full(builder.n, -1, dtype=np.int64)
    new_blocks, new_index, off = [], {}, 0
    for k, nb in enumerate(nbs):
        if keep[k]:
            newid[nb.offset:nb.stop] = np.arange(off, off + nb.size)
            new_index[k] = len(new_blocks)
            new_blocks.append(NodeBlock(name=nb.name, shape=nb.shape, offset=off, op=nb.op,
                                        index=len(new_blocks)))
            off += nb.size
    aliases = aliases or {}
    for k, (stop, parts) in aliases.items():
        # (a block kept among its own parts keeps its first nodes, in order)
        newid[nbs[k].offset:stop] = np.concatenate(
            [newid[nbs[p].offset:nbs[p].stop] for p in parts])
    lookup = torch.from_numpy(newid)
    kept_edges, kept_reads = [], []
    for k, b in enumerate(ebs):
        if not keep[b.dst] or k in drop_edges:
            continue
        b.dst = new_index[b.dst]
        b.src_blocks = tuple(sorted({new_index[p] for s in b.src_blocks
                                     for p in (aliases[s][1] if s in aliases else (s,))}))
        if b.src_range is not None:
            ids = newid[b.src_range[0]:b.src_range[1]]
            if aliases and not bool((np.diff(ids) == 1).all()):
                # a range over a block whose nodes became others' (not in order)
                b.src_index, b.src_range = torch.from_numpy(ids.copy()).reshape(b.in_shape), None
            else:
                b.src_range = (int(ids[0]), int(ids[-1]) + 1)
        else:
            b.src_index = lookup[b.src_index]
        kept_edges.append(b)
        if builder.record:
            kept_reads.append(builder.reads[k])
    builder.node_blocks, builder.edge_blocks, builder.n = new_blocks, kept_edges, off
    builder.reads = kept_reads
    return {k: newid[v] for k, v in outputs.items()}


def _uses(builder: Builder, outputs: dict[str, np.ndarray]) -> tuple:
    """(held, readers, into): which node blocks hold an output, and per node
    block the edge blocks (indices) that read it and that end on it.  O(blocks + outputs)."""
    nbs, ebs = builder.node_blocks, builder.edge_blocks
    held = np.zeros(len(nbs), dtype=bool)
    starts = np.array([nb.offset for nb in nbs])
    for ids in outputs.values():
        held[np.unique(np.searchsorted(starts, ids, side="right") - 1)] = True
    readers: dict[int, list[int]] = {}
    into: dict[int, list[int]] = {}
    for i, b in enumerate(ebs):
        into.setdefault(b.dst, []).append(i)
        for s in b.src_blocks:
            readers.setdefault(s, []).append(i)
    return held, readers, into


def contract_copies(builder: Builder, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge a node block whose one reader is a plain copy into a sum (an
    identity shortcut of its own values) into that sum: its incoming edges end
    on the sum's block, as a residual addition's do (SPEC §1: the add creates
    no nodes).  Such a block was materialized only because another reader
    read it, since pruned: the pooling of a squeeze-excitation gate taken as a
    rescaling (SPEC §1b), in ``y = conv(x) * g + x``.  A copy with a factor
    (a gain that did not fold) moves the factor onto the incoming edges where
    they take it.  Returns the renumbered outputs.

    Complexity: O(blocks + n) plus one renumbering when anything merges.
    """
    nbs, ebs = builder.node_blocks, builder.edge_blocks
    held, readers, into = _uses(builder, outputs)
    keep = np.ones(len(nbs), dtype=bool)
    gone: set[int] = set()
    for k, nb in enumerate(nbs):
        if nb.op == "input" or held[k] or len(readers.get(k, ())) != 1 or not into.get(k):
            continue
        r = ebs[readers[k][0]]
        if type(r) is not IdentityBlock or not getattr(r, "copies_nodes", False) or \
                r.src_range != (nb.offset, nb.stop) or nbs[r.dst].size != nb.size or \
                not keep[r.dst]:
            continue
        scale = None
        for t in (r.in_scale, r.out_scale):
            if t is not None:
                t = torch.broadcast_to(t.double().cpu(), r.in_shape).reshape(-1)
                scale = t if scale is None else scale * t
        incoming = [ebs[i] for i in into[k]]
        if scale is not None and not bool((scale == 1).all()):
            per = [b.output_scale_of(scale) for b in incoming]
            if any(p is None for p in per):
                continue
            for b, p in zip(incoming, per):
                b.scale_output(p)
        for b in incoming:
            b.dst = r.dst
        into.setdefault(r.dst, []).extend(into[k])     # a chain of copies merges whole
        # named by the layer, as a sum whose nodes no one else read is
        nbs[r.dst].name = nb.name
        keep[k] = False
        gone.add(readers[k][0])
    return outputs if keep.all() else _drop(builder, outputs, keep, frozenset(gone))


def left_out_row(n, env, real, name) -> dict | None:
    """The ``meta["left_out"]`` row of a layer (fx node ``n``, its real output
    ``real``, values ``env``) that makes no node block, as :func:`prune`
    writes it: its weights (not a bias, as edge blocks count them); None for
    an op without weights."""
    params = sum(int(env[a].numel()) for a in n.all_input_nodes
                 if a.op == "get_attr" and isinstance(env.get(a), torch.Tensor)
                 and env[a].is_floating_point() and env[a].ndim >= 2)
    if not params or not isinstance(real, torch.Tensor):
        return None
    op = _opname(n.target)
    op = "conv" if op.startswith("conv") else \
        "dense" if op in ("linear", "addmm", "mm", "matmul", "bmm") else op
    # (at batch 1 the whole value is the sample's, folded or not)
    return {"block": name, "op": op, "nodes": int(real.numel()), "params": params}


def _joined(shapes) -> tuple:
    """The shape of blocks of ``shapes`` concatenated along their first axis,
    or flat where their other axes differ."""
    if all(s[1:] == shapes[0][1:] for s in shapes) and all(len(s) for s in shapes):
        return (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])
    return (sum(math.prod(s) for s in shapes),)


def _piece(builder, i, o, cut, shape) -> Ref:
    """The source ids (and factors, and recorded value ids) of the part ``cut``
    (a slice of the flat output, or a list of them) of edge block ``o``
    (index ``i``), an identity, as a Ref of ``shape``."""
    cuts = cut if isinstance(cut, list) else [cut]

    def part(t):
        flat = t.reshape(-1)
        return torch.cat([flat[c] for c in cuts]).reshape((1,) + tuple(shape))

    src = torch.arange(*o.src_range) if o.src_range is not None else o.src_index
    scale = None if o.in_scale is None else part(torch.broadcast_to(o.in_scale, o.in_shape))
    value = exact = None
    if builder.record:
        value, exact = (None if bool((t < 0).all()) else part(t) for t in builder.reads[i])
    return Ref(part(src), scale, value=value, exact=exact)


def _factors_moved(copy, parts, merged, nbs, incoming) -> bool:
    """Move the factors of ``copy`` (a gain on the concatenation, a batch
    norm after it) onto the edges that end on those of its ``parts`` that
    are ``merged`` into the sum, each part its slice; False (nothing moved)
    where a part's layer cannot take them (a factor that varies within a
    channel of a convolution)."""
    if copy.in_scale is None:
        return True
    scale = torch.broadcast_to(copy.in_scale.double().cpu(), copy.in_shape).reshape(-1)
    moves, at = [], 0
    for k, blocks in zip(parts, incoming):
        piece = scale[at:at + nbs[k].size]
        at += nbs[k].size
        if k not in merged or bool((piece == 1).all()):
            continue
        per = [b.output_scale_of(piece) for b in blocks]
        if any(p is None for p in per):
            return False
        moves += list(zip(blocks, per))
    for b, p in moves:
        b.scale_output(p)
    return True


def merge_concatenated_copies(builder: Builder,
                              outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A residual addition onto a concatenation of layer outputs
    (``cat([conv_a(x), conv_b(x)]) + x``: GhostNet's ghost module, MixNet's
    mixed convolution) ends on the concatenated layers' own nodes, as an add
    onto one layer's output does (SPEC §1: the add creates no nodes).

    The concatenation made the layers' node blocks, and the sum a block of its
    own with a plain copy of them; where each of those blocks is read by that
    copy only, and the sum's other terms are identity shortcuts (split by the
    blocks' ranges), the shortcuts' parts end on the blocks and the sum's
    nodes are theirs.  A block read elsewhere too (its pre-add value is
    another layer's input) keeps the sum apart.  Returns the renumbered outputs.

    Complexity: O(blocks + n) plus one renumbering when anything merges.
    """
    nbs, ebs = builder.node_blocks, builder.edge_blocks
    held, readers, into = _uses(builder, outputs)
    by_offset = {nb.offset: k for k, nb in enumerate(nbs)}
    id_of = {id(b): i for i, b in enumerate(ebs)}

    def plain(b) -> bool:
        return type(b) is IdentityBlock and b.out_scale is None

    def tiles(r) -> list[int] | None:
        # the blocks a copy reads, whole and in order (two or more), where one
        # at least is read by it only (its nodes can be the sum's)
        parts, at = [], r.src_range[0]
        while at < r.src_range[1] and at in by_offset:
            k = by_offset[at]
            parts.append(k)
            at = nbs[k].stop
        ok = at == r.src_range[1] and len(parts) > 1 and any(merges(k, r) for k in parts)
        return parts if ok else None

    def merges(k, r) -> bool:
        return nbs[k].op != "input" and not held[k] and bool(into.get(k)) and \
            readers.get(k) == [id_of[id(r)]]

    keep = np.ones(len(nbs), dtype=bool)
    gone: set[int] = set()
    aliases: dict[int, tuple[int, list[int]]] = {}
    for S, nb in enumerate(nbs):
        terms = into.get(S, [])
        if nb.op == "input" or not terms or not all(plain(ebs[i]) for i in terms):
            continue
        copy, parts = next(((i, p) for i in terms if ebs[i].src_range is not None and
                            getattr(ebs[i], "copies_nodes", False) and
                            (p := tiles(ebs[i])) is not None), (None, None))
        if copy is None:
            continue
        r = ebs[copy]
        merged = [k for k in parts if merges(k, r)]
        if not _factors_moved(r, parts, merged, nbs, [[ebs[i] for i in into[k]] for k in parts]):
            continue
        cuts, at = {}, 0
        for k in parts:
            cuts[k] = slice(at, at + nbs[k].size)
            at += nbs[k].size
        rest = [k for k in parts if k not in merged]      # the sum keeps their ranges
        shape = _joined([nbs[k].shape for k in rest]) if rest else None
        for i in terms:
            o = ebs[i]
            pieces = [(k, cuts[k], nbs[k].shape) for k in merged if i != copy]
            if rest:
                pieces.append((S, [cuts[k] for k in rest], shape))
            for k, cut, shp in pieces:
                blk = IdentityBlock(shp, module=o.module)
                blk.copies_nodes = getattr(o, "copies_nodes", False)
                builder.attach(blk, _piece(builder, i, o, cut, shp), k)
        gone.update(terms)
        for k in merged:
            nbs[k].op = "add"
        if rest:
            nbs[S] = NodeBlock(name=nb.name, shape=shape, offset=nb.offset, op=nb.op,
                               index=nb.index)
        else:
            keep[S] = False
        aliases[S] = (nb.stop, [S if k in rest else k for k in parts])
        nb_readers = readers.get(S, [])
        for k in merged:       # the sum's readers are the parts' readers now
            readers[k] = nb_readers
    if not aliases:
        return outputs
    # (a merged sum that is an output: its ids become the parts')
    return _drop(builder, outputs, keep, frozenset(gone), aliases)

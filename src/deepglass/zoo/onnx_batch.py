"""An imported ONNX graph that is right at batch size 1 only, run sample by sample.

A file exported with a fixed batch of 1 may reshape, select or move its batch
axis (a ``Reshape`` to ``[-1]`` and back, a ``Gather`` or ``Squeeze`` of axis
0): written as it is, the graph computes the right values at batch 1 only, and
at another batch it fails or, worse, picks or mixes samples silently.
:class:`PerSample` holds that graph and runs it once per sample, vectorized
over the samples by :func:`torch.vmap` (each sample sees the graph's batch of
1), so the module is right at any batch size.  A call at batch 1 is the graph
itself: what ``torch.export`` and the signed-graph capture see.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PerSample"]


class PerSample(nn.Module):
    """``net`` (an ``fx.GraphModule`` right at batch 1) run one sample at a time.

    Inputs are split along axis 0 (every input must hold the same number of
    samples); each output is joined back along axis 0 where the graph keeps a
    batch axis of 1 (concatenated), else stacked on a new one.  The samples
    run as one :func:`torch.vmap` of ``net`` (2-10x faster than a loop on
    timm's nets as the dynamo exporter writes them); where a submodule has
    hooks (which would see vmap's batched values), or an op has no vmap rule,
    as a loop of batch-1 calls; :meth:`record` returns layers' outputs from
    the vmap instead of hooks.  Attributes of the import
    (``default_input_shape``, ``input_names``, ...) are the wrapper's;
    ``batch_one_only`` says what the graph is, ``takes_batches`` that this
    module runs batches anyway (:func:`deepglass.graph.trace.forward_batch_size`).

    Cost: one vectorized call of ``net`` (or one call per sample).
    """

    batch_one_only = True
    takes_batches = True

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x, *rest):
        if isinstance(x, torch.fx.Proxy):
            # torch.fx's symbolic trace (one proxy; the tracer cannot unpack
            # ``rest``): the graph itself, as at batch 1
            return self.net(x)
        return self._per_sample(self.net, (x, *rest))

    def record(self, xs, watch: dict) -> tuple:
        """The outputs on ``xs`` and those of the ``watch``ed submodules.

        A forward hook inside the vmap would see batched values, so the
        layers' outputs are instead returned by the mapped function and
        joined over the samples like the module's outputs: one vectorized
        call where :meth:`forward` takes one.

        Parameters
        ----------
        xs : tuple of torch.Tensor
            The inputs, samples along axis 0.
        watch : dict of str to nn.Module
            Submodules of ``net`` by the names to report them under.

        Returns
        -------
        out
            What ``self(*xs)`` returns.
        recorded : list of (str, torch.Tensor)
            Each call of a watched module in call order (a module called
            twice appears twice): its name and its output (the first element
            of a tuple output), samples along axis 0.
        """
        names: list[str] = []

        def run(*args):
            got = []

            def hook_for(name):
                def hook(_m, _inp, out):
                    out = out[0] if isinstance(out, (tuple, list)) else out
                    if torch.is_tensor(out):
                        got.append((name, out))
                return hook

            handles = [m.register_forward_hook(hook_for(k)) for k, m in watch.items()]
            try:
                out = self.net(*args)
            finally:
                for h in handles:
                    h.remove()
            names[:] = [k for k, _ in got]
            return out, tuple(t for _, t in got)

        out, seen = self._per_sample(run, tuple(xs))
        return out, list(zip(names, seen))

    def _per_sample(self, fn, xs: tuple):
        """``fn`` (the graph, or the graph and what it records) at each sample
        of ``xs`` as the graph's batch of 1: one vmap, else a loop."""
        n = xs[0].shape[0] if isinstance(xs[0], torch.Tensor) and xs[0].dim() else 1
        if n == 1:      # the graph itself: what torch.export and the capture see
            return fn(*xs)
        if any(not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != n for t in xs):
            raise ValueError(f"every input must hold the same number of samples ({n}) along "
                             "axis 0")
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in self.net.modules())
        if not hooked and not getattr(self, "_no_vmap", False):
            try:
                # each sample as the graph's batch of 1: (n, 1, ...) mapped over
                # axis 0; stochastic layers (training mode) draw per sample, as
                # in a batch
                return _unstack(torch.vmap(fn, randomness="different")(
                    *(t.unsqueeze(1) for t in xs)))
            except Exception:  # noqa: BLE001 - an op without a vmap rule: loop instead
                self._no_vmap = True
        return _join([fn(*(t[i:i + 1] for t in xs)) for i in range(n)])


def _unstack(out):
    """vmap's outputs ``(n, *per_sample)`` joined as :func:`_join` joins them."""
    if isinstance(out, torch.Tensor):
        return out.flatten(0, 1) if out.dim() >= 2 and out.shape[1] == 1 else out
    if isinstance(out, tuple):
        parts = [_unstack(o) for o in out]
        return type(out)(*parts) if hasattr(out, "_fields") else tuple(parts)
    raise TypeError(f"cannot join outputs of type {type(out).__name__} over samples")


def _join(outs: list):
    first = outs[0]
    if isinstance(first, torch.Tensor):
        # a graph that keeps its batch axis returns (1, ...) per sample
        return torch.cat(outs) if first.dim() and first.shape[0] == 1 else torch.stack(outs)
    if isinstance(first, tuple):
        parts = [_join([o[k] for o in outs]) for k in range(len(first))]
        return type(first)(*parts) if hasattr(first, "_fields") else tuple(parts)
    raise TypeError(f"cannot join outputs of type {type(first).__name__} over samples")

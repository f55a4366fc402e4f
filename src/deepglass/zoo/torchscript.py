"""TorchScript archives (``torch.jit.save``) as modules the capture can read.

A ``ScriptModule`` cannot be captured: ``torch.export`` and ``torch.fx`` trace
Python, and a TorchScript archive holds TorchScript IR.  PyTorch's
TorchScript-based ONNX exporter reads that IR as it is, so
:func:`torchscript_to_module` exports the archive to ONNX in memory (one run on
a zero sample of the given shape, batch axis dynamic) and imports the file
(:mod:`deepglass.zoo.onnx_import`): the same layers, weights and outputs as an
fx ``GraphModule``.  The export keeps batch norms as ``BatchNormalization``
(``TrainingMode.PRESERVE`` on the module in eval mode: inference statistics),
where the exporter's default would fold one that follows a convolution into
its weights: the graph's ``batchnorm`` rule then decides, and ``"ignore"``
(the paper's convention) reads the convolution's own weights.  A scripted
archive keeps its shape checks (``F.group_norm``'s loop over the sizes) as
ONNX ``Loop`` / ``If`` nodes on constants, which the import drops or runs.  Cost: one
export and one import, linear in the size of the network.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings

import torch
from torch import nn

from ..errors import DeepglassError, check_type, first_line

__all__ = ["torchscript_to_module"]


@contextlib.contextmanager
def _quiet_fds():
    """Silence the process's stdout and stderr (file descriptors 1 and 2) while the exporter
    runs: where it fails it has C++ print the whole TorchScript graph ('Torch IR graph at
    exception: ...', tens of lines) past Python's ``sys.stdout``, before the one-line error."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a stream without flush (closed, replaced)
            pass
    saved = []
    with tempfile.TemporaryFile() as sink:
        for fd in (1, 2):
            try:
                copy = os.dup(fd)
            except OSError:  # no such descriptor (an embedded interpreter)
                continue
            saved.append((fd, copy))
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def torchscript_to_module(script: torch.jit.ScriptModule, input_shape, name: str = "") -> nn.Module:
    """The module of a TorchScript archive, through ONNX.

    Parameters
    ----------
    script : torch.jit.ScriptModule
        A scripted or traced module (``torch.jit.load``).
    input_shape : tuple of int, or a tuple of them
        Shape of one sample of each input, without the batch axis (an archive
        does not store it).
    name : str
        How error messages name the archive (its path).

    Returns
    -------
    torch.nn.Module
        What :func:`deepglass.zoo.onnx_import.onnx_to_module` returns for the
        exported file; its forward takes the archive's inputs in order.

    Raises
    ------
    DeepglassError
        One line: the ``onnx`` package missing, or the exporter's reason where
        it cannot write the archive (an op without an ONNX form, control flow
        on values); ``script`` not a ``torch.jit.ScriptModule``.
    """
    check_type(script, torch.jit.ScriptModule, "script")   # nn.Module: exported as a plain one
    try:
        import onnx
    except ImportError:
        raise DeepglassError(f"reading the TorchScript file {name} needs the 'onnx' package (pip "
                             "install 'deepglass[onnx]'), or arch= (--arch) to load its "
                             "weights into an architecture") from None
    from ..graph.quiet import quiet_exporter
    from .onnx_import import onnx_to_module

    shapes = [tuple(input_shape)] if all(isinstance(d, int) for d in input_shape) \
        else [tuple(s) for s in input_shape]
    names = [f"input_{i}" for i in range(len(shapes))]
    # the archive's own precision: a float64 or float16 one refuses float32 inputs
    dtype = next((p.dtype for p in script.parameters() if p.is_floating_point()), torch.float32)
    sample = tuple(torch.zeros((1, *s), dtype=dtype) for s in shapes)
    try:        # the shape first: the exporter's own error on a wrong one says nothing of it
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            script.eval()(*sample)
    except Exception as exc:  # noqa: BLE001 - the archive's own checks raise any kind
        shown = ";".join(",".join(map(str, s)) for s in shapes)
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # the interpreter's first line is generic; the error raised is its last
        why = lines[-1][:160] if len(lines) > 1 and "TorchScript interpreter" in lines[0] \
            else first_line(exc, limit=160)
        raise DeepglassError(f"the TorchScript file {name} does not accept input of shape "
                             f"{shown} ({why}); check --input-shape (one per input)") from None
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), quiet_exporter(("torch.onnx",), stdout=True), _quiet_fds():
            warnings.simplefilter("ignore")
            torch.onnx.export(script.eval(), sample, buf, dynamo=False, input_names=names,
                              dynamic_axes={n: {0: "batch"} for n in names},
                              training=torch.onnx.TrainingMode.PRESERVE)
    except Exception as exc:  # the exporter raises many kinds of errors
        raise DeepglassError(f"cannot convert the TorchScript file {name} through ONNX: "
                             f"{first_line(exc)}; give the Python class with --arch (arch=) to "
                             "load the archive's weights into it") from None
    try:
        return onnx_to_module(onnx.load_from_string(buf.getvalue()),
                              input_shape=shapes[0] if len(shapes) == 1 else shapes)
    except DeepglassError as exc:
        if str(exc).startswith("cannot convert ONNX node"):
            # (PyTorch's exporter may write an invalid file: a Squeeze dropped
            # before a Gemm, as braindecode's CombinedConv gets)
            raise DeepglassError(
                f"the TorchScript file {name}, converted through ONNX in memory: {exc}; if "
                "the model itself runs, give the Python class with --arch (arch=) to load "
                "the archive's weights into it") from None
        if "training-mode batch norm" not in str(exc):
            raise
        raise DeepglassError(f"the TorchScript file {name} was traced or scripted with the "
                             "model in train mode (its batch norms normalize by each batch's "
                             "statistics): trace it again after model.eval(), or give --arch "
                             "to load its weights into the Python class") from None

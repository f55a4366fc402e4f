"""Silence PyTorch's exporters while deepglass runs them: they log a failing
op's whole traceback, or print the program traced so far, before raising; the
capture says what failed in one line instead."""

from __future__ import annotations

import contextlib
import io
import logging

__all__ = ["quiet_exporter"]


#: loggers of the exporter silenced while it runs
_EXPORT_LOGGERS = ("torch._subclasses.fake_tensor", "torch.fx.experimental.symbolic_shapes",
                   "torch.fx.experimental.recording", "torch._export", "torch.export")


@contextlib.contextmanager
def quiet_exporter(loggers=_EXPORT_LOGGERS, stdout: bool = False):
    """Silence an exporter while it runs: its ``loggers`` below CRITICAL, what it
    prints on stderr (and on stdout with ``stdout=True``); levels restored after."""
    saved = [(lg, lg.level) for lg in map(logging.getLogger, loggers)]
    for lg, _ in saved:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.ExitStack() as stack:
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)

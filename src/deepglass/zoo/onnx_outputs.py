"""Named tuples of an ONNX graph's output names (what an imported module with
several outputs returns), importable by name so the module pickles.

A class is named ``OnnxOutputs_<hex of the comma-joined names>``; the module
``__getattr__`` (PEP 562) rebuilds it from its name in any process, so a
pickled module (a Ray worker's copy) finds it without the importer having run.
"""

from __future__ import annotations

import collections
import keyword

__all__ = ["outputs_tuple"]

_PREFIX = "OnnxOutputs_"


def outputs_tuple(names) -> type | None:
    """The named tuple class of fields ``names``, or None when they cannot be
    fields (not identifiers, keywords, a leading underscore, repeated)."""
    names = list(names)
    if len(set(names)) != len(names) or not all(
            nm.isidentifier() and not keyword.iskeyword(nm) and not nm.startswith("_")
            for nm in names):
        return None
    return __getattr__(_PREFIX + ",".join(names).encode().hex())


def __getattr__(name: str):
    if not name.startswith(_PREFIX):
        raise AttributeError(name)
    try:
        fields = bytes.fromhex(name[len(_PREFIX):]).decode().split(",")
    except ValueError:
        raise AttributeError(name) from None
    base = collections.namedtuple(name, fields, module=__name__)
    cls = type(name, (base,), {"__slots__": (), "__module__": __name__, "__repr__": _repr})
    globals()[name] = cls
    return cls


def _repr(self) -> str:
    # the class name encodes the fields; the outputs print as OnnxOutputs(...)
    return "OnnxOutputs(" + ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self)) + ")"

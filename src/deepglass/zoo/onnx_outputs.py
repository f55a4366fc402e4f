"""Named tuples of an ONNX graph's output names (what an imported module with
several outputs returns), importable by name so the module pickles.

A class is named ``OnnxOutputs_<hex of the comma-joined names>``; the module
``__getattr__`` (PEP 562) rebuilds it from its name in any process, so a
pickled module (a Ray worker's copy) finds it without the importer having run.
"""

from __future__ import annotations

import collections

from ..graph.outputs import field_name

__all__ = ["outputs_tuple", "field_name"]

_PREFIX = "OnnxOutputs_"


def outputs_tuple(names) -> type | None:
    """The named tuple class of the fields ``names``, each made a field where it
    cannot be one (:func:`field_name`: ``box.reg`` -> ``box_reg``, ``def`` ->
    ``def_``, a repeat suffixed); None where no name says anything (all are
    numbers, an exporter's value ids: the outputs are named by position)."""
    names = [str(nm) for nm in names]
    if all(nm.isdigit() or not nm.strip("_") for nm in names):
        return None
    fields: list[str] = []
    for i, nm in enumerate(names):
        fields.append(field_name(nm, i, fields))
    return __getattr__(_PREFIX + ",".join(fields).encode().hex())


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

"""Architectures of the user's own code for a state dict: ``arch="MODULE:CLASS"``.

A trained network is often a ``state_dict`` file next to the class that built
it (a package's ``models.py``, a research script).  ``arch`` then names that
class (or any callable returning an ``nn.Module``) the way entry points do:

- ``"package.models:Net"``: imported with :func:`importlib.import_module`;
- ``"path/to/model.py:Net"``: the file imported by path, its folder first on
  ``sys.path`` while it runs, as ``python path/to/model.py`` would have it
  (the modules it imports from beside it, :data:`SIBLING_MODULES`, are
  shipped by value to Ray's workers, which need not have the folder);
- ``"package.models:Net('tiny', width=2)"``: called with these arguments,
  which must be Python literals (numbers, strings, tuples, lists, dicts,
  ``True`` / ``False`` / ``None``); nothing else is evaluated.

Importing the module runs its code, as importing it in Python would: name
only code you trust.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import DeepglassError, first_line

__all__ = ["is_user_arch", "names_user_code", "build_user_arch", "SIBLING_MODULES"]

#: modules that an architecture file imported from its own folder (pickled by
#: value where work is shipped: :func:`deepglass.executors.RayExecutor`)
SIBLING_MODULES: list = []

#: MODULE:ATTR[(ARGS)], MODULE a dotted name or a path ending in .py
_SPEC = re.compile(r"^(?P<module>[^:()]+):(?P<attr>[A-Za-z_][\w.]*)\s*(?P<call>\(.*\))?\s*$",
                   re.DOTALL)


def is_user_arch(arch: str) -> bool:
    """Whether ``arch`` names code of the user's (``MODULE:CLASS``), not a zoo
    architecture or ``timm:NAME``."""
    return ":" in arch and not arch.startswith("timm:")


def names_user_code(name: str) -> bool:
    """Whether ``name`` has the form ``MODULE:CLASS[(args)]`` (a model named by its
    code, built with random weights, where no file of that name exists)."""
    return is_user_arch(name) and _SPEC.match(name) is not None


def _arguments(call: str | None, arch: str) -> tuple[list, dict]:
    if not call:
        return [], {}
    try:
        expr = ast.parse("f" + call, mode="eval").body
        plain = (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)
                 and not any(isinstance(a, ast.Starred) for a in expr.args)
                 and not any(k.arg is None for k in expr.keywords))
        if not plain:
            raise ValueError("not a plain call")
        return ([ast.literal_eval(a) for a in expr.args],
                {k.arg: ast.literal_eval(k.value) for k in expr.keywords})
    except (SyntaxError, ValueError) as exc:
        raise DeepglassError(f"arch {arch!r}: the arguments {call} must be Python literals "
                             f"(numbers, strings, tuples, lists, dicts): {exc}") from None


def _reason(exc: BaseException) -> str:
    """``Type: message``, first line only (the user's code may raise long texts)."""
    return first_line(exc, typed=True)


def _import(module: str, arch: str):
    try:
        if module.endswith(".py"):
            path = Path(module).expanduser()
            if not path.is_file():
                raise DeepglassError(f"arch {arch!r}: no such file {str(path)!r}")
            name = f"deepglass_user_arch_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod          # dataclasses look the module up while it runs
            folder = str(path.resolve().parent)
            before = set(sys.modules)
            sys.path.insert(0, folder)
            try:
                spec.loader.exec_module(mod)
            finally:
                sys.path.remove(folder)
                # not importable elsewhere: cloudpickle (Ray) then ships its classes
                # by value to the workers, which never saw the file's path
                sys.modules.pop(name, None)
            for k, m in list(sys.modules.items()):
                where = getattr(m, "__file__", None)
                if k not in before and where and Path(where).resolve().is_relative_to(folder) \
                        and m not in SIBLING_MODULES:
                    SIBLING_MODULES.append(m)
            return mod
        return importlib.import_module(module)
    except DeepglassError:
        raise
    except Exception as exc:
        raise DeepglassError(f"arch {arch!r}: cannot import {module!r}: {_reason(exc)}") from None


def build_user_arch(arch: str, seed: int = 0) -> nn.Module:
    """The module ``arch`` (``MODULE:CLASS[(literal args)]``) names, built with
    its arguments after ``torch.manual_seed(seed)``.

    Parameters
    ----------
    arch : str
        ``"package.models:Net"``, ``"path/model.py:Net"`` or either with a call
        of literal arguments, ``"package.models:Net('tiny', depth=3)"``.
    seed : int
        Seed of the initialization (overwritten by the state dict loaded next).

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> net = build_user_arch("torch.nn:Linear(3, 2)")
    >>> tuple(net.weight.shape)
    (2, 3)
    """
    m = _SPEC.match(arch)
    if m is None:
        raise DeepglassError(f"arch {arch!r} is not MODULE:CLASS or MODULE:CLASS(literal "
                             "arguments), e.g. 'mypackage.models:Net' or 'model.py:Net(width=2)'")
    args, kwargs = _arguments(m["call"], arch)
    obj = _import(m["module"].strip(), arch)
    for part in m["attr"].split("."):
        if not hasattr(obj, part):
            raise DeepglassError(f"arch {arch!r}: {m['module'].strip()!r} has no {m['attr']!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise DeepglassError(f"arch {arch!r}: {m['attr']!r} is not a class or function")
    torch.manual_seed(seed)
    try:
        model = obj(*args, **kwargs)
    except Exception as exc:
        raise DeepglassError(f"arch {arch!r}: building the model failed: "
                             f"{_reason(exc)}") from None
    if not isinstance(model, nn.Module):
        raise DeepglassError(f"arch {arch!r} built a {type(model).__name__}, not a torch.nn.Module")
    return model

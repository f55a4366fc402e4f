"""Every docstring example in the package runs and prints what it shows.

The examples are the documentation a user copies first; a renamed argument or
a changed repr must fail here, not in their session."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import deepglass

MODULES = sorted(m.name for m in pkgutil.walk_packages(deepglass.__path__, "deepglass.")
                 if not m.name.endswith("__main__"))     # that one runs the command


def _has_examples(name: str) -> bool:
    try:
        module = importlib.import_module(name)
    except ImportError:          # an optional integration that is not installed
        return False
    return any(t.examples for t in doctest.DocTestFinder().find(module))


@pytest.mark.parametrize("name", [m for m in MODULES if _has_examples(m)])
def test_docstring_examples(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)             # an example that writes leaves nothing behind
    monkeypatch.setenv("MPLBACKEND", "Agg")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             raise_on_error=False, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} fail"


def test_the_package_has_examples():
    assert sum(_has_examples(m) for m in MODULES) >= 10

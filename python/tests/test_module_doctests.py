"""The examples in the package's docstrings run as written."""

import doctest
import importlib
import pkgutil

import pytest

import ratethrottle

MODULES = sorted(
    name
    for _, name, _ in pkgutil.iter_modules(ratethrottle.__path__, "ratethrottle.")
    if name not in ("ratethrottle.__main__",)
)


@pytest.mark.parametrize("name", ["ratethrottle", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"

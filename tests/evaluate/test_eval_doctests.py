"""The examples in the segmenter.evaluate docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["selector", "kubernetes", "calico", "engine", "validate", "model", "load", "core"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"segmenter.evaluate.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

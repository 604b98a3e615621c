"""Runs the doctest examples of every module in pipeline/, so plain pytest checks them."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import pipeline

MODULES = sorted(info.name for info in pkgutil.walk_packages(pipeline.__path__, prefix="pipeline."))


def test_modules_with_examples_are_found() -> None:
    assert {"pipeline.ingest", "pipeline.correlate.silence", "pipeline.state"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"

"""Runs the doctest examples of every module in detectors/, so plain pytest checks them."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import detectors

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(detectors.__path__, prefix="detectors.")
)


def test_modules_are_found() -> None:
    assert {"detectors.golden", "detectors.scoring"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"

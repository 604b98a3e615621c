"""The leaf module of label names and matchers that config and correlate share."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.correlate import silence
from pipeline.labels import Matcher, is_label_name, parse_matcher


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("service", True),  # letters
        ("__name__", True),  # underscores, as Prometheus' own name label
        ("http_2xx", True),  # digits after the first character
        ("2xx", False),  # a digit first
        ("", False),  # nothing
        ("service-name", False),  # a dash is no label character
    ],
)
def test_is_label_name(name: str, valid: bool) -> None:
    assert is_label_name(name) is valid


def test_silence_still_exports_the_matchers() -> None:
    assert silence.Matcher is Matcher
    assert silence.parse_matcher is parse_matcher


def test_the_config_does_not_import_the_correlator() -> None:
    """No cycle: config reads matchers from the leaf module, never from correlate."""
    code = "import sys, pipeline.config; print('pipeline.correlate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

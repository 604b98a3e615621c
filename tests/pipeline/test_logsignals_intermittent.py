"""Template silence: a stopped heartbeat is reported, a line that comes now and then is not."""

from __future__ import annotations

import pytest

from pipeline.config import DetectConfig, LogsConfig
from pipeline.logsignals import LogStage
from pipeline.model import LogRecord

T0 = 1_795_680_000.0  # a multiple of 60: buckets start on T0 + k * 60
CONFIG = LogsConfig.model_validate(
    {"bucket": 60.0, "warmup_buckets": 3, "silence_window": 6, "silence_after": 2}
)


def _silences(pattern: str) -> list[float]:
    """Feed one template per `pattern` ("x" present, "." absent, one per minute), then two
    empty minutes; return when it was reported silent (seconds after T0)."""
    stage = LogStage(CONFIG, DetectConfig())
    found: list[float] = []
    for minute, mark in enumerate(pattern):
        if mark == "x":
            stage.observe(
                LogRecord(T0 + minute * 60 + 30, "info", "sync ok", (("service", "api"),))
            )
        found.extend(a.ts - T0 for a in stage.advance(T0 + minute * 60 + 59))
    end = len(pattern) * 60
    for second in range(end, end + 3 * 60, 15):
        found.extend(a.ts - T0 for a in stage.advance(T0 + second))
    return found


@pytest.mark.parametrize(
    ("pattern", "silent"),
    [
        # a heartbeat: present every minute, then gone for two
        ("x" * 12, True),
        # present in all but one of twenty minutes: a two-minute gap is not chance
        ("xxxxxxxx.xxxxxxxxxxx", True),
        # comes in about a third of the minutes, happened to fill the last four: not a heartbeat
        ("x..x..x...x.x..xxxx", False),
        # present four minutes in five: a two-minute gap comes by chance 4% of the time
        ("xxxx.xxxx.xxxx.xxxx", False),
        # too young to tell (fewer buckets than the silence window)
        ("xxx", False),
    ],
)
def test_silence_needs_a_template_steady_since_first_seen(pattern: str, silent: bool) -> None:
    found = _silences(pattern)
    assert bool(found) is silent
    if silent:
        # reported when the second empty bucket closes
        assert found[0] == (len(pattern) + 2) * 60

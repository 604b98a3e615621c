"""The `logs:` section: defaults, and each bad value named by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import LogsConfig, load_config
from pipeline.errors import ConfigError

MINIMAL = {
    "receivers": [{"name": "oncall", "type": "alertmanager", "url": "http://127.0.0.1:8080/x"}],
    "route": {"receivers": ["oncall"]},
}


def _load(tmp_path: Path, logs: object) -> LogsConfig:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "logs": logs}), encoding="utf-8")
    return load_config(path).logs


def test_defaults(tmp_path: Path) -> None:
    logs = _load(tmp_path, {})
    assert logs == LogsConfig()
    assert (logs.enabled, logs.bucket, logs.warmup_buckets) == (True, 60.0, 10)
    assert (logs.new_template_min_level, logs.max_templates_per_service) == ("warning", 1000)
    assert logs.masking == []


def test_durations_and_masks_parse(tmp_path: Path) -> None:
    logs = _load(
        tmp_path,
        {
            "bucket": "30s",
            "repeat_every": "250ms",
            "masking": [{"pattern": r"ord_\w+", "mask_with": "ORDER"}],
        },
    )
    assert (logs.bucket, logs.repeat_every) == (30.0, 0.25)
    assert [(m.pattern, m.mask_with) for m in logs.masking] == [(r"ord_\w+", "ORDER")]


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        # unknown keys are errors, as everywhere
        ({"buckets": "60s"}, "logs.buckets: unknown key"),
        # a level ingest does not know
        ({"new_template_min_level": "loud"}, "logs.new_template_min_level"),
        # a bucket must be a positive duration
        ({"bucket": "0s"}, "bucket must be positive"),
        ({"bucket": "soon"}, "logs.bucket"),
        # silence needs history before the absence it judges
        (
            {"silence_window": 4, "silence_after": 4},
            "silence_after must be smaller than silence_window",
        ),
        # a broken mask regex, named by its index
        (
            {"masking": [{"pattern": "(", "mask_with": "X"}]},
            "logs.masking.0.pattern: not a regular expression",
        ),
        # a mask name that would not read as one token
        ({"masking": [{"pattern": "x", "mask_with": "two words"}]}, "logs.masking.0.mask_with"),
        # Drain's similarity lies strictly between 0 and 1
        ({"similarity": 1.0}, "logs.similarity"),
        # at least one template per service
        ({"max_templates_per_service": 0}, "logs.max_templates_per_service"),
    ],
)
def test_bad_logs_section(tmp_path: Path, logs: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, logs)
    assert expected in str(caught.value)

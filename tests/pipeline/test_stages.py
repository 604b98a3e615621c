"""The one place that builds the stage cores from a config."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import parse_config
from pipeline.correlate.silence import Silencer
from pipeline.stages import StageCores, build_correlator


def _config(**sections: Any) -> Any:
    data: dict[str, Any] = {
        "receivers": [{"name": "oncall", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
        "route": {"receivers": ["oncall"]},
    }
    data.update(sections)
    return parse_config(data)


@pytest.mark.parametrize(
    ("logs", "has_log_stage"),
    [
        # the log core exists only when the config turns logs on
        ({"enabled": True}, True),
        # logs off: replay drops log records, as the worker does
        ({"enabled": False}, False),
    ],
)
def test_assemble_builds_the_cores_the_config_asks_for(
    logs: dict[str, Any], has_log_stage: bool
) -> None:
    config = _config(logs=logs, detect={"max_lead": "2m"})
    cores = StageCores.assemble(config)
    assert (cores.logs is not None) is has_log_stage
    assert cores.detect.clock.max_lead == 120.0
    assert cores.correlator.receivers == ("oncall",)


def test_a_shared_silencer_is_used_by_every_correlator() -> None:
    config = _config()
    silencer = Silencer.from_config(config.silences)
    first, second = build_correlator(config, silencer), build_correlator(config, silencer)
    assert first.silencer is silencer
    assert second.silencer is silencer

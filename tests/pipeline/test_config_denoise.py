"""Config keys of the de-noiser: flap thresholds, storm cap, the low-urgency route."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.stages import build_correlator


def _data(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "receivers": [
            {"name": "oncall", "type": "alertmanager", "url": "http://127.0.0.1:9/"},
            {"name": "tickets", "type": "alertmanager", "url": "http://127.0.0.1:9/t"},
        ],
        "route": {"receivers": ["oncall"]},
    }
    data.update(sections)
    return data


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        # the low-urgency route may only name defined receivers
        (
            {"route": {"receivers": ["oncall"], "low_urgency": ["nobody"]}},
            "route.low_urgency names undefined receiver 'nobody'",
        ),
        # hysteresis needs the low threshold below the high one
        ({"correlate": {"flap_high": 10, "flap_low": 10}}, "flap_low must be below flap_high"),
        # a percent above 100 is not a percent
        ({"correlate": {"flap_high": 150}}, "correlate.flap_high"),
        # a negative storm cap means nothing
        ({"correlate": {"storm_max_pages": -1}}, "correlate.storm_max_pages"),
    ],
)
def test_bad_denoise_settings_are_refused(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_data(**sections), "c.yaml")


def test_settings_reach_the_correlator() -> None:
    config = parse_config(
        _data(
            route={"receivers": ["oncall"], "low_urgency": ["tickets"]},
            correlate={
                "flap_window": "30m",
                "flap_high": 40,
                "flap_low": 20,
                "storm_max_pages": 3,
                "storm_window": "5m",
            },
        )
    )
    correlator = build_correlator(config)
    assert correlator.receivers == ("oncall",)
    assert correlator.low_urgency_receivers == ("tickets",)
    assert (correlator.flaps.window, correlator.flaps.high, correlator.flaps.low) == (
        1800.0,
        40.0,
        20.0,
    )
    assert correlator.flaps.gap == config.correlate.hold_max_gap
    assert (correlator.storm.max_pages, correlator.storm.window) == (3, 300.0)

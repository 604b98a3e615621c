"""The settings the worker's consumers are built with (no broker: the consumer is faked)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeline.config import Config, KafkaConfig, parse_config
from pipeline.errors import ConfigError
from pipeline.metrics import Metrics
from pipeline.silences import SilenceStore
from pipeline.worker import (
    CorrelateRunner,
    DetectRunner,
    NotifyRunner,
    StageRunner,
    stage_consumer_settings,
)
from tests.conftest import TopicNames


@pytest.mark.parametrize(
    ("kafka", "expected"),
    [
        # defaults: a short fetch wait, the poll size and the session as configured
        (
            {},
            {
                "fetch_max_wait_ms": 50,
                "max_poll_records": 2000,
                "fetch_max_bytes": 52_428_800,
                "max_partition_fetch_bytes": 2_097_152,
                "session_timeout_ms": 10_000,
                "heartbeat_interval_ms": 3_000,
            },
        ),
        # durations in any unit the config accepts
        ({"fetch_max_wait": "20ms"}, {"fetch_max_wait_ms": 20}),
        ({"fetch_max_wait": "2s"}, {"fetch_max_wait_ms": 2000}),
        ({"fetch_max_wait": 0.5}, {"fetch_max_wait_ms": 500}),
        # the fetch sizes grow with the largest message allowed
        (
            {"max_message_bytes": 33_554_432},
            {"fetch_max_bytes": 134_217_728, "max_partition_fetch_bytes": 67_108_864},
        ),
        ({"max_poll_records": 100}, {"max_poll_records": 100}),
    ],
)
def test_stage_consumer_settings(kafka: dict[str, Any], expected: dict[str, int]) -> None:
    settings = stage_consumer_settings(KafkaConfig(**kafka))
    assert {key: settings[key] for key in expected} == expected


@pytest.mark.parametrize("wait", ["0s", "500us", "1m", -1])
def test_fetch_max_wait_out_of_range_is_a_config_error(wait: object) -> None:
    raw = {
        "kafka": {"fetch_max_wait": wait},
        "receivers": [{"name": "x", "type": "alertmanager", "url": "http://127.0.0.1:1/"}],
        "route": {"receivers": ["x"]},
    }
    with pytest.raises(ConfigError, match=r"kafka\.fetch_max_wait"):
        parse_config(raw)


class _Built(Exception):
    """Raised by the fake factory: the consumer was asked for, nothing more is needed."""


def _runners(config: Config) -> list[StageRunner]:
    producer: Any = object()  # never used: the consumer factory stops the stage first
    metrics = Metrics.create()
    return [
        DetectRunner(config, producer, metrics),
        CorrelateRunner(config, producer, metrics),
        NotifyRunner(config, producer, metrics, routing_keys={}, receiver=config.receivers[0].name),
    ]


def test_every_stage_consumer_gets_the_configured_fetch_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = TopicNames.fresh()
    raw = topics.config("127.0.0.1:9", receiver_type="alertmanager").model_dump(mode="json")
    raw["kafka"]["fetch_max_wait"] = "30ms"
    config = parse_config(raw)
    built: list[tuple[str | None, dict[str, Any]]] = []

    def fake_consumer(options: Any, topics: Any, group_id: str | None, **overrides: Any) -> None:
        built.append((group_id, overrides))
        raise _Built

    monkeypatch.setattr("pipeline.shell.runner.make_consumer", fake_consumer)
    for runner in _runners(config):
        with pytest.raises(_Built):
            asyncio.run(runner._consume(asyncio.Event()))
    assert [group for group, _ in built] == [
        f"{topics.group_prefix}-detect",
        f"{topics.group_prefix}-correlate",
        f"{topics.group_prefix}-notify-{config.receivers[0].name}",
    ]
    expected = stage_consumer_settings(config.kafka)
    assert expected["fetch_max_wait_ms"] == 30
    assert all(overrides == expected for _, overrides in built)


def test_the_silences_follower_gets_the_configured_fetch_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = TopicNames.fresh().config("127.0.0.1:9", receiver_type="alertmanager")
    config = parse_config({**raw.model_dump(mode="json"), "kafka": {"fetch_max_wait": "75ms"}})
    built: list[dict[str, Any]] = []

    def fake_consumer(options: Any, topics: Any, group_id: str | None, **overrides: Any) -> None:
        built.append(overrides)
        raise _Built

    monkeypatch.setattr("pipeline.silences.make_consumer", fake_consumer)
    producer: Any = object()
    store = SilenceStore(config, producer)
    with pytest.raises(_Built):
        asyncio.run(store.follow(asyncio.Event(), asyncio.Event()))
    assert built == [{"fetch_max_wait_ms": 75}]

"""The live detect stage sends absence anomalies at its ticks (a fake producer, no broker)."""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from pipeline.config import Config, parse_config
from pipeline.metrics import Metrics
from pipeline.model import ABSENCE_SERIES
from pipeline.worker import DetectRunner
from tests.fakes import FakeProducer

T0 = 1_795_683_600.0


def _config() -> Config:
    return parse_config(
        {
            "detect": {"tick_every": "10s", "warmup_points": 5},
            "receivers": [{"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
            "route": {"receivers": ["am"]},
        }
    )


def _step(index: int, services: list[str]) -> bytes:
    return orjson.dumps(
        [
            {
                "name": "http_requests_per_second",
                "value": 100.0,
                "ts": T0 + 10 * index,
                "labels": {"service": service},
            }
            for service in services
        ]
    )


async def test_service_gone_quiet_is_sent_as_a_traffic_anomaly() -> None:
    config = _config()
    producer = FakeProducer(partitions=1)
    metrics = Metrics.create()
    runner = DetectRunner(config, producer, metrics)
    tp = TopicPartition(config.topics.metrics, 0)
    steps = [_step(i, ["cart", "web"]) for i in range(20)] + [
        _step(i, ["web"]) for i in range(20, 30)
    ]
    records = [
        ConsumerRecord(tp.topic, 0, i, 0, 0, None, value, None, 0, len(value), [])
        for i, value in enumerate(steps)
    ]
    await runner.handle({tp: records})
    absent = [
        value
        for topic, value in ((p["topic"], p["value"]) for p in producer.sent)
        if topic == config.topics.anomalies and value.get("name") == ABSENCE_SERIES
    ]
    # cart's last point is at +190; absent once silent for more than 3 x 10 s, at each tick
    assert [a["ts"] - T0 for a in absent] == [230.0, 240.0, 250.0, 260.0, 270.0, 280.0, 290.0]
    assert {a["service"] for a in absent} == {"cart"}
    assert {a["signal"] for a in absent} == {"traffic"}
    assert metrics.registry.get_sample_value(
        "quietpager_anomalies_total", {"signal": "traffic"}
    ) == len(absent)

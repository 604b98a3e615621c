"""Event time follows a robust watermark: a skewed agent clock must not blind the correlator
(issue 20, item 5)."""

from __future__ import annotations

import math
import os

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from pipeline.bench.faults_clock import SKEW_SCENARIO, replay_pages, skew, skewed_clock
from pipeline.config import Config, DetectConfig, parse_config
from pipeline.detect import DetectStage
from pipeline.errors import ConfigError
from pipeline.harness import fault_config, messages
from pipeline.ingest import decode_message
from pipeline.metrics import Metrics
from pipeline.model import MetricPoint, SeriesKey
from pipeline.offline import OfflinePipeline
from pipeline.watermark import EventClock
from pipeline.worker import CorrelateRunner, DetectRunner
from tests.fakes import FakeProducer

TANSU = not os.environ.get("QUIETPAGER_TEST_BOOTSTRAP")
INF = math.inf
METRICS = "metrics"
#: The live tests' wall clock; their points are stamped relative to it.
WALL = 1_795_683_600.0


@pytest.mark.parametrize(
    ("points", "sources", "ceiling", "watermark", "corrections"),
    [
        # every source keeps time together: the newest timestamp
        ([("a", 0), ("b", 5), ("a", 10), ("b", 15)], None, INF, 15, 0),
        # one point of b 9 minutes ahead moves nothing
        ([("a", 0), ("b", 0), ("b", 540), ("a", 10)], None, INF, 10, 0),
        # b runs ahead for a minute, then its clock is back: a correction
        ([("a", 0), ("b", 0), ("b", 540), ("b", 600), ("a", 10), ("b", 10)], None, INF, 10, 1),
        # a lead within max_lead (60 s) moves time as usual
        ([("a", 0), ("b", 0), ("b", 60)], None, INF, 60, 0),
        # a real gap: both sources come back 10 minutes on, and time follows them
        ([("a", 0), ("b", 0), ("a", 600), ("b", 605)], None, INF, 600, 0),
        # with one known source there is nobody to compare with: its time counts
        ([("a", 0), ("a", 540)], None, INF, 540, 0),
        # five known sources: two ahead are under half of them, time stays
        ([("a", 0), ("b", 0), ("c", 0), ("a", 900), ("b", 900)], 5, INF, 0, 0),
        # ... a third makes half: time moves to what all three reached, then on from there
        ([("a", 0), ("b", 0), ("a", 900), ("b", 910), ("c", 905), ("d", 950)], 5, INF, 950, 0),
        # a lone source ahead for 10 max_leads of its own time is believed (the others left)
        ([("a", 0), ("b", 0), ("b", 540), ("b", 1140)], None, INF, 1140, 0),
        # the live worker's wall clock bounds it, whatever the sources agree on
        ([("a", 0), ("b", 0), ("a", 50), ("b", 50)], None, 30, 30, 0),
    ],
)
def test_event_clock(
    points: list[tuple[str, float]],
    sources: int | None,
    ceiling: float,
    watermark: float,
    corrections: int,
) -> None:
    clock = EventClock(max_lead=60.0)
    clock.ceiling = ceiling
    for source, ts in points:
        clock.observe(source, ts, sources)
    assert (clock.watermark, clock.corrections) == (watermark, corrections)


def test_event_clock_refuses_a_lead_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="max_lead"):
        EventClock(max_lead=0.0)


def _config() -> Config:
    return fault_config("127.0.0.1:9", "http://127.0.0.1:9/", scenario=SKEW_SCENARIO)


def test_an_agent_nine_minutes_ahead_for_a_minute_blinds_nothing_in_replay() -> None:
    """It used to move event time 9 minutes on: 0 of the 4 pages, every anomaly `stale`."""
    honest = messages(SKEW_SCENARIO)
    want = replay_pages(_config(), honest)
    assert [(action, root) for action, _, root in want] == [
        ("trigger", "payments-db"),
        ("trigger", "auth"),
        ("resolve", "auth"),
        ("resolve", "payments-db"),
    ]
    assert replay_pages(_config(), skew(honest)) == want


def test_one_point_inside_max_future_makes_nothing_stale() -> None:
    """One point of the root's agent stamped 9 minutes ahead (inside `max_future`, 10 m),
    before its fault: the same pages, the same roots, as without it."""
    honest = messages(SKEW_SCENARIO)
    early = {
        "name": "cpu_utilization",
        "value": 0.4,
        "ts": SKEW_SCENARIO.start + 600 + 540,
        "labels": {"service": "payments-db", "region": SKEW_SCENARIO.region},
    }
    at = next(
        i
        for i, (_, v) in enumerate(honest)
        if orjson.loads(v)[0]["ts"] >= 600 + SKEW_SCENARIO.start
    )
    stream = [*honest[:at], (b"payments-db", orjson.dumps([early])), *honest[at:]]
    assert replay_pages(_config(), stream) == replay_pages(_config(), honest)


def _point(service: str, ts: float, value: float = 1.0) -> MetricPoint:
    return MetricPoint(SeriesKey.of("cpu_utilization", {"service": service}), value, ts)


def test_a_corrected_clock_is_not_out_of_order() -> None:
    """Once b's clock is back, its points are taken (a correction), not skipped for the
    size of the jump as out-of-order."""
    stage = DetectStage(DetectConfig(), max_lead=60.0)
    for step in range(10):
        stage.observe(_point("a", step * 10.0))
        stage.observe(_point("b", step * 10.0 + (540 if 3 <= step < 5 else 0)))
    assert stage.watermark == 90.0
    assert stage.stats.out_of_order == 0
    assert stage.stats.clock_corrections == 1


def test_an_anomaly_of_a_point_ahead_carries_the_present() -> None:
    """A skewed point still scores, but its anomaly must not move the correlator's clock."""
    stage = DetectStage(DetectConfig(warmup_points=3), max_lead=60.0)
    for step in range(40):
        stage.observe(_point("a", step * 10.0, 0.5))
        stage.observe(_point("b", step * 10.0, 0.5))
    anomaly = stage.observe(_point("b", 390.0 + 540.0, 1.0))
    assert anomaly is not None
    assert anomaly.ts == 390.0


@pytest.mark.broker
async def test_skewed_clock_pages_four_of_four_live(kafka_bootstrap: str) -> None:
    """The shipped worker on the skewed stream sends the pages of the right clock, roots
    included (the `bench faults` row "skewed clock")."""
    result = await skewed_clock(kafka_bootstrap, tansu=TANSU)
    assert result.lost == 0
    assert result.pages_delivered == result.pages_expected == 4
    assert "unexpected" not in result.note
    assert "roots ['auth', 'payments-db'] (right: ['auth', 'payments-db'])" in result.note
    assert "sends the same pages" in result.note


def _record(
    key: bytes, offset: int, points: list[dict[str, object]]
) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps(points)
    return ConsumerRecord(METRICS, 0, offset, 0, 0, key, value, None, len(key), len(value), [])


def _runner(max_future: str | None) -> tuple[FakeProducer, DetectRunner]:
    config = parse_config(
        {
            "topics": {"metrics": METRICS},
            "detect": {"tick_every": "10s", "max_future": max_future},
            "receivers": [{"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
            "route": {"receivers": ["am"]},
        }
    )
    producer = FakeProducer(partitions=1)
    return producer, DetectRunner(config, producer, Metrics.create(), clock=lambda: WALL)


def _cpu(service: str, ts: float) -> dict[str, object]:
    return {"name": "cpu_utilization", "value": 0.4, "ts": ts, "labels": {"service": service}}


@pytest.mark.parametrize(
    ("max_future", "stamps", "latest_tick"),
    [
        # two agents in step: ticks follow them
        ("10m", [("a", 0), ("b", 0), ("a", 30), ("b", 30)], 30),
        # agent b 9 minutes ahead (inside max_future): ticks do not follow it
        ("10m", [("a", 0), ("b", 0), ("b", 540), ("a", 30)], 30),
        # one agent alone 5 minutes ahead of the wall clock: ticks stop at wall + max_lead
        ("10m", [("a", 0), ("a", 300)], 60),
        # max_future off (simulated time, not the wall clock): no wall-clock bound
        (None, [("a", 0), ("a", 300)], 300),
    ],
)
async def test_live_ticks_follow_the_robust_watermark(
    max_future: str | None, stamps: list[tuple[str, float]], latest_tick: float
) -> None:
    producer, runner = _runner(max_future)
    records = [_record(s.encode(), i, [_cpu(s, WALL + ts)]) for i, (s, ts) in enumerate(stamps)]
    await runner.handle({TopicPartition(METRICS, 0): records})
    ticks = [p["value"]["ts"] for p in producer.sent if p["value"]["kind"] == "tick"]
    assert max(ticks) == WALL + latest_tick


def _limits(detect: dict[str, str], correlate: dict[str, str]) -> Config:
    return parse_config(
        {
            "detect": detect,
            "correlate": correlate,
            "receivers": [{"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
            "route": {"receivers": ["am"]},
        }
    )


@pytest.mark.parametrize(
    ("detect", "correlate", "max_lead"),
    [
        ({}, {}, 60.0),  # unset: 60 s
        ({}, {"resolve_after": "40s"}, 20.0),  # unset, under a short resolve_after: half of it
        ({"max_lead": "2m"}, {}, 120.0),  # set: as set
    ],
)
def test_max_lead(detect: dict[str, str], correlate: dict[str, str], max_lead: float) -> None:
    assert _limits(detect, correlate).max_lead == max_lead


@pytest.mark.parametrize(
    ("detect", "correlate", "message"),
    [
        ({"max_lead": "0s"}, {}, "max_lead must be positive"),  # leads nowhere
        # as far ahead as resolve_after: a point let through makes others stale
        ({"max_lead": "5m"}, {"resolve_after": "5m"}, "must be below correlate.resolve_after"),
    ],
)
def test_max_lead_refused(detect: dict[str, str], correlate: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _limits(detect, correlate)


def _log_line(service: str, ts: float, message: str = "cache warmed") -> bytes:
    labels = {"service": service, "region": SKEW_SCENARIO.region}
    return orjson.dumps([{"ts": ts, "level": "info", "message": message, "labels": labels}])


def _with_early_log_line() -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The skew scenario's honest stream, and the same with one log line of the root's
    agent stamped 9 minutes ahead (inside `max_future`) a minute before its fault."""
    honest = messages(SKEW_SCENARIO)
    at = next(
        i
        for i, (_, v) in enumerate(honest)
        if orjson.loads(v)[0]["ts"] >= 600 + SKEW_SCENARIO.start
    )
    early = _log_line("payments-db", SKEW_SCENARIO.start + 600 + 540)
    return honest, [*honest[:at], (b"logs", early), *honest[at:]]


def test_one_log_line_inside_max_future_makes_nothing_stale_in_replay() -> None:
    """A log line used to move replay's event time as the largest log timestamp: 9 minutes
    on, and the faults after it were `stale`. It goes through the points' robust clock."""
    honest, stream = _with_early_log_line()
    config = _config()
    assert config.logs.enabled

    def pages(stream: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        offline = OfflinePipeline(config)
        for key, value in stream:
            offline.feed(decode_message(value, "logs" if key == b"logs" else "metrics"))
        offline.finish()
        return [(p.action, p.root_service) for p in offline.summary.pages]

    assert (
        pages(stream)
        == pages(honest)
        == [
            ("trigger", "payments-db"),
            ("trigger", "auth"),
            ("resolve", "auth"),
            ("resolve", "payments-db"),
        ]
    )


async def _live_pages(config: Config, stream: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The live detect and correlate runners chained in-process, one message per batch."""
    detect_out = FakeProducer(partitions=1)
    wall = [0.0]
    detect = DetectRunner(config, detect_out, Metrics.create(), monotonic=lambda: wall[0])
    for offset, (key, value) in enumerate(stream):
        wall[0] += 0.05  # reading takes time: the logs partition goes idle after its one line
        topic = config.topics.logs if key == b"logs" else config.topics.metrics
        record = ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 0, len(value), [])
        await detect.handle({TopicPartition(topic, 0): [record]})
    pages_out = FakeProducer(partitions=1)
    correlate = CorrelateRunner(config, pages_out, Metrics.create(), clock=lambda: 0.0)
    tp = TopicPartition(config.topics.anomalies, 0)
    anomalies = [p["value"] for p in detect_out.sent if p["topic"] == tp.topic]
    records = [
        ConsumerRecord(tp.topic, 0, i, 0, 0, None, orjson.dumps(a), None, 0, 0, [])
        for i, a in enumerate(anomalies)
    ]
    await correlate.handle({tp: records})
    return [(p["value"]["action"], p["value"]["root_service"]) for p in pages_out.pages(config)]


async def test_one_log_line_inside_max_future_makes_nothing_stale_live() -> None:
    """The worker's partitions keep robust watermarks over record keys: the early log line
    moves no tick, and the faults after it page as without it."""
    honest, stream = _with_early_log_line()
    want = [
        ("trigger", "payments-db"),
        ("trigger", "auth"),
        ("resolve", "auth"),
        ("resolve", "payments-db"),
    ]
    assert await _live_pages(_config(), stream) == await _live_pages(_config(), honest) == want


async def test_held_records_and_clock_corrections_are_counted_on_metrics() -> None:
    """b's record 9 minutes ahead is held (its partition's time stays), then its clock is
    back: /metrics counts both, from zero."""
    config = _runner("10m")[1].config
    metrics = Metrics.create()
    runner = DetectRunner(config, FakeProducer(partitions=1), metrics, clock=lambda: WALL)

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    assert sample("quietpager_watermark_held_total") == 0.0
    assert sample("quietpager_clock_corrections_total") == 0.0
    stamps = [("a", 0), ("b", 0), ("a", 10), ("b", 10), ("b", 550), ("a", 20), ("b", 20)]
    records = [_record(s.encode(), i, [_cpu(s, WALL + ts)]) for i, (s, ts) in enumerate(stamps)]
    for record in records:
        await runner.handle({TopicPartition(METRICS, 0): [record]})
    assert sample("quietpager_watermark_held_total") == 1.0
    assert sample("quietpager_clock_corrections_total") == 1.0

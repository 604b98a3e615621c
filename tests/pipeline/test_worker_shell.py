"""The worker's async shell without a broker: a fake producer records what would be sent."""

from __future__ import annotations

import math

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from pipeline.codec import MAX_RECORD_BYTES
from pipeline.config import Config, LogsConfig, parse_config
from pipeline.metrics import Metrics
from pipeline.model import Anomaly, SeriesKey, Signal
from pipeline.worker import PRODUCED_HEADER, CorrelateRunner, DetectRunner
from tests.fakes import FakeCommitter, FakeConsumer, FakeProducer

T0 = 1_795_683_600.0


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(**correlate: str) -> Config:
    return parse_config(
        {
            "topology": {"checkout": ["payments"]},
            "correlate": {"hold_for": "30s", "resolve_after": "2m", **correlate},
            "detect": {"tick_every": "10s", "warmup_points": 5},
            "receivers": [{"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
            "route": {"receivers": ["am"]},
            "worker": {"idle_advance": "5s"},
        }
    )


def _record(
    topic: str, partition: int, offset: int, value: bytes, timestamp_ms: int = 0
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic, partition, offset, timestamp_ms, 0, None, value, None, 0, len(value), []
    )


def _anomaly(offset_s: float) -> bytes:
    anomaly = Anomaly(
        T0 + offset_s,
        SeriesKey.of("latency", {"service": "payments"}),
        "payments",
        Signal.LATENCY,
        2.0,
        1.0,
        0.999,
        0.99,
    )
    return orjson.dumps(anomaly.to_dict())


async def test_quiet_input_still_resolves_from_the_wall_clock() -> None:
    config = _config()
    producer = FakeProducer()
    clock = FakeClock()
    runner = CorrelateRunner(config, producer, Metrics.create(), clock=clock)
    tp = TopicPartition(config.topics.anomalies, 0)
    await runner.handle({tp: [_record(tp.topic, 0, i, _anomaly(10.0 * i)) for i in range(5)]})
    assert [p["value"]["action"] for p in producer.pages(config)] == ["trigger"]

    clock.now += 4.0  # quiet, but not yet for idle_advance
    await runner.on_idle()
    assert len(producer.pages(config)) == 1
    clock.now += 200.0  # quiet long enough: event time moves on by the wall time
    await runner.on_idle()
    pages = producer.pages(config)
    assert [p["value"]["action"] for p in pages] == ["trigger", "resolve"]
    assert pages[1]["key"] == pages[0]["key"]  # same dedup_key, same partition
    # The resolved state was checkpointed: the correlator's item, and no live incident item.
    state = [p for p in producer.sent if p["topic"] == config.topics.state_correlate]
    assert [p["key"].split(b"|")[1] for p in state if p["value"] is not None] == [b"correlator"]


def _points(service: str, start: int, stop: int) -> bytes:
    return orjson.dumps(
        [
            {
                "name": "cpu_utilization",
                "value": 0.4,
                "ts": T0 + 10 * i,
                "labels": {"service": service},
            }
            for i in range(start, stop)
        ]
    )


async def test_ticks_wait_for_the_slowest_partition_and_fan_out() -> None:
    config = _config()
    producer = FakeProducer(partitions=2)
    runner = DetectRunner(config, producer, Metrics.create())
    fast = TopicPartition(config.topics.metrics, 0)
    slow = TopicPartition(config.topics.metrics, 1)
    await runner.handle(
        {
            fast: [_record(fast.topic, 0, 0, _points("a", 0, 30))],
            slow: [_record(slow.topic, 1, 0, _points("b", 0, 3))],
        }
    )
    ticks = [p for p in producer.sent if p["value"]["kind"] == "tick"]
    # Partition 1 has only reached T0 + 20 s, so time may not pass it.
    assert max(t["value"]["ts"] for t in ticks) <= T0 + 20
    # Every tick goes to every partition of the anomalies topic.
    assert sorted({t["partition"] for t in ticks}) == [0, 1]
    assert len(ticks) % 2 == 0


async def test_anomalies_carry_their_source_produce_time() -> None:
    config = _config()
    producer = FakeProducer(partitions=1)
    runner = DetectRunner(config, producer, Metrics.create())
    tp = TopicPartition(config.topics.metrics, 0)
    steady = [_record(tp.topic, 0, i, _points("a", i, i + 1), 5_000 + i) for i in range(20)]
    spike = orjson.dumps(
        {"name": "cpu_utilization", "value": 0.99, "ts": T0 + 200, "labels": {"service": "a"}}
    )
    await runner.handle({tp: [*steady, _record(tp.topic, 0, 20, spike, 9_999)]})
    anomalies = [p for p in producer.sent if p["value"]["kind"] == "anomaly"]
    assert len(anomalies) == 1
    assert anomalies[0]["headers"][PRODUCED_HEADER] == b"9999"


def _bounded_runner(**detect: str) -> tuple[Config, FakeProducer, Metrics, DetectRunner]:
    """A detect stage whose wall clock reads T0, with these `detect` bounds."""
    config = parse_config(
        {
            "detect": detect,
            "receivers": [{"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
            "route": {"receivers": ["am"]},
        }
    )
    producer = FakeProducer(partitions=1)
    metrics = Metrics.create()
    return config, producer, metrics, DetectRunner(config, producer, metrics, clock=lambda: T0)


async def test_points_far_from_the_wall_clock_go_to_the_dlq() -> None:
    config, producer, metrics, runner = _bounded_runner(max_future="10m", max_past="1d")
    tp = TopicPartition(config.topics.metrics, 0)
    points = [
        {"name": "cpu_utilization", "value": 0.4, "ts": ts, "labels": {"service": "a"}}
        for ts in (T0 - 60, T0 + 3600, T0 - 2 * 86400, T0 + 599)  # ok, future, past, just ok
    ]
    await runner.handle({tp: [_record(tp.topic, 0, 7, orjson.dumps(points))]})
    dead = [p for p in producer.sent if p["topic"] == config.topics.dlq]
    assert [p["headers"]["qp.reason"] for p in dead] == [b"ts_out_of_range"] * 2
    assert all(p["headers"]["qp.offset"] == b"7" for p in dead)
    assert runner.core.stats.points == 2
    assert (
        metrics.registry.get_sample_value(
            "quietpager_decode_errors_total", {"reason": "ts_out_of_range"}
        )
        == 2
    )


async def test_log_records_far_from_the_wall_clock_go_to_the_dlq_too() -> None:
    """A log line stamped an hour ahead moved event time on and made every real anomaly
    after it stale; with `max_future` set it is dead-lettered like a point."""
    config, producer, metrics, runner = _bounded_runner(max_future="10m")
    tp = TopicPartition(config.topics.logs, 0)
    records = [
        {"ts": ts, "level": "error", "message": "db timeout", "labels": {"service": "a"}}
        for ts in (T0 - 5, T0 + 3600)
    ]
    await runner.handle({tp: [_record(tp.topic, 0, 3, orjson.dumps(records))]})
    dead = [p for p in producer.sent if p["topic"] == config.topics.dlq]
    assert [p["headers"]["qp.reason"] for p in dead] == [b"ts_out_of_range"]
    assert b"a log record" in dead[0]["headers"]["qp.detail"]
    assert metrics.registry.get_sample_value("quietpager_events_in_total", {"stream": "logs"}) == 1
    ticks = [p["value"]["ts"] for p in producer.sent if p["topic"] == config.topics.anomalies]
    assert all(t <= T0 for t in ticks)  # event time did not jump the hour


async def test_a_batch_is_scored_in_event_time_order_across_partitions() -> None:
    config = _config()
    producer = FakeProducer(partitions=1)
    runner = DetectRunner(config, producer, Metrics.create())
    even = TopicPartition(config.topics.metrics, 0)
    odd = TopicPartition(config.topics.metrics, 1)

    def point(i: int, value: float = 0.4) -> dict[str, object]:
        return {"name": "cpu_utilization", "value": value, "ts": T0 + i, "labels": {"service": "a"}}

    # One series split over two partitions; in fetch order all of partition 0 comes first.
    evens = [_record(even.topic, 0, 0, orjson.dumps([point(i) for i in range(0, 40, 2)]), 1_000)]
    odds = [
        _record(odd.topic, 1, 0, orjson.dumps([point(i) for i in range(1, 31, 2)]), 2_000),
        _record(odd.topic, 1, 1, orjson.dumps(point(31, 0.99)), 7_777),
    ]
    await runner.handle({even: evens, odd: odds})
    assert (runner.core.stats.points, runner.core.stats.out_of_order) == (36, 0)
    anomalies = [p for p in producer.sent if p["value"]["kind"] == "anomaly"]
    assert [(a["value"]["ts"], a["headers"][PRODUCED_HEADER]) for a in anomalies] == [
        (T0 + 31, b"7777")
    ]
    # The series learned from both partitions, so both will checkpoint it.
    key = SeriesKey.of("cpu_utilization", {"service": "a"})
    assert runner._dirty == {even: {key}, odd: {key}}


def _logs(start: int, stop: int) -> bytes:
    return orjson.dumps(
        [
            {"ts": T0 + 10 * i, "service": "payments", "level": "info", "message": f"ok {i}"}
            for i in range(start, stop)
        ]
    )


def _skew_config(**worker: str) -> Config:
    return parse_config(
        {
            "receivers": [{"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
            "route": {"receivers": ["am"]},
            "worker": {"idle_advance": "1h", "max_skew": "60s", **worker},
        }
    )


def _held(runner: DetectRunner) -> float:
    value = runner.metrics.registry.get_sample_value("quietpager_inputs_held")
    assert value is not None
    return value


async def _metrics_ahead(
    config: Config, logs_read: int = 10
) -> tuple[DetectRunner, FakeConsumer, TopicPartition, TopicPartition]:
    """A detect runner that has read metrics up to T0 + 990 s and `logs_read` log records
    (T0 + 10 s each), with 4,999 logs records still to read (more than one fetch's 2,000)."""
    runner = DetectRunner(config, FakeProducer(partitions=1), Metrics.create())
    metrics = TopicPartition(config.topics.metrics, 0)
    logs = TopicPartition(config.topics.logs, 0)
    consumer = FakeConsumer({metrics: (1, 1), logs: (1, 5000)})
    batch = {metrics: [_record(metrics.topic, 0, 0, _points("a", 0, 100))]}
    if logs_read:
        batch[logs] = [_record(logs.topic, 0, 0, _logs(0, logs_read))]
    await runner.handle(batch)
    return runner, consumer, metrics, logs


async def test_an_input_running_ahead_of_a_backlogged_one_is_paused_until_it_catches_up() -> None:
    runner, consumer, metrics, logs = await _metrics_ahead(_skew_config())
    await runner.steer(consumer, fetched=True)
    assert consumer.paused() == {metrics}
    assert _held(runner) == 1
    # A gap between fetches (nothing returned, well within idle_advance) keeps the hold.
    await runner.steer(consumer, fetched=False)
    assert consumer.paused() == {metrics}
    # Logs catch up to within max_skew of the metrics: both run again.
    await runner.handle({logs: [_record(logs.topic, 0, 1, _logs(10, 95))]})  # up to T0 + 940
    consumer.read([logs], 2000)
    await runner.steer(consumer, fetched=True)
    assert consumer.paused() == set()
    assert _held(runner) == 0


async def test_a_drained_input_holds_nothing_back_however_far_behind() -> None:
    runner, consumer, metrics, logs = await _metrics_ahead(_skew_config())
    consumer.read([logs], 5000)  # read to its end: a quiet source, not a backlog
    await runner.steer(consumer, fetched=True)
    assert consumer.paused() == set()
    # A live input a fetch or less behind is no backlog either, however old its time.
    consumer.read([logs], 3000)  # 2,000 left: one fetch
    await runner.steer(consumer, fetched=True)
    assert consumer.paused() == set()
    consumer.read([logs], 2999)  # 2,001 left: more than one fetch
    await runner.steer(consumer, fetched=True)
    assert consumer.paused() == {metrics}
    # A partition not fetched yet (no end offset known) holds nothing back either.
    consumer.ends[logs] = (0, -1)
    await runner.steer(consumer, fetched=True)
    assert consumer.paused() == set()


async def test_switched_off_logs_hold_nothing_back() -> None:
    config = _skew_config().model_copy(update={"logs": LogsConfig(enabled=False)})
    # a logs backlog whose records give no event time (they are dropped unread)
    runner, consumer, _, _ = await _metrics_ahead(config, logs_read=0)
    await runner.steer(consumer, fetched=True)
    assert consumer.paused() == set()


async def test_an_input_never_stalls_for_good() -> None:
    """Fetches that keep returning nothing for idle_advance resume every paused partition."""
    runner, consumer, metrics, _ = await _metrics_ahead(_skew_config(idle_advance="0s"))
    await runner.steer(consumer, fetched=True)
    assert consumer.paused() == {metrics}
    await runner.steer(consumer, fetched=False)
    assert consumer.paused() == set()
    assert _held(runner) == 0


async def test_idle_advance_zero_sends_no_tick_before_time_is_known() -> None:
    """With `idle_advance: 0` no partition holds time back, so the first batch's watermark is
    the stage's own, still -inf: that must not become a tick (it crashed the log stage)."""
    runner, _, metrics, _ = await _metrics_ahead(_skew_config(idle_advance="0s"))
    producer = runner.producer
    assert isinstance(producer, FakeProducer)
    assert not [p for p in producer.sent if p["value"]["kind"] == "tick"]
    # From the next batch on, the stage's own watermark moves time on.
    await runner.handle({metrics: [_record(metrics.topic, 0, 1, _points("a", 100, 110))]})
    ticks = [p["value"]["ts"] for p in producer.sent if p["value"]["kind"] == "tick"]
    assert ticks
    assert all(math.isfinite(ts) for ts in ticks)


def _changelog(producer: FakeProducer, topic: str) -> dict[bytes, bytes | None]:
    """The latest raw value of each key sent to a topic, as compaction would keep it."""
    latest: dict[bytes, bytes | None] = {}
    for sent in producer.raw:
        if sent["topic"] == topic:
            latest[sent["key"]] = sent["value"]
    return latest


class _FakeTopics:
    """`read_state` and `last_values` over what a fake producer sent (no broker)."""

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.scans: list[set[bytes]] = []

    async def read_state(
        self, options: object, topic: str, partitions: object
    ) -> dict[TopicPartition, dict[str, bytes]]:
        out: dict[TopicPartition, dict[str, bytes]] = {}
        for tp in partitions:  # type: ignore[attr-defined]
            items = out.setdefault(tp, {})
            for key, value in _changelog(self.producer, topic).items():
                partition, _, item = key.decode().partition("|")
                if partition == f"{tp.topic}:{tp.partition}" and value is not None:
                    items[item] = value
        return out

    async def last_values(
        self, options: object, topic: str, keys: set[bytes]
    ) -> dict[bytes, list[bytes]]:
        self.scans.append(set(keys))
        found: dict[bytes, list[bytes]] = {}
        for sent in self.producer.raw:
            if sent["topic"] == topic and sent["key"] in keys:
                found.setdefault(sent["key"], []).append(sent["value"])
        return found


def _anomaly_of(service: str, offset_s: float) -> bytes:
    anomaly = Anomaly(
        T0 + offset_s,
        SeriesKey.of("latency", {"service": service}),
        service,
        Signal.LATENCY,
        2.0,
        1.0,
        0.999,
        0.99,
    )
    return orjson.dumps(anomaly.to_dict())


async def test_a_lost_incident_record_loses_one_incident_and_is_resolved_at_the_pager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config()
    producer = FakeProducer()
    runner = CorrelateRunner(config, producer, Metrics.create(), clock=FakeClock())
    tp = TopicPartition(config.topics.anomalies, 0)
    # Two unrelated services: two incidents, each paged.
    records = [
        _record(tp.topic, 0, i, _anomaly_of(service, 10.0 * (i // 2)))
        for i, service in enumerate(["payments", "search"] * 5)
    ]
    await runner.handle({tp: records})
    await runner.checkpoint()
    triggers = producer.pages(config)
    assert [p["value"]["action"] for p in triggers] == ["trigger", "trigger"]
    state = _changelog(producer, config.topics.state_correlate)
    incident_keys = sorted(k for k in state if b"|incident/" in k)
    assert len(incident_keys) == 2
    # One incident's record is cut short (a broken write, or garbage from outside).
    lost_key = incident_keys[0]
    good = state[lost_key]
    assert good is not None
    producer.raw.append(
        {"topic": config.topics.state_correlate, "key": lost_key, "value": good[:40]}
    )
    fake = _FakeTopics(producer)
    monkeypatch.setattr("pipeline.shell.correlate.read_state", fake.read_state)
    monkeypatch.setattr("pipeline.shell.correlate.last_values", fake.last_values)
    metrics = Metrics.create()
    successor = CorrelateRunner(config, producer, metrics, clock=FakeClock())
    await successor.restore({tp})
    assert successor.cores[tp].open_count == 1  # the other incident restored
    lost_id = lost_key.decode().split("|incident/", 1)[1]
    pages = producer.pages(config)
    assert [(p["value"]["action"], p["value"]["dedup_key"]) for p in pages[2:]] == [
        ("resolve", lost_id)
    ]
    rejected = metrics.registry.get_sample_value(
        "quietpager_state_records_rejected_total",
        {"topic": config.topics.state_correlate, "reason": "malformed"},
    )
    assert rejected == 1.0
    # Restored again (another rebalance): the outbox shows it resolved, nothing is sent twice.
    again = CorrelateRunner(config, producer, Metrics.create(), clock=FakeClock())
    await again.restore({tp})
    assert len(producer.pages(config)) == 3


async def test_many_incidents_never_make_a_record_over_the_limit() -> None:
    config = _config()
    producer = FakeProducer()
    runner = CorrelateRunner(config, producer, Metrics.create(), clock=FakeClock())
    tp = TopicPartition(config.topics.anomalies, 0)
    records = [
        _record(tp.topic, 0, i, _anomaly_of(f"svc-{i % 2000}-" + "x" * 100, 1.0 * (i // 2000)))
        for i in range(4000)
    ]
    await runner.handle({tp: records})
    await runner.checkpoint()
    state = [p for p in producer.raw if p["topic"] == config.topics.state_correlate]
    assert len(state) > 2000  # one record per incident
    assert sum(len(p["value"]) for p in state) > MAX_RECORD_BYTES  # more than one could hold
    assert max(len(p["value"]) for p in state) <= MAX_RECORD_BYTES


async def test_a_snapshot_written_before_the_codec_still_restores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config()
    producer = FakeProducer()
    runner = CorrelateRunner(config, producer, Metrics.create(), clock=FakeClock())
    tp = TopicPartition(config.topics.anomalies, 0)
    await runner.handle({tp: [_record(tp.topic, 0, i, _anomaly(10.0 * i)) for i in range(5)]})
    # As versions before the codec wrote it: one JSON snapshot, every incident inside.
    legacy = orjson.dumps(runner.cores[tp].snapshot())
    producer.raw.append(
        {
            "topic": config.topics.state_correlate,
            "key": f"{tp.topic}:{tp.partition}|correlator".encode(),
            "value": legacy,
        }
    )
    monkeypatch.setattr("pipeline.shell.correlate.read_state", _FakeTopics(producer).read_state)
    successor = CorrelateRunner(config, producer, Metrics.create(), clock=FakeClock())
    await successor.restore({tp})
    assert successor.cores[tp].open_count == 1
    assert successor.cores[tp].snapshot() == runner.cores[tp].snapshot()


@pytest.mark.parametrize(
    ("quiet_for", "commits"),
    [
        # a lull shorter than the cadence: the offsets wait for the next commit
        (0.5, []),
        # a lull past the cadence: the last batch's offsets are committed without more input
        (1.5, [{"topic": 0, "offset": 21}]),
    ],
)
async def test_a_quiet_input_commits_its_last_batch_once_the_cadence_has_passed(
    quiet_for: float, commits: list[dict[str, int]]
) -> None:
    config = _config()
    producer = FakeProducer(partitions=1)
    now = [100.0]
    runner = DetectRunner(config, producer, Metrics.create(), monotonic=lambda: now[0])
    runner.commit_every = 1.0
    committer = FakeCommitter()
    runner.consumer = committer
    tp = TopicPartition(config.topics.metrics, 0)
    batch = {tp: [_record(tp.topic, 0, i, _points("a", i, i + 1), 5_000 + i) for i in range(21)]}
    await runner.handle(batch)
    runner.processed(batch)
    now[0] += quiet_for
    await runner.commit_if_due()
    assert [
        {"topic": p.partition, "offset": o} for c in committer.commits for p, o in c.items()
    ] == commits

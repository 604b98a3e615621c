"""No input within or beyond the size limit may stop the detect stage (a fake producer that
refuses what a broker would, no broker).

Before the label bounds and the bounded DLQ records, each poison message below raised from the
batch or from the checkpoint after it; the stage restarts on a raise, reads the same batch
again and raises again, for ever: no commit, no DLQ record, every detect partition stalled.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from pipeline.config import Config, parse_config
from pipeline.ingest import DLQ_MAX_RECORD_BYTES
from pipeline.metrics import Metrics
from pipeline.worker import DLQ_RECORDS_PER_MESSAGE, DetectRunner
from tests.fakes import FakeProducer

T0 = 1_795_683_600.0


def _config(**worker: Any) -> Config:
    return parse_config(
        {
            "detect": {"tick_every": "10s", "warmup_points": 5, "max_future": None},
            "receivers": [{"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
            "route": {"receivers": ["am"]},
            "worker": worker,
        }
    )


def _point(labels: dict[str, str], ts: float = T0, name: str = "up") -> dict[str, Any]:
    return {"name": name, "value": 1.0, "ts": ts, "labels": labels}


def _one_mb_label() -> bytes:
    return orjson.dumps(_point({"service": "a", "blob": "x" * 1_000_000}))


def _three_mb_message() -> bytes:
    return orjson.dumps([_point({"service": f"s{i}"}) for i in range(40_000)])


def _many_labels_under_the_limit() -> bytes:
    raw = orjson.dumps(_point({f"label_{i:06d}": "v" * 8 for i in range(40_000)}))
    assert len(raw) < 1_048_576
    return raw


def _largest_allowed_key() -> bytes:
    # Every default bound met: 30 labels, the name and the whole key at their limits.
    labels = {f"l{i:02d}": "v" * 100 for i in range(29)}
    labels["last"] = "w" * (4096 - 1024 - 29 * 103 - 4)
    return orjson.dumps(_point(labels, name="n" * 1024))


def _records(tp: TopicPartition, values: list[bytes]) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(tp.topic, tp.partition, i, 0, 0, None, v, None, 0, len(v), [])
        for i, v in enumerate(values)
    ]


def _good(index: int) -> bytes:
    return orjson.dumps(_point({"service": "web"}, ts=T0 + 10 * index))


async def _handle_and_checkpoint(
    runner: DetectRunner, tp: TopicPartition, values: list[bytes]
) -> None:
    """What the stage does with one fetched batch before it commits."""
    await runner.handle({tp: _records(tp, values)})
    await runner.checkpoint()


@pytest.mark.parametrize(
    ("poison", "reasons"),
    [
        # a valid 1 MB message with one 1 MB label: its checkpoint record was 2.1 MB
        (_one_mb_label, ["too_large_label"]),
        # a 3 MB message: rejected as too_large, then refused again as a 3 MB DLQ record
        (_three_mb_message, ["too_large"]),
        # just under the size limit with 40,000 labels: a 1 MB series key, as above
        (_many_labels_under_the_limit, ["too_large_label"]),
        # the largest series key the defaults allow is accepted (and checkpointed)
        (_largest_allowed_key, []),
    ],
)
async def test_poison_neither_raises_nor_leaves_an_oversized_record(
    poison: Any, reasons: list[str]
) -> None:
    config = _config()
    producer = FakeProducer(partitions=1)
    metrics = Metrics.create()
    runner = DetectRunner(config, producer, metrics)
    tp = TopicPartition(config.topics.metrics, 0)
    await _handle_and_checkpoint(runner, tp, [_good(0), poison(), _good(1)])
    assert producer.refused == []
    dead = producer.dead_letters(config)
    assert [d["headers"]["qp.reason"].decode() for d in dead] == reasons
    for sent in producer.sent:
        value = sent["value"]
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            sent["key"], raw, list(sent["headers"].items())
        )
        assert size <= DLQ_MAX_RECORD_BYTES, sent["topic"]
    # The good points on either side were scored: the stage went on.
    assert runner.core.stats.points == 2 + (0 if reasons else 1)


async def test_an_oversized_message_is_dead_lettered_truncated_with_its_size() -> None:
    config = _config()
    producer = FakeProducer(partitions=1)
    runner = DetectRunner(config, producer, Metrics.create())
    tp = TopicPartition(config.topics.metrics, 0)
    poison = _three_mb_message()
    await _handle_and_checkpoint(runner, tp, [poison])
    (letter,) = producer.dead_letters(config)
    assert poison.startswith(letter["value"])
    assert 900_000 < len(letter["value"]) < DLQ_MAX_RECORD_BYTES  # as much as fits is kept
    assert letter["headers"]["qp.truncated"] == b"true"
    assert letter["headers"]["qp.size"] == str(len(poison)).encode()


async def test_a_dlq_write_refused_for_good_is_counted_and_skipped() -> None:
    config = _config()
    # A broker whose limit is below even a truncated DLQ record refuses it for good.
    producer = FakeProducer(partitions=1, max_request_size=50_000)
    metrics = Metrics.create()
    runner = DetectRunner(config, producer, metrics)
    tp = TopicPartition(config.topics.metrics, 0)
    await _handle_and_checkpoint(runner, tp, [b"x" * 100_000, _good(0)])
    assert producer.dead_letters(config) == []
    assert [topic for topic, _ in producer.refused] == [config.topics.dlq]
    failures = metrics.registry.get_sample_value(
        "quietpager_dlq_write_failures_total", {"error": "MessageSizeTooLargeError"}
    )
    assert failures == 1
    assert runner.core.stats.points == 1


async def test_a_message_of_many_bad_items_writes_a_bounded_number_of_dlq_records() -> None:
    config = _config()
    producer = FakeProducer(partitions=1)
    metrics = Metrics.create()
    runner = DetectRunner(config, producer, metrics)
    tp = TopicPartition(config.topics.metrics, 0)
    # Each DLQ record holds the whole message: one per item made a 1 MB array of 500,000
    # bad items ask for 500 GB of DLQ writes.
    poison = b"[" + b"1," * 1999 + b"1]"
    await _handle_and_checkpoint(runner, tp, [poison, _good(0)])
    dead = producer.dead_letters(config)
    assert len(dead) == DLQ_RECORDS_PER_MESSAGE
    assert [d["headers"]["qp.index"] for d in dead] == [
        str(i).encode() for i in range(DLQ_RECORDS_PER_MESSAGE)
    ]
    # Every reject is still counted.
    counted = metrics.registry.get_sample_value(
        "quietpager_decode_errors_total", {"reason": "not_object"}
    )
    assert counted == 2000
    assert runner.core.stats.points == 1


@pytest.mark.parametrize(
    ("size", "count"),
    [
        # one valid 900 KB log line: its template made a 1.8 MB log stage checkpoint
        (900_000, 1),
        # four 300 KB lines, each a template of its own: a 2.4 MB checkpoint
        (300_000, 4),
    ],
)
async def test_long_log_lines_leave_no_oversized_checkpoint(size: int, count: int) -> None:
    config = _config()
    producer = FakeProducer(partitions=1)
    metrics = Metrics.create()
    runner = DetectRunner(config, producer, metrics)
    tp = TopicPartition(config.topics.logs, 0)
    lines = [
        orjson.dumps({"ts": T0 + i, "message": f"w{i} " + "x" * size, "labels": {"service": "a"}})
        for i in range(count)
    ]
    await _handle_and_checkpoint(runner, tp, lines)
    assert producer.refused == []
    assert runner.log_stages[tp].templates_tracked == count
    checkpoints = [p for p in producer.sent if p["topic"] == config.topics.state_detect]
    assert checkpoints  # the log stage's records (one per service, and its header)
    assert all(len(p["value"] or b"") < 100_000 for p in checkpoints)
    # ... and none was left unwritten for its size (the codec refuses records over 900 KB)
    too_large = metrics.registry.get_sample_value(
        "quietpager_state_records_rejected_total",
        {"topic": config.topics.state_detect, "reason": "too_large"},
    )
    assert too_large == 0

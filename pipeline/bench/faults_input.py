"""Input-side faults of `quietpager bench faults`: oversized labels and messages, and what a
series costs in memory at the largest key ingest allows.

Before the label bounds and the bounded DLQ records, each poison message here put the
detect stage into a restart loop (the producer refused a 2 MB checkpoint or a 3 MB DLQ
record; the stage restarted on the same batch and failed again), and no page was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from pipeline.bench.faults import (
    FaultResult,
    Message,
    _detect,
    _points,
    create_topics,
    expected_pages,
    fault_config,
    messages,
    read_topic,
    received_pages,
    wait_for,
)
from pipeline.bench.faults_load import _rss_mib
from pipeline.config import Config, DetectConfig, IngestConfig
from pipeline.detect import DetectStage
from pipeline.ingest import _SERIES_KEYS, DLQ_MAX_RECORD_BYTES, ItemLimits, decode_message
from pipeline.kafka import client_options, make_producer
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.worker import Worker

#: The stamp of the poison points: inside the fault scenario, so only their size matters.
_POISON_TS = 1_795_684_000.0


def poison_messages() -> list[Message]:
    """Messages that each stalled the detect stage for good: a valid 1 MB message with one
    1 MB label, a 3 MB message, and one just under the 1 MiB limit with 40,000 labels."""
    one_label = {"service": "web", "blob": "x" * 1_000_000}
    many_labels = {f"label_{i:06d}": "v" * 8 for i in range(40_000)}
    big = [
        {"name": "up", "value": 1.0, "ts": _POISON_TS, "labels": {"service": f"s{i}"}}
        for i in range(40_000)
    ]
    return [
        (
            b"poison",
            orjson.dumps({"name": "up", "value": 1.0, "ts": _POISON_TS, "labels": one_label}),
        ),
        (b"poison", orjson.dumps(big)),
        (
            b"poison",
            orjson.dumps({"name": "up", "value": 1.0, "ts": _POISON_TS, "labels": many_labels}),
        ),
    ]


async def _produce_large(config: Config, stream: list[Message]) -> None:
    # The bench's own producer must be able to send what an agent with a larger limit would.
    producer = make_producer(client_options(config.kafka), max_request_size=8 * 1_048_576)
    await producer.start()
    try:
        for key, value in stream:
            await producer.send(config.topics.metrics, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _committed(worker: Worker, tp: TopicPartition) -> int:
    """The detect group's committed offset on `tp`, asked through the worker's own detect
    consumer (-1 before it holds `tp`): another consumer in the group would join it."""
    consumer = _detect(worker).consumer if worker.runners else None
    if consumer is None or tp not in consumer.assignment():
        return -1
    try:
        offset = await consumer.committed(tp)
    except (KafkaError, IllegalStateError):  # moving meanwhile: ask again
        return -1
    return -1 if offset is None else int(offset)


async def oversized_input(
    bootstrap: str, stream: list[Message] | None = None, tansu: bool = True
) -> FaultResult:
    """Poison messages in the middle of an incident's stream: the pages must all arrive, the
    stage must commit past the poison without restarting, and every DLQ record must fit a
    broker's default 1 MB limit."""
    stream = stream if stream is not None else messages()
    sink = WebhookSink()
    await sink.start()
    config = fault_config(bootstrap, sink.pagerduty_url, tansu=tansu)
    want = expected_pages(config, stream)
    poison = poison_messages()
    at = len(stream) // 3
    await create_topics(config)
    await _produce_large(config, stream[:at] + poison + stream[at:])
    last_poison = at + len(poison) - 1
    worker = Worker(config, Metrics.create(), routing_keys={"oncall": "faults-bench-routing-key"})
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(worker.run(stop))
    tp = TopicPartition(config.topics.metrics, 0)
    recovery: float | None = None
    try:
        while time.monotonic() - started < 60:
            if await _committed(worker, tp) > last_poison:
                recovery = time.monotonic() - started
                break
            await asyncio.sleep(0.1)
        with contextlib.suppress(TimeoutError):  # pages that never came count as lost
            await wait_for(lambda: len(sink.received) >= len(want), 60, "the pages")
        await asyncio.sleep(0.5)  # anything extra would arrive now
    finally:
        stop.set()
        await task
        await sink.stop()
    restarted = _detect(worker).status.last_error
    dead = await read_topic(config, config.topics.dlq)
    reasons = [dict(r.headers)["qp.reason"].decode() for r in dead]
    largest = max(
        (len(r.value or b"") + len(r.key or b"") + sum(len(v) for _, v in r.headers) for r in dead),
        default=0,
    )
    got = received_pages(sink)
    return FaultResult(
        fault="oversized label and message (1 MB label, 3 MB message, 40,000 labels)",
        events_in=_points(stream),
        pages_expected=len(want),
        pages_delivered=len(set(got) & set(want)),
        duplicates=len(got) - len(set(got)),
        lost=len(set(want) - set(got)),
        recovery_s=recovery,
        note=(f"committed past the poison after {recovery:.1f}s; " if recovery is not None else "")
        + f"DLQ {reasons}; largest DLQ record {largest:,} B "
        + f"(bound {DLQ_MAX_RECORD_BYTES:,}); "
        + (f"stage restarted: {restarted}" if restarted else "no stage restart"),
    )


@dataclass(frozen=True, slots=True)
class SeriesMemory:
    """Resident memory per tracked series at the largest series key ingest allows."""

    series: int
    key_bytes: int
    rss_per_series: float  # bytes
    max_series: int

    @property
    def worst_case_mib(self) -> float:
        """What `max_series` such series hold, in MiB."""
        return self.rss_per_series * self.max_series / 1_048_576


def worst_case_key(limits: ItemLimits) -> dict[str, Any]:
    """A metric point whose series key meets `limits` exactly: all labels, every byte.

    >>> item = worst_case_key(ItemLimits())
    >>> labels = item["labels"]
    >>> len(labels), len(item["name"]) + sum(len(k) + len(v) for k, v in labels.items())
    (30, 4096)
    """
    count = limits.max_labels
    share = limits.max_series_key_bytes // 4 if count else limits.max_series_key_bytes
    name = "n" * min(limits.max_name_bytes, share)
    room = limits.max_series_key_bytes - len(name)
    labels: dict[str, str] = {}
    for i in range(count):
        share = room // (count - i)
        label = f"l{i:03d}"[: limits.max_label_name_bytes]
        value_bytes = min(limits.max_label_value_bytes, share - len(label))
        labels[label] = "v" * value_bytes
        room -= len(label) + value_bytes
    return {"name": name, "value": 1.0, "ts": 0.0, "labels": labels}


def series_memory(
    count: int = 20_000,
    points: int = 40,
    ingest: IngestConfig | None = None,
    traced: bool = False,
) -> SeriesMemory:
    """Resident bytes per series: `count` series with worst-case keys, decoded by ingest (so
    its key cache holds them too) and `points` points each through the default model (past
    its warm-up, so each model holds its full history). With `traced`, the bytes Python
    allocated (tracemalloc) instead: slower, but exact at a few hundred series, where the
    resident size mostly shows what the allocator kept from before."""
    ingest = ingest or IngestConfig()
    limits = ingest.limits
    template = worst_case_key(limits)
    config = DetectConfig(max_series=max(count, DetectConfig().max_series))
    stage = DetectStage(config)
    _SERIES_KEYS.pop(limits, None)  # keys of an earlier run would not count
    gc.collect()
    if traced:
        tracemalloc.start()
    before = _allocated() if traced else _rss_mib() * 1_048_576
    for step in range(points):
        ts = 1_795_683_600.0 + step * 10
        # Messages of a few hundred points, as agents send them: what one message costs
        # while it is decoded does not grow with the number of series.
        for start in range(0, count, 250):
            batch = []
            for i in range(start, min(count, start + 250)):
                labels = dict(template["labels"])
                if labels:
                    first = next(iter(labels))
                    labels[first] = f"{i:08d}" + labels[first][8:]  # distinct, same size
                    name = template["name"]
                else:
                    name = f"{i:08d}" + template["name"][8:]
                batch.append({"name": name, "value": 1.0 + i % 7, "ts": ts, "labels": labels})
            raw = orjson.dumps(batch)
            for point in decode_message(raw, "metrics", len(raw), limits).points:
                stage.observe(point)
    gc.collect()
    grew = (_allocated() if traced else _rss_mib() * 1_048_576) - before
    if traced:
        tracemalloc.stop()
    key_bytes = len(template["name"]) + sum(len(k) + len(v) for k, v in template["labels"].items())
    assert stage.series_tracked == count
    return SeriesMemory(count, key_bytes, grew / count, DetectConfig().max_series)


def _allocated() -> float:
    return float(tracemalloc.get_traced_memory()[0])


def main(argv: list[str]) -> None:
    """`python -m pipeline.bench.faults_input memory [series]`: print the per-series memory."""
    count = int(argv[1]) if len(argv) > 1 else 20_000
    result = series_memory(count)
    print(
        f"{result.series:,} series, key {result.key_bytes:,} B: "
        f"{result.rss_per_series / 1024:.1f} KiB resident per series; "
        f"max_series {result.max_series:,} -> {result.worst_case_mib / 1024:.2f} GiB"
    )


if __name__ == "__main__":
    main(sys.argv[1:])

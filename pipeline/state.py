"""State changelogs: compacted Kafka topics that hold each stage's state by key.

A stage writes the state it changed before it commits the offsets that produced it, so
a worker that takes over a partition (after a crash or a rebalance) restores the state
that matches, or runs ahead of, the committed offsets. Replayed points older than a
restored series' last point are skipped, so no point is learned twice.

Keys are `<input topic>:<partition>|<item>`; a tombstone (no value) deletes an item. Values are
records of `pipeline.codec`: explicit fields, a schema version, a size bound; nothing in one is
run or names a class to build, so a record written by anyone else is at worst rejected
(counted on `quietpager_state_records_rejected_total`) and its item starts afresh. Who may
write these topics still decides what state a worker restores: keep them quietpager's own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from pipeline.codec import MAX_RECORD_BYTES
from pipeline.kafka import make_consumer

log = structlog.get_logger("quietpager.state")


def owner(tp: TopicPartition) -> str:
    """The name of an input partition in changelog keys.

    >>> owner(TopicPartition("telemetry.metrics", 3))
    'telemetry.metrics:3'
    """
    return f"{tp.topic}:{tp.partition}"


def state_key(partition: str, item: str) -> bytes:
    """The changelog key of one item of one input partition.

    >>> state_key("telemetry.metrics:3", 'up{service="a"}')
    b'telemetry.metrics:3|up{service="a"}'
    """
    return f"{partition}|{item}".encode()


def split_key(key: bytes) -> tuple[str, str]:
    """Inverse of `state_key`.

    >>> split_key(b'telemetry.metrics:3|up{service="a"}')
    ('telemetry.metrics:3', 'up{service="a"}')
    """
    partition, _, item = key.decode().partition("|")
    return partition, item


async def write_state(
    producer: AIOKafkaProducer, topic: str, items: Mapping[bytes, bytes | None]
) -> None:
    """Write items (None deletes) and return once the broker has them all.

    An item over `MAX_RECORD_BYTES` (key and value) is not sent but logged: the stages leave
    such records out and count them, and one that slipped through must not fail the write,
    or its stage would restart on the same input for ever.
    """
    futures = []
    for key, value in items.items():
        if len(key) + len(value or b"") > MAX_RECORD_BYTES:
            log.error("state_record_too_large", topic=topic, bytes=len(key) + len(value or b""))
            continue
        futures.append(await producer.send(topic, value, key=key))
    for future in futures:
        await future


async def read_state(
    options: Mapping[str, Any],
    topic: str,
    partitions: Iterable[TopicPartition],
    timeout_s: float = 30.0,
) -> dict[TopicPartition, dict[str, bytes]]:
    """The latest value of every live item of the given input partitions, read to the end."""
    wanted = {owner(tp): tp for tp in partitions}
    found: dict[str, dict[str, bytes]] = {name: {} for name in wanted}
    out = {tp: found[name] for name, tp in wanted.items()}
    if not wanted:
        return out
    async for record in _read_to_end(options, topic, "restore", timeout_s):
        if record.key is None:
            continue
        partition, item = split_key(record.key)
        items = found.get(partition)
        if items is None:
            continue
        if record.value is None:
            items.pop(item, None)
        else:
            items[item] = record.value
    return out


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer.topics()  # refreshes cluster metadata, so a new consumer knows the topic
    return set(consumer.partitions_for_topic(topic) or ())


async def last_values(
    options: Mapping[str, Any], topic: str, keys: Iterable[bytes], timeout_s: float = 30.0
) -> dict[bytes, list[bytes]]:
    """Every value of the given keys in `topic`, oldest first, read to its end (the outbox:
    what was paged for an incident whose state was lost)."""
    wanted = set(keys)
    found: dict[bytes, list[bytes]] = {}
    if not wanted:
        return found
    async for record in _read_to_end(options, topic, "scan", timeout_s):
        if record.key in wanted and record.value is not None:
            found.setdefault(record.key, []).append(record.value)
    return found


async def _read_to_end(
    options: Mapping[str, Any], topic: str, purpose: str, timeout_s: float
) -> AsyncIterator[ConsumerRecord]:
    """Every record of every partition of `topic`, from the beginning to the end offsets it
    had when reading began, with a consumer of its own (no group)."""
    client_id = f"quietpager-{purpose}-{uuid.uuid4().hex[:6]}"
    consumer = make_consumer(options, [], None, client_id=client_id)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        if not partitions:
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over {timeout_s}s")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    yield record
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()

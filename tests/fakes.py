"""Fakes shared by the tests: stand-ins for Kafka clients that record instead of sending."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from pipeline.config import Config


class FakeProducer:
    """Stands in for AIOKafkaProducer: every send is acknowledged at once and recorded,
    except one larger than `max_request_size`, refused as aiokafka refuses it (the worker's
    producer allows at least 1 MiB; a broker's default `message.max.bytes` is about that)."""

    def __init__(self, partitions: int = 2, max_request_size: int = 1_048_576) -> None:
        self.sent: list[dict[str, Any]] = []
        #: The same sends with their values as bytes, for tests that read records back.
        self.raw: list[dict[str, Any]] = []
        self.refused: list[tuple[str, int]] = []  # (topic, size) of each send refused
        self.max_request_size = max_request_size
        self._partitions = set(range(partitions))

    def pages(self, config: Config) -> list[dict[str, Any]]:
        """What went to the pages outbox."""
        return [p for p in self.sent if p["topic"] == config.topics.pages]

    def dead_letters(self, config: Config) -> list[dict[str, Any]]:
        """What went to the DLQ topic."""
        return [p for p in self.sent if p["topic"] == config.topics.dlq]

    async def partitions_for(self, topic: str) -> set[int]:
        return self._partitions

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers or [])
        if size > self.max_request_size:
            self.refused.append((topic, size))
            raise MessageSizeTooLargeError(f"the message is {size} bytes when serialized")
        try:
            decoded: Any = None if value is None else orjson.loads(value)  # None: a tombstone
        except orjson.JSONDecodeError:
            decoded = value  # kept as sent (a DLQ record holds the original bytes)
        self.raw.append({"topic": topic, "value": value, "key": key})
        self.sent.append(
            {
                "topic": topic,
                "value": decoded,
                "key": key,
                "partition": partition,
                "headers": dict(headers or []),
            }
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeConsumer:
    """Stands in for AIOKafkaConsumer's flow-control surface: assignment, end offsets,
    positions and pausing, all set by the test."""

    def __init__(self, ends: dict[TopicPartition, tuple[int, int]]) -> None:
        # partition -> (position, high watermark); a watermark of -1 means not fetched yet
        self.ends = ends
        self._paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def highwater(self, tp: TopicPartition) -> int | None:
        high = self.ends[tp][1]
        return None if high < 0 else high

    async def position(self, tp: TopicPartition) -> int:
        return self.ends[tp][0]

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def read(self, partitions: Iterable[TopicPartition], to: int) -> None:
        """Move these partitions' positions on to `to`."""
        for tp in partitions:
            self.ends[tp] = (to, self.ends[tp][1])


class FakeCommitter:
    """Stands in for AIOKafkaConsumer's commit and seek: records them; `refuse` makes the
    next commits fail as when the group has moved on."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.refuse = 0

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse:
            self.refuse -= 1
            raise CommitFailedError("the group has rebalanced")
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

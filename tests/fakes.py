"""Fakes shared by the tests: stand-ins for Kafka clients that record instead of sending."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import TopicPartition

from pipeline.config import Config


class FakeProducer:
    """Stands in for AIOKafkaProducer: every send is acknowledged at once and recorded."""

    def __init__(self, partitions: int = 2) -> None:
        self.sent: list[dict[str, Any]] = []
        self._partitions = set(range(partitions))

    def pages(self, config: Config) -> list[dict[str, Any]]:
        """What went to the pages outbox."""
        return [p for p in self.sent if p["topic"] == config.topics.pages]

    async def partitions_for(self, topic: str) -> set[int]:
        return self._partitions

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        self.sent.append(
            {
                "topic": topic,
                "value": orjson.loads(value),
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

"""Fakes shared by the tests: stand-ins for Kafka clients that record instead of sending."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

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

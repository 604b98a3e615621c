"""The notify stage's shell: one consumer group per receiver, delivering the outbox's
pages, dead-lettering what cannot be delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import replace

import aiohttp
import orjson
import structlog
from aiokafka import (
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import (
    IllegalStateError,
    KafkaError,
)

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.ingest import Reject
from pipeline.kafka import (
    client_options,
    committed_offsets,
)
from pipeline.metrics import Metrics
from pipeline.model import Page
from pipeline.notify.bodies import render_body
from pipeline.notify.sender import WebhookSender
from pipeline.shell.runner import Batch, StageRunner

log = structlog.get_logger("quietpager.worker")


class NotifyRunner(StageRunner):
    """Delivers the outbox's pages to one receiver, retrying until they land.

    Each receiver has a runner and a consumer group of its own (`<prefix>-notify-<receiver>`),
    so each walks the outbox at its own pace: a receiver that is down holds back its own
    pages, never another's. Progress is committed after every page, so a restart or a
    rebalance sends again at most the page that was in flight. A page the receiver refuses
    for good (a status that is not worth retrying, `retry.max_attempts` spent, or
    `retry.max_unanswered` copies sent without an answer) goes to the DLQ topic, addressed
    to that receiver alone, with the reason and the receiver's answer; nothing is dropped.
    The first receiver's runner also dead-letters what no runner can deliver: a record that
    is no page, or a page for a receiver the config no longer has.
    """

    def __init__(
        self,
        config: Config,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        routing_keys: Mapping[str, str],
        receiver: str,
        sender_factory: Callable[[aiohttp.ClientSession], WebhookSender] | None = None,
    ) -> None:
        self.receiver = config.receiver(receiver)
        self.name = f"notify-{receiver}"
        super().__init__(config, producer, metrics)
        self._routing_key = routing_keys.get(receiver)
        if self.receiver.type == "pagerduty" and not self._routing_key:
            raise ConfigError(f"receiver {receiver!r}: type pagerduty needs a routing_key")
        self._primary = receiver == config.receivers[0].name
        self._known = {r.name for r in config.receivers}
        self._sender_factory = sender_factory
        # Per partition, the first outbox offset to deliver (below it, an earlier version's
        # notify group had delivered).
        self._start_at: dict[TopicPartition, int] = {}
        #: Set by `run` for the session it opens (a test may set its own).
        self.sender: WebhookSender | None = None

    @property
    def topics(self) -> list[str]:
        return [self.config.topics.pages]

    def _attempt(self, receiver: str, outcome: str) -> None:
        self.metrics.webhook_attempts.labels(receiver, outcome).inc()

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            if self._sender_factory is not None:
                self.sender = self._sender_factory(session)
            else:
                self.sender = WebhookSender(session, on_attempt=self._attempt)
            await super().run(stop)

    async def restore(self, partitions: set[TopicPartition]) -> None:
        """A partition this receiver's group has never committed starts where the single
        notify group of earlier versions (`<prefix>-notify`) stopped, if it ever ran, so an
        upgrade does not send the retained outbox again; otherwise at the beginning."""
        if self.consumer is None or not partitions:
            return
        fresh = [tp for tp in sorted(partitions) if await self.consumer.committed(tp) is None]
        if not fresh:
            return
        legacy = f"{self.config.kafka.group_prefix}-notify"
        options = client_options(self.config.kafka)
        try:
            seeds = await committed_offsets(options, legacy, fresh)
        except KafkaError as exc:  # e.g. no right to read that group: start at the beginning
            log.warning("notify_group_not_seeded", stage=self.name, error=repr(exc))
            return
        for tp, offset in seeds.items():
            # Skipped in `handle` rather than sought past: the fetcher may already hold
            # records from the beginning, and a seek then would deliver some twice.
            self._start_at[tp] = offset
            log.info(
                "notify_group_seeded",
                stage=self.name,
                partition=f"{tp.topic}:{tp.partition}",
                offset=offset,
                from_group=legacy,
            )

    def processed(self, batch: Batch) -> None:
        """Nothing to record: `handle` commits each page as it is done."""

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._start_at.pop(tp, None)

    async def handle(self, batch: Batch) -> None:
        # The first offset of each partition not yet handled.
        resume = {tp: records[0].offset for tp, records in batch.items()}
        for tp, records in batch.items():
            start_at = self._start_at.get(tp, 0)
            for record in records:
                if record.offset >= start_at:
                    await self._handle_record(record)
                resume[tp] = self._pending[tp] = record.offset + 1
                if not await self._commit(only={tp}):
                    # The group moved on: the rest of the batch is the new owner's to send,
                    # or this runner's again, from where it stopped, should it keep it.
                    self._rewind(batch, resume)
                    return

    def _rewind(self, batch: Batch, resume: Mapping[TopicPartition, int]) -> None:
        for tp, records in batch.items():
            if self.consumer is not None and resume[tp] <= records[-1].offset:
                with contextlib.suppress(IllegalStateError):
                    self.consumer.seek(tp, resume[tp])

    async def _handle_record(self, record: ConsumerRecord) -> None:
        try:
            page = Page.from_dict(orjson.loads(record.value or b""))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            if self._primary:
                self.metrics.decode_errors.labels("bad_page").inc()
                await self.dead_letter(record, Reject("bad_page", repr(exc)))
            return
        if self._primary:
            for name in page.receivers:
                if name not in self._known:
                    self.metrics.webhook_failures.labels(name).inc()
                    reject = Reject("unknown_receiver", f"no receiver {name!r} in the config")
                    await self.dead_letter(record, reject, _addressed(page, name))
        if self.receiver.name in page.receivers:
            await self._deliver(record, page)

    async def _deliver(self, record: ConsumerRecord, page: Page) -> None:
        assert self.sender is not None
        name = self.receiver.name
        body = render_body(self.receiver.type, page, name, self._routing_key)
        result = await self.sender.deliver(self.receiver, body)
        if result.outcome == "delivered":
            self.metrics.pages_sent.labels(name, page.action).inc()
            log.info(
                "page_delivered",
                receiver=name,
                action=page.action,
                dedup_key=page.dedup_key,
                attempts=result.attempts,
                unanswered=result.unanswered,  # copies the receiver may also have acted on
            )
            return
        self.metrics.webhook_failures.labels(name).inc()
        log.error(
            "page_not_delivered",
            receiver=name,
            action=page.action,
            dedup_key=page.dedup_key,
            outcome=result.outcome,
            status=result.last_status,
            error=result.last_error,
            unanswered=result.unanswered,
            dead_lettered=True,
        )
        detail = f"{result.outcome} after {result.attempts} attempt(s)"
        if result.unanswered:
            # Such a page is not known to be lost: whoever sends it again should know.
            detail += (
                f", {result.unanswered} sent without an answer (the receiver may have acted "
                "on them)"
            )
        detail += f": {result.last_error}"
        await self.dead_letter(record, Reject("undeliverable", detail), _addressed(page, name))


def _addressed(page: Page, receiver: str) -> bytes:
    """The page as an outbox record for `receiver` alone: written back to the pages topic,
    it goes to that receiver and no other."""
    return orjson.dumps(replace(page, receivers=(receiver,)).to_dict())

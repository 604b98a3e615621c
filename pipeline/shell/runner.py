"""The shell every stage shares: fetch, hand to the core, produce durably, commit, and
start over from the last checkpoint when the broker fails a write.

At-least-once: a stage commits `offset + 1` for a batch only after everything derived
from it (anomalies, DLQ records, pages, deliveries) is acknowledged by the broker or
the webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    ProducerClosed,
)

from pipeline.codec import RecordRejected
from pipeline.config import Config, KafkaConfig
from pipeline.ingest import Reject, dead_letter
from pipeline.kafka import (
    client_options,
    make_consumer,
)
from pipeline.metrics import Metrics

log = structlog.get_logger("quietpager.worker")

Batch = dict[TopicPartition, list[ConsumerRecord]]


@dataclass(slots=True)
class StageStatus:
    """What /readyz and the final summary know about one stage."""

    name: str
    started: bool = False
    connected: bool = False
    batches: int = 0
    records: int = 0
    last_error: str = ""


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the stage when partitions move; holds no lock that `getmany` needs."""

    def __init__(self, runner: StageRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.runner.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.runner.on_assigned(list(assigned))


def stage_consumer_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """The aiokafka consumer settings every stage's group consumer gets from `kafka`.

    >>> from pipeline.config import KafkaConfig
    >>> settings = stage_consumer_settings(KafkaConfig(fetch_max_wait="20ms"))
    >>> settings["fetch_max_wait_ms"], settings["max_poll_records"]
    (20, 2000)
    """
    return {
        "max_poll_records": kafka.max_poll_records,
        "fetch_max_bytes": max(52_428_800, kafka.max_message_bytes * 4),
        "max_partition_fetch_bytes": max(1_048_576, kafka.max_message_bytes * 2),
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        "session_timeout_ms": int(kafka.session_timeout * 1000),
        "heartbeat_interval_ms": int(kafka.heartbeat_interval * 1000),
    }


class StageRunner(ABC):
    """Fetch, hand to the core, produce durably, commit; one consumer group per stage."""

    name: str

    def __init__(
        self,
        config: Config,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`monotonic`: the clock the commit cadence and quiet inputs are measured with."""
        self.config = config
        self.monotonic = monotonic
        self.producer = producer
        self.metrics = metrics
        self.status = StageStatus(self.name)
        self.consumer: AIOKafkaConsumer | None = None
        #: Called with each batch once its outputs are durable (benchmarks).
        self.after_batch: Callable[[Batch], None] | None = None
        #: Seconds between commits; stages with state commit together with a checkpoint.
        self.commit_every = 0.0
        # Processed offsets not yet committed, and when the last commit happened.
        self._pending: dict[TopicPartition, int] = {}
        self._last_commit = self.monotonic()
        # Held while a batch is handled and committed, and by the rebalance listener, so a
        # partition never moves in the middle of a batch. Never held across `getmany`.
        self._lock = asyncio.Lock()
        metrics.known_state_topics([config.topics.state_detect, config.topics.state_correlate])

    @property
    @abstractmethod
    def topics(self) -> list[str]:
        """The topics this stage consumes."""

    @property
    def group_id(self) -> str:
        """The stage's consumer group."""
        return f"{self.config.kafka.group_prefix}-{self.name}"

    @abstractmethod
    async def handle(self, batch: Batch) -> None:
        """Process one fetched batch; return only when its outputs are durable."""

    async def steer(self, consumer: AIOKafkaConsumer, fetched: bool) -> None:  # noqa: B027
        """Flow control after each fetch (`fetched`: it returned records); most stages have
        none."""

    async def on_idle(self) -> None:  # noqa: B027 - optional hook; most stages have nothing to do
        """Called when a fetch returns nothing."""

    async def checkpoint(self, partitions: set[TopicPartition] | None = None) -> None:  # noqa: B027
        """Make the stage's state for these input partitions (None: all) durable."""

    async def restore(self, partitions: set[TopicPartition]) -> None:  # noqa: B027
        """Load the state of newly assigned input partitions."""

    def forget(self, partitions: set[TopicPartition]) -> None:  # noqa: B027
        """Drop the state of input partitions this worker no longer owns."""

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Partitions leave: checkpoint their state and commit their offsets, then forget them."""
        async with self._lock:
            gone = set(revoked)
            await self.checkpoint(gone)
            await self._commit(only=gone)
            self.forget(gone)
        log.info(
            "partitions_revoked",
            stage=self.name,
            partitions=[f"{tp.topic}:{tp.partition}" for tp in revoked],
        )

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Partitions arrive: restore their state before the first fetch."""
        async with self._lock:
            await self.restore(set(assigned))
        log.info(
            "partitions_assigned",
            stage=self.name,
            partitions=[f"{tp.topic}:{tp.partition}" for tp in assigned],
        )

    async def _commit(self, only: set[TopicPartition] | None = None) -> bool:
        """Commit the processed offsets (of `only`'s partitions); False when the group had
        moved on and refused them."""
        offsets = {tp: offset for tp, offset in self._pending.items() if only is None or tp in only}
        if not offsets or self.consumer is None:
            return True
        committed = True
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on; the new owner redoes this work (at-least-once).
            log.warning("commit_failed", stage=self.name, error=type(exc).__name__)
            committed = False
        for tp in offsets:
            self._pending.pop(tp, None)
        self._last_commit = self.monotonic()
        return committed

    async def commit_if_due(self) -> None:
        """On a quiet input, checkpoint and commit the work done since the last commit once
        `commit_every` has passed: otherwise the last batch before a lull stays uncommitted
        until more input comes, and a restart meanwhile does that work again."""
        if not self._pending or self.monotonic() - self._last_commit < self.commit_every:
            return
        async with self._lock:
            await self.checkpoint()
            await self._commit()

    def processed(self, batch: Batch) -> None:
        """Record a handled batch's offsets for the next commit."""
        for tp, records in batch.items():
            self._pending[tp] = records[-1].offset + 1

    async def dead_letter(
        self, record: ConsumerRecord, reject: Reject, value: bytes | None = None
    ) -> None:
        """Write `value` (by default the record's own bytes) to the DLQ topic, explained by
        `reject` and by where the record came from, and wait until the broker has it.

        The value is cut to a prefix when the record would be too large for a broker
        (`ingest.dead_letter`). A write the broker refuses for good is counted and logged,
        and the input moves on; one that may succeed later raises, like any other output.
        """
        self.metrics.dlq_records.labels(reject.reason).inc()
        log.info(
            "dead_letter",
            stage=self.name,
            reason=reject.reason,
            detail=reject.detail,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        letter = dead_letter(
            reject,
            value if value is not None else (record.value or b""),
            record.key,
            record.topic,
            record.partition,
            record.offset,
        )
        try:
            future = await self.producer.send(
                self.config.topics.dlq, letter.value, key=letter.key, headers=letter.headers
            )
            await future
        except KafkaError as exc:
            if _may_succeed_later(exc):
                raise  # the stage restarts and writes it again, as for any other output
            # Raising would restart the stage on the same batch and fail again for ever,
            # stalling every partition of the stage. Skipping loses nothing the DLQ would
            # have held that the log line above and this one do not: the reason, detail and
            # source topic/partition/offset are logged, and the input itself stays in its
            # source topic at that offset (until its retention) for anyone to read again.
            self.metrics.dlq_write_failures.labels(type(exc).__name__).inc()
            log.error(
                "dead_letter_failed",
                stage=self.name,
                reason=reject.reason,
                error=repr(exc)[:500],
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                size=len(letter.value),
            )

    def reset(self) -> None:  # noqa: B027 - stateless stages have nothing to drop
        """Drop all in-memory state; the next assignment restores it from the changelogs."""

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; if the broker fails a write, start over from the checkpoint.

        Outputs that were not acknowledged may or may not have reached the broker, and the
        in-memory state has already moved past them. Dropping that state, rejoining and
        restoring the last checkpoint (which matches the committed offsets) reprocesses
        exactly the uncommitted input: at-least-once, nothing skipped.
        """
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._consume(stop)
                return
            except (KafkaError, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and _really_cancelled():
                    raise
                # aiokafka can also end a request with CancelledError when its connection
                # drops; that is a broker failure like any other, not a request to stop.
                self.status.connected = False
                self.status.last_error = type(exc).__name__
                log.warning(
                    "stage_restarting", stage=self.name, error=repr(exc), retry_in_s=backoff
                )
                self.reset()
                self._pending.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 10.0)

    async def _consume(self, stop: asyncio.Event) -> None:
        options = client_options(self.config.kafka)
        consumer = make_consumer(
            options, [], self.group_id, **stage_consumer_settings(self.config.kafka)
        )
        self.consumer = consumer
        try:
            await consumer.start()
            consumer.subscribe(self.topics, listener=_RebalanceListener(self))
            self.status.started = True
            self.status.connected = True
            log.info("stage_started", stage=self.name, topics=self.topics, group=self.group_id)
            while not stop.is_set():
                try:
                    batch = await consumer.getmany(
                        timeout_ms=200, max_records=self.config.kafka.max_poll_records
                    )
                except KafkaError as exc:
                    self.status.connected = False
                    self.status.last_error = type(exc).__name__
                    log.warning("fetch_failed", stage=self.name, error=type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                self.status.connected = True
                if not batch:
                    await self.on_idle()
                    await self.commit_if_due()
                    await self.steer(consumer, fetched=False)
                    continue
                started = time.perf_counter()
                async with self._lock:
                    await self.handle(batch)
                    self.processed(batch)
                    if self.monotonic() - self._last_commit >= self.commit_every:
                        await self.checkpoint()
                        await self._commit()
                self.metrics.stage_latency.labels(self.name).observe(time.perf_counter() - started)
                self.status.batches += 1
                self.status.records += sum(len(r) for r in batch.values())
                self._record_lag(consumer, batch)
                await self.steer(consumer, fetched=True)
                if self.after_batch is not None:
                    self.after_batch(batch)
            async with self._lock:
                await self.checkpoint()
                await self._commit()
        finally:
            try:
                await asyncio.wait_for(consumer.stop(), self.config.kafka.session_timeout)
            except (KafkaError, TimeoutError) as exc:
                log.warning("consumer_stop_failed", stage=self.name, error=repr(exc))
            self.status.connected = False
            log.info(
                "stage_stopped",
                stage=self.name,
                batches=self.status.batches,
                records=self.status.records,
            )

    def _record_lag(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        for tp, records in batch.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - (records[-1].offset + 1))
                self.metrics.consumer_lag.labels(self.name, tp.topic, str(tp.partition)).set(lag)


def _may_succeed_later(exc: KafkaError) -> bool:
    """Whether the broker may take the same write later (an outage, a leader moving), as
    opposed to refusing it for good (too large, not authorised, no such topic name)."""
    return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError | ProducerClosed)


def _really_cancelled() -> bool:
    """Whether the current task itself is being cancelled (not a library's stray cancel)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned task's outcome as seen, so asyncio does not report it."""
    if not task.cancelled():
        task.exception()


def state_rejected(
    metrics: Metrics, stage: str, topic: str, partition: str, exc: RecordRejected
) -> None:
    """Count and log a state record skipped on restore, or left unwritten (too large)."""
    metrics.state_rejected.labels(topic, exc.reason).inc()
    log.error(
        "state_record_rejected",
        stage=stage,
        topic=topic,
        partition=partition,
        reason=exc.reason,
        error=exc.detail,
    )


async def await_all(futures: Iterable[Awaitable[Any]]) -> None:
    pending = list(futures)
    if pending:
        await asyncio.gather(*pending)

"""The live worker: aiokafka consumers around the stage cores, one consumer group per stage.

At-least-once: a stage commits `offset + 1` for a batch only after everything derived
from it (anomalies, DLQ records, pages, deliveries) is acknowledged by the broker or
the webhook. Time inside the cores is event time; a correlate stage whose input goes
quiet advances it from the wall clock, so incidents still resolve.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import operator
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import aiohttp
import orjson
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

from pipeline.codec import MAX_RECORD_BYTES, RecordRejected, decode, encode, reading
from pipeline.config import Config, KafkaConfig
from pipeline.correlate.incidents import (
    SNAPSHOT_VERSION,
    Correlator,
    Decision,
    check_incident,
)
from pipeline.correlate.silence import Silencer
from pipeline.errors import BrokerError, ConfigError
from pipeline.ingest import Reject, StreamKind, dead_letter, decode_message
from pipeline.kafka import (
    client_options,
    committed_offsets,
    ensure_topics,
    make_consumer,
    make_producer,
)
from pipeline.logsignals import LOG_SERVICE_PREFIX, LOG_STAGE_RECORD, LogStage
from pipeline.metrics import Metrics
from pipeline.model import Anomaly, LogRecord, MetricPoint, Page, SeriesKey, Tick
from pipeline.notify.bodies import render_body
from pipeline.notify.sender import WebhookSender
from pipeline.silences import SilenceStore
from pipeline.skew import held_partitions
from pipeline.stages import build_correlator, build_detect, build_log_stage
from pipeline.state import last_values, owner, read_state, state_key, write_state
from pipeline.watermark import EventTime

log = structlog.get_logger("quietpager.worker")

Batch = dict[TopicPartition, list[ConsumerRecord]]
_Stamped = TypeVar("_Stamped", MetricPoint, LogRecord)


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

    def __init__(self, config: Config, producer: AIOKafkaProducer, metrics: Metrics) -> None:
        self.config = config
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
        self._last_commit = time.monotonic()
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
        self._last_commit = time.monotonic()
        return committed

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
                    await self.steer(consumer, fetched=False)
                    continue
                started = time.perf_counter()
                async with self._lock:
                    await self.handle(batch)
                    self.processed(batch)
                    if time.monotonic() - self._last_commit >= self.commit_every:
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


#: The changelog item that holds one logs partition's log stage (its watermark); each of its
#: services has an item of its own, named with `LOG_SERVICE_PREFIX`.
LOG_STAGE_ITEM = LOG_STAGE_RECORD

#: The correlate changelog's items: a correlator's clock and counters, and each open incident.
CORRELATOR_ITEM = "correlator"
INCIDENT_PREFIX = "incident/"
#: The schema of the correlate changelog's records (the correlator's own snapshot layout is
#: `pipeline.correlate.incidents.SNAPSHOT_VERSION`, checked as well).
CORRELATE_SCHEMA = 1

#: Header on anomaly records: the produce time (ms) of the telemetry message they came from.
PRODUCED_HEADER = "qp.produced_ms"


#: DLQ records written for one input message at most; its other rejects are counted and
#: logged (`DetectRunner._dead_letters`).
DLQ_RECORDS_PER_MESSAGE = 10

#: A metric point's event time (C-level, for keys and maps on the per-point path).
_event_time = operator.attrgetter("ts")


def _log_time(entry: tuple[LogRecord, int, TopicPartition]) -> float:
    return entry[0].ts


def _may_succeed_later(exc: KafkaError) -> bool:
    """Whether the broker may take the same write later (an outage, a leader moving), as
    opposed to refusing it for good (too large, not authorised, no such topic name)."""
    return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError | ProducerClosed)


def _really_cancelled() -> bool:
    """Whether the current task itself is being cancelled (not a library's stray cancel)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned task's outcome as seen, so asyncio does not report it."""
    if not task.cancelled():
        task.exception()


def _state_rejected(
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


def _legacy_snapshot(blob: bytes) -> dict[str, Any]:
    """A correlator snapshot as versions before the codec wrote it: one JSON object."""
    if len(blob) > MAX_RECORD_BYTES:
        raise RecordRejected("too_large", f"record of {len(blob)} bytes")
    try:
        data = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise RecordRejected("malformed", f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("incidents"), list):
        raise RecordRejected("malformed", "no incidents")
    return data


async def _await_all(futures: Iterable[Awaitable[Any]]) -> None:
    pending = list(futures)
    if pending:
        await asyncio.gather(*pending)


class DetectRunner(StageRunner):
    """Decodes telemetry, scores each point, emits anomalies and event-time ticks."""

    name = "detect"

    def __init__(
        self,
        config: Config,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        on_anomaly: Callable[[Anomaly], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: the wall clock (UNIX seconds) the `max_future`/`max_past` bounds read;
        `monotonic`: the clock that measures how long an input has been quiet."""
        super().__init__(config, producer, metrics)
        self.core = build_detect(config)
        self._clock = clock
        # One log stage per logs partition, so its templates move with the partition.
        self.log_stages: dict[TopicPartition, LogStage] = {}
        self._logs_dirty: set[TopicPartition] = set()
        # The log stage's changelog items last written or restored, per partition.
        self._log_items: dict[TopicPartition, set[str]] = {}
        self._monotonic = monotonic
        self._on_anomaly = on_anomaly
        self._evicted_seen = {"ttl": 0, "lru": 0}
        self._out_of_order_seen = 0
        self._clock_seen = {"corrections": 0, "held": 0}
        # Each input partition's event time is a robust watermark over the record keys (the
        # agents) that write to it, not the newest timestamp: one agent's clock running ahead
        # must not hold the others back. Ticks follow the slowest active partition.
        self.time = self._new_event_time()
        self._last_fetched = -math.inf  # monotonic time of the last fetch with records
        # By input partition: the series that learned since the last checkpoint, and those
        # checkpointed before (moved there at each checkpoint, off the per-point path).
        # State moves with its partition.
        self._dirty: dict[TopicPartition, set[SeriesKey]] = {}
        self._owned: dict[TopicPartition, set[SeriesKey]] = {}
        self.commit_every = config.worker.checkpoint_every

    @property
    def topics(self) -> list[str]:
        return [self.config.topics.metrics, self.config.topics.logs]

    async def handle(self, batch: Batch) -> None:
        topics = self.config.topics
        limit = self.config.kafka.max_message_bytes
        label_limits = self.config.ingest.limits
        sends: list[Awaitable[Any]] = []
        partitions = sorted(await self.producer.partitions_for(topics.anomalies))
        # Each point keeps its message's produce time, passed on with its anomaly so the
        # latency from produce to page decision can be measured downstream. `origins` runs in
        # step with `points`: one (produce time, partition) tuple per message, shared by all
        # of its points, so the per-point path allocates nothing here.
        points: list[MetricPoint] = []
        # In step with `points`: the time each is scored at, its own unless it is stamped
        # ahead of its partition's event time (then that time: where replay meets it too).
        times: list[float] = []
        # In step with `points` too: its partition's event time after its record, which is
        # the present the detect stage judges the point against (`DetectStage.observe`).
        nows: list[float] = []
        origins: list[tuple[int, TopicPartition]] = []
        logs: list[tuple[LogRecord, int, TopicPartition]] = []
        metric_events = 0
        wall = self._monotonic()
        event_time = self.time
        if self.config.detect.max_future is not None:
            # Points are stamped near the wall clock: event time goes no further than now.
            event_time.bound(self._clock() + self.config.max_lead)
            self.core.clock.ceiling = event_time.ceiling
        for tp, records in batch.items():
            kind: StreamKind = "logs" if tp.topic == topics.logs else "metrics"
            for record in records:
                raw = record.value
                if raw is None:
                    sends.append(self._dead_letter(record, Reject("empty_message", "no value")))
                    continue
                decoded = decode_message(raw, kind, limit, label_limits)
                if decoded.rejects:
                    sends.extend(self._dead_letters(record, decoded.rejects))
                if decoded.logs and self._bounded:  # a log line can move event time too
                    decoded.logs, rejects = self._split_by_range(decoded.logs)
                    sends.extend(self._dead_letters(record, rejects))
                if decoded.logs:
                    self.metrics.events_in.labels("logs").inc(len(decoded.logs))
                    if self.config.logs.enabled:
                        logs.extend((entry, record.timestamp, tp) for entry in decoded.logs)
                        newest = max(r.ts for r in decoded.logs)
                        event_time.note(tp, record.key, newest, wall)
                if decoded.points and self._bounded:
                    decoded.points, rejects = self._split_by_range(decoded.points)
                    sends.extend(self._dead_letters(record, rejects))
                if decoded.points:
                    metric_events += len(decoded.points)
                    points += decoded.points
                    origins += [(record.timestamp, tp)] * len(decoded.points)
                    stamped = list(map(_event_time, decoded.points))
                    newest = max(stamped)
                    now = event_time.note(tp, record.key, newest, wall)
                    times += stamped if newest <= now else [min(t, now) for t in stamped]
                    nows += [now] * len(stamped)
        if metric_events:
            self.metrics.events_in.labels("metrics").inc(metric_events)
        # Kafka orders only within a partition; a fetched batch can hold one partition's
        # future before another's past. Scoring in event-time order keeps series in order.
        if not all(map(operator.le, times, times[1:])):
            # A stable sort of the indices by time, applied to both lists (C-level keys).
            order = sorted(range(len(points)), key=times.__getitem__)
            points = [points[i] for i in order]
            nows = [nows[i] for i in order]
            origins = [origins[i] for i in order]
        logs.sort(key=_log_time)
        next_log = 0
        next_log_ts = logs[0][0].ts if logs else math.inf
        low_watermark = event_time.low(self.core.watermark, wall)
        observe = self.core.observe
        last_tp: TopicPartition | None = None
        dirty: set[SeriesKey] = set()
        for point, now, (produced_ms, tp) in zip(points, nows, origins, strict=True):
            # Log records take their place in event time among the points (a simple merge).
            while next_log_ts <= point.ts:
                sends.extend(await self._observe_log(*logs[next_log]))
                next_log += 1
                next_log_ts = logs[next_log][0].ts if next_log < len(logs) else math.inf
            anomaly = observe(point, now)
            if tp is not last_tp:
                last_tp = tp
                dirty = self._dirty.setdefault(tp, set())
            dirty.add(point.series)
            if anomaly is not None:
                sends.append(await self._send_anomaly(anomaly, produced_ms))
            # Ticks interleave with anomalies at the same cadence as `replay`, so the
            # correlator sees the same sequence of times live and offline.
            # Event time as replay has it at this point: never a point stamped ahead.
            tick = min(point.ts, self.core.watermark, low_watermark)
            if event_time.take_tick(tick):
                sends.extend(await self._tick(tick, produced_ms, partitions))
        for entry in logs[next_log:]:
            sends.extend(await self._observe_log(*entry))
        if next_log < len(logs):
            # A batch of logs only still moves event time on, as points do.
            last, produced_ms, _ = logs[-1]
            tick = min(last.ts, low_watermark)
            if event_time.take_tick(tick):
                sends.extend(await self._tick(tick, produced_ms, partitions))
        await _await_all(sends)
        self._export_state()

    async def steer(self, consumer: AIOKafkaConsumer, fetched: bool) -> None:
        """Pause the input partitions that read too far ahead in event time of one that
        still has a backlog, resume them once it has caught up (`pipeline.skew`). A backlog
        is more records left than one fetch returns (`kafka.max_poll_records`): a live input
        a few records behind is never one, so steady reading never pauses (each pause drops
        the partition's prefetched records).

        When fetches have returned nothing for `worker.idle_advance`, every partition is
        resumed: whatever holds the others back is not delivering, and an input must never
        stall for good.
        """
        paused: set[TopicPartition] = set(consumer.paused())
        held: frozenset[TopicPartition] = frozenset()
        now = self._monotonic()
        if not fetched and now - self._last_fetched < self.config.worker.idle_advance:
            return  # a gap between two fetches: keep the hold as it is
        if fetched:
            self._last_fetched = now
            assigned = consumer.assignment()
            if not self.config.logs.enabled:  # logs are read and dropped: they hold nothing back
                assigned = {tp for tp in assigned if tp.topic != self.config.topics.logs}
            backlogged: set[TopicPartition] = set()
            for tp in assigned:
                highwater = consumer.highwater(tp)
                if highwater is None:  # not fetched yet: its position may not be known
                    continue
                try:
                    if highwater - await consumer.position(tp) > self.config.kafka.max_poll_records:
                        backlogged.add(tp)
                except IllegalStateError:  # revoked meanwhile
                    continue
            newest = {tp: self.time.partition_time(tp) for tp in assigned}
            held = held_partitions(newest, backlogged, self.config.max_skew)
        try:
            if held - paused:
                consumer.pause(*(held - paused))
            if paused - held:
                consumer.resume(*(paused - held))
        except IllegalStateError:  # revoked meanwhile; the next fetch decides again
            return
        if held != paused:  # every few batches while a backlog drains, hence debug
            log.debug(
                "inputs_held" if held else "inputs_released",
                held=sorted(f"{tp.topic}-{tp.partition}" for tp in held),
            )
        self.metrics.inputs_held.set(len(held))

    def _new_event_time(self) -> EventTime:
        config = self.config
        return EventTime(
            config.max_lead, config.detect.tick_every, config.worker.idle_advance, self._monotonic
        )

    @property
    def _bounded(self) -> bool:
        return self.config.detect.max_future is not None or self.config.detect.max_past is not None

    def _split_by_range(self, items: list[_Stamped]) -> tuple[list[_Stamped], list[Reject]]:
        """Points or log records within the wall-clock bounds, and a DLQ reason for each one
        outside them."""
        now = self._clock()
        detect = self.config.detect
        latest = now + detect.max_future if detect.max_future is not None else float("inf")
        earliest = now - detect.max_past if detect.max_past is not None else float("-inf")
        times = [item.ts for item in items]
        if earliest <= min(times) and max(times) <= latest:  # the usual case, at C speed
            return items, []
        kept: list[_Stamped] = []
        rejects: list[Reject] = []
        for item in items:
            if earliest <= item.ts <= latest:
                kept.append(item)
            else:
                what = item.series.id if isinstance(item, MetricPoint) else "a log record"
                detail = f"ts {item.ts:.3f} is {item.ts - now:+.0f}s from now ({what})"
                rejects.append(Reject("ts_out_of_range", detail))
        return kept, rejects

    async def _tick(
        self, tick: float, produced_ms: int, partitions: list[int]
    ) -> list[Awaitable[Any]]:
        """At a tick of event time (`EventTime.take_tick`): log buckets, absences, and a tick
        downstream."""
        sends = []
        for stage in self.log_stages.values():
            for anomaly in stage.advance(tick):
                sends.append(await self._send_anomaly(anomaly, produced_ms))
        for anomaly in self.core.absences(tick):
            sends.append(await self._send_anomaly(anomaly, produced_ms))
        value = orjson.dumps(Tick(tick).to_dict())
        for partition in partitions:
            sends.append(
                await self.producer.send(self.config.topics.anomalies, value, partition=partition)
            )
        return sends

    def _log_stage(self, tp: TopicPartition) -> LogStage:
        stage = self.log_stages.get(tp)
        if stage is None:
            stage = self.log_stages[tp] = build_log_stage(self.config)
        return stage

    async def _observe_log(
        self, record: LogRecord, produced_ms: int, tp: TopicPartition
    ) -> list[Awaitable[Any]]:
        """Score one log record; send the anomalies it raised (delivery futures returned)."""
        self._logs_dirty.add(tp)
        anomalies = self._log_stage(tp).observe(record)
        return [await self._send_anomaly(a, produced_ms) for a in anomalies]

    async def _send_anomaly(self, anomaly: Anomaly, produced_ms: int) -> Awaitable[Any]:
        self.metrics.anomalies.labels(anomaly.signal.value).inc()
        if self._on_anomaly is not None:
            self._on_anomaly(anomaly)
        future: Awaitable[Any] = await self.producer.send(
            self.config.topics.anomalies,
            orjson.dumps(anomaly.to_dict()),
            key=anomaly.scope.encode(),
            headers=[(PRODUCED_HEADER, str(produced_ms).encode())],
        )
        return future

    async def checkpoint(self, partitions: set[TopicPartition] | None = None) -> None:
        """Write the models of series that learned since the last checkpoint.

        Every record is bounded (`pipeline.codec.MAX_RECORD_BYTES`): one that would be larger
        is counted and left unwritten, its last good record kept, rather than fail the write
        and the stage with it for ever.
        """
        if not self.config.worker.checkpoints:
            return
        topic = self.config.topics.state_detect
        chosen = [tp for tp in self._dirty if partitions is None or tp in partitions]
        items: dict[bytes, bytes | None] = {}
        for tp in chosen:
            name = owner(tp)
            learned = self._dirty.pop(tp)
            owned = self._owned.setdefault(tp, set())
            owned.update(learned)
            # Series the stage evicted (TTL, LRU) are no longer anybody's to move.
            owned.intersection_update(self.core.series_keys)
            on_reject = partial(_state_rejected, self.metrics, self.name, topic, name)
            for item, blob in self.core.export_series(learned, on_reject).items():
                items[state_key(name, item)] = blob
        for tp in [tp for tp in self._logs_dirty if partitions is None or tp in partitions]:
            self._logs_dirty.discard(tp)
            if tp in self.log_stages:
                stage = self.log_stages[tp]
                records = stage.snapshot()
                for exc in stage.rejected:
                    _state_rejected(self.metrics, self.name, topic, owner(tp), exc)
                # A service the stage forgot (its TTL) must not come back on restore.
                written = self._log_items.setdefault(tp, set())
                for gone in written - records.keys():
                    items[state_key(owner(tp), gone)] = None
                written.clear()
                written.update(records)
                for item, blob in records.items():
                    items[state_key(owner(tp), item)] = blob
        if items:
            await write_state(self.producer, topic, items)
            self.metrics.checkpoints.labels(self.name).inc()

    async def restore(self, partitions: set[TopicPartition]) -> None:
        if not self.config.worker.checkpoints:
            return
        topic = self.config.topics.state_detect
        state = await read_state(client_options(self.config.kafka), topic, partitions)
        for tp, items in state.items():
            on_reject = partial(_state_rejected, self.metrics, self.name, topic, owner(tp))
            log_items = {
                item: items.pop(item)
                for item in list(items)
                if item == LOG_STAGE_ITEM or item.startswith(LOG_SERVICE_PREFIX)
            }
            if log_items:
                services = self._log_stage(tp).restore(log_items, on_reject)
                self._log_items[tp] = set(log_items)
                self.metrics.restored.labels(self.name).inc()
                log.info(
                    "state_restored",
                    stage=self.name,
                    partition=owner(tp),
                    log_services=services,
                    log_templates=self.log_stages[tp].templates_tracked,
                )
            if not items:
                continue
            dropped = self.core.stats.state_dropped
            restored = self.core.import_series(items.values(), on_reject)
            self._owned.setdefault(tp, set()).update(restored)
            self.metrics.restored.labels(self.name).inc(len(restored))
            log.info("state_restored", stage=self.name, partition=owner(tp), series=len(restored))
            if self.core.stats.state_dropped > dropped:
                # Unreadable, or written by other model versions or another detect.model:
                # those series start fresh models (and warm up again).
                log.warning(
                    "state_dropped",
                    stage=self.name,
                    partition=owner(tp),
                    series=self.core.stats.state_dropped - dropped,
                )

    def reset(self) -> None:
        self.core = build_detect(self.config)
        self.time = self._new_event_time()
        self._evicted_seen = {"ttl": 0, "lru": 0}
        self._out_of_order_seen = 0
        self._clock_seen = {"corrections": 0, "held": 0}
        self._last_fetched = -math.inf
        self._owned.clear()
        self._dirty.clear()
        self.log_stages.clear()
        self._logs_dirty.clear()
        self._log_items.clear()

    def forget(self, partitions: set[TopicPartition]) -> None:
        # Stop holding event time back for partitions this worker no longer owns, and drop
        # their series: the next owner restores them from the changelog.
        for tp in partitions:
            self.time.forget(tp)
            self.core.drop_series(self._dirty.pop(tp, set()) | self._owned.pop(tp, set()))
            self.log_stages.pop(tp, None)
            self._logs_dirty.discard(tp)
            self._log_items.pop(tp, None)

    async def _dead_letter(self, record: ConsumerRecord, reject: Reject) -> None:
        self.metrics.decode_errors.labels(reject.reason).inc()
        await self.dead_letter(record, reject)

    def _dead_letters(self, record: ConsumerRecord, rejects: list[Reject]) -> list[Awaitable[None]]:
        """DLQ writes for one message's rejects: the first `DLQ_RECORDS_PER_MESSAGE`; the
        rest are counted and summed up in one log line.

        Each DLQ record carries the whole message, so one record per reject let a 1 MB
        array of 500,000 bad items ask for 500 GB of DLQ writes (and as many log lines).
        The records written already hold every byte of the message.
        """
        written = rejects[:DLQ_RECORDS_PER_MESSAGE]
        skipped = rejects[DLQ_RECORDS_PER_MESSAGE:]
        if skipped:
            reasons: dict[str, int] = {}
            for reject in skipped:
                reasons[reject.reason] = reasons.get(reject.reason, 0) + 1
            for reason, count in reasons.items():
                self.metrics.decode_errors.labels(reason).inc(count)
            log.warning(
                "dead_letters_skipped",
                stage=self.name,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reasons=reasons,
            )
        return [self._dead_letter(record, reject) for reject in written]

    def _export_state(self) -> None:
        stats = self.core.stats
        self.metrics.series_tracked.set(self.core.series_tracked)
        for cause, count in stats.evicted.items():
            delta = count - self._evicted_seen[cause]
            if delta:
                self.metrics.series_evicted.labels(cause).inc(delta)
                self._evicted_seen[cause] = count
        if stats.out_of_order > self._out_of_order_seen:
            self.metrics.out_of_order.inc(stats.out_of_order - self._out_of_order_seen)
            self._out_of_order_seen = stats.out_of_order
        seen = self._clock_seen
        for handle, name, count in (
            (self.metrics.clock_corrections, "corrections", stats.clock_corrections),
            (self.metrics.watermark_held, "held", self.time.held),
        ):
            if count > seen[name]:
                handle.inc(count - seen[name])
                seen[name] = count


class CorrelateRunner(StageRunner):
    """Folds anomalies into incidents; writes trigger/resolve pages to the outbox topic.

    One correlator per assigned anomalies partition (anomalies are keyed by correlation
    scope), so a partition's open incidents move with it when the group rebalances.
    """

    name = "correlate"

    def __init__(
        self,
        config: Config,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        on_decision: Callable[[Decision], None] | None = None,
        silencer: Silencer | None = None,
    ) -> None:
        super().__init__(config, producer, metrics)
        self.cores: dict[TopicPartition, Correlator] = {}
        # Shared by every partition's correlator, so API silences apply to all of them.
        self._silencer = silencer if silencer is not None else Silencer.from_config(config.silences)
        # Event time is the newest anomaly or tick seen; `time` moves it on while input is quiet.
        worker = config.worker
        self.time = EventTime(config.max_lead, config.detect.tick_every, worker.idle_advance, clock)
        self._on_decision = on_decision
        self._dirty: set[TopicPartition] = set()
        # The incident items last written or restored, per partition (closed ones are deleted).
        self._incident_items: dict[TopicPartition, set[str]] = {}

    @property
    def topics(self) -> list[str]:
        return [self.config.topics.anomalies]

    def core_for(self, tp: TopicPartition) -> Correlator:
        """The correlator of one anomalies partition (created on first use)."""
        core = self.cores.get(tp)
        if core is None:
            core = self.cores[tp] = build_correlator(self.config, self._silencer)
        return core

    async def handle(self, batch: Batch) -> None:
        decisions: list[Decision] = []
        for tp, records in batch.items():
            core = self.core_for(tp)
            self._dirty.add(tp)
            for record in records:
                try:
                    data = orjson.loads(record.value or b"")
                    if data.get("kind") == "tick":
                        ts = float(data["ts"])
                        self.time.advance(ts)
                        decisions.extend(core.advance(ts))
                        continue
                    anomaly = Anomaly.from_dict(data)
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
                    self.metrics.decode_errors.labels("bad_anomaly").inc()
                    log.warning(
                        "bad_anomaly_record", partition=record.partition, offset=record.offset
                    )
                    continue
                self.time.advance(anomaly.ts)
                decisions.extend(core.observe(anomaly))
        await self._emit(decisions)

    async def on_idle(self) -> None:
        # A quiet input must still let holds expire and incidents resolve.
        now = self.time.idle_time()
        if now is None:
            return
        async with self._lock:
            decisions: list[Decision] = []
            for tp, core in self.cores.items():
                advanced = core.advance(now)
                if advanced:
                    self._dirty.add(tp)
                decisions.extend(advanced)
            await self._emit(decisions)
            await self.checkpoint()

    async def checkpoint(self, partitions: set[TopicPartition] | None = None) -> None:
        """Write the state of every correlator that changed since the last checkpoint: its
        clock and counters (item `correlator`), and each open incident as an item of its own
        (`incident/<id>`, deleted once closed), so one bad record loses one incident at most
        and no record grows with the number of incidents."""
        if not self.config.worker.checkpoints:
            return
        topic = self.config.topics.state_correlate
        chosen = [tp for tp in self._dirty if partitions is None or tp in partitions]
        items: dict[bytes, bytes | None] = {}
        for tp in chosen:
            if tp not in self.cores:
                continue
            name = owner(tp)
            snapshot = self.cores[tp].snapshot()
            incidents = snapshot.pop("incidents")
            records: dict[str, bytes] = {}
            parts = [(CORRELATOR_ITEM, "correlator", snapshot)] + [
                (INCIDENT_PREFIX + str(i["id"]), "incident", i) for i in incidents
            ]
            for item, kind, body in parts:
                try:
                    records[item] = encode(kind, CORRELATE_SCHEMA, body)
                except RecordRejected as exc:
                    _state_rejected(self.metrics, self.name, topic, name, exc)
            # A closed incident's item is deleted; one too large to write keeps its last.
            live = {INCIDENT_PREFIX + str(i["id"]) for i in incidents}
            written = self._incident_items.setdefault(tp, set())
            for gone in written - live:
                items[state_key(name, gone)] = None
            self._incident_items[tp] = live
            for item, blob in records.items():
                items[state_key(name, item)] = blob
        self._dirty.difference_update(chosen)
        if items:
            await write_state(self.producer, topic, items)
            self.metrics.checkpoints.labels(self.name).inc()

    async def restore(self, partitions: set[TopicPartition]) -> None:
        """Restore each partition's correlator from its records. A record that does not
        decode is counted and skipped; an incident whose record was lost is resolved at the
        pager if the outbox shows it triggered and not yet resolved."""
        if not self.config.worker.checkpoints:
            return
        topic = self.config.topics.state_correlate
        options = client_options(self.config.kafka)
        state = await read_state(options, topic, partitions)
        lost: set[str] = set()
        for tp, items in state.items():
            if not items:
                continue
            name = owner(tp)
            head: dict[str, Any] = {"version": SNAPSHOT_VERSION, "now": None, "seq": 0}
            incidents: list[dict[str, Any]] = []
            for item, blob in items.items():
                try:
                    if item == CORRELATOR_ITEM and blob[:1] == b"{":
                        # Before the codec, one JSON snapshot (never a pickle) held it all.
                        head = dict(_legacy_snapshot(blob))
                        for incident in head.pop("incidents"):
                            with reading("incident"):
                                check_incident(incident)
                            incidents.append(incident)
                    elif item == CORRELATOR_ITEM:
                        head = decode(blob, "correlator", CORRELATE_SCHEMA)
                    elif item.startswith(INCIDENT_PREFIX):
                        incident = decode(blob, "incident", CORRELATE_SCHEMA)
                        with reading("incident"):
                            check_incident(incident)
                        incidents.append(incident)
                except RecordRejected as exc:
                    _state_rejected(self.metrics, self.name, topic, name, exc)
                    if item.startswith(INCIDENT_PREFIX):
                        lost.add(item.removeprefix(INCIDENT_PREFIX))
            core = build_correlator(self.config, self._silencer)
            try:
                core.restore({**head, "incidents": incidents})
            except ValueError as exc:  # a bad head: the incidents restore without it
                _state_rejected(
                    self.metrics, self.name, topic, name, RecordRejected("malformed", str(exc))
                )
                core.restore(
                    {"version": SNAPSHOT_VERSION, "now": None, "seq": 0, "incidents": incidents}
                )
            self.cores[tp] = core
            self._incident_items[tp] = {INCIDENT_PREFIX + str(i["id"]) for i in incidents}
            if core.now is not None:
                self.time.advance(core.now)
            self.metrics.restored.labels(self.name).inc()
            log.info("state_restored", stage=self.name, partition=name, incidents=core.open_count)
        if lost:
            await self._resolve_lost(options, lost)

    async def _resolve_lost(self, options: Mapping[str, Any], lost: set[str]) -> None:
        """Send a resolve for each lost incident the outbox shows open at the pager: its
        state is gone, so no later decision would ever close it."""
        outbox = self.config.topics.pages
        found = await last_values(options, outbox, {key.encode() for key in lost})
        sends: list[Awaitable[Any]] = []
        for key, values in found.items():
            pages = []
            for value in values:
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                    pages.append(Page.from_dict(orjson.loads(value)))
            if not pages or pages[-1].action != "trigger":
                continue
            trigger = pages[-1]
            at = max(trigger.at, self.time.newest)
            resolve = replace(
                trigger,
                action="resolve",
                at=at,
                custom_details={**trigger.custom_details, "resolved_because": "state_lost"},
            )
            log.warning(
                "lost_incident_resolved", dedup_key=trigger.dedup_key, root=trigger.root_service
            )
            self.metrics.decisions.labels("page", "state_lost").inc()
            sends.append(await self.producer.send(outbox, resolve.record(), key=key))
        await _await_all(sends)

    def reset(self) -> None:
        self.cores.clear()
        self._dirty.clear()
        self._incident_items.clear()

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.cores.pop(tp, None)
            self._dirty.discard(tp)
            self._incident_items.pop(tp, None)

    async def _emit(self, decisions: list[Decision]) -> None:
        sends: list[Awaitable[Any]] = []
        for decision in decisions:
            self.metrics.decisions.labels(decision.kind, decision.reason).inc()
            if self._on_decision is not None:
                self._on_decision(decision)
            if decision.page is None:
                log.debug(
                    "decision",
                    kind=decision.kind,
                    reason=decision.reason,
                    incident=decision.incident_id,
                )
                continue
            page = decision.page
            log.info(
                "page_decision",
                action=page.action,
                reason=decision.reason,
                dedup_key=page.dedup_key,
                root=page.root_service,
                signals=list(page.signals),
                receivers=list(page.receivers),
            )
            sends.append(
                await self.producer.send(
                    self.config.topics.pages, page.record(), key=page.dedup_key.encode()
                )
            )
        await _await_all(sends)
        self.metrics.open_incidents.set(sum(c.open_count for c in self.cores.values()))


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


@dataclass(slots=True)
class Worker:
    """All requested stages in one process, sharing one producer."""

    config: Config
    metrics: Metrics
    routing_keys: Mapping[str, str] = field(default_factory=dict)
    stages: tuple[str, ...] = ("detect", "correlate", "notify")
    on_anomaly: Callable[[Anomaly], None] | None = None
    on_decision: Callable[[Decision], None] | None = None
    runners: list[StageRunner] = field(default_factory=list)
    producer: AIOKafkaProducer | None = None
    broker_reachable: bool = False
    silences: SilenceStore | None = None
    #: The wall clock (UNIX seconds) every part of the worker reads: silences' expiry and
    #: retention, the detect stage's `max_future`/`max_past` bounds. Tests inject a fixed one.
    clock: Callable[[], float] = time.time
    #: The clock that measures how long an input has been quiet (seconds, never set back):
    #: idle partitions stop holding ticks back, a quiet correlator moves event time on.
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        # From the first scrape, before any stage runs: `increase()` needs the zero.
        self.metrics.start_config_series(self.config, self.stages)

    @property
    def ready(self) -> bool:
        """All stages are consuming and the broker answered the last probe."""
        return (
            self.broker_reachable
            and bool(self.runners)
            and all(r.status.started and r.status.connected for r in self.runners)
        )

    async def _watch_broker(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        """Ask the broker for metadata every `worker.probe_every`; readiness follows the answer.

        aiokafka reconnects on its own and a fetch just comes back empty while the broker
        is away, so the probe is what tells /readyz (and the log) that it is gone.
        """
        every = self.config.worker.probe_every
        try:
            await self._probe_until(producer, stop, every)
        finally:
            self.broker_reachable = False  # no probe, no claim of readiness

    async def _probe_until(
        self, producer: AIOKafkaProducer, stop: asyncio.Event, every: float
    ) -> None:
        while not stop.is_set():
            # The probe runs as its own task: aiokafka can end a request with CancelledError
            # when a connection drops, and that must not end this loop.
            probe = asyncio.ensure_future(producer.client.fetch_all_metadata())
            finished, _ = await asyncio.wait({probe}, timeout=every)
            if not finished:
                probe.add_done_callback(_retrieve)
                probe.cancel()
                reachable = False
            elif probe.cancelled():
                reachable = False
            elif (error := probe.exception()) is not None:
                if not isinstance(error, KafkaError | OSError | TimeoutError):
                    log.warning("broker_probe_failed", error=repr(error))
                reachable = False
            else:
                reachable = True
            if reachable != self.broker_reachable:
                log.log(
                    20 if reachable else 30,
                    "broker_reachable" if reachable else "broker_unreachable",
                    bootstrap=self.config.kafka.bootstrap_servers,
                )
            self.broker_reachable = reachable
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def run(self, stop: asyncio.Event) -> None:
        """Create topics if asked, run every stage until `stop`, then shut down within the bound."""
        config = self.config
        options = client_options(config.kafka)
        topics = config.topics
        if topics.create:
            names = [topics.metrics, topics.logs, topics.anomalies, topics.pages, topics.dlq]
            changelogs = [topics.state_detect, topics.state_correlate]
            await ensure_topics(
                options,
                dict.fromkeys([*names, *changelogs], topics.partitions) | {topics.silences: 1},
                compacted={*changelogs, topics.silences},
            )
        producer = make_producer(
            options, max_request_size=max(1_048_576, config.kafka.max_message_bytes * 2)
        )
        self.producer = producer
        await producer.start()
        watcher: asyncio.Task[None] | None = None
        follower: asyncio.Task[None] | None = None
        try:
            self.silences = SilenceStore(config, producer, clock=self.clock, metrics=self.metrics)
            loaded = asyncio.Event()
            follower = asyncio.create_task(self.silences.follow(stop, loaded), name="silences")
            # Silences made through the API must mute from the first anomaly after a restart.
            await asyncio.wait(
                [follower, asyncio.create_task(loaded.wait())],
                timeout=30,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if follower.done():
                follower.result()
            if not loaded.is_set():
                raise BrokerError(f"could not read the silences topic {topics.silences}")
            self.runners = self._build_runners(producer)
            self.broker_reachable = True  # the producer has just connected
            watcher = asyncio.create_task(self._watch_broker(producer, stop), name="broker-probe")
            tasks = [asyncio.create_task(r.run(stop), name=f"stage-{r.name}") for r in self.runners]
            stopping = asyncio.create_task(stop.wait(), name="stop")
            finished, _ = await asyncio.wait(
                [*tasks, stopping], return_when=asyncio.FIRST_COMPLETED
            )
            if stopping not in finished:
                # A stage ended on its own: that is a failure, so stop the others too.
                log.error(
                    "stage_ended_unexpectedly",
                    stages=[t.get_name() for t in finished],
                    errors=[repr(t.exception()) for t in finished if not t.cancelled()],
                )
                stop.set()
            await stopping
            await watcher
            await follower
            done, pending = await asyncio.wait(tasks, timeout=config.worker.shutdown_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if pending:
                log.warning("shutdown_deadline_exceeded", cancelled=[t.get_name() for t in pending])
        finally:
            for background in (watcher, follower):
                if background is not None and not background.done():
                    background.cancel()
            await producer.stop()
        log.info(
            "worker_stopped",
            stages=[
                {"stage": r.status.name, "batches": r.status.batches, "records": r.status.records}
                for r in self.runners
            ],
        )

    def _build_runners(self, producer: AIOKafkaProducer) -> list[StageRunner]:
        runners: list[StageRunner] = []
        if "detect" in self.stages:
            runners.append(
                DetectRunner(
                    self.config,
                    producer,
                    self.metrics,
                    self.on_anomaly,
                    clock=self.clock,
                    monotonic=self.monotonic,
                )
            )
        if "correlate" in self.stages:
            runners.append(
                CorrelateRunner(
                    self.config,
                    producer,
                    self.metrics,
                    clock=self.monotonic,
                    on_decision=self.on_decision,
                    silencer=self.silences.silencer if self.silences is not None else None,
                )
            )
        if "notify" in self.stages:
            runners.extend(
                NotifyRunner(self.config, producer, self.metrics, self.routing_keys, r.name)
                for r in self.config.receivers
            )
        return runners

"""The detect stage's shell: decode, merge metrics and logs in event time, score, tick,
hold inputs that read ahead, checkpoint models and log templates."""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import orjson
import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import IllegalStateError

from pipeline.config import Config
from pipeline.ingest import Reject, StreamKind, decode_message
from pipeline.kafka import client_options
from pipeline.logsignals import LOG_SERVICE_PREFIX, LOG_STAGE_RECORD, LogStage
from pipeline.metrics import Metrics
from pipeline.model import Anomaly, LogRecord, MetricPoint, SeriesKey, Tick
from pipeline.shell.runner import Batch, StageRunner, await_all, state_rejected
from pipeline.skew import held_partitions
from pipeline.stages import build_detect, build_log_stage
from pipeline.state import owner, read_state, state_key, write_state
from pipeline.watermark import EventTime

log = structlog.get_logger("quietpager.worker")

_Stamped = TypeVar("_Stamped", MetricPoint, LogRecord)

#: The changelog item that holds one logs partition's log stage (its watermark); each of its
#: services has an item of its own, named with `LOG_SERVICE_PREFIX`.
LOG_STAGE_ITEM = LOG_STAGE_RECORD

#: Header on anomaly records: the produce time (ms) of the telemetry message they came from.
PRODUCED_HEADER = "qp.produced_ms"


#: DLQ records written for one input message at most; its other rejects are counted and
#: logged (`DetectRunner._dead_letters`).
DLQ_RECORDS_PER_MESSAGE = 10

#: A metric point's event time (C-level, for keys and maps on the per-point path).
_event_time = operator.attrgetter("ts")


def _log_time(entry: tuple[LogRecord, int, TopicPartition]) -> float:
    return entry[0].ts


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
        super().__init__(config, producer, metrics, monotonic)
        self.core = build_detect(config)
        self._clock = clock
        # One log stage per logs partition, so its templates move with the partition.
        self.log_stages: dict[TopicPartition, LogStage] = {}
        self._logs_dirty: set[TopicPartition] = set()
        # The log stage's changelog items last written or restored, per partition.
        self._log_items: dict[TopicPartition, set[str]] = {}
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
        wall = self.monotonic()
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
        await await_all(sends)
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
        now = self.monotonic()
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
            config.max_lead, config.detect.tick_every, config.worker.idle_advance, self.monotonic
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
            on_reject = partial(state_rejected, self.metrics, self.name, topic, name)
            for item, blob in self.core.export_series(learned, on_reject).items():
                items[state_key(name, item)] = blob
        for tp in [tp for tp in self._logs_dirty if partitions is None or tp in partitions]:
            self._logs_dirty.discard(tp)
            if tp in self.log_stages:
                stage = self.log_stages[tp]
                records = stage.snapshot()
                for exc in stage.rejected:
                    state_rejected(self.metrics, self.name, topic, owner(tp), exc)
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
            on_reject = partial(state_rejected, self.metrics, self.name, topic, owner(tp))
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

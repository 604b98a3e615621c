"""The live worker: the requested stages' runners in one process, sharing one producer,
supervised until SIGTERM, with the broker probe behind /readyz.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.config import Config
from pipeline.correlate.incidents import Decision
from pipeline.errors import BrokerError
from pipeline.kafka import (
    client_options,
    ensure_topics,
    make_producer,
)
from pipeline.metrics import Metrics
from pipeline.model import Anomaly
from pipeline.shell.correlate import CorrelateRunner
from pipeline.shell.detect import DetectRunner
from pipeline.shell.notify import NotifyRunner
from pipeline.shell.runner import StageRunner, retrieve
from pipeline.silences import SilenceStore

log = structlog.get_logger("quietpager.worker")


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
                probe.add_done_callback(retrieve)
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

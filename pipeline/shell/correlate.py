"""The correlate stage's shell: one correlator per anomalies partition, pages to the
outbox, the advance of event time while the input is quiet, incidents checkpointed one
record each.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson
import structlog
from aiokafka import (
    AIOKafkaProducer,
    TopicPartition,
)

from pipeline.codec import MAX_RECORD_BYTES, RecordRejected, decode, encode, reading
from pipeline.config import Config
from pipeline.correlate.incidents import (
    SNAPSHOT_VERSION,
    Correlator,
    Decision,
    check_incident,
)
from pipeline.correlate.silence import Silencer
from pipeline.kafka import client_options
from pipeline.metrics import Metrics
from pipeline.model import Anomaly, Page
from pipeline.shell.runner import Batch, StageRunner, await_all, state_rejected
from pipeline.stages import build_correlator
from pipeline.state import last_values, owner, read_state, state_key, write_state
from pipeline.watermark import EventTime

log = structlog.get_logger("quietpager.worker")

#: The correlate changelog's items: a correlator's clock and counters, and each open incident.
CORRELATOR_ITEM = "correlator"
INCIDENT_PREFIX = "incident/"
#: The schema of the correlate changelog's records (the correlator's own snapshot layout is
#: `pipeline.correlate.incidents.SNAPSHOT_VERSION`, checked as well).
CORRELATE_SCHEMA = 1


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
        super().__init__(config, producer, metrics, clock)
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
                    state_rejected(self.metrics, self.name, topic, name, exc)
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
                    state_rejected(self.metrics, self.name, topic, name, exc)
                    if item.startswith(INCIDENT_PREFIX):
                        lost.add(item.removeprefix(INCIDENT_PREFIX))
            core = build_correlator(self.config, self._silencer)
            try:
                core.restore({**head, "incidents": incidents})
            except ValueError as exc:  # a bad head: the incidents restore without it
                state_rejected(
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
        await await_all(sends)

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
        await await_all(sends)
        self.metrics.open_incidents.set(sum(c.open_count for c in self.cores.values()))

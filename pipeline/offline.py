"""The stage cores chained in one process, in event time: what `replay` and the benchmarks drive."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Config
from pipeline.correlate.incidents import Decision
from pipeline.ingest import Decoded
from pipeline.model import Anomaly, LogRecord, MetricPoint, Page
from pipeline.notify.bodies import render_body
from pipeline.stages import StageCores, build_correlator
from pipeline.watermark import EventTime

__all__ = ["Delivery", "OfflinePipeline", "OfflineSummary", "build_correlator", "render_deliveries"]

REDACTED = "REDACTED"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One body bound for one receiver at one event time."""

    at: float
    receiver: str
    body: dict[str, Any]


@dataclass(slots=True)
class OfflineSummary:
    """Counts of what went through, for the end-of-run report."""

    points: int = 0
    logs: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    anomalies: int = 0
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    pages: list[Page] = field(default_factory=list)
    deliveries: int = 0


def render_deliveries(
    config: Config, page: Page, routing_keys: Mapping[str, str]
) -> list[Delivery]:
    """The body each of the page's receivers gets."""
    out = []
    for name in page.receivers:
        receiver = config.receiver(name)
        key = routing_keys.get(name, REDACTED) if receiver.type == "pagerduty" else None
        out.append(Delivery(page.at, name, render_body(receiver.type, page, name, key)))
    return out


class OfflinePipeline:
    """Detect, correlate and render in-process; time advances with the data (event time)."""

    def __init__(self, config: Config, routing_keys: Mapping[str, str] | None = None) -> None:
        self.config = config
        cores = StageCores.assemble(config)
        self.detect = cores.detect
        self.logs = cores.logs
        self.correlator = cores.correlator
        self.routing_keys = dict(routing_keys or {})
        self.summary = OfflineSummary()
        # Replay has no wall clock: no input is ever quiet, no partition idle.
        self.time = EventTime(
            config.max_lead, config.detect.tick_every, config.worker.idle_advance, _no_wall
        )

    def feed(self, decoded: Decoded) -> list[Delivery]:
        """Run one decoded message through the stages; return what would be sent."""
        self.summary.points += len(decoded.points)
        self.summary.logs += len(decoded.logs)
        self.summary.rejects.update(r.reason for r in decoded.rejects)
        out: list[Delivery] = []
        logs = self.logs
        events: Sequence[MetricPoint | LogRecord] = decoded.points
        if logs is not None and decoded.logs:
            mixed: list[MetricPoint | LogRecord] = [*decoded.points, *decoded.logs]
            # One message may mix both; in event-time order a log anomaly folds where it belongs.
            mixed.sort(key=_event_time)
            events = mixed
        detect = self.detect
        take_tick = self.time.take_tick
        for event in events:
            if isinstance(event, MetricPoint):
                anomaly = detect.observe(event)
                if anomaly is not None:
                    out.extend(self._observe(anomaly))
            elif logs is not None:
                # A log line moves event time by the points' robust rule: one stamped minutes
                # ahead must not make the real anomalies after it stale.
                detect.observe_time(dict(event.labels), event.ts)
                for log_anomaly in logs.observe(event):
                    out.extend(self._observe(log_anomaly))
            watermark = self.watermark
            if take_tick(watermark):
                # Same cadence as the worker's ticks, so replay pages at the times live would.
                if logs is not None:
                    for log_anomaly in logs.advance(watermark):
                        out.extend(self._observe(log_anomaly))
                for absent in detect.absences(watermark):
                    out.extend(self._observe(absent))
                out.extend(self._handle(self.correlator.advance(watermark)))
        return out

    @property
    def watermark(self) -> float:
        """Event time: the robust watermark (`pipeline.watermark`) over points and log lines."""
        return self.detect.watermark

    def _observe(self, anomaly: Anomaly) -> list[Delivery]:
        self.summary.anomalies += 1
        return self._handle(self.correlator.observe(anomaly))

    def finish(self) -> list[Delivery]:
        """Let event time run past the last point until every open incident has closed."""
        if self.watermark == float("-inf"):
            return []
        cfg = self.config.correlate
        horizon = self.watermark + cfg.resolve_after + cfg.hold_for
        return self._handle(self.correlator.advance(horizon))

    def _handle(self, decisions: Iterable[Decision]) -> list[Delivery]:
        out: list[Delivery] = []
        for decision in decisions:
            self.summary.decisions[(decision.kind, decision.reason)] += 1
            if decision.page is not None:
                self.summary.pages.append(decision.page)
                out.extend(render_deliveries(self.config, decision.page, self.routing_keys))
        self.summary.deliveries += len(out)
        return out


def _event_time(event: MetricPoint | LogRecord) -> float:
    return event.ts


def _no_wall() -> float:
    return 0.0

"""Prometheus metrics: one struct of handles, built against a registry passed in.

What a scraper sees follows Prometheus' conventions: every labelled counter whose label
values are known (from the code, or from the config once it is read) is exported at zero from
the start, so `increase()` and `rate()` see the first event of each label set; the process,
Python GC and platform collectors are on the same registry; no `_created` series.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pipeline.codec import REJECT_REASONS as STATE_REJECT_REASONS
from pipeline.correlate.incidents import DECISION_REASONS
from pipeline.ingest import REJECT_REASONS
from pipeline.model import PageAction, Signal
from pipeline.notify.sender import (
    ATTEMPT_DELIVERED,
    ATTEMPT_PERMANENT,
    ATTEMPT_RETRY_NETWORK,
    ATTEMPT_RETRY_STATUS,
    ATTEMPT_UNANSWERED,
)

if TYPE_CHECKING:
    from pipeline.config import Config

#: Input streams, as `quietpager_events_in_total{stream}` names them.
STREAMS: Final = ("metrics", "logs")
#: Records of the worker's own topics that do not decode (counted, never dead-lettered).
BAD_ANOMALY: Final = "bad_anomaly"
#: Reasons the notify stage writes a page to the DLQ (pipeline/shell/notify.py, `NotifyRunner`).
BAD_PAGE: Final = "bad_page"
UNKNOWN_RECEIVER: Final = "unknown_receiver"
UNDELIVERABLE: Final = "undeliverable"
#: Every `reason` of `quietpager_decode_errors_total`.
DECODE_REASONS: Final = (*REJECT_REASONS, BAD_ANOMALY, BAD_PAGE)
#: Every `reason` of `quietpager_dlq_records_total` (the DLQ record's `qp.reason` header).
DLQ_REASONS: Final = (*REJECT_REASONS, BAD_PAGE, UNKNOWN_RECEIVER, UNDELIVERABLE)
#: Why the detect stage drops a series' model (the keys of `DetectStats.evicted`).
EVICTION_CAUSES: Final = ("ttl", "lru")
#: One per HTTP attempt, as `WebhookSender` reports them.
WEBHOOK_OUTCOMES: Final = (
    ATTEMPT_DELIVERED,
    ATTEMPT_RETRY_STATUS,
    ATTEMPT_RETRY_NETWORK,
    ATTEMPT_UNANSWERED,
    ATTEMPT_PERMANENT,
)
#: The stages that write and restore state (the others keep none).
STATEFUL_STAGES: Final = ("detect", "correlate")

#: Label sets known without a config, exported at zero from the start: handle name -> the
#: label values of each series. A new labelled counter with fixed values gets a row here.
KNOWN_LABELS: Final[Mapping[str, Sequence[Sequence[str]]]] = {
    "events_in": [(stream,) for stream in STREAMS],
    "decode_errors": [(reason,) for reason in DECODE_REASONS],
    "dlq_records": [(reason,) for reason in DLQ_REASONS],
    "anomalies": [(signal.value,) for signal in Signal],
    "decisions": DECISION_REASONS,
    "series_evicted": [(cause,) for cause in EVICTION_CAUSES],
}

#: Types whose families prometheus_client gives a `<name>_created` sample.
_CREATED_TYPES: Final = frozenset({"counter", "histogram", "summary"})


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every counter, gauge and histogram the worker exports."""

    registry: CollectorRegistry
    events_in: Counter
    decode_errors: Counter
    dlq_records: Counter
    dlq_write_failures: Counter
    anomalies: Counter
    decisions: Counter
    pages_sent: Counter
    webhook_attempts: Counter
    webhook_failures: Counter
    stage_latency: Histogram
    consumer_lag: Gauge
    inputs_held: Gauge
    series_tracked: Gauge
    series_evicted: Counter
    open_incidents: Gauge
    out_of_order: Counter
    clock_corrections: Counter
    watermark_held: Counter
    checkpoints: Counter
    restored: Counter
    state_rejected: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Build all handles on `registry` (a fresh one by default, never the global), with
        the process, Python GC and platform collectors beside them."""
        reg = registry if registry is not None else CollectorRegistry()
        _register_runtime_collectors(reg)
        return cls(
            registry=reg,
            events_in=Counter(
                "quietpager_events_in",
                "Telemetry items decoded from the input topics (metric points, log records), "
                "by stream.",
                ["stream"],
                registry=reg,
            ),
            decode_errors=Counter(
                "quietpager_decode_errors",
                "Messages or batch items rejected as undecodable or out of bounds, by reason; "
                "each is also dead-lettered, but for bad_anomaly records (only counted).",
                ["reason"],
                registry=reg,
            ),
            dlq_records=Counter(
                "quietpager_dlq_records",
                "Records written to the DLQ topic, by reason (the record's qp.reason header): "
                "input rejects, and pages the notify stage could not deliver.",
                ["reason"],
                registry=reg,
            ),
            dlq_write_failures=Counter(
                "quietpager_dlq_write_failures",
                "DLQ records the broker refused for good (logged, then skipped), by error.",
                ["error"],
                registry=reg,
            ),
            anomalies=Counter(
                "quietpager_anomalies",
                "Anomalies written to the anomalies topic (metric points, log signals, absent "
                "services), by golden signal.",
                ["signal"],
                registry=reg,
            ),
            decisions=Counter(
                "quietpager_correlation_decisions",
                "Correlation decisions, by kind (page, fold, suppress) and reason.",
                ["kind", "reason"],
                registry=reg,
            ),
            pages_sent=Counter(
                "quietpager_pages_sent",
                "Pages a receiver accepted, by receiver and action (trigger, resolve).",
                ["receiver", "action"],
                registry=reg,
            ),
            webhook_attempts=Counter(
                "quietpager_webhook_attempts",
                "HTTP requests to receivers, by receiver and outcome (delivered, retry_status, "
                "retry_network, permanent).",
                ["receiver", "outcome"],
                registry=reg,
            ),
            webhook_failures=Counter(
                "quietpager_webhook_failures",
                "Pages not delivered and dead-lettered instead (retries spent, refused for good, "
                "or a receiver the config does not have), by receiver.",
                ["receiver"],
                registry=reg,
            ),
            stage_latency=Histogram(
                "quietpager_batch_duration_seconds",
                "Seconds a stage spends on one fetched batch (handling it, producing its outputs "
                "and, when due, checkpointing and committing), by stage.",
                ["stage"],
                registry=reg,
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            ),
            inputs_held=Gauge(
                "quietpager_inputs_held",
                "Input partitions the detect stage has paused because they read too far "
                "ahead in event time of one with a backlog (worker.max_skew).",
                registry=reg,
            ),
            consumer_lag=Gauge(
                "quietpager_consumer_lag",
                "Messages between the last processed offset and the end of each assigned "
                "partition, as of its last fetched batch (for notify stages, the outbox depth).",
                ["stage", "topic", "partition"],
                registry=reg,
            ),
            series_tracked=Gauge(
                "quietpager_series_tracked",
                "Metric series with a live model in the detect stage.",
                registry=reg,
            ),
            series_evicted=Counter(
                "quietpager_series_evicted",
                "Series models the detect stage dropped, by cause (ttl: silent for "
                "detect.series_ttl; lru: over detect.max_series).",
                ["cause"],
                registry=reg,
            ),
            open_incidents=Gauge(
                "quietpager_open_incidents",
                "Incidents open in this worker's correlators.",
                registry=reg,
            ),
            out_of_order=Counter(
                "quietpager_out_of_order_points",
                "Metric points skipped (not dead-lettered) because they are not newer than "
                "their series' last point.",
                registry=reg,
            ),
            clock_corrections=Counter(
                "quietpager_clock_corrections",
                "Points taken although older than their series' last, because that last was "
                "stamped ahead of event time and the source's clock has come back.",
                registry=reg,
            ),
            watermark_held=Counter(
                "quietpager_watermark_held",
                "Input records stamped more than detect.max_lead ahead of their partition's "
                "event time, which did not move it (pipeline.watermark).",
                registry=reg,
            ),
            checkpoints=Counter(
                "quietpager_state_checkpoints",
                "State checkpoints (one write of the changed state) to the changelog topics, "
                "by stage.",
                ["stage"],
                registry=reg,
            ),
            restored=Counter(
                "quietpager_state_restored",
                "Items restored from the changelog topics on assignment (detect: series "
                "models and log stages; correlate: correlators), by stage.",
                ["stage"],
                registry=reg,
            ),
            state_rejected=Counter(
                "quietpager_state_records_rejected",
                "State records skipped, not restored (read) or not written (too_large), by "
                "changelog topic and reason.",
                ["topic", "reason"],
                registry=reg,
            ),
        )

    def known_state_topics(self, topics: Iterable[str]) -> None:
        """Export every reason of `quietpager_state_records_rejected_total` at zero for these
        changelog topics, so an alert on it sees the series before the first rejection."""
        for topic in topics:
            for reason in STATE_REJECT_REASONS:
                self.state_rejected.labels(topic, reason)

    def __post_init__(self) -> None:
        for handle, label_sets in KNOWN_LABELS.items():
            _start_at_zero(getattr(self, handle), label_sets)

    def start_config_series(self, config: Config, stages: Iterable[str]) -> None:
        """Export at zero the series whose labels the config names: each stage this worker
        runs (`stages`, as `Worker.stages`) and, with the notify stages, each receiver."""
        stages = set(stages)
        receivers = [r.name for r in config.receivers] if "notify" in stages else []
        names: list[str] = [s for s in ("detect", "correlate") if s in stages]
        names += [f"notify-{receiver}" for receiver in receivers]
        _start_at_zero(self.stage_latency, [(name,) for name in names])
        stateful = [(name,) for name in STATEFUL_STAGES if name in stages]
        _start_at_zero(self.checkpoints, stateful)
        _start_at_zero(self.restored, stateful)
        actions = get_args(PageAction)
        _start_at_zero(self.pages_sent, [(r, action) for r in receivers for action in actions])
        _start_at_zero(
            self.webhook_attempts, [(r, outcome) for r in receivers for outcome in WEBHOOK_OUTCOMES]
        )
        _start_at_zero(self.webhook_failures, [(r,) for r in receivers])

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, as /metrics serves it."""
        return generate_latest(_WithoutCreated(self.registry))


def _start_at_zero(handle: Counter | Histogram, label_sets: Iterable[Sequence[str]]) -> None:
    # `labels()` creates the child: from then on it is exported, at zero until first counted.
    for values in label_sets:
        handle.labels(*values)


def _register_runtime_collectors(registry: CollectorRegistry) -> None:
    # The same three the global registry has by default, here on the one passed in.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class _WithoutCreated(Collector):
    """A view of a registry without the `<name>_created` samples prometheus_client adds.

    `prometheus_client.disable_created_metrics()` and its environment variable would do the
    same, but for every registry in the process: an application embedding this worker, or
    a library with metrics of its own, would lose its `_created` series without asking.
    Filtering this registry's exposition changes nothing outside it.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.type in _CREATED_TYPES:
                created = f"{family.name}_created"
                family = copy.copy(family)
                family.samples = [s for s in family.samples if s.name != created]
            yield family

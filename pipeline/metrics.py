"""Prometheus metrics: one struct of handles, built against a registry passed in."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
    checkpoints: Counter
    restored: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Build all handles on `registry` (a fresh one by default, never the global)."""
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=reg,
            events_in=Counter(
                "quietpager_events_in",
                "Telemetry items decoded, by stream.",
                ["stream"],
                registry=reg,
            ),
            decode_errors=Counter(
                "quietpager_decode_errors",
                "Rejected messages or items, by reason.",
                ["reason"],
                registry=reg,
            ),
            dlq_records=Counter(
                "quietpager_dlq_records", "Records written to the DLQ topic.", registry=reg
            ),
            dlq_write_failures=Counter(
                "quietpager_dlq_write_failures",
                "DLQ records the broker refused for good (logged, then skipped), by error.",
                ["error"],
                registry=reg,
            ),
            anomalies=Counter(
                "quietpager_anomalies",
                "Points scored above threshold, by signal.",
                ["signal"],
                registry=reg,
            ),
            decisions=Counter(
                "quietpager_correlation_decisions",
                "Correlation decisions (page, fold, suppress) by reason.",
                ["kind", "reason"],
                registry=reg,
            ),
            pages_sent=Counter(
                "quietpager_pages_sent",
                "Pages delivered, by receiver and action.",
                ["receiver", "action"],
                registry=reg,
            ),
            webhook_attempts=Counter(
                "quietpager_webhook_attempts",
                "Webhook attempts by receiver and outcome.",
                ["receiver", "outcome"],
                registry=reg,
            ),
            webhook_failures=Counter(
                "quietpager_webhook_failures",
                "Pages that could not be delivered, by receiver.",
                ["receiver"],
                registry=reg,
            ),
            stage_latency=Histogram(
                "quietpager_stage_seconds",
                "Wall time to process one fetched batch, by stage.",
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
                "Messages behind the end of each assigned partition.",
                ["stage", "topic", "partition"],
                registry=reg,
            ),
            series_tracked=Gauge(
                "quietpager_series_tracked", "Series with a live model.", registry=reg
            ),
            series_evicted=Counter(
                "quietpager_series_evicted",
                "Series models dropped, by cause.",
                ["cause"],
                registry=reg,
            ),
            open_incidents=Gauge(
                "quietpager_open_incidents", "Incidents open in the correlator.", registry=reg
            ),
            out_of_order=Counter(
                "quietpager_out_of_order_points",
                "Points older than their series' last one.",
                registry=reg,
            ),
            checkpoints=Counter(
                "quietpager_state_checkpoints",
                "State checkpoints written to the changelog topics, by stage.",
                ["stage"],
                registry=reg,
            ),
            restored=Counter(
                "quietpager_state_restored",
                "Items (series models, correlators) restored from changelogs, by stage.",
                ["stage"],
                registry=reg,
            ),
        )

"""The whole config and its checks across sections."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipeline.config.fields import _Strict
from pipeline.config.sections import (
    DEFAULT_MAX_LEAD,
    DEFAULT_MAX_SKEW,
    CorrelateConfig,
    DetectConfig,
    HttpConfig,
    IngestConfig,
    KafkaConfig,
    LogsConfig,
    Receiver,
    RouteConfig,
    Silence,
    TopicsConfig,
    WorkerConfig,
)


class Config(_Strict):
    """The whole configuration of one quietpager deployment."""

    kafka: KafkaConfig = KafkaConfig()
    topics: TopicsConfig = TopicsConfig()
    ingest: IngestConfig = IngestConfig()
    detect: DetectConfig = DetectConfig()
    logs: LogsConfig = LogsConfig()
    correlate: CorrelateConfig = CorrelateConfig()
    topology: dict[str, list[str]] = Field(default_factory=dict)
    silences: list[Silence] = Field(default_factory=list)
    receivers: list[Receiver] = Field(min_length=1)
    route: RouteConfig
    http: HttpConfig = HttpConfig()
    worker: WorkerConfig = WorkerConfig()

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [r.name for r in self.receivers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"receiver names must be unique; repeated: {', '.join(duplicates)}")
        for key, route in (
            ("receivers", self.route.receivers),
            ("low_urgency", self.route.low_urgency),
        ):
            for name in route:
                if name not in names:
                    raise ValueError(
                        f"route.{key} names undefined receiver {name!r}; "
                        f"defined: {', '.join(names)}"
                    )
        for service, callees in self.topology.items():
            if service in callees:
                raise ValueError(f"topology: service {service!r} lists itself as a dependency")
        if (
            self.worker.max_skew is not None
            and self.worker.max_skew >= self.correlate.resolve_after
        ):
            raise ValueError(
                f"worker.max_skew ({self.worker.max_skew:g}s) must be below "
                f"correlate.resolve_after ({self.correlate.resolve_after:g}s): an anomaly that "
                "far behind the correlator's clock is dropped as stale"
            )
        if (
            self.detect.max_lead is not None
            and self.detect.max_lead >= self.correlate.resolve_after
        ):
            raise ValueError(
                f"detect.max_lead ({self.detect.max_lead:g}s) must be below "
                f"correlate.resolve_after ({self.correlate.resolve_after:g}s): event time that "
                "far ahead of an anomaly makes it stale"
            )
        return self

    @property
    def max_lead(self) -> float:
        """`detect.max_lead`, or when unset 60 s, or half of `correlate.resolve_after` when
        that is shorter (so that a point the watermark let through never makes another stale)."""
        if self.detect.max_lead is not None:
            return self.detect.max_lead
        return min(DEFAULT_MAX_LEAD, self.correlate.resolve_after / 2)

    @property
    def max_skew(self) -> float:
        """`worker.max_skew`, or when unset 30 s, or half of `correlate.resolve_after` when
        that is shorter (an anomaly held back longer than `resolve_after` would be stale)."""
        if self.worker.max_skew is not None:
            return self.worker.max_skew
        return min(DEFAULT_MAX_SKEW, self.correlate.resolve_after / 2)

    def receiver(self, name: str) -> Receiver:
        """The receiver called `name`."""
        for receiver in self.receivers:
            if receiver.name == name:
                return receiver
        raise KeyError(name)

"""The config file's sections, each validated on its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from pipeline.config.fields import Duration, Regex, SecretSource, _Strict
from pipeline.ingest import DEFAULT_LIMITS, ItemLimits
from pipeline.labels import parse_matcher
from pipeline.model import Signal
from pipeline.silence_limits import MAX_COMMENT_CHARS, MAX_CREATED_BY_CHARS, MAX_MATCHERS


class KafkaSecurity(_Strict):
    """SASL/TLS options passed to aiokafka."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretSource | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


class TopicsConfig(_Strict):
    """Topic names (DESIGN.md) and how many partitions to create when they are missing."""

    metrics: str = "telemetry.metrics"
    logs: str = "telemetry.logs"
    anomalies: str = "quietpager.anomalies"
    pages: str = "quietpager.pages"
    dlq: str = "quietpager.dlq"
    state_detect: str = "quietpager.state.detect"
    state_correlate: str = "quietpager.state.correlate"
    silences: str = "quietpager.silences"
    partitions: int = Field(default=3, ge=1, le=1024)
    create: bool = True


class KafkaConfig(_Strict):
    """Where the broker is and how the worker joins its consumer groups."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "quietpager"
    group_prefix: str = "quietpager"
    max_poll_records: int = Field(default=2000, ge=1)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    # How long the broker may hold a fetch that found too little data (Kafka's
    # `fetch.max.wait.ms`). Short, because a stage's next fetch is sent only once the previous
    # batch is consumed: a broker that holds it the whole wait while data is there (the
    # embedded Tansu did, after the stage had produced) idles the worker that long per batch.
    fetch_max_wait: Duration = 0.05
    session_timeout: Duration = 10.0
    heartbeat_interval: Duration = 3.0
    security: KafkaSecurity = KafkaSecurity()

    @field_validator("fetch_max_wait")
    @classmethod
    def _fetch_wait_range(cls, value: float) -> float:
        if not 0.001 <= value <= 30.0:
            raise ValueError("fetch_max_wait must be between 1ms and 30s")
        return value

    @property
    def fetch_max_wait_ms(self) -> int:
        """`fetch_max_wait` in whole milliseconds, as aiokafka takes it (at least 1)."""
        return max(1, round(self.fetch_max_wait * 1000))

    @model_validator(mode="after")
    def _heartbeat_inside_session(self) -> KafkaConfig:
        if self.heartbeat_interval >= self.session_timeout:
            raise ValueError("heartbeat_interval must be shorter than session_timeout")
        return self


#: No series key may exceed this, whatever the config says: a detect checkpoint holds the key
#: about twice and an anomaly once, and both must stay far under a broker's 1 MB default.
SERIES_KEY_CEILING = 262_144


class IngestConfig(_Strict):
    """Bounds on what one input item may carry: a series identity beyond them is rejected
    (`too_large_label`), a log line beyond `max_log_message_bytes` cut to its start."""

    max_name_bytes: int = Field(default=DEFAULT_LIMITS.max_name_bytes, ge=1)
    max_label_name_bytes: int = Field(default=DEFAULT_LIMITS.max_label_name_bytes, ge=1)
    max_label_value_bytes: int = Field(default=DEFAULT_LIMITS.max_label_value_bytes, ge=1)
    max_labels: int = Field(default=DEFAULT_LIMITS.max_labels, ge=0, le=1000)
    max_series_key_bytes: int = Field(
        default=DEFAULT_LIMITS.max_series_key_bytes, ge=1, le=SERIES_KEY_CEILING
    )
    max_log_message_bytes: int = Field(
        default=DEFAULT_LIMITS.max_log_message_bytes, ge=64, le=SERIES_KEY_CEILING
    )

    @model_validator(mode="after")
    def _parts_fit_the_key(self) -> IngestConfig:
        for part in ("max_name_bytes", "max_label_name_bytes", "max_label_value_bytes"):
            if getattr(self, part) > self.max_series_key_bytes:
                raise ValueError(f"{part} must not exceed max_series_key_bytes")
        return self

    @property
    def limits(self) -> ItemLimits:
        """The bounds as `decode_message` takes them."""
        return ItemLimits(
            self.max_name_bytes,
            self.max_label_name_bytes,
            self.max_label_value_bytes,
            self.max_labels,
            self.max_series_key_bytes,
            self.max_log_message_bytes,
        )


class SignalRule(_Strict):
    """Claims a series for a golden signal when its name matches (and its labels, if given)."""

    signal: Signal
    name_matches: Regex
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("signal")
    @classmethod
    def _not_generic(cls, value: Signal) -> Signal:
        if value is Signal.GENERIC:
            raise ValueError("a rule must name a golden signal, not 'generic'")
        return value


def _default_rules() -> list[SignalRule]:
    return [
        SignalRule(signal=Signal.LATENCY, name_matches=r".*(latency|duration|response_time).*"),
        SignalRule(signal=Signal.ERRORS, name_matches=r".*(error|fail|5xx|exception).*"),
        SignalRule(signal=Signal.TRAFFIC, name_matches=r".*(requests|rps|throughput|traffic).*"),
        SignalRule(
            signal=Signal.SATURATION,
            name_matches=r".*(utilization|utilisation|saturation|usage_ratio|cpu|memory|pool).*",
        ),
    ]


def _default_thresholds() -> dict[Signal, float]:
    return {signal: 0.99 for signal in Signal}


class DetectConfig(_Strict):
    """Per-series online detection: which signal a series is, and when a score is an anomaly."""

    service_label: str = "service"
    scope_label: str | None = None
    signal_rules: list[SignalRule] = Field(default_factory=_default_rules)
    thresholds: dict[Signal, float] = Field(default_factory=_default_thresholds)
    warmup_points: int = Field(default=30, ge=1)
    # Which series model scores metric points (detectors/README.md): `likelihood`, the anomaly
    # likelihood with range breaches, a refractory period and the drift and seasonal views
    # (alarms once per event; far better on NAB), or `golden`, the per-point model (alarms on
    # every point of an event; cheaper).
    model: Literal["golden", "likelihood"] = "likelihood"
    saturation_ceiling: float = Field(default=1.0, gt=0)
    series_ttl: Duration = 6 * 3600.0
    max_series: int = Field(default=200_000, ge=1)
    tick_every: Duration = 10.0
    # The live worker sends points and log records stamped further than this from its wall
    # clock to the DLQ (`ts_out_of_range`). Ahead: 10 minutes unless set (null turns it off),
    # since one record from a clock years ahead would move event time past every real
    # anomaly. Behind: off unless set, since replays and backfills carry old times.
    max_future: Duration | None = 600.0
    max_past: Duration | None = None
    # Event time follows a robust watermark (pipeline/watermark.py): a point stamped further
    # than this ahead of it does not move it unless other sources follow. Unset: 60 s, or half
    # of `correlate.resolve_after` when that is shorter (`Config.max_lead`).
    max_lead: Duration | None = None

    @field_validator("max_lead")
    @classmethod
    def _positive_lead(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"max_lead must be positive, got {value:g}s")
        return value

    @field_validator("thresholds")
    @classmethod
    def _in_unit_interval(cls, value: dict[Signal, float]) -> dict[Signal, float]:
        merged = _default_thresholds() | value
        for signal, threshold in merged.items():
            if not 0.0 < threshold < 1.0:
                raise ValueError(
                    f"threshold for {signal.value} must lie in (0, 1), got {threshold}"
                )
        return merged


LogLevel = Literal["debug", "info", "notice", "warning", "error", "critical"]


class LogMaskRule(_Strict):
    """A site-specific variable in log lines: text matching `pattern` becomes `<mask_with>`."""

    pattern: Regex
    mask_with: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")


class LogsConfig(_Strict):
    """Log streams: templates mined per service, counted in event-time buckets, then scored."""

    enabled: bool = True
    bucket: Duration = 60.0
    warmup_buckets: int = Field(default=10, ge=1)
    new_template_min_level: LogLevel = "warning"
    max_templates_per_service: int = Field(default=1000, ge=1)
    max_services: int = Field(default=10_000, ge=1)
    service_ttl: Duration = 6 * 3600.0
    similarity: float = Field(default=0.7, gt=0, lt=1)
    depth: int = Field(default=5, ge=3, le=10)
    burst_min_count: int = Field(default=5, ge=1)
    burst_min_level: LogLevel = "warning"
    repeat_every: Duration = 15.0
    silence_window: int = Field(default=10, ge=2, le=60)
    silence_after: int = Field(default=2, ge=1)
    examples: int = Field(default=3, ge=0, le=10)
    masking: list[LogMaskRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sane(self) -> LogsConfig:
        if self.bucket <= 0:
            raise ValueError("bucket must be positive")
        if self.silence_after >= self.silence_window:
            raise ValueError("silence_after must be smaller than silence_window")
        return self


class CorrelateConfig(_Strict):
    """How alerts fold into incidents, and when an incident pages and resolves."""

    group_window: Duration = 300.0
    hold_for: Duration = 60.0
    hold_max_gap: Duration = 30.0
    resolve_after: Duration = 300.0
    severity: Literal["critical", "error", "warning", "info"] = "critical"
    max_incidents: int = Field(default=10_000, ge=1)
    # Flap detection (pipeline/correlate/flap.py): percent of possible state changes.
    flap_window: Duration = 3600.0
    flap_high: float = Field(default=20.0, gt=0, le=100)
    flap_low: float = Field(default=10.0, ge=0, lt=100)
    # ... and a series whose episodes paged this many times within flap_window (0: off).
    flap_max_pages: int = Field(default=3, ge=0)
    # Storm protection (pipeline/correlate/storm.py): 0 pages per window turns it off.
    storm_max_pages: int = Field(default=10, ge=0)
    storm_window: Duration = 600.0

    @model_validator(mode="after")
    def _ordered(self) -> CorrelateConfig:
        if self.resolve_after <= 0:
            raise ValueError("resolve_after must be positive")
        if self.group_window < self.hold_max_gap:
            raise ValueError(
                f"group_window ({self.group_window:g}s) must be at least hold_max_gap "
                f"({self.hold_max_gap:g}s): a series' anomalies that far apart would each open "
                "a new incident, and none could stay anomalous for hold_for"
            )
        if self.flap_low >= self.flap_high:
            raise ValueError("flap_low must be below flap_high")
        return self


class Silence(_Strict):
    """A window in which matching alerts are folded and never page (Alertmanager's shape)."""

    matchers: list[str] = Field(min_length=1, max_length=MAX_MATCHERS)
    starts_at: Annotated[float, BeforeValidator(lambda v: _parse_ts(v))]
    ends_at: Annotated[float, BeforeValidator(lambda v: _parse_ts(v))]
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)
    created_by: str = Field(default="config", max_length=MAX_CREATED_BY_CHARS)

    @field_validator("matchers")
    @classmethod
    def _parse_matchers(cls, value: list[str]) -> list[str]:
        matchers = [parse_matcher(text) for text in value]
        if all(m.matches({}) for m in matchers):
            raise ValueError(
                "at least one matcher must not match the empty string "
                "(as given, the silence would mute every alert)"
            )
        return value

    @model_validator(mode="after")
    def _window(self) -> Silence:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


def _parse_ts(value: Any) -> float:
    from datetime import datetime

    from pipeline.timeutil import parse_timestamp

    if isinstance(value, datetime):  # YAML parses unquoted RFC 3339 into datetime
        if value.tzinfo is None:
            raise ValueError("timestamp has no time zone")
        return value.timestamp()
    return parse_timestamp(value)


class RetryConfig(_Strict):
    """Exponential backoff with jitter for webhook deliveries."""

    initial_backoff: Duration = 0.5
    max_backoff: Duration = 60.0
    multiplier: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    max_attempts: int = Field(default=0, ge=0, description="0 retries until delivered")
    # Copies of a page sent without an answer (timed out, connection lost once sent, a 504)
    # before it goes to the DLQ: each may have reached the receiver, so this bounds the copies
    # a slow receiver gets, and how long its other pages wait behind one. 0: no bound.
    max_unanswered: int = Field(default=3, ge=0, strict=True)
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _sane(self) -> RetryConfig:
        # A zero backoff stays zero: retries flat out at a receiver that is down. (A zero
        # timeout is allowed: no per-request limit, as in aiohttp.)
        if self.initial_backoff <= 0:
            raise ValueError("initial_backoff must be positive")
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff must be at least initial_backoff")
        return self


class Receiver(_Strict):
    """One webhook destination."""

    name: str = Field(min_length=1)
    type: Literal["pagerduty", "alertmanager"]
    url: str
    routing_key: SecretSource | None = None
    retry: RetryConfig = RetryConfig()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _pagerduty_needs_key(self) -> Receiver:
        if self.type == "pagerduty" and self.routing_key is None:
            raise ValueError("a pagerduty receiver needs routing_key (env: or file:)")
        return self


class RouteConfig(_Strict):
    """Which receivers get the pages."""

    receivers: list[str] = Field(min_length=1)
    # Incidents whose series are all saturation (or generic) page these instead, if given.
    low_urgency: list[str] = Field(default_factory=list)


class HttpConfig(_Strict):
    """The operations endpoint: /metrics, /healthz, /readyz and the silences API.

    With `token` (env: or file:), every request but /metrics, /healthz and /readyz (open for
    scrapers and probes), so the whole silences API, must carry `Authorization: Bearer
    <token>`.
    """

    listen: str = "127.0.0.1:9108"
    enabled: bool = True
    token: SecretSource | None = None
    # An API silence expired this long ago is removed from the silences topic (Alertmanager
    # keeps them 120 h too), so the list and the start-up load do not grow for ever.
    silence_retention: Duration = 120 * 3600.0

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be host:port")
        return value


StageName = Literal["detect", "correlate", "notify"]


def _all_stages() -> list[StageName]:
    return ["detect", "correlate", "notify"]


DEFAULT_MAX_SKEW = 30.0  # seconds; `Config.max_skew`
DEFAULT_MAX_LEAD = 60.0  # seconds; `Config.max_lead` (pipeline.watermark's default too)


class WorkerConfig(_Strict):
    """Shell settings for the live worker."""

    shutdown_timeout: Duration = 10.0
    idle_advance: Duration = 5.0
    # How far ahead in event time an input partition may read while another still has a
    # backlog, before the detect stage pauses it (`pipeline/skew.py`). Unset: 30 s, or half
    # of correlate.resolve_after when that is shorter (`Config.max_skew`).
    max_skew: Duration | None = None
    checkpoint_every: Duration = 5.0
    checkpoints: bool = True
    probe_every: Duration = 2.0
    stages: list[StageName] = Field(default_factory=_all_stages, min_length=1)

    @field_validator("probe_every")
    @classmethod
    def _probe_takes_time(cls, value: float) -> float:
        if value <= 0:  # a probe given no time never answers: never ready, probing flat out
            raise ValueError("must be positive")
        return value

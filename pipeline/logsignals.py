"""Log signals: templates mined per service, counted in event-time buckets, scored into anomalies.

Pure and synchronous: event time comes with each record or with `advance(now)`. Each service
has its own Drain3 template miner (bounded by `max_templates_per_service`); each template's
line count per `bucket` is scored with the same River-based detector the metric series use.
What becomes an anomaly (the `kind` in its detail):

- `new_template`: a template first seen after the service's warm-up, at
  `new_template_min_level` or above. Score 1.0 at once, and again every `repeat_every` while
  it keeps appearing during its own warm-up, so a new failure that persists can page alone.
- `template_burst`: a known template at `burst_min_level` or above has a count in the open
  bucket that crosses its threshold (checked as lines arrive, so a burst is reported before
  its bucket ends).
- `error_rate`: the same for a service's error-level lines (error and above) as a whole.
- `template_silent`: a template present in most of the last `silence_window` buckets has been
  absent for the last `silence_after` (a heartbeat stopped), and its share of buckets present
  since first seen makes a gap that long unlikely by chance (`SILENCE_CHANCE`), so a line that
  comes now and then is no heartbeat; reported again every `repeat_every` as time advances
  until it returns or `silence_window` buckets pass.

Bursts and new templates of warning-or-above templates, and error rates, are the `errors`
signal; bursts of lower-level templates (when `burst_min_level` allows) are `traffic`, and so
are silences. Every anomaly's `detail` carries the template, up to `examples` recent lines
(secret-like values masked) and the counts (during, and the baseline per bucket before).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from detectors.golden import GoldenSignalDetector, golden_for_signal
from pipeline.codec import (
    RecordRejected,
    decode,
    encode,
    pack_float,
    reading,
    unpack_bool,
    unpack_float,
    unpack_int,
    unpack_str,
)
from pipeline.config import DetectConfig, LogsConfig
from pipeline.logmask import DEFAULT_MASKS, EXAMPLE_CHARS, CombinedMask, SiteMask, redact_secrets
from pipeline.logstate import (
    ERROR_RANK,
    LEVEL_RANK,
    SILENCE_CHANCE,
    STEADY_SHARE,
    WARNING_RANK,
    DetectorFactory,
    LogStats,
    _alarm_count,
    _example,
    _learn,
    _optional_float,
    _Rate,
    _rate_from,
    _Service,
    _service_fields,
    _steady_since_seen,
    _Template,
)
from pipeline.logtemplates import LINE_CACHE_SIZE, TemplateSet, miner_config
from pipeline.model import Anomaly, LogRecord, SeriesKey, Signal

# The masking, mining and per-service state live in their own modules; their public names are
# re-exported here, where the rest of the pipeline and the tests import them from.
__all__ = [
    "DEFAULT_MASKS",
    "ERROR_RANK",
    "ERROR_SERIES",
    "EXAMPLE_CHARS",
    "LEVEL_RANK",
    "LINE_CACHE_SIZE",
    "LOG_SERVICE_PREFIX",
    "LOG_STAGE_RECORD",
    "SILENCE_CHANCE",
    "SNAPSHOT_VERSION",
    "STEADY_SHARE",
    "TEMPLATE_SERIES",
    "WARNING_RANK",
    "CombinedMask",
    "DetectorFactory",
    "LogStage",
    "LogStats",
    "SiteMask",
    "TemplateSet",
    "miner_config",
    "redact_secrets",
]

TEMPLATE_SERIES: Final = "log_template_rate"
ERROR_SERIES: Final = "log_error_rate"
#: The schema of the stage's state records; 2: the codec's explicit fields replace pickle.
SNAPSHOT_VERSION: Final = 2
#: Item names of the stage's state records: its own, and each service's after the prefix.
LOG_STAGE_RECORD: Final = "__log_stage__"
LOG_SERVICE_PREFIX: Final = "__log_stage__/"


class LogStage:
    """Mines templates from log records and scores their per-bucket counts into anomalies."""

    def __init__(
        self,
        config: LogsConfig,
        detect: DetectConfig,
        factory: DetectorFactory | None = None,
    ) -> None:
        self.config = config
        self.detect = detect
        self._factory = factory or self._default_factory
        self._miner_config = miner_config(
            config.similarity, config.depth, config.max_templates_per_service, config.masking
        )
        self._services: OrderedDict[str, _Service] = OrderedDict()
        self._min_rank = LEVEL_RANK[config.new_template_min_level]
        self._burst_rank = LEVEL_RANK[config.burst_min_level]
        self._history_mask = (1 << config.silence_window) - 1
        self.stats = LogStats()
        self.watermark = -math.inf
        self._next_ttl_sweep = -math.inf
        #: The template id of the last observed record (-1 before any), for benchmarks.
        self.last_template = -1
        #: Services the last `snapshot()` left out, their records being too large.
        self.rejected: list[RecordRejected] = []

    def _default_factory(self, signal: Signal) -> GoldenSignalDetector:
        return golden_for_signal(signal.value, warmup=self.config.warmup_buckets)

    @property
    def services_tracked(self) -> int:
        """How many services hold template state now."""
        return len(self._services)

    @property
    def templates_tracked(self) -> int:
        """How many templates are counted now, over all services."""
        return sum(len(s.by_id) for s in self._services.values())

    # ----------------------------------------------------------------- inputs

    def observe(self, record: LogRecord) -> list[Anomaly]:
        """Count one record; returns anomalies of buckets it closed, then any it raised itself."""
        # The hot path of the log stream: written for speed (no per-line allocations beyond
        # the miner's, no calls that are not needed).
        self.stats.records += 1
        ts = record.ts
        config = self.config
        out: list[Anomaly] = []
        if ts > self.watermark:
            self.watermark = ts
            if ts >= self._next_ttl_sweep:
                self._sweep_ttl(ts)
        index = math.floor(ts / config.bucket)
        service = self._service(record.labels, index)
        if index > service.bucket:
            out.extend(self._close_until(service, index))
        elif index < service.bucket:
            # A late line counts toward the open bucket: closed buckets are already learned.
            self.stats.late += 1
        if ts > service.last_ts:
            service.last_ts = ts
        template_id, created = service.templates.mine(record.message)
        self.last_template = template_id
        rank = LEVEL_RANK.get(record.level, 2)
        template = service.by_id.get(template_id)
        if template is None:
            novel = created and service.buckets_closed >= config.warmup_buckets
            template = self._admit_template(service, template_id, rank, novel)
        else:
            service.by_id.move_to_end(template_id)
            if rank > template.level_rank:
                template.level_rank = rank
            if template.silent_since is not None:
                template.silent_since = None
                service.silent.pop(template_id, None)
        rate = template.rate
        rate.count += 1
        keep = config.examples
        if rate.count <= keep:
            _example(rate, record.message)
        if template.novel and template.level_rank >= self._min_rank:
            if ts - rate.last_report >= config.repeat_every:
                rate.last_report = ts
                out.append(self._anomaly(service, template, "new_template", ts, Signal.ERRORS, 1.0))
        elif rate.count >= config.burst_min_count and template.level_rank >= self._burst_rank:
            signal = Signal.ERRORS if template.level_rank >= WARNING_RANK else Signal.TRAFFIC
            score = self._crossed(rate, signal, ts)
            if score is not None:
                out.append(self._anomaly(service, template, "template_burst", ts, signal, score))
        if rank >= ERROR_RANK:
            errors = service.errors
            errors.count += 1
            if errors.count <= keep:
                _example(errors, record.message)
            if errors.count >= config.burst_min_count:
                score = self._crossed(errors, Signal.ERRORS, ts)
                if score is not None:
                    out.append(self._error_anomaly(service, template, ts, score))
        if out:
            self.stats.anomalies += len(out)
        return out

    def advance(self, now: float) -> list[Anomaly]:
        """Move event time to `now`: close every service's buckets that ended by then."""
        if now > self.watermark:
            self.watermark = now
            self._sweep_ttl(now)
        index = math.floor(now / self.config.bucket)
        out: list[Anomaly] = []
        for service in list(self._services.values()):
            # A bucket closes once time has passed its end, so `now` itself opens bucket `index`.
            if index > service.bucket:
                out.extend(self._close_until(service, index))
            if service.silent:
                out.extend(self._still_silent(service, now))
        self.stats.anomalies += len(out)
        return out

    # ----------------------------------------------------------------- state per key

    def _service(self, labels: tuple[tuple[str, str], ...], index: int) -> _Service:
        service_label = self.detect.service_label
        name = next((v for k, v in labels if k == service_label), "") or "unknown"
        service = self._services.get(name)
        if service is not None:
            self._services.move_to_end(name)
            return service
        scope_label = self.detect.scope_label
        scope = (dict(labels).get(scope_label) if scope_label else None) or "default"
        service = _Service(
            name=name,
            scope=scope,
            templates=TemplateSet(self._miner_config),
            errors=_Rate(self._factory(Signal.ERRORS)),
            bucket=index,
        )
        self._services[name] = service
        while len(self._services) > self.config.max_services:
            self._services.popitem(last=False)
            self.stats.evicted["lru"] += 1
        return service

    def _admit_template(
        self, service: _Service, template_id: int, rank: int, novel: bool
    ) -> _Template:
        # Upward only whatever the level: an open bucket's partial count is no evidence of a drop.
        template = _Template(template_id, _Rate(self._factory(Signal.ERRORS)), rank, novel)
        service.by_id[template_id] = template
        while len(service.by_id) > self.config.max_templates_per_service:
            service.by_id.popitem(last=False)
            self.stats.evicted["templates"] += 1
        return template

    def _sweep_ttl(self, now: float) -> None:
        if now < self._next_ttl_sweep:
            return
        self._next_ttl_sweep = now + min(self.config.service_ttl, 60.0)
        horizon = now - self.config.service_ttl
        while self._services:
            name, service = next(iter(self._services.items()))
            if service.last_ts >= horizon:
                break
            del self._services[name]
            self.stats.evicted["ttl"] += 1

    # ----------------------------------------------------------------- scoring

    def _crossed(self, rate: _Rate, signal: Signal, ts: float) -> float | None:
        """The score when the open bucket's count just crossed its threshold and may report."""
        threshold = self.detect.thresholds[signal]
        if rate.alarm_at is None:
            rate.alarm_at = _alarm_count(rate.detector, threshold, self.config.burst_min_count)
        if rate.count < rate.alarm_at or ts - rate.last_report < self.config.repeat_every:
            return None
        rate.last_report = ts
        return rate.detector.score_one(float(rate.count))

    def _close_until(self, service: _Service, index: int) -> list[Anomaly]:
        """Close the service's buckets before `index`: learn their counts, look for silences."""
        out: list[Anomaly] = []
        gap = index - service.bucket
        # After a long gap, only the last buckets matter for silence and learning; the rest
        # are all zero and would cost time per template for nothing.
        steps = min(gap, self.config.silence_window + 1)
        skipped = gap - steps
        if skipped:
            for template in service.by_id.values():
                # Beyond the window the history is all zeros; never shift by a huge gap.
                shift = min(skipped, self.config.silence_window)
                template.presence = (template.presence << shift) & self._history_mask
        service.bucket = index - steps
        service.buckets_closed += skipped
        for _ in range(steps):
            end = (service.bucket + 1) * self.config.bucket
            for template in service.by_id.values():
                silent = self._close_template(service, template, end)
                if silent is not None:
                    out.append(silent)
            _learn(service.errors)
            service.bucket += 1
            service.buckets_closed += 1
        return out

    def _close_template(self, service: _Service, template: _Template, end: float) -> Anomaly | None:
        rate = template.rate
        present = rate.count > 0
        _learn(rate)
        template.presence = ((template.presence << 1) | present) & self._history_mask
        template.buckets_seen += 1
        template.buckets_present += present
        if template.novel and template.buckets_seen >= self.config.warmup_buckets:
            template.novel = False
        if present:
            if template.silent_since is not None:
                template.silent_since = None
                service.silent.pop(template.id, None)
            return None
        after = self.config.silence_after
        window = self.config.silence_window
        if template.silent_since is not None or template.buckets_seen < window:
            return None
        if template.presence & ((1 << after) - 1):
            return None
        history = (template.presence >> after).bit_count()
        if history < STEADY_SHARE * (window - after):
            return None
        if not _steady_since_seen(template, after):
            return None
        template.silent_since = end
        rate.last_report = end
        service.silent[template.id] = None
        anomaly = self._anomaly(service, template, "template_silent", end, Signal.TRAFFIC, 1.0)
        anomaly.detail["present_buckets_before"] = history
        return anomaly

    def _still_silent(self, service: _Service, now: float) -> list[Anomaly]:
        """Re-report silent templates every `repeat_every`, so a stopped heartbeat can page.

        After `silence_window` buckets of silence it is the new normal and is let go.
        """
        out: list[Anomaly] = []
        give_up = self.config.silence_window * self.config.bucket
        for template_id in list(service.silent):
            template = service.by_id.get(template_id)
            if template is None or template.silent_since is None:
                del service.silent[template_id]
                continue
            if now - template.silent_since > give_up:
                template.silent_since = None
                del service.silent[template_id]
                continue
            rate = template.rate
            if now - rate.last_report >= self.config.repeat_every:
                rate.last_report = now
                out.append(
                    self._anomaly(service, template, "template_silent", now, Signal.TRAFFIC, 1.0)
                )
        return out

    # ----------------------------------------------------------------- anomalies

    def _series(self, service: _Service, name: str, template: _Template | None) -> SeriesKey:
        labels = {self.detect.service_label: service.name}
        if template is not None:
            labels["template"] = str(template.id)
        if self.detect.scope_label and service.scope != "default":
            labels[self.detect.scope_label] = service.scope
        return SeriesKey.of(name, labels)

    def _anomaly(
        self,
        service: _Service,
        template: _Template,
        kind: str,
        ts: float,
        signal: Signal,
        score: float,
    ) -> Anomaly:
        rate = template.rate
        return Anomaly(
            ts=ts,
            series=self._series(service, TEMPLATE_SERIES, template),
            service=service.name,
            signal=signal,
            value=float(rate.count),
            expected=rate.detector.expected,
            score=score,
            threshold=self.detect.thresholds[signal],
            scope=service.scope,
            detail=self._detail(service, template, kind, rate),
        )

    def _error_anomaly(
        self, service: _Service, template: _Template, ts: float, score: float
    ) -> Anomaly:
        errors = service.errors
        detail = self._detail(service, template, "error_rate", errors)
        return Anomaly(
            ts=ts,
            series=self._series(service, ERROR_SERIES, None),
            service=service.name,
            signal=Signal.ERRORS,
            value=float(errors.count),
            expected=errors.detector.expected,
            score=score,
            threshold=self.detect.thresholds[Signal.ERRORS],
            scope=service.scope,
            detail=detail,
        )

    def _detail(
        self, service: _Service, template: _Template, kind: str, rate: _Rate
    ) -> dict[str, Any]:
        level = next(
            (name for name, rank in LEVEL_RANK.items() if rank == template.level_rank), "info"
        )
        return {
            "source": "logs",
            "kind": kind,
            "template_id": str(template.id),
            "template": redact_secrets(service.templates.template(template.id)),
            "level": level,
            "examples": [redact_secrets(line) for line in rate.examples],
            "count_during": rate.count,
            "baseline_per_bucket": round(rate.detector.expected, 3),
            "bucket_s": self.config.bucket,
        }

    # ----------------------------------------------------------------- checkpoints

    def snapshot(self) -> dict[str, bytes]:
        """The whole state as state records (`pipeline.codec`), by item name: the stage's own
        (`LOG_STAGE_RECORD`) and one per service (`LOG_SERVICE_PREFIX` + name), so no record
        holds more than one service. A service whose record would be too large is left out
        and raised about after the others are made (`RecordRejected`, via `rejected`)."""
        out = {
            LOG_STAGE_RECORD: encode(
                "log_stage", SNAPSHOT_VERSION, {"watermark": pack_float(self.watermark)}
            )
        }
        self.rejected = []
        for service in self._services.values():
            try:
                out[LOG_SERVICE_PREFIX + service.name] = encode(
                    "log_service", SNAPSHOT_VERSION, _service_fields(service)
                )
            except RecordRejected as exc:
                self.rejected.append(exc)
        return out

    def restore(
        self,
        records: Mapping[str, bytes],
        on_reject: Callable[[RecordRejected], None] | None = None,
    ) -> int:
        """Replace the whole state with `snapshot()` records; a record that does not decode is
        skipped and reported to `on_reject` (its service starts afresh). Returns the services
        restored."""
        self._services.clear()
        self.watermark = -math.inf
        restored = 0
        for item, blob in records.items():
            try:
                if item == LOG_STAGE_RECORD:
                    body = decode(blob, "log_stage", SNAPSHOT_VERSION)
                    with reading("log_stage"):
                        self.watermark = unpack_float(body["watermark"])
                    continue
                body = decode(blob, "log_service", SNAPSHOT_VERSION)
                with reading("log_service"):
                    service = self._service_from(body)
            except RecordRejected as exc:
                if on_reject is not None:
                    on_reject(exc)
                continue
            self._services[service.name] = service
            restored += 1
        return restored

    def _service_from(self, data: dict[str, Any]) -> _Service:
        template_set = TemplateSet(self._miner_config)
        template_set.restore(data["drain"])
        service = _Service(
            unpack_str(data["name"]),
            unpack_str(data["scope"]),
            template_set,
            _rate_from(data["errors"]),
            unpack_int(data["bucket"]),
        )
        for item in data["templates"]:
            template = _Template(
                id=unpack_int(item["id"]),
                rate=_rate_from(item["rate"]),
                level_rank=unpack_int(item["level_rank"]),
                novel=unpack_bool(item["novel"]),
                buckets_seen=unpack_int(item["buckets_seen"]),
                presence=int(unpack_str(item["presence"]), 16),
                silent_since=_optional_float(item["silent_since"]),
                buckets_present=unpack_int(item["buckets_present"]),
            )
            service.by_id[template.id] = template
        service.silent = dict.fromkeys(unpack_int(i) for i in data["silent"])
        service.buckets_closed = unpack_int(data["buckets_closed"])
        service.last_ts = unpack_float(data["last_ts"])
        return service

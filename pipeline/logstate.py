"""The log stage's state per service and template, its record fields, and its counting helpers."""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from detectors.golden import GoldenSignalDetector
from pipeline.codec import pack_float, unpack_float, unpack_int, unpack_str
from pipeline.logmask import _REDACT_SPAN
from pipeline.logtemplates import TemplateSet
from pipeline.model import Signal

# A template counts as steady when present in at least this share of its history buckets.
STEADY_SHARE: Final = 0.8
# ... and when, at its share of buckets present since first seen, a gap of `silence_after`
# buckets would come by chance at most this often: an intermittent template that happened to
# fill the window is not a heartbeat.
SILENCE_CHANCE: Final = 0.01

#: Severity order of the levels ingest accepts; unknown levels rank as info.
LEVEL_RANK: Final[dict[str, int]] = {
    "trace": 0,
    "debug": 1,
    "info": 2,
    "notice": 3,
    "warn": 4,
    "warning": 4,
    "error": 5,
    "err": 5,
    "critical": 6,
    "crit": 6,
    "fatal": 6,
    "alert": 7,
    "emerg": 8,
    "emergency": 8,
}
ERROR_RANK: Final = LEVEL_RANK["error"]
WARNING_RANK: Final = LEVEL_RANK["warning"]


DetectorFactory = Callable[[Signal], GoldenSignalDetector]


@dataclass(slots=True)
class _Rate:
    """One counted series (a template, or a service's error lines): its model and open bucket."""

    detector: GoldenSignalDetector
    count: int = 0
    alarm_at: float | None = None
    last_report: float = -math.inf
    examples: deque[str] = field(default_factory=deque)


@dataclass(slots=True)
class _Template:
    """What a service keeps per template."""

    id: int
    rate: _Rate
    level_rank: int
    novel: bool
    buckets_seen: int = 0
    presence: int = 0  # bit i set: present in the i-th most recently closed bucket
    silent_since: float | None = None  # when its silence was first reported
    buckets_present: int = 0  # closed buckets it was present in, since first seen


@dataclass(slots=True)
class _Service:
    """What the stage keeps per service: its templates and its error-line rate."""

    name: str
    scope: str
    templates: TemplateSet
    errors: _Rate
    bucket: int
    by_id: OrderedDict[int, _Template] = field(default_factory=OrderedDict)
    silent: dict[int, None] = field(default_factory=dict)  # ids of templates reported silent
    buckets_closed: int = 0
    last_ts: float = -math.inf


@dataclass(slots=True)
class LogStats:
    """Counters the shell exports on /metrics."""

    records: int = 0
    anomalies: int = 0
    late: int = 0
    evicted: dict[str, int] = field(default_factory=lambda: {"ttl": 0, "lru": 0, "templates": 0})


def _optional_float(value: Any) -> float | None:
    return None if value is None else unpack_float(value)


def _rate_fields(rate: _Rate) -> dict[str, Any]:
    settings, numbers, warm = rate.detector.export_state()
    return {
        "settings": settings,
        "numbers": [pack_float(x) for x in numbers],
        "warm": None if warm is None else [pack_float(x) for x in warm],
        "count": rate.count,
        "alarm_at": None if rate.alarm_at is None else pack_float(rate.alarm_at),
        "last_report": pack_float(rate.last_report),
        # Only this much of an example is ever read (`redact_secrets`): a long line is cut.
        "examples": [line[:_REDACT_SPAN] for line in rate.examples],
    }


def _rate_from(data: dict[str, Any]) -> _Rate:
    settings = data["settings"]
    if not isinstance(settings, dict) or not all(
        isinstance(v, (str, int, float, type(None))) for v in settings.values()
    ):
        raise ValueError("bad detector settings")
    warm = data["warm"]
    detector = GoldenSignalDetector.from_state(
        settings,
        [unpack_float(x) for x in data["numbers"]],
        None if warm is None else [unpack_float(x) for x in warm],
    )
    return _Rate(
        detector=detector,
        count=unpack_int(data["count"]),
        alarm_at=_optional_float(data["alarm_at"]),
        last_report=unpack_float(data["last_report"]),
        examples=deque(unpack_str(line) for line in data["examples"]),
    )


def _service_fields(service: _Service) -> dict[str, Any]:
    return {
        "name": service.name,
        "scope": service.scope,
        "drain": service.templates.snapshot(),
        "errors": _rate_fields(service.errors),
        "bucket": service.bucket,
        "templates": [
            {
                "id": t.id,
                "rate": _rate_fields(t.rate),
                "level_rank": t.level_rank,
                "novel": t.novel,
                "buckets_seen": t.buckets_seen,
                # A bit set as wide as `silence_window`: hex, as JSON integers stop at 64 bits.
                "presence": format(t.presence, "x"),
                "silent_since": _optional_float_packed(t.silent_since),
                "buckets_present": t.buckets_present,
            }
            for t in service.by_id.values()
        ],
        "silent": list(service.silent),
        "buckets_closed": service.buckets_closed,
        "last_ts": pack_float(service.last_ts),
    }


def _optional_float_packed(value: float | None) -> float | str | None:
    return None if value is None else pack_float(value)


def _steady_since_seen(template: _Template, after: int) -> bool:
    """Whether the template's last `after` empty buckets are unlikely to be chance.

    With share `q` of the buckets before them present, a gap that long comes by chance about
    `(1 - q) ** after` of the time; a heartbeat has `q` near 1, a line that comes now and then
    a lot less.

    >>> t = _Template(1, _Rate(None), 2, False, buckets_seen=12, buckets_present=10)
    >>> _steady_since_seen(t, 2)
    True
    >>> t.buckets_present = 8
    >>> _steady_since_seen(t, 2)
    False
    """
    before = template.buckets_seen - after
    if before <= 0:
        return False
    absent = 1.0 - min(before, template.buckets_present) / before
    return bool(absent**after <= SILENCE_CHANCE)


def _example(rate: _Rate, line: str) -> None:
    """Keep the first lines of the open bucket (raw; redacted when shown): a bucket's first
    line replaces the previous bucket's, so a silence still shows the last lines seen."""
    if rate.count == 1:
        rate.examples.clear()
    rate.examples.append(line)


def _learn(rate: _Rate) -> None:
    rate.detector.learn_one(float(rate.count))
    rate.count = 0
    rate.alarm_at = None


def _alarm_count(detector: GoldenSignalDetector, threshold: float, floor: int) -> float:
    """The smallest count of at least `floor` that scores at or over `threshold` (inf: none).

    Scores only grow with the count above the baseline, so a doubling then a bisection finds it
    in a few dozen scorings, once per bucket, instead of one scoring per line.
    """
    if detector.n_seen < detector.warmup:
        return math.inf
    low = floor
    if detector.score_one(float(low)) >= threshold:
        return float(low)
    high = low * 2
    while detector.score_one(float(high)) < threshold:
        low = high
        high *= 2
        if high > 1 << 40:
            return math.inf
    while high - low > 1:
        middle = (low + high) // 2
        if detector.score_one(float(middle)) >= threshold:
            high = middle
        else:
            low = middle
    return float(high)

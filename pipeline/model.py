"""Data shapes that flow between stages: frozen, slotted, serialized only at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final, Literal

import orjson

from pipeline.codec import MAX_RECORD_BYTES, unpack_float, unpack_str

#: The series name of the traffic anomaly raised for a service that stopped reporting.
ABSENCE_SERIES: Final = "quietpager_series_absent"


class Signal(StrEnum):
    """The four golden signals, plus `generic` for series no rule claims."""

    LATENCY = "latency"
    TRAFFIC = "traffic"
    ERRORS = "errors"
    SATURATION = "saturation"
    GENERIC = "generic"


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """Identity of one time series: metric name plus its sorted labels."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    # Keys are looked up several times per point; hashing the label tuples once pays.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.name, self.labels)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[SeriesKey], tuple[str, tuple[tuple[str, str], ...]]]:
        # String hashes differ between processes: rebuild (and rehash) on unpickling.
        return (SeriesKey, (self.name, self.labels))

    @classmethod
    def of(cls, name: str, labels: dict[str, str] | None = None) -> SeriesKey:
        """Build a key from a label mapping in any order.

        >>> SeriesKey.of("up", {"b": "2", "a": "1"}).id
        'up{a="1",b="2"}'
        """
        return cls(name, tuple(sorted((labels or {}).items())))

    @property
    def id(self) -> str:
        """The Prometheus-style text form, stable across runs and processes."""
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}}"

    def label(self, name: str, default: str = "") -> str:
        """The value of one label, or `default`."""
        for key, value in self.labels:
            if key == name:
                return value
        return default

    def label_map(self) -> dict[str, str]:
        """The labels as a plain dict."""
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One observation of one series at one event time (UNIX seconds)."""

    series: SeriesKey
    value: float
    ts: float
    signal: Signal | None = None


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log line with its labels, at one event time (UNIX seconds)."""

    ts: float
    level: str
    message: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A scored observation that crossed its signal's threshold; the unit correlation folds."""

    ts: float
    series: SeriesKey
    service: str
    signal: Signal
    value: float
    expected: float
    score: float
    threshold: float
    scope: str = "default"
    #: Context for the page (e.g. a log template and example lines); JSON-able, not identity.
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape written to `quietpager.anomalies` (`detail` only when there is one)."""
        out: dict[str, Any] = {
            "kind": "anomaly",
            "ts": self.ts,
            "name": self.series.name,
            "labels": self.series.label_map(),
            "service": self.service,
            "signal": self.signal.value,
            "value": self.value,
            "expected": self.expected,
            "score": self.score,
            "threshold": self.threshold,
            "scope": self.scope,
        }
        if self.detail:
            out["detail"] = self.detail
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Anomaly:
        """Inverse of `to_dict`; raises KeyError/ValueError/TypeError on a bad shape."""
        return cls(
            ts=float(data["ts"]),
            series=SeriesKey.of(
                str(data["name"]), {str(k): str(v) for k, v in data["labels"].items()}
            ),
            service=str(data["service"]),
            signal=Signal(data["signal"]),
            value=float(data["value"]),
            expected=float(data["expected"]),
            score=float(data["score"]),
            threshold=float(data["threshold"]),
            scope=str(data.get("scope", "default")),
            detail=dict(data.get("detail") or {}),
        )


@dataclass(frozen=True, slots=True)
class Tick:
    """Event-time progress of an upstream stage, so quiet streams still move time forward."""

    ts: float
    scope: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape written to `quietpager.anomalies` between anomalies."""
        return {"kind": "tick", "ts": self.ts, "scope": self.scope}


PageAction = Literal["trigger", "resolve"]
#: The schema of an outbox record (`Page.to_dict`); a record without one is of the first
#: schema, written before the field.
PAGE_SCHEMA: Final = 1
#: What a page's details keep of each list and text when its record would be too large.
_TRIM_ITEMS: Final = 20
_TRIM_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class Page:
    """A decision to notify: trigger or resolve one incident, receiver-neutral."""

    action: PageAction
    dedup_key: str
    at: float
    summary: str
    severity: str
    source: str
    root_service: str
    scope: str
    signals: tuple[str, ...]
    receivers: tuple[str, ...]
    custom_details: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape written to the `quietpager.pages` outbox topic."""
        return {
            "v": PAGE_SCHEMA,
            "action": self.action,
            "dedup_key": self.dedup_key,
            "at": self.at,
            "summary": self.summary,
            "severity": self.severity,
            "source": self.source,
            "root_service": self.root_service,
            "scope": self.scope,
            "signals": list(self.signals),
            "receivers": list(self.receivers),
            "custom_details": self.custom_details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Page:
        """Inverse of `to_dict`; raises ValueError, KeyError or TypeError on a bad record
        (another schema, a field of the wrong type)."""
        version = data.get("v", PAGE_SCHEMA)
        if version != PAGE_SCHEMA:
            raise ValueError(f"page schema {version!r}, not {PAGE_SCHEMA}")
        action = data["action"]
        if action not in ("trigger", "resolve"):
            raise ValueError(f"bad page action {action!r}")
        details = data.get("custom_details") or {}
        if not isinstance(details, dict):
            raise TypeError("custom_details must be an object")
        return cls(
            action=action,
            dedup_key=unpack_str(data["dedup_key"]),
            at=unpack_float(data["at"]),
            summary=unpack_str(data["summary"]),
            severity=unpack_str(data["severity"]),
            source=unpack_str(data["source"]),
            root_service=unpack_str(data["root_service"]),
            scope=unpack_str(data["scope"]),
            signals=tuple(unpack_str(s) for s in _list(data["signals"])),
            receivers=tuple(unpack_str(r) for r in _list(data["receivers"])),
            custom_details=dict(details),
        )

    def record(self) -> bytes:
        """The outbox record of this page, never over `MAX_RECORD_BYTES`: a page whose details
        (services, series, held incidents) would make it larger keeps the first items of each
        list and the start of each text, marked `truncated`, so it is still delivered."""
        blob = orjson.dumps(self.to_dict())
        if len(blob) <= MAX_RECORD_BYTES:
            return blob
        details = {k: _trim(v) for k, v in self.custom_details.items()} | {"truncated": True}
        page = replace(self, summary=self.summary[:_TRIM_CHARS], custom_details=details)
        blob = orjson.dumps(page.to_dict())
        if len(blob) <= MAX_RECORD_BYTES:
            return blob
        # Still too large (a huge key or scope): only what identifies the incident is kept.
        page = replace(
            page,
            root_service=page.root_service[:_TRIM_CHARS],
            scope=page.scope[:_TRIM_CHARS],
            signals=tuple(s[:_TRIM_CHARS] for s in page.signals[:_TRIM_ITEMS]),
            custom_details={"incident_id": self.dedup_key[:_TRIM_CHARS], "truncated": True},
        )
        return orjson.dumps(page.to_dict())


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"not a list: {value!r}")
    return value


def _trim(value: Any) -> Any:
    """A page detail cut to `_TRIM_ITEMS` items per list or object, `_TRIM_CHARS` per text."""
    if isinstance(value, str):
        return value[:_TRIM_CHARS]
    if isinstance(value, list):
        return [_trim(v) for v in value[:_TRIM_ITEMS]]
    if isinstance(value, dict):
        return {str(k)[:_TRIM_CHARS]: _trim(v) for k, v in list(value.items())[:_TRIM_ITEMS]}
    return value

"""Data shapes that flow between stages: frozen, slotted, serialized only at the edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

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
        """Inverse of `to_dict`."""
        action = data["action"]
        if action not in ("trigger", "resolve"):
            raise ValueError(f"bad page action {action!r}")
        return cls(
            action=action,
            dedup_key=str(data["dedup_key"]),
            at=float(data["at"]),
            summary=str(data["summary"]),
            severity=str(data["severity"]),
            source=str(data["source"]),
            root_service=str(data["root_service"]),
            scope=str(data["scope"]),
            signals=tuple(str(s) for s in data["signals"]),
            receivers=tuple(str(r) for r in data["receivers"]),
            custom_details=dict(data.get("custom_details") or {}),
        )

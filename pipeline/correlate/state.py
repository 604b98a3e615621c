"""The correlator's state: one open incident, what each of its series contributed, and its
snapshot form (read back by `incident_from`, checked alone by `check_incident`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.model import Anomaly, SeriesKey


@dataclass(frozen=True, slots=True)
class IncidentView:
    """A read-only look at one open incident, for status pages, gauges and tests."""

    id: str
    scope: str
    onset: float
    last_ts: float
    root_service: str
    services: tuple[str, ...]
    alerts: int
    paged: bool


@dataclass(slots=True)
class SeriesState:
    """What one series contributed to an incident: its peak and how often it fired."""

    series: SeriesKey
    service: str
    signal: str
    peak_score: float
    value: float
    expected: float
    count: int
    streak_start: float
    last_ts: float

    @property
    def streak(self) -> float:
        """How long this series has been anomalous without a gap over `hold_max_gap`."""
        return self.last_ts - self.streak_start


@dataclass(slots=True)
class Incident:
    """Mutable state of one open incident."""

    id: str
    scope: str
    seq: int
    onset: float
    first_service: str
    last_ts: float
    root: str
    services: dict[str, float] = field(default_factory=dict)  # service -> first anomaly time
    series: dict[str, SeriesState] = field(default_factory=dict)  # by series id
    alerts: int = 0
    folded_by_reason: dict[str, int] = field(default_factory=dict)
    silenced: int = 0
    paged_at: float | None = None
    receivers: tuple[str, ...] = ()  # where the trigger went; the resolve goes there too
    # Services that joined only for a traffic change their callers caused (see `grouping`).
    starved: set[str] = field(default_factory=set)
    storm_held: bool = False
    longest_streak: float = 0.0
    # series id -> the log context of its strongest anomaly (template, examples, counts).
    log_signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Derived from `services` and the topology (not snapshotted): `Topology.root_causes`
    # of the services, kept up to date as services join so a big incident stays cheap.
    root_candidates: set[str] = field(default_factory=set)
    # Also derived: each service's longest streak and latest anomaly time; a service whose
    # streak reached `hold_for` is persistently anomalous (evidence for being the root).
    service_streak: dict[str, float] = field(default_factory=dict)
    service_last: dict[str, float] = field(default_factory=dict)


def incident_id(scope: str, service: str, onset: float) -> str:
    """The dedup_key of an incident: stable for its life, the same on every replay.

    >>> incident_id("default", "payments-db", 1795683600.0)
    'qp-45e6928257182e48'
    """
    digest = hashlib.sha256(f"{scope}|{service}|{onset:.3f}".encode()).hexdigest()
    return "qp-" + digest[:16]


def incident_record(inc: Incident) -> dict[str, Any]:
    """One incident's snapshot form (as in `Correlator.snapshot()["incidents"]`)."""
    return {
        "id": inc.id,
        "scope": inc.scope,
        "seq": inc.seq,
        "onset": inc.onset,
        "first_service": inc.first_service,
        "last_ts": inc.last_ts,
        "root": inc.root,
        "services": [[name, ts] for name, ts in inc.services.items()],
        "series": [
            {
                "name": state.series.name,
                "labels": [list(pair) for pair in state.series.labels],
                "service": state.service,
                "signal": state.signal,
                "peak_score": state.peak_score,
                "value": state.value,
                "expected": state.expected,
                "count": state.count,
                "streak_start": state.streak_start,
                "last_ts": state.last_ts,
            }
            for state in inc.series.values()
        ],
        "alerts": inc.alerts,
        "folded_by_reason": dict(inc.folded_by_reason),
        "silenced": inc.silenced,
        "paged_at": inc.paged_at,
        "receivers": list(inc.receivers),
        "starved": sorted(inc.starved),
        "storm_held": inc.storm_held,
        "longest_streak": inc.longest_streak,
        "log_signals": inc.log_signals,
    }


def check_incident(data: Mapping[str, Any]) -> str:
    """The id of an incident's snapshot form (as in `snapshot()["incidents"]`); raises
    ValueError when `restore` could not read it, so one bad incident can be set aside."""
    try:
        return incident_from(data).id
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"bad incident: {exc!r}") from None


def incident_from(data: Mapping[str, Any]) -> Incident:
    """One incident from its snapshot form."""
    series: dict[str, SeriesState] = {}
    for item in data["series"]:
        key = SeriesKey(str(item["name"]), tuple((str(k), str(v)) for k, v in item["labels"]))
        series[key.id] = SeriesState(
            series=key,
            service=str(item["service"]),
            signal=str(item["signal"]),
            peak_score=float(item["peak_score"]),
            value=float(item["value"]),
            expected=float(item["expected"]),
            count=int(item["count"]),
            streak_start=float(item["streak_start"]),
            last_ts=float(item["last_ts"]),
        )
    paged_at = data["paged_at"]
    return Incident(
        id=str(data["id"]),
        scope=str(data["scope"]),
        seq=int(data["seq"]),
        onset=float(data["onset"]),
        first_service=str(data["first_service"]),
        last_ts=float(data["last_ts"]),
        root=str(data["root"]),
        services={str(name): float(ts) for name, ts in data["services"]},
        series=series,
        alerts=int(data["alerts"]),
        folded_by_reason={str(k): int(v) for k, v in data["folded_by_reason"].items()},
        silenced=int(data["silenced"]),
        paged_at=None if paged_at is None else float(paged_at),
        receivers=tuple(str(r) for r in data.get("receivers", ())),
        starved={str(name) for name in data.get("starved", ())},
        storm_held=bool(data.get("storm_held", False)),
        longest_streak=float(data["longest_streak"]),
        log_signals={str(k): dict(v) for k, v in (data.get("log_signals") or {}).items()},
    )


def keep_log_signal(signals: dict[str, dict[str, Any]], series_id: str, anomaly: Anomaly) -> None:
    """Remember a log anomaly's context for the page: its kind and baseline when first seen
    (before), the peak count in a bucket (during), the latest template text and examples."""
    held = signals.get(series_id)
    if held is None:
        signals[series_id] = {
            "series": series_id,
            "service": anomaly.service,
            "first_ts": anomaly.ts,
            "peak_score": anomaly.score,
            **anomaly.detail,
        }
        return
    held["peak_score"] = max(float(held["peak_score"]), anomaly.score)
    during = anomaly.detail.get("count_during")
    if isinstance(during, int | float) and during > held.get("count_during", -1):
        held["count_during"] = during
    # The template text may have generalized since; the examples are the latest lines.
    for key in ("template", "examples"):
        if key in anomaly.detail:
            held[key] = anomaly.detail[key]

"""Page rendering: an incident's trigger or resolve page and the details of a decision, as pure
functions of the incident and the route it takes.

The summary names the incident's most upstream service (`Topology.entry_points`), where users
feel it, then the suspected root; `custom_details` explains the page (DESIGN.md, Output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pipeline.correlate.decisions import SILENCED
from pipeline.correlate.rootcause import symptoms
from pipeline.correlate.state import Incident
from pipeline.correlate.topology import Topology
from pipeline.model import Anomaly, Page, PageAction
from pipeline.timeutil import format_timestamp

#: At most this many series, strongest first, ride along in a page.
TOP_SERIES: Final = 10
#: At most this many log signals (template, example lines, counts) ride along in a page.
TOP_LOG_SIGNALS: Final = 5


def render_page(
    incident: Incident,
    action: PageAction,
    now: float,
    *,
    topology: Topology,
    receivers: tuple[str, ...],
    low_urgency: bool,
    severity: str,
    source: str,
    hold_for: float,
    storm_digest: Sequence[Mapping[str, str]] = (),
    cause: str | None = None,
) -> Page:
    """The page for `incident` to `receivers`; a resolve carries the same dedup_key and final
    counts. A low-urgency page has severity `warning`; `storm_digest` lists the incidents the
    storm cap holds back."""
    signals = sorted({state.signal for state in incident.series.values()})
    services = sorted(incident.services)
    headline = min(
        topology.entry_points(incident.services),
        key=lambda s: (incident.services[s], s),
    )
    summary = (
        f"{headline}: {', '.join(signals)} anomalous; suspected root cause {incident.root} "
        f"({_plural(len(services), 'service')}, {_plural(incident.alerts, 'alert')})"
    )
    top = sorted(incident.series.items(), key=lambda item: (-item[1].peak_score, item[0]))
    onset = format_timestamp(incident.onset)
    details: dict[str, Any] = {
        "incident_id": incident.id,
        "onset": onset,
        "started_at": onset,
        "suspected_root_cause": incident.root,
        "services": services,
        "signals": signals,
        "series": [
            {
                "series": series_id,
                "service": state.service,
                "signal": state.signal,
                "peak_score": state.peak_score,
                "value": state.value,
                "expected": state.expected,
            }
            for series_id, state in top[:TOP_SERIES]
        ],
        "series_total": len(incident.series),
        "alerts_folded": incident.alerts,
        "folded_by_reason": dict(sorted(incident.folded_by_reason.items())),
        "symptoms": symptoms(incident.services, incident.root, topology),
        "suppressed": {SILENCED: incident.silenced},
        "hold_for_s": hold_for,
    }
    if incident.log_signals:
        details["log_signals"] = top_log_signals(incident.log_signals)
    if low_urgency:
        severity = "warning"
        details["urgency"] = "low"
    if storm_digest:
        details["storm_digest"] = [dict(held) for held in storm_digest]
    if action == "resolve":
        summary = f"resolved: {summary}"
        details |= {
            "duration_s": incident.last_ts - incident.onset,
            "last_anomaly": format_timestamp(incident.last_ts),
            "closed_by": cause or "quiet",
        }
    return Page(
        action=action,
        dedup_key=incident.id,
        at=now,
        summary=summary,
        severity=severity,
        source=source,
        root_service=incident.root,
        scope=incident.scope,
        signals=tuple(signals),
        receivers=receivers,
        custom_details=details,
    )


def top_log_signals(signals: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The log signals a page shows: strongest first, then earliest, then by series."""
    ranked = sorted(
        signals.values(), key=lambda s: (-float(s["peak_score"]), float(s["first_ts"]), s["series"])
    )
    return [dict(s) for s in ranked[:TOP_LOG_SIGNALS]]


def anomaly_detail(anomaly: Anomaly) -> dict[str, Any]:
    """The detail of a decision about one anomaly."""
    return {
        "series": anomaly.series.id,
        "service": anomaly.service,
        "signal": anomaly.signal.value,
        "score": anomaly.score,
        "ts": anomaly.ts,
    }


def page_detail(incident: Incident) -> dict[str, Any]:
    """The detail of a decision about one incident (a page, a close, a held trigger)."""
    return {
        "root": incident.root,
        "services": len(incident.services),
        "alerts": incident.alerts,
        "onset": incident.onset,
    }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}s" if count != 1 else f"{count} {noun}"

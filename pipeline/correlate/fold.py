"""Folding: what one more anomaly changes in the incident it joins.

It counts the alert, keeps each series' streak and peak, each service's first sighting, longest
streak and latest anomaly (the root-cause evidence), the log context, and moves the suspected
root when the evidence does. Once an incident paged it stays open on recurring evidence only.
"""

from __future__ import annotations

from pipeline.config import CorrelateConfig
from pipeline.correlate.rootcause import incident_root, with_service
from pipeline.correlate.state import Incident, SeriesState, keep_log_signal
from pipeline.correlate.topology import Topology
from pipeline.model import Anomaly


class Folder:
    """Folds anomalies into incidents under one config and topology."""

    def __init__(self, config: CorrelateConfig, topology: Topology) -> None:
        self.config = config
        self.topology = topology

    def fold(self, incident: Incident, anomaly: Anomaly, flapping: bool = False) -> bool:
        """Record `anomaly` in `incident`: alert count, series peak, services and suspected
        root. Returns whether its service is new to the incident (to index it there)."""
        incident.alerts += 1
        seen = incident.service_last.get(anomaly.service, anomaly.ts)
        incident.service_last[anomaly.service] = max(seen, anomaly.ts)
        series_id = anomaly.series.id
        state = incident.series.get(series_id)
        # Once paged, an incident stays open on recurring evidence only: a series' first
        # anomaly in it, or one after more than `resolve_after` of quiet, folds in but does not
        # keep it open. A big incident relates to most of the fleet, whose one-off noise would
        # otherwise keep it open for hours after the fault ended.
        recurring = state is not None and anomaly.ts - state.last_ts <= self.config.resolve_after
        if incident.paged_at is None or recurring:
            incident.last_ts = max(incident.last_ts, anomaly.ts)
        if state is None:
            incident.series[series_id] = SeriesState(
                series=anomaly.series,
                service=anomaly.service,
                signal=anomaly.signal.value,
                peak_score=anomaly.score,
                value=anomaly.value,
                expected=anomaly.expected,
                count=1,
                streak_start=anomaly.ts,
                last_ts=anomaly.ts,
            )
        else:
            self._fold_series(incident, state, anomaly, flapping)
        if anomaly.detail.get("source") == "logs":
            keep_log_signal(incident.log_signals, series_id, anomaly)
        first_seen = incident.services.get(anomaly.service)
        if first_seen is None:
            if incident.root not in self.topology.related_services(anomaly.service):
                incident.starved.add(anomaly.service)  # only its traffic could bring it in
            incident.root_candidates = with_service(
                incident.root_candidates, incident.services, anomaly.service, self.topology
            )
            incident.services[anomaly.service] = anomaly.ts
            incident.root = incident_root(incident, self.topology, self.config.hold_for)
            return True
        if anomaly.ts < first_seen:
            # A late anomaly can only move a service's first sighting earlier (root tie-break).
            incident.services[anomaly.service] = anomaly.ts
            incident.root = incident_root(incident, self.topology, self.config.hold_for)
        return False

    def _fold_series(
        self, incident: Incident, state: SeriesState, anomaly: Anomaly, flapping: bool
    ) -> None:
        """Fold another anomaly of a series the incident holds: its streak, peak and evidence."""
        state.count += 1
        if anomaly.ts - state.last_ts > self.config.hold_max_gap:
            state.streak_start = anomaly.ts
        state.last_ts = max(state.last_ts, anomaly.ts)
        if not flapping:  # a flapping series' streak never holds its incident to a page
            incident.longest_streak = max(incident.longest_streak, state.streak)
        before = incident.service_streak.get(state.service, 0.0)
        if state.streak > before:
            incident.service_streak[state.service] = state.streak
            hold = self.config.hold_for
            root_streak = min(incident.service_streak.get(incident.root, 0.0), hold)
            if state.service != incident.root and min(state.streak, hold) > root_streak:
                # It now has more evidence than the root: it may be the root.
                incident.root = incident_root(incident, self.topology, hold)
        if anomaly.score > state.peak_score:
            state.peak_score = anomaly.score
            state.value = anomaly.value
            state.expected = anomaly.expected

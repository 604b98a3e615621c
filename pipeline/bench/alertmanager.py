"""An Alertmanager-style baseline for the de-noising benchmark: grouping and timers, no topology.

Pure and synchronous, fed the same anomalies as the correlator. Each anomaly is an alert
(identity: its series) that fires until `resolve_timeout` passes without it firing again.
Alerts are grouped by (scope, service, alertname = signal). A new group notifies after
`group_wait`; then every `group_interval` it notifies again if an alert not yet notified is
firing, or if `repeat_interval` has passed since its last notification; when none of its
alerts fire any more it sends a resolve and is deleted, so the next alert starts a new group
(a new dedup key, as Alertmanager's PagerDuty integration keys by group). Silenced alerts
are dropped, as Alertmanager's silences would mute them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Literal

from pipeline.correlate.silence import Silencer, anomaly_labels
from pipeline.model import Anomaly

NotificationKind = Literal["first", "update", "repeat", "resolve"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook call the baseline would make; `first` is a new page (a new dedup key)."""

    at: float
    kind: NotificationKind
    group: str
    service: str
    signal: str


@dataclass(slots=True)
class _Group:
    key: str
    service: str
    signal: str
    created: int
    alerts: dict[str, float] = field(default_factory=dict)  # series id -> last fired
    notified: set[str] = field(default_factory=set)  # alerts firing at the last notification
    last_notified: float | None = None


class AlertmanagerBaseline:
    """Alertmanager's dispatcher, reduced to what decides how often a pager rings."""

    def __init__(
        self,
        silencer: Silencer | None = None,
        group_wait: float = 30.0,
        group_interval: float = 300.0,
        repeat_interval: float = 4 * 3600.0,
        resolve_timeout: float = 300.0,
    ) -> None:
        self.silencer = silencer or Silencer()
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.resolve_timeout = resolve_timeout
        self.silenced = 0
        self._groups: dict[str, _Group] = {}
        self._flushes: list[tuple[float, int, str]] = []  # (due, group generation, key)
        self._created = 0

    def observe(self, anomaly: Anomaly) -> list[Notification]:
        """Take one alert; returns the notifications that fell due up to its time."""
        out = self.advance(anomaly.ts)
        if self.silencer.mutes(anomaly_labels(anomaly), anomaly.ts) is not None:
            self.silenced += 1
            return out
        key = f"{anomaly.scope}|{anomaly.service}|{anomaly.signal.value}"
        group = self._groups.get(key)
        if group is None:
            self._created += 1
            group = _Group(key, anomaly.service, anomaly.signal.value, self._created)
            self._groups[key] = group
            heapq.heappush(self._flushes, (anomaly.ts + self.group_wait, group.created, key))
        series = anomaly.series.id
        group.alerts[series] = max(group.alerts.get(series, anomaly.ts), anomaly.ts)
        return out

    def advance(self, now: float) -> list[Notification]:
        """Run every group flush due at or before `now`, in time order."""
        out: list[Notification] = []
        while self._flushes and self._flushes[0][0] <= now:
            due, created, key = heapq.heappop(self._flushes)
            group = self._groups.get(key)
            if group is None or group.created != created:
                continue
            notification = self._flush(group, due)
            if notification is not None:
                out.append(notification)
            if key in self._groups:
                heapq.heappush(self._flushes, (due + self.group_interval, created, key))
        return out

    def _flush(self, group: _Group, now: float) -> Notification | None:
        firing = {s for s, last in group.alerts.items() if now - last < self.resolve_timeout}
        kind: NotificationKind | None = None
        if not firing:
            del self._groups[group.key]
            kind = "resolve" if group.last_notified is not None else None
        elif group.last_notified is None:
            kind = "first"
        elif not firing <= group.notified:
            kind = "update"
        elif now - group.last_notified >= self.repeat_interval:
            kind = "repeat"
        if kind is None:
            return None
        if kind != "resolve":
            group.notified = firing
            group.last_notified = now
        return Notification(now, kind, group.key, group.service, group.signal)

"""The open incidents, indexed for grouping: which one an anomaly joins, and which went quiet.

An anomaly joins an open incident of its scope when the incident's last anomaly is within
`group_window` of the anomaly's time and its service is in the incident or topology-related
(caller or callee, transitively) to the incident's suspected root, or, for a traffic anomaly
(drop or surge), when one of the service's direct callers is related to that root (its traffic
is its callers' doing). A service that joined only for such a traffic change (`starved`) is no
member for its other signals, and a service's absence (`quietpager_series_absent`) is never its
callers' doing. Among several, the ranking in `OpenIncidents.match` decides.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from pipeline.correlate.state import Incident
from pipeline.correlate.topology import Topology
from pipeline.model import ABSENCE_SERIES, Anomaly, Signal


class OpenIncidents:
    """The open incidents by id, by scope, by (scope, service) and by quiet time."""

    def __init__(self) -> None:
        self.by_id: dict[str, Incident] = {}
        # (scope, service) -> ids of open incidents holding that service, in opening order.
        self.by_service: dict[tuple[str, str], dict[str, None]] = {}
        # scope -> ids of its open incidents, for when a service's neighbourhood is larger.
        self.by_scope: dict[str, dict[str, None]] = {}
        # (last_ts, seq, id), lazily refreshed: an entry's last_ts may lag the incident's.
        self.quiet: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, incident: Incident) -> None:
        """Make an incident findable: by id, by scope, by each service, and by quiet time."""
        self.by_id[incident.id] = incident
        self.by_scope.setdefault(incident.scope, {})[incident.id] = None
        for service in incident.services:
            self.add_service(incident, service)
        heapq.heappush(self.quiet, (incident.last_ts, incident.seq, incident.id))

    def add_service(self, incident: Incident, service: str) -> None:
        """Make `incident` findable by a service that joined it."""
        self.by_service.setdefault((incident.scope, service), {})[incident.id] = None

    def remove(self, incident: Incident) -> None:
        """Drop `incident` from every index (its quiet entry goes stale and is skipped)."""
        del self.by_id[incident.id]
        scope_ids = self.by_scope[incident.scope]
        del scope_ids[incident.id]
        if not scope_ids:
            del self.by_scope[incident.scope]
        for service in incident.services:
            ids = self.by_service[(incident.scope, service)]
            del ids[incident.id]
            if not ids:
                del self.by_service[(incident.scope, service)]

    def pop_least_recent(self) -> Incident | None:
        """Pop the heap's first entry; refresh it if stale. Returns its incident when current."""
        last_ts, seq, key = heapq.heappop(self.quiet)
        incident = self.by_id.get(key)
        if incident is None or incident.seq != seq:
            return None  # closed already
        if incident.last_ts != last_ts:
            heapq.heappush(self.quiet, (incident.last_ts, seq, key))
            return None
        return incident

    def match(
        self, anomaly: Anomaly, topology: Topology, group_window: float, hold_for: float
    ) -> Incident | None:
        """The open incident this anomaly belongs to, or None to open a new one."""
        service = anomaly.service
        related = topology.related_services(service)
        in_scope = self.by_scope.get(anomaly.scope, {})
        callers = topology.dependents(service)
        # A service that stopped reporting is a fault of its own, not its callers' doing.
        absent = anomaly.series.name == ABSENCE_SERIES
        traffic = anomaly.signal is Signal.TRAFFIC and bool(callers) and not absent
        # A traffic change may also belong where one of its callers' roots is.
        neighbourhood = related
        if traffic:
            neighbourhood = neighbourhood.union(
                *(topology.related_services(caller) for caller in callers)
            )
        # Walk whichever is smaller: the neighbourhood or the scope's open incidents.
        if len(neighbourhood) <= len(in_scope):
            keys: Iterable[str] = dict.fromkeys(
                key
                for member in neighbourhood
                for key in self.by_service.get((anomaly.scope, member), ())
            )
        else:
            keys = in_scope
        best: Incident | None = None
        best_rank: tuple[bool, float, bool, float, int, float, int] | None = None
        series_id = anomaly.series.id
        for key in keys:
            incident = self.by_id[key]
            if abs(anomaly.ts - incident.last_ts) > group_window:
                continue
            if not _belongs(incident, service, related, traffic, topology):
                continue
            root = incident.root
            symptom = root == service or root in topology.transitive_dependencies(service)
            # A series stays in an incident that paged with it: moved elsewhere, it would leave
            # that incident quiet, and its resolve would go out while the fault goes on.
            # Then a root that has fired for `hold_for` beats a one-off (say, noise on a
            # dependency everything shares), then one the service depends on, then the
            # freshest root, then the larger incident, the most recent activity, the later one.
            rank = (
                incident.paged_at is not None and series_id in incident.series,
                min(incident.service_streak.get(root, 0.0), hold_for),
                symptom,
                incident.service_last.get(root, incident.onset),
                len(incident.services),
                incident.last_ts,
                incident.seq,
            )
            if best_rank is None or rank > best_rank:
                best, best_rank = incident, rank
        return best


def _belongs(
    incident: Incident, service: str, related: frozenset[str], traffic: bool, topology: Topology
) -> bool:
    """Whether `service` may join `incident`: a member, related to its root, or starved.

    A service that joined only for a traffic change its callers caused (`starved`) is
    no member for its other signals: its own fault later is an incident of its own.
    """
    if incident.root in related:
        return True
    if service in incident.services and (traffic or service not in incident.starved):
        return True
    # A service's traffic is its callers' doing: it moves when they fail or recover.
    return traffic and any(
        incident.root in topology.related_services(caller)
        for caller in topology.dependents(service)
    )

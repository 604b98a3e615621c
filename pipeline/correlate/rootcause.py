"""Root-cause ranking: which service of an incident is its suspected root, as pure functions.

Only services with evidence compete: a streak of `hold_for` (persistent), or an anomaly within
the last `hold_for` (all of them when the incident has more than `ROOT_FILTER_LIMIT`
services). Among the most downstream of those (`Topology.root_causes`), the one with the
longest streak (counted up to `hold_for`) wins, then the earliest first anomaly, then the one
most of the incident's services depend on, then the name. So a one-off on a dependency
everything shares does not explain a service that is still failing.

>>> chain = Topology({"checkout": ["payments"], "payments": ["payments-db"]})
>>> services = {"checkout": 0.0, "payments": 10.0, "payments-db": 20.0}
>>> suspected_root(services=services, candidates=["payments-db"], streaks={}, last_seen={},
...                at=30.0, hold_for=60.0, topology=chain)
'payments-db'
>>> symptoms(services, "payments-db", chain)
['checkout', 'payments']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from pipeline.correlate.state import Incident
from pipeline.correlate.topology import Topology

#: Above this many services an incident's root comes from its cached candidates alone.
ROOT_FILTER_LIMIT: Final = 200


def suspected_root(
    *,
    services: Mapping[str, float],
    candidates: Iterable[str],
    streaks: Mapping[str, float],
    last_seen: Mapping[str, float],
    at: float,
    hold_for: float,
    topology: Topology,
) -> str:
    """The most downstream live service that explains the most; earliest, then name.

    `services` maps each service to its first anomaly, `candidates` are their
    `Topology.root_causes`, `streaks` and `last_seen` each service's longest streak and
    latest anomaly (a service missing from `last_seen` was last seen when first seen).
    """
    if len(services) <= ROOT_FILTER_LIMIT:
        # Only services with evidence now (a held streak, or an anomaly within the last
        # `hold_for`) compete: a one-off long gone on a dependency does not explain a
        # service that is still failing.
        live = [
            service
            for service in services
            if streaks.get(service, 0.0) >= hold_for
            or at - last_seen.get(service, services[service]) <= hold_for
        ]
        if live and len(live) < len(services):
            candidates = topology.root_causes(live)
    ranked = list(candidates)
    if len(ranked) == 1:
        return ranked[0]
    # The longest streak (up to `hold_for`) beats a one-off, say noise on a dependency
    # everything shares; then the earliest, then the one that explains the most.
    return min(
        ranked,
        key=lambda s: (
            -min(streaks.get(s, 0.0), hold_for),
            services[s],
            -_overlap_count(topology.transitive_dependents(s), services),
            s,
        ),
    )


def incident_root(
    incident: Incident, topology: Topology, hold_for: float, now: float | None = None
) -> str:
    """`suspected_root` of an open incident, judged at `now` (default: its last anomaly)."""
    return suspected_root(
        services=incident.services,
        candidates=incident.root_candidates,
        streaks=incident.service_streak,
        last_seen=incident.service_last,
        at=incident.last_ts if now is None else now,
        hold_for=hold_for,
        topology=topology,
    )


def with_service(
    candidates: set[str], services: Mapping[str, float], service: str, topology: Topology
) -> set[str]:
    """The root candidates once `service` joins `services`, as `Topology.root_causes` of the
    whole set would be, without walking the whole set (a big incident stays cheap)."""
    down = topology.transitive_dependencies
    beyond = down(service)
    # A candidate stays one unless the newcomer lies downstream of it, off its cycle.
    kept = {root for root in candidates if service not in down(root) or root in beyond}
    listed_beyond = (
        [s for s in beyond if s in services]
        if len(beyond) <= len(services)
        else [s for s in services if s in beyond]
    )
    if all(service in down(other) for other in listed_beyond):
        kept.add(service)
    return kept


def symptoms(services: Iterable[str], root: str, topology: Topology) -> list[str]:
    """The services that call `root`, directly or transitively, sorted."""
    return sorted(
        service for service in services if root in topology.transitive_dependencies(service)
    )


def _overlap_count(group: frozenset[str], services: Mapping[str, float]) -> int:
    """How many of `services` are in `group`, walking the smaller side."""
    if len(group) < len(services):
        return sum(1 for service in group if service in services)
    return sum(1 for service in services if service in group)

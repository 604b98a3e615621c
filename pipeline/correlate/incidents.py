"""The correlator: folds anomalies into incidents and decides, with a reason, what pages.

Pure and synchronous: no I/O, no clock. Time is event time, carried by each anomaly and by
`advance(now)`; the correlator's clock only moves forward (the largest time seen).

Rules, in the order they apply to one anomaly:

1. Silences. An anomaly whose labels (see `anomaly_labels`) match an active silence is
   suppressed. It never opens an incident or makes one page; it is counted on the incident it
   would have joined, under `suppressed.silenced`. Only a series of an incident that has
   paged keeps that incident open with its silenced anomalies: the fault is still firing,
   so no resolve goes out while it does.
2. Grouping. An anomaly joins an open incident of its scope when the incident's last anomaly
   is within `group_window` of the anomaly's time and its service is in the incident or
   topology-related (caller or callee, transitively) to the incident's suspected root, or,
   for a traffic anomaly (drop or surge), when one of the service's direct callers is
   related to that root (its traffic is its callers' doing: users who give up at a failing
   caller stop calling it). Relating to the root rather than to any member keeps two faults
   under a shared caller apart; so a service that joined only for such a traffic change
   (`starved`) is no member for its other signals, and a service's absence
   (`quietpager_series_absent`) is never its callers' doing. Among several, an incident that
   has paged with this very series wins (moved away, its series would leave it quiet, to
   resolve while the fault goes on); then the one whose root has been anomalous
   longest (up to `hold_for`), so a one-off on a dependency everything shares attracts
   nothing; then one whose root the service depends on (it is a symptom there), then the
   freshest root, then the larger incident, then the most recent activity, then the one
   opened later. Otherwise it opens a new incident, whose id (the dedup_key) is fixed for
   its whole life.
3. Hold. An incident pages once one of its series has stayed anomalous for `hold_for`, the
   way Alertmanager's `for` works: a series' streak runs while its anomalies come no more
   than `hold_max_gap` apart, and the incident triggers at the first anomaly that makes some
   streak at least `hold_for` long (so `hold_for: 0` pages at once). A blip shorter than
   `hold_for`, or unrelated one-off anomalies that happen to group, never page.
4. Root cause. Only services with evidence compete: a streak of `hold_for` (persistent), or
   an anomaly within the last `hold_for` (all of them when the incident has more than 200
   services). Among the most downstream of those (`Topology.root_causes`), the one with the
   longest streak (counted up to `hold_for`) wins, then the earliest first anomaly, then the
   one most of the incident's services depend on, then the name. So a one-off on a dependency
   everything shares does not explain a service that is still failing. The root is
   recomputed as services join, as a service's streak overtakes the root's, at the trigger
   and at the close. Callers of the root are symptoms: they fold into the incident and
   never page on their own. A root that
   changes after the trigger does not page again (one trigger per incident); the resolve
   page carries the final root. The summary names the incident's most upstream service
   (`Topology.entry_points`), where users feel it, then the suspected root.
5. Resolve. After `resolve_after` without an anomaly, an incident closes: a resolve page with
   the same dedup_key if it paged, otherwise a suppressed "blip_recovered". Once it paged,
   only recurring anomalies count (a series' anomaly at most `resolve_after` after its
   previous one in the incident): one-offs still fold in, but do not keep it open, so the
   fleet's background noise does not hold a big incident open after its fault ended. The
   decision and page time is the moment it became due (`last anomaly + resolve_after`), found
   on the first `observe`/`advance` at or past it.
6. Bounds. At most `max_incidents` are open; opening one more first closes the least recently
   active one ("evicted"), with a resolve page if it had paged.
7. Flapping (`pipeline/correlate/flap.py`). A series that keeps re-entering anomaly (flap
   percent over `flap_window` at least `flap_high`, until it drops below `flap_low`) is
   flapping: its anomalies still fold into their incident, but its streak never counts
   toward the hold, so it stops paging on its own. So is a series whose episodes have
   triggered `flap_max_pages` pages within `flap_window` (a slow flap: each episode outlives
   the hold, then resolves), until fewer have.
8. Routing by urgency. An incident whose series are all saturation (or generic) is low
   urgency: when `route.low_urgency` names receivers, its pages go there, with severity
   `warning`, instead of `route.receivers`. Once a series of another signal in it has been
   anomalous for `hold_for` (the saturation was the first sign of an outage), it escalates:
   a trigger with the same dedup_key goes to `route.receivers`. The resolve goes where the
   triggers went.
9. Storm protection (`pipeline/correlate/storm.py`). At most `storm_max_pages` triggers per
   `storm_window` go to one set of receivers; a trigger beyond the cap waits ("storm_capped",
   once per incident), its incident stays open and is listed in the `storm_digest` of the
   next page sent, and it pages once the window has room if it is still anomalous.

An anomaly arriving after its incident closed opens a new incident with a new dedup_key.
`Decision.at` is the correlator's clock when decided, except closings by quiet (above).

Decisions (kind, reason), counted and logged by the caller; the slugs are stable:

=========  ===================  ==========================================================
kind       reason               when
=========  ===================  ==========================================================
fold       new_incident_held    the anomaly opened a new incident, held for `hold_for`
fold       joined_incident      a new series joined an open incident
fold       dedup_same_series    a series already in the incident fired again
fold       symptom_of_root      a new series of a caller of the incident's suspected root
fold       root_changed         a new series that changed the incident's suspected root
fold       flapping             its series is flapping: folded, never held to a page
suppress   silenced             the anomaly matched an active silence
suppress   stale                the anomaly is older than now - resolve_after (a redelivery),
                                or than the close of its series' incident that paged
suppress   blip_recovered       the incident went quiet before it ever paged
suppress   evicted              an incident that never paged was dropped for max_incidents
suppress   storm_capped         a due trigger was held back by the storm cap
page       first_notification   trigger: the incident outlived its hold
page       low_urgency          trigger of a low-urgency incident, to `route.low_urgency`
page       escalated            trigger to `route.receivers` of a low-urgency incident that
                                a latency, errors or traffic series has joined for `hold_for`
page       resolved             resolve: the incident went quiet after paging
page       evicted              resolve: a paged incident was dropped for max_incidents
=========  ===================  ==========================================================

Every anomaly yields exactly one fold or suppress decision ("silenced" or a fold reason);
pages and incident closings are decisions of their own. Within one call the order is:
closings that fell due (oldest first), evictions, the anomaly's decision, then its trigger.
Decision times never decrease from one decision to the next.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from pipeline.config import CorrelateConfig
from pipeline.correlate.flap import FlapDetector
from pipeline.correlate.silence import Silencer, anomaly_labels
from pipeline.correlate.storm import StormGuard
from pipeline.correlate.topology import Topology
from pipeline.model import ABSENCE_SERIES, Anomaly, Page, PageAction, SeriesKey, Signal
from pipeline.timeutil import format_timestamp

DecisionKind = Literal["page", "fold", "suppress"]

NEW_INCIDENT_HELD: Final = "new_incident_held"
JOINED_INCIDENT: Final = "joined_incident"
DEDUP_SAME_SERIES: Final = "dedup_same_series"
SYMPTOM_OF_ROOT: Final = "symptom_of_root"
ROOT_CHANGED: Final = "root_changed"
SILENCED: Final = "silenced"
FLAPPING: Final = "flapping"
STORM_CAPPED: Final = "storm_capped"
LOW_URGENCY: Final = "low_urgency"
ESCALATED: Final = "escalated"
STALE: Final = "stale"
BLIP_RECOVERED: Final = "blip_recovered"
EVICTED: Final = "evicted"
FIRST_NOTIFICATION: Final = "first_notification"
RESOLVED: Final = "resolved"

DECISION_REASONS: Final[tuple[tuple[DecisionKind, str], ...]] = (
    ("fold", NEW_INCIDENT_HELD),
    ("fold", JOINED_INCIDENT),
    ("fold", DEDUP_SAME_SERIES),
    ("fold", SYMPTOM_OF_ROOT),
    ("fold", ROOT_CHANGED),
    ("fold", FLAPPING),
    ("suppress", SILENCED),
    ("suppress", STALE),
    ("suppress", BLIP_RECOVERED),
    ("suppress", EVICTED),
    ("suppress", STORM_CAPPED),
    ("page", FIRST_NOTIFICATION),
    ("page", LOW_URGENCY),
    ("page", ESCALATED),
    ("page", RESOLVED),
    ("page", EVICTED),
)
"""Every (kind, reason) the correlator emits, so metrics can start each label set at zero."""

SNAPSHOT_VERSION: Final = 1
#: Above this many services an incident's root comes from its cached candidates alone.
_ROOT_FILTER_LIMIT: Final = 200
_LOW_URGENCY_SIGNALS: Final = frozenset({Signal.SATURATION.value, Signal.GENERIC.value})
TOP_SERIES: Final = 10
#: At most this many log signals (template, example lines, counts) ride along in a page.
TOP_LOG_SIGNALS: Final = 5

CloseCause = Literal["quiet", "evicted"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One correlation decision and why: what happened to an anomaly, or a page to send."""

    kind: DecisionKind
    reason: str
    incident_id: str
    page: Page | None
    at: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able shape for a log line (the page itself travels separately)."""
        return {
            "kind": self.kind,
            "reason": self.reason,
            "incident_id": self.incident_id,
            "at": self.at,
            "page_action": self.page.action if self.page is not None else None,
            "detail": self.detail,
        }


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
class _SeriesState:
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
class _Incident:
    """Mutable state of one open incident."""

    id: str
    scope: str
    seq: int
    onset: float
    first_service: str
    last_ts: float
    root: str
    services: dict[str, float] = field(default_factory=dict)  # service -> first anomaly time
    series: dict[str, _SeriesState] = field(default_factory=dict)  # by series id
    alerts: int = 0
    folded_by_reason: dict[str, int] = field(default_factory=dict)
    silenced: int = 0
    paged_at: float | None = None
    receivers: tuple[str, ...] = ()  # where the trigger went; the resolve goes there too
    # Services that joined only for a traffic change their callers caused (see `_belongs`).
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


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class Correlator:
    """Folds anomalies into incidents: dedup, group, inhibit symptoms, hold, silence, resolve."""

    def __init__(
        self,
        config: CorrelateConfig,
        topology: Topology,
        silencer: Silencer,
        receivers: tuple[str, ...],
        source: str = "quietpager",
        low_urgency_receivers: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.topology = topology
        self.silencer = silencer
        self.receivers = receivers
        self.low_urgency_receivers = low_urgency_receivers
        self.source = source
        self.flaps = FlapDetector(
            config.flap_window,
            config.hold_max_gap,
            config.flap_high,
            config.flap_low,
            max_pages=config.flap_max_pages,
        )
        self.storm = StormGuard(config.storm_max_pages, config.storm_window)
        self._now: float | None = None
        self._seq = 0
        self._incidents: dict[str, _Incident] = {}
        # (scope, service) -> ids of open incidents holding that service, in opening order.
        self._by_service: dict[tuple[str, str], dict[str, None]] = {}
        # scope -> ids of its open incidents, for when a service's neighbourhood is larger.
        self._by_scope: dict[str, dict[str, None]] = {}
        # (last_ts, seq, id), lazily refreshed: an entry's last_ts may lag the incident's.
        self._quiet: list[tuple[float, int, str]] = []
        # series id -> when its paged incident closed, for `resolve_after` after that (not
        # snapshotted: after a restart a late anomaly may reopen, as before).
        self._closed: dict[str, float] = {}
        self._closed_order: list[tuple[float, str]] = []  # (close time, series id), a heap

    # ----------------------------------------------------------------- inputs

    def observe(self, anomaly: Anomaly) -> list[Decision]:
        """Fold one anomaly in; returns closings due by its time, its own decision, then pages."""
        decisions = self._tick(anomaly.ts)
        now = self._clock()
        closed = self._closed.get(anomaly.series.id)
        if anomaly.ts <= now - self.config.resolve_after or (
            closed is not None and anomaly.ts < closed
        ):
            # Too old to keep any incident open: a redelivery after a crash (at-least-once)
            # or a badly lagging source. Folding it would reopen what already resolved.
            decisions.append(
                Decision("suppress", STALE, "", None, now, self._anomaly_detail(anomaly))
            )
            return decisions
        rule = self.silencer.mutes(anomaly_labels(anomaly), anomaly.ts)
        target = self._match(anomaly)
        if rule is not None:
            if target is not None:
                target.silenced += 1
                state = target.series.get(anomaly.series.id)
                if target.paged_at is not None and state is not None:
                    # Its own fault, silenced after it paged, is still firing: no "resolved"
                    # while it goes on (as Alertmanager, which resolves no silenced alert).
                    state.last_ts = max(state.last_ts, anomaly.ts)
                    target.last_ts = max(target.last_ts, anomaly.ts)
            detail = self._anomaly_detail(anomaly) | {
                "silence_id": rule.id,
                "comment": rule.comment,
            }
            decisions.append(
                Decision("suppress", SILENCED, target.id if target else "", None, now, detail)
            )
            return decisions
        flapping = self.flaps.observe(anomaly.series.id, anomaly.ts)
        if target is None:
            target = self._open(anomaly, decisions)
            self._fold(target, anomaly, flapping)
            reason = NEW_INCIDENT_HELD
            detail = self._anomaly_detail(anomaly)
            detail["hold_until"] = target.onset + self.config.hold_for
        else:
            reason, detail = self._join(target, anomaly, flapping)
        if flapping:
            reason = FLAPPING
            detail["flap_percent"] = self.flaps.percent(anomaly.series.id, anomaly.ts)
        self._count(target, reason)
        decisions.append(Decision("fold", reason, target.id, None, now, detail))
        held = target.series.get(anomaly.series.id)
        if flapping and held is not None and held.streak >= self.config.hold_for:
            self.flaps.paged(anomaly.series.id, anomaly.ts)  # an episode that would have paged
        if target.paged_at is None and target.longest_streak >= self.config.hold_for:
            decisions.extend(self._trigger(target, now))
        elif target.paged_at is not None and self._escalates(target, anomaly, flapping):
            decisions.extend(self._escalate(target, now))
        return decisions

    def _is_low(self, receivers: tuple[str, ...]) -> bool:
        """Whether pages to `receivers` are low-urgency ones."""
        low = self.low_urgency_receivers
        return bool(low) and receivers == low and low != self.receivers

    def _escalates(self, incident: _Incident, anomaly: Anomaly, flapping: bool) -> bool:
        """A low-urgency incident that paged, now with a series of another signal that has
        been anomalous for `hold_for`: no longer only saturation, so on-call must hear."""
        if flapping or anomaly.signal.value in _LOW_URGENCY_SIGNALS:
            return False
        if not self._is_low(incident.receivers):
            return False
        state = incident.series.get(anomaly.series.id)
        return state is not None and state.streak >= self.config.hold_for

    def _escalate(self, incident: _Incident, now: float) -> list[Decision]:
        """Page `route.receivers` about an incident that paged low urgency; its resolve will
        go to both sets."""
        if not self.storm.allows(self.receivers, now):
            return []  # tried again with the series' next anomaly
        self.storm.record(self.receivers, now)
        incident.root = self._suspected_root(incident, now)
        incident.receivers = tuple(dict.fromkeys(self.receivers + incident.receivers))
        page = self._page(incident, "trigger", now)
        page = replace(page, receivers=self.receivers)  # the low-urgency ones have it already
        detail = self._page_detail(incident)
        return [Decision("page", ESCALATED, incident.id, page, now, detail)]

    def _trigger(self, incident: _Incident, now: float) -> list[Decision]:
        """Page an incident that outlived its hold, unless the storm cap holds it back."""
        incident.root = self._suspected_root(incident, now)
        low = bool(self.low_urgency_receivers) and all(
            state.signal in _LOW_URGENCY_SIGNALS for state in incident.series.values()
        )
        receivers = self.low_urgency_receivers if low else self.receivers
        if not self.storm.allows(receivers, now):
            if incident.storm_held:
                return []
            incident.storm_held = True
            detail = self._page_detail(incident) | {"receivers": list(receivers)}
            return [Decision("suppress", STORM_CAPPED, incident.id, None, now, detail)]
        self.storm.record(receivers, now)
        incident.paged_at = now
        incident.receivers = receivers
        for series_id, state in incident.series.items():
            if state.streak >= self.config.hold_for:  # the series that held it to the page
                self.flaps.paged(series_id, now)
        page = self._page(incident, "trigger", now)
        reason = LOW_URGENCY if low else FIRST_NOTIFICATION
        return [Decision("page", reason, incident.id, page, now, self._page_detail(incident))]

    def advance(self, now: float) -> list[Decision]:
        """Move event time to `now`; returns the closings that became due, oldest first."""
        return self._tick(now)

    # ----------------------------------------------------------------- views

    @property
    def now(self) -> float | None:
        """The correlator's event time: the largest time it has seen, or None before any."""
        return self._now

    @property
    def open_count(self) -> int:
        """How many incidents are open."""
        return len(self._incidents)

    @property
    def open_incidents(self) -> tuple[IncidentView, ...]:
        """The open incidents, in the order they opened."""
        return tuple(
            IncidentView(
                id=inc.id,
                scope=inc.scope,
                onset=inc.onset,
                last_ts=inc.last_ts,
                root_service=inc.root,
                services=tuple(sorted(inc.services)),
                alerts=inc.alerts,
                paged=inc.paged_at is not None,
            )
            for inc in self._incidents.values()
        )

    # ----------------------------------------------------------------- time

    def _clock(self) -> float:
        assert self._now is not None
        return self._now

    def _tick(self, now: float) -> list[Decision]:
        """Advance the clock (never backwards) and close incidents quiet for `resolve_after`."""
        before = now if self._now is None else self._now
        if self._now is None or now > self._now:
            self._now = now
        current = self._now
        decisions: list[Decision] = []
        while self._quiet and current - self._quiet[0][0] >= self.config.resolve_after:
            incident = self._pop_least_recent()
            # A current entry is the true least recent incident, and its key proved it is due.
            # It closes at the moment it became due, not at `now`, so the resolve time does
            # not depend on how coarsely the driver advances the clock (replay == live).
            # Only an incident opened by a very late anomaly can be due before the previous
            # clock; it closes at that clock so decision times never go backwards.
            if incident is not None:
                due = max(incident.last_ts + self.config.resolve_after, before)
                decisions.append(self._close(incident, "quiet", due))
        self._forget_closed(current)
        return decisions

    def _forget_closed(self, now: float) -> None:
        """Drop the closes over `resolve_after` ago: the stale rule covers their anomalies."""
        order, horizon = self._closed_order, now - self.config.resolve_after
        while order and order[0][0] <= horizon:
            closed_at, series_id = heapq.heappop(order)
            if self._closed.get(series_id) == closed_at:
                del self._closed[series_id]

    def _pop_least_recent(self) -> _Incident | None:
        """Pop the heap's first entry; refresh it if stale. Returns its incident when current."""
        last_ts, seq, key = heapq.heappop(self._quiet)
        incident = self._incidents.get(key)
        if incident is None or incident.seq != seq:
            return None  # closed already
        if incident.last_ts != last_ts:
            heapq.heappush(self._quiet, (incident.last_ts, seq, key))
            return None
        return incident

    # ----------------------------------------------------------------- grouping

    def _match(self, anomaly: Anomaly) -> _Incident | None:
        """The open incident this anomaly belongs to, or None to open a new one."""
        service = anomaly.service
        related = self.topology.related_services(service)
        in_scope = self._by_scope.get(anomaly.scope, {})
        callers = self.topology.dependents(service)
        # A service that stopped reporting is a fault of its own, not its callers' doing.
        absent = anomaly.series.name == ABSENCE_SERIES
        traffic = anomaly.signal is Signal.TRAFFIC and bool(callers) and not absent
        # A traffic change may also belong where one of its callers' roots is.
        neighbourhood = related
        if traffic:
            neighbourhood = neighbourhood.union(
                *(self.topology.related_services(caller) for caller in callers)
            )
        # Walk whichever is smaller: the neighbourhood or the scope's open incidents.
        if len(neighbourhood) <= len(in_scope):
            keys: Iterable[str] = dict.fromkeys(
                key
                for member in neighbourhood
                for key in self._by_service.get((anomaly.scope, member), ())
            )
        else:
            keys = in_scope
        best: _Incident | None = None
        best_rank: tuple[bool, float, bool, float, int, float, int] | None = None
        series_id = anomaly.series.id
        for key in keys:
            incident = self._incidents[key]
            if abs(anomaly.ts - incident.last_ts) > self.config.group_window:
                continue
            if not self._belongs(incident, service, related, traffic):
                continue
            root = incident.root
            symptom = root == service or root in self.topology.transitive_dependencies(service)
            # A series stays in an incident that paged with it: moved elsewhere, it would leave
            # that incident quiet, and its resolve would go out while the fault goes on.
            # Then a root that has fired for `hold_for` beats a one-off (say, noise on a
            # dependency everything shares), then one the service depends on, then the
            # freshest root.
            rank = (
                incident.paged_at is not None and series_id in incident.series,
                min(incident.service_streak.get(root, 0.0), self.config.hold_for),
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
        self, incident: _Incident, service: str, related: frozenset[str], traffic: bool
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
        return traffic and self._starved_by(incident, service)

    def _starved_by(self, incident: _Incident, service: str) -> bool:
        """Whether one of `service`'s callers is related to the incident's root."""
        return any(
            incident.root in self.topology.related_services(caller)
            for caller in self.topology.dependents(service)
        )

    def _open(self, anomaly: Anomaly, decisions: list[Decision]) -> _Incident:
        """Start an incident for `anomaly`, evicting the least recently active one if full."""
        now = self._clock()
        while len(self._incidents) >= self.config.max_incidents and self._quiet:
            victim = self._pop_least_recent()
            if victim is not None:
                decisions.append(self._close(victim, "evicted", now))
        key = incident_id(anomaly.scope, anomaly.service, anomaly.ts)
        attempt = 1
        while key in self._incidents:  # same scope, service and onset: keep keys unique
            attempt += 1
            key = incident_id(anomaly.scope, f"{anomaly.service}#{attempt}", anomaly.ts)
        self._seq += 1
        incident = _Incident(
            id=key,
            scope=anomaly.scope,
            seq=self._seq,
            onset=anomaly.ts,
            first_service=anomaly.service,
            last_ts=anomaly.ts,
            root=anomaly.service,
        )
        self._index(incident)
        return incident

    def _index(self, incident: _Incident) -> None:
        """Make an incident findable: by id, by scope, by each service, and by quiet time."""
        self._incidents[incident.id] = incident
        self._by_scope.setdefault(incident.scope, {})[incident.id] = None
        for service in incident.services:
            self._by_service.setdefault((incident.scope, service), {})[incident.id] = None
        heapq.heappush(self._quiet, (incident.last_ts, incident.seq, incident.id))

    def _join(
        self, incident: _Incident, anomaly: Anomaly, flapping: bool
    ) -> tuple[str, dict[str, Any]]:
        """Fold `anomaly` into an open incident; returns the reason and the decision detail."""
        detail = self._anomaly_detail(anomaly)
        known_series = anomaly.series.id in incident.series
        before = incident.root
        self._fold(incident, anomaly, flapping)
        if known_series:
            reason = DEDUP_SAME_SERIES
        elif incident.root != before:
            reason = ROOT_CHANGED
            detail |= {"root_from": before, "root_to": incident.root}
        elif incident.root in self.topology.transitive_dependencies(anomaly.service):
            reason = SYMPTOM_OF_ROOT
            detail["root"] = incident.root
        else:
            reason = JOINED_INCIDENT
        return reason, detail

    @staticmethod
    def _count(incident: _Incident, reason: str) -> None:
        incident.folded_by_reason[reason] = incident.folded_by_reason.get(reason, 0) + 1

    def _fold(self, incident: _Incident, anomaly: Anomaly, flapping: bool = False) -> None:
        """Record `anomaly` in `incident`: alert count, series peak, services and suspected root."""
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
            incident.series[series_id] = _SeriesState(
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
            state.count += 1
            if anomaly.ts - state.last_ts > self.config.hold_max_gap:
                state.streak_start = anomaly.ts
            state.last_ts = max(state.last_ts, anomaly.ts)
            if not flapping:
                incident.longest_streak = max(incident.longest_streak, state.streak)
            before = incident.service_streak.get(state.service, 0.0)
            if state.streak > before:
                incident.service_streak[state.service] = state.streak
                hold = self.config.hold_for
                root_streak = min(incident.service_streak.get(incident.root, 0.0), hold)
                if state.service != incident.root and min(state.streak, hold) > root_streak:
                    # It now has more evidence than the root: it may be the root.
                    incident.root = self._suspected_root(incident)
            if anomaly.score > state.peak_score:
                state.peak_score = anomaly.score
                state.value = anomaly.value
                state.expected = anomaly.expected
        if anomaly.detail.get("source") == "logs":
            _keep_log_signal(incident.log_signals, series_id, anomaly)
        first_seen = incident.services.get(anomaly.service)
        if first_seen is None:
            if incident.root not in self.topology.related_services(anomaly.service):
                incident.starved.add(anomaly.service)  # only its traffic could bring it in
            self._add_service(incident, anomaly.service, anomaly.ts)
            self._by_service.setdefault((incident.scope, anomaly.service), {})[incident.id] = None
            incident.root = self._suspected_root(incident)
        elif anomaly.ts < first_seen:
            # A late anomaly can only move a service's first sighting earlier (root tie-break).
            incident.services[anomaly.service] = anomaly.ts
            incident.root = self._suspected_root(incident)

    def _add_service(self, incident: _Incident, service: str, ts: float) -> None:
        """Add a service and update the root candidates the way `Topology.root_causes` would."""
        down = self.topology.transitive_dependencies
        beyond = down(service)
        # A candidate stays one unless the newcomer lies downstream of it, off its cycle.
        incident.root_candidates = {
            root for root in incident.root_candidates if service not in down(root) or root in beyond
        }
        listed_beyond = (
            [s for s in beyond if s in incident.services]
            if len(beyond) <= len(incident.services)
            else [s for s in incident.services if s in beyond]
        )
        if all(service in down(other) for other in listed_beyond):
            incident.root_candidates.add(service)
        incident.services[service] = ts

    def _suspected_root(self, incident: _Incident, now: float | None = None) -> str:
        """The most downstream live service that explains the most; earliest, then name."""
        candidates: Iterable[str] = incident.root_candidates
        if len(incident.services) <= _ROOT_FILTER_LIMIT:
            # Only services with evidence now (a held streak, or an anomaly within the last
            # `hold_for`) compete: a one-off long gone on a dependency does not explain a
            # service that is still failing.
            at = incident.last_ts if now is None else now
            hold = self.config.hold_for
            live = [
                service
                for service in incident.services
                if incident.service_streak.get(service, 0.0) >= hold
                or at - incident.service_last.get(service, incident.services[service]) <= hold
            ]
            if live and len(live) < len(incident.services):
                candidates = self.topology.root_causes(live)
        candidates = list(candidates)
        if len(candidates) == 1:
            return candidates[0]
        # The longest streak (up to `hold_for`) beats a one-off, say noise on a dependency
        # everything shares; then the earliest, then the one that explains the most.
        return min(
            candidates,
            key=lambda s: (
                -min(incident.service_streak.get(s, 0.0), self.config.hold_for),
                incident.services[s],
                -self._explained(incident, s),
                s,
            ),
        )

    def _explained(self, incident: _Incident, root: str) -> int:
        """How many of the incident's services depend on `root`, directly or transitively."""
        return _overlap_count(self.topology.transitive_dependents(root), incident.services)

    def _symptoms(self, incident: _Incident) -> list[str]:
        """The incident's services that call its suspected root, sorted."""
        return sorted(
            service
            for service in incident.services
            if incident.root in self.topology.transitive_dependencies(service)
        )

    # ----------------------------------------------------------------- closing

    def _close(self, incident: _Incident, cause: CloseCause, now: float) -> Decision:
        """Drop `incident` from the open set; a resolve page if it had paged."""
        incident.root = self._suspected_root(incident, now)
        del self._incidents[incident.id]
        scope_ids = self._by_scope[incident.scope]
        del scope_ids[incident.id]
        if not scope_ids:
            del self._by_scope[incident.scope]
        for service in incident.services:
            ids = self._by_service[(incident.scope, service)]
            del ids[incident.id]
            if not ids:
                del self._by_service[(incident.scope, service)]
        detail = self._page_detail(incident) | {
            "closed_by": cause,
            "duration_s": incident.last_ts - incident.onset,
        }
        reason = EVICTED if cause == "evicted" else RESOLVED
        if incident.paged_at is not None:
            # Its series' anomalies stamped before this close, arriving late, belong to what
            # just resolved: they must not open a new incident and page again.
            for series_id in incident.series:
                self._closed[series_id] = max(now, self._closed.get(series_id, now))
                heapq.heappush(self._closed_order, (now, series_id))
        if incident.paged_at is None:
            reason = EVICTED if cause == "evicted" else BLIP_RECOVERED
            return Decision("suppress", reason, incident.id, None, now, detail)
        page = self._page(incident, "resolve", now, cause)
        return Decision("page", reason, incident.id, page, now, detail)

    # ----------------------------------------------------------------- pages

    def _page(
        self, incident: _Incident, action: PageAction, now: float, cause: CloseCause | None = None
    ) -> Page:
        """The page for `incident`; a resolve carries the same dedup_key and final counts."""
        signals = sorted({state.signal for state in incident.series.values()})
        services = sorted(incident.services)
        headline = min(
            self.topology.entry_points(incident.services),
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
            "symptoms": self._symptoms(incident),
            "suppressed": {SILENCED: incident.silenced},
            "hold_for_s": self.config.hold_for,
        }
        if incident.log_signals:
            details["log_signals"] = _top_log_signals(incident.log_signals)
        receivers = incident.receivers or self.receivers
        severity = self.config.severity
        if self._is_low(receivers):
            severity = "warning"
            details["urgency"] = "low"
        held = [
            {"incident_id": other.id, "root": other.root}
            for other in self._incidents.values()
            if other.storm_held and other.paged_at is None and other is not incident
        ]
        if held:
            details["storm_digest"] = held
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
            source=self.source,
            root_service=incident.root,
            scope=incident.scope,
            signals=tuple(signals),
            receivers=receivers,
            custom_details=details,
        )

    @staticmethod
    def _anomaly_detail(anomaly: Anomaly) -> dict[str, Any]:
        return {
            "series": anomaly.series.id,
            "service": anomaly.service,
            "signal": anomaly.signal.value,
            "score": anomaly.score,
            "ts": anomaly.ts,
        }

    @staticmethod
    def _page_detail(incident: _Incident) -> dict[str, Any]:
        return {
            "root": incident.root,
            "services": len(incident.services),
            "alerts": incident.alerts,
            "onset": incident.onset,
        }

    # ----------------------------------------------------------------- state

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-able data, for the `quietpager.state.correlate` changelog."""
        return {
            "version": SNAPSHOT_VERSION,
            "now": self._now,
            "seq": self._seq,
            "flaps": self.flaps.snapshot(),
            "storm": self.storm.snapshot(),
            "incidents": [
                {
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
                for inc in self._incidents.values()
            ],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the whole state with a `snapshot()`; raises ValueError on a bad shape."""
        try:
            version = state["version"]
            if version != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported correlator snapshot version {version!r}")
            now = None if state["now"] is None else float(state["now"])
            seq = int(state["seq"])
            incidents = [_incident_from(data) for data in state["incidents"]]
            self.flaps.restore(state.get("flaps", ()))
            self.storm.restore(state.get("storm", ()))
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"bad correlator snapshot: {exc!r}") from None
        self._now = now
        self._seq = seq
        self._incidents = {}
        self._by_scope = {}
        self._by_service = {}
        self._quiet = []
        self._closed, self._closed_order = {}, []
        for incident in incidents:
            incident.root_candidates = set(self.topology.root_causes(incident.services))
            for series in incident.series.values():
                last = incident.service_last.get(series.service, series.last_ts)
                incident.service_last[series.service] = max(last, series.last_ts)
                streak = incident.service_streak.get(series.service, 0.0)
                incident.service_streak[series.service] = max(streak, series.streak)
            self._index(incident)


def check_incident(data: Mapping[str, Any]) -> str:
    """The id of an incident's snapshot form (as in `snapshot()["incidents"]`); raises
    ValueError when `restore` could not read it, so one bad incident can be set aside."""
    try:
        return _incident_from(data).id
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"bad incident: {exc!r}") from None


def _incident_from(data: Mapping[str, Any]) -> _Incident:
    """One incident from its snapshot form."""
    series: dict[str, _SeriesState] = {}
    for item in data["series"]:
        key = SeriesKey(str(item["name"]), tuple((str(k), str(v)) for k, v in item["labels"]))
        series[key.id] = _SeriesState(
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
    return _Incident(
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


def _keep_log_signal(signals: dict[str, dict[str, Any]], series_id: str, anomaly: Anomaly) -> None:
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


def _top_log_signals(signals: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The log signals a page shows: strongest first, then earliest, then by series."""
    ranked = sorted(
        signals.values(), key=lambda s: (-float(s["peak_score"]), float(s["first_ts"]), s["series"])
    )
    return [dict(s) for s in ranked[:TOP_LOG_SIGNALS]]


def _overlap_count(group: frozenset[str], services: Mapping[str, float]) -> int:
    """How many of `services` are in `group`, walking the smaller side."""
    if len(group) < len(services):
        return sum(1 for service in group if service in services)
    return sum(1 for service in services if service in group)


def feed(correlator: Correlator, events: Iterable[Anomaly | float]) -> list[Decision]:
    """Run a sequence of anomalies and bare times (advances) through `correlator`, in order."""
    decisions: list[Decision] = []
    for event in events:
        if isinstance(event, Anomaly):
            decisions.extend(correlator.observe(event))
        else:
            decisions.extend(correlator.advance(event))
    return decisions

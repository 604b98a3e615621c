"""The correlator: folds anomalies into incidents and decides, with a reason, what pages.

Pure and synchronous: no I/O, no clock. Time is event time, carried by each anomaly and by
`advance(now)`; the correlator's clock only moves forward (the largest time seen).

`observe` runs one anomaly through stages with one job each: the clock (`_tick`: closings that
fell due), the mutes (`pipeline.correlate.mute`: stale, silenced, flapping), the match
(`pipeline.correlate.grouping`), the fold (`pipeline.correlate.fold`), then the trigger or the
escalation, whose storm cap is a mute too. The root-cause ranking
(`pipeline.correlate.rootcause`) and the page (`pipeline.correlate.render`) are pure functions;
every (kind, reason) a decision may carry is in `pipeline.correlate.decisions`, with when each
applies.

Rules, in the order they apply to one anomaly:

1. Silences. An anomaly whose labels (see `anomaly_labels`) match an active silence is
   suppressed. It never opens an incident or makes one page; it is counted on the incident it
   would have joined, under `suppressed.silenced`. Only a series of an incident that has
   paged keeps that incident open with its silenced anomalies: the fault is still firing,
   so no resolve goes out while it does.
2. Grouping (`pipeline.correlate.grouping`). An anomaly joins an open incident of its scope when
   the incident's last anomaly is within `group_window` of the anomaly's time and its service is
   in the incident or topology-related (caller or callee, transitively) to the incident's
   suspected root, or, for a traffic anomaly (drop or surge), when one of the service's direct
   callers is related to that root (its traffic is its callers' doing: users who give up at a
   failing caller stop calling it). Relating to the root rather than to any member keeps two
   faults under a shared caller apart; so a service that joined only for such a traffic change
   (`starved`) is no member for its other signals, and a service's absence
   (`quietpager_series_absent`) is never its callers' doing. Among several, an incident that has
   paged with this very series wins (moved away, its series would leave it quiet, to resolve
   while the fault goes on); then the one whose root has been anomalous longest (up to
   `hold_for`), so a one-off on a dependency everything shares attracts nothing; then one whose
   root the service depends on (it is a symptom there), then the freshest root, then the larger
   incident, then the most recent activity, then the one opened later. Otherwise it opens a new
   incident, whose id (the dedup_key) is fixed for its whole life.
3. Hold. An incident pages once one of its series has stayed anomalous for `hold_for`, the
   way Alertmanager's `for` works: a series' streak runs while its anomalies come no more
   than `hold_max_gap` apart, and the incident triggers at the first anomaly that makes some
   streak at least `hold_for` long (so `hold_for: 0` pages at once). A blip shorter than
   `hold_for`, or unrelated one-off anomalies that happen to group, never page.
4. Root cause (`pipeline.correlate.rootcause`). Only services with evidence compete: a streak of
   `hold_for` (persistent), or an anomaly within the last `hold_for` (all of them when the
   incident has more than 200 services). Among the most downstream of those
   (`Topology.root_causes`), the one with the longest streak (counted up to `hold_for`) wins,
   then the earliest first anomaly, then the one most of the incident's services depend on, then
   the name. So a one-off on a dependency everything shares does not explain a service that is
   still failing. The root is recomputed as services join, as a service's streak overtakes the
   root's, at the trigger and at the close. Callers of the root are symptoms: they fold into the
   incident and never page on their own. A root that changes after the trigger does not page
   again (one trigger per incident); the resolve page carries the final root. The summary names
   the incident's most upstream service (`Topology.entry_points`), where users feel it, then the
   suspected root.
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

Decisions and their reasons: `pipeline.correlate.decisions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final, Literal

from pipeline.config import CorrelateConfig
from pipeline.correlate.decisions import (
    BLIP_RECOVERED,
    DECISION_REASONS,
    DEDUP_SAME_SERIES,
    ESCALATED,
    EVICTED,
    FIRST_NOTIFICATION,
    JOINED_INCIDENT,
    LOW_URGENCY,
    NEW_INCIDENT_HELD,
    RESOLVED,
    ROOT_CHANGED,
    SILENCED,
    SYMPTOM_OF_ROOT,
    Decision,
    DecisionKind,
)
from pipeline.correlate.flap import FlapDetector
from pipeline.correlate.fold import Folder
from pipeline.correlate.grouping import OpenIncidents
from pipeline.correlate.mute import (
    FlapMuter,
    Muted,
    MuteStage,
    SilenceMuter,
    StaleMuter,
    StormMuter,
)
from pipeline.correlate.render import anomaly_detail, page_detail
from pipeline.correlate.render import render_page as _render_page
from pipeline.correlate.rootcause import incident_root
from pipeline.correlate.silence import Silencer
from pipeline.correlate.state import (
    Incident,
    IncidentView,
    check_incident,
    incident_from,
    incident_id,
    incident_record,
)
from pipeline.correlate.storm import StormGuard
from pipeline.correlate.topology import Topology
from pipeline.model import Anomaly, Page, PageAction, Signal

# The correlator's public API, importable from here as before the split.
__all__ = [
    "DECISION_REASONS",
    "SNAPSHOT_VERSION",
    "Correlator",
    "Decision",
    "DecisionKind",
    "IncidentView",
    "check_incident",
    "feed",
    "incident_id",
]

SNAPSHOT_VERSION: Final = 1
_LOW_URGENCY_SIGNALS: Final = frozenset({Signal.SATURATION.value, Signal.GENERIC.value})

CloseCause = Literal["quiet", "evicted"]


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
        self._stale = StaleMuter(config.resolve_after)
        #: How often each mute reason muted an anomaly or a due trigger (not snapshotted).
        self.muted_by_reason: dict[str, int] = {}
        # In this order: a stale or silenced anomaly leaves no trace in the flap history.
        self.anomaly_mutes = MuteStage[Anomaly](
            (self._stale, SilenceMuter(silencer), FlapMuter(self.flaps)), self.muted_by_reason
        )
        self.trigger_mutes = MuteStage[tuple[str, ...]](
            (StormMuter(self.storm),), self.muted_by_reason
        )
        self._now: float | None = None
        self._seq = 0
        self._open = OpenIncidents()
        self._folder = Folder(config, topology)

    @property
    def _closed(self) -> dict[str, float]:
        """Series id -> when its paged incident closed (see `StaleMuter`)."""
        return self._stale.closed

    # ----------------------------------------------------------------- inputs

    def observe(self, anomaly: Anomaly) -> list[Decision]:
        """Fold one anomaly in; returns closings due by its time, its own decision, then pages."""
        decisions = self._tick(anomaly.ts)
        now = self._clock()
        muted = self.anomaly_mutes.mutes(anomaly, now)
        if muted is not None and muted.kind == "suppress":
            decisions.append(self._suppress(anomaly, muted, now))
            return decisions
        # A muter that lets the anomaly fold (flapping) mutes its streak: it holds to no page.
        flapping = muted is not None
        target = self._match(anomaly)
        if target is None:
            target = self._new_incident(anomaly, decisions)
            self._fold(target, anomaly, flapping)
            reason = NEW_INCIDENT_HELD
            detail = anomaly_detail(anomaly)
            detail["hold_until"] = target.onset + self.config.hold_for
        else:
            reason, detail = self._join(target, anomaly, flapping)
        if muted is not None:
            reason = muted.reason
            detail |= muted.detail
        target.folded_by_reason[reason] = target.folded_by_reason.get(reason, 0) + 1
        decisions.append(Decision("fold", reason, target.id, None, now, detail))
        held = target.series.get(anomaly.series.id)
        if flapping and held is not None and held.streak >= self.config.hold_for:
            self.flaps.paged(anomaly.series.id, anomaly.ts)  # an episode that would have paged
        if target.paged_at is None and target.longest_streak >= self.config.hold_for:
            decisions.extend(self._trigger(target, now))
        elif target.paged_at is not None and self._escalates(target, anomaly, flapping):
            decisions.extend(self._escalate(target, now))
        return decisions

    def advance(self, now: float) -> list[Decision]:
        """Move event time to `now`; returns the closings that became due, oldest first."""
        return self._tick(now)

    def _suppress(self, anomaly: Anomaly, muted: Muted, now: float) -> Decision:
        """The decision about a muted anomaly; a silenced one counts on the incident it would
        have joined (a stale one is too old to belong to any)."""
        detail = anomaly_detail(anomaly) | muted.detail
        if muted.reason != SILENCED:
            return Decision("suppress", muted.reason, "", None, now, detail)
        target = self._match(anomaly)
        if target is None:
            return Decision("suppress", muted.reason, "", None, now, detail)
        target.silenced += 1
        state = target.series.get(anomaly.series.id)
        if target.paged_at is not None and state is not None:
            # Its own fault, silenced after it paged, is still firing: no "resolved"
            # while it goes on (as Alertmanager, which resolves no silenced alert).
            state.last_ts = max(state.last_ts, anomaly.ts)
            target.last_ts = max(target.last_ts, anomaly.ts)
        return Decision("suppress", muted.reason, target.id, None, now, detail)

    # ----------------------------------------------------------------- paging

    def _is_low(self, receivers: tuple[str, ...]) -> bool:
        """Whether pages to `receivers` are low-urgency ones."""
        low = self.low_urgency_receivers
        return bool(low) and receivers == low and low != self.receivers

    def _escalates(self, incident: Incident, anomaly: Anomaly, flapping: bool) -> bool:
        """A low-urgency incident that paged, now with a series of another signal that has
        been anomalous for `hold_for`: no longer only saturation, so on-call must hear."""
        if flapping or anomaly.signal.value in _LOW_URGENCY_SIGNALS:
            return False
        if not self._is_low(incident.receivers):
            return False
        state = incident.series.get(anomaly.series.id)
        return state is not None and state.streak >= self.config.hold_for

    def _escalate(self, incident: Incident, now: float) -> list[Decision]:
        """Page `route.receivers` about an incident that paged low urgency; its resolve will
        go to both sets."""
        if self.trigger_mutes.mutes(self.receivers, now) is not None:
            return []  # tried again with the series' next anomaly
        self.storm.record(self.receivers, now)
        incident.root = self._root(incident, now)
        incident.receivers = tuple(dict.fromkeys(self.receivers + incident.receivers))
        page = self._page(incident, "trigger", now)
        page = replace(page, receivers=self.receivers)  # the low-urgency ones have it already
        return [Decision("page", ESCALATED, incident.id, page, now, page_detail(incident))]

    def _trigger(self, incident: Incident, now: float) -> list[Decision]:
        """Page an incident that outlived its hold, unless the storm cap holds it back."""
        incident.root = self._root(incident, now)
        low = bool(self.low_urgency_receivers) and all(
            state.signal in _LOW_URGENCY_SIGNALS for state in incident.series.values()
        )
        receivers = self.low_urgency_receivers if low else self.receivers
        muted = self.trigger_mutes.mutes(receivers, now)
        if muted is not None:
            if incident.storm_held:
                return []
            incident.storm_held = True
            detail = page_detail(incident) | muted.detail
            return [Decision(muted.kind, muted.reason, incident.id, None, now, detail)]
        self.storm.record(receivers, now)
        incident.paged_at = now
        incident.receivers = receivers
        for series_id, state in incident.series.items():
            if state.streak >= self.config.hold_for:  # the series that held it to the page
                self.flaps.paged(series_id, now)
        page = self._page(incident, "trigger", now)
        reason = LOW_URGENCY if low else FIRST_NOTIFICATION
        return [Decision("page", reason, incident.id, page, now, page_detail(incident))]

    def _page(
        self, incident: Incident, action: PageAction, now: float, cause: CloseCause | None = None
    ) -> Page:
        """The page for `incident` to where it goes, with the storm digest of held triggers."""
        receivers = incident.receivers or self.receivers
        held = [
            {"incident_id": other.id, "root": other.root}
            for other in self._open.by_id.values()
            if other.storm_held and other.paged_at is None and other is not incident
        ]
        return _render_page(
            incident,
            action,
            now,
            topology=self.topology,
            receivers=receivers,
            low_urgency=self._is_low(receivers),
            severity=self.config.severity,
            source=self.source,
            hold_for=self.config.hold_for,
            storm_digest=held,
            cause=cause,
        )

    # ----------------------------------------------------------------- views

    @property
    def now(self) -> float | None:
        """The correlator's event time: the largest time it has seen, or None before any."""
        return self._now

    @property
    def open_count(self) -> int:
        """How many incidents are open."""
        return len(self._open)

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
            for inc in self._open.by_id.values()
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
        quiet = self._open.quiet
        while quiet and current - quiet[0][0] >= self.config.resolve_after:
            incident = self._open.pop_least_recent()
            # A current entry is the true least recent incident, and its key proved it is due.
            # It closes at the moment it became due, not at `now`, so the resolve time does
            # not depend on how coarsely the driver advances the clock (replay == live).
            # Only an incident opened by a very late anomaly can be due before the previous
            # clock; it closes at that clock so decision times never go backwards.
            if incident is not None:
                due = max(incident.last_ts + self.config.resolve_after, before)
                decisions.append(self._close(incident, "quiet", due))
        self._stale.forget(current)
        return decisions

    # ----------------------------------------------------------------- grouping

    def _match(self, anomaly: Anomaly) -> Incident | None:
        """The open incident this anomaly belongs to, or None to open a new one."""
        return self._open.match(
            anomaly, self.topology, self.config.group_window, self.config.hold_for
        )

    def _new_incident(self, anomaly: Anomaly, decisions: list[Decision]) -> Incident:
        """Start an incident for `anomaly`, evicting the least recently active one if full."""
        now = self._clock()
        while len(self._open) >= self.config.max_incidents and self._open.quiet:
            victim = self._open.pop_least_recent()
            if victim is not None:
                decisions.append(self._close(victim, "evicted", now))
        key = incident_id(anomaly.scope, anomaly.service, anomaly.ts)
        attempt = 1
        while key in self._open.by_id:  # same scope, service and onset: keep keys unique
            attempt += 1
            key = incident_id(anomaly.scope, f"{anomaly.service}#{attempt}", anomaly.ts)
        self._seq += 1
        incident = Incident(
            id=key,
            scope=anomaly.scope,
            seq=self._seq,
            onset=anomaly.ts,
            first_service=anomaly.service,
            last_ts=anomaly.ts,
            root=anomaly.service,
        )
        self._open.add(incident)
        return incident

    def _join(
        self, incident: Incident, anomaly: Anomaly, flapping: bool
    ) -> tuple[str, dict[str, Any]]:
        """Fold `anomaly` into an open incident; returns the reason and the decision detail."""
        detail = anomaly_detail(anomaly)
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

    def _fold(self, incident: Incident, anomaly: Anomaly, flapping: bool = False) -> None:
        """Fold `anomaly` into `incident` (see `pipeline.correlate.fold`) and index its service."""
        if self._folder.fold(incident, anomaly, flapping):
            self._open.add_service(incident, anomaly.service)

    def _root(self, incident: Incident, now: float | None = None) -> str:
        """The incident's suspected root now (see `pipeline.correlate.rootcause`)."""
        return incident_root(incident, self.topology, self.config.hold_for, now)

    # ----------------------------------------------------------------- closing

    def _close(self, incident: Incident, cause: CloseCause, now: float) -> Decision:
        """Drop `incident` from the open set; a resolve page if it had paged."""
        incident.root = self._root(incident, now)
        self._open.remove(incident)
        detail = page_detail(incident) | {
            "closed_by": cause,
            "duration_s": incident.last_ts - incident.onset,
        }
        if incident.paged_at is None:
            reason = EVICTED if cause == "evicted" else BLIP_RECOVERED
            return Decision("suppress", reason, incident.id, None, now, detail)
        # Its series' anomalies stamped before this close, arriving late, belong to what
        # just resolved: they must not open a new incident and page again.
        self._stale.close(incident.series, now)
        page = self._page(incident, "resolve", now, cause)
        reason = EVICTED if cause == "evicted" else RESOLVED
        return Decision("page", reason, incident.id, page, now, detail)

    # ----------------------------------------------------------------- state

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-able data, for the `quietpager.state.correlate` changelog."""
        return {
            "version": SNAPSHOT_VERSION,
            "now": self._now,
            "seq": self._seq,
            "flaps": self.flaps.snapshot(),
            "storm": self.storm.snapshot(),
            "incidents": [incident_record(inc) for inc in self._open.by_id.values()],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the whole state with a `snapshot()`; raises ValueError on a bad shape."""
        try:
            version = state["version"]
            if version != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported correlator snapshot version {version!r}")
            now = None if state["now"] is None else float(state["now"])
            seq = int(state["seq"])
            incidents = [incident_from(data) for data in state["incidents"]]
            self.flaps.restore(state.get("flaps", ()))
            self.storm.restore(state.get("storm", ()))
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"bad correlator snapshot: {exc!r}") from None
        self._now = now
        self._seq = seq
        self._open = OpenIncidents()
        self._stale.clear()
        for incident in incidents:
            incident.root_candidates = set(self.topology.root_causes(incident.services))
            for series in incident.series.values():
                last = incident.service_last.get(series.service, series.last_ts)
                incident.service_last[series.service] = max(last, series.last_ts)
                streak = incident.service_streak.get(series.service, 0.0)
                incident.service_streak[series.service] = max(streak, series.streak)
            self._open.add(incident)


def feed(correlator: Correlator, events: Iterable[Anomaly | float]) -> list[Decision]:
    """Run a sequence of anomalies and bare times (advances) through `correlator`, in order."""
    decisions: list[Decision] = []
    for event in events:
        if isinstance(event, Anomaly):
            decisions.extend(correlator.observe(event))
        else:
            decisions.extend(correlator.advance(event))
    return decisions

"""The correlator's de-noising rules: grouping on the root, flapping, urgency, storms.

Scenarios are lists of anomalies and bare times (advances) on an explicit event clock, as in
test_correlate_incidents.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.config import CorrelateConfig
from pipeline.correlate.flap import FlapDetector
from pipeline.correlate.incidents import DECISION_REASONS, Correlator, Decision, feed
from pipeline.correlate.silence import Silencer
from pipeline.correlate.storm import StormGuard
from pipeline.correlate.topology import Topology
from pipeline.model import Anomaly, Page
from tests.builders import T0, alert

Event = Anomaly | float

#: Two databases under one shared caller, and a store everything calls.
GRAPH = Topology(
    {
        "web": ["orders", "billing"],
        "orders": ["orders-db", "config-kv"],
        "billing": ["billing-db", "config-kv"],
        "search": ["config-kv"],
    }
)


def every(service: str, start: float, stop: float, signal: str = "latency") -> list[Anomaly]:
    """One anomaly every 10 s in `[start, stop]`."""
    return [alert(float(t), service, signal) for t in range(int(start), int(stop) + 1, 10)]


def by_time(*streams: list[Anomaly]) -> list[Event]:
    merged: list[Event] = [a for stream in streams for a in stream]
    return sorted(merged, key=lambda e: e.ts if isinstance(e, Anomaly) else e)


def correlator(
    topology: Topology = GRAPH, low_urgency: tuple[str, ...] = (), **config: Any
) -> Correlator:
    settings = {"group_window": 300.0, "hold_for": 60.0, "resolve_after": 300.0} | config
    return Correlator(
        CorrelateConfig(**settings),
        topology,
        Silencer(),
        ("oncall",),
        low_urgency_receivers=low_urgency,
    )


def pages(decisions: list[Decision]) -> list[Page]:
    return [d.page for d in decisions if d.page is not None]


def triggers(decisions: list[Decision]) -> list[tuple[str, str]]:
    """(root, first receiver) of each trigger."""
    return [(p.root_service, p.receivers[0]) for p in pages(decisions) if p.action == "trigger"]


# ---------------------------------------------------------------------- grouping and root


@pytest.mark.parametrize(
    ("events", "expected_roots"),
    [
        # two databases failing under one shared caller are two incidents, each paging
        (
            by_time(every("orders-db", 0, 200), every("billing-db", 20, 220)),
            [["orders-db"], ["billing-db"]],
        ),
        # the shared caller's symptoms join one of them and do not merge the two
        (
            by_time(
                every("orders-db", 0, 200), every("billing-db", 20, 220), every("web", 40, 200)
            ),
            [["orders-db"], ["billing-db"]],
        ),
        # a one-off on the store everything calls does not steal a real fault's symptoms
        (
            by_time([alert(0, "config-kv")], every("orders-db", 30, 250), every("orders", 60, 250)),
            [["orders-db"]],
        ),
        # a one-off long gone on a dependency does not explain a caller that keeps failing
        (by_time([alert(0, "config-kv")], every("orders", 200, 400)), [["orders"]]),
        # a persistent store everything calls is the root of the storm it causes
        (
            by_time(
                every("config-kv", 0, 300),
                every("orders", 30, 300),
                every("billing", 30, 300),
                every("search", 30, 300),
                [alert(40, "orders-db")],
            ),
            [["config-kv"]],
        ),
    ],
)
def test_grouping_relates_to_the_root(events: list[Event], expected_roots: list[list[str]]) -> None:
    decisions = feed(correlator(), [*events, T0 + 2000.0])
    roots = [[p.root_service] for p in pages(decisions) if p.action == "trigger"]
    assert roots == expected_roots
    resolves = [p for p in pages(decisions) if p.action == "resolve"]
    assert len(resolves) == len(expected_roots)


@pytest.mark.parametrize(
    ("value", "joins"),
    [
        # a traffic drop on a callee of the failing caller joins its incident
        (0.5, True),
        # so does a surge (the same callers recovering)
        (1.5, True),
    ],
)
def test_traffic_change_downstream_of_a_symptom_joins(value: float, joins: bool) -> None:
    # web (the caller of orders and billing) suffers from orders-db; billing's traffic moves
    events = by_time(every("orders-db", 0, 200), every("web", 30, 200))
    starved = alert(60, "billing", "traffic", value=value)
    c = correlator()
    feed(c, [*[e for e in events if isinstance(e, Anomaly) and e.ts < starved.ts], starved])
    incidents = {v.root_service: v.services for v in c.open_incidents}
    assert ("billing" in incidents["orders-db"]) is joins
    assert len(incidents) == 1


def test_unrelated_latency_does_not_join_through_a_shared_caller() -> None:
    c = correlator()
    feed(c, [*every("orders-db", 0, 60), alert(60, "web"), alert(70, "billing-db")])
    by_root = {v.root_service: v.services for v in c.open_incidents}
    assert by_root == {"orders-db": ("orders-db", "web"), "billing-db": ("billing-db",)}


# ---------------------------------------------------------------------- flapping


def flaps(runs: list[tuple[float, float]], service: str = "orders") -> list[Anomaly]:
    """Anomalies every 10 s within each `(start, stop)` run: a series toggling."""
    return [a for start, stop in runs for a in every(service, start, stop)]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # a steady fault pages once
        (every("orders", 0, 200), [("orders", "oncall")]),
        # toggling every minute or two: flapping long before a run outlasts the hold
        (
            flaps([(0, 10), (60, 70), (120, 130), (180, 190), (240, 330), (400, 500)]),
            [],
        ),
        # one early miss in a real fault is not flapping
        (flaps([(0, 20), (60, 300)]), [("orders", "oncall")]),
        # short runs that stop toggling: flapping ends below flap_low, the fault then pages
        (
            flaps([(0, 10), (60, 70), (120, 130), (180, 190), (2400, 2600)]),
            [("orders", "oncall")],
        ),
    ],
)
def test_flapping_series_stops_paging(
    events: list[Anomaly], expected: list[tuple[str, str]]
) -> None:
    c = correlator(resolve_after=3000.0)
    decisions = feed(c, events)
    assert triggers(decisions) == expected


def _slow_flap(on: int, off: int, hours: float) -> list[Anomaly]:
    """Anomalous for `on` seconds, then quiet for `off` (longer than resolve_after), over and
    over: each episode outlives the hold and resolves before the next."""
    spans: list[tuple[float, float]] = []
    start = 0.0
    while start < hours * 3600:
        spans.append((start, start + on))
        start += on + off
    return flaps(spans)


@pytest.mark.parametrize(
    ("on", "off", "max_pages", "expected"),
    [
        # on 80 s, off 310 s for 3 h: 28 pages before; now 3, then quiet while it flaps
        (80, 310, 3, 3),
        (120, 480, 3, 3),
        (80, 310, 1, 1),
        # flap_max_pages: 0 turns the rule off: every episode pages
        (80, 310, 0, 28),
        # a fault that recurs twice in three hours pages each time
        (120, 5000, 3, 3),
    ],
)
def test_a_slow_flap_stops_paging_after_flap_max_pages(
    on: int, off: int, max_pages: int, expected: int
) -> None:
    c = correlator(flap_max_pages=max_pages)
    decisions = feed(c, [*_slow_flap(on, off, 3.0), T0 + 4 * 3600.0])
    assert len(triggers(decisions)) == expected


def test_a_slow_flap_pages_again_once_calm_for_a_window() -> None:
    c = correlator()
    calm_then_fault = every("orders", 3 * 3600 + 3700, 3 * 3600 + 3900)
    decisions = feed(c, [*_slow_flap(80, 310, 3.0), *calm_then_fault, T0 + 6 * 3600.0])
    assert len(triggers(decisions)) == 4  # 3 flap episodes, then the fault after an hour


def test_flapping_anomalies_fold_with_their_reason_and_percent() -> None:
    decisions = feed(correlator(), flaps([(0, 10), (60, 70), (120, 130), (180, 190)]))
    reasons = [d.reason for d in decisions if d.kind == "fold"]
    assert reasons[-2:] == ["flapping", "flapping"]
    flapping = [d for d in decisions if d.reason == "flapping"]
    # two re-entries: 4 of the 20 changes possible in ten minutes; three: 6 of 20
    assert flapping[0].detail["flap_percent"] == pytest.approx(20.0)
    assert flapping[-1].detail["flap_percent"] == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # anomalies in a row are one state: never flapping
        ([0, 30, 60, 90], [False, False, False, False]),
        # three re-entries within ten minutes reach 20 % (6 of 20 possible changes is 30 %)
        ([0, 120, 240, 360], [False, False, True, True]),
        # two re-entries are 20 %: exactly the high threshold starts flapping
        ([0, 120, 240], [False, False, True]),
        # hysteresis: still flapping at 15 % (between low and high) much later
        ([0, 120, 240, 360, 1200], [False, False, True, True, True]),
        # once the rate falls below 10 %, it stops
        ([0, 120, 240, 360, 3000], [False, False, True, True, False]),
    ],
)
def test_flap_detector_hysteresis(times: list[float], expected: list[bool]) -> None:
    f = FlapDetector(window=3600.0, gap=30.0, high=20.0, low=10.0)
    assert [f.observe("s", float(t)) for t in times] == expected


def test_flap_detector_is_bounded_and_snapshots() -> None:
    f = FlapDetector(window=600.0, gap=30.0, high=20.0, low=10.0, max_series=2)
    for index, name in enumerate("abc"):
        f.observe(name, float(index))
    assert len(f) == 2  # the least recently seen series was dropped
    f.observe("d", 5000.0)  # a whole window later the others are forgotten
    assert len(f) == 1
    g = FlapDetector(window=600.0, gap=30.0, high=20.0, low=10.0)
    g.restore(json.loads(json.dumps(f.snapshot())))
    assert g.snapshot() == f.snapshot()


# ---------------------------------------------------------------------- urgency routing


@pytest.mark.parametrize(
    ("signals", "low_urgency", "expected_receiver", "reason", "severity"),
    [
        # saturation only, with a low-urgency route: goes there, as a warning
        (["saturation"], ("tickets",), "tickets", "low_urgency", "warning"),
        # saturation only without a low-urgency route: the default route
        (["saturation"], (), "oncall", "first_notification", "critical"),
        # saturation plus latency is urgent
        (["saturation", "latency"], ("tickets",), "oncall", "first_notification", "critical"),
        # a single latency series is urgent too (a stopped service is one series)
        (["latency"], ("tickets",), "oncall", "first_notification", "critical"),
    ],
)
def test_routing_by_urgency(
    signals: list[str],
    low_urgency: tuple[str, ...],
    expected_receiver: str,
    reason: str,
    severity: str,
) -> None:
    events = by_time(*(every("orders-db", 0, 100, signal) for signal in signals))
    decisions = feed(correlator(low_urgency=low_urgency), [*events, T0 + 1000.0])
    sent = pages(decisions)
    assert [p.action for p in sent] == ["trigger", "resolve"]
    assert [p.receivers for p in sent] == [(expected_receiver,), (expected_receiver,)]
    assert [p.severity for p in sent] == [severity, severity]
    assert next(d.reason for d in decisions if d.kind == "page") == reason


@pytest.mark.parametrize(
    ("latency_from", "latency_until", "expected"),
    [
        # the outage's latency holds 60 s after the saturation paged: on-call is paged too,
        # same key, and the resolve goes to both (it used to stay a ticket, as a warning)
        (
            75,
            600,
            [
                ("trigger", ("tickets",), "warning", "low_urgency"),
                ("trigger", ("oncall",), "critical", "escalated"),
                ("resolve", ("oncall", "tickets"), "critical", "resolved"),
            ],
        ),
        # a latency blip shorter than the hold does not escalate
        (
            75,
            105,
            [
                ("trigger", ("tickets",), "warning", "low_urgency"),
                ("resolve", ("tickets",), "warning", "resolved"),
            ],
        ),
    ],
)
def test_a_low_urgency_incident_escalates_when_an_urgent_signal_holds(
    latency_from: float, latency_until: float, expected: list[tuple[str, tuple[str, ...], str, str]]
) -> None:
    events = by_time(
        every("orders-db", 0, 600, "saturation"),
        every("orders-db", latency_from, latency_until, "latency"),
    )
    decisions = feed(correlator(low_urgency=("tickets",)), [*events, T0 + 2000.0])
    sent = [
        (d.page.action, d.page.receivers, d.page.severity, d.reason)
        for d in decisions
        if d.page is not None
    ]
    assert sent == expected
    keys = {d.page.dedup_key for d in decisions if d.page is not None}
    assert len(keys) == 1


# ---------------------------------------------------------------------- storm protection


def test_storm_cap_holds_back_then_digests_then_pages_later() -> None:
    c = correlator(Topology(), storm_max_pages=2, storm_window=600.0)
    services = ["a", "b", "c", "d"]
    events = by_time(*(every(s, 0, 100) for s in services), every("c", 600, 700))
    decisions = feed(c, events)
    capped = [d for d in decisions if d.reason == "storm_capped"]
    # c and d were due at +60 beyond the cap of 2; each is counted once
    assert sorted(d.detail["root"] for d in capped) == ["c", "d"]
    sent = [(p.root_service, p.at - T0) for p in pages(decisions) if p.action == "trigger"]
    # a and b page at once; c, still anomalous when the window has room, pages then
    assert sent == [("a", 60.0), ("b", 60.0), ("c", 660.0)]
    late = next(p for p in pages(decisions) if p.root_service == "c")
    assert late.custom_details.get("storm_digest") in (None, [])


def test_storm_digest_names_the_incidents_held_back() -> None:
    c = correlator(Topology(), storm_max_pages=1, storm_window=600.0)
    events = by_time(every("a", 0, 100), every("b", 0, 100), every("e", 200, 300))
    decisions = feed(c, events)
    assert [d.detail["root"] for d in decisions if d.reason == "storm_capped"] == ["b", "e"]
    assert [p.root_service for p in pages(decisions) if p.action == "trigger"] == ["a"]
    # the resolve of a (sent after b and e were held back) carries the digest
    decisions += feed(c, [T0 + 1000.0])
    resolve = next(p for p in pages(decisions) if p.action == "resolve")
    assert resolve.root_service == "a"
    assert [d["root"] for d in resolve.custom_details["storm_digest"]] == ["b", "e"]


@pytest.mark.parametrize(
    ("cap", "sent_at", "allowed"),
    [
        # no cap at all
        (0, [0.0, 1.0, 2.0], True),
        # under the cap
        (3, [0.0, 1.0], True),
        # at the cap within the window
        (2, [0.0, 1.0], False),
        # the oldest left the window exactly at its edge
        (2, [-600.0, 1.0], True),
    ],
)
def test_storm_guard(cap: int, sent_at: list[float], allowed: bool) -> None:
    guard = StormGuard(max_pages=cap, window=600.0)
    for t in sent_at:
        guard.record(("oncall",), t)
    assert guard.allows(("oncall",), 0.0) is allowed
    assert guard.allows(("other",), 0.0)  # another routing key has its own budget


def test_new_reasons_are_declared_and_snapshots_round_trip() -> None:
    assert {
        ("fold", "flapping"),
        ("suppress", "storm_capped"),
        ("page", "low_urgency"),
    } <= set(DECISION_REASONS)
    events = flaps([(0, 10), (60, 70), (120, 130), (180, 190)])
    head = correlator(storm_max_pages=1)
    feed(head, [*events, *every("billing-db", 200, 300)])
    tail = correlator(storm_max_pages=1)
    tail.restore(json.loads(json.dumps(head.snapshot())))
    assert tail.snapshot() == head.snapshot()
    more = [*every("orders", 310, 400), *every("search", 310, 400)]
    assert [d.to_dict() for d in feed(tail, more)] == [d.to_dict() for d in feed(head, more)]

"""The correlator: grouping, hold, root cause, silences, resolve, bounds and checkpoints.

Scenarios are lists of anomalies and bare times (advances) on an explicit event clock.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import CorrelateConfig
from pipeline.correlate.incidents import (
    DECISION_REASONS,
    Correlator,
    Decision,
    feed,
    incident_id,
)
from pipeline.correlate.silence import Silencer, SilenceRule, parse_matcher
from pipeline.correlate.topology import Topology
from pipeline.model import ABSENCE_SERIES, Anomaly, Page, SeriesKey
from tests.builders import T0, alert

CHAIN = Topology({"frontend": ["checkout"], "checkout": ["payments"], "payments": ["payments-db"]})
RECEIVERS = ("oncall",)
Event = Anomaly | float


def at(offset: float) -> float:
    """An advance of the clock to `offset` seconds after T0."""
    return T0 + offset


def every(
    service: str, signal: str, start: float, stop: float, step: float = 10.0
) -> list[Anomaly]:
    """One anomaly every `step` seconds in `[start, stop]`: a persistent fault."""
    out = []
    offset = start
    while offset <= stop:
        out.append(alert(offset, service, signal))
        offset += step
    return out


def by_time(*streams: list[Anomaly]) -> list[Event]:
    """Several anomaly streams merged in event-time order (stable on ties)."""
    merged: list[Event] = [a for stream in streams for a in stream]
    return sorted(merged, key=_time)


def _time(event: Event) -> float:
    return event.ts if isinstance(event, Anomaly) else event


def correlator(
    topology: Topology = CHAIN,
    silences: tuple[SilenceRule, ...] = (),
    **config: Any,
) -> Correlator:
    settings = {"group_window": 300.0, "hold_for": 60.0, "resolve_after": 300.0} | config
    return Correlator(CorrelateConfig(**settings), topology, Silencer(silences), RECEIVERS)


def pages(decisions: list[Decision]) -> list[Page]:
    return [d.page for d in decisions if d.page is not None]


def kinds(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.kind, d.reason) for d in decisions]


def cascade(symptoms_first: bool) -> list[Event]:
    """payments-db fails; payments, checkout and frontend follow (or are noticed first)."""
    order = ["payments-db", "payments", "checkout", "frontend"]
    if symptoms_first:
        order.reverse()
    signals = {"payments-db": "latency", "payments": "errors", "checkout": "latency"}
    streams = [
        every(service, signals.get(service, "errors"), 3.0 * rank, 180.0)
        for rank, service in enumerate(order)
    ]
    return [*by_time(*streams), at(479.0), at(480.0), at(1000.0)]


# ---------------------------------------------------------------------- scenarios


@pytest.mark.parametrize(
    "symptoms_first",
    [
        # the database fails first and its callers follow
        False,
        # the callers are noticed first and the database only later
        True,
    ],
)
def test_cascade_pages_once_with_root_and_resolves_with_same_key(symptoms_first: bool) -> None:
    decisions = feed(correlator(), cascade(symptoms_first))
    sent = pages(decisions)
    assert [p.action for p in sent] == ["trigger", "resolve"]
    trigger, resolve = sent
    assert trigger.root_service == "payments-db"
    assert resolve.root_service == "payments-db"
    assert trigger.dedup_key == resolve.dedup_key
    first = "frontend" if symptoms_first else "payments-db"
    assert trigger.dedup_key == incident_id("default", first, T0)
    # one incident from start to end
    assert {d.incident_id for d in decisions} == {trigger.dedup_key}
    # the first anomaly at or after onset + hold_for pages
    assert trigger.at == T0 + 60.0
    # the last anomaly is at +180 (or +189 for the fourth stream), resolve_after is 300
    last = max(d.detail["ts"] for d in decisions if d.kind == "fold")
    assert resolve.at == T0 + 480.0
    assert resolve.custom_details["duration_s"] == last - T0
    assert resolve.custom_details["closed_by"] == "quiet"
    details = trigger.custom_details
    assert details["suspected_root_cause"] == "payments-db"
    assert details["services"] == ["checkout", "frontend", "payments", "payments-db"]
    assert details["symptoms"] == ["checkout", "frontend", "payments"]
    assert details["signals"] == ["errors", "latency"]
    assert details["onset"] == "2026-11-26T09:00:00.000Z"
    assert details["started_at"] == details["onset"]
    assert details["hold_for_s"] == 60.0
    assert details["suppressed"] == {"silenced": 0}
    folds = [d for d in decisions if d.kind == "fold" and d.at <= trigger.at]
    assert details["alerts_folded"] == len(folds)
    assert details["folded_by_reason"] == dict(sorted(Counter(d.reason for d in folds).items()))
    assert trigger.summary == (
        "frontend: errors, latency anomalous; suspected root cause payments-db "
        f"(4 services, {len(folds)} alerts)"
    )
    assert resolve.summary.startswith("resolved: frontend: errors, latency anomalous;")
    assert trigger.receivers == RECEIVERS
    assert trigger.severity == "critical"
    assert trigger.source == "quietpager"


@pytest.mark.parametrize(
    ("after", "closes_at"),
    [
        # no more anomalies: quiet from the last one at +180
        ([], 480.0),
        # one-offs on series new to the incident fold in but do not keep it open
        ([alert(400.0, "frontend", "traffic"), alert(450.0, "checkout", "traffic")], 480.0),
        # the root's series again within resolve_after of its last anomaly: still going on
        ([alert(400.0, "payments-db", "latency")], 700.0),
        # ... not a series' anomaly after more than resolve_after of its own quiet
        (
            [
                alert(100.0, "frontend", "traffic"),
                alert(400.0, "payments-db", "latency"),
                alert(450.0, "frontend", "traffic"),
            ],
            700.0,
        ),
    ],
)
def test_a_paged_incident_stays_open_on_recurring_anomalies_only(
    after: list[Anomaly], closes_at: float
) -> None:
    fault = every("payments-db", "latency", 0.0, 180.0)
    decisions = feed(correlator(), [*by_time(fault, after), at(2000.0)])
    closes = [d for d in decisions if d.kind == "page" and d.page and d.page.action == "resolve"]
    assert [d.at for d in closes] == [T0 + closes_at]
    assert sum(d.kind == "page" for d in decisions) == 2  # one trigger, one resolve


def test_a_held_incident_is_kept_open_by_any_related_anomaly() -> None:
    # Before it pages, an incident still waits out every anomaly that joins it.
    blip = every("payments-db", "latency", 0.0, 30.0)
    decisions = feed(correlator(), [*blip, alert(200.0, "checkout", "latency"), at(2000.0)])
    closes = [d for d in decisions if d.reason == "blip_recovered"]
    assert [d.at for d in closes] == [T0 + 500.0]


def test_cascade_fold_reasons_when_root_arrives_last() -> None:
    decisions = feed(correlator(), cascade(symptoms_first=True))
    first_of_each: dict[str, str] = {}
    for decision in decisions:
        if decision.kind == "fold":
            first_of_each.setdefault(decision.detail["service"], decision.reason)
    assert first_of_each == {
        "frontend": "new_incident_held",
        # each newly seen dependency moves the suspected root downstream
        "checkout": "root_changed",
        "payments": "root_changed",
        "payments-db": "root_changed",
    }
    changed = [d.detail for d in decisions if d.reason == "root_changed"]
    assert [(c["root_from"], c["root_to"]) for c in changed] == [
        ("frontend", "checkout"),
        ("checkout", "payments"),
        ("payments", "payments-db"),
    ]


def test_cascade_fold_reasons_when_root_arrives_first() -> None:
    decisions = feed(correlator(), cascade(symptoms_first=False))
    first_of_each: dict[str, str] = {}
    for decision in decisions:
        if decision.kind == "fold":
            first_of_each.setdefault(decision.detail["service"], decision.reason)
    assert first_of_each == {
        "payments-db": "new_incident_held",
        "payments": "symptom_of_root",
        "checkout": "symptom_of_root",
        "frontend": "symptom_of_root",
    }


def test_short_blip_never_pages_and_recovers() -> None:
    events: list[Event] = [*every("payments-db", "latency", 0.0, 30.0), at(329.0), at(330.0)]
    decisions = feed(correlator(hold_for=60.0), events)
    assert pages(decisions) == []
    assert kinds(decisions) == [
        ("fold", "new_incident_held"),
        ("fold", "dedup_same_series"),
        ("fold", "dedup_same_series"),
        ("fold", "dedup_same_series"),
        ("suppress", "blip_recovered"),
    ]
    recovered = decisions[-1]
    assert recovered.at == T0 + 330.0
    assert recovered.detail["duration_s"] == 30.0


@pytest.mark.parametrize(
    ("offsets", "pages_at"),
    [
        # a streak of 50 s < hold_for: held, never pages
        ([0, 10, 20, 30, 40, 50], None),
        # a streak of exactly hold_for: pages at the anomaly that completes it
        ([0, 10, 20, 30, 40, 50, 60], 60.0),
        # gaps of 30 s (= hold_max_gap) keep the streak alive: pages at 60
        ([0, 30, 60], 60.0),
        # gaps over hold_max_gap restart the streak: one-offs 40 s apart never page
        ([0, 40, 80, 120], None),
        # the streak restarts after the gap and then lasts the hold: pages at 100
        ([0, 40, 70, 100], 100.0),
    ],
)
def test_hold_boundary(offsets: list[float], pages_at: float | None) -> None:
    events: list[Event] = [*(alert(o, "payments-db") for o in offsets), at(2000)]
    sent = pages(feed(correlator(hold_for=60.0), events))
    if pages_at is None:
        assert sent == []
    else:
        assert [(p.action, p.at) for p in sent] == [
            ("trigger", T0 + pages_at),
            ("resolve", T0 + offsets[-1] + 300.0),
        ]


def test_related_one_offs_do_not_add_up_to_a_page() -> None:
    # A blip on the root and a single anomaly on a caller 60 s later: no series persisted.
    events: list[Event] = [
        alert(0, "payments-db"),
        alert(10, "payments-db"),
        alert(60, "checkout"),
        at(2000),
    ]
    assert pages(feed(correlator(topology=CHAIN), events)) == []


def test_two_unrelated_services_make_two_incidents() -> None:
    events = [
        *by_time(every("billing", "errors", 0.0, 120.0), every("search", "latency", 0.0, 120.0)),
        at(1000.0),
    ]
    sent = pages(feed(correlator(), events))
    triggers = [p for p in sent if p.action == "trigger"]
    resolves = [p for p in sent if p.action == "resolve"]
    assert sorted(p.root_service for p in triggers) == ["billing", "search"]
    assert len({p.dedup_key for p in triggers}) == 2
    assert {p.dedup_key for p in resolves} == {p.dedup_key for p in triggers}


def test_silenced_service_never_pages() -> None:
    silence = SilenceRule(
        (parse_matcher("service=merchant-portal"),), T0 - 10, T0 + 1000, "maintenance", "s-1"
    )
    events: list[Event] = [*every("merchant-portal", "errors", 0.0, 300.0), at(2000.0)]
    c = correlator(silences=(silence,))
    decisions = feed(c, events)
    assert pages(decisions) == []
    assert {(d.kind, d.reason) for d in decisions} == {("suppress", "silenced")}
    assert decisions[0].detail["silence_id"] == "s-1"
    assert decisions[0].detail["comment"] == "maintenance"
    assert decisions[0].incident_id == ""
    assert c.open_count == 0


def test_silence_ending_lets_the_fault_page_and_counts_what_it_muted() -> None:
    silence = SilenceRule((parse_matcher("service=~payments.*"),), T0, T0 + 100, "", "s-1")
    events: list[Event] = [
        *by_time(every("checkout", "latency", 0.0, 200.0), every("payments", "errors", 0.0, 200.0)),
        at(1000.0),
    ]
    decisions = feed(correlator(silences=(silence,)), events)
    trigger = pages(decisions)[0]
    # checkout pages alone while payments is silenced; payments' anomalies are counted on it
    assert trigger.root_service == "checkout"
    assert trigger.custom_details["suppressed"] == {"silenced": 6}
    assert trigger.custom_details["services"] == ["checkout"]
    silenced = [d for d in decisions if d.reason == "silenced"]
    assert len(silenced) == 10  # +0 .. +90
    assert {d.incident_id for d in silenced} == {trigger.dedup_key}
    resolve = pages(decisions)[-1]
    # after the silence, payments joins and becomes the suspected root
    assert resolve.action == "resolve"
    assert resolve.root_service == "payments"
    assert resolve.custom_details["suppressed"] == {"silenced": 10}


def test_late_symptom_joins_open_incident_instead_of_paging() -> None:
    events: list[Event] = [
        *by_time(
            every("payments-db", "latency", 0.0, 150.0),
            every("checkout", "latency", 5.0, 150.0),
        ),
        alert(100.5, "frontend", "errors"),
        at(2000.0),
    ]
    events.sort(key=_time)
    decisions = feed(correlator(), events)
    late = next(d for d in decisions if d.kind == "fold" and d.detail["service"] == "frontend")
    trigger, resolve = pages(decisions)
    assert late.reason == "symptom_of_root"
    assert late.detail["root"] == "payments-db"
    assert late.incident_id == trigger.dedup_key
    assert trigger.at < late.at
    assert resolve.dedup_key == trigger.dedup_key
    assert resolve.custom_details["symptoms"] == ["checkout", "frontend"]


def test_same_inputs_give_identical_pages() -> None:
    events = cascade(symptoms_first=True)
    first = feed(correlator(), events)
    second = feed(correlator(), events)
    assert [p.to_dict() for p in pages(first)] == [p.to_dict() for p in pages(second)]
    assert [d.to_dict() for d in first] == [d.to_dict() for d in second]
    assert json.dumps([p.to_dict() for p in pages(first)])  # JSON-able


# ---------------------------------------------------------------------- decision table


def _table_config(**overrides: Any) -> dict[str, Any]:
    return {"group_window": 300.0, "hold_for": 60.0, "resolve_after": 300.0} | overrides


@pytest.mark.parametrize(
    ("config", "events", "expected"),
    [
        # the first anomaly opens a held incident
        (_table_config(), [alert(0, "payments")], [("fold", "new_incident_held")]),
        # the same series again is deduplicated
        (
            _table_config(),
            [alert(0, "payments"), alert(5, "payments")],
            [("fold", "new_incident_held"), ("fold", "dedup_same_series")],
        ),
        # a new signal of the same service joins
        (
            _table_config(),
            [alert(0, "payments"), alert(5, "payments", "errors")],
            [("fold", "new_incident_held"), ("fold", "joined_incident")],
        ),
        # a caller of the root is a symptom
        (
            _table_config(),
            [alert(0, "payments"), alert(5, "frontend")],
            [("fold", "new_incident_held"), ("fold", "symptom_of_root")],
        ),
        # a dependency of the root becomes the root
        (
            _table_config(),
            [alert(0, "payments"), alert(5, "payments-db")],
            [("fold", "new_incident_held"), ("fold", "root_changed")],
        ),
        # a service the topology does not relate opens its own incident
        (
            _table_config(),
            [alert(0, "payments"), alert(5, "billing")],
            [("fold", "new_incident_held"), ("fold", "new_incident_held")],
        ),
        # the same service in another scope is another incident
        (
            _table_config(),
            [alert(0, "payments"), alert(5, "payments", scope="eu")],
            [("fold", "new_incident_held"), ("fold", "new_incident_held")],
        ),
        # a related anomaly beyond the group window opens a new incident
        (
            _table_config(group_window=30.0),
            [alert(0, "payments"), alert(31, "frontend")],
            [("fold", "new_incident_held"), ("fold", "new_incident_held")],
        ),
        # ... and exactly at the window's edge it still joins
        (
            _table_config(group_window=30.0),
            [alert(0, "payments"), alert(30, "frontend")],
            [("fold", "new_incident_held"), ("fold", "symptom_of_root")],
        ),
        # a late (out-of-order) anomaly still joins and does not page on its own
        (
            _table_config(),
            [alert(20, "payments"), alert(10, "payments", "errors")],
            [("fold", "new_incident_held"), ("fold", "joined_incident")],
        ),
        # hold_for 0 pages on the first anomaly
        (
            _table_config(hold_for=0.0),
            [alert(0, "payments")],
            [("fold", "new_incident_held"), ("page", "first_notification")],
        ),
        # a persistent series pages once, at the first anomaly past the hold
        (
            _table_config(),
            [
                alert(0, "payments"),
                alert(30, "payments"),
                alert(60, "payments"),
                alert(70, "payments"),
            ],
            [
                ("fold", "new_incident_held"),
                ("fold", "dedup_same_series"),
                ("fold", "dedup_same_series"),
                ("page", "first_notification"),
                ("fold", "dedup_same_series"),
            ],
        ),
        # a quiet incident that paged resolves on the advance that makes it due
        (
            _table_config(hold_for=0.0),
            [alert(0, "payments"), at(299.0), at(300.0), at(900.0)],
            [("fold", "new_incident_held"), ("page", "first_notification"), ("page", "resolved")],
        ),
        # resolution due by an anomaly's own time comes before that anomaly's decision
        (
            _table_config(),
            [alert(0, "payments"), alert(400, "payments")],
            [
                ("fold", "new_incident_held"),
                ("suppress", "blip_recovered"),
                ("fold", "new_incident_held"),
            ],
        ),
        # an anomaly older than now - resolve_after is stale: it opens nothing
        (
            _table_config(),
            [at(1000.0), alert(700, "payments"), alert(701, "payments")],
            [("suppress", "stale"), ("fold", "new_incident_held")],
        ),
        # the clock never goes backwards: an earlier advance changes nothing
        (
            _table_config(),
            [alert(0, "payments"), at(100.0), at(50.0), at(299.0)],
            [("fold", "new_incident_held")],
        ),
        # a full table evicts the least recently active incident that never paged
        (
            _table_config(max_incidents=1),
            [alert(0, "payments"), alert(5, "billing")],
            [
                ("fold", "new_incident_held"),
                ("suppress", "evicted"),
                ("fold", "new_incident_held"),
            ],
        ),
        # ... and resolves one that had paged
        (
            _table_config(max_incidents=1, hold_for=0.0),
            [alert(0, "payments"), alert(5, "billing")],
            [
                ("fold", "new_incident_held"),
                ("page", "first_notification"),
                ("page", "evicted"),
                ("fold", "new_incident_held"),
                ("page", "first_notification"),
            ],
        ),
    ],
)
def test_decision_reasons(
    config: dict[str, Any], events: list[Event], expected: list[tuple[str, str]]
) -> None:
    c = Correlator(CorrelateConfig(**config), CHAIN, Silencer(), RECEIVERS)
    decisions = feed(c, events)
    assert kinds(decisions) == expected
    assert set(kinds(decisions)) <= set(DECISION_REASONS)


def test_eviction_resolve_page_keeps_the_key() -> None:
    c = correlator(max_incidents=2, hold_for=0.0)
    decisions = feed(
        c, [alert(0, "payments"), alert(5, "billing"), alert(6, "billing"), alert(9, "search")]
    )
    sent = pages(decisions)
    assert [(p.action, p.root_service) for p in sent] == [
        ("trigger", "payments"),
        ("trigger", "billing"),
        # payments was the least recently active of the two open ones
        ("resolve", "payments"),
        ("trigger", "search"),
    ]
    assert sent[2].dedup_key == sent[0].dedup_key
    assert sent[2].custom_details["closed_by"] == "evicted"
    assert [v.root_service for v in c.open_incidents] == ["billing", "search"]


@pytest.mark.parametrize(
    ("recent", "expected_root"),
    [
        # `left` was active last, so the shared caller joins it
        ("left", "left"),
        # `right` was active last
        ("right", "right"),
    ],
)
def test_prefers_most_recently_active_incident(recent: str, expected_root: str) -> None:
    topology = Topology({"top": ["left", "right"]})
    other = "right" if recent == "left" else "left"
    c = correlator(topology)
    feed(c, [alert(0, other), alert(1, recent), alert(2, "top")])
    by_root = {v.root_service: v.services for v in c.open_incidents}
    assert by_root[expected_root] == tuple(sorted(("top", expected_root)))
    assert by_root[other] == (other,)


def test_trigger_lists_top_series_by_peak_score() -> None:
    events = [
        alert(0, "payments", "errors", score=0.995, value=10.0),
        alert(1, "payments", "latency", score=0.9991, value=3.0),
        alert(2, "payments", "errors", score=0.999, value=12.0),  # new errors peak
        alert(3, "payments", "saturation", score=0.991),
        alert(31, "payments", "latency", score=0.992),  # lower than the latency peak
        alert(61, "payments", "latency", score=0.992),  # completes the hold
    ]
    trigger = pages(feed(correlator(), events))[0]
    assert trigger.custom_details["series"] == [
        {
            "series": 'latency_metric{service="payments"}',
            "service": "payments",
            "signal": "latency",
            "peak_score": 0.9991,
            "value": 3.0,
            "expected": 1.0,
        },
        {
            "series": 'errors_metric{service="payments"}',
            "service": "payments",
            "signal": "errors",
            "peak_score": 0.999,
            "value": 12.0,
            "expected": 1.0,
        },
        {
            "series": 'saturation_metric{service="payments"}',
            "service": "payments",
            "signal": "saturation",
            "peak_score": 0.991,
            "value": 2.0,
            "expected": 1.0,
        },
    ]
    assert trigger.custom_details["folded_by_reason"] == {
        "dedup_same_series": 3,
        "joined_incident": 2,
        "new_incident_held": 1,
    }
    assert trigger.summary == (
        "payments: errors, latency, saturation anomalous; suspected root cause payments "
        "(1 service, 6 alerts)"
    )


# ---------------------------------------------------------------------- checkpoints


def _mixed_scenario() -> list[Event]:
    silence_free = by_time(
        *[every(s, "latency", 3.0 * i, 200.0) for i, s in enumerate(["frontend", "payments-db"])],
        every("billing", "errors", 50.0, 65.0),
        every("search", "traffic", 100.0, 400.0, step=25.0),
        [alert(130.0, "merchant-portal", "errors")],
    )
    return [*silence_free, at(450.0), at(520.0), at(2000.0)]


SILENCE = SilenceRule((parse_matcher("service=merchant-portal"),), T0, T0 + 3600, "", "s-1")


@pytest.mark.parametrize(
    "split",
    [
        # before anything happened
        0,
        # while the first incident is held
        5,
        # after the first page, with several incidents open
        30,
        # near the end, with resolves still due
        -3,
    ],
)
def test_snapshot_restore_gives_same_subsequent_decisions(split: int) -> None:
    events = _mixed_scenario()
    whole = feed(correlator(silences=(SILENCE,)), events)
    first_half = correlator(silences=(SILENCE,))
    before = feed(first_half, events[:split])
    state = json.loads(json.dumps(first_half.snapshot()))
    resumed = correlator(silences=(SILENCE,))
    resumed.restore(state)
    assert resumed.snapshot() == first_half.snapshot()
    assert resumed.open_incidents == first_half.open_incidents
    after = feed(resumed, events[split:])
    assert [d.to_dict() for d in before + after] == [d.to_dict() for d in whole]
    assert [p.to_dict() for p in pages(before + after)] == [p.to_dict() for p in pages(whole)]


def test_mixed_scenario_outcome() -> None:
    decisions = feed(correlator(silences=(SILENCE,)), _mixed_scenario())
    outcome = [(p.action, p.root_service) for p in pages(decisions)]
    assert outcome == [
        ("trigger", "payments-db"),
        ("trigger", "search"),
        ("resolve", "payments-db"),
        ("resolve", "search"),
    ]
    counts = Counter(kinds(decisions))
    assert counts[("suppress", "blip_recovered")] == 1  # billing's 15 s blip
    assert counts[("suppress", "silenced")] == 1


@pytest.mark.parametrize(
    ("state", "message"),
    [
        # another version
        ({"version": 99, "now": None, "seq": 0, "incidents": []}, "version"),
        # a missing key
        ({"version": 1, "now": None, "incidents": []}, "bad correlator snapshot"),
        # an incident missing its fields
        ({"version": 1, "now": 1.0, "seq": 1, "incidents": [{"id": "x"}]}, "bad correlator"),
    ],
)
def test_restore_rejects_bad_state(state: dict[str, Any], message: str) -> None:
    c = correlator()
    with pytest.raises(ValueError, match=message):
        c.restore(state)


# ---------------------------------------------------------------------- invariants

_SERVICES = ["frontend", "checkout", "payments", "payments-db", "billing", "merchant-portal"]
_SIGNALS = ["latency", "errors", "traffic"]
_STEP = st.one_of(
    # an anomaly `gap` seconds after the previous event, possibly reported `late` seconds late
    st.tuples(
        st.just("alert"),
        st.floats(0, 120),
        st.sampled_from(_SERVICES),
        st.sampled_from(_SIGNALS),
        st.sampled_from([0.0, 0.0, 0.0, 30.0, 500.0]),
    ),
    # the clock moves on by `gap` seconds with no anomaly
    st.tuples(st.just("advance"), st.floats(0, 400), st.just(""), st.just(""), st.just(0.0)),
)


def _events(steps: list[tuple[str, float, str, str, float]]) -> list[Event]:
    events: list[Event] = []
    offset = 0.0
    for kind, gap, service, signal, late in steps:
        offset += gap
        events.append(alert(offset - late, service, signal) if kind == "alert" else at(offset))
    return [*events, at(offset + 10_000.0)]


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(_STEP, max_size=40), split=st.integers(0, 41), capacity=st.integers(1, 4))
def test_invariants_hold_for_any_stream(
    steps: list[tuple[str, float, str, str, float]], split: int, capacity: int
) -> None:
    events = _events(steps)
    c = correlator(silences=(SILENCE,), max_incidents=capacity)
    decisions = feed(c, events)
    anomaly_reasons = {"silenced", "stale", *(r for k, r in DECISION_REASONS if k == "fold")}
    # one fold-or-suppress decision per anomaly
    assert sum(d.reason in anomaly_reasons for d in decisions) == sum(
        isinstance(e, Anomaly) for e in events
    )
    # decision times never go backwards
    times = [d.at for d in decisions]
    assert times == sorted(times)
    # each incident triggers at most once, and every trigger is resolved once, later
    triggers = Counter(p.dedup_key for p in pages(decisions) if p.action == "trigger")
    resolves = Counter(p.dedup_key for p in pages(decisions) if p.action == "resolve")
    assert set(triggers.values()) <= {1}
    assert resolves == triggers
    # nothing pages before its hold is over
    for decision in decisions:
        if decision.reason == "first_notification":
            assert decision.at >= decision.detail["onset"] + 60.0
    # the far-future advance closed everything
    assert c.open_count == 0
    # a checkpoint anywhere resumes to the same decisions
    split = min(split, len(events))
    head = correlator(silences=(SILENCE,), max_incidents=capacity)
    before = feed(head, events[:split])
    tail = correlator(silences=(SILENCE,), max_incidents=capacity)
    tail.restore(json.loads(json.dumps(head.snapshot())))
    assert [d.to_dict() for d in before + feed(tail, events[split:])] == [
        d.to_dict() for d in decisions
    ]


# ------------------------------------------------- two faults under one shared caller

SIBLINGS = Topology({"frontend": ["a-db", "b-db"]})


def _absent(offset: float, service: str) -> Anomaly:
    """The detect stage's anomaly for a service that stopped reporting."""
    quiet = alert(offset, service, "traffic", value=0.0)
    return replace(quiet, series=SeriesKey.of(ABSENCE_SERIES, {"service": service}))


@pytest.mark.parametrize(
    ("b_events", "b_onset"),
    [
        # b-db stops reporting: a fault of its own, not its callers' traffic
        ([_absent(float(t), "b-db") for t in range(300, 1201, 30)], 300.0),
        # b-db's traffic moves once with frontend (it joins a-db's incident for that), then
        # b-db's own latency fails: that is a fault of its own, not a member's noise
        ([alert(200.0, "b-db", "traffic"), *every("b-db", "latency", 600, 1200)], 600.0),
    ],
    ids=["absent", "traffic-one-off-then-latency"],
)
def test_a_second_fault_under_a_shared_caller_pages_on_its_own(
    b_events: list[Anomaly], b_onset: float
) -> None:
    a_fault = [*every("a-db", "latency", 0, 1200), *every("frontend", "errors", 10, 1200)]
    decisions = feed(correlator(SIBLINGS), [*by_time(a_fault, b_events), at(3000)])
    triggers = [p for p in pages(decisions) if p.action == "trigger"]
    assert [p.root_service for p in triggers] == ["a-db", "b-db"]
    assert triggers[1].at >= T0 + b_onset + 60  # after its own hold


DIAMOND = Topology({"frontend": ["a", "b"], "a": ["db"], "b": ["db"]})


@pytest.mark.parametrize("db_from", [0, 50, 70, 120])
def test_a_paged_incident_keeps_its_series_until_the_fault_ends(db_from: float) -> None:
    """a and b (siblings) page before their shared dependency db shows: when db then joins one
    incident, the other's series stayed there and it went quiet, so it sent "resolved" at
    +380 s while the fault ran to +600 s."""
    fault = by_time(
        every("a", "latency", 0, 600),
        every("b", "latency", 0, 600),
        every("db", "saturation", db_from, 600),
        every("frontend", "latency", 10, 600),
    )
    decisions = feed(correlator(DIAMOND), [*fault, at(1500)])
    resolves = [p for p in pages(decisions) if p.action == "resolve"]
    assert resolves
    assert all(p.at >= T0 + 600 + 300 for p in resolves)  # the last anomaly + resolve_after


@pytest.mark.parametrize(
    ("silence_from", "expected"),
    [
        # silenced after the page, while the fault goes on: no "resolved" until it ends (the
        # resolve went out at +490 s while db failed to +900 s)
        (200.0, [("trigger", 60.0), ("resolve", 1200.0)]),
        # silenced before it could page: nothing pages, and nothing is held open
        (0.0, []),
    ],
)
def test_a_silenced_fault_that_paged_does_not_resolve_while_it_fires(
    silence_from: float, expected: list[tuple[str, float]]
) -> None:
    rule = SilenceRule((parse_matcher("service=db"),), T0 + silence_from, T0 + 3000, "", "s")
    c = correlator(Topology({"frontend": ["db"]}), silences=(rule,))
    decisions = feed(c, [*every("db", "latency", 0, 900), at(1800)])
    assert [(p.action, p.at - T0) for p in pages(decisions)] == expected


@pytest.mark.parametrize(
    ("late_until", "expected"),
    [
        # db fails 0..100 s; event time reaches +400 s (the incident resolves), then db's
        # anomalies of 110..250 s arrive late: they belong to what resolved (they opened a
        # new incident that paged again)
        (250, [("trigger", 60.0), ("resolve", 400.0)]),
    ],
)
def test_late_anomalies_of_a_resolved_incident_do_not_page_again(
    late_until: float, expected: list[tuple[str, float]]
) -> None:
    c = correlator(Topology({"frontend": ["db"]}))
    late = every("db", "latency", 110, late_until)
    decisions = feed(c, [*every("db", "latency", 0, 100), at(400), *late, at(1500)])
    assert [(p.action, p.at - T0) for p in pages(decisions)] == expected
    assert sum(d.reason == "stale" for d in decisions) == len(late)
    # a fresh fault of the same series, after the close, pages as before
    fresh = feed(c, [*every("db", "latency", 1600, 1700), at(2500)])
    assert [p.action for p in pages(fresh)] == ["trigger", "resolve"]


def test_what_is_remembered_of_closed_incidents_is_bounded() -> None:
    c = correlator(Topology())
    for index in range(50):  # 50 one-series faults, one after another
        start = index * 1000.0
        feed(c, [*every(f"s{index}", "latency", start, start + 100)])
    feed(c, [at(50 * 1000.0 + 5000)])
    assert len(c._closed) == 0

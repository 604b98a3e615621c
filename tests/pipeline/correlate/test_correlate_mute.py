"""The muters, one table each: does it mute, and why; and the stage that asks them in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.config import CorrelateConfig
from pipeline.correlate.flap import FlapDetector
from pipeline.correlate.incidents import Correlator, feed
from pipeline.correlate.mute import (
    FlapMuter,
    Muted,
    MuteStage,
    SilenceMuter,
    StaleMuter,
    StormMuter,
)
from pipeline.correlate.silence import Silencer, SilenceRule, parse_matcher
from pipeline.correlate.storm import StormGuard
from pipeline.correlate.topology import Topology
from pipeline.model import Anomaly
from tests.builders import T0, alert

Answer = tuple[str, str, dict[str, Any]] | None  # (kind, reason, detail) or not muted


def answer(muted: Muted | None) -> Answer:
    return None if muted is None else (muted.kind, muted.reason, muted.detail)


# ------------------------------------------------------------------------------------ stale

NOW = T0 + 1000.0


@pytest.mark.parametrize(
    ("closed", "anomaly", "expected"),
    [
        # exactly resolve_after old: too old to keep any incident open
        ((), alert(700.0, "db"), ("suppress", "stale", {})),
        # a second younger than that: folds as usual
        ((), alert(701.0, "db"), None),
        # its series' paged incident closed after it was stamped: belongs to what resolved
        (("db", 900.0), alert(899.0, "db"), ("suppress", "stale", {})),
        # stamped at the close itself: a new episode
        (("db", 900.0), alert(900.0, "db"), None),
        # another series' close does not matter
        (("web", 900.0), alert(899.0, "db"), None),
    ],
)
def test_stale_muter(
    closed: tuple[str, float] | tuple[()], anomaly: Anomaly, expected: Answer
) -> None:
    stale = StaleMuter(resolve_after=300.0)
    if closed:
        service, at = closed
        stale.close([alert(0.0, service).series.id], T0 + at)
    assert answer(stale.mutes(anomaly, NOW)) == expected


def test_stale_muter_forgets_closes_once_the_age_rule_covers_them() -> None:
    stale = StaleMuter(resolve_after=300.0)
    series = alert(0.0, "db").series.id
    stale.close([series], T0 + 900.0)
    stale.forget(T0 + 1199.0)
    assert stale.closed == {series: T0 + 900.0}
    stale.forget(T0 + 1200.0)
    assert stale.closed == {}


# ------------------------------------------------------------------------------------ silence

WINDOW = SilenceRule(
    (parse_matcher("service=db"),), T0, T0 + 600.0, comment="maintenance", id="s-1"
)
SILENCED = ("suppress", "silenced", {"silence_id": "s-1", "comment": "maintenance"})


@pytest.mark.parametrize(
    ("anomaly", "now", "expected"),
    [
        # matching labels inside the window
        (alert(10.0, "db"), T0 + 10.0, SILENCED),
        # the window is half-open: at ends_at alerts page again
        (alert(600.0, "db"), T0 + 600.0, None),
        # before starts_at
        (alert(-1.0, "db"), T0, None),
        # another service
        (alert(10.0, "web"), T0 + 10.0, None),
        # judged at the anomaly's own time, not the correlator's clock
        (alert(590.0, "db"), T0 + 900.0, SILENCED),
    ],
)
def test_silence_muter(anomaly: Anomaly, now: float, expected: Answer) -> None:
    assert answer(SilenceMuter(Silencer([WINDOW])).mutes(anomaly, now)) == expected


# ------------------------------------------------------------------------------------ flap


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        # a first anomaly is never flapping
        ((0.0,), None),
        # a steady streak (gaps within hold_max_gap) does not re-enter
        ((0.0, 10.0, 20.0, 30.0), None),
        # one re-entry in ten minutes: 10 % of the changes possible, under flap_high
        ((0.0, 120.0), None),
        # two re-entries in ten minutes: 20 %, flapping
        ((0.0, 120.0, 240.0), ("fold", "flapping", {"flap_percent": 20.0})),
    ],
)
def test_flap_muter(offsets: tuple[float, ...], expected: Answer) -> None:
    muter = FlapMuter(FlapDetector(window=3600.0, gap=30.0, high=20.0, low=10.0))
    answers = [muter.mutes(alert(offset, "db"), T0 + offset) for offset in offsets]
    assert all(a is None for a in answers[:-1])
    assert answer(answers[-1]) == expected


# ------------------------------------------------------------------------------------ storm


@pytest.mark.parametrize(
    ("max_pages", "sent", "receivers", "at", "expected"),
    [
        # nothing sent yet
        (2, (), ("oncall",), 0.0, None),
        # one sent, room for one more
        (2, (0.0,), ("oncall",), 1.0, None),
        # the cap reached within the window
        (2, (0.0, 1.0), ("oncall",), 2.0, ("suppress", "storm_capped", {"receivers": ["oncall"]})),
        # the window slid past the first send
        (2, (0.0, 1.0), ("oncall",), 600.0, None),
        # another set of receivers has a cap of its own
        (2, (0.0, 1.0), ("team",), 2.0, None),
        # a cap of 0 is no cap
        (0, (0.0, 1.0, 2.0), ("oncall",), 3.0, None),
    ],
)
def test_storm_muter(
    max_pages: int, sent: tuple[float, ...], receivers: tuple[str, ...], at: float, expected: Answer
) -> None:
    guard = StormGuard(max_pages=max_pages, window=600.0)
    for t in sent:
        guard.record(("oncall",), T0 + t)
    assert answer(StormMuter(guard).mutes(receivers, T0 + at)) == expected


# ------------------------------------------------------------------------------------ stage


@dataclass
class FakeMuter:
    """Mutes the subjects it is told to under its reason, and remembers what it was asked."""

    reason: str
    muting: frozenset[str]
    asked: list[str] = field(default_factory=list)

    def mutes(self, subject: str, now: float) -> Muted | None:
        self.asked.append(subject)
        return Muted("suppress", self.reason) if subject in self.muting else None


@pytest.mark.parametrize(
    ("subject", "reason", "asked"),
    [
        # the first muter answers; the second is not asked
        ("a", "first", (["a"], [])),
        # the first lets it pass, the second mutes
        ("b", "second", (["b"], ["b"])),
        # both would mute: the first one's reason counts
        ("ab", "first", (["ab"], [])),
        # neither mutes
        ("c", None, (["c"], ["c"])),
    ],
)
def test_mute_stage_asks_in_order_and_stops_at_the_first(
    subject: str, reason: str | None, asked: tuple[list[str], list[str]]
) -> None:
    first = FakeMuter("first", frozenset({"a", "ab"}))
    second = FakeMuter("second", frozenset({"b", "ab"}))
    stage = MuteStage[str]((first, second))
    muted = stage.mutes(subject, 0.0)
    assert (muted.reason if muted else None) == reason
    assert (first.asked, second.asked) == asked
    assert stage.muted == ({reason: 1} if reason else {})


def test_stages_sharing_a_count_count_every_reason_in_one_place() -> None:
    counts: dict[str, int] = {}
    anomalies = MuteStage[str]((FakeMuter("silenced", frozenset({"x"})),), counts)
    triggers = MuteStage[str]((FakeMuter("storm_capped", frozenset({"y"})),), counts)
    for subject in ("x", "x", "z"):
        anomalies.mutes(subject, 0.0)
    triggers.mutes("y", 0.0)
    assert counts == {"silenced": 2, "storm_capped": 1}


def test_the_correlator_counts_what_its_muters_muted_by_reason() -> None:
    silence = SilenceRule((parse_matcher("service=db"),), T0, T0 + 100.0, id="s-1")
    correlator = Correlator(
        CorrelateConfig(hold_for=60.0, resolve_after=300.0),
        Topology(),
        Silencer([silence]),
        ("oncall",),
    )
    feed(correlator, [alert(t, "db") for t in (0.0, 10.0, 200.0)] + [alert(-200.0, "db")])
    assert correlator.muted_by_reason == {"silenced": 2, "stale": 1}

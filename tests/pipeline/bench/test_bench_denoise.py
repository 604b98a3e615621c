"""The de-noising benchmark: the Alertmanager-style baseline, the scoring, one real scenario."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from pipeline.bench.alertmanager import AlertmanagerBaseline
from pipeline.bench.denoise import Score, Trigger, render, run_denoise, run_scenario, score
from pipeline.cli import main
from pipeline.correlate.silence import Silencer, SilenceRule, parse_matcher
from pipeline.model import Anomaly, SeriesKey, Signal
from pipeline.simulate import TrueIncident

T0 = 1_795_683_600.0


def alert(offset: float, service: str = "cart", signal: str = "latency") -> Anomaly:
    return Anomaly(
        ts=T0 + offset,
        series=SeriesKey.of(f"{signal}_metric", {"service": service}),
        service=service,
        signal=Signal(signal),
        value=2.0,
        expected=1.0,
        score=0.999,
        threshold=0.99,
    )


def notifications(baseline: AlertmanagerBaseline, alerts: list[Anomaly]) -> list[tuple[str, float]]:
    out = []
    for anomaly in alerts:
        out.extend(baseline.observe(anomaly))
    out.extend(baseline.advance(float("inf")))
    return [(n.kind, n.at - T0) for n in out]


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        # one alert: notified after group_wait, resolved at the first flush past resolve_timeout
        ([alert(0)], [("first", 30.0), ("resolve", 330.0)]),
        # a persistent alert is notified once, then repeated after repeat_interval
        (
            [alert(float(t)) for t in range(0, 4 * 3600 + 600, 30)],
            [("first", 30.0), ("repeat", 14430.0), ("resolve", 15330.0)],
        ),
        # the same service, another signal: another group, another page
        (
            [alert(0), alert(5, signal="errors")],
            [("first", 30.0), ("first", 35.0), ("resolve", 330.0), ("resolve", 335.0)],
        ),
        # a blip, then the same alert after the group was deleted: a new page (new dedup key)
        (
            [alert(0), alert(400)],
            [("first", 30.0), ("resolve", 330.0), ("first", 430.0), ("resolve", 730.0)],
        ),
        # the alert fires again before the group resolved: no new page, no update
        ([alert(0), alert(200)], [("first", 30.0), ("resolve", 630.0)]),
    ],
)
def test_alertmanager_baseline(alerts: list[Anomaly], expected: list[tuple[str, float]]) -> None:
    assert notifications(AlertmanagerBaseline(), alerts) == expected


def test_alertmanager_baseline_update_on_new_alert_in_group_and_silences() -> None:
    other = Anomaly(
        T0 + 100,
        SeriesKey.of("latency_metric", {"service": "cart", "pod": "b"}),
        "cart",
        Signal.LATENCY,
        2.0,
        1.0,
        0.999,
        0.99,
    )
    # a second series of the same (service, signal) joins the group: an update at the interval
    assert notifications(AlertmanagerBaseline(), [alert(0), other]) == [
        ("first", 30.0),
        ("update", 330.0),
        ("resolve", 630.0),
    ]
    rule = SilenceRule((parse_matcher("service=cart"),), T0, T0 + 60)
    baseline = AlertmanagerBaseline(Silencer([rule]))
    assert notifications(baseline, [alert(0), alert(100, "web")]) == [
        ("first", 130.0),
        ("resolve", 430.0),
    ]
    assert baseline.silenced == 1


def truth(kind: str, onset: float, end: float, root: str = "db", **extra: object) -> TrueIncident:
    affected = extra.pop("affected", (root, "api"))
    episodes = extra.pop("episodes", ())
    assert not extra
    return TrueIncident(f"{kind}-{onset:g}", kind, onset, end, root, affected, episodes)  # type: ignore[arg-type]


def trigger(
    at: float, root: str = "db", *services: str, resolved_at: float | None = None
) -> Trigger:
    return Trigger(at, f"k{at:g}", root, frozenset({root, *services}), resolved_at)


@pytest.mark.parametrize(
    ("incidents", "triggers", "field", "expected"),
    [
        # a trigger on the root during the fault detects it, with its delay
        ([truth("fault", 0, 600)], [trigger(120)], "time_to_page", [120.0]),
        # a trigger naming the wrong root still detects, but the root is wrong
        ([truth("fault", 0, 600)], [trigger(120, "api")], "root_correct", 0),
        # a trigger long after the end (beyond the grace) is a false page
        ([truth("fault", 0, 600)], [trigger(1300)], "false_pages", 1),
        # a trigger on an unaffected service is a false page
        ([truth("fault", 0, 600)], [trigger(100, "web")], "false_pages", 1),
        # two triggers for one fault: two pages on one detected incident
        ([truth("fault", 0, 600)], [trigger(100), trigger(300)], "pages_on_detected", 2),
        # a page on a blip counts as a transient that paged
        ([truth("blip", 0, 60)], [trigger(50)], "transient_paged", 1),
        # flapping: each stretch is one episode; two pages in one stretch count once
        (
            [truth("flap", 0, 900, episodes=((0, 60), (300, 400), (700, 800)))],
            [trigger(350), trigger(390)],
            "transient_paged",
            1,
        ),
        # a page during planned maintenance is counted as such
        ([truth("maintenance", 0, 600)], [trigger(100)], "maintenance_pages", 1),
        # a stopped service's delay is kept apart from the faults'
        ([truth("stopped", 0, 600)], [trigger(210)], "time_to_page_stopped", [210.0]),
        # the resolve of an incident's first page counts from the incident's true end
        ([truth("fault", 0, 600)], [trigger(120, resolved_at=900)], "time_to_resolve", [300.0]),
        # ... a later page's resolve does not
        (
            [truth("fault", 0, 600)],
            [trigger(120), trigger(300, resolved_at=900)],
            "time_to_resolve",
            [],
        ),
        # a first page that never resolved is counted as such
        ([truth("fault", 0, 600)], [trigger(120), trigger(300, resolved_at=900)], "unresolved", 1),
    ],
)
def test_score(
    incidents: list[TrueIncident], triggers: list[Trigger], field: str, expected: object
) -> None:
    assert getattr(score(incidents, triggers, 100), field) == expected


def test_overlapping_incidents_each_get_their_own_page() -> None:
    incidents = [
        truth("fault", 0, 600, "a-db", affected=("a-db", "a", "web")),
        truth("fault", 100, 700, "b-db", affected=("b-db", "b", "web")),
    ]
    result = score(incidents, [trigger(120, "a-db", "web"), trigger(220, "b-db", "web")], 10)
    assert (result.detected, result.pages_on_detected, result.root_correct) == (2, 2, 2)
    assert result.figures()["pages per detected incident"] == "1.00"
    assert result.figures()["compression"] == "80.0%"


def test_stopped_scenario_end_to_end(tmp_path: Path) -> None:
    result = run_scenario("stopped", 1)
    ours, theirs = result.quietpager, result.baseline
    assert ours.raw_alerts == theirs.raw_alerts > 0  # the identical anomaly stream
    # quietpager pages once, on the silent service, within five minutes of it going quiet
    assert (ours.pageable, ours.detected, ours.pages, ours.false_pages) == (1, 1, 1, 0)
    assert ours.root_correct == 1
    assert 90.0 < ours.time_to_page_stopped[0] <= 300.0
    # the baseline pages on every noisy one-off
    assert theirs.pages > 20 * ours.pages
    assert ("fold", "new_incident_held") in result.decisions
    text = render([result, result])
    assert "### stopped" in text
    assert "### overall" in text
    assert "| incident recall | 100.0% (2/2) |" in text


def test_cli_writes_tables_and_results(tmp_path: Path) -> None:
    out = io.StringIO()
    run_denoise(["blips"], 1, tmp_path, out)
    assert "| blips + flap episodes paged | 0.0% (0/8) |" in out.getvalue()
    data = orjson.loads((tmp_path / "results.json").read_bytes())
    assert data["blips"]["quietpager"]["pages sent (new dedup keys)"] == "0"
    with pytest.raises(SystemExit):
        main(["bench", "denoise", "--scenario", "nope"])


def test_score_pools() -> None:
    a, b = Score(raw_alerts=10, pages=1, time_to_page=[1.0]), Score(raw_alerts=5, pages=2)
    a.add(b)
    assert (a.raw_alerts, a.pages, a.time_to_page) == (15, 3, [1.0])


def test_model_override_changes_the_anomaly_stream_not_the_page() -> None:
    golden = run_scenario("stopped", 1, model="golden")
    likelihood = run_scenario("stopped", 1, model="likelihood")
    assert golden.quietpager.raw_alerts != likelihood.quietpager.raw_alerts
    for result in (golden, likelihood):
        assert (result.quietpager.detected, result.quietpager.false_pages) == (1, 0)

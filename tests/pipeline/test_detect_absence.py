"""Absence detection in the detect stage: a service that stops reporting becomes an anomaly."""

from __future__ import annotations

import pytest

from pipeline.config import DetectConfig
from pipeline.detect import DetectStage
from pipeline.model import ABSENCE_SERIES, MetricPoint, SeriesKey, Signal

T0 = 1_795_683_600.0


def point(service: str, ts: float, name: str = "http_requests_per_second") -> MetricPoint:
    return MetricPoint(SeriesKey.of(name, {"service": service}), 100.0, T0 + ts)


def stage(**config: object) -> DetectStage:
    return DetectStage(DetectConfig.model_validate({"warmup_points": 5} | config))


def report(detect: DetectStage, services: list[str], start: float, stop: float) -> None:
    """Each service reports one point every 30 s in `[start, stop]`."""
    t = start
    while t <= stop:
        for service in services:
            detect.observe(point(service, t))
        t += 30.0


@pytest.mark.parametrize(
    ("quiet_for", "absent"),
    [
        # two intervals late: not yet absent
        (60.0, []),
        # exactly three intervals: not yet (strictly more is needed)
        (90.0, []),
        # past three intervals of silence: absent
        (100.0, ["cart"]),
        # long silent: still absent at each call
        (1800.0, ["cart"]),
    ],
)
def test_service_that_stops_reporting_is_absent(quiet_for: float, absent: list[str]) -> None:
    detect = stage()
    report(detect, ["cart", "web"], 0.0, 300.0)
    # web keeps reporting (moving event time on); cart went quiet after +300
    report(detect, ["web"], 330.0, 300.0 + quiet_for)
    found = detect.absences(T0 + 300.0 + quiet_for)
    assert [a.service for a in found] == absent
    for anomaly in found:
        assert anomaly.signal is Signal.TRAFFIC
        assert anomaly.series.name == ABSENCE_SERIES
        assert anomaly.series.label("service") == "cart"
        assert anomaly.value == pytest.approx(quiet_for)
        assert anomaly.expected == pytest.approx(30.0)
        assert anomaly.score == 1.0
        assert anomaly.detail["absent_for_s"] == pytest.approx(quiet_for)
    assert detect.stats.absences == len(absent)


@pytest.mark.parametrize(
    ("points", "absent"),
    [
        # too few gaps to know the usual interval: no judgement
        (4, []),
        # enough gaps (five): judged
        (6, ["cart"]),
    ],
)
def test_absence_needs_a_learned_interval(points: int, absent: list[str]) -> None:
    detect = stage()
    for index in range(points):
        detect.observe(point("cart", index * 30.0))
    assert [a.service for a in detect.absences(T0 + points * 30.0 + 600.0)] == absent


def test_absence_ends_when_the_service_reports_again_and_scope_label_is_kept() -> None:
    detect = stage(scope_label="region")
    key = SeriesKey.of("http_requests_per_second", {"service": "cart", "region": "eu"})
    for index in range(10):
        detect.observe(MetricPoint(key, 100.0, T0 + index * 30.0))
    found = detect.absences(T0 + 900.0)
    assert [(a.scope, a.series.label("region")) for a in found] == [("eu", "eu")]
    detect.observe(MetricPoint(key, 100.0, T0 + 930.0))
    assert detect.absences(T0 + 940.0) == []


def test_forgotten_after_series_ttl_and_dropped_with_its_series() -> None:
    detect = stage(series_ttl="1h")
    report(detect, ["cart", "web"], 0.0, 300.0)
    # after the TTL sweep the silent service is forgotten: no more absences
    report(detect, ["web"], 330.0, 300.0 + 3700.0)
    assert detect.absences(T0 + 4000.0) == []
    # a series moved to another worker takes its service's clock with it
    other = stage()
    report(other, ["cart"], 0.0, 300.0)
    other.drop_series([point("cart", 0.0).series])
    assert other.absences(T0 + 3000.0) == []

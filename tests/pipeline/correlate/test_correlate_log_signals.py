"""Log context in pages: the template, example lines and counts of log anomalies ride along."""

from __future__ import annotations

from typing import Any

from pipeline.config import CorrelateConfig
from pipeline.correlate.incidents import Correlator, feed
from pipeline.correlate.silence import Silencer
from pipeline.correlate.topology import Topology
from pipeline.model import Anomaly, Page, SeriesKey, Signal

T0 = 1_795_683_600.0
TOPOLOGY = Topology({"checkout": ["payments"], "payments": []})


def _correlator() -> Correlator:
    config = CorrelateConfig(hold_for=60.0, hold_max_gap=30.0, resolve_after=300.0)
    return Correlator(config, TOPOLOGY, Silencer([]), receivers=("oncall",))


def _latency(offset: float) -> Anomaly:
    series = SeriesKey.of("http_request_duration_seconds", {"service": "payments"})
    return Anomaly(T0 + offset, series, "payments", Signal.LATENCY, 2.0, 0.2, 0.999, 0.99)


def _log(offset: float, count: int, examples: list[str]) -> Anomaly:
    series = SeriesKey.of("log_template_rate", {"service": "payments", "template": "7"})
    detail: dict[str, Any] = {
        "source": "logs",
        "kind": "new_template",
        "template_id": "7",
        "template": "db timeout after <NUM> ms",
        "level": "error",
        "examples": examples,
        "count_during": count,
        "baseline_per_bucket": 0.0,
        "bucket_s": 60.0,
    }
    return Anomaly(
        T0 + offset, series, "payments", Signal.ERRORS, count, 0.0, 1.0, 0.99, detail=detail
    )


def _pages(events: list[Anomaly | float]) -> list[Page]:
    return [d.page for d in feed(_correlator(), events) if d.page is not None]


def test_trigger_and_resolve_carry_the_log_signal() -> None:
    events: list[Anomaly | float] = [_latency(s) for s in range(0, 100, 10)]
    events.insert(2, _log(15, 1, ["db timeout after 3000 ms"]))
    events.insert(5, _log(35, 9, ["db timeout after 3001 ms", "db timeout after 3002 ms"]))
    events.append(T0 + 1000)
    trigger, resolve = _pages(events)
    for page in (trigger, resolve):
        (signal,) = page.custom_details["log_signals"]
        assert signal["series"] == 'log_template_rate{service="payments",template="7"}'
        assert signal["template"] == "db timeout after <NUM> ms"
        assert signal["kind"] == "new_template"  # the kind first reported
        assert signal["first_ts"] == T0 + 15
        # The peak count during, the baseline from before, the latest examples.
        assert signal["count_during"] == 9
        assert signal["baseline_per_bucket"] == 0.0
        assert signal["examples"] == ["db timeout after 3001 ms", "db timeout after 3002 ms"]
    assert "errors" in trigger.signals


def test_pages_without_log_anomalies_have_no_log_signals_key() -> None:
    events: list[Anomaly | float] = [_latency(s) for s in range(0, 100, 10)]
    (trigger,) = _pages(events)
    assert "log_signals" not in trigger.custom_details


def test_log_signals_survive_a_snapshot() -> None:
    first = _correlator()
    feed(first, [_latency(0), _log(5, 3, ["db timeout after 1 ms"])])
    second = _correlator()
    second.restore(first.snapshot())
    decisions = feed(second, [_latency(s) for s in range(10, 100, 10)])
    (trigger,) = [d.page for d in decisions if d.page is not None]
    assert [s["template"] for s in trigger.custom_details["log_signals"]] == [
        "db timeout after <NUM> ms"
    ]


def test_at_most_five_log_signals_strongest_first() -> None:
    events: list[Anomaly | float] = [_latency(s) for s in range(0, 100, 10)]
    for index in range(7):
        series = SeriesKey.of("log_template_rate", {"service": "payments", "template": str(index)})
        detail = {"source": "logs", "template": f"t{index}", "examples": []}
        score = 0.991 + index / 1000
        events.insert(
            1, Anomaly(T0 + 1, series, "payments", Signal.ERRORS, 5, 1, score, 0.99, detail=detail)
        )
    (trigger,) = _pages(events)
    shown = trigger.custom_details["log_signals"]
    assert [s["template"] for s in shown] == ["t6", "t5", "t4", "t3", "t2"]

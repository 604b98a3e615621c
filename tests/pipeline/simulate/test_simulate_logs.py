"""The simulator's log streams: seeded, realistic, and errors only where something fails."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import orjson
import pytest

from pipeline import simulate
from pipeline.cli import main
from pipeline.ingest import decode_message


def _records(items: list[dict[str, object]]) -> list[dict[str, object]]:
    return [item for item in items if "message" in item]


def test_logs_are_seeded_and_leave_the_metric_points_as_they_were() -> None:
    first = list(itertools.islice(simulate.messages(simulate.build("storm", 2, logs=True)), 150))
    again = list(itertools.islice(simulate.messages(simulate.build("storm", 2, logs=True)), 150))
    other = list(itertools.islice(simulate.messages(simulate.build("storm", 3, logs=True)), 150))
    plain = list(itertools.islice(simulate.messages(simulate.build("storm", 2)), 150))
    assert first == again
    assert first != other
    for with_logs, without in zip(first, plain, strict=True):
        items = orjson.loads(with_logs)
        assert [i for i in items if "name" in i] == orjson.loads(without)
        assert _records(items)  # every step has log lines


def test_every_service_writes_a_heartbeat_and_a_few_lines_per_step_in_its_step() -> None:
    sim = simulate.build("blips", 1, logs=True)
    for ts, items in itertools.islice(simulate.steps(sim), 200):
        records = _records(items)
        per_service = Counter(str(r["labels"]["service"]) for r in records)  # type: ignore[index]
        assert set(per_service) == set(sim.topology)
        assert all(1 <= n <= 4 for n in per_service.values())
        heartbeats = [r for r in records if str(r["message"]).startswith("heartbeat ok")]
        assert len(heartbeats) == len(sim.topology)
        assert all(ts <= float(r["ts"]) < ts + sim.step_s for r in records)  # type: ignore[arg-type]
        # DESIGN.md's shape, accepted by ingest as log records
        decoded = decode_message(orjson.dumps(records), "logs")
        assert (len(decoded.logs), decoded.rejects) == (len(records), [])


@pytest.mark.parametrize(
    ("scenario", "errors_expected"),
    [
        # a shared dependency fails: it and its callers log errors
        ("storm", True),
        # two unrelated faults at once
        ("overlap", True),
        # a fault under a maintenance silence still logs errors
        ("maintenance", True),
        # a stopped service writes nothing; nothing else fails
        ("stopped", False),
        # latency blips: at most a stray warning, no errors
        ("blips", False),
        # a flapping series: at most a stray warning, no errors
        ("flapping", False),
    ],
)
def test_errors_only_from_failing_services(scenario: str, errors_expected: bool) -> None:
    sim = simulate.build(scenario, 1, logs=True)
    failing = [t for t in sim.truth if t.kind in ("fault", "storm", "maintenance")]
    stopped = [t for t in sim.truth if t.kind == "stopped"]
    transient = [t for t in sim.truth if t.kind in ("blip", "flap")]
    erring: set[str] = set()
    for ts, items in simulate.steps(sim):
        for record in _records(items):
            service = str(record["labels"]["service"])  # type: ignore[index]
            message = str(record["message"])
            assert not any(t.root == service and t.onset <= ts < t.end for t in stopped)
            if record["level"] != "error":
                continue
            erring.add(service)
            # failing now (in one incident or two overlapping), about what they affect
            now = [t for t in failing if service in t.affected and t.onset <= ts < t.end]
            assert now
            if any(service == t.root for t in now):
                assert not any(t.root in message for t in now)  # its own failure
            else:
                assert any(other in message.split() for t in now for other in t.affected)
        for incident in transient:
            if incident.onset <= ts < incident.end:
                warnings = [
                    r
                    for r in _records(items)
                    if r["labels"] == {"service": incident.root} and r["level"] == "warning"
                ]
                assert len(warnings) <= 1  # a stray warning at most
    assert bool(erring) is errors_expected
    for incident in failing:
        assert incident.root in erring
        assert erring <= {s for t in failing for s in t.affected}


def test_failure_lines_are_realistic_and_name_the_callee() -> None:
    sim = simulate.build("storm", 1, logs=True)
    storm = sim.truth[0]
    errors: Counter[str] = Counter()
    for ts, items in simulate.steps(sim):
        if storm.onset <= ts < storm.end:
            errors.update(str(r["message"]) for r in _records(items) if r["level"] == "error")
    text = "\n".join(errors)
    assert f"connection refused to {simulate.SHARED} at 10.1." in text
    assert f"upstream timeout after 3000 ms calling {simulate.SHARED}" in text
    assert f"pool exhausted for {simulate.SHARED} (max 50)" in text
    assert "too many connections (" in text  # the root's own failure


def test_simulate_cli_writes_logs(tmp_path: Path) -> None:
    assert main(["simulate", "--scenario", "stopped", "--out", str(tmp_path), "--logs"]) == 0
    first = orjson.loads((tmp_path / "telemetry.jsonl").read_bytes().split(b"\n", 1)[0])
    decoded = decode_message(orjson.dumps(first), "auto")
    assert decoded.points
    assert decoded.logs
    assert decoded.rejects == []

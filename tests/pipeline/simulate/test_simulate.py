"""The incident simulator: seeded, layered, with truth, a valid config and replayable telemetry."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import orjson
import pytest

from pipeline import simulate
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.correlate.topology import Topology
from pipeline.replay import replay_lines


def test_same_seed_same_simulation_and_another_seed_differs() -> None:
    first = simulate.build("cascade", 3)
    again = simulate.build("cascade", 3)
    other = simulate.build("cascade", 4)
    assert first.truth == again.truth
    assert list(itertools.islice(simulate.messages(first), 5)) == list(
        itertools.islice(simulate.messages(again), 5)
    )
    assert first.truth != other.truth


def test_graph_is_layered_with_at_least_forty_services() -> None:
    sim = simulate.build("storm", 1)
    topology = Topology(sim.topology)
    assert len(sim.topology) >= 40
    edges = set(simulate.EDGE)
    stores = {*simulate.DATA, simulate.SHARED}
    assert all(not topology.dependents(edge) for edge in edges)  # nothing calls the edge
    assert all(not topology.dependencies(store) for store in stores)  # stores call nothing
    for edge in edges:
        assert topology.dependencies(edge) <= set(simulate.MID)  # edge -> mid-tier
    for index, mid in enumerate(simulate.MID):
        assert simulate.SHARED in topology.dependencies(mid)
        # mid-tier calls later mid-tier services and stores only: no cycles
        assert topology.dependencies(mid) <= {*simulate.MID[index + 1 :], *stores}


@pytest.mark.parametrize(
    ("scenario", "kinds"),
    [
        # three faults one after another
        ("cascade", ["fault", "fault", "fault"]),
        # a service that goes silent
        ("stopped", ["stopped"]),
        # eight transient blips
        ("blips", ["blip"] * 8),
        # hours of one flapping series
        ("flapping", ["flap"]),
        # one shared dependency failing
        ("storm", ["storm"]),
        # a fault inside a silence
        ("maintenance", ["maintenance"]),
        # two unrelated faults at once
        ("overlap", ["fault", "fault"]),
    ],
)
def test_each_scenario_has_its_kind_of_truth(scenario: str, kinds: list[str]) -> None:
    sim = simulate.build(scenario, 1)
    assert [t.kind for t in sorted(sim.truth, key=lambda t: t.onset)] == kinds
    for truth in sim.truth:
        assert sim.start + simulate.WARMUP_S <= truth.onset < truth.end
        assert truth.end <= sim.start + sim.duration_s
        assert truth.root in truth.affected


def test_all_combines_every_kind_over_two_days() -> None:
    sim = simulate.build("all", 1)
    assert sim.duration_s == 2 * 86400.0
    assert {t.kind for t in sim.truth} == {
        "fault",
        "stopped",
        "blip",
        "flap",
        "storm",
        "maintenance",
    }
    blips = [t for t in sim.truth if t.kind == "blip"]
    assert all(t.end - t.onset < 120.0 for t in blips)
    overlap = sorted((t for t in sim.truth if t.kind == "fault"), key=lambda t: t.onset)
    assert any(a.end > b.onset for a, b in itertools.pairwise(overlap))
    storm = next(t for t in sim.truth if t.kind == "storm")
    assert len(storm.affected) >= 24  # dozens of services from one dependency


def test_fault_cascades_with_delays_and_stopped_service_sends_nothing() -> None:
    sim = simulate.build("cascade", 1)
    fault = min(sim.truth, key=lambda t: t.onset)
    effects = sim.effects[fault.root]
    # saturation first on the root, latency and errors a little later
    saturation = next(e for e in effects if e.saturation)
    latency = next(e for e in effects if e.latency > 1)
    assert saturation.start == fault.onset < latency.start
    callers = Topology(sim.topology).dependents(fault.root)
    assert callers
    for caller in callers:
        assert min(e.start for e in sim.effects[caller]) > latency.start - 30.0
    stopped = simulate.build("stopped", 1)
    gone = stopped.truth[0]
    for ts, points in simulate.steps(stopped):
        services = {p["labels"]["service"] for p in points}
        assert (gone.root in services) is not (gone.onset <= ts < gone.end)


def test_write_gives_replayable_telemetry_a_valid_config_and_truth(tmp_path: Path) -> None:
    assert main(["simulate", "--scenario", "stopped", "--out", str(tmp_path), "--seed", "2"]) == 0
    config = load_config(tmp_path / "config.yaml")
    assert len(config.topology) >= 40
    assert config.correlate.hold_for == 120.0
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    assert truth["scenario"] == "stopped"
    assert [i["kind"] for i in truth["incidents"]] == ["stopped"]
    lines = (tmp_path / "telemetry.jsonl").read_bytes().splitlines()
    assert len(lines) == simulate.build("stopped", 2).steps
    first = orjson.loads(lines[0])
    assert {"name", "value", "ts", "labels"} <= set(first[0])
    out = io.BytesIO()
    summary = replay_lines(config, io.BytesIO(b"\n".join(lines[:200])), out)
    assert summary.points == sum(len(orjson.loads(line)) for line in lines[:200])
    assert summary.rejects == {}


def test_maintenance_silence_covers_the_affected_services(tmp_path: Path) -> None:
    sim = simulate.build("maintenance", 1)
    simulate.write(sim, tmp_path)
    config = load_config(tmp_path / "config.yaml")
    (silence,) = config.silences
    truth = sim.truth[0]
    assert silence.starts_at < truth.onset
    assert silence.ends_at > truth.end
    assert all(service in silence.matchers[0] for service in truth.affected)


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        simulate.build("nope")


def test_cli_refuses_a_seed_beyond_64_bits_and_an_out_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["simulate", "--scenario", "storm", "--out", str(tmp_path), "--seed", str(2**64)])
    assert usage.value.code == 2
    assert "does not fit in 64 bits" in capsys.readouterr().err
    taken = tmp_path / "a-file"
    taken.write_text("x", "utf-8")
    assert main(["simulate", "--scenario", "storm", "--out", str(taken)]) == 2
    assert capsys.readouterr().err.strip() == f"quietpager: {taken}: File exists"

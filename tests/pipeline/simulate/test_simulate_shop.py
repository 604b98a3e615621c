"""The demo's shop as a named scenario of the simulator, and how its baseline differs."""

from __future__ import annotations

import io
import random
from pathlib import Path

import orjson
import pytest

from pipeline import simulate
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.replay import replay_lines
from pipeline.simulate.profiles import FLEET, SHOP, Baseline, Profile


def test_shop_scenario_seed_7_is_the_demos_stream() -> None:
    built = [(ts, orjson.dumps(points)) for ts, points in simulate.steps(simulate.build("shop", 7))]
    demo = [(ts, orjson.dumps(points)) for ts, points in simulate.generate(simulate.Scenario())]
    assert built == demo


def test_shop_truth_names_the_fault_its_reach_and_the_blip() -> None:
    sim = simulate.build("shop", 1)
    fault, blip = sim.truth
    assert (fault.kind, fault.root, fault.onset - sim.start) == ("fault", "payments-db", 1200.0)
    # the fault reaches its callers' callers up to the entry point
    assert set(fault.affected) == {"payments-db", "payments", "checkout", "frontend"}
    assert (blip.kind, blip.root, blip.end - blip.onset) == ("blip", "catalog", 20.0)


def test_simulate_shop_writes_a_config_that_pages_once(tmp_path: Path) -> None:
    assert main(["simulate", "--scenario", "shop", "--out", str(tmp_path), "--seed", "7"]) == 0
    config = load_config(tmp_path / "config.yaml")
    assert set(config.topology) == set(simulate.SHOP_TOPOLOGY)
    out = io.BytesIO()
    replay_lines(config, io.BytesIO((tmp_path / "telemetry.jsonl").read_bytes()), out)
    actions = [orjson.loads(line)["body"]["status"] for line in out.getvalue().splitlines()]
    assert actions == ["firing", "resolved"]  # the fault pages, the blip does not


def test_shop_with_logs_blames_the_failing_callee() -> None:
    sim = simulate.build("shop", 1, logs=True)
    errors = [
        item["message"]
        for ts, items in simulate.steps(sim)
        if sim.truth[0].onset + 60.0 <= ts < sim.truth[0].end
        for item in items
        if item.get("labels", {}).get("service") == "payments" and item.get("level") == "error"
    ]
    assert errors
    assert all("payments-db" in message for message in errors)


@pytest.mark.parametrize(
    ("baseline", "latency_moves", "saturation_moves"),
    [
        # the fleet: load shows in latency (a tenth of it) and in saturation
        (FLEET, True, True),
        # the shop: load shows in traffic only
        (SHOP, False, False),
    ],
)
def test_which_signals_follow_the_load(
    baseline: Baseline, latency_moves: bool, saturation_moves: bool
) -> None:
    profile = Profile(latency=0.1, traffic=100.0, errors=0.01, saturation=0.3)
    quiet = baseline.values(profile, random.Random(1), 1.0, 1.0)
    busy = baseline.values(profile, random.Random(1), 1.5, 1.0)
    assert busy[1] == pytest.approx(1.5 * quiet[1])  # traffic always follows
    assert (busy[0] != quiet[0]) is latency_moves
    assert (busy[3] != quiet[3]) is saturation_moves
    assert busy[2] == quiet[2]  # the error ratio never does

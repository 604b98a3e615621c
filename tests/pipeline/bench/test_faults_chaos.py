"""The chaos row of `bench faults`: its stream, and a short run against a real broker."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.bench.faults import ROUTING_KEY, fault_config, messages
from pipeline.bench.faults_chaos import (
    INCIDENT_EVERY_S,
    SCOPE,
    WARMUP_S,
    Opened,
    _Paced,
    _result,
    chaos,
    chaos_scenario,
    rekeyed,
    replay_pages,
)
from pipeline.config import Config
from pipeline.correlate.incidents import incident_id
from pipeline.model import Page
from pipeline.offline import render_deliveries
from pipeline.timeutil import format_timestamp, parse_timestamp

KEYS = {"oncall": ROUTING_KEY}

TANSU = not os.environ.get("QUIETPAGER_TEST_BOOTSTRAP")


@pytest.mark.parametrize(
    ("seconds", "steps_per_s", "incidents"),
    [
        (45.0, 1.0, 1),  # the suite's short run: one incident, however short the run
        (10.0, 1.0, 1),  # shorter than one incident: still one, the stream made long enough
        (300.0, 0.5, 3),  # the default five minutes: 1,500 s of event time, 450 s each
        (300.0, 1.0, 6),  # twice the pace, twice the event time
    ],
)
def test_the_stream_has_an_incident_per_block_each_over_before_it_ends(
    seconds: float, steps_per_s: float, incidents: int
) -> None:
    scenario = chaos_scenario(seconds, steps_per_s)
    assert len(scenario.faults) == incidents
    for fault in scenario.faults:
        assert fault.onset_s >= WARMUP_S  # the detectors have learned
    last = scenario.faults[-1]
    # Room after the last fault for its hold and resolve, as in every block.
    assert scenario.duration_s - (last.onset_s + last.duration_s) >= INCIDENT_EVERY_S / 2
    assert len({f.root for f in scenario.faults}) == min(incidents, 4)


REPLAYED = Opened("payments-db", "payments-db", 1000.0)


@pytest.mark.parametrize(
    ("expected", "delivered", "live", "paired"),
    [
        # the root's anomaly came late: a caller opened it 30 s later, same root
        ("trigger", "trigger", Opened("payments-db", "payments", 1030.0), True),
        # its resolve likewise
        ("resolve", "resolve", Opened("payments-db", "payments", 1030.0), True),
        # a resolve never stands in for a trigger
        ("trigger", "resolve", Opened("payments-db", "payments", 1030.0), False),
        # another root is another incident, not this one under a new key
        ("trigger", "trigger", Opened("auth", "auth", 1030.0), False),
        # the same root a block later is the next incident
        (
            "trigger",
            "trigger",
            Opened("payments-db", "payments-db", 1000.0 + INCIDENT_EVERY_S),
            False,
        ),
    ],
)
def test_a_page_under_another_key_is_paired_only_with_its_own_incident(
    expected: str, delivered: str, live: Opened, paired: bool
) -> None:
    want, got = (expected, "qp-replay"), (delivered, "qp-live")
    assert rekeyed({want: REPLAYED}, {got: live}) == ([(want, got)] if paired else [])


@pytest.mark.broker
async def test_random_kills_lose_no_page(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Twice the default pace, so one incident fits in 45 s; a kill every 8 to 12 s.
    result = await chaos(
        kafka_bootstrap,
        tmp_path,
        minutes=0.75,
        kill_every=(8.0, 12.0),
        steps_per_s=1.0,
        tansu=TANSU,
    )
    assert result.kills >= 3
    assert result.pages_expected == 2  # one trigger, one resolve
    assert result.lost == 0
    # Every page delivered is one `replay` sends, or (`rekeyed`) the same page of the same
    # incident under another dedup_key: a killed worker's partitions reach the correlator
    # late, so the first anomaly it sees, which names the incident, may be a caller's.
    assert "unexpected" not in result.note
    # At-least-once: a kill redelivers at most the page its notify stage had in flight
    # (delivered, not yet committed) or the pages its correlate stage had decided since its
    # last checkpoint; with two pages in the run, more copies than kills would be a bug.
    assert result.duplicates <= result.kills


def _bodies(config: Config, pages: list[Page]) -> list[tuple[str, dict[str, Any]]]:
    return [("/v2/enqueue", d.body) for p in pages for d in render_deliveries(config, p, KEYS)]


def test_the_result_reads_delivered_bodies_and_finds_a_rekeyed_incident() -> None:
    scenario = chaos_scenario(10.0)
    config = fault_config("127.0.0.1:9", "http://127.0.0.1:9/v2/enqueue", scenario=scenario)
    expected = replay_pages(config, messages(scenario))
    pages = list(expected.values())
    onset = parse_timestamp(pages[0].custom_details["onset"]) + 30.0
    details = pages[0].custom_details | {"onset": format_timestamp(onset)}
    key = incident_id(SCOPE, "payments", onset)
    # the same incident, opened by a caller 30 s later: what a late root partition gives
    moved = [replace(p, dedup_key=key, custom_details=details) for p in pages]

    def result(received: list[tuple[str, dict[str, Any]]]) -> tuple[int, int, int]:
        got = _result(scenario, expected, received, {}, _Paced(), [], (8.0, 12.0), 0)
        return got.lost, got.rekeyed, got.duplicates

    assert result(_bodies(config, pages)) == (0, 0, 0)
    assert result(_bodies(config, pages + pages[:1])) == (0, 0, 1)
    assert result(_bodies(config, moved)) == (0, 2, 0)
    assert result(_bodies(config, pages[:1])) == (1, 0, 0)

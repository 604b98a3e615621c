"""`quietpager demo` end to end: embedded broker, agent, worker and receiver in one process."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from pipeline.demo import run_demo

pytestmark = pytest.mark.broker


async def test_demo_pages_once_for_the_injected_incident_with_its_root_cause() -> None:
    output = io.StringIO()
    report = await run_demo(console=Console(file=output, width=120), pace_s=3.0, deadline_s=50.0)
    assert len(report.triggers) == 1
    assert len(report.resolves) == 1
    trigger = report.triggers[0]
    assert trigger["payload"]["component"] == "payments-db"
    assert report.resolves[0]["dedup_key"] == trigger["dedup_key"]
    assert report.dlq == 3  # the agent's deliberately broken messages
    assert report.events_in == report.scenario.steps * 32
    assert report.decisions[("suppress", "blip_recovered")] >= 1  # the catalog blip held back
    assert report.root_cause_correct
    printed = output.getvalue()
    # the report's panel starts on a line of its own, not glued to the live table's last frame
    assert any(
        line.startswith("╭") and "quietpager demo report" in line for line in printed.splitlines()
    )

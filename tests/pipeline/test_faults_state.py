"""The state-changelog faults of `bench faults` on a real broker: poison and truncation."""

from __future__ import annotations

import os

import pytest

from pipeline.bench.faults_state import poison_state_record, truncated_correlate_checkpoint

TANSU = not os.environ.get("QUIETPAGER_TEST_BOOTSTRAP")


@pytest.mark.broker
async def test_poison_state_records_run_nothing_and_the_worker_pages(kafka_bootstrap: str) -> None:
    result = await poison_state_record(kafka_bootstrap, tansu=TANSU)
    assert result.pages_expected == 2  # one trigger, one resolve
    assert result.lost == 0
    assert "pickled code never ran" in result.note
    assert "3 detect and 2 correlate records rejected" in result.note


@pytest.mark.broker
async def test_a_truncated_incident_checkpoint_still_resolves_at_the_pager(
    kafka_bootstrap: str,
) -> None:
    result = await truncated_correlate_checkpoint(kafka_bootstrap, tansu=TANSU)
    assert result.pages_expected == 2
    assert result.lost == 0  # the resolve came from the outbox
    assert "1 open incident record(s) cut, 1 rejected" in result.note

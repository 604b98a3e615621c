"""A silence or a filter that a backtracking engine never finishes must not wedge the worker."""

from __future__ import annotations

import os

import pytest

from pipeline.bench.faults_silences import poison_silence

TANSU = not os.environ.get("QUIETPAGER_TEST_BOOTSTRAP")


@pytest.mark.broker
async def test_poison_silence_and_filter_leave_the_worker_paging(kafka_bootstrap: str) -> None:
    # With Python's re this never returned: the filtered GET held the event loop (the test's
    # own included), and the silence wedged correlate on the first anomaly.
    result = await poison_silence(kafka_bootstrap, tansu=TANSU)
    assert result.pages_expected == 2  # one trigger, one resolve
    assert (result.pages_delivered, result.lost, result.duplicates) == (2, 0, 0)
    assert "unexpected" not in result.note
    assert result.recovery_s is not None
    assert result.recovery_s < 30
    assert "DELETE" in result.note

"""The slow-receiver rows of `quietpager bench faults`, on a real broker and a loopback
receiver that acts on each page at once and answers only after the sender stopped waiting."""

from __future__ import annotations

import os

import pytest

from pipeline.bench.faults_notify import slow_receiver

TANSU = not os.environ.get("QUIETPAGER_TEST_BOOTSTRAP")


@pytest.mark.broker
async def test_a_slow_receiver_gets_each_page_at_most_max_unanswered_times(
    kafka_bootstrap: str,
) -> None:
    result = await slow_receiver(kafka_bootstrap, tansu=TANSU)
    assert result.pages_expected == 2  # one trigger, one resolve
    assert (result.pages_delivered, result.lost) == (2, 0)  # each acted on, none stuck
    assert result.duplicates == 4  # three copies of each, two of them extra
    assert "copies per page [3, 3]; 2 dead-lettered as unanswered" in result.note
    assert result.recovery_s is not None
    assert result.recovery_s < 5.0  # three waits of 0.1-0.2 s and two backoffs, not for ever


@pytest.mark.broker
async def test_without_a_cap_the_first_page_holds_the_receiver(kafka_bootstrap: str) -> None:
    # The control: max_unanswered 0 behaves as before the cap, copies without end and the
    # resolve stuck behind the trigger.
    result = await slow_receiver(kafka_bootstrap, tansu=TANSU, max_unanswered=0, hold_s=3.0)
    assert result.lost == 1
    assert result.duplicates >= 5  # a copy every 0.3 to 0.4 s, in 3 s
    assert result.recovery_s is None

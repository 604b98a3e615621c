"""Faults on a real broker, the short versions of `quietpager bench faults`.

Each breaks something for real (a killed process, a partition moving, a receiver that is
down) and compares the pages delivered with what `replay` says an uninterrupted run sends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from pipeline.bench.faults import (
    broker_cut,
    cardinality_flood,
    fuzz_decoder,
    process_restart,
    rebalance,
    receiver_down,
    webhook_outage,
)
from pipeline.harness import (
    create_topics,
    fault_config,
    messages,
    produce,
    spawn_worker,
    wait_for,
    worker_command,
)
from pipeline.notify.sink import WebhookSink

TANSU = not os.environ.get("QUIETPAGER_TEST_BOOTSTRAP")


@pytest.mark.broker
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_replaced_worker_loses_no_page(
    kafka_bootstrap: str, tmp_path: Path, how: signal.Signals
) -> None:
    result = await process_restart(kafka_bootstrap, tmp_path, how, tansu=TANSU)
    assert result.pages_expected == 2  # one trigger, one resolve
    assert result.lost == 0
    assert "unexpected" not in result.note  # nothing new, at most redeliveries
    if how == signal.SIGTERM:
        assert "code 0" in result.note


@pytest.mark.broker
async def test_state_moves_with_partitions_and_scores_match(kafka_bootstrap: str) -> None:
    result = await rebalance(kafka_bootstrap, tansu=TANSU)
    assert result.pages_expected > 0  # anomalies to compare
    assert result.lost == 0
    assert "scores identical" in result.note


@pytest.mark.broker
async def test_without_checkpoints_the_move_changes_scores(kafka_bootstrap: str) -> None:
    # The control: the same move with state left behind gives different scores.
    result = await rebalance(kafka_bootstrap, tansu=TANSU, checkpoints=False)
    assert "scores differ" in result.note


@pytest.mark.broker
async def test_webhook_outage_and_restart_lose_nothing(kafka_bootstrap: str) -> None:
    result = await webhook_outage(kafka_bootstrap, tansu=TANSU)
    assert result.lost == 0
    assert result.pages_delivered == result.pages_expected == 2
    assert "order ['trigger', 'resolve']" in result.note


@pytest.mark.broker
async def test_a_receiver_down_holds_back_only_its_own_pages(kafka_bootstrap: str) -> None:
    result = await receiver_down(kafka_bootstrap, tansu=TANSU)
    assert (result.lost, result.duplicates) == (0, 0)
    assert result.pages_delivered == result.pages_expected == 4  # trigger + resolve, twice
    assert "while the one down answered 503" in result.note
    assert "order ['trigger', 'resolve'] once back" in result.note


@pytest.mark.broker
async def test_second_sigterm_exits_at_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    sink = WebhookSink()
    await sink.start()
    sink.fail_next(10_000, status=503)  # keeps the notify stage busy retrying
    try:
        config = fault_config(
            kafka_bootstrap, sink.pagerduty_url, tansu=TANSU, shutdown_timeout="60s"
        )
        await create_topics(config)
        await produce(config, messages())
        proc = await spawn_worker(worker_command(config, tmp_path))
        try:
            await wait_for(lambda: sink.requests_seen >= 2, 60, "delivery attempts")
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert proc.returncode is None  # the first signal waits for in-flight work
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 1
            assert time.monotonic() - started < 5
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        await sink.stop()


def test_fuzzed_messages_never_crash_the_decoder() -> None:
    result = fuzz_decoder(count=5_000, seed=3)
    assert result.lost == 0
    assert result.note.startswith("0 crashes")


def test_cardinality_flood_keeps_state_bounded_and_detection_intact() -> None:
    result = cardinality_flood(new_series=40_000, max_series=2_000, established=20)
    assert result.pages_expected > 0  # the established series do alert
    assert result.lost == 0  # ... exactly as without the flood
    assert "2,000 tracked" in result.note


@pytest.mark.broker
@pytest.mark.skipif(not TANSU, reason="needs the embedded broker to advertise the proxy")
async def test_broker_cut_reports_not_ready_and_resumes_without_loss() -> None:
    result = await broker_cut(cut_s=2.0)
    assert result.pages_expected == 2
    assert result.lost == 0
    assert "unexpected" not in result.note

"""`bench faults` rows where a worker goes away: a process restart and a rebalance."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import orjson
from aiokafka import ConsumerRecord

from pipeline.bench.faults import FaultResult, _compare, _detect, _points
from pipeline.harness import (
    Message,
    create_topics,
    expected_pages,
    fault_config,
    messages,
    produce,
    read_topic,
    spawn_worker,
    wait_for,
    worker_command,
)
from pipeline.metrics import Metrics
from pipeline.model import SeriesKey
from pipeline.notify.sink import WebhookSink
from pipeline.worker import Worker


async def process_restart(
    bootstrap: str,
    workdir: Path,
    how: signal.Signals,
    stream: list[Message] | None = None,
    tansu: bool = True,
) -> FaultResult:
    """A worker process dies (SIGKILL) or is stopped (SIGTERM) mid-stream; another replaces it."""
    stream = stream if stream is not None else messages()
    sink = WebhookSink()
    await sink.start()
    try:
        config = fault_config(bootstrap, sink.pagerduty_url, tansu=tansu)
        want = expected_pages(config, stream)
        await create_topics(config)
        command = worker_command(config, workdir)
        first = await spawn_worker(command)
        # Two thirds of the stream: past the trigger, before the incident can resolve.
        split = len(stream) * 2 // 3
        try:
            await produce(config, stream[:split], pause_every=40)
            await wait_for(lambda: len(sink.received) >= 1, 90, "the first page")
            stopped_at = time.monotonic()
            first.send_signal(how)
            await asyncio.wait_for(first.wait(), 30)
            exit_s = time.monotonic() - stopped_at
            await produce(config, stream[split:])
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        restarted = time.monotonic()
        second = await spawn_worker(command)
        try:
            wanted = set(want)
            await wait_for(
                lambda: {(b["event_action"], b["dedup_key"]) for _, b in sink.received} >= wanted,
                120,
                "every page",
            )
            recovery = time.monotonic() - restarted
            await asyncio.sleep(1.0)  # anything extra would arrive now
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), 30)
        name = "worker killed (SIGKILL)" if how == signal.SIGKILL else "worker stopped (SIGTERM)"
        return _compare(
            name,
            _points(stream),
            want,
            sink,
            recovery,
            f"first worker exited {exit_s:.1f}s after the signal, code {first.returncode}",
        )
    finally:
        await sink.stop()


def anomaly_scores(records: list[ConsumerRecord]) -> list[tuple[str, float, float]]:
    """(series, event time, score) of every anomaly record, sorted."""
    out = []
    for record in records:
        data = orjson.loads(record.value)
        if data["kind"] == "anomaly":
            series = SeriesKey.of(data["name"], data["labels"]).id
            out.append((series, float(data["ts"]), float(data["score"])))
    return sorted(out)


async def _run_detect_until(worker: Worker, points: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_for(
            lambda: bool(worker.runners) and _detect(worker).core.stats.points >= points,
            120,
            "the detect stage",
        )
    finally:
        stop.set()
        await task


async def rebalance(
    bootstrap: str,
    stream: list[Message] | None = None,
    tansu: bool = True,
    checkpoints: bool = True,
) -> FaultResult:
    """Two detect workers share a stream; one leaves halfway. Scores must match one worker's."""
    stream = stream if stream is not None else messages()
    total = _points(stream)
    url = "http://127.0.0.1:9/unused"
    solo_config = fault_config(bootstrap, url, partitions=2, tansu=tansu)
    await create_topics(solo_config)
    await produce(solo_config, stream)
    await _run_detect_until(Worker(solo_config, Metrics.create(), stages=("detect",)), total)
    expected = anomaly_scores(await read_topic(solo_config, solo_config.topics.anomalies))

    config = fault_config(bootstrap, url, partitions=2, tansu=tansu, checkpoints=checkpoints)
    await create_topics(config)
    workers = [Worker(config, Metrics.create(), stages=("detect",)) for _ in range(2)]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(w.run(s)) for w, s in zip(workers, stops, strict=True)]

    def owns(worker: Worker, count: int) -> bool:
        consumer = _detect(worker).consumer if worker.runners else None
        return consumer is not None and count == sum(
            tp.topic == config.topics.metrics for tp in consumer.assignment()
        )

    def done(points: int) -> bool:
        return sum(_detect(w).core.stats.points for w in workers) >= points

    try:
        await wait_for(lambda: owns(workers[0], 1) and owns(workers[1], 1), 30, "both to join")
        half = len(stream) // 2
        await produce(config, stream[:half])
        await wait_for(lambda: done(_points(stream[:half])), 60, "the first half")
        left = time.monotonic()
        stops[0].set()  # it checkpoints and commits as its partitions are revoked
        await tasks[0]
        await wait_for(lambda: owns(workers[1], 2), 30, "the survivor to take over")
        recovery = time.monotonic() - left
        await produce(config, stream[half:])
        await wait_for(lambda: done(total), 60, "the second half")
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks)
    got = anomaly_scores(await read_topic(config, config.topics.anomalies))
    restored = (
        workers[1].metrics.registry.get_sample_value(
            "quietpager_state_restored_total", {"stage": "detect"}
        )
        or 0
    )
    missing = len(set(expected) - set(got))
    return FaultResult(
        fault="rebalance: one of two workers leaves",
        events_in=total,
        pages_expected=len(expected),
        pages_delivered=len(set(got)),
        duplicates=len(got) - len(set(got)),
        lost=missing,
        recovery_s=recovery,
        note=f"anomalies compared, not pages; {restored:.0f} series models restored; scores "
        + ("identical" if got == expected else "differ"),
    )

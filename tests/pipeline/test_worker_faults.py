"""Faults on a real broker: state moves with partitions, a killed worker loses no page."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import ConsumerRecord

from pipeline.config import Config
from pipeline.kafka import client_options, ensure_topics, make_consumer, make_producer
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.offline import OfflinePipeline
from pipeline.synthetic import Fault, Scenario, generate
from pipeline.worker import DetectRunner, Worker
from tests.conftest import TopicNames

pytestmark = pytest.mark.broker

SCENARIO = Scenario(
    duration_s=1500.0,
    faults=(Fault(root="payments-db", onset_s=700.0, duration_s=300.0),),
    blips=(),
)
ROUTING_KEY = "fault-test-key"


def _messages() -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for _, points in generate(SCENARIO):
        by_service: dict[str, list[dict[str, Any]]] = {}
        for point in points:
            by_service.setdefault(point["labels"]["service"], []).append(point)
        out.extend((s.encode(), orjson.dumps(b)) for s, b in by_service.items())
    return out


def _config(topics: TopicNames, bootstrap: str, url: str, partitions: int, **worker: Any) -> Config:
    config = topics.config(
        bootstrap,
        receivers=[
            {
                "name": "oncall",
                "type": "pagerduty",
                "url": url,
                "routing_key": {"env": "QP_FAULT_ROUTING_KEY"},
                "retry": {"initial_backoff": "50ms", "max_backoff": "200ms"},
            }
        ],
        topology=SCENARIO.topology,
        correlate={"hold_for": "60s", "resolve_after": "2m"},
        worker={
            "shutdown_timeout": "5s",
            "idle_advance": "1s",
            "checkpoint_every": "200ms",
            **worker,
        },
    )
    data = config.model_dump(mode="json")
    data["topics"]["partitions"] = partitions
    return type(config).model_validate(data)


async def _produce(config: Config, messages: list[tuple[bytes, bytes]]) -> None:
    options = client_options(config.kafka)
    t = config.topics
    await ensure_topics(
        options, dict.fromkeys([t.metrics, t.logs, t.anomalies, t.pages, t.dlq], t.partitions)
    )
    await ensure_topics(
        options,
        dict.fromkeys([t.state_detect, t.state_correlate], t.partitions),
        compacted={t.state_detect, t.state_correlate},
    )
    producer = make_producer(options)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(config.topics.metrics, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _read_all(config: Config, topic: str, settle_s: float = 1.0) -> list[ConsumerRecord]:
    consumer = make_consumer(client_options(config.kafka), [topic], None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return records


def _anomaly_scores(records: list[ConsumerRecord]) -> list[tuple[str, float, float]]:
    out = []
    for record in records:
        data = orjson.loads(record.value)
        if data["kind"] == "anomaly":
            out.append(
                (orjson.dumps(data["labels"]).decode() + data["name"], data["ts"], data["score"])
            )
    return sorted(out)


async def _wait(condition: Any, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _detect(worker: Worker) -> DetectRunner:
    return next(r for r in worker.runners if isinstance(r, DetectRunner))


async def test_state_moves_with_partitions_and_scores_match(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    messages = _messages()
    half = len(messages) // 2
    url = "http://127.0.0.1:9/v2/enqueue"

    # Without a move: one worker scores the whole stream.
    baseline = _config(TopicNames.fresh(), kafka_bootstrap, url, 2)
    await _produce(baseline, messages)
    solo = Worker(baseline, Metrics.create(), stages=("detect",))
    stop = asyncio.Event()
    task = asyncio.create_task(solo.run(stop))
    await _wait(
        lambda: bool(solo.runners) and _detect(solo).core.stats.points >= SCENARIO.steps * 32,
        60,
        "the solo worker",
    )
    stop.set()
    await task
    expected = _anomaly_scores(await _read_all(baseline, baseline.topics.anomalies))
    assert expected, "the scenario must produce anomalies"

    # With a move: two workers share the stream, one leaves halfway.
    moved = _config(TopicNames.fresh(), kafka_bootstrap, url, 2)
    await _produce(moved, [])
    first, second = (Worker(moved, Metrics.create(), stages=("detect",)) for _ in range(2))
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(w.run(s)) for w, s in zip((first, second), stops, strict=True)]

    def assigned(worker: Worker) -> bool:
        if not worker.runners:
            return False
        consumer = _detect(worker).consumer
        return consumer is not None and any(
            tp.topic == moved.topics.metrics for tp in consumer.assignment()
        )

    await _wait(lambda: assigned(first) and assigned(second), 30, "both workers to join")
    await _produce(moved, messages[:half])
    points_first_half = sum(len(orjson.loads(v)) for _, v in messages[:half])
    await _wait(
        lambda: (
            _detect(first).core.stats.points + _detect(second).core.stats.points
            >= points_first_half
        ),
        60,
        "the first half",
    )
    stops[0].set()  # the first worker leaves: it checkpoints and commits on revoke
    await tasks[0]
    await _wait(
        lambda: (
            _detect(second).consumer is not None
            and len(
                [
                    tp
                    for tp in _detect(second).consumer.assignment()  # type: ignore[union-attr]
                    if tp.topic == moved.topics.metrics
                ]
            )
            == 2
        ),
        30,
        "the survivor to take over",
    )
    await _produce(moved, messages[half:])
    total = SCENARIO.steps * 32
    await _wait(
        lambda: _detect(first).core.stats.points + _detect(second).core.stats.points >= total,
        60,
        "the second half",
    )
    stops[1].set()
    await tasks[1]
    assert _anomaly_scores(await _read_all(moved, moved.topics.anomalies)) == expected
    assert second.metrics.registry.get_sample_value(
        "quietpager_state_restored_total", {"stage": "detect"}
    )


async def test_killed_worker_loses_no_page(kafka_bootstrap: str, tmp_path: Path) -> None:
    messages = _messages()
    sink = WebhookSink()
    await sink.start()
    try:
        config = _config(TopicNames.fresh(), kafka_bootstrap, sink.pagerduty_url, 1)
        # What an uninterrupted run sends: replay runs the same cores in event time.
        offline = OfflinePipeline(config, {"oncall": ROUTING_KEY})
        from pipeline.ingest import decode_message

        expected = []
        for _, value in messages:
            expected += offline.feed(decode_message(value, "metrics"))
        expected += offline.finish()
        want = sorted({(d.body["event_action"], d.body["dedup_key"]) for d in expected})
        assert [a for a, _ in want].count("trigger") == 1

        await _produce(config, [])
        data = config.model_dump(mode="json")
        data["http"] = {"enabled": False, "listen": "127.0.0.1:0"}
        path = tmp_path / "worker.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        env = {**os.environ, "QP_FAULT_ROUTING_KEY": ROUTING_KEY}
        command = [sys.executable, "-m", "pipeline.cli", "run", "--config", str(path)]

        victim = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env
        )
        producer_task = asyncio.create_task(_produce_paced(config, messages))
        # Kill it hard once it has delivered the trigger, mid-stream.
        await _wait(lambda: len(sink.received) >= 1, 60, "the first page")
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        await producer_task

        survivor = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env
        )
        try:
            await _wait(
                lambda: (
                    {(b["event_action"], b["dedup_key"]) for _, b in sink.received} >= set(want)
                ),
                90,
                "every expected page",
            )
            await asyncio.sleep(1.0)
        finally:
            survivor.send_signal(signal.SIGTERM)
            await asyncio.wait_for(survivor.wait(), 15)
        got = [(b["event_action"], b["dedup_key"]) for _, b in sink.received]
        # Nothing lost, nothing new; a redelivery repeats the same dedup_key at most.
        assert sorted(set(got)) == want
    finally:
        await sink.stop()


async def _produce_paced(config: Config, messages: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(client_options(config.kafka))
    await producer.start()
    try:
        for i, (key, value) in enumerate(messages):
            await producer.send(config.topics.metrics, value, key=key)
            if i % 40 == 0:
                await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()


async def test_webhook_outage_and_restart_lose_nothing(kafka_bootstrap: str) -> None:
    first_sink = WebhookSink()
    await first_sink.start()
    port = int(first_sink.url.rsplit(":", 1)[1])
    first_sink.fail_next(10_000, status=503)  # the receiver is down: 503 for everything
    config = _config(TopicNames.fresh(), kafka_bootstrap, first_sink.pagerduty_url, 1)
    await _produce(config, _messages())
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    def retries() -> float:
        return (
            metrics.registry.get_sample_value(
                "quietpager_webhook_attempts_total",
                {"receiver": "oncall", "outcome": "retry_status"},
            )
            or 0.0
        )

    await _wait(lambda: retries() >= 3, 60, "retries against the 503s")
    # Then it refuses connections altogether, and the worker is restarted meanwhile.
    await first_sink.stop()
    await asyncio.sleep(0.5)
    stop.set()
    await task
    assert first_sink.received == []

    second_sink = WebhookSink(port=port)
    await second_sink.start()
    try:
        restarted = Worker(config, Metrics.create(), routing_keys={"oncall": ROUTING_KEY})
        stop = asyncio.Event()
        task = asyncio.create_task(restarted.run(stop))
        await _wait(lambda: len(second_sink.received) >= 2, 60, "the pages after recovery")
        await asyncio.sleep(0.5)
        stop.set()
        await task
    finally:
        await second_sink.stop()
    actions = [(b["event_action"], b["dedup_key"]) for _, b in second_sink.received]
    # The trigger waited in the outbox topic, not in memory, and kept its order.
    assert [a for a, _ in actions] == ["trigger", "resolve"]
    assert actions[0][1] == actions[1][1]


async def test_second_sigterm_exits_at_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    sink = WebhookSink()
    await sink.start()
    sink.fail_next(10_000, status=503)  # keeps the notify stage busy retrying
    try:
        config = _config(
            TopicNames.fresh(), kafka_bootstrap, sink.pagerduty_url, 1, shutdown_timeout="60s"
        )
        await _produce(config, _messages())
        data = config.model_dump(mode="json")
        data["http"] = {"enabled": False, "listen": "127.0.0.1:0"}
        path = tmp_path / "worker.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--config",
            str(path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "QP_FAULT_ROUTING_KEY": ROUTING_KEY},
        )
        try:
            await _wait(lambda: sink.requests_seen >= 2, 60, "delivery attempts")
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert proc.returncode is None  # the first signal waits for in-flight work
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 10)
            assert code == 1
            assert time.monotonic() - started < 5
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        await sink.stop()

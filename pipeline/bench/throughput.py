"""`quietpager bench throughput`: how close the worker runs to the broker's drain ceiling.

In one run, on one fixed synthetic load:
1. ceiling: an aiokafka consumer that only decodes each message with orjson;
2. worker: the detect and correlate stages end to end over the same messages;
3. latency: a paced producer while the worker runs, from produce time to the detect
   decision (the batch holding the point is scored, its anomalies durable, offsets committed)
   and, for points that were anomalies, to the correlate decision on them (folded or paged,
   the resulting pages durable in the outbox, offsets committed).
"""

from __future__ import annotations

import asyncio
import platform
import random
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from pipeline.broker import EmbeddedBroker
from pipeline.config import Config, parse_config
from pipeline.kafka import client_options, ensure_topics, make_consumer, make_producer
from pipeline.metrics import Metrics
from pipeline.worker import PRODUCED_HEADER, Batch, CorrelateRunner, DetectRunner, Worker


def load_messages(points: int, series: int, batch: int, seed: int = 1) -> list[bytes]:
    """`points` metric points over `series` series, `batch` points per message, in time order.

    Values are noise around a level per series; about one point in a thousand after the
    warm-up is a spike, so the correlate stage has anomalies to decide on.
    """
    rng = random.Random(seed)
    names = [
        "http_request_duration_seconds",
        "http_requests_per_second",
        "http_request_errors_ratio",
        "cpu_utilization",
    ]
    base = [0.2 + 0.4 * rng.random() for _ in range(series)]
    messages: list[bytes] = []
    start = 1_795_683_600.0
    chunk: list[dict[str, Any]] = []
    for i in range(points):
        s = i % series
        step = i // series
        ts = start + step * 10.0
        value = base[s] * (1 + rng.gauss(0, 0.05))
        if step >= 40 and rng.random() < 0.001:
            value *= 8
        chunk.append(
            {
                "name": names[s % 4],
                "value": value,
                "ts": ts,
                "labels": {"service": f"svc-{s // 4 % 500}", "instance": f"i-{s}"},
            }
        )
        if len(chunk) == batch:
            messages.append(orjson.dumps(chunk))
            chunk = []
    if chunk:
        messages.append(orjson.dumps(chunk))
    return messages


def _config(bootstrap: str, prefix: str, model: str = "likelihood") -> Config:
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_prefix": f"bench-{prefix}",
                "session_timeout": "2s",
                "heartbeat_interval": "500ms",
            },
            "topics": {
                "metrics": f"bench-{prefix}.metrics",
                "logs": f"bench-{prefix}.logs",
                "anomalies": f"bench-{prefix}.anomalies",
                "pages": f"bench-{prefix}.pages",
                "dlq": f"bench-{prefix}.dlq",
                "state_detect": f"bench-{prefix}.state.detect",
                "state_correlate": f"bench-{prefix}.state.correlate",
                "partitions": 1,
            },
            "receivers": [{"name": "null", "type": "alertmanager", "url": "http://127.0.0.1:9/"}],
            "route": {"receivers": ["null"]},
            "worker": {"stages": ["detect", "correlate"]},
            "detect": {"model": model},
        },
        "<bench>",
    )


async def _produce(
    options: dict[str, Any], topic: str, messages: list[bytes], rate: float | None = None
) -> None:
    producer = make_producer(options, linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        for i, message in enumerate(messages):
            await producer.send(topic, message)
            if rate is not None and i % 50 == 0:
                ahead = i / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


async def _drain_ceiling(options: dict[str, Any], topic: str, expected: int) -> float:
    consumer = make_consumer(
        options, [topic], f"ceiling-{uuid.uuid4().hex[:8]}", max_poll_records=5000
    )
    await consumer.start()
    try:
        seen = 0
        points = 0
        started = time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for record in records:
                    points += len(orjson.loads(record.value))
                seen += sum(len(r) for r in batch.values())
        return points / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _worker_until(
    config: Config,
    done: Callable[[DetectRunner], bool],
    on_batch: Callable[[Batch], None] | None = None,
    on_correlate_batch: Callable[[Batch], None] | None = None,
    feed: Callable[[], Coroutine[Any, Any, None]] | None = None,
    limit_s: float = 600.0,
    settle_s: float = 0.0,
) -> tuple[float, DetectRunner]:
    """Run detect + correlate until `done`; the clock starts once partitions are assigned."""
    worker = Worker(config, Metrics.create(), stages=("detect", "correlate"))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    while not worker.runners:
        await asyncio.sleep(0.01)
    detect = next(r for r in worker.runners if isinstance(r, DetectRunner))
    detect.after_batch = on_batch
    correlate = next(r for r in worker.runners if isinstance(r, CorrelateRunner))
    correlate.after_batch = on_correlate_batch
    # Joining the group is start-up, not throughput: wait for the assignment first.
    while detect.consumer is None or not detect.consumer.assignment():
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    feeding: asyncio.Task[None] | None = asyncio.create_task(feed()) if feed else None
    started = time.perf_counter()
    limit = started + limit_s
    while not done(detect):
        if task.done():
            task.result()
        if time.perf_counter() > limit:
            raise TimeoutError("worker did not finish the load")
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(settle_s)  # let correlate decide on the last anomalies
    stop.set()
    await task
    if feeding is not None:
        await feeding
    return elapsed, detect


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def run_throughput(
    points: int = 200_000,
    series: int = 2_000,
    batch: int = 20,
    bootstrap: str | None = None,
    console: Console | None = None,
    model: str = "likelihood",
) -> dict[str, float]:
    """Run the three measurements and print one table; returns the figures."""
    console = console or Console()
    broker = None
    if bootstrap is None:
        broker = EmbeddedBroker()
        await broker.astart()
        bootstrap = broker.bootstrap
    try:
        prefix = uuid.uuid4().hex[:8]
        config = _config(bootstrap, prefix, model)
        options = client_options(config.kafka)
        topics = config.topics
        await ensure_topics(
            options,
            dict.fromkeys(
                [topics.metrics, topics.logs, topics.anomalies, topics.pages, topics.dlq], 1
            ),
        )
        messages = load_messages(points, series, batch)
        console.print(f"load: {points} points, {series} series, {len(messages)} messages")
        await _produce(options, topics.metrics, messages)
        ceiling = await _drain_ceiling(options, topics.metrics, len(messages))
        console.print(f"ceiling measured: {ceiling:,.0f} points/s")

        elapsed, detect = await _worker_until(config, lambda d: d.core.stats.points >= points)
        worker_rate = points / elapsed
        per_series = detect.core.bytes_per_series()
        console.print(f"worker measured: {worker_rate:,.0f} points/s")

        # Latency: a fresh group over a fresh topic, fed at half the worker's rate.
        latency_config = _config(bootstrap, f"{prefix}-lat", model)
        lt = latency_config.topics
        await ensure_topics(
            options, dict.fromkeys([lt.metrics, lt.logs, lt.anomalies, lt.pages, lt.dlq], 1)
        )
        latency_points = min(points, int(worker_rate * 5))
        latency_messages = messages[: max(1, latency_points // batch)]
        expected = sum(len(orjson.loads(m)) for m in latency_messages)
        delays: list[float] = []
        decision_delays: list[float] = []

        def record(batch_: Batch) -> None:
            now = time.time()
            for records in batch_.values():
                delays.extend(now - r.timestamp / 1000.0 for r in records)

        def record_decisions(batch_: Batch) -> None:
            # Anomaly records carry their source message's produce time in a header.
            now = time.time()
            for records in batch_.values():
                for r in records:
                    produced = dict(r.headers).get(PRODUCED_HEADER)
                    if produced is not None:
                        decision_delays.append(now - int(produced) / 1000.0)

        await _worker_until(
            latency_config,
            lambda d: d.core.stats.points >= expected,
            record,
            record_decisions,
            settle_s=1.0,
            feed=lambda: _produce(
                options, lt.metrics, latency_messages, rate=worker_rate / 2 / batch
            ),
        )
    finally:
        if broker is not None:
            await broker.astop()

    delays.sort()
    p50 = statistics.median(delays) * 1000
    p99 = _percentile(delays, 0.99) * 1000
    decision_delays.sort()
    d50 = _percentile(decision_delays, 0.50) * 1000
    d99 = _percentile(decision_delays, 0.99) * 1000
    figures = {
        "ceiling_points_per_s": ceiling,
        "worker_points_per_s": worker_rate,
        "ratio": worker_rate / ceiling,
        "bytes_per_series": per_series,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "decision_p50_ms": d50,
        "decision_p99_ms": d99,
    }
    table = Table(
        title=f"bench throughput — {platform.machine()}, {platform.python_version()}, "
        f"{points} points / {series} series / {batch} per message, detect.model {model}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("drain ceiling (orjson decode only)", f"{ceiling:,.0f} points/s")
    table.add_row("worker end to end (detect + correlate)", f"{worker_rate:,.0f} points/s")
    table.add_row("ratio worker / ceiling", f"{worker_rate / ceiling:.2f}")
    table.add_row("bytes per tracked series (checkpoint record)", f"{per_series:,.0f}")
    table.add_row("produce → detect decision p50", f"{p50:.1f} ms")
    table.add_row("produce → detect decision p99", f"{p99:.1f} ms")
    table.add_row(
        f"produce → correlate decision p50 ({len(decision_delays)} anomalies)", f"{d50:.1f} ms"
    )
    table.add_row("produce → correlate decision p99", f"{d99:.1f} ms")
    console.print(table)
    return figures

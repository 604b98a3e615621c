"""`bench faults` rows for the state changelogs: poison records, and a truncated checkpoint.

Both run the worker in this process on a real broker: a first worker reads two thirds of the
stream (the incident has paged) and stops, checkpointing; the changelogs are then tampered
with as an outsider or a broken write would; a second worker restores them and reads the
rest. The pages delivered are compared with what `replay` says an uninterrupted run sends.
"""

from __future__ import annotations

import asyncio

# Only to forge an attacker's record (`_Trap`); nothing in quietpager loads a pickle.
import pickle
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from pipeline.bench.faults import (
    ROUTING_KEY,
    FaultResult,
    Message,
    _compare,
    _points,
    create_topics,
    expected_pages,
    fault_config,
    messages,
    produce,
    read_topic,
    wait_for,
)
from pipeline.codec import MAGIC
from pipeline.config import Config
from pipeline.kafka import client_options, make_producer
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.worker import Worker


class _Trap:
    """Unpickled, it creates a file: what a record produced by a plain client could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


async def _run_until(config: Config, condition: Callable[[], bool], what: str) -> Metrics:
    """Run a whole worker until `condition` holds, then stop it (it checkpoints as it goes)."""
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_for(condition, 120, what)
    finally:
        stop.set()
        await task
    return metrics


async def _write(config: Config, topic: str, records: dict[bytes, bytes]) -> None:
    producer = make_producer(client_options(config.kafka))
    await producer.start()
    try:
        for key, value in records.items():
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def _rejected(metrics: Metrics, topic: str) -> int:
    registry = metrics.registry
    return int(
        sum(
            registry.get_sample_value(
                "quietpager_state_records_rejected_total", {"topic": topic, "reason": reason}
            )
            or 0
            for reason in ("not_a_record", "malformed", "wrong_kind", "version", "too_large")
        )
    )


async def _two_workers(
    fault: str,
    bootstrap: str,
    stream: list[Message],
    tamper: Callable[[Config], Awaitable[None]],
    tansu: bool,
    all_closed: bool = False,
) -> tuple[FaultResult, Metrics, Config]:
    sink = WebhookSink()
    await sink.start()
    try:
        config = fault_config(bootstrap, sink.pagerduty_url, tansu=tansu)
        want = expected_pages(config, stream)
        await create_topics(config)
        split = len(stream) * 2 // 3  # past the trigger, before the incident can resolve
        await produce(config, stream[:split])
        await _run_until(config, lambda: len(sink.received) >= 1, "the first page")
        await tamper(config)
        await produce(config, stream[split:])
        restarted = time.monotonic()
        wanted = set(want)

        def all_paged() -> bool:
            got = {(b["event_action"], b["dedup_key"]) for _, b in sink.received}
            if all_closed:  # and every incident triggered at the pager resolved there too
                opened = {key for action, key in got if action == "trigger"}
                if any(("resolve", key) not in got for key in opened):
                    return False
            return got >= wanted

        metrics = await _run_until(config, all_paged, "every page")
        recovery = time.monotonic() - restarted
        await asyncio.sleep(1.0)  # anything extra would arrive now
        return _compare(fault, _points(stream), want, sink, recovery), metrics, config
    finally:
        await sink.stop()


async def poison_state_record(
    bootstrap: str, stream: list[Message] | None = None, tansu: bool = True
) -> FaultResult:
    """Records no quietpager wrote, in each state topic: pickles that would create a file when
    loaded, and garbage. The worker must run none, count them, restore the rest and page."""
    stream = stream if stream is not None else messages()
    with tempfile.TemporaryDirectory() as tmp:
        trap = Path(tmp) / "pwned"
        evil = pickle.dumps(_Trap(trap))

        async def tamper(config: Config) -> None:
            t = config.topics
            await _write(
                config,
                t.state_detect,
                {
                    f"{t.metrics}:0|evil".encode(): evil,
                    f"{t.metrics}:0|garbage".encode(): b"\x00\xffgarbage",
                    f"{t.logs}:0|__log_stage__/evil".encode(): evil,
                },
            )
            await _write(
                config,
                t.state_correlate,
                {
                    f"{t.anomalies}:0|incident/qp-evil".encode(): evil,
                    f"{t.anomalies}:0|incident/qp-cut".encode(): MAGIC + b'{"kind":"inc',
                },
            )

        result, metrics, config = await _two_workers(
            "poison state record", bootstrap, stream, tamper, tansu
        )
        detect = _rejected(metrics, config.topics.state_detect)
        correlate = _rejected(metrics, config.topics.state_correlate)
        ran = trap.exists()
    note = _joined(
        f"{detect} detect and {correlate} correlate records rejected",
        f"pickled code {'RAN' if ran else 'never ran'}",
        result.note,
    )
    return replace(result, note=note)


async def truncated_correlate_checkpoint(
    bootstrap: str, stream: list[Message] | None = None, tansu: bool = True
) -> FaultResult:
    """Every open incident's checkpoint record is cut short after the trigger: the incident
    state is lost, yet the pager must still get its resolve (from the outbox)."""
    stream = stream if stream is not None else messages()
    cut: list[bytes] = []

    async def tamper(config: Config) -> None:
        latest: dict[bytes, bytes | None] = {}
        for record in await read_topic(config, config.topics.state_correlate, settle_s=0.5):
            latest[record.key] = record.value
        for key, value in latest.items():
            if b"|incident/" in key and value is not None:
                cut.append(key)
                await _write(config, config.topics.state_correlate, {key: value[: len(value) // 2]})

    result, metrics, config = await _two_workers(
        "truncated correlate checkpoint", bootstrap, stream, tamper, tansu, all_closed=True
    )
    rejected = _rejected(metrics, config.topics.state_correlate)
    extra = result.pages_delivered - result.pages_expected
    note = _joined(
        f"{len(cut)} open incident record(s) cut, {rejected} rejected; the lost incident "
        "resolved from the outbox",
        f"{extra} more page(s): the fault went on after the loss and paged, then resolved, "
        "as a new incident"
        if extra
        else "",
        result.note,
    )
    return replace(result, note=note)


def _joined(*parts: str) -> str:
    return "; ".join(part.strip("; ") for part in parts if part.strip("; "))

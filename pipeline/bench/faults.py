"""`quietpager bench faults`: break things for real and count what was lost or doubled.

Each fault runs the shipped worker against a real broker (the embedded one unless a
bootstrap is given) and a real webhook receiver on loopback, and compares the pages
delivered with what `replay` (the same cores, offline) says an uninterrupted run sends.
The test suite runs the same functions on shorter streams.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from pipeline.broker import EmbeddedBroker
from pipeline.config import Config
from pipeline.harness import (
    FAULT_SCENARIO,
    ROUTING_KEY,
    ROUTING_KEY_ENV,
    Message,
    PageId,
    create_topics,
    detect_runner,
    expected_pages,
    fault_config,
    messages,
    point_count,
    produce,
    read_topic,
    received_pages,
    spawn_worker,
    wait_for,
    worker_command,
)
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.worker import Worker

if TYPE_CHECKING:
    from pipeline.bench.faults_broker import LoopbackProxy, broker_cut
    from pipeline.bench.faults_load import cardinality_flood, fuzz_decoder
    from pipeline.bench.faults_receivers import receiver_down, webhook_outage
    from pipeline.bench.faults_restart import anomaly_scores, process_restart, rebalance

# The helpers moved to pipeline.harness (the tests use them too) stay importable from here
# for the faults_* modules.
__all__ = [
    "FAULT_SCENARIO",
    "ROUTING_KEY",
    "ROUTING_KEY_ENV",
    "FaultResult",
    "LoopbackProxy",
    "Message",
    "PageId",
    "anomaly_scores",
    "broker_cut",
    "cardinality_flood",
    "create_topics",
    "detect_runner",
    "expected_pages",
    "fault_config",
    "fuzz_decoder",
    "messages",
    "point_count",
    "process_restart",
    "produce",
    "read_topic",
    "rebalance",
    "received_pages",
    "receiver_down",
    "run_faults",
    "spawn_worker",
    "wait_for",
    "webhook_outage",
    "worker_command",
]

# The names the faults_* modules import.
_points = point_count
_detect = detect_runner

# The rows moved to faults_* modules stay importable from here. Those modules import this
# one, so they are loaded on first use (PEP 562) rather than at the top, which would make
# a faults_* module imported first see this one half-initialised.
_MOVED = {
    "process_restart": "faults_restart",
    "anomaly_scores": "faults_restart",
    "rebalance": "faults_restart",
    "webhook_outage": "faults_receivers",
    "receiver_down": "faults_receivers",
    "fuzz_decoder": "faults_load",
    "cardinality_flood": "faults_load",
    "LoopbackProxy": "faults_broker",
    "broker_cut": "faults_broker",
}


def __getattr__(name: str) -> Any:
    """The rows moved to faults_* modules, under their old names."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"pipeline.bench.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class FaultResult:
    """One row of the fault table."""

    fault: str
    events_in: int
    pages_expected: int
    pages_delivered: int
    duplicates: int
    lost: int
    recovery_s: float | None
    note: str = ""


def _compare(
    fault: str,
    events: int,
    want: list[PageId],
    sink: WebhookSink,
    recovery_s: float | None,
    note: str = "",
) -> FaultResult:
    got = [(b["event_action"], b["dedup_key"]) for _, b in sink.received]
    return FaultResult(
        fault=fault,
        events_in=events,
        pages_expected=len(want),
        pages_delivered=len(set(got)),
        duplicates=len(got) - len(set(got)),
        lost=len(set(want) - set(got)),
        recovery_s=recovery_s,
        note=note
        + (f"; unexpected {sorted(set(got) - set(want))}" if set(got) - set(want) else ""),
    )


async def _start_on(
    config: Config, stream: list[Message]
) -> tuple[list[PageId], Metrics, asyncio.Event, asyncio.Task[None]]:
    """The pages an uninterrupted run sends; then the topics created, the stream produced and
    a worker started on it (its metrics, the event that stops it, its task)."""
    want = expected_pages(config, stream)
    await create_topics(config)
    await produce(config, stream)
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})
    stop = asyncio.Event()
    return want, metrics, stop, asyncio.create_task(worker.run(stop))


async def run_faults(
    bootstrap: str | None = None,
    workdir: Path | None = None,
    console: Console | None = None,
    fuzz: int = 100_000,
    flood: int = 1_000_000,
    chaos_minutes: float = 5.0,
    chaos_kill_every: tuple[float, float] = (20.0, 40.0),
) -> list[FaultResult]:
    """Every fault in one go (the chaos row for `chaos_minutes`, none at 0); prints the table."""
    import tempfile

    from pipeline.bench.faults_broker import broker_cut
    from pipeline.bench.faults_chaos import chaos
    from pipeline.bench.faults_clock import skewed_clock  # it imports this module
    from pipeline.bench.faults_input import oversized_input
    from pipeline.bench.faults_load import cardinality_flood, fuzz_decoder
    from pipeline.bench.faults_notify import slow_receiver
    from pipeline.bench.faults_receivers import receiver_down, webhook_outage
    from pipeline.bench.faults_restart import process_restart, rebalance
    from pipeline.bench.faults_silences import poison_silence
    from pipeline.bench.faults_state import poison_state_record, truncated_correlate_checkpoint

    console = console or Console(width=max(Console().width, 160))
    results: list[FaultResult] = []
    broker = None
    if bootstrap is None:
        broker = EmbeddedBroker()
        await broker.astart()
        bootstrap = broker.bootstrap
    tansu = broker is not None
    with tempfile.TemporaryDirectory() as tmp:
        where = workdir or Path(tmp)
        try:
            faults: list[tuple[str, Callable[[], Coroutine[Any, Any, FaultResult]]]] = [
                ("kill", lambda: process_restart(bootstrap, where, signal.SIGKILL, tansu=tansu)),
                ("term", lambda: process_restart(bootstrap, where, signal.SIGTERM, tansu=tansu)),
                ("rebalance", lambda: rebalance(bootstrap, tansu=tansu)),
                ("outage", lambda: webhook_outage(bootstrap, tansu=tansu)),
                ("receiver down", lambda: receiver_down(bootstrap, tansu=tansu)),
                ("poison state", lambda: poison_state_record(bootstrap, tansu=tansu)),
                ("truncated", lambda: truncated_correlate_checkpoint(bootstrap, tansu=tansu)),
                ("poison silence", lambda: poison_silence(bootstrap, tansu=tansu)),
                ("skewed clock", lambda: skewed_clock(bootstrap, tansu=tansu)),
                ("slow receiver", lambda: slow_receiver(bootstrap, tansu=tansu)),
                ("oversized input", lambda: oversized_input(bootstrap, tansu=tansu)),
            ]
            if chaos_minutes > 0:
                faults.append(
                    (
                        "chaos",
                        lambda: chaos(
                            bootstrap, where, chaos_minutes, chaos_kill_every, tansu=tansu
                        ),
                    )
                )
            if tansu:  # the cut needs a broker that advertises the proxy
                faults.append(("broker cut", lambda: broker_cut()))
            for name, run in faults:
                console.print(f"fault: {name} …")
                results.append(await run())
        finally:
            if broker is not None:
                await broker.astop()
    console.print("fault: fuzz …")
    results.append(fuzz_decoder(fuzz))
    console.print("fault: flood …")
    results.append(cardinality_flood(flood))
    table = Table(title="bench faults")
    for column in (
        "fault",
        "events in",
        "expected",
        "delivered",
        "duplicates",
        "lost",
        "recovery",
        "note",
    ):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(
            r.fault,
            f"{r.events_in:,}",
            str(r.pages_expected),
            str(r.pages_delivered),
            str(r.duplicates),
            str(r.lost),
            "-" if r.recovery_s is None else f"{r.recovery_s:.1f}s",
            r.note,
        )
    console.print(table)
    return results

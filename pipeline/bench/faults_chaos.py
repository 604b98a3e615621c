"""`bench faults` row "chaos": three worker processes, one `kill -9`ed at random, again and again.

Three `quietpager run` processes share one group on six partitions per topic of the broker;
every 20 to 40 s (seeded) one of them, picked at random, gets SIGKILL and is started again at
once, while a stream with several incidents is produced at a steady pace. At the end the pages
the receiver got are compared with what `replay` (the same cores, offline) sends for the same
stream.

The pace is one agent step (8 messages, 32 points, 10 s of event time) per second of wall
time: a tenth of what one default worker sustains on the 2-core machine with three workers
and the broker beside it, and slow enough that the partitions of a killed worker, idle until
the group has moved them (a second or two on the embedded broker, a few more while the
survivors restore their state), fall less event time behind the others than
`correlate.resolve_after` (2 min here): what arrives later than that is `stale`, a loss no
delivery guarantee covers. A faster pace measures how far event time outruns a rebalance, not
whether a kill loses a page. The first `WARMUP_S` of the stream (the detectors learn) is
produced at once, before the steady part and the kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bench.faults import (
    ROUTING_KEY,
    FaultResult,
    Message,
    PageId,
    _points,
    create_topics,
    fault_config,
    produce,
    spawn_worker,
    wait_for,
    worker_command,
)
from pipeline.config import Config
from pipeline.ingest import decode_message
from pipeline.kafka import client_options, make_producer
from pipeline.notify.sink import WebhookSink
from pipeline.offline import OfflinePipeline
from pipeline.synthetic import Fault, Scenario, agent_messages

WORKERS = 3
PARTITIONS = 6
#: Event time the detectors need before a fault can page (the models learn first).
WARMUP_S = 300.0
#: Event time per incident: the fault, its hold and resolve, and quiet before the next one.
INCIDENT_EVERY_S = 450.0
FAULT_FOR_S = 120.0
#: Roots in turn, each a different part of the shop's call graph.
ROOTS = ("payments-db", "auth", "inventory-db", "catalog")
STEPS_PER_S = 1.0


def chaos_scenario(seconds: float, steps_per_s: float = STEPS_PER_S) -> Scenario:
    """The stream for `seconds` of steady producing after the warm-up: one fault per
    `INCIDENT_EVERY_S` of event time (at least one), each over before the stream ends."""
    steady_s = seconds * steps_per_s * 10.0
    incidents = max(1, int(steady_s // INCIDENT_EVERY_S))
    faults = tuple(
        Fault(
            root=ROOTS[i % len(ROOTS)],
            onset_s=WARMUP_S + 30.0 + i * INCIDENT_EVERY_S,
            duration_s=FAULT_FOR_S,
        )
        for i in range(incidents)
    )
    # At least one whole incident block, so the last resolve comes inside the stream.
    duration = WARMUP_S + max(steady_s, incidents * INCIDENT_EVERY_S)
    return Scenario(duration_s=duration, faults=faults, blips=())


def replay_times(config: Config, stream: list[Message]) -> dict[PageId, float]:
    """(action, dedup key) of every page `replay` sends for the stream, with its event time."""
    offline = OfflinePipeline(config, {"oncall": ROUTING_KEY})
    for _, value in stream:
        offline.feed(decode_message(value, "metrics"))
    offline.finish()
    return {(p.action, p.dedup_key): p.at for p in offline.summary.pages}


@dataclass(frozen=True, slots=True)
class ChaosResult(FaultResult):
    """The chaos row, with how many times a worker was killed."""

    kills: int = 0


@dataclass(slots=True)
class _Paced:
    """When each step of the stream was sent: (wall time, event time), in order."""

    sent: list[tuple[float, float]] = field(default_factory=list)

    def due(self, event_ts: float) -> float | None:
        """Wall time the first step at or after `event_ts` was sent (None: never)."""
        return next((wall for wall, ts in self.sent if ts >= event_ts), None)


async def _produce_paced(
    config: Config, steps: list[tuple[float, list[Message]]], steps_per_s: float, paced: _Paced
) -> None:
    producer = make_producer(client_options(config.kafka))
    await producer.start()
    try:
        start = time.monotonic()
        for i, (ts, batch) in enumerate(steps):
            delay = start + i / steps_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for key, value in batch:
                await producer.send(config.topics.metrics, value, key=key)
            paced.sent.append((time.monotonic(), ts))
        await producer.flush()
    finally:
        await producer.stop()


async def chaos(
    bootstrap: str,
    workdir: Path,
    minutes: float = 5.0,
    kill_every: tuple[float, float] = (20.0, 40.0),
    seed: int = 20,
    steps_per_s: float = STEPS_PER_S,
    tansu: bool = True,
) -> ChaosResult:
    """Three workers, six partitions, a random worker SIGKILLed every `kill_every` seconds
    (uniform, seeded) for `minutes` and started again; pages compared with `replay`."""
    rng = random.Random(seed)
    scenario = chaos_scenario(minutes * 60.0, steps_per_s)
    steps = list(agent_messages(scenario))
    warmup = [s for s in steps if s[0] < scenario.start + WARMUP_S]
    steady = steps[len(warmup) :]
    stream = [m for _, batch in steps for m in batch]
    arrived: dict[tuple[str, str], float] = {}

    def on_receive(_: str, body: dict[str, object]) -> None:
        arrived.setdefault((str(body["event_action"]), str(body["dedup_key"])), time.monotonic())

    sink = WebhookSink(on_receive=on_receive)
    await sink.start()
    workers: list[asyncio.subprocess.Process] = []
    kills: list[float] = []
    try:
        config = fault_config(
            bootstrap, sink.pagerduty_url, partitions=PARTITIONS, tansu=tansu, scenario=scenario
        )
        at = replay_times(config, stream)
        want = list(at)
        await create_topics(config)
        command = worker_command(config, workdir)
        workers = [await spawn_worker(command) for _ in range(WORKERS)]
        await produce(config, [m for _, batch in warmup for m in batch])
        paced = _Paced()
        producing = asyncio.create_task(_produce_paced(config, steady, steps_per_s, paced))
        started = time.monotonic()
        while True:
            pause = rng.uniform(*kill_every)
            if time.monotonic() + pause > started + len(steady) / steps_per_s:
                break
            await asyncio.sleep(pause)
            victim = rng.randrange(WORKERS)
            workers[victim].send_signal(signal.SIGKILL)
            kills.append(time.monotonic())
            await workers[victim].wait()
            workers[victim] = await spawn_worker(command)
        await producing
        wanted = set(want)
        with contextlib.suppress(TimeoutError):  # what never came is counted as lost
            await wait_for(lambda: set(arrived) >= wanted, 120, "every page")
        await asyncio.sleep(2.0)  # anything extra would arrive now
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                await asyncio.wait_for(worker.wait(), 30)
            except TimeoutError:
                worker.kill()
                await worker.wait()
        await sink.stop()
    delays = [
        arrived[page] - due
        for page, ts in at.items()
        if page in arrived and (due := paced.due(ts)) is not None
    ]
    after_kill = [
        arrived[page] - due
        for page, ts in at.items()
        if page in arrived
        and (due := paced.due(ts)) is not None
        and any(0 <= due - k < kill_every[0] for k in kills)
    ]
    got = [(b["event_action"], b["dedup_key"]) for _, b in sink.received]
    unexpected = sorted(set(got) - set(want))
    note = (
        f"{len(kills)} kills over {minutes:g} min, {len(steady) / steps_per_s:.0f}s steady at "
        f"{steps_per_s * 8:g} msg/s; page delay worst {max(delays, default=0.0):.1f}s, "
        f"worst of {len(after_kill)} due within {kill_every[0]:g}s of a kill "
        f"{max(after_kill, default=0.0):.1f}s"
        + (f"; unexpected {unexpected}" if unexpected else "")
    )
    return ChaosResult(
        fault=f"chaos: {WORKERS} workers, {PARTITIONS} partitions, a random one SIGKILLed every "
        f"{kill_every[0]:g}-{kill_every[1]:g}s",
        events_in=_points(stream),
        pages_expected=len(want),
        pages_delivered=len(set(got)),
        duplicates=len(got) - len(set(got)),
        lost=len(set(want) - set(got)),
        recovery_s=max(delays, default=None),
        note=note,
        kills=len(kills),
    )

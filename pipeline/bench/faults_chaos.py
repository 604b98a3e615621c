"""`bench faults` row "chaos": three worker processes, one `kill -9`ed at random, again and again.

Three `quietpager run` processes share one group on six partitions per topic of the broker;
every 20 to 40 s (seeded) one of them, picked at random, gets SIGKILL and is started again at
once, while a stream with several incidents is produced at a steady pace. At the end the pages
the receiver got are compared with what `replay` (the same cores, offline) sends for the same
stream.

The pace is one agent step (8 messages, 32 points, 10 s of event time) every two seconds of
wall time, 4 messages a second: a small fraction of what one default worker sustains on the
2-core machine even with three workers and the broker beside it. The pace is set by event
time, not by throughput: the partitions of a killed worker stay idle until the group has moved
them and their new owner has restored their state (seconds here), and in that time the other
partitions, and with them the correlator's clock, move on. What reaches the correlator more
than `correlate.resolve_after` (2 min here) late is `stale`, and an incident whose first
anomaly arrives late opens under another dedup_key. At 5x real time a stall of 24 s stays
inside that. At 10x (one step a second), of three 5-minute runs one lost an incident and one
re-keyed one (which, not recorded), and one lost the first incident before any kill, as the
group was still joining (the bench now waits for the warm-up to be read).
The first `WARMUP_S` of the stream (the detectors learn) is
produced at once; the steady part and the kills start once the workers have read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

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
from pipeline.correlate.incidents import incident_id
from pipeline.ingest import decode_message
from pipeline.kafka import client_options, committed_offsets, make_producer
from pipeline.model import Page
from pipeline.notify.sink import WebhookSink
from pipeline.offline import OfflinePipeline
from pipeline.synthetic import Fault, Scenario, agent_messages
from pipeline.timeutil import parse_timestamp

WORKERS = 3
PARTITIONS = 6
#: Event time the detectors need before a fault can page (the models learn first).
WARMUP_S = 300.0
#: Event time per incident: the fault, its hold and resolve, and quiet before the next one.
INCIDENT_EVERY_S = 450.0
FAULT_FOR_S = 120.0
#: Roots in turn, each a different part of the shop's call graph.
ROOTS = ("payments-db", "auth", "inventory-db", "catalog")
STEPS_PER_S = 0.5
#: Every anomaly's scope: `fault_config` names no `detect.scope_label`.
SCOPE = "default"


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


def replay_pages(config: Config, stream: list[Message]) -> dict[PageId, Page]:
    """Every page `replay` sends for the stream, by (action, dedup key)."""
    offline = OfflinePipeline(config, {"oncall": ROUTING_KEY})
    for _, value in stream:
        offline.feed(decode_message(value, "metrics"))
    offline.finish()
    return {(p.action, p.dedup_key): p for p in offline.summary.pages}


@dataclass(frozen=True, slots=True)
class Opened:
    """Who opened an incident, and when: what its dedup_key is made of."""

    root: str
    service: str
    onset: float


def opened(dedup_key: str, details: Mapping[str, Any], services: Iterable[str]) -> Opened:
    """The root, opening service and onset of a page's incident (from its custom details);
    the opening service is found by hashing each candidate as `incident_id` does."""
    onset = parse_timestamp(details["onset"])
    first = next((s for s in services if incident_id(SCOPE, s, onset) == dedup_key), "?")
    return Opened(str(details["suspected_root_cause"]), first, onset)


def rekeyed(
    missing: Mapping[PageId, Opened], unexpected: Mapping[PageId, Opened]
) -> list[tuple[PageId, PageId]]:
    """Pairs (expected, delivered) of the same action and root whose incidents opened within
    `INCIDENT_EVERY_S / 2` of each other: the same fault under another dedup_key, because
    the first anomaly the live correlator saw was not the first in event time.

    >>> a, b = Opened("auth", "auth", 100.0), Opened("auth", "frontend", 130.0)
    >>> rekeyed({("trigger", "qp-a"): a}, {("trigger", "qp-b"): b})
    [(('trigger', 'qp-a'), ('trigger', 'qp-b'))]
    >>> rekeyed({("trigger", "qp-a"): a}, {("resolve", "qp-b"): b})
    []
    """
    pairs = []
    left = dict(unexpected)
    for want, was in sorted(missing.items(), key=lambda kv: kv[1].onset):
        match = next(
            (
                got
                for got, now in left.items()
                if got[0] == want[0]
                and now.root == was.root
                and abs(now.onset - was.onset) < INCIDENT_EVERY_S / 2
            ),
            None,
        )
        if match is not None:
            pairs.append((want, match))
            del left[match]
    return pairs


@dataclass(frozen=True, slots=True)
class ChaosResult(FaultResult):
    """The chaos row, with how many times a worker was killed."""

    kills: int = 0
    #: Expected pages delivered under another dedup_key (the same fault, the same root).
    rekeyed: int = 0


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
    arrived: dict[PageId, float] = {}

    def on_receive(_: str, body: dict[str, Any]) -> None:
        arrived.setdefault((body["event_action"], body["dedup_key"]), time.monotonic())

    sink = WebhookSink(on_receive=on_receive)
    await sink.start()
    workers: list[asyncio.subprocess.Process] = []
    kills: list[float] = []
    paced = _Paced()
    try:
        config = fault_config(
            bootstrap, sink.pagerduty_url, partitions=PARTITIONS, tansu=tansu, scenario=scenario
        )
        expected = replay_pages(config, stream)
        await create_topics(config)
        command = worker_command(config, workdir)
        workers = [await spawn_worker(command) for _ in range(WORKERS)]
        await produce(config, [m for _, batch in warmup for m in batch])
        await _consumed(config, sum(len(batch) for _, batch in warmup))
        producing = asyncio.create_task(_produce_paced(config, steady, steps_per_s, paced))
        ends = time.monotonic() + len(steady) / steps_per_s
        while time.monotonic() + (pause := rng.uniform(*kill_every)) < ends:
            await asyncio.sleep(pause)
            victim = rng.randrange(WORKERS)
            workers[victim].send_signal(signal.SIGKILL)
            kills.append(time.monotonic())
            await workers[victim].wait()
            workers[victim] = await spawn_worker(command)
        await producing
        with contextlib.suppress(TimeoutError):  # what never came is counted below
            await wait_for(lambda: _settled(expected, arrived), 120, "every page")
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
    return _result(
        scenario, expected, sink.received, arrived, paced, kills, kill_every, _points(stream)
    )


async def _consumed(config: Config, count: int, limit_s: float = 120.0) -> None:
    """Wait until the detect group has committed `count` messages of the metrics topic.

    The three workers join while the warm-up is produced; the partitions they take first run
    ahead and move the correlator's clock, and the others' first anomalies come `stale`. So
    the steady part and the kills start once the group has settled and read the warm-up.
    """
    options = client_options(config.kafka)
    group = f"{config.kafka.group_prefix}-detect"
    partitions = [TopicPartition(config.topics.metrics, p) for p in range(PARTITIONS)]
    deadline = time.monotonic() + limit_s
    while sum((await committed_offsets(options, group, partitions)).values()) < count:
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for the workers to read the warm-up")
        await asyncio.sleep(0.5)


def _settled(expected: Mapping[PageId, Page], arrived: Mapping[PageId, float]) -> bool:
    """As many pages as expected came (some perhaps under other keys), and every incident
    triggered at the pager was resolved there."""
    triggered = {key for action, key in arrived if action == "trigger"}
    closed = all(("resolve", key) in arrived for key in triggered)
    return closed and len(arrived) >= len(expected)


def _steady(paced: _Paced) -> str:
    span = paced.sent[-1][0] - paced.sent[0][0] if len(paced.sent) > 1 else 0.0
    rate = 8 * (len(paced.sent) - 1) / span if span else 0.0
    return f"{len(paced.sent)} steps in {span:.0f} s ({rate:.1f} msg/s)"


def _since_kill(paced: _Paced, page: Page, kills: list[float]) -> str:
    due = paced.due(page.at)
    before = [due - kill for kill in kills if due is not None and kill <= due]
    return f"{min(before):.0f}s after a kill" if before else "before any kill"


def _result(
    scenario: Scenario,
    expected: Mapping[PageId, Page],
    received: list[tuple[str, dict[str, Any]]],
    arrived: Mapping[PageId, float],
    paced: _Paced,
    kills: list[float],
    kill_every: tuple[float, float],
    events: int,
) -> ChaosResult:
    services = sorted(scenario.topology)
    bodies = {(b["event_action"], b["dedup_key"]): b for _, b in received}
    # A PagerDuty resolve carries no payload: its incident is its trigger's.
    incidents = {
        key: opened(key, b["payload"]["custom_details"], services)
        for (action, key), b in bodies.items()
        if action == "trigger"
    }
    live = {page: incidents[page[1]] for page in bodies if page[1] in incidents}
    replayed = {page: opened(page[1], p.custom_details, services) for page, p in expected.items()}
    pairs = rekeyed(
        {page: o for page, o in replayed.items() if page not in bodies},
        {page: o for page, o in live.items() if page not in expected},
    )
    unexpected = sorted(set(bodies) - set(expected) - {got for _, got in pairs})
    delays: list[float] = []
    after_kill: list[float] = []
    for want, got in [(page, page) for page in expected if page in arrived] + pairs:
        due = paced.due(expected[want].at)
        if due is None:
            continue
        delays.append(arrived[got] - due)
        if any(0 <= due - kill < kill_every[0] for kill in kills):
            after_kill.append(arrived[got] - due)
    start = scenario.start
    note = "; ".join(
        [
            f"{len(kills)} kills, {_steady(paced)}",
            f"page delay worst {max(delays, default=0.0):.1f}s, of the {len(after_kill)} due "
            f"within {kill_every[0]:g}s of a kill {max(after_kill, default=0.0):.1f}s",
            *(
                f"{want[0]} {want[1]} came as {got[1]} (opened by {live[got].service} at "
                f"{live[got].onset - start:.0f}s; replay: {replayed[want].service} at "
                f"{replayed[want].onset - start:.0f}s)"
                for want, got in pairs
            ),
            *([f"unexpected {unexpected}"] if unexpected else []),
            *(
                f"missing {want[0]} {want[1]} ({replayed[want].root}, opened at "
                f"{replayed[want].onset - start:.0f}s, due {_since_kill(paced, p, kills)})"
                for want, p in expected.items()
                if want not in bodies and want not in {w for w, _ in pairs}
            ),
        ]
    )
    got_all = [(b["event_action"], b["dedup_key"]) for _, b in received]
    return ChaosResult(
        fault=f"chaos: {WORKERS} workers, {PARTITIONS} partitions, a random one SIGKILLed every "
        f"{kill_every[0]:g}-{kill_every[1]:g}s",
        events_in=events,
        pages_expected=len(expected),
        pages_delivered=len(set(got_all)),
        duplicates=len(got_all) - len(set(got_all)),
        lost=len(set(expected) - set(bodies)) - len(pairs),
        recovery_s=max(delays, default=None),
        note=note,
        kills=len(kills),
        rekeyed=len(pairs),
    )

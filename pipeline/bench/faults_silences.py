"""The "poison silence" row of `quietpager bench faults`.

A silence whose regex makes a backtracking engine run for ever (`(.*.*)*x` against every
anomaly's metric name), and a `filter` that does the same to the silences list
(`(x+x+)+y` against a label of 32 `x`), are posted through the API of a running worker.
Matched with Python's `re`, either stopped the event loop that every stage, heartbeat and
HTTP handler share. The row counts the pages the worker still sends (against what `replay`
says an uninterrupted run sends), how long the API and `/healthz` took to answer meanwhile,
and how long a restarted worker takes to load the silence and expire it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp

from pipeline.bench.faults import (
    FAULT_SCENARIO,
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
    wait_for,
)
from pipeline.config import Config, parse_config
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.ops import OpsServer
from pipeline.timeutil import format_timestamp
from pipeline.worker import Worker

#: The poison: evaluated against every anomaly (it comes first, and the silence is active over
#: the whole scenario), yet it never mutes one (no service is called `nowhere`).
POISON_MATCHERS = ['__name__=~"(.*.*)*x"', 'job="' + "x" * 32 + '"', 'service="nowhere"']
#: The poison filter: run against the silence's `job` label, 32 `x` and no `y`.
POISON_FILTER = 'job=~"(x+x+)+y"'

#: The wall clock the worker and its API read: a day after the scenario starts, so that the
#: silence is active over the scenario, and collected by no retention whatever day it runs.
WALL = FAULT_SCENARIO.start + 86400.0


def _with_silences_topic(config: Config) -> Config:
    data = config.model_dump(mode="json")
    data["topics"]["silences"] = f"{config.kafka.group_prefix}.silences"
    return parse_config(data, f"<faults {config.kafka.group_prefix}>")


async def _start_worker(
    config: Config,
) -> tuple[Worker, OpsServer, asyncio.Event, asyncio.Task[None], float]:
    """A worker and its API on the fixed wall clock; the seconds it took to be ready."""
    began = time.monotonic()
    worker = Worker(
        config, Metrics.create(), routing_keys={"oncall": ROUTING_KEY}, clock=lambda: WALL
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await wait_for(lambda: worker.ready, 60, "the worker")
    ops = OpsServer(
        worker.metrics,
        lambda: worker.ready,
        "127.0.0.1",
        0,
        silences=lambda: worker.silences,
        clock=lambda: WALL,
    )
    await ops.start()
    return worker, ops, stop, task, time.monotonic() - began


async def _stop_worker(ops: OpsServer, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    await ops.stop()
    stop.set()
    await task


async def _timed(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, float]:
    """Status, JSON body and seconds of one request."""
    began = time.monotonic()
    async with session.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        return response.status, body, time.monotonic() - began


async def _probe_health(session: aiohttp.ClientSession, url: str, worst: list[float]) -> None:
    """GET /healthz every 50 ms, keeping the slowest answer in `worst[0]`."""
    while True:
        _, _, took = await _timed(session, "GET", url)
        worst[0] = max(worst[0], took)
        await asyncio.sleep(0.05)


async def poison_silence(
    bootstrap: str, stream: list[Message] | None = None, tansu: bool = True
) -> FaultResult:
    """Post the poison silence and filter, then run the stream: every page must still come,
    the API and /healthz must answer promptly, and a restarted worker must load it and
    expire it."""
    stream = stream if stream is not None else messages()
    sink = WebhookSink()
    await sink.start()
    config = _with_silences_topic(fault_config(bootstrap, sink.pagerduty_url, tansu=tansu))
    want = expected_pages(config, stream)
    await create_topics(config)
    worst_health = [0.0]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            _, ops, stop, task, _ = await _start_worker(config)
            base = f"http://127.0.0.1:{ops.port}"
            probe = asyncio.create_task(_probe_health(session, f"{base}/healthz", worst_health))
            try:
                poisoned = time.monotonic()
                body = {
                    "matchers": POISON_MATCHERS,
                    "startsAt": format_timestamp(FAULT_SCENARIO.start - 3600.0),
                    "endsAt": format_timestamp(WALL + 86400.0),
                    "comment": "poison",
                }
                status, answer, post_s = await _timed(
                    session, "POST", f"{base}/api/v2/silences", json=body
                )
                if status != 200:
                    raise RuntimeError(f"the poison silence was refused: {status} {answer}")
                silence_id = answer["silenceID"]
                status, listed, filter_s = await _timed(
                    session, "GET", f"{base}/api/v2/silences", params={"filter": POISON_FILTER}
                )
                if status != 200 or listed != []:
                    raise RuntimeError(f"the poison filter answered {status} {listed}")
                await produce(config, stream)
                await wait_for(lambda: len(sink.received) >= len(want), 60, "the pages")
                recovery = time.monotonic() - poisoned
                await asyncio.sleep(0.5)  # anything extra would arrive now
            finally:
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
                await _stop_worker(ops, stop, task)
            # A restart loads the poison from the topic; the DELETE must get through.
            _, ops, stop, task, load_s = await _start_worker(config)
            try:
                status, _, delete_s = await _timed(
                    session, "DELETE", f"http://127.0.0.1:{ops.port}/api/v2/silence/{silence_id}"
                )
                if status != 200:
                    raise RuntimeError(f"the poison silence could not be expired: {status}")
            finally:
                await _stop_worker(ops, stop, task)
        return _compare(
            "poison silence and filter (catastrophic regexes) posted to the API",
            _points(stream),
            want,
            sink,
            recovery,
            f"POST {post_s * 1000:.0f} ms, filtered GET {filter_s * 1000:.0f} ms, "
            f"slowest /healthz {worst_health[0] * 1000:.0f} ms; restarted worker ready with "
            f"it in {load_s:.1f}s, DELETE {delete_s * 1000:.0f} ms",
        )
    finally:
        await sink.stop()

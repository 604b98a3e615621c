"""`bench faults` row "skewed clock": one agent's clock runs 9 minutes ahead for one minute.

Before the watermark (pipeline/watermark.py) the skewed points moved event time 9 minutes on:
every real anomaly afterwards was `stale` (0 of the expected pages), and once the clock was
corrected the agent's own points were skipped as out-of-order for nine minutes, so its own
fault went unseen and the page named the wrong root. The row runs the shipped worker on the
skewed stream against a real broker and compares its pages with the pages `replay` sends for
the same stream with the clock *right*: they must be the same pages, naming the same roots.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from pipeline.bench.faults import (
    ROUTING_KEY,
    FaultResult,
    Message,
    _compare,
    _start_on,
    create_topics,
    fault_config,
    messages,
    wait_for,
)
from pipeline.config import Config
from pipeline.ingest import decode_message
from pipeline.notify.sink import WebhookSink
from pipeline.offline import OfflinePipeline
from pipeline.synthetic import Fault, Scenario

#: Two incidents; the agent of the first one's root runs ahead just before it starts.
SKEW_SCENARIO = Scenario(
    duration_s=1500.0,
    faults=(
        Fault(root="payments-db", onset_s=700.0, duration_s=240.0),
        Fault(root="auth", onset_s=900.0, duration_s=240.0),
    ),
    blips=(),
)
SKEWED_AGENT = "payments-db"
SKEW_S = 540.0
SKEW_FROM_S = 600.0
SKEW_FOR_S = 60.0


def skew(
    stream: list[Message],
    agent: str = SKEWED_AGENT,
    start: float = SKEW_SCENARIO.start + SKEW_FROM_S,
    seconds: float = SKEW_FOR_S,
    ahead: float = SKEW_S,
) -> list[Message]:
    """The stream with `agent`'s points in [start, start + seconds) stamped `ahead` later."""
    out: list[Message] = []
    for key, value in stream:
        if key.decode() == agent:
            points = orjson.loads(value)
            for point in points:
                if start <= point["ts"] < start + seconds:
                    point["ts"] += ahead
            value = orjson.dumps(points)
        out.append((key, value))
    return out


def replay_pages(config: Config, stream: list[Message]) -> list[tuple[str, str, str]]:
    """(action, dedup key, root service) of every page `replay` sends for the stream."""
    offline = OfflinePipeline(config, {"oncall": ROUTING_KEY})
    for _, value in stream:
        offline.feed(decode_message(value, "metrics"))
    offline.finish()
    return [(p.action, p.dedup_key, p.root_service) for p in offline.summary.pages]


async def skewed_clock(
    bootstrap: str, scenario: Scenario = SKEW_SCENARIO, tansu: bool = True
) -> FaultResult:
    """The worker on the skewed stream; expected: the pages of the stream with a right clock."""
    honest = messages(scenario)
    skewed = skew(honest, start=scenario.start + SKEW_FROM_S)
    sink = WebhookSink()
    await sink.start()
    try:
        config = fault_config(bootstrap, sink.pagerduty_url, scenario=scenario, tansu=tansu)
        want = replay_pages(config, honest)
        got_offline = replay_pages(config, skewed)
        started = time.monotonic()
        _, _, stop, task = await _start_on(config, skewed)
        try:
            wanted = {(action, key) for action, key, _ in want}
            await wait_for(
                lambda: {(b["event_action"], b["dedup_key"]) for _, b in sink.received} >= wanted,
                120,
                "every page",
            )
            recovery = time.monotonic() - started
            await asyncio.sleep(1.0)  # anything extra would arrive now
        except TimeoutError:
            recovery = None
        finally:
            stop.set()
            await task
        roots = sorted({root for action, _, root in want if action == "trigger"})
        live_roots = sorted(
            {
                b["payload"].get("component", "")
                for _, b in sink.received
                if b["event_action"] == "trigger"
            }
        )
        note = (
            f"agent {SKEWED_AGENT} {SKEW_S / 60:g} min ahead for {SKEW_FOR_S:g}s; roots "
            f"{live_roots} (right: {roots}); replay of the skewed stream "
            + ("sends the same pages" if got_offline == want else f"differs: {got_offline}")
        )
        return _compare(
            "skewed clock",
            sum(len(orjson.loads(v)) for _, v in skewed),
            [(action, key) for action, key, _ in want],
            sink,
            recovery,
            note,
        )
    finally:
        await sink.stop()


__all__ = ["SKEW_SCENARIO", "create_topics", "replay_pages", "skew", "skewed_clock"]

"""Drives a worker against a real broker: topics, the shop's stream, producing, reading back.

Shared by the fault benches (`pipeline/bench/faults*.py`) and the tests, so that neither
depends on the other: `fault_config` on fresh topics, `expected_pages` from the offline
cores, `produce` / `read_topic` / `wait_for`, and a worker in its own process.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import ConsumerRecord

from pipeline.config import Config, parse_config
from pipeline.ingest import decode_message
from pipeline.kafka import client_options, ensure_topics, make_consumer, make_producer
from pipeline.notify.sink import WebhookSink
from pipeline.offline import OfflinePipeline
from pipeline.simulate import Fault, Scenario, agent_messages
from pipeline.worker import DetectRunner, Worker

ROUTING_KEY_ENV = "QP_FAULTS_ROUTING_KEY"
ROUTING_KEY = "faults-bench-routing-key"

#: The stream the broker faults use: one injected incident in 25 minutes of 8 services.
FAULT_SCENARIO = Scenario(
    duration_s=1500.0,
    faults=(Fault(root="payments-db", onset_s=700.0, duration_s=300.0),),
    blips=(),
)

Message = tuple[bytes, bytes]
PageId = tuple[str, str]


def messages(scenario: Scenario = FAULT_SCENARIO) -> list[Message]:
    """The agent's messages for a scenario, in order."""
    return [m for _, step in agent_messages(scenario) for m in step]


def fault_config(
    bootstrap: str,
    receiver_url: str,
    *,
    partitions: int = 1,
    scenario: Scenario = FAULT_SCENARIO,
    tansu: bool = True,
    **worker: Any,
) -> Config:
    """A worker config on fresh topics and groups, paging `receiver_url`."""
    prefix = f"f{uuid.uuid4().hex[:10]}"
    kafka: dict[str, Any] = {"bootstrap_servers": bootstrap, "group_prefix": prefix}
    if tansu:
        # The embedded broker holds a join for half the session: keep sessions short.
        kafka |= {"session_timeout": "1s", "heartbeat_interval": "200ms"}
    names = ("metrics", "logs", "anomalies", "pages", "dlq", "state_detect", "state_correlate")
    return parse_config(
        {
            "kafka": kafka,
            "topics": {name: f"{prefix}.{name}" for name in names} | {"partitions": partitions},
            "receivers": [
                {
                    "name": "oncall",
                    "type": "pagerduty",
                    "url": receiver_url,
                    "routing_key": {"env": ROUTING_KEY_ENV},
                    "retry": {"initial_backoff": "50ms", "max_backoff": "500ms"},
                }
            ],
            "route": {"receivers": ["oncall"]},
            "topology": scenario.topology,
            "correlate": {"hold_for": "60s", "resolve_after": "2m"},
            "http": {"enabled": False, "listen": "127.0.0.1:0"},
            "worker": {
                "shutdown_timeout": "5s",
                "idle_advance": "1s",
                "checkpoint_every": "200ms",
                **worker,
            },
        },
        f"<faults {prefix}>",
    )


def expected_pages(config: Config, stream: list[Message]) -> list[PageId]:
    """(action, dedup_key) of every page an uninterrupted run sends to `oncall`, from the
    offline cores."""
    offline = OfflinePipeline(config, {"oncall": ROUTING_KEY})
    deliveries = []
    for _, value in stream:
        deliveries += offline.feed(decode_message(value, "metrics"))
    deliveries += offline.finish()
    return [
        (d.body["event_action"], d.body["dedup_key"]) for d in deliveries if d.receiver == "oncall"
    ]


async def create_topics(config: Config) -> None:
    """Every topic of the config, the changelogs compacted."""
    t = config.topics
    changelogs = {t.state_detect, t.state_correlate}
    names = [t.metrics, t.logs, t.anomalies, t.pages, t.dlq, *sorted(changelogs)]
    await ensure_topics(
        client_options(config.kafka), dict.fromkeys(names, t.partitions), compacted=changelogs
    )


async def produce(
    config: Config,
    stream: Sequence[tuple[bytes | None, bytes]],
    pause_every: int = 0,
    topic: str | None = None,
) -> None:
    """Send the agent's messages to `topic` (the metrics topic unless named); with
    `pause_every`, yield 50 ms after that many."""
    target = config.topics.metrics if topic is None else topic
    producer = make_producer(client_options(config.kafka))
    await producer.start()
    try:
        for i, (key, value) in enumerate(stream):
            await producer.send(target, value, key=key)
            if pause_every and i % pause_every == 0:
                await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(config: Config, topic: str, settle_s: float = 1.0) -> list[ConsumerRecord]:
    """Every record of a topic, read until it has been quiet for `settle_s`."""
    consumer = make_consumer(client_options(config.kafka), [topic], None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            for part in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(part)
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return records


async def wait_for(condition: Callable[[], bool], limit_s: float, what: str) -> None:
    """Poll until `condition` holds; TimeoutError naming `what` after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def worker_command(config: Config, workdir: Path) -> list[str]:
    """The `quietpager run` command line for `config`, written to a file in `workdir`."""
    path = workdir / f"{config.kafka.group_prefix}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")
    return [sys.executable, "-m", "pipeline.cli", "run", "--config", str(path)]


async def spawn_worker(command: list[str]) -> asyncio.subprocess.Process:
    """Start a worker process with the routing key in its environment."""
    return await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, ROUTING_KEY_ENV: ROUTING_KEY},
    )


def point_count(stream: list[Message]) -> int:
    """How many items the messages of `stream` carry."""
    return sum(len(orjson.loads(value)) for _, value in stream)


def detect_runner(worker: Worker) -> DetectRunner:
    """The detect stage's runner of a running worker."""
    return next(r for r in worker.runners if isinstance(r, DetectRunner))


def received_pages(sink: WebhookSink) -> list[PageId]:
    """(action, dedup_key) of each delivery a sink got, PagerDuty or Alertmanager body."""
    out: list[PageId] = []
    for _, body in sink.received:
        if "event_action" in body:
            out.append((body["event_action"], body["dedup_key"]))
        else:
            action = "trigger" if body["status"] == "firing" else "resolve"
            out.append((action, body["groupLabels"]["dedup_key"]))
    return out

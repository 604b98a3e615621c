"""Logs and metrics together: a new error template with a latency spike pages once, with context.

The same scenario runs through the offline pipeline (replay's cores) and through the live
worker on a real broker with a real webhook receiver.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from pipeline.config import Config, parse_config
from pipeline.harness import produce
from pipeline.ingest import decode_message
from pipeline.kafka import client_options, ensure_topics, make_producer
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.offline import OfflinePipeline
from pipeline.worker import Worker
from tests.conftest import TopicNames
from tests.live import running, wait_while_running

T0 = 1_795_683_600.0  # a multiple of 60
STEP_S = 10
END_S = 1500
ERRORS_FROM_S = 1200  # payments starts timing out on its database
SPIKE_FROM_S = 1260  # and its latency follows a minute later
SPIKE_UNTIL_S = 1440
TEMPLATE = "db timeout after <NUM> ms on pool payments-db-<NUM> password=<REDACTED>"
TOPOLOGY = {"checkout": ["payments"], "payments": []}
ROUTING_KEY = "test-routing-key"

Message = tuple[str, bytes]  # ("metrics" | "logs", value)


def _messages() -> list[Message]:
    """Both streams, one metrics and one logs message per 10 s step, in event-time order."""
    rng = random.Random(11)
    out: list[Message] = []
    for second in range(0, END_S, STEP_S):
        ts = T0 + second
        slow = SPIKE_FROM_S <= second < SPIKE_UNTIL_S
        points = [
            {
                "name": "http_request_duration_seconds",
                "value": (0.8 if slow else 0.2) + rng.gauss(0, 0.01),
                "ts": ts,
                "labels": {"service": "payments"},
            },
            {
                "name": "http_request_duration_seconds",
                "value": 0.3 + rng.gauss(0, 0.01),
                "ts": ts,
                "labels": {"service": "checkout"},
            },
        ]
        logs: list[dict[str, Any]] = [
            {
                "ts": ts + offset,
                "level": "info",
                "message": f"charge ok for order {rng.randint(1, 99999)} "
                f"in {rng.randint(5, 90)} ms",
                "labels": {"service": "payments", "host": "pay-1"},
            }
            for offset in (1, 4, 7)
        ]
        logs.append(
            {
                "ts": ts + 2,
                "level": "info",
                "message": f"GET /cart/{rng.randint(1, 999)} 200",
                "labels": {"service": "checkout"},
            }
        )
        if ERRORS_FROM_S <= second < SPIKE_UNTIL_S:
            logs.extend(
                {
                    "ts": ts + offset,
                    "level": "error",
                    "message": f"db timeout after {rng.randint(3000, 3100)} ms on pool "
                    f"payments-db-{rng.randint(1, 4)} password=hunter2",
                    "labels": {"service": "payments", "host": "pay-1"},
                }
                for offset in (3, 6)
            )
        out.append(("metrics", orjson.dumps(points)))
        out.append(("logs", orjson.dumps(logs)))
    return out


def _check_trigger(details: dict[str, Any]) -> None:
    assert details["suspected_root_cause"] == "payments"
    assert {"errors", "latency"} <= set(details["signals"])
    (signal, *_) = details["log_signals"]
    # The password in the lines is redacted in the template and the examples alike.
    assert signal["template"] == TEMPLATE
    assert signal["baseline_per_bucket"] == 0.0
    assert signal["count_during"] >= 5
    assert signal["service"] == "payments"
    assert signal["kind"] == "new_template"
    assert 1 <= len(signal["examples"]) <= 3
    assert all("hunter2" not in line for line in signal["examples"])
    assert all(line.startswith("db timeout after") for line in signal["examples"])


def _config(**sections: Any) -> Config:
    data: dict[str, Any] = {
        "receivers": [{"name": "oncall", "type": "alertmanager", "url": "http://127.0.0.1:9/x"}],
        "route": {"receivers": ["oncall"]},
        "topology": TOPOLOGY,
        "correlate": {"group_window": "5m", "hold_for": "60s", "resolve_after": "2m"},
    }
    data.update(sections)
    return parse_config(data, "<logs test>")


def test_offline_pipeline_pages_once_with_the_template() -> None:
    pipeline = OfflinePipeline(_config())
    for _, value in _messages():
        pipeline.feed(decode_message(value, "auto"))
    pipeline.finish()
    actions = [(p.action, p.dedup_key) for p in pipeline.summary.pages]
    assert [a for a, _ in actions] == ["trigger", "resolve"]
    assert actions[0][1] == actions[1][1]
    _check_trigger(pipeline.summary.pages[0].custom_details)


def test_logs_can_be_switched_off() -> None:
    pipeline = OfflinePipeline(_config(logs={"enabled": False}))
    for _, value in _messages():
        pipeline.feed(decode_message(value, "auto"))
    pipeline.finish()
    (trigger, _) = pipeline.summary.pages
    assert "log_signals" not in trigger.custom_details
    assert pipeline.summary.logs > 0


async def _live_config(
    bootstrap: str, topics: TopicNames, sink: WebhookSink, **worker: str
) -> Config:
    """The scenario's config for the live worker, its topics created. A quiet input
    partition keeps holding event time back (idle_advance 60 s) while a test feeds the
    streams in phases, so nothing is judged before its data is in."""
    config = topics.config(
        bootstrap,
        receivers=[
            {
                "name": "oncall",
                "type": "pagerduty",
                "url": sink.pagerduty_url,
                "routing_key": {"env": "QP_TEST_ROUTING_KEY"},
                "retry": {"initial_backoff": "50ms", "max_backoff": "200ms"},
            }
        ],
        topology=TOPOLOGY,
        correlate={"group_window": "5m", "hold_for": "60s", "resolve_after": "2m"},
        worker={"shutdown_timeout": "5s", "idle_advance": "60s", **worker},
    )
    names = [config.topics.metrics, config.topics.logs, config.topics.anomalies]
    names += [config.topics.pages, config.topics.dlq]
    await ensure_topics(client_options(config.kafka), dict.fromkeys(names, 1))
    return config


@pytest.mark.broker
async def test_worker_pages_once_with_the_template(
    kafka_bootstrap: str,
    unique_topics: TopicNames,
    sink: WebhookSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QP_TEST_ROUTING_KEY", ROUTING_KEY)
    config = await _live_config(kafka_bootstrap, unique_topics, sink)
    topics = config.topics
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    producer = make_producer(client_options(config.kafka))
    await producer.start()

    def seen(stream: str) -> float:
        value = metrics.registry.get_sample_value("quietpager_events_in_total", {"stream": stream})
        return value or 0.0

    async def send(messages: list[Message]) -> None:
        for kind, value in messages:
            await producer.send(topics.metrics if kind == "metrics" else topics.logs, value)
        await producer.flush()

    def count(messages: list[Message], kind: str) -> int:
        return sum(len(orjson.loads(value)) for k, value in messages if k == kind)

    # Kafka orders records only within a partition, and one fetch may drain the logs
    # partition minutes of event time ahead of the metrics one; the correlator's clock
    # follows the newest anomaly, so a metric anomaly that far behind would be judged stale.
    # Feeding a minute of event time at a time keeps the two streams as close as live.
    messages = _messages()
    slices = [messages[: ERRORS_FROM_S // STEP_S * 2]]
    for start in range(ERRORS_FROM_S, END_S, 60):
        first = start // STEP_S * 2
        slices.append(messages[first : first + 60 // STEP_S * 2])
    sent: list[Message] = []
    try:
        for part in slices:
            # Each minute's metrics are read before its logs: within a minute the two topics
            # can otherwise reach the detect stage in either order, and the errors trigger
            # may go out a fetch before the latency anomaly it should carry (a known limit,
            # README "Known limits"; this test is about the page's log context).
            for kind in ("metrics", "logs"):
                await send([m for m in part if m[0] == kind])
                sent.extend(m for m in part if m[0] == kind)
                await wait_while_running(
                    lambda: (
                        seen("metrics") >= count(sent, "metrics")
                        and seen("logs") >= count(sent, "logs")
                    ),
                    task,
                    60,
                )
        await wait_while_running(lambda: len(sink.received) >= 1, task, 60)
        await asyncio.sleep(1.0)  # a second trigger would arrive now
    finally:
        await producer.stop()
        stop.set()
        await asyncio.wait_for(task, 15)
    assert len(sent) == len(messages)
    triggers = [body for _, body in sink.received if body["event_action"] == "trigger"]
    assert len(triggers) == 1
    _check_trigger(triggers[0]["payload"]["custom_details"])
    assert (
        metrics.registry.get_sample_value("quietpager_anomalies_total", {"signal": "errors"}) or 0
    ) >= 1


@pytest.mark.broker
async def test_log_templates_move_with_their_partition(kafka_bootstrap: str) -> None:
    from pipeline.harness import create_topics, fault_config, wait_for
    from pipeline.worker import DetectRunner

    config = fault_config(kafka_bootstrap, "http://127.0.0.1:9/unused", checkpoint_every="100ms")
    await create_topics(config)
    logs = [(None, value) for kind, value in _messages()[:200] if kind == "logs"]
    await produce(config, logs, topic=config.topics.logs)

    def detect(worker: Worker) -> DetectRunner:
        return next(r for r in worker.runners if isinstance(r, DetectRunner))

    def templates(worker: Worker) -> int:
        return sum(s.templates_tracked for s in detect(worker).log_stages.values())

    first = Worker(config, Metrics.create(), stages=("detect",))
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await wait_for(lambda: bool(first.runners) and templates(first) >= 2, 30, "templates")
    learned = templates(first)
    stop.set()  # leaving checkpoints the log stage with the partition
    await task

    second = Worker(config, Metrics.create(), stages=("detect",))
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    try:
        await wait_for(
            lambda: bool(second.runners) and templates(second) >= learned,
            30,
            "the restored templates",
        )
    finally:
        stop.set()
        await task
    assert second.metrics.registry.get_sample_value(
        "quietpager_state_restored_total", {"stage": "detect"}
    )


@pytest.mark.broker
async def test_a_backlog_on_both_inputs_loses_no_anomaly_as_stale(
    kafka_bootstrap: str,
    unique_topics: TopicNames,
    sink: WebhookSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both topics written before the worker starts, and read a few records a fetch: without
    flow control one input runs minutes of event time ahead of the other, and the anomalies
    of the one behind reach the correlator older than `resolve_after` (dropped as stale).
    The detect stage pauses the input that runs ahead (`worker.max_skew`), so none is."""
    monkeypatch.setenv("QP_TEST_ROUTING_KEY", ROUTING_KEY)
    config = await _live_config(kafka_bootstrap, unique_topics, sink, max_skew="10s")
    kafka = config.kafka.model_copy(update={"max_poll_records": 4})
    config = config.model_copy(update={"kafka": kafka})
    messages = _messages()
    for kind, topic in (("logs", config.topics.logs), ("metrics", config.topics.metrics)):
        # the whole backlog, each topic in its own order
        records = [(None, value) for k, value in messages if k == kind]
        await produce(config, records, topic=topic)
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})

    def sample(name: str, labels: dict[str, str]) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    def read_all() -> bool:  # every record of both backlogs was read
        return all(
            sample("quietpager_events_in_total", {"stream": kind})
            >= sum(len(orjson.loads(v)) for k, v in messages if k == kind)
            for kind in ("metrics", "logs")
        )

    async with running(worker) as task:
        await wait_while_running(read_all, task, 60, "both backlogs read")
        await wait_while_running(lambda: len(sink.received) >= 1, task, 60, "a page")
        await asyncio.sleep(1.0)  # a second trigger would arrive now
    decided = "quietpager_correlation_decisions_total"
    assert sample(decided, {"kind": "suppress", "reason": "stale"}) == 0
    for signal in ("errors", "latency"):
        assert sample("quietpager_anomalies_total", {"signal": signal}) >= 1
    triggers = [body for _, body in sink.received if body["event_action"] == "trigger"]
    assert len(triggers) == 1
    assert triggers[0]["payload"]["custom_details"]["suspected_root_cause"] == "payments"

"""The live worker on a real broker: one incident in, one trigger and one resolve out.

Each test gets its own topics and consumer groups; the webhook receiver is a real HTTP
server on loopback. Runs against Tansu, or any Kafka named by QUIETPAGER_TEST_BOOTSTRAP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import ConsumerRecord, TopicPartition

from pipeline.config import Config
from pipeline.harness import create_topics, produce
from pipeline.kafka import client_options, ensure_topics, make_consumer
from pipeline.metrics import Metrics
from pipeline.model import Page
from pipeline.notify.sink import WebhookSink
from pipeline.simulate import Blip, Fault, Scenario, agent_messages
from pipeline.worker import Worker
from tests.conftest import TopicNames
from tests.live import run_until

pytestmark = pytest.mark.broker

ROUTING_KEY = "test-routing-key"

SCENARIO = Scenario(
    duration_s=1500.0,
    faults=(Fault(root="payments-db", onset_s=700.0, duration_s=300.0),),
    blips=(Blip(service="catalog", onset_s=500.0),),
)


def _config(topics: TopicNames, bootstrap: str, sink: WebhookSink) -> Config:
    return topics.config(
        bootstrap,
        receiver_url=sink.pagerduty_url,
        receivers=[
            {
                "name": "oncall",
                "type": "pagerduty",
                "url": sink.pagerduty_url,
                "routing_key": {"env": "QP_TEST_ROUTING_KEY"},
                "retry": {"initial_backoff": "50ms", "max_backoff": "200ms"},
            }
        ],
        topology=SCENARIO.topology,
        correlate={"group_window": "5m", "hold_for": "60s", "resolve_after": "2m"},
        worker={"shutdown_timeout": "5s", "idle_advance": "1s"},
    )


async def _produce(config: Config, messages: list[tuple[bytes | None, bytes]]) -> None:
    await create_topics(config)
    await produce(config, messages)


def _scenario_messages() -> list[tuple[bytes | None, bytes]]:
    return [m for _, step in agent_messages(SCENARIO) for m in step]


@pytest.fixture(autouse=True)
def _routing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QP_TEST_ROUTING_KEY", ROUTING_KEY)


async def test_incident_yields_one_trigger_and_one_resolve(
    kafka_bootstrap: str, unique_topics: TopicNames, sink: WebhookSink
) -> None:
    config = _config(unique_topics, kafka_bootstrap, sink)
    await _produce(config, _scenario_messages())
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})

    def resolved() -> bool:
        return any(b.get("event_action") == "resolve" for _, b in sink.received)

    await run_until(worker, resolved, settle_s=0.5)  # anything extra would arrive then
    actions = [(b["event_action"], b["dedup_key"]) for _, b in sink.received]
    assert [a for a, _ in actions] == ["trigger", "resolve"]
    assert actions[0][1] == actions[1][1]
    trigger = sink.received[0][1]
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["component"] == "payments-db"
    assert trigger["payload"]["custom_details"]["suspected_root_cause"] == "payments-db"
    assert (
        metrics.registry.get_sample_value(
            "quietpager_pages_sent_total", {"receiver": "oncall", "action": "trigger"}
        )
        == 1
    )
    # The catalog blip was held and never paged.
    assert (
        metrics.registry.get_sample_value(
            "quietpager_correlation_decisions_total",
            {"kind": "suppress", "reason": "blip_recovered"},
        )
        is not None
    )


async def test_malformed_messages_go_to_dlq_and_stream_continues(
    kafka_bootstrap: str, unique_topics: TopicNames, sink: WebhookSink
) -> None:
    config = _config(unique_topics, kafka_bootstrap, sink)
    bad = [
        (None, b"not json at all"),
        (b"k", b'{"name": "cpu_utilization", "value": NaN, "ts": 1795683600}'),
        (None, b'{"name": "cpu_utilization", "value": "high", "ts": 1795683600}'),
        (None, b'[{"name": "x", "ts": 1795683600}]'),
        (None, b"\xff\xfe\xfd"),
    ]
    good = _scenario_messages()
    # Bad input lands in the middle of the stream; what follows must still be processed.
    await _produce(config, good[:600] + bad + good[600:])
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})
    await run_until(worker, lambda: len(sink.received) >= 2)

    consumer = make_consumer(client_options(config.kafka), [config.topics.dlq], None)
    await consumer.start()
    try:
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 10
        while len(records) < len(bad) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    reasons = [dict(r.headers)["qp.reason"].decode() for r in records]
    assert reasons == ["not_json", "not_finite", "wrong_type", "missing_field", "not_utf8"]
    assert [r.value for r in records] == [value for _, value in bad]  # original bytes kept
    first = dict(records[0].headers)
    assert first["qp.topic"].decode() == config.topics.metrics
    assert int(first["qp.offset"]) == 600
    dlq = "quietpager_dlq_records_total"
    counted = {r: metrics.registry.get_sample_value(dlq, {"reason": r}) for r in reasons}
    assert counted == dict.fromkeys(reasons, 1)  # one record each, counted under its reason
    assert [b["event_action"] for _, b in sink.received] == ["trigger", "resolve"]


async def test_webhook_failing_twice_delivers_exactly_once(
    kafka_bootstrap: str, unique_topics: TopicNames, sink: WebhookSink
) -> None:
    config = _config(unique_topics, kafka_bootstrap, sink)
    sink.fail_next(2, status=503)
    await _produce(config, _scenario_messages())
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})
    await run_until(worker, lambda: len(sink.received) >= 1, settle_s=0.3)
    triggers = [b for _, b in sink.received if b["event_action"] == "trigger"]
    assert len(triggers) == 1
    assert sink.requests_seen >= 3
    attempts = {
        outcome: metrics.registry.get_sample_value(
            "quietpager_webhook_attempts_total", {"receiver": "oncall", "outcome": outcome}
        )
        for outcome in ("retry_status", "delivered")
    }
    assert attempts["retry_status"] == 2
    assert attempts["delivered"] is not None
    assert attempts["delivered"] >= 1


async def test_a_receiver_that_is_down_does_not_hold_back_another(
    kafka_bootstrap: str, unique_topics: TopicNames, sink: WebhookSink
) -> None:
    """Each receiver reads the outbox in a consumer group of its own: with `oncall` refusing
    connections, `chat` still gets the trigger and the resolve."""
    down = WebhookSink()  # borrow a port, then close it: connections are refused
    await down.start()
    down_url = down.pagerduty_url
    await down.stop()
    config = _config(unique_topics, kafka_bootstrap, sink)
    data = config.model_dump(mode="json")
    data["receivers"][0]["url"] = down_url
    data["receivers"].append({"name": "chat", "type": "alertmanager", "url": sink.alertmanager_url})
    data["route"]["receivers"] = ["oncall", "chat"]
    config = type(config).model_validate(data)
    await _produce(config, _scenario_messages())
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})

    def network_retries() -> float:
        labels = {"receiver": "oncall", "outcome": "retry_network"}
        return metrics.registry.get_sample_value("quietpager_webhook_attempts_total", labels) or 0

    await run_until(
        worker, lambda: len(sink.received) >= 2 and network_retries() >= 2, settle_s=0.3
    )
    assert [body["status"] for _, body in sink.received] == ["firing", "resolved"]
    sent = metrics.registry.get_sample_value(
        "quietpager_pages_sent_total", {"receiver": "chat", "action": "resolve"}
    )
    assert sent == 1


async def test_an_upgrade_from_the_single_notify_group_does_not_resend_the_outbox(
    kafka_bootstrap: str, unique_topics: TopicNames, sink: WebhookSink
) -> None:
    """Earlier versions read the outbox in one `<prefix>-notify` group. A receiver's own group,
    new at the upgrade, starts where that one stopped, not at the retained outbox's start."""
    config = _config(unique_topics, kafka_bootstrap, sink)
    await create_topics(config)
    pages = [
        Page("trigger", "inc-old", 1.0, "old", "critical", "qp", "db", "prod", (), ("oncall",)),
        Page("resolve", "inc-old", 2.0, "old", "critical", "qp", "db", "prod", (), ("oncall",)),
        Page("trigger", "inc-new", 3.0, "new", "critical", "qp", "db", "prod", (), ("oncall",)),
    ]
    records = [(page.dedup_key.encode(), orjson.dumps(page.to_dict())) for page in pages]
    await produce(config, records, topic=config.topics.pages)
    tp = TopicPartition(config.topics.pages, 0)
    legacy = make_consumer(client_options(config.kafka), [], f"{unique_topics.group_prefix}-notify")
    await legacy.start()
    try:  # the old group had delivered the first two
        legacy.assign([tp])
        await legacy.commit({tp: 2})
    finally:
        await legacy.stop()
    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY}, stages=("notify",))
    await run_until(worker, lambda: len(sink.received) >= 1, settle_s=0.5)
    assert [(b["event_action"], b["dedup_key"]) for _, b in sink.received] == [
        ("trigger", "inc-new")
    ]


async def test_run_command_serves_ops_endpoints_and_stops_on_sigterm(
    kafka_bootstrap: str, unique_topics: TopicNames, sink: WebhookSink, tmp_path: Path
) -> None:
    config = _config(unique_topics, kafka_bootstrap, sink)
    await ensure_topics(
        client_options(config.kafka), dict.fromkeys([config.topics.metrics, config.topics.logs], 1)
    )
    data = config.model_dump(mode="json")
    data["http"] = {"enabled": True, "listen": "127.0.0.1:0"}
    port_probe = WebhookSink()  # borrow a free port for the ops server
    await port_probe.start()
    port = int(port_probe.url.rsplit(":", 1)[1])
    await port_probe.stop()
    data["http"]["listen"] = f"127.0.0.1:{port}"
    data["http"]["token"] = {"env": "QP_TEST_HTTP_TOKEN"}
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    http_token = "ops-t0ken-for-the-test"
    env = {**os.environ, "QP_TEST_ROUTING_KEY": ROUTING_KEY, "QP_TEST_HTTP_TOKEN": http_token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            ready = False
            while time.monotonic() < deadline and not ready:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        ready = response.status == 200
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            assert ready, "worker never became ready"
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            assert "# TYPE quietpager_events_in_total counter" in text
            assert "quietpager_series_tracked 0.0" in text
            assert ROUTING_KEY not in text
            silences = f"http://127.0.0.1:{port}/api/v2/silences"
            async with session.get(silences) as response:
                assert response.status == 401  # http.token is set: the API wants it
            bearer = {"Authorization": f"Bearer {http_token}"}
            async with session.get(silences, headers=bearer) as response:
                assert response.status == 200
                assert await response.json() == []
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert time.monotonic() - started < 10
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    events = [line["event"] for line in lines]
    assert "shutdown_requested" in events
    assert "worker_stopped" in events
    assert ROUTING_KEY.encode() not in out + err
    assert http_token.encode() not in out + err

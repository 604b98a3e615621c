"""A simulated alert storm through the live worker and a real broker: the pages replay predicts.

The storm scenario (44 services, one shared store failing, thousands of anomalies) is produced
to the metrics topic; the worker runs all stages; a real HTTP receiver on loopback records
what it gets. The sequence of pages must be the one the offline pipeline computes.
"""

from __future__ import annotations

import pytest

from pipeline import simulate
from pipeline.config import Config
from pipeline.harness import create_topics, produce
from pipeline.ingest import decode_message
from pipeline.metrics import Metrics
from pipeline.notify.sink import WebhookSink
from pipeline.offline import OfflinePipeline
from pipeline.worker import Worker
from tests.conftest import ROUTING_KEY_ENV, TopicNames
from tests.live import run_until

pytestmark = pytest.mark.broker

ROUTING_KEY = "denoise-routing-key"
SIM = simulate.build("storm", 1)


def _config(topics: TopicNames, bootstrap: str, sink: WebhookSink) -> Config:
    scenario = simulate.config_data(SIM)
    return topics.config(
        bootstrap,
        receivers=[
            {
                "name": "oncall",
                "type": "pagerduty",
                "url": sink.pagerduty_url,
                "routing_key": {"env": ROUTING_KEY_ENV},
                "retry": {"initial_backoff": "50ms", "max_backoff": "200ms"},
            }
        ],
        detect=scenario["detect"],
        correlate=scenario["correlate"],
        topology=scenario["topology"],
        silences=scenario["silences"],
        worker={"shutdown_timeout": "5s", "idle_advance": "1s"},
    )


def _offline(config: Config, messages: list[bytes]) -> OfflinePipeline:
    pipeline = OfflinePipeline(config)
    for message in messages:
        pipeline.feed(decode_message(message, "metrics", config.kafka.max_message_bytes))
    pipeline.finish()
    return pipeline


async def test_storm_scenario_pages_what_replay_predicts(
    kafka_bootstrap: str,
    unique_topics: TopicNames,
    sink: WebhookSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ROUTING_KEY_ENV, ROUTING_KEY)
    config = _config(unique_topics, kafka_bootstrap, sink)
    messages = list(simulate.messages(SIM))
    offline = _offline(config, messages)
    expected = [(p.action, p.dedup_key, p.root_service) for p in offline.summary.pages]
    symptoms = offline.summary.decisions[("fold", "symptom_of_root")]
    assert symptoms >= 20  # dozens of alerting services folded into one incident
    # the storm pages once, naming the shared store, and resolves with the same key
    assert [(action, root) for action, _, root in expected] == [
        ("trigger", simulate.SHARED),
        ("resolve", simulate.SHARED),
    ]

    await create_topics(config)
    await produce(config, [(None, message) for message in messages])

    metrics = Metrics.create()
    worker = Worker(config, metrics, routing_keys={"oncall": ROUTING_KEY})
    await run_until(
        worker,
        lambda: len(sink.received) >= len(expected),
        limit_s=90.0,
        settle_s=0.5,  # anything extra would arrive then
        what=f"{len(expected)} pages",
    )
    got = [(body["event_action"], body["dedup_key"]) for _, body in sink.received]
    assert got == [(action, key) for action, key, _ in expected]
    trigger = sink.received[0][1]
    assert trigger["payload"]["component"] == simulate.SHARED
    assert trigger["routing_key"] == ROUTING_KEY
    details = trigger["payload"]["custom_details"]
    assert details["suspected_root_cause"] == simulate.SHARED
    folded = metrics.registry.get_sample_value(
        "quietpager_correlation_decisions_total", {"kind": "fold", "reason": "symptom_of_root"}
    )
    assert folded == symptoms
    sent = metrics.registry.get_sample_value(
        "quietpager_pages_sent_total", {"receiver": "oncall", "action": "trigger"}
    )
    assert sent == 1

"""Shared fixtures: one Kafka-protocol broker per session, and unique topics per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.broker import EmbeddedBroker
from pipeline.config import Config, parse_config
from pipeline.notify.sink import WebhookSink

BOOTSTRAP_ENV = "QUIETPAGER_TEST_BOOTSTRAP"
# Port 9 is the discard service: nothing answers there, so a test that forgets to point the
# receiver at its own fake server fails loudly instead of paging anything real.
DUMMY_RECEIVER_URL = "http://127.0.0.1:9/v2/enqueue"
# The config names the variable only; tests that resolve secrets set it with monkeypatch.
ROUTING_KEY_ENV = "QUIETPAGER_TEST_ROUTING_KEY"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """`host:port` of a broker: $QUIETPAGER_TEST_BOOTSTRAP, or a Tansu started for this session."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def group_timeouts() -> dict[str, int]:
    """Consumer-group timeouts that keep joins fast on the test broker; pass to make_consumer.

    Tansu holds a JoinGroup for about half the session timeout, and numbers a group's first
    generation 0, for which aiokafka skips LeaveGroup, so a restarted member waits for the old one
    to expire. Short sessions keep that to about a second. A real Kafka refuses sessions under
    group.min.session.timeout.ms (6 s by default) and needs none of this, so it gets the defaults.
    """
    if os.environ.get(BOOTSTRAP_ENV):
        return {}
    return {"session_timeout_ms": 1000, "heartbeat_interval_ms": 200}


def _session_settings() -> dict[str, str]:
    """The worker-config form of `group_timeouts`: short sessions on Tansu, defaults on Kafka."""
    if os.environ.get(BOOTSTRAP_ENV):
        return {}
    return {"session_timeout": "1s", "heartbeat_interval": "200ms"}


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Topic and group names unique to one test, so broker tests never read each other's data."""

    run_id: str
    metrics: str
    logs: str
    anomalies: str
    pages: str
    dlq: str
    state_detect: str
    state_correlate: str
    group_prefix: str

    @classmethod
    def fresh(cls) -> TopicNames:
        """A new set of names, prefixed by a random run id."""
        run_id = uuid.uuid4().hex[:12]
        prefix = f"t{run_id}"
        return cls(
            run_id=run_id,
            metrics=f"{prefix}.telemetry.metrics",
            logs=f"{prefix}.telemetry.logs",
            anomalies=f"{prefix}.quietpager.anomalies",
            pages=f"{prefix}.quietpager.pages",
            dlq=f"{prefix}.quietpager.dlq",
            state_detect=f"{prefix}.quietpager.state.detect",
            state_correlate=f"{prefix}.quietpager.state.correlate",
            group_prefix=f"{prefix}.quietpager",
        )

    @property
    def compacted(self) -> frozenset[str]:
        """The state changelogs, which are compacted topics."""
        return frozenset({self.state_detect, self.state_correlate})

    def partitions(self, count: int = 1) -> dict[str, int]:
        """Every topic with `count` partitions, the shape `pipeline.kafka.ensure_topics` takes."""
        names = [self.metrics, self.logs, self.anomalies, self.pages, self.dlq, *self.compacted]
        return dict.fromkeys(names, count)

    def config(
        self,
        bootstrap: str = "127.0.0.1:9092",
        *,
        receiver_url: str = DUMMY_RECEIVER_URL,
        receiver_type: str = "pagerduty",
        **sections: Any,
    ) -> Config:
        """A valid Config on these topics; `sections` replace whole top-level keys (e.g. detect)."""
        receiver: dict[str, Any] = {"name": "oncall", "type": receiver_type, "url": receiver_url}
        if receiver_type == "pagerduty":
            receiver["routing_key"] = {"env": ROUTING_KEY_ENV}
        data: dict[str, Any] = {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_prefix": self.group_prefix,
                **_session_settings(),
            },
            "topics": {
                "metrics": self.metrics,
                "logs": self.logs,
                "anomalies": self.anomalies,
                "pages": self.pages,
                "dlq": self.dlq,
                "state_detect": self.state_detect,
                "state_correlate": self.state_correlate,
                "partitions": 1,
            },
            "receivers": [receiver],
            "route": {"receivers": ["oncall"]},
            "http": {"enabled": False, "listen": "127.0.0.1:0"},
        }
        data.update(sections)
        return parse_config(data, source=f"<test config {self.run_id}>")


@pytest.fixture
def unique_topics() -> TopicNames:
    """Fresh topic and consumer-group names for this test."""
    return TopicNames.fresh()


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    """A webhook receiver on a free loopback port, recording what it gets."""
    server = WebhookSink()
    await server.start()
    yield server
    await server.stop()

"""docker-compose.yml and configs/compose.yaml describe the same deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
CONFIG_MOUNT_TARGET = "/etc/quietpager/config.yaml"
# DESIGN.md's compacted changelogs for model and correlator state.
STATE_TOPICS = {"quietpager.state.detect", "quietpager.state.correlate"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The services of docker-compose.yml."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    found: dict[str, Any] = document["services"]
    return found


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whichever of compose's two spellings it uses."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def _worker_config(service: dict[str, Any]) -> Path:
    """The repo file mounted as the worker's config."""
    for volume in service["volumes"]:
        source, target, *_ = str(volume).split(":")
        if target == CONFIG_MOUNT_TARGET:
            return ROOT / source
    raise AssertionError(f"nothing is mounted at {CONFIG_MOUNT_TARGET}")


@pytest.fixture(scope="module")
def config(services: dict[str, Any]) -> Config:
    """The worker's config, loaded and validated as the worker would."""
    return load_config(_worker_config(services["worker"]))


def test_the_four_services_exist(services: dict[str, Any]) -> None:
    assert {"kafka", "topic-init", "worker", "sink"} <= set(services)


def test_kafka_runs_kraft_without_zookeeper(services: dict[str, Any]) -> None:
    env = _env(services["kafka"])

    assert not any("zookeeper" in name.lower() for name in services)
    assert not any("ZOOKEEPER" in key for key in env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"


def test_init_creates_exactly_the_configured_topics(
    services: dict[str, Any], config: Config
) -> None:
    init = services["topic-init"]
    env = _env(init)
    topics = config.topics
    script = "\n".join(init["command"])

    assert set(env["TOPICS"].split()) == {
        topics.metrics,
        topics.logs,
        topics.anomalies,
        topics.pages,
        topics.dlq,
    }
    assert set(env["COMPACTED_TOPICS"].split()) == STATE_TOPICS
    assert int(env["PARTITIONS"]) == topics.partitions
    # The script really uses those variables, and compacts only the state topics.
    assert "for topic in $$TOPICS" in script
    assert "for topic in $$COMPACTED_TOPICS" in script
    assert "cleanup.policy=compact" in script
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_worker_bootstrap_is_an_advertised_internal_listener(
    services: dict[str, Any], config: Config
) -> None:
    env = _env(services["kafka"])
    advertised = dict(
        entry.split("://", 1) for entry in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    internal = env["KAFKA_INTER_BROKER_LISTENER_NAME"]

    assert config.kafka.bootstrap_servers.split(",") == [advertised[internal]]
    assert services["worker"]["depends_on"]["topic-init"]["condition"] == (
        "service_completed_successfully"
    )


def test_receivers_point_at_the_sink_service(services: dict[str, Any], config: Config) -> None:
    sink = services["sink"]
    listen = sink["command"][sink["command"].index("--listen") + 1]
    sink_port = int(listen.rpartition(":")[2])

    for receiver in config.receivers:
        url = urlsplit(receiver.url)
        assert (url.hostname, url.port) == ("sink", sink_port), receiver.name
    assert str(sink_port) in [str(port) for port in sink["expose"]]


def test_worker_config_is_in_the_repo_and_secrets_come_from_compose(
    services: dict[str, Any], config: Config
) -> None:
    worker = services["worker"]
    mounted = _worker_config(worker)

    assert mounted == ROOT / "configs" / "compose.yaml"
    assert mounted.is_file()
    keys = {r.routing_key.env for r in config.receivers if r.routing_key is not None}
    assert keys
    assert keys <= set(_env(worker))
    # listening on every interface, the silences API asks for a token, from compose too
    assert config.http.token is not None
    assert config.http.token.env in _env(worker)


def test_worker_listens_for_probes_on_every_interface(
    services: dict[str, Any], config: Config
) -> None:
    host, _, port = config.http.listen.rpartition(":")

    assert host == "0.0.0.0"
    assert f"127.0.0.1:{port}:{port}" in services["worker"]["ports"]

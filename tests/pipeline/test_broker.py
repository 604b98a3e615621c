"""The embedded broker starts and stops cleanly, and carries what the worker relies on."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.broker import EmbeddedBroker, probe_cluster
from pipeline.errors import BrokerError
from pipeline.kafka import ensure_topics, make_consumer, make_producer

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord

    from tests.conftest import TopicNames


async def _drain(
    consumer: AIOKafkaConsumer, want: int, within: float = 15.0
) -> list[ConsumerRecord]:
    """Fetch until `want` records arrived (group join included) or `within` seconds passed."""
    records: list[ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(records) < want and loop.time() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for batch in batches.values():
            records.extend(batch)
    return records


# --- starting and stopping, without a session broker -------------------------------------------


def test_bad_binary_override_raises_broker_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_executable = tmp_path / "tansu"
    not_executable.write_text("not a program")
    monkeypatch.setenv("CALF_TANSU_BIN", str(not_executable))

    with pytest.raises(BrokerError, match="CALF_TANSU_BIN"):
        EmbeddedBroker().start()


def test_binary_that_exits_is_reported_after_each_attempt() -> None:
    false = shutil.which("false")
    assert false is not None
    broker = EmbeddedBroker(binary=false, start_attempts=2)

    with pytest.raises(BrokerError, match=r"after 2 attempt\(s\).*exited with code 1"):
        broker.start()
    assert not broker.running


def test_broker_that_never_answers_is_killed_and_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = tmp_path / "stubborn"
    # Ignores SIGTERM (the disposition survives exec), so only the kill after the deadline works.
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\ntrap '' TERM\nexec sleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    broker = EmbeddedBroker(
        binary=str(script), ready_timeout=0.3, stop_timeout=0.2, start_attempts=1
    )

    with pytest.raises(BrokerError, match=r"not ready within 0\.3s"):
        broker.start()

    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # a zombie would still accept signal 0
        os.kill(pid, 0)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_start_retries_on_a_port_collision(held_port: int) -> None:
    from pipeline.broker import free_port

    offered: list[int] = []

    def pick_port() -> int:
        port = held_port if not offered else free_port()
        offered.append(port)
        return port

    with EmbeddedBroker(pick_port=pick_port) as broker:
        assert offered[0] == held_port
        assert broker.bootstrap == f"127.0.0.1:{offered[-1]}"
        cluster_id, brokers = probe_cluster("127.0.0.1", offered[-1], timeout=1.0)
        assert cluster_id == broker.cluster_id
        assert brokers == [("127.0.0.1", offered[-1])]
    assert not broker.running


def test_fixed_port_collision_fails_once(held_port: int) -> None:
    with pytest.raises(BrokerError, match=r"after 1 attempt\(s\)"):
        EmbeddedBroker(port=held_port, ready_timeout=5.0).start()


def test_bootstrap_before_start_is_an_error() -> None:
    with pytest.raises(BrokerError, match="not started"):
        _ = EmbeddedBroker().bootstrap


async def test_async_context_manager_starts_and_stops() -> None:
    async with EmbeddedBroker() as broker:
        assert broker.running
        await ensure_topics(broker.bootstrap, {"smoke": 1})
    assert not broker.running


# --- what the worker relies on, against the session broker -------------------------------------


@pytest.mark.broker
async def test_group_commit_survives_a_consumer_restart(
    kafka_bootstrap: str, unique_topics: TopicNames, group_timeouts: dict[str, int]
) -> None:
    topic = unique_topics.metrics
    group = f"{unique_topics.group_prefix}.detect"
    partition = TopicPartition(topic, 0)
    options = {"bootstrap_servers": kafka_bootstrap}
    await ensure_topics(kafka_bootstrap, {topic: 1})

    producer = make_producer(options)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topic, f"point-{n}".encode(), key=b"checkout")

        first = make_consumer(options, [topic], group, **group_timeouts)
        await first.start()
        try:
            records = await _drain(first, want=3)
            assert [r.value for r in records] == [b"point-0", b"point-1", b"point-2"]
            # Commit the next offset to read, as the worker does after its outputs are durable.
            await first.commit({partition: records[-1].offset + 1})
        finally:
            await first.stop()

        for n in range(3, 5):
            await producer.send_and_wait(topic, f"point-{n}".encode(), key=b"checkout")
    finally:
        await producer.stop()

    second = make_consumer(options, [topic], group, **group_timeouts)
    await second.start()
    try:
        records = await _drain(second, want=2)
        assert [r.value for r in records] == [b"point-3", b"point-4"]
        assert await second.committed(partition) == 3
    finally:
        await second.stop()


@pytest.mark.broker
async def test_compacted_topic_is_created_and_takes_tombstones(
    kafka_bootstrap: str, unique_topics: TopicNames
) -> None:
    state = unique_topics.state_detect
    await ensure_topics(kafka_bootstrap, {state: 1}, compacted={state})

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        (answer,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, state, configs=None)]
        )
    finally:
        await admin.close()
    entries = answer.to_object()["resources"][0]["config_entries"]
    assert {e["config_names"]: e["config_value"] for e in entries}["cleanup.policy"] == "compact"

    producer = make_producer({"bootstrap_servers": kafka_bootstrap})
    await producer.start()
    try:
        await producer.send_and_wait(state, b"model-bytes", key=b"series-1")
        await producer.send_and_wait(state, None, key=b"series-1")  # tombstone: series expired
    finally:
        await producer.stop()

    reader = make_consumer({"bootstrap_servers": kafka_bootstrap}, [], group_id=None)
    await reader.start()
    try:
        partition = TopicPartition(state, 0)
        reader.assign([partition])
        assert (await reader.end_offsets([partition]))[partition] == 2
        records = await _drain(reader, want=2)
        assert [(r.key, r.value) for r in records] == [
            (b"series-1", b"model-bytes"),
            (b"series-1", None),
        ]
    finally:
        await reader.stop()


@pytest.mark.broker
async def test_ensure_topics_is_idempotent(kafka_bootstrap: str, unique_topics: TopicNames) -> None:
    wanted = unique_topics.partitions(2)
    await ensure_topics(kafka_bootstrap, wanted, compacted=unique_topics.compacted)
    # A second run (another worker starting) neither fails nor changes existing topics.
    await ensure_topics(
        kafka_bootstrap, dict.fromkeys(wanted, 4), compacted=unique_topics.compacted
    )

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(wanted))
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == wanted

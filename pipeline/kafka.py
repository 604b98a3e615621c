"""aiokafka clients built the one way quietpager uses them: explicit commits, acks from all ISRs.

Producers run with `enable_idempotence=False` because the embedded broker (Tansu, memory storage)
does not grant producer ids; ordering per partition still holds with `acks="all"` and a single
in-flight batch per partition, which is aiokafka's behaviour. The options dict returned by
`client_options` holds the SASL password in clear text: log `redacted(options)`, never the dict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, RequestTimedOutError, for_code
from aiokafka.helpers import create_ssl_context

from pipeline.config import KafkaConfig
from pipeline.errors import BrokerError, ConfigError

# Options every aiokafka client (admin, producer, consumer) accepts; client_options emits no other.
_COMMON_KEYS = frozenset(
    {
        "bootstrap_servers",
        "client_id",
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "ssl_context",
    }
)
_TOPIC_ALREADY_EXISTS = 36
# Errors a broker that is still starting (or electing a controller) answers with; worth a retry.


class _RetriableCreate(Exception):
    """A create-topics answer with an error the broker may stop giving once it has settled."""


_TRANSIENT_ERRORS = (
    KafkaConnectionError,
    RequestTimedOutError,
    ConnectionError,
    TimeoutError,
    _RetriableCreate,
)


def client_options(kafka: KafkaConfig) -> dict[str, Any]:
    """The keyword arguments shared by every aiokafka client for this deployment's cluster.

    Reads the SASL password now, so a missing secret fails at start, not on first connect.
    """
    security = kafka.security
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": security.protocol,
    }
    if security.protocol.startswith("SASL_"):
        if security.sasl_mechanism is None:
            raise ConfigError(
                f"kafka.security.sasl_mechanism: required when protocol is {security.protocol}"
            )
        if security.sasl_username is None or security.sasl_password is None:
            raise ConfigError(
                "kafka.security: sasl_username and sasl_password are required when protocol is "
                f"{security.protocol}"
            )
        try:
            password = security.sasl_password.resolve()
        except ValueError as exc:
            raise ConfigError(f"kafka.security.sasl_password: {exc}") from None
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.sasl_username
        options["sasl_plain_password"] = password.get_secret_value()
    if security.protocol.endswith("SSL"):
        try:
            options["ssl_context"] = create_ssl_context(
                cafile=security.ssl_cafile,
                certfile=security.ssl_certfile,
                keyfile=security.ssl_keyfile,
            )
        except OSError as exc:
            raise ConfigError(f"kafka.security: cannot load TLS files: {exc}") from None
    return options


def redacted(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of client options that is safe to log: no password, no TLS context object."""
    shown = dict(options)
    if "sasl_plain_password" in shown:
        shown["sasl_plain_password"] = "<secret>"
    if "ssl_context" in shown:
        shown["ssl_context"] = "<tls>"
    return shown


def _as_options(bootstrap_or_options: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(bootstrap_or_options, str):
        return {"bootstrap_servers": bootstrap_or_options}
    return {k: v for k, v in bootstrap_or_options.items() if k in _COMMON_KEYS}


async def ensure_topics(
    bootstrap_or_options: str | Mapping[str, Any],
    topics: Mapping[str, int],
    compacted: Collection[str] = frozenset(),
    *,
    replication_factor: int = 1,
    give_up_after: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Create the topics in `topics` (name -> partitions) that do not exist yet; safe to repeat.

    Topics in `compacted` get `cleanup.policy=compact` (state changelogs). Existing topics are left
    as they are, even when their partition count differs. While the broker is still starting,
    connection failures are retried until `give_up_after` seconds have passed.
    """
    unknown = set(compacted) - set(topics)
    if unknown:
        raise ValueError(f"compacted topics not in topics: {', '.join(sorted(unknown))}")
    options = _as_options(bootstrap_or_options)
    deadline = clock() + give_up_after
    backoff = 0.05
    while True:
        try:
            await _create_missing(options, topics, compacted, replication_factor)
            return
        except _TRANSIENT_ERRORS as exc:
            if clock() + backoff > deadline:
                raise BrokerError(
                    f"cannot create topics on {options['bootstrap_servers']} within "
                    f"{give_up_after:g}s: {exc}"
                ) from exc
        await sleep(backoff)
        backoff = min(backoff * 2, 1.0)


async def _create_missing(
    options: dict[str, Any],
    topics: Mapping[str, int],
    compacted: Collection[str],
    replication_factor: int,
) -> None:
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                partitions,
                replication_factor,
                topic_configs={"cleanup.policy": "compact"} if name in compacted else None,
            )
            for name, partitions in topics.items()
            if name not in existing
        ]
        if not wanted:
            return
        response = await admin.create_topics(wanted)
        for topic, code, *rest in response.topic_errors:
            # Another worker may create the same topic between our list and our create.
            if code in (0, _TOPIC_ALREADY_EXISTS):
                continue
            error: type[KafkaError] = for_code(code)
            detail = f"{topic!r}: {error.__name__} {rest[0] if rest and rest[0] else ''}".strip()
            if error.retriable:
                raise _RetriableCreate(detail)
            raise BrokerError(f"cannot create topic {detail}")
    finally:
        await admin.close()


async def committed_offsets(
    options: dict[str, Any], group_id: str, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offsets `group_id` has committed for these partitions (those it never committed
    are left out); the group need not be running."""
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
        found = await admin.list_consumer_group_offsets(group_id, partitions=list(partitions))
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}


def make_producer(options: Mapping[str, Any], **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas; call from inside the event loop."""
    settings: dict[str, Any] = {
        **options,
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 5,
        "compression_type": None,
    }
    settings.update(overrides)
    return AIOKafkaProducer(**settings)


def make_consumer(
    options: Mapping[str, Any],
    topics: Sequence[str],
    group_id: str | None,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A group consumer that commits only when told and starts new groups at the beginning.

    Call from inside the event loop. Pass no topics to `subscribe()` later (e.g. with a rebalance
    listener).
    """
    settings: dict[str, Any] = {
        **options,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    settings.update(overrides)
    return AIOKafkaConsumer(*topics, **settings)

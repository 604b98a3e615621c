"""Silences that people create and expire at run time, kept in a compacted Kafka topic.

The topic is the source of truth: the API writes a silence there, and every worker
process follows the topic and applies what it reads to its shared `Silencer`, so a
silence made through any worker mutes alerts in all of them and survives restarts.
Silences from the config file are loaded first and cannot be changed through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaProducer, TopicPartition

from pipeline.codec import unpack_float, unpack_str
from pipeline.config import Config
from pipeline.correlate.silence import Matcher, MatchOp, Silencer, SilenceRule, parse_matcher
from pipeline.kafka import client_options, make_consumer
from pipeline.metrics import Metrics
from pipeline.silence_limits import (
    MAX_COMMENT_CHARS,
    MAX_CREATED_BY_CHARS,
    MAX_MATCHER_TEXT_CHARS,
    MAX_MATCHERS,
)
from pipeline.timeutil import format_timestamp, parse_timestamp

log = structlog.get_logger("quietpager.silences")


class SilenceError(ValueError):
    """A silence in an API request is malformed; the message says what to fix."""


#: The schema of a silences-topic record (`rule_to_record`); a record without one is of the
#: first schema, written before the field.
SILENCE_RECORD_VERSION = 1


def rule_to_record(rule: SilenceRule) -> dict[str, Any]:
    """The JSON stored in the silences topic: explicit fields and their schema version."""
    return {
        "v": SILENCE_RECORD_VERSION,
        "id": rule.id,
        "matchers": [str(m) for m in rule.matchers],
        "starts_at": rule.starts_at,
        "ends_at": rule.ends_at,
        "comment": rule.comment,
        "created_by": rule.created_by,
        "updated_at": rule.updated_at,
    }


def rule_from_record(data: Mapping[str, Any]) -> SilenceRule:
    """Inverse of `rule_to_record`; raises ValueError on a bad record (another schema, a
    field of the wrong type, a comment over `MAX_COMMENT_CHARS`)."""
    try:
        version = data.get("v", SILENCE_RECORD_VERSION)
        if version != SILENCE_RECORD_VERSION:
            raise ValueError(f"silence record schema {version!r}, not {SILENCE_RECORD_VERSION}")
        matchers = data["matchers"]
        if not isinstance(matchers, list):
            raise TypeError("matchers must be a list")
        comment = unpack_str(data.get("comment", ""))
        if len(comment) > MAX_COMMENT_CHARS:
            raise ValueError(f"comment over {MAX_COMMENT_CHARS} characters")
        return SilenceRule(
            matchers=tuple(parse_matcher(unpack_str(m)) for m in matchers),
            starts_at=unpack_float(data["starts_at"]),
            ends_at=unpack_float(data["ends_at"]),
            comment=comment,
            id=unpack_str(data["id"]),
            created_by=unpack_str(data.get("created_by", "")),
            updated_at=unpack_float(data.get("updated_at", 0.0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad silence record: {exc}") from None


#: The longest id a request may name (ours are `api-` and a UUID).
MAX_ID_CHARS = 128
#: The largest silence record the store reads back from the topic; a larger one is skipped
#: before it is decoded (the largest the API can write is far smaller: see the tests).
MAX_RECORD_BYTES = 256 * 1024


def rule_from_api(body: Any, now: float) -> SilenceRule:
    """A new silence from an Alertmanager-style (v2) request body.

    Matchers are objects `{"name", "value", "isRegex", "isEqual"}` or plain strings such
    as `"service=checkout"`; `startsAt` defaults to now; `endsAt` is required. With `id`, the
    rule takes that id, so storing it replaces that silence (the caller checks it exists).

    >>> r = rule_from_api({"matchers": [{"name": "service", "value": "db", "isRegex": False}],
    ...                    "endsAt": "2026-11-26T10:00:00Z"}, now=1795683600.0)
    >>> [str(m) for m in r.matchers], r.ends_at - r.starts_at
    (['service="db"'], 3600.0)
    """
    if not isinstance(body, dict):
        raise SilenceError("the body must be a JSON object")
    raw = body.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise SilenceError("matchers: give at least one matcher")
    if len(raw) > MAX_MATCHERS:
        raise SilenceError(f"matchers: at most {MAX_MATCHERS} matchers (got {len(raw)})")
    matchers: list[Matcher] = []
    for index, item in enumerate(raw):
        try:
            matchers.append(_api_matcher(item))
        except (ValueError, TypeError, KeyError) as exc:
            raise SilenceError(f"matchers[{index}]: {exc}") from None
    try:
        starts = parse_timestamp(body["startsAt"]) if body.get("startsAt") else now
    except ValueError as exc:
        raise SilenceError(f"startsAt: {exc}") from None
    if "endsAt" not in body:
        raise SilenceError("endsAt: required")
    try:
        ends = parse_timestamp(body["endsAt"])
    except ValueError as exc:
        raise SilenceError(f"endsAt: {exc}") from None
    if ends <= max(starts, now):
        raise SilenceError("endsAt must be in the future and after startsAt")
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise SilenceError(f"comment: a string of at most {MAX_COMMENT_CHARS} characters")
    created_by = body.get("createdBy") or "api"
    if not isinstance(created_by, str) or len(created_by) > MAX_CREATED_BY_CHARS:
        raise SilenceError(f"createdBy: a string of at most {MAX_CREATED_BY_CHARS} characters")
    silence_id = body.get("id") or f"api-{uuid.uuid4()}"
    if not isinstance(silence_id, str) or len(silence_id) > MAX_ID_CHARS:
        raise SilenceError(f"id: a string of at most {MAX_ID_CHARS} characters")
    try:
        return SilenceRule(
            matchers=tuple(matchers),
            starts_at=starts,
            ends_at=ends,
            comment=comment,
            id=silence_id,
            created_by=created_by,
            updated_at=now,
        )
    except ValueError as exc:
        raise SilenceError(f"matchers: {exc}") from None


def _api_matcher(item: Any) -> Matcher:
    if isinstance(item, str):
        if len(item) > MAX_MATCHER_TEXT_CHARS:
            raise ValueError(f"a matcher's text has at most {MAX_MATCHER_TEXT_CHARS} characters")
        return parse_matcher(item)
    if not isinstance(item, dict):
        raise TypeError("a matcher is an object or a string")
    regex = _flag(item, "isRegex", default=False)
    equal = _flag(item, "isEqual", default=True)
    op: MatchOp = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
    name, value = item["name"], item["value"]
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError("name and value must be strings")
    return Matcher(name, op, value)


def _flag(item: Mapping[str, Any], key: str, default: bool) -> bool:
    """A matcher's boolean: absent or null is the default (as Alertmanager); `"false"`, 0 and
    the like are refused, since `bool()` of them turned `=` into `!=` or a value into a regex."""
    value = item.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false (got {value!r})")
    return value


def rule_to_api(rule: SilenceRule, now: float) -> dict[str, Any]:
    """A silence as the API shows it (Alertmanager v2 field names)."""
    state = "pending" if now < rule.starts_at else "active" if now < rule.ends_at else "expired"
    return {
        "id": rule.id,
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": "~" in m.op, "isEqual": "!" not in m.op}
            for m in rule.matchers
        ],
        "startsAt": format_timestamp(rule.starts_at),
        "endsAt": format_timestamp(rule.ends_at),
        "comment": rule.comment,
        "createdBy": rule.created_by,
        "updatedAt": format_timestamp(rule.updated_at or rule.starts_at),
        "status": {"state": state},
    }


def _bounded_record(value: bytes) -> SilenceRule:
    """A silence record from the topic, refused (ValueError) before any work that grows with it
    when it is larger than any the API writes; `SilenceRule` checks the other limits."""
    if len(value) > MAX_RECORD_BYTES:
        raise ValueError(f"record of {len(value)} bytes, over {MAX_RECORD_BYTES}")
    data = orjson.loads(value)
    if not isinstance(data, dict):
        raise ValueError("record is not a JSON object")
    matchers = data.get("matchers")
    if isinstance(matchers, list) and len(matchers) > MAX_MATCHERS:
        raise ValueError(f"record has {len(matchers)} matchers, over {MAX_MATCHERS}")
    return rule_from_record(data)


async def _caught_up(consumer: Any, ends: Mapping[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


#: How often a worker looks for silences past their retention.
COLLECT_EVERY_S = 600.0


class SilenceStore:
    """The worker's silences: config ones plus those in the silences topic, kept in step."""

    def __init__(
        self,
        config: Config,
        producer: AIOKafkaProducer,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.producer = producer
        self.clock = clock
        self.metrics = metrics
        if metrics is not None:
            metrics.known_state_topics([config.topics.silences])
        self.silencer = Silencer.from_config(config.silences)
        self._config_ids = {r.id for r in self.silencer.rules}
        self._applied: dict[str, int] = {}
        #: Records read from the topic and skipped: undecodable, or over a limit.
        self.rejected = 0
        self._changed = asyncio.Condition()

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        if self.metrics is not None:
            self.metrics.state_rejected.labels(self.topic, reason).inc()

    async def collect(self, now: float) -> int:
        """Remove the API silences expired over `http.silence_retention` before `now` from the
        topic (a tombstone each; every worker may do it, the result is the same). Returns how
        many it removed; they leave the silencer as the follower reads the tombstones."""
        horizon = now - self.config.http.silence_retention
        old = [
            rule.id
            for rule in self.silencer.rules
            if rule.ends_at <= horizon and rule.id not in self._config_ids
        ]
        for silence_id in old:
            future = await self.producer.send(self.topic, None, key=silence_id.encode())
            await future
        if old:
            log.info("silences_collected", count=len(old))
        return len(old)

    @property
    def topic(self) -> str:
        """The compacted topic that holds the silences."""
        return self.config.topics.silences

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is None:
            return
        try:
            if len(key) > MAX_ID_CHARS:
                raise ValueError(f"key of {len(key)} bytes, over {MAX_ID_CHARS}")
            silence_id = key.decode()
        except ValueError as exc:  # UnicodeDecodeError included
            self._reject("malformed")
            log.warning("bad_silence_record", error=str(exc))
            return
        if silence_id in self._config_ids:
            return  # the config file owns these
        if value is None:
            self.silencer.remove(silence_id)
        else:
            try:
                self.silencer.upsert(_bounded_record(value))
            except (ValueError, orjson.JSONDecodeError) as exc:
                # Anyone who can write to the topic can write anything: skip, count, go on.
                too_large = len(value) > MAX_RECORD_BYTES
                self._reject("too_large" if too_large else "malformed")
                log.warning("bad_silence_record", id=silence_id[:MAX_ID_CHARS], error=str(exc))
                return
        self._applied[silence_id] = offset

    async def follow(self, stop: asyncio.Event, loaded: asyncio.Event) -> None:
        """Read the topic from the start, set `loaded` at its end, then keep applying changes."""
        kafka = self.config.kafka
        consumer = make_consumer(
            client_options(kafka), [], None, fetch_max_wait_ms=kafka.fetch_max_wait_ms
        )
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [
                TopicPartition(self.topic, p)
                for p in sorted(consumer.partitions_for_topic(self.topic) or ())
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions) if partitions else {}
            next_collect = 0.0
            while not stop.is_set():
                if loaded.is_set() and time.monotonic() >= next_collect:
                    await self.collect(self.clock())
                    next_collect = time.monotonic() + COLLECT_EVERY_S
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        self._apply(record.key, record.value, record.offset)
                if not loaded.is_set() and await _caught_up(consumer, ends):
                    loaded.set()
                    log.info("silences_loaded", count=len(self.silencer.rules))
                if batch:
                    async with self._changed:
                        self._changed.notify_all()
        finally:
            await consumer.stop()

    async def _write(self, silence_id: str, record: dict[str, Any] | None) -> None:
        value = None if record is None else orjson.dumps(record)
        future = await self.producer.send(self.topic, value, key=silence_id.encode())
        await future
        # Wait (briefly) until this process has read it back, so a GET right after sees it.
        deadline = time.monotonic() + 5.0
        async with self._changed:
            while not self._seen(silence_id, record) and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.5)

    def _seen(self, silence_id: str, record: dict[str, Any] | None) -> bool:
        rule = self.silencer.get(silence_id)
        if record is None:
            return rule is None
        return rule is not None and rule.ends_at == record["ends_at"]

    async def create(self, rule: SilenceRule) -> None:
        """Persist a new silence; it applies in every worker that follows the topic."""
        await self._write(rule.id, rule_to_record(rule))
        log.info(
            "silence_created",
            id=rule.id,
            matchers=[str(m) for m in rule.matchers],
            ends_at=format_timestamp(rule.ends_at),
            comment=rule.comment,
        )

    async def expire(self, silence_id: str, now: float) -> bool:
        """End a silence now (a pending one is deleted); False for unknown or config ones."""
        rule = self.silencer.get(silence_id)
        if rule is None or silence_id in self._config_ids:
            return False
        if now <= rule.starts_at:
            await self._write(silence_id, None)
        elif now < rule.ends_at:
            record = rule_to_record(rule)
            record["ends_at"] = record["updated_at"] = now
            await self._write(silence_id, record)
        log.info("silence_expired", id=silence_id)
        return True

    def is_config(self, silence_id: str) -> bool:
        """Whether a silence comes from the config file (read-only through the API)."""
        return silence_id in self._config_ids

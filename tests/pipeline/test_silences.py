"""Silences through the API: validated, persisted in Kafka, applied by the correlator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.correlate.silence import SilenceRule, parse_matcher
from pipeline.metrics import Metrics
from pipeline.ops import OpsServer
from pipeline.silences import (
    SilenceError,
    SilenceStore,
    rule_from_api,
    rule_from_record,
    rule_to_api,
    rule_to_record,
)
from pipeline.worker import Worker
from tests.conftest import TopicNames
from tests.fakes import FakeProducer

NOW = 1_795_683_600.0  # 2026-11-26T09:00:00Z


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "the body must be a JSON object"),  # not an object
        ({"endsAt": "2026-11-26T10:00:00Z"}, "matchers: give at least one matcher"),  # none
        ({"matchers": [5], "endsAt": "2026-11-26T10:00:00Z"}, "matchers[0]"),  # bad matcher
        ({"matchers": ["service=~("], "endsAt": "2026-11-26T10:00:00Z"}, "matchers[0]"),  # regex
        ({"matchers": ["service=a"]}, "endsAt: required"),  # no end
        ({"matchers": ["service=a"], "endsAt": "soon"}, "endsAt: timestamp is not RFC 3339"),
        ({"matchers": ["service=a"], "endsAt": "2026-11-26T08:00:00Z"}, "in the future"),  # past
        # a flag that is no boolean (bool("false") is True: `=` became a regex)
        (
            {
                "matchers": [{"name": "s", "value": "a", "isRegex": "false"}],
                "endsAt": "2026-11-26T10:00:00Z",
            },
            "matchers[0]: isRegex must be true or false",
        ),
        (
            {
                "matchers": [{"name": "s", "value": "a", "isEqual": 0}],
                "endsAt": "2026-11-26T10:00:00Z",
            },
            "matchers[0]: isEqual must be true or false",
        ),
        # matchers that all match a missing label would mute every alert
        ({"matchers": ["team="], "endsAt": "2026-11-26T10:00:00Z"}, "must not match the empty"),
        (
            {"matchers": ["service=~.*"], "endsAt": "2026-11-26T10:00:00Z"},
            "must not match the empty",
        ),
        (
            {"matchers": ["service!=db"], "endsAt": "2026-11-26T10:00:00Z"},
            "must not match the empty",
        ),
        # a label name Kafka's record could not carry back (it was stored, then lost)
        (
            {"matchers": [{"name": "service!", "value": "a"}], "endsAt": "2026-11-26T10:00:00Z"},
            "matchers[0]: bad label name 'service!'",
        ),
        ({"matchers": [{"name": 5, "value": "a"}], "endsAt": "2026-11-26T10:00:00Z"}, "strings"),
        (
            {"matchers": ["s=a"], "endsAt": "2026-11-26T10:00:00Z", "comment": "x" * 5000},
            "comment: a string of at most 4096",
        ),
    ],
)
def test_bad_api_bodies_are_rejected_with_a_reason(body: Any, error: str) -> None:
    with pytest.raises(SilenceError, match=error.replace("[", r"\[").replace("(", r"\(")):
        rule_from_api(body, NOW)


@pytest.mark.parametrize(
    ("matcher", "text"),
    [
        ({"name": "service", "value": "db"}, 'service="db"'),  # equality by default
        ({"name": "service", "value": "db.*", "isRegex": True}, 'service=~"db.*"'),  # regex
        ({"name": "service", "value": "db", "isEqual": False}, 'service!="db"'),  # negated
        ("signal!~lat.*", 'signal!~"lat.*"'),  # a plain matcher string
        # null is the default, as in Alertmanager (bool(None) had made it `!=`: a silence
        # on everything but the service named)
        ({"name": "service", "value": "db", "isEqual": None, "isRegex": None}, 'service="db"'),
    ],
)
def test_api_matchers(matcher: Any, text: str) -> None:
    body = {"matchers": [matcher, "env=prod"], "endsAt": "2026-11-26T10:00:00Z"}
    rule = rule_from_api(body, NOW)
    assert [str(m) for m in rule.matchers] == [text, 'env="prod"']
    assert rule.starts_at == NOW
    assert rule.id.startswith("api-")


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (NOW - 1, "pending"),  # before it starts
        (NOW, "active"),  # from its start
        (NOW + 3599, "active"),  # until just before its end
        (NOW + 3600, "expired"),  # its end is exclusive
    ],
)
def test_api_status(now: float, state: str) -> None:
    rule = SilenceRule((parse_matcher("service=a"),), NOW, NOW + 3600, "c", "api-1")
    shown = rule_to_api(rule, now)
    assert shown["status"] == {"state": state}
    assert shown["matchers"] == [
        {"name": "service", "value": "a", "isRegex": False, "isEqual": True}
    ]


@pytest.mark.parametrize(("given", "shown"), [({"createdBy": "ana"}, "ana"), ({}, "api")])
def test_api_silences_carry_who_made_them_and_when(given: dict[str, str], shown: str) -> None:
    """Alertmanager's gettableSilence requires createdBy and updatedAt (amtool lists them)."""
    body = {"matchers": ["service=db"], "endsAt": "2026-11-26T10:00:00Z", **given}
    rule = rule_from_record(orjson.loads(orjson.dumps(rule_to_record(rule_from_api(body, NOW)))))
    listed = rule_to_api(rule, NOW)
    assert (listed["createdBy"], listed["updatedAt"]) == (shown, "2026-11-26T09:00:00.000Z")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _start(
    config: Any, clock: list[float]
) -> tuple[Worker, asyncio.Event, asyncio.Task[None], OpsServer]:
    worker = Worker(config, Metrics.create(), stages=("correlate",), clock=lambda: clock[0])
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    for _ in range(300):
        if worker.ready:
            break
        await asyncio.sleep(0.05)
    assert worker.ready
    ops = OpsServer(
        worker.metrics,
        lambda: worker.ready,
        "127.0.0.1",
        0,
        silences=lambda: worker.silences,
        clock=lambda: clock[0],
    )
    await ops.start()
    return worker, stop, task, ops


@pytest.mark.broker
async def test_api_silence_persists_across_restarts_and_expires(
    kafka_bootstrap: str,
    unique_topics: TopicNames,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUIETPAGER_TEST_ROUTING_KEY", "k")
    config = unique_topics.config(kafka_bootstrap)
    data = config.model_dump(mode="json")
    data["topics"]["silences"] = f"{unique_topics.run_id}.silences"
    config = type(config).model_validate(data)

    clock = [NOW]
    worker, stop, task, ops = await _start(config, clock)
    base = f"http://127.0.0.1:{ops.port}/api/v2"
    try:
        async with session.post(
            f"{base}/silences",
            json={
                "matchers": ["service=payments-db"],
                "endsAt": "2026-11-26T11:00:00Z",
                "comment": "db upgrade",
            },
        ) as r:
            assert r.status == 200
            silence_id = (await r.json())["silenceID"]
        async with session.post(f"{base}/silences", json={"matchers": []}) as r:
            assert r.status == 400
            assert "matchers" in (await r.json())["error"]
        assert worker.silences is not None
        assert worker.silences.silencer.get(silence_id) is not None
    finally:
        await ops.stop()
        stop.set()
        await task

    # A new worker (a restart) reads the silence back from the topic.
    clock[0] = NOW + 60  # a minute later
    worker, stop, task, ops = await _start(config, clock)
    base = f"http://127.0.0.1:{ops.port}/api/v2"
    try:
        async with session.get(f"{base}/silences") as r:
            listed = await r.json()
        assert [(s["id"], s["comment"], s["status"]["state"]) for s in listed] == [
            (silence_id, "db upgrade", "active")
        ]
        async with session.delete(f"{base}/silence/{silence_id}") as r:
            assert r.status == 200
        async with session.get(f"{base}/silence/{silence_id}") as r:
            assert (await r.json())["status"]["state"] == "expired"
        async with session.delete(f"{base}/silence/nope") as r:
            assert r.status == 404
    finally:
        await ops.stop()
        stop.set()
        await task


@pytest.mark.broker
async def test_api_updates_a_silence_by_id_and_filters_the_list(
    kafka_bootstrap: str,
    unique_topics: TopicNames,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As Alertmanager (amtool silence update / query): a POST with an existing id replaces
    that silence, an unknown id is a 404, and `filter` selects by the silences' matchers."""
    monkeypatch.setenv("QUIETPAGER_TEST_ROUTING_KEY", "k")
    config = unique_topics.config(kafka_bootstrap)
    data = config.model_dump(mode="json")
    data["topics"]["silences"] = f"{unique_topics.run_id}.silences"
    config = type(config).model_validate(data)
    _, stop, task, ops = await _start(config, [NOW])
    base = f"http://127.0.0.1:{ops.port}/api/v2"
    ends = "2026-11-26T11:00:00Z"
    try:
        ids = []
        for service in ("payments-db", "checkout"):
            body = {"matchers": [f"service={service}"], "endsAt": ends}
            async with session.post(f"{base}/silences", json=body) as r:
                ids.append((await r.json())["silenceID"])
        shorter = {
            "id": ids[0],
            "matchers": ["service=payments-db"],
            "endsAt": "2026-11-26T09:30:00Z",
        }
        async with session.post(f"{base}/silences", json=shorter) as r:
            assert (r.status, await r.json()) == (200, {"silenceID": ids[0]})
        async with session.post(f"{base}/silences", json={**shorter, "id": "api-nope"}) as r:
            assert r.status == 404
        async with session.get(f"{base}/silences") as r:
            listed = {s["id"]: s["endsAt"] for s in await r.json()}
        assert listed == {ids[0]: "2026-11-26T09:30:00.000Z", ids[1]: "2026-11-26T11:00:00.000Z"}
        async with session.get(f"{base}/silences", params={"filter": "service=checkout"}) as r:
            assert [s["id"] for s in await r.json()] == [ids[1]]
        async with session.get(f"{base}/silences", params={"filter": "service=~("}) as r:
            assert r.status == 400
    finally:
        await ops.stop()
        stop.set()
        await task


@pytest.mark.broker
async def test_api_silence_mutes_the_incident(
    kafka_bootstrap: str, unique_topics: TopicNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.harness import FAULT_SCENARIO, create_topics, messages, produce, wait_for
    from pipeline.notify.sink import WebhookSink

    monkeypatch.setenv("QUIETPAGER_TEST_ROUTING_KEY", "k")
    sink = WebhookSink()
    await sink.start()
    try:
        config = unique_topics.config(
            kafka_bootstrap,
            receiver_url=sink.pagerduty_url,
            topology=FAULT_SCENARIO.topology,
            correlate={"hold_for": "60s", "resolve_after": "2m"},
        )
        data = config.model_dump(mode="json")
        data["topics"]["silences"] = f"{unique_topics.run_id}.silences"
        config = type(config).model_validate(data)
        await create_topics(config)
        worker = Worker(config, Metrics.create(), routing_keys={"oncall": "k"})
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await wait_for(lambda: worker.ready, 30, "the worker")
            assert worker.silences is not None
            # Maintenance on the whole shop for the scenario's hours (event time).
            window = SilenceRule(
                (parse_matcher("service=~.+"),),
                NOW - 3600,
                NOW + 86400,
                "maintenance",
                "api-maintenance",
            )
            await worker.silences.create(window)
            await produce(config, messages())
            await wait_for(
                lambda: (
                    (
                        worker.metrics.registry.get_sample_value(
                            "quietpager_correlation_decisions_total",
                            {"kind": "suppress", "reason": "silenced"},
                        )
                        or 0
                    )
                    >= 20
                ),
                30,
                "silenced anomalies",
            )
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await task
        assert sink.received == []
    finally:
        await sink.stop()


async def test_silences_expired_past_their_retention_are_collected() -> None:
    """Expired silences used to stay in the topic, the list and every start-up load for ever
    (20,000 took 9 s to load); past `http.silence_retention` (120 h) they are tombstoned."""
    config = TopicNames.fresh().config(receiver_type="alertmanager")
    producer = FakeProducer()
    store = SilenceStore(config, cast(AIOKafkaProducer, producer))
    day = 86400.0
    ends = {"api-old": NOW - 6 * day, "api-recent": NOW - 1 * day, "api-on": NOW + day}
    db = (parse_matcher("service=db"),)
    for name, end in ends.items():
        store.silencer.upsert(SilenceRule(db, end - 60, end, "", name))
    assert await store.collect(NOW) == 1
    assert [(m["topic"], m["key"], m["value"]) for m in producer.sent] == [
        (store.topic, b"api-old", None)
    ]

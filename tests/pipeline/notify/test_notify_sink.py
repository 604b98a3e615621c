"""The loopback webhook sink: endpoints, recording, scripted failures, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from pipeline.notify.sink import ALERTMANAGER_PATH, PAGERDUTY_PATH, WebhookSink

EVENT = {"routing_key": "K", "event_action": "trigger", "dedup_key": "qp-1"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession, url: str, body: Any
) -> tuple[int, dict[str, Any], str | None]:
    async with session.post(
        url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, await response.json(), response.headers.get("Retry-After")


async def test_url_is_loopback_with_a_real_port() -> None:
    sink = WebhookSink()
    with pytest.raises(RuntimeError, match="not started"):
        _ = sink.url
    await sink.start()
    try:
        assert sink.url.startswith("http://127.0.0.1:")
        assert int(sink.url.rsplit(":", 1)[1]) > 0
        assert sink.pagerduty_url == sink.url + "/v2/enqueue"
        assert sink.alertmanager_url == sink.url + "/alertmanager"
    finally:
        await sink.stop()
        await sink.stop()  # idempotent


async def test_pagerduty_endpoint_answers_202_and_records(
    session: aiohttp.ClientSession,
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    async with WebhookSink(on_receive=lambda path, body: seen.append((path, body))) as sink:
        status, answer, _ = await post(session, sink.pagerduty_url, EVENT)
        assert status == 202
        assert answer == {"status": "success", "message": "Event processed", "dedup_key": "qp-1"}
        assert sink.received == [(PAGERDUTY_PATH, EVENT)]
        assert seen == [(PAGERDUTY_PATH, EVENT)]


async def test_alertmanager_endpoint_answers_200_and_records(
    session: aiohttp.ClientSession,
) -> None:
    body = {"version": "4", "status": "firing", "alerts": []}
    async with WebhookSink() as sink:
        status, _, _ = await post(session, sink.alertmanager_url, body)
        assert status == 200
        assert sink.received == [(ALERTMANAGER_PATH, body)]


@pytest.mark.parametrize(
    "body",
    [
        {"event_action": "trigger"},  # no routing key
        {"routing_key": "K", "event_action": "explode"},  # unknown action
        ["not", "an", "object"],  # not a JSON object
    ],
)
async def test_pagerduty_endpoint_refuses_invalid_events(
    session: aiohttp.ClientSession, body: Any
) -> None:
    async with WebhookSink() as sink:
        status, answer, _ = await post(session, sink.pagerduty_url, body)
        assert status == 400
        assert answer["status"] == "invalid event"
        assert sink.received == []


async def test_fail_next_scripts_failures_in_order_without_recording(
    session: aiohttp.ClientSession,
) -> None:
    async with WebhookSink() as sink:
        sink.fail_next(2, status=503)
        sink.fail_next(1, status=429, retry_after="7")
        answers = [await post(session, sink.pagerduty_url, EVENT) for _ in range(4)]
        assert [(status, retry_after) for status, _, retry_after in answers] == [
            (503, None),
            (503, None),
            (429, "7"),
            (202, None),
        ]
        assert sink.requests_seen == 4
        assert sink.received == [(PAGERDUTY_PATH, EVENT)]


async def test_wait_for_returns_once_enough_arrived(session: aiohttp.ClientSession) -> None:
    async with WebhookSink() as sink:
        await post(session, sink.pagerduty_url, EVENT)
        await post(session, sink.alertmanager_url, {"version": "4"})
        got = await sink.wait_for(2, timeout=2.0)
        assert [path for path, _ in got] == [PAGERDUTY_PATH, ALERTMANAGER_PATH]


async def test_wait_for_wakes_on_arrival(session: aiohttp.ClientSession) -> None:
    async with WebhookSink() as sink:
        waiter = asyncio.create_task(sink.wait_for(1, timeout=2.0))
        await asyncio.sleep(0)
        assert not waiter.done()
        await post(session, sink.pagerduty_url, EVENT)
        assert await waiter == [(PAGERDUTY_PATH, EVENT)]


async def test_wait_for_times_out() -> None:
    async with WebhookSink() as sink:
        with pytest.raises(TimeoutError):
            await sink.wait_for(1, timeout=0.05)


@pytest.mark.parametrize("path", [PAGERDUTY_PATH, ALERTMANAGER_PATH])
async def test_a_slow_sink_records_a_page_as_it_arrives_and_answers_later(
    session: aiohttp.ClientSession, path: str
) -> None:
    async with WebhookSink() as sink:
        sink.answer_after = 0.3
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = asyncio.create_task(post(session, sink.url + path, EVENT))
        await sink.wait_for(1, timeout=2.0)
        assert not answer.done()  # acted on, not yet answered
        status, _, _ = await answer
        assert status in (200, 202)
        assert loop.time() - started >= 0.3

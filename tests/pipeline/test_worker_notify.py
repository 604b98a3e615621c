"""The notify stage's delivery semantics, its Kafka side faked, its receivers real HTTP servers
on loopback: one receiver's outage holds back only its own pages, progress is committed page
by page, and a page a receiver refuses for good goes to the DLQ instead of being dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from pipeline.config import Config, parse_config
from pipeline.errors import ConfigError
from pipeline.harness import received_pages
from pipeline.metrics import Metrics
from pipeline.model import Page
from pipeline.notify.sender import DeliveryResult, WebhookSender
from pipeline.notify.sink import WebhookSink
from pipeline.worker import NotifyRunner, Worker
from tests.conftest import TopicNames
from tests.fakes import FakeCommitter, FakeProducer

ROUTING_KEY = "notify-test-routing-key"
FAST_RETRY = {"initial_backoff": "10ms", "max_backoff": "20ms"}


def _config(pagerduty_url: str, chat_url: str, **retry: Any) -> Config:
    """Two receivers: `oncall` (PagerDuty body) and `chat` (Alertmanager body)."""
    data = TopicNames.fresh().config().model_dump(mode="json")
    data["receivers"] = [
        {
            "name": "oncall",
            "type": "pagerduty",
            "url": pagerduty_url,
            "routing_key": {"env": "QP_UNUSED"},
            "retry": {**FAST_RETRY, **retry},
        },
        {"name": "chat", "type": "alertmanager", "url": chat_url, "retry": FAST_RETRY},
    ]
    data["route"] = {"receivers": ["oncall", "chat"]}
    return parse_config(data)


def _page(action: str, key: str, *receivers: str) -> Page:
    return Page(
        action=action,  # type: ignore[arg-type]
        dedup_key=key,
        at=1_795_683_600.0,
        summary=f"{key}: checkout latency",
        severity="critical",
        source="quietpager",
        root_service="checkout",
        scope="prod",
        signals=("latency",),
        receivers=receivers,
    )


def _batch(config: Config, *values: bytes) -> dict[TopicPartition, list[ConsumerRecord]]:
    tp = TopicPartition(config.topics.pages, 0)
    records = [
        ConsumerRecord(tp.topic, 0, offset, 0, 0, b"key", value, None, len(value), 0, [])
        for offset, value in enumerate(values)
    ]
    return {tp: records}


def _record(page: Page) -> bytes:
    return orjson.dumps(page.to_dict())


class Fixture:
    """The runners of one config, a fake producer and committer each, real HTTP sessions."""

    def __init__(self, config: Config, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.producer = FakeProducer()
        self.committers: dict[str, FakeCommitter] = {}

    def runner(self, receiver: str) -> NotifyRunner:
        runner = NotifyRunner(
            self.config,
            cast(AIOKafkaProducer, self.producer),
            Metrics.create(),
            {"oncall": ROUTING_KEY},
            receiver,
        )
        committer = self.committers[receiver] = FakeCommitter()
        runner.consumer = cast(AIOKafkaConsumer, committer)
        runner.sender = WebhookSender(self.session, sleep=_yield)
        return runner


async def _yield(delay: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
async def sinks() -> AsyncIterator[tuple[WebhookSink, WebhookSink]]:
    async with WebhookSink() as pagerduty, WebhookSink() as chat:
        yield pagerduty, chat


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_each_receiver_has_its_own_group() -> None:
    config = _config("http://127.0.0.1:9/v2/enqueue", "http://127.0.0.1:9/am")
    worker = Worker(config, Metrics.create(), routing_keys={"oncall": ROUTING_KEY})
    runners = worker._build_runners(cast(AIOKafkaProducer, FakeProducer()))
    groups = [r.group_id for r in runners if isinstance(r, NotifyRunner)]
    prefix = config.kafka.group_prefix
    assert groups == [f"{prefix}-notify-oncall", f"{prefix}-notify-chat"]


async def test_a_receiver_that_is_down_holds_back_only_its_own_pages(
    sinks: tuple[WebhookSink, WebhookSink], session: aiohttp.ClientSession
) -> None:
    pagerduty, chat = sinks
    pagerduty.fail_next(1_000_000, status=503)  # down for good
    config = _config(pagerduty.pagerduty_url, chat.alertmanager_url)
    fixture = Fixture(config, session)
    batch = _batch(
        config,
        _record(_page("trigger", "inc-1", "oncall", "chat")),
        _record(_page("trigger", "inc-2", "chat")),
        _record(_page("resolve", "inc-1", "oncall", "chat")),
    )
    stuck = asyncio.create_task(fixture.runner("oncall").handle(batch))
    try:
        await fixture.runner("chat").handle(batch)
        assert not stuck.done()  # still retrying its first page
        assert pagerduty.requests_seen >= 2
    finally:
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
    assert received_pages(chat) == [
        ("trigger", "inc-1"),
        ("trigger", "inc-2"),
        ("resolve", "inc-1"),
    ]
    tp = next(iter(batch))
    assert fixture.committers["chat"].commits == [{tp: 1}, {tp: 2}, {tp: 3}]
    assert fixture.committers["oncall"].commits == []  # its page stays in the outbox


class GateSender:
    """Delivers the first `open` bodies at once, then hangs (a receiver gone dark)."""

    def __init__(self, open: int) -> None:
        self.open = open
        self.bodies: list[dict[str, Any]] = []
        self.waiting = asyncio.Event()

    async def deliver(self, receiver: Any, body: dict[str, Any]) -> DeliveryResult:
        if len(self.bodies) >= self.open:
            self.waiting.set()
            await asyncio.Event().wait()
        self.bodies.append(body)
        return DeliveryResult("delivered", 1, 202)


async def test_progress_is_committed_page_by_page_so_a_restart_resends_only_the_page_in_flight(
    sinks: tuple[WebhookSink, WebhookSink], session: aiohttp.ClientSession
) -> None:
    """A trigger and its resolve delivered, the next page hanging: a shutdown then must not
    leave the resolved incident's trigger to be sent again (PagerDuty would open a new
    incident for it)."""
    pagerduty, chat = sinks
    config = _config(pagerduty.pagerduty_url, chat.alertmanager_url)
    fixture = Fixture(config, session)
    batch = _batch(
        config,
        _record(_page("trigger", "inc-6", "oncall")),
        _record(_page("resolve", "inc-6", "oncall")),
        _record(_page("trigger", "inc-7", "oncall")),
    )
    tp = next(iter(batch))
    runner = fixture.runner("oncall")
    gate = GateSender(open=2)
    runner.sender = cast(WebhookSender, gate)
    handled = asyncio.create_task(runner.handle(batch))
    await asyncio.wait_for(gate.waiting.wait(), 10)
    handled.cancel()  # shutdown while the third page hangs
    with pytest.raises(asyncio.CancelledError):
        await handled
    assert [(b["event_action"], b["dedup_key"]) for b in gate.bodies] == [
        ("trigger", "inc-6"),
        ("resolve", "inc-6"),
    ]
    # Both are committed: the next owner starts at inc-7.
    assert fixture.committers["oncall"].commits == [{tp: 1}, {tp: 2}]


async def test_a_refused_commit_stops_the_batch_and_rewinds_to_the_first_page_not_sent(
    sinks: tuple[WebhookSink, WebhookSink], session: aiohttp.ClientSession
) -> None:
    pagerduty, chat = sinks
    config = _config(pagerduty.pagerduty_url, chat.alertmanager_url)
    fixture = Fixture(config, session)
    batch = _batch(
        config,
        _record(_page("trigger", "inc-1", "oncall")),
        _record(_page("trigger", "inc-2", "oncall")),
    )
    runner = fixture.runner("oncall")
    fixture.committers["oncall"].refuse = 1  # the group rebalanced during the first page
    await runner.handle(batch)
    tp = next(iter(batch))
    assert received_pages(pagerduty) == [("trigger", "inc-1")]  # inc-2 is the new owner's
    assert fixture.committers["oncall"].seeks == [(tp, 1)]


@pytest.mark.parametrize(
    ("failures", "status", "retry", "detail"),
    [
        (1, 400, {}, "permanent after 1 attempt(s): HTTP 400"),  # PagerDuty: invalid event
        (1, 404, {}, "permanent after 1 attempt(s): HTTP 404"),  # a wrong URL
        (2, 503, {"max_attempts": 2}, "gave_up after 2 attempt(s): HTTP 503"),
    ],
)
async def test_a_page_refused_for_good_goes_to_the_dlq_addressed_to_that_receiver(
    sinks: tuple[WebhookSink, WebhookSink],
    session: aiohttp.ClientSession,
    failures: int,
    status: int,
    retry: dict[str, Any],
    detail: str,
) -> None:
    pagerduty, chat = sinks
    config = _config(pagerduty.pagerduty_url, chat.alertmanager_url, **retry)
    fixture = Fixture(config, session)
    trigger = _page("trigger", "inc-3", "oncall", "chat")
    batch = _batch(config, _record(trigger), _record(_page("resolve", "inc-3", "oncall")))
    pagerduty.fail_next(failures, status=status)
    runner = fixture.runner("oncall")
    await runner.handle(batch)
    tp = next(iter(batch))
    assert fixture.committers["oncall"].commits == [{tp: 1}, {tp: 2}]
    (dead,) = fixture.producer.dead_letters(config)
    assert dead["value"] == {**trigger.to_dict(), "receivers": ["oncall"]}
    headers = dead["headers"]
    assert headers["qp.reason"] == b"undeliverable"
    assert headers["qp.detail"].decode().startswith(detail)
    assert (headers["qp.topic"], headers["qp.partition"], headers["qp.offset"]) == (
        config.topics.pages.encode(),
        b"0",
        b"0",
    )
    assert ROUTING_KEY.encode() not in headers["qp.detail"]
    dlq = {"reason": "undeliverable"}
    assert runner.metrics.registry.get_sample_value("quietpager_dlq_records_total", dlq) == 1
    assert received_pages(pagerduty)[-1] == ("resolve", "inc-3")  # the stage goes on


async def test_a_page_a_slow_receiver_never_answers_goes_to_the_dlq_and_the_next_one_goes_on(
    sinks: tuple[WebhookSink, WebhookSink], session: aiohttp.ClientSession
) -> None:
    """The receiver acts on each copy but answers after a second, past every wait: after
    `max_unanswered` copies the page is dead-lettered, saying it may have been acted on, and
    the receiver's next page is sent (it answers that one at once)."""
    pagerduty, chat = sinks
    pagerduty.answer_after = 1.0

    def recover(path: str, body: dict[str, Any]) -> None:
        if body["event_action"] == "resolve":
            pagerduty.answer_after = 0.0

    pagerduty.on_receive = recover
    config = _config(pagerduty.pagerduty_url, chat.alertmanager_url, timeout="100ms")
    fixture = Fixture(config, session)
    trigger = _page("trigger", "inc-8", "oncall")
    batch = _batch(config, _record(trigger), _record(_page("resolve", "inc-8", "oncall")))
    runner = fixture.runner("oncall")
    await asyncio.wait_for(runner.handle(batch), 10)
    assert received_pages(pagerduty) == [("trigger", "inc-8")] * 3 + [("resolve", "inc-8")]
    (dead,) = fixture.producer.dead_letters(config)
    assert dead["value"] == {**trigger.to_dict(), "receivers": ["oncall"]}
    assert dead["headers"]["qp.reason"] == b"undeliverable"
    assert dead["headers"]["qp.detail"].decode() == (
        "unanswered after 3 attempt(s), 3 sent without an answer (the receiver may have acted "
        "on them): SocketTimeoutError: no answer within 0.1s"
    )
    tp = next(iter(batch))
    assert fixture.committers["oncall"].commits == [{tp: 1}, {tp: 2}]
    sample = runner.metrics.registry.get_sample_value
    assert sample("quietpager_webhook_failures_total", {"receiver": "oncall"}) == 1
    assert sample("quietpager_pages_sent_total", {"receiver": "oncall", "action": "resolve"}) == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not a page", "bad_page"),
        (_record(_page("trigger", "inc-4", "chat", "pager-we-removed")), "unknown_receiver"),
    ],
)
async def test_what_no_runner_can_deliver_is_dead_lettered_once(
    sinks: tuple[WebhookSink, WebhookSink],
    session: aiohttp.ClientSession,
    value: bytes,
    reason: str,
) -> None:
    pagerduty, chat = sinks
    config = _config(pagerduty.pagerduty_url, chat.alertmanager_url)
    fixture = Fixture(config, session)
    batch = _batch(config, value)
    for name in ("oncall", "chat"):  # the first receiver's runner speaks for all
        await fixture.runner(name).handle(batch)
    (dead,) = fixture.producer.dead_letters(config)
    assert dead["headers"]["qp.reason"] == reason.encode()
    if reason == "unknown_receiver":
        assert dead["value"]["receivers"] == ["pager-we-removed"]
        assert received_pages(chat) == [("trigger", "inc-4")]
    else:
        assert dead["value"] == value  # the original bytes


def test_a_pagerduty_receiver_without_its_routing_key_fails_at_start() -> None:
    config = _config("http://127.0.0.1:9/v2/enqueue", "http://127.0.0.1:9/am")
    with pytest.raises(ConfigError, match="'oncall': type pagerduty needs a routing_key"):
        NotifyRunner(config, cast(AIOKafkaProducer, FakeProducer()), Metrics.create(), {}, "oncall")

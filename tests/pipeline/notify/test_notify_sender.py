"""Retry policy tables, and the sender against a real webhook sink on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipeline.config import Receiver, RetryConfig, SecretSource
from pipeline.notify.sender import (
    WebhookSender,
    answer_timeout,
    backoff_delay,
    classify,
    never_sent,
    parse_retry_after,
    retry_delay,
)
from pipeline.notify.sink import PAGERDUTY_PATH, WebhookSink

ROUTING_KEY = "R0UTING-KEY-SECRET-0123456789abcd"
TRIGGER = {
    "routing_key": ROUTING_KEY,
    "event_action": "trigger",
    "dedup_key": "qp-checkout-1",
    "payload": {"summary": "checkout latency", "source": "qp", "severity": "critical"},
}

# No jitter, so every delay below is exact.
FAST = RetryConfig(initial_backoff=0.1, max_backoff=5.0, multiplier=2.0, jitter=0.0, timeout=2.0)


class FakeSleep:
    """Records the delays it is asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class AttemptLog:
    """Collects `on_attempt` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, receiver: str, label: str) -> None:
        self.calls.append((receiver, label))

    @property
    def labels(self) -> list[str]:
        return [label for _, label in self.calls]


def receiver(url: str, **retry: Any) -> Receiver:
    return Receiver(
        name="oncall",
        type="pagerduty",
        url=url,
        routing_key=SecretSource(env="QP_UNUSED_ROUTING_KEY"),
        retry=FAST.model_copy(update=retry),
    )


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def attempts() -> AttemptLog:
    return AttemptLog()


@pytest.fixture
def sender(session: aiohttp.ClientSession, sleep: FakeSleep, attempts: AttemptLog) -> WebhookSender:
    return WebhookSender(
        session, sleep=sleep, rng=random.Random(7), clock=lambda: 1000.0, on_attempt=attempts
    )


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port that neither accepts nor refuses a connection: a listener with a full
    accept queue, whose kernel drops further connection requests (Linux)."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        for _ in range(3):  # fill the queue
            filler = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port


# ---------------------------------------------------------------- pure policy


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "delivered"),  # Alertmanager-style OK
        (202, "delivered"),  # PagerDuty accepted
        (204, "delivered"),  # any 2xx
        (301, "permanent"),  # redirects are not followed for a POST
        (400, "permanent"),  # bad event: retrying sends the same bad event
        (401, "permanent"),  # wrong credentials will not fix themselves
        (404, "permanent"),  # wrong URL
        (408, "retry"),  # request timeout
        (413, "permanent"),  # body too large
        (429, "retry"),  # rate limited
        (500, "retry"),  # server error
        (502, "retry"),  # bad gateway
        (503, "retry"),  # unavailable
        (599, "retry"),  # any 5xx
    ],
)
def test_classify(status: int, expected: str) -> None:
    assert classify(status) == expected


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        (None, 0.0, None),  # no header
        ("", 0.0, None),  # empty header
        ("7", 0.0, 7.0),  # delta-seconds
        (" 120 ", 0.0, 120.0),  # surrounding whitespace
        ("0", 0.0, 0.0),  # retry now
        ("-3", 0.0, None),  # negative is not delta-seconds
        ("1.5", 0.0, None),  # fractions are not delta-seconds
        ("soon", 0.0, None),  # garbage
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0, 10.0),  # HTTP-date ahead of now
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0, 0.0),  # HTTP-date in the past
        ("Wed, 21 Oct 2015 07:28:00", 1445412470.0, 10.0),  # no zone: HTTP-dates are GMT
        ("Wed Oct 21 07:28:00 2015", 1445412470.0, 10.0),  # asctime's form (RFC 9110)
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 1445412470.0, 10.0),  # RFC 850's form
    ],
)
def test_parse_retry_after(value: str | None, now: float, expected: float | None) -> None:
    assert parse_retry_after(value, now) == expected


NO_JITTER = RetryConfig(initial_backoff=0.5, max_backoff=60.0, multiplier=2.0, jitter=0.0)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, 0.5),  # first retry waits initial_backoff
        (2, 1.0),  # doubles
        (3, 2.0),  # doubles again
        (7, 32.0),  # still under the cap
        (8, 60.0),  # 64 is capped at max_backoff
        (5000, 60.0),  # a keep-retrying receiver does not overflow
        (0, 0.5),  # attempt numbers below 1 are treated as the first
    ],
)
def test_backoff_delay_without_jitter(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, NO_JITTER, random.Random(1)) == expected


def test_backoff_delay_multiplier_one_is_constant() -> None:
    policy = NO_JITTER.model_copy(update={"multiplier": 1.0})
    assert [backoff_delay(n, policy, random.Random(1)) for n in (1, 2, 10)] == [0.5, 0.5, 0.5]


def test_backoff_delay_jitter_is_the_seeded_proportional_factor() -> None:
    policy = NO_JITTER.model_copy(update={"jitter": 0.2})
    expected = 2.0 * (1.0 + 0.2 * random.Random(42).uniform(-1.0, 1.0))
    assert backoff_delay(3, policy, random.Random(42)) == expected


def test_backoff_delay_jitter_stays_within_bounds_and_spreads() -> None:
    policy = NO_JITTER.model_copy(update={"jitter": 0.2})
    rng = random.Random(3)
    delays = [backoff_delay(3, policy, rng) for _ in range(500)]
    assert all(1.6 <= d <= 2.4 for d in delays)
    assert min(delays) < 1.7
    assert max(delays) > 2.3


def test_backoff_delay_with_jitter_never_exceeds_the_cap() -> None:
    policy = NO_JITTER.model_copy(update={"jitter": 0.5})
    rng = random.Random(5)
    delays = [backoff_delay(20, policy, rng) for _ in range(500)]
    assert all(30.0 <= d <= 60.0 for d in delays)
    # Jitter applies to the capped base, so senders stuck at the cap still spread out.
    assert min(delays) < 35.0


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, None, 0.5),  # no header: plain backoff
        (1, 7.0, 7.0),  # a longer Retry-After wins
        (4, 1.0, 4.0),  # a shorter Retry-After does not cut the backoff
        (1, 10_000.0, 600.0),  # Retry-After is capped at max_backoff * 10
    ],
)
def test_retry_delay(attempt: int, retry_after: float | None, expected: float) -> None:
    assert retry_delay(attempt, NO_JITTER, random.Random(1), retry_after) == expected


@pytest.mark.parametrize(
    ("unanswered", "policy", "expected"),
    [
        (0, {}, 10.0),  # the first copy waits `timeout`
        (1, {}, 20.0),  # one went unanswered: the next waits `multiplier` times longer
        (2, {}, 40.0),  # and again
        (3, {}, 60.0),  # 80 is capped at max_backoff
        (5000, {}, 60.0),  # a receiver that never answers does not overflow it
        (2, {"multiplier": 1.0}, 10.0),  # multiplier 1: every copy waits `timeout`
        (0, {"timeout": 90.0}, 90.0),  # a timeout above max_backoff is kept...
        (3, {"timeout": 90.0}, 90.0),  # ...but does not grow
        (2, {"timeout": 0.0}, None),  # timeout 0: no limit, as in aiohttp
    ],
)
def test_answer_timeout(unanswered: int, policy: dict[str, float], expected: float | None) -> None:
    assert answer_timeout(unanswered, NO_JITTER.model_copy(update=policy)) == expected


def test_what_a_receiver_that_never_answers_costs_with_the_defaults() -> None:
    """The README's figures: 3 copies, waits of 10, 20 and 40 s, backoffs of 0.5 and 1 s
    (jitter aside), so a page holds its receiver's queue about 71.5 s, under aiokafka's
    5-minute max_poll_interval_ms (past it, the runner would leave the group)."""
    policy = RetryConfig()
    waits = [answer_timeout(n, policy) for n in range(policy.max_unanswered)]
    backoffs = [
        backoff_delay(n, policy.model_copy(update={"jitter": 0.0}), random.Random(1))
        for n in range(1, policy.max_unanswered)
    ]
    assert (policy.max_unanswered, waits, backoffs) == (3, [10.0, 20.0, 40.0], [0.5, 1.0])
    assert sum(w for w in waits if w is not None) + sum(backoffs) == 71.5


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(), True),  # nothing listens: the page never left
        (aiohttp.ConnectionTimeoutError("connect"), True),  # a host that drops the SYN
        (aiohttp.InvalidURL("http://"), True),  # no request could be built
        (aiohttp.SocketTimeoutError("read"), False),  # sent, no answer within the wait
        (TimeoutError(), False),  # `total` fires only after the connect bound
        (aiohttp.ServerDisconnectedError(), False),  # the receiver hung up on a sent page
        (aiohttp.ClientOSError(104, "reset"), False),  # reset mid-exchange
        (ConnectionResetError(), False),  # likewise, unwrapped
        (aiohttp.ClientPayloadError("cut"), False),  # an answer that broke off
    ],
)
def test_never_sent(error: BaseException, expected: bool) -> None:
    assert never_sent(error) is expected


# ---------------------------------------------------------------- sender on loopback


async def test_two_503_then_success_delivers_once(
    sink: WebhookSink, sender: WebhookSender, sleep: FakeSleep, attempts: AttemptLog
) -> None:
    sink.fail_next(2, status=503)
    result = await sender.deliver(receiver(sink.pagerduty_url), TRIGGER)
    assert result.outcome == "delivered"
    assert result.attempts == 3
    assert result.last_status == 202
    assert sink.received == [(PAGERDUTY_PATH, TRIGGER)]
    assert sink.requests_seen == 3
    assert sleep.delays == [0.1, 0.2]
    assert attempts.calls == [
        ("oncall", "retry_status"),
        ("oncall", "retry_status"),
        ("oncall", "delivered"),
    ]


async def test_429_retry_after_is_obeyed(
    sink: WebhookSink, sender: WebhookSender, sleep: FakeSleep
) -> None:
    sink.fail_next(1, status=429, retry_after="7")
    result = await sender.deliver(receiver(sink.pagerduty_url), TRIGGER)
    assert result.outcome == "delivered"
    assert result.attempts == 2
    assert sleep.delays == [7.0]


async def test_retry_after_http_date_uses_the_injected_clock(
    sink: WebhookSink, sender: WebhookSender, sleep: FakeSleep
) -> None:
    # The sender's clock reads 1000.0; this date is 1030.0.
    sink.fail_next(1, status=503, retry_after="Thu, 01 Jan 1970 00:17:10 GMT")
    result = await sender.deliver(receiver(sink.pagerduty_url), TRIGGER)
    assert result.outcome == "delivered"
    assert sleep.delays == [30.0]


async def test_400_is_permanent_without_retry(
    sink: WebhookSink, sender: WebhookSender, sleep: FakeSleep, attempts: AttemptLog
) -> None:
    sink.fail_next(1, status=400)
    result = await sender.deliver(receiver(sink.pagerduty_url), TRIGGER)
    assert result.outcome == "permanent"
    assert result.attempts == 1
    assert result.last_status == 400
    assert result.last_error.startswith("HTTP 400")
    assert sink.received == []
    assert sleep.delays == []
    assert attempts.labels == ["permanent"]


async def test_invalid_event_is_refused_by_the_sink_and_not_retried(
    sink: WebhookSink, sender: WebhookSender
) -> None:
    body = {key: value for key, value in TRIGGER.items() if key != "routing_key"}
    result = await sender.deliver(receiver(sink.pagerduty_url), body)
    assert result.outcome == "permanent"
    assert (
        result.last_error
        == 'HTTP 400: {"status": "invalid event", "message": "Event object is invalid"}'
    )


async def test_connection_refused_backs_off_until_max_attempts(
    sender: WebhookSender, sleep: FakeSleep, attempts: AttemptLog
) -> None:
    url = f"http://127.0.0.1:{closed_port()}{PAGERDUTY_PATH}"
    result = await sender.deliver(receiver(url, max_attempts=4), TRIGGER)
    assert result.outcome == "gave_up"
    assert result.attempts == 4
    assert result.last_status is None
    assert result.last_error.startswith("ClientConnectorError")
    assert ROUTING_KEY not in result.last_error
    assert sleep.delays == [0.1, 0.2, 0.4]
    assert attempts.labels == ["retry_network"] * 4


async def test_retryable_status_gives_up_at_max_attempts(
    sink: WebhookSink, sender: WebhookSender, sleep: FakeSleep
) -> None:
    sink.fail_next(5, status=502)
    result = await sender.deliver(receiver(sink.pagerduty_url, max_attempts=2), TRIGGER)
    assert result.outcome == "gave_up"
    assert result.attempts == 2
    assert result.last_status == 502
    assert sleep.delays == [0.1]
    assert sink.received == []


async def test_zero_max_attempts_keeps_retrying_until_delivered(
    sink: WebhookSink, sender: WebhookSender, sleep: FakeSleep
) -> None:
    sink.fail_next(12, status=503)
    result = await sender.deliver(receiver(sink.pagerduty_url, max_attempts=0), TRIGGER)
    assert result.outcome == "delivered"
    assert result.attempts == 13
    # 0.1 doubling, capped at max_backoff = 5.0
    assert sleep.delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2] + [5.0] * 6
    assert len(sink.received) == 1


async def test_cancellation_propagates_out_of_a_retry_wait(
    sink: WebhookSink, session: aiohttp.ClientSession
) -> None:
    waiting = asyncio.Event()

    async def blocking_sleep(delay: float) -> None:
        waiting.set()
        await asyncio.Event().wait()

    sender = WebhookSender(session, sleep=blocking_sleep)
    sink.fail_next(1, status=503)
    task = asyncio.create_task(sender.deliver(receiver(sink.pagerduty_url), TRIGGER))
    await asyncio.wait_for(waiting.wait(), 5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- odd receivers


class OddReceiver:
    """A loopback server that echoes the request into a 400, hangs until released, or
    accepts a page and then stalls or drops the body of its answer."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/echo", self._echo)
        app.router.add_post("/hang", self._hang)
        app.router.add_post("/drop", self._drop)
        app.router.add_post("/accept-then-stall", self._accept_then_stall)
        app.router.add_post("/accept-then-drop", self._accept_then_drop)
        self.requests = 0
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _echo(self, request: web.Request) -> web.Response:
        text = f"{request.content_type} {await request.text()}"
        return web.Response(status=400, text=text)

    async def _hang(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(status=200)

    async def _drop(self, request: web.Request) -> web.Response:
        """Reads the page, then hangs up without a word."""
        self.requests += 1
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=200)

    async def _accepted_in_part(self, request: web.Request) -> web.StreamResponse:
        """202 with a body that promises 100 bytes and sends one."""
        self.requests += 1
        response = web.StreamResponse(status=202)
        response.content_length = 100
        await response.prepare(request)
        await response.write(b"{")
        return response

    async def _accept_then_stall(self, request: web.Request) -> web.StreamResponse:
        response = await self._accepted_in_part(request)
        await self.release.wait()
        return response

    async def _accept_then_drop(self, request: web.Request) -> web.StreamResponse:
        response = await self._accepted_in_part(request)
        assert request.transport is not None
        request.transport.close()
        return response


@pytest.fixture
async def odd() -> AsyncIterator[OddReceiver]:
    server = OddReceiver()
    await server.start()
    yield server
    await server.stop()


async def test_body_is_json_and_routing_key_never_reaches_errors(
    odd: OddReceiver, sender: WebhookSender
) -> None:
    result = await sender.deliver(receiver(odd.url + "/echo"), TRIGGER)
    assert result.outcome == "permanent"
    assert result.last_error.startswith('HTTP 400: application/json {"routing_key":"<redacted>"')
    assert ROUTING_KEY not in result.last_error


async def test_request_timeout_counts_as_unanswered(
    odd: OddReceiver, sender: WebhookSender, attempts: AttemptLog
) -> None:
    result = await sender.deliver(
        receiver(odd.url + "/hang", timeout=0.05, max_attempts=2), TRIGGER
    )
    assert (result.outcome, result.attempts, result.unanswered) == ("gave_up", 2, 2)
    # The second copy waited twice as long as the first.
    assert result.last_error == "SocketTimeoutError: no answer within 0.1s"
    assert attempts.labels == ["unanswered", "unanswered"]


async def test_a_slow_receiver_gets_at_most_max_unanswered_copies(
    sink: WebhookSink, sender: WebhookSender, sleep: FakeSleep, attempts: AttemptLog
) -> None:
    """It acts on each copy and answers after a second, beyond every wait (0.1, 0.2, 0.4 s):
    it used to get a copy after every timeout for as long as the page was retried."""
    sink.answer_after = 1.0
    result = await asyncio.wait_for(
        sender.deliver(receiver(sink.pagerduty_url, timeout=0.1), TRIGGER), 10.0
    )
    assert (result.outcome, result.attempts, result.unanswered) == ("unanswered", 3, 3)
    assert result.last_status is None
    assert result.last_error == "SocketTimeoutError: no answer within 0.4s"
    assert sink.requests_seen == len(sink.received) == 3
    assert attempts.labels == ["unanswered"] * 3
    assert sleep.delays == [0.1, 0.2]  # backs off between timeouts like any retry


async def test_a_receiver_slower_than_the_timeout_is_delivered_once_the_wait_has_grown(
    sink: WebhookSink, sender: WebhookSender, attempts: AttemptLog
) -> None:
    sink.answer_after = 0.4  # beyond the first wait (0.2 s), within the second (0.8 s)
    result = await asyncio.wait_for(
        sender.deliver(receiver(sink.pagerduty_url, timeout=0.2, multiplier=4.0), TRIGGER),
        10.0,
    )
    assert (result.outcome, result.attempts, result.unanswered) == ("delivered", 2, 1)
    assert sink.requests_seen == 2  # one copy too many, not one per timeout for ever
    assert attempts.labels == ["unanswered", "delivered"]


async def test_no_cap_on_unanswered_copies_when_max_unanswered_is_zero(
    sink: WebhookSink, sender: WebhookSender
) -> None:
    sink.answer_after = 1.0
    result = await asyncio.wait_for(
        sender.deliver(
            receiver(sink.pagerduty_url, timeout=0.05, max_unanswered=0, max_attempts=5),
            TRIGGER,
        ),
        10.0,
    )
    assert (result.outcome, result.attempts, result.unanswered) == ("gave_up", 5, 5)
    assert sink.requests_seen == 5


async def test_a_gateway_timeout_counts_as_unanswered(
    sink: WebhookSink, sender: WebhookSender, sleep: FakeSleep, attempts: AttemptLog
) -> None:
    """A proxy that gives up on a slow receiver answers 504 at once, having passed the page
    on: without counting those, a slow receiver behind a proxy got copies without end."""
    sink.fail_next(10, status=504)
    result = await sender.deliver(receiver(sink.pagerduty_url, max_attempts=10), TRIGGER)
    assert (result.outcome, result.attempts, result.unanswered) == ("unanswered", 3, 3)
    assert (result.last_status, result.last_error) == (
        504,
        'HTTP 504: {"status": "scripted failure"}',
    )
    assert attempts.labels == ["unanswered"] * 3
    assert sleep.delays == [0.1, 0.2]


async def test_a_connection_dropped_after_the_page_was_sent_counts_as_unanswered(
    odd: OddReceiver, sender: WebhookSender, attempts: AttemptLog
) -> None:
    result = await sender.deliver(
        receiver(odd.url + "/drop", max_unanswered=2, max_attempts=5), TRIGGER
    )
    assert (result.outcome, result.attempts, result.unanswered) == ("unanswered", 2, 2)
    assert result.last_error.startswith("ServerDisconnectedError")
    assert odd.requests == 2
    assert attempts.labels == ["unanswered", "unanswered"]


async def test_a_connect_that_times_out_is_retried_and_not_counted_as_a_copy(
    sender: WebhookSender, attempts: AttemptLog
) -> None:
    """A host that drops the connection request (here: a listener whose accept queue is
    full) never saw the page: it is retried like a refused connection, however often."""
    with black_hole() as port:
        url = f"http://127.0.0.1:{port}{PAGERDUTY_PATH}"
        result = await sender.deliver(
            receiver(url, timeout=0.1, max_unanswered=1, max_attempts=3), TRIGGER
        )
    assert (result.outcome, result.attempts, result.unanswered) == ("gave_up", 3, 0)
    assert result.last_error.startswith("ConnectionTimeoutError")
    assert attempts.labels == ["retry_network"] * 3


@pytest.mark.parametrize("path", ["/accept-then-stall", "/accept-then-drop"])
async def test_an_accepted_page_is_not_sent_again_when_the_answer_body_fails(
    odd: OddReceiver, sender: WebhookSender, attempts: AttemptLog, path: str
) -> None:
    """The status line decides: a 202 whose body then stalls past the timeout or breaks off
    was delivered, and retrying it would page twice."""
    result = await sender.deliver(receiver(odd.url + path, timeout=0.2, max_attempts=3), TRIGGER)
    assert (result.outcome, result.attempts, result.last_status) == ("delivered", 1, 202)
    assert odd.requests == 1
    assert attempts.labels == ["delivered"]


def test_doctests() -> None:
    import doctest

    import pipeline.notify.sender

    result = doctest.testmod(pipeline.notify.sender)
    assert result.attempted > 0
    assert result.failed == 0

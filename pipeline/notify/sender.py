"""Webhook delivery with retries: a pure retry policy and the async sender that follows it."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson

from pipeline.config import Receiver, RetryConfig

StatusClass = Literal["delivered", "retry", "permanent"]
Outcome = Literal["delivered", "permanent", "gave_up", "unanswered"]

# Labels passed to `on_attempt`, one per attempt, so /metrics can count retries by cause.
ATTEMPT_DELIVERED = "delivered"
ATTEMPT_RETRY_STATUS = "retry_status"
ATTEMPT_RETRY_NETWORK = "retry_network"
ATTEMPT_UNANSWERED = "unanswered"
ATTEMPT_PERMANENT = "permanent"

# Failures that happen before the request leaves: the receiver cannot have seen the page.
_NEVER_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,  # refused, DNS, TLS handshake
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerFingerprintMismatch,
    aiohttp.InvalidURL,
    ConnectionRefusedError,
)

GATEWAY_TIMEOUT = 504

# A receiver may ask for a long pause, but not for an unbounded one.
RETRY_AFTER_CAP_FACTOR = 10.0
_ERROR_SNIPPET = 200
_REDACTED = "<redacted>"


def classify(status: int) -> StatusClass:
    """What an HTTP status means for a delivery: done, try again, or never going to work.

    3xx counts as permanent: redirects are not followed, since a POST would turn into a GET.

    >>> classify(202), classify(503), classify(429), classify(400)
    ('delivered', 'retry', 'retry', 'permanent')
    """
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or 500 <= status < 600:
        return "retry"
    return "permanent"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None.

    A date in the past means no wait (0.0); anything unparseable is ignored (None).

    >>> parse_retry_after("7", 0.0), parse_retry_after("soon", 0.0)
    (7.0, None)
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 90.0)
    10.0
    >>> parse_retry_after("Thu Jan  1 00:01:40 1970", 90.0)  # asctime's form, also GMT
    10.0
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # asctime's form names no zone; HTTP-dates are all GMT
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, moment.timestamp() - now)


def backoff_delay(attempt: int, policy: RetryConfig, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based), before any Retry-After.

    The base is `initial_backoff * multiplier**(attempt-1)`, capped at `max_backoff`.
    Jitter is proportional: the base is scaled by a uniform factor in
    `[1 - jitter, 1 + jitter]`, so many senders failing together spread out; the result
    is then capped again, so a delay never exceeds `max_backoff`.
    """
    exponent = max(attempt, 1) - 1
    try:
        base = policy.initial_backoff * policy.multiplier**exponent
    except OverflowError:  # keep-retrying receivers reach huge attempt numbers
        base = policy.max_backoff
    if not math.isfinite(base):
        base = policy.max_backoff
    base = min(base, policy.max_backoff)
    if policy.jitter > 0.0:
        base *= 1.0 + policy.jitter * rng.uniform(-1.0, 1.0)
    return max(0.0, min(base, policy.max_backoff))


def answer_timeout(unanswered: int, policy: RetryConfig) -> float | None:
    """Seconds to wait for the answer once a page is sent, after `unanswered` earlier copies
    of it went unanswered; None means no limit (`timeout: 0`).

    A receiver that did not answer within `timeout` is unlikely to within the same time
    again, so each copy waits `multiplier` times longer than the last, up to `max_backoff`
    (or `timeout`, if that is longer): a receiver that is slow but working gets a chance to
    answer before `max_unanswered` copies are spent.

    >>> from pipeline.config import RetryConfig
    >>> policy = RetryConfig(timeout=10, multiplier=2, max_backoff=60)
    >>> [answer_timeout(n, policy) for n in range(5)]
    [10.0, 20.0, 40.0, 60.0, 60.0]
    """
    if policy.timeout <= 0:
        return None
    cap = max(policy.timeout, policy.max_backoff)
    try:
        grown = policy.timeout * policy.multiplier ** max(unanswered, 0)
    except OverflowError:
        return cap
    return min(grown, cap) if math.isfinite(grown) else cap


def never_sent(exc: BaseException) -> bool:
    """Whether a failed attempt ended before the request left, so the receiver cannot have
    seen it (a refused or timed-out connect); otherwise it may have acted on the page.

    >>> never_sent(ConnectionRefusedError()), never_sent(TimeoutError())
    (True, False)
    """
    return isinstance(exc, _NEVER_SENT)


def retry_delay(
    attempt: int, policy: RetryConfig, rng: random.Random, retry_after: float | None
) -> float:
    """Seconds to wait before the next attempt: the backoff, or a longer Retry-After.

    Retry-After is capped at `max_backoff * 10`, so one odd header cannot stall a receiver.
    """
    delay = backoff_delay(attempt, policy, rng)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_backoff * RETRY_AFTER_CAP_FACTOR))
    return delay


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How one body's delivery to one receiver ended."""

    outcome: Outcome
    attempts: int
    last_status: int | None
    last_error: str = ""
    #: Attempts sent that got no answer (timed out, connection lost, a proxy's 504): copies
    #: the receiver may have acted on. With a 2xx at the end, it may hold that many duplicates.
    unanswered: int = 0


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


def _status_error(status: int, content: bytes, secrets: tuple[str, ...]) -> str:
    # Redact before cutting, so a key straddling the cut cannot leak in part.
    text = _redact(content[: _ERROR_SNIPPET * 8].decode("utf-8", errors="replace"), secrets)
    snippet = " ".join(text.split())[:_ERROR_SNIPPET]
    return f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"


def _secrets_of(body: dict[str, Any]) -> tuple[str, ...]:
    key = body.get("routing_key")
    return (key,) if isinstance(key, str) and key else ()


class WebhookSender:
    """Posts JSON bodies to receivers, retrying network errors and retryable statuses."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        on_attempt: Callable[[str, str], None] | None = None,
    ) -> None:
        self.session = session
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.on_attempt = on_attempt

    def _count(self, receiver: Receiver, label: str) -> None:
        if self.on_attempt is not None:
            self.on_attempt(receiver.name, label)

    async def _post(
        self, receiver: Receiver, data: bytes, answer_within: float | None
    ) -> tuple[int, str | None, bytes]:
        # Connecting and answering are bounded apart, so that a connect that times out (the
        # page never left: retried like a refused connection) is told from an answer that
        # does not come (the receiver may have acted on it: counted against max_unanswered).
        # `sock_read` starts once the request is written; `total` only cuts off an answer
        # that trickles in. A timeout of 0 means no limit, as in aiohttp itself.
        connect = receiver.retry.timeout or None
        if connect is None or answer_within is None:
            timeout = aiohttp.ClientTimeout(total=None)
        else:
            timeout = aiohttp.ClientTimeout(
                total=connect + answer_within, connect=connect, sock_read=answer_within
            )
        async with self.session.post(
            receiver.url,
            data=data,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            status, retry_after = response.status, response.headers.get("Retry-After")
            # The status line decides the outcome; the body is read only for the error text
            # and to give the connection back to the pool. A receiver that accepts a page
            # (2xx) and then drops or stalls the body has still accepted it: retrying would
            # send it again.
            try:
                content = await response.read()
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                content = b""
            return status, retry_after, content

    async def deliver(self, receiver: Receiver, body: dict[str, Any]) -> DeliveryResult:
        """Deliver `body` to `receiver`; returns when delivered, refused, out of attempts, or
        sent `retry.max_unanswered` times without an answer.

        With `retry.max_attempts == 0` it retries until delivered (or cancelled), as long as
        the receiver answers or refuses the connection.
        Errors in the result never contain the body's routing key.
        """
        data = orjson.dumps(body)
        secrets = _secrets_of(body)
        policy = receiver.retry
        attempt = 0
        unanswered = 0
        last_status: int | None = None
        last_error = ""
        while True:
            attempt += 1
            retry_after: float | None = None
            answer_within = answer_timeout(unanswered, policy)
            try:
                status, retry_after_header, content = await self._post(
                    receiver, data, answer_within
                )
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                # TimeoutError is asyncio.TimeoutError on 3.11. CancelledError is not
                # among these, so shutdown interrupts a delivery at once.
                last_status = None
                last_error = _redact(_describe(exc, answer_within), secrets)
                if never_sent(exc):
                    self._count(receiver, ATTEMPT_RETRY_NETWORK)
                else:
                    unanswered += 1
                    self._count(receiver, ATTEMPT_UNANSWERED)
                    if 0 < policy.max_unanswered <= unanswered:
                        return DeliveryResult("unanswered", attempt, None, last_error, unanswered)
            else:
                last_status = status
                verdict = classify(status)
                if verdict == "delivered":
                    self._count(receiver, ATTEMPT_DELIVERED)
                    return DeliveryResult("delivered", attempt, status, "", unanswered)
                last_error = _status_error(status, content, secrets)
                if verdict == "permanent":
                    self._count(receiver, ATTEMPT_PERMANENT)
                    return DeliveryResult("permanent", attempt, status, last_error, unanswered)
                if status == GATEWAY_TIMEOUT:
                    # A proxy in front of the receiver passed the page on and stopped waiting:
                    # the receiver may have acted on it, as on a copy that timed out here.
                    unanswered += 1
                    self._count(receiver, ATTEMPT_UNANSWERED)
                    if 0 < policy.max_unanswered <= unanswered:
                        return DeliveryResult("unanswered", attempt, status, last_error, unanswered)
                else:
                    self._count(receiver, ATTEMPT_RETRY_STATUS)
                retry_after = parse_retry_after(retry_after_header, self.clock())
            if 0 < policy.max_attempts <= attempt:
                return DeliveryResult("gave_up", attempt, last_status, last_error, unanswered)
            # Every retriable failure backs off alike, a timeout included: the receiver that
            # did not answer may still be working on the copy it has.
            await self.sleep(retry_delay(attempt, policy, self.rng, retry_after))


def _describe(exc: BaseException, answer_within: float | None) -> str:
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) and not never_sent(exc) and answer_within is not None:
        return f"{name}: no answer within {answer_within:g}s"
    detail = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "no detail")
    return f"{name}: {detail}"

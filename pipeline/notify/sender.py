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
Outcome = Literal["delivered", "permanent", "gave_up"]

# Labels passed to `on_attempt`, one per attempt, so /metrics can count retries by cause.
ATTEMPT_DELIVERED = "delivered"
ATTEMPT_RETRY_STATUS = "retry_status"
ATTEMPT_RETRY_NETWORK = "retry_network"
ATTEMPT_PERMANENT = "permanent"

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

    async def _post(self, receiver: Receiver, data: bytes) -> tuple[int, str | None, bytes]:
        # A configured timeout of 0 means "no per-request limit", as in aiohttp itself.
        timeout = aiohttp.ClientTimeout(total=receiver.retry.timeout or None)
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
        """Deliver `body` to `receiver`; returns when delivered, refused, or out of attempts.

        With `retry.max_attempts == 0` it retries until delivered (or cancelled).
        Errors in the result never contain the body's routing key.
        """
        data = orjson.dumps(body)
        secrets = _secrets_of(body)
        policy = receiver.retry
        attempt = 0
        last_status: int | None = None
        last_error = ""
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                status, retry_after_header, content = await self._post(receiver, data)
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                # TimeoutError is asyncio.TimeoutError on 3.11. CancelledError is not
                # among these, so shutdown interrupts a delivery at once.
                last_status = None
                detail = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "no detail")
                last_error = _redact(f"{type(exc).__name__}: {detail}", secrets)
                self._count(receiver, ATTEMPT_RETRY_NETWORK)
            else:
                last_status = status
                verdict = classify(status)
                if verdict == "delivered":
                    self._count(receiver, ATTEMPT_DELIVERED)
                    return DeliveryResult("delivered", attempt, status, "")
                last_error = _status_error(status, content, secrets)
                if verdict == "permanent":
                    self._count(receiver, ATTEMPT_PERMANENT)
                    return DeliveryResult("permanent", attempt, status, last_error)
                self._count(receiver, ATTEMPT_RETRY_STATUS)
                retry_after = parse_retry_after(retry_after_header, self.clock())
            if 0 < policy.max_attempts <= attempt:
                return DeliveryResult("gave_up", attempt, last_status, last_error)
            await self.sleep(retry_delay(attempt, policy, self.rng, retry_after))

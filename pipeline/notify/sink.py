"""A local webhook receiver on loopback, for the demo and for tests: records what it accepts."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

PAGERDUTY_PATH = "/v2/enqueue"
ALERTMANAGER_PATH = "/alertmanager"


class WebhookSink:
    """An HTTP server on 127.0.0.1 that answers like PagerDuty and Alertmanager receivers.

    `fail_next` scripts failures: each scripted request is answered with its status
    and not recorded, so tests can watch the sender retry against a real socket.
    `answer_after` makes it a slow receiver: it records a page as it arrives (acts on it)
    and answers that many seconds later, so a sender that stops waiting sends copies.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        on_receive: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.on_receive = on_receive
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.requests_seen = 0
        #: Seconds between accepting a page and answering (0: at once).
        self.answer_after = 0.0
        self._failures: deque[tuple[int, str | None]] = deque()
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:41234 (only once started)."""
        if self._bound_port is None:
            raise RuntimeError("WebhookSink is not started")
        return f"http://{self.host}:{self._bound_port}"

    @property
    def pagerduty_url(self) -> str:
        """The URL to give a `pagerduty` receiver."""
        return self.url + PAGERDUTY_PATH

    @property
    def alertmanager_url(self) -> str:
        """The URL to give an `alertmanager` receiver."""
        return self.url + ALERTMANAGER_PATH

    async def start(self) -> None:
        """Bind and serve; with port 0 the OS picks a free port, read it from `url`."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post(PAGERDUTY_PATH, self._pagerduty)
        app.router.add_post(ALERTMANAGER_PATH, self._alertmanager)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._bound_port = int(address[1])

    async def stop(self) -> None:
        """Close the server; safe to call twice."""
        runner, self._runner = self._runner, None
        self._bound_port = None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> WebhookSink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def fail_next(self, n: int, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next `n` requests with `status` (and Retry-After), without recording them.

        Calls queue up, so 2 x 503 followed by 1 x 429 is two calls.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        self._failures.extend([(status, retry_after)] * n)

    # The timeout parameter is the helper's point: tests read better with it inline.
    async def wait_for(
        self,
        count: int,
        timeout: float,  # noqa: ASYNC109
    ) -> list[tuple[str, dict[str, Any]]]:
        """Wait until at least `count` bodies were accepted; raises TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.received)

    async def _accept(self, request: web.Request) -> dict[str, Any] | web.Response:
        self.requests_seen += 1
        if self._failures:
            status, retry_after = self._failures.popleft()
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            return web.json_response({"status": "scripted failure"}, status=status, headers=headers)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response(
                {"status": "invalid event", "message": "body is not JSON"}, status=400
            )
        if not isinstance(body, dict):
            return web.json_response(
                {"status": "invalid event", "message": "body is not a JSON object"}, status=400
            )
        return body

    def _record(self, path: str, body: dict[str, Any]) -> None:
        self.received.append((path, body))
        self._arrived.set()
        if self.on_receive is not None:
            self.on_receive(path, body)

    async def _pagerduty(self, request: web.Request) -> web.Response:
        accepted = await self._accept(request)
        if isinstance(accepted, web.Response):
            return accepted
        # Like PagerDuty, refuse an event without the fields every action needs.
        if not accepted.get("routing_key") or accepted.get("event_action") not in (
            "trigger",
            "acknowledge",
            "resolve",
        ):
            return web.json_response(
                {"status": "invalid event", "message": "Event object is invalid"}, status=400
            )
        self._record(PAGERDUTY_PATH, accepted)
        await self._stall()
        return web.json_response(
            {
                "status": "success",
                "message": "Event processed",
                "dedup_key": accepted.get("dedup_key"),
            },
            status=202,
        )

    async def _alertmanager(self, request: web.Request) -> web.Response:
        accepted = await self._accept(request)
        if isinstance(accepted, web.Response):
            return accepted
        self._record(ALERTMANAGER_PATH, accepted)
        await self._stall()
        return web.json_response({"status": "success"}, status=200)

    async def _stall(self) -> None:
        if self.answer_after > 0:
            await asyncio.sleep(self.answer_after)

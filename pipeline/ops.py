"""The operations endpoint: /metrics (Prometheus text), /healthz, /readyz and the silences API."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.correlate.silence import Matcher, SilenceRule, parse_matcher
from pipeline.metrics import Metrics
from pipeline.silence_limits import MAX_MATCHERS
from pipeline.silences import SilenceError, SilenceStore, rule_from_api, rule_to_api

OPEN_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})  # never behind `token`

#: The largest silences request body; the per-field limits are in pipeline.correlate.silence.
MAX_BODY_BYTES = 256 * 1024


class OpsServer:
    """A small aiohttp server; binds where the config says (loopback by default).

    The silences API follows Alertmanager's v2 paths and field names:
    `GET/POST /api/v2/silences`, `GET/DELETE /api/v2/silence/{id}`. With a `token`, every
    request but those to `OPEN_PATHS` (/metrics, /healthz, /readyz, for scrapers and probes)
    must carry `Authorization: Bearer <token>` (401 otherwise).
    """

    def __init__(
        self,
        metrics: Metrics,
        ready: Callable[[], bool],
        host: str,
        port: int,
        silences: Callable[[], SilenceStore | None] = lambda: None,
        clock: Callable[[], float] = time.time,
        token: str | None = None,
    ) -> None:
        if token is not None and (not token or token != token.strip()):
            raise ValueError("a token must be non-empty without surrounding white space")
        self.metrics = metrics
        self._token = None if token is None else token.encode()
        self._ready = ready
        self._silences = silences
        self._clock = clock
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Start listening; `port` 0 picks a free one, readable afterwards from `port`."""
        app = web.Application(middlewares=[self._authorize])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/api/v2/silences", self._list_silences)
        app.router.add_post("/api/v2/silences", self._create_silence)
        app.router.add_get("/api/v2/silence/{id}", self._get_silence)
        app.router.add_delete("/api/v2/silence/{id}", self._expire_silence)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _authorize(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        # An allow-list, not a prefix: however a path is spelt, only these three are open.
        if self._token is not None and request.path not in OPEN_PATHS:
            # RFC 6750: "Bearer", in any case (RFC 7235), then the token after white space
            scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
            # surrogateescape: a header that is not UTF-8 fails the comparison, not the server
            given = credentials.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer":
                given = b""
            if not hmac.compare_digest(given, self._token):
                return web.json_response(
                    {"error": "the silences API needs 'Authorization: Bearer <http.token>'"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="quietpager"'},
                )
        return await handler(request)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    def _store(self) -> SilenceStore:
        store = self._silences()
        if store is None:
            raise web.HTTPServiceUnavailable(text="silences are not loaded yet")
        return store

    async def _list_silences(self, request: web.Request) -> web.Response:
        store = self._store()
        now = self._clock()
        texts = request.query.getall("filter", [])
        if len(texts) > MAX_MATCHERS:
            return _bad_request(f"filter: at most {MAX_MATCHERS} filters (got {len(texts)})")
        try:
            wanted = [parse_matcher(text) for text in texts]
        except ValueError as exc:
            return web.json_response({"error": f"filter: {exc}"}, status=400)
        rules = [r for r in store.silencer.rules if _matches_filter(r, wanted)]
        return web.json_response([rule_to_api(r, now) for r in rules])

    async def _get_silence(self, request: web.Request) -> web.Response:
        rule = self._store().silencer.get(request.match_info["id"])
        if rule is None:
            raise web.HTTPNotFound(text="no such silence")
        return web.json_response(rule_to_api(rule, self._clock()))

    async def _create_silence(self, request: web.Request) -> web.Response:
        store = self._store()
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _bad_request(f"the body has at most {MAX_BODY_BYTES} bytes")
        # Read at most one byte past the limit, so a chunked body cannot grow without bound.
        raw = bytearray()
        while len(raw) <= MAX_BODY_BYTES:
            chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return _bad_request(f"the body has at most {MAX_BODY_BYTES} bytes")
        try:
            # orjson refuses nesting deeper than 1024 with an error; `json` raised
            # RecursionError (a 500) on a body of nested brackets.
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _bad_request(f"the body is not JSON ({exc})")
        try:
            rule = rule_from_api(body, self._clock())
        except SilenceError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if isinstance(body, dict) and body.get("id"):  # an update, as Alertmanager's
            if store.is_config(rule.id):
                return web.json_response(
                    {"error": "this silence comes from the config file; edit the file"},
                    status=409,
                )
            if store.silencer.get(rule.id) is None:
                return web.json_response({"error": "silence not found"}, status=404)
        await store.create(rule)
        return web.json_response({"silenceID": rule.id})

    async def _expire_silence(self, request: web.Request) -> web.Response:
        store = self._store()
        silence_id = request.match_info["id"]
        if store.is_config(silence_id):
            return web.json_response(
                {"error": "this silence comes from the config file; edit the file"}, status=409
            )
        if not await store.expire(silence_id, self._clock()):
            raise web.HTTPNotFound(text="no such silence")
        return web.json_response({"status": "expired"})


def _bad_request(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


def _matches_filter(rule: SilenceRule, wanted: list[Matcher]) -> bool:
    """Alertmanager's `filter` on listed silences: each filter matcher must match the labels
    the silence's equality matchers name (`service="db"` finds the silences on that service).
    """
    labels = {m.name: m.value for m in rule.matchers if m.op == "="}
    return all(f.matches(labels) for f in wanted)

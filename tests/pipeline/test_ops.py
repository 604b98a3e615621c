"""The operations endpoint: what it answers, and who may use the silences API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from pipeline.metrics import Metrics
from pipeline.ops import OpsServer

TOKEN = "s3cret-t0ken"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# No silence store is loaded in these servers, so a request the token lets through is
# answered 503 ("not loaded yet") by the API itself, and one it stops is answered 401.
@pytest.mark.parametrize(
    ("token", "method", "path", "authorization", "status"),
    [
        # without a token everything is open
        (None, "GET", "/api/v2/silences", None, 503),
        (None, "POST", "/api/v2/silences", None, 503),
        (None, "DELETE", "/api/v2/silence/x", None, 503),
        # with one, every silences API call needs it, reads included
        (TOKEN, "GET", "/api/v2/silences", None, 401),
        (TOKEN, "GET", "/api/v2/silence/x", None, 401),
        (TOKEN, "POST", "/api/v2/silences", None, 401),
        (TOKEN, "DELETE", "/api/v2/silence/x", None, 401),
        (TOKEN, "POST", "/api/v2/silences", f"Bearer {TOKEN}x", 401),
        (TOKEN, "POST", "/api/v2/silences", f"Bearer {TOKEN[:-1]}", 401),
        (TOKEN, "POST", "/api/v2/silences", TOKEN, 401),  # no scheme
        (TOKEN, "POST", "/api/v2/silences", f"Basic {TOKEN}", 401),
        (TOKEN, "GET", "/api/v2/silences", f"Bearer {TOKEN}", 503),
        (TOKEN, "POST", "/api/v2/silences", f"Bearer {TOKEN}", 503),
        (TOKEN, "DELETE", "/api/v2/silence/x", f"Bearer {TOKEN}", 503),
        (TOKEN, "GET", "/api/v2/silences", f"bearer {TOKEN}", 503),  # the scheme's case is free
        (TOKEN, "GET", "/api/v2/silences", f"Bearer   {TOKEN}", 503),
        (TOKEN, "GET", "/api/v2/silences", f"Bearer {TOKEN.upper()}", 401),  # the token's is not
        (TOKEN, "GET", "/api/v2/silences", "Bearer ", 401),
        (TOKEN, "GET", "/api/v2/silences", "Bearer", 401),
        (TOKEN, "GET", "/api/v2/silences", f"{TOKEN} Bearer", 401),
        # scrapers and probes never need it
        (TOKEN, "GET", "/metrics", None, 200),
        (TOKEN, "GET", "/healthz", None, 200),
        (TOKEN, "GET", "/readyz", None, 503),  # not ready: the lambda below says so
        # every other path asks for the token, however it is spelt; with it, an unknown one
        # is a 404
        (TOKEN, "GET", "//api/v2/silences", None, 401),
        (TOKEN, "GET", "/%61pi/v2/silences", None, 401),
        (TOKEN, "GET", "/nope", None, 401),
        (TOKEN, "GET", "/nope", f"Bearer {TOKEN}", 404),
        (None, "GET", "/nope", None, 404),
    ],
)
async def test_silences_api_token(
    session: aiohttp.ClientSession,
    token: str | None,
    method: str,
    path: str,
    authorization: str | None,
    status: int,
) -> None:
    ops = OpsServer(Metrics.create(), lambda: False, "127.0.0.1", 0, token=token)
    await ops.start()
    try:
        headers = {} if authorization is None else {"Authorization": authorization}
        url = f"http://127.0.0.1:{ops.port}{path}"
        async with session.request(method, url, headers=headers, json={}) as response:
            assert response.status == status
            if status == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "http.token" in (await response.json())["error"]
    finally:
        await ops.stop()


@pytest.mark.parametrize("token", ["", " ", " t0ken", "t0ken\n"])
def test_a_token_no_header_could_carry_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="non-empty without surrounding white space"):
        OpsServer(Metrics.create(), lambda: True, "127.0.0.1", 0, token=token)


async def test_a_header_that_is_not_utf8_is_refused_not_a_server_error() -> None:
    """`Authorization: Bearer \\xff\\xfe` made the server fail with a 500."""
    ops = OpsServer(Metrics.create(), lambda: False, "127.0.0.1", 0, token=TOKEN)
    await ops.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", ops.port)
        writer.write(
            b"GET /api/v2/silences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
            b"Connection: close\r\n\r\n"
        )
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    finally:
        await ops.stop()
    assert status_line.split()[1] == b"401"

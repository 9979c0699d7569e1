"""The one HTTP client: every call is bounded by a timeout, errors map onto the exception tree."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from supervisor.errors import HttpStatusError, Unavailable
from transport.client import AsyncClient, SyncClient


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that accepts connections and never answers (a frozen peer)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


def test_an_async_call_to_a_peer_that_never_answers_times_out(silent_port: int) -> None:
    async def go() -> float:
        async with AsyncClient(f"http://127.0.0.1:{silent_port}", timeout_s=0.5) as client:
            began = time.monotonic()
            with pytest.raises(Unavailable):
                await client.call("GET", "/status/health")
            return time.monotonic() - began

    assert asyncio.run(go()) < 5.0


def test_a_sync_call_to_a_peer_that_never_answers_times_out(silent_port: int) -> None:
    began = time.monotonic()
    with pytest.raises(Unavailable):
        SyncClient(f"http://127.0.0.1:{silent_port}", timeout_s=0.5).call("GET", "/status/health")
    assert time.monotonic() - began < 5.0


def test_error_statuses_and_retries() -> None:
    from aiohttp import web

    from tests.harness.http import serve_app

    hits: list[int] = []

    async def flaky(_: web.Request) -> web.Response:
        hits.append(1)
        if len(hits) < 3:
            return web.json_response({"error": "later"}, status=503)
        return web.json_response({"ok": True})

    async def bad(_: web.Request) -> web.Response:
        return web.json_response({"error": "no such thing"}, status=404)

    app = web.Application()
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/bad", bad)
    with serve_app(app) as url:
        client = SyncClient(url, timeout_s=5)
        assert client.call("GET", "/flaky", retries=3) == {"ok": True}
        assert len(hits) == 3
        with pytest.raises(HttpStatusError) as err:
            client.call("GET", "/bad", retries=3)
        assert err.value.status == 404 and "no such thing" in err.value.message

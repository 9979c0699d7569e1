"""HTTP for tests: the one request helper, and servers run from a thread of the test process (an
aiohttp app such as the Overlord's, or an ``http.server`` handler)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from aiohttp import web

from tests.harness.services import free_port
from transport.client import SyncClient


class Answer(NamedTuple):
    status: int
    body: Any  # the decoded JSON, else the text; None when empty
    headers: Mapping[str, str]


def request(
    method: str,
    url: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Answer:
    """One request, with a JSON ``body`` or raw ``data`` and any headers; answers of every status
    (``Unavailable`` when there is none), by the project's one client (``transport.client``)."""
    answer = SyncClient(timeout_s=timeout).send(method, url, body, headers=headers, raw=data)
    return Answer(answer.status, answer.body, answer.headers)


@contextlib.contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port from a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def serve_app(app: web.Application) -> Iterator[str]:
    """The aiohttp ``app`` served on a free loopback port from a thread of its own; yields the base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

"""Test-only fault hooks of the Overlord, for the fault-injection suite (``tests/e2e/faults.py``).

Off unless their environment variable is set; never set one in production.

``OVERLORD_FAULT_DROP_PUBLISH_RESPONSE_EVERY=N``: every N-th publish (``segmentTransactionalInsert``)
that the metadata store answered ``ok`` is committed as usual, but the connection is then dropped
without an answer, as if the response were lost on the network. The task must retry and recognise
its own commit.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable

from aiohttp import web

logger = logging.getLogger(__name__)

DROP_PUBLISH_RESPONSE_EVERY = "OVERLORD_FAULT_DROP_PUBLISH_RESPONSE_EVERY"
ACTION_PATH = "/druid/indexer/v1/action"
#: What the Overlord logs each time it drops a response (the suite counts these lines).
DROP_MARKER = "FAULT INJECTION: dropped the response to a committed publish"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _committed(response: web.StreamResponse) -> bool:
    if not isinstance(response, web.Response) or response.status != 200 or response.body is None:
        return False
    body = response.body
    if not isinstance(body, bytes | bytearray):
        return False
    try:
        result = json.loads(body).get("result", {})
    except (ValueError, AttributeError):
        return False
    return isinstance(result, dict) and result.get("kind") == "ok"


def drop_publish_responses(every: int) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """A middleware that drops the connection after every ``every``-th committed publish."""
    committed = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal committed
        response = await handler(request)
        if request.method != "POST" or request.path != ACTION_PATH or not _committed(response):
            return response
        committed += 1
        if committed % every == 0 and request.transport is not None:
            logger.warning("%s (publish #%d)", DROP_MARKER, committed)
            request.transport.abort()
        return response

    return middleware


def install(app: web.Application) -> None:
    """Add the hooks whose environment variable is set (none by default)."""
    raw = os.environ.get(DROP_PUBLISH_RESPONSE_EVERY, "").strip()
    if not raw:
        return
    try:
        every = int(raw)
    except ValueError:
        logger.error("%s=%r is not an integer; fault hook not installed", DROP_PUBLISH_RESPONSE_EVERY, raw)
        return
    if every > 0:
        logger.warning(
            "TEST-ONLY fault hook on: every %d-th committed publish loses its response", every
        )
        app.middlewares.append(drop_publish_responses(every))

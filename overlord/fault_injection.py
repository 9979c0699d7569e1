"""Test-only fault hooks of the Overlord, for the fault-injection suite (``tests/e2e/faults.py``).

Off by default; never turn one on in production.

``OVERLORD_FAULT_DROP_PUBLISH_RESPONSE_EVERY=N`` (the setting ``fault_drop_publish_response_every``):
every N-th publish (``segmentTransactionalInsert``) that the metadata store answered ``ok`` is
committed as usual, but the connection is then dropped without an answer, as if the response were
lost on the network. The task must retry and recognise its own commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

logger = logging.getLogger(__name__)

DROP_PUBLISH_RESPONSE_EVERY = "OVERLORD_FAULT_DROP_PUBLISH_RESPONSE_EVERY"
ACTION_PATH = "/druid/indexer/v1/action"
#: What the Overlord logs each time it drops a response (the suite counts these lines).
DROP_MARKER = "FAULT INJECTION: dropped the response to a committed publish"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _committed(response: web.StreamResponse) -> bool:
    if not isinstance(response, web.Response) or response.status != 200:
        return False
    body = response.body
    if not isinstance(body, bytes | bytearray):
        return False
    try:
        result = json.loads(body).get("result", {})
    except (ValueError, AttributeError):
        return False
    return isinstance(result, dict) and result.get("kind") == "ok"


def drop_publish_responses(every: int) -> Middleware:
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


def install(app: web.Application, drop_publish_response_every: int) -> None:
    """Add the hooks that are switched on (none by default)."""
    if drop_publish_response_every > 0:
        logger.warning(
            "TEST-ONLY fault hook on: every %d-th committed publish loses its response",
            drop_publish_response_every,
        )
        app.middlewares.append(drop_publish_responses(drop_publish_response_every))

"""Access control for the Overlord API: HTTP basic users and bearer tokens with roles.

Roles: ``read`` may GET; ``admin`` may do anything a user may; ``cluster`` (the
cluster token that MiddleManagers and tasks present) is the only role allowed on
the worker and task-action paths. With nothing configured, the API is open.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from supervisor.errors import IndexerError
from transport.auth import ADMIN, CLUSTER, READ, ROLES, AuthConfig

__all__ = ["ADMIN", "CLUSTER", "READ", "ROLES", "AuthConfig", "Forbidden", "Unauthorized", "middleware"]

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/status/health"})
INTERNAL_PREFIXES = (
    "/druid/indexer/v1/workers/register",
    "/druid/indexer/v1/workers/heartbeat",
    "/druid/indexer/v1/action",
)
# the embedded Broker's query paths: a query is a POST that only reads, open to the read role
QUERY_PREFIX = "/druid/v2"


class Unauthorized(IndexerError):
    status = 401


class Forbidden(IndexerError):
    status = 403


def _allowed(role: str, method: str, path: str) -> bool:
    if path.startswith(INTERNAL_PREFIXES):
        return role == CLUSTER
    if role in (ADMIN, CLUSTER):
        return True
    if path == QUERY_PREFIX or path.startswith(QUERY_PREFIX + "/"):
        return True
    return method in ("GET", "HEAD", "OPTIONS")


def middleware(config: AuthConfig) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if config.enabled and request.path not in OPEN_PATHS:
            role = config.role_of(request.headers.get("Authorization"))
            if role is None:
                raise Unauthorized("authentication required: use HTTP basic or a bearer token")
            if not _allowed(role, request.method, request.path):
                raise Forbidden(f"role '{role}' may not {request.method} {request.path}")
        response: web.StreamResponse = await handler(request)
        return response

    return check

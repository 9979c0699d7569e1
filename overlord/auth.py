"""Access control for the Overlord API: HTTP basic users and bearer tokens with roles.

Roles: ``read`` may GET; ``admin`` may do anything a user may; ``cluster`` (the
cluster token that MiddleManagers and tasks present) is the only role allowed on
the worker and task-action paths. With nothing configured, the API is open.
"""

from __future__ import annotations

import base64
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from supervisor.errors import IndexerError

logger = logging.getLogger(__name__)

READ = "read"
ADMIN = "admin"
CLUSTER = "cluster"
ROLES = (READ, ADMIN)

OPEN_PATHS = frozenset({"/status/health"})
INTERNAL_PREFIXES = (
    "/druid/indexer/v1/workers/register",
    "/druid/indexer/v1/workers/heartbeat",
    "/druid/indexer/v1/action",
)


class Unauthorized(IndexerError):
    status = 401


class Forbidden(IndexerError):
    status = 403


@dataclass(frozen=True)
class AuthConfig:
    users: dict[str, tuple[str, str]]  # name -> (password, role)
    tokens: dict[str, str]  # token -> role
    cluster_token: str

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens or self.cluster_token)

    @classmethod
    def parse(cls, users: str, tokens: str, cluster_token: str) -> AuthConfig:
        parsed_users: dict[str, tuple[str, str]] = {}
        for entry in filter(None, (e.strip() for e in users.split(","))):
            parts = entry.split(":")
            if len(parts) != 3 or parts[2] not in ROLES or not parts[0] or not parts[1]:
                raise ValueError(f"auth_users: entries are name:password:role with role in {ROLES}")
            parsed_users[parts[0]] = (parts[1], parts[2])
        parsed_tokens: dict[str, str] = {}
        for entry in filter(None, (e.strip() for e in tokens.split(","))):
            token, _, role = entry.rpartition(":")
            if not token or role not in ROLES:
                raise ValueError(f"auth_tokens: entries are token:role with role in {ROLES}")
            parsed_tokens[token] = role
        return cls(parsed_users, parsed_tokens, cluster_token)

    def role_of(self, header: str | None) -> str | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            if self.cluster_token and hmac.compare_digest(value, self.cluster_token):
                return CLUSTER
            for token, role in self.tokens.items():
                if hmac.compare_digest(value, token):
                    return role
            return None
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            user = self.users.get(name)
            if user is not None and hmac.compare_digest(password, user[0]):
                return user[1]
        return None


def _allowed(role: str, method: str, path: str) -> bool:
    if path.startswith(INTERNAL_PREFIXES):
        return role == CLUSTER
    if role in (ADMIN, CLUSTER):
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

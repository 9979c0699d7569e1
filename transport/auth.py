"""Who a request is: HTTP basic users and bearer tokens with roles (the scheme every process serves).

Roles: ``read``, ``admin``, and ``cluster`` (the cluster token that MiddleManagers, tasks and the
Broker present). What each role may do is the serving process's rule (``overlord/auth.py``,
``broker/api.py``); with nothing configured, access control is off.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

READ = "read"
ADMIN = "admin"
CLUSTER = "cluster"
ROLES = (READ, ADMIN)


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

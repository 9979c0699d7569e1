"""Overlord settings: flags, environment (``OVERLORD_*``) or an optional file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_metadata_url() -> str:
    return f"sqlite:///{Path('var').absolute() / 'metadata.db'}"


class OverlordSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OVERLORD_", extra="forbid", frozen=True)

    metadata_url: str = Field(default_factory=default_metadata_url)
    deep_storage: Path = Path("var/deep-storage")
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # the address tasks and workers use to reach this Overlord (defaults to host:port)
    advertised_url: str | None = None
    worker_timeout_s: float = Field(default=15.0, gt=0)
    task_chat_timeout_s: float = Field(default=10.0, gt=0)
    max_request_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    log_level: str = "INFO"
    log_format: str = "text"
    # Access control (off when all three are empty). Users: "name:password:role,...";
    # tokens: "token:role,..."; roles: read (GET only) or admin. The cluster token is what
    # MiddleManagers and tasks present; only it opens the worker and task-action paths.
    auth_users: SecretStr = SecretStr("")
    auth_tokens: SecretStr = SecretStr("")
    cluster_token: SecretStr = SecretStr("")

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v not in ("text", "json"):
            raise ValueError("must be 'text' or 'json'")
        return v

    def url(self) -> str:
        return self.advertised_url or f"http://{self.host}:{self.port}"

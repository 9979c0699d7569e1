"""MiddleManager settings: flags, environment (``MIDDLEMANAGER_*``) or an optional file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MiddleManagerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIDDLEMANAGER_", extra="forbid", frozen=True)

    overlord: str = "http://127.0.0.1:8090"
    host: str = "127.0.0.1"
    port: int = Field(default=8091, ge=1, le=65535)
    capacity: int = Field(default=2, ge=1)
    task_dir: Path = Path("var/tasks")
    heartbeat_s: float = Field(default=1.0, gt=0)
    # on SIGTERM: how long running tasks get to hand off before they are killed
    shutdown_timeout_s: float = Field(default=60.0, ge=0)
    log_level: str = "INFO"
    log_format: str = "text"
    # presented to the Overlord and required by this worker's tasks' control paths
    cluster_token: SecretStr = SecretStr("")

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, v: str) -> str:
        if v not in ("text", "json"):
            raise ValueError("must be 'text' or 'json'")
        return v

    @field_validator("overlord")
    @classmethod
    def _overlord(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8090")
        return v.rstrip("/")

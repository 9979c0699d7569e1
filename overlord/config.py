"""Overlord settings: flags, environment (``OVERLORD_*``) or an optional file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from supervisor.deep_storage import to_uri
from supervisor.errors import InvalidInput
from supervisor.logs import LogFormat, LogLevel


def default_metadata_url() -> str:
    return f"sqlite:///{Path('var').absolute() / 'metadata.db'}"


class OverlordSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OVERLORD_", extra="forbid", frozen=True)

    metadata_url: str = Field(
        default_factory=default_metadata_url,
        description="SQLAlchemy URL of the metadata store (sqlite:///... or postgresql+psycopg2://...)",
    )
    deep_storage: str = Field(
        default="var/deep-storage",
        description=(
            "deep storage: a URI (file:///dir, a directory every MiddleManager sees at that path) or a "
            "local directory, made a file:// URI; handed to the tasks in their task specs"
        ),
    )
    host: str = Field(default="127.0.0.1", description="listen address (0.0.0.0 in a container)")
    port: int = Field(default=8090, ge=0, le=65535, description="listen port")
    # the address tasks and workers use to reach this Overlord (defaults to host:port)
    advertised_url: str | None = Field(
        default=None, description="URL workers and tasks use to reach this Overlord"
    )
    worker_timeout_s: float = Field(
        default=15.0, gt=0, description="seconds without a heartbeat before a worker is lost"
    )
    task_chat_timeout_s: float = Field(default=10.0, gt=0, description="timeout of one call to a task")

    @field_validator("deep_storage", mode="before")
    @classmethod
    def _deep_storage_uri(cls, value: Any) -> str:
        try:
            return to_uri(str(value))
        except InvalidInput as e:
            raise ValueError(e.message) from e

    max_request_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="largest request body")
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = Field(default="text", description="text or json (one JSON object per line)")
    # Access control (off when all three are empty). Users: "name:password:role,...";
    # tokens: "token:role,..."; roles: read (GET only) or admin. The cluster token is what
    # MiddleManagers and tasks present; only it opens the worker and task-action paths.
    auth_users: SecretStr = Field(
        default=SecretStr(""), description="users allowed on the API: name:password:role,... (read|admin)"
    )
    auth_tokens: SecretStr = Field(default=SecretStr(""), description="bearer tokens: token:role,...")
    cluster_token: SecretStr = Field(
        default=SecretStr(""), description="token MiddleManagers and tasks present (the same on each)"
    )
    kafka_stores_dir: Path | None = Field(
        default=None,
        description="the only directory the supervisors read the trust and key stores a spec's "
        "consumerProperties name (ssl.truststore.location, ssl.keystore.location); unset: stores only inline",
    )
    embedded_broker: bool = Field(
        default=True,
        description="serve the Broker's query API (/druid/v2, /druid/v2/sql) in this process too",
    )
    # TEST ONLY, for the fault-injection suite (tests/e2e/faults.py); see overlord/fault_injection.py
    fault_drop_publish_response_every: int = Field(
        default=0, ge=0, description="TEST ONLY: drop the answer to every N-th committed publish (0: never)"
    )

    @field_validator("metadata_url")
    @classmethod
    def _metadata_url(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(v)
        except ArgumentError as e:
            raise ValueError(f"not a SQLAlchemy URL (postgresql+psycopg2://user:pw@host/db): {e}") from e
        return v

    def url(self) -> str:
        return self.advertised_url or f"http://{self.host}:{self.port}"

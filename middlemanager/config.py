"""MiddleManager settings: flags, environment (``MIDDLEMANAGER_*``) or an optional file."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from supervisor.logs import LogFormat, LogLevel

WILDCARDS = ("0.0.0.0", "::", "")


class MiddleManagerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIDDLEMANAGER_", extra="forbid", frozen=True)

    overlord: str = Field(default="http://127.0.0.1:8090", description="URL of the Overlord")
    host: str = Field(
        default="127.0.0.1",
        description="address this worker and its tasks listen on (0.0.0.0 in a container)",
    )
    advertised_host: str | None = Field(
        default=None,
        description="address the Overlord uses to reach this worker's tasks; default: host, or this "
        "machine's IP address when host is 0.0.0.0",
    )
    port: int = Field(default=8091, ge=1, le=65535, description="worker port")
    capacity: int = Field(default=2, ge=1, description="task slots")
    task_dir: Path = Field(default=Path("var/tasks"), description="where tasks keep their files")
    heartbeat_s: float = Field(
        default=1.0,
        gt=0,
        description="seconds between heartbeats; the Overlord holds each up to this long and answers "
        "at once when it assigns a task here (long poll)",
    )
    warm_peons: int = Field(
        default=1,
        ge=0,
        description="task processes kept started and waiting, so that a new task starts without "
        "importing anything (0: start every task cold)",
    )
    # on SIGTERM: how long running tasks get to hand off before they are killed
    shutdown_timeout_s: float = Field(
        default=60.0, ge=0, description="on SIGTERM, seconds the running tasks get to hand back"
    )
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = Field(default="text", description="text or json (one JSON object per line)")
    kafka_stores_dir: Path | None = Field(
        default=None,
        description="the only directory tasks read the trust and key stores a spec's consumerProperties "
        "name (ssl.truststore.location, ssl.keystore.location); unset: stores only inline",
    )
    # presented to the Overlord and required by this worker's tasks' control paths
    cluster_token: SecretStr = Field(
        default=SecretStr(""), description="token presented to the Overlord (its OVERLORD_CLUSTER_TOKEN)"
    )

    @field_validator("overlord")
    @classmethod
    def _overlord(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8090")
        return v.rstrip("/")

    def advertised(self) -> str:
        """The host the Overlord reaches this worker's tasks at."""
        if self.advertised_host:
            return self.advertised_host
        if self.host in WILDCARDS:
            try:
                return socket.gethostbyname(socket.gethostname())
            except OSError:
                return socket.gethostname()
        return self.host

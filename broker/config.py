"""Broker settings: flags, environment (``BROKER_*``) or an optional file (as the Overlord's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.segment_cache import SIZE_PATTERN, parse_size
from supervisor.deep_storage import to_uri
from supervisor.errors import InvalidInput
from supervisor.logs import LogFormat, LogLevel

# Druid's default druid.server.http.defaultQueryTimeout: 5 minutes
DEFAULT_QUERY_TIMEOUT_MS = 300_000


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROKER_", extra="forbid", frozen=True)

    overlord_url: str = Field(
        default="http://127.0.0.1:8090", description="URL of the Overlord the Broker learns segments from"
    )
    host: str = Field(default="127.0.0.1", description="listen address (0.0.0.0 in a container)")
    # Druid's Broker listens on 8082
    port: int = Field(default=8082, ge=0, le=65535, description="listen port")
    query_timeout_ms: int = Field(
        default=DEFAULT_QUERY_TIMEOUT_MS,
        gt=0,
        description="default query timeout (context `timeout` overrides)",
    )
    max_query_timeout_ms: int = Field(
        default=DEFAULT_QUERY_TIMEOUT_MS * 12, gt=0, description="the largest context `timeout` honoured"
    )
    query_memory_limit: str = Field(
        default="1GB",
        pattern=SIZE_PATTERN,
        description="DuckDB memory limit of one query (e.g. 512MB, 2GB)",
    )
    query_threads: int = Field(default=2, ge=1, le=64, description="DuckDB threads of one query")
    max_result_rows: int = Field(
        default=1_000_000, gt=0, description="rows one query may answer (more: Resource limit exceeded)"
    )
    segments_poll_s: float = Field(
        default=1.0, ge=0, description="least seconds between two asks for the segment list (If-None-Match)"
    )
    # Segments in S3 deep storage are read from local copies (broker/segment_cache.py), as a Druid
    # Historical's druid.segmentCache.locations [{"path", "maxSize"}]
    deep_storage: str = Field(
        default="",
        description="the cluster's deep storage URI (as the Overlord's): for s3:// its parameters (endpoint, "
        "region, pathStyle, checksum) are how segments are read; empty: the AWS_* environment variables. "
        "Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
    )
    segment_cache_dir: Path = Field(
        default=Path("var/broker/segment-cache"),
        description="the Broker's own directory for its copies of S3 segments (kept across restarts)",
    )
    segment_cache_size: str = Field(
        default="10GiB",
        pattern=SIZE_PATTERN,
        description="most bytes of segment copies kept, least recently used deleted first (500MB, 10GiB)",
    )

    @field_validator("deep_storage", mode="before")
    @classmethod
    def _deep_storage_uri(cls, value: Any) -> str:
        if not str(value):
            return ""
        try:
            return to_uri(str(value))
        except InvalidInput as e:
            raise ValueError(e.message) from e

    @property
    def segment_cache_bytes(self) -> int:
        return parse_size(self.segment_cache_size)

    overlord_timeout_s: float = Field(default=10.0, gt=0, description="timeout of one call to the Overlord")
    max_request_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="largest request body")
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = Field(default="text", description="text or json (one JSON object per line)")
    # Access control, as the Overlord's (off when all three are empty): every query path needs the
    # `read` role (or admin); the cluster token is what the Broker presents to the Overlord.
    auth_users: SecretStr = Field(
        default=SecretStr(""), description="users allowed to query: name:password:role,... (read|admin)"
    )
    auth_tokens: SecretStr = Field(default=SecretStr(""), description="bearer tokens: token:role,...")
    cluster_token: SecretStr = Field(
        default=SecretStr(""), description="token the Broker presents to the Overlord (the cluster's)"
    )

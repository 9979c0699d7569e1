"""A stream record as the ingest engine sees it, free of any Kafka client type."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None = None

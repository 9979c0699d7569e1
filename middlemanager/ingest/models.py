"""Value objects the ingest engine hands to its caller (the peon)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from supervisor.chronology import DATETIME_MAX_MS, DATETIME_MIN_MS, format_instant
from supervisor.offsets import PartitionId, partition_json

__all__ = ["ParseExceptionReport", "RejectedRecord", "RowStats", "SegmentFile", "format_interval_ms"]

# Raw input kept in a parse exception report, as text.
MAX_REPORTED_INPUT_BYTES = 1024


@dataclass(slots=True)
class RowStats:
    """Druid's row counters.

    ``processed + processed_with_error + thrown_away + unparseable`` = records seen.
    """

    processed: int = 0
    processed_bytes: int = 0
    processed_with_error: int = 0
    thrown_away: int = 0
    unparseable: int = 0

    @property
    def records(self) -> int:
        return self.processed + self.processed_with_error + self.thrown_away + self.unparseable

    def copy(self) -> RowStats:
        return RowStats(
            self.processed,
            self.processed_bytes,
            self.processed_with_error,
            self.thrown_away,
            self.unparseable,
        )

    def to_json(self) -> dict[str, int]:
        return {
            "processed": self.processed,
            "processedBytes": self.processed_bytes,
            "processedWithError": self.processed_with_error,
            "thrownAway": self.thrown_away,
            "unparseable": self.unparseable,
        }


ErrorType = Literal["unparseable", "processedWithError"]


def raw_input_text(value: bytes | None, limit: int = MAX_REPORTED_INPUT_BYTES) -> str:
    """A record value as text for reports and logs: UTF-8 (invalid bytes replaced), cut to ``limit`` bytes."""
    if value is None:
        return ""
    return value[:limit].decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class ParseExceptionReport:
    """One saved parse exception, as in Druid's task reports (``unparseableEvents``)."""

    partition: PartitionId
    offset: int
    error_type: ErrorType
    message: str
    detected_at_ms: int
    input: str
    details: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": format_interval_ms(self.detected_at_ms),
            "partition": partition_json(self.partition),
            "offset": self.offset,
            "errorType": self.error_type,
            "message": self.message,
            "details": list(self.details) if self.details else [self.message],
            "input": self.input,
        }


RejectionKind = Literal["unparseable", "thrownAway"]


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record that was not ingested, for the dead-letter topic. ``value`` is the raw record value."""

    partition: PartitionId
    offset: int
    value: bytes | None
    timestamp_ms: int | None
    kind: RejectionKind
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": partition_json(self.partition),
            "offset": self.offset,
            "timestamp": self.timestamp_ms,
            "kind": self.kind,
            "reason": self.reason,
            "value": raw_input_text(self.value, limit=len(self.value) if self.value else 0),
        }


def format_interval_ms(ms: int) -> str:
    """ISO-8601 UTC text of epoch ms (``2024-01-01T00:00:00.000Z``); values outside the years
    1..9999 as numbers (segment file names and reports have always shown them so)."""
    if not DATETIME_MIN_MS <= ms <= DATETIME_MAX_MS:
        return str(ms)
    return format_instant(ms)


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """One finished segment shard: a Parquet file holding the rows of one segment interval.

    Columns: ``__time`` (int64, UTC epoch milliseconds), then ``dimensions`` then ``metrics``.
    """

    interval_start_ms: int
    interval_end_ms: int
    shard: int
    path: Path
    num_rows: int
    size_bytes: int
    dimensions: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    @property
    def interval(self) -> str:
        return f"{format_interval_ms(self.interval_start_ms)}/{format_interval_ms(self.interval_end_ms)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "intervalStartMs": self.interval_start_ms,
            "intervalEndMs": self.interval_end_ms,
            "shard": self.shard,
            "path": str(self.path),
            "numRows": self.num_rows,
            "sizeBytes": self.size_bytes,
            "dimensions": list(self.dimensions),
            "metrics": list(self.metrics),
        }

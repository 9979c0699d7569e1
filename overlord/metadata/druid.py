"""Druid's textual forms: intervals, segment ids and DataSegment JSON.

Instants print as :func:`supervisor.chronology.format_instant` does (Joda's ISO printer in UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from supervisor.chronology import format_instant
from supervisor.deep_storage import load_spec

#: Druid's segment binary format version for segments it writes today.
BINARY_VERSION = 9


def format_interval(start_ms: int, end_ms: int) -> str:
    """Druid's interval text ``start/end``."""
    return f"{format_instant(start_ms)}/{format_instant(end_ms)}"


def segment_id(datasource: str, start_ms: int, end_ms: int, version: str, partition_num: int) -> str:
    """Druid's ``SegmentId.toString()``: ``{ds}_{start}_{end}_{version}`` plus ``_{n}`` when n > 0."""
    base = f"{datasource}_{format_instant(start_ms)}_{format_instant(end_ms)}_{version}"
    return f"{base}_{partition_num}" if partition_num > 0 else base


def data_segment_json(
    *,
    datasource: str,
    start_ms: int,
    end_ms: int,
    version: str,
    partition_num: int,
    path: str,
    dimensions: Sequence[str],
    metrics: Sequence[str],
    size_bytes: int,
    num_rows: int,
) -> dict[str, Any]:
    """Druid's DataSegment JSON for a segment at ``path`` (a deep-storage URI; ``numRows`` is our extra)."""
    ident = segment_id(datasource, start_ms, end_ms, version, partition_num)
    return {
        "dataSource": datasource,
        "interval": format_interval(start_ms, end_ms),
        "version": version,
        "loadSpec": load_spec(path),
        "dimensions": ",".join(dimensions),
        "metrics": ",".join(metrics),
        "shardSpec": {"type": "numbered", "partitionNum": partition_num, "partitions": 0},
        "binaryVersion": BINARY_VERSION,
        "size": size_bytes,
        "identifier": ident,
        "id": ident,
        "numRows": num_rows,
    }

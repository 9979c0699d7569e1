"""What a datasource published: the rows of its Parquet segments."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow.parquet as pq

from overlord.client import OverlordClient
from supervisor.deep_storage import open_segment


def read_segments(
    segments: list[dict[str, Any]], env: Mapping[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every row of the published Parquet files (local, or in S3 reached through ``env``'s AWS settings)."""
    for seg in segments:
        with open_segment(seg["loadSpec"], env) as f:
            table = pq.read_table(f)
        yield from table.to_pylist()


def published_ids(api: OverlordClient, datasource: str) -> list[str]:
    return [str(r["id"]) for r in read_segments(api.segments(datasource))]

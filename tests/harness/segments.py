"""What a datasource published: the rows of its Parquet segments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq

from overlord.client import OverlordClient


def read_segments(segments: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every row of the published Parquet files."""
    for seg in segments:
        table = pq.read_table(seg["loadSpec"]["path"])
        yield from table.to_pylist()


def published_ids(api: OverlordClient, datasource: str) -> list[str]:
    return [str(r["id"]) for r in read_segments(api.segments(datasource))]

"""Time buckets on Arrow arrays: a granularity's bucket start of every ``__time`` value, and a
table cut into its segment intervals."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from middlemanager.ingest.schema import TIME
from supervisor.chronology import MS_PER_DAY
from supervisor.granularity import Granularity

__all__ = ["bucket_starts", "split_by_segment"]


def bucket_starts(granularity: Granularity, times: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``granularity.bucket_start`` of every value of an int64 array of epoch milliseconds."""
    if granularity is Granularity.NONE or len(times) == 0:
        return times
    fixed = granularity.fixed_length_ms
    if fixed is not None and fixed <= MS_PER_DAY:
        return _floor_ms(times, fixed)
    # Calendar granularities (WEEK, MONTH, QUARTER, YEAR, ALL) start at a UTC midnight:
    # bucket each distinct day through the granularity's own arithmetic.
    days = _floor_ms(times, MS_PER_DAY)
    distinct = pc.unique(days)
    starts = pa.array([granularity.bucket_start(day) for day in distinct.to_pylist()], type=pa.int64())
    return starts.take(pc.index_in(days, value_set=distinct))


def _floor_ms(times: pa.Array | pa.ChunkedArray, multiple: int) -> pa.Array | pa.ChunkedArray:
    stamps = pc.cast(times, pa.timestamp("ms"))
    floored = pc.floor_temporal(stamps, multiple=multiple, unit="millisecond")
    return pc.cast(floored, pa.int64())


def split_by_segment(table: pa.Table, segment_granularity: Granularity) -> list[tuple[int, pa.Table]]:
    """Cut a table sorted by ``__time`` into per-segment-interval pieces, in time order."""
    if table.num_rows == 0:
        return []
    starts = bucket_starts(segment_granularity, table.column(TIME))
    counts = pc.value_counts(starts)  # in order of first appearance, which is time order here
    pieces: list[tuple[int, pa.Table]] = []
    offset = 0
    for item in counts.to_pylist():
        pieces.append((int(item["values"]), table.slice(offset, item["counts"])))
        offset += item["counts"]
    return pieces

"""Arrow-level pieces of the engine: time bucketing, rollup, spill files and Parquet segments.

Spill files ("runs") are Arrow IPC files, one per persist and segment interval, rows
sorted by ``__time`` only (sorting by dimensions once, at the end, is cheaper). They are
memory-mapped when merged, so finishing a segment only holds one time slice of it in
memory: rows are merged in ``__time`` ranges of about :data:`MERGE_SLICE_ROWS` rows; a
row and every row it can roll up with share one ``__time``, so a slice never splits a
rollup group, and slices come out in order.

Parquet output is deterministic: the same rows give byte-identical files, whatever the
persist points were, because row groups have a fixed size (:data:`ROW_GROUP_ROWS`) and
rows are totally ordered (``__time``, dimensions, and for rollup-off tables the metrics).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from middlemanager.ingest.models import SegmentFile, format_interval_ms
from middlemanager.ingest.schema import TIME, ColumnPlan, decode_string_column, has_multi_values
from supervisor.granularity import Granularity

__all__ = [
    "MERGE_SLICE_ROWS",
    "ROW_GROUP_ROWS",
    "RunPart",
    "bucket_starts",
    "finalize_run",
    "merge_sorted_duplicates",
    "rollup",
    "segment_file_name",
    "split_by_segment",
    "write_run_part",
    "write_segment",
]

_DAY_MS = 86_400_000
MERGE_SLICE_ROWS = 262_144
ROW_GROUP_ROWS = 131_072
PARQUET_COMPRESSION = "zstd"


# --------------------------------------------------------------------------- time


def bucket_starts(granularity: Granularity, times: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``granularity.bucket_start`` of every value of an int64 array of epoch milliseconds."""
    if granularity is Granularity.NONE or len(times) == 0:
        return times
    fixed = granularity.fixed_length_ms
    if fixed is not None and fixed <= _DAY_MS:
        return _floor_ms(times, fixed)
    # Calendar granularities (WEEK, MONTH, QUARTER, YEAR, ALL) start at a UTC midnight:
    # bucket each distinct day through the granularity's own arithmetic.
    days = _floor_ms(times, _DAY_MS)
    distinct = pc.unique(days)
    starts = pa.array([granularity.bucket_start(day) for day in distinct.to_pylist()], type=pa.int64())
    return starts.take(pc.index_in(days, value_set=distinct))


def _floor_ms(times: pa.Array | pa.ChunkedArray, multiple: int) -> pa.Array | pa.ChunkedArray:
    stamps = pc.cast(times, pa.timestamp("ms"))
    floored = pc.floor_temporal(stamps, multiple=multiple, unit="millisecond")
    return pc.cast(floored, pa.int64())


# --------------------------------------------------------------------------- rollup


def rollup(table: pa.Table, plan: ColumnPlan) -> pa.Table:
    """Group rows by ``__time`` and every dimension, aggregating each metric's partials."""
    if table.num_rows == 0:
        return table
    dims = [name for name in table.column_names if name.startswith("d")]
    aggregations = [(m.col, m.agg) for m in plan.metrics]
    grouped = table.group_by([TIME, *dims], use_threads=False).aggregate(aggregations)
    columns = [grouped.column(TIME)] + [grouped.column(d) for d in dims]
    columns += [grouped.column(f"{m.col}_{m.agg}") for m in plan.metrics]
    return pa.Table.from_arrays(columns, names=[TIME, *dims, *(m.col for m in plan.metrics)])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (missing ones all null), in that order."""
    if table.schema.names == schema.names:
        return table
    columns = []
    for field in schema:
        index = table.schema.get_field_index(field.name)
        columns.append(table.column(index) if index >= 0 else pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _concat(tables: Sequence[pa.Table], schema: pa.Schema) -> pa.Table:
    if len(tables) == 1:
        return conform(tables[0], schema)
    return pa.concat_tables([conform(t, schema) for t in tables])


def _sort_keys(keys: Sequence[str]) -> list[tuple[str, str, str]]:
    return [(key, "ascending", "at_start") for key in keys]


def sort_table(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    if table.num_rows <= 1:
        return table
    try:
        indices = pc.sort_indices(table, sort_keys=_sort_keys(keys))
    except (TypeError, ValueError):  # pyarrow < 25 only knows one null placement for all keys
        indices = pc.sort_indices(
            table, sort_keys=[(k, "ascending") for k in keys], null_placement="at_start"
        )
    return table.take(indices)


def sort_keys_of(plan: ColumnPlan, rollup_enabled: bool) -> list[str]:
    """The total row order of a segment: ``__time``, dimensions, then (rollup off) the metrics."""
    keys = [TIME, *(d.col for d in plan.dimensions)]
    if not rollup_enabled:
        keys += [m.col for m in plan.metrics]
    return keys


def _contiguous(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def merge_sorted_duplicates(table: pa.Table, plan: ColumnPlan, keys: Sequence[str]) -> pa.Table:
    """Roll up a table sorted by ``keys``: equal neighbours become one row (metrics aggregated).

    Much cheaper than hashing every key: one comparison per key column, and nothing more
    when no two neighbours are equal.
    """
    n = table.num_rows
    if n < 2:
        return table
    differs: pa.Array | None = None
    for key in keys:
        column = _contiguous(table.column(key)) if key in table.column_names else None
        if column is None or column.null_count == n:
            continue
        after, before = column.slice(1), column.slice(0, n - 1)
        changed = pc.not_equal(after, before)
        if column.null_count:
            changed = pc.if_else(pc.is_null(changed), pc.xor(pc.is_null(after), pc.is_null(before)), changed)
        differs = changed if differs is None else pc.or_(differs, changed)
    if differs is not None and pc.all(differs).as_py():
        return table
    starts = pa.concat_arrays(
        [pa.array([True]), differs if differs is not None else pa.repeat(pa.scalar(False), n - 1)]
    )
    first_rows = pc.indices_nonzero(starts)
    group_ids = pc.subtract(pc.cumulative_sum(pc.cast(starts, pa.int64())), 1)
    result = table.take(first_rows)
    if plan.metrics:
        metrics = pa.table({"g": group_ids, **{m.col: table.column(m.col) for m in plan.metrics}})
        grouped = metrics.group_by(["g"], use_threads=False).aggregate([(m.col, m.agg) for m in plan.metrics])
        for m in plan.metrics:
            index = result.schema.get_field_index(m.col)
            result = result.set_column(index, m.col, grouped.column(f"{m.col}_{m.agg}"))
    return result


def finalize_run(table: pa.Table, plan: ColumnPlan, rollup_enabled: bool) -> pa.Table:
    """Sort by the segment order and, with rollup, merge rows with equal keys."""
    keys = sort_keys_of(plan, rollup_enabled)
    table = sort_table(table, [k for k in keys if k in table.column_names])
    if rollup_enabled:
        table = merge_sorted_duplicates(table, plan, keys)
    return table


# --------------------------------------------------------------------------- spill runs


@dataclass(frozen=True, slots=True)
class RunPart:
    """Rows of one segment interval from one persist (or from memory when ``path`` is None)."""

    segment_start: int
    num_rows: int
    path: Path | None = None
    table: pa.Table | None = None

    def open(self) -> pa.Table:
        if self.table is not None:
            return self.table
        assert self.path is not None
        return pa.ipc.open_file(pa.memory_map(str(self.path), "r")).read_all()


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


def write_run_part(path: Path, table: pa.Table) -> None:
    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=ROW_GROUP_ROWS)
    os.replace(tmp, path)


def _bisect_left(values: pa.ChunkedArray | pa.Array, target: int, lo: int = 0) -> int:
    hi = len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid].as_py() < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _time_slices(tables: Sequence[pa.Table], target_rows: int) -> Iterator[list[pa.Table]]:
    """Cut tables sorted by ``__time`` into aligned ``__time`` ranges of about ``target_rows`` rows."""
    total = sum(t.num_rows for t in tables)
    if total <= target_rows:
        yield [t for t in tables if t.num_rows]
        return
    # Pick cut times from an evenly spaced sample of every table (each sample stands for `step` rows).
    step = max(1, target_rows // (4 * len(tables)))
    samples: list[int] = []
    for table in tables:
        times = table.column(TIME)
        samples.extend(times.take(pa.array(range(0, table.num_rows, step), type=pa.int64())).to_pylist())
    samples.sort()
    cuts: list[int] = []
    acc = 0
    for value in samples:
        if acc >= target_rows and (not cuts or value > cuts[-1]):
            cuts.append(value)
            acc = 0
        acc += step
    starts = [0] * len(tables)
    for cut in [*cuts, None]:
        pieces = []
        for index, table in enumerate(tables):
            end = table.num_rows if cut is None else _bisect_left(table.column(TIME), cut, starts[index])
            if end > starts[index]:
                pieces.append(table.slice(starts[index], end - starts[index]))
            starts[index] = end
        if pieces:
            yield pieces


# --------------------------------------------------------------------------- segments


def _file_stamp(ms: int) -> str:
    text = format_interval_ms(ms)
    if not text.endswith("Z"):
        return text
    return text.replace("-", "").replace(":", "").replace(".000Z", "Z")


def segment_file_name(start_ms: int, end_ms: int, shard: int) -> str:
    """``20240101T000000Z_20240102T000000Z_0.parquet`` (ms shown only when not zero)."""
    return f"{_file_stamp(start_ms)}_{_file_stamp(end_ms)}_{shard}.parquet"


class _ShardWriter:
    """Writes sorted rows of one segment interval into shards of at most ``max_rows`` rows."""

    def __init__(
        self,
        out_dir: Path,
        start_ms: int,
        end_ms: int,
        schema: pa.Schema,
        max_rows: int,
        dimensions: list[str],
        metrics: list[str],
    ) -> None:
        self.out_dir = out_dir
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.schema = schema
        self.max_rows = max_rows
        self.row_group = min(ROW_GROUP_ROWS, max_rows)
        self.dimensions = dimensions
        self.metrics = metrics
        self.files: list[SegmentFile] = []
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._tmp: Path | None = None
        self._rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def write(self, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            room = self.max_rows - self._rows
            piece = table.slice(offset, min(room, table.num_rows - offset))
            offset += piece.num_rows
            self._rows += piece.num_rows
            self._pending.append(piece)
            self._pending_rows += piece.num_rows
            self._drain(full_only=True)
            if self._rows >= self.max_rows:
                self._close_shard()

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            shard = len(self.files)
            self._path = self.out_dir / segment_file_name(self.start_ms, self.end_ms, shard)
            self._tmp = self._path.with_name(self._path.name + ".tmp")
            self._writer = pq.ParquetWriter(
                str(self._tmp),
                self.schema,
                compression=PARQUET_COMPRESSION,
                use_dictionary=True,
                write_statistics=True,
            )
        return self._writer

    def _drain(self, full_only: bool) -> None:
        while self._pending_rows >= self.row_group or (not full_only and self._pending_rows > 0):
            combined = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
            size = min(self.row_group, combined.num_rows)
            self._open().write_table(combined.slice(0, size), row_group_size=size)
            rest = combined.slice(size)
            self._pending = [rest] if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def _close_shard(self) -> None:
        self._drain(full_only=False)
        if self._writer is None:
            return
        self._writer.close()
        assert self._path is not None and self._tmp is not None
        os.replace(self._tmp, self._path)
        self.files.append(
            SegmentFile(
                interval_start_ms=self.start_ms,
                interval_end_ms=self.end_ms,
                shard=len(self.files),
                path=self._path,
                num_rows=self._rows,
                size_bytes=self._path.stat().st_size,
                dimensions=list(self.dimensions),
                metrics=list(self.metrics),
            )
        )
        self._writer = None
        self._rows = 0

    def close(self) -> list[SegmentFile]:
        if self._rows:
            self._close_shard()
        return self.files

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def write_segment(
    parts: Sequence[pa.Table],
    plan: ColumnPlan,
    *,
    rollup_enabled: bool,
    start_ms: int,
    end_ms: int,
    out_dir: Path,
    max_rows_per_segment: int,
    slice_rows: int | None = None,
) -> list[SegmentFile]:
    """Merge the runs of one segment interval into sorted, sharded Parquet files.

    Every part must be a run: sorted by :func:`sort_keys_of` and, with rollup, free of
    duplicate keys (:func:`finalize_run`).
    """
    internal = plan.internal_schema()
    dims = plan.dimensions
    parts = [conform(p, internal) for p in parts if p.num_rows]
    if not parts:
        return []
    multi = {
        d.col for d in dims if d.kind == "string" and any(has_multi_values(p.column(d.col)) for p in parts)
    }
    fields = [pa.field(TIME, pa.int64(), nullable=False)]
    for d in dims:
        fields.append(pa.field(d.name, pa.list_(pa.string()) if d.col in multi else d.arrow_type))
    fields += [pa.field(m.name, m.output_type) for m in plan.metrics]
    schema = pa.schema(fields)
    sort_keys = sort_keys_of(plan, rollup_enabled)

    writer = _ShardWriter(
        out_dir,
        start_ms,
        end_ms,
        schema,
        max_rows_per_segment,
        [d.name for d in dims],
        [m.name for m in plan.metrics],
    )
    try:
        for pieces in _time_slices(parts, slice_rows or MERGE_SLICE_ROWS):
            table = _concat(pieces, internal)
            if len(pieces) > 1:  # each part is sorted and rolled up already
                table = sort_table(table, sort_keys)
                if rollup_enabled:
                    table = merge_sorted_duplicates(table, plan, sort_keys)
            writer.write(_to_output(table, plan, multi, schema))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _to_output(table: pa.Table, plan: ColumnPlan, multi: set[str], schema: pa.Schema) -> pa.Table:
    columns: list[Any] = [table.column(TIME)]
    for d in plan.dimensions:
        column = table.column(d.col)
        if d.kind == "string":
            columns.append(decode_string_column(column, d.col in multi))
        else:
            columns.append(column)
    for m in plan.metrics:
        column = table.column(m.col)
        columns.append(column if column.type == m.output_type else pc.cast(column, m.output_type))
    return pa.Table.from_arrays(columns, schema=schema)

"""Arrow-level pieces of the engine: time bucketing, rollup, spill files and Parquet segments.

Row order. Every row set here is totally ordered by :func:`sort_keys_of` (``__time``, the
dimensions, and with rollup off the metrics), so that replicas write identical segments and
rollup only has to compare neighbours. Ties on the whole key are kept in input order (Arrow's
sort is stable), which fixes the order in which rollup aggregates partials.

Spill files ("runs") are Arrow IPC files, one per persist and segment interval, each already in
that total order and, with rollup, without duplicate keys (:func:`finalize_run`). They are
written in record batches of :data:`SPILL_BATCH_ROWS` rows, and the names of the string columns
holding multi-value rows go into the file's schema metadata.

Finishing a segment (:func:`write_segment`) never holds whole runs: it cuts the runs into aligned
``__time`` ranges of about :data:`MERGE_SLICE_ROWS` rows in all (a row and every row it can roll
up with share one ``__time``, so a slice never splits a rollup group, and slices come out in
order), reads from each file only the record batches of the current slice (plain reads into
memory owned by Arrow, no memory map, so nothing stays resident after the slice is written), and
merges the slice's pieces. Merging sorts as little as the order allows: where the pieces'
``__time`` ranges do not overlap (stream data arriving in time order: runs meet at their
boundary only) rows are taken as they are, in piece order; inside an overlap, only rows whose
``__time`` value occurs in more than one piece are sorted by the full key (and rolled up), the
others keep their order within their piece and are placed by ``__time`` alone. This gives
exactly the order (and rollup) of a full stable sort of the concatenated pieces (tested).

Parquet output is deterministic: the same rows give byte-identical files, whatever the persist
points were, because row groups have a fixed size (:data:`ROW_GROUP_ROWS`), are written from
contiguous arrays (Arrow cuts pages where its input chunks end) and rows are totally ordered.
"""

from __future__ import annotations

import json
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
    "SPILL_BATCH_ROWS",
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
# Rows merged and written at a time at finish (a slice of every run). 65,536 wikipedia-like
# rows are about 16 MiB; with 262,144 the finish phase raised a task's peak RSS by ~60 MiB
# above its read phase (2M events), with 65,536 it stays at the read phase's peak, at the
# same speed (bench/ingest.py).
MERGE_SLICE_ROWS = 65_536
ROW_GROUP_ROWS = 131_072
# Record batch size of spill files: the unit read back at finish. A slice reads whole batches
# and keeps only its rows of the batch at each end, so small batches keep reads close to the
# slice; but writing costs more per row the smaller the batches (IPC write of 163,840 wikipedia
# rows, median us/row: 4096 rows 0.160, 8192 0.162, 16384 0.139, 32768 0.115, 131072 0.101).
# 16384 rows are about 4 MiB of wikipedia-like rows.
SPILL_BATCH_ROWS = 16_384
# Schema metadata of a spill file: JSON list of its string columns holding multi-value rows.
_MULTI_KEY = b"multi_value_columns"
# A permutation made of at most this many ascending runs is applied by zero-copy slicing.
_GATHER_MAX_SLICES = 64

# Parquet compression, measured on the 400,000 wikipedia-like rows of bench/wikigen.py (20 string
# dimensions, 3 longs) written like _ShardWriter does (row groups of 131,072 rows, dictionaries
# except ``__time``, statistics); CPU us/row over 7 interleaved runs, rollup off / rollup on:
#
#   codec                     file size           write: min       median      read: median
#   none                      11.96 / 11.63 MiB   0.95 / 0.96      1.01 / 1.09   0.68 / 0.76
#   snappy                    10.11 /  9.83 MiB   1.00 / 0.96      1.03 / 1.06   0.68 / 0.79
#   lz4                       10.06 /  9.77 MiB   0.99 / 0.96      1.03 / 1.11   0.73 / 0.73
#   zstd level 1               9.33 /  9.04 MiB   1.05 / 1.03      1.21 / 1.17   0.76 / 0.71
#   zstd level 3               9.31 /  9.02 MiB   1.06 / 1.08      1.13 / 1.12   0.75 / 0.90
#   zstd level 6               9.28 /  8.99 MiB   1.20 / 1.27      1.29 / 1.46   0.71 / 0.84
#   before: zstd, dictionary
#     on ``__time`` too       10.46 /  9.04 MiB   1.17 / 1.05      1.24 / 1.24   0.78 / 0.80
#
# Compression is a small part of the write: even "none" costs ~1 us/row, nearly all of it
# dictionary-encoding 20 string columns. zstd level 1 (Arrow's default level, now explicit)
# makes files 7% smaller than lz4 or snappy for ~0.05 us/row more (min; medians are within the
# noise of this shared machine), and 22% smaller than none; higher levels gain under 0.5% for
# more time. Hence zstd, level 1.
#
# ``__time`` is not dictionary-encoded: with millisecond times nearly every value is distinct,
# so its dictionary overflows and falls back to plain after costing a hash per row (alone:
# 1,164 KiB, 0.15 us/row). DELTA_BINARY_PACKED suits a sorted int64 column: 3 KiB, 0.01 us/row
# (rollup on, with minute times, 3 KiB either way). It is a standard Parquet encoding (parquet-mr,
# Arrow and DuckDB read it).
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 1
PARQUET_TIME_ENCODING = "DELTA_BINARY_PACKED"


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


def _sort_keys(keys: Sequence[str]) -> list[tuple[str, str, str]]:
    return [(key, "ascending", "at_start") for key in keys]


def _sort_indices(table: pa.Table, keys: Sequence[str]) -> pa.Array:
    """Indices of a stable sort of ``table`` by ``keys`` (ascending, nulls first)."""
    try:
        return pc.sort_indices(table, sort_keys=_sort_keys(keys))
    except (TypeError, ValueError):  # pyarrow < 25 only knows one null placement for all keys
        return pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys], null_placement="at_start")


def sort_table(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """``table`` in the stable order of ``keys``: the reference order every faster path must give."""
    if table.num_rows <= 1:
        return table
    return table.take(_sort_indices(table, keys))


def sort_keys_of(plan: ColumnPlan, rollup_enabled: bool) -> list[str]:
    """The total row order of a segment: ``__time``, dimensions, then (rollup off) the metrics."""
    keys = [TIME, *(d.col for d in plan.dimensions)]
    if not rollup_enabled:
        keys += [m.col for m in plan.metrics]
    return keys


def _contiguous(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        if column.num_chunks == 0:
            return pa.array([], type=column.type)
        return column.combine_chunks()
    return column


def _strictly_increasing(values: pa.Array) -> bool:
    n = len(values)
    if n < 2:
        return True
    if values.null_count:
        return False
    return bool(pc.all(pc.less(values.slice(0, n - 1), values.slice(1))).as_py())


def _arange(start: int, count: int) -> pa.Array:
    """int64 ``start, start + 1, ..., start + count - 1``."""
    if count == 0:
        return pa.array([], type=pa.int64())
    return pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count)), start - 1)


def _gather(table: pa.Table, indices: pa.Array) -> pa.Table:
    """``table.take(indices)``; without copying when the indices are a few ascending runs."""
    n = len(indices)
    if n == 0:
        return table.slice(0, 0)
    if n == 1:
        return table.slice(indices[0].as_py(), 1)
    follows = pc.equal(indices.slice(1), pc.add(indices.slice(0, n - 1), 1))
    if n - 1 - pc.sum(follows).as_py() >= _GATHER_MAX_SLICES:
        return table.take(indices)
    breaks = pc.indices_nonzero(pc.invert(follows)).to_pylist()
    starts = [0, *(b + 1 for b in breaks)]
    ends = [*starts[1:], n]
    if len(starts) == 1 and indices[0].as_py() == 0 and n == table.num_rows:
        return table
    return pa.concat_tables(
        [table.slice(indices[s].as_py(), e - s) for s, e in zip(starts, ends, strict=True)]
    )


def _group_starts(table: pa.Table, keys: Sequence[str]) -> pa.Array | None:
    """For a table sorted by ``keys``: whether each row's key differs from the previous row's.

    ``None`` when every row does (no two neighbours are equal), found as soon as the keys
    compared so far tell every neighbour apart: usually after a few columns.
    """
    n = table.num_rows
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
        if pc.all(differs).as_py():
            return None
    return pa.concat_arrays(
        [pa.array([True]), differs if differs is not None else pa.repeat(pa.scalar(False), n - 1)]
    )


def _aggregate_groups(
    first: pa.Table, metrics: dict[str, pa.ChunkedArray], starts: pa.Array, plan: ColumnPlan
) -> pa.Table:
    """``first`` (the first row of every group) with each metric aggregated over its group.

    ``metrics``: the metric columns of all rows, in order; ``starts``: where groups start.
    """
    if not plan.metrics:
        return first
    n = len(starts)
    group_ids = pc.subtract(pc.cumulative_sum(pc.cast(starts, pa.int64())), 1)
    table = pa.table({"g": group_ids, **{m.col: metrics[m.col] for m in plan.metrics}})
    grouped = table.group_by(["g"], use_threads=False).aggregate([(m.col, m.agg) for m in plan.metrics])
    alone: pa.Array | None = None
    for m in plan.metrics:
        index = first.schema.get_field_index(m.col)
        merged = grouped.column(f"{m.col}_{m.agg}")
        if m.agg == "sum" and pa.types.is_floating(merged.type):
            # A row without an equal neighbour keeps its value: summing it alone would turn
            # -0.0 into 0.0, so the row would depend on whether the table had other duplicates.
            if alone is None:
                first_rows = pc.indices_nonzero(starts)
                ends = pa.concat_arrays([first_rows.slice(1), pa.array([n], type=first_rows.type)])
                alone = pc.equal(pc.subtract(ends, first_rows), 1)
            merged = pc.if_else(alone, first.column(index), merged)
        first = first.set_column(index, m.col, merged)
    return first


def merge_sorted_duplicates(table: pa.Table, plan: ColumnPlan, keys: Sequence[str]) -> pa.Table:
    """Roll up a table sorted by ``keys``: equal neighbours become one row (metrics aggregated).

    Much cheaper than hashing every key: one comparison per key column, and nothing more
    when no two neighbours are equal.
    """
    if table.num_rows < 2:
        return table
    starts = _group_starts(table, keys)
    if starts is None:
        return table
    metrics = {m.col: table.column(m.col) for m in plan.metrics}
    return _aggregate_groups(table.take(pc.indices_nonzero(starts)), metrics, starts, plan)


def finalize_run(table: pa.Table, plan: ColumnPlan, rollup_enabled: bool) -> pa.Table:
    """Sort by the segment order and, with rollup, merge rows with equal keys.

    Rows whose ``__time`` strictly increases (events arriving in time order, no two in one
    millisecond) are in the segment order already: no sort, no copy, and no equal keys. With
    rollup, the merged rows are taken from ``table`` once the sorted copy is dropped, so at
    most one copy of the rows exists next to ``table``.
    """
    if table.num_rows <= 1:
        return table
    if _strictly_increasing(_contiguous(table.column(TIME))):
        return table
    keys = sort_keys_of(plan, rollup_enabled)
    indices = _sort_indices(table, [k for k in keys if k in table.column_names])
    ordered = _gather(table, indices)
    if not rollup_enabled:
        return ordered
    starts = _group_starts(ordered, keys)
    if starts is None:
        return ordered
    metrics = {m.col: ordered.column(m.col) for m in plan.metrics}
    del ordered
    first = table.take(indices.take(pc.indices_nonzero(starts)))
    return _aggregate_groups(first, metrics, starts, plan)


# --------------------------------------------------------------------------- spill runs


@dataclass(frozen=True, slots=True)
class RunPart:
    """Rows of one segment interval from one persist (or from memory when ``path`` is None)."""

    segment_start: int
    num_rows: int
    path: Path | None = None
    table: pa.Table | None = None

    def open(self) -> pa.Table:
        """The whole run as one table (memory-mapped). :func:`write_segment` rather takes the part."""
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


def _has_nul(column: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a string column may hold a NUL character; ``False`` proves no value is encoded.

    Encoded values (multi-value rows, escaped strings) start with NUL. Looking for a NUL byte
    in the character data is about ten times cheaper than ``starts_with`` on every value.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        n = len(chunk)
        if n == 0 or chunk.null_count == n:
            continue
        if not pa.types.is_string(chunk.type):
            return True  # not the layout read below: let the caller check value by value
        _, offsets, data = chunk.buffers()
        if data is None or offsets is None:
            continue
        first, last = chunk.offset * 4, (chunk.offset + n) * 4
        begin = int.from_bytes(offsets.slice(first, 4).to_pybytes(), "little", signed=True)
        end = int.from_bytes(offsets.slice(last, 4).to_pybytes(), "little", signed=True)
        if b"\x00" in data.slice(begin, end - begin).to_pybytes():
            return True
    return False


def _multi_value_columns(table: pa.Table | pa.RecordBatch) -> set[str]:
    """Names of the string columns of ``table`` holding at least one multi-value row."""
    out = set()
    for field in table.schema:
        if field.name == TIME or not pa.types.is_string(field.type):
            continue
        column = table.column(field.name)
        if _has_nul(column) and has_multi_values(column):
            out.add(field.name)
    return out


def write_run_part(path: Path, table: pa.Table) -> None:
    """Spill a run (rows in segment order) to an Arrow IPC file, atomically."""
    multi = json.dumps(sorted(_multi_value_columns(table))).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _MULTI_KEY: multi})
    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=SPILL_BATCH_ROWS)
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


class _TableRun:
    """A run held in memory."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.num_rows = table.num_rows
        self._times = table.column(TIME)
        self._pos = 0

    def multi_value_columns(self) -> set[str]:
        return _multi_value_columns(self.table)

    def sample(self, step: int) -> list[int]:
        """``__time`` at rows 0, step, 2 * step, ..."""
        positions = pa.array(range(0, self.num_rows, step), type=pa.int64())
        return list(self._times.take(positions).to_pylist())

    def take_until(self, cut: int | None) -> pa.Table | None:
        """The next rows with ``__time`` before ``cut`` (every row left when ``None``)."""
        start = self._pos
        end = self.num_rows if cut is None else _bisect_left(self._times, cut, start)
        self._pos = end
        return self.table.slice(start, end - start) if end > start else None


class _FileRun:
    """A spill file, read a record batch at a time (plain reads: nothing stays mapped)."""

    def __init__(self, path: Path, num_rows: int) -> None:
        self.path = path
        self.num_rows = num_rows
        with pa.OSFile(str(path), "rb") as source:
            reader = pa.ipc.open_file(source)
            self._schema = reader.schema
            self._num_batches = reader.num_record_batches
        # Per batch: rows, first and last __time (None for an empty batch); filled by sample().
        self._rows: list[int] = []
        self._first: list[int | None] = []
        self._last: list[int | None] = []
        self._batch = 0
        self._row = 0
        self._next_time: int | None = None

    def multi_value_columns(self) -> set[str]:
        stored = (self._schema.metadata or {}).get(_MULTI_KEY)
        if stored is not None:
            return set(json.loads(stored))
        out: set[str] = set()  # a file written without the metadata: look at every batch
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_file(source)
            for index in range(self._num_batches):
                out |= _multi_value_columns(reader.get_batch(index))
        return out

    def sample(self, step: int) -> list[int]:
        """``__time`` at rows 0, step, 2 * step, ...; reads only the ``__time`` column."""
        samples: list[int] = []
        rows: list[int] = []
        first: list[int | None] = []
        last: list[int | None] = []
        options = pa.ipc.IpcReadOptions(included_fields=[self._schema.get_field_index(TIME)])
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_file(source, options=options)
            offset = 0
            for index in range(self._num_batches):
                times = reader.get_batch(index).column(0)
                n = len(times)
                rows.append(n)
                if n:
                    first.append(times[0].as_py())
                    last.append(times[n - 1].as_py())
                    local = range((-offset) % step, n, step)
                    if len(local):
                        samples.extend(times.take(pa.array(local, type=pa.int64())).to_pylist())
                else:
                    first.append(None)
                    last.append(None)
                offset += n
        self._rows, self._first, self._last = rows, first, last
        self._skip_empty()
        return samples

    def _skip_empty(self) -> None:
        while self._batch < len(self._rows) and self._row >= self._rows[self._batch]:
            self._batch += 1
            self._row = 0
        if self._batch < len(self._rows) and self._row == 0:
            self._next_time = self._first[self._batch]

    def take_until(self, cut: int | None) -> pa.Table | None:
        """The next rows with ``__time`` before ``cut`` (every row left when ``None``)."""
        if self._batch >= self._num_batches:
            return None
        if cut is not None and self._next_time is not None and self._next_time >= cut:
            return None  # known without reading anything
        batches: list[pa.RecordBatch] = []
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_file(source)
            while self._batch < self._num_batches:
                batch = reader.get_batch(self._batch)
                start, n = self._row, batch.num_rows
                last = self._last[self._batch] if self._last else None
                if cut is None or (last is not None and last < cut):
                    end = n
                else:
                    end = _bisect_left(batch.column(TIME), cut, start)
                if end > start:
                    piece = batch if (start, end) == (0, n) else batch.slice(start, end - start)
                    if 2 * piece.num_rows < n:  # do not keep a whole batch alive for a few of its rows
                        piece = _compact(piece)
                    batches.append(piece)
                if end < n:
                    self._row = end
                    self._next_time = batch.column(TIME)[end].as_py()
                    break
                self._batch += 1
                self._row = 0
                self._next_time = None
                if self._first and self._batch < self._num_batches:
                    self._next_time = self._first[self._batch]
        if not batches:
            return None
        return pa.Table.from_batches(batches).replace_schema_metadata(None)


_Run = _TableRun | _FileRun


def _compact(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A copy of a (sliced) batch that owns just its rows."""
    return pa.RecordBatch.from_arrays([pa.concat_arrays([c]) for c in batch.columns], schema=batch.schema)


def _as_run(part: pa.Table | RunPart) -> _Run:
    if isinstance(part, pa.Table):
        return _TableRun(part)
    if part.table is not None:
        return _TableRun(part.table)
    assert part.path is not None
    return _FileRun(part.path, part.num_rows)


def _time_slices(runs: Sequence[_Run], target_rows: int) -> Iterator[list[pa.Table]]:
    """Cut runs sorted by ``__time`` into aligned ``__time`` ranges of about ``target_rows`` rows.

    Yields each range as the list of the runs' non-empty pieces, in run order.
    """
    total = sum(run.num_rows for run in runs)
    if total <= target_rows:
        everything = [run.take_until(None) for run in runs]
        pieces = [piece for piece in everything if piece is not None and piece.num_rows]
        if pieces:
            yield pieces
        return
    # Pick cut times from an evenly spaced sample of every run (each sample stands for `step` rows).
    step = max(1, target_rows // (4 * len(runs)))
    samples: list[int] = []
    for run in runs:
        samples.extend(run.sample(step))
    samples.sort()
    cuts: list[int] = []
    acc = 0
    for value in samples:
        if acc >= target_rows and (not cuts or value > cuts[-1]):
            cuts.append(value)
            acc = 0
        acc += step
    for cut in [*cuts, None]:
        pieces = []
        for run in runs:
            piece = run.take_until(cut)
            if piece is not None and piece.num_rows:
                pieces.append(piece)
        if pieces:
            yield pieces


def _time_at(table: pa.Table, row: int) -> int:
    value = table.column(TIME)[row].as_py()
    assert isinstance(value, int)
    return value


def _shared_times(pieces: Sequence[pa.Table]) -> pa.Array:
    """The ``__time`` values found in more than one piece."""
    distinct = [pc.unique(piece.column(TIME)) for piece in pieces]
    counts = pc.value_counts(pa.chunked_array(distinct, type=pa.int64()))
    return counts.field("values").filter(pc.greater(counts.field("counts"), 1))


def _overlaps(bounds: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ``__time`` ranges (inclusive, disjoint, in order) where two or more of ``bounds`` overlap."""
    ranges = sorted(bounds)
    windows: list[tuple[int, int]] = []
    for i, (_, high) in enumerate(ranges):
        for other_low, other_high in ranges[i + 1 :]:
            if other_low > high:
                break
            windows.append((other_low, min(high, other_high)))
    windows.sort()
    merged: list[tuple[int, int]] = []
    for low, high in windows:
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _merge_pieces(
    pieces: Sequence[pa.Table], plan: ColumnPlan, keys: Sequence[str], rollup_enabled: bool
) -> pa.Table:
    """The rows of runs' pieces (same schema, each in segment order) in segment order, rolled up.

    Gives exactly ``sort_table(concat(pieces), keys)`` (then ``merge_sorted_duplicates`` with
    rollup). Outside the ``__time`` ranges where pieces overlap, rows of one piece follow each
    other in its order; only rows inside an overlap are merged (:func:`_merge_overlapping`).
    """
    if len(pieces) == 1:
        return pieces[0]
    bounds = [(_time_at(piece, 0), _time_at(piece, piece.num_rows - 1)) for piece in pieces]
    windows = _overlaps(bounds)
    if not windows:
        return pa.concat_tables([pieces[i] for i in sorted(range(len(pieces)), key=lambda i: bounds[i])])
    if windows == [(min(b[0] for b in bounds), max(b[1] for b in bounds))]:
        return _merge_overlapping(pieces, plan, keys, rollup_enabled)
    # Runs of rows between windows come from a single piece; each window is merged on its own.
    # Every part covers its own time range, so ordering parts by their first time orders the rows.
    parts: list[tuple[int, pa.Table]] = []
    inside: list[list[pa.Table]] = [[] for _ in windows]
    for piece, (first, last) in zip(pieces, bounds, strict=True):
        times = piece.column(TIME)
        position = 0
        for index, (low, high) in enumerate(windows):
            if high < first or low > last:
                continue
            begin = _bisect_left(times, low, position)
            end = _bisect_left(times, high + 1, begin)
            if begin > position:
                parts.append((_time_at(piece, position), piece.slice(position, begin - position)))
            if end > begin:
                inside[index].append(piece.slice(begin, end - begin))
            position = end
        if position < piece.num_rows:
            parts.append((_time_at(piece, position), piece.slice(position)))
    for (low, _), window_pieces in zip(windows, inside, strict=True):
        if window_pieces:
            parts.append((low, _merge_overlapping(window_pieces, plan, keys, rollup_enabled)))
    parts.sort(key=lambda part: part[0])
    return pa.concat_tables([table for _, table in parts])


def _merge_overlapping(
    pieces: Sequence[pa.Table], plan: ColumnPlan, keys: Sequence[str], rollup_enabled: bool
) -> pa.Table:
    """:func:`_merge_pieces` for pieces whose time ranges overlap.

    Sorts only rows whose ``__time`` occurs in several pieces: another row's place is fixed by
    its ``__time`` and its piece's order, and it has no equal key in another piece.
    """
    if len(pieces) == 1:
        return pieces[0]
    table = pa.concat_tables(pieces)
    times = table.column(TIME)
    shared = _shared_times(pieces)
    if len(shared) == 0:
        return _gather(table, pc.sort_indices(times))
    in_shared = pc.is_in(times, value_set=shared)
    tied = sort_table(table.filter(in_shared), keys)
    if rollup_enabled:
        tied = merge_sorted_duplicates(tied, plan, keys)
    alone = pc.indices_nonzero(pc.invert(in_shared)).cast(pa.int64())
    if len(alone) == 0:
        return tied
    # Rows in `alone` and in `tied` have different times, and each set is in segment order:
    # a stable sort by __time interleaves them into the segment order.
    positions = pa.concat_arrays([alone, _arange(table.num_rows, tied.num_rows)])
    candidate_times = pa.chunked_array([*times.take(alone).chunks, *tied.column(TIME).chunks])
    return _gather(pa.concat_tables([table, tied]), positions.take(pc.sort_indices(candidate_times)))


# --------------------------------------------------------------------------- segments


def _file_stamp(ms: int) -> str:
    text = format_interval_ms(ms)
    if not text.endswith("Z"):
        return text
    return text.replace("-", "").replace(":", "").replace(".000Z", "Z")


def segment_file_name(start_ms: int, end_ms: int, shard: int) -> str:
    """``20240101T000000Z_20240102T000000Z_0.parquet`` (ms shown only when not zero)."""
    return f"{_file_stamp(start_ms)}_{_file_stamp(end_ms)}_{shard}.parquet"


def _leaf_path(field: pa.Field) -> str:
    """The Parquet column path of a top-level field (a ``list<string>`` is ``name.list.element``)."""
    return f"{field.name}.list.element" if pa.types.is_list(field.type) else field.name


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
                compression_level=PARQUET_COMPRESSION_LEVEL,
                use_dictionary=[_leaf_path(f) for f in self.schema if f.name != TIME],
                column_encoding={TIME: PARQUET_TIME_ENCODING},
                use_compliant_nested_type=True,
                write_statistics=True,
            )
        return self._writer

    def _drain(self, full_only: bool) -> None:
        while self._pending_rows >= self.row_group or (not full_only and self._pending_rows > 0):
            combined = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
            size = min(self.row_group, combined.num_rows)
            group = combined.slice(0, size)
            if any(column.num_chunks > 1 for column in group.columns):
                # Parquet page and dictionary-fallback boundaries follow the input chunks: a
                # contiguous row group keeps the bytes independent of how rows were sliced.
                group = group.combine_chunks()
            self._open().write_table(group, row_group_size=size)
            del group
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
    parts: Sequence[pa.Table | RunPart],
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
    duplicate keys (:func:`finalize_run`). Parts are tables or :class:`RunPart` objects; a
    spilled ``RunPart`` is read one time slice at a time, so memory does not grow with the number of
    runs (an opened table, :meth:`RunPart.open`, stays mapped until this returns).
    """
    internal = plan.internal_schema()
    dims = plan.dimensions
    runs = [run for run in map(_as_run, parts) if run.num_rows]
    if not runs:
        return []
    string_dims = {d.col for d in dims if d.kind == "string"}
    multi: set[str] = set()
    for run in runs:
        multi |= run.multi_value_columns() & string_dims
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
        for pieces in _time_slices(runs, slice_rows or MERGE_SLICE_ROWS):
            table = _merge_pieces([conform(p, internal) for p in pieces], plan, sort_keys, rollup_enabled)
            writer.write(_to_output(table, plan, multi, schema))
            del table, pieces
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _to_output(table: pa.Table, plan: ColumnPlan, multi: set[str], schema: pa.Schema) -> pa.Table:
    columns: list[Any] = [table.column(TIME)]
    for d in plan.dimensions:
        column = table.column(d.col)
        if d.kind == "string" and (d.col in multi or _has_nul(column)):
            columns.append(decode_string_column(column, d.col in multi))
        else:
            columns.append(column)  # nothing encoded: decoding would return the same values
    for m in plan.metrics:
        column = table.column(m.col)
        columns.append(column if column.type == m.output_type else pc.cast(column, m.output_type))
    return pa.Table.from_arrays(columns, schema=schema)

"""Parquet segments: the merged runs of one segment interval written as sorted, sharded files.

Parquet output is deterministic: the same rows give byte-identical files, whatever the persist
points were, because row groups have a fixed size (:data:`ROW_GROUP_ROWS`), are written from
contiguous arrays (Arrow cuts pages where its input chunks end) and rows are totally ordered.

The pieces: :mod:`~middlemanager.ingest.buckets` (time buckets), :mod:`~middlemanager.ingest.rollup`
(row order, rollup), :mod:`~middlemanager.ingest.runs` (spill files) and
:mod:`~middlemanager.ingest.merge` (merging runs a time slice at a time).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from middlemanager.ingest.merge import MERGE_SLICE_ROWS, merge_pieces, time_slices
from middlemanager.ingest.models import SegmentFile, format_interval_ms
from middlemanager.ingest.rollup import conform, finalize_run, sort_keys_of
from middlemanager.ingest.runs import Run, RunPart, as_run, has_nul
from middlemanager.ingest.schema import TEXT_KINDS, TIME, ColumnPlan, decode_string_column, decode_text_column
from supervisor.spec import ColumnKind, IndexSpec

__all__ = [
    "ROW_GROUP_ROWS",
    "concat_rows",
    "merged_run",
    "projected_rows",
    "reaggregation_exact",
    "segment_file_name",
    "segment_table",
    "write_segment",
]

ROW_GROUP_ROWS = 131_072
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


# Front coding of string dictionaries (Druid's indexSpec stringDictionaryEncoding frontCoded)
# as Parquet's prefix encoding of byte arrays.
PARQUET_FRONT_CODED_ENCODING = "DELTA_BYTE_ARRAY"


@dataclass(frozen=True, slots=True)
class _WriterOptions:
    """Per-column Parquet settings of a segment (see :func:`_writer_options`)."""

    compression: dict[str, str]
    compression_level: dict[str, int]
    use_dictionary: list[str]
    column_encoding: dict[str, str]


def _writer_options(schema: pa.Schema, plan: ColumnPlan, index_spec: IndexSpec | None) -> _WriterOptions:
    """Druid's indexSpec where it maps to Parquet: the codec of the time and metric columns
    (metricCompression; Druid compresses __time as a metric), of dimensions
    (dimensionCompression, jsonCompression for json ones), of sketches (complexMetricCompression),
    and front-coded string dictionaries. Anything not asked for keeps the defaults above."""
    spec = index_spec or IndexSpec()
    kinds: dict[str, ColumnKind] = {TIME: "metric"}
    string_dims: set[str] = set()
    for d in plan.dimensions:
        kinds[d.name] = "json" if d.kind == "json" else "dimension"
        if d.kind in ("string", "array_string"):
            string_dims.add(d.name)
    for m in plan.metrics:
        kinds[m.name] = "complex" if m.kind == "sketch" else "metric"
    compression: dict[str, str] = {}
    levels: dict[str, int] = {}
    dictionary: list[str] = []
    encoding = {TIME: PARQUET_TIME_ENCODING}
    for field in schema:
        path = _leaf_path(field)
        codec = spec.codec(kinds[field.name]) or PARQUET_COMPRESSION
        compression[path] = codec
        if codec == PARQUET_COMPRESSION:
            levels[path] = PARQUET_COMPRESSION_LEVEL
        if field.name == TIME:
            continue
        if spec.front_coded and field.name in string_dims:
            encoding[path] = PARQUET_FRONT_CODED_ENCODING
        else:
            dictionary.append(path)
    return _WriterOptions(compression, levels, dictionary, encoding)


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
        options: _WriterOptions | None = None,
    ) -> None:
        self.options = options or _WriterOptions(
            {_leaf_path(f): PARQUET_COMPRESSION for f in schema},
            {_leaf_path(f): PARQUET_COMPRESSION_LEVEL for f in schema},
            [_leaf_path(f) for f in schema if f.name != TIME],
            {TIME: PARQUET_TIME_ENCODING},
        )
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
                compression=self.options.compression,
                compression_level=self.options.compression_level,
                use_dictionary=self.options.use_dictionary,
                column_encoding=self.options.column_encoding,
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
    index_spec: IndexSpec | None = None,
) -> list[SegmentFile]:
    """Merge the runs of one segment interval into sorted, sharded Parquet files.

    Every part must be a run: sorted by :func:`sort_keys_of` and, with rollup, free of
    duplicate keys (:func:`finalize_run`). Parts are tables or :class:`RunPart` objects; a
    spilled ``RunPart`` is read one time slice at a time, so memory does not grow with the number of
    runs (an opened table, :meth:`RunPart.open`, stays mapped until this returns).
    """
    prepared = _prepare(parts, plan)
    if prepared is None:
        return []
    runs, multi, schema = prepared
    dims = plan.dimensions
    writer = _ShardWriter(
        out_dir,
        start_ms,
        end_ms,
        schema,
        max_rows_per_segment,
        [d.name for d in dims],
        [m.name for m in plan.metrics],
        _writer_options(schema, plan, index_spec),
    )
    try:
        for table in _output_slices(runs, plan, rollup_enabled, multi, schema, slice_rows):
            writer.write(table)
            del table
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def segment_table(
    parts: Sequence[pa.Table | RunPart], plan: ColumnPlan, *, rollup_enabled: bool
) -> pa.Table | None:
    """The rows :func:`write_segment` would write for these runs, as one table (no file).

    Same merge, same rollup, same output columns and types as the published Parquet segment:
    a running task answers a query for its in-flight rows with it (issue 15.2).
    """
    prepared = _prepare(parts, plan)
    if prepared is None:
        return None
    runs, multi, schema = prepared
    tables = list(_output_slices(runs, plan, rollup_enabled, multi, schema, None))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _prepare(
    parts: Sequence[pa.Table | RunPart], plan: ColumnPlan
) -> tuple[list[Run], set[str], pa.Schema] | None:
    """The non-empty runs, the multi-value string dimensions among them and the output schema."""
    dims = plan.dimensions
    runs = [run for run in map(as_run, parts) if run.num_rows]
    if not runs:
        return None
    string_dims = {d.col for d in dims if d.kind == "string"}
    multi: set[str] = set()
    for run in runs:
        multi |= run.multi_value_columns() & string_dims
    fields = [pa.field(TIME, pa.int64(), nullable=False)]
    for d in dims:
        fields.append(pa.field(d.name, pa.list_(pa.string()) if d.col in multi else d.output_type))
    fields += [pa.field(m.name, m.output_type) for m in plan.metrics]
    return runs, multi, pa.schema(fields)


def _output_slices(
    runs: list[Run],
    plan: ColumnPlan,
    rollup_enabled: bool,
    multi: set[str],
    schema: pa.Schema,
    slice_rows: int | None,
) -> Iterator[pa.Table]:
    """The merged runs a time slice at a time, in the output columns."""
    for table in _merged_slices(runs, plan, rollup_enabled, slice_rows):
        yield _to_output(table, plan, multi, schema)
        del table


def _merged_slices(
    runs: list[Run], plan: ColumnPlan, rollup_enabled: bool, slice_rows: int | None
) -> Iterator[pa.Table]:
    """The merged runs a time slice at a time, in the internal columns."""
    internal = plan.internal_schema()
    sort_keys = sort_keys_of(plan, rollup_enabled)
    for pieces in time_slices(runs, slice_rows or MERGE_SLICE_ROWS):
        pieces = [_upgraded(p, plan, rollup_enabled) for p in pieces]
        yield merge_pieces([conform(p, internal) for p in pieces], plan, sort_keys, rollup_enabled)
        del pieces


def merged_run(
    parts: Sequence[pa.Table | RunPart], plan: ColumnPlan, *, rollup_enabled: bool
) -> pa.Table | None:
    """The runs merged into one run (internal columns, segment order, rolled up): what
    :func:`segment_table` merges, before its output conversion. The merge is stable, so merging
    this run with later runs gives the rows merging them all at once gives; with rollup the
    metrics are aggregated in two steps, the same values only where re-aggregating is exact
    (:func:`reaggregation_exact`)."""
    prepared = _prepare(parts, plan)
    if prepared is None:
        return None
    tables = list(_merged_slices(prepared[0], plan, rollup_enabled, None))
    return pa.concat_tables(tables) if tables else None


def reaggregation_exact(plan: ColumnPlan) -> bool:
    """Whether every metric aggregated in two steps (partial results, then those) has the value
    of aggregating all at once: min, max, first, last, any, and sums of integers; not the sums
    of floating point numbers (addition is not associative) nor sketches (a sketch of sketches
    need not have the same bytes)."""
    for m in plan.metrics:
        if m.kind == "sketch":
            return False
        if m.kind == "sum" and not pa.types.is_integer(m.output_type):
            return False
    return True


def _upgraded(piece: pa.Table, plan: ColumnPlan, rollup_enabled: bool) -> pa.Table:
    """A piece of a run held before a discovered column's type widened, in the current types
    (re-sorted and rolled up: converted values order and group differently)."""
    upgraded = plan.upgrade(piece)
    return piece if upgraded is piece else finalize_run(upgraded, plan, rollup_enabled)


def projected_rows(
    parts: Sequence[pa.Table | RunPart], plan: ColumnPlan, names: Collection[str]
) -> pa.Table | None:
    """The rows :func:`segment_table` gives for these runs with rollup off, only the output
    columns ``names`` (in the segment's column order; none: a table of no columns with the rows'
    count), in no particular order: no merge and no sort, as without rollup no two rows merge
    and a query's answer does not depend on the order of the rows it reads (issue 15.2).
    """
    prepared = _prepare(parts, plan)
    if prepared is None:
        return None
    _, multi, schema = prepared  # the types of the whole merged set, multi-value lists included
    wanted = set(names)
    projected = pa.schema([f for f in schema if f.name in wanted])
    internal = plan.internal_schema()
    tables = []
    for part in parts:
        table = part.open() if isinstance(part, RunPart) else part
        if table.num_rows:
            tables.append(_to_output(conform(plan.upgrade(table), internal), plan, multi, projected))
    return concat_rows(tables)


def concat_rows(tables: Sequence[pa.Table]) -> pa.Table | None:
    """One table of ``tables`` (types promoted), rows counted even when they have no column."""
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    if tables[0].num_columns == 0:  # concat_tables would drop the rows' count
        return pa.table([pa.nulls(sum(t.num_rows for t in tables))], names=["_"]).select([])
    return pa.concat_tables(tables, promote_options="default")


def _to_output(table: pa.Table, plan: ColumnPlan, multi: set[str], schema: pa.Schema) -> pa.Table:
    """``table`` (internal columns) in the output columns of ``schema`` (all, or some of them)."""
    if len(schema) == 0:
        return table.select([])  # no column, the rows' count
    wanted = set(schema.names)
    columns: list[Any] = [table.column(TIME)] if TIME in wanted else []
    for d in plan.dimensions:
        if d.name not in wanted:
            continue
        column = table.column(d.col)
        if d.kind in TEXT_KINDS:
            columns.append(decode_text_column(column, d.kind))
        elif d.kind == "string" and (d.col in multi or has_nul(column)):
            columns.append(decode_string_column(column, d.col in multi))
        else:
            columns.append(column)  # nothing encoded: decoding would return the same values
    for m in plan.metrics:
        if m.name not in wanted:
            continue
        column = table.column(m.col)
        if m.value_kind == "string" and has_nul(column):
            column = decode_string_column(column, False)
        columns.append(column if column.type == m.output_type else pc.cast(column, m.output_type))
    return pa.Table.from_arrays(columns, schema=schema)

"""Spill runs: the rows of one persist and segment interval, in segment order, on disk or in memory.

Spill files ("runs") are Arrow IPC files, one per persist and segment interval, each already in
the segment order and, with rollup, without duplicate keys
(:func:`~middlemanager.ingest.rollup.finalize_run`). They are
written in record batches of :data:`SPILL_BATCH_ROWS` rows, and the names of the string columns
holding multi-value rows go into the file's schema metadata.

At finish a run is read back a time slice at a time (:func:`as_run`, ``take_until``) by
:mod:`middlemanager.ingest.merge`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from middlemanager.ingest.schema import TIME, has_multi_values

__all__ = ["SPILL_BATCH_ROWS", "Run", "RunPart", "as_run", "bisect_left", "has_nul", "write_run_part"]

# Record batch size of spill files: the unit read back at finish. A slice reads whole batches
# and keeps only its rows of the batch at each end, so small batches keep reads close to the
# slice; but writing costs more per row the smaller the batches (IPC write of 163,840 wikipedia
# rows, median us/row: 4096 rows 0.160, 8192 0.162, 16384 0.139, 32768 0.115, 131072 0.101).
# 16384 rows are about 4 MiB of wikipedia-like rows.
SPILL_BATCH_ROWS = 16_384
# Schema metadata of a spill file: JSON list of its string columns holding multi-value rows.
_MULTI_KEY = b"multi_value_columns"


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


def has_nul(column: pa.Array | pa.ChunkedArray) -> bool:
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


def multi_value_columns(table: pa.Table | pa.RecordBatch) -> set[str]:
    """Names of the string columns of ``table`` holding at least one multi-value row."""
    out = set()
    for field in table.schema:
        if field.name == TIME or not pa.types.is_string(field.type):
            continue
        column = table.column(field.name)
        if has_nul(column) and has_multi_values(column):
            out.add(field.name)
    return out


def write_run_part(path: Path, table: pa.Table) -> None:
    """Spill a run (rows in segment order) to an Arrow IPC file, atomically."""
    multi = json.dumps(sorted(multi_value_columns(table))).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _MULTI_KEY: multi})
    tmp = path.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=SPILL_BATCH_ROWS)
    os.replace(tmp, path)


def bisect_left(values: pa.ChunkedArray | pa.Array, target: int, lo: int = 0) -> int:
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
        return multi_value_columns(self.table)

    def sample(self, step: int) -> list[int]:
        """``__time`` at rows 0, step, 2 * step, ..."""
        positions = pa.array(range(0, self.num_rows, step), type=pa.int64())
        return list(self._times.take(positions).to_pylist())

    def take_until(self, cut: int | None) -> pa.Table | None:
        """The next rows with ``__time`` before ``cut`` (every row left when ``None``)."""
        start = self._pos
        end = self.num_rows if cut is None else bisect_left(self._times, cut, start)
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
                out |= multi_value_columns(reader.get_batch(index))
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
                    end = bisect_left(batch.column(TIME), cut, start)
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


Run = _TableRun | _FileRun


def _compact(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A copy of a (sliced) batch that owns just its rows."""
    return pa.RecordBatch.from_arrays([pa.concat_arrays([c]) for c in batch.columns], schema=batch.schema)


def as_run(part: pa.Table | RunPart) -> Run:
    if isinstance(part, pa.Table):
        return _TableRun(part)
    if part.table is not None:
        return _TableRun(part.table)
    assert part.path is not None
    return _FileRun(part.path, part.num_rows)

"""The ingest pipeline of one Kafka indexing task: records in, Parquet segments out.

Flow. :meth:`IngestPipeline.add` buffers records; a batch becomes an Arrow table either

* on the fast path (``fastjson.py``): Arrow's JSON reader parses the whole batch into
  typed columns, when the datasource allows it (explicit dimensions, no filter, ...) and
  the batch is provably read the same way by both parsers; or
* on the reference path: orjson parses each record into a dict, checked one by one
  (value, JSON object, timestamp, message-time window, ``transformSpec`` filter), and
  every :data:`BUFFER_ROWS` rows the dicts become columns (``schema.RowConverter``:
  type conversion, per-row column errors).

Both give identical rows, stats and reports (tested). ``__time`` is the row time
truncated to the query granularity. With rollup a batch is grouped right away when that
pays off, and in-memory tables are merged from time to time. When the rows or bytes in
memory reach ``maxRowsInMemory`` / ``maxBytesInMemory`` everything in memory is sorted
and spilled to ``work_dir`` (:meth:`persist`). :meth:`finish` merges spills and memory
one segment interval (and time slice) at a time and writes the segments.

Records may wait in the buffer across ``add`` calls; reading any state (``stats``,
``parse_exceptions``, ``rejected``, ...), ``persist`` and ``finish`` ingest them first.
With a finite ``maxParseExceptions`` each ``add`` ingests its records before returning,
so the limit is enforced right away.

Thread-safe: every public method holds the pipeline's lock (``add`` for its whole batch),
so another thread may read ``stats`` or ``parse_exceptions`` for a live report.
"""

from __future__ import annotations

import gc
import logging
import shutil
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import accumulate, compress
from pathlib import Path
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from middlemanager.ingest import sketches
from middlemanager.ingest.buckets import bucket_starts, split_by_segment
from middlemanager.ingest.fastjson import (
    INPUT_PREFIX,
    FastJsonPath,
    ParsedBatch,
    cast_exactly,
    row_path_column,
)
from middlemanager.ingest.formats import DecodedBatch, reader_for
from middlemanager.ingest.models import (
    ErrorType,
    ParseExceptionReport,
    RejectedRecord,
    RowStats,
    SegmentFile,
    format_interval_ms,
    raw_input_text,
)
from middlemanager.ingest.pushdown import narrowed, read_by
from middlemanager.ingest.rollup import finalize_run, rollup
from middlemanager.ingest.runs import RunPart, write_run_part
from middlemanager.ingest.schema import (
    DIM_LABEL,
    INTERNAL_TYPES,
    ColumnPlan,
    FilterMask,
    RowConverter,
    convert_column,
    field_label,
)
from middlemanager.ingest.segments import (
    concat_rows,
    merged_run,
    projected_rows,
    reaggregation_exact,
    segment_table,
    write_segment,
)
from middlemanager.ingest.timestamps import TimestampError, arrow_times, make_timestamp_parser
from middlemanager.ingest.transforms import (
    TransformStage,
    column_of,
    filter_columns,
    filter_mask,
    result_values,
)
from supervisor.errors import IllegalStateTransition, TooManyParseExceptions
from supervisor.records import Record, RecordBatch
from supervisor.spec import MAX_PARSE_EXCEPTIONS_UNLIMITED, TIME_COLUMN, DimFilter, SupervisorSpec

__all__ = ["BUFFER_ROWS", "MAX_RECORD_BYTES", "IngestPipeline"]

log = logging.getLogger(__name__)

# Record values larger than this are unparseable (a JSON event is rarely above a few KiB).
MAX_RECORD_BYTES = 1024 * 1024
# Parsed rows held as Python objects before they become an Arrow table.
BUFFER_ROWS = 4096
# Raw records parsed together by the fast path (more rows: better use of Arrow's threads).
FAST_BATCH_ROWS = 16384
# Batches parsed at the same time (each on a thread of its own, with Arrow's threads inside).
_PARSE_DEPTH = 2
# Whether the batches of a format with a reader are decoded on the parser threads (False: on
# the caller's thread, as a reference in tests).
_DECODE_ON_THREADS = True
# The raw JSON waiting for the fast path may take up to this share of maxBytesInMemory.
_FAST_BYTES_SHARE = 16
# A refused fast batch is split in halves down to this size, to keep clean records on the fast path.
_FAST_MIN_SPLIT = 256
# At most this many batches go straight to the reference path after the fast path refused one.
_FAST_MAX_BACKOFF = 64
# Rough memory cost of a parsed row kept as Python objects, per byte of JSON.
_PY_BYTES_PER_JSON_BYTE = 6
# Parsed timestamp strings remembered (events often share a timestamp).
_TS_CACHE_SIZE = 65536
# How much of the text of a bad event goes into an error message.
_EVENT_TEXT = 256
# In-memory tables merged into one (rollup) or concatenated once there are this many.
_MAX_CHUNKS = 16
# Rollup of a buffer is worth doing when it keeps at most this share of the rows.
_USEFUL_ROLLUP = 0.9


class _Decoded(NamedTuple):
    """A reader's decode of a batch (made on a parser thread), typed for the columnar path."""

    decoded: DecodedBatch
    # the table in the columnar path's types; None: the rows go the row path
    typed: pa.Table | None
    may_have_nul: bool


# A batch on a parser thread: the fast JSON path's parse, or a reader's decode.
_Parsing = Future[ParsedBatch | None] | Future[_Decoded]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while parsing.

    Parsing allocates a dict per record and keeps thousands alive until they become
    Arrow columns: the GC would scan them over and over for nothing (no cycles are made
    here), costing about a quarter of the time.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[IngestPipeline, _P], _R],
) -> Callable[Concatenate[IngestPipeline, _P], _R]:
    """Run a public method under the pipeline's lock (reports are read from other threads)."""

    def locked(self: IngestPipeline, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    locked.__name__ = method.__name__
    locked.__qualname__ = method.__qualname__
    locked.__doc__ = method.__doc__
    return locked


def _flat(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column


def _value_sizes(values: list[bytes | None]) -> list[int]:
    try:
        return list(map(len, values))  # type: ignore[arg-type]  # a None makes it fail
    except TypeError:
        return [len(value) if value else 0 for value in values]


def _inside(windows: tuple[tuple[int, int], ...], ms: int) -> bool:
    """Whether ``ms`` is in one of the sorted, disjoint ``[start, end)`` windows."""
    index = bisect_right(windows, ms, key=lambda window: window[0]) - 1
    return index >= 0 and ms < windows[index][1]


def _event_text(value: bytes) -> str:
    text = value[:_EVENT_TEXT].decode("utf-8", errors="replace")
    return text + "..." if len(value) > _EVENT_TEXT else text


class IngestPipeline:
    """Parses, filters, rolls up and persists records of one task; :meth:`finish` writes its segments."""

    def __init__(
        self,
        spec: SupervisorSpec,
        work_dir: Path,
        min_message_time: int | None = None,
        max_message_time: int | None = None,
    ) -> None:
        schema = spec.data_schema
        tuning = spec.tuning_config
        self._lock = threading.RLock()
        self.spec = spec
        self.work_dir = Path(work_dir)
        self.min_message_time = min_message_time
        self.max_message_time = max_message_time
        # granularitySpec.intervals, widened to segment buckets: rows outside are thrown away
        self._windows = schema.granularity_spec.bucket_windows()

        self._ts_column = schema.timestamp_spec.column
        self._ts_format = schema.timestamp_spec.format
        self._ts_parse = make_timestamp_parser(self._ts_format)
        self._ts_missing = schema.timestamp_spec.missing_value_ms
        self._ts_cache: dict[str, int] = {}
        self._filter = schema.transform_spec.filter
        # transforms and the filter run on columns when a buffer of rows is flushed
        self._stage = TransformStage(schema.transform_spec)
        self._rollup = schema.granularity_spec.rollup
        self._segment_granularity = schema.granularity_spec.segment_granularity
        self._query_granularity = schema.granularity_spec.query_granularity
        self.plan = ColumnPlan(schema)
        self._converter = RowConverter(self.plan)

        self._max_rows_in_memory = tuning.max_rows_in_memory
        self._max_bytes_in_memory = tuning.effective_max_bytes_in_memory()
        self._max_rows_per_segment = tuning.max_rows_per_segment
        self._index_spec = tuning.index_spec
        self._max_parse_exceptions = tuning.max_parse_exceptions
        self._log_parse_exceptions = tuning.log_parse_exceptions
        self._saved: deque[ParseExceptionReport] = deque(maxlen=tuning.max_saved_parse_exceptions)
        self._collect_rejected = tuning.dead_letter_topic is not None
        self._rejected: list[RejectedRecord] = []

        self._stats = RowStats()
        self._flush_rows = min(BUFFER_ROWS, self._max_rows_in_memory)
        self._flush_bytes = max(1, self._max_bytes_in_memory // (4 * _PY_BYTES_PER_JSON_BYTE))
        # Python-level buffer of accepted rows.
        # Raw records waiting for the fast path (see fastjson.py), when the datasource allows it.
        columnar = FastJsonPath.supports(
            self.plan, self._ts_column, schema.timestamp_spec.format, self._stage
        )
        # A format other than json has a reader (middlemanager/ingest/formats/); its tables
        # take the columnar path of the fast JSON path when the datasource allows it.
        self._reader = reader_for(spec.io_config.input_format)
        self._fast = (
            FastJsonPath(
                self.plan, self._ts_column, schema.timestamp_spec.format, MAX_RECORD_BYTES, self._stage
            )
            if columnar
            else None
        )
        # (the inputs of the transformSpec and filtered aggregators ride in the typed table as the
        # row path gives them: see ``_typed``)
        self._columnar = self._fast if self._reader is not None else None
        if self._reader is not None:
            self._fast = None
        self._fast_rows = min(FAST_BATCH_ROWS, self._max_rows_in_memory)
        # Raw JSON waiting for the fast path costs about its own size (no Python objects).
        self._fast_bytes = max(1, self._max_bytes_in_memory // _FAST_BYTES_SHARE)
        # Up to _PARSE_DEPTH batches are parsed on threads of their own while the caller reads on.
        self._parser: ThreadPoolExecutor | None = None
        # Batches on the parser threads, oldest first, with their raw bytes.
        # (a format with a reader: its decode, typed for the columnar path when it can be)
        self._in_flight: deque[tuple[RecordBatch, _Parsing, int]] = deque()
        # Ingest each add() at once when a parse exception limit must be enforced right away.
        self._eager = tuning.max_parse_exceptions < MAX_PARSE_EXCEPTIONS_UNLIMITED
        self._failed = False
        self._settling = False
        self._pending: list[RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._fast_backoff = 0
        self._fast_skip = 0
        self._rows: list[dict[str, Any]] = []
        self._times: list[int] = []
        self._records: list[Record] = []
        self._buffer_bytes = 0
        # Whether a buffered row's JSON has a "\u0000" escape (a string might start with NUL).
        self._nul_seen = False
        # Arrow tables in memory, with whether each one is already rolled up.
        self._chunks: list[tuple[pa.Table, bool]] = []
        self._chunk_rows = 0
        self._chunk_bytes = 0
        self._rollup_useful = True
        self._next_rollup_merge = 0
        self._flushes = 0
        # Spilled runs: segment start -> parts in persist order.
        self._runs: dict[int, list[RunPart]] = {}
        self._persists = 0
        self._finished = False
        # The in-flight rows' cache (issue 15.2): segment start -> (how many of its spilled parts,
        # those merged into one run file). Only where merging in two steps is exact.
        self._merged_spills: dict[int, tuple[int, RunPart]] = {}
        self._cache_merges = not self._rollup or reaggregation_exact(self.plan)

    # ------------------------------------------------------------------ public state

    @property
    @_locked
    def stats(self) -> RowStats:
        """A snapshot of the row counters (up to date with every record added)."""
        self._settle()
        return self._stats.copy()

    @property
    @_locked
    def parse_exceptions(self) -> list[ParseExceptionReport]:
        """The last ``maxSavedParseExceptions`` parse exceptions, oldest first."""
        self._settle()
        return list(self._saved)

    @property
    @_locked
    def rejected(self) -> list[RejectedRecord]:
        """Records not ingested since the last :meth:`drain_rejected` (only with a dead-letter topic)."""
        self._settle()
        return list(self._rejected)

    @_locked
    def drain_rejected(self) -> list[RejectedRecord]:
        self._settle()
        out, self._rejected = self._rejected, []
        return out

    @property
    @_locked
    def rows_in_memory(self) -> int:
        self._settle()
        return self._chunk_rows

    @property
    @_locked
    def bytes_in_memory(self) -> int:
        self._settle()
        return self._chunk_bytes

    @property
    @_locked
    def rows_held(self) -> int:
        """Rows the pipeline holds for its segments: persisted, in memory and being parsed.

        Does not wait for the batches being parsed (their records count as rows), so it is cheap
        enough to read after every poll; ``maxTotalRows`` is checked against it.
        """
        persisted = sum(part.num_rows for parts in self._runs.values() for part in parts)
        in_flight = sum(len(batch) for batch, _, _ in self._in_flight)
        return persisted + self._chunk_rows + len(self._rows) + self._pending_rows + in_flight

    @property
    def persist_count(self) -> int:
        return self._persists

    # ------------------------------------------------------------------ ingest

    @_locked
    def add(self, records: Sequence[Record] | RecordBatch) -> None:
        """Ingest records; may persist. Raises ``TooManyParseExceptions``.

        Records may be buffered (up to :data:`FAST_BATCH_ROWS`) and parsed together with the
        next ones, on a thread of their own: reading :attr:`stats` (or any other state),
        :meth:`persist` and :meth:`finish` first ingest whatever is buffered. With a finite
        ``maxParseExceptions`` every call ingests its records before returning, so the limit
        is enforced at once.
        """
        if self._finished:
            raise IllegalStateTransition("ingest pipeline already finished")
        with _gc_paused():
            if self._reader is not None:
                self._queue_decoded(RecordBatch.of(records))
            elif self._fast is None:
                self._parse_records(records)
            else:
                self._queue_fast(RecordBatch.of(records))
            if self._eager:
                self._drain_pending()
                self._collect()
                self._flush()
                self._check_parse_exceptions()
                self._maybe_persist()

    def _queue_fast(self, batch: RecordBatch) -> None:
        """Buffer records for the fast path; hand each full buffer to a parser thread."""
        sizes = _value_sizes(batch.values)
        ends = list(accumulate(sizes))
        start = 0
        n = len(batch)
        while start < n:
            stop = min(n, start + self._fast_rows - self._pending_rows)
            # the first record at which the buffered bytes reach the limit closes the buffer too
            before = ends[start - 1] if start else 0
            stop = min(stop, bisect_left(ends, before + self._fast_bytes - self._pending_bytes, start) + 1)
            self._pending.append(batch.slice(start, stop))
            self._pending_rows += stop - start
            self._pending_bytes += ends[stop - 1] - before
            start = stop
            if self._pending_rows >= self._fast_rows or self._pending_bytes >= self._fast_bytes:
                self._drain_pending()
                self._check_parse_exceptions()
                self._maybe_persist()

    def _settle(self) -> None:
        """Ingest everything buffered into memory tables, so that the stats are exact."""
        if self._failed or not (self._pending or self._in_flight or self._rows):
            return
        # Reading state must not write spill files: persisting waits for the next add().
        self._settling = True
        try:
            with _gc_paused():
                self._drain_pending()
                self._collect()
                self._flush()
        finally:
            self._settling = False

    def _drain_pending(self) -> None:
        """Send the raw records waiting for the fast path to a parser thread (or the reference path).

        At most :data:`_PARSE_DEPTH` batches are parsed at a time; they are ingested in the
        order they were sent, so rows and reports keep the record order.
        """
        if not self._pending:
            return
        batch = RecordBatch.concat(self._pending)
        batch_bytes = self._pending_bytes
        self._pending = []
        self._pending_rows = self._pending_bytes = 0
        assert self._fast is not None
        self._fast.prepare(batch.values)
        if self._fast_skip > 0 or not self._fast.usable:
            self._collect()
            self._fast_skip = max(0, self._fast_skip - 1)
            self._reference(batch)
            return
        parsing = self._parser_pool().submit(self._fast.parse, batch.values)
        self._in_flight.append((batch, parsing, batch_bytes))

    def _parser_pool(self) -> ThreadPoolExecutor:
        """The parser threads, once at most :data:`_PARSE_DEPTH` batches are on them."""
        while len(self._in_flight) >= _PARSE_DEPTH:
            self._collect_oldest()
        if self._parser is None:
            self._parser = ThreadPoolExecutor(max_workers=_PARSE_DEPTH, thread_name_prefix="parser")
        return self._parser

    def _collect(self) -> None:
        """Ingest every batch given to the parser threads (waiting for them if need be)."""
        while self._in_flight:
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        batch, future, _ = self._in_flight.popleft()
        result = future.result()
        if isinstance(result, _Decoded):
            self._ingest_decoded(batch, result)
        elif self._fast_or_split(batch, result):
            self._fast_backoff = 0
        else:
            # Nothing of this batch could take the fast path: batches like it will likely be
            # refused too, so skip the attempt for a while.
            self._fast_backoff = min(2 * self._fast_backoff + 1, _FAST_MAX_BACKOFF)
            self._fast_skip = self._fast_backoff

    def _fast_or_split(self, batch: RecordBatch, parsed: ParsedBatch | None) -> bool:
        """Ingest the fast path's parse of the batch; if refused, try each half, down to the reference path.

        Halves are ingested in order, so rows and reports keep the record order. Returns
        whether any part of the batch took the fast path.
        """
        assert self._fast is not None
        if parsed is not None:
            self._ingest_parsed(batch, parsed)
            return True
        if len(batch) < 2 * _FAST_MIN_SPLIT:
            self._reference(batch)
            return False
        middle = len(batch) // 2
        halves = (batch.slice(0, middle), batch.slice(middle))
        taken = [self._fast_or_split(half, self._fast.parse(half.values)) for half in halves]
        return any(taken)

    def _reference(self, batch: RecordBatch) -> None:
        self._parse_records(batch)
        self._flush()

    def _ingest_parsed(
        self, batch: RecordBatch, result: ParsedBatch, builder: FastJsonPath | None = None
    ) -> None:
        """Timestamps, message-time window and stats for a batch the fast path parsed."""
        builder = builder or self._fast
        assert builder is not None
        self._stats.processed_bytes += result.value_bytes
        parsed = result.table
        raw_times = parsed.column(self._ts_column)
        # Arrow reads the usual timestamp shapes; the rest (and nulls) go through the
        # Python parser: each distinct value once, then mapped back.
        times = arrow_times(raw_times, self._ts_format)
        if times.null_count:
            undecided = pc.is_null(times)
            rest = raw_times.filter(undecided)
            distinct = pc.unique(rest)
            parsed_rest = [self._parse_time(raw_time) for raw_time in distinct.to_pylist()]
            filled = pa.array(parsed_rest, type=pa.int64()).take(pc.index_in(rest, value_set=distinct))
            if isinstance(filled, pa.ChunkedArray):
                filled = filled.combine_chunks()
            times = pc.replace_with_mask(times, undecided, filled)
        if self._stage.active:
            self._ingest_staged(batch, result, times, builder)
            return
        keep = pc.fill_null(pc.and_(pc.is_valid(times), self._in_windows(times)), False)
        if not pc.all(keep).as_py():
            # Report the rejected rows, in record order.
            for index in pc.indices_nonzero(pc.invert(keep)).to_pylist():
                ms = times[index].as_py()
                if ms is None:
                    self._bad_fast_time(batch, raw_times, index)
                else:
                    self._thrown_away(batch.record(index), self._window_reason(ms))
            parsed = parsed.filter(keep)
            times = times.filter(keep)
        if parsed.num_rows == 0:
            return
        table = builder.build(parsed, self._row_times(times), result.may_have_nul, _flat(times))
        self._stats.processed += table.num_rows
        self._keep_table(table)

    def _in_windows(self, times: pa.Array) -> pa.Array:
        """Whether each row time is inside the message-time window and granularitySpec.intervals."""
        keep = pc.is_valid(times)
        if self.min_message_time is not None:
            keep = pc.and_(keep, pc.greater_equal(times, self.min_message_time))
        if self.max_message_time is not None:
            keep = pc.and_(keep, pc.less(times, self.max_message_time))
        if self._windows is not None:
            inside = pc.and_(
                pc.greater_equal(times, self._windows[0][0]), pc.less(times, self._windows[0][1])
            )
            for start, end in self._windows[1:]:
                inside = pc.or_(inside, pc.and_(pc.greater_equal(times, start), pc.less(times, end)))
            keep = pc.and_(keep, inside)
        return keep

    def _bad_fast_time(self, batch: RecordBatch, raw_times: pa.ChunkedArray, index: int) -> None:
        record = batch.record(index)
        raw_time = raw_times[index].as_py()
        text = _event_text(record.value or b"")
        shown = "null" if raw_time is None else raw_time
        self._unparseable(record, f"Timestamp[{shown}] is unparseable! Event: {text}")

    def _ingest_staged(
        self, batch: RecordBatch, result: ParsedBatch, times: pa.Array, fast: FastJsonPath
    ) -> None:
        """The transformSpec on a batch the fast path parsed, as ``_apply_stage`` on the reference path.

        Like the reference path, the bad timestamps of the batch are reported first, then, in
        record order, the rows a transform fails on (unparseable), that the filter drops and
        that fall outside the message-time window on their (new) time (thrown away).
        """
        parsed = result.table
        raw_times = parsed.column(self._ts_column)
        rows = pa.array(range(len(batch)), type=pa.int64())
        if times.null_count:
            valid = pc.is_valid(times)
            for index in pc.indices_nonzero(pc.invert(valid)).to_pylist():
                self._bad_fast_time(batch, raw_times, index)
            parsed, times, rows = parsed.filter(valid), times.filter(valid), rows.filter(valid)
        n = parsed.num_rows
        if n == 0:
            return
        times = _flat(times)
        columns = fast.stage_columns(parsed, times)

        def as_rows() -> list[dict[str, Any]]:
            lists = {name: column.to_pylist() for name, column in columns.items() if column is not None}
            return [{name: values[index] for name, values in lists.items()} for index in range(n)]

        staged = self._stage.apply(columns, n, as_rows)
        new_times = times if staged.times is None else pa.array(staged.times, type=pa.int64())
        keep = pc.fill_null(pc.and_(staged.keep, self._in_windows(new_times)), False)
        if not pc.all(keep).as_py():
            passed = staged.keep.to_pylist()
            for index in pc.indices_nonzero(pc.invert(keep)).to_pylist():
                record = batch.record(rows[index].as_py())
                if index in staged.errors:
                    text = _event_text(record.value or b"")
                    self._unparseable(record, f"{staged.errors[index]}; event: {text}")
                elif not passed[index]:
                    self._thrown_away(record, "Row does not match the transformSpec filter")
                else:
                    self._thrown_away(record, self._window_reason(new_times[index].as_py()))
            parsed, new_times, rows = parsed.filter(keep), new_times.filter(keep), rows.filter(keep)
        kept = parsed.num_rows
        if kept == 0:
            return
        computed, errors = self._computed_columns(staged.outputs, keep, kept)
        new_times = _flat(new_times)
        table = fast.build(parsed, self._row_times(new_times), result.may_have_nul, new_times, computed)
        self._stats.processed += kept - len(errors)
        self._stats.processed_with_error += len(errors)
        self._report_column_errors(errors, lambda index: batch.record(rows[index].as_py()))
        self._keep_table(table)

    def _computed_columns(
        self, outputs: dict[str, pa.Array | list[Any]], keep: pa.Array, kept: int
    ) -> tuple[dict[str, pa.Array], dict[int, list[str]]]:
        """Transform outputs that are dimensions or metric inputs, converted as ``RowConverter`` does
        (by internal column name), for the kept rows; with the conversion errors by row."""
        computed: dict[str, pa.Array] = {}
        errors: dict[int, list[str]] = {}
        wanted: list[tuple[str, str, str, str, str]] = [
            (d.col, d.name, d.kind, d.multi_value_handling, DIM_LABEL) for d in self.plan.dimensions
        ]
        wanted += [
            (m.col, m.field, m.value_kind, "", field_label(m.field))
            for m in self.plan.metrics
            if m.field is not None
        ]
        everything = kept == len(keep)
        for col, name, kind, handling, label in wanted:
            output = outputs.get(name)
            if output is None or name == TIME_COLUMN:
                continue
            if isinstance(output, pa.Array):
                array = output if everything else output.filter(keep)
                if array.type == INTERNAL_TYPES[kind] and not (
                    pa.types.is_string(array.type)
                    and array.null_count < kept
                    and pc.any(pc.starts_with(array, "\x00")).as_py()
                ):
                    computed[col] = array
                    continue
                values = array.to_pylist()
            else:
                values = output if everything else list(compress(output, keep.to_pylist()))
            computed[col], column_errors = convert_column(values, kind, handling, label)
            for index, message in column_errors:
                errors.setdefault(index, []).append(message)
        return computed, errors

    def _parse_time(self, raw_time: object) -> int | None:
        """A row's time in ms; ``None`` when missing (and no missingValue) or unparseable."""
        if raw_time is None:
            return self._ts_missing
        try:
            return self._ts_parse(raw_time)
        except TimestampError:
            return None

    def _parse_records(self, records: Iterable[Record]) -> None:
        """Reference path: parse each record with orjson into the row buffer (flushed when full)."""
        self._buffer_rows(self._json_rows(records), b"\\u0000")

    def _json_rows(self, records: Iterable[Record]) -> Iterator[tuple[Record, dict[str, Any], int]]:
        """Each record's JSON object, with its size; records that are not one are unparseable."""
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        max_bytes = MAX_RECORD_BYTES
        stats = self._stats
        for record in records:
            value = record.value
            if not value:
                self._unparseable(record, "Unable to parse row []: the record has no value (tombstone)")
                continue
            size = len(value)
            stats.processed_bytes += size
            if size > max_bytes:
                self._unparseable(
                    record, f"Unable to parse row of {size} bytes: larger than the {max_bytes}-byte limit"
                )
                continue
            try:
                row = loads(value)
            except decode_error as exc:
                self._unparseable(record, f"Unable to parse row [{_event_text(value)}]: {exc}")
                continue
            if type(row) is not dict:
                self._unparseable(
                    record, f"Unable to parse row [{_event_text(value)}]: the JSON value is not an object"
                )
                continue
            yield record, row, size

    def _buffer_rows(self, parsed: Iterable[tuple[Record, dict[str, Any], int]], nul_marker: bytes) -> None:
        """Rows into the row buffer: timestamp, message-time window and filter checked per row.

        ``nul_marker``: the bytes in a record value that may make a string start with NUL.
        """
        ts_column = self._ts_column
        ts_parse = self._ts_parse
        ts_missing = self._ts_missing
        # With a transformSpec, the message-time window is checked with it in _flush (on the
        # new time when a transform replaces __time), keeping rejected records in order.
        min_time = None if self._stage.active else self.min_message_time
        max_time = None if self._stage.active else self.max_message_time
        windows = None if self._stage.active else self._windows
        # The transformSpec (transforms, then the filter) runs on columns in _flush.
        row_filter = None if self._stage.active else self._filter
        rows = self._rows
        times = self._times
        kept = self._records
        flush_rows = self._flush_rows
        flush_bytes = self._flush_bytes
        ts_cache = self._ts_cache
        buffered = self._buffer_bytes
        nul_seen = self._nul_seen
        try:
            for record, row, size in parsed:
                raw_time = row.get(ts_column)
                if type(raw_time) is str and raw_time in ts_cache:
                    ms = ts_cache[raw_time]
                elif raw_time is None:
                    if ts_missing is None:
                        self._unparseable(
                            record,
                            f"Timestamp[null] is unparseable! Event: {_event_text(record.value or b'')}",
                        )
                        continue
                    ms = ts_missing
                else:
                    try:
                        ms = ts_parse(raw_time)
                    except TimestampError:
                        self._unparseable(
                            record,
                            f"Timestamp[{raw_time}] is unparseable! "
                            f"Event: {_event_text(record.value or b'')}",
                        )
                        continue
                    if type(raw_time) is str:
                        if len(ts_cache) >= _TS_CACHE_SIZE:
                            ts_cache.clear()
                        ts_cache[raw_time] = ms
                if (
                    (min_time is not None and ms < min_time)
                    or (max_time is not None and ms >= max_time)
                    or (windows is not None and not _inside(windows, ms))
                ):
                    self._thrown_away(record, self._window_reason(ms))
                    continue
                if row_filter is not None and not row_filter.matches(row):
                    self._thrown_away(record, "Row does not match the transformSpec filter")
                    continue
                rows.append(row)
                times.append(ms)
                kept.append(record)
                buffered += size
                if not nul_seen and nul_marker in (record.value or b""):
                    nul_seen = True
                if len(rows) >= flush_rows or buffered >= flush_bytes:
                    self._buffer_bytes = buffered
                    self._nul_seen = nul_seen
                    self._flush()
                    buffered = 0
                    nul_seen = False
                    self._check_parse_exceptions()
                    self._maybe_persist()
        finally:
            self._buffer_bytes = buffered
            self._nul_seen = nul_seen

    # ------------------------------------------------------------------ other input formats

    def _queue_decoded(self, batch: RecordBatch) -> None:
        """A batch of an input format with a reader (csv, tsv, kafka, ...): decoded and typed on a
        parser thread, like the fast JSON path's batches (ingested in order by ``_collect``)."""
        sizes = _value_sizes(batch.values)
        self._stats.processed_bytes += sum(sizes)
        if _DECODE_ON_THREADS:
            self._in_flight.append((batch, self._parser_pool().submit(self._decode, batch), sum(sizes)))
        else:
            self._ingest_decoded(batch, self._decode(batch))
        if not self._eager:
            self._maybe_persist()

    def _decode(self, batch: RecordBatch) -> _Decoded:
        """The pure part of a reader's batch (run on a parser thread): decode, then the columns in
        the columnar path's types when the datasource and the decoded table allow it."""
        assert self._reader is not None
        decoded = self._reader.decode(batch)
        if not decoded.num_rows or self._columnar is None or decoded.table is None:
            return _Decoded(decoded, None, False)
        typed = self._typed(decoded.table)
        may_have_nul = decoded.may_have_nul
        if typed is not None and may_have_nul is None:
            may_have_nul = any(b"\x00" in value for value in batch.values if value)
        return _Decoded(decoded, typed, bool(may_have_nul))

    def _ingest_decoded(self, batch: RecordBatch, result: _Decoded) -> None:
        """A reader's decoded batch: its unparseable records reported in record order, then its rows
        ingested on the columnar path when they were typed for it, else row by row."""
        decoded = result.decoded
        for index, message in decoded.errors:
            self._unparseable(batch.record(index), message)
        if not decoded.num_rows:
            return
        rows_batch = batch.take(decoded.sources) if len(decoded.sources) != len(batch) else batch
        if result.typed is not None:
            self._ingest_parsed(rows_batch, ParsedBatch(result.typed, result.may_have_nul, 0), self._columnar)
            return
        rows = decoded.row_dicts()
        sizes = _value_sizes(rows_batch.values)
        # a record with several rows counts its size once per row in the buffer (a bound)
        self._buffer_rows(zip(rows_batch, rows, sizes, strict=True), b"\x00")
        self._flush()

    def _typed(self, table: pa.Table) -> pa.Table | None:
        """The decoded columns in the exact types of the columnar path; ``None`` when a value would
        not convert exactly as the row path converts it (the batch then goes row by row)."""
        assert self._columnar is not None
        n = table.num_rows
        columns: list[pa.Array] = []
        for target in self._columnar.schema:
            if target.name not in table.column_names:
                columns.append(pa.nulls(n, target.type))
                continue
            column = table.column(target.name)
            column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
            typed = cast_exactly(column, target.type)
            if typed is None:
                return None
            columns.append(typed)
        fields = list(self._columnar.schema)
        # the transform and filter inputs as the row path gives them (csv: strings, even for a
        # column typed as a long dimension; avro: long, double, string, boolean)
        for name in self._columnar.inputs:
            if INPUT_PREFIX + name in table.column_names:
                return None
            found = table.column(name) if name in table.column_names else None
            values = row_path_column(None if found is None else _flat(found), n)
            if values is None:
                return None
            columns.append(values)
            fields.append(pa.field(INPUT_PREFIX + name, values.type))
        return pa.Table.from_arrays(columns, schema=pa.schema(fields))

    def _window_reason(self, ms: int) -> str:
        if self._windows is not None and not _inside(self._windows, ms):
            return (
                f"Row timestamp [{format_interval_ms(ms)}] is outside the granularitySpec intervals "
                f"{list(self.spec.data_schema.granularity_spec.intervals)}"
            )
        if self.min_message_time is not None and ms < self.min_message_time:
            return (
                f"Row timestamp [{format_interval_ms(ms)}] is before the minimum message time "
                f"[{format_interval_ms(self.min_message_time)}]"
            )
        return (
            f"Row timestamp [{format_interval_ms(ms)}] is not before the maximum message time "
            f"[{format_interval_ms(self.max_message_time or 0)}]"
        )

    def _report(
        self, record: Record, error_type: ErrorType, message: str, details: tuple[str, ...] = ()
    ) -> None:
        if self._log_parse_exceptions:
            log.warning(
                "%s record at partition %d offset %d: %s",
                "Unparseable" if error_type == "unparseable" else "Partially parsed",
                record.partition,
                record.offset,
                message,
            )
        if self._saved.maxlen:
            self._saved.append(
                ParseExceptionReport(
                    partition=record.partition,
                    offset=record.offset,
                    error_type=error_type,
                    message=message,
                    detected_at_ms=int(time.time() * 1000),
                    input=raw_input_text(record.value),
                    details=details,
                )
            )

    def _unparseable(self, record: Record, message: str) -> None:
        self._stats.unparseable += 1
        self._report(record, "unparseable", message)
        if self._collect_rejected:
            self._rejected.append(
                RejectedRecord(
                    record.partition, record.offset, record.value, record.timestamp_ms, "unparseable", message
                )
            )
        self._check_parse_exceptions()

    def _thrown_away(self, record: Record, reason: str) -> None:
        self._stats.thrown_away += 1
        if self._collect_rejected:
            self._rejected.append(
                RejectedRecord(
                    record.partition, record.offset, record.value, record.timestamp_ms, "thrownAway", reason
                )
            )

    def _check_parse_exceptions(self) -> None:
        stats = self._stats
        if stats.unparseable + stats.processed_with_error > self._max_parse_exceptions:
            self._failed = True
            raise TooManyParseExceptions(f"Max parse exceptions[{self._max_parse_exceptions}] exceeded")

    # ------------------------------------------------------------------ memory

    def _row_times(self, times: list[int] | pa.Array | pa.ChunkedArray) -> pa.Array:
        """``__time`` of rows: truncated to the query granularity, never before their segment's start."""
        if isinstance(times, pa.ChunkedArray):
            raw = times.combine_chunks()  # pa.array() on a ChunkedArray copies element by element
        elif isinstance(times, pa.Array):
            raw = times
        else:
            raw = pa.array(times, type=pa.int64())
        truncated = bucket_starts(self._query_granularity, raw)
        if self._query_granularity is not self._segment_granularity:
            truncated = pc.max_element_wise(truncated, bucket_starts(self._segment_granularity, raw))
        return truncated

    def _apply_stage(self) -> None:
        """transformSpec on the row buffer: transform outputs written into the rows; rows the
        filter drops are thrown away, rows a transform fails on are unparseable."""
        rows, times, records = self._rows, self._times, self._records
        n = len(rows)
        stage = self._stage
        columns: dict[str, pa.Array | None] = {
            name: column_of([row.get(name) for row in rows]) for name in stage.inputs if name != TIME_COLUMN
        }
        columns[TIME_COLUMN] = pa.array(times, type=pa.int64())

        def as_rows() -> list[dict[str, Any]]:
            return [{**row, TIME_COLUMN: ms} for row, ms in zip(rows, times, strict=True)]

        result = stage.apply(columns, n, as_rows)
        outputs = [(name, result_values(out)) for name, out in result.outputs.items() if name != TIME_COLUMN]
        keep = result.keep.to_pylist()
        new_times = result.times
        kept_rows: list[dict[str, Any]] = []
        kept_times: list[int] = []
        kept_records: list[Record] = []
        for index in range(n):
            record = records[index]
            if index in result.errors:
                text = _event_text(record.value or b"")
                self._unparseable(record, f"{result.errors[index]}; event: {text}")
                continue
            if not keep[index]:
                self._thrown_away(record, "Row does not match the transformSpec filter")
                continue
            ms = times[index] if new_times is None else new_times[index]
            assert ms is not None  # a row whose new time is not a number is in result.errors
            if (
                (self.min_message_time is not None and ms < self.min_message_time)
                or (self.max_message_time is not None and ms >= self.max_message_time)
                or (self._windows is not None and not _inside(self._windows, ms))
            ):
                self._thrown_away(record, self._window_reason(ms))
                continue
            row = rows[index]
            for name, values in outputs:
                row[name] = values[index]
            kept_rows.append(row)
            kept_times.append(ms)
            kept_records.append(record)
        # in place: _parse_records() holds references to these lists
        rows[:] = kept_rows
        times[:] = kept_times
        records[:] = kept_records
        if outputs:
            self._nul_seen = True  # a computed string may start with NUL

    def _flush(self) -> None:
        """Turn the Python row buffer into an Arrow table in memory."""
        rows = self._rows
        if not rows:
            return
        if self._stage.active:
            self._apply_stage()
            if not rows:
                self._buffer_bytes = 0
                return
        n = len(rows)
        raw_times = pa.array(self._times, type=pa.int64())
        table, errors = self._converter.convert(
            rows, self._row_times(raw_times), self._nul_seen, raw_times, self._metric_filter(rows)
        )
        self._nul_seen = False
        records = self._records
        self._stats.processed += n - len(errors)
        self._stats.processed_with_error += len(errors)
        self._report_column_errors(errors, records.__getitem__)
        # Cleared in place: _parse_records() holds references to these lists.
        rows.clear()
        self._times.clear()
        records.clear()
        self._buffer_bytes = 0
        self._keep_table(table)

    def _report_column_errors(self, errors: dict[int, list[str]], record_of: Callable[[int], Record]) -> None:
        """Report the rows kept with conversion errors (``processedWithError``), in row order."""
        for index in sorted(errors):
            messages = errors[index]
            record = record_of(index)
            self._report(
                record,
                "processedWithError",
                f"Found unparseable columns in row: [{_event_text(record.value or b'')}], "
                f"exceptions: [{', '.join(messages)}]",
                tuple(messages),
            )

    def _metric_filter(self, rows: list[dict[str, Any]]) -> FilterMask | None:
        """The filters of filtered aggregators on the buffered rows (on columns where they can)."""
        if not any(m.filter is not None for m in self.plan.metrics):
            return None
        cache: dict[str, pa.Array | None] = {}

        def mask_of(node: DimFilter) -> pa.Array:
            for name in filter_columns(node):
                if name not in cache:
                    cache[name] = (
                        pa.array(self._times, type=pa.int64())
                        if name == TIME_COLUMN
                        else (column_of([row.get(name) for row in rows]))
                    )
            return filter_mask(node, cache, len(rows), lambda: rows)

        return mask_of

    def _keep_table(self, table: pa.Table) -> None:
        """Hold a converted batch in memory (rolled up when that pays off).

        Sketch columns become sketches here: one per group when rolling up, else one per row
        (a one-value sketch is made once per distinct value and reused: cheaper than grouping
        a batch that does not shrink).
        """
        self._flushes += 1
        grouped = False
        if self._rollup and (self._rollup_useful or self._flushes % 8 == 0):
            before = table.num_rows
            table = rollup(table, self.plan)
            grouped = True
            self._rollup_useful = table.num_rows <= before * _USEFUL_ROLLUP
        elif self.plan.has_sketches:
            table = sketches.seal(table, self.plan.metrics)
        self._add_chunk(table, grouped)
        if len(self._chunks) >= _MAX_CHUNKS:
            self._merge_chunks()

    def _add_chunk(self, table: pa.Table, grouped: bool) -> None:
        self._chunks.append((table, grouped))
        self._chunk_rows += table.num_rows
        self._chunk_bytes += table.nbytes

    def _merge_chunks(self) -> None:
        tables = [self.plan.upgrade(t) for t, _ in self._chunks]  # types that widened since
        merged = pa.concat_tables(tables, promote_options="default")
        grouped = False
        before = merged.num_rows
        if self._rollup and (self._rollup_useful or before >= self._next_rollup_merge):
            merged = finalize_run(merged, self.plan, rollup_enabled=True)
            grouped = True
            # Grouping everything in memory again is only worth it while it shrinks the data;
            # when it did not, wait until memory holds four times as many rows before trying again.
            useful = merged.num_rows <= before * _USEFUL_ROLLUP
            self._next_rollup_merge = 0 if useful else 4 * before
        else:
            merged = merged.combine_chunks()
        self._chunks = []
        self._chunk_rows = 0
        self._chunk_bytes = 0
        self._add_chunk(merged, grouped)

    def _maybe_persist(self) -> None:
        if self._settling:
            return
        # the batches on the parser threads count as in memory already: they land there next
        in_flight_rows = sum(len(batch) for batch, _, _ in self._in_flight)
        in_flight_bytes = sum(size for _, _, size in self._in_flight)
        # Everything the pipeline holds: rows as Python objects (reference path), raw JSON
        # waiting and being parsed (with the table it becomes), and the tables in memory
        # twice over, because a persist sorts them into a copy before writing it.
        in_memory_bytes = (
            self._buffer_bytes * _PY_BYTES_PER_JSON_BYTE
            + self._pending_bytes
            + 2 * in_flight_bytes
            + 2 * self._chunk_bytes
        )
        if self._chunk_rows + len(self._rows) + in_flight_rows >= self._max_rows_in_memory or (
            in_memory_bytes >= self._max_bytes_in_memory
        ):
            self.persist()

    def _memory_table(self) -> pa.Table | None:
        """Everything in memory as one run (sorted, rolled up when rollup is on); clears memory."""
        self._flush()
        if not self._chunks:
            return None
        tables = [self.plan.upgrade(t) for t, _ in self._chunks]  # types that widened since
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        before = table.num_rows
        table = finalize_run(table, self.plan, self._rollup)
        self._chunks = []
        self._chunk_rows = 0
        self._chunk_bytes = 0
        if self._rollup:
            # When a whole run does not shrink by rolling up, merging what memory holds
            # before the next persist will not either: only try again with four times as
            # many rows (never, at the same memory limits) unless it did shrink.
            useful = table.num_rows <= before * _USEFUL_ROLLUP
            self._next_rollup_merge = 0 if useful else max(self._next_rollup_merge, 4 * before)
        return table

    @_locked
    def persist(self) -> None:
        """Spill everything in memory to ``work_dir`` (one Arrow file per segment interval)."""
        if self._finished:
            raise IllegalStateTransition("ingest pipeline already finished")
        self._settle()
        table = self._memory_table()
        if table is None or table.num_rows == 0:
            return
        directory = self.work_dir / f"persist-{self._persists:05d}"
        directory.mkdir(parents=True, exist_ok=True)
        for start, piece in split_by_segment(table, self._segment_granularity):
            path = directory / f"{start}.arrow"
            write_run_part(path, piece)
            self._runs.setdefault(start, []).append(RunPart(start, piece.num_rows, path=path))
        self._persists += 1
        log.debug("persisted %d rows to %s", table.num_rows, directory)

    @_locked
    def inflight_table(
        self, columns: Collection[str] | None = None, row_filter: DimFilter | None = None
    ) -> pa.Table | None:
        """Every row read and not yet written as a segment (memory and spills), in the segment schema.

        The same merge and rollup as :meth:`finish` per segment interval, without writing or
        clearing anything: a query of the task's in-flight rows reads it (issue 15.2). Taken
        under the pipeline's lock, so it never sees half of an :meth:`add`. ``None`` once the
        pipeline finished (its rows are in the segment files then).

        ``columns``: only these output columns (names matched case-insensitively, as the Broker's
        DuckDB does; unknown names ignored; none: no column, the rows' count). With rollup the
        rows are still merged and rolled up first (a rolled-up row counts once); without, no two
        rows merge, so the rows are taken as memory and spills hold them, unsorted and unmerged.
        ``row_filter``: a Broker's pushed-down filter (:mod:`middlemanager.ingest.pushdown`),
        applied after the rollup; the rows it may keep.
        """
        if self._finished:
            return None
        self._settle()
        if columns is None and row_filter is None:
            return self._merged_inflight()
        outputs = [TIME_COLUMN, *self.dimensions, *self.metrics]
        asked = None if columns is None else {c.lower() for c in columns}
        names = outputs if asked is None else [n for n in outputs if n.lower() in asked]
        if self._rollup or asked is None:
            table = self._merged_inflight()
        else:  # the filter's columns too, dropped once it ran
            read = set(names) | set(read_by(row_filter, outputs) if row_filter is not None else ())
            table = self._projected_inflight([n for n in outputs if n in read])
        if table is None:
            return None
        if row_filter is not None:
            table = narrowed(table, row_filter)
        if asked is None:
            return table
        return table.select([n for n in table.column_names if n in names])

    @_locked
    def inflight_spans(self) -> list[tuple[int, int, int, int]]:
        """Per segment interval the in-flight rows fall in: their first and last row time (after
        truncation), the interval's start and end. A query's empty time buckets are filled over
        these, as over a published segment's data (Druid's cursors run over a segment's rows)."""
        if self._finished:
            return []
        self._settle()
        found: dict[int, tuple[int, int]] = {}

        def note(start: int, times: pa.Array | pa.ChunkedArray) -> None:
            extremes = pc.min_max(times)
            lo, hi = extremes["min"].as_py(), extremes["max"].as_py()
            if lo is not None:
                a, b = found.get(start, (lo, hi))
                found[start] = (min(a, lo), max(b, hi))

        for start, parts in self._runs.items():
            for part in parts:
                note(start, part.open().column(TIME_COLUMN))
        for table, _ in self._chunks:
            times = table.column(TIME_COLUMN)
            starts = bucket_starts(self._segment_granularity, times)
            for start in pc.unique(starts).to_pylist():
                note(int(start), times.filter(pc.equal(starts, start)))
        end = self._segment_granularity.bucket_end
        return [(lo, hi, start, end(start)) for start, (lo, hi) in sorted(found.items())]

    def _projected_inflight(self, names: list[str]) -> pa.Table | None:
        """The rows without rollup, only the output columns ``names``: not merged, unsorted."""
        runs: dict[int, list[pa.Table | RunPart]] = {s: list(parts) for s, parts in self._runs.items()}
        for table, _ in self._chunks:
            starts = bucket_starts(self._segment_granularity, table.column(TIME_COLUMN))
            found = pc.unique(starts).to_pylist()
            for start in found:  # unsorted rows: one filter per interval (none for one interval)
                piece = table if len(found) == 1 else table.filter(pc.equal(starts, start))
                runs.setdefault(int(start), []).append(piece)
        # per segment interval, as the merged rows: a dimension's type is that of its segment's
        out = [projected_rows(runs[start], self.plan, names) for start in sorted(runs)]
        return concat_rows([t for t in out if t is not None])

    def _merged_inflight(self) -> pa.Table | None:
        runs: dict[int, list[pa.Table | RunPart]] = {s: self._spilled(s) for s in self._runs}
        if self._chunks:
            tables = [self.plan.upgrade(t) for t, _ in self._chunks]
            memory = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
            memory = finalize_run(memory, self.plan, self._rollup)
            for start, piece in split_by_segment(memory, self._segment_granularity):
                runs.setdefault(start, []).append(piece)
        out = [segment_table(runs[start], self.plan, rollup_enabled=self._rollup) for start in sorted(runs)]
        return concat_rows([t for t in out if t is not None])

    def _spilled(self, start: int) -> list[pa.Table | RunPart]:
        """The spilled runs of one segment interval for the in-flight rows: merged into one run
        file once per new spill (then only memory merges with it per answer), where exact."""
        parts = self._runs[start]
        if not self._cache_merges or len(parts) < 2:
            return list(parts)
        done, merged = self._merged_spills.get(start, (0, None))
        if done == len(parts) and merged is not None:
            return [merged]
        table = merged_run(
            [*([merged] if merged else []), *parts[done:]], self.plan, rollup_enabled=self._rollup
        )
        if table is None:
            return list(parts)
        path = self.work_dir / f"inflight-merged-{start}-{len(parts)}.arrow"
        write_run_part(path, table)
        if merged is not None and merged.path is not None:
            merged.path.unlink(missing_ok=True)
        cached = RunPart(start, table.num_rows, path=path)
        self._merged_spills[start] = (len(parts), cached)
        return [cached]

    # ------------------------------------------------------------------ output

    @_locked
    def finish(self, out_dir: Path) -> list[SegmentFile]:
        """Write every segment (one Parquet file per interval and shard) into ``out_dir``."""
        if self._finished:
            raise IllegalStateTransition("ingest pipeline already finished")
        self._settle()
        self._check_parse_exceptions()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs = {start: list(parts) for start, parts in self._runs.items()}
        table = self._memory_table()
        if table is not None:
            for start, piece in split_by_segment(table, self._segment_granularity):
                runs.setdefault(start, []).append(RunPart(start, piece.num_rows, table=piece))
        files: list[SegmentFile] = []
        for start in sorted(runs):
            parts = runs.pop(start)
            files.extend(
                write_segment(
                    parts,
                    self.plan,
                    rollup_enabled=self._rollup,
                    start_ms=start,
                    end_ms=self._segment_granularity.bucket_end(start),
                    out_dir=out_dir,
                    max_rows_per_segment=self._max_rows_per_segment,
                    index_spec=self._index_spec,
                )
            )
        self._finished = True
        self.close()
        return files

    @_locked
    def close(self) -> None:
        """Drop everything buffered or in memory and delete spill files (the pipeline is done)."""
        self._finished = True
        self._pending = []
        self._pending_rows = self._pending_bytes = 0
        for _, future, _ in self._in_flight:
            future.cancel()
        self._in_flight.clear()
        if self._parser is not None:
            self._parser.shutdown(wait=False, cancel_futures=True)
            self._parser = None
        self._rows.clear()
        self._times.clear()
        self._records.clear()
        self._chunks = []
        self._chunk_rows = self._chunk_bytes = self._buffer_bytes = 0
        for index in range(self._persists):
            shutil.rmtree(self.work_dir / f"persist-{index:05d}", ignore_errors=True)
        self._runs = {}
        for _, cached in self._merged_spills.values():
            if cached.path is not None:
                cached.path.unlink(missing_ok=True)
        self._merged_spills = {}

    @property
    def dimensions(self) -> list[str]:
        return [d.name for d in self.plan.dimensions]

    @property
    def metrics(self) -> list[str]:
        return [m.name for m in self.plan.metrics]

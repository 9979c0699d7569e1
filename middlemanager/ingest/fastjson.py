"""Fast path: a whole batch of JSON records parsed by Arrow's JSON reader, straight into columns.

The reference path parses each record with orjson into a dict and converts the dicts
to Arrow (``RowConverter``). This path gives the same result for the batches it accepts,
three to five times cheaper (no Python object per value, and parsing uses every core).

It accepts a batch only when it can prove the reference path would produce exactly the
same rows, stats and reports; otherwise :meth:`FastJsonPath.parse` returns ``None`` and
the caller uses the reference path for that batch. Arrow's parser (RapidJSON) and orjson
(strict RFC 8259) agree on valid JSON; where RapidJSON is more lenient or differs, a
check here sends the batch to the reference path:

* ``NaN``/``Infinity`` literals (accepted by RapidJSON): in a column that is read, the
  double columns must hold finite numbers only; in a field nobody reads, they cannot
  appear while the reader is strict (a field outside the schema fails the read), and
  once records carry other fields the batch is scanned for them in value position;
* invalid UTF-8 and UTF-8-encoded surrogates (not validated by RapidJSON): the batch
  must decode as strict UTF-8;
* nesting deeper than orjson's limit: batches with many brackets are checked per record;
* a record that is not exactly one object on one line: every value must start with ``{``
  and end with ``}``, hold no line break, and the reader must return one row per record;
* ``-0`` as an integer literal (orjson reads the integer 0, Arrow a double -0.0): no
  negative zero may reach a double column.

Every column is read with the exact type the reference path would accept without a
conversion error (string, int64, double), so a value of any other JSON type makes the
reader fail and the batch goes to the reference path, which then reports the errors.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from middlemanager.ingest.schema import TIME, ColumnPlan, convert_values, metric_columns

__all__ = ["FastJsonPath", "ParsedBatch"]

_NEWLINE = ord("\n")
_OPEN = ord("{")
_CLOSE = ord("}")
# orjson refuses JSON nested deeper than 1024: a record with that many brackets is checked
# by the reference path. Such a record is at least twice as long (brackets open and close).
_MAX_BRACKETS = 1000
_DEEP_RECORD_BYTES = 2 * _MAX_BRACKETS
_NEGATIVE_ZERO_BITS = -(2**63)
_JSON_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "long": pa.int64(),
    "float": pa.float64(),
    "double": pa.float64(),
    "sketch": pa.string(),  # a number fails the read: the reference path keeps its type
}
_TIMESTAMP_TYPES: dict[str, pa.DataType] = {
    "auto": pa.string(),
    "iso": pa.string(),
    "millis": pa.int64(),
    "posix": pa.int64(),
    "micro": pa.int64(),
    "nano": pa.int64(),
}


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    table: pa.Table
    # Whether a string value may contain NUL (the JSON has a "\\u0000" escape).
    may_have_nul: bool
    # Sum of the record value sizes.
    value_bytes: int


class FastJsonPath:
    """Parses batches of record values for one datasource's column plan."""

    def __init__(self, plan: ColumnPlan, timestamp_column: str, timestamp_format: str, max_record_bytes: int):
        self.plan = plan
        self.timestamp_column = timestamp_column
        self.max_record_bytes = max_record_bytes
        fields: dict[str, pa.DataType] = {timestamp_column: _TIMESTAMP_TYPES[timestamp_format]}
        for d in plan.dimensions:
            fields[d.name] = _JSON_TYPES[d.kind]
        for m in plan.metrics:
            if m.field is not None:
                fields[m.field] = _JSON_TYPES[m.value_kind]
        self.schema = pa.schema([pa.field(name, kind) for name, kind in fields.items()])
        # Strict: a field outside the schema fails the read. Then no NaN/Infinity literal
        # can hide in a field nobody reads (RapidJSON accepts them, orjson does not), and
        # the byte scan for them is not needed. Used while the records carry no other
        # field; after the first batch that does, the lenient options (and the scan) are.
        self._strict_options = pj.ParseOptions(
            explicit_schema=self.schema, unexpected_field_behavior="error", newlines_in_values=False
        )
        self._lenient_options = pj.ParseOptions(
            explicit_schema=self.schema, unexpected_field_behavior="ignore", newlines_in_values=False
        )
        self._strict = True
        self._float_fields = [
            f.name for f in self.schema if f.type == pa.float64() and f.name != timestamp_column
        ]

    @staticmethod
    def supports(plan: ColumnPlan, timestamp_column: str, timestamp_format: str, has_filter: bool) -> bool:
        """Whether batches of this datasource can take the fast path at all."""
        if has_filter or plan.discovering or plan.needs_rows or timestamp_format not in _TIMESTAMP_TYPES:
            return False
        types: dict[str, pa.DataType] = {}
        for d in plan.dimensions:
            if d.kind not in _JSON_TYPES or d.name == timestamp_column:
                return False
            types[d.name] = _JSON_TYPES[d.kind]
        for m in plan.metrics:
            if m.field is None:
                continue
            if m.field == timestamp_column:
                return False
            kind = _JSON_TYPES[m.value_kind]
            if types.setdefault(m.field, kind) != kind:
                return False
        return True

    def parse(self, values: list[bytes | None]) -> ParsedBatch | None:
        """The batch as a table with one column per schema field; ``None``: use the reference path.

        Runs on the pipeline's parser threads: the byte checks use numpy and Arrow, which
        work without the GIL.
        """
        n = len(values)
        try:
            data = b"\n".join(values)  # type: ignore[arg-type]  # a None makes join fail
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)  # type: ignore[arg-type]
        except TypeError:
            return None
        if n == 0 or int(lengths.min()) == 0 or int(lengths.max()) > self.max_record_bytes:
            return None
        # One object per line: each value starts with "{", ends with "}", holds no line break or CR.
        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.cumsum(lengths) + np.arange(n)  # where the line break after each value goes
        if (
            b"\r" in data
            or not np.all(buf[ends - lengths] == _OPEN)
            or not np.all(buf[ends - 1] == _CLOSE)
            or np.count_nonzero(buf == _NEWLINE) != n - 1
        ):
            return None
        if not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return None
        if int(lengths.max()) >= _DEEP_RECORD_BYTES and any(
            value.count(b"[") + value.count(b"{") >= _MAX_BRACKETS  # type: ignore[union-attr]
            for value in values
            if len(value) >= _DEEP_RECORD_BYTES  # type: ignore[arg-type]
        ):
            return None
        table = self._read_json(data, self._strict_options) if self._strict else None
        if table is None:
            if _has_nan_or_infinity(data, buf):
                return None
            table = self._read_json(data, self._lenient_options)
        if table is None or table.num_rows != n:
            return None
        for name in self._float_fields:
            column = table.column(name)
            if column.null_count < n:
                array = _contiguous(column)
                # a NaN/Infinity literal in a read field (RapidJSON takes it, orjson does not)
                if not pc.all(pc.is_finite(array)).as_py() or _has_negative_zero(array):
                    return None
        may_have_nul = b"\\" in data and len(_occurrences(buf, b"\\u0000")) > 0
        return ParsedBatch(table, may_have_nul, len(data) - (n - 1))

    def _read_json(self, data: bytes, options: pj.ParseOptions) -> pa.Table | None:
        try:
            return pj.read_json(
                io.BytesIO(data), read_options=self._read_options(data), parse_options=options
            )
        except pa.ArrowInvalid as e:
            if options is self._strict_options and "unexpected field" in str(e):
                self._strict = False  # records carry other fields: lenient reads from now on
            return None
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None

    def _read_options(self, data: bytes) -> pj.ReadOptions:
        # blocks of a quarter of the batch keep Arrow's threads busy
        return pj.ReadOptions(use_threads=True, block_size=max(2 * self.max_record_bytes, len(data) // 4 + 1))

    def build(
        self, parsed: pa.Table, times: pa.Array, may_have_nul: bool, raw_times: pa.Array | None = None
    ) -> pa.Table:
        """The internal table (see ``schema.RowConverter``) of the parsed rows that were kept.

        ``raw_times``: the row times before truncation (first/last order by them).
        """
        n = parsed.num_rows
        columns: list[Any] = [times]
        names = [TIME]
        for d in self.plan.dimensions:
            column = _contiguous(parsed.column(d.name))
            if d.kind == "string":
                if may_have_nul and column.null_count < n and pc.any(pc.starts_with(column, "\x00")).as_py():
                    converted, _ = convert_values(column.to_pylist(), "string", d.multi_value_handling, "")
                    column = pa.array(converted, type=pa.string())
            elif d.kind == "float":
                column = pc.cast(column, pa.float32())
            columns.append(column)
            names.append(d.col)
        arrays: dict[str, pa.Array] = {}
        for m in self.plan.metrics:
            if m.field is None:
                continue
            column = _contiguous(parsed.column(m.field))
            escape = m.value_kind in ("sketch", "string") and may_have_nul and column.null_count < n
            if escape and pc.any(pc.starts_with(column, "\x00")).as_py():
                converted, _ = convert_values(column.to_pylist(), m.value_kind, "", "")
                column = pa.array(converted, type=pa.string())
            arrays[m.col] = column
        for name, column in metric_columns(
            self.plan, arrays, n, times if raw_times is None else raw_times, None
        ):
            columns.append(column)
            names.append(name)
        return pa.Table.from_arrays(columns, names=names)


def _contiguous(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _has_negative_zero(column: pa.Array) -> bool:
    bits = column.view(pa.int64())
    return bool(pc.any(pc.equal(bits, _NEGATIVE_ZERO_BITS)).as_py())


def _occurrences(buf: npt.NDArray[np.uint8], word: bytes) -> npt.NDArray[np.intp]:
    """Start positions of ``word`` in ``buf``."""
    last = len(buf) - len(word)
    if last < 0:
        return np.empty(0, dtype=np.intp)
    found = np.flatnonzero(buf[: last + 1] == word[0])
    for index in range(1, len(word)):
        found = found[buf[found + index] == word[index]]
    return found


def _has_nan_or_infinity(data: bytes, buf: npt.NDArray[np.uint8]) -> bool:
    """Whether a ``NaN``/``Inf...`` literal may stand where a JSON value goes (false alarms are fine)."""
    for word in (b"NaN", b"Inf"):
        found = _occurrences(buf, word)
        if len(found) > 64:
            return True
        for start in found.tolist():
            index = start - 1
            while index >= 0 and data[index] in b" \t-":
                index -= 1
            if index < 0 or data[index] in b":[,":
                return True
    return False


def cast_exactly(column: pa.Array, target: pa.DataType) -> pa.Array | None:
    """``column`` in the ``target`` type of a fast-path column (string, int64, double), or
    ``None`` when some value would not convert as the row path (``schema.convert_values``)
    converts it: then the caller takes the row path for the batch.

    Used for the tables of other input formats (csv values are strings: ``"12"`` is a long
    12 on both paths; ``" 12"``, ``"1.5"`` for a long, ``"NaN"`` or ``"-0"`` for a double
    are left to the row path, which reports or converts them).
    """
    kind = column.type
    if kind == target and target != pa.float64():
        return column
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return None
    if target == pa.string():
        return column.cast(pa.string()) if pa.types.is_integer(kind) or pa.types.is_null(kind) else None
    if not (
        pa.types.is_string(kind)
        or pa.types.is_integer(kind)
        or kind == pa.float64()
        or pa.types.is_null(kind)
    ):
        return None
    if target == pa.int64() and kind == pa.float64():
        return None
    try:
        typed = column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if (
        target == pa.float64()
        and typed.null_count < len(typed)
        and (not pc.all(pc.is_finite(typed)).as_py() or _has_negative_zero(typed))
    ):
        return None
    return typed

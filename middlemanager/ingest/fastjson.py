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
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from middlemanager.ingest.schema import TIME, ColumnPlan, FilterMask, convert_values, metric_columns
from middlemanager.ingest.transforms import TransformStage, filter_columns, filter_mask

__all__ = ["INPUT_PREFIX", "FastJsonPath", "ParsedBatch", "row_path_column"]

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
# The Arrow type of a transform or filter input, from the JSON type of its values: the type
# ``transforms.column_of`` gives the reference path's values. Arrow's reader turns an
# integer literal into a double, where the reference path keeps a long (and expressions
# tell them apart): a batch whose double input holds an integer literal is refused
# (``_double_literals_only``).
_INPUT_TYPES: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    bool: pa.bool_(),
    float: pa.float64(),
}
# Records of the first batch looked at to learn the types of the inputs not in the schema.
_SNIFF_RECORDS = 256
# A parsed table of another input format may carry the transform and filter inputs beside the
# typed columns, under this prefix, as the row path gives them (``row_path_column``).
INPUT_PREFIX = "\x00input\x00"


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    table: pa.Table
    # Whether a string value may contain NUL (the JSON has a "\\u0000" escape).
    may_have_nul: bool
    # Sum of the record value sizes.
    value_bytes: int


class FastJsonPath:
    """Parses batches of record values for one datasource's column plan."""

    def __init__(
        self,
        plan: ColumnPlan,
        timestamp_column: str,
        timestamp_format: str,
        max_record_bytes: int,
        stage: TransformStage | None = None,
    ):
        self.plan = plan
        self.timestamp_column = timestamp_column
        self.max_record_bytes = max_record_bytes
        self.stage = stage if stage is not None and stage.active else None
        outputs = self.stage.outputs if self.stage is not None else frozenset()
        # the input columns the transforms, the filter and filtered aggregators read (see
        # ``stage_columns``)
        inputs = (self.stage.inputs if self.stage is not None else frozenset()) | _metric_filter_inputs(plan)
        self.inputs = sorted(inputs - {TIME})
        self._metric_filter_inputs = sorted(_metric_filter_inputs(plan))
        fields: dict[str, pa.DataType] = {timestamp_column: _TIMESTAMP_TYPES[timestamp_format]}
        for d in plan.dimensions:
            if d.name not in outputs or d.name in self.inputs:
                fields[d.name] = _JSON_TYPES[d.kind]
        for m in plan.metrics:
            if m.field is not None and (m.field not in outputs or m.field in self.inputs):
                fields[m.field] = _JSON_TYPES[m.value_kind]
            if m.time_field is not None:
                fields[m.time_field] = _JSON_TYPES["long"]  # a first/last timeColumn is read as a long
        self._fields = fields
        # inputs of unknown type: learned from the first batch (``prepare``)
        self._unknown = [name for name in self.inputs if name not in fields]
        # False when this datasource's inputs cannot be read exactly here (see _INPUT_TYPES)
        self.usable = True
        self._make_schema()

    def _make_schema(self) -> None:
        self.schema = pa.schema([pa.field(name, kind) for name, kind in self._fields.items()])
        strict = getattr(self, "_strict", True)
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
        self._strict = strict
        self._float_fields = [
            f.name for f in self.schema if f.type == pa.float64() and f.name != self.timestamp_column
        ]
        # inputs of the transforms and filters read as doubles: each value must be a float literal
        self._double_inputs = [
            (name, _number_after_key(name))
            for name in getattr(self, "inputs", ())
            if self._fields.get(name) == pa.float64()
        ]

    def prepare(self, values: list[bytes | None]) -> None:
        """Learn the types of the inputs outside the schema from the first records (on the caller's
        thread, before any batch is parsed): each one's most common JSON type. A value of another
        type fails the read, and its batch goes to the reference path; when the type is one this
        path cannot read exactly (a double, a list, an object), :attr:`usable` turns False."""
        if not self._unknown:
            return
        seen: dict[str, Counter[type]] = {name: Counter() for name in self._unknown}
        for value in islice(values, _SNIFF_RECORDS):
            try:
                row = orjson.loads(value) if value else None
            except orjson.JSONDecodeError:
                continue
            if type(row) is dict:
                for name, kinds in seen.items():
                    item = row.get(name)
                    if item is not None:
                        kinds[type(item)] += 1
        for name, kinds in seen.items():
            # the most common type (a value of another one makes its batch take the reference path)
            kind = kinds.most_common(1)[0][0] if kinds else str
            if kind not in _INPUT_TYPES:
                self.usable = False
                return
            self._fields[name] = _INPUT_TYPES[kind]
        self._unknown = []
        self._make_schema()

    @staticmethod
    def supports(
        plan: ColumnPlan, timestamp_column: str, timestamp_format: str, stage: TransformStage | None = None
    ) -> bool:
        """Whether batches of this datasource can take the fast path at all."""
        if plan.discovering or timestamp_format not in _TIMESTAMP_TYPES:
            return False
        active = stage is not None and stage.active
        filter_inputs = _metric_filter_inputs(plan)
        inputs = (stage.inputs if stage is not None and active else frozenset()) | filter_inputs
        # A filtered aggregator's filter sees the transformed row on the reference path: one
        # reading a transform output is not done here.
        if stage is not None and active and filter_inputs & (stage.outputs - {TIME}):
            return False
        # fields only computed by a transform are not read (their outputs are converted instead)
        computed = stage.outputs - inputs if stage is not None and active else frozenset()
        types: dict[str, pa.DataType] = {}
        for d in plan.dimensions:
            if d.kind not in _JSON_TYPES or d.name == timestamp_column:
                return False
            if d.name not in computed:
                types[d.name] = _JSON_TYPES[d.kind]
        for m in plan.metrics:
            if m.field is None:
                continue
            if m.field == timestamp_column:
                return False
            kind = _JSON_TYPES[m.value_kind]
            if m.field not in computed and types.setdefault(m.field, kind) != kind:
                return False
        for m in plan.metrics:
            field = m.time_field
            if field is not None and (
                field == timestamp_column
                or (stage is not None and active and field in stage.outputs)
                or types.setdefault(field, _JSON_TYPES["long"]) != _JSON_TYPES["long"]
            ):
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
        if self._double_inputs and not _double_literals_only(data, table, self._double_inputs):
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

    def stage_columns(
        self, parsed: pa.Table, times: pa.Array, names: Sequence[str] | None = None
    ) -> dict[str, pa.Array | None]:
        """The columns the transforms and the filter read (or ``names``), as ``transforms.column_of``
        gives them on the reference path, and ``__time`` (the row times before truncation)."""
        columns: dict[str, pa.Array | None] = {}
        for name in self.inputs if names is None else names:
            if name == TIME:
                continue
            stashed = INPUT_PREFIX + name
            column = _contiguous(parsed.column(stashed if stashed in parsed.column_names else name))
            # the reference path has no type for a column of nulls only
            columns[name] = pa.nulls(len(column)) if column.null_count == len(column) else column
        columns[TIME] = times
        return columns

    def build(
        self,
        parsed: pa.Table,
        times: pa.Array,
        may_have_nul: bool,
        raw_times: pa.Array | None = None,
        computed: Mapping[str, pa.Array] | None = None,
    ) -> pa.Table:
        """The internal table (see ``schema.RowConverter``) of the parsed rows that were kept.

        ``raw_times``: the row times before truncation (first/last order by them);
        ``computed``: internal columns already converted (transform outputs), by internal name.
        """
        n = parsed.num_rows
        computed = computed or {}
        columns: list[Any] = [times]
        names = [TIME]
        for d in self.plan.dimensions:
            if d.col in computed:
                columns.append(computed[d.col])
                names.append(d.col)
                continue
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
            if m.col in computed:
                arrays[m.col] = computed[m.col]
                continue
            column = _contiguous(parsed.column(m.field))
            escape = m.value_kind in ("sketch", "string") and may_have_nul and column.null_count < n
            if escape and pc.any(pc.starts_with(column, "\x00")).as_py():
                converted, _ = convert_values(column.to_pylist(), m.value_kind, "", "")
                column = pa.array(converted, type=pa.string())
            arrays[m.col] = column
        for m in self.plan.metrics:
            if m.time_field is not None and m.time_col is not None:
                arrays[m.time_col] = _contiguous(parsed.column(m.time_field))
        row_times = times if raw_times is None else raw_times
        mask_of = self._mask_of(parsed, row_times) if self._metric_filter_inputs else None
        for name, column in metric_columns(self.plan, arrays, n, row_times, mask_of):
            columns.append(column)
            names.append(name)
        return pa.Table.from_arrays(columns, names=names)

    def _mask_of(self, parsed: pa.Table, raw_times: pa.Array) -> FilterMask:
        """Filtered aggregators' filters on the parsed rows, on the columns the reference path
        gives them (``transforms.column_of`` of the JSON values; ``__time``: the row time)."""
        columns = self.stage_columns(parsed, raw_times, self._metric_filter_inputs)
        n = parsed.num_rows

        def rows() -> list[dict[str, Any]]:
            lists = {name: column.to_pylist() for name, column in columns.items() if column is not None}
            return [{name: values[index] for name, values in lists.items()} for index in range(n)]

        return lambda node: filter_mask(node, columns, n, rows)


def _number_after_key(name: str) -> re.Pattern[bytes]:
    """A JSON number literal given for the key ``name`` (group 1: its fraction or exponent)."""
    key = orjson.dumps(name)
    return re.compile(
        re.escape(key) + rb"[ \t\r\n]*:[ \t\r\n]*-?(?:0|[1-9][0-9]*)((?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    )


def _double_literals_only(
    data: bytes, table: pa.Table, inputs: Sequence[tuple[str, re.Pattern[bytes]]]
) -> bool:
    """Whether every value of these double-typed inputs is written as a float literal (``1.0``,
    ``2e3``), which the reference path reads as a double too (an integer literal is a long there).

    Without a backslash in the batch no key can be escaped and no quote in a string, so the
    key pattern finds every top-level value and maybe nested ones: finding exactly as many
    numbers as the column has values, all with a fraction or an exponent, proves it.
    """
    if b"\\" in data:
        return all(table.column(name).null_count == table.num_rows for name, _ in inputs)
    for name, pattern in inputs:
        values = table.num_rows - table.column(name).null_count
        if values == 0:
            continue
        found = 0
        for match in pattern.finditer(data):
            if not match.group(1):
                return False
            found += 1
        if found != values:
            return False
    return True


def _metric_filter_inputs(plan: ColumnPlan) -> frozenset[str]:
    """The columns the filters of filtered aggregators read."""
    names: set[str] = set()
    for m in plan.metrics:
        if m.filter is not None:
            names |= filter_columns(m.filter)
    return frozenset(names)


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


def row_path_column(column: pa.Array | None, n: int) -> pa.Array | None:
    """A decoded column of another input format as a transform or filter input, exactly as the row
    path gives it (``transforms.column_of`` of the row dicts' values, ``table.to_pylist()``), or
    ``None`` when that is not one Arrow column of the same values (then the batch goes row by row).

    Integers are Python ints there (an int64 column), floats Python floats (a float32 value is
    exact as a double), strings str, booleans bool; a missing or all-null column has no type.
    """
    if column is None or column.null_count == len(column):
        return pa.nulls(n)
    kind = column.type
    if pa.types.is_dictionary(kind):
        return row_path_column(column.dictionary_decode(), n)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.string())
    if pa.types.is_boolean(kind):
        return column
    if pa.types.is_floating(kind) and kind != pa.float16():
        return column.cast(pa.float64())
    if pa.types.is_integer(kind):
        if kind == pa.uint64() and pc.max(column).as_py() >= 2**63:
            return None  # beyond a long: pa.array refuses it on the row path
        return column.cast(pa.int64())
    return None  # bytes, lists, timestamps, decimals, structs: not one column of the row path

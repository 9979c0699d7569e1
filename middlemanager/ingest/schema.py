"""The column plan of a datasource, and turning parsed JSON rows into Arrow columns.

Internally every table has ``__time`` (int64 ms, already truncated to the query
granularity), one column per dimension named ``d<i>`` and one per metric named ``m<i>``
(the *partial* aggregate: 1 for ``count``, the field value for sums/mins/maxes).
Internal names keep user column names (which may be anything) away from Arrow's own
naming (``x_sum``) and from each other.

String dimensions are Arrow strings. A multi-value row (a list with two or more values)
is stored inside that string column in an encoded form, so rollup can group on it and
sorting stays a plain string sort; :func:`decode_string_column` turns a column back into
``list<string>`` for the segment. Encoding: a list -> ``"\\x00m" + JSON array``; a real
string starting with ``"\\x00"`` -> ``"\\x00s" + string``; any other string as is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from supervisor.aggregators import SKETCH_TYPES, AggregatorSpec
from supervisor.filters import DimFilter
from supervisor.spec import DataSchema

__all__ = [
    "DIM_LABEL",
    "INTERNAL_TYPES",
    "JSON_OUTPUT_TYPE",
    "TEXT_KINDS",
    "TIME",
    "ColumnPlan",
    "DimensionColumn",
    "MetricColumn",
    "RowConverter",
    "column_kind",
    "convert_column",
    "convert_stored",
    "decode_string_column",
    "decode_text_column",
    "field_label",
    "least_restrictive",
    "value_type",
]

TIME = "__time"
MULTI_PREFIX = "\x00m"
ESCAPE_PREFIX = "\x00s"

DimKind = Literal["string", "long", "float", "double", "json", "array_long", "array_double", "array_string"]
ValueKind = Literal[
    "string", "long", "float", "double", "json", "array_long", "array_double", "array_string", "sketch"
]
# Kinds held as JSON text while ingesting (sorted and grouped as strings), typed in the segment.
TEXT_KINDS = frozenset({"json", "array_long", "array_double", "array_string"})
_ARRAY_ELEMENTS: dict[str, pa.DataType] = {
    "array_long": pa.int64(),
    "array_double": pa.float64(),
    "array_string": pa.string(),
}
# Parquet's JSON logical type (pyarrow >= 19 writes it for its JSON extension type): DuckDB reads
# such a column as JSON, pyarrow as arrow.json. Older pyarrow: a plain string column.
JSON_OUTPUT_TYPE: pa.DataType = pa.json_() if hasattr(pa, "json_") else pa.string()

INTERNAL_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "json": pa.string(),
    "array_long": pa.string(),
    "array_double": pa.string(),
    "array_string": pa.string(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "sketch": pa.string(),
}
# A sketch's input value keeps its JSON type, since DataSketches hash a long, a double and a
# string differently: a number is stored as NUL, a tag and its text; a list (each element
# hashed as its Java string, as Druid's sketch aggregators do) as a multi-value string.
SKETCH_LONG_PREFIX = "\x00l"
SKETCH_DOUBLE_PREFIX = "\x00d"
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class DimensionColumn:
    name: str
    kind: DimKind
    col: str
    multi_value_handling: str = "SORTED_ARRAY"

    @property
    def arrow_type(self) -> pa.DataType:
        return INTERNAL_TYPES[self.kind]

    @property
    def output_type(self) -> pa.DataType:
        """The segment column's type (a multi-value string dimension is ``list<string>`` instead)."""
        if self.kind == "json":
            return JSON_OUTPUT_TYPE
        element = _ARRAY_ELEMENTS.get(self.kind)
        return self.arrow_type if element is None else pa.list_(element)


MetricKind = Literal["sum", "min", "max", "first", "last", "any", "sketch"]


@dataclass(frozen=True, slots=True)
class MetricColumn:
    """A metric's internal column ``col`` (and for first/last ``time_col``, the time of its value).

    ``type`` is the aggregator computing the value (the wrapped one of a ``filtered``
    aggregator, whose filter is ``filter``); ``spec`` is the aggregator as given.
    """

    name: str
    type: str
    field: str | None
    col: str
    spec: AggregatorSpec | None = None

    @property
    def effective(self) -> AggregatorSpec | None:
        return None if self.spec is None else self.spec.effective

    @property
    def filter(self) -> DimFilter | None:
        return None if self.spec is None else self.spec.filter

    @property
    def kind(self) -> MetricKind:
        if self.type in SKETCH_TYPES:
            return "sketch"
        for suffix, kind in _KIND_SUFFIXES:
            if self.type.endswith(suffix):
                return kind
        return "sum"  # count

    @property
    def agg(self) -> str:
        """Arrow's hash aggregate for sum/min/max/any (first/last and sketches have their own)."""
        kind = self.kind
        return "first" if kind == "any" else kind

    @property
    def arrow_native(self) -> bool:
        """Whether Arrow's hash aggregate ``agg`` rolls this metric up."""
        return self.kind in ("sum", "min", "max", "any")

    @property
    def time_col(self) -> str | None:
        """The internal column holding the time of a first/last value."""
        return f"{self.col}t" if self.kind in ("first", "last") else None

    @property
    def time_field(self) -> str | None:
        """The input field ordering a first/last (``None``: the row time)."""
        spec = self.effective
        column = None if spec is None else spec.time_column
        return None if column in (None, TIME) else column

    @property
    def value_kind(self) -> Literal["long", "double", "string", "sketch"]:
        """How the input value is read: a sketch's input keeps its JSON type (see ``sketch_value``)."""
        if self.type == "quantilesDoublesSketch":
            return "double"
        if self.kind == "sketch":
            return "sketch"
        if self.type.startswith("string"):
            return "string"
        return "long" if self.type == "count" or self.type.startswith("long") else "double"

    @property
    def arrow_type(self) -> pa.DataType:
        """Type of the partial aggregate while ingesting (float metrics are summed as doubles).

        A sketch column holds serialized sketches once a table is kept in memory
        (``sketches.seal``); straight from conversion it holds the input values.
        """
        if self.kind == "sketch":
            return pa.binary()
        if self.value_kind == "string":
            return pa.string()
        return pa.int64() if self.value_kind == "long" else pa.float64()

    @property
    def output_type(self) -> pa.DataType:
        if self.kind == "sketch":
            return pa.binary()
        if self.value_kind in ("long", "string"):
            return self.arrow_type
        return pa.float32() if self.type.startswith("float") else pa.float64()


_KIND_SUFFIXES: tuple[tuple[str, MetricKind], ...] = (
    ("Sum", "sum"),
    ("Min", "min"),
    ("Max", "max"),
    ("First", "first"),
    ("Last", "last"),
    ("Any", "any"),
)


class ColumnPlan:
    """Dimensions and metrics of a datasource; schemaless dimensions are added as they are found."""

    def __init__(self, data_schema: DataSchema) -> None:
        dims_spec = data_schema.dimensions_spec
        self.metrics: list[MetricColumn] = [
            MetricColumn(m.name, m.effective.type, m.effective.field_name, f"m{i}", m)
            for i, m in enumerate(data_schema.metrics_spec)
        ]
        self.explicit: list[DimensionColumn] = [
            DimensionColumn(d.name, d.type, f"d{i}", d.multi_value_handling)
            for i, d in enumerate(dims_spec.dimensions)
        ]
        # Druid discovers the dimensions not listed when the list is empty, with
        # includeAllDimensions, or with useSchemaDiscovery ("some or no dimensions in the
        # dimensions list", docs/ingestion/schema-design.md, type-aware schema discovery).
        self.typed_discovery = dims_spec.use_schema_discovery
        self.discovering = dims_spec.is_schemaless or dims_spec.include_all_dimensions or self.typed_discovery
        excluded = {data_schema.timestamp_spec.column, TIME, *dims_spec.dimension_exclusions}
        for metric in self.metrics:
            excluded.add(metric.name)
            if metric.field is not None:
                excluded.add(metric.field)
            if metric.time_field is not None:
                excluded.add(metric.time_field)
        excluded.update(d.name for d in self.explicit)
        self.not_discoverable = excluded
        self.discovered: list[DimensionColumn] = []
        self._known: dict[str, DimensionColumn] = {d.name: d for d in self.explicit}
        self._next_col = len(self.explicit)
        # Typed discovery: the least restrictive type of each discovered column's values so far
        # (None: only nulls), and the internal columns a column had before its type widened.
        self._observed: dict[str, str | None] = {}
        self.retired: dict[str, tuple[DimKind, str]] = {}

    @property
    def dimensions(self) -> list[DimensionColumn]:
        """All dimensions in storage order: explicit ones as listed, then discovered ones sorted by name."""
        if not self.discovered:
            return list(self.explicit)
        return self.explicit + sorted(self.discovered, key=lambda d: d.name)

    def _new_column(self, name: str, kind: DimKind) -> DimensionColumn:
        column = DimensionColumn(name, kind, f"d{self._next_col}")
        self._next_col += 1
        self._known[name] = column
        return column

    def discover(self, names: set[str]) -> None:
        """Register schemaless dimensions found in input rows (no-op unless discovering)."""
        new = sorted(n for n in names if n not in self._known and n not in self.not_discoverable)
        for name in new:
            self.discovered.append(self._new_column(name, "string"))

    def observe(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Typed discovery: register the rows' new columns and widen the type of known ones.

        A column whose type widens (long, then a double) gets a new internal column; data held
        under the old one is converted by :meth:`upgrade`.
        """
        found: dict[str, str | None] = {}
        for row in rows:
            for name, value in row.items():
                kind = value_type(value)
                if name not in found:
                    found[name] = kind
                elif kind is not None:
                    found[name] = least_restrictive(found[name], kind)
        for name in sorted(found):
            if name in self.not_discoverable:
                continue
            known = self._known.get(name)
            if known is None:
                self._observed[name] = found[name]
                self.discovered.append(self._new_column(name, column_kind(found[name])))
                continue
            if name not in self._observed:
                continue  # an explicit dimension
            widened = least_restrictive(self._observed[name], found[name])
            if widened == self._observed[name]:
                continue
            self._observed[name] = widened
            kind = column_kind(widened)
            if kind == known.kind:
                continue
            self.retired[known.col] = (known.kind, name)
            self.discovered[self.discovered.index(known)] = self._new_column(name, kind)

    def upgrade(self, table: pa.Table) -> pa.Table:
        """``table`` with the columns of widened types converted to their current internal column."""
        if not self.retired:
            return table
        for index, old in reversed(list(enumerate(table.column_names))):
            entry = self.retired.get(old)
            if entry is None:
                continue
            old_kind, name = entry
            current = self._known[name]
            column = convert_stored(table.column(index), old_kind, current.kind)
            position = table.schema.get_field_index(current.col)
            if position >= 0:  # both: rows hold a value in one of them only
                column = pc.coalesce(table.column(position), column)
                table = table.set_column(position, current.col, column).remove_column(index)
            else:
                table = table.set_column(index, current.col, column)
        return table

    def internal_schema(self) -> pa.Schema:
        fields = [pa.field(TIME, pa.int64())]
        fields += [pa.field(d.col, d.arrow_type) for d in self.dimensions]
        for m in self.metrics:
            fields.append(pa.field(m.col, m.arrow_type))
            if m.time_col is not None:
                fields.append(pa.field(m.time_col, pa.int64()))
        return pa.schema(fields)

    @property
    def needs_rows(self) -> bool:
        """Whether metrics read more of a row than their field (a filter, a first/last timeColumn)."""
        return any(m.filter is not None or m.time_field is not None for m in self.metrics)

    @property
    def has_sketches(self) -> bool:
        return any(m.kind == "sketch" for m in self.metrics)


# ----------------------------------------------------------------------------------- values


class _Unconvertible(Exception):
    """A value that cannot be turned into the column's type."""


def _java_number_text(value: int | float) -> str:
    if type(value) is int:
        return str(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e7:
        return f"{int(value)}.0"
    return repr(value)


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int or type(value) is float:
        return _java_number_text(value)
    return orjson.dumps(value).decode()


def _escape(text: str) -> str:
    return ESCAPE_PREFIX + text if text.startswith("\x00") else text


def string_value(value: Any, handling: str) -> str | None:
    """The stored (encoded) form of a string-dimension value."""
    if type(value) is str:
        return _escape(value)
    if type(value) is list:
        items = [_scalar_text(item) for item in value]
        if handling == "SORTED_SET":
            items = list(set(items))
        if handling != "ARRAY":
            items.sort(key=lambda item: (item is not None, item or ""))
        if not items:
            return None
        if len(items) == 1:
            return None if items[0] is None else _escape(items[0])
        return MULTI_PREFIX + orjson.dumps(items).decode()
    text = _scalar_text(value)
    return None if text is None else _escape(text)


def sketch_value(value: Any) -> str | None:
    """The stored form of a sketch aggregator's input value (see ``SKETCH_LONG_PREFIX``)."""
    kind = type(value)
    if kind is str:
        return _escape(value)
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return SKETCH_LONG_PREFIX + str(value)
    if kind is float:
        return SKETCH_DOUBLE_PREFIX + repr(value)
    if kind is list:
        items = [text for text in map(_scalar_text, value) if text]
        if not items:
            return None
        return MULTI_PREFIX + orjson.dumps(items).decode()
    return None if value is None else _escape(_scalar_text(value) or "")


# ------------------------------------------------------------------- typed discovery
# Druid's type-aware schema discovery (docs/ingestion/schema-design.md, "Type-aware schema
# discovery"): a column is STRING, LONG, DOUBLE, ARRAY<STRING|LONG|DOUBLE> or COMPLEX<json>,
# the least restrictive type of its values: mixed numbers are DOUBLE, any string makes it
# STRING, arrays make it an array of the least restrictive element type, nested objects (and
# arrays of objects or arrays) make it json. Booleans are longs (druid.expressions.useStrictBooleans,
# true by default). Types here: "long", "double", "string", "json", "array" (no element typed
# yet: empty or all-null arrays) and "array_<element>".

_SCALAR_ORDER = {"long": 0, "double": 1, "string": 2}


def value_type(value: Any) -> str | None:
    """The discovery type of one JSON value (``None`` for null)."""
    kind = type(value)
    if value is None:
        return None
    if kind is str:
        return "string"
    if kind is bool:
        return "long"
    if kind is int:
        return "long" if _INT64_MIN <= value <= _INT64_MAX else "double"
    if kind is float:
        return "double"
    if kind is list:
        element: str | None = None
        for item in value:
            item_type = value_type(item)
            if item_type is None:
                continue
            if item_type not in _SCALAR_ORDER:
                return "json"
            element = item_type if element is None else least_restrictive(element, item_type)
        return "array" if element is None else f"array_{element}"
    return "json"


def least_restrictive(a: str | None, b: str | None) -> str | None:
    """The least restrictive of two discovery types (``None``: no value seen)."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if a == "json" or b == "json":
        return "json"
    array = a.startswith("array") or b.startswith("array")
    ea = a.removeprefix("array").removeprefix("_") or None
    eb = b.removeprefix("array").removeprefix("_") or None
    element = _wider_scalar(ea, eb)
    if not array:
        return element
    return "array" if element is None else f"array_{element}"


def _wider_scalar(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if _SCALAR_ORDER[a] >= _SCALAR_ORDER[b] else b


def column_kind(observed: str | None) -> DimKind:
    """The dimension kind of a discovered type: a column of nulls only is a string column, and
    one of empty arrays only an array of strings."""
    if observed is None or observed == "string":
        return "string"
    if observed == "array":
        return "array_string"
    kind: DimKind = observed  # type: ignore[assignment]  # value_type returns DimKind names
    return kind


def _element(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "array_long":
        return int(value)
    if kind == "array_double":
        return float(value)
    return _scalar_text(value)


def typed_value(value: Any, kind: str) -> Any:
    """A value as stored in an internal column of ``kind``, given it fits (see ``observe``)."""
    if value is None:
        return None
    if kind in _ARRAY_ELEMENTS:
        items = value if type(value) is list else [value]
        return orjson.dumps([_element(item, kind) for item in items]).decode()
    if kind == "json":
        return orjson.dumps(value).decode()
    if kind == "long":
        return int(value)
    if kind == "double":
        return float(value)
    return string_value(value, "ARRAY")


def _stored_value(value: Any, kind: str) -> Any:
    """The JSON value of a stored internal value of ``kind``."""
    if value is None or kind in ("long", "float", "double"):
        return value
    if kind in TEXT_KINDS:
        return orjson.loads(value)
    if value.startswith(MULTI_PREFIX):
        return orjson.loads(value[2:])
    return value[2:] if value.startswith(ESCAPE_PREFIX) else value


def convert_stored(column: pa.ChunkedArray | pa.Array, old: str, new: DimKind) -> pa.Array:
    """An internal column of kind ``old`` as one of kind ``new`` (a type that widened)."""
    if old == "long" and new == "double":
        return pc.cast(column, pa.float64())
    values = column.to_pylist()
    return pa.array([typed_value(_stored_value(v, old), new) for v in values], type=INTERNAL_TYPES[new])


def _number(value: Any, integer: bool) -> int | float | None:
    """A JSON value as a long (``integer``) or a double; ``None`` for null/""; raises _Unconvertible."""
    if value is None:
        return None
    kind = type(value)
    if kind is bool:
        return int(value) if integer else float(value)
    if kind is int:
        if integer:
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise _Unconvertible
            return int(value)
        try:
            return float(value)
        except OverflowError:
            raise _Unconvertible from None
    if kind is float:
        if integer:
            if not math.isfinite(value) or not _INT64_MIN <= value < 2.0**63:
                raise _Unconvertible
            return int(value)
        if not math.isfinite(value):
            raise _Unconvertible
        return float(value)
    if kind is str:
        text = value.strip()
        if not text:
            return None
        if _INTEGER.fullmatch(text):
            return _number(int(text), integer)
        if _DECIMAL.fullmatch(text):
            return _number(float(text), integer)
    raise _Unconvertible


def _describe(value: Any) -> str:
    text = value if type(value) is str else orjson.dumps(value, default=str).decode()
    return text if len(text) <= 200 else text[:200] + "..."


def convert_values(
    values: list[Any], kind: str, handling: str, label: str
) -> tuple[list[Any], list[tuple[int, str]]]:
    """Python-level conversion of one column; returns the values and ``(row, message)`` errors."""
    errors: list[tuple[int, str]] = []
    out: list[Any] = []
    append = out.append
    if kind == "string":
        for value in values:
            append(None if value is None else string_value(value, handling))
        return out, errors
    if kind in TEXT_KINDS:
        for value in values:
            append(typed_value(value, kind))
        return out, errors
    if kind == "sketch":
        out = [sketch_value(value) for value in values]
        return out, errors
    integer = kind == "long"
    target = "long" if integer else kind
    for index, value in enumerate(values):
        try:
            append(_number(value, integer))
        except _Unconvertible:
            append(None)
            errors.append((index, label.replace("{value}", _describe(value)).replace("{type}", target)))
    return out, errors


def _starts_with_nul(array: pa.Array) -> bool:
    return array.null_count < len(array) and bool(pc.any(pc.starts_with(array, "\x00")).as_py())


def _fast_array(values: list[Any], kind: str, may_have_nul: bool) -> pa.Array | None:
    """``pa.array`` when every value already has the right Python type; ``None`` if not."""
    try:
        array = pa.array(values, type=INTERNAL_TYPES[kind])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return None
    if kind in ("string", "sketch") and may_have_nul and _starts_with_nul(array):
        return None
    return array


def convert_column(
    values: list[Any], kind: str, handling: str, label: str, may_have_nul: bool = True
) -> tuple[pa.Array, list[tuple[int, str]]]:
    """One column of row values in its internal type, with ``(row, message)`` conversion errors."""
    array = None if kind in TEXT_KINDS else _fast_array(values, kind, may_have_nul)
    if array is not None:
        return array, []
    converted, errors = convert_values(values, kind, handling, label)
    return pa.array(converted, type=INTERNAL_TYPES[kind]), errors


def decode_string_column(array: pa.Array | pa.ChunkedArray, multi: bool) -> pa.Array:
    """Stored string column -> segment column (``list<string>`` when ``multi``)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    encoded = array.null_count < len(array) and pc.any(pc.starts_with(array, "\x00")).as_py()
    if not multi:
        if not encoded:
            return array
        return pa.array(
            [v[2:] if v is not None and v.startswith(ESCAPE_PREFIX) else v for v in array.to_pylist()],
            type=pa.string(),
        )
    out: list[list[str | None] | None] = []
    for value in array.to_pylist():
        if value is None:
            out.append(None)
        elif value.startswith(MULTI_PREFIX):
            out.append(orjson.loads(value[2:]))
        elif value.startswith(ESCAPE_PREFIX):
            out.append([value[2:]])
        else:
            out.append([value])
    return pa.array(out, type=pa.list_(pa.string()))


def decode_text_column(array: pa.Array | pa.ChunkedArray, kind: str) -> pa.Array:
    """A JSON-text internal column (``TEXT_KINDS``) -> segment column: a typed list, or JSON."""
    if kind == "json":
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if pa.types.is_string(JSON_OUTPUT_TYPE):
            return array
        return pa.ExtensionArray.from_storage(JSON_OUTPUT_TYPE, array)
    loads = orjson.loads
    values = [None if v is None else loads(v) for v in array.to_pylist()]
    return pa.array(values, type=pa.list_(_ARRAY_ELEMENTS[kind]))


def has_multi_values(array: pa.Array | pa.ChunkedArray) -> bool:
    if array.null_count == len(array):
        return False
    return bool(pc.any(pc.starts_with(array, MULTI_PREFIX)).as_py())


# ----------------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class _Extraction:
    field: str
    kind: ValueKind
    handling: str
    col: str
    label: str


DIM_LABEL = "could not convert value [{value}] to {type}"


def field_label(field: str) -> str:
    """The conversion error message of a metric's input field (``{value}``: the value)."""
    return "Unable to parse value[{value}] for field[" + field + "]"


class RowConverter:
    """Turns a batch of parsed rows into an internal Arrow table, reporting per-row column errors."""

    def __init__(self, plan: ColumnPlan) -> None:
        self.plan = plan
        self._metric_extractions = [
            _Extraction(m.field, m.value_kind, "", m.col, field_label(m.field))
            for m in plan.metrics
            if m.field is not None
        ] + [
            _Extraction(
                m.time_field,
                "long",
                "",
                m.time_col,
                field_label(m.time_field),
            )
            for m in plan.metrics
            if m.time_field is not None and m.time_col is not None
        ]

    def _extractions(self) -> list[_Extraction]:
        dims = [
            _Extraction(d.name, d.kind, d.multi_value_handling, d.col, DIM_LABEL)
            for d in self.plan.dimensions
        ]
        return dims + self._metric_extractions

    def convert(
        self,
        rows: Sequence[Mapping[str, Any]],
        times: pa.Array,
        may_have_nul: bool = True,
        raw_times: pa.Array | None = None,
        mask_of: FilterMask | None = None,
    ) -> tuple[pa.Table, dict[int, list[str]]]:
        """Build the internal table of ``rows`` (``times``: their ``__time``).

        ``raw_times``: the row times before truncation to the query granularity (what a
        first/last aggregator orders by; ``times`` when not given); ``mask_of``: a filtered
        aggregator's filter on these rows.

        ``may_have_nul=False`` promises that no string in the rows contains a NUL character
        (their JSON had no ``\\u0000``), which skips the check for values needing escaping.
        """
        plan = self.plan
        if plan.typed_discovery:
            plan.observe(rows)
        elif plan.discovering:
            seen: set[str] = set()
            for row in rows:
                seen.update(row)
            plan.discover(seen)
        n = len(rows)
        extractions = self._extractions()
        arrays: dict[str, pa.Array] = {}
        errors: dict[int, list[str]] = {}

        # One C-level pass over the dicts for every column whose field appears once with a plain type.
        counts: dict[str, int] = {}
        for ex in extractions:
            counts[ex.field] = counts.get(ex.field, 0) + 1
        struct_fields = [ex for ex in extractions if counts[ex.field] == 1 and ex.kind not in TEXT_KINDS]
        if struct_fields:
            try:
                struct = pa.array(
                    rows,
                    type=pa.struct([pa.field(ex.field, INTERNAL_TYPES[ex.kind]) for ex in struct_fields]),
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
                struct = None
            if struct is not None:
                for index, ex in enumerate(struct_fields):
                    child = struct.field(index)
                    if ex.kind in ("string", "sketch") and may_have_nul and _starts_with_nul(child):
                        continue  # needs escaping: the slow path below handles it
                    arrays[ex.col] = child

        for ex in extractions:
            if ex.col in arrays:
                continue
            array, column_errors = convert_column(
                [row.get(ex.field) for row in rows], ex.kind, ex.handling, ex.label, may_have_nul
            )
            for index, message in column_errors:
                errors.setdefault(index, []).append(message)
            arrays[ex.col] = array

        columns: list[pa.Array] = [times]
        names = [TIME]
        for d in plan.dimensions:
            columns.append(arrays[d.col])
            names.append(d.col)
        for name, column in metric_columns(
            plan, arrays, n, times if raw_times is None else raw_times, mask_of
        ):
            columns.append(column)
            names.append(name)
        return pa.Table.from_arrays(columns, names=names), errors


# A filtered aggregator's filter on the rows being converted: True where the row matches.
FilterMask = Callable[[DimFilter], pa.Array]


def _chop(column: pa.Array, max_bytes: int) -> pa.Array:
    """Strings cut to at most ``max_bytes`` UTF-8 bytes, never inside a character (Druid's
    ``maxStringBytes`` of stringFirst/stringLast/stringAny)."""
    if column.null_count == len(column) or pc.max(pc.binary_length(column)).as_py() <= max_bytes:
        return column
    return pa.array(
        [
            None if v is None else v.encode()[:max_bytes].decode("utf-8", errors="ignore")
            for v in column.to_pylist()
        ],
        type=pa.string(),
    )


def metric_columns(
    plan: ColumnPlan,
    arrays: Mapping[str, pa.Array],
    n: int,
    raw_times: pa.Array,
    mask_of: FilterMask | None,
) -> list[tuple[str, pa.Array]]:
    """The internal metric columns (with the times of first/last values) of ``n`` converted rows.

    ``arrays``: the converted input of every metric with a field, and of every ``timeColumn``.
    A row a filtered aggregator's filter does not match adds nothing: count 0, value null.
    """
    out: list[tuple[str, pa.Array]] = []
    for m in plan.metrics:
        column = pa.repeat(pa.scalar(1, pa.int64()), n) if m.field is None else arrays[m.col]
        if m.value_kind == "string":
            column = _chop(column, m.effective.string_bytes if m.effective is not None else 1024)
        time = None
        if m.time_col is not None:
            time = raw_times if m.time_field is None else arrays[m.time_col]
        if m.filter is not None and mask_of is not None:
            matched = pc.fill_null(mask_of(m.filter), False)
            if m.field is None:
                column = pc.if_else(matched, column, pa.scalar(0, pa.int64()))
            else:
                column = pc.if_else(matched, column, pa.scalar(None, column.type))
            if time is not None:
                time = pc.if_else(matched, time, pa.scalar(None, pa.int64()))
        out.append((m.col, column))
        if m.time_col is not None and time is not None:
            out.append((m.time_col, time))
    return out

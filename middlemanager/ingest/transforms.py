"""``transformSpec`` in the ingest engine: expression transforms, then the filter, on a batch.

Druid's order (docs/ingestion/ingestion-spec.md, "transformSpec"): the timestampSpec,
then the transforms (each reads the *input* row and ``__time``; one named ``__time``
replaces the row time), then the filter, which sees the transformed row.

Both run on columns: transforms through ``expressions.evaluate`` (Arrow kernels, the
reference function once per distinct value, or per row when it must), the filter with
:func:`filter_mask`, where each one-column filter decides once per distinct value of
its column with the kernel's own ``test_cell`` and ``and``/``or``/``not`` combine with
Kleene logic. A column without one Arrow type (lists, objects, mixed types) sends the
filter node or expression that reads it to the per-row path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from middlemanager.ingest.expressions import Columns, evaluate, truth
from supervisor.expressions import identifiers
from supervisor.filters import (
    AndFilter,
    BoundFilter,
    ColumnComparisonFilter,
    DimFilter,
    ExpressionFilter,
    FalseFilter,
    InFilter,
    LikeFilter,
    NotFilter,
    OrFilter,
    SelectorFilter,
    TrueFilter,
    _ColumnFilter,
    cell_string,
)
from supervisor.spec import TIME_COLUMN, TransformSpec

__all__ = [
    "StageResult",
    "TransformStage",
    "arrow_like_pattern",
    "column_of",
    "filter_columns",
    "filter_mask",
    "result_values",
]

Rows = Callable[[], Sequence[Mapping[str, Any]]]


def filter_columns(node: DimFilter) -> set[str]:
    """The columns a filter reads."""
    if isinstance(node, AndFilter | OrFilter):
        return set().union(*(filter_columns(field) for field in node.fields))
    if isinstance(node, NotFilter):
        return filter_columns(node.field)
    if isinstance(node, _ColumnFilter):
        return {node.column_name}
    if isinstance(node, ColumnComparisonFilter):
        return {spec.dimension for spec in node.dimensions}
    if isinstance(node, ExpressionFilter):
        return identifiers(node.parsed)
    return set()


def column_of(values: Sequence[Any]) -> pa.Array | None:
    """Row values as one Arrow column when they share a type (str, int, float or bool), else None."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if len(kinds) > 1 or not kinds <= {str, int, float, bool}:
        return None
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


def _broadcast(value: bool | None, n: int) -> pa.Array:
    return pa.array([value] * n, type=pa.bool_())


def filter_mask(node: DimFilter, columns: Columns, n: int, rows: Rows) -> pa.Array:
    """The filter's three-valued result per row (null: unknown), computed on columns."""
    if isinstance(node, TrueFilter | FalseFilter):
        return _broadcast(isinstance(node, TrueFilter), n)
    if isinstance(node, AndFilter | OrFilter):
        combine = pc.and_kleene if isinstance(node, AndFilter) else pc.or_kleene
        masks = [filter_mask(field, columns, n, rows) for field in node.fields]
        out = masks[0]
        for mask in masks[1:]:
            out = combine(out, mask)
        return out
    if isinstance(node, NotFilter):
        return pc.invert(filter_mask(node.field, columns, n, rows))
    if isinstance(node, ExpressionFilter):
        array, _, _ = evaluate(node.parsed, columns, n, rows)
        if array is not None:
            return truth(array)
        return pa.array([node.evaluate(row) for row in rows()], type=pa.bool_())
    if isinstance(node, _ColumnFilter):
        name = node.column_name
        if name not in columns:
            return _broadcast(node.test_cell(None), n)
        column = columns[name]
        if column is not None:
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            if n == 0:
                return pa.array([], type=pa.bool_())
            mask = _kernel_mask(node, column)
            if mask is None:
                encoded = pc.dictionary_encode(column)
                results = [node.test_cell(cell_string(value)) for value in encoded.dictionary.to_pylist()]
                mask = pa.array(results, type=pa.bool_()).take(encoded.indices)
            if column.null_count:
                mask = pc.if_else(pc.is_null(column), _broadcast(node.test_cell(None), n), mask)
            return mask
    return pa.array([node.evaluate(row) for row in rows()], type=pa.bool_())


def _kernel_mask(node: _ColumnFilter, column: pa.Array) -> pa.Array | None:
    """``node.test_cell(cell_string(value))`` of every non-null value by Arrow kernels, for the
    filters and column types where that gives exactly the same result; ``None`` elsewhere.

    Null rows are left to the caller. A numeric ``bound`` reads a long or double cell as the
    double ``float(str(value))`` is (a long rounded to the nearest double, as Arrow's cast
    rounds it; NaN is unknown); ``selector`` and ``in`` compare strings as they are.
    """
    if node.extraction is not None:
        return None
    kind = column.type
    if isinstance(node, BoundFilter) and node.ordering == "numeric":
        if not (pa.types.is_int64(kind) or pa.types.is_float64(kind)):
            return None
        numbers = pc.cast(column, pa.float64(), safe=False)
        mask: pa.Array | None = None
        for bound, strict, op, op_strict in (
            (node.lower, node.lower_strict, pc.greater_equal, pc.greater),
            (node.upper, node.upper_strict, pc.less_equal, pc.less),
        ):
            if bound is None:
                continue
            # a bound is a number (checked when the spec was read)
            part = (op_strict if strict else op)(numbers, float(bound))
            mask = part if mask is None else pc.and_(mask, part)
        assert mask is not None
        if pa.types.is_float64(kind):
            mask = pc.if_else(pc.is_nan(numbers), pa.scalar(None, pa.bool_()), mask)
        return mask
    if not pa.types.is_string(kind):
        return None
    if isinstance(node, SelectorFilter):  # extraction filters have an extractionFn: not here
        if node.value is None:
            return _broadcast(False, len(column))
        return pc.equal(column, pa.scalar(node.value, pa.string()))
    if isinstance(node, InFilter):
        wanted = pa.array([value for value in node.values if value is not None], type=pa.string())
        return pc.is_in(column, value_set=wanted)
    if isinstance(node, LikeFilter):
        return pc.match_like(column, arrow_like_pattern(node.pattern, node.escape))
    return None


def arrow_like_pattern(pattern: str, escape: str | None) -> str:
    """Druid's ``like`` pattern (``escape`` quoting the next character) as Arrow's ``match_like``
    reads one (``\\`` quotes): ``%`` and ``_`` are wildcards unless quoted, as in ``like_regex``."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if escape is not None and char == escape and index + 1 < len(pattern):
            char = pattern[index + 1]
            out.append("\\" + char if char in "%_\\" else char)
            index += 2
            continue
        out.append("\\\\" if char == "\\" else char)
        index += 1
    return "".join(out)


@dataclass(slots=True)
class StageResult:
    # transform outputs by name: an Arrow array, or a list of row values
    outputs: dict[str, pa.Array | list[Any]]
    # rows that pass the filter (and had no transform error)
    keep: pa.Array
    # row index -> why a transform failed on it
    errors: dict[int, str]
    # the new row times when a transform replaces __time (None where it is not a number)
    times: list[int | None] | None


class TransformStage:
    """The transforms and the filter of one datasource."""

    def __init__(self, transform_spec: TransformSpec) -> None:
        self.transforms = transform_spec.transforms
        self.filter = transform_spec.filter
        self.replaces_time = any(t.name == TIME_COLUMN for t in self.transforms)
        inputs: set[str] = set()
        for transform in self.transforms:
            inputs |= transform.inputs
        self.transform_inputs = frozenset(inputs)
        self.filter_inputs = (
            frozenset(filter_columns(self.filter)) if self.filter is not None else frozenset()
        )
        self.outputs = frozenset(t.name for t in self.transforms)

    @property
    def active(self) -> bool:
        return bool(self.transforms) or self.filter is not None

    @property
    def inputs(self) -> frozenset[str]:
        """Input columns read by the transforms, or by the filter and not computed by a transform."""
        return self.transform_inputs | (self.filter_inputs - self.outputs)

    def apply(self, columns: Columns, n: int, rows: Rows) -> StageResult:
        """Run the stage on ``n`` rows; ``columns`` holds the inputs and ``__time``, ``rows()``
        the same rows as mappings (used only where a per-row path is needed)."""
        outputs: dict[str, pa.Array | list[Any]] = {}
        errors: dict[int, str] = {}
        for transform in self.transforms:
            array, values, failed = evaluate(transform.parsed, columns, n, rows)
            for index, message in failed.items():
                errors.setdefault(index, f"Could not transform value for {transform.name} reason: {message}")
            outputs[transform.name] = array if array is not None else (values or [])
        times: list[int | None] | None = None
        if self.replaces_time:
            times = _times(outputs[TIME_COLUMN])
            for index, ms in enumerate(times):
                if ms is None:
                    errors.setdefault(index, f"Could not transform value for {TIME_COLUMN}: not a number")
        keep = _broadcast(True, n)
        if self.filter is not None:
            transformed: dict[str, Any] = dict(columns)
            for name, output in outputs.items():
                transformed[name] = output if isinstance(output, pa.Array) else column_of(output)
            keep = pc.fill_null(
                filter_mask(self.filter, transformed, n, _transformed_rows(rows, outputs)), False
            )
        if errors:
            failed_mask = pa.array([index in errors for index in range(n)], type=pa.bool_())
            keep = pc.and_(keep, pc.invert(failed_mask))
        return StageResult(outputs, keep, errors, times)


def _times(output: pa.Array | list[Any]) -> list[int | None]:
    values = output.to_pylist() if isinstance(output, pa.Array) else output
    out: list[int | None] = []
    for value in values:
        if isinstance(value, bool) or value is None:
            out.append(None)
        elif isinstance(value, int):
            out.append(value)
        elif isinstance(value, float):
            out.append(None if value != value or abs(value) >= 2**63 else int(value))
        elif isinstance(value, str):
            from supervisor.expressions.values import parse_number

            number = parse_number(value)
            out.append(None if number is None else int(number))
        else:
            out.append(None)
    return out


def _transformed_rows(rows: Rows, outputs: Mapping[str, pa.Array | list[Any]]) -> Rows:
    def build() -> Sequence[Mapping[str, Any]]:
        base = rows()
        lists = {name: out.to_pylist() if isinstance(out, pa.Array) else out for name, out in outputs.items()}
        return [
            {**row, **{name: values[index] for name, values in lists.items()}}
            for index, row in enumerate(base)
        ]

    return build


def result_values(output: pa.Array | list[Any]) -> list[Any]:
    return output.to_pylist() if isinstance(output, pa.Array) else output

"""Row order and rollup of Arrow tables.

Row order. Every row set here is totally ordered by :func:`sort_keys_of` (``__time``, the
dimensions, and with rollup off the metrics), so that replicas write identical segments and
rollup only has to compare neighbours. Ties on the whole key are kept in input order (Arrow's
sort is stable), which fixes the order in which rollup aggregates partials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from middlemanager.ingest import sketches
from middlemanager.ingest.schema import TIME, ColumnPlan, MetricColumn

__all__ = [
    "arange",
    "conform",
    "finalize_run",
    "gather",
    "merge_sorted_duplicates",
    "metric_column_names",
    "rollup",
    "sort_keys_of",
    "sort_table",
]

# A permutation made of at most this many ascending runs is applied by zero-copy slicing.
_GATHER_MAX_SLICES = 64


def rollup(table: pa.Table, plan: ColumnPlan) -> pa.Table:
    """Group rows by ``__time`` and every dimension, aggregating each metric's partials.

    ``table`` comes straight from conversion: its sketch columns hold input values, which
    become one sketch per group here.
    """
    if table.num_rows == 0:
        return sketches.seal(table, plan.metrics)
    dims = [name for name in table.column_names if name.startswith("d")]
    native = [m for m in plan.metrics if m.arrow_native]
    aggregations = [(m.col, m.agg) for m in native]
    special = len(native) < len(plan.metrics)
    source = table
    if special:
        source = table.append_column(_ROW, arange(0, table.num_rows))
        aggregations.append((_ROW, "list"))
    grouped = source.group_by([TIME, *dims], use_threads=False).aggregate(aggregations)
    columns = [grouped.column(TIME)] + [grouped.column(d) for d in dims]
    names = [TIME, *dims]
    group_ids: pa.Array | None = None
    groups = None
    if special:
        lists = grouped.column(f"{_ROW}_list").combine_chunks()
        order = np.asarray(lists.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
        offsets = np.asarray(lists.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        offsets = offsets - offsets[0]
        ids = np.empty(table.num_rows, dtype=np.int64)
        ids[order] = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
        group_ids = pa.array(ids)
        groups = (order, offsets)
    for m in plan.metrics:
        if m.arrow_native:
            columns.append(grouped.column(f"{m.col}_{m.agg}"))
            names.append(m.col)
            continue
        assert group_ids is not None and groups is not None
        _special_columns(m, table, group_ids, groups, columns, names, fresh=True)
    return pa.Table.from_arrays(columns, names=names)


# A row-number column added while grouping (never a dimension or metric name: those are d<i>/m<i>).
_ROW = "__row"


def _special_columns(
    m: MetricColumn,
    table: pa.Table,
    group_ids: pa.Array,
    groups: sketches.Groups,
    columns: list[Any],
    names: list[str],
    fresh: bool,
) -> None:
    """Append a first/last or sketch metric's columns aggregated per group.

    ``fresh``: the sketch columns hold input values (straight from conversion), else sketches.
    """
    if m.kind == "sketch":
        column = table.column(m.col)
        merged = sketches.build(m, column, groups) if fresh else sketches.merge(m, column, groups)
        columns.append(merged)
        names.append(m.col)
        return
    assert m.time_col is not None
    value, time = sketches.first_last(
        table.column(m.col), table.column(m.time_col), group_ids, m.kind == "last"
    )
    columns += [value, time]
    names += [m.col, m.time_col]


def metric_column_names(plan: ColumnPlan) -> list[str]:
    """Every internal metric column: each metric's, and the time of each first/last value."""
    out = []
    for m in plan.metrics:
        out.append(m.col)
        if m.time_col is not None:
            out.append(m.time_col)
    return out


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


def arange(start: int, count: int) -> pa.Array:
    """int64 ``start, start + 1, ..., start + count - 1``."""
    return pa.array(np.arange(start, start + count, dtype=np.int64))


def gather(table: pa.Table, indices: pa.Array) -> pa.Table:
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

    ``metrics``: the metric columns (:func:`metric_column_names`) of all rows, in order;
    ``starts``: where groups start.
    """
    if not plan.metrics:
        return first
    n = len(starts)
    group_ids = pc.subtract(pc.cumulative_sum(pc.cast(starts, pa.int64())), 1)
    native = [m for m in plan.metrics if m.arrow_native]
    grouped = None
    if native:
        table = pa.table({"g": group_ids, **{m.col: metrics[m.col] for m in native}})
        grouped = table.group_by(["g"], use_threads=False).aggregate([(m.col, m.agg) for m in native])
    alone: pa.Array | None = None
    special = len(native) < len(plan.metrics)
    rows = pa.table(metrics) if special else None
    groups = sketches.groups_of(group_ids, first.num_rows) if special else None
    for m in plan.metrics:
        index = first.schema.get_field_index(m.col)
        if not m.arrow_native:
            assert rows is not None and groups is not None
            columns: list[Any] = []
            names: list[str] = []
            _special_columns(m, rows, group_ids, groups, columns, names, fresh=False)
            for name, column in zip(names, columns, strict=True):
                first = first.set_column(first.schema.get_field_index(name), name, column)
            continue
        assert grouped is not None
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
    metrics = {name: table.column(name) for name in metric_column_names(plan)}
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
    ordered = gather(table, indices)
    if not rollup_enabled:
        return ordered
    starts = _group_starts(ordered, keys)
    if starts is None:
        return ordered
    metrics = {name: ordered.column(name) for name in metric_column_names(plan)}
    del ordered
    first = table.take(indices.take(pc.indices_nonzero(starts)))
    return _aggregate_groups(first, metrics, starts, plan)

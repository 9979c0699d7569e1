"""A Broker's filter on a task's in-flight rows (issue 15.2: filter pushdown).

A query over rows a task still holds is answered by the Broker's DuckDB from the rows the task
sends; most of those rows are thrown away by the query's ``WHERE`` (a dashboard's page, a marker
of the freshness benchmark). The Broker turns what it can of the ``WHERE`` into a Druid filter
(``selector``, ``in``, ``like``, ``bound`` under ``and``/``or``: ``supervisor.protocol``'s
``PUSHABLE_FILTERS``) and the task leaves out the rows the filter rejects, on Arrow kernels.

The answer must never be narrower than the query: the Broker still runs the whole query on it,
so any superset of the rows the ``WHERE`` keeps is exact. A leaf is applied only where Druid's
filter and the SQL comparison agree on the column's type (``selector``/``in``/``like`` on a
string column, ``selector`` of a non-empty value, a numeric ``bound`` of whole numbers on a long
column, compared as integers where doubles hold every value exactly);
any other leaf, or one on a column these rows do not have, keeps every row, which under
``and``/``or`` only widens the answer (no ``not`` is pushed, where it would narrow it). A row
is kept where the filter is true: with ``and``/``or`` only, a leaf that is null where SQL's is
false (or the reverse) never changes that. Column names are matched case-insensitively, as the
Broker's DuckDB matches them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from middlemanager.ingest.transforms import arrow_like_pattern, filter_columns
from supervisor.filters import (
    AndFilter,
    BoundFilter,
    DimFilter,
    InFilter,
    LikeFilter,
    OrFilter,
    SelectorFilter,
)

__all__ = ["narrowed", "read_by"]

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


def read_by(node: DimFilter, names: Sequence[str]) -> list[str]:
    """The columns of ``names`` the filter reads (case-insensitively), in ``names``' order."""
    wanted = {c.lower() for c in filter_columns(node)}
    return [n for n in names if n.lower() in wanted]


_EXACT_DOUBLE = 2**53  # longs up to this size compare the same as integers and as doubles


def _bound_mask(node: BoundFilter, column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """A numeric bound of whole numbers on a long column whose values and bounds doubles hold
    exactly: compared as integers, the same as SQL's and the native engine's double compare."""
    if node.ordering != "numeric" or not pa.types.is_int64(column.type):
        return None
    extremes = pc.min_max(column)
    for value in (extremes["min"].as_py(), extremes["max"].as_py()):
        if value is not None and abs(value) > _EXACT_DOUBLE:
            return None
    mask = None
    for bound, strict, op, op_strict in (
        (node.lower, node.lower_strict, pc.greater_equal, pc.greater),
        (node.upper, node.upper_strict, pc.less_equal, pc.less),
    ):
        if bound is None:
            continue
        if not _INTEGER.fullmatch(str(bound)) or abs(int(str(bound))) > _EXACT_DOUBLE:
            return None
        part = (op_strict if strict else op)(column, pa.scalar(int(str(bound)), pa.int64()))
        mask = part if mask is None else pc.and_kleene(mask, part)
    return mask


def _mask(node: DimFilter, table: pa.Table, by_lower: Mapping[str, str]) -> pa.ChunkedArray | None:
    """The filter's result per row where it is exact on the columns' types; ``None``: every row
    kept (a leaf not decided here, or an ``or`` with such a leaf)."""
    if isinstance(node, AndFilter | OrFilter):
        masks = [_mask(f, table, by_lower) for f in node.fields]
        if isinstance(node, OrFilter):
            if any(m is None for m in masks):
                return None
            combine = pc.or_kleene
        else:
            masks = [m for m in masks if m is not None]
            combine = pc.and_kleene
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = combine(out, m)
        return out
    name = by_lower.get(getattr(node, "dimension", "").lower())
    if name is None:
        return None  # not a column of these rows (a select-list alias DuckDB reads in WHERE?)
    column = table.column(name)
    if isinstance(node, BoundFilter):
        return _bound_mask(node, column)
    if not pa.types.is_string(column.type):
        return None
    if isinstance(node, SelectorFilter) and node.value:  # '' matches nulls too in native queries
        return pc.equal(column, pa.scalar(node.value, pa.string()))
    if isinstance(node, InFilter) and None not in node.values:
        return pc.is_in(column, value_set=pa.array(list(node.values), type=pa.string()))
    if isinstance(node, LikeFilter):
        return pc.match_like(column, arrow_like_pattern(node.pattern, node.escape))
    return None


def narrowed(table: pa.Table, node: DimFilter) -> pa.Table:
    """The rows of ``table`` the filter may keep (every row where it cannot decide exactly)."""
    mask = _mask(node, table, {n.lower(): n for n in table.column_names})
    return table if mask is None else table.filter(mask)

"""What a query asks of the running tasks: its datasources, and a filter its rows must pass.

A query over rows a task still holds is answered from the rows the task sends (issue 15.2); the
fewer it sends, the sooner the answer. :mod:`broker.sql` says which columns a query reads; this
module says which datasources it reads (only their task groups are asked) and which Druid filter
every row it keeps passes (the task leaves the others out: :mod:`middlemanager.ingest.pushdown`).

The filter is a necessary condition, never the whole query: the Broker's DuckDB still runs the
full ``WHERE`` on what the tasks answer, so any filter that every row the ``WHERE`` keeps passes
is exact. From SQL only the conjuncts of a plain one-table ``SELECT``'s ``WHERE`` are taken (no
join, subquery, set operation or CTE), each when it is one of

* ``col = 'text'``, ``col IN ('a', 'b')``, ``col LIKE 'pattern' [ESCAPE 'c']`` (a ``selector``,
  ``in``, ``like`` filter),
* ``col = n``, ``col > n`` (``>=``, ``<``, ``<=``, flipped when the number comes first), ``col
  BETWEEN n AND m`` with whole numbers (a numeric ``bound``),
* the same comparisons of ``__time`` with ``TIMESTAMP '2015-09-12 00:00:00'`` literals (or strings
  DuckDB reads as timestamps), UTC to the millisecond as the Broker's DuckDB reads them (a
  numeric ``bound`` on ``__time`` in epoch milliseconds, as the tasks hold it),
* an ``OR`` of such conditions, or an ``AND`` of them where the others are dropped;

anything else (``NOT``, functions, ``CURRENT_TIMESTAMP``, parameters) is not pushed. A
native query's ``filter`` is pushed when it is of those types (or the conjuncts of an ``and``
that are), with its ``intervals`` as a ``bound`` on ``__time`` (milliseconds, as the tasks hold it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlglot import exp

from broker.errors import QueryError
from broker.native import intervals_of
from supervisor import protocol as wire

__all__ = ["Pushdown", "native_columns", "native_pushdown", "sql_pushdown"]

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,3}))?)?"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\"(?:[^\"]|\"\")+\"")
_WHOLE = re.compile(r"-?[0-9]{1,18}")


# the native query types whose rows pass their filter and intervals (:mod:`broker.native`)
FILTERED_QUERY_TYPES = frozenset({"timeseries", "topN", "groupBy", "scan", "search"})
# the native query types that read only the columns they name
COLUMN_BOUNDED_QUERY_TYPES = frozenset(
    {"timeseries", "topN", "groupBy", "timeBoundary", "dataSourceMetadata"}
)


@dataclass(frozen=True)
class Pushdown:
    """What to ask the tasks: ``datasources`` (``None``: every datasource's groups) and, per
    datasource, a Druid filter (JSON) its answered rows must pass."""

    datasources: frozenset[str] | None = None
    filters: tuple[tuple[str, dict[str, Any]], ...] = ()


EVERYTHING = Pushdown()


def _tables(tree: exp.Expression) -> list[exp.Table]:
    return [t for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier)]


def sql_pushdown(tree: exp.Expression) -> Pushdown:
    """The datasources a parsed SQL query reads and the filter of a one-table ``SELECT``."""
    tables = _tables(tree)
    if any(t.db.lower() == "information_schema" for t in tables):
        return EVERYTHING  # its tables list every datasource, and their columns
    names = frozenset(t.name for t in tables if t.db.lower() in ("", "druid"))
    if not isinstance(tree, exp.Select) or len(tables) != 1 or len(names) != 1:
        return Pushdown(names)
    if any(True for _ in tree.find_all(exp.Join, exp.Subquery, exp.SetOperation, exp.CTE)):
        return Pushdown(names)
    if len(list(tree.find_all(exp.Select))) != 1 or tree.args.get("where") is None:
        return Pushdown(names)
    table = tables[0]
    node = _sql_filter(tree.args["where"].this, {table.name, table.alias_or_name})
    return Pushdown(names, ((table.name, node),) if node is not None else ())


def _conjuncts(node: Any) -> Iterator[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        yield from _conjuncts(node.left)
        yield from _conjuncts(node.right)
    else:
        yield node


def _sql_filter(node: Any, qualifiers: set[str]) -> dict[str, Any] | None:
    """A Druid filter every row that satisfies ``node`` passes, or ``None``."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        fields = [f for f in (_sql_filter(c, qualifiers) for c in _conjuncts(node)) if f is not None]
        if not fields:
            return None
        return fields[0] if len(fields) == 1 else {"type": "and", "fields": fields}
    if isinstance(node, exp.Or):
        parts = [_sql_filter(node.left, qualifiers), _sql_filter(node.right, qualifiers)]
        if any(p is None for p in parts):
            return None
        return {"type": "or", "fields": parts}
    return _sql_leaf(node, qualifiers)


def _column(node: exp.Expression, qualifiers: set[str]) -> str | None:
    if not isinstance(node, exp.Column) or not isinstance(node.this, exp.Identifier):
        return None
    if node.table and node.table not in qualifiers:
        return None
    return node.name or None


def _is_time(column: str) -> bool:
    return column.lower() == "__time"


def _time_ms(node: exp.Expression) -> int | None:
    """A ``TIMESTAMP '...'`` literal (or a string DuckDB casts to a timestamp), as epoch ms: only
    plain UTC forms to the millisecond (as the Broker's DuckDB reads them, with no zone)."""
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.TIMESTAMP):
        node = node.this
    text = _string(node)
    match = _TIMESTAMP.fullmatch(text) if text is not None else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=dt.UTC
        )
    except ValueError:
        return None
    return int(moment.timestamp()) * 1000 + int((fraction or "").ljust(3, "0"))


def _string(node: exp.Expression) -> str | None:
    return str(node.this) if isinstance(node, exp.Literal) and node.is_string else None


def _whole(node: exp.Expression) -> int | None:
    negative = isinstance(node, exp.Neg)
    if negative:
        node = node.this
    if not isinstance(node, exp.Literal) or node.is_string or not _WHOLE.fullmatch(str(node.this)):
        return None
    return -int(str(node.this)) if negative else int(str(node.this))


def _bound(column: str, lower: int | None, upper: int | None, strict: tuple[bool, bool]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "bound", "dimension": column, "ordering": "numeric"}
    if lower is not None:
        out.update(lower=str(lower), lowerStrict=strict[0])
    if upper is not None:
        out.update(upper=str(upper), upperStrict=strict[1])
    return out


# comparison -> (lower?, strict?) with the column on the left
_COMPARISONS: dict[type[exp.Expression], tuple[bool, bool]] = {
    exp.GT: (True, True),
    exp.GTE: (True, False),
    exp.LT: (False, True),
    exp.LTE: (False, False),
}
_FLIPPED: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
}


def _sql_leaf(node: exp.Expression, qualifiers: set[str]) -> dict[str, Any] | None:
    escape: str | None = None
    if isinstance(node, exp.Escape):
        escape = _string(node.expression)
        if escape is None or len(escape) != 1:
            return None
        node = node.this
    if isinstance(node, exp.Like):
        column, pattern = _column(node.this, qualifiers), _string(node.expression)
        if column is None or pattern is None or _is_time(column):
            return None
        like: dict[str, Any] = {"type": "like", "dimension": column, "pattern": pattern}
        return like if escape is None else {**like, "escape": escape}
    if escape is not None:
        return None
    if isinstance(node, exp.In):
        column = _column(node.this, qualifiers)
        values = [_string(v) for v in node.expressions]
        if column is None or _is_time(column) or node.args.get("query") or not values or None in values:
            return None
        return {"type": "in", "dimension": column, "values": values}
    if isinstance(node, exp.Between):
        column = _column(node.this, qualifiers)
        if column is None:
            return None
        read = _time_ms if _is_time(column) else _whole
        low, high = read(node.args["low"]), read(node.args["high"])
        if low is None or high is None:
            return None
        return _bound(column, low, high, (False, False))
    kind: type[exp.Expression] = type(node)
    if not isinstance(node, exp.EQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
        return None
    left, right = node.this, node.expression
    if _column(left, qualifiers) is None:
        left, right = right, left
        kind = _FLIPPED.get(kind, kind)
    column = _column(left, qualifiers)
    if column is None:
        return None
    time = _is_time(column)
    if kind is exp.EQ:
        text = None if time else _string(right)
        if text is not None:
            return {"type": "selector", "dimension": column, "value": text}
        number = _time_ms(right) if time else _whole(right)
        return None if number is None else _bound(column, number, number, (False, False))
    number = _time_ms(right) if time else _whole(right)
    if number is None:
        return None
    lower, strict = _COMPARISONS[kind]
    return _bound(column, number if lower else None, None if lower else number, (strict, strict))


def _checked(node: Any) -> dict[str, Any] | None:
    """``node`` when a task takes it as a pushed filter (``InflightRowsRequest.filter``)."""
    try:
        wire.InflightRowsRequest.model_validate({"filter": node})
    except ValidationError:
        return None
    return node if isinstance(node, dict) else None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def native_columns(query: dict[str, Any]) -> frozenset[str] | None:
    """Every name a native query may read a column by: each string in it, and each identifier
    in its strings (expressions), ``__time`` too. A superset: native queries name columns only
    in strings (``dimension``, ``fieldName``, ``columns``, expressions ...). ``None`` (every
    column) for the queries that read a datasource's whole schema (``segmentMetadata``,
    ``search`` of every dimension, ``scan`` of every column, joins)."""
    kind = query.get("queryType")
    if kind not in COLUMN_BOUNDED_QUERY_TYPES and not (kind == "scan" and query.get("columns")):
        return None
    if native_pushdown(query).datasources is None:
        return None
    names = {"__time"}
    for text in _strings(query):
        names.add(text)
        names.update(m.strip('"').replace('""', '"') for m in _IDENTIFIER.findall(text))
    return frozenset(names)


def native_pushdown(query: dict[str, Any]) -> Pushdown:
    """The datasource of a native query on a table, and its pushable ``filter`` and ``intervals``."""
    source = query.get("dataSource")
    if isinstance(source, dict) and source.get("type") == "table":
        source = source.get("name")
    if not isinstance(source, str):
        return EVERYTHING
    if query.get("queryType") not in FILTERED_QUERY_TYPES:
        return Pushdown(frozenset([source]))
    fields: list[dict[str, Any]] = []
    raw = query.get("filter")
    whole = _checked(raw)
    if whole is not None:
        fields.append(whole)
    elif isinstance(raw, dict) and raw.get("type") == "and" and isinstance(raw.get("fields"), list):
        fields.extend(f for f in map(_checked, raw["fields"]) if f is not None)
    try:
        spans = intervals_of(query)
    except QueryError:
        spans = []  # the query's own run says why
    times = [_bound("__time", a, b, (False, True)) for a, b in spans]
    if times:
        fields.append(times[0] if len(times) == 1 else {"type": "or", "fields": times})
    if not fields:
        return Pushdown(frozenset([source]))
    node = fields[0] if len(fields) == 1 else {"type": "and", "fields": fields}
    return Pushdown(frozenset([source]), ((source, node),))

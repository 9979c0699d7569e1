"""Druid SQL to DuckDB SQL: parsed by sqlglot (its ``druid`` dialect), rewritten, printed for DuckDB.

What is rewritten (Druid's docs: querying/sql.md, sql-scalar.md, sql-aggregations.md,
sql-metadata-tables.md):

* tables: a datasource (``wikipedia``, ``druid.wikipedia``) becomes its view ``druid."wikipedia"``;
  ``INFORMATION_SCHEMA.X`` and ``sys.X`` become tables the engine fills (:mod:`broker.engine`); any
  other name is Druid's ``Object 'x' not found``;
* ``TIME_FLOOR``/``FLOOR(x TO unit)``: DuckDB's ``date_trunc``/``time_bucket`` where they give
  Druid's answer (UTC, one calendar unit or a fixed period, no origin), else the kernel's
  flooring; ``TIME_SHIFT``, ``TIME_EXTRACT``, ``TIME_PARSE``, ``TIME_FORMAT``: the kernel's
  (:mod:`broker.udfs`); ``MILLIS_TO_TIMESTAMP``/``TIMESTAMP_TO_MILLIS``: ``epoch_ms``;
* ``LATEST(x)``/``EARLIEST(x)`` (and ``_BY``): ``arg_max``/``arg_min`` by ``__time``;
  ``APPROX_COUNT_DISTINCT`` (and ``_DS_HLL``/``_DS_THETA`` over raw columns): DuckDB's HyperLogLog.

Only a single read query is accepted: anything else (DDL, ``SET``, ``COPY``, ``ATTACH``, ``PRAGMA``,
several statements) is refused before DuckDB sees it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from broker.errors import QueryError, SqlParseError, Unsupported
from supervisor.expressions import values as tv

DRUID_SCHEMA = "druid"
INFO_SCHEMA = "druid_info"
SYS_SCHEMA = "druid_sys"
INFO_TABLES = ("SCHEMATA", "TABLES", "COLUMNS")
SYS_TABLES = ("segments", "tasks", "supervisors", "servers")

# one calendar unit Druid floors to, and DuckDB's date_trunc name of it (weeks start on Monday in both)
_TRUNC_UNITS = {
    "PT1S": "second",
    "PT1M": "minute",
    "PT1H": "hour",
    "P1D": "day",
    "P1W": "week",
    "P1M": "month",
    "P3M": "quarter",
    "P1Y": "year",
}
_FLOOR_UNITS = {
    "SECOND": "second",
    "MINUTE": "minute",
    "HOUR": "hour",
    "DAY": "day",
    "WEEK": "week",
    "MONTH": "month",
    "QUARTER": "quarter",
    "YEAR": "year",
}
_FLOOR_PERIODS = {
    "SECOND": "PT1S",
    "MINUTE": "PT1M",
    "HOUR": "PT1H",
    "DAY": "P1D",
    "WEEK": "P1W",
    "MONTH": "P1M",
    "QUARTER": "P3M",
    "YEAR": "P1Y",
}


@dataclass(frozen=True)
class Translated:
    sql: str
    datasources: frozenset[str]
    system_tables: frozenset[str] = field(default_factory=frozenset)
    info_tables: frozenset[str] = field(default_factory=frozenset)


def _position(e: ParseError) -> tuple[str, dict[str, str]]:
    first = e.errors[0] if e.errors else {}
    line, col = first.get("line"), first.get("col")
    text = str(first.get("description") or e).splitlines()[0]
    if line is None or col is None:
        return text, {}
    return f"{text} at line {line}, column {col}", {
        "line": str(line),
        "column": str(col),
        "sourceType": "sql",
    }


def parse(query: str) -> Any:
    """One read-only query, or Druid's parse/validation error (400)."""
    if not query.strip():
        raise SqlParseError("query: must not be empty")
    try:
        statements = [s for s in sqlglot.parse(query, read="druid") if s is not None]
    except ParseError as e:
        message, context = _position(e)
        raise SqlParseError(f"Incorrect syntax: {message}", context) from e
    except TokenError as e:
        raise SqlParseError(f"Incorrect syntax: {e}") from e
    if len(statements) != 1:
        raise QueryError(f"one statement per query (got {len(statements)})")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise Unsupported(
            f"only read queries (SELECT ...) are allowed; got {type(statement).__name__.upper()}"
        )
    return statement


def _fn(name: str, *args: Any) -> exp.Expression:
    node: Any = exp.func(name, *args)
    return node  # type: ignore[no-any-return]


def _ms(node: exp.Expression) -> exp.Expression:
    return _fn("epoch_ms", node)


def _ts(node: exp.Expression) -> exp.Expression:
    return _fn("epoch_ms", node)  # epoch_ms(BIGINT) -> TIMESTAMP, epoch_ms(TIMESTAMP) -> BIGINT


def _literal(node: exp.Expression | None) -> str | None:
    return node.name if isinstance(node, exp.Literal) and node.is_string else None


def _zone_arg(node: exp.Expression | None, default: str) -> exp.Expression:
    if node is None or isinstance(node, exp.Null):
        return exp.Literal.string(default)
    return node


def _time_floor(
    ts: exp.Expression,
    period: exp.Expression,
    origin: exp.Expression | None,
    zone: exp.Expression | None,
    default_zone: str,
) -> exp.Expression:
    text = _literal(period)
    zone_text = _literal(zone) if zone is not None else default_zone
    no_origin = origin is None or isinstance(origin, exp.Null)
    own = duckdb_floor(text, zone_text) if text is not None and zone_text is not None and no_origin else None
    if own is not None and own[0] == "date_trunc":
        return _fn("date_trunc", exp.Literal.string(own[1]), ts)
    if own is not None:
        return _fn(
            "time_bucket",
            exp.Interval(this=exp.Literal.string(own[1])),
            ts,
            exp.Cast(this=exp.Literal.string("1970-01-01"), to=exp.DataType.build("TIMESTAMP")),
        )
    origin_ms = exp.Null() if no_origin else _ms(origin)  # type: ignore[arg-type]
    return _ts(_fn("druid_time_floor", _ms(ts), period, origin_ms, _zone_arg(zone, default_zone)))


def duckdb_floor(period: str, zone: str) -> tuple[str, str] | None:
    """DuckDB's own flooring where it gives Druid's answer (UTC, no origin): ``("date_trunc", unit)``
    for one calendar unit, ``("time_bucket", "N milliseconds")`` for a fixed length (whole periods
    counted from the epoch); None otherwise (the kernel's ``druid_time_floor``, a Python function
    called per row, then floors)."""
    if not tv.is_utc(_zone(zone)):
        return None
    unit = _TRUNC_UNITS.get(period.upper())
    if unit is not None:
        return ("date_trunc", unit)
    fixed = _period(period).fixed_ms
    return None if fixed is None else ("time_bucket", f"{fixed} milliseconds")


def duckdb_floor_sql(column: str, period: str, zone: str) -> str | None:
    """:func:`duckdb_floor` of the TIMESTAMP ``column`` as DuckDB SQL text."""
    own = duckdb_floor(period, zone)
    if own is None:
        return None
    if own[0] == "date_trunc":
        return f"date_trunc('{own[1]}', {column})"
    return f"time_bucket(INTERVAL '{own[1]}', {column}, TIMESTAMP '1970-01-01')"


def _zone(text: str) -> tzinfo:
    try:
        return tv.parse_zone(text)
    except ValueError as e:
        raise QueryError(str(e)) from e


def _period(text: str) -> tv.Period:
    try:
        return tv.parse_period(text)
    except ValueError as e:
        raise QueryError(str(e)) from e


def _args(node: exp.Expression) -> list[exp.Expression]:
    return list(node.expressions)


def _need(name: str, args: list[exp.Expression], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise QueryError(
            f"Invalid number of arguments to function '{name}': expected {want}, got {len(args)}"
        )


def _rewrite_function(node: exp.Expression, zone: str) -> exp.Expression:
    if isinstance(node, exp.Floor) and node.args.get("to") is not None:
        unit = node.args["to"].name.upper()
        if unit not in _FLOOR_UNITS:
            raise QueryError(f"FLOOR(... TO {unit}): unit not supported")
        if tv.is_utc(_zone(zone)):
            return _fn("date_trunc", exp.Literal.string(_FLOOR_UNITS[unit]), node.this)
        return _time_floor(node.this, exp.Literal.string(_FLOOR_PERIODS[unit]), None, None, zone)
    if isinstance(node, exp.ApproxDistinct):
        return _fn("approx_count_distinct", node.this)
    if not isinstance(node, exp.Anonymous):
        return node
    name = node.name.upper()
    args = _args(node)
    if name == "TIME_FLOOR":
        _need(name, args, 2, 4)
        padded: list[exp.Expression | None] = [*args, None, None]
        return _time_floor(args[0], args[1], padded[2], padded[3], zone)
    if name == "TIME_SHIFT":
        _need(name, args, 3, 4)
        tz = args[3] if len(args) > 3 else None
        return _ts(_fn("druid_time_shift", _ms(args[0]), args[1], args[2], _zone_arg(tz, zone)))
    if name == "TIME_EXTRACT":
        _need(name, args, 1, 3)
        unit = args[1] if len(args) > 1 else exp.Literal.string("MILLISECOND")
        tz = args[2] if len(args) > 2 else None
        return _fn("druid_time_extract", _ms(args[0]), unit, _zone_arg(tz, zone))
    if name == "TIME_PARSE":
        _need(name, args, 1, 3)
        pattern = args[1] if len(args) > 1 else exp.Null()
        tz = args[2] if len(args) > 2 else None
        return _ts(_fn("druid_time_parse", args[0], pattern, _zone_arg(tz, zone)))
    if name == "TIME_FORMAT":
        _need(name, args, 1, 3)
        pattern = args[1] if len(args) > 1 else exp.Null()
        tz = args[2] if len(args) > 2 else None
        return _fn("druid_time_format", _ms(args[0]), pattern, _zone_arg(tz, zone))
    if name == "MILLIS_TO_TIMESTAMP":
        _need(name, args, 1, 1)
        return _ts(exp.Cast(this=args[0], to=exp.DataType.build("BIGINT")))
    if name == "TIMESTAMP_TO_MILLIS":
        _need(name, args, 1, 1)
        return _ms(args[0])
    if name in ("LATEST", "EARLIEST"):
        _need(name, args, 1, 2)
        fn = "arg_max" if name == "LATEST" else "arg_min"
        return _fn(fn, args[0], exp.column("__time"))
    if name in ("LATEST_BY", "EARLIEST_BY"):
        _need(name, args, 2, 3)
        return _fn("arg_max" if name == "LATEST_BY" else "arg_min", args[0], args[1])
    if name in (
        "APPROX_COUNT_DISTINCT_DS_HLL",
        "APPROX_COUNT_DISTINCT_DS_THETA",
        "APPROX_COUNT_DISTINCT_BUILTIN",
    ):
        _need(name, args, 1, 3)
        return _fn("approx_count_distinct", args[0])
    return node


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def _rewrite_table(
    node: exp.Table, datasources: Collection[str], found: dict[str, set[str]]
) -> exp.Expression:
    schema = node.db.lower() if node.db else ""
    name = node.name
    alias = node.args.get("alias")
    if schema == "information_schema":
        if name.upper() not in INFO_TABLES:
            raise QueryError(f"Object 'INFORMATION_SCHEMA.{name}' not found")
        found["info"].add(name.upper())
        table = exp.table_(name.lower(), db=INFO_SCHEMA)
    elif schema == "sys":
        if name.lower() not in SYS_TABLES:
            raise QueryError(f"Object 'sys.{name}' not found")
        found["sys"].add(name.lower())
        table = exp.table_(name.lower(), db=SYS_SCHEMA)
    elif schema in ("", DRUID_SCHEMA) and name in datasources:
        found["ds"].add(name)
        table = exp.table_(exp.to_identifier(name, quoted=True), db=DRUID_SCHEMA)
    else:
        raise QueryError(
            f"Object '{name}' not found" if not schema else f"Object '{node.db}.{name}' not found"
        )
    if alias is not None:
        table.set("alias", alias)
    return table


def read_columns(tree: exp.Expression) -> frozenset[str] | None:
    """The column names a parsed query reads (of any table; ``COUNT(*)`` reads none), or ``None``
    when it may read every column (``*``, ``t.*``, ``USING``/``NATURAL`` joins, INFORMATION_SCHEMA):
    the in-flight rows a task answers need only these (issue 15.2, projection pushdown)."""
    for star in tree.find_all(exp.Star):
        if not isinstance(star.parent, exp.Count):
            return None
    for join in tree.find_all(exp.Join):
        if join.args.get("using") or join.args.get("method"):
            return None
    for table in tree.find_all(exp.Table):
        if table.db.lower() == "information_schema":
            return None
    return frozenset(column.name for column in tree.find_all(exp.Column) if column.name)


def translate(query: str | exp.Expression, datasources: Collection[str], zone: str = "UTC") -> Translated:
    """DuckDB SQL for a Druid SQL query over ``datasources`` (``zone``: the context's sqlTimeZone)."""
    tree = parse(query) if isinstance(query, str) else query
    _zone(zone)
    ctes = _cte_names(tree)
    found: dict[str, set[str]] = {"ds": set(), "sys": set(), "info": set()}

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            if not node.db and node.name.lower() in ctes:
                return node
            return _rewrite_table(node, datasources, found)
        return _rewrite_function(node, zone)

    out = tree.transform(rewrite, copy=True)
    return Translated(
        out.sql(dialect="duckdb"),
        frozenset(found["ds"]),
        frozenset(found["sys"]),
        frozenset(found["info"]),
    )

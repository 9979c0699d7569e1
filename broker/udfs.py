"""Druid's time functions DuckDB lacks, registered as DuckDB functions over milliseconds.

The arithmetic is the kernel's (``supervisor/expressions/values.py``: Joda's period flooring,
zones, patterns), the same that ingestion-time transforms use, so a query floors, shifts, extracts,
parses and formats time exactly as Druid does (docs: querying/sql-scalar.md, "Date and time
functions"). The SQL rewriter (:mod:`broker.sql`) calls these only where DuckDB's own
``date_trunc``/``time_bucket`` would not give Druid's answer (a time zone, an origin, a calendar
period with a count).
"""

from __future__ import annotations

from typing import Any

import duckdb
from duckdb import sqltypes

from supervisor.expressions import values as tv


# DuckDB reads each function's arity from its signature: one plain function per Druid function.
def _floor(ms: int | None, period: str | None, origin: int | None, zone: str | None) -> int | None:
    if ms is None or period is None:
        return None
    return tv.floor_time(ms, tv.parse_period(period), origin, tv.parse_zone(zone or "UTC"))


def _shift(ms: int | None, period: str | None, step: int | None, zone: str | None) -> int | None:
    if ms is None or period is None or step is None:
        return None
    return tv.shift_time(ms, tv.parse_period(period), step, tv.parse_zone(zone or "UTC"))


def _extract(ms: int | None, unit: str | None, zone: str | None) -> int | None:
    if ms is None or unit is None:
        return None
    return tv.extract_time(ms, unit.upper(), tv.parse_zone(zone or "UTC"))


def _parse(text: str | None, pattern: str | None, zone: str | None) -> int | None:
    if text is None:
        return None
    if pattern is None:
        return tv.parse_iso(text, tv.parse_zone(zone or "UTC"))
    return tv.parse_time(text, pattern, tv.parse_zone(zone or "UTC"))


def _format(ms: int | None, pattern: str | None, zone: str | None) -> str | None:
    if ms is None:
        return None
    return tv.format_time(ms, pattern, tv.parse_zone(zone or "UTC"))


def register(con: duckdb.DuckDBPyConnection) -> None:
    big, text = sqltypes.BIGINT, sqltypes.VARCHAR
    spec: list[tuple[str, Any, list[Any], Any]] = [
        ("druid_time_floor", _floor, [big, text, big, text], big),
        ("druid_time_shift", _shift, [big, text, big, text], big),
        ("druid_time_extract", _extract, [big, text, text], big),
        ("druid_time_parse", _parse, [text, text, text], big),
        ("druid_time_format", _format, [big, text, text], text),
    ]
    for name, fn, args, result in spec:
        # a bad period or zone is a query error (DuckDB raises it), not a silent null
        con.create_function(name, fn, args, result, null_handling="special")  # type: ignore[call-overload]

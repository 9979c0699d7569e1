"""Druid's native queries (``POST /druid/v2``), run as SQL on the same locked-down DuckDB.

Docs followed: querying/timeboundaryquery.md, timeseriesquery.md, topnquery.md, groupbyquery.md,
scan-query.md, segmentmetadataquery.md, datasourcemetadataquery.md, filters.md, aggregations.md,
post-aggregations.md, granularities.md. Filters are the ingestion models (``supervisor/filters.py``)
compiled to SQL; post-aggregations are computed on the grouped rows, as Druid does.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from broker.catalog import Snapshot
from broker.engine import Result
from broker.errors import QueryError, Unsupported
from broker.sql import DRUID_SCHEMA, Translated
from supervisor import filters as F
from supervisor.chronology import format_instant
from supervisor.expressions import values as tv

Run = Callable[[Translated], Awaitable[Result]]
_FILTER = TypeAdapter(F.DimFilter)
ETERNITY = (-(2**62), 2**62)

# granularities.md: the simple names and their periods
_SIMPLE = {
    "second": "PT1S",
    "minute": "PT1M",
    "five_minute": "PT5M",
    "ten_minute": "PT10M",
    "fifteen_minute": "PT15M",
    "thirty_minute": "PT30M",
    "hour": "PT1H",
    "six_hour": "PT6H",
    "eight_hour": "PT8H",
    "day": "P1D",
    "week": "P1W",
    "month": "P1M",
    "quarter": "P3M",
    "year": "P1Y",
}


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _col(name: str) -> str:
    """A column as filters see it: ``__time`` as its milliseconds, others as they are."""
    return 'epoch_ms("__time")' if name == "__time" else q(name)


def _str(name: str) -> str:
    return f"CAST({_col(name)} AS VARCHAR)"


def _filter_sql(f: Any) -> str:
    if getattr(f, "extraction_fn", None) is not None:
        raise Unsupported(f"filter '{f.type}' with an extractionFn is not supported in queries yet")
    if isinstance(f, F.TrueFilter):
        return "TRUE"
    if isinstance(f, F.FalseFilter):
        return "FALSE"
    if isinstance(f, F.AndFilter):
        return "(" + " AND ".join(_filter_sql(x) for x in f.fields) + ")"
    if isinstance(f, F.OrFilter):
        return "(" + " OR ".join(_filter_sql(x) for x in f.fields) + ")"
    if isinstance(f, F.NotFilter):
        return f"(NOT COALESCE({_filter_sql(f.field)}, FALSE))"
    if isinstance(f, F.InFilter):
        values = [v for v in f.values if v is not None]
        parts = [f"{_str(f.dimension)} IN ({', '.join(lit(str(v)) for v in values)})"] if values else []
        if len(values) != len(f.values):
            parts.append(f"{_col(f.dimension)} IS NULL")
        return "(" + " OR ".join(parts or ["FALSE"]) + ")"
    if isinstance(f, F.SelectorFilter):
        if f.value is None or f.value == "":
            return f"({_col(f.dimension)} IS NULL OR {_str(f.dimension)} = '')"
        return f"{_str(f.dimension)} = {lit(str(f.value))}"
    if isinstance(f, F.BoundFilter):
        numeric = f.ordering == "numeric"
        cell = f"TRY_CAST({_str(f.dimension)} AS DOUBLE)" if numeric else _str(f.dimension)
        parts = [f"{cell} IS NOT NULL"]
        if f.lower is not None:
            value = float(f.lower) if numeric else lit(str(f.lower))
            parts.append(f"{cell} {'>' if f.lower_strict else '>='} {value}")
        if f.upper is not None:
            value = float(f.upper) if numeric else lit(str(f.upper))
            parts.append(f"{cell} {'<' if f.upper_strict else '<='} {value}")
        return "(" + " AND ".join(parts) + ")"
    if isinstance(f, F.EqualsFilter):
        if f.match_value_type == "STRING":
            return f"{_str(f.column)} = {lit(str(f.match_value))}"
        return f"TRY_CAST({_col(f.column)} AS DOUBLE) = {float(f.match_value)}"
    if isinstance(f, F.RangeFilter):
        numeric = f.match_value_type != "STRING"
        cell = f"TRY_CAST({_col(f.column)} AS DOUBLE)" if numeric else _str(f.column)
        parts = [f"{cell} IS NOT NULL"]
        if f.lower is not None:
            parts.append(
                f"{cell} {'>' if f.lower_open else '>='} {float(f.lower) if numeric else lit(f.lower)}"
            )
        if f.upper is not None:
            parts.append(
                f"{cell} {'<' if f.upper_open else '<='} {float(f.upper) if numeric else lit(f.upper)}"
            )
        return "(" + " AND ".join(parts) + ")"
    if isinstance(f, F.NullFilter):
        return f"{_col(f.column)} IS NULL"
    if isinstance(f, F.LikeFilter):
        escape = f" ESCAPE {lit(f.escape)}" if f.escape else ""
        return f"{_str(f.dimension)} LIKE {lit(f.pattern)}{escape}"
    if isinstance(f, F.RegexFilter):
        return f"regexp_matches({_str(f.dimension)}, {lit(f.pattern)})"
    if isinstance(f, F.IntervalFilter):
        ranges = [F.interval_bounds(i) for i in f.intervals]
        cell = _col(f.dimension)
        return "(" + " OR ".join(f"({cell} >= {a} AND {cell} < {b})" for a, b in ranges) + ")"
    if isinstance(f, F.SearchFilter) and isinstance(
        f.query, F.ContainsSearchQuery | F.InsensitiveContainsSearchQuery
    ):
        sensitive = isinstance(f.query, F.ContainsSearchQuery) and f.query.case_sensitive
        fn = "contains" if sensitive else "contains_ci"
        if fn == "contains_ci":
            return f"contains(lower({_str(f.dimension)}), {lit(f.query.value.lower())})"
        return f"contains({_str(f.dimension)}, {lit(f.query.value)})"
    raise Unsupported(f"filter type '{f.type}' is not supported in queries yet")


def filter_sql(spec: Any) -> str:
    if spec is None:
        return "TRUE"
    try:
        model = _FILTER.validate_python(spec)
    except ValidationError as e:
        raise QueryError(f"filter: {e.errors(include_url=False)[0]['msg']}") from e
    return _filter_sql(model)


def intervals_of(query: dict[str, Any]) -> list[tuple[int, int]]:
    raw = query.get("intervals")
    if raw is None:
        raise QueryError("intervals: required")
    if isinstance(raw, dict):  # {"type": "intervals", "intervals": [...]}
        raw = raw.get("intervals")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise QueryError("intervals: a list of ISO-8601 intervals (start/end)")
    try:
        return [F.interval_bounds(str(i)) for i in raw]
    except ValueError as e:
        raise QueryError(f"intervals: {e}") from e


def _where(query: dict[str, Any]) -> str:
    time = 'epoch_ms("__time")'
    ranges = " OR ".join(f"({time} >= {a} AND {time} < {b})" for a, b in intervals_of(query))
    return f"({ranges}) AND COALESCE({filter_sql(query.get('filter'))}, FALSE)"


def _bucket(granularity: Any) -> str | None:
    """The SQL of a row's time bucket in ms, or None for ``all``."""
    g = granularity if granularity is not None else "all"
    if isinstance(g, str):
        name = g.lower()
        if name == "all":
            return None
        if name == "none":
            return 'epoch_ms("__time")'
        if name not in _SIMPLE:
            raise QueryError(f"granularity: unknown '{g}'")
        g = {"type": "period", "period": _SIMPLE[name]}
    if not isinstance(g, dict):
        raise QueryError("granularity: a name or an object")
    kind = g.get("type")
    if kind == "all":
        return None
    if kind == "none":
        return 'epoch_ms("__time")'
    origin = g.get("origin")
    origin_ms = "NULL"
    if origin is not None:
        parsed = tv.parse_iso(str(origin))
        if parsed is None:
            raise QueryError(f"granularity.origin: '{origin}' is not ISO-8601")
        origin_ms = str(parsed)
    if kind == "period":
        period, zone = str(g.get("period", "")), str(g.get("timeZone") or "UTC")
        try:
            tv.parse_period(period)
            tv.parse_zone(zone)
        except ValueError as e:
            raise QueryError(f"granularity: {e}") from e
        return f'druid_time_floor(epoch_ms("__time"), {lit(period)}, {origin_ms}, {lit(zone)})'
    if kind == "duration":
        duration = g.get("duration")
        if not isinstance(duration, int) or duration <= 0:
            raise QueryError("granularity.duration: a positive number of milliseconds")
        base = 0 if origin is None else int(origin_ms)
        return f'(epoch_ms("__time") - {base}) // {duration} * {duration} + {base}'
    raise QueryError(f"granularity: unknown type '{kind}'")


def _agg_sql(agg: dict[str, Any]) -> str:
    kind = agg.get("type")
    name = agg.get("name")
    if not isinstance(name, str) or not name:
        raise QueryError(f"aggregations: '{kind}' needs a name")
    field = agg.get("fieldName")
    if kind == "count":
        return "COUNT(*)"
    if kind == "filtered":
        inner = dict(agg.get("aggregator") or {})
        inner.setdefault("name", name)
        return f"{_agg_sql(inner)} FILTER (WHERE COALESCE({filter_sql(agg.get('filter'))}, FALSE))"
    if kind in ("cardinality", "hyperUnique", "HLLSketchBuild", "HLLSketchMerge", "thetaSketch"):
        fields = agg.get("fields") or ([field] if field else [])
        cols = [f["dimension"] if isinstance(f, dict) else f for f in fields]
        if not cols:
            raise QueryError(f"aggregations: '{name}' needs fieldName or fields")
        arg = q(cols[0]) if len(cols) == 1 else "row(" + ", ".join(q(c) for c in cols) + ")"
        return f"approx_count_distinct({arg})"
    if not isinstance(field, str):
        raise QueryError(f"aggregations: '{name}' ({kind}) needs a fieldName")
    col = q(field)
    sums = {"longSum": "BIGINT", "doubleSum": "DOUBLE", "floatSum": "DOUBLE"}
    if kind in sums:
        return f"COALESCE(SUM(TRY_CAST({col} AS {sums[kind]})), 0)"
    for prefix, fn in (("Min", "MIN"), ("Max", "MAX")):
        if kind in (f"long{prefix}", f"double{prefix}", f"float{prefix}"):
            return f"{fn}(TRY_CAST({col} AS {'BIGINT' if kind.startswith('long') else 'DOUBLE'}))"
    for prefix in ("long", "double", "float", "string"):
        if kind == f"{prefix}First":
            return f'arg_min({col}, "__time")'
        if kind == f"{prefix}Last":
            return f'arg_max({col}, "__time")'
    if kind in ("stringAny", "longAny", "doubleAny", "floatAny"):
        return f"any_value({col})"
    raise Unsupported(f"aggregation type '{kind}' is not supported in queries yet")


def _post(post: dict[str, Any], row: dict[str, Any]) -> Any:
    kind = post.get("type")
    if kind in ("fieldAccess", "finalizingFieldAccess"):
        return row.get(str(post.get("fieldName")))
    if kind == "constant":
        return post.get("value")
    fields = [_post(f, row) for f in post.get("fields", [])]
    if kind == "arithmetic":
        fn = post.get("fn")
        nums = [0.0 if v is None else float(v) for v in fields]
        if not nums:
            raise QueryError("postAggregations: arithmetic needs fields")
        acc = nums[0]
        for v in nums[1:]:
            if fn == "+":
                acc += v
            elif fn == "-":
                acc -= v
            elif fn == "*":
                acc *= v
            elif fn == "/":
                acc = 0.0 if v == 0 else acc / v  # post-aggregations.md: division by 0 is 0
            elif fn == "quotient":
                acc = math.nan if v == 0 else acc / v
            elif fn == "pow":
                acc = acc**v
            else:
                raise QueryError(f"postAggregations: unknown arithmetic fn '{fn}'")
        return acc
    if kind in ("doubleGreatest", "longGreatest", "doubleLeast", "longLeast"):
        present = [v for v in fields if v is not None]
        if not present:
            return None
        return max(present) if "Greatest" in kind else min(present)
    raise Unsupported(f"post-aggregation type '{kind}' is not supported in queries yet")


def _apply_posts(query: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    for post in query.get("postAggregations") or []:
        name = post.get("name")
        if not isinstance(name, str):
            raise QueryError("postAggregations: each needs a name")
        row[name] = _post(post, row)
    return row


def _datasource(query: dict[str, Any], snapshot: Snapshot) -> str:
    ds = query.get("dataSource")
    if isinstance(ds, dict) and ds.get("type") == "table":
        ds = ds.get("name")
    if not isinstance(ds, str):
        raise Unsupported("dataSource: only a table datasource (a name) is supported")
    return ds


def _aggs(query: dict[str, Any]) -> list[tuple[str, str]]:
    aggs = query.get("aggregations") or []
    if not isinstance(aggs, list):
        raise QueryError("aggregations: a list")
    return [(str(a.get("name")), _agg_sql(a)) for a in aggs]


def _time_min(snapshot: Snapshot, ds: str, intervals: list[tuple[int, int]]) -> int:
    """The timestamp of a granularity-``all`` row: the query's start, not before the data's first segment."""
    start = min(a for a, _ in intervals)
    segs = [
        s for s in snapshot.segments.get(ds, ()) if any(s.start_ms < b and s.end_ms > a for a, b in intervals)
    ]
    return max(start, min((s.start_ms for s in segs), default=start))


def _dims(query: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for d in query.get("dimensions") or []:
        if isinstance(d, str):
            out.append((d, d))
        elif isinstance(d, dict) and d.get("type", "default") == "default" and "dimension" in d:
            out.append((str(d.get("outputName") or d["dimension"]), str(d["dimension"])))
        else:
            raise Unsupported("dimensions: only names and default dimension specs are supported")
    return out


def _grouped(ds: str, query: dict[str, Any], dims: list[tuple[str, str]]) -> tuple[str, list[str]]:
    bucket = _bucket(query.get("granularity"))
    select = [f"{bucket} AS __bucket" if bucket else "NULL AS __bucket"]
    select += [f"{q(col)} AS {q(out)}" for out, col in dims]
    names = [n for n, _ in _aggs(query)]
    select += [f"{sql} AS {q(name)}" for name, sql in _aggs(query)]
    groups = ["__bucket", *[q(out) for out, _ in dims]]
    sql = (
        f"SELECT {', '.join(select)} FROM {DRUID_SCHEMA}.{q(ds)} WHERE {_where(query)} "
        f"GROUP BY {', '.join(groups)} ORDER BY __bucket"
    )
    return sql, names


def _plan(sql: str, ds: str) -> Translated:
    return Translated(sql, frozenset({ds}))


async def run(
    query: dict[str, Any],
    snapshot: Snapshot,
    execute: Run,
    describe: Callable[[str], Awaitable[list[tuple[str, str]]]],
) -> list[Any]:
    kind = query.get("queryType")
    ds = _datasource(query, snapshot)
    if ds not in snapshot.segments:
        return []  # Druid answers an empty list for a datasource without segments
    if kind == "timeBoundary":
        bound = query.get("bound")
        where = filter_sql(query.get("filter"))
        span = 'epoch_ms(MIN("__time")), epoch_ms(MAX("__time"))'
        sql = f"SELECT {span} FROM {DRUID_SCHEMA}.{q(ds)} WHERE {where}"
        lo, hi = (await execute(_plan(sql, ds))).rows[0]
        if lo is None:
            return []
        result = {"minTime": format_instant(lo), "maxTime": format_instant(hi)}
        if bound == "minTime":
            result.pop("maxTime")
        elif bound == "maxTime":
            result.pop("minTime")
        return [{"timestamp": format_instant(hi if bound == "maxTime" else lo), "result": result}]
    if kind == "dataSourceMetadata":
        sql = f'SELECT epoch_ms(MAX("__time")) FROM {DRUID_SCHEMA}.{q(ds)}'
        (hi,) = (await execute(_plan(sql, ds))).rows[0]
        if hi is None:
            return []
        return [{"timestamp": format_instant(hi), "result": {"maxIngestedEventTime": format_instant(hi)}}]
    if kind in ("timeseries", "topN", "groupBy"):
        intervals = intervals_of(query)
        dims = _dims(query)
        if kind == "topN":
            dim = query.get("dimension")
            dims = _dims({"dimensions": [dim]}) if dim is not None else []
            if len(dims) != 1:
                raise QueryError("dimension: required for a topN")
        sql, _names = _grouped(ds, query, dims)
        grouped = await execute(_plan(sql, ds))
        cols = list(grouped.columns)
        rows = [_apply_posts(query, dict(zip(cols, r, strict=True))) for r in grouped.rows]
        all_time = format_instant(_time_min(snapshot, ds, intervals))
        if kind == "groupBy":
            return _group_by_result(query, rows, format_instant(min(a for a, _ in intervals)))
        by_bucket: dict[Any, list[dict[str, Any]]] = {}
        for row in rows:
            by_bucket.setdefault(row.pop("__bucket"), []).append(row)
        buckets = sorted(by_bucket, key=lambda b: (b is not None, b))
        if query.get("descending"):
            buckets.reverse()
        out: list[Any] = []
        for b in buckets:
            stamp = all_time if b is None else format_instant(int(b))
            if kind == "timeseries":
                out.append({"timestamp": stamp, "result": by_bucket[b][0]})
            else:
                out.append({"timestamp": stamp, "result": _top(query, by_bucket[b])})
        return out
    if kind == "scan":
        return await _scan(query, ds, snapshot, execute)
    if kind == "segmentMetadata":
        return await _segment_metadata(query, ds, snapshot, describe)
    raise Unsupported(f"queryType '{kind}' is not supported")


def _metric_key(query: dict[str, Any]) -> tuple[str, bool]:
    metric = query.get("metric")
    inverted = False
    while isinstance(metric, dict):
        if metric.get("type") == "inverted":
            inverted = not inverted
            metric = metric.get("metric")
        elif metric.get("type") in ("numeric", None):
            metric = metric.get("metric")
        else:
            raise Unsupported(f"topN metric type '{metric.get('type')}' is not supported yet")
    if not isinstance(metric, str):
        raise QueryError("metric: required for a topN")
    return metric, inverted


def _top(query: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    metric, inverted = _metric_key(query)
    threshold = query.get("threshold")
    if not isinstance(threshold, int) or threshold < 1:
        raise QueryError("threshold: a positive integer")
    if rows and metric not in rows[0]:
        raise QueryError(f"metric: '{metric}' is neither an aggregation nor a post-aggregation")
    present = [r for r in rows if r[metric] is not None]
    ordered = sorted(present, key=lambda r: r[metric], reverse=not inverted)
    ordered += [r for r in rows if r[metric] is None]  # nulls last either way
    return ordered[:threshold]


def _sort_key(name: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    def key(row: dict[str, Any]) -> tuple[bool, Any]:
        value = row.get(name)
        return (value is None, value if value is not None else 0)

    return key


def _group_by_result(query: dict[str, Any], rows: list[dict[str, Any]], all_time: str) -> list[Any]:
    spec = query.get("limitSpec") or {}
    columns = spec.get("columns") or []
    for col in reversed(columns):
        name = col if isinstance(col, str) else col.get("dimension")
        desc = isinstance(col, dict) and col.get("direction") == "descending"
        rows.sort(key=_sort_key(str(name)), reverse=desc)
    offset = int(spec.get("offset") or 0)
    limit = spec.get("limit")
    rows = rows[offset:] if limit is None else rows[offset : offset + int(limit)]
    out = []
    for row in rows:
        b = row.pop("__bucket")
        out.append(
            {"version": "v1", "timestamp": all_time if b is None else format_instant(int(b)), "event": row}
        )
    return out


async def _scan(query: dict[str, Any], ds: str, snapshot: Snapshot, execute: Run) -> list[Any]:
    columns = query.get("columns") or []
    select = (
        ", ".join(_col(c) + f" AS {q(c)}" for c in columns)
        if columns
        else '* REPLACE (epoch_ms("__time") AS "__time")'
    )
    order = str(query.get("order") or "none").lower()
    sql = f"SELECT {select} FROM {DRUID_SCHEMA}.{q(ds)} WHERE {_where(query)}"
    if order in ("ascending", "descending"):
        sql += (
            f' ORDER BY "__time" {"ASC" if order == "ascending" else "DESC"}'
            if not columns or "__time" in columns
            else ""
        )
    limit, offset = query.get("limit"), query.get("offset")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if offset:
        sql += f" OFFSET {int(offset)}"
    result = await execute(_plan(sql, ds))
    cols = list(result.columns)
    compact = query.get("resultFormat") == "compactedList"
    events: list[Any] = [list(r) if compact else dict(zip(cols, r, strict=True)) for r in result.rows]
    if not events:
        return []
    segment = snapshot.segments[ds][0].id
    return [{"segmentId": segment, "columns": cols, "events": events}]


async def _segment_metadata(
    query: dict[str, Any],
    ds: str,
    snapshot: Snapshot,
    describe: Callable[[str], Awaitable[list[tuple[str, str]]]],
) -> list[Any]:
    from broker.engine import druid_types

    intervals = intervals_of(query) if query.get("intervals") is not None else [ETERNITY]
    segs = [s for s in snapshot.segments[ds] if any(s.start_ms < b and s.end_ms > a for a, b in intervals)]
    cols = await describe(ds)
    columns = {
        name: {
            "typeSignature": druid_types(t)[0],
            "type": druid_types(t)[0],
            "hasMultipleValues": False,
            "hasNulls": name != "__time",
            "size": 0,
            "cardinality": None,
            "minValue": None,
            "maxValue": None,
            "errorMessage": None,
        }
        for name, t in cols
    }
    if "__time" in columns:
        columns["__time"]["type"] = columns["__time"]["typeSignature"] = "LONG"
    answers: list[dict[str, Any]] = [
        {
            "id": s.id,
            "intervals": [f"{format_instant(s.start_ms)}/{format_instant(s.end_ms)}"],
            "columns": columns,
            "size": 0,
            "numRows": s.num_rows,
            "aggregators": None,
            "projections": None,
            "timestampSpec": None,
            "queryGranularity": None,
            "rollup": None,
        }
        for s in segs
    ]
    if query.get("merge") and answers:
        merged = dict(answers[0])
        merged["id"] = "merged"
        merged["intervals"] = [i for a in answers for i in a["intervals"]]
        merged["numRows"] = sum(a["numRows"] for a in answers)
        return [merged]
    return answers

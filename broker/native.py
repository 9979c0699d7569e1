"""Druid's native queries (``POST /druid/v2``), run as SQL on the same locked-down DuckDB.

Docs followed: querying/timeboundaryquery.md, timeseriesquery.md, topnquery.md, groupbyquery.md,
scan-query.md, searchquery.md (searchqueryspec.md, sorting-orders.md), segmentmetadataquery.md,
datasourcemetadataquery.md, datasource.md (table, join, inline), filters.md, aggregations.md,
post-aggregations.md, granularities.md, querying.md ("Query errors"). Filters are the ingestion models
(``supervisor/filters.py``) compiled to SQL; post-aggregations are computed on the grouped rows, as
Druid does. The segments read are the timeline's (:mod:`broker.timeline`); results follow Druid's
cursors, which run over each segment's data (its first to last row).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import TypeAdapter, ValidationError

from broker import timeline
from broker.catalog import InflightSource, Snapshot
from broker.engine import Result
from broker.errors import JsonParseFailed, QueryError, UnknownQueryType, Unsupported
from broker.sql import DRUID_SCHEMA, Translated, duckdb_floor_sql
from supervisor import filters as F
from supervisor.chronology import format_instant
from supervisor.expressions import values as tv

Run = Callable[[Translated], Awaitable[Result]]
Describe = Callable[[str], Awaitable[list[tuple[str, str]]]]
# querying/querying.md, "Available queries"
QUERY_TYPES = (
    "timeBoundary",
    "timeseries",
    "topN",
    "groupBy",
    "scan",
    "search",
    "segmentMetadata",
    "dataSourceMetadata",
)
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
        raise JsonParseFailed(f"filter: {e.errors(include_url=False)[0]['msg']}") from e
    return _filter_sql(model)


def intervals_of(query: dict[str, Any]) -> list[tuple[int, int]]:
    """The query's intervals; one Druid cannot read is its ``Json parse failed`` (400)."""
    raw = query.get("intervals")
    if raw is None:
        raise JsonParseFailed("intervals: required")
    if isinstance(raw, dict):  # {"type": "intervals", "intervals": [...]}
        raw = raw.get("intervals")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise JsonParseFailed("intervals: a list of ISO-8601 intervals (start/end)")
    try:
        return [F.interval_bounds(str(i)) for i in raw]
    except ValueError as e:
        raise JsonParseFailed(f"intervals: {e}") from e


def _where(query: dict[str, Any]) -> str:
    time = 'epoch_ms("__time")'
    ranges = " OR ".join(f"({time} >= {a} AND {time} < {b})" for a, b in intervals_of(query))
    return f"({ranges}) AND COALESCE({filter_sql(query.get('filter'))}, FALSE)"


@dataclass(frozen=True)
class Granularity:
    """A query's granularity (granularities.md): ``all``, ``none``, a period or a duration."""

    kind: str
    period: str = ""
    zone: str = "UTC"
    origin: int | None = None
    duration: int = 0

    def own_floor(self) -> str | None:
        """DuckDB's own flooring of a period in UTC without an origin (:func:`broker.sql.duckdb_floor`,
        a TIMESTAMP), or None: the kernel's ``druid_time_floor`` is a Python call per row, 50 times
        slower over millions of rows."""
        if self.kind != "period" or self.origin is not None:
            return None
        return duckdb_floor_sql('"__time"', self.period, self.zone)

    def group_sql(self) -> str | None:
        """The SQL rows are grouped by: DuckDB's TIMESTAMP where it floors (it aggregates on a
        ``date_trunc`` key about twice as fast as on the key in ms), else :meth:`sql`."""
        return self.own_floor() or self.sql()

    def sql(self) -> str | None:
        """The SQL of a row's time bucket in ms, or None for ``all``."""
        if self.kind == "all":
            return None
        if self.kind == "none":
            return 'epoch_ms("__time")'
        own = self.own_floor()
        if own is not None:
            return f"epoch_ms({own})"
        if self.kind == "period":
            origin = "NULL" if self.origin is None else str(self.origin)
            return f'druid_time_floor(epoch_ms("__time"), {lit(self.period)}, {origin}, {lit(self.zone)})'
        base = self.origin or 0
        return f'(epoch_ms("__time") - {base}) // {self.duration} * {self.duration} + {base}'

    def floor(self, ms: int) -> int:
        if self.kind == "period":
            return tv.floor_time(ms, tv.parse_period(self.period), self.origin, tv.parse_zone(self.zone))
        if self.kind == "duration":
            base = self.origin or 0
            return ms - (ms - base) % self.duration
        return ms

    def next(self, bucket: int) -> int:
        """The start of the bucket after the one starting at ``bucket``."""
        if self.kind == "duration":
            return bucket + self.duration
        if self.kind == "none":
            return bucket + 1
        period, zone = tv.parse_period(self.period), tv.parse_zone(self.zone)
        for step in (1, 2):  # a zone's transition can floor one step back onto the same bucket
            after = self.floor(tv.shift_time(bucket, period, step, zone))
            if after > bucket:
                return after
        raise QueryError(f"granularity: period '{self.period}' does not advance in {self.zone}")


def granularity_of(granularity: Any) -> Granularity:
    g = granularity if granularity is not None else "all"
    if isinstance(g, str):
        name = g.lower()
        if name in ("all", "none"):
            return Granularity(name)
        if name not in _SIMPLE:
            raise JsonParseFailed(f"granularity: unknown '{g}'")
        g = {"type": "period", "period": _SIMPLE[name]}
    if not isinstance(g, dict):
        raise JsonParseFailed("granularity: a name or an object")
    kind = g.get("type")
    if kind in ("all", "none"):
        return Granularity(str(kind))
    origin = g.get("origin")
    origin_ms: int | None = None
    if origin is not None:
        origin_ms = tv.parse_iso(str(origin))
        if origin_ms is None:
            raise JsonParseFailed(f"granularity.origin: '{origin}' is not ISO-8601")
    if kind == "period":
        period, zone = str(g.get("period", "")), str(g.get("timeZone") or "UTC")
        try:
            tv.parse_period(period)
            tv.parse_zone(zone)
        except ValueError as e:
            raise JsonParseFailed(f"granularity: {e}") from e
        return Granularity("period", period, zone, origin_ms)
    if kind == "duration":
        duration = g.get("duration")
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            raise JsonParseFailed("granularity.duration: a positive number of milliseconds")
        return Granularity("duration", origin=origin_ms, duration=duration)
    raise JsonParseFailed(f"granularity: unknown type '{kind}'")


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


@dataclass(frozen=True)
class Source:
    """What a native query reads: a table, or a ``join`` of a table with others (datasource.md).

    ``base`` is the leftmost table (its timeline decides the segments and the empty buckets),
    ``sql`` the FROM clause, ``tables`` every datasource the engine must give a view of."""

    base: str
    sql: str
    tables: frozenset[str]

    def plan(self, sql: str) -> Translated:
        return Translated(sql, self.tables)


_JOIN_TYPES = {"INNER": "INNER JOIN", "LEFT": "LEFT JOIN", "RIGHT": "RIGHT JOIN", "FULL": "FULL JOIN"}
_IDENT = r'(?:"((?:[^"\\]|\\.)+)"|([A-Za-z_$][\w$.]*))'
_EQUALITY = re.compile(rf"\s*{_IDENT}\s*==\s*{_IDENT}\s*")


def _table_name(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict) and spec.get("type") == "table" and isinstance(spec.get("name"), str):
        return str(spec["name"])
    return None


def _inline_sql(spec: dict[str, Any]) -> tuple[str, list[str]]:
    """datasource.md ``inline``: ``columnNames`` and ``rows``, as a VALUES table."""
    names, rows = spec.get("columnNames"), spec.get("rows")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise QueryError("dataSource.right.columnNames: a list of column names")
    if (
        not isinstance(rows, list)
        or not rows
        or any(not isinstance(r, list) or len(r) != len(names) for r in rows)
    ):
        raise QueryError("dataSource.right.rows: a list of rows, each with a value per column")
    values = ", ".join("(" + ", ".join(lit(v) for v in row) + ")" for row in rows)
    return f"(SELECT * FROM (VALUES {values}) AS __inline({', '.join(q(n) for n in names)}))", list(names)


def _join_keys(condition: Any, prefix: str) -> list[tuple[str, str]]:
    """A join ``condition``: equalities of a left column and a right (prefixed) one, joined by ``&&``
    (datasource.md: "In native queries, the join condition must be an equality")."""
    if not isinstance(condition, str) or not condition.strip():
        raise QueryError("dataSource.condition: an equality such as 'store == \"r.k\"'")
    keys = []
    for part in condition.split("&&"):
        match = _EQUALITY.fullmatch(part)
        if match is None:
            raise Unsupported(f"dataSource.condition: only equalities of columns, not '{part.strip()}'")
        a, b = match.group(1) or match.group(2), match.group(3) or match.group(4)
        if b.startswith(prefix) and not a.startswith(prefix):
            keys.append((a, b[len(prefix) :]))
        elif a.startswith(prefix) and not b.startswith(prefix):
            keys.append((b, a[len(prefix) :]))
        else:
            raise QueryError(f"dataSource.condition: '{part.strip()}': a left column == a '{prefix}' one")
    return keys


async def _source(spec: Any, describe: Describe) -> Source:
    if spec is None:
        raise JsonParseFailed("dataSource: required")
    table = _table_name(spec)
    if table is not None:
        return Source(table, f"{DRUID_SCHEMA}.{q(table)}", frozenset({table}))
    if not isinstance(spec, dict) or spec.get("type") != "join":
        kind = spec.get("type") if isinstance(spec, dict) else type(spec).__name__
        raise Unsupported(f"dataSource: type '{kind}' is not supported (a table, or a join)")
    left = await _source(spec.get("left"), describe)
    prefix = spec.get("rightPrefix")
    if not isinstance(prefix, str) or not prefix:
        raise QueryError("dataSource.rightPrefix: required, a non-empty string")
    kind = str(spec.get("joinType") or "").upper()
    if kind not in _JOIN_TYPES:
        raise QueryError(f"dataSource.joinType: one of {', '.join(_JOIN_TYPES)}")
    right_spec = spec.get("right")
    right_table = _table_name(right_spec)
    tables = left.tables
    if right_table is not None:
        columns = [c for c, _t in await describe(right_table)]
        if not columns:
            raise QueryError(f"dataSource.right: datasource '{right_table}' not found")
        right_sql, tables = f"{DRUID_SCHEMA}.{q(right_table)}", tables | {right_table}
    elif isinstance(right_spec, dict) and right_spec.get("type") == "inline":
        right_sql, columns = _inline_sql(right_spec)
    else:
        kind_r = right_spec.get("type") if isinstance(right_spec, dict) else right_spec
        raise Unsupported(f"dataSource.right: type '{kind_r}' is not supported (a table or inline)")
    on = " AND ".join(f"__l.{q(a)} = __r.{q(b)}" for a, b in _join_keys(spec.get("condition"), prefix))
    renamed = ", ".join(f"__r.{q(c)} AS {q(prefix + c)}" for c in columns)
    sql = f"(SELECT __l.*, {renamed} FROM {left.sql} AS __l {_JOIN_TYPES[kind]} {right_sql} AS __r ON {on})"
    return Source(left.base, sql, tables)


def _aggs(query: dict[str, Any]) -> list[tuple[str, str]]:
    aggs = query.get("aggregations") or []
    if not isinstance(aggs, list):
        raise QueryError("aggregations: a list")
    return [(str(a.get("name")), _agg_sql(a)) for a in aggs]


Span = tuple[int, int, int, int]  # first and last row time of a segment's visible part, and the part


@functools.lru_cache(maxsize=4096)
def _file_span(path: str, size: int) -> tuple[int, int] | None:
    """The first and last ``__time`` of a segment file, from its Parquet footer's statistics
    (segment files never change: cached by path and size)."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException):
        return None
    lo: int | None = None
    hi: int | None = None
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for j in range(group.num_columns):
            col = group.column(j)
            if col.path_in_schema != "__time":
                continue
            stats = col.statistics
            if stats is None or not stats.has_min_max:
                return None
            lo = stats.min if lo is None else min(lo, stats.min)
            hi = stats.max if hi is None else max(hi, stats.max)
    return None if lo is None or hi is None else (int(lo), int(hi))


# the query types whose empty buckets are filled over the data's spans (:func:`_spans`)
SPANNED_QUERY_TYPES = frozenset({"timeseries", "topN"})


def _spans(shown: tuple[timeline.Visible, ...], inflight: tuple[InflightSource, ...] = ()) -> list[Span]:
    """Each visible segment part's data interval: Druid's cursors run over a segment's data
    (its first to last row), not its whole interval; and those of the running tasks' rows."""
    out: list[Span] = [span for source in inflight for span in source.spans]
    for v in shown:
        seg = v.segment
        first, last = _file_span(str(seg.path), seg.size) or (seg.start_ms, seg.end_ms - 1)
        for a, b in v.ranges:
            lo, hi = max(first, a), min(last, b - 1)
            if lo <= hi:
                out.append((lo, hi, a, b))
    return out


def _all_time(spans: list[Span], intervals: list[tuple[int, int]]) -> int | None:
    """The timestamp of a granularity-``all`` row: the earliest start of a cursor, which is the
    query interval clipped to a segment's data (Druid's tutorial: the top-N over 2015-09-12/
    2015-09-13 answers at 2015-09-12T00:46:58.771Z, the first edit); None when no segment part
    overlaps the query."""
    starts = [
        max(qa, lo)
        for lo, _hi, a, b in spans
        for qa, qb in intervals
        if a < qb and b > qa and max(qa, lo) < qb
    ]
    return min(starts, default=None)


MAX_BUCKETS = 1_000_000


def _filled_buckets(g: Granularity, spans: list[Span], intervals: list[tuple[int, int]]) -> set[int]:
    """The buckets Druid's timeseries answers for, rows or not (timeseriesquery.md, "Empty bucket
    values"): every bucket of each segment's data interval within the query intervals; buckets
    outside any segment's data are not filled."""
    out: set[int] = set()
    for lo, hi, a, b in spans:
        for qa, qb in intervals:
            if a >= qb or b <= qa:
                continue
            end = min(qb, g.next(g.floor(hi)))
            bucket = g.floor(max(qa, lo))
            while bucket < end:
                out.add(bucket)
                if len(out) > MAX_BUCKETS:
                    raise QueryError(f"the query's granularity makes more than {MAX_BUCKETS} time buckets")
                bucket = g.next(bucket)
    return out


def _empty_value(agg: dict[str, Any]) -> Any:
    """An aggregator's value over no rows: 0 for counts and distinct counts, null for the rest
    (Druid's SQL-compatible null handling; timeseriesquery.md shows a SUM's empty bucket as NULL)."""
    kind = agg.get("type")
    if kind == "filtered":
        return _empty_value(dict(agg.get("aggregator") or {}))
    if kind in ("count", "cardinality", "hyperUnique", "HLLSketchBuild", "HLLSketchMerge", "thetaSketch"):
        return 0
    return None


def _truthy(value: Any) -> bool:
    """A boolean of a query or its context; Druid's docs write some as strings (``"true"``)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


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


def _grouped(src: Source, query: dict[str, Any], dims: list[tuple[str, str]]) -> tuple[str, list[str]]:
    g = granularity_of(query.get("granularity"))
    bucket = g.sql()
    select = [f"{bucket} AS __bucket" if bucket else "NULL AS __bucket"]
    select += [f"{q(col)} AS {q(out)}" for out, col in dims]
    names = [n for n, _ in _aggs(query)]
    select += [f"{sql} AS {q(name)}" for name, sql in _aggs(query)]
    groups = [g.group_sql() or "__bucket", *[q(out) for out, _ in dims]]
    sql = (
        f"SELECT {', '.join(select)} FROM {src.sql} WHERE {_where(query)} "
        f"GROUP BY {', '.join(groups)} ORDER BY __bucket"
    )
    return sql, names


async def run(
    query: dict[str, Any],
    snapshot: Snapshot,
    execute: Run,
    describe: Describe,
) -> list[Any]:
    kind = query.get("queryType")
    if kind not in QUERY_TYPES:
        raise UnknownQueryType(kind, QUERY_TYPES)
    src = await _source(query.get("dataSource"), describe)
    ds = src.base
    shown = timeline.visible(snapshot.segments.get(ds, ()))
    if not shown and ds not in snapshot.inflight:
        return []  # Druid answers an empty list for a datasource without (visible) segments
    if kind == "timeBoundary":
        bound = query.get("bound")
        where = filter_sql(query.get("filter"))
        span = 'epoch_ms(MIN("__time")), epoch_ms(MAX("__time"))'
        sql = f"SELECT {span} FROM {src.sql} WHERE {where}"
        lo, hi = (await execute(src.plan(sql))).rows[0]
        if lo is None:
            return []
        result = {"minTime": format_instant(lo), "maxTime": format_instant(hi)}
        if bound == "minTime":
            result.pop("maxTime")
        elif bound == "maxTime":
            result.pop("minTime")
        return [{"timestamp": format_instant(hi if bound == "maxTime" else lo), "result": result}]
    if kind == "dataSourceMetadata":
        sql = f'SELECT epoch_ms(MAX("__time")) FROM {src.sql}'
        (hi,) = (await execute(src.plan(sql))).rows[0]
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
        sql, _names = _grouped(src, query, dims)
        grouped = await execute(src.plan(sql))
        cols = list(grouped.columns)
        rows = [_apply_posts(query, dict(zip(cols, r, strict=True))) for r in grouped.rows]
        if kind == "groupBy":
            return _group_by_result(query, rows, format_instant(min(a for a, _ in intervals)))
        spans = _spans(shown, snapshot.inflight.get(ds, ()))
        if kind == "timeseries":
            return await _timeseries(query, src, rows, spans, intervals, execute)
        first = min(a for a, _ in intervals)
        all_time = _all_time(spans, intervals)
        by_bucket: dict[Any, list[dict[str, Any]]] = {}
        for row in rows:
            by_bucket.setdefault(row.pop("__bucket"), []).append(row)
        buckets = sorted(by_bucket, key=lambda b: (b is not None, b))
        if _truthy(query.get("descending")):
            buckets.reverse()
        out: list[Any] = []
        for b in buckets:
            stamp = format_instant((first if all_time is None else all_time) if b is None else int(b))
            out.append({"timestamp": stamp, "result": _top(query, by_bucket[b])})
        return out
    if kind == "search":
        return await _search(query, src, shown, execute, describe)
    if kind == "scan":
        return await _scan(query, src, shown, execute)
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


async def _timeseries(
    query: dict[str, Any],
    src: Source,
    rows: list[dict[str, Any]],
    spans: list[Span],
    intervals: list[tuple[int, int]],
    execute: Run,
) -> list[Any]:
    """timeseriesquery.md: one row per bucket, empty buckets of the data's time filled with the
    aggregators' empty values unless ``context.skipEmptyBuckets``; ``descending``, ``limit`` and the
    ``context.grandTotal`` row (last, without a timestamp)."""
    context = query.get("context") if isinstance(query.get("context"), dict) else {}
    assert isinstance(context, dict)
    skip_empty = _truthy(context.get("skipEmptyBuckets"))
    aggs = query.get("aggregations") or []

    def empty() -> dict[str, Any]:
        return _apply_posts(query, {str(a.get("name")): _empty_value(a) for a in aggs})

    g = granularity_of(query.get("granularity"))
    by_bucket = {row.pop("__bucket"): row for row in rows}
    out: list[dict[str, Any]] = []
    if g.kind == "all":
        stamp = _all_time(spans, intervals)
        row = by_bucket.get(None)
        if stamp is None and row is not None:  # rows no segment's data span explains: the query's start
            stamp = min(a for a, _ in intervals)
        if stamp is not None and (row is not None or not skip_empty):
            out.append({"timestamp": format_instant(stamp), "result": row if row is not None else empty()})
    else:
        buckets = {int(b) for b in by_bucket if b is not None}
        if not skip_empty and g.kind != "none":  # "none": a bucket per millisecond, never filled
            buckets |= _filled_buckets(g, spans, intervals)
        for b in sorted(buckets, reverse=_truthy(query.get("descending"))):
            row = by_bucket.get(b)
            out.append({"timestamp": format_instant(b), "result": row if row is not None else empty()})
    limit = query.get("limit")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise QueryError("limit: a non-negative integer")
        out = out[:limit]
    if _truthy(context.get("grandTotal")):
        sql, _names = _grouped(src, {**query, "granularity": "all"}, [])
        total = await execute(src.plan(sql))
        cols = list(total.columns)
        found = [dict(zip(cols, r, strict=True)) for r in total.rows]
        for row in found:
            row.pop("__bucket")
        out.append({"timestamp": None, "result": _apply_posts(query, found[0]) if found else empty()})
    return out


def _search_match(spec: Any, cell: str) -> str:
    """searchqueryspec.md's match as SQL over ``cell`` (a VARCHAR)."""
    if not isinstance(spec, dict):
        raise QueryError("query: a search query spec ({'type': 'insensitive_contains', 'value': ...})")
    if "case_sensitive" in spec:  # the docs' spelling; the model's alias is caseSensitive
        spec = {("caseSensitive" if k == "case_sensitive" else k): v for k, v in spec.items()}
    try:
        model = _SEARCH_SPEC.validate_python(spec)
    except ValidationError as e:
        raise QueryError(f"query: {e.errors(include_url=False)[0]['msg']}") from e
    if isinstance(model, F.RegexSearchQuery):
        return f"regexp_matches({cell}, {lit(model.pattern)})"
    if isinstance(model, F.FragmentSearchQuery):
        values = list(model.values)
        sensitive = model.case_sensitive
    else:
        values = [model.value]
        sensitive = isinstance(model, F.ContainsSearchQuery) and model.case_sensitive
    if not values:
        return "TRUE"
    if sensitive:
        return "(" + " AND ".join(f"contains({cell}, {lit(v)})" for v in values) + ")"
    return "(" + " AND ".join(f"contains(lower({cell}), {lit(v.lower())})" for v in values) + ")"


_SEARCH_SPEC: TypeAdapter[Any] = TypeAdapter(F.SearchQuery)
_DIGITS = re.compile(r"(\d+)")


def _hit_order(kind: str) -> Callable[[dict[str, Any]], Any]:
    """sorting-orders.md: a search hit's order by value, then by dimension (SearchSortSpec)."""

    def by(value_key: Callable[[str], Any]) -> Callable[[dict[str, Any]], Any]:
        return lambda hit: (value_key(hit["value"]), hit["dimension"].encode())

    if kind == "lexicographic":
        return by(lambda v: v.encode())  # UTF-8 bytes
    if kind == "strlen":
        return by(lambda v: (len(v), v))
    if kind == "alphanumeric":
        return by(lambda v: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(v) if p])
    if kind == "numeric":

        def number(v: str) -> tuple[int, float, str]:
            try:
                return (1, float(v), "")
            except ValueError:
                return (0, 0.0, v)  # unparseable values are nulls, before numbers, among themselves by text

        return by(number)
    raise QueryError(f"sort.type: unknown '{kind}' (lexicographic, alphanumeric, strlen, numeric)")


async def _search(
    query: dict[str, Any],
    src: Source,
    shown: tuple[timeline.Visible, ...],
    execute: Run,
    describe: Describe,
) -> list[Any]:
    """searchquery.md: the dimension values matching ``query`` with their row counts, per bucket,
    sorted by ``sort`` and cut at ``limit`` (default 1000)."""
    intervals = intervals_of(query)
    types = dict(await describe(src.base))
    dims: list[str] = []
    raw_dims = query.get("searchDimensions")
    if raw_dims is None:
        known = sorted({d for v in shown for d in v.segment.dimensions})
        dims = known or [c for c, t in types.items() if c != "__time" and t in ("VARCHAR", "VARCHAR[]")]
    else:
        if not isinstance(raw_dims, list):
            raise QueryError("searchDimensions: a list of dimensions")
        for d in raw_dims:
            name = d.get("dimension") if isinstance(d, dict) else d
            if not isinstance(name, str):
                raise QueryError("searchDimensions: each a name or a dimension spec with 'dimension'")
            dims.append(name)
    sort = query.get("sort") or {}
    order = _hit_order(str((sort.get("type") if isinstance(sort, dict) else sort) or "lexicographic"))
    limit = query.get("limit", 1000)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise QueryError("limit: a non-negative integer")
    g = granularity_of(query.get("granularity"))
    bucket = g.sql() or "NULL"
    parts = []
    for d in dims:
        if d not in types:
            continue  # Druid: a dimension the segments lack matches nothing
        cell = "__v" if types[d].endswith("[]") else f"CAST({q(d)} AS VARCHAR)"
        source = f"(SELECT *, unnest({q(d)}) AS __v FROM {src.sql})" if cell == "__v" else src.sql
        match = _search_match(query.get("query"), cell)
        parts.append(
            f"SELECT {bucket} AS __bucket, {lit(d)} AS dimension, {cell} AS value, COUNT(*) AS count "
            f"FROM {source} WHERE {_where(query)} AND {cell} IS NOT NULL AND {match} GROUP BY 1, 2, 3"
        )
    if not parts:
        return []
    result = await execute(src.plan(" UNION ALL ".join(parts)))
    by_bucket: dict[Any, list[dict[str, Any]]] = {}
    for b, dim, value, count in result.rows:
        by_bucket.setdefault(b, []).append({"dimension": dim, "value": value, "count": count})
    if None in by_bucket:
        # granularity all: the result carries the earliest queried segment's start (a search answers
        # per segment at its interval's start; the Broker's merge keeps the first)
        starts = [s for v in shown for s, e in v.ranges for a, b in intervals if s < b and e > a]
        stamps = {None: min(starts, default=min(a for a, _ in intervals))}
    else:
        stamps = {b: b for b in by_bucket}
    out = []
    for b in sorted(by_bucket, key=lambda x: (x is not None, x)):
        hits = sorted(by_bucket[b], key=order)[:limit]
        out.append({"timestamp": format_instant(int(stamps[b] or 0)), "result": hits})
    return out


async def _scan(
    query: dict[str, Any], src: Source, shown: tuple[timeline.Visible, ...], execute: Run
) -> list[Any]:
    columns = query.get("columns") or []
    select = (
        ", ".join(_col(c) + f" AS {q(c)}" for c in columns)
        if columns
        else '* REPLACE (epoch_ms("__time") AS "__time")'
    )
    order = str(query.get("order") or "none").lower()
    sql = f"SELECT {select} FROM {src.sql} WHERE {_where(query)}"
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
    result = await execute(src.plan(sql))
    cols = list(result.columns)
    compact = query.get("resultFormat") == "compactedList"
    events: list[Any] = [list(r) if compact else dict(zip(cols, r, strict=True)) for r in result.rows]
    if not events:
        return []
    segment = shown[0].segment.id if shown else src.base  # only in-flight rows: no segment id yet
    return [{"segmentId": segment, "columns": cols, "events": events}]


async def _segment_metadata(
    query: dict[str, Any],
    ds: str,
    snapshot: Snapshot,
    describe: Callable[[str], Awaitable[list[tuple[str, str]]]],
) -> list[Any]:
    from broker.engine import druid_types

    intervals = intervals_of(query) if query.get("intervals") is not None else [ETERNITY]
    segs = [
        v.segment
        for v in timeline.visible(snapshot.segments.get(ds, ()))
        if any(s < b and e > a for a, b in intervals for s, e in v.ranges)
    ]
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

"""Filter pushdown to the tasks (issue 15.2): a pushed filter never drops a row the query keeps.

Each query runs twice in DuckDB, once over every row and once over the rows the task would
answer (``narrowed`` by the filter ``broker.pushdown`` makes of the query): the answers must be
the same. The rows hold what breaks naive filters: nulls, empty strings, NaN, longs past 2**53,
newlines and non-ASCII text under ``LIKE``, numbers as strings, mixed-case column names.
"""

from __future__ import annotations

import math
import random
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from broker.native import filter_sql
from broker.pushdown import native_columns, native_pushdown, sql_pushdown
from broker.sql import parse
from middlemanager.ingest.pushdown import narrowed
from middlemanager.ingest.transforms import filter_mask
from supervisor import protocol as wire
from supervisor.filters import LikeFilter

T0 = 1_704_067_200_000

WORDS = ["a", "ab", "a%b", "a_b", "a\\b", "a\nb", "A b", "", "é", "xéy", "marker-1-2", "marker-10", "5", "05"]


# rows at the bounds the cases below name (their times in ms after T0)
EDGES = [0, 1250, 2500, 3123, 4000, 4500, 5000, 7000, 9999]


def _rows(n: int = 400, seed: int = 3) -> pa.Table:
    rng = random.Random(seed)
    big = 2**53
    times = [T0 + rng.randrange(0, 10_000) for _ in range(n - 2 * len(EDGES))] + [T0 + e for e in EDGES * 2]
    return pa.table(
        {
            "__time": pa.array(times, pa.int64()),
            "Page": pa.array([rng.choice([*WORDS, None]) for _ in range(n)], pa.string()),
            "added": pa.array([rng.choice([None, -3, 0, 1, 5, 7, 100]) for _ in range(n)], pa.int64()),
            "big": pa.array([rng.choice([None, 0, 5, big, big + 1, -big - 3]) for _ in range(n)], pa.int64()),
            "ratio": pa.array([rng.choice([None, 0.5, 5.0, math.nan, -1.0]) for _ in range(n)], pa.float64()),
            "code": pa.array([rng.choice(["1", "5", "10", "x", None]) for _ in range(n)], pa.string()),
        }
    )


SQL_WHERES = [
    "page = 'a'",
    "PAGE = 'a'",
    "page = ''",
    "page IN ('a', 'ab', '')",
    "page LIKE 'a%'",
    "page LIKE 'a_b'",
    "page LIKE 'a!%b' ESCAPE '!'",
    "page LIKE 'a\\b'",
    "page LIKE 'x_y'",
    "page LIKE 'marker-1-%'",
    "added > 5",
    "5 < added",
    "big >= 9007199254740992",
    "big > 5",
    "big = 9007199254740993",
    "added >= 5",
    "added < 5",
    "added <= 5",
    "added = 1",
    "added BETWEEN -3 AND 5",
    "added <= -1 OR page = 'a'",
    "ratio > 1",
    "code = 5",
    "code = '5'",
    "code > 4",
    "page = 'a' AND added > 0 AND NOT code = 'x'",
    "(page LIKE 'a%' OR added < 0) AND code IN ('1', '10')",
    "page = 'a' OR lower(page) = 'a b'",
    "page <> 'a'",
    "__time >= TIMESTAMP '2024-01-01 00:00:05'",
    "__time BETWEEN TIMESTAMP '2024-01-01 00:00:02.5' AND TIMESTAMP '2024-01-01 00:00:07'",
    "__time < '2024-01-01 00:00:03.123'",
    "__time = TIMESTAMP '2024-01-01 00:00:01.25'",
    "TIMESTAMP '2024-01-01 00:00:04' < __time AND page = 'a'",
    "__time >= TIMESTAMP '2024-01-01T00:00:05'",
    "__time > TIMESTAMP '2024-01-01 00:00:05.0005'",
    "__time >= TIMESTAMP '2024-01-01'",
]


def _answer(table: pa.Table, query: str) -> list[tuple[Any, ...]]:
    """The query's rows over ``table`` as the Broker's view shows it (``__time`` a TIMESTAMP)."""
    con = duckdb.connect()
    con.register("raw", table)
    con.execute('CREATE VIEW ids AS SELECT * REPLACE (epoch_ms("__time") AS "__time") FROM raw')
    rows = con.execute(query).fetchall()
    con.close()
    # NaN is not equal to itself: compared by name
    return sorted((tuple("NaN" if v != v else v for v in row) for row in rows), key=repr)


@pytest.mark.parametrize("where", SQL_WHERES)
def test_a_pushed_sql_filter_keeps_every_row_the_query_keeps(where: str) -> None:
    table = _rows()
    query = f"SELECT __time, page, added, big, ratio, code, COUNT(*) FROM ids WHERE {where} GROUP BY ALL"
    asked = sql_pushdown(parse(query))
    assert asked.datasources == frozenset({"ids"})
    filters = dict(asked.filters)
    narrow = table if "ids" not in filters else narrowed(table, _model(filters["ids"]))
    try:
        expected = _answer(table, query)
    except duckdb.Error as e:  # DuckDB refuses 'x' as a number: so it must on the narrowed rows
        with pytest.raises(type(e)):
            _answer(narrow, query)
        return
    assert _answer(narrow, query) == expected


def test_the_pushed_filters_do_narrow() -> None:
    """Not a filter that keeps everything: the plain cases leave most rows out (a long column
    with values past 2**53 is not narrowed by a bound: doubles would not compare them exactly)."""
    table = _rows()
    (pair,) = sql_pushdown(parse("SELECT COUNT(*) FROM ids WHERE big > 5")).filters
    assert narrowed(table, _model(pair[1])).num_rows == table.num_rows
    for where in (
        "page = 'a'",
        "page LIKE 'marker-1-%'",
        "added > 5",
        "code IN ('1', '10')",
        "__time BETWEEN TIMESTAMP '2024-01-01 00:00:02' AND TIMESTAMP '2024-01-01 00:00:04.5'",
    ):
        (pair,) = sql_pushdown(parse(f"SELECT COUNT(*) FROM ids WHERE {where}")).filters
        assert narrowed(table, _model(pair[1])).num_rows < table.num_rows / 2, where


@pytest.mark.parametrize(
    "query",
    [
        "SELECT COUNT(*) FROM ids WHERE page IN (SELECT page FROM ids WHERE code = '1')",
        "SELECT COUNT(*) FROM ids a JOIN ids b ON a.page = b.page WHERE a.page = 'a'",
        "WITH x AS (SELECT * FROM ids) SELECT COUNT(*) FROM x WHERE page = 'a'",
        "SELECT COUNT(*) FROM ids WHERE page = ?",
        "SELECT COUNT(*) FROM ids WHERE NOT page = 'a'",
        "SELECT COUNT(*) FROM ids WHERE __time >= CURRENT_TIMESTAMP - INTERVAL '1' HOUR",
        "SELECT COUNT(*) FROM ids WHERE __time >= TIMESTAMP '2024-01-01 00:00:00+01:00'",
        "SELECT COUNT(*) FROM ids WHERE __time = 5",
        "SELECT COUNT(*) FROM ids WHERE page = 'a' UNION ALL SELECT COUNT(*) FROM ids",
    ],
)
def test_queries_whose_where_is_not_pushed(query: str) -> None:
    assert sql_pushdown(parse(query)).filters == ()


def test_information_schema_asks_every_datasource() -> None:
    assert sql_pushdown(parse("SELECT * FROM INFORMATION_SCHEMA.COLUMNS")).datasources is None
    assert sql_pushdown(parse("SELECT * FROM a JOIN b ON a.x = b.x")).datasources == {"a", "b"}


def _model(node: dict[str, Any]) -> Any:
    parsed = wire.InflightRowsRequest.model_validate({"filter": node}).filter
    assert parsed is not None
    return parsed


NATIVE_FILTERS: list[dict[str, Any]] = [
    {"type": "selector", "dimension": "page", "value": "a"},
    {"type": "selector", "dimension": "page", "value": ""},  # null or '' in native queries
    {"type": "in", "dimension": "Page", "values": ["a", "", "é"]},
    {"type": "like", "dimension": "page", "pattern": "a\\%b", "escape": "\\"},
    {"type": "bound", "dimension": "added", "lower": "5", "ordering": "numeric"},
    {"type": "bound", "dimension": "big", "upper": "9007199254740993", "ordering": "numeric"},
    {"type": "bound", "dimension": "big", "lower": "5", "lowerStrict": True, "ordering": "numeric"},
    {"type": "bound", "dimension": "added", "upper": "5", "ordering": "numeric"},
    {"type": "bound", "dimension": "ratio", "lower": "1", "ordering": "numeric"},
    {"type": "bound", "dimension": "code", "lower": "4", "ordering": "numeric"},
    {"type": "bound", "dimension": "page", "lower": "a", "upper": "b"},
    {"type": "selector", "dimension": "added", "value": "5"},
    {
        "type": "or",
        "fields": [
            {"type": "selector", "dimension": "page", "value": "ab"},
            {"type": "bound", "dimension": "added", "upper": "0", "upperStrict": True, "ordering": "numeric"},
        ],
    },
]


@pytest.mark.parametrize("node", NATIVE_FILTERS)
def test_a_pushed_native_filter_keeps_every_row_the_native_engine_keeps(node: dict[str, Any]) -> None:
    """The native engine's own SQL of a filter (``broker.native.filter_sql``) over the narrowed
    rows keeps what it keeps over all of them, with the query's intervals pushed as well."""
    table = _rows()
    query = {
        "queryType": "timeseries",
        "dataSource": "ids",
        "intervals": [f"{_iso(T0 + 2000)}/{_iso(T0 + 7000)}"],
        "filter": node,
        "granularity": "all",
        "aggregations": [{"type": "count", "name": "n"}],
    }
    (pair,) = native_pushdown(query).filters
    where = (
        f'(epoch_ms("__time") >= {T0 + 2000} AND epoch_ms("__time") < {T0 + 7000}) '
        f"AND COALESCE({filter_sql(node)}, FALSE)"
    )
    sql = f"SELECT __time, page, added, big, code, COUNT(*) FROM ids WHERE {where} GROUP BY ALL"
    narrow = narrowed(table, _model(pair[1]))
    assert narrow.num_rows < table.num_rows
    assert _answer(narrow, sql) == _answer(table, sql)


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_native_pushdown_keeps_only_the_pushable_conjuncts_and_names_the_columns() -> None:
    query = {
        "queryType": "groupBy",
        "dataSource": {"type": "table", "name": "ids"},
        "intervals": "2024-01-01/2024-01-02",
        "filter": {
            "type": "and",
            "fields": [
                {"type": "regex", "dimension": "page", "pattern": "^a"},
                {"type": "selector", "dimension": "code", "value": "1"},
            ],
        },
        "dimensions": [{"type": "default", "dimension": "Page", "outputName": "p"}],
        "aggregations": [{"type": "longSum", "name": "s", "fieldName": "added"}],
        "virtualColumns": [{"type": "expression", "name": "v", "expression": 'concat("user", ratio)'}],
    }
    ((source, node),) = native_pushdown(query).filters
    assert source == "ids"
    assert node["fields"][0] == {"type": "selector", "dimension": "code", "value": "1"}
    assert node["fields"][1]["dimension"] == "__time"
    columns = native_columns(query)
    assert columns is not None and {"__time", "Page", "added", "code", "page", "user", "ratio"} <= columns
    assert native_columns({**query, "queryType": "segmentMetadata"}) is None
    assert native_columns({**query, "dataSource": {"type": "join"}}) is None
    assert native_pushdown({**query, "queryType": "segmentMetadata"}).filters == ()


def test_the_like_kernel_agrees_with_the_row_filter() -> None:
    """The ``like`` filter on Arrow's match_like (ingestion's transformSpec filter uses it too)
    decides every value as Druid's row filter does."""
    values = pa.array([*WORDS, None, "a\\%b", "%", "_", "!", "a!b"], pa.string())
    for pattern, escape in [
        ("a%", None),
        ("a_b", None),
        ("a\\b", None),
        ("a\\%b", "\\"),
        ("a!%b", "!"),
        ("!!", "!"),
        ("%!", "!"),
        ("\\%", None),
        ("_", None),
        ("x_y", None),
        ("%", None),
    ]:
        node = LikeFilter(dimension="p", pattern=pattern, escape=escape)
        mask = filter_mask(node, {"p": values}, len(values), lambda: [])
        expected = [node.evaluate({"p": v}) for v in values.to_pylist()]
        assert mask.to_pylist() == expected, (pattern, escape)

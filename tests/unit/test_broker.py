"""The Broker over Parquet segments written here: Druid SQL rewritten for DuckDB, the result formats,
native queries, Druid's error bodies, and the sandbox (no file or URL outside the segments)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.api import Broker, add_routes
from broker.catalog import Segment, SegmentCatalog, Snapshot
from broker.config import BrokerSettings
from broker.sql import translate
from transport.client import AsyncClient

pytestmark = pytest.mark.unit

H = 3_600_000
DAY0 = 1_442_016_000_000  # 2015-09-12T00:00:00Z

ROWS = [
    # __time, page, user, added
    (DAY0 + 0 * H + 1, "Main", "alice", 10),
    (DAY0 + 0 * H + 2, "Main", "bob", 5),
    (DAY0 + 1 * H + 3, "Talk", "alice", 7),
    (DAY0 + 1 * H + 4, "Main", "carol", 1),
    (DAY0 + 2 * H + 5, "Vandalism", "dave", 100),
    (DAY0 + 2 * H + 6, "Vandalism", "dave", 50),
    (DAY0 + 2 * H + 7, "Vandalism", "erin", None),
]


def _write(path: Path, rows: list[tuple[Any, ...]]) -> None:
    pq.write_table(
        pa.table(
            {
                "__time": pa.array([r[0] for r in rows], pa.int64()),
                "page": [r[1] for r in rows],
                "user": [r[2] for r in rows],
                "added": pa.array([r[3] for r in rows], pa.int64()),
            }
        ),
        path,
    )


def _segment(path: Path, start: int, end: int, n: int, part: int = 0) -> Segment:
    payload = {"dataSource": "wiki", "interval": "x", "shardSpec": {"partitionNum": part}}
    return Segment(
        id=f"wiki_{start}_{end}_v1_{part}",
        datasource="wiki",
        start_ms=start,
        end_ms=end,
        version="v1",
        partition_num=part,
        path=path,
        num_rows=n,
        size=path.stat().st_size,
        dimensions=("page", "user"),
        metrics=("added",),
        payload=payload,
    )


class FixedCatalog(SegmentCatalog):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(AsyncClient("http://127.0.0.1:9"))
        self._fixed = snapshot

    async def snapshot(self) -> Snapshot:
        return self._fixed


@pytest.fixture
def snapshot(tmp_path: Path) -> Snapshot:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _write(a, ROWS[:4])
    _write(b, ROWS[4:])
    return Snapshot.of([_segment(a, DAY0, DAY0 + 2 * H, 4), _segment(b, DAY0 + 2 * H, DAY0 + 3 * H, 3)])


def _call(
    snapshot: Snapshot, method: str, path: str, body: Any, **settings: Any
) -> tuple[int, Any, dict[str, str]]:
    async def go() -> tuple[int, Any, dict[str, str]]:
        app = web.Application()
        add_routes(app, Broker(FixedCatalog(snapshot), BrokerSettings(**settings)))
        async with TestClient(TestServer(app)) as client:
            resp = await client.request(method, path, json=body)
            text = await resp.text()
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
            return resp.status, data, dict(resp.headers)

    return asyncio.run(go())


def sql(snapshot: Snapshot, query: str, **extra: Any) -> Any:
    status, data, _ = _call(snapshot, "POST", "/druid/v2/sql", {"query": query, **extra})
    assert status == 200, data
    return data


def sql_error(snapshot: Snapshot, query: str, status: int = 400, **extra: Any) -> dict[str, Any]:
    got, data, _ = _call(snapshot, "POST", "/druid/v2/sql", {"query": query, **extra})
    assert got == status, data
    assert isinstance(data, dict) and data["error"] and data["errorMessage"], data
    return data


def test_top_pages_group_by_order_limit(snapshot: Snapshot) -> None:
    got = sql(
        snapshot,
        "SELECT page, COUNT(*) AS Edits FROM wiki "
        "WHERE TIMESTAMP '2015-09-12 00:00:00' <= __time AND __time <= TIMESTAMP '2015-09-13 00:00:00' "
        "GROUP BY page ORDER BY Edits DESC LIMIT 2",
    )
    assert got == [{"page": "Main", "Edits": 3}, {"page": "Vandalism", "Edits": 3}] or got == [
        {"page": "Vandalism", "Edits": 3},
        {"page": "Main", "Edits": 3},
    ]
    assert sql(snapshot, "SELECT page FROM wiki GROUP BY page ORDER BY page LIMIT 1 OFFSET 1") == [
        {"page": "Talk"}
    ]


def test_time_functions(snapshot: Snapshot) -> None:
    got = sql(
        snapshot,
        "SELECT FLOOR(__time TO HOUR) AS h, TIME_FLOOR(__time, 'PT1H') AS t, COUNT(*) AS n, "
        'COUNT(DISTINCT "user") AS u, APPROX_COUNT_DISTINCT("user") AS au, LATEST(page) AS lp, '
        'EARLIEST("user") AS eu FROM wiki GROUP BY 1, 2 ORDER BY 1',
    )
    assert [r["h"] for r in got] == [
        "2015-09-12T00:00:00.000Z",
        "2015-09-12T01:00:00.000Z",
        "2015-09-12T02:00:00.000Z",
    ]
    assert [r["t"] for r in got] == [r["h"] for r in got]
    assert [r["n"] for r in got] == [2, 2, 3]
    assert [r["u"] for r in got] == [2, 2, 2]
    assert [r["au"] for r in got] == [2, 2, 2]
    assert [r["lp"] for r in got] == ["Main", "Main", "Vandalism"]
    assert [r["eu"] for r in got] == ["alice", "alice", "dave"]
    one = sql(
        snapshot,
        "SELECT TIME_SHIFT(MIN(__time), 'P1D', -1) AS s, TIME_EXTRACT(MAX(__time), 'HOUR') AS hr, "
        "TIME_FORMAT(MIN(__time), 'yyyy-MM-dd HH') AS f, TIME_PARSE('2015-09-12T05:00:00Z') AS p, "
        "MILLIS_TO_TIMESTAMP(1442016000000) AS m, TIMESTAMP_TO_MILLIS(MIN(__time)) AS ms, "
        "TIME_FLOOR(MIN(__time), 'P1D', NULL, 'America/Los_Angeles') AS la FROM wiki",
    )
    assert one == [
        {
            "s": "2015-09-11T00:00:00.001Z",
            "hr": 2,
            "f": "2015-09-12 00",
            "p": "2015-09-12T05:00:00.000Z",
            "m": "2015-09-12T00:00:00.000Z",
            "ms": DAY0 + 1,
            "la": "2015-09-11T07:00:00.000Z",
        }
    ]


def test_where_time_range_and_parameters(snapshot: Snapshot) -> None:
    got = sql(
        snapshot,
        "SELECT COUNT(*) AS n, SUM(added) AS a FROM wiki WHERE __time >= ? AND __time < ? AND page <> ?",
        parameters=[
            {"type": "TIMESTAMP", "value": "2015-09-12T01:00:00Z"},
            {"type": "TIMESTAMP", "value": "2015-09-12T03:00:00Z"},
            {"type": "VARCHAR", "value": "Talk"},
        ],
    )
    assert got == [{"n": 4, "a": 151}]


@pytest.mark.parametrize("fmt", ["object", "array", "objectLines", "arrayLines", "csv"])
def test_result_formats(snapshot: Snapshot, fmt: str) -> None:
    q = "SELECT page, COUNT(*) AS n FROM wiki WHERE page = 'Talk' GROUP BY page"
    status, data, headers = _call(
        snapshot,
        "POST",
        "/druid/v2/sql",
        {
            "query": q,
            "resultFormat": fmt,
            "header": True,
            "typesHeader": True,
            "sqlTypesHeader": True,
            "context": {"sqlQueryId": "my-query"},
        },
    )
    assert status == 200
    assert headers["X-Druid-SQL-Query-Id"] == "my-query"
    assert headers["X-Druid-SQL-Header-Included"] == "yes"
    expected = {
        "object": [
            {"page": {"type": "STRING", "sqlType": "VARCHAR"}, "n": {"type": "LONG", "sqlType": "BIGINT"}},
            {"page": "Talk", "n": 1},
        ],
        "array": [["page", "n"], ["STRING", "LONG"], ["VARCHAR", "BIGINT"], ["Talk", 1]],
        "objectLines": '{"page": {"type": "STRING", "sqlType": "VARCHAR"}, '
        '"n": {"type": "LONG", "sqlType": "BIGINT"}}\n{"page": "Talk", "n": 1}\n\n',
        "arrayLines": '["page", "n"]\n["STRING", "LONG"]\n["VARCHAR", "BIGINT"]\n["Talk", 1]\n\n',
        "csv": "page,n\nSTRING,LONG\nVARCHAR,BIGINT\nTalk,1\n\n",
    }[fmt]
    assert data == expected


def test_metadata_tables(snapshot: Snapshot) -> None:
    tables = sql(snapshot, "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'druid'")
    assert tables == [{"TABLE_NAME": "wiki"}]
    cols = sql(
        snapshot,
        "SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'wiki' "
        "ORDER BY ORDINAL_POSITION",
    )
    assert cols == [
        {"COLUMN_NAME": "__time", "DATA_TYPE": "TIMESTAMP"},
        {"COLUMN_NAME": "page", "DATA_TYPE": "VARCHAR"},
        {"COLUMN_NAME": "user", "DATA_TYPE": "VARCHAR"},
        {"COLUMN_NAME": "added", "DATA_TYPE": "BIGINT"},
    ]
    segs = sql(snapshot, "SELECT datasource, SUM(num_rows) AS r, COUNT(*) AS c FROM sys.segments GROUP BY 1")
    assert segs == [{"datasource": "wiki", "r": 7, "c": 2}]


def test_errors_in_druids_body(snapshot: Snapshot) -> None:
    bad = sql_error(snapshot, "SELEC page FROM wiki")
    assert bad["error"] == "SQL parse failed" and bad["context"]["line"] == "1"
    assert "not found" in sql_error(snapshot, "SELECT * FROM nope")["errorMessage"]
    assert "nope" in sql_error(snapshot, "SELECT nope FROM wiki")["errorMessage"]
    assert sql_error(snapshot, "")["error"] == "SQL parse failed"
    status, data, _ = _call(snapshot, "POST", "/druid/v2/sql", {"resultFormat": "object"})
    assert status == 400 and "query" in data["errorMessage"]
    status, data, _ = _call(snapshot, "POST", "/druid/v2/sql", {"query": "SELECT 1", "resultFormat": "xml"})
    assert status == 400 and "resultFormat" in data["errorMessage"]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM 'https://example.com/x.parquet'",
        "COPY (SELECT 1) TO '/tmp/broker-escape.csv'",
        "ATTACH '/tmp/broker-escape.db' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "PRAGMA version",
        "SET memory_limit = '100GB'",
        "CREATE TABLE t AS SELECT 1",
        "DROP VIEW druid.wiki",
        "SELECT 1; SELECT 2",
        "CALL pragma_version()",
        "EXPORT DATABASE '/tmp/broker-escape'",
        "SELECT * FROM glob('/etc/*')",
    ],
)
def test_sandbox_refuses_files_and_statements(snapshot: Snapshot, query: str) -> None:
    sql_error(snapshot, query)
    assert not Path("/tmp/broker-escape.csv").exists()


def test_timeout_is_504(snapshot: Snapshot) -> None:
    slow = "SELECT COUNT(*) FROM range(100000000000) a"
    body = sql_error(snapshot, slow, status=504, context={"timeout": 200})
    assert body["error"] == "Query timeout"


def test_translate_keeps_ctes_and_aliases() -> None:
    t = translate("WITH x AS (SELECT page FROM wiki) SELECT * FROM x AS y", ["wiki"])
    assert 'druid."wiki"' in t.sql and t.datasources == {"wiki"}


def native(snapshot: Snapshot, query: dict[str, Any]) -> Any:
    status, data, _ = _call(snapshot, "POST", "/druid/v2", {"dataSource": "wiki", **query})
    assert status == 200, data
    return data


ALL = ["2015-09-12/2015-09-13"]


def test_native_time_boundary_and_metadata(snapshot: Snapshot) -> None:
    assert native(snapshot, {"queryType": "timeBoundary"}) == [
        {
            "timestamp": "2015-09-12T00:00:00.001Z",
            "result": {"minTime": "2015-09-12T00:00:00.001Z", "maxTime": "2015-09-12T02:00:00.007Z"},
        }
    ]
    assert native(snapshot, {"queryType": "dataSourceMetadata"}) == [
        {
            "timestamp": "2015-09-12T02:00:00.007Z",
            "result": {"maxIngestedEventTime": "2015-09-12T02:00:00.007Z"},
        }
    ]
    meta = native(snapshot, {"queryType": "segmentMetadata", "intervals": ALL})
    assert [m["numRows"] for m in meta] == [4, 3]
    assert meta[0]["columns"]["page"]["type"] == "STRING" and meta[0]["columns"]["__time"]["type"] == "LONG"


def test_native_timeseries(snapshot: Snapshot) -> None:
    got = native(
        snapshot,
        {
            "queryType": "timeseries",
            "granularity": "hour",
            "intervals": ALL,
            "filter": {"type": "not", "field": {"type": "selector", "dimension": "page", "value": "Talk"}},
            "aggregations": [
                {"type": "count", "name": "rows"},
                {"type": "longSum", "name": "added", "fieldName": "added"},
            ],
            "postAggregations": [
                {
                    "type": "arithmetic",
                    "name": "avg",
                    "fn": "/",
                    "fields": [
                        {"type": "fieldAccess", "fieldName": "added"},
                        {"type": "fieldAccess", "fieldName": "rows"},
                    ],
                }
            ],
        },
    )
    assert got == [
        {"timestamp": "2015-09-12T00:00:00.000Z", "result": {"rows": 2, "added": 15, "avg": 7.5}},
        {"timestamp": "2015-09-12T01:00:00.000Z", "result": {"rows": 1, "added": 1, "avg": 1.0}},
        {"timestamp": "2015-09-12T02:00:00.000Z", "result": {"rows": 3, "added": 150, "avg": 50.0}},
    ]
    total = native(
        snapshot,
        {
            "queryType": "timeseries",
            "granularity": "all",
            "intervals": ALL,
            "aggregations": [{"type": "count", "name": "rows"}],
        },
    )
    # granularity all answers at the first row's time within the query (Druid's tutorial: 00:46:58.771Z)
    assert total == [{"timestamp": "2015-09-12T00:00:00.001Z", "result": {"rows": 7}}]


def test_native_topn_groupby_scan(snapshot: Snapshot) -> None:
    top = native(
        snapshot,
        {
            "queryType": "topN",
            "granularity": "all",
            "intervals": ALL,
            "dimension": "page",
            "metric": "added",
            "threshold": 2,
            "aggregations": [{"type": "longSum", "name": "added", "fieldName": "added"}],
        },
    )
    assert top == [
        {
            "timestamp": "2015-09-12T00:00:00.001Z",
            "result": [{"page": "Vandalism", "added": 150}, {"page": "Main", "added": 16}],
        }
    ]
    grouped = native(
        snapshot,
        {
            "queryType": "groupBy",
            "granularity": "all",
            "intervals": ALL,
            "dimensions": ["page"],
            "filter": {"type": "in", "dimension": "user", "values": ["alice", "dave"]},
            "aggregations": [{"type": "count", "name": "n"}],
            "limitSpec": {
                "type": "default",
                "limit": 5,
                "columns": [{"dimension": "n", "direction": "descending"}],
            },
        },
    )
    assert grouped == [
        {"version": "v1", "timestamp": "2015-09-12T00:00:00.000Z", "event": {"page": "Vandalism", "n": 2}},
        {"version": "v1", "timestamp": "2015-09-12T00:00:00.000Z", "event": {"page": "Main", "n": 1}},
        {"version": "v1", "timestamp": "2015-09-12T00:00:00.000Z", "event": {"page": "Talk", "n": 1}},
    ]
    scan = native(
        snapshot,
        {
            "queryType": "scan",
            "intervals": ALL,
            "columns": ["__time", "page"],
            "order": "ascending",
            "limit": 2,
        },
    )
    assert scan[0]["columns"] == ["__time", "page"]
    assert scan[0]["events"] == [{"__time": DAY0 + 1, "page": "Main"}, {"__time": DAY0 + 2, "page": "Main"}]


def test_native_errors(snapshot: Snapshot) -> None:
    status, data, _ = _call(snapshot, "POST", "/druid/v2", {"queryType": "nope", "dataSource": "wiki"})
    assert status == 400 and "nope" in data["errorMessage"]
    status, data, _ = _call(
        snapshot,
        "POST",
        "/druid/v2",
        {"queryType": "timeseries", "dataSource": "wiki", "intervals": ["bad"], "granularity": "all"},
    )
    assert status == 400 and "intervals" in data["errorMessage"]


def test_datasources(snapshot: Snapshot) -> None:
    assert _call(snapshot, "GET", "/druid/v2/datasources", None)[1] == ["wiki"]
    assert _call(snapshot, "GET", "/druid/v2/datasources/wiki", None)[1] == {
        "dimensions": ["page", "user"],
        "metrics": ["added"],
    }
    assert _call(snapshot, "GET", "/druid/v2/datasources/nope", None)[0] == 404

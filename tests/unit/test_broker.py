"""The Broker over Parquet segments written here: Druid SQL rewritten for DuckDB, the result formats,
native queries, Druid's error bodies, and the sandbox (no file or URL outside the segments)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Iterator
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

    async def snapshot(self, columns: Collection[str] | None = None, *_asked: Any, **_kw: Any) -> Snapshot:
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


# ------------------------------------------------------------------ Druid's timeline: overshadowing


def _published(
    tmp_path: Path,
    name: str,
    interval: str,
    version: str,
    rows: list[tuple[Any, ...]],
    part: int = 0,
    core: int = 0,
) -> Segment:
    """A segment from a Druid DataSegment payload, as the Overlord lists it (numbered shard spec)."""
    path = tmp_path / f"{name}.parquet"
    _write(path, rows)
    start, end = interval.split("/")
    return Segment.from_payload(
        {
            "dataSource": "wiki",
            "interval": interval,
            "version": version,
            "loadSpec": {"type": "local", "path": str(path)},
            "shardSpec": {"type": "numbered", "partitionNum": part, "partitions": core},
            "identifier": f"wiki_{start}_{end}_{version}" + (f"_{part}" if part else ""),
            "dimensions": "page,user",
            "metrics": "added",
            "numRows": len(rows),
            "size": path.stat().st_size,
        }
    )


DAY = "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z"
HOUR2 = "2015-09-12T02:00:00.000Z/2015-09-12T03:00:00.000Z"


def _count_by_page(snapshot: Snapshot) -> dict[str, int]:
    got = sql(snapshot, "SELECT page, COUNT(*) AS n FROM wiki GROUP BY page")
    return {r["page"]: r["n"] for r in got}


def _shadowed(snapshot: Snapshot) -> dict[str, tuple[int, int]]:
    got = sql(snapshot, "SELECT segment_id, is_overshadowed, is_active FROM sys.segments")
    return {r["segment_id"]: (r["is_overshadowed"], r["is_active"]) for r in got}


def test_higher_version_overshadows_lower(tmp_path: Path) -> None:
    old = _published(tmp_path, "old", DAY, "2015-09-13T00:00:00.000Z", ROWS)
    # a re-index of the same day (a newer version, two core partitions, both present)
    new0 = _published(tmp_path, "new0", DAY, "2015-09-14T00:00:00.000Z", [(DAY0 + 5, "Main", "x", 1)], 0, 2)
    new1 = _published(tmp_path, "new1", DAY, "2015-09-14T00:00:00.000Z", [(DAY0 + 6, "Talk", "y", 2)], 1, 2)
    snap = Snapshot.of([old, new0, new1])
    assert _count_by_page(snap) == {"Main": 1, "Talk": 1}
    assert _shadowed(snap) == {old.id: (1, 0), new0.id: (0, 1), new1.id: (0, 1)}
    ts = native(
        snap,
        {
            "queryType": "timeseries",
            "granularity": "all",
            "intervals": ALL,
            "aggregations": [{"type": "longSum", "name": "added", "fieldName": "added"}],
        },
    )
    assert ts == [{"timestamp": "2015-09-12T00:00:00.005Z", "result": {"added": 3}}]
    meta = native(snap, {"queryType": "segmentMetadata", "intervals": ALL})
    assert sorted(m["id"] for m in meta) == sorted([new0.id, new1.id])


def test_incomplete_partition_set_overshadows_nothing(tmp_path: Path) -> None:
    old = _published(tmp_path, "old", DAY, "v1", ROWS)
    # partition 0 of 2 only: the set is incomplete, so it serves nothing and hides nothing
    half = _published(tmp_path, "half", DAY, "v2", [(DAY0 + 5, "Other", "x", 1)], 0, 2)
    snap = Snapshot.of([old, half])
    assert _count_by_page(snap) == {"Main": 3, "Talk": 1, "Vandalism": 3}
    assert _shadowed(snap) == {old.id: (0, 1), half.id: (0, 1)}


def test_appended_partitions_join_and_partial_overlap_splits(tmp_path: Path) -> None:
    # partitions=0: each partition is whole on its own (Druid's NumberedPartitionChunk); appends add up
    a = _published(tmp_path, "a", DAY, "v1", ROWS[:4])
    b = _published(tmp_path, "b", DAY, "v1", ROWS[4:], 1)
    assert _count_by_page(Snapshot.of([a, b])) == {"Main": 3, "Talk": 1, "Vandalism": 3}
    # a newer version of hour 2 only: the day's older segments keep the other hours
    fix = _published(tmp_path, "fix", HOUR2, "v2", [(DAY0 + 2 * H + 9, "Fixed", "z", 1)])
    snap = Snapshot.of([a, b, fix])
    assert _count_by_page(snap) == {"Main": 3, "Talk": 1, "Fixed": 1}
    assert _shadowed(snap) == {a.id: (0, 1), b.id: (0, 1), fix.id: (0, 1)}
    # and an even newer day version hides all three
    day = _published(tmp_path, "day", DAY, "v3", [(DAY0 + 7, "Last", "z", 1)])
    snap = Snapshot.of([a, b, fix, day])
    assert _count_by_page(snap) == {"Last": 1}
    assert _shadowed(snap) == {a.id: (1, 0), b.id: (1, 0), fix.id: (1, 0), day.id: (0, 1)}


def test_timeline_unit() -> None:
    from broker import timeline

    def seg(interval: tuple[int, int], version: str, part: int = 0, core: int = 0) -> Segment:
        return Segment(
            id=f"s_{interval[0]}_{interval[1]}_{version}_{part}",
            datasource="wiki",
            start_ms=interval[0],
            end_ms=interval[1],
            version=version,
            partition_num=part,
            path=Path("/nonexistent"),
            num_rows=0,
            size=0,
            dimensions=(),
            metrics=(),
            payload={"shardSpec": {"type": "numbered", "partitionNum": part, "partitions": core}},
        )

    day, mid = (0, 24), (6, 12)
    low, high = seg(day, "a"), seg(mid, "b")
    shown = {v.segment.id: v.ranges for v in timeline.visible((low, high))}
    assert shown == {low.id: ((0, 6), (12, 24)), high.id: ((6, 12),)}
    # versions compare as strings; a linear shard spec is always complete
    lin = Segment(
        **{**seg(day, "c").__dict__, "payload": {"shardSpec": {"type": "linear", "partitionNum": 3}}}
    )
    t = timeline.timeline((low, high, lin))
    assert [v.segment.id for v in t.visible] == [lin.id] and t.overshadowed == {low.id, high.id}
    # core partitions 0..2 must all be there; partition 3 (appended) joins once they are
    parts = [seg(day, "z", p, 3) for p in (0, 1, 3)]
    assert {v.segment.id for v in timeline.visible((low, *parts))} == {low.id}
    parts.append(seg(day, "z", 2, 3))
    assert {v.segment.id for v in timeline.visible((low, *parts))} == {p.id for p in parts}


# ------------------------------------------------------------------ timeseries: empty buckets


def _jan(tmp_path: Path) -> Snapshot:
    """Druid's docs' example (timeseriesquery.md, "Empty bucket values"): data on 2012-01-01 and
    2012-01-03, none on 2012-01-02, in one segment of the three days."""
    jan1, jan3 = 1_325_376_000_000, 1_325_376_000_000 + 2 * 86_400_000
    seg = _published(
        tmp_path,
        "jan",
        "2012-01-01T00:00:00.000Z/2012-01-04T00:00:00.000Z",
        "v1",
        [(jan1 + 5, "a", "u", 3), (jan3 + 7, "b", "u", 4)],
    )
    return Snapshot.of([seg])


def test_timeseries_fills_interior_empty_buckets(tmp_path: Path) -> None:
    snap = _jan(tmp_path)
    query = {
        "queryType": "timeseries",
        "granularity": "day",
        "intervals": ["2012-01-01T00:00:00.000/2012-01-04T00:00:00.000"],
        "aggregations": [
            {"type": "longSum", "name": "sample_name1", "fieldName": "added"},
            {"type": "count", "name": "rows"},
        ],
    }
    assert native(snap, query) == [
        {"timestamp": "2012-01-01T00:00:00.000Z", "result": {"sample_name1": 3, "rows": 1}},
        {"timestamp": "2012-01-02T00:00:00.000Z", "result": {"sample_name1": None, "rows": 0}},
        {"timestamp": "2012-01-03T00:00:00.000Z", "result": {"sample_name1": 4, "rows": 1}},
    ]
    skipped = native(snap, {**query, "context": {"skipEmptyBuckets": "true"}})
    assert [r["timestamp"][:10] for r in skipped] == ["2012-01-01", "2012-01-03"]
    # buckets outside the data (here the hours after the last row) are not filled
    hourly = native(snap, {**query, "granularity": "hour", "intervals": ["2012-01-03/2012-01-04"]})
    assert hourly == [{"timestamp": "2012-01-03T00:00:00.000Z", "result": {"sample_name1": 4, "rows": 1}}]
    # descending (the docs write it as a string), limit, and the grand total row last, without a timestamp
    down = native(snap, {**query, "descending": "true", "limit": 2, "context": {"grandTotal": True}})
    assert down == [
        {"timestamp": "2012-01-03T00:00:00.000Z", "result": {"sample_name1": 4, "rows": 1}},
        {"timestamp": "2012-01-02T00:00:00.000Z", "result": {"sample_name1": None, "rows": 0}},
        {"timestamp": None, "result": {"sample_name1": 7, "rows": 2}},
    ]


def test_timeseries_filter_matching_nothing(snapshot: Snapshot) -> None:
    query = {
        "queryType": "timeseries",
        "granularity": "hour",
        "intervals": ALL,
        "filter": {"type": "selector", "dimension": "page", "value": "Talk"},
        "aggregations": [
            {"type": "count", "name": "rows"},
            {"type": "longSum", "name": "added", "fieldName": "added"},
        ],
        "postAggregations": [
            {
                "type": "arithmetic",
                "name": "twice",
                "fn": "*",
                "fields": [{"type": "fieldAccess", "fieldName": "rows"}, {"type": "constant", "value": 2}],
            }
        ],
    }
    assert native(snapshot, query) == [
        {"timestamp": "2015-09-12T00:00:00.000Z", "result": {"rows": 0, "added": None, "twice": 0.0}},
        {"timestamp": "2015-09-12T01:00:00.000Z", "result": {"rows": 1, "added": 7, "twice": 2.0}},
        {"timestamp": "2015-09-12T02:00:00.000Z", "result": {"rows": 0, "added": None, "twice": 0.0}},
    ]
    nothing = {
        **query,
        "granularity": "all",
        "filter": {"type": "selector", "dimension": "page", "value": "-"},
    }
    # granularity all: one row, the aggregators' empty values, at the data's first time
    assert native(snapshot, nothing) == [
        {"timestamp": "2015-09-12T00:00:00.001Z", "result": {"rows": 0, "added": None, "twice": 0.0}}
    ]
    assert native(snapshot, {**nothing, "context": {"skipEmptyBuckets": True}}) == []
    # no segment in the intervals: nothing at all
    assert native(snapshot, {**query, "intervals": ["2016-01-01/2016-01-02"]}) == []


# ------------------------------------------------------------------ the search query


def _search(snapshot: Snapshot, **query: Any) -> Any:
    return native(snapshot, {"queryType": "search", "intervals": ALL, **query})


def test_search_query(snapshot: Snapshot) -> None:
    # searchquery.md's result shape: per bucket, the matching values of each dimension with their counts
    got = _search(
        snapshot, searchDimensions=["page", "user"], query={"type": "insensitive_contains", "value": "A"}
    )
    hits = [(h["dimension"], h["value"], h["count"]) for h in got[0]["result"]]
    assert got[0]["timestamp"] == "2015-09-12T00:00:00.000Z" and len(got) == 1
    # lexicographic (the default) compares UTF-8 bytes: upper case before lower case
    assert hits == [
        ("page", "Main", 3),
        ("page", "Talk", 1),
        ("page", "Vandalism", 3),
        ("user", "alice", 2),
        ("user", "carol", 1),
        ("user", "dave", 2),
    ]
    assert set(got[0]["result"][0]) == {"dimension", "value", "count"}
    # contains is case-sensitive when asked (the docs' key is case_sensitive)
    exact = _search(
        snapshot, searchDimensions=["page"], query={"type": "contains", "value": "m", "case_sensitive": True}
    )
    assert [h["value"] for h in exact[0]["result"]] == ["Vandalism"]
    loose = _search(snapshot, searchDimensions=["page"], query={"type": "contains", "value": "m"})
    assert [h["value"] for h in loose[0]["result"]] == ["Main", "Vandalism"]
    # fragment: every fragment in the value; all dimensions when searchDimensions is left out; strlen sort
    frag = _search(snapshot, query={"type": "fragment", "values": ["A", "l"]}, sort={"type": "strlen"})
    assert [h["value"] for h in frag[0]["result"]] == ["Talk", "alice", "carol", "Vandalism"]
    assert [
        h["value"]
        for h in _search(snapshot, query={"type": "fragment", "values": ["a", "l"]}, limit=2)[0]["result"]
    ] == ["Talk", "Vandalism"]
    # a filter and a granularity: buckets by the rows' time
    hourly = _search(
        snapshot,
        granularity="hour",
        searchDimensions=["page"],
        filter={"type": "selector", "dimension": "user", "value": "alice"},
        query={"type": "insensitive_contains", "value": "a"},
    )
    assert hourly == [
        {
            "timestamp": "2015-09-12T00:00:00.000Z",
            "result": [{"dimension": "page", "value": "Main", "count": 1}],
        },
        {
            "timestamp": "2015-09-12T01:00:00.000Z",
            "result": [{"dimension": "page", "value": "Talk", "count": 1}],
        },
    ]
    assert _search(snapshot, query={"type": "regex", "pattern": "^V.n"})[0]["result"] == [
        {"dimension": "page", "value": "Vandalism", "count": 3}
    ]
    assert _search(snapshot, query={"type": "insensitive_contains", "value": "zzz"}) == []


def test_search_sort_orders() -> None:
    from broker.native import _hit_order

    def order(kind: str, values: tuple[str, ...] = ("file12", "file2", "-1.5", "10", "x", "9")) -> list[str]:
        hits = [{"dimension": "d", "value": v} for v in values]
        return [h["value"] for h in sorted(hits, key=_hit_order(kind))]

    assert order("lexicographic") == ["-1.5", "10", "9", "file12", "file2", "x"]
    # alphanumeric (sorting-orders.md): "file12 sorts after file2", "1.3" before "1.15", negatives last
    assert order("alphanumeric") == ["9", "10", "-1.5", "file2", "file12", "x"]
    assert order("alphanumeric", ("1.15", "1.3")) == ["1.3", "1.15"]
    # numeric: unparseable values are nulls, first, among themselves by text
    assert order("numeric") == ["file12", "file2", "x", "-1.5", "9", "10"]
    assert order("strlen") == ["9", "x", "10", "-1.5", "file2", "file12"]


def test_native_error_bodies(snapshot: Snapshot) -> None:
    def error(query: dict[str, Any]) -> dict[str, Any]:
        status, data, headers = _call(snapshot, "POST", "/druid/v2", query)
        assert status == 400 and isinstance(data, dict), data
        assert set(data) >= {"error", "errorMessage", "errorClass", "host"} and headers["X-Druid-Query-Id"]
        return data

    # querying/querying.md, "Query errors"; QueryException's "Json parse failed" for what Jackson cannot read
    unknown = error({"queryType": "nope", "dataSource": "wiki"})
    assert unknown["error"] == "Json parse failed"
    assert unknown["errorClass"] == "com.fasterxml.jackson.databind.exc.InvalidTypeIdException"
    assert "'nope'" in unknown["errorMessage"] and "timeseries" in unknown["errorMessage"]
    assert "queryType" in error({"dataSource": "wiki"})["errorMessage"]
    bad = error({"queryType": "timeseries", "dataSource": "wiki", "intervals": ["2015-13-45/x"]})
    assert bad["error"] == "Json parse failed" and "intervals" in bad["errorMessage"]
    assert error({"queryType": "scan", "dataSource": "wiki"})["error"] == "Json parse failed"  # no intervals
    # a datasource without segments answers an empty result, as Druid's Broker does
    status, data, _ = _call(
        snapshot,
        "POST",
        "/druid/v2",
        {"queryType": "timeseries", "dataSource": "nope", "intervals": ALL, "granularity": "all"},
    )
    assert (status, data) == (200, [])


# ------------------------------------------------------------------ SQL JOIN of datasources


@pytest.fixture
def two(tmp_path: Path, snapshot: Snapshot) -> Snapshot:
    """``wiki`` and a second datasource ``pages`` (a page's category, one row per page)."""
    path = tmp_path / "pages.parquet"
    pq.write_table(
        pa.table(
            {
                "__time": pa.array([DAY0, DAY0], pa.int64()),
                "page": ["Main", "Talk"],
                "category": ["article", "discussion"],
            }
        ),
        path,
    )
    pages = Segment.from_payload(
        {
            "dataSource": "pages",
            "interval": "2015-09-12/2015-09-13",
            "version": "v1",
            "loadSpec": {"type": "local", "path": str(path)},
            "identifier": "pages_2015-09-12_2015-09-13_v1",
        }
    )
    return Snapshot.of([*snapshot.segments["wiki"], pages])


def test_sql_join_of_two_datasources(two: Snapshot) -> None:
    # Druid's docs (querying/datasource.md "join", sql.md): INNER and LEFT joins on an equality
    inner = sql(
        two,
        "SELECT w.page, p.category, COUNT(*) AS n FROM wiki w INNER JOIN pages p ON w.page = p.page "
        "GROUP BY 1, 2 ORDER BY 1",
    )
    assert inner == [
        {"page": "Main", "category": "article", "n": 3},
        {"page": "Talk", "category": "discussion", "n": 1},
    ]
    left = sql(
        two,
        "SELECT w.page, p.category, SUM(w.added) AS a FROM druid.wiki AS w LEFT JOIN druid.pages AS p "
        "ON w.page = p.page GROUP BY 1, 2 ORDER BY 1",
    )
    assert left[-1] == {"page": "Vandalism", "category": None, "a": 150} and len(left) == 3
    # table names as qualifiers, a filter, and a subquery on the right
    assert sql(
        two,
        "SELECT wiki.page, pages.category FROM wiki JOIN pages ON wiki.page = pages.page "
        "WHERE wiki.\"user\" = 'bob'",
    ) == [{"page": "Main", "category": "article"}]
    sub = sql(
        two,
        "SELECT w.page, COUNT(*) AS n FROM wiki w INNER JOIN "
        "(SELECT page FROM pages WHERE category = 'article') p ON w.page = p.page GROUP BY 1",
    )
    assert sub == [{"page": "Main", "n": 3}]
    assert (
        "not found" in sql_error(two, "SELECT * FROM wiki w JOIN nope n ON w.page = n.page")["errorMessage"]
    )


# ------------------------------------------------------------------ pydruid, unchanged, as a client


@pytest.fixture
def served(two: Snapshot) -> Iterator[tuple[str, int]]:
    """The Broker over ``wiki`` and ``pages`` on a loopback port: (host, port)."""
    from tests.harness.http import serve_app

    app = web.Application()
    add_routes(app, Broker(FixedCatalog(two), BrokerSettings()))
    with serve_app(app) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def test_pydruid_db_api(served: tuple[str, int]) -> None:
    import pydruid.db

    host, port = served
    conn = pydruid.db.connect(host=host, port=port, path="/druid/v2/sql/", scheme="http")
    cur = conn.cursor()
    cur.execute("SELECT page, COUNT(*) AS n FROM wiki GROUP BY page ORDER BY n DESC, page")
    assert [tuple(r) for r in cur.fetchall()] == [("Main", 3), ("Vandalism", 3), ("Talk", 1)]
    assert [d[0] for d in cur.description] == ["page", "n"]
    # pyformat parameters, escaped by pydruid into the SQL
    cur.execute('SELECT COUNT(*) AS n FROM wiki WHERE "user" = %(user)s', {"user": "dave"})
    assert cur.fetchone().n == 2
    # header=True: pydruid asks for the header row and reads the column names from it
    with_header = pydruid.db.connect(host=host, port=port, path="/druid/v2/sql/", header=True).cursor()
    with_header.execute("SELECT page, category FROM pages ORDER BY page")
    assert [d[0] for d in with_header.description] == ["page", "category"]
    assert [tuple(r) for r in with_header.fetchall()] == [("Main", "article"), ("Talk", "discussion")]
    # Druid's error body reaches pydruid's exception
    with pytest.raises(pydruid.db.exceptions.ProgrammingError, match="not found"):
        cur.execute("SELECT * FROM nope")


# pydruid's dialect predates SQLAlchemy 2's names (dbapi(), supports_statement_cache): its warnings, not ours
@pytest.mark.filterwarnings("ignore:.*dbapi.. classmethod:DeprecationWarning", "ignore:Dialect druid.rest")
def test_pydruid_sqlalchemy(served: tuple[str, int]) -> None:
    import sqlalchemy as sa

    host, port = served
    engine = sa.create_engine(f"druid://{host}:{port}/druid/v2/sql/")
    inspector = sa.inspect(engine)
    assert "druid" in inspector.get_schema_names()
    assert set(inspector.get_table_names(schema="druid")) == {"wiki", "pages"}
    columns = {c["name"]: c["type"] for c in inspector.get_columns("wiki", schema="druid")}
    assert list(columns) == ["__time", "page", "user", "added"]
    assert isinstance(columns["__time"], sa.TIMESTAMP) and isinstance(columns["added"], sa.BigInteger)
    assert isinstance(columns["page"], sa.String)
    with engine.connect() as conn:
        assert engine.dialect.has_table(conn, "wiki") and not engine.dialect.has_table(conn, "nope")
        wiki = sa.Table("wiki", sa.MetaData(), autoload_with=conn)
        pages = sa.Table("pages", sa.MetaData(), autoload_with=conn)
        query = (
            sa.select(wiki.c.page, sa.func.count().label("n"), sa.func.sum(wiki.c.added).label("a"))
            .where(wiki.c.user != "bob")
            .group_by(wiki.c.page)
            .order_by(sa.desc("a"))
            .limit(2)
        )
        assert [tuple(r) for r in conn.execute(query)] == [("Vandalism", 3, 150), ("Main", 2, 11)]
        joined = (
            sa.select(pages.c.category, sa.func.count().label("n"))
            .select_from(wiki.join(pages, wiki.c.page == pages.c.page))
            .group_by(pages.c.category)
            .order_by(pages.c.category)
        )
        assert [tuple(r) for r in conn.execute(joined)] == [("article", 3), ("discussion", 1)]
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_pydruid_native_client(served: tuple[str, int]) -> None:
    from pydruid.client import PyDruid
    from pydruid.utils.aggregators import count, longsum
    from pydruid.utils.filters import Dimension

    host, port = served
    client = PyDruid(f"http://{host}:{port}", "druid/v2")
    grouped = client.groupby(
        datasource="wiki",
        granularity="all",
        intervals="2015-09-12/2015-09-13",
        dimensions=["page"],
        filter=Dimension("user") != "bob",
        aggregations={"edits": count("page"), "added": longsum("added")},
        limit_spec={
            "type": "default",
            "limit": 2,
            "columns": [{"dimension": "added", "direction": "descending"}],
        },
    )
    assert grouped.result == [
        {
            "version": "v1",
            "timestamp": "2015-09-12T00:00:00.000Z",
            "event": {"page": "Vandalism", "edits": 3, "added": 150},
        },
        {
            "version": "v1",
            "timestamp": "2015-09-12T00:00:00.000Z",
            "event": {"page": "Main", "edits": 2, "added": 11},
        },
    ]
    series = client.timeseries(
        datasource="wiki",
        granularity="hour",
        intervals="2015-09-12/2015-09-13",
        filter=Dimension("page") == "Talk",
        aggregations={"edits": count("page")},
    )
    assert [r["result"]["edits"] for r in series.result] == [0, 1, 0]  # empty buckets filled
    search = client.query_builder.search(
        {
            "datasource": "wiki",
            "granularity": "all",
            "intervals": "2015-09-12/2015-09-13",
            "searchDimensions": ["user"],
            "query": {"type": "insensitive_contains", "value": "AR"},
        }
    )
    assert client._post(search).result[0]["result"] == [{"dimension": "user", "value": "carol", "count": 1}]


def test_native_join_datasource(two: Snapshot) -> None:
    # datasource.md "join": the right side's columns under rightPrefix, an equality condition
    def join(right: Any, kind: str = "INNER", condition: str = 'page == "p.page"') -> dict[str, Any]:
        return {
            "type": "join",
            "left": "wiki",
            "right": right,
            "rightPrefix": "p.",
            "condition": condition,
            "joinType": kind,
        }

    query = {
        "queryType": "groupBy",
        "granularity": "all",
        "intervals": ALL,
        "dimensions": [{"type": "default", "outputName": "category", "dimension": "p.category"}],
        "aggregations": [{"type": "longSum", "name": "added", "fieldName": "added"}],
        "limitSpec": {"type": "default", "columns": ["category"]},
    }
    status, data, _ = _call(two, "POST", "/druid/v2", {**query, "dataSource": join("pages")})
    assert status == 200, data
    assert [r["event"] for r in data] == [
        {"category": "article", "added": 16},
        {"category": "discussion", "added": 7},
    ]
    left = native(two, {**query, "dataSource": join({"type": "table", "name": "pages"}, "LEFT")})
    assert [r["event"] for r in left][-1] == {"category": None, "added": 150}
    inline = {"type": "inline", "columnNames": ["page", "kind"], "rows": [["Vandalism", "abuse"]]}
    status, data, _ = _call(
        two,
        "POST",
        "/druid/v2",
        {
            "queryType": "timeseries",
            "granularity": "all",
            "intervals": ALL,
            "dataSource": join(inline),
            "filter": {"type": "selector", "dimension": "p.kind", "value": "abuse"},
            "aggregations": [{"type": "count", "name": "rows"}],
        },
    )
    assert status == 200 and data[0]["result"] == {"rows": 3}, data
    scan = native(
        two,
        {
            "queryType": "scan",
            "intervals": ALL,
            "columns": ["__time", "page", "p.category"],
            "limit": 1,
            "order": "ascending",
            "dataSource": join("pages", condition='"p.page" == "page"'),
        },
    )
    assert scan[0]["events"] == [{"__time": DAY0 + 1, "page": "Main", "p.category": "article"}]
    for bad, word in (
        (join("pages", "OUTER"), "joinType"),
        (join("pages", condition="page != p.page"), "condition"),
        (join("nope"), "nope"),
        ({**join("pages"), "rightPrefix": ""}, "rightPrefix"),
    ):
        status, data, _ = _call(two, "POST", "/druid/v2", {**query, "dataSource": bad})
        assert status == 400 and word in data["errorMessage"], data


def test_native_unreadable_parts_are_json_parse_failed(snapshot: Snapshot) -> None:
    # Druid reads a native query with Jackson: a part it cannot read fails the whole query that way
    base = {"queryType": "timeseries", "dataSource": "wiki", "intervals": ALL, "granularity": "all"}
    for bad, word in (
        ({"granularity": "fortnight"}, "granularity"),
        ({"granularity": {"type": "duration", "duration": -1}}, "duration"),
        ({"filter": {"type": "nope"}}, "filter"),
        ({"dataSource": None}, "dataSource"),
    ):
        status, data, _ = _call(snapshot, "POST", "/druid/v2", {**base, **bad})
        assert status == 400 and data["error"] == "Json parse failed" and word in data["errorMessage"], data


def test_a_cluster_token_alone_keeps_access_control_on() -> None:
    """As the Overlord: a Broker given only the cluster token (compose with no users) is not open;
    the cluster token is what it presents to the Overlord, not a query credential."""
    from broker.api import build_app

    async def go() -> list[int]:
        app = build_app(BrokerSettings(cluster_token="t0ken", overlord_url="http://127.0.0.1:9"))
        async with TestClient(TestServer(app)) as client:
            codes = []
            for headers in ({}, {"Authorization": "Bearer t0ken"}, {"Authorization": "Bearer nope"}):
                got = await client.post("/druid/v2/sql", json={"query": "SELECT 1"}, headers=headers)
                codes.append(got.status)
            codes.append((await client.get("/status/health")).status)
            return codes

    assert asyncio.run(go()) == [401, 403, 401, 200]

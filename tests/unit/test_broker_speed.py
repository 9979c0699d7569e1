"""The Broker's fast paths. Warm databases (:class:`broker.engine.DatabasePool`): a database is reused
by the next query over the same segment files, never across a publish, never after a failed or
interrupted query, and a reused database is as locked down as a new one. Native granularities floored
by DuckDB itself give the kernel's answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from broker.catalog import Snapshot
from broker.engine import DatabasePool, Engine, Limits, Result
from broker.errors import QueryError, QueryTimeout
from broker.sql import translate
from tests.unit.test_broker import DAY0, ROWS, H, _segment, _write

pytestmark = pytest.mark.unit

SANDBOX = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM 'https://example.com/x.parquet'",
]


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _write(a, ROWS[:4])
    _write(b, ROWS[4:])
    return [a, b]


def _snapshot(files: list[Path]) -> Snapshot:
    spans = [(DAY0, DAY0 + 2 * H, 4), (DAY0 + 2 * H, DAY0 + 3 * H, 3)]
    return Snapshot.of([_segment(f, *span) for f, span in zip(files, spans, strict=False)])


def _engine(pool: DatabasePool | None = None) -> Engine:
    return Engine(Limits(timeout_s=30, memory_limit="256MB", threads=1, max_rows=1000), pool)


def _run(engine: Engine, snapshot: Snapshot, query: str, timeout_s: float | None = None) -> Result:
    plan = translate(query, snapshot.datasources())
    return asyncio.run(engine.run(snapshot, plan, timeout_s=timeout_s))


def test_a_database_serves_the_next_query_over_the_same_files(files: list[Path]) -> None:
    engine = _engine()
    snapshot = _snapshot(files)
    assert _run(engine, snapshot, "SELECT COUNT(*) FROM wiki").rows == [(7,)]
    assert engine.pool.idle() == 1
    held = engine.pool.take(next(iter(engine.pool._idle)))
    assert held is not None
    engine.pool.give(next(iter(engine.pool._idle)), held)
    assert _run(engine, snapshot, "SELECT SUM(added) FROM wiki").rows == [(173,)]
    assert engine.pool.idle() == 1
    # the same database, not a new one
    key = next(iter(engine.pool._idle))
    assert engine.pool.take(key) is held


def test_a_publish_gives_a_new_database(files: list[Path]) -> None:
    engine = _engine()
    one = _snapshot(files[:1])
    assert _run(engine, one, "SELECT COUNT(*) FROM wiki").rows == [(4,)]
    both = _snapshot(files)
    assert _run(engine, both, "SELECT COUNT(*) FROM wiki").rows == [(7,)]
    assert _run(engine, one, "SELECT COUNT(*) FROM wiki").rows == [(4,)]
    assert engine.pool.idle() == 2


def test_a_reused_database_is_still_locked_down(files: list[Path]) -> None:
    engine = _engine()
    snapshot = _snapshot(files)
    for query in SANDBOX:
        assert _run(engine, snapshot, "SELECT COUNT(*) FROM wiki").rows == [(7,)]
        assert engine.pool.idle() == 1
        with pytest.raises(QueryError):
            _run(engine, snapshot, query)
        assert engine.pool.idle() == 1  # the failed query's database was closed, not returned
    # a warm database reads no file directly, not even a segment's
    for _ in range(2):
        with pytest.raises(QueryError):
            _run(engine, snapshot, f"SELECT * FROM read_parquet('{files[0]}')")
        assert _run(engine, snapshot, "SELECT 1").rows == [(1,)]


def test_per_query_tables_are_dropped_after_their_query(files: list[Path]) -> None:
    engine = _engine()
    snapshot = _snapshot(files)
    query = "SELECT datasource, COUNT(*) AS c FROM sys.segments GROUP BY 1"
    plan = translate(query, snapshot.datasources())
    assert plan.system_tables
    table = pa.table({"datasource": ["wiki", "wiki"]})
    name = next(iter(plan.system_tables))
    sys_name = f'druid_sys."{name}"'
    for _ in range(3):  # the same warm database each time: the table must not be left behind
        got = asyncio.run(engine.run(snapshot, plan, tables={sys_name: table}))
        assert got.rows == [("wiki", 2)]
    assert engine.pool.idle() == 1


def test_an_interrupted_database_is_not_reused(files: list[Path]) -> None:
    engine = _engine()
    snapshot = _snapshot(files)
    _run(engine, snapshot, "SELECT 1")
    assert engine.pool.idle() == 1
    with pytest.raises(QueryTimeout):
        _run(engine, snapshot, "SELECT COUNT(*) FROM range(100000000000) a", timeout_s=0.2)
    assert engine.pool.idle() == 0


def test_the_pool_is_bounded() -> None:
    pool = DatabasePool(per_view_set=1, view_sets=2)
    engine = _engine(pool)
    cons = [engine._database(((f"ds{i}", "", ()),)) for i in range(4)]
    extra = engine._database((("ds0", "", ()),))
    pool.give((("ds0", "", ()),), cons[0])
    pool.give((("ds0", "", ()),), extra)  # one idle per view set: closed
    pool.give((("ds1", "", ()),), cons[1])
    pool.give((("ds2", "", ()),), cons[2])  # three view sets: the least recently used goes
    assert pool.idle() == 2
    assert pool.take((("ds0", "", ()),)) is None
    with pytest.raises(Exception, match="closed"):
        extra.execute("SELECT 1")
    pool.give((("ds3", "", ()),), cons[3])
    pool.close()
    assert pool.idle() == 0


@pytest.mark.parametrize("period", ["PT1M", "PT1H", "PT5M", "PT90S", "P1D", "P1W", "P1M"])
def test_native_granularity_floored_by_duckdb_as_by_the_kernel(files: list[Path], period: str) -> None:
    from tests.unit.test_broker import native

    snapshot = _snapshot(files)
    query = {
        "queryType": "timeseries",
        "intervals": ["2015-09-01/2015-10-01"],
        "aggregations": [
            {"type": "count", "name": "n"},
            {"type": "longSum", "name": "a", "fieldName": "added"},
        ],
    }
    own = native(snapshot, {**query, "granularity": {"type": "period", "period": period}})
    # an explicit origin at the epoch floors alike, but only the kernel's function takes an origin
    kernel = {"type": "period", "period": period, "origin": "1970-01-01T00:00:00Z"}
    if period in ("P1W",):  # Druid's weeks start on Monday; the epoch was a Thursday
        kernel["origin"] = "1970-01-05T00:00:00Z"
    assert own == native(snapshot, {**query, "granularity": kernel})
    assert sum(b["result"]["n"] for b in own) == 7

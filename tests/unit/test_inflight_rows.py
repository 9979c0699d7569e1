"""In-flight rows (issue 15.2): a task's unpublished rows in the segment schema, and the Broker's
choice of one source per task group (segments once published, else one replica, never backwards).

The catalog runs against a fake Overlord and fake tasks on a FakeClock: no services.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from broker.api import Broker, SqlQuery
from broker.catalog import ORPHAN_GRACE_S, ROWS_PATH, SegmentCatalog
from broker.config import BrokerSettings
from broker.sql import translate
from middlemanager.ingest import IngestPipeline
from middlemanager.ingest.pushdown import narrowed
from middlemanager.runner import Outcome, TaskRunner, _read_segments, _segment_spans
from overlord.metadata.druid import data_segment_json
from supervisor import protocol as wire
from supervisor.clock import FakeClock
from supervisor.errors import Unavailable
from supervisor.filters import DimFilter
from supervisor.kafka.supplier import PollResult
from supervisor.records import Record
from supervisor.task_spec import KafkaIndexTaskSpec
from tests.harness.stub_overlord import stub_overlord
from tests.unit.test_ingest import METRICS, make_spec, random_events, records
from transport.client import Answer

pytestmark = pytest.mark.unit

HOUR = 3_600_000
T0 = 1_704_067_200_000


# ------------------------------------------------------------------ the task's side


@pytest.mark.parametrize("rollup", [True, False])
def test_inflight_table_is_what_finish_writes(tmp_path: Path, rollup: bool) -> None:
    """Memory plus spills, merged and rolled up as the segments: the same rows, columns and types."""
    events = random_events(1500, seed=3)
    spec = make_spec(["page", "user"], METRICS, query="MINUTE", rollup=rollup, maxRowsInMemory=400)
    pipeline = IngestPipeline(spec, tmp_path / "work")
    assert pipeline.inflight_table() is None  # nothing read yet
    recs = records(events)
    for index in range(0, len(recs), 250):
        pipeline.add(recs[index : index + 250])
    assert pipeline.persist_count >= 2 and pipeline.rows_in_memory > 0  # both spills and memory
    inflight = pipeline.inflight_table()
    again = pipeline.inflight_table()  # reading changes nothing
    spans = pipeline.inflight_spans()
    files = pipeline.finish(tmp_path / "out")
    published = pa.concat_tables([pq.read_table(f.path) for f in files])
    assert spans == _segment_spans(files)  # each segment's first and last row time, its interval
    assert len(spans) >= 2 and all(a <= lo <= hi < b for lo, hi, a, b in spans)
    assert inflight is not None and again is not None
    assert inflight.schema == published.schema
    assert inflight.equals(published) and again.equals(published)
    assert pipeline.inflight_table() is None  # finished: the rows are in the files


EXACT_METRICS = [m for m in METRICS if m["name"] in ("count", "lsum", "lmin", "lmax", "dmin", "fmax")]


@pytest.mark.parametrize(
    ("rollup", "metrics", "cached"),
    [(False, METRICS, True), (True, EXACT_METRICS, True), (True, METRICS, False)],
)
def test_the_merged_spills_are_cached_where_exact(
    tmp_path: Path, rollup: bool, metrics: list[dict[str, Any]], cached: bool
) -> None:
    """Asked after every batch, each answer is the rows so far; the spills are merged once per
    new spill into a cached run (not with rollup and a sum of doubles: not exact in two steps)."""
    events = random_events(1500, seed=7)
    spec = make_spec(["page", "user"], metrics, query="MINUTE", rollup=rollup, maxRowsInMemory=300)
    pipeline = IngestPipeline(spec, tmp_path / "work")
    recs = records(events)
    for index in range(0, len(recs), 250):
        pipeline.add(recs[index : index + 250])
        if index % 500 == 0:
            pipeline.persist()  # (a read of the rows never spills)
        answer = pipeline.inflight_table()
        assert answer is not None and answer.num_rows <= index + 250
    assert pipeline.persist_count >= 3
    caches = sorted((tmp_path / "work").glob("inflight-merged-*.arrow"))
    assert bool(caches) is cached
    inflight = pipeline.inflight_table()
    files = pipeline.finish(tmp_path / "out")
    published = pa.concat_tables([pq.read_table(f.path) for f in files])
    assert inflight is not None and inflight.equals(published)
    assert not any(c.exists() for c in caches)  # finish removes the cache with the spills


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """The rows as a sorted list (an answer's rows in no particular order)."""
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True), key=repr)


@pytest.mark.parametrize("rollup", [True, False])
def test_inflight_columns_are_the_published_rows_projected(tmp_path: Path, rollup: bool) -> None:
    """Only the columns asked (case-insensitively, unknown ones ignored): the published rows'
    values of those columns, as many rows as published (rolled up first); none: just the count."""
    events = random_events(1500, seed=5)
    spec = make_spec(["page", "user"], METRICS, query="MINUTE", rollup=rollup, maxRowsInMemory=400)
    pipeline = IngestPipeline(spec, tmp_path / "work")
    assert pipeline.inflight_table(["page"]) is None
    recs = records(events)
    for index in range(0, len(recs), 250):
        pipeline.add(recs[index : index + 250])
    assert pipeline.persist_count >= 2 and pipeline.rows_in_memory > 0
    asked = {
        ("page",): ["page"],
        ("__time", "PAGE", "nope"): ["__time", "page"],
        ("dsum", "user", "count"): ["user", "count", "dsum"],
        (): [],
    }
    answers = {cols: pipeline.inflight_table(list(cols)) for cols in asked}
    files = pipeline.finish(tmp_path / "out")
    published = pa.concat_tables([pq.read_table(f.path) for f in files])
    for cols, names in asked.items():
        answer = answers[cols]
        assert answer is not None and answer.column_names == names
        assert answer.num_rows == published.num_rows
        expected = published.select(names)
        assert answer.schema == expected.schema
        assert _rows(answer) == _rows(expected)


@pytest.mark.parametrize("rollup", [True, False])
def test_a_pushed_filter_leaves_out_only_the_rows_it_rejects(tmp_path: Path, rollup: bool) -> None:
    """Memory and spills filtered after the rollup: the published rows the filter keeps (with
    its columns read though not asked), and after ``finish`` the same from the segment files."""
    events = random_events(1500, seed=11)
    spec = make_spec(["page", "user"], METRICS, query="MINUTE", rollup=rollup, maxRowsInMemory=400)
    pipeline = IngestPipeline(spec, tmp_path / "work")
    recs = records(events)
    for index in range(0, len(recs), 250):
        pipeline.add(recs[index : index + 250])
    assert pipeline.persist_count >= 2 and pipeline.rows_in_memory > 0
    node = wire.InflightRowsRequest.model_validate(
        {
            "filter": {
                "type": "and",
                "fields": [
                    {"type": "in", "dimension": "PAGE", "values": ["a", "b"]},
                    {"type": "bound", "dimension": "lsum", "lower": "10", "ordering": "numeric"},
                ],
            }
        }
    ).filter
    assert node is not None
    asked = {None: None, ("user",): ["user"], ("lsum", "page"): ["page", "lsum"], (): []}
    answers = {cols: pipeline.inflight_table(None if cols is None else list(cols), node) for cols in asked}
    files = pipeline.finish(tmp_path / "out")
    published = pa.concat_tables([pq.read_table(f.path) for f in files])
    kept = published.filter(
        pc.and_(pc.is_in(published["page"], pa.array(["a", "b"])), pc.greater_equal(published["lsum"], 10))
    )
    assert 0 < kept.num_rows < published.num_rows / 2
    for cols, names in asked.items():
        answer = answers[cols]
        assert answer is not None and answer.num_rows == kept.num_rows
        expected = kept if names is None else kept.select(names)
        assert answer.column_names == expected.column_names
        assert _rows(answer) == _rows(expected)
    after = _read_segments(files, ["user"], node)
    assert after is not None and _rows(after) == _rows(kept.select(["user"]))


# ------------------------------------------------------------------ the Broker's side


def _table(ids: range) -> pa.Table:
    return pa.table({"__time": pa.array([T0 + i for i in ids], pa.int64()), "id": [str(i) for i in ids]})


class FakeTask:
    """A replica's control endpoint: rows 0..offset-1 of the one partition, or no answer."""

    def __init__(
        self, task_id: str, sequence: str, offset: int, start: int = 0, datasource: str = "ids"
    ) -> None:
        self.id = task_id
        self.sequence = sequence
        self.offset = offset
        self.start = start
        self.datasource = datasource
        self.up = True
        self.asked: list[dict[str, Any]] = []

    def answer(self, body: dict[str, Any]) -> Answer:
        self.asked.append(body)
        if not self.up:
            raise Unavailable(f"task {self.id}: connection refused")
        if self.offset < int(body.get("minOffsets", {}).get("0", 0)):
            return Answer(409, {"error": "behind"})
        table = _table(range(self.start, self.offset))
        pushed = wire.InflightRowsRequest.model_validate(body).filter
        if pushed is not None:
            table = narrowed(table, pushed)
        spans = (
            [(T0 + self.start, T0 + self.offset - 1, T0, T0 + HOUR)]
            if body.get("spans") and table.num_rows
            else []
        )
        if body.get("columns") is not None:
            asked = {c.lower() for c in body["columns"]}
            table = table.select([n for n in table.column_names if n.lower() in asked])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        tag = wire.InflightRowsTag(
            task_id=self.id,
            data_source=self.datasource,
            sequence_name=self.sequence,
            start_offsets={0: self.start},
            end_offsets={0: self.offset},
            num_rows=table.num_rows,
            filtered=pushed is not None,
            dimensions=["id"],
            spans=spans,
        )
        return Answer(200, sink.getvalue().to_pybytes(), {wire.INFLIGHT_TAG_HEADER: tag.model_dump_json()})


class FakeCluster:
    """The Overlord's segment list, task list and payloads, and the tasks' endpoints (full URLs)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.segments: list[dict[str, Any]] = []
        self.tasks: dict[str, FakeTask] = {}
        self.overlord_up = True
        self.segment_gets = 0

    def add_task(self, task: FakeTask) -> FakeTask:
        self.tasks[task.id] = task
        return task

    def publish(self, sequence: str, ids: range) -> None:
        """A sequence's segment (its file written), and its tasks gone."""
        path = self.tmp_path / f"{sequence}.parquet"
        pq.write_table(_table(ids), path)
        payload = data_segment_json(
            datasource="ids",
            start_ms=T0,
            end_ms=T0 + HOUR,
            version="v1",
            partition_num=len(self.segments),
            path=str(path),
            dimensions=["id"],
            metrics=[],
            size_bytes=path.stat().st_size,
            num_rows=len(ids),
        )
        payload["sequenceName"] = sequence
        self.segments.append(payload)

    async def send(self, method: str, path: str, body: Any = None, **_kw: Any) -> Answer:
        if path.startswith("http://"):
            task_id = path.split("/chat/")[1].split("/")[0]
            assert path.endswith(ROWS_PATH.format(task=task_id))
            return self.tasks[task_id].answer(body)
        if not self.overlord_up:
            raise Unavailable("Overlord: connection refused")
        if path == "/druid/coordinator/v1/metadata/segments":
            self.segment_gets += 1
            return Answer(200, list(self.segments), {"ETag": f'"{len(self.segments)}"'})
        if path == "/druid/indexer/v1/tasks":
            return Answer(200, [self._status(t) for t in self.tasks.values()])
        task_id = path.rsplit("/", 1)[1]
        payload = {"dataSource": self.tasks[task_id].datasource, "sequenceName": self.tasks[task_id].sequence}
        return Answer(200, {"task": task_id, "payload": payload})

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        got = await self.send(method, path, body)
        if got.status != 200:
            raise Unavailable(f"HTTP {got.status}")
        return got.body

    async def fetch(self, model: type[Any], method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return model.model_validate(await self.call(method, path, body))

    def _status(self, task: FakeTask) -> dict[str, Any]:
        return {
            "id": task.id,
            "type": "index_kafka",
            "groupId": task.id,
            "createdTime": "2024-01-01T00:00:00.000Z",
            "queueInsertionTime": "2024-01-01T00:00:00.000Z",
            "statusCode": "RUNNING",
            "status": "RUNNING",
            "runnerStatusCode": "RUNNING",
            "location": {"host": "127.0.0.1", "port": 8100},
            "dataSource": task.datasource,
        }


@pytest.fixture
def cluster(tmp_path: Path) -> FakeCluster:
    return FakeCluster(tmp_path)


def _catalog(cluster: FakeCluster, clock: FakeClock) -> SegmentCatalog:
    return SegmentCatalog(cluster, poll_s=1.0, clock=clock)  # type: ignore[arg-type]


# one Broker per catalog: its engine's pooled databases are reused from query to query
_BROKERS: dict[int, Broker] = {}


def _count(catalog: SegmentCatalog) -> tuple[int, int, dict[str, Any]]:
    """COUNT(*), COUNT(DISTINCT id) and the response context of one snapshot, through the engine."""

    async def go() -> tuple[int, int, dict[str, Any]]:
        broker = _BROKERS.setdefault(id(catalog), Broker(catalog, BrokerSettings()))
        snapshot = await catalog.snapshot()
        plan = translate('SELECT COUNT(*), COUNT(DISTINCT id) FROM "ids"', snapshot.datasources(), "UTC")
        result = await broker.engine.run(snapshot, plan)
        ((total, distinct),) = result.rows
        return int(total), int(distinct), result.context

    return asyncio.run(go())


def test_a_group_is_served_by_one_replica_until_its_segments_show(cluster: FakeCluster) -> None:
    clock = FakeClock()
    a = cluster.add_task(FakeTask("a", "seq1", 5))
    b = cluster.add_task(FakeTask("b", "seq1", 7))
    catalog = _catalog(cluster, clock)
    total, distinct, context = _count(catalog)
    assert total == distinct == 5  # one replica (the first), never both
    assert context == {}
    a.offset = 8
    clock.advance(0.1)
    assert _count(catalog)[:2] == (8, 8)  # the same replica again (sticky)
    assert b.asked == []
    # published (and the tasks still answer): the segments replace the task in the same step
    cluster.publish("seq1", range(10))
    a.offset = b.offset = 10
    clock.advance(1.0)
    assert _count(catalog) == (10, 10, {})


def test_a_query_pushes_its_filter_to_the_tasks_of_its_datasource_only(cluster: FakeCluster) -> None:
    """Filter pushdown: the task leaves out the rows the WHERE rejects (the answer is the same);
    a task of a datasource the query does not read is not asked at all."""
    task = cluster.add_task(FakeTask("a", "seq1", 10))
    other = cluster.add_task(FakeTask("o", "seq9", 4, datasource="other"))
    catalog = _catalog(cluster, FakeClock())
    broker = Broker(catalog, BrokerSettings())

    def sql(query: str) -> list[tuple[Any, ...]]:
        result, _ = asyncio.run(broker.sql(SqlQuery(query=query)))
        return [tuple(row) for row in result.rows]

    query = "SELECT COUNT(*), MIN(id) FROM ids WHERE (id IN ('1', '2', 'x') OR id LIKE '9%') AND NOT id = '2'"
    assert sql(query) == [(2, "1")]
    (asked,) = task.asked
    assert asked["filter"] == {
        "type": "or",
        "fields": [
            {"type": "in", "dimension": "id", "values": ["1", "2", "x"]},
            {"type": "like", "dimension": "id", "pattern": "9%"},
        ],
    }
    assert other.asked == []
    assert sql('SELECT COUNT(*) FROM "other"') == [(4,)]
    assert len(task.asked) == 1 and "filter" not in other.asked[0]


def test_a_group_whose_filtered_answer_was_empty_is_still_missed_when_it_goes(cluster: FakeCluster) -> None:
    """A filtered answer of no rows does not mean the group holds none: when its task stops
    answering before its segments show, the answer is partial, not a silent undercount."""
    clock = FakeClock()
    cluster.publish("seq0", range(100, 103))
    task = cluster.add_task(FakeTask("a", "seq1", 5))
    catalog = _catalog(cluster, clock)
    broker = Broker(catalog, BrokerSettings())
    result, _ = asyncio.run(broker.sql(SqlQuery(query="SELECT COUNT(*) FROM ids WHERE id = 'none of them'")))
    assert [tuple(r) for r in result.rows] == [(0,)] and task.asked[0]["filter"]["type"] == "selector"
    task.up = False
    clock.advance(1.0)
    total, _, context = _count(catalog)
    assert total == 3 and context["uncoveredSequences"] == ["seq1"]


def test_a_datasource_with_only_inflight_rows_is_described_and_zero_filled(cluster: FakeCluster) -> None:
    """``GET /druid/v2/datasources/{ds}`` names a running task's dimensions before anything is
    published, and a native timeseries fills the empty buckets of the task's rows' span."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from broker.api import add_routes

    task = cluster.add_task(FakeTask("a", "seq1", 5))
    broker = Broker(_catalog(cluster, FakeClock()), BrokerSettings())

    async def go() -> tuple[int, Any, int, Any]:
        app = web.Application()
        add_routes(app, broker)
        async with TestClient(TestServer(app)) as client:
            got = await client.get("/druid/v2/datasources/ids")
            missing = await client.get("/druid/v2/datasources/nope")
            return got.status, await got.json(), missing.status, await client.get("/druid/v2/datasources")

    status, described, missing, _ = asyncio.run(go())
    assert (status, described, missing) == (200, {"dimensions": ["id"], "metrics": []}, 404)
    assert task.asked[-1]["columns"] == ["__time"] and not task.asked[-1].get("spans")
    query = {
        "queryType": "timeseries",
        "dataSource": "ids",
        "intervals": ["2024-01-01/2024-01-02"],
        "granularity": {"type": "duration", "duration": 2},
        "filter": {"type": "in", "dimension": "id", "values": ["0", "4"]},
        "aggregations": [{"type": "count", "name": "n"}],
    }
    rows, context = asyncio.run(broker.native_answer(query))
    assert task.asked[-1]["spans"] is True and task.asked[-1]["filter"]["fields"][0]["type"] == "in"
    assert context == {}
    # rows at T0 and T0+4 (the filter's), the bucket between them filled with the empty count
    assert [(r["timestamp"][-7:], r["result"]["n"]) for r in rows] == [
        ("00.000Z", 1),
        ("00.002Z", 0),
        ("00.004Z", 1),
    ]


def test_a_query_asks_a_task_for_the_columns_it_reads(cluster: FakeCluster) -> None:
    """Projection pushdown: COUNT(*) asks for ``__time`` only (DuckDB takes no table without a
    column), a query of ``id`` for it alone, ``*`` for every column; each answer right on the
    same pooled databases."""
    task = cluster.add_task(FakeTask("a", "seq1", 6))
    catalog = _catalog(cluster, FakeClock())
    broker = Broker(catalog, BrokerSettings())

    def sql(query: str) -> list[Any]:
        result, _ = asyncio.run(broker.sql(SqlQuery(query=query)))
        return [tuple(row) for row in result.rows]

    cases: list[tuple[str, list[tuple[Any, ...]], list[str] | None]] = [
        ('SELECT COUNT(*) FROM "ids"', [(6,)], ["__time"]),
        ('SELECT COUNT(DISTINCT "ID") FROM "ids" WHERE id <> \'0\'', [(5,)], ["ID", "id"]),
        (
            "SELECT MIN(__time) FROM \"ids\" WHERE id = '3'",
            [(datetime(2024, 1, 1, 0, 0, 0, 3000),)],
            ["__time", "id"],
        ),
        ('SELECT * FROM "ids" ORDER BY __time LIMIT 1', [(T0, "0")], None),
        ('SELECT COUNT(*) FROM "ids"', [(6,)], ["__time"]),
    ]
    for query, rows, columns in cases:
        task.asked.clear()
        got = sql(query)
        assert [b.get("columns") for b in task.asked] == [columns]
        if columns is None:
            assert got[0][1] == rows[0][1]
        else:
            assert got == rows


def test_a_replica_that_dies_is_replaced_by_one_at_least_as_far(cluster: FakeCluster) -> None:
    clock = FakeClock()
    cluster.publish("seq0", range(100, 102))  # an earlier group's segment
    a = cluster.add_task(FakeTask("a", "seq1", 6))
    b = cluster.add_task(FakeTask("b", "seq1", 4))
    catalog = _catalog(cluster, clock)
    assert _count(catalog)[:2] == (8, 8)
    a.up = False  # kill -9: the task list still shows it for a while
    clock.advance(0.1)
    total, _, context = _count(catalog)
    # b is behind what was served: it is asked for at least offset 6 and refuses (409) -> partial
    assert b.asked[-1]["minOffsets"] == {"0": 6}
    assert total == 2 and context["uncoveredSequences"] == ["seq1"] and context["uncoveredIntervals"]
    b.offset = 9
    clock.advance(0.1)
    assert _count(catalog) == (11, 11, {})


def test_a_silent_task_that_just_published_is_read_from_its_segments(cluster: FakeCluster) -> None:
    clock = FakeClock()
    a = cluster.add_task(FakeTask("a", "seq1", 3))
    catalog = _catalog(cluster, clock)
    assert _count(catalog)[:2] == (3, 3)
    gets = cluster.segment_gets
    # the task published and exited between the segment poll and the ask: no answer; the segment
    # list is asked again at once (the poll interval has not passed) and shows the sequence
    a.up = False
    cluster.publish("seq1", range(4))
    clock.advance(0.1)
    assert _count(catalog) == (4, 4, {})
    assert cluster.segment_gets == gets + 1


def test_a_group_gone_from_the_task_list_without_segments_is_partial(cluster: FakeCluster) -> None:
    clock = FakeClock()
    cluster.publish("seq0", range(100, 102))
    cluster.add_task(FakeTask("a", "seq1", 3))
    catalog = _catalog(cluster, clock)
    assert _count(catalog)[:2] == (5, 5)
    del cluster.tasks["a"]  # failed as a whole; its rows will be read again by the next group
    clock.advance(1.0)
    assert _count(catalog)[2]["uncoveredSequences"] == ["seq1"]
    clock.advance(ORPHAN_GRACE_S + 1)
    assert _count(catalog) == (2, 2, {})


def test_a_failed_group_read_again_by_a_later_one_is_not_partial(cluster: FakeCluster) -> None:
    """A group that failed as a whole is read again by a new group (another sequence name) from the
    same start: once that one has read past it, nothing is missing."""
    clock = FakeClock()
    cluster.publish("seq0", range(100, 102))
    cluster.add_task(FakeTask("a", "seq1", 3))
    catalog = _catalog(cluster, clock)
    assert _count(catalog)[:2] == (5, 5)
    del cluster.tasks["a"]
    c = cluster.add_task(FakeTask("c", "seq2", 2))  # the new group, from the same start offset
    clock.advance(1.0)
    assert _count(catalog)[2]["uncoveredSequences"] == ["seq1"]  # 2 < 3: seq1's third row is missing
    c.offset = 4
    clock.advance(1.0)
    assert _count(catalog) == (6, 6, {})
    # and once the new group published, nothing of seq1 is asked for again
    cluster.publish("seq2", range(6))
    del cluster.tasks["c"]
    clock.advance(1.0)
    assert _count(catalog) == (8, 8, {})


def test_the_overlord_away_keeps_the_last_task_list(cluster: FakeCluster) -> None:
    clock = FakeClock()
    a = cluster.add_task(FakeTask("a", "seq1", 3))
    catalog = _catalog(cluster, clock)
    assert _count(catalog)[:2] == (3, 3)
    cluster.overlord_up = False
    a.offset = 5
    clock.advance(2.0)
    assert _count(catalog) == (5, 5, {})


def test_the_peon_answers_arrow_with_its_tag(tmp_path: Path) -> None:
    """The task's control endpoint: Arrow IPC of the in-flight rows, the tag in its header."""
    from aiohttp.test_utils import TestClient, TestServer

    from middlemanager import peon
    from middlemanager.runner import InflightRows

    class Runner:
        class task:
            id = "t1"
            data_source = "ids"
            start_offsets: ClassVar[dict[int, int]] = {0: 0}

        class pipeline:
            dimensions: ClassVar[list[str]] = ["id"]
            metrics: ClassVar[list[str]] = []

        def inflight(
            self,
            at_least: dict[Any, int],
            wait_s: float,
            columns: list[str] | None,
            row_filter: DimFilter | None = None,
            spans: bool = False,
        ) -> InflightRows:
            assert at_least == {0: 2} and wait_s == 0.5
            table = _table(range(3))
            if row_filter is not None:
                table = narrowed(table, row_filter)
            found = [(T0, T0 + 2, T0, T0 + HOUR)] if spans else []
            return InflightRows("seq1", {0: 3}, table if columns is None else table.select(columns), found)

    async def go() -> tuple[int, pa.Table, dict[str, Any], int, pa.Table, dict[str, Any], pa.Table]:
        app = peon.build_app(Runner())  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            ok = await client.post(
                "/druid/worker/v1/chat/t1/rows", json={"minOffsets": {"0": 2}, "waitMs": 500}
            )
            table = pa.ipc.open_stream(await ok.read()).read_all()
            bad = await client.post("/druid/worker/v1/chat/t1/rows", json={"waitMs": -1})
            none = await client.post(  # no column: the rows' count travels in the stream
                "/druid/worker/v1/chat/t1/rows", json={"minOffsets": {"0": 2}, "waitMs": 500, "columns": []}
            )
            counted = pa.ipc.open_stream(await none.read()).read_all()
            one = {"type": "selector", "dimension": "ID", "value": "1"}
            filtered = await client.post(
                "/druid/worker/v1/chat/t1/rows",
                json={"minOffsets": {"0": 2}, "waitMs": 500, "filter": one, "spans": True},
            )
            narrow = pa.ipc.open_stream(await filtered.read()).read_all()
            refused = await client.post(  # a `not` would narrow the rows where a leaf is relaxed
                "/druid/worker/v1/chat/t1/rows", json={"filter": {"type": "not", "field": one}}
            )
            assert refused.status == 400 and "filter" in (await refused.json())["error"]
            filtered_tag = json.loads(filtered.headers[wire.INFLIGHT_TAG_HEADER])
            assert filtered_tag["filtered"] is True and filtered_tag["spans"] == [[T0, T0 + 2, T0, T0 + HOUR]]
            return (
                ok.status,
                table,
                json.loads(ok.headers[wire.INFLIGHT_TAG_HEADER]),
                bad.status,
                counted,
                json.loads(none.headers[wire.INFLIGHT_TAG_HEADER]),
                narrow,
            )

    status, table, tag, bad, counted, counted_tag, narrow = asyncio.run(go())
    assert status == 200 and table.equals(_table(range(3)))
    assert counted.num_columns == 0 and counted.num_rows == 3 and counted_tag["numRows"] == 3
    assert narrow.column("id").to_pylist() == ["1"]
    assert tag == {
        "taskId": "t1",
        "dataSource": "ids",
        "sequenceName": "seq1",
        "startOffsets": {"0": 0},
        "endOffsets": {"0": 3},
        "numRows": 3,
        "filtered": False,
        "dimensions": ["id"],
        "metrics": [],
        "spans": [],
    }
    assert bad == 400


class SlowSupplier:
    """Records 0..end-1 of partition 0, ``step`` per poll, then the end of the log."""

    def __init__(self, end: int, step: int) -> None:
        self.end, self.step, self.next = end, step, 0

    def assign(self, _offsets: Any) -> None:
        pass

    def pause(self, _partitions: list[int]) -> None:
        pass

    def poll(self, _max: int, _timeout: float) -> PollResult:
        if self.next >= self.end:
            return PollResult(eof={0: self.end})
        out = [
            Record(0, o, json.dumps({"ts": T0 + o, "id": str(o)}).encode(), T0 + o)
            for o in range(self.next, min(self.end, self.next + self.step))
        ]
        self.next += len(out)
        time.sleep(0.002)
        return PollResult(records=out)

    def close(self) -> None:
        pass


def test_a_task_snapshot_is_never_torn(tmp_path: Path) -> None:
    """While the read loop adds batches (and persists), every snapshot holds exactly the records below
    the offsets it is tagged with; one asked for later offsets waits for them."""
    spec = {
        "type": "kafka",
        "spec": {
            "dataSchema": {
                "dataSource": "ids",
                "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["id"]},
                "granularitySpec": {"segmentGranularity": "hour", "rollup": False},
            },
            "ioConfig": {
                "topic": "ids",
                "inputFormat": {"type": "json"},
                "consumerProperties": {"bootstrap.servers": "localhost:1"},
            },
            "tuningConfig": {"type": "kafka", "maxRowsInMemory": 700},
        },
    }
    task = KafkaIndexTaskSpec.model_validate(
        {
            "id": "index_kafka_ids_test",
            "dataSource": "ids",
            "supervisorId": "ids",
            "groupId": 0,
            "sequenceName": "seq-ids",
            "topic": "ids",
            "startOffsets": {"0": 0},
            "endOffsets": {"0": 6000},
            "supervisorSpec": spec,
            "createdTime": "2024-01-01T00:00:00.000Z",
            "deepStorage": (tmp_path / "deep").as_uri(),
        }
    )
    with stub_overlord(answer=lambda _a: {"kind": "ok", "reason": "", "segmentIds": ["s"]}) as stub:
        runner = TaskRunner(
            task,
            tmp_path / "task",
            stub.url,
            supplier_factory=lambda _t: SlowSupplier(6000, 60),  # type: ignore[arg-type,return-value]
        )
        outcome: list[Outcome] = []
        reader = threading.Thread(target=lambda: outcome.append(runner.run()))
        reader.start()
        seen: list[int] = []
        try:
            first = runner.inflight({0: 3000}, 10.0)  # waits for the consumer to get there
            assert first.offsets[0] >= 3000
            while reader.is_alive() and len(seen) < 500:
                rows = runner.inflight({}, 1.0)
                n = rows.offsets[0]
                ids = sorted(int(i) for i in rows.table.column("id").to_pylist()) if rows.table else []
                assert ids == list(range(n)), f"torn: {len(ids)} rows at offset {n}"
                assert rows.sequence_name == "seq-ids"
                seen.append(n)
        finally:
            reader.join(30)
    assert outcome and outcome[0].status == "SUCCESS", outcome
    assert len(set(seen)) > 5 and seen == sorted(seen)  # many distinct points, never backwards
    assert runner.pipeline.persist_count > 2


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY (SELECT * FROM ids) TO '/tmp/inflight-escape.csv'",
        "ATTACH '/tmp/inflight-escape.db' AS x",
        "INSTALL httpfs",
    ],
)
def test_in_flight_rows_are_behind_the_same_sandbox(cluster: FakeCluster, query: str) -> None:
    from broker.errors import QueryError

    cluster.add_task(FakeTask("a", "seq1", 3))
    catalog = _catalog(cluster, FakeClock())
    assert _count(catalog)[:2] == (3, 3)  # a database with the task's rows registered

    async def go() -> None:
        broker = _BROKERS[id(catalog)]
        snapshot = await catalog.snapshot()
        await broker.engine.run(snapshot, translate(query, snapshot.datasources(), "UTC"))

    with pytest.raises(QueryError):
        asyncio.run(go())
    assert not Path("/tmp/inflight-escape.csv").exists()

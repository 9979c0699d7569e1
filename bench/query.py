"""Query latency of the Broker against DuckDB on the same Parquet files, and freshness (issue 15).

    .venv/bin/python bench/query.py [--rows 10000000] [--repetitions 30] [--only latency,freshness]

1. **latency**: ``--rows`` wikipedia-shaped rows (the dimensions and value pools of
   ``bench/wikigen.py``, rollup off) are built in this process as ``--chunk-rows`` runs, each written
   by the project's own segment writer (``middlemanager.ingest.segments.write_segment``, the code a
   task's ``finish`` runs) and published through the Overlord's publish transaction
   (``MetadataStore.publish_segments``, what ``segmentTransactionalInsert`` calls), one run per
   sequence with chained offsets, as a task group's publishes would be. The metadata store is
   written before the Overlord starts (the store is the Overlord's alone once it runs). Then an
   Overlord (SQLite) and a Broker process (``python -m broker``) start, the Broker learns the
   segments over the Overlord's HTTP API, and each query is timed ``--repetitions`` times
   (after ``--warmup``) through the Broker's HTTP API (SQL ``GROUP BY`` top 10 pages, SQL
   ``TIME_FLOOR`` by minute, native ``timeseries`` by minute) and, interleaved, on one DuckDB
   connection in this process reading the same files with the Broker's engine settings
   (threads, memory limit). Both answers are compared.
2. **freshness**: a supervisor whose ``topicPattern`` names the 2M-event topic of
   ``bench/ingest.py`` and a marker topic ingests the backlog at full speed on one task; while it
   reads, a marker record (``page = 'marker-<run>-<i>'``, time now) is produced every
   ``--marker-interval-s`` and ``SELECT COUNT(*) ... WHERE page = '<marker>'`` is polled on the
   Broker until it answers 1 (at most ``--visible-timeout-s``). Markers that are not visible in
   time are reported as such (no in-flight rows: nothing is visible before a publish); after the
   backlog the supervisor is suspended and every marker must be visible once published.

The table gives p50/p99 per query, ours and DuckDB's, and their ratio; the last line is
``RESULT groupby_ratio_p50=... timeseries_ratio_p50=... freshness_p99_s=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for _path in (str(REPO), str(REPO / "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import wikigen  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from ingest import PARTITIONS, Watcher, ensure_kafka, supervisor_spec, table  # noqa: E402

from broker.config import BrokerSettings  # noqa: E402
from middlemanager.ingest.schema import TIME, ColumnPlan  # noqa: E402
from middlemanager.ingest.segments import write_segment  # noqa: E402
from overlord.client import wait_for  # noqa: E402
from overlord.metadata.store import MetadataStore, SegmentToPublish  # noqa: E402
from supervisor.chronology import format_instant  # noqa: E402
from supervisor.spec import parse_supervisor_spec  # noqa: E402
from tests.harness.kafka import create_topic  # noqa: E402
from tests.harness.processes import Cluster  # noqa: E402
from tests.harness.services import free_port  # noqa: E402

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
STREAM = "bench-query-synthetic"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_note() -> str:
    """The machine's load when measuring (the benchmark shares it with other work)."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


# ----------------------------------------------------------------------------- published rows


def rows_plan(datasource: str) -> tuple[ColumnPlan, Any]:
    """The column plan of bench/ingest.py's rollup-off spec (the wikigen events)."""
    spec = parse_supervisor_spec(supervisor_spec(datasource, "unused", "unused", rollup=False))
    return ColumnPlan(spec.data_schema), spec


def synthetic_run(
    plan: ColumnPlan, rng: np.random.Generator, n: int, start_ms: int, span_ms: int
) -> pa.Table:
    """``n`` rows in the internal schema with times in [start_ms, start_ms + span_ms), sorted as a run
    must be (``__time``, the dimensions, then the metrics: rollup off)."""
    columns: dict[str, pa.Array] = {TIME: pa.array(start_ms + rng.integers(0, span_ms, n), pa.int64())}
    cards = {name: (card, prefix) for name, card, prefix in wikigen.DIMENSIONS}
    for dim in plan.dimensions:
        card, prefix = cards[dim.name]
        pool = pa.array([f"{prefix}{k}" for k in range(card)], pa.string())
        columns[dim.col] = pool.take(pa.array(rng.integers(0, card, n)))
    added = rng.integers(0, 3000, n)
    deleted = rng.integers(0, 300, n)
    fields = {"added": added, "deleted": deleted, "delta": added - deleted}
    for metric in plan.metrics:
        values = np.ones(n, np.int64) if metric.field is None else fields[metric.field]
        columns[metric.col] = pa.array(values, pa.int64())
    run = pa.Table.from_pydict(columns, schema=plan.internal_schema())
    keys = [TIME, *(d.col for d in plan.dimensions), *(m.col for m in plan.metrics)]
    return run.take(pc.sort_indices(run, [(k, "ascending") for k in keys]))


@dataclass
class Published:
    datasource: str
    rows: int
    segments: int
    files: list[str]
    start_ms: int
    end_ms: int
    seconds: float


def publish_rows(metadata_url: str, deep: Path, datasource: str, rows: int, chunk_rows: int) -> Published:
    """``rows`` rows in runs of ``chunk_rows``, each written by the segment writer and committed by
    the store's publish transaction as one sequence (offsets chained on one synthetic partition).
    Times run forward over two hours (hourly segments), 6 minutes per 500k rows at the default."""
    plan, spec = rows_plan(datasource)
    rng = np.random.default_rng(15)
    chunks = (rows + chunk_rows - 1) // chunk_rows
    base = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS
    span = 2 * HOUR_MS // max(1, chunks)
    store = MetadataStore(metadata_url)
    files: list[str] = []
    segments = 0
    t0 = time.perf_counter()
    try:
        for i in range(chunks):
            n = min(chunk_rows, rows - i * chunk_rows)
            start = base + i * span
            interval = (start // HOUR_MS * HOUR_MS, start // HOUR_MS * HOUR_MS + HOUR_MS)
            run = synthetic_run(plan, rng, n, start, min(span, interval[1] - start))
            out_dir = deep / datasource / f"{datasource}_{i}"
            out_dir.mkdir(parents=True, exist_ok=True)
            written = write_segment(
                [run],
                plan,
                rollup_enabled=False,
                start_ms=interval[0],
                end_ms=interval[1],
                out_dir=out_dir,
                max_rows_per_segment=spec.tuning_config.max_rows_per_segment,
                index_spec=spec.tuning_config.index_spec,
            )
            to_publish = [
                SegmentToPublish(
                    interval_start_ms=f.interval_start_ms,
                    interval_end_ms=f.interval_end_ms,
                    shard=f.shard,
                    num_rows=f.num_rows,
                    size_bytes=f.size_bytes,
                    path=f.path.absolute().as_uri(),
                    dimensions=list(f.dimensions),
                    metrics=list(f.metrics),
                )
                for f in written
            ]
            result = store.publish_segments(
                datasource,
                STREAM,
                f"{datasource}_{i}",
                {0: i * chunk_rows},
                {0: i * chunk_rows + n},
                to_publish,
            )
            if result.kind != "ok":
                raise RuntimeError(f"publish of run {i}: {result.kind} {result.reason}")
            files += [str(f.path.absolute()) for f in written]
            segments += len(written)
    finally:
        store.close()
    return Published(datasource, rows, segments, files, base, base + chunks * span, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class Case:
    label: str
    ours: Callable[[], list[tuple[Any, ...]]]
    duck: Callable[[], list[tuple[Any, ...]]]


@dataclass
class Timing:
    label: str
    ours: list[float] = field(default_factory=list)
    duck: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of sorted ``values`` (``inf`` entries allowed)."""
    return values[max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))]


def _ms_to_iso(value: Any) -> str:
    return format_instant(int(value.timestamp() * 1000)) if hasattr(value, "timestamp") else str(value)


def latency_cases(broker: Http, duck: duckdb.DuckDBPyConnection, pub: Published) -> list[Case]:
    ds = pub.datasource
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in pub.files)
    duck.execute(f"CREATE VIEW direct AS SELECT * FROM read_parquet([{files}])")
    top_sql = f'SELECT page, COUNT(*) AS edits FROM "{ds}" GROUP BY page ORDER BY edits DESC, page LIMIT 10'
    top_duck = "SELECT page, COUNT(*) AS edits FROM direct GROUP BY page ORDER BY edits DESC, page LIMIT 10"
    minute_sql = (
        f"SELECT TIME_FLOOR(__time, 'PT1M') AS t, COUNT(*) AS n, SUM(added) AS added "
        f'FROM "{ds}" GROUP BY 1 ORDER BY 1'
    )
    minute_duck = (
        "SELECT date_trunc('minute', epoch_ms(__time)) AS t, COUNT(*) AS n, SUM(added) AS added "
        "FROM direct GROUP BY 1 ORDER BY 1"
    )
    interval = f"{format_instant(pub.start_ms // HOUR_MS * HOUR_MS)}/{format_instant(pub.end_ms + HOUR_MS)}"
    native = {
        "queryType": "timeseries",
        "dataSource": ds,
        "granularity": "minute",
        "intervals": [interval],
        "aggregations": [
            {"type": "count", "name": "n"},
            {"type": "longSum", "name": "added", "fieldName": "added"},
        ],
    }

    def sql(query: str) -> Callable[[], list[tuple[Any, ...]]]:
        def call() -> list[tuple[Any, ...]]:
            rows = broker.call("/druid/v2/sql", {"query": query, "resultFormat": "array"})
            return [tuple(r) for r in rows]

        return call

    def direct(query: str, iso: bool = False) -> Callable[[], list[tuple[Any, ...]]]:
        def call() -> list[tuple[Any, ...]]:
            rows = duck.execute(query).fetchall()
            return [(_ms_to_iso(r[0]), *r[1:]) for r in rows] if iso else rows

        return call

    def timeseries() -> list[tuple[Any, ...]]:
        answer = broker.call("/druid/v2", native)
        return [(b["timestamp"], b["result"]["n"], b["result"]["added"]) for b in answer]

    return [
        Case("SQL GROUP BY page, top 10", sql(top_sql), direct(top_duck)),
        Case("SQL TIME_FLOOR by minute", sql(minute_sql), direct(minute_duck, iso=True)),
        Case("native timeseries by minute", timeseries, direct(minute_duck, iso=True)),
    ]


def measure(cases: list[Case], repetitions: int, warmup: int) -> list[Timing]:
    """Each case ``warmup + repetitions`` times, ours and DuckDB's interleaved; answers compared."""
    timings = [Timing(c.label) for c in cases]
    for rep in range(warmup + repetitions):
        for case, timing in zip(cases, timings, strict=True):
            t0 = time.perf_counter()
            ours = case.ours()
            t1 = time.perf_counter()
            theirs = case.duck()
            t2 = time.perf_counter()
            if rep == 0 and ours != theirs:
                raise RuntimeError(f"{case.label}: the Broker answered {ours[:3]}..., DuckDB {theirs[:3]}...")
            if rep >= warmup:
                timing.ours.append(t1 - t0)
                timing.duck.append(t2 - t1)
    return timings


# ----------------------------------------------------------------------------- freshness


@dataclass
class Freshness:
    produced: int = 0
    during_backlog: int = 0  # markers produced while the task still had backlog to read
    visible: list[float] = field(default_factory=list)  # produce -> visible (s), backlog markers
    visible_later: list[float] = field(default_factory=list)  # the same, markers after the backlog
    not_visible: int = 0  # backlog markers not counted before the publish (latency: infinite)
    doubled: int = 0  # a marker counted more than once: never allowed
    visible_after_publish: int = 0
    backlog_s: float = 0.0
    note: str = ""


def marker_event(page: str, now_ms: int) -> bytes:
    event: dict[str, object] = {wikigen.TIME_COLUMN: format_instant(now_ms)}
    for name, _, prefix in wikigen.DIMENSIONS:
        event[name] = f"{prefix}0"
    event["page"] = page
    event.update({"added": 1, "deleted": 0, "delta": 1})
    return orjson.dumps(event)


def marker_counts(broker: Http, ds: str, run: str) -> dict[str, int]:
    """Each visible marker's ``COUNT(*)`` on the Broker (nothing while the datasource is unknown)."""
    query = f"SELECT page, COUNT(*) AS n FROM \"{ds}\" WHERE page LIKE 'marker-{run}-%' GROUP BY page"
    status, body = broker.post("/druid/v2/sql", {"query": query, "resultFormat": "array"})
    if status != 200 or not isinstance(body, list):
        return {}
    return {str(page): int(n) for page, n in body}


def freshness(cluster: Cluster, broker: Http, bootstrap: str, args: argparse.Namespace) -> Freshness:
    """Markers produced every ``--marker-interval-s`` while the task reads its backlog; the Broker is
    polled every ``--poll-s`` and a marker is visible when the answer that counts it arrives."""
    topic = wikigen.ensure_topic(bootstrap, args.freshness_events, PARTITIONS, log=say)
    run = uuid.uuid4().hex[:8]
    marks = f"bench-query-marks-{run}"
    create_topic(bootstrap, marks, 1)
    ds = f"bench_fresh_{run}"
    spec = supervisor_spec(ds, topic, bootstrap, rollup=False)
    io = spec["spec"]["ioConfig"]
    del io["topic"]
    io["topicPattern"] = f"{re.escape(topic)}|{re.escape(marks)}"
    out = Freshness()
    api = cluster.api
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    mm_url = cluster.health_url("mm1").replace("/status/health", "")
    watcher = Watcher(mm_url, args.freshness_events).start()
    produced_at: dict[str, tuple[float, bool]] = {}  # page -> (when, during the backlog)
    seen: dict[str, float] = {}
    api.submit(spec)
    try:
        wait_for("the task reading", lambda: any(t.current for t in watcher.tasks.values()), 120, 0.05)
        reading_at = time.perf_counter()
        say(f"freshness: {ds} reading {topic} and {marks}")
        lock = threading.Lock()
        finished = threading.Event()

        def produce_markers() -> None:
            """One marker per interval while the backlog lasts (at least one), on its own thread:
            a slow answer of the Broker must not slow the markers down."""
            try:
                while out.produced < args.markers and not stop.is_set():
                    backlog = watcher.read_all_at is None
                    if not backlog and out.produced:
                        break
                    page = f"marker-{run}-{out.produced}"
                    with lock:
                        produced_at[page] = (time.perf_counter(), backlog)
                        out.produced += 1
                        out.during_backlog += int(backlog)
                    producer.produce(marks, marker_event(page, int(time.time() * 1000)))
                    producer.poll(0)
                    stop.wait(args.marker_interval_s)
            finally:
                finished.set()

        stop = threading.Event()
        thread = threading.Thread(target=produce_markers, name="markers", daemon=True)
        thread.start()
        deadline = time.perf_counter() + args.publish_timeout_s
        try:
            while time.perf_counter() < deadline:
                if watcher.read_all_at is None:
                    out.backlog_s = time.perf_counter() - reading_at
                counts = marker_counts(broker, ds, run)
                answered = time.perf_counter()
                with lock:
                    sent = dict(produced_at)
                for page, n in counts.items():
                    if page in sent and page not in seen:
                        seen[page] = answered - sent[page][0]
                    out.doubled += int(n > 1)
                last = max((at for at, _ in sent.values()), default=answered)
                if finished.is_set() and (len(seen) == len(sent) or answered - last > args.visible_timeout_s):
                    break
                time.sleep(args.poll_s)
        finally:
            stop.set()
            thread.join(10)
        for page, (_, in_backlog) in produced_at.items():
            if page in seen:
                (out.visible if in_backlog else out.visible_later).append(seen[page])
            elif in_backlog:
                out.not_visible += 1
        say(f"freshness: {len(seen)}/{out.produced} markers visible before publish")
        wait_for("every event read", lambda: watcher.read_all_at, args.publish_timeout_s, 0.1)
        api.suspend(ds)
        wait_for(
            "markers published",
            lambda: len(marker_counts(broker, ds, run)) == out.produced,
            args.publish_timeout_s,
            1.0,
        )
    except TimeoutError as e:
        out.note = f"({e})"
    finally:
        watcher.stop()
        producer.flush(10)
        final = marker_counts(broker, ds, run)
        out.visible_after_publish = sum(1 for n in final.values() if n == 1)
        out.doubled += sum(1 for n in final.values() if n > 1)
        with contextlib.suppress(Exception):
            api.terminate(ds)
    return out


class Http:
    """A keep-alive HTTP/1.1 connection to the Broker (as a client library's pool would hold)."""

    def __init__(self, port: int, timeout_s: float = 120.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        data = orjson.dumps(body)
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
            try:
                self._conn.request("POST", path, data, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                raw = resp.read()
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
                continue
            return resp.status, orjson.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def call(self, path: str, body: Any) -> Any:
        status, answer = self.post(path, body)
        if status != 200:
            raise RuntimeError(f"POST {path}: HTTP {status}: {answer}")
        return answer

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


# ----------------------------------------------------------------------------- main


def start_broker(cluster: Cluster, settings: BrokerSettings) -> Http:
    port = free_port()
    args = ["broker", "--overlord-url", cluster.url, "--port", str(port)]
    args += ["--query-threads", str(settings.query_threads)]
    args += ["--query-memory-limit", settings.query_memory_limit]
    cluster._start("broker", args, port)  # the harness's process start (stopped with the cluster)
    return Http(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--rows", type=int, default=10_000_000, help="published rows of the latency part")
    p.add_argument("--chunk-rows", type=int, default=500_000, help="rows per published run")
    p.add_argument("--repetitions", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=BrokerSettings().query_threads, help="DuckDB threads")
    p.add_argument("--freshness-events", type=int, default=2_000_000, help="the backlog topic's events")
    p.add_argument("--markers", type=int, default=1000, help="at most, while the backlog lasts")
    p.add_argument("--marker-interval-s", type=float, default=0.2)
    p.add_argument("--poll-s", type=float, default=0.02, help="pause between two marker queries")
    p.add_argument(
        "--visible-timeout-s", type=float, default=5.0, help="wait after the last marker for it to be counted"
    )
    p.add_argument("--publish-timeout-s", type=float, default=300.0)
    p.add_argument("--only", default="latency,freshness", help="comma-separated: latency,freshness")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    t_begin = time.monotonic()
    settings = BrokerSettings(query_threads=args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="bench-query-"))
    cluster = Cluster(workdir / "cluster", f"sqlite:///{workdir / 'metadata.db'}")
    say(f"work directory {workdir}; {load_note()}")
    timings: list[Timing] = []
    fresh: Freshness | None = None
    pub: Published | None = None
    try:
        cluster.migrate()
        if "latency" in only:
            pub = publish_rows(
                cluster.metadata_url, cluster.deep_storage, "bench_query", args.rows, args.chunk_rows
            )
            say(f"published {pub.rows:,} rows in {pub.segments} segments in {pub.seconds:.0f}s")
        cluster.start_overlord(worker_timeout_s=30)
        broker = start_broker(cluster, settings)
        if pub is not None:
            count = broker.call("/druid/v2/sql", {"query": 'SELECT COUNT(*) AS n FROM "bench_query"'})
            if count != [{"n": pub.rows}]:
                raise RuntimeError(f"the Broker counts {count}, {pub.rows} rows were published")
            duck = duckdb.connect(
                ":memory:",
                config={"threads": settings.query_threads, "memory_limit": settings.query_memory_limit},
            )
            say(f"latency: {args.repetitions} repetitions after {args.warmup}; {load_note()}")
            timings = measure(latency_cases(broker, duck, pub), args.repetitions, args.warmup)
            duck.close()
            say(f"latency done; {load_note()}")
        if "freshness" in only:
            bootstrap = ensure_kafka(args.bootstrap)
            cluster.start_middlemanager("mm1", capacity=2)
            fresh = freshness(cluster, broker, bootstrap, args)
            say(f"freshness done; {load_note()}")
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = [
        [
            "query",
            "rows",
            "ours p50 ms",
            "ours p99 ms",
            "DuckDB p50 ms",
            "DuckDB p99 ms",
            "p50 ratio",
            "p99 ratio",
        ]
    ]
    ratios: dict[str, float] = {}
    for t in timings:
        o50, o99 = percentile(sorted(t.ours), 0.5), percentile(sorted(t.ours), 0.99)
        d50, d99 = percentile(sorted(t.duck), 0.5), percentile(sorted(t.duck), 0.99)
        ratios[t.label] = o50 / d50
        ms = [f"{v * 1000:.1f}" for v in (o50, o99, d50, d99)]
        rows.append([t.label, f"{pub.rows:,}" if pub else "-", *ms, f"{o50 / d50:.2f}", f"{o99 / d99:.2f}"])
    fresh_p50 = fresh_p99 = None
    if fresh is not None and fresh.during_backlog:
        # a marker never counted before the publish has an infinite latency, not none
        latencies = sorted([*fresh.visible, *[math.inf] * fresh.not_visible])
        fresh_p50, fresh_p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        cells = [f"{v * 1000:.0f}" if math.isfinite(v) else "not visible" for v in (fresh_p50, fresh_p99)]
        label = "marker produce -> visible in COUNT(*), during the backlog"
        rows.append([label, f"{fresh.during_backlog} markers", *cells, "-", "-", "-", "-"])
    print()
    if len(rows) > 1:
        print(table(rows))
    print()
    if fresh is not None:
        later = sorted(fresh.visible_later)
        within = sum(1 for v in fresh.visible if v <= args.visible_timeout_s)
        print(
            f"freshness: backlog of {args.freshness_events:,} events read in {fresh.backlog_s:.1f}s; "
            f"{fresh.produced} markers produced, {fresh.during_backlog} while the task had backlog; of "
            f"those {len(fresh.visible)} counted before the publish ({within} within "
            f"{args.visible_timeout_s:.0f}s, {sum(1 for v in fresh.visible if v <= 1.0)} within 1s), "
            f"{fresh.not_visible} only after it; {len(later)} markers after the backlog counted"
            + (f" (p50 {percentile(later, 0.5) * 1000:.0f} ms)" if later else "")
            + f"; {fresh.visible_after_publish}/{fresh.produced} counted once after the publish; "
            f"{fresh.doubled} counted twice. {fresh.note}"
        )
        if not fresh.visible and not later:
            print("freshness: NO marker became visible before its segment was published (no in-flight rows)")
    print(
        f"{load_note()}; benchmark wall time {time.monotonic() - t_begin:.0f}s; DuckDB threads {args.threads}"
    )

    def cell(label: str) -> str:
        return f"{ratios[label]:.2f}" if label in ratios else "none"

    p99 = "none" if fresh_p99 is None else f"{fresh_p99:.3f}" if math.isfinite(fresh_p99) else "inf"
    print(
        f"RESULT groupby_ratio_p50={cell('SQL GROUP BY page, top 10')} "
        f"timeseries_ratio_p50={cell('SQL TIME_FLOOR by minute')} "
        f"native_timeseries_ratio_p50={cell('native timeseries by minute')} "
        f"freshness_p99_s={p99} markers_visible={len(fresh.visible) if fresh else 0}/"
        f"{fresh.during_backlog if fresh else 0}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

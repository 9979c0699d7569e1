"""In-flight rows end to end (issue 15.2): a query sees what running tasks have read, each record
once, before and after their publish, through replica kills and an Overlord restart."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from broker.api import RESPONSE_CONTEXT_HEADER
from overlord.client import wait_for
from tests.e2e.test_broker import TUTORIAL_SQL, _ties_aside
from tests.e2e.test_ingestion import WIKI_DATA, WIKI_SPEC, _wait_reading
from tests.harness.kafka import create_topic, produce, recreate_topic
from tests.harness.processes import Cluster, running_cluster, task_status
from tests.harness.services import free_port
from tests.harness.specs import event, id_spec
from transport.client import SyncClient, probe_health

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

COUNT_SQL = "SELECT COUNT(*) AS n FROM wikipedia"
# a WHERE the Broker pushes down to the task (in, like and a bound; the tutorial's own pushes a
# __time range): the task answers only the rows it keeps, the answer is the published one
FILTERED_SQL = (
    "SELECT channel, COUNT(*) AS n, SUM(added) AS added FROM wikipedia "
    "WHERE (channel IN ('#en.wikipedia', '#de.wikipedia') OR page LIKE 'Wikipedia:%') AND added > 100 "
    "GROUP BY channel ORDER BY channel"
)


def _sql(client: SyncClient, query: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and Druid's response context of one SQL query."""
    got = client.send("POST", "/druid/v2/sql", {"query": query})
    assert got.status == 200, got.body
    context = json.loads(got.headers.get(RESPONSE_CONTEXT_HEADER, "{}"))
    return got.body, context


def test_tutorial_sql_while_the_task_runs_and_after_publish(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Druid's tutorial spec (taskDuration PT10M) and data: the tutorial's query gives the tutorial's
    answer from the running task, and the same answer from the published segments."""
    if not kafka_bootstrap.endswith(":9092"):
        pytest.fail("the tutorial spec names localhost:9092; the test broker must listen there")
    with running_cluster(tmp_path / "cluster", f"sqlite:///{tmp_path / 'md.db'}", {"mm1": 2}) as cluster:
        # Druid's spec as it is but for its topic: the test bed's Kafka is shared with parallel runs
        # of the other tutorial tests, which recreate "wikipedia"
        topic = f"wikipedia-{uuid.uuid4().hex[:8]}"
        spec = json.loads(WIKI_SPEC.read_text())
        spec["spec"]["ioConfig"]["topic"] = topic
        recreate_topic(kafka_bootstrap, topic, 1, timeout=30)
        sup = cluster.api.submit(spec)
        _wait_reading(cluster, sup, 1)
        with gzip.open(WIKI_DATA, "rb") as f:
            lines = [line.rstrip(b"\n") for line in f if line.strip()]
        client = SyncClient(cluster.url, timeout_s=60)
        produce(kafka_bootstrap, topic, lines)
        produced_at = time.monotonic()
        wait_for("all rows visible", lambda: _sql(client, COUNT_SQL)[0] == [{"n": 39244}], 60, 0.2)
        visible_s = time.monotonic() - produced_at
        assert cluster.api.published_rows("wikipedia") == 0  # nothing published: the task's rows
        running, context = _sql(client, TUTORIAL_SQL)
        assert context == {}
        assert running[0] == {"page": "Wikipedia:Vandalismusmeldung", "Edits": 33}
        assert running[1] == {"page": "User:Cyde/List of candidates for speedy deletion/Subpage", "Edits": 28}
        filtered_running, context = _sql(client, FILTERED_SQL)
        assert context == {} and len(filtered_running) > 2

        cluster.api.suspend(sup)
        cluster.api.wait_published("wikipedia", 39244, 120)
        published, context = _sql(client, TUTORIAL_SQL)
        assert context == {}
        assert _ties_aside(published) == _ties_aside(running)
        assert _sql(client, FILTERED_SQL)[0] == filtered_running
        assert _sql(client, COUNT_SQL)[0] == [{"n": 39244}]
        print(f"tutorial: 39244 rows produced -> all in COUNT(*) from the running task in {visible_s:.2f} s")


ID_SQL = 'SELECT COUNT(*) AS n, COUNT(DISTINCT "id") AS ids FROM "inflight"'


class IdStream:
    """Unique ids produced in small batches from a thread; ``attempted`` counts every id handed to the
    producer (an upper bound of what any query may count), ``sent`` when each batch went out."""

    def __init__(self, bootstrap: str, topic: str, rate: int, seconds: float) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.batch = max(1, rate // 10)
        self.batches = int(seconds * 10)
        self.attempted = 0
        self.sent: list[tuple[int, float]] = []  # (ids so far, monotonic time) after each batch
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "enable.idempotence": True})
        try:
            for _ in range(self.batches):
                start = self.attempted
                self.attempted += self.batch
                now_ms = int(time.time() * 1000)
                sent_at = time.monotonic()
                for i in range(start, start + self.batch):
                    producer.produce(self.topic, event(f"id-{i}", now_ms), partition=i % 2)
                assert producer.flush(30) == 0, "records not delivered"
                self.sent.append((self.attempted, sent_at))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - sent_at)))
        except BaseException as e:  # reported by the test
            self.error = e


@contextmanager
def _broker_process(cluster: Cluster, poll_s: float) -> Iterator[SyncClient]:
    """A Broker of its own (it keeps answering while the Overlord restarts)."""
    port = free_port()
    log_path = cluster.workdir / "logs" / "broker.log"
    cmd = [sys.executable, "-m", "broker", "--overlord-url", cluster.url, "--port", str(port)]
    cmd += ["--segments-poll-s", str(poll_s)]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for("broker up", lambda: probe_health("127.0.0.1", port) == 0, 30, 0.2)
            yield SyncClient(f"http://127.0.0.1:{port}", timeout_s=20)
        finally:
            proc.terminate()
            proc.wait(10)


def _ids(broker: SyncClient, best: int) -> tuple[int, int, dict[str, Any]]:
    """COUNT(*), COUNT(DISTINCT id) and the response context (0, 0 while the datasource has no row)."""
    got = broker.send("POST", "/druid/v2/sql", {"query": ID_SQL})
    if got.status == 400 and best == 0 and "not found" in str(got.body.get("errorMessage")):
        return 0, 0, {}
    assert got.status == 200, got.body
    context = json.loads(got.headers.get(RESPONSE_CONTEXT_HEADER, "{}"))
    return int(got.body[0]["n"]), int(got.body[0]["ids"]), context


def _kill_one_reading_replica(cluster: Cluster, within_s: float = 16.0) -> str:
    """kill -9 of one replica that is reading (its group has another): its task id."""
    deadline = time.monotonic() + within_s
    procs = []
    while time.monotonic() < deadline:
        procs = cluster.all_task_procs(with_status=False)
        for t in procs:
            t.status = task_status(t, timeout=3.0)
        # a replica whose peer reads too, else (the groups are short) any reading task
        picky = time.monotonic() < deadline - within_s / 2
        for t in procs:
            peers = [p for p in procs if p.sequence == t.sequence and p.status == "READING"]
            if t.status == "READING" and (len(peers) == 2 or not picky):
                os.kill(t.pid, signal.SIGKILL)
                return f"{t.task_id} ({len(peers)} of its group reading)"
        time.sleep(0.2)
    return f"none of {[(t.task_id[-8:], t.sequence[-8:], t.status) for t in procs]}"


def test_exactly_once_visibility_through_a_replica_kill_and_an_overlord_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """replicas 2, taskDuration 5 s, unique ids for 20 s: COUNT(*) and COUNT(DISTINCT id) are equal in
    every answer, never above what was produced, never lower than an earlier complete answer; after
    suspend both equal the produced count. A replica is killed (-9) and the Overlord restarted meanwhile."""
    topic = f"inflight-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    with running_cluster(tmp_path / "cluster", f"sqlite:///{tmp_path / 'md.db'}", {"mm1": 6}) as cluster:
        spec = id_spec(
            "inflight", topic, kafka_bootstrap, replicas=2, taskDuration="PT5S", completionTimeout="PT60S"
        )
        sup = cluster.api.submit(spec)
        _wait_reading(cluster, sup, 1)
        with _broker_process(cluster, 0.2) as broker:
            stream = IdStream(kafka_bootstrap, topic, rate=200, seconds=20)
            faults: list[str] = []

            def inject() -> None:
                time.sleep(4)
                faults.append(f"kill -9 task {_kill_one_reading_replica(cluster)}")
                time.sleep(5)
                cluster.kill9("overlord")
                faults.append("overlord killed")
                time.sleep(1)
                cluster.restart("overlord")
                faults.append("overlord restarted")

            injector = threading.Thread(target=inject, daemon=True)
            stream.thread.start()
            injector.start()
            answers: list[tuple[float, int, int, bool]] = []  # (time, n, ids, partial)
            best = 0
            took: list[float] = []  # seconds per query
            deadline = time.monotonic() + 60
            while (stream.thread.is_alive() or injector.is_alive()) and time.monotonic() < deadline:
                asked = time.monotonic()
                n, ids, context = _ids(broker, best)
                took.append(time.monotonic() - asked)
                bound = stream.attempted  # read after the answer: every id it may count was produced
                partial = bool(context.get("uncoveredIntervals"))
                answers.append((time.monotonic(), n, ids, partial))
                assert n == ids, f"a record counted twice: {n} rows, {ids} ids"
                assert n <= bound, f"{n} rows counted, only {bound} produced"
                if not partial:
                    assert n >= best, f"count went back from {best} to {n} (answers {answers[-5:]})"
                    best = n
                time.sleep(0.1)
            assert stream.error is None, stream.error
            assert not stream.thread.is_alive() and not injector.is_alive(), "the loop ran out of time"
            produced = stream.attempted
            assert "none of" not in faults[0] and len(faults) == 3, faults

            cluster.api.suspend(sup)
            cluster.api.wait_published("inflight", produced, 90)
            final = wait_for("final answer", lambda: _ids(broker, 1), 20, 0.3)
            assert final == (produced, produced, {})

        complete = [a for a in answers if not a[3]]
        latencies = []
        for count, sent_at in stream.sent:
            seen = next((t for t, n, _, p in answers if n >= count and t >= sent_at), None)
            if seen is not None:
                latencies.append(seen - sent_at)
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"exactly-once visibility: {produced} ids, {len(answers)} answers ({len(answers) - len(complete)}"
            f" partial), faults {faults}; produce->visible p50 {p50:.2f} s, p99 {p99:.2f} s,"
            f" max {latencies[-1]:.2f} s over {len(latencies)} batches; a query took p50"
            f" {sorted(took)[len(took) // 2]:.3f} s, max {max(took):.3f} s"
        )
        assert len(complete) >= len(answers) * 0.8, "most answers must be complete"

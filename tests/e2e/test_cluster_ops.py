"""Operating the cluster, end to end: the topology of compose.yaml as processes (PostgreSQL,
Kafka, the migration, an Overlord, three MiddleManagers), a stream of uniquely identified
events produced the whole time, and

* a rolling restart: SIGTERM each MiddleManager in turn, then the Overlord; each exits 0 and
  is started again. A stopping MiddleManager hands its tasks back and their supervisor starts
  replacements on the other workers at once; a stopping Overlord leaves the tasks running
  and the next Overlord adopts them (they go on to publish);
* a lost worker: one MiddleManager is killed for good; the Overlord declares it lost after
  ``worker_timeout_s`` and its tasks move to the other workers;

and afterwards every produced event is in the published segments exactly once.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer

from overlord.client import http, wait_for
from tests.harness.kafka import create_topic
from tests.harness.processes import Cluster, running_cluster
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

PARTITIONS = 4
TASK_COUNT = 3
WORKERS = ("mm1", "mm2", "mm3")
WORKER_TIMEOUT_S = 6.0


class Stream:
    """Produces uniquely identified events from a background thread until stopped."""

    def __init__(self, bootstrap: str, topic: str, per_second: int = 300) -> None:
        self.topic = topic
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "acks": "all"}
        )
        self.delivered: set[str] = set()
        self.errors: list[str] = []
        self.produced = 0
        self._batch = max(1, per_second // 20)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-stream", daemon=True)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            key = msg.key()
            assert key is not None
            self.delivered.add(key.decode())

    def _run(self) -> None:
        while not self._stop.is_set():
            now = int(time.time() * 1000)
            for _ in range(self._batch):
                n = self.produced
                event_id = f"e-{n}"
                value = json.dumps({"ts": now, "id": event_id, "n": n}).encode()
                self.producer.produce(
                    self.topic,
                    value,
                    key=event_id.encode(),
                    partition=n % PARTITIONS,
                    on_delivery=self._on_delivery,
                )
                self.produced += 1
            self.producer.poll(0)
            self._stop.wait(0.05)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(10)
        assert self.producer.flush(60) == 0, "events left undelivered"
        return self.delivered


def _spec(datasource: str, topic: str, bootstrap: str) -> dict[str, Any]:
    return kafka_spec(
        datasource,
        topic,
        bootstrap,
        dimensions=["id", {"name": "n", "type": "long"}],
        taskCount=TASK_COUNT,
        taskDuration="PT10S",
        startDelay="PT1S",
    )


def _groups_reading(cluster: Cluster, sup: str) -> bool:
    """Every task group has a task that started reading."""
    active = cluster.api.status(sup)["activeTasks"]
    groups = {tuple(sorted(t["startingOffsets"])) for t in active if t.get("startTime")}
    return len(groups) == TASK_COUNT


def _reading_tasks(cluster: Cluster, sup: str) -> set[str]:
    """Active tasks that started reading (so some worker runs them)."""
    return {t["id"] for t in cluster.api.status(sup)["activeTasks"] if t.get("startTime")}


def _replaced(cluster: Cluster, sup: str, gone: set[str]) -> bool:
    """Every group reads again, none of them with one of the ``gone`` tasks."""
    return _groups_reading(cluster, sup) and not _reading_tasks(cluster, sup) & gone


def _task(cluster: Cluster, task_id: str) -> dict[str, Any]:
    code, body = http("GET", f"{cluster.url}/druid/indexer/v1/task/{task_id}/status", timeout=5)
    assert code == 200, (code, body)
    status: dict[str, Any] = body["status"]
    return status


def _ended(cluster: Cluster, task_ids: set[str]) -> dict[str, dict[str, Any]] | None:
    statuses = {t: _task(cluster, t) for t in task_ids}
    return statuses if all(s["statusCode"] != "RUNNING" for s in statuses.values()) else None


def _workers(cluster: Cluster) -> set[str]:
    code, body = http("GET", f"{cluster.url}/druid/indexer/v1/workers", timeout=5)
    assert code == 200
    return {str(w["worker"]["host"]) for w in body}


def _worker_name(cluster: Cluster, name: str) -> str:
    return cluster.health_url(name).split("//")[1].split("/")[0]


def _restart_middlemanager(cluster: Cluster, sup: str, name: str) -> None:
    tasks = set(wait_for(f"{name} runs a task", lambda: cluster.worker_tasks(name), 30, 0.2))
    started = time.monotonic()
    code = cluster.procs[name].stop(signal.SIGTERM, timeout_s=30)
    assert code == 0, f"{name} exited with {code} on SIGTERM"
    # it told the Overlord how its tasks ended before it went (handed back: FAILED "stopped
    # before publishing", or whatever the supervisor decided first, e.g. a checkpoint it missed)
    wait_for(f"{name}'s tasks ended", lambda: _ended(cluster, tasks), 5, 0.2)
    # the supervisor replaces them on the other workers at once
    wait_for("replacements reading", lambda: _replaced(cluster, sup, tasks), 20, 0.2)
    assert time.monotonic() - started < 25
    others = set().union(*(cluster.worker_tasks(n) for n in WORKERS if n != name))
    assert _reading_tasks(cluster, sup) <= others, "the groups read on the other workers"
    cluster.restart(name)


def _restart_overlord(cluster: Cluster, sup: str) -> None:
    code = cluster.procs["overlord"].stop(signal.SIGTERM, timeout_s=30)
    assert code == 0, f"overlord exited with {code} on SIGTERM"
    running = set().union(*(cluster.worker_tasks(n) for n in WORKERS))
    assert running, "tasks run on while the Overlord is away"
    time.sleep(2.0)
    cluster.restart("overlord")
    # the new Overlord adopts them: they go on and publish instead of being replaced (one that
    # had published just before the Overlord went may have ended meanwhile: SUCCESS as well)
    statuses = wait_for("adopted tasks published", lambda: _ended(cluster, running), 60, 0.5)
    failed = {t: s["errorMsg"] for t, s in statuses.items() if s["statusCode"] != "SUCCESS"}
    assert not failed, f"tasks not adopted: {failed}"
    wait_for("every group reading", lambda: _groups_reading(cluster, sup), 30, 0.2)


def _lose_a_worker(cluster: Cluster, sup: str) -> str:
    victim = max(WORKERS, key=lambda n: len(cluster.worker_tasks(n)))
    tasks = set(wait_for(f"{victim} runs a task", lambda: cluster.worker_tasks(victim), 30, 0.2))
    name = _worker_name(cluster, victim)
    assert name in _workers(cluster)
    proc = cluster.procs[victim]
    proc.send(signal.SIGKILL)  # its tasks die with it (they watch their parent)
    assert proc.popen is not None
    proc.popen.wait(10)
    killed = time.monotonic()
    wait_for(f"worker {name} lost", lambda: name not in _workers(cluster), WORKER_TIMEOUT_S + 10, 0.2)
    assert time.monotonic() - killed >= WORKER_TIMEOUT_S - 1.5, "declared lost only after the timeout"
    # ended: FAILED "worker lost", or killed earlier by their supervisor as unresponsive
    wait_for(f"{victim}'s tasks ended", lambda: _ended(cluster, tasks), 10, 0.2)
    wait_for("its tasks moved", lambda: _replaced(cluster, sup, tasks), 30, 0.2)
    others = set().union(*(cluster.worker_tasks(n) for n in WORKERS if n != victim))
    reading = _reading_tasks(cluster, sup)
    assert reading <= others and not reading & tasks
    return victim


def test_rolling_restart_and_a_lost_worker_lose_and_duplicate_nothing(
    tmp_path: Path, fresh_postgres_url: str, kafka_bootstrap: str
) -> None:
    workers = dict.fromkeys(WORKERS, 2)
    with running_cluster(
        tmp_path / "cluster", fresh_postgres_url, workers, worker_timeout_s=WORKER_TIMEOUT_S
    ) as cluster:
        topic = f"ops-{uuid.uuid4().hex[:10]}"
        datasource = f"ops_{uuid.uuid4().hex[:8]}"
        create_topic(kafka_bootstrap, topic, PARTITIONS)
        stream = Stream(kafka_bootstrap, topic)
        try:
            sup = cluster.api.submit(_spec(datasource, topic, kafka_bootstrap))
            wait_for("every group reading", lambda: _groups_reading(cluster, sup), 60, 0.2)
            # spread by free capacity: one task group on each worker
            counts = sorted(len(cluster.worker_tasks(n)) for n in WORKERS)
            assert counts == [1, 1, 1], counts
            stream.start()
            time.sleep(3)

            for name in WORKERS:
                _restart_middlemanager(cluster, sup, name)
            _restart_overlord(cluster, sup)
            victim = _lose_a_worker(cluster, sup)
            time.sleep(3)  # some more ingestion on the two workers left

            delivered = stream.stop()
            assert not stream.errors, stream.errors[:5]
            assert len(delivered) == stream.produced > 1000

            def caught_up() -> bool:
                st = cluster.api.status(sup)
                latest = sum((st["latestOffsets"] or {}).values())
                return bool(latest == len(delivered) and st["aggregateLag"] == 0)

            wait_for("caught up", caught_up, 90, 0.5)
            cluster.api.suspend(sup)
            cluster.api.wait_quiet(datasource, 90)

            ids = Counter(str(r["id"]) for r in read_segments(cluster.api.segments(datasource)))
            duplicated = {k: v for k, v in ids.items() if v > 1}
            assert not duplicated, f"{len(duplicated)} duplicated, e.g. {list(duplicated.items())[:5]}"
            missing = delivered - set(ids)
            assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
            assert set(ids) == delivered
            assert victim not in {
                p.name for p in cluster.procs.values() if p.popen and p.popen.poll() is None
            }
        finally:
            if not stream._stop.is_set():
                stream._stop.set()

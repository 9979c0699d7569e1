"""Fault-injection harness: exactly-once ingestion while things break.

It brings up its own Kafka broker and PostgreSQL server (``scripts/local-kafka`` and
``scripts/local-postgres`` on free ports and private state directories, so they can be restarted
without disturbing anyone), an Overlord and two MiddleManagers as OS processes, and produces a stream
of uniquely identified JSON events to a multi-partition topic: most through an idempotent producer,
some through a transactional producer that also aborts batches. A supervisor (rollup off, an ``id``
dimension, short ``taskDuration``) ingests it while faults are injected. Then the stream stops, the
supervisor catches up (the committed offsets reach the end of every partition) and hands off
(suspend), and the published Parquet segments are compared with what Kafka holds (read_committed):
every committed id exactly once, no aborted one.

Faults (``FAULTS``): kill -9 of a task while it reads and while it publishes (every replica of its
group, or one replica), kill -9 of a MiddleManager (its tasks die with it) and its restart, kill -9
of the Overlord and its restart, restart of PostgreSQL and of the Kafka broker, a task frozen with
SIGSTOP until the supervisor declares it unresponsive (then SIGCONT), a MiddleManager frozen past the
worker timeout (its tasks live on, stale, then thaw), a publish that outlives ``completionTimeout``
(the offsets row locked in PostgreSQL), and, all along, every N-th committed publish losing its
response (the Overlord's ``OVERLORD_FAULT_DROP_PUBLISH_RESPONSE_EVERY`` hook).

``tests/e2e/test_faults.py`` runs a short pass (each fault once); ``scripts/chaos --minutes N`` runs
random faults for N minutes and prints ``faults: N, committed: N, ingested: N, lost: 0, duplicated: 0``
as its last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from overlord.client import OverlordClient, http, wait_for
from overlord.fault_injection import DROP_MARKER, DROP_PUBLISH_RESPONSE_EVERY
from tests.harness.kafka import create_topic, latest_offsets, read_to_end
from tests.harness.processes import Cluster, TaskProc, frozen
from tests.harness.segments import read_segments
from tests.harness.services import own_kafka, own_postgres, pid_alive
from tests.harness.specs import event, kafka_spec

log = logging.getLogger("faults")

# Every fault kind; a run injects each at least once.
FAULTS = (
    "task_kill_reading",
    "task_kill_publishing",
    "replica_kill_reading",
    "replica_kill_publishing",
    "middlemanager_kill",
    "overlord_kill",
    "postgres_restart",
    "kafka_restart",
    "task_freeze",
    "middlemanager_freeze",
    "publish_outlives_completion_timeout",
    "publish_response_lost",
)
# What the supervisor logs when a publishing group outlives completionTimeout.
COMPLETION_TIMEOUT_MARKER = "completionTimeout elapsed"
# Injected by the Overlord itself (counted from its log), not by the scheduler.
PASSIVE_FAULTS = ("publish_response_lost",)
# Relative frequency in a long run: cheap faults often, slow ones now and then.
WEIGHTS = {
    "task_kill_reading": 6,
    "task_kill_publishing": 6,
    "replica_kill_reading": 6,
    "replica_kill_publishing": 6,
    "middlemanager_kill": 3,
    "overlord_kill": 3,
    "postgres_restart": 2,
    "kafka_restart": 1,
    "task_freeze": 2,
    "middlemanager_freeze": 1,
    "publish_outlives_completion_timeout": 1,
}


def dropped_publish_responses(cluster: Cluster) -> int:
    """How many publish responses the Overlord's fault hook dropped so far (counted from its log)."""
    return cluster.overlord_log().count(DROP_MARKER)


# ------------------------------------------------------------------------------------ the stream


def stream_event(eid: str, src: str, n: int) -> bytes:
    return event(eid, int(time.time() * 1000), src=src, value=n)


@dataclass
class Ledger:
    """What the producers know of each id."""

    acked: set[str] = field(default_factory=set)  # plain records the broker acknowledged
    failed: set[str] = field(default_factory=set)  # plain records whose delivery failed
    committed: set[str] = field(default_factory=set)  # records of committed transactions
    aborted: set[str] = field(default_factory=set)  # records of transactions aborted for sure
    uncertain: set[str] = field(default_factory=set)  # transactions whose outcome is unknown
    lock: threading.Lock = field(default_factory=threading.Lock)


class EventStream:
    """Produces uniquely identified events until stopped: plain (idempotent) and transactional
    (some transactions aborted on purpose). Survives broker restarts."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        rate: float,
        txn_share: float = 0.25,
        abort_share: float = 0.3,
        seed: int = 0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.txn_share = txn_share
        self.abort_share = abort_share
        self.ledger = Ledger()
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._threads = [
            threading.Thread(target=self._plain, name="plain-producer", daemon=True),
            threading.Thread(target=self._transactional, name="txn-producer", daemon=True),
        ]
        self.errors: list[str] = []

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(300)

    def _plain(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "linger.ms": 10,
                "message.timeout.ms": 600_000,
                "queue.buffering.max.messages": 1_000_000,
                "log_level": 2,
            }
        )
        ledger = self.ledger

        def delivered(err: KafkaError | None, msg: Any) -> None:
            eid = msg.key().decode()
            with ledger.lock:
                (ledger.failed if err is not None else ledger.acked).add(eid)

        n = 0
        per_tick = max(1, int(self.rate * (1 - self.txn_share) * 0.05))
        while not self._stop.is_set():
            for _ in range(per_tick):
                eid = f"p-{n}"
                while True:
                    try:
                        producer.produce(
                            self.topic,
                            stream_event(eid, "plain", n),
                            key=eid.encode(),
                            partition=n % self.partitions,
                            on_delivery=delivered,
                        )
                        break
                    except BufferError:
                        producer.poll(0.1)
                n += 1
            producer.poll(0)
            time.sleep(0.05)
        while producer.flush(10) > 0:
            log.info("waiting for %d plain records to be delivered", len(producer))

    def _new_txn_producer(self) -> Producer:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "transactional.id": f"faults-{self.topic}",  # a new instance fences the old one
                "transaction.timeout.ms": 120_000,
                "message.timeout.ms": 120_000,
                "linger.ms": 5,
                "log_level": 2,
            }
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                producer.init_transactions(30)
                return producer
            except KafkaException as e:
                if time.monotonic() > deadline:
                    raise
                log.info("init_transactions: %s; retrying", e)
                time.sleep(1)

    def _transactional(self) -> None:
        try:
            producer = self._new_txn_producer()
        except KafkaException as e:
            self.errors.append(f"transactional producer: {e}")
            return
        ledger = self.ledger
        n = 0
        batch_interval = 0.5
        per_txn = max(1, int(self.rate * self.txn_share * batch_interval))
        while not self._stop.is_set():
            abort = self._rng.random() < self.abort_share
            ids = [f"t-{n + i}" for i in range(per_txn)]
            base = n
            n += per_txn
            stage = "begin"
            try:
                producer.begin_transaction()
                stage = "produce"
                for i, eid in enumerate(ids):
                    producer.produce(
                        self.topic,
                        stream_event(eid, "txn", base + i),
                        key=eid.encode(),
                        partition=(base + i) % self.partitions,
                    )
                if producer.flush(60) > 0:
                    raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "flush timed out"))
                if abort:
                    stage = "abort"
                    producer.abort_transaction(60)
                    with ledger.lock:
                        ledger.aborted.update(ids)
                else:
                    stage = "commit"
                    producer.commit_transaction(60)
                    with ledger.lock:
                        ledger.committed.update(ids)
            except KafkaException as e:
                log.info("transaction of %d records failed at %s: %s", len(ids), stage, e)
                aborted = False
                if stage not in ("commit",):
                    with contextlib.suppress(KafkaException):
                        producer.abort_transaction(60)
                        aborted = True
                with ledger.lock:
                    (ledger.aborted if aborted else ledger.uncertain).update(ids)
                if not aborted:
                    with contextlib.suppress(Exception):
                        producer.flush(1)
                    try:
                        producer = self._new_txn_producer()
                    except KafkaException as e2:
                        self.errors.append(f"transactional producer: {e2}")
                        return
            time.sleep(batch_interval * self._rng.random())


def read_topic(bootstrap: str, topic: str, timeout_s: float = 120.0) -> Counter[str]:
    """Every id in the topic, read_committed, with its multiplicity."""
    ids: Counter[str] = Counter()

    def count(msg: Message) -> None:
        ids[json.loads(msg.value() or b"{}")["id"]] += 1

    read_to_end(bootstrap, topic, count, config={"isolation.level": "read_committed"}, timeout=timeout_s)
    return ids


# ------------------------------------------------------------------------------------ the run


@dataclass
class Summary:
    faults: int
    committed: int
    ingested: int
    lost: int
    duplicated: int
    aborted_ingested: int = 0
    unknown_ingested: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"faults: {self.faults}, committed: {self.committed}, ingested: {self.ingested}, "
            f"lost: {self.lost}, duplicated: {self.duplicated}"
        )

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.aborted_ingested == 0


@dataclass
class RunConfig:
    partitions: int = 4
    task_count: int = 2
    replicas: int = 2
    task_duration_s: int = 8
    completion_timeout_s: int = 20
    rate: float = 300.0
    drop_publish_response_every: int = 5
    worker_timeout_s: float = 5.0
    chat_timeout_s: float = 2.0
    seed: int = 0


class FaultRun:
    """One run: services, cluster, stream, supervisor; faults; verification."""

    def __init__(self, workdir: Path, config: RunConfig) -> None:
        self.workdir = workdir
        self.config = config
        self.rng = random.Random(config.seed)
        self.kafka = own_kafka(workdir)
        self.postgres = own_postgres()
        self.cluster: Cluster | None = None
        self.stream: EventStream | None = None
        self.topic = f"faults-{uuid.uuid4().hex[:8]}"
        self.datasource = f"faults_{uuid.uuid4().hex[:8]}"
        self.counts: Counter[str] = Counter()
        self.notes: list[str] = []
        self._frozen: set[int] = set()

    # -------------------------------------------------------------- lifecycle

    @property
    def api(self) -> OverlordClient:
        assert self.cluster is not None
        return self.cluster.api

    def start(self) -> None:
        cfg = self.config
        log.info("starting Kafka and PostgreSQL of our own")
        bootstrap = self.kafka.start()
        pg_url = self.postgres.start()
        self.cluster = Cluster(
            self.workdir / "cluster",
            pg_url,
            env={
                DROP_PUBLISH_RESPONSE_EVERY: str(cfg.drop_publish_response_every),
                "OVERLORD_TASK_CHAT_TIMEOUT_S": str(cfg.chat_timeout_s),
            },
            worker_timeout_s=cfg.worker_timeout_s,
            mm_capacity=10,
        )
        self.cluster.migrate()
        self.cluster.overlord_up()
        self.cluster.middlemanager_up("mm1")
        self.cluster.middlemanager_up("mm2")
        create_topic(bootstrap, self.topic, cfg.partitions)
        self.api.submit(
            kafka_spec(
                self.datasource,
                self.topic,
                bootstrap,
                dimensions=["id", "src"],
                metrics=[{"type": "count", "name": "count"}],
                tuning={"maxRowsInMemory": 20000},
                taskCount=cfg.task_count,
                replicas=cfg.replicas,
                taskDuration=f"PT{cfg.task_duration_s}S",
                startDelay="PT1S",
                completionTimeout=f"PT{cfg.completion_timeout_s}S",
            )
        )
        self.stream = EventStream(bootstrap, self.topic, cfg.partitions, cfg.rate, seed=cfg.seed)
        self.stream.start()
        wait_for("tasks reading", lambda: self._tasks_with("READING"), 90, 0.5)
        log.info("ingesting %s into %s", self.topic, self.datasource)

    def close(self) -> None:
        for pid in list(self._frozen):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        if self.stream is not None:
            self.stream._stop.set()
        if self.cluster is not None:
            self.cluster.stop()
        self.kafka.stop()
        self.postgres.discard()

    def logs(self) -> str:
        return self.cluster.logs() if self.cluster is not None else ""

    # -------------------------------------------------------------- helpers

    def _tasks_with(self, status: str) -> list[TaskProc]:
        assert self.cluster is not None
        return [t for t in self.cluster.all_task_procs() if t.status == status]

    def _find(self, status: str, timeout_s: float) -> TaskProc | None:
        assert self.cluster is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self._tasks_with(status)
            if found:
                return self.rng.choice(found)
            time.sleep(0.03)
        return None

    def _kill_tasks(self, victims: list[TaskProc]) -> None:
        for t in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(t.pid, signal.SIGKILL)
        log.info("killed %s", [(t.task_id[-8:], t.status) for t in victims])

    def _replicas_of(self, t: TaskProc) -> list[TaskProc]:
        assert self.cluster is not None
        return [x for x in self.cluster.all_task_procs(with_status=False) if x.sequence == t.sequence]

    def _task_state(self, task_id: str) -> tuple[str | None, str | None]:
        try:
            code, body = http("GET", f"{self.api.url}/druid/indexer/v1/task/{task_id}/status", timeout=5)
        except OSError:
            return None, None
        if code != 200 or not isinstance(body, dict) or not body.get("status"):
            return None, None
        return body["status"].get("statusCode"), body["status"].get("errorMsg")

    # -------------------------------------------------------------- faults

    def inject(self, kind: str) -> bool:
        """Inject one fault; False if its moment did not come (no task in the wanted state)."""
        log.info("fault: %s", kind)
        done = bool(getattr(self, f"_fault_{kind}")())
        if done:
            self.counts[kind] += 1
        else:
            log.info("fault %s: no opportunity", kind)
        return done

    def _fault_task_kill_reading(self) -> bool:
        t = self._find("READING", 20)
        if t is None:
            return False
        self._kill_tasks(self._replicas_of(t) or [t])
        return True

    def _fault_task_kill_publishing(self) -> bool:
        t = self._find("PUBLISHING", 3 * self.config.task_duration_s + 10)
        if t is None:
            return False
        self._kill_tasks(self._replicas_of(t) or [t])
        return True

    def _fault_replica_kill_reading(self) -> bool:
        t = self._find("READING", 20)
        if t is None:
            return False
        self._kill_tasks([t])
        return True

    def _fault_replica_kill_publishing(self) -> bool:
        t = self._find("PUBLISHING", 3 * self.config.task_duration_s + 10)
        if t is None:
            return False
        self._kill_tasks([t])
        return True

    def _fault_middlemanager_kill(self) -> bool:
        assert self.cluster is not None
        name = self.rng.choice(self.cluster.middlemanagers)
        orphans = self.cluster.task_procs(name)
        self.cluster.kill9(name)
        time.sleep(self.rng.uniform(0.5, 3.0))
        alive = [t for t in orphans if pid_alive(t.pid)]
        if alive:
            # the tasks must die with their MiddleManager (PR_SET_PDEATHSIG)
            self.notes.append(f"{len(alive)} task processes outlived their MiddleManager {name}")
            self._kill_tasks(alive)
        self.cluster.middlemanager_up(name)
        return True

    def _fault_overlord_kill(self) -> bool:
        assert self.cluster is not None
        self.cluster.kill9("overlord")
        time.sleep(self.rng.uniform(0.5, 3.0))
        self.cluster.overlord_up()
        return True

    def _fault_postgres_restart(self) -> bool:
        self.postgres.restart(down_s=self.rng.uniform(0.5, 3.0))
        return True

    def _fault_kafka_restart(self) -> bool:
        self.kafka.restart(down_s=self.rng.uniform(0.5, 2.0))
        return True

    def _fault_task_freeze(self) -> bool:
        t = self._find("READING", 20)
        if t is None:
            return False
        self._frozen.add(t.pid)
        try:
            with frozen(t.pid):
                wait_for(
                    f"task {t.task_id} declared unresponsive",
                    lambda: self._task_state(t.task_id)[0] not in (None, "RUNNING") or not pid_alive(t.pid),
                    90,
                    0.5,
                )
                state, error = self._task_state(t.task_id)
                log.info("frozen task %s: %s (%s)", t.task_id[-8:], state, error)
        finally:
            self._frozen.discard(t.pid)
        return True

    def _fault_middlemanager_freeze(self) -> bool:
        assert self.cluster is not None
        name = self.rng.choice(self.cluster.middlemanagers)
        pid = self.cluster.procs[name].pid
        self._frozen.add(pid)
        try:
            with frozen(pid):
                # past the worker timeout: the Overlord gives its tasks up; they live on, stale
                time.sleep(self.config.worker_timeout_s + 3)
        finally:
            self._frozen.discard(pid)
        return True

    def _fault_publish_outlives_completion_timeout(self) -> bool:
        """Hold the datasource's offsets row until a publishing group outlives completionTimeout."""
        assert self.cluster is not None
        before = self.cluster.overlord_log().count(COMPLETION_TIMEOUT_MARKER)
        engine = sa.create_engine(self.cluster.metadata_url)
        cfg = self.config
        hold = cfg.completion_timeout_s + 2 * cfg.task_duration_s + 15
        try:
            with engine.connect() as conn, conn.begin():
                conn.execute(
                    sa.text("SELECT version FROM datasource_metadata WHERE datasource = :ds FOR UPDATE"),
                    {"ds": self.datasource},
                )
                log.info("offsets row locked (at most %ds)", hold)
                with contextlib.suppress(TimeoutError):
                    wait_for(
                        "a publishing group past completionTimeout",
                        lambda: (
                            self.cluster is not None
                            and self.cluster.overlord_log().count(COMPLETION_TIMEOUT_MARKER) > before
                        ),
                        hold,
                        0.5,
                    )
        finally:
            engine.dispose()
        assert self.cluster is not None
        timed_out = self.cluster.overlord_log().count(COMPLETION_TIMEOUT_MARKER) > before
        if not timed_out:
            log.info("no publishing group timed out while the offsets row was locked")
        return timed_out

    def _fault_publish_response_lost(self) -> bool:
        return False  # passive: the Overlord drops responses by itself

    # -------------------------------------------------------------- the end

    def fault_count(self) -> Counter[str]:
        counts = Counter(self.counts)
        if self.cluster is not None:
            counts["publish_response_lost"] = dropped_publish_responses(self.cluster)
        return counts

    def _stored_offsets(self) -> dict[int, int]:
        assert self.cluster is not None
        engine = sa.create_engine(self.cluster.metadata_url)
        try:
            with engine.connect() as conn:
                raw = conn.execute(
                    sa.text("SELECT offsets FROM datasource_metadata WHERE datasource = :ds"),
                    {"ds": self.datasource},
                ).scalar_one_or_none()
        except sa.exc.SQLAlchemyError:
            return {}
        finally:
            engine.dispose()
        if raw is None:
            return {}
        data = json.loads(raw)
        parts = data.get("partitionOffsetMap", data) if isinstance(data, dict) else {}
        return {int(k): int(v) for k, v in parts.items()}

    def finish(self, catch_up_s: float) -> Summary:
        """Stop the stream, let the supervisor catch up and hand off, and compare."""
        assert self.cluster is not None and self.stream is not None
        self.stream.stop()
        bootstrap = self.kafka.address
        ends = latest_offsets(bootstrap, self.topic)
        log.info("stream stopped at %s; waiting for the committed offsets to get there", ends)

        def caught_up() -> bool:
            stored = self._stored_offsets()
            return all(stored.get(p, -1) >= o for p, o in ends.items())

        try:
            wait_for("committed offsets at the end of the stream", caught_up, catch_up_s, 1.0)
        except TimeoutError:
            self.notes.append(f"not caught up: stored {self._stored_offsets()} vs end {ends}")
        with contextlib.suppress(TimeoutError):
            wait_for("supervisor healthy", lambda: self.api.status(self.datasource).get("healthy"), 60, 1.0)
        status = self.api.status(self.datasource)
        if not status.get("healthy"):
            self.notes.append(f"supervisor unhealthy at the end: {status.get('detailedState')}")
        self.api.suspend(self.datasource)
        self.api.wait_quiet(self.datasource, 120)

        in_topic = read_topic(bootstrap, self.topic)
        rows = list(read_segments(self.api.segments(self.datasource)))
        ingested = Counter(str(r["id"]) for r in rows)
        ledger = self.stream.ledger
        lost = sum(max(0, n - ingested.get(i, 0)) for i, n in in_topic.items())
        duplicated = sum(max(0, n - in_topic.get(i, 0)) for i, n in ingested.items())
        aborted_ingested = len(ledger.aborted & set(ingested))
        unknown = len(set(ingested) - set(in_topic))
        notes = list(self.notes)
        notes.extend(self.stream.errors)
        # Kafka's side of the bargain, checked for the record
        missing_acked = (ledger.acked | ledger.committed) - set(in_topic)
        if missing_acked:
            notes.append(f"{len(missing_acked)} acknowledged records are not in the topic (Kafka)")
        if ledger.aborted & set(in_topic):
            notes.append(f"{len(ledger.aborted & set(in_topic))} aborted records readable in the topic")
        if any(n > 1 for n in in_topic.values()):
            notes.append("the topic itself holds duplicate ids")
        counts = self.fault_count()
        return Summary(
            faults=sum(counts.values()),
            committed=sum(in_topic.values()),
            ingested=len(rows),
            lost=lost,
            duplicated=duplicated,
            aborted_ingested=aborted_ingested,
            unknown_ingested=unknown,
            by_kind=dict(counts),
            notes=notes,
        )


@contextlib.contextmanager
def fault_run(workdir: Path, config: RunConfig) -> Iterator[FaultRun]:
    run = FaultRun(workdir, config)
    try:
        run.start()
        yield run
    except BaseException:
        log.error("fault run failed; logs:\n%s", run.logs())
        raise
    finally:
        run.close()


def inject_each_once(run: FaultRun, gap_s: float = 2.0, attempts: int = 3) -> None:
    """Every active fault kind once, in a random order, with a pause between."""
    kinds = [k for k in FAULTS if k not in PASSIVE_FAULTS]
    run.rng.shuffle(kinds)
    for kind in kinds:
        for _ in range(attempts):
            if run.inject(kind):
                break
        time.sleep(gap_s)


def inject_for(run: FaultRun, seconds: float, gap_s: tuple[float, float] = (1.0, 4.0)) -> None:
    """Each fault once, then random faults (weighted) until the time is up."""
    deadline = time.monotonic() + seconds
    kinds = [k for k in FAULTS if k not in PASSIVE_FAULTS]
    run.rng.shuffle(kinds)
    names = list(WEIGHTS)
    weights = [WEIGHTS[k] for k in names]
    while time.monotonic() < deadline:
        kind = kinds.pop() if kinds else run.rng.choices(names, weights)[0]
        if not run.inject(kind) and kind not in run.counts:
            kinds.insert(0, kind)  # try again later
        time.sleep(run.rng.uniform(*gap_s))


# ------------------------------------------------------------------------------------ scripts/chaos


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=10.0, help="how long to inject faults")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--task-count", type=int, default=2)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--task-duration-s", type=int, default=10)
    p.add_argument("--completion-timeout-s", type=int, default=25)
    p.add_argument("--rate", type=float, default=800.0, help="events per second")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="kept after the run when given")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    log.info("seed %d", seed)
    config = RunConfig(
        partitions=args.partitions,
        task_count=args.task_count,
        replicas=args.replicas,
        task_duration_s=args.task_duration_s,
        completion_timeout_s=args.completion_timeout_s,
        rate=args.rate,
        seed=seed,
    )
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with fault_run(workdir, config) as run:
            inject_for(run, args.minutes * 60)
            summary = run.finish(catch_up_s=300)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for kind in FAULTS:
        print(f"  {kind}: {summary.by_kind.get(kind, 0)}", file=sys.stderr)
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    if summary.aborted_ingested or summary.unknown_ingested:
        print(
            f"aborted ids ingested: {summary.aborted_ingested}, unknown ids ingested: "
            f"{summary.unknown_ingested}",
            file=sys.stderr,
        )
    print(summary.line(), flush=True)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())

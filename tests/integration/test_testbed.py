"""The test bed itself: a real Kafka broker and a real PostgreSQL, started by scripts/.

Besides checking the services work, these tests pin down the client behaviour the indexing tasks rely
on: transactional control records occupy offsets, a read_committed consumer skips them (and aborted
records), and the partition-EOF event / position / watermarks all report the offset *after* the
control record (the "next offset to read"), or the last stable offset (LSO) while a transaction is open.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from tests.harness.kafka import (
    consume_until_eof,
    create_topic,
    kafka_answers,
    transactional_producer,
    unique_name,
    wait_for_end_offset,
)
from tests.harness.services import LOCAL_KAFKA, LOCAL_POSTGRES, last_line, pid_alive, port_open, run_script

ReadIsolation = Literal["read_committed", "read_uncommitted"]


# ------------------------------------------------------------------------------------------ helpers


def make_consumer(bootstrap: str, isolation: ReadIsolation) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("testbed"),
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )


@pytest.fixture
def consumers() -> Iterator[list[Consumer]]:
    """Collects consumers to close after the test."""
    created: list[Consumer] = []
    yield created
    for consumer in created:
        consumer.close()


def make_tx_producer(bootstrap: str) -> Producer:
    return transactional_producer(bootstrap, unique_name("testbed-tx"), {"linger.ms": 5}, init_timeout_s=60)


def produce_checked(producer: Producer, topic: str, partition: int, values: list[str]) -> None:
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for value in values:
        producer.produce(
            topic, value=value.encode(), key=value.encode(), partition=partition, on_delivery=on_delivery
        )
    producer.flush(30)
    assert not errors, errors


def values_of(messages: list[Message], partition: int | None = None) -> list[str]:
    out = []
    for msg in messages:
        if partition is None or msg.partition() == partition:
            value = msg.value()
            assert value is not None
            out.append(value.decode())
    return out


def position(consumer: Consumer, topic: str, partition: int) -> int:
    [tp] = consumer.position([TopicPartition(topic, partition)])
    offset = tp.offset
    assert isinstance(offset, int)
    return offset


def watermarks(consumer: Consumer, topic: str, partition: int, *, cached: bool = False) -> tuple[int, int]:
    result = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=cached)
    assert result is not None
    low, high = result
    return int(low), int(high)


def poll_quietly(consumer: Consumer, seconds: float) -> list[Message]:
    """Polls for ``seconds`` and returns everything delivered (messages and events)."""
    got: list[Message] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None:
            got.append(msg)
    return got


# ------------------------------------------------------------------------------- Kafka transactions


@pytest.mark.kafka
def test_transactions_committed_and_aborted_batches(
    kafka_bootstrap: str, topic_name: str, consumers: list[Consumer]
) -> None:
    partitions = [0, 1, 2]
    n_committed, n_aborted = 4, 3
    create_topic(kafka_bootstrap, topic_name, len(partitions))
    before_ms = int(time.time() * 1000) - 60_000

    producer = make_tx_producer(kafka_bootstrap)
    committed = {p: [f"committed-{p}-{i}" for i in range(n_committed)] for p in partitions}
    aborted = {p: [f"aborted-{p}-{i}" for i in range(n_aborted)] for p in partitions}
    producer.begin_transaction()
    for p in partitions:
        produce_checked(producer, topic_name, p, committed[p])
    producer.commit_transaction(30)
    producer.begin_transaction()
    for p in partitions:
        produce_checked(producer, topic_name, p, aborted[p])
    producer.abort_transaction(30)

    # Each partition: n_committed records, a COMMIT marker, n_aborted records, an ABORT marker.
    expected_high = n_committed + 1 + n_aborted + 1
    rc = make_consumer(kafka_bootstrap, "read_committed")
    consumers.append(rc)
    # The markers are written after abort_transaction() returns: wait for the LSO to pass them.
    for p in partitions:
        wait_for_end_offset(rc, topic_name, p, expected_high)

    # read_committed from explicit offsets: exactly the committed records, in order, once.
    rc.assign([TopicPartition(topic_name, p, 0) for p in partitions])
    got = consume_until_eof(rc, partitions, timeout=60)
    for p in partitions:
        assert values_of(got.messages, p) == committed[p]
        assert [m.offset() for m in got.messages if m.partition() == p] == list(range(n_committed))

    for p in partitions:
        assert watermarks(rc, topic_name, p) == (0, expected_high)
        # The log ends with a control record: EOF and position are past it, at the high watermark.
        assert got.eof[p].offset() == expected_high
        assert position(rc, topic_name, p) == expected_high

    # read_uncommitted sees the aborted records too.
    ru = make_consumer(kafka_bootstrap, "read_uncommitted")
    consumers.append(ru)
    ru.assign([TopicPartition(topic_name, p, 0) for p in partitions])
    got_ru = consume_until_eof(ru, partitions, timeout=60)
    for p in partitions:
        assert values_of(got_ru.messages, p) == committed[p] + aborted[p]
        assert [m.offset() for m in got_ru.messages if m.partition() == p] == (
            list(range(n_committed)) + list(range(n_committed + 1, n_committed + 1 + n_aborted))
        )
        assert got_ru.eof[p].offset() == expected_high
        assert watermarks(ru, topic_name, p) == (0, expected_high)

    # offsets_for_times: before the batch -> the first offset; after everything -> -1 (no such record).
    found = rc.offsets_for_times([TopicPartition(topic_name, p, before_ms) for p in partitions], timeout=10)
    assert sorted((tp.partition, tp.offset) for tp in found) == [(p, 0) for p in partitions]
    future_ms = int(time.time() * 1000) + 3_600_000
    found = rc.offsets_for_times([TopicPartition(topic_name, p, future_ms) for p in partitions], timeout=10)
    assert sorted((tp.partition, tp.offset) for tp in found) == [(p, -1) for p in partitions]


@pytest.mark.kafka
def test_read_committed_eof_position_and_watermarks_around_control_records(
    kafka_bootstrap: str, topic_name: str, consumers: list[Consumer]
) -> None:
    """What a read_committed consumer reports at the end of a partition (observed with librdkafka):

    * log = 5 committed records (0..4) + COMMIT marker (5), high watermark 6:
      position after the last record = 5; then a _PARTITION_EOF event with offset() == 6;
      position() == 6; get_watermark_offsets(cached=False) == (0, 6).
    * a transaction then stays open with 3 records (6..8), high watermark 9, LSO 6:
      get_watermark_offsets(cached=False) under read_committed == (0, 6) (the LSO) while
      read_uncommitted reports (0, 9); the consumer already at the end gets nothing; a new read_committed
      consumer from 0 reads 0..4 and gets EOF at offset 6 (the LSO), position 6, and its cached=True
      watermarks say (0, 9) (the high watermark from the fetch responses, not the LSO).
    * after the commit (marker at 9, high watermark 10): records 6..8 arrive, then EOF at 10, position 10.
    """
    create_topic(kafka_bootstrap, topic_name, 1)
    producer = make_tx_producer(kafka_bootstrap)
    producer.begin_transaction()
    produce_checked(producer, topic_name, 0, [f"first-{i}" for i in range(5)])
    producer.commit_transaction(30)

    rc = make_consumer(kafka_bootstrap, "read_committed")
    consumers.append(rc)
    # commit_transaction() returns before the COMMIT marker is written; until it is, the LSO is 0.
    wait_for_end_offset(rc, topic_name, 0, 6)
    rc.assign([TopicPartition(topic_name, 0, 0)])
    seen: list[Message] = []
    eof: Message | None = None
    position_after_last_record = -1
    deadline = time.monotonic() + 60
    while eof is None:
        assert time.monotonic() < deadline, "no EOF within 60s"
        msg = rc.poll(1.0)
        if msg is None:
            continue
        err = msg.error()
        if err is None:
            seen.append(msg)
            position_after_last_record = position(rc, topic_name, 0)
        else:
            assert err.code() == KafkaError._PARTITION_EOF, err
            eof = msg
    assert [m.offset() for m in seen] == [0, 1, 2, 3, 4]
    assert position_after_last_record == 5  # the next offset to read is the marker's...
    assert eof.offset() == 6  # ...but EOF reports the offset past the COMMIT marker (= high watermark)
    assert position(rc, topic_name, 0) == 6
    assert watermarks(rc, topic_name, 0) == (0, 6)

    # A transaction stays open: 3 records at 6..8, high watermark 9, last stable offset 6.
    producer.begin_transaction()
    produce_checked(producer, topic_name, 0, [f"second-{i}" for i in range(3)])
    try:
        assert watermarks(rc, topic_name, 0) == (0, 6)  # read_committed asks for the LSO
        ru = make_consumer(kafka_bootstrap, "read_uncommitted")
        consumers.append(ru)
        assert watermarks(ru, topic_name, 0) == (0, 9)  # read_uncommitted gets the high watermark

        quiet = poll_quietly(rc, 2.0)
        assert [m for m in quiet if m.error() is None] == []
        assert all(m.offset() == 6 for m in quiet)  # at most a repeated EOF at the LSO
        assert position(rc, topic_name, 0) == 6

        fresh = make_consumer(kafka_bootstrap, "read_committed")
        consumers.append(fresh)
        fresh.assign([TopicPartition(topic_name, 0, 0)])
        got = consume_until_eof(fresh, [0], timeout=60)
        assert [m.offset() for m in got.messages] == [0, 1, 2, 3, 4]
        assert got.eof[0].offset() == 6  # EOF at the LSO: the open transaction's first offset
        assert position(fresh, topic_name, 0) == 6
        # Beware: the *cached* watermarks (from fetch responses) hold the high watermark, not the LSO.
        assert watermarks(fresh, topic_name, 0, cached=True) == (0, 9)
        assert watermarks(fresh, topic_name, 0) == (0, 6)
    finally:
        producer.commit_transaction(30)

    wait_for_end_offset(rc, topic_name, 0, 10)
    got = consume_until_eof(rc, [0], timeout=60)
    assert [m.offset() for m in got.messages] == [6, 7, 8]
    assert values_of(got.messages) == [f"second-{i}" for i in range(3)]
    assert got.eof[0].offset() == 10
    assert position(rc, topic_name, 0) == 10
    assert watermarks(rc, topic_name, 0) == (0, 10)


# --------------------------------------------------------------------------------------- databases


def _roundtrip(url: str) -> None:
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    table = sa.Table(
        f"testbed_{uuid.uuid4().hex[:12]}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert().values(id=1, name="segment", payload={"offsets": {"0": 42}}))
        with engine.connect() as conn:
            row = conn.execute(sa.select(table.c.name, table.c.payload).where(table.c.id == 1)).one()
        assert row.name == "segment"
        assert row.payload == {"offsets": {"0": 42}}
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_sqlalchemy_sqlite_roundtrip(sqlite_url: str) -> None:
    _roundtrip(sqlite_url)


@pytest.mark.postgres
def test_sqlalchemy_postgres_roundtrip(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql")
    _roundtrip(postgres_url)


@pytest.mark.postgres
def test_fresh_postgres_database(fresh_postgres_url: str) -> None:
    _roundtrip(fresh_postgres_url)


# ------------------------------------------- the scripts themselves (own ports: shared services untouched)

SCRIPT_KAFKA_PORT = 19392
SCRIPT_PG_PORT = 55499


@pytest.mark.testbed_scripts
@pytest.mark.kafka
def test_local_kafka_start_is_idempotent_and_stop_leaves_nothing(tmp_path: Path) -> None:
    ports = (SCRIPT_KAFKA_PORT, SCRIPT_KAFKA_PORT + 1)
    if any(port_open(p) for p in ports):
        pytest.fail(f"ports {ports} are busy: cannot test scripts/local-kafka there")
    state = tmp_path / "kafka"
    env = {
        "KAFKA_PORT": str(ports[0]),
        "KAFKA_CONTROLLER_PORT": str(ports[1]),
        "KAFKA_STATE_DIR": str(state),
    }
    address = f"127.0.0.1:{ports[0]}"
    pid = -1
    try:
        first = run_script(LOCAL_KAFKA, "start", env=env, timeout=900)
        assert last_line(first.stdout) == address
        pid = int((state / "kafka.pid").read_text())
        assert pid_alive(pid)
        assert kafka_answers(address)

        started = time.monotonic()
        second = run_script(LOCAL_KAFKA, "start", env=env, timeout=120)
        assert time.monotonic() - started < 15
        assert last_line(second.stdout) == address
        assert int((state / "kafka.pid").read_text()) == pid

        status = run_script(LOCAL_KAFKA, "status", env=env, check=False)
        assert status.returncode == 0 and status.stdout.startswith("running")
    finally:
        run_script(LOCAL_KAFKA, "stop", env=env, timeout=120)

    assert not pid_alive(pid)
    assert not any(port_open(p) for p in ports)
    assert not (state / "kafka.pid").exists()
    status = run_script(LOCAL_KAFKA, "status", env=env, check=False)
    assert status.returncode == 3 and status.stdout.strip() == "stopped"
    run_script(LOCAL_KAFKA, "stop", env=env, timeout=60)  # stopping again is harmless


@pytest.mark.testbed_scripts
@pytest.mark.postgres
def test_local_postgres_start_is_idempotent_and_stop_leaves_nothing() -> None:
    if port_open(SCRIPT_PG_PORT):
        pytest.fail(f"port {SCRIPT_PG_PORT} is busy: cannot test scripts/local-postgres there")
    # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
    state = Path(f"/tmp/kafka-pull-indexer-pg-test-{uuid.uuid4().hex[:12]}")
    env = {"PG_PORT": str(SCRIPT_PG_PORT), "PG_STATE_DIR": str(state), "PG_DB": "scripttest"}
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{SCRIPT_PG_PORT}/scripttest"
    pid = -1
    try:
        try:
            first = run_script(LOCAL_POSTGRES, "start", env=env, timeout=300)
            assert last_line(first.stdout) == url
            pid = int((state / "data" / "postmaster.pid").read_text().splitlines()[0])
            assert pid_alive(pid)
            _roundtrip(url)

            started = time.monotonic()
            second = run_script(LOCAL_POSTGRES, "start", env=env, timeout=120)
            assert time.monotonic() - started < 15
            assert last_line(second.stdout) == url
            assert int((state / "data" / "postmaster.pid").read_text().splitlines()[0]) == pid

            status = run_script(LOCAL_POSTGRES, "status", env=env, check=False)
            assert status.returncode == 0 and status.stdout.startswith("running")
        finally:
            run_script(LOCAL_POSTGRES, "stop", env=env, timeout=120)

        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(pid)
        assert not port_open(SCRIPT_PG_PORT)
        status = run_script(LOCAL_POSTGRES, "status", env=env, check=False)
        assert status.returncode == 3 and status.stdout.strip() == "stopped"
        run_script(LOCAL_POSTGRES, "stop", env=env, timeout=60)  # stopping again is harmless
    finally:
        shutil.rmtree(state, ignore_errors=True)

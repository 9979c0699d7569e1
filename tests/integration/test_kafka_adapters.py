"""The project's own Kafka adapters against the real broker: ``KafkaStreamAdmin`` (partitions, earliest
and latest offsets, the idle scan) and ``KafkaRecordSupplier`` (an exact offset range, seek, pause),
with plain records and with a transactional producer's committed and aborted records.

Offsets follow Kafka's log: a transaction's COMMIT/ABORT marker takes an offset of its own, a
``read_committed`` consumer skips the marker and the aborted records, and an end offset is the next
offset to read (the last stable offset while a transaction is open).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from confluent_kafka import Producer

from overlord.client import wait_for
from supervisor.errors import OffsetOutOfRange, StreamError
from supervisor.kafka.admin import KafkaStreamAdmin
from supervisor.kafka.supplier import KafkaRecordSupplier, PollResult
from supervisor.offsets import PartitionOffsets
from supervisor.records import RecordBatch
from tests.harness.kafka import create_topic, produce, transactional_producer, unique_name

T = TypeVar("T")


@pytest.fixture
def admin(kafka_bootstrap: str, topic_name: str) -> Iterator[KafkaStreamAdmin]:
    opened = KafkaStreamAdmin(topic_name, {"bootstrap.servers": kafka_bootstrap})
    yield opened
    opened.close()


@pytest.fixture
def supplier(kafka_bootstrap: str, topic_name: str) -> Iterator[KafkaRecordSupplier]:
    opened = KafkaRecordSupplier(topic_name, {"bootstrap.servers": kafka_bootstrap}, client_id="test")
    yield opened
    opened.close()


def values(prefix: str, n: int) -> list[bytes | None]:
    return [f"{prefix}-{i}".encode() for i in range(n)]


def in_transaction(
    producer: Producer, topic: str, partition: int, batch: list[bytes | None], commit: bool
) -> None:
    producer.begin_transaction()
    for value in batch:
        producer.produce(topic, value, partition=partition)
    assert producer.flush(30) == 0
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def answered(call: Callable[[], T], timeout_s: float = 30.0) -> T:
    """``call``'s answer, asked again while it raises a retriable ``StreamError`` (a new topic's
    partitions may answer NOT_LEADER_FOR_PARTITION for a moment after their leaders are known)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except StreamError as e:
            if not e.retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def latest(admin: KafkaStreamAdmin, partitions: list[int]) -> dict[int, int]:
    return dict(answered(lambda: admin.latest_offsets(partitions)))


def latest_settles(admin: KafkaStreamAdmin, expected: dict[int, int]) -> None:
    """Waits until the latest offsets reach ``expected`` (the broker writes transaction markers
    asynchronously: right after a commit the last stable offset may still stop before them)."""
    wait_for(f"latest offsets {expected}", lambda: latest(admin, sorted(expected)) == expected, 30, 0.1)


def read_range(supplier: KafkaRecordSupplier, partitions: set[int], timeout_s: float = 30) -> PollResult:
    """Polls until every partition of ``partitions`` reported its end; all records and those ends."""
    batches: list[RecordBatch] = []
    eof: dict[int, int] = {}
    wait_for(
        f"the end of partitions {sorted(partitions)}",
        lambda: _poll_into(supplier, batches, eof) >= partitions,
        timeout_s,
        0.0,
    )
    return PollResult(RecordBatch.concat(batches), eof)


def _poll_into(supplier: KafkaRecordSupplier, batches: list[RecordBatch], eof: dict[int, int]) -> set[int]:
    got = supplier.poll(500, 0.5)
    batches.append(got.records)
    eof.update(got.eof)
    return set(eof)


def read_two_partitions(
    supplier: KafkaRecordSupplier, bootstrap: str, counts: dict[int, int], start: dict[int, int]
) -> PollResult:
    """Makes the supplier's topic with two partitions, partition p holding ``counts[p]`` plain records
    ``p<p>-<offset>``, and reads both from ``start`` to their ends."""
    create_topic(bootstrap, supplier.topic, 2)
    for partition, n in counts.items():
        produce(bootstrap, supplier.topic, values(f"p{partition}", n), partition=partition)
    supplier.assign(start)
    return read_range(supplier, set(start))


def as_pairs(records: RecordBatch) -> list[tuple[int, int, bytes | None]]:
    return [(r.partition, r.offset, r.value) for r in records]


# --------------------------------------------------------------------------- KafkaStreamAdmin


def test_partitions_of_a_topic(admin: KafkaStreamAdmin, kafka_bootstrap: str, topic_name: str) -> None:
    create_topic(kafka_bootstrap, topic_name, 3)
    assert admin.partitions() == [0, 1, 2]


def test_partitions_of_a_missing_topic_is_a_stream_error_naming_it(admin: KafkaStreamAdmin) -> None:
    with pytest.raises(StreamError) as caught:
        admin.partitions()
    assert caught.value.code == "UNKNOWN_TOPIC_OR_PART"
    assert admin.topic in str(caught.value)


def test_latest_and_earliest_offsets_of_plain_records(
    admin: KafkaStreamAdmin, kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, 3)
    assert latest(admin, [0, 1, 2]) == {0: 0, 1: 0, 2: 0}
    produce(kafka_bootstrap, topic_name, values("a", 5), partition=0)
    produce(kafka_bootstrap, topic_name, values("b", 3), partition=1)
    assert latest(admin, [0, 1, 2]) == {0: 5, 1: 3, 2: 0}
    assert latest(admin, [1]) == {1: 3}
    assert dict(answered(lambda: admin.earliest_offsets([0, 1, 2]))) == {0: 0, 1: 0, 2: 0}


def test_latest_offset_is_the_last_stable_offset_and_counts_the_markers(
    admin: KafkaStreamAdmin, kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    produce(kafka_bootstrap, topic_name, values("plain", 2), partition=0)  # offsets 0, 1
    txn = transactional_producer(kafka_bootstrap, unique_name("adapters-tx"))
    txn.begin_transaction()
    for value in values("open", 3):  # offsets 2..4, not committed yet
        txn.produce(topic_name, value, partition=0)
    assert txn.flush(30) == 0
    # read_committed: the end stops where the open transaction starts
    assert latest(admin, [0]) == {0: 2}
    txn.commit_transaction(30)  # its marker at 5
    latest_settles(admin, {0: 6})
    in_transaction(txn, topic_name, 0, values("aborted", 2), commit=False)  # 6, 7 and the marker at 8
    latest_settles(admin, {0: 9})
    assert dict(answered(lambda: admin.earliest_offsets([0]))) == {0: 0}


def test_latest_offsets_of_a_missing_partition_is_a_stream_error(
    admin: KafkaStreamAdmin, kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    with pytest.raises(StreamError) as caught:
        admin.latest_offsets([7])
    assert f"{topic_name}/7" in str(caught.value)


def test_scan_for_records_past_markers_and_aborted_records(
    admin: KafkaStreamAdmin, kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, 4)
    txn = transactional_producer(kafka_bootstrap, unique_name("adapters-scan"))
    produce(kafka_bootstrap, topic_name, values("plain", 3), partition=0)  # p0: records at 0..2
    in_transaction(txn, topic_name, 1, values("committed", 2), commit=True)  # p1: 0, 1, marker 2
    in_transaction(txn, topic_name, 2, values("aborted", 3), commit=False)  # p2: 0..2 aborted, marker 3
    # p3: nothing at all
    latest_settles(admin, {0: 3, 1: 3, 2: 4, 3: 0})

    # from the start: p0 and p1 hold records, p2 holds only aborted ones and its marker
    with_records, ends = admin.scan_for_records(PartitionOffsets({0: 0, 1: 0, 2: 0, 3: 0}), timeout_s=20)
    assert with_records == {0, 1}
    assert dict(ends) == {2: 4, 3: 0}

    # past the committed records, only the commit marker is left on p1: no records, end after it
    with_records, ends = admin.scan_for_records(PartitionOffsets({0: 2, 1: 2}), timeout_s=20)
    assert with_records == {0}
    assert dict(ends) == {1: 3}

    # at the end of every partition: none holds records
    with_records, ends = admin.scan_for_records(PartitionOffsets({0: 3, 1: 3, 2: 4}), timeout_s=20)
    assert with_records == set()
    assert dict(ends) == {0: 3, 1: 3, 2: 4}
    assert admin.scan_for_records(PartitionOffsets(), timeout_s=1) == (set(), PartitionOffsets())


# --------------------------------------------------------------------------- KafkaRecordSupplier


def test_supplier_reads_an_exact_range_and_reports_the_end(
    supplier: KafkaRecordSupplier, kafka_bootstrap: str, topic_name: str
) -> None:
    got = read_two_partitions(supplier, kafka_bootstrap, {0: 6, 1: 4}, start={0: 2, 1: 0})
    assert sorted(as_pairs(got.records)) == [
        *((0, i, f"p0-{i}".encode()) for i in range(2, 6)),
        *((1, i, f"p1-{i}".encode()) for i in range(4)),
    ]
    assert got.eof == {0: 6, 1: 4}
    spans = got.partition_spans()
    assert {p: spans[p][:2] for p in spans} == {0: (2, 5), 1: (0, 3)}
    assert all(ts is not None for ts in got.records.timestamps)  # the producer's create time


def test_supplier_seek_reads_again_and_pause_stops_a_partition(
    supplier: KafkaRecordSupplier, kafka_bootstrap: str, topic_name: str
) -> None:
    first = read_two_partitions(supplier, kafka_bootstrap, {0: 5, 1: 5}, start={0: 0, 1: 0})
    assert len(first.records) == 10
    supplier.seek(0, 3)
    again = read_range(supplier, {0})
    assert as_pairs(again.records) == [(0, 3, b"p0-3"), (0, 4, b"p0-4")]
    assert again.eof == {0: 5}
    supplier.pause([1])
    produce(kafka_bootstrap, topic_name, values("late", 2), partition=1)
    produce(kafka_bootstrap, topic_name, values("late", 1), partition=0)
    after = read_range(supplier, {0})
    assert as_pairs(after.records) == [(0, 5, b"late-0")]  # nothing of the paused partition
    assert 1 not in after.eof


def test_supplier_skips_markers_and_aborted_records(
    supplier: KafkaRecordSupplier, kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    txn = transactional_producer(kafka_bootstrap, unique_name("adapters-read"))
    in_transaction(txn, topic_name, 0, values("c1", 2), commit=True)  # 0, 1, marker 2
    in_transaction(txn, topic_name, 0, values("ab", 2), commit=False)  # 3, 4, marker 5
    produce(kafka_bootstrap, topic_name, values("plain", 1), partition=0)  # 6
    in_transaction(txn, topic_name, 0, values("c2", 1), commit=True)  # 7, marker 8
    admin = KafkaStreamAdmin(topic_name, {"bootstrap.servers": kafka_bootstrap})
    try:
        latest_settles(admin, {0: 9})
    finally:
        admin.close()
    supplier.assign({0: 0})
    got = read_range(supplier, {0})
    assert as_pairs(got.records) == [(0, 0, b"c1-0"), (0, 1, b"c1-1"), (0, 6, b"plain-0"), (0, 7, b"c2-0")]
    assert got.eof == {0: 9}  # the next offset to read: past the last marker


def test_supplier_from_offsets_out_of_range_raises_offset_out_of_range(
    supplier: KafkaRecordSupplier, kafka_bootstrap: str, topic_name: str
) -> None:
    create_topic(kafka_bootstrap, topic_name, 1)
    produce(kafka_bootstrap, topic_name, values("x", 3), partition=0)
    supplier.assign({0: 50})
    caught: list[OffsetOutOfRange] = []

    def raised() -> bool:
        try:
            supplier.poll(100, 0.5)
        except OffsetOutOfRange as e:
            caught.append(e)
            return True
        return False

    wait_for("OffsetOutOfRange", raised, 30, 0.0)
    assert list(caught[0].partitions) == [0]
    assert topic_name in str(caught[0])


def test_supplier_on_a_missing_topic_reads_nothing_and_invents_no_end(
    supplier: KafkaRecordSupplier, topic_name: str
) -> None:
    """An unknown topic or partition is a transient error (the topic may be being created): the
    supplier keeps polling, returns no records and reports no end of a partition it cannot read."""
    supplier.assign({0: 0})
    results: list[Any] = [supplier.poll(100, 0.5) for _ in range(6)]
    assert all(len(r.records) == 0 and r.eof == {} for r in results)

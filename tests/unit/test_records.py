"""RecordBatch: the columns a poll fills, and the Records made from them on demand."""

from __future__ import annotations

import pytest

from supervisor.kafka.supplier import PollResult
from supervisor.records import Record, RecordBatch

RECORDS = [
    Record(0, 10, b'{"a":1}', 1_000),
    Record(0, 11, None, None),
    Record(2, 5, b"", 2_000),
    Record(1, 7, b'{"b":2}', 3_000),
]


def test_a_batch_gives_back_the_records_it_was_made_of() -> None:
    batch = RecordBatch.of(RECORDS)
    assert len(batch) == 4
    assert list(batch) == RECORDS
    assert [batch.record(i) for i in range(4)] == RECORDS
    assert batch.values == [b'{"a":1}', None, b"", b'{"b":2}']
    assert RecordBatch.of(batch) is batch


def test_slices_takes_and_concatenation_keep_the_record_order() -> None:
    batch = RecordBatch.of(RECORDS)
    assert list(batch.slice(1, 3)) == RECORDS[1:3]
    assert list(batch.slice(2)) == RECORDS[2:]
    assert batch.slice(0) is batch
    assert list(batch.take([3, 0])) == [RECORDS[3], RECORDS[0]]
    assert list(batch.take([])) == []
    joined = RecordBatch.concat([batch.slice(0, 1), batch.slice(1, 1), batch.slice(1)])
    assert list(joined) == RECORDS
    assert RecordBatch.concat([batch]) is batch


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        RecordBatch([0, 1], [1], [b"x", b"y"], [None, None])


def test_a_poll_result_made_from_records_holds_a_batch_and_its_spans() -> None:
    result = PollResult(records=RECORDS)  # type: ignore[arg-type]  # a list is accepted and converted
    assert isinstance(result.records, RecordBatch)
    assert list(result.records) == RECORDS
    # per partition: lowest offset, highest offset, Kafka timestamp of the last record that has one
    assert result.partition_spans() == {0: (10, 11, 1_000), 2: (5, 5, 2_000), 1: (7, 7, 3_000)}
    assert PollResult().partition_spans() == {}

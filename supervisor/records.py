"""Stream records as the ingest engine sees them, free of any Kafka client type."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

from supervisor.offsets import PartitionId

__all__ = ["Record", "RecordBatch"]


@dataclass(frozen=True, slots=True)
class Record:
    partition: PartitionId  # a partition number, or a StreamPartition (topicPattern tasks)
    offset: int
    value: bytes | None
    timestamp_ms: int | None = None


class RecordBatch:
    """Records as four parallel lists, in read order.

    A poll returns thousands of records; building one :class:`Record` object per message
    cost the read loop about a microsecond per record, a third of what reading it from
    Kafka costs. The ingest fast path only needs the values; a :class:`Record` is made
    when one is asked for (a parse error report, the reference parser, a dead letter).
    """

    __slots__ = ("offsets", "partitions", "timestamps", "values")

    def __init__(
        self,
        partitions: list[PartitionId] | None = None,
        offsets: list[int] | None = None,
        values: list[bytes | None] | None = None,
        timestamps: list[int | None] | None = None,
    ) -> None:
        self.partitions: list[PartitionId] = [] if partitions is None else partitions
        self.offsets: list[int] = [] if offsets is None else offsets
        self.values: list[bytes | None] = [] if values is None else values
        self.timestamps: list[int | None] = [] if timestamps is None else timestamps
        n = len(self.values)
        if not len(self.partitions) == len(self.offsets) == len(self.timestamps) == n:
            raise ValueError("the columns of a record batch must have the same length")

    @classmethod
    def of(cls, records: Iterable[Record]) -> RecordBatch:
        if isinstance(records, RecordBatch):
            return records
        listed = list(records)
        return cls(
            [r.partition for r in listed],
            [r.offset for r in listed],
            [r.value for r in listed],
            [r.timestamp_ms for r in listed],
        )

    @classmethod
    def concat(cls, batches: Sequence[RecordBatch]) -> RecordBatch:
        if len(batches) == 1:
            return batches[0]
        return cls(
            list(chain.from_iterable(b.partitions for b in batches)),
            list(chain.from_iterable(b.offsets for b in batches)),
            list(chain.from_iterable(b.values for b in batches)),
            list(chain.from_iterable(b.timestamps for b in batches)),
        )

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Record]:
        return map(Record, self.partitions, self.offsets, self.values, self.timestamps)

    def __repr__(self) -> str:
        return f"RecordBatch({len(self)} records)"

    def record(self, index: int) -> Record:
        return Record(self.partitions[index], self.offsets[index], self.values[index], self.timestamps[index])

    def slice(self, start: int, stop: int | None = None) -> RecordBatch:
        if start == 0 and (stop is None or stop >= len(self)):
            return self
        return RecordBatch(
            self.partitions[start:stop],
            self.offsets[start:stop],
            self.values[start:stop],
            self.timestamps[start:stop],
        )

    def take(self, indices: Sequence[int]) -> RecordBatch:
        partitions, offsets, values, timestamps = self.partitions, self.offsets, self.values, self.timestamps
        return RecordBatch(
            [partitions[i] for i in indices],
            [offsets[i] for i in indices],
            [values[i] for i in indices],
            [timestamps[i] for i in indices],
        )

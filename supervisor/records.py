"""Stream records as the ingest engine sees them, free of any Kafka client type."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

from supervisor.offsets import PartitionId

__all__ = ["Record", "RecordBatch", "RecordMetadata"]

# A record's headers, as confluent-kafka gives them: (name, value) pairs in order.
Headers = list[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Keys, headers and topics of a batch's records, parallel to its values.

    Read only when the input format needs them (``kafka``): the supplier fills them
    then, and leaves them out otherwise (they would cost the read loop for nothing).
    """

    keys: list[bytes | None]
    headers: list[Headers | None]
    topics: list[str]

    def take(self, indices: Sequence[int]) -> RecordMetadata:
        keys, headers, topics = self.keys, self.headers, self.topics
        return RecordMetadata(
            [keys[i] for i in indices], [headers[i] for i in indices], [topics[i] for i in indices]
        )

    def slice(self, start: int, stop: int | None) -> RecordMetadata:
        return RecordMetadata(self.keys[start:stop], self.headers[start:stop], self.topics[start:stop])


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

    __slots__ = ("metadata", "offsets", "partitions", "timestamps", "values")

    def __init__(
        self,
        partitions: list[PartitionId] | None = None,
        offsets: list[int] | None = None,
        values: list[bytes | None] | None = None,
        timestamps: list[int | None] | None = None,
        metadata: RecordMetadata | None = None,
    ) -> None:
        self.partitions: list[PartitionId] = [] if partitions is None else partitions
        self.offsets: list[int] = [] if offsets is None else offsets
        self.values: list[bytes | None] = [] if values is None else values
        self.timestamps: list[int | None] = [] if timestamps is None else timestamps
        self.metadata = metadata
        n = len(self.values)
        if not len(self.partitions) == len(self.offsets) == len(self.timestamps) == n:
            raise ValueError("the columns of a record batch must have the same length")
        if (
            metadata is not None
            and not len(metadata.keys) == len(metadata.headers) == len(metadata.topics) == n
        ):
            raise ValueError("the metadata of a record batch must have its length")

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
        metas = [b.metadata for b in batches]
        metadata = None
        if metas and all(m is not None for m in metas):
            metadata = RecordMetadata(
                list(chain.from_iterable(m.keys for m in metas if m is not None)),
                list(chain.from_iterable(m.headers for m in metas if m is not None)),
                list(chain.from_iterable(m.topics for m in metas if m is not None)),
            )
        return cls(
            list(chain.from_iterable(b.partitions for b in batches)),
            list(chain.from_iterable(b.offsets for b in batches)),
            list(chain.from_iterable(b.values for b in batches)),
            list(chain.from_iterable(b.timestamps for b in batches)),
            metadata,
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
            None if self.metadata is None else self.metadata.slice(start, stop),
        )

    def take(self, indices: Sequence[int]) -> RecordBatch:
        partitions, offsets, values, timestamps = self.partitions, self.offsets, self.values, self.timestamps
        return RecordBatch(
            [partitions[i] for i in indices],
            [offsets[i] for i in indices],
            [values[i] for i in indices],
            [timestamps[i] for i in indices],
            None if self.metadata is None else self.metadata.take(indices),
        )

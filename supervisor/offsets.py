"""Partition offsets as an immutable value.

A stored offset is always the *next offset to read* (exclusive end of what was
ingested), as in Druid's Kafka ``SeekableStreamEndSequenceNumbers``.

A partition is named by a :data:`PartitionId`: a plain ``int`` when the supervisor reads one
topic, a :class:`StreamPartition` (topic and partition) when it reads every topic matching
``ioConfig.topicPattern``. This is Druid's ``KafkaTopicPartition`` with its ``multiTopicPartition``
flag (extensions-core/kafka-indexing-service/.../data/input/kafka/KafkaTopicPartition.java): in
JSON a single-topic key is the partition number (``"0"``), a multi-topic key is
``"<topic>:<partition>"``, read back by the last ``:``. One supervisor never mixes the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

# a partition's JSON key: "<partition>" (one topic) or "<topic>:<partition>" (topicPattern)
PARTITION_KEY_PATTERN = r"^([A-Za-z0-9._-]+:)?[0-9]+$"


@dataclass(frozen=True, order=True, slots=True, repr=False)
class StreamPartition:
    """A partition of one of several topics (Druid's multi-topic ``KafkaTopicPartition``)."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}"

    def __repr__(self) -> str:
        # as in JSON: messages that show an offsets map read {'m-a:0': 10}
        return repr(str(self))


# int: the partition of the one topic; StreamPartition: a partition of a topicPattern's topic
PartitionId = int | StreamPartition


def partition_key(partition: PartitionId) -> str:
    """The JSON key of a partition, as Druid's ``KafkaTopicPartitionKeySerializer`` writes it."""
    return str(partition)


def parse_partition(key: object) -> PartitionId:
    """A partition from its JSON key (Druid's ``KafkaTopicPartition.fromString``: split at the last
    ``:``; no ``:`` means a single-topic partition). Raises ValueError for anything else."""
    if isinstance(key, StreamPartition):
        return key
    if isinstance(key, bool):
        raise ValueError(f"not a partition: {key!r}")
    if isinstance(key, int):
        return key
    if not isinstance(key, str):
        raise ValueError(f"not a partition: {key!r}")
    topic, sep, number = key.rpartition(":")
    if not number.strip().lstrip("-").isdigit():
        raise ValueError(f"not a partition: {key!r} (a partition number, or 'topic:partition')")
    if not sep:
        return int(number)
    if not topic:
        raise ValueError(f"not a partition: {key!r} (empty topic)")
    return StreamPartition(topic, int(number))


def partition_json(partition: PartitionId) -> int | str:
    """A partition as a JSON value in reports: its number, or ``"topic:partition"``."""
    return partition if isinstance(partition, int) else partition_key(partition)


def partition_number(partition: PartitionId) -> int:
    """The partition's number within its topic."""
    return partition.partition if isinstance(partition, StreamPartition) else partition


def topic_of(partition: PartitionId, single_topic: str) -> str:
    """The topic a partition belongs to: its own in multi-topic mode, else the supervisor's topic
    (Druid's ``KafkaTopicPartition.asTopicPartition(fallbackTopic)``)."""
    return partition.topic if isinstance(partition, StreamPartition) else single_topic


def sort_key(partition: PartitionId) -> tuple[str, int]:
    if isinstance(partition, StreamPartition):
        return (partition.topic, partition.partition)
    return ("", partition)


def sorted_partitions(partitions: Iterable[PartitionId]) -> list[PartitionId]:
    return sorted(partitions, key=sort_key)


class PartitionOffsets(Mapping[PartitionId, int]):
    """An immutable, hashable partition -> offset map."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[Any, int] | None = None) -> None:
        clean: dict[PartitionId, int] = {}
        for p, o in (items or {}).items():
            clean[parse_partition(p)] = int(o)
        self._items: dict[PartitionId, int] = {p: clean[p] for p in sorted_partitions(clean)}

    def __getitem__(self, partition: PartitionId) -> int:
        return self._items[partition]

    def __iter__(self) -> Iterator[PartitionId]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PartitionOffsets):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == {parse_partition(k): int(v) for k, v in other.items()}
        return NotImplemented

    def __repr__(self) -> str:
        return f"PartitionOffsets({self._items})"

    def plus(self, other: Mapping[PartitionId, int]) -> PartitionOffsets:
        """This map overwritten by ``other`` (union, ``other`` wins)."""
        merged = dict(self._items)
        merged.update({parse_partition(k): int(v) for k, v in other.items()})
        return PartitionOffsets(merged)

    def minus(self, partitions: Iterable[PartitionId]) -> PartitionOffsets:
        """This map without the given partitions."""
        drop = {parse_partition(p) for p in partitions}
        return PartitionOffsets({p: o for p, o in self._items.items() if p not in drop})

    def only(self, partitions: Iterable[PartitionId]) -> PartitionOffsets:
        keep = {parse_partition(p) for p in partitions}
        return PartitionOffsets({p: o for p, o in self._items.items() if p in keep})

    def matches(self, other: Mapping[PartitionId, int]) -> bool:
        """True when every partition present in both maps has the same offset."""
        return all(
            self._items[q] == int(o) for p, o in other.items() if (q := parse_partition(p)) in self._items
        )

    def max_with(self, other: Mapping[PartitionId, int]) -> PartitionOffsets:
        """Partition-wise maximum of two maps (union of partitions)."""
        merged = dict(self._items)
        for p, o in other.items():
            q = parse_partition(p)
            merged[q] = max(merged.get(q, int(o)), int(o))
        return PartitionOffsets(merged)

    def to_json(self) -> dict[str, int]:
        """JSON form with string keys, as Druid's ``partitionOffsetMap``."""
        return {partition_key(p): o for p, o in self._items.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PartitionOffsets:
        return cls({parse_partition(k): int(v) for k, v in (data or {}).items()})


def _validate_key(value: Any) -> PartitionId:
    try:
        return parse_partition(value)
    except ValueError as e:
        raise PydanticCustomError("partition", str(e)) from None


# A partition as a key of a pydantic model's offsets map (task specs, wire bodies): validated by
# :func:`parse_partition`, written as Druid writes it in JSON.
PartitionKey = Annotated[
    PartitionId,
    PlainValidator(_validate_key),
    PlainSerializer(partition_key, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": PARTITION_KEY_PATTERN}),
]

"""Partition offsets as an immutable value.

A stored offset is always the *next offset to read* (exclusive end of what was
ingested), as in Druid's Kafka ``SeekableStreamEndSequenceNumbers``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class PartitionOffsets(Mapping[int, int]):
    """An immutable, hashable partition -> offset map."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[int, int] | None = None) -> None:
        clean: dict[int, int] = {}
        for p, o in (items or {}).items():
            clean[int(p)] = int(o)
        self._items: dict[int, int] = dict(sorted(clean.items()))

    def __getitem__(self, partition: int) -> int:
        return self._items[partition]

    def __iter__(self) -> Iterator[int]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PartitionOffsets):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == {int(k): int(v) for k, v in other.items()}
        return NotImplemented

    def __repr__(self) -> str:
        return f"PartitionOffsets({self._items})"

    def plus(self, other: Mapping[int, int]) -> PartitionOffsets:
        """This map overwritten by ``other`` (union, ``other`` wins)."""
        merged = dict(self._items)
        merged.update({int(k): int(v) for k, v in other.items()})
        return PartitionOffsets(merged)

    def minus(self, partitions: Iterator[int] | set[int] | list[int]) -> PartitionOffsets:
        """This map without the given partitions."""
        drop = {int(p) for p in partitions}
        return PartitionOffsets({p: o for p, o in self._items.items() if p not in drop})

    def only(self, partitions: set[int] | list[int]) -> PartitionOffsets:
        keep = {int(p) for p in partitions}
        return PartitionOffsets({p: o for p, o in self._items.items() if p in keep})

    def matches(self, other: Mapping[int, int]) -> bool:
        """True when every partition present in both maps has the same offset."""
        return all(self._items[p] == int(o) for p, o in other.items() if int(p) in self._items)

    def max_with(self, other: Mapping[int, int]) -> PartitionOffsets:
        """Partition-wise maximum of two maps (union of partitions)."""
        merged = dict(self._items)
        for p, o in other.items():
            merged[int(p)] = max(merged.get(int(p), int(o)), int(o))
        return PartitionOffsets(merged)

    def to_json(self) -> dict[str, int]:
        """JSON form with string keys, as Druid's ``partitionOffsetMap``."""
        return {str(p): o for p, o in self._items.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PartitionOffsets:
        return cls({int(k): int(v) for k, v in (data or {}).items()})

"""Which task group reads which partition."""

from __future__ import annotations

from collections.abc import Iterable

from supervisor.offsets import PartitionId, StreamPartition, sorted_partitions


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, 32-bit overflow)."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return _int32(h)


def group_for(partition: PartitionId, task_count: int) -> int:
    """Druid's rule (KafkaSupervisor.getTaskGroupIdForPartition): a single-topic partition ``p``
    belongs to task group ``p % taskCount``; a multi-topic one to
    ``Math.abs(31 * topic.hashCode() + partition) % taskCount``, in Java's int arithmetic."""
    if isinstance(partition, StreamPartition):
        mixed = _int32(31 * java_string_hash(partition.topic) + partition.partition)
        # Math.abs(Integer.MIN_VALUE) stays negative in Java, and Java's % keeps the dividend's sign
        magnitude = mixed if mixed == -(1 << 31) else abs(mixed)
        rest = abs(magnitude) % task_count
        return -rest if magnitude < 0 else rest
    return partition % task_count


def assign(partitions: Iterable[PartitionId], task_count: int) -> dict[int, list[PartitionId]]:
    groups: dict[int, list[PartitionId]] = {}
    for p in sorted_partitions(partitions):
        groups.setdefault(group_for(p, task_count), []).append(p)
    return groups

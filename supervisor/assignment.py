"""Which task group reads which partition."""

from __future__ import annotations


def group_for(partition: int, task_count: int) -> int:
    """Druid's rule: partition ``p`` belongs to task group ``p % taskCount``."""
    return partition % task_count


def assign(partitions: list[int], task_count: int) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for p in sorted(partitions):
        groups.setdefault(group_for(p, task_count), []).append(p)
    return groups

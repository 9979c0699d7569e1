"""A task group: the replicas reading (or publishing) one set of partitions from
the same start offsets."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from supervisor.offsets import PartitionId, PartitionOffsets
from supervisor.ports import TaskLocation, TaskRunStatus


@dataclass
class TaskData:
    """What the supervisor knows of one task of a group."""

    task_id: str
    location: TaskLocation | None = None
    run_status: TaskRunStatus | None = None
    start_time: float | None = None  # wall clock, seconds, when the task began reading
    chat_failures: int = 0


@dataclass
class TaskGroup:
    group_id: int
    start_offsets: PartitionOffsets
    sequence_name: str
    min_message_time: int | None
    max_message_time: int | None
    tasks: dict[str, TaskData] = field(default_factory=dict)
    end_offsets: PartitionOffsets | None = None
    # when the group entered pending completion (monotonic seconds)
    completion_started: float | None = None
    handoff_early: bool = False

    @property
    def partitions(self) -> list[PartitionId]:
        return list(self.start_offsets)

    def reading_since(self) -> float | None:
        """When the earliest task of the group began reading (wall clock)."""
        starts = [t.start_time for t in self.tasks.values() if t.start_time is not None]
        return min(starts) if starts else None


def spec_fingerprint(spec_json: dict[str, Any]) -> str:
    """A short, stable hash of the parts of a spec that shape the data."""
    spec = spec_json.get("spec", spec_json)
    pattern = (spec.get("ioConfig") or {}).get("topicPattern")
    relevant = {
        "dataSchema": spec.get("dataSchema"),
        "tuningConfig": spec.get("tuningConfig"),
        "topic": (spec.get("ioConfig") or {}).get("topic"),
        **({"topicPattern": pattern} if pattern else {}),  # single-topic fingerprints stay as they were
        "inputFormat": (spec.get("ioConfig") or {}).get("inputFormat"),
    }
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Datasource characters kept in task ids and sequence names (which become directory names).
ID_DATASOURCE_CHARS = 64


def id_part(datasource: str, limit: int = ID_DATASOURCE_CHARS) -> str:
    """The datasource as it appears in task ids and sequence names: safe in a URL path and as a
    file name (other characters become ``_``), and short. Ids carry a hash besides, so two
    datasources that look alike here still get different ids."""
    return _UNSAFE.sub("_", datasource)[:limit]


def sequence_name(
    datasource: str, fingerprint: str, group_id: int, start: PartitionOffsets, nonce: str = ""
) -> str:
    """Identical for every replica of a group, and for a replacement of one.

    ``nonce`` tells apart groups that start from the same offsets at different times: after a
    reset (or a topic recreated) reading starts over from offsets an earlier group started from,
    and that group's committed sequence must not be taken for the new one's.
    """
    offsets = json.dumps(start.to_json(), sort_keys=True, separators=(",", ":")) + nonce
    digest = hashlib.sha256(offsets.encode()).hexdigest()[:12]
    return f"index_kafka_{id_part(datasource)}_{fingerprint}_{group_id}_{digest}"

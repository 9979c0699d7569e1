"""What the supervisor needs from the world, as protocols.

The Overlord implements these over its metadata store, task queue and HTTP
client; unit tests implement them with fakes. Keeping them here keeps the
kernel free of aiohttp and SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from supervisor.offsets import PartitionId, PartitionOffsets
from supervisor.task_spec import KafkaIndexTaskSpec


class TaskState(StrEnum):
    """Task status as Druid's task storage knows it."""

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"

    @property
    def is_complete(self) -> bool:
        return self is not TaskState.RUNNING


class RunnerState(StrEnum):
    PENDING = "PENDING"
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    NONE = "NONE"


class TaskRunStatus(StrEnum):
    """What a task itself says it is doing (its ``/status`` control path)."""

    NOT_STARTED = "NOT_STARTED"
    STARTING = "STARTING"
    READING = "READING"
    PAUSED = "PAUSED"
    PUBLISHING = "PUBLISHING"


@dataclass(frozen=True)
class TaskLocation:
    host: str
    port: int

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "tlsPort": -1}


@dataclass(frozen=True)
class TaskInfo:
    id: str
    spec: KafkaIndexTaskSpec
    state: TaskState
    runner_state: RunnerState
    location: TaskLocation | None
    error: str | None = None


@dataclass(frozen=True)
class TaskProgress:
    """One poll of a task: where it stands and what it counted."""

    status: TaskRunStatus
    start_time: float | None
    current_offsets: PartitionOffsets
    last_record_ms: dict[PartitionId, int]
    row_stats: dict[str, Any]
    # why the task asks for its group to be handed off now (None: it does not)
    handoff_requested: str | None = None


@dataclass(frozen=True)
class StoredOffsets:
    """A datasource's committed offsets: ``offsets[p]`` is the next offset to read.

    ``version`` counts the changes of the metadata row (its compare-and-swap guard); 0 where the
    source keeps none.
    """

    stream: str
    offsets: PartitionOffsets
    version: int = 0


class TaskQueuePort(Protocol):
    async def submit(self, spec: KafkaIndexTaskSpec) -> None: ...

    async def kill(self, task_id: str, reason: str) -> None: ...

    async def tasks_for(self, datasource: str) -> list[TaskInfo]:
        """Every RUNNING task of the datasource."""
        ...

    async def get(self, task_id: str) -> TaskInfo | None: ...


class TaskClientPort(Protocol):
    """The supervisor-to-task control paths (``/druid/worker/v1/chat/{id}/...``).

    Every call raises ``supervisor.errors.Unavailable`` when the task does not
    answer in time.
    """

    async def status(self, loc: TaskLocation, task_id: str) -> TaskRunStatus: ...

    async def start_time(self, loc: TaskLocation, task_id: str) -> float | None: ...

    async def progress(self, loc: TaskLocation, task_id: str) -> TaskProgress: ...

    async def pause(self, loc: TaskLocation, task_id: str) -> PartitionOffsets: ...

    async def resume(self, loc: TaskLocation, task_id: str) -> None: ...

    async def current_offsets(self, loc: TaskLocation, task_id: str) -> PartitionOffsets: ...

    async def end_offsets(self, loc: TaskLocation, task_id: str) -> PartitionOffsets | None: ...

    async def set_end_offsets(
        self, loc: TaskLocation, task_id: str, offsets: PartitionOffsets, finish: bool
    ) -> None: ...

    async def row_stats(self, loc: TaskLocation, task_id: str) -> dict[str, Any]: ...


class OffsetStorePort(Protocol):
    async def stored_offsets(self, datasource: str) -> StoredOffsets | None: ...

    async def reset_offsets(self, datasource: str) -> None: ...

    async def reset_partitions(self, datasource: str, stream: str, offsets: PartitionOffsets) -> None: ...


class StreamPort(Protocol):
    """Blocking calls; the supervisor runs them in a worker thread."""

    def partitions(self) -> list[PartitionId]:
        """Every partition of the topic, or of every topic matching the topicPattern."""
        ...

    def latest_offsets(self, partitions: list[PartitionId]) -> PartitionOffsets: ...

    def earliest_offsets(self, partitions: list[PartitionId]) -> PartitionOffsets: ...

    def scan_for_records(self, offsets: PartitionOffsets) -> tuple[set[PartitionId], PartitionOffsets]:
        """Read (read_committed) from ``offsets`` until each partition yields a record or
        reaches the end of its log. Returns the partitions that hold a committed record,
        and for the others the offset a reader stands at after the end of the log: past
        transaction markers and aborted records, which are not data."""
        ...

    def close(self) -> None: ...

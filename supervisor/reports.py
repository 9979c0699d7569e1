"""What a supervisor reports: lag, row stats and Druid's status payload.

Read from a :class:`LoopView` of the run loop's state (``Supervisor.view()``), never written back:
the run loop plans, this module only describes what it planned and what its tasks said.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supervisor.chronology import format_seconds
from supervisor.offsets import PartitionId, PartitionOffsets
from supervisor.ports import TaskProgress
from supervisor.spec import SupervisorSpec
from supervisor.state import StateManager
from supervisor.task_group import TaskData, TaskGroup

__all__ = ["LoopView", "Snapshot", "lag", "lag_millis", "row_totals", "stats", "status_payload"]

#: The row counters a task reports that count records read.
ROW_KINDS = ("processed", "processedWithError", "unparseable", "thrownAway")


@dataclass
class Snapshot:
    """Latest offsets of the stream, read at one moment (wall-clock seconds)."""

    offsets: PartitionOffsets
    at: float


@dataclass(frozen=True)
class LoopView:
    """The run loop's state as the reports read it (shared, not copied: read it at once)."""

    id: str
    spec: SupervisorSpec
    state: StateManager
    generation_time: float
    now: float
    partitions: list[PartitionId]
    reading: dict[int, TaskGroup]
    pending: dict[int, list[TaskGroup]]
    latest: Snapshot | None
    current: dict[str, PartitionOffsets]
    progress: dict[str, TaskProgress]

    @property
    def datasource(self) -> str:
        return self.spec.data_schema.data_source

    @property
    def topic(self) -> str:
        return self.spec.io_config.stream


def lag(view: LoopView) -> dict[PartitionId, int]:
    """Records behind per partition, from one snapshot of latest offsets; never negative."""
    if view.latest is None:
        return {}
    current: dict[PartitionId, int] = {}
    for group in view.reading.values():
        for tid in group.tasks:
            for p, o in view.current.get(tid, {}).items():
                current[p] = max(current.get(p, o), o)
        for p, o in group.start_offsets.items():
            current.setdefault(p, o)
    latest = view.latest.offsets
    return {p: max(0, latest[p] - o) for p, o in current.items() if p in latest}


def lag_millis(view: LoopView) -> dict[PartitionId, int]:
    """Time lag per partition: how old the newest record read is, where records wait;
    0 where nothing waits."""
    records_behind = lag(view)
    now_ms = int(view.now * 1000)
    newest: dict[PartitionId, int] = {}
    for prog in view.progress.values():
        for p, t in prog.last_record_ms.items():
            newest[p] = max(newest.get(p, t), t)
    out: dict[PartitionId, int] = {}
    for p, records in records_behind.items():
        if records <= 0:
            out[p] = 0
        elif p in newest:
            out[p] = max(0, now_ms - newest[p])
    return out


def stats(view: LoopView) -> dict[str, dict[str, Any]]:
    """Druid's ``/stats``: row stats per task group and task."""
    out: dict[str, dict[str, Any]] = {}
    for gid, group in view.reading.items():
        entry = out.setdefault(str(gid), {})
        for tid in group.tasks:
            prog = view.progress.get(tid)
            if prog is not None:
                entry[tid] = {"movingAverages": {}, "totals": {"buildSegments": prog.row_stats}}
    return out


def row_totals(view: LoopView) -> dict[str, int]:
    """Every row counter summed over the tasks that reported one."""
    totals: dict[str, int] = {}
    for prog in view.progress.values():
        for k, v in prog.row_stats.items():
            if isinstance(v, int):
                totals[k] = totals.get(k, 0) + v
    return totals


def rows_read(view: LoopView) -> int:
    """Records the tasks read, whatever became of them (:data:`ROW_KINDS`)."""
    return sum(int(prog.row_stats.get(k, 0)) for prog in view.progress.values() for k in ROW_KINDS)


def status_payload(view: LoopView) -> dict[str, Any]:
    """Druid's supervisor ``/status`` answer."""
    io = view.spec.io_config
    now = view.now
    records_behind = lag(view)
    lag_ms = lag_millis(view)

    def task_entry(group: TaskGroup, tid: str, td: TaskData, kind: str) -> dict[str, Any]:
        since = td.start_time
        remaining = (
            max(0.0, io.task_duration.total_seconds() - (now - since)) if since and kind == "ACTIVE" else None
        )
        return {
            "id": tid,
            "startingOffsets": group.start_offsets.to_json(),
            "startTime": format_seconds(since) if since else None,
            "remainingSeconds": int(remaining) if remaining is not None else None,
            "type": kind,
            "currentOffsets": (view.current.get(tid) or PartitionOffsets()).to_json(),
            "lag": (
                {str(p): records_behind[p] for p in group.partitions if p in records_behind}
                if kind == "ACTIVE"
                else None
            ),
        }

    active = [task_entry(g, tid, td, "ACTIVE") for g in view.reading.values() for tid, td in g.tasks.items()]
    publishing = [
        task_entry(g, tid, td, "PUBLISHING")
        for groups in view.pending.values()
        for g in groups
        for tid, td in g.tasks.items()
    ]
    payload: dict[str, Any] = {
        "dataSource": view.datasource,
        "stream": view.topic,
        "topic": view.topic,
        "partitions": len(view.partitions),
        "replicas": io.replicas,
        "durationSeconds": int(io.task_duration.total_seconds()),
        "activeTasks": active,
        "publishingTasks": publishing,
        "latestOffsets": view.latest.offsets.to_json() if view.latest else None,
        "minimumLag": {str(p): v for p, v in records_behind.items()},
        "aggregateLag": sum(records_behind.values()),
        "minimumLagMillis": {str(p): v for p, v in lag_ms.items()},
        "lagMillis": {str(p): v for p, v in lag_ms.items()},
        "aggregateLagMillis": max(lag_ms.values(), default=0),
        "offsetsLastUpdated": format_seconds(view.latest.at) if view.latest else None,
        "suspended": view.spec.suspended,
        "healthy": view.state.healthy,
        "state": view.state.basic.label,
        "detailedState": view.state.detailed.name,
        "recentErrors": [e.to_json() for e in view.state.recent_errors],
    }
    return {"id": view.id, "generationTime": format_seconds(view.generation_time), "payload": payload}

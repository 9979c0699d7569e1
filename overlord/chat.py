"""HTTP client for the task control paths (``/druid/worker/v1/chat/{taskId}/...``), typed by the contract."""

from __future__ import annotations

import functools
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from supervisor import protocol as wire
from supervisor.errors import IndexerError, Unavailable
from supervisor.offsets import PartitionOffsets
from supervisor.ports import TaskLocation, TaskProgress, TaskRunStatus
from transport.client import AsyncClient

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
_OFFSETS: TypeAdapter[wire.Offsets] = TypeAdapter(wire.Offsets)
_MAYBE_OFFSETS: TypeAdapter[wire.Offsets | None] = TypeAdapter(wire.Offsets | None)
_STATUS: TypeAdapter[TaskRunStatus] = TypeAdapter(TaskRunStatus)


@functools.cache
def _adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def _chat(loc: TaskLocation, task_id: str, path: str) -> str:
    return f"http://{loc.host}:{loc.port}/druid/worker/v1/chat/{task_id}/{path}"


class HttpTaskClient:
    """Implements the supervisor's ``TaskClientPort``.

    Every failure (no answer, an error status, an answer outside the contract) is
    ``supervisor.errors.Unavailable``: the supervisor counts it against the task.
    """

    def __init__(self, timeout_s: float, cluster_token: str = "") -> None:
        self._http = AsyncClient(token=cluster_token, timeout_s=timeout_s)

    async def close(self) -> None:
        await self._http.close()

    async def _call(
        self, method: str, loc: TaskLocation, task_id: str, path: str, body: Any = None, **params: str
    ) -> Any:
        try:
            return await self._http.call(method, _chat(loc, task_id, path), body, params=params or None)
        except Unavailable:
            raise
        except IndexerError as e:
            raise Unavailable(f"task [{task_id}] {method} {path}: {e}") from e

    async def _typed(
        self, adapter: TypeAdapter[Any], method: str, loc: TaskLocation, task_id: str, path: str
    ) -> Any:
        value = await self._call(method, loc, task_id, path)
        try:
            return adapter.validate_python(value)
        except ValidationError as e:
            raise Unavailable(f"task [{task_id}] {path}: answer outside the contract: {e}") from e

    async def _model(self, model: type[M], method: str, loc: TaskLocation, task_id: str, path: str) -> M:
        result: M = await self._typed(_adapter(model), method, loc, task_id, path)
        return result

    async def status(self, loc: TaskLocation, task_id: str) -> TaskRunStatus:
        result: TaskRunStatus = await self._typed(_STATUS, "GET", loc, task_id, "status")
        return result

    async def start_time(self, loc: TaskLocation, task_id: str) -> float | None:
        return (await self._model(wire.TaskStartTime, "GET", loc, task_id, "time/start")).epoch_seconds

    async def progress(self, loc: TaskLocation, task_id: str) -> TaskProgress:
        v = await self._model(wire.ProgressReport, "GET", loc, task_id, "progress")
        return TaskProgress(
            status=v.status,
            start_time=v.start_time,
            current_offsets=PartitionOffsets(dict(v.current_offsets)),
            last_record_ms=dict(v.last_record_timestamps),
            row_stats=v.row_stats.to_json(),
            handoff_requested=v.handoff_requested,
        )

    async def pause(self, loc: TaskLocation, task_id: str) -> PartitionOffsets:
        return PartitionOffsets(await self._typed(_OFFSETS, "POST", loc, task_id, "pause"))

    async def resume(self, loc: TaskLocation, task_id: str) -> None:
        await self._call("POST", loc, task_id, "resume")

    async def current_offsets(self, loc: TaskLocation, task_id: str) -> PartitionOffsets:
        return PartitionOffsets(await self._typed(_OFFSETS, "GET", loc, task_id, "offsets/current"))

    async def end_offsets(self, loc: TaskLocation, task_id: str) -> PartitionOffsets | None:
        value = await self._typed(_MAYBE_OFFSETS, "GET", loc, task_id, "offsets/end")
        return PartitionOffsets(value) if value else None

    async def set_end_offsets(
        self, loc: TaskLocation, task_id: str, offsets: PartitionOffsets, finish: bool
    ) -> None:
        await self._call(
            "POST", loc, task_id, "offsets/end", offsets.to_json(), finish="true" if finish else "false"
        )

    async def row_stats(self, loc: TaskLocation, task_id: str) -> dict[str, Any]:
        return (await self._model(wire.TaskRowStats, "GET", loc, task_id, "rowStats")).to_json()

    async def unparseable_events(self, loc: TaskLocation, task_id: str) -> wire.UnparseableEvents:
        return await self._model(wire.UnparseableEvents, "GET", loc, task_id, "unparseableEvents")

    async def live_report(self, loc: TaskLocation, task_id: str) -> wire.TaskReport:
        return await self._model(wire.TaskReport, "GET", loc, task_id, "liveReports")

    async def task_log(self, loc: TaskLocation, task_id: str) -> str:
        return str(await self._call("GET", loc, task_id, "log") or "")

    async def worker_task_log(self, worker: str, task_id: str) -> str:
        """A task's log as its MiddleManager (``host:port``) keeps it."""
        try:
            value = await self._http.call("GET", f"http://{worker}/druid/worker/v1/task/{task_id}/log")
        except IndexerError as e:
            raise Unavailable(f"task [{task_id}] log from worker [{worker}]: {e}") from e
        return str(value or "")

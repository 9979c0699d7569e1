"""The Overlord's REST API, on Druid's paths. Handlers stay thin.

Every handler declares (``@documented``) the models it reads and answers with; it validates its
body and query with those same models (``transport.server``), and ``overlord/openapi.py``
generates the API document from them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Annotated, Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from overlord import metrics
from overlord.chat import HttpTaskClient
from overlord.metadata.store import MetadataStore, SegmentToPublish, TaskRow
from overlord.supervisors import SupervisorManager
from overlord.task_queue import TaskQueue
from supervisor import protocol as wire
from supervisor import reports
from supervisor.errors import IndexerError, InvalidInput, NotFound
from supervisor.expressions.values import parse_iso
from supervisor.offsets import PartitionOffsets
from supervisor.ports import RunnerState, TaskLocation, TaskState
from supervisor.secrets import mask
from supervisor.supervisor import Supervisor
from transport.server import answer, documented, read_body, read_json, read_query

logger = logging.getLogger(__name__)

SUPERVISOR = "/druid/indexer/v1/supervisor"
INDEXER = "/druid/indexer/v1"
COORDINATOR = "/druid/coordinator/v1"

MANAGER: web.AppKey[SupervisorManager] = web.AppKey("manager", SupervisorManager)
QUEUE: web.AppKey[TaskQueue] = web.AppKey("queue", TaskQueue)
STORE: web.AppKey[MetadataStore] = web.AppKey("store", MetadataStore)
CHAT: web.AppKey[HttpTaskClient] = web.AppKey("chat", HttpTaskClient)

# Larger counts and offsets mean nothing, and overflow the database's integers.
MAX_INT_PARAM = 2**31 - 1


def _flag(value: Any) -> bool:
    """A query flag: present means on, unless it says ``false`` or ``0``."""
    return str(value).lower() not in ("false", "0")


Flag = Annotated[bool, BeforeValidator(_flag)]
Count = Annotated[int, Field(ge=0, le=MAX_INT_PARAM)]


class Query(BaseModel):
    """Base of query-parameter models: Druid's names, unknown parameters ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ListSupervisorsQuery(Query):
    full: Flag = Field(default=False, description="Each entry with its state and (masked) spec.")
    state: Flag = Field(default=False, description="Each entry with its state.")


class HistoryQuery(Query):
    count: Count | None = Field(default=None, description="Keep at most this many entries per supervisor.")


class PostSupervisorQuery(Query):
    skip_restart_if_unmodified: bool | None = Field(
        default=None,
        alias="skipRestartIfUnmodified",
        description="`true` (the default here): an unchanged spec restarts nothing; `false`: it restarts "
        "the supervisor as Druid does by default (its tasks publish and new ones start).",
    )


# Druid's OverlordResource.API_TASK_STATES, in its order (getTasks names them in its 400).
API_TASK_STATES = ("pending", "waiting", "running", "complete")
TaskStateName = Literal["pending", "waiting", "running", "complete"]


def _task_state(value: Any) -> Any:
    """Any case, as Druid's OverlordResource.getTasks (``StringUtils.toLowerCase(state)``)."""
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in API_TASK_STATES:
        raise PydanticCustomError(
            "task_state",
            "Invalid task state[{state}]. Must be one of [{states}].",
            {"state": str(value), "states": ", ".join(API_TASK_STATES)},
        )
    return value.lower()


def _created_interval(value: Any) -> Any:
    """Druid's interval parameter: ``start_end`` (or ``start/end``), ISO-8601 dates or times; kept as
    its bounds in epoch ms, end exclusive."""
    if value is None:
        return None
    start, sep, end = str(value).replace("_", "/").partition("/")
    try:
        lo, hi = parse_iso(start), parse_iso(end)
    except (OverflowError, ValueError):  # a number far outside any date (found by the API fuzzer)
        lo = hi = None
    if not sep or lo is None or hi is None or hi < lo:
        raise PydanticCustomError(
            "interval",
            "'{value}' is not an ISO-8601 interval (start_end, as 2023-06-27_2023-06-28)",
            {"value": str(value)},
        )
    return (lo, hi)


class ListTasksQuery(Query):
    state: Annotated[TaskStateName | None, BeforeValidator(_task_state)] = Field(
        default=None, description="Only tasks in this state (any case)."
    )
    datasource: str | None = Field(default=None, description="Only tasks of this datasource.")
    created_time_interval: Annotated[
        tuple[int, int] | None,
        BeforeValidator(_created_interval),
        WithJsonSchema({"type": "string", "pattern": "^[^_/]+[_/][^_/]+$"}),
    ] = Field(
        default=None,
        alias="createdTimeInterval",
        description="Only completed tasks created in this interval (`2023-06-27_2023-06-28`).",
    )
    type: str | None = Field(default=None, description="Only tasks of this type (`index_kafka`).")
    max: Count | None = Field(default=None, description="At most this many completed tasks.")


class LogQuery(Query):
    offset: Count | None = Field(default=None, description="Skip this many characters of the log.")


class SegmentsQuery(Query):
    full: Flag = Field(default=False, description="Whole DataSegment objects instead of their ids.")


# ---------------------------------------------------------------- supervisors


def _state_entry(sup: Supervisor, full: bool = False) -> wire.SupervisorStateEntry:
    return wire.SupervisorStateEntry(
        id=sup.id,
        state=sup.state.basic.label,
        detailed_state=sup.state.detailed.name,
        healthy=sup.state.healthy,
        suspended=sup.suspended,
        spec=mask(sup.spec.to_json()) if full else None,
    )


def _spec_answer(spec: dict[str, Any]) -> web.Response:
    return web.json_response(mask(spec))


@documented(
    "Create or update a supervisor",
    request=wire.SupervisorSpecBody,
    query=PostSupervisorQuery,
    response=wire.SupervisorCreated,
    errors=(413,),
    tags=("supervisor",),
)
async def post_supervisor(request: web.Request) -> web.Response:
    """Druid's Kafka supervisor spec, wrapped (`spec`) or in the legacy unwrapped form. A spec that
    changes nothing restarts no task unless `skipRestartIfUnmodified=false` (Druid restarts by
    default: SupervisorResource.specPost). The spec is validated as a whole: a
    400 names the first field that is wrong as a Druid path (`spec.ioConfig.taskCount: ...`).
    Unknown fields are accepted and listed in `ignoredFields`, Druid's fields with no effect here
    in `unhonouredFields`, a translated legacy `parser` in `translated`."""
    query = read_query(request, PostSupervisorQuery)
    restart = query.skip_restart_if_unmodified is False
    parsed = await request.app[MANAGER].create_or_update(await read_json(request), restart_unmodified=restart)
    notes = parsed.notes
    created = wire.SupervisorCreated(
        id=parsed.spec.id,
        ignored_fields=notes.ignored_fields,
        unhonoured_fields=notes.unhonoured_fields,
        translated=notes.translated,
    )
    # the note lists only when not empty (supervisor.spec_fields.SpecNotes)
    return web.json_response(created.model_dump(mode="json", by_alias=True, exclude_defaults=True))


@documented(
    "List supervisors",
    query=ListSupervisorsQuery,
    response=list[str] | list[wire.SupervisorStateEntry],
    tags=("supervisor",),
)
async def list_supervisors(request: web.Request) -> web.Response:
    """Supervisor ids; with `?state` or `?full`, one object per supervisor."""
    query = read_query(request, ListSupervisorsQuery)
    manager = request.app[MANAGER]
    if query.full or query.state:
        entries = [
            _state_entry(s, query.full).model_dump(mode="json", exclude_none=True) for s in manager.all()
        ]
        return web.json_response(entries)
    return web.json_response(manager.ids())


@documented("A supervisor's spec", response=wire.SupervisorSpecBody, errors=(404,), tags=("supervisor",))
async def get_supervisor(request: web.Request) -> web.Response:
    """The spec as stored (normalised, wrapped form, secrets masked); it can be posted back."""
    sup = request.app[MANAGER].get(request.match_info["id"])
    return _spec_answer(sup.spec.to_json())


@documented("A supervisor's status", response=wire.SupervisorStatus, errors=(404,), tags=("supervisor",))
async def supervisor_status(request: web.Request) -> web.Response:
    """Druid's status report: tasks, offsets, lag, state and recent errors."""
    sup = request.app[MANAGER].get(request.match_info["id"])
    return answer(wire.SupervisorStatus.model_validate(reports.status_payload(sup.view())))


@documented("A supervisor's health", response=wire.SupervisorHealth, errors=(404, 503), tags=("supervisor",))
async def supervisor_health(request: web.Request) -> web.Response:
    """200 when healthy, 503 when not (Druid's SupervisorResource.specGetHealth)."""
    spec_id = request.match_info["id"]
    sup = request.app[MANAGER].find(spec_id)
    if sup is None:
        raise NotFound(f"[{spec_id}] does not exist or health check not implemented")
    return answer(wire.SupervisorHealth(healthy=sup.state.healthy), status=200 if sup.state.healthy else 503)


@documented("Suspend a supervisor", response=wire.SupervisorSpecBody, errors=(400, 404), tags=("supervisor",))
async def suspend(request: web.Request) -> web.Response:
    """Its reading tasks publish what they read; no new task starts until it is resumed. A suspended
    one is a 400 `[id] is already suspended` (Druid's SupervisorResource.specSuspendOrResume)."""
    spec = await request.app[MANAGER].set_suspended(request.match_info["id"], True)
    return _spec_answer(spec.to_json())


@documented("Resume a supervisor", response=wire.SupervisorSpecBody, errors=(400, 404), tags=("supervisor",))
async def resume(request: web.Request) -> web.Response:
    """A running one is a 400 `[id] is already running` (Druid's SupervisorResource.specSuspendOrResume)."""
    spec = await request.app[MANAGER].set_suspended(request.match_info["id"], False)
    return _spec_answer(spec.to_json())


@documented("Suspend every supervisor", response=wire.SuccessStatus, tags=("supervisor",))
async def suspend_all(request: web.Request) -> web.Response:
    await request.app[MANAGER].set_all_suspended(True)
    return answer(wire.SuccessStatus())


@documented("Resume every supervisor", response=wire.SuccessStatus, tags=("supervisor",))
async def resume_all(request: web.Request) -> web.Response:
    await request.app[MANAGER].set_all_suspended(False)
    return answer(wire.SuccessStatus())


@documented("Terminate a supervisor", response=wire.SupervisorIdAnswer, errors=(404,), tags=("supervisor",))
async def terminate(request: web.Request) -> web.Response:
    """Its tasks stop (reading ones publish first), and it leaves the list; its history stays."""
    spec_id = request.match_info["id"]
    await request.app[MANAGER].terminate(spec_id)
    return answer(wire.SupervisorIdAnswer(id=spec_id))


@documented("Terminate every supervisor", response=wire.SuccessStatus, tags=("supervisor",))
async def terminate_all(request: web.Request) -> web.Response:
    await request.app[MANAGER].terminate_all()
    return answer(wire.SuccessStatus())


@documented("Reset a supervisor", response=wire.SupervisorIdAnswer, errors=(404,), tags=("supervisor",))
async def reset(request: web.Request) -> web.Response:
    """Forget the stored offsets; tasks start over from `useEarliestOffset`'s end of the stream."""
    spec_id = request.match_info["id"]
    request.app[MANAGER].reset(spec_id)
    return answer(wire.SupervisorIdAnswer(id=spec_id))


@documented(
    "Hand off task groups early",
    request=wire.HandoffRequest,
    response=wire.Empty,
    errors=(400, 404),
    tags=("supervisor",),
)
async def handoff(request: web.Request) -> web.Response:
    """The reading tasks of the named groups end now (as if their `taskDuration` were over); ids of
    groups not reading are ignored. As Druid's SupervisorResource.handoffTaskGroups: 200 with an
    empty body, 400 for an empty list (checked before the id), 404 `Supervisor was not found [id]`."""
    spec_id = request.match_info["id"]
    body = await read_body(request, wire.HandoffRequest, "handoff")
    if not body.task_group_ids:
        raise InvalidInput("List of task groups to handoff can't be empty")
    sup = request.app[MANAGER].find(spec_id)
    if sup is None:
        raise NotFound(f"Supervisor was not found [{spec_id}]")
    sup.request_handoff(list(body.task_group_ids))
    return web.Response(status=200)


@documented(
    "Reset some partitions' offsets",
    request=wire.ResetOffsetsRequest,
    response=wire.SupervisorIdAnswer,
    errors=(400, 404),
    tags=("supervisor",),
)
async def reset_offsets(request: web.Request) -> web.Response:
    """Druid's resetOffsets: merge the given offsets into the stored ones; only the task groups
    reading those partitions restart. A stream other than the supervisor's is a 400 worded as
    Druid's SeekableStreamSupervisor.resetOffsets."""
    sup = request.app[MANAGER].get(request.match_info["id"])
    body = await read_body(request, wire.ResetOffsetsRequest, "resetOffsets")
    if body.partitions.stream != sup.topic:
        raise InvalidInput(
            f"Stream[{body.partitions.stream}] doesn't exist in the supervisor[{sup.id}]. "
            f"Supervisor is consuming stream[{sup.topic}]."
        )
    offsets = PartitionOffsets(body.partitions.partition_offset_map)
    problem = sup.partition_problem(offsets)
    if problem is not None:
        raise InvalidInput(f"partitions.partitionOffsetMap: {problem}")
    sup.request_reset_offsets(offsets)
    return answer(wire.SupervisorIdAnswer(id=sup.id))


@documented("A supervisor's row statistics", response=dict[str, Any], errors=(404,), tags=("supervisor",))
async def supervisor_stats(request: web.Request) -> web.Response:
    """Row counts of its running tasks, by task group and task id, as Druid's `/stats`."""
    sup = request.app[MANAGER].get(request.match_info["id"])
    return web.json_response(reports.stats(sup.view()))


# How many of a supervisor's most recent tasks ``parseErrors`` looks at.
PARSE_ERRORS_TASKS = 20


def _saved_parse_errors(report: Any) -> list[dict[str, Any]]:
    try:
        events = report["ingestionStatsAndErrors"]["payload"]["unparseableEvents"]["buildSegments"]
    except (KeyError, TypeError):
        return []
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


class ParseErrorEntry(wire.ParseException):
    task_id: str


@documented(
    "A supervisor's parse errors", response=list[ParseErrorEntry], errors=(404,), tags=("supervisor",)
)
async def supervisor_parse_errors(request: web.Request) -> web.Response:
    """The parse exceptions saved by the supervisor's tasks, newest first: live from its running
    tasks (their ``unparseableEvents`` control path), from the reports of its recent completed ones."""
    sup = request.app[MANAGER].get(request.match_info["id"])
    chat = request.app[CHAT]
    rows: list[TaskRow] = await asyncio.to_thread(
        request.app[STORE].list_tasks, None, sup.datasource, PARSE_ERRORS_TASKS
    )
    active = {r.id: r for r in request.app[QUEUE].active_rows() if r.supervisor_id == sup.id}
    live = [r for r in active.values() if r.host and r.port]
    answers = await asyncio.gather(
        *(chat.unparseable_events(TaskLocation(str(r.host), int(r.port or 0)), r.id) for r in live),
        return_exceptions=True,
    )
    errors: list[dict[str, Any]] = []
    for row, got in zip(live, answers, strict=True):
        if isinstance(got, wire.UnparseableEvents):
            errors.extend({**e.to_json(), "taskId": row.id} for e in got.build_segments)
    for row in rows:
        if row.supervisor_id == sup.id and row.id not in active and row.status != TaskState.RUNNING.value:
            errors.extend({**e, "taskId": row.id} for e in _saved_parse_errors(row.report))
    errors.sort(key=lambda e: str(e.get("timestamp", "")), reverse=True)
    return web.json_response(errors)


@documented(
    "Spec history",
    query=HistoryQuery,
    response=list[wire.HistoryEntry] | dict[str, list[wire.HistoryEntry]],
    errors=(404,),
    tags=("supervisor",),
)
async def history(request: web.Request) -> web.Response:
    """One supervisor's specs, newest first; without an id, every supervisor's keyed by id."""
    spec_id = request.match_info.get("id")
    query = read_query(request, HistoryQuery)
    result = await request.app[MANAGER].history(spec_id, query.count)
    if spec_id is not None and not result:
        raise NotFound(f"No history for [{spec_id}].")
    return web.json_response(mask(result))


# ---------------------------------------------------------------- tasks


def _task_status(row: TaskRow) -> wire.TaskStatusObject:
    return wire.TaskStatusObject(
        id=row.id,
        type=row.type,
        group_id=row.id,
        created_time=row.created_date,
        queue_insertion_time=row.created_date,
        status_code=row.status,
        status=row.status,
        runner_status_code=row.runner_status,
        location=wire.TaskLocationBody(host=row.host, port=row.port or -1),
        data_source=row.datasource,
        error_msg=row.error,
    )


_STATE_FILTER = {
    "running": lambda r: r.status == TaskState.RUNNING and r.runner_status == RunnerState.RUNNING,
    "pending": lambda r: r.status == TaskState.RUNNING and r.runner_status == RunnerState.PENDING,
    "waiting": lambda r: r.status == TaskState.RUNNING and r.runner_status == RunnerState.WAITING,
    "complete": lambda r: r.status != TaskState.RUNNING,
}


def _created_in(row: TaskRow, bounds: tuple[int, int]) -> bool:
    created = parse_iso(row.created_date)
    return created is not None and bounds[0] <= created < bounds[1]


@documented(
    "List tasks", query=ListTasksQuery, response=list[wire.TaskStatusObject], errors=(400,), tags=("tasks",)
)
async def list_tasks(request: web.Request) -> web.Response:
    """Active tasks first as the task queue knows them, then completed ones from the metadata store,
    newest first. As Druid's OverlordResource.getTasks: `state` in any case (another is a 400 naming
    the four), `max` and `createdTimeInterval` bound the completed tasks only."""
    query = read_query(request, ListTasksQuery)
    store = request.app[STORE]
    status = None if query.state in (None, "complete") else TaskState.RUNNING.value
    rows: list[TaskRow] = await asyncio.to_thread(store.list_tasks, status, query.datasource, None)
    active = {r.id: r for r in request.app[QUEUE].active_rows()}
    merged = [active.get(r.id, r) for r in rows]
    if query.state is not None:
        merged = [r for r in merged if _STATE_FILTER[query.state](r)]
    if query.type:
        merged = [r for r in merged if r.type == query.type]
    running = [r for r in merged if r.status == TaskState.RUNNING]
    done = [r for r in merged if r.status != TaskState.RUNNING]
    if query.created_time_interval is not None:
        done = [r for r in done if _created_in(r, query.created_time_interval)]
    if query.max is not None:
        done = done[: query.max]
    return answer([_task_status(r) for r in running + done])


@documented("A task's payload", response=wire.TaskPayloadAnswer, errors=(404,), tags=("tasks",))
async def get_task(request: web.Request) -> web.Response:
    """As Druid's OverlordResource.getTaskPayload: an unknown task is a 404 `{"task", "payload": null}`."""
    task_id = request.match_info["id"]
    row = await request.app[QUEUE].get_row(task_id)
    if row is None:
        return answer(wire.TaskPayloadAnswer(task=task_id, payload=None), status=404)
    return answer(wire.TaskPayloadAnswer(task=row.id, payload=mask(row.payload)))


@documented("A task's status", response=wire.TaskStatusAnswer, errors=(404,), tags=("tasks",))
async def task_status(request: web.Request) -> web.Response:
    """As Druid: an unknown task is a 404 whose body still has the shape `{"task", "status": null}`."""
    task_id = request.match_info["id"]
    row = await request.app[QUEUE].get_row(task_id)
    if row is None:
        return answer(wire.TaskStatusAnswer(task=task_id, status=None), status=404)
    return answer(wire.TaskStatusAnswer(task=task_id, status=_task_status(row)))


# Druid's OverlordResource.doGetReports, for an unknown task and one without a report alike.
_NO_REPORTS = (
    "No task reports were found for this task. The task may not exist, or it may not have completed yet."
)


@documented("A task's report", response=wire.TaskReport, errors=(404,), tags=("tasks",))
async def task_reports(request: web.Request) -> web.Response:
    """Live from the task while it runs, else the report it ended with."""
    row = await request.app[QUEUE].get_row(request.match_info["id"])
    if row is None:
        raise NotFound(_NO_REPORTS)
    report: Any = row.report
    if row.status == TaskState.RUNNING.value and row.host and row.port:
        try:
            live = await request.app[CHAT].live_report(TaskLocation(row.host, row.port), row.id)
            report = live.to_json()
        except IndexerError:
            report = row.report
    if report is None:
        raise NotFound(_NO_REPORTS)
    return web.json_response(report)


_NO_LOG = "No log was found for this task. The task may not exist, or it may not have begun running yet."


@documented(
    "A task's log", query=LogQuery, response=str, response_type="text/plain", errors=(404,), tags=("tasks",)
)
async def task_log(request: web.Request) -> web.Response:
    """The task's log: from the task itself while it runs, else from its MiddleManager. No log (an
    unknown task too) is a 404 worded as Druid's OverlordResource.doGetLog."""
    row = await request.app[QUEUE].get_row(request.match_info["id"])
    if row is None:
        raise NotFound(_NO_LOG)
    offset = read_query(request, LogQuery).offset
    chat = request.app[CHAT]
    text: str | None = None
    if row.status == TaskState.RUNNING.value and row.host and row.port:
        try:
            text = await chat.task_log(TaskLocation(row.host, row.port), row.id)
        except IndexerError:
            text = None
    if text is None and row.worker:
        try:
            text = await chat.worker_task_log(row.worker, row.id)
        except IndexerError:
            text = None
    if text is None:
        raise NotFound(_NO_LOG)
    if offset:
        text = text[offset:]
    return web.Response(text=text, content_type="text/plain")


@documented(
    "Statuses of several tasks",
    request=wire.TaskIdList,
    response=dict[str, wire.TaskStatusBrief],
    errors=(400, 413),
    tags=("tasks",),
)
async def task_statuses(request: web.Request) -> web.Response:
    """Druid's ``POST /taskStatus`` (OverlordResource.getMultipleTaskStatuses): each listed task's
    `TaskStatus` by id, unknown ids left out; an empty list is a 400."""
    ids = (await read_body(request, wire.TaskIdList, "body")).root
    if not ids:
        raise InvalidInput("No Task IDs provided.")
    out: dict[str, Any] = {}
    for task_id in ids[:1000]:
        row = await request.app[QUEUE].get_row(task_id)
        if row is not None:
            location = wire.TaskLocationBody(host=row.host, port=row.port or -1)
            brief = wire.TaskStatusBrief(id=row.id, status=row.status, error_msg=row.error, location=location)
            out[task_id] = brief.to_json()
    return web.json_response(out)


@documented("Shut a task down", response=wire.TaskIdAnswer, tags=("tasks",))
async def task_shutdown(request: web.Request) -> web.Response:
    """200 `{"task": id}` whether the task runs, has ended or never was, as Druid's
    OverlordResource.doShutdown (its TaskQueue.shutdown ignores a task that is not active)."""
    task_id = request.match_info["id"]
    await request.app[QUEUE].kill(task_id, "shutdown requested through the API")
    return answer(wire.TaskIdAnswer(task=task_id))


@documented(
    "Shut down every task of a datasource", response=wire.DataSourceAnswer, errors=(404,), tags=("tasks",)
)
async def shutdown_datasource_tasks(request: web.Request) -> web.Response:
    """A datasource with no active task is a 404, as Druid's OverlordResource.shutdownTasksForDataSource
    (whose 404 has no body; ours says why)."""
    ds = request.match_info["ds"]
    if not await request.app[QUEUE].shutdown_datasource(ds):
        raise NotFound(f"No active tasks of datasource [{ds}]")
    return answer(wire.DataSourceAnswer(data_source=ds))


# ---------------------------------------------------------------- workers and task actions


def _check_protocol(worker: wire.WorkerIdentity, what: str) -> None:
    if not wire.MIN_PROTOCOL_VERSION <= worker.protocol_version <= wire.PROTOCOL_VERSION:
        raise InvalidInput(
            f"{what}: worker [{worker.host}:{worker.port}] speaks wire protocol {worker.protocol_version}; "
            f"this Overlord serves protocols {wire.MIN_PROTOCOL_VERSION} to {wire.PROTOCOL_VERSION}: "
            "run MiddleManagers and the Overlord of compatible versions"
        )


@documented(
    "Register a worker",
    request=wire.WorkerRegistration,
    response=wire.RegistrationAnswer,
    tags=("workers", "internal"),
)
async def worker_register(request: web.Request) -> web.Response:
    """A MiddleManager announces itself and the wire protocol it speaks; one the Overlord cannot serve is
    refused with a 400 that says which versions it serves."""
    body = await read_body(request, wire.WorkerRegistration, "worker registration")
    _check_protocol(body, "worker registration")
    await request.app[QUEUE].register(body)
    return answer(wire.RegistrationAnswer())


@documented(
    "Worker heartbeat",
    request=wire.Heartbeat,
    response=wire.HeartbeatAnswer,
    tags=("workers", "internal"),
)
async def worker_heartbeat(request: web.Request) -> web.Response:
    """What a worker runs and what ended; the answer lists the tasks it must start and kill. A long
    poll: with nothing new, the answer is held up to `waitS` (at most 10 s and a third of the worker
    timeout) and sent as soon as something is assigned to or killed on the worker."""
    body = await read_body(request, wire.Heartbeat, "heartbeat")
    _check_protocol(body, "heartbeat")
    return answer(await request.app[QUEUE].heartbeat(body))


@documented("List workers", response=list[wire.WorkerEntry], tags=("workers",))
async def list_workers(request: web.Request) -> web.Response:
    return answer([w.to_wire() for w in request.app[QUEUE].workers()])


@documented(
    "Run a task action",
    request=wire.TaskActionRequest,
    response=wire.TaskActionAnswer,
    errors=(413,),
    tags=("internal",),
)
async def task_action(request: web.Request) -> web.Response:
    """Task actions; only ``segmentTransactionalInsert`` is needed by Kafka tasks: the segments and the
    task's end offsets are committed in one transaction, with a compare-and-swap on its start offsets."""
    body = await read_body(request, wire.TaskActionRequest, "task action")
    queue = request.app[QUEUE]
    action = body.action
    if not await queue.is_running(body.task):
        # a killed (or already finished) task must not publish stale data
        refused = wire.PublishOutcome(kind="failed", reason=f"task [{body.task}] is not running")
        return answer(wire.TaskActionAnswer(result=refused))
    segments = [SegmentToPublish.from_wire(s) for s in action.segments]
    started = time.monotonic()
    result = await asyncio.to_thread(
        request.app[STORE].publish_segments,
        action.data_source,
        action.stream,
        action.sequence_name,
        action.start_offsets,
        action.end_offsets,
        segments,
    )
    elapsed = time.monotonic() - started
    metrics.PUBLISH_SECONDS.labels(action.data_source).observe(elapsed)
    metrics.PUBLISHES.labels(action.data_source, result.kind).inc()
    if result.kind == "ok" and not result.reason.startswith("already published"):
        metrics.PUBLISHED_ROWS.labels(action.data_source).inc(sum(s.num_rows for s in segments))
    logger.info(
        "task [%s] publish %s in %.3fs: %s",
        body.task,
        result.kind,
        elapsed,
        result.reason or f"{len(result.segment_ids)} segments",
    )
    outcome = wire.PublishOutcome(
        kind=result.kind, reason=result.reason, segment_ids=tuple(result.segment_ids)
    )
    return answer(wire.TaskActionAnswer(result=outcome))


# ---------------------------------------------------------------- segments and health


@documented(
    "A datasource's published segments",
    query=SegmentsQuery,
    response=list[str] | list[dict[str, Any]],
    tags=("segments",),
)
async def datasource_segments(request: web.Request) -> web.Response:
    """Ids of the used segments; with `?full`, Druid's DataSegment objects."""
    ds = request.match_info["ds"]
    segments = await asyncio.to_thread(request.app[STORE].list_segments, ds)
    if read_query(request, SegmentsQuery).full:
        return web.json_response(segments)
    return web.json_response([s["identifier"] if "identifier" in s else s.get("id") for s in segments])


def _all_used_segments(store: MetadataStore) -> list[dict[str, Any]]:
    return [seg for ds in store.list_datasources() for seg in store.list_segments(ds)]


def segments_etag(segments: list[dict[str, Any]]) -> str:
    """A strong ETag of a segment list: the hash of its segment ids (a segment never changes)."""
    ids = sorted(str(s.get("identifier") or s.get("id")) for s in segments)
    return '"' + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32] + '"'


@documented("Every used segment", response=list[dict[str, Any]], tags=("segments",))
async def all_segments(request: web.Request) -> web.Response:
    """Druid's DataSegment objects of every datasource, with an `ETag`; a request whose
    `If-None-Match` names the current one is answered 304 without a body, so the Broker can poll it
    cheaply for changes."""
    segments = await asyncio.to_thread(_all_used_segments, request.app[STORE])
    etag = segments_etag(segments)
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.json_response(segments, headers={"ETag": etag})


@documented("Datasources with published segments", response=list[str], tags=("segments",))
async def datasources(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[STORE].list_datasources))


@documented("Prometheus metrics", response=str, response_type="text/plain", tags=("status",))
async def prometheus(request: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@documented("Health", response=bool, tags=("status",))
async def health(request: web.Request) -> web.Response:
    """`true` while the Overlord serves; never needs credentials."""
    return web.json_response(True)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(SUPERVISOR, post_supervisor)
    r.add_get(SUPERVISOR, list_supervisors)
    r.add_get(f"{SUPERVISOR}/history", history)
    r.add_post(f"{SUPERVISOR}/suspendAll", suspend_all)
    r.add_post(f"{SUPERVISOR}/resumeAll", resume_all)
    r.add_post(f"{SUPERVISOR}/terminateAll", terminate_all)
    r.add_get(SUPERVISOR + "/{id}", get_supervisor)
    r.add_get(SUPERVISOR + "/{id}/status", supervisor_status)
    r.add_get(SUPERVISOR + "/{id}/health", supervisor_health)
    r.add_get(SUPERVISOR + "/{id}/history", history)
    r.add_post(SUPERVISOR + "/{id}/suspend", suspend)
    r.add_post(SUPERVISOR + "/{id}/resume", resume)
    r.add_post(SUPERVISOR + "/{id}/terminate", terminate)
    r.add_post(SUPERVISOR + "/{id}/shutdown", terminate)
    r.add_post(SUPERVISOR + "/{id}/reset", reset)
    r.add_post(SUPERVISOR + "/{id}/resetOffsets", reset_offsets)
    r.add_get(SUPERVISOR + "/{id}/stats", supervisor_stats)
    r.add_get(SUPERVISOR + "/{id}/parseErrors", supervisor_parse_errors)
    r.add_post(SUPERVISOR + "/{id}/taskGroups/handoff", handoff)
    r.add_get(f"{INDEXER}/tasks", list_tasks)
    r.add_get(INDEXER + "/task/{id}", get_task)
    r.add_get(INDEXER + "/task/{id}/status", task_status)
    r.add_get(INDEXER + "/task/{id}/reports", task_reports)
    r.add_post(INDEXER + "/task/{id}/shutdown", task_shutdown)
    r.add_get(INDEXER + "/task/{id}/log", task_log)
    r.add_post(f"{INDEXER}/taskStatus", task_statuses)
    r.add_post(INDEXER + "/datasources/{ds}/shutdownAllTasks", shutdown_datasource_tasks)
    r.add_post(f"{INDEXER}/workers/register", worker_register)
    r.add_post(f"{INDEXER}/workers/heartbeat", worker_heartbeat)
    r.add_get(f"{INDEXER}/workers", list_workers)
    r.add_post(f"{INDEXER}/action", task_action)
    r.add_get(f"{COORDINATOR}/metadata/datasources", datasources)
    r.add_get(COORDINATOR + "/metadata/datasources/{ds}/segments", datasource_segments)
    r.add_get(f"{COORDINATOR}/metadata/segments", all_segments)
    r.add_get("/status/health", health)
    r.add_get("/metrics", prometheus)

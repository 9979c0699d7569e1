"""The Overlord's REST API, on Druid's paths. Handlers stay thin."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from overlord import metrics
from overlord.chat import HttpTaskClient
from overlord.metadata.store import MetadataStore, SegmentToPublish, TaskRow
from overlord.supervisors import SupervisorManager
from overlord.task_queue import TaskQueue
from supervisor import reports
from supervisor.errors import IndexerError, InvalidInput, NotFound, PayloadTooLarge
from supervisor.offsets import PartitionOffsets
from supervisor.ports import RunnerState, TaskLocation, TaskState
from supervisor.secrets import mask
from supervisor.supervisor import Supervisor

logger = logging.getLogger(__name__)

SUPERVISOR = "/druid/indexer/v1/supervisor"
INDEXER = "/druid/indexer/v1"

MANAGER: web.AppKey[SupervisorManager] = web.AppKey("manager", SupervisorManager)
QUEUE: web.AppKey[TaskQueue] = web.AppKey("queue", TaskQueue)
STORE: web.AppKey[MetadataStore] = web.AppKey("store", MetadataStore)
CHAT: web.AppKey[HttpTaskClient] = web.AppKey("chat", HttpTaskClient)
MAX_BYTES: web.AppKey[int] = web.AppKey("max_bytes", int)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """The one place that turns exceptions into HTTP statuses and ``{"error": ...}`` bodies."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as e:
        if e.status >= 400:
            return web.json_response({"error": e.reason}, status=e.status)
        raise
    except IndexerError as e:
        headers = {"WWW-Authenticate": 'Basic realm="druid"'} if e.status == 401 else {}
        if e.retry_after_s is not None:  # e.g. the metadata store is down: 503, come back later
            headers["Retry-After"] = str(e.retry_after_s)
        return web.json_response({"error": e.message}, status=e.status, headers=headers or None)
    except Exception as e:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=500)


async def read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > request.app[MAX_BYTES]:
        raise PayloadTooLarge(f"request body larger than {request.app[MAX_BYTES]} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(f"request body larger than {request.app[MAX_BYTES]} bytes") from e
    if not raw:
        raise InvalidInput("request body is empty; expected JSON")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"request body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise InvalidInput("request body is nested too deeply") from e


def _flag(request: web.Request, name: str) -> bool:
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("false", "0")


# Larger counts and offsets mean nothing, and overflow the database's integers.
MAX_INT_PARAM = 2**31 - 1


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError as e:
        raise InvalidInput(f"query parameter '{name}' must be an integer, got '{value}'") from e
    if number < 0:
        raise InvalidInput(f"query parameter '{name}' must not be negative")
    if number > MAX_INT_PARAM:
        raise InvalidInput(f"query parameter '{name}' must be at most {MAX_INT_PARAM}")
    return number


# ---------------------------------------------------------------- supervisors


def _state_entry(sup: Supervisor) -> dict[str, Any]:
    return {
        "id": sup.id,
        "state": sup.state.basic.label,
        "detailedState": sup.state.detailed.name,
        "healthy": sup.state.healthy,
        "suspended": sup.suspended,
    }


async def post_supervisor(request: web.Request) -> web.Response:
    spec = await request.app[MANAGER].create_or_update(await read_json(request))
    return web.json_response({"id": spec.id})


async def list_supervisors(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    if _flag(request, "full"):
        out = []
        for sup in manager.all():
            entry = _state_entry(sup)
            entry["spec"] = mask(sup.spec.to_json())
            out.append(entry)
        return web.json_response(out)
    if _flag(request, "state"):
        return web.json_response([_state_entry(s) for s in manager.all()])
    return web.json_response(manager.ids())


async def get_supervisor(request: web.Request) -> web.Response:
    sup = request.app[MANAGER].get(request.match_info["id"])
    return web.json_response(mask(sup.spec.to_json()))


async def supervisor_status(request: web.Request) -> web.Response:
    sup = request.app[MANAGER].get(request.match_info["id"])
    return web.json_response(reports.status_payload(sup.view()))


async def supervisor_health(request: web.Request) -> web.Response:
    sup = request.app[MANAGER].get(request.match_info["id"])
    return web.json_response({"healthy": sup.state.healthy}, status=200 if sup.state.healthy else 503)


async def suspend(request: web.Request) -> web.Response:
    spec = await request.app[MANAGER].set_suspended(request.match_info["id"], True)
    return web.json_response(mask(spec.to_json()))


async def resume(request: web.Request) -> web.Response:
    spec = await request.app[MANAGER].set_suspended(request.match_info["id"], False)
    return web.json_response(mask(spec.to_json()))


async def suspend_all(request: web.Request) -> web.Response:
    await request.app[MANAGER].set_all_suspended(True)
    return web.json_response({"status": "success"})


async def resume_all(request: web.Request) -> web.Response:
    await request.app[MANAGER].set_all_suspended(False)
    return web.json_response({"status": "success"})


async def terminate(request: web.Request) -> web.Response:
    spec_id = request.match_info["id"]
    await request.app[MANAGER].terminate(spec_id)
    return web.json_response({"id": spec_id})


async def terminate_all(request: web.Request) -> web.Response:
    await request.app[MANAGER].terminate_all()
    return web.json_response({"status": "success"})


async def reset(request: web.Request) -> web.Response:
    spec_id = request.match_info["id"]
    request.app[MANAGER].reset(spec_id)
    return web.json_response({"id": spec_id})


async def handoff(request: web.Request) -> web.Response:
    sup = request.app[MANAGER].get(request.match_info["id"])
    body = await read_json(request)
    ids = body.get("taskGroupIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InvalidInput("taskGroupIds: must be a list of integers")
    sup.request_handoff(ids)
    return web.json_response({}, status=202)


async def reset_offsets(request: web.Request) -> web.Response:
    """Druid's resetOffsets: merge the given offsets into the stored ones; only the
    task groups reading those partitions restart."""
    sup = request.app[MANAGER].get(request.match_info["id"])
    body = await read_json(request)
    partitions = body.get("partitions") if isinstance(body, dict) else None
    if not isinstance(body, dict) or body.get("type") != "kafka":
        raise InvalidInput("type: must be 'kafka'")
    if not isinstance(partitions, dict) or partitions.get("type") != "end":
        raise InvalidInput("partitions.type: must be 'end'")
    if partitions.get("stream") != sup.topic:
        raise InvalidInput(f"partitions.stream: must be the supervisor's topic [{sup.topic}]")
    offsets = partitions.get("partitionOffsetMap")
    if not isinstance(offsets, dict) or not offsets:
        raise InvalidInput("partitions.partitionOffsetMap: must be a non-empty object of partition to offset")
    try:
        parsed = {int(p): int(o) for p, o in offsets.items()}
    except (TypeError, ValueError) as e:
        raise InvalidInput(
            f"partitions.partitionOffsetMap: partitions and offsets must be integers: {e}"
        ) from e
    if any(p < 0 or o < 0 for p, o in parsed.items()):
        raise InvalidInput("partitions.partitionOffsetMap: partitions and offsets must not be negative")
    sup.request_reset_offsets(PartitionOffsets(parsed))
    return web.json_response({"id": sup.id})


async def supervisor_stats(request: web.Request) -> web.Response:
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
        *(chat.get(TaskLocation(str(r.host), int(r.port or 0)), r.id, "unparseableEvents") for r in live),
        return_exceptions=True,
    )
    errors: list[dict[str, Any]] = []
    for row, answer in zip(live, answers, strict=True):
        events = answer.get("buildSegments") if isinstance(answer, dict) else None
        errors.extend({**e, "taskId": row.id} for e in events or [] if isinstance(e, dict))
    for row in rows:
        if row.supervisor_id == sup.id and row.id not in active and row.status != TaskState.RUNNING.value:
            errors.extend({**e, "taskId": row.id} for e in _saved_parse_errors(row.report))
    errors.sort(key=lambda e: str(e.get("timestamp", "")), reverse=True)
    return web.json_response(errors)


async def history(request: web.Request) -> web.Response:
    spec_id = request.match_info.get("id")
    result = await request.app[MANAGER].history(spec_id, _int_param(request, "count"))
    if spec_id is not None and not result:
        raise NotFound(f"No history for [{spec_id}].")
    return web.json_response(mask(result))


# ---------------------------------------------------------------- tasks


def _task_status(row: TaskRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "groupId": row.id,
        "createdTime": row.created_date,
        "queueInsertionTime": row.created_date,
        "statusCode": row.status,
        "status": row.status,
        "runnerStatusCode": row.runner_status,
        "duration": -1,
        "location": {"host": row.host, "port": row.port or -1, "tlsPort": -1},
        "dataSource": row.datasource,
        "errorMsg": row.error,
    }


_STATE_FILTER = {
    "running": lambda r: r.status == TaskState.RUNNING and r.runner_status == RunnerState.RUNNING,
    "pending": lambda r: r.status == TaskState.RUNNING and r.runner_status == RunnerState.PENDING,
    "waiting": lambda r: r.status == TaskState.RUNNING and r.runner_status == RunnerState.WAITING,
    "complete": lambda r: r.status != TaskState.RUNNING,
}


async def list_tasks(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state is not None and state not in _STATE_FILTER:
        raise InvalidInput(f"state: must be one of {sorted(_STATE_FILTER)}, got '{state}'")
    datasource = request.query.get("datasource")
    task_type = request.query.get("type")
    limit = _int_param(request, "max")
    store = request.app[STORE]
    status = None if state is None else (TaskState.RUNNING.value if state != "complete" else None)
    rows: list[TaskRow] = await asyncio.to_thread(store.list_tasks, status, datasource, None)
    active = {r.id: r for r in request.app[QUEUE].active_rows()}
    merged = [active.get(r.id, r) for r in rows]
    if state is not None:
        merged = [r for r in merged if _STATE_FILTER[state](r)]
    if task_type:
        merged = [r for r in merged if r.type == task_type]
    if limit is not None:
        merged = merged[:limit]
    return web.json_response([_task_status(r) for r in merged])


async def get_task(request: web.Request) -> web.Response:
    row = await request.app[QUEUE].require_row(request.match_info["id"])
    return web.json_response({"task": row.id, "payload": mask(row.payload)})


async def task_status(request: web.Request) -> web.Response:
    task_id = request.match_info["id"]
    row = await request.app[QUEUE].get_row(task_id)
    if row is None:
        return web.json_response({"task": task_id, "status": None}, status=404)
    return web.json_response({"task": task_id, "status": _task_status(row)})


async def task_reports(request: web.Request) -> web.Response:
    row = await request.app[QUEUE].require_row(request.match_info["id"])
    report = row.report
    if row.status == TaskState.RUNNING.value and row.host and row.port:
        try:
            report = await request.app[CHAT].get(TaskLocation(row.host, row.port), row.id, "liveReports")
        except IndexerError:
            report = row.report
    if report is None:
        raise NotFound(f"No reports for task [{row.id}]")
    return web.json_response(report)


async def task_log(request: web.Request) -> web.Response:
    """The task's log: from the task itself while it runs, else from its MiddleManager."""
    row = await request.app[QUEUE].require_row(request.match_info["id"])
    offset = _int_param(request, "offset")
    chat = request.app[CHAT]
    text: str | None = None
    if row.status == TaskState.RUNNING.value and row.host and row.port:
        try:
            text = await chat.get_text(f"http://{row.host}:{row.port}/druid/worker/v1/chat/{row.id}/log")
        except IndexerError:
            text = None
    if text is None and row.worker:
        try:
            text = await chat.get_text(f"http://{row.worker}/druid/worker/v1/task/{row.id}/log")
        except IndexerError:
            text = None
    if text is None:
        raise NotFound(
            "No log was found for this task. The task may not exist, or it may not have begun running yet."
        )
    if offset:
        text = text[offset:]
    return web.Response(text=text, content_type="text/plain")


async def task_statuses(request: web.Request) -> web.Response:
    """Druid's ``POST /taskStatus``: statuses of the listed task ids."""
    body = await read_json(request)
    if not isinstance(body, list) or not all(isinstance(i, str) for i in body):
        raise InvalidInput("body: must be a JSON array of task ids")
    out: dict[str, Any] = {}
    for task_id in body[:1000]:
        row = await request.app[QUEUE].get_row(task_id)
        if row is not None:
            out[task_id] = _task_status(row)
    return web.json_response(out)


async def task_shutdown(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    row = await queue.require_row(request.match_info["id"])
    await queue.kill(row.id, "shutdown requested through the API")
    return web.json_response({"task": row.id})


async def shutdown_datasource_tasks(request: web.Request) -> web.Response:
    ds = request.match_info["ds"]
    await request.app[QUEUE].shutdown_datasource(ds)
    return web.json_response({"dataSource": ds})


# ---------------------------------------------------------------- workers and task actions


async def worker_register(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("worker registration must be a JSON object with host, port, capacity")
    try:
        await request.app[QUEUE].register(
            str(body["host"]), int(body["port"]), int(body.get("capacity", 1)), str(body.get("version", ""))
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput(f"worker registration needs host, port, capacity: {e}") from e
    return web.json_response({"ok": True})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _heartbeat_problem(body: Any) -> str | None:
    """What is wrong with a worker's heartbeat, checked before anything acts on it."""
    if not isinstance(body, dict) or not isinstance(body.get("host"), str) or not _is_int(body.get("port")):
        return "needs host (a string) and port (an integer)"
    if "capacity" in body and not _is_int(body["capacity"]):
        return "capacity must be an integer"
    wait = body.get("waitS", 0)
    if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait < float("inf"):
        return "waitS (how long the answer may be held) must be a number of seconds, 0 or more"
    for key in ("running", "completed"):
        items = body.get(key, [])
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("taskId"), str) for i in items
        ):
            return f"{key} must be a list of objects with a string taskId"
    if any(i.get("port") is not None and not _is_int(i["port"]) for i in body.get("running", [])):
        return "the port of a running task must be an integer"
    return None


async def worker_heartbeat(request: web.Request) -> web.Response:
    body = await read_json(request)
    problem = _heartbeat_problem(body)
    if problem is not None:
        raise InvalidInput(f"heartbeat: {problem}")
    return web.json_response(await request.app[QUEUE].heartbeat(body))


async def list_workers(request: web.Request) -> web.Response:
    return web.json_response([w.to_json() for w in request.app[QUEUE].workers()])


async def task_action(request: web.Request) -> web.Response:
    """Task actions; only ``segmentTransactionalInsert`` is needed by Kafka tasks."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("a task action must be a JSON object")
    task_id = body.get("task")
    action = body.get("action")
    if not isinstance(task_id, str) or not isinstance(action, dict):
        raise InvalidInput("a task action needs 'task' and 'action'")
    if action.get("type") != "segmentTransactionalInsert":
        raise InvalidInput(f"unknown task action type '{action.get('type')}'")
    queue = request.app[QUEUE]
    if not await queue.is_running(task_id):
        # a killed (or already finished) task must not publish stale data
        return web.json_response(
            {"result": {"kind": "failed", "reason": f"task [{task_id}] is not running", "segmentIds": []}}
        )
    try:
        segments = [SegmentToPublish(**s) for s in action.get("segments", [])]
        start = {int(k): int(v) for k, v in action["startOffsets"].items()}
        end = {int(k): int(v) for k, v in action["endOffsets"].items()}
        datasource = str(action["dataSource"])
        stream = str(action["stream"])
        sequence = str(action["sequenceName"])
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput(f"malformed segmentTransactionalInsert: {e}") from e
    started = time.monotonic()
    result = await asyncio.to_thread(
        request.app[STORE].publish_segments, datasource, stream, sequence, start, end, segments
    )
    metrics.PUBLISH_SECONDS.labels(datasource).observe(time.monotonic() - started)
    metrics.PUBLISHES.labels(datasource, result.kind).inc()
    if result.kind == "ok" and not result.reason.startswith("already published"):
        metrics.PUBLISHED_ROWS.labels(datasource).inc(sum(s.num_rows for s in segments))
    logger.info(
        "task [%s] publish %s in %.3fs: %s",
        task_id,
        result.kind,
        time.monotonic() - started,
        result.reason or f"{len(result.segment_ids)} segments",
    )
    return web.json_response(
        {"result": {"kind": result.kind, "reason": result.reason, "segmentIds": list(result.segment_ids)}}
    )


# ---------------------------------------------------------------- segments and health


async def datasource_segments(request: web.Request) -> web.Response:
    ds = request.match_info["ds"]
    segments = await asyncio.to_thread(request.app[STORE].list_segments, ds)
    if "full" in request.query:
        return web.json_response(segments)
    return web.json_response([s["identifier"] if "identifier" in s else s.get("id") for s in segments])


async def datasources(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[STORE].list_datasources))


async def prometheus(request: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health(request: web.Request) -> web.Response:
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
    r.add_get("/druid/coordinator/v1/metadata/datasources", datasources)
    r.add_get("/druid/coordinator/v1/metadata/datasources/{ds}/segments", datasource_segments)
    r.add_get("/status/health", health)
    r.add_get("/metrics", prometheus)

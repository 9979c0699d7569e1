"""Status codes and bodies of the supervisor and task endpoints, as Druid's resource classes answer.

Druid's sources followed (apache/druid, indexing-service): ``overlord/supervisor/SupervisorResource.java``
(supervisors), ``overlord/http/OverlordResource.java`` (tasks), and for resetOffsets
``seekablestream/supervisor/SeekableStreamSupervisor.resetOffsets``. Each test names the method.
The whole Overlord app runs in process on SQLite; the supervisors point at a closed port and start
their first run an hour from now, so no Kafka is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from overlord import api
from overlord.app import build_app
from overlord.config import OverlordSettings
from overlord.metadata import TaskRow, migrate
from tests.harness.http import request, serve_app
from tests.harness.specs import id_spec

V1 = "/druid/indexer/v1"
SUP = f"{V1}/supervisor"


class Overlord:
    def __init__(self, app: web.Application, base: str) -> None:
        self.app, self.base = app, base

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        got = request(method, self.base + path, body)
        return got.status, got.body

    def post_spec(self, sup_id: str, query: str = "") -> tuple[int, Any]:
        return self.call("POST", f"{SUP}{query}", id_spec(sup_id, "events", "127.0.0.1:9", startDelay="PT1H"))


@pytest.fixture(scope="module")
def overlord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Overlord]:
    root = tmp_path_factory.mktemp("overlord")
    url = f"sqlite:///{root / 'metadata.db'}"
    migrate(url)
    app = build_app(OverlordSettings(metadata_url=url, deep_storage=root / "deep"))
    with serve_app(app) as base:
        yield Overlord(app, base)


@pytest.fixture
def sup(overlord: Overlord, request: pytest.FixtureRequest) -> Iterator[str]:
    """A running supervisor of its own for one test, terminated after it."""
    sup_id = "codes_" + request.node.name.split("[")[0].removeprefix("test_")[:40]
    assert overlord.post_spec(sup_id)[0] == 200
    yield sup_id
    overlord.call("POST", f"{SUP}/{sup_id}/terminate")


# ---------------------------------------------------------------- SupervisorResource


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),  # specGet
        ("GET", "/nope/status"),  # specGetStatus
        ("GET", "/nope/stats"),  # getAllTaskStats
        ("GET", "/nope/parseErrors"),  # getAllTaskParseErrors
        ("POST", "/nope/suspend"),  # specSuspendOrResume
        ("POST", "/nope/resume"),
        ("POST", "/nope/terminate"),  # terminate
        ("POST", "/nope/shutdown"),  # shutdown (deprecated: terminate)
        ("POST", "/nope/reset"),  # reset -> handleResetRequest
    ],
)
def test_an_unknown_supervisor_is_a_404_does_not_exist(overlord: Overlord, method: str, path: str) -> None:
    """SupervisorResource: every per-id endpoint answers 404 ``{"error": "[id] does not exist"}``."""
    assert overlord.call(method, SUP + path) == (404, {"error": "[nope] does not exist"})


def test_reset_offsets_of_an_unknown_supervisor_is_a_404(overlord: Overlord) -> None:
    """SupervisorResource.resetOffsets -> handleResetRequest: 404 ``[id] does not exist``."""
    body = {
        "type": "kafka",
        "partitions": {"type": "end", "stream": "events", "partitionOffsetMap": {"0": 1}},
    }
    assert overlord.call("POST", f"{SUP}/nope/resetOffsets", body) == (
        404,
        {"error": "[nope] does not exist"},
    )


def test_health_of_an_unknown_supervisor_is_a_404(overlord: Overlord) -> None:
    """SupervisorResource.specGetHealth: ``[id] does not exist or health check not implemented``."""
    assert overlord.call("GET", f"{SUP}/nope/health") == (
        404,
        {"error": "[nope] does not exist or health check not implemented"},
    )


def test_suspending_a_suspended_supervisor_is_a_400(overlord: Overlord, sup: str) -> None:
    """SupervisorResource.specSuspendOrResume: 200 with the spec, then 400 ``[id] is already suspended``."""
    status, body = overlord.call("POST", f"{SUP}/{sup}/suspend")
    assert status == 200 and body["suspended"] is True and body["spec"]["dataSchema"]["dataSource"] == sup
    assert overlord.call("POST", f"{SUP}/{sup}/suspend") == (400, {"error": f"[{sup}] is already suspended"})
    status, body = overlord.call("POST", f"{SUP}/{sup}/resume")
    assert status == 200 and body["suspended"] is False


def test_resuming_a_running_supervisor_is_a_400(overlord: Overlord, sup: str) -> None:
    """SupervisorResource.specSuspendOrResume: ``[id] is already running``."""
    assert overlord.call("POST", f"{SUP}/{sup}/resume") == (400, {"error": f"[{sup}] is already running"})


def test_suspend_all_and_resume_all_answer_success_with_some_already_so(overlord: Overlord, sup: str) -> None:
    """SupervisorResource.suspendOrResumeAll: 200 ``{"status": "success"}``, those already so skipped."""
    assert overlord.call("POST", f"{SUP}/{sup}/suspend")[0] == 200
    assert overlord.call("POST", f"{SUP}/suspendAll") == (200, {"status": "success"})
    assert overlord.call("POST", f"{SUP}/suspendAll") == (200, {"status": "success"})
    assert overlord.call("GET", f"{SUP}/{sup}")[1]["suspended"] is True
    assert overlord.call("POST", f"{SUP}/resumeAll") == (200, {"status": "success"})
    assert overlord.call("POST", f"{SUP}/resumeAll") == (200, {"status": "success"})
    assert overlord.call("GET", f"{SUP}/{sup}")[1]["suspended"] is False


def test_terminate_answers_the_id_then_404_and_the_history_stays(overlord: Overlord) -> None:
    """SupervisorResource.terminate: 200 ``{"id"}``; a terminated one no longer exists (404), and
    specGetHistory still answers (tombstone last)."""
    assert overlord.post_spec("codes_terminated")[0] == 200
    assert overlord.call("POST", f"{SUP}/codes_terminated/terminate") == (200, {"id": "codes_terminated"})
    assert overlord.call("POST", f"{SUP}/codes_terminated/terminate") == (
        404,
        {"error": "[codes_terminated] does not exist"},
    )
    status, history = overlord.call("GET", f"{SUP}/codes_terminated/history")
    assert status == 200 and history[0]["spec"]["type"] == "NoopSupervisorSpec" and len(history) == 2


def test_terminate_all_answers_success_even_with_none(overlord: Overlord) -> None:
    """SupervisorResource.terminateAll: 200 ``{"status": "success"}``."""
    assert overlord.post_spec("codes_all")[0] == 200
    assert overlord.call("POST", f"{SUP}/terminateAll") == (200, {"status": "success"})
    assert overlord.call("GET", SUP) == (200, [])
    assert overlord.call("POST", f"{SUP}/terminateAll") == (200, {"status": "success"})


def test_history_of_an_unknown_supervisor_is_a_404(overlord: Overlord) -> None:
    """SupervisorResource.specGetHistory: 404 ``No history for [id].``; ``?count`` keeps the newest."""
    assert overlord.call("GET", f"{SUP}/nope/history") == (404, {"error": "No history for [nope]."})
    assert overlord.call("GET", f"{SUP}/nope/history?count=1") == (404, {"error": "No history for [nope]."})


def test_history_count_keeps_the_newest_entries(overlord: Overlord, sup: str) -> None:
    assert overlord.call("POST", f"{SUP}/{sup}/suspend")[0] == 200
    status, history = overlord.call("GET", f"{SUP}/{sup}/history?count=1")
    assert status == 200 and len(history) == 1 and history[0]["spec"]["suspended"] is True
    assert len(overlord.call("GET", f"{SUP}/{sup}/history")[1]) == 2
    assert overlord.call("GET", f"{SUP}/{sup}/history?count=-1")[0] == 400


def test_reset_answers_the_id(overlord: Overlord, sup: str) -> None:
    """SupervisorResource.reset -> handleResetRequest: 200 ``{"id"}``."""
    assert overlord.call("POST", f"{SUP}/{sup}/reset") == (200, {"id": sup})


def test_reset_offsets_of_another_stream_is_a_400_in_druids_words(overlord: Overlord, sup: str) -> None:
    """SeekableStreamSupervisor.resetOffsets: ``Stream[x] doesn't exist in the supervisor[id]. Supervisor
    is consuming stream[topic].``; a good body answers 200 ``{"id"}``."""
    body: dict[str, Any] = {
        "type": "kafka",
        "partitions": {"type": "end", "stream": "other", "partitionOffsetMap": {"0": 5}},
    }
    assert overlord.call("POST", f"{SUP}/{sup}/resetOffsets", body) == (
        400,
        {
            "error": f"Stream[other] doesn't exist in the supervisor[{sup}]. "
            "Supervisor is consuming stream[events]."
        },
    )
    body["partitions"]["stream"] = "events"
    assert overlord.call("POST", f"{SUP}/{sup}/resetOffsets", body) == (200, {"id": sup})
    body["partitions"]["type"] = "start"
    status, answer = overlord.call("POST", f"{SUP}/{sup}/resetOffsets", body)
    assert status == 400 and "partitions.type" in answer["error"]


def test_handoff_answers_200_with_an_empty_body(overlord: Overlord, sup: str) -> None:
    """SupervisorResource.handoffTaskGroups: 200 with no body; group ids not reading are ignored."""
    assert overlord.call("POST", f"{SUP}/{sup}/taskGroups/handoff", {"taskGroupIds": [0, 7]}) == (200, None)


def test_handoff_of_no_groups_is_a_400_and_of_an_unknown_supervisor_a_404(overlord: Overlord) -> None:
    """SupervisorResource.handoffTaskGroups: the empty list first (400), then the id (404)."""
    assert overlord.call("POST", f"{SUP}/nope/taskGroups/handoff", {"taskGroupIds": []}) == (
        400,
        {"error": "List of task groups to handoff can't be empty"},
    )
    assert overlord.call("POST", f"{SUP}/nope/taskGroups/handoff", {"taskGroupIds": [0]}) == (
        404,
        {"error": "Supervisor was not found [nope]"},
    )


def test_post_restarts_an_unchanged_spec_only_with_skip_restart_false(overlord: Overlord, sup: str) -> None:
    """SupervisorResource.specPost's ``skipRestartIfUnmodified``: Druid restarts an unchanged spec unless
    it is ``true``; here not restarting is the default, and ``false`` restarts. Neither stores a new
    history entry (SupervisorManager.createOrUpdateAndStartSupervisor stores only a changed spec)."""
    manager = overlord.app[api.MANAGER]
    first = manager.find(sup)
    assert overlord.post_spec(sup) == (200, {"id": sup})
    assert overlord.post_spec(sup, "?skipRestartIfUnmodified=true") == (200, {"id": sup})
    assert manager.find(sup) is first
    assert overlord.post_spec(sup, "?skipRestartIfUnmodified=false") == (200, {"id": sup})
    restarted = manager.find(sup)
    assert restarted is not None and restarted is not first
    assert len(overlord.call("GET", f"{SUP}/{sup}/history")[1]) == 1
    assert overlord.post_spec(sup, "?skipRestartIfUnmodified=maybe")[0] == 400


# ---------------------------------------------------------------- OverlordResource


def _store_task(overlord: Overlord, task_id: str, created: str, status: str = "SUCCESS", **kw: Any) -> None:
    row = TaskRow(
        id=task_id,
        datasource=kw.pop("datasource", "codes_ds"),
        type=kw.pop("type", "index_kafka"),
        payload={"id": task_id, "type": "index_kafka"},
        status=status,
        runner_status="NONE" if status != "RUNNING" else "RUNNING",
        created_date=created,
        **kw,
    )
    overlord.app[api.STORE].upsert_task(row)


def test_payload_of_an_unknown_task_is_a_404_with_a_null_payload(overlord: Overlord) -> None:
    """OverlordResource.getTaskPayload: 404 ``{"task": id, "payload": null}``."""
    assert overlord.call("GET", f"{V1}/task/nope") == (404, {"task": "nope", "payload": None})


def test_status_of_an_unknown_task_is_a_404_with_a_null_status(overlord: Overlord) -> None:
    """OverlordResource.getTaskStatus: 404 ``{"task": id, "status": null}``."""
    assert overlord.call("GET", f"{V1}/task/nope/status") == (404, {"task": "nope", "status": None})


def test_reports_and_log_of_an_unknown_task_are_404s_in_druids_words(overlord: Overlord) -> None:
    """OverlordResource.doGetReports / doGetLog: their 404 sentences (in ``{"error"}`` here)."""
    status, body = overlord.call("GET", f"{V1}/task/nope/reports")
    assert status == 404 and body["error"] == (
        "No task reports were found for this task. The task may not exist, or it may not have completed yet."
    )
    status, body = overlord.call("GET", f"{V1}/task/nope/log")
    assert status == 404 and body["error"] == (
        "No log was found for this task. The task may not exist, or it may not have begun running yet."
    )


def test_shutdown_of_an_unknown_or_finished_task_answers_200(overlord: Overlord) -> None:
    """OverlordResource.doShutdown: 200 ``{"task": id}``; TaskQueue.shutdown ignores a task not active."""
    _store_task(overlord, "codes_done", "2024-01-01T00:00:00.000Z")
    assert overlord.call("POST", f"{V1}/task/nope/shutdown") == (200, {"task": "nope"})
    assert overlord.call("POST", f"{V1}/task/codes_done/shutdown") == (200, {"task": "codes_done"})
    assert overlord.call("GET", f"{V1}/task/codes_done/status")[1]["status"]["statusCode"] == "SUCCESS"


def test_shutdown_all_tasks_of_a_datasource_without_active_tasks_is_a_404(overlord: Overlord) -> None:
    """OverlordResource.shutdownTasksForDataSource: 404 when no task of it is active."""
    status, body = overlord.call("POST", f"{V1}/datasources/codes_none/shutdownAllTasks")
    assert status == 404 and "codes_none" in body["error"]


def test_task_status_list_answers_druid_task_status_bodies(overlord: Overlord) -> None:
    """OverlordResource.getMultipleTaskStatuses: TaskStatus (id, status, duration, errorMsg, location)
    by id, unknown ids left out; an empty list is a 400 ``No Task IDs provided.``."""
    _store_task(overlord, "codes_failed", "2024-01-02T00:00:00.000Z", status="FAILED", error="boom")
    status, body = overlord.call("POST", f"{V1}/taskStatus", ["codes_failed", "nope"])
    assert status == 200
    assert body == {
        "codes_failed": {
            "id": "codes_failed",
            "status": "FAILED",
            "duration": -1,
            "errorMsg": "boom",
            "location": {"host": None, "port": -1, "tlsPort": -1},
        }
    }
    assert overlord.call("POST", f"{V1}/taskStatus", []) == (400, {"error": "No Task IDs provided."})


def test_tasks_filters(overlord: Overlord) -> None:
    """OverlordResource.getTasks: ``state`` in any case, a bad one a 400 naming the four; ``max`` and
    ``createdTimeInterval`` (``_`` between the ends) bound the completed tasks only."""
    for day in ("05", "06", "07"):
        _store_task(overlord, f"codes_f{day}", f"2020-03-{day}T12:00:00.000Z", datasource="codes_filter")
    _store_task(overlord, "codes_other", "2020-03-06T12:00:00.000Z", datasource="codes_filter", type="kill")

    def ids(query: str) -> list[str]:
        status, body = overlord.call("GET", f"{V1}/tasks?datasource=codes_filter&{query}")
        assert status == 200, body
        return [t["id"] for t in body]

    assert ids("state=COMPLETE&type=index_kafka") == ["codes_f07", "codes_f06", "codes_f05"]
    assert ids("state=complete&max=2&type=index_kafka") == ["codes_f07", "codes_f06"]
    assert ids("createdTimeInterval=2020-03-06_2020-03-07") == ["codes_other", "codes_f06"]
    assert ids("createdTimeInterval=2020-03-06T00:00:00Z/2020-03-08&max=1") == ["codes_f07"]
    assert ids("state=running") == []
    status, body = overlord.call("GET", f"{V1}/tasks?state=bogus")
    assert status == 400
    assert "Invalid task state[bogus]. Must be one of [pending, waiting, running, complete]." in body["error"]
    status, body = overlord.call("GET", f"{V1}/tasks?createdTimeInterval=yesterday")
    assert status == 400 and "createdTimeInterval" in body["error"]


def test_a_created_time_interval_of_huge_numbers_is_a_400_not_a_500(overlord: Overlord) -> None:
    """Found by the OpenAPI fuzzer: a number far outside any date overflowed the date parser."""
    huge = "-12701_156460939373433261126345444818944"
    status, answer = overlord.call("GET", f"/druid/indexer/v1/tasks?createdTimeInterval={huge}")
    assert status == 400, answer
    assert "createdTimeInterval" in answer["error"]

"""The Overlord's task queue and worker registry, on a real SQLite metadata store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from overlord.metadata.engine import migrate
from overlord.metadata.store import MetadataStore
from overlord.task_queue import TaskQueue
from supervisor.clock import FakeClock
from supervisor.ports import TaskState
from supervisor.protocol import Heartbeat, WorkerRegistration
from supervisor.task_spec import KafkaIndexTaskSpec


def _spec(task_id: str) -> KafkaIndexTaskSpec:
    return KafkaIndexTaskSpec(
        id=task_id,
        data_source="ds",
        supervisor_id="ds",
        group_id=0,
        sequence_name="seq",
        topic="t",
        start_offsets={0: 0},
        supervisor_spec={},
        created_time="2026-01-01T00:00:00.000Z",
    )


def _queue(tmp_path: Path, worker_timeout_s: float, clock: FakeClock) -> TaskQueue:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url)
    return TaskQueue(
        MetadataStore(url),
        worker_timeout_s=worker_timeout_s,
        deep_storage=(tmp_path / "deep").as_uri(),
        clock=clock,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(tmp_path: Path, clock: FakeClock) -> TaskQueue:
    return _queue(tmp_path, 60.0, clock)


async def send_beat(queue: TaskQueue, report: dict[str, Any]) -> dict[str, Any]:
    """One heartbeat through the wire contract; the answer as the worker reads it (JSON)."""
    return (await queue.heartbeat(Heartbeat.model_validate(report))).to_json()


def hb(
    host: str,
    port: int,
    running: list[tuple[str, int]] = (),
    completed: list[dict[str, Any]] = (),
    capacity: int = 2,
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "host": host,
        "port": port,
        "capacity": capacity,
        "running": [{"taskId": t, "port": p} for t, p in running],
        "completed": list(completed),
    }


def test_tasks_go_to_the_worker_with_most_free_slots_and_get_a_location(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=1, version="1"))
        await queue.register(WorkerRegistration(host="b", port=1, capacity=3, version="1"))
        for i in range(3):
            await queue.submit(_spec(f"t{i}"))
        to_b = (await send_beat(queue, hb("b", 1, capacity=3)))["assign"]
        to_a = (await send_beat(queue, hb("a", 1, capacity=1)))["assign"]
        assert len(to_b) == 2 and len(to_a) == 1
        tid = to_a[0]["task"]["id"]
        await send_beat(queue, hb("a", 1, [(tid, 4242)], capacity=1))
        info = await queue.get(tid)
        assert info is not None and info.location is not None and info.location.port == 4242
        # the assignment is repeated until the worker reports the task
        again = (await send_beat(queue, hb("b", 1, capacity=3)))["assign"]
        assert {a["task"]["id"] for a in again} == {a["task"]["id"] for a in to_b}

    asyncio.run(go())


def test_completion_kill_and_vanished_tasks(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=3, version="1"))
        for i in range(3):
            await queue.submit(_spec(f"t{i}"))
        await send_beat(queue, hb("a", 1, capacity=3))
        await send_beat(queue, hb("a", 1, [("t0", 1), ("t1", 2), ("t2", 3)], capacity=3))
        answer = await send_beat(
            queue, hb("a", 1, [("t1", 2), ("t2", 3)], [{"taskId": "t0", "status": "SUCCESS"}], capacity=3)
        )
        assert answer["ack"] == ["t0"]
        assert (await queue.get("t0")).state is TaskState.SUCCESS  # type: ignore[union-attr]
        await queue.kill("t1", "test")
        answer = await send_beat(queue, hb("a", 1, [("t1", 2), ("t2", 3)], capacity=3))
        assert answer["shutdown"] == ["t1"]
        assert (await queue.get("t1")).state is TaskState.FAILED  # type: ignore[union-attr]
        # the worker restarted and lost t2
        await send_beat(queue, hb("a", 1, [], capacity=3))
        t2 = await queue.get("t2")
        assert t2 is not None and t2.state is TaskState.FAILED and "no longer runs" in (t2.error or "")

    asyncio.run(go())


def test_a_task_that_succeeded_before_its_kill_reached_it_is_recorded_succeeded(queue: TaskQueue) -> None:
    """The supervisor may kill a task of a group it sees committed while that very task is exiting
    SUCCESS (it published): the worker's report of that end stands; a FAILED end keeps the kill."""

    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=3, version="1"))
        for i in range(2):
            await queue.submit(_spec(f"t{i}"))
        await send_beat(queue, hb("a", 1, capacity=3))
        await send_beat(queue, hb("a", 1, [("t0", 1), ("t1", 2)], capacity=3))
        await queue.kill("t0", "its group is already committed")
        await queue.kill("t1", "test")
        assert (await queue.get("t0")).state is TaskState.FAILED  # type: ignore[union-attr]
        report = {"ingestionStatsAndErrors": {"payload": {"rowStats": {"buildSegments": {"processed": 5}}}}}
        done = [
            {"taskId": "t0", "status": "SUCCESS", "report": report},
            {"taskId": "t1", "status": "FAILED", "error": "killed by its worker"},
        ]
        answer = await send_beat(queue, hb("a", 1, [], done, capacity=3))
        assert sorted(answer["ack"]) == ["t0", "t1"]
        t0, t1 = await queue.get("t0"), await queue.get("t1")
        assert t0 is not None and t0.state is TaskState.SUCCESS and t0.error is None
        assert (await queue.get_row("t0")).report == report  # type: ignore[union-attr]
        assert t1 is not None and t1.state is TaskState.FAILED and "killed: test" in (t1.error or "")

    asyncio.run(go())


def test_lost_worker_fails_its_tasks(tmp_path: Path, clock: FakeClock) -> None:
    queue = _queue(tmp_path, 0.3, clock)

    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=1, version="1"))
        await queue.submit(_spec("t0"))
        await send_beat(queue, hb("a", 1, capacity=1))
        await send_beat(queue, hb("a", 1, [("t0", 1)], capacity=1))
        clock.advance(0.29)
        await queue.check_workers()
        assert [w.name for w in queue.workers()] == ["a:1"], "not lost before the timeout"
        clock.advance(0.11)
        await queue.check_workers()
        info = await queue.get("t0")
        assert info is not None and info.state is TaskState.FAILED and "lost" in (info.error or "")
        assert not queue.workers()

    asyncio.run(go())


def test_a_task_reported_by_the_wrong_worker_is_shut_down_there(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=1, version="1"))
        await queue.submit(_spec("t0"))
        await send_beat(queue, hb("a", 1, capacity=1))
        await send_beat(queue, hb("a", 1, [("t0", 1)], capacity=1))
        answer = await send_beat(queue, hb("b", 1, [("t0", 9), ("ghost", 8)], capacity=1))
        assert set(answer["shutdown"]) == {"t0", "ghost"}

    asyncio.run(go())


def test_the_end_of_a_duplicate_copy_does_not_end_the_task(queue: TaskQueue) -> None:
    """After an Overlord restart a task may run twice: started by a worker that got it from the
    old Overlord but rejoined late, and by the worker the new Overlord gave it to. The copy that is
    not the task's own is shut down; its end (killed: FAILED) is not the task's."""

    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=1, version="1"))
        await queue.register(WorkerRegistration(host="b", port=1, capacity=1, version="1"))
        await queue.submit(_spec("t0"))
        await send_beat(queue, hb("a", 1, capacity=1))
        await send_beat(queue, hb("a", 1, [("t0", 1)], capacity=1))  # t0 is a's
        answer = await send_beat(queue, hb("b", 1, [("t0", 9)], capacity=1))
        assert answer["shutdown"] == ["t0"]
        killed = [{"taskId": "t0", "status": "FAILED", "error": "task process exited with code -9"}]
        answer = await send_beat(queue, hb("b", 1, [], killed, capacity=1))
        assert answer["ack"] == ["t0"]
        t0 = await queue.get("t0")
        assert t0 is not None and t0.state is TaskState.RUNNING
        done = [{"taskId": "t0", "status": "SUCCESS"}]
        await send_beat(queue, hb("a", 1, [], done, capacity=1))
        t0 = await queue.get("t0")
        assert t0 is not None and t0.state is TaskState.SUCCESS

    asyncio.run(go())


# ---------------------------------------------------------------- long poll (held heartbeats)


def _held(queue: TaskQueue, report: dict[str, Any], wait_s: float) -> asyncio.Task[dict[str, Any]]:
    return asyncio.ensure_future(send_beat(queue, {**report, "waitS": wait_s}))


async def _still_held(clock: FakeClock, beat: asyncio.Task[dict[str, Any]]) -> bool:
    """Whether the heartbeat waits on the queue's clock (and has not been answered)."""
    await asyncio.sleep(0)
    return clock.sleepers == 1 and not beat.done()


async def _at_once(beat: Any) -> dict[str, Any]:
    """The answer, which must come without the (fake) clock moving: a held heartbeat never would."""
    answer: dict[str, Any] = await asyncio.wait_for(beat, 1.0)
    return answer


def test_a_held_heartbeat_is_answered_as_soon_as_a_task_is_assigned(
    queue: TaskQueue, clock: FakeClock
) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=2, version="1"))
        beat = _held(queue, hb("a", 1), 5.0)
        await clock.until_sleeping()
        clock.advance(4.9)
        assert await _still_held(clock, beat), "nothing new for the worker: the heartbeat is held"
        await queue.submit(_spec("t0"))
        answer = await _at_once(beat)
        assert [a["task"]["id"] for a in answer["assign"]] == ["t0"]

    asyncio.run(go())


def test_a_held_heartbeat_ends_after_the_wait_and_still_counts(tmp_path: Path, clock: FakeClock) -> None:
    queue = _queue(tmp_path, 3.0, clock)  # holds at most a third of the worker timeout: 1 s

    async def go() -> None:
        beat = _held(queue, hb("a", 1), 0.3)
        await clock.until_sleeping()
        clock.advance(0.25)
        assert await _still_held(clock, beat)
        clock.advance(0.05 + 1e-9)
        answer = await _at_once(beat)
        assert answer == {"assign": [], "shutdown": [], "ack": []}
        beat = _held(queue, hb("a", 1), 30)
        await clock.until_sleeping()
        clock.advance(0.9)
        assert await _still_held(clock, beat)
        clock.advance(0.1 + 1e-9)
        await _at_once(beat)
        clock.advance(2.9)  # the held heartbeat counts as seen at its end, not at its start
        await queue.check_workers()
        assert [w.name for w in queue.workers()] == ["a:1"]

    asyncio.run(go())


def test_what_is_new_is_answered_at_once(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=2, version="1"))
        await queue.submit(_spec("t0"))
        answer = await _at_once(_held(queue, hb("a", 1), 5.0))  # an assignment waits
        assert [a["task"]["id"] for a in answer["assign"]] == ["t0"]
        answer = await _at_once(_held(queue, hb("b", 1, [("ghost", 9)]), 5.0))  # a kill
        assert answer["shutdown"] == ["ghost"]
        answer = await _at_once(_held(queue, hb("a", 1, capacity=0), 5.0))  # a stopping worker
        assert answer["assign"] == []
        await _at_once(send_beat(queue, hb("a", 1)))  # no waitS: a plain heartbeat

    asyncio.run(go())


def test_a_kill_ends_a_held_heartbeat_and_is_not_news_again(queue: TaskQueue, clock: FakeClock) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=2, version="1"))
        await queue.submit(_spec("t0"))
        await send_beat(queue, hb("a", 1))
        await send_beat(queue, hb("a", 1, [("t0", 7)]))
        beat = _held(queue, hb("a", 1, [("t0", 7)]), 5.0)
        await clock.until_sleeping()
        assert await _still_held(clock, beat)
        await queue.kill("t0", "test")
        answer = await _at_once(beat)
        assert answer["shutdown"] == ["t0"]
        # repeated while the worker still reports the task, but no reason to answer early
        beat = _held(queue, hb("a", 1, [("t0", 7)]), 0.3)
        await clock.until_sleeping()
        clock.advance(0.25)
        assert await _still_held(clock, beat)
        clock.advance(0.05 + 1e-9)
        answer = await _at_once(beat)
        assert answer["shutdown"] == ["t0"]

    asyncio.run(go())

"""The Overlord's task queue and worker registry, on a real SQLite metadata store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from overlord.metadata.engine import migrate
from overlord.metadata.store import MetadataStore
from overlord.task_queue import TaskQueue
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


def _queue(tmp_path: Path, worker_timeout_s: float) -> TaskQueue:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url)
    return TaskQueue(
        MetadataStore(url), worker_timeout_s=worker_timeout_s, deep_storage=(tmp_path / "deep").as_uri()
    )


@pytest.fixture
def queue(tmp_path: Path) -> TaskQueue:
    # long enough that a slow machine never loses a worker by accident
    return _queue(tmp_path, 60.0)


async def beat(queue: TaskQueue, report: dict[str, Any]) -> dict[str, Any]:
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
        to_b = (await beat(queue, hb("b", 1, capacity=3)))["assign"]
        to_a = (await beat(queue, hb("a", 1, capacity=1)))["assign"]
        assert len(to_b) == 2 and len(to_a) == 1
        tid = to_a[0]["task"]["id"]
        await beat(queue, hb("a", 1, [(tid, 4242)], capacity=1))
        info = await queue.get(tid)
        assert info is not None and info.location is not None and info.location.port == 4242
        # the assignment is repeated until the worker reports the task
        again = (await beat(queue, hb("b", 1, capacity=3)))["assign"]
        assert {a["task"]["id"] for a in again} == {a["task"]["id"] for a in to_b}

    asyncio.run(go())


def test_completion_kill_and_vanished_tasks(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=3, version="1"))
        for i in range(3):
            await queue.submit(_spec(f"t{i}"))
        await beat(queue, hb("a", 1, capacity=3))
        await beat(queue, hb("a", 1, [("t0", 1), ("t1", 2), ("t2", 3)], capacity=3))
        answer = await beat(
            queue, hb("a", 1, [("t1", 2), ("t2", 3)], [{"taskId": "t0", "status": "SUCCESS"}], capacity=3)
        )
        assert answer["ack"] == ["t0"]
        assert (await queue.get("t0")).state is TaskState.SUCCESS  # type: ignore[union-attr]
        await queue.kill("t1", "test")
        answer = await beat(queue, hb("a", 1, [("t1", 2), ("t2", 3)], capacity=3))
        assert answer["shutdown"] == ["t1"]
        assert (await queue.get("t1")).state is TaskState.FAILED  # type: ignore[union-attr]
        # the worker restarted and lost t2
        await beat(queue, hb("a", 1, [], capacity=3))
        t2 = await queue.get("t2")
        assert t2 is not None and t2.state is TaskState.FAILED and "no longer runs" in (t2.error or "")

    asyncio.run(go())


def test_lost_worker_fails_its_tasks(tmp_path: Path) -> None:
    queue = _queue(tmp_path, 0.3)

    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=1, version="1"))
        await queue.submit(_spec("t0"))
        await beat(queue, hb("a", 1, capacity=1))
        await beat(queue, hb("a", 1, [("t0", 1)], capacity=1))
        time.sleep(0.4)
        await queue.check_workers()
        info = await queue.get("t0")
        assert info is not None and info.state is TaskState.FAILED and "lost" in (info.error or "")
        assert not queue.workers()

    asyncio.run(go())


def test_a_task_reported_by_the_wrong_worker_is_shut_down_there(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=1, version="1"))
        await queue.submit(_spec("t0"))
        await beat(queue, hb("a", 1, capacity=1))
        await beat(queue, hb("a", 1, [("t0", 1)], capacity=1))
        answer = await beat(queue, hb("b", 1, [("t0", 9), ("ghost", 8)], capacity=1))
        assert set(answer["shutdown"]) == {"t0", "ghost"}

    asyncio.run(go())


# ---------------------------------------------------------------- long poll (held heartbeats)


def _held(queue: TaskQueue, report: dict[str, Any], wait_s: float) -> asyncio.Task[dict[str, Any]]:
    return asyncio.ensure_future(beat(queue, {**report, "waitS": wait_s}))


def test_a_held_heartbeat_is_answered_as_soon_as_a_task_is_assigned(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=2, version="1"))
        beat = _held(queue, hb("a", 1), 5.0)
        await asyncio.sleep(0.2)
        assert not beat.done(), "nothing new for the worker: the heartbeat is held"
        began = time.monotonic()
        await queue.submit(_spec("t0"))
        answer = await asyncio.wait_for(beat, 2.0)
        assert time.monotonic() - began < 1.0
        assert [a["task"]["id"] for a in answer["assign"]] == ["t0"]

    asyncio.run(go())


def test_a_held_heartbeat_ends_after_the_wait_and_still_counts(tmp_path: Path) -> None:
    queue = _queue(tmp_path, 3.0)  # holds at most a third of the worker timeout: 1 s

    async def go() -> None:
        began = time.monotonic()
        answer = await beat(queue, {**hb("a", 1), "waitS": 0.3})
        assert 0.25 <= time.monotonic() - began < 1.0
        assert answer == {"assign": [], "shutdown": [], "ack": []}
        began = time.monotonic()
        await beat(queue, {**hb("a", 1), "waitS": 30})
        assert 0.9 <= time.monotonic() - began < 2.0
        await queue.check_workers()
        assert [w.name for w in queue.workers()] == ["a:1"]

    asyncio.run(go())


def test_what_is_new_is_answered_at_once(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=2, version="1"))
        await queue.submit(_spec("t0"))
        began = time.monotonic()
        answer = await beat(queue, {**hb("a", 1), "waitS": 5.0})  # an assignment waits
        assert [a["task"]["id"] for a in answer["assign"]] == ["t0"]
        answer = await beat(queue, {**hb("b", 1, [("ghost", 9)]), "waitS": 5.0})  # a kill
        assert answer["shutdown"] == ["ghost"]
        answer = await beat(queue, {**hb("a", 1, capacity=0), "waitS": 5.0})  # a stopping worker
        assert answer["assign"] == []
        await beat(queue, hb("a", 1))  # no waitS: a plain heartbeat
        assert time.monotonic() - began < 1.0

    asyncio.run(go())


def test_a_kill_ends_a_held_heartbeat_and_is_not_news_again(queue: TaskQueue) -> None:
    async def go() -> None:
        await queue.register(WorkerRegistration(host="a", port=1, capacity=2, version="1"))
        await queue.submit(_spec("t0"))
        await beat(queue, hb("a", 1))
        await beat(queue, hb("a", 1, [("t0", 7)]))
        held = _held(queue, hb("a", 1, [("t0", 7)]), 5.0)
        await asyncio.sleep(0.2)
        assert not held.done()
        await queue.kill("t0", "test")
        answer = await asyncio.wait_for(held, 1.0)
        assert answer["shutdown"] == ["t0"]
        # repeated while the worker still reports the task, but no reason to answer early
        began = time.monotonic()
        answer = await beat(queue, {**hb("a", 1, [("t0", 7)]), "waitS": 0.3})
        assert answer["shutdown"] == ["t0"] and time.monotonic() - began >= 0.25

    asyncio.run(go())

"""Workers coming and going, against the real task queue on SQLite and the supervisor on fakes:
tasks spread by free slots, a stopping worker's unstarted tasks go elsewhere, a silent worker is
lost, a restarted worker's vanished tasks fail, and a discarded group re-reads from the right place."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from overlord.metadata import MetadataStore, make_engine, migrate
from overlord.task_queue import TaskQueue
from supervisor.clock import FakeClock
from supervisor.offsets import PartitionOffsets
from supervisor.ports import StoredOffsets, TaskState
from supervisor.protocol import Heartbeat
from supervisor.task_spec import KafkaIndexTaskSpec
from tests.unit.test_supervisor_loop import (
    FakeOffsets,
    FakeStream,
    FakeTasks,
    make_spec,
    make_supervisor,
    run,
)

TIMEOUT_S = 5.0


def _task(n: int) -> KafkaIndexTaskSpec:
    spec = make_spec(replicas=1)
    return KafkaIndexTaskSpec(
        id=f"task-{n}",
        data_source="ds",
        supervisor_id="ds",
        group_id=n,
        sequence_name=f"seq-{n}",
        topic="events",
        start_offsets={n: 0},
        end_offsets=None,
        consumer_properties={"bootstrap.servers": "127.0.0.1:9"},
        supervisor_spec=spec.to_json(),
        created_time=f"2026-01-01T00:00:0{n}.000Z",
    )


def _beat(
    queue: TaskQueue, worker: str, capacity: int = 2, running: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    report = {
        "host": "10.0.0.1",
        "port": int(worker),
        "capacity": capacity,
        "running": [{"taskId": t, "port": 7000} for t in running or []],
        "completed": [],
        **extra,
    }
    answer: dict[str, Any] = asyncio.run(queue.heartbeat(Heartbeat.model_validate(report))).to_json()
    return answer


def _assigned(answer: dict[str, Any]) -> list[str]:
    return [str(item["task"]["id"]) for item in answer["assign"]]


@pytest.fixture
def queue_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(tmp_path: Path, queue_clock: FakeClock) -> TaskQueue:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    migrate(url)
    return TaskQueue(MetadataStore(make_engine(url)), TIMEOUT_S, str(tmp_path / "deep"), clock=queue_clock)


def _status(queue: TaskQueue, task_id: str) -> tuple[str, str | None]:
    row = asyncio.run(queue.get_row(task_id))
    assert row is not None
    return row.status, row.error


def test_tasks_spread_by_free_slots(queue: TaskQueue) -> None:
    for w in ("1", "2", "3"):
        _beat(queue, w)
    for n in range(3):
        asyncio.run(queue.submit(_task(n)))
    got = {w: _assigned(_beat(queue, w)) for w in ("1", "2", "3")}
    assert sorted(len(v) for v in got.values()) == [1, 1, 1], got


def test_a_stopping_worker_gives_up_tasks_it_has_not_started(queue: TaskQueue) -> None:
    _beat(queue, "1")
    asyncio.run(queue.submit(_task(0)))
    assert _assigned(_beat(queue, "1")) == ["task-0"]
    _beat(queue, "2")
    # worker 1 stops before it started the task: it reports no free slot and nothing running
    assert _assigned(_beat(queue, "1", capacity=0)) == []
    assert _assigned(_beat(queue, "2")) == ["task-0"]


def test_a_restarted_worker_fails_the_tasks_it_no_longer_runs(queue: TaskQueue) -> None:
    _beat(queue, "1")
    asyncio.run(queue.submit(_task(0)))
    asyncio.run(queue.submit(_task(1)))
    _beat(queue, "1")
    _beat(queue, "1", running=["task-0", "task-1"])
    assert _status(queue, "task-0")[0] == "RUNNING"
    # back after a crash, same address: it runs task-1 (say) but task-0 is gone
    _beat(queue, "1", running=["task-1"])
    status, error = _status(queue, "task-0")
    assert status == "FAILED" and "no longer runs" in str(error)
    assert _status(queue, "task-1")[0] == "RUNNING"
    # a task reported as completed is not "vanished"
    answer = _beat(
        queue, "1", completed=[{"taskId": "task-1", "status": "SUCCESS", "error": None, "report": None}]
    )
    assert answer["ack"] == ["task-1"] and _status(queue, "task-1")[0] == "SUCCESS"


def test_a_silent_worker_is_lost_after_the_timeout(queue: TaskQueue, queue_clock: FakeClock) -> None:
    _beat(queue, "1")
    _beat(queue, "2")
    asyncio.run(queue.submit(_task(0)))
    first = "1" if _assigned(_beat(queue, "1")) else "2"
    _beat(queue, first, running=["task-0"])
    other = "2" if first == "1" else "1"
    queue_clock.advance(TIMEOUT_S / 2)
    _beat(queue, other)
    asyncio.run(queue.check_workers())
    assert _status(queue, "task-0")[0] == "RUNNING", "not before the timeout"
    queue_clock.advance(TIMEOUT_S / 2 + 1)
    _beat(queue, other)
    asyncio.run(queue.check_workers())
    status, error = _status(queue, "task-0")
    assert status == "FAILED" and "lost" in str(error)
    assert {w.name for w in queue.workers()} == {f"10.0.0.1:{other}"}


# ---------------------------------------------------------------------- the supervisor's side


@pytest.fixture
def fakes() -> tuple[FakeClock, FakeStream, FakeTasks, FakeOffsets]:
    clock = FakeClock()
    return clock, FakeStream({0: 100, 1: 200, 2: 300, 3: 400}), FakeTasks(clock), FakeOffsets()


def _publishing_group_dies(fakes: Any, committed: bool) -> tuple[dict[int, int], dict[int, int], Any]:
    """Group 0 publishes; its only task dies before anyone hears how (a lost worker)."""
    clock, _, tasks, offsets = fakes
    sup = make_supervisor(fakes, make_spec(replicas=1))
    run(sup.run_once())
    for t in tasks.running():
        t.current = {p: o + 10 for p, o in t.current.items()}
    start = next(dict(t.spec.start_offsets) for t in tasks.running() if t.spec.group_id == 0)
    clock.advance(61)
    run(sup.run_once())
    publisher = next(t for t in tasks.publishing() if t.spec.group_id == 0)
    end = dict(publisher.end or {})
    if committed:
        assert offsets.stored is not None
        offsets.stored = StoredOffsets("events", offsets.stored.offsets.plus(PartitionOffsets(end)))
    publisher.state = TaskState.FAILED
    run(sup.run_once())
    return start, end, tasks


def test_a_group_that_died_after_its_publish_committed_reads_on_from_the_stored_offsets(fakes: Any) -> None:
    _, end, tasks = _publishing_group_dies(fakes, committed=True)
    g0 = [t for t in tasks.reading() if t.spec.group_id == 0]
    assert len(g0) == 1 and g0[0].spec.start_offsets == end, "not the committed range again"


def test_a_group_that_died_before_its_publish_reads_its_range_again(fakes: Any) -> None:
    start, _, tasks = _publishing_group_dies(fakes, committed=False)
    g0 = [t for t in tasks.reading() if t.spec.group_id == 0]
    assert len(g0) == 1 and g0[0].spec.start_offsets == start

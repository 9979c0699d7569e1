"""The supervisor's run loop against fakes of its ports (no Kafka, no HTTP, no database)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from supervisor import reports
from supervisor.clock import FakeClock
from supervisor.errors import Unavailable
from supervisor.notices import Notice, NoticeQueue
from supervisor.offsets import PartitionOffsets
from supervisor.ports import (
    RunnerState,
    StoredOffsets,
    TaskInfo,
    TaskLocation,
    TaskProgress,
    TaskRunStatus,
    TaskState,
)
from supervisor.spec import parse_supervisor_spec
from supervisor.state import BasicState, DetailedState, StateManager
from supervisor.supervisor import Supervisor
from supervisor.task_spec import KafkaIndexTaskSpec


@dataclass
class FakeStream:
    latest: dict[int, int]
    earliest: dict[int, int] = field(default_factory=dict)
    down: bool = False
    # partition -> offset just past the last real record (markers lie beyond it)
    data: dict[int, int] = field(default_factory=dict)

    def partitions(self) -> list[int]:
        if self.down:
            from supervisor.errors import StreamError

            raise StreamError("broker down")
        return sorted(self.latest)

    def latest_offsets(self, partitions: list[int]) -> PartitionOffsets:
        return PartitionOffsets({p: self.latest[p] for p in partitions})

    def earliest_offsets(self, partitions: list[int]) -> PartitionOffsets:
        return PartitionOffsets({p: self.earliest.get(p, 0) for p in partitions})

    def scan_for_records(self, offsets: PartitionOffsets) -> tuple[set[int], PartitionOffsets]:
        with_records = {p for p, o in offsets.items() if self.data.get(p, 0) > o}
        ends = {p: self.latest[p] for p in offsets if p not in with_records}
        return with_records, PartitionOffsets(ends)

    def close(self) -> None:
        pass


@dataclass
class FakeTask:
    spec: KafkaIndexTaskSpec
    state: TaskState = TaskState.RUNNING
    location: TaskLocation | None = None
    current: dict[int, int] = field(default_factory=dict)
    end: dict[int, int] | None = None
    paused: bool = False
    responsive: bool = True
    started: float | None = None
    rows: int = 0
    # what the task's progress report asks for (maxTotalRows, intermediateHandoffPeriod)
    handoff_requested: str | None = None


class FakeTasks:
    """Task queue + task chat in one: tasks 'run' as soon as they are submitted."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.tasks: dict[str, FakeTask] = {}
        self.killed: list[str] = []
        self._port = 9000

    # TaskQueuePort
    async def submit(self, spec: KafkaIndexTaskSpec) -> None:
        self._port += 1
        self.tasks[spec.id] = FakeTask(
            spec,
            location=TaskLocation("127.0.0.1", self._port),
            current=dict(spec.start_offsets),
            started=self.clock.now(),
        )

    async def kill(self, task_id: str, reason: str) -> None:
        t = self.tasks[task_id]
        if t.state is TaskState.RUNNING:
            t.state = TaskState.FAILED
            self.killed.append(task_id)

    def _info(self, t: FakeTask) -> TaskInfo:
        return TaskInfo(t.spec.id, t.spec, t.state, RunnerState.RUNNING, t.location)

    async def tasks_for(self, datasource: str) -> list[TaskInfo]:
        return [self._info(t) for t in self.tasks.values() if t.state is TaskState.RUNNING]

    async def get(self, task_id: str) -> TaskInfo | None:
        t = self.tasks.get(task_id)
        return self._info(t) if t else None

    # TaskClientPort
    def _live(self, task_id: str) -> FakeTask:
        t = self.tasks[task_id]
        if not t.responsive or t.state is not TaskState.RUNNING:
            raise Unavailable(f"{task_id} does not answer")
        return t

    async def status(self, loc: TaskLocation, task_id: str) -> TaskRunStatus:
        t = self._live(task_id)
        if t.end is not None:
            return TaskRunStatus.PUBLISHING
        return TaskRunStatus.PAUSED if t.paused else TaskRunStatus.READING

    async def start_time(self, loc: TaskLocation, task_id: str) -> float | None:
        return self._live(task_id).started

    async def progress(self, loc: TaskLocation, task_id: str) -> TaskProgress:
        t = self._live(task_id)
        status = TaskRunStatus.PUBLISHING if t.end is not None else TaskRunStatus.READING
        return TaskProgress(
            status, t.started, PartitionOffsets(t.current), {}, {"processed": t.rows}, t.handoff_requested
        )

    async def pause(self, loc: TaskLocation, task_id: str) -> PartitionOffsets:
        t = self._live(task_id)
        t.paused = True
        return PartitionOffsets(t.current)

    async def resume(self, loc: TaskLocation, task_id: str) -> None:
        self._live(task_id).paused = False

    async def current_offsets(self, loc: TaskLocation, task_id: str) -> PartitionOffsets:
        return PartitionOffsets(self._live(task_id).current)

    async def end_offsets(self, loc: TaskLocation, task_id: str) -> PartitionOffsets | None:
        t = self._live(task_id)
        return PartitionOffsets(t.end) if t.end is not None else None

    async def set_end_offsets(
        self, loc: TaskLocation, task_id: str, offsets: PartitionOffsets, finish: bool
    ) -> None:
        t = self._live(task_id)
        assert t.paused, "end offsets are only set on a paused task"
        assert all(offsets[p] >= t.current[p] for p in t.current)
        t.end = dict(offsets)
        t.paused = False

    async def row_stats(self, loc: TaskLocation, task_id: str) -> dict[str, Any]:
        return {}

    # helpers
    def read(self, records: int) -> None:
        """Every running task reads ``records`` more records of each of its partitions."""
        for t in self.running():
            t.current = {p: o + records for p, o in t.current.items()}

    def running(self) -> list[FakeTask]:
        return [t for t in self.tasks.values() if t.state is TaskState.RUNNING]

    def reading(self) -> list[FakeTask]:
        return [t for t in self.running() if t.end is None]

    def publishing(self) -> list[FakeTask]:
        return [t for t in self.running() if t.end is not None]


class FakeOffsets:
    def __init__(self, stored: dict[int, int] | None = None, stream: str = "events") -> None:
        self.stored = None if stored is None else StoredOffsets(stream, PartitionOffsets(stored))
        self.resets = 0

    async def stored_offsets(self, datasource: str) -> StoredOffsets | None:
        return self.stored

    async def reset_offsets(self, datasource: str) -> None:
        self.stored = None
        self.resets += 1

    async def reset_partitions(self, datasource: str, stream: str, offsets: PartitionOffsets) -> None:
        base = self.stored.offsets if self.stored is not None else PartitionOffsets()
        self.stored = StoredOffsets(stream, base.plus(offsets))


def make_spec(**io: Any) -> Any:
    io_config = {
        "topic": "events",
        "inputFormat": {"type": "json"},
        "consumerProperties": {"bootstrap.servers": "127.0.0.1:9"},
        "taskCount": 2,
        "replicas": 2,
        "taskDuration": "PT60S",
        "completionTimeout": "PT120S",
        "useEarliestOffset": True,
    }
    io_config.update(io)
    return parse_supervisor_spec(
        {"type": "kafka", "spec": {"dataSchema": {"dataSource": "ds"}, "ioConfig": io_config}}
    )


@pytest.fixture
def world() -> tuple[FakeClock, FakeStream, FakeTasks, FakeOffsets]:
    clock = FakeClock()
    return clock, FakeStream({0: 100, 1: 200, 2: 300, 3: 400}), FakeTasks(clock), FakeOffsets()


def make_supervisor(world: Any, spec: Any = None) -> Supervisor:
    clock, stream, tasks, offsets = world
    return Supervisor(
        spec or make_spec(), stream=stream, tasks=tasks, chat=tasks, offsets=offsets, clock=clock
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def run_past_task_duration(sup: Supervisor, clock: FakeClock) -> None:
    """The taskDuration of ``make_spec`` (60s) elapses; the next run ends the reading groups."""
    clock.advance(61)
    run(sup.run_once())


def test_groups_by_partition_modulo_task_count_with_replicas(world: Any) -> None:
    _, _, tasks, offsets = world
    offsets.stored = StoredOffsets("events", PartitionOffsets({0: 10, 2: 20}))
    sup = make_supervisor(world)
    run(sup.run_once())
    assert len(tasks.running()) == 4  # 2 groups x 2 replicas
    by_group: dict[int, set[str]] = {}
    for t in tasks.running():
        by_group.setdefault(t.spec.group_id, set()).add(t.spec.sequence_name)
        assert t.spec.start_offsets == ({0: 10, 2: 20} if t.spec.group_id == 0 else {1: 0, 3: 0})
    # replicas of a group share one sequence name; groups differ
    assert all(len(names) == 1 for names in by_group.values())
    assert by_group[0] != by_group[1]
    assert sup.state.basic is BasicState.RUNNING


def test_initial_offsets_are_recorded_before_tasks_start(world: Any) -> None:
    _, _, _tasks, offsets = world
    offsets.stored = StoredOffsets("events", PartitionOffsets({0: 10}))
    run(make_supervisor(world).run_once())
    assert offsets.stored is not None and dict(offsets.stored.offsets) == {0: 10, 1: 0, 2: 0, 3: 0}


def test_task_duration_hands_off_and_next_group_starts_at_the_end_offsets(world: Any) -> None:
    clock, _, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    first = {t.spec.id: t for t in tasks.running()}
    for t in first.values():  # replicas progress unevenly
        t.current = {
            p: o + (5 if t.spec.id.endswith(("0", "2", "4", "6", "8")) else 7) for p, o in t.current.items()
        }
    run_past_task_duration(sup, clock)
    publishing = tasks.publishing()
    assert {t.spec.id for t in publishing} == set(first)
    for t in publishing:
        group_max = {
            p: max(o.current[p] for o in first.values() if o.spec.group_id == t.spec.group_id)
            for p in t.current
        }
        assert t.end == group_max
    new = tasks.reading()
    assert len(new) == 4
    for t in new:
        ends = next(p.end for p in publishing if p.spec.group_id == t.spec.group_id)
        assert t.spec.start_offsets == ends


def test_published_group_is_dropped_and_replicas_killed(world: Any) -> None:
    clock, _, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    run_past_task_duration(sup, clock)
    g0 = [t for t in tasks.publishing() if t.spec.group_id == 0]
    g0[0].state = TaskState.SUCCESS
    run(sup.run_once())
    assert g0[1].state is TaskState.FAILED and g0[1].spec.id in tasks.killed
    _, pending = sup.task_groups()
    assert 0 not in pending and len(pending[1]) == 1


def test_failed_reading_task_is_replaced_from_the_same_start(world: Any) -> None:
    _, _, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    victim = tasks.running()[0]
    victim.state = TaskState.FAILED
    run(sup.run_once())
    replacements = [t for t in tasks.running() if t.spec.group_id == victim.spec.group_id]
    assert len(replacements) == 2
    for t in replacements:
        assert t.spec.start_offsets == victim.spec.start_offsets
        assert t.spec.sequence_name == victim.spec.sequence_name


def test_failed_publishing_group_restarts_reading_from_its_start(world: Any) -> None:
    clock, _, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    tasks.read(10)
    start_g0 = next(t.spec.start_offsets for t in tasks.running() if t.spec.group_id == 0)
    run_past_task_duration(sup, clock)
    for t in tasks.publishing():
        if t.spec.group_id == 0:
            t.state = TaskState.FAILED
    run(sup.run_once())
    g0 = [t for t in tasks.running() if t.spec.group_id == 0]
    assert len(g0) == 2
    assert all(t.spec.start_offsets == start_g0 for t in g0)
    assert sup.state.recent_errors


def test_a_group_whose_commit_landed_is_not_read_again(world: Any) -> None:
    clock, _, tasks, offsets = world
    sup = make_supervisor(world)
    run(sup.run_once())
    tasks.read(10)
    run_past_task_duration(sup, clock)
    g0 = [t for t in tasks.publishing() if t.spec.group_id == 0]
    # the publish committed, then both replicas died before they heard so
    assert offsets.stored is not None
    offsets.stored = StoredOffsets("events", offsets.stored.offsets.plus(g0[0].end or {}))
    for t in g0:
        t.state = TaskState.FAILED
    reading0 = {t.spec.id for t in tasks.reading() if t.spec.group_id == 0}
    run(sup.run_once())
    assert not (reading0 & set(tasks.killed)), "the next generation must read on"
    _, pending = sup.task_groups()
    assert 0 not in pending


def test_completion_timeout_kills_the_group(world: Any) -> None:
    clock, _, tasks, _ = world
    sup = make_supervisor(world, make_spec(completionTimeout="PT10S"))
    run(sup.run_once())
    run_past_task_duration(sup, clock)
    publishing = {t.spec.id for t in tasks.publishing()}
    clock.advance(10)
    run(sup.run_once())
    assert not publishing & set(tasks.killed), "the timeout has not passed yet"
    clock.advance(0.001)
    run(sup.run_once())
    assert publishing <= set(tasks.killed)


def test_unresponsive_task_is_replaced(world: Any) -> None:
    _, _, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    frozen = tasks.running()[0]
    frozen.responsive = False
    for _ in range(4):
        run(sup.run_once())
    assert frozen.spec.id in tasks.killed
    assert len([t for t in tasks.running() if t.spec.group_id == frozen.spec.group_id]) == 2


def test_a_task_that_cannot_pause_is_killed_and_its_replica_decides(world: Any) -> None:
    clock, _, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    g0 = [t for t in tasks.running() if t.spec.group_id == 0]
    g0[0].current = {p: o + 50 for p, o in g0[0].current.items()}
    g0[1].current = {p: o + 10 for p, o in g0[1].current.items()}
    # the frozen one is ahead, but it cannot answer: the end comes from the live replica
    g0[0].responsive = False
    run_past_task_duration(sup, clock)
    assert g0[0].spec.id in tasks.killed
    assert g0[1].end == g0[1].current


def test_adopts_running_tasks_after_a_restart(world: Any) -> None:
    clock, _stream, tasks, _offsets = world
    first = make_supervisor(world)
    run(first.run_once())
    run_past_task_duration(first, clock)
    before = {t.spec.id for t in tasks.running()}
    second = make_supervisor(world)  # a new Overlord: same tasks, fresh supervisor
    run(second.run_once())
    assert {t.spec.id for t in tasks.running()} == before
    assert not tasks.killed
    reading, pending = second.task_groups()
    assert len(reading) == 2 and sum(len(v) for v in pending.values()) == 2


def test_adopted_paused_task_is_resumed(world: Any) -> None:
    _, _, tasks, _ = world
    run(make_supervisor(world).run_once())
    victim = tasks.running()[0]
    victim.paused = True  # the old Overlord died between pause and end offsets
    run(make_supervisor(world).run_once())
    assert not victim.paused and victim.state is TaskState.RUNNING


def test_spec_change_kills_reading_tasks_that_no_longer_fit(world: Any) -> None:
    _, _, tasks, _ = world
    run(make_supervisor(world).run_once())
    old = {t.spec.id for t in tasks.running()}
    changed = make_spec(taskCount=1)
    run(make_supervisor(world, changed).run_once())
    assert old <= set(tasks.killed)
    assert len(tasks.running()) == 2 and all(
        set(t.spec.start_offsets) == {0, 1, 2, 3} for t in tasks.running()
    )


def test_suspended_supervisor_hands_off_and_creates_nothing(world: Any) -> None:
    _, _, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    suspended = make_supervisor(world, make_spec().with_suspended(True))
    run(suspended.run_once())
    assert len(tasks.publishing()) == 4 and not tasks.reading()
    assert suspended.state.basic is BasicState.SUSPENDED


def test_reset_kills_tasks_and_clears_offsets(world: Any) -> None:
    _, _, tasks, offsets = world
    offsets.stored = StoredOffsets("events", PartitionOffsets({0: 5}))
    sup = make_supervisor(world)
    run(sup.run_once())
    before = {t.spec.id for t in tasks.running()}
    run(sup._reset())
    assert before <= set(tasks.killed) and offsets.resets == 1


def test_lost_offsets_make_it_unhealthy_unless_reset_automatically(world: Any) -> None:
    _, stream, tasks, offsets = world
    stream.earliest = {0: 50, 1: 0, 2: 0, 3: 0}
    offsets.stored = StoredOffsets("events", PartitionOffsets({0: 10}))
    sup = make_supervisor(world)
    for _ in range(3):
        run(sup.run_once())
    assert sup.state.basic is BasicState.UNHEALTHY_SUPERVISOR
    assert "no longer available" in sup.state.recent_errors[-1].message
    assert not [t for t in tasks.running() if t.spec.group_id == 0]

    auto = parse_supervisor_spec(
        {
            **make_spec().to_json(),
            "spec": {
                **make_spec().to_json()["spec"],
                "tuningConfig": {"type": "kafka", "resetOffsetAutomatically": True},
            },
        }
    )
    sup2 = make_supervisor(world, auto)
    run(sup2.run_once())
    g0 = [t for t in tasks.running() if t.spec.group_id == 0]
    assert g0 and all(t.spec.start_offsets[0] == 50 for t in g0)


def test_stream_down_turns_unable_to_connect(world: Any) -> None:
    _, stream, _tasks, _ = world
    stream.down = True
    sup = make_supervisor(world)
    for _ in range(3):
        run(sup.run_once())
    assert sup.state.detailed is DetailedState.UNABLE_TO_CONNECT_TO_STREAM
    assert not sup.state.healthy


def test_lag_is_never_negative_and_uses_one_snapshot(world: Any) -> None:
    _, stream, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    for t in tasks.running():
        t.current = {p: stream.latest[p] + 5 if p == 0 else stream.latest[p] - 3 for p in t.current}
    run(sup.run_once())
    lag = reports.lag(sup.view())
    assert lag[0] == 0 and all(v == 3 for p, v in lag.items() if p != 0)
    status = reports.status_payload(sup.view())["payload"]
    assert status["aggregateLag"] == 9 and status["partitions"] == 4


def test_notice_queue_deduplicates() -> None:
    async def go() -> list[str]:
        q = NoticeQueue()
        assert q.push(Notice("run"))
        assert not q.push(Notice("run"))
        assert q.push(Notice("handoff", "1"))
        got = [await q.get(), await q.get()]
        assert q.push(Notice("run"))
        return [n.kind for n in got]

    assert run(go()) == ["run", "handoff"]


def test_state_thresholds() -> None:
    sm = StateManager()
    sm.transition(DetailedState.RUNNING)
    for _ in range(2):
        sm.record_error("boom")
        sm.end_run(DetailedState.RUNNING)
    assert sm.healthy
    sm.record_error("boom")
    sm.end_run(DetailedState.RUNNING)
    assert sm.basic is BasicState.UNHEALTHY_SUPERVISOR
    for _ in range(3):
        sm.end_run(DetailedState.RUNNING)
    assert sm.basic is BasicState.RUNNING
    sm.stop()
    with pytest.raises(Exception, match="cannot go"):
        sm.transition(DetailedState.RUNNING)


def idle_spec() -> Any:
    base = make_spec().to_json()
    base["spec"]["ioConfig"]["idleConfig"] = {"enabled": True, "inactiveAfterMillis": 10_000}
    return parse_supervisor_spec(base)


def test_idle_after_inactivity_and_wake_on_records_not_on_markers(world: Any) -> None:
    clock, stream, tasks, offsets = world
    sup = make_supervisor(world, idle_spec())
    run(sup.run_once())
    for t in tasks.running():  # caught up
        t.current = {p: stream.latest[p] for p in t.current}
    run(sup.run_once())
    clock.advance(11)
    run(sup.run_once())
    assert sup.state.basic is BasicState.IDLE
    assert not tasks.reading() and len(tasks.publishing()) == 4
    for t in tasks.publishing():
        t.state = TaskState.SUCCESS
    run(sup.run_once())
    # a transaction marker moves the latest offset of partition 0 by one: still idle
    stream.latest[0] += 1
    stream.data = {p: o for p, o in stream.latest.items()}
    stream.data[0] -= 1
    run(sup.run_once())
    assert sup.state.basic is BasicState.IDLE and not tasks.reading()
    assert offsets.stored is not None and offsets.stored.offsets[0] == stream.latest[0]
    # a real record wakes it, and the next tasks start past the marker
    stream.latest[1] += 1
    stream.data[1] = stream.latest[1]
    run(sup.run_once())
    run(sup.run_once())
    assert sup.state.basic is BasicState.RUNNING
    starts = {p: o for t in tasks.reading() for p, o in t.spec.start_offsets.items()}
    assert starts[0] == stream.latest[0]


def test_new_partition_is_read_from_earliest_and_ends_its_group_early(world: Any) -> None:
    _clock, stream, tasks, _ = world
    sup = make_supervisor(world, make_spec(useEarliestOffset=False))
    run(sup.run_once())
    first = {t.spec.id for t in tasks.running()}
    stream.latest[4] = 50
    stream.earliest[4] = 7
    run(sup.run_once())
    run(sup.run_once())
    group0 = [t for t in tasks.reading() if t.spec.group_id == 0]
    assert group0 and all(t.spec.start_offsets[4] == 7 for t in group0)
    assert all(t.spec.id in first for t in tasks.reading() if t.spec.group_id == 1)


def test_reset_offsets_restarts_only_affected_groups(world: Any) -> None:
    _, _, tasks, offsets = world
    sup = make_supervisor(world)
    run(sup.run_once())
    g1 = {t.spec.id for t in tasks.running() if t.spec.group_id == 1}
    g0 = {t.spec.id for t in tasks.running() if t.spec.group_id == 0}
    run(sup._reset_offsets(PartitionOffsets({2: 123})))
    run(sup.run_once())
    assert g0 <= set(tasks.killed) and not (g1 & set(tasks.killed))
    new0 = [t for t in tasks.running() if t.spec.group_id == 0]
    assert all(t.spec.start_offsets == {0: 0, 2: 123} for t in new0)
    assert offsets.stored is not None and offsets.stored.offsets[2] == 123


def test_time_lag_and_stats(world: Any) -> None:
    _clock, _stream, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    for t in tasks.running():
        t.rows = 42
    run(sup.run_once())
    stats = reports.stats(sup.view())
    assert set(stats) == {"0", "1"}
    assert all(v["totals"]["buildSegments"]["processed"] == 42 for g in stats.values() for v in g.values())

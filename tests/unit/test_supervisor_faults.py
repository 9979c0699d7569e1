"""Supervisor regressions found by the fault-injection suite (tests/e2e/faults.py, test_bad_input.py)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import pytest

from supervisor.clock import FakeClock
from supervisor.errors import MetadataStoreUnavailable
from supervisor.offsets import PartitionOffsets
from supervisor.ports import StoredOffsets, TaskState
from supervisor.spec import parse_supervisor_spec
from supervisor.state import BasicState
from tests.unit.test_supervisor_loop import (
    FakeOffsets,
    FakeStream,
    FakeTasks,
    make_spec,
    make_supervisor,
    run,
    run_past_task_duration,
)


@pytest.fixture
def world() -> tuple[FakeClock, FakeStream, FakeTasks, FakeOffsets]:
    clock = FakeClock()
    return clock, FakeStream({0: 100}), FakeTasks(clock), FakeOffsets({0: 50})


def _spec(reset_automatically: bool) -> Any:
    base = make_spec(taskCount=1, replicas=1).to_json()
    return parse_supervisor_spec(
        {
            **base,
            "spec": {
                **base["spec"],
                "tuningConfig": {"type": "kafka", "resetOffsetAutomatically": reset_automatically},
            },
        }
    )


def _recreate_topic(world: Any) -> None:
    """The topic is deleted and recreated: the log now ends at 5, offset 50 is gone."""
    _, stream, tasks, _ = world
    stream.latest = {0: 5}
    stream.earliest = {0: 0}
    for t in tasks.running():
        t.state = TaskState.FAILED  # the reading task hit OffsetOutOfRange


def test_reading_group_whose_offsets_left_the_stream_waits_for_a_reset(world: Any) -> None:
    """Regression: every replacement task started from the lost offsets and failed again, forever,
    while the supervisor only reported failing tasks (UNHEALTHY_TASKS), never why."""
    _, _, tasks, offsets = world
    sup = make_supervisor(world, _spec(False))
    run(sup.run_once())
    assert [t.spec.start_offsets for t in tasks.running()] == [{0: 50}]
    created = len(tasks.tasks)
    _recreate_topic(world)
    for _ in range(4):
        run(sup.run_once())
    assert len(tasks.tasks) == created, "no task is started from offsets that are gone"
    assert sup.state.basic is BasicState.UNHEALTHY_SUPERVISOR
    assert "is no longer available" in sup.state.recent_errors[-1].message
    assert offsets.stored is not None and dict(offsets.stored.offsets) == {0: 50}  # untouched
    # the operator resets: reading starts over from the earliest offset
    run(sup._reset())
    run(sup.run_once())
    assert [t.spec.start_offsets for t in tasks.running()] == [{0: 0}]


def test_reading_group_whose_offsets_left_the_stream_resets_automatically(world: Any) -> None:
    _, _, tasks, offsets = world
    sup = make_supervisor(world, _spec(True))
    run(sup.run_once())
    failed = tasks.running()[0]
    _recreate_topic(world)
    run(sup.run_once())
    (replacement,) = tasks.running()
    assert replacement.spec.start_offsets == {0: 0}
    assert replacement.spec.sequence_name != failed.spec.sequence_name
    assert offsets.stored == StoredOffsets("events", PartitionOffsets({0: 0}))
    assert any("no longer available" in e.message for e in sup.state.recent_errors)


def test_automatic_reset_writes_only_the_lost_partitions(world: Any) -> None:
    """Regression: the reset wrote every checked partition back to the store, not only the lost ones."""
    _, stream, tasks, offsets = world
    stream.latest = {0: 100, 1: 100}
    offsets.stored = StoredOffsets("events", PartitionOffsets({0: 50, 1: 60}))
    sup = make_supervisor(world, _spec(True))
    run(sup.run_once())
    writes: list[dict[int, int]] = []
    real = offsets.reset_partitions

    async def spy(datasource: str, stream_name: str, o: PartitionOffsets) -> None:
        writes.append(dict(o))
        await real(datasource, stream_name, o)

    offsets.reset_partitions = spy
    stream.latest = {0: 5, 1: 100}
    stream.earliest = {0: 0, 1: 0}
    for t in tasks.running():
        t.state = TaskState.FAILED
    run(sup.run_once())
    assert writes == [{0: 0}]
    assert [t.spec.start_offsets for t in tasks.running()] == [{0: 0, 1: 60}]


def test_healthy_group_that_lost_its_tasks_is_replaced_from_the_same_start(world: Any) -> None:
    _, _, tasks, _ = world
    sup = make_supervisor(world, _spec(False))
    run(sup.run_once())
    (first,) = tasks.running()
    first.state = TaskState.FAILED
    run(sup.run_once())
    (replacement,) = tasks.running()
    assert replacement.spec.start_offsets == first.spec.start_offsets
    assert replacement.spec.sequence_name == first.spec.sequence_name


def test_running_supervisor_whose_tasks_all_died_starts_new_ones_without_a_state_error(world: Any) -> None:
    """Regression: with every task gone (a failed publish discards the reading group too), creating
    the next tasks tried RUNNING -> CREATING_TASKS (PENDING), an illegal transition: the run failed
    and no task was created until the next one."""
    clock, _, tasks, _ = world
    sup = make_supervisor(world, _spec(False))
    run(sup.run_once())
    run(sup.run_once())
    assert sup.state.basic is BasicState.RUNNING
    run_past_task_duration(sup, clock)  # the group publishes, the next one starts
    for t in tasks.running():
        t.state = TaskState.FAILED  # publishing and reading tasks die together (a lost worker)
    run(sup.run_once())
    assert not [e for e in sup.state.recent_errors if "cannot go from" in e.message]
    assert len(tasks.running()) == 1
    assert sup.state.basic is BasicState.RUNNING


def test_a_group_starting_over_from_old_offsets_gets_a_sequence_of_its_own(world: Any) -> None:
    """Regression: the sequence name was a function of the start offsets only. After a reset (or a
    topic deleted and recreated) reading starts again from offsets an earlier group started from;
    the new group got that group's sequence name, the store saw the sequence already committed with
    other segments and refused every publish, forever."""
    _, _, tasks, offsets = world
    offsets.stored = None
    sup = make_supervisor(world, _spec(False))
    run(sup.run_once())
    (first,) = tasks.running()
    assert first.spec.start_offsets == {0: 0}
    run(sup._reset())
    run(sup.run_once())
    (again,) = tasks.running()
    assert again.spec.start_offsets == {0: 0}
    assert again.spec.sequence_name != first.spec.sequence_name


def test_replicas_and_replacements_share_their_group_sequence(world: Any) -> None:
    _, _, tasks, _ = world
    sup = make_supervisor(world, make_spec(taskCount=1, replicas=2))
    run(sup.run_once())
    a, b = tasks.running()
    assert a.spec.sequence_name == b.spec.sequence_name
    a.state = TaskState.FAILED
    run(sup.run_once())
    assert {t.spec.sequence_name for t in tasks.running()} == {b.spec.sequence_name}


@pytest.mark.parametrize(
    "datasource", ["y" * 255, "hash#mark", "question?mark", "per%cent", "sp ace", "ünï-数据", "a'b\"c"]
)
def test_task_ids_and_sequence_names_are_safe_whatever_the_datasource(world: Any, datasource: str) -> None:
    """Regression (fault suite, odd datasource names): task ids and sequence names carried the
    datasource verbatim. ``#``, ``?`` and ``%`` broke the task's control URL (the supervisor never
    reached its tasks) and a 255-byte name made ids too long for a directory name."""
    _, _, tasks, offsets = world
    offsets.stored = None
    base = make_spec(taskCount=1, replicas=1).to_json()
    schema = {**base["spec"]["dataSchema"], "dataSource": datasource}
    sup = make_supervisor(
        world, parse_supervisor_spec({**base, "spec": {**base["spec"], "dataSchema": schema}})
    )
    run(sup.run_once())
    (task,) = tasks.running()
    for name in (task.spec.id, task.spec.sequence_name):
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", name), name
        assert len(name) <= 128
    assert task.spec.data_source == datasource


async def _store_down(*_args: Any) -> Any:
    raise MetadataStoreUnavailable("metadata store unavailable, retry later: OperationalError: refused")


def test_a_metadata_store_outage_is_one_warning_a_run_and_the_next_run_recovers(
    world: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: while PostgreSQL was down every run logged a full traceback."""
    _, _, tasks, offsets = world
    sup = make_supervisor(world, _spec(False))
    # every step that asks the store fails (here: discovering tasks, their status, the offsets)
    monkeypatch.setattr(tasks, "tasks_for", _store_down)
    monkeypatch.setattr(offsets, "stored_offsets", _store_down)
    with caplog.at_level(logging.DEBUG, logger="supervisor.supervisor"):
        run(sup.run_once())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "supervisor[ds]: discover_tasks: metadata store unavailable, retry later: OperationalError: refused"
    ]
    assert warnings[0].exc_info is None
    assert [e.kind for e in sup.state.recent_errors] == ["MetadataStoreUnavailable"]
    assert not tasks.tasks
    monkeypatch.undo()  # the store is back
    run(sup.run_once())
    assert [t.spec.start_offsets for t in tasks.running()] == [{0: 50}]


def test_a_reset_during_a_metadata_store_outage_is_retried_not_lost(
    world: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, _, tasks, offsets = world
    base = _spec(False).to_json()
    base["spec"]["ioConfig"]["period"] = "PT0.1S"
    sup = make_supervisor(world, parse_supervisor_spec(base))

    async def until(check: Any, timeout_s: float = 5.0) -> None:
        """Wait for ``check``, one period of the supervisor's clock per poll (real time bounded)."""
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, "timed out"
            clock.advance(0.1)
            await asyncio.sleep(0.01)

    async def scenario() -> Any:
        sup.start()  # the loop; its ticker waits startDelay (5s of the clock) before the first run
        try:
            sup.notify()
            await until(lambda: len(tasks.running()) == 1)
            (first,) = tasks.running()
            monkeypatch.setattr(offsets, "reset_offsets", _store_down)
            sup.request_reset()
            await until(lambda: len([r for r in caplog.records if "run failed" in r.getMessage()]) >= 2)
            failed = [r for r in caplog.records if "run failed" in r.getMessage()]
            assert all(r.levelno == logging.WARNING and r.exc_info is None for r in failed)
            assert offsets.resets == 0 and offsets.stored is not None
            monkeypatch.undo()  # the store is back: the reset goes through at its next try
            await until(lambda: offsets.resets == 1)
            await until(lambda: len(tasks.running()) == 1 and tasks.running()[0] is not first)
            return first
        finally:
            await sup.stop(graceful=False)

    with caplog.at_level(logging.WARNING, logger="supervisor.supervisor"):
        first = run(scenario())
    assert offsets.resets == 1
    assert first.spec.id in tasks.killed
    assert [t.spec.start_offsets for t in tasks.running()] == [{0: 0}]

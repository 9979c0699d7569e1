"""A task that cannot start never takes its MiddleManager down.

Regression (fault suite, odd datasource names): a 255-byte datasource made a task id too long for a
directory name; ``mkdir`` raised out of the heartbeat loop and killed the MiddleManager, and every
worker the Overlord then gave the task to died the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from middlemanager.config import MiddleManagerSettings
from middlemanager.worker import MiddleManager
from tests.harness.stub_overlord import FakeOverlord, task_spec


def _middlemanager(tmp_path: Path) -> MiddleManager:
    return MiddleManager(MiddleManagerSettings(task_dir=tmp_path / "tasks"))


@pytest.mark.parametrize(
    "task_id",
    ["index_kafka_" + "y" * 300, "../../escape", "..", "a/b", ""],
    ids=["too-long", "traversal", "dotdot", "slash", "empty"],
)
def test_a_task_that_cannot_start_is_reported_failed_and_the_worker_lives_on(
    tmp_path: Path, task_id: str
) -> None:
    mm = _middlemanager(tmp_path)
    overlord = FakeOverlord([{"assign": [{"task": task_spec(task_id)}]}, {}])
    mm._overlord = overlord  # type: ignore[assignment]
    asyncio.run(mm._heartbeat())  # must not raise
    asyncio.run(mm._heartbeat())
    (entry,) = overlord.reports[1][1]["completed"]
    assert entry["taskId"] == task_id
    assert entry["status"] == "FAILED"
    assert "could not start" in entry["error"]
    assert not (tmp_path.parent / "escape").exists()
    assert [p.name for p in tmp_path.iterdir()] in (["tasks"], [])

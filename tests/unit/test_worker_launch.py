"""A task that cannot start never takes its MiddleManager down.

Regression (fault suite, odd datasource names): a 255-byte datasource made a task id too long for a
directory name; ``mkdir`` raised out of the heartbeat loop and killed the MiddleManager, and every
worker the Overlord then gave the task to died the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from middlemanager.config import MiddleManagerSettings
from middlemanager.worker import MiddleManager


class _Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self.status = 200
        self._body = body

    async def json(self) -> dict[str, Any]:
        return self._body

    async def text(self) -> str:
        return ""

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None


class _Session:
    """Answers each heartbeat with the next of ``answers``; keeps the reports."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.reports: list[dict[str, Any]] = []

    def post(self, _url: str, json: dict[str, Any], **_kw: Any) -> _Answer:
        self.reports.append(json)
        return _Answer(self.answers.pop(0) if self.answers else {})


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
    session = _Session([{"assign": [{"task": {"id": task_id}, "deepStorage": str(tmp_path / "deep")}]}, {}])
    mm._session = session  # type: ignore[assignment]
    asyncio.run(mm._heartbeat())  # must not raise
    asyncio.run(mm._heartbeat())
    (entry,) = session.reports[1]["completed"]
    assert entry["taskId"] == task_id
    assert entry["status"] == "FAILED"
    assert "could not start" in entry["error"]
    assert not (tmp_path.parent / "escape").exists()
    assert [p.name for p in tmp_path.iterdir()] in (["tasks"], [])

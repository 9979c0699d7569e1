"""What keeps a handoff short on the MiddleManager's side (issue 6).

The heartbeat is a long poll: it asks the Overlord to hold it (``waitS``), and the worker heart-beats
again at once after an answer that started or killed something, while an early answer with nothing
new (an Overlord that does not hold) does not make it spin. A stop signal does not wait for a held
heartbeat. Warm peons: a task goes to a process that was started (and imported everything) before
the task existed; it still has its own log file and status, dies with its worker, and is replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from middlemanager import peon, worker
from middlemanager.config import MiddleManagerSettings
from middlemanager.worker import WARM_LOG, MiddleManager
from supervisor.clock import FakeClock
from supervisor.protocol import CompletedTaskReport
from supervisor.task_spec import KafkaIndexTaskSpec
from tests.harness.stub_overlord import FakeOverlord, task_spec

REPO = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, **kw: Any) -> MiddleManagerSettings:
    return MiddleManagerSettings(task_dir=tmp_path / "tasks", **kw)


def _run(mm: MiddleManager, overlord: FakeOverlord, clock: FakeClock, stop_at_s: float = 0) -> None:
    """Run the worker's loop on ``clock``, moving it on in small steps whenever everything waits on it,
    until the loop ends (``stop_at_s`` of that clock, or the Overlord's ``stop_after``)."""
    mm._overlord = overlord  # type: ignore[assignment]

    async def go() -> None:
        stop = asyncio.Event()
        overlord.stop = stop
        run = asyncio.ensure_future(mm.run(stop))
        for _ in range(10_000):  # bounded: 10,000 steps of 10 ms of the fake clock
            await asyncio.sleep(0.001)  # let the loop act on what the last step woke
            if run.done():
                break
            if stop_at_s and clock.monotonic() >= stop_at_s:
                stop.set()
            try:
                await clock.until_sleeping(timeout_s=0.2)
            except TimeoutError:
                continue  # the loop is busy (or ending): let it run
            clock.advance(0.01)
        await asyncio.wait_for(run, 10)

    asyncio.run(go())


# ---------------------------------------------------------------- long poll


def test_the_worker_asks_to_be_held_and_reports_a_start_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    mm = MiddleManager(_settings(tmp_path, heartbeat_s=0.5, warm_peons=0), clock)
    # the assigned task cannot start (its id is no file name): news to report, without a process
    bad = {"assign": [{"task": task_spec("a/b")}]}
    overlord = FakeOverlord([bad], stop_after=3, clock=clock)
    _run(mm, overlord, clock)
    (t1, first), (t2, second), (t3, _third) = overlord.reports[:3]
    assert first["waitS"] == 0.5 and second["waitS"] == 0.5
    assert t2 - t1 < 0.25, "the failed start is reported at once, not a heartbeat period later"
    assert t3 - t2 >= 0.5, "an answer held as long as asked is followed by the next heartbeat"
    assert [c["taskId"] for c in second["completed"]] == ["a/b"]
    drain = overlord.reports[-1][1]
    assert drain["capacity"] == 0 and drain["waitS"] == 0


def test_an_overlord_that_answers_at_once_does_not_make_the_worker_spin(tmp_path: Path) -> None:
    clock = FakeClock()
    mm = MiddleManager(_settings(tmp_path, heartbeat_s=0.3, warm_peons=0), clock)
    overlord = FakeOverlord([], hold=False, clock=clock)
    _run(mm, overlord, clock, stop_at_s=1.0)
    times = [t for t, _ in overlord.reports]
    assert 4 <= len(times) <= 6  # at 0, 0.3, 0.6, 0.9 s of the clock, and the one of the drain
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]
    assert all(g >= 0.29 for g in gaps), gaps


def test_a_stop_does_not_wait_for_a_held_heartbeat(tmp_path: Path) -> None:
    clock = FakeClock()
    mm = MiddleManager(_settings(tmp_path, heartbeat_s=8.0, warm_peons=0), clock)
    overlord = FakeOverlord([], clock=clock)
    _run(mm, overlord, clock, stop_at_s=0.3)
    assert clock.monotonic() < 1.0, "the held heartbeat (8 s) was given up at the stop"
    assert [r["capacity"] for _, r in overlord.reports] == [2, 0]


# ---------------------------------------------------------------- warm peons


def _wait_exit(mm: MiddleManager, task_id: str, timeout_s: float = 60.0) -> CompletedTaskReport:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mm._reap()
        if task_id in mm._completed:
            return mm._completed[task_id]
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end in {timeout_s}s")


def test_a_task_goes_to_the_warm_peon_which_is_then_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "WARM_RESPAWN_DELAY_S", 0.0)
    mm = MiddleManager(_settings(tmp_path, warm_peons=1))
    mm.task_root.mkdir(parents=True)
    try:
        mm._keep_warm()
        (warm,) = mm._warm
        mm._keep_warm()
        assert mm._warm == [warm], "one warm peon is enough"
        assert mm._launch(KafkaIndexTaskSpec.model_validate(task_spec("t1")))
        assert mm._tasks["t1"].process is warm and mm._warm == []
        entry = _wait_exit(mm, "t1")
        assert entry.status == "FAILED"
        assert "type: is required" in (entry.error or "")  # from the task's status.json
        log = (mm.task_root / "t1" / "log").read_text()
        assert "task[t1] exiting FAILED" in log  # the task's own log file
        assert "t1" not in (mm.task_root / WARM_LOG).read_text()
        mm._keep_warm()
        (replacement,) = mm._warm
        assert replacement.pid != warm.pid
    finally:
        mm._retire_warm()
    assert mm._warm == [] and replacement.poll() is not None


def test_a_warm_peon_that_died_is_not_given_a_task_nor_replaced_at_once(tmp_path: Path) -> None:
    mm = MiddleManager(_settings(tmp_path, warm_peons=1))
    mm.task_root.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], stdin=subprocess.PIPE)
    dead.wait(30)
    mm._warm = [dead]
    assert mm._take_warm(mm.task_root) is None
    mm._warm = [dead]
    mm._keep_warm()
    assert mm._warm == [], "a warm peon that crashed may crash again: wait before the next one"


def test_a_warm_peon_without_a_task_exits_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    class _EmptyStdin:
        buffer = __import__("io").BytesIO(b"")

    monkeypatch.setattr(sys, "stdin", _EmptyStdin())
    assert peon.main(["--warm", "--overlord", "http://127.0.0.1:1"]) == 0


def test_a_peon_needs_a_task_or_warm(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        peon.main(["--overlord", "http://127.0.0.1:1"])
    assert "--warm" in capsys.readouterr().err


def _state(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return None
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_warm_peon_dies_with_its_worker(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from middlemanager.config import MiddleManagerSettings
        from middlemanager.worker import MiddleManager
        mm = MiddleManager(MiddleManagerSettings(task_dir=Path({str(tmp_path / "tasks")!r})))
        mm.task_root.mkdir(parents=True)
        mm._keep_warm()
        print(mm._warm[0].pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert _state(pid) not in (None, "Z")
    finally:
        parent.kill()
        parent.wait(30)
    deadline = time.monotonic() + 10
    while _state(pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(pid) in (None, "Z"), "the warm peon outlived its MiddleManager"


def test_the_order_a_warm_peon_gets_names_the_task(tmp_path: Path) -> None:
    mm = MiddleManager(_settings(tmp_path, warm_peons=1))
    cat = subprocess.Popen(
        [sys.executable, "-c", "import sys; print(sys.stdin.readline(), end='')"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    mm._warm = [cat]
    assert mm._take_warm(tmp_path / "t9") is cat
    assert cat.stdout is not None
    out = cat.stdout.read()
    cat.wait(30)
    assert json.loads(out) == {
        "taskFile": str(tmp_path / "t9" / "task.json"),
        "taskDir": str(tmp_path / "t9"),
    }

"""Process control: the Overlord and MiddleManagers (and their task processes) as OS processes, started,
stopped, restarted on the same ports, killed with SIGKILL and frozen with SIGSTOP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overlord.client import OverlordClient, http, wait_for
from tests.harness.services import REPO_ROOT, free_port


@dataclass
class Proc:
    name: str
    cmd: list[str]
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def send(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        if self.popen is None:
            return None
        self.send(sig)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            return self.popen.wait(10)

    def kill9(self) -> None:
        """SIGKILL, and wait until it is gone."""
        self.send(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(30)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process ``pid`` stopped with SIGSTOP for the block, continued (SIGCONT) after it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)


@dataclass
class TaskProc:
    """A running task process, as its MiddleManager lists it."""

    middlemanager: str
    task_id: str
    pid: int
    port: int | None
    sequence: str
    status: str | None = None


def task_status(t: TaskProc, timeout: float = 0.5) -> str | None:
    """What the task says it is doing (its control path), or None if it does not answer."""
    if not t.port:
        return None
    try:
        code, body = http(
            "GET", f"http://127.0.0.1:{t.port}/druid/worker/v1/chat/{t.task_id}/status", timeout=timeout
        )
    except OSError:
        return None
    return str(body) if code == 200 else None


@dataclass
class Cluster:
    """An Overlord and MiddleManagers; each can be stopped, killed, frozen and started again on its port."""

    workdir: Path
    metadata_url: str
    overlord_port: int = field(default_factory=free_port)
    procs: dict[str, Proc] = field(default_factory=dict)
    # extra environment for every process (e.g. OVERLORD_AUTH_USERS)
    env: dict[str, str] = field(default_factory=dict)
    worker_timeout_s: float = 6.0
    mm_capacity: int = 4
    # the Overlord's --deep-storage: a URI (s3://...), else the local directory deep_storage
    deep_storage_uri: str | None = None
    _sequences: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.overlord_port}"

    @property
    def deep_storage(self) -> Path:
        return self.workdir / "deep-storage"

    @property
    def api(self) -> OverlordClient:
        return OverlordClient(self.url)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        return env

    # ------------------------------------------------------------------ start and stop

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "overlord", "migrate", "--metadata-url", self.metadata_url],
            check=True,
            cwd=REPO_ROOT,
            env=self._env(),
            capture_output=True,
        )

    def _start(self, name: str, args: list[str], port: int) -> Proc:
        proc = Proc(name, [sys.executable, "-m", *args], self.workdir / "logs" / f"{name}.log", self._env())
        proc.start()
        self.procs[name] = proc
        self._wait_healthy(name, port, 30)
        return proc

    def _wait_healthy(self, name: str, port: int, timeout_s: float) -> None:
        url = f"http://127.0.0.1:{port}/status/health"
        wait_for(f"{name} health", lambda: http("GET", url, timeout=2)[0] == 200, timeout_s)

    def start_overlord(self, worker_timeout_s: float | None = None) -> Proc:
        timeout = self.worker_timeout_s if worker_timeout_s is None else worker_timeout_s
        args = ["overlord", "serve", "--metadata-url", self.metadata_url]
        args += ["--deep-storage", self.deep_storage_uri or str(self.deep_storage)]
        args += ["--port", str(self.overlord_port)]
        args += ["--worker-timeout-s", str(timeout)]
        return self._start("overlord", args, self.overlord_port)

    def start_middlemanager(self, name: str = "mm1", capacity: int | None = None) -> Proc:
        port = free_port()
        args = ["middlemanager", "--overlord", self.url, "--port", str(port)]
        args += ["--capacity", str(self.mm_capacity if capacity is None else capacity)]
        args += ["--task-dir", str(self.workdir / name / "tasks"), "--shutdown-timeout-s", "10"]
        return self._start(name, args, port)

    def overlord_up(self) -> Proc:
        """Starts the Overlord; after it was stopped, again on its port."""
        return self.start_overlord()

    def middlemanager_up(self, name: str) -> Proc:
        """Starts the MiddleManager ``name``; after it was stopped, again on its port."""
        if name in self.procs:
            return self.restart(name)
        return self.start_middlemanager(name)

    def restart(self, name: str, timeout_s: float = 30.0) -> Proc:
        """Start a stopped process again with the same command line (same port), until healthy."""
        proc = self.procs[name]
        if proc.popen is not None and proc.popen.poll() is None:
            raise RuntimeError(f"{name} is still running")
        proc.start()
        self._wait_healthy(name, self.port(name), timeout_s)
        return proc

    def kill9(self, name: str) -> None:
        self.procs[name].kill9()

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    # ------------------------------------------------------------------ what runs where

    @property
    def middlemanagers(self) -> list[str]:
        return sorted(name for name in self.procs if name != "overlord")

    def port(self, name: str) -> int:
        """The port of the process ``name`` (``overlord`` or a MiddleManager)."""
        if name == "overlord":
            return self.overlord_port
        cmd = self.procs[name].cmd
        return int(cmd[cmd.index("--port") + 1])

    def health_url(self, name: str) -> str:
        """Where the process ``name`` (``overlord`` or a MiddleManager) answers /status/health."""
        return f"http://127.0.0.1:{self.port(name)}/status/health"

    def worker_task_list(self, name: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The tasks the MiddleManager ``name`` runs now (``taskId``, ``pid``, ``port``), as it says."""
        url = f"http://127.0.0.1:{self.port(name)}/druid/worker/v1/tasks"
        status, body = http("GET", url, timeout=timeout)
        if status != 200 or not isinstance(body, list):
            raise OSError(f"{name}: HTTP {status}: {body}")
        return body

    def worker_tasks(self, name: str) -> list[str]:
        """Ids of the tasks the MiddleManager ``name`` runs now, as the worker itself says."""
        return [str(t["taskId"]) for t in self.worker_task_list(name)]

    def task_procs(self, name: str) -> list[TaskProc]:
        """The task processes of the MiddleManager ``name`` (none when it does not answer)."""
        try:
            body = self.worker_task_list(name, timeout=2)
        except OSError:
            return []
        out = []
        for t in body:
            tid = str(t["taskId"])
            out.append(TaskProc(name, tid, int(t["pid"]), t.get("port"), self._sequence(name, tid)))
        return out

    def _sequence(self, mm: str, task_id: str) -> str:
        if task_id not in self._sequences:
            try:
                spec = json.loads((self.workdir / mm / "tasks" / task_id / "task.json").read_text())
                self._sequences[task_id] = str(spec["sequenceName"])
            except (OSError, ValueError, KeyError):
                return ""
        return self._sequences[task_id]

    def all_task_procs(self, with_status: bool = True) -> list[TaskProc]:
        procs = [t for mm in self.middlemanagers for t in self.task_procs(mm)]
        if with_status:
            for t in procs:
                t.status = task_status(t)
        return procs

    # ------------------------------------------------------------------ logs

    def overlord_log(self) -> str:
        try:
            return (self.workdir / "logs" / "overlord.log").read_text(errors="replace")
        except OSError:
            return ""

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.tail()}" for p in self.procs.values())


@contextlib.contextmanager
def running_cluster(
    workdir: Path,
    metadata_url: str,
    middlemanagers: Mapping[str, int] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    worker_timeout_s: float = 6.0,
    deep_storage: str | None = None,
) -> Iterator[Cluster]:
    """A migrated metadata store, an Overlord and the MiddleManagers ``name -> capacity``; the
    processes' logs are printed when the block fails, and every process is stopped at its end.
    ``deep_storage``: the Overlord's ``--deep-storage`` URI (default: a directory in ``workdir``)."""
    c = Cluster(
        workdir,
        metadata_url,
        env=dict(env or {}),
        worker_timeout_s=worker_timeout_s,
        deep_storage_uri=deep_storage,
    )
    try:
        c.migrate()
        c.start_overlord()
        for name, capacity in (middlemanagers or {}).items():
            c.start_middlemanager(name, capacity)
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


@contextlib.contextmanager
def sqlite_cluster(root: Path, slots: int = 2, **kwargs: Any) -> Iterator[Cluster]:
    """The common e2e cluster: SQLite metadata in ``root``, an Overlord and one MiddleManager
    (``mm1``) with ``slots`` task slots; ``kwargs`` as for :func:`running_cluster`."""
    with running_cluster(
        root / "cluster", f"sqlite:///{root / 'metadata.db'}", {"mm1": slots}, **kwargs
    ) as c:
        yield c

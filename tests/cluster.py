"""A real local cluster for end-to-end tests: Overlord and MiddleManagers as OS processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from overlord.client import OverlordClient, http, wait_for

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
                self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO, start_new_session=True
            )

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

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    workdir: Path
    metadata_url: str
    overlord_port: int = field(default_factory=free_port)
    procs: dict[str, Proc] = field(default_factory=dict)
    # extra environment for every process (e.g. OVERLORD_AUTH_USERS)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.overlord_port}"

    @property
    def deep_storage(self) -> Path:
        return self.workdir / "deep-storage"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        return env

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "overlord", "migrate", "--metadata-url", self.metadata_url],
            check=True,
            cwd=REPO,
            env=self._env(),
            capture_output=True,
        )

    def start_overlord(self, worker_timeout_s: float = 6.0) -> Proc:
        proc = Proc(
            "overlord",
            [
                sys.executable,
                "-m",
                "overlord",
                "serve",
                "--metadata-url",
                self.metadata_url,
                "--deep-storage",
                str(self.deep_storage),
                "--port",
                str(self.overlord_port),
                "--worker-timeout-s",
                str(worker_timeout_s),
            ],
            self.workdir / "logs" / "overlord.log",
            self._env(),
        )
        proc.start()
        self.procs["overlord"] = proc
        wait_for("overlord health", lambda: http("GET", f"{self.url}/status/health", timeout=2)[0] == 200, 30)
        return proc

    def start_middlemanager(self, name: str = "mm1", capacity: int = 4) -> Proc:
        port = free_port()
        proc = Proc(
            name,
            [
                sys.executable,
                "-m",
                "middlemanager",
                "--overlord",
                self.url,
                "--port",
                str(port),
                "--capacity",
                str(capacity),
                "--task-dir",
                str(self.workdir / name / "tasks"),
                "--shutdown-timeout-s",
                "10",
            ],
            self.workdir / "logs" / f"{name}.log",
            self._env(),
        )
        proc.start()
        self.procs[name] = proc
        wait_for(
            f"{name} health",
            lambda: http("GET", f"http://127.0.0.1:{port}/status/health", timeout=2)[0] == 200,
            30,
        )
        return proc

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.tail()}" for p in self.procs.values())

    def health_url(self, name: str) -> str:
        """Where the process ``name`` (``overlord`` or a MiddleManager) answers /status/health."""
        if name == "overlord":
            return f"{self.url}/status/health"
        cmd = self.procs[name].cmd
        return f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}/status/health"

    def restart(self, name: str, timeout_s: float = 30.0) -> Proc:
        """Start a stopped process again with the same command line (same port), until healthy."""
        proc = self.procs[name]
        if proc.popen is not None and proc.popen.poll() is None:
            raise RuntimeError(f"{name} is still running")
        proc.start()
        url = self.health_url(name)
        wait_for(f"{name} health", lambda: http("GET", url, timeout=2)[0] == 200, timeout_s)
        return proc

    def worker_tasks(self, name: str) -> list[str]:
        """Ids of the tasks the MiddleManager ``name`` runs now, as the worker itself says."""
        url = self.health_url(name).replace("/status/health", "/druid/worker/v1/tasks")
        status, body = http("GET", url, timeout=5)
        if status != 200:
            raise OSError(f"{name}: HTTP {status}: {body}")
        return [str(t["taskId"]) for t in body]

    @property
    def api(self) -> OverlordClient:
        return OverlordClient(self.url)


def read_segments(segments: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every row of the published Parquet files."""
    for seg in segments:
        table = pq.read_table(seg["loadSpec"]["path"])
        yield from table.to_pylist()


def event(event_id: str, ts_ms: int, **extra: Any) -> bytes:
    return json.dumps({"ts": ts_ms, "id": event_id, **extra}).encode()


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    """Plain idempotent producer; record i goes to partition i % partitions."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=i % partitions)
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def id_spec(datasource: str, topic: str, bootstrap: str, **io: Any) -> dict[str, Any]:
    """A rollup-off spec over events made by ``event``: one row per record, keyed by ``id``."""
    io_config: dict[str, Any] = {
        "topic": topic,
        "inputFormat": {"type": "json"},
        "consumerProperties": {"bootstrap.servers": bootstrap},
        "taskCount": 1,
        "replicas": 1,
        "taskDuration": "PT30S",
        "startDelay": "PT0.5S",
        "period": "PT1S",
        "useEarliestOffset": True,
        "completionTimeout": "PT2M",
    }
    io_config.update(io)
    return {
        "type": "kafka",
        "spec": {
            "dataSchema": {
                "dataSource": datasource,
                "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["id"]},
                "granularitySpec": {
                    "segmentGranularity": "hour",
                    "queryGranularity": "none",
                    "rollup": False,
                },
            },
            "ioConfig": io_config,
            "tuningConfig": {"type": "kafka"},
        },
    }


def published_ids(api: OverlordClient, datasource: str) -> list[str]:
    return [str(r["id"]) for r in read_segments(api.segments(datasource))]

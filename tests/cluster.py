"""A real local cluster for end-to-end tests: Overlord and MiddleManagers as OS processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow.parquet as pq

from overlord.client import OverlordClient, http, wait_for
from tests.support import free_port

__all__ = [
    "Answer",
    "Cluster",
    "Proc",
    "event",
    "free_port",
    "id_spec",
    "kafka_spec",
    "produce",
    "published_ids",
    "read_segments",
    "request",
    "running_cluster",
]

REPO = Path(__file__).resolve().parent.parent


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

    def port(self, name: str) -> int:
        """The port of the process ``name`` (``overlord`` or a MiddleManager)."""
        if name == "overlord":
            return self.overlord_port
        cmd = self.procs[name].cmd
        return int(cmd[cmd.index("--port") + 1])

    def health_url(self, name: str) -> str:
        """Where the process ``name`` (``overlord`` or a MiddleManager) answers /status/health."""
        return f"http://127.0.0.1:{self.port(name)}/status/health"

    def restart(self, name: str, timeout_s: float = 30.0) -> Proc:
        """Start a stopped process again with the same command line (same port), until healthy."""
        proc = self.procs[name]
        if proc.popen is not None and proc.popen.poll() is None:
            raise RuntimeError(f"{name} is still running")
        proc.start()
        url = self.health_url(name)
        wait_for(f"{name} health", lambda: http("GET", url, timeout=2)[0] == 200, timeout_s)
        return proc

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

    @property
    def api(self) -> OverlordClient:
        return OverlordClient(self.url)


@contextlib.contextmanager
def running_cluster(
    workdir: Path,
    metadata_url: str,
    middlemanagers: Mapping[str, int] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    worker_timeout_s: float = 6.0,
) -> Iterator[Cluster]:
    """A migrated metadata store, an Overlord and the MiddleManagers ``name -> capacity``; the
    processes' logs are printed when the block fails, and every process is stopped at its end."""
    c = Cluster(workdir, metadata_url, env=dict(env or {}))
    try:
        c.migrate()
        c.start_overlord(worker_timeout_s)
        for name, capacity in (middlemanagers or {}).items():
            c.start_middlemanager(name, capacity)
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


# ------------------------------------------------------------------------------------ HTTP


class Answer(NamedTuple):
    status: int
    body: Any  # the decoded JSON, else the text; None when empty
    headers: Message


def request(
    method: str,
    url: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Answer:
    """One request, with a JSON ``body`` or raw ``data`` and any headers; answers of every status."""
    if body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Answer(int(resp.status), _decoded(resp.read()), resp.headers)
    except urllib.error.HTTPError as e:
        return Answer(int(e.code), _decoded(e.read()), e.headers)


def _decoded(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


# ------------------------------------------------------------------------------------ data


def read_segments(segments: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every row of the published Parquet files."""
    for seg in segments:
        table = pq.read_table(seg["loadSpec"]["path"])
        yield from table.to_pylist()


def event(event_id: str, ts_ms: int, **extra: Any) -> bytes:
    return json.dumps({"ts": ts_ms, "id": event_id, **extra}).encode()


def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes | None],
    partitions: int | None = None,
    config: Mapping[str, Any] | None = None,
) -> list[tuple[int, int]]:
    """Idempotent producer; record i goes to partition i % partitions (without ``partitions``: where
    the producer puts it). Every record must be delivered; returns (partition, offset) of each."""
    from confluent_kafka import KafkaError, Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True, **(config or {})}
    )
    where: dict[int, tuple[int, int]] = {}

    def on_delivery(i: int) -> Callable[[KafkaError | None, Any], None]:
        def delivered(err: KafkaError | None, msg: Any) -> None:
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        return delivered

    for i, value in enumerate(values):
        if partitions is None:
            producer.produce(topic, value, on_delivery=on_delivery(i))
        else:
            producer.produce(topic, value, partition=i % partitions, on_delivery=on_delivery(i))
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return [where[i] for i in range(len(values))]


#: ioConfig of ``kafka_spec`` besides the topic, the input format and the consumer properties.
SPEC_IO_DEFAULTS: dict[str, Any] = {
    "taskCount": 1,
    "replicas": 1,
    "taskDuration": "PT30S",
    "startDelay": "PT0.5S",
    "period": "PT1S",
    "useEarliestOffset": True,
    "completionTimeout": "PT2M",
}


def kafka_spec(
    datasource: Any,
    topic: str,
    bootstrap: str,
    *,
    dimensions: Sequence[Any] = ("id",),
    metrics: Sequence[dict[str, Any]] | None = None,
    rollup: bool = False,
    query_granularity: str = "none",
    tuning: Mapping[str, Any] | None = None,
    **io: Any,
) -> dict[str, Any]:
    """A supervisor spec over JSON events with a millisecond ``ts``, in hourly segments.

    ``io`` sets ioConfig fields over ``SPEC_IO_DEFAULTS``; one set to None is left out.
    """
    io_config: dict[str, Any] = {
        "topic": topic,
        "inputFormat": {"type": "json"},
        "consumerProperties": {"bootstrap.servers": bootstrap},
    }
    io_config.update(SPEC_IO_DEFAULTS)
    io_config.update(io)
    data_schema: dict[str, Any] = {
        "dataSource": datasource,
        "timestampSpec": {"column": "ts", "format": "millis"},
        "dimensionsSpec": {"dimensions": list(dimensions)},
    }
    if metrics is not None:
        data_schema["metricsSpec"] = list(metrics)
    data_schema["granularitySpec"] = {
        "segmentGranularity": "hour",
        "queryGranularity": query_granularity,
        "rollup": rollup,
    }
    return {
        "type": "kafka",
        "spec": {
            "dataSchema": data_schema,
            "ioConfig": {k: v for k, v in io_config.items() if v is not None},
            "tuningConfig": {"type": "kafka", **(tuning or {})},
        },
    }


def id_spec(datasource: str, topic: str, bootstrap: str, **io: Any) -> dict[str, Any]:
    """A rollup-off spec over events made by ``event``: one row per record, keyed by ``id``."""
    return kafka_spec(datasource, topic, bootstrap, **io)


def published_ids(api: OverlordClient, datasource: str) -> list[str]:
    return [str(r["id"]) for r in read_segments(api.segments(datasource))]

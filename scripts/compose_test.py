"""The compose cluster for real (run by scripts/compose-test): images built here, S3 deep storage on
SeaweedFS, faults at container level; after each, the published rows are the produced records, once.

Stages (each timed): engine, images, up, access control, ingest (and Druid SQL through the Broker
container), then the faults: docker kill of a MiddleManager during ingestion, docker kill of the
Overlord, compose restart of postgres and of kafka, compose stop + up of everything,
--scale middlemanager=5 (and the Broker again, after its restart, over all the segments).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow.parquet as pq  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from confluent_kafka.cimpl import NewTopic  # noqa: E402

from supervisor.deep_storage import open_segment  # noqa: E402

PROJECT = "kpi-compose-test"
TOPIC = "edits"
DATASOURCE = "edits"
PARTITIONS = 4
TIMINGS: list[tuple[str, float]] = []


def log(msg: str) -> None:
    print(f"compose-test: {msg}", flush=True)


@contextmanager
def stage(name: str) -> Iterator[None]:
    started = time.monotonic()
    log(f"[{name}] ...")
    try:
        yield
    finally:
        took = time.monotonic() - started
        TIMINGS.append((name, took))
        log(f"[{name}] {took:.1f}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
            last = got
        except (OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f}s (last: {last!r})")


class Compose:
    def __init__(self, env: dict[str, str], files: list[Path], env_file: Path) -> None:
        self.env = env
        self.base = [env["COMPOSE"], "-p", PROJECT, "--env-file", str(env_file)]
        for f in files:
            self.base += ["-f", str(f)]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self.base, *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def docker(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"docker {shlex.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).stdout.split()

    def busy_middlemanager(self, api: Api) -> str:
        """The container of a MiddleManager that runs a task now (the Overlord's view, by address)."""

        def find() -> str | None:
            workers = api.ok("GET", "/druid/indexer/v1/workers")
            busy = {w["worker"]["ip"] for w in workers if w.get("runningTasks")}
            for cid in self.containers("middlemanager"):
                fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
                if busy & set(self.docker("inspect", "-f", fmt, cid).split()):
                    return cid
            return None

        found: str = wait_for("a MiddleManager running a task", find, 60)
        return found

    def up(self, scale: int) -> None:
        self.run("up", "-d", "--wait", "--no-build", "--scale", f"middlemanager={scale}", timeout=900)


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(
        self, method: str, path: str, body: Any = None, *, auth: bool = True, url: str | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request((url or self.url) + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, got = self.call(method, path, body)
        if status != 200:
            raise OSError(f"{method} {path}: HTTP {status}: {got}")
        return got

    def segments(self) -> list[dict[str, Any]]:
        got = self.ok("GET", f"/druid/coordinator/v1/metadata/datasources/{DATASOURCE}/segments?full")
        return list(got or [])


class Producing:
    """Produces numbered records to the topic from the host, in batches, as told."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20, "log_level": 3}
        )
        self.produced = 0
        self.base_ms = int(time.time() * 1000)
        self.errors: list[str] = []

    def batch(self, n: int) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                self.errors.append(str(err))

        for i in range(self.produced, self.produced + n):
            rec = {"ts": self.base_ms + i, "id": f"e{i}", "page": f"p{i % 97}", "added": i % 13}
            self.producer.produce(
                TOPIC, json.dumps(rec).encode(), partition=i % PARTITIONS, on_delivery=delivered
            )
            if i % 500 == 0:
                self.producer.poll(0)
        left = self.producer.flush(120)
        if left or self.errors:
            raise RuntimeError(f"produce: {left} undelivered, errors {self.errors[:3]}")
        self.produced += n

    @contextmanager
    def during(self, batches: int, n: int, pause_s: float) -> Iterator[None]:
        """Produces ``batches`` batches of ``n`` in the background while the block runs a fault."""
        failure: list[BaseException] = []

        def run() -> None:
            try:
                for _ in range(batches):
                    self.batch(n)
                    time.sleep(pause_s)
            except BaseException as e:  # reported by the main thread
                failure.append(e)

        t = threading.Thread(target=run, name="producer", daemon=True)
        t.start()
        try:
            yield
        finally:
            t.join(300)
            if failure:
                raise failure[0]


def check_exactly_once(api: Api, s3_env: dict[str, str], expected: int, timeout_s: float) -> None:
    """Waits until ``expected`` rows are published, then reads every segment back from S3."""

    def published() -> int | None:
        rows = sum(int(s.get("numRows", 0)) for s in api.segments())
        if rows > expected:
            raise AssertionError(f"{rows} rows published for {expected} records: duplicates")
        return rows if rows == expected else None

    wait_for(f"{expected} published rows", published, timeout_s, 2.0)
    segments = api.segments()
    counts: Counter[str] = Counter()
    for seg in segments:
        assert seg["loadSpec"]["type"] == "s3", seg["loadSpec"]
        with open_segment(seg["loadSpec"], s3_env) as f:
            counts.update(str(v) for v in pq.read_table(f, columns=["id"]).column("id").to_pylist())
    dups = [k for k, v in counts.items() if v > 1]
    missing = expected - len(counts)
    assert not dups and missing == 0, f"{len(dups)} duplicated ids (e.g. {dups[:3]}), {missing} missing"
    log(f"    {expected} records -> {sum(counts.values())} rows in {len(segments)} S3 segments, each once")


def check_broker(broker: Api, produced: int, timeout_s: float) -> None:
    """Druid SQL through the Broker container (segments read from S3 through its segment cache):
    ``COUNT(*)`` and a ``GROUP BY`` equal what the produced records make."""

    def sql(query: str) -> list[dict[str, Any]]:
        status, got = broker.call("POST", "/druid/v2/sql", {"query": query})
        if status != 200:  # not published yet (unknown table), Overlord restarting: asked again
            raise OSError(f"Broker: HTTP {status}: {str(got)[:300]}")
        return list(got)

    def counted() -> list[dict[str, Any]] | None:
        got = sql(f"SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM {DATASOURCE}")
        if got[0]["n"] > produced:
            raise AssertionError(f"the Broker counts {got[0]['n']} rows for {produced} records")
        return got if got[0]["n"] == produced else None

    count = wait_for(f"the Broker's COUNT(*) = {produced}", counted, timeout_s, 1.0)
    assert count == [{"n": produced, "ids": produced}], count
    groups = sql(
        f"SELECT page, COUNT(*) AS n, SUM(added) AS added FROM {DATASOURCE} GROUP BY page ORDER BY page"
    )
    expected: dict[str, list[int]] = {}
    for i in range(produced):  # what Producing.batch wrote
        row = expected.setdefault(f"p{i % 97}", [0, 0])
        row[0] += 1
        row[1] += i % 13
    want = [{"page": p, "n": n, "added": a} for p, (n, a) in sorted(expected.items())]
    assert groups == want, f"GROUP BY page through the Broker: {groups[:3]}... != {want[:3]}..."
    log(
        f"    Broker: COUNT(*) = COUNT(DISTINCT id) = {produced};"
        f" GROUP BY page: {len(groups)} groups, as produced"
    )


def spec(bootstrap: str) -> dict[str, Any]:
    """The example supervisor: one row per record (rollup off), hourly segments."""
    return {
        "type": "kafka",
        "spec": {
            "dataSchema": {
                "dataSource": DATASOURCE,
                "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["id", "page", {"name": "added", "type": "long"}]},
                "granularitySpec": {
                    "segmentGranularity": "hour",
                    "queryGranularity": "none",
                    "rollup": False,
                },
            },
            "ioConfig": {
                "topic": TOPIC,
                "inputFormat": {"type": "json"},
                "consumerProperties": {"bootstrap.servers": bootstrap},
                "taskCount": 2,
                "replicas": 1,
                "taskDuration": "PT30S",
                "startDelay": "PT1S",
                "period": "PT2S",
                "useEarliestOffset": True,
                "completionTimeout": "PT5M",
            },
            "tuningConfig": {"type": "kafka"},
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kafka-pull-indexer"
    state = args.state_dir or cache / "compose-test"
    state.mkdir(parents=True, exist_ok=True)
    total = time.monotonic()
    env = dict(os.environ)

    local_docker = str(REPO / "scripts" / "local-docker")
    # a daemon this run starts is stopped at its end; one already running is left alone
    engine_was_running = subprocess.run([local_docker, "status"], capture_output=True).returncode == 0
    with stage("engine"):
        host = subprocess.run(
            [str(REPO / "scripts" / "local-docker"), "start"], capture_output=True, text=True, check=True
        )
        env["DOCKER_HOST"] = host.stdout.split()[-1]
        for line in subprocess.run(
            [str(REPO / "scripts" / "local-docker"), "env"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
    with stage("images"):
        out = subprocess.run(
            [str(REPO / "scripts" / "compose-images")], env=env, capture_output=True, text=True
        )
        sys.stderr.write(out.stderr)
        if out.returncode != 0:
            raise RuntimeError("scripts/compose-images failed")
        for line in out.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value

    env_file = state / "compose.env"
    env_file.unlink(missing_ok=True)
    subprocess.run([str(REPO / "scripts" / "compose-env"), str(env_file)], check=True, capture_output=True)
    secrets_env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    admin_token = secrets_env["OVERLORD_AUTH_TOKENS"].rsplit(":", 1)[0]
    overlord_port, kafka_port, s3_port, broker_port = free_port(), free_port(), free_port(), free_port()
    with open(env_file, "a") as f:
        f.write(f"OVERLORD_PUBLISHED_PORT={overlord_port}\nKAFKA_HOST_PORT={kafka_port}\n")
        f.write(f"BROKER_PUBLISHED_PORT={broker_port}\n")
        f.write("OVERLORD_WORKER_TIMEOUT_S=10\nMIDDLEMANAGER_SHUTDOWN_TIMEOUT_S=20\n")
    # the test reads the segments back from the host: SeaweedFS's S3 port on 127.0.0.1 too
    override = state / "compose.test.yaml"
    override.write_text(
        "services:\n  seaweedfs:\n    networks: [cluster, edge]\n"
        f'    ports: ["127.0.0.1:{s3_port}:8333"]\n'
        "  middlemanager:\n    stop_grace_period: 30s\n"
    )
    compose = Compose(env, [REPO / "compose.yaml", override], env_file)
    api = Api(f"http://127.0.0.1:{overlord_port}", admin_token)
    broker = Api(f"http://127.0.0.1:{broker_port}", admin_token)
    s3_env = {
        "AWS_ACCESS_KEY_ID": secrets_env["S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": secrets_env["S3_SECRET_KEY"],
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{s3_port}",
    }
    ok = False
    try:
        with stage("up (3 MiddleManagers)"):
            compose.run("down", "-v", "--remove-orphans", timeout=300)
            compose.up(3)
            wait_for("3 workers", lambda: len(api.ok("GET", "/druid/indexer/v1/workers")) == 3, 60)

        with stage("access control"):
            hb = {"host": "x", "port": 1, "capacity": 0, "running": [], "completed": []}
            assert api.call("GET", "/druid/indexer/v1/supervisor", auth=False)[0] == 401
            assert api.call("POST", "/druid/indexer/v1/action", {"task": "x"}, auth=False)[0] == 401
            assert api.call("POST", "/druid/indexer/v1/workers/heartbeat", hb, auth=False)[0] == 401
            assert api.call("POST", "/druid/indexer/v1/workers/heartbeat", hb)[0] == 403, (
                "admin is not the cluster"
            )
            # the MiddleManager's worker paths, from inside the cluster network
            probe = (
                "import urllib.request, urllib.error\n"
                "url = 'http://middlemanager:8091/druid/worker/v1/tasks'\n"
                "try:\n urllib.request.urlopen(url, timeout=10); print(200)\n"
                "except urllib.error.HTTPError as e: print(e.code)\n"
            )
            code = compose.run("exec", "-T", "overlord", "python", "-c", probe).stdout.strip()
            assert code == "401", f"a MiddleManager's worker path answered {code} without credentials"
            sql = {"query": "SELECT 1"}
            assert broker.call("POST", "/druid/v2/sql", sql, auth=False)[0] == 401
            assert broker.call("POST", "/druid/v2/sql", sql)[0] == 200, "the admin token queries"
            log(
                "    no credentials: 401 on the API, the task-action, worker and query paths;"
                " an admin token: 403 on the worker paths"
            )

        kafka = Producing(f"127.0.0.1:{kafka_port}")
        with stage("ingest"):
            admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}", "log_level": 3})
            admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(60)
            api.ok("POST", "/druid/indexer/v1/supervisor", spec("kafka:9092"))
            kafka.batch(5000)
            check_exactly_once(api, s3_env, kafka.produced, 240)
            check_broker(broker, kafka.produced, 60)

        with stage("docker kill a MiddleManager during ingestion"):
            with kafka.during(4, 1000, 2.0):
                victim = compose.busy_middlemanager(api)
                time.sleep(2)
                compose.docker("kill", victim)
                log(f"    killed MiddleManager container {victim[:12]} while it ran a task")
            compose.up(3)
            check_exactly_once(api, s3_env, kafka.produced, 300)

        with stage("docker kill the Overlord during ingestion"):
            with kafka.during(4, 1000, 2.0):
                time.sleep(3)
                compose.docker("kill", compose.containers("overlord")[0])
            compose.up(3)
            check_exactly_once(api, s3_env, kafka.produced, 300)

        for service in ("postgres", "kafka"):
            with stage(f"compose restart {service}"):
                with kafka.during(2, 1000, 1.0) if service == "postgres" else _nothing():
                    compose.run("restart", service, timeout=300)
                compose.up(3)
                if service == "kafka":
                    kafka.batch(2000)
                check_exactly_once(api, s3_env, kafka.produced, 300)

        with stage("compose stop + up"):
            compose.run("stop", timeout=300)
            compose.up(3)
            kafka.batch(2000)
            check_exactly_once(api, s3_env, kafka.produced, 300)

        with stage("--scale middlemanager=5"):
            compose.up(5)
            wait_for(
                "5 workers", lambda: len([w for w in api.ok("GET", "/druid/indexer/v1/workers")]) >= 5, 90
            )
            kafka.batch(2000)
            check_exactly_once(api, s3_env, kafka.produced, 300)
            check_broker(broker, kafka.produced, 60)
        ok = True
    except BaseException:
        try:
            print(compose.run("ps", "-a", check=False).stdout)
            for cid in compose.run("ps", "-aq", check=False).stdout.split():
                health = compose.docker("inspect", "-f", "{{.Name}} {{json .State.Health}}", cid)
                if '"Status":"healthy"' not in health and "<nil>" not in health and "null" not in health:
                    print(f"health checks: {health[:3000]}")
            print(compose.run("logs", "--tail", "60", check=False).stdout[-20000:])
        except Exception as e:  # the report goes on
            log(f"could not collect logs: {e}")
        raise
    finally:
        # the host's Kafka clients go before the cluster does (else librdkafka keeps reconnecting)
        kafka = admin = None  # type: ignore[assignment]
        gc.collect()
        if not args.keep:
            with stage("down"):
                compose.run("down", "-v", "--remove-orphans", timeout=300, check=False)
        if not engine_was_running and not args.keep:
            subprocess.run([local_docker, "stop"], capture_output=True, check=False)
        log("stage timings: " + ", ".join(f"{n} {t:.0f}s" for n, t in TIMINGS))
        log(f"total {time.monotonic() - total:.0f}s: {'PASSED' if ok else 'FAILED'}")
        checks = [n for n, _ in TIMINGS if n not in ("engine", "images", "down")]
        passed = len(checks) if ok else max(len(checks) - 1, 0)
        print(f"compose-test: {passed} passed, {len(checks) - passed} failed", flush=True)
    return 0 if ok else 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())

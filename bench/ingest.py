"""Throughput and memory of one Kafka indexing task against the raw consumer (issue 6).

    .venv/bin/python bench/ingest.py [--events 2000000] [--small-events 200000] [--profile DIR]

On the local broker (``scripts/local-kafka start`` is run if nothing answers):

1. produces (or reuses) a wikipedia-shaped topic of ``--events`` events over 4 partitions;
2. raw: one confluent-kafka consumer in this process reads the whole topic (read once to warm
   up, then timed), with the consumer settings of the task's own supplier;
3. in-process: a ``TaskRunner`` in this process reads the topic to fixed end offsets, writes
   its segments and publishes to a stub Overlord (no process start, no supervisor): the task's
   own throughput;
4. cluster: an Overlord (SQLite) and one MiddleManager; a supervisor with useEarliestOffset and
   a long taskDuration. Timed from the task's ``startTime`` (when it began reading) to the
   moment it had read every event (read phase), then the supervisor is suspended (the
   group hands off) and the clock stops when the segments are in the metadata store (total).
   Rollup off, rollup on (queryGranularity minute, count + longSums), taskCount 2, and rollup
   off on a backlog of ``--small-events`` (peak RSS of the peon against maxBytesInMemory);
5. handoff: a short taskDuration; the gap between the moment the task of one generation got
   its end offsets and the ``startTime`` of the task of the next generation.

Row counts are verified (published rows == events with rollup off; sum of ``count`` ==
events in every case). The last line is ``RESULT raw_eps=... handoff_gap_s=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for _path in (str(REPO), str(REPO / "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import wikigen  # noqa: E402
from confluent_kafka import Consumer, Message, TopicPartition  # noqa: E402

from middlemanager.runner import TaskRunner  # noqa: E402
from overlord.client import OverlordClient, wait_for  # noqa: E402
from overlord.client import http as http_call  # noqa: E402
from supervisor.kafka.config import consumer_config  # noqa: E402
from supervisor.kafka.supplier import CONSUMER_DEFAULTS  # noqa: E402
from supervisor.spec import parse_supervisor_spec  # noqa: E402
from supervisor.task_spec import KafkaIndexTaskSpec  # noqa: E402
from tests.harness.kafka import consume_until_eof, kafka_answers, latest_offsets  # noqa: E402
from tests.harness.processes import Cluster  # noqa: E402
from tests.harness.services import KAFKA_START_TIMEOUT_S, LOCAL_KAFKA, last_line, run_script  # noqa: E402
from tests.harness.specs import kafka_spec  # noqa: E402
from tests.harness.stub_overlord import stub_overlord  # noqa: E402

PARTITIONS = 4
MIB = 1024 * 1024


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- specs


def supervisor_spec(
    datasource: str,
    topic: str,
    bootstrap: str,
    *,
    rollup: bool,
    task_count: int = 1,
    task_duration: str = "PT1H",
    max_bytes_in_memory: int = 0,
    fmt: str = "json",
) -> dict[str, Any]:
    """The wikiticker-like events of ``wikigen`` in ``fmt``, rolled up by minute or not."""
    return kafka_spec(
        datasource,
        topic,
        bootstrap,
        timestamp={"column": wikigen.TIME_COLUMN, "format": "iso"},
        dimensions=wikigen.DIMENSION_NAMES,
        metrics=[
            {"type": "count", "name": "count"},
            *({"type": "longSum", "name": f, "fieldName": f} for f in wikigen.LONG_FIELDS),
        ],
        rollup=rollup,
        query_granularity="minute" if rollup else "none",
        tuning={"maxBytesInMemory": max_bytes_in_memory} if max_bytes_in_memory else None,
        taskCount=task_count,
        taskDuration=task_duration,
        startDelay="PT0.1S",
        completionTimeout="PT30M",
        inputFormat=wikigen.input_format(fmt),
    )


def effective_max_bytes(max_bytes_in_memory: int) -> int:
    spec = parse_supervisor_spec(
        supervisor_spec("x", "x", "x", rollup=False, max_bytes_in_memory=max_bytes_in_memory)
    )
    return spec.tuning_config.effective_max_bytes_in_memory()


# ----------------------------------------------------------------------------- Kafka


def ensure_kafka(bootstrap: str) -> str:
    if kafka_answers(bootstrap, timeout=5):
        return bootstrap
    say("no broker answers: scripts/local-kafka start")
    started = last_line(run_script(LOCAL_KAFKA, "start", timeout=KAFKA_START_TIMEOUT_S).stdout)
    if not kafka_answers(started, timeout=30):
        raise RuntimeError(f"the broker at {started} does not answer")
    return started


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    return latest_offsets(bootstrap, topic, range(PARTITIONS))


@dataclass
class Rate:
    events: int
    seconds: float
    cpu_s: float

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def raw_read(bootstrap: str, topic: str, expected: int) -> Rate:
    """One consumer (the supplier's settings) reads every record of the topic; returns the rate."""
    props = {"bootstrap.servers": bootstrap, **CONSUMER_DEFAULTS}
    consumer = Consumer(consumer_config(props, client_id="bench-raw"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    count = 0

    def counted(_msg: Message) -> None:
        nonlocal count
        count += 1

    t0, c0 = time.perf_counter(), time.process_time()
    consume_until_eof(consumer, range(PARTITIONS), timeout=3600, batch=10_000, on_message=counted)
    rate = Rate(count, time.perf_counter() - t0, time.process_time() - c0)
    consumer.close()
    if count != expected:
        raise RuntimeError(f"raw read {count} records, expected {expected}")
    return rate


# ----------------------------------------------------------------------------- in-process task


@dataclass
class InProcess:
    label: str
    events: int
    read_s: float
    total_s: float
    cpu_s: float
    rows: int
    count_sum: int


def in_process(
    bootstrap: str, topic: str, events: int, rollup: bool, workdir: Path, fmt: str = "json"
) -> InProcess:
    ends = end_offsets(bootstrap, topic)
    spec = parse_supervisor_spec(
        supervisor_spec("bench_inproc", topic, bootstrap, rollup=rollup, fmt=fmt)
    ).to_json()
    task = KafkaIndexTaskSpec.model_validate(
        {
            "id": f"bench_inproc_{uuid.uuid4().hex[:8]}",
            "dataSource": "bench_inproc",
            "supervisorId": "bench_inproc",
            "groupId": 0,
            "sequenceName": "bench_inproc_0",
            "topic": topic,
            "startOffsets": {p: 0 for p in ends},
            "endOffsets": ends,
            "consumerProperties": {"bootstrap.servers": bootstrap},
            "supervisorSpec": spec,
            "createdTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    task_dir = workdir / "inproc" / task.id
    deep = workdir / "inproc-deep"
    with stub_overlord() as overlord:
        runner = TaskRunner(
            task.model_copy(update={"deep_storage": deep.absolute().as_uri()}), task_dir, overlord.url
        )
        read_end: list[float] = []
        read = runner._read  # the read phase alone is timed too

        def timed_read(*args: Any) -> bool:
            done = read(*args)
            read_end.append(time.perf_counter())
            return done

        runner._read = timed_read  # type: ignore[method-assign,assignment]
        t0, c0 = time.perf_counter(), time.process_time()
        outcome = runner.run()
        t1, c1 = time.perf_counter(), time.process_time()
    if outcome.status != "SUCCESS":
        raise RuntimeError(f"in-process task failed: {outcome.error}")
    files = list((deep / "bench_inproc").rglob("*.parquet"))
    rows, count_sum = verify_files(files)
    shutil.rmtree(task_dir, ignore_errors=True)
    shutil.rmtree(deep, ignore_errors=True)
    label = f"in-process TaskRunner, {fmt}, rollup " + ("on" if rollup else "off")
    return InProcess(label, events, read_end[0] - t0, t1 - t0, c1 - c0, rows, count_sum)


def verify_files(paths: list[Path]) -> tuple[int, int]:
    """Rows and the sum of the ``count`` metric over Parquet files."""
    rows = 0
    count_sum = 0
    for path in paths:
        table = pq.read_table(path, columns=["count"])
        rows += table.num_rows
        count_sum += int(pc.sum(table.column("count")).as_py() or 0)
    return rows, count_sum


# ----------------------------------------------------------------------------- cluster


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_PEAK = re.compile(r"peak RSS ([\d.]+) MiB, CPU ([\d.]+) s")
_END_SET = re.compile(r"end offsets set to")


def log_time(line: str) -> float | None:
    """Epoch seconds of a text log line (local time, as ``logging`` writes it)."""
    m = _LOG_TIME.match(line)
    if m is None:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000


@dataclass
class TaskWatch:
    task_id: str
    pid: int | None = None
    port: int | None = None
    start_time: float | None = None
    read_all_at: float | None = None
    current: int = 0
    hwm_kib: int = 0
    anon_kib: int = 0  # highest RssAnon sampled (the kernel keeps no peak of it)
    file_kib: int = 0  # highest RssFile sampled (shared libraries, memory-mapped spill files)
    read_hwm_kib: int = 0  # VmHWM when every event had been read (before finishing)
    cpu_s: float = 0.0


@dataclass
class Watcher:
    """Samples the MiddleManager's tasks: progress (start, offsets), VmHWM and CPU of each peon."""

    mm_url: str
    target: int  # events the tasks must read in all
    interval_s: float = 0.05
    tasks: dict[str, TaskWatch] = field(default_factory=dict)
    read_all_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.sample(tick % 4 == 0)
            tick += 1
            self._stop.wait(self.interval_s)

    def sample(self, list_tasks: bool) -> None:
        if list_tasks or any(t.port is None for t in self.tasks.values()) or not self.tasks:
            status, body = http_call("GET", f"{self.mm_url}/druid/worker/v1/tasks", timeout=5)
            if status == 200:
                for entry in body:
                    watch = self.tasks.setdefault(entry["taskId"], TaskWatch(entry["taskId"]))
                    watch.pid = entry.get("pid")
                    watch.port = entry.get("port")
        now = time.time()
        total = 0
        for watch in self.tasks.values():
            if watch.pid is not None:
                _read_proc(watch)
            if watch.port is None:
                total += watch.current
                continue
            # cheap control paths only: /progress would make the pipeline settle its buffers
            base = f"http://127.0.0.1:{watch.port}/druid/worker/v1/chat/{watch.task_id}"
            try:
                if watch.start_time is None:
                    status, body = http_call("GET", f"{base}/time/start", timeout=5)
                    if status == 200 and isinstance(body, dict) and body.get("epochSeconds") is not None:
                        watch.start_time = float(body["epochSeconds"])
                status, body = http_call("GET", f"{base}/offsets/current", timeout=5)
                if status == 200 and isinstance(body, dict):
                    watch.current = sum(int(v) for v in body.values())
            except OSError:
                pass
            total += watch.current
        if self.read_all_at is None and total >= self.target:
            self.read_all_at = now
            for watch in self.tasks.values():
                watch.read_hwm_kib = watch.hwm_kib


def _read_proc(watch: TaskWatch) -> None:
    try:
        status = Path(f"/proc/{watch.pid}/status").read_text()
        stat = Path(f"/proc/{watch.pid}/stat").read_text()
    except OSError:
        return
    for key, attr in (("VmHWM", "hwm_kib"), ("RssAnon", "anon_kib"), ("RssFile", "file_kib")):
        m = re.search(key + r":\s+(\d+) kB", status)
        if m:
            setattr(watch, attr, max(getattr(watch, attr), int(m.group(1))))
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    watch.cpu_s = max(watch.cpu_s, (int(fields[11]) + int(fields[12])) / ticks)


@dataclass
class ClusterCase:
    label: str
    events: int
    tasks: int
    read_s: float
    total_s: float
    peak_rss_mib: float
    cpu_s: float
    rows: int
    count_sum: int
    segments: int
    read_peak_rss_mib: float = 0.0
    peak_anon_mib: float = 0.0
    peak_file_mib: float = 0.0


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.bootstrap: str = args.bootstrap
        self.cluster: Cluster | None = None

    @property
    def api(self) -> OverlordClient:
        assert self.cluster is not None
        return self.cluster.api

    def start_cluster(self) -> Cluster:
        cluster = Cluster(self.workdir / "cluster", f"sqlite:///{self.workdir / 'metadata.db'}")
        cluster.migrate()
        cluster.start_overlord(worker_timeout_s=30)
        cluster.start_middlemanager("mm1", capacity=4)
        self.cluster = cluster
        return cluster

    @property
    def mm_url(self) -> str:
        assert self.cluster is not None
        return self.cluster.health_url("mm1").replace("/status/health", "")

    def task_log(self, task_id: str) -> str:
        assert self.cluster is not None
        path = self.workdir / "cluster" / "mm1" / "tasks" / task_id / "log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def run_case(
        self,
        label: str,
        topic: str,
        events: int,
        *,
        rollup: bool,
        task_count: int = 1,
        profile: Path | None = None,
    ) -> ClusterCase:
        datasource = f"bench_{label.replace(' ', '_')}_{uuid.uuid4().hex[:6]}"
        spec = supervisor_spec(
            datasource,
            topic,
            self.bootstrap,
            rollup=rollup,
            task_count=task_count,
            max_bytes_in_memory=self.args.max_bytes_in_memory,
        )
        watcher = Watcher(self.mm_url, events).start()
        spy: subprocess.Popen[bytes] | None = None
        try:
            self.api.submit(spec)
            wait_for(
                f"{task_count} task(s) reading",
                lambda: len([t for t in watcher.tasks.values() if t.start_time]) >= task_count,
                120,
                0.05,
            )
            if profile is not None:
                spy = start_py_spy(next(iter(watcher.tasks.values())), profile)
            wait_for(f"{label}: every event read", lambda: watcher.read_all_at, self.args.timeout_s, 0.05)
            self.api.suspend(datasource)
            publish_at = self.wait_published(datasource, task_count)
        finally:
            watcher.stop()
            if spy is not None:
                stop_py_spy(spy, profile)
        assert watcher.read_all_at is not None
        started = min(t.start_time for t in watcher.tasks.values() if t.start_time)
        peak_kib = max(t.hwm_kib for t in watcher.tasks.values())
        cpu_s = sum(t.cpu_s for t in watcher.tasks.values())
        for t in watcher.tasks.values():  # the peon's own account, written as it exits
            m = _PEAK.search(self.task_log(t.task_id))
            if m is not None:
                peak_kib = max(peak_kib, int(float(m.group(1)) * 1024))
                cpu_s += float(m.group(2)) - t.cpu_s
        segments = self.api.segments(datasource)
        rows = sum(int(s["numRows"]) for s in segments)
        files_rows, count_sum = verify_files([Path(s["loadSpec"]["path"]) for s in segments])
        if files_rows != rows:
            raise RuntimeError(f"{label}: metadata says {rows} rows, the files hold {files_rows}")
        if count_sum != events or (not rollup and rows != events):
            raise RuntimeError(f"{label}: {rows} rows, count sum {count_sum}, expected {events} events")
        self.api.terminate(datasource)
        assert self.cluster is not None
        shutil.rmtree(self.cluster.deep_storage / datasource, ignore_errors=True)
        return ClusterCase(
            label,
            events,
            task_count,
            watcher.read_all_at - started,
            publish_at - started,
            peak_kib / 1024,
            cpu_s,
            rows,
            count_sum,
            len(segments),
            read_peak_rss_mib=max(t.read_hwm_kib for t in watcher.tasks.values()) / 1024,
            peak_anon_mib=max(t.anon_kib for t in watcher.tasks.values()) / 1024,
            peak_file_mib=max(t.file_kib for t in watcher.tasks.values()) / 1024,
        )

    def wait_published(self, datasource: str, task_count: int) -> float:
        """When the last task's segments reached the metadata store (all tasks done)."""
        changed_at = time.time()
        seen: frozenset[str] = frozenset()
        deadline = time.monotonic() + self.args.timeout_s
        while time.monotonic() < deadline:
            ids = frozenset(str(s["id"]) for s in self.api.segments(datasource))
            if ids != seen:
                seen, changed_at = ids, time.time()
            tasks = self.api.tasks(datasource=datasource)
            if seen and len(tasks) >= task_count and all(t["statusCode"] != "RUNNING" for t in tasks):
                failed = [t for t in tasks if t["statusCode"] != "SUCCESS"]
                if failed:
                    raise RuntimeError(f"tasks failed: {failed}")
                return changed_at
            time.sleep(0.1)
        raise TimeoutError(f"{datasource}: not published in {self.args.timeout_s}s")

    def handoff_gaps(self, topic: str, rollovers: int) -> list[float]:
        """Gaps between a generation's end offsets being set and the next generation's startTime."""
        datasource = f"bench_handoff_{uuid.uuid4().hex[:6]}"
        spec = supervisor_spec(
            datasource,
            topic,
            self.bootstrap,
            rollup=False,
            task_duration=f"PT{self.args.handoff_duration_s}S",
            max_bytes_in_memory=self.args.max_bytes_in_memory,
        )
        watcher = Watcher(self.mm_url, 1 << 62).start()
        try:
            self.api.submit(spec)

            def generations() -> list[TaskWatch] | None:
                started = sorted(
                    (t for t in watcher.tasks.values() if t.start_time), key=lambda t: t.start_time or 0
                )
                return started if len(started) > rollovers else None

            gens = wait_for(
                "task generations", generations, 60 + rollovers * 4 * self.args.handoff_duration_s, 0.1
            )
        finally:
            watcher.stop()
        self.api.terminate(datasource)
        gaps = []
        for previous, following in itertools.pairwise(gens):
            end_set = None
            for line in self.task_log(previous.task_id).splitlines():
                if _END_SET.search(line):
                    end_set = log_time(line)
                    break
            if end_set is None or following.start_time is None:
                raise RuntimeError(f"no 'end offsets set' line in the log of {previous.task_id}")
            gaps.append(following.start_time - end_set)
        with contextlib.suppress(TimeoutError):
            self.api.wait_quiet(datasource, 120)
        assert self.cluster is not None
        shutil.rmtree(self.cluster.deep_storage / datasource, ignore_errors=True)
        return gaps


# ----------------------------------------------------------------------------- profile


def start_py_spy(task: TaskWatch, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists() or task.pid is None:
        say("py-spy not found: pip install -e '.[bench]'")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "--pid", str(task.pid), "--rate", "100", "--format", "raw", "--nonblocking"]
    return subprocess.Popen([*command, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(spy: subprocess.Popen[bytes], out: Path | None) -> None:
    # py-spy stops by itself when the peon exits
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.terminate()
        spy.wait(10)
    if out is not None and out.is_file():
        print(summarize_profile(out))


_LINE = re.compile(r":\d+\)$")


def summarize_profile(path: Path, top: int = 22) -> str:
    """Shares of the runner thread's samples: per function (self, inclusive) and per source line."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    line_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if "TaskRunner.run (" not in stack:
            continue  # the runner thread only (the event loop thread is mostly idle)
        count = int(count_text)
        lines = stack.split(";")
        frames = [_LINE.sub(")", frame) for frame in lines]
        total += count
        for frame in set(frames):
            incl_counts[frame] = incl_counts.get(frame, 0) + count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        line_counts[lines[-1]] = line_counts.get(lines[-1], 0) + count
    if total == 0:
        return "profile: no samples of the runner thread"
    out = [f"profile of the task's runner thread ({total} samples), {path}", "  self%  incl%  function"]
    for frame, count in sorted(incl_counts.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {100 * self_counts.get(frame, 0) / total:5.1f}  {100 * count / total:5.1f}  {frame}")
    out.append("  self%  source line")
    for frame, count in sorted(line_counts.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {100 * count / total:5.1f}  {frame}")
    return "\n".join(out)


# ----------------------------------------------------------------------------- report


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for index, row in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--events", type=int, default=2_000_000, help="events in the main topic")
    p.add_argument("--small-events", type=int, default=200_000, help="events in the small-backlog topic")
    p.add_argument(
        "--max-bytes-in-memory", type=int, default=0, help="tuningConfig.maxBytesInMemory (0: default)"
    )
    p.add_argument("--handoff-duration-s", type=int, default=10, help="taskDuration of the handoff case")
    p.add_argument("--handoff-rollovers", type=int, default=3)
    p.add_argument("--timeout-s", type=float, default=600.0, help="per case")
    p.add_argument(
        "--only",
        default="raw,inproc,off,on,tc2,small,handoff",
        help="comma-separated cases: raw,inproc,off,on,tc2,small,handoff",
    )
    p.add_argument(
        "--profile", type=Path, help="py-spy the rollup-off and rollup-on tasks into this directory"
    )
    p.add_argument(
        "--format",
        default="json",
        help="comma-separated record formats of the in-process one-task case: "
        + ",".join(wikigen.ENCODERS)
        + " (json first is the reference; the others run with rollup off beside it)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    formats = args.format.split(",")
    unknown = [f for f in formats if f not in wikigen.ENCODERS]
    if unknown:
        p.error(f"--format: unknown {', '.join(unknown)} (known: {', '.join(wikigen.ENCODERS)})")
    only = set(args.only.split(","))
    t_begin = time.monotonic()

    args.bootstrap = ensure_kafka(args.bootstrap)
    topic = wikigen.ensure_topic(args.bootstrap, args.events, PARTITIONS, log=say)
    small_topic = (
        wikigen.ensure_topic(args.bootstrap, args.small_events, PARTITIONS, log=say)
        if "small" in only
        else None
    )
    max_bytes = effective_max_bytes(args.max_bytes_in_memory)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    say(f"work directory {workdir}; {os.cpu_count()} cores")
    raw: Rate | None = None
    inproc: list[InProcess] = []
    cases: dict[str, ClusterCase] = {}
    gaps: list[float] = []
    bench = Bench(args, workdir)
    try:
        if "raw" in only:
            raw_read(args.bootstrap, topic, args.events)  # warm: page cache, broker
            raw = raw_read(args.bootstrap, topic, args.events)
            say(f"raw consumer: {raw.eps:,.0f} events/s ({raw.seconds:.1f}s, {raw.cpu_s:.1f} CPU s)")
        if "inproc" in only:
            runs = [("json", False), ("json", True)] if "json" in formats else []
            runs += [(fmt, False) for fmt in formats if fmt != "json"]
            for fmt, rollup in runs:
                fmt_topic = (
                    topic
                    if fmt == "json"
                    else wikigen.ensure_topic(args.bootstrap, args.events, PARTITIONS, log=say, fmt=fmt)
                )
                r = in_process(args.bootstrap, fmt_topic, args.events, rollup, workdir, fmt)
                inproc.append(r)
                say(f"{r.label}: read {r.events / r.read_s:,.0f} events/s, total {r.events / r.total_s:,.0f}")
        if only & {"off", "on", "tc2", "small", "handoff"}:
            bench.start_cluster()
            plan: list[tuple[str, str, str, int, bool, int]] = [
                ("off", "task, rollup off", topic, args.events, False, 1),
                ("on", "task, rollup on (minute)", topic, args.events, True, 1),
                ("tc2", "taskCount 2, rollup off", topic, args.events, False, 2),
            ]
            if small_topic is not None:
                plan.append(
                    ("small", "task, rollup off, small backlog", small_topic, args.small_events, False, 1)
                )
            for key, label, case_topic, events, rollup, task_count in plan:
                if key not in only:
                    continue
                profile = (
                    args.profile / f"peon-{key}.folded" if args.profile and key in ("off", "on") else None
                )
                case = bench.run_case(
                    key, case_topic, events, rollup=rollup, task_count=task_count, profile=profile
                )
                case.label = label
                cases[key] = case
                say(
                    f"{label}: read {case.events / case.read_s:,.0f} events/s, total incl. publish "
                    f"{case.events / case.total_s:,.0f} events/s, peak RSS {case.peak_rss_mib:.0f} MiB "
                    f"(read phase {case.read_peak_rss_mib:.0f}; sampled anon {case.peak_anon_mib:.0f}, "
                    f"file {case.peak_file_mib:.0f}), "
                    f"{case.rows:,} rows"
                )
            if "handoff" in only:
                gaps = bench.handoff_gaps(topic, args.handoff_rollovers)
                say("handoff gaps: " + ", ".join(f"{g:.2f}s" for g in gaps))
    except BaseException:
        if bench.cluster is not None:
            print(bench.cluster.logs())
        raise
    finally:
        if bench.cluster is not None:
            bench.cluster.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    raw_eps = raw.eps if raw else 0.0

    def ratio(eps: float) -> str:
        return f"{eps / raw_eps:.2f}" if raw_eps else "-"

    header = ["case", "events", "tasks", "read events/s", "total events/s", "total/raw"]
    header += ["peak RSS MiB", "read-phase RSS MiB", "CPU s", "rows out"]
    rows = [header]
    if raw:
        rows.append(["raw consumer (1 process)", f"{raw.events:,}", "-", f"{raw.eps:,.0f}", "-", "1.00"])
        rows[-1] += ["-", "-", f"{raw.cpu_s:.1f}", "-"]
    for r in inproc:
        rows.append(
            [r.label, f"{r.events:,}", "1", f"{r.events / r.read_s:,.0f}", f"{r.events / r.total_s:,.0f}"]
        )
        rows[-1] += [ratio(r.events / r.total_s), "-", "-", f"{r.cpu_s:.1f}", f"{r.rows:,}"]
    for c in cases.values():
        rows.append([c.label, f"{c.events:,}", str(c.tasks), f"{c.events / c.read_s:,.0f}"])
        rows[-1] += [f"{c.events / c.total_s:,.0f}", ratio(c.events / c.total_s), f"{c.peak_rss_mib:.0f}"]
        rows[-1] += [f"{c.read_peak_rss_mib:.0f}", f"{c.cpu_s:.1f}", f"{c.rows:,}"]
    print()
    print(table(rows))
    print()
    print(
        f"cores (os.cpu_count()): {os.cpu_count()}; maxBytesInMemory {max_bytes / MIB:.0f} MiB; "
        f"handoff gaps: {', '.join(f'{g:.2f}s' for g in gaps) or '-'}; "
        f"benchmark wall time {time.monotonic() - t_begin:.0f}s; "
        f"this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    off = cases.get("off")
    on = cases.get("on")
    ingest_eps = off.events / off.total_s if off else 0.0
    rollup_eps = on.events / on.total_s if on else 0.0
    peaks = [c.peak_rss_mib for k, c in cases.items() if k in ("off", "small")]
    json_off = next((r for r in inproc if r.label.endswith(", json, rollup off")), None)
    for r in inproc:
        if json_off is not None and r is not json_off and not r.label.endswith("rollup on"):
            eps, ref = r.events / r.total_s, json_off.events / json_off.total_s
            print(f"one task, {r.label}: {eps:,.0f} events/s beside json {ref:,.0f} ({eps / ref:.2f}x)")
    print(
        f"RESULT raw_eps={raw_eps:.0f} ingest_eps={ingest_eps:.0f} "
        f"ratio={ingest_eps / raw_eps if raw_eps else 0:.2f} rollup_eps={rollup_eps:.0f} "
        f"peak_rss_mib={max(peaks, default=0):.0f} max_bytes_in_memory_mib={max_bytes / MIB:.0f} "
        f"handoff_gap_s={max(gaps, default=0):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

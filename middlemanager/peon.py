"""One task in its own OS process (Druid's peon): ``python -m middlemanager.peon``.

Serves the supervisor-to-task control paths on a port of its own (written to
``<task-dir>/port`` once listening), runs the read loop in a thread, and writes
``<task-dir>/status.json`` before it exits.

With ``--warm`` (a warm peon, started by the MiddleManager ahead of its task) the process
has imported everything and waits on its stdin for one line, a JSON object with
``taskFile`` and ``taskDir``; it then sends its output to
``<taskDir>/log`` and runs that task as if it had been started for it. It exits quietly
when its stdin closes without a task.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hmac
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import pyarrow as pa
from aiohttp import web
from pydantic import Field

from middlemanager.runner import CLUSTER_TOKEN_ENV, Outcome, TaskRunner
from supervisor import protocol as wire
from supervisor.errors import IndexerError
from supervisor.logs import configure
from supervisor.offsets import PartitionId, PartitionOffsets
from supervisor.ports import TaskState
from supervisor.task_spec import KafkaIndexTaskSpec
from transport.server import answer, documented, error_middleware, parse_as, read_body, read_json

logger = logging.getLogger(__name__)

RUNNER: web.AppKey[TaskRunner] = web.AppKey("runner", TaskRunner)


class _EndOffsets(wire.WireModel):
    offsets: Annotated[wire.Offsets, Field(min_length=1)]


_END_OFFSETS = _EndOffsets
# snapshots of the in-flight rows are taken on these (not on the loop's default executor)
_INFLIGHT_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="inflight-rows")
# added to the niceness of a task's threads while it publishes
PUBLISH_NICENESS = 10


def _runner(request: web.Request) -> TaskRunner:
    runner = request.app[RUNNER]
    token = os.environ.get(CLUSTER_TOKEN_ENV, "")
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        raise web.HTTPUnauthorized(reason="task control paths need the cluster's credentials")
    if request.match_info["task"] != runner.task.id:
        raise web.HTTPNotFound(reason=f"no task [{request.match_info['task']}] here")
    return runner


def _offsets(offsets: dict[PartitionId, int] | None) -> web.Response:
    return web.json_response(PartitionOffsets(offsets).to_json() if offsets is not None else None)


async def status(request: web.Request) -> web.Response:
    return web.json_response(_runner(request).status.value)


async def start_time(request: web.Request) -> web.Response:
    return answer(wire.TaskStartTime(epoch_seconds=_runner(request).start_time))


async def current_offsets(request: web.Request) -> web.Response:
    return _offsets(_runner(request).current)


async def get_end_offsets(request: web.Request) -> web.Response:
    return _offsets(_runner(request).end)


async def set_end_offsets(request: web.Request) -> web.Response:
    runner = _runner(request)
    offsets = parse_as(_END_OFFSETS, {"offsets": await read_json(request)}, "end offsets").offsets
    finish = request.query.get("finish", "true").lower() != "false"
    return _offsets(runner.set_end_offsets(dict(offsets), finish))


async def pause(request: web.Request) -> web.Response:
    runner = _runner(request)
    return _offsets(await asyncio.to_thread(runner.pause))


async def resume(request: web.Request) -> web.Response:
    _runner(request).resume()
    return answer(wire.Empty())


async def checkpoints(request: web.Request) -> web.Response:
    runner = _runner(request)
    return web.json_response({"0": PartitionOffsets(runner.task.start_offsets).to_json()})


async def stop(request: web.Request) -> web.Response:
    _runner(request).stop()
    return answer(wire.Empty())


async def row_stats(request: web.Request) -> web.Response:
    stats = _runner(request).row_stats()
    return answer(wire.TaskRowStats(totals=wire.RowStatsTotals(build_segments=stats)))


async def unparseable(request: web.Request) -> web.Response:
    return answer(_runner(request).unparseable_events())


async def progress(request: web.Request) -> web.Response:
    """Everything the supervisor polls each run, in one call (our extension)."""
    return answer(_runner(request).progress())


@documented(
    "A task's in-flight rows (Arrow IPC stream)",
    request=wire.InflightRowsRequest,
    response=bytes,
    response_type=wire.ARROW_STREAM_TYPE,
    errors=(400, 401, 404, 409),
    tags=("tasks",),
)
async def inflight_rows(request: web.Request) -> web.Response:
    """Every row the task has read and not yet published (in memory and in its spills, merged and
    rolled up as its segments will be: the columns and types of a published segment), as one Arrow
    IPC stream (only the `columns` asked, when asked; only rows the `filter` may keep, when one is
    given); the `X-Inflight-Rows` header (InflightRowsTag)
    names the sequence and the offsets the rows cover. A task with no rows yet answers a stream
    with no columns. 409: the task did not
    reach `minOffsets` within `waitMs`."""
    runner = _runner(request)
    body = await read_body(request, wire.InflightRowsRequest, "in-flight rows request")
    # threads of their own: a Broker's asks (each may wait for offsets) never hold up pause/resume
    loop = asyncio.get_running_loop()
    rows = await loop.run_in_executor(
        _INFLIGHT_THREADS,
        runner.inflight,
        dict(body.min_offsets),
        body.wait_ms / 1000,
        body.columns,
        body.filter,
        body.spans,
    )
    table = rows.table if rows.table is not None else pa.table({})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    tag = wire.InflightRowsTag(
        task_id=runner.task.id,
        data_source=runner.task.data_source,
        sequence_name=rows.sequence_name,
        start_offsets=runner.task.start_offsets,
        end_offsets=rows.offsets,
        num_rows=table.num_rows,
        filtered=body.filter is not None,
        dimensions=runner.pipeline.dimensions,
        metrics=runner.pipeline.metrics,
        spans=rows.spans,
    )
    return web.Response(
        body=sink.getvalue().to_pybytes(),
        content_type=wire.ARROW_STREAM_TYPE,
        headers={wire.INFLIGHT_TAG_HEADER: tag.model_dump_json(by_alias=True)},
    )


async def log(request: web.Request) -> web.Response:
    runner = _runner(request)
    path = runner.task_dir / "log"
    text = path.read_text(errors="replace") if path.is_file() else ""
    return web.Response(text=text, content_type="text/plain")


async def live_reports(request: web.Request) -> web.Response:
    runner = _runner(request)
    return answer(runner.report(runner.status.value, runner.error))


def build_app(runner: TaskRunner) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[RUNNER] = runner
    base = "/druid/worker/v1/chat/{task}"
    r = app.router
    r.add_get(f"{base}/status", status)
    r.add_get(f"{base}/time/start", start_time)
    r.add_get(f"{base}/offsets/current", current_offsets)
    r.add_get(f"{base}/offsets/end", get_end_offsets)
    r.add_post(f"{base}/offsets/end", set_end_offsets)
    r.add_post(f"{base}/pause", pause)
    r.add_post(f"{base}/resume", resume)
    r.add_get(f"{base}/checkpoints", checkpoints)
    r.add_post(f"{base}/stop", stop)
    r.add_get(f"{base}/rowStats", row_stats)
    r.add_get(f"{base}/unparseableEvents", unparseable)
    r.add_get(f"{base}/liveReports", live_reports)
    r.add_get(f"{base}/progress", progress)
    r.add_get(f"{base}/log", log)
    r.add_post(f"{base}/rows", inflight_rows)
    return app


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def serve(runner: TaskRunner, host: str, task_dir: Path) -> Outcome:
    app = build_app(runner)
    app_runner = web.AppRunner(app, access_log=None)
    await app_runner.setup()
    site = web.TCPSite(app_runner, host, 0)
    await site.start()
    port = int(app_runner.addresses[0][1])
    _write_atomic(task_dir / "port", str(port))
    logger.info("task[%s] control paths on %s:%d", runner.task.id, host, port)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, runner.stop)
    try:
        return await asyncio.to_thread(runner.run)
    finally:
        await app_runner.cleanup()


def _use_jemalloc() -> None:
    """Arrow allocates through jemalloc in a task process unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise.

    Arrow's default pool (mimalloc) keeps much of what it freed; jemalloc hands it back
    (bench/ingest.py: about 45 MiB less peak RSS per task, same throughput). Freed pages go
    back after 250 ms (2M events, rollup off: peak RSS 377 MiB and 22.5 CPU s, against 342
    MiB and 28.9 CPU s at 0 ms: returning every page at once costs a quarter more CPU).
    """
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    with contextlib.suppress(NotImplementedError, AttributeError):
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(250)


def _yield_cpu_to_readers() -> None:
    """Lower the priority of every thread of this process (niceness +10), once it publishes.

    Merging and writing segments is CPU-bound and runs exactly while the next task group
    starts on the same machine; that start (a new process importing its modules) is what
    the handoff gap is made of. Linux keeps a niceness per thread: each one is set.
    """
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        with contextlib.suppress(OSError):
            niceness = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, niceness + PUBLISH_NICENESS))


def _await_task(args: argparse.Namespace) -> bool:
    """A warm peon's wait for its task (one JSON line on stdin); False when there is none.

    Once it has its task, the process writes to the task's own log file and reads nothing more.
    """
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return False  # the MiddleManager let this peon go unused
    order = json.loads(line)
    args.task_file = Path(order["taskFile"])
    args.task_dir = Path(order["taskDir"])
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(args.task_dir / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="middlemanager.peon")
    p.add_argument("--task-file", type=Path)
    p.add_argument("--task-dir", type=Path)
    p.add_argument("--overlord", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--warm", action="store_true", help="wait for the task on stdin (a warm peon)")
    p.add_argument("--kafka-stores-dir", type=Path, help="where the stores consumerProperties name are read")
    args = p.parse_args(argv)
    if args.warm:
        if not _await_task(args):
            return 0
    elif args.task_file is None or args.task_dir is None:
        p.error("--task-file and --task-dir are required (or --warm)")
    configure("INFO", args.log_format, "peon")
    _use_jemalloc()
    task = KafkaIndexTaskSpec.model_validate(json.loads(args.task_file.read_text()))
    try:
        runner = TaskRunner(
            task,
            args.task_dir,
            args.overlord,
            before_publish=_yield_cpu_to_readers,
            kafka_stores_dir=args.kafka_stores_dir,
        )
    except IndexerError as e:
        outcome = Outcome(TaskState.FAILED, str(e), {})
    else:
        # what start-up made (modules, models) lives as long as the process: the cyclic GC
        # need not scan it again and again while the task reads
        gc.freeze()
        outcome = asyncio.run(serve(runner, args.host, args.task_dir))
    _write_atomic(
        args.task_dir / "status.json",
        json.dumps({"status": outcome.status, "error": outcome.error, "report": outcome.report}),
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    logger.info(
        "task[%s] exiting %s: peak RSS %.1f MiB, CPU %.2f s (user %.2f, system %.2f)",
        task.id,
        outcome.status,
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
        usage.ru_utime,
        usage.ru_stime,
    )
    return 0 if outcome.status is TaskState.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())

"""The MiddleManager: heart-beats with the Overlord and runs each task as its own process.

Two things keep a handoff short (the next task group reading soon after the previous one got its
end offsets):

* each heartbeat is a long poll: the Overlord holds it up to ``heartbeat_s`` and answers as soon as
  a task is assigned to this worker, so a new task does not wait for the next heartbeat;
* ``warm_peons`` task processes are started ahead of time: they import everything a task needs
  and wait on their stdin for one task (:func:`middlemanager.peon.main` with ``--warm``). A task
  goes to a warm peon when there is one (which then logs to the task's own log file), else to a
  freshly started process; a used warm peon is replaced shortly after.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hmac
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from middlemanager import __version__
from middlemanager.config import MiddleManagerSettings
from middlemanager.runner import CLUSTER_TOKEN_ENV
from supervisor import protocol as wire
from supervisor.clock import SYSTEM_CLOCK, Clock, wait_event
from supervisor.errors import HttpStatusError, IndexerError, Unavailable
from supervisor.ports import TaskState
from supervisor.task_spec import KafkaIndexTaskSpec
from transport.client import AsyncClient
from transport.server import answer, error_middleware

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# an HTTP call to the Overlord may take this long, plus the time the Overlord may hold a heartbeat
HTTP_TIMEOUT_S = 10.0
REGISTER_PATH = "/druid/indexer/v1/workers/register"
HEARTBEAT_PATH = "/druid/indexer/v1/workers/heartbeat"
# a used warm peon is replaced this long after, when the task it became has started
WARM_RESPAWN_DELAY_S = 1.0
# a warm peon that exited without a task is replaced only after this long (it may crash again)
WARM_RETRY_S = 30.0
# what warm peons print before they get a task (normally nothing); under the task directory
WARM_LOG = ".warm-peons.log"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """A task process does not outlive its MiddleManager (as Druid's peons watch their parent)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class RunningTask:
    task_id: str
    process: subprocess.Popen[bytes]
    task_dir: Path
    started: float
    port: int | None = None
    killed: bool = False


class MiddleManager:
    def __init__(self, settings: MiddleManagerSettings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self._clock = clock
        self.task_root = settings.task_dir.absolute()
        self._tasks: dict[str, RunningTask] = {}
        self._completed: dict[str, wire.CompletedTaskReport] = {}
        self._draining = False
        self._hurry = asyncio.Event()
        self._overlord = AsyncClient(
            settings.overlord, token=settings.cluster_token.get_secret_value(), timeout_s=HTTP_TIMEOUT_S
        )
        self._warm: list[subprocess.Popen[bytes]] = []  # started peons waiting for a task
        self._warm_due = 0.0  # monotonic time from which a warm peon may be started
        # where the Overlord reaches this worker's tasks (the listen address may be 0.0.0.0)
        self.advertised_host = settings.advertised()

    @property
    def name(self) -> str:
        return f"{self.advertised_host}:{self.settings.port}"

    def hurry(self) -> None:
        """A second stop signal: stop waiting for the tasks to hand back."""
        self._hurry.set()

    # ------------------------------------------------------------ heartbeat loop

    def _identity(self) -> dict[str, Any]:
        return {
            "host": self.advertised_host,
            "port": self.settings.port,
            "capacity": 0 if self._draining else self.settings.capacity,
            "version": __version__,
            "protocol_version": wire.PROTOCOL_VERSION,
        }

    async def register(self) -> None:
        """Announce this worker and its wire protocol. A refusal (an Overlord that cannot serve this
        protocol) stops the worker with the Overlord's reason; an unreachable Overlord does not: the
        heartbeats register the worker as soon as it answers."""
        try:
            await self._overlord.call("POST", REGISTER_PATH, wire.WorkerRegistration(**self._identity()))
        except HttpStatusError as e:
            if not e.retriable:
                raise
            logger.warning("registration with %s failed: %s", self.settings.overlord, e)
        except Unavailable as e:
            logger.warning("registration with %s failed: %s", self.settings.overlord, e)

    async def run(self, stop: asyncio.Event) -> None:
        self.task_root.mkdir(parents=True, exist_ok=True)
        try:
            await self.register()
            while not stop.is_set():
                self._reap()
                self._keep_warm()
                began = self._clock.monotonic()
                news = False
                try:
                    news = await self._long_poll(stop)
                except IndexerError as e:
                    logger.warning("heartbeat to %s failed: %s", self.settings.overlord, e)
                if news:
                    continue  # report what just started or was killed at once
                # an answer held as long as asked needs no wait; an early or failed one does
                rest = self.settings.heartbeat_s - (self._clock.monotonic() - began)
                if rest > 0:
                    await wait_event(self._clock, stop, rest)
            await self._drain()
        finally:
            self._retire_warm()
            await self._overlord.close()

    async def _long_poll(self, stop: asyncio.Event) -> bool:
        """One heartbeat the Overlord may hold up to ``heartbeat_s``; given up when ``stop`` is set."""
        beat = asyncio.ensure_future(self._heartbeat(self.settings.heartbeat_s))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({beat, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not beat.done():
                # the answer, if any, is repeated by the next heartbeat (capacity 0 once stopping)
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
        return not beat.cancelled() and beat.result()

    async def _heartbeat(self, wait_s: float = 0.0) -> bool:
        """Report, and do what the answer says; whether it held anything new to do.

        ``wait_s``: how long the Overlord may hold the answer while it has nothing new.
        """
        report = wire.Heartbeat(
            **self._identity(),
            wait_s=wait_s,
            running=tuple(
                wire.RunningTaskReport(task_id=t.task_id, port=t.port) for t in self._tasks.values()
            ),
            completed=tuple(self._completed.values()),
        )
        answer = await self._overlord.fetch(
            wire.HeartbeatAnswer, "POST", HEARTBEAT_PATH, report, timeout_s=HTTP_TIMEOUT_S + wait_s
        )
        news = False
        for tid in answer.ack:
            self._completed.pop(tid, None)
        for tid in answer.shutdown:
            news |= self.kill(tid, "the Overlord asked")
        if not self._draining:
            for item in answer.assign:
                try:
                    news |= self._launch(item.task)
                except (OSError, ValueError) as e:
                    # one task that cannot start must not take the worker down: report it failed
                    logger.error("task [%s] could not start: %s", item.task.id, e)
                    self._completed[item.task.id] = wire.CompletedTaskReport(
                        task_id=item.task.id, status=TaskState.FAILED, error=f"could not start: {e}"
                    )
                    news = True
        return news

    def _launch(self, task: KafkaIndexTaskSpec) -> bool:
        """Start the task (in a warm peon if there is one); whether it was new here."""
        task_id = task.id
        if task_id in ("", ".", "..") or Path(task_id).name != task_id:
            raise ValueError(f"task id {task_id!r} is not a plain file name")
        if task_id in self._tasks or task_id in self._completed:
            return False
        task_dir = self.task_root / task_id
        shutil.rmtree(task_dir, ignore_errors=True)
        task_dir.mkdir(parents=True)
        (task_dir / "task.json").write_text(task.model_dump_json(by_alias=True))
        process = self._take_warm(task_dir)
        if process is not None:
            self._tasks[task_id] = RunningTask(task_id, process, task_dir, self._clock.monotonic())
            logger.info("task [%s] handed to warm peon pid %d", task_id, process.pid)
            return True
        task_args = ["--task-file", str(task_dir / "task.json"), "--task-dir", str(task_dir)]
        with open(task_dir / "log", "ab") as log:
            process = subprocess.Popen(
                self._peon_command(task_args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                env=self._peon_env(),
            )
        self._tasks[task_id] = RunningTask(task_id, process, task_dir, self._clock.monotonic())
        logger.info("task [%s] started as pid %d", task_id, process.pid)
        return True

    def _peon_command(self, args: list[str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "middlemanager.peon",
            *args,
            "--overlord",
            self.settings.overlord,
            "--host",
            self.settings.host,
            "--log-format",
            self.settings.log_format,
            *(
                ["--kafka-stores-dir", str(self.settings.kafka_stores_dir.absolute())]
                if self.settings.kafka_stores_dir is not None
                else []
            ),
        ]

    def _peon_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[CLUSTER_TOKEN_ENV] = self.settings.cluster_token.get_secret_value()
        return env

    # ------------------------------------------------------------ warm peons

    def _keep_warm(self) -> None:
        """Notice warm peons that died, and start one if fewer than ``warm_peons`` wait."""
        for process in list(self._warm):
            code = process.poll()
            if code is not None:
                self._warm.remove(process)
                self._warm_due = self._clock.monotonic() + WARM_RETRY_S
                logger.warning(
                    "warm peon pid %d exited with code %s before it had a task (see %s); tasks start "
                    "cold for %.0fs",
                    process.pid,
                    code,
                    self.task_root / WARM_LOG,
                    WARM_RETRY_S,
                )
        if (
            self._draining
            or len(self._warm) >= self.settings.warm_peons
            or self._clock.monotonic() < self._warm_due
        ):
            return
        try:
            # one at a time: its imports take a core for most of a second
            with open(self.task_root / WARM_LOG, "ab") as log:
                process = subprocess.Popen(
                    self._peon_command(["--warm"]),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.PIPE,
                    preexec_fn=_die_with_parent,
                    env=self._peon_env(),
                )
        except OSError as e:
            self._warm_due = self._clock.monotonic() + WARM_RETRY_S
            logger.warning("could not start a warm peon: %s", e)
            return
        self._warm.append(process)
        logger.debug("warm peon started as pid %d", process.pid)

    def _take_warm(self, task_dir: Path) -> subprocess.Popen[bytes] | None:
        """A warm peon that took the task (it then logs to the task's log file), or None."""
        order = {"taskFile": str(task_dir / "task.json"), "taskDir": str(task_dir)}
        while self._warm:
            process = self._warm.pop(0)
            self._warm_due = max(self._warm_due, self._clock.monotonic() + WARM_RESPAWN_DELAY_S)
            if process.poll() is not None:
                continue  # died meanwhile; _keep_warm would have said so
            try:
                assert process.stdin is not None
                process.stdin.write(json.dumps(order).encode() + b"\n")
                process.stdin.close()
            except OSError as e:
                logger.warning("warm peon pid %d did not take its task: %s", process.pid, e)
                self._stop_warm(process)
                continue
            return process
        return None

    def _stop_warm(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    def _retire_warm(self) -> None:
        """Stop the warm peons (they have no task): when the worker stops."""
        while self._warm:
            self._stop_warm(self._warm.pop())

    # ------------------------------------------------------------ tasks

    def kill(self, task_id: str, reason: str) -> bool:
        """Kill a task's process; whether it was the first time."""
        task = self._tasks.get(task_id)
        if task is None:
            return False
        logger.info("killing task [%s] (pid %d): %s", task_id, task.process.pid, reason)
        with contextlib.suppress(ProcessLookupError):
            task.process.kill()
        first = not task.killed
        task.killed = True
        return first

    def _reap(self) -> None:
        for task_id, task in list(self._tasks.items()):
            if task.port is None:
                port_file = task.task_dir / "port"
                if port_file.exists():
                    with contextlib.suppress(ValueError, OSError):
                        task.port = int(port_file.read_text())
            code = task.process.poll()
            if code is None:
                continue
            del self._tasks[task_id]
            status_file = task.task_dir / "status.json"
            try:
                entry = wire.CompletedTaskReport.model_validate(
                    {**json.loads(status_file.read_text()), "taskId": task_id}
                )
            except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
                entry = wire.CompletedTaskReport(
                    task_id=task_id,
                    status=TaskState.FAILED,
                    error=f"task process exited with code {code} and no status",
                )
            self._completed[task_id] = entry
            logger.info("task [%s] exited (%s) with %s", task_id, code, entry.status.value)

    async def _drain(self) -> None:
        """Graceful stop: take no new task, hand the running ones back, then go.

        The Overlord hears at once that this worker has no free slot (capacity 0), so it
        assigns nothing more here. Each task is asked to stop (SIGTERM): it stops reading
        without publishing and exits FAILED, which the next heartbeat reports; its
        supervisor then starts a replacement from the same start offsets on another
        worker, so nothing is lost, and nothing is duplicated because nothing of the
        stopped task was published. A task already publishing makes its publish attempt
        first (SUCCESS if it commits; if the Overlord says wait, it stops). What has not
        exited by ``shutdown_timeout_s`` (or by a second stop signal) is killed.
        """
        self._draining = True
        self._retire_warm()
        n = len(self._tasks)
        logger.info(
            "middlemanager %s stopping: handing back %d task(s) within %.0fs",
            self.name,
            n,
            self.settings.shutdown_timeout_s,
        )
        await self._heartbeat_quietly()  # capacity 0 from now on
        for task in self._tasks.values():
            with contextlib.suppress(ProcessLookupError):
                task.process.send_signal(signal.SIGTERM)
        deadline = self._clock.monotonic() + self.settings.shutdown_timeout_s
        last_beat = self._clock.monotonic()
        while self._tasks and self._clock.monotonic() < deadline and not self._hurry.is_set():
            before = len(self._completed)
            self._reap()
            if (
                len(self._completed) != before
                or self._clock.monotonic() - last_beat >= self.settings.heartbeat_s
            ):
                await self._heartbeat_quietly()  # report each hand-back as soon as it happens
                last_beat = self._clock.monotonic()
            await wait_event(self._clock, self._hurry, 0.1)
        for task_id in list(self._tasks):
            self.kill(task_id, "shutdown deadline")
        for task in list(self._tasks.values()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(task.process.wait, 5)
        self._reap()
        for _ in range(3):  # the Overlord must hear how the tasks ended
            if not self._completed or await self._heartbeat_quietly():
                break
            await self._clock.sleep(0.5)
        logger.info("middlemanager %s stopped; %d task(s) handed back", self.name, n)

    async def _heartbeat_quietly(self) -> bool:
        try:
            await self._heartbeat()
        except IndexerError as e:
            logger.warning("heartbeat to %s failed: %s", self.settings.overlord, e)
            return False
        return True

    # ------------------------------------------------------------ HTTP

    def build_app(self) -> web.Application:
        token = self.settings.cluster_token.get_secret_value()

        @web.middleware
        async def cluster_only(request: web.Request, handler: Any) -> web.StreamResponse:
            # the worker paths (task list, task logs) answer only the cluster's credential, as the
            # tasks' control paths do (middlemanager.peon); the health check stays open
            if token and request.path != "/status/health":
                given = request.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    raise web.HTTPUnauthorized(reason="worker paths need the cluster's credentials")
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(middlewares=[error_middleware, cluster_only])

        async def health(_: web.Request) -> web.Response:
            return web.json_response(True)

        async def tasks(_: web.Request) -> web.Response:
            return answer(
                [
                    wire.WorkerTask(task_id=t.task_id, pid=t.process.pid, port=t.port)
                    for t in self._tasks.values()
                ]
            )

        async def task_log(request: web.Request) -> web.Response:
            task_id = request.match_info["task"]
            path = self.task_root / task_id / "log"
            if "/" in task_id or task_id.startswith(".") or not path.is_file():
                raise web.HTTPNotFound(reason=f"no log for task [{task_id}]")
            return web.Response(text=path.read_text(errors="replace"), content_type="text/plain")

        app.router.add_get("/status/health", health)
        app.router.add_get("/druid/worker/v1/task/{task}/log", task_log)
        app.router.add_get("/druid/worker/v1/tasks", tasks)
        return app


async def serve(settings: MiddleManagerSettings) -> None:
    mm = MiddleManager(settings)
    runner = web.AppRunner(mm.build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    logger.info(
        "middlemanager %s serving; overlord %s; capacity %d", mm.name, settings.overlord, settings.capacity
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            logger.warning("%s again: killing the remaining tasks now", sig.name)
            mm.hurry()
        else:
            logger.info("%s: stopping", sig.name)
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await mm.run(stop)
    finally:
        await runner.cleanup()

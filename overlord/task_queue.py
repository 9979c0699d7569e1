"""The Overlord's task queue and worker registry.

Tasks live in the metadata store (so an Overlord restart knows them) and, while
active, in memory. MiddleManagers heart-beat every second: they report the
tasks they run and those that ended, and receive the tasks assigned to them and
the tasks to kill. A pending task goes to the live worker with the most free
slots. A worker silent for longer than ``worker_timeout_s`` is lost and its
tasks fail, so their supervisors replace them.

A heartbeat may ask to be held (``waitS``, a long poll): when the answer has
nothing new for the worker, the Overlord keeps the request open up to that long
(at most :data:`MAX_HOLD_S` and a third of ``worker_timeout_s``) and answers as
soon as a task is assigned to that worker or one of its tasks is to be killed.
A task created at a handoff thus reaches its worker within milliseconds instead
of at the worker's next heartbeat. Everything else is as for a plain heartbeat:
what the report says is recorded before the hold, a worker that asks for no
wait (or a stopping worker, capacity 0) gets its answer at once, and an answer
lost with a dropped request is repeated by the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from overlord.metadata.store import MetadataStore, TaskRow
from supervisor.chronology import now_iso
from supervisor.clock import SYSTEM_CLOCK, Clock, wait_event
from supervisor.errors import Conflict, NotFound
from supervisor.ports import RunnerState, TaskInfo, TaskLocation, TaskState
from supervisor.protocol import (
    Heartbeat,
    HeartbeatAnswer,
    TaskAssignment,
    WorkerEntry,
    WorkerInfo,
    WorkerRegistration,
)
from supervisor.task_spec import KafkaIndexTaskSpec

logger = logging.getLogger(__name__)

# how many killed tasks are remembered for a late SUCCESS report of their worker
KILLED_REMEMBERED = 1000
# longest a heartbeat is held (long poll), whatever the worker asks for
MAX_HOLD_S = 10.0


@dataclass
class Worker:
    host: str
    port: int
    capacity: int
    version: str
    last_seen: float  # the queue's clock, monotonic seconds
    running: set[str] = field(default_factory=set)
    assigned: set[str] = field(default_factory=set)  # sent, not yet reported running
    to_kill: set[str] = field(default_factory=set)
    kills_sent: set[str] = field(default_factory=set)  # the to_kill of the last answer
    # set when something new is there for the worker: ends the heartbeat held for it
    wake: asyncio.Event | None = field(default=None, repr=False)

    def notify(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def answer(self, active: dict[str, TaskRow], deep_storage: str) -> tuple[list[TaskAssignment], list[str]]:
        """What to start and what to kill, as of now."""
        assign = [_assignment(active[t], deep_storage) for t in sorted(self.assigned) if t in active]
        kill = sorted(self.to_kill)
        self.kills_sent = set(kill)
        return assign, kill

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def free(self) -> int:
        return self.capacity - len(self.running | self.assigned)

    def to_wire(self) -> WorkerEntry:
        return WorkerEntry(
            worker=WorkerInfo(host=self.name, ip=self.host, capacity=self.capacity, version=self.version),
            curr_capacity_used=len(self.running | self.assigned),
            running_tasks=tuple(sorted(self.running | self.assigned)),
        )


def _assignment(row: TaskRow, deep_storage: str) -> TaskAssignment:
    task = KafkaIndexTaskSpec.model_validate(row.payload)
    if task.deep_storage is None:  # queued before task specs named their deep storage
        task = task.model_copy(update={"deep_storage": deep_storage})
    return TaskAssignment(task=task)


def _info(row: TaskRow) -> TaskInfo:
    location = TaskLocation(row.host, row.port) if row.host and row.port else None
    return TaskInfo(
        id=row.id,
        spec=KafkaIndexTaskSpec.model_validate(row.payload),
        state=TaskState(row.status),
        runner_state=RunnerState(row.runner_status),
        location=location,
        error=row.error,
    )


class TaskQueue:
    """Implements the supervisor's ``TaskQueuePort`` and serves the workers."""

    def __init__(
        self,
        store: MetadataStore,
        worker_timeout_s: float,
        deep_storage: str,
        on_change: Callable[[str], None] = lambda _ds: None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._store = store
        self._timeout = worker_timeout_s
        self._deep_storage = deep_storage
        self._on_change = on_change
        self._active: dict[str, TaskRow] = {}
        self._workers: dict[str, Worker] = {}
        self._started = self._clock.monotonic()
        self._lock = asyncio.Lock()
        # tasks recorded FAILED by a kill whose worker may still report them done: a task that had
        # finished (say, published) before the kill reached it reports SUCCESS, which then stands
        self._killed: OrderedDict[str, TaskRow] = OrderedDict()

    async def load(self) -> None:
        rows = await asyncio.to_thread(self._store.active_tasks)
        self._active = {r.id: r for r in rows}
        logger.info("task queue: %d active tasks known from the metadata store", len(rows))

    # ------------------------------------------------------------ TaskQueuePort

    async def submit(self, spec: KafkaIndexTaskSpec) -> None:
        if spec.deep_storage is None:
            spec = spec.model_copy(update={"deep_storage": self._deep_storage})
        now = now_iso(self._clock)
        row = TaskRow(
            id=spec.id,
            datasource=spec.data_source,
            type=spec.type,
            group_id=spec.group_id,
            supervisor_id=spec.supervisor_id,
            status=TaskState.RUNNING.value,
            runner_status=RunnerState.PENDING.value,
            worker=None,
            host=None,
            port=None,
            payload=spec.to_json(),
            error=None,
            report=None,
            created_date=now,
            updated_date=now,
        )
        async with self._lock:
            if spec.id in self._active:
                raise Conflict(f"task [{spec.id}] already exists")
            await asyncio.to_thread(self._store.upsert_task, row)
            self._active[spec.id] = row
            self._assign_pending()

    async def kill(self, task_id: str, reason: str) -> None:
        async with self._lock:
            row = self._active.get(task_id)
            if row is None:
                return
            if row.worker is not None and row.worker in self._workers:
                worker = self._workers[row.worker]
                worker.to_kill.add(task_id)
                worker.notify()
            await self._complete(row, TaskState.FAILED, f"killed: {reason}", None)
            if row.worker is not None:
                self._killed[task_id] = row
                while len(self._killed) > KILLED_REMEMBERED:
                    self._killed.popitem(last=False)

    async def tasks_for(self, datasource: str) -> list[TaskInfo]:
        return [_info(r) for r in self._active.values() if r.datasource == datasource]

    async def get(self, task_id: str) -> TaskInfo | None:
        row = await self.get_row(task_id)
        return _info(row) if row is not None else None

    # ------------------------------------------------------------ API helpers

    async def get_row(self, task_id: str) -> TaskRow | None:
        row = self._active.get(task_id)
        if row is not None:
            return row
        return await asyncio.to_thread(self._store.get_task, task_id)

    async def require_row(self, task_id: str) -> TaskRow:
        row = await self.get_row(task_id)
        if row is None:
            raise NotFound(f"Cannot find any task with id: [{task_id}]")
        return row

    def active_rows(self) -> list[TaskRow]:
        return list(self._active.values())

    def task_counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in RunnerState if state is not RunnerState.NONE}
        for row in self._active.values():
            counts[row.runner_status] = counts.get(row.runner_status, 0) + 1
        return counts

    def workers(self) -> list[Worker]:
        return list(self._workers.values())

    async def is_running(self, task_id: str) -> bool:
        return task_id in self._active

    async def shutdown_datasource(self, datasource: str) -> list[str]:
        ids = [r.id for r in self._active.values() if r.datasource == datasource]
        for tid in ids:
            await self.kill(tid, "shutdownAllTasks")
        return ids

    # ------------------------------------------------------------ workers

    async def register(self, body: WorkerRegistration) -> None:
        async with self._lock:
            name = f"{body.host}:{body.port}"
            worker = self._workers.get(name)
            if worker is None:
                self._workers[name] = Worker(
                    body.host, body.port, body.capacity, body.version, self._clock.monotonic()
                )
                logger.info(
                    "worker [%s] registered with capacity %d (version %s, wire protocol %d)",
                    name,
                    body.capacity,
                    body.version or "?",
                    body.protocol_version,
                )
            else:
                worker.capacity = body.capacity
                worker.version = body.version
                worker.last_seen = self._clock.monotonic()

    def max_hold_s(self) -> float:
        """The longest a heartbeat is held: well inside the time that loses a worker."""
        return min(MAX_HOLD_S, self._timeout / 3)

    async def heartbeat(self, report: Heartbeat) -> HeartbeatAnswer:
        """One worker's report; the answer lists what it must start and kill.

        With ``waitS`` in the report and nothing new to tell, the answer waits up to that
        long for a task to be assigned to this worker or one of its tasks to be killed.
        """
        host = report.host
        port = report.port
        name = f"{host}:{port}"
        wait_s = min(report.wait_s, self.max_hold_s())
        changed: set[str] = set()
        wake: asyncio.Event | None = None
        async with self._lock:
            worker = self._workers.get(name)
            if worker is None:
                worker = Worker(host, port, report.capacity, report.version, self._clock.monotonic())
                self._workers[name] = worker
                logger.info("worker [%s] (re)joined", name)
            worker.capacity = report.capacity
            worker.last_seen = self._clock.monotonic()
            acks: list[str] = []
            for done in report.completed:
                tid = done.task_id
                acks.append(tid)
                row = self._active.get(tid)
                worker.running.discard(tid)
                worker.assigned.discard(tid)
                if row is None:
                    killed = self._killed.pop(tid, None)
                    if killed is not None and done.status is TaskState.SUCCESS:
                        # it ended on its own before the kill took effect: its own end stands
                        logger.info("task [%s] had succeeded before its kill reached it", tid)
                        await self._complete(killed, done.status, done.error, done.report)
                        changed.add(killed.datasource)
                    continue
                if row.worker is not None and row.worker != name:
                    # A second copy of the task ended here, on a worker the task is not running on
                    # (it was shut down as a duplicate: after an Overlord restart a task may have
                    # been started by a worker that rejoined late and by the one it was given to
                    # again). The task's own copy, on row.worker, reports its end.
                    logger.info("task [%s]: the end of its copy on worker [%s] is not its own", tid, name)
                    continue
                await self._complete(row, done.status, done.error, done.report)
                changed.add(row.datasource)
            running: set[str] = set()
            reported = {item.task_id for item in report.running}
            worker.to_kill &= reported  # a kill is repeated until the worker stops reporting the task
            for item in report.running:
                tid = item.task_id
                row = self._active.get(tid)
                if row is None or (row.worker is not None and row.worker != name):
                    worker.to_kill.add(tid)  # unknown, finished, or given to another worker
                    continue
                running.add(tid)
                task_port = item.port
                if (
                    row.worker != name
                    or row.port != task_port
                    or row.runner_status != RunnerState.RUNNING.value
                ):
                    row = replace(
                        row,
                        worker=name,
                        host=host,
                        port=task_port or None,
                        runner_status=RunnerState.RUNNING.value,
                        updated_date=now_iso(self._clock),
                    )
                    await asyncio.to_thread(self._store.upsert_task, row)
                    self._active[tid] = row
                    changed.add(row.datasource)
            worker.running = running
            worker.assigned -= running
            for row in [r for r in self._active.values() if r.worker == name]:
                if row.id not in running and row.id not in acks:
                    # the worker no longer runs it (it restarted): no end will ever be reported
                    gone = f"worker [{name}] no longer runs the task"
                    await self._complete(row, TaskState.FAILED, gone, None)
                    changed.add(row.datasource)
            if worker.capacity <= 0:
                worker.assigned.clear()  # a stopping worker: its not yet started tasks go elsewhere
            self._assign_pending()
            news = bool(worker.to_kill - worker.kills_sent)
            assign, kill = worker.answer(self._active, self._deep_storage)
            if wait_s > 0 and worker.capacity > 0 and not assign and not news:
                wake = worker.wake = asyncio.Event()  # a newer request of the worker takes over
        for ds in changed:
            self._on_change(ds)
        if wake is not None:
            assign, kill = await self._hold(worker, wake, wait_s, assign, kill)
        return HeartbeatAnswer(assign=tuple(assign), shutdown=tuple(kill), ack=tuple(acks))

    async def _hold(
        self,
        worker: Worker,
        wake: asyncio.Event,
        wait_s: float,
        assign: list[TaskAssignment],
        kill: list[str],
    ) -> tuple[list[TaskAssignment], list[str]]:
        """The long poll: wait for news for ``worker``, then answer as of then."""
        try:
            await wait_event(self._clock, wake, wait_s)
        finally:
            if worker.wake is wake:
                worker.wake = None
        async with self._lock:
            if self._workers.get(worker.name) is not worker:
                return assign, kill  # lost (or re-joined) meanwhile: the next heartbeat sorts it out
            worker.last_seen = self._clock.monotonic()
            return worker.answer(self._active, self._deep_storage)

    def _assign_pending(self) -> None:
        """Give every unassigned task to the live worker with the most free slots."""
        now = self._clock.monotonic()
        live = [w for w in self._workers.values() if now - w.last_seen <= self._timeout]
        for row in sorted(self._active.values(), key=lambda r: r.created_date):
            if row.worker is not None:
                continue
            if any(row.id in w.assigned for w in live):
                continue
            candidates = [w for w in live if w.free > 0]
            if not candidates:
                return
            best = max(candidates, key=lambda w: (w.free, -len(w.running)))
            best.assigned.add(row.id)
            best.notify()
            logger.info("task [%s] assigned to worker [%s]", row.id, best.name)

    async def check_workers(self) -> None:
        """Fail the tasks of workers that stopped heart-beating."""
        now = self._clock.monotonic()
        changed: set[str] = set()
        async with self._lock:
            for name, worker in list(self._workers.items()):
                if now - worker.last_seen > self._timeout:
                    logger.warning("worker [%s] lost: no heartbeat for %.1fs", name, now - worker.last_seen)
                    del self._workers[name]
            grace_over = now - self._started > self._timeout
            for row in list(self._active.values()):
                if row.worker is None:
                    continue
                if row.worker in self._workers or not grace_over:
                    continue
                await self._complete(row, TaskState.FAILED, f"worker [{row.worker}] lost", None)
                changed.add(row.datasource)
            self._assign_pending()
        for ds in changed:
            self._on_change(ds)

    async def _complete(self, row: TaskRow, state: TaskState, error: str | None, report: Any) -> None:
        done = replace(
            row,
            status=state.value,
            runner_status=RunnerState.NONE.value,
            error=error,
            report=report if report is not None else row.report,
            updated_date=now_iso(self._clock),
        )
        await asyncio.to_thread(self._store.upsert_task, done)
        self._active.pop(row.id, None)
        for w in self._workers.values():
            w.assigned.discard(row.id)
        logger.info("task [%s] %s%s", row.id, state.value, f": {error}" if error else "")
        self._on_change(row.datasource)

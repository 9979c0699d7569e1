"""The Kafka supervisor: one serial loop that plans work and never writes data.

It discovers partitions, splits them into task groups, keeps ``replicas`` tasks
reading per group, ends each group after ``taskDuration`` (pause, take the
highest offsets, set them as end offsets) so the group publishes while the
next one reads on, and watches publishing groups until they succeed, fail or
time out. Every step of a run is a verb, as in Druid's SeekableStreamSupervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable

from supervisor import notices as n
from supervisor import reports
from supervisor.assignment import assign
from supervisor.chronology import format_seconds
from supervisor.clock import SYSTEM_CLOCK, Clock
from supervisor.errors import IndexerError, MetadataStoreUnavailable, StreamError, Unavailable
from supervisor.offsets import PartitionId, PartitionOffsets, StreamPartition
from supervisor.ports import (
    OffsetStorePort,
    StreamPort,
    TaskClientPort,
    TaskInfo,
    TaskProgress,
    TaskQueuePort,
    TaskRunStatus,
    TaskState,
)
from supervisor.spec import SupervisorSpec
from supervisor.state import BasicState, DetailedState, StateManager
from supervisor.task_group import TaskData, TaskGroup, id_part, sequence_name, spec_fingerprint
from supervisor.task_spec import KafkaIndexTaskSpec

logger = logging.getLogger(__name__)

UNRESPONSIVE_AFTER = 3  # consecutive failed chats before a reading task is replaced


class Supervisor:
    """Runs one Kafka supervisor spec."""

    def __init__(
        self,
        spec: SupervisorSpec,
        *,
        stream: StreamPort,
        tasks: TaskQueuePort,
        chat: TaskClientPort,
        offsets: OffsetStorePort,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.datasource = spec.data_schema.data_source
        # the stream: the topic, or the topicPattern (offsets are stored under it, as in Druid)
        self.topic = spec.io_config.stream
        self.state = StateManager(clock=clock)
        self.notices = n.NoticeQueue()
        self._stream = stream
        self._tasks = tasks
        self._chat = chat
        self._offsets = offsets
        self._clock = clock
        self._fingerprint = spec_fingerprint(spec.to_json())
        self._partitions: list[PartitionId] = []
        # next offset the next task of a partition's group starts from; None: ask the metadata store
        self._next_offsets: dict[PartitionId, int | None] = {}
        self._reading: dict[int, TaskGroup] = {}
        self._pending: dict[int, list[TaskGroup]] = {}
        self._discovered = False
        self._latest: reports.Snapshot | None = None
        self._current: dict[str, PartitionOffsets] = {}
        self._task_states: dict[str, TaskState] = {}
        self._new_partitions: set[PartitionId] = set()
        self._progress: dict[str, TaskProgress] = {}
        self._idle_since: float | None = None
        self._last_activity: float = clock.now()
        self._last_rows = 0
        self._loop: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()  # notices pushed again after a delay
        self._stopped = asyncio.Event()
        self.generation_time = clock.now()

    # ------------------------------------------------------------------ lifecycle

    @property
    def suspended(self) -> bool:
        return self.spec.suspended

    def start(self) -> None:
        if self._loop is not None:
            return
        if self.suspended:
            self.state.transition(DetailedState.SUSPENDED)
        else:
            self.state.transition(DetailedState.CONNECTING_TO_STREAM)
        self._loop = asyncio.create_task(self._run_loop(), name=f"supervisor[{self.id}]")
        self._ticker = asyncio.create_task(self._tick(), name=f"supervisor-ticker[{self.id}]")

    async def stop(self, graceful: bool, timeout_s: float = 60.0) -> None:
        """Stop the loop. Graceful: reading groups are told to publish first.

        Not graceful (the Overlord going down): tasks are left alone, so a
        restarted Overlord adopts them.
        """
        if self._loop is None:
            return
        if graceful and not self._loop.done():
            self.notices.push(n.Notice(n.SHUTDOWN))
            try:
                await asyncio.wait_for(asyncio.shield(self._loop), timeout_s)
            except (TimeoutError, asyncio.CancelledError):
                logger.warning("supervisor[%s]: graceful stop timed out", self.id)
        for t in (self._ticker, self._loop, *self._retries):
            if t is not None and not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self._stream.close()
        self._stopped.set()

    def notify(self) -> None:
        """Ask for a run soon (a task changed status)."""
        self.notices.push(n.Notice(n.RUN))

    def request_handoff(self, group_ids: Iterable[int]) -> list[int]:
        accepted = []
        for gid in group_ids:
            group = self._reading.get(gid)
            if group is not None:
                group.handoff_early = True
                accepted.append(gid)
        self.notify()
        return accepted

    def request_reset(self) -> None:
        self.notices.push(n.Notice(n.RESET))

    def partition_problem(self, partitions: Iterable[PartitionId]) -> str | None:
        """Why these partition keys cannot name this supervisor's partitions (None: they can):
        a topicPattern supervisor keys them ``"topic:partition"`` with a matching topic, a
        single-topic one by number (Druid's KafkaTopicPartition, multi-topic or not)."""
        io = self.spec.io_config
        for p in partitions:
            if io.topic_pattern is None and isinstance(p, StreamPartition):
                return f"'{p}': the supervisor reads one topic; name its partitions by number"
            if io.topic_pattern is not None:
                if not isinstance(p, StreamPartition):
                    return f"'{p}': a topicPattern supervisor names partitions 'topic:partition'"
                if not re.fullmatch(io.topic_pattern, p.topic):
                    return f"'{p}': topic [{p.topic}] does not match topicPattern [{io.topic_pattern}]"
        return None

    def request_reset_offsets(self, offsets: PartitionOffsets) -> None:
        """Druid's resetOffsets: go on from these offsets on these partitions only."""
        self.notices.push(n.Notice(n.RESET_OFFSETS, key=repr(offsets.to_json()), payload=offsets))

    async def _tick(self) -> None:
        await self._clock.sleep(self.spec.io_config.start_delay.total_seconds())
        period = max(0.05, self.spec.io_config.period.total_seconds())
        while True:
            self.notices.push(n.Notice(n.RUN))
            await self._clock.sleep(period)

    def _retry_later(self, delay_s: float, notice: n.Notice) -> None:
        async def push() -> None:
            await self._clock.sleep(delay_s)
            self.notices.push(notice)

        retry = asyncio.create_task(push(), name=f"supervisor-retry[{self.id}]")
        self._retries.add(retry)
        retry.add_done_callback(self._retries.discard)

    async def _run_loop(self) -> None:
        while True:
            notice = await self.notices.get()
            try:
                if notice.kind == n.SHUTDOWN:
                    await self._graceful_shutdown()
                    return
                if notice.kind == n.RESET:
                    await self._reset()
                elif notice.kind == n.RESET_OFFSETS:
                    await self._reset_offsets(notice.payload)
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Unavailable as e:  # e.g. the metadata store is down: expected, no traceback
                logger.warning("supervisor[%s]: run failed: %s", self.id, e)
                self.state.record_error(str(e), kind=type(e).__name__)
                self.state.end_run(self._healthy_state())
                if e.retriable and notice.kind in (n.RESET, n.RESET_OFFSETS):
                    # not lost: tried again after a period, like the next run
                    delay = max(0.05, self.spec.io_config.period.total_seconds())
                    self._retry_later(delay, notice)
            except Exception as e:  # the loop must survive any one bad run
                logger.exception("supervisor[%s]: run failed", self.id)
                self.state.record_error(str(e), kind=type(e).__name__)
                self.state.end_run(self._healthy_state())

    # ------------------------------------------------------------------ one run

    def _healthy_state(self) -> DetailedState:
        if self.suspended:
            return DetailedState.SUSPENDED
        if self._idle_since is not None:
            return DetailedState.IDLE
        if not self._discovered:
            return DetailedState.DISCOVERING_INITIAL_TASKS
        return DetailedState.RUNNING

    async def run_once(self) -> None:
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("update_partitions", self.update_partitions),
            ("discover_tasks", self.discover_tasks),
            ("update_task_status", self.update_task_status),
            ("check_idle", self.check_idle),
            ("check_task_duration", self.check_task_duration),
            ("check_pending_completion_tasks", self.check_pending_completion_tasks),
            ("check_current_task_state", self.check_current_task_state),
            ("create_new_tasks", self.create_new_tasks),
        ]
        store_down = False
        for name, step in steps:
            try:
                await step()
            except StreamError as e:
                logger.warning("supervisor[%s]: %s: %s", self.id, name, e)
                self.state.record_error(str(e), kind="StreamException", stream=True)
                if name == "update_partitions" and not self._partitions:
                    break  # nothing can be planned without partitions
            except MetadataStoreUnavailable as e:
                # one warning a run; the steps that need no store go on, the rest retry next run
                logger.log(
                    logging.DEBUG if store_down else logging.WARNING,
                    "supervisor[%s]: %s: %s",
                    self.id,
                    name,
                    e,
                )
                if not store_down:
                    self.state.record_error(f"{name}: {e}", kind=type(e).__name__)
                store_down = True
            except IndexerError as e:
                logger.warning("supervisor[%s]: %s: %s", self.id, name, e)
                self.state.record_error(f"{name}: {e}", kind=type(e).__name__)
        self.state.end_run(self._healthy_state())

    async def update_partitions(self) -> None:
        partitions = await asyncio.to_thread(self._stream.partitions)
        added = [p for p in partitions if p not in self._partitions]
        if self._partitions and added:
            # partitions born after the supervisor started are read from their beginning
            logger.info("supervisor[%s]: new partitions %s", self.id, added)
            self._new_partitions.update(added)
            for gid in assign(added, self.spec.io_config.task_count):
                group = self._reading.get(gid)
                if group is not None:
                    group.handoff_early = True
        for p in partitions:
            self._next_offsets.setdefault(p, None)
        self._partitions = partitions
        latest = await asyncio.to_thread(self._stream.latest_offsets, partitions)
        self._latest = reports.Snapshot(latest, self._clock.now())

    async def discover_tasks(self) -> None:
        """Adopt the tasks already running for this datasource (after an Overlord
        restart or a spec update); kill those that no longer fit."""
        if self._discovered:
            return
        for info in await self._tasks.tasks_for(self.datasource):
            if info.spec.supervisor_id != self.id:
                continue
            await self._adopt(info)
        self._discovered = True

    async def _adopt(self, info: TaskInfo) -> None:
        spec = info.spec
        status: TaskRunStatus | None = None
        end: PartitionOffsets | None = None
        if info.location is not None:
            try:
                status = await self._chat.status(info.location, info.id)
                end = await self._chat.end_offsets(info.location, info.id)
            except Unavailable:
                status = None
        publishing = status is TaskRunStatus.PUBLISHING or (end is not None and status is not None)
        if publishing and end is not None:
            group = self._pending_group(spec, end)
            group.tasks[info.id] = TaskData(info.id, info.location, status)
            for p, o in end.items():
                prev = self._next_offsets.get(p)
                self._next_offsets[p] = o if prev is None else max(prev, o)
            logger.info("supervisor[%s]: adopted publishing task [%s]", self.id, info.id)
            return
        current = bool(spec.supervisor_spec) and spec_fingerprint(spec.supervisor_spec) == self._fingerprint
        task_count = self.spec.io_config.task_count
        if self._partitions:
            wanted = assign(self._partitions, task_count).get(spec.group_id, [])
            fits = current and set(spec.start_offsets) == set(wanted)
        else:
            fits = current and list(assign(list(spec.start_offsets), task_count)) == [spec.group_id]
        existing = self._reading.get(spec.group_id)
        if fits and existing is not None and existing.sequence_name != spec.sequence_name:
            fits = False
        if not fits:
            await self._kill(info.id, "task does not match the current supervisor spec")
            return
        if existing is None:
            existing = TaskGroup(
                group_id=spec.group_id,
                start_offsets=PartitionOffsets(spec.start_offsets),
                sequence_name=spec.sequence_name,
                min_message_time=spec.min_message_time,
                max_message_time=spec.max_message_time,
            )
            self._reading[spec.group_id] = existing
        start_time = None
        if info.location is not None:
            try:
                start_time = await self._chat.start_time(info.location, info.id)
            except Unavailable:
                start_time = None
        if status is TaskRunStatus.PAUSED and info.location is not None:
            # paused by a supervisor that went away before setting its end offsets
            try:
                await self._chat.resume(info.location, info.id)
            except Unavailable as e:
                logger.warning("supervisor[%s]: could not resume adopted task [%s]: %s", self.id, info.id, e)
        existing.tasks[info.id] = TaskData(info.id, info.location, status, start_time)
        for p in existing.partitions:
            self._next_offsets.setdefault(p, None)
        logger.info("supervisor[%s]: adopted reading task [%s] in group %d", self.id, info.id, spec.group_id)

    def _pending_group(self, spec: KafkaIndexTaskSpec, end: PartitionOffsets) -> TaskGroup:
        groups = self._pending.setdefault(spec.group_id, [])
        for g in groups:
            if g.sequence_name == spec.sequence_name:
                return g
        group = TaskGroup(
            group_id=spec.group_id,
            start_offsets=PartitionOffsets(spec.start_offsets),
            sequence_name=spec.sequence_name,
            min_message_time=spec.min_message_time,
            max_message_time=spec.max_message_time,
            end_offsets=end,
            completion_started=self._clock.monotonic(),
        )
        groups.append(group)
        groups.sort(key=lambda g: min(g.start_offsets.values(), default=0))
        return group

    def _all_groups(self) -> list[TaskGroup]:
        groups = list(self._reading.values())
        for pending in self._pending.values():
            groups.extend(pending)
        return groups

    async def update_task_status(self) -> None:
        running = {i.id: i for i in await self._tasks.tasks_for(self.datasource)}
        self._task_states = {}
        polls: list[tuple[str, TaskData, TaskGroup]] = []
        for group in self._all_groups():
            for tid, td in list(group.tasks.items()):
                info = running.get(tid) or await self._tasks.get(tid)
                if info is None:
                    self._task_states[tid] = TaskState.FAILED
                    continue
                self._task_states[tid] = info.state
                if info.state.is_complete:
                    self._progress.pop(tid, None)
                    continue
                td.location = info.location
                if td.location is not None and group.end_offsets is None:
                    polls.append((tid, td, group))
        results = await asyncio.gather(
            *(self._chat.progress(td.location, tid) for tid, td, _ in polls if td.location is not None),
            return_exceptions=True,
        )
        for (tid, td, group), res in zip(polls, results, strict=True):
            if isinstance(res, BaseException):
                td.chat_failures += 1
                logger.warning(
                    "supervisor[%s]: task [%s] did not answer (%d in a row): %s",
                    self.id,
                    tid,
                    td.chat_failures,
                    res,
                )
                continue
            td.chat_failures = 0
            td.run_status = res.status
            if td.start_time is None:
                td.start_time = res.start_time
            self._current[tid] = res.current_offsets
            self._progress[tid] = res
            if (
                res.handoff_requested
                and not group.handoff_early
                and self._reading.get(group.group_id) is group
            ):
                # maxTotalRows / intermediateHandoffPeriod (middlemanager/runner.py, _check_handoff)
                logger.info(
                    "supervisor[%s]: task [%s] asks for handoff of group %d: %s",
                    self.id,
                    tid,
                    group.group_id,
                    res.handoff_requested,
                )
                group.handoff_early = True

    def _state_of(self, task_id: str) -> TaskState:
        return self._task_states.get(task_id, TaskState.RUNNING)

    async def check_idle(self) -> None:
        """idleConfig: no records for ``inactiveAfterMillis`` -> publish, stop tasks, go IDLE;
        wake up when a committed record arrives (transaction markers do not count)."""
        idle = self.spec.io_config.idle_config
        now = self._clock.now()
        if idle is None or not idle.enabled or self.suspended:
            self._idle_since = None
            return
        if self._idle_since is not None:
            await self._wake_if_data()
            return
        view = self.view()
        rows = reports.rows_read(view)
        if rows != self._last_rows or any(reports.lag(view).values()) or not self._reading:
            self._last_activity = now
        self._last_rows = rows
        inactive_s = (idle.inactive_after_millis or 600_000) / 1000.0
        if now - self._last_activity >= inactive_s:
            logger.info(
                "supervisor[%s]: no new data for %.0fs: going idle", self.id, now - self._last_activity
            )
            self._idle_since = now

    async def _wake_if_data(self) -> None:
        latest = self._latest.offsets if self._latest else PartitionOffsets()
        stand = {p: o for p, o in self._next_offsets.items() if o is not None}
        behind = PartitionOffsets({p: o for p, o in stand.items() if latest.get(p, o) > o})
        unknown = [p for p in self._partitions if p not in stand]
        if not behind and not unknown:
            return
        with_records, past_markers = await asyncio.to_thread(self._stream.scan_for_records, behind)
        if with_records or unknown:
            logger.info("supervisor[%s]: new data on partitions %s: waking up", self.id, sorted(with_records))
            self._idle_since = None
            self._last_activity = self._clock.now()
            return
        if past_markers and not any(self._pending.values()):
            # only transaction markers / aborted records arrived: step over them for good
            await self._offsets.reset_partitions(self.datasource, self.topic, past_markers)
            self._next_offsets.update(past_markers)

    async def check_task_duration(self) -> None:
        now = self._clock.now()
        duration = self.spec.io_config.task_duration.total_seconds()
        stopping = self.suspended or self._idle_since is not None
        # stopTaskCount (Druid 30+, kafka-ingestion.md: "limits the number of ingestion tasks Druid
        # can cycle at any given time; if not set, Druid can cycle all tasks at the same time"):
        # at most that many groups publish at once, the oldest groups end first, the others read
        # on until a slot frees up. A suspend or idle ends every group.
        stop_count = self.spec.io_config.stop_task_count
        publishing = sum(
            1
            for groups in self._pending.values()
            for g in groups
            if not any(self._state_of(tid) is TaskState.SUCCESS for tid in g.tasks)
        )
        slots = len(self._reading) if stop_count is None else stop_count - publishing
        oldest_first = sorted(self._reading.items(), key=lambda item: item[1].reading_since() or now)
        for gid, group in oldest_first:
            since = group.reading_since()
            due = since is not None and now - since >= duration
            if not (due or group.handoff_early or stopping):
                continue
            if not stopping and slots <= 0:
                logger.debug("supervisor[%s]: group %d waits for a stopTaskCount slot", self.id, gid)
                continue
            if not any(td.location for td in group.tasks.values()) and not due:
                if stopping:
                    # nothing read yet: just drop the group's tasks
                    for tid in list(group.tasks):
                        await self._kill(tid, "supervisor suspended or idle before the task started")
                    del self._reading[gid]
                continue
            await self._end_group(gid, group)
            slots -= 1

    async def _end_group(self, gid: int, group: TaskGroup) -> None:
        """Pause the group's tasks, fix their end offsets, and move it to pending completion."""
        del self._reading[gid]
        end = await self._checkpoint(group)
        if end is None:
            logger.warning("supervisor[%s]: group %d could not be checkpointed; re-reading", self.id, gid)
            for tid in list(group.tasks):
                await self._kill(tid, "task group could not be checkpointed")
            for p, o in group.start_offsets.items():
                self._next_offsets[p] = o
            return
        group.end_offsets = end
        group.completion_started = self._clock.monotonic()
        self._pending.setdefault(gid, []).append(group)
        for p, o in end.items():
            self._next_offsets[p] = o
        logger.info(
            "supervisor[%s]: group %d reads to %s and publishes; next group starts there",
            self.id,
            gid,
            end.to_json(),
        )

    async def _checkpoint(self, group: TaskGroup) -> PartitionOffsets | None:
        live = {
            tid: td
            for tid, td in group.tasks.items()
            if td.location is not None and not self._state_of(tid).is_complete
        }
        for tid in set(group.tasks) - set(live):
            if not self._state_of(tid).is_complete:
                await self._kill(tid, "task had not started when its group ended")
            group.tasks.pop(tid, None)
        if not live:
            return None
        results = await asyncio.gather(
            *(self._chat.pause(td.location, tid) for tid, td in live.items() if td.location),
            return_exceptions=True,
        )
        paused: dict[str, PartitionOffsets] = {}
        for (tid, _), res in zip(live.items(), results, strict=True):
            if isinstance(res, BaseException):
                await self._kill(tid, f"task did not pause: {res}")
                group.tasks.pop(tid, None)
            else:
                paused[tid] = res
        if not paused:
            return None
        end = group.start_offsets
        for offsets in paused.values():
            end = end.max_with(offsets.only(group.partitions))
        results = await asyncio.gather(
            *(
                self._chat.set_end_offsets(live[tid].location, tid, end, True)  # type: ignore[arg-type]
                for tid in paused
            ),
            return_exceptions=True,
        )
        ok = 0
        for tid, res in zip(paused, results, strict=True):
            if isinstance(res, BaseException):
                await self._kill(tid, f"task did not accept its end offsets: {res}")
                group.tasks.pop(tid, None)
            else:
                ok += 1
        return end if ok else None

    async def check_pending_completion_tasks(self) -> None:
        timeout = self.spec.io_config.completion_timeout.total_seconds()
        for gid, groups in list(self._pending.items()):
            for group in list(groups):
                states = {tid: self._state_of(tid) for tid in group.tasks}
                if any(s is TaskState.SUCCESS for s in states.values()):
                    for tid, s in states.items():
                        if s is TaskState.RUNNING:
                            await self._kill(tid, "a replica already published this group")
                    groups.remove(group)
                    self.state.record_task_result(True)
                    continue
                timed_out = (
                    group.completion_started is not None
                    and self._clock.monotonic() - group.completion_started > timeout
                )
                all_failed = all(s is TaskState.FAILED for s in states.values())
                if not (timed_out or all_failed):
                    continue
                if await self._committed(group):
                    # its publish went through; only the answer was lost on the way
                    logger.info("supervisor[%s]: group %d is committed though no task said so", self.id, gid)
                    for tid, s in states.items():
                        if s is TaskState.RUNNING:
                            await self._kill(tid, "its group is already committed")
                    groups.remove(group)
                    continue
                reason = "completionTimeout elapsed" if timed_out else "all tasks of the group failed"
                logger.warning("supervisor[%s]: publishing group %d: %s; re-reading", self.id, gid, reason)
                self.state.record_error(
                    f"task group {gid} failed to publish: {reason}", kind="TaskGroupFailed"
                )
                self.state.record_task_result(False)
                await self._discard(self._read_after(group), f"publishing group {gid} failed: {reason}")
                break
        self._pending = {gid: groups for gid, groups in self._pending.items() if groups}

    async def _committed(self, group: TaskGroup) -> bool:
        """Whether the metadata store already holds this group's end offsets."""
        if group.end_offsets is None:
            return False
        stored = await self._offsets.stored_offsets(self.datasource)
        if stored is None or stored.stream != self.topic:
            return False
        # Later groups cannot commit before this one (their start would be ahead), so stored
        # offsets at or past its end mean it committed (or a resetOffsets skipped past it).
        return all(stored.offsets.get(p, -1) >= o for p, o in group.end_offsets.items())

    def _read_after(self, failed: TaskGroup) -> list[TaskGroup]:
        """The failed group and every group that read its partitions after it."""
        parts = set(failed.partitions)
        out = [failed]
        for groups in self._pending.values():
            for g in groups:
                common = parts & set(g.partitions)
                if g is not failed and any(g.start_offsets[p] >= failed.start_offsets[p] for p in common):
                    out.append(g)
        out.extend(g for g in self._reading.values() if parts & set(g.partitions))
        return out

    async def _discard(self, groups: list[TaskGroup], reason: str) -> None:
        """Kill these groups' tasks; their partitions are read again from the earliest of their
        starts (from the stored offsets when no earlier group of theirs is still publishing)."""
        restart: dict[PartitionId, int] = {}
        for g in groups:
            for tid in g.tasks:
                if self._state_of(tid) is TaskState.RUNNING:
                    await self._kill(tid, reason)
            for p, o in g.start_offsets.items():
                restart[p] = min(restart.get(p, o), o)
            if self._reading.get(g.group_id) is g:
                del self._reading[g.group_id]
            pending = self._pending.get(g.group_id, [])
            if g in pending:
                pending.remove(g)
        still_publishing = {p for gs in self._pending.values() for g in gs for p in g.partitions}
        for p, o in restart.items():
            # With an earlier group still publishing, the discarded data begins exactly where that
            # group ends. Without one, ask the stored offsets: a discarded group may have committed
            # before its tasks died (a lost worker), and re-reading from its start would then
            # repeat a sequence that can never publish again.
            self._next_offsets[p] = o if p in still_publishing else None

    async def check_current_task_state(self) -> None:
        for gid, group in list(self._reading.items()):
            for tid, td in list(group.tasks.items()):
                state = self._state_of(tid)
                if state is TaskState.FAILED:
                    logger.warning("supervisor[%s]: reading task [%s] failed; replacing it", self.id, tid)
                    group.tasks.pop(tid)
                    self._current.pop(tid, None)
                    self.state.record_task_result(False)
                elif state is TaskState.SUCCESS:
                    # it reached an end on its own: the stored offsets tell where to go on
                    group.tasks.pop(tid)
                    for other in list(group.tasks):
                        await self._kill(other, "a replica finished on its own")
                    self._reading.pop(gid, None)
                    for p in group.partitions:
                        self._next_offsets[p] = None
                    break
                elif td.chat_failures >= UNRESPONSIVE_AFTER:
                    await self._kill(tid, "task is unresponsive")
                    group.tasks.pop(tid)
                    self.state.record_task_result(False)

    async def create_new_tasks(self) -> None:
        if self.suspended or self._idle_since is not None or not self._partitions:
            return
        io = self.spec.io_config
        for gid, parts in assign(self._partitions, io.task_count).items():
            group = self._reading.get(gid)
            if group is not None and not group.tasks:
                # Every task of the group failed. If its offsets are gone from the stream (retention,
                # topic recreated), replacements would fail the same way forever: reset them, or
                # stop here, unhealthy, until the supervisor is reset.
                available = PartitionOffsets(await self._check_available(dict(group.start_offsets)))
                if available != group.start_offsets:
                    del self._reading[gid]
                    self._next_offsets.update(available)
                    group = None
            if group is None:
                start = await self._start_offsets(parts)
                now = self._clock.now()
                late = io.late_message_rejection_period
                early = io.early_message_rejection_period
                group = TaskGroup(
                    group_id=gid,
                    start_offsets=start,
                    sequence_name=sequence_name(
                        self.datasource, self._fingerprint, gid, start, nonce=uuid.uuid4().hex[:8]
                    ),
                    min_message_time=int((now - late.total_seconds()) * 1000) if late else None,
                    max_message_time=(
                        int((now + io.task_duration.total_seconds() + early.total_seconds()) * 1000)
                        if early
                        else None
                    ),
                )
                self._reading[gid] = group
                first_tasks = self.state.basic is BasicState.PENDING and not self._has_run_tasks()
                # (a running supervisor whose tasks all died is not PENDING again)
                self.state.transition(DetailedState.CREATING_TASKS if first_tasks else self._healthy_state())
            for _ in range(io.replicas - len(group.tasks)):
                spec = self._task_spec(group)
                await self._tasks.submit(spec)
                group.tasks[spec.id] = TaskData(spec.id)
                logger.info(
                    "supervisor[%s]: created task [%s] for group %d from %s",
                    self.id,
                    spec.id,
                    gid,
                    group.start_offsets.to_json(),
                )

    def _has_run_tasks(self) -> bool:
        return any(td.start_time for g in self._all_groups() for td in g.tasks.values())

    async def _start_offsets(self, partitions: list[PartitionId]) -> PartitionOffsets:
        known = {p: o for p in partitions if (o := self._next_offsets.get(p)) is not None}
        missing = [p for p in partitions if p not in known]
        if missing:
            stored = await self._offsets.stored_offsets(self.datasource)
            if stored is not None and stored.stream != self.topic:
                raise IndexerError(
                    f"stored offsets are for stream [{stored.stream}], not [{self.topic}]: "
                    "reset the supervisor"
                )
            from_store = {p: stored.offsets[p] for p in missing if stored is not None and p in stored.offsets}
            known.update(from_store)
            rest = [p for p in missing if p not in from_store]
            if rest:
                earliest = [
                    p for p in rest if self.spec.io_config.use_earliest_offset or p in self._new_partitions
                ]
                latest = [p for p in rest if p not in earliest]
                initial = PartitionOffsets()
                if earliest:
                    initial = initial.plus(await asyncio.to_thread(self._stream.earliest_offsets, earliest))
                if latest:
                    initial = initial.plus(await asyncio.to_thread(self._stream.latest_offsets, latest))
                known.update(initial)
                # Record where these partitions start before any task reads them: a
                # later generation can then never publish ahead of the first one.
                await self._offsets.reset_partitions(self.datasource, self.topic, initial)
            if from_store:
                known.update(await self._check_available(from_store))
        for p, o in known.items():
            self._next_offsets[p] = o
        return PartitionOffsets(known)

    async def _check_available(self, stored: dict[PartitionId, int]) -> dict[PartitionId, int]:
        """Stored offsets that fell out of the stream's retention."""
        earliest = await asyncio.to_thread(self._stream.earliest_offsets, list(stored))
        latest = self._latest.offsets if self._latest else PartitionOffsets()
        out = dict(stored)
        gone = {p: o for p, o in stored.items() if o < earliest.get(p, 0) or o > latest.get(p, o)}
        if not gone:
            return out
        if self.spec.tuning_config.reset_offset_automatically:
            for p in gone:
                out[p] = earliest[p]
            reset_to = earliest.only(list(gone)).to_json()
            msg = f"offsets {gone} are no longer available; reset to earliest {reset_to}"
            logger.warning("supervisor[%s]: %s", self.id, msg)
            self.state.record_error(msg, kind="OffsetsReset")
            await self._offsets.reset_partitions(
                self.datasource, self.topic, PartitionOffsets({p: out[p] for p in gone})
            )
            return out
        raise IndexerError(
            f"Previous sequenceNumber {gone} is no longer available for partitions "
            f"(earliest {earliest.only(list(gone)).to_json()}). Reset the supervisor, or set "
            "resetOffsetAutomatically in the tuningConfig"
        )

    def _task_spec(self, group: TaskGroup) -> KafkaIndexTaskSpec:
        task_id = f"index_kafka_{id_part(self.datasource)}_{self._fingerprint[:8]}_{uuid.uuid4().hex[:8]}"
        return KafkaIndexTaskSpec(
            id=task_id,
            data_source=self.datasource,
            supervisor_id=self.id,
            group_id=group.group_id,
            sequence_name=group.sequence_name,
            topic=self.spec.io_config.topic,
            topic_pattern=self.spec.io_config.topic_pattern,
            start_offsets=dict(group.start_offsets),
            end_offsets=None,
            consumer_properties=dict(self.spec.io_config.consumer_properties),
            supervisor_spec=self.spec.to_json(),
            min_message_time=group.min_message_time,
            max_message_time=group.max_message_time,
            created_time=format_seconds(self._clock.now()),
        )

    async def _kill(self, task_id: str, reason: str) -> None:
        logger.info("supervisor[%s]: killing task [%s]: %s", self.id, task_id, reason)
        self._current.pop(task_id, None)
        self._progress.pop(task_id, None)
        await self._tasks.kill(task_id, reason)

    # ------------------------------------------------------------------ commands

    async def _graceful_shutdown(self) -> None:
        """Every reading group publishes what it has read; nothing new starts."""
        self.state.stop()
        try:
            await self.update_task_status()
        except IndexerError as e:
            logger.warning("supervisor[%s]: during shutdown: %s", self.id, e)
        for gid, group in list(self._reading.items()):
            try:
                await self._end_group(gid, group)
            except IndexerError as e:
                logger.warning("supervisor[%s]: ending group %d: %s", self.id, gid, e)

    async def _reset_offsets(self, offsets: PartitionOffsets) -> None:
        parts = set(offsets)
        affected = [g for g in self._all_groups() if parts & set(g.partitions)]
        await self._discard(affected, "supervisor offsets reset")
        await self._offsets.reset_partitions(self.datasource, self.topic, offsets)
        self._next_offsets.update(offsets)
        logger.info(
            "supervisor[%s]: offsets reset to %s; %d task groups restarted",
            self.id,
            offsets.to_json(),
            len(affected),
        )

    async def _reset(self) -> None:
        """Druid's hard reset: kill every task, forget the stored offsets."""
        for group in self._all_groups():
            for tid in group.tasks:
                await self._kill(tid, "supervisor reset")
        self._reading.clear()
        self._pending.clear()
        self._current.clear()
        self._next_offsets = {p: None for p in self._partitions}
        await self._offsets.reset_offsets(self.datasource)
        logger.info("supervisor[%s]: reset: offsets cleared, tasks killed", self.id)

    # ------------------------------------------------------------------ what the reports read

    def task_groups(self) -> tuple[dict[int, TaskGroup], dict[int, list[TaskGroup]]]:
        return dict(self._reading), {k: list(v) for k, v in self._pending.items()}

    def view(self) -> reports.LoopView:
        """The loop's state for :mod:`supervisor.reports` (lag, stats, the status payload)."""
        return reports.LoopView(
            id=self.id,
            spec=self.spec,
            state=self.state,
            generation_time=self.generation_time,
            now=self._clock.now(),
            partitions=self._partitions,
            reading=self._reading,
            pending=self._pending,
            latest=self._latest,
            current=self._current,
            progress=self._progress,
        )

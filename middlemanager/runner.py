"""The read loop of one Kafka indexing task, run off the event loop (confluent-kafka blocks).

The runner reads ``[start, end)`` of its partitions, feeds the ingest pipeline,
obeys pause / resume / end-offset commands from the supervisor, and when every
partition reached its end offset writes the segments to deep storage and asks
the Overlord to publish them together with the offsets.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from middlemanager.ingest import IngestPipeline, SegmentFile
from middlemanager.ingest.pushdown import narrowed
from supervisor import protocol as wire
from supervisor.deep_storage import SegmentStore, segment_store
from supervisor.durations import format_duration
from supervisor.errors import Conflict, IndexerError, InvalidInput, TaskFailed
from supervisor.filters import DimFilter
from supervisor.kafka.config import KafkaAccess
from supervisor.kafka.producer import DeadLetterProducer
from supervisor.kafka.supplier import KafkaRecordSupplier, PollResult, Spans
from supervisor.offsets import PartitionId
from supervisor.ports import TaskRunStatus, TaskState
from supervisor.spec import TIME_COLUMN, SupervisorSpec, parse_supervisor_spec
from supervisor.task_spec import KafkaIndexTaskSpec
from transport.client import SyncClient

logger = logging.getLogger(__name__)

POLL_RECORDS = 5000
POLL_TIMEOUT_S = 0.1
PAUSE_WAIT_S = 10.0
DEAD_LETTER_FLUSH_S = 30.0
PUBLISH_TIMEOUT_S = 30.0
ACTION_PATH = "/druid/indexer/v1/action"
# the cluster's own credential, handed down by the MiddleManager
CLUSTER_TOKEN_ENV = "INDEXER_CLUSTER_TOKEN"


@dataclass(frozen=True)
class InflightRows:
    """A task's unpublished rows (``None``: none yet) and the offsets below which they are all."""

    sequence_name: str
    offsets: dict[PartitionId, int]
    table: pa.Table | None
    # per segment interval: first and last row time, interval start and end (when asked)
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class Outcome:
    status: TaskState  # SUCCESS | FAILED
    error: str | None
    report: dict[str, Any]


class TaskRunner:
    def __init__(
        self,
        task: KafkaIndexTaskSpec,
        task_dir: Path,
        overlord_url: str,
        supplier_factory: Callable[[KafkaIndexTaskSpec], KafkaRecordSupplier] | None = None,
        dead_letter_factory: Callable[[KafkaIndexTaskSpec, str], DeadLetterProducer] | None = None,
        before_publish: Callable[[], None] | None = None,
        kafka_stores_dir: Path | None = None,
    ) -> None:
        self.task = task
        self.spec: SupervisorSpec = parse_supervisor_spec(task.supervisor_spec)
        self.task_dir = task_dir
        if task.deep_storage is None:
            raise InvalidInput(f"task [{task.id}]: the task spec names no deepStorage")
        # where segments go: a directory every machine sees (file://), written in place, or an
        # S3-compatible store (s3://), staged in this task's directory; see supervisor.deep_storage
        self.deep_storage: SegmentStore = segment_store(task.deep_storage, task_dir / "segments")
        self._overlord = SyncClient(
            overlord_url, token=os.environ.get(CLUSTER_TOKEN_ENV, ""), timeout_s=PUBLISH_TIMEOUT_S
        )
        # secrets from this worker's environment; stores converted to PEM files in the task directory
        access = KafkaAccess(stores_dir=kafka_stores_dir, files_dir=task_dir / "kafka-tls")
        self._supplier_factory = supplier_factory or (
            lambda t: KafkaRecordSupplier(
                t.stream,
                t.consumer_properties,
                client_id=t.id,
                access=access,
                multi_topic=t.topic_pattern is not None,
                # the kafka input format reads each record's key, headers and topic
                metadata=self.spec.io_config.input_format.type == "kafka",
            )
        )
        self._dead_letter_factory = dead_letter_factory or (
            lambda t, topic: DeadLetterProducer(
                topic, t.consumer_properties, source_topic=t.stream, task_id=t.id, access=access
            )
        )
        self._dead_letters: DeadLetterProducer | None = None
        # called once every end offset is reached, before the segments are written
        self._before_publish = before_publish
        self._cond = threading.Condition()
        # held while a batch goes into the pipeline and the offsets move past it: a snapshot of
        # the in-flight rows taken under it covers exactly the offsets it is tagged with
        self._rows_lock = threading.Lock()
        # the segment files once the pipeline wrote them (in-flight rows until the publish commits)
        self._written: list[SegmentFile] | None = None
        self.status = TaskRunStatus.NOT_STARTED
        self.start_time: float | None = None
        self.current: dict[PartitionId, int] = dict(task.start_offsets)
        # Kafka timestamp of the last record read per partition (for time lag)
        self.last_record_ms: dict[PartitionId, int] = {}
        self.end: dict[PartitionId, int] | None = (
            dict(task.end_offsets) if task.end_offsets is not None else None
        )
        self._pause_requested = False
        self._stop_requested = False
        # Why this task asks its supervisor to end its group now (see _check_handoff)
        self.handoff_requested: str | None = None
        self.pipeline = IngestPipeline(
            self.spec,
            task_dir / "work",
            min_message_time=task.min_message_time,
            max_message_time=task.max_message_time,
        )
        self.error: str | None = None

    # ------------------------------------------------------------ commands (any thread)

    def pause(self, wait_s: float = PAUSE_WAIT_S) -> dict[PartitionId, int]:
        with self._cond:
            if self.status not in (TaskRunStatus.READING, TaskRunStatus.PAUSED, TaskRunStatus.STARTING):
                raise InvalidInput(
                    f"Can't pause, task is not in a pausable state (state: [{self.status.value}])"
                )
            self._pause_requested = True
            self._cond.notify_all()
            deadline = time.monotonic() + wait_s
            while self.status is not TaskRunStatus.PAUSED:
                left = deadline - time.monotonic()
                if left <= 0 or self.status not in (TaskRunStatus.READING, TaskRunStatus.STARTING):
                    raise TaskFailed("task did not pause in time")
                self._cond.wait(left)
            return dict(self.current)

    def resume(self) -> None:
        with self._cond:
            self._pause_requested = False
            self._cond.notify_all()

    def set_end_offsets(self, offsets: dict[PartitionId, int], finish: bool) -> dict[PartitionId, int]:
        with self._cond:
            if self.status is not TaskRunStatus.PAUSED:
                raise InvalidInput("Task must be paused before changing the end offsets")
            if set(offsets) != set(self.task.start_offsets):
                names = [str(p) for p in self.task.start_offsets]
                raise InvalidInput(f"end offsets must name exactly the task's partitions {names}")
            behind = {p: o for p, o in offsets.items() if o < self.current[p]}
            if behind:
                raise InvalidInput(f"end offsets {behind} are behind the offsets already read {self.current}")
            if finish:
                self.end = dict(offsets)
                logger.info("task[%s] end offsets set to %s", self.task.id, self.end)
            self._pause_requested = False
            self._cond.notify_all()
            return dict(self.end or {})

    def stop(self) -> None:
        with self._cond:
            self._stop_requested = True
            self._pause_requested = False
            self._cond.notify_all()

    # ------------------------------------------------------------ the loop (runner thread)

    def _set_status(self, status: TaskRunStatus) -> None:
        with self._cond:
            self.status = status
            self._cond.notify_all()

    def run(self) -> Outcome:
        log_prefix = f"task[{self.task.id}]"
        try:
            self._set_status(TaskRunStatus.STARTING)
            supplier = self._supplier_factory(self.task)
            dead_letter_topic = self.spec.tuning_config.dead_letter_topic
            if dead_letter_topic is not None:
                self._dead_letters = self._dead_letter_factory(self.task, dead_letter_topic)
            try:
                self.start_time = time.time()
                if not self._read(supplier, log_prefix):
                    return self._outcome(TaskState.FAILED, "stopped before publishing")
            finally:
                supplier.close()
            self._set_status(TaskRunStatus.PUBLISHING)
            if self._before_publish is not None:
                self._before_publish()
            return self._publish(log_prefix)
        except IndexerError as e:
            logger.error("%s failed: %s", log_prefix, e)
            return self._outcome(TaskState.FAILED, str(e))
        except Exception as e:
            logger.exception("%s failed", log_prefix)
            return self._outcome(TaskState.FAILED, f"{type(e).__name__}: {e}")
        finally:
            if self._dead_letters is not None:
                self._dead_letters.close()

    def _done(self) -> bool:
        return self.end is not None and all(self.current[p] >= o for p, o in self.end.items())

    def _read(self, supplier: KafkaRecordSupplier, log_prefix: str) -> bool:
        persist_every = self.spec.tuning_config.intermediate_persist_period.total_seconds()
        last_persist = time.monotonic()
        supplier.assign(self.task.start_offsets)
        self._set_status(TaskRunStatus.READING)
        logger.info("%s reading %s from %s", log_prefix, self.task.stream, self.task.start_offsets)
        paused_partitions: set[PartitionId] = set()
        read_since = time.monotonic()
        while True:
            with self._cond:
                if self._stop_requested:
                    return False
                if self._pause_requested:
                    self.status = TaskRunStatus.PAUSED
                    self._cond.notify_all()
                    while self._pause_requested and not self._stop_requested:
                        self._cond.wait(1.0)
                    if self._stop_requested:
                        return False
                    self.status = TaskRunStatus.READING
                    self._cond.notify_all()
                if self._done():
                    return True
                end = dict(self.end) if self.end is not None else None
            if end is not None:
                finished = [p for p, o in end.items() if self.current[p] >= o and p not in paused_partitions]
                supplier.pause(finished)
                paused_partitions.update(finished)
            result = supplier.poll(POLL_RECORDS, POLL_TIMEOUT_S)
            batch = result.records
            current = self.current
            # Offsets are kept per partition and per poll, not per record: only a poll
            # with records below the offsets already read or at/past an end offset is filtered.
            spans = result.partition_spans() if batch else {}
            if any(
                first < current[p] or (end is not None and last >= end[p])
                for p, (first, last, _) in spans.items()
            ):
                batch = batch.take(
                    [
                        index
                        for index, (p, offset) in enumerate(zip(batch.partitions, batch.offsets, strict=True))
                        if offset >= current[p] and (end is None or offset < end[p])
                    ]
                )
            self._rows_lock.acquire()
            try:
                if batch:
                    try:
                        self.pipeline.add(batch)
                    finally:
                        self._send_dead_letters()
                self._advance(result, spans, end)
            finally:
                self._rows_lock.release()
            if persist_every > 0 and time.monotonic() - last_persist >= persist_every:
                self.pipeline.persist()
                last_persist = time.monotonic()
            if self.handoff_requested is None and end is None:
                self._check_handoff(read_since, log_prefix)

    def _advance(self, result: PollResult, spans: Spans, end: dict[PartitionId, int] | None) -> None:
        """Move the offsets read past a poll's records (and past the end of the log)."""
        current = self.current
        with self._cond:
            for p, (_, last, timestamp_ms) in spans.items():
                if timestamp_ms is not None:
                    self.last_record_ms[p] = timestamp_ms
                nxt = end[p] if end is not None and last >= end[p] else last + 1
                if nxt > current[p]:
                    current[p] = nxt
            for p, eof_offset in result.eof.items():
                # everything below the end of the log was delivered (or was a
                # transaction marker / aborted record): stand past it
                target = eof_offset if end is None else min(eof_offset, end[p])
                if target > current[p]:
                    current[p] = target
            self._cond.notify_all()

    def _check_handoff(self, read_since: float, log_prefix: str) -> None:
        """``maxTotalRows`` and ``intermediateHandoffPeriod``: ask for the group's handoff.

        In Druid (SeekableStreamIndexTaskRunner) a task that holds ``maxTotalRows`` rows, or has
        read for ``intermediateHandoffPeriod``, persists, asks its supervisor for a checkpoint
        and publishes the sequence it has while it reads on in a new one. A task here publishes
        once, its whole range in one transaction, so the equivalent is its group's handoff: the
        task persists what it holds and says so in its progress report; the supervisor's next
        run ends the group at the offsets its tasks reached (as at the end of taskDuration) and
        the next task group reads on from there. The task reads on until then (at most one
        supervisor ``period``).
        """
        tuning = self.spec.tuning_config
        reason = None
        if tuning.max_total_rows is not None and self.pipeline.rows_held >= tuning.max_total_rows:
            reason = f"maxTotalRows [{tuning.max_total_rows}] reached"
        period = tuning.handoff_period_s()
        if reason is None and period is not None and time.monotonic() - read_since >= period:
            reason = f"intermediateHandoffPeriod [{format_duration(timedelta(seconds=period))}] elapsed"
        if reason is None:
            return
        self.pipeline.persist()
        with self._cond:
            self.handoff_requested = reason
        logger.info("%s %s: persisted, asking the supervisor to hand off", log_prefix, reason)

    def _publish(self, log_prefix: str) -> Outcome:
        assert self.end is not None
        out_dir = self.deep_storage.staging_dir(self.task.data_source, self.task.sequence_name, self.task.id)
        with self._rows_lock:  # an in-flight snapshot sees the rows in memory or in these files
            segments = _ordered(self.pipeline.finish(out_dir))
            self._written = segments
        # every object is stored and checked (size, Parquet footer) before the publish names it
        locations = [self.deep_storage.store(s.path, s.num_rows) for s in segments]
        if not self._flush_dead_letters(log_prefix):
            return self._outcome(TaskState.FAILED, "stopped while writing to the dead-letter topic")
        action = wire.TaskActionRequest(
            task=self.task.id,
            action=wire.SegmentTransactionalInsert(
                data_source=self.task.data_source,
                stream=self.task.stream,
                sequence_name=self.task.sequence_name,
                start_offsets=self.task.start_offsets,
                end_offsets=self.end,
                segments=tuple(
                    _descriptor(i, s, loc) for i, (s, loc) in enumerate(zip(segments, locations, strict=True))
                ),
            ),
        )
        delay = 0.2
        attempt = 0
        while True:
            attempt += 1
            # A stop (the MiddleManager shutting down) once the segments are written still lets
            # one attempt through: if it commits, no replacement has to read it all again.
            with self._cond:
                if self._stop_requested and attempt > 1:
                    return self._outcome(TaskState.FAILED, "stopped while publishing")
            try:
                result = self._overlord.fetch(wire.TaskActionAnswer, "POST", ACTION_PATH, action).result
            except IndexerError as e:
                if not e.retriable:  # a 4xx: the Overlord will not take this request, ever
                    return self._outcome(TaskState.FAILED, f"publish rejected by the Overlord: {e}")
                logger.warning("%s publish attempt %d: Overlord unreachable: %s", log_prefix, attempt, e)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if result.kind == "ok":
                logger.info(
                    "%s published %d segments, offsets %s -> %s",
                    log_prefix,
                    len(result.segment_ids),
                    self.task.start_offsets,
                    self.end,
                )
                return self._outcome(TaskState.SUCCESS, None)
            if result.kind == "retryable":
                if attempt == 1 or attempt % 20 == 0:
                    logger.info("%s publish must wait: %s", log_prefix, result.reason)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            # The files stay: an earlier attempt of this very task may have committed them before
            # its answer was lost; unreferenced files in deep storage are only wasted space.
            return self._outcome(TaskState.FAILED, f"publish refused: {result.reason}")

    def _send_dead_letters(self) -> None:
        if self._dead_letters is not None:
            self._dead_letters.send(self.pipeline.drain_rejected())

    def _flush_dead_letters(self, log_prefix: str) -> bool:
        """Every rejected record is in the dead-letter topic before the offsets are committed."""
        if self._dead_letters is None:
            return True
        self._send_dead_letters()
        while True:
            try:
                self._dead_letters.flush(DEAD_LETTER_FLUSH_S)
                return True
            except IndexerError as e:
                logger.warning("%s dead-letter topic: %s; retrying", log_prefix, e)
            with self._cond:
                if self._stop_requested:
                    return False

    def _outcome(self, status: TaskState, error: str | None) -> Outcome:
        self.error = error
        return Outcome(status, error, self.report(status, error).to_json())

    # ------------------------------------------------------------ what the control paths answer

    def inflight(
        self,
        at_least: dict[PartitionId, int],
        wait_s: float,
        columns: list[str] | None = None,
        row_filter: DimFilter | None = None,
        spans: bool = False,
    ) -> InflightRows:
        """The rows read and not yet published, with the offsets they cover (issue 15.2).

        Waits up to ``wait_s`` for the consumer to reach ``at_least`` (a Broker asks a replica
        for at least the offsets it already served from another, so counts never go back), then
        takes one snapshot under the lock the read loop holds while a batch goes in and the
        offsets move past it: the rows are exactly those below the offsets they are tagged with.
        Until the pipeline has finished they are its memory and spills merged as a segment would
        be; after, the segment files it wrote (until the publish commits, then the task exits).
        ``columns`` and ``row_filter``: what the Broker's query reads and the filter it implies;
        ``spans``: the rows' time spans too (:meth:`IngestPipeline.inflight_spans`).
        """
        unknown = sorted(str(p) for p in set(at_least) - set(self.current))
        if unknown:
            mine = sorted(map(str, self.current))
            raise InvalidInput(f"minOffsets: partitions {unknown} are not this task's {mine}")
        deadline = time.monotonic() + wait_s
        with self._cond:
            while any(self.current[p] < o for p, o in at_least.items()):
                left = deadline - time.monotonic()
                if left <= 0 or self.status in (TaskRunStatus.PUBLISHING, TaskRunStatus.NOT_STARTED):
                    raise Conflict(
                        f"task [{self.task.id}] has read to {dict(self.current)}, not yet {at_least}"
                    )
                self._cond.wait(min(left, 0.5))
        if not self._rows_lock.acquire(timeout=max(0.0, deadline - time.monotonic()) + 1.0):
            raise Conflict(f"task [{self.task.id}] is busy writing its segments")
        try:
            with self._cond:
                offsets = dict(self.current)
            written = self._written
            if written is None:
                table = self.pipeline.inflight_table(columns, row_filter)
                found = self.pipeline.inflight_spans() if spans else []
            else:
                table = _read_segments(written, columns, row_filter)
                found = _segment_spans(written) if spans else []
        finally:
            self._rows_lock.release()
        return InflightRows(self.task.sequence_name, offsets, table, found)

    def row_stats(self) -> wire.RowStats:
        return wire.RowStats.model_validate(self.pipeline.stats.to_json())

    def unparseable_events(self) -> wire.UnparseableEvents:
        return wire.UnparseableEvents.model_validate(
            {"buildSegments": [e.to_json() for e in self.pipeline.parse_exceptions]}
        )

    def progress(self) -> wire.ProgressReport:
        with self._cond:
            return wire.ProgressReport(
                status=self.status,
                start_time=self.start_time,
                current_offsets=dict(self.current),
                end_offsets=dict(self.end) if self.end is not None else None,
                last_record_timestamps=dict(self.last_record_ms),
                row_stats=self.row_stats(),
                handoff_requested=self.handoff_requested if self.end is None else None,
            )

    def report(self, state: str, error: str | None) -> wire.TaskReport:
        return wire.TaskReport(
            ingestion_stats_and_errors=wire.IngestionStatsAndErrors(
                task_id=self.task.id,
                payload=wire.IngestionStatsPayload(
                    ingestion_state="COMPLETED"
                    if state in (TaskState.SUCCESS, TaskState.FAILED)
                    else "BUILD_SEGMENTS",
                    unparseable_events=self.unparseable_events(),
                    row_stats=wire.RowStatsTotals(build_segments=self.row_stats()),
                    error_msg=error,
                ),
            )
        )


def _read_segments(
    files: list[SegmentFile], columns: list[str] | None = None, row_filter: DimFilter | None = None
) -> pa.Table | None:
    """The rows of ``files`` (only ``columns``, case-insensitively, when given; only the rows
    ``row_filter`` may keep, when given)."""
    tables = [pq.read_table(f.path) for f in files]
    if row_filter is not None:
        tables = [narrowed(t, row_filter) for t in tables]
    if columns is not None:
        asked = {c.lower() for c in columns}
        tables = [t.select([n for n in t.column_names if n.lower() in asked]) for t in tables]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def _segment_spans(files: list[SegmentFile]) -> list[tuple[int, int, int, int]]:
    """Each written segment's first and last row time, interval start and end."""
    out = []
    for f in files:
        extremes = pc.min_max(pq.read_table(f.path, columns=[TIME_COLUMN]).column(TIME_COLUMN))
        lo, hi = extremes["min"].as_py(), extremes["max"].as_py()
        if lo is not None:
            out.append((int(lo), int(hi), f.interval_start_ms, f.interval_end_ms))
    return out


def _ordered(segments: list[SegmentFile]) -> list[SegmentFile]:
    return sorted(segments, key=lambda s: (s.interval_start_ms, s.interval_end_ms, s.shard))


def _descriptor(index: int, s: SegmentFile, location: str) -> wire.SegmentDescriptor:
    """``shard`` is the segment's place in the task's whole output (the allocation key);
    ``location`` the URI of the stored copy."""
    return wire.SegmentDescriptor(
        interval_start_ms=s.interval_start_ms,
        interval_end_ms=s.interval_end_ms,
        shard=index,
        num_rows=s.num_rows,
        size_bytes=s.size_bytes,
        location=location,
        dimensions=tuple(s.dimensions),
        metrics=tuple(s.metrics),
    )

"""The metadata store: the single writer of segments and committed offsets.

Exactly-once rests on ``MetadataStore.publish_segments``: in one transaction it locks the
datasource's offsets row, checks the task's start offsets against it, moves the offsets to the
task's end and inserts the task's segments. Either all of it is committed or none.

The class is synchronous and thread-safe (the Overlord calls it through ``asyncio.to_thread``);
every method runs in its own transaction.

When the database cannot be reached (connection refused or lost, pool exhausted) every method but
``publish_segments`` raises ``MetadataStoreUnavailable`` (HTTP 503; nothing was written, retry
later); ``publish_segments`` answers "retryable" as for any other transient database error. The
engine reconnects by itself once the database is back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError, InterfaceError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from supervisor.chronology import format_instant, now_iso
from supervisor.errors import InvalidInput
from supervisor.offsets import PartitionId, PartitionOffsets, parse_partition, sorted_partitions
from supervisor.ports import RunnerState, StoredOffsets, TaskState
from supervisor.protocol import SegmentDescriptor

from .druid import data_segment_json, segment_id
from .engine import READ_ONLY, current_revision, head_revision, make_engine
from .errors import SchemaNotMigrated, unavailable_on_outage
from .tables import DatasourceMetadataEntry as Offsets
from .tables import SegmentEntry as Segments
from .tables import SupervisorEntry as Supervisors
from .tables import TaskEntry as Tasks

log = logging.getLogger(__name__)

PublishKind = Literal["ok", "retryable", "failed"]

TOMBSTONE_TYPE = "NoopSupervisorSpec"
TASK_STATUSES = frozenset(s.value for s in TaskState)
RUNNER_STATUSES = frozenset(s.value for s in RunnerState)

# Database errors after which the same publish may succeed: lock timeouts, serialization
# failures, deadlocks, lost connections, and unique violations from a concurrent writer.
_TRANSIENT_ERRORS = (OperationalError, IntegrityError, InterfaceError, InternalError, PoolTimeoutError)
# How long a publish waits for the offsets row locked by another writer (PostgreSQL) before it
# answers "retryable".
PUBLISH_LOCK_TIMEOUT_MS = 5000


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class SegmentToPublish:
    """One segment a task built, as it asks the store to publish it."""

    interval_start_ms: int
    interval_end_ms: int
    shard: int  # index of this segment within the task's sequence output
    num_rows: int
    size_bytes: int
    path: str  # where the segment is: a deep-storage URI (a bare absolute path: a local file)
    dimensions: list[str]
    metrics: list[str]

    @classmethod
    def from_wire(cls, s: SegmentDescriptor) -> SegmentToPublish:
        return cls(
            interval_start_ms=s.interval_start_ms,
            interval_end_ms=s.interval_end_ms,
            shard=s.shard,
            num_rows=s.num_rows,
            size_bytes=s.size_bytes,
            path=s.location,
            dimensions=list(s.dimensions),
            metrics=list(s.metrics),
        )


@dataclass(frozen=True)
class PublishResult:
    """The outcome of ``publish_segments``; expected outcomes are values, not exceptions.

    ``ok``: the segments and end offsets are committed (now, or by an earlier identical publish).
    ``retryable``: nothing was written; the same publish may succeed later.
    ``failed``: nothing was written and retrying cannot help.
    """

    kind: PublishKind
    reason: str = ""
    segment_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def retryable(self) -> bool:
        return self.kind == "retryable"


@dataclass(frozen=True)
class TaskRow:
    """One row of the ``tasks`` table.

    ``created_date``/``updated_date`` left empty are stamped with the current time on write.
    """

    id: str
    datasource: str
    type: str
    payload: dict[str, Any]
    status: str = TaskState.RUNNING.value
    runner_status: str = RunnerState.PENDING.value
    group_id: int | None = None
    supervisor_id: str | None = None
    worker: str | None = None
    host: str | None = None
    port: int | None = None
    error: str | None = None
    report: dict[str, Any] | None = None
    created_date: str = ""
    updated_date: str = ""


_TASK_FIELDS = frozenset(f.name for f in fields(TaskRow))


class _Retry(Exception):
    """Raised inside a publish transaction to roll it back and answer "retryable"."""


# --------------------------------------------------------------------------- helpers


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _offsets_text(offsets: Mapping[PartitionId, int]) -> str:
    return _dumps(PartitionOffsets(offsets).to_json())


def _signature(items: Iterable[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    return sorted(items)


def _validate_publish(
    start: PartitionOffsets, end: PartitionOffsets, segments: Sequence[SegmentToPublish]
) -> str | None:
    if set(start) != set(end):
        return f"start offsets {dict(start)} and end offsets {dict(end)} cover different partitions"
    backwards = {p: (start[p], end[p]) for p in start if end[p] < start[p]}
    if backwards:
        return f"end offsets before start offsets for partitions {backwards}"
    if any(o < 0 for o in start.values()):
        return f"negative start offsets {dict(start)}"
    shards = [s.shard for s in segments]
    if len(set(shards)) != len(shards) or any(s < 0 for s in shards):
        return f"segment shards must be distinct and non-negative, got {shards}"
    for s in segments:
        if s.interval_end_ms <= s.interval_start_ms:
            return (
                f"segment shard {s.shard} has an empty interval [{s.interval_start_ms}, {s.interval_end_ms})"
            )
        if s.num_rows < 0 or s.size_bytes < 0:
            return f"segment shard {s.shard} has a negative row count or size"
    return None


def _task_from_row(row: Row[Any]) -> TaskRow:
    return TaskRow(
        id=row.id,
        datasource=row.datasource,
        type=row.type,
        payload=json.loads(row.payload),
        status=row.status,
        runner_status=row.runner_status,
        group_id=row.group_id,
        supervisor_id=row.supervisor_id,
        worker=row.worker,
        host=row.host,
        port=row.port,
        error=row.error,
        report=None if row.report is None else json.loads(row.report),
        created_date=row.created_date,
        updated_date=row.updated_date,
    )


def _check_task_statuses(status: object, runner_status: object) -> None:
    if status is not None and status not in TASK_STATUSES:
        raise InvalidInput(f"task status must be one of {sorted(TASK_STATUSES)}, not {status!r}")
    if runner_status is not None and runner_status not in RUNNER_STATUSES:
        raise InvalidInput(
            f"task runner status must be one of {sorted(RUNNER_STATUSES)}, not {runner_status!r}"
        )


def _task_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """TaskRow field values as column values (JSON fields serialized)."""
    columns = dict(values)
    if "payload" in columns:
        columns["payload"] = _dumps(columns["payload"])
    if "report" in columns and columns["report"] is not None:
        columns["report"] = _dumps(columns["report"])
    return columns


# --------------------------------------------------------------------------- the store


class MetadataStore:
    """Supervisors, committed offsets, segments and tasks, on SQLite or PostgreSQL.

    ``MetadataStore(url)`` owns its engine (``close()`` disposes it); ``MetadataStore(engine)``
    borrows one. The schema must be at the migrations' head (``overlord migrate``), otherwise
    ``SchemaNotMigrated`` is raised.
    """

    def __init__(self, url_or_engine: str | Engine) -> None:
        if isinstance(url_or_engine, Engine):
            self._engine = url_or_engine
            self._owns_engine = False
        else:
            self._engine = make_engine(url_or_engine)
            self._owns_engine = True
        self._reader = self._engine.execution_options(**READ_ONLY)
        try:
            self._check_schema()
        except BaseException:
            self.close()
            raise

    def _check_schema(self) -> None:
        expected = head_revision()
        with unavailable_on_outage():
            current = current_revision(self._engine)
        if current != expected:
            raise SchemaNotMigrated(current or "none", expected)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A read-write transaction; an outage raises ``MetadataStoreUnavailable``."""
        with unavailable_on_outage(), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only transaction; an outage raises ``MetadataStoreUnavailable``."""
        with unavailable_on_outage(), self._reader.begin() as conn:
            yield conn

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- publishing

    def publish_segments(
        self,
        datasource: str,
        stream: str,
        sequence_name: str,
        start_offsets: Mapping[PartitionId, int],
        end_offsets: Mapping[PartitionId, int],
        segments: Sequence[SegmentToPublish],
    ) -> PublishResult:
        """Commit a task's segments and move the datasource's offsets from its start to its end.

        Decision, against the stored offsets ``stored`` (locked for the transaction), per
        partition ``p`` of the task: *new* (``p`` not stored), *match* (``stored[p] == start[p]``),
        *ahead* (``stored[p] < start[p]``) or *behind* (``stored[p] > start[p]``):

        1. malformed request (partitions of start and end differ, end < start, duplicate
           shards, empty interval) -> failed;
        2. a row exists for another stream -> failed;
        3. some partition is *behind*, or this sequence already has segments: if every task
           partition has ``stored[p] >= end[p]`` and the sequence's used segments are exactly
           the request's (interval, shard, num_rows) -> ok with the committed segment ids (a
           retry after a lost answer, or a replica); otherwise -> failed (stored state diverged);
        4. some partition is *ahead* -> retryable (an earlier task group may still be publishing);
        5. otherwise write: offsets = stored | end with ``version + 1`` (conditional on the
           version read, else retryable), then insert the segments -> ok with their new ids.

        Database errors (lock timeout, serialization failure, lost connection, a unique
        violation from a concurrent writer) roll everything back -> retryable.
        """
        start = PartitionOffsets(start_offsets)
        end = PartitionOffsets(end_offsets)
        problem = _validate_publish(start, end, segments)
        if problem is not None:
            log.warning("publish of %s sequence %s rejected: %s", datasource, sequence_name, problem)
            return PublishResult("failed", f"invalid publish request: {problem}")
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Never wait long for the offsets row: a publish that waits holds one of the
                    # Overlord's few I/O threads, and enough of them starve its heartbeats.
                    conn.execute(text(f"SET LOCAL lock_timeout = {PUBLISH_LOCK_TIMEOUT_MS}"))
                result = self._publish(conn, datasource, stream, sequence_name, start, end, segments)
        except _Retry as retry:
            result = PublishResult("retryable", str(retry))
        except _TRANSIENT_ERRORS as error:
            reason = f"metadata store error, retry: {type(error).__name__}: {getattr(error, 'orig', error)}"
            result = PublishResult("retryable", reason.strip())
        level = logging.WARNING if result.kind == "failed" else logging.INFO
        log.log(
            level,
            "publish %s sequence %s %s -> %s: %s %s",
            datasource,
            sequence_name,
            dict(start),
            dict(end),
            result.kind,
            result.reason,
        )
        return result

    def _publish(
        self,
        conn: Connection,
        datasource: str,
        stream: str,
        sequence_name: str,
        start: PartitionOffsets,
        end: PartitionOffsets,
        segments: Sequence[SegmentToPublish],
    ) -> PublishResult:
        row = conn.execute(
            select(Offsets.stream, Offsets.offsets, Offsets.version)
            .where(Offsets.datasource == datasource)
            .with_for_update()
        ).one_or_none()
        if row is not None and row.stream != stream:
            return PublishResult(
                "failed", f"stored metadata is for stream [{row.stream}], the task read stream [{stream}]"
            )
        stored = PartitionOffsets() if row is None else PartitionOffsets.from_json(json.loads(row.offsets))
        ahead = sorted(p for p in start if p in stored and stored[p] < start[p])
        behind = sorted(p for p in start if p in stored and stored[p] > start[p])

        existing = conn.execute(
            select(
                Segments.id,
                Segments.start_ms,
                Segments.end_ms,
                Segments.sequence_shard,
                Segments.num_rows,
                Segments.used,
            ).where(Segments.datasource == datasource, Segments.sequence_name == sequence_name)
        ).all()

        if behind or existing:
            committed = [r for r in existing if r.used]
            at_or_past_end = all(p in stored and stored[p] >= end[p] for p in end)
            same_segments = len(committed) == len(existing) and _signature(
                (r.start_ms, r.end_ms, r.sequence_shard, r.num_rows) for r in committed
            ) == _signature((s.interval_start_ms, s.interval_end_ms, s.shard, s.num_rows) for s in segments)
            if at_or_past_end and same_segments:
                by_shard = {r.sequence_shard: r.id for r in committed}
                return PublishResult(
                    "ok",
                    f"already published: sequence [{sequence_name}] is committed and the stored offsets "
                    f"{dict(stored)} are at or past its end",
                    [by_shard[s.shard] for s in segments],
                )
            if behind:
                return PublishResult(
                    "failed",
                    f"Stored metadata state {dict(stored)} does not match the start of the task "
                    f"{dict(start)}: partitions {behind} were already committed past the start and "
                    f"sequence [{sequence_name}] did not commit them; stored state diverged",
                )
            return PublishResult(
                "failed",
                f"sequence [{sequence_name}] already has segments {[r.id for r in existing]} "
                f"that do not match this publish, or the stored offsets {dict(stored)} are not at its end",
            )

        if ahead:
            return PublishResult(
                "retryable",
                f"Stored metadata state {dict(stored)} does not match the start of the task {dict(start)}: "
                f"the start is ahead for partitions {ahead}, an earlier task may still be publishing",
            )

        now = now_iso()
        new_offsets = _offsets_text(stored.plus(end))
        if row is None:
            conn.execute(
                insert(Offsets).values(
                    datasource=datasource, stream=stream, offsets=new_offsets, version=1, updated_date=now
                )
            )
        else:
            written = conn.execute(
                update(Offsets)
                .where(Offsets.datasource == datasource, Offsets.version == row.version)
                .values(offsets=new_offsets, version=row.version + 1, updated_date=now)
            )
            if written.rowcount != 1:
                raise _Retry(f"the offsets of [{datasource}] changed concurrently (version {row.version})")

        ids = self._insert_segments(conn, datasource, sequence_name, segments, now)
        return PublishResult("ok", f"published {len(ids)} segments", ids)

    def _insert_segments(
        self,
        conn: Connection,
        datasource: str,
        sequence_name: str,
        segments: Sequence[SegmentToPublish],
        now: str,
    ) -> list[str]:
        # (start_ms, end_ms) -> (version, next partition number)
        allocation: dict[tuple[int, int], tuple[str, int]] = {}
        rows: list[dict[str, Any]] = []
        for seg in segments:
            key = (seg.interval_start_ms, seg.interval_end_ms)
            start_iso = format_instant(seg.interval_start_ms)
            end_iso = format_instant(seg.interval_end_ms)
            if key not in allocation:
                in_interval = (
                    Segments.datasource == datasource,
                    Segments.start == start_iso,
                    Segments.end == end_iso,
                )
                version = conn.execute(
                    select(func.max(Segments.version)).where(*in_interval, Segments.used == true())
                ).scalar_one_or_none()
                version = version or now
                top = conn.execute(
                    select(func.max(Segments.partition_num)).where(*in_interval, Segments.version == version)
                ).scalar_one_or_none()
                allocation[key] = (version, 0 if top is None else top + 1)
            version, partition_num = allocation[key]
            allocation[key] = (version, partition_num + 1)
            payload = data_segment_json(
                datasource=datasource,
                start_ms=seg.interval_start_ms,
                end_ms=seg.interval_end_ms,
                version=version,
                partition_num=partition_num,
                path=seg.path,
                dimensions=seg.dimensions,
                metrics=seg.metrics,
                size_bytes=seg.size_bytes,
                num_rows=seg.num_rows,
            )
            # our extra, as numRows: the Broker switches a task group from its tasks' in-flight
            # rows to its segments when the segment list shows them (broker/catalog.py)
            payload["sequenceName"] = sequence_name
            rows.append(
                {
                    "id": segment_id(
                        datasource, seg.interval_start_ms, seg.interval_end_ms, version, partition_num
                    ),
                    "datasource": datasource,
                    "start": start_iso,
                    "end": end_iso,
                    "start_ms": seg.interval_start_ms,
                    "end_ms": seg.interval_end_ms,
                    "version": version,
                    "partition_num": partition_num,
                    "used": True,
                    "sequence_name": sequence_name,
                    "sequence_shard": seg.shard,
                    "num_rows": seg.num_rows,
                    "size": seg.size_bytes,
                    "created_date": now,
                    "payload": _dumps(payload),
                }
            )
        if rows:
            conn.execute(insert(Segments), rows)
        return [str(r["id"]) for r in rows]

    # ----------------------------------------------------------------------- offsets

    def get_offsets(self, datasource: str) -> StoredOffsets | None:
        with self._read() as conn:
            row = conn.execute(
                select(Offsets.stream, Offsets.offsets, Offsets.version).where(
                    Offsets.datasource == datasource
                )
            ).one_or_none()
        if row is None:
            return None
        return StoredOffsets(row.stream, PartitionOffsets.from_json(json.loads(row.offsets)), row.version)

    def reset_offsets(self, datasource: str) -> bool:
        """Forget the datasource's committed offsets (Druid's hard reset). True if there were any."""
        with self._write() as conn:
            deleted = conn.execute(delete(Offsets).where(Offsets.datasource == datasource)).rowcount
        log.info("reset offsets of %s: %s", datasource, "deleted" if deleted else "none stored")
        return bool(deleted)

    def reset_partitions(self, datasource: str, stream: str, offsets: Mapping[PartitionId, int]) -> None:
        """Overwrite the given partitions' committed offsets (Druid's resetOffsets)."""
        with self._write() as conn:
            row = conn.execute(
                select(Offsets.stream, Offsets.offsets, Offsets.version)
                .where(Offsets.datasource == datasource)
                .with_for_update()
            ).one_or_none()
            now = now_iso()
            if row is None:
                conn.execute(
                    insert(Offsets).values(
                        datasource=datasource,
                        stream=stream,
                        offsets=_offsets_text(offsets),
                        version=1,
                        updated_date=now,
                    )
                )
            else:
                if row.stream != stream:
                    raise InvalidInput(
                        f"cannot reset offsets of stream [{stream}]: the stored metadata of "
                        f"[{datasource}] is for stream [{row.stream}]"
                    )
                merged = PartitionOffsets.from_json(json.loads(row.offsets)).plus(offsets)
                conn.execute(
                    update(Offsets)
                    .where(Offsets.datasource == datasource)
                    .values(offsets=_offsets_text(merged), version=row.version + 1, updated_date=now)
                )
        log.info("reset offsets of %s stream %s partitions %s", datasource, stream, dict(offsets))

    def delete_partitions(self, datasource: str, partitions: Iterable[PartitionId]) -> bool:
        """Drop partitions from the committed offsets. False when nothing is stored."""
        drop = {parse_partition(p) for p in partitions}
        with self._write() as conn:
            row = conn.execute(
                select(Offsets.offsets, Offsets.version)
                .where(Offsets.datasource == datasource)
                .with_for_update()
            ).one_or_none()
            if row is None:
                return False
            kept = PartitionOffsets.from_json(json.loads(row.offsets)).minus(drop)
            conn.execute(
                update(Offsets)
                .where(Offsets.datasource == datasource)
                .values(offsets=_offsets_text(kept), version=row.version + 1, updated_date=now_iso())
            )
        log.info("deleted partitions %s from the offsets of %s", sorted_partitions(drop), datasource)
        return True

    # ----------------------------------------------------------------------- supervisors

    def insert_supervisor(self, spec_id: str, payload: Mapping[str, Any]) -> None:
        """Append a spec to the supervisor's history; the newest row is the current spec."""
        with self._write() as conn:
            conn.execute(
                insert(Supervisors).values(
                    spec_id=spec_id, created_date=now_iso(), payload=_dumps(dict(payload))
                )
            )

    def terminate_supervisor(self, spec_id: str) -> None:
        """Append Druid's tombstone for a terminated supervisor."""
        self.insert_supervisor(
            spec_id, {"type": TOMBSTONE_TYPE, "id": spec_id, "dataSources": [spec_id], "suspended": False}
        )

    def latest_supervisors(self) -> dict[str, dict[str, Any]]:
        """spec_id -> newest payload, for every supervisor whose newest row is not a tombstone."""
        newest = select(func.max(Supervisors.id).label("id")).group_by(Supervisors.spec_id).subquery("newest")
        with self._read() as conn:
            rows = conn.execute(
                select(Supervisors.spec_id, Supervisors.payload)
                .join(newest, newest.c.id == Supervisors.id)
                .order_by(Supervisors.spec_id)
            ).all()
        active: dict[str, dict[str, Any]] = {}
        for row in rows:
            payload = json.loads(row.payload)
            if not (isinstance(payload, dict) and payload.get("type") == TOMBSTONE_TYPE):
                active[row.spec_id] = payload
        return active

    def supervisor_history(
        self, spec_id: str | None = None, count: int | None = None
    ) -> list[dict[str, Any]]:
        """Druid's history entries ``{"spec": payload, "version": created_date}``, newest first.

        With ``spec_id`` None, the entries of every supervisor (newest first overall); ``count``
        limits the entries kept per supervisor.
        """
        query = select(Supervisors.spec_id, Supervisors.created_date, Supervisors.payload).order_by(
            Supervisors.id.desc()
        )
        if spec_id is not None:
            query = query.where(Supervisors.spec_id == spec_id)
            if count is not None:
                query = query.limit(max(count, 0))
        with self._read() as conn:
            rows = conn.execute(query).all()
        seen: dict[str, int] = {}
        history: list[dict[str, Any]] = []
        for row in rows:
            seen[row.spec_id] = seen.get(row.spec_id, 0) + 1
            if count is not None and seen[row.spec_id] > count:
                continue
            history.append({"spec": json.loads(row.payload), "version": row.created_date})
        return history

    def supervisor_histories(self, count: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """spec_id -> its history entries, newest first (Druid's ``GET .../supervisor/history``)."""
        query = select(Supervisors.spec_id, Supervisors.created_date, Supervisors.payload).order_by(
            Supervisors.id.desc()
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        histories: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            entries = histories.setdefault(row.spec_id, [])
            if count is None or len(entries) < count:
                entries.append({"spec": json.loads(row.payload), "version": row.created_date})
        return histories

    # ----------------------------------------------------------------------- segments

    def list_segments(self, datasource: str, used_only: bool = True) -> list[dict[str, Any]]:
        """DataSegment payloads of a datasource, by interval then version then partition."""
        query = select(Segments.payload).where(Segments.datasource == datasource)
        if used_only:
            query = query.where(Segments.used == true())
        query = query.order_by(Segments.start_ms, Segments.end_ms, Segments.version, Segments.partition_num)
        with self._read() as conn:
            payloads = conn.execute(query).scalars().all()
        return [json.loads(p) for p in payloads]

    def list_datasources(self) -> list[str]:
        """Datasources with at least one used segment, sorted."""
        with self._read() as conn:
            names = conn.execute(
                select(Segments.datasource)
                .where(Segments.used == true())
                .distinct()
                .order_by(Segments.datasource)
            ).scalars()
            return list(names)

    def segments_for_sequence(self, datasource: str, sequence_name: str) -> list[dict[str, Any]]:
        """DataSegment payloads a sequence published, in shard order."""
        with self._read() as conn:
            payloads = conn.execute(
                select(Segments.payload)
                .where(Segments.datasource == datasource, Segments.sequence_name == sequence_name)
                .order_by(Segments.sequence_shard)
            ).scalars()
            return [json.loads(p) for p in payloads]

    # ----------------------------------------------------------------------- tasks

    def upsert_task(self, row: TaskRow) -> None:
        """Insert the task, or overwrite every field of an existing one but its created_date."""
        _check_task_statuses(row.status, row.runner_status)
        now = now_iso()
        row = replace(row, created_date=row.created_date or now, updated_date=row.updated_date or now)
        values = _task_columns({f.name: getattr(row, f.name) for f in fields(TaskRow)})
        changes = {k: v for k, v in values.items() if k not in ("id", "created_date")}
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                pg = postgresql_insert(Tasks).values(values)
                conn.execute(pg.on_conflict_do_update(index_elements=[Tasks.id], set_=changes))
            elif conn.dialect.name == "sqlite":
                lite = sqlite_insert(Tasks).values(values)
                conn.execute(lite.on_conflict_do_update(index_elements=[Tasks.id], set_=changes))
            else:  # pragma: no cover - make_engine only builds the two above
                written = conn.execute(update(Tasks).where(Tasks.id == row.id).values(changes)).rowcount
                if not written:
                    conn.execute(insert(Tasks).values(values))

    def update_task(self, task_id: str, **changes: Any) -> bool:
        """Set some TaskRow fields of a task (``updated_date`` defaults to now). False if unknown."""
        unknown = set(changes) - (_TASK_FIELDS - {"id"})
        if unknown:
            raise InvalidInput(f"unknown task fields {sorted(unknown)}")
        _check_task_statuses(changes.get("status"), changes.get("runner_status"))
        values = _task_columns(changes)
        values.setdefault("updated_date", now_iso())
        with self._write() as conn:
            written = conn.execute(update(Tasks).where(Tasks.id == task_id).values(values)).rowcount
        return bool(written)

    def get_task(self, task_id: str) -> TaskRow | None:
        with self._read() as conn:
            row = conn.execute(select(Tasks.__table__).where(Tasks.id == task_id)).one_or_none()
        return None if row is None else _task_from_row(row)

    def list_tasks(
        self, status: str | None = None, datasource: str | None = None, limit: int | None = None
    ) -> list[TaskRow]:
        """Tasks, newest first, optionally of one status and/or datasource."""
        query = select(Tasks.__table__)
        if status is not None:
            query = query.where(Tasks.status == status)
        if datasource is not None:
            query = query.where(Tasks.datasource == datasource)
        query = query.order_by(Tasks.created_date.desc(), Tasks.id.desc())
        if limit is not None:
            query = query.limit(max(limit, 0))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_task_from_row(r) for r in rows]

    def active_tasks(self) -> list[TaskRow]:
        """Tasks whose status is RUNNING, newest first."""
        return self.list_tasks(status=TaskState.RUNNING.value)

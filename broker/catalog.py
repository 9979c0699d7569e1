"""What the Broker can query: the published segments, learnt over the Overlord's HTTP API.

The Broker polls ``GET /druid/coordinator/v1/metadata/segments`` with ``If-None-Match`` (the
Overlord answers 304 while nothing changed), at most once per ``segments_poll_s`` and only when a
query comes, and keeps an immutable :class:`Snapshot` of it: each query reads one snapshot from
start to end, so a publish landing mid-query is seen by the next query, never half.

In-flight rows (issue 15, part 2): a datasource's rows come from *sources*: the published
segments, plus one source per running task group (sequence name), the rows one replica has read and
not yet published, fetched over the task's control endpoint (``POST .../chat/{task}/rows``, an Arrow
IPC stream in the segment schema, tagged with the offsets it covers). As Druid's timeline tells
realtime and published rows apart by segment id, a group here is told apart by its sequence name:
the Overlord's segment payloads carry it (``sequenceName``), and a group whose segments the list
shows is served from them, its task source dropped in the same snapshot step, so no snapshot has a
group's rows twice or not at all. The task list is read before the segment list, so a group that
publishes between the two is in the segments; one that publishes after still answers from its task
(a task answers until it exits, after its publish committed).

Each record is counted once and counts never go back: the catalog remembers per sequence the
highest offsets it served and asks any replica for at least those (the task waits a bounded time
for its consumer to reach them); it keeps to the replica it last used while that one answers. A
group whose every replica fails to answer, or that has vanished from the task list without its
segments in the list, makes the catalog refresh the segment list once (it may just have
published); if it is still not there the snapshot names it ``uncovered`` and the answer is
flagged partial in the response context (Druid's ``uncoveredIntervals``), never a silent undercount.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from broker.errors import QueryUnavailable
from broker.segment_cache import SegmentCache
from supervisor import protocol as wire
from supervisor.clock import SYSTEM_CLOCK, Clock
from supervisor.deep_storage import local_path, uri_of
from supervisor.errors import IndexerError
from supervisor.expressions.values import parse_iso
from transport.client import AsyncClient

logger = logging.getLogger(__name__)

SEGMENTS_PATH = "/druid/coordinator/v1/metadata/segments"
RUNNING_TASKS_PATH = "/druid/indexer/v1/tasks"
TASK_PATH = "/druid/indexer/v1/task/{task}"
ROWS_PATH = "/druid/worker/v1/chat/{task}/rows"
# the column asked of a task for a query that reads none (COUNT(*): only the rows' count matters)
TIME = "__time"
# how long a task may wait for its consumer to reach the offsets already served from another replica
INFLIGHT_WAIT_MS = 2000
# a call for a task's rows: the wait plus this much for the answer itself
INFLIGHT_SLACK_S = 3.0
# a group that served rows and vanished (no task, no segments) is reported uncovered this long
ORPHAN_GRACE_S = 60.0
# published groups' offset ranges remembered (to tell when a failed group's rows were read again)
MAX_PUBLISHED_RANGES = 256
# what the response context names as uncovered for a group: its time is not known without its rows
ETERNITY = "-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z"
# the Overlord's paths the sys tables are read from
SYSTEM_PATHS = {
    "tasks": "/druid/indexer/v1/tasks",
    "supervisors": "/druid/indexer/v1/supervisor?full",
    "workers": "/druid/indexer/v1/workers",
}


@dataclass(frozen=True)
class Segment:
    """One published segment: its Druid identity and the local Parquet file it is read from (in
    ``file://`` deep storage, or the Broker's copy of an S3 object: :mod:`broker.segment_cache`)."""

    id: str
    datasource: str
    start_ms: int
    end_ms: int
    version: str
    partition_num: int
    path: Path
    num_rows: int
    size: int
    dimensions: tuple[str, ...]
    metrics: tuple[str, ...]
    payload: dict[str, Any] = field(compare=False, repr=False)
    # the task group (sequence) that published it; "" for segments from before it was recorded
    sequence_name: str = ""

    @classmethod
    def from_payload(cls, payload: dict[str, Any], cache: SegmentCache | None = None) -> Segment:
        """A segment from Druid's DataSegment JSON (``loadSpec`` names its file or its S3 object)."""
        uri = uri_of(payload["loadSpec"])
        ident = str(payload.get("identifier") or payload["id"])
        start_text, _, end_text = str(payload["interval"]).partition("/")
        start, end = parse_iso(start_text), parse_iso(end_text)
        if start is None or end is None:
            raise ValueError(f"interval '{payload['interval']}' is not start/end")
        return cls(
            id=ident,
            datasource=str(payload["dataSource"]),
            start_ms=start,
            end_ms=end,
            version=str(payload["version"]),
            partition_num=int(payload.get("shardSpec", {}).get("partitionNum", 0)),
            path=cache.path_for(ident) if cache and uri.startswith("s3:") else local_path(uri),
            num_rows=int(payload.get("numRows", 0)),
            size=int(payload.get("size", 0)),
            dimensions=tuple(d for d in str(payload.get("dimensions", "")).split(",") if d),
            metrics=tuple(m for m in str(payload.get("metrics", "")).split(",") if m),
            payload=payload,
            sequence_name=str(payload.get("sequenceName") or ""),
        )


@dataclass(frozen=True)
class RunningTask:
    """A running indexing task the Overlord knows, where its control endpoint listens."""

    id: str
    datasource: str
    sequence_name: str
    url: str


@dataclass(frozen=True)
class InflightSource:
    """One task group's rows not yet published, as one replica answered them."""

    datasource: str
    sequence_name: str
    task_id: str
    end_offsets: dict[str, int]
    table: pa.Table = field(compare=False, repr=False)
    start_offsets: dict[str, int] = field(default_factory=dict)
    # the task left out rows a pushed-down filter rejects (only what one query reads)
    filtered: bool = False
    dimensions: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    # when asked: per segment interval, first and last row time, interval start and end
    spans: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """The segments of every datasource at one moment, by datasource then interval."""

    segments: dict[str, tuple[Segment, ...]]
    etag: str = ""
    # datasource -> the in-flight rows of its running task groups (one source per sequence)
    inflight: dict[str, tuple[InflightSource, ...]] = field(default_factory=dict)
    # task groups whose rows this snapshot lacks (no replica answered): the answer is partial
    uncovered: tuple[str, ...] = ()

    @classmethod
    def of(cls, segments: list[Segment], etag: str = "") -> Snapshot:
        by_ds: dict[str, list[Segment]] = {}
        for seg in segments:
            by_ds.setdefault(seg.datasource, []).append(seg)
        return cls(
            {
                ds: tuple(sorted(segs, key=lambda s: (s.start_ms, s.end_ms, s.version, s.partition_num)))
                for ds, segs in sorted(by_ds.items())
            },
            etag,
        )

    def datasources(self) -> list[str]:
        return sorted(set(self.segments) | set(self.inflight))

    @functools.cached_property
    def sequences(self) -> frozenset[str]:
        """The sequence names the published segments came from (once per snapshot: every query
        with in-flight rows asks)."""
        return frozenset(s.sequence_name for segs in self.segments.values() for s in segs if s.sequence_name)

    def response_context(self) -> dict[str, Any]:
        """Druid's response context of a query on this snapshot: partial when a group is uncovered."""
        if not self.uncovered:
            return {}
        return {
            "uncoveredIntervals": [ETERNITY],
            "uncoveredIntervalsOverflowed": False,
            "uncoveredSequences": list(self.uncovered),
        }

    def with_inflight(self, sources: list[InflightSource], uncovered: list[str]) -> Snapshot:
        by_ds: dict[str, list[InflightSource]] = {}
        for source in sorted(sources, key=lambda s: s.sequence_name):
            by_ds.setdefault(source.datasource, []).append(source)
        return Snapshot(
            self.segments,
            self.etag,
            {ds: tuple(v) for ds, v in sorted(by_ds.items())},
            tuple(sorted(uncovered)),
        )

    def files(self) -> list[Path]:
        return [s.path for segs in self.segments.values() for s in segs]


EMPTY = Snapshot({})


def _covered(served: _Served, ranges: list[tuple[str, dict[str, int], dict[str, int]]]) -> bool:
    """Whether one group's offsets span all of ``served``'s rows (a later group read them again)."""
    if not served.start:
        return False
    return any(
        ds == served.datasource
        and all(start.get(p, o + 1) <= o for p, o in served.start.items())
        and all(end.get(p, -1) >= o for p, o in served.offsets.items())
        for ds, start, end in ranges
    )


@dataclass(frozen=True)
class _Ask:
    """What one snapshot asks of the tasks (see :meth:`SegmentCatalog.snapshot`)."""

    columns: list[str] | None
    datasources: frozenset[str] | None
    filters: dict[str, dict[str, Any]]
    spans: bool = False

    def reads(self, datasource: str) -> bool:
        return self.datasources is None or datasource in self.datasources


@dataclass(frozen=True)
class _Served:
    offsets: dict[str, int]
    rows: int
    task_id: str
    seen_at: float
    datasource: str
    start: dict[str, int]


class SegmentCatalog:
    """The latest :class:`Snapshot`, refreshed from the Overlord on demand."""

    def __init__(
        self,
        client: AsyncClient,
        poll_s: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
        cache: SegmentCache | None = None,
        tasks: AsyncClient | None = None,
        inflight: bool = True,
    ) -> None:
        self.client = client
        self.cache = cache
        self.poll_s = poll_s
        self.clock = clock
        self.inflight = inflight
        # the client the tasks' control endpoints are called with (full URLs)
        self.tasks_client = tasks or client
        self._snapshot: Snapshot | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self._running: list[RunningTask] = []
        self._running_at = float("-inf")
        self._sequence_of: dict[str, tuple[str, str]] = {}  # task id -> (datasource, sequence)
        # per sequence: the highest offsets served, the rows then, the replica used, when last seen
        self._served: dict[str, _Served] = {}
        # (datasource, start offsets, end offsets) of the groups last seen published
        self._published_ranges: list[tuple[str, dict[str, int], dict[str, int]]] = []

    async def snapshot(
        self,
        columns: Collection[str] | None = None,
        datasources: Collection[str] | None = None,
        filters: Mapping[str, dict[str, Any]] | None = None,
        spans: bool = False,
    ) -> Snapshot:
        """The segments and, per running task group not yet published, one replica's rows.

        ``columns``: the only columns of the in-flight rows the query reads (none: ``__time``
        alone, as DuckDB takes no table without a column), ``None``: every column.
        ``datasources``: the only datasources whose task groups are asked (``None``: all; the
        in-flight rows of the others are not in this snapshot). ``filters``: per datasource, a
        Druid filter every row the query keeps passes (:mod:`broker.pushdown`): the tasks leave
        out the rows it rejects. ``spans``: the tasks also say their rows' time spans.
        """
        if not self.inflight:
            return await self._segments(force=False)
        tasks = await self._running_tasks()  # before the segments: see the module's docstring
        if datasources is not None:
            tasks = [t for t in tasks if t.datasource in datasources]
        base = await self._segments(force=False)
        asked = None if columns is None else sorted(set(columns)) or [TIME]
        wanted = None if datasources is None else frozenset(datasources)
        return await self._with_inflight(base, tasks, _Ask(asked, wanted, dict(filters or {}), spans))

    async def _segments(self, force: bool) -> Snapshot:
        async with self._lock:
            stale = self.clock.monotonic() - self._fetched_at >= self.poll_s
            if self._snapshot is None or force or stale:
                await self._refresh()
            assert self._snapshot is not None
            return self._snapshot

    async def _running_tasks(self) -> list[RunningTask]:
        """The running tasks (at most one ask per ``poll_s``; the last list while the Overlord is away)."""
        if self.clock.monotonic() - self._running_at < self.poll_s:
            return self._running
        try:
            body = await self.client.call("GET", RUNNING_TASKS_PATH, params={"state": "running"}, retries=0)
            listed = [wire.TaskStatusObject.model_validate(b) for b in body] if isinstance(body, list) else []
        except (IndexerError, ValidationError) as e:
            logger.warning("running tasks not refreshed (using the last list): %s", e)
            return self._running
        running = []
        for task in listed:
            host, port = task.location.host, task.location.port
            if task.type != "index_kafka" or not host or port <= 0:
                continue
            known = self._sequence_of.get(task.id) or await self._sequence(task.id)
            if known is not None:
                running.append(RunningTask(task.id, known[0], known[1], f"http://{host}:{port}"))
        live = {t.id for t in listed}
        self._sequence_of = {k: v for k, v in self._sequence_of.items() if k in live}
        self._running = running
        self._running_at = self.clock.monotonic()
        return running

    async def _sequence(self, task_id: str) -> tuple[str, str] | None:
        try:
            got = await self.client.fetch(
                wire.TaskPayloadAnswer, "GET", TASK_PATH.format(task=task_id), retries=0
            )
        except IndexerError as e:
            logger.warning("task %s: payload not read: %s", task_id, e)
            return None
        payload = got.payload or {}
        if not payload.get("sequenceName") or not payload.get("dataSource"):
            return None
        known = (str(payload["dataSource"]), str(payload["sequenceName"]))
        self._sequence_of[task_id] = known
        return known

    async def _with_inflight(self, base: Snapshot, tasks: list[RunningTask], ask: _Ask) -> Snapshot:
        now = self.clock.monotonic()
        published = base.sequences
        groups: dict[str, list[RunningTask]] = {}
        for task in tasks:
            if task.sequence_name not in published:
                groups.setdefault(task.sequence_name, []).append(task)
        if not groups and not self._served:
            return base
        names = list(groups)
        answers = await asyncio.gather(*(self._ask_group(n, groups[n], ask) for n in names))
        got = {n: a for n, a in zip(names, answers, strict=True) if a is not None}
        # a group that served rows, now without an answer or without any task: published just now?
        missing = [n for n in names if n not in got] + [
            n
            for n, served in self._served.items()
            if n not in groups and n not in published and ask.reads(served.datasource)
        ]
        if missing:
            base = await self._segments(force=True)
            published = base.sequences
        for name in published:
            done = self._served.pop(name, None)
            if done is not None:
                self._published_ranges.append((done.datasource, done.start, done.offsets))
        del self._published_ranges[:-MAX_PUBLISHED_RANGES]
        ranges = self._published_ranges + [
            (a.datasource, a.start_offsets, a.end_offsets) for a in got.values()
        ]
        uncovered = []
        for name in missing:
            served = self._served.get(name)
            if name in published or served is None or served.rows == 0:
                continue
            # a group that failed as a whole: its rows are read again by a group after it, under
            # another sequence name; once one that started no later reached its offsets, or after
            # a grace period, it is no longer missing
            if name not in groups and (_covered(served, ranges) or now - served.seen_at > ORPHAN_GRACE_S):
                del self._served[name]
                continue
            uncovered.append(name)
        # an empty answer adds nothing, but a filtered one still says the datasource has rows
        sources = [a for n, a in got.items() if n not in published and (a.table.num_rows > 0 or a.filtered)]
        if uncovered:
            logger.warning("in-flight rows of %s not answered: the answer is partial", uncovered)
        return base.with_inflight(sources, uncovered)

    async def _ask_group(self, sequence: str, members: list[RunningTask], ask: _Ask) -> InflightSource | None:
        """One replica's rows, at least to the offsets already served (the last replica used first)."""
        served = self._served.get(sequence)
        if served is not None:
            members = sorted(members, key=lambda t: t.id != served.task_id)
        minimum = served.offsets if served is not None else {}
        for task in members:
            source = await self._ask_task(task, minimum, ask, ask.filters.get(task.datasource))
            if source is None:
                continue
            before = self._served.get(sequence)
            offsets = dict(before.offsets) if before is not None else {}
            for p, o in source.end_offsets.items():
                offsets[p] = max(o, offsets.get(p, 0))
            rows = source.table.num_rows
            if source.filtered:  # rows left out by the filter may exist: 0 is not "none"
                read = any(o > source.start_offsets.get(p, 0) for p, o in source.end_offsets.items())
                rows = max(rows, before.rows if before is not None else 0, int(read))
            self._served[sequence] = _Served(
                offsets,
                rows,
                task.id,
                self.clock.monotonic(),
                task.datasource,
                source.start_offsets,
            )
            return source
        if served is not None:
            self._served[sequence] = replace(served, seen_at=self.clock.monotonic())
        return None

    async def _ask_task(
        self,
        task: RunningTask,
        minimum: dict[str, int],
        ask: _Ask,
        row_filter: dict[str, Any] | None = None,
    ) -> InflightSource | None:
        request = wire.InflightRowsRequest.model_validate(
            {
                "minOffsets": minimum,
                "waitMs": INFLIGHT_WAIT_MS,
                "columns": ask.columns,
                "filter": row_filter,
                "spans": ask.spans,
            }
        )
        url = task.url + ROWS_PATH.format(task=task.id)
        try:
            got = await self.tasks_client.send(
                "POST",
                url,
                request.model_dump(mode="json", by_alias=True, exclude_none=True),
                timeout_s=INFLIGHT_WAIT_MS / 1000 + INFLIGHT_SLACK_S,
            )
        except IndexerError as e:
            logger.info("task %s: no in-flight rows: %s", task.id, e)
            return None
        if got.status != 200 or not isinstance(got.body, bytes):
            logger.info(
                "task %s: in-flight rows answered HTTP %d: %s", task.id, got.status, str(got.body)[:200]
            )
            return None
        try:
            tag = wire.InflightRowsTag.model_validate(
                json.loads(got.headers.get(wire.INFLIGHT_TAG_HEADER, ""))
            )
            table = pa.ipc.open_stream(got.body).read_all()
        except (ValueError, ValidationError, pa.ArrowException) as e:
            logger.warning("task %s: in-flight rows unreadable: %s", task.id, e)
            return None
        tagged = tag.model_dump(mode="json", by_alias=True)
        offsets = {str(p): int(o) for p, o in tagged["endOffsets"].items()}
        start = {str(p): int(o) for p, o in tagged["startOffsets"].items()}
        if tag.sequence_name != task.sequence_name or any(offsets.get(p, -1) < o for p, o in minimum.items()):
            logger.warning("task %s: rows of %s at %s, not as asked", task.id, tag.sequence_name, offsets)
            return None
        return InflightSource(
            task.datasource,
            task.sequence_name,
            task.id,
            offsets,
            table,
            start,
            tag.filtered,
            tuple(tag.dimensions),
            tuple(tag.metrics),
            tuple(tag.spans),
        )

    async def _refresh(self) -> None:
        headers = {"If-None-Match": self._snapshot.etag} if self._snapshot and self._snapshot.etag else {}
        try:
            got = await self.client.send("GET", SEGMENTS_PATH, headers=headers)
        except IndexerError as e:
            if self._snapshot is None:
                raise QueryUnavailable(f"cannot learn the published segments from the Overlord: {e}") from e
            logger.warning("segment list not refreshed (serving the last one): %s", e)
            return
        self._fetched_at = self.clock.monotonic()
        if got.status == 304 and self._snapshot is not None:
            return
        if got.status != 200 or not isinstance(got.body, list):
            message = f"the Overlord answered HTTP {got.status} for the segment list"
            if self._snapshot is None:
                raise QueryUnavailable(message)
            logger.warning("%s (serving the last one)", message)
            return
        segments = []
        for payload in got.body:
            try:
                segments.append(Segment.from_payload(payload, self.cache))
            except (KeyError, TypeError, ValueError, IndexerError) as e:
                logger.warning("segment %s skipped: %s", str(payload)[:200], e)
        self._snapshot = Snapshot.of(segments, got.headers.get("ETag", ""))
        logger.debug("segment list: %d segments, etag %s", len(segments), self._snapshot.etag)

    async def system(self, kind: str) -> list[dict[str, Any]]:
        """The Overlord's answer a ``sys`` table is made of (``tasks``, ``supervisors``, ``workers``)."""
        try:
            body = await self.client.call("GET", SYSTEM_PATHS[kind])
        except IndexerError as e:
            raise QueryUnavailable(f"cannot read sys.{kind} from the Overlord: {e}") from e
        return [b for b in body if isinstance(b, dict)] if isinstance(body, list) else []

"""What the Broker can query: the published segments, learnt over the Overlord's HTTP API.

The Broker polls ``GET /druid/coordinator/v1/metadata/segments`` with ``If-None-Match`` (the
Overlord answers 304 while nothing changed), at most once per ``segments_poll_s`` and only when a
query comes, and keeps an immutable :class:`Snapshot` of it: each query reads one snapshot from
start to end, so a publish landing mid-query is seen by the next query, never half.

Designed for in-flight rows (issue 15, part 2; not built yet): a datasource's rows will come from
*sources*: the published segments, plus one source per running task group (one replica's rows,
served over the task's control endpoint). Druid's timeline tells them apart by segment id and
sequence name; here a task group's source is dropped from the snapshot in the same step that adds
the segments its sequence published (the Overlord's segment payloads carry the sequence name), so no
snapshot has a group's rows twice or not at all.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.errors import QueryUnavailable
from broker.segment_cache import SegmentCache
from supervisor.clock import SYSTEM_CLOCK, Clock
from supervisor.deep_storage import local_path, uri_of
from supervisor.errors import IndexerError
from supervisor.expressions.values import parse_iso
from transport.client import AsyncClient

logger = logging.getLogger(__name__)

SEGMENTS_PATH = "/druid/coordinator/v1/metadata/segments"
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
        )


@dataclass(frozen=True)
class Snapshot:
    """The segments of every datasource at one moment, by datasource then interval."""

    segments: dict[str, tuple[Segment, ...]]
    etag: str = ""

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
        return list(self.segments)

    def files(self) -> list[Path]:
        return [s.path for segs in self.segments.values() for s in segs]


EMPTY = Snapshot({})


class SegmentCatalog:
    """The latest :class:`Snapshot`, refreshed from the Overlord on demand."""

    def __init__(
        self,
        client: AsyncClient,
        poll_s: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
        cache: SegmentCache | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.poll_s = poll_s
        self.clock = clock
        self._snapshot: Snapshot | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            if self._snapshot is None or self.clock.monotonic() - self._fetched_at >= self.poll_s:
                await self._refresh()
            assert self._snapshot is not None
            return self._snapshot

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

"""Which published segments a query reads: Druid's versioned timeline, by segment version.

Facts followed (Druid's source, ``org.apache.druid.timeline.VersionedIntervalTimeline`` and
``timeline/partition/NumberedPartitionChunk.java``; docs: design/segments.md "Segment versioning",
querying/sql-metadata-tables.md ``is_overshadowed``):

* the segments of one interval and one version form a *partition set*; it serves queries only when
  it is complete: for a ``numbered`` shard spec with ``partitions`` (core partitions) N > 0, the
  partitions 0..N-1 are all present (partitions numbered N and above, appended later, join a
  complete set); with N = 0 every partition is a whole on its own (``isStart``/``isEnd`` are both
  true), as are ``linear`` and ``none`` shard specs;
* versions compare as strings; where the intervals of complete sets overlap, the highest version
  holds the overlapping time and lower versions keep only the rest of their interval (the timeline
  splits a partly overshadowed interval, so its segments still answer for the time nobody newer
  covers);
* a segment is *overshadowed* (``sys.segments.is_overshadowed``) when complete sets of higher
  versions cover its whole interval; an incomplete set overshadows nothing.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from broker.catalog import Segment

Range = tuple[int, int]


@dataclass(frozen=True)
class Visible:
    """A segment the timeline serves, and the parts of its interval it answers for."""

    segment: Segment
    ranges: tuple[Range, ...]

    @property
    def whole(self) -> bool:
        return self.ranges == ((self.segment.start_ms, self.segment.end_ms),)


def core_partitions(segment: Segment) -> int:
    """The number of core partitions of the segment's set (0: every partition stands alone)."""
    spec = segment.payload.get("shardSpec") or {}
    if not isinstance(spec, dict) or spec.get("type") in (None, "none", "linear"):
        return 0
    raw = spec.get("numCorePartitions", spec.get("partitions", 0))
    return raw if isinstance(raw, int) and raw > 0 else 0


def _complete(segments: Sequence[Segment]) -> bool:
    core = max((core_partitions(s) for s in segments), default=0)
    present = {s.partition_num for s in segments}
    return all(n in present for n in range(core))


def _subtract(ranges: list[Range], cut: Range) -> list[Range]:
    a, b = cut
    out: list[Range] = []
    for s, e in ranges:
        if e <= a or s >= b:
            out.append((s, e))
            continue
        if s < a:
            out.append((s, a))
        if e > b:
            out.append((b, e))
    return out


@dataclass(frozen=True)
class Timeline:
    visible: tuple[Visible, ...]
    overshadowed: frozenset[str]


_CACHE: OrderedDict[int, tuple[tuple[Segment, ...], Timeline]] = OrderedDict()
_CACHE_SIZE = 256
_LOCK = threading.Lock()


def timeline(segments: tuple[Segment, ...]) -> Timeline:
    """The timeline of one datasource's segments, cached by the tuple's identity: a snapshot's
    tuples serve every query until the segment list changes, and hashing thousands of segments per
    query would cost more than the lookup saves."""
    key = id(segments)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] is segments:
            _CACHE.move_to_end(key)
            return hit[1]
    built = _build(segments)
    with _LOCK:
        _CACHE[key] = (segments, built)  # the tuple is kept alive, so its id is not reused meanwhile
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return built


def _build(segments: tuple[Segment, ...]) -> Timeline:
    sets: dict[tuple[int, int, str], list[Segment]] = {}
    for seg in segments:
        sets.setdefault((seg.start_ms, seg.end_ms, seg.version), []).append(seg)
    whole = {key for key, segs in sets.items() if _complete(segs)}
    complete = sorted(whole)
    starts = [k[0] for k in complete]
    longest = max((e - s for s, e, _ in complete), default=0)
    visible: list[Visible] = []
    overshadowed: set[str] = set()
    for (start, end, version), segs in sets.items():
        ranges = [(start, end)]
        # the complete sets that can overlap [start, end): they start in [start - longest, end)
        first, last = bisect.bisect_left(starts, start - longest), bisect.bisect_left(starts, end)
        for o_start, o_end, o_version in complete[first:last]:
            if o_version > version and o_end > start:
                ranges = _subtract(ranges, (o_start, o_end))
        if not ranges:
            overshadowed.update(s.id for s in segs)
        elif (start, end, version) in whole:
            visible.extend(Visible(s, tuple(ranges)) for s in segs)
    visible.sort(
        key=lambda v: (v.segment.start_ms, v.segment.end_ms, v.segment.version, v.segment.partition_num),
    )
    return Timeline(tuple(visible), frozenset(overshadowed))


def visible(segments: tuple[Segment, ...]) -> tuple[Visible, ...]:
    return timeline(segments).visible


def is_overshadowed(segments: tuple[Segment, ...], segment_id: str) -> bool:
    return segment_id in timeline(segments).overshadowed

"""Throughput of the ingest pipeline on wikipedia-like events.

    python -m middlemanager.ingest._bench [--events 200000] [--batch 1000] [--profile]

Generates ~400-byte JSON events (20 string dimensions, 3 long fields), feeds them in
batches to :class:`IngestPipeline` with the default tuning, and reports events/s for
the whole run (``add`` of every batch + ``finish``) with rollup off and with rollup on
(queryGranularity MINUTE).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from middlemanager.ingest.pipeline import IngestPipeline
from supervisor.records import Record
from supervisor.spec import SupervisorSpec, parse_supervisor_spec

DIMENSIONS = [
    "channel",
    "cityName",
    "comment",
    "countryIsoCode",
    "countryName",
    "isAnonymous",
    "isMinor",
    "isNew",
    "isRobot",
    "isUnpatrolled",
    "metroCode",
    "namespace",
    "page",
    "regionIsoCode",
    "regionName",
    "user",
    "flags",
    "diffUrl",
    "sessionId",
    "platform",
]
# Distinct values per dimension: a few low-cardinality flags, some mid, some high.
_CARDINALITY = [50, 2000, 5000, 40, 40, 2, 2, 2, 2, 2, 300, 10, 20000, 200, 200, 8000, 20, 20000, 50000, 5]


def make_events(
    count: int, seed: int = 7, start_ms: int = 1_700_000_000_000, rate: int = 10_000
) -> list[bytes]:
    """``count`` JSON events, ``rate`` per second of event time, starting at ``start_ms``."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for i in range(count):
        ms = start_ms + i * 1000 // rate
        event: dict[str, Any] = {"timestamp": _iso(ms)}
        for name, cardinality in zip(DIMENSIONS, _CARDINALITY, strict=True):
            event[name] = f"{name[0]}{rng.randrange(cardinality)}"
        added = rng.randrange(2000)
        deleted = rng.randrange(200)
        event["added"] = added
        event["deleted"] = deleted
        event["delta"] = added - deleted
        out.append(orjson.dumps(event))
    return out


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def make_spec(rollup: bool, query_granularity: str = "NONE", **tuning: Any) -> SupervisorSpec:
    return parse_supervisor_spec(
        {
            "type": "kafka",
            "spec": {
                "dataSchema": {
                    "dataSource": "wikipedia",
                    "timestampSpec": {"column": "timestamp", "format": "iso"},
                    "dimensionsSpec": {"dimensions": DIMENSIONS},
                    "metricsSpec": [
                        {"type": "count", "name": "count"},
                        {"type": "longSum", "name": "added", "fieldName": "added"},
                        {"type": "longSum", "name": "deleted", "fieldName": "deleted"},
                        {"type": "longSum", "name": "delta", "fieldName": "delta"},
                    ],
                    "granularitySpec": {
                        "segmentGranularity": "HOUR",
                        "queryGranularity": query_granularity,
                        "rollup": rollup,
                    },
                },
                "ioConfig": {
                    "topic": "wikipedia",
                    "inputFormat": {"type": "json"},
                    "consumerProperties": {"bootstrap.servers": "localhost:9092"},
                },
                "tuningConfig": {"type": "kafka", **tuning},
            },
        }
    )


def run(spec: SupervisorSpec, values: list[bytes], batch: int, work: Path) -> dict[str, float]:
    """Feed ``values`` in batches, then finish; wall and CPU seconds of each phase."""
    records = [Record(0, offset, value) for offset, value in enumerate(values)]
    pipeline = IngestPipeline(spec, work / "work")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for index in range(0, len(records), batch):
        pipeline.add(records[index : index + batch])
    wall1, cpu1 = time.perf_counter(), time.process_time()
    files = pipeline.finish(work / "out")
    wall2, cpu2 = time.perf_counter(), time.process_time()
    return {
        "add_wall": wall1 - wall0,
        "finish_wall": wall2 - wall1,
        "add_cpu": cpu1 - cpu0,
        "finish_cpu": cpu2 - cpu1,
        "rows": sum(f.num_rows for f in files),
        "persists": pipeline.persist_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    values = make_events(args.events)
    average = sum(len(v) for v in values) / len(values)
    print(f"{len(values)} events, {average:.0f} bytes on average, batches of {args.batch}")
    # How fast this machine is: orjson.loads alone over the same events (a floor for any design here).
    cpu0 = time.process_time()
    for value in values:
        orjson.loads(value)
    print(f"{'orjson.loads only':20s} {len(values) / (time.process_time() - cpu0):9.0f} events/s (CPU)")
    cases = [("rollup off", make_spec(False)), ("rollup on, MINUTE", make_spec(True, "MINUTE"))]
    for label, spec in cases:
        with tempfile.TemporaryDirectory() as tmp:
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            result = run(spec, values, args.batch, Path(tmp))
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        wall = result["add_wall"] + result["finish_wall"]
        cpu = result["add_cpu"] + result["finish_cpu"]
        print(
            f"{label:20s} {len(values) / wall:9.0f} events/s wall, {len(values) / cpu:9.0f} events/s CPU "
            f"(add {result['add_wall']:.2f}s, finish {result['finish_wall']:.2f}s wall; "
            f"{result['rows']:.0f} rows out, {result['persists']:.0f} persists)"
        )


if __name__ == "__main__":
    main()

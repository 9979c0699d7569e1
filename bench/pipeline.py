"""In-process rate of the ingest engine alone: ``IngestPipeline.add`` and ``finish`` on wiki events.

No Kafka, no task, no process: the events of ``bench/wikigen.py`` (made once, in memory)
go through one :class:`~middlemanager.ingest.pipeline.IngestPipeline` in poll-sized
batches, and the segments are written to a temporary directory. The rate is input records
per second of wall-clock time for ``add`` + ``finish``. Specs (``--spec``):

* ``plain``: the benchmark's spec (20 string dimensions, ``count`` and three ``longSum``);
* ``transforms``: plain plus three expression transforms and a filter (issue 13, part 5);
* ``theta``: plain plus a ``thetaSketch`` on ``user``;
* ``all``: transforms, filter and theta sketch together;
* ``narrow``: heavy rollup: only the low-cardinality dimensions ``channel``, ``namespace`` and
  ``platform`` (at most 2,500 groups a minute), ``count`` and three ``longSum``;
* ``narrow-theta``: narrow plus the ``thetaSketch`` on ``user`` (a sketch of ~7 users a group).

Several specs may be given (comma separated; ``every``: the first four, ``heavy``: the narrow
two, ``every,heavy``: all six); each is run ``--repeat`` times
and its best wall-clock time and best CPU time (all threads, ``time.process_time``) are
printed, then one RESULT line with every rate and each one's ratio to ``plain``. On a
loaded machine the CPU rates are the ones to compare.

    .venv/bin/python bench/pipeline.py --spec every --events 200000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import wikigen
from middlemanager.ingest.pipeline import IngestPipeline
from supervisor.records import RecordBatch
from supervisor.spec import parse_supervisor_spec
from tests.harness.specs import kafka_spec

SPECS = ("plain", "transforms", "theta", "all", "narrow", "narrow-theta")
GROUPS = {"every": SPECS[:4], "heavy": SPECS[4:]}
NARROW = ("channel", "namespace", "platform")
# Records handed to one add() call (about what one poll of the task's consumer returns).
POLL = 2000

TRANSFORMS: dict[str, Any] = {
    "transforms": [
        {"type": "expression", "name": "channel", "expression": "upper(channel)"},
        {"type": "expression", "name": "net", "expression": "added - deleted"},
        {"type": "expression", "name": "pagePrefix", "expression": "substring(page, 0, 3)"},
    ],
    # keeps about 99.7% of the events (added is uniform in 0..2999)
    "filter": {"type": "bound", "dimension": "added", "lower": "10", "ordering": "numeric"},
}
THETA = {"type": "thetaSketch", "name": "users", "fieldName": "user"}


def spec_of(name: str, rollup: bool) -> dict[str, Any]:
    dimensions: list[Any] = list(NARROW if name.startswith("narrow") else wikigen.DIMENSION_NAMES)
    metrics: list[dict[str, Any]] = [
        {"type": "count", "name": "count"},
        *({"type": "longSum", "name": f, "fieldName": f} for f in wikigen.LONG_FIELDS),
    ]
    if name in ("transforms", "all"):
        dimensions += [{"type": "long", "name": "net"}, "pagePrefix"]
    if name in ("theta", "all", "narrow-theta"):
        metrics.append(THETA)
    spec = kafka_spec(
        "bench_pipeline",
        "bench",
        "127.0.0.1:9092",
        timestamp={"column": wikigen.TIME_COLUMN, "format": "iso"},
        dimensions=dimensions,
        metrics=metrics,
        rollup=rollup,
        query_granularity="minute" if rollup else "none",
    )
    if name in ("transforms", "all"):
        spec["spec"]["dataSchema"]["transformSpec"] = TRANSFORMS
    return spec


def run(name: str, values: list[bytes | None], rollup: bool) -> tuple[float, float, int, int]:
    """Wall-clock and CPU seconds (every thread) for add + finish, rows processed, rows written."""
    spec = parse_supervisor_spec(spec_of(name, rollup))
    n = len(values)
    batches = [
        RecordBatch(
            [0] * len(values[i : i + POLL]),
            list(range(i, min(n, i + POLL))),
            values[i : i + POLL],
            [None] * len(values[i : i + POLL]),
        )
        for i in range(0, n, POLL)
    ]
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        pipeline = IngestPipeline(spec, Path(tmp) / "work")
        start, cpu_start = time.perf_counter(), time.process_time()
        for batch in batches:
            pipeline.add(batch)
        files = pipeline.finish(Path(tmp) / "out")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        processed = pipeline.stats.processed
    return elapsed, cpu, processed, sum(f.num_rows for f in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spec",
        default="every",
        help="plain, transforms, theta, all, narrow, narrow-theta (comma separated); every, heavy",
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rollup", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    names = [n for part in args.spec.split(",") for n in GROUPS.get(part, (part,))]
    for name in names:
        if name not in SPECS:
            parser.error(f"unknown spec {name!r}: one of {', '.join(SPECS)}, every or heavy")
    rollup = args.rollup == "on"
    values: list[bytes | None] = []
    for chunk in wikigen.events(args.events, end_ms=1_735_689_600_000):
        values.extend(chunk)
    rates: dict[str, float] = {}
    cpu_rates: dict[str, float] = {}
    for name in names:
        runs = [run(name, values, rollup) for _ in range(args.repeat)]
        elapsed = min(r[0] for r in runs)
        cpu = min(r[1] for r in runs)
        _, _, processed, rows = runs[0]
        rates[name] = len(values) / elapsed
        cpu_rates[name] = len(values) / cpu
        print(
            f"{name:<12} rollup {args.rollup:<3} {len(values):>9,} records  best {elapsed:7.3f} s wall "
            f"{rates[name]:>9,.0f} records/s  best {cpu:7.3f} s CPU {cpu_rates[name]:>9,.0f} records/CPU-s  "
            f"processed {processed:,}  rows out {rows:,}",
            flush=True,
        )
    parts = [f"{name}_eps={rate:.0f}" for name, rate in rates.items()]
    parts += [f"{name}_cpu_eps={rate:.0f}" for name, rate in cpu_rates.items()]
    for name in rates:
        # each spec is compared with the spec it extends: plain, or narrow for narrow-theta
        base = "narrow" if name.startswith("narrow") else "plain"
        if name != base and base in rates:
            parts.append(f"{name}_ratio={rates[name] / rates[base]:.2f}")
            parts.append(f"{name}_cpu_ratio={cpu_rates[name] / cpu_rates[base]:.2f}")
    print("RESULT " + " ".join(parts) + f" rollup={args.rollup} events={len(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Decode-only and in-process pipeline rates of each record format on the same wiki events.

No Kafka: the events of ``bench/wikigen.py`` are encoded once per format in memory, then

* decode: the format's own decoding of batches of ``--batch`` records into columns (json: the
  fast path's ``FastJsonPath.parse`` on the pipeline's batch size; avro, protobuf, csv: the
  reader's ``decode``; ``--rows`` also times the row decoder of avro and protobuf, one dict per
  record, for comparison);
* pipeline: ``IngestPipeline.add`` of poll-sized batches and ``finish`` (segments written to a
  temporary directory), with the spec of ``bench/ingest.py`` (rollup off); ``--spec transforms``
  adds the three expression transforms and the filter of ``bench/pipeline.py``.

Each is run ``--repeat`` times and its best wall-clock and CPU time kept; the last line is
``RESULT`` with each format's rates and their ratio to json's.

    .venv/bin/python bench/formats.py --format json,avro,protobuf --events 100000
    .venv/bin/python bench/formats.py --format json,avro,protobuf --only pipeline --spec transforms
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _path in (str(REPO), str(REPO / "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import wikigen  # noqa: E402
from ingest import supervisor_spec  # noqa: E402

from middlemanager.ingest.fastjson import FastJsonPath  # noqa: E402
from middlemanager.ingest.formats import reader_for  # noqa: E402
from middlemanager.ingest.formats.binary import BinaryRowsReader  # noqa: E402
from middlemanager.ingest.pipeline import FAST_BATCH_ROWS, MAX_RECORD_BYTES, IngestPipeline  # noqa: E402
from middlemanager.ingest.schema import ColumnPlan  # noqa: E402
from middlemanager.runner import POLL_RECORDS  # noqa: E402
from supervisor.records import RecordBatch  # noqa: E402
from supervisor.spec import SupervisorSpec, parse_supervisor_spec  # noqa: E402

SPECS = ("plain", "transforms")


def spec_of(fmt: str, name: str = "plain") -> SupervisorSpec:
    doc = supervisor_spec("bench_formats", "t", "127.0.0.1:9", rollup=False, fmt=fmt)
    if name == "transforms":
        schema = doc["spec"]["dataSchema"]
        schema["dimensionsSpec"]["dimensions"] += [{"type": "long", "name": "net"}, "pagePrefix"]
        # (bench/pipeline.py's, loaded by name: it imports wikigen as bench.wikigen, this file as wikigen)
        schema["transformSpec"] = importlib.import_module("bench.pipeline").TRANSFORMS
    return parse_supervisor_spec(doc)


def batches(values: list[bytes | None], size: int) -> list[RecordBatch]:
    out = []
    for start in range(0, len(values), size):
        part = values[start : start + size]
        out.append(
            RecordBatch([0] * len(part), list(range(start, start + len(part))), part, [None] * len(part))
        )
    return out


def best(repeat: int, work: Callable[[], int]) -> tuple[float, float, int]:
    """Best wall-clock and CPU seconds of ``repeat`` runs, and the rows the last one made."""
    walls, cpus, rows = [], [], 0
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        rows = work()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    return min(walls), min(cpus), rows


# "rows" once a reader gave row dicts instead of a table (printed beside its rate)
shapes: set[str] = set()


def decoder(fmt: str, spec: SupervisorSpec, rows: bool) -> Callable[[list[bytes | None]], int]:
    if fmt == "json":
        schema = spec.data_schema
        fast = FastJsonPath(
            ColumnPlan(schema), schema.timestamp_spec.column, schema.timestamp_spec.format, MAX_RECORD_BYTES
        )

        def parse_json(values: list[bytes | None]) -> int:
            parsed = fast.parse(values)
            assert parsed is not None, "the json fast path refused the batch"
            return int(parsed.table.num_rows)

        return parse_json
    reader = reader_for(spec.io_config.input_format)
    assert reader is not None
    if rows:
        assert isinstance(reader, BinaryRowsReader)
        decode_value = reader.decode_value

        def parse_rows(values: list[bytes | None]) -> int:
            return len([decode_value(value) for value in values if value])

        return parse_rows

    def parse_columns(values: list[bytes | None]) -> int:
        decoded = reader.decode_values(values)
        assert not decoded.errors, decoded.errors[:3]
        if decoded.table is None:
            shapes.add("rows")
        return decoded.num_rows

    return parse_columns


def run_pipeline(spec: SupervisorSpec, polls: list[RecordBatch]) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        pipeline = IngestPipeline(spec, Path(tmp) / "work")
        for batch in polls:
            pipeline.add(batch)
        pipeline.finish(Path(tmp) / "out")
        stats = pipeline.stats
        assert stats.unparseable == 0 and stats.processed_with_error == 0
    # the records processed or dropped by the filter (rollup is off)
    return stats.processed + stats.thrown_away


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--format", default="json,avro,protobuf", help="comma separated: " + ",".join(wikigen.ENCODERS)
    )
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch", type=int, default=0, help="records per decode call (0: the pipeline's own)")
    p.add_argument("--rows", action="store_true", help="also time the row decoders of avro and protobuf")
    p.add_argument("--only", default="decode,pipeline", help="decode, pipeline or both (comma separated)")
    p.add_argument(
        "--spec", default="plain", choices=SPECS, help="the pipeline's spec (transforms: 3 + a filter)"
    )
    args = p.parse_args(argv)
    formats = args.format.split(",")
    unknown = [f for f in formats if f not in wikigen.ENCODERS]
    if unknown:
        p.error(f"--format: unknown {', '.join(unknown)}")
    if args.spec == "transforms" and {"csv", "tsv"} & set(formats):
        # csv cells are strings on both paths, and '-' is not defined on two strings
        p.error("--spec transforms: not with csv (added - deleted fails on its string cells)")
    only = set(args.only.split(","))
    results: dict[str, float] = {}
    for fmt in formats:
        values: list[bytes | None] = []
        for chunk in wikigen.events(args.events, end_ms=1_735_689_600_000, fmt=fmt):
            values.extend(chunk)
        size = sum(len(v) for v in values if v) / len(values)
        spec = spec_of(fmt, args.spec)
        cases: list[tuple[str, bool]] = [("decode", False)] if "decode" in only else []
        if args.rows and fmt in ("avro", "protobuf") and "decode" in only:
            cases.append(("decode-rows", True))
        for case, rows in cases:
            shapes.clear()
            decode = decoder(fmt, spec, rows)
            per_call = args.batch or (FAST_BATCH_ROWS if fmt == "json" else POLL_RECORDS)
            parts = [values[i : i + per_call] for i in range(0, len(values), per_call)]
            wall, cpu, made = best(args.repeat, lambda: sum(decode(part) for part in parts))  # noqa: B023
            assert made == len(values), f"{fmt} {case}: {made} rows from {len(values)} records"
            results[f"{fmt}_{case.replace('-', '_')}_eps"] = len(values) / wall
            results[f"{fmt}_{case.replace('-', '_')}_cpu_eps"] = len(values) / cpu
            print(
                f"{fmt:<9} {case:<12} {len(values):>9,} records of {size:.0f} B, {per_call} a call: "
                f"{len(values) / wall:>11,.0f} records/s wall, {len(values) / cpu:>11,.0f} records/CPU-s"
                + (" (row dicts, not columns)" if shapes else ""),
                flush=True,
            )
        if "pipeline" in only:
            polls = batches(values, POLL_RECORDS)
            wall, cpu, made = best(args.repeat, lambda: run_pipeline(spec, polls))  # noqa: B023
            assert made == len(values), f"{fmt} pipeline: {made} rows from {len(values)} records"
            results[f"{fmt}_pipeline_eps"] = len(values) / wall
            results[f"{fmt}_pipeline_cpu_eps"] = len(values) / cpu
            print(
                f"{fmt:<9} {'pipeline':<12} {len(values):>9,} records, rollup off, {args.spec}: "
                f"{len(values) / wall:>11,.0f} records/s wall, {len(values) / cpu:>11,.0f} records/CPU-s",
                flush=True,
            )
    ratios = {
        f"{key[: -len('_eps')]}_ratio": value / results[f"json{key[key.index('_') :]}"]
        for key, value in results.items()
        if not key.startswith("json") and f"json{key[key.index('_') :]}" in results
    }
    print(
        "RESULT "
        + " ".join(f"{key}={value:.0f}" for key, value in results.items())
        + "".join(f" {key}={value:.2f}" for key, value in ratios.items())
        + f" events={args.events}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

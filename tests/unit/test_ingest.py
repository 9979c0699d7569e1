"""The ingest engine (``middlemanager.ingest``): records in, Parquet segments out. Pure, no services."""

from __future__ import annotations

import copy
import hashlib
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from middlemanager.ingest import (
    MAX_RECORD_BYTES,
    IngestPipeline,
    ParseExceptionReport,
    RejectedRecord,
    RowStats,
    SegmentFile,
)
from middlemanager.ingest import pipeline as pipeline_module
from middlemanager.ingest import segments as segments_module
from middlemanager.ingest.fastjson import FastJsonPath
from middlemanager.ingest.schema import JSON_OUTPUT_TYPE
from middlemanager.ingest.timestamps import TimestampError, make_timestamp_parser
from supervisor.errors import IllegalStateTransition, TooManyParseExceptions
from supervisor.records import Record
from supervisor.spec import SupervisorSpec, parse_supervisor_spec

DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def ms(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def make_spec(
    dimensions: list[Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    *,
    timestamp: dict[str, Any] | None = None,
    segment: str = "DAY",
    query: str = "NONE",
    rollup: bool = True,
    filter: dict[str, Any] | None = None,
    exclusions: list[str] | None = None,
    **tuning: Any,
) -> SupervisorSpec:
    dimensions_spec: dict[str, Any] = {"dimensions": ["page", "user"] if dimensions is None else dimensions}
    if exclusions:
        dimensions_spec["dimensionExclusions"] = exclusions
    data_schema: dict[str, Any] = {
        "dataSource": "events",
        "timestampSpec": timestamp or {"column": "ts", "format": "auto"},
        "dimensionsSpec": dimensions_spec,
        "metricsSpec": [
            {"type": "count", "name": "count"},
            {"type": "longSum", "name": "added", "fieldName": "added"},
        ]
        if metrics is None
        else metrics,
        "granularitySpec": {"segmentGranularity": segment, "queryGranularity": query, "rollup": rollup},
    }
    if filter is not None:
        data_schema["transformSpec"] = {"filter": filter}
    return parse_supervisor_spec(
        {
            "type": "kafka",
            "spec": {
                "dataSchema": data_schema,
                "ioConfig": {
                    "topic": "events",
                    "inputFormat": {"type": "json"},
                    "consumerProperties": {"bootstrap.servers": "localhost:9092"},
                },
                "tuningConfig": {"type": "kafka", **tuning},
            },
        }
    )


def records(values: Iterable[Any], partition: int = 0, start: int = 0) -> list[Record]:
    out = []
    for offset, value in enumerate(values, start):
        raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
        out.append(Record(partition, offset, raw, 1_000 + offset))
    return out


def ingest(
    spec: SupervisorSpec,
    tmp_path: Path,
    values: Iterable[Any],
    *,
    batch: int = 1000,
    name: str = "run",
    min_time: int | None = None,
    max_time: int | None = None,
) -> tuple[IngestPipeline, list[SegmentFile]]:
    pipeline = IngestPipeline(spec, tmp_path / name / "work", min_time, max_time)
    recs = records(values)
    for index in range(0, len(recs), batch):
        pipeline.add(recs[index : index + batch])
    return pipeline, pipeline.finish(tmp_path / name / "out")


def read_rows(files: Sequence[SegmentFile]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for file in files:
        rows.extend(pq.read_table(file.path).to_pylist())
    return rows


def event(ts: str | int | None, **fields: Any) -> dict[str, Any]:
    return {"ts": ts, **fields} if ts is not None else dict(fields)


# ----------------------------------------------------------------------------- bad input


def test_every_kind_of_bad_record_is_unparseable(tmp_path: Path) -> None:
    spec = make_spec(maxSavedParseExceptions=100)
    bad: list[Any] = [
        b"not json",
        b'{"ts": "2024-01-01T00:00:00Z", "page": "\xff\xfe"}',  # not UTF-8
        b"[1, 2, 3]",  # JSON, not an object
        b'"just a string"',
        b"42",
        None,  # tombstone
        b"",  # empty value
        event(None, page="no timestamp"),
        event("not a time", page="bad timestamp"),
        event(True, page="boolean timestamp"),
        b'{"ts": "2024-01-01T00:00:00Z", "page": "' + b"x" * MAX_RECORD_BYTES + b'"}',  # oversized
    ]
    good = [event("2024-01-01T00:00:00Z", page="a", added=1)]
    pipeline, files = ingest(spec, tmp_path, bad + good)
    stats = pipeline.stats
    assert stats.unparseable == len(bad)
    assert stats.processed == 1
    assert stats.processed_with_error == 0
    assert stats.thrown_away == 0
    assert stats.records == len(bad) + 1
    reports = pipeline.parse_exceptions
    assert [r.offset for r in reports] == list(range(len(bad)))
    assert all(r.error_type == "unparseable" for r in reports)
    messages = [r.message for r in reports]
    assert messages[0].startswith("Unable to parse row [not json]")
    assert "UTF-8" in messages[1]
    assert (
        "not an object" in messages[2] and "not an object" in messages[3] and "not an object" in messages[4]
    )
    assert "tombstone" in messages[5] and "tombstone" in messages[6]
    assert messages[7].startswith("Timestamp[null] is unparseable! Event: ")
    assert messages[8].startswith("Timestamp[not a time] is unparseable!")
    assert messages[9].startswith("Timestamp[True] is unparseable!")
    assert "larger than the 1048576-byte limit" in messages[10]
    assert len(reports[10].input.encode()) <= 1024  # raw input kept, truncated
    assert read_rows(files) == [
        {"__time": ms("2024-01-01T00:00:00Z"), "page": "a", "user": None, "count": 1, "added": 1}
    ]


def test_processed_bytes_counts_every_record_value(tmp_path: Path) -> None:
    values: list[Any] = [
        b"garbage",
        None,
        event("2024-01-01T00:00:00Z", page="a"),
        event("1999-01-01", page="x"),
    ]
    pipeline, _ = ingest(make_spec(), tmp_path, values, min_time=ms("2020-01-01T00:00:00Z"))
    expected = sum(len(r.value) for r in records(values) if r.value)
    assert pipeline.stats.processed_bytes == expected
    assert pipeline.stats.to_json() == {
        "processed": 1,
        "processedBytes": expected,
        "processedWithError": 0,
        "thrownAway": 1,
        "unparseable": 2,
    }


def test_wrong_types_are_processed_with_error_and_the_row_is_kept(tmp_path: Path) -> None:
    spec = make_spec(
        ["page", {"name": "n", "type": "long"}, {"name": "f", "type": "double"}],
        [
            {"type": "count", "name": "count"},
            {"type": "longSum", "name": "added", "fieldName": "added"},
            {"type": "doubleMax", "name": "peak", "fieldName": "x"},
        ],
        rollup=False,
        maxSavedParseExceptions=10,
    )
    values = [
        event("2024-01-01T00:00:01Z", page="a", n="abc", f=1.5, added=1, x=1),  # bad long dim
        event("2024-01-01T00:00:02Z", page="b", n=2, f="1.5x", added="many", x=2),  # bad double dim + metric
        # numeric strings are fine, a list is not
        event("2024-01-01T00:00:03Z", page="c", n="7", f="2.5", added="3", x=[1]),
        event("2024-01-01T00:00:04Z", page="d", n=4.9, f=True, added=-2.7, x="4.5"),  # truncation, bool
    ]
    pipeline, files = ingest(spec, tmp_path, values)
    stats = pipeline.stats
    assert (stats.processed, stats.processed_with_error, stats.unparseable) == (1, 3, 0)
    rows = read_rows(files)
    assert [(r["page"], r["n"], r["f"], r["added"], r["peak"]) for r in rows] == [
        ("a", None, 1.5, 1, 1.0),
        ("b", 2, None, None, 2.0),
        ("c", 7, 2.5, 3, None),
        ("d", 4, 1.0, -2, 4.5),
    ]
    assert all(r["count"] == 1 for r in rows)
    reports = pipeline.parse_exceptions
    assert [r.offset for r in reports] == [0, 1, 2]
    assert all(r.error_type == "processedWithError" for r in reports)
    assert reports[0].details == ("could not convert value [abc] to long",)
    assert set(reports[1].details) == {
        "could not convert value [1.5x] to double",
        "Unable to parse value[many] for field[added]",
    }
    assert reports[2].details == ("Unable to parse value[[1]] for field[x]",)
    assert reports[0].message.startswith("Found unparseable columns in row: [")


def test_stats_always_add_up_to_the_records_seen(tmp_path: Path) -> None:
    rng = random.Random(3)
    values: list[Any] = []
    for i in range(3000):
        kind = rng.randrange(6)
        if kind == 0:
            values.append(b"{broken")
        elif kind == 1:
            values.append(event("2023-06-01T00:00:00Z", page="old"))  # before min time
        elif kind == 2:
            values.append(event("2024-01-01T00:00:00Z", page="a", added="x"))  # metric error
        elif kind == 3:
            values.append(event("2024-01-01T00:00:00Z", page="drop"))  # filtered out
        else:
            values.append(event(T0 + i, page=f"p{i % 7}", added=i))
    spec = make_spec(
        filter={"type": "not", "field": {"type": "selector", "dimension": "page", "value": "drop"}}
    )
    pipeline, files = ingest(spec, tmp_path, values, batch=333, min_time=ms("2023-12-01T00:00:00Z"))
    stats = pipeline.stats
    assert stats.records == len(values)
    assert stats.processed + stats.processed_with_error == sum(r["count"] for r in read_rows(files))


# ----------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("fmt", "value", "expected"),
    [
        ("auto", "2024-01-01T00:00:00Z", T0),
        ("auto", "2024-01-01T00:00:00.123Z", T0 + 123),
        ("auto", "2024-01-01T01:00:00+01:00", T0),
        ("auto", "2024-01-01 00:00:00", T0),
        ("auto", "2024-01-01", T0),
        ("auto", "2024-01-01T00:00:00.123456789Z", T0 + 123),
        ("auto", T0, T0),
        ("auto", str(T0), T0),
        ("auto", float(T0) + 0.9, T0),
        ("iso", "2024-01-01T00:00:00.5Z", T0 + 500),
        ("iso", "20240101T000000Z", T0),
        ("millis", T0, T0),
        ("millis", str(T0), T0),
        ("posix", T0 // 1000, T0),
        ("posix", str(T0 // 1000), T0),
        ("posix", T0 / 1000 + 0.7, T0),
        ("micro", T0 * 1000 + 999, T0),
        ("micro", -1500, -1),
        ("nano", T0 * 1_000_000 + 999_999, T0),
        ("ruby", T0 / 1000 + 0.25, T0 + 250),
        ("ruby", "1704067200.5", T0 + 500),
        ("ruby", T0 // 1000, T0),
    ],
)
def test_timestamp_formats(fmt: str, value: Any, expected: int) -> None:
    assert make_timestamp_parser(fmt)(value) == expected


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("auto", "yesterday"),
        ("auto", True),
        ("auto", [T0]),
        ("auto", {"t": 1}),
        ("auto", "1.5"),
        ("auto", float("nan")),
        ("iso", T0),
        ("iso", "2024-13-01T00:00:00Z"),
        ("iso", "2024-01-01T00:00:00Zjunk"),
        ("millis", "2024-01-01"),
        ("millis", False),
        ("posix", "abc"),
        ("nano", None),
        ("ruby", "x"),
        ("millis", 2**63),
    ],
)
def test_bad_timestamps(fmt: str, value: Any) -> None:
    with pytest.raises(TimestampError):
        make_timestamp_parser(fmt)(value)


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("auto", "2024-01-01T10:30:00Z"),
        ("iso", "2024-01-01T10:30:00.000Z"),
        ("millis", T0 + 10 * HOUR + 30 * MINUTE),
        ("posix", (T0 + 10 * HOUR + 30 * MINUTE) // 1000),
        ("micro", (T0 + 10 * HOUR + 30 * MINUTE) * 1000),
        ("nano", (T0 + 10 * HOUR + 30 * MINUTE) * 1_000_000),
        ("ruby", (T0 + 10 * HOUR + 30 * MINUTE) / 1000),
    ],
)
def test_every_timestamp_format_through_the_pipeline(tmp_path: Path, fmt: str, value: Any) -> None:
    spec = make_spec(timestamp={"column": "when", "format": fmt}, query="HOUR")
    pipeline, files = ingest(spec, tmp_path, [{"when": value, "page": "a", "added": 1}])
    assert pipeline.stats.processed == 1
    assert read_rows(files)[0]["__time"] == T0 + 10 * HOUR
    assert (files[0].interval_start_ms, files[0].interval_end_ms) == (T0, T0 + DAY)


def test_missing_timestamp_uses_missing_value(tmp_path: Path) -> None:
    spec = make_spec(timestamp={"column": "ts", "format": "iso", "missingValue": "2024-01-01T05:00:00Z"})
    pipeline, files = ingest(spec, tmp_path, [{"page": "a"}, {"ts": None, "page": "b"}, {"ts": "bad"}])
    assert (pipeline.stats.processed, pipeline.stats.unparseable) == (2, 1)
    assert {r["__time"] for r in read_rows(files)} == {T0 + 5 * HOUR}


# ----------------------------------------------------------------------------- rejection


def test_rows_outside_the_message_time_window_are_thrown_away(tmp_path: Path) -> None:
    spec = make_spec(deadLetterTopic="dead-letters")
    values = [
        event(T0 - 1, page="early"),
        event(T0, page="first"),
        event(T0 + HOUR - 1, page="last"),
        event(T0 + HOUR, page="late"),
    ]
    pipeline, files = ingest(spec, tmp_path, values, min_time=T0, max_time=T0 + HOUR)
    assert (pipeline.stats.processed, pipeline.stats.thrown_away) == (2, 2)
    assert sorted(r["page"] for r in read_rows(files)) == ["first", "last"]


def test_filter_throws_rows_away(tmp_path: Path) -> None:
    spec = make_spec(
        filter={
            "type": "or",
            "fields": [
                {"type": "selector", "dimension": "page", "value": "keep"},
                {"type": "in", "dimension": "user", "values": ["alice", "bob"]},
            ],
        }
    )
    values = [
        event(T0, page="keep", user="zed"),
        event(T0, page="drop", user="alice"),
        event(T0, page="drop", user="carol"),
        event(T0, page="drop"),
    ]
    pipeline, files = ingest(spec, tmp_path, values)
    assert (pipeline.stats.processed, pipeline.stats.thrown_away) == (2, 2)
    assert sorted((r["page"], r["user"]) for r in read_rows(files)) == [("drop", "alice"), ("keep", "zed")]


def test_rejected_records_are_kept_for_the_dead_letter_topic(tmp_path: Path) -> None:
    spec = make_spec(
        filter={"type": "selector", "dimension": "page", "value": "keep"}, deadLetterTopic="events-dlq"
    )
    values: list[Any] = [
        b"oops",
        event(T0, page="keep"),
        event(T0, page="other"),
        event(T0 - DAY, page="keep"),
    ]
    pipeline = IngestPipeline(spec, tmp_path / "work", min_message_time=T0)
    pipeline.add(records(values, partition=3))
    rejected = pipeline.rejected
    assert [(r.partition, r.offset, r.kind) for r in rejected] == [
        (3, 0, "unparseable"),
        (3, 2, "thrownAway"),
        (3, 3, "thrownAway"),
    ]
    assert rejected[0].value == b"oops"
    assert rejected[0].timestamp_ms == 1_000
    assert "Unable to parse row" in rejected[0].reason
    assert "filter" in rejected[1].reason
    assert "minimum message time" in rejected[2].reason
    assert isinstance(rejected[0], RejectedRecord)
    assert rejected[0].to_json()["kind"] == "unparseable"
    assert pipeline.drain_rejected() == rejected
    assert pipeline.rejected == []
    assert pipeline.drain_rejected() == []


def test_rejected_records_are_not_kept_without_a_dead_letter_topic(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(), tmp_path / "work", min_message_time=T0)
    pipeline.add(records([b"oops", event(T0 - 1, page="x")]))
    assert pipeline.stats.unparseable == 1 and pipeline.stats.thrown_away == 1
    assert pipeline.rejected == []


# ----------------------------------------------------------------------------- parse exception limits


def test_max_parse_exceptions_raises_once_exceeded(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(maxParseExceptions=2), tmp_path / "work")
    pipeline.add(records([b"bad1", event(T0, page="ok"), b"bad2"]))
    assert pipeline.stats.unparseable == 2
    with pytest.raises(TooManyParseExceptions, match=r"Max parse exceptions\[2\] exceeded"):
        pipeline.add(records([event(T0, page="fine"), b"bad3"], start=3))


def test_processed_with_error_counts_toward_max_parse_exceptions(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(maxParseExceptions=0), tmp_path / "work")
    pipeline.add(records([event(T0, page="ok", added=1)]))
    with pytest.raises(TooManyParseExceptions, match=r"Max parse exceptions\[0\] exceeded"):
        pipeline.add(records([event(T0, page="ok", added="NaN-ish")], start=1))


def test_legacy_report_parse_exceptions_fails_on_the_first_one(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(reportParseExceptions=True), tmp_path / "work")
    with pytest.raises(TooManyParseExceptions):
        pipeline.add(records([event(T0, page="ok"), b"{"]))


def test_saved_parse_exceptions_are_capped_newest_last(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(maxSavedParseExceptions=3), tmp_path / "work")
    pipeline.add(records([f"bad{i}".encode() for i in range(10)], partition=1))
    reports = pipeline.parse_exceptions
    assert [r.offset for r in reports] == [7, 8, 9]
    assert all(isinstance(r, ParseExceptionReport) for r in reports)
    payload = reports[-1].to_json()
    assert payload["partition"] == 1 and payload["offset"] == 9
    assert payload["errorType"] == "unparseable"
    assert payload["input"] == "bad9"
    assert payload["timestamp"].endswith("Z")
    assert payload["details"] == [reports[-1].message]


def test_no_parse_exceptions_saved_by_default(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(), tmp_path / "work")
    pipeline.add(records([b"bad"]))
    assert pipeline.stats.unparseable == 1
    assert pipeline.parse_exceptions == []


def test_log_parse_exceptions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = IngestPipeline(make_spec(logParseExceptions=True), tmp_path / "work")
    with caplog.at_level(logging.WARNING, logger="middlemanager.ingest.pipeline"):
        pipeline.add(records([b"bad", event(T0, page="a", added="x")], partition=5, start=40))
        assert pipeline.stats.unparseable == 1  # records may wait in a buffer until state is read
    messages = [r.getMessage() for r in caplog.records]
    assert any("partition 5 offset 40" in m and "Unable to parse row [bad]" in m for m in messages)
    assert any("partition 5 offset 41" in m and "field[added]" in m for m in messages)


# ----------------------------------------------------------------------------- rollup


METRICS = [
    {"type": "count", "name": "count"},
    {"type": "longSum", "name": "lsum", "fieldName": "l"},
    {"type": "doubleSum", "name": "dsum", "fieldName": "d"},
    {"type": "floatSum", "name": "fsum", "fieldName": "d"},
    {"type": "longMin", "name": "lmin", "fieldName": "l"},
    {"type": "longMax", "name": "lmax", "fieldName": "l"},
    {"type": "doubleMin", "name": "dmin", "fieldName": "d"},
    {"type": "doubleMax", "name": "dmax", "fieldName": "d"},
    {"type": "floatMin", "name": "fmin", "fieldName": "d"},
    {"type": "floatMax", "name": "fmax", "fieldName": "d"},
]


def random_events(count: int, seed: int, days: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        row: dict[str, Any] = {
            "ts": T0 + rng.randrange(days * DAY),
            "page": rng.choice(["a", "b", "c", None]),
            "user": rng.choice(["u1", "u2"]),
        }
        if rng.random() < 0.9:
            row["l"] = rng.randrange(-50, 100)
        if rng.random() < 0.9:
            row["d"] = rng.randrange(-400, 400) / 4  # exact in binary: sums are order independent
        out.append(row)
    return out


def naive_rollup(events: list[dict[str, Any]], granularity_ms: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        groups[(e["ts"] // granularity_ms * granularity_ms, e.get("page"), e.get("user"))].append(e)
    out = {}
    for key, rows in groups.items():
        longs = [r["l"] for r in rows if "l" in r]
        doubles = [r["d"] for r in rows if "d" in r]
        out[key] = {
            "count": len(rows),
            "lsum": sum(longs) if longs else None,
            "dsum": sum(doubles) if doubles else None,
            "fsum": sum(doubles) if doubles else None,
            "lmin": min(longs, default=None),
            "lmax": max(longs, default=None),
            "dmin": min(doubles, default=None),
            "dmax": max(doubles, default=None),
            "fmin": min(doubles, default=None),
            "fmax": max(doubles, default=None),
        }
    return out


def by_key(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {}
    for row in rows:
        key = (row["__time"], row["page"], row["user"])
        assert key not in out, f"duplicate rollup key {key}"
        out[key] = {name: row[name] for name in row if name not in ("__time", "page", "user")}
    return out


def test_rollup_matches_a_naive_computation(tmp_path: Path) -> None:
    events = random_events(5000, seed=1)
    spec = make_spec(["page", "user"], METRICS, query="HOUR")
    pipeline, files = ingest(spec, tmp_path, events, batch=700)
    assert by_key(read_rows(files)) == naive_rollup(events, HOUR)
    assert pipeline.stats.processed == len(events)


def test_rollup_across_many_persists_equals_rollup_in_memory(tmp_path: Path) -> None:
    events = random_events(4000, seed=2)
    in_memory, files_a = ingest(
        make_spec(["page", "user"], METRICS, query="HOUR"), tmp_path, events, name="a"
    )
    spilled, files_b = ingest(
        make_spec(["page", "user"], METRICS, query="HOUR", maxRowsInMemory=7),
        tmp_path,
        events,
        name="b",
        batch=97,
    )
    assert in_memory.persist_count == 0
    assert spilled.persist_count > 50
    rows = read_rows(files_b)
    assert rows == read_rows(files_a)
    assert by_key(rows) == naive_rollup(events, HOUR)
    assert [f.num_rows for f in files_a] == [f.num_rows for f in files_b]
    # Spill files are gone once the segments are written.
    assert not any((tmp_path / "b" / "work").glob("persist-*/*"))


def test_rollup_across_persists_and_merge_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = random_events(3000, seed=5, days=1)
    _, expected = ingest(make_spec(["page", "user"], METRICS, query="MINUTE"), tmp_path, events, name="a")
    monkeypatch.setattr(segments_module, "MERGE_SLICE_ROWS", 50)
    slices: list[int] = []
    real_time_slices = segments_module.time_slices

    def counting_time_slices(tables: Sequence[pa.Table], target_rows: int) -> Iterable[list[pa.Table]]:
        for pieces in real_time_slices(tables, target_rows):
            slices.append(sum(p.num_rows for p in pieces))
            yield pieces

    monkeypatch.setattr(segments_module, "time_slices", counting_time_slices)
    pipeline, files = ingest(
        make_spec(["page", "user"], METRICS, query="MINUTE", maxRowsInMemory=300), tmp_path, events, name="b"
    )
    assert pipeline.persist_count >= 5
    assert len(slices) > 20 and max(slices) < 200
    assert read_rows(files) == read_rows(expected)


def test_persist_called_by_the_caller(tmp_path: Path) -> None:
    events = random_events(500, seed=9)
    pipeline = IngestPipeline(make_spec(["page", "user"], METRICS, query="HOUR"), tmp_path / "work")
    recs = records(events)
    pipeline.add(recs[:200])
    assert pipeline.rows_in_memory > 0 and pipeline.bytes_in_memory > 0
    pipeline.persist()
    assert pipeline.rows_in_memory == 0 and pipeline.persist_count == 1
    pipeline.persist()  # nothing in memory: no-op
    assert pipeline.persist_count == 1
    pipeline.add(recs[200:])
    files = pipeline.finish(tmp_path / "out")
    assert by_key(read_rows(files)) == naive_rollup(events, HOUR)


def test_max_bytes_in_memory_triggers_persists(tmp_path: Path) -> None:
    events = random_events(3000, seed=4)
    pipeline, files = ingest(
        make_spec(["page", "user"], METRICS, query="NONE", rollup=False, maxBytesInMemory=20_000),
        tmp_path,
        events,
        batch=100,
    )
    assert pipeline.persist_count >= 5
    assert len(read_rows(files)) == len(events)


def test_rollup_off_keeps_every_row_with_truncated_time(tmp_path: Path) -> None:
    values = [
        event("2024-01-01T10:15:00Z", page="a", added=1),
        event("2024-01-01T10:45:00Z", page="a", added=1),
        event("2024-01-01T10:45:00Z", page="a", added=1),
    ]
    _, files = ingest(make_spec(query="HOUR", rollup=False), tmp_path, values)
    rows = read_rows(files)
    assert [(r["__time"], r["count"], r["added"]) for r in rows] == [(T0 + 10 * HOUR, 1, 1)] * 3


def test_rollup_with_all_granularities(tmp_path: Path) -> None:
    values = [
        event("2024-01-03T10:15:00Z", page="a", added=1),
        event("2024-01-05T23:00:00Z", page="a", added=2),
    ]
    _, files = ingest(make_spec(segment="MONTH", query="WEEK"), tmp_path, values, name="week")
    # ISO weeks start on Monday: 2024-01-01 was one.
    assert [(r["__time"], r["added"]) for r in read_rows(files)] == [(T0, 3)]
    assert (files[0].interval_start_ms, files[0].interval_end_ms) == (T0, ms("2024-02-01T00:00:00Z"))
    _, files = ingest(make_spec(segment="YEAR", query="ALL"), tmp_path, values, name="all")
    # queryGranularity ALL: __time is the start of the segment.
    assert [(r["__time"], r["count"]) for r in read_rows(files)] == [(T0, 2)]


# ----------------------------------------------------------------------------- dimensions


def test_schemaless_dimensions_are_sorted_and_exclude_special_fields(tmp_path: Path) -> None:
    spec = make_spec(
        [],
        [{"type": "count", "name": "rows"}, {"type": "longSum", "name": "total", "fieldName": "n"}],
        exclusions=["secret"],
        rollup=False,
    )
    values = [
        {"ts": T0, "zeta": "z", "alpha": 1, "n": 5, "secret": "s"},
        {"ts": T0 + 1, "mid": True, "alpha": "x", "rows": "not a metric input", "nested": {"a": [1, 2]}},
        {"ts": T0 + 2, "beta": 1.5, "list": ["b", "a"]},
    ]
    _, files = ingest(spec, tmp_path, values, batch=1)
    assert files[0].dimensions == ["alpha", "beta", "list", "mid", "nested", "zeta"]
    assert files[0].metrics == ["rows", "total"]
    schema = pq.read_schema(files[0].path)
    assert schema.names == ["__time", "alpha", "beta", "list", "mid", "nested", "zeta", "rows", "total"]
    rows = read_rows(files)
    assert rows[0]["alpha"] == "1" and rows[0]["zeta"] == "z" and rows[0]["total"] == 5
    assert rows[1]["mid"] == "true" and rows[1]["nested"] == '{"a":[1,2]}' and rows[1]["zeta"] is None
    assert rows[2]["beta"] == "1.5" and rows[2]["list"] == ["a", "b"] and rows[0]["list"] is None
    assert pq.read_schema(files[0].path).field("list").type == pa.list_(pa.string())


def test_schemaless_single_values_stay_plain_strings(tmp_path: Path) -> None:
    spec = make_spec([], [{"type": "count", "name": "count"}])
    _, files = ingest(spec, tmp_path, [{"ts": T0, "b": "1", "a": 2}, {"ts": T0, "c": None, "a": 2}])
    assert pq.read_schema(files[0].path).names == ["__time", "a", "b", "c", "count"]
    assert read_rows(files) == [
        {"__time": T0, "a": "2", "b": None, "c": None, "count": 1},
        {"__time": T0, "a": "2", "b": "1", "c": None, "count": 1},
    ]


def test_multi_value_dimensions(tmp_path: Path) -> None:
    spec = make_spec(
        [
            "tags",
            {"name": "set", "type": "string", "multiValueHandling": "SORTED_SET"},
            {"name": "raw", "type": "string", "multiValueHandling": "ARRAY"},
        ],
        [{"type": "count", "name": "count"}],
    )
    values = [
        event(T0, tags=["b", "a", "b"], set=["b", "a", "b"], raw=["b", "a"]),
        event(T0, tags=["a", "b", "b"], set=["a", "b"], raw=["b", "a"]),  # same row after sorting
        event(T0, tags=["x"], set=[], raw="\x00tricky"),
        event(T0, tags=[1, None, True], set="plain", raw=None),
    ]
    _, files = ingest(spec, tmp_path, values)
    schema = pq.read_schema(files[0].path)
    assert schema.field("tags").type == pa.list_(pa.string())
    rows = read_rows(files)
    assert {
        (tuple(r["tags"] or ()), tuple(r["set"] or ()), tuple(r["raw"] or ()), r["count"]) for r in rows
    } == {
        (("a", "b", "b"), ("a", "b"), ("b", "a"), 2),
        (("x",), (), ("\x00tricky",), 1),
        ((None, "1", "true"), ("plain",), (), 1),
    }


def test_typed_dimensions_and_json(tmp_path: Path) -> None:
    spec = make_spec(
        [
            {"name": "s", "type": "string"},
            {"name": "l", "type": "long"},
            {"name": "f", "type": "float"},
            {"name": "d", "type": "double"},
            {"name": "j", "type": "json"},
        ],
        [{"type": "count", "name": "count"}],
        rollup=False,
    )
    values = [
        event(T0, s=12, l=3, f=0.1, d=0.1, j={"b": [1, {"c": None}], "a": "é"}),
        event(T0 + 1, s=False, l=-(2**63), f=1, d=1e300, j="text"),
        event(T0 + 2, s=1.0, l=2**63 - 1, j=[1, 2]),
    ]
    _, files = ingest(spec, tmp_path, values)
    rows = read_rows(files)
    assert [r["s"] for r in rows] == ["12", "false", "1.0"]
    assert [r["l"] for r in rows] == [3, -(2**63), 2**63 - 1]
    assert rows[0]["f"] == pytest.approx(0.1) and rows[0]["f"] != 0.1  # float32
    assert [r["d"] for r in rows] == [0.1, 1e300, None]
    assert [r["j"] for r in rows] == ['{"b":[1,{"c":null}],"a":"é"}', '"text"', "[1,2]"]


def test_metric_on_a_dimension_field(tmp_path: Path) -> None:
    spec = make_spec(
        ["page", {"name": "n", "type": "long"}],
        [
            {"type": "longSum", "name": "total", "fieldName": "n"},
            {"type": "doubleMax", "name": "mx", "fieldName": "page"},
        ],
    )
    _, files = ingest(spec, tmp_path, [event(T0, page="3.5", n=2), event(T0, page="3.5", n=2)])
    assert read_rows(files) == [{"__time": T0, "page": "3.5", "n": 2, "total": 4, "mx": 3.5}]


# ----------------------------------------------------------------------------- segments


def test_segments_are_bucketed_by_day(tmp_path: Path) -> None:
    values = [
        event("2024-01-01T23:59:59.999Z", page="a"),
        event("2024-01-02T00:00:00Z", page="b"),
        event("2023-12-31T23:00:00Z", page="c"),
        event("2024-01-02T12:00:00Z", page="d"),
    ]
    _, files = ingest(make_spec(segment="DAY", query="HOUR"), tmp_path, values)
    assert [(f.interval_start_ms, f.interval_end_ms, f.shard, f.num_rows) for f in files] == [
        (T0 - DAY, T0, 0, 1),
        (T0, T0 + DAY, 0, 1),
        (T0 + DAY, T0 + 2 * DAY, 0, 2),
    ]
    assert [f.path.name for f in files] == [
        "20231231T000000Z_20240101T000000Z_0.parquet",
        "20240101T000000Z_20240102T000000Z_0.parquet",
        "20240102T000000Z_20240103T000000Z_0.parquet",
    ]
    assert [r["page"] for r in pq.read_table(files[1].path).to_pylist()] == ["a"]
    assert [r["__time"] for r in pq.read_table(files[1].path).to_pylist()] == [T0 + 23 * HOUR]
    assert files[1].interval == "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"
    assert files[1].to_json()["numRows"] == 1
    assert files[1].size_bytes == files[1].path.stat().st_size


def test_max_rows_per_segment_splits_into_shards(tmp_path: Path) -> None:
    values = [event(T0 + i, page=f"p{i % 13}", added=i) for i in range(2500)]
    _, files = ingest(make_spec(rollup=False, maxRowsPerSegment=1000, maxRowsInMemory=333), tmp_path, values)
    assert [(f.shard, f.num_rows) for f in files] == [(0, 1000), (1, 1000), (2, 500)]
    assert [f.path.name for f in files] == [
        f"20240101T000000Z_20240102T000000Z_{i}.parquet" for i in range(3)
    ]
    assert [pq.read_metadata(f.path).num_rows for f in files] == [1000, 1000, 500]
    rows = read_rows(files)
    # Shards continue each other in the segment's sort order.
    assert [r["__time"] for r in rows] == sorted(r["__time"] for r in rows)
    assert sorted(r["added"] for r in rows) == list(range(2500))
    _, exact = ingest(make_spec(rollup=False, maxRowsPerSegment=2500), tmp_path, values, name="exact")
    assert [(f.shard, f.num_rows) for f in exact] == [(0, 2500)]


def test_parquet_schema_and_sort_order(tmp_path: Path) -> None:
    spec = make_spec(
        [
            "page",
            {"name": "n", "type": "long"},
            {"name": "f", "type": "float"},
            {"name": "d", "type": "double"},
            {"name": "j", "type": "json"},
        ],
        METRICS,
        query="MINUTE",
    )
    values = [
        event(T0 + 5 * MINUTE, page="b", n=1, l=1, d=1.0),
        event(T0 + 5 * MINUTE, page="a", n=2, l=1, d=1.0),
        event(T0 + 5 * MINUTE, page=None, n=2, l=1, d=1.0),
        event(T0 + MINUTE, page="z", n=1, l=1, d=1.0),
        event(T0 + 5 * MINUTE, page="a", n=1, l=1, d=1.0),
    ]
    _, files = ingest(spec, tmp_path, values)
    schema = pq.read_schema(files[0].path)
    assert [(f.name, f.type) for f in schema] == [
        ("__time", pa.int64()),
        ("page", pa.string()),
        ("n", pa.int64()),
        ("f", pa.float32()),
        ("d", pa.float64()),
        ("j", JSON_OUTPUT_TYPE),
        ("count", pa.int64()),
        ("lsum", pa.int64()),
        ("dsum", pa.float64()),
        ("fsum", pa.float32()),
        ("lmin", pa.int64()),
        ("lmax", pa.int64()),
        ("dmin", pa.float64()),
        ("dmax", pa.float64()),
        ("fmin", pa.float32()),
        ("fmax", pa.float32()),
    ]
    assert not schema.field("__time").nullable
    assert files[0].dimensions == ["page", "n", "f", "d", "j"]
    assert files[0].metrics == [m["name"] for m in METRICS]
    rows = read_rows(files)
    assert [(r["__time"], r["page"], r["n"]) for r in rows] == [
        (T0 + MINUTE, "z", 1),
        (T0 + 5 * MINUTE, None, 2),
        (T0 + 5 * MINUTE, "a", 1),
        (T0 + 5 * MINUTE, "a", 2),
        (T0 + 5 * MINUTE, "b", 1),
    ]


def test_no_rows_no_segments(tmp_path: Path) -> None:
    pipeline, files = ingest(make_spec(), tmp_path, [b"bad"])
    assert files == []
    with pytest.raises(IllegalStateTransition):
        pipeline.add(records([event(T0)]))
    with pytest.raises(IllegalStateTransition):
        pipeline.finish(tmp_path / "again")


# ----------------------------------------------------------------------------- determinism


def digest(files: Sequence[SegmentFile]) -> list[tuple[str, str]]:
    return [(f.path.name, hashlib.sha256(f.path.read_bytes()).hexdigest()) for f in files]


@pytest.mark.parametrize("rollup", [True, False])
def test_segments_are_byte_identical_for_the_same_records(tmp_path: Path, rollup: bool) -> None:
    events = random_events(6000, seed=11)
    for e in events[::7]:
        e["tags"] = ["x", "y"]
    spec = make_spec(["page", "user", "tags"], METRICS, query="MINUTE", rollup=rollup)
    _, first = ingest(spec, tmp_path, copy.deepcopy(events), name="one")
    _, second = ingest(spec, tmp_path, copy.deepcopy(events), name="two")
    assert len(first) == 2
    assert digest(first) == digest(second)
    # Another batching and persist schedule gives the same bytes too (the sums here are exact).
    tight = make_spec(["page", "user", "tags"], METRICS, query="MINUTE", rollup=rollup, maxRowsInMemory=500)
    _, third = ingest(tight, tmp_path, copy.deepcopy(events), name="three", batch=123)
    assert digest(third) == digest(first)


# ----------------------------------------------------------------------------- model objects


def test_row_stats_json() -> None:
    stats = RowStats(processed=1, processed_bytes=2, processed_with_error=3, thrown_away=4, unparseable=5)
    assert stats.to_json() == {
        "processed": 1,
        "processedBytes": 2,
        "processedWithError": 3,
        "thrownAway": 4,
        "unparseable": 5,
    }
    assert stats.records == 13


def test_stats_is_a_snapshot(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(), tmp_path / "work")
    before = pipeline.stats
    pipeline.add(records([event(T0, page="a")]))
    assert before.processed == 0 and pipeline.stats.processed == 1


def test_conversion_paths_and_batching_agree(tmp_path: Path) -> None:
    """Rows convert the same whether their batch takes the fast (typed) path or the per-value one."""
    rng = random.Random(21)
    events: list[dict[str, Any]] = []
    for i in range(1500):
        row: dict[str, Any] = {
            "ts": T0 + rng.randrange(3 * HOUR),
            "page": f"p{rng.randrange(20)}",
            "n": i % 5,
        }
        roll = rng.random()
        if roll < 0.01:
            row["page"] = rng.choice([17, 2.5, True, ["m", "k"], {"o": 1}, "\x00nul"])
        elif roll < 0.02:
            row["n"] = rng.choice(["12", "x", 3.9, None, False])
        elif roll < 0.03:
            row["added"] = rng.choice(["5", "five", 2.5, True])
        else:
            row["added"] = rng.randrange(100)
        events.append(row)
    events[10]["page"] = "\x00nul"
    events[11]["page"] = ["\x00a", "b"]
    for rollup in (True, False):
        spec = make_spec(["page", {"name": "n", "type": "long"}], query="MINUTE", rollup=rollup)
        results = []
        for batch in (1, 7, 100, 5000):
            pipeline, files = ingest(spec, tmp_path, events, batch=batch, name=f"{rollup}-{batch}")
            results.append((pipeline.stats.to_json(), digest(files)))
        assert all(result == results[0] for result in results[1:])
    pages = [r["page"] for r in read_rows(files)]
    assert ["\x00nul"] in pages and ["\x00a", "b"] in pages


def test_many_tiny_batches_are_merged_in_memory(tmp_path: Path) -> None:
    events = random_events(1200, seed=8)
    # A finite maxParseExceptions makes every add() ingest its records at once.
    spec = make_spec(["page", "user"], METRICS, query="HOUR", maxParseExceptions=1000)
    pipeline = IngestPipeline(spec, tmp_path / "work")
    recs = records(events)
    for index in range(0, len(recs), 3):
        pipeline.add(recs[index : index + 3])
    # Merged and rolled up in memory, not one table per batch: there are at most
    # 2 days * 24 hours * 4 pages * 2 users = 384 keys.
    assert pipeline.rows_in_memory < 500
    files = pipeline.finish(tmp_path / "out")
    assert pipeline.persist_count == 0
    assert by_key(read_rows(files)) == naive_rollup(events, HOUR)


def test_query_granularity_coarser_than_segment_granularity(tmp_path: Path) -> None:
    values = [event("2024-01-01T10:15:00Z", page="a"), event("2024-01-01T11:45:00Z", page="a")]
    _, files = ingest(make_spec(segment="HOUR", query="DAY"), tmp_path, values)
    # Druid never puts a row before the start of its segment.
    assert [(f.interval_start_ms, read_rows([f])[0]["__time"]) for f in files] == [
        (T0 + 10 * HOUR, T0 + 10 * HOUR),
        (T0 + 11 * HOUR, T0 + 11 * HOUR),
    ]


def test_segment_granularity_all(tmp_path: Path) -> None:
    values = [event("1999-01-01T00:00:00Z", page="a"), event("2024-01-01T11:45:00Z", page="a")]
    _, files = ingest(make_spec(segment="ALL", query="NONE"), tmp_path, values)
    assert [(f.interval_start_ms, f.interval_end_ms, f.num_rows) for f in files] == [(-(2**62), 2**62 - 1, 2)]
    assert files[0].path.name == f"{-(2**62)}_{2**62 - 1}_0.parquet"


# ----------------------------------------------------------------------------- fast path


FAST_SPEC_DIMS: list[Any] = ["page", {"name": "n", "type": "long"}, {"name": "fl", "type": "float"}]
FAST_SPEC_METRICS = [
    {"type": "count", "name": "count"},
    {"type": "longSum", "name": "added", "fieldName": "added"},
    {"type": "doubleSum", "name": "d", "fieldName": "d"},
]
TS = b'"ts":"2024-01-01T00:00:00Z"'
# Records where Arrow's JSON reader and orjson could disagree, or that are not clean JSON objects.
TRICKY: list[bytes | None] = [
    b"{" + TS + b',"page":"a","x":NaN}',
    b"{" + TS + b',"page":"a","x":[-Infinity]}',
    b"{" + TS + b',"page":"a","d":-0}',
    b"{" + TS + b',"page":"a","d":-0.0}',
    b"{" + TS + b',"page":"\xed\xa0\x80"}',
    b"{" + TS + b',"page":"\xff"}',
    b"\xef\xbb\xbf{" + TS + b',"page":"bom"}',
    b" {" + TS + b',"page":"spaced"} ',
    b"{" + TS + b',\n"page":"newline"}',
    b"{" + TS + b',\r"page":"cr"}',
    b"{" + TS + b',"x":' + b"[" * 1100 + b"]" * 1100 + b"}",
    b"{" + TS + b',"x":' + b"[" * 900 + b"]" * 900 + b',"page":"deep"}',
    b"{" + TS + b',"page":"a","page":"b"}',
    b"{" + TS + b',"p\\u0061ge":"escaped key"}',
    b"{" + TS + b',"page":"\\u0000nul"}',
    b"{" + TS + b',"page":5}',
    b"{" + TS + b',"page":["m","k"]}',
    b"{" + TS + b',"n":1.5}',
    b"{" + TS + b',"n":"7"}',
    b"{" + TS + b',"fl":2}',
    b"{" + TS + b',"added":12345678901234567890123}',
    b"{" + TS + b',"d":123456789012345678901234567890}',
    b"{" + TS + b',"d":1e400}',
    b"{}{}",
    b"{" + TS + b',"page":"a"} {' + TS + b',"page":"b"}',
    b"{" + TS + b',"page":"a"},',
    b"",
    None,
    b'{"ts":1704067200000,"page":"numeric ts"}',
    b'{"ts":"yesterday","page":"bad ts"}',
    b'{"page":"no ts"}',
    b'{"ts":null,"page":"null ts"}',
    b"{" + TS + b',"page":"Information NaN Inf-"}',
    b"{" + TS + b',"page":"caf\xc3\xa9 \xf0\x9f\x98\x80"}',
    b"{" + TS + b',"page":"x" , "d" : 2.5 }',
    b"[" + TS + b"]",
    b"{" + TS + b',"added":1e2}',
]


def fast_spec(**tuning: Any) -> SupervisorSpec:
    return make_spec(
        FAST_SPEC_DIMS, FAST_SPEC_METRICS, query="MINUTE", maxSavedParseExceptions=1000, **tuning
    )


def clean_event(rng: random.Random) -> bytes:
    return orjson.dumps(
        {
            "ts": T0 + rng.randrange(2 * HOUR),
            "page": rng.choice(["a", "b", "é", "\u00e9\u00e9"]),
            "n": rng.randrange(5),
            "fl": rng.choice([0.1, 2.5, None]),
            "added": rng.randrange(100),
            "d": rng.randrange(8) / 4,
            "other": {"nested": [1, 2, {"x": None}]},
        }
    ).replace(b'"ts":' + str(T0).encode(), b'"ts":"2024-01-01T00:00:00Z"')


def iso_clean_event(rng: random.Random) -> bytes:
    data = orjson.loads(clean_event(rng))
    data["ts"] = datetime.fromtimestamp((T0 + rng.randrange(2 * HOUR)) / 1000, tz=UTC).isoformat()
    return orjson.dumps(data)


def test_fast_path_takes_clean_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[bool] = []
    real_parse = FastJsonPath.parse

    def spy(self: FastJsonPath, values: list[bytes | None]) -> Any:
        result = real_parse(self, values)
        outcomes.append(result is not None)
        return result

    monkeypatch.setattr(FastJsonPath, "parse", spy)
    rng = random.Random(1)
    values = [iso_clean_event(rng) for _ in range(500)]
    pipeline, files = ingest(fast_spec(), tmp_path, values, batch=100)
    # Batches of 100 records are parsed together once enough of them are buffered.
    assert outcomes == [True]
    assert pipeline.stats.processed == 500
    assert sum(r["count"] for r in read_rows(files)) == 500


@pytest.mark.parametrize("tricky", TRICKY[:26], ids=range(26))
def test_fast_path_refuses_batches_it_cannot_prove_equal(tmp_path: Path, tricky: bytes | None) -> None:
    pipeline = IngestPipeline(fast_spec(), tmp_path / "work")
    assert isinstance(pipeline._fast, FastJsonPath)
    clean = iso_clean_event(random.Random(2))
    refused = pipeline._fast.parse([clean, tricky, clean]) is None
    # Valid JSON that both parsers read the same way is taken; everything else is refused.
    markers = (b"escaped key", b"\\u0000nul", b'"deep"', b'"fl":2', b'"d":1234')
    same_either_way = tricky is not None and any(marker in tricky for marker in markers)
    assert refused != same_either_way


def strict_clean_event(rng: random.Random) -> bytes:
    """A clean event with no field outside the schema (the strict reader takes it)."""
    data = orjson.loads(iso_clean_event(rng))
    del data["other"]
    return orjson.dumps(data)


@pytest.mark.parametrize(
    "tricky",
    [
        b"{" + TS + b',"page":"a","d":NaN}',
        b"{" + TS + b',"page":"a","d":-Infinity}',
        b"{" + TS + b',"page":"a","fl":Infinity}',
        b"{" + TS + b',"page":"a","n":NaN}',
        b"{" + TS + b',"page":"a","x":NaN}',
        b"{" + TS + b',"page":"a","d":-0}',
    ],
)
def test_strict_reader_refuses_literals_orjson_rejects(tmp_path: Path, tricky: bytes) -> None:
    pipeline = IngestPipeline(fast_spec(), tmp_path / "work")
    fast = pipeline._fast
    assert isinstance(fast, FastJsonPath)
    clean = strict_clean_event(random.Random(3))
    assert fast.parse([clean, clean]) is not None
    assert fast._strict  # no field outside the schema so far
    assert fast.parse([clean, tricky, clean]) is None


def test_reader_turns_lenient_once_records_carry_other_fields(tmp_path: Path) -> None:
    pipeline = IngestPipeline(fast_spec(), tmp_path / "work")
    fast = pipeline._fast
    assert isinstance(fast, FastJsonPath)
    rng = random.Random(4)
    assert fast.parse([strict_clean_event(rng) for _ in range(10)]) is not None
    assert fast._strict
    # a record with a field outside the schema: still taken, by the lenient reader
    assert fast.parse([strict_clean_event(rng), iso_clean_event(rng)]) is not None
    assert not fast._strict
    # from now on NaN/Infinity literals in unread fields are found by the byte scan
    assert fast.parse([strict_clean_event(rng), b"{" + TS + b',"page":"a","x":NaN}']) is None
    assert fast.parse([strict_clean_event(rng), b"{" + TS + b',"page":"Information NaN Inf-"}']) is not None


def ingest_both_ways(
    tmp_path: Path,
    values: list[Any],
    batch: int,
    monkeypatch: pytest.MonkeyPatch,
    spec: SupervisorSpec | None = None,
    max_message_time: int = T0 + HOUR,
    sort_reports: bool = False,
    **tuning: Any,
) -> list[tuple[Any, ...]]:
    """Stats, reports, dead letters and segment digests of the fast path, then the reference path.

    ``sort_reports``: compare reports in record order (with a transformSpec both paths report a
    buffer's bad timestamps first, and they buffer differently).
    """
    # Try the fast path on every batch (no backing off after a refused one).
    monkeypatch.setattr(pipeline_module, "_FAST_MAX_BACKOFF", 0)
    order: Callable[[list[Any]], list[Any]] = sorted if sort_reports else list
    results = []
    for fast in (True, False):
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(FastJsonPath, "supports", staticmethod(lambda *args: False))
            pipeline = IngestPipeline(
                spec or fast_spec(deadLetterTopic="dlq", **tuning),
                tmp_path / f"{fast}-work",
                min_message_time=T0,
                max_message_time=max_message_time,
            )
            assert (pipeline._fast is not None) == fast
            recs = records(values)
            for index in range(0, len(recs), batch):
                pipeline.add(recs[index : index + batch])
            files = pipeline.finish(tmp_path / f"{fast}-out")
            results.append(
                (
                    pipeline.stats.to_json(),
                    order(
                        [(r.offset, r.error_type, r.message, r.details) for r in pipeline.parse_exceptions]
                    ),
                    order([(r.offset, r.kind, r.reason) for r in pipeline.drain_rejected()]),
                    digest(files),
                )
            )
    return results


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("strict", [False, True], ids=["other-fields", "schema-fields-only"])
def test_fast_and_reference_paths_give_identical_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, strict: bool
) -> None:
    rng = random.Random(seed)
    clean = strict_clean_event if strict else iso_clean_event
    values: list[Any] = []
    for _ in range(600):
        if rng.random() < 0.03:
            values.append(rng.choice(TRICKY))
        else:
            values.append(clean(rng))
    fast, reference = ingest_both_ways(
        tmp_path, values, batch=rng.choice([25, 60, 200]), monkeypatch=monkeypatch
    )
    assert fast == reference
    stats = fast[0]
    assert stats["thrownAway"] > 0 and stats["unparseable"] > 0


def test_fast_and_reference_paths_agree_on_every_tricky_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    values: list[Any] = []
    for tricky in TRICKY:
        values += [strict_clean_event(rng), tricky, strict_clean_event(rng)]
    fast, reference = ingest_both_ways(tmp_path, values, batch=3, monkeypatch=monkeypatch)
    assert fast == reference


def test_close_drops_everything_and_spill_files(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(maxRowsInMemory=10), tmp_path / "work")
    pipeline.add(records([event(T0 + i, page=f"p{i}") for i in range(35)]))
    assert pipeline.persist_count == 3
    assert any((tmp_path / "work").glob("persist-*/*.arrow"))
    pipeline.close()
    assert not any((tmp_path / "work").glob("persist-*"))
    assert pipeline.rows_in_memory == 0
    with pytest.raises(IllegalStateTransition):
        pipeline.add(records([event(T0)]))


def test_buffered_records_are_ingested_before_state_is_read(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec(deadLetterTopic="dlq", maxSavedParseExceptions=5), tmp_path / "work")
    pipeline.add(records([event(T0, page="a"), b"bad", event(T0 - DAY, page="b")]))
    assert pipeline.rows_in_memory == 2
    assert pipeline.stats.to_json()["processed"] == 2
    assert [r.offset for r in pipeline.parse_exceptions] == [1]
    assert [r.offset for r in pipeline.drain_rejected()] == [1]
    pipeline.persist()
    assert pipeline.persist_count == 1 and pipeline.rows_in_memory == 0
    files = pipeline.finish(tmp_path / "out")
    assert [f.num_rows for f in files] == [1, 1]

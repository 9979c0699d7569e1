"""avro_stream, protobuf and csv with a transformSpec and a filtered aggregator on the columnar
path: decoded columns straight into the transforms and filters (their inputs as the row path
gives them: avro/protobuf longs, doubles, strings and booleans; csv strings) give the same
stats, reports, dead letters and segments as the row path, and the columnar path is taken."""

from __future__ import annotations

import io
import math
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import fastavro
import pyarrow as pa
import pytest

from middlemanager.ingest import pipeline as pipeline_module
from middlemanager.ingest.fastjson import FastJsonPath, row_path_column
from middlemanager.ingest.pipeline import IngestPipeline
from middlemanager.ingest.transforms import column_of
from supervisor.records import RecordBatch, RecordMetadata
from supervisor.spec import parse_supervisor_spec
from tests.harness.protos import compile_proto
from tests.harness.specs import kafka_spec
from tests.unit.test_ingest import digest

T0 = 1_700_000_000_000
HOUR = 3_600_000

TRANSFORM_SPEC: dict[str, Any] = {
    "transforms": [
        {"type": "expression", "name": "doubled", "expression": "added * 2"},  # long (wraps)
        {"type": "expression", "name": "ratio", "expression": "x / (added + 1)"},  # double, /0
        {"type": "expression", "name": "label", "expression": "concat(page, '-', nvl(maybe, 'none'))"},
    ],
    "filter": {
        "type": "or",
        "fields": [
            {"type": "bound", "dimension": "x", "lower": "-5", "ordering": "numeric"},
            {"type": "selector", "dimension": "page", "value": "b"},
            {"type": "expression", "expression": "ok && doubled > 10"},
        ],
    },
}
DIMENSIONS: list[Any] = [
    "page",
    "label",
    {"type": "long", "name": "doubled"},
    {"type": "double", "name": "ratio"},
    {"type": "long", "name": "added"},
]
METRICS: list[dict[str, Any]] = [
    {"type": "count", "name": "count"},
    {"type": "doubleSum", "name": "delta", "fieldName": "delta"},
    {
        "type": "filtered",
        "filter": {
            "type": "and",
            "fields": [
                {"type": "bound", "dimension": "added", "upper": "100", "ordering": "numeric"},
                {"type": "not", "field": {"type": "selector", "dimension": "maybe", "value": None}},
            ],
        },
        "aggregator": {"type": "longSum", "name": "smallAdded", "fieldName": "added"},
    },
]


def _spec(input_format: dict[str, Any], rollup: bool, transforms: bool = True) -> Any:
    doc = kafka_spec(
        "ds",
        "t",
        "127.0.0.1:9",
        timestamp={"column": "ts", "format": "millis"},
        dimensions=DIMENSIONS,
        metrics=METRICS,
        rollup=rollup,
        tuning={"maxParseExceptions": 1000, "maxSavedParseExceptions": 1000, "deadLetterTopic": "dlq"},
        inputFormat=input_format,
    )
    if transforms:
        doc["spec"]["dataSchema"]["transformSpec"] = TRANSFORM_SPEC
    else:  # only the filtered aggregator reads inputs; the computed dimensions are absent
        doc["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"] = [
            "page",
            {"type": "long", "name": "added"},
        ]
    return parse_supervisor_spec(doc)


def _event(rng: random.Random) -> dict[str, Any]:
    """An event with nulls and edge values (long overflow, NaN, infinities, -0.0, added = -1)."""
    return {
        "ts": None if rng.random() < 0.02 else T0 + rng.randrange(3 * HOUR),
        "page": rng.choice(["a", "b", "c", "", "é\U0001f600"]),
        "added": rng.choice(
            [None, 0, -1, 5, 7, 100, 101, 2**62, -(2**63), 2**63 - 1, rng.randrange(-50, 50)]
        ),
        "x": rng.choice(
            [None, 0.0, -0.0, -5.0, -5.5, 2.5, 1e300, math.inf, -math.inf, math.nan, rng.random()]
        ),
        "delta": rng.choice([None, 0.5, -3.25, 1e10]),
        "ok": rng.choice([None, True, False]),
        "maybe": rng.choice([None, "", "m", "\x00z"]),
    }


def _run(
    spec: Any, values: list[bytes | None], tmp_path: Path, name: str, headers: list[Any] | None
) -> tuple[Any, ...]:
    pipeline = IngestPipeline(spec, tmp_path / name / "work", T0, T0 + 2 * HOUR)
    n = len(values)
    for start in range(0, n, 128):
        part = range(start, min(n, start + 128))
        meta = (
            None
            if headers is None
            else RecordMetadata([None] * len(part), headers[start : part.stop], ["t"] * len(part))
        )
        # (Kafka timestamps 1000 + offset, as tests.unit.test_ingest.records gives them)
        pipeline.add(
            RecordBatch(
                [0] * len(part), list(part), values[start : part.stop], [1000 + i for i in part], meta
            )
        )
    files = pipeline.finish(tmp_path / name / "out")
    return (
        pipeline.stats.to_json(),
        [(r.offset, r.error_type, r.message, r.details) for r in pipeline.parse_exceptions],
        [(r.offset, r.kind, r.reason) for r in pipeline.drain_rejected()],
        digest(files),
    )


def _both_ways(
    spec: Any,
    values: list[bytes | None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    headers: list[Any] | None = None,
) -> tuple[tuple[Any, ...], tuple[Any, ...], list[bool]]:
    """The columnar run, the row-path run, and per decoded batch whether it took the columnar path."""
    staged: list[bool] = []
    original = IngestPipeline._typed

    def spy(self: IngestPipeline, table: pa.Table) -> pa.Table | None:
        out = original(self, table)
        staged.append(out is not None and bool(self._columnar and self._columnar.inputs))
        return out

    with monkeypatch.context() as patch:
        patch.setattr(IngestPipeline, "_typed", spy)
        columnar = _run(spec, values, tmp_path, "columns", headers)
    with monkeypatch.context() as patch:
        patch.setattr(FastJsonPath, "supports", staticmethod(lambda *args: False))
        assert IngestPipeline(spec, tmp_path / "probe")._columnar is None
        rows = _run(spec, values, tmp_path, "rows", headers)
    return columnar, rows, staged


def _assert_agree(columnar: tuple[Any, ...], rows: tuple[Any, ...]) -> None:
    stats, reports, rejected, segments = columnar
    assert stats == rows[0]
    assert reports == rows[1]
    assert rejected == rows[2]
    assert segments == rows[3]
    assert stats["processed"] > 100 and stats["thrownAway"] > 10 and stats["unparseable"] > 0
    assert segments  # (name, sha256) of each segment file


AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Ev",
    "fields": [
        {"name": "ts", "type": ["null", "long"]},
        {"name": "page", "type": "string"},
        {"name": "added", "type": ["null", "long"]},
        {"name": "x", "type": ["null", "double"]},
        {"name": "delta", "type": ["null", "float"]},
        {"name": "ok", "type": ["null", "boolean"]},
        {"name": "maybe", "type": ["null", "string"]},
        {"name": "raw", "type": "bytes"},  # not read: does not keep the batch off the columnar path
    ],
}


@pytest.mark.parametrize(
    ("rollup", "transforms"),
    [(False, True), (True, True), (False, False)],
    ids=["plain", "rollup", "no-transforms"],
)
def test_avro_with_transforms_takes_the_columnar_path_with_the_row_paths_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rollup: bool, transforms: bool
) -> None:
    monkeypatch.setattr(pipeline_module, "_FAST_MAX_BACKOFF", 0)
    rng = random.Random(5)
    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    encoded: list[bytes] = []
    for i in range(900):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, {**_event(rng), "raw": bytes([i % 256])})
        encoded.append(out.getvalue())
    encoded[10] = encoded[10][:-1]  # truncated: unparseable on both paths
    values: list[bytes | None] = [*encoded]
    values[200] = None  # a tombstone
    spec = _spec(
        {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_inline", "schema": AVRO_SCHEMA}},
        rollup,
        transforms,
    )
    columnar, rows, staged = _both_ways(spec, values, tmp_path, monkeypatch)
    assert staged and all(staged)
    _assert_agree(columnar, rows)


def test_kafka_format_with_transforms_reads_headers_and_timestamps_on_the_columnar_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kafka wrapper over avro: transforms and filters reading a header (string) and the
    record's Kafka timestamp (long) as well as the value's fields."""
    monkeypatch.setattr(pipeline_module, "_FAST_MAX_BACKOFF", 0)
    rng = random.Random(11)
    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    values: list[bytes | None] = []
    headers: list[Any] = []
    for _ in range(900):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, {**_event(rng), "raw": b""})
        values.append(out.getvalue())
        env = rng.choice([None, b"prod", b"", b"\x00x"])
        headers.append(None if env is None else [("env", env)])
    doc = kafka_spec(
        "ds",
        "t",
        "127.0.0.1:9",
        timestamp={"column": "ts", "format": "millis"},
        dimensions=["page", "label", {"type": "long", "name": "late"}, "kafka.header.env"],
        metrics=METRICS,
        tuning={"maxParseExceptions": 1000, "maxSavedParseExceptions": 1000},
        inputFormat={
            "type": "kafka",
            "valueFormat": {
                "type": "avro_stream",
                "avroBytesDecoder": {"type": "schema_inline", "schema": AVRO_SCHEMA},
            },
            "headerFormat": {"type": "string"},
        },
    )
    doc["spec"]["dataSchema"]["transformSpec"] = {
        "transforms": [
            {
                "type": "expression",
                "name": "label",
                "expression": "concat(page, nvl(\"kafka.header.env\", '?'))",
            },
            {"type": "expression", "name": "late", "expression": '"kafka.timestamp" - 1000 + added'},
            {"type": "expression", "name": "doubled", "expression": "x * 2"},
        ],
        "filter": {
            "type": "or",
            "fields": [
                {"type": "bound", "dimension": "kafka.timestamp", "upper": "1400", "ordering": "numeric"},
                {"type": "in", "dimension": "kafka.header.env", "values": ["prod", ""]},
                {"type": "expression", "expression": "doubled > 1"},
            ],
        },
    }
    columnar, rows, staged = _both_ways(parse_supervisor_spec(doc), values, tmp_path, monkeypatch, headers)
    assert staged and all(staged)
    _assert_agree(columnar, rows)


EVENT_PROTO = """syntax = "proto3";
package test.ev;
message Ev {
  optional int64 ts = 1;
  string page = 2;
  optional sint64 added = 3;
  optional double x = 4;
  optional float delta = 5;
  optional bool ok = 6;
  optional string maybe = 7;
  uint32 small = 8;
}
"""


@pytest.fixture
def event_pb2(tmp_path: Path) -> tuple[ModuleType, Path]:
    return compile_proto(tmp_path / "proto", "binary_transforms_test", EVENT_PROTO)


def test_protobuf_with_transforms_takes_the_columnar_path_with_the_row_paths_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, event_pb2: tuple[ModuleType, Path]
) -> None:
    monkeypatch.setattr(pipeline_module, "_FAST_MAX_BACKOFF", 0)
    module, descriptor = event_pb2
    rng = random.Random(9)
    encoded: list[bytes] = []
    for i in range(900):
        event = {key: value for key, value in _event(rng).items() if value is not None}
        encoded.append(module.Ev(**event, small=i).SerializeToString())
    encoded[10] += b"\x07"  # a bad tag: unparseable on both paths
    values: list[bytes | None] = [*encoded]
    spec = _spec(
        {"type": "protobuf", "protoBytesDecoder": {"type": "file", "descriptor": str(descriptor)}}, False
    )
    columnar, rows, staged = _both_ways(spec, values, tmp_path, monkeypatch)
    assert staged and all(staged)
    _assert_agree(columnar, rows)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value) or math.isnan(value)
            else ("Infinity" if value > 0 else "-Infinity")
        )
    return str(value).replace("\x00", "")


@pytest.mark.parametrize("kind", ["csv", "tsv"])
def test_csv_with_transforms_reads_strings_as_the_row_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """csv cells are strings on the row path: ``added * 2`` reads the string, even though ``added``
    is a long dimension; a batch whose long column does not convert exactly goes row by row."""
    monkeypatch.setattr(pipeline_module, "_FAST_MAX_BACKOFF", 0)
    rng = random.Random(3)
    columns = ["ts", "page", "added", "x", "delta", "ok", "maybe"]
    separator = "," if kind == "csv" else "\t"
    encoded: list[bytes] = []
    for _ in range(900):
        event = _event(rng)
        encoded.append(separator.join(_csv_cell(event[name]).replace(",", "") for name in columns).encode())
    encoded[10] = separator.join("12").encode()  # wrong column count
    cells = encoded[700].split(separator.encode())
    # " 5" for a long: this batch goes row by row
    encoded[700] = separator.encode().join([*cells[:2], b" 5", *cells[3:]])
    spec = _spec({"type": kind, "columns": columns}, True)
    columnar, rows, staged = _both_ways(spec, [*encoded], tmp_path, monkeypatch)
    assert staged == [index != 700 // 128 for index in range(len(staged))] and len(staged) == 8
    _assert_agree(columnar, rows)


DECODED_COLUMNS: list[pa.Array] = [
    pa.array([None, None, None], pa.int32()),
    pa.array([1, None, -2], pa.int8()),
    pa.array([2**32 - 1, 0, 1], pa.uint32()),
    pa.array([2**63 - 1, 0, None], pa.uint64()),
    pa.array([-(2**63), 2**63 - 1, None], pa.int64()),
    pa.array([0.1, None, -0.0], pa.float32()),
    pa.array([math.nan, math.inf, -0.0], pa.float64()),
    pa.array(["a", None, "\x00é"], pa.large_string()),
    pa.array(["a", "b", "a"]).dictionary_encode(),
    pa.array([True, None, False]),
]


@pytest.mark.parametrize("column", DECODED_COLUMNS, ids=[str(c.type) for c in DECODED_COLUMNS])
def test_decoded_columns_as_inputs_are_the_row_paths_columns(column: pa.Array) -> None:
    """A decoded column as a transform input is ``column_of`` of the row dicts' values."""
    expected = column_of(column.to_pylist())
    found = row_path_column(column, len(column))
    assert expected is not None and found is not None
    assert found.type == expected.type
    # (repr: NaN is NaN, and -0.0 is not 0.0)
    assert [repr(v) for v in found.to_pylist()] == [repr(v) for v in expected.to_pylist()]
    missing = row_path_column(None, 4)
    assert missing is not None and missing.equals(column_of([None] * 4))


@pytest.mark.parametrize(
    "column",
    [
        pa.array([2**63, 0, 1], pa.uint64()),  # beyond a long
        pa.array([b"a", b"", None]),
        pa.array([[1], [2], None]),
        pa.array([1, 2, 3], pa.timestamp("ms")),
    ],
)
def test_decoded_columns_the_row_path_cannot_type_are_refused(column: pa.Array) -> None:
    assert row_path_column(column, len(column)) is None

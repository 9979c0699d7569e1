"""avro_stream and protobuf input formats: records made by confluent-kafka's own serializers
(Confluent's wire format, against the harness schema registry) and by fastavro / protoc-generated
classes, decoded by the task's decoders and ingested by the pipeline; bad records are parse errors."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import fastavro
import pytest
from pydantic import TypeAdapter

from middlemanager.ingest.formats import reader_for
from middlemanager.ingest.formats import registry as registry_module
from middlemanager.ingest.formats.binary import BinaryRowsReader, DecodeError
from middlemanager.ingest.formats.flatten import FlattenError, compile_path
from supervisor.errors import InvalidSpec
from supervisor.records import Record, RecordBatch
from supervisor.spec import AnyInputFormat, SupervisorSpec, parse_supervisor_spec
from tests.harness.protos import avro_serializer, compile_proto, protobuf_serializer
from tests.harness.schema_registry import SchemaRegistryServer, running_schema_registry
from tests.harness.specs import kafka_spec
from tests.unit.test_ingest import ingest, read_rows

EVENT_SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "test.avro",
    "fields": [
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "x", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}},
        {"name": "raw", "type": "bytes"},
        {"name": "maybe", "type": ["null", "string"], "default": None},
        {"name": "either", "type": ["null", "int", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {
            "name": "inner",
            "type": {"type": "record", "name": "Inner", "fields": [{"name": "depth", "type": "int"}]},
        },
    ],
}

METRICS_PROTO = """syntax = "proto3";
package test.pb;
message Metrics {
  string unit = 1;
  string http_method = 2;
  int64 value = 3;
  enum Kind { UNKNOWN = 0; LATENCY = 1; }
  Kind kind = 4;
  repeated string tags = 5;
  map<string, int32> counts = 6;
  bytes raw = 7;
  Inner inner = 8;
  int64 ts = 9;
  double ratio = 10;
  message Inner { double d = 1; }
}
message Other { string o = 1; int64 ts = 2; }
"""


def event(i: int) -> dict[str, Any]:
    return {
        "ts": 1_700_000_000_000 + i,
        "id": f"e{i}",
        "n": i,
        "big": 2**40 + i,
        "x": i / 4,
        "ok": i % 2 == 0,
        "colour": "BLUE" if i % 2 else "RED",
        "raw": bytes([0, i % 256]),
        "maybe": None if i % 3 == 0 else f"m{i}",
        "either": i if i % 2 else f"s{i}",
        "tags": [f"t{i}", "all"],
        "attrs": {"k": i},
        "inner": {"depth": i * 10},
    }


def decoded(i: int) -> dict[str, Any]:
    """What the decoder makes of event(i): bytes as base64, logical types as their base type."""
    import base64

    row = event(i)
    row["raw"] = base64.b64encode(row["raw"]).decode()
    return row


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with running_schema_registry() as server:
        yield server


@pytest.fixture
def metrics_pb2(tmp_path: Path) -> tuple[ModuleType, Path]:
    return compile_proto(tmp_path / "proto", "metrics_test", METRICS_PROTO)


def row_decoder(input_format: dict[str, Any]) -> Callable[[bytes], dict[str, Any]]:
    """The task's decoder of one record value (with the flattenSpec), as the pipeline gets it."""
    reader = reader_for(TypeAdapter(AnyInputFormat).validate_python(input_format))
    assert isinstance(reader, BinaryRowsReader)
    return reader.decode_value


def avro_format(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_registry", "url": url}, **extra}


def schemaless(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


# ------------------------------------------------------------------------------------- avro


def test_avro_from_the_confluent_serializer_decodes_to_what_was_produced(
    registry: SchemaRegistryServer,
) -> None:
    serialize = avro_serializer(registry.url, json.dumps(EVENT_SCHEMA), "events")
    values = [serialize(event(i)) for i in range(50)]
    assert all(value[0] == 0 for value in values)  # Confluent's magic byte
    decode = row_decoder(avro_format(registry.url))
    assert decode is not None
    assert [decode(value) for value in values] == [decoded(i) for i in range(50)]
    schema_id = int.from_bytes(values[0][1:5], "big")
    assert registry.id_requests(schema_id) == 1  # cached by id


def test_avro_inline_schemas_binary_as_string_and_unions_by_type() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "b", "type": "bytes"},
            {
                "name": "u",
                "type": [
                    "null",
                    "int",
                    "string",
                    {"type": "record", "name": "S", "fields": [{"name": "v", "type": "int"}]},
                ],
            },
        ],
    }
    plain = {
        "type": "avro_stream",
        "avroBytesDecoder": {"type": "schema_inline", "schema": schema},
        "binaryAsString": True,
        "extractUnionsByType": True,
        "flattenSpec": {
            "fields": [{"type": "path", "name": "uv", "expr": "$.u.S.v"}, {"type": "root", "name": "b"}]
        },
    }
    decode = row_decoder(plain)
    assert decode is not None
    assert decode(schemaless(schema, {"b": "hé".encode(), "u": 3})) == {
        "b": "hé",
        "u": {"int": 3},
        "uv": None,
    }
    assert decode(schemaless(schema, {"b": b"x", "u": {"v": 7}})) == {"b": "x", "u": {"S": {"v": 7}}, "uv": 7}
    multiple = {
        "type": "avro_stream",
        "avroBytesDecoder": {"type": "multiple_schemas_inline", "schemas": {"7": schema}},
    }
    decode = row_decoder(multiple)
    assert decode is not None
    body = schemaless(schema, {"b": b"\x01", "u": "s"})
    assert decode(b"\x01" + (7).to_bytes(4, "big") + body) == {"b": "AQ==", "u": "s"}
    with pytest.raises(DecodeError, match="schema id 8 is not one of the inline schemas"):
        decode(b"\x01" + (8).to_bytes(4, "big") + body)
    with pytest.raises(DecodeError, match="expected 1"):
        decode(b"\x00" + (7).to_bytes(4, "big") + body)


def test_bad_avro_records_are_decode_errors_and_a_down_registry_costs_one_request(
    registry: SchemaRegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    serialize = avro_serializer(registry.url, json.dumps(EVENT_SCHEMA), "events")
    good = serialize(event(1))
    decode = row_decoder(avro_format(registry.url))
    assert decode is not None
    with pytest.raises(DecodeError, match="cannot be decoded"):
        decode(good[:-9])  # truncated
    with pytest.raises(DecodeError, match="bytes after the record"):
        decode(good + b"\x00")
    with pytest.raises(DecodeError, match="shorter than"):
        decode(b"\x00\x00")
    with pytest.raises(DecodeError, match=r"schema id 999: schema registry .* not found"):
        decode(b"\x00" + (999).to_bytes(4, "big") + good[5:])
    # the registry goes down before the task has seen schema id 2
    other = avro_serializer(registry.url, json.dumps({**EVENT_SCHEMA, "name": "Event2"}), "events2")(event(2))
    registry.set_down(True)
    before = len(registry.requests)
    for _ in range(20):
        with pytest.raises(DecodeError, match=r"registry unavailable: .*HTTP 503"):
            decode(other)
    assert len(registry.requests) - before == 1  # the failure is remembered for FAILURE_TTL_S
    assert decode(good) == decoded(1)  # a schema already cached still decodes
    registry.set_down(False)
    monkeypatch.setattr(registry_module, "FAILURE_TTL_S", 0.0)
    assert decode(other) == decoded(2)


def test_registry_basic_auth_and_headers_are_sent() -> None:
    with running_schema_registry(user_info="druid:s3cret") as registry:
        value = avro_serializer(registry.url, json.dumps(EVENT_SCHEMA), "events", "druid:s3cret")(event(3))
        no_auth = row_decoder(avro_format(registry.url))
        assert no_auth is not None
        with pytest.raises(DecodeError, match="HTTP 401"):
            no_auth(value)
        decode = row_decoder(
            avro_format(
                registry.url,
                avroBytesDecoder={
                    "type": "schema_registry",
                    "urls": ["http://127.0.0.1:1", registry.url],  # the first one is down: the next answers
                    "config": {
                        "basic.auth.credentials.source": "USER_INFO",
                        "basic.auth.user.info": "druid:s3cret",
                    },
                    "headers": {"X-Trace": "t-1"},
                },
            )
        )
        assert decode is not None
        assert decode(value) == decoded(3)
        assert registry.requests[-1][2]["X-Trace"] == "t-1"


# ----------------------------------------------------------------------------------- protobuf


def metrics(module: ModuleType, i: int) -> Any:
    return module.Metrics(
        unit="ms",
        http_method="GET" if i % 2 else "POST",
        value=2**40 + i,
        kind=i % 2,
        tags=[f"t{i}"],
        counts={"a": i},
        raw=b"\x01\x02",
        inner=module.Metrics.Inner(d=i / 2),
        ts=1_700_000_000_000 + i,
        ratio=0.0,
    )


def metrics_row(i: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "unit": "ms",
        "http_method": "GET" if i % 2 else "POST",
        "value": 2**40 + i,
        "tags": [f"t{i}"],
        "counts": {"a": i},
        "raw": "AQI=",
        "inner": {"d": i / 2},
        "ts": 1_700_000_000_000 + i,
    }
    if i % 2:
        row["kind"] = "LATENCY"  # proto3: a field at its default value is not set (as in proto JSON)
    if i == 0:
        row["inner"] = {}
    return row


def test_protobuf_file_descriptor_and_registry_decode_to_what_was_produced(
    registry: SchemaRegistryServer, metrics_pb2: tuple[ModuleType, Path]
) -> None:
    module, descriptor = metrics_pb2
    messages = [metrics(module, i) for i in range(20)]
    by_file = row_decoder(
        {
            "type": "protobuf",
            "protoBytesDecoder": {
                "type": "file",
                "descriptor": f"file://{descriptor}",
                "protoMessageType": "Metrics",
            },
        }
    )
    assert by_file is not None
    assert [by_file(m.SerializeToString()) for m in messages] == [metrics_row(i) for i in range(20)]
    first = row_decoder(
        {"type": "protobuf", "protoBytesDecoder": {"type": "file", "descriptor": str(descriptor)}}
    )
    assert first is not None and first(messages[3].SerializeToString()) == metrics_row(3)

    serialize = protobuf_serializer(registry.url, module.Metrics, "metrics")
    values = [serialize(m) for m in messages]
    other = protobuf_serializer(registry.url, module.Other, "other")(module.Other(o="z", ts=5))
    assert other[5:7] == b"\x02\x02"  # message indexes [1]: the second message of the file
    by_registry = row_decoder(
        {"type": "protobuf", "protoBytesDecoder": {"type": "schema_registry", "url": registry.url}}
    )
    assert by_registry is not None
    assert [by_registry(v) for v in values] == [metrics_row(i) for i in range(20)]
    assert by_registry(other) == {"o": "z", "ts": 5}
    with pytest.raises(DecodeError, match="cannot be decoded"):
        by_registry(values[1][:-3])
    with pytest.raises(DecodeError, match="schema id 77"):
        by_registry(b"\x00" + (77).to_bytes(4, "big") + b"\x00" + b"\x0a\x01x")


def test_protobuf_descriptor_problems_fail_the_task_at_start_naming_the_field(
    tmp_path: Path, metrics_pb2: tuple[ModuleType, Path]
) -> None:
    _, descriptor = metrics_pb2
    for decoder, problem in [
        ({"type": "file", "descriptor": str(tmp_path / "missing.desc")}, "cannot read"),
        (
            {"type": "file", "descriptor": str(descriptor), "protoMessageType": "Nope"},
            "'Nope' is not in the descriptor",
        ),
    ]:
        with pytest.raises(ValueError, match=problem):
            row_decoder({"type": "protobuf", "protoBytesDecoder": decoder})
    (tmp_path / "junk.desc").write_bytes(b"\xff\xff\xff")
    with pytest.raises(ValueError, match="not a descriptor set"):
        row_decoder(
            {
                "type": "protobuf",
                "protoBytesDecoder": {"type": "file", "descriptor": str(tmp_path / "junk.desc")},
            }
        )


# ------------------------------------------------------------------------------ pipeline, spec


def avro_spec(url: str, dimensions: list[Any], **tuning: Any) -> SupervisorSpec:
    spec = kafka_spec(
        "ds",
        "t",
        "127.0.0.1:9",
        dimensions=dimensions,
        metrics=[{"type": "count", "name": "count"}, {"type": "longSum", "name": "big", "fieldName": "big"}],
        tuning=tuning,
        inputFormat={
            "type": "avro_stream",
            "avroBytesDecoder": {"type": "schema_registry", "url": url},
            "flattenSpec": {"fields": [{"type": "path", "name": "depth", "expr": "$.inner.depth"}]},
        },
    )
    return parse_supervisor_spec(spec)


def test_pipeline_ingests_avro_rows_typed_and_counts_bad_records(
    registry: SchemaRegistryServer, tmp_path: Path
) -> None:
    serialize = avro_serializer(registry.url, json.dumps(EVENT_SCHEMA), "events")
    good = [serialize(event(i)) for i in range(30)]
    bad = [good[0][:-4], b"\x00" + (555).to_bytes(4, "big") + good[0][5:], b"\x07garbage"]
    dims = [
        "id",
        {"type": "long", "name": "n"},
        {"type": "double", "name": "x"},
        "colour",
        "tags",
        "maybe",
        {"type": "long", "name": "depth"},
    ]
    spec = avro_spec(registry.url, dims, maxParseExceptions=10, maxSavedParseExceptions=10)
    pipeline, files = ingest(spec, tmp_path, good[:15] + bad + good[15:])
    assert pipeline.stats.processed == 30 and pipeline.stats.unparseable == 3
    messages = [e.message for e in pipeline.parse_exceptions]
    assert (
        len(messages) == 3
        and "cannot be decoded" in messages[0]
        and "555" in messages[1]
        and "expected 0" in messages[2]
    )
    rows = sorted(read_rows(files), key=lambda r: r["n"])
    assert [r["id"] for r in rows] == [f"e{i}" for i in range(30)]
    for i, row in enumerate(rows):
        assert row["__time"] == 1_700_000_000_000 + i
        assert (row["n"], row["x"], row["colour"], row["depth"], row["big"]) == (
            i,
            i / 4,
            "BLUE" if i % 2 else "RED",
            i * 10,
            2**40 + i,
        )
        assert row["tags"] == sorted([f"t{i}", "all"]) and row["maybe"] == (None if i % 3 == 0 else f"m{i}")
        assert isinstance(row["n"], int) and isinstance(row["x"], float)


@pytest.mark.parametrize(
    ("input_format", "field", "problem"),
    [
        ({"type": "thrift", "thriftClass": "x.Y"}, "inputFormat.type", "needs Java classes"),
        ({"type": "avro_stream"}, "inputFormat.avroBytesDecoder", "is required"),
        (
            {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_registry"}},
            "avroBytesDecoder",
            "'url' or 'urls'",
        ),
        (
            {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_inline", "schema": "{not json"}},
            "schema",
            "invalid JSON",
        ),
        (
            {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_registry", "url": "ftp://x"}},
            "url",
            "http://",
        ),
        (
            {
                "type": "avro_stream",
                "avroBytesDecoder": {
                    "type": "schema_registry",
                    "url": "http://r",
                    "config": {"basic.auth.user.info": "nocolon"},
                },
            },
            "config",
            "user:password",
        ),
        (
            {
                "type": "avro_stream",
                "avroBytesDecoder": {"type": "schema_inline", "schema": {}},
                "flattenSpec": {"fields": [{"type": "jq", "name": "a", "expr": ".a"}]},
            },
            "flattenSpec.fields[0].type",
            "unavailable",
        ),
        ({"type": "protobuf"}, "inputFormat.protoBytesDecoder", "is required"),
    ],
)
def test_bad_binary_format_specs_are_a_400_naming_the_field(
    input_format: dict[str, Any], field: str, problem: str
) -> None:
    spec = kafka_spec("ds", "t", "127.0.0.1:9", inputFormat=input_format)
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(spec)
    assert field in info.value.field and problem in info.value.problem, info.value


def test_flatten_paths() -> None:
    assert compile_path("$.a.b[0]['c d'][-1]") == ("a", "b", 0, "c d", -1)
    with pytest.raises(FlattenError, match="only child names"):
        compile_path("$..a")
    with pytest.raises(FlattenError, match="must start with"):
        compile_path("a.b")


def test_an_avro_decoder_we_do_not_have_is_a_400_naming_its_type() -> None:
    spec = kafka_spec(
        "ds",
        "t",
        "127.0.0.1:9",
        inputFormat={"type": "avro_stream", "avroBytesDecoder": {"type": "schema_repo"}},
    )
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(spec)
    assert info.value.field == "spec.ioConfig.inputFormat.avroBytesDecoder.type"
    assert "type 'schema_repo' is not supported" in info.value.problem


def test_avro_as_the_value_format_of_the_kafka_format() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    fmt = TypeAdapter(AnyInputFormat).validate_python(
        {
            "type": "kafka",
            "valueFormat": {
                "type": "avro_stream",
                "avroBytesDecoder": {"type": "schema_inline", "schema": schema},
            },
        }
    )
    reader = reader_for(fmt)
    assert reader is not None
    decoded = reader.decode(
        RecordBatch.of([Record(0, 0, schemaless(schema, {"a": "x"}), 5), Record(0, 1, b"\x09", 6)])
    )
    assert decoded.row_dicts() == [{"a": "x", "kafka.timestamp": 5}]
    assert [index for index, _ in decoded.errors] == [1]

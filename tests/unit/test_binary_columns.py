"""The column decoders of avro_stream and protobuf (flat schemas) against their row decoders:
the same records give the same rows, the same errors, and the same segments through the pipeline;
bad records (truncated, trailing bytes, unknown schema id, tombstones) are errors on both paths."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import fastavro
import pyarrow as pa
import pytest
from pydantic import TypeAdapter

from middlemanager.ingest.formats import DecodedBatch, reader_for
from middlemanager.ingest.formats.binary import BinaryRowsReader
from middlemanager.ingest.pipeline import IngestPipeline
from supervisor.records import RecordBatch, RecordMetadata
from supervisor.spec import AnyInputFormat, parse_supervisor_spec
from tests.harness.protos import avro_serializer, compile_proto, protobuf_serializer
from tests.harness.schema_registry import running_schema_registry
from tests.harness.specs import kafka_spec
from tests.unit.test_ingest import ingest, read_rows

FLAT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Flat",
    "namespace": "test.flat",
    "fields": [
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "s", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "x", "type": "double"},
        {"name": "f", "type": "float"},
        {"name": "ok", "type": "boolean"},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "raw", "type": "bytes"},
        {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 3}},
        {"name": "maybe", "type": ["null", "string"], "default": None},
        {"name": "count", "type": ["long", "null"]},
        {"name": "nothing", "type": "null"},
        {"name": "colour2", "type": ["null", "Colour"], "default": None},
    ],
}


def flat_event(i: int) -> dict[str, Any]:
    rng = random.Random(i)
    return {
        "ts": 1_700_000_000_000 + i,
        # (a string that looks like the pipeline's encoding of a multi-value must stay a string)
        "s": '\x00m["x"]'
        if i % 7 == 0
        else "".join(rng.choice("aé€\x00z") for _ in range(rng.randrange(0, 90))),
        "n": rng.randrange(-(2**31), 2**31),
        "big": rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randrange(-(2**40), 2**40)]),
        "x": rng.choice([0.0, -0.0, 1.5, -1e300, math.inf, rng.random()]),
        "f": rng.choice([0.0, 0.25, -3.5]),
        "ok": i % 3 == 0,
        "colour": ["RED", "GREEN", "BLUE"][i % 3],
        "raw": bytes(rng.randrange(256) for _ in range(rng.randrange(0, 5))),
        "id": bytes([i % 256, 0, 255]),
        "maybe": None if i % 4 == 0 else f"m{i}",
        "count": None if i % 5 == 0 else i * 1000,
        "nothing": None,
        "colour2": None if i % 2 else "BLUE",
    }


def avro_bytes(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def reader(input_format: dict[str, Any]) -> BinaryRowsReader:
    found = reader_for(TypeAdapter(AnyInputFormat).validate_python(input_format))
    assert isinstance(found, BinaryRowsReader)
    return found


def assert_paths_agree(decoder: BinaryRowsReader, values: list[bytes | None]) -> DecodedBatch:
    """The column path gives a table, and exactly the rows and errors of the row path."""
    columns = decoder.decode_values(values)
    rows = decoder.decode_rows(values)
    assert columns.table is not None, "the batch took the row path"
    assert columns.errors == rows.errors
    assert columns.sources == rows.sources
    # (a null field: left out of the table's rows, None in the row decoder's; the same to the pipeline)
    assert columns.row_dicts() == [
        {k: v for k, v in row.items() if v is not None} for row in rows.row_dicts()
    ]
    return columns


def with_bad_records(values: list[bytes], header: int = 0) -> list[bytes | None]:
    out: list[bytes | None] = list(values)
    out[3] = values[3][:-2]  # truncated
    out[7] = values[7] + b"\x00\x01"  # bytes after the record
    out[11] = None  # tombstone
    out[12] = b""
    out[15] = values[15][: header + 1]  # cut right after the header
    return out


@pytest.mark.parametrize("binary_as_string", [False, True])
def test_flat_avro_columns_agree_with_the_row_decoder(binary_as_string: bool) -> None:
    values = [avro_bytes(FLAT_SCHEMA, flat_event(i)) for i in range(300)]
    decoder = reader(
        {
            "type": "avro_stream",
            "avroBytesDecoder": {"type": "schema_inline", "schema": FLAT_SCHEMA},
            "binaryAsString": binary_as_string,
        }
    )
    decoded = assert_paths_agree(decoder, list(values))
    assert decoded.num_rows == 300 and not decoded.errors
    rows = decoded.row_dicts()
    assert (
        rows[0]["colour"] == "RED"
        and rows[0]["colour2"] == "BLUE"
        and "colour2" not in rows[1]
        and "maybe" not in rows[0]
    )
    bad = assert_paths_agree(decoder, with_bad_records(values))
    assert [index for index, _ in bad.errors] == [3, 7, 11, 12, 15]
    assert "cannot be decoded" in bad.errors[0][1] and "bytes after the record" in bad.errors[1][1]
    assert "tombstone" in bad.errors[2][1]


def test_avro_schemas_that_are_not_flat_take_the_row_path() -> None:
    for field_type, sample in [
        ({"type": "array", "items": "string"}, ["x"]),
        ({"type": "map", "values": "long"}, {"k": 1}),
        (["null", "int", "string"], 3),
        ({"type": "record", "name": "Inner", "fields": [{"name": "d", "type": "int"}]}, {"d": 1}),
    ]:
        schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": field_type}]}
        decoder = reader(
            {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_inline", "schema": schema}}
        )
        assert decoder.decode_columns is None
        decoded = decoder.decode_values([avro_bytes(schema, {"a": sample})])
        assert decoded.table is None and decoded.rows == [{"a": sample}]
    # unions by type become maps: the row path
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": ["null", "string"]}]}
    decoder = reader(
        {
            "type": "avro_stream",
            "avroBytesDecoder": {"type": "schema_inline", "schema": schema},
            "extractUnionsByType": True,
        }
    )
    assert decoder.decode_values([avro_bytes(schema, {"a": "x"})]).rows == [{"a": {"string": "x"}}]
    # a flattenSpec: the row path
    decoder = reader(
        {
            "type": "avro_stream",
            "avroBytesDecoder": {"type": "schema_inline", "schema": FLAT_SCHEMA},
            "flattenSpec": {"fields": [{"type": "root", "name": "s"}]},
        }
    )
    assert decoder.decode_columns is None


def test_avro_columns_by_schema_id_inline_and_from_the_registry() -> None:
    other = {
        "type": "record",
        "name": "Other",
        "fields": [
            {"name": "ts", "type": "long"},
            {"name": "s", "type": "long"},
            {"name": "o", "type": "string"},
        ],
    }
    multiple = reader(
        {
            "type": "avro_stream",
            "avroBytesDecoder": {
                "type": "multiple_schemas_inline",
                "schemas": {"7": FLAT_SCHEMA, "9": other},
            },
        }
    )
    values: list[bytes | None] = []
    for i in range(60):
        if i % 3 == 0:
            values.append(
                b"\x01" + (9).to_bytes(4, "big") + avro_bytes(other, {"ts": i, "s": i, "o": f"o{i}"})
            )
        else:
            values.append(b"\x01" + (7).to_bytes(4, "big") + avro_bytes(FLAT_SCHEMA, flat_event(i)))
    values[4] = b"\x01" + (8).to_bytes(4, "big") + avro_bytes(other, {"ts": 1, "s": 1, "o": "x"})
    values[5] = b"\x00" + (7).to_bytes(4, "big") + avro_bytes(FLAT_SCHEMA, flat_event(5))
    values[8] = b"\x01\x00"
    # "s" is a string in one schema, a long in the other: the row path takes such a batch
    assert multiple.decode_values(values).table is None
    other["fields"][1] = {"name": "s", "type": "string"}
    multiple = reader(
        {
            "type": "avro_stream",
            "avroBytesDecoder": {
                "type": "multiple_schemas_inline",
                "schemas": {"7": FLAT_SCHEMA, "9": other},
            },
        }
    )
    values = [
        b"\x01" + (9).to_bytes(4, "big") + avro_bytes(other, {"ts": i, "s": "x", "o": "y"})
        if i % 3 == 0
        else v
        for i, v in enumerate(values)
    ]
    decoded = assert_paths_agree(multiple, values)
    assert [index for index, _ in decoded.errors] == [4, 5, 8]
    assert "schema id 8" in decoded.errors[0][1] and "expected 1" in decoded.errors[1][1]

    with running_schema_registry() as registry:
        serialize = avro_serializer(registry.url, json.dumps(FLAT_SCHEMA), "flat")
        good = [serialize(flat_event(i)) for i in range(40)]
        by_registry = reader(
            {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_registry", "url": registry.url}}
        )
        mixed = with_bad_records(good, header=5)
        mixed[20] = b"\x00" + (555).to_bytes(4, "big") + good[20][5:]
        decoded = assert_paths_agree(by_registry, mixed)
        assert [index for index, _ in decoded.errors] == [3, 7, 11, 12, 15, 20]
        assert "555" in decoded.errors[-1][1]
        assert registry.id_requests(555) == 1  # the failed lookup is remembered


FLAT_PROTO = """syntax = "proto3";
package test.flat;
message Flat {
  string s = 1;
  int32 i32 = 2;
  int64 i64 = 3;
  uint32 u32 = 4;
  uint64 u64 = 5;
  sint32 s32 = 6;
  sint64 s64 = 7;
  bool b = 8;
  enum Kind { NONE = 0; ONE = 1; TWO = 2; }
  Kind kind = 9;
  fixed32 f32 = 10;
  fixed64 f64 = 11;
  sfixed32 sf32 = 12;
  sfixed64 sf64 = 13;
  float fl = 14;
  double db = 15;
  bytes raw = 16;
  optional int64 opt = 17;
  optional string opt_s = 18;
  int64 ts = 300;
}
message Nested { string a = 1; repeated int64 r = 2; }
"""


@pytest.fixture
def flat_pb2(tmp_path: Path) -> tuple[ModuleType, Path]:
    return compile_proto(tmp_path / "proto", "flat_columns_test", FLAT_PROTO)


def flat_message(module: ModuleType, i: int) -> Any:
    rng = random.Random(i)
    fields: dict[str, Any] = {
        "s": "".join(rng.choice("aé€z") for _ in range(rng.randrange(0, 40))),
        "i32": rng.choice([0, -1, 2**31 - 1, -(2**31), 5]),
        "i64": rng.choice([0, -1, 2**63 - 1, -(2**63), 77]),
        "u32": rng.choice([0, 2**32 - 1, 9]),
        "u64": rng.choice([0, 2**63 - 1, 9]),
        "s32": rng.choice([0, -(2**31), 2**31 - 1, -3]),
        "s64": rng.choice([0, -(2**63), 2**63 - 1, -3]),
        "b": i % 2 == 0,
        "kind": i % 3,
        "f32": rng.choice([0, 2**32 - 1]),
        "f64": rng.choice([0, 2**63 - 1]),
        "sf32": rng.choice([0, -5]),
        "sf64": rng.choice([0, -(2**63)]),
        "fl": rng.choice([0.0, -0.0, 0.5]),
        "db": rng.choice([0.0, -0.0, 2.5, math.inf]),
        "raw": bytes(rng.randrange(256) for _ in range(rng.randrange(0, 4))),
        "ts": 1_700_000_000_000 + i,
    }
    if i % 4 == 0:
        fields["opt"] = 0  # set at its default: present (explicit presence)
    elif i % 4 == 1:
        fields["opt"] = i
    if i % 3 == 0:
        fields["opt_s"] = ""
    return module.Flat(**fields)


def test_flat_protobuf_columns_agree_with_the_row_decoder(flat_pb2: tuple[ModuleType, Path]) -> None:
    module, descriptor = flat_pb2
    decoder = reader(
        {"type": "protobuf", "protoBytesDecoder": {"type": "file", "descriptor": str(descriptor)}}
    )
    values = [flat_message(module, i).SerializeToString() for i in range(300)]
    decoded = assert_paths_agree(decoder, list(values))
    rows = decoded.row_dicts()
    assert rows[0]["opt"] == 0 and "opt" not in rows[2] and rows[0]["opt_s"] == "" and "kind" not in rows[0]
    bad = assert_paths_agree(decoder, with_bad_records(values))
    assert [index for index, _ in bad.errors] == [3, 7, 11, 12, 15]
    # fields out of order, unknown fields, a default written out, packed in one batch
    unknown = b"\xa8\x1f\x05" + b"\xb2\x1f\x02hi"  # fields 501 (varint) and 502 (bytes): unknown
    shuffled = [
        module.Flat(ts=5).SerializeToString() + module.Flat(s="late").SerializeToString(),
        unknown + module.Flat(s="x", i64=4).SerializeToString(),
        b"\x10\x00" + module.Flat(s="zero written").SerializeToString(),  # i32 = 0 on the wire
        b"\x88\x01\x00",  # opt = 0 on the wire: present
    ]
    assert_paths_agree(decoder, shuffled)
    # a field twice (the last wins), a wrong wire type, an open enum's number, invalid UTF-8:
    # the row decoder is the reference, and takes the batch
    for odd in [
        module.Flat(s="a").SerializeToString() + module.Flat(s="b").SerializeToString(),
        b"\x08\x01",  # field 1 (a string) as a varint
        b"\x48\x07",  # kind = 7: no name
        b"\x0a\x02\xff\xfe",  # s: not UTF-8
    ]:
        both = [values[0], odd]
        assert decoder.decode_values(both).table is None
        assert decoder.decode_values(both) == decoder.decode_rows(both)


def test_protobuf_columns_from_the_registry_and_nested_types_by_rows(
    flat_pb2: tuple[ModuleType, Path],
) -> None:
    module, _ = flat_pb2
    with running_schema_registry() as registry:
        serialize = protobuf_serializer(registry.url, module.Flat, "flat")
        nested = protobuf_serializer(registry.url, module.Nested, "nested")
        good = [serialize(flat_message(module, i)) for i in range(40)]
        decoder = reader(
            {"type": "protobuf", "protoBytesDecoder": {"type": "schema_registry", "url": registry.url}}
        )
        mixed = with_bad_records(good, header=6)
        mixed[20] = b"\x00" + (555).to_bytes(4, "big") + good[20][5:]
        mixed[21] = b"\x01" + good[21][1:]
        decoded = assert_paths_agree(decoder, mixed)
        assert [index for index, _ in decoded.errors] == [3, 7, 11, 12, 15, 20, 21]
        assert "555" in decoded.errors[5][1] and "magic byte" in decoded.errors[6][1]
        # the second message of the file (indexes [1]) has a repeated field: the row path
        with_nested = [*good[:3], nested(module.Nested(a="n", r=[1, 2]))]
        assert decoder.decode_values(with_nested).table is None
        assert decoder.decode_values(with_nested).rows == decoder.decode_rows(with_nested).rows


def test_the_pipeline_writes_the_same_segments_from_columns_and_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values: list[bytes | None] = list(
        with_bad_records([avro_bytes(FLAT_SCHEMA, flat_event(i)) for i in range(500)])
    )
    spec = parse_supervisor_spec(
        kafka_spec(
            "ds",
            "t",
            "127.0.0.1:9",
            timestamp={"column": "ts", "format": "millis"},
            dimensions=[
                "s",
                {"type": "long", "name": "n"},
                "colour",
                "maybe",
            ],
            metrics=[
                {"type": "count", "name": "count"},
                {"type": "longSum", "name": "big", "fieldName": "big"},
                {"type": "doubleSum", "name": "f", "fieldName": "f"},
                {"type": "longSum", "name": "count_sum", "fieldName": "count"},
            ],
            tuning={"maxParseExceptions": 100, "maxSavedParseExceptions": 100},
            inputFormat={
                "type": "avro_stream",
                "avroBytesDecoder": {"type": "schema_inline", "schema": FLAT_SCHEMA},
            },
        )
    )
    calls: list[bool] = []
    original = IngestPipeline._typed

    def spy(self: IngestPipeline, table: pa.Table) -> pa.Table | None:
        out = original(self, table)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(IngestPipeline, "_typed", spy)
    by_columns, files = ingest(spec, tmp_path, values, batch=128, name="columns")
    assert calls and all(calls)  # every batch took the pipeline's columnar path
    monkeypatch.setattr(BinaryRowsReader, "decode_values", BinaryRowsReader.decode_rows)
    by_rows, row_files = ingest(spec, tmp_path, values, batch=128, name="rows")
    assert by_columns.stats == by_rows.stats
    assert by_columns.stats.unparseable == 5 and by_columns.stats.processed == 495
    assert [e.message for e in by_columns.parse_exceptions] == [e.message for e in by_rows.parse_exceptions]
    assert read_rows(files) == read_rows(row_files)


def test_kafka_format_over_flat_avro_keeps_a_nul_header_a_string(tmp_path: Path) -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "ts", "type": "long"}, {"name": "page", "type": "string"}],
    }
    spec = parse_supervisor_spec(
        kafka_spec(
            "ds",
            "t",
            "127.0.0.1:9",
            timestamp={"column": "ts", "format": "millis"},
            dimensions=["page", "kafka.header.env"],
            inputFormat={
                "type": "kafka",
                "valueFormat": {
                    "type": "avro_stream",
                    "avroBytesDecoder": {"type": "schema_inline", "schema": schema},
                },
                "headerFormat": {"type": "string"},
            },
        )
    )
    values: list[bytes | None] = [
        avro_bytes(schema, {"ts": 1_700_000_000_000 + i, "page": f"p{i}"}) for i in range(3)
    ]
    headers: list[Any] = [[("env", b'\x00m["x"]')], [("env", b"prod")], None]
    meta = RecordMetadata([None] * 3, headers, ["t"] * 3)
    pipeline = IngestPipeline(spec, tmp_path / "work")
    pipeline.add(RecordBatch([0] * 3, [0, 1, 2], values, [1, 2, 3], meta))
    rows = sorted(read_rows(pipeline.finish(tmp_path / "out")), key=lambda r: r["__time"])
    assert [(r["page"], r["kafka.header.env"]) for r in rows] == [
        ("p0", '\x00m["x"]'),
        ("p1", "prod"),
        ("p2", None),
    ]

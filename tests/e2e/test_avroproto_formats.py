"""avro_stream and protobuf topics end to end on the real broker, records produced by
confluent-kafka's own AvroSerializer / ProtobufSerializer against a schema registry (the harness
one serving Confluent's API: see tests/harness/schema_registry.py for why not a real server) and
by protoc-generated classes (the ``file`` decoder); a supervisor spec in Druid's form each; the
published rows equal what was produced (types and values); bad records (truncated data, an
unknown schema id) counted, sampled in the reports and dead-lettered, never a crash."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlord.client import wait_for
from tests.e2e.test_bad_input import _task_reports
from tests.e2e.test_input_formats import DIMENSIONS, N, _check_counts, _expected
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster
from tests.harness.protos import avro_serializer, compile_proto, protobuf_serializer
from tests.harness.schema_registry import SchemaRegistryServer, running_schema_registry
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = pytest.mark.e2e

AVRO_SCHEMA = {
    "type": "record",
    "name": "Edit",
    "namespace": "e2e",
    "fields": [
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "id", "type": "string"},
        {"name": "page", "type": "string"},
        {"name": "added", "type": "long"},
        {"name": "ratio", "type": "double"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {
            "name": "meta",
            "type": {"type": "record", "name": "Meta", "fields": [{"name": "lang", "type": "string"}]},
        },
    ],
}

EDIT_PROTO = """syntax = "proto3";
package e2e;
message Edit {
  int64 ts = 1;
  string id = 2;
  string page = 3;
  int64 added = 4;
  double ratio = 5;
  repeated string tags = 6;
  Meta meta = 7;
  message Meta { string lang = 1; }
}
"""


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with running_schema_registry(user_info="druid:registry-secret") as server:
        yield server


def _record(i: int) -> dict[str, Any]:
    e = _expected(i)
    return {
        "ts": e["__time"],
        "id": e["id"],
        "page": e["page"],
        "added": e["added"],
        "ratio": e["ratio"],
        "tags": e["tags"],
        "meta": {"lang": f"l{i % 3}"},
    }


def _spec(datasource: str, topic: str, bootstrap: str, dlq: str, fmt: dict[str, Any]) -> dict[str, Any]:
    fmt = {**fmt, "flattenSpec": {"fields": [{"type": "path", "name": "lang", "expr": "$.meta.lang"}]}}
    return kafka_spec(
        datasource,
        topic,
        bootstrap,
        dimensions=[*DIMENSIONS, "lang"],
        timestamp={"column": "ts", "format": "millis"},
        inputFormat=fmt,
        taskDuration="PT5S",
        tuning={"maxSavedParseExceptions": 10, "maxParseExceptions": 10, "deadLetterTopic": dlq},
    )


def _topics(bootstrap: str, kind: str) -> tuple[str, str, str]:
    topic = f"{kind}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 2)
    create_topic(bootstrap, f"{topic}-dlq", 1)
    return topic, f"{topic}-dlq", f"{kind.replace('-', '_')}_{uuid.uuid4().hex[:8]}"


def _run(cluster: Cluster, spec: dict[str, Any], datasource: str) -> list[dict[str, Any]]:
    """Runs the supervisor until tasks that read every record have succeeded, then suspends it
    (suspending while a task that has just published is exiting races with its status)."""
    sup = cluster.api.submit(spec)
    cluster.api.wait_published(datasource, N, 180)

    def read_all() -> bool | None:
        processed = sum(
            p["rowStats"]["buildSegments"].get("processed", 0) for p in _task_reports(cluster.api, datasource)
        )
        return True if processed >= N else None

    wait_for("successful tasks that read every record", read_all, 120)
    cluster.api.suspend(sup)
    cluster.api.wait_quiet(datasource, 60)
    return sorted(read_segments(cluster.api.segments(datasource)), key=lambda r: r["__time"])


def _check(rows: list[dict[str, Any]], proto3: bool = False) -> None:
    """Published rows equal the produced ones, in type and value. In proto3 a scalar at its
    default (0, 0.0) is not on the wire: like proto JSON, its column is null."""
    expected = []
    for i in range(N):
        e = {**_expected(i), "lang": f"l{i % 3}"}
        if proto3:
            e = {k: (None if v == 0 and k != "__time" else v) for k, v in e.items()}
        expected.append(e)
    got = [{k: row[k] for k in expected[0]} for row in rows]
    assert got == expected
    for row in got:
        assert row["added"] is None or type(row["added"]) is int
        assert row["ratio"] is None or type(row["ratio"]) is float
        assert type(row["id"]) is str and type(row["tags"]) is list


def test_avro_topic_with_the_schema_registry(
    cluster: Cluster, kafka_bootstrap: str, registry: SchemaRegistryServer
) -> None:
    topic, dlq, datasource = _topics(kafka_bootstrap, "avro")
    serialize = avro_serializer(registry.url, json.dumps(AVRO_SCHEMA), topic, registry.user_info)
    values = [serialize(_record(i)) for i in range(N)]
    schema_id = int.from_bytes(values[0][1:5], "big")
    bad = [values[0][:-6], b"\x00" + (4242).to_bytes(4, "big") + values[1][5:]]  # truncated, unknown id
    produce(kafka_bootstrap, topic, values + bad, 2)
    fmt = {
        "type": "avro_stream",
        "avroBytesDecoder": {
            "type": "schema_registry",
            "url": registry.url,
            "config": {
                "basic.auth.credentials.source": "USER_INFO",
                "basic.auth.user.info": registry.user_info,
            },
        },
    }
    rows = _run(cluster, _spec(datasource, topic, kafka_bootstrap, dlq, fmt), datasource)
    _check(rows)
    _check_counts(cluster, kafka_bootstrap, datasource, dlq, N, len(bad))
    # each task process asks for the schema once, whatever the number of records
    tasks = len(cluster.api.tasks("complete", datasource)) + len(cluster.api.tasks("running", datasource))
    assert 1 <= registry.id_requests(schema_id) <= tasks


@pytest.mark.parametrize("decoder", ["file", "schema_registry"])
def test_protobuf_topic(
    cluster: Cluster, kafka_bootstrap: str, registry: SchemaRegistryServer, tmp_path: Path, decoder: str
) -> None:
    topic, dlq, datasource = _topics(kafka_bootstrap, f"pb-{decoder.replace('_', '-')}")
    # a package per run: the generated module registers its messages in protobuf's default pool
    package = f"e2e_{decoder}"
    proto = EDIT_PROTO.replace("package e2e;", f"package {package};")
    module, descriptor = compile_proto(tmp_path / "proto", f"edit_{decoder}", proto)
    messages = []
    for i in range(N):
        record = _record(i)
        meta = record.pop("meta")
        messages.append(module.Edit(**record, meta=module.Edit.Meta(**meta)))
    if decoder == "file":
        values = [m.SerializeToString() for m in messages]
        bad = [values[5][:-4]]  # cut inside a field
        fmt: dict[str, Any] = {
            "type": "protobuf",
            "protoBytesDecoder": {
                "type": "file",
                "descriptor": f"file://{descriptor}",
                "protoMessageType": f"{package}.Edit",
            },
        }
    else:
        serialize = protobuf_serializer(registry.url, module.Edit, topic, registry.user_info)
        values = [serialize(m) for m in messages]
        bad = [values[5][:-4], b"\x00" + (999).to_bytes(4, "big") + values[1][5:]]
        fmt = {
            "type": "protobuf",
            "protoBytesDecoder": {
                "type": "schema_registry",
                "urls": [registry.url],
                "config": {"basic.auth.user.info": registry.user_info},
            },
        }
    produce(kafka_bootstrap, topic, values + bad, 2)
    rows = _run(cluster, _spec(datasource, topic, kafka_bootstrap, dlq, fmt), datasource)
    _check(rows, proto3=True)
    _check_counts(cluster, kafka_bootstrap, datasource, dlq, N, len(bad))


FLAT_AVRO_SCHEMA = {
    "type": "record",
    "name": "FlatEdit",
    "namespace": "e2e",
    "fields": [
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "id", "type": "string"},
        {"name": "page", "type": "string"},
        {"name": "added", "type": "long"},
        {"name": "ratio", "type": "double"},
    ],
}
FLAT_PROTO = """syntax = "proto3";
package e2e_flat;
message FlatEdit { int64 ts = 1; string id = 2; string page = 3; int64 added = 4; double ratio = 5; }
"""


@pytest.mark.parametrize("kind", ["avro", "protobuf"])
def test_flat_topics_decoded_into_columns(
    cluster: Cluster, kafka_bootstrap: str, registry: SchemaRegistryServer, tmp_path: Path, kind: str
) -> None:
    """A flat schema without flattenSpec takes the column decoders (formats/wire.py): the same
    rows, and bad records counted, sampled and dead-lettered as on the row path."""
    topic, dlq, datasource = _topics(kafka_bootstrap, f"flat-{kind}")
    records = [{k: v for k, v in _record(i).items() if k not in ("tags", "meta")} for i in range(N)]
    fmt: dict[str, Any]
    if kind == "avro":
        serialize = avro_serializer(registry.url, json.dumps(FLAT_AVRO_SCHEMA), topic, registry.user_info)
        values = [serialize(r) for r in records]
        bad = [values[0][:-3], b"\x00" + (4343).to_bytes(4, "big") + values[1][5:]]  # truncated, unknown id
        fmt = {
            "type": "avro_stream",
            "avroBytesDecoder": {
                "type": "schema_registry",
                "url": registry.url,
                "config": {"basic.auth.user.info": registry.user_info},
            },
        }
    else:
        module, descriptor = compile_proto(tmp_path / "proto", "flat_edit", FLAT_PROTO)
        values = [module.FlatEdit(**r).SerializeToString() for r in records]
        bad = [values[5][:-4], values[6] + b"\x07"]  # cut inside a field; a tag without its value
        fmt = {"type": "protobuf", "protoBytesDecoder": {"type": "file", "descriptor": str(descriptor)}}
    produce(kafka_bootstrap, topic, values + bad, 2)
    spec = kafka_spec(
        datasource,
        topic,
        kafka_bootstrap,
        dimensions=[d for d in DIMENSIONS if d != "tags"],
        timestamp={"column": "ts", "format": "millis"},
        inputFormat=fmt,
        taskDuration="PT5S",
        tuning={"maxSavedParseExceptions": 10, "maxParseExceptions": 10, "deadLetterTopic": dlq},
    )
    rows = _run(cluster, spec, datasource)
    expected = []
    for i in range(N):
        e = {k: v for k, v in _expected(i).items() if k != "tags"}
        if kind == "protobuf":  # proto3: a scalar at its default is not on the wire (null)
            e = {k: (None if v == 0 and k != "__time" else v) for k, v in e.items()}
        expected.append(e)
    assert [{k: row[k] for k in expected[0]} for row in rows] == expected
    for row in rows:
        assert type(row["id"]) is str and (row["ratio"] is None or type(row["ratio"]) is float)
        assert row["added"] is None or type(row["added"]) is int
    _check_counts(cluster, kafka_bootstrap, datasource, dlq, N, len(bad))

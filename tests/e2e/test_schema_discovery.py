"""Type-aware schema discovery and a json dimension end to end: a supervisor spec with
``useSchemaDiscovery`` and a listed ``json`` dimension over a real broker publishes Parquet whose
discovered columns have Druid's types (long, double, string, arrays, json) and whose json columns
carry Parquet's JSON logical type."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from middlemanager.ingest.schema import JSON_OUTPUT_TYPE
from overlord.client import wait_for
from tests.harness.http import request
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = pytest.mark.e2e

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def test_schema_discovery_and_json_dimension_end_to_end(cluster: Cluster, kafka_bootstrap: str) -> None:
    topic = f"discovery-{uuid.uuid4().hex[:8]}"
    datasource = f"sd_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 1)
    events = [
        {
            "ts": T0 + i,
            "attrs": {"i": i, "tags": ["a", i]},
            "n": i,
            "mixed": i if i % 2 else i + 0.5,
            "page": f"p{i % 3}",
            "ids": [i, i + 1],
            "nested": {"deep": {"x": i}},
            "flag": i % 2 == 0,
        }
        for i in range(40)
    ]
    produce(kafka_bootstrap, topic, [json.dumps(e).encode() for e in events])
    spec = kafka_spec(
        datasource,
        topic,
        kafka_bootstrap,
        dimensions=[{"type": "json", "name": "attrs"}],
        metrics=[{"type": "count", "name": "count"}],
        taskDuration="PT5S",
    )
    spec["spec"]["dataSchema"]["dimensionsSpec"]["useSchemaDiscovery"] = True
    answer = request("POST", f"{cluster.url}/druid/indexer/v1/supervisor", spec)
    assert answer.status == 200, answer.body
    assert "unhonouredFields" not in answer.body

    def published() -> list[dict[str, Any]] | None:
        rows = list(read_segments(cluster.api.segments(datasource)))
        return rows if sum(row["count"] for row in rows) >= len(events) else None

    rows = wait_for("discovered rows published", published, 180, 1.0)
    assert sum(row["count"] for row in rows) == len(events)
    for seg in cluster.api.segments(datasource):
        path = seg["loadSpec"]["path"]
        schema = pq.read_schema(path)
        assert {f.name: f.type for f in schema} == {
            "__time": pa.int64(),
            "attrs": JSON_OUTPUT_TYPE,  # listed first, then the discovered ones by name
            "flag": pa.int64(),
            "ids": pa.list_(pa.int64()),
            "mixed": pa.float64(),
            "n": pa.int64(),
            "nested": JSON_OUTPUT_TYPE,
            "page": pa.string(),
            "count": pa.int64(),
        }
        parquet = pq.ParquetFile(path).schema
        logical = {parquet.column(i).name: str(parquet.column(i).logical_type) for i in range(len(parquet))}
        assert logical["attrs"] == logical["nested"] == "JSON"
    by_n = {row["n"]: row for row in rows}
    assert sorted(by_n) == list(range(40))
    for i, row in by_n.items():
        assert json.loads(row["attrs"]) == {"i": i, "tags": ["a", i]}
        assert json.loads(row["nested"]) == {"deep": {"x": i}}
        assert row["ids"] == [i, i + 1]
        assert row["mixed"] == (i if i % 2 else i + 0.5)
        assert row["flag"] == (1 if i % 2 == 0 else 0)
        assert row["page"] == f"p{i % 3}"

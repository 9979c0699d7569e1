"""Sketch and first/last aggregators end to end: a supervisor spec with a thetaSketch and a
longLast over a real broker publishes Parquet whose sketch column holds standard DataSketches
bytes (read back with ``datasketches``) and whose longLast holds each page's latest value."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import datasketches as ds
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overlord.client import wait_for
from tests.harness.http import request
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = pytest.mark.e2e

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def test_theta_sketch_and_long_last_end_to_end(cluster: Cluster, kafka_bootstrap: str) -> None:
    topic = f"sketches-{uuid.uuid4().hex[:8]}"
    datasource = f"sk_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    rng = random.Random(7)
    events = [
        {
            "ts": T0 + rng.randrange(3_000_000),
            "page": f"p{i % 3}",
            "user": f"u{rng.randrange(500)}",
            "added": i,
        }
        for i in range(600)
    ]
    produce(kafka_bootstrap, topic, [json.dumps(e).encode() for e in events])
    users = {page: {e["user"] for e in events if e["page"] == page} for page in ("p0", "p1", "p2")}
    latest = {page: max((e for e in events if e["page"] == page), key=lambda e: e["ts"]) for page in users}

    spec = kafka_spec(
        datasource,
        topic,
        kafka_bootstrap,
        dimensions=["page"],
        metrics=[
            {"type": "count", "name": "count"},
            {"type": "thetaSketch", "name": "users", "fieldName": "user"},
            {"type": "longLast", "name": "last_added", "fieldName": "added"},
        ],
        rollup=True,
        query_granularity="hour",
        taskDuration="PT5S",
    )
    answer = request("POST", f"{cluster.url}/druid/indexer/v1/supervisor", spec)
    assert answer.status == 200, answer.body

    def published() -> list[dict[str, Any]] | None:
        rows = list(read_segments(cluster.api.segments(datasource)))
        return rows if sum(row["count"] for row in rows) >= len(events) else None

    rows = wait_for("sketch rows published", published, 180, 1.0)
    assert sum(row["count"] for row in rows) == len(events)
    for seg in cluster.api.segments(datasource):
        schema = pq.read_schema(seg["loadSpec"]["path"])
        assert schema.field("users").type == pa.binary()
        assert schema.field("last_added").type == pa.int64()
    for page, page_users in users.items():
        mine = [row for row in rows if row["page"] == page]
        union = ds.theta_union()
        for row in mine:
            union.update(ds.compact_theta_sketch.deserialize(row["users"]))
        # 500 users at most, below the default 16384 nominal entries: the estimate is exact
        assert union.get_result().get_estimate() == len(page_users)
        # every published row's longLast is the latest of its events; one of them is the page's latest
        assert latest[page]["added"] in {row["last_added"] for row in mine}

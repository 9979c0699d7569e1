"""transformSpec end to end: a supervisor whose spec computes columns with Druid
expressions (one replacing ``__time``) and filters on them ingests the computed rows
from a real broker; a transform that does not parse is refused at POST (400)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from overlord.client import wait_for
from tests.harness.http import request
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = pytest.mark.e2e

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def _spec(datasource: str, topic: str, bootstrap: str) -> dict[str, Any]:
    spec = kafka_spec(
        datasource,
        topic,
        bootstrap,
        dimensions=["id", "page", {"type": "long", "name": "net"}, "kind"],
        taskDuration="PT5S",
    )
    spec["spec"]["dataSchema"]["transformSpec"] = {
        "transforms": [
            {"type": "expression", "name": "page", "expression": "upper(page)"},
            {"type": "expression", "name": "net", "expression": "added - deleted"},
            # the event time moved to the hour its "hour" field names (Druid: a transform named __time)
            {
                "type": "expression",
                "name": "__time",
                "expression": "timestamp_floor(__time, 'P1D') + hour * 3600000",
            },
            # transforms read the input row, never another transform's output (Druid's rule)
            {"type": "expression", "name": "kind", "expression": "if(added - deleted > 0, 'growth', 'cut')"},
        ],
        # the filter sees the transformed row
        "filter": {
            "type": "and",
            "fields": [
                {"type": "not", "field": {"type": "like", "dimension": "page", "pattern": "TEST%"}},
                {"type": "bound", "dimension": "net", "lower": "-100", "ordering": "numeric"},
            ],
        },
    }
    return spec


def test_transforms_and_filter_end_to_end(cluster: Cluster, kafka_bootstrap: str) -> None:
    topic = f"transforms-{uuid.uuid4().hex[:8]}"
    datasource = f"tr_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    events = []
    expected = {}
    for i in range(200):
        page = f"test page {i}" if i % 10 == 0 else f"page {i % 7}"
        added, deleted = i, (i * 7) % 50
        if i % 25 == 3:
            deleted = 500  # net far below -100: filtered out
        hour = i % 24
        events.append(
            json.dumps(
                {
                    "ts": T0 + i * 1000,
                    "id": str(i),
                    "page": page,
                    "added": added,
                    "deleted": deleted,
                    "hour": hour,
                }
            ).encode()
        )
        net = added - deleted
        if not page.startswith("test") and net >= -100:
            expected[str(i)] = (page.upper(), net, T0 + hour * HOUR, "growth" if net > 0 else "cut")
    produce(kafka_bootstrap, topic, events)

    answer = request(
        "POST", f"{cluster.url}/druid/indexer/v1/supervisor", _spec(datasource, topic, kafka_bootstrap)
    )
    assert answer.status == 200, answer.body

    def published() -> list[dict[str, Any]] | None:
        rows = list(read_segments(cluster.api.segments(datasource)))
        return rows if len(rows) >= len(expected) else None

    rows = wait_for("transformed rows published", published, 180, 1.0)
    got = {row["id"]: (row["page"], row["net"], row["__time"], row["kind"]) for row in rows}
    assert got == expected
    assert len(rows) == len(expected)
    # segments are hourly: the computed __time decided which segment each row went to
    intervals = {seg["interval"] for seg in cluster.api.segments(datasource)}
    assert len(intervals) == 24


def test_a_transform_that_does_not_parse_is_a_400_naming_it(cluster: Cluster, kafka_bootstrap: str) -> None:
    spec = _spec("tr_bad", "tr-bad", kafka_bootstrap)
    spec["spec"]["dataSchema"]["transformSpec"]["transforms"][1]["expression"] = "added - (deleted"
    answer = request("POST", f"{cluster.url}/druid/indexer/v1/supervisor", spec)
    assert answer.status == 400
    assert answer.body["error"] == (
        "spec.dataSchema.transformSpec.transforms[1].expression: "
        "expected ')' but found the end of the expression at position 16"
    )

"""csv, tsv and kafka-wrapped JSON topics end to end on the real broker: a supervisor spec in Druid's
form each; the published rows equal what was produced (every column's type and value); bad records
(wrong column count, not JSON, a bad timestamp) counted in the task reports and sent to the
dead-letter topic, never a crash."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.e2e.test_bad_input import _dead_letters, _task_reports
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = pytest.mark.e2e

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
N = 60


def _iso(ms: int) -> str:
    seconds = (ms - T0) // 1000
    return f"2024-01-01T00:{seconds // 60:02d}:{seconds % 60:02d}.{ms % 1000:03d}Z"


DIMENSIONS = ["id", "page", {"type": "long", "name": "added"}, {"type": "double", "name": "ratio"}, "tags"]


def _expected(i: int) -> dict[str, Any]:
    return {
        "__time": T0 + i * 1000 + 7,
        "id": f"e{i}",
        "page": f"page, {i % 5}" if i % 3 == 0 else f"page {i % 5}",
        "added": i * 10,
        "ratio": i / 8,
        "tags": ["a", f"t{i % 4}"] if i % 2 else [f"t{i % 4}"],
    }


def _run(
    cluster: Cluster, bootstrap: str, spec: dict[str, Any], datasource: str, good: int
) -> list[dict[str, Any]]:
    sup = cluster.api.submit(spec)
    cluster.api.wait_published(datasource, good, 180)
    cluster.api.suspend(sup)
    cluster.api.wait_quiet(datasource, 60)
    return sorted(read_segments(cluster.api.segments(datasource)), key=lambda r: r["__time"])


def _check_counts(cluster: Cluster, bootstrap: str, datasource: str, dlq: str, good: int, bad: int) -> None:
    totals: dict[str, int] = {}
    saved = []
    for payload in _task_reports(cluster.api, datasource):
        for key, value in payload["rowStats"]["buildSegments"].items():
            totals[key] = totals.get(key, 0) + value
        saved.extend(payload["unparseableEvents"]["buildSegments"])
    assert totals["processed"] == good
    assert totals["unparseable"] == bad
    assert len(saved) == bad and all(e["message"] for e in saved)
    assert len(_dead_letters(bootstrap, dlq, bad)) == bad


def _typed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        assert isinstance(row["added"], int) and isinstance(row["ratio"], float)
        out.append({k: row[k] for k in ("__time", "id", "page", "added", "ratio", "tags")})
    return out


@pytest.mark.parametrize("kind", ["csv", "tsv"])
def test_csv_and_tsv_topics_end_to_end(cluster: Cluster, kafka_bootstrap: str, kind: str) -> None:
    topic = f"{kind}-{uuid.uuid4().hex[:8]}"
    dlq = f"{topic}-dlq"
    datasource = f"{kind}_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    create_topic(kafka_bootstrap, dlq, 1)
    sep = "," if kind == "csv" else "\t"
    values = []
    for i in range(N):
        e = _expected(i)
        page = f'"{e["page"]}"' if kind == "csv" else e["page"]
        fields = [_iso(e["__time"]), e["id"], page, str(e["added"]), str(e["ratio"]), "|".join(e["tags"])]
        values.append(sep.join(fields).encode())
    bad = [
        sep.join([_iso(T0), "short", "x"]).encode(),  # wrong column count
        sep.join(["yesterday", "bad-time", "p", "1", "1", "t"]).encode(),  # unparseable timestamp
    ]
    produce(kafka_bootstrap, topic, values + bad, 2)
    fmt: dict[str, Any] = {
        "type": kind,
        "columns": ["ts", "id", "page", "added", "ratio", "tags"],
        "listDelimiter": "|",
    }
    spec = kafka_spec(
        datasource,
        topic,
        kafka_bootstrap,
        dimensions=DIMENSIONS,
        timestamp={"column": "ts", "format": "iso"},
        inputFormat=fmt,
        taskDuration="PT5S",
        tuning={"maxSavedParseExceptions": 10, "maxParseExceptions": 10, "deadLetterTopic": dlq},
    )
    rows = _run(cluster, kafka_bootstrap, spec, datasource, N)
    expected = [_expected(i) for i in range(N)]
    if kind == "tsv":  # no quoting in tsv: a comma is an ordinary character
        assert all("," in e["page"] for e in expected[::3])
    assert _typed_rows(rows) == expected
    _check_counts(cluster, kafka_bootstrap, datasource, dlq, N, len(bad))


def test_kafka_wrapped_json_topic_with_keys_headers_and_timestamps(
    cluster: Cluster, kafka_bootstrap: str
) -> None:
    topic = f"kafkafmt-{uuid.uuid4().hex[:8]}"
    dlq = f"{topic}-dlq"
    datasource = f"kf_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    create_topic(kafka_bootstrap, dlq, 1)
    values: list[bytes | None] = []
    keys: list[bytes | None] = []
    headers: list[list[tuple[str, bytes]] | None] = []
    timestamps = []
    for i in range(N):
        e = _expected(i)
        values.append(json.dumps({k: e[k] for k in ("id", "page", "added", "ratio", "tags")}).encode())
        keys.append(f"key-{i}".encode() if i % 4 else None)
        headers.append([("env", b"prod" if i % 2 else b"dev"), ("zone", f"z{i % 3}".encode())])
        timestamps.append(e["__time"])
    values.append(b"{not json")
    keys.append(b"k")
    headers.append(None)
    timestamps.append(T0)
    produce(kafka_bootstrap, topic, values, 2, keys=keys, headers=headers, timestamps=timestamps)
    fmt = {
        "type": "kafka",
        "valueFormat": {"type": "json"},
        "keyFormat": {"type": "tsv", "findColumnsFromHeader": False, "columns": ["x"]},
        "headerFormat": {"type": "string"},
    }
    dims = [*DIMENSIONS, "kafka.key", "kafka.header.env", "kafka.header.zone", "kafka.topic"]
    spec = kafka_spec(
        datasource,
        topic,
        kafka_bootstrap,
        dimensions=dims,
        timestamp={"column": "kafka.timestamp", "format": "millis"},
        inputFormat=fmt,
        taskDuration="PT5S",
        tuning={"maxSavedParseExceptions": 10, "maxParseExceptions": 10, "deadLetterTopic": dlq},
    )
    rows = _run(cluster, kafka_bootstrap, spec, datasource, N)
    assert _typed_rows(rows) == [_expected(i) for i in range(N)]
    assert [r["kafka.key"] for r in rows] == [f"key-{i}" if i % 4 else None for i in range(N)]
    assert [r["kafka.header.env"] for r in rows] == ["prod" if i % 2 else "dev" for i in range(N)]
    assert [r["kafka.header.zone"] for r in rows] == [f"z{i % 3}" for i in range(N)]
    assert {r["kafka.topic"] for r in rows} == {topic}
    _check_counts(cluster, kafka_bootstrap, datasource, dlq, N, 1)

"""Exactly-once ingestion end to end: real Kafka, real metadata store, Overlord and
MiddleManager processes, Druid specs."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlord.client import wait_for
from tests.harness.kafka import create_topic, produce, recreate_topic, transactional_producer
from tests.harness.processes import Cluster, running_cluster
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = pytest.mark.e2e

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "druid"
WIKI_SPEC = SHARED / "wikipedia-kafka-supervisor.json"
WIKI_DATA = SHARED / "wikiticker-2015-09-12-sampled.json.gz"


@pytest.fixture(params=["sqlite", "postgres"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def cluster(tmp_path: Path, metadata_url: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path / "cluster", metadata_url, {"mm1": 3, "mm2": 3}) as c:
        yield c


def _wait_reading(cluster: Cluster, sup: str, groups: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        st = cluster.api.status(sup)
        active = [t for t in st["activeTasks"] if t.get("startTime")]
        return st if len({json.dumps(t["startingOffsets"]) for t in active}) >= groups else None

    result: dict[str, Any] = wait_for(f"{sup} tasks reading", ready, 90)
    return result


def test_druid_wikipedia_tutorial(cluster: Cluster, kafka_bootstrap: str) -> None:
    """Druid's tutorial spec byte for byte, Druid's tutorial data, Druid's tutorial answer."""
    if not kafka_bootstrap.endswith(":9092"):
        pytest.fail("the tutorial spec names localhost:9092; the test broker must listen there")
    recreate_topic(kafka_bootstrap, "wikipedia", 1, timeout=30)
    spec = json.loads(WIKI_SPEC.read_text())
    sup = cluster.api.submit(spec)
    assert sup == "wikipedia"
    _wait_reading(cluster, sup, 1)

    with gzip.open(WIKI_DATA, "rb") as f:
        lines = [line.rstrip(b"\n") for line in f if line.strip()]
    assert len(lines) == 39244
    produce(kafka_bootstrap, "wikipedia", lines)

    wait_for(
        "lag 0",
        lambda: (
            cluster.api.status(sup)["aggregateLag"] == 0
            and cluster.api.status(sup)["latestOffsets"] == {"0": 39244}
        ),
        120,
        1.0,
    )
    cluster.api.suspend(sup)
    cluster.api.wait_published("wikipedia", 39244, 120)
    cluster.api.wait_quiet("wikipedia", 60)
    segments = cluster.api.segments("wikipedia")
    assert sum(s["numRows"] for s in segments) == 39244
    assert {s["interval"] for s in segments} == {"2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z"}
    rows = list(read_segments(segments))
    assert len(rows) == 39244
    top = Counter(r["page"] for r in rows).most_common(3)
    assert top == [
        ("Wikipedia:Vandalismusmeldung", 33),
        ("User:Cyde/List of candidates for speedy deletion/Subpage", 28),
        ("Jeremy Corbyn", 27),
    ]
    assert {"added", "deleted", "delta"} <= set(rows[0])
    assert isinstance(rows[0]["added"], int)


def _rollup_spec(datasource: str, topic: str, bootstrap: str) -> dict[str, Any]:
    return kafka_spec(
        datasource,
        topic,
        bootstrap,
        dimensions=["id", "kind"],
        metrics=[
            {"type": "count", "name": "count"},
            {"type": "longSum", "name": "value_sum", "fieldName": "value"},
        ],
        rollup=True,
        query_granularity="minute",
        tuning={"maxRowsInMemory": 2000},
        taskCount=2,
        replicas=2,
        taskDuration="PT8S",
        startDelay="PT1S",
    )


def _event(i: int, ts: int, tag: str) -> bytes:
    return json.dumps({"ts": ts, "id": f"{tag}-{i}", "kind": tag, "value": i}).encode()


def test_replicas_generations_and_transactions_exactly_once(cluster: Cluster, kafka_bootstrap: str) -> None:
    """taskCount 2, replicas 2, several task generations, committed and aborted
    transactions: every committed event exactly once, no aborted one."""
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    datasource = f"ds_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 4)
    sup = cluster.api.submit(_rollup_spec(datasource, topic, kafka_bootstrap))

    base = int(time.time() * 1000)
    expected: set[str] = set()
    aborted: set[str] = set()
    txn = transactional_producer(kafka_bootstrap, f"tx-{uuid.uuid4().hex}")
    rounds = 6
    per_round = 500
    for r in range(rounds):
        # plain records
        plain = range(r * per_round, (r + 1) * per_round)
        produce(kafka_bootstrap, topic, [_event(n, base + n, "plain") for n in plain], 4)  # n % 4
        expected.update(f"plain-{n}" for n in plain)
        # one committed and one aborted transaction per round
        for outcome in ("commit", "abort"):
            txn.begin_transaction()
            for i in range(100):
                n = r * 100 + i
                tag = "committed" if outcome == "commit" else "aborted"
                txn.produce(topic, _event(n, base + n, tag), partition=n % 4)
                (expected if outcome == "commit" else aborted).add(f"{tag}-{n}")
            assert txn.flush(30) == 0  # abort right after produce trips librdkafka on Kafka 4
            if outcome == "commit":
                txn.commit_transaction(30)
            else:
                txn.abort_transaction(30)
        time.sleep(3)

    # let at least three generations publish, then hand off the rest
    def generations() -> int:
        succeeded = [t for t in cluster.api.tasks("complete", datasource) if t["statusCode"] == "SUCCESS"]
        return len(succeeded)

    wait_for("three generations published", lambda: generations() >= 2 * 3, 120, 1.0)
    wait_for("caught up", lambda: cluster.api.status(sup)["aggregateLag"] == 0, 120, 1.0)
    cluster.api.suspend(sup)
    cluster.api.wait_quiet(datasource, 120)

    segments = cluster.api.segments(datasource)
    rows = list(read_segments(segments))
    ids = Counter(r["id"] for r in rows)
    assert sum(r["count"] for r in rows) == len(expected)
    duplicated = {k: v for k, v in ids.items() if v > 1}
    assert not duplicated, f"duplicated ids: {list(duplicated)[:10]}"
    assert set(ids) == expected, f"missing {len(expected - set(ids))}, unexpected {len(set(ids) - expected)}"
    assert not (set(ids) & aborted)
    assert sum(r["value_sum"] for r in rows) == sum(int(i.split("-")[1]) for i in expected)
    assert len({s["version"] + s["interval"] for s in segments}) >= 1

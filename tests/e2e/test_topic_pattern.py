"""ioConfig.topicPattern end to end (Druid 28+ multi-topic ingestion): real Kafka, an Overlord (SQLite)
and one MiddleManager. Three topics match the pattern and one does not (its name matches only in part:
Druid matches whole names); a fourth matching topic is created while the supervisor runs and is picked
up on its period. Every record of the matching topics is published exactly once, none of the other."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlord.client import wait_for
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import Cluster, sqlite_cluster
from tests.harness.segments import read_segments
from tests.harness.specs import event, id_spec

pytestmark = pytest.mark.e2e

PER_PARTITION = 150


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with sqlite_cluster(tmp_path, 4) as c:
        yield c


def _fill(bootstrap: str, topic: str, partitions: int, tag: str, base_ms: int) -> set[str]:
    ids = [f"{topic}/{tag}/{i}" for i in range(PER_PARTITION * partitions)]
    produce(bootstrap, topic, [event(i, base_ms + n) for n, i in enumerate(ids)], partitions)
    return set(ids)


def test_topic_pattern_reads_every_matching_topic_once(cluster: Cluster, kafka_bootstrap: str) -> None:
    prefix = f"tp{uuid.uuid4().hex[:8]}"
    pattern = rf"{prefix}-m-[a-z]"
    matching = {f"{prefix}-m-a": 1, f"{prefix}-m-b": 2, f"{prefix}-m-c": 3}
    other = f"{prefix}-m-zz"  # re.search would find the pattern in it; a whole-name match does not
    late = f"{prefix}-m-d"
    for topic, partitions in {**matching, other: 2}.items():
        create_topic(kafka_bootstrap, topic, partitions)
    base = 1_700_000_000_000
    expected: set[str] = set()
    for topic, partitions in matching.items():
        expected |= _fill(kafka_bootstrap, topic, partitions, "before", base)
    not_wanted = _fill(kafka_bootstrap, other, 2, "before", base)

    datasource = f"ds_{prefix}"
    spec = id_spec(datasource, pattern, kafka_bootstrap, taskCount=2, taskDuration="PT8S")
    io = spec["spec"]["ioConfig"]
    io["topicPattern"] = io.pop("topic")
    sup = cluster.api.submit(spec)

    def caught_up(keys: set[str], produced: int) -> bool:
        st = cluster.api.status(sup)
        latest = st["latestOffsets"] or {}
        return set(latest) == keys and sum(latest.values()) == produced and st["aggregateLag"] == 0

    keys = {f"{t}:{p}" for t, n in matching.items() for p in range(n)}
    wait_for("the three matching topics read", lambda: caught_up(keys, len(expected)), 90, 1.0)
    status = cluster.api.status(sup)
    assert status["stream"] == pattern and status["partitions"] == 6

    # a fourth matching topic appears while the supervisor runs; the first ones get more records too
    create_topic(kafka_bootstrap, late, 2)
    expected |= _fill(kafka_bootstrap, late, 2, "late", base)
    for topic, partitions in matching.items():
        expected |= _fill(kafka_bootstrap, topic, partitions, "after", base)
    not_wanted |= _fill(kafka_bootstrap, other, 2, "after", base)
    keys |= {f"{late}:0", f"{late}:1"}
    wait_for("the new topic read too", lambda: caught_up(keys, len(expected)), 120, 1.0)

    cluster.api.suspend(sup)
    cluster.api.wait_published(datasource, len(expected), 120)
    cluster.api.wait_quiet(datasource, 60)
    rows = list(read_segments(cluster.api.segments(datasource)))
    ids = Counter(r["id"] for r in rows)
    assert not {k: v for k, v in ids.items() if v > 1}, "records published twice"
    assert set(ids) == expected, f"missing {len(expected - set(ids))}, unexpected {len(set(ids) - expected)}"
    assert not set(ids) & not_wanted
    assert len(rows) == len(expected) == PER_PARTITION * (1 + 2 + 3) * 2 + PER_PARTITION * 2

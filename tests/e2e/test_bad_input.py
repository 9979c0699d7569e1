"""Bad input end to end: never a crash, nothing lost.

Records that are not JSON, not UTF-8, JSON of the wrong shape, without a timestamp or with an
unparseable one, oversized, with values of the wrong type, outside the message-time window: counted
in the task's row stats, sampled with partition, offset and reason in the task reports and the
supervisor's parseErrors, sent to the dead-letter topic (reason in headers) before the offsets are
committed, and the task fails once maxParseExceptions is exceeded. Offsets that are no longer in
Kafka (topic deleted and recreated): with resetOffsetAutomatically off the supervisor turns unhealthy
with Druid's explanation and waits for a reset; with it on it resets and says so.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from overlord.client import OverlordClient, http, wait_for
from supervisor.kafka.producer import (
    HEADER_KIND,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TOPIC,
    HEADER_TRUNCATED,
    TRUNCATED_VALUE_BYTES,
)
from tests.harness.kafka import create_topic, produce, recreate_topic
from tests.harness.processes import Cluster, sqlite_cluster
from tests.harness.segments import read_segments
from tests.harness.specs import kafka_spec

pytestmark = pytest.mark.e2e

HOUR_MS = 3_600_000
BIG = 1024 * 1024 + 100  # over the ingest engine's 1 MiB record limit


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with sqlite_cluster(tmp_path, 4) as c:
        yield c


def _spec(datasource: str, topic: str, bootstrap: str, **tuning: Any) -> dict[str, Any]:
    return kafka_spec(
        datasource,
        topic,
        bootstrap,
        dimensions=["id", {"type": "long", "name": "n"}],
        metrics=[
            {"type": "count", "name": "count"},
            {"type": "longSum", "name": "v", "fieldName": "v"},
        ],
        tuning=tuning,
        taskDuration="PT6S",
        lateMessageRejectionPeriod="PT1H",
        earlyMessageRejectionPeriod="PT1H",
    )


def _produce(
    bootstrap: str, topic: str, values: list[bytes | None], partitions: int
) -> list[tuple[int, int]]:
    """Produces in order (records up to 4 MiB); returns (partition, offset) of each record."""
    return produce(bootstrap, topic, values, partitions, {"message.max.bytes": 4 * 1024 * 1024})


def _bad_batch(now: int) -> tuple[list[bytes | None], dict[str, list[int]]]:
    """Records and, per expected outcome, their indexes."""
    good = [json.dumps({"ts": now + i, "id": f"good-{i}", "n": i, "v": i}).encode() for i in range(20)]
    records: list[bytes | None] = list(good)
    kinds: dict[str, list[int]] = {"processed": list(range(20))}

    def add(kind: str, value: bytes | None) -> None:
        kinds.setdefault(kind, []).append(len(records))
        records.append(value)

    add("unparseable", b"this is not json")
    add("unparseable", b'{"ts": 1, "id": ')  # cut short
    add("unparseable", b"\xff\xfe\xfd not utf-8 at all")
    add("unparseable", b'{"ts": ' + str(now).encode() + b', "id": "bad-\xff\xfe"}')  # JSON, not UTF-8
    add("unparseable", b"[1, 2, 3]")  # wrong shape
    add("unparseable", b'"just a string"')
    add("unparseable", b"42")
    add("unparseable", json.dumps({"id": "no-time", "n": 1}).encode())
    add("unparseable", json.dumps({"ts": "the day after tomorrow", "id": "bad-time"}).encode())
    add("unparseable", json.dumps({"ts": now, "id": "huge", "pad": "x" * BIG}).encode())
    add("unparseable", None)  # a tombstone
    add(
        "processedWithError", json.dumps({"ts": now, "id": "wrong-dim", "n": "not a number", "v": 1}).encode()
    )
    add("processedWithError", json.dumps({"ts": now, "id": "wrong-metric", "n": 1, "v": "abc"}).encode())
    add("thrownAway", json.dumps({"ts": now - 3 * HOUR_MS, "id": "too-late", "n": 1, "v": 1}).encode())
    add("thrownAway", json.dumps({"ts": now + 3 * HOUR_MS, "id": "too-early", "n": 1, "v": 1}).encode())
    return records, kinds


def _task_reports(api: OverlordClient, datasource: str, status: str = "SUCCESS") -> list[dict[str, Any]]:
    out = []
    for t in api.tasks("complete", datasource):
        if t["statusCode"] == status:
            code, report = http("GET", f"{api.url}/druid/indexer/v1/task/{t['id']}/reports")
            assert code == 200, report
            out.append(report["ingestionStatsAndErrors"]["payload"])
    return out


def _dead_letters(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dlq-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 4 * 1024 * 1024,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(100, 1.0):
                if msg.error() is None:
                    out.append(msg)
        for msg in consumer.consume(100, 1.0):  # nothing more than expected
            if msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    return out


def test_bad_records_are_counted_sampled_reported_and_dead_lettered(
    cluster: Cluster, kafka_bootstrap: str
) -> None:
    topic = f"bad-{uuid.uuid4().hex[:8]}"
    dlq = f"{topic}-dlq"
    datasource = f"bad_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2, config={"max.message.bytes": str(4 * 1024 * 1024)})
    create_topic(kafka_bootstrap, dlq, 1, config={"max.message.bytes": str(4 * 1024 * 1024)})
    now = int(time.time() * 1000)
    records, kinds = _bad_batch(now)
    where = _produce(kafka_bootstrap, topic, records, 2)
    sup = cluster.api.submit(
        _spec(
            datasource,
            topic,
            kafka_bootstrap,
            maxParseExceptions=100,
            maxSavedParseExceptions=50,
            deadLetterTopic=dlq,
        )
    )
    rows_expected = len(kinds["processed"]) + len(kinds["processedWithError"])
    cluster.api.wait_published(datasource, rows_expected, 120)

    # live: the supervisor's parseErrors (from its running or just completed tasks)
    def parse_errors() -> list[dict[str, Any]] | None:
        code, body = http("GET", f"{cluster.url}/druid/indexer/v1/supervisor/{sup}/parseErrors")
        assert code == 200, body
        return body if len(body) >= 13 else None

    errors = wait_for("parse errors", parse_errors, 60)
    cluster.api.suspend(sup)
    cluster.api.wait_quiet(datasource, 60)

    # nothing lost: every good and partially good record is in the segments
    rows = list(read_segments(cluster.api.segments(datasource)))
    ids = Counter(str(r["id"]) for r in rows)
    assert ids == Counter([f"good-{i}" for i in range(20)] + ["wrong-dim", "wrong-metric"])
    partial = {r["id"]: r for r in rows if r["id"].startswith("wrong")}
    assert partial["wrong-dim"]["n"] is None and partial["wrong-dim"]["v"] == 1
    assert partial["wrong-metric"]["n"] == 1

    # row stats and saved parse exceptions, in the reports of the tasks that published
    reports = _task_reports(cluster.api, datasource)
    totals: Counter[str] = Counter()
    saved: list[dict[str, Any]] = []
    for payload in reports:
        totals.update(payload["rowStats"]["buildSegments"])
        saved.extend(payload["unparseableEvents"]["buildSegments"])
    assert totals["processed"] == len(kinds["processed"])
    assert totals["processedWithError"] == len(kinds["processedWithError"])
    assert totals["unparseable"] == len(kinds["unparseable"])
    assert totals["thrownAway"] == len(kinds["thrownAway"])
    bad = {where[i] for k in ("unparseable", "processedWithError") for i in kinds[k]}
    assert {(e["partition"], e["offset"]) for e in saved} == bad
    assert all(e["message"] for e in saved)
    by_place = {(e["partition"], e["offset"]): e for e in saved}
    assert "larger than" in by_place[where[kinds["unparseable"][9]]]["message"]
    assert "Timestamp" in by_place[where[kinds["unparseable"][8]]]["message"]
    assert by_place[where[kinds["processedWithError"][0]]]["errorType"] == "processedWithError"
    # the supervisor's view holds the same exceptions
    assert {(e["partition"], e["offset"]) for e in errors} == bad
    assert all(e.get("taskId") for e in errors)

    # the dead-letter topic: every rejected record (unparseable and thrown away), reason in headers
    rejected = {where[i] for k in ("unparseable", "thrownAway") for i in kinds[k]}
    letters = _dead_letters(kafka_bootstrap, dlq, len(rejected))
    got = {}
    for msg in letters:
        headers = {k: v.decode() for k, v in msg.headers() or []}
        assert headers[HEADER_TOPIC] == topic
        assert headers[HEADER_REASON]
        got[(int(headers[HEADER_PARTITION]), int(headers[HEADER_OFFSET]))] = (headers, msg.value())
    assert set(got) == rejected
    assert len(letters) == len(rejected)
    huge = kinds["unparseable"][9]
    for i in kinds["unparseable"] + kinds["thrownAway"]:
        headers, value = got[where[i]]
        if i == huge:  # too large for the dead-letter topic: cut short, marked so
            original = records[i] or b""
            assert value == original[:TRUNCATED_VALUE_BYTES]
            assert headers[HEADER_TRUNCATED] == str(len(original))
        else:
            assert value == records[i]
        assert headers[HEADER_KIND] == ("thrownAway" if i in kinds["thrownAway"] else "unparseable")


def test_task_fails_once_max_parse_exceptions_is_exceeded(cluster: Cluster, kafka_bootstrap: str) -> None:
    topic = f"bad-{uuid.uuid4().hex[:8]}"
    datasource = f"bad_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 1)
    now = int(time.time() * 1000)
    values: list[bytes | None] = [
        json.dumps({"ts": now, "id": f"g{i}", "n": i, "v": i}).encode() for i in range(5)
    ]
    values += [b"garbage"] * 4
    _produce(kafka_bootstrap, topic, values, 1)
    sup = cluster.api.submit(
        _spec(datasource, topic, kafka_bootstrap, maxParseExceptions=3, maxSavedParseExceptions=10)
    )

    def failed() -> list[dict[str, Any]]:
        return [t for t in cluster.api.tasks("complete", datasource) if t["statusCode"] == "FAILED"]

    tasks = wait_for("a task failed", failed, 60)
    assert "Max parse exceptions[3] exceeded" in (tasks[0]["errorMsg"] or "")
    code, report = http("GET", f"{cluster.url}/druid/indexer/v1/task/{tasks[0]['id']}/reports")
    assert code == 200
    payload = report["ingestionStatsAndErrors"]["payload"]
    assert payload["rowStats"]["buildSegments"]["unparseable"] == 4
    assert len(payload["unparseableEvents"]["buildSegments"]) == 4
    assert "Max parse exceptions" in payload["errorMsg"]
    # nothing was published, the supervisor keeps going (and keeps failing) but stays up
    assert cluster.api.published_rows(datasource) == 0
    assert cluster.api.status(sup)["state"] in ("RUNNING", "UNHEALTHY_TASKS", "PENDING")
    cluster.api.suspend(sup)


def _events(prefix: str, n: int) -> list[bytes | None]:
    now = int(time.time() * 1000)
    return [json.dumps({"ts": now, "id": f"{prefix}-{i}", "n": i, "v": 1}).encode() for i in range(n)]


@pytest.mark.parametrize("automatic", [False, True], ids=["manual-reset", "automatic-reset"])
def test_offsets_gone_from_kafka(cluster: Cluster, kafka_bootstrap: str, automatic: bool) -> None:
    topic = f"gone-{uuid.uuid4().hex[:8]}"
    datasource = f"gone_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 1)
    _produce(kafka_bootstrap, topic, _events("before", 30), 1)
    sup = cluster.api.submit(_spec(datasource, topic, kafka_bootstrap, resetOffsetAutomatically=automatic))
    cluster.api.wait_published(datasource, 30, 90)

    # the topic is deleted and recreated: offset 30 no longer exists (the log ends at 5)
    recreate_topic(kafka_bootstrap, topic, 1)
    _produce(kafka_bootstrap, topic, _events("after", 5), 1)

    def errors() -> list[str]:
        return [e["message"] for e in cluster.api.status(sup).get("recentErrors", [])]

    if automatic:
        cluster.api.wait_published(datasource, 35, 120)
        assert any("no longer available" in m and "reset" in m for m in errors()), errors()
    else:

        def unhealthy() -> dict[str, Any] | None:
            st = cluster.api.status(sup)
            return st if not st["healthy"] else None

        st = wait_for("supervisor unhealthy", unhealthy, 120, 1.0)
        assert st["state"] == "UNHEALTHY_SUPERVISOR", st
        assert any("is no longer available" in m for m in errors()), errors()
        time.sleep(3)
        assert cluster.api.published_rows(datasource) == 30  # waits for the reset, reads nothing
        code, body = http("POST", f"{cluster.url}/druid/indexer/v1/supervisor/{sup}/reset")
        assert code == 200, body
        cluster.api.wait_published(datasource, 35, 120)
        wait_for("healthy again", lambda: cluster.api.status(sup)["healthy"], 60, 1.0)
    cluster.api.suspend(sup)
    cluster.api.wait_quiet(datasource, 60)
    ids = Counter(str(r["id"]) for r in read_segments(cluster.api.segments(datasource)))
    assert ids == Counter([f"before-{i}" for i in range(30)] + [f"after-{i}" for i in range(5)])

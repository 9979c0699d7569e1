"""Operating supervisors like Druid: the API surface, restarts, spec updates,
resetOffsets, idle, access control and secret masking. Real Kafka, real
PostgreSQL, Overlord and MiddleManager processes."""

from __future__ import annotations

import base64
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlord.client import http, wait_for
from tests.harness.database import fresh_database
from tests.harness.http import request
from tests.harness.kafka import create_topic, produce, transactional_producer
from tests.harness.processes import Cluster, running_cluster
from tests.harness.segments import published_ids
from tests.harness.specs import event, id_spec

pytestmark = pytest.mark.e2e

V1 = "/druid/indexer/v1"


@pytest.fixture(scope="module")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Cluster]:
    with (
        fresh_database(postgres_url, "op") as url,
        running_cluster(tmp_path_factory.mktemp("operate"), url, {"mm1": 4}) as c,
    ):
        yield c


def _names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"op-{tag}", f"op_{tag}"


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def _events(ids: list[str]) -> list[bytes]:
    base = int(time.time() * 1000)
    return [event(i, base + k) for k, i in enumerate(ids)]


def _caught_up(c: Cluster, sup: str, produced: int) -> bool:
    """Tasks read everything: the latest offsets already show what was produced (a lag of 0
    against an older snapshot would hand off before the tasks read the rest) and nothing lags."""
    st = c.api.status(sup)
    latest = sum((st["latestOffsets"] or {}).values())
    return bool(st["activeTasks"]) and latest >= produced and st["aggregateLag"] == 0


def _finish(c: Cluster, sup: str, expected_rows: int) -> list[str]:
    wait_for("caught up", lambda: _caught_up(c, sup, expected_rows), 90)
    c.api.suspend(sup)
    c.api.wait_quiet(sup, 120)
    got = published_ids(c.api, sup)
    assert len(got) == expected_rows, f"published {len(got)} rows, expected {expected_rows}"
    return got


def _exactly_once(got: list[str], expected: list[str]) -> None:
    counts = Counter(got)
    dup = [k for k, v in counts.items() if v > 1]
    assert not dup, f"duplicated: {dup[:5]}"
    assert set(got) == set(expected), f"missing {len(set(expected) - set(got))}"


def test_supervisor_api_surface(pg_cluster: Cluster, kafka_bootstrap: str) -> None:
    c = pg_cluster
    topic, ds = _names()
    create_topic(kafka_bootstrap, topic, 2)
    spec = id_spec(ds, topic, kafka_bootstrap, taskCount=2)
    spec["spec"]["ioConfig"]["consumerProperties"]["sasl.password"] = "hunter2"
    spec["spec"]["ioConfig"]["consumerProperties"]["security.protocol"] = "PLAINTEXT"
    assert c.api.submit(spec) == ds

    ids = _ids("api", 400)
    produce(kafka_bootstrap, topic, _events(ids), 2)

    code, body = http("GET", f"{c.url}{V1}/supervisor")
    assert code == 200 and ds in body
    code, body = http("GET", f"{c.url}{V1}/supervisor?full")
    entry = next(e for e in body if e["id"] == ds)
    assert entry["spec"]["spec"]["ioConfig"]["consumerProperties"]["sasl.password"] == "<masked>"
    code, body = http("GET", f"{c.url}{V1}/supervisor?state=true")
    assert {"id", "state", "detailedState", "healthy", "suspended"} <= set(
        next(e for e in body if e["id"] == ds)
    )
    code, body = http("GET", f"{c.url}{V1}/supervisor/{ds}")
    assert code == 200 and body["spec"]["ioConfig"]["consumerProperties"]["sasl.password"] == "<masked>"
    code, body = http("GET", f"{c.url}{V1}/supervisor/{ds}/history")
    assert code == 200 and "hunter2" not in str(body)

    wait_for(
        "two groups reading",
        lambda: len([t for t in c.api.status(ds)["activeTasks"] if t["startTime"]]) == 2,
        60,
    )
    status = c.api.status(ds)
    for key in (
        "dataSource",
        "stream",
        "partitions",
        "replicas",
        "durationSeconds",
        "activeTasks",
        "publishingTasks",
        "latestOffsets",
        "minimumLag",
        "aggregateLag",
        "lagMillis",
        "offsetsLastUpdated",
        "suspended",
        "healthy",
        "state",
        "detailedState",
        "recentErrors",
    ):
        assert key in status, key
    assert status["state"] == "RUNNING" and status["partitions"] == 2
    code, _ = http("GET", f"{c.url}{V1}/supervisor/{ds}/health")
    assert code == 200
    wait_for("stats", lambda: len(http("GET", f"{c.url}{V1}/supervisor/{ds}/stats")[1]) == 2, 30)

    task_id = status["activeTasks"][0]["id"]
    code, body = http("GET", f"{c.url}{V1}/task/{task_id}")
    assert code == 200 and "hunter2" not in str(body) and body["payload"]["type"] == "index_kafka"
    code, body = http("GET", f"{c.url}{V1}/task/{task_id}/status")
    assert body["status"]["statusCode"] == "RUNNING" and body["status"]["location"]["port"] > 0
    wait_for("live report", lambda: http("GET", f"{c.url}{V1}/task/{task_id}/reports")[0] == 200, 30)
    code, text = http("GET", f"{c.url}{V1}/task/{task_id}/log")
    assert code == 200 and "reading" in text
    code, body = http("POST", f"{c.url}{V1}/taskStatus", [task_id, "nope"])
    assert code == 200 and list(body) == [task_id]
    # as Druid's OverlordResource.getTasks, `max` bounds the completed tasks only
    code, body = http("GET", f"{c.url}{V1}/tasks?state=running&datasource={ds}&max=1")
    assert code == 200 and body and all(t["statusCode"] == "RUNNING" and t["dataSource"] == ds for t in body)
    code, body = http("GET", f"{c.url}{V1}/tasks?state=complete&datasource={ds}&max=0")
    assert code == 200 and body == []
    assert http("GET", f"{c.url}{V1}/tasks?state=bogus")[0] == 400
    code, metrics = http("GET", f"{c.url}/metrics")
    assert code == 200 and "kafka_indexer_lag_records" in str(metrics)

    # unknown ids and bad bodies
    for method, path in [
        ("GET", "/supervisor/nope"),
        ("GET", "/supervisor/nope/status"),
        ("POST", "/supervisor/nope/suspend"),
        ("POST", "/supervisor/nope/reset"),
    ]:
        code, body = http(method, f"{c.url}{V1}{path}")
        assert code == 404 and "error" in body, (path, code, body)
    # Druid's OverlordResource: an unknown task's payload is a 404 with a null payload; its shutdown a 200
    assert http("GET", f"{c.url}{V1}/task/nope") == (404, {"task": "nope", "payload": None})
    assert http("POST", f"{c.url}{V1}/task/nope/shutdown") == (200, {"task": "nope"})
    code, body = http("POST", f"{c.url}{V1}/supervisor/{ds}/taskGroups/handoff", {"taskGroupIds": "x"})
    assert code == 400
    changed = id_spec(ds, topic + "-other", kafka_bootstrap)
    code, body = http("POST", f"{c.url}{V1}/supervisor", changed)
    assert code == 400 and "reset" in body["error"] and "terminate" in body["error"]

    # early handoff of group 0: 200 (Druid's SupervisorResource.handoffTaskGroups), and it publishes
    code, _ = http("POST", f"{c.url}{V1}/supervisor/{ds}/taskGroups/handoff", {"taskGroupIds": [0]})
    assert code == 200
    wait_for("group 0 published", lambda: c.api.published_rows(ds) > 0, 60)

    got = _finish(c, ds, len(ids))
    _exactly_once(got, ids)
    assert c.api.status(ds)["state"] == "SUSPENDED"
    code, body = http("POST", f"{c.url}{V1}/supervisor/{ds}/resume")
    assert code == 200 and body["suspended"] is False
    code, body = http("POST", f"{c.url}{V1}/supervisor/{ds}/terminate")
    assert code == 200
    assert http("GET", f"{c.url}{V1}/supervisor/{ds}")[0] == 404
    code, body = http("GET", f"{c.url}{V1}/supervisor/{ds}/history")
    assert code == 200 and body[0]["spec"]["type"] == "NoopSupervisorSpec"


def test_overlord_killed_and_restarted_mid_ingest(pg_cluster: Cluster, kafka_bootstrap: str) -> None:
    c = pg_cluster
    topic, ds = _names()
    create_topic(kafka_bootstrap, topic, 2)
    c.api.submit(id_spec(ds, topic, kafka_bootstrap, taskDuration="PT6S"))
    ids = _ids("restart", 3000)
    first, second = ids[:1500], ids[1500:]
    produce(kafka_bootstrap, topic, _events(first), 2)
    before: set[str] = wait_for("reading", lambda: {t["id"] for t in c.api.tasks("running", ds)}, 60)
    c.procs["overlord"].stop(signal.SIGKILL)
    produce(kafka_bootstrap, topic, _events(second), 2)  # tasks keep reading meanwhile
    time.sleep(2)
    c.start_overlord()
    # the running task is adopted, not killed
    wait_for(
        "adopted",
        lambda: (
            before & {t["id"] for t in c.api.tasks("running", ds)}
            or any(t["id"] in before and t["statusCode"] == "SUCCESS" for t in c.api.tasks(datasource=ds))
        ),
        30,
    )
    killed = [t for t in c.api.tasks(datasource=ds) if t["id"] in before and t["statusCode"] == "FAILED"]
    assert not killed, killed
    _exactly_once(_finish(c, ds, len(ids)), ids)


def test_spec_update_mid_ingest(pg_cluster: Cluster, kafka_bootstrap: str) -> None:
    c = pg_cluster
    topic, ds = _names()
    create_topic(kafka_bootstrap, topic, 4)
    c.api.submit(id_spec(ds, topic, kafka_bootstrap, taskCount=1, taskDuration="PT60S"))
    ids = _ids("upd", 4000)
    produce(kafka_bootstrap, topic, _events(ids[:2000]), 4)
    wait_for("reading", lambda: c.api.status(ds)["activeTasks"], 60)
    time.sleep(2)
    # the new spec regroups the partitions into two groups
    c.api.submit(id_spec(ds, topic, kafka_bootstrap, taskCount=2, taskDuration="PT60S"))
    produce(kafka_bootstrap, topic, _events(ids[2000:]), 4)
    wait_for("two groups under the new spec", lambda: len(c.api.status(ds)["activeTasks"]) == 2, 60)
    _exactly_once(_finish(c, ds, len(ids)), ids)


def test_reset_offsets_skips_a_known_range(pg_cluster: Cluster, kafka_bootstrap: str) -> None:
    c = pg_cluster
    topic, ds = _names()
    create_topic(kafka_bootstrap, topic, 1)
    c.api.submit(id_spec(ds, topic, kafka_bootstrap, useEarliestOffset=True))
    ids = _ids("reset", 300)
    produce(kafka_bootstrap, topic, _events(ids[:100]), 1)
    wait_for(
        "first 100 read",
        lambda: _caught_up(c, ds, 100),
        60,
    )
    c.api.suspend(ds)
    c.api.wait_published(ds, 100, 60)
    c.api.wait_quiet(ds, 60)
    produce(kafka_bootstrap, topic, _events(ids[100:]), 1)  # offsets 100..299
    # skip offsets 100..199
    body = {"type": "kafka", "partitions": {"type": "end", "stream": topic, "partitionOffsetMap": {"0": 200}}}
    code, answer = http("POST", f"{c.url}{V1}/supervisor/{ds}/resetOffsets", body)
    assert code == 200, answer
    bad = {"type": "kafka", "partitions": {"type": "end", "stream": "other", "partitionOffsetMap": {"0": 1}}}
    assert http("POST", f"{c.url}{V1}/supervisor/{ds}/resetOffsets", bad)[0] == 400
    c.api.resume(ds)
    expected = ids[:100] + ids[200:]
    _exactly_once(_finish(c, ds, len(expected)), expected)


def test_idle_and_wake_up_with_a_transactional_producer(pg_cluster: Cluster, kafka_bootstrap: str) -> None:
    c = pg_cluster
    topic, ds = _names()
    create_topic(kafka_bootstrap, topic, 1)
    spec = id_spec(ds, topic, kafka_bootstrap)
    spec["spec"]["ioConfig"]["idleConfig"] = {"enabled": True, "inactiveAfterMillis": 4000}
    c.api.submit(spec)
    txn = transactional_producer(kafka_bootstrap, f"idle-{uuid.uuid4().hex}")

    def send(values: list[bytes]) -> None:
        txn.begin_transaction()
        for v in values:
            txn.produce(topic, v, partition=0)
        assert txn.flush(30) == 0
        txn.commit_transaction(30)

    ids = _ids("idle", 200)
    send(_events(ids[:100]))
    wait_for("idle", lambda: c.api.status(ds)["state"] == "IDLE", 60)
    c.api.wait_published(ds, 100, 60)
    wait_for("no tasks while idle", lambda: not c.api.tasks("running", ds), 30)
    # the commit marker after the last record must not wake it up
    time.sleep(4)
    assert c.api.status(ds)["state"] == "IDLE"
    assert not c.api.tasks("running", ds)
    send(_events(ids[100:]))
    wait_for("awake", lambda: c.api.status(ds)["state"] == "RUNNING" and c.api.tasks("running", ds), 60)
    wait_for("idle again", lambda: c.api.status(ds)["state"] == "IDLE", 60)
    c.api.wait_published(ds, 200, 60)
    _exactly_once(published_ids(c.api, ds), ids)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _call(method: str, url: str, headers: dict[str, str], body: Any = None) -> int:
    return request(method, url, body, headers=headers).status


def test_access_control(tmp_path: Path, kafka_bootstrap: str) -> None:
    env = {
        "OVERLORD_AUTH_USERS": "root:s3cret:admin,viewer:look:read",
        "OVERLORD_AUTH_TOKENS": "tok-admin:admin",
        "OVERLORD_CLUSTER_TOKEN": "cluster-t0ken",
        "MIDDLEMANAGER_CLUSTER_TOKEN": "cluster-t0ken",
    }
    with running_cluster(tmp_path / "auth", f"sqlite:///{tmp_path / 'auth.db'}", {"mm1": 2}, env=env) as c:
        url = f"{c.url}{V1}/supervisor"
        topic, ds = _names()
        create_topic(kafka_bootstrap, topic, 1)
        spec = id_spec(ds, topic, kafka_bootstrap)
        assert _call("GET", url, {}) == 401
        assert _call("GET", url, _basic("root", "wrong")) == 401
        assert _call("GET", url, _basic("viewer", "look")) == 200
        assert _call("POST", url, _basic("viewer", "look"), spec) == 403
        assert _call("POST", url, {"Authorization": "Bearer tok-admin"}, spec) == 200
        assert _call("GET", f"{c.url}/status/health", {}) == 200
        # worker paths take the cluster token only
        hb = {"host": "127.0.0.1", "port": 1, "capacity": 0, "running": [], "completed": []}
        assert _call("POST", f"{c.url}{V1}/workers/heartbeat", _basic("root", "s3cret"), hb) == 403
        # and so do the MiddleManager's own worker paths (its task list, the task logs)
        mm_tasks = f"http://127.0.0.1:{c.port('mm1')}/druid/worker/v1/tasks"
        assert _call("GET", mm_tasks, {}) == 401
        assert _call("GET", mm_tasks, {"Authorization": "Bearer tok-admin"}) == 401
        assert _call("GET", mm_tasks, {"Authorization": "Bearer cluster-t0ken"}) == 200
        assert _call("GET", f"http://127.0.0.1:{c.port('mm1')}/status/health", {}) == 200
        # the cluster still works: the worker and its tasks use the cluster token
        produce(kafka_bootstrap, topic, _events(_ids("auth", 50)), 1)
        wait_for(
            "reading under auth",
            lambda: (
                _call("GET", f"{url}/{ds}/status", _basic("viewer", "look")) == 200
                and request("GET", f"{url}/{ds}/status", headers=_basic("viewer", "look")).body["payload"][
                    "activeTasks"
                ]
            ),
            60,
        )
        status = request("GET", f"{url}/{ds}/status", headers=_basic("viewer", "look")).body["payload"]
        task = status["activeTasks"][0]["id"]
        loc = wait_for(
            "task location",
            lambda: (
                loc
                if (
                    loc := request(
                        "GET", f"{c.url}{V1}/task/{task}/status", headers=_basic("viewer", "look")
                    ).body["status"]["location"]
                )["port"]
                > 0
                else None
            ),
            30,
        )
        chat = f"http://{loc['host']}:{loc['port']}/druid/worker/v1/chat/{task}/status"
        assert _call("GET", chat, {}) == 401
        assert _call("GET", chat, _basic("root", "s3cret")) == 401
        assert _call("GET", chat, {"Authorization": "Bearer cluster-t0ken"}) == 200


def test_new_partitions_are_read_from_their_earliest_offset(
    pg_cluster: Cluster, kafka_bootstrap: str
) -> None:
    from confluent_kafka.admin import AdminClient, NewPartitions

    c = pg_cluster
    topic, ds = _names()
    create_topic(kafka_bootstrap, topic, 1)
    c.api.submit(id_spec(ds, topic, kafka_bootstrap, useEarliestOffset=False, taskDuration="PT60S"))
    wait_for("reading", lambda: [t for t in c.api.status(ds)["activeTasks"] if t["startTime"]], 60)
    ids = _ids("newpart", 200)
    events = _events(ids)
    produce(kafka_bootstrap, topic, events[:100], 1)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for fut in admin.create_partitions([NewPartitions(topic, 2)]).values():
        fut.result(30)
    wait_for(
        "partition 1", lambda: len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 2, 30
    )
    produce(kafka_bootstrap, topic, events[100:], partition=1)
    wait_for("both partitions read", lambda: c.api.status(ds)["partitions"] == 2, 60)
    _exactly_once(_finish(c, ds, len(ids)), ids)

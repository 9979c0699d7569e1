"""Exactly-once under faults, the CI version: every fault of ``tests.e2e.faults.FAULTS`` once.

Its own Kafka broker and PostgreSQL server (restarted during the run), an Overlord and two
MiddleManagers; a stream of plain and transactional events (some transactions aborted); taskCount 2,
replicas 2, short taskDuration. After the faults the supervisor catches up and hands off, and the
published segments must hold every committed id exactly once and no aborted one. The long version is
``scripts/chaos --minutes N``.

And a metadata store outage: with its PostgreSQL server stopped, the Overlord answers what needs the
store with 503 and a ``Retry-After`` (not 500), logs no traceback, and heals when the server is back.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from pathlib import Path

import pytest

from overlord.client import wait_for
from tests.e2e.faults import FAULTS, RunConfig, fault_run, inject_each_once
from tests.harness.http import request
from tests.harness.kafka import create_topic
from tests.harness.processes import running_cluster
from tests.harness.services import own_postgres
from tests.harness.specs import id_spec

pytestmark = [pytest.mark.e2e, pytest.mark.testbed_scripts]


def test_exactly_once_under_faults(tmp_path: Path) -> None:
    logging.getLogger("faults").setLevel(logging.INFO)
    seed = int(os.environ.get("FAULTS_SEED", random.randrange(1 << 30)))
    config = RunConfig(
        partitions=4,
        task_count=2,
        replicas=2,
        task_duration_s=6,
        completion_timeout_s=15,
        rate=300.0,
        drop_publish_response_every=4,
        seed=seed,
    )
    with fault_run(tmp_path, config) as run:
        inject_each_once(run, gap_s=1.0)
        summary = run.finish(catch_up_s=180)
    print(f"seed {seed}: {summary.line()} {summary.by_kind}")
    missing = [k for k in FAULTS if not summary.by_kind.get(k)]
    assert not missing, f"faults never injected: {missing} (seed {seed})"
    assert summary.committed > 0
    assert (summary.lost, summary.duplicated) == (0, 0), f"seed {seed}: {summary.line()}"
    assert summary.aborted_ingested == 0, f"seed {seed}: aborted records ingested"
    assert summary.unknown_ingested == 0, f"seed {seed}: ids that are not in the topic were ingested"
    assert not summary.notes, f"seed {seed}: {summary.notes}"


def test_metadata_store_outage_is_a_503_and_heals_without_a_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    postgres = own_postgres()
    try:
        url = postgres.start()
        with running_cluster(tmp_path / "cluster", url) as cluster:
            topic = f"outage-{uuid.uuid4().hex[:8]}"
            create_topic(kafka_bootstrap, topic, 1)
            sup = cluster.api.submit(id_spec(topic, topic, kafka_bootstrap))
            (task,) = wait_for("a pending task", lambda: cluster.api.tasks(datasource=topic), 30)
            v1 = f"{cluster.url}/druid/indexer/v1"
            # a worker says it runs the task: the Overlord must write that down
            heartbeat = {
                "host": "127.0.0.1",
                "port": 1,
                "protocolVersion": 1,
                "running": [{"taskId": task["id"], "port": 2}],
            }
            calls = [
                ("GET", f"{v1}/tasks", None),
                ("GET", f"{v1}/supervisor/history", None),
                ("POST", f"{v1}/workers/heartbeat", heartbeat),
            ]

            postgres.stop()
            for method, call_url, body in calls:
                status, answer, headers = request(method, call_url, body)
                assert status == 503, (call_url, status, answer)
                assert headers["Retry-After"] == "5", call_url
                assert answer["error"].startswith("metadata store unavailable, retry later: "), answer
            # a reset asked for meanwhile is tried on every run, one warning each, until it goes through
            assert request("POST", f"{v1}/supervisor/{sup}/reset").status == 200
            time.sleep(3)
            postgres.start()

            for method, call_url, body in calls:
                status, answer, _ = wait_for(
                    f"{method} {call_url} answered again",
                    lambda m=method, u=call_url, b=body: a if (a := request(m, u, b)).status != 503 else None,
                    30,
                )
                assert status == 200, (call_url, status, answer)
            log = cluster.procs["overlord"].log
            wait_for("the reset done", lambda: "reset: offsets cleared" in log.read_text(), 30)
            text = log.read_text()
            assert f"supervisor[{sup}]: run failed: metadata store unavailable, retry later: " in text
            assert "Traceback" not in text, cluster.logs()
    finally:
        postgres.discard()

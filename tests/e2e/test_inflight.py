"""In-flight rows end to end (issue 15.2): a query sees what running tasks have read, each record
once, before and after their publish, through replica kills and an Overlord restart."""

from __future__ import annotations

import gzip
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from broker.api import RESPONSE_CONTEXT_HEADER
from overlord.client import wait_for
from tests.e2e.test_broker import TUTORIAL_SQL, _ties_aside
from tests.e2e.test_ingestion import WIKI_DATA, WIKI_SPEC, _wait_reading
from tests.harness.kafka import produce, recreate_topic
from tests.harness.processes import running_cluster
from transport.client import SyncClient

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

COUNT_SQL = "SELECT COUNT(*) AS n FROM wikipedia"


def _sql(client: SyncClient, query: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and Druid's response context of one SQL query."""
    got = client.send("POST", "/druid/v2/sql", {"query": query})
    assert got.status == 200, got.body
    context = json.loads(got.headers.get(RESPONSE_CONTEXT_HEADER, "{}"))
    return got.body, context


def test_tutorial_sql_while_the_task_runs_and_after_publish(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Druid's tutorial spec (taskDuration PT10M) and data: the tutorial's query gives the tutorial's
    answer from the running task, and the same answer from the published segments."""
    if not kafka_bootstrap.endswith(":9092"):
        pytest.fail("the tutorial spec names localhost:9092; the test broker must listen there")
    with running_cluster(tmp_path / "cluster", f"sqlite:///{tmp_path / 'md.db'}", {"mm1": 2}) as cluster:
        recreate_topic(kafka_bootstrap, "wikipedia", 1, timeout=30)
        sup = cluster.api.submit(json.loads(WIKI_SPEC.read_text()))
        _wait_reading(cluster, sup, 1)
        with gzip.open(WIKI_DATA, "rb") as f:
            lines = [line.rstrip(b"\n") for line in f if line.strip()]
        client = SyncClient(cluster.url, timeout_s=60)
        produce(kafka_bootstrap, "wikipedia", lines)
        produced_at = time.monotonic()
        wait_for("all rows visible", lambda: _sql(client, COUNT_SQL)[0] == [{"n": 39244}], 60, 0.2)
        visible_s = time.monotonic() - produced_at
        assert cluster.api.published_rows("wikipedia") == 0  # nothing published: the task's rows
        running, context = _sql(client, TUTORIAL_SQL)
        assert context == {}
        assert running[0] == {"page": "Wikipedia:Vandalismusmeldung", "Edits": 33}
        assert running[1] == {"page": "User:Cyde/List of candidates for speedy deletion/Subpage", "Edits": 28}

        cluster.api.suspend(sup)
        cluster.api.wait_published("wikipedia", 39244, 120)
        published, context = _sql(client, TUTORIAL_SQL)
        assert context == {}
        assert _ties_aside(published) == _ties_aside(running)
        assert _sql(client, COUNT_SQL)[0] == [{"n": 39244}]
        print(
            f"tutorial: 39244 rows produced -> all visible in COUNT(*) from the running task in {visible_s:.2f} s"
        )

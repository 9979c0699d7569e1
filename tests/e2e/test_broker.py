"""Druid's Kafka tutorial end to end through the Broker: Druid's tutorial spec and data, then the
tutorial's own SQL query over HTTP (the Overlord's embedded Broker and a `python -m broker` process),
and pydruid, unchanged, as a client."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pydruid.db
import pytest
import sqlalchemy
from pydruid.client import PyDruid

from overlord.client import wait_for
from tests.e2e.test_ingestion import WIKI_DATA, WIKI_SPEC, _wait_reading
from tests.harness.kafka import produce, recreate_topic
from tests.harness.processes import free_port, running_cluster
from tests.harness.segments import read_segments
from transport.client import SyncClient, probe_health

pytestmark = pytest.mark.e2e


# Druid's docs, tutorials/tutorial-kafka.md: the query of the "Query the data" step
def _ties_aside(rows: list[dict[str, Any]]) -> tuple[list[int], set[tuple[str, int]]]:
    """A top-N answer as what any correct engine must give: the counts in order, and the rows above
    the last count (pages tied at the cut-off may differ between runs, as ORDER BY leaves ties open)."""
    counts = [r["Edits"] for r in rows]
    return counts, {(r["page"], r["Edits"]) for r in rows if r["Edits"] > counts[-1]}


TUTORIAL_SQL = (
    "SELECT page, COUNT(*) AS Edits FROM wikipedia "
    "WHERE \"__time\" BETWEEN TIMESTAMP '2015-09-12 00:00:00' AND TIMESTAMP '2015-09-13 00:00:00' "
    "GROUP BY page ORDER BY Edits DESC LIMIT 10"
)


# pydruid's dialect predates SQLAlchemy 2's names (dbapi(), supports_statement_cache): its warnings, not ours
@pytest.mark.filterwarnings("ignore:.*dbapi.. classmethod:DeprecationWarning", "ignore:Dialect druid.rest")
def test_tutorial_sql_after_publish(tmp_path: Path, kafka_bootstrap: str) -> None:
    if not kafka_bootstrap.endswith(":9092"):
        pytest.fail("the tutorial spec names localhost:9092; the test broker must listen there")
    with running_cluster(tmp_path / "cluster", f"sqlite:///{tmp_path / 'md.db'}", {"mm1": 2}) as cluster:
        recreate_topic(kafka_bootstrap, "wikipedia", 1, timeout=30)
        sup = cluster.api.submit(json.loads(WIKI_SPEC.read_text()))
        _wait_reading(cluster, sup, 1)
        with gzip.open(WIKI_DATA, "rb") as f:
            lines = [line.rstrip(b"\n") for line in f if line.strip()]
        produce(kafka_bootstrap, "wikipedia", lines)
        wait_for(
            "lag 0",
            lambda: (
                cluster.api.status(sup)["latestOffsets"] == {"0": 39244}
                and cluster.api.status(sup)["aggregateLag"] == 0
            ),
            120,
            1.0,
        )
        cluster.api.suspend(sup)
        cluster.api.wait_published("wikipedia", 39244, 120)
        segments = cluster.api.segments("wikipedia")
        truth = Counter(r["page"] for r in read_segments(segments)).most_common(10)

        embedded = SyncClient(cluster.url, timeout_s=60)
        got = embedded.call("POST", "/druid/v2/sql", {"query": TUTORIAL_SQL})
        assert got[0] == {"page": "Wikipedia:Vandalismusmeldung", "Edits": 33}
        assert got[1] == {"page": "User:Cyde/List of candidates for speedy deletion/Subpage", "Edits": 28}
        assert [r["Edits"] for r in got] == [n for _, n in truth]
        count = embedded.call("POST", "/druid/v2/sql", {"query": "SELECT COUNT(*) AS n FROM wikipedia"})
        assert count == [{"n": 39244}]

        # a Broker process of its own, learning the segments over the Overlord's API
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "broker", "--overlord-url", cluster.url, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            broker = SyncClient(f"http://127.0.0.1:{port}", timeout_s=60)
            wait_for("broker up", lambda: probe_health("127.0.0.1", port) == 0, 30, 0.2)
            assert _ties_aside(broker.call("POST", "/druid/v2/sql", {"query": TUTORIAL_SQL})) == _ties_aside(
                got
            )

            client = PyDruid(f"http://127.0.0.1:{port}", "druid/v2")
            top = client.topn(
                datasource="wikipedia",
                granularity="all",
                intervals="2015-09-12/2015-09-13",
                dimension="page",
                metric="edits",
                threshold=3,
                aggregations={"edits": {"type": "count"}},
            )
            assert top.result[0]["result"][0] == {"page": "Wikipedia:Vandalismusmeldung", "edits": 33}
            series = client.timeseries(
                datasource="wikipedia",
                granularity="all",
                intervals="2015-09-12/2015-09-13",
                aggregations={"rows": {"type": "count"}},
            )
            # Druid's tutorial (tutorials/tutorial-query.md): granularity all answers at the first edit's time
            assert top.result[0]["timestamp"] == "2015-09-12T00:46:58.771Z"
            assert series.result == [{"timestamp": "2015-09-12T00:46:58.771Z", "result": {"rows": 39244}}]
            # pydruid's DB-API and SQLAlchemy dialect: the tutorial's query, SQL over HTTP
            cursor = pydruid.db.connect(host="127.0.0.1", port=port, path="/druid/v2/sql/").cursor()
            cursor.execute(TUTORIAL_SQL)
            assert tuple(cursor.fetchone()) == ("Wikipedia:Vandalismusmeldung", 33)
            engine = sqlalchemy.create_engine(f"druid://127.0.0.1:{port}/druid/v2/sql/")
            with engine.connect() as conn:
                wiki = sqlalchemy.Table("wikipedia", sqlalchemy.MetaData(), autoload_with=conn)
                total = conn.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(wiki)).scalar()
                assert total == 39244 and "channel" in wiki.c
        finally:
            proc.terminate()
            proc.wait(10)

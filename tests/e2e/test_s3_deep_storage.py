"""A cluster whose deep storage is S3 (SeaweedFS): no process reads another's files; the published
rows, read back from the object store by their loadSpecs, are the produced records, once each; a
Broker of its own answers Druid SQL over them from its segment cache (broker/segment_cache.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from overlord.client import wait_for
from supervisor.deep_storage import s3_bucket_key
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import running_cluster
from tests.harness.s3 import s3_env, s3_root
from tests.harness.segments import read_segments
from tests.harness.services import free_port
from tests.harness.specs import event, id_spec
from transport.client import SyncClient, probe_health

pytestmark = pytest.mark.e2e


def test_published_rows_read_back_from_s3(
    tmp_path: Path, sqlite_url: str, kafka_bootstrap: str, s3_endpoint: str
) -> None:
    root = s3_root(s3_endpoint, "e2e")
    bucket, prefix = s3_bucket_key(root)
    env = s3_env(s3_endpoint)
    deep = f"{root}/druid/segments?endpoint={s3_endpoint}&pathStyle=true&checksum=when_required"
    topic = f"s3-{uuid.uuid4().hex[:10]}"
    datasource = f"s3_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    # the processes get only the credentials: the store's settings come with the task spec
    creds = {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    with running_cluster(
        tmp_path / "cluster", sqlite_url, {"mm1": 2, "mm2": 2}, env=creds, deep_storage=deep
    ) as c:
        sup = c.api.submit(id_spec(datasource, topic, kafka_bootstrap, taskCount=2, taskDuration="PT6S"))
        base = int(time.time() * 1000)
        ids = [f"r{i}" for i in range(3000)]
        produce(kafka_bootstrap, topic, [event(x, base + i) for i, x in enumerate(ids)], 2)
        c.api.wait_published(datasource, len(ids), 120)
        c.api.suspend(sup)
        c.api.wait_quiet(datasource, 60)
        segments = c.api.segments(datasource)
        assert not c.deep_storage.exists(), "nothing was written to a local deep-storage directory"
        answers = _query_through_a_broker(tmp_path / "broker", c.url, deep, creds, datasource, len(segments))
    by_length = Counter(len(x) for x in ids)
    assert answers["count"] == [{"n": len(ids), "ids": len(ids)}], "each record once, through the Broker"
    assert answers["group"] == [{"len": k, "n": by_length[k]} for k in sorted(by_length)]
    assert segments and all(s["loadSpec"]["type"] == "s3" for s in segments)
    assert all(s["loadSpec"]["bucket"] == bucket for s in segments)
    assert all(s["loadSpec"]["key"].startswith(f"{prefix}/druid/segments/{datasource}/") for s in segments)
    rows = list(read_segments(segments, env))
    counts = Counter(str(r["id"]) for r in rows)
    assert set(counts) == set(ids), "every produced record is published"
    assert max(counts.values()) == 1, "no record twice"


def _query_through_a_broker(
    workdir: Path, overlord_url: str, deep: str, creds: dict[str, str], datasource: str, n_segments: int
) -> dict[str, Any]:
    """``python -m broker`` with only the credentials in its environment and the deep storage's
    settings in ``--deep-storage``: Druid SQL over the S3 segments, each downloaded once."""
    port = free_port()
    cache = workdir / "segment-cache"
    log = workdir / "broker.log"
    workdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))} | creds
    cmd = [sys.executable, "-m", "broker", "--overlord-url", overlord_url, "--port", str(port)]
    cmd += ["--deep-storage", deep, "--segment-cache-dir", str(cache), "--segment-cache-size", "1GiB"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        broker = SyncClient(f"http://127.0.0.1:{port}", timeout_s=60)
        wait_for("broker up", lambda: probe_health("127.0.0.1", port) == 0, 30, 0.2)
        count_sql = f'SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM "{datasource}"'
        group_sql = f'SELECT CHAR_LENGTH(id) AS len, COUNT(*) AS n FROM "{datasource}" GROUP BY 1 ORDER BY 1'
        answers = {
            "count": broker.call("POST", "/druid/v2/sql", {"query": count_sql}),
            "group": broker.call("POST", "/druid/v2/sql", {"query": group_sql}),
        }
        again = broker.call("POST", "/druid/v2/sql", {"query": count_sql})
        assert again == answers["count"]
        files = sorted(p.name for p in cache.glob("*.parquet"))
        assert len(files) == n_segments, f"one local copy per segment: {files}"
        downloads = log.read_text().count(" bytes from s3://")
        assert downloads == n_segments, f"each segment downloaded once for three queries:\n{log.read_text()}"
        return answers
    finally:
        proc.terminate()
        proc.wait(10)

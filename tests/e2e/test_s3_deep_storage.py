"""A cluster whose deep storage is S3 (SeaweedFS): no process reads another's files; the published
rows, read back from the object store by their loadSpecs, are the produced records, once each."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from supervisor.deep_storage import s3_bucket_key
from tests.harness.kafka import create_topic, produce
from tests.harness.processes import running_cluster
from tests.harness.s3 import s3_env, s3_root
from tests.harness.segments import read_segments
from tests.harness.specs import event, id_spec

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
    assert segments and all(s["loadSpec"]["type"] == "s3" for s in segments)
    assert all(s["loadSpec"]["bucket"] == bucket for s in segments)
    assert all(s["loadSpec"]["key"].startswith(f"{prefix}/druid/segments/{datasource}/") for s in segments)
    rows = list(read_segments(segments, env))
    counts = Counter(str(r["id"]) for r in rows)
    assert set(counts) == set(ids), "every produced record is published"
    assert max(counts.values()) == 1, "no record twice"

"""maxTotalRows and intermediateHandoffPeriod (issue 12.4): a task publishes what it holds long before
its taskDuration and the next task reads on from its end offsets; every record is published exactly once.

Real Kafka, an Overlord (SQLite) and one MiddleManager. taskDuration is ten minutes: every handoff seen
here comes from the limit under test (each publishing task's log names it).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from overlord.client import wait_for
from supervisor.ports import TaskState
from tests.harness.kafka import IdStream, create_topic
from tests.harness.processes import sqlite_cluster
from tests.harness.segments import published_ids
from tests.harness.specs import id_spec

pytestmark = pytest.mark.e2e

PARTITIONS = 2
HANDOFFS = 3


@pytest.mark.parametrize(
    ("tuning", "marker"),
    [
        ({"maxTotalRows": 400}, "maxTotalRows [400] reached"),
        ({"intermediateHandoffPeriod": "PT3S"}, "intermediateHandoffPeriod [PT3S] elapsed"),
    ],
    ids=["maxTotalRows", "intermediateHandoffPeriod"],
)
def test_a_task_publishes_mid_task_and_the_next_reads_on(
    tmp_path: Path, kafka_bootstrap: str, tuning: dict[str, Any], marker: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, ds = f"midhandoff-{tag}", f"midhandoff_{tag}"
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    stream = IdStream(kafka_bootstrap, topic, PARTITIONS)
    more, ids = stream.more, stream.ids

    more(300)
    spec = id_spec(ds, topic, kafka_bootstrap, taskDuration="PT10M")
    spec["spec"]["tuningConfig"].update(tuning)
    with sqlite_cluster(tmp_path) as c:
        assert c.api.submit(spec) == ds

        def succeeded() -> list[dict[str, Any]] | None:
            done = [t for t in c.api.tasks(datasource=ds) if t["statusCode"] == TaskState.SUCCESS]
            if len(done) >= HANDOFFS:
                return done
            more(150)  # the readers always have something new
            return None

        wait_for(f"{HANDOFFS} tasks published mid-task", succeeded, 120, 1.0)

        def caught_up() -> bool:
            st = c.api.status(ds)
            latest = sum((st["latestOffsets"] or {}).values())
            return bool(st["activeTasks"]) and latest >= len(ids) and st["aggregateLag"] == 0

        wait_for("caught up", caught_up, 90)
        c.api.suspend(ds)
        c.api.wait_quiet(ds, 120)

        task_root = c.workdir / "mm1" / "tasks"
        logs = {p.parent.name: p.read_text(errors="replace") for p in task_root.glob("index_kafka_*/log")}
        asked = [task for task, log in logs.items() if marker in log]
        assert len(asked) >= HANDOFFS, f"tasks that asked for handoff: {asked}"

        got = published_ids(c.api, ds)
        assert len(got) == len(set(got)), "a record was published twice"
        assert set(got) == set(ids), f"missing {len(set(ids) - set(got))} records"
        assert len(got) == len(ids)
        print(f"{marker}: {len(asked)} mid-task handoffs, {len(got)} of {len(ids)} records published once")

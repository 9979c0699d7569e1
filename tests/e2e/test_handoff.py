"""Handoff does not pause ingestion (issue 6): across each taskDuration rollover the next task is
reading within 2 seconds of the previous one getting its end offsets, and every record is published
exactly once.

Real Kafka, an Overlord (SQLite) and one MiddleManager. The gap is measured in the tasks' own logs:
from the previous task's ``end offsets set to`` to the next task's ``reading ... from`` (logged just
after its read loop took its startTime). The tasks after the first run in warm peons.
"""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from overlord.client import wait_for
from tests.harness.kafka import IdStream, create_topic
from tests.harness.processes import Cluster, sqlite_cluster
from tests.harness.segments import published_ids
from tests.harness.specs import id_spec

pytestmark = pytest.mark.e2e

GAP_LIMIT_S = 2.0
ROLLOVERS = 3
PARTITIONS = 2

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def _first(log: str, marker: str) -> float | None:
    """Epoch seconds of the first line of a text log that holds ``marker``."""
    for line in log.splitlines():
        m = _LOG_TIME.match(line)
        if m is not None and marker in line:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            return stamp + int(m.group(2)) / 1000
    return None


def _reading_tasks(task_root: Path) -> list[tuple[float, str, str]]:
    """(time it began reading, task id, its log) of every task that began, in that order."""
    out = []
    for log_file in task_root.glob("index_kafka_*/log"):
        log = log_file.read_text(errors="replace")
        began = _first(log, " reading ")
        if began is not None:
            out.append((began, log_file.parent.name, log))
    return sorted(out)


def _caught_up(c: Cluster, sup: str, produced: int) -> bool:
    st = c.api.status(sup)
    latest = sum((st["latestOffsets"] or {}).values())
    return bool(st["activeTasks"]) and latest >= produced and st["aggregateLag"] == 0


def test_the_next_task_reads_within_two_seconds_of_the_handoff(tmp_path: Path, kafka_bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, ds = f"handoff-{tag}", f"handoff_{tag}"
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    stream = IdStream(kafka_bootstrap, topic, PARTITIONS)
    more, ids = stream.more, stream.ids

    more(3000)
    with sqlite_cluster(tmp_path) as c:
        task_root = c.workdir / "mm1" / "tasks"
        c.api.submit(id_spec(ds, topic, kafka_bootstrap, taskDuration="PT5S", startDelay="PT0.5S"))

        def generations() -> list[tuple[float, str, str]] | None:
            tasks = _reading_tasks(task_root)
            if len(ids) < 3000 + 500 * len(tasks):
                more(500)  # every generation has something to read
            return tasks if len(tasks) > ROLLOVERS else None

        tasks = wait_for("task generations", generations, 60 + ROLLOVERS * 20, 0.2)
        wait_for("caught up", lambda: _caught_up(c, ds, len(ids)), 90)
        c.api.suspend(ds)
        c.api.wait_quiet(ds, 120)
        mm_log = (c.workdir / "logs" / "mm1.log").read_text(errors="replace")

        gaps = []
        for (_, previous, log), (began, following, _) in itertools.pairwise(tasks):
            end_set = _first(log, "end offsets set to")
            assert end_set is not None, f"{previous} never got its end offsets"
            gaps.append(began - end_set)
            assert f"task [{following}] handed to warm peon" in mm_log
        print("handoff gaps: " + ", ".join(f"{g:.2f}s" for g in gaps))
        assert all(g < GAP_LIMIT_S for g in gaps), f"handoff gaps {gaps}"

        got = published_ids(c.api, ds)
        assert len(got) == len(set(got)), "a record was published twice"
        assert set(got) == set(ids), f"missing {len(set(ids) - set(got))} records"

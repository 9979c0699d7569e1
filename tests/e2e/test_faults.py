"""Exactly-once under faults, the CI version: every fault of ``tests.e2e.faults.FAULTS`` once.

Its own Kafka broker and PostgreSQL server (restarted during the run), an Overlord and two
MiddleManagers; a stream of plain and transactional events (some transactions aborted); taskCount 2,
replicas 2, short taskDuration. After the faults the supervisor catches up and hands off, and the
published segments must hold every committed id exactly once and no aborted one. The long version is
``scripts/chaos --minutes N``.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest

from tests.e2e.faults import FAULTS, RunConfig, fault_run, inject_each_once

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

"""Behaviour of the metadata store, one suite over both backends: every test runs on a real SQLite file
and on a new, empty database of the real PostgreSQL server (``postgres_url``: it fails, never skips,
when the server cannot be had), through the ``backend`` parameter of ``blank_url``. Keep the tests
backend-neutral (they ask for ``blank_url``, ``metadata_url`` or ``store``); what only PostgreSQL has
(row locks held by another connection) is tested in ``test_publish_lock_wait.py``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect
from sqlalchemy.exc import OperationalError

from overlord.metadata import (
    MetadataStore,
    MetadataStoreUnavailable,
    PublishResult,
    SchemaNotMigrated,
    SegmentToPublish,
    TaskRow,
    downgrade,
    make_engine,
    migrate,
)
from overlord.metadata.druid import segment_id
from overlord.metadata.tables import metadata as model_metadata
from supervisor.chronology import MAX_INSTANT_MS, MIN_INSTANT_MS, format_instant
from supervisor.errors import InvalidInput
from supervisor.offsets import StreamPartition
from tests.harness.database import database_down, fresh_database

DS = "wiki"
TOPIC = "wiki-edits"
DAY_MS = 86_400_000
SEP_12 = 1_442_016_000_000  # 2015-09-12T00:00:00.000Z
SEP_13 = SEP_12 + DAY_MS


# --------------------------------------------------------------------------- fixtures


BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def blank_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database nobody migrated yet: a SQLite file whose parent directory does not exist either, or a
    new, empty PostgreSQL database, dropped after the test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/var/metadata.db"
        return
    with fresh_database(request.getfixturevalue("postgres_url"), "metadata_test") as url:
        yield url


@pytest.fixture
def metadata_url(blank_url: str) -> str:
    migrate(blank_url)
    return blank_url


@pytest.fixture
def store(metadata_url: str) -> Iterator[MetadataStore]:
    with MetadataStore(metadata_url) as opened:
        yield opened


# --------------------------------------------------------------------------- helpers


def seg(shard: int = 0, rows: int = 10, day: int = 0, path: str | None = None) -> SegmentToPublish:
    start = SEP_12 + day * DAY_MS
    return SegmentToPublish(
        interval_start_ms=start,
        interval_end_ms=start + DAY_MS,
        shard=shard,
        num_rows=rows,
        size_bytes=1000 + rows,
        path=path or f"/deep/{DS}/{day}/{shard}.parquet",
        dimensions=["page", "user"],
        metrics=["count", "added"],
    )


def publish(
    store: MetadataStore,
    sequence: str,
    start: Mapping[int, int],
    end: Mapping[int, int],
    segments: list[SegmentToPublish] | None = None,
    stream: str = TOPIC,
) -> PublishResult:
    return store.publish_segments(DS, stream, sequence, start, end, segments or [])


def offsets(store: MetadataStore) -> dict[int, int] | None:
    stored = store.get_offsets(DS)
    return None if stored is None else dict(stored.offsets)


def total_rows(store: MetadataStore) -> int:
    return sum(int(s["numRows"]) for s in store.list_segments(DS))


def test_the_store_runs_on_its_backend(store: MetadataStore, backend: str) -> None:
    assert store.dialect == {"sqlite": "sqlite", "postgres": "postgresql"}[backend]


# --------------------------------------------------------------------------- publishing


def test_first_publish_commits_offsets_and_segments(store: MetadataStore) -> None:
    result = publish(store, "seq-0", {0: 0, 1: 0}, {0: 10, 1: 5}, [seg(0, rows=7), seg(1, rows=8, day=1)])

    assert result.kind == "ok", result.reason
    assert result.ok and not result.retryable
    stored = store.get_offsets(DS)
    assert stored is not None
    assert (stored.stream, dict(stored.offsets), stored.version) == (TOPIC, {0: 10, 1: 5}, 1)
    assert len(result.segment_ids) == 2
    segments = store.list_segments(DS)
    assert [s["id"] for s in segments] == result.segment_ids
    assert [s["numRows"] for s in segments] == [7, 8]
    assert store.list_datasources() == [DS]
    assert [s["id"] for s in store.segments_for_sequence(DS, "seq-0")] == result.segment_ids
    assert store.segments_for_sequence(DS, "other") == []


def test_segment_payload_is_druid_data_segment(store: MetadataStore) -> None:
    result = publish(store, "seq-0", {0: 0}, {0: 3}, [seg(0, rows=3, path="/deep/x.parquet")])

    (payload,) = store.list_segments(DS)
    version = payload["version"]
    assert result.segment_ids == [f"{DS}_2015-09-12T00:00:00.000Z_2015-09-13T00:00:00.000Z_{version}"]
    assert len(version) == len("2026-11-22T00:00:00.000Z") and version.endswith("Z")
    assert payload == {
        "dataSource": DS,
        "interval": "2015-09-12T00:00:00.000Z/2015-09-13T00:00:00.000Z",
        "version": version,
        "loadSpec": {"type": "local", "path": "/deep/x.parquet"},
        "dimensions": "page,user",
        "metrics": "count,added",
        "shardSpec": {"type": "numbered", "partitionNum": 0, "partitions": 0},
        "binaryVersion": 9,
        "size": 1003,
        "identifier": result.segment_ids[0],
        "id": result.segment_ids[0],
        "numRows": 3,
        # our extra: the Broker tells a task group's published rows from its in-flight ones by it
        "sequenceName": "seq-0",
    }


def test_chained_publishes_advance_offsets(store: MetadataStore) -> None:
    assert publish(store, "seq-0", {0: 0, 1: 0}, {0: 10, 1: 5}, [seg(0)]).ok
    assert publish(store, "seq-1", {0: 10, 1: 5}, {0: 20, 1: 9}, [seg(0)]).ok
    assert publish(store, "seq-2", {0: 20, 1: 9}, {0: 25, 1: 9}, [seg(0), seg(1)]).ok

    stored = store.get_offsets(DS)
    assert stored is not None
    assert dict(stored.offsets) == {0: 25, 1: 9}
    assert stored.version == 3
    assert len(store.list_segments(DS)) == 4


def test_start_ahead_is_retryable_and_writes_nothing(store: MetadataStore) -> None:
    assert publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)]).ok

    result = publish(store, "seq-2", {0: 20}, {0: 30}, [seg(0, day=1)])

    assert result.kind == "retryable"
    assert "the start is ahead" in result.reason
    assert "an earlier task may still be publishing" in result.reason
    assert result.segment_ids == []
    assert offsets(store) == {0: 10}
    assert store.segments_for_sequence(DS, "seq-2") == []
    # Once the generation in between is committed, the same publish goes through.
    assert publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0)]).ok
    assert publish(store, "seq-2", {0: 20}, {0: 30}, [seg(0, day=1)]).ok
    assert offsets(store) == {0: 30}


def test_multi_topic_offsets_are_keyed_topic_partition(store: MetadataStore) -> None:
    """A topicPattern supervisor's offsets, stored under the pattern with Druid's KafkaTopicPartition
    keys ("topic:partition"); the compare-and-swap works per topic-partition."""
    a0, b0 = StreamPartition("m-a", 0), StreamPartition("m-b", 0)
    pattern = "m-.*"
    store.reset_partitions(DS, pattern, {a0: 0, b0: 0})
    assert publish(store, "seq-0", {a0: 0}, {a0: 10}, [seg(0)], stream=pattern).ok
    ahead = publish(store, "seq-2", {b0: 5}, {b0: 9}, [seg(0)], stream=pattern)
    assert ahead.kind == "retryable" and "m-b:0" in ahead.reason
    assert publish(store, "seq-1", {b0: 0}, {b0: 5}, [seg(0)], stream=pattern).ok
    stored = store.get_offsets(DS)
    assert stored is not None and stored.stream == pattern
    assert stored.offsets.to_json() == {"m-a:0": 10, "m-b:0": 5}
    assert publish(store, "seq-3", {0: 0}, {0: 1}, [seg(0)]).kind == "failed"  # another stream


def test_replayed_publish_returns_the_same_ids_without_new_rows(store: MetadataStore) -> None:
    segments = [seg(0, rows=4), seg(1, rows=5), seg(2, rows=6, day=1)]
    first = publish(store, "seq-0", {0: 0, 1: 0}, {0: 8, 1: 7}, segments)
    before = store.get_offsets(DS)

    again = publish(store, "seq-0", {0: 0, 1: 0}, {0: 8, 1: 7}, segments)

    assert first.ok and again.ok, again.reason
    assert again.segment_ids == first.segment_ids
    assert "already published" in again.reason
    assert store.get_offsets(DS) == before  # version not bumped either
    assert len(store.list_segments(DS)) == 3


def test_replica_publish_of_the_same_sequence_is_ok(store: MetadataStore) -> None:
    first = publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0, rows=6), seg(1, rows=4)])
    # The replica built the same rows into its own files, and lists them in another order.
    replica = publish(
        store,
        "seq-0",
        {0: 0},
        {0: 10},
        [seg(1, rows=4, path="/replica/1"), seg(0, rows=6, path="/replica/0")],
    )

    assert replica.ok, replica.reason
    assert replica.segment_ids == [first.segment_ids[1], first.segment_ids[0]]
    assert [s["loadSpec"]["path"] for s in store.list_segments(DS)] == [
        f"/deep/{DS}/0/0.parquet",
        f"/deep/{DS}/0/1.parquet",
    ]


def test_late_replica_is_ok_after_later_generations_moved_on(store: MetadataStore) -> None:
    first = publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)])
    assert publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0, day=1)]).ok

    late = publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)])

    assert late.ok, late.reason
    assert late.segment_ids == first.segment_ids
    assert offsets(store) == {0: 20}
    assert len(store.list_segments(DS)) == 2


def test_replica_with_different_segments_fails(store: MetadataStore) -> None:
    assert publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0, rows=10)]).ok

    other_rows = publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0, rows=9)])
    extra_shard = publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0, rows=10), seg(1, rows=1)])

    assert other_rows.kind == "failed" and "diverged" in other_rows.reason
    assert extra_shard.kind == "failed"
    assert len(store.list_segments(DS)) == 1


def test_other_sequence_over_committed_offsets_fails(store: MetadataStore) -> None:
    assert publish(store, "seq-0", {0: 0, 1: 0}, {0: 10, 1: 10}, [seg(0)]).ok

    same_range = publish(store, "seq-x", {0: 0, 1: 0}, {0: 10, 1: 10}, [seg(0)])
    overlapping = publish(store, "seq-y", {0: 5, 1: 10}, {0: 15, 1: 12}, [seg(0)])

    for result in (same_range, overlapping):
        assert result.kind == "failed", result.reason
        assert not result.retryable
        assert "does not match" in result.reason and "diverged" in result.reason
    assert offsets(store) == {0: 10, 1: 10}
    assert len(store.list_segments(DS)) == 1


def test_stream_mismatch_fails(store: MetadataStore) -> None:
    assert publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)]).ok

    result = publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0)], stream="another-topic")

    assert result.kind == "failed"
    assert f"stored metadata is for stream [{TOPIC}]" in result.reason
    assert offsets(store) == {0: 10}


def test_new_partition_matches_and_is_merged(store: MetadataStore) -> None:
    assert publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)]).ok
    # The topic grew a partition; the next task starts it from 0.
    assert publish(store, "seq-1", {0: 10, 1: 0}, {0: 12, 1: 3}, [seg(0)]).ok
    # A task of another task group owning only partition 2.
    assert publish(store, "seq-g2", {2: 0}, {2: 4}, []).ok

    assert offsets(store) == {0: 12, 1: 3, 2: 4}


def test_segment_ids_append_partitions_in_an_existing_interval(store: MetadataStore) -> None:
    first = publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0), seg(1), seg(2, day=1)])
    second = publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0), seg(1, day=1)])

    assert first.ok and second.ok
    by_id = {s["id"]: s for s in store.list_segments(DS)}
    version = by_id[first.segment_ids[0]]["version"]
    day0 = f"{DS}_2015-09-12T00:00:00.000Z_2015-09-13T00:00:00.000Z_{version}"
    day1 = f"{DS}_2015-09-13T00:00:00.000Z_2015-09-14T00:00:00.000Z_{version}"
    assert first.segment_ids == [day0, f"{day0}_1", day1]
    assert second.segment_ids == [f"{day0}_2", f"{day1}_1"]
    assert by_id[f"{day0}_2"]["shardSpec"] == {"type": "numbered", "partitionNum": 2, "partitions": 0}
    assert {s["version"] for s in by_id.values()} == {version}


def test_new_interval_gets_a_new_version(store: MetadataStore) -> None:
    first = publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)])
    time.sleep(0.005)
    second = publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0, day=5)])

    versions = [s["version"] for s in store.list_segments(DS)]
    assert first.ok and second.ok
    assert versions[0] < versions[1]
    assert second.segment_ids == [segment_id(DS, SEP_12 + 5 * DAY_MS, SEP_12 + 6 * DAY_MS, versions[1], 0)]


def test_empty_publish_moves_offsets(store: MetadataStore) -> None:
    first = publish(store, "seq-0", {0: 0, 1: 0}, {0: 100, 1: 50}, [])
    assert first.ok and first.segment_ids == []
    assert offsets(store) == {0: 100, 1: 50}
    assert store.list_segments(DS) == []
    assert store.list_datasources() == []

    # Its replay is ok; another sequence over the same range with data is not.
    assert publish(store, "seq-0", {0: 0, 1: 0}, {0: 100, 1: 50}, []).ok
    assert publish(store, "seq-z", {0: 0, 1: 0}, {0: 100, 1: 50}, [seg(0)]).kind == "failed"
    assert publish(store, "seq-1", {0: 100, 1: 50}, {0: 120, 1: 50}, [seg(0)]).ok
    assert offsets(store) == {0: 120, 1: 50}


def test_eternity_interval_of_all_granularity(store: MetadataStore) -> None:
    everything = SegmentToPublish(MIN_INSTANT_MS, MAX_INSTANT_MS, 0, 5, 10, "/deep/all", ["d"], ["count"])

    result = publish(store, "seq-0", {0: 0}, {0: 5}, [everything])

    assert result.ok, result.reason
    (payload,) = store.list_segments(DS)
    assert payload["interval"] == "-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z"
    assert result.segment_ids[0].startswith(
        f"{DS}_-146136543-09-08T08:23:32.096Z_146140482-04-24T15:36:27.903Z_"
    )


def test_instant_formatting() -> None:
    assert format_instant(0) == "1970-01-01T00:00:00.000Z"
    assert format_instant(SEP_12 + 1) == "2015-09-12T00:00:00.001Z"
    assert format_instant(-1) == "1969-12-31T23:59:59.999Z"
    assert format_instant(253_402_300_800_000) == "10000-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("start", "end", "segments", "problem"),
    [
        ({0: 0}, {0: 10, 1: 3}, [], "different partitions"),
        ({0: 10}, {0: 5}, [], "end offsets before start offsets"),
        ({0: 0}, {0: 10}, [seg(0), seg(0, day=1)], "distinct"),
        ({0: 0}, {0: 10}, [SegmentToPublish(SEP_12, SEP_12, 0, 1, 1, "/p", [], [])], "empty interval"),
    ],
)
def test_malformed_publish_fails(
    store: MetadataStore,
    start: dict[int, int],
    end: dict[int, int],
    segments: list[SegmentToPublish],
    problem: str,
) -> None:
    result = publish(store, "seq-0", start, end, segments)

    assert result.kind == "failed"
    assert problem in result.reason
    assert store.get_offsets(DS) is None


def test_database_error_rolls_back_and_is_retryable(store: MetadataStore) -> None:
    assert publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)]).ok
    failures = {"left": 1}

    def fail_segment_insert(
        _conn: object, _cursor: object, statement: str, *_args: object, **_kwargs: object
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SEGMENTS") and failures["left"]:
            failures["left"] -= 1
            raise OperationalError(statement, {}, Exception("injected: could not serialize access"))

    event.listen(store.engine, "before_cursor_execute", fail_segment_insert)
    try:
        failed = publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0)])
        # The offsets were updated before the segment insert failed: all of it rolled back.
        assert failed.kind == "retryable"
        assert "injected" in failed.reason
        stored = store.get_offsets(DS)
        assert stored is not None and dict(stored.offsets) == {0: 10} and stored.version == 1
        assert len(store.list_segments(DS)) == 1

        retried = publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0)])
        assert retried.ok, retried.reason
    finally:
        event.remove(store.engine, "before_cursor_execute", fail_segment_insert)
    assert offsets(store) == {0: 20}


def test_an_outage_is_metadata_store_unavailable_and_publish_stays_retryable(store: MetadataStore) -> None:
    assert publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)]).ok
    task = TaskRow(id="t1", datasource=DS, type="index_kafka", payload={"id": "t1"})
    calls: list[Callable[[], object]] = [
        lambda: store.get_offsets(DS),
        lambda: store.reset_partitions(DS, TOPIC, {1: 0}),
        lambda: store.insert_supervisor(DS, {"type": "kafka"}),
        lambda: store.latest_supervisors(),
        lambda: store.supervisor_history(DS),
        lambda: store.list_segments(DS),
        lambda: store.upsert_task(task),
        lambda: store.list_tasks(),
    ]
    with database_down(store.engine):
        for call in calls:
            with pytest.raises(MetadataStoreUnavailable, match=r"server closed the connection unexpectedly$"):
                call()
        # the publish's answer is unchanged: a value, retryable, nothing written
        result = publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0)])
        assert result.kind == "retryable" and "server closed the connection" in result.reason
    # back: nothing of the above was written, and the same store works without being reopened
    assert offsets(store) == {0: 10}
    assert store.latest_supervisors() == {} and store.list_tasks() == []
    for call in calls:
        call()
    assert offsets(store) == {0: 10, 1: 0}
    assert [t.id for t in store.list_tasks()] == ["t1"]
    assert publish(store, "seq-1", {0: 10}, {0: 20}, [seg(0)]).ok


# --------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("seeded", [False, True], ids=["no-stored-row", "stored-row"])
def test_concurrent_publishes_from_the_same_start_have_one_winner(store: MetadataStore, seeded: bool) -> None:
    threads_count = 8
    if seeded:
        store.reset_partitions(DS, TOPIC, {0: 0, 1: 0})
    barrier = threading.Barrier(threads_count)
    results: dict[int, PublishResult] = {}

    def contender(i: int) -> None:
        barrier.wait()
        results[i] = publish(
            store, f"seq-{i}", {0: 0, 1: 0}, {0: 100 + i, 1: 50 + i}, [seg(0, rows=1 + i), seg(1, rows=1)]
        )

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert len(results) == threads_count
    winners = [i for i, r in results.items() if r.ok]
    assert len(winners) == 1, {i: (r.kind, r.reason) for i, r in results.items()}
    (winner,) = winners
    assert all(r.kind in ("failed", "retryable") for i, r in results.items() if i != winner)
    assert offsets(store) == {0: 100 + winner, 1: 50 + winner}
    assert sorted(s["id"] for s in store.list_segments(DS)) == sorted(results[winner].segment_ids)
    assert total_rows(store) == 2 + winner
    # A loser retrying cannot get in either: its start is behind the winner's commit.
    for i in results:
        if i != winner:
            again = publish(store, f"seq-{i}", {0: 0, 1: 0}, {0: 100 + i, 1: 50 + i}, [seg(0, rows=1 + i)])
            assert again.kind == "failed", again.reason


def test_generations_published_concurrently_in_random_order_commit_exactly_once(store: MetadataStore) -> None:
    generations = 12
    replicas = 2
    rng = random.Random(20261122)
    # The supervisor recorded where reading starts before launching its first task group.
    store.reset_partitions(DS, TOPIC, {0: 0, 1: 0})

    def bounds(g: int) -> tuple[dict[int, int], dict[int, int]]:
        return {0: 10 * g, 1: 7 * g}, {0: 10 * (g + 1), 1: 7 * (g + 1)}

    def segments(g: int) -> list[SegmentToPublish]:
        return [seg(0, rows=100 + g, day=g % 3), seg(1, rows=1000 * (g + 1), day=(g + 1) % 3)]

    # Every task of every generation is running and publishing at once, in random order.
    jobs = [(g, r) for g in range(generations) for r in range(replicas)]
    rng.shuffle(jobs)
    barrier = threading.Barrier(len(jobs))
    lock = threading.Lock()
    outcomes: dict[tuple[int, int], PublishResult] = {}
    errors: list[str] = []

    def publisher(g: int, r: int, seed: int) -> None:
        jitter = random.Random(seed)
        start, end = bounds(g)
        barrier.wait()
        deadline = time.monotonic() + 60
        while True:
            result = publish(store, f"seq-{g}", start, end, segments(g))
            if result.kind != "retryable" or time.monotonic() > deadline:
                break
            time.sleep(jitter.uniform(0.001, 0.02))
        with lock:
            outcomes[(g, r)] = result
            if not result.ok:
                errors.append(f"generation {g} replica {r}: {result.kind} {result.reason}")

    threads = [threading.Thread(target=publisher, args=(g, r, i)) for i, (g, r) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert errors == []
    assert len(outcomes) == generations * replicas
    assert offsets(store) == bounds(generations - 1)[1]
    expected_rows = sum(s.num_rows for g in range(generations) for s in segments(g))
    assert total_rows(store) == expected_rows
    assert len(store.list_segments(DS)) == 2 * generations
    for g in range(generations):
        assert outcomes[(g, 0)].segment_ids == outcomes[(g, 1)].segment_ids
        assert len(store.segments_for_sequence(DS, f"seq-{g}")) == 2
    partition_nums = sorted((s["interval"], s["shardSpec"]["partitionNum"]) for s in store.list_segments(DS))
    assert len(set(partition_nums)) == len(partition_nums)
    stored = store.get_offsets(DS)
    assert stored is not None and stored.version == generations + 1  # the seed, then one per generation


# --------------------------------------------------------------------------- offsets


def test_reset_offsets_deletes_the_row(store: MetadataStore) -> None:
    assert store.reset_offsets(DS) is False
    assert publish(store, "seq-0", {0: 0}, {0: 10}, [seg(0)]).ok

    assert store.reset_offsets(DS) is True
    assert store.get_offsets(DS) is None
    assert len(store.list_segments(DS)) == 1  # segments stay
    # After a hard reset any start is accepted again.
    assert publish(store, "seq-1", {0: 500}, {0: 510}, [seg(0)]).ok
    assert offsets(store) == {0: 510}


def test_reset_partitions_merges_and_bumps_version(store: MetadataStore) -> None:
    store.reset_partitions(DS, TOPIC, {0: 5})
    first = store.get_offsets(DS)
    assert first is not None and dict(first.offsets) == {0: 5} and first.version == 1
    assert publish(store, "seq-0", {0: 5, 1: 0}, {0: 10, 1: 4}, [seg(0)]).ok

    store.reset_partitions(DS, TOPIC, {1: 40, 2: 7})

    stored = store.get_offsets(DS)
    assert stored is not None
    assert dict(stored.offsets) == {0: 10, 1: 40, 2: 7}
    assert stored.version == 3
    with pytest.raises(InvalidInput, match="stream"):
        store.reset_partitions(DS, "another-topic", {0: 1})
    # A task that started at the old offset of partition 1 is now behind the reset point.
    assert publish(store, "seq-1", {0: 10, 1: 4}, {0: 12, 1: 8}, [seg(0)]).kind == "failed"
    assert publish(store, "seq-2", {0: 10, 1: 40}, {0: 12, 1: 41}, [seg(0)]).ok


def test_delete_partitions(store: MetadataStore) -> None:
    assert store.delete_partitions(DS, [0]) is False
    store.reset_partitions(DS, TOPIC, {0: 1, 1: 2, 2: 3})

    assert store.delete_partitions(DS, {0, 2}) is True

    stored = store.get_offsets(DS)
    assert stored is not None and dict(stored.offsets) == {1: 2} and stored.version == 2
    # A deleted partition is new again: any start matches.
    assert publish(store, "seq-0", {0: 50, 1: 2}, {0: 60, 1: 3}, []).ok


# --------------------------------------------------------------------------- supervisors


def test_supervisor_history_and_tombstones(store: MetadataStore) -> None:
    assert store.latest_supervisors() == {}
    store.insert_supervisor("wiki", {"type": "kafka", "id": "wiki", "n": 1})
    store.insert_supervisor("clicks", {"type": "kafka", "id": "clicks", "n": 1})
    store.insert_supervisor("wiki", {"type": "kafka", "id": "wiki", "n": 2, "suspended": True})

    assert store.latest_supervisors() == {
        "clicks": {"type": "kafka", "id": "clicks", "n": 1},
        "wiki": {"type": "kafka", "id": "wiki", "n": 2, "suspended": True},
    }

    store.terminate_supervisor("wiki")

    assert list(store.latest_supervisors()) == ["clicks"]
    history = store.supervisor_history("wiki")
    assert [h["spec"].get("n") for h in history] == [None, 2, 1]
    assert history[0]["spec"] == {
        "type": "NoopSupervisorSpec",
        "id": "wiki",
        "dataSources": ["wiki"],
        "suspended": False,
    }
    assert all(set(h) == {"spec", "version"} for h in history)
    versions = [h["version"] for h in history]
    assert versions == sorted(versions, reverse=True)
    assert [h["spec"].get("n") for h in store.supervisor_history("wiki", count=2)] == [None, 2]
    assert store.supervisor_history("nope") == []
    everything = store.supervisor_history()
    assert [(h["spec"]["id"], h["spec"].get("n")) for h in everything] == [
        ("wiki", None),
        ("wiki", 2),
        ("clicks", 1),
        ("wiki", 1),
    ]
    assert [h["spec"]["id"] for h in store.supervisor_history(count=1)] == ["wiki", "clicks"]
    histories = store.supervisor_histories(count=2)
    assert {k: len(v) for k, v in histories.items()} == {"wiki": 2, "clicks": 1}

    # Re-submitting a terminated supervisor makes it active again.
    store.insert_supervisor("wiki", {"type": "kafka", "id": "wiki", "n": 3})
    assert store.latest_supervisors()["wiki"]["n"] == 3


# --------------------------------------------------------------------------- tasks


def task(task_id: str, created: str, **changes: Any) -> TaskRow:
    base = TaskRow(
        id=task_id,
        datasource=DS,
        type="index_kafka",
        payload={"id": task_id, "startOffsets": {"0": 0}},
        group_id=0,
        supervisor_id=DS,
        created_date=created,
    )
    return replace(base, **changes)


def test_tasks_crud(store: MetadataStore) -> None:
    assert store.get_task("t1") is None
    store.upsert_task(task("t1", "2026-01-01T00:00:00.000Z"))
    store.upsert_task(task("t2", "2026-01-02T00:00:00.000Z", datasource="clicks"))
    store.upsert_task(task("t3", "2026-01-03T00:00:00.000Z", status="SUCCESS", runner_status="NONE"))

    t1 = store.get_task("t1")
    assert t1 is not None
    assert (t1.status, t1.runner_status, t1.group_id, t1.worker, t1.report) == (
        "RUNNING",
        "PENDING",
        0,
        None,
        None,
    )
    assert t1.payload == {"id": "t1", "startOffsets": {"0": 0}}
    assert t1.updated_date

    assert store.update_task("t1", runner_status="RUNNING", worker="mm1:8091", host="mm1", port=8100) is True
    assert store.update_task("missing", status="FAILED") is False
    t1 = store.get_task("t1")
    assert t1 is not None
    assert (t1.runner_status, t1.worker, t1.host, t1.port) == ("RUNNING", "mm1:8091", "mm1", 8100)

    store.update_task("t1", status="FAILED", runner_status="NONE", error="boom", report={"rows": 3})
    t1 = store.get_task("t1")
    assert t1 is not None
    assert (t1.status, t1.error, t1.report) == ("FAILED", "boom", {"rows": 3})

    # Upserting an existing task overwrites it but keeps its creation date.
    store.upsert_task(task("t2", "2030-01-01T00:00:00.000Z", datasource="clicks", worker="mm2:8091"))
    t2 = store.get_task("t2")
    assert t2 is not None
    assert (t2.worker, t2.created_date) == ("mm2:8091", "2026-01-02T00:00:00.000Z")

    assert [t.id for t in store.list_tasks()] == ["t3", "t2", "t1"]
    assert [t.id for t in store.list_tasks(limit=2)] == ["t3", "t2"]
    assert [t.id for t in store.list_tasks(status="FAILED")] == ["t1"]
    assert [t.id for t in store.list_tasks(datasource=DS)] == ["t3", "t1"]
    assert [t.id for t in store.list_tasks(status="SUCCESS", datasource="clicks")] == []
    assert [t.id for t in store.active_tasks()] == ["t2"]

    with pytest.raises(InvalidInput):
        store.update_task("t1", colour="blue")
    with pytest.raises(InvalidInput):
        store.update_task("t1", status="DONE")
    with pytest.raises(InvalidInput):
        store.upsert_task(task("t9", "", runner_status="SLEEPING"))


def test_task_dates_are_stamped(store: MetadataStore) -> None:
    store.upsert_task(task("t1", ""))
    t1 = store.get_task("t1")
    assert t1 is not None
    assert t1.created_date.endswith("Z") and t1.created_date == t1.updated_date
    assert json.loads(json.dumps(t1.payload)) == t1.payload


# --------------------------------------------------------------------------- schema


def test_store_refuses_an_unmigrated_database(blank_url: str) -> None:
    with pytest.raises(SchemaNotMigrated, match=r"metadata store is not migrated: run `overlord migrate`"):
        MetadataStore(blank_url)


def test_migration_up_down_up(blank_url: str) -> None:
    migrate(blank_url)
    with MetadataStore(blank_url) as opened:
        assert publish(opened, "seq-0", {0: 0}, {0: 1}, [seg(0)]).ok

    downgrade(blank_url)

    engine = make_engine(blank_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        with pytest.raises(SchemaNotMigrated):
            MetadataStore(engine)
        migrate(blank_url)
        migrate(blank_url)  # idempotent at head
        with MetadataStore(engine) as reopened:
            assert reopened.get_offsets(DS) is None
            assert publish(reopened, "seq-0", {0: 0}, {0: 1}, [seg(0)]).ok
        assert {"supervisors", "datasource_metadata", "segments", "tasks"} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(metadata_url: str) -> None:
    engine = make_engine(metadata_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, model_metadata) == []
    finally:
        engine.dispose()

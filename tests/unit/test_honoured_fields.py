"""Spec fields that used to be accepted and ignored, now acting as in Druid (issue 12, part 4)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from middlemanager.ingest import IngestPipeline
from middlemanager.ingest import pipeline as pipeline_module
from middlemanager.ingest.fastjson import FastJsonPath
from middlemanager.runner import Outcome, TaskRunner
from overlord.metrics import SupervisorCollector
from supervisor import reports
from supervisor.errors import InvalidSpec
from supervisor.kafka.supplier import PollResult
from supervisor.ports import TaskState
from supervisor.records import Record
from supervisor.spec import SupervisorSpec, parse_supervisor_spec, read_supervisor_spec
from supervisor.task_spec import KafkaIndexTaskSpec
from tests.unit.test_dead_letters import _task, overlord
from tests.unit.test_ingest import DAY, HOUR, T0, event, make_spec, read_rows, records
from tests.unit.test_supervisor_loop import make_spec as loop_spec
from tests.unit.test_supervisor_loop import make_supervisor, run, world

__all__ = ["overlord", "world"]  # fixtures


def with_changes(spec: SupervisorSpec, **changes: Any) -> SupervisorSpec:
    """The spec with members of its JSON replaced: ``granularitySpec={...}`` merges into that object."""
    doc = spec.to_json()
    places = {
        "granularitySpec": doc["spec"]["dataSchema"],
        "dimensionsSpec": doc["spec"]["dataSchema"],
        "transformSpec": doc["spec"]["dataSchema"],
        "tuningConfig": doc["spec"],
        "ioConfig": doc["spec"],
    }
    for key, value in changes.items():
        places[key][key] = {**places[key].get(key, {}), **value}
    return parse_supervisor_spec(doc)


# ----------------------------------------------------------------------------- granularitySpec.intervals


def test_intervals_widen_to_segment_buckets_and_merge() -> None:
    spec = with_changes(
        make_spec(segment="HOUR"),
        granularitySpec={
            "intervals": [
                "2024-01-01T00:30:00Z/2024-01-01T01:10:00Z",
                "2024-01-01T01:20:00Z/PT1H",
                "2024-01-02/2024-01-03",
            ]
        },
    )
    assert spec.data_schema.granularity_spec.bucket_windows() == (
        (T0, T0 + 3 * HOUR),
        (T0 + DAY, T0 + 2 * DAY),
    )
    assert make_spec().data_schema.granularity_spec.bucket_windows() is None


def test_intervals_are_honoured_not_reported() -> None:
    doc = make_spec().to_json()
    doc["spec"]["dataSchema"]["granularitySpec"]["intervals"] = ["2024-01-01/2024-01-02"]
    notes = read_supervisor_spec(doc).notes
    assert not any("intervals" in field for field in notes.unhonoured_fields)


def test_a_bad_interval_names_its_place() -> None:
    doc = make_spec().to_json()
    doc["spec"]["dataSchema"]["granularitySpec"]["intervals"] = ["2024-01-01/2024-01-02", "yesterday"]
    with pytest.raises(InvalidSpec) as caught:
        parse_supervisor_spec(doc)
    assert caught.value.field == "spec.dataSchema.granularitySpec.intervals[1]"


@pytest.mark.parametrize("path", ["fast", "reference", "transforms"])
def test_rows_outside_the_intervals_are_thrown_away_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    spec = with_changes(
        make_spec(segment="HOUR", deadLetterTopic="dlq"),
        granularitySpec={"intervals": ["2024-01-01T01:15:00Z/2024-01-01T02:00:00Z"]},
    )
    if path == "transforms":
        spec = with_changes(
            spec,
            transformSpec={"transforms": [{"type": "expression", "name": "up", "expression": "upper(page)"}]},
        )
    if path == "reference":
        monkeypatch.setattr(FastJsonPath, "supports", staticmethod(lambda *args: False))
    monkeypatch.setattr(pipeline_module, "_FAST_MAX_BACKOFF", 0)
    values = [
        event(T0 + HOUR - 1, page="before", added=1),
        event(T0 + HOUR, page="first", added=1),  # the 01:00 bucket touches the interval
        event(T0 + 2 * HOUR - 1, page="last", added=1),
        event(T0 + 2 * HOUR, page="after", added=1),
        event(T0 + DAY, page="far", added=1),
    ]
    pipeline = IngestPipeline(spec, tmp_path / "work")
    assert (pipeline._fast is not None) == (path != "reference")  # transforms run on the fast path too
    pipeline.add(records(values))
    files = pipeline.finish(tmp_path / "out")
    assert (pipeline.stats.processed, pipeline.stats.thrown_away) == (2, 3)
    assert sorted(row["page"] for row in read_rows(files)) == ["first", "last"]
    rejected = pipeline.drain_rejected()
    assert [r.offset for r in rejected] == [0, 3, 4]
    assert all("outside the granularitySpec intervals" in r.reason for r in rejected)


# ------------------------------------------------------------------ maxTotalRows, intermediateHandoffPeriod


def test_max_total_rows_and_the_handoff_period_are_honoured_not_reported() -> None:
    doc = make_spec().to_json()
    doc["spec"]["tuningConfig"].update(maxTotalRows=1000, intermediateHandoffPeriod="PT10M")
    parsed = read_supervisor_spec(doc)
    assert parsed.notes.unhonoured_fields == ()
    tuning = parsed.spec.tuning_config
    assert (tuning.max_total_rows, tuning.handoff_period_s()) == (1000, 600.0)
    # Druid's "never" (its GET output) is no period at all
    doc["spec"]["tuningConfig"]["intermediateHandoffPeriod"] = "P2147483647D"
    assert parse_supervisor_spec(doc).tuning_config.handoff_period_s() is None
    # and partitionsSpec's maxTotalRows is the same knob
    doc["spec"]["tuningConfig"] = {"type": "kafka", "partitionsSpec": {"type": "dynamic", "maxTotalRows": 7}}
    assert parse_supervisor_spec(doc).tuning_config.max_total_rows == 7


class EndlessSupplier:
    """Hands out ``batch`` records a poll, forever (offsets 0, 1, 2, ...)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.next = 0

    def assign(self, _offsets: Any) -> None:
        pass

    def pause(self, _partitions: list[int]) -> None:
        pass

    def poll(self, _max: int, _timeout: float) -> PollResult:
        time.sleep(0.005)
        start, self.next = self.next, self.next + self.batch
        ts = 1_700_000_000_000
        return PollResult(
            records=[
                Record(0, o, json.dumps({"ts": ts, "id": str(o)}).encode(), ts)
                for o in range(start, self.next)
            ]
        )

    def close(self) -> None:
        pass


def _endless_task(tmp_path: Path, **tuning: Any) -> KafkaIndexTaskSpec:
    task = _task(None, **tuning)
    return task.model_copy(update={"end_offsets": None, "deep_storage": (tmp_path / "deep").as_uri()})


def _wait_for(predicate: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("tuning", "reason"),
    [
        ({"maxTotalRows": 50}, "maxTotalRows [50] reached"),
        ({"intermediateHandoffPeriod": "PT0.2S"}, "intermediateHandoffPeriod [PT0.2S] elapsed"),
    ],
)
def test_a_task_asks_for_handoff_and_publishes_what_it_read(
    tmp_path: Path, overlord: tuple[str, list[str], list[dict[str, Any]]], tuning: dict[str, Any], reason: str
) -> None:
    url, _events, actions = overlord
    runner = TaskRunner(
        _endless_task(tmp_path, **tuning),
        tmp_path / "task",
        url,
        supplier_factory=lambda _t: EndlessSupplier(10),  # type: ignore[arg-type,return-value]
    )
    outcome: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run()))
    thread.start()
    try:
        _wait_for(lambda: runner.progress().handoff_requested is not None, "the handoff request")
        assert runner.progress().handoff_requested == reason
        assert runner.pipeline.persist_count >= 1  # what it holds was persisted first
        if "maxTotalRows" in tuning:
            assert runner.pipeline.rows_held >= 50
        # what the supervisor does next: pause, end offsets at what it read
        reached = runner.pause()
        runner.set_end_offsets(reached, finish=True)
    finally:
        thread.join(30)
    assert outcome and outcome[0].status == "SUCCESS", outcome
    assert runner.progress().handoff_requested is None  # asked once, then the end offsets came
    (action,) = actions
    published = action["action"]
    assert published["endOffsets"] == {"0": reached[0]}
    assert sum(s["numRows"] for s in published["segments"]) == reached[0]  # every record read, once


def test_no_handoff_request_without_the_limits(
    tmp_path: Path, overlord: tuple[str, list[str], list[dict[str, Any]]]
) -> None:
    url, _events, _actions = overlord
    runner = TaskRunner(
        _endless_task(tmp_path),
        tmp_path / "task",
        url,
        supplier_factory=lambda _t: EndlessSupplier(10),  # type: ignore[arg-type,return-value]
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        _wait_for(lambda: runner.current[0] >= 500, "500 records read")
        assert runner.progress().handoff_requested is None
    finally:
        runner.set_end_offsets(runner.pause(), finish=True)
        thread.join(30)


def test_the_supervisor_hands_off_the_group_whose_task_asks(world: Any) -> None:
    clock, _, tasks, _ = world
    sup = make_supervisor(world)
    run(sup.run_once())
    tasks.read(5)
    asking = next(t for t in tasks.reading() if t.spec.group_id == 1)
    asking.handoff_requested = "maxTotalRows [5] reached"
    clock.advance(1)  # long before taskDuration
    run(sup.run_once())
    publishing = tasks.publishing()
    assert {t.spec.group_id for t in publishing} == {1}
    assert len(publishing) == 2  # both replicas of the group end at the same offsets
    ends = publishing[0].end
    assert all(t.end == ends for t in publishing)
    fresh = [t for t in tasks.reading() if t.spec.group_id == 1]
    assert len(fresh) == 2 and all(t.spec.start_offsets == ends for t in fresh)
    assert len([t for t in tasks.reading() if t.spec.group_id == 0]) == 2  # untouched


# ----------------------------------------------------------------------------- stopTaskCount


def test_stop_task_count_limits_the_groups_publishing_at_once(world: Any) -> None:
    clock, _, tasks, _ = world
    sup = make_supervisor(world, loop_spec(stopTaskCount=1, replicas=1))
    run(sup.run_once())
    tasks.read(5)
    clock.advance(61)
    run(sup.run_once())
    assert len(tasks.publishing()) == 1  # the other due group waits for the slot
    first = tasks.publishing()[0]
    clock.advance(1)
    run(sup.run_once())
    assert tasks.publishing() == [first]
    first.state = TaskState.SUCCESS  # published: the slot is free
    clock.advance(1)
    run(sup.run_once())
    assert {t.spec.group_id for t in tasks.publishing()} == {1 - first.spec.group_id}
    assert parse_supervisor_spec(loop_spec(stopTaskCount=1).to_json()).io_config.stop_task_count == 1
    assert read_supervisor_spec(loop_spec(stopTaskCount=1).to_json()).notes.unhonoured_fields == ()


def test_without_stop_task_count_every_due_group_ends(world: Any) -> None:
    clock, _, tasks, _ = world
    sup = make_supervisor(world, loop_spec(replicas=1))
    run(sup.run_once())
    clock.advance(61)
    run(sup.run_once())
    assert len(tasks.publishing()) == 2


# ----------------------------------------------------------------------------- emitTimeLagMetrics


@pytest.mark.parametrize("emit", [True, False])
def test_time_lag_metrics_only_when_asked(world: Any, emit: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    sup = make_supervisor(world, loop_spec(emitTimeLagMetrics=emit))
    run(sup.run_once())  # tasks start at offset 0 of partitions holding 100..400 records: all behind
    # (the fake tasks report no record times; the time lag itself is reports.lag_millis's)
    monkeypatch.setattr(reports, "lag_millis", lambda view: dict.fromkeys(view.partitions, 1500))
    collector = SupervisorCollector(lambda: [sup], dict)
    families = {family.name: family for family in collector.collect()}
    records = {s.labels["partition"] for s in families["kafka_indexer_lag_records"].samples}
    assert records == {"0", "1", "2", "3"}
    samples = families["kafka_indexer_lag_millis"].samples
    assert [(s.labels["partition"], s.value) for s in samples] == (
        [("0", 1500), ("1", 1500), ("2", 1500), ("3", 1500)] if emit else []
    )
    assert read_supervisor_spec(loop_spec(emitTimeLagMetrics=emit).to_json()).notes.unhonoured_fields == ()

"""ioConfig.topicPattern (Druid 28+): partition keys, group assignment, the spec, the task spec and
wire bodies, and the supervisor loop over several topics (fakes, no Kafka)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from supervisor import protocol as wire
from supervisor import reports
from supervisor.assignment import assign, group_for, java_string_hash
from supervisor.clock import FakeClock
from supervisor.errors import InvalidSpec
from supervisor.offsets import (
    PartitionOffsets,
    StreamPartition,
    parse_partition,
    partition_key,
)
from supervisor.ports import StoredOffsets
from supervisor.spec import parse_supervisor_spec
from supervisor.supervisor import Supervisor
from supervisor.task_spec import KafkaIndexTaskSpec
from tests.unit.test_supervisor_loop import FakeOffsets, FakeStream, FakeTasks, run

A0, A1, B0, C0 = (StreamPartition(t, p) for t, p in (("m-a", 0), ("m-a", 1), ("m-b", 0), ("m-c", 0)))


# --------------------------------------------------------------------------- keys


def test_keys_are_druids_kafka_topic_partition_strings() -> None:
    assert partition_key(3) == "3"
    assert partition_key(StreamPartition("metrics-a", 3)) == "metrics-a:3"
    assert parse_partition("3") == 3
    assert parse_partition("metrics-a:3") == StreamPartition("metrics-a", 3)
    # split at the last ':' as KafkaTopicPartition.fromString does
    assert parse_partition("a.b_c-d:12") == StreamPartition("a.b_c-d", 12)
    for bad in ("zero", "t:", ":3", "t:x", "", True, 1.5):
        with pytest.raises(ValueError):
            parse_partition(bad)


def test_single_topic_json_is_as_before_and_multi_topic_round_trips() -> None:
    single = PartitionOffsets({1: 7, 0: 5})
    assert single.to_json() == {"0": 5, "1": 7}
    assert list(PartitionOffsets.from_json({"1": 7, "0": 5})) == [0, 1]
    multi = PartitionOffsets({B0: 1, A1: 2, A0: 3})
    assert multi.to_json() == {"m-a:0": 3, "m-a:1": 2, "m-b:0": 1}
    assert PartitionOffsets.from_json(multi.to_json()) == multi
    assert multi.plus({"m-c:0": 9})[C0] == 9
    assert multi.minus([A1]).to_json() == {"m-a:0": 3, "m-b:0": 1}
    assert multi.max_with({A0: 10, A1: 0}).to_json() == {"m-a:0": 10, "m-a:1": 2, "m-b:0": 1}


# --------------------------------------------------------------------------- assignment


def test_java_string_hash() -> None:
    # values of java.lang.String#hashCode
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)  # the famous Integer.MIN_VALUE string


def test_group_of_a_multi_topic_partition_is_druids_hash() -> None:
    # KafkaSupervisor.getTaskGroupIdForPartition: Math.abs(31 * topic.hashCode() + partition) % taskCount
    # 31 * 99162322 overflows to -1220935314 (Java int); + 2 -> -1220935312; abs % 7 -> 1220935312 % 7
    assert group_for(StreamPartition("hello", 2), 7) == 1220935312 % 7
    assert group_for(StreamPartition("a", 0), 5) == (31 * 97) % 5
    assert group_for(5, 3) == 2  # single topic: partition % taskCount, as before
    groups = assign([A0, A1, B0, C0], 2)
    assert sorted(p for ps in groups.values() for p in ps) == [A0, A1, B0, C0]
    for gid, parts in groups.items():
        assert all(group_for(p, 2) == gid for p in parts)


# --------------------------------------------------------------------------- spec


def _io(**io: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "inputFormat": {"type": "json"},
        "consumerProperties": {"bootstrap.servers": "127.0.0.1:9"},
    }
    return {**base, **io}


def _spec(**io: Any) -> Any:
    return parse_supervisor_spec(
        {"type": "kafka", "spec": {"dataSchema": {"dataSource": "ds"}, "ioConfig": _io(**io)}}
    )


def test_spec_takes_topic_pattern() -> None:
    spec = _spec(topicPattern="metrics-.*")
    assert spec.io_config.topic is None and spec.io_config.multi_topic
    assert spec.io_config.stream == spec.topic == "metrics-.*"
    assert spec.to_json()["spec"]["ioConfig"]["topicPattern"] == "metrics-.*"
    assert "topic" not in spec.to_json()["spec"]["ioConfig"]
    assert parse_supervisor_spec(spec.to_json()) == spec
    # Druid's GET output shows the pattern as its stream
    assert _spec(topicPattern="metrics-.*", stream="metrics-.*") == spec
    single = _spec(topic="events")
    assert "topicPattern" not in single.to_json()["spec"]["ioConfig"] and not single.io_config.multi_topic


@pytest.mark.parametrize(
    ("io", "field", "words"),
    [
        ({"topic": "a", "topicPattern": "a|b"}, "spec.ioConfig.topicPattern", "Only one of topic"),
        ({}, "spec.ioConfig.topic", "Either topic or topicPattern must be specified"),
        ({"topicPattern": "metrics-(["}, "spec.ioConfig.topicPattern", "not a valid regular expression"),
        ({"topicPattern": ""}, "spec.ioConfig.topicPattern", ""),
        ({"topicPattern": "a.*", "stream": "b.*"}, "spec.ioConfig.stream", "differs from topicPattern"),
    ],
)
def test_spec_refuses_bad_topic_settings_naming_the_field(io: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        _spec(**io)
    assert e.value.field == field
    assert words in str(e.value)


# --------------------------------------------------------------------------- task spec and wire


def _task(**fields: Any) -> KafkaIndexTaskSpec:
    base: dict[str, Any] = {
        "id": "t1",
        "dataSource": "ds",
        "supervisorId": "ds",
        "groupId": 0,
        "sequenceName": "s",
        "supervisorSpec": {},
        "createdTime": "2024-01-01T00:00:00.000Z",
    }
    return KafkaIndexTaskSpec.model_validate({**base, **fields})


def test_task_spec_json_single_topic_unchanged_multi_topic_keyed_by_topic() -> None:
    single = _task(topic="events", startOffsets={"0": 5, "1": 6})
    assert single.start_offsets == {0: 5, 1: 6}
    as_json = single.to_json()
    assert "topicPattern" not in as_json
    assert as_json["topic"] == "events" and as_json["startOffsets"] == {"0": 5, "1": 6}
    multi = _task(
        topicPattern="m-.*", startOffsets={"m-a:0": 5, "m-b:0": 6}, endOffsets={"m-a:0": 9, "m-b:0": 6}
    )
    assert multi.start_offsets == {A0: 5, B0: 6} and multi.stream == "m-.*"
    assert multi.to_json()["startOffsets"] == {"m-a:0": 5, "m-b:0": 6}
    assert multi.to_json()["topicPattern"] == "m-.*"
    assert KafkaIndexTaskSpec.model_validate(multi.to_json()) == multi


def test_wire_offsets_take_both_key_forms_and_name_a_bad_key() -> None:
    report = wire.ProgressReport.model_validate({"status": "READING", "currentOffsets": {"m-a:1": 3}})
    assert report.current_offsets == {A1: 3}
    assert report.to_json()["currentOffsets"] == {"m-a:1": 3}
    with pytest.raises(ValidationError) as e:
        wire.ResetOffsetsRequest.model_validate(
            {"type": "kafka", "partitions": {"type": "end", "stream": "s", "partitionOffsetMap": {"x:y": 1}}}
        )
    assert "partitionOffsetMap" in str(e.value) and "x:y" in str(e.value)


# --------------------------------------------------------------------------- the loop


def _pattern_spec(**io: Any) -> Any:
    settings: dict[str, Any] = {
        "topicPattern": "m-.*",
        "taskCount": 2,
        "replicas": 1,
        "taskDuration": "PT60S",
        "completionTimeout": "PT120S",
        "useEarliestOffset": True,
    }
    return _spec(**{**settings, **io})


@pytest.fixture
def multi_world() -> tuple[FakeClock, FakeStream, FakeTasks, FakeOffsets]:
    clock = FakeClock()
    stream = FakeStream({A0: 10, A1: 20, B0: 30})  # type: ignore[dict-item]
    return clock, stream, FakeTasks(clock), FakeOffsets(stream="m-.*")


def _supervisor(world: Any, spec: Any = None) -> Supervisor:
    clock, stream, tasks, offsets = world
    return Supervisor(
        spec or _pattern_spec(), stream=stream, tasks=tasks, chat=tasks, offsets=offsets, clock=clock
    )


def test_tasks_read_topic_partitions_grouped_by_druids_hash(multi_world: Any) -> None:
    _, _, tasks, offsets = multi_world
    run(_supervisor(multi_world).run_once())
    specs = [t.spec for t in tasks.running()]
    read = {p for s in specs for p in s.start_offsets}
    assert read == {A0, A1, B0}
    for s in specs:
        assert s.topic is None and s.topic_pattern == "m-.*"
        assert all(group_for(p, 2) == s.group_id for p in s.start_offsets)
    # the first offsets are stored under the pattern, keyed "topic:partition"
    assert offsets.stored is not None and offsets.stored.stream == "m-.*"
    assert offsets.stored.offsets.to_json() == {"m-a:0": 0, "m-a:1": 0, "m-b:0": 0}


def test_a_new_matching_topic_is_read_from_its_earliest_offset(multi_world: Any) -> None:
    _, stream, tasks, _ = multi_world
    sup = _supervisor(multi_world, _pattern_spec(useEarliestOffset=False))
    run(sup.run_once())
    stream.latest[C0] = 40
    stream.earliest[C0] = 4
    run(sup.run_once())  # discovered: its group hands off early
    run(sup.run_once())
    starts = {p: o for t in tasks.reading() for p, o in t.spec.start_offsets.items()}
    assert starts[C0] == 4
    assert starts[A0] == 10  # the others go on from where they stood (latest at the start)


def test_status_lag_and_reset_offsets_per_topic_partition(multi_world: Any) -> None:
    _, _, tasks, offsets = multi_world
    sup = _supervisor(multi_world)
    run(sup.run_once())
    run(sup.run_once())
    payload = reports.status_payload(sup.view())["payload"]
    assert payload["stream"] == "m-.*" and payload["partitions"] == 3
    assert payload["latestOffsets"] == {"m-a:0": 10, "m-a:1": 20, "m-b:0": 30}
    assert payload["minimumLag"] == {"m-a:0": 10, "m-a:1": 20, "m-b:0": 30}
    assert payload["aggregateLag"] == 60
    wire.SupervisorStatusPayload.model_validate(payload)

    assert sup.partition_problem([A0]) is None
    assert "topic:partition" in (sup.partition_problem([0]) or "")
    assert "does not match" in (sup.partition_problem([StreamPartition("other", 0)]) or "")

    reading_b0 = {t.spec.id for t in tasks.running() if B0 in t.spec.start_offsets}
    others = {t.spec.id for t in tasks.running()} - reading_b0
    run(sup._reset_offsets(PartitionOffsets({B0: 25})))
    run(sup.run_once())
    assert reading_b0 <= set(tasks.killed) and not (others & set(tasks.killed))
    assert offsets.stored is not None and offsets.stored.offsets[B0] == 25
    restarted = [t for t in tasks.reading() if B0 in t.spec.start_offsets]
    assert restarted and all(t.spec.start_offsets[B0] == 25 for t in restarted)


def test_stored_offsets_of_another_stream_are_refused(multi_world: Any) -> None:
    _, _, tasks, offsets = multi_world
    offsets.stored = StoredOffsets("m-a", PartitionOffsets({0: 5}))
    sup = _supervisor(multi_world)
    run(sup.run_once())
    assert not tasks.running()
    assert any("reset the supervisor" in e.message for e in sup.state.recent_errors)


def test_single_topic_supervisor_refuses_topic_keys(multi_world: Any) -> None:
    clock, _, tasks, offsets = multi_world
    sup = Supervisor(
        _spec(topic="events"),
        stream=FakeStream({0: 1}),
        tasks=tasks,
        chat=tasks,
        offsets=offsets,
        clock=clock,
    )
    assert sup.partition_problem([0]) is None
    assert "by number" in (sup.partition_problem([A0]) or "")

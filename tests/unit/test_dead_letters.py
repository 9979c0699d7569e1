"""The dead-letter topic: every rejected record, with its reason, written before its offset is committed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from middlemanager.runner import Outcome, TaskRunner
from supervisor.errors import StreamError
from supervisor.kafka.producer import (
    HEADER_KIND,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_TASK,
    HEADER_TOPIC,
    HEADER_TRUNCATED,
    MAX_REASON_BYTES,
    TRUNCATED_VALUE_BYTES,
    DeadLetterProducer,
    producer_config,
)
from supervisor.kafka.supplier import PollResult
from supervisor.records import Record
from supervisor.task_spec import KafkaIndexTaskSpec
from tests.harness.stub_overlord import stub_overlord

# ------------------------------------------------------------------ fakes


class FakeKafkaProducer:
    """confluent_kafka.Producer's surface, in memory; ``fail_next`` deliveries fail once."""

    def __init__(self, events: list[str] | None = None, fail_next: int = 0, stuck: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self._callbacks: list[tuple[Any, dict[str, Any]]] = []
        self.fail_next = fail_next
        self.stuck = stuck
        self.events = events if events is not None else []

    def produce(self, topic: str, value: bytes | None = None, **kw: Any) -> None:
        msg = {"topic": topic, "value": value, **kw}
        self._callbacks.append((kw["on_delivery"], msg))

    def poll(self, _timeout: float = 0) -> int:
        return self._deliver()

    def _deliver(self) -> int:
        if self.stuck:
            return 0
        callbacks, self._callbacks = self._callbacks, []
        for cb, msg in callbacks:
            if self.fail_next > 0:
                self.fail_next -= 1
                cb(KafkaError(KafkaError._MSG_TIMED_OUT), None)
            else:
                self.messages.append(msg)
                cb(None, None)
        return len(callbacks)

    def flush(self, _timeout: float = 0) -> int:
        self._deliver()
        self.events.append("dead-letters flushed")
        return len(self._callbacks)

    def __len__(self) -> int:
        return len(self._callbacks)


class Rejected:
    def __init__(self, partition: int, offset: int, value: bytes | None, reason: str) -> None:
        self.partition = partition
        self.offset = offset
        self.value = value
        self.timestamp_ms = 1_000
        self.kind = "unparseable"
        self.reason = reason


class FakeSupplier:
    """Hands out the given records once, then the end of the log."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records

    def assign(self, _offsets: Any) -> None:
        pass

    def pause(self, _partitions: list[int]) -> None:
        pass

    def poll(self, _max: int, _timeout: float) -> PollResult:
        out, self.records = self.records, []
        if out:
            return PollResult(records=out)
        return PollResult(eof={0: 100})

    def close(self) -> None:
        pass


# What the stand-in Overlord answers to a publish (a test may change it with monkeypatch).
PUBLISH_ANSWER = {"kind": "ok", "reason": ""}


@pytest.fixture
def overlord() -> Iterator[tuple[str, list[str], list[dict[str, Any]]]]:
    """A stand-in Overlord answering every publish with ``PUBLISH_ANSWER``; records the order of events."""
    events: list[str] = []
    with stub_overlord(
        answer=lambda _action: {**PUBLISH_ANSWER, "segmentIds": ["s"]},
        on_action=lambda _action: events.append("publish"),
    ) as stub:
        yield stub.url, events, stub.actions


def _task(dead_letter_topic: str | None, **tuning: Any) -> KafkaIndexTaskSpec:
    tuning_config: dict[str, Any] = {"type": "kafka", **tuning}
    if dead_letter_topic is not None:
        tuning_config["deadLetterTopic"] = dead_letter_topic
    spec = {
        "type": "kafka",
        "spec": {
            "dataSchema": {
                "dataSource": "events",
                "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": {"dimensions": ["id"]},
                "granularitySpec": {"segmentGranularity": "hour", "rollup": False},
            },
            "ioConfig": {
                "topic": "events",
                "inputFormat": {"type": "json"},
                "consumerProperties": {"bootstrap.servers": "localhost:1"},
            },
            "tuningConfig": tuning_config,
        },
    }
    return KafkaIndexTaskSpec.model_validate(
        {
            "id": "index_kafka_events_test",
            "dataSource": "events",
            "supervisorId": "events",
            "groupId": 0,
            "sequenceName": "seq",
            "topic": "events",
            "startOffsets": {"0": 0},
            "endOffsets": {"0": 6},
            "supervisorSpec": spec,
            "createdTime": "2026-01-01T00:00:00.000Z",
        }
    )


def _records() -> list[Record]:
    ts = 1_700_000_000_000
    values: list[bytes | None] = [
        json.dumps({"ts": ts, "id": "a"}).encode(),
        b"not json",
        b"\xff\xfe not utf-8",
        json.dumps([1, 2]).encode(),
        json.dumps({"id": "no time"}).encode(),
        json.dumps({"ts": ts + 1, "id": "b"}).encode(),
    ]
    return [Record(0, i, v, ts) for i, v in enumerate(values)]


# ------------------------------------------------------------------ producer


def test_producer_config_keeps_connection_settings_only() -> None:
    conf = producer_config(
        {
            "bootstrap.servers": "k:9092",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "u",
            "ssl.ca.pem": "-----BEGIN CERTIFICATE-----",
            "group.id": "g",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "max.poll.records": 10,
        },
        client_id="t-dlq",
    )
    assert conf["bootstrap.servers"] == "k:9092"
    assert conf["sasl.username"] == "u"
    assert conf["sasl.mechanisms"] == "PLAIN"  # the Java name, translated
    assert conf["ssl.ca.pem"] == "-----BEGIN CERTIFICATE-----"
    assert conf["enable.idempotence"] is True
    assert conf["client.id"] == "t-dlq"
    for consumer_only in ("group.id", "auto.offset.reset", "isolation.level", "max.poll.records"):
        assert consumer_only not in conf


def test_every_rejected_record_is_sent_with_its_reason_and_source_in_headers() -> None:
    fake = FakeKafkaProducer()
    dlq = DeadLetterProducer("dlq", {}, source_topic="events", task_id="t1", producer=fake)
    dlq.send(
        [Rejected(3, 17, b"not json", "Unable to parse row [not json]"), Rejected(3, 18, None, "tombstone")]
    )
    dlq.flush(1)
    assert [m["value"] for m in fake.messages] == [b"not json", None]
    headers = dict(fake.messages[0]["headers"])
    assert headers[HEADER_REASON] == b"Unable to parse row [not json]"
    assert headers[HEADER_KIND] == b"unparseable"
    assert headers[HEADER_TOPIC] == b"events"
    assert headers[HEADER_PARTITION] == b"3"
    assert headers[HEADER_OFFSET] == b"17"
    assert headers[HEADER_TASK] == b"t1"
    assert dlq.delivered == 2


def test_long_reasons_are_cut() -> None:
    fake = FakeKafkaProducer()
    dlq = DeadLetterProducer("dlq", {}, source_topic="events", task_id="t1", producer=fake)
    dlq.send([Rejected(0, 0, b"x", "r" * 10_000)])
    dlq.flush(1)
    assert len(dict(fake.messages[0]["headers"])[HEADER_REASON]) == MAX_REASON_BYTES


def test_flush_sends_failed_deliveries_again() -> None:
    fake = FakeKafkaProducer(fail_next=2)
    dlq = DeadLetterProducer("dlq", {}, source_topic="events", task_id="t1", producer=fake)
    dlq.send([Rejected(0, i, b"x", "bad") for i in range(3)])
    dlq.flush(5)
    assert sorted(dict(m["headers"])[HEADER_OFFSET] for m in fake.messages) == [b"0", b"1", b"2"]


def test_flush_raises_when_the_topic_cannot_be_reached() -> None:
    fake = FakeKafkaProducer(stuck=True)
    dlq = DeadLetterProducer("dlq", {}, source_topic="events", task_id="t1", producer=fake)
    dlq.send([Rejected(0, 0, b"x", "bad")])
    with pytest.raises(StreamError, match="not delivered"):
        dlq.flush(0.1)


# ------------------------------------------------------------------ the task


def test_task_writes_rejected_records_before_it_publishes(
    tmp_path: Path, overlord: tuple[str, list[str], list[dict[str, Any]]]
) -> None:
    url, events, actions = overlord
    fake = FakeKafkaProducer(events)
    runner = TaskRunner(
        _task("events-dlq", maxSavedParseExceptions=10).model_copy(
            update={"deep_storage": (tmp_path / "deep").as_uri()}
        ),
        tmp_path / "task",
        url,
        supplier_factory=lambda _t: FakeSupplier(_records()),  # type: ignore[arg-type,return-value]
        dead_letter_factory=lambda t, topic: DeadLetterProducer(
            topic, {}, source_topic=t.topic, task_id=t.id, producer=fake
        ),
    )
    outcome = runner.run()
    assert outcome.status == "SUCCESS", outcome.error
    # flushed before the one publish
    assert events.index("dead-letters flushed") < events.index("publish")
    assert len(actions) == 1
    offsets = sorted(int(dict(m["headers"])[HEADER_OFFSET]) for m in fake.messages)
    assert offsets == [1, 2, 3, 4]
    assert {m["topic"] for m in fake.messages} == {"events-dlq"}
    stats = outcome.report["ingestionStatsAndErrors"]["payload"]["rowStats"]["buildSegments"]
    assert stats["processed"] == 2
    assert stats["unparseable"] == 4
    saved = outcome.report["ingestionStatsAndErrors"]["payload"]["unparseableEvents"]["buildSegments"]
    assert [(e["partition"], e["offset"]) for e in saved] == [(0, 1), (0, 2), (0, 3), (0, 4)]


def test_task_without_a_dead_letter_topic_makes_no_producer(
    tmp_path: Path, overlord: tuple[str, list[str], list[dict[str, Any]]]
) -> None:
    url, _events, _actions = overlord

    def no_producer(_t: KafkaIndexTaskSpec, _topic: str) -> DeadLetterProducer:
        raise AssertionError("no dead-letter topic configured")

    runner = TaskRunner(
        _task(None).model_copy(update={"deep_storage": (tmp_path / "deep").as_uri()}),
        tmp_path / "task",
        url,
        supplier_factory=lambda _t: FakeSupplier(_records()),  # type: ignore[arg-type,return-value]
        dead_letter_factory=no_producer,
    )
    assert runner.run().status == "SUCCESS"


def _run_stopped_once_publishing(tmp_path: Path, url: str) -> Outcome:
    """Run a task whose stop (SIGTERM from its MiddleManager) comes right as it starts publishing."""
    runner: TaskRunner | None = None

    def stop_now() -> None:
        assert runner is not None
        runner.stop()

    runner = TaskRunner(
        _task(None).model_copy(update={"deep_storage": (tmp_path / "deep").as_uri()}),
        tmp_path / "task",
        url,
        supplier_factory=lambda _t: FakeSupplier(_records()),  # type: ignore[arg-type,return-value]
        before_publish=stop_now,
    )
    return runner.run()


def test_a_stop_once_publishing_lets_the_publish_through(
    tmp_path: Path, overlord: tuple[str, list[str], list[dict[str, Any]]]
) -> None:
    """A MiddleManager stopping (SIGTERM) while a task publishes: the written segments are offered."""
    url, _events, actions = overlord
    outcome = _run_stopped_once_publishing(tmp_path, url)
    assert outcome.status == "SUCCESS", outcome.error
    assert len(actions) == 1


def test_a_stop_while_a_publish_must_wait_ends_the_task(
    tmp_path: Path, overlord: tuple[str, list[str], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt is made; when the Overlord says wait, the stop wins (a replacement redoes it)."""
    url, _events, actions = overlord
    monkeypatch.setitem(PUBLISH_ANSWER, "kind", "retryable")
    monkeypatch.setitem(PUBLISH_ANSWER, "reason", "an earlier group has not published yet")
    outcome = _run_stopped_once_publishing(tmp_path, url)
    assert outcome.status == "FAILED"
    assert outcome.error == "stopped while publishing"
    assert len(actions) == 1


def test_too_many_parse_exceptions_fail_the_task_after_sending_what_was_rejected(
    tmp_path: Path, overlord: tuple[str, list[str], list[dict[str, Any]]]
) -> None:
    url, events, actions = overlord
    fake = FakeKafkaProducer(events)
    runner = TaskRunner(
        _task("events-dlq", maxParseExceptions=2).model_copy(
            update={"deep_storage": (tmp_path / "deep").as_uri()}
        ),
        tmp_path / "task",
        url,
        supplier_factory=lambda _t: FakeSupplier(_records()),  # type: ignore[arg-type,return-value]
        dead_letter_factory=lambda t, topic: DeadLetterProducer(
            topic, {}, source_topic=t.topic, task_id=t.id, producer=fake
        ),
    )
    outcome = runner.run()
    assert outcome.status == "FAILED"
    assert "Max parse exceptions[2] exceeded" in (outcome.error or "")
    assert actions == []  # nothing published
    assert len(fake.messages) == 3  # the rejected records that got it over the limit


class SmallTopicProducer(FakeKafkaProducer):
    """Refuses values over ``limit`` bytes: locally (as librdkafka does over message.max.bytes) or,
    with ``broker=True``, in the delivery report (the topic's max.message.bytes)."""

    def __init__(self, limit: int, broker: bool = False) -> None:
        super().__init__()
        self.limit = limit
        self.broker = broker

    def produce(self, topic: str, value: bytes | None = None, **kw: Any) -> None:
        if value is not None and len(value) > self.limit:
            if not self.broker:
                raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
            kw["on_delivery"](KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
            return
        super().produce(topic, value, **kw)


@pytest.mark.parametrize("broker", [False, True], ids=["local-limit", "topic-limit"])
def test_a_record_too_large_for_the_dead_letter_topic_goes_cut_short(broker: bool) -> None:
    """Regression (fault suite, oversized record): the producer refused it, the task failed, and
    every replacement failed the same way, so ingestion stopped for good."""
    fake = SmallTopicProducer(limit=1_000_000, broker=broker)
    dlq = DeadLetterProducer("dlq", {}, source_topic="events", task_id="t1", producer=fake)
    big = b"x" * 1_200_000
    dlq.send([Rejected(0, 7, big, "larger than the limit"), Rejected(0, 8, b"small", "bad")])
    dlq.flush(5)
    by_offset = {dict(m["headers"])[HEADER_OFFSET]: m for m in fake.messages}
    assert by_offset[b"7"]["value"] == big[:TRUNCATED_VALUE_BYTES]
    assert dict(by_offset[b"7"]["headers"])[HEADER_TRUNCATED] == b"1200000"
    assert by_offset[b"8"]["value"] == b"small"
    assert HEADER_TRUNCATED not in dict(by_offset[b"8"]["headers"])

"""KafkaStreamAdmin's watermark questions ride out a leader that is not ready yet."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from supervisor.errors import StreamError
from supervisor.kafka import admin as admin_module
from supervisor.kafka.admin import WATERMARK_ATTEMPTS, KafkaStreamAdmin


class _Watermarks:
    """A consumer whose ``get_watermark_offsets`` fails with ``errors`` first, then answers."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return (3, 40 + tp.partition)


def _admin(consumer: _Watermarks, monkeypatch: pytest.MonkeyPatch) -> KafkaStreamAdmin:
    monkeypatch.setattr(admin_module.time, "sleep", lambda _s: None)
    admin = KafkaStreamAdmin("t", {"bootstrap.servers": "127.0.0.1:1"})
    admin._consumer = consumer  # type: ignore[assignment]
    return admin


def test_a_not_leader_answer_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Watermarks([KafkaError.NOT_LEADER_FOR_PARTITION])
    admin = _admin(consumer, monkeypatch)
    assert dict(admin.latest_offsets([0, 1])) == {0: 40, 1: 41}
    assert consumer.calls == 3


def test_a_lasting_retriable_error_is_raised_after_the_last_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Watermarks([KafkaError.NOT_LEADER_FOR_PARTITION] * WATERMARK_ATTEMPTS)
    with pytest.raises(StreamError) as caught:
        _admin(consumer, monkeypatch).earliest_offsets([0])
    assert caught.value.retriable and consumer.calls == WATERMARK_ATTEMPTS


def test_a_fatal_error_is_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Watermarks([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(StreamError) as caught:
        _admin(consumer, monkeypatch).latest_offsets([0])
    assert not caught.value.retriable and consumer.calls == 1


def test_no_sleep_when_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[Any] = []
    consumer = _Watermarks([])
    admin = _admin(consumer, monkeypatch)
    monkeypatch.setattr(admin_module.time, "sleep", slept.append)
    assert dict(admin.latest_offsets([2])) == {2: 42} and slept == []

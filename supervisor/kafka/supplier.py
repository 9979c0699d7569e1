"""Reads exact offset ranges of a topic for an indexing task."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, TopicPartition

from supervisor.errors import OffsetOutOfRange
from supervisor.kafka.config import consumer_config
from supervisor.kafka.errors import OUT_OF_RANGE, is_transient, wrap
from supervisor.records import Record

logger = logging.getLogger(__name__)

# librdkafka settings of a task's consumer, unless its consumerProperties say otherwise.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "fetch.wait.max.ms": 100,
    "queued.max.messages.kbytes": 65536,
}


@dataclass
class PollResult:
    records: list[Record] = field(default_factory=list)
    # partition -> the offset the consumer stands at after reaching the end of
    # the log (past any transaction markers)
    eof: dict[int, int] = field(default_factory=dict)


class KafkaRecordSupplier:
    """A consumer assigned to explicit partitions and offsets; never joins a group,
    never commits, reads committed transactional data only."""

    def __init__(self, topic: str, consumer_properties: Mapping[str, Any], client_id: str) -> None:
        self.topic = topic
        conf = consumer_config(consumer_properties, client_id=client_id)
        for key, value in CONSUMER_DEFAULTS.items():
            conf.setdefault(key, value)
        self._consumer = Consumer(conf)

    def assign(self, offsets: Mapping[int, int]) -> None:
        self._consumer.assign([TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())])

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self.topic, partition, offset))

    def pause(self, partitions: list[int]) -> None:
        if partitions:
            self._consumer.pause([TopicPartition(self.topic, p) for p in partitions])

    def poll(self, max_records: int, timeout_s: float) -> PollResult:
        result = PollResult()
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        except KafkaException as e:
            raise wrap(e, f"reading [{self.topic}]") from e
        records = result.records
        for msg in messages:
            partition = int(msg.partition() or 0)
            offset = msg.offset()
            err = msg.error()
            if err is not None:
                code = err.code()
                if code == KafkaError._PARTITION_EOF:
                    if offset is not None:
                        result.eof[partition] = offset
                    continue
                if code in OUT_OF_RANGE:
                    raise OffsetOutOfRange(
                        f"offset out of range on [{self.topic}/{partition}]: {err.str()}",
                        {partition: offset if offset is not None else -1},
                    )
                if is_transient(err):
                    logger.warning("transient Kafka error on [%s]: %s", self.topic, err.str())
                    continue
                raise wrap(err, f"reading [{self.topic}]")
            ts_type, ts = msg.timestamp()
            records.append(
                Record(
                    partition=partition,
                    offset=int(offset or 0),
                    value=msg.value(),
                    timestamp_ms=None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts,
                )
            )
        return result

    def close(self) -> None:
        try:
            self._consumer.close()
        except KafkaException as e:  # pragma: no cover - best effort on the way out
            logger.warning("closing consumer: %s", e)

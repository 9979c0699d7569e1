"""Stream metadata for the supervisor: partitions and earliest/latest offsets."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from supervisor.errors import StreamError
from supervisor.kafka.config import KafkaAccess, make_config
from supervisor.kafka.errors import wrap
from supervisor.offsets import (
    PartitionId,
    PartitionOffsets,
    StreamPartition,
    partition_number,
    sorted_partitions,
    topic_of,
)

logger = logging.getLogger(__name__)

# get_watermark_offsets: attempts on a retriable error, and the pause before the second (then 2x, ...)
WATERMARK_ATTEMPTS = 3
WATERMARK_RETRY_S = 0.2


class KafkaStreamAdmin:
    """Answers the supervisor's questions about one topic, or (``multi_topic``) about every topic
    whose whole name matches the regex ``topic`` (``ioConfig.topicPattern``).

    The consumer behind it is created lazily and never joins a group: it only
    asks for metadata and watermarks (with ``read_committed``, the high
    watermark a consumer sees is the last stable offset).
    """

    def __init__(
        self,
        topic: str,
        consumer_properties: Mapping[str, Any],
        timeout_s: float = 10.0,
        access: KafkaAccess | None = None,
        multi_topic: bool = False,
    ) -> None:
        self.topic = topic
        self.multi_topic = multi_topic
        self._pattern = re.compile(topic) if multi_topic else None
        self._props = dict(consumer_properties)
        self._access = access
        self._timeout_s = timeout_s
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(make_config(self._props, "supervisor-admin", self._access))
        return self._consumer

    def partitions(self) -> list[PartitionId]:
        if self._pattern is not None:
            return self._matching_partitions(self._pattern)
        with self._lock:
            try:
                md = self._client().list_topics(self.topic, timeout=self._timeout_s)
            except KafkaException as e:
                raise wrap(e, f"listing partitions of topic [{self.topic}]") from e
            topic_md = md.topics.get(self.topic)
            if topic_md is None:
                raise StreamError(f"topic [{self.topic}] not found", code="UNKNOWN_TOPIC_OR_PART")
            if topic_md.error is not None:
                raise wrap(topic_md.error, f"listing partitions of topic [{self.topic}]")
            return sorted(topic_md.partitions)

    def _matching_partitions(self, pattern: re.Pattern[str]) -> list[PartitionId]:
        """Every partition of every topic whose whole name matches (Druid's
        KafkaRecordSupplier.getPartitionIds in multi-topic mode: ``listTopics()`` filtered with
        ``pattern.matcher(topic).matches()``). Asked again each run, so topics created later
        that match are picked up with their partitions, on the supervisor's period."""
        with self._lock:
            try:
                md = self._client().list_topics(timeout=self._timeout_s)
            except KafkaException as e:
                raise wrap(e, f"listing topics matching [{self.topic}]") from e
        found: list[PartitionId] = []
        for name, topic_md in md.topics.items():
            if not pattern.fullmatch(name):
                continue
            if topic_md.error is not None:
                # a topic still being created answers LEADER_NOT_AVAILABLE: it is seen next run
                logger.info("topic [%s] matching [%s] not ready: %s", name, self.topic, topic_md.error)
                continue
            found.extend(StreamPartition(name, p) for p in topic_md.partitions)
        if not found:
            raise StreamError(
                f"No partitions found for topics that match given pattern [{self.topic}]. "
                "Check that the pattern regex is correct and matching topics exists",
                code="UNKNOWN_TOPIC_OR_PART",
            )
        return sorted_partitions(found)

    def _topic_partition(self, partition: PartitionId, offset: int | None = None) -> TopicPartition:
        topic = topic_of(partition, self.topic)
        number = partition_number(partition)
        return TopicPartition(topic, number) if offset is None else TopicPartition(topic, number, offset)

    def _watermarks(self, partitions: list[PartitionId]) -> dict[PartitionId, tuple[int, int]]:
        out: dict[PartitionId, tuple[int, int]] = {}
        with self._lock:
            client = self._client()
            for p in partitions:
                tp = self._topic_partition(p)
                for attempt in range(1, WATERMARK_ATTEMPTS + 1):
                    try:
                        low, high = client.get_watermark_offsets(tp, timeout=self._timeout_s, cached=False)
                        break
                    except KafkaException as e:
                        error = wrap(e, f"fetching offsets of [{tp.topic}/{tp.partition}]")
                        # Right after a topic is created (or a leader moves) the broker may answer
                        # NOT_LEADER_OR_FOLLOWER for a moment although the metadata shows a leader.
                        if not error.retriable or attempt == WATERMARK_ATTEMPTS:
                            raise error from e
                        logger.debug("%s; asking again", error)
                        time.sleep(WATERMARK_RETRY_S * attempt)
                out[p] = (int(low), int(high))
        return out

    def latest_offsets(self, partitions: list[PartitionId]) -> PartitionOffsets:
        return PartitionOffsets({p: hw for p, (_, hw) in self._watermarks(partitions).items()})

    def earliest_offsets(self, partitions: list[PartitionId]) -> PartitionOffsets:
        return PartitionOffsets({p: lw for p, (lw, _) in self._watermarks(partitions).items()})

    def scan_for_records(
        self, offsets: PartitionOffsets, timeout_s: float = 5.0
    ) -> tuple[set[PartitionId], PartitionOffsets]:
        with_records: set[PartitionId] = set()
        ends: dict[PartitionId, int] = {}
        if not offsets:
            return with_records, PartitionOffsets()
        conf = make_config(self._props, "supervisor-idle-scan", self._access)
        scanner = Consumer(conf)
        try:
            scanner.assign([self._topic_partition(p, o) for p, o in offsets.items()])
            deadline = time.monotonic() + timeout_s
            waiting = set(offsets)
            while waiting and time.monotonic() < deadline:
                for msg in scanner.consume(num_messages=100, timeout=0.2):
                    number = int(msg.partition() or 0)
                    p: PartitionId = StreamPartition(str(msg.topic()), number) if self.multi_topic else number
                    err = msg.error()
                    if err is None:
                        with_records.add(p)
                        waiting.discard(p)
                    elif err.code() == KafkaError._PARTITION_EOF:
                        eof = msg.offset()
                        if p not in with_records and eof is not None:
                            ends[p] = int(eof)
                        waiting.discard(p)
            # partitions that did not answer in time count as holding data: never skip blindly
            with_records.update(waiting)
        except KafkaException as e:
            raise wrap(e, f"scanning [{self.topic}]") from e
        finally:
            scanner.close()
        return with_records, PartitionOffsets({p: o for p, o in ends.items() if p not in with_records})

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                try:
                    self._consumer.close()
                finally:
                    self._consumer = None

"""Reads exact offset ranges of a topic for an indexing task."""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, TopicPartition

from supervisor.errors import OffsetOutOfRange
from supervisor.kafka.config import KafkaAccess, make_config
from supervisor.kafka.errors import OUT_OF_RANGE, is_transient, wrap
from supervisor.offsets import PartitionId, StreamPartition, partition_number, sorted_partitions, topic_of
from supervisor.records import Headers, RecordBatch, RecordMetadata

logger = logging.getLogger(__name__)

# librdkafka settings of a task's consumer, unless its consumerProperties say otherwise.
# A small prefetch queue bounds the task's memory; with librdkafka's default
# fetch.queue.backoff.ms (1 s) a small queue starves the reader, so the fetcher looks
# again after 10 ms instead (bench/ingest.py: about 2x the raw read rate of 64 MiB
# queues with the default backoff, and ~50 MiB less resident memory).
CONSUMER_DEFAULTS: dict[str, Any] = {
    "fetch.wait.max.ms": 100,
    "queued.max.messages.kbytes": 8192,
    "queued.min.messages": 10000,
    "fetch.queue.backoff.ms": 10,
}

# partition -> (lowest offset, highest offset, Kafka timestamp of the last record that has one)
Spans = dict[PartitionId, tuple[int, int, int | None]]


@dataclass
class PollResult:
    records: RecordBatch = field(default_factory=RecordBatch)
    # partition -> the offset the consumer stands at after reaching the end of
    # the log (past any transaction markers)
    eof: dict[PartitionId, int] = field(default_factory=dict)
    # what the records span per partition; the supplier fills it while it builds the
    # batch, :meth:`partition_spans` computes it otherwise
    spans: Spans | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.records, RecordBatch):
            self.records = RecordBatch.of(self.records)

    def partition_spans(self) -> Spans:
        if self.spans is None:
            self.spans = _spans(self.records)
        return self.spans


def _spans(records: RecordBatch) -> Spans:
    spans: Spans = {}
    for partition, offset, ts in zip(records.partitions, records.offsets, records.timestamps, strict=True):
        _add_span(spans, partition, offset, offset, ts)
    return spans


def _add_span(spans: Spans, partition: PartitionId, first: int, last: int, ts: int | None) -> None:
    span = spans.get(partition)
    if span is None:
        spans[partition] = (first, last, ts)
    else:
        spans[partition] = (min(span[0], first), max(span[1], last), span[2] if ts is None else ts)


class KafkaRecordSupplier:
    """A consumer assigned to explicit partitions and offsets; never joins a group,
    never commits, reads committed transactional data only.

    With ``multi_topic`` (a topicPattern task) ``topic`` is the pattern, partitions are
    :class:`StreamPartition` values that name their topics, and records carry them.
    """

    def __init__(
        self,
        topic: str,
        consumer_properties: Mapping[str, Any],
        client_id: str,
        access: KafkaAccess | None = None,
        multi_topic: bool = False,
        metadata: bool = False,
    ) -> None:
        self.topic = topic
        self.multi_topic = multi_topic
        # read each record's key, headers and topic too (the kafka input format needs them)
        self.metadata = metadata
        # (topic, partition) -> the StreamPartition records of it carry (one object per partition)
        self._keys: dict[tuple[str, int], StreamPartition] = {}
        conf = make_config(consumer_properties, client_id, access)
        for key, value in CONSUMER_DEFAULTS.items():
            conf.setdefault(key, value)
        self._consumer = Consumer(conf)

    def _topic_partition(self, partition: PartitionId, offset: int | None = None) -> TopicPartition:
        topic = topic_of(partition, self.topic)
        number = partition_number(partition)
        return TopicPartition(topic, number) if offset is None else TopicPartition(topic, number, offset)

    def _key(self, topic: str, number: int) -> PartitionId:
        if not self.multi_topic:
            return number
        key = self._keys.get((topic, number))
        if key is None:
            key = self._keys[(topic, number)] = StreamPartition(topic, number)
        return key

    def assign(self, offsets: Mapping[PartitionId, int]) -> None:
        self._consumer.assign([self._topic_partition(p, offsets[p]) for p in sorted_partitions(offsets)])

    def seek(self, partition: PartitionId, offset: int) -> None:
        self._consumer.seek(self._topic_partition(partition, offset))

    def pause(self, partitions: list[PartitionId]) -> None:
        if partitions:
            self._consumer.pause([self._topic_partition(p) for p in partitions])

    def poll(self, max_records: int, timeout_s: float) -> PollResult:
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        except KafkaException as e:
            raise wrap(e, f"reading [{self.topic}]") from e
        if not messages:
            return PollResult()
        # Thousands of new objects per poll would set off the cyclic GC again and again,
        # each time scanning everything the pipeline still holds; records make no cycles.
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            return self._records(messages)
        finally:
            if collecting:
                gc.enable()

    def _records(self, messages: list[Any]) -> PollResult:
        partitions: list[PartitionId] = []
        offsets: list[int] = []
        values: list[bytes | None] = []
        timestamps: list[int | None] = []
        keys: list[bytes | None] = []
        headers: list[Headers | None] = []
        topics: list[str] = []
        with_metadata = self.metadata
        meta = RecordMetadata(keys, headers, topics) if with_metadata else None
        result = PollResult(RecordBatch(partitions, offsets, values, timestamps, meta), spans={})
        spans = result.spans
        assert spans is not None
        add_partition = partitions.append
        add_offset = offsets.append
        add_value = values.append
        add_timestamp = timestamps.append
        not_available = TIMESTAMP_NOT_AVAILABLE
        # a poll returns runs of records of one partition, in offset order: the spans are
        # updated once per run, not once per record
        run_partition: PartitionId = -1
        run_topic = None
        run_number = -1
        multi = self.multi_topic
        run_first = run_last = 0
        run_ts: int | None = None
        for msg in messages:
            err = msg.error()
            if err is not None:
                err_number = int(msg.partition() or 0)
                err_partition = self._key(str(msg.topic()), err_number)
                err_offset = msg.offset()
                code = err.code()
                if code == KafkaError._PARTITION_EOF:
                    if err_offset is not None:
                        result.eof[err_partition] = err_offset
                    continue
                if code in OUT_OF_RANGE:
                    raise OffsetOutOfRange(
                        f"offset out of range on [{msg.topic()}/{err_number}]: {err.str()}",
                        {err_partition: err_offset if err_offset is not None else -1},
                    )
                if is_transient(err):
                    logger.warning("transient Kafka error on [%s]: %s", self.topic, err.str())
                    continue
                raise wrap(err, f"reading [{self.topic}]")
            # set on every message that is not an error
            number: int = msg.partition()
            if multi:
                topic = msg.topic()
                if number != run_number or topic != run_topic:
                    partition = self._key(topic, number)
                    run_topic = topic
                else:
                    partition = run_partition
            else:
                partition = number
            run_number = number
            offset: int = msg.offset()
            ts_type, kafka_ts = msg.timestamp()
            ts = None if ts_type == not_available else kafka_ts
            add_partition(partition)
            add_offset(offset)
            add_value(msg.value())
            add_timestamp(ts)
            if with_metadata:
                keys.append(msg.key())
                headers.append(msg.headers())
                topics.append(msg.topic())
            if partition != run_partition:
                if run_partition != -1:
                    _add_span(spans, run_partition, run_first, run_last, run_ts)
                run_partition = partition
                run_first = offset
                run_ts = None
            run_last = offset
            if ts is not None:
                run_ts = ts
        if run_partition != -1:
            _add_span(spans, run_partition, run_first, run_last, run_ts)
        return result

    def close(self) -> None:
        try:
            self._consumer.close()
        except KafkaException as e:  # pragma: no cover - best effort on the way out
            logger.warning("closing consumer: %s", e)

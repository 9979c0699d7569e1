"""The dead-letter producer: records a task rejected, written to ``tuningConfig.deadLetterTopic``.

Our extension of Druid. Each rejected record goes to the dead-letter topic with its original value
and Kafka timestamp, the reason in headers, and where it came from. A task calls :meth:`flush`
before it publishes, so a rejected record is in the dead-letter topic before its offset is
committed. Delivery is at least once: a task that fails after flushing, and every replica of a task
group, send their rejected records again; ``dlq.source.partition`` and ``dlq.source.offset`` identify
a record for whoever needs to de-duplicate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from supervisor.errors import StreamError
from supervisor.kafka.config import KafkaAccess, client_config, property_error
from supervisor.kafka.errors import wrap
from supervisor.kafka.properties import PropertyProblem
from supervisor.offsets import PartitionId, partition_number, topic_of

logger = logging.getLogger(__name__)

HEADER_REASON = "dlq.reason"
HEADER_KIND = "dlq.kind"
HEADER_TOPIC = "dlq.source.topic"
HEADER_PARTITION = "dlq.source.partition"
HEADER_OFFSET = "dlq.source.offset"
HEADER_TASK = "dlq.task.id"
# Set (to the original size in bytes) when the value was too large for the dead-letter topic and
# only its first TRUNCATED_VALUE_BYTES were sent.
HEADER_TRUNCATED = "dlq.value.truncated"
TRUNCATED_VALUE_BYTES = 64 * 1024
# Reasons quote the record; keep the header small.
MAX_REASON_BYTES = 2048

# Connection settings (librdkafka's, once ``consumerProperties`` are translated) that a producer
# shares with the consumers; consumer-only settings are left out.
_SHARED_PREFIXES = (
    "bootstrap.servers",
    "security.protocol",
    "sasl.",
    "ssl.",
    "enable.ssl",
    "https.",
    "client.dns.lookup",
    "client.rack",
    "socket.",
    "broker.",
    "metadata.",
    "topic.metadata.",
    "api.version",
    "reconnect.",
    "connections.max.idle.ms",
    "debug",
    "log_level",
)


class Rejected(Protocol):
    """What the dead-letter topic needs of a rejected record (the ingest engine's RejectedRecord)."""

    @property
    def partition(self) -> PartitionId: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp_ms(self) -> int | None: ...

    @property
    def kind(self) -> str: ...

    @property
    def reason(self) -> str: ...


def producer_config(
    consumer_properties: Mapping[str, Any], client_id: str, access: KafkaAccess | None = None
) -> dict[str, Any]:
    """A librdkafka producer config reaching the same cluster as ``consumerProperties``."""
    try:
        connection = client_config(consumer_properties, access).conf
    except PropertyProblem as e:
        raise property_error(e) from None
    conf = {k: v for k, v in connection.items() if k.startswith(_SHARED_PREFIXES)}
    conf["client.id"] = client_id
    conf["enable.idempotence"] = True  # no duplicates from the producer's own retries
    conf["acks"] = "all"
    conf.setdefault("linger.ms", 20)
    conf.setdefault("log_level", 3)
    return conf


def _too_large(err: object) -> bool:
    return isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE


def headers_of(record: Rejected, source_topic: str, task_id: str) -> list[tuple[str, bytes]]:
    reason = record.reason.encode("utf-8", errors="replace")
    if len(reason) > MAX_REASON_BYTES:
        reason = reason[: MAX_REASON_BYTES - 3] + b"..."
    return [
        (HEADER_REASON, reason),
        (HEADER_KIND, record.kind.encode()),
        (HEADER_TOPIC, topic_of(record.partition, source_topic).encode()),
        (HEADER_PARTITION, str(partition_number(record.partition)).encode()),
        (HEADER_OFFSET, str(record.offset).encode()),
        (HEADER_TASK, task_id.encode()),
    ]


class DeadLetterProducer:
    """Sends rejected records of one task to the dead-letter topic.

    :meth:`send` queues without blocking; :meth:`flush` waits until every record sent so far is
    acknowledged, sending again those whose delivery failed, and raises ``StreamError`` if that
    does not happen in time. Thread-safe enough for one task thread.
    """

    def __init__(
        self,
        topic: str,
        consumer_properties: Mapping[str, Any],
        *,
        source_topic: str,
        task_id: str,
        producer: Any = None,
        access: KafkaAccess | None = None,
    ) -> None:
        self.topic = topic
        self.source_topic = source_topic
        self.task_id = task_id
        self._producer: Any = (
            producer
            if producer is not None
            else Producer(producer_config(consumer_properties, f"{task_id}-dlq", access))
        )
        self._lock = threading.Lock()
        self._failed: list[tuple[Rejected, KafkaError, bool]] = []
        self.sent = 0
        self.delivered = 0

    def send(self, records: Sequence[Rejected]) -> None:
        for record in records:
            self._produce(record)
        self._producer.poll(0)

    def _produce(self, record: Rejected, truncate: bool = False) -> None:
        """Queue one record; a value too large for the topic goes out cut short, marked so."""

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            with self._lock:
                if err is None:
                    self.delivered += 1
                else:
                    self._failed.append((record, err, truncate))

        value = record.value
        headers = headers_of(record, self.source_topic, self.task_id)
        if truncate and value is not None and len(value) > TRUNCATED_VALUE_BYTES:
            headers.append((HEADER_TRUNCATED, str(len(value)).encode()))
            value = value[:TRUNCATED_VALUE_BYTES]
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=value,
                    timestamp=record.timestamp_ms or 0,
                    headers=headers,
                    on_delivery=on_delivery,
                )
                self.sent += 1
                return
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain
            except KafkaException as e:
                if not truncate and _too_large(e.args[0] if e.args else None):
                    self._produce(record, truncate=True)
                    return
                raise wrap(e, f"writing to dead-letter topic [{self.topic}]") from e

    def flush(self, timeout_s: float = 60.0) -> None:
        """Every record sent so far is in the dead-letter topic, or ``StreamError``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            remaining = self._producer.flush(max(0.0, min(left, 5.0)))
            with self._lock:
                failed, self._failed = self._failed, []
            for record, err, truncated in failed:
                logger.warning(
                    "task[%s] dead-letter record %d/%d not delivered (%s); sending again",
                    self.task_id,
                    record.partition,
                    record.offset,
                    err.str(),
                )
                self.sent -= 1
                self._produce(record, truncate=truncated or _too_large(err))
            if remaining == 0 and not failed:
                return
            if time.monotonic() >= deadline:
                pending = remaining + len(failed)
                raise StreamError(
                    f"{pending} records not delivered to dead-letter topic [{self.topic}] "
                    f"within {timeout_s:.0f}s",
                    code="_MSG_TIMED_OUT",
                )

    def close(self) -> None:
        try:
            self._producer.flush(5)
        except KafkaException as e:  # pragma: no cover - best effort on the way out
            logger.warning("closing dead-letter producer: %s", e)

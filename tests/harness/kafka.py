"""Kafka helpers for tests and benchmarks: topics (create, recreate, wait), the one producer helper, the
one read-to-end helper, and the latest offsets of a topic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports NewTopic without __all__, which mypy --strict rejects; same class.
from confluent_kafka.cimpl import NewTopic

from overlord.client import wait_for


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def kafka_answers(bootstrap: str, timeout: float = 10.0) -> bool:
    """True when the cluster answers a metadata request with at least one broker."""
    try:
        md = admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(md.brokers)


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    *,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Creates a topic (replication factor 1) and waits until every partition has a leader."""
    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    try:
        futures[name].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    wait_for_topic(bootstrap, name, partitions, timeout=timeout, admin=admin)


def recreate_topic(bootstrap: str, name: str, partitions: int = 1, *, timeout: float = 60.0) -> None:
    """Deletes the topic if it exists, waits until it is gone, and creates it again (retrying while
    the broker still deletes it), each within ``timeout``."""
    admin = admin_client(bootstrap)
    if name in admin.list_topics(timeout=10).topics:
        for fut in admin.delete_topics([name]).values():
            fut.result()
        wait_for(f"topic {name} gone", lambda: name not in admin.list_topics(timeout=10).topics, timeout)

    def created() -> bool:
        try:
            create_topic(bootstrap, name, partitions)
        except Exception:  # the broker may still be deleting it
            return False
        return True

    wait_for(f"topic {name} recreated", created, timeout, 1.0)


def wait_for_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    *,
    timeout: float = 30.0,
    admin: AdminClient | None = None,
) -> None:
    """Waits until the metadata shows ``partitions`` partitions of ``name``, each with a leader."""
    admin = admin or admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    last_problem = "no metadata yet"
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(topic=name, timeout=5)
        except KafkaException as exc:
            last_problem = str(exc)
        else:
            topic = md.topics.get(name)
            if topic is None:
                last_problem = "topic missing from metadata"
            elif topic.error is not None:
                last_problem = str(topic.error)
            elif len(topic.partitions) != partitions:
                last_problem = f"{len(topic.partitions)} of {partitions} partitions in metadata"
            elif any(p.leader < 0 or p.error is not None for p in topic.partitions.values()):
                last_problem = "a partition has no leader yet"
            else:
                return
        time.sleep(0.2)
    raise TimeoutError(f"topic {name} not ready within {timeout:.0f}s: {last_problem}")


def wait_for_end_offset(
    consumer: Consumer, topic: str, partition: int, expected: int, *, timeout: float = 30.0
) -> None:
    """Waits until ``get_watermark_offsets(cached=False)`` reports ``expected`` as the end offset.

    Under ``read_committed`` that end offset is the last stable offset (LSO), and it lags: the broker
    writes the COMMIT/ABORT markers asynchronously, so right after ``commit_transaction()`` returns the
    LSO often still stops before the committed records. Wait with this before reading them.
    """
    deadline = time.monotonic() + timeout
    last: tuple[int, int] | None = None
    while time.monotonic() < deadline:
        result = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5, cached=False)
        if result is not None:
            last = (int(result[0]), int(result[1]))
            if last[1] == expected:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{topic}[{partition}] end offset is {last}, not {expected}, after {timeout:.0f}s")


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------------------ produce


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes | None],
    partitions: int | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    partition: int | None = None,
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[list[tuple[str, bytes]] | None] | None = None,
    timestamps: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Idempotent producer; record i goes to partition i % ``partitions``, or to ``partition``, or
    (with neither) where the producer puts it, with key ``keys[i]``, headers ``headers[i]`` and Kafka
    timestamp ``timestamps[i]`` (ms) if given. Every record must be
    delivered; returns (partition, offset) of each."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True, **(config or {})}
    )
    where: dict[int, tuple[int, int]] = {}

    def on_delivery(i: int) -> Callable[[KafkaError | None, Any], None]:
        def delivered(err: KafkaError | None, msg: Any) -> None:
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        return delivered

    n = 0
    for i, value in enumerate(values):
        kw: dict[str, Any] = {"on_delivery": on_delivery(i)}
        if partitions is not None:
            kw["partition"] = i % partitions
        elif partition is not None:
            kw["partition"] = partition
        if keys is not None:
            kw["key"] = keys[i]
        if headers is not None and headers[i] is not None:
            kw["headers"] = headers[i]
        if timestamps is not None:
            kw["timestamp"] = timestamps[i]
        producer.produce(topic, value, **kw)
        if i % 1000 == 0:
            producer.poll(0)
        n = i + 1
    assert producer.flush(60) == 0
    return [where[i] for i in range(n)]


def transactional_producer(
    bootstrap: str,
    transactional_id: str,
    config: Mapping[str, Any] | None = None,
    *,
    init_timeout_s: float = 30.0,
) -> Producer:
    """A producer with ``transactional.id`` (and ``config``) whose transactions are initialised."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, **(config or {})}
    )
    producer.init_transactions(init_timeout_s)
    return producer


# ------------------------------------------------------------------------------------------ read


@dataclass
class ConsumedUntilEof:
    messages: list[Message]  # empty when the messages went to ``on_message``
    eof: dict[int, Message]  # partition -> the partition-EOF event


def consume_until_eof(
    consumer: Consumer,
    partitions: Sequence[int],
    *,
    timeout: float = 30.0,
    batch: int = 1,
    on_message: Callable[[Message], None] | None = None,
) -> ConsumedUntilEof:
    """Polls (the consumer needs ``enable.partition.eof=true``) until every partition reported EOF after
    its last message, ``batch`` messages a call at the most. The messages are kept in the answer, or
    handed to ``on_message`` instead. Raises on any other error event and on the deadline."""
    wanted = set(partitions)
    pending = set(wanted)
    messages: list[Message] = []
    keep = on_message or messages.append
    eof: dict[int, Message] = {}
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no EOF from partitions {sorted(pending)} within {timeout:.0f}s")
        for msg in consumer.consume(batch, min(remaining, 1.0)):
            err = msg.error()
            if err is None:
                keep(msg)
                if eof:  # a message after its partition's EOF: that partition is pending again
                    partition = msg.partition()
                    if partition in wanted and eof.pop(partition, None) is not None:
                        pending.add(partition)
                continue
            partition = msg.partition()
            assert partition is not None
            if err.code() == KafkaError._PARTITION_EOF:
                eof[partition] = msg
                pending.discard(partition)
            else:
                raise KafkaException(err)
    return ConsumedUntilEof(messages, eof)


def read_to_end(
    bootstrap: str,
    topic: str,
    on_message: Callable[[Message], None],
    *,
    config: Mapping[str, Any] | None = None,
    timeout: float = 120.0,
    batch: int = 5000,
) -> None:
    """Reads every partition of ``topic`` from offset 0 to its end (``config`` adds consumer settings,
    e.g. ``isolation.level``), handing each message to ``on_message``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("read-to-end"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 2,
            **(config or {}),
            "enable.partition.eof": True,
        }
    )
    try:
        parts = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        consume_until_eof(consumer, parts, timeout=timeout, batch=batch, on_message=on_message)
    finally:
        consumer.close()


def latest_offsets(bootstrap: str, topic: str, partitions: Sequence[int] | None = None) -> dict[int, int]:
    """The end offset of each partition of ``topic`` (of ``partitions``; by default all it has)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("offsets"), "log_level": 2})
    try:
        if partitions is None:
            partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1])
            for p in partitions
        }
    finally:
        consumer.close()


class IdStream:
    """Produces ``id_spec`` events with unique ids ``"0"``, ``"1"``, ... to a topic, stamped now;
    ``ids`` lists every id produced so far."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.ids: list[str] = []

    def more(self, n: int) -> None:
        from tests.harness.specs import event

        base = int(time.time() * 1000)
        batch = [str(len(self.ids) + i) for i in range(n)]
        produce(
            self.bootstrap, self.topic, [event(i, base + k) for k, i in enumerate(batch)], self.partitions
        )
        self.ids.extend(batch)

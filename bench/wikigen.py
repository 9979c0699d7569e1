"""Wikipedia-shaped events for the benchmark, and the topic that holds them.

An event is one JSON object of about 400 bytes: an ISO ``time``, 20 string dimensions
(low, mid and high cardinality, like the Wikipedia edits of Druid's tutorial) and three
long fields (``added``, ``deleted``, ``delta``). Timestamps are fresh: they cover the
``window_s`` seconds before the moment the topic is produced, in offset order.

A topic is named after its count and :data:`VERSION` (``bench-wiki-v<V>-<count>``) and is
reused when it already holds exactly that many records from offset 0 on its partitions.
"""

from __future__ import annotations

import functools
import io
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastavro
import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from supervisor.chronology import format_instant
from tests.harness.kafka import admin_client, recreate_topic
from tests.harness.protos import compile_proto

# Bump when the shape of the events changes: the topics of older versions are not reused.
VERSION = 1

DIMENSIONS: tuple[tuple[str, int, str], ...] = (
    # (name, distinct values, value prefix)
    ("channel", 50, "#w"),
    ("cityName", 2000, "c"),
    ("comment", 5000, "e"),
    ("countryIsoCode", 40, "C"),
    ("countryName", 40, "L"),
    ("isAnonymous", 2, "f"),
    ("isMinor", 2, "f"),
    ("isNew", 2, "f"),
    ("isRobot", 2, "f"),
    ("isUnpatrolled", 2, "f"),
    ("metroCode", 300, "m"),
    ("namespace", 10, "ns"),
    ("page", 20000, "P"),
    ("regionIsoCode", 200, "R"),
    ("regionName", 200, "Reg"),
    ("user", 8000, "U"),
    ("flags", 20, "MB"),
    ("diffUrl", 20000, "/d/"),
    ("sessionId", 50000, "s-"),
    ("platform", 5, "p"),
)
DIMENSION_NAMES: tuple[str, ...] = tuple(name for name, _, _ in DIMENSIONS)
LONG_FIELDS: tuple[str, ...] = ("added", "deleted", "delta")
TIME_COLUMN = "time"


# Columns of an event in order (the csv format lists them; values hold no comma or quote).
COLUMNS: tuple[str, ...] = (TIME_COLUMN, *DIMENSION_NAMES, *LONG_FIELDS)


def _csv(event: dict[str, object]) -> bytes:
    return ",".join(str(event[name]) for name in COLUMNS).encode()


# avro: the event as a flat record (strings and longs), plain Avro binary (schema_inline: no registry).
AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "WikiEvent",
    "namespace": "bench",
    "fields": [
        *({"name": name, "type": "string"} for name in (TIME_COLUMN, *DIMENSION_NAMES)),
        *({"name": name, "type": "long"} for name in LONG_FIELDS),
    ],
}
_AVRO_PARSED = fastavro.parse_schema(AVRO_SCHEMA)


def _avro(event: dict[str, object]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _AVRO_PARSED, event)
    return out.getvalue()


# protobuf: the same fields in a proto3 message, compiled by grpcio-tools' protoc (the ``file``
# decoder reads its descriptor set). proto3 leaves a long at 0 out (null on both paths' sums: 0).
PROTO_TEXT = (
    'syntax = "proto3";\npackage bench;\nmessage WikiEvent {\n'
    + "".join(f"  string {name} = {i + 1};\n" for i, name in enumerate((TIME_COLUMN, *DIMENSION_NAMES)))
    + "".join(f"  int64 {name} = {i + 2 + len(DIMENSION_NAMES)};\n" for i, name in enumerate(LONG_FIELDS))
    + "}\n"
)


@functools.cache
def _proto() -> tuple[Any, Path]:
    """The generated ``WikiEvent`` class and the descriptor set (compiled once per process)."""
    module, descriptor = compile_proto(
        Path(tempfile.gettempdir()) / f"bench-wiki-proto-v{VERSION}", "bench_wiki", PROTO_TEXT
    )
    return module.WikiEvent, descriptor


def _protobuf(event: dict[str, object]) -> bytes:
    message: bytes = _proto()[0](**event).SerializeToString()
    return message


# The record encoding of each benchmark format, and its ``inputFormat`` (:func:`input_format`).
ENCODERS: dict[str, Callable[[dict[str, object]], bytes]] = {
    "json": orjson.dumps,
    "csv": _csv,
    "avro": _avro,
    "protobuf": _protobuf,
}
INPUT_FORMATS: dict[str, dict[str, object]] = {
    "json": {"type": "json"},
    "csv": {"type": "csv", "columns": list(COLUMNS)},
    "avro": {"type": "avro_stream", "avroBytesDecoder": {"type": "schema_inline", "schema": AVRO_SCHEMA}},
}


def input_format(fmt: str) -> dict[str, object]:
    """The ``ioConfig.inputFormat`` of the events in ``fmt`` (protobuf: compiles its descriptor)."""
    if fmt == "protobuf":
        return {
            "type": "protobuf",
            "protoBytesDecoder": {
                "type": "file",
                "descriptor": _proto()[1].as_uri(),
                "protoMessageType": "bench.WikiEvent",
            },
        }
    return INPUT_FORMATS[fmt]


def topic_name(count: int, fmt: str = "json") -> str:
    return f"bench-wiki-v{VERSION}-{count}" + ("" if fmt == "json" else f"-{fmt}")


def events(
    count: int, end_ms: int, window_s: float = 600.0, seed: int = 6, chunk: int = 50_000, fmt: str = "json"
) -> Iterator[list[bytes]]:
    """``count`` events in chunks; event ``i`` is ``window_s * (count - i) / count`` s before ``end_ms``."""
    rng = random.Random(seed)
    pools = [[f"{prefix}{k}" for k in range(card)] for _, card, prefix in DIMENSIONS]
    window_ms = int(window_s * 1000)
    for base in range(0, count, chunk):
        n = min(chunk, count - base)
        columns = [rng.choices(pool, k=n) for pool in pools]
        added = [rng.randrange(3000) for _ in range(n)]
        deleted = [rng.randrange(300) for _ in range(n)]
        out: list[bytes] = []
        dumps = ENCODERS[fmt]
        names = DIMENSION_NAMES
        for j in range(n):
            i = base + j
            ms = end_ms - window_ms * (count - i) // count
            event: dict[str, object] = {TIME_COLUMN: format_instant(ms)}
            for name, column in zip(names, columns, strict=True):
                event[name] = column[j]
            event["added"] = added[j]
            event["deleted"] = deleted[j]
            event["delta"] = added[j] - deleted[j]
            out.append(dumps(event))
        yield out


def topic_holds(bootstrap: str, topic: str, count: int, partitions: int) -> bool:
    """Whether ``topic`` has ``partitions`` partitions holding ``count`` records from offset 0."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe", "log_level": 3})
    try:
        md = consumer.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return False
        total = 0
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if low != 0:
                return False
            total += high
        return total == count
    except KafkaException:
        return False
    finally:
        consumer.close()


def ensure_topic(
    bootstrap: str, count: int, partitions: int, log: Callable[[str], None] = print, fmt: str = "json"
) -> str:
    """The benchmark topic for ``count`` events in ``fmt``, produced unless it already holds them."""
    topic = topic_name(count, fmt)
    if topic_holds(bootstrap, topic, count, partitions):
        log(f"topic {topic}: reusing ({count:,} events over {partitions} partitions)")
        return topic
    if topic in admin_client(bootstrap).list_topics(timeout=10).topics:
        log(f"topic {topic}: incomplete, recreating")
    recreate_topic(bootstrap, topic, partitions)
    log(f"topic {topic}: producing {count:,} events over {partitions} partitions")
    t0 = time.perf_counter()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 512 * 1024,
        }
    )
    produced = 0
    size = 0
    for chunk in events(count, int(time.time() * 1000), fmt=fmt):
        for value in chunk:
            while True:
                try:
                    producer.produce(topic, value, partition=produced % partitions)
                    break
                except BufferError:
                    producer.poll(0.05)
            produced += 1
            size += len(value)
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError(f"producing to {topic}: messages left unsent")
    if not topic_holds(bootstrap, topic, count, partitions):
        raise RuntimeError(f"producing to {topic}: the topic does not hold {count} records")
    log(
        f"topic {topic}: {count:,} events, {size / count:.0f} bytes each on average, "
        f"produced in {time.perf_counter() - t0:.1f}s"
    )
    return topic

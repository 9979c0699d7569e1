"""Kafka errors classified by their code, in one table."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from supervisor.errors import StreamError

# Codes after which the same call may well succeed a moment later.
_TRANSIENT: frozenset[int] = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._WAIT_COORD,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._PARTITION_EOF,
        KafkaError._RESOLVE,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._QUEUE_FULL,
        KafkaError._INTR,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.KAFKA_STORAGE_ERROR,
        KafkaError.FETCH_SESSION_ID_NOT_FOUND,
        KafkaError.INVALID_FETCH_SESSION_EPOCH,
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError.UNSTABLE_OFFSET_COMMIT,
    }
)

# Codes that mean the offsets asked for are not in the log.
OUT_OF_RANGE: frozenset[int] = frozenset({KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET})


def is_transient(error: KafkaError) -> bool:
    return error.code() in _TRANSIENT or bool(error.retriable())


def wrap(error: KafkaError | KafkaException | BaseException, doing: str) -> StreamError:
    """Turn a Kafka error into our StreamError, keeping its code."""
    kafka_error: KafkaError | None = None
    if isinstance(error, KafkaError):
        kafka_error = error
    elif isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        kafka_error = error.args[0]
    if kafka_error is None:
        return StreamError(f"{doing}: {error}", code=None, retriable=True)
    return StreamError(
        f"{doing}: {kafka_error.name()}: {kafka_error.str()}",
        code=kafka_error.name(),
        retriable=is_transient(kafka_error),
    )

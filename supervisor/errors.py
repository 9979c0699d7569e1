"""One exception tree for the whole project.

Every error knows the HTTP status it maps to and whether retrying the same
operation may succeed. The Overlord's single error middleware turns these into
Druid-style ``{"error": "..."}`` responses; nothing else chooses a status code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class IndexerError(Exception):
    """Root of every error this project raises on purpose."""

    status: int = 500
    retriable: bool = False
    #: Seconds after which the same request may succeed (the ``Retry-After`` header); None: no hint.
    retry_after_s: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(IndexerError):
    """The caller sent something we cannot accept (bad JSON, bad spec, bad parameter)."""

    status = 400


class InvalidSpec(InvalidInput):
    """A supervisor spec failed validation; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class NotFound(IndexerError):
    status = 404


class Conflict(IndexerError):
    status = 409


class PayloadTooLarge(InvalidInput):
    status = 413


class Unavailable(IndexerError):
    """A dependency (Kafka, metadata store, a task) cannot be reached right now."""

    status = 503
    retriable = True


class MetadataStoreUnavailable(Unavailable):
    """The metadata store cannot be reached right now (connection refused or lost, pool exhausted).

    Nothing was written; the same operation may succeed once the database is back.
    """

    retry_after_s = 5


class StreamError(Unavailable):
    """Kafka said no; ``code`` is the librdkafka error code name when known."""

    def __init__(self, message: str, code: str | None = None, retriable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable


class HttpStatusError(IndexerError):
    """Another process answered an HTTP call with an error status (``status``: the one it sent)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.retriable = status >= 500 or status == 429


class BadAnswer(IndexerError):
    """Another process answered with a body that does not follow the wire contract."""

    status = 502


class TaskFailed(IndexerError):
    """An indexing task cannot go on (too many parse errors, lost offsets, ...)."""

    status = 500


class TooManyParseExceptions(TaskFailed):
    pass


class OffsetOutOfRange(TaskFailed):
    """The offsets a task must read are no longer (or not yet) in the stream."""

    def __init__(self, message: str, partitions: Mapping[Any, int]) -> None:
        super().__init__(message)
        self.partitions = partitions


class IllegalStateTransition(IndexerError):
    status = 409

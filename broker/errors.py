"""Druid's query error bodies and statuses.

Druid's docs, querying/querying.md "Query errors": a failed query answers a JSON object with
``error`` (a fixed code such as ``Query timeout``), ``errorMessage``, ``errorClass`` and ``host``;
504 for a timeout, 400 for a query that cannot be planned, 429 for capacity, 500 otherwise. Druid 28+
SQL errors (``DruidException``) carry ``errorCode``/``persona``/``category`` and a ``context`` with the
``line``/``column`` of a parse error; both forms' members are present here so either kind of client
finds what it looks for.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class QueryError(Exception):
    """A query that failed; its Druid error body and HTTP status."""

    status = 400
    error = "Plan validation failed"
    error_code = "invalidInput"
    category = "INVALID_INPUT"
    error_class = "org.apache.druid.sql.calcite.planner.ValidationException"

    def __init__(self, message: str, context: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.context = context or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "errorCode": self.error_code,
            "persona": "USER",
            "category": self.category,
            "errorMessage": self.message,
            "errorClass": self.error_class,
            "host": None,
            "context": self.context,
        }

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=headers)


class SqlParseError(QueryError):
    error = "SQL parse failed"
    error_class = "org.apache.druid.sql.calcite.parser.DruidSqlParseException"


class JsonParseFailed(QueryError):
    """A native query Druid could not read (querying/querying.md; QueryException's
    ``Json parse failed``): a bad interval, a value of the wrong type. 400."""

    error = "Json parse failed"
    error_code = "invalidInput"
    error_class = "com.fasterxml.jackson.databind.JsonMappingException"


class UnknownQueryType(JsonParseFailed):
    """A ``queryType`` Druid does not know (or none): Jackson's type-id error, 400."""

    error_class = "com.fasterxml.jackson.databind.exc.InvalidTypeIdException"

    def __init__(self, kind: object, known: tuple[str, ...]) -> None:
        if kind is None:
            text = (
                "Missing type id when trying to resolve subtype of [simple type, class "
                "org.apache.druid.query.Query]: missing type id property 'queryType'"
            )
        else:
            text = (
                f"Could not resolve type id '{kind}' as a subtype of `org.apache.druid.query.Query`: "
                f"known type ids = [{', '.join(sorted(known))}]"
            )
        super().__init__(text)


class Unsupported(QueryError):
    """Valid SQL Druid users write, not (yet) served here: 400 as Druid's ``Unsupported operation``."""

    error = "Unsupported operation"
    error_code = "invalidInput"
    error_class = "org.apache.druid.query.QueryUnsupportedException"


class QueryTimeout(QueryError):
    status = 504
    error = "Query timeout"
    error_code = "timeout"
    category = "TIMEOUT"
    error_class = "org.apache.druid.query.QueryTimeoutException"


class ResourceLimitExceeded(QueryError):
    error = "Resource limit exceeded"
    error_code = "resourceLimitExceeded"
    category = "CAPACITY_EXCEEDED"
    error_class = "org.apache.druid.query.ResourceLimitExceededException"


class QueryUnavailable(QueryError):
    """The Broker cannot learn the segments (the Overlord does not answer): 503, try again."""

    status = 503
    error = "Query capacity exceeded"
    error_code = "unavailable"
    category = "RUNTIME_FAILURE"
    error_class = "org.apache.druid.query.QueryCapacityExceededException"


class QueryFailed(QueryError):
    status = 500
    error = "Unknown exception"
    error_code = "runtimeFailure"
    category = "RUNTIME_FAILURE"
    error_class = "org.apache.druid.query.QueryInterruptedException"

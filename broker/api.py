"""The Broker's HTTP API on Druid's paths: ``POST /druid/v2/sql``, ``POST /druid/v2``,
``GET /druid/v2/datasources[/{ds}]``.

:func:`add_routes` puts them on any aiohttp application: the Broker's own (:func:`build_app`,
``python -m broker``) or the Overlord's, for the embedded single-process default. Every query reads
one segment snapshot (:mod:`broker.catalog`) and runs on a fresh locked-down DuckDB
(:mod:`broker.engine`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broker import native, system
from broker.catalog import SegmentCatalog, Snapshot
from broker.config import BrokerSettings
from broker.engine import Engine, Limits, Result
from broker.errors import QueryError
from broker.pushdown import native_columns, native_pushdown, sql_pushdown
from broker.results import CONTENT_TYPES, ResultFormat, render
from broker.segment_cache import SegmentCache
from broker.sql import Translated, parse, read_columns, translate
from supervisor.expressions import values as tv
from transport.auth import AuthConfig
from transport.client import AsyncClient
from transport.server import MAX_BYTES, documented, error_middleware, read_json, validation_message

logger = logging.getLogger(__name__)
logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back to a Command" warnings

QUERY_PATH = "/druid/v2"
BROKER: web.AppKey[Broker] = web.AppKey("broker", object)  # type: ignore[arg-type]


class SqlParameter(BaseModel):
    """One ``?`` of the query: Druid's ``{"type": "VARCHAR", "value": "..."}``."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    type: str
    value: Any = None


class SqlQuery(BaseModel):
    """``POST /druid/v2/sql`` (Druid's docs: api-reference/sql-api.md)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
    query: str = Field(description="the Druid SQL query")
    result_format: ResultFormat = Field(default="object", alias="resultFormat")
    header: bool = False
    types_header: bool = Field(default=False, alias="typesHeader")
    sql_types_header: bool = Field(default=False, alias="sqlTypesHeader")
    parameters: tuple[SqlParameter, ...] = ()
    context: dict[str, Any] = Field(default_factory=dict)


class DruidErrorBody(BaseModel):
    """Druid's error answer (querying/querying.md, "Query errors")."""

    model_config = ConfigDict(frozen=True)
    error: str
    errorCode: str | None = None
    errorMessage: str | None = None
    errorClass: str | None = None
    host: str | None = None


class DatasourceColumns(BaseModel):
    model_config = ConfigDict(frozen=True)
    dimensions: list[str]
    metrics: list[str]


def _param(p: SqlParameter, index: int) -> Any:
    kind = p.type.upper()
    v = p.value
    if v is None:
        return None
    try:
        if kind in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "LONG"):
            return int(v)
        if kind in ("DOUBLE", "FLOAT", "REAL", "DECIMAL"):
            return float(v)
        if kind == "BOOLEAN":
            return bool(v)
        if kind in ("TIMESTAMP", "DATE"):
            import datetime as dt

            ms = int(v) if isinstance(v, int | float) else tv.parse_iso(str(v))
            if ms is None:
                raise ValueError(f"'{v}' is not a timestamp")
            return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None)
        return str(v)
    except (TypeError, ValueError) as e:
        raise QueryError(f"parameters[{index}]: {e}") from e


class Broker:
    """The query side: a segment catalog and an engine with its limits."""

    def __init__(self, catalog: SegmentCatalog, settings: BrokerSettings) -> None:
        self.catalog = catalog
        self.settings = settings
        self.engine = Engine(
            Limits(
                timeout_s=settings.query_timeout_ms / 1000,
                memory_limit=settings.query_memory_limit,
                threads=settings.query_threads,
                max_rows=settings.max_result_rows,
            ),
            catalog.cache,
        )

    def timeout_s(self, context: dict[str, Any]) -> float:
        raw = context.get("timeout", self.settings.query_timeout_ms)
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise QueryError("context.timeout: a number of milliseconds")
        try:
            ms = float(raw)
        except ValueError as e:
            raise QueryError("context.timeout: a number of milliseconds") from e
        if ms <= 0:
            ms = self.settings.query_timeout_ms  # Druid: 0 means the default
        return min(ms, self.settings.max_query_timeout_ms) / 1000

    async def describe(self, snapshot: Snapshot, datasources: list[str]) -> dict[str, list[tuple[str, str]]]:
        return await asyncio.to_thread(self.engine.describe, snapshot, datasources)

    async def sql(self, body: SqlQuery) -> tuple[Result, str]:
        zone_text = str(body.context.get("sqlTimeZone") or "UTC")
        tree = parse(body.query)
        asked = sql_pushdown(tree)
        snapshot = await self.catalog.snapshot(read_columns(tree), asked.datasources, dict(asked.filters))
        plan = translate(tree, snapshot.datasources(), zone_text)
        columns: dict[str, list[tuple[str, str]]] = {}
        if "COLUMNS" in plan.info_tables:
            columns = await self.describe(snapshot, snapshot.datasources())
        tables = await system.tables_for(plan, snapshot, self.catalog, columns)
        params = [_param(p, i) for i, p in enumerate(body.parameters)]
        result = await self.engine.run(snapshot, plan, params, tables, self.timeout_s(body.context))
        return result, zone_text

    async def native(self, query: dict[str, Any]) -> list[Any]:
        return (await self.native_answer(query))[0]

    async def native_answer(self, query: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """A native query's result and Druid's response context (partial: ``uncoveredIntervals``)."""
        asked = native_pushdown(query)
        spans = query.get("queryType") in native.SPANNED_QUERY_TYPES  # empty buckets filled over them
        snapshot = await self.catalog.snapshot(
            native_columns(query), asked.datasources, dict(asked.filters), spans=spans
        )
        context = query.get("context") or {}
        timeout = self.timeout_s(context if isinstance(context, dict) else {})

        async def execute(plan: Translated) -> Result:
            return await self.engine.run(snapshot, plan, (), None, timeout)

        async def describe(ds: str) -> list[tuple[str, str]]:
            return (await self.describe(snapshot, [ds])).get(ds, [])

        return await native.run(query, snapshot, execute, describe), snapshot.response_context()


def _broker(request: web.Request) -> Broker:
    return request.app[BROKER]


@documented(
    "Druid SQL query", request=SqlQuery, response=list[dict[str, Any]], errors=(504,), tags=("query",)
)
async def post_sql(request: web.Request) -> web.StreamResponse:
    """Druid's SQL API: the rows in `resultFormat`; errors in Druid's error body (400 with the
    position for bad SQL, 504 for a timeout)."""
    query_id = str(uuid.uuid4())
    try:
        raw = await read_json(request)
        try:
            body = SqlQuery.model_validate(raw)
        except ValidationError as e:
            raise QueryError(validation_message(e, "SQL query")) from e
        query_id = str(body.context.get("sqlQueryId") or query_id)
        result, zone_text = await _broker(request).sql(body)
        zone = tv.parse_zone(zone_text)
        data = render(result, body.result_format, body.header, body.types_header, body.sql_types_header, zone)
    except QueryError as e:
        return e.response({"X-Druid-SQL-Query-Id": query_id})
    headers = {"X-Druid-SQL-Query-Id": query_id, **_context_header(result.context)}
    if body.header:
        headers["X-Druid-SQL-Header-Included"] = "yes"
    return web.Response(body=data, headers=headers, content_type=CONTENT_TYPES[body.result_format])


@documented(
    "Druid SQL query (with the slash, the path pydruid's DB-API and SQLAlchemy dialect post to)",
    request=SqlQuery,
    response=list[dict[str, Any]],
    errors=(504,),
    tags=("query",),
)
async def post_sql_slash(request: web.Request) -> web.StreamResponse:
    """As `POST /druid/v2/sql`."""
    return await post_sql(request)


@documented(
    "Druid native query",
    request=dict[str, Any],
    response=list[dict[str, Any]],
    errors=(504,),
    tags=("query",),
)
async def post_native(request: web.Request) -> web.StreamResponse:
    """Druid's native query API: `timeBoundary`, `timeseries`, `topN`, `groupBy`, `scan`, `search`,
    `segmentMetadata`, `dataSourceMetadata`, with Druid's result shapes."""
    query_id = str(uuid.uuid4())
    try:
        query = await read_json(request)
        if not isinstance(query, dict):
            raise QueryError("the query must be a JSON object")
        context = query.get("context")
        if isinstance(context, dict) and context.get("queryId"):
            query_id = str(context["queryId"])
        answer, context = await _broker(request).native_answer(query)
    except QueryError as e:
        return e.response({"X-Druid-Query-Id": query_id})
    return web.json_response(answer, headers={"X-Druid-Query-Id": query_id, **_context_header(context)})


# Druid's response context header: a query that missed rows says so (QueryResource, ResponseContext)
RESPONSE_CONTEXT_HEADER = "X-Druid-Response-Context"


def _context_header(context: dict[str, Any]) -> dict[str, str]:
    return {RESPONSE_CONTEXT_HEADER: json.dumps(context, separators=(",", ":"))} if context else {}


@documented(
    "Druid native query (Druid's docs' path, with the slash)",
    request=dict[str, Any],
    response=list[dict[str, Any]],
    errors=(504,),
    tags=("query",),
)
async def post_native_slash(request: web.Request) -> web.StreamResponse:
    """As `POST /druid/v2`."""
    return await post_native(request)


@documented("Queryable datasources", response=list[str], tags=("query",))
async def list_datasources(request: web.Request) -> web.Response:
    """The datasources with published segments or rows in running tasks."""
    snapshot = await _catalog_snapshot(request)
    return web.json_response(snapshot.datasources())


@documented(
    "A datasource's dimensions and metrics", response=DatasourceColumns, errors=(404,), tags=("query",)
)
async def get_datasource(request: web.Request) -> web.Response:
    """Of its published segments and of the running tasks that hold rows of it."""
    ds = request.match_info["ds"]
    snapshot = await _catalog_snapshot(request, [ds])
    segments = snapshot.segments.get(ds, ())
    inflight = snapshot.inflight.get(ds, ())
    if not segments and not inflight:
        return web.json_response({"error": f"datasource '{ds}' not found"}, status=404)
    dims = sorted({d for s in segments for d in s.dimensions} | {d for i in inflight for d in i.dimensions})
    metrics = sorted({m for s in segments for m in s.metrics} | {m for i in inflight for m in i.metrics})
    return web.json_response({"dimensions": dims, "metrics": metrics})


async def _catalog_snapshot(request: web.Request, datasources: list[str] | None = None) -> Snapshot:
    """A snapshot for the metadata routes: of the in-flight rows, only whether there are any."""
    try:
        return await _broker(request).catalog.snapshot((), datasources)
    except QueryError as e:
        raise web.HTTPServiceUnavailable(reason=e.message) from e


def add_routes(app: web.Application, broker: Broker) -> None:
    """The Broker's query routes on ``app`` (its own, or the Overlord's when embedded)."""
    app[BROKER] = broker
    app.router.add_post(f"{QUERY_PATH}/sql", post_sql)
    app.router.add_post(f"{QUERY_PATH}/sql/", post_sql_slash)  # pydruid's default path
    app.router.add_post(QUERY_PATH, post_native)
    app.router.add_post(f"{QUERY_PATH}/", post_native_slash)  # Druid's docs post to /druid/v2/
    app.router.add_get(f"{QUERY_PATH}/datasources", list_datasources)
    app.router.add_get(QUERY_PATH + "/datasources/{ds}", get_datasource)


def mount(app: web.Application, settings: BrokerSettings) -> None:
    """Serve the Broker inside ``app`` (the Overlord's): its client to the Overlord opens and
    closes with the application."""
    client = AsyncClient(
        settings.overlord_url, settings.cluster_token.get_secret_value(), settings.overlord_timeout_s
    )
    cache = SegmentCache(settings.segment_cache_dir, settings.segment_cache_bytes, settings.deep_storage)
    add_routes(app, Broker(SegmentCatalog(client, settings.segments_poll_s, cache=cache), settings))

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        yield
        await client.close()

    app.cleanup_ctx.append(lifecycle)


class Unauthorized(QueryError):
    status = 401
    error = "Unauthorized"
    error_code = "unauthorized"
    category = "UNAUTHORIZED"


class Forbidden(QueryError):
    status = 403
    error = "Forbidden"
    error_code = "forbidden"
    category = "FORBIDDEN"


def auth_middleware(config: AuthConfig) -> Any:
    """Every path but ``/status/health`` needs the ``read`` role (or admin) when auth is on."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if config.enabled and request.path != "/status/health":
            role = config.role_of(request.headers.get("Authorization"))
            if role is None:
                return Unauthorized("authentication required: use HTTP basic or a bearer token").response(
                    {"WWW-Authenticate": 'Basic realm="druid"'}
                )
            if role not in ("read", "admin"):
                return Forbidden(f"role '{role}' may not query").response()
        response: web.StreamResponse = await handler(request)
        return response

    return check


@documented("Health", response=bool, tags=("status",))
async def health(request: web.Request) -> web.Response:
    return web.json_response(True)


def build_app(settings: BrokerSettings) -> web.Application:
    """The Broker as a process of its own (``python -m broker``)."""
    # as the Overlord's: access control is on whenever any credential is set, the cluster token
    # too (a cluster's Broker is never open because its users were left empty); the cluster token
    # itself may not query (403: it is what the Broker presents, not what people use)
    config = AuthConfig.parse(
        settings.auth_users.get_secret_value(),
        settings.auth_tokens.get_secret_value(),
        settings.cluster_token.get_secret_value(),
    )
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(config)], client_max_size=settings.max_request_bytes
    )
    app[MAX_BYTES] = settings.max_request_bytes
    app.router.add_get("/status/health", health)
    mount(app, settings)
    return app


__all__ = ["QUERY_PATH", "Broker", "DruidErrorBody", "SqlQuery", "add_routes", "build_app", "mount"]
_ = Literal

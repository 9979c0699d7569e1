"""The server side of the wire: one error middleware, typed request bodies, typed answers, route docs.

Every process that serves HTTP (the Overlord, the peon, the MiddleManager) installs
:func:`error_middleware`, so every error answer anywhere is Druid's ``{"error": "..."}`` JSON with
the status the exception tree (``supervisor/errors.py``) gives it.

:func:`documented` attaches the request, query and response models to a handler; the OpenAPI
generator reads them from the router (``overlord/openapi.py``), and :func:`read_body` /
:func:`read_query` validate with the same models, so the document and the behaviour cannot drift.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from supervisor.errors import IndexerError, InvalidInput, PayloadTooLarge

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

MAX_BYTES: web.AppKey[int] = web.AppKey("max_request_bytes", int)
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


def error_answer(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place that turns exceptions into HTTP statuses and ``{"error": ...}`` bodies."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status >= 400:
            return error_answer(e.status, e.reason)
        raise
    except IndexerError as e:
        headers = {"WWW-Authenticate": 'Basic realm="druid"'} if e.status == 401 else {}
        if e.retry_after_s is not None:  # e.g. the metadata store is down: 503, come back later
            headers["Retry-After"] = str(e.retry_after_s)
        return error_answer(e.status, e.message, headers or None)
    except Exception as e:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_answer(500, f"{type(e).__name__}: {e}")


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_message(error: ValidationError, what: str) -> str:
    """``what: field.path: problem; ...`` for a pydantic error, naming every field (camelCase)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = _path(tuple(p for p in item["loc"] if p not in ("function-after", "root")))
        problems.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
    return f"{what}: {'; '.join(problems)}"


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; a clear 400/413 when it is missing, too large or not JSON."""
    limit = request.app.get(MAX_BYTES, DEFAULT_MAX_BYTES)
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(f"request body larger than {limit} bytes") from e
    if not raw:
        raise InvalidInput("request body is empty; expected JSON")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"request body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise InvalidInput("request body is nested too deeply") from e


def parse_as(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(validation_message(e, what)) from e


async def read_body(request: web.Request, model: type[M], what: str | None = None) -> M:
    """The request body validated as ``model``: a 400 naming each bad field, unknown ones ignored."""
    return parse_as(model, await read_json(request), what or model.__name__)


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string validated as ``model`` (a flag given without a value counts as ``true``)."""
    values = {k: (v if v != "" else "true") for k, v in request.query.items()}
    return parse_as(model, values, "query parameters")


def answer(body: BaseModel | list[BaseModel] | tuple[BaseModel, ...], status: int = 200) -> web.Response:
    """A JSON answer from a model (or a list of models), by wire names, ``None`` members kept."""
    if isinstance(body, BaseModel):
        data: Any = body.model_dump(mode="json", by_alias=True)
    else:
        data = [b.model_dump(mode="json", by_alias=True) for b in body]
    return web.json_response(data, status=status)


# ------------------------------------------------------------------ route documentation


@dataclass(frozen=True)
class RouteDoc:
    """What the OpenAPI document says of a handler; the models are the ones it validates with."""

    summary: str
    description: str = ""
    # the request body: a pydantic model, a TypeAdapter-able type, or None (no body)
    request: Any = None
    # the 200 answer: a model or type; ``bool``/``str`` for plain answers; None = no JSON body
    response: Any = None
    # the content type of a non-JSON answer (``text/plain`` for logs)
    response_type: str = "application/json"
    # a model of the query parameters
    query: type[BaseModel] | None = None
    status: int = 200
    tags: tuple[str, ...] = ()
    # error statuses this route answers besides the generic ones (400, 401, 403, 500)
    errors: tuple[int, ...] = ()


ROUTE_DOC = "__route_doc__"


def documented(
    summary: str,
    *,
    request: Any = None,
    response: Any = None,
    query: type[BaseModel] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    response_type: str = "application/json",
    tags: tuple[str, ...] = (),
) -> Callable[[H], H]:
    """Attach a :class:`RouteDoc` to a handler; its docstring becomes the description."""

    def mark(handler: H) -> H:
        doc = RouteDoc(
            summary=summary,
            description=(handler.__doc__ or "").strip(),
            request=request,
            response=response,
            response_type=response_type,
            query=query,
            status=status,
            tags=tags,
            errors=errors,
        )
        setattr(handler, ROUTE_DOC, doc)
        return handler

    return mark


def route_doc(handler: Any) -> RouteDoc | None:
    doc = getattr(handler, ROUTE_DOC, None)
    return doc if isinstance(doc, RouteDoc) else None

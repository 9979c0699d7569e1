"""The OpenAPI 3.1 document of the Overlord's API, generated from the router and the wire models.

Nothing here is written by hand about an endpoint: each handler carries a
:class:`transport.server.RouteDoc` (``@documented``) naming its summary, its request, query and
response models; the handler's docstring is the description. The schemas come from the pydantic
models themselves (``supervisor/protocol.py``, the spec models of ``supervisor/spec.py``), the same
ones the handlers validate with, so the document cannot drift from the behaviour. A route without a
``RouteDoc`` still appears (``x-undocumented``), and ``tests/unit/test_openapi.py`` fails on it.

Served at ``GET /druid/indexer/v1/openapi.json`` and ``GET /openapi.json``.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import hdrs, web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from overlord import auth
from overlord.api import COORDINATOR, INDEXER, SUPERVISOR
from supervisor.protocol import ErrorBody
from transport.server import RouteDoc, documented, route_doc

OPENAPI_VERSION = "3.1.0"
OPENAPI_PATHS = (f"{INDEXER}/openapi.json", "/openapi.json")
JSON = "application/json"
REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

TAGS = [
    {"name": "supervisor", "description": "Kafka supervisors (Druid's Supervisor API)."},
    {"name": "tasks", "description": "Indexing tasks (Druid's Tasks API)."},
    {"name": "workers", "description": "MiddleManagers."},
    {"name": "segments", "description": "Published segments (Coordinator metadata API)."},
    {"name": "status", "description": "Health, metrics and this document."},
    {"name": "internal", "description": "Used by MiddleManagers and tasks; not for users."},
    {"name": "other", "description": "Endpoints without a description (a test fails on them)."},
]

ERROR_TEXT = {
    400: "Invalid input; the error names the field.",
    401: "Authentication required (when authentication is enabled).",
    403: "Not allowed (when authorization is enabled).",
    404: "Unknown id.",
    413: "Request body too large.",
    500: "Unexpected error.",
    503: "Unavailable (retry later; `Retry-After` when the metadata store is down).",
    504: "Query timeout (Druid's error body).",
}

PATH_PARAMETERS = {
    "id": "Supervisor id (the datasource name), or task id on task paths.",
    "ds": "Datasource name.",
}


# ------------------------------------------------------------------ types -> schemas


def _models_in(kind: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models a type annotation names (``list[M]``, ``M | N``, ``dict[str, M]``)."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        yield kind
        return
    for arg in typing.get_args(kind):
        yield from _models_in(arg)


class _Schemas:
    """Every model of every route, turned into components once (pydantic names both modes apart)."""

    def __init__(self, docs: Iterable[RouteDoc]) -> None:
        pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
        for doc in docs:
            pairs += [(m, "validation") for m in _models_in(doc.request)]
            pairs += [(m, "serialization") for m in _models_in(doc.response)]
        unique = list(dict.fromkeys(pairs))
        refs, top = models_json_schema(unique, ref_template=REF)
        self.refs = refs
        self.components: dict[str, Any] = top.get("$defs", {})

    def of(self, kind: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        if kind is None or kind is Any:
            return {}
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return dict(self.refs[(kind, mode)])
        origin = typing.get_origin(kind)
        args = typing.get_args(kind)
        if origin in (typing.Union, types.UnionType):
            return {"oneOf": [self.of(a, mode) for a in args]}
        if origin in (list, tuple):
            return {"type": "array", "items": self.of(args[0], mode) if args else {}}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(args[1], mode) if args else True}
        simple = {bool: "boolean", str: "string", int: "integer", float: "number"}
        if kind in simple:
            return {"type": simple[kind]}
        raise TypeError(f"no schema for {kind!r}")


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        prop.pop("default", None)
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        if options:
            prop = {**options[0], **prop}
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if prop.get("type") == "boolean":
            param["allowEmptyValue"] = True
            description = f"{description} On when present (`?{name}`), unless its value is `false` or `0`."
        if description:
            param["description"] = description.strip()
        out.append(param)
    return out


# ------------------------------------------------------------------ operations


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path)
    if len(path) > 1 and path.endswith("/"):  # /druid/v2/ beside /druid/v2
        words.append("slash")
    return "_".join([method.lower(), *words]) or method.lower()


def _default_tags(path: str) -> tuple[str, ...]:
    if path.startswith(SUPERVISOR):
        return ("supervisor",)
    if path.startswith((f"{INDEXER}/task", f"{INDEXER}/datasources")):
        return ("tasks",)
    if path.startswith(f"{INDEXER}/worker"):
        return ("workers",)
    if path.startswith(COORDINATOR):
        return ("segments",)
    return ("other",)


def _render(method: str, path: str, doc: RouteDoc | None, schemas: _Schemas) -> dict[str, Any]:
    secured = path not in auth.OPEN_PATHS
    cluster_only = path.startswith(auth.INTERNAL_PREFIXES)
    tags = list(doc.tags if doc is not None and doc.tags else _default_tags(path))
    if cluster_only and "internal" not in tags:
        tags.append("internal")
    description = doc.description if doc is not None else ""
    if cluster_only:
        description = f"{description}\n\nWith authentication on, only the cluster token is accepted.".strip()
    out: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": doc.summary if doc is not None else f"{method} {path}",
        "tags": tags,
    }
    if description:
        out["description"] = description
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS.get(name, f"Path parameter `{name}`."),
            "schema": {"type": "string"},
        }
        for name in _PARAM.findall(path)
    ]
    if doc is not None and doc.query is not None:
        parameters += _query_parameters(doc.query)
    if parameters:
        out["parameters"] = parameters
    if doc is not None and doc.request is not None:
        out["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": schemas.of(doc.request, "validation")}},
        }
    responses: dict[str, Any] = {}
    if doc is not None:
        ok: dict[str, Any] = {"description": "Success."}
        if doc.response is not None:
            ok["content"] = {doc.response_type: {"schema": schemas.of(doc.response, "serialization")}}
        responses[str(doc.status)] = ok
    else:
        responses["200"] = {"description": "Success."}
    errors = {400, 500, *(doc.errors if doc is not None else ())}
    if secured:
        errors |= {401, 403}
    for status in sorted(errors):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/Error{status}"})
    out["responses"] = dict(sorted(responses.items()))
    if not secured:
        out["security"] = [{}]
    elif cluster_only:
        out["security"] = [{}, {"bearerAuth": []}]
    if cluster_only or "internal" in tags:
        out["x-internal"] = True
    if doc is None:
        out["x-undocumented"] = True
    return out


def _resource_path(resource: web.AbstractResource) -> str:
    path = resource.canonical
    if isinstance(resource, web.StaticResource):
        return path.rstrip("/") + "/{filename}"
    return path or "/"


def route_operations(app: web.Application) -> Iterator[tuple[str, str, Any]]:
    """``(method, path, handler)`` of every operation of ``app``'s routes (HEAD twins of GET left out;
    a route for any method stands for GET, POST, PUT, PATCH and DELETE)."""
    seen: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        path = _resource_path(resource)
        method = route.method.upper()
        if method == hdrs.METH_ANY:
            methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
        elif method == hdrs.METH_HEAD and hdrs.METH_GET in {r.method.upper() for r in resource}:
            continue
        else:
            methods = (method,)
        for m in methods:
            if m.lower() in _METHODS and (m, path) not in seen:
                seen.add((m, path))
                yield m, path, route.handler


def build_openapi(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route registered on ``app``."""
    operations = list(route_operations(app))
    docs = {(m, p): route_doc(h) for m, p, h in operations}
    schemas = _Schemas(d for d in docs.values() if d is not None)
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), doc in docs.items():
        paths.setdefault(path, {})[method.lower()] = _render(method, path, doc, schemas)
    error_ref = schemas.of(ErrorBody, "serialization")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Overlord API (Kafka indexing service)",
            "version": "v1",
            "summary": "Apache Druid's Overlord API for Kafka supervisors, tasks and workers.",
            "description": (
                'Errors are answered as `{"error": "..."}`. Authentication is optional: when users or '
                "tokens are configured, every endpoint but `/status/health` needs HTTP basic credentials "
                "or a bearer token (401 without, 403 when the role may not do it: `read` may only GET), "
                "and the internal worker and task-action endpoints take only the cluster token. "
                "Request bodies: unknown members are ignored; a missing or mistyped one is a 400 naming it."
            ),
        },
        "tags": TAGS,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "responses": {
                f"Error{status}": {"description": text, "content": {JSON: {"schema": error_ref}}}
                for status, text in ERROR_TEXT.items()
            },
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer"},
            },
        },
        # `{}` first: authentication is optional unless the deployment turns it on.
        "security": [{}, {"basicAuth": []}, {"bearerAuth": []}],
    }


@documented("This API document (OpenAPI 3.1)", response=dict[str, Any], tags=("status",))
async def serve_openapi(request: web.Request) -> web.Response:
    """Generated from the router and the request and response models of each handler."""
    return web.json_response(build_openapi(request.app))


def add_openapi_route(app: web.Application) -> None:
    """Serve the document at ``/druid/indexer/v1/openapi.json`` and ``/openapi.json``."""
    for path in OPENAPI_PATHS:
        app.router.add_get(path, serve_openapi)

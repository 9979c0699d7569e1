"""The OpenAPI document: valid OpenAPI 3.1, in step with the router, served, and its spec schema sound."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from overlord import api, auth
from overlord.openapi import OPENAPI_PATHS, add_openapi_route, build_openapi, route_operations
from supervisor.spec import KafkaIOConfig, parse_supervisor_spec
from transport.server import route_doc

TUTORIALS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "druid"
TUTORIAL_SPECS = sorted(TUTORIALS.glob("*.json"))
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def make_app() -> web.Application:
    app = web.Application()
    api.add_routes(app)
    add_openapi_route(app)
    return app


@pytest.fixture(scope="module")
def app() -> web.Application:
    return make_app()


@pytest.fixture(scope="module")
def doc(app: web.Application) -> dict[str, Any]:
    return build_openapi(app)


def registered(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route, computed from aiohttp directly (HEAD twins of GET left out)."""
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        assert route.resource is not None
        if route.method == hdrs.METH_HEAD:
            continue
        out.add((route.method.lower(), route.resource.canonical))
    return out


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, p) for p, item in doc["paths"].items() for m in item if m in HTTP_METHODS}


def SCHEMAS(doc: dict[str, Any] | None = None) -> dict[str, Any]:
    schemas: dict[str, Any] = (doc or build_openapi(make_app()))["components"]["schemas"]
    return schemas


def schema_for(name: str) -> dict[str, Any]:
    """A JSON Schema 2020-12 document for one component, with the other components reachable."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{name}",
        "components": {"schemas": SCHEMAS()},
    }


def is_valid(name: str, instance: Any) -> bool:
    validator = jsonschema.Draft202012Validator(
        schema_for(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return bool(validator.is_valid(instance))


def assert_valid(name: str, instance: Any) -> None:
    jsonschema.Draft202012Validator(
        schema_for(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


# ------------------------------------------------------------------ the document


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_is_in_the_document_and_nothing_else(app: web.Application, doc: dict[str, Any]) -> None:
    assert registered(app) == documented(doc)


# POST routes that take no body (the action is in the path)
BODYLESS = {
    f"{api.SUPERVISOR}/suspendAll",
    f"{api.SUPERVISOR}/resumeAll",
    f"{api.SUPERVISOR}/terminateAll",
    api.SUPERVISOR + "/{id}/suspend",
    api.SUPERVISOR + "/{id}/resume",
    api.SUPERVISOR + "/{id}/terminate",
    api.SUPERVISOR + "/{id}/shutdown",
    api.SUPERVISOR + "/{id}/reset",
    api.INDEXER + "/task/{id}/shutdown",
    api.INDEXER + "/datasources/{ds}/shutdownAllTasks",
}


def test_every_route_declares_its_request_and_response_models(app: web.Application) -> None:
    problems = []
    for method, path, handler in route_operations(app):
        doc = route_doc(handler)
        if doc is None:
            problems.append(f"{method} {path}: no @documented")
            continue
        if doc.response is None:
            problems.append(f"{method} {path}: no response model")
        if method in ("POST", "PUT", "PATCH") and path not in BODYLESS and doc.request is None:
            problems.append(f"{method} {path}: no request model")
        if method == "GET" and doc.request is not None:
            problems.append(f"{method} {path}: a GET with a request body")
    assert not problems, problems


def test_bodyless_routes_are_real_routes(app: web.Application) -> None:
    assert {p for m, p, _ in route_operations(app) if m == "POST"} >= BODYLESS


def test_no_operation_is_undocumented(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "x-undocumented" not in op, (method, path)
            assert op["summary"] and op["responses"], (method, path)


def test_a_route_without_models_gets_a_generic_entry() -> None:
    app = make_app()

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get(api.SUPERVISOR + "/{id}/brandNew", handler)
    op = build_openapi(app)["paths"][api.SUPERVISOR + "/{id}/brandNew"]["get"]
    assert op["x-undocumented"] is True
    assert [(p["name"], p["in"], p["required"]) for p in op["parameters"]] == [("id", "path", True)]
    assert op["tags"] == ["supervisor"]


def test_path_parameters_declared(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_operation_ids_unique(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_query_parameters_come_from_the_query_models(doc: dict[str, Any]) -> None:
    def params(path: str) -> dict[str, Any]:
        return {p["name"]: p for p in doc["paths"][path]["get"].get("parameters", []) if p["in"] == "query"}

    tasks = params(f"{api.INDEXER}/tasks")
    assert tasks["state"]["schema"]["enum"] == ["pending", "waiting", "running", "complete"]
    assert tasks["max"]["schema"]["type"] == "integer" and tasks["max"]["schema"]["minimum"] == 0
    assert {"datasource", "type"} <= tasks.keys()
    assert params(f"{api.SUPERVISOR}/history")["count"]["schema"]["minimum"] == 0
    listing = params(api.SUPERVISOR)
    assert listing["full"]["schema"]["type"] == "boolean" and listing["full"]["allowEmptyValue"]
    assert listing["state"]["schema"]["type"] == "boolean"


def test_statuses_and_bodies(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    post = paths[api.SUPERVISOR]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SupervisorSpecBody-Input"
    }
    assert {"200", "400", "401", "403", "413", "500"} <= post["responses"].keys()
    handoff = paths[api.SUPERVISOR + "/{id}/taskGroups/handoff"]["post"]
    assert {"200", "400", "404"} <= handoff["responses"].keys()
    assert "202" not in handoff["responses"]
    health = paths[api.SUPERVISOR + "/{id}/health"]["get"]["responses"]
    assert {"200", "503", "404"} <= health.keys()
    assert "404" in paths[api.SUPERVISOR + "/{id}"]["get"]["responses"]
    assert paths["/status/health"]["get"]["security"] == [{}]
    assert "401" not in paths["/status/health"]["get"]["responses"]
    log = paths[api.INDEXER + "/task/{id}/log"]["get"]["responses"]["200"]["content"]
    assert log == {"text/plain": {"schema": {"type": "string"}}}
    error = doc["components"]["responses"]["Error400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert SCHEMAS(doc)["ErrorBody"]["properties"]["error"]["type"] == "string"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["basicAuth"]["scheme"] == "basic"
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert {} in doc["security"]


def test_schemas_have_every_field_the_models_accept(doc: dict[str, Any]) -> None:
    """The hand-written document lacked fields the models took (issue 11): now they are the models."""
    schemas = SCHEMAS(doc)
    assert "assumeNewlineDelimited" in schemas["InputFormat"]["properties"]
    io = schemas["KafkaIOConfig-Input"]["properties"]
    for name, field in KafkaIOConfig.model_fields.items():
        assert (field.alias or name) in io, name
    heartbeat = schemas["Heartbeat"]["properties"]
    assert {
        "host",
        "port",
        "capacity",
        "protocolVersion",
        "waitS",
        "running",
        "completed",
    } <= heartbeat.keys()
    assert schemas["TaskActionRequest"]["required"] == ["task", "action"]


def test_internal_operations_tagged(doc: dict[str, Any]) -> None:
    for path in ("/workers/register", "/workers/heartbeat", "/action"):
        assert "internal" in doc["paths"][api.INDEXER + path]["post"]["tags"], path
    assert "internal" not in doc["paths"][api.SUPERVISOR]["post"]["tags"]
    assert "internal" in {t["name"] for t in doc["tags"]}


def test_security_follows_the_auth_middleware(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path in auth.OPEN_PATHS:
                assert op["security"] == [{}], (method, path)
                assert "401" not in op["responses"], (method, path)
            else:
                assert {"401", "403"} <= op["responses"].keys(), (method, path)
            if path.startswith(auth.INTERNAL_PREFIXES):
                assert op["security"] == [{}, {"bearerAuth": []}], (method, path)
                assert "internal" in op["tags"], (method, path)


def test_build_app_serves_the_document(tmp_path: Path) -> None:
    from overlord.app import build_app
    from overlord.config import OverlordSettings

    settings = OverlordSettings(
        metadata_url=f"sqlite:///{tmp_path / 'metadata.db'}", deep_storage=str(tmp_path / "deep")
    )
    app = build_app(settings)
    doc = build_openapi(app)
    validate(doc)
    assert set(OPENAPI_PATHS) <= doc["paths"].keys()
    assert registered(app) == documented(doc)
    assert all("x-undocumented" not in op for item in doc["paths"].values() for op in item.values())


def test_all_tags_declared(doc: dict[str, Any]) -> None:
    declared = {t["name"] for t in doc["tags"]}
    used = {t for item in doc["paths"].values() for op in item.values() for t in op["tags"]}
    assert used <= declared


# ------------------------------------------------------------------ serving it


def test_served_at_both_paths(app: web.Application) -> None:
    async def fetch() -> list[tuple[int, str, Any]]:
        async with TestClient(TestServer(make_app())) as client:
            out = []
            for path in OPENAPI_PATHS:
                resp = await client.get(path)
                out.append((resp.status, resp.content_type, await resp.json()))
            return out

    answers = asyncio.run(fetch())
    assert OPENAPI_PATHS == ("/druid/indexer/v1/openapi.json", "/openapi.json")
    expected = build_openapi(app)
    for status, content_type, body in answers:
        assert status == 200
        assert content_type == "application/json"
        assert body == json.loads(json.dumps(expected))


# ------------------------------------------------------------------ request body schemas


@pytest.mark.parametrize("path", TUTORIAL_SPECS, ids=lambda p: p.name)
def test_tutorial_specs_match_the_spec_schema(path: Path) -> None:
    spec = json.loads(path.read_text())
    assert_valid("SupervisorSpecBody-Input", spec)
    # what GET /supervisor/{id} answers for it matches too
    assert_valid("SupervisorSpecBody-Output", parse_supervisor_spec(spec).to_json())


def test_both_tutorial_specs_present() -> None:
    assert {p.name for p in TUTORIAL_SPECS} >= {
        "wikipedia-kafka-supervisor.json",
        "kttm-kafka-supervisor.json",
    }


def test_spec_schema_rejects_bad_specs() -> None:
    good = json.loads((TUTORIALS / "wikipedia-kafka-supervisor.json").read_text())
    assert is_valid("SupervisorSpecBody-Input", good)
    cases: list[tuple[list[str | int], Any]] = [
        (["type"], "kinesis"),
        (["spec", "dataSchema", "dataSource"], ""),
        (["spec", "ioConfig", "taskCount"], 0),
        (["spec", "ioConfig", "replicas"], [1]),
        (["spec", "dataSchema", "dimensionsSpec", "dimensions", 0], {"type": "long"}),
        (["spec", "dataSchema", "metricsSpec"], [{"type": "count"}]),
    ]
    for where, value in cases:
        bad = copy.deepcopy(good)
        node: Any = bad
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        assert not is_valid("SupervisorSpecBody-Input", bad), where
    no_io = copy.deepcopy(good)
    del no_io["spec"]["ioConfig"]
    assert not is_valid("SupervisorSpecBody-Input", no_io)
    assert not is_valid("SupervisorSpecBody-Input", {"type": "kafka"})


def test_spec_schema_accepts_the_legacy_unwrapped_form() -> None:
    wrapped = json.loads((TUTORIALS / "kttm-kafka-supervisor.json").read_text())
    assert_valid("SupervisorSpecBody-Input", {"type": "kafka", **wrapped["spec"]})


def test_other_request_schemas() -> None:
    reset: dict[str, Any] = {
        "type": "kafka",
        "partitions": {"type": "end", "stream": "wikipedia", "partitionOffsetMap": {"0": 100, "3": 7}},
    }
    assert_valid("ResetOffsetsRequest", reset)
    assert not is_valid("ResetOffsetsRequest", {**reset, "partitions": {"type": "end", "stream": "w"}})
    bad_offsets = copy.deepcopy(reset)
    bad_offsets["partitions"]["partitionOffsetMap"] = {"zero": 1}
    assert not is_valid("ResetOffsetsRequest", bad_offsets)
    assert_valid("HandoffRequest", {"taskGroupIds": [0, 2]})
    assert not is_valid("HandoffRequest", {"taskGroupIds": ["0"]})
    assert not is_valid("HandoffRequest", {})
    assert_valid("Heartbeat", {"host": "h", "port": 1, "capacity": 2, "running": [{"taskId": "t"}]})
    assert not is_valid("Heartbeat", {"host": "h"})
    assert_valid("WorkerRegistration", {"host": "h", "port": 1, "capacity": 2, "version": "1"})
    assert not is_valid("TaskActionRequest", {"task": "t", "action": {"type": "lockAcquire"}})

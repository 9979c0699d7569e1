"""The OpenAPI document: valid OpenAPI 3.1, in step with the router, served, and its spec schema sound."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from overlord import api, auth
from overlord.openapi import OPENAPI_PATHS, SCHEMAS, add_openapi_route, build_openapi
from supervisor.spec import parse_supervisor_spec

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


def schema_for(name: str) -> dict[str, Any]:
    """A JSON Schema 2020-12 document for one component, with the other components reachable."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{name}",
        "components": {"schemas": SCHEMAS},
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
    json.dumps(doc)  # plain JSON all the way down


def test_every_route_is_documented(app: web.Application, doc: dict[str, Any]) -> None:
    missing = registered(app) - documented(doc)
    assert not missing, f"routes missing from the OpenAPI document: {sorted(missing)}"


def test_every_documented_operation_is_a_route(app: web.Application, doc: dict[str, Any]) -> None:
    extra = documented(doc) - registered(app)
    assert not extra, f"documented operations that are not routes: {sorted(extra)}"


def test_known_routes_have_real_descriptions(doc: dict[str, Any]) -> None:
    for path, method in [
        (api.SUPERVISOR, "post"),
        (api.SUPERVISOR + "/{id}/status", "get"),
        (f"{api.INDEXER}/tasks", "get"),
        ("/status/health", "get"),
    ]:
        assert "x-undocumented" not in doc["paths"][path][method], (method, path)


def test_new_routes_get_a_generic_entry() -> None:
    app = make_app()

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_post(api.SUPERVISOR + "/{id}/somethingNew/{part:\\d+}", handler)
    doc = build_openapi(app)
    validate(doc)
    op = doc["paths"][api.SUPERVISOR + "/{id}/somethingNew/{part}"]["post"]
    assert op["x-undocumented"] is True
    assert [(p["name"], p["in"], p["required"]) for p in op["parameters"]] == [
        ("id", "path", True),
        ("part", "path", True),
    ]
    assert op["tags"] == ["supervisor"]


def test_path_parameters_declared(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        names = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_operation_ids_unique(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_query_parameters(doc: dict[str, Any]) -> None:
    def params(path: str, method: str = "get") -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in doc["paths"][path][method]["parameters"] if p["in"] == "query"}

    tasks = params(f"{api.INDEXER}/tasks")
    assert tasks["state"]["schema"]["enum"] == ["running", "pending", "waiting", "complete"]
    assert tasks["max"]["schema"] == {"type": "integer", "minimum": 0}
    assert {"datasource", "type"} <= tasks.keys()
    history = params(api.SUPERVISOR + "/{id}/history")
    assert history["count"]["schema"] == {"type": "integer", "minimum": 0}
    assert params(f"{api.SUPERVISOR}/history")["count"]["schema"]["type"] == "integer"
    listing = params(api.SUPERVISOR)
    assert listing["full"]["schema"]["type"] == "boolean"
    assert listing["state"]["schema"]["type"] == "boolean"


def test_statuses_and_bodies(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    post = paths[api.SUPERVISOR]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KafkaSupervisorSpec"
    }
    assert {"200", "400", "401", "403", "413", "500"} <= post["responses"].keys()
    handoff = paths[api.SUPERVISOR + "/{id}/taskGroups/handoff"]["post"]
    assert {"202", "400", "404"} <= handoff["responses"].keys()
    assert "200" not in handoff["responses"]
    health = paths[api.SUPERVISOR + "/{id}/health"]["get"]["responses"]
    assert {"200", "503", "404"} <= health.keys()
    assert "404" in paths[api.SUPERVISOR + "/{id}"]["get"]["responses"]
    assert paths["/status/health"]["get"]["security"] == [{}]
    assert "401" not in paths["/status/health"]["get"]["responses"]
    error = doc["components"]["responses"]["Error400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert SCHEMAS["Error"]["properties"] == {"error": {"type": "string"}}
    schemes = doc["components"]["securitySchemes"]
    assert schemes["basicAuth"]["scheme"] == "basic"
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert {} in doc["security"]


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
        metadata_url=f"sqlite:///{tmp_path / 'metadata.db'}", deep_storage=tmp_path / "deep"
    )
    app = build_app(settings)
    doc = build_openapi(app)
    validate(doc)
    assert set(OPENAPI_PATHS) <= doc["paths"].keys()
    assert registered(app) <= documented(doc)


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
    assert_valid("KafkaSupervisorSpec", spec)
    # what GET /supervisor/{id} answers for it matches too
    assert_valid("KafkaSupervisorSpec", parse_supervisor_spec(spec).to_json())


def test_both_tutorial_specs_present() -> None:
    assert {p.name for p in TUTORIAL_SPECS} >= {
        "wikipedia-kafka-supervisor.json",
        "kttm-kafka-supervisor.json",
    }


def test_spec_schema_rejects_bad_specs() -> None:
    good = json.loads((TUTORIALS / "wikipedia-kafka-supervisor.json").read_text())
    assert is_valid("KafkaSupervisorSpec", good)
    cases: list[tuple[list[str | int], Any]] = [
        (["type"], "kinesis"),
        (["spec", "dataSchema", "dataSource"], ""),
        (["spec", "ioConfig", "taskCount"], 0),
        (["spec", "ioConfig", "replicas"], "1"),
        (["spec", "ioConfig", "consumerProperties"], {}),
        (["spec", "ioConfig", "useEarliestOffset"], "yes"),
        (["spec", "ioConfig", "taskDuration"], "10 minutes"),
        (["spec", "tuningConfig", "maxRowsPerSegment"], -5),
        (["spec", "tuningConfig", "maxBytesInMemory"], -2),
        (["spec", "dataSchema", "dimensionsSpec", "dimensions", 0], {"type": "long"}),
        (["spec", "dataSchema", "metricsSpec"], [{"type": "count"}]),
    ]
    for where, value in cases:
        bad = copy.deepcopy(good)
        node: Any = bad
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        assert not is_valid("KafkaSupervisorSpec", bad), where
    no_io = copy.deepcopy(good)
    del no_io["spec"]["ioConfig"]
    assert not is_valid("KafkaSupervisorSpec", no_io)
    assert not is_valid("KafkaSupervisorSpec", {"type": "kafka"})


def test_spec_schema_accepts_the_legacy_unwrapped_form() -> None:
    wrapped = json.loads((TUTORIALS / "kttm-kafka-supervisor.json").read_text())
    assert_valid("KafkaSupervisorSpec", {"type": "kafka", **wrapped["spec"]})


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
    assert_valid("WorkerHeartbeat", {"host": "h", "port": 1, "capacity": 2, "running": [{"taskId": "t"}]})
    assert not is_valid("WorkerHeartbeat", {"host": "h"})
    assert_valid("WorkerRegistration", {"host": "h", "port": 1, "capacity": 2, "version": "1"})
    assert not is_valid("TaskAction", {"task": "t", "action": {"type": "lockAcquire"}})

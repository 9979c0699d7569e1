"""A small schema registry serving Confluent's REST API, for the avro_stream / protobuf tests.

No real registry runs here: Apicurio Registry's app (``io.apicurio:apicurio-registry-app``
2.6.13.Final and 3.3.3) needs ``io.apicurio:apicurio-registry-schema-util-provider`` of the same
version, which the Maven Central we reach does not serve, and Confluent's registry is not on Maven
Central at all. So this serves the part of Confluent's API that confluent-kafka's
``SchemaRegistryClient`` (with ``AvroSerializer`` / ``ProtobufSerializer``) and our task use:

* ``POST /subjects/{subject}/versions``: register (the same schema text gets the same id);
* ``POST /subjects/{subject}``: look a schema up (the protobuf serializer does it for references);
* ``GET /schemas/ids/{id}``: ``{"schema", "schemaType", "references"}`` (``schemaType`` is left
  out for Avro, as Confluent does); ``GET /subjects/{subject}/versions/{version}``.

Schemas are stored as registered: confluent-kafka's protobuf serializer registers a base64
``FileDescriptorProto``, which is what Confluent answers to ``format=serialized``.
Optional basic auth; :meth:`SchemaRegistryServer.set_down` answers 503 to everything (a registry
outage); every request is recorded (path, headers) so tests can check caching and headers.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.harness.services import free_port

__all__ = ["SchemaRegistryServer", "running_schema_registry"]

_JSON = "application/vnd.schemaregistry.v1+json"


@dataclass
class _Version:
    subject: str
    version: int
    schema_id: int


@dataclass
class SchemaRegistryServer:
    user_info: str | None = None
    port: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _schemas: dict[int, dict[str, Any]] = field(default_factory=dict)
    _ids: dict[tuple[str, str], int] = field(default_factory=dict)
    _subjects: dict[str, list[_Version]] = field(default_factory=dict)
    _down: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_down(self, down: bool) -> None:
        self._down = down

    def id_requests(self, schema_id: int) -> int:
        return sum(
            1 for method, path, _ in self.requests if method == "GET" and path == f"/schemas/ids/{schema_id}"
        )

    # ------------------------------------------------------------------ handlers

    def _error(self, status: int, code: int, message: str) -> web.Response:
        return web.json_response({"error_code": code, "message": message}, status=status, content_type=_JSON)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        if self._down:
            return self._error(503, 50301, "registry is down (test)")
        if self.user_info is not None:
            expected = "Basic " + base64.b64encode(self.user_info.encode()).decode()
            if request.headers.get("Authorization") != expected:
                return self._error(401, 40101, "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    def _register(self, subject: str, body: dict[str, Any]) -> int:
        kind = body.get("schemaType") or "AVRO"
        key = (kind, body["schema"])
        with self._lock:
            schema_id = self._ids.get(key)
            if schema_id is None:
                schema_id = len(self._schemas) + 1
                self._ids[key] = schema_id
                self._schemas[schema_id] = {
                    "schema": body["schema"],
                    "schemaType": kind,
                    "references": body.get("references") or [],
                }
            versions = self._subjects.setdefault(subject, [])
            if not any(v.schema_id == schema_id for v in versions):
                versions.append(_Version(subject, len(versions) + 1, schema_id))
        return schema_id

    def _answer(self, schema_id: int, extra: dict[str, Any] | None = None) -> web.Response:
        stored = self._schemas[schema_id]
        body: dict[str, Any] = {"id": schema_id, "schema": stored["schema"], **(extra or {})}
        if stored["schemaType"] != "AVRO":
            body["schemaType"] = stored["schemaType"]
        if stored["references"]:
            body["references"] = stored["references"]
        return web.json_response(body, content_type=_JSON)

    async def _post_version(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {"id": self._register(request.match_info["subject"], body)}, content_type=_JSON
        )

    async def _lookup(self, request: web.Request) -> web.Response:
        body = await request.json()
        subject = request.match_info["subject"]
        key = (body.get("schemaType") or "AVRO", body["schema"])
        schema_id = self._ids.get(key)
        for version in self._subjects.get(subject, []):
            if version.schema_id == schema_id:
                return self._answer(version.schema_id, {"subject": subject, "version": version.version})
        return self._error(404, 40403, "Schema not found")

    async def _by_id(self, request: web.Request) -> web.Response:
        schema_id = int(request.match_info["id"])
        if schema_id not in self._schemas:
            return self._error(404, 40403, "Schema not found")
        return self._answer(schema_id)

    async def _version(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        versions = self._subjects.get(subject)
        if not versions:
            return self._error(404, 40401, "Subject not found")
        wanted = request.match_info["version"]
        version = (
            versions[-1]
            if wanted in ("latest", "-1")
            else next((v for v in versions if str(v.version) == wanted), None)
        )
        if version is None:
            return self._error(404, 40402, "Version not found")
        return self._answer(version.schema_id, {"subject": subject, "version": version.version})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/subjects/{subject}/versions", self._post_version)
        app.router.add_post("/subjects/{subject}", self._lookup)
        app.router.add_get("/schemas/ids/{id}", self._by_id)
        app.router.add_get("/subjects/{subject}/versions/{version}", self._version)
        return app


@contextmanager
def running_schema_registry(user_info: str | None = None) -> Iterator[SchemaRegistryServer]:
    """A registry on a free loopback port, served from a thread of its own for the block."""
    server = SchemaRegistryServer(user_info=user_info, port=free_port())
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(server.app(), access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", server.port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="schema-registry", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the test schema registry did not start")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()

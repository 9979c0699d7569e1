"""A client of a Confluent-compatible schema registry, for the task's decoders.

Only the task (the worker) calls the registry, lazily, the first time a schema id is seen; every
answer is cached by id (Druid's ``capacity`` bounds the cache). Each request has a bounded
timeout and the ``urls`` are tried in order. A lookup that failed (registry down, unknown id) is
remembered for :data:`FAILURE_TTL_S`, so a burst of records with that id costs one timeout, not
one per record; those records are parse errors, as in Druid ("Failure to retrieve a schema due to
misconfiguration or corrupt records (invalid schema IDs)", data-formats.md, "Parse exceptions").

API (Confluent's, also served by Apicurio at ``/apis/ccompat/v7``): ``GET /schemas/ids/{id}``
answers ``{"schema": "...", "schemaType": "AVRO"|"PROTOBUF", "references": [...]}``;
``GET /subjects/{subject}/versions/{version}`` answers a referenced schema.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from supervisor.binary_formats import SchemaRegistryDecoder, registry_basic_auth
from supervisor.errors import Unavailable
from transport.client import SyncClient

__all__ = [
    "FAILURE_TTL_S",
    "REQUEST_TIMEOUT_S",
    "RegisteredSchema",
    "SchemaCache",
    "SchemaLookupError",
    "SchemaRegistry",
]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
FAILURE_TTL_S = 5.0
# Druid's default capacity is Integer.MAX_VALUE; a task sees a handful of ids.
DEFAULT_CAPACITY = 10_000
# Schema references followed at most this deep (a reference of a reference ...).
MAX_REFERENCE_DEPTH = 16

T = TypeVar("T")


class SchemaLookupError(Exception):
    """A schema could not be had: the record is a parse error."""


@dataclass(frozen=True)
class RegisteredSchema:
    schema: str
    schema_type: str
    # (import name, schema text) of every reference, depth first (dependencies before dependants)
    references: tuple[tuple[str, RegisteredSchema], ...] = ()


class SchemaRegistry:
    """Confluent's REST API over one or more base URLs, with basic auth and extra headers."""

    def __init__(self, decoder: SchemaRegistryDecoder, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._urls = [url.rstrip("/") for url in decoder.all_urls()]
        self._timeout_s = timeout_s
        headers = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}
        headers.update(decoder.headers or {})
        auth = registry_basic_auth(decoder.config or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self._headers = headers

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        problems = []
        for url in self._urls:
            try:
                answer = SyncClient(url, timeout_s=self._timeout_s).send(
                    "GET", path, params=params, headers=self._headers
                )
            except Unavailable as exc:
                problems.append(str(exc))
                continue
            if answer.status == 200 and isinstance(answer.body, dict):
                return answer.body
            text = answer.body.get("message") if isinstance(answer.body, dict) else answer.body
            if answer.status == 404:
                raise SchemaLookupError(f"schema registry {url}{path}: not found ({text})")
            problems.append(f"{url}{path}: HTTP {answer.status} {str(text)[:200]}")
        raise SchemaLookupError("schema registry unavailable: " + "; ".join(problems))

    def by_id(self, schema_id: int, serialized: bool = False) -> RegisteredSchema:
        """The schema of an id; ``serialized``: protobuf as a base64 FileDescriptorProto."""
        params = {"format": "serialized"} if serialized else None
        return self._schema(self._get(f"/schemas/ids/{schema_id}", params), params, 0)

    def _schema(self, body: dict[str, Any], params: dict[str, str] | None, depth: int) -> RegisteredSchema:
        schema = body.get("schema")
        if not isinstance(schema, str):
            raise SchemaLookupError("schema registry answer has no 'schema'")
        references = []
        for ref in body.get("references") or ():
            if depth >= MAX_REFERENCE_DEPTH:
                raise SchemaLookupError(f"schema references deeper than {MAX_REFERENCE_DEPTH}")
            subject = urllib.parse.quote(str(ref.get("subject")), safe="")
            version = ref.get("version")
            found = self._get(f"/subjects/{subject}/versions/{version}", params)
            references.append((str(ref.get("name")), self._schema(found, params, depth + 1)))
        return RegisteredSchema(schema, str(body.get("schemaType") or "AVRO"), tuple(references))


class SchemaCache(Generic[T]):
    """Parsed schemas by id: bounded (least recently used out), failures remembered briefly.

    Thread-safe (the pipeline's parser threads may share it).
    """

    def __init__(
        self,
        load: Callable[[int], T],
        capacity: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._capacity = capacity or DEFAULT_CAPACITY
        self._clock = clock
        self._items: OrderedDict[int, T] = OrderedDict()
        self._failed: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, schema_id: int) -> T:
        with self._lock:
            item = self._items.get(schema_id)
            if item is not None:
                self._items.move_to_end(schema_id)
                return item
            failed = self._failed.get(schema_id)
            if failed is not None and self._clock() - failed[0] < FAILURE_TTL_S:
                raise SchemaLookupError(failed[1])
        try:
            item = self._load(schema_id)
        except SchemaLookupError as exc:
            message = f"schema id {schema_id}: {exc}"
            log.warning("%s", message)
            with self._lock:
                self._failed[schema_id] = (self._clock(), message)
            raise SchemaLookupError(message) from None
        with self._lock:
            self._failed.pop(schema_id, None)
            self._items[schema_id] = item
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return item

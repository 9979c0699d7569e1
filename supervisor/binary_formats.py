"""Spec models of the binary input formats ``avro_stream`` and ``protobuf`` (issue 13).

Field names and defaults follow Druid's docs, docs/ingestion/data-formats.md ("Avro Stream",
"Avro Bytes Decoder", "Protobuf") and docs/development/extensions-core/protobuf.md. Only the
shape is checked here (a 400 at POST naming the field); the schemas themselves are parsed by
the task (``middlemanager/ingest/formats``), and the schema registry is called by the task only.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from supervisor._spec_common import DruidModel, JsonBool, NonEmptyStr, PositiveInt, spec_problem
from supervisor.flatten import FlattenError, compile_jq, compile_path

__all__ = [
    "AvroBytesDecoder",
    "AvroStreamInputFormat",
    "FileProtoDecoder",
    "FlattenField",
    "InlineSchemaDecoder",
    "InlineSchemasDecoder",
    "PathFlattenSpec",
    "ProtoBytesDecoder",
    "ProtobufInputFormat",
    "SchemaRegistryDecoder",
    "registry_basic_auth",
]


def _schema_object(value: Any) -> Any:
    """An Avro schema given as a JSON object (Druid's form) or as its JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise spec_problem(f"is not an Avro schema (invalid JSON: {exc.msg})") from None
    if not isinstance(value, dict | list | str):
        raise spec_problem("must be an Avro schema (a JSON object)")
    return value


class InlineSchemaDecoder(DruidModel):
    """``schema_inline``: every record is plain Avro binary of one fixed schema."""

    type: Literal["schema_inline"]
    schema_: Any = Field(alias="schema")

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema(cls, value: Any) -> Any:
        return _schema_object(value)


class InlineSchemasDecoder(DruidModel):
    """``multiple_schemas_inline``: a version byte 1, a 4-byte big-endian schema id, Avro binary."""

    type: Literal["multiple_schemas_inline"]
    schemas: dict[str, Any]

    @field_validator("schemas")
    @classmethod
    def _schemas(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise spec_problem("must map at least one schema id to its schema")
        out = {}
        for key, schema in value.items():
            try:
                int(key)
            except ValueError:
                raise spec_problem("must be an integer schema id", key) from None
            out[key] = _schema_object(schema)
        return out


class SchemaRegistryDecoder(DruidModel):
    """``schema_registry``: Confluent's wire format, the schema looked up by id in the registry.

    ``config`` takes the registry client's settings of Druid's doc (``basic.auth.user.info`` with
    ``basic.auth.credentials.source`` ``USER_INFO``); the ``schema.registry.ssl.*`` key and trust
    stores are JVM settings, kept and not acted on. ``capacity`` bounds the schema cache.
    """

    _unhonoured = {"config": lambda value: not _unhonoured_config(value)}

    type: Literal["schema_registry"]
    url: NonEmptyStr | None = None
    urls: tuple[NonEmptyStr, ...] | None = None
    capacity: PositiveInt | None = None
    config: dict[str, Any] | None = None
    headers: dict[str, str] | None = None

    @model_validator(mode="after")
    def _some_url(self) -> SchemaRegistryDecoder:
        if not self.url and not self.urls:
            raise spec_problem("'url' or 'urls' is required")
        for index, url in enumerate(self.all_urls()):
            if not url.startswith(("http://", "https://")):
                raise spec_problem(
                    "must be an http:// or https:// URL", "urls" if self.urls else "url", index
                )
        registry_basic_auth(self.config or {})
        return self

    def all_urls(self) -> tuple[str, ...]:
        return (self.url,) if self.url else tuple(self.urls or ())


def _unhonoured_config(config: dict[str, Any] | None) -> list[str]:
    return [key for key in (config or {}) if key not in _HONOURED_CONFIG]


_HONOURED_CONFIG = ("basic.auth.credentials.source", "basic.auth.user.info")


def registry_basic_auth(config: dict[str, Any]) -> tuple[str, str] | None:
    """The basic-auth user and password of a registry ``config``, as Confluent's client reads it."""
    source = str(
        config.get("basic.auth.credentials.source", "USER_INFO" if "basic.auth.user.info" in config else "")
    )
    if not source:
        return None
    if source.upper() != "USER_INFO":
        raise spec_problem(
            f"basic.auth.credentials.source '{source}' is not supported (only USER_INFO)", "config"
        )
    info = config.get("basic.auth.user.info")
    if not isinstance(info, str) or ":" not in info:
        raise spec_problem("basic.auth.user.info must be 'user:password'", "config")
    user, _, password = info.partition(":")
    return user, password


AvroBytesDecoder = Annotated[
    InlineSchemaDecoder | InlineSchemasDecoder | SchemaRegistryDecoder, Field(discriminator="type")
]


class FileProtoDecoder(DruidModel):
    """``file``: a compiled descriptor set (``protoc --descriptor_set_out``) and the message type.

    ``descriptor`` is a path or a ``file:`` URL readable by the task; ``protoMessageType`` may
    be the short or the full name; without it the first message of the descriptor is used.
    """

    type: Literal["file"]
    descriptor: NonEmptyStr
    proto_message_type: NonEmptyStr | None = Field(default=None, alias="protoMessageType")

    @field_validator("descriptor")
    @classmethod
    def _local(cls, value: str) -> str:
        if "://" in value and not value.startswith("file:"):
            raise spec_problem(
                "only a path or a file: URL can be read here (Druid also reads a classpath/http URL)"
            )
        return value


ProtoBytesDecoder = Annotated[FileProtoDecoder | SchemaRegistryDecoder, Field(discriminator="type")]


# --------------------------------------------------------------------------- the formats


class FlattenField(DruidModel):
    """One field of a flattenSpec: ``root`` (a top-level field) or ``path`` (a JSONPath)."""

    type: Literal["root", "path", "jq", "tree"]
    name: NonEmptyStr
    expr: str | None = None
    nodes: tuple[str, ...] | None = None

    # data-formats.md: for Avro and Protobuf "Only 'path' expressions are supported"
    _types: ClassVar[tuple[str, ...]] = ("root", "path")

    @model_validator(mode="after")
    def _expression(self) -> FlattenField:
        if self.type in ("path", "jq") and not self.expr:
            raise spec_problem(f"a '{self.type}' field needs 'expr'", "expr")
        if self.type not in self._types:
            raise spec_problem(
                f"'{self.type}' fields are unavailable for this format ({' and '.join(self._types)} only)",
                "type",
            )
        try:
            if self.type == "path":
                compile_path(self.expr or "$")
            elif self.type == "jq":
                compile_jq(self.expr or ".")
        except FlattenError as e:
            raise spec_problem(str(e), "expr") from None
        if self.type == "tree" and not self.nodes:
            raise spec_problem("a 'tree' field needs 'nodes' (a list of field names)", "nodes")
        return self


class JsonFlattenField(FlattenField):
    """A flattenSpec field of the ``json`` format: ``root``, ``path``, ``jq`` and ``tree``."""

    _types: ClassVar[tuple[str, ...]] = ("root", "path", "jq", "tree")


class PathFlattenSpec(DruidModel):
    """The flattenSpec of avro_stream / protobuf: field discovery and ``root``/``path`` fields."""

    use_field_discovery: JsonBool = Field(default=True, alias="useFieldDiscovery")
    fields: tuple[FlattenField, ...] = ()

    @field_validator("fields")
    @classmethod
    def _distinct(cls, value: tuple[FlattenField, ...]) -> tuple[FlattenField, ...]:
        names: set[str] = set()
        for index, item in enumerate(value):
            if item.name in names:
                raise spec_problem(f"duplicate field name '{item.name}'", index, "name")
            names.add(item.name)
        return value


class AvroStreamInputFormat(DruidModel):
    """``avro_stream`` (Druid's data-formats.md, "Avro Stream")."""

    type: Literal["avro_stream"]
    avro_bytes_decoder: AvroBytesDecoder = Field(alias="avroBytesDecoder")
    flatten_spec: PathFlattenSpec | None = Field(default=None, alias="flattenSpec")
    binary_as_string: JsonBool = Field(default=False, alias="binaryAsString")
    extract_unions_by_type: JsonBool = Field(default=False, alias="extractUnionsByType")


class ProtobufInputFormat(DruidModel):
    """``protobuf`` (Druid's data-formats.md, "Protobuf")."""

    type: Literal["protobuf"]
    proto_bytes_decoder: ProtoBytesDecoder = Field(alias="protoBytesDecoder")
    flatten_spec: PathFlattenSpec | None = Field(default=None, alias="flattenSpec")

"""``protobuf``: Protobuf binary records decoded with protobuf's descriptor pool into rows.

Druid's docs are the reference: docs/ingestion/data-formats.md ("Protobuf") and
docs/development/extensions-core/protobuf.md:

* ``file``: ``descriptor`` is a compiled descriptor set (``protoc --descriptor_set_out
  --include_imports``), ``protoMessageType`` the message (short or full name; the first message
  of the descriptor when not given); the value is the plain message;
* ``schema_registry``: Confluent's wire format, magic byte 0, a 4-byte big-endian schema id, the
  message indexes (zigzag varints: a count, then the index path of the message in its file; a
  single 0 is the first message), then the message. The schema is fetched by id with
  ``format=serialized`` (a base64 ``FileDescriptorProto``, what Confluent's Python serializer
  registers), its references too.

Rows: field names as in the .proto file (Druid's protobuf tutorial ingests ``http_method``);
fields that are not set are absent (as in proto JSON); enums are their value name, repeated
fields lists, maps dicts, nested messages dicts, ``bytes`` base64 text; 64-bit integers stay
numbers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError as ProtoDecodeError
from google.protobuf.message import Message

from middlemanager.ingest.formats.errors import DecodeError
from middlemanager.ingest.formats.protobuf_columns import ProtobufColumns, flat_protobuf_columns
from middlemanager.ingest.formats.registry import (
    RegisteredSchema,
    SchemaCache,
    SchemaLookupError,
    SchemaRegistry,
)
from middlemanager.ingest.formats.wire import Columns, Frame, merge_parts
from supervisor.binary_formats import FileProtoDecoder, ProtobufInputFormat, SchemaRegistryDecoder

__all__ = ["ProtobufDecoder", "message_to_row"]

_MAX_INDEXES = 64


def _value(field: FieldDescriptor, value: Any) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return message_to_row(value)
    if kind == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        found = enum.values_by_number.get(value) if enum is not None else None
        return found.name if found is not None else value
    if kind == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def message_to_row(message: Message) -> dict[str, Any]:
    """The set fields of a message as a dict (nested messages as dicts)."""
    row: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            row[field.name] = {key: _value(value_field, item) for key, item in value.items()}
        elif field.is_repeated:
            row[field.name] = [_value(field, item) for item in value]
        else:
            row[field.name] = _value(field, value)
    return row


def _descriptor_path(descriptor: str) -> Path:
    if descriptor.startswith("file:"):
        return Path(unquote(urlparse(descriptor).path))
    return Path(descriptor)


def _find_message(
    pool: descriptor_pool.DescriptorPool, files: list[descriptor_pb2.FileDescriptorProto], name: str | None
) -> Descriptor:
    if name is None:
        for file in files:
            if file.message_type:
                prefix = f"{file.package}." if file.package else ""
                return pool.FindMessageTypeByName(prefix + file.message_type[0].name)
        raise ValueError("the descriptor has no message type")
    try:
        return pool.FindMessageTypeByName(name)
    except KeyError:
        pass
    matches = []
    for file in files:
        prefix = f"{file.package}." if file.package else ""
        for message in file.message_type:
            if message.name == name:
                matches.append(prefix + message.name)
    if len(matches) == 1:
        return pool.FindMessageTypeByName(matches[0])
    if matches:
        raise ValueError(f"protoMessageType '{name}' is ambiguous: {', '.join(matches)}")
    raise ValueError(f"protoMessageType '{name}' is not in the descriptor")


def _file_message(descriptor: FileProtoDecoder) -> type[Message]:
    path = _descriptor_path(descriptor.descriptor)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"protoBytesDecoder.descriptor: cannot read {path}: {exc.strerror}") from None
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    try:
        descriptor_set.ParseFromString(data)
    except ProtoDecodeError:
        raise ValueError(
            f"protoBytesDecoder.descriptor: {path} is not a descriptor set (protoc --descriptor_set_out)"
        ) from None
    pool = descriptor_pool.DescriptorPool()
    files = list(descriptor_set.file)
    try:
        for file in files:
            pool.Add(file)
        message = _find_message(pool, files, descriptor.proto_message_type)
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"protoBytesDecoder: {exc}") from None
    return message_factory.GetMessageClass(message)


def _zigzag_varint(data: bytes, at: int) -> tuple[int, int]:
    shift = 0
    result = 0
    while True:
        if at >= len(data):
            raise DecodeError("Protobuf record ends inside its message indexes")
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise DecodeError("Protobuf record has a malformed message index")
    return (result >> 1) ^ -(result & 1), at


def _proto_file(name: str, schema: str) -> descriptor_pb2.FileDescriptorProto:
    try:
        raw = base64.b64decode(schema, validate=True)
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
    except (binascii.Error, ValueError, ProtoDecodeError):
        raise SchemaLookupError(
            "the registry answered the schema as .proto text, not as a serialized descriptor "
            "(format=serialized); .proto text cannot be compiled here"
        ) from None
    file.name = name
    return file


class _RegistrySchema:
    """The messages of one registered schema (a .proto file), by message index path."""

    def __init__(self, schema_id: int, found: RegisteredSchema) -> None:
        if found.schema_type.upper() != "PROTOBUF":
            raise SchemaLookupError(f"is a {found.schema_type} schema, not Protobuf")
        pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        self._add_references(pool, found, added)
        main = _proto_file(f"registry-schema-{schema_id}.proto", found.schema)
        self._add_file(pool, main, added)
        self._file = main
        self._pool = pool
        self._classes: dict[tuple[int, ...], type[Message]] = {}
        self._columns: dict[tuple[int, ...], ProtobufColumns | None] = {}

    def _add_references(
        self, pool: descriptor_pool.DescriptorPool, found: RegisteredSchema, added: set[str]
    ) -> None:
        for name, ref in found.references:
            self._add_references(pool, ref, added)
            self._add_file(pool, _proto_file(name, ref.schema), added)

    def _add_file(
        self, pool: descriptor_pool.DescriptorPool, file: descriptor_pb2.FileDescriptorProto, added: set[str]
    ) -> None:
        if file.name in added:
            return
        for dependency in file.dependency:
            if dependency not in added:
                # well-known types (google/protobuf/*.proto) are not registered by the serializer
                try:
                    known = descriptor_pool.Default().FindFileByName(dependency)
                except KeyError:
                    raise SchemaLookupError(
                        f"imports '{dependency}', which is neither a reference nor a well-known type"
                    ) from None
                self._add_file(
                    pool, descriptor_pb2.FileDescriptorProto.FromString(known.serialized_pb), added
                )
        try:
            pool.Add(file)
        except (TypeError, ValueError) as exc:
            raise SchemaLookupError(f"not a valid Protobuf schema: {exc}") from None
        added.add(file.name)

    def parser(self, indexes: tuple[int, ...]) -> Callable[[bytes], Message]:
        return self._class(indexes).FromString

    def columns(self, indexes: tuple[int, ...]) -> ProtobufColumns | None:
        """The column decoder of the message at ``indexes``, if it is flat."""
        if indexes not in self._columns:
            self._columns[indexes] = flat_protobuf_columns(self._class(indexes).DESCRIPTOR)
        return self._columns[indexes]

    def _class(self, indexes: tuple[int, ...]) -> type[Message]:
        found = self._classes.get(indexes)
        if found is not None:
            return found
        prefix = f"{self._file.package}." if self._file.package else ""
        messages = self._file.message_type
        names = []
        for index in indexes:
            if not 0 <= index < len(messages):
                raise DecodeError(f"Protobuf message index {list(indexes)} is not in schema")
            names.append(messages[index].name)
            messages = messages[index].nested_type
        descriptor = self._pool.FindMessageTypeByName(prefix + ".".join(names))
        message = message_factory.GetMessageClass(descriptor)
        self._classes[indexes] = message
        return message


class ProtobufDecoder:
    """Decodes the values of a ``protobuf`` input format into rows (dicts)."""

    def __init__(self, input_format: ProtobufInputFormat) -> None:
        decoder = input_format.proto_bytes_decoder
        self._parse: Callable[[bytes], Message] | None = None
        self._file_columns: ProtobufColumns | None = None
        self._cache: SchemaCache[_RegistrySchema] | None = None
        if isinstance(decoder, FileProtoDecoder):
            message = _file_message(decoder)
            self._parse = message.FromString
            self._file_columns = flat_protobuf_columns(message.DESCRIPTOR)
        else:
            assert isinstance(decoder, SchemaRegistryDecoder)
            registry = SchemaRegistry(decoder)
            self._cache = SchemaCache(
                lambda schema_id: _RegistrySchema(schema_id, registry.by_id(schema_id, serialized=True)),
                decoder.capacity,
            )

    def decode(self, value: bytes) -> dict[str, Any]:
        if self._parse is not None:
            parse, payload = self._parse, value
        else:
            parse, payload = self._registry_message(value)
        try:
            message = parse(payload)
        except ProtoDecodeError as exc:
            raise DecodeError(f"Protobuf data cannot be decoded: {exc}") from None
        return message_to_row(message)

    def _registry_message(self, value: bytes) -> tuple[Callable[[bytes], Message], bytes]:
        schema_id, indexes, at = _header(value)
        return self._schema(schema_id).parser(indexes), value[at:]

    def _schema(self, schema_id: int) -> _RegistrySchema:
        assert self._cache is not None
        try:
            return self._cache.get(schema_id)
        except SchemaLookupError as exc:
            raise DecodeError(f"Failed to get Protobuf schema: {exc}") from None

    @property
    def columnar(self) -> bool:
        """Whether batches may decode into columns (a ``file`` message: when it is flat)."""
        return self._parse is None or self._file_columns is not None

    def decode_columns(self, frame: Frame) -> Columns | None:
        """The messages of ``frame`` decoded into columns (``wire.py``): the good ones, by
        schema and message; ``None`` when one is not flat (the batch takes the row path)."""
        if self._parse is not None:
            columns = self._file_columns
            return None if columns is None else columns.decode(frame)
        buf, starts = frame.buf, frame.starts
        ok = frame.ends - starts >= 6
        at = np.where(ok, starts, 0)
        ok &= buf[at] == 0
        ids = buf[at[:, None] + np.arange(1, 5)].view(">i4").reshape(len(at))
        # the usual header: message indexes [0] written as one 0 byte; others read one by one
        first = ok & (buf[at + 5] == 0)
        groups: dict[tuple[int, tuple[int, ...]], tuple[list[int], list[int]]] = {}
        for schema_id in np.unique(ids[first]).tolist():
            same = np.flatnonzero(first & (ids == schema_id)).tolist()
            groups[(int(schema_id), (0,))] = (same, [6] * len(same))
        for index in np.flatnonzero(ok & ~first).tolist():
            try:
                schema_id, indexes, skip = _header(buf[starts[index] : frame.ends[index]].tobytes())
            except DecodeError:
                continue  # the row decoder names the problem
            rows_of, skips = groups.setdefault((schema_id, indexes), ([], []))
            rows_of.append(index)
            skips.append(skip)
        parts = []
        for (schema_id, indexes), (rows_of, skips) in groups.items():
            try:
                decoder = self._schema(schema_id).columns(indexes)
            except DecodeError:
                continue
            if decoder is None:
                return None
            order = np.argsort(rows_of, kind="stable")
            group = np.asarray(rows_of, dtype=np.int64)[order]
            part = decoder.decode(frame.part(group, np.asarray(skips, dtype=np.int64)[order]))
            if part is None:
                return None
            parts.append(Columns(part.table, group[part.rows]))
        if not parts:
            return Columns(pa.table({}), np.empty(0, dtype=np.int64))
        return merge_parts(parts)


def _header(value: bytes) -> tuple[int, tuple[int, ...], int]:
    """Confluent's header of a Protobuf record: schema id, message indexes, where the message starts."""
    if len(value) < 6:
        raise DecodeError(f"Protobuf record of {len(value)} bytes is shorter than Confluent's header")
    if value[0] != 0:
        raise DecodeError(f"Protobuf record starts with byte {value[0]}, expected magic byte 0")
    schema_id = int.from_bytes(value[1:5], "big", signed=True)
    count, at = _zigzag_varint(value, 5)
    if not 0 <= count <= _MAX_INDEXES:
        raise DecodeError(f"Protobuf record has {count} message indexes")
    indexes: tuple[int, ...]
    if count == 0:
        indexes = (0,)
    else:
        found = []
        for _ in range(count):
            index, at = _zigzag_varint(value, at)
            found.append(index)
        indexes = tuple(found)
    return schema_id, indexes, at

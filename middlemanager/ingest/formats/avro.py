"""``avro_stream``: Avro binary records decoded with fastavro into JSON-like rows.

Druid's docs are the reference: docs/ingestion/data-formats.md ("Avro Stream", "Avro Bytes
Decoder") and docs/development/extensions-core/avro.md ("Avro Types"):

* ``schema_inline``: the value is plain Avro binary of the given schema;
* ``multiple_schemas_inline``: byte 1 (a version), a 4-byte big-endian schema id, Avro binary;
* ``schema_registry``: Confluent's wire format, magic byte 0, a 4-byte big-endian schema id,
  Avro binary; the writer schema is fetched from the registry by id (and cached).

Values: records and maps become dicts, arrays lists, enums their symbol; ``bytes`` and
``fixed`` become base64 text, or UTF-8 text with ``binaryAsString``. Logical types are read as
their underlying type (a ``timestamp-millis`` is its long), as Druid's generic reader does. A union
is its value; with ``extractUnionsByType`` it is a map from the branch's type name (``int``,
``string``, a record's name, ...) to the value, so a flattenSpec path can pick a branch.
Decoding failures (truncated data, a wrong magic byte, an unknown schema id, the registry down)
raise :class:`DecodeError`: the pipeline counts, samples and dead-letters the record.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa

from middlemanager.ingest.formats.avro_columns import flat_avro_columns
from middlemanager.ingest.formats.errors import DecodeError
from middlemanager.ingest.formats.registry import SchemaCache, SchemaLookupError, SchemaRegistry
from middlemanager.ingest.formats.wire import Columns, Frame, merge_parts
from supervisor.binary_formats import (
    AvroStreamInputFormat,
    InlineSchemaDecoder,
    InlineSchemasDecoder,
    SchemaRegistryDecoder,
)

__all__ = ["AvroStreamDecoder", "without_logical_types"]

Convert = Callable[[Any], Any]
_HEADER = 5  # magic/version byte + 4-byte schema id


def without_logical_types(schema: Any) -> Any:
    """The schema without ``logicalType`` annotations: values are read as their base type."""
    if isinstance(schema, dict):
        return {key: without_logical_types(value) for key, value in schema.items() if key != "logicalType"}
    if isinstance(schema, list):
        return [without_logical_types(item) for item in schema]
    return schema


class _Values:
    """Builds, per schema, the conversion of decoded values (``None`` where nothing changes)."""

    def __init__(self, binary_as_string: bool, unions_by_type: bool) -> None:
        self._binary_as_string = binary_as_string
        self._unions_by_type = unions_by_type
        self._named: dict[str, Any] = {}

    @property
    def unions_by_type(self) -> bool:
        return self._unions_by_type

    def binary(self, value: bytes) -> str:
        if self._binary_as_string:
            return value.decode("utf-8", errors="replace")
        return base64.b64encode(value).decode("ascii")

    def of(self, schema: Any, seen: frozenset[str] = frozenset()) -> Convert | None:
        if isinstance(schema, str):
            if schema in ("bytes", "fixed"):
                return self.binary
            named = self._named.get(schema)
            if named is None or schema in seen:
                return None
            return self.of(named, seen | {schema})
        if isinstance(schema, list):
            return self._union(schema, seen)
        kind = schema.get("type")
        name = schema.get("name")
        if isinstance(name, str) and kind in ("record", "enum", "fixed", "error"):
            self._named[name] = schema
            seen = seen | {name}
        if kind in ("bytes", "fixed"):
            return self.binary
        if kind in ("record", "error"):
            fields = [(f["name"], self.of(f["type"], seen)) for f in schema.get("fields", ())]
            converting = [(field, conv) for field, conv in fields if conv is not None]
            if not converting:
                return None

            def record(value: Any) -> Any:
                for field, conv in converting:
                    item = value.get(field)
                    if item is not None:
                        value[field] = conv(item)
                return value

            return record
        if kind == "array":
            item_conv = self.of(schema.get("items"), seen)
            if item_conv is None:
                return None
            return lambda value: [None if item is None else item_conv(item) for item in value]
        if kind == "map":
            value_conv = self.of(schema.get("values"), seen)
            if value_conv is None:
                return None
            return lambda value: {k: None if v is None else value_conv(v) for k, v in value.items()}
        if isinstance(kind, dict | list):
            return self.of(kind, seen)
        return None

    def _union(self, branches: list[Any], seen: frozenset[str]) -> Convert | None:
        convs = [self.of(branch, seen) for branch in branches]
        if not self._unions_by_type:
            live = [conv for conv in convs if conv is not None]
            if not live:
                return None
            # the value does not say its branch: try the branch conversions by the value's type
            typed = [(self._python_type(branch), conv) for branch, conv in zip(branches, convs, strict=True)]

            def union(value: Any) -> Any:
                for kinds, conv in typed:
                    if isinstance(value, kinds):
                        return value if conv is None else conv(value)
                return value

            return union
        typed_named = [
            (self._type_name(branch), self._python_type(branch), conv)
            for branch, conv in zip(branches, convs, strict=True)
        ]

        def by_type(value: Any) -> Any:
            for name, kinds, conv in typed_named:
                if isinstance(value, kinds):
                    return {name: value if conv is None else conv(value)}
            return value

        return by_type

    def _resolved(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self._named:
            return self._named[schema]
        return schema

    def _type_name(self, schema: Any) -> str:
        # Avro's Schema.getName(): the type name of a primitive, the simple name of a named type.
        schema = self._resolved(schema)
        if isinstance(schema, str):
            return schema.rsplit(".", 1)[-1]
        if isinstance(schema, dict):
            name = schema.get("name")
            if isinstance(name, str):
                return name.rsplit(".", 1)[-1]
            kind = schema.get("type")
            return kind if isinstance(kind, str) else "union"
        return "union"

    def _python_type(self, schema: Any) -> tuple[type[Any], ...]:
        schema = self._resolved(schema)
        kind = schema.get("type") if isinstance(schema, dict) else schema
        kinds: dict[str, tuple[type[Any], ...]] = {
            "null": (type(None),),
            "boolean": (bool,),
            "int": (int,),
            "long": (int,),
            "float": (float, int),
            "double": (float, int),
            "string": (str,),
            "enum": (str,),
            "bytes": (bytes,),
            "fixed": (bytes,),
            "array": (list,),
            "map": (dict,),
            "record": (dict,),
            "error": (dict,),
        }
        return kinds.get(kind if isinstance(kind, str) else "", (object,))


class _Reader:
    """One writer schema, parsed, with the conversion of its decoded records."""

    def __init__(self, schema: Any, values: _Values, named: dict[str, Any] | None = None) -> None:
        plain = without_logical_types(schema)
        try:
            self.parsed = fastavro.parse_schema(plain, named_schemas=named if named is not None else {})
        except Exception as exc:  # fastavro raises several types for a bad schema
            raise SchemaLookupError(f"not a valid Avro schema: {exc}") from None
        self.convert = values.of(plain)
        # the column decoder when the schema is flat (avro_columns.py), else the row path only
        self.columns = flat_avro_columns(plain, values.binary, values.unions_by_type)

    def read(self, payload: bytes) -> dict[str, Any]:
        buffer = io.BytesIO(payload)
        try:
            record = fastavro.schemaless_reader(buffer, self.parsed, None)
        except Exception as exc:  # truncated or corrupt data: EOFError, StopIteration, IndexError, ...
            raise DecodeError(
                f"Avro data cannot be decoded ({type(exc).__name__}: {exc or 'truncated'})"
            ) from None
        if buffer.tell() != len(payload):
            raise DecodeError(f"Avro data has {len(payload) - buffer.tell()} bytes after the record")
        if not isinstance(record, dict):
            raise DecodeError("the Avro schema is not a record")
        return record if self.convert is None else self.convert(record)


class AvroStreamDecoder:
    """Decodes the values of an ``avro_stream`` input format into rows (dicts)."""

    def __init__(self, input_format: AvroStreamInputFormat) -> None:
        decoder = input_format.avro_bytes_decoder
        self._values = _Values(input_format.binary_as_string, input_format.extract_unions_by_type)
        self._inline: _Reader | None = None
        self._by_id: dict[int, _Reader] = {}
        self._cache: SchemaCache[_Reader] | None = None
        self._magic = 0
        try:
            if isinstance(decoder, InlineSchemaDecoder):
                self._inline = _Reader(decoder.schema_, self._values)
            elif isinstance(decoder, InlineSchemasDecoder):
                self._magic = 1
                self._by_id = {
                    int(key): _Reader(schema, self._values) for key, schema in decoder.schemas.items()
                }
            else:
                assert isinstance(decoder, SchemaRegistryDecoder)
                registry = SchemaRegistry(decoder)
                self._cache = SchemaCache(lambda schema_id: self._load(registry, schema_id), decoder.capacity)
        except SchemaLookupError as exc:
            raise ValueError(f"avroBytesDecoder: {exc}") from None

    def _load(self, registry: SchemaRegistry, schema_id: int) -> _Reader:
        found = registry.by_id(schema_id)
        if found.schema_type.upper() != "AVRO":
            raise SchemaLookupError(f"is a {found.schema_type} schema, not Avro")
        named: dict[str, Any] = {}
        try:
            for _name, ref in found.references:
                fastavro.parse_schema(without_logical_types(json.loads(ref.schema)), named_schemas=named)
            return _Reader(json.loads(found.schema), self._values, named)
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise SchemaLookupError(f"not a valid Avro schema: {exc}") from None

    def decode(self, value: bytes) -> dict[str, Any]:
        if self._inline is not None:
            return self._inline.read(value)
        if len(value) < _HEADER:
            raise DecodeError(f"Avro record of {len(value)} bytes is shorter than its {_HEADER}-byte header")
        if value[0] != self._magic:
            raise DecodeError(f"Avro record starts with byte {value[0]}, expected {self._magic}")
        schema_id = int.from_bytes(value[1:_HEADER], "big", signed=True)
        return self._reader_of(schema_id).read(value[_HEADER:])

    def _reader_of(self, schema_id: int) -> _Reader:
        if self._cache is not None:
            try:
                return self._cache.get(schema_id)
            except SchemaLookupError as exc:
                raise DecodeError(f"Failed to get Avro schema: {exc}") from None
        found = self._by_id.get(schema_id)
        if found is None:
            raise DecodeError(f"Avro schema id {schema_id} is not one of the inline schemas")
        return found

    @property
    def columnar(self) -> bool:
        """Whether batches may decode into columns (an inline schema: when it is flat)."""
        return self._inline is None or self._inline.columns is not None

    def decode_columns(self, frame: Frame) -> Columns | None:
        """The records of ``frame`` decoded into columns (``wire.py``): the good ones, by schema;
        ``None`` when a schema is not flat (the batch takes the row path, :meth:`decode`)."""
        if self._inline is not None:
            columns = self._inline.columns
            return None if columns is None else columns.decode(frame)
        starts = frame.starts
        ok = frame.ends - starts >= _HEADER
        at = np.where(ok, starts, 0)
        ok &= frame.buf[at] == self._magic
        ids = frame.buf[at[:, None] + np.arange(1, _HEADER)].view(">i4").reshape(len(at))
        parts = []
        for schema_id in np.unique(ids[ok]).tolist():
            try:
                reader = self._reader_of(int(schema_id))
            except DecodeError:
                continue  # its records are errors (the row decoder names them)
            if reader.columns is None:
                return None
            rows = np.flatnonzero(ok & (ids == schema_id))
            part = reader.columns.decode(frame.part(rows, _HEADER))
            if part is None:
                return None
            parts.append(Columns(part.table, rows[part.rows]))
        if not parts:
            return Columns(pa.table({}), np.empty(0, dtype=np.int64))
        return merge_parts(parts)

"""Avro records of a flat schema decoded straight into columns (see ``wire.py``).

A flat schema is a record whose fields are primitives (``null``, ``boolean``, ``int``, ``long``,
``float``, ``double``, ``string``, ``bytes``), ``enum``, ``fixed``, or a union of ``null`` and one
of those: the common shape of an event. Logical types are read as their base type, as on the row
path. The values are those of the row decoder (``avro.py``): an enum its symbol, ``bytes`` and
``fixed`` base64 text (UTF-8 text with ``binaryAsString``), a null union branch null. Any other
schema (arrays, maps, nested records, unions of two types, ``extractUnionsByType`` with a
union) has no column decoder: its records take the row path.

Avro's binary encoding (the specification's "Binary Encoding"): fields in schema order, no
tags; ``int``/``long`` zigzag varints; ``float``/``double`` 4/8 bytes little-endian;
``boolean`` one byte; ``string``/``bytes`` a long length then the bytes; ``enum`` an int index;
``fixed`` its size in bytes; a union a long branch index then the branch's value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from middlemanager.ingest.formats.wire import (
    Bools,
    Columns,
    Frame,
    Ints,
    binary_column,
    fixed_values,
    number_column,
    settle,
    string_column,
    varint,
    zigzag,
)

__all__ = ["AvroColumns", "flat_avro_columns"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})
_FLOATS = {"float": "<f4", "double": "<f8"}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: str  # a primitive, "enum" or "fixed"
    # a union of null and this type: (branch index of null, branch index of the value)
    union: tuple[int, int] | None = None
    size: int = 0  # fixed
    symbols: tuple[str, ...] = ()  # enum


def _simple(schema: Any, named: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """(kind, schema) of a type a column can hold, else ``None``."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema, {}
        found = named.get(schema)
        return None if found is None else _simple(found, named)
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind in _PRIMITIVES:
        return str(kind), schema
    if kind == "enum" and isinstance(schema.get("symbols"), list):
        named[str(schema.get("name"))] = schema
        return "enum", schema
    if kind == "fixed" and isinstance(schema.get("size"), int):
        named[str(schema.get("name"))] = schema
        return "fixed", schema
    return None


def _field(name: str, schema: Any, named: dict[str, dict[str, Any]], unions: bool) -> _Field | None:
    union = None
    if isinstance(schema, list):
        if unions or len(schema) != 2 or "null" not in schema:
            return None
        null_branch = schema.index("null")
        union = (null_branch, 1 - null_branch)
        schema = schema[1 - null_branch]
    simple = _simple(schema, named)
    if simple is None:
        return None
    kind, spec = simple
    if kind == "null" and union is not None:
        return None
    if kind == "enum":
        return _Field(name, kind, union, symbols=tuple(str(s) for s in spec["symbols"]))
    return _Field(name, kind, union, size=int(spec.get("size", 0)))


def flat_avro_columns(
    schema: Any, binary: Callable[[bytes], str], unions_by_type: bool
) -> AvroColumns | None:
    """The column decoder of a writer schema (without logical types), if it is flat."""
    if not isinstance(schema, dict) or schema.get("type") not in ("record", "error"):
        return None
    named: dict[str, dict[str, Any]] = {}
    fields = []
    for item in schema.get("fields", ()):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        found = _field(item["name"], item.get("type"), named, unions_by_type)
        if found is None:
            return None
        fields.append(found)
    if len({f.name for f in fields}) != len(fields):
        return None
    return AvroColumns(tuple(fields), binary)


# The decoded payload of one field: numbers, (starts, lengths) of byte strings, or nothing.
_Payload = tuple[Any, Ints | None]


class AvroColumns:
    """Decodes records of one flat schema into one column per field."""

    def __init__(self, fields: tuple[_Field, ...], binary: Callable[[bytes], str]) -> None:
        self.fields = fields
        self._binary = binary

    def decode(self, frame: Frame) -> Columns | None:
        """The good records of ``frame`` as a table; ``None``: the batch takes the row path."""
        buf = frame.buf
        n = len(frame.starts)
        pos = frame.starts.copy()
        bad = np.zeros(n, dtype=np.bool_)
        payloads: list[tuple[_Payload, Bools | None]] = []
        for field in self.fields:
            present: Bools | None = None
            if field.union is None:
                payload, pos = self._read(field, buf, pos, bad, None)
            else:
                raw, after, malformed = varint(buf, pos)
                branch = zigzag(raw)
                if malformed is not None:
                    bad |= malformed
                bad |= (branch != 0) & (branch != 1)
                present = branch == field.union[1]
                pos = after
                if present.all():
                    payload, pos = self._read(field, buf, pos, bad, None)
                else:
                    rows = np.flatnonzero(present)
                    payload, pos_rows = self._read(field, buf, pos[rows], bad, rows)
                    pos[rows] = pos_rows
                    payload = _scatter(payload, rows, n)
            np.minimum(pos, frame.limit, out=pos)
            payloads.append((payload, present))
        bad |= pos != frame.ends
        good = ~bad
        columns = []
        for field, (payload, present) in zip(self.fields, payloads, strict=True):
            keep = good if present is None else good & present
            column = self._column(field, frame, payload, keep)
            if column is None:
                return None
            columns.append(column)
        table = pa.Table.from_arrays(columns, names=[f.name for f in self.fields])
        if bad.any():
            table = table.filter(pa.array(good))
        return Columns(table, np.flatnonzero(good))

    def _read(
        self, field: _Field, buf: Any, pos: Ints, bad: Bools, rows: Ints | None
    ) -> tuple[_Payload, Ints]:
        """Read ``field`` at ``pos`` (of the records ``rows``, all when ``None``)."""
        kind = field.kind

        def flag(mask: Bools | None) -> None:
            if mask is not None:
                if rows is None:
                    bad[mask] = True
                else:
                    bad[rows[mask]] = True

        if kind == "null":
            return (None, None), pos
        if kind == "boolean":
            byte = buf[pos]
            flag(byte > 1)
            return (byte == 1, None), pos + 1
        if kind in ("int", "long", "enum"):
            raw, after, malformed = varint(buf, pos)
            flag(malformed)
            value = zigzag(raw)
            if kind == "enum":
                outside = (value < 0) | (value >= len(field.symbols))
                flag(outside)
                value = np.where(outside, 0, value)
            return (value, None), after
        if kind in _FLOATS:
            size = 4 if kind == "float" else 8
            # a float as the double it is exactly (fastavro gives a Python float; so do the columns)
            return (fixed_values(buf, pos, _FLOATS[kind]).astype(np.float64), None), pos + size
        if kind == "fixed":
            return (pos, np.full(len(pos), field.size, dtype=np.int64)), pos + field.size
        # string, bytes: a long length, then the bytes
        raw, after, malformed = varint(buf, pos)
        flag(malformed)
        length = zigzag(raw)
        negative = length < 0
        flag(negative)
        length = np.where(negative, 0, length)
        return (after, length), after + length

    def _column(self, field: _Field, frame: Frame, payload: _Payload, keep: Bools) -> pa.Array | None:
        values, lengths = payload
        kind = field.kind
        if kind == "null":
            return pa.nulls(len(keep))
        if lengths is not None:
            starts, lengths = settle(frame, values, lengths, keep)
            if kind == "string":
                return string_column(frame, starts, lengths, keep)
            raw = binary_column(frame, starts, lengths, keep)
            return pa.array([None if v is None else self._binary(v) for v in raw.to_pylist()], pa.string())
        if kind == "enum":
            return pa.array(field.symbols, pa.string()).take(number_column(values, keep))
        return number_column(values, keep)


def _scatter(payload: _Payload, rows: Ints, n: int) -> _Payload:
    """A payload read for ``rows`` spread over all ``n`` records (zeros elsewhere)."""
    values, lengths = payload
    if values is None:
        return payload
    full = np.zeros(n, dtype=values.dtype)
    full[rows] = values
    if lengths is None:
        return full, None
    full_lengths = np.zeros(n, dtype=np.int64)
    full_lengths[rows] = lengths
    return full, full_lengths

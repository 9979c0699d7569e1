"""Protobuf messages of a flat type decoded straight into columns (see ``wire.py``).

A flat message has singular scalar fields only: numbers, ``bool``, ``enum``, ``string``,
``bytes``; no repeated, map, message or group field, no required field, no oneof of several
fields. Its values are those of the row decoder (``protobuf.py``, ``ListFields``): a field that
is not set is null, and so is a proto3 field without presence at its default (0, "", false);
an enum its value name, ``bytes`` base64 text. Other messages take the row path.

The wire format (protobuf.dev, "Encoding"): a message is a sequence of (tag, value), the tag a
varint ``field_number << 3 | wire_type``; wire type 0 a varint, 1 eight bytes, 2 a varint
length then the bytes, 5 four bytes. Fields may come in any order, unknown fields are skipped.
The batch is read one (tag, value) a step for every record still inside its bytes, so a batch
of messages of k fields takes about k steps. A record with a field twice (the last one would
win), a known field of the wrong wire type, an enum number without a name or a group is
marked bad: the row decoder decides (see ``binary.py``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from google.protobuf.descriptor import FieldDescriptor

from middlemanager.ingest.formats.wire import (
    Bools,
    Columns,
    Frame,
    Ints,
    Words,
    binary_column,
    fixed_values,
    number_column,
    settle,
    string_column,
    varint,
    zigzag,
)

__all__ = ["ProtobufColumns", "flat_protobuf_columns"]

F = FieldDescriptor
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_WIRE_TYPES = {
    F.TYPE_INT32: _VARINT,
    F.TYPE_INT64: _VARINT,
    F.TYPE_UINT32: _VARINT,
    F.TYPE_UINT64: _VARINT,
    F.TYPE_SINT32: _VARINT,
    F.TYPE_SINT64: _VARINT,
    F.TYPE_BOOL: _VARINT,
    F.TYPE_ENUM: _VARINT,
    F.TYPE_FIXED64: _I64,
    F.TYPE_SFIXED64: _I64,
    F.TYPE_DOUBLE: _I64,
    F.TYPE_FIXED32: _I32,
    F.TYPE_SFIXED32: _I32,
    F.TYPE_FLOAT: _I32,
    F.TYPE_STRING: _LEN,
    F.TYPE_BYTES: _LEN,
}
_FIXED = {
    F.TYPE_FIXED64: "<u8",
    F.TYPE_SFIXED64: "<i8",
    F.TYPE_DOUBLE: "<f8",
    F.TYPE_FIXED32: "<u4",
    F.TYPE_SFIXED32: "<i4",
    F.TYPE_FLOAT: "<f4",
}
_MAX_FIELD_NUMBER = (1 << 29) - 1
# the wire types of a value (3 and 4, groups, are not read here; 6 and 7 do not exist)
_VALID_WIRE = np.zeros(8, dtype=np.bool_)
_VALID_WIRE[[_VARINT, _I64, _LEN, _I32]] = True
_LOW32 = np.uint64(0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    number: int
    kind: int  # FieldDescriptor.TYPE_*
    presence: bool  # set even at its default (proto2, proto3 optional)
    # enum: the value numbers (ascending) and their names
    numbers: npt.NDArray[np.int64] | None = None
    names: pa.Array | None = None


def flat_protobuf_columns(descriptor: Any) -> ProtobufColumns | None:
    """The column decoder of a message type (its ``Descriptor``, upb's or Python's), if it is flat."""
    for oneof in descriptor.oneofs:
        if len(oneof.fields) > 1:
            return None
    fields = []
    for field in descriptor.fields:
        if field.is_repeated or field.is_required or field.type not in _WIRE_TYPES:
            return None
        numbers = names = None
        if field.type == F.TYPE_ENUM:
            enum = field.enum_type
            if enum is None:
                return None
            values = sorted((v.number, v.name) for v in enum.values)
            numbers = np.array([number for number, _ in values], dtype=np.int64)
            names = pa.array([name for _, name in values], pa.string())
        fields.append(_Field(field.name, field.number, field.type, field.has_presence, numbers, names))
    if not fields:
        return None
    return ProtobufColumns(tuple(fields))


def _values(buf: npt.NDArray[np.uint8], wire: int, at: Ints, limit: int) -> tuple[Words, Ints, Ints, Bools]:
    """The values of wire type ``wire`` at ``at``: the varint (the length of a string), where the
    value's bytes start, where the next tag starts, and which are malformed."""
    if wire == _VARINT:
        value, after, malformed = varint(buf, at)
        place = at
    elif wire == _LEN:
        value, place, malformed = varint(buf, at)
        after = place + np.minimum(value, np.uint64(limit)).astype(np.int64)
    else:
        value = np.zeros(len(at), dtype=np.uint64)
        place, after, malformed = at, at + (8 if wire == _I64 else 4), None
    np.minimum(after, limit, out=after)
    return value, place, after, np.zeros(len(at), dtype=np.bool_) if malformed is None else malformed


class ProtobufColumns:
    """Decodes messages of one flat type into one column per field."""

    def __init__(self, fields: tuple[_Field, ...]) -> None:
        self.fields = fields
        top = max(f.number for f in fields)
        self._column_of = np.full(top + 2, -1, dtype=np.int64)  # (the last slot: unknown numbers)
        for index, field in enumerate(fields):
            self._column_of[field.number] = index
        # steps before a batch is left to the row path (records of many unknown fields)
        self._max_steps = 4 * len(fields) + 16

    def decode(self, frame: Frame) -> Columns | None:
        """The good records of ``frame`` as a table; ``None``: the batch takes the row path."""
        buf = frame.buf
        n = len(frame.starts)
        pos = frame.starts.copy()
        ends = frame.ends
        bad = np.zeros(n, dtype=np.bool_)
        # per field and record: the entry (tag, value) read for it, -1 when none
        slot = np.full((len(self.fields), n), -1, dtype=np.int64)
        wire_types: list[Ints] = []
        words: list[Words] = []
        places: list[Ints] = []
        entries = 0
        active = np.flatnonzero(pos < ends)
        steps = 0
        unknown = len(self._column_of) - 1
        filled: set[int] = set()  # the fields some record has had already
        while active.size:
            steps += 1
            if steps > self._max_steps:
                return None
            everyone = len(active) == n  # (then plain arrays instead of gathers by ``active``)
            tag, at, malformed = varint(buf, pos if everyone else pos[active])
            first = int(tag[0])
            if malformed is None and _VALID_WIRE[first & 7] and (tag == tag[0]).all():
                # the usual case: every record has the same field next (messages of one layout)
                wire = np.full(len(active), first & 7, dtype=np.int64)
                word, place, after, broken = _values(buf, first & 7, at, frame.limit)
                number = first >> 3
                column = int(self._column_of[min(number, unknown)]) if 0 < number <= _MAX_FIELD_NUMBER else -1
                if number == 0 or number > _MAX_FIELD_NUMBER:
                    broken[:] = True
                elif column >= 0:
                    if column in filled:
                        twice = (slot[column] if everyone else slot[column, active]) >= 0
                        if twice.any():
                            broken |= twice
                    filled.add(column)
                    ids = np.arange(entries, entries + len(active))
                    if everyone:
                        slot[column] = ids
                    else:
                        slot[column, active] = ids
            else:
                wire = (tag & np.uint64(7)).astype(np.int64)
                number_of = tag >> np.uint64(3)
                broken = (number_of == 0) | (number_of > _MAX_FIELD_NUMBER) | ~_VALID_WIRE[wire]
                if malformed is not None:
                    broken |= malformed
                word = np.zeros(len(active), dtype=np.uint64)
                place = at.copy()
                after = at.copy()
                for kind in (_VARINT, _I64, _LEN, _I32):
                    rows = np.flatnonzero(wire == kind)
                    if rows.size:
                        word[rows], place[rows], after[rows], wrong = _values(
                            buf, kind, at[rows], frame.limit
                        )
                        broken[rows] |= wrong
                column_of = self._column_of[np.minimum(number_of, np.uint64(unknown)).astype(np.int64)]
                known = np.flatnonzero((column_of >= 0) & ~broken)
                if known.size:
                    rows, columns = active[known], column_of[known]
                    filled.update(np.unique(columns).tolist())
                    twice = slot[columns, rows] >= 0
                    if twice.any():
                        broken[known[twice]] = True
                    slot[columns, rows] = entries + known
            wire_types.append(wire)
            words.append(word)
            places.append(place)
            entries += len(active)
            any_broken = bool(broken.any())
            if everyone:
                pos = after
                going = after < ends
                if any_broken:
                    bad |= broken
                    going &= ~broken
            else:
                pos[active] = after
                going = after < ends[active]
                if any_broken:
                    bad[active] |= broken
                    going &= ~broken
            if not going.all():
                active = active[going]
        bad |= pos != ends
        all_wire = np.concatenate(wire_types) if wire_types else np.zeros(0, dtype=np.int64)
        all_words = np.concatenate(words) if words else np.zeros(0, dtype=np.uint64)
        all_places = np.concatenate(places) if places else np.zeros(0, dtype=np.int64)
        columns_out: list[pa.Array] = []
        for index, field in enumerate(self.fields):
            entry = slot[index]
            present = (entry >= 0) & ~bad
            if not entries or not present.any():
                columns_out.append(pa.nulls(n))
                continue
            found = np.where(present, entry, 0)
            wrong = present & (all_wire[found] != _WIRE_TYPES[field.kind])
            if wrong.any():
                bad |= wrong
                present &= ~wrong
            values = self._column(field, frame, found, present, all_words, all_places)
            if values is None:
                return None
            columns_out.append(values)
        good = ~bad
        table = pa.Table.from_arrays(
            [column.filter(pa.array(good)) if bad.any() else column for column in columns_out],
            names=[f.name for f in self.fields],
        )
        return Columns(table, np.flatnonzero(good))

    def _column(
        self,
        field: _Field,
        frame: Frame,
        found: Ints,
        present: Bools,
        words: Words,
        places: Ints,
    ) -> pa.Array | None:
        """The column of ``field`` (``found``: the entry of each record); ``None``: the batch
        takes the row path (a value the row decoder reads otherwise)."""
        kind = field.kind
        if kind in (F.TYPE_STRING, F.TYPE_BYTES):
            lengths = words[found].astype(np.int64)
            if not field.presence:
                present = present & (lengths != 0)
            starts, lengths = settle(frame, places[found], lengths, present)
            if kind == F.TYPE_STRING:
                return string_column(frame, starts, lengths, present)
            raw = binary_column(frame, starts, lengths, present)
            return pa.array(
                [None if v is None else base64.b64encode(v).decode("ascii") for v in raw.to_pylist()],
                pa.string(),
            )
        values: npt.NDArray[np.generic]
        if kind in _FIXED:
            at = np.where(present, places[found], frame.starts)
            values = fixed_values(frame.buf, at, _FIXED[kind])
            zero = values.view(np.uint64 if values.itemsize == 8 else np.uint32) == 0
            if kind == F.TYPE_FLOAT:
                # exactly the Python float of the row path; the slots of absent fields hold any
                # bytes (a signalling NaN among them warns), and are masked out below
                with np.errstate(invalid="ignore"):
                    values = values.astype(np.float64)
        else:
            word = words[found]
            zero = word == 0
            if kind == F.TYPE_INT64:
                values = word.view(np.int64)
            elif kind == F.TYPE_UINT64:
                values = word
            elif kind == F.TYPE_SINT64:
                values = zigzag(word)
            elif kind == F.TYPE_BOOL:
                values = word != 0
            elif kind == F.TYPE_SINT32:
                values = zigzag(word & _LOW32).astype(np.int32)
            elif kind == F.TYPE_UINT32:
                values = (word & _LOW32).astype(np.uint32)
            else:  # int32, enum: the low 32 bits, signed
                values = (word & _LOW32).astype(np.uint32).view(np.int32)
            zero = values == 0
        if not field.presence:
            present = present & ~zero
        if kind == F.TYPE_ENUM:
            assert field.numbers is not None and field.names is not None
            numbers = values.astype(np.int64)
            at = np.minimum(np.searchsorted(field.numbers, numbers), len(field.numbers) - 1)
            nameless = present & (field.numbers[at] != numbers)
            if nameless.any():
                return None  # an open enum's number: the row decoder gives the number itself
            return field.names.take(number_column(at, present))
        return number_column(values, present)

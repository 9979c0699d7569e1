"""The readers of ``avro_stream`` and ``protobuf``: each record value decoded into one row.

Two paths give the same rows:

* columns: when the schema is flat and there is no flattenSpec, a whole batch is decoded into
  an Arrow table, one numpy step per field over all records (``wire.py``, ``avro_columns.py``,
  ``protobuf_columns.py``); the pipeline then takes its columnar path, as for JSON;
* rows (the reference): fastavro and protobuf decode one record at a time into Python objects,
  given to the pipeline as row dicts (``DecodedBatch.rows``), which it types and converts
  exactly as it does JSON rows (``schema.RowConverter``). The flattenSpec (``root``/``path``
  fields) is applied here. Nested schemas, unions of several types and flattenSpecs take it.

A value that cannot be decoded is an error of its record, with the row decoder's reason: a
record the column decoder finds bad is decoded again by the row decoder, which names the
problem (and if that one decodes it after all, the whole batch takes the row path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from middlemanager.ingest.formats import DecodedBatch, FormatSetupError, register
from middlemanager.ingest.formats.avro import AvroStreamDecoder
from middlemanager.ingest.formats.errors import DecodeError
from middlemanager.ingest.formats.flatten import FlattenError, flattener
from middlemanager.ingest.formats.protobuf import ProtobufDecoder
from middlemanager.ingest.formats.wire import Columns, Frame, may_hold_nul
from supervisor.binary_formats import AvroStreamInputFormat, PathFlattenSpec, ProtobufInputFormat
from supervisor.records import RecordBatch

__all__ = ["BinaryRowsReader", "DecodeError"]

RowDecoder = Callable[[bytes], dict[str, Any]]
# The column decoder of a format: the good records of a batch, or None (take the row path).
ColumnDecoder = Callable[[Frame], Columns | None]
_TOMBSTONE = "Unable to parse row []: the record has no value (tombstone)"
# Batches of more bytes take the row path (the column decoders' string offsets are 32-bit).
MAX_FRAME_BYTES = (1 << 31) - 1024


class BinaryRowsReader:
    """One row per record value, decoded by ``decode`` and flattened by the flattenSpec;
    batches decoded by ``columns`` when given and there is no flattenSpec."""

    def __init__(
        self, decode: RowDecoder, flatten_spec: PathFlattenSpec | None, columns: ColumnDecoder | None = None
    ) -> None:
        try:
            flatten = flattener(flatten_spec)
        except FlattenError as exc:
            raise FormatSetupError(f"flattenSpec: {exc}") from None
        self.decode_value: RowDecoder = decode if flatten is None else (lambda value: flatten(decode(value)))
        self.decode_columns = columns if flatten is None else None

    def decode(self, batch: RecordBatch) -> DecodedBatch:
        return self.decode_values(batch.values)

    def decode_values(self, values: list[bytes | None]) -> DecodedBatch:
        if self.decode_columns is not None and values:
            decoded = self._columns(self.decode_columns, values)
            if decoded is not None:
                return decoded
        return self.decode_rows(values)

    def _columns(self, decode: ColumnDecoder, values: list[bytes | None]) -> DecodedBatch | None:
        frame = Frame.of([value or b"" for value in values])
        if frame.limit > MAX_FRAME_BYTES:
            return None  # (string offsets are 32-bit)
        found = decode(frame)
        if found is None:
            return None
        if not all(values):  # a tombstone is an error even where an empty message would decode
            empty = np.fromiter((not value for value in values), dtype=np.bool_, count=len(values))
            kept = ~empty[found.rows]
            if not kept.all():
                found = Columns(found.table.filter(pa.array(kept)), found.rows[kept])
        errors: list[tuple[int, str]] = []
        if len(found.rows) != len(values):
            good = np.zeros(len(values), dtype=np.bool_)
            good[found.rows] = True
            for index in np.flatnonzero(~good).tolist():
                message = self._row_error(values[index])
                if message is None:
                    return None  # the row decoder reads it: it is the reference
                errors.append((index, message))
        return DecodedBatch(
            table=found.table,
            sources=found.rows.tolist(),
            errors=errors,
            may_have_nul=may_hold_nul(found.table),
        )

    def _row_error(self, value: bytes | None) -> str | None:
        """Why the row decoder cannot read ``value``; ``None`` if it can."""
        if not value:
            return _TOMBSTONE
        try:
            self.decode_value(value)
        except DecodeError as exc:
            return f"Unable to parse row: {exc}"
        return None

    def decode_rows(self, values: list[bytes | None]) -> DecodedBatch:
        """The row path: each value decoded by the row decoder."""
        out = DecodedBatch(rows=[])
        rows = out.rows
        assert rows is not None
        sources = out.sources
        errors = out.errors
        decode = self.decode_value
        for index, value in enumerate(values):
            if not value:
                errors.append((index, _TOMBSTONE))
                continue
            try:
                rows.append(decode(value))
            except DecodeError as exc:
                errors.append((index, f"Unable to parse row: {exc}"))
                continue
            sources.append(index)
        return out


@register("avro_stream")
def _avro(fmt: AvroStreamInputFormat) -> BinaryRowsReader:
    try:
        decoder = AvroStreamDecoder(fmt)
        columns = decoder.decode_columns if decoder.columnar else None
        return BinaryRowsReader(decoder.decode, fmt.flatten_spec, columns)
    except ValueError as exc:
        raise FormatSetupError(str(exc)) from None


@register("protobuf")
def _protobuf(fmt: ProtobufInputFormat) -> BinaryRowsReader:
    try:
        decoder = ProtobufDecoder(fmt)
        columns = decoder.decode_columns if decoder.columnar else None
        return BinaryRowsReader(decoder.decode, fmt.flatten_spec, columns)
    except ValueError as exc:
        raise FormatSetupError(str(exc)) from None

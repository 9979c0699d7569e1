"""The readers of ``avro_stream`` and ``protobuf``: each record value decoded into one row.

fastavro and protobuf decode one record at a time into Python objects, so these readers give
the pipeline row dicts (``DecodedBatch.rows``), which it types and converts exactly as it does
JSON rows (``schema.RowConverter``). The flattenSpec (``root``/``path`` fields) is applied here.
A value that cannot be decoded is an error of its record, with the decoder's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from middlemanager.ingest.formats import DecodedBatch, FormatSetupError, register
from middlemanager.ingest.formats.avro import AvroStreamDecoder
from middlemanager.ingest.formats.errors import DecodeError
from middlemanager.ingest.formats.flatten import FlattenError, flattener
from middlemanager.ingest.formats.protobuf import ProtobufDecoder
from supervisor.binary_formats import AvroStreamInputFormat, PathFlattenSpec, ProtobufInputFormat
from supervisor.records import RecordBatch

__all__ = ["BinaryRowsReader", "DecodeError"]

RowDecoder = Callable[[bytes], dict[str, Any]]


class BinaryRowsReader:
    """One row per record value, decoded by ``decode`` and flattened by the flattenSpec."""

    def __init__(self, decode: RowDecoder, flatten_spec: PathFlattenSpec | None) -> None:
        try:
            flatten = flattener(flatten_spec)
        except FlattenError as exc:
            raise FormatSetupError(f"flattenSpec: {exc}") from None
        self.decode_value: RowDecoder = decode if flatten is None else (lambda value: flatten(decode(value)))

    def decode(self, batch: RecordBatch) -> DecodedBatch:
        return self.decode_values(batch.values)

    def decode_values(self, values: list[bytes | None]) -> DecodedBatch:
        out = DecodedBatch(rows=[])
        rows = out.rows
        assert rows is not None
        sources = out.sources
        errors = out.errors
        decode = self.decode_value
        for index, value in enumerate(values):
            if not value:
                errors.append((index, "Unable to parse row []: the record has no value (tombstone)"))
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
        return BinaryRowsReader(AvroStreamDecoder(fmt).decode, fmt.flatten_spec)
    except ValueError as exc:
        raise FormatSetupError(str(exc)) from None


@register("protobuf")
def _protobuf(fmt: ProtobufInputFormat) -> BinaryRowsReader:
    try:
        return BinaryRowsReader(ProtobufDecoder(fmt).decode, fmt.flatten_spec)
    except ValueError as exc:
        raise FormatSetupError(str(exc)) from None

"""Input format readers: record values in, rows out (``ioConfig.inputFormat``).

One module per format registers a factory for its ``type`` with :func:`register`;
:func:`reader_for` gives the pipeline the reader of a spec's input format. ``json`` has
no reader here: the pipeline keeps its own JSON paths (``fastjson.py`` and the orjson
reference path), which this registry does not touch. A ``json`` reader exists only as a
value format inside ``kafka`` (:func:`value_reader_for`).

A reader turns a :class:`~supervisor.records.RecordBatch` into a :class:`DecodedBatch`:
either an Arrow table (columnar formats: csv, tsv) or a list of row dicts (formats read
record by record), the batch index of the record each row comes from (a record may hold
several rows, e.g. several CSV lines, or none), and the records that could not be read
(index, message). The pipeline does the rest exactly as on the JSON path: timestamps,
the message-time window, transforms and filter, the types of the dimensions and metrics,
parse-exception reports and dead letters.

Plugging in a format (avro_stream, protobuf, ...)::

    @register("avro_stream")
    def _avro(fmt: AvroStreamInputFormat) -> FormatReader:
        return AvroReader(fmt)

and add the module to :data:`_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from supervisor.records import RecordBatch

__all__ = [
    "DecodedBatch",
    "FormatReader",
    "FormatSetupError",
    "reader_for",
    "register",
    "value_reader_for",
]

# Modules that register readers (imported on first use).
_MODULES = (
    "middlemanager.ingest.formats.binary",
    "middlemanager.ingest.formats.delimited",
    "middlemanager.ingest.formats.json_rows",
    "middlemanager.ingest.formats.kafka",
)
# Formats the pipeline reads itself (the JSON fast and reference paths).
_PIPELINE_FORMATS = frozenset({"json"})


@dataclass(slots=True)
class DecodedBatch:
    """Rows decoded from a batch of records, in record order."""

    # the rows: an Arrow table (one column per input field) or one dict per row
    table: pa.Table | None = None
    rows: list[dict[str, Any]] | None = None
    # per row, the index in the batch of the record it was read from (non-decreasing)
    sources: list[int] = field(default_factory=list)
    # records that could not be read: (index in the batch, message), ascending
    errors: list[tuple[int, str]] = field(default_factory=list)
    # list columns of the table whose one-value lists stand for the value itself (a
    # multi-value split of csv/tsv: a value without the list delimiter is a plain value)
    single_lists: tuple[str, ...] = ()
    # whether a string value of the table may hold NUL; None: unknown (the pipeline scans the
    # record values for a zero byte, which binary formats hold in most records)
    may_have_nul: bool | None = None

    @property
    def num_rows(self) -> int:
        return len(self.sources)

    def row_dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts (null columns left out, as a JSON row without the key)."""
        if self.rows is not None:
            return self.rows
        if self.table is None:
            return []
        rows = self.table.to_pylist()
        out = [{key: value for key, value in row.items() if value is not None} for row in rows]
        for name in self.single_lists:
            for row in out:
                value = row.get(name)
                if value is not None and len(value) == 1:
                    row[name] = value[0]
        return out


class FormatReader(Protocol):
    """Reads the values (or keys, for ``keyFormat``) of a batch of records."""

    def decode(self, batch: RecordBatch) -> DecodedBatch: ...

    def decode_values(self, values: list[bytes | None]) -> DecodedBatch:
        """The same for bare values (a ``kafka`` format's keys); ``sources`` index ``values``."""
        ...


class FormatSetupError(ValueError):
    """An input format the spec models accepted that no reader can serve."""


_Factory = Callable[[Any], FormatReader]
_FACTORIES: dict[str, _Factory] = {}


def register(*kinds: str) -> Callable[[_Factory], _Factory]:
    """Register the reader factory of the input format types ``kinds``."""

    def add(factory: _Factory) -> _Factory:
        for kind in kinds:
            _FACTORIES[kind] = factory
        return factory

    return add


def _factory(kind: str) -> _Factory:
    if kind not in _FACTORIES:  # (a reader module imported directly registers only itself)
        for module in _MODULES:
            importlib.import_module(module)
    try:
        return _FACTORIES[kind]
    except KeyError:
        raise FormatSetupError(f"no reader for input format '{kind}'") from None


def reader_for(input_format: Any) -> FormatReader | None:
    """The reader of an ``ioConfig.inputFormat`` model; ``None`` for ``json`` (the pipeline's own paths)
    unless its flattenSpec has fields or turns field discovery off (then rows are flattened here)."""
    kind: str = input_format.type
    if kind in _PIPELINE_FORMATS:
        flatten = getattr(input_format, "flatten_spec", None)
        if flatten is None or (flatten.use_field_discovery and not flatten.fields):
            return None
    return _factory(kind)(input_format)


def value_reader_for(input_format: Any) -> FormatReader:
    """A reader for any format, ``json`` included (the value or key format of ``kafka``)."""
    return _factory(input_format.type)(input_format)

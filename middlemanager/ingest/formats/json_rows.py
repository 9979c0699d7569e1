"""``json`` as the value or key format of ``kafka``: each value one JSON object, read by orjson.

The top-level ``json`` input format comes here only with a flattenSpec that has fields (or no field
discovery); otherwise the pipeline reads it on its own fast and reference paths (``fastjson.py``,
``pipeline.py``), with the same messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from middlemanager.ingest.formats import DecodedBatch, register
from middlemanager.ingest.formats.flatten import flattener
from supervisor.records import RecordBatch

__all__ = ["JsonRowsReader"]

_EVENT_TEXT = 256


def _text(value: bytes) -> str:
    text = value[:_EVENT_TEXT].decode("utf-8", errors="replace")
    return text + "..." if len(value) > _EVENT_TEXT else text


class JsonRowsReader:
    """One row per record value (a JSON object), flattened by the format's flattenSpec if it has fields."""

    def __init__(self, flatten: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self._flatten = flatten

    def decode(self, batch: RecordBatch) -> DecodedBatch:
        return self.decode_values(batch.values)

    def decode_values(self, values: list[bytes | None]) -> DecodedBatch:
        out = DecodedBatch(rows=[])
        rows = out.rows
        assert rows is not None
        loads = orjson.loads
        for index, value in enumerate(values):
            if not value:
                out.errors.append((index, "Unable to parse row []: the record has no value (tombstone)"))
                continue
            try:
                row = loads(value)
            except orjson.JSONDecodeError as exc:
                out.errors.append((index, f"Unable to parse row [{_text(value)}]: {exc}"))
                continue
            if type(row) is not dict:
                out.errors.append(
                    (index, f"Unable to parse row [{_text(value)}]: the JSON value is not an object")
                )
                continue
            rows.append(row)
            out.sources.append(index)
        if self._flatten is not None:
            out.rows = [self._flatten(row) for row in rows]
        return out


@register("json")
def _json(fmt: Any) -> JsonRowsReader:
    return JsonRowsReader(flattener(getattr(fmt, "flatten_spec", None)))

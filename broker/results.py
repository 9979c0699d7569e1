"""Druid SQL's result formats (docs: api-reference/sql-api.md, "Responses"): ``object``, ``array``,
``objectLines``, ``arrayLines``, ``csv``, with the optional header, types and SQL types rows. The
``*Lines`` and ``csv`` formats end with a blank line, Druid's sign that the answer is complete."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any, Literal

from broker.engine import Result, json_value

ResultFormat = Literal["object", "array", "objectLines", "arrayLines", "csv"]

CONTENT_TYPES = {
    "object": "application/json",
    "array": "application/json",
    "objectLines": "text/plain",
    "arrayLines": "text/plain",
    "csv": "text/csv",
}


def render(
    result: Result, fmt: ResultFormat, header: bool, types: bool, sql_types: bool, zone: dt.tzinfo | None
) -> bytes:
    cols = list(result.columns)
    rows = [[json_value(v, zone) for v in row] for row in result.rows]
    if fmt in ("object", "objectLines"):
        objects: list[dict[str, Any]] = []
        if header:
            head: dict[str, Any] = {}
            for c, t, s in zip(cols, result.types, result.sql_types, strict=True):
                meta = ({"type": t} if types else {}) | ({"sqlType": s} if sql_types else {})
                head[c] = meta or None
            objects.append(head)
        objects.extend(dict(zip(cols, r, strict=True)) for r in rows)
        if fmt == "object":
            return (json.dumps(objects) + "\n").encode()  # Druid's ObjectWriter ends with a LF
        return ("".join(json.dumps(o) + "\n" for o in objects) + "\n").encode()
    arrays: list[list[Any]] = []
    if header:
        arrays.append(cols)
        if types:
            arrays.append(result.types)
        if sql_types:
            arrays.append(result.sql_types)
    arrays.extend(rows)
    if fmt == "array":
        return (json.dumps(arrays) + "\n").encode()  # as Druid's ArrayWriter
    if fmt == "arrayLines":
        return ("".join(json.dumps(a) + "\n" for a in arrays) + "\n").encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for a in arrays:
        writer.writerow(
            ["" if v is None else (json.dumps(v) if isinstance(v, list | dict) else v) for v in a]
        )
    out.write("\n")
    return out.getvalue().encode()

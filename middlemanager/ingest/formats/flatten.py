"""Druid's flattenSpec on decoded records (``root`` and ``path`` fields).

Druid's docs (docs/ingestion/data-formats.md, "FlattenSpec"): with ``useFieldDiscovery`` the
record's top-level fields are columns; each ``root`` field is a top-level field by name, each
``path`` field the value at a JSONPath (``$.a.b``, ``$['a b']``, ``$.list[0]``); a path that
leads nowhere gives null. Only this JSONPath subset (child names and list indexes) is read here;
anything else (wildcards, filters, ``..``) is refused when the task starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from supervisor.binary_formats import PathFlattenSpec

__all__ = ["FlattenError", "compile_path", "flattener"]

Row = dict[str, Any]

_STEP = re.compile(
    r"\.([A-Za-z_$@][\w$@-]*)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*\"((?:[^\"\\]|\\.)*)\"\s*\]|\[\s*(-?\d+)\s*\]"
)


class FlattenError(ValueError):
    """A flattenSpec path outside the supported JSONPath subset."""


def compile_path(expr: str) -> tuple[str | int, ...]:
    """The steps of a JSONPath: names (str) and list indexes (int)."""
    text = expr.strip()
    if not text.startswith("$"):
        raise FlattenError(f"JSONPath '{expr}' must start with '$'")
    steps: list[str | int] = []
    at = 1
    while at < len(text):
        match = _STEP.match(text, at)
        if match is None:
            raise FlattenError(
                f"JSONPath '{expr}': only child names ($.a.b, $['a']) and list indexes ($.a[0]) "
                f"are supported (at '{text[at:]}')"
            )
        name, single, double, index = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(name if name is not None else (single if single is not None else double))
        at = match.end()
    return tuple(steps)


def _at(row: Any, steps: tuple[str | int, ...]) -> Any:
    value = row
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return None
            value = value[step]
        elif isinstance(value, dict):
            value = value.get(step)
        else:
            return None
    return value


def flattener(spec: PathFlattenSpec | None) -> Callable[[Row], Row] | None:
    """The row transformation of a flattenSpec; ``None`` when it leaves rows as they are."""
    if spec is None or (spec.use_field_discovery and not spec.fields):
        return None
    fields: list[tuple[str, tuple[str | int, ...]]] = []
    for item in spec.fields:
        if item.type == "root":
            fields.append((item.name, (item.expr or item.name,)))
        elif item.type == "path":
            fields.append((item.name, compile_path(item.expr or "$")))
        else:
            raise FlattenError(f"flattenSpec field type '{item.type}' is not supported for this input format")
    discovery = spec.use_field_discovery

    def flatten(row: Row) -> Row:
        out: Row = dict(row) if discovery else {}
        for name, steps in fields:
            out[name] = _at(row, steps)
        return out

    return flatten

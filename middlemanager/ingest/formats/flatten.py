"""Druid's flattenSpec on decoded records (``root``, ``path``, and for JSON ``jq`` and ``tree`` fields).

Druid's docs (docs/ingestion/data-formats.md, "FlattenSpec"): with ``useFieldDiscovery`` the
record's top-level fields are columns (without it, only the listed fields); each field's value is
found as :mod:`supervisor.flatten` describes; a path that leads nowhere gives null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from supervisor.flatten import FlattenError, compile_jq, compile_path

__all__ = ["FlattenError", "compile_path", "flattener"]

Row = dict[str, Any]


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


def _jq_value(program: Any, row: Row) -> Any:
    # Druid's JSON flattener takes the first value a jq expression yields (null when none)
    try:
        values = program.input_value(row).all()
    except ValueError:
        return None
    return values[0] if values else None


def _field(item: Any) -> Callable[[Row], Any]:
    if item.type == "root":
        steps: tuple[str | int, ...] = (item.expr or item.name,)
    elif item.type == "path":
        steps = compile_path(item.expr or "$")
    elif item.type == "tree":
        steps = tuple(item.nodes or (item.name,))
    elif item.type == "jq":
        program = compile_jq(item.expr or ".")
        return lambda row: _jq_value(program, row)
    else:
        raise FlattenError(f"flattenSpec field type '{item.type}' is not supported for this input format")
    return lambda row: _at(row, steps)


def flattener(spec: Any) -> Callable[[Row], Row] | None:
    """The row transformation of a flattenSpec model; ``None`` when it leaves rows as they are."""
    if spec is None or (spec.use_field_discovery and not spec.fields):
        return None
    fields = [(item.name, _field(item)) for item in spec.fields]
    discovery = spec.use_field_discovery

    def flatten(row: Row) -> Row:
        out: Row = dict(row) if discovery else {}
        for name, value_of in fields:
            out[name] = value_of(row)
        return out

    return flatten

"""Druid's JSONPath subset for ``json_value``/``json_query`` (docs/querying/math-expr.md,
"JSONPath syntax"): ``$``, ``.name``, ``['name']`` and ``[index]``."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["find", "parse_json_path"]

_PART = re.compile(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\[(-?\d+)\]")


@lru_cache(maxsize=256)
def parse_json_path(path: str) -> tuple[str | int, ...]:
    if not path.startswith("$"):
        raise ValueError(f"JSONPath '{path}' must start with '$'")
    parts: list[str | int] = []
    index = 1
    while index < len(path):
        match = _PART.match(path, index)
        if match is None:
            raise ValueError(f"bad JSONPath '{path}' at character {index}")
        name, single, double, number = match.groups()
        if number is not None:
            parts.append(int(number))
        else:
            parts.append(name if name is not None else (single if single is not None else double or ""))
        index = match.end()
    return tuple(parts)


def find(value: object, parts: tuple[str | int, ...]) -> object:
    """The value at the path, or None when the path does not exist."""
    current = value
    for part in parts:
        if isinstance(part, int):
            if not isinstance(current, list):
                return None
            index = part if part >= 0 else len(current) + part
            if not 0 <= index < len(current):
                return None
            current = current[index]
        else:
            if not isinstance(current, dict):
                return None
            current = current.get(part)
        if current is None:
            return None
    return current

"""Druid's flattenSpec field expressions, checked when a spec is posted (the ingest engine evaluates them).

Druid's docs (docs/ingestion/data-formats.md, "FlattenSpec"): a ``root`` field is a top-level field
by name, a ``path`` field the value at a JSONPath (``$.a.b``, ``$['a b']``, ``$.list[0]``), a ``jq``
field the value of a jq expression (``.a.b``; JSON input only), a ``tree`` field the value reached by
walking ``nodes`` (a list of names; JSON input only). A path that leads nowhere gives null. Only the
JSONPath subset of child names and list indexes is read here: anything else (wildcards, filters,
``..``) is a 400 at POST, as is a jq expression jq cannot compile.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["FlattenError", "compile_jq", "compile_path"]

_STEP = re.compile(
    r"\.([A-Za-z_$@][\w$@-]*)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*\"((?:[^\"\\]|\\.)*)\"\s*\]|\[\s*(-?\d+)\s*\]"
)


class FlattenError(ValueError):
    """A flattenSpec expression outside what is supported, or one that does not compile."""


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


@lru_cache(maxsize=256)
def compile_jq(expr: str) -> Any:
    """A compiled jq program (the ``jq`` library: libjq's own parser and evaluator)."""
    import jq  # libjq bindings; imported where a jq field is used

    try:
        return jq.compile(expr)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "does not compile"
        raise FlattenError(f"jq expression '{expr}': {first}") from None

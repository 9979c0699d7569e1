"""Pydantic validation errors of the spec models, told as Druid paths.

A pydantic error carries the location of the value in the model tree
(``('ioConfig', 'taskCount')``, with discriminated-union tags in it); the user wants
the path of the value as they wrote it (``spec.ioConfig.taskCount``,
``spec.dataSchema.metricsSpec[1].fieldName``) and a sentence, not a pydantic error code.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from supervisor._spec_common import SPEC_ERROR, SUPPORTED_INPUT_FORMATS
from supervisor.errors import InvalidSpec
from supervisor.filters import FILTER_TYPES

__all__ = ["describe", "druid_path", "format_path", "invalid_spec"]

# The ``type`` values of the discriminated unions (filters, input formats).
_UNION_TAGS = (
    frozenset(FILTER_TYPES)
    | frozenset(SUPPORTED_INPUT_FORMATS)
    # avroBytesDecoder / protoBytesDecoder types (supervisor/binary_formats.py)
    | {"schema_inline", "multiple_schemas_inline", "schema_registry", "file"}
)


def invalid_spec(exc: ValidationError, root: Mapping[str, Any], wrapped: Collection[str] = ()) -> InvalidSpec:
    """The first problem of ``exc`` as ``InvalidSpec(path, problem)``.

    ``root`` is the document that was validated; a path starting with one of ``wrapped`` is
    shown below ``spec`` (the user wrote it inside Druid's ``{"spec": {...}}`` wrapper).
    """
    error = exc.errors(include_url=False)[0]
    problem, extra_loc = describe(error)
    path = druid_path((*error["loc"], *extra_loc), root)
    if path and path[0] in wrapped:
        path = ["spec", *path]
    return InvalidSpec(format_path(path), problem)


def describe(error: ErrorDetails) -> tuple[str, tuple[str | int, ...]]:
    """A human problem text for a pydantic error, and any path below its location."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == SPEC_ERROR:
        return str(ctx["problem"]), tuple(ctx.get("subpath", ()))
    if kind == "value_error":
        return str(ctx.get("error", error["msg"])), ()
    if kind == "missing":
        return "is required", ()
    if kind == "extra_forbidden":
        return "unknown field", ()
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        if "selector" in str(ctx.get("expected_tags")):
            return f"filter type '{tag}' is not supported yet", ("type",)
        return f"type '{tag}' is not supported (expected one of {ctx.get('expected_tags')})", ("type",)
    if kind == "union_tag_not_found":
        return "is required", ("type",)
    if kind == "greater_than_equal":
        bound = ctx.get("ge")
        if bound == 1:
            return "must be a positive integer", ()
        if bound == 0:
            return "must be a non-negative integer", ()
        return f"must be at least {bound}", ()
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}", ()
    if kind in ("string_too_short", "too_short"):
        return "must not be empty", ()
    simple = {
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be an integer",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "string_type": "must be a string",
        "model_type": "must be a JSON object",
        "model_attributes_type": "must be a JSON object",
        "dict_type": "must be a JSON object",
        "list_type": "must be a JSON array",
        "tuple_type": "must be a JSON array",
    }
    return simple.get(kind, str(error["msg"])), ()


def druid_path(loc: tuple[str | int, ...], root: Any) -> list[str | int]:
    """Map a pydantic location onto the keys the user wrote.

    Discriminated-union tags (pydantic adds the member's ``type``, e.g. ``'selector'``) are
    skipped; an absent key (a missing required field) is kept; nothing is invented below it
    or below a scalar.
    """
    path: list[str | int] = []
    node = root
    for key in loc:
        if isinstance(node, Mapping):
            if key in node:
                path.append(key)
                node = node[key]
            elif not (key in _UNION_TAGS and node.get("type") == key):  # not a union tag: missing
                path.append(key)
                node = None
            continue
        if isinstance(node, list | tuple) and isinstance(key, int) and 0 <= key < len(node):
            path.append(key)
            node = node[key]
            continue
        break
    return path


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_path(path: list[str | int] | tuple[str | int, ...]) -> str:
    """``['spec', 'ioConfig', 'consumerProperties', 'bootstrap.servers']`` ->
    ``spec.ioConfig.consumerProperties["bootstrap.servers"]``."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        elif _PLAIN_KEY.fullmatch(key):
            out += f".{key}" if out else key
        else:
            out += f'["{key}"]'
    return out

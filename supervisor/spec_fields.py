"""What a posted spec holds beyond what we act on, and the unknown fields that are mistakes.

Druid's JSON mapper ignores properties it does not know (``FAIL_ON_UNKNOWN_PROPERTIES`` is off
in Druid's ``DefaultObjectMapper``), so a spec written for some Druid version may carry keys
another version never heard of. We accept them too, but never silently:

* ``ignoredFields``: keys neither Druid nor we know at that place; dropped.
* ``unhonouredFields``: keys Druid knows there that have no effect here (a tuning knob of
  Druid's JVM, a storage detail of its segment format...), given with a value other than
  Druid's default. Those we model are kept in the stored spec, the others dropped.

Two kinds of unknown key are almost certainly mistakes that change what gets ingested (Druid
would silently ignore them), so they are refused with a hint instead:

* a key we know at another level of the spec (``transformSpec`` beside ``dataSchema`` instead of
  inside it): "belongs in spec.dataSchema";
* a key one or two edits away from a key of the same level (``taskCont``): "did you mean".

The models say what they know: their aliases, ``_druid_only`` (Druid keys we do not model, with
Druid's default) and ``_unhonoured`` (modelled keys we do not act on, with Druid's default).
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor._spec_common import ALWAYS, DruidModel, is_default
from supervisor.errors import InvalidSpec
from supervisor.spec_errors import druid_path, format_path, invalid_spec

__all__ = [
    "ALWAYS",
    "SpecNotes",
    "check_unknown_key",
    "is_default",
    "unhonoured_fields",
    "validate_collecting_unknown",
]

M = TypeVar("M", bound=BaseModel)

Path = list[str | int]


# Keys too common to say where they belong when found at the wrong level.
_GENERIC_KEYS = frozenset(
    {
        "type",
        "name",
        "fieldName",
        "fields",
        "field",
        "enabled",
        "column",
        "columns",
        "format",
        "value",
        "values",
    }
)


class SpecNotes(BaseModel):
    """What the Overlord tells the author of a spec beside the supervisor id."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    ignored_fields: tuple[str, ...] = Field(default=(), alias="ignoredFields")
    unhonoured_fields: tuple[str, ...] = Field(default=(), alias="unhonouredFields")
    translated: tuple[str, ...] = ()

    def members(self) -> dict[str, list[str]]:
        """The non-empty lists by their JSON names, to put beside ``"id"`` in a response."""
        dumped = self.model_dump(by_alias=True)
        return {key: list(value) for key, value in dumped.items() if value}


# --------------------------------------------------------------------------- validation


def validate_collecting_unknown(
    model: type[M],
    doc: Mapping[str, Any],
    wrapped: Collection[str],
    rename: Callable[[str], str] = str,
) -> tuple[M, list[Path], list[Path]]:
    """Validate ``doc``, dropping unknown keys; return the model, the ignored and the unhonoured paths.

    The models forbid extra keys, so each round reports every unknown key pydantic reached;
    they are checked (a mistake raises ``InvalidSpec``), dropped, and validation runs again.
    Paths are the user's (``wrapped`` keys get ``spec`` in front, as in errors); ``rename`` maps a
    shown path of ``doc`` onto the document the user wrote (a translated legacy spec).
    """
    work = copy.deepcopy(dict(doc))
    ignored: list[Path] = []
    unhonoured: list[Path] = []
    for _ in range(_count_keys(work) + 1):  # every round drops at least one key
        try:
            return model.model_validate(work, by_alias=True, by_name=False), ignored, unhonoured
        except ValidationError as exc:
            extras = [e for e in exc.errors(include_url=False) if e["type"] == "extra_forbidden"]
            if not extras:
                raise invalid_spec(exc, work, wrapped) from None
            for error in extras:
                loc = tuple(error["loc"])
                path = druid_path(loc, work)
                shown = ["spec", *path] if path and path[0] in wrapped else list(path)
                parent = _node_at(work, path[:-1])
                if not isinstance(parent, dict) or path[-1] not in parent:
                    continue
                owner = model_at(model, loc[:-1])
                shown_text = rename(format_path(shown))
                kind = check_unknown_key(owner, str(path[-1]), parent[path[-1]], shown_text, model)
                if kind == "unhonoured":
                    unhonoured.append(shown)
                elif kind == "ignored":
                    ignored.append(shown)
                del parent[path[-1]]
    raise InvalidSpec("", "spec has too many unknown fields")  # not reached: the loop is bounded by the keys


Kind = Literal["ignored", "unhonoured", "default"]


def check_unknown_key(
    owner: type[BaseModel] | None,
    key: str,
    value: Any,
    shown: str,
    root: type[BaseModel],
    known: frozenset[str] = frozenset(),
) -> Kind:
    """Raise ``InvalidSpec`` for a likely mistake, else say what the unmodelled key is.

    ``"unhonoured"``: Druid knows it here and it has no effect here; ``"default"``: Druid knows
    it and it is given with Druid's default (the same as not given: dropped without a note);
    ``"ignored"``: nobody knows it. ``known``: the keys of the level when it has no model.
    """
    known = model_keys(owner) if owner is not None else known
    druid_only: Mapping[str, Any] = getattr(owner, "_druid_only", {}) if owner is not None else {}
    if key in druid_only:
        return "default" if is_default(value, druid_only[key]) else "unhonoured"
    near = near_miss(key, known | frozenset(druid_only))
    if near is not None:
        raise InvalidSpec(shown, f"unknown field; did you mean '{near}'?")
    homes = [where for where, (model, keys) in key_homes(root).items() if key in keys and model is not owner]
    if homes and key not in _GENERIC_KEYS:
        raise InvalidSpec(
            shown,
            f"unknown field here: '{key}' belongs in {' or '.join(homes)} (Druid would ignore it here)",
        )
    return "ignored"


def _count_keys(node: Any) -> int:
    if isinstance(node, dict):
        return len(node) + sum(_count_keys(v) for v in node.values())
    if isinstance(node, list):
        return sum(_count_keys(v) for v in node)
    return 0


def _node_at(root: Any, path: Path) -> Any:
    node = root
    for key in path:
        in_dict = isinstance(node, dict) and key in node
        in_list = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if not (in_dict or in_list):
            return None
        node = node[key]
    return node


# --------------------------------------------------------------------------- the models' shape


def model_keys(model: type[BaseModel]) -> frozenset[str]:
    """The JSON keys a model accepts."""
    return frozenset(field.alias or name for name, field in model.model_fields.items())


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation can hold (through Optional, unions, tuples, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _models_in(typing.get_args(annotation)[0])
        return
    if origin in (typing.Union, types.UnionType, tuple, list):
        for arg in typing.get_args(annotation):
            if arg is not Ellipsis:
                yield from _models_in(arg)


def _field_models(model: type[BaseModel], key: str | int) -> list[type[BaseModel]]:
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return list(_models_in(field.annotation))
    return []


def model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class validating the object at a pydantic location (tags and indexes skipped)."""
    current: list[type[BaseModel]] = [root]
    for key in loc:
        if isinstance(key, int):
            continue
        following = [m for model in current for m in _field_models(model, key)]
        if following:
            current = following
            continue
        # a discriminated-union tag: keep the member whose ``type`` is the tag
        tagged = [m for m in current if _type_tag(m) == key]
        if not tagged:
            return None
        current = tagged
    return current[0] if len(current) == 1 else None


def _type_tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


_HOMES: dict[type[BaseModel], dict[str, tuple[type[BaseModel], frozenset[str]]]] = {}


def key_homes(root: type[BaseModel]) -> dict[str, tuple[type[BaseModel], frozenset[str]]]:
    """Druid path of each level of the spec -> its model and the keys known there (filters left out)."""
    cached = _HOMES.get(root)
    if cached is not None:
        return cached
    homes: dict[str, tuple[type[BaseModel], frozenset[str]]] = {}
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel], where: str) -> None:
        if model in seen or model.__module__.endswith(".filters"):
            return
        seen.add(model)
        homes[where] = (model, model_keys(model) | frozenset(getattr(model, "_druid_only", {})))
        for name, field in model.model_fields.items():
            for inner in _models_in(field.annotation):
                walk(inner, f"{where}.{field.alias or name}")

    for name, field in root.model_fields.items():
        for inner in _models_in(field.annotation):
            walk(inner, f"spec.{field.alias or name}")
    _HOMES[root] = homes
    return homes


# --------------------------------------------------------------------------- typos


def _distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment edit distance (a swap of neighbours is one edit), capped at limit+1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def near_miss(key: str, known: Collection[str]) -> str | None:
    """The known key ``key`` is most likely a misspelling of, if any.

    Case differences count as a miss (Jackson's property names are case-sensitive); otherwise
    one edit, or two when the known key has eight characters or more.
    """
    best: tuple[int, str] | None = None
    for candidate in sorted(known):
        if candidate == key:
            return None
        if candidate.lower() == key.lower():
            return candidate
        if len(candidate) < 4:
            continue
        limit = 1 if len(candidate) < 8 else 2
        distance = _distance(key.lower(), candidate.lower(), limit)
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best is not None else None


# --------------------------------------------------------------------------- unhonoured model fields


def unhonoured_fields(model: BaseModel, prefix: Path) -> list[Path]:
    """Paths of the fields given in a validated spec that we keep but do not act on."""
    found: list[Path] = []
    _walk_unhonoured(model, prefix, found)
    return found


def _walk_unhonoured(node: Any, path: Path, found: list[Path]) -> None:
    if isinstance(node, DruidModel):
        found.extend([*path, key] for key in node.unhonoured_keys())
    if isinstance(node, BaseModel):
        for name, field in type(node).model_fields.items():
            _walk_unhonoured(getattr(node, name), [*path, field.alias or name], found)
    elif isinstance(node, tuple):
        for index, item in enumerate(node):
            _walk_unhonoured(item, [*path, index], found)

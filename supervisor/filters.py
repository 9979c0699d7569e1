"""Druid native filters for ``transformSpec.filter``: which input rows to ingest.

Semantics follow Druid's SQL-compatible null handling (the default since Druid 28):

* values are compared as strings for ``selector``, ``in`` and ``equals`` of type STRING;
* a missing key, JSON ``null`` and an empty list are all "null";
* a list (multi-value) matches when any of its elements matches;
* a comparison with null is *unknown*, not false: ``selector x = 'a'`` is unknown on a
  row without ``x``, and so is ``not`` of it. :meth:`evaluate` returns ``True``,
  ``False`` or ``None`` (unknown) with Kleene logic for ``and``/``or``/``not``;
  :meth:`matches` is true only for ``True`` — unknown rows are not ingested.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from supervisor._spec_common import (
    DruidModel,
    NonEmptyStr,
    StrictBool,
    StringLike,
    is_number,
    java_string,
    spec_problem,
    without_nulls,
)

__all__ = [
    "FILTER_TYPES",
    "AndFilter",
    "BoundFilter",
    "DimFilter",
    "EqualsFilter",
    "FalseFilter",
    "InFilter",
    "NotFilter",
    "NullFilter",
    "OrFilter",
    "SelectorFilter",
    "TrueFilter",
]


class _Filter(DruidModel):
    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        """Three-valued result: ``True``, ``False`` or ``None`` when unknown (null involved)."""
        raise NotImplementedError

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether the row passes the filter (unknown counts as not passing)."""
        return self.evaluate(row) is True


def _cell_strings(row: Mapping[str, Any], column: str) -> list[str | None]:
    """A row's value for ``column`` as the list of strings Druid would compare (``[None]`` = null)."""
    value = row.get(column)
    if isinstance(value, list | tuple):
        return [_as_string(item) for item in value] if value else [None]
    return [_as_string(value)]


def _as_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return java_string(value)


def _as_number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _any_of(results: Iterable[bool | None]) -> bool | None:
    unknown = False
    for result in results:
        if result is True:
            return True
        if result is None:
            unknown = True
    return None if unknown else False


def _all_of(results: Iterable[bool | None]) -> bool | None:
    unknown = False
    for result in results:
        if result is False:
            return False
        if result is None:
            unknown = True
    return None if unknown else True


class SelectorFilter(_Filter):
    """``column = value``; a null ``value`` matches rows where the column is null or missing."""

    _not_supported_yet = ("extractionFn",)

    type: Literal["selector"] = "selector"
    dimension: NonEmptyStr
    value: StringLike | None = None

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        cells = _cell_strings(row, self.dimension)
        if self.value is None:
            return any(cell is None for cell in cells)
        return _any_of(None if cell is None else cell == self.value for cell in cells)


class InFilter(_Filter):
    """``column IN (values)``; a null among ``values`` matches null rows."""

    _not_supported_yet = ("extractionFn",)

    type: Literal["in"] = "in"
    dimension: NonEmptyStr
    values: tuple[StringLike | None, ...]

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        wanted = set(self.values)
        return _any_of(
            (True if None in wanted else None) if cell is None else cell in wanted
            for cell in _cell_strings(row, self.dimension)
        )


def _utf16_key(text: str) -> bytes:
    # Druid orders strings like Java does: by UTF-16 code units.
    return text.encode("utf-16-be", "surrogatepass")


class BoundFilter(_Filter):
    """``lower <(=) column <(=) upper``, compared as strings (``lexicographic``) or as numbers."""

    _not_supported_yet = ("extractionFn",)

    type: Literal["bound"] = "bound"
    dimension: NonEmptyStr
    lower: StringLike | None = None
    upper: StringLike | None = None
    lower_strict: StrictBool = Field(default=False, alias="lowerStrict")
    upper_strict: StrictBool = Field(default=False, alias="upperStrict")
    ordering: Literal["lexicographic", "numeric"] = "lexicographic"

    @model_validator(mode="before")
    @classmethod
    def _ordering(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = without_nulls(data)
        alpha_numeric = data.pop("alphaNumeric", False)
        if not isinstance(alpha_numeric, bool):
            raise spec_problem("must be true or false", "alphaNumeric")
        if alpha_numeric:
            raise spec_problem("is not supported yet", "alphaNumeric")
        ordering = data.get("ordering")
        if isinstance(ordering, dict):
            if set(ordering) - {"type"}:
                extra = sorted(str(key) for key in set(ordering) - {"type"})[0]
                raise spec_problem("unknown field", "ordering", extra)
            ordering = ordering.get("type")
            if ordering is None:
                raise spec_problem("is required", "ordering", "type")
        if ordering is not None:
            if not isinstance(ordering, str):
                raise spec_problem("must be a string", "ordering")
            name = ordering.strip().lower()
            if name in ("alphanumeric", "strlen", "version", "natural"):
                raise spec_problem(f"ordering '{ordering}' is not supported yet", "ordering")
            if name not in ("lexicographic", "numeric"):
                raise spec_problem(f"unknown ordering '{ordering}' (lexicographic or numeric)", "ordering")
            data["ordering"] = name
        return data

    @model_validator(mode="after")
    def _bounds(self) -> BoundFilter:
        if self.lower is None and self.upper is None:
            raise spec_problem("at least one of lower and upper is required")
        if self.ordering == "numeric":
            for key, bound in (("lower", self.lower), ("upper", self.upper)):
                if bound is not None and _as_number(bound) is None:
                    raise spec_problem("must be a number for numeric ordering", key)
        return self

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return _any_of(self._cell(cell) for cell in _cell_strings(row, self.dimension))

    def _cell(self, cell: str | None) -> bool | None:
        if cell is None:
            return None
        if self.ordering == "numeric":
            number = _as_number(cell)
            if number is None:
                return None
            lower = None if self.lower is None else _as_number(self.lower)
            upper = None if self.upper is None else _as_number(self.upper)
            if lower is not None and (number <= lower if self.lower_strict else number < lower):
                return False
            return not (upper is not None and (number >= upper if self.upper_strict else number > upper))
        key = _utf16_key(cell)
        if self.lower is not None:
            low = _utf16_key(self.lower)
            if key <= low if self.lower_strict else key < low:
                return False
        if self.upper is not None:
            high = _utf16_key(self.upper)
            if key >= high if self.upper_strict else key > high:
                return False
        return True


class EqualsFilter(_Filter):
    """``column = matchValue`` with the value typed by ``matchValueType`` (Druid 28+)."""

    type: Literal["equals"] = "equals"
    column: NonEmptyStr
    match_value_type: Literal["STRING", "LONG", "DOUBLE", "FLOAT"] = Field(alias="matchValueType")
    match_value: str | int | float = Field(alias="matchValue")

    @model_validator(mode="before")
    @classmethod
    def _typed_value(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = without_nulls(data)
        kind = data.get("matchValueType")
        if not isinstance(kind, str):
            return data  # missing or wrong type: reported by field validation
        kind = kind.strip().upper()
        if kind not in ("STRING", "LONG", "DOUBLE", "FLOAT"):
            raise spec_problem(
                f"match value type '{data['matchValueType']}' is not supported yet", "matchValueType"
            )
        data["matchValueType"] = kind
        if "matchValue" not in data:
            return data
        value = data["matchValue"]
        if kind == "STRING":
            if not (isinstance(value, str) or is_number(value)):
                raise spec_problem("must be a string", "matchValue")
            data["matchValue"] = java_string(value)
            return data
        number = _as_number(java_string(value)) if isinstance(value, str) or is_number(value) else None
        if number is None or (kind == "LONG" and not number.is_integer()):
            raise spec_problem(f"must be a {'whole number' if kind == 'LONG' else 'number'}", "matchValue")
        data["matchValue"] = int(number) if kind == "LONG" else number
        return data

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        cells = _cell_strings(row, self.column)
        if self.match_value_type == "STRING":
            return _any_of(None if cell is None else cell == self.match_value for cell in cells)
        target = float(self.match_value)
        return _any_of(None if (number := _as_number(cell)) is None else number == target for cell in cells)


class NullFilter(_Filter):
    """``column IS NULL`` (missing, JSON null or an empty list); never unknown."""

    type: Literal["null"] = "null"
    column: NonEmptyStr

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return any(cell is None for cell in _cell_strings(row, self.column))


class TrueFilter(_Filter):
    type: Literal["true"] = "true"

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return True


class FalseFilter(_Filter):
    type: Literal["false"] = "false"

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return False


class AndFilter(_Filter):
    type: Literal["and"] = "and"
    fields: Annotated[tuple[DimFilter, ...], Field(min_length=1)]

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return _all_of(field.evaluate(row) for field in self.fields)


class OrFilter(_Filter):
    type: Literal["or"] = "or"
    fields: Annotated[tuple[DimFilter, ...], Field(min_length=1)]

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return _any_of(field.evaluate(row) for field in self.fields)


class NotFilter(_Filter):
    type: Literal["not"] = "not"
    field: DimFilter

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        result = self.field.evaluate(row)
        return None if result is None else not result


DimFilter = Annotated[
    SelectorFilter
    | InFilter
    | BoundFilter
    | EqualsFilter
    | NullFilter
    | TrueFilter
    | FalseFilter
    | AndFilter
    | OrFilter
    | NotFilter,
    Field(discriminator="type"),
]

for _model in (AndFilter, OrFilter, NotFilter):
    _model.model_rebuild()

# The ``type`` values of the filters above (pydantic puts them in error locations).
FILTER_TYPES: frozenset[str] = frozenset(
    str(member.model_fields["type"].default)
    for member in (
        SelectorFilter,
        InFilter,
        BoundFilter,
        EqualsFilter,
        NullFilter,
        TrueFilter,
        FalseFilter,
        AndFilter,
        OrFilter,
        NotFilter,
    )
)

"""Druid native filters for ``transformSpec.filter``: which input rows to ingest.

Semantics follow Druid's SQL-compatible null handling (the default since Druid 28):

* values are compared as strings for ``selector``, ``in`` and ``equals`` of type STRING;
* a missing key, JSON ``null`` and an empty list are all "null";
* a list (multi-value) matches when any of its elements matches;
* a comparison with null is *unknown*, not false: ``selector x = 'a'`` is unknown on a
  row without ``x``, and so is ``not`` of it. :meth:`evaluate` returns ``True``,
  ``False`` or ``None`` (unknown) with Kleene logic for ``and``/``or``/``not``;
  :meth:`matches` is true only for ``True`` — unknown rows are not ingested.

Every filter type of docs/querying/filters.md is here; ``extractionFn`` (docs/querying/
dimensionspecs.md, "Extraction functions") is taken where the docs allow it. JavaScript
filters and extraction functions are refused (they run code sent in a spec); lookups
need a lookup service and are not supported yet. A one-column filter decides each value
with :meth:`_ColumnFilter.test_cell`, which the ingest engine applies to each distinct
value of a column (``middlemanager.ingest.filtering``), so both agree.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

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
from supervisor.expressions import compile_row, parse_expression
from supervisor.expressions import values as expr_values
from supervisor.expressions.values import EvalError, as_bool
from supervisor.transforms import ExpressionText

__all__ = [
    "FILTER_TYPES",
    "AndFilter",
    "BoundFilter",
    "ColumnComparisonFilter",
    "DimFilter",
    "EqualsFilter",
    "ExpressionFilter",
    "ExtractionFilter",
    "FalseFilter",
    "InFilter",
    "IntervalFilter",
    "LikeFilter",
    "NotFilter",
    "NullFilter",
    "OrFilter",
    "RangeFilter",
    "RegexFilter",
    "SearchFilter",
    "SelectorFilter",
    "TrueFilter",
    "cell_string",
    "check_intervals",
    "interval_bounds",
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
    if isinstance(value, float):
        return expr_values.java_double_str(value)
    return java_string(value)


cell_string = _as_string


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


# --------------------------------------------------------------------------- extraction functions
# docs/querying/dimensionspecs.md, "Extraction functions"; SQL-compatible null handling:
# an empty string stays an empty string, a function of null is null unless said otherwise.


class _ExtractionFn(DruidModel):
    def apply(self, value: str | None) -> str | None:
        raise NotImplementedError


class SubstringExtractionFn(_ExtractionFn):
    """``value.substring(index, index + length)``; null when ``index`` is past the end."""

    type: Literal["substring"] = "substring"
    index: Annotated[int, Field(ge=0, strict=True)]
    length: Annotated[int, Field(ge=0, strict=True)] | None = None

    def apply(self, value: str | None) -> str | None:
        if value is None or self.index >= len(value):
            return None
        end = len(value) if self.length is None else min(self.index + self.length, len(value))
        return value[self.index : end]


class StrlenExtractionFn(_ExtractionFn):
    type: Literal["strlen"] = "strlen"

    def apply(self, value: str | None) -> str | None:
        return None if value is None else str(expr_values.utf16_length(value))


class UpperExtractionFn(_ExtractionFn):
    type: Literal["upper"] = "upper"
    locale: str | None = None

    def apply(self, value: str | None) -> str | None:
        return None if value is None else value.upper()


class LowerExtractionFn(_ExtractionFn):
    type: Literal["lower"] = "lower"
    locale: str | None = None

    def apply(self, value: str | None) -> str | None:
        return None if value is None else value.lower()


def _regex_field(value: str) -> str:
    try:
        expr_values.java_regex(value)
    except ValueError as exc:
        raise spec_problem(str(exc)) from None
    return value


class RegexExtractionFn(_ExtractionFn):
    """Group ``index`` of the first match of ``expr``; no match: the value itself, or
    ``replaceMissingValueWith`` when ``replaceMissingValue``."""

    type: Literal["regex"] = "regex"
    expr: NonEmptyStr
    index: Annotated[int, Field(ge=0, strict=True)] = 1
    replace_missing_value: StrictBool = Field(default=False, alias="replaceMissingValue")
    replace_missing_value_with: str | None = Field(default=None, alias="replaceMissingValueWith")

    _check_expr = field_validator("expr")(lambda cls, value: _regex_field(value))

    @model_validator(mode="after")
    def _group(self) -> RegexExtractionFn:
        if self.index > expr_values.java_regex(self.expr).groups:
            raise spec_problem(f"the pattern has no group {self.index}", "index")
        return self

    def apply(self, value: str | None) -> str | None:
        match = None if value is None else expr_values.java_regex(self.expr).search(value)
        if match is not None:
            return match.group(self.index)
        return self.replace_missing_value_with if self.replace_missing_value else value


class PartialExtractionFn(_ExtractionFn):
    """The value when ``expr`` is found in it, else null."""

    type: Literal["partial"] = "partial"
    expr: NonEmptyStr

    _check_expr = field_validator("expr")(lambda cls, value: _regex_field(value))

    def apply(self, value: str | None) -> str | None:
        if value is None or expr_values.java_regex(self.expr).search(value) is None:
            return None
        return value


class SearchQueryExtractionFn(_ExtractionFn):
    type: Literal["searchQuery"] = "searchQuery"
    query: SearchQuery

    def apply(self, value: str | None) -> str | None:
        return value if value is not None and self.query.matches(value) else None


class TimeFormatExtractionFn(_ExtractionFn):
    """A time value (ms, or ISO-8601 text) bucketed by ``granularity`` and printed with the Joda
    ``format`` (ISO-8601 without one) in ``timeZone``; ``asMillis`` reads strings as ms.

    Values reach filters as strings here: a whole number is read as ms (the ``__time``
    column, long columns), whatever ``asMillis`` says.
    """

    type: Literal["timeFormat"] = "timeFormat"
    format: str | None = None
    time_zone: str | None = Field(default=None, alias="timeZone")
    locale: str | None = None
    granularity: Any = None
    as_millis: StrictBool = Field(default=False, alias="asMillis")

    @model_validator(mode="after")
    def _checked(self) -> TimeFormatExtractionFn:
        try:
            if self.format is not None:
                expr_values.check_joda_pattern(self.format)
        except ValueError as exc:
            raise spec_problem(str(exc), "format") from None
        try:
            if self.time_zone is not None:
                expr_values.parse_zone(self.time_zone)
        except ValueError as exc:
            raise spec_problem(str(exc), "timeZone") from None
        if self.granularity is not None:
            from supervisor.granularity import GranularityError, parse_granularity

            try:
                parse_granularity(self.granularity)
            except GranularityError as exc:
                raise spec_problem(str(exc), "granularity") from None
        return self

    def apply(self, value: str | None) -> str | None:
        if value is None:
            return None
        number = expr_values.parse_number(value)
        if isinstance(number, int):
            ms: int | None = number
        else:
            ms = expr_values.parse_iso(value)
        if ms is None:
            return None
        if self.granularity is not None:
            from supervisor.granularity import parse_granularity

            ms = parse_granularity(self.granularity).bucket_start(ms)
        zone = expr_values.parse_zone(self.time_zone or "UTC")
        return expr_values.format_time(ms, self.format, zone)


class StringFormatExtractionFn(_ExtractionFn):
    """``String.format(format, value)``; a null value as ``nullHandling`` says."""

    type: Literal["stringFormat"] = "stringFormat"
    format: str
    null_handling: Literal["nullString", "emptyString", "returnNull"] = Field(
        default="nullString", alias="nullHandling"
    )

    def apply(self, value: str | None) -> str | None:
        if value is None:
            if self.null_handling == "returnNull":
                return None
            value = "" if self.null_handling == "emptyString" else "null"
        try:
            return expr_values.java_format(self.format, [value])
        except EvalError:
            return None


class BucketExtractionFn(_ExtractionFn):
    """Numbers rounded down to buckets of ``size`` from ``offset``; not a number: null."""

    type: Literal["bucket"] = "bucket"
    size: float = 1.0
    offset: float = 0.0

    def apply(self, value: str | None) -> str | None:
        number = None if value is None else expr_values.to_double(value)
        if number is None or math.isnan(number) or self.size == 0:
            return None
        bucket = math.floor((number - self.offset) / self.size) * self.size + self.offset
        if math.isfinite(bucket) and bucket == int(bucket):
            return str(int(bucket))
        return expr_values.java_double_str(bucket)


class CascadeExtractionFn(_ExtractionFn):
    type: Literal["cascade"] = "cascade"
    extraction_fns: Annotated[tuple[ExtractionFn, ...], Field(min_length=1)] = Field(alias="extractionFns")

    def apply(self, value: str | None) -> str | None:
        for fn in self.extraction_fns:
            value = fn.apply(value)
        return value


def _refused_code(kind: str) -> Callable[[Any, Any], Any]:
    def refuse(cls: Any, data: Any) -> Any:
        raise spec_problem(
            f"JavaScript {kind} run code sent in the spec and are refused (use an expression instead)", "type"
        )

    return refuse


class JavaScriptExtractionFn(_ExtractionFn):
    type: Literal["javascript"] = "javascript"

    _refuse = model_validator(mode="before")(_refused_code("extraction functions"))


class LookupExtractionFn(_ExtractionFn):
    type: Literal["lookup", "registeredLookup"]

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        raise spec_problem("lookup extraction functions are not supported yet", "type")


ExtractionFn = Annotated[
    SubstringExtractionFn
    | StrlenExtractionFn
    | UpperExtractionFn
    | LowerExtractionFn
    | RegexExtractionFn
    | PartialExtractionFn
    | SearchQueryExtractionFn
    | TimeFormatExtractionFn
    | StringFormatExtractionFn
    | BucketExtractionFn
    | CascadeExtractionFn
    | JavaScriptExtractionFn
    | LookupExtractionFn,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- search query specs


class _SearchQuery(DruidModel):
    def matches(self, value: str) -> bool:
        raise NotImplementedError


class ContainsSearchQuery(_SearchQuery):
    type: Literal["contains"] = "contains"
    value: StringLike
    case_sensitive: StrictBool = Field(default=False, alias="caseSensitive")

    def matches(self, value: str) -> bool:
        if self.case_sensitive:
            return self.value in value
        return self.value.lower() in value.lower()


class InsensitiveContainsSearchQuery(_SearchQuery):
    type: Literal["insensitive_contains"] = "insensitive_contains"
    value: StringLike

    def matches(self, value: str) -> bool:
        return self.value.lower() in value.lower()


class FragmentSearchQuery(_SearchQuery):
    """Every fragment is contained in the value."""

    type: Literal["fragment"] = "fragment"
    values: tuple[StringLike, ...]
    case_sensitive: StrictBool = Field(default=False, alias="caseSensitive")

    def matches(self, value: str) -> bool:
        if self.case_sensitive:
            return all(fragment in value for fragment in self.values)
        lowered = value.lower()
        return all(fragment.lower() in lowered for fragment in self.values)


class RegexSearchQuery(_SearchQuery):
    type: Literal["regex"] = "regex"
    pattern: NonEmptyStr

    _check_pattern = field_validator("pattern")(lambda cls, value: _regex_field(value))

    def matches(self, value: str) -> bool:
        return expr_values.java_regex(self.pattern).search(value) is not None


SearchQuery = Annotated[
    ContainsSearchQuery | InsensitiveContainsSearchQuery | FragmentSearchQuery | RegexSearchQuery,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- one-column filters


class _ColumnFilter(_Filter):
    """A filter on one column: each value (of a multi-value row: any value) is tested alone."""

    @property
    def column_name(self) -> str:
        raise NotImplementedError

    @property
    def extraction(self) -> _ExtractionFn | None:
        return None

    def match(self, value: str | None) -> bool | None:
        """The result for one value (after the extraction function)."""
        raise NotImplementedError

    def test_cell(self, value: str | None) -> bool | None:
        fn = self.extraction
        return self.match(value if fn is None else fn.apply(value))

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        return _any_of(self.test_cell(cell) for cell in _cell_strings(row, self.column_name))


class _DimensionFilter(_ColumnFilter):
    dimension: NonEmptyStr
    extraction_fn: ExtractionFn | None = Field(default=None, alias="extractionFn")

    @property
    def column_name(self) -> str:
        return self.dimension

    @property
    def extraction(self) -> _ExtractionFn | None:
        return self.extraction_fn


class SelectorFilter(_DimensionFilter):
    """``column = value``; a null ``value`` matches rows where the column is null or missing."""

    type: Literal["selector"] = "selector"
    value: StringLike | None = None

    def match(self, value: str | None) -> bool | None:
        if self.value is None:
            return value is None
        return None if value is None else value == self.value


class ExtractionFilter(SelectorFilter):
    """The deprecated ``extraction`` filter: a selector with an extraction function."""

    type: Literal["extraction"] = "extraction"  # type: ignore[assignment]


class InFilter(_DimensionFilter):
    """``column IN (values)``; a null among ``values`` matches null rows."""

    type: Literal["in"] = "in"
    values: tuple[StringLike | None, ...]

    @cached_property
    def _wanted(self) -> frozenset[str | None]:
        return frozenset(self.values)

    def match(self, value: str | None) -> bool | None:
        if value is None:
            return True if None in self._wanted else None
        return value in self._wanted


def _utf16_key(text: str) -> bytes:
    # Druid orders strings like Java does: by UTF-16 code units.
    return text.encode("utf-16-be", "surrogatepass")


class BoundFilter(_DimensionFilter):
    """``lower <(=) column <(=) upper``, compared as strings (``lexicographic``) or as numbers."""

    type: Literal["bound"] = "bound"
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

    def match(self, value: str | None) -> bool | None:
        return _in_bounds(
            value,
            self.lower,
            self.upper,
            self.lower_strict,
            self.upper_strict,
            numeric=self.ordering == "numeric",
        )


def _in_bounds(
    cell: str | None, lower: str | None, upper: str | None, lower_open: bool, upper_open: bool, numeric: bool
) -> bool | None:
    if cell is None:
        return None
    if numeric:
        number = _as_number(cell)
        if number is None:
            return None
        low = None if lower is None else _as_number(lower)
        high = None if upper is None else _as_number(upper)
        if low is not None and (number <= low if lower_open else number < low):
            return False
        return not (high is not None and (number >= high if upper_open else number > high))
    key = _utf16_key(cell)
    if lower is not None:
        low_key = _utf16_key(lower)
        if key <= low_key if lower_open else key < low_key:
            return False
    if upper is not None:
        high_key = _utf16_key(upper)
        if key >= high_key if upper_open else key > high_key:
            return False
    return True


_VALUE_TYPES = ("STRING", "LONG", "DOUBLE", "FLOAT")


def _typed_value(kind: str, value: Any, field: str) -> Any:
    if kind == "STRING":
        if not (isinstance(value, str) or is_number(value)):
            raise spec_problem("must be a string", field)
        return java_string(value)
    number = _as_number(java_string(value)) if isinstance(value, str) or is_number(value) else None
    if number is None or (kind == "LONG" and not number.is_integer()):
        raise spec_problem(f"must be a {'whole number' if kind == 'LONG' else 'number'}", field)
    return int(number) if kind == "LONG" else number


def _value_type(data: dict[str, Any]) -> str | None:
    kind = data.get("matchValueType")
    if not isinstance(kind, str):
        return None  # missing or wrong type: reported by field validation
    kind = kind.strip().upper()
    if kind not in _VALUE_TYPES:
        raise spec_problem(
            f"match value type '{data['matchValueType']}' is not supported yet", "matchValueType"
        )
    data["matchValueType"] = kind
    return kind


class EqualsFilter(_ColumnFilter):
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
        kind = _value_type(data)
        if kind is not None and "matchValue" in data:
            data["matchValue"] = _typed_value(kind, data["matchValue"], "matchValue")
        return data

    @property
    def column_name(self) -> str:
        return self.column

    def match(self, value: str | None) -> bool | None:
        if value is None:
            return None
        if self.match_value_type == "STRING":
            return value == self.match_value
        number = _as_number(value)
        return None if number is None else number == float(self.match_value)


class RangeFilter(_ColumnFilter):
    """``lower <(=) column <(=) upper`` typed by ``matchValueType`` (Druid 28+): STRING compares
    lexicographically, the numeric types as numbers; ``lowerOpen``/``upperOpen`` exclude the bounds."""

    type: Literal["range"] = "range"
    column: NonEmptyStr
    match_value_type: Literal["STRING", "LONG", "DOUBLE", "FLOAT"] = Field(alias="matchValueType")
    lower: str | int | float | None = None
    upper: str | int | float | None = None
    lower_open: StrictBool = Field(default=False, alias="lowerOpen")
    upper_open: StrictBool = Field(default=False, alias="upperOpen")

    @model_validator(mode="before")
    @classmethod
    def _typed_bounds(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = without_nulls(data)
        kind = _value_type(data)
        if kind is not None:
            for key in ("lower", "upper"):
                if key in data:
                    data[key] = _typed_value(kind, data[key], key)
        if "lower" not in data and "upper" not in data:
            raise spec_problem("at least one of lower and upper is required")
        return data

    @property
    def column_name(self) -> str:
        return self.column

    def match(self, value: str | None) -> bool | None:
        numeric = self.match_value_type != "STRING"
        return _in_bounds(
            value,
            None if self.lower is None else java_string(self.lower),
            None if self.upper is None else java_string(self.upper),
            self.lower_open,
            self.upper_open,
            numeric=numeric,
        )


class NullFilter(_ColumnFilter):
    """``column IS NULL`` (missing, JSON null or an empty list); never unknown."""

    type: Literal["null"] = "null"
    column: NonEmptyStr

    @property
    def column_name(self) -> str:
        return self.column

    def match(self, value: str | None) -> bool | None:
        return value is None


class LikeFilter(_DimensionFilter):
    """SQL ``LIKE``: ``%`` any run of characters, ``_`` one; ``escape`` quotes them."""

    type: Literal["like"] = "like"
    pattern: str
    escape: str | None = None

    @field_validator("escape")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise spec_problem("must be a single character")
        return value

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return expr_values.like_regex(self.pattern, self.escape)

    def match(self, value: str | None) -> bool | None:
        return None if value is None else self._regex.fullmatch(value) is not None


class RegexFilter(_DimensionFilter):
    """The Java regular expression ``pattern`` is found in the value."""

    type: Literal["regex"] = "regex"
    pattern: str

    _check_pattern = field_validator("pattern")(lambda cls, value: _regex_field(value))

    def match(self, value: str | None) -> bool | None:
        return None if value is None else expr_values.java_regex(self.pattern).search(value) is not None


class SearchFilter(_DimensionFilter):
    type: Literal["search"] = "search"
    query: SearchQuery

    def match(self, value: str | None) -> bool | None:
        return None if value is None else self.query.matches(value)


def interval_bounds(text: str) -> tuple[int, int]:
    """An ISO-8601 interval (``start/end``, ``start/period``, ``period/end``) as epoch ms, end exclusive."""
    start_text, sep, end_text = text.partition("/")
    if not sep:
        raise ValueError(f"'{text}' is not an ISO-8601 interval (start/end)")

    def instant(part: str) -> int | None:
        return expr_values.parse_iso(part)

    start, end = instant(start_text), instant(end_text)
    if start is None and end is not None:
        start = expr_values.shift_time(
            end, expr_values.parse_period(start_text), -1, expr_values.parse_zone("UTC")
        )
    elif end is None and start is not None:
        end = expr_values.shift_time(
            start, expr_values.parse_period(end_text), 1, expr_values.parse_zone("UTC")
        )
    if start is None or end is None:
        raise ValueError(f"'{text}' is not an ISO-8601 interval (start/end)")
    if end < start:
        raise ValueError(f"the interval '{text}' ends before it starts")
    return start, end


def check_intervals(value: tuple[str, ...]) -> tuple[str, ...]:
    """A validator of a list of ISO-8601 intervals: a bad one is named by its place."""
    for index, text in enumerate(value):
        try:
            interval_bounds(text)
        except ValueError as exc:
            raise spec_problem(str(exc), index) from None
    return value


class IntervalFilter(_DimensionFilter):
    """The value read as a number of ms is in one of ``intervals`` (start inclusive, end exclusive)."""

    type: Literal["interval"] = "interval"
    intervals: Annotated[tuple[str, ...], Field(min_length=1)]
    _ranges: tuple[tuple[int, int], ...] = PrivateAttr(default=())

    _parsed = field_validator("intervals")(lambda cls, value: check_intervals(value))

    def model_post_init(self, context: Any) -> None:
        self._ranges = tuple(interval_bounds(text) for text in self.intervals)

    def match(self, value: str | None) -> bool | None:
        number = _as_number(value)
        if number is None:
            return None
        return any(start <= number < end for start, end in self._ranges)


class _DimensionSpec(DruidModel):
    type: Literal["default", "extraction"] = "default"
    dimension: NonEmptyStr
    output_name: str | None = Field(default=None, alias="outputName")
    output_type: str | None = Field(default=None, alias="outputType")
    extraction_fn: ExtractionFn | None = Field(default=None, alias="extractionFn")

    @model_validator(mode="before")
    @classmethod
    def _plain_name(cls, data: Any) -> Any:
        return {"type": "default", "dimension": data} if isinstance(data, str) else data


class ColumnComparisonFilter(_Filter):
    """All the columns hold the same value (a multi-value row: any value in common; two nulls are equal)."""

    type: Literal["columnComparison"] = "columnComparison"
    dimensions: Annotated[tuple[_DimensionSpec, ...], Field(min_length=2)]

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        columns = []
        for spec in self.dimensions:
            cells = _cell_strings(row, spec.dimension)
            if spec.extraction_fn is not None:
                cells = [spec.extraction_fn.apply(cell) for cell in cells]
            columns.append(set(cells))
        first = columns[0]
        return all(first & other for other in columns[1:])


class ExpressionFilter(_Filter):
    """A Druid expression; true when it evaluates to a positive number or ``'true'``."""

    type: Literal["expression"] = "expression"
    expression: ExpressionText
    _function: Any = PrivateAttr(default=None)

    @cached_property
    def parsed(self) -> Any:
        return parse_expression(self.expression)

    def evaluate(self, row: Mapping[str, Any]) -> bool | None:
        if self._function is None:
            self._function = compile_row(self.parsed)
        try:
            value = self._function(row)
        except EvalError:
            return None
        return None if value is None else as_bool(value)


class JavaScriptFilter(_Filter):
    type: Literal["javascript"] = "javascript"

    _refuse = model_validator(mode="before")(_refused_code("filters"))


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


_MEMBERS = (
    SelectorFilter,
    ExtractionFilter,
    InFilter,
    BoundFilter,
    EqualsFilter,
    RangeFilter,
    NullFilter,
    LikeFilter,
    RegexFilter,
    SearchFilter,
    IntervalFilter,
    ColumnComparisonFilter,
    ExpressionFilter,
    JavaScriptFilter,
    TrueFilter,
    FalseFilter,
    AndFilter,
    OrFilter,
    NotFilter,
)

DimFilter = Annotated[
    SelectorFilter
    | ExtractionFilter
    | InFilter
    | BoundFilter
    | EqualsFilter
    | RangeFilter
    | NullFilter
    | LikeFilter
    | RegexFilter
    | SearchFilter
    | IntervalFilter
    | ColumnComparisonFilter
    | ExpressionFilter
    | JavaScriptFilter
    | TrueFilter
    | FalseFilter
    | AndFilter
    | OrFilter
    | NotFilter,
    Field(discriminator="type"),
]

for _model in (SearchQueryExtractionFn, CascadeExtractionFn, _DimensionSpec, *_MEMBERS):
    _model.model_rebuild()

# The ``type`` values of the filters, extraction functions and search queries above
# (pydantic puts these union tags in error locations).
FILTER_TYPES: frozenset[str] = frozenset(
    str(tag)
    for member in (
        *_MEMBERS,
        SubstringExtractionFn,
        StrlenExtractionFn,
        UpperExtractionFn,
        LowerExtractionFn,
        RegexExtractionFn,
        PartialExtractionFn,
        SearchQueryExtractionFn,
        TimeFormatExtractionFn,
        StringFormatExtractionFn,
        BucketExtractionFn,
        CascadeExtractionFn,
        JavaScriptExtractionFn,
        ContainsSearchQuery,
        InsensitiveContainsSearchQuery,
        FragmentSearchQuery,
        RegexSearchQuery,
    )
    for tag in ([member.model_fields["type"].default] if member.model_fields["type"].default else [])
) | {"lookup", "registeredLookup"}

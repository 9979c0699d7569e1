"""Shared pieces of the spec models: the base model and field types that speak Druid JSON.

Validation problems are raised as ``PydanticCustomError`` of type :data:`SPEC_ERROR`
carrying the problem text and, optionally, a sub-path below the location pydantic
reports; ``supervisor.spec_errors`` turns them into ``InvalidSpec`` with the full Druid path.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    model_validator,
)
from pydantic_core import PydanticCustomError

from supervisor.durations import format_duration, parse_duration

SPEC_ERROR = "druid_spec"


def spec_problem(problem: str, *subpath: str | int) -> PydanticCustomError:
    """An error for the field being validated, or for ``subpath`` below it."""
    return PydanticCustomError(SPEC_ERROR, "{problem}", {"problem": problem, "subpath": subpath})


class DruidModel(BaseModel):
    """Base of every spec model.

    JSON ``null`` means "not given" (Druid's constructors treat a null property as
    its default), keys Druid knows but we do not support yet are listed in
    ``_not_supported_yet`` (by their JSON name), anything else unknown is refused.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    _not_supported_yet: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _druid_input(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        clean = without_nulls(data)
        for key in cls._not_supported_yet:
            if key in clean:
                raise spec_problem("is not supported yet", key)
        return clean


def without_nulls(data: dict[Any, Any]) -> dict[Any, Any]:
    return {key: value for key, value in data.items() if value is not None}


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def java_string(value: object) -> str:
    """How Druid would print a JSON scalar when it compares it as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _scalar_to_string(value: Any) -> Any:
    """Druid (Jackson) reads a JSON number or boolean given for a string property as its text."""
    return java_string(value) if isinstance(value, bool | int | float) else value


def _to_duration(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise spec_problem(str(exc)) from None


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise spec_problem("must be a positive duration")
    return value


_DURATION_JSON = PlainSerializer(format_duration, return_type=str, when_used="json")

StrictBool = Annotated[bool, Strict()]
StrictInt = Annotated[int, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
StrictStr = Annotated[str, Strict()]
NonEmptyStr = Annotated[str, Strict(), Field(min_length=1)]
# A string property for which a JSON number or boolean is also accepted (filter values, bounds).
StringLike = Annotated[str, BeforeValidator(_scalar_to_string), Strict()]
# ISO-8601 period text or integer milliseconds; serialised back as period text.
Duration = Annotated[timedelta, BeforeValidator(_to_duration), _DURATION_JSON]
PositiveDuration = Annotated[
    timedelta, BeforeValidator(_to_duration), AfterValidator(_positive_duration), _DURATION_JSON
]

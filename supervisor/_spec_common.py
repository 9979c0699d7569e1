"""Shared pieces of the spec models: the base model and field types that speak Druid JSON.

Validation problems are raised as ``PydanticCustomError`` of type :data:`SPEC_ERROR`
carrying the problem text and, optionally, a sub-path below the location pydantic
reports; ``supervisor.spec_errors`` turns them into ``InvalidSpec`` with the full Druid path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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


# The ioConfig.inputFormat types the ingest engine reads (readers: middlemanager/ingest/formats/).
SUPPORTED_INPUT_FORMATS = ("json", "csv", "tsv", "delimited", "kafka", "avro_stream", "protobuf")


def unsupported_input_format(kind: str) -> str:
    """The problem text for an input format the ingest engine cannot read yet."""
    if kind == "thrift":
        # Druid's thrift format decodes with the user's compiled Java classes (thriftJar, thriftClass).
        return (
            "input format 'thrift' needs Java classes (thriftJar, thriftClass), which cannot be loaded here"
        )
    supported = ", ".join(f"'{k}'" for k in SUPPORTED_INPUT_FORMATS)
    return f"input format '{kind}' is not supported yet (only {supported} so far)"


def spec_problem(problem: str, *subpath: str | int) -> PydanticCustomError:
    """An error for the field being validated, or for ``subpath`` below it."""
    return PydanticCustomError(SPEC_ERROR, "{problem}", {"problem": problem, "subpath": subpath})


class _Always:
    """A Druid default that no given value equals: the field is reported whenever it is given."""

    def __repr__(self) -> str:
        return "ALWAYS"


ALWAYS: Any = _Always()


def is_default(value: Any, default: Any) -> bool:
    """Whether a given value means the same as leaving the key out, in Druid.

    ``default`` is a value (a JSON one is compared as Jackson would read it: ``"false"`` is
    false, ``"100"`` is 100), a predicate, or ``ALWAYS`` (no value is the default).
    """
    if default is ALWAYS:
        return False
    if callable(default):
        return bool(default(value))
    if isinstance(default, bool):
        return value is default or (isinstance(value, str) and value.strip().lower() == str(default).lower())
    if value == default:
        return True
    scalar = isinstance(value, str | int | float) and not isinstance(value, bool)
    return scalar and str(value).strip() == str(default)


class DruidModel(BaseModel):
    """Base of every spec model.

    JSON ``null`` means "not given" (Druid's constructors treat a null property as
    its default), keys Druid knows but we do not support yet are listed in
    ``_not_supported_yet`` (by their JSON name). Other keys the model does not declare fail
    validation as ``extra_forbidden``; ``supervisor.spec_fields`` turns that into an ignored
    field, an unhonoured one (a key of ``_druid_only``: Druid knows it, we do not model it) or a
    400 with a hint. ``_unhonoured`` lists the declared keys we keep but do not act on. Both
    map the key to Druid's default (a value, a predicate or ``ALWAYS``): a field given with
    Druid's default is not reported.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    _not_supported_yet: ClassVar[tuple[str, ...]] = ()
    _druid_only: ClassVar[Mapping[str, Any]] = {}
    _unhonoured: ClassVar[Mapping[str, Any]] = {}

    def unhonoured_keys(self) -> list[str]:
        """The JSON keys of this object that were given, are kept, and have no effect here."""
        keys = []
        for name, field in type(self).model_fields.items():
            key = field.alias or name
            if key in self._unhonoured and name in self.model_fields_set:
                value = getattr(self, name)
                if value is not None and value != () and not is_default(value, self._unhonoured[key]):
                    keys.append(key)
        return keys

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


def _jackson_bool(value: Any) -> Any:
    """Jackson reads the strings "true"/"false" (any case) and the integers 0/1 as booleans."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return value == 1
    return value


def _jackson_int(value: Any) -> Any:
    """Jackson reads an integer given as a string ("42") or as an integral float (42.0)."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


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

# (The coercion is the last annotation: it runs first, and the JSON schema keeps its bounds.)
# Scalars as Druid's Jackson mapper reads them (ALLOW_COERCION_OF_SCALARS, ACCEPT_FLOAT_AS_INT):
# "true"/"false" for a boolean, "42" or 42.0 for an integer, a number for a string. Python's own
# truthiness is not Jackson's: "yes", 2 or [] are not booleans, 1.5 is not an integer.
JsonBool = Annotated[bool, Strict(), BeforeValidator(_jackson_bool)]
JsonInt = Annotated[int, Strict(), BeforeValidator(_jackson_int)]
# The former names, for the modules that still use them.
StrictBool = JsonBool
StrictInt = JsonInt
PositiveInt = Annotated[int, Strict(), Field(ge=1), BeforeValidator(_jackson_int)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0), BeforeValidator(_jackson_int)]
StrictStr = Annotated[str, Strict()]
NonEmptyStr = Annotated[str, Strict(), Field(min_length=1), BeforeValidator(_scalar_to_string)]
# A string property for which a JSON number or boolean is also accepted (filter values, bounds).
StringLike = Annotated[str, BeforeValidator(_scalar_to_string), Strict()]
# ISO-8601 period text or integer milliseconds; serialised back as period text.
Duration = Annotated[timedelta, BeforeValidator(_to_duration), _DURATION_JSON]
PositiveDuration = Annotated[
    timedelta, BeforeValidator(_to_duration), AfterValidator(_positive_duration), _DURATION_JSON
]

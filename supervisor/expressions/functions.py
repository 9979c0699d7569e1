"""Which Druid expression functions exist here, their arity and their literal arguments.

The names and signatures are those of docs/querying/math-expr.md. :func:`check` walks
a parsed expression and reports, with the position, an unknown function, a wrong
number of arguments, an argument that must be a literal (a regular expression, a
period, a time zone, a cast type, ...) and is not, or a literal that is not valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from supervisor.expressions import values
from supervisor.expressions.ast import ArrayLiteral, Binary, Call, Expr, Literal, Unary
from supervisor.expressions.parser import ExpressionSyntaxError

__all__ = ["FUNCTIONS", "NOT_SUPPORTED", "check"]

_ANY = 1 << 30


@dataclass(frozen=True, slots=True)
class Signature:
    min_args: int
    max_args: int
    # argument index -> validator of its literal value (raises ValueError); the argument must be a literal
    literals: tuple[tuple[int, Callable[[object], object]], ...] = ()


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string literal")
    return value


def _regex(value: object) -> None:
    values.java_regex(_string(value))


def _period(value: object) -> None:
    values.parse_period(_string(value))


def _zone(value: object) -> None:
    if value is not None:
        values.parse_zone(_string(value))


def _pattern(value: object) -> None:
    if value is not None:
        values.check_joda_pattern(_string(value))


CAST_TYPES = frozenset(("LONG", "DOUBLE", "STRING", "ARRAY<LONG>", "ARRAY<DOUBLE>", "ARRAY<STRING>"))


def _cast_type(value: object) -> None:
    if _string(value).upper() not in CAST_TYPES:
        raise ValueError(f"cast type must be one of {', '.join(sorted(CAST_TYPES))}")


def _unit(value: object) -> None:
    if _string(value).upper() not in values.EXTRACT_UNITS:
        raise ValueError(f"unit must be one of {', '.join(sorted(values.EXTRACT_UNITS))}")


def _origin(value: object) -> None:
    if value is None or isinstance(value, int):
        return
    if not isinstance(value, str) or values.parse_iso(value) is None:
        raise ValueError("must be a number of milliseconds or an ISO-8601 time")


def _long(value: object) -> None:
    if not isinstance(value, int):
        raise ValueError("must be a whole number literal")


def _escape(value: object) -> None:
    if value is not None and (not isinstance(value, str) or len(value) != 1):
        raise ValueError("the escape must be a single character")


def _json_path(value: object) -> None:
    from supervisor.expressions.jsonpath import parse_json_path

    parse_json_path(_string(value))


def _json_type(value: object) -> None:
    if _string(value).upper() not in CAST_TYPES:
        raise ValueError(f"type must be one of {', '.join(sorted(CAST_TYPES))}")


def _sig(low: int, high: int | None = None, **literals: Callable[[object], object]) -> Signature:
    indexed = tuple((int(key[1:]), check) for key, check in literals.items())
    return Signature(low, low if high is None else high, indexed)


FUNCTIONS: dict[str, Signature] = {
    # general
    "cast": _sig(2, a1=_cast_type),
    "coalesce": _sig(1, _ANY),
    "if": _sig(3),
    "nvl": _sig(2),
    "like": _sig(2, 3, a1=lambda v: None if isinstance(v, str) else _string(v), a2=_escape),
    "case_searched": _sig(2, _ANY),
    "case_simple": _sig(3, _ANY),
    "isnull": _sig(1),
    "notnull": _sig(1),
    # strings
    "concat": _sig(0, _ANY),
    "format": _sig(1, _ANY),
    "regexp_extract": _sig(2, 3, a1=_regex, a2=_long),
    "regexp_like": _sig(2, a1=_regex),
    "regexp_replace": _sig(3, a1=_regex),
    "contains_string": _sig(2, a1=_string),
    "icontains_string": _sig(2, a1=_string),
    "replace": _sig(3),
    "substring": _sig(3),
    "right": _sig(2),
    "left": _sig(2),
    "strlen": _sig(1),
    "strpos": _sig(2, 3),
    "trim": _sig(1, 2),
    "ltrim": _sig(1, 2),
    "rtrim": _sig(1, 2),
    "lower": _sig(1),
    "upper": _sig(1),
    "reverse": _sig(1),
    "repeat": _sig(2),
    "lpad": _sig(3),
    "rpad": _sig(3),
    "parse_long": _sig(1, 2),
    # time
    "timestamp": _sig(1, 2, a1=_pattern),
    "unix_timestamp": _sig(1, 2, a1=_pattern),
    "timestamp_ceil": _sig(2, 4, a1=_period, a2=_origin, a3=_zone),
    "timestamp_floor": _sig(2, 4, a1=_period, a2=_origin, a3=_zone),
    "timestamp_shift": _sig(3, 4, a1=_period, a3=_zone),
    "timestamp_extract": _sig(2, 3, a1=_unit, a2=_zone),
    "timestamp_parse": _sig(1, 3, a1=_pattern, a2=_zone),
    "timestamp_format": _sig(1, 3, a1=_pattern, a2=_zone),
    # math
    **{name: _sig(1) for name in values.DOUBLE_MATH_FUNCTIONS},
    "abs": _sig(1),
    "atan2": _sig(2),
    "copysign": _sig(2),
    "hypot": _sig(2),
    "remainder": _sig(2),
    "div": _sig(2),
    "max": _sig(2),
    "min": _sig(2),
    "pow": _sig(2),
    "round": _sig(1, 2),
    "safe_divide": _sig(2),
    "pi": _sig(0),
    "greatest": _sig(0, _ANY),
    "least": _sig(0, _ANY),
    "bitwiseand": _sig(2),
    "bitwiseor": _sig(2),
    "bitwisexor": _sig(2),
    "bitwisecomplement": _sig(1),
    "bitwiseshiftleft": _sig(2),
    "bitwiseshiftright": _sig(2),
    # arrays
    "array": _sig(0, _ANY),
    "array_length": _sig(1),
    "array_offset": _sig(2),
    "array_ordinal": _sig(2),
    "array_contains": _sig(2),
    "array_overlap": _sig(2),
    "scalar_in_array": _sig(2),
    "array_offset_of": _sig(2),
    "array_ordinal_of": _sig(2),
    "array_prepend": _sig(2),
    "array_append": _sig(2),
    "array_concat": _sig(2),
    "array_slice": _sig(2, 3),
    "array_to_string": _sig(2),
    "string_to_array": _sig(2),
    # json
    "json_value": _sig(2, 3, a1=_json_path, a2=_json_type),
    "json_query": _sig(2, a1=_json_path),
    "parse_json": _sig(1),
    "try_parse_json": _sig(1),
    "to_json_string": _sig(1),
    "json_object": _sig(0, _ANY),
    "json_keys": _sig(2, a1=_json_path),
}

# Druid functions we know of and do not run (lookups and bloom filters need services,
# lambdas are not parsed, the IP functions are not done yet).
NOT_SUPPORTED = frozenset(
    (
        "lookup",
        "bloom_filter_test",
        "map",
        "cartesian_map",
        "filter",
        "fold",
        "cartesian_fold",
        "any",
        "all",
        "ipv4_match",
        "ipv4_parse",
        "ipv4_stringify",
        "ipv6_match",
        "json_query_array",
        "json_paths",
        "json_merge",
        "human_readable_binary_byte_format",
        "human_readable_decimal_byte_format",
        "human_readable_decimal_format",
        "getexponent",
        "nextafter",
        "nextup",
        "scalb",
        "ulp",
        "bitwiseconvertdoubletolongbits",
        "bitwiseconvertlongbitstodouble",
        "array_set_add",
        "array_set_add_all",
    )
)


def check(expr: Expr) -> None:
    """Raise :class:`ExpressionSyntaxError` for the first unknown function or bad argument."""
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Unary):
            stack.append(node.operand)
        elif isinstance(node, Binary):
            stack.extend((node.left, node.right))
        elif isinstance(node, ArrayLiteral):
            continue
        elif isinstance(node, Call):
            _check_call(node)
            stack.extend(node.args)


def _check_call(node: Call) -> None:
    if node.name in NOT_SUPPORTED:
        raise ExpressionSyntaxError(f"function '{node.name}' is not supported yet", node.pos)
    signature = FUNCTIONS.get(node.name)
    if signature is None:
        raise ExpressionSyntaxError(f"unknown function '{node.name}'", node.pos)
    count = len(node.args)
    if not signature.min_args <= count <= signature.max_args:
        if signature.min_args == signature.max_args:
            wanted = f"{signature.min_args}"
        elif signature.max_args == _ANY:
            wanted = f"at least {signature.min_args}"
        else:
            wanted = f"{signature.min_args} to {signature.max_args}"
        raise ExpressionSyntaxError(
            f"function '{node.name}' needs {wanted} argument{'s' if wanted != '1' else ''}, got {count}",
            node.pos,
        )
    for index, validate in signature.literals:
        if index >= count:
            continue
        arg = node.args[index]
        if not isinstance(arg, Literal):
            raise ExpressionSyntaxError(
                f"argument {index + 1} of function '{node.name}' must be a literal",
                getattr(arg, "pos", node.pos),
            )
        try:
            validate(arg.value)
        except ValueError as exc:
            raise ExpressionSyntaxError(
                f"argument {index + 1} of function '{node.name}' {exc}"
                if str(exc).startswith("must")
                else f"function '{node.name}': {exc}",
                arg.pos,
            ) from None

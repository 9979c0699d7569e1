"""The per-row evaluator of Druid expressions (the reference semantics).

``compile_row(expr)`` turns a checked syntax tree into a function of one row (a
mapping of column name to value; ``__time`` is the row time in ms). Semantics follow
docs/querying/math-expr.md with SQL-compatible null handling and strict booleans (see
``values``): a binary operator with a null operand is null; ``+`` of two strings
concatenates; a string with a number is read as a double (``ExpressionTypeConversion
.autoDetect``); two longs stay a long (Java overflow, ``/`` truncates, ``/ 0`` fails);
logical operators use Kleene logic (``true || null`` is 1, ``false && null`` is 0).

Input values are taken as Druid's JSON reader gives them: a JSON boolean is a LONG
1/0, a list an ARRAY, an object a ``COMPLEX<json>``. Multi-value inputs are not
auto-mapped through scalar functions: a list of one value acts as that value, a longer
list given to a scalar function fails the row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, tzinfo
from functools import lru_cache
from typing import Any

from supervisor.expressions import values as v
from supervisor.expressions.ast import ArrayLiteral, Binary, Call, Expr, Identifier, Literal, Unary
from supervisor.expressions.jsonpath import find, parse_json_path
from supervisor.expressions.values import EvalError, as_bool, to_double, to_long, to_string, value_type

__all__ = ["RowFunction", "binary_op", "compile_row", "normalize_input"]

Row = Mapping[str, Any]
RowFunction = Callable[[Row], Any]


def normalize_input(value: Any) -> Any:
    """A JSON value as an expression value (booleans are longs, big integers doubles)."""
    if value is None or isinstance(value, str | float):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else float(value)
    if isinstance(value, list | tuple):
        return [normalize_input(item) for item in value]
    return value


def compile_row(expr: Expr) -> RowFunction:
    """A function computing ``expr`` on one row; raises ``EvalError`` where Druid throws."""
    return _compile(expr)


def _compile(expr: Expr) -> RowFunction:
    if isinstance(expr, Literal):
        constant = expr.value
        return lambda row: constant
    if isinstance(expr, ArrayLiteral):
        items = [e.value for e in expr.elements]
        if expr.element_type == "DOUBLE":
            items = [None if x is None else float(x) for x in items]
        return lambda row: list(items)
    if isinstance(expr, Identifier):
        name = expr.name
        return lambda row: normalize_input(row.get(name))
    if isinstance(expr, Unary):
        operand = _compile(expr.operand)
        if expr.op == "-":
            return lambda row: _negate(operand(row))
        return lambda row: _not(operand(row))
    if isinstance(expr, Binary):
        left = _compile(expr.left)
        right = _compile(expr.right)
        op = expr.op
        if op == "&&":
            return lambda row: _and(left, right, row)
        if op == "||":
            return lambda row: _or(left, right, row)
        return lambda row: binary_op(op, left(row), right(row))
    return _compile_call(expr)


def _negate(value: Any) -> Any:
    if value is None:
        return None
    kind = value_type(value)
    if kind == "LONG":
        return v.wrap64(-value)
    if kind == "DOUBLE":
        return -value
    raise EvalError(f"unary '-' is not supported on type {kind}")


def _not(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list | dict):
        raise EvalError("unary '!' is not supported on arrays")
    return 0 if as_bool(value) else 1


def _and(left: RowFunction, right: RowFunction, row: Row) -> Any:
    a = left(row)
    if a is not None and not as_bool(a):
        return 0
    b = right(row)
    if b is not None and not as_bool(b):
        return 0
    return None if a is None or b is None else 1


def _or(left: RowFunction, right: RowFunction, row: Row) -> Any:
    a = left(row)
    if a is not None and as_bool(a):
        return 1
    b = right(row)
    if b is not None and as_bool(b):
        return 1
    return None if a is None or b is None else 0


def _long_arith(op: str, a: int, b: int) -> int:
    if op == "+":
        return v.wrap64(a + b)
    if op == "-":
        return v.wrap64(a - b)
    if op == "*":
        return v.wrap64(a * b)
    if op == "/":
        return v.java_div(a, b)
    if op == "%":
        return v.java_mod(a, b)
    return v.long_pow(a, b)


def _double_arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return v.java_double_div(a, b)
    if op == "%":
        return v.java_double_mod(a, b)
    return v.java_pow(a, b)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def binary_op(op: str, a: Any, b: Any) -> Any:
    """An arithmetic or comparison operator on two values (BinaryEvalOpExprBase, BinaryBooleanOpExprBase)."""
    if a is None or b is None:
        return None
    ta, tb = value_type(a), value_type(b)
    if ta in ("ARRAY", "COMPLEX") or tb in ("ARRAY", "COMPLEX"):
        if op in ("==", "!=") and ta == tb == "ARRAY":
            return int(_COMPARE[op](a, b))
        raise EvalError(f"operator '{op}' is not supported on arrays")
    compare = _COMPARE.get(op)
    if ta == "STRING" and tb == "STRING":
        if compare is not None:
            return int(compare(a, b))
        if op == "+":
            return a + b
        raise EvalError(f"operator '{op}' is not supported on type STRING")
    if ta == "LONG" and tb == "LONG":
        return int(compare(a, b)) if compare is not None else _long_arith(op, a, b)
    x, y = to_double(a), to_double(b)
    if x is None or y is None:
        return None
    return int(compare(x, y)) if compare is not None else _double_arith(op, x, y)


# ------------------------------------------------------------------ functions


def _compile_call(call: Call) -> RowFunction:
    args = [_compile(arg) for arg in call.args]
    literals = [arg.value if isinstance(arg, Literal) else None for arg in call.args]
    builder = _SPECIAL.get(call.name)
    if builder is not None:
        return builder(args, literals)
    fn = _SCALAR[call.name]
    if len(args) == 1:
        (only,) = args
        return lambda row: fn(only(row))
    return lambda row: fn(*[arg(row) for arg in args])


def _lazy_if(args: list[RowFunction], literals: list[Any]) -> RowFunction:
    cond, then, otherwise = args
    return lambda row: then(row) if as_bool(cond(row)) else otherwise(row)


def _case_searched(args: list[RowFunction], literals: list[Any]) -> RowFunction:
    pairs = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
    otherwise = args[-1] if len(args) % 2 else None

    def run(row: Row) -> Any:
        for cond, result in pairs:
            if as_bool(cond(row)):
                return result(row)
        return otherwise(row) if otherwise is not None else None

    return run


def _case_simple(args: list[RowFunction], literals: list[Any]) -> RowFunction:
    subject = args[0]
    rest = args[1:]
    pairs = [(rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2)]
    otherwise = rest[-1] if len(rest) % 2 else None

    def run(row: Row) -> Any:
        value = subject(row)
        for candidate, result in pairs:
            if as_bool(binary_op("==", value, candidate(row))):
                return result(row)
        return otherwise(row) if otherwise is not None else None

    return run


def _nvl(args: list[RowFunction], literals: list[Any]) -> RowFunction:
    first, second = args

    def run(row: Row) -> Any:
        value = first(row)
        return second(row) if value is None else value

    return run


def _coalesce(args: list[RowFunction], literals: list[Any]) -> RowFunction:
    def run(row: Row) -> Any:
        for arg in args:
            value = arg(row)
            if value is not None:
                return value
        return None

    return run


def _with_literals(
    fn: Callable[..., Any], count: int
) -> Callable[[list[RowFunction], list[Any]], RowFunction]:
    """A function whose arguments after the first ``count`` are literals given at compile time."""

    def build(args: list[RowFunction], literals: list[Any]) -> RowFunction:
        evaluated = args[:count]
        constants = literals[count:]
        if count == 1:
            (only,) = evaluated
            return lambda row: fn(only(row), *constants)
        return lambda row: fn(*[arg(row) for arg in evaluated], *constants)

    return build


# scalar helpers -------------------------------------------------------------


def _str1(fn: Callable[[str], Any]) -> Callable[[Any], Any]:
    def run(value: Any) -> Any:
        text = to_string(value)
        return None if text is None else fn(text)

    return run


def cast_value(value: Any, type_name: str) -> Any:
    kind = type_name.upper()
    if kind.startswith("ARRAY<"):
        if value is None:
            return None
        element = kind[6:-1]
        items = value if isinstance(value, list) else [value]
        return [cast_value(item, element) for item in items]
    if isinstance(value, list):
        if len(value) != 1:
            raise EvalError(f"cannot cast an array of {len(value)} values to {kind}")
        value = value[0]
    if kind == "LONG":
        return to_long(value)
    if kind == "DOUBLE":
        return to_double(value)
    return to_string(value)


def _like(value: Any, pattern: str | None, escape: str | None = None) -> Any:
    text = to_string(value)
    if text is None or pattern is None:
        return 0
    return int(_like_regex(pattern, escape).fullmatch(text) is not None)


@lru_cache(maxsize=256)
def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    return v.like_regex(pattern, escape)


def _concat(*items: Any) -> Any:
    if not items:
        return None
    out: list[str] = []
    for item in items:
        text = to_string(item)
        if text is None:
            return None
        out.append(text)
    return "".join(out)


def _java_object_text(value: Any) -> str:
    return (
        "null" if value is None else (to_string(value) if not isinstance(value, list) else str(value)) or ""
    )


def _format(pattern: Any, *items: Any) -> Any:
    text = to_string(pattern)
    if text is None:
        return None
    try:
        return v.java_format(text, list(items))
    except EvalError:
        # Druid's StringUtils.nonStrictFormat: the pattern and the arguments, joined with "; "
        return "".join([text, *("; " + _java_object_text(item) for item in items)])


def regexp_extract(value: Any, pattern: str, index: int | None = None) -> Any:
    text = to_string(value)
    if text is None:
        return None
    match = v.java_regex(pattern).search(text)
    if match is None:
        return None
    group = index or 0
    if group > (match.re.groups or 0):
        raise EvalError(f"No group {group}")
    return match.group(group)


def regexp_like(value: Any, pattern: str) -> Any:
    text = to_string(value)
    if text is None:
        return 0
    return int(v.java_regex(pattern).search(text) is not None)


@lru_cache(maxsize=256)
def _java_replacement(replacement: str) -> str:
    """A Java ``Matcher`` replacement (``$1``, ``\\$``) as a Python ``re`` template."""
    out: list[str] = []
    index = 0
    while index < len(replacement):
        char = replacement[index]
        if char == "\\" and index + 1 < len(replacement):
            out.append(replacement[index + 1].replace("\\", "\\\\"))
            index += 2
        elif char == "$" and index + 1 < len(replacement) and replacement[index + 1].isdigit():
            end = index + 1
            while end < len(replacement) and replacement[end].isdigit():
                end += 1
            out.append(f"\\g<{replacement[index + 1 : end]}>")
            index = end
        else:
            out.append("\\\\" if char == "\\" else char)
            index += 1
    return "".join(out)


def _regexp_replace(value: Any, pattern: str, replacement: Any) -> Any:
    text = to_string(value)
    if text is None:
        return None
    template = to_string(replacement) or ""
    try:
        return v.java_regex(pattern).sub(_java_replacement(template), text)
    except (re.error, IndexError) as exc:
        raise EvalError(str(exc)) from None


def _contains(value: Any, needle: str, insensitive: bool) -> Any:
    text = to_string(value)
    if text is None:
        return 0
    if insensitive:
        return int(needle.lower() in text.lower())
    return int(needle in text)


def replace_text(value: Any, pattern: Any, replacement: Any) -> Any:
    text = to_string(value)
    target = to_string(pattern)
    substitute = to_string(replacement)
    if text is None or target is None or substitute is None:
        return None
    return text if target == "" else text.replace(target, substitute)


def substring(value: Any, index: Any, length: Any) -> Any:
    """``substring(expr, index, length)``: as ``SubstringDimExtractionFn`` (0-based; past the end: null)."""
    text = to_string(value)
    start = to_long(index)
    count = to_long(length)
    if text is None or start is None or count is None:
        return None
    if start < 0:
        raise EvalError(f"begin {start}, end {len(text)}, length {len(text)}")
    if start >= len(text):
        return None
    return text[start:] if count < 0 else text[start : start + count]


def _left_right(value: Any, length: Any, right: bool) -> Any:
    count = to_long(length)
    text = to_string(value)
    if count is None or text is None:
        return None
    if count < 0:
        raise EvalError(
            f"Function[{'right' if right else 'left'}] needs a positive integer as the second argument"
        )
    if right:
        return text[len(text) - min(len(text), count) :]
    return text[:count]


def _strpos(haystack: Any, needle: Any, start: Any = 0) -> Any:
    text, target = to_string(haystack), to_string(needle)
    offset = to_long(start)
    if text is None or target is None:
        return None
    return text.find(target, max(0, offset or 0))


def trim_text(value: Any, chars: Any = " ", mode: str = "both") -> Any:
    text, strip = to_string(value), to_string(chars)
    if text is None or strip is None:
        return None
    if mode == "left":
        return text.lstrip(strip) if strip else text
    if mode == "right":
        return text.rstrip(strip) if strip else text
    return text.strip(strip) if strip else text


def _repeat(value: Any, times: Any) -> Any:
    text, count = to_string(value), to_long(times)
    if text is None or count is None or count < 1:
        return None
    return text * count


def _pad(value: Any, length: Any, chars: Any, left: bool) -> Any:
    text, size, pad = to_string(value), to_long(length), to_string(chars)
    if text is None or size is None or pad is None:
        return None
    if size <= 0:
        return ""
    if size <= len(text) or not pad:
        return text[:size]
    fill = (pad * (size // len(pad) + 1))[: size - len(text)]
    return fill + text if left else text + fill


def _parse_long(value: Any, radix: Any = 10) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EvalError("parse_long needs a string argument")
    base = to_long(radix) or 10
    text = value[2:] if base == 16 and value[:2] in ("0x", "0X") else value
    try:
        number = int(text, base)
    except ValueError:
        return None
    return number if -(2**63) <= number < 2**63 else None


# time -------------------------------------------------------------------------


def _zone(text: str | None) -> tzinfo:
    return UTC if text is None else v.parse_zone(text)


def _origin(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return v.parse_iso(str(value))


def _timestamp(value: Any, pattern: str | None = None) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EvalError(
            f"timestamp: the first argument should be a string but got {value_type(value)} instead"
        )
    ms = v.parse_iso(value, strict=True) if pattern is None else v.parse_time(value, pattern, UTC)
    if ms is None:
        raise EvalError(f"invalid value {value}")
    return ms


def _unix_timestamp(value: Any, pattern: str | None = None) -> Any:
    ms = _timestamp(value, pattern)
    return ms // 1000 if ms >= 0 else -((-ms) // 1000)


def timestamp_parse(value: Any, pattern: str | None = None, zone: str | None = None) -> Any:
    text = to_string(value)
    if text is None:
        return None
    tz = _zone(zone)
    if pattern is None:
        return v.parse_iso(text, tz)
    return v.parse_time(text, pattern, tz)


def timestamp_format(value: Any, pattern: str | None = None, zone: str | None = None) -> Any:
    ms = to_long(value)
    if ms is None:
        return None
    return v.format_time(ms, pattern, _zone(zone))


def timestamp_floor(value: Any, period: str, origin: Any = None, zone: str | None = None) -> Any:
    ms = to_long(value)
    if ms is None:
        return None
    return v.floor_time(ms, v.parse_period(period), _origin(origin), _zone(zone))


def timestamp_ceil(value: Any, period: str, origin: Any = None, zone: str | None = None) -> Any:
    ms = to_long(value)
    if ms is None:
        return None
    parsed = v.parse_period(period)
    tz = _zone(zone)
    start = v.floor_time(ms, parsed, _origin(origin), tz)
    return ms if start == ms else v.shift_time(start, parsed, 1, tz)


def timestamp_shift(value: Any, period: str, step: Any, zone: str | None = None) -> Any:
    ms, count = to_long(value), to_long(step)
    if ms is None or count is None:
        return None
    return v.shift_time(ms, v.parse_period(period), count, _zone(zone))


def timestamp_extract(value: Any, unit: str, zone: str | None = None) -> Any:
    ms = to_long(value)
    if ms is None:
        return None
    return v.extract_time(ms, unit.upper(), _zone(zone))


# math ---------------------------------------------------------------------------


def _abs(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, int):
        return v.wrap64(abs(value))
    number = to_double(value)
    return None if number is None else abs(number)


def _double1(name: str) -> Callable[[Any], Any]:
    fn = v.java_math(name)

    def run(value: Any) -> Any:
        number = to_double(value)
        return None if number is None else fn(number)

    return run


def _double2(fn: Callable[[float, float], float]) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        x, y = to_double(a), to_double(b)
        if x is None or y is None:
            return None
        return fn(x, y)

    return run


def _hypot(x: float, y: float) -> float:
    return math.hypot(x, y)


def _remainder(x: float, y: float) -> float:
    if y == 0 or math.isinf(x) or math.isnan(x) or math.isnan(y):
        return math.nan
    return x if math.isinf(y) else math.remainder(x, y)


def _div(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if value_type(a) == "LONG" and value_type(b) == "LONG":
        return v.java_div(a, b)
    x, y = to_double(a), to_double(b)
    if x is None or y is None:
        return None
    return v.double_to_long(v.java_double_div(x, y))


def _min_max(pick_max: bool) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        if value_type(a) == "LONG" and value_type(b) == "LONG":
            return max(a, b) if pick_max else min(a, b)
        x, y = to_double(a), to_double(b)
        if x is None or y is None:
            return None
        if math.isnan(x) or math.isnan(y):
            return math.nan
        return max(x, y) if pick_max else min(x, y)

    return run


def _round(value: Any, scale: Any = 0) -> Any:
    if value is None:
        return None
    if value_type(value) not in ("LONG", "DOUBLE"):
        raise EvalError(
            "The first argument to the function[round] should be integer or double type "
            f"but got the type: {value_type(value)}"
        )
    if scale is None or value_type(scale) != "LONG":
        raise EvalError("The second argument to the function[round] should be integer type")
    return v.round_value(value, scale)


def _safe_divide(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if value_type(a) == "LONG" and value_type(b) == "LONG":
        return None if b == 0 else v.java_div(a, b)
    x, y = to_double(a), to_double(b)
    if x is None or y is None or y == 0:
        return None
    return x / y


def _reduce(pick_max: bool) -> Callable[..., Any]:
    """greatest/least (docs: "Reduction functions"): nulls ignored; strings win over numbers,
    doubles over longs; a NaN wins (``Math.max``)."""

    def run(*items: Any) -> Any:
        present = [item for item in items if item is not None]
        if not present:
            return None
        kinds = {value_type(item) for item in present}
        if kinds - {"LONG", "DOUBLE", "STRING"}:
            raise EvalError("greatest/least take scalar arguments")
        if "STRING" in kinds:
            texts = [to_string(item) for item in present]
            return max(texts) if pick_max else min(texts)  # type: ignore[type-var]
        if "DOUBLE" in kinds:
            numbers = [float(item) for item in present]
            if any(math.isnan(number) for number in numbers):
                return math.nan
            return max(numbers) if pick_max else min(numbers)
        return max(present) if pick_max else min(present)

    return run


def _bitwise(op: Callable[[int, int], int]) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        x, y = to_long(a), to_long(b)
        if x is None or y is None:
            return None
        return v.wrap64(op(x, y))

    return run


def _complement(value: Any) -> Any:
    x = to_long(value)
    return None if x is None else ~x


# arrays -------------------------------------------------------------------------


def _as_array(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


def _array(*items: Any) -> Any:
    kind = value_type(items[0]) if items else None
    if kind == "LONG":
        return [to_long(item) for item in items]
    if kind == "DOUBLE":
        return [to_double(item) for item in items]
    if kind == "STRING":
        return [to_string(item) for item in items]
    return list(items)


def _element(items: list[Any], value: Any) -> Any:
    """``value`` converted to the element type of ``items`` (for comparisons)."""
    kinds = {value_type(item) for item in items if item is not None}
    if kinds == {"LONG"}:
        return to_long(value) if value_type(value) != "DOUBLE" else value
    if kinds <= {"LONG", "DOUBLE"} and kinds:
        return to_double(value)
    if kinds == {"STRING"}:
        return to_string(value)
    return value


def _array_length(value: Any) -> Any:
    items = _as_array(value)
    return None if items is None else len(items)


def _array_at(base: int) -> Callable[[Any, Any], Any]:
    def run(value: Any, position: Any) -> Any:
        items, index = _as_array(value), to_long(position)
        if items is None or index is None:
            return None
        index -= base
        return items[index] if 0 <= index < len(items) else None

    return run


def _array_contains(value: Any, wanted: Any) -> Any:
    items = _as_array(value)
    if items is None:
        return None
    targets = _as_array(wanted) or [None]
    return int(all(_element(items, target) in items for target in targets))


def _array_overlap(a: Any, b: Any) -> Any:
    left, right = _as_array(a), _as_array(b)
    if left is None or right is None:
        return None
    return int(any(_element(left, item) in left for item in right))


def _scalar_in_array(value: Any, array: Any) -> Any:
    items = _as_array(array)
    if value is None:
        return None
    if items is None:
        return None
    return int(_element(items, value) in items)


def _array_index_of(base: int) -> Callable[[Any, Any], Any]:
    def run(value: Any, wanted: Any) -> Any:
        items = _as_array(value)
        if items is None:
            return None
        target = _element(items, wanted)
        for index, item in enumerate(items):
            if item == target and item is not None:
                return index + base
        return None

    return run


def _array_prepend(item: Any, array: Any) -> Any:
    items = _as_array(array)
    return None if items is None else [_element(items, item) if items else item, *items]


def _array_append(array: Any, item: Any) -> Any:
    items = _as_array(array)
    return None if items is None else [*items, _element(items, item) if items else item]


def _array_concat(a: Any, b: Any) -> Any:
    left, right = _as_array(a), _as_array(b)
    if left is None or right is None:
        return None
    return [*left, *(_element(left, item) if left else item for item in right)]


def _array_slice(array: Any, start: Any, end: Any = None) -> Any:
    items, first = _as_array(array), to_long(start)
    if items is None or first is None:
        return None
    last = len(items) if end is None else to_long(end)
    if last is None or first < 0 or first > len(items) or last < first:
        return None
    return items[first:last]


def _array_to_string(array: Any, delimiter: Any) -> Any:
    items, join = _as_array(array), to_string(delimiter)
    if items is None or join is None:
        return None
    return join.join("null" if item is None else to_string(item) or "" for item in items)


def _string_to_array(value: Any, delimiter: Any) -> Any:
    text, pattern = to_string(value), to_string(delimiter)
    if text is None or pattern is None:
        return None
    parts = v.java_regex(pattern).split(text) if pattern else list(text)
    while parts and parts[-1] == "":  # Java's String.split drops trailing empty strings
        parts.pop()
    return parts if parts else [""] if text == "" else parts


# json ---------------------------------------------------------------------------


def json_scalar(found: Any) -> Any:
    """A value found in JSON as a Druid literal: objects are null, lists of scalars are arrays."""
    if isinstance(found, dict):
        return None
    if isinstance(found, list):
        if any(isinstance(item, dict | list) for item in found):
            return None
        return [normalize_input(item) for item in found]
    return normalize_input(found)


def json_value(value: Any, path: str, type_name: str | None = None) -> Any:
    parts = parse_json_path(path)
    if isinstance(value, str) and parts:
        return None
    found = json_scalar(find(value, parts))
    return found if type_name is None else cast_value(found, type_name)


def json_query(value: Any, path: str) -> Any:
    return find(value, parse_json_path(path))


def _parse_json(value: Any, lenient: bool = False) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        if lenient:
            return None
        raise EvalError("parse_json needs a string argument")
    try:
        return json.loads(value)
    except ValueError as exc:
        if lenient:
            return None
        raise EvalError(f"Bad string input: {exc}") from None


def _to_json_string(value: Any) -> Any:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def _json_object(*items: Any) -> Any:
    if len(items) % 2:
        raise EvalError("json_object needs key and value pairs")
    out: dict[str, Any] = {}
    for index in range(0, len(items), 2):
        key = to_string(items[index])
        if key is None:
            raise EvalError("json_object keys must not be null")
        out[key] = items[index + 1]
    return out


def _json_keys(value: Any, path: str) -> Any:
    found = find(value, parse_json_path(path))
    if isinstance(found, dict):
        return list(found)
    return None


_SCALAR: dict[str, Callable[..., Any]] = {
    "isnull": lambda x: int(x is None),
    "notnull": lambda x: int(x is not None),
    "concat": _concat,
    "format": _format,
    "replace": replace_text,
    "substring": substring,
    "right": lambda s, n: _left_right(s, n, True),
    "left": lambda s, n: _left_right(s, n, False),
    "strlen": _str1(v.utf16_length),
    "strpos": _strpos,
    "trim": lambda s, c=" ": trim_text(s, c, "both"),
    "ltrim": lambda s, c=" ": trim_text(s, c, "left"),
    "rtrim": lambda s, c=" ": trim_text(s, c, "right"),
    "lower": _str1(v.java_lower),
    "upper": _str1(v.java_upper),
    "reverse": _str1(lambda s: s[::-1]),
    "repeat": _repeat,
    "lpad": lambda s, n, c: _pad(s, n, c, True),
    "rpad": lambda s, n, c: _pad(s, n, c, False),
    "parse_long": _parse_long,
    "abs": _abs,
    **{name: _double1(name) for name in v.DOUBLE_MATH_FUNCTIONS},
    "atan2": _double2(math.atan2),
    "copysign": _double2(math.copysign),
    "hypot": _double2(_hypot),
    "remainder": _double2(_remainder),
    "pow": _double2(v.java_pow),
    "div": _div,
    "max": _min_max(True),
    "min": _min_max(False),
    "round": _round,
    "safe_divide": _safe_divide,
    "pi": lambda: math.pi,
    "greatest": _reduce(True),
    "least": _reduce(False),
    "bitwiseand": _bitwise(lambda a, b: a & b),
    "bitwiseor": _bitwise(lambda a, b: a | b),
    "bitwisexor": _bitwise(lambda a, b: a ^ b),
    "bitwiseshiftleft": _bitwise(lambda a, b: a << (b & 63)),
    "bitwiseshiftright": _bitwise(lambda a, b: a >> (b & 63)),
    "bitwisecomplement": _complement,
    "array": _array,
    "array_length": _array_length,
    "array_offset": _array_at(0),
    "array_ordinal": _array_at(1),
    "array_contains": _array_contains,
    "array_overlap": _array_overlap,
    "scalar_in_array": _scalar_in_array,
    "array_offset_of": _array_index_of(0),
    "array_ordinal_of": _array_index_of(1),
    "array_prepend": _array_prepend,
    "array_append": _array_append,
    "array_concat": _array_concat,
    "array_slice": _array_slice,
    "array_to_string": _array_to_string,
    "string_to_array": _string_to_array,
    "parse_json": _parse_json,
    "try_parse_json": lambda x: _parse_json(x, lenient=True),
    "to_json_string": _to_json_string,
    "json_object": _json_object,
}

_SPECIAL: dict[str, Callable[[list[RowFunction], list[Any]], RowFunction]] = {
    "if": _lazy_if,
    "case_searched": _case_searched,
    "case_simple": _case_simple,
    "nvl": _nvl,
    "coalesce": _coalesce,
    "cast": _with_literals(cast_value, 1),
    "like": _with_literals(_like, 1),
    "regexp_extract": _with_literals(regexp_extract, 1),
    "regexp_like": _with_literals(regexp_like, 1),
    "regexp_replace": lambda args, lits: lambda row: _regexp_replace(args[0](row), lits[1], args[2](row)),
    "contains_string": _with_literals(lambda s, n: _contains(s, n, False), 1),
    "icontains_string": _with_literals(lambda s, n: _contains(s, n, True), 1),
    "timestamp": _with_literals(_timestamp, 1),
    "unix_timestamp": _with_literals(_unix_timestamp, 1),
    "timestamp_parse": _with_literals(timestamp_parse, 1),
    "timestamp_format": _with_literals(timestamp_format, 1),
    "timestamp_floor": _with_literals(timestamp_floor, 1),
    "timestamp_ceil": _with_literals(timestamp_ceil, 1),
    "timestamp_extract": _with_literals(timestamp_extract, 1),
    "timestamp_shift": lambda args, lits: (
        lambda row: timestamp_shift(args[0](row), lits[1], args[2](row), *lits[3:])
    ),
    "json_value": _with_literals(json_value, 1),
    "json_query": _with_literals(json_query, 1),
    "json_keys": _with_literals(_json_keys, 1),
}

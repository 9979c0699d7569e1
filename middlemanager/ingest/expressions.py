"""The columnar evaluator of Druid expressions: a whole batch at a time over Arrow arrays.

Agrees with the per-row evaluator (``supervisor.expressions.evaluate``, the reference)
on every value: operators, comparisons, logic, ``if``/``case``/``nvl``/``coalesce``,
casts, ``concat``, the common string functions, fixed-period time functions in UTC and
the math functions run as Arrow (``pyarrow.compute``) or numpy kernels. A function
whose arguments but one are literals (regular expressions, ``format``, time patterns,
``round``...) is computed once per *distinct* value of that argument with the
reference implementation itself, and the results mapped back. Anything else raises
:class:`NotColumnar` and :func:`evaluate` falls back to the row evaluator for the batch
(for example arrays and JSON functions, time zones other than UTC, a long division by
zero, which fails the rows that hold it).

Semantics are documented in ``supervisor.expressions``; references: docs/querying/math-expr.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from supervisor.expressions import values as v
from supervisor.expressions.ast import ArrayLiteral, Binary, Call, Expr, Identifier, Literal, Unary
from supervisor.expressions.evaluate import compile_row, normalize_input
from supervisor.expressions.values import EvalError

__all__ = ["Columns", "NotColumnar", "evaluate", "evaluate_columnar", "result_array", "row_values", "truth"]

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1


class NotColumnar(Exception):
    """The expression (or these values) cannot be computed on columns: use the row evaluator."""


@dataclass(frozen=True, slots=True)
class _Col:
    kind: str  # LONG, DOUBLE, STRING, NULL (every value null, no type)
    data: pa.Array


_KINDS = {"LONG": pa.int64(), "DOUBLE": pa.float64(), "STRING": pa.string(), "NULL": pa.null()}


def _input(array: pa.Array | pa.ChunkedArray | None, n: int) -> _Col:
    if array is None:
        return _Col("NULL", pa.nulls(n))
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if array.null_count == len(array):
        return _Col("NULL", pa.nulls(n))
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        if pa.types.is_uint64(kind):
            raise NotColumnar("unsigned 64-bit column")
        return _Col("LONG", pc.cast(array, pa.int64()))
    if pa.types.is_floating(kind):
        return _Col("DOUBLE", pc.cast(array, pa.float64()))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _Col("STRING", pc.cast(array, pa.string()))
    if pa.types.is_timestamp(kind):
        return _Col("LONG", pc.cast(pc.cast(array, pa.timestamp("ms")), pa.int64()))
    raise NotColumnar(f"column type {kind}")


def _const(value: Any, n: int) -> _Col:
    if value is None:
        return _Col("NULL", pa.nulls(n))
    if isinstance(value, bool | int):
        return _Col("LONG", pa.array(np.full(n, int(value), dtype=np.int64)))
    if isinstance(value, float):
        return _Col("DOUBLE", pa.array(np.full(n, value, dtype=np.float64)))
    if isinstance(value, str):
        return _Col("STRING", pa.array([value] * n, type=pa.string()))
    raise NotColumnar("array constant")


def _typed(col: _Col, kind: str) -> pa.Array:
    """The column's data with the type of ``kind`` (a NULL column becomes typed nulls)."""
    if col.kind == "NULL":
        return pa.nulls(len(col.data), type=_KINDS[kind])
    return col.data


def _map_unique(array: pa.Array, fn: Callable[[Any], Any]) -> _Col:
    """``fn`` applied once per distinct value (and once to null), mapped back to every row."""
    n = len(array)
    if n == 0:
        return _Col("NULL", pa.nulls(0))
    encoded = pc.dictionary_encode(array)
    distinct = encoded.dictionary.to_pylist()
    try:
        results = [fn(value) for value in distinct]
        null_result = fn(None) if encoded.null_count else None
    except (EvalError, ValueError, OverflowError, TypeError) as exc:
        raise NotColumnar(str(exc)) from None
    kind = _result_kind([*results, null_result])
    if kind == "NULL":
        return _Col("NULL", pa.nulls(n))
    mapped = pa.array(results, type=_KINDS[kind]).take(encoded.indices)
    if encoded.null_count and null_result is not None:
        mapped = pc.fill_null(mapped, pa.scalar(null_result, type=_KINDS[kind]))
    return _Col(kind, mapped)


def _result_kind(results: Sequence[Any]) -> str:
    kinds = {str(v.value_type(result)) for result in results if result is not None}
    if not kinds:
        return "NULL"
    if len(kinds) > 1 or kinds & {"ARRAY", "COMPLEX"}:
        raise NotColumnar("results of several types")
    return kinds.pop()


# ------------------------------------------------------------------ conversions


def _to_double(col: _Col) -> _Col:
    if col.kind == "DOUBLE" or col.kind == "NULL":
        return col
    if col.kind == "LONG":
        return _Col("DOUBLE", pc.cast(col.data, pa.float64()))
    converted = _map_unique(col.data, v.to_double)
    return converted if converted.kind != "NULL" else _Col("NULL", converted.data)


def _double_to_long(array: pa.Array) -> pa.Array:
    values = array.to_numpy(zero_copy_only=False)
    valid = pc.is_valid(array).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        clean = np.where(np.isnan(values), 0.0, values)
        high = clean >= 9.223372036854775807e18
        low = clean <= -9.223372036854775808e18
        middle = np.where(high | low, 0.0, clean)
        out = np.trunc(middle).astype(np.int64)
    out = np.where(high, _LONG_MAX, np.where(low, _LONG_MIN, out))
    return pa.array(out, mask=~valid)


def _to_long(col: _Col) -> _Col:
    if col.kind in ("LONG", "NULL"):
        return col
    if col.kind == "DOUBLE":
        return _Col("LONG", _double_to_long(col.data))
    return _map_unique(col.data, v.to_long)


def _to_string(col: _Col) -> _Col:
    if col.kind in ("STRING", "NULL"):
        return col
    if col.kind == "LONG":
        return _Col("STRING", pc.cast(col.data, pa.string()))
    return _map_unique(col.data, v.to_string)


def _as_bool(col: _Col) -> pa.Array:
    """``asBoolean`` keeping nulls (for Kleene logic)."""
    if col.kind == "NULL":
        return pa.nulls(len(col.data), type=pa.bool_())
    if col.kind in ("LONG", "DOUBLE"):
        return pc.greater(col.data, 0)
    return pc.equal(_lower(col.data), "true")


def _bool_long(array: pa.Array) -> _Col:
    return _Col("LONG", pc.cast(array, pa.int64()))


def _all_ascii(array: pa.Array) -> bool:
    return array.null_count == len(array) or bool(pc.all(pc.string_is_ascii(array)).as_py())


def _lower(array: pa.Array) -> pa.Array:
    if _all_ascii(array):
        return pc.ascii_lower(array)
    return _map_unique(array, lambda s: None if s is None else v.java_lower(s)).data


# ------------------------------------------------------------------ evaluation


class _Evaluator:
    def __init__(self, columns: Mapping[str, pa.Array | pa.ChunkedArray | None], n: int) -> None:
        self.columns = columns
        self.n = n
        self._inputs: dict[str, _Col] = {}

    def eval(self, expr: Expr) -> _Col:
        if isinstance(expr, Literal):
            return _const(expr.value, self.n)
        if isinstance(expr, ArrayLiteral):
            raise NotColumnar("array literal")
        if isinstance(expr, Identifier):
            if expr.name in self.columns and self.columns[expr.name] is None:
                raise NotColumnar(f"column {expr.name} holds values of several types")
            col = self._inputs.get(expr.name)
            if col is None:
                col = self._inputs[expr.name] = _input(self.columns.get(expr.name), self.n)
            return col
        if isinstance(expr, Unary):
            return self.unary(expr)
        if isinstance(expr, Binary):
            return self.binary(expr)
        return self.call(expr)

    def unary(self, expr: Unary) -> _Col:
        operand = self.eval(expr.operand)
        if operand.kind == "NULL":
            return operand
        if expr.op == "!":
            return _bool_long(pc.invert(_as_bool(operand)))
        if operand.kind == "STRING":
            raise NotColumnar("unary minus on strings fails")
        return _Col(operand.kind, pc.negate(operand.data))

    def binary(self, expr: Binary) -> _Col:
        return self.binary_cols(expr.op, self.eval(expr.left), self.eval(expr.right))

    def binary_cols(self, op: str, left: _Col, right: _Col) -> _Col:
        if op in ("&&", "||"):
            combine = pc.and_kleene if op == "&&" else pc.or_kleene
            return _bool_long(combine(_as_bool(left), _as_bool(right)))
        if left.kind == "NULL" or right.kind == "NULL":
            return _Col("NULL", pa.nulls(self.n))
        compare = _COMPARE.get(op)
        if left.kind == "STRING" and right.kind == "STRING":
            if compare is not None:
                return _bool_long(compare(left.data, right.data))
            if op == "+":
                return _Col("STRING", pc.binary_join_element_wise(left.data, right.data, ""))
            raise NotColumnar(f"operator {op} on strings fails")
        if left.kind == "LONG" and right.kind == "LONG":
            if compare is not None:
                return _bool_long(compare(left.data, right.data))
            return _Col("LONG", _long_arith(op, left.data, right.data))
        x, y = _to_double(left), _to_double(right)
        if x.kind == "NULL" or y.kind == "NULL":
            return _Col("NULL", pa.nulls(self.n))
        if compare is not None:
            return _bool_long(compare(x.data, y.data))
        return _Col("DOUBLE", _double_arith(op, x.data, y.data))

    def call(self, expr: Call) -> _Col:
        native = _NATIVE.get(expr.name)
        if native is not None:
            result = native(self, expr)
            if result is not None:
                return result
        return self.per_distinct(expr)

    def per_distinct(self, expr: Call) -> _Col:
        """A call whose arguments but one are literals: the reference function per distinct value."""
        varying = [index for index, arg in enumerate(expr.args) if not isinstance(arg, Literal)]
        if len(varying) > 1:
            raise NotColumnar(f"{expr.name} with {len(varying)} non-literal arguments")
        if expr.name in _NOT_PER_VALUE:
            raise NotColumnar(expr.name)
        if not varying:
            try:
                value = compile_row(expr)({})
            except (EvalError, ValueError, OverflowError, TypeError) as exc:
                raise NotColumnar(str(exc)) from None
            return _const_result(value, self.n)
        index = varying[0]
        placeholder = Identifier("\x00arg")
        args = tuple(placeholder if i == index else arg for i, arg in enumerate(expr.args))
        row_fn = compile_row(Call(expr.name, args, expr.pos))
        arg = self.eval(expr.args[index])
        return _map_unique(arg.data, lambda value: row_fn({"\x00arg": value}))


def _const_result(value: Any, n: int) -> _Col:
    if isinstance(value, list | dict):
        raise NotColumnar("array result")
    try:
        return _const(value, n)
    except EvalError as exc:
        raise NotColumnar(str(exc)) from None


# Functions whose value depends on more than one argument or on evaluation order: never per value.
_NOT_PER_VALUE = frozenset(("if", "case_searched", "case_simple", "nvl", "coalesce", "array", "json_object"))

_COMPARE: dict[str, Callable[[pa.Array, pa.Array], pa.Array]] = {
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
    "==": pc.equal,
    "!=": pc.not_equal,
}


def _np(array: pa.Array, fill: Any) -> np.ndarray[Any, Any]:
    return array.fill_null(fill).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _long_arith(op: str, a: pa.Array, b: pa.Array) -> pa.Array:
    if op == "+":
        return pc.add(a, b)
    if op == "-":
        return pc.subtract(a, b)
    if op == "*":
        return pc.multiply(a, b)
    valid = pc.and_(pc.is_valid(a), pc.is_valid(b))
    if op in ("/", "%"):
        if pc.any(pc.and_(valid, pc.equal(b, 0))).as_py():
            raise NotColumnar("/ by zero")  # the row evaluator fails those rows
        x, y = _np(a, 0), _np(b, 1)
        with np.errstate(over="ignore"):
            quotient = np.where((x == _LONG_MIN) & (y == -1), _LONG_MIN, np.fix(x / y).astype(np.int64))
            exact = (np.abs(x) < 2**52) & (np.abs(y) < 2**52)
            if not exact.all():
                raise NotColumnar("integer division of large longs")
            out = quotient if op == "/" else x - quotient * y
        return pa.array(out, mask=~valid.to_numpy(zero_copy_only=False))
    # ^: LongMath.pow (wrapping); negative exponents fail
    if pc.any(pc.and_(valid, pc.less(b, 0))).as_py():
        raise NotColumnar("negative exponent")
    x, y = _np(a, 0), _np(b, 0)
    if (y > 10_000).any():
        raise NotColumnar("large exponent")
    with np.errstate(over="ignore"):
        out = np.power(x, y)
    return pa.array(out, mask=~valid.to_numpy(zero_copy_only=False))


def _double_arith(op: str, a: pa.Array, b: pa.Array) -> pa.Array:
    if op == "+":
        return pc.add(a, b)
    if op == "-":
        return pc.subtract(a, b)
    if op == "*":
        return pc.multiply(a, b)
    valid = pc.and_(pc.is_valid(a), pc.is_valid(b)).to_numpy(zero_copy_only=False)
    x, y = _np(a, 0.0), _np(b, 1.0)
    with np.errstate(all="ignore"):
        if op == "/":
            out = np.divide(x, y)
        elif op == "%":
            out = np.fmod(x, y)
            out = np.where(np.isinf(y) & np.isfinite(x), x, out)
        else:
            out = _np_pow(x, y)
    return pa.array(out, mask=~valid)


def _np_pow(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``Math.pow`` element-wise (IEEE: NaN for a negative base and a fractional exponent)."""
    return np.power(x, y)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ native functions


Native = Callable[[_Evaluator, Call], "_Col | None"]


def _same_kind(cols: list[_Col], n: int) -> list[pa.Array] | None:
    kinds = {col.kind for col in cols} - {"NULL"}
    if len(kinds) > 1:
        return None  # per row, the value keeps the type of its branch: the row evaluator decides
    kind = kinds.pop() if kinds else "NULL"
    return [_typed(col, kind) if kind != "NULL" else pa.nulls(n) for col in cols]


def _if(ev: _Evaluator, call: Call) -> _Col:
    cond, then, otherwise = (ev.eval(arg) for arg in call.args)
    arrays = _same_kind([then, otherwise], ev.n)
    if arrays is None:
        raise NotColumnar("branches of different types")
    kind = then.kind if then.kind != "NULL" else otherwise.kind
    if kind == "NULL":
        return _Col("NULL", pa.nulls(ev.n))
    return _Col(kind, pc.if_else(pc.fill_null(_as_bool(cond), False), arrays[0], arrays[1]))


def _case(ev: _Evaluator, call: Call, simple: bool) -> _Col:
    args = list(call.args)
    subject = ev.eval(args.pop(0)) if simple else None
    otherwise = ev.eval(args.pop()) if len(args) % 2 else _Col("NULL", pa.nulls(ev.n))
    conditions: list[pa.Array] = []
    results: list[_Col] = []
    for index in range(0, len(args), 2):
        cond = ev.eval(args[index])
        if subject is not None:
            cond = ev.binary_cols("==", subject, cond)
        conditions.append(pc.fill_null(_as_bool(cond), False))
        results.append(ev.eval(args[index + 1]))
    arrays = _same_kind([*results, otherwise], ev.n)
    if arrays is None:
        raise NotColumnar("results of different types")
    kinds = {col.kind for col in [*results, otherwise]} - {"NULL"}
    if not kinds:
        return _Col("NULL", pa.nulls(ev.n))
    out = arrays[-1]
    for cond, array in zip(reversed(conditions), reversed(arrays[:-1]), strict=True):
        out = pc.if_else(cond, array, out)
    return _Col(kinds.pop(), out)


def _coalesce(ev: _Evaluator, call: Call) -> _Col:
    cols = [ev.eval(arg) for arg in call.args]
    arrays = _same_kind(cols, ev.n)
    if arrays is None:
        raise NotColumnar("arguments of different types")
    kinds = {col.kind for col in cols} - {"NULL"}
    if not kinds:
        return _Col("NULL", pa.nulls(ev.n))
    return _Col(kinds.pop(), pc.coalesce(*arrays))


def _isnull(negate: bool) -> Native:
    def run(ev: _Evaluator, call: Call) -> _Col:
        col = ev.eval(call.args[0])
        return _bool_long(pc.is_valid(col.data) if negate else pc.is_null(col.data))

    return run


def _cast(ev: _Evaluator, call: Call) -> _Col | None:
    kind = str(call.args[1].value).upper()  # type: ignore[union-attr]
    col = ev.eval(call.args[0])
    if kind == "LONG":
        return _to_long(col)
    if kind == "DOUBLE":
        return _to_double(col)
    if kind == "STRING":
        return _to_string(col)
    raise NotColumnar("cast to an array")


def _concat(ev: _Evaluator, call: Call) -> _Col:
    if not call.args:
        return _Col("NULL", pa.nulls(ev.n))
    cols = [_to_string(ev.eval(arg)) for arg in call.args]
    if any(col.kind == "NULL" for col in cols):
        return _Col("NULL", pa.nulls(ev.n))
    if len(cols) == 1:
        return cols[0]
    return _Col("STRING", pc.binary_join_element_wise(*[col.data for col in cols], ""))


def _string_fn(ascii_kernel: Callable[[pa.Array], pa.Array], fn: Callable[[str], Any]) -> Native:
    def run(ev: _Evaluator, call: Call) -> _Col | None:
        col = _to_string(ev.eval(call.args[0]))
        if col.kind == "NULL":
            return col
        if _all_ascii(col.data):
            result = ascii_kernel(col.data)
            return _Col("LONG" if pa.types.is_integer(result.type) else "STRING", _cast_int(result))
        return _map_unique(col.data, lambda s: None if s is None else fn(s))

    return run


def _cast_int(array: pa.Array) -> pa.Array:
    return pc.cast(array, pa.int64()) if pa.types.is_integer(array.type) else array


def _literal_args(call: Call, start: int) -> list[Any] | None:
    out: list[Any] = []
    for arg in call.args[start:]:
        if not isinstance(arg, Literal):
            return None
        out.append(arg.value)
    return out


def _substring(ev: _Evaluator, call: Call) -> _Col | None:
    literals = _literal_args(call, 1)
    if literals is None or not all(isinstance(x, int) for x in literals):
        return None
    start, count = literals
    col = _to_string(ev.eval(call.args[0]))
    if col.kind == "NULL":
        return col
    if start < 0:
        raise NotColumnar("negative substring index")
    stop = None if count < 0 else start + count
    sliced = (
        pc.utf8_slice_codeunits(col.data, start=start, stop=stop) if stop is None or stop > start else None
    )
    length = pc.utf8_length(col.data)
    past_end = pc.greater_equal(length, start)  # null where the input is null
    empty = pa.array([""] * ev.n, type=pa.string())
    kept = sliced if sliced is not None else empty
    return _Col("STRING", pc.if_else(pc.invert(past_end), pa.scalar(None, pa.string()), kept))


def _replace(ev: _Evaluator, call: Call) -> _Col | None:
    literals = _literal_args(call, 1)
    if literals is None or not all(isinstance(x, str) for x in literals):
        return None
    pattern, replacement = literals
    col = _to_string(ev.eval(call.args[0]))
    if col.kind == "NULL" or pattern == "":
        return col
    return _Col("STRING", pc.replace_substring(col.data, pattern, replacement))


def _trim(kernel: Callable[..., pa.Array]) -> Native:
    def run(ev: _Evaluator, call: Call) -> _Col | None:
        literals = _literal_args(call, 1)
        if literals is None:
            return None
        chars = literals[0] if literals else " "
        if not isinstance(chars, str):
            return None
        col = _to_string(ev.eval(call.args[0]))
        if col.kind == "NULL" or chars == "":
            return col
        return _Col("STRING", kernel(col.data, characters=chars))

    return run


# time -----------------------------------------------------------------------------


def _utc_args(call: Call, zone_index: int) -> bool:
    if len(call.args) <= zone_index:
        return True
    zone = call.args[zone_index]
    return isinstance(zone, Literal) and (zone.value is None or v.parse_zone(str(zone.value)) is UTC)


def _floor_ms(values: pa.Array, period: v.Period, origin: int | None) -> pa.Array | None:
    fields = period.fields()
    fixed = period.fixed_ms
    if fixed is None and len(fields) == 1 and fields[0][0] in ("days", "weeks"):
        name, count = fields[0]
        fixed = count * 86_400_000 * (7 if name == "weeks" else 1)
        if origin is None and name == "weeks" and count == 1:
            origin = 4 * 86_400_000  # Joda weeks start on Monday; 1970-01-05 was one
    if fixed is None:
        return None
    base = origin or 0
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    ms = _np(values, 0)
    out = ms - np.mod(ms - base, fixed)
    return pa.array(out, mask=~valid)


def _timestamp_floor(ceil: bool) -> Native:
    def run(ev: _Evaluator, call: Call) -> _Col | None:
        if not _utc_args(call, 3):
            return None
        period = v.parse_period(str(call.args[1].value))  # type: ignore[union-attr]
        origin_arg = call.args[2] if len(call.args) > 2 else None
        origin = None
        if origin_arg is not None:
            if not isinstance(origin_arg, Literal):
                return None
            origin = (
                origin_arg.value
                if isinstance(origin_arg.value, int)
                else (None if origin_arg.value is None else v.parse_iso(str(origin_arg.value)))
            )
        col = _to_long(ev.eval(call.args[0]))
        if col.kind == "NULL":
            return col
        floored = _floor_ms(col.data, period, origin)
        if floored is None:
            return None
        if not ceil:
            return _Col("LONG", floored)
        step = period.fixed_ms
        if step is None:
            return None
        return _Col("LONG", pc.if_else(pc.equal(floored, col.data), col.data, pc.add(floored, step)))

    return run


def _timestamp_shift(ev: _Evaluator, call: Call) -> _Col | None:
    if not _utc_args(call, 3) or not isinstance(call.args[2], Literal):
        return None
    period = v.parse_period(str(call.args[1].value))  # type: ignore[union-attr]
    step = v.to_long(call.args[2].value)
    fixed = period.fixed_ms
    if fixed is None and len(period.fields()) == 1 and period.fields()[0][0] in ("days", "weeks"):
        fixed = period.days * 86_400_000 + period.weeks * 7 * 86_400_000
    if fixed is None:
        return None
    col = _to_long(ev.eval(call.args[0]))
    if col.kind == "NULL" or step is None:
        return _Col("NULL", pa.nulls(ev.n))
    return _Col("LONG", pc.add(col.data, v.wrap64(fixed * step)))


_EXTRACT: dict[str, Callable[[pa.Array], pa.Array]] = {
    "MILLISECOND": pc.millisecond,
    "SECOND": pc.second,
    "MINUTE": pc.minute,
    "HOUR": pc.hour,
    "DAY": pc.day,
    "DOW": lambda t: pc.day_of_week(t, count_from_zero=False, week_start=1),
    "ISODOW": lambda t: pc.day_of_week(t, count_from_zero=False, week_start=1),
    "DOY": pc.day_of_year,
    "WEEK": pc.iso_week,
    "MONTH": pc.month,
    "QUARTER": pc.quarter,
    "YEAR": pc.year,
    "ISOYEAR": pc.iso_year,
}


def _timestamp_extract(ev: _Evaluator, call: Call) -> _Col | None:
    if not _utc_args(call, 2):
        return None
    unit = str(call.args[1].value).upper()  # type: ignore[union-attr]
    col = _to_long(ev.eval(call.args[0]))
    if col.kind == "NULL":
        return col
    if unit == "EPOCH":
        ms = col.data
        return _Col("LONG", pc.divide(ms, 1000))
    times = pc.cast(col.data, pa.timestamp("ms", tz="UTC"))
    return _Col("LONG", pc.cast(_EXTRACT[unit](times), pa.int64()))


# math -------------------------------------------------------------------------------


def _abs(ev: _Evaluator, call: Call) -> _Col:
    col = ev.eval(call.args[0])
    if col.kind == "STRING":
        col = _to_double(col)
    if col.kind == "NULL":
        return col
    return _Col(col.kind, pc.abs(col.data))


_NUMPY_MATH: dict[str, Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]] = {
    "ceil": np.ceil,
    "floor": np.floor,
    "rint": np.rint,
    "signum": np.sign,
    "sqrt": np.sqrt,
    "cbrt": np.cbrt,
    "todegrees": np.degrees,
    "toradians": np.radians,
}


def _math1(name: str) -> Native:
    reference = v.java_math(name)
    kernel = _NUMPY_MATH.get(name)

    def run(ev: _Evaluator, call: Call) -> _Col:
        col = _to_double(ev.eval(call.args[0]))
        if col.kind == "NULL":
            return col
        if kernel is None:
            # transcendental functions: libm through the reference, per distinct value
            return _map_unique(col.data, lambda x: None if x is None else reference(x))
        valid = pc.is_valid(col.data).to_numpy(zero_copy_only=False)
        with np.errstate(all="ignore"):
            out = kernel(_np(col.data, 0.0))
        return _Col("DOUBLE", pa.array(out, mask=~valid))

    return run


def _math2(fn: Callable[[np.ndarray[Any, Any], np.ndarray[Any, Any]], np.ndarray[Any, Any]]) -> Native:
    def run(ev: _Evaluator, call: Call) -> _Col:
        x, y = (_to_double(ev.eval(arg)) for arg in call.args)
        if x.kind == "NULL" or y.kind == "NULL":
            return _Col("NULL", pa.nulls(ev.n))
        valid = pc.and_(pc.is_valid(x.data), pc.is_valid(y.data)).to_numpy(zero_copy_only=False)
        with np.errstate(all="ignore"):
            out = fn(_np(x.data, 0.0), _np(y.data, 0.0))
        return _Col("DOUBLE", pa.array(out, mask=~valid))

    return run


def _div(ev: _Evaluator, call: Call) -> _Col:
    x, y = (ev.eval(arg) for arg in call.args)
    if x.kind == "NULL" or y.kind == "NULL":
        return _Col("NULL", pa.nulls(ev.n))
    if x.kind == "LONG" and y.kind == "LONG":
        return _Col("LONG", _long_arith("/", x.data, y.data))
    a, b = _to_double(x), _to_double(y)
    if a.kind == "NULL" or b.kind == "NULL":
        return _Col("NULL", pa.nulls(ev.n))
    return _Col("LONG", _double_to_long(_double_arith("/", a.data, b.data)))


def _min_max(pick_max: bool) -> Native:
    def run(ev: _Evaluator, call: Call) -> _Col:
        x, y = (ev.eval(arg) for arg in call.args)
        if x.kind == "NULL" or y.kind == "NULL":
            return _Col("NULL", pa.nulls(ev.n))
        kernel = pc.max_element_wise if pick_max else pc.min_element_wise
        if x.kind == "LONG" and y.kind == "LONG":
            return _Col("LONG", kernel(x.data, y.data, skip_nulls=False))
        a, b = _to_double(x), _to_double(y)
        if a.kind == "NULL" or b.kind == "NULL":
            return _Col("NULL", pa.nulls(ev.n))
        out = kernel(a.data, b.data, skip_nulls=False)
        nan = pc.or_(pc.is_nan(a.data), pc.is_nan(b.data))
        return _Col("DOUBLE", pc.if_else(nan, math.nan, out))

    return run


def _reduce(pick_max: bool) -> Native:
    def run(ev: _Evaluator, call: Call) -> _Col | None:
        if not call.args:
            return _Col("NULL", pa.nulls(ev.n))
        cols = [ev.eval(arg) for arg in call.args]
        kinds = {col.kind for col in cols} - {"NULL"}
        if not kinds:
            return _Col("NULL", pa.nulls(ev.n))
        if "STRING" in kinds:
            return None
        if len(kinds) > 1 and any(col.data.null_count for col in cols):
            # per row, the type comes from the values that are not null: the row evaluator decides
            return None
        kind = "DOUBLE" if "DOUBLE" in kinds else "LONG"
        arrays = [_typed(_to_double(col) if kind == "DOUBLE" else col, kind) for col in cols]
        kernel = pc.max_element_wise if pick_max else pc.min_element_wise
        out = kernel(*arrays, skip_nulls=True)
        if kind == "DOUBLE":
            nan = pc.fill_null(pc.is_nan(arrays[0]), False)
            for array in arrays[1:]:
                nan = pc.or_(nan, pc.fill_null(pc.is_nan(array), False))
            out = pc.if_else(nan, math.nan, out)
        return _Col(kind, out)

    return run


def _safe_divide(ev: _Evaluator, call: Call) -> _Col:
    x, y = (ev.eval(arg) for arg in call.args)
    if x.kind == "NULL" or y.kind == "NULL":
        return _Col("NULL", pa.nulls(ev.n))
    if x.kind == "LONG" and y.kind == "LONG":
        zero = pc.equal(y.data, 0)
        safe_y = pc.if_else(zero, 1, y.data)
        return _Col("LONG", pc.if_else(zero, pa.scalar(None, pa.int64()), _long_arith("/", x.data, safe_y)))
    a, b = _to_double(x), _to_double(y)
    if a.kind == "NULL" or b.kind == "NULL":
        return _Col("NULL", pa.nulls(ev.n))
    zero = pc.equal(b.data, 0.0)
    return _Col("DOUBLE", pc.if_else(zero, pa.scalar(None, pa.float64()), pc.divide(a.data, b.data)))


def _bitwise(kernel: Callable[[pa.Array, pa.Array], pa.Array], mask_shift: bool = False) -> Native:
    def run(ev: _Evaluator, call: Call) -> _Col:
        x, y = (_to_long(ev.eval(arg)) for arg in call.args)
        if x.kind == "NULL" or y.kind == "NULL":
            return _Col("NULL", pa.nulls(ev.n))
        right = pc.bit_wise_and(y.data, 63) if mask_shift else y.data
        return _Col("LONG", kernel(x.data, right))

    return run


def _complement(ev: _Evaluator, call: Call) -> _Col:
    x = _to_long(ev.eval(call.args[0]))
    return x if x.kind == "NULL" else _Col("LONG", pc.bit_wise_not(x.data))


def _strlen(ev: _Evaluator, call: Call) -> _Col:
    col = _to_string(ev.eval(call.args[0]))
    if col.kind == "NULL":
        return col
    if _all_ascii(col.data):
        return _Col("LONG", pc.cast(pc.binary_length(col.data), pa.int64()))
    return _map_unique(col.data, lambda s: None if s is None else v.utf16_length(s))


_NATIVE: dict[str, Native] = {
    "if": _if,
    "case_searched": lambda ev, call: _case(ev, call, simple=False),
    "case_simple": lambda ev, call: _case(ev, call, simple=True),
    "nvl": _coalesce,
    "coalesce": _coalesce,
    "isnull": _isnull(False),
    "notnull": _isnull(True),
    "cast": _cast,
    "concat": _concat,
    "lower": _string_fn(pc.ascii_lower, v.java_lower),
    "upper": _string_fn(pc.ascii_upper, v.java_upper),
    "strlen": _strlen,
    "substring": _substring,
    "replace": _replace,
    "trim": _trim(pc.utf8_trim),
    "ltrim": _trim(pc.utf8_ltrim),
    "rtrim": _trim(pc.utf8_rtrim),
    "timestamp_floor": _timestamp_floor(False),
    "timestamp_ceil": _timestamp_floor(True),
    "timestamp_shift": _timestamp_shift,
    "timestamp_extract": _timestamp_extract,
    "abs": _abs,
    **{name: _math1(name) for name in v.DOUBLE_MATH_FUNCTIONS},
    "pow": _math2(_np_pow),
    "atan2": _math2(np.arctan2),
    "hypot": _math2(np.hypot),
    "copysign": _math2(np.copysign),
    "div": _div,
    "max": _min_max(True),
    "min": _min_max(False),
    "greatest": _reduce(True),
    "least": _reduce(False),
    "safe_divide": _safe_divide,
    "pi": lambda ev, call: _const(math.pi, ev.n),
    "bitwiseand": _bitwise(pc.bit_wise_and),
    "bitwiseor": _bitwise(pc.bit_wise_or),
    "bitwisexor": _bitwise(pc.bit_wise_xor),
    "bitwiseshiftleft": _bitwise(pc.shift_left, mask_shift=True),
    "bitwiseshiftright": _bitwise(pc.shift_right, mask_shift=True),
    "bitwisecomplement": _complement,
}


# ------------------------------------------------------------------ entry points


Columns = Mapping[str, "pa.Array | pa.ChunkedArray | None"]


def truth(array: pa.Array) -> pa.Array:
    """An expression result as booleans (``asBoolean``), null where the result is null."""
    return _as_bool(_input(array, len(array)))


def evaluate_columnar(expr: Expr, columns: Columns, n: int) -> pa.Array:
    """``expr`` over a batch of ``n`` rows, on columns only; raises :class:`NotColumnar`.

    A column given as ``None`` exists but has no single Arrow type (mixed values, lists,
    objects): an expression that reads it raises :class:`NotColumnar`. A column not given
    at all is null in every row.
    """
    try:
        col = _Evaluator(columns, n).eval(expr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise NotColumnar(str(exc)) from None
    return col.data


def result_array(results: list[Any]) -> pa.Array | None:
    """Row results as one Arrow array, or None when they do not share one type."""
    try:
        kind = _result_kind(results)
    except NotColumnar:
        return None
    return pa.array(results, type=_KINDS[kind])


def evaluate(
    expr: Expr,
    columns: Columns,
    n: int,
    rows: Callable[[], Sequence[Mapping[str, Any]]],
) -> tuple[pa.Array | None, list[Any] | None, dict[int, str]]:
    """``expr`` on a batch: columnar when it can be, else per row.

    Returns ``(array, None, {})`` from the columnar path, or ``(None, values, errors)``
    from the row path (``rows()`` gives the rows as mappings), where ``errors`` maps a
    row index to the message of the evaluation error that failed it.
    """
    try:
        return evaluate_columnar(expr, columns, n), None, {}
    except NotColumnar:
        pass
    fn = compile_row(expr)
    out: list[Any] = []
    errors: dict[int, str] = {}
    for index, row in enumerate(rows()):
        try:
            out.append(fn(row))
        except (EvalError, ValueError, OverflowError, TypeError, RecursionError) as exc:
            errors[index] = str(exc) or type(exc).__name__
            out.append(None)
    return None, out, errors


def row_values(table: pa.Table, names: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``table`` (only ``names``) as dicts of expression values."""
    present = [name for name in names if name in table.column_names]
    columns = {name: table.column(name).to_pylist() for name in present}
    return [
        {name: normalize_input(columns[name][index]) for name in present} for index in range(table.num_rows)
    ]

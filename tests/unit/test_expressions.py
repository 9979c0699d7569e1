"""Druid expressions: a table of expressions with Druid's documented results, run through
both evaluators (per row: the reference; columnar: Arrow), which must agree on every case.

Null handling is Druid's SQL-compatible mode (``druid.generic.useDefaultValueForNull=false``,
the only mode since Druid 28) with strict booleans; results follow docs/querying/math-expr.md
and, where the docs are silent, the Java semantics the docs point to (``java.lang.Math``,
``String.format``, Joda periods).
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest

from middlemanager.ingest.expressions import NotColumnar, evaluate_columnar
from supervisor.expressions import ExpressionSyntaxError, compile_row, parse_expression
from supervisor.expressions.values import EvalError

T = 1442018818771  # 2015-09-12T00:46:58.771Z, a Saturday
FIXTURE: dict[str, Any] = {
    "l": 7,
    "d": 2.5,
    "s": "foo",
    "e": "",
    "n": None,
    "num": "12",
    "__time": T,
    "neg": -7,
}
ROWS = 3

NAN = float("nan")
INF = float("inf")

# (expression, Druid's result, evaluated natively on columns?)
CASES: list[tuple[str, Any]] = [
    # literals and types: "if a number contains a dot, it is interpreted as a double, otherwise a long"
    ("1", 1),
    ("1.", 1.0),
    ("1.5e3", 1500.0),
    ("'x'", "x"),
    ("null", None),
    ("NaN", NAN),
    ("-Infinity", -INF),
    ("'it\\'s'", "it's"),
    ('"l"', 7),
    # arithmetic: long op long stays long, a double makes a double, a null makes null
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 / 2", 3),
    ("-7 / 2", -3),
    ("7 % 3", 1),
    ("-7 % 3", -1),
    ("7.0 / 2", 3.5),
    ("1.0 / 0", INF),
    ("-1.0 / 0", -INF),
    ("0.0 / 0", NAN),
    ("5.5 % 2", 1.5),
    ("2 ^ 10", 1024),
    ("2 ^ 3 ^ 2", 512),
    ("2.0 ^ 0.5", math.sqrt(2)),
    ("-2 ^ 2", 4),
    ("9223372036854775807 + 1", -9223372036854775808),
    ("l * 2", 14),
    ("l + d", 9.5),
    ("d * 2", 5.0),
    ("l + n", None),
    ("null * 2", None),
    ("-l", -7),
    ("-d", -2.5),
    ("neg - l", -14),
    # strings: '+' of two strings concatenates; a string with a number is read as a double
    ("'foo' + 'bar'", "foobar"),
    ("s + 'bar'", "foobar"),
    ("num + 1", 13.0),
    ("'1.5' * 2", 3.0),
    ("'abc' + 1", None),
    ("num * l", 84.0),
    # comparison: LONG 1/0 (strict booleans), null when an operand is null
    ("1 < 2", 1),
    ("2 <= 1", 0),
    ("1 == 1.0", 1),
    ("l != 7", 0),
    ("'abc' < 'abd'", 1),
    ("s == 'foo'", 1),
    ("num > 5", 1),
    ("'abc' > 5", None),
    ("n == 'x'", None),
    ("NaN == NaN", 0),
    ("d >= 2.5", 1),
    # logical operators (docs: "Logical operator behavior")
    ("100 && 11", 1),
    ("0.7 || 0.3", 1),
    ("100 && 0", 0),
    ("'troo' && 'true'", 0),
    ("'troo' || 'true'", 1),
    ("1 || null", 1),
    ("null || 1", 1),
    ("0 || null", None),
    ("null || null", None),
    ("1 && null", None),
    ("0 && null", 0),
    ("null && 0", 0),
    ("-1 && 1", 0),
    ("'TRUE' && 1", 1),
    ("!0", 1),
    ("!5", 0),
    ("!'true'", 0),
    ("!n", None),
    ("1 || 0 && 0", 0),
    # conditionals
    ("if(l > 5, 'big', 'small')", "big"),
    ("if(0, 1, 2)", 2),
    ("if(n, 1, 2)", 2),
    ("if('true', d, 0.0)", 2.5),
    ("case_searched(l == 1, 'one', l == 7, 'seven', 'other')", "seven"),
    ("case_searched(l == 1, 'one')", None),
    ("case_simple(l, 1, 'one', 7, 'seven', 'other')", "seven"),
    ("case_simple(s, 'bar', 1, 'foo', 2)", 2),
    ("case_simple(num, 12, 'twelve', 'other')", "twelve"),
    ("nvl(n, 'default')", "default"),
    ("nvl(s, 'default')", "foo"),
    ("coalesce(n, null, l)", 7),
    ("isnull(n)", 1),
    ("notnull(e)", 1),
    ("isnull(e)", 0),
    # cast
    ("cast(num, 'LONG')", 12),
    ("cast('1.9', 'LONG')", 1),
    ("cast('abc', 'LONG')", None),
    ("cast(d, 'LONG')", 2),
    ("cast(-2.5, 'LONG')", -2),
    ("cast(NaN, 'LONG')", 0),
    ("cast(l, 'DOUBLE')", 7.0),
    ("cast(l, 'STRING')", "7"),
    ("cast(d, 'STRING')", "2.5"),
    ("cast(1e10, 'STRING')", "1.0E10"),
    ("cast(0.0001, 'STRING')", "1.0E-4"),
    ("cast(n, 'LONG')", None),
    ("cast(s, 'ARRAY<STRING>')", ["foo"]),
    # string functions
    ("concat(s, '-', l, '-', d)", "foo-7-2.5"),
    ("concat(s, n)", None),
    ("concat()", None),
    ("concat(e, s)", "foo"),
    ("lower('ÀBC')", "àbc"),
    ("upper(s)", "FOO"),
    ("upper('straße')", "STRASSE"),
    ("upper(n)", None),
    ("upper(l)", "7"),
    ("strlen(s)", 3),
    ("strlen(e)", 0),
    ("strlen('😀a')", 3),
    ("strlen(n)", None),
    ("substring('abcdef', 1, 3)", "bcd"),
    ("substring('abcdef', 2, -1)", "cdef"),
    ("substring('abc', 5, 1)", None),
    ("substring('abc', 1, 10)", "bc"),
    ("substring(n, 0, 1)", None),
    ("replace('a-b-c', '-', '+')", "a+b+c"),
    ("replace(s, 'o', '')", "f"),
    ("trim('  x  ')", "x"),
    ("ltrim('xxaxx', 'x')", "axx"),
    ("rtrim('xxaxx', 'x')", "xxa"),
    ("trim('abcba', 'ab')", "c"),
    ("regexp_extract('foo123bar', '[0-9]+')", "123"),
    ("regexp_extract('foo123bar', '([a-z]+)([0-9]+)', 2)", "123"),
    ("regexp_extract('foo', '[0-9]+')", None),
    ("regexp_extract(n, '.')", None),
    ("regexp_like(s, '^f')", 1),
    ("regexp_like(s, 'x')", 0),
    ("regexp_like(n, 'x')", 0),
    ("regexp_replace('a1b22', '[0-9]+', '#')", "a#b#"),
    ("regexp_replace('john smith', '(\\\\w+) (\\\\w+)', '$2 $1')", "smith john"),
    ("like(s, 'f%')", 1),
    ("like(s, '_o_')", 1),
    ("like(s, 'o%')", 0),
    ("like('50%', '50!%', '!')", 1),
    ("like(n, '%')", 0),
    ("contains_string(s, 'oo')", 1),
    ("icontains_string('FOO', 'oo')", 1),
    ("format('%s-%d', s, l)", "foo-7"),
    ("format('%.2f', d)", "2.50"),
    ("format('%05d', 42)", "00042"),
    ("format('%x', 255)", "ff"),
    ("format('%d', d)", "%d; 2.5"),
    ("left('abcdef', 2)", "ab"),
    ("right('abcdef', 2)", "ef"),
    ("strpos('foobar', 'bar')", 3),
    ("strpos('foobar', 'x')", -1),
    ("reverse(s)", "oof"),
    ("repeat('ab', 3)", "ababab"),
    ("repeat('ab', 0)", None),
    ("lpad('7', 3, '0')", "007"),
    ("rpad('abc', 2, 'x')", "ab"),
    ("parse_long('ff', 16)", 255),
    ("parse_long('12x')", None),
    # time functions
    ("__time", T),
    ("timestamp('2015-09-12T00:46:58.771Z')", T),
    ("timestamp('2015-09-12')", 1442016000000),
    ("timestamp('12/09/2015', 'dd/MM/yyyy')", 1442016000000),
    ("unix_timestamp('2015-09-12T00:00:00Z')", 1442016000),
    ("timestamp_parse('2015-09-12 00:46:58')", 1442018818000),
    ("timestamp_parse('2015-09-12T00:46:58.771+02:00')", T - 7200000),
    ("timestamp_parse('not a time')", None),
    ("timestamp_parse('2015/09/12', 'yyyy/MM/dd', 'America/Los_Angeles')", 1442041200000),
    ("timestamp_format(__time)", "2015-09-12T00:46:58.771Z"),
    ("timestamp_format(__time, 'yyyy-MM-dd HH:mm')", "2015-09-12 00:46"),
    ("timestamp_format(__time, 'EEE dd MMM yyyy', 'America/Los_Angeles')", "Fri 11 Sep 2015"),
    ("timestamp_format(n)", None),
    ("timestamp_floor(__time, 'PT1H')", 1442016000000),
    ("timestamp_floor(__time, 'PT15M')", 1442018700000),
    ("timestamp_floor(__time, 'P1D')", 1442016000000),
    ("timestamp_floor(__time, 'P1W')", 1441584000000),
    ("timestamp_floor(__time, 'P1M')", 1441065600000),
    ("timestamp_floor(__time, 'P3M')", 1435708800000),
    ("timestamp_floor(__time, 'P1Y')", 1420070400000),
    ("timestamp_floor(__time, 'P1D', null, 'America/Los_Angeles')", 1441954800000),
    ("timestamp_floor(n, 'PT1H')", None),
    ("timestamp_ceil(__time, 'PT1H')", 1442019600000),
    ("timestamp_ceil(1442016000000, 'PT1H')", 1442016000000),
    ("timestamp_shift(__time, 'PT1H', 2)", T + 7200000),
    ("timestamp_shift(__time, 'P1D', -1)", T - 86400000),
    ("timestamp_shift(timestamp('2015-01-31'), 'P1M', 1)", 1425081600000),
    ("timestamp_extract(__time, 'YEAR')", 2015),
    ("timestamp_extract(__time, 'MONTH')", 9),
    ("timestamp_extract(__time, 'DAY')", 12),
    ("timestamp_extract(__time, 'HOUR')", 0),
    ("timestamp_extract(__time, 'MINUTE')", 46),
    ("timestamp_extract(__time, 'SECOND')", 58),
    ("timestamp_extract(__time, 'MILLISECOND')", 771),
    ("timestamp_extract(__time, 'DOW')", 6),
    ("timestamp_extract(__time, 'DOY')", 255),
    ("timestamp_extract(__time, 'WEEK')", 37),
    ("timestamp_extract(__time, 'QUARTER')", 3),
    ("timestamp_extract(__time, 'EPOCH')", 1442018818),
    ("timestamp_extract(__time, 'HOUR', 'America/Los_Angeles')", 17),
    # math functions (java.lang.Math)
    ("abs(neg)", 7),
    ("abs(-2.5)", 2.5),
    ("ceil(2.1)", 3.0),
    ("ceil(l)", 7.0),
    ("floor(-2.1)", -3.0),
    ("sqrt(16)", 4.0),
    ("sqrt(-1)", NAN),
    ("exp(0)", 1.0),
    ("log(1)", 0.0),
    ("log(0)", -INF),
    ("log10(1000)", 3.0),
    ("pow(2, 10)", 1024.0),
    ("pow(l, 2)", 49.0),
    ("round(2.5)", 3.0),
    ("round(-2.5)", -3.0),
    ("round(3.14159, 2)", 3.14),
    ("round(1234, -2)", 1200),
    ("round(l)", 7),
    ("round(NaN)", 0.0),
    ("round(n)", None),
    ("div(7, 2)", 3),
    ("div(7.5, 2)", 3),
    ("max(3, 7)", 7),
    ("min(3, 7.0)", 3.0),
    ("greatest(1, 5, 3)", 5),
    ("greatest(1, 2.5)", 2.5),
    ("greatest(n, 1)", 1),
    ("greatest()", None),
    ("least(3, 'a')", "3"),
    ("least(n, null)", None),
    ("safe_divide(7, 0)", None),
    ("safe_divide(7, 2)", 3),
    ("signum(-3.2)", -1.0),
    ("bitwiseAnd(12, 10)", 8),
    ("bitwiseOr(12, 10)", 14),
    ("bitwiseShiftLeft(1, 4)", 16),
    ("bitwiseComplement(0)", -1),
    ("atan2(1, 1)", math.pi / 4),
    ("pi()", math.pi),
    ("sin(0)", 0.0),
    ("hypot(3, 4)", 5.0),
    # arrays (row evaluator)
    ("array(1, 2, 3)", [1, 2, 3]),
    ("[1, 2, 3]", [1, 2, 3]),
    ("<STRING>[]", []),
    ("array_length([1, 2, 3])", 3),
    ("array_offset([1, 2, 3], 1)", 2),
    ("array_ordinal([1, 2, 3], 1)", 1),
    ("array_offset([1, 2, 3], 5)", None),
    ("array_contains([1, 2, 3], 2)", 1),
    ("array_contains([1, 2, 3], [2, 4])", 0),
    ("array_to_string(['a', 'b'], ',')", "a,b"),
    ("string_to_array('a,b,c', ',')", ["a", "b", "c"]),
    ("array_append([1, 2], 3)", [1, 2, 3]),
    ("array_slice([1, 2, 3, 4], 1, 3)", [2, 3]),
    ("scalar_in_array(2, [1, 2])", 1),
    # json
    ("json_value(parse_json('{\"a\":{\"b\":5}}'), '$.a.b')", 5),
    ("json_value(parse_json('{\"a\":[1,2]}'), '$.a[1]')", 2),
    ("json_value(parse_json('{\"a\":\"7\"}'), '$.a', 'LONG')", 7),
    ("json_value(parse_json('{\"a\":{\"b\":5}}'), '$.a')", None),
    ("json_query(parse_json('{\"a\":{\"b\":5}}'), '$.a')", {"b": 5}),
    ("json_value(parse_json('{\"a\":1}'), '$.missing')", None),
    ("to_json_string(json_object('a', 1))", '{"a":1}'),
    ("try_parse_json('{bad')", None),
]

# Functions the columnar evaluator hands to the row evaluator (arrays and JSON values).
# Also functions of several non-literal arguments beyond the operators (format).
ROW_ONLY_FUNCTIONS = (
    "array",
    "[",
    "<STRING>",
    "json_",
    "parse_json",
    "to_json",
    "string_to_array",
    "scalar_in",
    "format(",
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=1e-14)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _columns() -> dict[str, pa.Array]:
    types = {
        "l": pa.int64(),
        "d": pa.float64(),
        "s": pa.string(),
        "e": pa.string(),
        "n": pa.string(),
        "num": pa.string(),
        "__time": pa.int64(),
        "neg": pa.int64(),
    }
    return {name: pa.array([FIXTURE[name]] * ROWS, type=types[name]) for name in FIXTURE}


def test_the_table_has_over_a_hundred_cases() -> None:
    assert len(CASES) >= 100
    assert len({expr for expr, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[case[0] for case in CASES])
def test_expression(text: str, expected: Any) -> None:
    expr = parse_expression(text)
    row_result = compile_row(expr)(FIXTURE)
    assert _same(row_result, expected), f"row evaluator: {row_result!r}, Druid: {expected!r}"
    try:
        column = evaluate_columnar(expr, _columns(), ROWS).to_pylist()
    except NotColumnar:
        assert any(marker in text for marker in ROW_ONLY_FUNCTIONS), f"{text} should run on columns"
        return
    assert all(_same(value, row_result) for value in column), f"columnar {column!r} != row {row_result!r}"


# Cases over rows that differ: nulls mixed with values, per row.
ROW_FIXTURE: dict[str, list[Any]] = {
    "x": [1, None, -3, 4],
    "y": [2.0, 1.5, None, float("nan")],
    "s": ["a", None, "Foo", ""],
    "b": ["true", "false", None, "TRUE"],
}
ROW_TYPES = {"x": pa.int64(), "y": pa.float64(), "s": pa.string(), "b": pa.string()}
ROW_CASES: list[tuple[str, list[Any]]] = [
    ("x + 1", [2, None, -2, 5]),
    ("x * y", [2.0, None, None, NAN]),
    ("x > 0 && b", [1, 0, 0, 1]),
    ("x > 0 || b", [1, None, None, 1]),
    ("!b", [0, 1, None, 0]),
    ("nvl(s, 'none')", ["a", "none", "Foo", ""]),
    ("concat(s, x)", ["a1", None, "Foo-3", "4"]),
    ("upper(s)", ["A", None, "FOO", ""]),
    ("if(x > 0, s, 'neg')", ["a", "neg", "neg", ""]),
    ("case_searched(isnull(x), 'missing', x > 1, 'big', 'small')", ["small", "missing", "small", "big"]),
    ("strlen(s)", [1, None, 3, 0]),
    ("y == y", [1, 1, None, 0]),
    ("cast(y, 'LONG')", [2, 1, None, 0]),
    ("greatest(x, y)", [2.0, 1.5, -3, NAN]),
    ("regexp_like(s, '^[A-Z]')", [0, 0, 1, 0]),
    ("timestamp_floor(x * 3600001, 'PT1H')", [3600000, None, -14400000, 14400000]),
]


@pytest.mark.parametrize(("text", "expected"), ROW_CASES, ids=[case[0] for case in ROW_CASES])
def test_expression_per_row(text: str, expected: list[Any]) -> None:
    expr = parse_expression(text)
    fn = compile_row(expr)
    rows = [{name: values[i] for name, values in ROW_FIXTURE.items()} for i in range(4)]
    row_results = [fn(row) for row in rows]
    assert all(_same(a, b) for a, b in zip(row_results, expected, strict=True)), row_results
    columns = {name: pa.array(values, type=ROW_TYPES[name]) for name, values in ROW_FIXTURE.items()}
    try:
        column = evaluate_columnar(expr, columns, 4).to_pylist()
    except NotColumnar:
        # a LONG and a DOUBLE with nulls: each row's type depends on its values (row evaluator)
        assert text == "greatest(x, y)"
        return
    assert all(_same(a, b) for a, b in zip(column, row_results, strict=True)), column


@pytest.mark.parametrize(
    ("text", "position", "problem"),
    [
        ("1 +", 3, "unexpected end"),
        ("upper(x", 7, "expected ')'"),
        ("foo(1)", 0, "unknown function 'foo'"),
        ("substring('a', 1)", 0, "needs 3 arguments"),
        ("regexp_like(x, y)", 15, "must be a literal"),
        ("regexp_like(x, '(')", 15, "invalid regular expression"),
        ("timestamp_floor(__time, 'PT1X')", 24, "not an ISO-8601 period"),
        ("timestamp_extract(__time, 'FORTNIGHT')", 26, "unit must be one of"),
        ("cast(x, 'DATE')", 8, "cast type"),
        ("'abc", 0, "unterminated string"),
        ("x = 1", 2, "use '=='"),
        ("map((x) -> x + 1, y)", 4, "lambda"),
        ("lookup(x, 'name')", 0, "not supported yet"),
        ("[1, 'a']", 0, "one type"),
        ("", 0, "empty expression"),
        ("1 2", 2, "unexpected '2'"),
    ],
)
def test_bad_expressions_name_the_position(text: str, position: int, problem: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse_expression(text)
    assert caught.value.position == position, caught.value
    assert problem in caught.value.message


@pytest.mark.parametrize(
    "text", ["1 / 0", "7 % 0", "-'a'", "'a' - 'b'", "2 ^ -1", "timestamp(5)", "round('a')"]
)
def test_evaluation_errors_fail_the_row_in_both_evaluators(text: str) -> None:
    expr = parse_expression(text)
    with pytest.raises(EvalError):
        compile_row(expr)(FIXTURE)
    with pytest.raises(NotColumnar):
        evaluate_columnar(expr, _columns(), ROWS)

"""Scalar semantics of Druid expressions, shared by the row and the columnar evaluators.

Values are Python objects: ``None`` (null), ``int`` (LONG, wrapped to 64 bits like a
Java long), ``float`` (DOUBLE), ``str`` (STRING), ``list`` (ARRAY) and ``dict`` (a
``COMPLEX<json>`` object). Null handling is Druid's SQL-compatible mode
(``druid.generic.useDefaultValueForNull=false``, the only mode since Druid 28) with
strict booleans (``druid.expressions.useStrictBooleans=true``): boolean results are
LONG 1/0 and null stays null (docs/querying/math-expr.md, "Logical operator behavior").

The columnar evaluator maps hard cases (number parsing and printing, regular
expressions, time patterns) through these same functions, one call per distinct
value, so both evaluators agree by construction on them.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "EvalError",
    "Period",
    "as_bool",
    "java_double_str",
    "parse_number",
    "to_double",
    "to_long",
    "to_string",
    "value_type",
    "wrap64",
]

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1


class EvalError(ValueError):
    """An expression failed on a value (Druid throws: the row cannot be transformed)."""


def wrap64(value: int) -> int:
    """A Python int as a Java long would hold it (two's complement overflow)."""
    if _LONG_MIN <= value <= _LONG_MAX:
        return value
    return ((value - _LONG_MIN) % 2**64) + _LONG_MIN


def value_type(value: object) -> str | None:
    """Druid's type of a value: LONG, DOUBLE, STRING, ARRAY, COMPLEX (json) or None for null."""
    if value is None:
        return None
    if isinstance(value, bool | int):
        return "LONG"
    if isinstance(value, float):
        return "DOUBLE"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list | tuple):
        return "ARRAY"
    return "COMPLEX"


def java_double_str(value: float) -> str:
    """``Double.toString``: decimal for 1e-3 <= |x| < 1e7, else ``d.dddE±n``; shortest digits."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0.0"
    _, digit_tuple, exp = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    # exponent of the first digit; strip leading zeros of the digit string
    stripped = digits.lstrip("0")
    first = len(digit_tuple) + exp - 1 - (len(digits) - len(stripped))
    digits = stripped or "0"
    if 1e-3 <= abs(value) < 1e7:
        if first >= 0:
            whole = digits[: first + 1].ljust(first + 1, "0")
            fraction = digits[first + 1 :] or "0"
        else:
            whole = "0"
            fraction = "0" * (-first - 1) + digits
        return f"{sign}{whole}.{fraction}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{first}"


def to_string(value: object) -> str | None:
    """``ExprEval.asString``: numbers printed as Java does."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double_str(value)
    if isinstance(value, list | tuple):
        if len(value) == 1:
            return to_string(value[0])
        raise EvalError("an array cannot be used as a string")
    raise EvalError("a JSON object cannot be used as a string")


_JAVA_LONG = re.compile(r"[+-]?[0-9]+")
_JAVA_DOUBLE = re.compile(r"[+-]?(?:NaN|Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?)")


@lru_cache(maxsize=65536)
def parse_number(text: str) -> int | float | None:
    """Druid's string to number: a long (Guava ``tryParseLong``), else a double
    (``Doubles.tryParse``), else null."""
    if _JAVA_LONG.fullmatch(text):
        number = int(text)
        if _LONG_MIN <= number <= _LONG_MAX:
            return number
        return float(number)
    if _JAVA_DOUBLE.fullmatch(text):
        return float(text.rstrip("fFdD"))
    return None


def to_double(value: object) -> float | None:
    """``asDouble`` with SQL-compatible nulls: a string that is not a number is null."""
    if value is None:
        return None
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        number = parse_number(value)
        return None if number is None else float(number)
    if isinstance(value, list | tuple) and len(value) == 1:
        return to_double(value[0])
    raise EvalError("an array or JSON object cannot be used as a number")


def double_to_long(value: float) -> int:
    """Java's ``(long) d``: truncation, NaN -> 0, out of range -> the nearest long."""
    if math.isnan(value):
        return 0
    if value >= 9.223372036854775807e18:
        return _LONG_MAX
    if value <= -9.223372036854775808e18:
        return _LONG_MIN
    return int(value)


def to_long(value: object) -> int | None:
    """``asLong`` with SQL-compatible nulls."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return double_to_long(value)
    if isinstance(value, str):
        number = parse_number(value)
        if number is None:
            return None
        return number if isinstance(number, int) else double_to_long(number)
    if isinstance(value, list | tuple) and len(value) == 1:
        return to_long(value[0])
    raise EvalError("an array or JSON object cannot be used as a number")


def as_bool(value: object) -> bool:
    """``ExprEval.asBoolean``: a number is true when > 0; a string when it is 'true' in any case."""
    if value is None:
        return False
    if isinstance(value, int | float):
        return value > 0
    if isinstance(value, str):
        return value.lower() == "true"
    if isinstance(value, list | tuple):
        return len(value) == 1 and as_bool(value[0])
    return False


# ------------------------------------------------------------------ java arithmetic


def java_div(left: int, right: int) -> int:
    if right == 0:
        raise EvalError("/ by zero")
    quotient = abs(left) // abs(right)
    return wrap64(quotient if (left >= 0) == (right >= 0) else -quotient)


def java_mod(left: int, right: int) -> int:
    if right == 0:
        raise EvalError("/ by zero")
    return left - right * int(left / right) if abs(left) < 2**52 else left - right * _trunc_div(left, right)


def _trunc_div(left: int, right: int) -> int:
    quotient = abs(left) // abs(right)
    return quotient if (left >= 0) == (right >= 0) else -quotient


def java_double_div(left: float, right: float) -> float:
    if right == 0.0:
        if left == 0.0 or math.isnan(left):
            return math.nan
        negative = (math.copysign(1.0, left) < 0) != (math.copysign(1.0, right) < 0)
        return -math.inf if negative else math.inf
    return left / right


def java_double_mod(left: float, right: float) -> float:
    if right == 0.0 or math.isinf(left) or math.isnan(left) or math.isnan(right):
        return math.nan
    if math.isinf(right):
        return left
    return math.fmod(left, right)


def java_pow(left: float, right: float) -> float:
    try:
        result = math.pow(left, right)
    except OverflowError:
        if left < 0 and right == int(right) and int(right) % 2 == 1:
            return -math.inf
        return math.inf
    except ValueError:
        return math.nan
    return result


def long_pow(base: int, exponent: int) -> int:
    """Guava ``LongMath.pow`` (overflow wraps); a negative exponent fails as in Druid."""
    if exponent < 0:
        raise EvalError(f"exponent ({exponent}) must be >= 0")
    if exponent > 2**31 - 1:
        raise EvalError("exponent out of int range")
    if base in (0, 1):
        return base if exponent else 1
    if base == -1:
        return 1 if exponent % 2 == 0 else -1
    return wrap64(pow(base, exponent, 2**64) if exponent > 64 else base**exponent)


def java_math(name: str) -> Callable[[float], float]:
    """java.lang.Math's one-argument double functions (IEEE results where Python raises)."""
    return _MATH[name]


def _safe(fn: Callable[[float], float], on_domain: Callable[[float], float]) -> Callable[[float], float]:
    def call(x: float) -> float:
        if math.isnan(x):
            return math.nan
        try:
            return fn(x)
        except OverflowError:
            return math.inf
        except ValueError:
            return on_domain(x)

    return call


def _log_domain(x: float) -> float:
    return -math.inf if x == 0 else math.nan


def _java_round(x: float) -> float:
    # Math.rint: round half to even
    return float(round(x)) if math.isfinite(x) else x


def _ceil(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


def _floor(x: float) -> float:
    return float(math.floor(x)) if math.isfinite(x) else x


def _signum(x: float) -> float:
    if math.isnan(x) or x == 0:
        return x
    return 1.0 if x > 0 else -1.0


def _nan(x: float) -> float:
    return math.nan


def _cot(x: float) -> float:
    tangent = math.tan(x)
    return java_double_div(1.0, tangent)


_MATH: dict[str, Callable[[float], float]] = {
    "acos": _safe(math.acos, _nan),
    "asin": _safe(math.asin, _nan),
    "atan": _safe(math.atan, _nan),
    "cbrt": _safe(lambda x: math.copysign(abs(x) ** (1.0 / 3.0), x) if math.isfinite(x) else x, _nan),
    "ceil": _safe(_ceil, _nan),
    "cos": _safe(math.cos, _nan),
    "cosh": _safe(math.cosh, _nan),
    "cot": _safe(_cot, _nan),
    "exp": _safe(math.exp, _nan),
    "expm1": _safe(math.expm1, _nan),
    "floor": _safe(_floor, _nan),
    "log": _safe(math.log, _log_domain),
    "log10": _safe(math.log10, _log_domain),
    "log1p": _safe(math.log1p, lambda x: -math.inf if x == -1 else math.nan),
    "rint": _safe(_java_round, _nan),
    "signum": _safe(_signum, _nan),
    "sin": _safe(math.sin, _nan),
    "sinh": _safe(math.sinh, _nan),
    "sqrt": _safe(math.sqrt, _nan),
    "tan": _safe(math.tan, _nan),
    "tanh": _safe(math.tanh, _nan),
    "todegrees": _safe(math.degrees, _nan),
    "toradians": _safe(math.radians, _nan),
}
DOUBLE_MATH_FUNCTIONS = frozenset(_MATH)


def round_value(value: int | float, scale: int) -> int | float:
    """Druid's ``round(x, y)``: ``BigDecimal.setScale(y, HALF_UP)``; NaN -> 0, infinity -> nearest finite."""
    if isinstance(value, int):
        if scale >= 0:
            return value
        step = 10**-scale
        rounded = int((Decimal(value) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)) * step
        return wrap64(rounded)
    if math.isnan(value):
        return 0.0
    if math.isinf(value):
        return math.copysign(1.7976931348623157e308, value)
    # BigDecimal.valueOf(double) starts from Double.toString's digits
    exact = Decimal(repr(value))
    return float(exact.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP))


# ------------------------------------------------------------------ strings


def java_lower(text: str) -> str:
    return text.lower()


def java_upper(text: str) -> str:
    return text.upper()


def utf16_length(text: str) -> int:
    """``String.length()``: UTF-16 code units."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    """SQL LIKE as a regular expression: ``%`` any run, ``_`` one character (docs: like filter)."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if escape is not None and char == escape and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out), re.DOTALL)


@lru_cache(maxsize=1024)
def java_regex(pattern: str) -> re.Pattern[str]:
    """A Java regular expression compiled by Python's ``re`` (the common syntax is shared)."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def java_format(pattern: str, args: list[Any]) -> str:
    """``String.format`` for the conversions ``%s %d %f %e %x %o %b %c %%`` and ``%n``
    (flags, width and precision as in Java, which match C's for these)."""
    out: list[str] = []
    index = 0
    arg_index = 0
    spec = re.compile(r"%([-#+ 0,(]*)(\d+)?(?:\.(\d+))?([sSdfeExXobBcn%])")
    while index < len(pattern):
        match = spec.search(pattern, index)
        if match is None:
            out.append(pattern[index:])
            break
        out.append(pattern[index : match.start()])
        index = match.end()
        flags, width, precision, conversion = match.groups()
        if conversion == "%":
            out.append("%")
            continue
        if conversion == "n":
            out.append("\n")
            continue
        if arg_index >= len(args):
            raise EvalError(f"Format specifier '{match.group()}' has no argument")
        arg = args[arg_index]
        arg_index += 1
        c_spec = (
            "%"
            + flags.replace(",", "").replace("(", "")
            + (width or "")
            + (f".{precision}" if precision else "")
        )
        if conversion in "sS":
            text = "null" if arg is None else (to_string(arg) or "")
            if precision:
                text = text[: int(precision)]
            text = (c_spec.split(".")[0] + "s") % text
            out.append(text.upper() if conversion == "S" else text)
        elif conversion in "bB":
            text = "false" if arg is None else ("true" if not isinstance(arg, bool) or arg else "false")
            out.append(text.upper() if conversion == "B" else text)
        elif arg is None:
            out.append("null")
        elif conversion in "dxXoc":
            if not isinstance(arg, int):
                raise EvalError(f"{conversion} != {type(arg).__name__}")
            if conversion in "xX" and arg < 0:
                arg += 2**64
            out.append((c_spec + conversion) % arg)
        else:
            if not isinstance(arg, float):
                raise EvalError(f"{conversion} != {type(arg).__name__}")
            out.append((c_spec + conversion) % arg)
    return "".join(out)


# ------------------------------------------------------------------ time


@dataclass(frozen=True, slots=True)
class Period:
    """An ISO-8601 period (Joda ``Period``): calendar fields kept apart."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0
    millis: int = 0

    @property
    def fixed_ms(self) -> int | None:
        """The length in ms when the period has no calendar field (years, months, weeks, days)."""
        if self.years or self.months or self.weeks or self.days:
            return None
        return ((self.hours * 60 + self.minutes) * 60 + self.seconds) * 1000 + self.millis

    def fields(self) -> list[tuple[str, int]]:
        return [
            (name, getattr(self, name))
            for name in ("years", "months", "weeks", "days", "hours", "minutes", "seconds", "millis")
            if getattr(self, name)
        ]


_PERIOD = re.compile(
    r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:[.,](\d{1,3}))?S)?)?"
)


@lru_cache(maxsize=256)
def parse_period(text: str) -> Period:
    match = _PERIOD.fullmatch(text.strip().upper())
    if match is None or text.strip().upper() in ("P", "PT"):
        raise ValueError(f"'{text}' is not an ISO-8601 period (such as 'PT1H' or 'P1D')")
    y, mo, w, d, h, mi, s, frac = match.groups()
    period = Period(
        int(y or 0),
        int(mo or 0),
        int(w or 0),
        int(d or 0),
        int(h or 0),
        int(mi or 0),
        int(s or 0),
        int((frac or "").ljust(3, "0") or 0),
    )
    if not period.fields():
        raise ValueError(f"period '{text}' is empty")
    return period


_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})?")


@lru_cache(maxsize=256)
def parse_zone(text: str) -> tzinfo:
    """A time zone name (``America/Los_Angeles``) or an offset (``-08:00``), as Joda takes them."""
    if text.upper() in ("UTC", "Z", "GMT", "ETC/UTC"):
        return UTC
    match = _OFFSET.fullmatch(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{text}'") from None


def is_utc(zone: tzinfo) -> bool:
    return zone is UTC or (zone.utcoffset(None) == timedelta(0) and not isinstance(zone, ZoneInfo))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(ms: int, zone: tzinfo) -> datetime:
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone)


def from_datetime(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _local(ms: int, zone: tzinfo) -> datetime:
    """The wall-clock time as a naive datetime."""
    return to_datetime(ms, zone).replace(tzinfo=None)


def _instant(local: datetime, zone: tzinfo) -> int:
    if zone is UTC:
        return from_datetime(local.replace(tzinfo=UTC))
    return from_datetime(local.replace(tzinfo=zone))


def _add_months(local: datetime, months: int) -> datetime:
    total = local.year * 12 + (local.month - 1) + months
    year, month = divmod(total, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day)


def floor_time(ms: int, period: Period, origin: int | None, zone: tzinfo) -> int:
    """Druid's ``PeriodGranularity`` truncation (``timestamp_floor``).

    A single-unit period without origin rounds down to that calendar unit (weeks start on
    Monday); with a count above one or an origin, whole periods are counted from the
    origin (default: the epoch in the time zone).
    """
    fixed = period.fixed_ms
    if fixed is not None and (zone is UTC or is_utc(zone)):
        base = origin or 0
        return ms - (ms - base) % fixed
    fields = period.fields()
    if len(fields) != 1:
        if fixed is not None:
            base = origin if origin is not None else 0
            return ms - (ms - base) % fixed
        raise EvalError(f"periods with several fields are not supported by timestamp_floor: {period}")
    name, count = fields[0]
    local = _local(ms, zone)
    start_local = _local(origin, zone) if origin is not None else datetime(1970, 1, 1)
    if name in ("years", "months"):
        months = count * (12 if name == "years" else 1)
        if count == 1 and origin is None:
            floored = local.replace(
                month=1 if name == "years" else local.month, day=1, hour=0, minute=0, second=0, microsecond=0
            )
            return _instant(floored, zone)
        diff = (local.year - start_local.year) * 12 + (local.month - start_local.month)
        if _add_months(start_local, diff) > local:
            diff -= 1
        diff -= diff % months
        return _instant(_add_months(start_local, diff), zone)
    unit_ms = {
        "weeks": 7 * 86_400_000,
        "days": 86_400_000,
        "hours": 3_600_000,
        "minutes": 60_000,
        "seconds": 1000,
        "millis": 1,
    }[name]
    if count == 1 and origin is None:
        floored = local
        if name == "weeks":
            floored = (local - timedelta(days=local.weekday())).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
        elif name == "days":
            floored = local.replace(hour=0, minute=0, second=0, microsecond=0)
        elif name == "hours":
            floored = local.replace(minute=0, second=0, microsecond=0)
        elif name == "minutes":
            floored = local.replace(second=0, microsecond=0)
        elif name == "seconds":
            floored = local.replace(microsecond=0)
        return _instant(floored, zone)
    local_ms = from_datetime(local.replace(tzinfo=UTC))
    start_ms = from_datetime(start_local.replace(tzinfo=UTC))
    step = unit_ms * count
    floored_ms = local_ms - (local_ms - start_ms) % step
    return _instant(_local(floored_ms, UTC), zone)


def shift_time(ms: int, period: Period, step: int, zone: tzinfo) -> int:
    """``timestamp_shift``: add ``step`` periods (calendar-aware for months and years)."""
    fixed = period.fixed_ms
    if fixed is not None and (zone is UTC or is_utc(zone)):
        return wrap64(ms + fixed * step)
    local = _local(ms, zone)
    months = (period.years * 12 + period.months) * step
    if months:
        local = _add_months(local, months)
    local = local + timedelta(
        weeks=period.weeks * step,
        days=period.days * step,
        hours=period.hours * step,
        minutes=period.minutes * step,
        seconds=period.seconds * step,
        milliseconds=period.millis * step,
    )
    return _instant(local, zone)


EXTRACT_UNITS = frozenset(
    (
        "EPOCH",
        "MILLISECOND",
        "SECOND",
        "MINUTE",
        "HOUR",
        "DAY",
        "DOW",
        "ISODOW",
        "DOY",
        "WEEK",
        "MONTH",
        "QUARTER",
        "YEAR",
        "ISOYEAR",
    )
)


def extract_time(ms: int, unit: str, zone: tzinfo) -> int:
    """``timestamp_extract`` (docs: DOW is 1 = Monday .. 7 = Sunday, WEEK is the ISO week)."""
    if unit == "EPOCH":
        return int(ms / 1000) if abs(ms) < 2**52 else _trunc_div(ms, 1000)
    moment = to_datetime(ms, zone)
    if unit == "MILLISECOND":
        return moment.microsecond // 1000
    if unit == "SECOND":
        return moment.second
    if unit == "MINUTE":
        return moment.minute
    if unit == "HOUR":
        return moment.hour
    if unit == "DAY":
        return moment.day
    if unit in ("DOW", "ISODOW"):
        return moment.isoweekday()
    if unit == "DOY":
        return moment.timetuple().tm_yday
    if unit == "WEEK":
        return moment.isocalendar()[1]
    if unit == "MONTH":
        return moment.month
    if unit == "QUARTER":
        return (moment.month - 1) // 3 + 1
    if unit == "YEAR":
        return moment.year
    if unit == "ISOYEAR":
        return moment.isocalendar()[0]
    raise EvalError(f"unknown unit {unit}")


_ISO = re.compile(
    r"([+-]?\d{4,})(?:-(\d{1,2})(?:-(\d{1,2}))?)?"
    r"(?:[T ](\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,9}))?)?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_iso(text: str, zone: tzinfo = UTC, strict: bool = False) -> int | None:
    """An ISO-8601 date with optional time (``T``, or a space unless ``strict``: the SQL form), or null."""
    match = _ISO.fullmatch(text.strip())
    if match is None or (strict and " " in text.strip()):
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        local = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
        )
    except ValueError:
        return None
    if offset is not None:
        local_zone = parse_zone("UTC" if offset == "Z" else offset)
        return _instant(local, local_zone)
    return _instant(local, zone)


# Joda DateTimeFormat letters: (regex for parsing, formatter)
_MONTHS = [calendar.month_name[i] for i in range(1, 13)]
_DAYS = [calendar.day_name[i] for i in range(7)]


def _joda_tokens(pattern: str) -> list[tuple[str, str]]:
    """The pattern as (letter run | literal) tokens: ("yyyy", ...) or ("'", text)."""
    out: list[tuple[str, str]] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "'":
            end = pattern.find("'", index + 1)
            if end == index + 1:
                out.append(("'", "'"))
                index += 2
                continue
            if end < 0:
                raise ValueError(f"unterminated quote in pattern {pattern!r}")
            out.append(("'", pattern[index + 1 : end]))
            index = end + 1
            continue
        if char.isalpha():
            end = index
            while end < len(pattern) and pattern[end] == char:
                end += 1
            run = pattern[index:end]
            if char not in "GyYxwWeEDdMHhkKmsSaZzC":
                raise ValueError(f"illegal pattern letter '{char}' in {pattern!r}")
            out.append((char, run))
            index = end
            continue
        out.append(("'", char))
        index += 1
    return out


@lru_cache(maxsize=256)
def check_joda_pattern(pattern: str) -> None:
    _joda_tokens(pattern)


def _offset_text(moment: datetime, colon: bool) -> str:
    offset = moment.utcoffset() or timedelta(0)
    if offset == timedelta(0) and colon:
        return "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}" if colon else f"{sign}{hours:02d}{mins:02d}"


def format_time(ms: int, pattern: str | None, zone: tzinfo) -> str:
    """``timestamp_format``: a Joda pattern, or ISO-8601 (``2015-09-12T00:46:58.771Z``) without one."""
    moment = to_datetime(ms, zone)
    if pattern is None:
        base = (
            moment.strftime("%Y-%m-%dT%H:%M:%S")
            if moment.year >= 1000
            else (
                f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
            )
        )
        return f"{base}.{moment.microsecond // 1000:03d}{_offset_text(moment, True)}"
    out: list[str] = []
    for letter, run in _joda_tokens(pattern):
        width = len(run)
        if letter == "'":
            out.append(run)
        elif letter in "yY":
            out.append(f"{moment.year % 100:02d}" if width == 2 else f"{moment.year:0{width}d}")
        elif letter == "x":
            year = moment.isocalendar()[0]
            out.append(f"{year % 100:02d}" if width == 2 else f"{year:0{width}d}")
        elif letter == "w":
            out.append(f"{moment.isocalendar()[1]:0{width}d}")
        elif letter == "e":
            out.append(f"{moment.isoweekday():0{width}d}")
        elif letter == "E":
            name = _DAYS[moment.weekday()]
            out.append(name if width >= 4 else name[:3])
        elif letter == "D":
            out.append(f"{moment.timetuple().tm_yday:0{width}d}")
        elif letter == "d":
            out.append(f"{moment.day:0{width}d}")
        elif letter == "M":
            if width >= 4:
                out.append(_MONTHS[moment.month - 1])
            elif width == 3:
                out.append(_MONTHS[moment.month - 1][:3])
            else:
                out.append(f"{moment.month:0{width}d}")
        elif letter == "H":
            out.append(f"{moment.hour:0{width}d}")
        elif letter == "k":
            out.append(f"{moment.hour or 24:0{width}d}")
        elif letter == "h":
            out.append(f"{(moment.hour % 12) or 12:0{width}d}")
        elif letter == "K":
            out.append(f"{moment.hour % 12:0{width}d}")
        elif letter == "m":
            out.append(f"{moment.minute:0{width}d}")
        elif letter == "s":
            out.append(f"{moment.second:0{width}d}")
        elif letter == "S":
            millis = f"{moment.microsecond // 1000:03d}"
            out.append(millis[:width] if width <= 3 else millis + "0" * (width - 3))
        elif letter == "a":
            out.append("AM" if moment.hour < 12 else "PM")
        elif letter == "Z":
            out.append(_offset_text(moment, width >= 2))
        elif letter == "z":
            out.append(moment.tzname() or "UTC")
        elif letter == "G":
            out.append("AD")
        elif letter == "C":
            out.append(f"{moment.year // 100:0{width}d}")
    return "".join(out)


@lru_cache(maxsize=256)
def _joda_parser(pattern: str) -> tuple[re.Pattern[str], tuple[tuple[str, int], ...]]:
    parts: list[str] = []
    fields: list[tuple[str, int]] = []
    for letter, run in _joda_tokens(pattern):
        width = len(run)
        if letter == "'":
            parts.append(re.escape(run))
            continue
        fields.append((letter, width))
        if letter in "yYx":
            parts.append(r"([+-]?\d{2})" if width == 2 else r"([+-]?\d{1,9})")
        elif letter == "M" and width >= 3:
            parts.append("(" + "|".join(m if width >= 4 else m[:3] for m in _MONTHS) + ")")
        elif letter == "E":
            parts.append("(" + "|".join(d if width >= 4 else d[:3] for d in _DAYS) + ")")
        elif letter == "a":
            parts.append("(AM|PM|am|pm)")
        elif letter == "Z":
            parts.append(r"(Z|[+-]\d{2}:?\d{2})")
        elif letter == "S":
            parts.append(r"(\d{1,9})")
        elif letter == "z":
            parts.append(r"([A-Za-z_/+-]+)")
        else:
            parts.append(rf"(\d{{1,{max(width, 2)}}})" if width < 3 else rf"(\d{{{width}}})")
    return re.compile("".join(parts), re.IGNORECASE), tuple(fields)


def parse_time(text: str, pattern: str, zone: tzinfo) -> int | None:
    """Parse ``text`` with a Joda pattern; null when it does not match."""
    regex, fields = _joda_parser(pattern)
    match = regex.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, micros = 1970, 1, 1, 0, 0, 0, 0
    pm: bool | None = None
    offset_zone: tzinfo | None = None
    for (letter, width), group in zip(fields, match.groups(), strict=True):
        if letter in "yYx":
            year = int(group) + (2000 if width == 2 and int(group) < 70 else 1900 if width == 2 else 0)
        elif letter == "M":
            month = (
                int(group)
                if width < 3
                else [m[: len(group)].lower() for m in _MONTHS].index(group.lower()) + 1
            )
        elif letter == "d":
            day = int(group)
        elif letter in "Hk":
            hour = int(group) % 24
        elif letter in "hK":
            hour = int(group) % 12
        elif letter == "m":
            minute = int(group)
        elif letter == "s":
            second = int(group)
        elif letter == "S":
            micros = int(group[:3].ljust(3, "0")) * 1000
        elif letter == "a":
            pm = group.upper() == "PM"
        elif letter == "Z":
            offset_zone = parse_zone(
                "UTC" if group.upper() == "Z" else group if ":" in group else group[:3] + ":" + group[3:]
            )
        elif letter == "z":
            try:
                offset_zone = parse_zone(group)
            except ValueError:
                return None
    if pm is not None and hour < 12 and pm:
        hour += 12
    try:
        local = datetime(year, month, day, hour, minute, second, micros)
    except ValueError:
        return None
    return _instant(local, offset_zone or zone)

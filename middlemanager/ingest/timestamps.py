"""Row timestamps as Druid's ``timestampSpec.format`` reads them, in UTC epoch milliseconds.

* ``auto``: a number is milliseconds; a string of digits (optionally signed) is milliseconds;
  any other string is ISO-8601 (``T`` or a space between date and time, offset optional = UTC).
* ``iso``: ISO-8601 strings only.
* ``millis``, ``posix`` (seconds), ``micro``, ``nano``: integers (numbers or numeric strings);
  a fraction is dropped first, as Java's ``Number.longValue()`` does; division truncates toward zero.
* ``ruby``: seconds with a fraction (number or numeric string).

Parsers raise :class:`TimestampError` for anything else. Times must lie inside Druid's
eternity interval.

:func:`arrow_times` parses a whole Arrow column at once where Arrow provably agrees with these
parsers, leaving the other rows to them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from supervisor.chronology import MAX_INSTANT_MS, MIN_INSTANT_MS

__all__ = ["TimestampError", "TimestampParser", "arrow_times", "make_timestamp_parser", "parse_iso_ms"]

TimestampParser = Callable[[object], int]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Parsed "YYYY-MM-DDTHH:MM:SS" prefixes: event streams repeat the same second many times.
_SECOND_CACHE: dict[str, int] = {}
_SECOND_CACHE_MAX = 8192


class TimestampError(ValueError):
    pass


def _checked(ms: int) -> int:
    if not MIN_INSTANT_MS <= ms < MAX_INSTANT_MS:
        raise TimestampError("out of range")
    return ms


def _iso_slow(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimestampError("not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 timestamp (UTC when it has no offset)."""
    # Fast path for the usual "YYYY-MM-DDTHH:MM:SS[.fff]Z" shape.
    if len(text) >= 20 and text[10] == "T" and text[13] == ":" and text[16] == ":":
        head = text[:19]
        tail = text[19:]
        millis = -1
        if tail == "Z":
            millis = 0
        elif len(tail) == 5 and tail[0] == "." and tail[4] == "Z":
            digits = tail[1:4]
            if digits.isascii() and digits.isdigit():
                millis = int(digits)
        if millis >= 0:
            base = _SECOND_CACHE.get(head)
            if base is None:
                base = _iso_slow(head)
                if len(_SECOND_CACHE) >= _SECOND_CACHE_MAX:
                    _SECOND_CACHE.clear()
                _SECOND_CACHE[head] = base
            return base + millis
    return _iso_slow(text)


def _integer(value: object) -> int:
    """Java's ``longValue()`` of a JSON number or a numeric string."""
    if type(value) is int:
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise TimestampError("not a finite number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        if _DECIMAL.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return int(number)
    raise TimestampError("not a number")


def _div(value: int, divisor: int) -> int:
    """Integer division truncating toward zero, like Java's."""
    return value // divisor if value >= 0 else -((-value) // divisor)


def _auto(value: object) -> int:
    if type(value) is str:
        if value and (value[0].isdigit() or value[0] in "+-") and _INTEGER.fullmatch(value):
            return _checked(int(value))
        return _checked(parse_iso_ms(value))
    if type(value) is int or type(value) is float:
        return _checked(_integer(value))
    raise TimestampError("not a string or a number")


def _iso(value: object) -> int:
    if type(value) is str:
        return _checked(parse_iso_ms(value))
    raise TimestampError("not a string")


def _millis(value: object) -> int:
    return _checked(_integer(value))


def _posix(value: object) -> int:
    return _checked(_integer(value) * 1000)


def _micro(value: object) -> int:
    return _checked(_div(_integer(value), 1000))


def _nano(value: object) -> int:
    return _checked(_div(_integer(value), 1_000_000))


def _ruby(value: object) -> int:
    if type(value) is int:
        return _checked(value * 1000)
    if type(value) is float:
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        number = float(value)
    else:
        raise TimestampError("not a number")
    if not math.isfinite(number):
        raise TimestampError("not a finite number")
    return _checked(int(number * 1000))


_PARSERS: dict[str, TimestampParser] = {
    "auto": _auto,
    "iso": _iso,
    "millis": _millis,
    "posix": _posix,
    "micro": _micro,
    "nano": _nano,
    "ruby": _ruby,
}


def make_timestamp_parser(fmt: str) -> TimestampParser:
    """The parser for a ``timestampSpec.format``; raises ``ValueError`` for an unknown format."""
    try:
        return _PARSERS[fmt.lower()]
    except KeyError:
        raise ValueError(f"timestamp format '{fmt}' is not supported") from None


# ISO-8601 shapes that Arrow's string cast reads exactly as ``parse_iso_ms`` does (proven by
# tests/unit/test_arrow_times.py): a valid proleptic Gregorian date in years 0001-9999 (Arrow
# accepts year 0000, Python does not; the regex, not the cast, rejects 2026-02-30 so the cast
# does not raise), "T" or " ", HH:MM:SS in 00:00:00-23:59:59, 0-6 fraction digits, then "Z" or
# +-HH:MM (zoned), or nothing, which both read as UTC (naive).
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][48]|[13579][26]|[2468]0)00)"
_MONTH_DAY = (
    "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
)
_DATE_TIME = (
    f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?"
)
_ARROW_ZONED = (_DATE_TIME + "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$", pa.timestamp("us", "UTC"))
_ARROW_NAIVE = (_DATE_TIME + "$", pa.timestamp("us"))
# (multiplier, divisor) from an integer to epoch ms, per format that reads an integer so.
_ARROW_INT_SCALES = {
    "auto": (1, 1),
    "millis": (1, 1),
    "posix": (1000, 1),
    "ruby": (1000, 1),
    "micro": (1, 1000),
    "nano": (1, 1_000_000),
}


def arrow_times(column: pa.Array | pa.ChunkedArray, fmt: str) -> pa.Array:
    """int64 epoch ms per row where Arrow decides exactly as ``make_timestamp_parser(fmt)`` would
    (and that parser would not raise); null where it cannot decide, and for null inputs.

    Decided: ``auto``/``iso`` string columns in the shapes ``_ARROW_ZONED`` and ``_ARROW_NAIVE``; integer
    columns for ``auto``, ``millis``, ``posix``, ``ruby``, ``micro`` and ``nano`` inside the
    eternity range. Anything else (other formats or column types) comes back all null.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    fmt = fmt.lower()
    kind = column.type
    if fmt in ("auto", "iso") and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return _within(_floor_ms(_iso_micros(column)), MIN_INSTANT_MS, MAX_INSTANT_MS - 1)
    scale = _ARROW_INT_SCALES.get(fmt)
    if scale is not None and pa.types.is_integer(kind):
        try:
            values = column.cast(pa.int64())
        except pa.ArrowInvalid:  # uint64 beyond int64: leave it to Python
            return pa.nulls(len(column), pa.int64())
        multiplier, divisor = scale
        if divisor > 1:
            values = pc.divide(values, divisor)  # truncates toward zero, like _div
        # Bound before multiplying, so the product neither overflows nor leaves eternity.
        low = -(-MIN_INSTANT_MS // multiplier)
        return pc.multiply(_within(values, low, (MAX_INSTANT_MS - 1) // multiplier), multiplier)
    return pa.nulls(len(column), pa.int64())


def _within(values: pa.Array, low: int, high: int) -> pa.Array:
    """``values`` where ``low <= value <= high``, else null."""
    inside = pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high))
    return pc.if_else(inside, values, pa.scalar(None, pa.int64()))


def _iso_micros(strings: pa.Array) -> pa.Array:
    """Epoch µs of the strings in the zoned shape, then (for the rest) the naive one; else null."""
    micros = _shape_micros(strings, *_ARROW_ZONED)
    undecided = pc.and_(pc.is_null(micros), pc.is_valid(strings))
    if pc.any(undecided).as_py():
        naive = _shape_micros(strings.filter(undecided), *_ARROW_NAIVE)
        micros = pc.replace_with_mask(micros, undecided, naive)
    return micros


def _shape_micros(strings: pa.Array, pattern: str, unit: pa.DataType) -> pa.Array:
    """Epoch µs of the strings that match ``pattern``, cast as ``unit``; null for the others."""
    matched = pc.match_substring_regex(strings, pattern)
    if not pc.all(matched).as_py():
        strings = pc.if_else(matched, strings, pa.scalar(None, strings.type))
    return _cast_micros(strings, unit)


def _cast_micros(strings: pa.Array, unit: pa.DataType) -> pa.Array:
    """Arrow's cast of ``strings`` to ``unit`` as int64 µs. Should the cast reject a value, the
    halves are cast apart, down to the rejected values, which come back null."""
    try:
        return pc.cast(strings, unit).view(pa.int64())
    except pa.ArrowInvalid:
        if len(strings) <= 1:
            return pa.nulls(len(strings), pa.int64())
        half = len(strings) // 2
        return pa.concat_arrays([_cast_micros(strings[:half], unit), _cast_micros(strings[half:], unit)])


def _floor_ms(micros: pa.Array) -> pa.Array:
    """``micros // 1000`` (floor, as ``timedelta // _MS`` is); Arrow's ``divide`` truncates."""
    low = pc.min(micros).as_py()
    if low is not None and low < 0:
        micros = pc.if_else(pc.less(micros, 0), pc.subtract(micros, 999), micros)
    return pc.divide(micros, 1000)

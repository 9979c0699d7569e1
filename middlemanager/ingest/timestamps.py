"""Row timestamps as Druid's ``timestampSpec.format`` reads them, in UTC epoch milliseconds.

* ``auto``: a number is milliseconds; a string of digits (optionally signed) is milliseconds;
  any other string is ISO-8601 (``T`` or a space between date and time, offset optional = UTC).
* ``iso``: ISO-8601 strings only.
* ``millis``, ``posix`` (seconds), ``micro``, ``nano``: integers (numbers or numeric strings);
  a fraction is dropped first, as Java's ``Number.longValue()`` does; division truncates toward zero.
* ``ruby``: seconds with a fraction (number or numeric string).

Parsers raise :class:`TimestampError` for anything else. Times must lie inside Druid's
eternity interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from supervisor.granularity import ETERNITY_END_MS, ETERNITY_START_MS

__all__ = ["TimestampError", "TimestampParser", "make_timestamp_parser", "parse_iso_ms"]

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
    if not ETERNITY_START_MS <= ms < ETERNITY_END_MS:
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

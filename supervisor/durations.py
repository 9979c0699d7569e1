"""ISO-8601 durations as Druid specs write them (``PT10M``, ``PT1H``, ``P1D``, ``PT0.5S``).

Druid reads these fields as Joda ``Period`` objects and turns them into fixed
lengths of time. Years and months have no fixed length, so they are refused
here instead of guessed. Druid also accepts a bare JSON integer, meaning
milliseconds; :func:`parse_duration` does the same.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

__all__ = ["format_duration", "parse_duration"]

_PATTERN = re.compile(
    r"""
    P
    (?:(?P<years>\d+)Y)?
    (?:(?P<months>\d+)M)?
    (?:(?P<weeks>\d+)W)?
    (?:(?P<days>\d+)D)?
    (?:T
        (?:(?P<hours>\d+)H)?
        (?:(?P<minutes>\d+)M)?
        (?:(?P<seconds>\d+(?:[.,]\d+)?)S)?
    )?
    """,
    re.VERBOSE,
)

_US_PER_SECOND = 1_000_000
_US_PER_MINUTE = 60 * _US_PER_SECOND
_US_PER_HOUR = 60 * _US_PER_MINUTE
_US_PER_DAY = 24 * _US_PER_HOUR
_MAX_MICROS = timedelta.max // timedelta(microseconds=1)


def parse_duration(value: object) -> timedelta:
    """Parse an ISO-8601 period string, or integer milliseconds, into a ``timedelta``.

    Values beyond ``timedelta.max`` (Druid's "forever" is ``P2147483647D``) are capped at it.
    Raises ``ValueError`` with a message fit for a user when the value is not a
    duration we can turn into a fixed length of time. Negative values are refused.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value
    if isinstance(value, bool):
        raise ValueError("must be an ISO-8601 period such as 'PT1H' or a number of milliseconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(microseconds=min(value * 1000, _MAX_MICROS))
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 period such as 'PT1H' or a number of milliseconds")

    text = value.strip().upper()
    match = _PATTERN.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"invalid ISO-8601 period '{value}' (expected e.g. 'PT10M', 'PT1H', 'P1D')")
    parts = match.groupdict()
    if parts["years"] or parts["months"]:
        raise ValueError(
            f"period '{value}' uses years or months, which have no fixed length; use days instead"
        )
    try:
        seconds = Decimal(parts["seconds"].replace(",", ".")) if parts["seconds"] else Decimal(0)
    except InvalidOperation:  # pragma: no cover - the pattern only lets digits through
        raise ValueError(f"invalid ISO-8601 period '{value}'") from None
    micros = int(seconds * _US_PER_SECOND)
    if seconds * _US_PER_SECOND != micros:
        raise ValueError(f"period '{value}' is more precise than a microsecond")
    total = (
        int(parts["weeks"] or 0) * 7 * _US_PER_DAY
        + int(parts["days"] or 0) * _US_PER_DAY
        + int(parts["hours"] or 0) * _US_PER_HOUR
        + int(parts["minutes"] or 0) * _US_PER_MINUTE
        + micros
    )
    # Druid writes "forever" as P2147483647D, beyond timedelta's range: cap it at the maximum.
    return timedelta(microseconds=min(total, _MAX_MICROS))


def format_duration(value: timedelta) -> str:
    """The canonical ISO-8601 text of a non-negative ``timedelta`` (``PT1H``, ``P1DT2H``, ``PT0.5S``).

    ``parse_duration(format_duration(d)) == d`` for every non-negative ``d``.
    """
    total = value // timedelta(microseconds=1)
    if total < 0:
        raise ValueError("a negative duration has no ISO-8601 period form here")
    if total == 0:
        return "PT0S"
    days, rest = divmod(total, _US_PER_DAY)
    hours, rest = divmod(rest, _US_PER_HOUR)
    minutes, rest = divmod(rest, _US_PER_MINUTE)
    seconds, micros = divmod(rest, _US_PER_SECOND)
    out = "P"
    if days:
        out += f"{days}D"
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if micros:
        clock += f"{seconds}.{micros:06d}".rstrip("0") + "S"
    elif seconds:
        clock += f"{seconds}S"
    if clock:
        out += "T" + clock
    return out

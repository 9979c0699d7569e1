"""Calendar arithmetic on epoch milliseconds and the printed form of instants, in one place.

Days are counted from 1970-01-01 in the proleptic Gregorian calendar (Joda's ISO chronology, in
UTC), on integers: exact for any ``int``, including times before 1970 and far outside the years
1..9999 that ``datetime`` stops at (Howard Hinnant's ``days_from_civil`` / ``civil_from_days``).

Instants print the way Joda's ISO printer does in UTC with milliseconds
(``2015-09-12T00:00:00.000Z``). Years outside 0..9999 print with their full (possibly negative)
year, so Druid's ETERNITY bounds, ``JodaUtils.MIN_INSTANT`` and ``MAX_INSTANT``, come out exactly as
Druid prints them: ``-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z``.
"""

from __future__ import annotations

import math

from supervisor.clock import SYSTEM_CLOCK, Clock

__all__ = [
    "DATETIME_MAX_MS",
    "DATETIME_MIN_MS",
    "MAX_INSTANT_MS",
    "MIN_INSTANT_MS",
    "MS_PER_DAY",
    "civil_from_days",
    "days_from_civil",
    "format_instant",
    "format_seconds",
    "now_iso",
]

MS_PER_DAY = 86_400_000

#: ``JodaUtils.MIN_INSTANT`` / ``MAX_INSTANT`` (Long.MIN_VALUE / 2, Long.MAX_VALUE / 2): the bounds
#: of Druid's ETERNITY interval, which the ``ALL`` granularity's one bucket spans.
MIN_INSTANT_MS = -(2**62)
MAX_INSTANT_MS = 2**62 - 1


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (valid for any integer year)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01; inverse of :func:`days_from_civil`.

    Years are astronomical (year 0 is 1 BC), as in Joda's ISO chronology.
    """
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


#: The instants ``datetime`` can hold (years 1..9999), in epoch milliseconds.
DATETIME_MIN_MS = days_from_civil(1, 1, 1) * MS_PER_DAY
DATETIME_MAX_MS = days_from_civil(10000, 1, 1) * MS_PER_DAY - 1


def format_instant(ms: int) -> str:
    """``ms`` since the epoch as Druid prints a UTC instant: ``2015-09-12T00:00:00.000Z``."""
    days, rem = divmod(int(ms), MS_PER_DAY)
    year, month, day = civil_from_days(days)
    hour, rem = divmod(rem, 3_600_000)
    minute, rem = divmod(rem, 60_000)
    second, milli = divmod(rem, 1000)
    year_text = f"-{-year:04d}" if year < 0 else f"{year:04d}"
    return f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


def format_seconds(seconds: float) -> str:
    """Wall-clock seconds since the epoch (``time.time()``, ``Clock.now()``) as an instant."""
    return format_instant(math.floor(seconds * 1000))


def now_iso(clock: Clock = SYSTEM_CLOCK) -> str:
    """The clock's current time in Druid's form, milliseconds precision."""
    return format_seconds(clock.now())

"""Druid's standard time granularities, bucketing UTC epoch milliseconds.

Fixed-length granularities (SECOND ... DAY) bucket by integer division from the
epoch; WEEK buckets start on Mondays (ISO weeks); MONTH, QUARTER and YEAR follow
the proleptic Gregorian calendar (:mod:`supervisor.chronology`), so any ``int`` works,
including times before 1970 and far outside ``datetime``'s range. ALL has one bucket,
Druid's ETERNITY (``MIN_INSTANT_MS`` .. ``MAX_INSTANT_MS``).
"""

from __future__ import annotations

from enum import Enum

from supervisor.chronology import MAX_INSTANT_MS, MIN_INSTANT_MS, MS_PER_DAY, civil_from_days, days_from_civil
from supervisor.durations import parse_duration

__all__ = ["Granularity", "parse_granularity"]

_SECOND = 1_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = MS_PER_DAY
_WEEK = 7 * _DAY
# 1970-01-01 was a Thursday: the Monday that starts its ISO week is 3 days earlier.
_WEEK_OFFSET = 3 * _DAY


class Granularity(Enum):
    """A standard Druid granularity. ``Granularity["DAY"]`` and ``Granularity.DAY`` both work."""

    NONE = "NONE"
    SECOND = "SECOND"
    MINUTE = "MINUTE"
    FIVE_MINUTE = "FIVE_MINUTE"
    TEN_MINUTE = "TEN_MINUTE"
    FIFTEEN_MINUTE = "FIFTEEN_MINUTE"
    THIRTY_MINUTE = "THIRTY_MINUTE"
    HOUR = "HOUR"
    SIX_HOUR = "SIX_HOUR"
    EIGHT_HOUR = "EIGHT_HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    QUARTER = "QUARTER"
    YEAR = "YEAR"
    ALL = "ALL"

    @property
    def fixed_length_ms(self) -> int | None:
        """Bucket length in ms for NONE (1) ... WEEK; ``None`` for MONTH, QUARTER, YEAR and ALL.

        Buckets up to DAY are aligned on the epoch (``ms // length * length``); WEEK buckets
        are aligned on Mondays instead, so use :meth:`bucket_start` for them.
        """
        return _FIXED_MS.get(self)

    def bucket_start(self, ms: int) -> int:
        """Start (inclusive, UTC epoch ms) of the bucket holding ``ms``."""
        if self is Granularity.ALL:
            return MIN_INSTANT_MS
        if self is Granularity.WEEK:
            return (ms + _WEEK_OFFSET) // _WEEK * _WEEK - _WEEK_OFFSET
        fixed = _FIXED_MS.get(self)
        if fixed is not None:
            return ms // fixed * fixed
        year, month, _ = civil_from_days(ms // _DAY)
        if self is Granularity.MONTH:
            return days_from_civil(year, month, 1) * _DAY
        if self is Granularity.QUARTER:
            return days_from_civil(year, (month - 1) // 3 * 3 + 1, 1) * _DAY
        return days_from_civil(year, 1, 1) * _DAY  # YEAR

    def bucket_end(self, ms: int) -> int:
        """End (exclusive, UTC epoch ms) of the bucket holding ``ms``."""
        if self is Granularity.ALL:
            return MAX_INSTANT_MS
        fixed = _FIXED_MS.get(self)
        if fixed is not None:
            return self.bucket_start(ms) + fixed
        year, month, _ = civil_from_days(ms // _DAY)
        if self is Granularity.YEAR:
            return days_from_civil(year + 1, 1, 1) * _DAY
        months = 1 if self is Granularity.MONTH else 3
        first = month if self is Granularity.MONTH else (month - 1) // 3 * 3 + 1
        next_year, next_month0 = divmod(year * 12 + (first - 1) + months, 12)
        return days_from_civil(next_year, next_month0 + 1, 1) * _DAY


_FIXED_MS: dict[Granularity, int] = {
    Granularity.NONE: 1,
    Granularity.SECOND: _SECOND,
    Granularity.MINUTE: _MINUTE,
    Granularity.FIVE_MINUTE: 5 * _MINUTE,
    Granularity.TEN_MINUTE: 10 * _MINUTE,
    Granularity.FIFTEEN_MINUTE: 15 * _MINUTE,
    Granularity.THIRTY_MINUTE: 30 * _MINUTE,
    Granularity.HOUR: _HOUR,
    Granularity.SIX_HOUR: 6 * _HOUR,
    Granularity.EIGHT_HOUR: 8 * _HOUR,
    Granularity.DAY: _DAY,
    Granularity.WEEK: _WEEK,
}

# Period granularities in UTC that are exactly a standard granularity.
_PERIODS: dict[str, Granularity] = {
    "PT1S": Granularity.SECOND,
    "PT1M": Granularity.MINUTE,
    "PT5M": Granularity.FIVE_MINUTE,
    "PT10M": Granularity.TEN_MINUTE,
    "PT15M": Granularity.FIFTEEN_MINUTE,
    "PT30M": Granularity.THIRTY_MINUTE,
    "PT1H": Granularity.HOUR,
    "PT6H": Granularity.SIX_HOUR,
    "PT8H": Granularity.EIGHT_HOUR,
    "P1D": Granularity.DAY,
    "P1W": Granularity.WEEK,
    "P1M": Granularity.MONTH,
    "P3M": Granularity.QUARTER,
    "P1Y": Granularity.YEAR,
}
_UTC_NAMES = frozenset(
    {"UTC", "ETC/UTC", "Z", "GMT", "ETC/GMT", "UCT", "ETC/UCT", "UNIVERSAL", "ZULU", "+00:00"}
)


class GranularityError(ValueError):
    """A granularity we cannot accept; ``subpath`` names the offending key inside a JSON object form."""

    def __init__(self, problem: str, subpath: tuple[str, ...] = ()) -> None:
        super().__init__(problem)
        self.problem = problem
        self.subpath = subpath


def parse_granularity(value: object) -> Granularity:
    """A granularity from Druid JSON: a name (any case) or an object ``{"type": ...}``.

    Accepted objects: ``{"type": "all"}``, ``{"type": "none"}`` and a UTC period
    granularity whose period is exactly a standard one (``{"type": "period", "period": "PT1H"}``).
    Raises :class:`GranularityError` otherwise.
    """
    if isinstance(value, Granularity):
        return value
    if isinstance(value, str):
        try:
            return Granularity[value.strip().upper()]
        except KeyError:
            raise GranularityError(f"unknown granularity '{value}'") from None
    if not isinstance(value, dict):
        raise GranularityError("must be a granularity name such as 'DAY' or a granularity object")
    kind = value.get("type")
    if kind is None:
        raise GranularityError("is required", ("type",))
    if kind in ("all", "none"):
        for key in value:
            if key != "type":
                raise GranularityError("unknown field", (str(key),))
        return Granularity.ALL if kind == "all" else Granularity.NONE
    if kind != "period":
        raise GranularityError(f"granularity type '{kind}' is not supported yet", ("type",))
    for key in value:
        if key not in ("type", "period", "timeZone", "origin"):
            raise GranularityError("unknown field", (str(key),))
    period = value.get("period")
    if period is None:
        raise GranularityError("is required", ("period",))
    if not isinstance(period, str):
        raise GranularityError("must be an ISO-8601 period string", ("period",))
    time_zone = value.get("timeZone")
    if time_zone is not None and (
        not isinstance(time_zone, str) or time_zone.strip().upper() not in _UTC_NAMES
    ):
        raise GranularityError("time zones other than UTC are not supported yet", ("timeZone",))
    if value.get("origin") is not None:
        raise GranularityError("is not supported yet", ("origin",))
    standard = _PERIODS.get(period.strip().upper())
    if standard is None:
        try:
            parse_duration(period)
        except ValueError as exc:
            if "years or months" not in str(exc):
                raise GranularityError(str(exc), ("period",)) from None
        raise GranularityError(
            f"period granularity '{period}' is not supported yet (only periods equal to a standard "
            "granularity, e.g. 'PT1H' or 'P1D')",
            ("period",),
        )
    return standard

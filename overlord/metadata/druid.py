"""Druid's textual forms: instants, intervals, segment ids and DataSegment JSON.

Instants are formatted the way Joda's ISO printer does in UTC with milliseconds
(``2015-09-12T00:00:00.000Z``). Years outside 0..9999 are printed with their full
(possibly negative) year, so Druid's ETERNITY bounds used by the ``ALL`` granularity,
``JodaUtils.MIN_INSTANT`` and ``MAX_INSTANT``, come out exactly as Druid prints them:
``-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from supervisor.deep_storage import load_spec

MS_PER_DAY = 86_400_000

#: ``JodaUtils.MIN_INSTANT`` / ``MAX_INSTANT`` (Long.MIN_VALUE / 2, Long.MAX_VALUE / 2).
MIN_INSTANT_MS = -4_611_686_018_427_387_904
MAX_INSTANT_MS = 4_611_686_018_427_387_903

#: Druid's segment binary format version for segments it writes today.
BINARY_VERSION = 9


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day number since 1970-01-01.

    Howard Hinnant's algorithm; exact for any integer (astronomical year numbering, as Joda's ISO
    chronology), unlike ``datetime`` which stops at years 1..9999.
    """
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def format_instant(ms: int) -> str:
    """``ms`` since the epoch as Druid prints a UTC instant: ``2015-09-12T00:00:00.000Z``."""
    days, rem = divmod(int(ms), MS_PER_DAY)
    year, month, day = _civil_from_days(days)
    hour, rem = divmod(rem, 3_600_000)
    minute, rem = divmod(rem, 60_000)
    second, milli = divmod(rem, 1000)
    year_text = f"-{-year:04d}" if year < 0 else f"{year:04d}"
    return f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


def format_interval(start_ms: int, end_ms: int) -> str:
    """Druid's interval text ``start/end``."""
    return f"{format_instant(start_ms)}/{format_instant(end_ms)}"


def format_datetime(moment: datetime) -> str:
    """An aware (or naive UTC) ``datetime`` in Druid's form, milliseconds precision."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return format_instant(delta.days * MS_PER_DAY + delta.seconds * 1000 + delta.microseconds // 1000)


def now_iso() -> str:
    """The current UTC time in Druid's form; also used as a new segment version."""
    return format_datetime(datetime.now(UTC))


def segment_id(datasource: str, start_ms: int, end_ms: int, version: str, partition_num: int) -> str:
    """Druid's ``SegmentId.toString()``: ``{ds}_{start}_{end}_{version}`` plus ``_{n}`` when n > 0."""
    base = f"{datasource}_{format_instant(start_ms)}_{format_instant(end_ms)}_{version}"
    return f"{base}_{partition_num}" if partition_num > 0 else base


def data_segment_json(
    *,
    datasource: str,
    start_ms: int,
    end_ms: int,
    version: str,
    partition_num: int,
    path: str,
    dimensions: Sequence[str],
    metrics: Sequence[str],
    size_bytes: int,
    num_rows: int,
) -> dict[str, Any]:
    """Druid's DataSegment JSON for a segment at ``path`` (a deep-storage URI; ``numRows`` is our extra)."""
    ident = segment_id(datasource, start_ms, end_ms, version, partition_num)
    return {
        "dataSource": datasource,
        "interval": format_interval(start_ms, end_ms),
        "version": version,
        "loadSpec": load_spec(path),
        "dimensions": ",".join(dimensions),
        "metrics": ",".join(metrics),
        "shardSpec": {"type": "numbered", "partitionNum": partition_num, "partitions": 0},
        "binaryVersion": BINARY_VERSION,
        "size": size_bytes,
        "identifier": ident,
        "id": ident,
        "numRows": num_rows,
    }

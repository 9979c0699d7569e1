"""Differential tests: ``arrow_times`` against the per-value timestamp parsers."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from middlemanager.ingest import timestamps
from middlemanager.ingest.timestamps import TimestampError, arrow_times, make_timestamp_parser
from supervisor.chronology import MAX_INSTANT_MS, MIN_INSTANT_MS

_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ZONES = ("Z", "+00:00", "-00:00", "+05:30", "-11:45", "+23:59", "-23:59", "")


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _fraction(rng: random.Random, digits: int) -> str:
    return "." + "".join(rng.choice("0123456789") for _ in range(digits)) if digits else ""


def _valid_z(rng: random.Random) -> str:
    """The common shape: YYYY-MM-DDTHH:MM:SS[.f{1,3}]Z, a valid date in years 0001-9999."""
    year = rng.choice((rng.randint(1, 9999), rng.randint(1960, 2040)))
    month = rng.randint(1, 12)
    days = 29 if month == 2 and _leap(year) else 28 if month == 2 else _DAYS[month - 1]
    day = rng.choice((rng.randint(1, days), days))
    hms = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    return f"{year:04d}-{month:02d}-{day:02d}T{hms}{_fraction(rng, rng.randint(0, 3))}Z"


def _other_valid(rng: random.Random) -> str:
    """Other shapes arrow_times also decides: space, 4-6 fraction digits, offsets, no zone."""
    text = _valid_z(rng)[:19]
    if rng.random() < 0.3:
        text = text[:10] + " " + text[11:]
    return text + _fraction(rng, rng.randint(0, 6)) + rng.choice(_ZONES)


def _mutant(rng: random.Random) -> str:
    """A near miss of a valid timestamp: some may still parse in Python, none in the common shape."""
    text = _valid_z(rng)
    date, time = text[:10], text[11:19]
    year, month = int(date[:4]), int(date[5:7])
    choice = rng.randint(0, 22)
    if choice == 0:
        return f"{date[:8]}{rng.choice((29, 30, 31, 32, 0))}T{time}Z"  # maybe past the month's end
    if choice == 1:
        return f"{year:04d}-02-29T{time}Z"  # leap day, or not
    if choice == 2:
        return f"{rng.choice((100, 200, 1900, 2000, 2100, 2400, 4, 8))}-02-29T{time}Z".zfill(20)
    if choice == 3:
        return f"{date}T24:00:00Z"
    if choice == 4:
        return f"{date}T23:59:60Z"
    if choice == 5:
        return "0000" + text[4:]
    if choice == 6:
        return "0000-12-31T23:30:00" + rng.choice(("-01:00", "+01:00", "Z", ""))
    if choice == 7:
        return text[:-1] + "z"
    if choice == 8:
        return date + "t" + text[11:]
    if choice == 9:
        return rng.choice((" ", "\t", "\n", "  ")) + text
    if choice == 10:
        return text + rng.choice((" ", "\t", "\n", "\r\n"))
    if choice == 11:
        return text[:19] + _fraction(rng, rng.randint(7, 10)) + "Z"
    if choice == 12:
        return text[:19] + "." + rng.choice(("Z", ""))
    if choice == 13:
        return text[:19] + rng.choice(("+01", "+0530", "+01:60", "+24:00", "-99:00", "+01:00:30", "+00:00Z"))
    if choice == 14:
        return f"{date[:5]}{rng.choice(('00', '13', '1', '99'))}{date[7:]}T{time}Z"
    if choice == 15:
        return text[:19].replace(":", "", rng.randint(1, 2)) + "Z"
    if choice == 16:
        return rng.choice((date, date + "Z", date + "T12Z", date + "T12:30Z", date + "T12:30"))
    if choice == 17:
        return f"{rng.randint(-(10**15), 10**15)}"
    if choice == 18:
        return rng.choice(("", " ", "+5", "-0", "00", "1e3", "1.5", "nan", "now", "null", "Z", "T"))
    if choice == 19:
        return "\uff12\uff10\uff12\uff16" + text[4:]  # fullwidth digits
    if choice == 20:
        return f"+{year:05d}" + text[4:] if rng.random() < 0.5 else f"{year + 10000}" + text[4:]
    if choice == 21:
        return text.replace(".", ",") if "." in text else text[:19] + ",5Z"
    return text[:19] + ".123456Z" if month % 2 else text[:19] + ".000001-00:00"


def _python(fmt: str, value: object) -> int | None:
    try:
        return make_timestamp_parser(fmt)(value)
    except TimestampError:
        return None


def _check_agrees(column: pa.Array | pa.ChunkedArray, fmt: str) -> list[int | None]:
    """Assert every decided row equals the Python parser (which must not raise); nulls stay null."""
    result = arrow_times(column, fmt)
    assert isinstance(result, pa.Array)
    assert result.type == pa.int64()
    assert len(result) == len(column)
    decided: list[int | None] = result.to_pylist()
    for value, ms in zip(column.to_pylist(), decided, strict=True):
        if value is None:
            assert ms is None
        elif ms is not None:
            expected = make_timestamp_parser(fmt)(value)  # raises TimestampError if Arrow was wrong
            assert ms == expected, (fmt, value)
    return decided


@pytest.fixture(scope="module")
def strings() -> dict[str, list[str | None]]:
    rng = random.Random(20260101)
    return {
        "common": [_valid_z(rng) for _ in range(6000)],
        "other": [_other_valid(rng) for _ in range(4000)],
        "mutant": [_mutant(rng) for _ in range(6000)],
        "null": [None] * 50,
    }


@pytest.mark.parametrize("fmt", ["auto", "iso", "AUTO"])
def test_strings_agree_with_python(strings: dict[str, list[str | None]], fmt: str) -> None:
    everything = [value for group in strings.values() for value in group]
    random.Random(7).shuffle(everything)
    decided = dict(zip(everything, _check_agrees(pa.array(everything, pa.string()), fmt), strict=True))
    # The fast path really decides: every common-shape and other-shape value, and no null.
    assert all(decided[value] is not None for value in strings["common"] + strings["other"])
    # Nothing Python rejects is decided (that is implied above; this shows the mutants matter).
    rejected = [value for value in strings["mutant"] if _python(fmt, value) is None]
    assert len(rejected) > 1000
    assert all(decided[value] is None for value in rejected)


def test_edge_values() -> None:
    values = [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00.000001-00:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.999999-23:59",
        "1969-12-31T23:59:59.9999Z",
        "1969-12-31T23:59:59.9991Z",
        "1969-12-31T23:59:59.999Z",
        "1969-12-31T23:59:59.1Z",
        "1969-12-31T23:59:59.12",
        "1970-01-01T00:00:00Z",
        "2000-02-29T00:00:00Z",
        "2400-02-29T00:00:00Z",
        "2024-02-29 12:00:00",
        "1600-02-29T00:00:00Z",
    ]
    decided = _check_agrees(pa.array(values), "iso")
    assert None not in decided
    rejected = [
        "1900-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-12-31T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "0000-12-31T23:00:00-01:00",
        "1767225600000",
        "",
    ]
    assert _check_agrees(pa.array(rejected), "auto") == [None] * len(rejected)


def test_one_invalid_value_in_a_valid_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    casts: list[int] = []
    cast_micros = timestamps._cast_micros

    def counted(strings: pa.Array, unit: pa.DataType) -> pa.Array:
        casts.append(len(strings))
        return cast_micros(strings, unit)

    monkeypatch.setattr(timestamps, "_cast_micros", counted)
    rng = random.Random(3)
    values: list[str | None] = [_valid_z(rng) for _ in range(1000)]
    assert None not in _check_agrees(pa.array(values), "auto")
    assert casts == [1000]  # all valid: one cast
    bad_values = [
        "2026-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "0000-01-01T00:00:00Z",
    ]
    for index, bad in zip((0, 1, 500, 999), bad_values, strict=True):
        batch = list(values)
        batch[index] = bad
        casts.clear()
        decided = _check_agrees(pa.array(batch), "auto")
        assert decided[index] is None
        assert sum(ms is None for ms in decided) == 1
        # The regex keeps the invalid value from the cast: no halving; the naive shape gets one row.
        assert casts == [1000, 1]


def test_rejected_cast_is_isolated_by_halving() -> None:
    # The shapes' regex keeps invalid dates from the cast; should the cast still reject a value,
    # only that value is left undecided.
    unit = pa.timestamp("us", "UTC")
    values = ["2026-01-01T00:00:00Z"] * 100
    for index in (0, 37, 38, 99):
        values[index] = "2026-02-30T00:00:00Z"
    micros = timestamps._cast_micros(pa.array(values), unit).to_pylist()
    assert [index for index, us in enumerate(micros) if us is None] == [0, 37, 38, 99]
    assert {us for us in micros if us is not None} == {1767225600000000}


def test_chunked_large_and_empty_columns() -> None:
    rng = random.Random(5)
    values = [_valid_z(rng) for _ in range(300)] + [None, "x"]
    chunked = pa.chunked_array([pa.array(values[:100]), pa.array(values[100:])])
    assert _check_agrees(chunked, "iso")[:300] == [_python("iso", value) for value in values[:300]]
    assert _check_agrees(pa.array(values, pa.large_string()), "auto")[-2:] == [None, None]
    assert arrow_times(pa.chunked_array([], pa.string()), "iso").to_pylist() == []
    assert arrow_times(pa.array([], pa.int64()), "millis").to_pylist() == []


_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def _integers() -> list[int | None]:
    rng = random.Random(11)
    edges: list[int] = [0, 1, -1, 999, -999, 1000, -1000, 1001, -1001, 999_999, -999_999, 1_000_001]
    for bound in (MIN_INSTANT_MS, MAX_INSTANT_MS, _LONG_MIN, _LONG_MAX):
        for scale in (1, 1000, 1_000_000):
            for delta in (-2, -1, 0, 1, 2):
                edges.append(bound // scale + delta)
                edges.append(-(-bound // scale) + delta)
    values: list[int | None] = [value for value in edges if _LONG_MIN <= value <= _LONG_MAX]
    values += [rng.randint(_LONG_MIN, _LONG_MAX) for _ in range(2000)]
    values += [rng.randint(-(10**13), 10**13) for _ in range(2000)]
    values += [rng.randint(-(2**62) // 1000 - 10, 2**62 // 1000 + 10) for _ in range(500)]
    values += [None] * 10
    return values


@pytest.mark.parametrize("fmt", ["auto", "millis", "posix", "micro", "nano", "ruby", "Millis"])
def test_integers_agree_with_python(fmt: str) -> None:
    values = _integers()
    decided = _check_agrees(pa.array(values, pa.int64()), fmt)
    # For integers Arrow decides exactly the rows Python accepts.
    for value, ms in zip(values, decided, strict=True):
        if value is not None:
            assert (ms is None) == (_python(fmt, value) is None), (fmt, value)
    assert sum(ms is not None for ms in decided) > 2000


def test_other_integer_types() -> None:
    assert _check_agrees(pa.array([1, -2, None], pa.int32()), "posix") == [1000, -2000, None]
    assert arrow_times(pa.array([2**64 - 1, 5], pa.uint64()), "millis").to_pylist() == [None, None]


@pytest.mark.parametrize(
    ("column", "fmt"),
    [
        (pa.array(["2026-01-01T00:00:00Z"]), "millis"),
        (pa.array(["2026-01-01T00:00:00Z"]), "ruby"),
        (pa.array(["2026-01-01T00:00:00Z"]), "yyyy-MM-dd"),
        (pa.array([1767225600000]), "iso"),
        (pa.array([1767225600000]), "unknown"),
        (pa.array([1.5]), "auto"),
        (pa.array([1767225600000.0]), "millis"),
        (pa.array([b"2026-01-01T00:00:00Z"]), "auto"),
    ],
)
def test_undecided_formats_and_types(column: pa.Array, fmt: str) -> None:
    assert arrow_times(column, fmt).to_pylist() == [None]

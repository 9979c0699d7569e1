"""Aggregators beyond sums: first/last/any, filtered, and DataSketches (theta, HLL, quantiles)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import datasketches as ds
import pytest

from middlemanager.ingest import IngestPipeline
from supervisor.errors import InvalidSpec
from tests.unit.test_ingest import T0, event, ingest, make_spec, read_rows, records

SKETCHES = [
    {"type": "count", "name": "count"},
    {"type": "thetaSketch", "name": "users_theta", "fieldName": "user", "size": 4096},
    {"type": "HLLSketchBuild", "name": "users_hll", "fieldName": "user", "lgK": 12},
    {"type": "quantilesDoublesSketch", "name": "latency", "fieldName": "latency", "k": 128},
]


def _sketch_events(count: int, distinct: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        event(
            T0 + rng.randrange(3_600_000),
            page=f"p{rng.randrange(3)}",
            user=f"u{rng.randrange(distinct)}",
            latency=rng.random() * 100,
        )
        for _ in range(count)
    ]


def _estimates(rows: list[dict[str, Any]]) -> tuple[float, float, int]:
    """Theta and HLL estimates of the union over rows, and the quantiles sketch's n."""
    theta = ds.theta_union(12)
    hll = ds.hll_union(12)
    quantiles = ds.quantiles_doubles_sketch(128)
    for row in rows:
        theta.update(ds.compact_theta_sketch.deserialize(row["users_theta"]))
        hll.update(ds.hll_sketch.deserialize(row["users_hll"]))
        quantiles.merge(ds.quantiles_doubles_sketch.deserialize(row["latency"]))
    return theta.get_result().get_estimate(), hll.get_result().get_estimate(), quantiles.n


def _within(estimate: float, truth: int, rel: float) -> bool:
    return abs(estimate - truth) <= rel * truth


@pytest.mark.parametrize("rollup", [True, False])
def test_sketch_estimates_within_error_bounds(tmp_path: Path, rollup: bool) -> None:
    events = _sketch_events(30_000, 20_000, seed=1)
    truth = len({e["user"] for e in events})
    spec = make_spec(["page"], SKETCHES, segment="DAY", query="HOUR" if rollup else "NONE", rollup=rollup)
    _, files = ingest(spec, tmp_path, events)
    rows = read_rows(files)
    assert sum(row["count"] for row in rows) == len(events)
    if rollup:
        assert len(rows) == 3  # one per page: every event is in one hour
    theta, hll, n = _estimates(rows)
    # theta with 4096 nominal entries: RSE ~ 1/sqrt(4096) = 1.6%; HLL lgK 12: ~1.6%; 3 sigma
    assert _within(theta, truth, 0.05), (theta, truth)
    assert _within(hll, truth, 0.05), (hll, truth)
    assert n == len(events)


def test_sketch_bytes_read_back_with_datasketches(tmp_path: Path) -> None:
    events = [event(T0, page="a", user=f"u{i % 10}", latency=float(i)) for i in range(100)]
    _, files = ingest(make_spec(["page"], SKETCHES, query="HOUR"), tmp_path, events)
    (row,) = read_rows(files)
    theta = ds.compact_theta_sketch.deserialize(row["users_theta"])
    assert theta.is_ordered() and theta.get_estimate() == 10  # exact below the nominal entries
    hll = ds.hll_sketch.deserialize(row["users_hll"])
    assert hll.lg_config_k == 12 and round(hll.get_estimate()) == 10
    quantiles = ds.quantiles_doubles_sketch.deserialize(row["latency"])
    assert quantiles.n == 100 and quantiles.get_min_value() == 0.0 and quantiles.get_max_value() == 99.0


def test_rollup_of_two_persists_equals_one(tmp_path: Path) -> None:
    events = _sketch_events(8_000, 5_000, seed=2)
    spec = make_spec(["page"], SKETCHES, query="HOUR")
    _, files = ingest(spec, tmp_path, events, name="one")
    one = read_rows(files)
    pipeline = IngestPipeline(spec, tmp_path / "two" / "work")
    recs = records(events)
    pipeline.add(recs[:4000])
    pipeline.persist()
    pipeline.add(recs[4000:])
    pipeline.persist()
    two = read_rows(pipeline.finish(tmp_path / "two" / "out"))
    assert len(one) == len(two) == 3
    for a, b in zip(sorted(one, key=lambda r: r["page"]), sorted(two, key=lambda r: r["page"]), strict=True):
        assert a["count"] == b["count"]
        # theta unions are exact set operations on retained hashes: same sketch, same estimate
        assert (
            ds.compact_theta_sketch.deserialize(a["users_theta"]).get_estimate()
            == ds.compact_theta_sketch.deserialize(b["users_theta"]).get_estimate()
        )
        ha = ds.hll_sketch.deserialize(a["users_hll"]).get_estimate()
        hb = ds.hll_sketch.deserialize(b["users_hll"]).get_estimate()
        assert ha == pytest.approx(hb, rel=0.01)
        assert ds.quantiles_doubles_sketch.deserialize(b["latency"]).n == a["count"]


def test_sketch_inputs_keep_their_json_type() -> None:
    """A long, a double and a string are hashed differently (as Druid's aggregators do)."""
    from middlemanager.ingest.schema import sketch_value
    from middlemanager.ingest.sketches import _feed

    theta = ds.update_theta_sketch()
    _feed(theta.update, [sketch_value(v) for v in [1, 1.0, "1", ["1", 2], None, ""]], utf16=False)
    assert theta.get_estimate() == 4  # 1, 1.0, "1" (also the list's "1"), "2"
    expected = ds.update_theta_sketch()
    for value in (1, 1.0, "1", "2"):
        expected.update(value)
    assert theta.compact().serialize() == expected.compact().serialize()


def test_hll_hashes_strings_as_utf16le_by_default() -> None:
    from middlemanager.ingest.sketches import _as_utf16

    assert _as_utf16("ab").encode() == "ab".encode("utf-16-le")


FIRST_LAST = [
    {"type": "count", "name": "count"},
    {"type": "longFirst", "name": "first_added", "fieldName": "added"},
    {"type": "longLast", "name": "last_added", "fieldName": "added"},
    {"type": "doubleLast", "name": "last_price", "fieldName": "price"},
    {"type": "floatFirst", "name": "first_price", "fieldName": "price"},
    {"type": "stringFirst", "name": "first_comment", "fieldName": "comment", "maxStringBytes": 4},
    {"type": "stringLast", "name": "last_comment", "fieldName": "comment"},
    {"type": "longAny", "name": "any_added", "fieldName": "added"},
    {"type": "longLast", "name": "last_by_seq", "fieldName": "added", "timeColumn": "seq"},
]


def _first_last_events() -> list[dict[str, Any]]:
    rng = random.Random(3)
    events = []
    for i in range(2000):
        events.append(
            event(
                T0 + rng.randrange(3_600_000),
                page=f"p{i % 2}",
                added=i,
                price=i / 2,
                comment=f"c{i:05d}",
                seq=rng.randrange(10**6),
            )
        )
    return events


def _expected_first_last(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for page in ("p0", "p1"):
        mine = [e for e in events if e["page"] == page]
        first = min(mine, key=lambda e: e["ts"])  # min keeps the earliest arrival of equal times
        last = max(reversed(mine), key=lambda e: e["ts"])  # the latest arrival of equal times
        by_seq = max(reversed(mine), key=lambda e: e["seq"])
        out[page] = {
            "count": len(mine),
            "first_added": first["added"],
            "last_added": last["added"],
            "last_price": last["price"],
            "first_price": pytest.approx(first["price"]),
            "first_comment": first["comment"][:4],
            "last_comment": last["comment"],
            "last_by_seq": by_seq["added"],
        }
    return out


@pytest.mark.parametrize("persists", [0, 1, 3])
def test_first_last_with_rollup_across_persists(tmp_path: Path, persists: int) -> None:
    events = _first_last_events()
    spec = make_spec(["page"], FIRST_LAST, query="HOUR")
    pipeline = IngestPipeline(spec, tmp_path / "work")
    recs = records(events)
    step = len(recs) // (persists + 1)
    for index in range(0, len(recs), step):
        pipeline.add(recs[index : index + step])
        if persists:
            pipeline.persist()
    rows = read_rows(pipeline.finish(tmp_path / "out"))
    expected = _expected_first_last(events)
    assert len(rows) == 2
    for row in rows:
        want = expected[row["page"]]
        got = {key: row[key] for key in want}
        assert got == want
        assert row["any_added"] in {e["added"] for e in events if e["page"] == row["page"]}


def test_first_last_without_rollup_keeps_each_value(tmp_path: Path) -> None:
    events = _first_last_events()[:50]
    _, files = ingest(make_spec(["page"], FIRST_LAST, rollup=False), tmp_path, events)
    rows = read_rows(files)
    assert sorted(r["last_added"] for r in rows) == sorted(e["added"] for e in events)
    assert all(len(r["first_comment"]) == 4 for r in rows)


def test_filtered_aggregators(tmp_path: Path) -> None:
    metrics = [
        {"type": "count", "name": "count"},
        {
            "type": "filtered",
            "filter": {"type": "selector", "dimension": "country", "value": "fr"},
            "aggregator": {"type": "count", "name": "fr_count"},
        },
        {
            "type": "filtered",
            "name": "big_added",
            "filter": {"type": "bound", "dimension": "added", "lower": "50", "ordering": "numeric"},
            "aggregator": {"type": "longSum", "name": "ignored", "fieldName": "added"},
        },
        {
            "type": "filtered",
            "filter": {"type": "in", "dimension": "country", "values": ["de"]},
            "aggregator": {"type": "thetaSketch", "name": "de_users", "fieldName": "user"},
        },
        {
            "type": "filtered",
            "filter": {"type": "not", "field": {"type": "selector", "dimension": "country", "value": "fr"}},
            "aggregator": {"type": "longLast", "name": "last_not_fr", "fieldName": "added"},
        },
    ]
    countries = ["fr", "de", "it"]
    events = [
        event(T0 + i, page="a", country=countries[i % 3], added=i, user=f"u{i % 7}") for i in range(100)
    ]
    _, files = ingest(make_spec(["page"], metrics, query="HOUR"), tmp_path, events)
    (row,) = read_rows(files)
    assert row["count"] == 100
    assert row["fr_count"] == sum(1 for e in events if e["country"] == "fr")
    assert row["big_added"] == sum(e["added"] for e in events if e["added"] >= 50)
    de_users = {e["user"] for e in events if e["country"] == "de"}
    assert ds.compact_theta_sketch.deserialize(row["de_users"]).get_estimate() == len(de_users)
    assert row["last_not_fr"] == max(e["added"] for e in events if e["country"] != "fr")


def _spec_error(metrics: list[dict[str, Any]]) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as info:
        make_spec(["page"], metrics)
    return info.value


def test_hyper_unique_is_refused_with_a_pointer_to_hll() -> None:
    error = _spec_error([{"type": "hyperUnique", "name": "u", "fieldName": "user"}])
    assert "HLLSketchBuild" in str(error) and "metricsSpec[0].type" in str(error)


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        ({"type": "longSum", "name": "x", "fieldName": "y", "lgK": 12}, "metricsSpec[0].lgK"),
        ({"type": "HLLSketchBuild", "name": "x", "fieldName": "y", "lgK": 30}, "metricsSpec[0].lgK"),
        ({"type": "thetaSketch", "name": "x", "fieldName": "y", "size": 1000}, "metricsSpec[0].size"),
        ({"type": "thetaSketch", "name": "x", "fieldName": "y", "size": 16}, "metricsSpec[0].size"),
        ({"type": "quantilesDoublesSketch", "name": "x", "fieldName": "y", "k": 3}, "metricsSpec[0].k"),
        ({"type": "HLLSketchBuild", "name": "x", "fieldName": "y", "tgtHllType": "HLL_5"}, "tgtHllType"),
        ({"type": "filtered", "name": "x", "filter": {"type": "true"}}, "metricsSpec[0].aggregator"),
        ({"type": "stringFirst", "name": "x", "fieldName": "y", "maxStringBytes": 0}, "maxStringBytes"),
    ],
)
def test_bad_aggregator_fields_name_the_field(metric: dict[str, Any], field: str) -> None:
    assert field in str(_spec_error([metric]))

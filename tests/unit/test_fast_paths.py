"""Kernel (columnar) paths of the ingest engine agree exactly with the reference paths they replace."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from pydantic import TypeAdapter

from middlemanager.ingest import fastjson, sketches, transforms
from middlemanager.ingest import pipeline as pipeline_module
from middlemanager.ingest.schema import ColumnPlan, sketch_value
from middlemanager.ingest.transforms import column_of, filter_mask
from supervisor.filters import DimFilter
from supervisor.spec import parse_supervisor_spec
from tests.harness.specs import kafka_spec
from tests.unit.test_fast_transforms import count_fast_parses
from tests.unit.test_ingest import HOUR, T0, ingest_both_ways

FILTER = TypeAdapter(DimFilter)


def _values(kind: str, rng: random.Random, n: int) -> list[Any]:
    pool: list[Any]
    if kind == "long":
        pool = [0, 1, -1, 9, 10, 11, 2**53, 2**53 + 1, -(2**63), 2**63 - 1, 123456789012345678]
        pool += [rng.randint(-50, 50) for _ in range(20)]
    elif kind == "double":
        pool = [0.0, -0.0, 9.999999, 10.0, 10.000001, -10.0, math.inf, -math.inf, math.nan, 1e300, 5e-324]
        pool += [rng.uniform(-20, 20) for _ in range(20)]
    else:
        pool = ["", "a", "b", "Apple", "apple", "10", "9", "é", "\U0001f600", " a", "a "]
    return [None if rng.random() < 0.1 else rng.choice(pool) for _ in range(n)]


KERNEL_FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("long", {"type": "bound", "lower": "10", "ordering": "numeric"}),
    ("long", {"type": "bound", "lower": "10", "lowerStrict": True, "ordering": "numeric"}),
    ("long", {"type": "bound", "upper": "9007199254740992", "upperStrict": True, "ordering": "numeric"}),
    ("long", {"type": "bound", "lower": "-1.5", "upper": "10", "ordering": "numeric"}),
    ("double", {"type": "bound", "lower": "10", "ordering": "numeric"}),
    (
        "double",
        {"type": "bound", "lower": "-0", "upper": "1e300", "upperStrict": True, "ordering": "numeric"},
    ),
    ("double", {"type": "bound", "upper": "Infinity", "ordering": "numeric"}),
    ("string", {"type": "selector", "value": "Apple"}),
    ("string", {"type": "selector", "value": ""}),
    ("string", {"type": "selector", "value": None}),
    ("string", {"type": "in", "values": ["a", "", "\U0001f600"]}),
    ("string", {"type": "in", "values": ["b", None]}),
]


@pytest.mark.parametrize(("kind", "spec"), KERNEL_FILTERS, ids=[f"{k}:{s}" for k, s in KERNEL_FILTERS])
def test_kernel_filters_agree_with_the_row_path(kind: str, spec: dict[str, Any]) -> None:
    node: Any = FILTER.validate_python({**spec, "dimension": "x"})
    rng = random.Random(str(spec))
    values = _values(kind, rng, 2000)
    column = column_of(values)
    assert column is not None
    assert transforms._kernel_mask(node, column) is not None  # the kernel path is the one tested
    rows = [{"x": value} for value in values]
    expected = [node.evaluate(row) for row in rows]
    assert filter_mask(node, {"x": column}, len(rows), lambda: rows).to_pylist() == expected


def test_filters_without_a_kernel_keep_the_per_value_path() -> None:
    lexicographic: Any = FILTER.validate_python({"type": "bound", "dimension": "x", "lower": "a"})
    assert transforms._kernel_mask(lexicographic, pa.array(["a", "b"])) is None
    upper: Any = FILTER.validate_python(
        {"type": "selector", "dimension": "x", "value": "A", "extractionFn": {"type": "upper"}}
    )
    assert transforms._kernel_mask(upper, pa.array(["a", "b"])) is None
    numeric_on_strings: Any = FILTER.validate_python(
        {"type": "bound", "dimension": "x", "lower": "1", "ordering": "numeric"}
    )
    assert transforms._kernel_mask(numeric_on_strings, pa.array(["1", "x"])) is None


# ------------------------------------------------------------------ theta sketches in bulk


def _theta_metric(size: int) -> Any:
    doc = kafka_spec(
        "events",
        "events",
        "localhost:9092",
        dimensions=["page"],
        metrics=[{"type": "thetaSketch", "name": "users", "fieldName": "user", "size": size}],
    )
    return ColumnPlan(parse_supervisor_spec(doc).data_schema).metrics[0]


def _sketch_inputs(rng: random.Random, n: int, distinct: int) -> pa.Array:
    def one() -> Any:
        pick = rng.random()
        if pick < 0.05:
            return None
        if pick < 0.08:
            return ""
        if pick < 0.15:
            return rng.randrange(distinct)
        if pick < 0.2:
            return rng.randrange(distinct) / 7
        if pick < 0.25:
            return [f"u{rng.randrange(distinct)}", f"u{rng.randrange(distinct)}"]
        return f"u{rng.randrange(distinct)}"

    return pa.array([sketch_value(one()) for _ in range(n)], type=pa.string())


def _random_groups(rng: random.Random, n: int) -> tuple[Any, int]:
    # a few big groups, many small ones, groups of one, and an empty-input group
    num_groups = max(1, n // rng.choice([1, 3, 40, 400]))
    ids = np.array([rng.randrange(num_groups) for _ in range(n)], dtype=np.int64)
    ids[: n // 3] = 0  # one group far above k for the small sketches
    used = np.unique(ids)
    dense = np.searchsorted(used, ids)
    return sketches.groups_of(dense, len(used)), len(used)


@pytest.mark.parametrize("size", [32, 4096])
@pytest.mark.parametrize("seed", range(6))
def test_theta_sketches_in_bulk_are_the_library_s_bytes(
    size: int, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    if seed % 2:
        monkeypatch.setattr(sketches, "_RADIX_GROUPS", 0)  # the lexsort of many groups
    m = _theta_metric(size)
    kind = sketches._Kind(m)
    n = rng.choice([1, 2, 50, 3000, 12000])
    column = _sketch_inputs(rng, n, rng.choice([3, 100, 20000]))
    groups, num_groups = _random_groups(rng, n)
    order, offsets = groups
    values = column.take(pa.array(order)).to_pylist()
    expected = [kind.from_values(values[offsets[g] : offsets[g + 1]]) for g in range(num_groups)]
    assert sketches._theta_bulk(kind, sketches._singletons(kind, column), groups, lambda g: b"") is not None
    built = sketches.build(m, column, groups)
    assert built.to_pylist() == expected

    # the union of those sketches (and of one-row sketches) under another grouping
    blobs = pa.concat_arrays([built, sketches.build(m, column, None)])
    regroups, num_regroups = _random_groups(rng, len(blobs))
    reorder, reoffsets = regroups
    inputs = blobs.take(pa.array(reorder)).to_pylist()
    unions = [
        inputs[reoffsets[g]]
        if reoffsets[g + 1] - reoffsets[g] == 1
        else kind.union(inputs[reoffsets[g] : reoffsets[g + 1]])
        for g in range(num_regroups)
    ]
    exact = all(blob[0] != 3 for blob in inputs)  # no sketch in estimation mode (3 preamble words)
    assert (sketches._theta_bulk(kind, blobs, regroups, lambda g: b"") is not None) == exact
    assert sketches.merge(m, blobs, regroups).to_pylist() == unions


def test_theta_bulk_leaves_estimation_mode_sketches_to_the_library() -> None:
    m = _theta_metric(32)
    kind = sketches._Kind(m)
    estimating = kind.from_values([f"u{i}" for i in range(1000)])  # theta < 1: three preamble words
    blobs = pa.array([estimating, kind.from_values(["a"])], type=pa.binary())
    groups = sketches.groups_of(np.array([0, 0], dtype=np.int64), 1)
    assert sketches._theta_bulk(kind, blobs, groups, lambda g: b"") is None
    assert sketches.merge(m, blobs, groups).to_pylist() == [kind.union([estimating, kind.from_values(["a"])])]


# ------------------------------------------------------------------ filtered and first/last by timeColumn

FILTERED_METRICS: list[dict[str, Any]] = [
    {"type": "count", "name": "count"},
    {
        "type": "filtered",
        "filter": {"type": "equals", "column": "country", "matchValueType": "STRING", "matchValue": "fr"},
        "aggregator": {"type": "count", "name": "fr_count"},
    },
    {
        "type": "filtered",
        "name": "big_added",
        "filter": {"type": "range", "column": "added", "matchValueType": "LONG", "lower": 10},
        "aggregator": {"type": "longSum", "name": "ignored", "fieldName": "added"},
    },
    {
        "type": "filtered",
        "filter": {"type": "bound", "dimension": "added", "upper": "4", "ordering": "numeric"},
        "aggregator": {"type": "longMax", "name": "small_max", "fieldName": "added"},
    },
    {
        "type": "filtered",
        # "flag" is in no schema column: its type is learned from the records
        "filter": {
            "type": "or",
            "fields": [
                {"type": "in", "dimension": "flag", "values": ["keep"]},
                {"type": "expression", "expression": "added * 2 > 30"},
            ],
        },
        "aggregator": {"type": "thetaSketch", "name": "kept_users", "fieldName": "user"},
    },
    {
        "type": "filtered",
        "filter": {
            "type": "interval",
            "dimension": "__time",
            "intervals": ["2024-01-01T00:00/2024-01-01T01:00"],
        },
        "aggregator": {"type": "longLast", "name": "early_last", "fieldName": "added"},
    },
    {"type": "longFirst", "name": "first_by_seq", "fieldName": "added", "timeColumn": "seq"},
    {"type": "stringLast", "name": "last_by_seq", "fieldName": "page", "timeColumn": "seq"},
]


def _filtered_event(rng: random.Random) -> bytes:
    event: dict[str, Any] = {
        "ts": datetime.fromtimestamp((T0 + rng.randrange(3 * HOUR)) / 1000, tz=UTC).isoformat(),
        "page": rng.choice(["a", "b", "é", None]),
        "country": rng.choice(["fr", "de", None]),
        "added": rng.randrange(20),
        "user": rng.choice(["u1", "u2", "u3", "u4", "u5"]),
        "flag": rng.choice(["keep", "drop", None]),
        "seq": rng.choice([rng.randrange(10**6), None]),
    }
    if rng.random() < 0.02:  # a bad one now and then: its batch goes to the reference path
        event[rng.choice(["seq", "flag", "added"])] = rng.choice([1.5, "x", [1]])
    return orjson.dumps(event)


@pytest.mark.parametrize("transforms_too", [False, True])
@pytest.mark.parametrize("rollup", [False, True])
def test_filtered_and_time_column_aggregators_take_the_fast_path_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rollup: bool, transforms_too: bool
) -> None:
    doc = _events_spec(["page", "country"], FILTERED_METRICS, rollup)
    if transforms_too:
        doc["spec"]["dataSchema"]["transformSpec"] = {
            "transforms": [{"type": "expression", "name": "page", "expression": "upper(page)"}],
            "filter": {"type": "not", "field": {"type": "selector", "dimension": "country", "value": "de"}},
        }
    rng = random.Random(int(rollup) + 2 * int(transforms_too))
    stats = _fast_equals_reference(tmp_path, monkeypatch, doc, [_filtered_event(rng) for _ in range(3000)])
    assert stats["processed"] > 0


def _events_spec(dimensions: list[Any], metrics: list[dict[str, Any]], rollup: bool) -> dict[str, Any]:
    doc: dict[str, Any] = kafka_spec(
        "events",
        "events",
        "localhost:9092",
        timestamp={"column": "ts", "format": "auto"},
        dimensions=dimensions,
        metrics=metrics,
        rollup=rollup,
        query_granularity="minute" if rollup else "none",
        tuning={"maxSavedParseExceptions": 10000, "deadLetterTopic": "dlq"},
    )
    return doc


def _fast_equals_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any], values: list[Any]
) -> dict[str, Any]:
    """Ingest ``values`` on the fast path (some batches taken) and on the reference path: the same
    stats, reports, dead letters and segments. Returns the stats."""
    monkeypatch.setattr(pipeline_module, "_FAST_MIN_SPLIT", 8)
    taken = count_fast_parses(monkeypatch)
    spec = parse_supervisor_spec(doc)
    fast, reference = ingest_both_ways(
        tmp_path, values, 500, monkeypatch, spec, max_message_time=T0 + 2 * HOUR, sort_reports=True
    )
    assert taken[0] > 0
    assert fast == reference
    stats: dict[str, Any] = fast[0]
    return stats


# ------------------------------------------------------------------ transforms of double inputs


def _priced_event(rng: random.Random) -> bytes:
    event: dict[str, Any] = {
        "ts": datetime.fromtimestamp((T0 + rng.randrange(3 * HOUR)) / 1000, tz=UTC).isoformat(),
        "page": rng.choice(["a", "b", "c"]),
        "price": rng.choice([rng.randrange(-400, 400) / 8, 1e21, 2.5e-7, None]),
        "rate": rng.choice([0.5, 1.25, -3.0]),  # outside the schema: its type is learned
    }
    text = orjson.dumps(event)
    pick = rng.random()
    if pick < 0.01:  # an integer literal: a long on the reference path, so not read here
        event["price"] = rng.randrange(-5, 5)
        text = orjson.dumps(event)
    elif pick < 0.02:  # a backslash: the literal check cannot run, the batch is not read here
        text = text.replace(b'"page":"', b'"page":"\\\\', 1)
    return text


@pytest.mark.parametrize("rollup", [False, True])
def test_transforms_of_double_inputs_take_the_fast_path_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rollup: bool
) -> None:
    doc = _events_spec(
        ["page", {"type": "double", "name": "twice"}, "label", {"type": "long", "name": "whole"}],
        [{"type": "count", "name": "count"}, {"type": "doubleSum", "name": "priceSum", "fieldName": "price"}],
        rollup,
    )
    doc["spec"]["dataSchema"]["transformSpec"] = {
        "transforms": [
            {"type": "expression", "name": "twice", "expression": "price * rate"},
            {"type": "expression", "name": "label", "expression": "concat(page, '-', price)"},
            {"type": "expression", "name": "whole", "expression": "cast(price, 'LONG')"},
        ],
        "filter": {"type": "bound", "dimension": "price", "upper": "40", "ordering": "numeric"},
    }
    rng = random.Random(int(rollup))
    stats = _fast_equals_reference(tmp_path, monkeypatch, doc, [_priced_event(rng) for _ in range(3000)])
    assert stats["processed"] > 0 and stats["thrownAway"] > 0


def test_integer_literals_of_a_double_input_are_found() -> None:
    pattern = fastjson._number_after_key("price")
    table = pa.table({"price": [1.0, 2.0]})
    assert fastjson._double_literals_only(b'{"price":1.0}\n{"price" : 2e0}', table, [("price", pattern)])
    assert not fastjson._double_literals_only(b'{"price":1.0}\n{"price":2}', table, [("price", pattern)])
    # a nested key of the same name is counted too: the batch is refused, never misread
    assert not fastjson._double_literals_only(
        b'{"price":1.0,"o":{"price":3}}\n{"price":2.0}', table, [("price", pattern)]
    )
    assert not fastjson._double_literals_only(
        b'{"price":1.0}\n{"p\\u0072ice":2}', table, [("price", pattern)]
    )

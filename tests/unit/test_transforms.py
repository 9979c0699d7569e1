"""transformSpec in the ingest engine: every filter type decided the same way on columns as
per row (with Druid's documented results), and transforms through the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import TypeAdapter

from middlemanager.ingest.pipeline import IngestPipeline
from middlemanager.ingest.transforms import column_of, filter_mask
from supervisor.filters import DimFilter
from supervisor.spec import parse_supervisor_spec
from tests.unit.test_ingest import DAY, T0, event, read_rows, records

FILTER = TypeAdapter(DimFilter)

ROWS: list[dict[str, Any]] = [
    {"page": "Apple", "n": 5, "d": 2.5, "tags": ["a", "b"], "__time": T0, "other": "Apple"},
    {"page": "banana", "n": None, "d": None, "tags": [], "__time": T0 + DAY, "other": "x"},
    {"page": None, "n": -3, "d": 10.0, "tags": ["c"], "__time": T0 + 2 * DAY, "other": None},
    {"page": "", "n": 12, "d": -0.5, "tags": None, "__time": T0 - DAY, "other": ""},
]

# (filter, Druid's result per row: True, False or None = unknown)
CASES: list[tuple[dict[str, Any], list[bool | None]]] = [
    ({"type": "selector", "dimension": "page", "value": "Apple"}, [True, False, None, False]),
    ({"type": "selector", "dimension": "page", "value": None}, [False, False, True, False]),
    ({"type": "selector", "dimension": "n", "value": "5"}, [True, None, False, False]),
    ({"type": "selector", "dimension": "tags", "value": "b"}, [True, None, False, None]),
    (
        {
            "type": "selector",
            "dimension": "page",
            "value": "APP",
            "extractionFn": {"type": "substring", "index": 0, "length": 3},
        },
        [False, False, None, None],
    ),
    (
        {"type": "selector", "dimension": "page", "value": "APPLE", "extractionFn": {"type": "upper"}},
        [True, False, None, False],
    ),
    (
        {"type": "selector", "dimension": "page", "value": "6", "extractionFn": {"type": "strlen"}},
        [False, True, None, False],
    ),
    (
        {"type": "extraction", "dimension": "page", "value": "apple", "extractionFn": {"type": "lower"}},
        [True, False, None, False],
    ),
    (
        {"type": "equals", "column": "n", "matchValueType": "LONG", "matchValue": 12},
        [False, None, False, True],
    ),
    (
        {"type": "equals", "column": "page", "matchValueType": "STRING", "matchValue": ""},
        [False, False, None, True],
    ),
    ({"type": "null", "column": "page"}, [False, False, True, False]),
    ({"type": "null", "column": "missing"}, [True, True, True, True]),
    ({"type": "in", "dimension": "page", "values": ["Apple", "banana"]}, [True, True, None, False]),
    ({"type": "in", "dimension": "page", "values": ["banana", None]}, [False, True, True, False]),
    (
        {"type": "bound", "dimension": "n", "lower": "0", "upper": "10", "ordering": "numeric"},
        [True, None, False, False],
    ),
    ({"type": "bound", "dimension": "page", "lower": "B", "lowerStrict": True}, [False, True, None, False]),
    (
        {
            "type": "range",
            "column": "d",
            "matchValueType": "DOUBLE",
            "lower": 0,
            "upperOpen": True,
            "upper": 10,
        },
        [True, None, False, False],
    ),
    (
        {"type": "range", "column": "page", "matchValueType": "STRING", "upper": "B"},
        [True, False, None, True],
    ),
    ({"type": "like", "dimension": "page", "pattern": "%an%"}, [False, True, None, False]),
    ({"type": "like", "dimension": "page", "pattern": "A____"}, [True, False, None, False]),
    ({"type": "regex", "dimension": "page", "pattern": "^[a-z]"}, [False, True, None, False]),
    (
        {
            "type": "regex",
            "dimension": "page",
            "pattern": "^p",
            "extractionFn": {"type": "regex", "expr": "(.)(.)", "index": 2},
        },
        [True, False, None, False],
    ),
    (
        {"type": "search", "dimension": "page", "query": {"type": "contains", "value": "APP"}},
        [True, False, None, False],
    ),
    (
        {
            "type": "search",
            "dimension": "page",
            "query": {"type": "contains", "value": "APP", "caseSensitive": True},
        },
        [False, False, None, False],
    ),
    (
        {"type": "search", "dimension": "page", "query": {"type": "insensitive_contains", "value": "NAN"}},
        [False, True, None, False],
    ),
    (
        {"type": "search", "dimension": "page", "query": {"type": "fragment", "values": ["b", "n"]}},
        [False, True, None, False],
    ),
    (
        {
            "type": "interval",
            "dimension": "__time",
            "intervals": ["2024-01-01T00:00:00Z/2024-01-02T00:00:00Z", "2024-01-03/P1D"],
        },
        [True, False, True, False],
    ),
    (
        {
            "type": "selector",
            "dimension": "__time",
            "value": "2024-01-02",
            "extractionFn": {"type": "timeFormat", "format": "yyyy-MM-dd"},
        },
        [False, True, False, False],
    ),
    (
        {
            "type": "selector",
            "dimension": "__time",
            "value": "2023-12",
            "extractionFn": {"type": "timeFormat", "format": "yyyy-MM", "timeZone": "America/Los_Angeles"},
        },
        [True, False, False, True],
    ),
    (
        {"type": "selector", "dimension": "d", "value": "0", "extractionFn": {"type": "bucket", "size": 5}},
        [True, None, False, False],
    ),
    (
        {
            "type": "selector",
            "dimension": "page",
            "value": "[Apple]",
            "extractionFn": {"type": "stringFormat", "format": "[%s]"},
        },
        [True, False, False, False],
    ),
    (
        {
            "type": "selector",
            "dimension": "page",
            "value": "Apple",
            "extractionFn": {"type": "partial", "expr": "pp"},
        },
        [True, None, None, None],
    ),
    (
        {
            "type": "selector",
            "dimension": "page",
            "value": "AP",
            "extractionFn": {
                "type": "cascade",
                "extractionFns": [{"type": "upper"}, {"type": "substring", "index": 0, "length": 2}],
            },
        },
        [True, False, None, None],
    ),
    # Druid's ColumnComparisonFilter: two nulls are equal
    ({"type": "columnComparison", "dimensions": ["page", "other"]}, [True, False, True, True]),
    ({"type": "expression", "expression": "n > 0 && strlen(page) > 4"}, [True, None, False, False]),
    ({"type": "expression", "expression": "nvl(n, 0) == 0"}, [False, True, False, False]),
    ({"type": "true"}, [True, True, True, True]),
    ({"type": "false"}, [False, False, False, False]),
    (
        {
            "type": "and",
            "fields": [
                {"type": "selector", "dimension": "page", "value": "Apple"},
                {"type": "null", "column": "n"},
            ],
        },
        [False, False, False, False],
    ),
    (
        {
            "type": "or",
            "fields": [
                {"type": "selector", "dimension": "page", "value": "Apple"},
                {"type": "null", "column": "n"},
            ],
        },
        [True, True, None, False],
    ),
    (
        {"type": "not", "field": {"type": "selector", "dimension": "page", "value": "Apple"}},
        [False, True, None, True],
    ),
]


@pytest.mark.parametrize(("spec", "expected"), CASES, ids=[str(case[0]) for case in CASES])
def test_filter_on_columns_agrees_with_rows_and_druid(
    spec: dict[str, Any], expected: list[bool | None]
) -> None:
    node = FILTER.validate_python(spec)
    per_row = [node.evaluate(row) for row in ROWS]
    assert per_row == expected
    names = {name for row in ROWS for name in row}
    columns = {name: column_of([row.get(name) for row in ROWS]) for name in names}
    on_columns = filter_mask(node, columns, len(ROWS), lambda: ROWS).to_pylist()
    assert on_columns == per_row


def test_every_filter_type_is_in_the_table() -> None:
    types = {case[0]["type"] for case in CASES}
    assert types >= {
        "selector",
        "equals",
        "null",
        "in",
        "bound",
        "range",
        "like",
        "regex",
        "search",
        "interval",
        "columnComparison",
        "expression",
        "true",
        "false",
        "and",
        "or",
        "not",
    }


def _spec(transform_spec: dict[str, Any], dimensions: list[Any], **tuning: Any) -> Any:
    return parse_supervisor_spec(
        {
            "type": "kafka",
            "spec": {
                "dataSchema": {
                    "dataSource": "events",
                    "timestampSpec": {"column": "ts", "format": "auto"},
                    "dimensionsSpec": {"dimensions": dimensions},
                    "metricsSpec": [
                        {"type": "count", "name": "count"},
                        {"type": "longSum", "name": "net", "fieldName": "net"},
                    ],
                    "granularitySpec": {
                        "segmentGranularity": "DAY",
                        "queryGranularity": "NONE",
                        "rollup": False,
                    },
                    "transformSpec": transform_spec,
                },
                "ioConfig": {
                    "topic": "events",
                    "inputFormat": {"type": "json"},
                    "consumerProperties": {"bootstrap.servers": "localhost:9092"},
                },
                "tuningConfig": {"type": "kafka", **tuning},
            },
        }
    )


TRANSFORMS = {
    "transforms": [
        {"type": "expression", "name": "page", "expression": "upper(page)"},
        {"type": "expression", "name": "net", "expression": "added - deleted"},
        {
            "type": "expression",
            "name": "__time",
            "expression": "timestamp_floor(__time, 'PT1H') + 60000 * lag",
        },
        {"type": "expression", "name": "ratio", "expression": "added / deleted"},
    ],
    "filter": {"type": "bound", "dimension": "net", "lower": "0", "ordering": "numeric"},
}


def test_transforms_then_filter_through_the_pipeline(tmp_path: Path) -> None:
    spec = _spec(TRANSFORMS, ["page", {"type": "long", "name": "ratio"}], maxSavedParseExceptions=5)
    values = [
        event(T0 + 3_723_000, page="main", added=10, deleted=3, lag=2),  # kept: net 7
        event(T0 + 10, page="talk", added=1, deleted=5, lag=0),  # net -4: filtered out
        event(T0 + 20, page="zero", added=4, deleted=0, lag=0),  # 4 / 0 fails: unparseable
        event(T0 + 30, page="ünï", added=5, deleted=5, lag=1),  # kept: net 0
    ]
    pipeline = IngestPipeline(spec, tmp_path / "work")
    pipeline.add(records(values))
    stats = pipeline.stats
    assert (stats.processed, stats.thrown_away, stats.unparseable) == (2, 1, 1)
    assert "Could not transform value for ratio" in pipeline.parse_exceptions[0].message
    rows = sorted(read_rows(pipeline.finish(tmp_path / "out")), key=lambda row: row["page"])
    assert [(row["page"], row["net"], row["ratio"], row["__time"]) for row in rows] == [
        ("MAIN", 7, 3, T0 + 3_600_000 + 120_000),
        ("ÜNÏ", 0, 1, T0 + 60_000),
    ]


def test_transform_outputs_can_be_filtered_on_and_keep_the_message_window(tmp_path: Path) -> None:
    spec = _spec(
        {
            "transforms": [
                {"type": "expression", "name": "__time", "expression": "__time + 86400000 * shift"}
            ],
            "filter": {"type": "expression", "expression": "shift >= 0"},
        },
        ["page"],
    )
    values = [
        event(T0, page="a", shift=0, net=1),
        event(T0, page="b", shift=1, net=1),
        event(T0, page="c", shift=-1, net=1),
    ]
    pipeline = IngestPipeline(spec, tmp_path / "work", max_message_time=T0 + DAY)
    pipeline.add(records(values))
    assert (pipeline.stats.processed, pipeline.stats.thrown_away) == (1, 2)
    rows = read_rows(pipeline.finish(tmp_path / "out"))
    assert [(row["page"], row["__time"]) for row in rows] == [("a", T0)]


def test_mixed_typed_input_takes_the_row_path_with_the_same_result(tmp_path: Path) -> None:
    spec = _spec(
        {"transforms": [{"type": "expression", "name": "label", "expression": "concat(v, '!')"}]}, ["label"]
    )
    values = [
        event(T0, v=1, net=1),
        event(T0, v="x", net=1),
        event(T0, v=2.5, net=1),
        event(T0, v=["a"], net=1),
    ]
    pipeline = IngestPipeline(spec, tmp_path / "work")
    pipeline.add(records(values))
    rows = read_rows(pipeline.finish(tmp_path / "out"))
    assert sorted(row["label"] for row in rows) == ["1!", "2.5!", "a!", "x!"]


def test_column_of_refuses_mixed_values() -> None:
    assert column_of([1, None, 2]) == pa.array([1, None, 2])
    assert column_of([1, 2.5]) is None
    assert column_of(["a", 1]) is None
    assert column_of([["a"]]) is None

"""The json format's flattenSpec: root, path, jq and tree fields, with and without field discovery
(Druid's docs, docs/ingestion/data-formats.md "FlattenSpec")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.spec import parse_supervisor_spec
from tests.unit.test_ingest import ingest, read_rows

FIELDS = [
    # without field discovery the timestamp too is read only when listed (as in Druid)
    {"type": "root", "name": "ts"},
    {"type": "root", "name": "page"},
    {"type": "path", "name": "city", "expr": "$.geo.city"},
    {"type": "path", "name": "first_tag", "expr": "$.tags[0]"},
    {"type": "path", "name": "spaced", "expr": "$['geo']['the zip']"},
    {"type": "jq", "name": "country", "expr": ".geo.country | ascii_upcase"},
    {"type": "jq", "name": "tag_count", "expr": ".tags | length"},
    {"type": "tree", "name": "lat", "nodes": ["geo", "point", "lat"]},
]


def _spec(discovery: bool, dimensions: list[Any] | None) -> Any:
    return parse_supervisor_spec(
        {
            "type": "kafka",
            "spec": {
                "dataSchema": {
                    "dataSource": "flat",
                    "timestampSpec": {"column": "ts", "format": "millis"},
                    "dimensionsSpec": {"dimensions": dimensions or []},
                    "granularitySpec": {"segmentGranularity": "DAY", "rollup": False},
                },
                "ioConfig": {
                    "topic": "flat",
                    "inputFormat": {
                        "type": "json",
                        "flattenSpec": {"useFieldDiscovery": discovery, "fields": FIELDS},
                    },
                    "consumerProperties": {"bootstrap.servers": "localhost:9092"},
                },
            },
        }
    )


EVENTS = [
    {
        "ts": 1_700_000_000_000,
        "page": "A",
        "user": "u1",
        "tags": ["x", "y"],
        "geo": {"city": "Paris", "country": "fr", "the zip": "75001", "point": {"lat": 48}},
    },
    {"ts": 1_700_000_001_000, "page": "B", "user": "u2", "tags": [], "geo": {"city": "Oslo"}},
    {"ts": 1_700_000_002_000, "page": "C", "user": "u3"},
]


def test_listed_dimensions_come_from_the_flattened_fields(tmp_path: Path) -> None:
    dims = ["page", "city", "first_tag", "spaced", "country", "tag_count", "lat"]
    pipeline, files = ingest(_spec(False, dims), tmp_path, EVENTS)
    rows = sorted(read_rows(files), key=lambda r: r["page"])
    assert [(r["page"], r["city"], r["first_tag"], r["spaced"], r["country"]) for r in rows] == [
        ("A", "Paris", "x", "75001", "FR"),
        ("B", "Oslo", None, None, None),
        ("C", None, None, None, None),
    ]
    assert [(r["tag_count"], r["lat"]) for r in rows] == [("2", "48"), ("0", None), ("0", None)]
    assert pipeline.stats.processed == 3 and pipeline.stats.unparseable == 0


def test_without_field_discovery_only_the_listed_fields_are_columns(tmp_path: Path) -> None:
    _pipeline, files = ingest(_spec(False, None), tmp_path, EVENTS)
    columns = set(read_rows(files)[0])
    assert "user" not in columns and "geo" not in columns
    assert {"page", "city", "country", "lat"} <= columns


def test_with_field_discovery_the_top_level_fields_stay(tmp_path: Path) -> None:
    _pipeline, files = ingest(_spec(True, None), tmp_path, EVENTS)
    rows = sorted(read_rows(files), key=lambda r: r["page"])
    assert [r["user"] for r in rows] == ["u1", "u2", "u3"]
    assert rows[0]["city"] == "Paris"


def test_without_field_discovery_an_unlisted_timestamp_is_missing(tmp_path: Path) -> None:
    spec = _spec(False, ["page"])
    fields = [f for f in spec.io_config.input_format.flatten_spec.fields if f.name != "ts"]
    flatten = spec.io_config.input_format.flatten_spec.model_copy(update={"fields": tuple(fields)})
    fmt = spec.io_config.input_format.model_copy(update={"flatten_spec": flatten})
    spec = spec.model_copy(update={"io_config": spec.io_config.model_copy(update={"input_format": fmt})})
    pipeline, files = ingest(spec, tmp_path, EVENTS)
    assert pipeline.stats.unparseable == 3 and not read_rows(files)


def test_unparseable_records_are_still_counted(tmp_path: Path) -> None:
    pipeline, files = ingest(_spec(False, ["page", "city"]), tmp_path, [*EVENTS, b"{not json", b"[1]"])
    assert pipeline.stats.unparseable == 2
    assert len(read_rows(files)) == 3

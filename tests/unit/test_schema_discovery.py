"""Type-aware schema discovery (useSchemaDiscovery) and the json column type in Parquet.

Druid's rules (docs/ingestion/schema-design.md, "Type-aware schema discovery"): a discovered
column is STRING, LONG, DOUBLE, ARRAY<STRING|LONG|DOUBLE> or COMPLEX<json>, the least restrictive
type of its values; booleans are longs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from middlemanager.ingest import IngestPipeline
from middlemanager.ingest.schema import JSON_OUTPUT_TYPE, least_restrictive, value_type
from supervisor.errors import InvalidSpec
from supervisor.records import Record
from supervisor.spec import SupervisorSpec, parse_supervisor_spec, read_supervisor_spec

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def make_spec(dimensions_spec: dict[str, Any], rollup: bool = False, **tuning: Any) -> SupervisorSpec:
    return parse_supervisor_spec(payload_of(dimensions_spec, rollup, **tuning))


def payload_of(dimensions_spec: dict[str, Any], rollup: bool = False, **tuning: Any) -> dict[str, Any]:
    return {
        "type": "kafka",
        "spec": {
            "dataSchema": {
                "dataSource": "events",
                "timestampSpec": {"column": "ts", "format": "millis"},
                "dimensionsSpec": dimensions_spec,
                "metricsSpec": [{"type": "count", "name": "count"}],
                "granularitySpec": {
                    "segmentGranularity": "DAY",
                    "queryGranularity": "NONE",
                    "rollup": rollup,
                },
            },
            "ioConfig": {
                "topic": "events",
                "inputFormat": {"type": "json"},
                "consumerProperties": {"bootstrap.servers": "localhost:9092"},
            },
            "tuningConfig": {"type": "kafka", **tuning},
        },
    }


def ingest(
    spec: SupervisorSpec, tmp_path: Path, events: list[dict[str, Any]], batch: int, persists: int = 0
) -> pa.Table:
    pipeline = IngestPipeline(spec, tmp_path / "work", None, None)
    records = [Record(0, i, orjson.dumps(e), 1_000 + i) for i, e in enumerate(events)]
    for index in range(0, len(records), batch):
        pipeline.add(records[index : index + batch])
    files = pipeline.finish(tmp_path / "out")
    assert pipeline.persist_count >= persists
    assert len(files) == 1
    return pq.read_table(files[0].path)


DISCOVERY = {"dimensions": [], "useSchemaDiscovery": True}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2], "long"),
        ([True, 3], "long"),  # useStrictBooleans: booleans are longs
        ([1, 2.5], "double"),
        ([2**70], "double"),  # beyond a long
        ([1, "a"], "string"),
        (["a", 1.5, None], "string"),
        ([[1, 2], 3], "array_long"),
        ([[1, 2.5]], "array_double"),
        ([[1], ["x"], 2.0], "array_string"),
        ([[], None], "array"),
        ([[None], [4]], "array_long"),
        ([{"a": 1}], "json"),
        ([1, {"a": 1}], "json"),
        ([[{"a": 1}]], "json"),  # an array of objects
        ([[[1, 2]]], "json"),  # an array of arrays
        ([[1], {"a": 1}], "json"),
        ([None], None),
    ],
)
def test_least_restrictive_type(values: list[Any], expected: str | None) -> None:
    found: str | None = None
    for value in values:
        found = least_restrictive(found, value_type(value))
    assert found == expected
    # the order in which values arrive does not matter
    again: str | None = None
    for value in reversed(values):
        again = least_restrictive(again, value_type(value))
    assert again == expected


def test_discovered_columns_get_druid_types(tmp_path: Path) -> None:
    events = [
        {"ts": T0, "l": 1, "d": 1.5, "s": "a", "b": True, "al": [1, 2], "ad": [1.5], "as": ["x", "y"],
         "j": {"k": [1, {"z": None}]}, "n": None, "e": []},
        {"ts": T0 + 1, "l": 2, "d": 2, "s": "b", "b": False, "al": [3], "ad": [2], "as": ["z"],
         "j": {"k": "v"}, "n": None, "e": []},
    ]  # fmt: skip
    table = ingest(make_spec(DISCOVERY), tmp_path, events, batch=10)
    schema = table.schema
    assert {f.name: f.type for f in schema} == {
        "__time": pa.int64(),
        "al": pa.list_(pa.int64()),
        "ad": pa.list_(pa.float64()),
        "as": pa.list_(pa.string()),
        "b": pa.int64(),
        "d": pa.float64(),
        "e": pa.list_(pa.string()),
        "j": JSON_OUTPUT_TYPE,
        "l": pa.int64(),
        "n": pa.string(),
        "s": pa.string(),
        "count": pa.int64(),
    }
    rows = table.to_pylist()
    assert [r["l"] for r in rows] == [1, 2]
    assert [r["d"] for r in rows] == [1.5, 2.0]
    assert [r["b"] for r in rows] == [1, 0]
    assert [r["al"] for r in rows] == [[1, 2], [3]]
    assert [r["ad"] for r in rows] == [[1.5], [2.0]]
    assert [r["as"] for r in rows] == [["x", "y"], ["z"]]  # array order kept, not sorted
    assert [r["e"] for r in rows] == [[], []]
    assert [orjson.loads(r["j"]) for r in rows] == [{"k": [1, {"z": None}]}, {"k": "v"}]


def test_without_schema_discovery_everything_is_a_string(tmp_path: Path) -> None:
    events = [{"ts": T0, "l": 1, "d": 1.5, "al": [2, 1]}]
    table = ingest(make_spec({"dimensions": []}), tmp_path, events, batch=10)
    assert {f.name: f.type for f in table.schema} == {
        "__time": pa.int64(),
        "al": pa.list_(pa.string()),
        "d": pa.string(),
        "l": pa.string(),
        "count": pa.int64(),
    }
    assert table.to_pylist()[0]["al"] == ["1", "2"]  # a multi-value string: sorted


def test_listed_dimensions_keep_their_type_and_the_rest_is_discovered(tmp_path: Path) -> None:
    spec = make_spec({"dimensions": [{"name": "l", "type": "string"}], "useSchemaDiscovery": True})
    table = ingest(spec, tmp_path, [{"ts": T0, "l": 1, "x": 2}], batch=10)
    assert [(f.name, f.type) for f in table.schema] == [
        ("__time", pa.int64()),
        ("l", pa.string()),
        ("x", pa.int64()),
        ("count", pa.int64()),
    ]
    assert table.to_pylist()[0] == {"__time": T0, "l": "1", "x": 2, "count": 1}


@pytest.mark.parametrize("rollup", [False, True])
def test_a_type_widening_mid_task_converts_what_was_held_and_persisted(tmp_path: Path, rollup: bool) -> None:
    """Batches of 2 rows, 2 rows in memory: earlier rows were persisted with the narrower types."""
    values: list[Any] = [5, 10, 1.5, 9, "x", [7], None, 10]
    events = [
        {"ts": T0 + i % 3, "v": v, "w": [1] if i < 4 or i == 7 else [i, 2.5]} for i, v in enumerate(values)
    ]
    table = ingest(
        make_spec(DISCOVERY, rollup=rollup, maxRowsInMemory=2), tmp_path, events, batch=2, persists=3
    )
    assert table.schema.field("v").type == pa.list_(pa.string())
    assert table.schema.field("w").type == pa.list_(pa.float64())
    rows = [(r["__time"] - T0, r["v"], r["w"], r["count"]) for r in table.to_pylist()]
    # Java's text of each value (5 -> "5", 1.5 -> "1.5"), except the long 9, which came while the
    # column was a double: it is held as 9.0 and shows as "9.0" (a known difference: Druid keeps
    # each value's own type). The 10 of a row persisted while the column was a long and the 10
    # that came once it was an array are one value: with rollup, one row.
    ten = [(1, ["10"], [1.0], 2)] if rollup else [(1, ["10"], [1.0], 1)] * 2
    assert sorted(rows, key=repr) == sorted(
        [
            (0, None, [6.0, 2.5], 1),
            (0, ["5"], [1.0], 1),
            (0, ["9.0"], [1.0], 1),
            *ten,
            (1, ["x"], [4.0, 2.5], 1),
            (2, ["1.5"], [1.0], 1),
            (2, ["7"], [5.0, 2.5], 1),
        ],
        key=repr,
    )
    # segment order: __time first
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)


def test_json_dimension_is_parquet_json_readable_by_duckdb(tmp_path: Path) -> None:
    spec = make_spec({"dimensions": [{"name": "j", "type": "json"}, "s"]})
    events = [{"ts": T0, "j": {"a": {"b": 3}}, "s": "x"}, {"ts": T0 + 1, "j": [1, "two"], "s": "y"}]
    pipeline = IngestPipeline(spec, tmp_path / "work", None, None)
    pipeline.add([Record(0, i, orjson.dumps(e), 1_000 + i) for i, e in enumerate(events)])
    (file,) = pipeline.finish(tmp_path / "out")
    column = pq.ParquetFile(file.path).schema.column(1)
    assert column.name == "j"
    assert str(column.logical_type) == "JSON"  # Parquet's JSON logical type, not a plain string
    assert pq.read_schema(file.path).field("j").type == JSON_OUTPUT_TYPE
    duckdb = pytest.importorskip("duckdb")  # an optional reader: pip install duckdb
    connection = duckdb.connect()
    result = connection.execute(
        "SELECT typeof(j), j->>'$.a.b', json_extract(j, '$[1]') FROM read_parquet(?) ORDER BY __time",
        [str(file.path)],
    ).fetchall()
    assert result == [("JSON", "3", None), ("JSON", None, '"two"')]


# ----------------------------------------------------------------------------- indexSpec


def test_index_spec_sets_parquet_codecs_and_front_coding(tmp_path: Path) -> None:
    index_spec = {
        "dimensionCompression": "UNCOMPRESSED",
        "metricCompression": "lz4",
        "jsonCompression": "none",
        "stringDictionaryEncoding": {"type": "frontCoded", "bucketSize": 4},
    }
    spec = make_spec(
        {"dimensions": ["s", {"name": "n", "type": "long"}, {"name": "j", "type": "json"}]},
        indexSpec=index_spec,
    )
    table_path = tmp_path / "out"
    pipeline = IngestPipeline(spec, tmp_path / "work", None, None)
    pipeline.add(
        [Record(0, i, orjson.dumps({"ts": T0 + i, "s": f"v{i}", "n": i, "j": {"i": i}}), 0) for i in range(3)]
    )
    (file,) = pipeline.finish(table_path)
    group = pq.read_metadata(file.path).row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert {name: c.compression for name, c in columns.items()} == {
        "__time": "ZSTD",  # lz4 is Druid's default: the default here
        "s": "UNCOMPRESSED",
        "n": "UNCOMPRESSED",
        "j": "UNCOMPRESSED",
        "count": "ZSTD",
    }
    assert "DELTA_BYTE_ARRAY" in columns["s"].encodings  # front coded: no dictionary
    assert "RLE_DICTIONARY" not in columns["s"].encodings
    assert "RLE_DICTIONARY" in columns["n"].encodings
    assert [r["s"] for r in pq.read_table(file.path).to_pylist()] == ["v0", "v1", "v2"]


def test_without_index_spec_segments_keep_zstd_and_dictionaries(tmp_path: Path) -> None:
    pipeline = IngestPipeline(make_spec({"dimensions": ["s"]}), tmp_path / "work", None, None)
    pipeline.add([Record(0, 0, orjson.dumps({"ts": T0, "s": "a"}), 0)])
    (file,) = pipeline.finish(tmp_path / "out")
    group = pq.read_metadata(file.path).row_group(0)
    assert [group.column(i).compression for i in range(group.num_columns)] == ["ZSTD"] * 3
    assert "RLE_DICTIONARY" in group.column(1).encodings


def test_index_spec_fields_without_a_parquet_equivalent_are_unhonoured() -> None:
    def unhonoured(index_spec: dict[str, Any]) -> list[str]:
        payload = payload_of({"dimensions": ["s"]}, indexSpec=index_spec)
        return read_supervisor_spec(payload).notes.members().get("unhonouredFields", [])

    druid_defaults = {
        "bitmap": {"type": "roaring"},
        "dimensionCompression": "lz4",
        "metricCompression": "lz4",
        "longEncoding": "longs",
        "stringDictionaryEncoding": {"type": "utf8"},
    }
    assert unhonoured(druid_defaults) == []
    assert (
        unhonoured({"dimensionCompression": "zstd", "stringDictionaryEncoding": {"type": "frontCoded"}}) == []
    )
    prefix = "spec.tuningConfig.indexSpec."
    assert unhonoured(
        {"bitmap": {"type": "concise"}, "longEncoding": "auto", "metricCompression": "LZF"}
    ) == [
        prefix + "bitmap",
        prefix + "longEncoding",
        prefix + "metricCompression",
    ]


@pytest.mark.parametrize(
    ("index_spec", "message"),
    [
        ({"dimensionCompression": "snappy"}, "dimensionCompression: unknown compression 'snappy'"),
        ({"longEncoding": "delta"}, "longEncoding: unknown long encoding 'delta'"),
        (
            {"stringDictionaryEncoding": {"type": "fst"}},
            "stringDictionaryEncoding.type: unknown string dictionary",
        ),
    ],
)
def test_bad_index_spec_values_are_refused_naming_the_field(index_spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        make_spec({"dimensions": ["s"]}, indexSpec=index_spec)
    assert message in str(info.value)

"""The csv, tsv/delimited and kafka input formats: readers (middlemanager/ingest/formats) and the
pipeline over them (columnar and row paths agree; bad records counted, reported, dead-lettered)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from middlemanager.ingest.formats import reader_for
from middlemanager.ingest.pipeline import IngestPipeline
from supervisor.records import RecordBatch, RecordMetadata
from supervisor.spec import SupervisorSpec, parse_supervisor_spec
from tests.unit.test_ingest import read_rows

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z

SPEC: dict[str, Any] = {
    "type": "kafka",
    "spec": {
        "dataSchema": {
            "dataSource": "f",
            "timestampSpec": {"column": "ts", "format": "iso"},
            "dimensionsSpec": {
                "dimensions": ["page", {"type": "long", "name": "n"}, {"type": "double", "name": "d"}]
            },
            "granularitySpec": {"segmentGranularity": "hour", "queryGranularity": "none", "rollup": False},
        },
        "ioConfig": {
            "topic": "t",
            "inputFormat": {"type": "csv", "columns": ["ts", "page", "n", "d"]},
            "consumerProperties": {"bootstrap.servers": "localhost:9092"},
        },
        "tuningConfig": {"type": "kafka", "maxSavedParseExceptions": 50, "deadLetterTopic": "dlq"},
    },
}


def spec_with(input_format: dict[str, Any], **schema: Any) -> SupervisorSpec:
    doc = copy.deepcopy(SPEC)
    doc["spec"]["ioConfig"]["inputFormat"] = input_format
    doc["spec"]["dataSchema"].update(schema)
    return parse_supervisor_spec(doc)


def batch(values: list[bytes | None], metadata: RecordMetadata | None = None) -> RecordBatch:
    n = len(values)
    return RecordBatch([0] * n, list(range(n)), values, [T0 + i for i in range(n)], metadata)


def run(
    spec: SupervisorSpec, tmp_path: Path, values: list[bytes | None], **kw: Any
) -> tuple[IngestPipeline, list[dict[str, Any]]]:
    pipeline = IngestPipeline(spec, tmp_path / "work")
    pipeline.add(batch(values, **kw))
    pipeline.stats  # noqa: B018 - settles
    files = pipeline.finish(tmp_path / "out")
    return pipeline, sorted(read_rows(files), key=lambda r: r["__time"])


def iso(second: int) -> str:
    return f"2024-01-01T00:00:{second:02d}Z"


# --------------------------------------------------------------------------- csv


def test_csv_reader_quotes_nulls_and_lines() -> None:
    fmt = spec_with({"type": "csv", "columns": ["a", "b", "c"]}).io_config.input_format
    reader = reader_for(fmt)
    assert reader is not None
    out = reader.decode(batch([b'x,"y, z","q""uote"', b'1,,""', b"p,q,r\ns,t,u"]))
    assert out.errors == []
    assert out.sources == [0, 1, 2, 2]
    assert out.table is not None
    # an unquoted empty value is null, a quoted one the empty string (opencsv EMPTY_SEPARATORS)
    assert out.table.to_pylist() == [
        {"a": "x", "b": "y, z", "c": 'q"uote'},
        {"a": "1", "b": None, "c": ""},
        {"a": "p", "b": "q", "c": "r"},
        {"a": "s", "b": "t", "c": "u"},
    ]


def test_csv_wrong_column_count_and_bad_utf8_are_errors_of_their_record_only() -> None:
    reader = reader_for(spec_with({"type": "csv", "columns": ["a", "b"]}).io_config.input_format)
    assert reader is not None
    values: list[bytes | None] = [b"1,2", b"1,2,3", b"4,5", b"6", None, b"\xff\xfe,x", b"7,8"]
    out = reader.decode(batch(values))
    assert [index for index, _ in out.errors] == [1, 3, 4, 5]
    assert "Expected 2 columns, got 3" in out.errors[0][1]
    assert "tombstone" in out.errors[2][1]
    assert out.sources == [0, 2, 6]
    assert out.table is not None and out.table.column("a").to_pylist() == ["1", "4", "7"]


def test_csv_header_and_skipped_rows_per_record() -> None:
    fmt = spec_with(
        {"type": "csv", "findColumnsFromHeader": True, "skipHeaderRows": 1}
    ).io_config.input_format
    reader = reader_for(fmt)
    assert reader is not None
    out = reader.decode(batch([b"junk\nb,a\n1,2\n3,4", b"skip\na,b\n5,6", b"only one line"]))
    assert out.sources == [0, 0, 1]
    assert out.table is not None
    assert out.table.to_pylist() == [{"b": "1", "a": "2"}, {"b": "3", "a": "4"}, {"b": "6", "a": "5"}]
    assert [index for index, _ in out.errors] == [2]


def test_csv_ingests_typed_columns_multi_values_and_counts_bad_records(tmp_path: Path) -> None:
    spec = spec_with({"type": "csv", "columns": ["ts", "page", "n", "d"], "listDelimiter": "|"})
    values: list[bytes | None] = [
        f'{iso(0)},"a, b",1,1.5'.encode(),
        f"{iso(1)},x|y,2,".encode(),
        f"{iso(2)},c,3".encode(),  # one column short: unparseable
        f"{iso(3)},d,abc,2".encode(),  # a long that is not a number: processed with error
        b"not a time,e,1,1",  # unparseable timestamp
        f"{iso(5)},,+7,1e3".encode(),
    ]
    pipeline, rows = run(spec, tmp_path, values)
    stats = pipeline.stats
    assert (stats.processed, stats.processed_with_error, stats.unparseable) == (3, 1, 2)
    assert [(r["__time"] - T0, r["page"], r["n"], r["d"]) for r in rows] == [
        # a column with a multi-value row is a list column in the segment
        (0, ["a, b"], 1, 1.5),
        (1000, ["x", "y"], 2, None),
        (3000, ["d"], None, 2.0),
        (5000, None, 7, 1000.0),
    ]
    assert {e.offset for e in pipeline.parse_exceptions} == {2, 3, 4}
    assert {r.offset for r in pipeline.rejected} == {2, 4}


@pytest.mark.parametrize("columnar", [True, False])
def test_csv_columnar_and_row_paths_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, columnar: bool
) -> None:
    from middlemanager.ingest import pipeline as pipeline_module

    spec = spec_with({"type": "csv", "columns": ["ts", "page", "n", "d"]})
    values: list[bytes | None] = [f"{iso(i % 60)},p{i % 7},{i},{i / 4}".encode() for i in range(500)]
    values[17] = b"broken"
    if not columnar:
        monkeypatch.setattr(pipeline_module, "cast_exactly", lambda column, target: None)
    pipeline, rows = run(spec, tmp_path / str(columnar), values)
    assert pipeline.stats.processed == 499 and pipeline.stats.unparseable == 1
    expected = sorted(((i % 60) * 1000, f"p{i % 7}", i, i / 4) for i in range(500) if i != 17)
    assert sorted((r["__time"] - T0, r["page"], r["n"], r["d"]) for r in rows) == expected


# --------------------------------------------------------------------------- tsv


def test_tsv_has_no_quoting_and_takes_multi_character_delimiters(tmp_path: Path) -> None:
    spec = spec_with({"type": "tsv", "columns": ["ts", "page", "n", "d"]})
    _, rows = run(
        spec, tmp_path / "tab", [f'{iso(0)}\t"quoted"\t1\t2.5'.encode(), f"{iso(1)}\t\t\t".encode()]
    )
    assert [(r["page"], r["n"], r["d"]) for r in rows] == [('"quoted"', 1, 2.5), (None, None, None)]
    spec = spec_with({"type": "delimited", "columns": ["ts", "page", "n", "d"], "delimiter": "::"})
    _, rows = run(
        spec, tmp_path / "multi", [f"{iso(0)}::a,b::3::4".encode(), f"{iso(1)}::x\x01y::5::6".encode()]
    )
    assert [(r["page"], r["n"], r["d"]) for r in rows] == [(["a,b"], 3, 4.0), (["x", "y"], 5, 6.0)]


# --------------------------------------------------------------------------- kafka


def kafka_metadata(keys: list[bytes | None], headers: list[Any]) -> RecordMetadata:
    return RecordMetadata(keys, headers, ["topic-a"] * len(keys))


def test_kafka_format_adds_key_headers_timestamp_and_topic(tmp_path: Path) -> None:
    fmt = {
        "type": "kafka",
        "valueFormat": {"type": "json"},
        "keyFormat": {"type": "tsv", "columns": ["x"]},
        "headerFormat": {"type": "string", "encoding": "ISO-8859-1"},
    }
    dims = [
        "page",
        "kafka.key",
        "kafka.header.env",
        "kafka.topic",
        {"type": "long", "name": "kafka.timestamp"},
    ]
    spec = spec_with(fmt, dimensionsSpec={"dimensions": dims})
    values: list[bytes | None] = [
        b'{"ts": "2024-01-01T00:00:00Z", "page": "a"}',
        b'{"ts": "2024-01-01T00:00:01Z", "page": "b", "kafka.key": "payload wins"}',
        b'{"ts": "2024-01-01T00:00:02Z", "page": "c"}',
        b"not json",
    ]
    meta = kafka_metadata(
        [b"k1", b"k2", None, b"k4"],
        [[("env", b"prod")], None, [("env", "caf\u00e9".encode("latin-1")), ("other", None)], []],
    )
    pipeline, rows = run(spec, tmp_path, values, metadata=meta)
    assert pipeline.stats.unparseable == 1
    assert [
        (r["page"], r["kafka.key"], r["kafka.header.env"], r["kafka.topic"], r["kafka.timestamp"])
        for r in rows
    ] == [
        ("a", "k1", "prod", "topic-a", T0),
        ("b", "payload wins", None, "topic-a", T0 + 1),
        ("c", None, "caf\u00e9", "topic-a", T0 + 2),
    ]


def test_kafka_format_over_csv_values_with_the_kafka_timestamp_as_time(tmp_path: Path) -> None:
    fmt = {"type": "kafka", "valueFormat": {"type": "csv", "columns": ["page", "n"]}}
    spec = spec_with(
        fmt,
        timestampSpec={"column": "kafka.timestamp", "format": "millis"},
        dimensionsSpec={"dimensions": ["page", {"type": "long", "name": "n"}, "kafka.key"]},
    )
    meta = kafka_metadata([b"k", b"k"], [None, None])
    _, rows = run(spec, tmp_path, [b"a,1", b"b,2"], metadata=meta)
    # no keyFormat: the key is not read (Druid's KafkaInputReader)
    assert [(r["__time"] - T0, r["page"], r["n"], r["kafka.key"]) for r in rows] == [
        (0, "a", 1, None),
        (1, "b", 2, None),
    ]

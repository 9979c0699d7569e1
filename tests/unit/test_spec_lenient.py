"""Druid's leniency: unknown fields listed, mistakes hinted, Jackson's scalars, Druid's GET output,
fields with no effect reported, legacy ``parser`` specs translated."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import InvalidSpec
from supervisor.spec import KafkaTuningConfig, parse_supervisor_spec, read_supervisor_spec
from tests.unit.test_ingest import ingest, read_rows
from tests.unit.test_spec import base

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"


def notes(payload: dict[str, Any]) -> dict[str, list[str]]:
    return read_supervisor_spec(payload).notes.members()


def refused(payload: dict[str, Any]) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(payload)
    return info.value


# --------------------------------------------------------------------------- unknown fields


def test_unknown_fields_anywhere_are_accepted_listed_and_dropped() -> None:
    payload = base()
    payload["comment"] = "from our wiki"
    payload["spec"]["fooBar"] = 1
    payload["spec"]["dataSchema"]["owner"] = "team-a"
    payload["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"][1]["colour"] = "red"
    payload["spec"]["ioConfig"]["inputFormat"]["zzz"] = True
    payload["spec"]["tuningConfig"]["fooBar"] = 3
    payload["spec"]["tuningConfig"]["partitionsSpec"] = {
        "type": "dynamic",
        "maxRowsPerSegment": 9,
        "xyzzy": 1,
    }
    parsed = read_supervisor_spec(payload)
    assert parsed.notes.members() == {
        "ignoredFields": [
            "comment",
            "spec.dataSchema.dimensionsSpec.dimensions[1].colour",
            "spec.dataSchema.owner",
            "spec.fooBar",
            "spec.ioConfig.inputFormat.zzz",
            "spec.tuningConfig.fooBar",
            "spec.tuningConfig.partitionsSpec.xyzzy",
        ]
    }
    assert parsed.spec.tuning_config.max_rows_per_segment == 9
    # dropped: the stored spec is what we act on, and it re-parses without notes
    assert "fooBar" not in json.dumps(parsed.spec.to_json())
    assert read_supervisor_spec(parsed.spec.to_json()).notes.members() == {}
    assert parse_supervisor_spec(parsed.spec.to_json()) == parsed.spec


def test_unknown_fields_beside_a_real_error_do_not_hide_it() -> None:
    payload = base()
    payload["spec"]["ioConfig"]["whatever"] = 1
    payload["spec"]["ioConfig"]["taskCount"] = 0
    error = refused(payload)
    assert (error.field, error.problem) == ("spec.ioConfig.taskCount", "must be a positive integer")


@pytest.mark.parametrize(
    ("where", "key", "field", "hint"),
    [
        (("spec",), "transformSpec", "spec.transformSpec", "belongs in spec.dataSchema"),
        (("spec", "dataSchema"), "taskCount", "spec.dataSchema.taskCount", "belongs in spec.ioConfig"),
        (
            ("spec", "tuningConfig"),
            "taskDuration",
            "spec.tuningConfig.taskDuration",
            "belongs in spec.ioConfig",
        ),
        (
            ("spec", "dataSchema"),
            "dimensionExclusions",
            "spec.dataSchema.dimensionExclusions",
            "belongs in spec.dataSchema.dimensionsSpec",
        ),
        (
            ("spec", "ioConfig"),
            "maxRowsPerSegment",
            "spec.ioConfig.maxRowsPerSegment",
            "belongs in spec.tuningConfig",
        ),
        ((), "ioConfig2", "ioConfig2", "did you mean 'ioConfig'?"),
        (("spec", "ioConfig"), "taskCont", "spec.ioConfig.taskCont", "did you mean 'taskCount'?"),
        (("spec", "ioConfig"), "taskcount", "spec.ioConfig.taskcount", "did you mean 'taskCount'?"),
        (
            ("spec", "ioConfig"),
            "useEarliestOfset",
            "spec.ioConfig.useEarliestOfset",
            "did you mean 'useEarliestOffset'?",
        ),
        (
            ("spec", "tuningConfig"),
            "chatThread",
            "spec.tuningConfig.chatThread",
            "did you mean 'chatThreads'?",
        ),
        (
            ("spec", "dataSchema"),
            "granularitySpecs",
            "spec.dataSchema.granularitySpecs",
            "did you mean 'granularitySpec'?",
        ),
    ],
)
def test_misplaced_and_misspelt_keys_are_a_400_with_a_hint(
    where: tuple[str, ...], key: str, field: str, hint: str
) -> None:
    payload = base()
    node: Any = payload
    for step in where:
        node = node[step]
    node[key] = {} if key == "transformSpec" else 2
    error = refused(payload)
    assert error.field == field
    assert hint in error.problem
    assert error.status == 400


def test_druid_only_tuning_fields_are_unhonoured_unless_default() -> None:
    payload = base()
    payload["spec"]["tuningConfig"].update(
        chatThreads=4,
        maxColumnsToMerge=-1,
        repartitionTransitionDuration="PT120S",
        basePersistDirectory="/tmp/x",
    )
    assert notes(payload) == {
        "unhonouredFields": ["spec.tuningConfig.basePersistDirectory", "spec.tuningConfig.chatThreads"]
    }
    payload["spec"]["tuningConfig"]["maxColumnsToMerge"] = 10
    assert "spec.tuningConfig.maxColumnsToMerge" in notes(payload)["unhonouredFields"]


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        ("tuningConfig", "workerThreads", 2),
        ("tuningConfig", "chatRetries", 3),
        ("tuningConfig", "httpTimeout", "PT20S"),
        ("tuningConfig", "handoffConditionTimeout", 60000),
        ("tuningConfig", "skipSequenceNumberAvailabilityCheck", True),
        ("tuningConfig", "indexSpecForIntermediatePersists", {"bitmap": {"type": "concise"}}),
        ("tuningConfig", "skipBytesInMemoryOverheadCheck", True),
        ("ioConfig", "pollTimeout", 250),
    ],
)
def test_modelled_fields_we_do_not_act_on_are_reported(where: str, key: str, value: Any) -> None:
    payload = base()
    payload["spec"][where][key] = value
    assert notes(payload) == {"unhonouredFields": [f"spec.{where}.{key}"]}


def test_unhonoured_fields_at_druid_defaults_are_not_reported() -> None:
    payload = base()
    payload["spec"]["tuningConfig"].update(
        chatRetries=8,
        httpTimeout="PT10S",
        intermediateHandoffPeriod="P2147483647D",
        handoffConditionTimeout=900000,
        indexSpec={"bitmap": {"type": "roaring"}, "dimensionCompression": "lz4"},
        appendableIndexSpec={"type": "onheap", "preserveExistingMetrics": False},
    )
    payload["spec"]["ioConfig"].update(pollTimeout=100, autoScalerConfig={"enableTaskAutoScaler": False})
    payload["spec"]["dataSchema"]["granularitySpec"]["intervals"] = []
    assert notes(payload) == {}


def test_other_unhonoured_fields() -> None:
    payload = base()
    payload["spec"]["dataSchema"]["granularitySpec"]["intervals"] = ["2024-01-01/2025-01-01"]
    payload["spec"]["dataSchema"]["dimensionsSpec"]["useSchemaDiscovery"] = True
    payload["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"][0] = {
        "name": "page",
        "createBitmapIndex": False,
    }
    payload["spec"]["ioConfig"]["inputFormat"]["keepNullColumns"] = True
    assert notes(payload) == {
        "unhonouredFields": [
            "spec.dataSchema.dimensionsSpec.dimensions[0].createBitmapIndex",
            "spec.ioConfig.inputFormat.keepNullColumns",
        ]
    }


# --------------------------------------------------------------------------- Druid's GET output


def _druid_get_output() -> dict[str, Any]:
    """Druid's GET /supervisor/{id} sample (docs/api-reference/supervisor-api.md), as stored."""
    doc: dict[str, Any] = json.loads((SPECS / "druid-api-get-supervisor-social-media.json").read_text())
    return doc


def test_druid_get_output_means_what_the_spec_means() -> None:
    doc = _druid_get_output()
    parsed = read_supervisor_spec(doc)
    # only what Druid's GET shows and we cannot honour: its persist directory is not in the sample
    assert parsed.notes.members() == {}
    spec = parsed.spec
    assert spec.io_config.topic == "social_media"
    assert spec.io_config.use_earliest_offset is True
    assert spec.data_schema.timestamp_spec.column == "__time"
    # the same spec written by hand, the way the docs' examples do
    hand = {
        "type": "kafka",
        "spec": {
            "dataSchema": {
                "dataSource": "social_media",
                "timestampSpec": {"column": "__time", "format": "iso"},
                "dimensionsSpec": {
                    "dimensions": [
                        "username",
                        "post_title",
                        {"type": "long", "name": "views"},
                        {"type": "long", "name": "upvotes"},
                        {"type": "long", "name": "comments"},
                        "edited",
                    ],
                    "dimensionExclusions": ["__time"],
                },
                "granularitySpec": {
                    "segmentGranularity": "HOUR",
                    "queryGranularity": "none",
                    "rollup": False,
                },
            },
            "ioConfig": {
                "topic": "social_media",
                "inputFormat": {"type": "json"},
                "consumerProperties": {"bootstrap.servers": "localhost:9094"},
                "useEarliestOffset": True,
                "taskDuration": "PT1H",
            },
            "tuningConfig": {"type": "kafka"},
        },
    }
    # equal but for the tuning knobs Druid's GET spells out with Druid's defaults (no effect here)
    knobs = {
        name for name, f in KafkaTuningConfig.model_fields.items() if f.alias in KafkaTuningConfig._unhonoured
    }
    # Druid's default indexSpec (lz4, utf8 dictionaries) leaves the Parquet settings at ours
    assert spec.tuning_config.index_spec is not None
    assert spec.tuning_config.index_spec.codec("dimension") is None
    assert not spec.tuning_config.index_spec.front_coded
    knobs.add("index_spec")
    assert parse_supervisor_spec(hand).model_dump(exclude={"tuning_config": knobs}) == spec.model_dump(
        exclude={"tuning_config": knobs}
    )


def test_druid_get_output_conflicts_are_refused() -> None:
    doc = _druid_get_output()
    doc["spec"]["ioConfig"]["stream"] = "other"
    error = refused(doc)
    assert error.field == "spec.ioConfig.stream"
    assert "Druid reads topic only" in error.problem
    doc = _druid_get_output()
    doc["spec"]["ioConfig"]["useEarliestSequenceNumber"] = False
    assert refused(doc).field == "spec.ioConfig.useEarliestSequenceNumber"


def test_our_get_output_round_trips_with_its_notes() -> None:
    payload = base()
    payload["spec"]["tuningConfig"]["workerThreads"] = 2
    parsed = read_supervisor_spec(payload)
    stored = parsed.spec.to_json() | parsed.notes.members()  # what the history entry holds
    again = read_supervisor_spec(stored)
    assert again.spec == parsed.spec
    assert again.notes == parsed.notes  # the unhonoured field is still there and still said


# --------------------------------------------------------------------------- scalars


def test_scalars_as_jackson_reads_them() -> None:
    payload = base()
    payload["suspended"] = "true"
    payload["spec"]["ioConfig"].update(taskCount="2", replicas=1.0, useEarliestOffset="TRUE", period=30000)
    payload["spec"]["tuningConfig"].update(maxRowsInMemory="1000", logParseExceptions="false")
    payload["spec"]["dataSchema"]["granularitySpec"].update(
        type="UNIFORM", segmentGranularity="hour", rollup="false"
    )
    payload["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"][1] = {"name": "added", "type": "LONG"}
    spec = parse_supervisor_spec(payload)
    assert spec.suspended is True
    assert (spec.io_config.task_count, spec.io_config.replicas, spec.io_config.use_earliest_offset) == (
        2,
        1,
        True,
    )
    assert spec.tuning_config.max_rows_in_memory == 1000
    assert spec.tuning_config.log_parse_exceptions is False
    assert spec.data_schema.granularity_spec.rollup is False
    assert spec.data_schema.dimensions_spec.dimensions[1].type == "long"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("taskCount", "two", "must be an integer"),
        ("taskCount", 1.5, "must be an integer"),
        ("taskCount", True, "must be an integer"),
        ("useEarliestOffset", "yes", "must be true or false"),
        ("useEarliestOffset", 2, "must be true or false"),
    ],
)
def test_what_jackson_would_not_coerce_is_refused(key: str, value: Any, problem: str) -> None:
    payload = base()
    payload["spec"]["ioConfig"][key] = value
    error = refused(payload)
    assert (error.field, error.problem) == (f"spec.ioConfig.{key}", problem)


def test_the_timestamp_column_may_also_be_a_dimension(tmp_path: Path) -> None:
    payload = base()
    payload["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"] = ["ts", "page"]
    payload["spec"]["dataSchema"]["metricsSpec"] = [{"type": "count", "name": "count"}]
    spec = parse_supervisor_spec(payload)
    _, files = ingest(spec, tmp_path, [{"ts": "2024-05-01T10:00:00Z", "page": "a"}])
    rows = read_rows(files)
    assert [(row["ts"], row["page"], row["count"]) for row in rows] == [("2024-05-01T10:00:00Z", "a", 1)]


# --------------------------------------------------------------------------- legacy parser specs


def legacy(parse_spec: dict[str, Any], parser_type: str = "string", **parser: Any) -> dict[str, Any]:
    payload = base()
    schema = payload["spec"]["dataSchema"]
    timestamp, dimensions = schema.pop("timestampSpec"), schema.pop("dimensionsSpec")
    schema["parser"] = {
        "type": parser_type,
        "parseSpec": {"timestampSpec": timestamp, "dimensionsSpec": dimensions, **parse_spec},
        **parser,
    }
    del payload["spec"]["ioConfig"]["inputFormat"]
    return payload


def test_legacy_json_parser_is_translated_and_means_the_same(tmp_path: Path) -> None:
    old = legacy({"format": "json", "flattenSpec": {"useFieldDiscovery": True, "fields": []}})
    parsed = read_supervisor_spec(old)
    assert parsed.notes.members() == {
        "translated": [
            "spec.dataSchema.parser (type 'string', parseSpec format 'json') -> spec.ioConfig.inputFormat "
            '{"type": "json"}, spec.dataSchema.timestampSpec, spec.dataSchema.dimensionsSpec'
        ]
    }
    modern = base()
    modern["spec"]["ioConfig"]["inputFormat"]["flattenSpec"] = {"useFieldDiscovery": True, "fields": []}
    assert parsed.spec == parse_supervisor_spec(modern)
    assert "parser" not in json.dumps(parsed.spec.to_json())
    events = [{"ts": f"2024-05-01T10:0{i}:00Z", "page": f"p{i % 2}", "added": i, "n": i} for i in range(6)]
    _, old_files = ingest(parsed.spec, tmp_path, events, name="old")
    _, new_files = ingest(parse_supervisor_spec(modern), tmp_path, events, name="new")
    assert read_rows(old_files) == read_rows(new_files) and len(read_rows(old_files)) == 6


def test_legacy_parser_type_defaults_to_string() -> None:
    old = legacy({"format": "json"})
    del old["spec"]["dataSchema"]["parser"]["type"]
    assert parse_supervisor_spec(old) == parse_supervisor_spec(base())


@pytest.mark.parametrize(
    ("parse_spec", "parser_type", "parser", "missing"),
    [
        ({"format": "regex", "pattern": "(.*)", "columns": ["page"]}, "string", {}, "regex"),
    ],
)
def test_legacy_parsers_of_formats_not_built_yet_name_the_format(
    parse_spec: dict[str, Any], parser_type: str, parser: dict[str, Any], missing: str
) -> None:
    error = refused(legacy(parse_spec, parser_type, **parser))
    assert error.field == "spec.dataSchema.parser"
    assert f"input format '{missing}' is not supported yet" in error.problem
    assert f'spec.ioConfig.inputFormat {{"type": "{missing}"}}' in error.problem


@pytest.mark.parametrize(
    ("parse_spec", "parser_type", "parser", "input_format"),
    [
        (
            {"format": "avro"},
            "avro_stream",
            {"avroBytesDecoder": {"type": "schema_registry", "url": "http://registry:8081"}},
            {
                "type": "avro_stream",
                "avroBytesDecoder": {"type": "schema_registry", "url": "http://registry:8081"},
            },
        ),
        (
            {"format": "timeAndDims"},
            "avro_stream",
            {
                "avroBytesDecoder": {
                    "type": "schema_inline",
                    "schema": {"type": "record", "name": "R", "fields": []},
                }
            },
            {
                "type": "avro_stream",
                "avroBytesDecoder": {
                    "type": "schema_inline",
                    "schema": {"type": "record", "name": "R", "fields": []},
                },
            },
        ),
        (
            {"format": "json"},
            "protobuf",
            {"descriptor": "file:///x.desc", "protoMessageType": "M"},
            {
                "type": "protobuf",
                "protoBytesDecoder": {
                    "type": "file",
                    "descriptor": "file:///x.desc",
                    "protoMessageType": "M",
                },
            },
        ),
    ],
)
def test_legacy_avro_and_protobuf_parsers_become_their_input_formats(
    parse_spec: dict[str, Any], parser_type: str, parser: dict[str, Any], input_format: dict[str, Any]
) -> None:
    translated = parse_supervisor_spec(legacy(parse_spec, parser_type, **parser))
    modern = base()
    modern["spec"]["ioConfig"]["inputFormat"] = input_format
    assert translated == parse_supervisor_spec(modern)


def test_legacy_avro_parser_without_a_registry_url_is_refused_naming_it() -> None:
    error = refused(legacy({"format": "avro"}, "avro_stream", avroBytesDecoder={"type": "schema_registry"}))
    assert "avroBytesDecoder" in error.field and "'url' or 'urls' is required" in error.problem


@pytest.mark.parametrize(
    ("parse_spec", "parser_type", "field", "problem"),
    [
        ({"format": "timeAndDims"}, "string", "spec.dataSchema.parser.parseSpec.format", "timeAndDims"),
        ({"format": "javascript"}, "string", "spec.dataSchema.parser.parseSpec.format", "JavaScript"),
        ({"format": "xml"}, "string", "spec.dataSchema.parser.parseSpec.format", "unknown parseSpec format"),
        ({}, "string", "spec.dataSchema.parser.parseSpec.format", "is required"),
        ({"format": "json"}, "thrift", "spec.dataSchema.parser.type", "legacy parser type 'thrift'"),
    ],
)
def test_legacy_parsers_without_an_equivalent(
    parse_spec: dict[str, Any], parser_type: str, field: str, problem: str
) -> None:
    error = refused(legacy(parse_spec, parser_type))
    assert error.field == field
    assert problem in error.problem


def test_legacy_errors_name_the_keys_as_written() -> None:
    old = legacy({"format": "json"})
    old["spec"]["dataSchema"]["parser"]["parseSpec"]["timestampSpec"]["format"] = "dd/MM"
    assert refused(old).field == "spec.dataSchema.parser.parseSpec.timestampSpec.format"
    old = legacy(
        {"format": "json", "flattenSpec": {"fields": [{"type": "path", "name": "x", "expr": "$..x"}]}}
    )
    assert refused(old).field.startswith("spec.dataSchema.parser.parseSpec.flattenSpec.fields")
    old = legacy({"format": "json"})
    old["spec"]["dataSchema"]["parser"]["parseSpec"]["timestampSpec"]["colum"] = "x"
    error = refused(old)
    assert (error.field, error.problem) == (
        "spec.dataSchema.parser.parseSpec.timestampSpec.colum",
        "unknown field; did you mean 'column'?",
    )


def test_legacy_keys_no_translation_carries_are_ignored_where_written() -> None:
    old = legacy(
        {"format": "json", "featureSpec": {"ALLOW_COMMENTS": True}, "extra": 1}, encoding="UTF-8", odd=2
    )
    assert notes(old)["ignoredFields"] == [
        "spec.dataSchema.parser.odd",
        "spec.dataSchema.parser.parseSpec.extra",
    ]
    assert notes(old)["unhonouredFields"] == ["spec.dataSchema.parser.parseSpec.featureSpec"]


def test_legacy_and_modern_forms_together_are_refused() -> None:
    old = legacy({"format": "json"})
    old["spec"]["dataSchema"]["timestampSpec"] = {"column": "ts"}
    error = refused(old)
    assert error.field == "spec.dataSchema.timestampSpec"
    assert "given twice, differently" in error.problem


def test_partitions_spec_is_checked_but_folded() -> None:
    payload = base()
    payload["spec"]["tuningConfig"]["partitionsSpec"] = {"type": "dynamic", "maxRowsPerSegment": "100"}
    spec = parse_supervisor_spec(payload)
    assert spec.tuning_config.max_rows_per_segment == 100
    assert "partitionsSpec" not in json.dumps(spec.to_json())
    payload["spec"]["tuningConfig"]["partitionsSpec"] = {"type": "hashed"}
    assert refused(payload).field == "spec.tuningConfig.partitionsSpec.type"
    payload["spec"]["tuningConfig"]["partitionsSpec"] = {"type": "dynamic", "maxRowsPerSegment": 5}
    payload["spec"]["tuningConfig"]["maxRowsPerSegment"] = 6
    assert refused(payload).field == "spec.tuningConfig.partitionsSpec.maxRowsPerSegment"


def test_notes_do_not_change_the_input() -> None:
    payload = legacy({"format": "json"})
    payload["spec"]["tuningConfig"]["fooBar"] = 1
    before = copy.deepcopy(payload)
    read_supervisor_spec(payload)
    assert payload == before


@pytest.mark.parametrize(
    ("parse_spec", "separator"),
    [
        ({"format": "csv", "columns": ["ts", "page", "added", "n"], "hasHeaderRow": False}, ","),
        ({"format": "tsv", "columns": ["ts", "page", "added", "n"], "delimiter": "|"}, "|"),
    ],
)
def test_legacy_csv_and_tsv_parsers_translate_and_ingest_like_json(
    tmp_path: Path, parse_spec: dict[str, Any], separator: str
) -> None:
    parsed = read_supervisor_spec(legacy(parse_spec))
    fmt = parsed.spec.io_config.input_format
    assert fmt.type == parse_spec["format"]
    assert fmt.model_dump(by_alias=True, exclude_none=True)["columns"] == ("ts", "page", "added", "n")
    events = [{"ts": f"2024-05-01T10:0{i}:00Z", "page": f"p{i % 2}", "added": i, "n": i} for i in range(6)]
    lines = [separator.join(str(e[c]) for c in ("ts", "page", "added", "n")).encode() for e in events]
    _, text_files = ingest(parsed.spec, tmp_path, lines, name="text")
    _, json_files = ingest(parse_supervisor_spec(base()), tmp_path, events, name="json")
    assert read_rows(text_files) == read_rows(json_files) and len(read_rows(text_files)) == 6


def test_an_enabled_task_autoscaler_is_accepted_and_reported_not_honoured() -> None:
    """Druid's lag-based autoscaler changes taskCount at run time; here the task count stays taskCount,
    and the POST answer says so (unhonouredFields), as for every field kept without effect."""
    payload = base()
    payload["spec"]["ioConfig"]["autoScalerConfig"] = {"enableTaskAutoScaler": True, "taskCountMax": 4}
    parsed = read_supervisor_spec(payload)
    assert parsed.notes.members()["unhonouredFields"] == ["spec.ioConfig.autoScalerConfig"]
    assert parsed.spec.io_config.task_count == payload["spec"]["ioConfig"].get("taskCount", 1)
    disabled = base()
    disabled["spec"]["ioConfig"]["autoScalerConfig"] = {"enableTaskAutoScaler": "false"}
    assert "unhonouredFields" not in read_supervisor_spec(disabled).notes.members()

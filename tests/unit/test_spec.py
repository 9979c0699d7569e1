"""Supervisor spec parsing, validation, normalisation, filters, granularities and durations."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from supervisor.chronology import MAX_INSTANT_MS, MIN_INSTANT_MS
from supervisor.durations import format_duration, parse_duration
from supervisor.errors import InvalidSpec
from supervisor.spec import (
    DEFAULT_MAX_BYTES_IN_MEMORY,
    AndFilter,
    BoundFilter,
    DataSchema,
    DimensionSchema,
    EqualsFilter,
    FalseFilter,
    Granularity,
    InFilter,
    InputFormat,
    KafkaIOConfig,
    KafkaTuningConfig,
    NotFilter,
    NullFilter,
    OrFilter,
    SelectorFilter,
    SupervisorSpec,
    TrueFilter,
    parse_supervisor_spec,
)

TUTORIALS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "druid"

# A small valid wrapped spec that the error cases below mutate.
BASE: dict[str, Any] = {
    "type": "kafka",
    "spec": {
        "dataSchema": {
            "dataSource": "events",
            "timestampSpec": {"column": "ts", "format": "iso"},
            "dimensionsSpec": {"dimensions": ["page", {"name": "added", "type": "long"}]},
            "metricsSpec": [
                {"type": "count", "name": "count"},
                {"type": "longSum", "name": "sum", "fieldName": "n"},
            ],
            "granularitySpec": {"segmentGranularity": "HOUR", "queryGranularity": "MINUTE"},
        },
        "ioConfig": {
            "topic": "events",
            "inputFormat": {"type": "json"},
            "consumerProperties": {"bootstrap.servers": "localhost:9092"},
        },
        "tuningConfig": {"type": "kafka"},
    },
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


# --------------------------------------------------------------------------- tutorial specs


@pytest.mark.parametrize("name", ["wikipedia-kafka-supervisor.json", "kttm-kafka-supervisor.json"])
def test_druid_tutorial_specs_are_accepted(name: str) -> None:
    path = TUTORIALS / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    spec = parse_supervisor_spec(json.loads(path.read_bytes()))
    assert parse_supervisor_spec(spec.to_json()) == spec
    assert parse_supervisor_spec(json.loads(json.dumps(spec.to_json()))) == spec


def test_wikipedia_tutorial_values() -> None:
    path = TUTORIALS / "wikipedia-kafka-supervisor.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    spec = parse_supervisor_spec(json.loads(path.read_bytes()))
    assert spec.id == "wikipedia"
    schema = spec.data_schema
    assert schema.timestamp_spec.column == "time"
    assert schema.metrics_spec == ()
    assert schema.granularity_spec.rollup is False
    assert schema.granularity_spec.segment_granularity is Granularity.DAY
    dims = schema.dimensions_spec.dimensions
    assert len(dims) == 19
    assert dims[0] == DimensionSchema(name="channel", type="string")
    assert [d.type for d in dims[-3:]] == ["long", "long", "long"]
    assert spec.io_config.topic == "wikipedia"
    assert spec.io_config.task_duration == timedelta(minutes=10)
    assert spec.io_config.completion_timeout == timedelta(minutes=20)
    assert spec.tuning_config.report_parse_exceptions is False
    assert spec.tuning_config.max_parse_exceptions == 2**31 - 1


def test_kttm_tutorial_values() -> None:
    path = TUTORIALS / "kttm-kafka-supervisor.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    spec = parse_supervisor_spec(json.loads(path.read_bytes()))
    assert spec.id == "kttm-kafka-supervisor-api"
    assert spec.io_config.use_earliest_offset is True
    assert spec.data_schema.timestamp_spec.format == "iso"
    assert spec.data_schema.granularity_spec.query_granularity is Granularity.NONE
    json_dims = [d.name for d in spec.data_schema.dimensions_spec.dimensions if d.type == "json"]
    assert json_dims == ["event", "agent", "geo_ip"]


def test_spec_module_does_not_import_io_libraries() -> None:
    code = (
        "import sys, supervisor.spec\n"
        "bad = [m for m in ('aiohttp', 'sqlalchemy', 'confluent_kafka') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --------------------------------------------------------------------------- forms and defaults


def test_legacy_unwrapped_form_equals_wrapped() -> None:
    wrapped = base()
    unwrapped = {"type": "kafka", **wrapped["spec"]}
    assert parse_supervisor_spec(unwrapped) == parse_supervisor_spec(wrapped)


def test_legacy_unwrapped_errors_name_the_field_as_written() -> None:
    unwrapped = {"type": "kafka", **base()["spec"]}
    unwrapped["ioConfig"]["taskCount"] = 0
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(unwrapped)
    assert info.value.field == "ioConfig.taskCount"


def test_druid_get_output_with_duplicated_top_level_copy_is_accepted() -> None:
    payload = base()
    payload.update(copy.deepcopy(payload["spec"]))
    payload["dataSchema"]["dataSource"] = "ignored"
    payload["context"] = None
    payload["id"] = "events"
    spec = parse_supervisor_spec(payload)
    assert spec.id == "events"
    assert spec.context == {}


def test_defaults() -> None:
    spec = parse_supervisor_spec(base())
    io = spec.io_config
    assert io.task_count == 1
    assert io.replicas == 1
    assert io.task_duration == timedelta(hours=1)
    assert io.start_delay == timedelta(seconds=5)
    assert io.period == timedelta(seconds=30)
    assert io.use_earliest_offset is False
    assert io.completion_timeout == timedelta(minutes=30)
    assert io.late_message_rejection_period is None
    assert io.early_message_rejection_period is None
    assert io.poll_timeout == 100
    assert io.bootstrap_servers == "localhost:9092"
    tuning = spec.tuning_config
    assert tuning.max_rows_in_memory == 150_000
    assert tuning.max_bytes_in_memory == 0
    assert tuning.effective_max_bytes_in_memory() == DEFAULT_MAX_BYTES_IN_MEMORY == 64 * 1024 * 1024
    assert tuning.max_rows_per_segment == 5_000_000
    assert tuning.max_total_rows is None
    assert tuning.effective_max_total_rows() == 20_000_000
    assert tuning.intermediate_persist_period == timedelta(minutes=10)
    assert tuning.max_parse_exceptions == 2**31 - 1
    assert tuning.max_saved_parse_exceptions == 0
    assert tuning.log_parse_exceptions is False
    assert tuning.reset_offset_automatically is False
    assert tuning.dead_letter_topic is None
    assert spec.suspended is False
    assert spec.context == {}
    schema = spec.data_schema
    assert schema.transform_spec.filter is None
    assert schema.dimensions_spec.dimension_exclusions == ()


def test_minimal_spec_defaults_for_optional_objects() -> None:
    spec = parse_supervisor_spec(
        {
            "type": "kafka",
            "spec": {
                "dataSchema": {"dataSource": "d"},
                "ioConfig": {
                    "topic": "t",
                    "inputFormat": {"type": "json"},
                    "consumerProperties": {"bootstrap.servers": "k:9092"},
                },
            },
        }
    )
    schema = spec.data_schema
    assert schema.timestamp_spec.column == "timestamp"
    assert schema.timestamp_spec.format == "auto"
    assert schema.timestamp_spec.missing_value is None
    assert schema.dimensions_spec.is_schemaless
    assert schema.granularity_spec.segment_granularity is Granularity.DAY
    assert schema.granularity_spec.query_granularity is Granularity.NONE
    assert schema.granularity_spec.rollup is True
    assert spec.tuning_config == KafkaTuningConfig()


def test_max_bytes_in_memory_variants() -> None:
    assert KafkaTuningConfig(max_bytes_in_memory=-1).effective_max_bytes_in_memory() >= 2**62
    assert KafkaTuningConfig(max_bytes_in_memory=1000).effective_max_bytes_in_memory() == 1000


def test_null_means_default() -> None:
    payload = base()
    payload["spec"]["ioConfig"].update(taskCount=None, lateMessageRejectionPeriod=None, autoScalerConfig=None)
    payload["spec"]["tuningConfig"] = None
    spec = parse_supervisor_spec(payload)
    assert spec.io_config.task_count == 1
    assert spec.tuning_config == KafkaTuningConfig()


def test_accepted_legacy_and_ignored_fields() -> None:
    payload = base()
    payload["spec"]["tuningConfig"].update(
        handoffConditionTimeout=900000,
        resetOffsetAutomatically=True,
        workerThreads=2,
        chatRetries=8,
        httpTimeout="PT10S",
        shutdownTimeout="PT80S",
        offsetFetchPeriod="PT30S",
        indexSpec={"bitmap": {"type": "roaring"}},
        indexSpecForIntermediatePersists={},
        segmentWriteOutMediumFactory={"type": "tmpFile"},
        intermediateHandoffPeriod="P2147483647D",
        logParseExceptions=True,
        skipSequenceNumberAvailabilityCheck=False,
        numPersistThreads=1,
        maxPendingPersists=0,
        partitionsSpec={"type": "dynamic", "maxRowsPerSegment": 1000, "maxTotalRows": 5000},
        appendableIndexSpec={"type": "onheap"},
        deadLetterTopic="events-dlq",
    )
    payload["spec"]["ioConfig"].update(
        type="kafka",
        pollTimeout=250,
        idleConfig={"enabled": True, "inactiveAfterMillis": 600000},
        lagAggregator={"type": "sum"},
        configOverrides={},
        emitTimeLagMetrics=True,
        stopTaskCount=2,
        startDelay="PT0S",
        earlyMessageRejectionPeriod="PT2H",
        inputFormat={
            "type": "json",
            "flattenSpec": {"useFieldDiscovery": True, "fields": []},
            "featureSpec": {"ALLOW_COMMENTS": True},
            "keepNullColumns": False,
        },
    )
    payload["spec"]["dataSchema"]["granularitySpec"].update(
        type="uniform", intervals=["2020-01-01/2021-01-01"]
    )
    payload["spec"]["dataSchema"]["dimensionsSpec"].update(
        dimensionExclusions=["secret"],
        spatialDimensions=[],
        includeAllDimensions=False,
        useSchemaDiscovery=False,
    )
    payload["spec"]["dataSchema"]["transformSpec"] = {"transforms": [], "filter": None}
    payload["suspended"] = True
    payload["context"] = {"note": "hi", "nothing": None}
    spec = parse_supervisor_spec(payload)
    tuning = spec.tuning_config
    assert tuning.reset_offset_automatically is True
    assert tuning.max_rows_per_segment == 1000
    assert tuning.max_total_rows == 5000
    assert tuning.log_parse_exceptions is True
    assert tuning.http_timeout == timedelta(seconds=10)
    assert tuning.dead_letter_topic == "events-dlq"
    io = spec.io_config
    assert io.idle_config is not None
    assert io.idle_config.enabled is True
    assert io.idle_config.inactive_after_millis == 600000
    assert io.poll_timeout == 250
    assert io.start_delay == timedelta(0)
    assert io.early_message_rejection_period == timedelta(hours=2)
    assert spec.data_schema.granularity_spec.intervals == ("2020-01-01/2021-01-01",)
    assert spec.data_schema.dimensions_spec.dimension_exclusions == ("secret",)
    assert spec.suspended is True
    assert spec.context == {"note": "hi", "nothing": None}
    again = parse_supervisor_spec(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()


def test_dimension_forms() -> None:
    payload = base()
    payload["spec"]["dataSchema"]["dimensionsSpec"]["dimensions"] = [
        "a",
        {"name": "b"},
        {"name": "c", "type": "string", "createBitmapIndex": False, "multiValueHandling": "sorted_set"},
        {"name": "d", "type": "float"},
        {"name": "e", "type": "double"},
        {"name": "f", "type": "json"},
        # Druid's own output for numeric dimensions carries these keys too.
        {"name": "g", "type": "long", "createBitmapIndex": False, "multiValueHandling": "SORTED_ARRAY"},
    ]
    dims = parse_supervisor_spec(payload).data_schema.dimensions_spec.dimensions
    assert [(d.name, d.type) for d in dims] == [
        ("a", "string"),
        ("b", "string"),
        ("c", "string"),
        ("d", "float"),
        ("e", "double"),
        ("f", "json"),
        ("g", "long"),
    ]
    assert dims[0].create_bitmap_index is True
    assert dims[2].create_bitmap_index is False
    assert dims[2].multi_value_handling == "SORTED_SET"
    assert dims[3].create_bitmap_index is False


def test_timestamp_spec_formats_and_missing_value() -> None:
    payload = base()
    payload["spec"]["dataSchema"]["timestampSpec"] = {
        "column": "t",
        "format": "MILLIS",
        "missingValue": "2020-01-02T03:04:05+02:00",
    }
    spec = parse_supervisor_spec(payload)
    ts = spec.data_schema.timestamp_spec
    assert ts.format == "millis"
    assert ts.missing_value == datetime(2020, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert ts.missing_value_ms == ms(2020, 1, 2, 1, 4, 5)
    assert parse_supervisor_spec(spec.to_json()) == spec
    for fmt in ("auto", "iso", "millis", "posix", "micro", "nano", "ruby"):
        payload["spec"]["dataSchema"]["timestampSpec"]["format"] = fmt
        assert parse_supervisor_spec(payload).data_schema.timestamp_spec.format == fmt


def test_report_parse_exceptions_legacy_mapping() -> None:
    payload = base()
    payload["spec"]["tuningConfig"] = {
        "type": "kafka",
        "reportParseExceptions": True,
        "maxParseExceptions": 50,
    }
    tuning = parse_supervisor_spec(payload).tuning_config
    assert tuning.max_parse_exceptions == 0
    assert tuning.max_saved_parse_exceptions == 1
    payload["spec"]["tuningConfig"] = {"reportParseExceptions": True, "maxSavedParseExceptions": 0}
    assert parse_supervisor_spec(payload).tuning_config.max_saved_parse_exceptions == 0
    payload["spec"]["tuningConfig"] = {"reportParseExceptions": False, "maxParseExceptions": 5}
    tuning = parse_supervisor_spec(payload).tuning_config
    assert (tuning.max_parse_exceptions, tuning.max_saved_parse_exceptions) == (5, 0)


def test_to_json_round_trip_and_shape() -> None:
    payload = base()
    payload["spec"]["dataSchema"]["transformSpec"] = {
        "filter": {
            "type": "and",
            "fields": [
                {"type": "selector", "dimension": "page", "value": None},
                {"type": "in", "dimension": "page", "values": ["a", None, 3]},
                {
                    "type": "not",
                    "field": {"type": "bound", "dimension": "n", "upper": 10, "ordering": "numeric"},
                },
                {"type": "or", "fields": [{"type": "true"}, {"type": "false"}]},
                {"type": "equals", "column": "x", "matchValueType": "DOUBLE", "matchValue": 1.5},
                {"type": "null", "column": "y"},
            ],
        }
    }
    payload["spec"]["ioConfig"]["lateMessageRejectionPeriod"] = "PT1H30M"
    spec = parse_supervisor_spec(payload)
    out = spec.to_json()
    assert out["type"] == "kafka"
    assert set(out) == {"type", "spec", "suspended", "context"}
    assert set(out["spec"]) == {"dataSchema", "ioConfig", "tuningConfig"}
    io = out["spec"]["ioConfig"]
    assert io["taskDuration"] == "PT1H"
    assert io["lateMessageRejectionPeriod"] == "PT1H30M"
    assert io["taskCount"] == 1
    assert out["spec"]["dataSchema"]["granularitySpec"]["segmentGranularity"] == "HOUR"
    assert out["spec"]["tuningConfig"]["maxRowsInMemory"] == 150_000
    assert parse_supervisor_spec(out) == spec
    assert parse_supervisor_spec(json.loads(json.dumps(out))) == spec


def test_with_suspended_returns_a_copy() -> None:
    spec = parse_supervisor_spec(base())
    suspended = spec.with_suspended(True)
    assert suspended.suspended is True
    assert spec.suspended is False
    assert suspended.with_suspended(False) == spec
    assert suspended.to_json()["suspended"] is True


def test_models_are_frozen_and_constructible_by_name() -> None:
    spec = SupervisorSpec(
        data_schema=DataSchema(data_source="d"),
        io_config=KafkaIOConfig(
            topic="t",
            input_format=InputFormat(type="json"),
            consumer_properties={"bootstrap.servers": "k:9092"},
            task_count=3,
        ),
    )
    assert spec.id == "d"
    assert spec.io_config.task_count == 3
    with pytest.raises(ValueError):
        spec.suspended = True  # type: ignore[misc]
    assert parse_supervisor_spec(spec.to_json()) == spec


def test_snake_case_keys_are_not_accepted_in_json() -> None:
    payload = base()
    payload["spec"]["ioConfig"]["task_count"] = 2
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(payload)
    assert (info.value.field, info.value.problem) == (
        "spec.ioConfig.task_count",
        "unknown field; did you mean 'taskCount'?",
    )


def test_period_granularity_equal_to_a_standard_one() -> None:
    payload = base()
    payload["spec"]["dataSchema"]["granularitySpec"] = {
        "segmentGranularity": {"type": "period", "period": "PT1H", "timeZone": "UTC"},
        "queryGranularity": {"type": "none"},
    }
    spec = parse_supervisor_spec(payload)
    assert spec.data_schema.granularity_spec.segment_granularity is Granularity.HOUR
    assert spec.data_schema.granularity_spec.query_granularity is Granularity.NONE


# --------------------------------------------------------------------------- errors name the field


def _set(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _drop(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def mutate(payload: dict[str, Any]) -> None:
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


DS = ("spec", "dataSchema")
IO = ("spec", "ioConfig")
TUNING = ("spec", "tuningConfig")

BAD_SPECS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("type missing", _drop("type"), "type", "is required"),
    ("type kinesis", _set("type", value="kinesis"), "type", "not supported"),
    ("top-level typo", _set("suspend", value=True), "suspend", "did you mean 'suspended'?"),
    ("spec typo", _set("spec", "ioconfig", value={}), "spec.ioconfig", "did you mean 'ioConfig'?"),
    ("suspended not bool", _set("suspended", value="yes"), "suspended", "must be true or false"),
    (
        "negative taskCount",
        _set(*IO, "taskCount", value=-1),
        "spec.ioConfig.taskCount",
        "must be a positive integer",
    ),
    ("zero replicas", _set(*IO, "replicas", value=0), "spec.ioConfig.replicas", "must be a positive integer"),
    (
        "taskCount string",
        _set(*IO, "taskCount", value="two"),
        "spec.ioConfig.taskCount",
        "must be an integer",
    ),
    ("taskCount float", _set(*IO, "taskCount", value=1.5), "spec.ioConfig.taskCount", "must be an integer"),
    ("taskCount typo", _set(*IO, "taskCont", value=2), "spec.ioConfig.taskCont", "did you mean 'taskCount'?"),
    (
        "missing topic",
        _drop(*IO, "topic"),
        "spec.ioConfig.topic",
        "Either topic or topicPattern must be specified",
    ),
    ("bad topic", _set(*IO, "topic", value="a topic"), "spec.ioConfig.topic", "invalid Kafka topic name"),
    (
        "topic and topicPattern",
        _set(*IO, "topicPattern", value="ev.*"),
        "spec.ioConfig.topicPattern",
        "Only one of topic [events] or topicPattern [ev.*] must be specified",
    ),
    (
        "missing bootstrap.servers",
        _set(*IO, "consumerProperties", value={"group.id": "x"}),
        "spec.ioConfig.consumerProperties",
        "bootstrap.servers",
    ),
    (
        "empty bootstrap.servers",
        _set(*IO, "consumerProperties", value={"bootstrap.servers": ""}),
        'spec.ioConfig.consumerProperties["bootstrap.servers"]',
        "must be a non-empty string",
    ),
    ("missing ioConfig", _drop(*IO), "spec.ioConfig", "is required"),
    ("missing inputFormat", _drop(*IO, "inputFormat"), "spec.ioConfig.inputFormat", "is required"),
    (
        "regex inputFormat",
        _set(*IO, "inputFormat", value={"type": "regex", "pattern": "(.*)"}),
        "spec.ioConfig.inputFormat.type",
        "is not supported yet",
    ),
    (
        "csv inputFormat without columns",
        _set(*IO, "inputFormat", value={"type": "csv"}),
        "spec.ioConfig.inputFormat.findColumnsFromHeader",
        "either columns or findColumnsFromHeader",
    ),
    (
        "csv duplicate column",
        _set(*IO, "inputFormat", value={"type": "csv", "columns": ["ts", "a", "a"]}),
        "spec.ioConfig.inputFormat.columns[2]",
        "duplicate column name 'a'",
    ),
    (
        "csv listDelimiter equal to the delimiter",
        _set(*IO, "inputFormat", value={"type": "csv", "columns": ["ts"], "listDelimiter": ","}),
        "spec.ioConfig.inputFormat.listDelimiter",
        "cannot be the same as the delimiter",
    ),
    (
        "tsv empty delimiter",
        _set(*IO, "inputFormat", value={"type": "tsv", "columns": ["ts"], "delimiter": ""}),
        "spec.ioConfig.inputFormat.delimiter",
        "must not be empty",
    ),
    (
        "csv negative skipHeaderRows",
        _set(*IO, "inputFormat", value={"type": "csv", "columns": ["ts"], "skipHeaderRows": -1}),
        "spec.ioConfig.inputFormat.skipHeaderRows",
        "non-negative",
    ),
    (
        "kafka without valueFormat",
        _set(*IO, "inputFormat", value={"type": "kafka"}),
        "spec.ioConfig.inputFormat.valueFormat",
        "is required",
    ),
    (
        "kafka in kafka",
        _set(*IO, "inputFormat", value={"type": "kafka", "valueFormat": {"type": "kafka"}}),
        "spec.ioConfig.inputFormat.valueFormat.type",
        "cannot wrap another kafka",
    ),
    (
        "kafka header encoding",
        _set(
            *IO,
            "inputFormat",
            value={
                "type": "kafka",
                "valueFormat": {"type": "json"},
                "headerFormat": {"type": "string", "encoding": "x"},
            },
        ),
        "spec.ioConfig.inputFormat.headerFormat.encoding",
        "unknown charset 'x'",
    ),
    (
        "kafka keyFormat without columns",
        _set(
            *IO,
            "inputFormat",
            value={"type": "kafka", "valueFormat": {"type": "json"}, "keyFormat": {"type": "tsv"}},
        ),
        "spec.ioConfig.inputFormat.keyFormat.findColumnsFromHeader",
        "either columns or findColumnsFromHeader",
    ),
    (
        "flattenSpec path outside the supported JSONPath",
        _set(
            *IO,
            "inputFormat",
            value={
                "type": "json",
                "flattenSpec": {"fields": [{"type": "path", "name": "a", "expr": "$..a"}]},
            },
        ),
        "spec.ioConfig.inputFormat.flattenSpec.fields[0].expr",
        "only child names",
    ),
    (
        "flattenSpec jq that does not compile",
        _set(
            *IO,
            "inputFormat",
            value={"type": "json", "flattenSpec": {"fields": [{"type": "jq", "name": "a", "expr": ".a["}]}},
        ),
        "spec.ioConfig.inputFormat.flattenSpec.fields[0].expr",
        "jq expression '.a['",
    ),
    (
        "bad duration",
        _set(*IO, "taskDuration", value="PT1X"),
        "spec.ioConfig.taskDuration",
        "invalid ISO-8601",
    ),
    ("month duration", _set(*IO, "taskDuration", value="P1M"), "spec.ioConfig.taskDuration", "months"),
    (
        "zero duration",
        _set(*IO, "period", value="PT0S"),
        "spec.ioConfig.period",
        "must be a positive duration",
    ),
    (
        "duration list",
        _set(*IO, "completionTimeout", value=[1]),
        "spec.ioConfig.completionTimeout",
        "ISO-8601",
    ),
    ("dataSource ../x", _set(*DS, "dataSource", value="../x"), "spec.dataSchema.dataSource", "'/'"),
    ("dataSource a/b", _set(*DS, "dataSource", value="a/b"), "spec.dataSchema.dataSource", "'/'"),
    ("dataSource backslash", _set(*DS, "dataSource", value="a\\b"), "spec.dataSchema.dataSource", "'\\'"),
    (
        "dataSource empty",
        _set(*DS, "dataSource", value=""),
        "spec.dataSchema.dataSource",
        "must not be empty",
    ),
    ("dataSource blank", _set(*DS, "dataSource", value=" "), "spec.dataSchema.dataSource", "blank"),
    ("dataSource dot", _set(*DS, "dataSource", value=".hidden"), "spec.dataSchema.dataSource", "'.'"),
    ("dataSource tab", _set(*DS, "dataSource", value="a\tb"), "spec.dataSchema.dataSource", "whitespace"),
    ("dataSource long", _set(*DS, "dataSource", value="x" * 300), "spec.dataSchema.dataSource", "255"),
    ("dataSource number", _set(*DS, "dataSource", value=7), "spec.dataSchema.dataSource", "must be a string"),
    ("missing dataSource", _drop(*DS, "dataSource"), "spec.dataSchema.dataSource", "is required"),
    (
        "parser",
        _set(*DS, "parser", value={"type": "string"}),
        "spec.dataSchema.parser",
        "cannot be used together with ioConfig.inputFormat",
    ),
    (
        "unsupported aggregator",
        _set(*DS, "metricsSpec", 1, value={"type": "javascript", "name": "u", "fieldNames": ["user"]}),
        "spec.dataSchema.metricsSpec[1].type",
        "aggregator type 'javascript' is not supported yet",
    ),
    (
        "aggregator without fieldName",
        _set(*DS, "metricsSpec", 1, value={"type": "doubleSum", "name": "s"}),
        "spec.dataSchema.metricsSpec[1].fieldName",
        "is required",
    ),
    (
        "count with fieldName",
        _set(*DS, "metricsSpec", 0, value={"type": "count", "name": "c", "fieldName": "x"}),
        "spec.dataSchema.metricsSpec[0].fieldName",
        "count",
    ),
    (
        "aggregator expression",
        _set(*DS, "metricsSpec", 1, value={"type": "longSum", "name": "s", "expression": "a + b"}),
        "spec.dataSchema.metricsSpec[1].expression",
        "is not supported yet",
    ),
    (
        "duplicate metric",
        _set(*DS, "metricsSpec", 1, value={"type": "longSum", "name": "count", "fieldName": "n"}),
        "spec.dataSchema.metricsSpec[1].name",
        "duplicate metric 'count'",
    ),
    (
        "bad segment granularity",
        _set(*DS, "granularitySpec", "segmentGranularity", value="DAYY"),
        "spec.dataSchema.granularitySpec.segmentGranularity",
        "unknown granularity 'DAYY'",
    ),
    (
        "period granularity with time zone",
        _set(
            *DS,
            "granularitySpec",
            "segmentGranularity",
            value={"type": "period", "period": "P1D", "timeZone": "X"},
        ),
        "spec.dataSchema.granularitySpec.segmentGranularity.timeZone",
        "not supported yet",
    ),
    (
        "odd period granularity",
        _set(*DS, "granularitySpec", "queryGranularity", value={"type": "period", "period": "PT2H"}),
        "spec.dataSchema.granularitySpec.queryGranularity.period",
        "not supported yet",
    ),
    (
        "period granularity without period",
        _set(*DS, "granularitySpec", "segmentGranularity", value={"type": "period"}),
        "spec.dataSchema.granularitySpec.segmentGranularity.period",
        "is required",
    ),
    (
        "granularity number",
        _set(*DS, "granularitySpec", "segmentGranularity", value=5),
        "spec.dataSchema.granularitySpec.segmentGranularity",
        "granularity name",
    ),
    (
        "duration granularity",
        _set(*DS, "granularitySpec", "queryGranularity", value={"type": "duration", "duration": 60000}),
        "spec.dataSchema.granularitySpec.queryGranularity.type",
        "not supported yet",
    ),
    (
        "arbitrary granularitySpec",
        _set(*DS, "granularitySpec", "type", value="arbitrary"),
        "spec.dataSchema.granularitySpec.type",
        "not supported yet",
    ),
    (
        "rollup not bool",
        _set(*DS, "granularitySpec", "rollup", value="no"),
        "spec.dataSchema.granularitySpec.rollup",
        "true or false",
    ),
    (
        "duplicate dimension",
        _set(*DS, "dimensionsSpec", "dimensions", value=["a", "b", "a"]),
        "spec.dataSchema.dimensionsSpec.dimensions[2]",
        "duplicate dimension 'a'",
    ),
    (
        "dimension is a metric",
        _set(*DS, "dimensionsSpec", "dimensions", value=["a", "sum"]),
        "spec.dataSchema.dimensionsSpec.dimensions[1]",
        "metric",
    ),
    (
        "spatial dimension",
        _set(*DS, "dimensionsSpec", "dimensions", 1, value={"name": "loc", "type": "spatial"}),
        "spec.dataSchema.dimensionsSpec.dimensions[1].type",
        "is not supported yet",
    ),
    (
        "unknown dimension type",
        _set(*DS, "dimensionsSpec", "dimensions", 1, value={"name": "x", "type": "int"}),
        "spec.dataSchema.dimensionsSpec.dimensions[1].type",
        "unknown dimension type 'int'",
    ),
    (
        "dimension typo",
        _set(*DS, "dimensionsSpec", "dimensions", 1, value={"name": "x", "typ": "long"}),
        "spec.dataSchema.dimensionsSpec.dimensions[1].typ",
        "did you mean 'type'?",
    ),
    (
        "empty dimension name",
        _set(*DS, "dimensionsSpec", "dimensions", 0, value=""),
        "spec.dataSchema.dimensionsSpec.dimensions[0]",
        "must not be empty",
    ),
    (
        "dimension not a string",
        _set(*DS, "dimensionsSpec", "dimensions", 0, value=5),
        "spec.dataSchema.dimensionsSpec.dimensions[0]",
        "dimension name or a JSON object",
    ),
    (
        "spatialDimensions",
        _set(*DS, "dimensionsSpec", "spatialDimensions", value=[{"dimName": "c"}]),
        "spec.dataSchema.dimensionsSpec.spatialDimensions",
        "is not supported yet",
    ),
    (
        "excluded dimension",
        _set(*DS, "dimensionsSpec", "dimensionExclusions", value=["x", "page"]),
        "spec.dataSchema.dimensionsSpec.dimensionExclusions[1]",
        "both",
    ),
    (
        "transform expression with a syntax error",
        _set(
            *DS,
            "transformSpec",
            value={
                "transforms": [
                    {"type": "expression", "name": "a", "expression": "upper(b)"},
                    {"type": "expression", "name": "c", "expression": "concat(a, 'x'"},
                ]
            },
        ),
        "spec.dataSchema.transformSpec.transforms[1].expression",
        "expected ')' but found the end of the expression at position 13",
    ),
    (
        "transform with an unknown function",
        _set(
            *DS,
            "transformSpec",
            value={"transforms": [{"type": "expression", "name": "a", "expression": "1 + nope(b)"}]},
        ),
        "spec.dataSchema.transformSpec.transforms[0].expression",
        "unknown function 'nope' at position 4",
    ),
    (
        "transform of an unknown type",
        _set(*DS, "transformSpec", value={"transforms": [{"type": "javascript", "name": "a"}]}),
        "spec.dataSchema.transformSpec.transforms[0].type",
        "is not supported",
    ),
    (
        "two transforms of one name",
        _set(
            *DS,
            "transformSpec",
            value={
                "transforms": [
                    {"type": "expression", "name": "a", "expression": "1"},
                    {"type": "expression", "name": "a", "expression": "2"},
                ]
            },
        ),
        "spec.dataSchema.transformSpec.transforms[1].name",
        "duplicate",
    ),
    (
        "javascript filter",
        _set(
            *DS,
            "transformSpec",
            value={
                "filter": {"type": "javascript", "dimension": "a", "function": "function(x){return true}"}
            },
        ),
        "spec.dataSchema.transformSpec.filter.type",
        "run code",
    ),
    (
        "javascript extraction function",
        _set(
            *DS,
            "transformSpec",
            value={
                "filter": {
                    "type": "selector",
                    "dimension": "a",
                    "value": "b",
                    "extractionFn": {"type": "javascript", "function": "function(x){return x}"},
                }
            },
        ),
        "spec.dataSchema.transformSpec.filter.extractionFn.type",
        "run code",
    ),
    (
        "expression filter with a syntax error",
        _set(*DS, "transformSpec", value={"filter": {"type": "expression", "expression": "a >"}}),
        "spec.dataSchema.transformSpec.filter.expression",
        "at position 3",
    ),
    (
        "unknown filter type",
        _set(
            *DS,
            "transformSpec",
            value={"filter": {"type": "and", "fields": [{"type": "spatial", "dimension": "a"}]}},
        ),
        "spec.dataSchema.transformSpec.filter.fields[0].type",
        "filter type 'spatial' is not supported yet",
    ),
    (
        "filter missing dimension",
        _set(
            *DS,
            "transformSpec",
            value={"filter": {"type": "not", "field": {"type": "selector", "value": "a"}}},
        ),
        "spec.dataSchema.transformSpec.filter.field.dimension",
        "is required",
    ),
    (
        "filter missing type",
        _set(*DS, "transformSpec", value={"filter": {"dimension": "a", "value": "b"}}),
        "spec.dataSchema.transformSpec.filter.type",
        "is required",
    ),
    (
        "bound without bounds",
        _set(*DS, "transformSpec", value={"filter": {"type": "bound", "dimension": "a"}}),
        "spec.dataSchema.transformSpec.filter",
        "lower and upper",
    ),
    (
        "bound strlen ordering",
        _set(
            *DS,
            "transformSpec",
            value={"filter": {"type": "bound", "dimension": "a", "lower": "1", "ordering": "strlen"}},
        ),
        "spec.dataSchema.transformSpec.filter.ordering",
        "not supported yet",
    ),
    (
        "numeric bound with text",
        _set(
            *DS,
            "transformSpec",
            value={"filter": {"type": "bound", "dimension": "a", "upper": "z", "ordering": "numeric"}},
        ),
        "spec.dataSchema.transformSpec.filter.upper",
        "must be a number",
    ),
    (
        "extractionFn",
        _set(
            *DS,
            "transformSpec",
            value={"filter": {"type": "selector", "dimension": "a", "value": "b", "extractionFn": {}}},
        ),
        "spec.dataSchema.transformSpec.filter.extractionFn.type",
        "is required",
    ),
    (
        "selector value list",
        _set(*DS, "transformSpec", value={"filter": {"type": "selector", "dimension": "a", "value": ["x"]}}),
        "spec.dataSchema.transformSpec.filter.value",
        "must be a string",
    ),
    (
        "filter not an object",
        _set(*DS, "transformSpec", value={"filter": "page = 'x'"}),
        "spec.dataSchema.transformSpec.filter",
        "must be a JSON object",
    ),
    (
        "empty and",
        _set(*DS, "transformSpec", value={"filter": {"type": "and", "fields": []}}),
        "spec.dataSchema.transformSpec.filter.fields",
        "must not be empty",
    ),
    (
        "joda timestamp format",
        _set(*DS, "timestampSpec", "format", value="yyyy-MM-dd"),
        "spec.dataSchema.timestampSpec.format",
        "is not supported yet",
    ),
    (
        "bad missingValue",
        _set(*DS, "timestampSpec", "missingValue", value="yesterday"),
        "spec.dataSchema.timestampSpec.missingValue",
        "invalid ISO-8601 timestamp",
    ),
    (
        "tuning maxRowsInMemory zero",
        _set(*TUNING, "maxRowsInMemory", value=0),
        "spec.tuningConfig.maxRowsInMemory",
        "must be a positive integer",
    ),
    (
        "tuning maxRowsPerSegment negative",
        _set(*TUNING, "maxRowsPerSegment", value=-5),
        "spec.tuningConfig.maxRowsPerSegment",
        "must be a positive integer",
    ),
    (
        "tuning maxBytesInMemory",
        _set(*TUNING, "maxBytesInMemory", value=-2),
        "spec.tuningConfig.maxBytesInMemory",
        "-1",
    ),
    ("tuning type", _set(*TUNING, "type", value="kinesis"), "spec.tuningConfig.type", "must be 'kafka'"),
    (
        "tuning typo",
        _set(*TUNING, "maxRowsInMemroy", value=1),
        "spec.tuningConfig.maxRowsInMemroy",
        "did you mean 'maxRowsInMemory'?",
    ),
    (
        "hashed partitionsSpec",
        _set(*TUNING, "partitionsSpec", value={"type": "hashed", "numShards": 2}),
        "spec.tuningConfig.partitionsSpec.type",
        "not supported",
    ),
    (
        "conflicting partitionsSpec",
        _set(
            *TUNING,
            value={"maxRowsPerSegment": 10, "partitionsSpec": {"type": "dynamic", "maxRowsPerSegment": 20}},
        ),
        "spec.tuningConfig.partitionsSpec.maxRowsPerSegment",
        "conflicts",
    ),
    ("tuning not object", _set(*TUNING, value=[1]), "spec.tuningConfig", "must be a JSON object"),
    (
        "dead letter topic",
        _set(*TUNING, "deadLetterTopic", value="bad/topic"),
        "spec.tuningConfig.deadLetterTopic",
        "topic",
    ),
    ("id differs", _set("id", value="other"), "id", "dataSource"),
]


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [pytest.param(mutate, field, problem, id=name) for name, mutate, field, problem in BAD_SPECS],
)
def test_invalid_specs_name_the_field(
    mutate: Callable[[dict[str, Any]], None], field: str, problem: str
) -> None:
    payload = base()
    mutate(payload)
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(payload)
    assert info.value.field == field
    assert problem in info.value.problem
    assert str(info.value).startswith(field)
    assert info.value.status == 400


@pytest.mark.parametrize("payload", [None, [], "spec", 3])
def test_non_object_payload(payload: Any) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_supervisor_spec(payload)
    assert info.value.field == ""
    assert info.value.problem == "spec must be a JSON object"


# --------------------------------------------------------------------------- filters


def test_selector_filter() -> None:
    f = SelectorFilter(dimension="page", value="Main")
    assert f.matches({"page": "Main"})
    assert not f.matches({"page": "Other"})
    assert not f.matches({})
    assert f.matches({"page": ["x", "Main"]})  # multi-value: any element
    assert not f.matches({"page": ["x", "y"]})
    assert SelectorFilter(dimension="n", value="5").matches({"n": 5})
    assert SelectorFilter(dimension="b", value="true").matches({"b": True})
    assert SelectorFilter.model_validate({"dimension": "b", "value": True}).matches({"b": "true"})


def test_selector_null_value_matches_missing_and_null() -> None:
    f = SelectorFilter(dimension="page", value=None)
    assert f.matches({})
    assert f.matches({"page": None})
    assert f.matches({"page": []})
    assert not f.matches({"page": ""})  # SQL-compatible: empty string is not null
    assert not f.matches({"page": "x"})


def test_in_filter() -> None:
    f = InFilter(dimension="c", values=("a", "b"))
    assert f.matches({"c": "a"})
    assert f.matches({"c": ["z", "b"]})
    assert not f.matches({"c": "z"})
    assert not f.matches({})
    with_null = InFilter(dimension="c", values=("a", None))
    assert with_null.matches({})
    assert with_null.matches({"c": None})


def test_numbers_in_filter_json_are_compared_as_strings() -> None:
    payload = base()
    payload["spec"]["dataSchema"]["transformSpec"] = {
        "filter": {"type": "in", "dimension": "n", "values": [1, 2]}
    }
    f = parse_supervisor_spec(payload).data_schema.transform_spec.filter
    assert f is not None
    assert f.matches({"n": "2"})
    assert f.matches({"n": 1})
    assert not f.matches({"n": 3})


def test_bound_lexicographic_and_strictness() -> None:
    f = BoundFilter(dimension="s", lower="b", upper="d")
    assert f.matches({"s": "b"})
    assert f.matches({"s": "c"})
    assert f.matches({"s": "d"})
    assert not f.matches({"s": "a"})
    assert not f.matches({"s": "da"})
    strict = BoundFilter(dimension="s", lower="b", upper="d", lower_strict=True, upper_strict=True)
    assert not strict.matches({"s": "b"})
    assert strict.matches({"s": "bz"})
    assert not strict.matches({"s": "d"})
    # Lexicographic order of numbers is textual: "10" < "9".
    assert BoundFilter(dimension="n", lower="9").matches({"n": "90"})
    assert not BoundFilter(dimension="n", lower="9").matches({"n": 10})
    assert not f.matches({})  # null never satisfies a bound


def test_bound_numeric() -> None:
    f = BoundFilter(dimension="n", lower="9", upper="100", ordering="numeric")
    assert f.matches({"n": 10})
    assert f.matches({"n": "9"})
    assert f.matches({"n": 100.0})
    assert not f.matches({"n": 100.5})
    assert not f.matches({"n": 8})
    assert not f.matches({"n": "abc"})  # not a number: no match
    assert not f.matches({})
    strict = BoundFilter(
        dimension="n", lower="9", upper="100", lower_strict=True, upper_strict=True, ordering="numeric"
    )
    assert not strict.matches({"n": 9})
    assert not strict.matches({"n": 100})
    assert strict.matches({"n": 9.5})
    assert BoundFilter(dimension="n", upper="0", ordering="numeric").matches({"n": [5, -1]})


def test_bound_ordering_forms_in_json() -> None:
    for ordering in ("numeric", "NUMERIC", {"type": "numeric"}):
        payload = base()
        payload["spec"]["dataSchema"]["transformSpec"] = {
            "filter": {"type": "bound", "dimension": "n", "lower": 5, "ordering": ordering}
        }
        f = parse_supervisor_spec(payload).data_schema.transform_spec.filter
        assert isinstance(f, BoundFilter)
        assert f.ordering == "numeric"
        assert f.matches({"n": 10})


def test_logical_filters() -> None:
    a = SelectorFilter(dimension="a", value="1")
    b = SelectorFilter(dimension="b", value="2")
    assert AndFilter(fields=(a, b)).matches({"a": "1", "b": "2"})
    assert not AndFilter(fields=(a, b)).matches({"a": "1", "b": "3"})
    assert OrFilter(fields=(a, b)).matches({"a": "0", "b": "2"})
    assert not OrFilter(fields=(a, b)).matches({"a": "0", "b": "0"})
    assert NotFilter(field=a).matches({"a": "0"})
    assert not NotFilter(field=a).matches({"a": "1"})
    assert TrueFilter().matches({})
    assert not FalseFilter().matches({})
    assert OrFilter(fields=(FalseFilter(), TrueFilter())).matches({})


def test_not_of_multi_value_means_no_element_matches() -> None:
    f = NotFilter(field=SelectorFilter(dimension="tags", value="x"))
    assert not f.matches({"tags": ["a", "x"]})
    assert f.matches({"tags": ["a", "b"]})


def test_null_handling_is_three_valued() -> None:
    eq = SelectorFilter(dimension="a", value="1")
    assert eq.evaluate({}) is None
    assert NotFilter(field=eq).evaluate({}) is None
    assert not NotFilter(field=eq).matches({})  # NOT (null = '1') is unknown: row dropped
    assert OrFilter(fields=(eq, TrueFilter())).matches({})
    assert not AndFilter(fields=(eq, TrueFilter())).matches({})
    assert AndFilter(fields=(eq, FalseFilter())).evaluate({}) is False
    assert NotFilter(field=NullFilter(column="a")).matches({"a": "x"})
    assert not NotFilter(field=NullFilter(column="a")).matches({})


def test_equals_and_null_filters() -> None:
    text = EqualsFilter(column="c", match_value_type="STRING", match_value="x")
    assert text.matches({"c": "x"})
    assert text.matches({"c": ["y", "x"]})
    assert not text.matches({"c": "y"})
    long = EqualsFilter.model_validate({"column": "n", "matchValueType": "long", "matchValue": "3"})
    assert long.match_value == 3
    assert long.matches({"n": 3})
    assert long.matches({"n": "3.0"})
    assert not long.matches({"n": 4})
    assert not long.matches({"n": "three"})
    null = NullFilter(column="c")
    assert null.matches({})
    assert null.matches({"c": None})
    assert not null.matches({"c": "x"})


# --------------------------------------------------------------------------- granularity


def test_granularity_names_are_case_insensitive() -> None:
    payload = base()
    payload["spec"]["dataSchema"]["granularitySpec"] = {
        "segmentGranularity": "fifteen_minute",
        "queryGranularity": "All",
    }
    spec = parse_supervisor_spec(payload)
    assert spec.data_schema.granularity_spec.segment_granularity is Granularity.FIFTEEN_MINUTE
    assert spec.data_schema.granularity_spec.query_granularity is Granularity.ALL


@pytest.mark.parametrize(
    ("granularity", "at", "start", "end"),
    [
        (Granularity.NONE, ms(2024, 5, 6, 7, 8, 9), ms(2024, 5, 6, 7, 8, 9), ms(2024, 5, 6, 7, 8, 9) + 1),
        (
            Granularity.SECOND,
            ms(2024, 5, 6, 7, 8, 9) + 999,
            ms(2024, 5, 6, 7, 8, 9),
            ms(2024, 5, 6, 7, 8, 10),
        ),
        (Granularity.MINUTE, ms(2024, 5, 6, 7, 8, 9), ms(2024, 5, 6, 7, 8), ms(2024, 5, 6, 7, 9)),
        (Granularity.FIVE_MINUTE, ms(2024, 5, 6, 7, 8, 9), ms(2024, 5, 6, 7, 5), ms(2024, 5, 6, 7, 10)),
        (Granularity.TEN_MINUTE, ms(2024, 5, 6, 7, 8, 9), ms(2024, 5, 6, 7, 0), ms(2024, 5, 6, 7, 10)),
        (Granularity.FIFTEEN_MINUTE, ms(2024, 5, 6, 7, 59), ms(2024, 5, 6, 7, 45), ms(2024, 5, 6, 8, 0)),
        (Granularity.THIRTY_MINUTE, ms(2024, 5, 6, 7, 30), ms(2024, 5, 6, 7, 30), ms(2024, 5, 6, 8, 0)),
        (Granularity.HOUR, ms(2024, 5, 6, 7, 0), ms(2024, 5, 6, 7), ms(2024, 5, 6, 8)),
        (Granularity.HOUR, ms(2024, 5, 6, 7, 0) - 1, ms(2024, 5, 6, 6), ms(2024, 5, 6, 7)),
        (Granularity.SIX_HOUR, ms(2024, 5, 6, 23, 59), ms(2024, 5, 6, 18), ms(2024, 5, 7, 0)),
        (Granularity.EIGHT_HOUR, ms(2024, 5, 6, 15, 59), ms(2024, 5, 6, 8), ms(2024, 5, 6, 16)),
        (Granularity.DAY, ms(2024, 5, 6), ms(2024, 5, 6), ms(2024, 5, 7)),
        (Granularity.DAY, ms(2024, 5, 6) - 1, ms(2024, 5, 5), ms(2024, 5, 6)),
        (Granularity.DAY, ms(2024, 2, 29, 12), ms(2024, 2, 29), ms(2024, 3, 1)),
        # 2024-05-06 is a Monday; 2024-05-05 a Sunday.
        (Granularity.WEEK, ms(2024, 5, 6), ms(2024, 5, 6), ms(2024, 5, 13)),
        (Granularity.WEEK, ms(2024, 5, 5, 23, 59), ms(2024, 4, 29), ms(2024, 5, 6)),
        (Granularity.WEEK, 0, ms(1969, 12, 29), ms(1970, 1, 5)),
        (Granularity.MONTH, ms(2023, 12, 31, 23, 59, 59), ms(2023, 12, 1), ms(2024, 1, 1)),
        (Granularity.MONTH, ms(2024, 1, 1), ms(2024, 1, 1), ms(2024, 2, 1)),
        (Granularity.MONTH, ms(2024, 2, 15), ms(2024, 2, 1), ms(2024, 3, 1)),
        (Granularity.QUARTER, ms(2024, 5, 6), ms(2024, 4, 1), ms(2024, 7, 1)),
        (Granularity.QUARTER, ms(2023, 12, 31), ms(2023, 10, 1), ms(2024, 1, 1)),
        (Granularity.QUARTER, ms(2024, 3, 31, 23), ms(2024, 1, 1), ms(2024, 4, 1)),
        (Granularity.YEAR, ms(2024, 12, 31, 23), ms(2024, 1, 1), ms(2025, 1, 1)),
        (Granularity.YEAR, ms(2025, 1, 1), ms(2025, 1, 1), ms(2026, 1, 1)),
        # Before 1970: buckets floor towards the past.
        (Granularity.DAY, -1, ms(1969, 12, 31), 0),
        (Granularity.HOUR, -1, -3_600_000, 0),
        (Granularity.MONTH, -1, ms(1969, 12, 1), 0),
        (Granularity.YEAR, ms(1900, 6, 1), ms(1900, 1, 1), ms(1901, 1, 1)),
        (Granularity.WEEK, ms(1969, 12, 28), ms(1969, 12, 22), ms(1969, 12, 29)),
        (Granularity.QUARTER, ms(1969, 11, 2), ms(1969, 10, 1), 0),
        (Granularity.ALL, ms(2024, 5, 6), MIN_INSTANT_MS, MAX_INSTANT_MS),
    ],
)
def test_granularity_buckets(granularity: Granularity, at: int, start: int, end: int) -> None:
    assert granularity.bucket_start(at) == start
    assert granularity.bucket_end(at) == end
    assert granularity.bucket_start(at) <= at < granularity.bucket_end(at)


def test_granularity_bucket_start_is_idempotent() -> None:
    for granularity in Granularity:
        for at in (ms(1969, 7, 20, 20, 17), 0, ms(2024, 2, 29, 23, 59, 59)):
            start = granularity.bucket_start(at)
            assert granularity.bucket_start(start) == start
            assert granularity.bucket_end(at) > start


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT10M", timedelta(minutes=10)),
        ("PT1H", timedelta(hours=1)),
        ("P1D", timedelta(days=1)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT1H30M15S", timedelta(hours=1, minutes=30, seconds=15)),
        ("P2W", timedelta(days=14)),
        ("pt5s", timedelta(seconds=5)),
        ("PT0S", timedelta(0)),
        ("PT36H", timedelta(hours=36)),
        (3_600_000, timedelta(hours=1)),
    ],
)
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "1H", "PT1X", "P1Y", "P2M", "P1YT1H", "PT-1S", "-PT1S", "PT1.5H", "P1DT"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, -1, 1.5, None, [1]])
def test_parse_duration_rejects_non_periods(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    "value",
    [
        timedelta(0),
        timedelta(hours=1),
        timedelta(days=1, hours=2),
        timedelta(milliseconds=500),
        timedelta(days=3, seconds=7, microseconds=1),
        timedelta(minutes=90),
    ],
)
def test_format_duration_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


def test_format_duration_text() -> None:
    assert format_duration(timedelta(hours=1)) == "PT1H"
    assert format_duration(timedelta(minutes=30)) == "PT30M"
    assert format_duration(timedelta(days=1, hours=2)) == "P1DT2H"
    assert format_duration(timedelta(milliseconds=1500)) == "PT1.5S"
    assert format_duration(timedelta(0)) == "PT0S"

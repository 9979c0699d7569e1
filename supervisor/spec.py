"""Druid's Kafka supervisor spec as frozen pydantic models.

Attributes are snake_case, JSON keys are Druid's camelCase names. Use
:func:`parse_supervisor_spec` on anything a user sent: it accepts Druid's wrapped
form (``{"type": "kafka", "spec": {...}}``) and the legacy unwrapped one, and
turns every problem into ``InvalidSpec(field, problem)`` where ``field`` is the
path of the offending value as the user wrote it (``spec.ioConfig.taskCount``,
``spec.dataSchema.metricsSpec[1].fieldName``).

Policy for keys: Druid's own keys we implement are validated; keys Druid accepts
but that do not change what we do are accepted (and kept, so ``to_json`` shows
them); keys Druid knows but we do not implement yet are refused with "is not
supported yet"; anything else is refused as "unknown field". A JSON ``null`` is
the same as leaving the key out.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from supervisor._spec_common import (
    ALWAYS,
    SUPPORTED_INPUT_FORMATS,
    DruidModel,
    Duration,
    JsonBool,
    JsonInt,
    NonEmptyStr,
    NonNegativeInt,
    PositiveDuration,
    PositiveInt,
    java_string,
    spec_problem,
    unsupported_input_format,
    without_nulls,
)
from supervisor.aggregators import AggregatorSpec
from supervisor.binary_formats import (
    AvroStreamInputFormat,
    JsonFlattenField,
    PathFlattenSpec,
    ProtobufInputFormat,
)
from supervisor.durations import format_duration, parse_duration
from supervisor.errors import InvalidSpec
from supervisor.filters import (
    AndFilter,
    BoundFilter,
    DimFilter,
    EqualsFilter,
    FalseFilter,
    InFilter,
    NotFilter,
    NullFilter,
    OrFilter,
    SelectorFilter,
    TrueFilter,
    check_intervals,
    interval_bounds,
)
from supervisor.granularity import Granularity, GranularityError, parse_granularity
from supervisor.kafka import properties as kafka_properties
from supervisor.spec_errors import format_path
from supervisor.spec_fields import (
    SpecNotes,
    check_unknown_key,
    unhonoured_fields,
    validate_collecting_unknown,
)
from supervisor.spec_legacy import translate_parser
from supervisor.transforms import ExpressionTransform, check_transform_names

__all__ = [
    "DEFAULT_MAX_BYTES_IN_MEMORY",
    "DEFAULT_MAX_TOTAL_ROWS",
    "MAX_PARSE_EXCEPTIONS_UNLIMITED",
    "TIME_COLUMN",
    "UNLIMITED_BYTES",
    "AggregatorSpec",
    "AndFilter",
    "AnyInputFormat",
    "BoundFilter",
    "CsvInputFormat",
    "DataSchema",
    "DelimitedInputFormat",
    "DimFilter",
    "DimensionSchema",
    "DimensionsSpec",
    "EqualsFilter",
    "FalseFilter",
    "FlattenSpec",
    "Granularity",
    "GranularitySpec",
    "IdleConfig",
    "InFilter",
    "InputFormat",
    "KafkaIOConfig",
    "KafkaInputFormat",
    "KafkaTuningConfig",
    "NotFilter",
    "NullFilter",
    "OrFilter",
    "ParsedSpec",
    "SelectorFilter",
    "SpecNotes",
    "SupervisorSpec",
    "TimestampSpec",
    "TransformSpec",
    "TrueFilter",
    "format_duration",
    "parse_duration",
    "parse_supervisor_spec",
    "read_supervisor_spec",
]

# maxBytesInMemory = 0 means "default": one sixth of the JVM heap in Druid, a fixed 64 MiB here.
DEFAULT_MAX_BYTES_IN_MEMORY = 64 * 1024 * 1024
# maxBytesInMemory = -1 means "no byte limit": only maxRowsInMemory applies.
UNLIMITED_BYTES = 2**63 - 1
# Druid's DynamicPartitionsSpec default when maxTotalRows is not given.
DEFAULT_MAX_TOTAL_ROWS = 20_000_000
# Druid's "unlimited" parse exceptions: Integer.MAX_VALUE.
MAX_PARSE_EXCEPTIONS_UNLIMITED = 2**31 - 1

# The column Druid stores row times in; no dimension or metric may take its name.
TIME_COLUMN = "__time"

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


# --------------------------------------------------------------------------- field types


def _to_granularity(value: Any) -> Granularity:
    try:
        return parse_granularity(value)
    except GranularityError as exc:
        raise spec_problem(exc.problem, *exc.subpath) from None


GranularityField = Annotated[
    Granularity,
    BeforeValidator(_to_granularity),
    PlainSerializer(lambda g: g.name, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "a granularity name, any case: `hour`, `DAY`, `none`"},
                {"type": "object", "description": "Druid's granularity object (`type` `period`, ...)"},
            ]
        },
        mode="validation",
    ),
]


def _to_utc_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int) and not isinstance(value, bool):
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise spec_problem(f"invalid ISO-8601 timestamp '{value}'") from None
    else:
        raise spec_problem("must be an ISO-8601 timestamp string")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


UtcDateTime = Annotated[datetime, BeforeValidator(_to_utc_datetime)]


def _check_data_source(name: str) -> str:
    # The datasource becomes a directory name and part of segment ids (Druid's IdUtils rules).
    if not name.strip():
        raise spec_problem("must not be blank")
    if "/" in name or "\\" in name:
        raise spec_problem("must not contain '/' or '\\'")
    if name.startswith("."):
        raise spec_problem("must not start with '.'")
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") or (char.isspace() and char != " "):
            raise spec_problem(f"must not contain control or whitespace characters other than ' ' ({char!r})")
    if len(name.encode("utf-8")) > 255:
        raise spec_problem("must be at most 255 bytes long (UTF-8)")
    return name


def _check_topic(name: str) -> str:
    if not _TOPIC.fullmatch(name) or name in (".", ".."):
        raise spec_problem(
            f"invalid Kafka topic name '{name}' (1 to 249 characters from a-z, A-Z, 0-9, '.', '_', '-')"
        )
    return name


DataSourceName = Annotated[str, Field(strict=True, min_length=1), AfterValidator(_check_data_source)]
TopicName = Annotated[str, Field(strict=True, min_length=1), AfterValidator(_check_topic)]


def _check_topic_pattern(pattern: str) -> str:
    """``ioConfig.topicPattern`` is a Java regex that Druid matches against whole topic names
    (KafkaRecordSupplier.getPartitionIds: ``pattern.matcher(topic).matches()``); here Python's
    ``re.fullmatch``, which reads the patterns people write (``clicks|impressions``,
    ``metrics-.*``) the same way. One ``re`` cannot compile is refused here."""
    try:
        re.compile(pattern)
    except re.error as e:
        raise spec_problem(f"is not a valid regular expression: {e}") from None
    return pattern


TopicPattern = Annotated[str, Field(strict=True, min_length=1), AfterValidator(_check_topic_pattern)]


# --------------------------------------------------------------------------- dataSchema


class TimestampSpec(DruidModel):
    """Where each row's time comes from. ``format`` is lower-cased on input."""

    column: NonEmptyStr = "timestamp"
    format: Literal["auto", "iso", "millis", "posix", "micro", "nano", "ruby"] = "auto"
    missing_value: UtcDateTime | None = Field(default=None, alias="missingValue")

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        known = value.strip().lower()
        if known in ("auto", "iso", "millis", "posix", "micro", "nano", "ruby"):
            return known
        raise spec_problem(
            f"timestamp format '{value}' is not supported yet (auto, iso, millis, posix, micro, nano, ruby)"
        )

    @property
    def missing_value_ms(self) -> int | None:
        """``missing_value`` as UTC epoch milliseconds."""
        if self.missing_value is None:
            return None
        return (self.missing_value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


_DIMENSION_TYPES = ("string", "long", "float", "double", "json")


class DimensionSchema(DruidModel):
    """One dimension. A plain JSON string ``"x"`` is the string dimension ``x``."""

    name: NonEmptyStr
    type: Literal["string", "long", "float", "double", "json"] = "string"
    # Only meaningful for string dimensions (default: true for them, false for the others).
    create_bitmap_index: JsonBool = Field(default=True, alias="createBitmapIndex")
    multi_value_handling: Literal["SORTED_ARRAY", "SORTED_SET", "ARRAY"] = Field(
        default="SORTED_ARRAY", alias="multiValueHandling"
    )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # the API document: a plain JSON string is the string dimension of that name (_druid_forms)
        return {"anyOf": [{"type": "string", "minLength": 1}, handler(core_schema)]}

    @model_validator(mode="before")
    @classmethod
    def _druid_forms(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if not isinstance(data, dict):
            raise spec_problem("must be a dimension name or a JSON object")
        data = without_nulls(data)
        kind = data.get("type", "string")
        if isinstance(kind, str):
            # Druid reads column types case-insensitively (ColumnType/ValueType.fromString): "LONG".
            kind = data["type"] = kind.strip().lower()
        if isinstance(kind, str) and kind not in _DIMENSION_TYPES:
            if kind in ("spatial", "auto"):
                raise spec_problem(f"dimension type '{kind}' is not supported yet", "type")
            raise spec_problem(f"unknown dimension type '{kind}' (string, long, float, double, json)", "type")
        # Druid only builds bitmap indexes for string dimensions; its own output carries
        # createBitmapIndex=false (and multiValueHandling) on the other types, so accept them.
        data.setdefault("createBitmapIndex", kind == "string")
        handling = data.get("multiValueHandling")
        if isinstance(handling, str):
            data["multiValueHandling"] = handling.strip().upper()
        return data

    def unhonoured_keys(self) -> list[str]:
        # Segments here are Parquet files: there is no bitmap index to leave out.
        keys = super().unhonoured_keys()
        if self.type == "string" and not self.create_bitmap_index:
            keys.append("createBitmapIndex")
        return keys


class DimensionsSpec(DruidModel):
    """The dimensions to store. Empty ``dimensions`` means schemaless (decided by the ingest engine)."""

    dimensions: tuple[DimensionSchema, ...] = ()
    dimension_exclusions: tuple[NonEmptyStr, ...] = Field(default=(), alias="dimensionExclusions")
    spatial_dimensions: tuple[Any, ...] = Field(default=(), alias="spatialDimensions")
    include_all_dimensions: JsonBool = Field(default=False, alias="includeAllDimensions")
    use_schema_discovery: JsonBool = Field(default=False, alias="useSchemaDiscovery")

    # Druid 31+: false sorts segments by the dimensions first, not by __time.
    _druid_only = {"forceSegmentSortByTime": True}

    @field_validator("spatial_dimensions")
    @classmethod
    def _no_spatial(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if value:
            raise spec_problem("is not supported yet")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> DimensionsSpec:
        seen: set[str] = set()
        for index, dimension in enumerate(self.dimensions):
            if dimension.name in seen:
                raise spec_problem(f"duplicate dimension '{dimension.name}'", "dimensions", index)
            if dimension.name == TIME_COLUMN:
                raise spec_problem(f"'{TIME_COLUMN}' is a reserved column name", "dimensions", index)
            seen.add(dimension.name)
        for index, excluded in enumerate(self.dimension_exclusions):
            if excluded in seen:
                raise spec_problem(
                    f"'{excluded}' is both a dimension and a dimension exclusion",
                    "dimensionExclusions",
                    index,
                )
        return self

    @property
    def is_schemaless(self) -> bool:
        return not self.dimensions

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(dimension.name for dimension in self.dimensions)


class GranularitySpec(DruidModel):
    """Segment and query granularity (``uniform`` is the only type; it is also the default)."""

    type: Literal["uniform"] = "uniform"
    segment_granularity: GranularityField = Field(default=Granularity.DAY, alias="segmentGranularity")
    query_granularity: GranularityField = Field(default=Granularity.NONE, alias="queryGranularity")
    rollup: JsonBool = True
    # Rows whose segment bucket lies outside these are thrown away (bucket_windows).
    intervals: tuple[NonEmptyStr, ...] = ()

    _check_intervals = field_validator("intervals")(lambda cls, value: check_intervals(value))

    def bucket_windows(self) -> tuple[tuple[int, int], ...] | None:
        """The time ``intervals`` allow, widened to whole ``segmentGranularity`` buckets and
        merged, sorted (start inclusive, end exclusive, epoch ms); ``None``: every time.

        As Druid's UniformGranularitySpec (its IntervalsByGranularity): a row is kept when
        the segment bucket of its timestamp is one of the buckets the intervals touch
        (granularitySpec.intervals in docs/ingestion/ingestion-spec.md).
        """
        if not self.intervals:
            return None
        granularity = self.segment_granularity
        spans: list[tuple[int, int]] = []
        for text in self.intervals:
            start, end = interval_bounds(text)
            if end <= start:
                continue  # an empty interval touches no bucket
            spans.append((granularity.bucket_start(start), granularity.bucket_end(end - 1)))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return tuple(merged)

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "uniform":
            return "uniform"
        if isinstance(value, str):
            raise spec_problem(f"granularitySpec type '{value}' is not supported yet")
        return value


class TransformSpec(DruidModel):
    """Expression ``transforms`` (``supervisor.transforms``), then which rows to keep (``filter``)."""

    filter: DimFilter | None = None
    transforms: tuple[ExpressionTransform, ...] = ()

    _distinct_names = field_validator("transforms")(lambda cls, value: check_transform_names(value))


class DataSchema(DruidModel):
    """``parser`` (Druid < 0.18) is translated by ``supervisor.spec_legacy`` before validation."""

    # Druid 33+: aggregate projections kept beside the segment; they change queries, not rows.
    _druid_only = {"projections": lambda value: value == []}

    data_source: DataSourceName = Field(alias="dataSource")
    timestamp_spec: TimestampSpec = Field(default_factory=TimestampSpec, alias="timestampSpec")
    dimensions_spec: DimensionsSpec = Field(default_factory=DimensionsSpec, alias="dimensionsSpec")
    metrics_spec: tuple[AggregatorSpec, ...] = Field(default=(), alias="metricsSpec")
    granularity_spec: GranularitySpec = Field(default_factory=GranularitySpec, alias="granularitySpec")
    transform_spec: TransformSpec = Field(default_factory=TransformSpec, alias="transformSpec")

    @field_validator("metrics_spec")
    @classmethod
    def _distinct_metrics(cls, value: tuple[AggregatorSpec, ...]) -> tuple[AggregatorSpec, ...]:
        seen: set[str] = set()
        for index, metric in enumerate(value):
            if metric.name in seen:
                raise spec_problem(f"duplicate metric '{metric.name}'", index, "name")
            if metric.name == TIME_COLUMN:
                raise spec_problem(f"'{TIME_COLUMN}' is a reserved column name", index, "name")
            seen.add(metric.name)
        return value

    @model_validator(mode="after")
    def _columns_distinct(self) -> DataSchema:
        # The timestamp column may also be a dimension: Druid then stores its text as a string
        # column beside __time (DimensionsSpec only drops it from schemaless discovery).
        metrics = {metric.name: index for index, metric in enumerate(self.metrics_spec)}
        for index, dimension in enumerate(self.dimensions_spec.dimensions):
            if dimension.name in metrics:
                raise spec_problem(
                    f"'{dimension.name}' is both a dimension and a metric "
                    f"(metricsSpec[{metrics[dimension.name]}])",
                    "dimensionsSpec",
                    "dimensions",
                    index,
                )
        return self


# --------------------------------------------------------------------------- ioConfig


class FlattenSpec(PathFlattenSpec):
    """The ``json`` format's flattenSpec (data-formats.md, "FlattenSpec"): field discovery and
    ``root``, ``path``, ``jq`` and ``tree`` fields; evaluated by middlemanager/ingest/formats/flatten.py."""

    fields: tuple[JsonFlattenField, ...] = ()


class InputFormat(DruidModel):
    """The ``json`` input format: each record value is one JSON object."""

    type: Literal["json"]
    flatten_spec: FlattenSpec | None = Field(default=None, alias="flattenSpec")
    feature_spec: dict[str, JsonBool] | None = Field(default=None, alias="featureSpec")
    keep_null_columns: JsonBool | None = Field(default=None, alias="keepNullColumns")
    assume_newline_delimited: JsonBool | None = Field(default=None, alias="assumeNewlineDelimited")
    use_json_node_reader: JsonBool | None = Field(default=None, alias="useJsonNodeReader")

    # Jackson parser features, the JsonNode reader and keeping null columns in discovery are
    # JVM details here; records are read one JSON object per Kafka message.
    _unhonoured = {
        "featureSpec": lambda value: not value,
        "keepNullColumns": False,
        "assumeNewlineDelimited": False,
        "useJsonNodeReader": False,
    }


# Druid's default list delimiter of csv/tsv is ctrl+A (docs/ingestion/data-formats.md, "CSV").
DEFAULT_LIST_DELIMITER = "\u0001"


class _FlatTextFormat(DruidModel):
    """Fields shared by ``csv`` and ``tsv``/``delimited`` (Druid's FlatTextInputFormat)."""

    columns: tuple[str, ...] | None = None
    list_delimiter: str | None = Field(default=None, alias="listDelimiter")
    find_columns_from_header: JsonBool | None = Field(default=None, alias="findColumnsFromHeader")
    skip_header_rows: NonNegativeInt = Field(default=0, alias="skipHeaderRows")

    @property
    def separator(self) -> str:
        return ","

    @property
    def effective_list_delimiter(self) -> str:
        return DEFAULT_LIST_DELIMITER if self.list_delimiter is None else self.list_delimiter

    @property
    def header_row(self) -> bool:
        """Whether the column names come from a header line (``columns`` is ignored then)."""
        return bool(self.find_columns_from_header)

    @model_validator(mode="after")
    def _columns_or_header(self) -> _FlatTextFormat:
        # FlatTextInputFormat: findColumnsFromHeader defaults to false when columns are
        # given; with neither, the format is invalid.
        if not self.header_row:
            if self.columns is None:
                field = "columns" if self.find_columns_from_header is False else "findColumnsFromHeader"
                raise spec_problem("either columns or findColumnsFromHeader: true must be given", field)
            if not self.columns:
                raise spec_problem("must not be empty when findColumnsFromHeader is false", "columns")
            seen: set[str] = set()
            for index, name in enumerate(self.columns):
                if name in seen:
                    raise spec_problem(f"duplicate column name '{name}'", "columns", index)
                if self.separator in name:
                    raise spec_problem(
                        f"column '{name}' cannot have the delimiter {self.separator!r} in its name",
                        "columns",
                        index,
                    )
                seen.add(name)
        if self.list_delimiter is not None and self.list_delimiter == self.separator:
            raise spec_problem(f"cannot be the same as the delimiter ({self.separator!r})", "listDelimiter")
        if self.list_delimiter == "":
            raise spec_problem("must not be empty", "listDelimiter")
        return self


class CsvInputFormat(_FlatTextFormat):
    """``csv``: RFC 4180 lines (quotes, doubled quotes), one row per line of a record."""

    type: Literal["csv"]


class DelimitedInputFormat(_FlatTextFormat):
    """``tsv`` / ``delimited``: lines split on ``delimiter`` (default tab), no quoting."""

    type: Literal["tsv", "delimited"]
    delimiter: str = "\t"

    @property
    def separator(self) -> str:
        return self.delimiter

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if not value:
            raise spec_problem("must not be empty")
        if "\n" in value or "\r" in value:
            raise spec_problem("cannot hold a line break (each line of a record is a row)")
        return value


class KafkaHeaderFormat(DruidModel):
    """``headerFormat``: header values decoded as strings in ``encoding`` (default UTF-8)."""

    type: Literal["string"]
    encoding: str = "UTF-8"

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise spec_problem(f"unknown charset '{value}'") from None
        return value


class KafkaInputFormat(DruidModel):
    """``kafka``: the row of ``valueFormat`` plus the record's key, headers, timestamp and topic.

    Druid's KafkaInputFormat (docs/ingestion/kafka-ingestion.md, "Kafka input format"):
    the key is parsed with ``keyFormat`` (its first value, as ``keyColumnName``), headers
    decoded by ``headerFormat`` become ``headerColumnPrefix + name``, the Kafka timestamp
    (ms) is ``timestampColumnName`` and the topic ``topicColumnName``.
    """

    type: Literal["kafka"]
    value_format: ValueInputFormat = Field(alias="valueFormat")
    key_format: ValueInputFormat | None = Field(default=None, alias="keyFormat")
    header_format: KafkaHeaderFormat | None = Field(default=None, alias="headerFormat")
    header_column_prefix: str = Field(default="kafka.header.", alias="headerColumnPrefix")
    key_column_name: str = Field(default="kafka.key", alias="keyColumnName")
    timestamp_column_name: str = Field(default="kafka.timestamp", alias="timestampColumnName")
    topic_column_name: str = Field(default="kafka.topic", alias="topicColumnName")

    @model_validator(mode="before")
    @classmethod
    def _old_prefix_name(cls, data: Any) -> Any:
        # Druid 0.22's KafkaInputFormat named headerColumnPrefix "headerLabelPrefix".
        if isinstance(data, dict) and "headerLabelPrefix" in data and "headerColumnPrefix" not in data:
            data = {("headerColumnPrefix" if k == "headerLabelPrefix" else k): v for k, v in data.items()}
        return data


def _supported_input_format(data: Any) -> Any:
    if isinstance(data, dict):
        kind = data.get("type")
        if kind is None:
            raise spec_problem("is required", "type")
        if isinstance(kind, str) and kind not in SUPPORTED_INPUT_FORMATS:
            raise spec_problem(unsupported_input_format(kind), "type")
    return data


def _value_format(data: Any) -> Any:
    if isinstance(data, dict) and data.get("type") == "kafka":
        raise spec_problem("the kafka input format cannot wrap another kafka input format", "type")
    return _supported_input_format(data)


# What an ioConfig.inputFormat may be; the engine's readers are middlemanager/ingest/formats/.
AnyInputFormat = Annotated[
    InputFormat
    | CsvInputFormat
    | DelimitedInputFormat
    | KafkaInputFormat
    | AvroStreamInputFormat
    | ProtobufInputFormat,
    Field(discriminator="type"),
    BeforeValidator(_supported_input_format),
]
# The formats a kafka inputFormat's valueFormat / keyFormat may be.
ValueInputFormat = Annotated[
    InputFormat | CsvInputFormat | DelimitedInputFormat | AvroStreamInputFormat | ProtobufInputFormat,
    Field(discriminator="type"),
    BeforeValidator(_value_format),
]
KafkaInputFormat.model_rebuild()


class IdleConfig(DruidModel):
    """Druid's idle-supervisor settings: no new data for ``inactiveAfterMillis`` -> the tasks publish
    and the supervisor goes IDLE until data arrives (``Supervisor.check_idle``)."""

    enabled: JsonBool = False
    inactive_after_millis: PositiveInt | None = Field(default=None, alias="inactiveAfterMillis")


def _autoscaler_enabled(config: Any) -> bool:
    enabled = without_nulls(config).get("enableTaskAutoScaler", False) if isinstance(config, dict) else False
    return java_string(enabled).strip().lower() != "false"


class KafkaIOConfig(DruidModel):
    _not_supported_yet = ("lateMessageRejectionStartDateTime",)
    _unhonoured = {
        "pollTimeout": 100,
        "lagAggregator": ALWAYS,
        "configOverrides": ALWAYS,
        # Druid's lag-based task autoscaler: accepted and reported (the task count stays taskCount);
        # a disabled one is what Druid does without one
        "autoScalerConfig": lambda value: not _autoscaler_enabled(value),
    }
    # Druid <= 0.15: tolerate offset gaps (transactional topics); read_committed reading here
    # never stops on a gap.
    _druid_only = {"skipOffsetGaps": False}

    type: Literal["kafka"] = "kafka"
    # exactly one of the two (Druid 28+: KafkaSupervisorIOConfig); topicPattern reads every topic
    # whose whole name matches, and keys offsets by "topic:partition" (supervisor/offsets.py)
    topic: TopicName | None = None
    topic_pattern: TopicPattern | None = Field(default=None, alias="topicPattern")
    input_format: AnyInputFormat = Field(alias="inputFormat")
    consumer_properties: dict[str, Any] = Field(alias="consumerProperties")
    task_count: PositiveInt = Field(default=1, alias="taskCount")
    replicas: PositiveInt = 1
    task_duration: PositiveDuration = Field(default=timedelta(hours=1), alias="taskDuration")
    start_delay: Duration = Field(default=timedelta(seconds=5), alias="startDelay")
    period: PositiveDuration = timedelta(seconds=30)
    use_earliest_offset: JsonBool = Field(default=False, alias="useEarliestOffset")
    completion_timeout: PositiveDuration = Field(default=timedelta(minutes=30), alias="completionTimeout")
    late_message_rejection_period: PositiveDuration | None = Field(
        default=None, alias="lateMessageRejectionPeriod"
    )
    early_message_rejection_period: PositiveDuration | None = Field(
        default=None, alias="earlyMessageRejectionPeriod"
    )
    poll_timeout: NonNegativeInt = Field(default=100, alias="pollTimeout")
    idle_config: IdleConfig | None = Field(default=None, alias="idleConfig")
    stop_task_count: PositiveInt | None = Field(default=None, alias="stopTaskCount")
    emit_time_lag_metrics: JsonBool | None = Field(default=None, alias="emitTimeLagMetrics")
    lag_aggregator: dict[str, Any] | None = Field(default=None, alias="lagAggregator")
    config_overrides: dict[str, Any] | None = Field(default=None, alias="configOverrides")
    auto_scaler_config: dict[str, Any] | None = Field(default=None, alias="autoScalerConfig")

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "kafka":
            raise spec_problem("must be 'kafka'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _druid_output(cls, data: Any) -> Any:
        """What Druid's GET shows beside what it reads: ``stream`` (the topic) and
        ``useEarliestSequenceNumber`` (useEarliestOffset) are getters of
        SeekableStreamSupervisorIOConfig; Druid ignores them on input. They are dropped when they
        agree, and a conflict is refused: Druid would read only topic/useEarliestOffset.
        A disabled ``autoScalerConfig`` is what Druid does without one (an enabled one is kept and
        reported in ``unhonouredFields``: no autoscaling here)."""
        if not isinstance(data, dict):
            return data
        data = without_nulls(data)
        source = "topicPattern" if "topicPattern" in data and "topic" not in data else "topic"
        for shown, read in (("stream", source), ("useEarliestSequenceNumber", "useEarliestOffset")):
            if shown in data and read in data:
                if java_string(data[shown]).lower() != java_string(data[read]).lower():
                    raise spec_problem(
                        f"{data[shown]!r} differs from {read} {data[read]!r} (Druid reads {read} only)", shown
                    )
                del data[shown]
        scaler = data.get("autoScalerConfig")
        if isinstance(scaler, dict) and not _autoscaler_enabled(scaler):
            del data["autoScalerConfig"]
        return data

    @model_validator(mode="after")
    def _one_source(self) -> KafkaIOConfig:
        # Druid's words (KafkaSupervisorIOConfig): "Either topic or topicPattern must be specified"
        if self.topic is None and self.topic_pattern is None:
            raise spec_problem("Either topic or topicPattern must be specified", "topic")
        if self.topic is not None and self.topic_pattern is not None:
            raise spec_problem(
                f"Only one of topic [{self.topic}] or topicPattern [{self.topic_pattern}] must be specified",
                "topicPattern",
            )
        return self

    @property
    def stream(self) -> str:
        """What Druid calls the stream: the topic, or the topicPattern in multi-topic mode (the
        metadata store keeps offsets under it)."""
        return self.topic_pattern if self.topic_pattern is not None else str(self.topic)

    @property
    def multi_topic(self) -> bool:
        return self.topic_pattern is not None

    @field_validator("consumer_properties")
    @classmethod
    def _bootstrap(cls, value: dict[str, Any]) -> dict[str, Any]:
        servers = value.get("bootstrap.servers")
        if servers is None:
            raise spec_problem("must contain 'bootstrap.servers'")
        if not isinstance(servers, str) or not servers.strip():
            raise spec_problem("must be a non-empty string", "bootstrap.servers")
        try:  # Java client properties: what librdkafka cannot take (supervisor/kafka/properties.py)
            kafka_properties.check_static(value)
        except kafka_properties.PropertyProblem as e:
            raise spec_problem(e.problem, *e.path) from None
        return value

    @property
    def bootstrap_servers(self) -> str:
        return str(self.consumer_properties["bootstrap.servers"])


# --------------------------------------------------------------------------- tuningConfig


def _never(value: timedelta) -> bool:
    """Druid's "never" for a period: P2147483647D (Integer.MAX_VALUE days, capped here)."""
    return value >= timedelta(days=999_999_999)


def _default_index_spec(value: Any) -> bool:
    """An indexSpec that asks for nothing but Druid's defaults (GET output carries one)."""
    defaults = {
        "bitmap": ({"type": "roaring"}, {"type": "roaring", "compressRunOnSerialization": True}),
        "dimensionCompression": ("lz4",),
        "metricCompression": ("lz4",),
        "longEncoding": ("longs",),
        "stringDictionaryEncoding": ({"type": "utf8"},),
        "jsonCompression": ("lz4",),
    }
    return isinstance(value, dict) and all(value[key] in defaults.get(key, ()) for key in value)


# Druid's CompressionStrategy names (case-insensitive), and the Parquet codec each maps to.
# lz4 is Druid's default, which Druid's GET output spells out: it means the default here too
# (zstd level 1, see middlemanager/ingest/segments.py), so that output re-posted means the same.
COMPRESSION_CODECS: dict[str, str | None] = {
    "lz4": None,
    "zstd": "zstd",
    "uncompressed": "none",
    "none": "none",
    "lzf": None,  # no Parquet codec: the default codec stays
}


def _compression(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        if value not in COMPRESSION_CODECS:
            raise spec_problem(f"unknown compression '{value}' ({', '.join(COMPRESSION_CODECS)})")
    return value


ColumnKind = Literal["dimension", "metric", "json", "complex"]


class IndexSpec(DruidModel):
    """Druid's ``indexSpec`` (docs/ingestion/ingestion-spec.md#indexspec), mapped to Parquet:
    ``dimensionCompression``, ``metricCompression``, ``jsonCompression`` and
    ``complexMetricCompression`` choose the codec of those columns (zstd, uncompressed; lz4,
    Druid's default, leaves the default);
    ``stringDictionaryEncoding`` ``frontCoded`` writes string dimensions with Parquet's
    DELTA_BYTE_ARRAY (prefix) encoding instead of a dictionary. ``lzf`` (no Parquet codec),
    ``longEncoding`` ``auto``, and ``bitmap`` (there is no bitmap index in a Parquet segment)
    are reported as unhonoured."""

    bitmap: dict[str, Any] | None = None
    dimension_compression: str | None = Field(default=None, alias="dimensionCompression")
    metric_compression: str | None = Field(default=None, alias="metricCompression")
    json_compression: str | None = Field(default=None, alias="jsonCompression")
    complex_metric_compression: str | None = Field(default=None, alias="complexMetricCompression")
    long_encoding: str | None = Field(default=None, alias="longEncoding")
    string_dictionary_encoding: dict[str, Any] | None = Field(default=None, alias="stringDictionaryEncoding")

    _unhonoured = {
        "bitmap": lambda value: value.get("type", "roaring") == "roaring",
        "longEncoding": "longs",
        "dimensionCompression": lambda value: value != "lzf",
        "metricCompression": lambda value: value != "lzf",
        "jsonCompression": lambda value: value != "lzf",
        "complexMetricCompression": lambda value: value != "lzf",
    }
    # Druid's metrics on nested columns' fields and the like: no Parquet equivalent.
    _druid_only = {"autoColumnFormatSpec": ALWAYS}

    _check_compression = field_validator(
        "dimension_compression",
        "metric_compression",
        "json_compression",
        "complex_metric_compression",
        mode="before",
    )(_compression)

    @field_validator("long_encoding", mode="before")
    @classmethod
    def _long_encoding(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value not in ("auto", "longs"):
                raise spec_problem(f"unknown long encoding '{value}' (auto, longs)")
        return value

    @field_validator("string_dictionary_encoding")
    @classmethod
    def _dictionary(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "utf8") not in ("utf8", "frontCoded"):
            raise spec_problem(
                f"unknown string dictionary encoding {value.get('type')!r} (utf8, frontCoded)", "type"
            )
        return value

    def codec(self, kind: ColumnKind) -> str | None:
        """The Parquet codec asked for a kind of column (``None``: the default)."""
        value = {
            "dimension": self.dimension_compression,
            "metric": self.metric_compression,
            "json": self.json_compression,
            "complex": self.complex_metric_compression,
        }[kind]
        return None if value is None else COMPRESSION_CODECS[value]

    @property
    def front_coded(self) -> bool:
        return (self.string_dictionary_encoding or {}).get("type") == "frontCoded"


class DynamicPartitionsSpec(DruidModel):
    """Druid's ``partitionsSpec`` of a streaming task: only ``dynamic`` applies to streams."""

    type: Literal["dynamic"]
    max_rows_per_segment: PositiveInt | None = Field(default=None, alias="maxRowsPerSegment")
    max_total_rows: PositiveInt | None = Field(default=None, alias="maxTotalRows")

    @field_validator("type", mode="before")
    @classmethod
    def _dynamic(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "dynamic":
            raise spec_problem(
                f"partitionsSpec type '{value}' is not supported (streaming ingestion uses 'dynamic')"
            )
        return value


class KafkaTuningConfig(DruidModel):
    _unhonoured = {
        "skipBytesInMemoryOverheadCheck": False,
        # 0 (wait forever) before Druid 0.21.1, 15 minutes since.
        "handoffConditionTimeout": lambda value: value in (0, 900_000),
        "workerThreads": ALWAYS,
        "chatRetries": 8,
        "httpTimeout": timedelta(seconds=10),
        "shutdownTimeout": timedelta(seconds=80),
        "offsetFetchPeriod": timedelta(seconds=30),
        "skipSequenceNumberAvailabilityCheck": False,
        "numPersistThreads": 1,
        "maxPendingPersists": 0,
        "indexSpecForIntermediatePersists": _default_index_spec,
        "segmentWriteOutMediumFactory": ALWAYS,
        "appendableIndexSpec": lambda value: (
            value.get("type", "onheap") == "onheap" and not value.get("preserveExistingMetrics", False)
        ),
    }
    # Druid's tuning knobs with no model here (KafkaSupervisorTuningConfig and its bases).
    _druid_only = {
        "chatThreads": ALWAYS,
        "maxColumnsToMerge": -1,
        "repartitionTransitionDuration": lambda value: _is_duration(value, timedelta(minutes=2)),
        "basePersistDirectory": ALWAYS,
        # Druid <= 0.11; true is what later Druid always does.
        "buildV9Directly": True,
        "forceExtendableShardSpecs": ALWAYS,
        "forceGuaranteedRollup": False,
    }

    type: Literal["kafka"] = "kafka"
    max_rows_in_memory: PositiveInt = Field(default=150_000, alias="maxRowsInMemory")
    # 0: default (DEFAULT_MAX_BYTES_IN_MEMORY); -1: no byte limit.
    max_bytes_in_memory: JsonInt = Field(default=0, alias="maxBytesInMemory")
    skip_bytes_in_memory_overhead_check: JsonBool = Field(
        default=False, alias="skipBytesInMemoryOverheadCheck"
    )
    max_rows_per_segment: PositiveInt = Field(default=5_000_000, alias="maxRowsPerSegment")
    # Rows a task may hold (all its segments, after rollup) before it asks to hand off.
    max_total_rows: PositiveInt | None = Field(default=None, alias="maxTotalRows")
    # How long a task reads before it asks to hand off (Druid's default: never).
    intermediate_handoff_period: PositiveDuration | None = Field(
        default=None, alias="intermediateHandoffPeriod"
    )
    intermediate_persist_period: PositiveDuration = Field(
        default=timedelta(minutes=10), alias="intermediatePersistPeriod"
    )
    max_parse_exceptions: NonNegativeInt = Field(
        default=MAX_PARSE_EXCEPTIONS_UNLIMITED, alias="maxParseExceptions"
    )
    max_saved_parse_exceptions: NonNegativeInt = Field(default=0, alias="maxSavedParseExceptions")
    log_parse_exceptions: JsonBool = Field(default=False, alias="logParseExceptions")
    reset_offset_automatically: JsonBool = Field(default=False, alias="resetOffsetAutomatically")
    # Our extension: where records that cannot be ingested are sent (None: nowhere).
    dead_letter_topic: TopicName | None = Field(default=None, alias="deadLetterTopic")
    # Legacy: true is applied to maxParseExceptions/maxSavedParseExceptions on input.
    report_parse_exceptions: JsonBool = Field(default=False, alias="reportParseExceptions")
    # Kept, not acted on (see _unhonoured).
    handoff_condition_timeout: NonNegativeInt | None = Field(default=None, alias="handoffConditionTimeout")
    worker_threads: PositiveInt | None = Field(default=None, alias="workerThreads")
    chat_retries: NonNegativeInt | None = Field(default=None, alias="chatRetries")
    http_timeout: Duration | None = Field(default=None, alias="httpTimeout")
    shutdown_timeout: Duration | None = Field(default=None, alias="shutdownTimeout")
    offset_fetch_period: Duration | None = Field(default=None, alias="offsetFetchPeriod")
    skip_sequence_number_availability_check: JsonBool = Field(
        default=False, alias="skipSequenceNumberAvailabilityCheck"
    )
    num_persist_threads: PositiveInt | None = Field(default=None, alias="numPersistThreads")
    max_pending_persists: NonNegativeInt | None = Field(default=None, alias="maxPendingPersists")
    index_spec: IndexSpec | None = Field(default=None, alias="indexSpec")
    index_spec_for_intermediate_persists: dict[str, Any] | None = Field(
        default=None, alias="indexSpecForIntermediatePersists"
    )
    segment_write_out_medium_factory: dict[str, Any] | None = Field(
        default=None, alias="segmentWriteOutMediumFactory"
    )
    appendable_index_spec: dict[str, Any] | None = Field(default=None, alias="appendableIndexSpec")
    # Folded into maxRowsPerSegment/maxTotalRows on input; kept only to validate its own keys.
    partitions_spec: DynamicPartitionsSpec | None = Field(default=None, alias="partitionsSpec", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = without_nulls(data)
        kind = data.get("type")
        if isinstance(kind, str) and kind != "kafka":
            raise spec_problem("must be 'kafka'", "type")
        if "partitionsSpec" in data:
            _merge_partitions_spec(data)
        report = data.get("reportParseExceptions")
        if java_string(report).strip().lower() == "true":
            # Druid: reporting parse exceptions means failing on the first one.
            data["maxParseExceptions"] = 0
            saved = data.get("maxSavedParseExceptions")
            too_many = isinstance(saved, int) and not isinstance(saved, bool) and saved > 1
            if saved is None or too_many:
                data["maxSavedParseExceptions"] = 1
        return data

    @model_validator(mode="after")
    def _partitions_folded(self) -> KafkaTuningConfig:
        # Its limits are in maxRowsPerSegment/maxTotalRows now: a spec and its to_json() re-parsed
        # are equal. (Setting a field of a frozen model, once, while it is being built.)
        if self.partitions_spec is not None:
            object.__setattr__(self, "partitions_spec", None)
        return self

    @field_validator("intermediate_handoff_period")
    @classmethod
    def _handoff_never(cls, value: timedelta | None) -> timedelta | None:
        # Druid's default and GET output: P2147483647D, never (the same as not set)
        return None if value is not None and _never(value) else value

    @field_validator("max_bytes_in_memory")
    @classmethod
    def _bytes(cls, value: int) -> int:
        if value < -1:
            raise spec_problem("must be -1 (no byte limit), 0 (default) or a positive number of bytes")
        return value

    def handoff_period_s(self) -> float | None:
        """``intermediateHandoffPeriod`` in seconds; ``None`` when not set or Druid's "never"."""
        period = self.intermediate_handoff_period
        return None if period is None else period.total_seconds()

    def effective_max_bytes_in_memory(self) -> int:
        """The in-memory byte budget: 64 MiB for 0 (default), practically unlimited for -1."""
        if self.max_bytes_in_memory == 0:
            return DEFAULT_MAX_BYTES_IN_MEMORY
        if self.max_bytes_in_memory < 0:
            return UNLIMITED_BYTES
        return self.max_bytes_in_memory

    def effective_max_total_rows(self) -> int:
        """``max_total_rows``, or Druid's default of 20,000,000 when not set."""
        return DEFAULT_MAX_TOTAL_ROWS if self.max_total_rows is None else self.max_total_rows


def _merge_partitions_spec(data: dict[str, Any]) -> None:
    """Copy Druid's ``partitionsSpec`` limits into maxRowsPerSegment/maxTotalRows.

    The object itself stays for its model to check (its type, its unknown keys).
    """
    spec = data["partitionsSpec"]
    if not isinstance(spec, dict):
        return
    for key in ("maxRowsPerSegment", "maxTotalRows"):
        value = spec.get(key)
        if value is None:
            continue
        if key in data and java_string(data[key]) != java_string(value):
            raise spec_problem(f"conflicts with tuningConfig.{key} ({data[key]})", "partitionsSpec", key)
        data[key] = value


def _is_duration(value: Any, expected: timedelta) -> bool:
    try:
        return parse_duration(value) == expected
    except ValueError:
        return False


# --------------------------------------------------------------------------- the supervisor spec


class SupervisorSpec(DruidModel):
    type: Literal["kafka"] = "kafka"
    data_schema: DataSchema = Field(alias="dataSchema")
    io_config: KafkaIOConfig = Field(alias="ioConfig")
    tuning_config: KafkaTuningConfig = Field(default_factory=KafkaTuningConfig, alias="tuningConfig")
    suspended: JsonBool = False
    context: dict[str, Any] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        """The supervisor id: the datasource name."""
        return self.data_schema.data_source

    @property
    def data_source(self) -> str:
        return self.data_schema.data_source

    @property
    def topic(self) -> str:
        """The stream: the topic, or the topicPattern (``KafkaIOConfig.stream``)."""
        return self.io_config.stream

    def to_json(self) -> dict[str, Any]:
        """Normalised wrapped Druid JSON with defaults filled in; ``parse_supervisor_spec`` accepts it."""
        flat = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"context"})
        return {
            "type": self.type,
            "spec": {
                "dataSchema": flat["dataSchema"],
                "ioConfig": flat["ioConfig"],
                "tuningConfig": flat["tuningConfig"],
            },
            "suspended": self.suspended,
            "context": self.model_dump(mode="json", include={"context"})["context"],
        }

    def with_suspended(self, suspended: bool) -> SupervisorSpec:
        return self.model_copy(update={"suspended": suspended})


_INGESTION_KEYS = ("dataSchema", "ioConfig", "tuningConfig")
_TOP_LEVEL_KEYS = frozenset({"type", "id", "spec", "suspended", "context", *_INGESTION_KEYS})
# What the Overlord adds to a stored spec (its history entry); read back without a note.
_NOTE_KEYS = frozenset({"ignoredFields", "unhonouredFields", "translated"})


@dataclass(frozen=True)
class ParsedSpec:
    """A validated spec and what the author should hear about it (see ``SpecNotes``)."""

    spec: SupervisorSpec
    notes: SpecNotes


def parse_supervisor_spec(payload: Any) -> SupervisorSpec:
    """Validate a supervisor spec as posted to Druid's ``/druid/indexer/v1/supervisor``.

    Raises ``InvalidSpec(field, problem)`` for the first problem found.
    """
    return read_supervisor_spec(payload).spec


def read_supervisor_spec(payload: Any) -> ParsedSpec:
    """``parse_supervisor_spec`` with the notes: ignored, unhonoured and translated fields."""
    if not isinstance(payload, Mapping):
        raise InvalidSpec("", "spec must be a JSON object")
    kind = payload.get("type")
    if kind is None:
        raise InvalidSpec("type", 'is required (use "kafka")')
    if kind != "kafka":
        raise InvalidSpec("type", f"supervisor type {kind!r} is not supported (only 'kafka')")
    ignored: list[str] = []
    for key, value in payload.items():
        if key not in _TOP_LEVEL_KEYS and key not in _NOTE_KEYS and value is not None:
            _unknown_outside_models(str(key), format_path([str(key)]), _TOP_LEVEL_KEYS, ignored)

    wrapped = payload.get("spec") is not None
    if wrapped:
        ingestion = payload["spec"]
        if not isinstance(ingestion, Mapping):
            raise InvalidSpec("spec", "must be a JSON object")
        for key, value in ingestion.items():
            if key not in _INGESTION_KEYS and value is not None:
                _unknown_outside_models(
                    str(key), format_path(["spec", str(key)]), frozenset(_INGESTION_KEYS), ignored
                )
        # Druid echoes the ingestion spec at the top level too (GET output); the "spec" copy wins,
        # as in Druid's KafkaSupervisorSpec.
    else:
        ingestion = payload

    flat: dict[str, Any] = {"type": kind}
    for key in _INGESTION_KEYS:
        if key in ingestion:
            flat[key] = ingestion[key]
    for key in ("suspended", "context"):
        if key in payload:
            flat[key] = payload[key]

    prefix = "spec." if wrapped else ""
    translation = translate_parser(flat, prefix)
    try:
        spec, unknown, druid_only = validate_collecting_unknown(
            SupervisorSpec, translation.doc, _INGESTION_KEYS if wrapped else (), translation.original_path
        )
    except InvalidSpec as exc:
        raise InvalidSpec(translation.original_path(exc.field), exc.problem) from None

    supervisor_id = payload.get("id")
    if supervisor_id is not None and supervisor_id != spec.id:
        raise InvalidSpec(
            "id",
            "must equal the dataSource (supervisors with their own id are not supported yet)",
        )
    ignored += [format_path(path) for path in translation.ignored]
    ignored += [translation.original_path(format_path(path)) for path in unknown]
    unhonoured = [translation.original_path(format_path(path)) for path in druid_only]
    for path in unhonoured_fields(spec, []):
        shown = ["spec", *path] if wrapped and path and path[0] in _INGESTION_KEYS else path
        unhonoured.append(translation.original_path(format_path(shown)))
    notes = SpecNotes(
        ignored_fields=tuple(sorted(set(ignored))),
        unhonoured_fields=tuple(sorted(set(unhonoured))),
        translated=tuple(translation.notes),
    )
    return ParsedSpec(spec, notes)


def _unknown_outside_models(key: str, shown: str, known: frozenset[str], ignored: list[str]) -> None:
    """An unknown key at the top of the spec or beside dataSchema: a mistake (400) or ignored."""
    check_unknown_key(None, key, None, shown, SupervisorSpec, known=known)
    ignored.append(shown)

"""The wire contract: every body that crosses a process boundary, as pydantic models.

Both sides of each call use these: the Overlord validates what workers and tasks send with them,
the MiddleManager, the peon and the supervisor build their requests and read the answers with
them, and the Overlord's OpenAPI document is generated from them (``overlord/openapi.py``).

Rules that keep a rolling upgrade working (a newer Overlord with an older MiddleManager, or the
reverse):

* a missing or mistyped field is an error that names it (``running[0].taskId: Field required``);
* an unknown field is ignored (``extra="ignore"``): a newer sender may add fields;
* a worker says which protocol version it speaks when it registers and in every heartbeat; the
  Overlord refuses one outside ``[MIN_PROTOCOL_VERSION, PROTOCOL_VERSION]`` with a clear message.

JSON names are Druid's camelCase (generated from the snake_case attribute names); offsets maps
have partition numbers as JSON object keys (``{"0": 42}``). No file path crosses a boundary:
deep storage and segments are named by URI (``file:///...``, later ``s3://...``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, StrictInt
from pydantic.alias_generators import to_camel

from supervisor.filters import (
    AndFilter,
    BoundFilter,
    DimFilter,
    InFilter,
    LikeFilter,
    OrFilter,
    SelectorFilter,
)
from supervisor.offsets import PARTITION_KEY_PATTERN, PartitionKey
from supervisor.ports import TaskRunStatus, TaskState
from supervisor.spec import DataSchema, KafkaIOConfig, KafkaTuningConfig
from supervisor.task_spec import KafkaIndexTaskSpec

# The version of this contract. Bump it for a change an older peer would misread (a field whose
# meaning changes, a required field added); adding an optional field needs no bump.
PROTOCOL_VERSION = 1
# The oldest worker protocol this Overlord still serves.
MIN_PROTOCOL_VERSION = 1


class WireModel(BaseModel):
    """Base of every wire body: frozen, camelCase on the wire, unknown fields ignored."""

    model_config = ConfigDict(
        frozen=True,
        populate_by_name=True,
        alias_generator=to_camel,
        serialize_by_alias=True,
        extra="ignore",
    )

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready form (camelCase keys)."""
        return self.model_dump(mode="json", by_alias=True)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Port = Annotated[StrictInt, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(ge=0), AfterValidator(_finite)]
# partition -> offset (a stored offset is always the next one to read); a partition is its number,
# or "topic:partition" for a topicPattern supervisor (supervisor/offsets.py, Druid's KafkaTopicPartition)
_KEYS = Field(json_schema_extra={"propertyNames": {"pattern": PARTITION_KEY_PATTERN}})
Offsets = Annotated[dict[PartitionKey, Annotated[int, Field(ge=0)]], _KEYS]
# partition -> a count (records or milliseconds of lag, a timestamp)
PerPartition = Annotated[dict[PartitionKey, int], _KEYS]


# ------------------------------------------------------------------ errors


class ErrorBody(WireModel):
    """Every error answer of every process, as Druid's: ``{"error": "..."}``."""

    error: str


# ------------------------------------------------------------------ MiddleManager <-> Overlord


class WorkerIdentity(WireModel):
    host: str = Field(min_length=1)
    port: Port
    capacity: NonNegativeInt = 1
    # the worker's software version (free text, shown in /workers)
    version: str = ""
    # the wire contract the worker speaks; 0 = a worker from before the contract had a version
    protocol_version: int = 0


class WorkerRegistration(WorkerIdentity):
    """``POST /druid/indexer/v1/workers/register``."""


class RegistrationAnswer(WireModel):
    ok: bool = True
    protocol_version: int = PROTOCOL_VERSION


class RunningTaskReport(WireModel):
    task_id: str
    # the task's control port, once it listens
    port: Port | None = None


def _complete(state: TaskState) -> TaskState:
    if not state.is_complete:
        raise ValueError("a completed task's status must be SUCCESS or FAILED")
    return state


class CompletedTaskReport(WireModel):
    task_id: str
    status: Annotated[TaskState, AfterValidator(_complete)]
    error: str | None = None
    report: dict[str, Any] | None = None


class Heartbeat(WorkerIdentity):
    """``POST /druid/indexer/v1/workers/heartbeat``: what a worker runs and what ended.

    ``wait_s``: how long the Overlord may hold the answer while it has nothing new (a long poll).
    """

    wait_s: Seconds = Field(default=0.0, alias="waitS")
    running: tuple[RunningTaskReport, ...] = ()
    completed: tuple[CompletedTaskReport, ...] = ()


class TaskAssignment(WireModel):
    """One task a worker must start; the task spec names deep storage by URI."""

    task: KafkaIndexTaskSpec


class HeartbeatAnswer(WireModel):
    assign: tuple[TaskAssignment, ...] = ()
    # ids of tasks the worker must kill
    shutdown: tuple[str, ...] = ()
    # ids of completed tasks whose end the Overlord recorded (the worker forgets them)
    ack: tuple[str, ...] = ()


class WorkerInfo(WireModel):
    host: str
    ip: str
    capacity: int
    version: str


class WorkerEntry(WireModel):
    """One entry of ``GET /druid/indexer/v1/workers``, as Druid's."""

    worker: WorkerInfo
    curr_capacity_used: int
    availability_groups: tuple[str, ...] = ()
    running_tasks: tuple[str, ...] = ()
    last_completed_task_time: str | None = None
    blacklisted_until: str | None = None


class WorkerTask(WireModel):
    """One entry of a MiddleManager's ``GET /druid/worker/v1/tasks``."""

    task_id: str
    pid: int
    port: int | None


# ------------------------------------------------------------------ task -> Overlord (publish)


class SegmentDescriptor(WireModel):
    """One segment a task built and uploaded, as it asks the Overlord to publish it.

    ``location``: a URI another machine can resolve (``file:///...`` on a shared disk).
    """

    interval_start_ms: int
    interval_end_ms: int
    # the segment's place within the task's whole output (the allocation key)
    shard: NonNegativeInt
    num_rows: NonNegativeInt
    size_bytes: NonNegativeInt
    location: str = Field(min_length=1)
    dimensions: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()


class SegmentTransactionalInsert(WireModel):
    """Druid's task action: the segments and the offsets move in one transaction."""

    type: Literal["segmentTransactionalInsert"] = "segmentTransactionalInsert"
    data_source: str
    stream: str
    sequence_name: str
    start_offsets: Offsets
    end_offsets: Offsets
    segments: tuple[SegmentDescriptor, ...] = ()


class TaskActionRequest(WireModel):
    """``POST /druid/indexer/v1/action``."""

    task: str
    action: SegmentTransactionalInsert


class PublishOutcome(WireModel):
    """``ok``: committed (now or by an identical earlier publish); ``retryable``: nothing written, try
    again later; ``failed``: nothing written and retrying cannot help."""

    kind: Literal["ok", "retryable", "failed"]
    reason: str = ""
    segment_ids: tuple[str, ...] = ()


class TaskActionAnswer(WireModel):
    result: PublishOutcome


# ------------------------------------------------------------------ Overlord -> task (control paths)


class RowStats(WireModel):
    processed: int = 0
    processed_bytes: int = 0
    processed_with_error: int = 0
    thrown_away: int = 0
    unparseable: int = 0


class ProgressReport(WireModel):
    """``GET .../chat/{taskId}/progress``: everything the supervisor polls each run, in one call."""

    status: TaskRunStatus
    start_time: float | None = None
    current_offsets: Offsets = Field(default_factory=dict)
    end_offsets: Offsets | None = None
    # Kafka timestamp (ms) of the last record read per partition
    last_record_timestamps: PerPartition = Field(default_factory=dict)
    row_stats: RowStats = Field(default_factory=RowStats)
    # Why the task asks its supervisor to end its group now (maxTotalRows reached,
    # intermediateHandoffPeriod elapsed); None: it does not. An older supervisor ignores it.
    handoff_requested: str | None = None


# the header a task's in-flight rows answer carries its InflightRowsTag in (the body is Arrow IPC)
INFLIGHT_TAG_HEADER = "X-Inflight-Rows"
ARROW_STREAM_TYPE = "application/vnd.apache.arrow.stream"
# longest a Broker may ask a task to wait for its consumer to reach the offsets asked for
MAX_INFLIGHT_WAIT_MS = 30_000


# The filters a Broker may push down to a task (what ``broker.pushdown`` makes of a SQL WHERE).
PUSHABLE_FILTERS = (SelectorFilter, InFilter, LikeFilter, BoundFilter, AndFilter, OrFilter)


def _pushable(node: DimFilter | None) -> DimFilter | None:
    """Only plain ``selector``/``in``/``like``/``bound`` leaves under ``and``/``or``: a task
    applies those exactly on its columns' types (never a ``not``: relaxing a leaf under it
    would narrow the rows)."""
    if node is None:
        return None
    if type(node) not in PUSHABLE_FILTERS:
        raise ValueError(f"a filter of type '{node.type}' is not pushed down to tasks")
    if isinstance(node, AndFilter | OrFilter):
        for field in node.fields:
            _pushable(field)
    elif isinstance(node, SelectorFilter | InFilter | LikeFilter | BoundFilter) and node.extraction_fn:
        raise ValueError("a filter with an extractionFn is not pushed down to tasks")
    return node


class InflightRowsRequest(WireModel):
    """``POST .../chat/{taskId}/rows`` (our extension, issue 15.2): the rows read, not yet published.

    ``minOffsets``: answer only once the task has read at least to these offsets (the Broker asks
    for the offsets it already served from another replica, so counts never go back), waiting at
    most ``waitMs``; a task that does not get there in time answers 409.

    ``columns``: only these columns of the rows (the ones the query reads; names matched
    case-insensitively, unknown ones ignored; ``[]``: no column, just the rows' count); absent:
    every column. With rollup the rows are still rolled up before the columns are taken, so the
    count of rows is that of the rolled-up set whatever the columns asked.

    ``filter``: a Druid filter (``selector``, ``in``, ``like``, numeric or lexicographic ``bound``
    under ``and``/``or``) the Broker's query implies: the task leaves out rows it rejects, after
    rollup. A leaf the task cannot decide exactly on its column's type (a ``like`` on a long, a
    lexicographic ``bound``) keeps every row, so the answer is never narrower than the filter
    (the Broker still evaluates the whole query on it). The tag says whether it was applied.

    ``spans``: the tag also gives, per segment interval the rows fall in, their first and last
    row time (before the filter) and the interval (a native query fills empty buckets over them).
    """

    min_offsets: Offsets = Field(default_factory=dict)
    wait_ms: int = Field(default=2000, ge=0, le=MAX_INFLIGHT_WAIT_MS)
    columns: list[str] | None = None
    filter: Annotated[DimFilter | None, AfterValidator(_pushable)] = None
    spans: bool = False


class InflightRowsTag(WireModel):
    """What a task's in-flight rows are (the ``X-Inflight-Rows`` header of the Arrow answer):
    the sequence (task group) they belong to and the offsets below which they are every row read."""

    task_id: str
    data_source: str
    sequence_name: str
    # the rows are those of offsets [startOffsets, endOffsets)
    start_offsets: Offsets = Field(default_factory=dict)
    end_offsets: Offsets
    num_rows: int = Field(ge=0)
    # whether the request's filter was applied (an older task ignores it: false)
    filtered: bool = False
    # the task's dimensions and metrics (the columns of its segments)
    dimensions: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    # when asked: per segment interval, [first row time, last row time, interval start, end] (ms)
    spans: list[tuple[int, int, int, int]] = Field(default_factory=list)


class TaskStartTime(WireModel):
    epoch_seconds: float | None = None


class RowStatsTotals(WireModel):
    build_segments: RowStats = Field(default_factory=RowStats)


class TaskRowStats(WireModel):
    """``GET .../chat/{taskId}/rowStats``, as Druid's."""

    moving_averages: dict[str, Any] = Field(default_factory=dict)
    totals: RowStatsTotals = Field(default_factory=RowStatsTotals)


class ParseException(WireModel):
    timestamp: str | int
    partition: int | None = None
    offset: int | None = None
    error_type: str
    message: str
    details: tuple[str, ...] = ()
    input: str | None = None


class UnparseableEvents(WireModel):
    """``GET .../chat/{taskId}/unparseableEvents``."""

    build_segments: tuple[ParseException, ...] = ()


class IngestionStatsPayload(WireModel):
    ingestion_state: str
    unparseable_events: UnparseableEvents = Field(default_factory=UnparseableEvents)
    row_stats: RowStatsTotals = Field(default_factory=RowStatsTotals)
    error_msg: str | None = None
    segment_availability_confirmed: bool = False


class IngestionStatsAndErrors(WireModel):
    type: Literal["ingestionStatsAndErrors"] = "ingestionStatsAndErrors"
    task_id: str
    payload: IngestionStatsPayload


class TaskReport(WireModel):
    """A task's report (``liveReports``, ``/task/{id}/reports``), as Druid's."""

    ingestion_stats_and_errors: IngestionStatsAndErrors


class Empty(WireModel):
    """An answer with nothing to say (``{}``)."""


# ------------------------------------------------------------------ Druid API bodies


class IngestionSpecBody(BaseModel):
    """The ``spec`` member of a supervisor spec (Druid's ingestion spec), for the API document."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow")

    data_schema: DataSchema = Field(alias="dataSchema")
    io_config: KafkaIOConfig = Field(alias="ioConfig")
    tuning_config: KafkaTuningConfig | None = Field(default=None, alias="tuningConfig")


class SupervisorSpecBody(BaseModel):
    """A Kafka supervisor spec as posted to Druid: wrapped (``spec``) or in the legacy unwrapped form
    (``dataSchema``/``ioConfig``/``tuningConfig`` at the top). The Overlord validates it with the spec
    models (``supervisor.spec.parse_supervisor_spec``), which give Druid paths in their errors; this
    model describes the same shape for the API document."""

    model_config = ConfigDict(
        frozen=True,
        populate_by_name=True,
        extra="allow",
        json_schema_extra={"anyOf": [{"required": ["spec"]}, {"required": ["dataSchema", "ioConfig"]}]},
    )

    type: Literal["kafka"]
    id: str | None = Field(default=None, description="When given, it must equal dataSchema.dataSource.")
    spec: IngestionSpecBody | None = None
    data_schema: DataSchema | None = Field(default=None, alias="dataSchema")
    io_config: KafkaIOConfig | None = Field(default=None, alias="ioConfig")
    tuning_config: KafkaTuningConfig | None = Field(default=None, alias="tuningConfig")
    suspended: bool = False
    context: dict[str, Any] | None = None


class SupervisorIdAnswer(WireModel):
    """``{"id": ...}``: the answer of terminate, reset and resetOffsets (Druid's SupervisorResource)."""

    id: str


class SupervisorCreated(WireModel):
    """The answer to ``POST /druid/indexer/v1/supervisor``: the id, and what of the spec was not
    taken as written (``supervisor.spec_fields.SpecNotes``; each list only when not empty)."""

    id: str
    ignored_fields: tuple[str, ...] = ()
    unhonoured_fields: tuple[str, ...] = ()
    translated: tuple[str, ...] = ()


class SupervisorStateEntry(WireModel):
    """An entry of ``GET /druid/indexer/v1/supervisor?state=true`` (and ``?full``, with the spec)."""

    id: str
    state: str
    detailed_state: str
    healthy: bool
    suspended: bool
    # only in ``?full`` answers (dump with ``exclude_none``)
    spec: dict[str, Any] | None = None


class SupervisorTaskEntry(WireModel):
    id: str
    starting_offsets: Offsets
    start_time: str | None = None
    remaining_seconds: int | None = None
    type: Literal["ACTIVE", "PUBLISHING"]
    current_offsets: Offsets
    lag: PerPartition | None = None


class SupervisorError(WireModel):
    timestamp: str
    exception_class: str
    message: str


class SupervisorStatusPayload(WireModel):
    data_source: str
    stream: str
    topic: str
    partitions: int
    replicas: int
    duration_seconds: int
    active_tasks: tuple[SupervisorTaskEntry, ...] = ()
    publishing_tasks: tuple[SupervisorTaskEntry, ...] = ()
    latest_offsets: Offsets | None = None
    minimum_lag: PerPartition = Field(default_factory=dict)
    aggregate_lag: int = 0
    minimum_lag_millis: PerPartition = Field(default_factory=dict)
    lag_millis: PerPartition = Field(default_factory=dict)
    aggregate_lag_millis: int = 0
    offsets_last_updated: str | None = None
    suspended: bool
    healthy: bool
    state: str
    detailed_state: str
    recent_errors: tuple[SupervisorError, ...] = ()


class SupervisorStatus(WireModel):
    """``GET /druid/indexer/v1/supervisor/{id}/status``, as Druid's."""

    id: str
    generation_time: str
    payload: SupervisorStatusPayload


class SupervisorHealth(WireModel):
    healthy: bool


class HistoryEntry(WireModel):
    """One entry of a supervisor's spec history, as Druid's (``version``: when it was stored)."""

    spec: dict[str, Any]
    version: str


class HandoffRequest(WireModel):
    """``POST /druid/indexer/v1/supervisor/{id}/taskGroups/handoff``."""

    task_group_ids: tuple[StrictInt, ...]


class ResetOffsetsPartitions(WireModel):
    type: Literal["end"]
    stream: str
    partition_offset_map: Annotated[Offsets, Field(min_length=1)]


class ResetOffsetsRequest(WireModel):
    """``POST /druid/indexer/v1/supervisor/{id}/resetOffsets``: Druid's DataSourceMetadata shape."""

    type: Literal["kafka"]
    partitions: ResetOffsetsPartitions


class SuccessStatus(WireModel):
    status: Literal["success"] = "success"


class TaskLocationBody(WireModel):
    host: str | None
    port: int = -1
    tls_port: int = -1


class TaskStatusObject(WireModel):
    """A task's status as Druid's ``TaskStatusPlus``."""

    id: str
    type: str
    group_id: str
    created_time: str
    queue_insertion_time: str
    status_code: str
    status: str
    runner_status_code: str
    duration: int = -1
    location: TaskLocationBody
    data_source: str
    error_msg: str | None = None


class TaskStatusAnswer(WireModel):
    """``GET /druid/indexer/v1/task/{id}/status``."""

    task: str
    status: TaskStatusObject | None


class TaskPayloadAnswer(WireModel):
    """``GET /druid/indexer/v1/task/{id}``; an unknown task is a 404 with ``payload: null`` (Druid's
    OverlordResource.getTaskPayload)."""

    task: str
    payload: dict[str, Any] | None


class TaskStatusBrief(WireModel):
    """A task's status as Druid's ``TaskStatus`` (not ``TaskStatusPlus``): the values of
    ``POST /druid/indexer/v1/taskStatus`` (OverlordResource.getMultipleTaskStatuses)."""

    id: str
    status: str
    duration: int = -1
    error_msg: str | None = None
    location: TaskLocationBody


class TaskIdAnswer(WireModel):
    task: str


class DataSourceAnswer(WireModel):
    data_source: str


class TaskIdList(RootModel[list[str]]):
    """``POST /druid/indexer/v1/taskStatus``: a JSON array of task ids."""

    model_config = ConfigDict(frozen=True)

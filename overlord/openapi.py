"""OpenAPI 3.1 description of the Overlord's REST API, built from the live router.

:data:`OPERATIONS` holds what a person wrote about each operation, keyed by
``(METHOD, path)`` with the path in aiohttp's canonical form (``/druid/indexer/v1/task/{id}``).
:func:`build_openapi` walks ``app.router.routes()`` and emits one operation per registered
route: described routes get their metadata, any other route gets a generic entry (marked
``x-undocumented``), so a newly added endpoint is never missing from the document. Metadata
for a route that is not registered is simply not emitted.

:func:`add_openapi_route` serves the document at ``GET /druid/indexer/v1/openapi.json`` and
``GET /openapi.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web

from overlord import auth
from overlord.api import INDEXER, SUPERVISOR

__all__ = [
    "OPENAPI_PATHS",
    "OPERATIONS",
    "SCHEMAS",
    "Operation",
    "add_openapi_route",
    "build_openapi",
    "route_operations",
]

OPENAPI_VERSION = "3.1.0"
OPENAPI_PATHS = (f"{INDEXER}/openapi.json", "/openapi.json")
COORDINATOR = "/druid/coordinator/v1"

JSON = "application/json"
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


# ------------------------------------------------------------------ schemas: the Kafka supervisor spec

_PERIOD: dict[str, Any] = {
    "type": ["string", "integer"],
    "pattern": r"^[Pp]",
    "minimum": 0,
    "description": "ISO-8601 period (`PT10M`, `PT1H`, `P1D`) or a number of milliseconds.",
    "examples": ["PT1H"],
}

_SUPERVISOR_SPEC_SCHEMAS: dict[str, Any] = {
    "Period": _PERIOD,
    "KafkaSupervisorSpec": {
        "type": "object",
        "description": (
            "A Kafka supervisor spec as posted to Druid. The wrapped form puts the ingestion spec under "
            "`spec`; the legacy unwrapped form has `dataSchema`/`ioConfig`/`tuningConfig` at the top level. "
            "A JSON `null` for any property means its default."
        ),
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "const": "kafka"},
            "id": {
                "type": "string",
                "description": "Supervisor id; when given it must equal `dataSchema.dataSource`.",
            },
            "spec": _ref("KafkaIngestionSpec"),
            "dataSchema": _ref("DataSchema"),
            "ioConfig": _ref("KafkaIOConfig"),
            "tuningConfig": _ref("KafkaTuningConfig"),
            "suspended": {"type": "boolean", "default": False},
            "context": {"type": ["object", "null"], "additionalProperties": True},
        },
        "anyOf": [{"required": ["spec"]}, {"required": ["dataSchema", "ioConfig"]}],
        "additionalProperties": True,
    },
    "KafkaIngestionSpec": {
        "type": "object",
        "required": ["dataSchema", "ioConfig"],
        "properties": {
            "dataSchema": _ref("DataSchema"),
            "ioConfig": _ref("KafkaIOConfig"),
            "tuningConfig": _ref("KafkaTuningConfig"),
        },
        "additionalProperties": False,
    },
    "DataSchema": {
        "type": "object",
        "required": ["dataSource"],
        "properties": {
            "dataSource": {
                "type": "string",
                "minLength": 1,
                "description": "Datasource name; also the supervisor id.",
            },
            "timestampSpec": _ref("TimestampSpec"),
            "dimensionsSpec": _ref("DimensionsSpec"),
            "metricsSpec": {"type": "array", "items": _ref("Aggregator")},
            "granularitySpec": _ref("GranularitySpec"),
            "transformSpec": _ref("TransformSpec"),
            "parser": {
                "type": "object",
                "deprecated": True,
                "description": "Legacy parser; use `ioConfig.inputFormat` (not supported yet).",
            },
        },
        "additionalProperties": True,
    },
    "TimestampSpec": {
        "type": "object",
        "properties": {
            "column": {"type": "string", "default": "timestamp"},
            "format": {
                "type": "string",
                "default": "auto",
                "description": "auto, iso, posix, millis, micro, nano, ruby or a Joda-Time pattern.",
                "examples": ["auto", "iso", "millis", "posix"],
            },
            "missingValue": {"type": ["string", "integer", "null"]},
        },
        "additionalProperties": True,
    },
    "DimensionSchema": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "type": {
                "type": "string",
                "default": "string",
                "description": "string, long, float, double, json (spatial and auto are not supported yet).",
                "examples": ["string", "long", "float", "double", "json"],
            },
            "createBitmapIndex": {"type": "boolean"},
            "multiValueHandling": {
                "type": "string",
                "description": "SORTED_ARRAY (default), SORTED_SET or ARRAY.",
                "examples": ["SORTED_ARRAY", "SORTED_SET", "ARRAY"],
            },
        },
        "additionalProperties": True,
    },
    "DimensionsSpec": {
        "type": "object",
        "properties": {
            "dimensions": {
                "type": "array",
                "description": "A plain string is a string dimension of that name.",
                "items": {"oneOf": [{"type": "string", "minLength": 1}, _ref("DimensionSchema")]},
            },
            "dimensionExclusions": {"type": "array", "items": {"type": "string"}},
            "spatialDimensions": {"type": "array", "items": {"type": "object"}},
            "includeAllDimensions": {"type": "boolean"},
            "useSchemaDiscovery": {"type": "boolean"},
        },
        "additionalProperties": True,
    },
    "Aggregator": {
        "type": "object",
        "required": ["type", "name"],
        "properties": {
            "type": {
                "type": "string",
                "description": "Aggregator type; count and long/double/float Sum/Min/Max are implemented.",
                "examples": ["count", "longSum", "doubleSum", "floatSum", "longMin", "doubleMax"],
            },
            "name": {"type": "string", "minLength": 1},
            "fieldName": {"type": "string", "minLength": 1},
        },
        "additionalProperties": True,
    },
    "Granularity": {
        "description": "A granularity name (`DAY`, `hour`, `NONE`, `all`...) or a period/duration object.",
        "oneOf": [
            {"type": "string", "examples": ["DAY", "HOUR", "MINUTE", "NONE", "ALL"]},
            {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string", "examples": ["period", "duration", "all", "none"]},
                    "period": {"type": "string"},
                    "duration": {"type": "integer"},
                    "timeZone": {"type": "string"},
                    "origin": {"type": ["string", "integer"]},
                },
                "additionalProperties": True,
            },
        ],
    },
    "GranularitySpec": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "default": "uniform"},
            "segmentGranularity": {**_ref("Granularity"), "default": "DAY"},
            "queryGranularity": {**_ref("Granularity"), "default": "NONE"},
            "rollup": {"type": "boolean", "default": True},
            "intervals": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": True,
    },
    "DimFilter": {
        "type": "object",
        "description": "A Druid filter (selector, equals, in, bound, null, and, or, not, true, false...).",
        "required": ["type"],
        "properties": {"type": {"type": "string"}},
        "additionalProperties": True,
    },
    "TransformSpec": {
        "type": "object",
        "properties": {
            "filter": {"oneOf": [_ref("DimFilter"), {"type": "null"}]},
            "transforms": {
                "type": "array",
                "description": "Expression transforms (not supported yet).",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "const": "expression"},
                        "name": {"type": "string"},
                        "expression": {"type": "string"},
                    },
                },
            },
        },
        "additionalProperties": True,
    },
    "InputFormat": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {
                "type": "string",
                "description": "Only `json` is implemented.",
                "examples": ["json", "csv", "tsv", "avro_stream", "protobuf", "kafka"],
            },
            "flattenSpec": {
                "type": "object",
                "properties": {
                    "useFieldDiscovery": {"type": "boolean", "default": True},
                    "fields": {"type": "array", "items": {"type": "object"}},
                },
                "additionalProperties": True,
            },
            "featureSpec": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "keepNullColumns": {"type": "boolean"},
        },
        "additionalProperties": True,
    },
    "KafkaIOConfig": {
        "type": "object",
        "required": ["consumerProperties"],
        "anyOf": [{"required": ["topic"]}, {"required": ["topicPattern"]}],
        "properties": {
            "type": {"type": "string", "const": "kafka", "default": "kafka"},
            "topic": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,249}$"},
            "topicPattern": {"type": "string", "description": "Regex of topics (not supported yet)."},
            "inputFormat": _ref("InputFormat"),
            "consumerProperties": {
                "type": "object",
                "required": ["bootstrap.servers"],
                "properties": {"bootstrap.servers": {"type": "string", "minLength": 1}},
                "additionalProperties": True,
                "description": "Kafka consumer properties; `bootstrap.servers` is required.",
            },
            "pollTimeout": {"type": "integer", "minimum": 0, "default": 100},
            "replicas": {"type": "integer", "minimum": 1, "default": 1},
            "taskCount": {"type": "integer", "minimum": 1, "default": 1},
            "taskDuration": {**_ref("Period"), "default": "PT1H"},
            "startDelay": {**_ref("Period"), "default": "PT5S"},
            "period": {**_ref("Period"), "default": "PT30S"},
            "useEarliestOffset": {"type": "boolean", "default": False},
            "completionTimeout": {**_ref("Period"), "default": "PT30M"},
            "lateMessageRejectionPeriod": _ref("Period"),
            "earlyMessageRejectionPeriod": _ref("Period"),
            "lateMessageRejectionStartDateTime": {"type": "string", "format": "date-time"},
            "autoScalerConfig": {"type": "object", "additionalProperties": True},
            "idleConfig": {
                "type": "object",
                "properties": {
                    "enabled": {"type": "boolean"},
                    "inactiveAfterMillis": {"type": "integer", "minimum": 1},
                },
                "additionalProperties": True,
            },
            "stopTaskCount": {"type": "integer", "minimum": 1},
            "emitTimeLagMetrics": {"type": "boolean"},
            "lagAggregator": {"type": "object"},
            "configOverrides": {"type": "object"},
        },
        "additionalProperties": True,
    },
    "KafkaTuningConfig": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "const": "kafka", "default": "kafka"},
            "maxRowsInMemory": {"type": "integer", "minimum": 1, "default": 150000},
            "maxBytesInMemory": {
                "type": "integer",
                "minimum": -1,
                "default": 0,
                "description": "0: default budget; -1: no byte limit.",
            },
            "skipBytesInMemoryOverheadCheck": {"type": "boolean", "default": False},
            "maxRowsPerSegment": {"type": "integer", "minimum": 1, "default": 5000000},
            "maxTotalRows": {"type": "integer", "minimum": 1, "default": 20000000},
            "partitionsSpec": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "const": "dynamic"},
                    "maxRowsPerSegment": {"type": "integer", "minimum": 1},
                    "maxTotalRows": {"type": "integer", "minimum": 1},
                },
            },
            "intermediatePersistPeriod": {**_ref("Period"), "default": "PT10M"},
            "maxPendingPersists": {"type": "integer", "minimum": 0},
            "indexSpec": {"type": "object"},
            "indexSpecForIntermediatePersists": {"type": "object"},
            "appendableIndexSpec": {"type": "object"},
            "segmentWriteOutMediumFactory": {"type": "object"},
            "reportParseExceptions": {"type": "boolean", "default": False, "deprecated": True},
            "handoffConditionTimeout": {"type": "integer", "minimum": 0},
            "resetOffsetAutomatically": {"type": "boolean", "default": False},
            "workerThreads": {"type": "integer", "minimum": 1},
            "chatRetries": {"type": "integer", "minimum": 0},
            "httpTimeout": _ref("Period"),
            "shutdownTimeout": _ref("Period"),
            "offsetFetchPeriod": _ref("Period"),
            "intermediateHandoffPeriod": _ref("Period"),
            "logParseExceptions": {"type": "boolean", "default": False},
            "maxParseExceptions": {"type": "integer", "minimum": 0, "default": 2147483647},
            "maxSavedParseExceptions": {"type": "integer", "minimum": 0, "default": 0},
            "skipSequenceNumberAvailabilityCheck": {"type": "boolean", "default": False},
            "numPersistThreads": {"type": "integer", "minimum": 1},
            "deadLetterTopic": {
                "type": "string",
                "description": "Extension (not in Druid): topic for records that cannot be ingested.",
            },
        },
        "additionalProperties": True,
    },
}

# ------------------------------------------------------------------ schemas: other bodies and answers

_OFFSET_MAP: dict[str, Any] = {
    "type": "object",
    "description": "Partition number (as a string) to offset.",
    "propertyNames": {"pattern": r"^[0-9]+$"},
    "additionalProperties": {"type": "integer", "minimum": 0},
    "examples": [{"0": 100, "1": 250}],
}

_OTHER_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "PartitionOffsetMap": _OFFSET_MAP,
    "SupervisorId": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
    "Success": {"type": "object", "properties": {"status": {"type": "string", "const": "success"}}},
    "SupervisorState": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "state": {
                "type": "string",
                "examples": ["RUNNING", "SUSPENDED", "PENDING", "UNHEALTHY_SUPERVISOR", "UNHEALTHY_TASKS"],
            },
            "detailedState": {"type": "string"},
            "healthy": {"type": "boolean"},
            "suspended": {"type": "boolean"},
            "spec": {**_ref("KafkaSupervisorSpec"), "description": "Only with `?full`."},
        },
    },
    "SupervisorTaskReport": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "startingOffsets": _ref("PartitionOffsetMap"),
            "startTime": {"type": ["string", "null"], "format": "date-time"},
            "remainingSeconds": {"type": ["integer", "null"]},
            "type": {"type": "string", "enum": ["ACTIVE", "PUBLISHING"]},
            "currentOffsets": _ref("PartitionOffsetMap"),
            "lag": {"oneOf": [_ref("PartitionOffsetMap"), {"type": "null"}]},
        },
    },
    "SupervisorStatus": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "generationTime": {"type": "string", "format": "date-time"},
            "payload": {
                "type": "object",
                "properties": {
                    "dataSource": {"type": "string"},
                    "stream": {"type": "string"},
                    "topic": {"type": "string"},
                    "partitions": {"type": "integer"},
                    "replicas": {"type": "integer"},
                    "durationSeconds": {"type": "integer"},
                    "activeTasks": {"type": "array", "items": _ref("SupervisorTaskReport")},
                    "publishingTasks": {"type": "array", "items": _ref("SupervisorTaskReport")},
                    "latestOffsets": {"oneOf": [_ref("PartitionOffsetMap"), {"type": "null"}]},
                    "minimumLag": _ref("PartitionOffsetMap"),
                    "aggregateLag": {"type": "integer"},
                    "offsetsLastUpdated": {"type": ["string", "null"]},
                    "suspended": {"type": "boolean"},
                    "healthy": {"type": "boolean"},
                    "state": {"type": "string"},
                    "detailedState": {"type": "string"},
                    "recentErrors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "timestamp": {"type": "string"},
                                "exceptionClass": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
                "additionalProperties": True,
            },
        },
    },
    "SupervisorHealth": {"type": "object", "properties": {"healthy": {"type": "boolean"}}},
    "SupervisorHistoryEntry": {
        "type": "object",
        "properties": {
            "spec": _ref("KafkaSupervisorSpec"),
            "version": {"type": "string", "description": "When this version of the spec was stored."},
        },
    },
    "ResetOffsetsRequest": {
        "type": "object",
        "required": ["type", "partitions"],
        "properties": {
            "type": {"type": "string", "const": "kafka"},
            "partitions": {
                "type": "object",
                "required": ["type", "stream", "partitionOffsetMap"],
                "properties": {
                    "type": {"type": "string", "const": "end"},
                    "stream": {"type": "string", "description": "The supervisor's topic."},
                    "partitionOffsetMap": {**_ref("PartitionOffsetMap"), "minProperties": 1},
                },
            },
        },
        "examples": [
            {
                "type": "kafka",
                "partitions": {"type": "end", "stream": "wikipedia", "partitionOffsetMap": {"0": 100}},
            }
        ],
    },
    "HandoffRequest": {
        "type": "object",
        "required": ["taskGroupIds"],
        "properties": {"taskGroupIds": {"type": "array", "items": {"type": "integer"}}},
        "examples": [{"taskGroupIds": [0, 1]}],
    },
    "TaskStatus": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "groupId": {"type": "string"},
            "createdTime": {"type": "string"},
            "queueInsertionTime": {"type": "string"},
            "statusCode": {"type": "string", "enum": ["RUNNING", "SUCCESS", "FAILED"]},
            "status": {"type": "string", "enum": ["RUNNING", "SUCCESS", "FAILED"]},
            "runnerStatusCode": {"type": ["string", "null"]},
            "duration": {"type": "integer"},
            "location": {
                "type": "object",
                "properties": {
                    "host": {"type": ["string", "null"]},
                    "port": {"type": "integer"},
                    "tlsPort": {"type": "integer"},
                },
            },
            "dataSource": {"type": "string"},
            "errorMsg": {"type": ["string", "null"]},
        },
    },
    "TaskStatusResponse": {
        "type": "object",
        "properties": {
            "task": {"type": "string"},
            "status": {"oneOf": [_ref("TaskStatus"), {"type": "null"}]},
        },
    },
    "TaskPayload": {
        "type": "object",
        "properties": {"task": {"type": "string"}, "payload": {"type": "object"}},
    },
    "TaskId": {"type": "object", "properties": {"task": {"type": "string"}}},
    "DataSourceName": {"type": "object", "properties": {"dataSource": {"type": "string"}}},
    "Worker": {
        "type": "object",
        "properties": {
            "worker": {
                "type": "object",
                "properties": {
                    "host": {"type": "string"},
                    "ip": {"type": "string"},
                    "capacity": {"type": "integer"},
                    "version": {"type": "string"},
                },
            },
            "currCapacityUsed": {"type": "integer"},
            "availabilityGroups": {"type": "array", "items": {"type": "string"}},
            "runningTasks": {"type": "array", "items": {"type": "string"}},
            "lastCompletedTaskTime": {"type": ["string", "null"]},
            "blacklistedUntil": {"type": ["string", "null"]},
        },
    },
    "WorkerRegistration": {
        "type": "object",
        "required": ["host", "port"],
        "properties": {
            "host": {"type": "string"},
            "port": {"type": "integer"},
            "capacity": {"type": "integer", "minimum": 0, "default": 1},
            "version": {"type": "string"},
        },
    },
    "WorkerHeartbeat": {
        "type": "object",
        "required": ["host", "port"],
        "properties": {
            "host": {"type": "string"},
            "port": {"type": "integer"},
            "capacity": {"type": "integer", "minimum": 0},
            "version": {"type": "string"},
            "waitS": {
                "type": "number",
                "minimum": 0,
                "description": "how long the Overlord may hold the answer when it has nothing new for "
                "this worker (long poll; it answers at once when it assigns or kills a task here)",
            },
            "running": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["taskId"],
                    "properties": {"taskId": {"type": "string"}, "port": {"type": ["integer", "null"]}},
                },
            },
            "completed": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["taskId", "status"],
                    "properties": {
                        "taskId": {"type": "string"},
                        "status": {"type": "string", "enum": ["SUCCESS", "FAILED"]},
                        "error": {"type": ["string", "null"]},
                        "report": {"type": ["object", "null"]},
                    },
                },
            },
        },
    },
    "HeartbeatResponse": {
        "type": "object",
        "properties": {
            "assign": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"task": {"type": "object"}, "deepStorage": {"type": "string"}},
                },
            },
            "shutdown": {"type": "array", "items": {"type": "string"}},
            "ack": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TaskIdList": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Task ids; at most the first 1000 are looked up.",
        "examples": [["index_kafka_wikipedia_0_abc", "index_kafka_wikipedia_1_def"]],
    },
    "SegmentToPublish": {
        "type": "object",
        "required": [
            "interval_start_ms",
            "interval_end_ms",
            "shard",
            "num_rows",
            "size_bytes",
            "path",
            "dimensions",
            "metrics",
        ],
        "properties": {
            "interval_start_ms": {"type": "integer"},
            "interval_end_ms": {"type": "integer"},
            "shard": {"type": "integer", "minimum": 0},
            "num_rows": {"type": "integer", "minimum": 0},
            "size_bytes": {"type": "integer", "minimum": 0},
            "path": {"type": "string"},
            "dimensions": {"type": "array", "items": {"type": "string"}},
            "metrics": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TaskAction": {
        "type": "object",
        "required": ["task", "action"],
        "properties": {
            "task": {"type": "string", "description": "Id of the task performing the action."},
            "action": {
                "type": "object",
                "required": [
                    "type",
                    "dataSource",
                    "stream",
                    "sequenceName",
                    "startOffsets",
                    "endOffsets",
                ],
                "properties": {
                    "type": {"type": "string", "const": "segmentTransactionalInsert"},
                    "dataSource": {"type": "string"},
                    "stream": {"type": "string"},
                    "sequenceName": {"type": "string"},
                    "startOffsets": _ref("PartitionOffsetMap"),
                    "endOffsets": _ref("PartitionOffsetMap"),
                    "segments": {"type": "array", "items": _ref("SegmentToPublish")},
                },
            },
        },
    },
    "TaskActionResponse": {
        "type": "object",
        "properties": {
            "result": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": ["ok", "retryable", "failed"]},
                    "reason": {"type": ["string", "null"]},
                    "segmentIds": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
    },
    "DataSegment": {"type": "object", "additionalProperties": True},
}

SCHEMAS: dict[str, Any] = {**_SUPERVISOR_SPEC_SCHEMAS, **_OTHER_SCHEMAS}

# ------------------------------------------------------------------ operation metadata


@dataclass(frozen=True)
class Operation:
    """What is known about one operation beyond its method and path.

    ``responses`` maps status codes to a schema (a dict, put under ``application/json`` unless
    ``media_type`` says otherwise) and a description. ``errors`` are extra error statuses
    answered with the Error schema. Every operation also gets 500, and 401/403 unless
    ``overlord.auth`` leaves its path open. ``internal`` operations are for MiddleManagers and tasks.
    """

    summary: str
    description: str = ""
    tags: tuple[str, ...] = ()
    parameters: tuple[dict[str, Any], ...] = ()
    body: str | None = None
    body_description: str = ""
    responses: Mapping[int, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)
    media_type: str = JSON
    errors: tuple[int, ...] = ()
    internal: bool = False


def _query(name: str, description: str, schema: dict[str, Any], *, flag: bool = False) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "description": description}
    param["schema"] = schema
    if flag:
        param["allowEmptyValue"] = True
    return param


def _flag(name: str, description: str) -> dict[str, Any]:
    return _query(
        name,
        f"{description} Enabled when present (`?{name}`), unless its value is `false` or `0`.",
        {"type": "boolean"},
        flag=True,
    )


def _array(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": schema}


_COUNT = _query("count", "Keep at most this many entries per supervisor.", {"type": "integer", "minimum": 0})
_SUP = ("supervisor",)
_TASKS = ("tasks",)
_WORKERS = ("workers", "internal")
_SEGMENTS = ("segments",)
_STATUS = ("status",)

OPERATIONS: dict[tuple[str, str], Operation] = {
    # -------------------------------------------------------------- supervisors
    ("POST", SUPERVISOR): Operation(
        "Create or update a supervisor",
        "Validates the Kafka supervisor spec and creates the supervisor, or replaces the spec of the "
        "supervisor with the same id (the datasource name).",
        _SUP,
        body="KafkaSupervisorSpec",
        responses={200: ("The supervisor id.", _ref("SupervisorId"))},
        errors=(400, 413),
    ),
    ("GET", SUPERVISOR): Operation(
        "List supervisors",
        "Ids of all supervisors; with `full`, one entry per supervisor with its state and spec; with "
        "`state`, one entry per supervisor with its state.",
        _SUP,
        parameters=(
            _flag("full", "Return state entries including each supervisor's spec."),
            _flag("state", "Return state entries (id, state, detailedState, healthy, suspended)."),
        ),
        responses={
            200: (
                "Supervisor ids, or state entries with `full`/`state`.",
                {"oneOf": [_array({"type": "string"}), _array(_ref("SupervisorState"))]},
            )
        },
    ),
    ("GET", f"{SUPERVISOR}/history"): Operation(
        "All supervisors' spec history",
        "Every stored version of every supervisor's spec, newest first: Druid answers an object keyed "
        "by supervisor id; this Overlord currently answers a flat list of entries.",
        _SUP,
        parameters=(_COUNT,),
        responses={
            200: (
                "History entries.",
                {
                    "oneOf": [
                        {"type": "object", "additionalProperties": _array(_ref("SupervisorHistoryEntry"))},
                        _array(_ref("SupervisorHistoryEntry")),
                    ]
                },
            )
        },
        errors=(400,),
    ),
    ("POST", f"{SUPERVISOR}/suspendAll"): Operation(
        "Suspend all supervisors", tags=_SUP, responses={200: ("Done.", _ref("Success"))}
    ),
    ("POST", f"{SUPERVISOR}/resumeAll"): Operation(
        "Resume all supervisors", tags=_SUP, responses={200: ("Done.", _ref("Success"))}
    ),
    ("POST", f"{SUPERVISOR}/terminateAll"): Operation(
        "Terminate all supervisors",
        "Stops every supervisor and its tasks; their specs stay in the history.",
        _SUP,
        responses={200: ("Done.", _ref("Success"))},
    ),
    ("GET", SUPERVISOR + "/{id}"): Operation(
        "Get a supervisor's spec",
        "The current spec, normalised with defaults filled in.",
        _SUP,
        responses={200: ("The spec.", _ref("KafkaSupervisorSpec"))},
        errors=(404,),
    ),
    ("GET", SUPERVISOR + "/{id}/status"): Operation(
        "Get a supervisor's status report",
        "State, partitions, offsets, lag and the active and publishing tasks.",
        _SUP,
        responses={200: ("The status report.", _ref("SupervisorStatus"))},
        errors=(404,),
    ),
    ("GET", SUPERVISOR + "/{id}/health"): Operation(
        "Get a supervisor's health",
        "200 when the supervisor is healthy, 503 when it is not.",
        _SUP,
        responses={
            200: ("Healthy.", _ref("SupervisorHealth")),
            503: ("Unhealthy.", _ref("SupervisorHealth")),
        },
        errors=(404,),
    ),
    ("GET", SUPERVISOR + "/{id}/history"): Operation(
        "A supervisor's spec history",
        "Every stored version of the supervisor's spec, newest first.",
        _SUP,
        parameters=(_COUNT,),
        responses={200: ("History entries.", _array(_ref("SupervisorHistoryEntry")))},
        errors=(400, 404),
    ),
    ("GET", SUPERVISOR + "/{id}/stats"): Operation(
        "A supervisor's row statistics",
        "Moving averages and totals of processed, unparseable and thrown-away rows, keyed by task "
        "group id and then task id.",
        _SUP,
        responses={200: ("Statistics.", {"type": "object", "additionalProperties": {"type": "object"}})},
        errors=(404,),
    ),
    ("GET", SUPERVISOR + "/{id}/parseErrors"): Operation(
        "A supervisor's recent parse errors",
        "The parse exceptions most recently saved by the supervisor's tasks.",
        _SUP,
        responses={200: ("Parse errors.", _array({"type": "object", "additionalProperties": True}))},
        errors=(404,),
    ),
    ("POST", SUPERVISOR + "/{id}/suspend"): Operation(
        "Suspend a supervisor",
        "Stops its tasks (they publish what they read) and keeps the supervisor.",
        _SUP,
        responses={200: ("The updated spec.", _ref("KafkaSupervisorSpec"))},
        errors=(404,),
    ),
    ("POST", SUPERVISOR + "/{id}/resume"): Operation(
        "Resume a supervisor",
        tags=_SUP,
        responses={200: ("The updated spec.", _ref("KafkaSupervisorSpec"))},
        errors=(404,),
    ),
    ("POST", SUPERVISOR + "/{id}/terminate"): Operation(
        "Terminate a supervisor",
        "Stops the supervisor and its tasks; its spec stays in the history.",
        _SUP,
        responses={200: ("The terminated supervisor's id.", _ref("SupervisorId"))},
        errors=(404,),
    ),
    ("POST", SUPERVISOR + "/{id}/shutdown"): Operation(
        "Terminate a supervisor (deprecated alias of terminate)",
        tags=_SUP,
        responses={200: ("The terminated supervisor's id.", _ref("SupervisorId"))},
        errors=(404,),
    ),
    ("POST", SUPERVISOR + "/{id}/reset"): Operation(
        "Reset a supervisor",
        "Clears the stored offsets; tasks restart from the earliest or latest offsets depending on "
        "`useEarliestOffset`. May skip or duplicate data.",
        _SUP,
        responses={200: ("The supervisor id.", _ref("SupervisorId"))},
        errors=(404,),
    ),
    ("POST", SUPERVISOR + "/{id}/resetOffsets"): Operation(
        "Reset offsets of some partitions",
        "Overwrites the stored offsets of the given partitions; tasks restart from them. May skip or "
        "duplicate data.",
        _SUP,
        body="ResetOffsetsRequest",
        responses={200: ("The supervisor id.", _ref("SupervisorId"))},
        errors=(400, 404, 413),
    ),
    ("POST", SUPERVISOR + "/{id}/taskGroups/handoff"): Operation(
        "Hand off task groups early",
        "Asks the given task groups to stop reading and publish now instead of at `taskDuration`.",
        _SUP,
        body="HandoffRequest",
        responses={202: ("Accepted.", {"type": "object"})},
        errors=(400, 404, 413),
    ),
    # -------------------------------------------------------------- tasks
    ("GET", f"{INDEXER}/tasks"): Operation(
        "List tasks",
        "Task statuses, optionally filtered by state, datasource and type.",
        _TASKS,
        parameters=(
            _query(
                "state",
                "Only tasks in this state.",
                {"type": "string", "enum": ["running", "pending", "waiting", "complete"]},
            ),
            _query("datasource", "Only tasks of this datasource.", {"type": "string"}),
            _query("type", "Only tasks of this type (e.g. `index_kafka`).", {"type": "string"}),
            _query("max", "Return at most this many tasks.", {"type": "integer", "minimum": 0}),
        ),
        responses={200: ("Task statuses.", _array(_ref("TaskStatus")))},
        errors=(400,),
    ),
    ("GET", INDEXER + "/task/{id}"): Operation(
        "Get a task's payload",
        tags=_TASKS,
        responses={200: ("The task and its payload.", _ref("TaskPayload"))},
        errors=(404,),
    ),
    ("GET", INDEXER + "/task/{id}/status"): Operation(
        "Get a task's status",
        tags=_TASKS,
        responses={
            200: ("The task status.", _ref("TaskStatusResponse")),
            404: ("Unknown task: `status` is null.", _ref("TaskStatusResponse")),
        },
    ),
    ("GET", INDEXER + "/task/{id}/reports"): Operation(
        "Get a task's completion report",
        "The live report of a running task, or the final report of a finished one.",
        _TASKS,
        responses={200: ("The report.", {"type": "object", "additionalProperties": True})},
        errors=(404,),
    ),
    ("GET", INDEXER + "/task/{id}/log"): Operation(
        "Get a task's log",
        tags=_TASKS,
        parameters=(
            _query(
                "offset",
                "Skip this many characters from the start of the log.",
                {"type": "integer", "minimum": 0},
            ),
        ),
        responses={200: ("The log text.", {"type": "string"})},
        media_type="text/plain",
        errors=(400, 404),
    ),
    ("POST", INDEXER + "/task/{id}/shutdown"): Operation(
        "Shut down a task",
        tags=_TASKS,
        responses={200: ("The task id.", _ref("TaskId"))},
        errors=(404,),
    ),
    ("POST", INDEXER + "/datasources/{ds}/shutdownAllTasks"): Operation(
        "Shut down all tasks of a datasource",
        tags=_TASKS,
        responses={200: ("The datasource.", _ref("DataSourceName"))},
    ),
    # -------------------------------------------------------------- workers, task actions (internal)
    ("POST", f"{INDEXER}/workers/register"): Operation(
        "Register a worker",
        "Called by a MiddleManager when it starts.",
        _WORKERS,
        body="WorkerRegistration",
        responses={200: ("Registered.", {"type": "object", "properties": {"ok": {"type": "boolean"}}})},
        errors=(400, 413),
        internal=True,
    ),
    ("POST", f"{INDEXER}/workers/heartbeat"): Operation(
        "Worker heartbeat",
        "A MiddleManager reports its running and completed tasks; the answer lists the tasks to start "
        "and to shut down, and the completions that were recorded.",
        _WORKERS,
        body="WorkerHeartbeat",
        responses={200: ("What the worker must do.", _ref("HeartbeatResponse"))},
        errors=(400, 413),
        internal=True,
    ),
    ("GET", f"{INDEXER}/workers"): Operation(
        "List workers",
        tags=("workers",),
        responses={200: ("Live workers.", _array(_ref("Worker")))},
    ),
    ("POST", f"{INDEXER}/action"): Operation(
        "Perform a task action",
        "Only `segmentTransactionalInsert` is supported: publish segments and move the committed "
        "offsets from the task's start to its end offsets in one transaction.",
        ("tasks", "internal"),
        body="TaskAction",
        responses={200: ("The publish outcome.", _ref("TaskActionResponse"))},
        errors=(400, 413),
        internal=True,
    ),
    ("POST", f"{INDEXER}/taskStatus"): Operation(
        "Get the statuses of several tasks",
        "Statuses of the listed tasks, keyed by task id; unknown ids are left out.",
        _TASKS,
        body="TaskIdList",
        responses={
            200: ("Statuses by task id.", {"type": "object", "additionalProperties": _ref("TaskStatus")})
        },
        errors=(400, 413),
    ),
    # -------------------------------------------------------------- segments, health, metrics
    ("GET", f"{COORDINATOR}/metadata/datasources"): Operation(
        "List datasources",
        "Datasources with at least one used segment.",
        _SEGMENTS,
        responses={200: ("Datasource names.", _array({"type": "string"}))},
    ),
    ("GET", COORDINATOR + "/metadata/datasources/{ds}/segments"): Operation(
        "List a datasource's used segments",
        tags=_SEGMENTS,
        parameters=(_flag("full", "Return full segment objects instead of segment ids."),),
        responses={
            200: (
                "Segment ids, or segment objects with `full`.",
                {"oneOf": [_array({"type": "string"}), _array(_ref("DataSegment"))]},
            )
        },
    ),
    ("GET", "/status/health"): Operation(
        "Process health",
        "`true` while the Overlord is up.",
        _STATUS,
        responses={200: ("Up.", {"type": "boolean", "const": True})},
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics",
        tags=_STATUS,
        responses={200: ("Metrics in the Prometheus text format.", {"type": "string"})},
        media_type="text/plain; version=0.0.4",
    ),
    **{
        ("GET", path): Operation(
            "This OpenAPI document",
            tags=_STATUS,
            responses={200: ("The OpenAPI 3.1 document.", {"type": "object"})},
        )
        for path in OPENAPI_PATHS
    },
}

_TAGS = [
    {"name": "supervisor", "description": "Kafka supervisors (Druid's Supervisor API)."},
    {"name": "tasks", "description": "Indexing tasks (Druid's Tasks API)."},
    {"name": "workers", "description": "MiddleManagers."},
    {"name": "segments", "description": "Published segments (Coordinator metadata API)."},
    {"name": "status", "description": "Health, metrics and this document."},
    {"name": "internal", "description": "Used by MiddleManagers and tasks; not for users."},
    {"name": "other", "description": "Endpoints without a description yet."},
]

_ERROR_TEXT = {
    400: "Invalid input.",
    401: "Authentication required (when authentication is enabled).",
    403: "Not allowed (when authorization is enabled).",
    404: "Unknown id.",
    413: "Request body too large.",
    500: "Unexpected error.",
    503: "Unavailable.",
}

# ------------------------------------------------------------------ building the document


def _path_parameter(name: str, path: str) -> dict[str, Any]:
    if name == "id" and "/supervisor/" in path:
        description = "Supervisor id (the datasource name)."
    elif name == "id" and "/task/" in path:
        description = "Task id."
    elif name in ("ds", "dataSource", "datasource"):
        description = "Datasource name."
    else:
        description = f"Path parameter `{name}`."
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path)
    return "_".join([method.lower(), *words]) or method.lower()


def _error_response(status: int) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/Error{status}"}


def _responses(op: Operation, secured: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (description, schema) in sorted(op.responses.items()):
        response: dict[str, Any] = {"description": description}
        if schema is not None:
            response["content"] = {op.media_type if status < 400 else JSON: {"schema": schema}}
        out[str(status)] = response
    extra = set(op.errors) | {500}
    if secured:
        extra |= {401, 403}
    for status in sorted(extra):
        out.setdefault(str(status), _error_response(status))
    return dict(sorted(out.items()))


def _generic(method: str, path: str) -> Operation:
    return Operation(
        f"{method} {path}",
        "This endpoint has no description yet.",
        responses={200: ("Success.", None)},
        errors=(400, 404) if "{" in path else (400,),
    )


def _tags_for(path: str) -> tuple[str, ...]:
    if path.startswith(SUPERVISOR):
        return _SUP
    if path.startswith((f"{INDEXER}/task", f"{INDEXER}/datasources")):
        return _TASKS
    if path.startswith(f"{INDEXER}/worker"):
        return ("workers",)
    if path.startswith(COORDINATOR):
        return _SEGMENTS
    return ("other",)


def _render(method: str, path: str, op: Operation, documented: bool) -> dict[str, Any]:
    secured = path not in auth.OPEN_PATHS
    cluster_only = path.startswith(auth.INTERNAL_PREFIXES)
    internal = op.internal or cluster_only
    tags = list(op.tags or _tags_for(path))
    if internal and "internal" not in tags:
        tags.append("internal")
    description = op.description
    if cluster_only:
        description = f"{description}\n\nWith authentication on, only the cluster token is accepted.".strip()
    out: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": op.summary,
        "tags": tags,
    }
    if description:
        out["description"] = description
    names = [m.group(1) for m in _PARAM.finditer(path)]
    parameters = [_path_parameter(n, path) for n in names] + list(op.parameters)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "description": op.body_description or f"A `{op.body}` JSON document.",
            "content": {JSON: {"schema": _ref(op.body)}},
        }
    out["responses"] = _responses(op, secured)
    if not secured:
        out["security"] = [{}]
    elif cluster_only:
        out["security"] = [{}, {"bearerAuth": []}]
    if internal:
        out["x-internal"] = True
    if not documented:
        out["x-undocumented"] = True
    return out


def _resource_path(resource: web.AbstractResource) -> str:
    path = resource.canonical
    if isinstance(resource, web.StaticResource):
        return path.rstrip("/") + "/{filename}"
    return path or "/"


def route_operations(app: web.Application) -> Iterable[tuple[str, str]]:
    """``(method, path)`` of every operation the document has for ``app``'s routes.

    ``HEAD`` routes that aiohttp adds next to ``GET`` ones are left out; a route for any
    method (``*``) stands for GET, POST, PUT, PATCH and DELETE.
    """
    seen: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        path = _resource_path(resource)
        method = route.method.upper()
        if method == hdrs.METH_ANY:
            methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
        elif method == hdrs.METH_HEAD and hdrs.METH_GET in _methods_of(resource):
            continue
        else:
            methods = (method,)
        for m in methods:
            if m.lower() in _METHODS and (m, path) not in seen:
                seen.add((m, path))
                yield m, path


def _methods_of(resource: web.AbstractResource) -> set[str]:
    return {route.method.upper() for route in resource}


def build_openapi(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route registered on ``app``."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in route_operations(app):
        op = OPERATIONS.get((method, path))
        documented = op is not None
        rendered = _render(method, path, op if op is not None else _generic(method, path), documented)
        paths.setdefault(path, {})[method.lower()] = rendered
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Overlord API (Kafka indexing service)",
            "version": "v1",
            "summary": "Apache Druid's Overlord API for Kafka supervisors, tasks and workers.",
            "description": (
                'Errors are answered as `{"error": "..."}`. Authentication is optional: when users or '
                "tokens are configured, every endpoint but `/status/health` needs HTTP basic credentials "
                "or a bearer token (401 without, 403 when the role may not do it: `read` may only GET), "
                "and the internal worker and task-action endpoints take only the cluster token."
            ),
        },
        "tags": _TAGS,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                f"Error{status}": {
                    "description": text,
                    "content": {JSON: {"schema": _ref("Error")}},
                }
                for status, text in _ERROR_TEXT.items()
            },
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer"},
            },
        },
        # `{}` first: authentication is optional unless the deployment turns it on.
        "security": [{}, {"basicAuth": []}, {"bearerAuth": []}],
    }


async def _serve(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(request.app))


def add_openapi_route(app: web.Application) -> None:
    """Serve the document at ``/druid/indexer/v1/openapi.json`` and ``/openapi.json``."""
    for path in OPENAPI_PATHS:
        app.router.add_get(path, _serve)

"""Supervisor spec builders, and the JSON events the specs read."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def event(event_id: str, ts_ms: int, **extra: Any) -> bytes:
    """A JSON event with a millisecond ``ts`` and an ``id``, as ``id_spec`` reads them."""
    return json.dumps({"ts": ts_ms, "id": event_id, **extra}).encode()


#: ioConfig of ``kafka_spec`` besides the topic, the input format and the consumer properties.
SPEC_IO_DEFAULTS: dict[str, Any] = {
    "taskCount": 1,
    "replicas": 1,
    "taskDuration": "PT30S",
    "startDelay": "PT0.5S",
    "period": "PT1S",
    "useEarliestOffset": True,
    "completionTimeout": "PT2M",
}


def kafka_spec(
    datasource: Any,
    topic: str,
    bootstrap: str,
    *,
    dimensions: Sequence[Any] = ("id",),
    metrics: Sequence[dict[str, Any]] | None = None,
    rollup: bool = False,
    query_granularity: str = "none",
    timestamp: Mapping[str, Any] | None = None,
    tuning: Mapping[str, Any] | None = None,
    **io: Any,
) -> dict[str, Any]:
    """A supervisor spec over JSON events with a millisecond ``ts`` (or the ``timestamp`` spec given), in
    hourly segments.

    ``io`` sets ioConfig fields over ``SPEC_IO_DEFAULTS``; one set to None is left out.
    """
    io_config: dict[str, Any] = {
        "topic": topic,
        "inputFormat": {"type": "json"},
        "consumerProperties": {"bootstrap.servers": bootstrap},
    }
    io_config.update(SPEC_IO_DEFAULTS)
    io_config.update(io)
    data_schema: dict[str, Any] = {
        "dataSource": datasource,
        "timestampSpec": dict(timestamp or {"column": "ts", "format": "millis"}),
        "dimensionsSpec": {"dimensions": list(dimensions)},
    }
    if metrics is not None:
        data_schema["metricsSpec"] = list(metrics)
    data_schema["granularitySpec"] = {
        "segmentGranularity": "hour",
        "queryGranularity": query_granularity,
        "rollup": rollup,
    }
    return {
        "type": "kafka",
        "spec": {
            "dataSchema": data_schema,
            "ioConfig": {k: v for k, v in io_config.items() if v is not None},
            "tuningConfig": {"type": "kafka", **(tuning or {})},
        },
    }


def id_spec(datasource: str, topic: str, bootstrap: str, **io: Any) -> dict[str, Any]:
    """A rollup-off spec over events made by ``event``: one row per record, keyed by ``id``."""
    return kafka_spec(datasource, topic, bootstrap, **io)

"""The Overlord -> worker task contract: what a Kafka indexing task must do.

A task reads ``start_offsets`` (inclusive) up to ``end_offsets`` (exclusive) for
its partitions. ``end_offsets`` is ``None`` while the task's end is open: the
supervisor fixes it later through the task's ``/offsets/end`` control path.
A task created to re-run a publishing group that died carries both bounds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.offsets import PartitionKey

TASK_TYPE = "index_kafka"


class KafkaIndexTaskSpec(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: str
    type: Literal["index_kafka"] = "index_kafka"
    data_source: str = Field(alias="dataSource")
    supervisor_id: str = Field(alias="supervisorId")
    group_id: int = Field(alias="groupId")
    # Identical for every replica of a task group and for a replacement of one:
    # the Overlord keys segment allocation by it.
    sequence_name: str = Field(alias="sequenceName")
    # one of the two, as Druid's KafkaIndexTaskIOConfig: with topicPattern the offsets' keys are
    # StreamPartitions ("topic:partition" in JSON), else partition numbers
    topic: str | None = None
    topic_pattern: str | None = Field(default=None, alias="topicPattern")
    start_offsets: dict[PartitionKey, int] = Field(alias="startOffsets")
    end_offsets: dict[PartitionKey, int] | None = Field(default=None, alias="endOffsets")
    consumer_properties: dict[str, Any] = Field(default_factory=dict, alias="consumerProperties")
    # The whole supervisor spec, as normalised JSON (``SupervisorSpec.to_json()``).
    supervisor_spec: dict[str, Any] = Field(alias="supervisorSpec")
    # Records with a Kafka/row timestamp outside [min, max) are thrown away (ms since epoch).
    min_message_time: int | None = Field(default=None, alias="minimumMessageTime")
    max_message_time: int | None = Field(default=None, alias="maximumMessageTime")
    created_time: str = Field(alias="createdTime")
    # Where the task writes its segments: a deep-storage URI (``file:///...``), filled in by the
    # Overlord when the task is queued (None only in specs stored before it was).
    deep_storage: str | None = Field(default=None, alias="deepStorage")

    @property
    def stream(self) -> str:
        """The topic, or the topicPattern (the metadata store keeps the offsets under it)."""
        return self.topic_pattern if self.topic_pattern is not None else str(self.topic)

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", by_alias=True)
        if out.get("topicPattern") is None:
            out.pop("topicPattern", None)  # a single-topic task's JSON stays as it was
        return out

"""The metadata store: supervisors, committed offsets, segments and tasks (SQLite or PostgreSQL).

The Overlord is its only user; ``MetadataStore.publish_segments`` is the one writer of segments
and offsets and carries the exactly-once guarantee.
"""

from .engine import downgrade, make_engine, migrate
from .errors import MetadataStoreUnavailable, SchemaNotMigrated
from .store import (
    MetadataStore,
    PublishKind,
    PublishResult,
    SegmentToPublish,
    TaskRow,
)

__all__ = [
    "MetadataStore",
    "MetadataStoreUnavailable",
    "PublishKind",
    "PublishResult",
    "SchemaNotMigrated",
    "SegmentToPublish",
    "TaskRow",
    "downgrade",
    "make_engine",
    "migrate",
]

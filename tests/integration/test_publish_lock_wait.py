"""A publish never waits long for a locked offsets row (PostgreSQL only: a row lock held by another
connection, which SQLite does not have; the shared suite is ``test_metadata_store.py``).

Regression: with the row locked (a slow or stuck writer), every publish blocked one of the Overlord's
few I/O threads until the lock went away; a handful of them starved its heartbeat handling, and the
Overlord declared healthy MiddleManagers lost and failed all their tasks. Found by the fault suite
(``publish_outlives_completion_timeout``).
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from overlord.metadata import MetadataStore
from overlord.metadata.engine import migrate
from overlord.metadata.store import PUBLISH_LOCK_TIMEOUT_MS, PublishResult, SegmentToPublish

pytestmark = [pytest.mark.postgres, pytest.mark.postgres_only]


def _segment() -> SegmentToPublish:
    return SegmentToPublish(0, 3_600_000, 0, 10, 100, "/tmp/s.parquet", ["id"], ["count"])


def test_publish_on_a_locked_offsets_row_is_retryable_soon(fresh_postgres_url: str) -> None:
    migrate(fresh_postgres_url)
    store = MetadataStore(fresh_postgres_url)
    other = sa.create_engine(fresh_postgres_url)
    try:
        store.reset_partitions("ds", "topic", {0: 0})
        results: list[PublishResult] = []
        with other.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT 1 FROM datasource_metadata WHERE datasource = 'ds' FOR UPDATE"))
            publish = threading.Thread(
                target=lambda: results.append(
                    store.publish_segments("ds", "topic", "seq", {0: 0}, {0: 10}, [_segment()])
                )
            )
            publish.start()
            publish.join(PUBLISH_LOCK_TIMEOUT_MS / 1000 + 5)
            waited_too_long = publish.is_alive()
        publish.join()
        assert not waited_too_long, "the publish waited for the lock for as long as it was held"
        assert results[0].kind == "retryable", results
        assert "lock" in results[0].reason.lower()
        # the lock gone, the same publish goes through
        assert store.publish_segments("ds", "topic", "seq", {0: 0}, {0: 10}, [_segment()]).kind == "ok"
    finally:
        other.dispose()
        store.close()

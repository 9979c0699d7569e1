"""The metadata store's behaviour suite (``tests/unit/test_metadata_store.py``) on real PostgreSQL.

Every test of the SQLite suite is imported here and runs again with ``blank_url`` pointing at a new,
empty PostgreSQL database created for the test (on the server of the session's ``postgres_url``)
and dropped after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from overlord.metadata import MetadataStore
from tests.support import fresh_database
from tests.unit.test_metadata_store import *  # noqa: F403  (the shared behaviour suite)

pytestmark = pytest.mark.postgres


@pytest.fixture  # type: ignore[no-redef]
def blank_url(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (overrides the SQLite fixture of the shared suite)."""
    with fresh_database(postgres_url, "metadata_test") as url:
        yield url


def test_runs_on_postgresql(store: MetadataStore) -> None:
    assert store.dialect == "postgresql"

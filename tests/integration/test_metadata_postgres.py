"""The metadata store's behaviour suite (``tests/unit/test_metadata_store.py``) on real PostgreSQL.

Every test of the SQLite suite is imported here and runs again with ``blank_url`` pointing at a new,
empty PostgreSQL database created for the test (on the server of the session's ``postgres_url``)
and dropped after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from overlord.metadata import MetadataStore
from tests.unit.test_metadata_store import *  # noqa: F403  (the shared behaviour suite)

pytestmark = pytest.mark.postgres


@pytest.fixture  # type: ignore[no-redef]
def blank_url(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (overrides the SQLite fixture of the shared suite)."""
    name = f"metadata_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def test_runs_on_postgresql(store: MetadataStore) -> None:
    assert store.dialect == "postgresql"

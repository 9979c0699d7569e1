"""Shared fixtures: the real test bed (Kafka broker, PostgreSQL) and small helpers.

``kafka_bootstrap`` / ``postgres_url`` use ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` when set;
otherwise they start the services with ``scripts/local-kafka`` / ``scripts/local-postgres`` and stop
them at the end of the session if this session started them (see ``tests.support.ServiceLease``).
A service that cannot be had FAILS the tests that need it: they are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import make_url

from tests.support import (
    ScriptError,
    ServiceLease,
    admin_client,
    kafka_answers,
    kafka_lease,
    postgres_lease,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "testbed_scripts: starts/stops its own Kafka/PostgreSQL via scripts/ on separate ports"
    )


def _acquire(lease: ServiceLease, what: str) -> str:
    try:
        return lease.acquire()
    except ScriptError as exc:
        pytest.fail(f"could not start {what} with {lease.script.name}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker (KRaft, single node)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        if not kafka_answers(configured, timeout=15):
            pytest.fail(
                f"KAFKA_BOOTSTRAP_SERVERS={configured} does not answer metadata requests", pytrace=False
            )
        yield configured
        return
    lease = kafka_lease()
    bootstrap = _acquire(lease, "Kafka")
    try:
        yield bootstrap
    finally:
        lease.release()


def _check_postgres(url: str) -> None:
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a real PostgreSQL database (``postgresql+psycopg2://...``)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        if make_url(configured).get_backend_name() != "postgresql":
            pytest.fail(f"DATABASE_URL must point to PostgreSQL, got {configured!r}", pytrace=False)
        try:
            _check_postgres(configured)
        except sa.exc.SQLAlchemyError as exc:
            pytest.fail(f"DATABASE_URL={configured} is not reachable: {exc}", pytrace=False)
        yield configured
        return
    lease = postgres_lease()
    url = _acquire(lease, "PostgreSQL")
    try:
        yield url
    finally:
        lease.release()


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A URL of a new, empty PostgreSQL database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex}"
    admin_engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin_engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'metadata.db'}"


@pytest.fixture
def topic_name() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
def admin(kafka_bootstrap: str) -> AdminClient:
    return admin_client(kafka_bootstrap)

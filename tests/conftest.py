"""Shared fixtures: the real test bed (Kafka broker, PostgreSQL) and small helpers.

``kafka_bootstrap`` / ``postgres_url`` / ``s3_endpoint`` use ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``
/ ``S3_ENDPOINT_URL`` when set; otherwise they start the services with ``scripts/local-kafka`` /
``scripts/local-postgres`` / ``scripts/local-seaweedfs`` and stop
them at the end of the session if this session started them (see ``tests.harness.services.ServiceLease``).
A service that cannot be had FAILS the tests that need it: they are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import make_url

from tests.harness.database import fresh_database
from tests.harness.kafka import admin_client, kafka_answers
from tests.harness.services import ScriptError, ServiceLease, kafka_lease, postgres_lease, seaweedfs_lease

#: The marker each test directory gives its tests (``pytest -m unit``, ``-m integration``, ``-m e2e``).
TIERS = ("unit", "integration", "e2e")
_TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test ``unit``, ``integration`` or ``e2e`` by the directory it is in."""
    for item in items:
        parts = item.path.resolve().relative_to(_TESTS_DIR).parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])


def _service(
    variable: str, problem: Callable[[str], str | None], lease: ServiceLease, what: str
) -> Iterator[str]:
    """The address in the environment ``variable`` (failing if ``problem`` finds one), else that of the
    service the session starts (or shares) through ``lease``."""
    configured = os.environ.get(variable)
    if configured:
        found = problem(configured)
        if found:
            pytest.fail(found, pytrace=False)
        yield configured
        return
    try:
        address = lease.acquire()
    except ScriptError as exc:
        pytest.fail(f"could not start {what} with {lease.script.name}: {exc}", pytrace=False)
    try:
        yield address
    finally:
        lease.release()


def _kafka_problem(bootstrap: str) -> str | None:
    if not kafka_answers(bootstrap, timeout=15):
        return f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} does not answer metadata requests"
    return None


def _postgres_problem(url: str) -> str | None:
    if make_url(url).get_backend_name() != "postgresql":
        return f"DATABASE_URL must point to PostgreSQL, got {url!r}"
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        return f"DATABASE_URL={url} is not reachable: {exc}"
    finally:
        engine.dispose()
    return None


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker (KRaft, single node)."""
    yield from _service("KAFKA_BOOTSTRAP_SERVERS", _kafka_problem, kafka_lease(), "Kafka")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a real PostgreSQL database (``postgresql+psycopg2://...``)."""
    yield from _service("DATABASE_URL", _postgres_problem, postgres_lease(), "PostgreSQL")


def _s3_problem(endpoint: str) -> str | None:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(endpoint.rstrip("/") + "/", timeout=10).close()
    except urllib.error.HTTPError:
        return None  # an S3 error document: something S3-like answers
    except (OSError, ValueError) as exc:
        return f"S3_ENDPOINT_URL={endpoint} does not answer: {exc}"
    return None


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint (``http://host:port``) of a real S3-compatible store: SeaweedFS's S3 gateway."""
    yield from _service("S3_ENDPOINT_URL", _s3_problem, seaweedfs_lease(), "SeaweedFS")


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A URL of a new, empty PostgreSQL database, dropped after the test."""
    with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'metadata.db'}"


@pytest.fixture
def topic_name() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
def admin(kafka_bootstrap: str) -> AdminClient:
    return admin_client(kafka_bootstrap)

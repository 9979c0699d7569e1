"""A metadata store outage is HTTP 503 with a ``Retry-After``, not a 500, and it heals by itself.

The Overlord app runs in process on SQLite; the outage is its store's engine raising SQLAlchemy's
``OperationalError`` (what a refused or lost database connection raises) on every statement.
``tests/e2e/test_faults.py`` does the same against a real PostgreSQL server that is stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from overlord import api
from overlord.app import build_app
from overlord.config import OverlordSettings
from overlord.metadata import MetadataStore, MetadataStoreUnavailable, migrate
from overlord.metadata.errors import outage
from supervisor.errors import IndexerError
from supervisor.task_spec import KafkaIndexTaskSpec
from tests.harness.database import database_down
from tests.harness.specs import id_spec

V1 = "/druid/indexer/v1"


def _task(task_id: str) -> KafkaIndexTaskSpec:
    return KafkaIndexTaskSpec.model_validate(
        {
            "id": task_id,
            "dataSource": "ds",
            "supervisorId": "ds",
            "groupId": 0,
            "sequenceName": "seq",
            "topic": "events",
            "startOffsets": {"0": 0},
            "supervisorSpec": {},
            "createdTime": "2024-01-01T00:00:00.000Z",
        }
    )


def test_an_api_call_during_an_outage_is_a_503_with_retry_after_and_heals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    migrate(url)
    settings = OverlordSettings(metadata_url=url, deep_storage=tmp_path / "deep")

    async def scenario() -> None:
        async with TestClient(TestServer(build_app(settings))) as client:
            app = client.server.app
            await app[api.QUEUE].submit(_task("t1"))
            heartbeat = {
                "host": "127.0.0.1",
                "port": 7,
                "protocolVersion": 1,
                "running": [{"taskId": "t1", "port": 8100}],
            }
            with database_down(app[api.STORE].engine):
                for method, path, body in [
                    ("GET", f"{V1}/tasks", None),
                    ("GET", f"{V1}/supervisor/history", None),
                    ("GET", "/druid/coordinator/v1/metadata/datasources", None),
                    ("POST", f"{V1}/supervisor", id_spec("ds", "events", "127.0.0.1:9")),
                    ("POST", f"{V1}/workers/heartbeat", heartbeat),
                ]:
                    resp = await client.request(method, path, json=body)
                    answer = await resp.json()
                    assert resp.status == 503, (path, answer)
                    assert resp.headers["Retry-After"] == "5", path
                    assert answer["error"].startswith("metadata store unavailable, retry later: "), answer
                    assert answer["error"].endswith("server closed the connection unexpectedly"), answer
                # nothing half done: the supervisor whose spec could not be stored does not run
                assert await (await client.get(f"{V1}/supervisor")).json() == []
            # the database is back: the same calls succeed, no restart
            resp = await client.get(f"{V1}/tasks")
            assert resp.status == 200 and [t["id"] for t in await resp.json()] == ["t1"]
            assert (await client.get(f"{V1}/supervisor/history")).status == 200
            resp = await client.post(f"{V1}/workers/heartbeat", json=heartbeat)
            assert resp.status == 200, await resp.text()
            resp = await client.get(f"{V1}/task/t1/status")
            assert (await resp.json())["status"]["runnerStatusCode"] == "RUNNING"

    asyncio.run(scenario())


def test_an_unreachable_postgresql_server_is_metadata_store_unavailable() -> None:
    """A real driver error: nothing listens on port 1 (psycopg2 answers "Connection refused")."""
    with pytest.raises(MetadataStoreUnavailable) as raised:
        MetadataStore("postgresql+psycopg2://user:secret@127.0.0.1:1/db")
    assert raised.value.status == 503 and raised.value.retriable
    assert "secret" not in raised.value.message
    assert isinstance(raised.value.__cause__, OperationalError)


def _invalidated(error: DBAPIError) -> DBAPIError:
    error.connection_invalidated = True
    return error


@pytest.mark.parametrize(
    ("error", "is_outage"),
    [
        (OperationalError("SELECT 1", {}, Exception("connection refused")), True),
        (PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached"), True),
        (_invalidated(DBAPIError("SELECT 1", {}, Exception("SSL SYSCALL error: EOF detected"))), True),
        (IntegrityError("INSERT", {}, Exception("duplicate key value")), False),
        (ProgrammingError("SELEC", {}, Exception("syntax error")), False),
        (ValueError("not a database error"), False),
    ],
    ids=["operational", "pool-timeout", "disconnect", "integrity", "programming", "other"],
)
def test_which_errors_are_an_outage(error: Exception, is_outage: bool) -> None:
    unavailable = outage(error)
    assert (unavailable is not None) == is_outage
    if unavailable is not None:
        assert isinstance(unavailable, IndexerError) and unavailable.retry_after_s == 5
        assert type(error).__name__ in unavailable.message

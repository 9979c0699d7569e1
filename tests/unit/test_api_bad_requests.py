"""Requests the fault suite's API fuzzing (tests/e2e/test_api_robustness.py) answered with a 5xx:
each now gets a clear 4xx. Runs the whole Overlord app in process on SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from overlord.app import build_app
from overlord.config import OverlordSettings
from overlord.metadata import migrate
from tests.harness.http import request, serve_app


@pytest.fixture(scope="module")
def overlord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Overlord app served from a thread of this process (built once: its metrics are global)."""
    root = tmp_path_factory.mktemp("overlord")
    url = f"sqlite:///{root / 'metadata.db'}"
    migrate(url)
    with serve_app(build_app(OverlordSettings(metadata_url=url, deep_storage=root / "deep"))) as base:
        yield base


def _call(base: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    status, answer, _ = request(method, base + path, data=body)
    return status, answer


def test_deeply_nested_json_is_a_400_not_a_recursion_error(overlord: str) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    status, answer = _call(overlord, "POST", "/druid/indexer/v1/supervisor", body)
    assert status == 400, answer
    assert "nested too deeply" in answer["error"]


@pytest.mark.parametrize("value", ["99999999999999999999999", str(2**31)])
def test_huge_integer_query_parameters_are_a_400(overlord: str, value: str) -> None:
    status, answer = _call(overlord, "GET", f"/druid/indexer/v1/supervisor/history?count={value}")
    assert status == 400, answer
    assert "count" in answer["error"]


@pytest.mark.parametrize(
    "report",
    [
        {"host": "h", "port": 1, "running": [{"port": 5}]},
        {"host": "h", "port": 1, "running": [{"taskId": 5}]},
        {"host": "h", "port": 1, "running": "x"},
        {"host": "h", "port": 1, "running": [{"taskId": "t", "port": "x"}]},
        {"host": "h", "port": 1, "completed": [{"status": "SUCCESS"}]},
        {"host": "h", "port": "1"},
        {"host": 5, "port": 1},
        {"host": "h", "port": 1, "capacity": "lots"},
        {"host": "h", "port": 1, "waitS": "1"},
        {"host": "h", "port": 1, "waitS": -1},
        {"host": "h", "port": 1, "waitS": True},
        [1, 2],
    ],
)
def test_malformed_heartbeats_are_a_400(overlord: str, report: Any) -> None:
    status, answer = _call(
        overlord, "POST", "/druid/indexer/v1/workers/heartbeat", json.dumps(report).encode()
    )
    assert status == 400, answer
    assert answer["error"].startswith("heartbeat")


@pytest.mark.parametrize("body", [[1, 2], "x", 5])
def test_malformed_worker_registrations_are_a_400(overlord: str, body: Any) -> None:
    status, answer = _call(overlord, "POST", "/druid/indexer/v1/workers/register", json.dumps(body).encode())
    assert status == 400, answer


def test_parse_errors_of_an_unknown_supervisor_is_a_404(overlord: str) -> None:
    status, answer = _call(overlord, "GET", "/druid/indexer/v1/supervisor/nope/parseErrors")
    assert status == 404, answer

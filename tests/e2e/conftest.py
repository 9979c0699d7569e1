"""Fixtures of the e2e tier (the test bed's own are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.processes import Cluster, sqlite_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """An Overlord on SQLite and one MiddleManager with two task slots; a module that needs
    another shape defines its own ``cluster``."""
    with sqlite_cluster(tmp_path) as c:
        yield c

"""A small blocking client for the Overlord's API, for scripts and tests (on ``transport.client``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from supervisor.errors import IndexerError, Unavailable
from supervisor.ports import TaskState
from transport.client import SyncClient

T = TypeVar("T")


def http(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One request to a full URL, whatever the status: (status, decoded JSON body or text).

    No answer at all raises ``ConnectionError`` (an ``OSError``), as a socket call would."""
    try:
        got = SyncClient(timeout_s=timeout).send(method, url, body)
    except Unavailable as e:
        raise ConnectionError(e.message) from e
    return got.status, got.body


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError, IndexerError) as e:
            last = e
        else:
            if last:
                result: T = last
                return result
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")


class OverlordClient:
    """The Overlord's API for scripts and tests; an error answer raises ``HttpStatusError``."""

    def __init__(self, url: str, token: str = "") -> None:
        self.url = url.rstrip("/")
        self._http = SyncClient(self.url, token=token)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self._http.call(method, path, body)

    def healthy(self) -> bool:
        try:
            return self._http.send("GET", "/status/health", timeout_s=2).status == 200
        except Unavailable:
            return False

    def submit(self, spec: dict[str, Any]) -> str:
        return str(self._call("POST", "/druid/indexer/v1/supervisor", spec)["id"])

    def status(self, supervisor_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/druid/indexer/v1/supervisor/{supervisor_id}/status")["payload"])

    def suspend(self, supervisor_id: str) -> None:
        self._call("POST", f"/druid/indexer/v1/supervisor/{supervisor_id}/suspend")

    def resume(self, supervisor_id: str) -> None:
        self._call("POST", f"/druid/indexer/v1/supervisor/{supervisor_id}/resume")

    def terminate(self, supervisor_id: str) -> None:
        self._call("POST", f"/druid/indexer/v1/supervisor/{supervisor_id}/terminate")

    def tasks(self, state: str | None = None, datasource: str | None = None) -> list[dict[str, Any]]:
        params = "&".join(
            f"{k}={v}" for k, v in (("state", state), ("datasource", datasource)) if v is not None
        )
        return list(self._call("GET", f"/druid/indexer/v1/tasks?{params}"))

    def segments(self, datasource: str) -> list[dict[str, Any]]:
        path = f"/druid/coordinator/v1/metadata/datasources/{datasource}/segments?full"
        return list(self._call("GET", path))

    def published_rows(self, datasource: str) -> int:
        return sum(int(s.get("numRows", 0)) for s in self.segments(datasource))

    def wait_published(self, datasource: str, rows: int, timeout_s: float) -> int:
        return wait_for(
            f"{rows} published rows in {datasource}",
            lambda: n if (n := self.published_rows(datasource)) >= rows else None,
            timeout_s,
            1.0,
        )

    def wait_quiet(self, datasource: str, timeout_s: float) -> None:
        """Until no task of the datasource is pending or running."""
        wait_for(
            f"no running tasks of {datasource}",
            lambda: (
                not [t for t in self.tasks(datasource=datasource) if t["statusCode"] == TaskState.RUNNING]
            ),
            timeout_s,
            1.0,
        )

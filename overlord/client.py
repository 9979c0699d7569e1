"""A small blocking client for the Overlord's API, for scripts and tests."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from supervisor.ports import TaskState

T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def http(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One request; returns (status, decoded JSON body or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            if not raw:
                return resp.status, None
            if resp.headers.get_content_type() != "application/json":
                return resp.status, raw.decode(errors="replace")
            return resp.status, json.loads(raw)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError, ApiError) as e:
            last = e
        else:
            if last:
                result: T = last
                return result
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")


class OverlordClient:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = http(method, f"{self.url}{path}", body)
        if status >= 400:
            raise ApiError(status, answer)
        return answer

    def healthy(self) -> bool:
        return http("GET", f"{self.url}/status/health", timeout=2)[0] == 200

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

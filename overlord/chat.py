"""HTTP client for the task control paths (``/druid/worker/v1/chat/{taskId}/...``)."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp

from supervisor.errors import Unavailable
from supervisor.offsets import PartitionOffsets
from supervisor.ports import TaskLocation, TaskProgress, TaskRunStatus

logger = logging.getLogger(__name__)


class HttpTaskClient:
    """Implements the supervisor's ``TaskClientPort``."""

    def __init__(self, timeout_s: float, cluster_token: str = "") -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"Authorization": f"Bearer {cluster_token}"} if cluster_token else {}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def get_text(self, url: str) -> str:
        try:
            async with self._http().get(url) as resp:
                if resp.status >= 400:
                    raise Unavailable(f"GET {url}: HTTP {resp.status}")
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise Unavailable(f"GET {url}: {type(e).__name__}: {e}") from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self, method: str, loc: TaskLocation, task_id: str, path: str, body: Any = None, **params: str
    ) -> Any:
        url = f"http://{loc.host}:{loc.port}/druid/worker/v1/chat/{task_id}/{path}"
        try:
            async with self._http().request(method, url, json=body, params=params or None) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise Unavailable(f"task [{task_id}] {method} {path}: HTTP {resp.status}: {text[:300]}")
                return json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as e:
            raise Unavailable(f"task [{task_id}] {method} {path}: {type(e).__name__}: {e}") from e

    async def status(self, loc: TaskLocation, task_id: str) -> TaskRunStatus:
        return TaskRunStatus(await self._call("GET", loc, task_id, "status"))

    async def start_time(self, loc: TaskLocation, task_id: str) -> float | None:
        value = await self._call("GET", loc, task_id, "time/start")
        return float(value["epochSeconds"]) if value and value.get("epochSeconds") is not None else None

    async def progress(self, loc: TaskLocation, task_id: str) -> TaskProgress:
        v = await self._call("GET", loc, task_id, "progress")
        try:
            return TaskProgress(
                status=TaskRunStatus(v["status"]),
                start_time=float(v["startTime"]) if v.get("startTime") is not None else None,
                current_offsets=PartitionOffsets.from_json(v.get("currentOffsets")),
                last_record_ms={int(k): int(t) for k, t in (v.get("lastRecordTimestamps") or {}).items()},
                row_stats=dict(v.get("rowStats") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise Unavailable(f"task [{task_id}] progress: unexpected answer {str(v)[:200]}") from e

    async def pause(self, loc: TaskLocation, task_id: str) -> PartitionOffsets:
        return PartitionOffsets.from_json(await self._call("POST", loc, task_id, "pause"))

    async def resume(self, loc: TaskLocation, task_id: str) -> None:
        await self._call("POST", loc, task_id, "resume")

    async def current_offsets(self, loc: TaskLocation, task_id: str) -> PartitionOffsets:
        return PartitionOffsets.from_json(await self._call("GET", loc, task_id, "offsets/current"))

    async def end_offsets(self, loc: TaskLocation, task_id: str) -> PartitionOffsets | None:
        value = await self._call("GET", loc, task_id, "offsets/end")
        return PartitionOffsets.from_json(value) if value else None

    async def set_end_offsets(
        self, loc: TaskLocation, task_id: str, offsets: PartitionOffsets, finish: bool
    ) -> None:
        await self._call(
            "POST", loc, task_id, "offsets/end", offsets.to_json(), finish="true" if finish else "false"
        )

    async def row_stats(self, loc: TaskLocation, task_id: str) -> dict[str, Any]:
        value = await self._call("GET", loc, task_id, "rowStats")
        return dict(value or {})

    async def get(self, loc: TaskLocation, task_id: str, path: str) -> Any:
        return await self._call("GET", loc, task_id, path)

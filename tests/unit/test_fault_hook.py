"""The Overlord's test-only fault hook: every N-th committed publish loses its answer."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from overlord.fault_injection import ACTION_PATH, install


def _app(every: int, kind: str = "ok") -> web.Application:
    app = web.Application()

    async def action(_: web.Request) -> web.Response:
        return web.json_response({"result": {"kind": kind, "reason": "", "segmentIds": []}})

    app.router.add_post(ACTION_PATH, action)
    install(app, every)
    return app


async def _outcomes(app: web.Application, calls: int) -> list[str]:
    out = []
    async with TestClient(TestServer(app)) as client:
        for _ in range(calls):
            try:
                resp = await client.post(ACTION_PATH, json={}, headers={"Connection": "close"})
                out.append((await resp.json())["result"]["kind"])
            except aiohttp.ClientError:
                out.append("dropped")
    return out


def test_every_nth_committed_publish_loses_its_answer() -> None:
    assert asyncio.run(_outcomes(_app(3), 7)) == ["ok", "ok", "dropped", "ok", "ok", "dropped", "ok"]


def test_off_by_default_and_never_for_publishes_that_did_not_commit() -> None:
    assert asyncio.run(_outcomes(_app(0), 4)) == ["ok"] * 4
    assert asyncio.run(_outcomes(_app(1, kind="retryable"), 3)) == ["retryable"] * 3

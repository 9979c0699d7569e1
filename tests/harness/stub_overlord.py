"""Stand-ins for the Overlord in unit tests and benchmarks.

``FakeOverlord`` replaces the MiddleManager's Overlord client: it answers heartbeats from a script
(holding the empty answers as asked, like the Overlord's long poll). ``stub_overlord`` is a real HTTP
server answering every task action (a publish) of a peon or an in-process ``TaskRunner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from pydantic import BaseModel

from supervisor.clock import SYSTEM_CLOCK, Clock
from tests.harness.http import serve_handler


class FakeOverlord:
    """Stands in for the MiddleManager's Overlord client (``transport.client.AsyncClient``): answers
    heartbeats from a script, holding the empty answers as asked; keeps every report as JSON."""

    def __init__(
        self,
        answers: list[dict[str, Any]],
        hold: bool = True,
        stop_after: int = 0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.answers = answers
        self.hold = hold
        self.clock = clock
        self.stop_after = stop_after
        self.stop: asyncio.Event | None = None
        self.reports: list[tuple[float, dict[str, Any]]] = []

    async def call(self, _method: str, path: str, body: Any = None, **_kw: Any) -> Any:
        if path.endswith("/register"):
            return {"ok": True}
        report = body.to_json()
        self.reports.append((self.clock.monotonic(), report))
        if self.stop is not None and len(self.reports) == self.stop_after:
            self.stop.set()
        answer = self.answers.pop(0) if self.answers else {}
        if self.hold and not answer:
            await self.clock.sleep(float(report.get("waitS", 0)))
        return answer

    async def fetch(
        self, answer: type[BaseModel], method: str, path: str, body: Any = None, **kw: Any
    ) -> Any:
        return answer.model_validate(await self.call(method, path, body, **kw))

    async def close(self) -> None:
        return None


def task_spec(task_id: str) -> dict[str, Any]:
    """A task the peon accepts but cannot run: it ends FAILED with a status (no Kafka needed)."""
    return {
        "id": task_id,
        "type": "index_kafka",
        "dataSource": "ds",
        "supervisorId": "ds",
        "groupId": 0,
        "sequenceName": "seq",
        "topic": "t",
        "startOffsets": {"0": 0},
        "supervisorSpec": {},
        "createdTime": "2026-01-01T00:00:00.000Z",
        "deepStorage": "file:///nonexistent/deep",
    }


def publish_ok(_action: dict[str, Any]) -> dict[str, Any]:
    """A publish that went through, with no segment ids."""
    return {"kind": "ok", "segmentIds": []}


@dataclass
class StubOverlord:
    url: str
    actions: list[dict[str, Any]] = field(default_factory=list)  # the task actions, in order


@contextlib.contextmanager
def stub_overlord(
    answer: Callable[[dict[str, Any]], dict[str, Any]] = publish_ok,
    on_action: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[StubOverlord]:
    """An HTTP server answering every POSTed task action with ``{"result": answer(action)}``; each
    action is kept (and handed to ``on_action``) before it is answered."""
    actions: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            action = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            actions.append(action)
            if on_action is not None:
                on_action(action)
            data = json.dumps({"result": answer(action)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    with serve_handler(Handler) as url:
        yield StubOverlord(url, actions)

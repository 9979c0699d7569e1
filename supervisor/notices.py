"""A de-duplicating notice queue feeding a supervisor's serial loop."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Notice:
    """Something the supervisor loop must handle.

    Two notices with the same ``kind`` and ``key`` are the same notice: while
    one is queued, pushing the other does nothing (a burst of status changes
    becomes one run). ``payload`` does not take part in that identity.
    """

    kind: str
    key: str = ""
    payload: Any = field(default=None, compare=False, hash=False)


RUN = "run"
SHUTDOWN = "shutdown"
RESET = "reset"
RESET_OFFSETS = "resetOffsets"


class NoticeQueue:
    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, str], Notice] = OrderedDict()
        self._event = asyncio.Event()

    def push(self, notice: Notice) -> bool:
        """Queue the notice; False when an equal one is already waiting."""
        ident = (notice.kind, notice.key)
        if ident in self._items:
            return False
        self._items[ident] = notice
        self._event.set()
        return True

    async def get(self) -> Notice:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        _, notice = self._items.popitem(last=False)
        return notice

    def __len__(self) -> int:
        return len(self._items)

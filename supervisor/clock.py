"""Time as the processes read it, behind one small protocol that tests replace.

Every deadline of the supervisor (task duration, completion timeout, idle time, the run period)
and of the Overlord's task queue (lost workers, held heartbeats) reads a :class:`Clock`:

- ``now()``: wall-clock seconds since the epoch, for what is shown or stored (start times,
  message-time windows, ``generationTime``);
- ``monotonic()``: seconds that never go back, for measuring how long something took;
- ``sleep(seconds)``: wait that long *on this clock*.

:data:`SYSTEM_CLOCK` is the real one. :class:`FakeClock` stands still until a test advances it,
and wakes the sleepers whose time has come, so that tests of timeouts neither sleep nor depend on
how busy the machine is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock", "wait_event"]


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock."""
        ...


class SystemClock:
    """The machine's clocks and the event loop's timers."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Final[Clock] = SystemClock()


async def wait_event(clock: Clock, event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` of ``clock`` passed; whether it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(timeout_s))
    try:
        await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (waiter, sleeper):
            t.cancel()
        await asyncio.gather(waiter, sleeper, return_exceptions=True)
    return event.is_set()


class FakeClock:
    """A clock for tests: it moves only when :meth:`advance` is called.

    Wall and monotonic time move together. ``sleep`` returns once the clock has been advanced
    past its end (``sleep(0)`` and negative durations only yield to the event loop). Use it from
    the event loop's thread.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        entry = (self._mono + seconds, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward and wake every sleeper whose end is reached."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._wall += seconds
        self._mono += seconds
        for entry in list(self._sleepers):
            deadline, fut = entry
            if deadline <= self._mono:
                self._sleepers.remove(entry)
                if not fut.done():
                    fut.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many ``sleep`` calls are waiting on this clock."""
        return len(self._sleepers)

    async def until_sleeping(self, count: int = 1, timeout_s: float = 5.0) -> None:
        """Let the event loop run until ``count`` sleeps wait on this clock (a test's sync point).

        Raises ``TimeoutError`` after ``timeout_s`` real seconds.
        """
        async with asyncio.timeout(timeout_s):
            while len(self._sleepers) < count:
                await asyncio.sleep(0.001)

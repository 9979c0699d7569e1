"""Supervisor states with Druid's names, checked transitions and recent errors."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from supervisor.chronology import now_iso
from supervisor.clock import SYSTEM_CLOCK, Clock
from supervisor.errors import IllegalStateTransition


class BasicState(Enum):
    PENDING = ("PENDING", True)
    RUNNING = ("RUNNING", True)
    IDLE = ("IDLE", True)
    SUSPENDED = ("SUSPENDED", True)
    STOPPING = ("STOPPING", True)
    UNHEALTHY_SUPERVISOR = ("UNHEALTHY_SUPERVISOR", False)
    UNHEALTHY_TASKS = ("UNHEALTHY_TASKS", False)
    LOST_CONTACT_WITH_STREAM = ("LOST_CONTACT_WITH_STREAM", False)

    def __init__(self, label: str, healthy: bool) -> None:
        self.label = label
        self.healthy = healthy


class DetailedState(Enum):
    """Druid's detailed states; each belongs to one basic state."""

    PENDING = BasicState.PENDING
    CONNECTING_TO_STREAM = BasicState.PENDING
    DISCOVERING_INITIAL_TASKS = BasicState.PENDING
    CREATING_TASKS = BasicState.PENDING
    RUNNING = BasicState.RUNNING
    IDLE = BasicState.IDLE
    SUSPENDED = BasicState.SUSPENDED
    STOPPING = BasicState.STOPPING
    UNHEALTHY_SUPERVISOR = BasicState.UNHEALTHY_SUPERVISOR
    UNHEALTHY_TASKS = BasicState.UNHEALTHY_TASKS
    LOST_CONTACT_WITH_STREAM = BasicState.LOST_CONTACT_WITH_STREAM
    UNABLE_TO_CONNECT_TO_STREAM = BasicState.UNHEALTHY_SUPERVISOR

    def __new__(cls, basic: BasicState) -> DetailedState:
        obj = object.__new__(cls)
        obj._value_ = object()  # distinct members despite shared basic states
        obj.basic = basic
        return obj

    basic: BasicState


# Which basic states may follow which. STOPPING is final.
_ALLOWED: dict[BasicState, frozenset[BasicState]] = {
    BasicState.PENDING: frozenset(BasicState) - {BasicState.PENDING},
    BasicState.RUNNING: frozenset(BasicState) - {BasicState.PENDING},
    BasicState.IDLE: frozenset(BasicState) - {BasicState.PENDING},
    BasicState.SUSPENDED: frozenset(BasicState) - {BasicState.PENDING},
    BasicState.UNHEALTHY_SUPERVISOR: frozenset(BasicState) - {BasicState.PENDING},
    BasicState.UNHEALTHY_TASKS: frozenset(BasicState) - {BasicState.PENDING},
    BasicState.LOST_CONTACT_WITH_STREAM: frozenset(BasicState) - {BasicState.PENDING},
    BasicState.STOPPING: frozenset(),
}


@dataclass(frozen=True)
class RecentError:
    timestamp: str
    message: str
    kind: str

    def to_json(self) -> dict[str, str]:
        return {"timestamp": self.timestamp, "exceptionClass": self.kind, "message": self.message}


class StateManager:
    """Tracks a supervisor's state as Druid's SupervisorStateManager does.

    A run of the loop reports success or failure; after ``unhealthiness_threshold``
    failed runs in a row the supervisor is UNHEALTHY_SUPERVISOR (or
    LOST_CONTACT_WITH_STREAM when it is the stream that fails), and it needs
    ``healthiness_threshold`` good runs in a row to be healthy again. Tasks that
    fail ``task_unhealthiness_threshold`` times in a row make it UNHEALTHY_TASKS.
    """

    def __init__(
        self,
        unhealthiness_threshold: int = 3,
        healthiness_threshold: int = 3,
        task_unhealthiness_threshold: int = 3,
        task_healthiness_threshold: int = 3,
        max_stored_errors: int = 3,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self.unhealthiness_threshold = unhealthiness_threshold
        self.healthiness_threshold = healthiness_threshold
        self.task_unhealthiness_threshold = task_unhealthiness_threshold
        self.task_healthiness_threshold = task_healthiness_threshold
        self._detailed = DetailedState.PENDING
        self._errors: deque[RecentError] = deque(maxlen=max_stored_errors)
        self._failed_runs = 0
        self._good_runs = 0
        self._stream_failed_runs = 0
        self._failed_tasks = 0
        self._good_tasks = 0
        self._has_run_ok = False
        self._run_error: str | None = None
        self._run_stream_error = False

    @property
    def detailed(self) -> DetailedState:
        return self._detailed

    @property
    def basic(self) -> BasicState:
        return self._detailed.basic

    @property
    def healthy(self) -> bool:
        return self.basic.healthy

    @property
    def recent_errors(self) -> list[RecentError]:
        return list(self._errors)

    def transition(self, detailed: DetailedState) -> None:
        if detailed is self._detailed:
            return
        if detailed.basic is not self.basic and detailed.basic not in _ALLOWED[self.basic]:
            raise IllegalStateTransition(
                f"supervisor cannot go from {self.basic.label} to {detailed.basic.label}"
            )
        self._detailed = detailed

    def record_error(self, message: str, kind: str = "error", stream: bool = False) -> None:
        self._errors.append(RecentError(now_iso(self._clock), message, kind))
        self._run_error = message
        self._run_stream_error = self._run_stream_error or stream

    def record_task_result(self, succeeded: bool) -> None:
        if succeeded:
            self._good_tasks += 1
            if self._good_tasks >= self.task_healthiness_threshold:
                self._failed_tasks = 0
        else:
            self._failed_tasks += 1
            self._good_tasks = 0

    def end_run(self, active: DetailedState) -> None:
        """Settle the state after one pass of the run loop.

        ``active`` is the state the supervisor is in when healthy (RUNNING,
        SUSPENDED, IDLE, or a PENDING detail while still starting).
        """
        if self.basic is BasicState.STOPPING:
            return
        failed = self._run_error is not None
        if failed:
            self._failed_runs += 1
            self._good_runs = 0
            self._stream_failed_runs = self._stream_failed_runs + 1 if self._run_stream_error else 0
        else:
            self._good_runs += 1
            self._stream_failed_runs = 0
            if self._good_runs >= self.healthiness_threshold or not self.basic_unhealthy():
                self._failed_runs = 0
        self._run_error = None
        self._run_stream_error = False

        if self._stream_failed_runs >= self.unhealthiness_threshold:
            target = (
                DetailedState.LOST_CONTACT_WITH_STREAM
                if self._has_run_ok
                else DetailedState.UNABLE_TO_CONNECT_TO_STREAM
            )
        elif self._failed_runs >= self.unhealthiness_threshold:
            target = DetailedState.UNHEALTHY_SUPERVISOR
        elif self._failed_tasks >= self.task_unhealthiness_threshold:
            target = DetailedState.UNHEALTHY_TASKS
        elif failed and self.basic_unhealthy():
            target = self._detailed  # stay unhealthy until enough good runs
        else:
            target = active
            if not failed:
                self._has_run_ok = True
        self.transition(target)

    def basic_unhealthy(self) -> bool:
        return not self.basic.healthy

    def stop(self) -> None:
        self.transition(DetailedState.STOPPING)

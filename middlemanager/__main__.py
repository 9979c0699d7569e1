"""``python -m middlemanager --overlord http://127.0.0.1:8090``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from supervisor.logs import configure


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="middlemanager", description="Kafka indexing worker")
    p.add_argument("--overlord", help="Overlord URL (env MIDDLEMANAGER_OVERLORD)")
    p.add_argument("--host", help="address this worker and its tasks listen on and advertise")
    p.add_argument("--port", type=int, help="worker port (env MIDDLEMANAGER_PORT, default 8091)")
    p.add_argument("--capacity", type=int, help="task slots (env MIDDLEMANAGER_CAPACITY, default 2)")
    p.add_argument("--task-dir", help="where tasks keep their files (env MIDDLEMANAGER_TASK_DIR)")
    p.add_argument("--heartbeat-s", type=float, help="seconds between heartbeats")
    p.add_argument("--shutdown-timeout-s", type=float, help="grace for tasks on SIGTERM")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING")
    p.add_argument("--log-format", choices=["text", "json"])
    args = p.parse_args(argv)
    from middlemanager.config import MiddleManagerSettings

    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = MiddleManagerSettings(**overrides)
    except ValidationError as e:
        print(f"middlemanager: invalid configuration:\n{e}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format, "middlemanager")
    from middlemanager.worker import serve

    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

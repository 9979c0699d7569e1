"""``python -m overlord [serve|migrate]``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from supervisor.logs import configure

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="overlord", description="Kafka indexing Overlord")
    p.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    p.add_argument("--metadata-url", help="SQLAlchemy URL of the metadata store (env OVERLORD_METADATA_URL)")
    p.add_argument("--deep-storage", help="deep storage directory (env OVERLORD_DEEP_STORAGE)")
    p.add_argument("--host", help="listen address (env OVERLORD_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (env OVERLORD_PORT, default 8090)")
    p.add_argument("--advertised-url", help="URL workers and tasks use (env OVERLORD_ADVERTISED_URL)")
    p.add_argument("--worker-timeout-s", type=float, help="seconds before a silent worker is lost")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (env OVERLORD_LOG_LEVEL)")
    p.add_argument("--log-format", choices=["text", "json"], help="env OVERLORD_LOG_FORMAT")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from overlord.config import OverlordSettings

    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    try:
        settings = OverlordSettings(**overrides)
    except ValidationError as e:
        print(f"overlord: invalid configuration:\n{e}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format, "overlord")
    if args.command == "migrate":
        from overlord.metadata.engine import migrate

        migrate(settings.metadata_url)
        logger.info("metadata store at %s migrated", settings.metadata_url.split("@")[-1])
        return 0
    from overlord.app import build_app

    app = build_app(settings)
    logger.info("overlord listening on %s:%d", settings.host, settings.port)
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
